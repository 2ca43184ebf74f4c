//! The network side: the listener (connection limit, header timeout, graceful shutdown), the proxy
//! request handler (CONNECT or a refusal), and the tunnel.

pub mod auth;
pub mod connect;
pub mod inspect;
pub mod io;
pub mod tunnel;
pub mod upstream;

use crate::config::Loaded;
use crate::dns::Dns;
use crate::policy::deny::{Delivery, Deny};
use bytes::Bytes;
use connect::ConnectRecord;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Shared by every connection.
pub struct State {
    pub config: Loaded,
    pub dns: Dns,
    /// vpcgate's own listening sockets: never a tunnel destination.
    pub own_addrs: Vec<SocketAddr>,
    /// Present in inspect mode: the leaf cache and the upstream pool (kept across reloads).
    pub inspect: Option<Arc<inspect::Inspect>>,
    /// A digest of the CA files' bytes when `inspect` was built: a reload loads the CA again when
    /// they changed in place (`vpcgate ca init --force`, a rotated Kubernetes Secret), even with
    /// the same `[tls]` settings.
    pub ca_files: Option<[u8; 32]>,
    /// Present with `proxy.auth = "basic"`: the clients and their verified credentials.
    pub clients: Option<Arc<auth::Clients>>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// The route proofs (`audit.require`), kept across reloads like the metrics.
    pub evidence: Arc<crate::follow::Evidence>,
}

/// The state new connections use. A reload swaps it; open connections keep the one they started with.
pub struct Shared {
    current: std::sync::RwLock<Arc<State>>,
    /// What the followers learned about each followed route (`crate::follow`): last fetch, last
    /// error. Outlives reloads, which rebuild the state but not what AWS said.
    pub follow: std::sync::Mutex<std::collections::HashMap<String, crate::follow::RouteStatus>>,
}

impl Shared {
    pub fn new(state: State) -> Arc<Shared> {
        Arc::new(Shared { current: std::sync::RwLock::new(Arc::new(state)), follow: Default::default() })
    }

    /// Replace the state only if it is still `expected` (a refresh does not undo a reload that
    /// happened while it asked AWS); whether it did.
    pub fn replace_if(&self, expected: &Arc<State>, state: State) -> bool {
        let mut current = self.current.write().expect("state lock");
        if Arc::ptr_eq(&current, expected) {
            *current = Arc::new(state);
            true
        } else {
            false
        }
    }

    pub fn get(&self) -> Arc<State> {
        self.current.read().expect("state lock").clone()
    }

    pub fn replace(&self, state: State) {
        *self.current.write().expect("state lock") = Arc::new(state);
    }
}

/// Owns the accept loop. Each accepted client holds one permit of `limit` until it closes, so
/// `proxy.max_connections` bounds open client connections (tunnels included).
pub struct Listener {
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    /// The semaphore's size: `proxy.max_connections` at start (a reload does not resize it).
    max: usize,
    tracker: TaskTracker,
}

type Body = Full<Bytes>;

impl Listener {
    /// `proxy.max_connections` is read once here: changing it needs a restart.
    pub fn new(listener: TcpListener, shared: Arc<Shared>) -> Listener {
        let max = shared.get().config.settings.proxy.max_connections;
        Listener { listener, shared, limit: Arc::new(Semaphore::new(max)), max, tracker: TaskTracker::new() }
    }

    /// Accept until `shutdown` resolves, then stop accepting and give open connections
    /// `proxy.shutdown_grace` to finish.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let trimmer = tokio::spawn(give_back_memory(self.tracker.clone()));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: keep serving the connections we have.
                            tracing::warn!(error = %e, "accept failed; retrying in 100ms (raise the open-file limit if this repeats)");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let state = self.shared.get();
                    match self.limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            self.tracker.spawn(async move {
                                serve_client(stream, peer, state).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            // The limit the semaphore enforces: max_connections applies at start only.
                            self.tracker.spawn(refuse_client(stream, peer, state, Deny::OverCapacity { max: self.max }));
                        }
                    }
                }
            }
        }
        drop(self.listener);
        trimmer.abort();
        self.tracker.close();
        let grace = self.shared.get().config.settings.proxy.shutdown_grace;
        let open = self.tracker.len();
        tracing::info!(open_connections = open, grace = %humantime::format_duration(grace), "stopped accepting; waiting for open connections");
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(open_connections = self.tracker.len(), "grace period over; closing the remaining connections");
        }
    }
}

fn http1_builder(state: &State) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(state.config.settings.proxy.handshake_timeout)
        .max_buf_size(64 * 1024)
        .title_case_headers(true)
        .keep_alive(true);
    b
}

/// One client connection: proxy requests until it closes or a CONNECT upgrades it to a tunnel.
/// The tunnel runs in the same task as its client connection, so that it keeps holding the
/// connection permit and the shutdown tracker waits for it.
async fn serve_client(stream: TcpStream, peer: SocketAddr, state: Arc<State>) {
    let timeout = state.config.settings.proxy.handshake_timeout;
    let verdict = match precheck(&stream, timeout).await {
        Ok(v) => v,
        // Bytes came, but the head did not end in time (a slowloris): say so, and log it.
        Err(Unfinished::Partial) => Some(Deny::HeadTimeout { after: timeout }),
        // Nothing arrived, or the client went away: close.
        Err(Unfinished::Nothing) => return,
    };
    if let Some(deny) = verdict {
        // hyper would answer an unparsable head with a bare 400; say what is wrong instead.
        log_refusal(&state, &ConnectRecord { client: Some(peer), ..Default::default() }, &deny);
        return refuse_raw(stream, &deny).await;
    }
    let slot: TunnelSlot = Arc::new(std::sync::Mutex::new(None));
    let svc_state = state.clone();
    let svc_slot = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = svc_state.clone();
        let slot = svc_slot.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, peer, state, slot).await) }
    });
    let conn = http1_builder(&state).serve_connection(TokioIo::new(stream), service).with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
    }
    let pending = slot.lock().expect("tunnel slot").take();
    if let Some(p) = pending {
        match (p.on_upgrade.await, p.then) {
            (Ok(upgraded), Then::Allowed(connect::Next::Inspect(ins), addr)) => {
                inspect::inspect(upgraded, p.target, addr, ins, p.decision, p.started, state).await
            }
            (Ok(upgraded), Then::Refuse(deny, ins)) => inspect::refuse(upgraded, p.target, deny, ins, p.decision, p.started, state).await,
            (Ok(upgraded), Then::Allowed(connect::Next::Relay(upstream), _)) => {
                tunnel::passthrough(upgraded, upstream, p.target, p.decision, p.started, state).await
            }
            (Err(e), _) => tracing::info!(client = %peer, error = %e, "client went away before the tunnel opened"),
        }
    }
}

/// Answer a connection whose head hyper cannot parse: the same response `deny_response` would
/// give, written by hand, then close after the client has had a moment to read it.
async fn refuse_raw(mut stream: TcpStream, deny: &Deny) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!("vpcgate refused: {deny}\n");
    let head = format!(
        "HTTP/1.1 {} {}\r\nX-Vpcgate-Reason: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        deny.status(),
        hyper::StatusCode::from_u16(deny.status()).ok().and_then(|s| s.canonical_reason()).unwrap_or("Bad Request"),
        deny.code(),
        body.len()
    );
    let mut junk = [0u8; 4096];
    let _ = stream.try_read(&mut junk);
    let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = stream.shutdown().await;
    // Drain what the client still sends, so that closing does not reset the response away.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut junk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// How often the open connections are counted for [`give_back_memory`].
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Connections that must have closed since the last peak before memory is handed back.
const TRIM_AFTER_CLOSED: usize = 1_000;

/// Hand the memory a burst of connections used back to the system once they have closed. The
/// allocator keeps freed memory for reuse, so after 9,500 tunnels came and went the process kept
/// about 70 MB it no longer used (integration-tests/load.rs measured it); `malloc_trim` returns
/// the free pages. It runs only after at least [`TRIM_AFTER_CLOSED`] connections closed since
/// the busiest moment, and once more when the rest of such a burst has closed, at most once a
/// second, so a steady load never pays for it.
async fn give_back_memory(open: TaskTracker) {
    let (mut peak, mut before) = (0usize, 0usize);
    // After a burst's trim, the connections still closing: trimmed once more when they settle.
    let mut tail_from: Option<usize> = None;
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        let now = open.len();
        peak = peak.max(now);
        let settled = now == before;
        before = now;
        let tail = tail_from.is_some_and(|t| now < t) && settled;
        if peak - now >= TRIM_AFTER_CLOSED || tail {
            trim();
            tail_from = if tail { None } else { Some(now) };
            peak = now;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no extra pad.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Why the pre-check has no verdict.
enum Unfinished {
    /// Nothing arrived in time, or the client closed or failed first: nothing to answer.
    Nothing,
    /// Part of a head arrived, the rest did not in time.
    Partial,
}

/// Largest proxy request head vpcgate reads (a CONNECT head is a few hundred bytes).
const PRECHECK_MAX: usize = 16 * 1024;

/// Look at the first bytes of a new connection without consuming them, until the head has ended
/// (a head trickled in a byte at a time is waited for, within `timeout`): a request line or
/// headers that cannot be parsed, a head over 16 KiB, or a target that is no URI, is refused here
/// with a sentence, where hyper would answer a bare 400 or 431. A head that parses goes to hyper
/// untouched.
async fn precheck(stream: &TcpStream, timeout: std::time::Duration) -> Result<Option<Deny>, Unfinished> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; PRECHECK_MAX];
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            // The client closed (a peek of 0), failed, or sent nothing more in time.
            Ok(_) => return Err(Unfinished::Nothing),
            Err(_) if seen > 0 => return Err(Unfinished::Partial),
            Err(_) => return Err(Unfinished::Nothing),
        };
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..n]) {
            Err(e) => return Ok(Some(Deny::BadRequest { what: format!("{e}") })),
            Ok(httparse::Status::Complete(_)) => {
                // A CONNECT has no content (RFC 9110 §9.3.6): bytes a framing header announces
                // would be a body to one reader and tunnel data to another. (`Content-Length: 0`,
                // which some clients send, announces none.)
                let framed = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding") || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
                });
                return Ok(match req.path {
                    Some(t) if t.parse::<hyper::Uri>().is_err() => Some(Deny::BadRequest {
                        what: format!("the request target {:?} is neither host:port nor a URI", redact(t).chars().take(100).collect::<String>()),
                    }),
                    _ if framed && req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT")) => {
                        Some(Deny::BadRequest { what: "a CONNECT with Content-Length or Transfer-Encoding, which a CONNECT never carries".into() })
                    }
                    _ => None,
                });
            }
            Ok(httparse::Status::Partial) if n == buf.len() => return Ok(Some(Deny::BadRequest { what: "a request head over 16 KiB".into() })),
            Ok(httparse::Status::Partial) => {
                // Not all here yet: a peek returns at once while bytes wait, so look again a
                // little later (or sooner, when more arrived), until the deadline.
                if n == seen {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Unfinished::Partial);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                seen = n;
            }
        }
    }
}

/// Whether `deny` goes inside the tunnel: inspect mode with `proxy.refuse_in_tunnel`, a policy
/// refusal of a name the CA may sign (so the client's handshake verifies).
/// The inspect state to answer `deny` inside the tunnel with, when it is to be answered there.
fn refuse_in_tunnel(state: &State, deny: &Deny, decision: &ConnectRecord) -> Option<Arc<inspect::Inspect>> {
    let ins = state.inspect.as_ref()?;
    (state.config.settings.proxy.refuse_in_tunnel && deny.deliverable_in_tunnel() && !decision.host.is_empty() && ins.leaves.ca().may_sign(&decision.host))
        .then(|| ins.clone())
}

/// What an answered CONNECT turns into once hyper hands over the client's socket.
enum Then {
    /// An allowed tunnel: passthrough relays, inspect checks every request.
    Allowed(connect::Next, std::net::SocketAddr),
    /// Inspect: answer every request with this refusal, dialling nothing.
    Refuse(Deny, Arc<inspect::Inspect>),
}

/// A CONNECT that was answered 200 and waits for hyper to hand over the client's socket.
struct PendingTunnel {
    on_upgrade: hyper::upgrade::OnUpgrade,
    then: Then,
    target: crate::policy::authority::Target,
    decision: ConnectRecord,
    started: Instant,
}
type TunnelSlot = Arc<std::sync::Mutex<Option<PendingTunnel>>>;

/// Over the limit: answer every request on this connection with the refusal, then close.
async fn refuse_client(stream: TcpStream, peer: SocketAddr, state: Arc<State>, deny: Deny) {
    log_refusal(&state, &ConnectRecord { client: Some(peer), ..Default::default() }, &deny);
    let service = hyper::service::service_fn(move |_req| {
        let deny = deny.clone();
        async move { Ok::<_, std::convert::Infallible>(deny_response(&deny)) }
    });
    let _ = http1_builder(&state).keep_alive(false).serve_connection(TokioIo::new(stream), service).await;
}

/// The single place where a refusal becomes an HTTP response. The sentence goes in the body and,
/// because many clients show only the status line of a failed CONNECT (Python's http.client prints
/// "Tunnel connection failed: 403 <reason phrase>"), in the reason phrase too.
pub fn deny_response(deny: &Deny) -> Response<Body> {
    let body = format!("vpcgate refused: {deny}\n");
    let status = StatusCode::from_u16(deny.status()).unwrap_or(StatusCode::FORBIDDEN);
    let phrase: String = format!("{} (vpcgate {}: {deny})", status.canonical_reason().unwrap_or(""), deny.code())
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(512)
        .collect();
    let mut builder = Response::builder()
        .status(status)
        .extension(hyper::ext::ReasonPhrase::try_from(phrase).unwrap_or(hyper::ext::ReasonPhrase::from_static(b"Refused by vpcgate")))
        .header("X-Vpcgate-Reason", deny.code());
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        builder = builder.header(hyper::header::PROXY_AUTHENTICATE, "Basic realm=\"vpcgate\"");
    }
    builder
        .header("Content-Type", "text/plain; charset=utf-8")
        // A refusal ends the connection: what a client sends next goes through the same checks on
        // a new one (including the sentence for an unparsable head, which hyper would not give).
        .header("Connection", "close")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn log_refusal(state: &State, d: &ConnectRecord, deny: &Deny) {
    log_refusal_as(state, d, deny, Delivery::Connect)
}

fn log_refusal_as(state: &State, d: &ConnectRecord, deny: &Deny, delivered: Delivery) {
    state.metrics.connection("deny", deny.code());
    if !crate::telemetry::decisions_logged() {
        return;
    }
    let message = deny.to_string();
    crate::telemetry::ConnectLine {
        decision: "deny",
        delivered: delivered.name(),
        client: &d.client_text(),
        peer: &d.client.map(|c| c.to_string()).unwrap_or_default(),
        target_authority: &d.target,
        host: &d.host,
        port: d.port,
        class: d.class,
        resolved: &d.resolved_text(),
        route: &d.route,
        dns_ms: d.dns_ms,
        reason: deny.code(),
        status: deny.status(),
        message: &message,
        ..Default::default()
    }
    .emit();
}

async fn handle(mut req: Request<Incoming>, peer: SocketAddr, state: Arc<State>, slot: TunnelSlot) -> Response<Body> {
    let mut decision = ConnectRecord { client: Some(peer), ..Default::default() };
    // proxy.auth = "basic": who is asking comes first, before anything is parsed or resolved.
    if let Some(clients) = &state.clients {
        match clients.authenticate(req.headers().get(hyper::header::PROXY_AUTHORIZATION).map(|v| v.as_bytes())).await {
            Ok(i) => decision.who = Some((clients.get(i).name.clone(), i)),
            Err(failure) => {
                let missing = failure == auth::AuthFailure::Missing;
                state.metrics.auth_failure(missing);
                decision.target = req.uri().authority().map(|a| redact(a.as_str())).unwrap_or_default();
                let deny = Deny::ProxyAuth { missing };
                log_refusal(&state, &decision, &deny);
                return deny_response(&deny);
            }
        }
    }
    if req.method() != Method::CONNECT {
        let credentials = req.uri().authority().and_then(|a| crate::policy::deny::credential_endpoint(a.as_str()));
        let deny = match (req.uri().scheme_str(), credentials) {
            (Some(_), Some(what)) => Deny::CredentialEndpoint { target: redact(&req.uri().to_string()), what },
            (Some(_), None) => Deny::Plaintext { uri: redact(&req.uri().to_string()) },
            (None, _) => Deny::NotProxyRequest { method: req.method().to_string() },
        };
        decision.target = req.uri().authority().map(|a| redact(a.as_str())).unwrap_or_default();
        log_refusal(&state, &decision, &deny);
        return deny_response(&deny);
    }
    // Authority form only (RFC 9110 §9.3.6): `CONNECT http://host:443` reaches the parser whole,
    // which refuses it, instead of being read as the authority inside it.
    let uri = req.uri();
    let raw = match (uri.scheme(), uri.path_and_query(), uri.authority()) {
        (None, None, Some(a)) => a.as_str().to_string(),
        _ => uri.to_string(),
    };
    let started = Instant::now();
    match connect::establish(&state, &raw, &mut decision).await {
        Err(deny) if let Some(ins) = refuse_in_tunnel(&state, &deny, &decision) => {
            // The reason goes inside the tunnel, where SDKs print it; nothing is dialled.
            log_refusal_as(&state, &decision, &deny, Delivery::InTunnel);
            let target = crate::policy::authority::Target { host: decision.host.clone(), port: decision.port };
            let on_upgrade = hyper::upgrade::on(&mut req);
            *slot.lock().expect("tunnel slot") = Some(PendingTunnel { on_upgrade, then: Then::Refuse(deny, ins), target, decision, started });
            Response::new(Full::new(Bytes::new()))
        }
        Err(deny) => {
            log_refusal(&state, &decision, &deny);
            deny_response(&deny)
        }
        Ok(connect::Allowed { target, chosen, next }) => {
            state.metrics.connection("allow", "");
            // The record's texts (addresses, answers) are built only when the line is written.
            if crate::telemetry::decisions_logged() {
                crate::telemetry::ConnectLine {
                    decision: "allow",
                    client: &decision.client_text(),
                    peer: &peer.to_string(),
                    target_authority: &decision.target,
                    host: &target.host,
                    port: target.port,
                    class: decision.class,
                    resolved: &decision.resolved_text(),
                    chosen: &chosen.addr.to_string(),
                    route: &decision.route,
                    cidr: &chosen.cidr.to_string(),
                    via: &chosen.resolved,
                    proof: &decision.proof,
                    dns_ms: decision.dns_ms,
                    connect_ms: decision.connect_ms,
                    upstream: match (&next, decision.pooled) {
                        (connect::Next::Relay(_), _) => "dialled",
                        (connect::Next::Inspect(_), true) => "pooled",
                        // Inspect mode dials when the first request finds nothing in the pool.
                        (connect::Next::Inspect(_), false) => "on_request",
                    },
                    status: 200,
                    ..Default::default()
                }
                .emit();
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            let then = Then::Allowed(next, std::net::SocketAddr::from((chosen.addr, target.port)));
            *slot.lock().expect("tunnel slot") = Some(PendingTunnel { on_upgrade, then, target, decision, started });
            Response::new(Full::new(Bytes::new()))
        }
    }
}

/// Query values and userinfo may carry signatures, tokens and passwords: never log or echo them.
/// Works on a URI (`scheme://user:pass@host/path?q`) and on an authority (`user:pass@host:443`).
pub(crate) fn redact(s: &str) -> String {
    let (scheme, rest) = match s.find("://") {
        Some(i) => s.split_at(i + 3),
        None => ("", s),
    };
    // Userinfo first, up to the last '@' anywhere: secret keys hold '/' and may hold '?', so no
    // delimiter can be trusted to end it in a target vpcgate refused. (An '@' in a path is cut
    // too: a shorter log line, never a leaked password.)
    let rest = match rest.rfind('@') {
        Some(at) => format!("(userinfo removed)@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    // Then the query and fragment.
    let kept = format!("{scheme}{}", rest.split(['?', '#']).next().unwrap_or(""));
    crate::telemetry::printable(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_in_targets_are_never_logged() {
        assert_eq!(redact("http://b.s3.amazonaws.com/k?X-Amz-Signature=abc"), "http://b.s3.amazonaws.com/k");
        assert_eq!(redact("http://u:secret@b.s3.amazonaws.com/k?q"), "http://(userinfo removed)@b.s3.amazonaws.com/k");
        assert_eq!(redact("AKIA:secret@b.s3.amazonaws.com:443"), "(userinfo removed)@b.s3.amazonaws.com:443");
        assert_eq!(redact("/k?Signature=x<"), "/k");
        assert_eq!(redact("b.s3.amazonaws.com:443"), "b.s3.amazonaws.com:443");
        assert_eq!(redact("http://b/a@b"), "http://(userinfo removed)@b", "cut at the last '@', wherever it is");
        assert_eq!(redact("http://u:p/w@host/path"), "http://(userinfo removed)@host/path");
        // Secret keys hold '/', and a '?' in userinfo is not a query.
        assert_eq!(redact("AKIA:wJal/rXU@host:443"), "(userinfo removed)@host:443");
        assert_eq!(redact("http://AKIA:se?cret@h/k?q"), "http://(userinfo removed)@h/k");
        assert_eq!(redact("http://h/k#frag"), "http://h/k");
    }
}

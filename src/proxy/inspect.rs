//! Inspect mode: terminate the client's TLS with a leaf minted for the CONNECT host, check every
//! request in the tunnel (Host = CONNECT host, no SigV2 in header, query or POST form, no smuggling
//! shapes), and stream it to a pooled upstream connection dialled to the checked address.
//! Bodies stream both ways; nothing is buffered whole (a POST form's fields are read up to
//! `FORM_PREFIX_LIMIT` bytes to find its signature, then streamed on).

use crate::certs::LeafCache;
use crate::policy::authority::Target;
use crate::policy::bucket::{self, Named};
use crate::policy::deny::{Delivery, Deny, ErrorShape};
use crate::policy::handshake::{HandshakeRefusal, Side};
use crate::policy::request::{self, FormScan, RequestDeny, Signature, UpstreamFailure};
use crate::policy::tls;
use crate::proxy::connect::{log_close, CloseFacts, ConnectRecord};
use crate::proxy::io::{ClientStream, ReadAhead};
use crate::proxy::upstream::{self, Pool, UpstreamConn};
use crate::proxy::State;
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::Acceptor;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How much of a multipart POST body is read to find its signature fields.
pub const FORM_PREFIX_LIMIT: usize = 64 * 1024;

/// Inspect-mode state shared by every tunnel.
pub struct Inspect {
    pub leaves: Arc<LeafCache>,
    pub pool: Arc<Pool>,
    /// One server configuration for every client handshake (its session cache is shared too); the
    /// certificate is chosen by SNI from the leaf cache, which the handshake fills first.
    server: Arc<rustls::ServerConfig>,
}

impl Inspect {
    pub fn new(leaves: LeafCache, pool: Pool) -> Result<Inspect, String> {
        let leaves = Arc::new(leaves);
        let server = server_config(leaves.clone()).map_err(|e| format!("cannot build the client-side TLS configuration ({e})"))?;
        Ok(Inspect { leaves, pool: Arc::new(pool), server })
    }
}

type RespBody = BoxBody<Bytes, hyper::Error>;

/// One inspected tunnel.
struct Session {
    target: Target,
    addr: SocketAddr,
    /// The upstream connection of this tunnel's previous request: the next request reuses it (HTTP/1.1
    /// requests on one client connection come one after another); back to the pool when the tunnel ends.
    held: Mutex<Option<UpstreamConn>>,
    /// For the request lines: shared, not copied per request.
    client: Arc<str>,
    host: Arc<str>,
    /// The route the tunnel's address was chosen in, for the upstream's handshake refusals.
    route: Arc<str>,
    /// The inspect-mode state (leaf cache, upstream pool) the tunnel was opened with.
    ins: Arc<Inspect>,
    requests: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// `proxy.idle_timeout` while a request is in flight: a count of events (a body frame either
    /// way, a request starting or ending; a counter, not a clock, so marking one costs no clock
    /// read), the requests in flight, and the signal to a request still waiting for its response
    /// head once nothing has moved for that long.
    activity: AtomicU64,
    in_flight: AtomicU64,
    stale: tokio::sync::Notify,
    /// The activity count when `stale` was signalled (`u64::MAX`: not signalled), so that a
    /// request that begins waiting after the signal, with nothing moved since, still gets its 504.
    stale_at: AtomicU64,
    /// The request heads as the client sent them, before hyper read (and changed) them.
    heads: Arc<Mutex<crate::policy::framing::HeadTracker>>,
    /// The authenticated client's own bucket list (within `s3.buckets`).
    own_buckets: Option<bucket::BucketRules>,
    /// With `s3.buckets` (or a client's list) set: what the tunnel's name itself names (`Service` when each request
    /// names its bucket in the path); `None` without a perimeter.
    named_by_host: Option<Named>,
    /// Whether the tunnel's name is S3's (its refusals are S3 XML errors, its POST forms S3's);
    /// otherwise another service's (Query-API forms are read, errors take the request's protocol).
    s3: bool,
}

impl Session {
    /// A tunnel's session: what its requests are checked against and counted into.
    fn new(target: &Target, addr: SocketAddr, ins: &Arc<Inspect>, decision: &ConnectRecord, state: &State) -> Session {
        let class = crate::policy::host::classify(&target.host);
        Session {
            target: target.clone(),
            addr,
            held: Mutex::new(None),
            client: Arc::from(decision.client_text().as_str()),
            host: Arc::from(target.host.as_str()),
            route: Arc::from(decision.route.as_str()),
            ins: ins.clone(),
            requests: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            stale: tokio::sync::Notify::new(),
            stale_at: AtomicU64::new(u64::MAX),
            heads: Arc::default(),
            own_buckets: crate::proxy::connect::client_buckets(state, decision).cloned(),
            named_by_host: (class.is_s3() && (state.config.buckets.active() || crate::proxy::connect::client_buckets(state, decision).is_some()))
                .then(|| bucket::named_by(&target.host, &class, "")),
            s3: class.is_s3(),
        }
    }

    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ends an inspected connection on which a request has been in flight with nothing moving either
/// way for a whole `idle` period (so after between one and two periods of quiet; hyper's header
/// timer covers the wait between requests). A request still waiting for its response head is
/// told first, so that its client gets a 504 rather than a closed socket.
async fn watch_in_flight(session: &Session, idle: Duration) {
    let grace = idle.min(Duration::from_secs(1));
    let mut seen = session.activity.load(Ordering::Relaxed);
    let mut told = false;
    loop {
        tokio::time::sleep(if told { grace } else { idle }).await;
        let now = session.activity.load(Ordering::Relaxed);
        if now != seen || session.in_flight.load(Ordering::Relaxed) == 0 {
            seen = now;
            told = false;
            session.stale_at.store(u64::MAX, Ordering::Relaxed);
        } else if !told {
            session.stale_at.store(now, Ordering::Relaxed);
            session.stale.notify_waiters();
            told = true;
        } else {
            return;
        }
    }
}

/// Picks the leaf for the ClientHello's SNI from the cache (already minted by the time rustls asks).
#[derive(Debug)]
struct BySni(Arc<LeafCache>);

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.peek(&hello.server_name()?.trim_end_matches('.').to_ascii_lowercase())
    }
}

fn server_config(leaves: Arc<LeafCache>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    client_side_config(Arc::new(BySni(leaves)))
}

/// Presents one leaf, whatever the hello says (a refused tunnel's; the SNI was checked already).
#[derive(Debug)]
struct OneLeaf(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn single_leaf_config(leaf: Arc<rustls::sign::CertifiedKey>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    client_side_config(Arc::new(OneLeaf(leaf)))
}

/// The client side of every inspected tunnel: TLS 1.3 and 1.2 with forward-secret suites only,
/// ALPN http/1.1, no resumption.
fn client_side_config(certs: Arc<dyn rustls::server::ResolvesServerCert>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(crate::proxy::upstream::preferred_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Our order (AES-128-GCM first), not the client's: all offered suites are forward-secret anyway.
    cfg.ignore_client_order = true;
    // No resumption: a resumed TLS 1.2 session runs without a new key exchange (its keys are as
    // old as the session cache entry), which the forward-secrecy rule refuses. Every handshake is full.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Where the client's leaf comes from.
enum Leaf {
    /// The leaf cache (minted once per host, shared by every tunnel to it).
    Cached,
    /// Minted for this tunnel alone and never cached: a refused tunnel, so that a client naming
    /// many refused hosts cannot push the leaves of working ones out of the cache.
    Once,
}

/// TLS with the client: its ClientHello must name the CONNECT host and offer forward secrecy;
/// then the handshake with the leaf for the host. `None` when it failed, after logging why and
/// the tunnel's close (all within `proxy.handshake_timeout`).
async fn accept_client(
    upgraded: Upgraded,
    target: &Target,
    ins: &Inspect,
    leaf: Leaf,
    decision: &ConnectRecord,
    started: Instant,
    state: &State,
) -> Option<tokio_rustls::server::TlsStream<ClientStream>> {
    let metrics = &state.metrics;
    let handshake = async {
        let io = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                // An empty read_buf still holds hyper's whole read buffer alive; an idle tunnel
                // keeps this for its lifetime, so drop it.
                let pre = if parts.read_buf.is_empty() { Bytes::new() } else { parts.read_buf };
                ClientStream::Tcp { pre, tcp: parts.io.into_inner(), bulk: false }
            }
            Err(upgraded) => ClientStream::Other(TokioIo::new(upgraded)),
        };
        let start = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), io)
            .await
            .map_err(|e| HandshakeRefusal::Unreadable { side: Side::Client, error: unreadable_hello(&e) })?;
        let ch = start.client_hello();
        let sni = ch.server_name().map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        match &sni {
            None => return Err(HandshakeRefusal::Hello(tls::HelloRefusal::SniMissing)),
            Some(s) if *s != target.host => {
                return Err(HandshakeRefusal::Hello(tls::HelloRefusal::SniMismatch { sni: s.clone(), host: target.host.clone() }));
            }
            _ => {}
        }
        let suites: Vec<u16> = ch.cipher_suites().iter().map(|c| u16::from(*c)).collect();
        if !suites.iter().any(|s| tls::is_forward_secret_suite(*s)) {
            return Err(HandshakeRefusal::Hello(tls::HelloRefusal::ClientNoForwardSecrecy));
        }
        let config = match leaf {
            Leaf::Cached => {
                let (_, minted) = ins.leaves.get(&target.host).await.map_err(|e| HandshakeRefusal::LeafMint { error: e.to_string() })?;
                crate::telemetry::Metrics::kind(&metrics.leaf_cache, if minted { "mint" } else { "hit" });
                ins.server.clone()
            }
            Leaf::Once => {
                let key = ins.leaves.ca().mint(&target.host).map_err(|e| HandshakeRefusal::LeafMint { error: e.to_string() })?;
                crate::telemetry::Metrics::kind(&metrics.leaf_cache, "mint_uncached");
                single_leaf_config(Arc::new(key)).map_err(|e| HandshakeRefusal::LeafMint { error: e.to_string() })?
            }
        };
        start.into_stream(config).await.map_err(|e| HandshakeRefusal::ClientHandshake { error: e.to_string() })
    };
    let timeout = state.config.settings.proxy.handshake_timeout;
    let refusal = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(refusal)) => refusal,
        Err(_) => HandshakeRefusal::Timeout { after: timeout },
    };
    let (side, reason, message) = (refusal.side().name(), refusal.code(), refusal.to_string());
    metrics.refusal(side, reason);
    crate::telemetry::HandshakeRefused {
        client: &decision.client_text(),
        host: &target.host,
        side,
        addr: "",
        route: &decision.route,
        reason,
        message: &message,
    }
    .emit();
    log_close(state, decision, started, CloseFacts { mode: "inspect", end: reason, detail: message, ..Default::default() });
    None
}

/// Answers a refused AWS name inside the tunnel (`proxy.refuse_in_tunnel`): TLS with a leaf for
/// the name, then every request, read up to its head, gets the S3-style XML error with the
/// refusal's sentence, and the tunnel closes. Nothing is dialled: the route check already said no.
/// A client that sends no request is cut after `proxy.handshake_timeout`.
pub async fn refuse(upgraded: Upgraded, target: Target, deny: Deny, ins: Arc<Inspect>, decision: ConnectRecord, started: Instant, state: Arc<State>) {
    let _active = crate::telemetry::TunnelGuard::new(&state.metrics);
    let Some(tls_stream) = accept_client(upgraded, &target, &ins, Leaf::Once, &decision, started, &state).await else { return };
    let (client_version, client_cipher) = {
        let c = tls_stream.get_ref().1;
        (upstream::version_name(c.protocol_version()), upstream::suite_name(c.negotiated_cipher_suite()))
    };
    let answered = Arc::new(AtomicU64::new(0));
    let s3 = crate::policy::host::classify(&target.host).is_s3();
    let service = {
        let (deny, state, answered) = (deny.clone(), state.clone(), answered.clone());
        let (client, host): (Arc<str>, Arc<str>) = (Arc::from(decision.client_text()), Arc::from(target.host.as_str()));
        hyper::service::service_fn(move |req: Request<Incoming>| {
            answered.fetch_add(1, Ordering::Relaxed);
            let message = format!("vpcgate refused: {deny}");
            let path = req.uri().path().to_string();
            state.metrics.request("none", "deny");
            crate::telemetry::RequestLine {
                decision: "deny",
                delivered: Delivery::InTunnel.name(),
                client: &client,
                host: &host,
                method: req.method().as_str(),
                path: &path,
                status: deny.status(),
                reason: deny.code(),
                message: &message,
                upstream: "none",
                ..Default::default()
            }
            .emit();
            let response = error_response(shape_of(s3, req.headers()), deny.status(), deny.code(), &message, &path);
            async move { Ok::<_, std::convert::Infallible>(response) }
        })
    };
    let proxy = &state.config.settings.proxy;
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.handshake_timeout)
        // One answer, then close: the body of the refused request is never read.
        .keep_alive(false)
        .half_close(true)
        .serve_connection(TokioIo::new(tls_stream), service);
    let end = match tokio::time::timeout(proxy.handshake_timeout + proxy.idle_timeout, served).await {
        Ok(Ok(())) if answered.load(Ordering::Relaxed) > 0 => "refused_in_tunnel",
        Ok(Err(e)) if e.is_timeout() => "handshake_timeout",
        Ok(_) => "closed",
        Err(_) => "idle_timeout",
    };
    log_close(
        &state,
        &decision,
        started,
        CloseFacts {
            mode: "inspect",
            tls_version: client_version,
            cipher: client_cipher,
            sni: target.host.clone(),
            alpn: "http/1.1".into(),
            requests: Some(answered.load(Ordering::Relaxed)),
            end,
            detail: deny.code().to_string(),
            ..Default::default()
        },
    );
}

pub async fn inspect(upgraded: Upgraded, target: Target, addr: SocketAddr, ins: Arc<Inspect>, decision: ConnectRecord, started: Instant, state: Arc<State>) {
    let proxy = &state.config.settings.proxy;
    let metrics = &state.metrics;
    let _active = crate::telemetry::TunnelGuard::new(metrics);

    let Some(mut tls_stream) = accept_client(upgraded, &target, &ins, Leaf::Cached, &decision, started, &state).await else { return };
    tls_stream.get_mut().1.set_buffer_limit(Some(upstream::TLS_SEND_BUF));
    let (client_version, client_cipher) = {
        let c = tls_stream.get_ref().1;
        (upstream::version_name(c.protocol_version()), upstream::suite_name(c.negotiated_cipher_suite()))
    };

    // Wait for the first request before handing the connection to hyper, which allocates its read
    // buffer on its first read: an idle tunnel then holds no HTTP buffers. Plaintext rustls already
    // holds (a request that came with the client's Finished) means there is no wait.
    let buffered = tls_stream.get_mut().1.process_new_packets().map(|s| s.plaintext_bytes_to_read() > 0).unwrap_or(true);
    if let Some(tcp) = tls_stream.get_ref().0.wait_on().filter(|_| !buffered) {
        if tokio::time::timeout(proxy.idle_timeout, tcp.readable()).await.is_err() {
            log_close(&state, &decision, started, CloseFacts { mode: "inspect", end: "idle_timeout", ..Default::default() });
            return;
        }
    }

    let session = Arc::new(Session::new(&target, addr, &ins, &decision, &state));
    let svc_session = session.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let session = svc_session.clone();
        let state = svc_state.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, session, state).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.idle_timeout)
        .title_case_headers(false)
        .keep_alive(true)
        // A client may shut down its sending side after its request (close_notify + FIN) and
        // still wait for the response: answer it, then close.
        .half_close(true)
        .serve_connection(TokioIo::new(crate::proxy::io::HeadTap::new(crate::proxy::io::AllAtHand::new(tls_stream), session.heads.clone())), service)
        // The stream back when hyper is done: vpcgate may still owe an answer (below).
        .without_shutdown();
    let result = tokio::select! {
        r = served => Some(r),
        _ = watch_in_flight(&session, proxy.idle_timeout) => None,
    };
    let held = session.held.lock().expect("held").take();
    let finished = result.is_some();
    let result = match result {
        Some(Ok(parts)) => {
            let tls = parts.io.into_inner().into_inner().into_inner();
            let refusal = session.heads.lock().expect("head tracker").refusal();
            finish_client(tls, refusal, &session, &state).await;
            Some(Ok(()))
        }
        Some(Err(e)) => Some(Err(e)),
        None => None,
    };
    let end = match result {
        Some(Ok(())) => "closed",
        Some(Err(e)) if e.is_timeout() => "idle_timeout",
        Some(Err(_)) => "reset",
        // Cut mid-exchange: the held upstream connection is mid-response too, so it is dropped.
        None => "idle_timeout",
    };
    if let (Some(conn), true) = (held, finished) {
        ins.pool.put_back_when_ready(target.host.clone(), addr, conn);
    }
    log_close(
        &state,
        &decision,
        started,
        CloseFacts {
            mode: "inspect",
            tls_version: client_version,
            cipher: client_cipher,
            sni: target.host.clone(),
            alpn: "http/1.1".into(),
            bytes_up: session.bytes_up.load(Ordering::Relaxed),
            bytes_down: session.bytes_down.load(Ordering::Relaxed),
            requests: Some(session.requests.load(Ordering::Relaxed)),
            end,
            detail: String::new(),
        },
    );
}

/// The end of an inspected tunnel on the client side, once hyper has answered every request it
/// read: a head hyper could not have read (not HTTP, over 32 KiB) was held back from it, and
/// gets vpcgate's S3 XML error here instead of hyper's bare 400 or 431; then close_notify.
/// Why rustls could not read a client's hello, in passthrough's terms: bytes that are no TLS
/// record at all (plaintext HTTP) are `NotTls`; TLS records that hold no sound ClientHello (a
/// length past the limits, two server names, an SNI that is no host name) are `Malformed`.
fn unreadable_hello(e: &std::io::Error) -> tls::HelloError {
    let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) | None => tls::HelloError::NotTls(format!("no TLS ClientHello: {e}")),
        Some(other) => tls::HelloError::Malformed(format!("no sound TLS ClientHello: {other}")),
    }
}

async fn finish_client(mut tls: tokio_rustls::server::TlsStream<ClientStream>, refusal: Option<RequestDeny>, session: &Session, state: &State) {
    use tokio::io::AsyncWriteExt;
    let quick = std::time::Duration::from_secs(1);
    if let Some(d) = refusal {
        let rid = request_id();
        let shape = if session.s3 { ErrorShape::S3Xml } else { ErrorShape::QueryXml };
        let (content_type, body, _) = crate::policy::deny::error_body(shape, d.status(), d.code(), &d.to_string(), "", &rid);
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nX-Vpcgate-Reason: {}\r\nx-amz-request-id: {rid}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            d.status(),
            StatusCode::from_u16(d.status()).ok().and_then(|c| c.canonical_reason()).unwrap_or(""),
            d.code(),
            body.len()
        );
        state.metrics.request("none", "deny");
        let message = d.to_string();
        crate::telemetry::RequestLine {
            decision: "deny",
            delivered: "response",
            client: &session.client,
            host: &session.host,
            status: d.status(),
            reason: d.code(),
            message: &message,
            ..Default::default()
        }
        .emit();
        let _ = tokio::time::timeout(quick, tls.write_all(format!("{head}{body}").as_bytes())).await;
    }
    let _ = tokio::time::timeout(quick, tls.shutdown()).await;
}

/// Hop-by-hop headers never forwarded either way.
const HOP_BY_HOP: [HeaderName; 7] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("te"),
    HeaderName::from_static("upgrade"),
];

/// Drop the hop-by-hop headers in place (the fixed list and those named in `Connection`), so the
/// parsed header map is forwarded as it is instead of being copied header by header.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}

/// Per-request evidence, logged once when the response body is finished (or dropped).
struct RequestLog {
    method: hyper::Method,
    path: String,
    /// What the request names under `s3.buckets` (empty without a perimeter).
    bucket: String,
    sig: &'static str,
    status: u16,
    upstream: &'static str,
    upstream_tls: Option<Arc<str>>,
    reason: &'static str,
    /// The refusal's sentence (empty when allowed).
    message: String,
    counts: Arc<Counts>,
    started: Instant,
    /// The request is in flight until this log line is written.
    session: InFlight,
    metrics: Arc<crate::telemetry::Metrics>,
}

/// One thing in flight on a session (a request until its response ends, a request body until it
/// is dropped) for the in-flight idle timer; starting and ending are activity.
struct InFlight(Arc<Session>);

impl InFlight {
    fn new(session: &Arc<Session>) -> InFlight {
        session.in_flight.fetch_add(1, Ordering::Relaxed);
        session.touch();
        InFlight(session.clone())
    }
}

impl std::ops::Deref for InFlight {
    type Target = Arc<Session>;
    fn deref(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Body bytes of one request, both ways.
#[derive(Default)]
struct Counts {
    up: AtomicU64,
    down: AtomicU64,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.metrics.request(if self.sig.is_empty() { "none" } else { self.sig }, if self.reason.is_empty() { "allow" } else { "deny" });
        let up = self.counts.up.load(Ordering::Relaxed);
        let down = self.counts.down.load(Ordering::Relaxed);
        let s = &self.session;
        s.bytes_up.fetch_add(up, Ordering::Relaxed);
        s.bytes_down.fetch_add(down, Ordering::Relaxed);
        if !crate::telemetry::decisions_logged() {
            return;
        }
        let denied = !self.reason.is_empty();
        crate::telemetry::RequestLine {
            decision: if denied { "deny" } else { "allow" },
            delivered: if denied { "response" } else { "" },
            client: &s.client,
            host: &s.host,
            method: self.method.as_str(),
            path: &self.path,
            bucket: &self.bucket,
            signature: self.sig,
            status: self.status,
            reason: self.reason,
            message: &self.message,
            upstream: self.upstream,
            upstream_tls: self.upstream_tls.as_deref().unwrap_or(""),
            bytes_up: up,
            bytes_down: down,
            duration_ms: self.started.elapsed().as_millis() as u64,
        }
        .emit();
    }
}

/// A body that counts its data bytes (every frame is activity for the in-flight idle timer).
struct CountedBody<B> {
    inner: B,
    counts: Arc<Counts>,
    holds: Holds,
}

/// What a counted body keeps in flight until it is done.
enum Holds {
    /// A request body: in flight until dropped, so that an upload still going after an early
    /// response stays watched. Counts into `counts.up`.
    RequestBody(InFlight),
    /// A response: carries the request's log line. Counts into `counts.down`.
    Response(RequestLog),
}

impl<B> CountedBody<B> {
    fn request_body(inner: B, counts: Arc<Counts>, session: &Arc<Session>) -> CountedBody<B> {
        CountedBody { inner, counts, holds: Holds::RequestBody(InFlight::new(session)) }
    }

    fn response(inner: B, log: RequestLog) -> CountedBody<B> {
        CountedBody { inner, counts: log.counts.clone(), holds: Holds::Response(log) }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                let c = match this.holds {
                    Holds::RequestBody(_) => &this.counts.up,
                    Holds::Response(_) => &this.counts.down,
                };
                c.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
            match &this.holds {
                Holds::RequestBody(s) => s.touch(),
                Holds::Response(log) => log.session.touch(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn xml_response(deny: &dyn crate::policy::deny::HttpRefusal, path: &str, shape: ErrorShape) -> Response<RespBody> {
    error_response(shape, deny.status(), deny.code(), &deny.to_string(), path)
}

/// A refusal inside a tunnel as the service's own error (S3's XML, the Query protocol's XML or
/// JSON, see [`ErrorShape`]): what SDKs parse and print.
fn error_response(shape: ErrorShape, status: u16, reason: &'static str, message: &str, path: &str) -> Response<RespBody> {
    let rid = request_id();
    let (content_type, body, error_type) = crate::policy::deny::error_body(shape, status, reason, message, path, &rid);
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN))
        .header("Content-Type", content_type)
        .header("X-Vpcgate-Reason", reason)
        .header(if shape == ErrorShape::S3Xml { "x-amz-request-id" } else { "x-amzn-RequestId" }, rid.as_str());
    if let Some(t) = error_type {
        r = r.header("x-amzn-ErrorType", t);
    }
    r.body(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed()).expect("static response parts are valid")
}

fn request_id() -> String {
    format!("vpcgate-{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0))
}

/// The error shape for a request: from the tunnel's service and the request's `Content-Type`.
fn shape_of(s3: bool, headers: &HeaderMap) -> ErrorShape {
    ErrorShape::for_request(s3, headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()))
}

/// One request inside an inspected tunnel: its head paired and checked, the bucket perimeter, the
/// body read where it carries a signature, then sent to the checked address and the response
/// streamed back. Every refusal is an error in the client's protocol and a `request` line.
async fn handle(req: Request<Incoming>, session: Arc<Session>, state: Arc<State>) -> Response<RespBody> {
    session.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let mut log = RequestLog {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        bucket: String::new(),
        sig: "",
        status: 0,
        upstream: "",
        upstream_tls: None,
        reason: "",
        message: String::new(),
        counts: Arc::new(Counts::default()),
        started: Instant::now(),
        session: InFlight::new(&session),
        metrics: state.metrics.clone(),
    };
    let shape = shape_of(session.s3, &parts.headers);
    let refused = Refused { shape, session: &session };
    // A request that cannot be paired with its head, or a CONNECT, ends the tunnel.
    let head = match take_head(&session, &parts) {
        Ok(h) => h,
        Err(d) => return closing(refused.answer(log, d)),
    };
    let checked = match check_head(&session, &parts, head.framing, &mut log) {
        Ok(c) => c,
        Err(d) => return refused.answer(log, d),
    };
    if let Err(d) = check_perimeter(&session, &state, &parts, &mut log) {
        return refused.answer(log, d);
    }
    let (req_body, cut) = match read_body(body, &parts, checked, &session, &mut log).await {
        Ok(x) => x,
        Err(d) => return refused.answer(log, d),
    };
    forward(parts, req_body, cut, head.chunked, &session, &state, log, refused).await
}

/// How a refused request is answered: the error in the client's protocol, and the request line.
#[derive(Clone, Copy)]
struct Refused<'a> {
    shape: ErrorShape,
    session: &'a Session,
}

impl Refused<'_> {
    fn answer(self, mut log: RequestLog, d: RequestDeny) -> Response<RespBody> {
        log.status = d.status();
        log.reason = d.code();
        log.message = d.to_string();
        xml_response(&d, &log.path, self.shape)
    }

    fn upstream(self, log: RequestLog, failure: UpstreamFailure) -> Response<RespBody> {
        self.answer(log, upstream_deny(self.session, failure))
    }
}

/// The head this request arrived with (framing lines judged before hyper changed them). Each
/// request takes its head first, whatever it is refused for, so that the next request is paired
/// with its own; one that cannot be paired is refused (the record is no longer trusted).
fn take_head(session: &Session, parts: &hyper::http::request::Parts) -> Result<crate::policy::framing::RawHead, RequestDeny> {
    let mut t = session.heads.lock().expect("head tracker");
    let head = match t.take() {
        Some(h) if t.pairs(&h, parts.method.as_str(), &target_text(&parts.uri)) => h,
        Some(_) => return Err(RequestDeny::HeadUnpaired { what: "a request that is not the next head in the tunnel" }),
        None => return Err(RequestDeny::HeadUnpaired { what: t.lost().unwrap_or("a request vpcgate did not see arrive") }),
    };
    if parts.method == hyper::Method::CONNECT {
        return Err(RequestDeny::MethodNotAllowed { method: parts.method.to_string() });
    }
    Ok(head)
}

/// What the head checks learned that the body step needs (borrowed from the request head).
struct Checked<'a> {
    sig: Signature,
    content_type: Option<&'a str>,
}

/// Framing, Connection, Host and signature, on every request of the tunnel. The headers the
/// checks read must come once and as text, or the endpoint could read another.
fn check_head<'a>(
    session: &Session,
    parts: &'a hyper::http::request::Parts,
    framing: Result<(), RequestDeny>,
    log: &mut RequestLog,
) -> Result<Checked<'a>, RequestDeny> {
    let raw = |name| parts.headers.get_all(name).iter().map(|v: &hyper::header::HeaderValue| v.as_bytes());
    framing.and_then(|()| request::check_connection(raw(&hyper::header::CONNECTION)))?;
    let host = request::one_header("Host", raw(&hyper::header::HOST))?;
    let authorization = request::one_header("Authorization", raw(&hyper::header::AUTHORIZATION))?;
    let content_type = request::one_header("Content-Type", raw(&hyper::header::CONTENT_TYPE))?;
    let sig = request::signature_of(authorization, parts.uri.query());
    log.sig = sig.name();
    request::check(&session.target.host, session.target.port, host, &sig)?;
    Ok(Checked { sig, content_type })
}

/// The bucket perimeter: what the request names (its Host, else its path) and what a copy reads
/// from; nothing goes upstream for a bucket outside s3.buckets (or the client's own list).
fn check_perimeter(session: &Session, state: &State, parts: &hyper::http::request::Parts, log: &mut RequestLog) -> Result<(), RequestDeny> {
    let Some(by_host) = &session.named_by_host else { return Ok(()) };
    let rules = &state.config.buckets;
    let by_path;
    let named = match by_host {
        Named::Service => {
            by_path = bucket::path_style(parts.uri.path());
            &by_path
        }
        other => other,
    };
    log.bucket = named.log_name();
    let check = |n: &Named| rules.check(n).and_then(|()| session.own_buckets.as_ref().map_or(Ok(()), |own| own.check(n)));
    check(named).map_err(|refusal| RequestDeny::Bucket { refusal, copy: false })?;
    let copy = parts.headers.get_all("x-amz-copy-source").iter().map(|v| v.as_bytes());
    if let Some(source) = request::one_header("x-amz-copy-source", copy)? {
        check(&bucket::named_by_copy_source(source)).map_err(|refusal| RequestDeny::Bucket { refusal, copy: true })?;
    }
    Ok(())
}

/// A form cut on its way upstream records why here (a part after its file).
type FormCut = Arc<std::sync::OnceLock<&'static str>>;

/// The body to send upstream. Browser POST forms carry their signature in the body: their fields
/// are read before the file, whatever the head carries, on every multipart POST that is not a
/// known S3 API call; another service's POST is read whole for a Query-API SigV2 form.
async fn read_body(
    body: Incoming,
    parts: &hyper::http::request::Parts,
    checked: Checked<'_>,
    session: &Arc<Session>,
    log: &mut RequestLog,
) -> Result<(upstream::ReqBody, Option<FormCut>), RequestDeny> {
    let is_post = parts.method == hyper::Method::POST;
    let content_type = checked.content_type;
    let with_sig = |log: &mut RequestLog, sig: Option<Signature>| {
        if let Some(s) = sig {
            log.sig = s.name();
        }
    };
    if request::reads_form(is_post, parts.uri.query(), !body.is_end_stream(), content_type) {
        let cut = FormCut::default();
        return match read_form(body, content_type.unwrap_or(""), session, cut.clone()).await {
            Ok((form_body, form_sig)) => {
                if matches!(checked.sig, Signature::Anonymous) {
                    log.sig = form_sig.name();
                }
                Ok((CountedBody::request_body(form_body, log.counts.clone(), session).boxed(), Some(cut)))
            }
            Err((d, form_sig)) => {
                with_sig(log, form_sig);
                Err(d)
            }
        };
    }
    if request::reads_query_form(is_post, session.s3, !body.is_end_stream(), content_type) {
        return match read_query_form(body, session).await {
            Ok(whole) => Ok((CountedBody::request_body(whole.map_err(upstream::BodyError::from), log.counts.clone(), session).boxed(), None)),
            Err((d, form_sig)) => {
                with_sig(log, form_sig);
                Err(d)
            }
        };
    }
    Ok((CountedBody::request_body(body.map_err(upstream::BodyError::from), log.counts.clone(), session).boxed(), None))
}

/// The request as parsed, in origin form, HTTP/1.1, without hop-by-hop headers, and framed by
/// vpcgate itself: the client's Transfer-Encoding lines never go on (hyper writes a
/// Content-Length body as it came; a chunked one is re-chunked).
fn to_origin_form(parts: &mut hyper::http::request::Parts, chunked: bool) -> Result<(), UpstreamFailure> {
    let mut target = hyper::http::uri::Parts::default();
    target.path_and_query = Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")));
    parts.uri = hyper::Uri::from_parts(target).map_err(|e| UpstreamFailure::Http { detail: format!("the target does not form a URI: {e}") })?;
    parts.version = hyper::Version::HTTP_11;
    parts.extensions.clear();
    strip_hop_by_hop(&mut parts.headers);
    if parts.headers.remove(hyper::header::TRANSFER_ENCODING).is_some() || chunked {
        parts.headers.insert(hyper::header::TRANSFER_ENCODING, hyper::header::HeaderValue::from_static("chunked"));
    }
    Ok(())
}

/// Sends the checked request to an upstream connection (this tunnel's previous one, else a
/// pooled one, else a new dial to the checked address) and streams the response back.
#[allow(clippy::too_many_arguments)]
async fn forward(
    mut parts: hyper::http::request::Parts,
    req_body: upstream::ReqBody,
    cut: Option<FormCut>,
    chunked: bool,
    session: &Arc<Session>,
    state: &State,
    mut log: RequestLog,
    refused: Refused<'_>,
) -> Response<RespBody> {
    let ins = &session.ins;
    let (mut conn, how) = match get_upstream(session, state, ins).await {
        Ok(x) => x,
        Err(d) => return refused.answer(log, d),
    };
    log.upstream = how;
    crate::telemetry::Metrics::kind(&state.metrics.upstream_connections, how);
    log.upstream_tls = Some(conn.tls.clone());

    if let Err(failure) = to_origin_form(&mut parts, chunked) {
        return refused.upstream(log, failure);
    }
    // A reused connection may have been closed by the endpoint just as it was taken. A request
    // without a body can then be sent once more on a fresh connection, so keep what rebuilds it
    // (a request with a body is sent again only if hyper hands it back unsent).
    // Only idempotent methods (RFC 9110 §9.2.2) are sent again once they may have been written:
    // a second CreateMultipartUpload (POST ?uploads) would leave an upload behind.
    let idempotent = matches!(parts.method, hyper::Method::GET | hyper::Method::HEAD | hyper::Method::PUT | hyper::Method::DELETE | hyper::Method::OPTIONS);
    let replay = (how == "reused" && idempotent && req_body.is_end_stream()).then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
    let mut up_req = Request::from_parts(parts, req_body);
    let mut retried = false;
    let stalled = || UpstreamFailure::Stalled { after: state.config.settings.proxy.idle_timeout };
    let resp = loop {
        let stale = session.stale.notified();
        tokio::pin!(stale);
        // Registered before the flag is read: a watchdog that fired before this request began
        // waiting still gets it its 504 (notify_waiters keeps no permit).
        stale.as_mut().enable();
        if session.stale_at.load(Ordering::Relaxed) == session.activity.load(Ordering::Relaxed) {
            return refused.upstream(log, stalled());
        }
        let sent = tokio::select! {
            r = conn.sender.try_send_request(up_req) => r,
            _ = stale => return refused.upstream(log, stalled()),
        };
        let mut failed = match sent {
            Ok(r) => break r,
            Err(e) => e,
        };
        // A form cut on its way for a part after its file: the client hears why.
        if let Some(what) = cut.as_ref().and_then(|c| c.get()) {
            return refused.answer(log, RequestDeny::MalformedForm { what });
        }
        let again = failed.take_message().or_else(|| replay.as_ref().map(|(m, u, h)| rebuild(m, u, h)));
        match again {
            Some(req) if how == "reused" && !retried => {
                retried = true;
                crate::telemetry::UpstreamTrouble {
                    client: &session.client,
                    host: &session.host,
                    addr: &session.addr.to_string(),
                    error: &failed.error().to_string(),
                }
                .retry();
                conn = match dial(session, state, ins).await {
                    Ok(c) => c,
                    Err(d) => return refused.answer(log, d),
                };
                log.upstream = "retried";
                log.upstream_tls = Some(conn.tls.clone());
                crate::telemetry::Metrics::kind(&state.metrics.upstream_connections, "retried");
                up_req = req;
            }
            // The request's own body failed (a malformed chunk, the client gone mid-upload): the
            // client's doing, not the endpoint's.
            _ if failed.error().is_user() => {
                let error = std::error::Error::source(failed.error()).map(|e| e.to_string()).unwrap_or_else(|| failed.error().to_string());
                return refused.answer(log, RequestDeny::ClientBody { error });
            }
            _ => return refused.upstream(log, UpstreamFailure::Closed { detail: failed.into_error().to_string() }),
        }
    };
    *session.held.lock().expect("held") = Some(conn);

    let (mut rparts, rbody) = resp.into_parts();
    log.status = rparts.status.as_u16();
    rparts.version = hyper::Version::HTTP_11;
    rparts.extensions.clear();
    strip_hop_by_hop(&mut rparts.headers);
    Response::from_parts(rparts, CountedBody::response(rbody, log).boxed())
}

/// A response after which hyper closes the client connection.
fn closing(mut r: Response<RespBody>) -> Response<RespBody> {
    r.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    r
}

/// hyper's URI as the request target it was read from (no copy for the usual origin form).
fn target_text(uri: &hyper::Uri) -> std::borrow::Cow<'_, str> {
    match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        (None, None, Some(pq)) => std::borrow::Cow::Borrowed(pq.as_str()),
        _ => std::borrow::Cow::Owned(uri.to_string()),
    }
}

/// Reads a POST form's fields up to its file part (at most `FORM_PREFIX_LIMIT` bytes) and
/// judges them; the body to forward then replays what was read and streams the rest through a
/// [`request::FormTail`], which cuts it (and records why in `cut`) if a part follows the file.
/// An error carries the form's signature when it was read that far.
async fn read_form(
    mut rest: Incoming,
    content_type: &str,
    session: &Session,
    cut: Arc<std::sync::OnceLock<&'static str>>,
) -> Result<(FormBody, Signature), (RequestDeny, Option<Signature>)> {
    let boundary = request::form_boundary(content_type).map_err(|d| (d, None))?;
    // The data read ahead, in one buffer (replayed as one frame: a body sent a byte per chunk
    // must not cost a frame each), and any trailers frame after it.
    let mut prefix = BytesMut::new();
    let mut trailers = VecDeque::new();
    // Rescan after every 4 KiB (not every frame), so a body sent a byte per chunk costs at
    // most 16 scans of the 64 KiB prefix instead of one per byte.
    let mut next_scan = 0;
    let scan = loop {
        match rest.frame().await {
            Some(Ok(f)) => {
                session.touch();
                match f.data_ref() {
                    Some(d) => prefix.extend_from_slice(d),
                    None => trailers.push_back(f),
                }
                if prefix.len() >= next_scan || prefix.len() > FORM_PREFIX_LIMIT {
                    match request::scan_form(&prefix, &boundary, false) {
                        FormScan::NeedMore => next_scan = prefix.len() + 4096,
                        done => break done,
                    }
                }
                if prefix.len() > FORM_PREFIX_LIMIT {
                    return Err((RequestDeny::FormTooLarge { limit: FORM_PREFIX_LIMIT }, None));
                }
            }
            Some(Err(e)) => return Err((RequestDeny::ClientBody { error: e.to_string() }, None)),
            None => break request::scan_form(&prefix, &boundary, true),
        }
    };
    let (fields, content_at) = match scan {
        FormScan::Closed { fields } => (fields, None),
        FormScan::File { fields, content_at } => (fields, Some(content_at)),
        FormScan::Malformed(what) => return Err((RequestDeny::MalformedForm { what }, None)),
        FormScan::NeedMore => return Err((RequestDeny::MalformedForm { what: "the body ended inside the form" }, None)),
    };
    let sig = request::form_verdict(&fields);
    if sig.is_v2() {
        return Err((RequestDeny::SigV2 { sig: sig.clone() }, Some(sig)));
    }
    let tail = match content_at {
        Some(at) => {
            let mut tail = request::FormTail::new(&boundary);
            if let Err(what) = tail.feed(&prefix[at..]) {
                return Err((RequestDeny::MalformedForm { what }, Some(sig)));
            }
            Some(tail)
        }
        None => None,
    };
    let mut frames = VecDeque::with_capacity(1 + trailers.len());
    if !prefix.is_empty() {
        frames.push_back(Frame::data(prefix.freeze()));
    }
    frames.extend(trailers);
    Ok((FormBody { read: ReadAhead { prefix: frames, rest }, tail, cut }, sig))
}

/// Reads another service's POST body whole (at most [`request::QUERY_FORM_LIMIT`]) and refuses it
/// when it is a Query-API form signed with SigV2; else it goes upstream as read.
async fn read_query_form(mut rest: Incoming, session: &Session) -> Result<ReadAhead, (RequestDeny, Option<Signature>)> {
    let mut read = BytesMut::new();
    let mut trailers = VecDeque::new();
    loop {
        match rest.frame().await {
            Some(Ok(f)) => {
                session.touch();
                match f.data_ref() {
                    Some(d) => read.extend_from_slice(d),
                    None => trailers.push_back(f),
                }
                if read.len() > request::QUERY_FORM_LIMIT {
                    return Err((RequestDeny::QueryFormTooLarge { limit: request::QUERY_FORM_LIMIT }, None));
                }
            }
            Some(Err(e)) => return Err((RequestDeny::ClientBody { error: e.to_string() }, None)),
            None => break,
        }
    }
    let sig = request::query_form_signature(&read);
    if sig.is_v2() {
        return Err((RequestDeny::SigV2 { sig: sig.clone() }, Some(sig)));
    }
    let mut frames = VecDeque::with_capacity(1 + trailers.len());
    if !read.is_empty() {
        frames.push_back(Frame::data(read.freeze()));
    }
    frames.extend(trailers);
    Ok(ReadAhead { prefix: frames, rest })
}

/// A form's body on its way upstream: what was read ahead, then the rest, watched after the file.
struct FormBody {
    read: ReadAhead,
    tail: Option<request::FormTail>,
    cut: Arc<std::sync::OnceLock<&'static str>>,
}

impl Body for FormBody {
    type Data = Bytes;
    type Error = upstream::BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, upstream::BodyError>>> {
        let this = &mut *self;
        // The frames read ahead were judged whole by `read_form`; the tail watches the rest.
        let replayed = !this.read.prefix.is_empty();
        let polled = std::task::ready!(Pin::new(&mut this.read).poll_frame(cx));
        if let (Some(Ok(frame)), Some(tail), false) = (&polled, this.tail.as_mut(), replayed) {
            if let Some(Err(what)) = frame.data_ref().map(|d| tail.feed(d)) {
                // The upstream gets a body cut short, which it discards, never a complete form.
                let _ = this.cut.set(what);
                return Poll::Ready(Some(Err(what.into())));
            }
        }
        Poll::Ready(polled.map(|r| r.map_err(upstream::BodyError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.read.size_hint()
    }
}

/// A request without a body, rebuilt for a second try (its headers are the checked ones).
fn rebuild(method: &hyper::Method, uri: &hyper::Uri, headers: &HeaderMap) -> Request<upstream::ReqBody> {
    let mut r = Request::new(http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    *r.method_mut() = method.clone();
    *r.uri_mut() = uri.clone();
    *r.headers_mut() = headers.clone();
    r
}

async fn get_upstream(session: &Session, state: &State, ins: &Inspect) -> Result<(UpstreamConn, &'static str), RequestDeny> {
    let host = &session.target.host;
    let held = session.held.lock().expect("held").take();
    if let Some(mut c) = held {
        // The previous response has been read to its end by now; give hyper a moment to notice.
        if let Ok(Ok(())) = tokio::time::timeout(std::time::Duration::from_millis(200), c.sender.ready()).await {
            return Ok((c, "reused"));
        }
    }
    if let Some(c) = ins.pool.take(host, session.addr) {
        return Ok((c, "reused"));
    }
    Ok((dial(session, state, ins).await?, "new"))
}

/// A new verified connection to the checked address.
async fn dial(session: &Session, state: &State, ins: &Inspect) -> Result<UpstreamConn, RequestDeny> {
    let host = &session.target.host;
    let timeout = state.config.settings.proxy.connect_timeout;
    let started = Instant::now();
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(session.addr)).await {
        Ok(Ok(t)) => {
            // Without TCP_NODELAY the first exchange stalls ~40 ms (Nagle + delayed ACK).
            let _ = t.set_nodelay(true);
            t
        }
        Ok(Err(e)) => {
            crate::telemetry::UpstreamTrouble { client: &session.client, host, addr: &session.addr.to_string(), error: &e.to_string() }.connect_failed();
            return Err(upstream_deny(session, UpstreamFailure::ConnectFailed { error: e.to_string() }));
        }
        Err(_) => {
            crate::telemetry::UpstreamTrouble { client: &session.client, host, addr: &session.addr.to_string(), error: "timeout" }.connect_failed();
            return Err(upstream_deny(session, UpstreamFailure::ConnectTimeout { after: timeout }));
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let handshake_timeout = state.config.settings.proxy.handshake_timeout;
    match ins.pool.open(host, tcp, handshake_timeout).await {
        Ok(c) => {
            crate::telemetry::UpstreamConnect {
                client: &session.client,
                host,
                addr: &session.addr.to_string(),
                connect_ms: (connect_ms * 100.0).round() / 100.0,
                tls_version: c.tls_version,
                cipher: &c.cipher,
            }
            .emit();
            Ok(c)
        }
        Err(failure) => {
            let d = upstream_deny(session, failure);
            state.metrics.refusal("upstream", d.code());
            let message = d.to_string();
            crate::telemetry::HandshakeRefused {
                client: &session.client,
                host,
                side: Side::Upstream.name(),
                addr: &session.addr.to_string(),
                route: &session.route,
                reason: d.code(),
                message: &message,
            }
            .emit();
            Err(d)
        }
    }
}

fn upstream_deny(session: &Session, failure: UpstreamFailure) -> RequestDeny {
    RequestDeny::Upstream { host: session.target.host.clone(), addr: session.addr, failure }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_dropped_in_place() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "b.s3.us-east-1.amazonaws.com"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=x"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("x-secret-hop", "1"),
            ("x-amz-date", "20261127T000000Z"),
            ("x-amz-meta-a", "1"),
            ("x-amz-meta-a", "2"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<String> = h.iter().map(|(k, v)| format!("{k}={}", v.to_str().unwrap())).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "authorization=AWS4-HMAC-SHA256 Credential=x",
                "host=b.s3.us-east-1.amazonaws.com",
                "x-amz-date=20261127T000000Z",
                "x-amz-meta-a=1",
                "x-amz-meta-a=2"
            ]
        );
    }
}

//! The CONNECT path up to a checked address (and in passthrough mode an established TCP connection
//! to it): strict target parse → host class → plan → resolve (A only) → choose → dial exactly that
//! address (inspect mode dials on the tunnel's first request, `proxy::inspect`).
//! Pure decisions come from [`crate::policy`]; this module only adds DNS and the dial.

use crate::policy::authority::{parse_connect_target, Target};
use crate::policy::connect::{choose, plan, Candidate, Chosen};
use crate::policy::deny::{Answer, Deny};
use crate::policy::host::{classify, HostClass};
use crate::proxy::State;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The record of one CONNECT: what was learned and decided at each step (target, class, answers,
/// chosen address, timings), for the connect and close lines and for `explain`.
#[derive(Debug, Clone, Default)]
pub struct ConnectRecord {
    pub client: Option<SocketAddr>,
    /// The authenticated `[[clients]]` entry (`proxy.auth = "basic"`): its name, and its index
    /// for its own bucket list.
    pub who: Option<(Arc<str>, usize)>,
    pub target: String,
    pub host: String,
    /// The CONNECT port, once the target parsed.
    pub port: u16,
    pub class: &'static str,
    /// What DNS answered, `name -> a, b` or `name: error`, per name asked.
    pub answers: Vec<Answer>,
    pub chosen: Option<Chosen>,
    pub route: String,
    pub dns_ms: f64,
    pub connect_ms: f64,
    /// Inspect mode: an idle verified upstream connection to the chosen address was in the pool.
    pub pooled: bool,
    /// The routes that may carry the name, in the order they are tried.
    pub candidates: Vec<Candidate>,
    /// What proved the chosen gateway route private (`audit.require`), for the connect line.
    pub proof: String,
}

impl ConnectRecord {
    /// The `client` of every event: the authenticated name, else the address.
    pub fn client_text(&self) -> String {
        match (&self.who, self.client) {
            (Some((name, _)), _) => name.to_string(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => String::new(),
        }
    }

    pub fn resolved_text(&self) -> String {
        self.answers
            .iter()
            .map(|a| match &a.result {
                Ok(v) => {
                    format!("{}={}", a.name, if v.is_empty() { "none".to_string() } else { crate::policy::deny::some_addresses(v, "|") })
                }
                Err(e) => format!("{}=error({e})", a.name),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a tunnel reports when it closes.
#[derive(Debug, Default)]
pub struct CloseFacts<'a> {
    pub mode: &'static str,
    pub tls_version: &'a str,
    pub cipher: String,
    pub sni: String,
    pub alpn: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Requests seen inside an inspected tunnel.
    pub requests: Option<u64>,
    pub end: &'a str,
    pub detail: String,
}

/// The one `close` event per tunnel, for both modes; also counts the tunnel's bytes by route.
pub fn log_close(state: &State, decision: &ConnectRecord, started: Instant, f: CloseFacts<'_>) {
    state.metrics.tunnel_bytes(&decision.route, f.bytes_up, f.bytes_down);
    if !crate::telemetry::decisions_logged() {
        return;
    }
    let chosen = decision.chosen.as_ref();
    crate::telemetry::CloseLine {
        mode: f.mode,
        client: &decision.client_text(),
        host: &decision.host,
        chosen: &chosen.map(|c| c.addr.to_string()).unwrap_or_default(),
        route: &decision.route,
        cidr: &chosen.map(|c| c.cidr.to_string()).unwrap_or_default(),
        tls_version: f.tls_version,
        cipher: &f.cipher,
        sni: &f.sni,
        alpn: &f.alpn,
        requests: f.requests,
        bytes_up: f.bytes_up,
        bytes_down: f.bytes_down,
        duration_ms: started.elapsed().as_millis() as u64,
        end: f.end,
        detail: &f.detail,
    }
    .emit();
}

/// The authenticated client's own bucket list, if it has one.
pub fn client_buckets<'a>(state: &'a State, decision: &ConnectRecord) -> Option<&'a crate::policy::bucket::BucketRules> {
    let (_, i) = decision.who.as_ref()?;
    state.clients.as_ref()?.get(*i).buckets.as_ref()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Parse, decide, resolve and dial. On success the returned stream is connected to
/// `decision.chosen.addr` and nothing has been sent to the client yet.
///
/// Inspect mode dials nothing here (`None`): its first request takes a pooled connection to the
/// checked address or dials that address then, and a failure becomes that request's S3-style error,
/// which SDKs show (most show a failed CONNECT only as "could not connect to proxy"). An
/// inspected tunnel whose client has not sent a request yet holds no upstream socket.
/// `decision.pooled` records whether a verified connection was idle in the pool at CONNECT time.
pub async fn establish(state: &State, raw_target: &str, decision: &mut ConnectRecord) -> Result<Allowed, Deny> {
    let inputs = Inputs {
        config: &state.config,
        dns: &state.dns,
        own: &state.own_addrs,
        inspect: state.inspect.is_some(),
        client_buckets: client_buckets(state, decision),
        dns_seconds: Some(&state.metrics.dns_seconds),
        every_answer: false,
    };
    let (target, chosen) = decide(&inputs, raw_target, decision).await?;
    if state.config.settings.audit.require == crate::config::Require::RouteTable {
        let route = &state.config.routes[chosen.route];
        if route.kind == crate::routes::RouteKind::Gateway {
            match state.evidence.get(&route.name) {
                crate::follow::ProofState::Proven { proof, at } => decision.proof = crate::follow::proof_text(&proof, at),
                crate::follow::ProofState::Failing(why) => return Err(Deny::RouteUnproven { host: target.host.clone(), route: route.name.clone(), why }),
            }
        }
    }
    let addr = SocketAddr::from((chosen.addr, target.port));
    if let Some(ins) = &state.inspect {
        decision.pooled = ins.pool.has_idle(&target.host, addr);
        return Ok(Allowed { target, chosen, next: Next::Inspect(ins.clone()) });
    }

    let started = Instant::now();
    let timeout = state.config.settings.proxy.connect_timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(Deny::ConnectTimeout { addr, after: timeout }),
        Ok(Err(e)) => return Err(Deny::ConnectFailed { addr, error: e.to_string() }),
        Ok(Ok(s)) => s,
    };
    decision.connect_ms = ms(started.elapsed());
    // Without TCP_NODELAY every new connection stalls ~40 ms (Nagle + delayed ACK) on the hellos.
    let _ = stream.set_nodelay(true);
    Ok(Allowed { target, chosen, next: Next::Relay(stream) })
}

/// What one CONNECT decision reads. The proxy builds one per CONNECT from its state; `explain`
/// and `check` build one from the loaded configuration, so that all three decide with the same
/// function ([`decide`]) and the same list of vpcgate's own addresses.
pub struct Inputs<'a> {
    pub config: &'a crate::config::Loaded,
    pub dns: &'a crate::dns::Dns,
    /// vpcgate's own listening sockets, never dialled.
    pub own: &'a [SocketAddr],
    /// Inspect mode (the bucket perimeter sees path-style names then).
    pub inspect: bool,
    /// The authenticated client's own bucket list.
    pub client_buckets: Option<&'a crate::policy::bucket::BucketRules>,
    /// Where DNS lookup times are counted (the proxy's metric).
    pub dns_seconds: Option<&'a prometheus_client::metrics::histogram::Histogram>,
    /// Ask DNS for every candidate name (`explain`, to show each answer and the route it falls in)
    /// instead of stopping at the first answer inside its route; the choice is the same.
    pub every_answer: bool,
}

/// The CONNECT decision up to the address to dial: credential endpoints, strict parse, class,
/// plan, the bucket perimeter, resolve, choose. Fills `decision` as it goes, so that a refusal
/// still shows what was learned before it.
pub async fn decide(inputs: &Inputs<'_>, raw_target: &str, decision: &mut ConnectRecord) -> Result<(Target, Chosen), Deny> {
    let config = inputs.config;
    decision.target = super::redact(raw_target);
    if let Some(what) = crate::policy::deny::credential_endpoint(raw_target) {
        return Err(Deny::CredentialEndpoint { target: decision.target.clone(), what });
    }
    let target = parse_connect_target(raw_target, &config.settings.proxy.connect_ports).map_err(Deny::Authority)?;
    decision.host = target.host.clone();
    decision.port = target.port;
    let class: HostClass = classify(&target.host);
    decision.class = class.name();
    let candidates = plan(&target.host, &class, &config.regions, &config.routes)?;
    decision.candidates = candidates.clone();
    // The bucket perimeter, from the name alone (before any DNS question).
    crate::policy::bucket::connect_decision(&config.buckets, &target.host, &class, inputs.inspect)?;
    if let Some(own) = inputs.client_buckets {
        crate::policy::bucket::connect_decision(own, &target.host, &class, inputs.inspect)?;
    }

    let started = Instant::now();
    let chosen = resolve_and_choose(inputs, &target, &candidates, decision).await;
    decision.dns_ms = ms(started.elapsed());
    let chosen = chosen?;
    decision.route = config.routes[chosen.route].name.clone();
    decision.chosen = Some(chosen.clone());
    Ok((target, chosen))
}

/// A CONNECT that passed every check: its target, the address chosen for it and why, and what
/// the tunnel does next.
pub struct Allowed {
    pub target: Target,
    pub chosen: Chosen,
    pub next: Next,
}

pub enum Next {
    /// Passthrough: relay to this connection, dialled to the chosen address before the 200.
    Relay(TcpStream),
    /// Inspect: check every request, dialling the chosen address on the first.
    Inspect(std::sync::Arc<super::inspect::Inspect>),
}

/// Resolve candidate names in order, lazily: stop at the first candidate whose answer lies inside
/// its route. The result is the same as `choose` over every answer, with fewer lookups.
async fn resolve_and_choose(inputs: &Inputs<'_>, target: &Target, candidates: &[Candidate], decision: &mut ConnectRecord) -> Result<Chosen, Deny> {
    let routes = &inputs.config.routes;
    let servers = inputs.dns.servers();
    for (i, c) in candidates.iter().enumerate() {
        if !decision.answers.iter().any(|a| a.name == c.resolve) {
            let asked = Instant::now();
            let result = inputs.dns.lookup_a(&c.resolve).await;
            if let Some(h) = inputs.dns_seconds {
                h.observe(asked.elapsed().as_secs_f64());
            }
            decision.answers.push(Answer { name: c.resolve.clone(), result });
        }
        if inputs.every_answer {
            continue;
        }
        if let Ok(chosen) = choose(&target.host, &candidates[..=i], &decision.answers, routes, target.port, inputs.own, servers) {
            return Ok(chosen);
        }
    }
    choose(&target.host, candidates, &decision.answers, routes, target.port, inputs.own, servers)
}

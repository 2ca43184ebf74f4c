//! Logging setup: `log.format = "text"` (human) or `"json"` (one JSON object per line), level from
//! `log.level` unless `RUST_LOG` is set.
//!
//! Decision events use the target `vpcgate::decision` and an `event` field: `connect` (one per
//! CONNECT, allow or deny; a deny says `delivered` = `connect` or `in_tunnel`), `request` (one per
//! request in an inspected tunnel, and per request answered in a tunnel refused inside),
//! `upstream_connect`, `upstream_connect_failed`, `upstream_retry` (a request sent again on a fresh
//! connection after a reused one closed), `handshake_refused`, and `close` (one per tunnel, with
//! bytes and TLS facts). `handshake_refused` is written by [`HandshakeRefused`] alone, with the
//! same fields in both modes and for both sides (`client`, `host`, `side`, `addr`, `route`,
//! `reason`, `message`); the other events are not yet written from one place (issue 12).

use crate::config::{LogFormat, LogSettings};

/// A `handshake_refused` line: the same fields in both modes and for both sides (`addr` and
/// `route` empty where no upstream was chosen yet).
pub struct HandshakeRefused<'a> {
    pub client: &'a str,
    pub host: &'a str,
    /// `client` or `upstream`.
    pub side: &'static str,
    pub addr: &'a str,
    pub route: &'a str,
    pub reason: &'static str,
    pub message: &'a str,
}

impl HandshakeRefused<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            target: "vpcgate::decision",
            event = "handshake_refused",
            client = %self.client,
            host = %self.host,
            side = self.side,
            addr = %self.addr,
            route = %self.route,
            reason = self.reason,
            message = %self.message,
        );
    }
}
use tracing_subscriber::EnvFilter;

/// A client-supplied string as it may appear in a log line: visible ASCII and spaces as they are,
/// anything else (newlines, terminal escapes, C1 controls, bidi marks, other non-ASCII) escaped,
/// so that a client cannot forge or hide log lines.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.escape_default().to_string())
    }
}

pub fn init(log: &LogSettings) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG={v:?} is not a valid filter ({e}); unset it or use e.g. info"))?,
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| format!("log.level = {:?} is not a valid level ({e}); use error, warn, info, debug or trace", log.level))?,
    };
    // Colours only for a person at a terminal: a file, `docker logs` or a log shipper gets plain
    // text (and NO_COLOR turns them off anywhere, https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let res = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    res.map_err(|e| format!("cannot start logging ({e})"))
}

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub route: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub side: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub signature: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Prometheus metrics, shared by every connection and kept across reloads.
pub struct Metrics {
    registry: Registry,
    pub connections: Family<DecisionLabels, Counter>,
    pub tunnels_active: Gauge,
    /// Idle upstream connections in the inspect pool, read when /metrics is rendered.
    pub upstream_idle: Gauge,
    pub bytes: Family<BytesLabels, Counter>,
    pub dns_seconds: Histogram,
    pub handshake_refusals: Family<RefusalLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_connections: Family<KindLabels, Counter>,
    pub leaf_cache: Family<KindLabels, Counter>,
    pub reloads: Family<KindLabels, Counter>,
    /// Proxy requests refused for their credentials (`proxy.auth = "basic"`): missing or wrong.
    pub auth_failures: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vpcgate");
        let m = Metrics {
            connections: Family::default(),
            tunnels_active: Gauge::default(),
            upstream_idle: Gauge::default(),
            bytes: Family::default(),
            dns_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            handshake_refusals: Family::default(),
            requests: Family::default(),
            upstream_connections: Family::default(),
            leaf_cache: Family::default(),
            reloads: Family::default(),
            auth_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register("connections", "CONNECT requests by decision and refusal reason", m.connections.clone());
        registry.register("tunnels_active", "Open tunnels", m.tunnels_active.clone());
        registry.register("upstream_idle", "Idle upstream connections pooled for reuse (inspect mode)", m.upstream_idle.clone());
        registry.register("bytes", "Tunnel bytes by route and direction (up = client to upstream)", m.bytes.clone());
        registry.register("dns_lookup_seconds", "DNS lookup latency (A records)", m.dns_seconds.clone());
        registry.register("handshake_refusals", "TLS handshakes refused by side and cause", m.handshake_refusals.clone());
        registry.register("requests", "Requests inside inspected tunnels by signature version and decision", m.requests.clone());
        registry.register("upstream_connections", "Upstream connections used by inspect mode: new or reused from the pool", m.upstream_connections.clone());
        registry.register(
            "leaf_cache",
            "Leaf certificate lookups: hit, mint, or mint_uncached (a tunnel refused inside, whose leaf is never cached)",
            m.leaf_cache.clone(),
        );
        registry.register("reloads", "Configuration reloads by result", m.reloads.clone());
        registry.register("auth_failures", "Proxy requests refused for their credentials: missing or wrong", m.auth_failures.clone());
        Metrics { registry, ..m }
    }

    // Label values are static strings, so counting allocates nothing (inspect mode counts every request).
    pub fn connection(&self, decision: &'static str, reason: &'static str) {
        self.connections.get_or_create(&DecisionLabels { decision, reason }).inc();
    }

    pub fn refusal(&self, side: &'static str, reason: &'static str) {
        self.handshake_refusals.get_or_create(&RefusalLabels { side, reason }).inc();
    }

    pub fn tunnel_bytes(&self, route: &str, up: u64, down: u64) {
        self.bytes.get_or_create(&BytesLabels { route: route.into(), direction: "up".into() }).inc_by(up);
        self.bytes.get_or_create(&BytesLabels { route: route.into(), direction: "down".into() }).inc_by(down);
    }

    pub fn request(&self, signature: &'static str, decision: &'static str) {
        self.requests.get_or_create(&RequestLabels { signature, decision }).inc();
    }

    pub fn auth_failure(&self, missing: bool) {
        Self::kind(&self.auth_failures, if missing { "missing" } else { "wrong" });
    }

    pub fn kind(family: &Family<KindLabels, Counter>, kind: &'static str) {
        family.get_or_create(&KindLabels { kind }).inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Keeps `tunnels_active` right however a tunnel ends.
pub struct TunnelGuard<'a>(&'a Metrics);

impl<'a> TunnelGuard<'a> {
    pub fn new(m: &'a Metrics) -> Self {
        m.tunnels_active.inc();
        TunnelGuard(m)
    }
}

impl Drop for TunnelGuard<'_> {
    fn drop(&mut self) {
        self.0.tunnels_active.dec();
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn client_strings_cannot_forge_log_lines() {
        assert_eq!(printable("/bucket/key name.txt"), "/bucket/key name.txt");
        assert!(matches!(printable("/k"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("x\n2026-11-27 INFO forged"), "x\\n2026-11-27 INFO forged");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(printable("a\u{9b}b\u{202e}"), "a\\u{9b}b\\u{202e}");
        assert_eq!(printable("a\\n"), "a\\\\n", "a literal backslash is escaped too, so escapes stay unambiguous");
    }
}

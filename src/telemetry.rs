//! Logging setup: `log.format = "text"` (human) or `"json"` (one JSON object per line), level from
//! `log.level` unless `RUST_LOG` is set.
//!
//! # Decision events
//!
//! Every decision is one line with the target `vpcgate::decision` and an `event` field, written by
//! the record type of that event and nowhere else, with the fields of [`fields`] (a test pins
//! each set):
//!
//! The events, their fields and what each field means are [`EVENTS`] and [`fields::MEANINGS`];
//! the book's reference page "Log events" is generated from them (`reference`).
//!
//! Client-supplied text (paths, ALPN names, targets) is passed through [`printable`] by the caller.

use crate::config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// The fields of each decision event, in the order they are written (besides the subscriber's
/// own `timestamp`, `level`, `target`).
pub mod fields {
    pub const CONNECT: [&str; 21] = [
        "event",
        "decision",
        "delivered",
        "client",
        "peer",
        "target_authority",
        "host",
        "port",
        "class",
        "resolved",
        "chosen",
        "route",
        "cidr",
        "via",
        "proof",
        "dns_ms",
        "connect_ms",
        "upstream",
        "reason",
        "status",
        "message",
    ];
    pub const REQUEST: [&str; 17] = [
        "event",
        "decision",
        "delivered",
        "client",
        "host",
        "method",
        "path",
        "bucket",
        "signature",
        "status",
        "reason",
        "message",
        "upstream",
        "upstream_tls",
        "bytes_up",
        "bytes_down",
        "duration_ms",
    ];
    pub const UPSTREAM_CONNECT: [&str; 7] = ["event", "client", "host", "addr", "connect_ms", "tls_version", "cipher"];
    pub const UPSTREAM_CONNECT_FAILED: [&str; 5] = ["event", "client", "host", "addr", "error"];
    pub const UPSTREAM_RETRY: [&str; 5] = ["event", "client", "host", "addr", "error"];
    pub const HANDSHAKE_REFUSED: [&str; 8] = ["event", "client", "host", "side", "addr", "route", "reason", "message"];
    /// `requests` only in inspect mode (passthrough does not see requests).
    pub const CLOSE: [&str; 18] = [
        "event",
        "mode",
        "client",
        "host",
        "chosen",
        "route",
        "cidr",
        "tls_version",
        "cipher",
        "sni",
        "alpn",
        "requests",
        "bytes_up",
        "bytes_down",
        "duration_ms",
        "end",
        "detail",
        "message",
    ];
    pub const RELOAD: [&str; 7] = ["event", "result", "routes", "regions", "cidrs_added", "cidrs_removed", "message"];
    /// What each field says: `(event, field, meaning)`, where an event of `""` gives the meaning
    /// in every event that has no entry of its own. A test checks that every field of every event
    /// has one.
    pub const MEANINGS: &[(&str, &str, &str)] = &[
        ("", "event", "the event's name"),
        ("", "decision", "`allow` or `deny`"),
        (
            "connect",
            "delivered",
            "for a refusal: `connect` (the CONNECT's status) or `in_tunnel` (inspect mode: answered inside the tunnel); empty when allowed",
        ),
        (
            "request",
            "delivered",
            "for a refusal: `response` (this request was refused) or `in_tunnel` (the tunnel itself was refused, nothing was dialled); empty when allowed",
        ),
        ("", "client", "the authenticated client's name (`proxy.auth = \"basic\"`), else its address"),
        ("", "peer", "the client's address and port"),
        ("", "target_authority", "the CONNECT target as sent, userinfo and queries redacted, control characters escaped"),
        ("", "host", "the host the tunnel (or request) is for"),
        ("", "port", "the CONNECT port"),
        ("", "class", "the host's class by the S3 endpoint grammar (`regional_virtual_hosted`, `dualstack`, `service`, …)"),
        ("", "resolved", "every DNS name asked and its answers (8 addresses per name, the rest counted)"),
        ("", "chosen", "the address dialled (empty for a refusal)"),
        ("", "route", "the route that carried it (empty before one was chosen)"),
        ("", "cidr", "the route's CIDR that holds the chosen address"),
        ("", "via", "the name whose answer was dialled: the endpoint's name for an interface route"),
        (
            "",
            "proof",
            "a gateway route under `audit.require`: what proved it (route table, prefix list and version, endpoint, time of the last proof); empty otherwise",
        ),
        ("", "dns_ms", "milliseconds spent in DNS"),
        ("connect", "connect_ms", "milliseconds to connect to the chosen address (0 in inspect mode, which dials on the first request)"),
        ("upstream_connect", "connect_ms", "milliseconds to connect and finish the upstream TLS handshake"),
        ("connect", "upstream", "`dialled` (passthrough), `pooled` or `on_request` (inspect); empty for a refusal"),
        ("request", "upstream", "`new`, `reused`, `retried` or `none`; empty when the request never got that far"),
        ("", "reason", "the refusal's code (see Refusals); empty when allowed"),
        ("connect", "status", "the HTTP status answered to the CONNECT"),
        ("request", "status", "the response's status: the upstream's, or the refusal's"),
        ("", "message", "the sentence: what was refused and what to change"),
        ("reload", "message", "\"configuration reloaded; …\", or \"reload refused, still serving the previous configuration: WHY\""),
        ("", "method", "the request's method"),
        ("", "path", "the request's path, query string removed, control characters escaped"),
        ("", "bucket", "what the bucket perimeter matched (`-` the service, `?` unknown); empty without a perimeter"),
        ("", "signature", "the request's signature scheme (`sigv4-header`, `sigv4-query`, `sigv2-header`, `anonymous`, …)"),
        ("", "upstream_tls", "the upstream connection's TLS version and cipher suite"),
        ("", "bytes_up", "bytes from the client to the upstream"),
        ("", "bytes_down", "bytes from the upstream to the client"),
        ("", "duration_ms", "milliseconds from the first byte to the end"),
        ("", "addr", "the upstream address (empty before one was chosen)"),
        ("", "tls_version", "the negotiated TLS version"),
        ("", "cipher", "the negotiated cipher suite"),
        ("upstream_connect_failed", "error", "`timeout`, or the socket's error"),
        ("upstream_retry", "error", "why the reused connection failed before the request went again"),
        ("", "side", "`client` or `upstream`: the leg the refusal is about"),
        ("", "mode", "`passthrough` or `inspect`"),
        ("", "sni", "the server name the client's hello asked for"),
        ("", "alpn", "the protocols the client's hello offered"),
        ("", "requests", "inspect mode: requests seen in the tunnel (absent in passthrough)"),
        ("", "end", "how the tunnel ended: `closed`, a timeout, or a refusal code"),
        ("", "detail", "more about the end, when there is more to say"),
        ("reload", "result", "`ok` or `refused`"),
        ("route_refresh", "result", "`changed`, `refused`, `failed` or `withdrawn`"),
        ("", "routes", "the routes after the reload"),
        ("", "regions", "the regions after the reload"),
        ("", "cidrs_added", "CIDRs the change added"),
        ("", "cidrs_removed", "CIDRs the change removed"),
        ("", "prefix_list", "the prefix list a gateway route follows (empty for an interface route)"),
        ("", "endpoint_id", "the endpoint an interface route follows (empty for a gateway route)"),
        ("", "version", "the prefix list's version (empty for an endpoint)"),
        ("", "cidrs", "how many CIDRs the route holds after the refresh"),
    ];

    /// What `field` means in `event`.
    pub fn meaning(event: &str, field: &str) -> Option<&'static str> {
        MEANINGS
            .iter()
            .find(|(e, f, _)| *e == event && *f == field)
            .or_else(|| MEANINGS.iter().find(|(e, f, _)| e.is_empty() && *f == field))
            .map(|(_, _, m)| *m)
    }

    pub const ROUTE_REFRESH: [&str; 10] =
        ["event", "result", "route", "prefix_list", "endpoint_id", "version", "cidrs", "cidrs_added", "cidrs_removed", "message"];
}

/// One decision event: its `event` value, its fields in order, and when it is written.
pub struct Event {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub when: &'static str,
}

/// Every decision event, in the order a tunnel meets them.
pub const EVENTS: [Event; 9] = [
    Event {
        name: "connect",
        fields: &fields::CONNECT,
        when: "one per CONNECT (or other proxy request), allowed or refused; a refusal says `delivered` = `connect` or `in_tunnel`",
    },
    Event {
        name: "request",
        fields: &fields::REQUEST,
        when: "one per request in an inspected tunnel, allowed or refused, and per request answered in a tunnel refused inside",
    },
    Event { name: "upstream_connect", fields: &fields::UPSTREAM_CONNECT, when: "inspect mode: a new verified upstream connection" },
    Event {
        name: "upstream_connect_failed",
        fields: &fields::UPSTREAM_CONNECT_FAILED,
        when: "inspect mode: the TCP connection to the checked address failed",
    },
    Event {
        name: "upstream_retry",
        fields: &fields::UPSTREAM_RETRY,
        when: "inspect mode: a request sent again on a fresh connection after a reused one closed before a response byte",
    },
    Event { name: "handshake_refused", fields: &fields::HANDSHAKE_REFUSED, when: "a TLS handshake cut, either mode, either side" },
    Event { name: "close", fields: &fields::CLOSE, when: "one per tunnel, with bytes and TLS facts" },
    Event {
        name: "reload",
        fields: &fields::RELOAD,
        when: "a reload (SIGHUP or `run --watch-config`), applied or refused, with the CIDRs it added and removed",
    },
    Event {
        name: "route_refresh",
        fields: &fields::ROUTE_REFRESH,
        when: "a followed prefix list or interface endpoint asked again: changed (applied like a reload), refused or failed (the old set kept), or withdrawn (the endpoint is gone: the route carries nothing); an unchanged answer writes nothing",
    },
];

/// Whether `info` decision lines are written at all: callers on the per-connection and
/// per-request paths check it before building a record (its clock reads and formatted addresses
/// are wasted at `log.level = "warn"`).
#[inline]
pub fn decisions_logged() -> bool {
    tracing::enabled!(target: "vpcgate::decision", tracing::Level::INFO)
}

/// A `connect` line: the CONNECT decision, allowed or refused (empty strings and zeros where a
/// step was not reached: no `chosen` for a refusal, no `reason` for an allowed tunnel).
#[derive(Default)]
pub struct ConnectLine<'a> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// For a refusal: `connect` (the CONNECT's status) or `in_tunnel`; empty when allowed.
    pub delivered: &'static str,
    /// The authenticated client's name, else its address.
    pub client: &'a str,
    pub peer: &'a str,
    /// The CONNECT target as sent (userinfo and queries redacted).
    pub target_authority: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub class: &'static str,
    /// Every DNS name asked and its answers.
    pub resolved: &'a str,
    pub chosen: &'a str,
    pub route: &'a str,
    pub cidr: &'a str,
    /// The name whose answer was dialled (the endpoint's name for an interface route).
    pub via: &'a str,
    /// A gateway route under `audit.require`: what proved it (route table, prefix list and
    /// version, endpoint, time of the last successful proof); empty otherwise.
    pub proof: &'a str,
    pub dns_ms: f64,
    pub connect_ms: f64,
    /// `dialled` (passthrough), `pooled` or `on_request` (inspect); empty for a refusal.
    pub upstream: &'static str,
    pub reason: &'static str,
    pub status: u16,
    pub message: &'a str,
}

impl ConnectLine<'_> {
    pub fn emit(&self) {
        tracing::info!(
            target: "vpcgate::decision",
            event = "connect",
            decision = self.decision,
            delivered = self.delivered,
            client = %self.client,
            peer = %self.peer,
            target_authority = %self.target_authority,
            host = %self.host,
            port = self.port,
            class = self.class,
            resolved = %self.resolved,
            chosen = %self.chosen,
            route = %self.route,
            cidr = %self.cidr,
            via = %self.via,
            proof = %self.proof,
            dns_ms = self.dns_ms,
            connect_ms = self.connect_ms,
            upstream = self.upstream,
            reason = self.reason,
            status = self.status,
            message = %self.message,
        );
    }
}

/// A `request` line: one request inside an inspected tunnel.
#[derive(Default)]
pub struct RequestLine<'a> {
    pub decision: &'static str,
    /// For a refusal: `in_tunnel` when the tunnel itself was refused (nothing was dialled),
    /// `response` when this request was; empty when allowed.
    pub delivered: &'static str,
    pub client: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// What the bucket perimeter matched (`-` the service, `?` unknown; empty without a perimeter).
    pub bucket: &'a str,
    pub signature: &'static str,
    pub status: u16,
    pub reason: &'static str,
    pub message: &'a str,
    /// `new`, `reused`, `retried`, `none`, or empty when the request never got that far.
    pub upstream: &'static str,
    pub upstream_tls: &'a str,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
}

impl RequestLine<'_> {
    pub fn emit(&self) {
        tracing::info!(
            target: "vpcgate::decision",
            event = "request",
            decision = self.decision,
            delivered = self.delivered,
            client = %self.client,
            host = %self.host,
            method = %self.method,
            path = %printable(self.path),
            bucket = %printable(self.bucket),
            signature = self.signature,
            status = self.status,
            reason = self.reason,
            message = %self.message,
            upstream = self.upstream,
            upstream_tls = %self.upstream_tls,
            bytes_up = self.bytes_up,
            bytes_down = self.bytes_down,
            duration_ms = self.duration_ms,
        );
    }
}

/// An `upstream_connect` line: a new upstream connection, verified, with its TLS facts.
pub struct UpstreamConnect<'a> {
    pub client: &'a str,
    pub host: &'a str,
    pub addr: &'a str,
    pub connect_ms: f64,
    pub tls_version: &'static str,
    pub cipher: &'a str,
}

impl UpstreamConnect<'_> {
    pub fn emit(&self) {
        tracing::info!(target: "vpcgate::decision", event = "upstream_connect", client = %self.client, host = %self.host, addr = %self.addr, connect_ms = self.connect_ms, tls_version = self.tls_version, cipher = %self.cipher);
    }
}

/// An upstream connection that went wrong: `upstream_connect_failed` (`error` is `timeout` or the
/// socket's error) or `upstream_retry` (why a reused connection failed before the request went
/// again on a fresh one). Both lines carry the same fields.
pub struct UpstreamTrouble<'a> {
    pub client: &'a str,
    pub host: &'a str,
    pub addr: &'a str,
    pub error: &'a str,
}

impl UpstreamTrouble<'_> {
    pub fn connect_failed(&self) {
        tracing::warn!(target: "vpcgate::decision", event = "upstream_connect_failed", client = %self.client, host = %self.host, addr = %self.addr, error = %self.error);
    }

    pub fn retry(&self) {
        tracing::info!(target: "vpcgate::decision", event = "upstream_retry", client = %self.client, host = %self.host, addr = %self.addr, error = %self.error);
    }
}

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

/// A `close` line: one per tunnel, both modes.
#[derive(Default)]
pub struct CloseLine<'a> {
    pub mode: &'static str,
    pub client: &'a str,
    pub host: &'a str,
    pub chosen: &'a str,
    pub route: &'a str,
    pub cidr: &'a str,
    pub tls_version: &'a str,
    pub cipher: &'a str,
    pub sni: &'a str,
    pub alpn: &'a str,
    /// Requests seen inside an inspected tunnel (`None` in passthrough: no field).
    pub requests: Option<u64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// How the tunnel ended: `closed`, a timeout, a refusal code.
    pub end: &'a str,
    pub detail: &'a str,
}

impl CloseLine<'_> {
    pub fn emit(&self) {
        tracing::info!(
            target: "vpcgate::decision",
            event = "close",
            mode = self.mode,
            client = %self.client,
            host = %self.host,
            chosen = %self.chosen,
            route = %self.route,
            cidr = %self.cidr,
            tls_version = %self.tls_version,
            cipher = %self.cipher,
            sni = %printable(self.sni),
            alpn = %printable(self.alpn),
            requests = self.requests,
            bytes_up = self.bytes_up,
            bytes_down = self.bytes_down,
            duration_ms = self.duration_ms,
            end = %self.end,
            detail = %self.detail,
            "tunnel closed"
        );
    }
}

/// A `reload` line: `result` is `ok` (the message says "configuration reloaded; …") or
/// `refused` (the message says "reload refused, still serving the previous configuration: WHY").
/// A followed prefix list or interface endpoint asked again (`follow`). `result` is `changed`,
/// `refused`, `failed` or `withdrawn` (AWS says the endpoint is gone: the route carries nothing).
pub struct RouteRefreshLine<'a> {
    pub result: &'static str,
    pub route: &'a str,
    /// The list a gateway route follows (empty for an interface route).
    pub prefix_list: &'a str,
    /// The endpoint an interface route follows (empty for a gateway route).
    pub endpoint_id: &'a str,
    pub version: &'a str,
    /// How many CIDRs the route holds after it.
    pub cidrs: usize,
    pub cidrs_added: &'a str,
    pub cidrs_removed: &'a str,
    pub message: &'a str,
}

impl RouteRefreshLine<'_> {
    pub fn emit(&self) {
        let (result, route, prefix_list, endpoint_id, version, cidrs, added, removed, message) =
            (self.result, self.route, self.prefix_list, self.endpoint_id, self.version, self.cidrs, self.cidrs_added, self.cidrs_removed, self.message);
        match result {
            "changed" => {
                tracing::info!(target: "vpcgate::decision", event = "route_refresh", result, route, prefix_list, endpoint_id, version, cidrs, cidrs_added = added, cidrs_removed = removed, "{message}")
            }
            "withdrawn" => {
                tracing::error!(target: "vpcgate::decision", event = "route_refresh", result, route, prefix_list, endpoint_id, version, cidrs, cidrs_added = added, cidrs_removed = removed, "{message}")
            }
            _ => {
                tracing::warn!(target: "vpcgate::decision", event = "route_refresh", result, route, prefix_list, endpoint_id, version, cidrs, cidrs_added = added, cidrs_removed = removed, "{message}")
            }
        }
    }
}

pub struct ReloadLine<'a> {
    pub ok: bool,
    pub routes: &'a str,
    pub regions: &'a str,
    pub cidrs_added: &'a str,
    pub cidrs_removed: &'a str,
    pub error: &'a str,
}

impl ReloadLine<'_> {
    pub fn emit(&self) {
        if self.ok {
            tracing::info!(
                target: "vpcgate::decision",
                event = "reload",
                result = "ok",
                routes = %self.routes,
                regions = %self.regions,
                cidrs_added = %self.cidrs_added,
                cidrs_removed = %self.cidrs_removed,
                "configuration reloaded; new connections use it, open tunnels keep theirs"
            );
        } else {
            tracing::error!(
                target: "vpcgate::decision",
                event = "reload",
                result = "refused",
                routes = %self.routes,
                regions = %self.regions,
                cidrs_added = %self.cidrs_added,
                cidrs_removed = %self.cidrs_removed,
                "reload refused, still serving the previous configuration: {}",
                self.error
            );
        }
    }
}

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
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteResultLabels {
    pub route: String,
    pub result: &'static str,
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
    /// Followed prefix lists and endpoints asked again, by route and result (changed, unchanged, refused, failed, withdrawn).
    pub route_refreshes: Family<RouteResultLabels, Counter>,
    /// `audit.require`: 1 while a gateway route's proof holds, 0 while it fails.
    pub route_proof: Family<RouteLabels, Gauge>,
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
            route_refreshes: Family::default(),
            route_proof: Family::default(),
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
        registry.register(
            "route_proof",
            "1 while the route table is proven to send the route's prefix list to its gateway endpoint (audit.require)",
            m.route_proof.clone(),
        );
        registry.register("route_refreshes", "Followed prefix lists and interface endpoints asked again, by route and result", m.route_refreshes.clone());
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

#[cfg(test)]
mod event_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Each record written through the JSON format vpcgate uses, and the field names it carries.
    fn written(emit: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_current_span(false).with_writer(move || out.clone()).finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
        let mut keys: Vec<String> = v.as_object().unwrap().keys().filter(|k| !["timestamp", "level", "target"].contains(&k.as_str())).cloned().collect();
        keys.sort();
        keys
    }

    fn sorted<const N: usize>(f: [&str; N]) -> Vec<String> {
        let mut v: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn every_decision_event_has_exactly_its_documented_fields() {
        let conn = ConnectLine { decision: "deny", reason: "dualstack", status: 403, ..Default::default() };
        assert_eq!(written(|| conn.emit()), sorted(fields::CONNECT), "connect (deny)");
        let conn = ConnectLine { decision: "allow", status: 200, upstream: "dialled", ..Default::default() };
        assert_eq!(written(|| conn.emit()), sorted(fields::CONNECT), "connect (allow)");
        let req = RequestLine { decision: "allow", ..Default::default() };
        assert_eq!(written(|| req.emit()), sorted(fields::REQUEST), "request");
        let up = UpstreamConnect { client: "c", host: "h", addr: "a", connect_ms: 1.0, tls_version: "TLS1.3", cipher: "x" };
        assert_eq!(written(|| up.emit()), sorted(fields::UPSTREAM_CONNECT), "upstream_connect");
        let trouble = UpstreamTrouble { client: "c", host: "h", addr: "a", error: "timeout" };
        assert_eq!(written(|| trouble.connect_failed()), sorted(fields::UPSTREAM_CONNECT_FAILED), "upstream_connect_failed");
        assert_eq!(written(|| trouble.retry()), sorted(fields::UPSTREAM_RETRY), "upstream_retry");
        let hs = HandshakeRefused { client: "c", host: "h", side: "client", addr: "", route: "", reason: "sni_missing", message: "m" };
        assert_eq!(written(|| hs.emit()), sorted(fields::HANDSHAKE_REFUSED), "handshake_refused");
        let close = CloseLine { mode: "inspect", requests: Some(2), end: "closed", ..Default::default() };
        assert_eq!(written(|| close.emit()), sorted(fields::CLOSE), "close (inspect)");
        let close = CloseLine { mode: "passthrough", end: "closed", ..Default::default() };
        let mut without_requests = sorted(fields::CLOSE);
        without_requests.retain(|f| f != "requests");
        assert_eq!(written(|| close.emit()), without_requests, "close (passthrough)");
        for ok in [true, false] {
            let reload = ReloadLine { ok, routes: "r", regions: "us-east-1", cidrs_added: "none", cidrs_removed: "none", error: "bad" };
            assert_eq!(written(|| reload.emit()), sorted(fields::RELOAD), "reload ok={ok}");
        }
        for result in ["changed", "refused", "failed", "withdrawn"] {
            let r = RouteRefreshLine {
                result,
                route: "s3",
                prefix_list: "pl-1",
                endpoint_id: "",
                version: "2",
                cidrs: 2,
                cidrs_added: "none",
                cidrs_removed: "none",
                message: "m",
            };
            assert_eq!(written(|| r.emit()), sorted(fields::ROUTE_REFRESH), "route_refresh {result}");
        }
    }
}

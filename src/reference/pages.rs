//! The pages generated from the library's types (test builds only: schemars and strum are
//! dev-dependencies).

use super::GENERATED;
use crate::config::{self, Settings};
use crate::policy::authority::AuthorityError;
use crate::policy::bucket::BucketRefusal;
use crate::policy::deny::{Answer, Deny, HttpRefusal, Refusal, CREDENTIAL_ENDPOINTS};
use crate::policy::handshake::{HandshakeRefusal, Side};
use crate::policy::request::{RequestDeny, Signature, UpstreamFailure};
use crate::policy::tls::{HelloError, HelloRefusal};
use serde_json::Value;
use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How a duration setting is written (`humantime`: `10s`, `15m`, `1h 30m`).
pub struct DurationText;
/// A socket address setting (`IP:PORT`).
pub struct AddressText;
/// A file or directory setting.
pub struct PathText;

macro_rules! text_schema {
    ($t:ty, $name:literal, $format:literal) => {
        impl schemars::JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "format": $format })
            }
        }
    };
}
text_schema!(DurationText, "Duration", "duration");
text_schema!(AddressText, "Address", "address");
text_schema!(PathText, "Path", "path");

/// A table cell: one line, pipes escaped, rustdoc's intra-doc links (`` [`name`] ``) as plain code.
fn cell(s: &str) -> String {
    let mut text = s.split_whitespace().collect::<Vec<_>>().join(" ");
    while let Some(start) = text.find("[`") {
        let Some(len) = text[start..].find("`]") else { break };
        let end = start + len + 2;
        if text[end..].starts_with('(') {
            break;
        }
        text = format!("{}{}{}", &text[..start], &text[start + 1..end - 1], &text[end..]);
    }
    text.replace('|', "\\|")
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The sections and keys of `config/default.toml` in the order the file has them.
fn default_order() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in config::DEFAULT_TOML.lines() {
        let line = line.trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((section.to_string(), Vec::new()));
        } else if let (Some((key, _)), Some(last)) = (line.split_once('='), out.last_mut()) {
            if !line.starts_with('#') {
                last.1.push(key.trim().to_string());
            }
        }
    }
    out
}

/// A TOML value as it would be written in the file.
fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(toml_text).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

struct Schema<'a> {
    defs: &'a serde_json::Map<String, Value>,
}

impl<'a> Schema<'a> {
    /// `s` with a `$ref` followed.
    fn resolve(&self, s: &'a Value) -> &'a Value {
        match s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) => self.defs.get(name).map(|d| self.resolve(d)).unwrap_or(s),
            None => s,
        }
    }

    /// The schema without its `null` alternative (an `Option`).
    fn non_null(&self, s: &'a Value) -> &'a Value {
        let s = self.resolve(s);
        if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
            if let Some(other) = alts.iter().find(|a| a.get("type").and_then(Value::as_str) != Some("null")) {
                return self.resolve(other);
            }
        }
        s
    }

    /// The unit variants of an enum: (value, description).
    fn variants(&self, s: &'a Value) -> Option<Vec<(String, String)>> {
        let s = self.non_null(s);
        if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
            let mut out = Vec::new();
            for a in alts {
                let desc = a.get("description").and_then(Value::as_str).unwrap_or("").to_string();
                if let Some(c) = a.get("const").and_then(Value::as_str) {
                    out.push((c.to_string(), desc));
                } else if let Some(e) = a.get("enum").and_then(Value::as_array) {
                    out.extend(e.iter().filter_map(Value::as_str).map(|c| (c.to_string(), desc.clone())));
                } else {
                    return None;
                }
            }
            return Some(out);
        }
        s.get("enum").and_then(Value::as_array).map(|e| e.iter().filter_map(Value::as_str).map(|c| (c.to_string(), String::new())).collect())
    }

    fn type_text(&self, s: &'a Value) -> String {
        if let Some(vs) = self.variants(s) {
            return vs.iter().map(|(v, _)| format!("`{v:?}`")).collect::<Vec<_>>().join(" or ");
        }
        let s = self.non_null(s);
        let ty = match s.get("type") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("any"),
            Some(Value::String(t)) => t.as_str(),
            _ => "any",
        };
        match (ty, s.get("format").and_then(Value::as_str)) {
            ("string", Some("duration")) => "duration".into(),
            ("string", Some("address")) => "`IP:PORT`".into(),
            ("string", Some("path")) => "path".into(),
            ("array", _) => format!("list of {}", s.get("items").map(|i| self.type_text(i)).unwrap_or_else(|| "any".into())),
            ("object", _) => "table".into(),
            (t, _) => t.into(),
        }
    }

    /// The meaning cell of a key: its doc comment, then what each enum value means.
    fn meaning(&self, s: &'a Value) -> String {
        let mut out = s.get("description").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(vs) = self.variants(s) {
            for (v, d) in vs.iter().filter(|(_, d)| !d.is_empty()) {
                out.push_str(&format!(" `{v:?}`: {}", d.trim_end_matches('.')));
                out.push('.');
            }
        }
        cell(&out)
    }
}

/// Every configuration key: (section, key, type, default, meaning), in the file's order; the
/// array-of-tables sections (`[[routes]]`, `[[clients]]`) after the others.
pub fn config_keys() -> Vec<(String, String, String, String, String)> {
    let root = schemars::schema_for!(Settings);
    let root = root.as_value();
    let defs = root.get("$defs").and_then(Value::as_object).expect("the settings schema has definitions");
    let sch = Schema { defs };
    let defaults: toml::Table = config::DEFAULT_TOML.parse().expect("the embedded default is TOML");
    let props = root["properties"].as_object().expect("settings have properties");
    let order = default_order();
    let mut sections: Vec<&String> = order.iter().map(|(s, _)| s).filter(|s| props.contains_key(*s)).collect();
    let mut rest: Vec<&String> = props.keys().filter(|k| !order.iter().any(|(s, _)| s == *k)).collect();
    rest.sort();
    sections.extend(rest);
    let mut out = Vec::new();
    for section in sections {
        let s = sch.non_null(&props[section]);
        let (table, many) = match s.get("items") {
            Some(items) => (sch.resolve(items), true),
            None => (s, false),
        };
        let fields = table["properties"].as_object().expect("a section is a table");
        let required: Vec<&str> = table.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let file_keys = order.iter().find(|(s, _)| s == section).map(|(_, k)| k.clone()).unwrap_or_default();
        let mut keys: Vec<&String> = file_keys.iter().filter(|k| fields.contains_key(*k)).collect();
        let mut others: Vec<&String> = fields.keys().filter(|k| !file_keys.contains(k)).collect();
        others.sort_by_key(|k| (!required.contains(&k.as_str()), k.to_string()));
        keys.extend(others);
        for key in keys {
            let f = &fields[key];
            let default = match defaults.get(section).and_then(|t| t.get(key)) {
                Some(v) => format!("`{}`", toml_text(v)),
                None if many && required.contains(&key.as_str()) => "required".into(),
                None if sch.type_text(f).starts_with("list") => "`[]`".into(),
                None => "none".into(),
            };
            let heading = if many { format!("[[{section}]]") } else { format!("[{section}]") };
            out.push((heading, key.clone(), sch.type_text(f), default, sch.meaning(f)));
        }
    }
    out
}

/// The section descriptions: the doc comments of `Settings`' fields.
fn section_docs() -> Vec<(String, String)> {
    let root = schemars::schema_for!(Settings);
    let props = root.as_value()["properties"].as_object().expect("settings have properties").clone();
    props.into_iter().map(|(k, v)| (k, v.get("description").and_then(Value::as_str).unwrap_or("").to_string())).collect()
}

pub fn config_page() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Configuration keys\n\nEvery key vpcgate reads, with its type, its default (from the embedded \
         `config/default.toml`) and what it means. \
         How the three layers combine (the default, `--config`, `VPCGATE__SECTION__KEY`) is in \
         [Configuration](../configuration.md).\n"
    );
    let docs = section_docs();
    let mut current = String::new();
    for (section, key, ty, default, meaning) in config_keys() {
        if section != current {
            let name = section.trim_matches(['[', ']']);
            let doc = docs.iter().find(|(k, _)| k == name).map(|(_, d)| cell(d)).unwrap_or_default();
            out.push_str(&format!("\n## `{section}`\n\n{doc}\n\n| key | type | default | meaning |\n|---|---|---|---|\n"));
            current = section.clone();
        }
        let name = section.trim_matches(['[', ']']);
        out.push_str(&format!("| `{name}.{key}` | {ty} | {default} | {meaning} |\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

const BUCKET_HOST: &str = "my-bucket.s3.us-east-1.amazonaws.com";

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("an example address")
}

/// One of every refusal at the CONNECT (a test holds it to every variant).
pub fn connect_refusals() -> Vec<Deny> {
    let h = || BUCKET_HOST.to_string();
    let answers = |r: Result<Vec<Ipv4Addr>, String>| vec![Answer { name: h(), result: r }];
    vec![
        Deny::Authority(AuthorityError::Empty),
        Deny::Authority(AuthorityError::MissingPort),
        Deny::Authority(AuthorityError::BadPort("0443".into())),
        Deny::Authority(AuthorityError::NotAuthorityForm),
        Deny::Authority(AuthorityError::BadName("my_bucket..example".into())),
        Deny::Authority(AuthorityError::IpLiteral("52.216.8.1".into())),
        Deny::Authority(AuthorityError::Bracketed("[s3.amazonaws.com]".into())),
        Deny::Authority(AuthorityError::Userinfo),
        Deny::Authority(AuthorityError::PortNotAllowed { port: 80, allowed: vec![443] }),
        Deny::BadRequest { what: "a CONNECT with Content-Length or Transfer-Encoding, which a CONNECT never carries".into() },
        Deny::HeadTimeout { after: Duration::from_secs(10) },
        Deny::NotProxyRequest { method: "GET".into() },
        Deny::Plaintext { uri: format!("http://{BUCKET_HOST}/key") },
        Deny::NotAws { host: "example.com".into() },
        Deny::Dualstack { host: "my-bucket.s3.dualstack.us-east-1.amazonaws.com".into() },
        Deny::Accelerate { host: "my-bucket.s3-accelerate.amazonaws.com".into() },
        Deny::Website { host: "my-bucket.s3-website-us-east-1.amazonaws.com".into() },
        Deny::OtherRegion { host: "my-bucket.s3.eu-west-1.amazonaws.com".into(), region: "eu-west-1".into(), configured: vec!["us-east-1".into()] },
        Deny::MultiRegionNeedsInterface { host: "mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com".into() },
        Deny::NoRouteForClass {
            host: "my-bucket.s3.amazonaws.com".into(),
            class: "global",
            why: "PrivateLink does not serve the legacy global endpoint; set AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional or use the bucket's regional endpoint s3.REGION.amazonaws.com",
        },
        Deny::OutsideRoutes { host: h(), answers: answers(Ok(vec![Ipv4Addr::new(3, 5, 0, 10)])), routes: vec!["s3-gateway".into()] },
        Deny::Dns { host: h(), answers: answers(Err("no answer within 5s".into())), servers: "169.254.169.253:53".into() },
        Deny::SelfConnect { addr: addr("127.0.0.1:3128") },
        Deny::ConnectTimeout { addr: addr("52.216.8.1:443"), after: Duration::from_secs(10) },
        Deny::ConnectFailed { addr: addr("52.216.8.1:443"), error: "Connection refused (os error 111)".into() },
        Deny::OverCapacity { max: 10_000 },
        Deny::ProxyAuth { missing: true },
        Deny::ProxyAuth { missing: false },
        Deny::Bucket { host: "other-bucket.s3.us-east-1.amazonaws.com".into(), refusal: BucketRefusal::NotListed { key: "other-bucket".into() } },
        Deny::Bucket { host: "s3.us-east-1.amazonaws.com".into(), refusal: BucketRefusal::ListBuckets },
        Deny::Bucket { host: "s3-control.us-east-1.amazonaws.com".into(), refusal: BucketRefusal::Unknown { why: "S3 Control, which names no single bucket" } },
        Deny::BucketHidden { host: "s3.us-east-1.amazonaws.com".into() },
        Deny::GlobalSts { host: "sts.amazonaws.com".into() },
        Deny::NoRouteForService { host: "sts.us-east-1.amazonaws.com".into(), service: "sts".into(), region: "us-east-1".into() },
        Deny::UnknownAwsName { host: "ec2-3-80-1-1.compute-1.amazonaws.com".into() },
        Deny::CredentialEndpoint { target: "169.254.169.254".into(), what: CREDENTIAL_ENDPOINTS[0].1 },
        Deny::RouteUnproven {
            host: h(),
            route: "s3-gateway".into(),
            why: "route table rtb-0abc of subnet subnet-0abc has no route to pl-63a5400a; add the gateway endpoint to the subnet's route table".into(),
        },
    ]
}

/// One of every refusal of a request inside an inspected tunnel.
pub fn request_refusals() -> Vec<RequestDeny> {
    let up = |failure| RequestDeny::Upstream { host: BUCKET_HOST.into(), addr: addr("52.216.8.1:443"), failure };
    let not_listed = || BucketRefusal::NotListed { key: "other-bucket".into() };
    vec![
        RequestDeny::HostMissing { connect_host: BUCKET_HOST.into() },
        RequestDeny::HostMismatch { host: "other-bucket.s3.us-east-1.amazonaws.com".into(), connect_host: BUCKET_HOST.into() },
        RequestDeny::SigV2 { sig: Signature::V2Header },
        RequestDeny::SigV2 { sig: Signature::V2Query },
        RequestDeny::SigV2 { sig: Signature::V2PostForm },
        RequestDeny::SigV2 { sig: Signature::V2QueryForm },
        RequestDeny::UnknownScheme { scheme: "AWS3-HTTPS".into() },
        RequestDeny::FormTooLarge { limit: crate::proxy::inspect::FORM_PREFIX_LIMIT },
        RequestDeny::QueryFormTooLarge { limit: crate::policy::request::QUERY_FORM_LIMIT },
        RequestDeny::Smuggling { what: "both Content-Length and Transfer-Encoding" },
        RequestDeny::DuplicateHeader { name: "Host" },
        RequestDeny::UnreadableHeader { name: "Authorization" },
        RequestDeny::MalformedForm { what: "the body ended inside the form" },
        RequestDeny::Bucket { refusal: not_listed(), copy: false },
        RequestDeny::Bucket { refusal: not_listed(), copy: true },
        RequestDeny::Bucket { refusal: BucketRefusal::ListBuckets, copy: false },
        RequestDeny::Bucket { refusal: BucketRefusal::Unknown { why: "a copy source that does not decode" }, copy: true },
        RequestDeny::HeadUnpaired { what: "a request that is not the next head in the tunnel" },
        RequestDeny::ConnectionNamesChecked { name: "Authorization" },
        RequestDeny::MethodNotAllowed { method: "CONNECT".into() },
        RequestDeny::ClientBody { error: "invalid chunk size".into() },
        up(UpstreamFailure::ConnectFailed { error: "Connection refused (os error 111)".into() }),
        up(UpstreamFailure::ConnectTimeout { after: Duration::from_secs(10) }),
        up(UpstreamFailure::HandshakeTimeout { after: Duration::from_secs(10) }),
        up(UpstreamFailure::Untrusted { detail: "invalid peer certificate: UnknownIssuer".into() }),
        up(UpstreamFailure::NoForwardSecrecy { detail: "peer is incompatible: no cipher suites in common".into() }),
        up(UpstreamFailure::Alert { alert: "HandshakeFailure".into() }),
        up(UpstreamFailure::Tls { detail: "corrupt message".into() }),
        up(UpstreamFailure::Http { detail: "connection error".into() }),
        up(UpstreamFailure::Closed { detail: "connection closed before message completed".into() }),
        up(UpstreamFailure::Stalled { after: Duration::from_secs(300) }),
    ]
}

/// One of every way a TLS handshake is cut.
pub fn handshake_refusals() -> Vec<HandshakeRefusal> {
    use HandshakeRefusal as H;
    let mut out: Vec<H> = vec![
        H::Hello(HelloRefusal::SniMissing),
        H::Hello(HelloRefusal::SniMismatch { sni: "other-bucket.s3.us-east-1.amazonaws.com".into(), host: BUCKET_HOST.into() }),
        H::Hello(HelloRefusal::ClientTlsTooOld { max_offered: 0x0302 }),
        H::Hello(HelloRefusal::ClientNoForwardSecrecy),
        H::Hello(HelloRefusal::ClientEarlyData),
        H::Hello(HelloRefusal::ServerTlsTooOld { version: 0x0302 }),
        H::Hello(HelloRefusal::ServerNoForwardSecrecy { suite: 0x009c }),
        H::Hello(HelloRefusal::ServerNoKeyShare),
    ];
    for side in [Side::Client, Side::Upstream] {
        out.extend([
            H::Unreadable { side, error: HelloError::NotTls("plaintext HTTP".into()) },
            H::Unreadable { side, error: HelloError::TooLarge },
            H::Unreadable { side, error: HelloError::Malformed("a record of another content type".into()) },
            H::Unreadable { side, error: HelloError::Incomplete },
        ]);
    }
    out.extend([
        H::SecondRetry,
        H::Timeout { after: Duration::from_secs(10) },
        H::Write { side: Side::Client, error: "Broken pipe (os error 32)".into() },
        H::Write { side: Side::Upstream, error: "Broken pipe (os error 32)".into() },
        H::LeafMint { error: "the name is outside the CA's name constraints".into() },
        H::ClientHandshake { error: "received fatal alert: UnknownCA".into() },
    ]);
    out
}

fn code_cell(r: &dyn Refusal) -> String {
    format!("`{}`", r.code())
}

pub fn refusals_page() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Refusals\n\nEvery \"no\" vpcgate says, with its stable code (the `X-Vpcgate-Reason` header, the `reason` \
         field of the log and the metric label), its HTTP status, the error code SDKs classify it by, and its sentence \
         for an example input. How a refusal reaches the client is in [What a refusal looks like](../refusals.md).\n\n\
         ## At the CONNECT\n\nAnswered as the CONNECT's status with the sentence in the body and the reason phrase, or, \
         in inspect mode with `proxy.refuse_in_tunnel = true` where the last column says so, inside the tunnel as the \
         service's own error to each request.\n\n| code | status | S3 code | in the tunnel | sentence (example) |\n|---|---|---|---|---|\n"
    );
    for d in connect_refusals() {
        let tunnel = if d.deliverable_in_tunnel() { "yes" } else { "no" };
        out.push_str(&format!("| {} | {} | `{}` | {tunnel} | {} |\n", code_cell(&d), d.status(), HttpRefusal::s3_code(&d), cell(&d.to_string())));
    }
    out.push_str(
        "\n## Requests inside an inspected tunnel\n\nAnswered to the request as the service's own error (S3 REST XML, the Query \
         protocol's XML, or JSON, by the request), with the sentence as its message.\n\n| code | status | S3 code | sentence (example) |\n|---|---|---|---|\n",
    );
    for r in request_refusals() {
        out.push_str(&format!("| {} | {} | `{}` | {} |\n", code_cell(&r), r.status(), HttpRefusal::s3_code(&r), cell(&r.to_string())));
    }
    out.push_str(
        "\n## TLS handshakes\n\nA handshake that fails a check is cut on both sides and logged as `handshake_refused`; \
         passthrough sends the client the TLS alert named here first.\n\n| code | side | alert | sentence (example) |\n|---|---|---|---|\n",
    );
    for h in handshake_refusals() {
        let alert = match h.alert() {
            Some(a) => format!("{a} ({})", alert_name(a)),
            None => "none".into(),
        };
        out.push_str(&format!("| {} | {} | {alert} | {} |\n", code_cell(&h), h.side().name(), cell(&h.to_string())));
    }
    out
}

fn alert_name(a: u8) -> &'static str {
    use crate::policy::handshake::*;
    match a {
        ALERT_HANDSHAKE_FAILURE => "handshake_failure",
        ALERT_ACCESS_DENIED => "access_denied",
        ALERT_PROTOCOL_VERSION => "protocol_version",
        ALERT_UNRECOGNIZED_NAME => "unrecognized_name",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------------
// Log events
// ---------------------------------------------------------------------------------------------

pub fn events_page() -> String {
    use crate::telemetry::{fields, EVENTS};
    let mut out = format!(
        "{GENERATED}\n\n# Log events\n\nEvery decision is one line with the target `vpcgate::decision` and an `event` field, \
         written by one record type in `src/telemetry.rs` with always the same fields, in this order (besides the \
         subscriber's own `timestamp`, `level` and `target`). `log.format = \"json\"` writes one JSON object per line. \
         Client-supplied text (paths, ALPN names, targets) is written with control and non-ASCII characters escaped, \
         and query strings and userinfo are never written.\n\n| event | when |\n|---|---|\n"
    );
    for e in &EVENTS {
        out.push_str(&format!("| [`{}`](#{}) | {} |\n", e.name, e.name, cell(e.when)));
    }
    for e in &EVENTS {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n| field | meaning |\n|---|---|\n", e.name, cell(e.when)));
        for f in e.fields {
            out.push_str(&format!("| `{f}` | {} |\n", cell(fields::meaning(e.name, f).unwrap_or(""))));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// A registry with one sample in every family, so that each shows its labels.
pub fn sampled_metrics() -> crate::telemetry::Metrics {
    use crate::telemetry::{KindLabels, Metrics, RouteLabels, RouteResultLabels};
    let m = Metrics::new();
    m.connection("deny", "dualstack");
    m.tunnels_active.set(1);
    m.upstream_idle.set(1);
    m.tunnel_bytes("s3-gateway", 1, 1);
    m.dns_seconds.observe(0.001);
    m.refusal("client", "sni_mismatch");
    m.request("sigv4-header", "allow");
    Metrics::kind(&m.upstream_connections, "reused");
    Metrics::kind(&m.leaf_cache, "hit");
    Metrics::kind(&m.reloads, "ok");
    m.route_refreshes.get_or_create(&RouteResultLabels { route: "s3-gateway".into(), result: "changed" }).inc();
    m.route_proof.get_or_create(&RouteLabels { route: "s3-gateway".into() }).set(1);
    m.auth_failures.get_or_create(&KindLabels { kind: "missing" }).inc();
    m
}

/// (name, type, labels, help) of every metric, from the Prometheus text of [`sampled_metrics`].
pub fn metrics() -> Vec<(String, String, Vec<String>, String)> {
    let text = sampled_metrics().render();
    let mut out: Vec<(String, String, Vec<String>, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push((name.to_string(), String::new(), Vec::new(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let (Some(last), Some((_, ty))) = (out.last_mut(), rest.split_once(' ')) {
                last.1 = ty.to_string();
            }
        } else if let (Some(last), Some((_, labels))) = (out.last_mut(), line.split_once('{')) {
            for pair in labels.trim_end_matches(|c| c != '}').trim_end_matches('}').split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    if k != "le" && !last.2.iter().any(|l| l == k) {
                        last.2.push(k.to_string());
                    }
                }
            }
        }
    }
    out
}

pub fn metrics_page() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Metrics\n\nThe admin listener's `/metrics` (`admin.listen`, loopback by default) in the Prometheus \
         text format. Counters end in `_total` as exported; `reason` labels hold the codes of [Refusals](refusals.md).\n\n\
         | metric | type | labels | help |\n|---|---|---|---|\n"
    );
    for (name, ty, labels, help) in metrics() {
        let shown = if ty == "counter" { format!("{name}_total") } else { name.clone() };
        let labels = if labels.is_empty() { "none".to_string() } else { labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ") };
        out.push_str(&format!("| `{shown}` | {ty} | {labels} | {} |\n", cell(&help)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::check_page;
    use std::collections::HashSet;
    use strum::IntoEnumIterator;

    #[test]
    fn reference_pages_match_the_code() {
        let pages = [("config.md", config_page()), ("refusals.md", refusals_page()), ("events.md", events_page()), ("metrics.md", metrics_page())];
        let stale: Vec<String> = pages.iter().filter_map(|(name, page)| check_page(name, page).err()).collect();
        assert!(stale.is_empty(), "{}", stale.join("\n"));
    }

    #[test]
    fn every_config_key_says_what_it_means() {
        let keys = config_keys();
        assert!(keys.len() > 40, "{keys:?}");
        let silent: Vec<String> = keys.iter().filter(|k| k.4.is_empty()).map(|k| format!("{}.{}", k.0, k.1)).collect();
        assert!(silent.is_empty(), "keys without a doc comment on their config field: {silent:?}");
        // Every key of the embedded default is a documented key, with the default the file gives.
        let defaults: toml::Table = config::DEFAULT_TOML.parse().unwrap();
        for (section, table) in &defaults {
            for key in table.as_table().unwrap().keys() {
                let found = keys.iter().find(|k| k.0 == format!("[{section}]") && &k.1 == key);
                assert!(found.is_some_and(|k| k.3.starts_with('`')), "{section}.{key}: {found:?}");
            }
        }
        let mode = keys.iter().find(|k| k.1 == "mode").unwrap();
        assert_eq!((mode.2.as_str(), mode.3.as_str()), ("`\"passthrough\"` or `\"inspect\"`", "`\"inspect\"`"));
        assert!(mode.4.contains("`\"inspect\"`: Intercept TLS"), "{mode:?}");
        let timeout = keys.iter().find(|k| k.0 == "[proxy]" && k.1 == "idle_timeout").unwrap();
        assert_eq!(timeout.2, "duration");
        let name = keys.iter().find(|k| k.0 == "[[routes]]" && k.1 == "name").unwrap();
        assert_eq!(name.3, "required");
    }

    /// Codes of each catalogue, and the variants it holds, must cover every variant of the types.
    fn covers<T, D>(examples: impl IntoIterator<Item = T>) -> Vec<D>
    where
        D: IntoEnumIterator + PartialEq + std::fmt::Debug + for<'a> From<&'a T>,
    {
        let seen: Vec<D> = examples.into_iter().map(|e| D::from(&e)).collect();
        D::iter().filter(|d| !seen.contains(d)).collect()
    }

    #[test]
    fn the_refusal_catalogue_holds_every_variant() {
        use crate::policy::authority::AuthorityErrorDiscriminants;
        use crate::policy::bucket::BucketRefusalDiscriminants;
        use crate::policy::deny::DenyDiscriminants;
        use crate::policy::handshake::HandshakeRefusalDiscriminants;
        use crate::policy::request::{RequestDenyDiscriminants, UpstreamFailureDiscriminants};
        use crate::policy::tls::HelloRefusalDiscriminants;
        let deny = connect_refusals();
        let req = request_refusals();
        let hs = handshake_refusals();
        assert_eq!(covers::<_, DenyDiscriminants>(deny.clone()), vec![]);
        assert_eq!(covers::<_, RequestDenyDiscriminants>(req.clone()), vec![]);
        assert_eq!(covers::<_, HandshakeRefusalDiscriminants>(hs.clone()), vec![]);
        let authority = deny.iter().filter_map(|d| if let Deny::Authority(a) = d { Some(a.clone()) } else { None });
        assert_eq!(covers::<_, AuthorityErrorDiscriminants>(authority), vec![]);
        let buckets = deny.iter().filter_map(|d| if let Deny::Bucket { refusal, .. } = d { Some(refusal.clone()) } else { None });
        assert_eq!(covers::<_, BucketRefusalDiscriminants>(buckets.clone()), vec![]);
        let req_buckets = req.iter().filter_map(|d| if let RequestDeny::Bucket { refusal, .. } = d { Some(refusal.clone()) } else { None });
        assert_eq!(covers::<_, BucketRefusalDiscriminants>(req_buckets), vec![]);
        let upstream = req.iter().filter_map(|d| if let RequestDeny::Upstream { failure, .. } = d { Some(failure.clone()) } else { None });
        assert_eq!(covers::<_, UpstreamFailureDiscriminants>(upstream), vec![]);
        let hello = hs.iter().filter_map(|d| if let HandshakeRefusal::Hello(h) = d { Some(h.clone()) } else { None });
        assert_eq!(covers::<_, HelloRefusalDiscriminants>(hello), vec![]);
        // Every sentence says something, and each HTTP refusal's sentence names a change to make.
        for d in &deny {
            assert!(!d.to_string().is_empty() && !d.code().is_empty(), "{d:?}");
        }
        let codes: HashSet<&str> = deny.iter().map(|d| d.code()).chain(req.iter().map(|r| r.code())).chain(hs.iter().map(|h| h.code())).collect();
        assert!(codes.len() > 60, "{codes:?}");
    }

    #[test]
    fn every_field_of_every_event_has_a_meaning() {
        use crate::telemetry::{fields, EVENTS};
        let names: HashSet<&str> = EVENTS.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), EVENTS.len());
        for e in &EVENTS {
            for f in e.fields {
                assert!(fields::meaning(e.name, f).is_some_and(|m| !m.is_empty()), "{}.{f} has no meaning in telemetry::fields::MEANINGS", e.name);
            }
        }
        // No meaning for a field no event has, nor for an event that does not exist.
        for (event, field, _) in fields::MEANINGS {
            assert!(event.is_empty() || names.contains(event), "{event}");
            assert!(EVENTS.iter().any(|e| (event.is_empty() || e.name == *event) && e.fields.contains(field)), "{event}.{field}");
        }
    }

    #[test]
    fn every_metric_shows_its_labels() {
        let ms = metrics();
        assert!(ms.len() >= 13, "{ms:?}");
        let rendered = sampled_metrics().render();
        for (name, ty, labels, help) in &ms {
            assert!(!ty.is_empty() && !help.is_empty(), "{name}");
            // A family without a sample would show no labels: sampled_metrics must touch it.
            let sample = rendered.lines().any(|l| !l.starts_with('#') && l.starts_with(&format!("vpcgate_{}", name.trim_start_matches("vpcgate_"))));
            assert!(sample, "{name} has no sample in sampled_metrics (labels {labels:?})");
        }
        let conn = ms.iter().find(|m| m.0 == "vpcgate_connections").expect("vpcgate_connections");
        assert_eq!(conn.2, ["decision", "reason"]);
    }
}

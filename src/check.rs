//! `vpcgate check`: a doctor for a host. Network checks (DNS servers, each region's S3 name through
//! each route, a TLS handshake with forward secrecy through the route) and local checks (CA files,
//! the client environment and AWS config file). One line per check: pass, warn or fail with the fix.
//!
//! The client-setup checks are pure functions over the environment and the config file text, so
//! they are unit-tested without touching the process environment.

use crate::config::{DnsServers, Loaded, TlsMode};
use crate::dns::Dns;
use crate::explain::explain;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    pub level: Level,
    pub check: String,
    pub detail: String,
}

/// One line of a doctor's output (`check`, `audit`).
pub fn line(level: Level, check: impl Into<String>, detail: impl Into<String>) -> Line {
    Line { level, check: check.into(), detail: detail.into() }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Pass => "pass",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag}  {:<28} {}", self.check, self.detail)
    }
}

/// Bound on every network step of `check`, whatever the configuration says: it must run in seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Run every check. `env` is the process environment; `aws_config` the text of the AWS config file (if any) and its path.
pub async fn run(l: &Loaded, buckets: &[String], env: &HashMap<String, String>, aws_config: Option<(String, String)>) -> Vec<Line> {
    let mut out = Vec::new();
    let dns_timeout = l.settings.dns.timeout.min(STEP_TIMEOUT);

    // DNS servers, one at a time, so that an unreachable one is named.
    let servers: Vec<DnsServers> = match &l.dns {
        DnsServers::System => vec![DnsServers::System],
        DnsServers::List(list) => list.iter().map(|s| DnsServers::List(vec![*s])).collect(),
    };
    let probe = format!("s3.{}.amazonaws.com", l.regions[0]);
    for s in &servers {
        let label = format!("dns server {s}");
        match Dns::new(s, dns_timeout) {
            Err(e) => out.push(line(Level::Fail, label, e)),
            Ok(d) => {
                let started = Instant::now();
                match d.lookup_a(&probe).await {
                    Ok(a) => out.push(line(Level::Pass, label, format!("answered {probe} in {} ms ({} A records)", started.elapsed().as_millis(), a.len()))),
                    Err(e) => out.push(line(Level::Fail, label, format!("{probe}: {e}; make the server reachable or change dns.servers"))),
                }
            }
        }
    }

    // Each region's S3 name (and any bucket asked for) through each route.
    let dns = match Dns::new(&l.dns, dns_timeout) {
        Ok(d) => d,
        Err(e) => {
            out.push(line(Level::Fail, "dns", e));
            return finish(out, l, env, aws_config);
        }
    };
    let tls = crate::proxy::upstream::client_config(&extra_roots(l, &mut out)).ok();
    for region in &l.regions {
        let mut hosts = vec![format!("s3.{region}.amazonaws.com")];
        hosts.extend(buckets.iter().map(|b| format!("{b}.s3.{region}.amazonaws.com")));
        // Each other service's route with its own service's name.
        for r in l.routes.iter().filter(|r| r.service != crate::routes::S3) {
            hosts.extend(probe_host(&r.service, region).filter(|h| !hosts.contains(h)));
        }
        for host in hosts {
            let service = crate::policy::host::classify(&host).service().to_string();
            for (i, route) in l.routes.iter().enumerate().filter(|(_, r)| r.service == service) {
                let mut one = l.clone();
                one.routes = vec![l.routes[i].clone()];
                let label = format!("{host} via {}", route.name);
                let ex = explain(&one, &dns, &host, &l.own_addresses(), None).await;
                match &ex.chosen {
                    None if ex.reason.as_deref() == Some("no_route_for_class") => out.push(line(Level::Warn, label, ex.message.clone().unwrap_or_default())),
                    None => out.push(line(Level::Fail, label, ex.message.clone().unwrap_or_default())),
                    Some(c) => {
                        out.push(line(Level::Pass, label.clone(), format!("{} inside {} {}", c.addr, c.route, c.cidr)));
                        if let Some(tls) = &tls {
                            let addr: SocketAddr = c.addr.parse().expect("explain writes socket addresses");
                            out.push(handshake(tls, &host, addr).await);
                        }
                    }
                }
            }
        }
    }
    finish(out, l, env, aws_config)
}

fn extra_roots(l: &Loaded, out: &mut Vec<Line>) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let mut v = Vec::new();
    for p in &l.settings.tls.extra_roots {
        match crate::certs::read_pem_certs(p) {
            Ok(mut c) => v.append(&mut c),
            Err(e) => out.push(line(Level::Fail, "tls.extra_roots", e)),
        }
    }
    v
}

async fn handshake(tls: &rustls::ClientConfig, host: &str, addr: SocketAddr) -> Line {
    let label = format!("tls {host}");
    let name = match rustls::pki_types::ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => return line(Level::Fail, label, e.to_string()),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls.clone()));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("TCP to {addr} failed ({e}); check the route to the endpoint"))?;
        let s = connector.connect(name, tcp).await.map_err(|e| crate::proxy::upstream::explain_tls_error(host, addr, &e))?;
        let c = s.get_ref().1;
        Ok::<_, String>((crate::proxy::upstream::version_name(c.protocol_version()), crate::proxy::upstream::suite_name(c.negotiated_cipher_suite())))
    };
    match tokio::time::timeout(STEP_TIMEOUT, attempt).await {
        Err(_) => line(Level::Fail, label, format!("no TLS handshake with {addr} within {}s; check the route", STEP_TIMEOUT.as_secs())),
        Ok(Err(e)) => line(Level::Fail, label, e),
        Ok(Ok((v, c))) => line(Level::Pass, label, format!("{v} {c} with {addr} (forward secret)")),
    }
}

fn finish(mut out: Vec<Line>, l: &Loaded, env: &HashMap<String, String>, aws_config: Option<(String, String)>) -> Vec<Line> {
    out.extend(ca_checks(l));
    let ca_pem = std::fs::read_to_string(&l.settings.tls.ca_cert).ok();
    let bundle = env.get("AWS_CA_BUNDLE").and_then(|p| std::fs::read_to_string(p).ok());
    out.extend(client_checks(l, env, aws_config.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), ca_pem.as_deref(), bundle.as_deref()));
    out
}

fn ca_checks(l: &Loaded) -> Vec<Line> {
    let t = &l.settings.tls;
    if t.mode != TlsMode::Inspect {
        return vec![line(Level::Pass, "ca", "passthrough mode: no CA needed")];
    }
    if !t.ca_cert.exists() && !t.ca_key.exists() {
        return vec![line(
            Level::Warn,
            "ca",
            format!("{} does not exist yet; run `vpcgate ca init` (vpcgate run also creates it on first start)", t.ca_cert.display()),
        )];
    }
    match crate::certs::Ca::load_or_create(&t.ca_cert, &t.ca_key, &t.ca_extra_names, false) {
        Ok(_) => vec![line(
            Level::Pass,
            "ca",
            format!("{} with key {} (mode {:o})", t.ca_cert.display(), t.ca_key.display(), crate::certs::key_mode(&t.ca_key).unwrap_or(0)),
        )],
        Err(e) => vec![line(Level::Fail, "ca", e.to_string())],
    }
}

fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

/// The client-side checks: proxy variables, NO_PROXY, AWS_CA_BUNDLE, the AWS config file, and
/// the us-east-1 regional endpoint setting. Pure.
pub fn client_checks(
    l: &Loaded,
    env: &HashMap<String, String>,
    aws_config: Option<(&str, &str)>,
    ca_pem: Option<&str>,
    bundle_text: Option<&str>,
) -> Vec<Line> {
    let mut out = proxy_env_checks(l, env);
    if env.get("AWS_STS_REGIONAL_ENDPOINTS").is_some_and(|v| v.trim().eq_ignore_ascii_case("legacy")) {
        out.push(line(
            Level::Fail,
            "AWS_STS_REGIONAL_ENDPOINTS",
            "is legacy, so SDKs call the global sts.amazonaws.com, which no VPC endpoint serves; export AWS_STS_REGIONAL_ENDPOINTS=regional",
        ));
    }
    if l.settings.tls.mode == TlsMode::Inspect {
        match (env.get("AWS_CA_BUNDLE"), bundle_text, ca_pem) {
            (None, _, _) => out.push(line(
                Level::Fail,
                "AWS_CA_BUNDLE",
                format!("not set, so botocore will not trust vpcgate's certificates; export AWS_CA_BUNDLE={}", l.settings.tls.ca_cert.display()),
            )),
            (Some(p), None, _) => out.push(line(Level::Fail, "AWS_CA_BUNDLE", format!("{p} cannot be read; point it at {}", l.settings.tls.ca_cert.display()))),
            (Some(p), Some(b), Some(ca)) if b.contains(ca.trim()) => out.push(line(Level::Pass, "AWS_CA_BUNDLE", format!("{p} contains vpcgate's CA"))),
            (Some(p), Some(_), _) => out.push(line(
                Level::Fail,
                "AWS_CA_BUNDLE",
                format!(
                    "{p} does not contain vpcgate's CA {}; export AWS_CA_BUNDLE={} (or `vpcgate ca bundle > bundle.pem`)",
                    l.settings.tls.ca_cert.display(),
                    l.settings.tls.ca_cert.display()
                ),
            )),
        }
    }
    if env.get("AWS_USE_DUALSTACK_ENDPOINT").is_some_and(|v| truthy(v)) {
        out.push(line(Level::Fail, "AWS_USE_DUALSTACK_ENDPOINT", "is true, and vpcgate refuses dual-stack names; unset it or set it to false"));
    }
    let mut regional = env.get("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT").map(|v| v.trim().eq_ignore_ascii_case("regional"));
    if let Some((path, text)) = aws_config {
        let (problems, us_east_1) = aws_config_problems(text);
        regional = us_east_1.or(regional);
        if problems.is_empty() {
            out.push(line(Level::Pass, "aws config", format!("{path}: no dual-stack, accelerate or old signature settings")));
        } else {
            out.push(line(Level::Fail, "aws config", format!("{path}: {}", problems.join("; "))));
        }
    }
    if l.regions.iter().any(|r| r == "us-east-1") {
        match regional {
            Some(true) => out.push(line(Level::Pass, "us-east-1 endpoint", "regional")),
            _ => out.push(line(
                Level::Warn,
                "us-east-1 endpoint",
                "botocore uses the legacy global name bucket.s3.amazonaws.com in us-east-1, which vpcgate allows only when it resolves into a route; export AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional",
            )),
        }
    }
    out
}

/// HTTPS_PROXY (and its lower-case twin) points at this vpcgate, NO_PROXY sends no AWS name
/// around it and, when a proxy variable points here, lets the credential endpoints bypass it.
fn proxy_env_checks(l: &Loaded, env: &HashMap<String, String>) -> Vec<Line> {
    let mut out = Vec::new();
    let listen = l.settings.proxy.listen;
    let want_host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    let wants = [format!("http://{want_host}:{}", listen.port()), format!("http://localhost:{}", listen.port())];
    // botocore: the lower-case variable wins when both are set.
    let (name, value) = match (env.get("https_proxy"), env.get("HTTPS_PROXY")) {
        (Some(v), _) => ("https_proxy", Some(v)),
        (None, Some(v)) => ("HTTPS_PROXY", Some(v)),
        (None, None) => ("HTTPS_PROXY", None),
    };
    let here = |v: &String| wants.iter().any(|w| v.trim_end_matches('/') == w);
    let points_here = ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"].iter().any(|k| env.get(*k).is_some_and(here));
    match value {
        None => out.push(line(Level::Fail, "HTTPS_PROXY", format!("not set; export HTTPS_PROXY={}", wants[0]))),
        Some(v) if wants.iter().any(|w| v.trim_end_matches('/') == w) => out.push(line(Level::Pass, name, format!("{v} is this vpcgate"))),
        Some(v) => out.push(line(Level::Fail, name, format!("{v} is not this vpcgate; export {name}={}", wants[0]))),
    }
    if let (Some(a), Some(b)) = (env.get("https_proxy"), env.get("HTTPS_PROXY")) {
        if a != b {
            out.push(line(
                Level::Warn,
                "https_proxy",
                format!("https_proxy={a} and HTTPS_PROXY={b} differ; botocore uses https_proxy, other tools may not; set both alike"),
            ));
        }
    }
    for var in ["NO_PROXY", "no_proxy"] {
        if let Some(v) = env.get(var) {
            let bad: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| {
                    let e = e.trim_start_matches("*.").trim_start_matches('.');
                    e == "*" || e == "amazonaws.com" || e == "amazonaws.com.cn" || e.ends_with(".amazonaws.com")
                })
                .collect();
            if bad.is_empty() {
                out.push(line(Level::Pass, var, "does not exempt AWS names"));
            } else {
                out.push(line(
                    Level::Fail,
                    var,
                    format!("{} sends AWS traffic around vpcgate; remove it from {var} (keep 169.254.169.254 for instance metadata)", bad.join(",")),
                ));
            }
        }
    }
    if points_here {
        out.push(credential_bypass(env));
    }
    out
}

/// What the AWS config file sets that vpcgate refuses (one sentence per line found), and its
/// `us_east_1_regional_endpoint` when set (the last one wins, as in the file).
fn aws_config_problems(text: &str) -> (Vec<String>, Option<bool>) {
    let mut problems = Vec::new();
    let mut regional = None;
    for (n, raw) in text.lines().enumerate() {
        let l = raw.split(['#', ';']).next().unwrap_or("").trim();
        let Some((k, v)) = l.split_once('=') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "use_dualstack_endpoint" if truthy(v) => problems.push(format!("line {}: use_dualstack_endpoint = {v}; set it to false", n + 1)),
            "use_accelerate_endpoint" if truthy(v) => problems.push(format!("line {}: use_accelerate_endpoint = {v}; set it to false", n + 1)),
            "signature_version" if !v.eq_ignore_ascii_case("s3v4") => problems.push(format!("line {}: signature_version = {v}; set it to s3v4", n + 1)),
            "us_east_1_regional_endpoint" => regional = Some(v.eq_ignore_ascii_case("regional")),
            "sts_regional_endpoints" if v.eq_ignore_ascii_case("legacy") => {
                problems.push(format!("line {}: sts_regional_endpoints = {v}, the global STS name no VPC endpoint serves; set it to regional", n + 1))
            }
            _ => {}
        }
    }
    (problems, regional)
}

/// With the proxy variables pointing at vpcgate, the credential endpoints SDKs read over plain
/// HTTP (instance metadata, ECS, EKS Pod Identity) must be in NO_PROXY, or every credential fetch
/// goes to vpcgate, which refuses it. Each variable set is checked (tools read one or the other).
fn credential_bypass(env: &HashMap<String, String>) -> Line {
    use crate::policy::deny::NO_PROXY_CREDENTIALS;
    let set: Vec<(&str, &String)> = ["NO_PROXY", "no_proxy"].iter().filter_map(|k| env.get(*k).map(|v| (*k, v))).collect();
    if set.is_empty() {
        return line(Level::Fail, "credential endpoints", format!("NO_PROXY is not set, so SDKs ask vpcgate for their credentials (IMDS, ECS, EKS Pod Identity), which it refuses; export NO_PROXY={NO_PROXY_CREDENTIALS} (and no_proxy)"));
    }
    let mut missing = Vec::new();
    for (var, v) in &set {
        let entries: Vec<&str> = v.split(',').map(str::trim).collect();
        let lacks: Vec<&str> = NO_PROXY_CREDENTIALS.split(',').filter(|a| !entries.contains(a)).collect();
        if !lacks.is_empty() {
            missing.push(format!("{var} lacks {}", lacks.join(",")));
        }
    }
    if missing.is_empty() {
        line(Level::Pass, "credential endpoints", format!("{NO_PROXY_CREDENTIALS} bypass the proxy"))
    } else {
        line(Level::Fail, "credential endpoints", format!("{}, so SDKs ask vpcgate for their credentials, which it refuses; add them", missing.join("; ")))
    }
}

/// The name `check` probes for a route: its service's regional name (S3's is checked per bucket
/// too). `None` for services whose names need an account (ECR's registry names).
pub fn probe_host(service: &str, region: &str) -> Option<String> {
    match service {
        "ecr.dkr" => None,
        "ecr.api" => Some(format!("api.ecr.{region}.amazonaws.com")),
        s if !s.contains('.') => Some(format!("{s}.{region}.amazonaws.com")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Sources};

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    fn levels(lines: &[Line]) -> Vec<(String, Level)> {
        lines.iter().map(|l| (l.check.clone(), l.level)).collect()
    }

    #[test]
    fn good_client_setup_passes() {
        let l = load(&Sources::default(), &[]).unwrap();
        let e = env(&[
            ("HTTPS_PROXY", "http://127.0.0.1:3128"),
            ("NO_PROXY", "169.254.169.254,169.254.170.2,169.254.170.23,localhost"),
            ("AWS_CA_BUNDLE", "/x/ca.pem"),
            ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "regional"),
        ]);
        let cfg = "[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n";
        let lines = client_checks(&l, &e, Some(("~/.aws/config", cfg)), Some("CA"), Some("xx\nCA\nyy"));
        assert!(lines.iter().all(|l| l.level == Level::Pass), "{lines:#?}");
    }

    #[test]
    fn bad_client_setup_fails_with_fixes() {
        let l = load(&Sources::default(), &[]).unwrap();
        let e = env(&[
            ("https_proxy", "http://10.9.9.9:8080"),
            ("HTTPS_PROXY", "http://127.0.0.1:3128"),
            ("no_proxy", ".amazonaws.com"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "true"),
        ]);
        let cfg = "[profile dev]\ns3 =\n  use_dualstack_endpoint = true\n  signature_version = s3\n";
        let lines = client_checks(&l, &e, Some(("cfg", cfg)), Some("CA"), None);
        let lv = levels(&lines);
        for (check, level) in [
            ("https_proxy", Level::Fail),
            ("no_proxy", Level::Fail),
            ("AWS_CA_BUNDLE", Level::Fail),
            ("AWS_USE_DUALSTACK_ENDPOINT", Level::Fail),
            ("aws config", Level::Fail),
            ("us-east-1 endpoint", Level::Warn),
        ] {
            assert!(lv.contains(&(check.to_string(), level)), "{check}: {lines:#?}");
        }
        let creds = lines.iter().find(|l| l.check == "credential endpoints").unwrap();
        assert_eq!(creds.level, Level::Fail);
        assert!(creds.detail.contains("no_proxy lacks 169.254.169.254,169.254.170.2,169.254.170.23"), "{}", creds.detail);
        let cfg_line = lines.iter().find(|l| l.check == "aws config").unwrap();
        assert!(cfg_line.detail.contains("line 3") && cfg_line.detail.contains("line 4"), "{}", cfg_line.detail);
        assert!(lines.iter().filter(|l| l.level == Level::Fail).all(|l| l.detail.contains(';') || l.detail.contains("export")), "{lines:#?}");
    }

    #[test]
    fn credential_endpoints_must_bypass_a_proxy_that_is_this_vpcgate() {
        let l = load(&Sources::default(), &[]).unwrap();
        let check = |pairs: &[(&str, &str)]| client_checks(&l, &env(pairs), None, None, None).into_iter().find(|l| l.check == "credential endpoints");
        let unset = check(&[("HTTPS_PROXY", "http://127.0.0.1:3128")]).unwrap();
        assert!(unset.level == Level::Fail && unset.detail.contains("export NO_PROXY=169.254.169.254,169.254.170.2,169.254.170.23"), "{unset:?}");
        let partial = check(&[("HTTP_PROXY", "http://127.0.0.1:3128"), ("NO_PROXY", "169.254.169.254")]).unwrap();
        assert!(partial.level == Level::Fail && partial.detail.contains("NO_PROXY lacks 169.254.170.2,169.254.170.23"), "{partial:?}");
        let good = check(&[("HTTPS_PROXY", "http://127.0.0.1:3128"), ("NO_PROXY", "localhost, 169.254.169.254,169.254.170.2,169.254.170.23")]).unwrap();
        assert_eq!(good.level, Level::Pass);
        // A proxy that is not this vpcgate is another check's business.
        assert!(check(&[("HTTPS_PROXY", "http://10.0.0.1:8080")]).is_none());
        let sts =
            client_checks(&l, &env(&[("AWS_STS_REGIONAL_ENDPOINTS", "legacy")]), Some(("cfg", "[default]\nsts_regional_endpoints = legacy\n")), None, None);
        assert!(sts.iter().any(|l| l.check == "AWS_STS_REGIONAL_ENDPOINTS" && l.level == Level::Fail), "{sts:#?}");
        assert!(sts.iter().any(|l| l.check == "aws config" && l.detail.contains("sts_regional_endpoints = legacy")), "{sts:#?}");
        assert_eq!(probe_host("sts", "us-east-1").as_deref(), Some("sts.us-east-1.amazonaws.com"));
        assert_eq!(probe_host("ecr.api", "us-east-1").as_deref(), Some("api.ecr.us-east-1.amazonaws.com"));
        assert_eq!(probe_host("ecr.dkr", "us-east-1"), None);
    }
}

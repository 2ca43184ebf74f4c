//! `vpcgate explain HOST[:PORT]`, `s3://BUCKET/KEY` or `https://HOST/PATH`: the whole CONNECT
//! decision (and, for a URL, the request's bucket perimeter decision) as a dry run, without
//! connecting.
//! The proxy's own decision function ([`crate::proxy::connect::decide`]) with the same inputs and
//! the same list of vpcgate's own addresses, with every candidate name resolved through the
//! configured DNS servers so that each answer can be shown with the route it falls in.

use crate::config::Loaded;
use crate::dns::Dns;
use crate::policy::connect::Candidate;
use crate::policy::deny::Deny;
use crate::policy::host::classify;
use crate::proxy::connect::{decide, ConnectRecord, Inputs};
use crate::routes::RouteKind;
use serde::Serialize;
use std::net::SocketAddr;

#[derive(Debug, Serialize)]
pub struct AddressFact {
    pub addr: String,
    /// The route and CIDR that contain this address, if any candidate route does.
    pub route: Option<String>,
    pub cidr: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NameFact {
    pub name: String,
    /// Which route asked for this name.
    pub for_routes: Vec<String>,
    pub addresses: Vec<AddressFact>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Chosen {
    pub addr: String,
    pub route: String,
    pub cidr: String,
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub target: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub class: Option<String>,
    pub region: Option<String>,
    /// The AWS service whose routes may carry the name (`s3`, `sts`, …).
    pub service: Option<String>,
    pub regions: Vec<String>,
    pub candidate_routes: Vec<String>,
    pub dns_servers: String,
    pub dns: Vec<NameFact>,
    pub decision: &'static str,
    pub reason: Option<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
    pub chosen: Option<Chosen>,
    /// For `s3://…` and `https://…`: the request's path and what the perimeter decides for it.
    pub request: Option<RequestFact>,
}

#[derive(Debug, Serialize)]
pub struct RequestFact {
    pub path: String,
    pub bucket: String,
    pub decision: &'static str,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `s3://BUCKET/KEY` as the name and path an SDK uses in the first carried region (virtual-hosted,
/// or path-style for a bucket with dots, as botocore does), `https://HOST[:PORT]/PATH` as given;
/// anything else is a CONNECT target without a request.
fn split_target(raw: &str, region: &str) -> (String, Option<String>) {
    if let Some(rest) = raw.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        return if bucket.contains('.') {
            (format!("s3.{region}.amazonaws.com:443"), Some(format!("/{bucket}/{key}")))
        } else {
            (format!("{bucket}.s3.{region}.amazonaws.com:443"), Some(format!("/{key}")))
        };
    }
    if let Some(rest) = raw.strip_prefix("https://") {
        let (authority, path) = rest.find('/').map(|i| (&rest[..i], &rest[i..])).unwrap_or((rest, "/"));
        let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:443") };
        return (authority, Some(path.split('?').next().unwrap_or("/").to_string()));
    }
    (if raw.contains(':') { raw.to_string() } else { format!("{raw}:443") }, None)
}

/// Explain a target such as `my-bucket.s3.us-east-1.amazonaws.com` or `…:443`.
/// `client_buckets`: the bucket list of the client explained for (`--client`), if it has one.
pub async fn explain(l: &Loaded, dns: &Dns, raw: &str, own: &[SocketAddr], client_buckets: Option<&crate::policy::bucket::BucketRules>) -> Explanation {
    let (target_s, path) = split_target(raw, l.regions.first().map(String::as_str).unwrap_or("us-east-1"));
    let mut ex = Explanation {
        target: target_s.clone(),
        host: None,
        port: None,
        class: None,
        region: None,
        service: None,
        regions: l.regions.clone(),
        candidate_routes: Vec::new(),
        dns_servers: dns.servers().to_string(),
        dns: Vec::new(),
        decision: "deny",
        reason: None,
        status: None,
        message: None,
        chosen: None,
        request: None,
    };
    let deny = |ex: &mut Explanation, d: Deny| {
        ex.reason = Some(d.code().to_string());
        ex.status = Some(d.status());
        ex.message = Some(d.to_string());
    };
    // The proxy's own decision, with every candidate name resolved so that each answer shows.
    let inspect = l.settings.tls.mode == crate::config::TlsMode::Inspect;
    let inputs = Inputs { config: l, dns, own, inspect, client_buckets, dns_seconds: None, every_answer: true };
    let mut d = ConnectRecord::default();
    let decided = decide(&inputs, &target_s, &mut d).await;
    if !d.host.is_empty() {
        let class = classify(&d.host);
        ex.host = Some(d.host.clone());
        ex.port = Some(d.port);
        ex.class = Some(class.name().to_string());
        ex.region = class.region().map(str::to_string);
        ex.service = Some(class.service().to_string()).filter(|s| !s.is_empty());
    }
    ex.candidate_routes = d.candidates.iter().map(|c| candidate_text(l, c)).collect();
    ex.dns = d.answers.iter().map(|a| name_fact(l, &d.candidates, a)).collect();
    let target = match decided {
        Ok((target, c)) => {
            ex.decision = "allow";
            ex.chosen =
                Some(Chosen { addr: SocketAddr::from((c.addr, target.port)).to_string(), route: l.routes[c.route].name.clone(), cidr: c.cidr.to_string() });
            target
        }
        Err(e) => {
            deny(&mut ex, e);
            return ex;
        }
    };
    let class = classify(&target.host);
    // The bucket perimeter is S3's: another service's request names no bucket.
    if let (Some(path), "allow", true) = (path, ex.decision, class.is_s3()) {
        let fact = request_fact(l, client_buckets, &target.host, &class, path);
        if fact.decision == "deny" {
            ex.decision = "deny";
        }
        ex.request = Some(fact);
    }
    ex
}

/// A candidate route as `explain` lists it.
fn candidate_text(l: &Loaded, c: &Candidate) -> String {
    let r = &l.routes[c.route];
    match r.kind {
        RouteKind::Gateway => format!("{} ({} gateway, {} CIDRs)", r.name, r.service, r.cidrs.len()),
        RouteKind::Interface => format!("{} ({} interface via {}, {} CIDRs)", r.name, r.service, c.resolve, r.cidrs.len()),
    }
}

/// One DNS name's answers, each with the route and CIDR of the candidates that asked for it.
fn name_fact(l: &Loaded, candidates: &[Candidate], a: &crate::policy::deny::Answer) -> NameFact {
    let asking: Vec<&Candidate> = candidates.iter().filter(|c| c.resolve == a.name).collect();
    let for_routes: Vec<String> = asking.iter().map(|c| l.routes[c.route].name.clone()).collect();
    let mut fact = NameFact { name: a.name.clone(), for_routes, addresses: Vec::new(), error: None };
    match &a.result {
        Ok(addrs) => {
            for addr in addrs {
                let hit = asking.iter().find_map(|c| l.routes[c.route].cidr_for(*addr).map(|n| (l.routes[c.route].name.clone(), n.to_string())));
                fact.addresses.push(AddressFact { addr: addr.to_string(), route: hit.as_ref().map(|h| h.0.clone()), cidr: hit.map(|h| h.1) });
            }
        }
        Err(e) => fact.error = Some(e.clone()),
    }
    fact
}

/// What inspect mode decides for the request itself under the bucket perimeter (passthrough
/// sees no request).
fn request_fact(
    l: &Loaded,
    client_buckets: Option<&crate::policy::bucket::BucketRules>,
    host: &str,
    class: &crate::policy::host::HostClass,
    path: String,
) -> RequestFact {
    let named = crate::policy::bucket::named_by(host, class, &path);
    let verdict = l.buckets.check(&named).and_then(|()| client_buckets.map_or(Ok(()), |rules| rules.check(&named)));
    let d = verdict.err().map(|refusal| crate::policy::request::RequestDeny::Bucket { refusal, copy: false });
    RequestFact {
        path,
        bucket: named.log_name(),
        decision: if d.is_some() { "deny" } else { "allow" },
        reason: d.as_ref().map(|d| d.code().to_string()),
        message: d.as_ref().map(|d| d.to_string()),
    }
}

impl Explanation {
    /// The human form: one fact per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
        line("target", self.target.clone());
        if let Some(c) = &self.class {
            let region = self.region.as_deref().map(|r| format!(", region {r}")).unwrap_or_default();
            let service = self.service.as_deref().map(|s| format!(", service {s}")).unwrap_or_default();
            line("class", format!("{c}{service}{region} (carried regions: {})", self.regions.join(", ")));
        }
        if !self.candidate_routes.is_empty() {
            line("routes", self.candidate_routes.join("; "));
        }
        if !self.dns.is_empty() {
            line("dns", format!("via {} (A records only)", self.dns_servers));
        }
        for n in &self.dns {
            let detail = match &n.error {
                Some(e) => format!("error: {e}"),
                None if n.addresses.is_empty() => "no A record".to_string(),
                None => n
                    .addresses
                    .iter()
                    .map(|a| match (&a.route, &a.cidr) {
                        (Some(r), Some(c)) => format!("{} (inside {r} {c})", a.addr),
                        _ => format!("{} (outside every route)", a.addr),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            line("  answer", format!("{} -> {detail}", n.name));
        }
        match (&self.chosen, &self.message) {
            (Some(c), _) => line("decision", format!("allow: dial {} via route {} ({})", c.addr, c.route, c.cidr)),
            (None, Some(m)) => line("decision", format!("deny ({}, HTTP {}): {m}", self.reason.as_deref().unwrap_or(""), self.status.unwrap_or(403))),
            _ => {}
        }
        if let Some(r) = &self.request {
            let verdict = match (&r.reason, &r.message) {
                (Some(code), Some(m)) => format!("deny ({code}, HTTP 403): {m}"),
                _ => "allow".to_string(),
            };
            line("request", format!("{} (bucket {}): {verdict}", r.path, r.bucket));
        }
        out
    }
}

//! The audit's judgements: pure functions from what AWS said ([`super::facts`]) and the loaded
//! routes to `pass`/`WARN`/`FAIL` lines, each with the fix in one sentence.

use super::facts::{Endpoint, NetworkInterface, PrefixList, RouteTable, SecurityGroup};
use crate::check::{line, Level, Line};
use crate::routes::Route;
use ipnet::Ipv4Net;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The name AWS gives the prefix list of a gateway endpoint's service in a region.
pub fn gateway_list_name(region: &str, service: &str) -> String {
    format!("com.amazonaws.{region}.{service}")
}

/// Which route table a subnet uses, and how it came to use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Association {
    /// The subnet is associated with the table itself.
    Explicit,
    /// The subnet has no association of its own: the VPC's main table serves it.
    Main,
}

/// The subnet's effective route table: its explicit association, else the VPC's main table.
pub fn effective_table<'a>(tables: &'a [RouteTable], subnet: &str, vpc: &str) -> Option<(&'a RouteTable, Association)> {
    tables
        .iter()
        .find(|t| t.subnets.iter().any(|s| s == subnet))
        .map(|t| (t, Association::Explicit))
        .or_else(|| tables.iter().find(|t| t.main && t.vpc == vpc).map(|t| (t, Association::Main)))
}

fn table_text(t: &RouteTable, how: Association, subnet: &str) -> String {
    match how {
        Association::Explicit => format!("{} (associated with {subnet})", t.id),
        Association::Main => format!("{} (the VPC's main table: {subnet} has no association of its own)", t.id),
    }
}

/// What the route proof of a gateway route rests on, when it holds: for the connect events and
/// `[audit] require`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proof {
    pub route_table: String,
    pub prefix_list: String,
    pub prefix_list_version: Option<u64>,
    pub endpoint: String,
}

/// The gateway-route checks: the prefix list is the region's list of the route's service, the
/// subnet's effective table sends it (active) to an available gateway endpoint of the same VPC, the
/// route's CIDRs are the list's entries, and the endpoint policy is not the default allow-all.
/// `list` is the prefix list found (by the route's `prefix_list` or by the region's name), with its
/// entries. Returns the lines and, when the route table and the endpoint hold, the proof.
pub fn gateway_route(
    route: &Route,
    region: &str,
    list: Option<(&PrefixList, &[Ipv4Net])>,
    table: Option<(&RouteTable, Association)>,
    subnet: &str,
    endpoints: &[Endpoint],
) -> (Vec<Line>, Option<Proof>) {
    let mut out = Vec::new();
    let expected = gateway_list_name(region, &route.service);
    let label = |what: &str| format!("{what} {}", route.name);
    let Some((list, entries)) = list else {
        out.push(line(
            Level::Fail,
            label("prefix list"),
            format!("no prefix list {expected} answered in {region}; check aws.regions (or the route's region) and that the account sees AWS-managed lists"),
        ));
        return (out, None);
    };
    if list.name != expected {
        out.push(line(
            Level::Fail,
            label("prefix list"),
            format!("{} is {:?}, not {expected}, the list a gateway endpoint routes; name {expected} (or its ID) in the route", list.id, list.name),
        ));
    } else {
        out.push(line(
            Level::Pass,
            label("prefix list"),
            format!("{} is {expected} ({}{} entries)", list.id, list.version.map(|v| format!("version {v}, ")).unwrap_or_default(), entries.len()),
        ));
    }

    // CIDRs: the route's against the list's.
    let have: BTreeSet<Ipv4Net> = route.cidrs.iter().copied().collect();
    let want: BTreeSet<Ipv4Net> = entries.iter().copied().collect();
    let extra: Vec<String> = have.difference(&want).map(|c| c.to_string()).collect();
    let missing: Vec<String> = want.difference(&have).map(|c| c.to_string()).collect();
    let fix = format!("set prefix_list = \"{}\" in the route so that vpcgate follows the list, or regenerate its cidrs_file", list.id);
    match (extra.is_empty(), missing.is_empty()) {
        (true, true) => out.push(line(Level::Pass, label("cidrs"), format!("the route's {} CIDRs are the entries of {}", have.len(), list.id))),
        (false, _) => out.push(line(
            Level::Fail,
            label("cidrs"),
            format!(
                "the route allows {} that {} does not hold (the route table does not send it to the endpoint){}; {fix}",
                extra.join(" "),
                list.id,
                if missing.is_empty() { String::new() } else { format!(", and lacks {}", missing.join(" ")) }
            ),
        )),
        (true, false) => out.push(line(
            Level::Warn,
            label("cidrs"),
            format!("the route lacks {} of {}, so vpcgate refuses those private addresses; {fix}", missing.join(" "), list.id),
        )),
    }

    // The route table.
    let Some((t, how)) = table else {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!(
                "{subnet} has no route table answered (neither its own association nor the VPC's main table); check the subnet ID and ec2:DescribeRouteTables"
            ),
        ));
        return (out, None);
    };
    let where_ = table_text(t, how, subnet);
    let found: Vec<_> = t.routes.iter().filter(|r| r.destination_prefix_list.as_deref() == Some(list.id.as_str())).collect();
    let gateways: Vec<&Endpoint> = endpoints.iter().filter(|e| e.kind.eq_ignore_ascii_case("gateway") && e.service == expected).collect();
    let add = match gateways.first() {
        Some(e) => format!("aws ec2 modify-vpc-endpoint --vpc-endpoint-id {} --add-route-table-ids {}", e.id, t.id),
        None => format!("create a gateway endpoint for {expected} in {} with route table {}", t.vpc, t.id),
    };
    let Some(r) = found.first() else {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!(
                "{where_} has no route for {}, so these addresses leave by the internet or NAT gateway, not {}; add it ({add})",
                list.id,
                gateways.first().map(|e| e.id.as_str()).unwrap_or("a gateway endpoint")
            ),
        ));
        return (out, None);
    };
    let target = r.target.clone().unwrap_or_default();
    if !target.starts_with("vpce-") {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!("{where_} sends {} to {target}, not to a gateway endpoint; point it at the endpoint ({add})", list.id),
        ));
        return (out, None);
    }
    if r.state != "active" {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!(
                "{where_} sends {} to {target}, but the route is {} (its endpoint is gone); delete it and attach the table to an available endpoint ({add})",
                list.id, r.state
            ),
        ));
        return (out, None);
    }
    let Some(e) = endpoints.iter().find(|e| e.id == target) else {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!("{where_} sends {} to {target}, which DescribeVpcEndpoints does not show; check the endpoint and ec2:DescribeVpcEndpoints", list.id),
        ));
        return (out, None);
    };
    let problem = if !e.kind.eq_ignore_ascii_case("gateway") {
        Some(format!("is a {} endpoint, not a gateway endpoint", e.kind))
    } else if !e.state.eq_ignore_ascii_case("available") {
        Some(format!("is {}, not available", e.state))
    } else if e.vpc != t.vpc {
        Some(format!("belongs to {}, not to {}", e.vpc, t.vpc))
    } else if e.service != expected {
        Some(format!("serves {}, not {expected}", e.service))
    } else {
        None
    };
    if let Some(p) = problem {
        out.push(line(
            Level::Fail,
            label("route table"),
            format!("{where_} sends {} to {}, which {p}; route the list to an available gateway endpoint of {}", list.id, e.id, t.vpc),
        ));
        return (out, None);
    }
    out.push(line(Level::Pass, label("route table"), format!("{where_} sends {} to {} (available, {}), route active", list.id, e.id, e.vpc)));
    out.push(endpoint_policy_line(&label("endpoint policy"), e));
    let proof = Proof { route_table: t.id.clone(), prefix_list: list.id.clone(), prefix_list_version: list.version, endpoint: e.id.clone() };
    (out, Some(proof))
}

fn endpoint_policy_line(label: &str, e: &Endpoint) -> Line {
    match e.policy.as_deref().map(policy_allows_all) {
        None | Some(Ok(true)) => line(
            Level::Warn,
            label,
            format!(
                "{} has the default policy (anyone's buckets, any action): any bucket of any account is reachable through it; allow only your organisation's, e.g. a Condition StringEquals aws:ResourceOrgID = your o-… ID",
                e.id
            ),
        ),
        Some(Ok(false)) => line(Level::Pass, label, format!("{} has a policy of its own (not the default allow-all)", e.id)),
        Some(Err(why)) => line(Level::Warn, label, format!("{}'s policy is not JSON audit can read ({why}); read it with aws ec2 describe-vpc-endpoints", e.id)),
    }
}

/// A policy's statements, whether `Statement` is one object or a list.
fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

/// A string or a list of strings, as policies write values.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

fn principal_is_anyone(s: &Value) -> bool {
    match s.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(Value::Object(o)) => o.get("AWS").map(|a| strings(Some(a)).iter().any(|x| x == "*")).unwrap_or(false),
        _ => false,
    }
}

/// Whether an endpoint policy is the default: one statement allowing every action on every
/// resource to every principal with no condition.
pub fn policy_allows_all(text: &str) -> Result<bool, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(statements(&doc).iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && principal_is_anyone(s)
            && strings(s.get("Action")).iter().any(|a| a == "*" || a == "s3:*" || a == "dynamodb:*")
            && strings(s.get("Resource")).iter().any(|r| r == "*")
            && s.get("Condition").is_none_or(|c| c.as_object().is_none_or(|o| o.is_empty()))
    }))
}

/// A Deny statement's conditions, as (operator, key lowercased, values). Keys are matched
/// case-insensitively, as IAM matches them.
fn deny_conditions(doc: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for s in statements(doc) {
        if s.get("Effect").and_then(Value::as_str) != Some("Deny") {
            continue;
        }
        for (op, keys) in s.get("Condition").and_then(Value::as_object).into_iter().flatten() {
            for (k, v) in keys.as_object().into_iter().flatten() {
                out.push((op.clone(), k.to_ascii_lowercase(), strings(Some(v))));
            }
        }
    }
    out
}

/// A condition key as AWS documents it, for the lines.
fn display_key(lower: &str) -> &str {
    ["aws:SourceVpce", "aws:SourceVpc", "aws:VpceAccount", "aws:VpceOrgID", "aws:VpceOrgPaths"]
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(lower))
        .unwrap_or(lower)
}

/// The network-perimeter keys a bucket policy can deny on (IAM global condition keys).
pub const PERIMETER_KEYS: [&str; 5] = ["aws:sourcevpce", "aws:sourcevpc", "aws:vpceaccount", "aws:vpceorgid", "aws:vpceorgpaths"];

/// The `--bucket` checks, read statically from the bucket policy: it denies requests that do not
/// come through the endpoint or VPC (a Deny with `StringNotEquals` on one of [`PERIMETER_KEYS`]),
/// SigV2 (`s3:signatureversion`) and plain HTTP (`aws:SecureTransport`). `ours` are the IDs the
/// audit found (this host's gateway endpoints and VPC), to tell a perimeter of another VPC.
pub fn bucket_policy(bucket: &str, policy: &str, ours: &[String]) -> Vec<Line> {
    let label = format!("bucket {bucket}");
    let doc: Value = match serde_json::from_str(policy) {
        Ok(d) => d,
        Err(e) => return vec![line(Level::Warn, label, format!("its policy is not JSON audit can read ({e}); read it with aws s3api get-bucket-policy"))],
    };
    let conds = deny_conditions(&doc);
    let mut out = Vec::new();
    let perimeter: Vec<&(String, String, Vec<String>)> = conds
        .iter()
        .filter(|(op, _, _)| op.starts_with("StringNotEquals") || op.starts_with("StringNotLike"))
        .filter(|(_, k, _)| PERIMETER_KEYS.contains(&k.as_str()))
        .collect();
    let allows_on_vpce = statements(&doc).iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Condition")
                .and_then(Value::as_object)
                .is_some_and(|c| c.values().any(|k| k.as_object().is_some_and(|k| k.keys().any(|k| PERIMETER_KEYS.contains(&k.to_ascii_lowercase().as_str())))))
    });
    match perimeter.first() {
        Some((op, key, values)) => {
            let key = display_key(key);
            let ids = values.iter().filter(|v| v.starts_with("vpce-") || v.starts_with("vpc-")).collect::<Vec<_>>();
            if !ids.is_empty() && !ours.is_empty() && !ids.iter().any(|v| ours.contains(v)) {
                out.push(line(
                    Level::Warn,
                    label.clone(),
                    format!("denies requests whose {key} is not {} ({op}), but this host's path is {}; add it to the condition or audit from the right VPC", values.join(","), ours.join(",")),
                ));
            } else {
                out.push(line(Level::Pass, label.clone(), format!("denies requests whose {key} is not {} ({op})", values.join(","))));
            }
        }
        None if allows_on_vpce => out.push(line(
            Level::Fail,
            label.clone(),
            "allows on aws:SourceVpce/aws:SourceVpc but denies nothing, so access an IAM policy grants from anywhere still works; add a Deny with StringNotEquals aws:SourceVpce (or aws:SourceVpc)",
        )),
        None => out.push(line(
            Level::Fail,
            label.clone(),
            "its policy does not deny requests from outside the endpoint or VPC, so its objects are reachable by the public path; add a Deny for s3:* with StringNotEquals aws:SourceVpce = your endpoint (or aws:SourceVpc, aws:VpceOrgID)",
        )),
    }
    let sigv2 = conds.iter().any(|(op, k, v)| {
        k == "s3:signatureversion"
            && ((op.starts_with("StringEquals") && v.iter().any(|x| x == "AWS"))
                || (op.starts_with("StringNotEquals") && v.iter().any(|x| x == "AWS4-HMAC-SHA256")))
    });
    out.push(if sigv2 {
        line(Level::Pass, format!("{label} sigv2"), "denies Signature Version 2 (s3:signatureversion)")
    } else {
        line(Level::Warn, format!("{label} sigv2"), "does not deny Signature Version 2; add a Deny with StringNotEquals s3:signatureversion = AWS4-HMAC-SHA256")
    });
    let tls = conds.iter().any(|(op, k, v)| k == "aws:securetransport" && op.starts_with("Bool") && v.iter().any(|x| x.eq_ignore_ascii_case("false")));
    out.push(if tls {
        line(Level::Pass, format!("{label} tls"), "denies requests without TLS (aws:SecureTransport)")
    } else {
        line(Level::Warn, format!("{label} tls"), "does not deny plain HTTP; add a Deny with Bool aws:SecureTransport = false")
    });
    out
}

/// The VPC endpoint ID in an endpoint DNS name: `vpce-0abc…-xyz.s3.us-east-1.vpce.amazonaws.com`
/// → `vpce-0abc…` (the part after the second dash is the name's own suffix).
pub fn endpoint_id_of(name: &str) -> Option<String> {
    let first = name.trim_end_matches('.').split('.').next()?;
    let rest = first.strip_prefix("vpce-")?;
    let id = rest.split('-').next().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(format!("vpce-{id}"))
}

/// How many addresses a set of CIDRs may hold per endpoint address before the route is "much
/// wider" than the endpoint.
pub const WIDE_FACTOR: u64 = 16;

/// The interface-route checks: the endpoint exists and is available, its network interfaces'
/// addresses lie inside the route's CIDRs (warn when the CIDRs are much wider), a security group
/// admits TCP 443 from this host, and the configured endpoint is one of its DNS names.
pub fn interface_route(
    route: &Route,
    id: &str,
    endpoint: Option<&Endpoint>,
    enis: &[NetworkInterface],
    groups: &[SecurityGroup],
    host: Option<Ipv4Addr>,
) -> Vec<Line> {
    let label = |what: &str| format!("{what} {}", route.name);
    let mut out = Vec::new();
    let Some(e) = endpoint else {
        out.push(line(
            Level::Fail,
            label("endpoint"),
            format!("{id} does not exist (DescribeVpcEndpoints shows no such endpoint); set the route's endpoint to an existing endpoint's DNS name"),
        ));
        return out;
    };
    if !e.kind.eq_ignore_ascii_case("interface") || !e.state.eq_ignore_ascii_case("available") {
        out.push(line(
            Level::Fail,
            label("endpoint"),
            format!("{id} is a {} endpoint in state {}; an interface route needs an available interface endpoint", e.kind, e.state),
        ));
        return out;
    }
    out.push(line(Level::Pass, label("endpoint"), format!("{id} is an available interface endpoint for {} in {}", e.service, e.vpc)));

    let addrs: Vec<Ipv4Addr> = enis.iter().flat_map(|n| n.addresses.iter().copied()).collect();
    let outside: Vec<String> = addrs.iter().filter(|a| route.cidr_for(**a).is_none()).map(|a| a.to_string()).collect();
    let size: u64 = route.cidrs.iter().map(|c| 1u64 << (32 - u32::from(c.prefix_len()))).sum();
    let unused: Vec<String> = route.cidrs.iter().filter(|c| !addrs.iter().any(|a| c.contains(a))).map(|c| c.to_string()).collect();
    let exact = addrs.iter().map(|a| format!("{a}/32")).collect::<Vec<_>>().join(" ");
    if addrs.is_empty() {
        out.push(line(
            Level::Warn,
            label("addresses"),
            format!("{id}'s network interfaces ({}) show no private address; check ec2:DescribeNetworkInterfaces", e.network_interfaces.join(",")),
        ));
    } else if !outside.is_empty() {
        out.push(line(
            Level::Fail,
            label("addresses"),
            format!("{id} answers on {} outside the route's CIDRs, so vpcgate refuses them; add them to the route ({exact})", outside.join(" ")),
        ));
    } else if !unused.is_empty() || size > WIDE_FACTOR * addrs.len() as u64 {
        out.push(line(
            Level::Warn,
            label("addresses"),
            format!(
                "the route's CIDRs hold {size} addresses for {}'s {} (unused: {}), so other hosts of the VPC pass as the endpoint; narrow them to {exact}",
                id,
                addrs.len(),
                if unused.is_empty() { "none".to_string() } else { unused.join(" ") }
            ),
        ));
    } else {
        out.push(line(
            Level::Pass,
            label("addresses"),
            format!("{id}'s addresses {} lie inside the route's CIDRs", addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")),
        ));
    }

    out.push(security_group_line(&label("security group"), id, groups, host));

    let configured = route.endpoint.as_deref().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    let names: Vec<String> = e.dns_names.iter().map(|n| n.trim_end_matches('.').to_ascii_lowercase()).collect();
    if names.is_empty() {
        out.push(line(
            Level::Warn,
            label("dns names"),
            format!("{id} lists no DNS names; check that {configured} is its name (aws ec2 describe-vpc-endpoints)"),
        ));
    } else if names.contains(&configured) {
        out.push(line(Level::Pass, label("dns names"), format!("{configured} is a DNS name of {id}")));
    } else {
        out.push(line(
            Level::Fail,
            label("dns names"),
            format!("{configured} is not a DNS name of {id} ({}); set the route's endpoint to one of them", names.join(", ")),
        ));
    }
    out
}

fn security_group_line(label: &str, id: &str, groups: &[SecurityGroup], host: Option<Ipv4Addr>) -> Line {
    let on_443: Vec<(&SecurityGroup, &super::facts::Permission)> =
        groups.iter().flat_map(|g| g.ingress.iter().map(move |p| (g, p))).filter(|(_, p)| p.admits_tcp(443)).collect();
    if groups.is_empty() {
        return line(Level::Warn, label, format!("{id}'s security groups were not answered; check ec2:DescribeSecurityGroups"));
    }
    if on_443.is_empty() {
        return line(
            Level::Fail,
            label,
            format!("no security group of {id} admits TCP 443, so every connection to it times out; add an inbound rule for 443 from this host's subnet"),
        );
    }
    match host {
        Some(h) => match on_443.iter().find(|(_, p)| p.cidrs.iter().any(|c| c.contains(&h))) {
            Some((g, p)) => line(Level::Pass, label, format!("{} admits TCP 443 from {} (this host is {h})", g.id, p.cidrs.iter().find(|c| c.contains(&h)).expect("found"))),
            None if on_443.iter().any(|(_, p)| !p.groups.is_empty() || !p.prefix_lists.is_empty()) => line(
                Level::Warn,
                label,
                format!("{id}'s groups admit TCP 443 only from security groups or prefix lists, which audit cannot match to {h}; check that this host is in one of them"),
            ),
            None => line(Level::Fail, label, format!("no security group of {id} admits TCP 443 from this host ({h}); add an inbound rule for 443 from its subnet")),
        },
        None => line(Level::Warn, label, format!("{id}'s groups admit TCP 443, but audit does not know this host's address to match it (no IMDS); check the rule covers this host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_from_dns_names() {
        assert_eq!(endpoint_id_of("vpce-0a1b2c3d4e5f60718-abcdefgh.s3.us-east-1.vpce.amazonaws.com").as_deref(), Some("vpce-0a1b2c3d4e5f60718"));
        assert_eq!(endpoint_id_of("vpce-0a1b-x.sts.eu-west-1.vpce.amazonaws.com.").as_deref(), Some("vpce-0a1b"));
        assert_eq!(endpoint_id_of("bucket.vpce-0a1b-x.s3.us-east-1.vpce.amazonaws.com"), None);
        assert_eq!(endpoint_id_of("vpce-zz-x.s3.us-east-1.vpce.amazonaws.com"), None);
    }

    #[test]
    fn default_endpoint_policy_is_allow_all() {
        let default = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#;
        assert_eq!(policy_allows_all(default), Ok(true));
        let org = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:ResourceOrgID":"o-1"}}}]}"#;
        assert_eq!(policy_allows_all(org), Ok(false));
        let one = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:*","Resource":"*"}}"#;
        assert_eq!(policy_allows_all(one), Ok(true));
        assert!(policy_allows_all("nope").is_err());
    }

    #[test]
    fn bucket_policies_read_statically() {
        let ours = vec!["vpce-1a".to_string()];
        let good = r#"{"Statement":[
            {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Condition":{"StringNotEquals":{"aws:SourceVpce":"vpce-1a"}}},
            {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:signatureversion":"AWS4-HMAC-SHA256"}}},
            {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
        let lines = bucket_policy("b", good, &ours);
        assert!(lines.iter().all(|l| l.level == Level::Pass), "{lines:?}");
        // Another VPC's endpoint: a warning naming ours.
        let other = bucket_policy("b", &good.replace("vpce-1a", "vpce-9f"), &ours);
        assert_eq!(other[0].level, Level::Warn);
        assert!(other[0].detail.contains("vpce-1a"), "{}", other[0].detail);
        // The org-wide keys count too.
        let org = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEqualsIfExists":{"aws:VpceOrgID":"o-1"}}}]}"#;
        assert_eq!(bucket_policy("b", org, &ours)[0].level, Level::Pass);
        // An Allow on the endpoint denies nothing.
        let allow = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:SourceVpce":"vpce-1a"}}}]}"#;
        let l = bucket_policy("b", allow, &ours);
        assert_eq!(l[0].level, Level::Fail);
        assert!(l[0].detail.contains("denies nothing"));
        assert_eq!((l[1].level, l[2].level), (Level::Warn, Level::Warn));
        let none = bucket_policy("b", r#"{"Statement":[]}"#, &ours);
        assert_eq!(none[0].level, Level::Fail);
    }
}

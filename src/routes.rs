//! Routes: named sets of IPv4 CIDRs that carry traffic privately, and the sources they come from.
//!
//! Pure: parsing takes file contents, not paths. [`crate::config`] reads the files and calls in here.
//! Sources understood by `cidrs_file` (detected from the JSON shape):
//! - `aws ec2 get-managed-prefix-list-entries` output (`{"Entries":[{"Cidr":…}]}`), the authoritative
//!   list behind an S3 gateway endpoint;
//! - `aws ec2 describe-prefix-lists` output (`{"PrefixLists":[{"Cidrs":[…]}]}`);
//! - AWS's `ip-ranges.json` (`{"prefixes":[{"ip_prefix","region","service"}]}`), filtered by service S3
//!   and region;
//! - vpcgate's own extract `config/s3-ipv4-prefixes.json` (`{"regions":{"us-east-1":[…]}}`).

use ipnet::Ipv4Net;
use serde_json::Value;
use std::fmt;
use std::net::Ipv4Addr;

/// The S3 IPv4 prefixes by region from AWS's ip-ranges.json (syncToken 1787411825, 2026-08-22),
/// embedded so that the default route works with no files at all.
pub const EMBEDDED_S3_PREFIXES: &str = include_str!("../config/s3-ipv4-prefixes.json");

/// How traffic reaches the VPC endpoint behind a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// S3 gateway endpoint: the public S3 names resolve to addresses in the region's prefix list.
    Gateway,
    /// Interface endpoint (PrivateLink): vpcgate resolves the route's endpoint name, whose answers are VPC addresses.
    Interface,
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteKind::Gateway => "gateway",
            RouteKind::Interface => "interface",
        })
    }
}

/// A route ready for decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub cidrs: Vec<Ipv4Net>,
    /// Interface routes: the endpoint DNS name vpcgate resolves instead of the requested host.
    pub endpoint: Option<String>,
    /// The region the route serves (interface routes: from the endpoint name unless configured).
    pub region: Option<String>,
    /// Where the CIDRs came from, for the banner, `routes` and logs.
    pub source: String,
    /// The AWS service the endpoint behind the route serves (`s3`, `sts`, `dynamodb`, `ecr.api`,
    /// …), as in its service name `com.amazonaws.REGION.SERVICE`: a route carries only its own
    /// service's names, so an S3 route never carries STS or DynamoDB however their names resolve.
    pub service: String,
    /// A route whose CIDRs follow AWS (a gateway route's `prefix_list = …`, an interface route's
    /// `endpoint_id = …`): refreshed while vpcgate runs, the last good copy kept in a cache file.
    pub follow: Option<Follow>,
}

/// What a followed route takes its CIDRs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A gateway route: the entries of this prefix list (`pl-…` or `com.amazonaws.REGION.SERVICE`,
    /// as configured), from `GetManagedPrefixListEntries`.
    PrefixList(String),
    /// An interface route: the private addresses (as /32s) of this endpoint's (`vpce-…`) network
    /// interfaces, from `DescribeVpcEndpoints` and `DescribeNetworkInterfaces`.
    Endpoint(String),
}

impl Target {
    /// The configured ID or name.
    pub fn id(&self) -> &str {
        match self {
            Target::PrefixList(s) | Target::Endpoint(s) => s,
        }
    }

    /// `prefix list pl-…` or `endpoint vpce-…`, for sentences.
    pub fn describe(&self) -> String {
        match self {
            Target::PrefixList(s) => format!("prefix list {s}"),
            Target::Endpoint(s) => format!("endpoint {s}"),
        }
    }
}

/// How a route follows AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub target: Target,
    pub refresh: std::time::Duration,
    /// The last good copy of the entries (the shape of `get-managed-prefix-list-entries`, with
    /// the list's ID, name, version and fetch time).
    pub cache_file: std::path::PathBuf,
    /// What the CIDRs are now; `None` until the list (or endpoint) was fetched once (the route
    /// holds no CIDRs then, so it carries nothing: fail closed).
    pub fetched: Option<Fetched>,
}

/// One fetched copy of a prefix list, or of an interface endpoint's addresses (then `id` is the
/// `vpce-…` ID, `name` its service name and `version` absent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fetched {
    #[serde(rename = "PrefixListId")]
    pub id: String,
    #[serde(rename = "PrefixListName", default)]
    pub name: String,
    #[serde(rename = "Version", default)]
    pub version: Option<u64>,
    /// Unix seconds.
    #[serde(rename = "FetchedAt")]
    pub at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    #[serde(rename = "Cidr")]
    cidr: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cache {
    #[serde(flatten)]
    fetched: Fetched,
    #[serde(rename = "Entries")]
    entries: Vec<CacheEntry>,
}

/// The text of a route's cache file: the entries as `get-managed-prefix-list-entries` writes
/// them, with the list's ID, name, version and the fetch time.
pub fn cache_text(fetched: &Fetched, cidrs: &[Ipv4Net]) -> String {
    let c = Cache { fetched: fetched.clone(), entries: cidrs.iter().map(|c| CacheEntry { cidr: c.to_string() }).collect() };
    serde_json::to_string_pretty(&c).expect("caches serialize") + "\n"
}

/// Read a cache file's text back, every CIDR checked as a route's are.
pub fn parse_cache(text: &str) -> Result<(Fetched, Vec<Ipv4Net>), RouteSourceError> {
    let c: Cache = serde_json::from_str(text).map_err(|e| RouteSourceError::NotJson(e.to_string()))?;
    let mut cidrs = c.entries.iter().map(|e| parse_cidr(&e.cidr)).collect::<Result<Vec<_>, _>>()?;
    if cidrs.is_empty() {
        return Err(RouteSourceError::Empty(c.fetched.id));
    }
    cidrs.sort();
    cidrs.dedup();
    Ok((c.fetched, cidrs))
}

/// A followed route's `source`: the list and its version (or the endpoint), and when it was fetched.
pub fn follow_source(f: &Fetched) -> String {
    if is_endpoint_id(&f.id) {
        return format!("network interfaces of endpoint {} fetched {}", f.id, utc_text(f.at));
    }
    format!("prefix list {}{} fetched {}", f.id, f.version.map(|v| format!(" version {v}")).unwrap_or_default(), utc_text(f.at))
}

/// Whether `s` is a VPC endpoint ID: `vpce-` and 8 or 17 hex digits.
pub fn is_endpoint_id(s: &str) -> bool {
    s.strip_prefix("vpce-").is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A time as `YYYY-MM-DDTHH:MM:SSZ` (UTC), for sources and lines.
pub fn utc_text(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .map(|t| format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second()))
        .unwrap_or_else(|_| unix.to_string())
}

/// Whether a configured `prefix_list` is a list ID (`pl-` and hex) or a list name
/// (`com.amazonaws.REGION.SERVICE`, as AWS names the gateway endpoints' lists).
pub fn is_prefix_list_ref(s: &str) -> bool {
    let id = s.strip_prefix("pl-").is_some_and(|h| !h.is_empty() && h.len() <= 17 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let name = s.strip_prefix("com.amazonaws.").is_some_and(|rest| {
        let mut parts = rest.splitn(2, '.');
        parts.next().is_some_and(crate::policy::host::is_region) && parts.next().is_some_and(|svc| svc.split('.').all(crate::policy::host::is_service_label))
    });
    id || name
}

/// The service of routes that do not name one.
pub const S3: &str = "s3";

/// Services that have gateway endpoints (VPC User Guide, "Gateway endpoints"): every other
/// service is reached privately only through an interface endpoint.
pub const GATEWAY_SERVICES: [&str; 2] = ["s3", "dynamodb"];

impl Route {
    /// The first CIDR of this route containing `addr`.
    pub fn cidr_for(&self, addr: Ipv4Addr) -> Option<Ipv4Net> {
        self.cidrs.iter().copied().find(|net| net.contains(&addr))
    }

    /// Whether this route carries names of `service`.
    pub fn serves(&self, service: &str) -> bool {
        self.service == service
    }

    /// Whether an interface route reaches the Multi-Region Access Point service (`com.amazonaws.s3-global.accesspoint`).
    pub fn serves_multi_region(&self) -> bool {
        self.kind == RouteKind::Interface && self.endpoint.as_deref().is_some_and(|e| e.split('.').any(|l| l == "s3-global"))
    }
}

/// A CIDR source that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteSourceError {
    #[error("is not JSON ({0})")]
    NotJson(String),
    #[error("has none of the known shapes (get-managed-prefix-list-entries \"Entries\", describe-prefix-lists \"PrefixLists\", ip-ranges.json \"prefixes\", or a \"regions\" map)")]
    UnknownShape,
    #[error("has the entry {0:?}, which is not an IPv4 CIDR like 52.216.0.0/15")]
    BadCidr(String),
    #[error("has the entry {0:?}, wider than a /8, which no endpoint needs; list the endpoint's own ranges")]
    TooWide(String),
    #[error("has the entry {0:?}, which overlaps {1}, where no VPC endpoint lives (link-local holds instance metadata); remove it")]
    NeverEndpoint(String, String),
    #[error("has no IPv4 prefixes for region(s) {0}")]
    Empty(String),
    #[error("holds the public ranges of S3 and DynamoDB only, not of {0}; an interface route takes the CIDRs of the endpoint's subnets")]
    NotInIpRanges(String),
}

/// The shortest prefix a route may hold: a /0../7 is no endpoint's range, only a way to allow
/// everything by accident.
pub const SHORTEST_PREFIX: u8 = 8;

/// Parse one CIDR written by a user or a file, refusing host bits, IPv6, prefixes shorter than /8
/// and ranges that hold no VPC endpoint (link-local, where instance metadata lives; multicast and
/// reserved space).
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, RouteSourceError> {
    let s = s.trim();
    let net: Ipv4Net = s.parse().map_err(|_| RouteSourceError::BadCidr(s.to_string()))?;
    if net.trunc() != net {
        return Err(RouteSourceError::BadCidr(s.to_string()));
    }
    if net.prefix_len() < SHORTEST_PREFIX {
        return Err(RouteSourceError::TooWide(s.to_string()));
    }
    let never: [Ipv4Net; 3] = ["169.254.0.0/16".parse().expect("literal"), "224.0.0.0/4".parse().expect("literal"), "240.0.0.0/4".parse().expect("literal")];
    if let Some(n) = never.iter().find(|n| n.contains(&net) || net.contains(*n)) {
        return Err(RouteSourceError::NeverEndpoint(s.to_string(), n.to_string()));
    }
    Ok(net)
}

/// CIDRs a new set of routes adds and removes, per route name, as text for the reload line.
pub fn cidr_changes(old: &[Route], new: &[Route]) -> (String, String) {
    let set = |routes: &[Route]| -> std::collections::BTreeSet<String> {
        routes.iter().flat_map(|r| r.cidrs.iter().map(move |c| format!("{}:{c}", r.name))).collect()
    };
    let (before, after) = (set(old), set(new));
    let list = |v: Vec<&String>| if v.is_empty() { "none".to_string() } else { v.into_iter().cloned().collect::<Vec<_>>().join(" ") };
    (list(after.difference(&before).collect()), list(before.difference(&after).collect()))
}

/// Read CIDRs from the text of a `cidrs_file`. `regions` filters ip-ranges.json and the regions map,
/// `service` (vpcgate's name: `s3`, `dynamodb`) picks the ip-ranges.json service; prefix-list
/// outputs are taken whole (a prefix list is already one region's and one service's).
/// Returns the CIDRs and a short description of the source (its shape and date where it has one).
pub fn parse_cidr_source(text: &str, regions: &[String], service: &str) -> Result<(Vec<Ipv4Net>, String), RouteSourceError> {
    let v: Value = serde_json::from_str(text).map_err(|e| RouteSourceError::NotJson(e.to_string()))?;
    let mut out = Vec::new();
    let what;
    if let Some(entries) = v.get("Entries").and_then(Value::as_array) {
        for e in entries {
            let cidr = e.get("Cidr").and_then(Value::as_str).ok_or(RouteSourceError::UnknownShape)?;
            out.push(parse_cidr(cidr)?);
        }
        what = "get-managed-prefix-list-entries output".to_string();
    } else if let Some(lists) = v.get("PrefixLists").and_then(Value::as_array) {
        let mut names = Vec::new();
        for l in lists {
            if let Some(n) = l.get("PrefixListName").and_then(Value::as_str) {
                names.push(n.to_string());
            }
            for c in l.get("Cidrs").and_then(Value::as_array).into_iter().flatten() {
                out.push(parse_cidr(c.as_str().ok_or(RouteSourceError::UnknownShape)?)?);
            }
        }
        what = format!("describe-prefix-lists output {}", names.join(","));
    } else if let Some(prefixes) = v.get("prefixes").and_then(Value::as_array) {
        let wanted = match service {
            "s3" => "S3",
            "dynamodb" => "DYNAMODB",
            other => return Err(RouteSourceError::NotInIpRanges(other.to_string())),
        };
        for p in prefixes {
            let listed = p.get("service").and_then(Value::as_str).unwrap_or("");
            let region = p.get("region").and_then(Value::as_str).unwrap_or("");
            if listed == wanted && regions.iter().any(|r| r == region) {
                let cidr = p.get("ip_prefix").and_then(Value::as_str).ok_or(RouteSourceError::UnknownShape)?;
                out.push(parse_cidr(cidr)?);
            }
        }
        what = format!("ip-ranges.json {}", v.get("createDate").and_then(Value::as_str).unwrap_or("(no createDate)"));
    } else if let Some(map) = v.get("regions").and_then(Value::as_object) {
        // vpcgate's own extract holds S3's prefixes only.
        if service != S3 {
            return Err(RouteSourceError::NotInIpRanges(service.to_string()));
        }
        for r in regions {
            for c in map.get(r).and_then(Value::as_array).into_iter().flatten() {
                out.push(parse_cidr(c.as_str().ok_or(RouteSourceError::UnknownShape)?)?);
            }
        }
        what = format!("S3 prefixes from ip-ranges.json {}", v.get("createDate").and_then(Value::as_str).unwrap_or("(no createDate)"));
    } else {
        return Err(RouteSourceError::UnknownShape);
    }
    if out.is_empty() {
        return Err(RouteSourceError::Empty(regions.join(",")));
    }
    out.sort();
    out.dedup();
    Ok((out, what))
}

/// The default route: S3 prefixes of `regions` from the embedded ip-ranges extract.
pub fn default_route(regions: &[String]) -> Result<Route, RouteSourceError> {
    let (cidrs, what) = parse_cidr_source(EMBEDDED_S3_PREFIXES, regions, S3)?;
    Ok(Route {
        name: "s3-default".into(),
        kind: RouteKind::Gateway,
        cidrs,
        endpoint: None,
        region: None,
        source: format!("embedded {what}, regions {}", regions.join(",")),
        service: S3.into(),
        follow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn routes_cannot_allow_everything_or_instance_metadata() {
        assert!(parse_cidr("52.216.0.0/15").is_ok() && parse_cidr("10.0.0.0/8").is_ok() && parse_cidr("127.5.1.0/24").is_ok());
        for (c, why) in [("0.0.0.0/0", "wider than a /8"), ("0.0.0.0/1", "wider than a /8"), ("52.0.0.0/7", "wider than a /8")] {
            let e = parse_cidr(c).unwrap_err();
            assert!(matches!(e, RouteSourceError::TooWide(_)) && e.to_string().contains(why), "{c}: {e}");
        }
        for c in ["169.254.169.254/32", "169.254.0.0/16", "169.0.0.0/8", "224.0.0.0/8", "240.0.0.0/8"] {
            let e = parse_cidr(c).unwrap_err();
            assert!(matches!(e, RouteSourceError::NeverEndpoint(..)), "{c}: {e}");
        }
        let g = |cidrs: &[&str]| Route {
            name: "g".into(),
            kind: RouteKind::Gateway,
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            endpoint: None,
            region: None,
            source: "test".into(),
            service: S3.into(),
            follow: None,
        };
        let (added, removed) = cidr_changes(&[g(&["52.216.0.0/15", "3.5.0.0/19"])], &[g(&["52.216.0.0/15", "10.0.0.0/8"])]);
        assert_eq!((added.as_str(), removed.as_str()), ("g:10.0.0.0/8", "g:3.5.0.0/19"));
        assert_eq!(cidr_changes(&[g(&["52.216.0.0/15"])], &[g(&["52.216.0.0/15"])]), ("none".into(), "none".into()));
    }

    #[test]
    fn embedded_default_route_has_us_east_1_and_not_global() {
        let route = default_route(&r(&["us-east-1"])).unwrap();
        assert_eq!(route.cidrs.len(), 21);
        assert!(route.cidr_for("52.217.1.1".parse().unwrap()).is_some());
        assert_eq!(route.cidr_for("52.217.1.1".parse().unwrap()).unwrap().to_string(), "52.216.0.0/15");
        // GLOBAL anycast prefixes are not a regional prefix list member.
        assert!(route.cidr_for("13.248.224.1".parse().unwrap()).is_none());
        // eu-west-1 S3 is not in us-east-1's route.
        assert!(route.cidr_for("52.218.0.1".parse().unwrap()).is_none());
        assert!(default_route(&r(&["xx-nowhere-1"])).is_err());
    }

    #[test]
    fn managed_prefix_list_entries() {
        let text = r#"{"Entries":[{"Cidr":"52.216.0.0/15","Description":"x"},{"Cidr":"54.231.0.0/16"}],"NextToken":null}"#;
        let (cidrs, what) = parse_cidr_source(text, &[], S3).unwrap();
        assert_eq!(cidrs.len(), 2);
        assert!(what.contains("get-managed-prefix-list-entries"));
    }

    #[test]
    fn describe_prefix_lists() {
        let text =
            r#"{"PrefixLists":[{"PrefixListId":"pl-63a5400a","PrefixListName":"com.amazonaws.us-east-1.s3","Cidrs":["54.231.0.0/17","52.216.0.0/15"]}]}"#;
        let (cidrs, what) = parse_cidr_source(text, &[], S3).unwrap();
        assert_eq!(cidrs.len(), 2);
        assert!(what.contains("com.amazonaws.us-east-1.s3"));
    }

    #[test]
    fn ip_ranges_filtered_by_service_and_region() {
        let text = r#"{"syncToken":"1","createDate":"2026-08-22-15-17-05","prefixes":[
            {"ip_prefix":"52.216.0.0/15","region":"us-east-1","service":"S3","network_border_group":"us-east-1"},
            {"ip_prefix":"3.5.0.0/19","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"},
            {"ip_prefix":"52.218.0.0/17","region":"eu-west-1","service":"S3","network_border_group":"eu-west-1"}]}"#;
        let (cidrs, what) = parse_cidr_source(text, &r(&["us-east-1"]), S3).unwrap();
        assert_eq!(cidrs, vec!["52.216.0.0/15".parse::<Ipv4Net>().unwrap()]);
        assert!(what.contains("2026-08-22"));
        assert!(matches!(parse_cidr_source(text, &r(&["ap-south-2"]), S3), Err(RouteSourceError::Empty(_))));
        // The same file gives a DynamoDB gateway route DynamoDB's ranges, and nothing to STS.
        let ddb = text.replace("\"AMAZON\"", "\"DYNAMODB\"");
        assert_eq!(parse_cidr_source(&ddb, &r(&["us-east-1"]), "dynamodb").unwrap().0, vec!["3.5.0.0/19".parse::<Ipv4Net>().unwrap()]);
        assert!(matches!(parse_cidr_source(text, &r(&["us-east-1"]), "sts"), Err(RouteSourceError::NotInIpRanges(_))));
    }

    #[test]
    fn bad_sources() {
        assert!(matches!(parse_cidr_source("nope", &[], S3), Err(RouteSourceError::NotJson(_))));
        assert!(matches!(parse_cidr_source("{}", &[], S3), Err(RouteSourceError::UnknownShape)));
        assert_eq!(parse_cidr_source(r#"{"Entries":[{"Cidr":"2600:1f18::/33"}]}"#, &[], S3), Err(RouteSourceError::BadCidr("2600:1f18::/33".into())));
        assert_eq!(parse_cidr("10.0.0.1/16"), Err(RouteSourceError::BadCidr("10.0.0.1/16".into())));
    }

    #[test]
    fn prefix_list_caches_round_trip_and_are_checked() {
        let f = Fetched { id: "pl-0abc".into(), name: "corp".into(), version: Some(3), at: 1_790_000_000 };
        let cidrs: Vec<Ipv4Net> = vec!["52.216.0.0/15".parse().unwrap(), "3.5.0.0/19".parse().unwrap()];
        let text = cache_text(&f, &cidrs);
        // The file is also a cidrs_file: the get-managed-prefix-list-entries shape.
        assert_eq!(parse_cidr_source(&text, &[], S3).unwrap().0.len(), 2);
        let (back, got) = parse_cache(&text).unwrap();
        assert_eq!(back, f);
        assert_eq!(got, vec!["3.5.0.0/19".parse::<Ipv4Net>().unwrap(), "52.216.0.0/15".parse().unwrap()]);
        assert!(matches!(parse_cache(&text.replace("3.5.0.0/19", "0.0.0.0/0")), Err(RouteSourceError::TooWide(_))));
        assert!(matches!(parse_cache(&cache_text(&f, &[])), Err(RouteSourceError::Empty(_))));
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        for ok in ["pl-63a5400a", "com.amazonaws.us-east-1.s3", "com.amazonaws.eu-west-1.dynamodb"] {
            assert!(is_prefix_list_ref(ok), "{ok}");
        }
        for bad in ["pl-", "pl-xyz", "63a5400a", "com.amazonaws.s3", "com.amazonaws.nowhere.s3", "com.amazonaws.us-east-1."] {
            assert!(!is_prefix_list_ref(bad), "{bad}");
        }
    }

    #[test]
    fn multi_region_interface_route() {
        let mut route = Route {
            name: "mrap".into(),
            kind: RouteKind::Interface,
            cidrs: vec![],
            endpoint: Some("vpce-1-2.accesspoint.s3-global.vpce.amazonaws.com".into()),
            region: None,
            source: String::new(),
            service: S3.into(),
            follow: None,
        };
        assert!(route.serves_multi_region());
        route.endpoint = Some("vpce-1-2.s3.us-east-1.vpce.amazonaws.com".into());
        assert!(!route.serves_multi_region());
    }
}

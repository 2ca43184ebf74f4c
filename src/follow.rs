//! Routes that follow AWS: a gateway route with `prefix_list = "pl-…"` (or the list's name) takes
//! its CIDRs from `GetManagedPrefixListEntries`, an interface route with `endpoint_id = "vpce-…"`
//! takes a /32 per private address of the endpoint's network interfaces (`DescribeVpcEndpoints`,
//! then `DescribeNetworkInterfaces`); both are asked again every `refresh`. A change is applied
//! like a reload (new connections use it, open tunnels keep theirs) and written to the route's
//! `cache_file` first, so that a restart (or a SIGHUP, which re-reads it) starts from the last good
//! copy when AWS cannot be asked. A failed refresh keeps the previous set; a list whose entries
//! break the CIDR rules of every route ([`crate::routes::parse_cidr`]) is refused and the previous
//! set kept, loudly. An endpoint AWS says is gone (unknown ID, `deleted`, `failed`, …) is
//! different: its old addresses go back to the subnet and may be anyone's, so the route is
//! withdrawn (it carries nothing, `/readyz` says why) and its cache file removed.
//!
//! One task watches every followed route of the current state, so routes a reload adds are
//! followed too and routes it removes are dropped.

use crate::audit::aws::{ApiError, Aws};
use crate::proxy::Shared;
use crate::routes::{self, Fetched, Route, Target};
use crate::telemetry::{Metrics, RouteRefreshLine, RouteResultLabels};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the follower knows of one route, beside the state.
#[derive(Debug, Clone, Default)]
pub struct RouteStatus {
    /// When it last asked (successfully or not).
    pub asked: Option<Instant>,
    /// The last successful fetch: list and time.
    pub fetched: Option<Fetched>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

/// Where a gateway route's proof stands (`audit.require = "route_table"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofState {
    /// The route table, list and endpoint held at `at` (unix seconds).
    Proven { proof: crate::audit::checks::Proof, at: u64 },
    /// Why it does not hold (or was not asked yet).
    Failing(String),
}

/// The route proofs by route name, shared by the connections, `/readyz` and the prover.
#[derive(Debug, Default)]
pub struct Evidence {
    proofs: std::sync::Mutex<HashMap<String, ProofState>>,
}

impl Evidence {
    pub fn get(&self, route: &str) -> ProofState {
        self.proofs.lock().expect("evidence lock").get(route).cloned().unwrap_or_else(|| ProofState::Failing("the route table was not checked yet".into()))
    }

    fn set(&self, route: &str, state: ProofState) -> Option<ProofState> {
        self.proofs.lock().expect("evidence lock").insert(route.to_string(), state)
    }
}

/// A proof for the connect line: `route_table=rtb-… prefix_list=pl-… version=N endpoint=vpce-… proven_at=T`.
pub fn proof_text(p: &crate::audit::checks::Proof, at: u64) -> String {
    format!(
        "route_table={} prefix_list={}{} endpoint={} proven_at={}",
        p.route_table,
        p.prefix_list,
        p.prefix_list_version.map(|v| format!(" version={v}")).unwrap_or_default(),
        p.endpoint,
        routes::utc_text(at)
    )
}

/// `audit.require = "route_table"`: run the audit's gateway-route checks at start and every
/// `audit.interval`, and record for each gateway route whether its proof holds.
pub async fn prove(shared: Arc<Shared>, metrics: Arc<Metrics>) {
    loop {
        let state = shared.get();
        let settings = &state.config.settings;
        if settings.audit.require == crate::config::Require::RouteTable {
            let gateways: Vec<String> = state.config.routes.iter().filter(|r| r.kind == routes::RouteKind::Gateway).map(|r| r.name.clone()).collect();
            let args = crate::audit::Args {
                subnet: Some(settings.audit.subnet.clone()).filter(|s| !s.is_empty()),
                region: None,
                buckets: Vec::new(),
                public_api: settings.aws.public_api,
            };
            let env: HashMap<String, String> = std::env::vars().collect();
            let report = crate::audit::run(&state.config, &args, &env).await;
            for name in &gateways {
                let new = match &report {
                    Err(e) => ProofState::Failing(format!("AWS could not be asked: {e}")),
                    Ok(r) => match r.proofs.iter().find(|(n, _)| n == name) {
                        Some((_, p)) => ProofState::Proven { proof: p.clone(), at: now_unix() },
                        None => ProofState::Failing(
                            r.lines
                                .iter()
                                .find(|l| l.check == format!("route table {name}") || (l.check == "where" && l.level != crate::check::Level::Pass))
                                .or_else(|| r.lines.iter().find(|l| l.check.ends_with(&format!(" {name}")) && l.level != crate::check::Level::Pass))
                                .map(|l| l.detail.clone())
                                .unwrap_or_else(|| "the route table could not be checked".into()),
                        ),
                    },
                };
                let proven = matches!(new, ProofState::Proven { .. });
                metrics.route_proof.get_or_create(&crate::telemetry::RouteLabels { route: name.clone() }).set(i64::from(proven));
                let before = state.evidence.set(name, new.clone());
                let was = matches!(before, Some(ProofState::Proven { .. }));
                match (&new, was || before.is_none()) {
                    (ProofState::Proven { proof, at }, _) if !was => {
                        tracing::info!(route = %name, proof = %proof_text(proof, *at), "the route table proves route {name} private")
                    }
                    (ProofState::Failing(why), true) => {
                        tracing::error!(route = %name, "route {name} is not proven private, so it carries nothing (audit.require = \"route_table\"): {why}")
                    }
                    _ => {}
                }
            }
        }
        let every = settings.audit.interval;
        drop(state);
        tokio::time::sleep(every).await;
    }
}

/// How soon a failed refresh is tried again (at most; a shorter `refresh` wins).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// How often the follower looks for routes that are due.
const TICK: Duration = Duration::from_millis(250);

fn now_unix() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Follow every followed route until the process ends. `listen`/`admin` are what the state is
/// rebuilt with (as a reload rebuilds it).
pub async fn run(shared: Arc<Shared>, listen: SocketAddr, admin: Option<SocketAddr>, metrics: Arc<Metrics>) {
    loop {
        let state = shared.get();
        let due: Vec<Route> = state
            .config
            .routes
            .iter()
            .filter(|r| {
                let Some(f) = &r.follow else { return false };
                let status = shared.follow.lock().expect("follow lock").get(&r.name).cloned().unwrap_or_default();
                let wait = if status.error.is_some() { f.refresh.min(RETRY_AFTER_FAILURE) } else { f.refresh };
                status.asked.is_none_or(|t| t.elapsed() >= wait)
            })
            .cloned()
            .collect();
        drop(state);
        for r in due {
            refresh(&shared, &r, listen, admin, &metrics).await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What one refresh came to.
enum Outcome {
    Unchanged(Fetched),
    Changed(Fetched, Vec<Ipv4Net>),
}

/// Ask AWS for the route's list once and apply what it says.
async fn refresh(shared: &Arc<Shared>, route: &Route, listen: SocketAddr, admin: Option<SocketAddr>, metrics: &Arc<Metrics>) {
    let follow = route.follow.as_ref().expect("only followed routes are refreshed");
    let started = Instant::now();
    let state = shared.get();
    let result = fetch(&state.config, route).await;
    let count = |result: &'static str| metrics.route_refreshes.get_or_create(&RouteResultLabels { route: route.name.clone(), result }).inc();
    let mut status = RouteStatus { asked: Some(started), ..Default::default() };
    match result {
        Err(Failure::Withdrawn(why)) => {
            count("withdrawn");
            if let Err(e) = std::fs::remove_file(&follow.cache_file).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
                tracing::warn!(route = %route.name, cache_file = %follow.cache_file.display(), "cannot remove the withdrawn endpoint's cache file ({e}); a restart would start from its old addresses until the first refresh");
            }
            let message = format!("{why}; route {} carries nothing until the endpoint is available again (or the route names another)", route.name);
            let (added, removed) = routes::cidr_changes(std::slice::from_ref(route), &[Route { cidrs: Vec::new(), ..route.clone() }]);
            match apply(shared, &state, route, None, &[], listen, admin, metrics) {
                Ok(true) => {}
                // A reload replaced the state meanwhile: the next round withdraws it from that one.
                Ok(false) => status.asked = None,
                Err(e) => tracing::error!(route = %route.name, "the withdrawn route could not be applied ({e}); keeping the previous state"),
            }
            RouteRefreshLine {
                result: "withdrawn",
                route: &route.name,
                prefix_list: "",
                endpoint_id: follow.target.id(),
                version: "",
                cidrs: 0,
                cidrs_added: "none",
                cidrs_removed: &removed,
                message: &message,
            }
            .emit();
            debug_assert_eq!(added, "none");
            status.error = Some(why);
        }
        Err(f) => {
            let (kind, why) = match f {
                Failure::Failed(e) => ("failed", e),
                Failure::Refused(e) => ("refused", e),
                Failure::Withdrawn(_) => unreachable!("handled above"),
            };
            count(kind);
            let age =
                follow.fetched.as_ref().map(|f| format!("the copy of {} fetched {} ({} s ago)", f.id, routes::utc_text(f.at), now_unix().saturating_sub(f.at)));
            let what = match follow.target {
                Target::PrefixList(_) => "prefix list",
                Target::Endpoint(_) => "endpoint",
            };
            let message = format!(
                "{} {}; route {} keeps {}",
                if kind == "refused" { format!("refused the {what}'s new entries:") } else { format!("could not refresh the {what}:") },
                why,
                route.name,
                match (&age, route.cidrs.is_empty()) {
                    (_, true) => "no CIDRs, so it carries nothing until a fetch succeeds".to_string(),
                    (Some(a), false) => format!("its {} CIDRs, {a}", route.cidrs.len()),
                    (None, false) => format!("its {} CIDRs", route.cidrs.len()),
                }
            );
            let (prefix_list, endpoint_id) = target_fields(&follow.target);
            RouteRefreshLine {
                result: kind,
                route: &route.name,
                prefix_list,
                endpoint_id,
                version: &follow.fetched.as_ref().and_then(|f| f.version).map(|v| v.to_string()).unwrap_or_default(),
                cidrs: route.cidrs.len(),
                cidrs_added: "none",
                cidrs_removed: "none",
                message: &message,
            }
            .emit();
            status.fetched = shared.follow.lock().expect("follow lock").get(&route.name).and_then(|s| s.fetched.clone()).or_else(|| follow.fetched.clone());
            status.error = Some(why);
        }
        Ok(Outcome::Unchanged(fetched)) => {
            count("unchanged");
            status.fetched = Some(fetched);
        }
        Ok(Outcome::Changed(fetched, cidrs)) => {
            if let Some(parent) = follow.cache_file.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(parent);
            }
            let tmp = follow.cache_file.with_extension("json.tmp");
            let written = std::fs::write(&tmp, routes::cache_text(&fetched, &cidrs)).and_then(|_| std::fs::rename(&tmp, &follow.cache_file));
            if let Err(e) = written {
                tracing::warn!(route = %route.name, cache_file = %follow.cache_file.display(), "cannot write the prefix list's cache file ({e}); a restart without AWS will not have this copy");
            }
            match apply(shared, &state, route, Some(&fetched), &cidrs, listen, admin, metrics) {
                Ok(true) => {
                    count("changed");
                    let new_route = Route { cidrs: cidrs.clone(), ..route.clone() };
                    let (added, removed) = routes::cidr_changes(std::slice::from_ref(route), std::slice::from_ref(&new_route));
                    let (prefix_list, endpoint_id) = match follow.target {
                        Target::PrefixList(_) => (fetched.id.as_str(), ""),
                        Target::Endpoint(_) => ("", fetched.id.as_str()),
                    };
                    RouteRefreshLine {
                        result: "changed",
                        route: &route.name,
                        prefix_list,
                        endpoint_id,
                        version: &fetched.version.map(|v| v.to_string()).unwrap_or_default(),
                        cidrs: cidrs.len(),
                        cidrs_added: &added,
                        cidrs_removed: &removed,
                        message: &format!(
                            "route {} follows {}: new connections use its {}, open tunnels keep theirs",
                            route.name,
                            follow.target.describe(),
                            if endpoint_id.is_empty() { "entries" } else { "addresses" }
                        ),
                    }
                    .emit();
                }
                // A reload replaced the state meanwhile; it read the cache file just written,
                // or the next round applies the list to what it loaded.
                Ok(false) => status.asked = None,
                Err(e) => {
                    count("failed");
                    tracing::error!(route = %route.name, "the refreshed route could not be applied ({e}); keeping the previous state");
                    status.error = Some(e);
                }
            }
            status.fetched = Some(fetched);
        }
    }
    shared.follow.lock().expect("follow lock").insert(route.name.clone(), status);
}

#[allow(clippy::too_many_arguments)]
fn apply(
    shared: &Shared,
    state: &Arc<crate::proxy::State>,
    route: &Route,
    fetched: Option<&Fetched>,
    cidrs: &[Ipv4Net],
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    metrics: &Arc<Metrics>,
) -> Result<bool, String> {
    let mut loaded = state.config.clone();
    let Some(r) = loaded.routes.iter_mut().find(|r| r.name == route.name) else { return Ok(false) };
    r.cidrs = cidrs.to_vec();
    r.source = match (fetched, &r.follow) {
        (Some(f), _) => routes::follow_source(f),
        (None, Some(f)) => format!("{}, withdrawn", f.target.describe()),
        (None, None) => "withdrawn".into(),
    };
    if let Some(f) = &mut r.follow {
        f.fetched = fetched.cloned();
    }
    let new = crate::server::build_state(loaded, listen, admin, metrics.clone(), Some(state), crate::server::CaFiles::Keep)?;
    Ok(shared.replace_if(state, new))
}

enum Failure {
    /// AWS could not be asked or did not answer: the previous set stays.
    Failed(String),
    /// AWS answered entries vpcgate will not route: the previous set stays, loudly.
    Refused(String),
    /// AWS says the followed endpoint is gone: its old addresses are no longer its own, so the
    /// route carries nothing.
    Withdrawn(String),
}

/// The event's `prefix_list` and `endpoint_id` fields for a target.
fn target_fields(t: &Target) -> (&str, &str) {
    match t {
        Target::PrefixList(s) => (s, ""),
        Target::Endpoint(s) => ("", s),
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Failed(e.to_string())
    }
}

/// The list's (or endpoint's) current CIDRs, or why not.
async fn fetch(config: &crate::config::Loaded, route: &Route) -> Result<Outcome, Failure> {
    let follow = route.follow.as_ref().expect("followed");
    let region = route.region.clone().unwrap_or_else(|| config.regions[0].clone());
    let env: HashMap<String, String> = std::env::vars().collect();
    let creds = crate::audit::aws::credentials(&region).await.map_err(Failure::Failed)?;
    let api = Aws::new(config, &region, creds, &env, config.settings.aws.public_api).map_err(Failure::Failed)?;
    let (fetched, cidrs) = match &follow.target {
        Target::PrefixList(list) => fetch_prefix_list(&api, list, &region).await?,
        Target::Endpoint(id) => fetch_endpoint(&api, id, &region).await?,
    };
    let same = follow.fetched.as_ref().is_some_and(|f| f.id == fetched.id && f.version == fetched.version);
    if cidrs == route.cidrs && same {
        Ok(Outcome::Unchanged(fetched))
    } else {
        Ok(Outcome::Changed(fetched, cidrs))
    }
}

async fn fetch_prefix_list(api: &Aws, list: &str, region: &str) -> Result<(Fetched, Vec<Ipv4Net>), Failure> {
    let params = if list.starts_with("pl-") {
        vec![("PrefixListId.1".to_string(), list.to_string())]
    } else {
        vec![("Filter.1.Name".to_string(), "prefix-list-name".to_string()), ("Filter.1.Value.1".to_string(), list.to_string())]
    };
    let xml = api.ec2("DescribeManagedPrefixLists", &params).await?;
    let list = crate::audit::facts::prefix_lists(&xml)
        .map_err(|e| Failure::Failed(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Failed(format!("no prefix list {list} in {region}; check the route's prefix_list and region")))?;
    let raw = crate::audit::raw_entries(api, &list.id).await?;
    let mut cidrs = Vec::new();
    for c in &raw {
        cidrs.push(routes::parse_cidr(c).map_err(|e| Failure::Refused(format!("prefix list {} {e}", list.id)))?);
    }
    if cidrs.is_empty() {
        return Err(Failure::Refused(format!("prefix list {} has no entries, which would refuse everything the route carries", list.id)));
    }
    cidrs.sort();
    cidrs.dedup();
    Ok((Fetched { id: list.id.clone(), name: list.name.clone(), version: list.version, at: now_unix() }, cidrs))
}

async fn fetch_endpoint(api: &Aws, id: &str, region: &str) -> Result<(Fetched, Vec<Ipv4Net>), Failure> {
    use crate::audit::facts;
    let found = match api.ec2("DescribeVpcEndpoints", &[("VpcEndpointId.1".to_string(), id.to_string())]).await {
        Ok(xml) => facts::endpoints(&xml).map_err(|e| Failure::Failed(e.to_string()))?.into_iter().find(|e| e.id == id),
        // AWS answers an unknown ID with an error, not an empty set.
        Err(ApiError::Failed { code, .. }) if code.starts_with("InvalidVpcEndpointId") => None,
        Err(e) => return Err(e.into()),
    };
    // Gone or on its way: decided before its interfaces are asked for (a deleted endpoint's are gone too).
    let e = endpoint_usable(id, region, found.as_ref())?;
    let mut enis = Vec::new();
    if !e.network_interfaces.is_empty() {
        let params: Vec<(String, String)> =
            e.network_interfaces.iter().enumerate().map(|(i, n)| (format!("NetworkInterfaceId.{}", i + 1), n.clone())).collect();
        for page in api.ec2_pages("DescribeNetworkInterfaces", &params).await? {
            enis.extend(facts::network_interfaces(&page).map_err(|e| Failure::Failed(e.to_string()))?);
        }
    }
    let cidrs = endpoint_addresses(e, &enis)?;
    Ok((Fetched { id: id.to_string(), name: e.service.clone(), version: None, at: now_unix() }, cidrs))
}

/// What an interface endpoint's answer means for the route that follows it: usable while it is
/// `available`; kept as before while it is on its way (`pending`, `pendingAcceptance`,
/// `modifying`); withdrawn when AWS says it is gone or was never an interface endpoint.
fn endpoint_usable<'a>(id: &str, region: &str, endpoint: Option<&'a crate::audit::facts::Endpoint>) -> Result<&'a crate::audit::facts::Endpoint, Failure> {
    let Some(e) = endpoint else {
        return Err(Failure::Withdrawn(format!("AWS knows no endpoint {id} in {region}; check the route's endpoint_id and region")));
    };
    if !e.kind.eq_ignore_ascii_case("interface") {
        return Err(Failure::Withdrawn(format!(
            "endpoint {id} is a {} endpoint, which has no addresses of its own; an interface route follows an Interface endpoint",
            e.kind
        )));
    }
    match e.state.to_ascii_lowercase().as_str() {
        "available" => Ok(e),
        "pending" | "pendingacceptance" | "modifying" => Err(Failure::Failed(format!("endpoint {id} is {}, not available yet", e.state))),
        _ => Err(Failure::Withdrawn(format!("endpoint {id} is {}", if e.state.is_empty() { "in no state" } else { &e.state }))),
    }
}

/// A /32 per private address of the endpoint's own network interfaces; an endpoint without a
/// usable address keeps the previous set (refused).
fn endpoint_addresses(e: &crate::audit::facts::Endpoint, enis: &[crate::audit::facts::NetworkInterface]) -> Result<Vec<Ipv4Net>, Failure> {
    let id = &e.id;
    let mut cidrs = Vec::new();
    for eni in enis.iter().filter(|n| e.network_interfaces.contains(&n.id)) {
        for a in &eni.addresses {
            let net = routes::parse_cidr(&format!("{a}/32")).map_err(|err| Failure::Refused(format!("endpoint {id}'s network interface {} {err}", eni.id)))?;
            cidrs.push(net);
        }
    }
    if cidrs.is_empty() {
        return Err(Failure::Refused(format!(
            "endpoint {id} lists no network interface with a private IPv4 address (it has {}), which would refuse everything the route carries",
            if e.network_interfaces.is_empty() { "none".to_string() } else { e.network_interfaces.join(", ") }
        )));
    }
    cidrs.sort();
    cidrs.dedup();
    Ok(cidrs)
}

/// Both steps, for the tests.
#[cfg(test)]
fn endpoint_cidrs(
    id: &str,
    region: &str,
    endpoint: Option<&crate::audit::facts::Endpoint>,
    enis: &[crate::audit::facts::NetworkInterface],
) -> Result<Vec<Ipv4Net>, Failure> {
    endpoint_addresses(endpoint_usable(id, region, endpoint)?, enis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::facts::{Endpoint, NetworkInterface};

    fn endpoint(kind: &str, state: &str, enis: &[&str]) -> Endpoint {
        Endpoint {
            id: "vpce-0123456789abcdef0".into(),
            kind: kind.into(),
            vpc: "vpc-1".into(),
            service: "com.amazonaws.us-east-1.sts".into(),
            state: state.into(),
            policy: None,
            route_tables: vec![],
            network_interfaces: enis.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
            dns_names: vec![],
        }
    }

    fn eni(id: &str, addrs: &[&str]) -> NetworkInterface {
        NetworkInterface { id: id.into(), addresses: addrs.iter().map(|a| a.parse().unwrap()).collect() }
    }

    fn why(r: Result<Vec<Ipv4Net>, Failure>) -> (&'static str, String) {
        match r {
            Ok(c) => ("ok", c.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")),
            Err(Failure::Failed(s)) => ("failed", s),
            Err(Failure::Refused(s)) => ("refused", s),
            Err(Failure::Withdrawn(s)) => ("withdrawn", s),
        }
    }

    #[test]
    fn an_available_interface_endpoint_gives_a_slash_32_per_address_of_its_own_interfaces() {
        let id = "vpce-0123456789abcdef0";
        let e = endpoint("Interface", "available", &["eni-a", "eni-b"]);
        // Secondary addresses count; an interface the endpoint does not list does not.
        let enis = [eni("eni-b", &["10.0.2.7"]), eni("eni-a", &["10.0.1.5", "10.0.1.6"]), eni("eni-other", &["10.9.9.9"])];
        assert_eq!(why(endpoint_cidrs(id, "us-east-1", Some(&e), &enis)), ("ok", "10.0.1.5/32 10.0.1.6/32 10.0.2.7/32".into()));
    }

    #[test]
    fn a_gone_endpoint_withdraws_the_route_and_one_on_its_way_keeps_it() {
        let id = "vpce-0123456789abcdef0";
        let enis = [eni("eni-a", &["10.0.1.5"])];
        let (k, s) = why(endpoint_cidrs(id, "us-east-1", None, &enis));
        assert_eq!(k, "withdrawn");
        assert!(s.contains("knows no endpoint vpce-0123456789abcdef0 in us-east-1"), "{s}");
        for state in ["deleted", "deleting", "failed", "rejected", "expired", ""] {
            assert_eq!(why(endpoint_cidrs(id, "us-east-1", Some(&endpoint("Interface", state, &["eni-a"])), &enis)).0, "withdrawn", "{state}");
        }
        for state in ["pending", "pendingAcceptance", "modifying"] {
            assert_eq!(why(endpoint_cidrs(id, "us-east-1", Some(&endpoint("Interface", state, &["eni-a"])), &enis)).0, "failed", "{state}");
        }
        let (k, s) = why(endpoint_cidrs(id, "us-east-1", Some(&endpoint("Gateway", "available", &[])), &enis));
        assert!(k == "withdrawn" && s.contains("Gateway endpoint"), "{s}");
    }

    #[test]
    fn an_endpoint_without_usable_addresses_keeps_the_previous_set() {
        let id = "vpce-0123456789abcdef0";
        let (k, s) = why(endpoint_cidrs(id, "us-east-1", Some(&endpoint("Interface", "available", &[])), &[]));
        assert!(k == "refused" && s.contains("it has none"), "{s}");
        let (k, s) = why(endpoint_cidrs(id, "us-east-1", Some(&endpoint("Interface", "available", &["eni-a"])), &[eni("eni-a", &["169.254.1.1"])]));
        assert!(k == "refused" && s.contains("169.254.1.1/32"), "{s}");
    }
}

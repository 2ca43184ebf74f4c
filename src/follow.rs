//! Routes that follow AWS: a gateway route with `prefix_list = "pl-…"` (or the list's name) takes
//! its CIDRs from `GetManagedPrefixListEntries`, asked again every `refresh`. A change is applied
//! like a reload (new connections use it, open tunnels keep theirs) and written to the route's
//! `cache_file` first, so that a restart (or a SIGHUP, which re-reads it) starts from the last good
//! copy when AWS cannot be asked. A failed refresh keeps the previous set; a list whose entries
//! break the CIDR rules of every route ([`crate::routes::parse_cidr`]) is refused and the previous
//! set kept, loudly.
//!
//! One task watches every followed route of the current state, so routes a reload adds are
//! followed too and routes it removes are dropped.

use crate::audit::aws::{ApiError, Aws};
use crate::proxy::Shared;
use crate::routes::{self, Fetched, Route};
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
        Err(f) => {
            let (kind, why) = match f {
                Failure::Failed(e) => ("failed", e),
                Failure::Refused(e) => ("refused", e),
            };
            count(kind);
            let age =
                follow.fetched.as_ref().map(|f| format!("the copy of {} fetched {} ({} s ago)", f.id, routes::utc_text(f.at), now_unix().saturating_sub(f.at)));
            let message = format!(
                "{} {}; route {} keeps {}",
                if kind == "refused" { "refused the prefix list's new entries:" } else { "could not refresh the prefix list:" },
                why,
                route.name,
                match (&age, route.cidrs.is_empty()) {
                    (_, true) => "no CIDRs, so it carries nothing until a fetch succeeds".to_string(),
                    (Some(a), false) => format!("its {} CIDRs, {a}", route.cidrs.len()),
                    (None, false) => format!("its {} CIDRs", route.cidrs.len()),
                }
            );
            RouteRefreshLine {
                result: kind,
                route: &route.name,
                prefix_list: &follow.prefix_list,
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
            match apply(shared, &state, route, &fetched, &cidrs, listen, admin, metrics) {
                Ok(true) => {
                    count("changed");
                    let new_route = Route { cidrs: cidrs.clone(), ..route.clone() };
                    let (added, removed) = routes::cidr_changes(std::slice::from_ref(route), std::slice::from_ref(&new_route));
                    RouteRefreshLine {
                        result: "changed",
                        route: &route.name,
                        prefix_list: &fetched.id,
                        version: &fetched.version.map(|v| v.to_string()).unwrap_or_default(),
                        cidrs: cidrs.len(),
                        cidrs_added: &added,
                        cidrs_removed: &removed,
                        message: &format!("route {} follows prefix list {}: new connections use its entries, open tunnels keep theirs", route.name, fetched.id),
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
    fetched: &Fetched,
    cidrs: &[Ipv4Net],
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    metrics: &Arc<Metrics>,
) -> Result<bool, String> {
    let mut loaded = state.config.clone();
    let Some(r) = loaded.routes.iter_mut().find(|r| r.name == route.name) else { return Ok(false) };
    r.cidrs = cidrs.to_vec();
    r.source = routes::follow_source(fetched);
    if let Some(f) = &mut r.follow {
        f.fetched = Some(fetched.clone());
    }
    let new = crate::server::build_state(loaded, listen, admin, metrics.clone(), Some(state))?;
    Ok(shared.replace_if(state, new))
}

enum Failure {
    /// AWS could not be asked or did not answer: the previous set stays.
    Failed(String),
    /// AWS answered entries vpcgate will not route: the previous set stays, loudly.
    Refused(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Failed(e.to_string())
    }
}

/// The list's current entries, or why not.
async fn fetch(config: &crate::config::Loaded, route: &Route) -> Result<Outcome, Failure> {
    let follow = route.follow.as_ref().expect("followed");
    let region = route.region.clone().unwrap_or_else(|| config.regions[0].clone());
    let env: HashMap<String, String> = std::env::vars().collect();
    let creds = crate::audit::aws::credentials(&region).await.map_err(Failure::Failed)?;
    let api = Aws::new(config, &region, creds, &env, config.settings.aws.public_api).map_err(Failure::Failed)?;
    let params = if follow.prefix_list.starts_with("pl-") {
        vec![("PrefixListId.1".to_string(), follow.prefix_list.clone())]
    } else {
        vec![("Filter.1.Name".to_string(), "prefix-list-name".to_string()), ("Filter.1.Value.1".to_string(), follow.prefix_list.clone())]
    };
    let xml = api.ec2("DescribeManagedPrefixLists", &params).await?;
    let list = crate::audit::facts::prefix_lists(&xml)
        .map_err(|e| Failure::Failed(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Failed(format!("no prefix list {} in {region}; check the route's prefix_list and region", follow.prefix_list)))?;
    let raw = crate::audit::raw_entries(&api, &list.id).await?;
    let mut cidrs = Vec::new();
    for c in &raw {
        cidrs.push(routes::parse_cidr(c).map_err(|e| Failure::Refused(format!("prefix list {} {e}", list.id)))?);
    }
    if cidrs.is_empty() {
        return Err(Failure::Refused(format!("prefix list {} has no entries, which would refuse everything the route carries", list.id)));
    }
    cidrs.sort();
    cidrs.dedup();
    let fetched = Fetched { id: list.id.clone(), name: list.name.clone(), version: list.version, at: now_unix() };
    let same_list = follow.fetched.as_ref().is_some_and(|f| f.id == fetched.id && f.version == fetched.version);
    if cidrs == route.cidrs && same_list {
        Ok(Outcome::Unchanged(fetched))
    } else {
        Ok(Outcome::Changed(fetched, cidrs))
    }
}

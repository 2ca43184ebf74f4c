//! Typed settings, loaded in three layers with the `config` crate: the embedded default
//! (`config/default.toml`), then a TOML file (`--config PATH` or `VPCGATE_CONFIG`), then
//! `VPCGATE__SECTION__KEY` environment variables. Unknown keys and invalid values stop start-up
//! with one sentence naming the key, the value where we have it, and the layer it came from.

use crate::routes::{self, Route, RouteKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The listener clients reach, its limits and timeouts.
    pub proxy: ProxySettings,
    /// The name servers vpcgate asks itself (A records only).
    pub dns: DnsSettings,
    /// The regions vpcgate carries, and its own calls to AWS.
    pub aws: AwsSettings,
    /// The private routes: each a gateway or interface endpoint and the CIDRs behind it. A config
    /// that lists routes replaces the default route (`s3-default`, the embedded S3 IPv4 prefixes
    /// of `aws.regions`).
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// Passthrough or inspect, the interception CA, and the upstream connection pool.
    pub tls: TlsSettings,
    /// The bucket perimeter: which buckets a request may name (`policy::bucket`).
    pub s3: S3Settings,
    /// Who may use the proxy when `proxy.auth = "basic"` (`proxy::auth`).
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
    /// The decision log on stderr.
    pub log: LogSettings,
    /// `/healthz`, `/readyz` and `/metrics`.
    pub admin: AdminSettings,
    /// What the running proxy requires AWS to prove (`vpcgate audit`'s gateway-route checks).
    pub audit: AuditSettings,
}

/// `audit.require`: which proof a gateway route needs before it carries anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// Routes carry traffic on their CIDRs alone.
    None,
    /// The subnet's route table sends the route's prefix list to an available gateway endpoint.
    RouteTable,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Which proof a gateway route needs before it carries anything.
    pub require: Require,
    /// How often the proof is run again while vpcgate runs.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub interval: Duration,
    /// The subnet vpcgate's traffic leaves from, when IMDSv2 cannot say (off EC2); empty: this
    /// instance's, from IMDSv2.
    pub subnet: String,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// The user name in `Proxy-Authorization: Basic` (and in `HTTPS_PROXY=http://NAME:PASSWORD@…`).
    pub name: String,
    /// The password as an Argon2id PHC string (`vpcgate client add NAME` prints one).
    pub password_hash: String,
    /// Buckets this client may reach, within `s3.buckets` (same patterns); absent: `s3.buckets`.
    pub buckets: Option<Vec<String>>,
}

/// `proxy.auth`: whether clients must authenticate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the listener may use it.
    None,
    /// Every proxy request needs `Proxy-Authorization: Basic` of a `[[clients]]` entry (407
    /// otherwise).
    Basic,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket patterns a request may name (`*` within a name; `accesspoint/NAME-ACCOUNT`,
    /// `mrap/ALIAS`); empty: any bucket.
    pub buckets: Vec<String>,
    /// Whether `GET /` on a service name (ListBuckets) passes while `buckets` is set.
    pub allow_list_buckets: bool,
}

impl Settings {
    /// Settings read once at start that differ in `new`: a reload cannot apply them (listeners,
    /// the connection limit, runtime threads, the log subscriber), so it keeps these and says so.
    pub fn restart_only_changes(&self, new: &Settings) -> Vec<String> {
        let pairs = [
            ("proxy.listen", self.proxy.listen.to_string(), new.proxy.listen.to_string()),
            ("proxy.max_connections", self.proxy.max_connections.to_string(), new.proxy.max_connections.to_string()),
            ("proxy.worker_threads", self.proxy.worker_threads.to_string(), new.proxy.worker_threads.to_string()),
            ("admin.listen", self.admin.listen.to_string(), new.admin.listen.to_string()),
            ("admin.enabled", self.admin.enabled.to_string(), new.admin.enabled.to_string()),
            ("log.level", self.log.level.clone(), new.log.level.clone()),
            ("log.format", format!("{:?}", self.log.format).to_lowercase(), format!("{:?}", new.log.format).to_lowercase()),
        ];
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(key, a, b)| format!("{key} changed from {a} to {b}, which applies only at start: restart vpcgate to use it (keeping {a})"))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// `/healthz`, `/readyz`, `/metrics`; loopback by default.
    #[cfg_attr(test, schemars(with = "crate::reference::AddressText"))]
    pub listen: SocketAddr,
    /// `false` runs without the admin listener.
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Where clients reach the proxy; loopback unless told otherwise (a sidecar sets
    /// `0.0.0.0:3128`).
    #[cfg_attr(test, schemars(with = "crate::reference::AddressText"))]
    pub listen: SocketAddr,
    /// Ports a CONNECT may name.
    pub connect_ports: Vec<u16>,
    /// Open client connections at most (tunnels included, at most 1,000,000); the next one gets
    /// `503 over_capacity`. `0`: as many as the hard open-file limit holds, (limit -
    /// `tls.upstream_idle_max` - 64) / 2, at most 10,000 and at least 16
    /// ([`auto_max_connections`]; after loading it is that number). At start vpcgate raises its
    /// soft open-file limit to the hard one and warns when that is too low.
    pub max_connections: usize,
    /// The TCP connect to the checked address; `504 connect_timeout` after it.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub connect_timeout: Duration,
    /// A tunnel with no byte either way for this long is closed; in inspect mode also while a
    /// request is in flight (a request still waiting for its response head gets a `504`,
    /// `upstream_timeout`).
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub idle_timeout: Duration,
    /// The proxy request head, and then both TLS hellos, must arrive within this.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub handshake_timeout: Duration,
    /// After SIGTERM or SIGINT vpcgate stops accepting and gives open tunnels this long.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub shutdown_grace: Duration,
    /// Threads of the async runtime; `0` = one per CPU (a sidecar may want 1 or 2).
    pub worker_threads: usize,
    /// Inspect mode: answer a policy refusal of an AWS name inside the tunnel (`200`, TLS with a
    /// leaf minted for that tunnel alone, then the service's own error with the sentence to each
    /// request; nothing is dialled) rather than as the CONNECT status, because boto3 and the aws
    /// CLI print a refused CONNECT only as "Failed to connect to proxy URL". Passthrough mode has
    /// no CA and always refuses at the CONNECT.
    pub refuse_in_tunnel: bool,
    /// Whether clients must authenticate.
    pub auth: AuthMode,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// `"system"` (the name servers of `/etc/resolv.conf`, without its search domains) or a list
    /// of `"IP"` / `"IP:PORT"`, e.g. the VPC resolver `"169.254.169.253:53"` or a Route 53
    /// Resolver inbound endpoint.
    pub servers: Vec<String>,
    /// The bound on one lookup; a timeout refuses with `502 dns_failed`.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Regions whose names may be carried; empty: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else
    /// `us-east-1`.
    pub regions: Vec<String>,
    /// Where vpcgate keeps the last good copy of what it fetched from AWS (prefix lists), so that
    /// it starts with it when AWS cannot be asked.
    #[cfg_attr(test, schemars(with = "crate::reference::PathText"))]
    pub cache_dir: PathBuf,
    /// Whether vpcgate's own read-only EC2 calls (prefix lists, audit) may take the public path
    /// when no route carries the EC2 API and no AWS_ENDPOINT_URL_EC2 names its endpoint.
    pub public_api: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Shown in logs, metrics and refusals.
    pub name: String,
    /// The kind of VPC endpoint behind the route.
    pub kind: RouteKind,
    /// IPv4 networks, e.g. `["52.216.0.0/15"]`. Host bits are refused, and so are prefixes
    /// shorter than /8 and link-local, multicast and reserved ranges (in `cidrs_file` too);
    /// link-local, where instance metadata lives, is never dialled whatever the routes say.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// JSON read at start: the output of `aws ec2 get-managed-prefix-list-entries` (the
    /// authoritative list behind a gateway endpoint), `aws ec2 describe-prefix-lists`, or AWS's
    /// `ip-ranges.json` (filtered by the route's service and region); `"embedded"` is vpcgate's
    /// embedded S3 prefixes. Combined with `cidrs`; relative to the working directory.
    #[serde(default)]
    #[cfg_attr(test, schemars(with = "Option<crate::reference::PathText>"))]
    pub cidrs_file: Option<PathBuf>,
    /// Interface routes: the endpoint DNS name vpcgate resolves instead of the requested one, e.g.
    /// `"vpce-0abc-1234.s3.us-east-1.vpce.amazonaws.com"` (or the regular name when the endpoint
    /// has private DNS). SNI and Host stay the requested name.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region an interface route serves; parsed from `endpoint` when omitted.
    #[serde(default)]
    pub region: Option<String>,
    /// The AWS service of the endpoint, as in `com.amazonaws.REGION.SERVICE` (`s3`, `sts`,
    /// `dynamodb`, `ecr.api`, …): from the endpoint name when it says, else `s3`. Gateway routes
    /// exist only for `s3` and `dynamodb`.
    #[serde(default)]
    pub service: Option<String>,
    /// Gateway routes: follow this prefix list (`pl-…` or `com.amazonaws.REGION.SERVICE`) instead
    /// of `cidrs`/`cidrs_file`, refreshed every `refresh`.
    #[serde(default)]
    pub prefix_list: Option<String>,
    /// Interface routes: take the CIDRs from this endpoint's (`vpce-…`) network interfaces, one
    /// /32 per private address, instead of `cidrs`/`cidrs_file`, refreshed every `refresh`.
    #[serde(default)]
    pub endpoint_id: Option<String>,
    /// How often a `prefix_list` or `endpoint_id` route asks AWS again (default 15m, at least 1s).
    #[serde(default, with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "Option<crate::reference::DurationText>"))]
    pub refresh: Option<Duration>,
    /// The last good copy of the list (default: `aws.cache_dir`/prefix-list-NAME.json) or of the
    /// endpoint's addresses (`aws.cache_dir`/endpoint-NAME.json), read at start.
    #[serde(default)]
    #[cfg_attr(test, schemars(with = "Option<crate::reference::PathText>"))]
    pub cache_file: Option<PathBuf>,
}

/// How often a `prefix_list` or `endpoint_id` route asks AWS, unless it says.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(15 * 60);
/// The shortest `refresh` accepted: AWS throttles Describe calls, and lists change rarely.
pub const SHORTEST_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Relay the client's own TLS after checking both hellos (SNI, versions, forward secrecy).
    Passthrough,
    /// Intercept TLS with vpcgate's CA so that every request is checked (SigV2 refused).
    Inspect,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// What vpcgate does with the TLS inside a tunnel.
    pub mode: TlsMode,
    /// The interception CA's certificate (PEM); created with `ca_key` on first start when both are
    /// missing.
    #[cfg_attr(test, schemars(with = "crate::reference::PathText"))]
    pub ca_cert: PathBuf,
    /// The CA's private key (PEM); start-up refuses it unless its mode is 0600.
    #[cfg_attr(test, schemars(with = "crate::reference::PathText"))]
    pub ca_key: PathBuf,
    /// DNS subtrees the CA may sign for beyond `amazonaws.com`, `amazonaws.com.cn` and `api.aws`
    /// (name constraints, fixed when the CA is created).
    pub ca_extra_names: Vec<String>,
    /// PEM files trusted for upstreams beside Mozilla's roots.
    #[cfg_attr(test, schemars(with = "Vec<crate::reference::PathText>"))]
    pub extra_roots: Vec<PathBuf>,
    /// Leaf certificates kept (one per host).
    pub leaf_cache_size: usize,
    /// Idle upstream connections kept per (host, address) in inspect mode.
    pub upstream_idle_per_host: usize,
    /// Idle upstream connections kept in all (every bucket name is a key of its own; each holds a
    /// TLS session and a 128 KiB buffer); expired ones are swept every `upstream_idle_timeout`.
    pub upstream_idle_max: usize,
    /// An idle pooled upstream connection older than this is dropped.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(test, schemars(with = "crate::reference::DurationText"))]
    pub upstream_idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: coloured only when stderr is a terminal and `NO_COLOR` is unset.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// How each line is written.
    pub format: LogFormat,
    /// `error`, `warn`, `info`, `debug`, `trace` or a tracing filter; `RUST_LOG` overrides it.
    pub level: String,
}

/// A configured DNS server set, resolved from `dns.servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServers {
    /// `/etc/resolv.conf`.
    System,
    List(Vec<SocketAddr>),
}

impl std::fmt::Display for DnsServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsServers::System => f.write_str("system resolvers (/etc/resolv.conf)"),
            DnsServers::List(l) => f.write_str(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
        }
    }
}

/// Everything the proxy needs, validated: settings plus the loaded routes.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub regions: Vec<String>,
    pub routes: Vec<Route>,
    pub dns: DnsServers,
    /// `[s3]` as the perimeter checks it.
    pub buckets: crate::policy::bucket::BucketRules,
    /// Which layers were read, for the banner.
    pub sources: Vec<String>,
    /// The config file that was read (`--config` or `VPCGATE_CONFIG`): what a reload reads again
    /// and `run --watch-config` watches.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// vpcgate's own listening addresses, never dialled (the proxy's and the admin listener's):
    /// the one list the proxy, `explain` and `check` decide with.
    pub fn own_addresses(&self) -> Vec<SocketAddr> {
        let mut own = vec![self.settings.proxy.listen];
        if self.settings.admin.enabled {
            own.push(self.settings.admin.listen);
        }
        own
    }
}

/// A configuration that cannot be used. Display is one sentence naming the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Where the layers come from. `env` is the process environment in production and a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: HashMap<String, String>,
}

impl Sources {
    /// The process's own: `--config` (or `VPCGATE_CONFIG`) and every `VPCGATE__…` variable.
    pub fn from_process(file: Option<PathBuf>) -> Sources {
        let file = file.or_else(|| std::env::var_os("VPCGATE_CONFIG").map(PathBuf::from));
        Sources::from_vars(file, std::env::vars())
    }

    /// [`Sources::from_process`] over any set of variables (tests pass their own, so that none
    /// sets the process environment while other threads read it).
    pub fn from_vars(file: Option<PathBuf>, vars: impl Iterator<Item = (String, String)>) -> Sources {
        // Overrides, and names that look like a misspelt one (`VPCGATE_TLS__MODE`: a double
        // underscore after a single one), which `load` refuses with a sentence instead of ignoring.
        // Other VPCGATE_ names are not ours to judge: Kubernetes adds VPCGATE_SERVICE_HOST,
        // VPCGATE_PORT_3128_TCP… to every pod of a namespace with a Service named vpcgate.
        let env = vars.filter(|(k, _)| k.starts_with("VPCGATE__") || (k.starts_with("VPCGATE_") && k.contains("__"))).collect();
        Sources { file, env }
    }
}

/// `proxy.max_connections = 0` (the default): as many tunnels as the hard open-file limit holds
/// (two sockets each, beside the idle upstream pool and some spare; vpcgate raises its soft limit
/// to the hard one at start), at most [`AUTO_MAX_CONNECTIONS`] and at least [`AUTO_MIN_CONNECTIONS`]
/// (below that the start warns that the limit is too low). No limit known: the most.
pub fn auto_max_connections(hard_limit: Option<u64>, upstream_idle_max: usize) -> usize {
    let Some(limit) = hard_limit else { return AUTO_MAX_CONNECTIONS };
    let room = limit.saturating_sub(upstream_idle_max as u64 + OPEN_FILES_SPARE) / 2;
    (room.min(AUTO_MAX_CONNECTIONS as u64) as usize).max(AUTO_MIN_CONNECTIONS)
}

/// What `max_connections = 0` gives at most.
pub const AUTO_MAX_CONNECTIONS: usize = 10_000;
/// What `max_connections = 0` gives at least.
pub const AUTO_MIN_CONNECTIONS: usize = 16;
/// Open files beside the tunnels and the idle pool: listeners, DNS sockets, logs, config files.
pub const OPEN_FILES_SPARE: u64 = 64;

/// The hard open-file limit of this process, when it has one.
fn open_files_hard_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct passed by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_max != libc::RLIM_INFINITY {
            return Some(lim.rlim_max);
        }
    }
    None
}

/// The largest proxy.max_connections accepted.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

const LIST_KEYS: &[&str] = &["proxy.connect_ports", "dns.servers", "aws.regions", "tls.extra_roots", "tls.ca_extra_names", "s3.buckets"];

fn builder_with(sources: &Sources, with_file: bool, with_env: bool) -> Result<config::Config, ConfigError> {
    let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
    if with_file {
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(err(format!("the config file {} does not exist; pass an existing TOML file with --config or VPCGATE_CONFIG", path.display())));
            }
            b = b.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
    }
    if with_env && !sources.env.is_empty() {
        let mut env = config::Environment::with_prefix("VPCGATE")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(sources.env.clone().into_iter().collect()));
        for k in LIST_KEYS {
            env = env.with_list_parse_key(k);
        }
        b = b.add_source(env);
    }
    b.build().map_err(|e| err(e.to_string()))
}

fn deserialize(c: config::Config) -> Result<Settings, ConfigError> {
    c.try_deserialize::<Settings>().map_err(|e| err(e.to_string()))
}

/// Load and validate. `env_regions` is AWS_REGION / AWS_DEFAULT_REGION (first set wins).
pub fn load(sources: &Sources, env_regions: &[String]) -> Result<Loaded, ConfigError> {
    let mut stray: Vec<&String> = sources.env.keys().filter(|k| !k.starts_with("VPCGATE__")).collect();
    stray.sort();
    if let Some(k) = stray.first() {
        return Err(err(format!(
            "the environment variable {k} is not read: overrides are named VPCGATE__SECTION__KEY (two underscores after VPCGATE and between the parts, e.g. VPCGATE__TLS__MODE); rename or unset it"
        )));
    }
    // Build layer by layer so that a failure names the layer that brought the bad key or value.
    let layers: [(bool, bool, String); 3] = [
        (false, false, "the embedded default config".to_string()),
        (true, false, sources.file.as_ref().map(|p| format!("config file {}", p.display())).unwrap_or_default()),
        (true, true, "VPCGATE__ environment variables".to_string()),
    ];
    let mut settings = None;
    let mut read = Vec::new();
    for (with_file, with_env, name) in layers {
        if (with_file && !with_env && sources.file.is_none()) || (with_env && sources.env.is_empty()) {
            continue;
        }
        let s = builder_with(sources, with_file, with_env)
            .and_then(deserialize)
            .map_err(|e| err(format!("invalid configuration in {name}: {}; correct it (docs/src/reference/config.md lists every key)", tidy(&e.0))))?;
        read.push(name);
        settings = Some(s);
    }
    let settings = settings.expect("the embedded default always deserializes");
    let mut loaded = validate(settings, env_regions, read)?;
    loaded.file = sources.file.clone();
    Ok(loaded)
}

/// The `config` crate's messages carry some noise; keep them to one line.
fn tidy(msg: &str) -> String {
    msg.replace('\n', " ").trim_end_matches('.').to_string()
}

fn parse_dns_servers(list: &[String]) -> Result<DnsServers, ConfigError> {
    if list.is_empty() {
        return Err(err("dns.servers is empty; set it to [\"system\"] or to resolver addresses like [\"169.254.169.253:53\"]"));
    }
    if list.iter().any(|s| s == "system") {
        if list.len() > 1 {
            return Err(err("dns.servers mixes \"system\" with addresses; use either [\"system\"] or a list of addresses"));
        }
        return Ok(DnsServers::System);
    }
    let mut out = Vec::new();
    for s in list {
        let addr = s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| err(format!("dns.servers entry {s:?} is not an address; write \"IP\" or \"IP:PORT\" (e.g. \"169.254.169.253:53\") or \"system\"")))?;
        out.push(addr);
    }
    Ok(DnsServers::List(out))
}

fn validate(settings: Settings, env_regions: &[String], sources: Vec<String>) -> Result<Loaded, ConfigError> {
    let mut settings = settings;
    if settings.proxy.max_connections == 0 {
        settings.proxy.max_connections = auto_max_connections(open_files_hard_limit(), settings.tls.upstream_idle_max);
    }
    let p = &settings.proxy;
    if p.connect_ports.is_empty() || p.connect_ports.contains(&0) {
        return Err(err("proxy.connect_ports must list ports from 1 to 65535, e.g. [443]"));
    }
    if p.max_connections > MAX_CONNECTIONS_LIMIT {
        return Err(err(format!(
            "proxy.max_connections is {}, more than the {MAX_CONNECTIONS_LIMIT} vpcgate supports (two sockets per tunnel); set it lower",
            p.max_connections
        )));
    }
    for (key, d) in [
        ("proxy.connect_timeout", p.connect_timeout),
        ("proxy.idle_timeout", p.idle_timeout),
        ("proxy.handshake_timeout", p.handshake_timeout),
        ("dns.timeout", settings.dns.timeout),
    ] {
        if d.is_zero() {
            return Err(err(format!("{key} is 0; set a duration such as \"10s\"")));
        }
    }
    if settings.audit.interval < SHORTEST_REFRESH {
        return Err(err("audit.interval is shorter than 1s; set a duration such as \"15m\""));
    }
    if !settings.audit.subnet.is_empty() && !settings.audit.subnet.starts_with("subnet-") {
        return Err(err(format!(
            "audit.subnet is {:?}, which is no subnet ID; write it like \"subnet-0abc…\" or leave it empty for IMDSv2",
            settings.audit.subnet
        )));
    }
    if settings.admin.enabled && settings.admin.listen == p.listen {
        return Err(err(format!("admin.listen and proxy.listen are both {}; give the admin listener its own port (e.g. 127.0.0.1:9128)", p.listen)));
    }
    let dns = parse_dns_servers(&settings.dns.servers)?;
    let regions: Vec<String> = if settings.aws.regions.is_empty() {
        env_regions.iter().take(1).cloned().chain(std::iter::once("us-east-1".to_string())).take(1).collect()
    } else {
        settings.aws.regions.clone()
    };
    for r in &regions {
        if !crate::policy::host::is_region(r) {
            return Err(err(format!("aws.regions has {r:?}, which is not a region code; write regions like \"us-east-1\"")));
        }
    }
    if settings.tls.leaf_cache_size == 0 {
        return Err(err("tls.leaf_cache_size is 0; set it to a positive number such as 10000"));
    }
    for n in &settings.tls.ca_extra_names {
        crate::policy::authority::validate_hostname(n)
            .map_err(|_| err(format!("tls.ca_extra_names has {n:?}, which is not a DNS name; write names like \"example.internal\"")))?;
    }
    validate_bucket_patterns(&settings.s3.buckets)?;
    validate_clients(&settings)?;
    let routes = if settings.routes.is_empty() {
        vec![routes::default_route(&regions).map_err(|e| {
            err(format!("the embedded S3 prefixes for aws.regions = {:?} {e}; configure [[routes]] with the prefix list of that region", regions))
        })?]
    } else {
        let mut out: Vec<Route> = Vec::new();
        for r in &settings.routes {
            if out.iter().any(|o| o.name == r.name) {
                return Err(err(format!("two routes are named {:?}; give each [[routes]] entry its own name", r.name)));
            }
            out.push(load_route(r, &regions, &settings.aws)?);
        }
        out
    };
    let buckets = crate::policy::bucket::BucketRules { patterns: settings.s3.buckets.clone(), allow_list_buckets: settings.s3.allow_list_buckets };
    Ok(Loaded { settings, regions, routes, dns, buckets, sources, file: None })
}

/// `s3.buckets`: bucket names with `*`, or `accesspoint/…` and `mrap/…` keys (`policy::bucket`).
fn validate_bucket_patterns(patterns: &[String]) -> Result<(), ConfigError> {
    for p in patterns {
        let name = p.strip_prefix("accesspoint/").or_else(|| p.strip_prefix("mrap/")).unwrap_or(p);
        let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b));
        if !ok {
            return Err(err(format!(
                "s3.buckets has {p:?}, which is no bucket pattern; write bucket names with * for any run of characters (\"logs-*\"), or \"accesspoint/NAME-ACCOUNT\" and \"mrap/ALIAS\""
            )));
        }
    }
    Ok(())
}

/// `[[clients]]` with `proxy.auth`: unique plain names, Argon2 PHC hashes, valid bucket patterns.
fn validate_clients(settings: &Settings) -> Result<(), ConfigError> {
    let basic = settings.proxy.auth == AuthMode::Basic;
    if basic && settings.clients.is_empty() {
        return Err(err(
            "proxy.auth = \"basic\" but no [[clients]] are configured, so every request would be refused; add a client with `vpcgate client add NAME`",
        ));
    }
    if !basic && !settings.clients.is_empty() {
        return Err(err(
            "[[clients]] are configured but proxy.auth is not \"basic\", so they would not be asked for; set proxy.auth = \"basic\" or remove them",
        ));
    }
    for (i, c) in settings.clients.iter().enumerate() {
        let plain = !c.name.is_empty() && c.name.len() <= 64 && c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(err(format!(
                "[[clients]] name {:?} is not a plain name; use letters, digits, '.', '_' and '-' (no ':', which ends the name in Basic credentials)",
                c.name
            )));
        }
        if settings.clients[..i].iter().any(|o| o.name == c.name) {
            return Err(err(format!("two [[clients]] are named {:?}; give each its own name", c.name)));
        }
        match argon2::password_hash::PasswordHash::new(&c.password_hash) {
            Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
            _ => {
                return Err(err(format!(
                    "[[clients]] {:?} has a password_hash that is no Argon2 PHC string; paste the line `vpcgate client add {}` prints",
                    c.name, c.name
                )))
            }
        }
        if let Some(b) = &c.buckets {
            validate_bucket_patterns(b)?;
        }
    }
    Ok(())
}

/// `cidrs_file = "embedded"`: the S3 prefixes vpcgate carries (the default route's), for a
/// configuration that lists S3 beside other services' routes.
pub const EMBEDDED_CIDRS: &str = "embedded";

fn load_route(r: &RouteSettings, regions: &[String], aws: &AwsSettings) -> Result<Route, ConfigError> {
    let endpoint = validate_route_endpoint(r)?;
    let service = validate_route_service(r, endpoint.as_deref())?;
    let mut cidrs = Vec::new();
    let mut source = Vec::new();
    for c in &r.cidrs {
        cidrs.push(routes::parse_cidr(c).map_err(|e| match e {
            routes::RouteSourceError::BadCidr(_) => err(format!(
                "route {:?} has cidrs entry {c:?}, which is not an IPv4 network; write it like \"52.216.0.0/15\" (no host bits, IPv4 only)",
                r.name
            )),
            other => err(format!("route {:?} {other}", r.name)),
        })?);
    }
    if !r.cidrs.is_empty() {
        source.push("config cidrs".to_string());
    }
    let route_regions = r.region.as_ref().map(std::slice::from_ref).unwrap_or(regions);
    match &r.cidrs_file {
        // The S3 prefixes embedded in vpcgate (the default route's), beside routes of other services.
        Some(path) if path.as_os_str() == EMBEDDED_CIDRS => {
            if service != routes::S3 {
                return Err(err(format!(
                    "route {:?} takes cidrs_file = \"embedded\", which holds S3's prefixes only; give the {service} route the CIDRs of its endpoint (or its prefix list's entries)",
                    r.name
                )));
            }
            let (mut more, what) = routes::parse_cidr_source(routes::EMBEDDED_S3_PREFIXES, route_regions, routes::S3)
                .map_err(|e| err(format!("route {:?}: the embedded S3 prefixes {e}", r.name)))?;
            cidrs.append(&mut more);
            source.push(format!("embedded {what}, regions {}", route_regions.join(",")));
        }
        Some(path) => {
            let (mut more, what) = read_cidrs_file(path, route_regions, &service).map_err(|e| err(format!("route {:?}: {e}", r.name)))?;
            cidrs.append(&mut more);
            source.push(format!("{} ({what})", path.display()));
        }
        None => {}
    }
    let mut follow = validate_route_follow(r, &service, !cidrs.is_empty(), aws)?;
    if let Some(f) = &mut follow {
        match std::fs::read_to_string(&f.cache_file) {
            // No copy yet: the route carries nothing until the first fetch (fail closed).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => source.push(format!("{}, not fetched yet", f.target.describe())),
            Err(e) => {
                return Err(err(format!("route {:?}: cannot read its cache_file {} ({e}); fix its permissions or remove it", r.name, f.cache_file.display())))
            }
            Ok(text) => {
                let (fetched, mut more) = routes::parse_cache(&text).map_err(|e| {
                    err(format!(
                        "route {:?}: its cache_file {} {e}; remove it and vpcgate fetches the {} again",
                        r.name,
                        f.cache_file.display(),
                        f.target.describe()
                    ))
                })?;
                if fetched.id != f.target.id() && !f.target.id().starts_with("com.amazonaws.") {
                    return Err(err(format!(
                        "route {:?}: its cache_file {} holds {}, not the configured {}; remove it or point cache_file elsewhere",
                        r.name,
                        f.cache_file.display(),
                        fetched.id,
                        f.target.id()
                    )));
                }
                cidrs.append(&mut more);
                source.push(routes::follow_source(&fetched));
                f.fetched = Some(fetched);
            }
        }
    }
    if cidrs.is_empty() && follow.is_none() {
        return Err(err(format!(
            "route {:?} has no CIDRs; set cidrs = [\"…\"] or cidrs_file = \"pl-….json\" (output of aws ec2 get-managed-prefix-list-entries)",
            r.name
        )));
    }
    cidrs.sort();
    cidrs.dedup();
    let region = match (&r.region, &endpoint) {
        (Some(reg), _) => Some(reg.clone()),
        (None, Some(e)) => crate::policy::host::classify(e).region().map(str::to_string),
        _ => None,
    };
    if let Some(reg) = &region {
        if !crate::policy::host::is_region(reg) {
            return Err(err(format!("route {:?} has region {reg:?}, which is not a region code like \"us-east-1\"", r.name)));
        }
    }
    Ok(Route { name: r.name.clone(), kind: r.kind, cidrs, endpoint, region, source: source.join(" + "), service, follow })
}

/// `prefix_list` (gateway routes) or `endpoint_id` (interface routes), with `refresh` and
/// `cache_file`: a route that follows AWS takes its CIDRs from there alone.
fn validate_route_follow(r: &RouteSettings, service: &str, has_cidrs: bool, aws: &AwsSettings) -> Result<Option<routes::Follow>, ConfigError> {
    let target = match (&r.prefix_list, &r.endpoint_id) {
        (None, None) => {
            if r.refresh.is_some() || r.cache_file.is_some() {
                return Err(err(format!(
                    "route {:?} sets refresh or cache_file without prefix_list or endpoint_id; add one of them or remove refresh and cache_file",
                    r.name
                )));
            }
            return Ok(None);
        }
        (Some(_), Some(_)) => {
            return Err(err(format!(
                "route {:?} has both prefix_list and endpoint_id; a gateway route follows its prefix_list, an interface route its endpoint_id",
                r.name
            )))
        }
        (Some(list), None) => validate_follow_prefix_list(r, service, list)?,
        (None, Some(id)) => validate_follow_endpoint_id(r, id)?,
    };
    if has_cidrs || r.cidrs_file.is_some() {
        return Err(err(format!(
            "route {:?} has {} and also cidrs or cidrs_file; keep one source: the {}",
            r.name,
            if r.prefix_list.is_some() { "prefix_list" } else { "endpoint_id" },
            target.describe()
        )));
    }
    let refresh = r.refresh.unwrap_or(DEFAULT_REFRESH);
    if refresh < SHORTEST_REFRESH {
        return Err(err(format!("route {:?} has refresh = {:?}, shorter than 1s; set a duration such as \"15m\"", r.name, refresh)));
    }
    let stem = match target {
        routes::Target::PrefixList(_) => "prefix-list",
        routes::Target::Endpoint(_) => "endpoint",
    };
    let cache_file = r.cache_file.clone().unwrap_or_else(|| aws.cache_dir.join(format!("{stem}-{}.json", r.name)));
    Ok(Some(routes::Follow { target, refresh, cache_file, fetched: None }))
}

fn validate_follow_prefix_list(r: &RouteSettings, service: &str, list: &str) -> Result<routes::Target, ConfigError> {
    if r.kind != RouteKind::Gateway {
        return Err(err(format!(
            "interface route {:?} has a prefix_list, which only gateway routes follow; name its endpoint with endpoint_id = \"vpce-…\" or give it the endpoint's CIDRs",
            r.name
        )));
    }
    if !routes::is_prefix_list_ref(list) {
        return Err(err(format!(
            "route {:?} has prefix_list = {list:?}, which is neither a list ID (\"pl-63a5400a\") nor a list name (\"com.amazonaws.us-east-1.{service}\")",
            r.name
        )));
    }
    Ok(routes::Target::PrefixList(list.to_string()))
}

/// An interface route's `endpoint_id`: an endpoint ID, and the same endpoint its DNS name names.
fn validate_follow_endpoint_id(r: &RouteSettings, id: &str) -> Result<routes::Target, ConfigError> {
    if r.kind != RouteKind::Interface {
        return Err(err(format!(
            "gateway route {:?} has an endpoint_id, but a gateway endpoint has no addresses of its own; follow its prefix list with prefix_list = \"com.amazonaws.REGION.SERVICE\"",
            r.name
        )));
    }
    if !routes::is_endpoint_id(id) {
        return Err(err(format!(
            "route {:?} has endpoint_id = {id:?}, which is not an endpoint ID; copy its VpcEndpointId, like \"vpce-0a1b2c3d4e5f60718\"",
            r.name
        )));
    }
    if let Some(named) = r.endpoint.as_deref().and_then(crate::audit::checks::endpoint_id_of) {
        if named != id {
            return Err(err(format!(
                "route {:?} has endpoint_id = {id:?} but its endpoint {:?} is the DNS name of {named}; make them name the same endpoint",
                r.name,
                r.endpoint.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(routes::Target::Endpoint(id.to_string()))
}

/// An interface route names its endpoint's DNS name; a gateway route has none.
fn validate_route_endpoint(r: &RouteSettings) -> Result<Option<String>, ConfigError> {
    match (r.kind, &r.endpoint) {
        (RouteKind::Interface, None) => {
            Err(err(format!("interface route {:?} has no endpoint; set endpoint = \"vpce-….s3.REGION.vpce.amazonaws.com\" (the endpoint's DNS name)", r.name)))
        }
        (RouteKind::Gateway, Some(_)) => {
            Err(err(format!("gateway route {:?} has an endpoint, which only interface routes use; remove endpoint or set kind = \"interface\"", r.name)))
        }
        (_, Some(e)) => crate::policy::authority::validate_hostname(e)
            .map(Some)
            .map_err(|_| err(format!("route {:?} has endpoint {e:?}, which is not a DNS name; use the endpoint's DNS name", r.name))),
        (_, None) => Ok(None),
    }
}

/// The route's service: as written (lower-case labels joined by dots, as in
/// `com.amazonaws.REGION.ecr.api`), else the one its endpoint name says, else `s3`; the two must
/// agree, and only S3 and DynamoDB have gateway endpoints.
fn validate_route_service(r: &RouteSettings, endpoint: Option<&str>) -> Result<String, ConfigError> {
    let named = endpoint.map(crate::policy::host::classify).map(|c| c.service().to_string()).filter(|s| !s.is_empty());
    let service = match (&r.service, named) {
        (Some(s), Some(n)) if *s != n => {
            return Err(err(format!(
                "route {:?} has service = {s:?} but its endpoint {:?} is a {n} endpoint; set service = {n:?} or use the {s} endpoint's name",
                r.name,
                endpoint.unwrap_or("")
            )))
        }
        (Some(s), _) => s.clone(),
        (None, Some(n)) => n,
        (None, None) => routes::S3.to_string(),
    };
    if !service.split('.').all(crate::policy::host::is_service_label) {
        return Err(err(format!(
            "route {:?} has service {service:?}, which is not an AWS service name; write it as in the endpoint's service name com.amazonaws.REGION.SERVICE (\"sts\", \"kms\", \"ecr.api\")",
            r.name
        )));
    }
    if r.kind == RouteKind::Gateway && !routes::GATEWAY_SERVICES.contains(&service.as_str()) {
        return Err(err(format!(
            "route {:?} is a gateway route for {service}, but only S3 and DynamoDB have gateway endpoints; set kind = \"interface\" with the endpoint's name",
            r.name
        )));
    }
    Ok(service)
}

/// Read a `cidrs_file` (relative paths are relative to the working directory).
pub fn read_cidrs_file(path: &Path, regions: &[String], service: &str) -> Result<(Vec<ipnet::Ipv4Net>, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read cidrs_file {} ({e}); save the output of aws ec2 get-managed-prefix-list-entries there or fix the path", path.display())
    })?;
    routes::parse_cidr_source(&text, regions, service)
        .map_err(|e| format!("cidrs_file {} {e}; use the JSON output of aws ec2 get-managed-prefix-list-entries or ip-ranges.json", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_file(text: &str) -> (tempfile::NamedTempFile, Sources) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let s = Sources { file: Some(f.path().to_path_buf()), env: HashMap::new() };
        (f, s)
    }

    #[test]
    fn service_routes_take_their_service_from_the_endpoint_or_say_why_not() {
        let (_f, s) = with_file(
            "[[routes]]\nname = \"s3\"\nkind = \"gateway\"\ncidrs_file = \"embedded\"\n\
             [[routes]]\nname = \"sts\"\nkind = \"interface\"\nendpoint = \"vpce-0abc-1234.sts.us-east-1.vpce.amazonaws.com\"\ncidrs = [\"10.0.0.0/16\"]\n\
             [[routes]]\nname = \"sts-private-dns\"\nkind = \"interface\"\nservice = \"sts\"\nendpoint = \"sts.us-east-1.amazonaws.com\"\ncidrs = [\"10.1.0.0/16\"]\n\
             [[routes]]\nname = \"ddb\"\nkind = \"gateway\"\nservice = \"dynamodb\"\ncidrs = [\"3.218.180.0/22\"]\n",
        );
        let l = load(&s, &[]).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = l.routes.iter().map(|r| (r.name.as_str(), r.service.as_str(), r.region.as_deref())).collect();
        assert_eq!(got, vec![("s3", "s3", None), ("sts", "sts", Some("us-east-1")), ("sts-private-dns", "sts", Some("us-east-1")), ("ddb", "dynamodb", None)]);
        assert_eq!(l.routes[0].cidrs.len(), 21, "the embedded us-east-1 S3 prefixes");
        for (toml, why) in [
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\nservice = \"sts\"\ncidrs = [\"10.0.0.0/8\"]\n", "only S3 and DynamoDB have gateway endpoints"),
            (
                "[[routes]]\nname = \"x\"\nkind = \"interface\"\nservice = \"kms\"\nendpoint = \"vpce-1-2.sts.us-east-1.vpce.amazonaws.com\"\ncidrs = [\"10.0.0.0/8\"]\n",
                "is a sts endpoint; set service = \"sts\"",
            ),
            ("[[routes]]\nname = \"x\"\nkind = \"interface\"\nservice = \"STS\"\nendpoint = \"vpce-1-2.s3.us-east-1.vpce.amazonaws.com\"\ncidrs = [\"10.0.0.0/8\"]\n", "set service = \"s3\""),
            ("[[routes]]\nname = \"x\"\nkind = \"interface\"\nservice = \"Sts!\"\nendpoint = \"sts.example.internal\"\ncidrs = [\"10.0.0.0/8\"]\n", "not an AWS service name"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\nservice = \"dynamodb\"\ncidrs_file = \"embedded\"\n", "holds S3's prefixes only"),
        ] {
            let (_f, s) = with_file(toml);
            let e = load(&s, &[]).unwrap_err().to_string();
            assert!(e.contains(why), "{toml}: {e}");
        }
    }

    #[test]
    fn the_default_max_connections_is_sized_from_the_open_file_limit() {
        // Two sockets a tunnel, beside the idle pool (256) and 64 spare.
        assert_eq!(auto_max_connections(Some(20_000), 256), 9_840);
        assert_eq!(auto_max_connections(Some(1_048_576), 256), AUTO_MAX_CONNECTIONS);
        assert_eq!(auto_max_connections(None, 256), AUTO_MAX_CONNECTIONS);
        assert_eq!(auto_max_connections(Some(1_024), 256), 352);
        assert_eq!(auto_max_connections(Some(300), 256), AUTO_MIN_CONNECTIONS);
        let l = load(&Sources::default(), &[]).unwrap();
        assert_eq!(l.settings.proxy.max_connections, auto_max_connections(open_files_hard_limit(), l.settings.tls.upstream_idle_max));
    }

    #[test]
    fn embedded_default_loads() {
        let l = load(&Sources::default(), &[]).unwrap();
        assert_eq!(l.settings.proxy.listen, "127.0.0.1:3128".parse().unwrap());
        assert_eq!(l.regions, vec!["us-east-1"]);
        assert_eq!(l.routes.len(), 1);
        assert_eq!(l.dns, DnsServers::System);
        assert_eq!(l.settings.proxy.connect_timeout, Duration::from_secs(10));
        let l = load(&Sources::default(), &["eu-west-1".into()]).unwrap();
        assert_eq!(l.regions, vec!["eu-west-1"]);
    }

    #[test]
    fn reload_names_the_settings_that_need_a_restart() {
        let old = load(&Sources::default(), &[]).unwrap().settings;
        let (_f, s) = with_file("[proxy]\nmax_connections = 7\nidle_timeout = \"5s\"\n[log]\nformat = \"json\"\n");
        let new = load(&s, &[]).unwrap().settings;
        let changes = old.restart_only_changes(&new);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].starts_with(&format!("proxy.max_connections changed from {} to 7,", old.proxy.max_connections)), "{changes:?}");
        assert!(changes.iter().any(|c| c.starts_with("log.format changed from text to json")), "{changes:?}");
        assert!(old.restart_only_changes(&old.clone()).is_empty());
    }

    #[test]
    fn bucket_patterns_are_checked_and_become_the_perimeter() {
        let (_f, s) = with_file("[s3]\nbuckets = [\"harness-*\", \"accesspoint/ingest-123456789012\"]\nallow_list_buckets = false\n");
        let l = load(&s, &[]).unwrap();
        assert_eq!(l.buckets.patterns, ["harness-*", "accesspoint/ingest-123456789012"]);
        assert!(l.buckets.active() && !l.buckets.allow_list_buckets);
        assert!(!load(&Sources::default(), &[]).unwrap().buckets.active(), "no perimeter by default");
        for bad in ["\"a/b\"", "\"\"", "\"accesspoint/\"", "\"s3://x\""] {
            let (_f, s) = with_file(&format!("[s3]\nbuckets = [{bad}]\n"));
            let e = load(&s, &[]).unwrap_err().to_string();
            assert!(e.contains("s3.buckets") && e.contains("no bucket pattern"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_then_env() {
        let (_f, mut s) = with_file(
            r#"
            [proxy]
            listen = "127.0.0.1:4000"
            connect_timeout = "3s"
            [dns]
            servers = ["127.0.0.1:5353", "10.0.0.2"]
            [[routes]]
            name = "gw"
            kind = "gateway"
            cidrs = ["52.216.0.0/15"]
            [[routes]]
            name = "vpn"
            kind = "interface"
            endpoint = "vpce-0abc-1234.s3.us-east-1.vpce.amazonaws.com"
            cidrs = ["10.0.0.0/16"]
            "#,
        );
        s.env.insert("VPCGATE__PROXY__LISTEN".into(), "127.0.0.1:5000".into());
        s.env.insert("VPCGATE__PROXY__CONNECT_PORTS".into(), "443,8443".into());
        let l = load(&s, &[]).unwrap();
        assert_eq!(l.settings.proxy.listen.port(), 5000);
        assert_eq!(l.settings.proxy.connect_ports, vec![443, 8443]);
        assert_eq!(l.settings.proxy.connect_timeout, Duration::from_secs(3));
        assert_eq!(l.dns, DnsServers::List(vec!["127.0.0.1:5353".parse().unwrap(), "10.0.0.2:53".parse().unwrap()]));
        assert_eq!(l.routes.len(), 2);
        assert_eq!(l.routes[1].region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let (f, s) = with_file("[proxy]\nlisen = \"127.0.0.1:1\"\n");
        let e = load(&s, &[]).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn bad_env_value_names_env() {
        let mut s = Sources::default();
        s.env.insert("VPCGATE__PROXY__CONNECT_TIMEOUT".into(), "soon".into());
        let e = load(&s, &[]).unwrap_err().to_string();
        assert!(e.contains("VPCGATE__ environment"), "{e}");
        assert!(e.contains("soon") || e.contains("connect_timeout"), "{e}");
        let mut s = Sources::default();
        s.env.insert("VPCGATE__PROXY__NOPE".into(), "1".into());
        let e = load(&s, &[]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn a_misspelt_environment_override_is_refused_not_ignored() {
        // What from_process keeps: overrides and look-alikes, not Kubernetes' service variables.
        let vars = [
            ("VPCGATE_SERVICE_HOST", "10.0.0.9"),
            ("VPCGATE_PORT_3128_TCP_ADDR", "10.0.0.9"),
            ("VPCGATE__PROXY__LISTEN", "0.0.0.0:3128"),
            ("VPCGATE_TLS__MODE", "x"),
            ("HOME", "/root"),
        ];
        let kept = Sources::from_vars(None, vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).env;
        let mut names: Vec<&String> = kept.keys().collect();
        names.sort();
        assert_eq!(names, ["VPCGATE_TLS__MODE", "VPCGATE__PROXY__LISTEN"], "{kept:?}");
        let mut s = Sources::default();
        s.env.insert("VPCGATE_TLS__MODE".into(), "passthrough".into());
        let e = load(&s, &[]).unwrap_err().to_string();
        assert!(e.contains("VPCGATE_TLS__MODE") && e.contains("VPCGATE__SECTION__KEY"), "{e}");
        s.env.clear();
        s.env.insert("VPCGATE__TLS__MODE".into(), "passthrough".into());
        assert!(load(&s, &[]).is_ok());
    }

    #[test]
    fn invalid_values() {
        for (text, needle) in [
            ("[proxy]\nlisten = \"localhost\"\n", "listen"),
            ("[dns]\nservers = [\"resolver.local\"]\n", "resolver.local"),
            ("[aws]\nregions = [\"useast1\"]\n", "useast1"),
            ("[tls]\nmode = \"mitm\"\n", "mitm"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\ncidrs = [\"10.0.0.1/8\"]\n", "10.0.0.1/8"),
            ("[[routes]]\nname = \"x\"\nkind = \"interface\"\ncidrs = [\"10.0.0.0/8\"]\n", "no endpoint"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\n", "no CIDRs"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\ncidrs_file = \"/nonexistent/pl.json\"\n", "/nonexistent/pl.json"),
            ("[proxy]\nmax_connections = 2305843009213693952\n", "more than the 1000000"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\ncidrs = [\"0.0.0.0/0\"]\n", "wider than a /8"),
            ("[[routes]]\nname = \"x\"\nkind = \"gateway\"\ncidrs = [\"169.254.169.254/32\"]\n", "instance metadata"),
        ] {
            let (_f, s) = with_file(text);
            let e = load(&s, &[]).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains(';'), "names a fix: {e}");
        }
        let s = Sources { file: Some("/nonexistent/vpcgate.toml".into()), env: HashMap::new() };
        assert!(load(&s, &[]).unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn routes_follow_a_prefix_list_or_an_endpoint_and_say_which_fits_which() {
        let dir = tempfile::tempdir().unwrap();
        let (_f, s) = with_file(&format!(
            "[aws]\ncache_dir = \"{}\"\n\
             [[routes]]\nname = \"s3\"\nkind = \"gateway\"\nprefix_list = \"com.amazonaws.us-east-1.s3\"\n\
             [[routes]]\nname = \"sts\"\nkind = \"interface\"\nendpoint = \"vpce-0a1b2c3d4e5f60718-ab12cd34.sts.us-east-1.vpce.amazonaws.com\"\nendpoint_id = \"vpce-0a1b2c3d4e5f60718\"\n",
            dir.path().display()
        ));
        let l = load(&s, &[]).unwrap();
        let f = l.routes[1].follow.as_ref().unwrap();
        assert_eq!(f.target, routes::Target::Endpoint("vpce-0a1b2c3d4e5f60718".into()));
        assert_eq!(f.cache_file, dir.path().join("endpoint-sts.json"));
        assert!(l.routes[1].cidrs.is_empty() && l.routes[1].source.contains("not fetched yet"), "{}", l.routes[1].source);
        // The cache of another endpoint is not taken for this one's.
        let other = routes::Fetched { id: "vpce-11112222333344445".into(), name: String::new(), version: None, at: 1 };
        std::fs::write(&f.cache_file, routes::cache_text(&other, &["10.0.1.5/32".parse().unwrap()])).unwrap();
        let e = load(&s, &[]).unwrap_err().to_string();
        assert!(e.contains("holds vpce-11112222333344445, not the configured vpce-0a1b2c3d4e5f60718"), "{e}");
        let itf = "kind = \"interface\"\nendpoint = \"vpce-0a1b2c3d4e5f60718-ab12cd34.sts.us-east-1.vpce.amazonaws.com\"\n";
        for (toml, why) in [
            (format!("name = \"x\"\n{itf}prefix_list = \"pl-63a5400a\"\n"), "name its endpoint with endpoint_id"),
            ("name = \"x\"\nkind = \"gateway\"\nendpoint_id = \"vpce-0a1b2c3d4e5f60718\"\n".into(), "a gateway endpoint has no addresses of its own"),
            (format!("name = \"x\"\n{itf}endpoint_id = \"vpce-0a1b\"\n"), "not an endpoint ID"),
            (format!("name = \"x\"\n{itf}endpoint_id = \"vpce-11112222333344445\"\n"), "is the DNS name of vpce-0a1b2c3d4e5f60718"),
            (
                format!("name = \"x\"\n{itf}endpoint_id = \"vpce-0a1b2c3d4e5f60718\"\ncidrs = [\"10.0.0.0/16\"]\n"),
                "keep one source: the endpoint vpce-0a1b2c3d4e5f60718",
            ),
            (format!("name = \"x\"\n{itf}endpoint_id = \"vpce-0a1b2c3d4e5f60718\"\nprefix_list = \"pl-63a5400a\"\n"), "both prefix_list and endpoint_id"),
            (format!("name = \"x\"\n{itf}cidrs = [\"10.0.0.0/16\"]\nrefresh = \"1m\"\n"), "without prefix_list or endpoint_id"),
        ] {
            let (_f, s) = with_file(&format!("[[routes]]\n{toml}"));
            let e = load(&s, &[]).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(';'), "{toml}: {e}");
        }
    }

    #[test]
    fn cidrs_file_prefix_list() {
        let dir = tempfile::tempdir().unwrap();
        let pl = dir.path().join("pl.json");
        std::fs::write(&pl, r#"{"Entries":[{"Cidr":"52.216.0.0/15"},{"Cidr":"3.5.0.0/19"}]}"#).unwrap();
        let (_f, s) = with_file(&format!("[[routes]]\nname = \"gw\"\nkind = \"gateway\"\ncidrs_file = \"{}\"\n", pl.display()));
        let l = load(&s, &[]).unwrap();
        assert_eq!(l.routes[0].cidrs.len(), 2);
        assert!(l.routes[0].source.contains("get-managed-prefix-list-entries"));
    }
}

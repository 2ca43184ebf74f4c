//! vpcgate as a running service: the state built from a configuration, its listeners bound, the
//! reloads (SIGHUP in the binary, `run --watch-config`, or a call), and the accept loop until a
//! stop signal. The binary and the in-process tests start it the same way:
//!
//! ```no_run
//! # async fn f(loaded: vpcgate::config::Loaded) -> Result<(), String> {
//! let bound = vpcgate::server::bind(loaded).await?;
//! let handle = bound.handle.clone();          // reload(), watch(), the bound addresses
//! bound.serve(std::future::pending()).await;  // until the stop future resolves, then the grace
//! # Ok(()) }
//! ```

use crate::config::{self, Loaded, Sources};
use crate::proxy::{Listener, Shared, State};
use crate::telemetry::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// AWS_REGION and AWS_DEFAULT_REGION, as set (the first is the region when `aws.regions` is empty).
pub fn env_regions() -> Vec<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().filter_map(|k| std::env::var(k).ok()).filter(|v| !v.is_empty()).collect()
}

/// What a running vpcgate is reached and reloaded through (cheap to clone).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    /// The proxy's listening address.
    pub listen: SocketAddr,
    /// The admin listener's, when it runs.
    pub admin: Option<SocketAddr>,
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Re-read the configuration file, the environment and every route file, as SIGHUP does:
    /// applied to new connections, or refused with its sentence while the old one keeps serving.
    pub fn reload(&self) {
        reload(&self.shared, self.listen, self.admin, &self.metrics)
    }

    /// Reload whenever the configuration's files change on disk, checking every `every`.
    pub fn watch(&self, every: std::time::Duration) {
        tokio::spawn(watch_files(self.shared.clone(), self.listen, self.admin, self.metrics.clone(), every));
    }

    /// The state new connections use now.
    pub fn state(&self) -> Arc<State> {
        self.shared.get()
    }
}

/// A vpcgate whose state is built and whose sockets listen, not yet accepting.
pub struct Bound {
    pub handle: Handle,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
}

/// Build everything a connection needs (DNS, CA, pool) before the first socket listens, so that
/// nothing is accepted into the backlog of a proxy that is not ready; then bind both listeners.
pub async fn bind(loaded: Loaded) -> Result<Bound, String> {
    let listen = loaded.settings.proxy.listen;
    let admin_cfg = loaded.settings.admin.enabled.then_some(loaded.settings.admin.listen);
    let metrics = Arc::new(Metrics::new());
    let state = build_state(loaded, listen, admin_cfg, metrics.clone(), None, CaFiles::Reread)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} ({e}); free the port or set proxy.listen to another address"))?;
    let admin = match admin_cfg {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on the admin address {a} ({e}); free the port, set admin.listen, or set admin.enabled = false"))?,
        ),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|a| a.local_addr().ok());
    banner(&state.config, listen, admin_addr, state.dns.servers());
    check_open_file_limit(&state.config.settings);
    Ok(Bound { handle: Handle { shared: Shared::new(state), listen, admin: admin_addr, metrics }, listener, admin })
}

impl Bound {
    /// Accept until `stop` resolves, then stop accepting and give open connections
    /// `proxy.shutdown_grace`; the admin listener stops with it.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(a) = self.admin {
            let mut rx = stop_rx.clone();
            tokio::spawn(crate::admin::serve(a, self.handle.shared.clone(), async move {
                let _ = rx.changed().await;
            }));
        }
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        // audit.require: the route proof at start and every audit.interval.
        let h = self.handle.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = crate::follow::prove(h.shared.clone(), h.metrics.clone()) => {}
                _ = rx.changed() => {}
            }
        });
        // Followed prefix lists (also those a reload adds): idle while there are none.
        let h = self.handle.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = crate::follow::run(h.shared.clone(), h.listen, h.admin, h.metrics.clone()) => {}
                _ = rx.changed() => {}
            }
        });
        let mut rx = stop_rx;
        Listener::new(self.listener, self.handle.shared.clone())
            .run(async move {
                let _ = rx.changed().await;
            })
            .await;
        tracing::info!("vpcgate stopped");
    }
}

pub fn proxy_url(listen: &SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    format!("http://{host}:{}", listen.port())
}

/// The lines a user pastes to point clients at this vpcgate.
pub fn exports(l: &Loaded, listen: &SocketAddr) -> Vec<String> {
    let mut v = vec![format!("export HTTPS_PROXY={}", proxy_url(listen))];
    if l.settings.tls.mode == config::TlsMode::Inspect {
        let abs = std::fs::canonicalize(&l.settings.tls.ca_cert).unwrap_or(l.settings.tls.ca_cert.clone());
        v.push(format!("export AWS_CA_BUNDLE={}", abs.display()));
    }
    v
}

/// Inspect mode: load (or, on first start, create) the CA and set up the leaf cache and upstream pool.
/// A reload never creates a CA (`create` false): a reload pointing at missing CA files is refused.
fn inspect_state(l: &Loaded, create: bool) -> Result<Option<Arc<crate::proxy::inspect::Inspect>>, String> {
    let t = &l.settings.tls;
    if t.mode != config::TlsMode::Inspect {
        return Ok(None);
    }
    let (ca, created) = crate::certs::Ca::load_or_create(&t.ca_cert, &t.ca_key, &t.ca_extra_names, create).map_err(|e| e.to_string())?;
    if created {
        tracing::info!(ca_cert = %t.ca_cert.display(), ca_key = %t.ca_key.display(), "created a new vpcgate CA (first start); clients must trust it");
    }
    for w in &ca.warnings {
        tracing::warn!("{w}");
    }
    let tls = crate::proxy::upstream::client_config(&crate::certs::read_extra_roots(&t.extra_roots)?)?;
    Ok(Some(Arc::new(crate::proxy::inspect::Inspect::new(
        crate::certs::LeafCache::new(ca, t.leaf_cache_size),
        crate::proxy::upstream::Pool::new(tls, t.upstream_idle_per_host, t.upstream_idle_max, t.upstream_idle_timeout),
    )?)))
}

/// SHA-256 over the CA certificate's and key's bytes as they are on disk now (inspect mode), or
/// `None` when either cannot be read.
fn ca_files_digest(t: &config::TlsSettings) -> Option<[u8; 32]> {
    if t.mode != config::TlsMode::Inspect {
        return None;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in [&t.ca_cert, &t.ca_key] {
        let bytes = std::fs::read(path).ok()?;
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    ctx.finish().as_ref().try_into().ok()
}

/// Which CA a rebuilt state uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaFiles {
    /// A reload: read the CA files again, and load the CA anew if their bytes changed.
    Reread,
    /// A followed route's refresh: only the routes changed; keep the CA in memory.
    Keep,
}

/// Build the state for a configuration. On reload, the previous inspect state (CA, leaf cache,
/// upstream pool) is kept when the TLS settings did not change and (for a reload) the CA files
/// hold the same bytes as when it was built.
pub(crate) fn build_state(
    l: Loaded,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    previous: Option<&State>,
    ca: CaFiles,
) -> Result<State, String> {
    let dns = crate::dns::Dns::new(&l.dns, l.settings.dns.timeout)?;
    let ca_files = match (previous, ca) {
        (Some(p), CaFiles::Keep) if p.config.settings.tls == l.settings.tls => p.ca_files,
        _ => ca_files_digest(&l.settings.tls),
    };
    let same_tls = previous.is_some_and(|p| p.config.settings.tls == l.settings.tls && p.ca_files == ca_files);
    let inspect = match previous {
        Some(p) if same_tls => p.inspect.clone(),
        _ => inspect_state(&l, previous.is_none())?,
    };
    if previous.is_some_and(|p| p.config.settings.tls == l.settings.tls && p.ca_files != ca_files) && inspect.is_some() {
        tracing::info!(ca_cert = %l.settings.tls.ca_cert.display(), "the CA files changed: new leaves are signed by the CA they hold now; clients must trust it");
    }
    // Read after loading too: a CA created at first start has no digest before it.
    let ca_files = if previous.is_none() { ca_files_digest(&l.settings.tls) } else { ca_files };
    let mut own_addrs = vec![listen];
    own_addrs.extend(admin);
    let clients = match l.settings.proxy.auth {
        crate::config::AuthMode::Basic => Some(Arc::new(crate::proxy::auth::Clients::new(&l.settings.clients, l.settings.s3.allow_list_buckets)?)),
        crate::config::AuthMode::None => None,
    };
    let evidence = previous.map(|p| p.evidence.clone()).unwrap_or_default();
    Ok(State { own_addrs, config: l, dns, inspect, ca_files, clients, metrics, evidence })
}

/// Raise the soft open-file limit to the hard one (the usual soft default, 1024, holds about 500
/// tunnels), and say so when even that is short of what `proxy.max_connections` needs: past it,
/// `accept` fails for every client instead of the clear 503.
pub fn check_open_file_limit(settings: &config::Settings) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        // Two sockets per tunnel (client and upstream), the idle upstream pool, and some spare.
        let need = settings.proxy.max_connections as u64 * 2 + settings.tls.upstream_idle_max as u64 + 64;
        if lim.rlim_cur < need {
            tracing::warn!(
                "proxy.max_connections = {} needs about {need} open files but this process may open {}; raise the limit (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile) or lower proxy.max_connections",
                settings.proxy.max_connections,
                lim.rlim_cur
            );
        }
    }
    #[cfg(not(unix))]
    let _ = settings;
}

/// The files a configuration was read from: the config file, each route's `cidrs_file`, and in
/// inspect mode the CA's certificate and key (a rotated Kubernetes Secret changes them in place).
fn config_files(l: &Loaded) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = l.file.iter().cloned().collect();
    files.extend(l.settings.routes.iter().filter_map(|r| r.cidrs_file.clone()).filter(|p| p.as_os_str() != config::EMBEDDED_CIDRS));
    if l.settings.tls.mode == config::TlsMode::Inspect {
        files.extend([l.settings.tls.ca_cert.clone(), l.settings.tls.ca_key.clone()]);
    }
    files
}

/// What those files hold now (a hash of each one's bytes, read through symlinks, as a ConfigMap's
/// `..data` link is replaced; `None` for one that cannot be read).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<u64>> {
    use std::hash::{Hash, Hasher};
    files
        .iter()
        .map(|f| {
            std::fs::read(f).ok().map(|bytes| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            })
        })
        .collect()
}

/// `run --watch-config INTERVAL`: reload as SIGHUP does when the bytes of the configuration's files
/// change. A change that is refused is not retried until the files change again.
async fn watch_files(shared: Arc<Shared>, listen: SocketAddr, admin: Option<SocketAddr>, metrics: Arc<Metrics>, every: std::time::Duration) {
    let mut files = config_files(&shared.get().config);
    let mut seen = fingerprint(&files);
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&files);
        if now == seen {
            continue;
        }
        tracing::info!(files = %files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "), "configuration files changed; reloading");
        reload(&shared, listen, admin, &metrics);
        // What the reload read is what was seen before it (a change after that is caught next
        // round); a reload that names other route files starts watching those.
        let next = config_files(&shared.get().config);
        seen = if next == files { now } else { fingerprint(&next) };
        files = next;
    }
}

/// `NAME (N CIDRs), …` for the reload line.
fn route_summary(l: &Loaded) -> String {
    l.routes.iter().map(|r| format!("{} ({} CIDRs)", r.name, r.cidrs.len())).collect::<Vec<_>>().join(", ")
}

fn reload(shared: &Shared, listen: SocketAddr, admin: Option<SocketAddr>, metrics: &Arc<Metrics>) {
    let old = shared.get();
    let result = config::load(&Sources::from_process(old.config.file.clone()), &env_regions()).map_err(|e| e.to_string()).and_then(|l| {
        for change in old.config.settings.restart_only_changes(&l.settings) {
            tracing::warn!("{change}");
        }
        build_state(l, listen, admin, metrics.clone(), Some(&old), CaFiles::Reread)
    });
    match result {
        Ok(state) => {
            Metrics::kind(&metrics.reloads, "ok");
            let routes = route_summary(&state.config);
            // What a reload changed in where vpcgate may dial, spelled out: a widening is visible.
            let (added, removed) = crate::routes::cidr_changes(&old.config.routes, &state.config.routes);
            crate::telemetry::ReloadLine {
                ok: true,
                routes: &routes,
                regions: &state.config.regions.join(","),
                cidrs_added: &added,
                cidrs_removed: &removed,
                error: "",
            }
            .emit();
            shared.replace(state);
        }
        Err(e) => {
            Metrics::kind(&metrics.reloads, "refused");
            let routes = route_summary(&old.config);
            crate::telemetry::ReloadLine {
                ok: false,
                routes: &routes,
                regions: &old.config.regions.join(","),
                cidrs_added: "none",
                cidrs_removed: "none",
                error: &e,
            }
            .emit();
        }
    }
}

pub fn banner(l: &Loaded, listen: SocketAddr, admin: Option<SocketAddr>, dns: &str) {
    let s = &l.settings;
    tracing::info!(
        listen = %listen,
        admin = %admin.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        mode = ?s.tls.mode,
        regions = %l.regions.join(","),
        dns = %dns,
        ca = %if s.tls.mode == config::TlsMode::Inspect { s.tls.ca_cert.display().to_string() } else { "none (passthrough)".into() },
        config = %l.sources.join(", "),
        "vpcgate listening"
    );
    for r in &l.routes {
        tracing::info!(
            route = %r.name,
            kind = %r.kind,
            service = %r.service,
            endpoint = %r.endpoint.as_deref().unwrap_or(""),
            cidrs = r.cidrs.len(),
            source = %r.source,
            "route"
        );
    }
    for line in exports(l, &listen) {
        tracing::info!("point clients here: {line}");
    }
}

//! Command line: `vpcgate run` (the proxy), `vpcgate routes` (what the configuration allows).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vpcgate::config::{self, Loaded, Sources};
use vpcgate::proxy::{Listener, State};

#[derive(Parser)]
#[command(name = "vpcgate", version, about = "HTTPS forward proxy that keeps AWS S3 traffic on private routes")]
struct Cli {
    /// TOML config file layered over the embedded default (also VPCGATE_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Run,
    /// Print the effective routes and their CIDRs, then exit.
    Routes,
    /// Validate the configuration and exit (0 when it loads).
    CheckConfig,
    /// Manage the certificate authority used by inspect mode.
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create an ECDSA P-256 CA at tls.ca_cert / tls.ca_key (key mode 0600), limited to AWS's domains.
    Init {
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Print the CA followed by the public roots: a full bundle for AWS_CA_BUNDLE.
    Bundle,
}

fn env_regions() -> Vec<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .filter(|v| !v.is_empty())
        .collect()
}

fn load(cli: &Cli) -> Result<Loaded, String> {
    config::load(&Sources::from_process(cli.config.clone()), &env_regions()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Run => load(&cli).and_then(run),
        Command::Routes => load(&cli).map(|l| print_routes(&l)),
        Command::CheckConfig => load(&cli).map(|l| {
            println!("configuration OK ({})", l.sources.join(", "));
        }),
        Command::Ca(CaCommand::Init { force }) => load(&cli).and_then(|l| ca_init(&l, *force)),
        Command::Ca(CaCommand::Bundle) => load(&cli).and_then(|l| ca_bundle(&l)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcgate: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_routes(l: &Loaded) {
    for r in &l.routes {
        println!(
            "{} ({}{}) {} CIDRs from {}",
            r.name,
            r.kind,
            r.endpoint.as_deref().map(|e| format!(", endpoint {e}")).unwrap_or_default(),
            r.cidrs.len(),
            r.source
        );
        for c in &r.cidrs {
            println!("  {c}");
        }
    }
}

fn ca_init(l: &Loaded, force: bool) -> Result<(), String> {
    let t = &l.settings.tls;
    vpcgate::certs::init_ca(&t.ca_cert, &t.ca_key, &t.ca_extra_names, force).map_err(|e| e.to_string())?;
    println!("created the vpcgate CA: {} (key {}, mode 0600)", t.ca_cert.display(), t.ca_key.display());
    print_exports(l, &l.settings.proxy.listen);
    Ok(())
}

fn ca_bundle(l: &Loaded) -> Result<(), String> {
    let t = &l.settings.tls;
    let (ca, _) = vpcgate::certs::Ca::load_or_create(&t.ca_cert, &t.ca_key, &t.ca_extra_names, false).map_err(|e| e.to_string())?;
    print!("{}", vpcgate::certs::bundle(&ca.cert_pem));
    Ok(())
}

fn proxy_url(listen: &SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    format!("http://{host}:{}", listen.port())
}

fn print_exports(l: &Loaded, listen: &SocketAddr) {
    println!("export HTTPS_PROXY={}", proxy_url(listen));
    if l.settings.tls.mode == config::TlsMode::Inspect {
        let abs = std::fs::canonicalize(&l.settings.tls.ca_cert).unwrap_or(l.settings.tls.ca_cert.clone());
        println!("export AWS_CA_BUNDLE={}", abs.display());
    }
}

/// Inspect mode: load (or, on first start, create) the CA and set up the leaf cache and upstream pool.
fn inspect_state(l: &Loaded) -> Result<Option<vpcgate::proxy::inspect::Inspect>, String> {
    let t = &l.settings.tls;
    if t.mode != config::TlsMode::Inspect {
        return Ok(None);
    }
    let (ca, created) = vpcgate::certs::Ca::load_or_create(&t.ca_cert, &t.ca_key, &t.ca_extra_names, true).map_err(|e| e.to_string())?;
    if created {
        tracing::info!(ca_cert = %t.ca_cert.display(), ca_key = %t.ca_key.display(), "created a new vpcgate CA (first start); clients must trust it");
    }
    let mut extra = Vec::new();
    for p in &t.extra_roots {
        extra.extend(vpcgate::certs::read_pem_certs(p)?);
    }
    let tls = vpcgate::proxy::upstream::client_config(&extra)?;
    Ok(Some(vpcgate::proxy::inspect::Inspect {
        leaves: vpcgate::certs::LeafCache::new(ca, t.leaf_cache_size),
        pool: Arc::new(vpcgate::proxy::upstream::Pool::new(tls, t.upstream_idle_per_host, t.upstream_idle_timeout)),
        requests_by_sig: Default::default(),
    }))
}

fn run(loaded: Loaded) -> Result<(), String> {
    vpcgate::telemetry::init(&loaded.settings.log)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime ({e})"))?;
    rt.block_on(async move {
        let listen = loaded.settings.proxy.listen;
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            format!("cannot listen on {listen} ({e}); free the port or set proxy.listen to another address")
        })?;
        let dns = vpcgate::dns::Dns::new(&loaded.dns, loaded.settings.dns.timeout)?;
        let inspect = inspect_state(&loaded)?;
        banner(&loaded, listen, dns.servers());
        let state = Arc::new(State { own_addrs: vec![listen], config: loaded, dns, inspect });
        Listener::new(listener, state).run(shutdown_signal()).await;
        tracing::info!("vpcgate stopped");
        Ok(())
    })
}

fn banner(l: &Loaded, listen: SocketAddr, dns: &str) {
    let s = &l.settings;
    tracing::info!(
        listen = %listen,
        mode = ?s.tls.mode,
        regions = %l.regions.join(","),
        dns = %dns,
        config = %l.sources.join(", "),
        "vpcgate listening"
    );
    for r in &l.routes {
        tracing::info!(
            route = %r.name,
            kind = %r.kind,
            endpoint = %r.endpoint.as_deref().unwrap_or(""),
            cidrs = r.cidrs.len(),
            source = %r.source,
            "route"
        );
    }
    tracing::info!("point clients here: export HTTPS_PROXY={}", proxy_url(&listen));
    if s.tls.mode == config::TlsMode::Inspect {
        let abs = std::fs::canonicalize(&s.tls.ca_cert).unwrap_or(s.tls.ca_cert.clone());
        tracing::info!(
            "and trust the vpcgate CA: export AWS_CA_BUNDLE={} (a full bundle with public roots: vpcgate ca bundle > bundle.pem)",
            abs.display()
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}

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
        banner(&loaded, listen, dns.servers());
        let state = Arc::new(State { own_addrs: vec![listen], config: loaded, dns });
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
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    tracing::info!("point clients here: export HTTPS_PROXY=http://{host}:{}", listen.port());
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

//! Command line: `vpcgate run` (the proxy), `explain`, `check`, `routes`, `check-config`, `ca init|bundle`.

use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use vpcgate::config::{self, Loaded, Sources};
use vpcgate::server::{self, env_regions, exports};

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
    Run {
        /// Also reload when the config file, a route's cidrs_file or (inspect mode) the CA files
        /// change, checking their bytes at this interval (e.g. 10s): for a Kubernetes ConfigMap or
        /// Secret, which is replaced on disk and sends no signal. SIGHUP reloads either way.
        #[arg(long, value_name = "INTERVAL", value_parser = humantime::parse_duration)]
        watch_config: Option<std::time::Duration>,
    },
    /// Dry-run the decision for HOST[:PORT] without connecting: class, DNS answers, routes, verdict.
    /// Exit status 0 when allowed, 1 when refused.
    Explain {
        /// HOST[:PORT], s3://BUCKET/KEY, or https://HOST/PATH.
        #[arg(value_name = "TARGET")]
        target: String,
        /// Decide as for this `[[clients]]` entry (its own bucket list too).
        #[arg(long)]
        client: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check this host: DNS servers, each region's S3 name through each route, TLS with forward
    /// secrecy, the CA, and the client setup (proxy variables, AWS_CA_BUNDLE, ~/.aws/config).
    Check {
        /// Also check BUCKET.s3.REGION.amazonaws.com (repeatable).
        #[arg(long = "bucket", value_name = "BUCKET")]
        buckets: Vec<String>,
    },
    /// Check the AWS side of the routes: the subnet's route table sends each gateway route's prefix
    /// list to an available gateway endpoint, interface endpoints' addresses, security groups and
    /// names, and bucket policies. Exit status 0 when nothing failed, 1 when a check failed, 2 when
    /// AWS could not be asked (no credentials, API unreachable).
    Audit {
        /// The subnet vpcgate's traffic leaves from (default: this instance's, from IMDSv2).
        #[arg(long)]
        subnet: Option<String>,
        /// The region of the subnet (default: IMDSv2's, else the first of aws.regions).
        #[arg(long)]
        region: Option<String>,
        /// Also read this bucket's policy (repeatable).
        #[arg(long = "bucket", value_name = "BUCKET")]
        buckets: Vec<String>,
        /// Let audit's own read-only EC2/S3 calls take the public path when no route carries them.
        #[arg(long)]
        public_api: bool,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective routes and their CIDRs, then exit.
    Routes,
    /// Validate the configuration and exit (0 when it loads).
    CheckConfig,
    /// Ask the running vpcgate's admin listener for /healthz (for container health checks).
    Healthcheck {
        /// Ask /readyz (DNS answers, a leaf can be minted) instead of /healthz: for readiness
        /// probes that must run inside the pod because the admin listener is on loopback.
        #[arg(long)]
        ready: bool,
    },
    /// Manage the certificate authority used by inspect mode.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Proxy clients (`proxy.auth = "basic"`).
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Print a `[[clients]]` entry for NAME with a new random password (or one read from
    /// standard input), hashed with Argon2id, to paste into the config file.
    Add {
        name: String,
        /// Read the password from the first line of standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
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

fn load(cli: &Cli) -> Result<Loaded, String> {
    config::load(&Sources::from_process(cli.config.clone()), &env_regions()).map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with(0)
}

fn runtime_with(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().build().map_err(|e| format!("cannot start the async runtime ({e})"))
}

/// How a command ends when it does not succeed.
enum Exit {
    /// It ran and its answer is no (`explain` refused, a `check` failed, unhealthy), having
    /// printed why: exit status 1.
    No,
    /// It could not run: this sentence on stderr, exit status 2.
    Error(String),
}

impl From<String> for Exit {
    fn from(e: String) -> Exit {
        Exit::Error(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = Command::Run { watch_config: None };
    let result: Result<(), Exit> = match cli.command.as_ref().unwrap_or(&default) {
        Command::Run { watch_config } => load(&cli).and_then(|l| run(l, *watch_config)).map_err(Exit::from),
        Command::Explain { target, json, client } => load(&cli).map_err(Exit::from).and_then(|l| explain(&l, target, *json, client.as_deref())),
        Command::Check { buckets } => load(&cli).map_err(Exit::from).and_then(|l| check(&l, buckets)),
        Command::Audit { subnet, region, buckets, public_api, json } => load(&cli).map_err(Exit::from).and_then(|l| {
            let args = vpcgate::audit::Args { subnet: subnet.clone(), region: region.clone(), buckets: buckets.clone(), public_api: *public_api };
            audit(&l, &args, *json)
        }),
        Command::Routes => load(&cli).map(|l| print_routes(&l)).map_err(Exit::from),
        Command::CheckConfig => load(&cli)
            .map(|l| {
                println!("configuration OK ({})", l.sources.join(", "));
            })
            .map_err(Exit::from),
        // Docker reserves exit status 2: unhealthy is 1.
        Command::Healthcheck { ready } => load(&cli).and_then(|l| healthcheck(&l, *ready)).map_err(|e| {
            eprintln!("vpcgate: unhealthy: {e}");
            Exit::No
        }),
        Command::Client(ClientCommand::Add { name, password_stdin }) => client_add(name, *password_stdin).map_err(Exit::from),
        Command::Ca(CaCommand::Init { force }) => load(&cli).and_then(|l| ca_init(&l, *force)).map_err(Exit::from),
        Command::Ca(CaCommand::Bundle) => load(&cli).and_then(|l| ca_bundle(&l)).map_err(Exit::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::No) => ExitCode::from(1),
        Err(Exit::Error(e)) => {
            eprintln!("vpcgate: {e}");
            ExitCode::from(2)
        }
    }
}

fn explain(l: &Loaded, target: &str, json: bool, client: Option<&str>) -> Result<(), Exit> {
    let own = match client {
        None => None,
        Some(name) => {
            let c = l
                .settings
                .clients
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("no [[clients]] entry is named {name:?}; name one of the configured clients"))?;
            c.buckets.clone().map(|patterns| vpcgate::policy::bucket::BucketRules { patterns, allow_list_buckets: l.settings.s3.allow_list_buckets })
        }
    };
    let ex = runtime()?.block_on(async {
        let dns = vpcgate::dns::Dns::new(&l.dns, l.settings.dns.timeout)?;
        Ok::<_, String>(vpcgate::explain::explain(l, &dns, target, &l.own_addresses(), own.as_ref()).await)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ex).expect("explanations serialize"));
    } else {
        print!("{}", ex.to_text());
    }
    if ex.decision == "allow" {
        Ok(())
    } else {
        Err(Exit::No)
    }
}

fn client_add(name: &str, password_stdin: bool) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("{name:?} is not a plain client name; use letters, digits, '.', '_' and '-'"));
    }
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password from standard input ({e})"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        use base64::Engine;
        let mut bytes = [0u8; 18];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| "cannot read random bytes".to_string())?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    if password.is_empty() {
        return Err("the password is empty; give one on standard input, or leave out --password-stdin for a random one".into());
    }
    let hash = vpcgate::proxy::auth::hash_password(&password)?;
    println!("# paste into the config file (proxy.auth = \"basic\"); the password is not stored anywhere");
    println!("[[clients]]\nname = \"{name}\"\npassword_hash = \"{hash}\"");
    if !password_stdin {
        println!("# the client sets HTTPS_PROXY=http://{name}:{password}@127.0.0.1:3128");
    }
    Ok(())
}

fn check(l: &Loaded, buckets: &[String]) -> Result<(), Exit> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let path = env.get("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".aws/config")));
    let aws_config = path.and_then(|p| std::fs::read_to_string(&p).ok().map(|t| (p.display().to_string(), t)));
    let lines = runtime()?.block_on(vpcgate::check::run(l, buckets, &env, aws_config));
    for line in &lines {
        println!("{line}");
    }
    let fails = lines.iter().filter(|l| l.level == vpcgate::check::Level::Fail).count();
    let warns = lines.iter().filter(|l| l.level == vpcgate::check::Level::Warn).count();
    println!("{} checks: {} failed, {} warnings", lines.len(), fails, warns);
    if fails == 0 {
        Ok(())
    } else {
        Err(Exit::No)
    }
}

fn audit(l: &Loaded, args: &vpcgate::audit::Args, json: bool) -> Result<(), Exit> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let report = runtime()?.block_on(vpcgate::audit::run(l, args, &env)).map_err(|e| Exit::Error(e.to_string()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        for line in &report.lines {
            println!("{line}");
        }
        println!("{} checks: {} failed, {} warnings", report.lines.len(), report.failed, report.warnings);
    }
    if report.failed == 0 {
        Ok(())
    } else {
        Err(Exit::No)
    }
}

fn healthcheck(l: &Loaded, ready: bool) -> Result<(), String> {
    use std::io::{Read, Write};
    let a = l.settings.admin.listen;
    let addr = if a.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], a.port())) } else { a };
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("the admin listener {addr} does not answer ({e}); is vpcgate running with admin.enabled = true?"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let path = if ready { "/readyz" } else { "/healthz" };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: vpcgate\r\nConnection: close\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if resp.starts_with("HTTP/1.1 200") {
        println!("{} ({addr})", if ready { "ready" } else { "healthy" });
        Ok(())
    } else {
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or("");
        Err(format!("{addr}{path} answered {:?} {body}; see vpcgate's log", resp.lines().next().unwrap_or("nothing")))
    }
}

fn print_routes(l: &Loaded) {
    for r in &l.routes {
        println!(
            "{} ({} {}{}) {} CIDRs from {}",
            r.name,
            r.service,
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
    for line in exports(l, &l.settings.proxy.listen) {
        println!("{line}");
    }
    Ok(())
}

fn ca_bundle(l: &Loaded) -> Result<(), String> {
    let t = &l.settings.tls;
    let (ca, _) = vpcgate::certs::Ca::load_or_create(&t.ca_cert, &t.ca_key, &t.ca_extra_names, false).map_err(|e| e.to_string())?;
    print!("{}", vpcgate::certs::bundle(&ca.cert_pem));
    Ok(())
}

fn run(loaded: Loaded, watch_config: Option<std::time::Duration>) -> Result<(), String> {
    vpcgate::telemetry::init(&loaded.settings.log)?;
    runtime_with(loaded.settings.proxy.worker_threads)?.block_on(async move {
        let bound = server::bind(loaded).await?;
        if let Some(every) = watch_config {
            bound.handle.watch(every);
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signals(bound.handle.clone(), stop_tx));
        bound
            .serve(async move {
                let _ = stop_rx.await;
            })
            .await;
        Ok(())
    })
}

/// SIGTERM/SIGINT stop; SIGHUP reloads the configuration and route files.
async fn signals(handle: server::Handle, stop: tokio::sync::oneshot::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => handle.reload(),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = &handle;
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
    let _ = stop.send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// One argument's row: how it is written, and its help.
    fn arg_row(a: &clap::Arg) -> String {
        let name = match (a.get_long(), a.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => a.get_value_names().and_then(|v| v.first()).map(|v| v.to_string()).unwrap_or_else(|| a.get_id().to_string().to_uppercase()),
        };
        let value = match (a.get_long().is_some() || a.get_short().is_some(), a.get_action().takes_values(), a.get_value_names()) {
            (true, true, Some(v)) => format!(" {}", v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")),
            (true, true, None) => format!(" {}", a.get_id().to_string().to_uppercase()),
            _ => String::new(),
        };
        let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
        format!("| `{name}{value}` | {} |\n", help.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|"))
    }

    fn command_section(out: &mut String, path: &str, cmd: &clap::Command) {
        for sub in cmd.get_subcommands() {
            let full = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                out.push_str(&format!("\n## `{full}`\n\n{about}\n"));
                command_section(out, &full, sub);
                continue;
            }
            let about = sub.get_long_about().or(sub.get_about()).map(|a| a.to_string()).unwrap_or_default();
            let mut usage = sub.clone().bin_name(&full);
            let usage = usage.render_usage().to_string();
            let usage = usage.trim_start_matches("Usage: ");
            out.push_str(&format!("\n## `{full}`\n\n{}\n\n```text\n{usage}\n```\n", about.split_whitespace().collect::<Vec<_>>().join(" ")));
            let args: Vec<&clap::Arg> = sub.get_arguments().filter(|a| !a.is_global_set() && !["help", "version"].contains(&a.get_id().as_str())).collect();
            if !args.is_empty() {
                out.push_str("\n| argument | meaning |\n|---|---|\n");
                for a in args {
                    out.push_str(&arg_row(a));
                }
            }
        }
    }

    /// The book's page of every command and flag, from the command line definition.
    fn commands_page() -> String {
        let cmd = Cli::command();
        let mut out = format!(
            "{}\n\n# Commands\n\n{}. With no command, `vpcgate` runs the proxy (`vpcgate run`). Every command reads the same \
             configuration: the embedded default, then the file of the global option below, then `VPCGATE__SECTION__KEY` \
             variables.\n\n| global option | meaning |\n|---|---|\n",
            vpcgate::reference::GENERATED,
            cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
        );
        for a in cmd.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
            out.push_str(&arg_row(a));
        }
        out.push_str("| `--help`, `--version` | Print help (of any command), or the version. |\n");
        command_section(&mut out, "vpcgate", &cmd);
        out
    }

    #[test]
    fn reference_commands_page_matches_the_command_line() {
        let page = commands_page();
        assert!(page.contains("## `vpcgate ca init`") && page.contains("| `--bucket BUCKET` | Also check"), "{page}");
        if let Err(e) = vpcgate::reference::check_page("commands.md", &page) {
            panic!("{e}");
        }
    }
}

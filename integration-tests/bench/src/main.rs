//! `loadgen`: everything vpcgate's benchmark needs besides vpcgate itself, on loopback only.
//!
//! ```text
//! loadgen serve     --upstream 127.77.0.1:443 --dns 127.77.0.53:53 --ca-out FILE [--zone NAME]
//!                   [--ca-key PEM --leaf-key PEM]
//!                   TLS HTTP/1.1 upstream (GET /bytes/N) + UDP/TCP DNS responder (A for *.zone)
//! loadgen wait      --addr ADDR [--timeout-ms N]        wait until ADDR accepts TCP
//! loadgen bulk      COMMON [--bytes N]
//! loadgen upload    COMMON [--bytes N]
//! loadgen connrate  COMMON [--workers 32] [--secs 5] [--warmup-ms 500] [--size 1024]
//! loadgen keepalive COMMON [--conns 32] [--secs 5] [--warmup-ms 500] [--size 1024]
//! loadgen idle      COMMON [--tunnels 10000] [--concurrency 64]
//! loadgen mint      COMMON [--hosts 1000] [--workers 32] [--samples 20]
//! loadgen report    --results FILE [--detail true] [--charts DIR --caption TEXT]
//!
//! COMMON: --via direct|proxy [--proxy ADDR] --upstream ADDR --host NAME --ca FILE[,FILE]
//!         [--pid PID of the process to account CPU and memory to]
//! ```
//!
//! Every client command prints `metric value` lines on stdout (see `report.rs` for the names);
//! progress and error samples go to stderr. Every address it binds or dials must lie in
//! 127.0.0.0/8: anything else stops it before a packet is sent.

mod args;
mod cells;
mod charts;
mod dns;
mod http;
mod proc;
mod report;
mod serve;
mod tls;
mod unbuf;

use std::process::ExitCode;

pub type R<T> = Result<T, String>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let args = match args::Args::parse(argv.collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "serve" => runtime().block_on(serve::main(&args)),
        "wait" => runtime().block_on(cells::wait(&args)),
        "bulk" | "upload" | "connrate" | "keepalive" | "idle" | "mint" => runtime().block_on(cells::main(&cmd, &args)),
        "report" => report::main(&args),
        _ => Err(format!("unknown command {cmd:?}; see the top of integration-tests/bench/src/main.rs")),
    };
    match result.and_then(|()| args.check_all_used()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

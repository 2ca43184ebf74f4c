//! Load: 10,000 concurrent tunnels held open in each mode, then released. vpcgate must hold them
//! all (no refusal below proxy.max_connections), and give back what they took: its open file
//! descriptors and resident memory return to within 10% of the baseline measured after a warm-up.
//! The test raises its own open-file limit (vpcgate, its child, inherits it).
//!
//! Passthrough tunnels are real ones: a CONNECT, a ClientHello checked by vpcgate, and a
//! ServerHello (captured from rustls, src/policy/testdata) from an upstream of the test's own
//! that answers every connection with it, then holds the connection. Inspect tunnels complete a
//! TLS handshake with vpcgate (its CA trusted), as an SDK's idle pooled connection does.
//!
//! Blocks: 127.107.0.0/16 (passthrough), 127.108.0.0/16 (inspect).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::harness::*;
use support::FakeDns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TUNNELS: usize = 10_000;
const HOST: &str = "load.s3.us-east-1.amazonaws.com";
/// Tunnels being opened at once.
const OPENING: usize = 200;

/// Raise this process's open-file limit (and so vpcgate's, its child's) as far as it goes: to
/// `want`, or where raising the hard limit is not permitted (no CAP_SYS_RESOURCE, as in the
/// sandbox these tests were written in, whose hard limit is 20,000), to the hard limit. The limit
/// reached.
fn raise_open_file_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed by pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let wanted = libc::rlimit { rlim_cur: want.max(lim.rlim_cur), rlim_max: want.max(lim.rlim_max) };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return wanted.rlim_cur;
    }
    let hard = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &hard) }, 0, "cannot raise the soft open-file limit to the hard one");
    lim.rlim_max
}

/// How many tunnels a limit allows: each costs vpcgate two descriptors and this process two (the
/// client side and the upstream side), beside about 1,000 of everything else.
fn tunnels_for(limit: u64) -> usize {
    (limit.saturating_sub(1_000) / 2).min(TUNNELS as u64) as usize
}

/// vpcgate's resident memory (KiB) and open descriptors, from /proc.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, fds)
}

/// An upstream that answers whatever a connection sends first with a captured TLS 1.3
/// ServerHello flight, then holds the connection until the other side closes it.
async fn hello_upstream(bind: std::net::SocketAddr) -> Arc<std::sync::atomic::AtomicUsize> {
    let flight = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata/server_hello_rustls_tls13.bin")).unwrap();
    let listener = TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = open.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let flight = flight.clone();
            let count = count.clone();
            tokio::spawn(async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) && s.write_all(&flight).await.is_ok() {
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                }
                count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    open
}

/// One established tunnel, held.
enum Held {
    Passthrough(#[allow(dead_code)] TcpStream),
    Inspect(#[allow(dead_code)] Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn open_passthrough(port: u16) -> Result<Held, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    s.write_all(connect_req(&format!("{HOST}:443")).as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 256];
    let k = s.read(&mut head).await.map_err(|e| e.to_string())?;
    if !head[..k].starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&head[..k]).into_owned());
    }
    s.write_all(&client_hello(&[HOST], &[], false)).await.map_err(|e| e.to_string())?;
    // The ServerHello back through vpcgate: the tunnel is established.
    let k = tokio::time::timeout(Duration::from_secs(20), s.read(&mut head))
        .await
        .map_err(|_| "no ServerHello within 20 s".to_string())?
        .map_err(|e| e.to_string())?;
    if k == 0 || head[0] != 22 {
        return Err(format!("no ServerHello: {:?}", &head[..k]));
    }
    Ok(Held::Passthrough(s))
}

async fn open_inspect(port: u16, roots: rustls::RootCertStore) -> Result<Held, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    tcp.write_all(connect_req(&format!("{HOST}:443")).as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 256];
    let k = tcp.read(&mut head).await.map_err(|e| e.to_string())?;
    if !head[..k].starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&head[..k]).into_owned());
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(HOST.to_string()).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(20), tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
        .await
        .map_err(|_| "no handshake within 20 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Held::Inspect(Box::new(tls)))
}

async fn open_many(n: usize, port: u16, roots: Option<rustls::RootCertStore>) -> (Vec<Held>, Vec<String>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let roots = roots.clone();
        set.spawn(async move {
            let r = match roots {
                None => open_passthrough(port).await,
                Some(r) => open_inspect(port, r).await,
            };
            drop(permit);
            r
        });
    }
    let (mut held, mut errors) = (Vec::with_capacity(n), Vec::new());
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(h) => held.push(h),
            Err(e) => errors.push(e),
        }
    }
    (held, errors)
}

async fn hold_and_release(inspect: bool, n: u8) {
    let limit = raise_open_file_limit(4 * TUNNELS as u64 + 4096);
    let tunnels = tunnels_for(limit);
    eprintln!("open-file limit {limit}: holding {tunnels} tunnels (10,000 needs a hard limit of about 21,000)");
    assert!(tunnels >= 5_000, "an open-file limit of {limit} holds only {tunnels} tunnels; raise the hard limit (ulimit -Hn, as root with CAP_SYS_RESOURCE)");
    let w = world();
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let upstream = hello_upstream(sa(n, 1, 1)).await;
    let extra = format!("[proxy]\nmax_connections = {}\nhandshake_timeout = \"30s\"\n", tunnels + 100);
    let p = if inspect { Proxy::start_inspect(n, dns.addr, &w.ca_path, &extra) } else { Proxy::start(n, dns.addr, &extra) };
    let pid = p.child.id();
    let roots = inspect.then(|| client_roots(&p, true, &w));

    // Warm-up: the runtime's threads, the leaf for the name, buffers and pools exist once.
    let (warm, errors) = open_many(200, p.port, roots.clone()).await;
    assert!(errors.is_empty(), "warm-up: {:?}", &errors[..errors.len().min(5)]);
    drop(warm);
    let settle = move |fds_at_most: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let u = usage(pid);
            if u.1 <= fds_at_most || Instant::now() > deadline {
                return u;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (base_rss, base_fds) = usage(pid);

    let started = Instant::now();
    let (held, errors) = open_many(tunnels, p.port, roots.clone()).await;
    let opened = started.elapsed();
    assert!(errors.is_empty(), "{} of {tunnels} tunnels failed, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
    let (peak_rss, peak_fds) = usage(pid);
    let per_tunnel = (peak_fds - base_fds) as f64 / tunnels as f64;
    assert!(per_tunnel >= if inspect { 0.99 } else { 1.99 }, "vpcgate holds {peak_fds} descriptors for {tunnels} tunnels (baseline {base_fds})");
    if !inspect {
        assert!(upstream.load(std::sync::atomic::Ordering::SeqCst) >= tunnels, "every passthrough tunnel holds its upstream connection");
    }

    drop(held);
    let (after_rss, after_fds) = tokio::task::spawn_blocking(move || settle(base_fds + base_fds / 10)).await.unwrap();
    // Memory freed inside the process is returned to the system when vpcgate next sees its
    // connections gone; give it a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after_rss, after_fds) = {
        let u = usage(pid);
        (u.0.min(after_rss), u.1.max(after_fds))
    };
    eprintln!(
        "{} {tunnels} tunnels opened in {opened:?}: RSS {base_rss} KiB -> {peak_rss} KiB ({:.1} KiB/tunnel) -> {after_rss} KiB; descriptors {base_fds} -> {peak_fds} -> {after_fds}",
        if inspect { "inspect" } else { "passthrough" },
        (peak_rss.saturating_sub(base_rss)) as f64 / tunnels as f64
    );
    assert!(after_fds as f64 <= base_fds as f64 * 1.1 + 2.0, "descriptors did not come back: {base_fds} -> {peak_fds} -> {after_fds}");
    assert!(after_rss as f64 <= base_rss as f64 * 1.1, "memory did not come back: {base_rss} KiB -> {peak_rss} KiB -> {after_rss} KiB");
}

/// One test, the two modes in turn: together they would hold 20,000 tunnels at once on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tunnels_are_held_and_given_back_in_each_mode() {
    hold_and_release(false, 107).await;
    hold_and_release(true, 108).await;
}

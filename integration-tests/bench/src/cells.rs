//! The client side: one benchmark cell per command, in one of the three setups.
//!
//! - `--via direct`: TCP to the upstream address itself, TLS with SNI = the host.
//! - `--via proxy --proxy ADDR`: TCP to vpcgate, `CONNECT host:443`, then TLS through the tunnel
//!   (to the upstream in passthrough mode, to vpcgate's minted leaf in inspect mode).
//!
//! Every connection has TCP_NODELAY and no TLS session resumption. Timed windows count an
//! exchange when it *ends* inside the window; a warm-up precedes every window.

use crate::args::Args;
use crate::http::{get_request, put_request, Conn};
use crate::unbuf::Unbuf;
use crate::{proc, tls, R};
use rustls::pki_types::ServerName;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Bound on one connection set-up or one small exchange.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the 1 GiB transfer.
const BULK_TIMEOUT: Duration = Duration::from_secs(180);

enum Via {
    Direct,
    Proxy(SocketAddr),
}

pub struct Ctx {
    via: Via,
    upstream: SocketAddr,
    host: String,
    cfg: Arc<rustls::ClientConfig>,
    pid: Option<u32>,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

fn out(metric: &str, v: f64) {
    println!("{metric} {v}");
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl Ctx {
    fn from_args(a: &Args) -> R<Ctx> {
        let via = match a.req("via")? {
            "direct" => Via::Direct,
            "proxy" => Via::Proxy(a.addr("proxy")?),
            v => return Err(format!("--via {v:?}: direct or proxy")),
        };
        let upstream = a.addr("upstream")?;
        let host = a.req("host")?.to_ascii_lowercase();
        let cas: Vec<&Path> = a.req("ca")?.split(',').map(Path::new).collect();
        let cfg = tls::client_config(&cas)?;
        let pid = match a.opt("pid") {
            None => None,
            Some(p) => Some(p.parse::<u32>().map_err(|_| format!("--pid {p:?}"))?),
        };
        Ok(Ctx { via, upstream, host, cfg, pid, errors: AtomicU64::new(0), samples: Mutex::new(Vec::new()) })
    }

    async fn tcp(&self, host: &str) -> R<TcpStream> {
        match self.via {
            Via::Direct => {
                let s = TcpStream::connect(self.upstream).await.map_err(|e| format!("connect {}: {e}", self.upstream))?;
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Via::Proxy(p) => {
                let mut s = TcpStream::connect(p).await.map_err(|e| format!("connect proxy {p}: {e}"))?;
                let _ = s.set_nodelay(true);
                let port = self.upstream.port();
                let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
                s.write_all(req.as_bytes()).await.map_err(|e| format!("write CONNECT: {e}"))?;
                let mut buf = [0u8; 2048];
                let mut n = 0;
                loop {
                    let k = s.read(&mut buf[n..]).await.map_err(|e| format!("read CONNECT response: {e}"))?;
                    if k == 0 {
                        return Err("proxy closed before answering CONNECT".into());
                    }
                    n += k;
                    if let Some(p) = crate::http::find(&buf[..n], b"\r\n\r\n") {
                        let head = crate::http::parse_head(&buf[..p])?;
                        if head.status != 200 {
                            return Err(format!("CONNECT answered {} {}", head.status, head.reason_header.unwrap_or_default()));
                        }
                        if p + 4 != n {
                            return Err("bytes after the CONNECT response before the TLS handshake".into());
                        }
                        return Ok(s);
                    }
                    if n == buf.len() {
                        return Err("CONNECT response head too large".into());
                    }
                }
            }
        }
    }

    /// TCP (+ CONNECT) + TLS handshake to `host`.
    async fn tls(&self, host: &str) -> R<Tls> {
        let go = async {
            let tcp = self.tcp(host).await?;
            let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
            tokio_rustls::TlsConnector::from(self.cfg.clone()).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
        };
        tokio::time::timeout(OP_TIMEOUT, go).await.map_err(|_| "connection set-up timed out".to_string())?
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap();
        if s.len() < 5 {
            s.push(e);
        }
    }

    fn errors(&self) -> f64 {
        let n = self.errors.load(Ordering::Relaxed);
        for s in self.samples.lock().unwrap().iter() {
            eprintln!("  error sample: {s}");
        }
        n as f64
    }

    fn cpu(&self) -> Option<f64> {
        self.pid.and_then(proc::cpu_secs)
    }

    fn rss(&self) -> Option<u64> {
        self.pid.and_then(proc::rss_kib)
    }
}

pub async fn wait(a: &Args) -> R<()> {
    let addr = a.addr("addr")?;
    let limit = Duration::from_millis(a.num("timeout-ms", 15_000)?);
    let t0 = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if t0.elapsed() > limit {
            return Err(format!("{addr} did not accept within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn main(cmd: &str, a: &Args) -> R<()> {
    let ctx = Arc::new(Ctx::from_args(a)?);
    let r = match cmd {
        "bulk" => bulk(ctx, a).await,
        "upload" => upload(ctx, a).await,
        "connrate" => connrate(ctx, a).await,
        "keepalive" => keepalive(ctx, a).await,
        "idle" => idle(ctx, a).await,
        "mint" => mint(ctx, a).await,
        _ => unreachable!(),
    };
    // The load generator's own CPU, so that run.sh can tell other work on the machine apart.
    if let Some(c) = proc::cpu_secs(std::process::id()) {
        out("loadgen_cpu_s", c);
    }
    r
}

/// One connection, one GET of `size` bytes. The transfer is timed from the request to its last
/// byte, after a small GET on the same connection (so inspect mode has its upstream ready).
async fn bulk(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    large_transfer(ctx, a, Direction::Download).await
}

/// One connection, one PUT of `size` bytes (the upstream reads and drops them), timed from the
/// first byte of the request to the end of the response, after a small GET on the same connection.
async fn upload(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    large_transfer(ctx, a, Direction::Upload).await
}

enum Direction {
    Download,
    Upload,
}

/// The `bulk` and `upload` cells: connect, warm up with a 1 KiB GET, then time one large transfer
/// and print `{cell}_mbps`, `{cell}_secs` and `{cell}_cpu_s_per_gib`.
async fn large_transfer(ctx: Arc<Ctx>, a: &Args, dir: Direction) -> R<()> {
    let cell = match dir {
        Direction::Download => "bulk",
        Direction::Upload => "upload",
    };
    let bytes: u64 = a.num("bytes", 1u64 << 30)?;
    let host = ctx.host.clone();
    let tcp = tokio::time::timeout(OP_TIMEOUT, ctx.tcp(&host)).await.map_err(|_| "connect timed out".to_string())??;
    let mut u = tokio::time::timeout(OP_TIMEOUT, Unbuf::connect(tcp, ctx.cfg.clone(), &host)).await.map_err(|_| "TLS handshake timed out".to_string())??;
    u.exchange(&get_request(&host, 1024)).await?;
    let head = match dir {
        Direction::Download => get_request(&host, bytes),
        Direction::Upload => put_request(&host, bytes),
    };
    let cpu0 = ctx.cpu();
    let t0 = Instant::now();
    let transfer = async {
        match dir {
            Direction::Download => match u.exchange(&head).await? {
                got if got == bytes => Ok(()),
                got => Err(format!("bulk: got {got} bytes, expected {bytes}")),
            },
            Direction::Upload => u.upload(&head, bytes).await.map(|_| ()),
        }
    };
    tokio::time::timeout(BULK_TIMEOUT, transfer).await.map_err(|_| format!("{cell} transfer timed out"))??;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = ctx.cpu();
    u.close().await;
    out(&format!("{cell}_mbps"), bytes as f64 / secs / 1e6);
    out(&format!("{cell}_secs"), secs);
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        out(&format!("{cell}_cpu_s_per_gib"), (c1 - c0) / (bytes as f64 / (1u64 << 30) as f64));
    }
    Ok(())
}

struct Window {
    start: Instant,
    end: Instant,
    secs: f64,
}

fn window(a: &Args) -> R<Window> {
    let secs: f64 = a.num("secs", 5.0)?;
    let warm = Duration::from_millis(a.num("warmup-ms", 500)?);
    let start = Instant::now() + warm;
    Ok(Window { start, end: start + Duration::from_secs_f64(secs), secs })
}

/// vpcgate CPU seconds between the window's start and end (sampled by a timer task).
fn cpu_over(ctx: &Arc<Ctx>, w: &Window) -> tokio::task::JoinHandle<Option<f64>> {
    let ctx = ctx.clone();
    let (s, e) = (w.start, w.end);
    tokio::spawn(async move {
        tokio::time::sleep_until(s.into()).await;
        let c0 = ctx.cpu();
        tokio::time::sleep_until(e.into()).await;
        let c1 = ctx.cpu();
        Some(c1? - c0?)
    })
}

/// `workers` loops of: new TCP connection, (CONNECT,) TLS handshake, one GET, close.
async fn connrate(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    let workers: usize = a.num("workers", 32)?;
    let size: u64 = a.num("size", 1024)?;
    let w = window(a)?;
    let req = Arc::new(get_request(&ctx.host, size));
    let cpu = cpu_over(&ctx, &w);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (ctx, req) = (ctx.clone(), req.clone());
        let (ws, we) = (w.start, w.end);
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t = Instant::now();
                if t >= we {
                    return lat;
                }
                let r = async {
                    let mut c = Conn::new(ctx.tls(&ctx.host).await?, 16 * 1024);
                    let n = tokio::time::timeout(OP_TIMEOUT, c.exchange(&req)).await.map_err(|_| "GET timed out".to_string())??;
                    if n != size {
                        return Err(format!("body of {n} bytes, expected {size}"));
                    }
                    let _ = c.io.shutdown().await;
                    Ok(())
                }
                .await;
                let e = Instant::now();
                match r {
                    Ok(()) if e >= ws && e <= we => lat.push(micros(e - t)),
                    Ok(()) => {}
                    Err(msg) => {
                        ctx.error(msg);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        });
    }
    let mut lat: Vec<u32> = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.map_err(|e| e.to_string())?);
    }
    lat.sort_unstable();
    let n = lat.len() as f64;
    out("cr_conn_per_s", n / w.secs);
    out("cr_p50_ms", percentile_ms(&lat, 0.50));
    out("cr_p99_ms", percentile_ms(&lat, 0.99));
    out("cr_max_ms", percentile_ms(&lat, 1.0));
    out("cr_errors", ctx.errors());
    if let Some(c) = cpu.await.map_err(|e| e.to_string())? {
        if n > 0.0 {
            out("cr_cpu_s_per_1k", c / (n / 1000.0));
        }
    }
    Ok(())
}

/// `conns` connections opened once, then sequential GETs on each.
async fn keepalive(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    let conns: usize = a.num("conns", 32)?;
    let size: u64 = a.num("size", 1024)?;
    let req = Arc::new(get_request(&ctx.host, size));
    let mut opened = Vec::new();
    for _ in 0..conns {
        opened.push(Conn::new(ctx.tls(&ctx.host).await?, 16 * 1024));
    }
    let w = window(a)?;
    let cpu = cpu_over(&ctx, &w);
    let mut set = JoinSet::new();
    // Every completed exchange, warm-up included (instructions.sh divides a proxy's instruction
    // count by it).
    let total = Arc::new(AtomicUsize::new(0));
    for mut c in opened {
        let (ctx, req, total) = (ctx.clone(), req.clone(), total.clone());
        let (ws, we) = (w.start, w.end);
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t = Instant::now();
                if t >= we {
                    let _ = c.io.shutdown().await;
                    return lat;
                }
                match tokio::time::timeout(OP_TIMEOUT, c.exchange(&req)).await {
                    Ok(Ok(n)) if n == size => {
                        total.fetch_add(1, Ordering::Relaxed);
                        let e = Instant::now();
                        if e >= ws && e <= we {
                            lat.push(micros(e - t));
                        }
                    }
                    Ok(Ok(n)) => {
                        ctx.error(format!("body of {n} bytes, expected {size}"));
                        return lat;
                    }
                    Ok(Err(e)) => {
                        ctx.error(e);
                        return lat;
                    }
                    Err(_) => {
                        ctx.error("GET timed out".into());
                        return lat;
                    }
                }
            }
        });
    }
    let mut lat: Vec<u32> = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.map_err(|e| e.to_string())?);
    }
    lat.sort_unstable();
    let n = lat.len() as f64;
    out("ka_req_per_s", n / w.secs);
    out("ka_p50_ms", percentile_ms(&lat, 0.50));
    out("ka_p99_ms", percentile_ms(&lat, 0.99));
    out("ka_errors", ctx.errors());
    out("ka_requests_total", total.load(Ordering::Relaxed) as f64);
    if let Some(c) = cpu.await.map_err(|e| e.to_string())? {
        if n > 0.0 {
            out("ka_cpu_us_per_req", c * 1e6 / n);
        }
    }
    Ok(())
}

/// Open `tunnels` connections with their TLS handshake done and hold them idle; vpcgate's
/// resident memory per tunnel is (VmRSS with them open − VmRSS before) / tunnels. A sample of
/// them must still carry a GET afterwards.
async fn idle(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    let n: usize = a.num("tunnels", 10_000)?;
    let conc: usize = a.num("concurrency", 64)?;
    let warm: usize = a.num("warm", 256)?;
    let req = get_request(&ctx.host, 1024);

    // Warm-up: one-time allocations (runtime, resolver cache, leaf, pools) land in the baseline.
    let mut set = JoinSet::new();
    for i in 0..warm {
        let (c2, req) = (ctx.clone(), req.clone());
        set.spawn(async move {
            let ctx = c2;
            let r = async {
                let mut c = Conn::new(ctx.tls(&ctx.host).await?, 16 * 1024);
                c.exchange(&req).await?;
                let _ = c.io.shutdown().await;
                Ok::<_, String>(())
            };
            (i, r.await)
        });
        if set.len() >= 16 {
            if let Some(Ok((_, Err(e)))) = set.join_next().await {
                ctx.error(format!("warm-up: {e}"));
            }
        }
    }
    while let Some(r) = set.join_next().await {
        if let Ok((_, Err(e))) = r {
            ctx.error(format!("warm-up: {e}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss0 = ctx.rss();

    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let ctx = ctx.clone();
        set.spawn(async move {
            let r = ctx.tls(&ctx.host).await;
            drop(permit);
            r
        });
    }
    let mut held: Vec<Tls> = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        match r.map_err(|e| e.to_string())? {
            Ok(t) => held.push(t),
            Err(e) => ctx.error(e),
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss1 = ctx.rss();

    // A sample of the held tunnels must still work.
    let step = (held.len() / 100).max(1);
    let mut checked = 0;
    let mut kept: Vec<Tls> = Vec::with_capacity(held.len());
    for (i, t) in held.into_iter().enumerate() {
        if i % step != 0 {
            kept.push(t);
            continue;
        }
        let mut c = Conn::new(t, 16 * 1024);
        match tokio::time::timeout(OP_TIMEOUT, c.exchange(&req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => ctx.error(format!("held tunnel: {e}")),
            Err(_) => ctx.error("held tunnel: GET timed out".into()),
        }
        kept.push(c.io);
        checked += 1;
    }
    let held = kept;
    let ok = held.len();
    // Close every tunnel the way a client that is done does (close_notify + FIN, then read to the
    // peer's EOF), so the proxy sees orderly closes rather than resets.
    let mut set = JoinSet::new();
    for mut t in held {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = t.shutdown().await;
                let mut sink = [0u8; 4096];
                while let Ok(n) = t.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
    while set.join_next().await.is_some() {}

    out("idle_open_s", open_secs);
    out("idle_tunnels", ok as f64);
    out("idle_checked", checked as f64);
    out("idle_errors", ctx.errors());
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        out("idle_rss_base_mib", r0 as f64 / 1024.0);
        if ok > 0 {
            out("idle_kib_per_tunnel", (r1 as f64 - r0 as f64) / ok as f64);
        }
    }
    Ok(())
}

fn leaf_hash(t: &Tls) -> Option<u64> {
    let c = t.get_ref().1.peer_certificates()?.first()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.as_ref().hash(&mut h);
    Some(h.finish())
}

/// Leaf minting: handshake latency to a new host vs a warm one, then `hosts` distinct names
/// twice (cold leaf cache, then warm): rate of each pass, and how many hosts got a different
/// leaf the second time (a re-mint; must be 0).
async fn mint(ctx: Arc<Ctx>, a: &Args) -> R<()> {
    let hosts: usize = a.num("hosts", 1000)?;
    let workers: usize = a.num("workers", 32)?;
    let samples: usize = a.num("samples", 20)?;
    let zone = ctx.host.split_once('.').map(|(_, z)| z.to_string()).ok_or("--host needs a zone")?;

    async fn handshake_ms(ctx: &Ctx, host: &str) -> R<f64> {
        let t = Instant::now();
        let mut s = ctx.tls(host).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let _ = s.shutdown().await;
        Ok(ms)
    }
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    handshake_ms(&ctx, &ctx.host).await?;
    let mut warm = Vec::new();
    let mut first = Vec::new();
    // Alternate a warm host and a new host so both see the same machine state.
    for i in 0..samples {
        warm.push(handshake_ms(&ctx, &ctx.host).await?);
        first.push(handshake_ms(&ctx, &format!("f{i:04}.{zone}")).await?);
    }

    let names: Arc<Vec<String>> = Arc::new((0..hosts).map(|i| format!("b{:04}.{zone}", i + 1)).collect());
    let pass = |leaves: Arc<Vec<Mutex<Option<u64>>>>| {
        let ctx = ctx.clone();
        let names = names.clone();
        async move {
            let next = Arc::new(AtomicUsize::new(0));
            let t0 = Instant::now();
            let mut set = JoinSet::new();
            for _ in 0..workers {
                let (ctx, names, next, leaves) = (ctx.clone(), names.clone(), next.clone(), leaves.clone());
                set.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= names.len() {
                            return;
                        }
                        match ctx.tls(&names[i]).await {
                            Ok(mut s) => {
                                *leaves[i].lock().unwrap() = leaf_hash(&s);
                                let _ = s.shutdown().await;
                            }
                            Err(e) => ctx.error(format!("{}: {e}", names[i])),
                        }
                    }
                });
            }
            while set.join_next().await.is_some() {}
            names.len() as f64 / t0.elapsed().as_secs_f64()
        }
    };
    let cold: Arc<Vec<Mutex<Option<u64>>>> = Arc::new((0..hosts).map(|_| Mutex::new(None)).collect());
    let warm_leaves: Arc<Vec<Mutex<Option<u64>>>> = Arc::new((0..hosts).map(|_| Mutex::new(None)).collect());
    let cold_rate = pass(cold.clone()).await;
    let warm_rate = pass(warm_leaves.clone()).await;
    let remints = (0..hosts)
        .filter(|&i| {
            let (c, w) = (*cold[i].lock().unwrap(), *warm_leaves[i].lock().unwrap());
            c.is_some() && w.is_some() && c != w
        })
        .count();

    out("mint_warm_ms", median(warm));
    out("mint_first_ms", median(first));
    out("mint_cold_per_s", cold_rate);
    out("mint_warm_per_s", warm_rate);
    out("mint_remints", remints as f64);
    out("mint_errors", ctx.errors());
    Ok(())
}

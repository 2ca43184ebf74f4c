//! Passthrough tunnel: read the client's ClientHello (SNI must be the CONNECT host, TLS 1.2+ with a
//! forward-secret suite offered), relay it, read the upstream's ServerHello (TLS 1.3 with a
//! key_share, or TLS 1.2 with an ECDHE/DHE suite), and only then copy bytes both ways until both
//! sides close (half-close kept) or the tunnel is idle for `proxy.idle_timeout`.

use crate::policy::authority::Target;
use crate::policy::handshake::{HandshakeRefusal, Side};
use crate::policy::tls::{self, HelloError};
use crate::proxy::connect::{log_close, CloseFacts, ConnectRecord};
use crate::proxy::State;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Relay buffer per direction.
const BUF: usize = 32 * 1024;

/// What the hello phase learned.
#[derive(Debug, Default)]
struct Hello {
    version: u16,
    suite: u16,
    sni: String,
    alpn: Vec<String>,
}

struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds since the tunnel opened, at the last byte either way.
    last_activity_ms: AtomicU64,
    opened: Instant,
}

impl Counters {
    fn touch(&self) {
        self.last_activity_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

pub async fn passthrough(upgraded: Upgraded, upstream: TcpStream, target: Target, decision: ConnectRecord, started: Instant, state: Arc<State>) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => run(parts.io.into_inner(), parts.read_buf.to_vec(), upstream, target, decision, started, state).await,
        Err(upgraded) => run(TokioIo::new(upgraded), Vec::new(), upstream, target, decision, started, state).await,
    }
}

/// How each kind of client socket relays: a plain TCP stream borrows a buffer only while bytes
/// flow (an idle tunnel holds no relay buffers); anything else uses the generic copy.
trait Relay {
    async fn relay(&mut self, upstream: &mut TcpStream, idle: Duration, counters: &Counters) -> &'static str;
}

impl Relay for TcpStream {
    async fn relay(&mut self, upstream: &mut TcpStream, idle: Duration, counters: &Counters) -> &'static str {
        let (mut cr, mut cw) = self.split();
        let (mut ur, mut uw) = upstream.split();
        let up = pump_tcp(&mut cr, &mut uw, &counters.up, counters);
        let down = pump_tcp(&mut ur, &mut cw, &counters.down, counters);
        finish(up, down, idle, counters).await
    }
}

impl Relay for TokioIo<Upgraded> {
    async fn relay(&mut self, upstream: &mut TcpStream, idle: Duration, counters: &Counters) -> &'static str {
        let (mut cr, mut cw) = tokio::io::split(self);
        let (mut ur, mut uw) = upstream.split();
        let up = pump(&mut cr, &mut uw, &counters.up, counters);
        let down = pump(&mut ur, &mut cw, &counters.down, counters);
        finish(up, down, idle, counters).await
    }
}

async fn finish(
    up: impl std::future::Future<Output = std::io::Result<()>>,
    down: impl std::future::Future<Output = std::io::Result<()>>,
    idle: Duration,
    counters: &Counters,
) -> &'static str {
    // An error either way (a reset) ends both directions at once: the caller then drops both sockets.
    let both = async { tokio::try_join!(up, down) };
    tokio::select! {
        r = both => if r.is_ok() { "closed" } else { "reset" },
        _ = idle_watch(idle, counters) => "idle_timeout",
    }
}

async fn run<C>(mut client: C, pre: Vec<u8>, mut upstream: TcpStream, target: Target, decision: ConnectRecord, started: Instant, state: Arc<State>)
where
    C: AsyncRead + AsyncWrite + Unpin + Relay,
{
    let counters = Counters { up: AtomicU64::new(0), down: AtomicU64::new(0), last_activity_ms: AtomicU64::new(0), opened: Instant::now() };
    let proxy = &state.config.settings.proxy;
    let _active = crate::telemetry::TunnelGuard::new(&state.metrics);
    let hello = tokio::time::timeout(proxy.handshake_timeout, hello_phase(&mut client, pre, &mut upstream, &target.host, &counters))
        .await
        .unwrap_or(Err(HandshakeRefusal::Timeout { after: proxy.handshake_timeout }));
    let (hello, reason, message) = match hello {
        Ok(h) => {
            let end = client.relay(&mut upstream, proxy.idle_timeout, &counters).await;
            (h, end, String::new())
        }
        Err(cut) => {
            if let Some(desc) = cut.alert() {
                let _ = client.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, desc]).await;
            }
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
            let side = cut.side().name();
            state.metrics.refusal(side, cut.code());
            let message = cut.to_string();
            crate::telemetry::HandshakeRefused {
                client: &decision.client_text(),
                host: &target.host,
                side,
                addr: &decision.chosen.as_ref().map(|c| SocketAddr::from((c.addr, target.port)).to_string()).unwrap_or_default(),
                route: &decision.route,
                reason: cut.code(),
                message: &message,
            }
            .emit();
            (Hello::default(), cut.code(), message)
        }
    };
    log_close(
        &state,
        &decision,
        started,
        CloseFacts {
            mode: "passthrough",
            tls_version: if hello.version == 0 { "" } else { tls::version_name(hello.version) },
            cipher: if hello.suite == 0 { String::new() } else { tls::suite_name(hello.suite) },
            sni: hello.sni,
            alpn: hello.alpn.join(","),
            bytes_up: counters.up.load(Ordering::Relaxed),
            bytes_down: counters.down.load(Ordering::Relaxed),
            requests: None,
            end: reason,
            detail: message,
        },
    );
}

/// A hello parser: the facts and the bytes consumed, or why not (yet).
type HelloParser<T> = fn(&[u8]) -> Result<(T, usize), HelloError>;

/// Read bytes from `r` into `buf` until `parse` stops answering Incomplete.
async fn read_until<R, T>(r: &mut R, buf: &mut Vec<u8>, parse: HelloParser<T>) -> Result<(T, usize), HelloError>
where
    R: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 4096];
    loop {
        match parse(buf) {
            Err(HelloError::Incomplete) => {}
            other => return other,
        }
        let n = r.read(&mut chunk).await.map_err(|e| HelloError::Malformed(format!("read error: {e}")))?;
        if n == 0 {
            return Err(HelloError::Incomplete);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Length of leading ChangeCipherSpec records (TLS 1.3 middlebox compatibility: a client may send
/// one before its second ClientHello).
fn leading_ccs(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf.len() >= at + 6 && buf[at] == 20 && buf[at + 3] == 0 && buf[at + 4] == 1 {
        at += 6;
    }
    at
}

async fn hello_phase<C>(client: &mut C, mut cbuf: Vec<u8>, upstream: &mut TcpStream, host: &str, counters: &Counters) -> Result<Hello, HandshakeRefusal>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Hello::default();
    // A HelloRetryRequest makes the client send a second ClientHello; allow exactly one retry.
    for round in 0..2 {
        let _ = round;
        let (ch, end) = read_until(client, &mut cbuf, |b| {
            let ccs = leading_ccs(b);
            tls::parse_client_hello(&b[ccs..]).map(|(ch, used)| (ch, ccs + used))
        })
        .await
        .map_err(|error| HandshakeRefusal::Unreadable { side: Side::Client, error })?;
        tls::check_client_hello(&ch, host).map_err(HandshakeRefusal::Hello)?;
        hello.sni = ch.sni.clone().unwrap_or_default();
        hello.alpn = ch.alpn.clone();
        // Only the hello goes upstream now; whatever the client sent after it waits until the
        // ServerHello has been checked (or is read as the second hello after a retry).
        upstream.write_all(&cbuf[..end]).await.map_err(|e| io_cut(Side::Upstream, e))?;
        counters.up.fetch_add(end as u64, Ordering::Relaxed);
        cbuf.drain(..end);

        let mut sbuf = Vec::with_capacity(4096);
        let (sh, _) =
            read_until(upstream, &mut sbuf, tls::parse_server_hello).await.map_err(|error| HandshakeRefusal::Unreadable { side: Side::Upstream, error })?;
        tls::check_server_hello(&sh).map_err(HandshakeRefusal::Hello)?;
        client.write_all(&sbuf).await.map_err(|e| io_cut(Side::Client, e))?;
        counters.down.fetch_add(sbuf.len() as u64, Ordering::Relaxed);
        counters.touch();
        hello.version = sh.version;
        hello.suite = sh.cipher_suite;
        if !sh.hello_retry {
            if !cbuf.is_empty() {
                upstream.write_all(&cbuf).await.map_err(|e| io_cut(Side::Upstream, e))?;
                counters.up.fetch_add(cbuf.len() as u64, Ordering::Relaxed);
            }
            return Ok(hello);
        }
    }
    Err(HandshakeRefusal::SecondRetry)
}

fn io_cut(side: Side, e: std::io::Error) -> HandshakeRefusal {
    HandshakeRefusal::Write { side, error: e.to_string() }
}

/// Copy one direction between two TCP sockets until EOF (passed on as a write shutdown, so
/// half-closed connections keep working) or an error.
///
/// Memory: a buffer exists only while bytes flow, so an idle tunnel holds none. Each readiness
/// gets one read, through tokio's `poll_read`, which takes a short read as the end of the burst
/// and forgets the readiness (no second read to find nothing). A read that fills the buffer means
/// a bulk flow: from then on each readiness moves everything available with [`Bulk`] (on Linux
/// `splice(2)` through a pipe, so the bytes never enter user space) until a burst is small again,
/// which drops the pipe.
async fn pump_tcp(
    r: &mut tokio::net::tcp::ReadHalf<'_>,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    count: &AtomicU64,
    counters: &Counters,
) -> std::io::Result<()> {
    pump_tcp_with::<Bulk>(r, w, count, counters).await
}

/// [`pump_tcp`] with a given way of moving bulk bursts (tests run both on Linux).
async fn pump_tcp_with<M: BulkMover>(
    r: &mut tokio::net::tcp::ReadHalf<'_>,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    count: &AtomicU64,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut bulk: Option<M> = None;
    loop {
        r.readable().await?;
        if let Some(b) = &mut bulk {
            let (moved, ended) = b.burst(r, w, count, counters).await?;
            if ended {
                w.shutdown().await?;
                return Ok(());
            }
            if moved > 0 && moved < BUF as u64 {
                bulk = None;
            }
            continue;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(BUF);
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(());
        }
        w.write_all(&buf).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        counters.touch();
        if n == BUF {
            bulk = Some(M::new()?);
        }
    }
}

/// Moves the bulk bursts of one direction, socket to socket, while a flow stays bulk.
trait BulkMover: Sized {
    fn new() -> std::io::Result<Self>;

    /// Move what the source has now: (bytes moved, whether the source ended).
    async fn burst(
        &mut self,
        r: &mut tokio::net::tcp::ReadHalf<'_>,
        w: &mut tokio::net::tcp::WriteHalf<'_>,
        count: &AtomicU64,
        counters: &Counters,
    ) -> std::io::Result<(u64, bool)>;
}

/// The mover in use: `splice(2)` through a pipe on Linux (the bytes never enter user space),
/// a kept buffer elsewhere (macOS laptops).
#[cfg(target_os = "linux")]
type Bulk = SpliceBulk;
#[cfg(not(target_os = "linux"))]
type Bulk = CopyBulk;

#[cfg(target_os = "linux")]
struct SpliceBulk(splice::Pipe);

#[cfg(target_os = "linux")]
impl BulkMover for SpliceBulk {
    fn new() -> std::io::Result<SpliceBulk> {
        splice::Pipe::new().map(SpliceBulk)
    }

    async fn burst(
        &mut self,
        r: &mut tokio::net::tcp::ReadHalf<'_>,
        w: &mut tokio::net::tcp::WriteHalf<'_>,
        count: &AtomicU64,
        counters: &Counters,
    ) -> std::io::Result<(u64, bool)> {
        splice::burst(&self.0, (*r).as_ref(), (*w).as_ref(), count, counters).await
    }
}

/// The portable mover: one buffer kept while the flow is bulk. Built on every platform for tests.
#[cfg_attr(all(target_os = "linux", not(test)), allow(dead_code))]
struct CopyBulk(Vec<u8>);

impl BulkMover for CopyBulk {
    fn new() -> std::io::Result<CopyBulk> {
        Ok(CopyBulk(Vec::with_capacity(4 * BUF)))
    }

    async fn burst(
        &mut self,
        r: &mut tokio::net::tcp::ReadHalf<'_>,
        w: &mut tokio::net::tcp::WriteHalf<'_>,
        count: &AtomicU64,
        counters: &Counters,
    ) -> std::io::Result<(u64, bool)> {
        let mut moved = 0u64;
        loop {
            self.0.clear();
            match r.try_read_buf(&mut self.0) {
                Ok(0) => return Ok((moved, true)),
                Ok(n) => {
                    w.write_all(&self.0).await?;
                    moved += n as u64;
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    counters.touch();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok((moved, false)),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use super::Counters;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Bytes asked of one splice call; the pipe is sized to match.
    const CHUNK: usize = 256 * 1024;

    /// A pipe that lives while a flow is bulk; its descriptors close on drop.
    pub(super) struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
    }

    impl Pipe {
        pub(super) fn new() -> io::Result<Pipe> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: fds is a valid array of two ints for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
            let p = unsafe { Pipe { r: OwnedFd::from_raw_fd(fds[0]), w: OwnedFd::from_raw_fd(fds[1]) } };
            // A larger pipe moves more per call; the default (64 KiB) still works if this is refused.
            // SAFETY: fcntl on a pipe descriptor this Pipe owns.
            unsafe { libc::fcntl(p.w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
            Ok(p)
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain descriptors, null offsets (both ends are a socket or a pipe).
        let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Splice from `src` until it has nothing more for now or ends; the pipe is empty on return
    /// (every byte taken in is written out before the next splice in).
    pub(super) async fn burst(pipe: &Pipe, src: &TcpStream, dst: &TcpStream, count: &AtomicU64, counters: &Counters) -> io::Result<(u64, bool)> {
        let mut moved = 0u64;
        loop {
            // The pipe is empty here, so WouldBlock can only come from the socket.
            let n = match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), pipe.w.as_raw_fd(), CHUNK)) {
                Ok(0) => return Ok((moved, true)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((moved, false)),
                Err(e) => return Err(e),
            };
            let mut left = n;
            while left > 0 {
                dst.writable().await?;
                match dst.try_io(Interest::WRITABLE, || splice(pipe.r.as_raw_fd(), dst.as_raw_fd(), left)) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            moved += n as u64;
            count.fetch_add(n as u64, Ordering::Relaxed);
            counters.touch();
        }
    }
}

async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64, counters: &Counters) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        counters.touch();
    }
}

async fn idle_watch(idle: Duration, counters: &Counters) {
    loop {
        let last = Duration::from_millis(counters.last_activity_ms.load(Ordering::Relaxed));
        let since = counters.opened.elapsed().saturating_sub(last);
        if since >= idle {
            return;
        }
        tokio::time::sleep(idle - since).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of loopback TCP sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn pump_moves_bulk_then_small_then_bulk_and_passes_eof_on() {
        pump_case::<Bulk>().await;
    }

    /// The portable mover (macOS) over the same sockets: correct too, not only compiled.
    #[tokio::test]
    async fn portable_pump_moves_bulk_then_small_then_bulk_and_passes_eof_on() {
        pump_case::<CopyBulk>().await;
    }

    async fn pump_case<M: BulkMover>() {
        // writer -> [src_far | src] -pump-> [dst | dst_far] -> reader
        let (mut src_far, mut src) = pair().await;
        let (mut dst, mut dst_far) = pair().await;
        let counters = Counters { up: AtomicU64::new(0), down: AtomicU64::new(0), last_activity_ms: AtomicU64::new(0), opened: Instant::now() };
        let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let writer = async {
            src_far.write_all(&big).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            src_far.write_all(b"small").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            src_far.write_all(&big).await.unwrap();
            src_far.shutdown().await.unwrap();
        };
        let reader = async {
            let mut got = Vec::new();
            dst_far.read_to_end(&mut got).await.unwrap();
            got
        };
        let pump = async {
            let (mut r, _) = src.split();
            let (_, mut w) = dst.split();
            pump_tcp_with::<M>(&mut r, &mut w, &counters.up, &counters).await
        };
        let ((), got, pumped) = tokio::join!(writer, reader, pump);
        pumped.unwrap();
        let mut want = big.clone();
        want.extend_from_slice(b"small");
        want.extend_from_slice(&big);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes arrive intact and in order");
        assert_eq!(counters.up.load(Ordering::Relaxed), want.len() as u64);
    }

    #[test]
    fn ccs_prefix() {
        assert_eq!(leading_ccs(&[20, 3, 3, 0, 1, 1, 22, 3, 1]), 6);
        assert_eq!(leading_ccs(&[22, 3, 1, 0, 5]), 0);
        assert_eq!(leading_ccs(&[20, 3, 3, 0, 1]), 0);
    }
}

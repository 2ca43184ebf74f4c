//! Faults, with sha256 on every byte: a DNS server and an upstream of our own on loopback that
//! misbehave on purpose, and vpcgate between them and real clients, in both modes.
//!
//! - DNS: SERVFAIL, no answer at all, answers too large for UDP (the resolver must retry over
//!   TCP), hundreds of A records, CNAME chains and a CNAME loop. Each ends in a connection to the
//!   checked address or a refusal naming the fault, within a bound, with nothing at the upstream.
//! - Upstream: reset mid-download and mid-upload, a stall, a body shorter or longer than its
//!   `Content-Length`. For every transfer that completes, sha256 of what arrived equals what was
//!   sent; for every one that does not, the client gets an error, never a short object.
//! - S3 (s3s-fs): 1 GiB up and down, compared by sha256; a client that aborts mid-upload leaves
//!   no object behind.
//!
//! Address blocks 127.130 to 127.135.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME};
use hickory_server::proto::rr::{Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::harness::*;
use support::s3::{FakeS3, ACCESS_KEY, SECRET_KEY};
use support::TestCa;

const BUCKET: &str = "faults";
const HOST: &str = "faults.s3.us-east-1.amazonaws.com";
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The bytes every transfer carries: 1 MiB blocks of pseudo-random bytes, each stamped with its
// index (a block dropped, repeated or reordered changes the sha256).
// ---------------------------------------------------------------------------------------------

fn base_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..MIB)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

/// The `i`th block of an object of `size` bytes (the last one cut to what is left).
fn block(i: u64, size: u64) -> Bytes {
    let len = (size - i * MIB).min(MIB) as usize;
    let mut b = base_block()[..len].to_vec();
    for (k, byte) in i.to_le_bytes().iter().enumerate().take(len) {
        b[k] ^= byte;
    }
    Bytes::from(b)
}

fn blocks(size: u64) -> u64 {
    size.div_ceil(MIB)
}

fn sha256_of(size: u64) -> String {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for i in 0..blocks(size) {
        h.update(&block(i, size));
    }
    hex(h.finish().as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_file(path: &std::path::Path) -> (u64, String) {
    let data = std::fs::read(path).unwrap_or_default();
    (data.len() as u64, hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref()))
}

// ---------------------------------------------------------------------------------------------
// A DNS server that misbehaves by name.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Dns {
    A(Vec<Ipv4Addr>),
    Cname(String),
    ServFail,
    /// Never answers.
    Silent,
}

/// UDP answers with more A records than this are sent truncated (TC, no answers), as a server
/// whose answer does not fit the client's buffer does: the client must ask again over TCP.
const UDP_MAX_ANSWERS: usize = 60;

struct FaultDnsHandler {
    names: HashMap<String, Dns>,
    /// (name, over TCP) of every query.
    log: Arc<Mutex<Vec<(String, bool)>>>,
}

impl FaultDnsHandler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns.is_some() {
            builder.edns(&edns);
        }
        let query = request.request_info().expect("a query").query;
        let name = query.name().to_string().trim_end_matches('.').to_ascii_lowercase();
        let tcp = request.protocol() == Protocol::Tcp;
        self.log.lock().unwrap().push((name.clone(), tcp));
        let owner: Name = query.original().name().clone();
        // Follow CNAMEs as a recursive resolver does, putting the whole chain in the answer (a loop
        // is followed 20 steps and sent as it is).
        let mut answers = Vec::new();
        let mut at = name.clone();
        let mut at_owner = owner.clone();
        for _ in 0..20 {
            match self.names.get(&at).cloned() {
                None => {
                    metadata.response_code = ResponseCode::NXDomain;
                    break;
                }
                Some(Dns::Silent) => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return ResponseInfo::from(hickory_server::proto::op::Header { metadata, counts: Default::default() });
                }
                Some(Dns::ServFail) => {
                    metadata.response_code = ResponseCode::ServFail;
                    break;
                }
                Some(Dns::A(ips)) => {
                    if !tcp && ips.len() > UDP_MAX_ANSWERS {
                        metadata.truncation = true;
                        answers.clear();
                    } else {
                        answers.extend(ips.iter().map(|ip| Record::from_rdata(at_owner.clone(), 5, RData::A(A(*ip)))));
                    }
                    break;
                }
                Some(Dns::Cname(target)) => {
                    let target_name = Name::from_ascii(format!("{target}.")).unwrap();
                    answers.push(Record::from_rdata(at_owner.clone(), 5, RData::CNAME(CNAME(target_name.clone()))));
                    at = target;
                    at_owner = target_name;
                }
            }
        }
        let response = builder.build(metadata, answers.iter(), std::iter::empty::<&Record>(), std::iter::empty::<&Record>(), std::iter::empty::<&Record>());
        handle.send_response(response).await.unwrap_or_else(|_| ResponseInfo::from(hickory_server::proto::op::Header { metadata, counts: Default::default() }))
    }
}

impl RequestHandler for FaultDnsHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}

struct FaultDns {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<(String, bool)>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FaultDns {
    async fn start(names: &[(&str, Dns)]) -> FaultDns {
        let names = names.iter().map(|(n, d)| (n.to_string(), d.clone())).collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (udp, tcp) = support::dns::bind_udp_and_tcp().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(FaultDnsHandler { names, log: log.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = rx.await;
            let _ = server.shutdown_gracefully().await;
        });
        FaultDns { addr, log, _stop: tx }
    }

    fn asked_over_tcp(&self, name: &str) -> bool {
        self.log.lock().unwrap().iter().any(|(n, tcp)| n == name && *tcp)
    }
}

// ---------------------------------------------------------------------------------------------
// An upstream that misbehaves by path: `GET /get/KIND/SIZE`, `PUT /put/KIND`.
// ---------------------------------------------------------------------------------------------

struct FaultUpstream {
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Paths of the requests whose heads arrived, in order.
    paths: Arc<Mutex<Vec<String>>>,
    /// Stalled responses whose connection the other side has closed.
    stalls_ended: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultUpstream {
    async fn start(bind: SocketAddr, ca: &TestCa) -> FaultUpstream {
        let (cert, key) = ca.leaf(&[HOST, "*.s3.us-east-1.amazonaws.com"]);
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let (opened, closed, paths) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let stalls_ended = Arc::new(AtomicUsize::new(0));
        let (o, c, p, st) = (opened.clone(), closed.clone(), paths.clone(), stalls_ended.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                o.fetch_add(1, Ordering::SeqCst);
                let (acceptor, c, p, st) = (acceptor.clone(), c.clone(), p.clone(), st.clone());
                conns.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_faults(tls, &p, &st).await;
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        FaultUpstream { opened, closed, paths, stalls_ended, task }
    }

    fn requests(&self) -> usize {
        self.paths.lock().unwrap().len()
    }

    /// Open connections (accepted, not yet ended by either side).
    fn open(&self) -> usize {
        self.opened.load(Ordering::SeqCst) - self.closed.load(Ordering::SeqCst)
    }
}

/// Ends the connection with a TCP reset: no close_notify, no FIN.
fn reset(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    let (tcp, _) = tls.into_inner();
    tcp.set_zero_linger().unwrap();
    drop(tcp);
}

async fn serve_faults(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, paths: &Mutex<Vec<String>>, stalls_ended: &AtomicUsize) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // One head.
        let (method, path, length, used) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(used)) = req.parse(&buf) {
                let length = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                break (req.method.unwrap().to_string(), req.path.unwrap().to_string(), length, used);
            }
            let mut chunk = [0u8; 16384];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        buf.drain(..used);
        paths.lock().unwrap().push(path.clone());
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["get", kind, size]) => {
                let size: u64 = size.parse().unwrap();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n");
                if tls.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // How much of the body is sent before the fault.
                let send = match *kind {
                    "ok" => size,
                    "reset" | "stall" => size / 2,
                    "short" => size - 1000,
                    "long" => size + 1000,
                    other => panic!("unknown fault {other}"),
                };
                let padded = send.max(size);
                let mut left = send;
                for i in 0..blocks(padded) {
                    let b = block(i, padded);
                    let n = (b.len() as u64).min(left) as usize;
                    if n == 0 || tls.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                    left -= n as u64;
                }
                let _ = tls.flush().await;
                match *kind {
                    "reset" => return reset(tls),
                    "stall" => {
                        // Until the other side gives up (the read sees its close).
                        let mut sink = [0u8; 1024];
                        loop {
                            match tokio::time::timeout(Duration::from_secs(120), tls.read(&mut sink)).await {
                                Ok(Ok(k)) if k > 0 => continue,
                                Ok(_) => break,
                                Err(_) => return,
                            }
                        }
                        stalls_ended.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    "short" => {
                        let _ = tls.shutdown().await;
                        return;
                    }
                    _ => {}
                }
            }
            ("PUT", ["put", kind]) => {
                let stop_at = if *kind == "reset" { length / 2 } else { length };
                let mut h = ring::digest::Context::new(&ring::digest::SHA256);
                let mut got = buf.len().min(stop_at as usize) as u64;
                h.update(&buf[..got as usize]);
                buf.drain(..got as usize);
                let mut chunk = vec![0u8; 65536];
                while got < stop_at {
                    let want = (stop_at - got).min(chunk.len() as u64) as usize;
                    match tls.read(&mut chunk[..want]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            h.update(&chunk[..k]);
                            got += k as u64;
                        }
                    }
                }
                if *kind == "reset" {
                    return reset(tls);
                }
                let sum = hex(h.finish().as_ref());
                let resp = format!("HTTP/1.1 200 OK\r\nx-sha256: {sum}\r\nContent-Length: {}\r\n\r\n{sum}", sum.len());
                if tls.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
            _ => {
                let _ = tls.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// vpcgate in either mode, and curl through it.
// ---------------------------------------------------------------------------------------------

/// vpcgate in either mode, tunnels idling out after `idle`.
fn start_proxy(n: u8, inspect: bool, dns: SocketAddr, w: &World, idle: &str) -> Proxy {
    let extra = format!("[proxy]\nidle_timeout = \"{idle}\"\n");
    let extra = extra.as_str();
    if inspect {
        Proxy::start_inspect(n, dns, &w.ca_path, extra)
    } else {
        Proxy::start(n, dns, extra)
    }
}

async fn curl_through(p: &Proxy, inspect: bool, w: &World, args: &[&str]) -> CurlOut {
    let ca = if inspect { p.ca_path() } else { w.ca_path.clone() };
    let url = p.url();
    let mut all = vec!["--proxy", url.as_str(), "--cacert", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    curl(&all).await
}

fn header<'a>(curl: &'a CurlOut, name: &str) -> Option<&'a str> {
    let prefix = format!("< {}: ", name.to_ascii_lowercase());
    curl.stderr.lines().find_map(|l| l.to_ascii_lowercase().starts_with(&prefix).then(|| l[prefix.len()..].trim()))
}

// ---------------------------------------------------------------------------------------------
// DNS faults
// ---------------------------------------------------------------------------------------------

async fn dns_faults(n: u8, inspect: bool) {
    let w = world();
    let up = FaultUpstream::start(sa(n, 1, 1), &w.ca).await;
    let inside = ip(n, 1, 1);
    // 299 addresses outside the route (127.N.2.0/24 and 127.N.3.0/24) before the one inside.
    let mut many: Vec<Ipv4Addr> = (0..299u16).map(|i| ip(n, 2 + (i / 250) as u8, (i % 250) as u8 + 1)).collect();
    many.push(inside);
    let outside: Vec<Ipv4Addr> = many[..299].to_vec();
    let names = [
        (HOST, Dns::A(vec![inside])),
        ("servfail.s3.us-east-1.amazonaws.com", Dns::ServFail),
        ("silent.s3.us-east-1.amazonaws.com", Dns::Silent),
        ("many.s3.us-east-1.amazonaws.com", Dns::A(many)),
        ("outside.s3.us-east-1.amazonaws.com", Dns::A(outside)),
        ("chain.s3.us-east-1.amazonaws.com", Dns::Cname("c1.chain.test".into())),
        ("c1.chain.test", Dns::Cname("c2.chain.test".into())),
        ("c2.chain.test", Dns::Cname("c3.chain.test".into())),
        ("c3.chain.test", Dns::Cname("c4.chain.test".into())),
        ("c4.chain.test", Dns::Cname("c5.chain.test".into())),
        ("c5.chain.test", Dns::A(vec![inside])),
        ("loop.s3.us-east-1.amazonaws.com", Dns::Cname("l1.loop.test".into())),
        ("l1.loop.test", Dns::Cname("l2.loop.test".into())),
        ("l2.loop.test", Dns::Cname("l1.loop.test".into())),
    ];
    let dns = FaultDns::start(&names).await;
    let p = start_proxy(n, inspect, dns.addr, &w, "30s");
    let mode = if inspect { "inspect" } else { "passthrough" };

    // (bucket name, what must happen: Ok = served, Err(reason) = refused with that reason)
    let cases: [(&str, Result<(), &str>); 6] = [
        ("servfail", Err("dns_failed")),
        ("silent", Err("dns_failed")),
        ("many", Ok(())),
        ("outside", Err("outside_routes")),
        ("chain", Ok(())),
        ("loop", Err("dns_failed")),
    ];
    for (bucket, want) in cases {
        let host = format!("{bucket}.s3.us-east-1.amazonaws.com");
        let before = up.requests();
        let started = Instant::now();
        let out = curl_through(&p, inspect, &w, &["-o", "/dev/null", &format!("https://{host}/get/ok/1000")]).await;
        let took = started.elapsed();
        // dns.timeout is 1 s; every answer, even to silence, comes within 4.
        assert!(took < Duration::from_secs(4), "{mode} {bucket}: the answer took {took:?}");
        match want {
            Ok(()) => {
                assert_eq!((out.code, out.status), (0, 200), "{mode} {bucket}: {}\n{}", out.stderr, p.log_text());
                assert_eq!(up.requests(), before + 1, "{mode} {bucket}: the request reached the upstream");
            }
            Err(reason) => {
                // Passthrough refuses the CONNECT; inspect answers the request inside the tunnel.
                assert!(out.code != 0 || out.status >= 400, "{mode} {bucket}: served ({})", out.status);
                assert_eq!(header(&out, "X-Vpcgate-Reason"), Some(reason), "{mode} {bucket}: {}", out.stderr);
                assert_eq!(up.requests(), before, "{mode} {bucket}: a refused CONNECT reached the upstream");
                // The log names the host and the reason.
                eventually(
                    5,
                    || format!("{mode} {bucket}: no refusal line in\n{}", p.log_text()),
                    || refusal_line(&p, &host).filter(|e| e["reason"] == reason),
                );
            }
        }
        // A well-behaved client is served after each fault.
        let good = curl_through(&p, inspect, &w, &["-o", "/dev/null", &format!("https://{HOST}/get/ok/1000")]).await;
        assert_eq!((good.code, good.status), (0, 200), "{mode}: a good client after {bucket}: {}", good.stderr);
    }
    // The answer with 300 records did not fit UDP: it was asked again over TCP.
    assert!(dns.asked_over_tcp("many.s3.us-east-1.amazonaws.com"), "{mode}: no TCP retry after a truncated answer");
    // 299 addresses outside every route: the sentence names some and counts the rest, and still
    // ends with its fix where the client shows it (passthrough: the reason phrase of the refused
    // CONNECT, which vpcgate cuts at 512 characters; inspect: the S3 error's message).
    let out = curl_through(&p, inspect, &w, &["https://outside.s3.us-east-1.amazonaws.com/get/ok/1"]).await;
    let shown = if inspect { out.body.clone() } else { out.stderr.lines().find(|l| l.starts_with("< HTTP/1.1 ")).unwrap_or_default().to_string() };
    assert!(shown.contains("and 291 more") && shown.contains("check the bucket's region"), "{mode}: {shown}");
    let refusal = refusal_line(&p, "outside.s3.us-east-1.amazonaws.com").unwrap();
    assert!(refusal.to_string().len() < 2048, "{mode}: a refusal line of {} bytes", refusal.to_string().len());
}

/// The log line of the last refusal for `host`, in either mode.
fn refusal_line(p: &Proxy, host: &str) -> Option<serde_json::Value> {
    p.log_text().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).rfind(|e| e["host"] == host && e["reason"].is_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_faults_end_in_a_refusal_or_the_checked_address_in_passthrough() {
    dns_faults(130, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_faults_end_in_a_refusal_or_the_checked_address_in_inspect() {
    dns_faults(131, true).await;
}

// ---------------------------------------------------------------------------------------------
// Upstream faults
// ---------------------------------------------------------------------------------------------

async fn upstream_faults(n: u8, inspect: bool) {
    let w = world();
    let up = FaultUpstream::start(sa(n, 1, 1), &w.ca).await;
    let dns = FaultDns::start(&[(HOST, Dns::A(vec![ip(n, 1, 1)]))]).await;
    // Tunnels idle out quickly, so a stalled transfer ends within the test's bound.
    let p = start_proxy(n, inspect, dns.addr, &w, "3s");
    let mode = if inspect { "inspect" } else { "passthrough" };
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let size = 32 * MIB;
    let want = sha256_of(size);
    let url = |kind: &str| format!("https://{HOST}/get/{kind}/{size}");

    // Whole: every byte, in order.
    let out = curl_through(&p, inspect, &w, &["-o", &file("ok"), &url("ok")]).await;
    assert_eq!((out.code, out.status), (0, 200), "{mode}: {}", out.stderr);
    assert_eq!(sha256_file(&dir.path().join("ok")), (size, want.clone()), "{mode}: the whole download");

    // Reset, or closed cleanly, before the end: the client gets an error, not a short object.
    for kind in ["reset", "short"] {
        let out = curl_through(&p, inspect, &w, &["-o", &file(kind), &url(kind)]).await;
        let (len, _) = sha256_file(&dir.path().join(kind));
        assert!(out.code != 0 && len < size, "{mode} {kind}: curl exit {} with {len} of {size} bytes: {}", out.code, out.stderr);
    }
    // A connection cut is not kept: what is left open are the pooled (inspect) or none.
    eventually(5, || format!("{mode}: {} upstream connections open after the cuts", up.open()), || (up.open() <= usize::from(inspect)).then_some(()));

    // Longer than its length: the client gets exactly its length, and the next response on the
    // same client connection is its own (the extra bytes are never taken for it).
    let out = curl_through(&p, inspect, &w, &["-o", &file("long"), &url("long"), "-o", &file("after-long"), &url("ok")]).await;
    assert_eq!(sha256_file(&dir.path().join("long")), (size, want.clone()), "{mode}: the long body's first {size} bytes");
    if inspect {
        // vpcgate frames each response itself: the extra bytes stay on the upstream connection,
        // which is not reused.
        assert_eq!(out.code, 0, "{mode} long: {}", out.stderr);
        assert_eq!(sha256_file(&dir.path().join("after-long")), (size, want.clone()), "{mode}: the response after the long one");
    } else {
        // Passthrough relays the TLS stream as it is: the extra bytes reach the client, whose
        // next response on that connection starts with them. curl refuses it ("Received HTTP/0.9");
        // what matters is that no wrong object is taken for a good one.
        let after = sha256_file(&dir.path().join("after-long"));
        assert!(out.code != 0 || after == (size, want.clone()), "{mode}: a response after the long one taken as good: {after:?}");
    }

    // A stall: vpcgate gives up on it after proxy.idle_timeout (3 s here) without a byte either
    // way, the client gets an error, and the stalled upstream connection is let go.
    let started = Instant::now();
    let out = curl_through(&p, inspect, &w, &["-o", &file("stall"), &url("stall")]).await;
    let (len, _) = sha256_file(&dir.path().join("stall"));
    assert!(out.code != 0 && len < size, "{mode} stall: curl exit {} with {len} of {size} bytes: {}", out.code, out.stderr);
    // Activity is checked once per idle period: cut within two, and some slack.
    assert!(started.elapsed() < Duration::from_secs(9), "{mode} stall: cut after {:?}", started.elapsed());
    eventually(5, || format!("{mode}: the stalled upstream connection is still held"), || (up.stalls_ended.load(Ordering::SeqCst) == 1).then_some(()));

    // Uploads: whole, and reset halfway by the upstream.
    let body = dir.path().join("body");
    {
        let mut f = std::fs::File::create(&body).unwrap();
        for i in 0..blocks(size) {
            std::io::Write::write_all(&mut f, &block(i, size)).unwrap();
        }
    }
    let body_arg = body.to_str().unwrap().to_string();
    let out = curl_through(&p, inspect, &w, &["-T", &body_arg, &format!("https://{HOST}/put/ok")]).await;
    assert_eq!((out.code, out.status), (0, 200), "{mode} put: {}", out.stderr);
    assert_eq!(header(&out, "x-sha256"), Some(want.as_str()), "{mode}: what the upstream received");
    let out = curl_through(&p, inspect, &w, &["-T", &body_arg, &format!("https://{HOST}/put/reset")]).await;
    assert!(out.code != 0 || out.status >= 500, "{mode} put reset: curl exit {} status {}: {}", out.code, out.status, out.stderr);
    assert_ne!(out.status, 200, "{mode}: an upload cut by the upstream answered 200");

    // Through all of it, a good client is served, and nothing is left open.
    let out = curl_through(&p, inspect, &w, &["-o", &file("last"), &url("ok")]).await;
    assert_eq!(sha256_file(&dir.path().join("last")), (size, want), "{mode}: a good client at the end: {}", out.stderr);
    assert!(!p.log_text().contains("panicked"), "{mode}: {}", p.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_never_hand_over_a_short_object_in_passthrough() {
    upstream_faults(132, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_never_hand_over_a_short_object_in_inspect() {
    upstream_faults(133, true).await;
}

// ---------------------------------------------------------------------------------------------
// S3 (s3s-fs): 1 GiB each way; an upload the client aborts is not committed.
// ---------------------------------------------------------------------------------------------

type Body = BoxBody<Bytes, std::io::Error>;

/// An HTTP/1.1 connection to S3 through vpcgate's tunnel.
async fn s3_connection(p: &Proxy, roots: rustls::RootCertStore) -> hyper::client::conn::http1::SendRequest<Body> {
    let tls = tls_tunnel(p.port, HOST, roots).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A SigV4-signed request (the body unsigned, as SDKs send large uploads over TLS).
fn signed(method: &str, key: &str, length: Option<u64>, body: Body) -> hyper::Request<Body> {
    use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
    let mut b = hyper::Request::builder().method(method).uri(format!("https://{HOST}/{key}")).header("host", HOST);
    if let Some(l) = length {
        b = b.header("content-length", l);
    }
    let mut req = b.body(body).unwrap();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "faults").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
    let signable = SignableRequest::new(method, &uri, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), SignableBody::UnsignedPayload).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    // hyper frames the body by its own length; the request path is origin-form on the wire.
    *req.uri_mut() = format!("/{key}").parse().unwrap();
    req
}

/// Sends `req` once the connection is ready for it (the previous exchange may still be finishing:
/// hyper refuses a request sent before then as "connection was not ready").
async fn send(c: &mut hyper::client::conn::http1::SendRequest<Body>, req: hyper::Request<Body>) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
    c.ready().await?;
    c.send_request(req).await
}

fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// An object of `size` bytes, streamed a block at a time; it breaks off after `abort_after`
/// bytes when given (the client going away mid-upload).
fn object_body(size: u64, abort_after: Option<u64>) -> Body {
    let stop = abort_after.map(|a| a.div_ceil(MIB)).unwrap_or(u64::MAX);
    let frames = futures::stream::iter((0..blocks(size)).map(move |i| {
        if i >= stop {
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the client went away"))
        } else {
            Ok(Frame::data(block(i, size)))
        }
    }));
    StreamBody::new(frames).boxed()
}

async fn body_sha256(resp: hyper::Response<hyper::body::Incoming>) -> (u64, String) {
    let mut body = resp.into_body();
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the download breaks off").into_data() {
            len += data.len() as u64;
            h.update(&data);
        }
    }
    (len, hex(h.finish().as_ref()))
}

async fn s3_transfers(n: u8, inspect: bool) {
    let w = world();
    let s3 = FakeS3::start(sa(n, 1, 1), &w.ca, &[HOST, "*.s3.us-east-1.amazonaws.com"]).await;
    let dns = FaultDns::start(&[(HOST, Dns::A(vec![ip(n, 1, 1)]))]).await;
    // Long enough for S3 to hash 1 GiB before it answers, and for the test to hash it first.
    let p = start_proxy(n, inspect, dns.addr, &w, "60s");
    let mode = if inspect { "inspect" } else { "passthrough" };
    let size = 1 << 30;
    let want = sha256_of(size);
    let roots = client_roots(&p, inspect, &w);
    let mut c = s3_connection(&p, roots.clone()).await;
    let resp = send(&mut c, signed("PUT", "", Some(0), empty())).await.unwrap();
    assert_eq!(resp.status(), 200, "{mode}: CreateBucket");
    let _ = resp.into_body().collect().await;

    // 1 GiB up, then down, compared by sha256.
    let started = Instant::now();
    let resp = send(&mut c, signed("PUT", "big", Some(size), object_body(size, None))).await.unwrap();
    assert_eq!(resp.status(), 200, "{mode}: PUT 1 GiB");
    let _ = resp.into_body().collect().await;
    let up = started.elapsed();
    let started = Instant::now();
    let resp = send(&mut c, signed("GET", "big", None, empty())).await.unwrap();
    assert_eq!(resp.status(), 200, "{mode}: GET 1 GiB");
    assert_eq!(body_sha256(resp).await, (size, want), "{mode}: the 1 GiB object read back");
    eprintln!("{mode}: 1 GiB up in {:.1}s, down in {:.1}s", up.as_secs_f64(), started.elapsed().as_secs_f64());
    drop(c);

    // The client goes away halfway through a 64 MiB upload: no object is committed.
    let mut c = s3_connection(&p, roots.clone()).await;
    let cut = send(&mut c, signed("PUT", "aborted", Some(64 * MIB), object_body(64 * MIB, Some(32 * MIB)))).await;
    assert!(cut.is_err(), "{mode}: an aborted upload was answered: {cut:?}");
    drop(c);
    // Give S3 the time to see the end of the stream, then look.
    eventually(
        10,
        || format!("{mode}: S3 still has the request open: {:?}", s3.requests().last()),
        || s3.requests().iter().rev().find(|r| r.path == "/aborted" || r.path == "/faults/aborted").filter(|r| r.status != 0 || !inspect).map(|_| ()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = s3_connection(&p, roots).await;
    let resp = send(&mut c, signed("GET", "aborted", None, empty())).await.unwrap();
    assert_eq!(resp.status(), 404, "{mode}: an upload the client aborted halfway was committed");
    assert!(!s3.root().join(BUCKET).join("aborted").exists(), "{mode}: the aborted object is on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_transfers_of_1_gib_arrive_whole_and_aborted_uploads_are_not_committed_in_passthrough() {
    s3_transfers(134, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_transfers_of_1_gib_arrive_whole_and_aborted_uploads_are_not_committed_in_inspect() {
    s3_transfers(135, true).await;
}

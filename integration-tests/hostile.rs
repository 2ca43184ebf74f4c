//! Hostile input through real sockets, in both modes: one table of the inputs proxies are
//! attacked with (CONNECT tricks, oversized and trickled heads, slowloris at every stage, TLS
//! garbage, SNI tricks, smuggling shapes inside an inspected tunnel, a connection flood), run
//! against a running vpcgate. For every row:
//! (a) the answer: a status and its `X-Vpcgate-Reason`, or a TLS alert or a close, within a bound;
//! (b) a log line after the input that names one of the row's reasons;
//! (c) a well-behaved client (curl, to another bucket's upstream) keeps getting 200 during the
//!     whole table and after it;
//! (d) nothing reached the upstream when the row is a refusal: no TCP connection for a refused
//!     CONNECT (or a refused first request in an inspected tunnel), no TLS handshake for a refused
//!     hello.
//!
//! Blocks: 127.105.0.0/16 (passthrough), 127.106.0.0/16 (inspect).

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::harness::*;
use support::{FakeDns, TlsUpstream};

const HOST: &str = "hostile.s3.us-east-1.amazonaws.com";
const GOOD: &str = "good.s3.us-east-1.amazonaws.com";
/// proxy.handshake_timeout of the proxy under test: the bound of every slowloris row.
const HANDSHAKE: Duration = Duration::from_secs(2);
/// proxy.idle_timeout: the bound of a tunnel nothing moves on.
const IDLE: Duration = Duration::from_secs(3);
const MAX_CONNECTIONS: usize = 48;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Passthrough,
    Inspect,
}

/// What is sent.
enum Send {
    /// On a new connection to the proxy, piece after piece (`PAUSE` apart), then nothing more.
    Raw(Vec<Vec<u8>>),
    /// `CONNECT HOST:443` (answered 200), then these pieces into the tunnel.
    Tunnel(Vec<Vec<u8>>),
    /// Inspect mode: a CONNECT, a TLS handshake trusting vpcgate's CA, then these plaintext bytes.
    Inside(Vec<u8>),
}

/// What must come back.
#[derive(Debug)]
enum Expect {
    /// An HTTP answer with this status (to the CONNECT, or inside the tunnel).
    Status(u16),
    /// A TLS alert record, or the connection closed without one.
    AlertOrClose,
    /// The handshake goes on: a ServerHello comes back.
    ServerHello,
    /// Whatever came first, the connection is closed within the bound.
    Closes,
}

/// What the upstream may see.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Upstream {
    /// Not even a TCP connection.
    Untouched,
    /// Passthrough dials before its 200, so a refused hello still cost a TCP connection; it never
    /// reached a handshake.
    NoHandshake,
    /// An allowed input: it may.
    Allowed,
}

struct Case {
    name: &'static str,
    modes: &'static [Mode],
    send: Send,
    expect: Expect,
    /// The `reason` of the log line (and the `X-Vpcgate-Reason` of an HTTP answer): one of these.
    /// Empty: an allowed input, whose log line is the allowed `connect`.
    reasons: &'static [&'static str],
    within: Duration,
    upstream: Upstream,
}

const PAUSE: Duration = Duration::from_millis(150);
const BOTH: &[Mode] = &[Mode::Passthrough, Mode::Inspect];
const PASSTHROUGH: &[Mode] = &[Mode::Passthrough];
const INSPECT: &[Mode] = &[Mode::Inspect];
const QUICK: Duration = Duration::from_secs(3);

fn connect_line(target: &str, extra: &str) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n").into_bytes()
}

fn raw(bytes: Vec<u8>) -> Send {
    Send::Raw(vec![bytes])
}

fn get(headers: &str, body: &str) -> Vec<u8> {
    format!("GET /k HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n{body}").into_bytes()
}

fn table() -> Vec<Case> {
    let host443 = format!("{HOST}:443");
    let long_name = format!("{}.s3.us-east-1.amazonaws.com:443", ["a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(60)].join("."));
    let long_label = format!("{}.s3.us-east-1.amazonaws.com:443", "x".repeat(64));
    let many_headers: String = (0..1000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big_headers: String = (0..64).map(|i| format!("x-pad{i}: {}\r\n", "a".repeat(1000))).collect();
    let hello = |names: &[&str], alpn: &[&str]| client_hello(names, alpn, false);
    let case = |name, modes, send, expect, reasons, within, upstream| Case { name, modes, send, expect, reasons, within, upstream };
    use Expect::*;
    use Upstream::*;
    vec![
        // ---- The CONNECT line ----
        case("no port", BOTH, raw(connect_line(HOST, "")), Status(400), &["bad_authority"], QUICK, Untouched),
        case("port 0", BOTH, raw(connect_line(&format!("{HOST}:0"), "")), Status(400), &["bad_authority"], QUICK, Untouched),
        case("port 65536", BOTH, raw(connect_line(&format!("{HOST}:65536"), "")), Status(400), &["bad_authority"], QUICK, Untouched),
        case("port with a leading zero", BOTH, raw(connect_line(&format!("{HOST}:0443"), "")), Status(400), &["bad_authority"], QUICK, Untouched),
        case(
            "a space inside the target",
            BOTH,
            raw(format!("CONNECT {HOST} :443 HTTP/1.1\r\n\r\n").into_bytes()),
            Status(400),
            &["bad_request"],
            QUICK,
            Untouched,
        ),
        case("a tab after the method", BOTH, raw(format!("CONNECT\t{host443} HTTP/1.1\r\n\r\n").into_bytes()), Status(400), &["bad_request"], QUICK, Untouched),
        case("a NUL in the target", BOTH, raw(format!("CONNECT {HOST}\0:443 HTTP/1.1\r\n\r\n").into_bytes()), Status(400), &["bad_request"], QUICK, Untouched),
        case("a name of 254+ bytes", BOTH, raw(connect_line(&long_name, "")), Status(400), &["bad_name"], QUICK, Untouched),
        case("a label of 64 bytes", BOTH, raw(connect_line(&long_label, "")), Status(400), &["bad_name"], QUICK, Untouched),
        case("an xn-- name outside AWS", BOTH, raw(connect_line("xn--bcher-kva.example:443", "")), Status(403), &["not_aws"], QUICK, Untouched),
        case(
            "a non-ASCII name",
            BOTH,
            raw(connect_line("bücher.s3.us-east-1.amazonaws.com:443", "")),
            Status(400),
            &["bad_request", "bad_name"],
            QUICK,
            Untouched,
        ),
        case("HTTP/0.9 (no version)", BOTH, raw(format!("CONNECT {host443}\r\n\r\n").into_bytes()), Status(400), &["bad_request"], QUICK, Untouched),
        case("HTTP/1.0 is served", BOTH, raw(format!("CONNECT {host443} HTTP/1.0\r\n\r\n").into_bytes()), Status(200), &[], QUICK, Allowed),
        case(
            "a Content-Length on CONNECT",
            BOTH,
            raw([connect_line(&host443, "Content-Length: 5\r\n"), b"hello".to_vec()].concat()),
            Status(400),
            &["bad_request"],
            QUICK,
            Untouched,
        ),
        case("Content-Length: 0 on CONNECT is served", BOTH, raw(connect_line(&host443, "Content-Length: 0\r\n")), Status(200), &[], QUICK, Allowed),
        case(
            "a Transfer-Encoding on CONNECT",
            BOTH,
            raw([connect_line(&host443, "Transfer-Encoding: chunked\r\n"), b"5\r\nhello\r\n0\r\n\r\n".to_vec()].concat()),
            Status(400),
            &["bad_request"],
            QUICK,
            Untouched,
        ),
        case(
            "the ClientHello pipelined before the 200",
            BOTH,
            raw([connect_line(&host443, ""), hello(&[HOST], &[])].concat()),
            Status(200),
            &[],
            QUICK,
            Allowed,
        ),
        // ---- Oversized and trickled heads ----
        case("64 KiB of headers", BOTH, raw(connect_line(&host443, &big_headers)), Status(400), &["bad_request"], QUICK, Untouched),
        case("1,000 headers", BOTH, raw(connect_line(&host443, &many_headers)), Status(400), &["bad_request"], QUICK, Untouched),
        case(
            "slowloris at the proxy head",
            BOTH,
            Send::Raw(vec![format!("CONNECT {host443} HTTP/1.1\r\nHo").into_bytes()]),
            Status(408),
            &["head_timeout"],
            HANDSHAKE + QUICK,
            Untouched,
        ),
        case(
            "a head trickled a byte at a time within the time",
            BOTH,
            Send::Raw(connect_line(&host443, "").chunks(8).map(<[u8]>::to_vec).collect()),
            Status(200),
            &[],
            QUICK,
            Allowed,
        ),
        // ---- Into the tunnel: TLS ----
        case("slowloris at the TLS hello", BOTH, Send::Tunnel(vec![vec![22, 3, 1]]), AlertOrClose, &["handshake_timeout"], HANDSHAKE + QUICK, NoHandshake),
        case(
            "TLS garbage",
            BOTH,
            Send::Tunnel(vec![b"\x16\x03\x01\x00\x08garbage!".to_vec()]),
            AlertOrClose,
            &["client_hello_malformed", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        case(
            "plaintext HTTP into the tunnel",
            BOTH,
            Send::Tunnel(vec![get("", "")]),
            AlertOrClose,
            &["client_not_tls", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        case(
            "a record longer than TLS allows",
            BOTH,
            Send::Tunnel(vec![vec![22, 3, 1, 0xff, 0xff, 1, 0, 0]]),
            AlertOrClose,
            &["client_hello_malformed", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        case(
            "a truncated hello then silence",
            BOTH,
            Send::Tunnel(vec![hello(&[HOST], &[])[..40].to_vec()]),
            AlertOrClose,
            &["handshake_timeout"],
            HANDSHAKE + QUICK,
            NoHandshake,
        ),
        case(
            "SNI of another host",
            BOTH,
            Send::Tunnel(vec![hello(&["other.s3.us-east-1.amazonaws.com"], &[])]),
            AlertOrClose,
            &["sni_mismatch", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        // (rustls, in inspect mode, ignores an IP address as SNI: no server named.)
        case("SNI an IP address", BOTH, Send::Tunnel(vec![hello(&["127.105.1.1"], &[])]), AlertOrClose, &["sni_mismatch", "sni_missing"], QUICK, NoHandshake),
        case(
            "two server names",
            BOTH,
            Send::Tunnel(vec![hello(&[HOST, "other.example"], &[])]),
            AlertOrClose,
            &["client_hello_malformed", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        case(
            "a very long SNI",
            BOTH,
            Send::Tunnel(vec![hello(&[&"s".repeat(300)], &[])]),
            AlertOrClose,
            &["client_hello_malformed", "sni_mismatch", "client_handshake_failed"],
            QUICK,
            NoHandshake,
        ),
        case("no SNI", BOTH, Send::Tunnel(vec![hello(&[], &[])]), AlertOrClose, &["sni_missing", "client_handshake_failed"], QUICK, NoHandshake),
        // Passthrough cannot refuse 0-RTT data once relayed, so it refuses the hello; inspect
        // mode's own TLS server never accepts early data, and the handshake goes on.
        case("early data", PASSTHROUGH, Send::Tunnel(vec![client_hello(&[HOST], &[], true)]), AlertOrClose, &["client_early_data"], QUICK, NoHandshake),
        case("early data", INSPECT, Send::Tunnel(vec![client_hello(&[HOST], &[], true)]), ServerHello, &[], QUICK, Allowed),
        // vpcgate speaks HTTP/1.1 inside the tunnel and selects no protocol for an h2-only
        // client (passthrough: the endpoint chooses).
        case("h2 as the only ALPN", BOTH, Send::Tunnel(vec![hello(&[HOST], &["h2"])]), ServerHello, &[], QUICK, Allowed),
        case("slowloris inside a tunnel", PASSTHROUGH, Send::Tunnel(vec![hello(&[HOST], &[])]), Closes, &["idle", "idle_timeout"], IDLE + QUICK, Allowed),
        // ---- Inside an inspected tunnel: request smuggling shapes ----
        // Refused before hyper reads the head: vpcgate answers it with an S3 error and closes.
        case(
            "CL.TE",
            INSPECT,
            Send::Inside(get("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")),
            Status(403),
            &["request_smuggling"],
            QUICK,
            Untouched,
        ),
        case(
            "TE.CL",
            INSPECT,
            Send::Inside(get("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n")),
            Status(403),
            &["request_smuggling"],
            QUICK,
            Untouched,
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            INSPECT,
            Send::Inside(get("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")),
            Status(403),
            &["request_smuggling"],
            QUICK,
            Untouched,
        ),
        case(
            "two Content-Lengths",
            INSPECT,
            Send::Inside(get("Content-Length: 1\r\nContent-Length: 2\r\n", "ab")),
            Status(403),
            &["request_smuggling"],
            QUICK,
            Untouched,
        ),
        case(
            "a \\x0b in Content-Length",
            INSPECT,
            Send::Inside(get("Content-Length:\x0b1\r\n", "a")),
            Status(403),
            &["unreadable_head", "request_smuggling"],
            QUICK,
            Untouched,
        ),
        case("obs-fold", INSPECT, Send::Inside(get("X-Amz-Date: 20261203T000000Z\r\n folded\r\n", "")), Status(403), &["unreadable_head"], QUICK, Untouched),
        case("a header name with a space", INSPECT, Send::Inside(get("Content-Length : 1\r\n", "a")), Status(403), &["unreadable_head"], QUICK, Untouched),
        // The head is sound and goes on; the body breaks on its way, which the client is told
        // (not an upstream failure), and the endpoint never gets a whole request.
        case(
            "a chunk size that overflows",
            INSPECT,
            Send::Inside(get("Transfer-Encoding: chunked\r\n", "fffffffffffffffffff\r\n")),
            Status(403),
            &["client_body_error"],
            QUICK,
            Allowed,
        ),
        case("slowloris at a request head", INSPECT, Send::Inside(b"GET /k HTTP/1.1\r\nHo".to_vec()), Closes, &["idle_timeout"], IDLE + QUICK, Untouched),
    ]
}

/// How an answer arrived.
struct Answer {
    text: Vec<u8>,
    /// When its first byte came (or the close, when nothing came).
    after: Duration,
    /// When the peer closed, if it did within the bound.
    closed: Option<Duration>,
}

/// Read until the peer closes or `within` passes; the bytes and when the first came (or the close).
fn read_answer(s: &mut TcpStream, within: Duration, started: Instant) -> Answer {
    let deadline = started + within;
    let mut text = Vec::new();
    let mut first: Option<Duration> = None;
    let mut closed = None;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                first.get_or_insert(started.elapsed());
                closed = Some(started.elapsed());
                break;
            }
            Ok(n) => {
                first.get_or_insert(started.elapsed());
                text.extend_from_slice(&buf[..n]);
                // An HTTP answer is complete once its body is in: stop there (keep-alive answers).
                let t = String::from_utf8_lossy(&text);
                if let Some((head, body)) = t.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
                    if t.starts_with("HTTP/") && len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                first.get_or_insert(started.elapsed());
                closed = Some(started.elapsed());
                break;
            }
        }
    }
    Answer { text, after: first.unwrap_or(within), closed }
}

fn status_of(text: &[u8]) -> Option<u16> {
    let t = String::from_utf8_lossy(text);
    t.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn reason_header(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text).lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("x-vpcgate-reason:").map(|v| v.trim().to_string()))
}

/// Send one row's input; the answer (after the CONNECT's 200 for tunnel rows).
async fn run(case: &Case, p: &Proxy, roots: &rustls::RootCertStore) -> Answer {
    match &case.send {
        Send::Raw(pieces) | Send::Tunnel(pieces) => {
            let pieces: Vec<Vec<u8>> = pieces.clone();
            let tunnel = matches!(case.send, Send::Tunnel(_));
            let (port, within) = (p.port, case.within);
            tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                if tunnel {
                    s.write_all(&connect_line(&format!("{HOST}:443"), "")).unwrap();
                    let mut head = [0u8; 512];
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let k = s.read(&mut head).unwrap_or(0);
                    assert!(head[..k].starts_with(b"HTTP/1.1 200"), "the CONNECT before the input: {}", String::from_utf8_lossy(&head[..k]));
                }
                let started = Instant::now();
                for (i, piece) in pieces.iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(PAUSE);
                    }
                    let _ = s.write_all(piece);
                }
                read_answer(&mut s, within, started)
            })
            .await
            .unwrap()
        }
        Send::Inside(bytes) => {
            use tokio::io::AsyncWriteExt;
            let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
            let started = Instant::now();
            tls.write_all(bytes).await.unwrap();
            if matches!(case.expect, Expect::Closes) {
                use tokio::io::AsyncReadExt;
                let mut sink = Vec::new();
                let r = tokio::time::timeout(case.within, tls.read_to_end(&mut sink)).await;
                let closed = r.is_ok().then(|| started.elapsed());
                return Answer { after: closed.unwrap_or(case.within), closed, text: sink };
            }
            let text = tokio::time::timeout(
                case.within,
                read_text_until(&mut tls, |t| t.contains("</Error>") || (t.starts_with("HTTP/") && t.contains("\r\n\r\n") && !t.contains("<?xml"))),
            )
            .await
            .unwrap_or_default();
            let after = started.elapsed().min(case.within);
            Answer { after, closed: None, text: text.into_bytes() }
        }
    }
}

/// The proxy's log lines since `mark`, but the well-behaved client's, for a row that failed.
fn since(p: &Proxy, mark: usize) -> String {
    let lines: Vec<String> = p.log_text().lines().skip(mark).filter(|l| !l.contains(GOOD)).map(|l| l.chars().take(400).collect()).collect();
    format!("\n    log since: {}", lines.join("\n    "))
}

/// The well-behaved client: curl through the proxy to GOOD, over and over, until told to stop.
fn good_client(
    proxy: String,
    ca: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            if pause.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let out = curl(&["--proxy", &proxy, "--cacert", ca.to_str().unwrap(), &format!("https://{GOOD}/ok")]).await;
            if out.status == 200 {
                ok.fetch_add(1, Ordering::SeqCst);
            } else {
                failures.lock().unwrap().push(format!("{} {}: {}", out.connect_status, out.status, out.stderr.lines().last().unwrap_or("")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn hostile_table(mode: Mode, n: u8) {
    let w = world();
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)])), (GOOD, &a(&[ip(n, 1, 2)]))]).await;
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "hostile").await;
    let _good = TlsUpstream::start(sa(n, 1, 2), &w.ca, &[GOOD], "good").await;
    let extra =
        format!("[proxy]\nhandshake_timeout = \"{}s\"\nidle_timeout = \"{}s\"\nmax_connections = {MAX_CONNECTIONS}\n", HANDSHAKE.as_secs(), IDLE.as_secs());
    let p = match mode {
        Mode::Passthrough => Proxy::start(n, dns.addr, &extra),
        Mode::Inspect => Proxy::start_inspect(n, dns.addr, &w.ca_path, &extra),
    };
    // The CA exists once the proxy listens.
    let roots = client_roots(&p, mode == Mode::Inspect, &w);
    let trust = if mode == Mode::Inspect { p.ca_path() } else { w.ca_path.clone() };
    let (stop, pause) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (ok, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let client = good_client(p.url(), trust.clone(), stop.clone(), pause.clone(), ok.clone(), failures.clone());

    let mut problems = Vec::new();
    for case in table().into_iter().filter(|c| c.modes.contains(&mode)) {
        let mark = p.log_text().lines().count();
        let (conns, handshakes) = (up.connections(), up.handshakes());
        let answer = run(&case, &p, &roots).await;
        let said = String::from_utf8_lossy(&answer.text).chars().take(300).collect::<String>();
        // (a) the answer, within its bound.
        let answered = match case.expect {
            Expect::Status(code) => {
                status_of(&answer.text) == Some(code)
                    && (case.reasons.is_empty() || reason_header(&answer.text).is_some_and(|r| case.reasons.contains(&r.as_str())))
            }
            Expect::AlertOrClose => answer.text.is_empty() || answer.text[0] == 21,
            Expect::ServerHello => answer.text.first() == Some(&22),
            Expect::Closes => answer.closed.is_some(),
        };
        let after = if matches!(case.expect, Expect::Closes) { answer.closed.unwrap_or(case.within) } else { answer.after };
        if !answered || after >= case.within {
            problems.push(format!(
                "{}: expected {:?} {:?} within {:?}, got after {after:?}: {said:?}{}",
                case.name,
                case.expect,
                case.reasons,
                case.within,
                since(&p, mark)
            ));
            continue;
        }
        // (b) the log line naming the reason (the allowed connect for an allowed input).
        let logged = {
            let (log, reasons) = (p.log.clone(), case.reasons);
            tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let found = text.lines().skip(mark).filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| {
                        if reasons.is_empty() {
                            v["event"] == "connect" && v["decision"] == "allow" && v["host"] == HOST
                        } else {
                            v["reason"].as_str().is_some_and(|r| reasons.contains(&r)) || v["end"].as_str().is_some_and(|r| reasons.contains(&r))
                        }
                    });
                    if found || Instant::now() > deadline {
                        return found;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .await
            .unwrap()
        };
        if !logged {
            problems.push(format!("{}: no log line with reason {:?}{}", case.name, case.reasons, since(&p, mark)));
        }
        // (d) nothing reached the upstream for a refusal.
        let reached = match case.upstream {
            Upstream::Untouched => up.connections() != conns,
            Upstream::NoHandshake => up.handshakes() != handshakes,
            Upstream::Allowed => false,
        };
        if reached {
            problems.push(format!(
                "{}: the upstream saw it ({:?}): connections {conns}→{}, handshakes {handshakes}→{}",
                case.name,
                case.upstream,
                up.connections(),
                up.handshakes()
            ));
        }
    }

    // A flood past proxy.max_connections: the one over is told so; the slots come back after.
    // (The good client waits it out: while every slot is held, a refusal is the flood's point,
    // and a slot it gives back would let the next connection in.)
    pause.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS + 8).filter_map(|_| TcpStream::connect(("127.0.0.1", p.port)).ok()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (status, text) = tokio::task::spawn_blocking({
        let port = p.port;
        move || raw_request(port, &connect_req(&format!("{HOST}:443")))
    })
    .await
    .unwrap();
    if status != 503 || !text.contains("over_capacity") {
        let refused = p.log_text().lines().filter(|l| l.contains("over_capacity")).count();
        problems.push(format!(
            "the flood: expected 503 over_capacity, got {status} ({} held, {refused} over_capacity lines): {}",
            held.len(),
            text.chars().take(200).collect::<String>()
        ));
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pause.store(false, Ordering::SeqCst);

    // (c) the good client kept working during the table, and still does.
    let before = ok.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::SeqCst) < before + 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    let failed = failures.lock().unwrap().clone();
    assert!(ok.load(Ordering::SeqCst) >= before + 3, "the well-behaved client stopped working after the table");
    assert!(failed.is_empty(), "the well-behaved client failed during the table: {failed:#?}");
    assert!(
        problems.is_empty(),
        "{mode:?}:\n{}\n\nlog:\n{}",
        problems.join("\n"),
        p.log_text().lines().filter(|l| !l.contains(GOOD)).rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_in_passthrough() {
    hostile_table(Mode::Passthrough, 105).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_in_inspect_mode() {
    hostile_table(Mode::Inspect, 106).await;
}

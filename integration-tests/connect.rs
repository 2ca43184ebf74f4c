//! The CONNECT path through real sockets on loopback: the vpcgate binary, a real DNS server, real
//! TLS upstreams on 127.x.y.z:443, and curl / openssl / a raw socket as clients.
//!
//! Each test owns a distinct 127.N.0.0/16 block so that tests can run in parallel:
//! 127.N.1.0/24 is inside the gateway route, 127.N.2.0/24 is outside every route, 127.N.3.0/24 is
//! the interface route's VPC range.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::dns::{unreachable_dns_addr, FakeDns};
use support::harness::*;
use support::upstream::{NonFsUpstream, TlsUpstream};

const HOST: &str = "s3.us-east-1.amazonaws.com";
const BUCKET_HOST: &str = "my-bucket.s3.us-east-1.amazonaws.com";
const ENDPOINT: &str = "vpce-0abc-1234.s3.us-east-1.vpce.amazonaws.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_connect_is_tunnelled_and_explained() {
    let n = 11;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST, BUCKET_HOST], "inside").await;
    let inside = a(&[ip(n, 1, 1)]);
    let dns = FakeDns::start(&[(HOST, &inside), (BUCKET_HOST, &inside)]).await;
    let p = Proxy::start(n, dns.addr, "");

    let out = curl_via(&p, &w.ca_path, &format!("https://{BUCKET_HOST}/key")).await;
    assert_eq!((out.code, out.status), (0, 200), "{}", out.stderr);
    assert!(out.body.contains("upstream inside saw GET /key"), "{}", out.body);
    assert!(out.body.contains(&format!("sni={BUCKET_HOST}")), "{}", out.body);
    assert_eq!(up.connections(), 1);

    // One decision line per CONNECT with the resolved address, the route and the CIDR.
    let d = p.wait_event("connect", BUCKET_HOST);
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["class"], "regional_virtual_hosted");
    assert_eq!(d["chosen"], ip(n, 1, 1).to_string());
    assert_eq!(d["route"], "test-gateway");
    assert_eq!(d["cidr"], format!("127.{n}.1.0/24"));
    assert!(d["dns_ms"].is_number() && d["connect_ms"].is_number());
    // One close line with TLS facts and bytes each way.
    let c = p.wait_event("close", BUCKET_HOST);
    assert_eq!(c["tls_version"], "TLS1.3", "{c}");
    assert!(c["cipher"].as_str().unwrap().starts_with("TLS13_") || c["cipher"].as_str().unwrap().starts_with("TLS_"), "{c}");
    assert!(c["bytes_up"].as_u64().unwrap() > 300 && c["bytes_down"].as_u64().unwrap() > 300, "{c}");
    assert_eq!(c["end"], "closed");
    // A records only: never AAAA, never PTR.
    assert!(dns.count("A") >= 1);
    assert_eq!(dns.count("AAAA") + dns.count("PTR"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_that_can_never_be_private_are_refused_with_a_reason() {
    let n = 12;
    let w = world();
    let dual = "my-bucket.s3.dualstack.us-east-1.amazonaws.com";
    let other = "my-bucket.s3.eu-west-1.amazonaws.com";
    let accel = "my-bucket.s3-accelerate.amazonaws.com";
    let v4 = a(&[ip(n, 1, 1)]);
    let both: Vec<IpAddr> = vec![IpAddr::V4(ip(n, 1, 1)), "::1".parse().unwrap()];
    let dns = FakeDns::start(&[(dual, &both), (other, &v4), (accel, &v4), ("example.com", &v4)]).await;
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[dual, other, accel], "inside").await;
    let p = Proxy::start(n, dns.addr, "");

    for (host, code, fix) in [
        (dual, "dualstack", "use_dualstack_endpoint = false"),
        (other, "other_region", "aws.regions"),
        (accel, "accelerate", "use_accelerate_endpoint = false"),
        ("example.com", "not_aws", "NO_PROXY"),
    ] {
        let out = curl_via(&p, &w.ca_path, &format!("https://{host}/")).await;
        assert_eq!(out.connect_status, 403, "{host}: {}", out.stderr);
        assert_ne!(out.code, 0);
        assert!(out.stderr.contains(&format!("X-Vpcgate-Reason: {code}")), "{host}: {}", out.stderr);
        let (status, text) = raw_request(p.port, &connect_req(&format!("{host}:443")));
        assert_eq!(status, 403);
        assert!(text.contains(fix), "{host}: {text}");
        let d = p.wait_event("connect", host);
        assert_eq!((d["decision"].as_str(), d["reason"].as_str()), (Some("deny"), Some(code)));
    }
    // Refused by class before any lookup: DNS never asked, and never for AAAA.
    assert_eq!(dns.count("A") + dns.count("AAAA"), 0, "{:?}", dns.queried_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_outside_routes_are_refused_and_mixed_answers_dial_only_inside() {
    let n = 13;
    let w = world();
    let outside_only = "outside.s3.us-east-1.amazonaws.com";
    let mixed = "mixed.s3.us-east-1.amazonaws.com";
    let global_in = "in.s3.amazonaws.com";
    let global_out = "out.s3.amazonaws.com";
    let names = [outside_only, mixed, global_in, global_out];
    let inside_up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &names, "inside").await;
    let outside_up = TlsUpstream::start(sa(n, 2, 1), &w.ca, &names, "outside").await;
    let dns = FakeDns::start(&[
        (outside_only, &a(&[ip(n, 2, 1)])),
        (mixed, &a(&[ip(n, 2, 1), ip(n, 1, 1)])),
        (global_in, &a(&[ip(n, 1, 1)])),
        (global_out, &a(&[ip(n, 2, 1)])),
    ])
    .await;
    let p = Proxy::start(n, dns.addr, "");

    let out = curl_via(&p, &w.ca_path, &format!("https://{outside_only}/")).await;
    assert_eq!(out.connect_status, 403, "{}", out.stderr);
    assert!(out.stderr.contains("X-Vpcgate-Reason: outside_routes"), "{}", out.stderr);
    let (_, text) = raw_request(p.port, &connect_req(&format!("{outside_only}:443")));
    assert!(text.contains(&ip(n, 2, 1).to_string()) && text.contains("test-gateway"), "names addresses and routes: {text}");

    let out = curl_via(&p, &w.ca_path, &format!("https://{mixed}/m")).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert!(out.body.contains("upstream inside saw GET /m"), "{}", out.body);
    assert_eq!(p.wait_event("connect", mixed)["chosen"], ip(n, 1, 1).to_string());

    // The legacy global name is decided by where it resolves.
    let out = curl_via(&p, &w.ca_path, &format!("https://{global_in}/g")).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(p.wait_event("connect", global_in)["class"], "legacy_global");
    let out = curl_via(&p, &w.ca_path, &format!("https://{global_out}/g")).await;
    assert_eq!(out.connect_status, 403, "{}", out.stderr);

    assert_eq!(outside_up.connections(), 0, "the outside address was never dialled");
    assert_eq!(inside_up.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_route_dials_the_endpoint_address_with_the_requested_sni() {
    let n = 14;
    let w = world();
    // The public name answers outside (a laptop over VPN cannot use the gateway endpoint); the
    // interface endpoint's name answers inside the VPC range. PrivateLink speaks TLS 1.2 only.
    let up = TlsUpstream::start_tls12_only(sa(n, 3, 5), &w.ca, &[BUCKET_HOST], "vpce").await;
    let own = format!("bucket.{ENDPOINT}");
    let foreign = "bucket.vpce-0fff-9999.s3.us-east-1.vpce.amazonaws.com";
    let inside = a(&[ip(n, 3, 5)]);
    let dns = FakeDns::start(&[(BUCKET_HOST, &a(&[ip(n, 2, 1)])), (ENDPOINT, &inside), (&own, &inside), (foreign, &inside)]).await;
    let p =
        Proxy::start(n, dns.addr, &format!("[[routes]]\nname = \"s3-vpn\"\nkind = \"interface\"\nendpoint = \"{ENDPOINT}\"\ncidrs = [\"127.{n}.3.0/24\"]\n"));
    let out = curl_via(&p, &w.ca_path, &format!("https://{BUCKET_HOST}/k")).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert!(out.body.contains(&format!("host={BUCKET_HOST} sni={BUCKET_HOST}")), "{}", out.body);
    let d = p.wait_event("connect", BUCKET_HOST);
    assert_eq!((d["route"].as_str(), d["via"].as_str()), (Some("s3-vpn"), Some(ENDPOINT)));
    assert_eq!(d["chosen"], ip(n, 3, 5).to_string());
    let c = p.wait_event("close", BUCKET_HOST);
    assert_eq!(c["tls_version"], "TLS1.2");
    assert!(c["cipher"].as_str().unwrap().contains("ECDHE"), "{c}");
    assert_eq!(up.connections(), 1);

    // The endpoint's own names are carried; another endpoint's name is not, even when its
    // addresses lie inside the route (anyone can create an endpoint whose subnet overlaps it).
    let (status, text) = raw_request(p.port, &connect_req(&format!("{own}:443")));
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw_request(p.port, &connect_req(&format!("{foreign}:443")));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("no_route_for_class") && text.contains("no interface route is configured for"), "{text}");
    assert_eq!(up.connections(), 2, "only the configured endpoint's name was dialled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_forward_secrecy_is_cut() {
    let n = 15;
    let w = world();
    let _nonfs = NonFsUpstream::start(sa(n, 1, 7), &w.ca, &[HOST]);
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 7)]))]).await;
    let p = Proxy::start(n, dns.addr, "");
    // curl offers FS and non-FS suites; the server picks TLS_RSA_WITH_AES_128_GCM_SHA256.
    let out = curl(&[
        "--proxy",
        &p.url(),
        "--cacert",
        w.ca_path.to_str().unwrap(),
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256",
        &format!("https://{HOST}/"),
    ])
    .await;
    assert_eq!(out.connect_status, 200, "the CONNECT itself is allowed: {}", out.stderr);
    assert_ne!(out.code, 0, "the handshake must fail: {}", out.stderr);
    let r = p.wait_event("handshake_refused", HOST);
    assert_eq!(r["reason"], "server_no_forward_secrecy", "{r}");
    assert_eq!((event_fields(&r), r["side"].as_str()), (HANDSHAKE_REFUSED_FIELDS.map(String::from).to_vec(), Some("upstream")), "{r}");
    assert!(r["message"].as_str().unwrap().contains("TLS_RSA_WITH_AES_128_GCM_SHA256"), "{r}");
    assert_eq!(p.wait_event("close", HOST)["end"], "server_no_forward_secrecy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_checks_sni_and_forward_secrecy() {
    let n = 16;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST, "other.s3.us-east-1.amazonaws.com"], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start(n, dns.addr, "");

    // SNI different from the CONNECT host (domain fronting at the TLS layer): cut before relaying.
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-proxy", &format!("127.0.0.1:{}", p.port), "-connect", &format!("{HOST}:443")])
        .args(["-servername", "other.s3.us-east-1.amazonaws.com", "-brief"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "openssl must fail");
    let r = p.wait_event("handshake_refused", HOST);
    assert_eq!(r["reason"], "sni_mismatch", "{r}");

    // A client that offers only non-forward-secret suites.
    let out = curl(&[
        "--proxy",
        &p.url(),
        "--cacert",
        w.ca_path.to_str().unwrap(),
        "--tls-max",
        "1.2",
        "--ciphers",
        "AES128-GCM-SHA256",
        &format!("https://{HOST}/"),
    ])
    .await;
    assert_ne!(out.code, 0);
    eventually(10, || p.log_text(), || p.events("handshake_refused").iter().any(|v| v["reason"] == "client_no_forward_secrecy").then_some(()));
    // Neither hello reached the upstream.
    assert_eq!(up.connections(), 2, "the TCP connections were dialled");
    assert_eq!(up.handshakes(), 0, "but no ClientHello was relayed");
}

/// A TLS 1.3 ClientHello record for `sni` (X25519 key share, TLS_AES_128_GCM_SHA256), with the
/// early_data extension when `early` (a client about to send 0-RTT data).
fn tls13_client_hello(sni: &str, early: bool) -> Vec<u8> {
    client_hello(&[sni], &[], early)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_announcing_early_data_is_refused_before_anything_is_relayed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 25;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start(n, dns.addr, "");
    let tunnel = |hello: Vec<u8>| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        s.write_all(connect_req(&format!("{HOST}:443")).as_bytes()).await.unwrap();
        let mut head = [0u8; 512];
        let k = s.read(&mut head).await.unwrap();
        assert!(String::from_utf8_lossy(&head[..k]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..k]));
        s.write_all(&hello).await.unwrap();
        let mut back = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back)).await.expect("the tunnel ends");
        back
    };

    // A hello announcing 0-RTT data, with that data right behind it: an alert, nothing relayed.
    let early_record = [&[23u8, 3, 3, 0, 5][..], b"early"].concat();
    let back = tunnel([tls13_client_hello(HOST, true), early_record.clone()].concat()).await;
    assert_eq!(back.first(), Some(&21), "a TLS alert record: {back:?}");
    let r = p.wait_event("handshake_refused", HOST);
    assert_eq!(r["reason"], "client_early_data", "{r}");
    assert_eq!(up.handshakes(), 0, "no ClientHello was relayed");

    // Without early_data the same hello is relayed and the upstream's ServerHello comes back,
    // also when more bytes follow the hello in the same segment (vpcgate holds those back until
    // it has checked the ServerHello).
    let back = tunnel([tls13_client_hello(HOST, false), early_record].concat()).await;
    assert_eq!(back.first(), Some(&22), "the upstream's ServerHello came back: {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_tricks_plaintext_and_ports_are_refused() {
    let n = 17;
    let w = world();
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let p = Proxy::start(n, dns.addr, "");
    for (target, status, code) in [
        (format!("127.{n}.1.1:443"), 403, "ip_literal"),
        ("[::1]:443".to_string(), 403, "ip_literal"),
        (format!("[{HOST}]:443"), 403, "ip_literal"),
        (format!("user@{HOST}:443"), 403, "userinfo"),
        (format!("{HOST}:8443"), 403, "port_not_allowed"),
        (format!("{HOST}:"), 400, "bad_authority"),
    ] {
        let (got, text) = raw_request(p.port, &connect_req(&target));
        // hyper itself answers 400 to request targets it cannot parse at all.
        if got == 400 && !text.contains("X-Vpcgate-Reason") {
            continue;
        }
        assert_eq!(got, status, "{target}: {text}");
        assert!(text.to_ascii_lowercase().contains(&format!("x-vpcgate-reason: {code}")), "{target}: {text}");
    }
    // curl to an IP literal gets a 403 from the proxy, not a TLS error.
    let out = curl_via(&p, &w.ca_path, &format!("https://127.{n}.1.1/")).await;
    assert_eq!(out.connect_status, 403, "{}", out.stderr);
    let out = curl_via(&p, &w.ca_path, &format!("https://{HOST}:8443/")).await;
    assert_eq!(out.connect_status, 403, "{}", out.stderr);
    // Plaintext HTTP through the proxy is never forwarded.
    let out = curl(&["--proxy", &p.url(), &format!("http://{HOST}/key?X-Amz-Signature=secret")]).await;
    assert_eq!(out.status, 403, "{}", out.stderr);
    assert!(out.body.contains("plaintext HTTP"), "{}", out.body);
    assert!(out.stderr.contains("X-Vpcgate-Reason: plaintext"));
    assert!(!p.log_text().contains("secret"), "query values are never logged");
    // Malformed request lines and targets get a 400 with a sentence, and the proxy keeps serving.
    for bad in ["CONNECT\r\n\r\n", "CONNECT s3.amazonaws.com:443:443 HTTP/1.1\r\n\r\n", "CONNECT  HTTP/1.1\r\n\r\n", "\x01\x02junk\r\n\r\n"] {
        let (got, text) = raw_request(p.port, bad);
        assert_eq!(got, 400, "{bad:?}: {text}");
        assert!(text.contains("X-Vpcgate-Reason: bad_request") && text.contains("send `CONNECT host:443 HTTP/1.1`"), "{bad:?}: {text}");
    }
    // The same, trickled in a few bytes at a time past what a first look sees: still a sentence,
    // not hyper's bare 400; and a head over 16 KiB, not hyper's bare 431.
    let huge = format!("CONNECT {HOST}:443 HTTP/1.1\r\nx-pad: {}\r\n\r\n", "a".repeat(20 * 1024));
    for (what, pieces) in [
        ("a bad header line, trickled", vec![format!("CONNECT {HOST}:443 HTTP/1.1\r\nHo"), "st: x\r\n".into(), "Bad Header Line\r\n\r\n".into()]),
        ("a head over 16 KiB", vec![huge]),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for piece in &pieces {
            let _ = s.write_all(piece.as_bytes());
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 400") && text.contains("X-Vpcgate-Reason: bad_request") && text.contains("send `CONNECT host:443 HTTP/1.1`"),
            "{what}: {text}"
        );
    }
    let out = curl_via(&p, &w.ca_path, &format!("https://{HOST}/still-serving")).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failures_are_502_and_the_proxy_keeps_serving() {
    let n = 18;
    let w = world();
    let silent = unreachable_dns_addr().await;
    let p = Proxy::start(n, silent, "");
    let started = Instant::now();
    let (status, text) = raw_request(p.port, &connect_req(&format!("{HOST}:443")));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("dns_failed") && text.contains(&silent.to_string()), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by dns.timeout");
    drop(p);

    // NXDOMAIN is a 502 too, and the next good request still works.
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let p = Proxy::start(n, dns.addr, "");
    let (status, text) = raw_request(p.port, &connect_req("nobucket.s3.us-east-1.amazonaws.com:443"));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("NXDOMAIN"), "{text}");
    let out = curl_via(&p, &w.ca_path, &format!("https://{HOST}/")).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tcp_connect_is_502() {
    let n = 19;
    // Inside the route, but nothing listens there.
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 9)]))]).await;
    let p = Proxy::start(n, dns.addr, "");
    let (status, text) = raw_request(p.port, &connect_req(&format!("{HOST}:443")));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("connect_failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_is_504_in_both_modes() {
    // An endpoint that never answers the SYN (a security group that drops, a VPN route that goes
    // nowhere): here a listener whose accept queue is full, so the kernel drops further SYNs.
    use tokio::io::AsyncWriteExt;
    let n = 24;
    let w = world();
    let hole = tokio::net::TcpSocket::new_v4().unwrap();
    hole.bind(sa(n, 1, 1)).unwrap();
    let hole = hole.listen(0).unwrap();
    let _queued = tokio::net::TcpStream::connect(sa(n, 1, 1)).await.unwrap();
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let extra = "[proxy]\nconnect_timeout = \"1s\"\n";

    // Passthrough dials before answering the CONNECT: the CONNECT gets the 504.
    let p = Proxy::start(n, dns.addr, extra);
    let started = Instant::now();
    let (status, text) = raw_request(p.port, &connect_req(&format!("{HOST}:443")));
    assert_eq!(status, 504, "{text}");
    assert!(text.contains("connect_timeout") && text.contains(&format!("127.{n}.1.1:443")) && text.contains("proxy.connect_timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(p);

    // Inspect dials on the first request: that request gets a 504 S3 error, which SDKs retry and print.
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, extra);
    let mut tls = tls_tunnel(p.port, HOST, client_roots(&p, true, &w)).await;
    tls.write_all(format!("GET /key HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("<Code>GatewayTimeout</Code>") && text.contains(&format!("no TCP connection to {HOST} at 127.{n}.1.1:443 within 1s")), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-vpcgate-reason: connect_timeout"), "{text}");
    drop(hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_is_503() {
    let dns = FakeDns::start(&[]).await;
    let port = free_port();
    let p = Proxy::start_with(
        port,
        &format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 1\n[dns]\nservers = [\"{}\"]\n[log]\nformat = \"json\"\n[tls]\nmode = \"passthrough\"\n[admin]\nenabled = false\n",
            dns.addr
        ),
    );
    // Let the readiness probe's connection close and give its permit back, then hold the only permit.
    std::thread::sleep(Duration::from_millis(300));
    let _held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, text) = raw_request(port, &connect_req(&format!("{HOST}:443")));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("over_capacity") && text.contains("max_connections"), "{text}");
    // max_connections applies at start only: after a reload that changes it, the refusal still
    // names the limit the proxy enforces, not the new value.
    let toml = std::fs::read_to_string(&p.config).unwrap().replace("max_connections = 1", "max_connections = 7");
    std::fs::write(&p.config, toml).unwrap();
    p.signal("HUP");
    eventually(10, || p.log_text(), || p.log_text().contains("configuration reloaded").then_some(()));
    let (status, text) = raw_request(port, &connect_req(&format!("{HOST}:443")));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("limit of 1 open connections"), "{text}");
    drop(_held);
    drop(p);
}

#[test]
fn bad_config_stops_startup_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[proxy]\nlisten = \"127.0.0.1:3999\"\nconect_timeout = \"5s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vpcgate")).arg("--config").arg(&cfg).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    assert!(err.contains("conect_timeout") && err.contains(&cfg.display().to_string()), "{err}");
    assert!(TcpStream::connect("127.0.0.1:3999").is_err(), "nothing listens");

    let out = Command::new(env!("CARGO_BIN_EXE_vpcgate")).arg("run").env("VPCGATE__DNS__TIMEOUT", "forever").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dns.timeout") && err.contains("environment"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_open_tunnels_finish() {
    let n = 21;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start(n, dns.addr, "");
    // Open a tunnel and keep it open (raw CONNECT, no TLS yet).
    let mut tunnel = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    tunnel.write_all(connect_req(&format!("{HOST}:443")).as_bytes()).unwrap();
    let mut head = [0u8; 64];
    tunnel.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let k = tunnel.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..k]).starts_with("HTTP/1.1 200"));
    p.signal("TERM");
    eventually(5, || "still accepting after SIGTERM".into(), || TcpStream::connect(("127.0.0.1", p.port)).is_err().then_some(()));
    // The open tunnel is still alive: closing it lets the process exit well before the grace period ends.
    drop(tunnel);
    let mut p = p;
    let log = p.log.clone();
    let status = eventually(
        4,
        || format!("did not exit after its last tunnel closed: {}", std::fs::read_to_string(&log).unwrap_or_default()),
        || p.child.try_wait().unwrap(),
    );
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_streams_bulk_and_ends_a_tunnel_whose_client_resets() {
    let n = 22;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start(n, dns.addr, "");

    // 200 MB through the relay (bulk bursts take the splice path on Linux).
    let size: u64 = 200_000_000;
    let out =
        curl(&["--proxy", &p.url(), "--cacert", w.ca_path.to_str().unwrap(), "-o", "/dev/null", "--max-time", "120", &format!("https://{HOST}/bytes/{size}")])
            .await;
    assert_eq!((out.code, out.status), (0, 200), "{}", out.stderr);
    let c = p.wait_event("close", HOST);
    assert!(c["bytes_down"].as_u64().unwrap() > size, "{c}");
    assert_eq!(c["end"], "closed");

    // A client that resets an established tunnel: the tunnel ends at once instead of idling.
    let tls = tls_tunnel(p.port, HOST, w.ca.root_store()).await;
    let (tcp, _) = tls.into_inner();
    #[allow(deprecated)] // SO_LINGER 0 on purpose: the drop sends a reset
    tcp.set_linger(Some(Duration::ZERO)).unwrap();
    let before = p.events("close").len();
    drop(tcp);
    let last = eventually(
        5,
        || format!("the reset tunnel stayed open: {}", p.log_text()),
        || {
            let closes = p.events("close");
            (closes.len() > before).then(|| closes.last().unwrap().clone())
        },
    );
    assert_eq!(last["end"], "reset", "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_are_closed_after_idle_timeout_in_both_modes() {
    let n = 23;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    for inspect in [false, true] {
        let extra = "[proxy]\nidle_timeout = \"1s\"\n";
        let p = if inspect { Proxy::start_inspect(n, dns.addr, &w.ca_path, extra) } else { Proxy::start(n, dns.addr, extra) };
        let port = p.port;
        let roots = client_roots(&p, inspect, &w);
        let mut tls = tls_tunnel(port, HOST, roots).await;
        let started = Instant::now();
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut tls, &mut b)).await.expect("closed within 10 s");
        assert!(matches!(r, Ok(0) | Err(_)), "the idle tunnel was closed: {r:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?} (inspect={inspect})");
        assert_eq!(p.wait_event("close", HOST)["end"], "idle_timeout", "inspect={inspect}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_ends_a_request_on_which_nothing_moves_for_idle_timeout() {
    // "No byte either way for idle_timeout" holds while a request is in flight too: an upstream
    // that never answers gets the client a 504 S3 error; one that stops mid-body, or a client that
    // stops mid-form, ends the tunnel.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 26;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "[proxy]\nidle_timeout = \"1s\"\n");
    let roots = client_roots(&p, true, &w);
    let read_all = |mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>| async move {
        let started = Instant::now();
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
        (r.is_ok(), String::from_utf8_lossy(&got).to_string(), started.elapsed())
    };

    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(format!("GET /stall-head HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let started = Instant::now();
    let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
    assert!(text.starts_with("HTTP/1.1 504") && text.contains("<Code>GatewayTimeout</Code>"), "{text}");
    assert!(text.contains("no response from") && text.contains("proxy.idle_timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(format!("GET /stall-body HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let (ended, text, waited) = read_all(tls).await;
    assert!(ended && text.starts_with("HTTP/1.1 200") && text.ends_with("0123456789"), "{ended} {text:?}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");

    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 500\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\r\n--XyZ\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (ended, text, waited) = read_all(tls).await;
    assert!(ended && waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{ended} {waited:?} {text:?}");

    // An upload that stalls after the upstream has already answered: the answer arrives, and
    // the unfinished upload still ends the tunnel.
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(format!("PUT /early HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\n0123456789").as_bytes()).await.unwrap();
    let (ended, text, waited) = read_all(tls).await;
    assert!(ended && text.starts_with("HTTP/1.1 200") && text.ends_with("ok"), "{ended} {waited:?} {text:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    eventually(10, || p.log_text(), || (p.events("close").iter().filter(|v| v["end"] == "idle_timeout").count() >= 2).then_some(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_still_gets_its_response_in_both_modes() {
    // Some clients send their request and then shut down their sending side; the response must
    // still come back whole through the tunnel (passthrough relays the FIN, inspect keeps serving).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 64;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    for inspect in [false, true] {
        let p = if inspect { Proxy::start_inspect(n, dns.addr, &w.ca_path, "") } else { Proxy::start(n, dns.addr, "") };
        let roots = client_roots(&p, inspect, &w);
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        let size = 300_000;
        tls.write_all(format!("GET /bytes/{size} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
        // close_notify, then FIN on the client's sending side; reading stays open.
        tls.shutdown().await.unwrap();
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await.expect("response within 10 s");
        let text = String::from_utf8_lossy(&got[..got.len().min(200)]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "inspect={inspect}: {r:?} {text}");
        let body = got.windows(4).position(|w| w == b"\r\n\r\n").map(|h| got.len() - h - 4);
        assert_eq!(body, Some(size), "inspect={inspect}: the whole body arrived after the half-close");
        assert_eq!(p.wait_event("close", HOST)["end"], "closed", "inspect={inspect}");

        // A client that shuts down an idle tunnel without a request: the tunnel ends now, not at
        // idle_timeout.
        let mut tls = tls_tunnel(p.port, HOST, roots).await.into_inner().0;
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "inspect={inspect}: a half-closed idle tunnel stayed open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_closes_the_connection_so_nothing_later_gets_a_bare_error() {
    use std::io::{Read, Write};
    let n = 65;
    let dns = FakeDns::start(&[]).await;
    let p = Proxy::start(n, dns.addr, "");
    let port = p.port;
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("GET http://{HOST}/key HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).unwrap();
        let mut all = Vec::new();
        // Read to the end: the connection must close after the refusal (a timeout here fails).
        s.read_to_end(&mut all).expect("the proxy closed the connection after its refusal");
        let text = String::from_utf8_lossy(&all).to_string();
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
        assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.contains("plaintext"), "{text}");
        // A second head on the same socket finds it closed: no bare hyper 400 for it.
        let _ = s.write_all(b"\x16garbage\r\n\r\n");
        let mut more = Vec::new();
        let got = s.read_to_end(&mut more).unwrap_or(0);
        assert_eq!(got, 0, "nothing more after the refusal: {}", String::from_utf8_lossy(&more));
    })
    .await
    .unwrap();
}

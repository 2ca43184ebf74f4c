//! Operating vpcgate: `explain`, `check`, the admin listener (/healthz, /readyz, /metrics) and
//! SIGHUP reload, against the loopback fake AWS. Test blocks 127.60-127.79.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::dns::{unreachable_dns_addr, FakeDns};
use support::harness::*;
use support::upstream::TlsUpstream;

const HOST: &str = "s3.us-east-1.amazonaws.com";
const BUCKET_HOST: &str = "my-bucket.s3.us-east-1.amazonaws.com";

fn vpcgate(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpcgate"));
    cmd.args(args).env_remove("RUST_LOG");
    for k in [
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE",
        "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_class_answers_routes_and_verdict() {
    let n = 60;
    let dual = "my-bucket.s3.dualstack.us-east-1.amazonaws.com";
    let mixed = "mixed.s3.us-east-1.amazonaws.com";
    let outside = "outside.s3.us-east-1.amazonaws.com";
    let dns = FakeDns::start(&[
        (BUCKET_HOST, &a(&[ip(n, 1, 1)])),
        (HOST, &a(&[ip(n, 1, 1)])),
        (mixed, &a(&[ip(n, 2, 1), ip(n, 1, 1)])),
        (outside, &a(&[ip(n, 2, 1)])),
    ])
    .await;
    let p = Proxy::start(n, dns.addr, "");
    let cfg = p.config.to_str().unwrap();

    let (code, out, _, _) = vpcgate(&["--config", cfg, "explain", BUCKET_HOST], &[]);
    eprintln!("$ vpcgate explain {BUCKET_HOST}\n{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("regional_virtual_hosted, service s3, region us-east-1"), "{out}");
    assert!(out.contains(&format!("{} (inside test-gateway 127.{n}.1.0/24)", ip(n, 1, 1))), "{out}");
    assert!(out.contains(&format!("allow: dial {}:443 via route test-gateway", ip(n, 1, 1))), "{out}");

    let (code, out, _, _) = vpcgate(&["--config", cfg, "explain", mixed], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{} (outside every route)", ip(n, 2, 1))), "{out}");

    let (code, out, _, _) = vpcgate(&["--config", cfg, "explain", "--json", outside], &[]);
    eprintln!("$ vpcgate explain --json {outside}\n{out}");
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("outside_routes")));
    assert_eq!(v["dns"][0]["addresses"][0]["addr"], ip(n, 2, 1).to_string());

    let (code, out, _, _) = vpcgate(&["--config", cfg, "explain", dual], &[]);
    eprintln!("$ vpcgate explain {dual}\n{out}");
    assert_eq!(code, 1);
    assert!(out.contains("deny (dualstack, HTTP 403)") && out.contains("use_dualstack_endpoint = false"), "{out}");
    assert_eq!(dns.count("AAAA"), 0);

    // The bucket perimeter: explain says what the proxy does (the same function decides both).
    let q = Proxy::start(n, dns.addr, "[s3]\nbuckets = [\"my-*\"]\n");
    let qcfg = q.config.to_str().unwrap();
    let (code, out, _, _) = vpcgate(&["--config", qcfg, "explain", outside], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deny (bucket_not_allowed, HTTP 403)") && out.contains("not in s3.buckets"), "{out}");
    let (code, out, _, _) = vpcgate(&["--config", qcfg, "explain", "s3.us-east-1.amazonaws.com"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bucket_hidden"), "passthrough cannot see path-style buckets: {out}");
    let (status, text) = raw_request(q.port, &connect_req(&format!("{outside}:443")));
    assert!(status == 403 && text.contains("X-Vpcgate-Reason: bucket_not_allowed"), "{text}");
    // A URL: the CONNECT and, in inspect mode, the request's own decision.
    let dir = tempfile::tempdir().unwrap();
    let icfg = dir.path().join("i.toml");
    std::fs::write(
        &icfg,
        format!(
            "[dns]\nservers = [\"{}\"]\n[s3]\nbuckets = [\"my-*\"]\n[[routes]]\nname = \"test-gateway\"\nkind = \"gateway\"\ncidrs = [\"127.{n}.1.0/24\"]\n",
            dns.addr
        ),
    )
    .unwrap();
    let icfg = icfg.to_str().unwrap();
    let (code, out, _, _) = vpcgate(&["--config", icfg, "explain", "s3://my-bucket/a/b.txt"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("target     {BUCKET_HOST}:443")) && out.contains("request    /a/b.txt (bucket my-bucket): allow"), "{out}");
    let (code, out, _, _) = vpcgate(&["--config", icfg, "explain", &format!("https://{HOST}/other/k")], &[]);
    eprintln!("$ vpcgate explain https://{HOST}/other/k\n{out}");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("request    /other/k (bucket other): deny (bucket_not_allowed, HTTP 403)"), "{out}");
    // --client NAME: that client's own list too.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$9kVZLWC8nfjNbVU+ZfzQRw$q4kvhGJgwgwS1dezM9Ko81/ZFPf6nl3B8PZpFHsct+0";
    let ccfg = dir.path().join("c.toml");
    std::fs::write(
        &ccfg,
        format!(
            "[proxy]\nauth = \"basic\"\n[[clients]]\nname = \"etl\"\npassword_hash = \"{hash}\"\nbuckets = [\"my-other-*\"]\n{}",
            std::fs::read_to_string(icfg).unwrap()
        ),
    )
    .unwrap();
    let ccfg = ccfg.to_str().unwrap();
    let (code, out, _, _) = vpcgate(&["--config", ccfg, "explain", "s3://my-bucket/k"], &[]);
    assert_eq!(code, 0, "without --client, the global list: {out}");
    let (code, out, _, _) = vpcgate(&["--config", ccfg, "explain", "--client", "etl", "s3://my-bucket/k"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bucket_not_allowed") && out.contains("my-bucket"), "{out}");
    let (code, _, err, _) = vpcgate(&["--config", ccfg, "explain", "--client", "nobody", "s3://my-bucket/k"], &[]);
    assert!(code != 0 && err.contains("no [[clients]] entry is named \"nobody\""), "{err}");

    // An unreachable DNS server: a bounded refusal, not a hang.
    let silent = unreachable_dns_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg2 = dir.path().join("v.toml");
    std::fs::write(
        &cfg2,
        format!("[dns]\nservers = [\"{silent}\"]\ntimeout = \"1s\"\n[tls]\nmode = \"passthrough\"\n[[routes]]\nname = \"g\"\nkind = \"gateway\"\ncidrs = [\"127.{n}.1.0/24\"]\n"),
    )
    .unwrap();
    let (code, out, _, took) = vpcgate(&["--config", cfg2.to_str().unwrap(), "explain", HOST], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("dns_failed") && out.contains("no answer within 1s"), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_network_and_client_setup_in_seconds() {
    let n = 61;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST, BUCKET_HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)])), (BUCKET_HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let cfg = p.config.to_str().unwrap();
    let ca = p.ca_path();
    let proxy_url = p.url();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good-config");
    std::fs::write(&good, "[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n").unwrap();
    let envs = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("AWS_CA_BUNDLE", ca.to_str().unwrap()),
        ("AWS_CONFIG_FILE", good.to_str().unwrap()),
        ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "regional"),
        ("NO_PROXY", "169.254.169.254,169.254.170.2,169.254.170.23"),
    ];
    let (code, out, err, took) = vpcgate(&["--config", cfg, "check", "--bucket", "my-bucket"], &envs);
    eprintln!("$ vpcgate check --bucket my-bucket\n{out}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    for needle in [
        &format!("pass  dns server {}", dns.addr),
        &format!("pass  {HOST} via test-gateway"),
        &format!("pass  {BUCKET_HOST} via test-gateway"),
        &format!("pass  tls {HOST}"),
        "TLS1.3",
        "(forward secret)",
        "pass  ca",
        "mode 600",
        "pass  HTTPS_PROXY",
        "pass  AWS_CA_BUNDLE",
        "pass  aws config",
        "pass  credential endpoints",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    // A dual-stack setting in the AWS config file, a wrong proxy and a missing CA bundle fail, with fixes.
    let bad = dir.path().join("bad-config");
    std::fs::write(&bad, "[default]\ns3 =\n  use_dualstack_endpoint = true\n").unwrap();
    let envs = [("HTTPS_PROXY", "http://127.0.0.1:1"), ("AWS_CONFIG_FILE", bad.to_str().unwrap())];
    let (code, out, _, _) = vpcgate(&["--config", cfg, "check"], &envs);
    eprintln!("$ vpcgate check   # wrong proxy, no CA bundle, dual-stack in the AWS config\n{out}");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAIL  aws config") && out.contains("use_dualstack_endpoint = true; set it to false"), "{out}");
    assert!(out.contains("FAIL  HTTPS_PROXY") && out.contains(&format!("export HTTPS_PROXY={proxy_url}")), "{out}");
    assert!(out.contains("FAIL  AWS_CA_BUNDLE"), "{out}");
    assert!(out.contains("WARN  us-east-1 endpoint"), "{out}");

    // An unreachable DNS server is named, and check still ends within seconds.
    let silent = unreachable_dns_addr().await;
    let cfg2 = dir.path().join("v.toml");
    std::fs::write(
        &cfg2,
        format!("[dns]\nservers = [\"{silent}\"]\ntimeout = \"5s\"\n[tls]\nmode = \"passthrough\"\n[[routes]]\nname = \"g\"\nkind = \"gateway\"\ncidrs = [\"127.{n}.1.0/24\"]\n"),
    )
    .unwrap();
    let (code, out, _, took) = vpcgate(&["--config", cfg2.to_str().unwrap(), "check"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains(&format!("FAIL  dns server {silent}")), "{out}");
    assert!(took < Duration::from_secs(8), "bounded even with dns.timeout = 5s: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_never_dials_vpcgate_s_own_admin_listener_as_the_proxy_does_not() {
    // A name answering 127.0.0.1 on a port that is both allowed and the admin listener's: the
    // proxy refuses it as self_connect, and explain (the same function, the same addresses) too.
    let name = "selfie.s3.us-east-1.amazonaws.com";
    let dns = FakeDns::start(&[(name, &a(&[std::net::Ipv4Addr::LOCALHOST]))]).await;
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{listen}\"\nconnect_ports = [443, {admin}]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nservers = [\"{}\"]\n[tls]\nmode = \"passthrough\"\n[[routes]]\nname = \"lo\"\nkind = \"gateway\"\ncidrs = [\"127.0.0.0/24\"]\n",
            dns.addr
        ),
    )
    .unwrap();
    let (code, out, err, _) = vpcgate(&["--config", cfg.to_str().unwrap(), "explain", &format!("{name}:{admin}")], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("deny (self_connect"), "{out}");
    let (code, out, _, _) = vpcgate(&["--config", cfg.to_str().unwrap(), "explain", &format!("{name}:443")], &[]);
    assert_eq!(code, 0, "another port of the same address is no listener of vpcgate's: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpcgate_runs_in_process_reloads_through_its_handle_and_stops_on_its_future() {
    // The library's server, as the binary starts it, inside this test process.
    let n = 67;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v.toml");
    let toml = |cidr: &str| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{listen}\"\nshutdown_grace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nservers = [\"{}\"]\n[tls]\nmode = \"passthrough\"\n[[routes]]\nname = \"g\"\nkind = \"gateway\"\ncidrs = [\"{cidr}\"]\n",
            dns.addr
        )
    };
    std::fs::write(&cfg, toml(&format!("127.{n}.2.0/24"))).unwrap();
    let loaded = vpcgate::config::load(&vpcgate::config::Sources { file: Some(cfg.clone()), env: Default::default() }, &[]).unwrap();
    let bound = vpcgate::server::bind(loaded).await.unwrap();
    let handle = bound.handle.clone();
    assert_eq!((handle.listen.port(), handle.admin.map(|a| a.port())), (listen, Some(admin)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    let connect = || tokio::task::spawn_blocking(move || raw_request(listen, &connect_req(&format!("{HOST}:443"))));
    let (status, text) = connect().await.unwrap();
    assert!(status == 403 && text.contains("outside_routes"), "{text}");
    // A reload through the handle, as SIGHUP does: the route now holds the upstream.
    std::fs::write(&cfg, toml(&format!("127.{n}.1.0/24"))).unwrap();
    handle.reload();
    assert_eq!(handle.state().config.routes[0].cidrs[0].to_string(), format!("127.{n}.1.0/24"));
    let (status, text) = connect().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let (s, _) = tokio::task::spawn_blocking(move || http_get(admin, "/healthz")).await.unwrap();
    assert_eq!(s, 200);
    // The stop future ends it within the grace.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("stopped within the grace").unwrap();
    assert!(TcpStream::connect(("127.0.0.1", listen)).is_err(), "nothing listens after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_ready_follows_readyz_for_in_pod_readiness_probes() {
    // DNS that never answers: alive, not ready.
    let silent = unreachable_dns_addr().await;
    let p = Proxy::start(66, silent, "");
    let cfg = p.config.to_str().unwrap();
    let (code, out, err, _) = vpcgate(&["--config", cfg, "healthcheck"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err, _) = vpcgate(&["--config", cfg, "healthcheck", "--ready"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("/readyz answered \"HTTP/1.1 503") && err.contains("not ready"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_readiness_and_metrics_after_traffic() {
    let n = 62;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST, BUCKET_HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)])), (BUCKET_HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let ca = p.ca_path();
    let url = p.url();
    let base = ["--proxy", url.as_str(), "--cacert", ca.to_str().unwrap()];
    let ok = curl(&[&base[..], &[&format!("https://{BUCKET_HOST}/a")]].concat()).await;
    assert_eq!(ok.status, 200, "{}", ok.stderr);
    let v2 = curl(&[&base[..], &["-H", "Authorization: AWS A:b", &format!("https://{BUCKET_HOST}/b")]].concat()).await;
    assert_eq!(v2.status, 403);
    // Refused inside the tunnel (proxy.refuse_in_tunnel): the CONNECT is 200, the request 403.
    let dual = curl(&[&base[..], &["https://b.s3.dualstack.us-east-1.amazonaws.com/"]].concat()).await;
    assert_eq!((dual.connect_status, dual.status), (200, 403), "{}", dual.stderr);
    p.wait_event("close", BUCKET_HOST);
    p.wait_event("close", "b.s3.dualstack.us-east-1.amazonaws.com");

    let (s, body) = http_get(p.admin_port, "/healthz");
    assert_eq!(s, 200, "{body}");
    let (code, out, err, _) = vpcgate(&["--config", p.config.to_str().unwrap(), "healthcheck"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (s, body) = http_get(p.admin_port, "/readyz");
    assert_eq!(s, 200, "{body}");
    let (code, out, err, _) = vpcgate(&["--config", p.config.to_str().unwrap(), "healthcheck", "--ready"], &[]);
    assert_eq!((code, out.trim_end().starts_with("ready")), (0, true), "{out}{err}");
    let (s, m) = http_get(p.admin_port, "/metrics");
    assert_eq!(s, 200);
    for needle in [
        "vpcgate_connections_total{decision=\"allow\",reason=\"\"} 2",
        "vpcgate_connections_total{decision=\"deny\",reason=\"dualstack\"} 1",
        "vpcgate_requests_total{signature=\"anonymous\",decision=\"allow\"} 1",
        "vpcgate_requests_total{signature=\"sigv2-header\",decision=\"deny\"} 1",
        "vpcgate_leaf_cache_total{kind=\"mint\"} 1",
        "vpcgate_leaf_cache_total{kind=\"mint_uncached\"} 1",
        "vpcgate_requests_total{signature=\"none\",decision=\"deny\"} 1",
        "vpcgate_leaf_cache_total{kind=\"hit\"}",
        "vpcgate_upstream_connections_total{kind=\"new\"} 1",
        "vpcgate_bytes_total{route=\"test-gateway\",direction=\"down\"}",
        "vpcgate_dns_lookup_seconds_count 2",
        "vpcgate_tunnels_active 0",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in:\n{m}");
    }

    // Clients that connect to the admin port and send nothing are closed after 5 s, and do not
    // take every slot for long: a probe still gets its answer.
    let idle: Vec<std::net::TcpStream> = (0..40).map(|_| std::net::TcpStream::connect(("127.0.0.1", p.admin_port)).unwrap()).collect();
    let started = std::time::Instant::now();
    let (s, body) = http_get(p.admin_port, "/healthz");
    assert_eq!(s, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(9), "the probe waited {:?}", started.elapsed());
    let mut first = idle.into_iter().next().unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 64];
    // Ok: closed (or answered 408) by vpcgate; Err: our 10 s read timeout, the connection stayed open.
    let closed = first.read(&mut b);
    assert!(closed.is_ok() && started.elapsed() < Duration::from_secs(9), "an idle admin connection stayed open: {closed:?} after {:?}", started.elapsed());
    drop(p);

    // readyz says why when DNS is not usable.
    let silent = unreachable_dns_addr().await;
    let p = Proxy::start(n, silent, "");
    let (s, body) = http_get(p.admin_port, "/readyz");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("DNS is not usable"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_good_config_refuses_bad_and_keeps_open_tunnels() {
    let n = 63;
    let w = world();
    let west = "my-bucket.s3.us-west-2.amazonaws.com";
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST, west], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)])), (west, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start(n, dns.addr, "");
    let original = std::fs::read_to_string(&p.config).unwrap();

    // An open tunnel from before the reloads.
    let mut tunnel = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    tunnel.write_all(connect_req(&format!("{HOST}:443")).as_bytes()).unwrap();
    tunnel.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 64];
    let k = tunnel.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..k]).starts_with("HTTP/1.1 200"));

    let (s, _) = raw_request(p.port, &connect_req(&format!("{west}:443")));
    assert_eq!(s, 403, "us-west-2 is not configured yet");

    // A good new config: add us-west-2; it also changes a setting only a restart applies.
    let restart_only = original.replacen("[proxy]\n", "[proxy]\nmax_connections = 77\n", 1);
    std::fs::write(&p.config, format!("{restart_only}[aws]\nregions = [\"us-east-1\", \"us-west-2\"]\n")).unwrap();
    p.signal("HUP");
    eventually(10, || p.log_text(), || p.log_text().contains("configuration reloaded").then_some(()));
    // The default (0) is sized from this machine's open-file limit, so the old value varies.
    assert!(
        p.log_text().contains("proxy.max_connections changed from ") && p.log_text().contains(" to 77, which applies only at start: restart vpcgate"),
        "the reload says what it could not apply: {}",
        p.log_text()
    );
    let (s, text) = raw_request(p.port, &connect_req(&format!("{west}:443")));
    assert_eq!(s, 200, "{text}");

    // A bad new config is refused with its sentence; the previous one keeps serving.
    std::fs::write(&p.config, format!("{original}[aws]\nregions = [\"us-east-1\", \"us-west-2\"]\nbogus = 1\n")).unwrap();
    p.signal("HUP");
    eventually(10, || p.log_text(), || p.log_text().contains("reload refused").then_some(()));
    assert!(p.log_text().contains("bogus"), "the refusal names the key");
    let (s, _) = raw_request(p.port, &connect_req(&format!("{west}:443")));
    assert_eq!(s, 200, "still the last good config");

    // A reload that changes where vpcgate may dial says exactly what it added and removed.
    let widened = original.replace(&format!("\"127.{n}.1.0/24\""), &format!("\"127.{n}.0.0/16\""));
    assert_ne!(widened, original);
    std::fs::write(&p.config, format!("{widened}[aws]\nregions = [\"us-east-1\", \"us-west-2\"]\n")).unwrap();
    p.signal("HUP");
    let line = eventually(10, || p.log_text(), || p.log_text().lines().find(|l| l.contains("cidrs_added") && l.contains("/16")).map(str::to_string));
    assert!(line.contains(&format!("test-gateway:127.{n}.0.0/16")) && line.contains(&format!("test-gateway:127.{n}.1.0/24")), "{line}");

    // The tunnel opened before both reloads is still open.
    tunnel.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 1];
    match tunnel.read(&mut b) {
        Ok(0) => panic!("the open tunnel was cut by a reload"),
        Ok(_) => panic!("unexpected bytes"),
        Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_carry_no_terminal_colour_codes() {
    // A sidecar's stderr goes to a file or a log shipper: escape codes there are noise.
    let dns = FakeDns::start(&[]).await;
    let port = free_port();
    let admin = free_port();
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[dns]\nservers = [\"{}\"]\n[log]\nformat = \"text\"\nlevel = \"info\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[tls]\nmode = \"passthrough\"\n",
        dns.addr
    );
    let p = Proxy::start_with(port, &toml);
    let text = eventually(
        5,
        || format!("no start-up line: {}", p.log_text()),
        || {
            let t = p.log_text();
            t.contains("vpcgate listening").then_some(t)
        },
    );
    assert!(!text.contains('\u{1b}'), "escape codes in a log file: {text:?}");
}

#[test]
fn a_default_start_on_a_default_limit_prints_no_warning() {
    // Soft 1024, hard 20000 (a common default): the old fixed max_connections = 10000 warned that
    // it needs 20320 open files; sized from the limit, the default fits and nothing is warned.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vpcgate.toml");
    let port = support::upstream::free_port();
    std::fs::write(&cfg, format!("[proxy]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nenabled = false\n[log]\nformat = \"json\"\n")).unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Hn 20000 2>/dev/null; ulimit -Sn 1024 && exec \"$0\" --config \"$1\" run", env!("CARGO_BIN_EXE_vpcgate"), cfg.to_str().unwrap()])
        .env_remove("VPCGATE_CONFIG")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = eventually(
        10,
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || std::fs::read_to_string(&log).ok().filter(|t| t.contains("point clients here")),
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    let _ = child.kill();
    let _ = child.wait();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).collect();
    assert!(warnings.is_empty(), "a default start warned: {warnings:#?}");
}

#[test]
fn a_low_open_file_limit_is_raised_and_named_at_start() {
    // Soft limit 100, hard 300: vpcgate raises the soft limit to 300; the default
    // proxy.max_connections (0: sized from the limit) comes to its floor, 16 tunnels, which need
    // about 2 x 16 + 256 + 64 open files: more than 300, which it says.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vpcgate.toml");
    let port = support::upstream::free_port();
    std::fs::write(
        &cfg,
        format!("[proxy]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nenabled = false\n[tls]\nmode = \"passthrough\"\n[log]\nformat = \"json\"\n"),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Sn 100 && ulimit -Hn 300 && exec \"$0\" --config \"$1\" run", env!("CARGO_BIN_EXE_vpcgate"), cfg.to_str().unwrap()])
        .env_remove("VPCGATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = eventually(10, || std::fs::read_to_string(&log).unwrap_or_default(), || std::fs::read_to_string(&log).ok().filter(|t| t.contains("open files")));
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("proxy.max_connections = 16 needs about 352 open files but this process may open 300"), "{text}");
    assert!(text.contains("ulimit -n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_loads_a_ca_replaced_in_place_and_refuses_a_broken_one() {
    // `vpcgate ca init --force` (or a rotated Kubernetes Secret) replaces the CA files at the same
    // paths: the [tls] settings are unchanged, but new leaves must come from the CA on disk.
    let n = 71;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let url = format!("https://{HOST}/rotate");
    let old_ca = p.dir.path().join("old-ca.pem");
    std::fs::copy(p.ca_path(), &old_ca).unwrap();
    let out = curl_via(&p, &old_ca, &url).await;
    assert_eq!(out.status, 200, "{}", out.stderr);

    let init = Command::new(env!("CARGO_BIN_EXE_vpcgate")).args(["--config", p.config.to_str().unwrap(), "ca", "init", "--force"]).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    assert_ne!(std::fs::read(p.ca_path()).unwrap(), std::fs::read(&old_ca).unwrap(), "ca init --force made a new CA");
    p.signal("HUP");
    eventually(10, || p.log_text(), || p.log_text().contains("the CA files changed").then_some(()));

    // New tunnels get leaves of the new CA: a client that trusts only the old one is refused by
    // its own verification, one that trusts the new one is served.
    let out = curl_via(&p, &old_ca, &url).await;
    assert_ne!(out.code, 0, "a leaf of the replaced CA: {}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    let out = curl_via(&p, &p.ca_path(), &url).await;
    assert_eq!(out.status, 200, "{}", out.stderr);

    // A CA file broken in place is refused with its sentence, and the CA in memory keeps serving.
    let good = std::fs::read(p.ca_path()).unwrap();
    std::fs::write(p.ca_path(), "not a certificate\n").unwrap();
    p.signal("HUP");
    eventually(10, || p.log_text(), || p.log_text().contains("reload refused").then_some(()));
    assert!(p.log_text().contains("ca init --force") || p.log_text().contains("CA file"), "the refusal says what to do: {}", p.log_text());
    let trusted = p.dir.path().join("new-ca.pem");
    std::fs::write(&trusted, &good).unwrap();
    let out = curl_via(&p, &trusted, &url).await;
    assert_eq!(out.status, 200, "the CA in memory still serves: {}", out.stderr);
}

//! `vpcgate audit` against a real AWS API implementation on loopback: moto in server mode (EC2 and
//! S3, pinned in integration-tests/services/setup-moto.sh) holding a VPC built by
//! integration-tests/audit/moto_vpc.py, and a small IMDSv2 of the test's own (token PUT, then
//! metadata with the token) on a loopback port. The binary runs with the standard variables
//! (AWS_ENDPOINT_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT, static keys), as an operator runs it.

#[path = "support/mod.rs"]
mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::moto::{repo, venv, Moto};

/// The VPC moto_vpc.py built: its IDs and what moto reported.
fn scenario(moto: &Moto, name: &str) -> Value {
    let out = Command::new(venv().join("bin/python"))
        .arg(repo().join("integration-tests/audit/moto_vpc.py"))
        .arg(format!("http://{}", moto.addr))
        .arg(name)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "moto_vpc.py {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("moto_vpc.py prints JSON")
}

/// An IMDSv2 on loopback: `PUT /latest/api/token` hands out a token, every GET needs it.
struct Imds {
    addr: SocketAddr,
    gets_without_token: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Imds {
    async fn start(subnet: &str, vpc: &str, address: &str) -> Imds {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mac = "0e:11:22:33:44:55";
        let values: Arc<Vec<(String, String)>> = Arc::new(vec![
            ("/latest/dynamic/instance-identity/document".into(), r#"{"accountId":"123456789012","region":"us-east-1","instanceId":"i-0abc"}"#.into()),
            ("/latest/meta-data/mac".into(), mac.into()),
            (format!("/latest/meta-data/network/interfaces/macs/{mac}/subnet-id"), subnet.into()),
            (format!("/latest/meta-data/network/interfaces/macs/{mac}/vpc-id"), vpc.into()),
            ("/latest/meta-data/local-ipv4".into(), address.into()),
        ]);
        let gets_without_token = Arc::new(AtomicUsize::new(0));
        let bad = gets_without_token.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (values, bad) = (values.clone(), bad.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (values, bad) = (values.clone(), bad.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let (status, body) = if req.method() == hyper::Method::PUT && path == "/latest/api/token" {
                                (200, "TOKEN-1".to_string())
                            } else if req.headers().get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok()) != Some("TOKEN-1") {
                                bad.fetch_add(1, Ordering::SeqCst);
                                (401, String::new())
                            } else {
                                values.iter().find(|(p, _)| *p == path).map(|(_, v)| (200, v.clone())).unwrap_or((404, String::new()))
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if status == 200 && path == "/latest/api/token" {
                                resp.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", "21600".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                });
            }
        });
        Imds { addr, gets_without_token, task }
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `vpcgate --config CONFIG audit ARGS` with only the variables given (plus PATH and HOME), so
/// that nothing of the machine's AWS setup leaks in.
fn audit(config: &str, args: &[&str], env: &[(&str, String)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpcgate.toml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vpcgate"))
        .arg("--config")
        .arg(&path)
        .arg("audit")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("vpcgate runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The standard variables pointing at moto and the fake IMDS, with moto's test keys.
fn aws_env(moto: &Moto, imds: Option<&Imds>) -> Vec<(&'static str, String)> {
    let imds = match imds {
        Some(i) => format!("http://{}", i.addr),
        // Nothing listens there: IMDS is "absent", on loopback.
        None => format!("http://127.0.0.1:{}", support::free_port()),
    };
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_ENDPOINT_URL", format!("http://{}", moto.addr)),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
    ]
}

fn cidrs(list: &Value) -> Vec<String> {
    list["entries"].as_array().unwrap().iter().map(|e| e["Cidr"].as_str().unwrap().to_string()).collect()
}

/// A config with the S3 gateway route holding `gateway` and the STS interface route of moto's
/// endpoint holding `interface`.
fn config(v: &Value, gateway: &[String], interface: &[String]) -> String {
    let q = |l: &[String]| l.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[dns]\nservers = [\"127.0.0.1:{}\"]\n[aws]\nregions = [\"us-east-1\"]\n\
         [[routes]]\nname = \"s3\"\nkind = \"gateway\"\ncidrs = [{}]\n\
         [[routes]]\nname = \"sts\"\nkind = \"interface\"\nservice = \"sts\"\nregion = \"us-east-1\"\nendpoint = {:?}\ncidrs = [{}]\n",
        support::free_port(),
        q(gateway),
        v["interface_endpoint"]["dns_entries"][0]["DnsName"].as_str().unwrap(),
        q(interface)
    )
}

fn eni_cidrs(v: &Value) -> Vec<String> {
    v["interface_endpoint"]["private_ips"].as_object().unwrap().values().map(|ip| format!("{}/32", ip.as_str().unwrap())).collect()
}

/// The line of `check` (its name), or a panic showing the whole output.
fn line<'a>(r: &'a Run, check: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| panic!("no {check:?} line in:\n{}\n{}", r.stdout, r.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proven_path_passes_and_names_each_proof() {
    let moto = Moto::start(&venv());
    let v = scenario(&moto, "good");
    let imds = Imds::start(v["subnet_id"].as_str().unwrap(), v["vpc_id"].as_str().unwrap(), "10.0.1.10").await;
    let cfg = config(&v, &cidrs(&v["s3_prefix_list"]), &eni_cidrs(&v));
    let r = tokio::task::spawn_blocking(move || audit(&cfg, &["--bucket", "audit-bucket"], &aws_env(&moto, Some(&imds)))).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (rtb, pl, vpce) =
        (v["subnet_route_table_id"].as_str().unwrap(), v["s3_prefix_list"]["id"].as_str().unwrap(), v["gateway_endpoint"]["id"].as_str().unwrap());
    let where_ = line(&r, "where");
    assert!(where_.starts_with("pass") && where_.contains(v["subnet_id"].as_str().unwrap()) && where_.contains("IMDSv2"), "{where_}");
    let table = line(&r, "route table s3");
    assert!(table.starts_with("pass") && table.contains(rtb) && table.contains(pl) && table.contains(vpce), "{table}");
    assert!(line(&r, "prefix list s3").starts_with("pass"));
    assert!(line(&r, "cidrs s3").starts_with("pass"));
    // moto gives endpoints the default policy: a warning that says what a restrictive one is.
    let policy = line(&r, "endpoint policy s3");
    assert!(policy.starts_with("WARN") && policy.contains("aws:ResourceOrgID"), "{policy}");
    for check in ["endpoint sts", "addresses sts", "dns names sts"] {
        assert!(line(&r, check).starts_with("pass"), "{}", line(&r, check));
    }
    // The endpoint's group admits 443 from 10.0.0.0/16, and IMDS said this host is 10.0.1.10.
    let sg = line(&r, "security group sts");
    assert!(sg.starts_with("pass") && sg.contains("10.0.1.10"), "{sg}");
    let bucket = line(&r, "bucket audit-bucket");
    assert!(bucket.starts_with("pass") && bucket.contains("aws:SourceVpce") && bucket.contains(vpce), "{bucket}");
    assert!(r.stdout.contains(" 0 failed"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_route_fails_naming_the_table_the_list_and_the_endpoint() {
    let moto = Moto::start(&venv());
    let v = scenario(&moto, "no-route");
    let imds = Imds::start(v["subnet_id"].as_str().unwrap(), v["vpc_id"].as_str().unwrap(), "10.0.1.10").await;
    let cfg = config(&v, &cidrs(&v["s3_prefix_list"]), &eni_cidrs(&v));
    let env = aws_env(&moto, Some(&imds));
    let r = tokio::task::spawn_blocking(move || audit(&cfg, &["--json"], &env)).await.unwrap();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).expect("--json prints one object");
    let table = report["lines"].as_array().unwrap().iter().find(|l| l["check"] == "route table s3").expect("a route table line");
    assert_eq!(table["level"], "fail");
    let detail = table["detail"].as_str().unwrap();
    for id in [v["subnet_route_table_id"].as_str().unwrap(), v["s3_prefix_list"]["id"].as_str().unwrap(), v["gateway_endpoint"]["id"].as_str().unwrap()] {
        assert!(detail.contains(id), "{id} missing from {detail}");
    }
    assert!(detail.contains("leave by the internet or NAT gateway"), "{detail}");
    assert!(report["proofs"].as_array().unwrap().is_empty());
    assert_eq!(imds.gets_without_token.load(Ordering::SeqCst), 0, "metadata was asked without an IMDSv2 token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_table_counts_and_drift_and_open_buckets_fail() {
    let moto = Moto::start(&venv());
    let v = scenario(&moto, "main-table");
    let subnet = v["subnet_id"].as_str().unwrap().to_string();
    let mut gateway = cidrs(&v["s3_prefix_list"]);
    let env = aws_env(&moto, None);
    // --subnet instead of IMDS (which is absent here): the subnet has no table of its own.
    let cfg = config(&v, &gateway, &eni_cidrs(&v));
    let (s, e) = (subnet.clone(), env.clone());
    let r = tokio::task::spawn_blocking(move || audit(&cfg, &["--subnet", &s, "--region", "us-east-1"], &e)).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let table = line(&r, "route table s3");
    assert!(table.starts_with("pass") && table.contains("main table") && table.contains(v["main_route_table_id"].as_str().unwrap()), "{table}");

    // The route's CIDRs drift from the list: one added, one gone.
    let gone = gateway.remove(0);
    gateway.push("198.18.0.0/15".into());
    // The STS route misses the endpoint's address: vpcgate would refuse it.
    let cfg = config(&v, &gateway, &["10.255.0.0/24".to_string()]);
    let (s, e) = (subnet.clone(), env.clone());
    let r = tokio::task::spawn_blocking(move || audit(&cfg, &["--subnet", &s, "--bucket", "open-bucket"], &e)).await.unwrap();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let drift = line(&r, "cidrs s3");
    assert!(drift.starts_with("FAIL") && drift.contains("198.18.0.0/15") && drift.contains(&gone), "{drift}");
    assert!(line(&r, "addresses sts").starts_with("FAIL"), "{}", line(&r, "addresses sts"));
    let open = line(&r, "bucket open-bucket");
    assert!(open.starts_with("FAIL") && open.contains("no bucket policy"), "{open}");
    // No IMDS and --subnet given: audit never waited on metadata.
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_or_api_it_says_why_and_exits_2() {
    let moto = Moto::start(&venv());
    let v = scenario(&moto, "good");
    let cfg = config(&v, &cidrs(&v["s3_prefix_list"]), &eni_cidrs(&v));
    let subnet = v["subnet_id"].as_str().unwrap().to_string();

    // No credentials anywhere (IMDS disabled for the chain too).
    let no_keys: Vec<(&str, String)> = vec![("AWS_EC2_METADATA_DISABLED", "true".into()), ("AWS_ENDPOINT_URL", format!("http://{}", moto.addr))];
    let (c, s) = (cfg.clone(), subnet.clone());
    let r = tokio::task::spawn_blocking(move || audit(&c, &["--subnet", &s], &no_keys)).await.unwrap();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no AWS credentials") && r.took < Duration::from_secs(15), "{:?} {}", r.took, r.stderr);

    // The API is down: a closed loopback port.
    let mut down = aws_env(&moto, None);
    down[2].1 = format!("http://127.0.0.1:{}", support::free_port());
    let (c, s) = (cfg.clone(), subnet.clone());
    let r = tokio::task::spawn_blocking(move || audit(&c, &["--subnet", &s], &down)).await.unwrap();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot ask the EC2 API") && r.took < Duration::from_secs(15), "{:?} {}", r.took, r.stderr);

    // No override: the regional EC2 name is decided like a CONNECT, and no route carries ec2, so
    // audit refuses to take the public path (and sends nothing anywhere).
    let mut regional = aws_env(&moto, None);
    regional.remove(2);
    let (c, s) = (cfg.clone(), subnet.clone());
    let r = tokio::task::spawn_blocking(move || audit(&c, &["--subnet", &s], &regional)).await.unwrap();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("would not ride a private route") && r.stderr.contains("--public-api"), "{}", r.stderr);

    // Plain http to a host that is not loopback would send signed requests in the clear.
    let mut clear = aws_env(&moto, None);
    clear[2].1 = "http://ec2.example.internal:8080".into();
    let r = tokio::task::spawn_blocking(move || audit(&cfg, &["--subnet", &subnet], &clear)).await.unwrap();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("in the clear"), "{}", r.stderr);
}

// ---- Routes that follow a prefix list (`prefix_list = …`), against moto's EC2 ----

/// boto3 against moto: run `code` with `ec2` bound to a client; its stdout.
fn boto(moto: &Moto, code: &str) -> String {
    let script = format!(
        "import boto3, json\nec2 = boto3.client('ec2', endpoint_url='http://{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}\n",
        moto.addr
    );
    let out = Command::new(venv().join("bin/python")).arg("-c").arg(script).env("AWS_CONFIG_FILE", "/dev/null").output().expect("python runs");
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Move a customer-managed list's entries: add and remove CIDRs at its current version.
fn modify_list(moto: &Moto, id: &str, add: &[&str], remove: &[&str]) {
    let entries = |l: &[&str]| l.iter().map(|c| format!("{{'Cidr': '{c}'}}")).collect::<Vec<_>>().join(", ");
    boto(
        moto,
        &format!(
            "v = ec2.describe_managed_prefix_lists(PrefixListIds=['{id}'])['PrefixLists'][0]['Version']\n\
             ec2.modify_managed_prefix_list(PrefixListId='{id}', CurrentVersion=v, AddEntries=[{}], RemoveEntries=[{}])",
            entries(add),
            entries(remove)
        ),
    );
}

/// Something listening on `addr` (passthrough dials before its 200), holding what it accepts.
async fn hold(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    })
}

const B1: &str = "follow-one.s3.us-east-1.amazonaws.com";
const B2: &str = "follow-two.s3.us-east-1.amazonaws.com";

fn follow_config(port: u16, admin: u16, dns: SocketAddr, list: &str, cache: &std::path::Path) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nservers = [\"{dns}\"]\ntimeout = \"1s\"\n\
         [aws]\nregions = [\"us-east-1\"]\n[log]\nformat = \"json\"\n[tls]\nmode = \"passthrough\"\n\
         [[routes]]\nname = \"s3\"\nkind = \"gateway\"\nprefix_list = \"{list}\"\nrefresh = \"1s\"\ncache_file = \"{}\"\n",
        cache.display()
    )
}

fn proxy_env(api: String) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_ENDPOINT_URL", api),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

fn connect_status(port: u16, host: &str) -> u16 {
    support::harness::raw_request(port, &support::harness::connect_req(&format!("{host}:443"))).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_prefix_list_moves_the_route_without_a_restart() {
    use std::net::{IpAddr, Ipv4Addr};
    use support::harness::{eventually, http_get, Proxy};
    let moto = Moto::start(&venv());
    let id = boto(
        &moto,
        "print(ec2.create_managed_prefix_list(PrefixListName='corp-s3', AddressFamily='IPv4', MaxEntries=10, Entries=[{'Cidr': '127.100.1.0/24'}])['PrefixList']['PrefixListId'])",
    );
    let one = IpAddr::V4(Ipv4Addr::new(127, 100, 1, 1));
    let two = IpAddr::V4(Ipv4Addr::new(127, 100, 2, 1));
    // The regional name answers too: /readyz asks DNS for it.
    let regional = IpAddr::V4(Ipv4Addr::new(127, 100, 9, 9));
    let dns = support::FakeDns::start(&[(B1, &[one]), (B2, &[two]), ("s3.us-east-1.amazonaws.com", &[regional])]).await;
    let _h1 = hold(SocketAddr::new(one, 443)).await;
    let _h2 = hold(SocketAddr::new(two, 443)).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("state/prefix-list-s3.json");
    let (port, admin) = (support::free_port(), support::free_port());
    let cfg = follow_config(port, admin, dns.addr, &id, &cache);
    let api = format!("http://{}", moto.addr);

    let p = {
        let (cfg, env) = (cfg.clone(), proxy_env(api.clone()));
        tokio::task::spawn_blocking(move || Proxy::start_with_env(port, &cfg, &env)).await.unwrap()
    };
    let ready = tokio::task::spawn_blocking(move || eventually(10, || "never ready".into(), || (http_get(admin, "/readyz").0 == 200).then_some(()))).await;
    assert!(ready.is_ok(), "{}", p.log_text());
    let statuses = move || (connect_status(port, B1), connect_status(port, B2));
    assert_eq!(tokio::task::spawn_blocking(statuses).await.unwrap(), (200, 403), "{}", p.log_text());
    assert!(cache.exists(), "the first fetch writes the cache file");

    // The list moves: the running proxy follows within a refresh, without a restart.
    modify_list(&moto, &id, &["127.100.2.0/24"], &["127.100.1.0/24"]);
    let moved =
        tokio::task::spawn_blocking(move || eventually(10, || "the route did not follow the list".into(), || (statuses() == (403, 200)).then_some(()))).await;
    assert!(moved.is_ok(), "{}", p.log_text());
    let ev = p.events("route_refresh").into_iter().find(|e| e["result"] == "changed" && e["cidrs_added"].as_str().unwrap_or("").contains("127.100.2.0/24"));
    let ev = ev.unwrap_or_else(|| panic!("no route_refresh event for the change:\n{}", p.log_text()));
    assert!(ev["cidrs_removed"].as_str().unwrap().contains("127.100.1.0/24") && ev["prefix_list"] == id.as_str(), "{ev}");
    let metrics = http_get(admin, "/metrics").1;
    assert!(metrics.contains("vpcgate_route_refreshes_total{route=\"s3\",result=\"changed\"}"), "{metrics}");

    // Entries wider than any route may hold are refused: the previous set keeps serving.
    modify_list(&moto, &id, &["10.0.0.0/7"], &[]);
    let refused = {
        let log = p.log.clone();
        tokio::task::spawn_blocking(move || {
            eventually(
                10,
                || "no refused refresh".into(),
                || std::fs::read_to_string(&log).unwrap().lines().find(|l| l.contains("\"route_refresh\"") && l.contains("\"refused\"")).map(str::to_string),
            )
        })
        .await
        .unwrap()
    };
    assert!(refused.contains("10.0.0.0/7") && refused.contains("keeps its 1 CIDRs"), "{refused}");
    assert_eq!(tokio::task::spawn_blocking(statuses).await.unwrap(), (403, 200));
    drop(p);

    // A restart while AWS cannot be asked starts from the cache file, and says how old it is.
    let down = format!("http://127.0.0.1:{}", support::free_port());
    let p = {
        let (cfg, env) = (cfg.clone(), proxy_env(down.clone()));
        tokio::task::spawn_blocking(move || Proxy::start_with_env(port, &cfg, &env)).await.unwrap()
    };
    assert_eq!(tokio::task::spawn_blocking(statuses).await.unwrap(), (403, 200), "{}", p.log_text());
    let log = p.log.clone();
    let failed = tokio::task::spawn_blocking(move || {
        eventually(
            10,
            || "no failed refresh".into(),
            || std::fs::read_to_string(&log).unwrap().lines().find(|l| l.contains("\"route_refresh\"") && l.contains("\"failed\"")).map(str::to_string),
        )
    })
    .await
    .unwrap();
    assert!(failed.contains("s ago") && failed.contains(&id), "{failed}");
    drop(p);

    // No cache and no AWS: the route carries nothing (fail closed) and /readyz says why.
    std::fs::remove_file(&cache).unwrap();
    let p = {
        let env = proxy_env(down);
        tokio::task::spawn_blocking(move || Proxy::start_with_env(port, &cfg, &env)).await.unwrap()
    };
    let (status, body) = tokio::task::spawn_blocking(move || {
        eventually(10, || "readyz never named the route".into(), || Some(http_get(admin, "/readyz")).filter(|(_, b)| b.contains("cannot connect")))
    })
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("route s3 has no CIDRs") && body.contains(&id), "{body}");
    assert_eq!(tokio::task::spawn_blocking(statuses).await.unwrap(), (403, 403), "{}", p.log_text());
}

// ---- audit.require = "route_table": the running proxy rests its gateway routes on the proof ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_route_table_refuses_until_the_route_table_proves_it() {
    use std::net::{IpAddr, Ipv4Addr};
    use support::harness::{eventually, http_get, Proxy};
    let moto = Moto::start(&venv());
    let v = scenario(&moto, "no-route");
    let imds = Imds::start(v["subnet_id"].as_str().unwrap(), v["vpc_id"].as_str().unwrap(), "10.0.1.10").await;
    let bucket = IpAddr::V4(Ipv4Addr::new(127, 101, 1, 1));
    let regional = IpAddr::V4(Ipv4Addr::new(127, 101, 9, 9));
    let dns = support::FakeDns::start(&[(B1, &[bucket]), ("s3.us-east-1.amazonaws.com", &[regional])]).await;
    let _held = hold(SocketAddr::new(bucket, 443)).await;
    let (port, admin) = (support::free_port(), support::free_port());
    let cfg = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n\
         [aws]\nregions = [\"us-east-1\"]\n[log]\nformat = \"json\"\n[tls]\nmode = \"passthrough\"\n\
         [audit]\nrequire = \"route_table\"\ninterval = \"1s\"\n\
         [[routes]]\nname = \"s3\"\nkind = \"gateway\"\ncidrs = [\"127.101.1.0/24\"]\n",
        dns.addr
    );
    let mut env = proxy_env(format!("http://{}", moto.addr));
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://{}", imds.addr)));
    let p = tokio::task::spawn_blocking(move || Proxy::start_with_env(port, &cfg, &env)).await.unwrap();
    let (rtb, pl, vpce) = (
        v["subnet_route_table_id"].as_str().unwrap().to_string(),
        v["s3_prefix_list"]["id"].as_str().unwrap().to_string(),
        v["gateway_endpoint"]["id"].as_str().unwrap().to_string(),
    );

    // The subnet's table has no route for the list: not ready, and the gateway route carries nothing.
    let r = rtb.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        eventually(10, || "readyz never named the route table".into(), || Some(http_get(admin, "/readyz")).filter(|(_, b)| b.contains(&r)))
    })
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not proven private") && body.contains(&pl), "{body}");
    assert_eq!(tokio::task::spawn_blocking(move || connect_status(port, B1)).await.unwrap(), 403);
    let refused = p.wait_event("connect", B1);
    assert_eq!(refused["reason"], "route_unproven", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("route table does not send"), "{refused}");
    assert!(http_get(admin, "/metrics").1.contains("vpcgate_route_proof{route=\"s3\"} 0"));

    // Fixed in AWS: ready again and allowed, without a restart; the connect line names the proof.
    boto(&moto, &format!("ec2.create_route(RouteTableId='{rtb}', DestinationPrefixListId='{pl}', GatewayId='{vpce}')"));
    let ready =
        tokio::task::spawn_blocking(move || eventually(10, || "never ready after the fix".into(), || (http_get(admin, "/readyz").0 == 200).then_some(())))
            .await;
    assert!(ready.is_ok(), "{}", p.log_text());
    assert_eq!(tokio::task::spawn_blocking(move || connect_status(port, B1)).await.unwrap(), 200, "{}", p.log_text());
    let allowed = p.events("connect").into_iter().find(|e| e["decision"] == "allow").expect("an allowed connect line");
    let proof = allowed["proof"].as_str().unwrap();
    assert!(proof.contains(&rtb) && proof.contains(&pl) && proof.contains(&vpce) && proof.contains("proven_at="), "{proof}");
    assert!(http_get(admin, "/metrics").1.contains("vpcgate_route_proof{route=\"s3\"} 1"));
}

// ---- Interface routes that follow their endpoint (`endpoint_id = …`) ----

/// Something listening on `addr` that counts (and holds) what it accepts.
async fn count_accepts(addr: SocketAddr) -> Arc<AtomicUsize> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    n
}

const STS: &str = "sts.us-east-1.amazonaws.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_route_follows_its_endpoints_network_interfaces() {
    use std::net::{IpAddr, Ipv4Addr};
    use support::harness::{eventually, http_get, Proxy};
    let moto = Moto::start(&venv());
    // An STS interface endpoint in moto, its network interface given a loopback address (moto
    // gives it a random 10.x one as well, which nothing here answers).
    let made: Value = serde_json::from_str(&boto(
        &moto,
        "vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']\n\
         subnet = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24')['Subnet']['SubnetId']\n\
         e = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName='com.amazonaws.us-east-1.sts', VpcEndpointType='Interface', SubnetIds=[subnet])['VpcEndpoint']\n\
         eni = e['NetworkInterfaceIds'][0]\n\
         ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, PrivateIpAddresses=['127.102.3.5'])\n\
         print(json.dumps({'id': e['VpcEndpointId'], 'eni': eni, 'dns': e['DnsEntries'][0]['DnsName']}))",
    ))
    .unwrap();
    let (id, eni, name) = (made["id"].as_str().unwrap().to_string(), made["eni"].as_str().unwrap().to_string(), made["dns"].as_str().unwrap().to_string());
    let (three, four) = (Ipv4Addr::new(127, 102, 3, 5), Ipv4Addr::new(127, 102, 4, 5));
    // The endpoint's name answers both addresses; vpcgate dials the first its route holds.
    // The regional S3 name answers too: /readyz asks DNS for it.
    let regional = IpAddr::V4(Ipv4Addr::new(127, 102, 200, 1));
    let dns = support::FakeDns::start(&[(name.as_str(), &[IpAddr::V4(three), IpAddr::V4(four)]), ("s3.us-east-1.amazonaws.com", &[regional])]).await;
    let at_three = count_accepts(SocketAddr::from((three, 443))).await;
    let at_four = count_accepts(SocketAddr::from((four, 443))).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("state/endpoint-sts.json");
    let (port, admin) = (support::free_port(), support::free_port());
    let cfg = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n\
         [aws]\nregions = [\"us-east-1\"]\ncache_dir = \"{}\"\n[log]\nformat = \"json\"\n[tls]\nmode = \"passthrough\"\n\
         [[routes]]\nname = \"s3\"\nkind = \"gateway\"\ncidrs = [\"127.102.200.0/24\"]\n\
         [[routes]]\nname = \"sts\"\nkind = \"interface\"\nservice = \"sts\"\nendpoint = \"{name}\"\nendpoint_id = \"{id}\"\nrefresh = \"1s\"\n",
        dns.addr,
        work.path().join("state").display()
    );
    let p = {
        let env = proxy_env(format!("http://{}", moto.addr));
        tokio::task::spawn_blocking(move || Proxy::start_with_env(port, &cfg, &env)).await.unwrap()
    };
    let ready = tokio::task::spawn_blocking(move || eventually(10, || "never ready".into(), || (http_get(admin, "/readyz").0 == 200).then_some(()))).await;
    assert!(ready.is_ok(), "{}", p.log_text());
    assert_eq!(tokio::task::spawn_blocking(move || connect_status(port, STS)).await.unwrap(), 200, "{}", p.log_text());
    // The listener counts its accept on its own task: wait for it.
    let counts = (at_three.clone(), at_four.clone());
    let dialled = tokio::task::spawn_blocking(move || {
        eventually(5, || "the endpoint's address was not dialled".into(), || (counts.0.load(Ordering::SeqCst) == 1).then_some(counts.1.load(Ordering::SeqCst)))
    })
    .await
    .unwrap();
    assert_eq!(dialled, 0, "only the endpoint's address is dialled");
    let first = p.events("route_refresh").into_iter().find(|e| e["result"] == "changed").expect("a route_refresh line for the first fetch");
    assert!(first["endpoint_id"] == id.as_str() && first["cidrs_added"].as_str().unwrap().contains("sts:127.102.3.5/32"), "{first}");
    let cached = std::fs::read_to_string(&cache).expect("the first fetch writes the cache file");
    assert!(cached.contains(&id) && cached.contains("127.102.3.5/32"), "{cached}");

    // The interface moves to another address: within a refresh the old one is outside the route.
    boto(
        &moto,
        &format!(
            "ec2.assign_private_ip_addresses(NetworkInterfaceId='{eni}', PrivateIpAddresses=['127.102.4.5'])\n\
             ec2.unassign_private_ip_addresses(NetworkInterfaceId='{eni}', PrivateIpAddresses=['127.102.3.5'])"
        ),
    );
    let c = at_four.clone();
    let moved = tokio::task::spawn_blocking(move || {
        eventually(10, || "the route did not follow the interface".into(), || (connect_status(port, STS) == 200 && c.load(Ordering::SeqCst) > 0).then_some(()))
    })
    .await;
    assert!(moved.is_ok(), "{}", p.log_text());
    let (before, moved_before) = (at_three.load(Ordering::SeqCst), at_four.load(Ordering::SeqCst));
    assert_eq!(tokio::task::spawn_blocking(move || connect_status(port, STS)).await.unwrap(), 200);
    let c = at_four.clone();
    let _ = tokio::task::spawn_blocking(move || {
        eventually(5, || "no accept at the new address".into(), || (c.load(Ordering::SeqCst) > moved_before).then_some(()))
    })
    .await;
    assert_eq!(at_three.load(Ordering::SeqCst), before, "nothing dials the address the endpoint gave up");
    let ev = p.events("route_refresh").into_iter().find(|e| e["cidrs_removed"].as_str().unwrap_or("").contains("127.102.3.5/32"));
    let ev = ev.unwrap_or_else(|| panic!("no route_refresh line for the move:\n{}", p.log_text()));
    assert!(ev["result"] == "changed" && ev["cidrs_added"].as_str().unwrap().contains("127.102.4.5/32"), "{ev}");

    // The endpoint is deleted: the route is withdrawn (its addresses may be anyone's now), not kept.
    boto(&moto, &format!("ec2.delete_vpc_endpoints(VpcEndpointIds=['{id}'])"));
    let (status, body) = tokio::task::spawn_blocking(move || {
        eventually(10, || "readyz never said the endpoint was withdrawn".into(), || Some(http_get(admin, "/readyz")).filter(|(_, b)| b.contains("withdrew")))
    })
    .await
    .unwrap();
    assert!(status == 503 && body.contains("route sts has no CIDRs: AWS withdrew its endpoint") && body.contains(&id), "{status} {body}");
    let before = (at_three.load(Ordering::SeqCst), at_four.load(Ordering::SeqCst));
    assert_eq!(tokio::task::spawn_blocking(move || connect_status(port, STS)).await.unwrap(), 403, "{}", p.log_text());
    assert_eq!((at_three.load(Ordering::SeqCst), at_four.load(Ordering::SeqCst)), before, "nothing dials a withdrawn endpoint");
    let gone = p.events("route_refresh").into_iter().find(|e| e["result"] == "withdrawn").expect("a withdrawn route_refresh line");
    assert!(gone["message"].as_str().unwrap().contains("deleted") && gone["cidrs"] == 0, "{gone}");
    assert!(!cache.exists(), "a withdrawn endpoint's cache file is removed");
    assert!(http_get(admin, "/metrics").1.contains("vpcgate_route_refreshes_total{route=\"sts\",result=\"withdrawn\"}"));
}

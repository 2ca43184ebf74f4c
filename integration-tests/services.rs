//! AWS services beyond S3 through vpcgate, with real clients against real implementations on
//! loopback: boto3 (pinned, integration-tests/services/setup-moto.sh) talks to moto in server
//! mode (STS, DynamoDB) behind a TLS front holding a certificate for the AWS names, and to the
//! signature-checking S3 stand-in (s3s) for the S3 leg.
//!
//! Each test has its own 127.N.0.0/16 (N = 90-93; the other test files use other blocks): S3 at 127.N.1.1 (gateway route `s3`), STS's interface
//! endpoint at 127.N.2.1 (interface route `sts`, resolved through the endpoint's `vpce-…` name;
//! the regional name itself answers 127.N.9.9, outside every route), DynamoDB at 127.N.3.1
//! (gateway route `ddb` with `service = "dynamodb"`).

#[path = "support/mod.rs"]
mod support;

use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::dns::FakeDns;
use support::harness::*;
use support::moto::{repo, venv, Moto};
use support::s3::{FakeS3, ACCESS_KEY, SECRET_KEY};
use support::upstream::TestCa;

const STS: &str = "sts.us-east-1.amazonaws.com";
const STS_ENDPOINT: &str = "vpce-0sts0123456789abc-k4q1nq2d.sts.us-east-1.vpce.amazonaws.com";
const DDB: &str = "dynamodb.us-east-1.amazonaws.com";
const DDB_ACCOUNT: &str = "123456789012.ddb.us-east-1.amazonaws.com";
const S3: &str = "s3.us-east-1.amazonaws.com";

/// A TLS endpoint for AWS names in front of a plaintext backend (moto): TLS 1.2/1.3, ALPN
/// http/1.1, a leaf for `names` from the test CA; bytes copied both ways after the handshake.
struct TlsFront {
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(bind: SocketAddr, ca: &TestCa, names: &[&str], backend: SocketAddr) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        let (cert, key) = ca.leaf(names);
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                });
            }
        });
        TlsFront { connections, task }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything one test needs: the fake AWS on 127.N.0.0/16 and the DNS server that names it.
struct Lab {
    n: u8,
    w: World,
    venv: PathBuf,
    s3: FakeS3,
    sts: TlsFront,
    ddb: TlsFront,
    dns: FakeDns,
    _moto: Moto,
    work: tempfile::TempDir,
}

impl Lab {
    async fn new(n: u8) -> Lab {
        let venv = venv();
        let w = world();
        let work = tempfile::tempdir().unwrap();
        let moto = Moto::start(&venv);
        let s3 = FakeS3::start_trusting(sa(n, 1, 1), &w.ca, &[S3, "*.s3.us-east-1.amazonaws.com"], work.path().join("keys")).await;
        let sts = TlsFront::start(sa(n, 2, 1), &w.ca, &[STS, "sts.amazonaws.com", STS_ENDPOINT], moto.addr).await;
        let ddb = TlsFront::start(sa(n, 3, 1), &w.ca, &[DDB, DDB_ACCOUNT, "dynamodb.eu-west-1.amazonaws.com"], moto.addr).await;
        let at = |sub: u8, host: u8| vec![IpAddr::V4(ip(n, sub, host))];
        let names: Vec<(String, Vec<IpAddr>)> = vec![
            (S3.into(), at(1, 1)),
            (format!("svc-bucket-false.{S3}"), at(1, 1)),
            (format!("svc-bucket-true.{S3}"), at(1, 1)),
            (STS_ENDPOINT.into(), at(2, 1)),
            // The regional STS name answers a public address: only the endpoint's name is private.
            (STS.into(), at(9, 9)),
            ("sts.amazonaws.com".into(), at(2, 1)),
            (DDB.into(), at(3, 1)),
            (DDB_ACCOUNT.into(), at(3, 1)),
            ("dynamodb.eu-west-1.amazonaws.com".into(), at(3, 1)),
            // A service no route carries, answering inside the S3 route.
            ("kms.us-east-1.amazonaws.com".into(), at(1, 1)),
        ];
        let records: Vec<(&str, &[IpAddr])> = names.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let dns = FakeDns::start(&records).await;
        Lab { n, w, venv, s3, sts, ddb, dns, _moto: moto, work }
    }

    fn routes(&self) -> String {
        let n = self.n;
        format!(
            "[[routes]]\nname = \"s3\"\nkind = \"gateway\"\ncidrs = [\"127.{n}.1.0/24\"]\n\
             [[routes]]\nname = \"sts\"\nkind = \"interface\"\nendpoint = \"{STS_ENDPOINT}\"\ncidrs = [\"127.{n}.2.0/24\"]\n\
             [[routes]]\nname = \"ddb\"\nkind = \"gateway\"\nservice = \"dynamodb\"\ncidrs = [\"127.{n}.3.0/24\"]\n"
        )
    }

    fn proxy(&self, inspect: bool) -> Proxy {
        if inspect {
            Proxy::start_inspect(self.n, self.dns.addr, &self.w.ca_path, &self.routes())
        } else {
            Proxy::start(self.n, self.dns.addr, &self.routes())
        }
    }

    /// Run one case of aws_case.py through `p` with a user's environment plus `extra`; its JSON line.
    async fn boto3(&self, p: &Proxy, inspect: bool, args: &[&str], extra: &[(&str, &str)]) -> Value {
        let ca = if inspect { p.ca_path() } else { self.w.ca_path.clone() };
        let home = self.work.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = tokio::process::Command::new(self.venv.join("bin/python"));
        cmd.arg(repo().join("integration-tests/services/aws_case.py")).args(args).env_clear().kill_on_drop(true);
        for (k, v) in [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", home.display().to_string()),
            ("HTTPS_PROXY", p.url()),
            ("https_proxy", p.url()),
            ("AWS_CA_BUNDLE", ca.display().to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "regional".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", self.work.path().join("no-config").display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", self.work.path().join("no-credentials").display().to_string()),
            ("AWS_MAX_ATTEMPTS", "1".into()),
        ] {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(90), cmd.output()).await.expect("boto3 finished within 90 s").expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap_or_else(|_| {
            panic!("aws_case.py {args:?} printed no JSON line:\n{stdout}\n{}\nvpcgate:\n{}", String::from_utf8_lossy(&out.stderr), p.log_text())
        })
    }

    fn static_keys(&self) -> [(&'static str, &'static str); 2] {
        [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)]
    }
}

/// The connect event for `host` (allowed or refused), waited for.
fn connect_of(p: &Proxy, host: &str) -> Value {
    p.wait_event("connect", host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_web_identity_gets_credentials_from_sts_then_uses_s3_in_both_modes() {
    let lab = Lab::new(90).await;
    let token = lab.work.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2ln").unwrap();
    for inspect in [false, true] {
        let p = lab.proxy(inspect);
        let before = lab.sts.connections();
        let started = Instant::now();
        let v = lab
            .boto3(
                &p,
                inspect,
                &["web-identity", &format!("svc-bucket-{inspect}"), lab.work.path().join("keys").to_str().unwrap()],
                &[
                    ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
                    ("AWS_ROLE_SESSION_NAME", "vpcgate-test"),
                    ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                ],
            )
            .await;
        assert_eq!(v["ok"], true, "inspect={inspect}: {v}\n{}", p.log_text());
        assert_eq!(v["body"], "private route");
        // The credentials are STS's (moto issues temporary ASIA… keys with a session token) ...
        let key = v["access_key"].as_str().unwrap();
        let session_token = v["token"].as_str().unwrap_or("");
        assert!(key.starts_with("ASIA") && !session_token.is_empty(), "{v}");
        // ... fetched through the STS interface route (the endpoint's name, not the public answer) ...
        let c = connect_of(&p, STS);
        assert_eq!((c["decision"].as_str(), c["route"].as_str()), (Some("allow"), Some("sts")), "{c}");
        assert_eq!((c["chosen"].as_str(), c["via"].as_str()), (Some(ip(lab.n, 2, 1).to_string().as_str()), Some(STS_ENDPOINT)), "{c}");
        assert!(lab.sts.connections() > before, "the STS endpoint saw the call");
        // ... and the S3 stand-in verified SigV4 with that key and saw its session token.
        let put = lab
            .s3
            .requests()
            .into_iter()
            .find(|r| r.method == "PUT" && r.path.ends_with("/hello.txt") && r.security_token == session_token)
            .unwrap_or_else(|| panic!("no PUT signed with the STS credentials: {:?}", lab.s3.requests()));
        assert_eq!((put.status, put.auth.as_str()), (200, "sigv4-header"), "{put:?}");
        let s3c = connect_of(&p, &format!("svc-bucket-{inspect}.{S3}"));
        assert_eq!(s3c["route"], "s3", "{s3c}");
        eprintln!("inspect={inspect}: web identity + S3 round trip in {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_rides_its_own_gateway_route_in_both_modes() {
    let lab = Lab::new(91).await;
    for inspect in [false, true] {
        let p = lab.proxy(inspect);
        let table = format!("orders-{inspect}");
        let v = lab.boto3(&p, inspect, &["dynamodb", &table], &lab.static_keys()).await;
        assert_eq!(v["ok"], true, "inspect={inspect}: {v}\n{}", p.log_text());
        assert_eq!(v["item"], "gateway");
        let c = connect_of(&p, DDB);
        assert_eq!((c["decision"].as_str(), c["route"].as_str(), c["class"].as_str()), (Some("allow"), Some("ddb"), Some("service")), "{c}");
        // DynamoDB's account-based name (botocore uses it when it knows the account).
        let mut env = lab.static_keys().to_vec();
        env.push(("AWS_ACCOUNT_ID", "123456789012"));
        let v = lab.boto3(&p, inspect, &["dynamodb", &format!("{table}-acct")], &env).await;
        assert_eq!(v["ok"], true, "inspect={inspect}: {v}\n{}", p.log_text());
        assert_eq!(connect_of(&p, DDB_ACCOUNT)["route"], "ddb");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_sigv2_is_refused_with_a_sentence_and_never_reaches_sts() {
    let lab = Lab::new(92).await;
    let p = lab.proxy(true);
    // boto3 with signature_version = v2 puts SignatureVersion=2 and Signature in the form body.
    let v = lab.boto3(&p, true, &["caller-identity", "v2"], &lab.static_keys()).await;
    assert_eq!(v["ok"], false, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("(AccessDenied)") && err.contains("vpcgate refused") && err.contains("SigV4"), "{err}");
    assert_eq!(lab.sts.connections(), 0, "a SigV2 request never reaches STS");
    let r = p.events("request").into_iter().find(|e| e["host"] == STS).expect("a request line");
    assert_eq!((r["signature"].as_str(), r["reason"].as_str()), (Some("sigv2-query-form"), Some("sigv2")), "{r}");
    // The same form with its key percent-encoded, sent by hand.
    let ca = p.ca_path();
    let out = curl(&[
        "--proxy",
        &p.url(),
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        "Content-Type: application/x-www-form-urlencoded; charset=utf-8",
        "--data-binary",
        "Action=GetCallerIdentity&Version=2011-06-15&AWSAccessKeyI%64=AKIDEXAMPLE&Signature%56ersion=2&SignatureMethod=HmacSHA256",
        &format!("https://{STS}/"),
    ])
    .await;
    assert_eq!(out.status, 403, "{}", out.body);
    assert!(out.body.contains("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"), "{}", out.body);
    assert_eq!(lab.sts.connections(), 0);
    // The S3 request checks hold for every service: a Host other than the CONNECT host is refused.
    let out = curl(&[
        "--proxy",
        &p.url(),
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        "Host: kms.us-east-1.amazonaws.com",
        &format!("https://{STS}/?Action=GetCallerIdentity"),
    ])
    .await;
    assert_eq!(out.status, 403, "{}", out.body);
    assert!(out.body.contains("<ErrorResponse>") && out.body.contains("domain fronting"), "{}", out.body);
    assert_eq!(lab.sts.connections(), 0);
    // SigV4 through the same tunnel kind works (the refusal is about the signature, not STS).
    let v = lab.boto3(&p, true, &["caller-identity", "default"], &lab.static_keys()).await;
    assert_eq!(v["ok"], true, "{v}\n{}", p.log_text());
    assert!(lab.sts.connections() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_no_route_carries_are_refused_with_the_change_to_make() {
    let lab = Lab::new(93).await;
    let p = lab.proxy(true);
    // The global STS name: boto3 shows the sentence in the service's own error format.
    let mut env = lab.static_keys().to_vec();
    env.push(("AWS_STS_REGIONAL_ENDPOINTS", "legacy"));
    let v = lab.boto3(&p, true, &["caller-identity", "default"], &env).await;
    let err = v["error"].as_str().unwrap_or("");
    assert!(err.contains("(AccessDenied)") && err.contains("AWS_STS_REGIONAL_ENDPOINTS=regional"), "{v}");
    assert_eq!(lab.sts.connections(), 0, "nothing reached STS for the global name");
    // DynamoDB in a region vpcgate does not carry: a JSON-protocol error that boto3 prints.
    let v = lab.boto3(&p, true, &["dynamodb-get", "eu-west-1"], &lab.static_keys()).await;
    let err = v["error"].as_str().unwrap_or("");
    assert!(err.contains("(AccessDeniedException)") && err.contains("is in region eu-west-1"), "{v}");
    assert_eq!(lab.ddb.connections(), 0);
    // A service no route carries, though its answer lies inside the S3 route (passthrough: the
    // CONNECT refusal names the route to add).
    let pt = lab.proxy(false);
    let (status, text) = raw_request(pt.port, &connect_req("kms.us-east-1.amazonaws.com:443"));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("no_route_for_service") && text.contains("service = \"kms\""), "{text}");
    let c = connect_of(&pt, "kms.us-east-1.amazonaws.com");
    assert_eq!(c["reason"], "no_route_for_service", "{c}");
    assert_eq!(lab.s3.connections(), 0, "the S3 endpoint never saw the KMS connection");
    // Credential endpoints: plaintext and local, to be kept out of the proxy with NO_PROXY.
    for (url, what) in [("http://169.254.169.254/latest/api/token", "instance metadata"), ("http://169.254.170.23/v1/credentials", "Pod Identity")] {
        let out = curl(&["--proxy", &pt.url(), "-X", "PUT", url]).await;
        assert_eq!(out.connect_status.max(out.status), 403, "{url}: {}", out.body);
        assert!(out.body.contains(what) && out.body.contains("to NO_PROXY"), "{url}: {}", out.body);
    }
    let (status, text) = raw_request(pt.port, &connect_req("169.254.170.2:80"));
    assert!(status == 403 && text.contains("credential_endpoint"), "{text}");
}

//! The client compatibility matrix: real S3 clients (boto3, AWS CLI v1, s3cmd, rclone, curl, the AWS
//! SDK for JavaScript v3) through vpcgate in inspect mode, against a loopback fake AWS:
//! a DNS server on 127.0.0.1, a real S3 implementation (s3s + s3s-fs, SigV4 verified) on
//! 127.30.1.1:443, an upstream whose certificate no trusted CA signed (127.30.1.2), an upstream
//! that speaks only TLS_RSA_WITH_AES_128_GCM_SHA256 (127.30.1.3), and an address outside every
//! route (127.30.2.1). Prints one row per case and ends with `N passed, N failed`.
//!
//! Runs with `harness = false`; the clients are installed by integration-tests/clients/setup-clients.sh
//! into target/clients (run-all.sh does it; this binary runs it too when they are missing).

#[path = "support/mod.rs"]
mod support;

use serde_json::Value;
use sha2_free::sha256_file;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::dns::FakeDns;
use support::harness::*;
use support::s3::{FakeS3, ACCESS_KEY, SECRET_KEY};
use support::upstream::{free_port, NonFsUpstream, TestCa, TlsUpstream};

const N: u8 = 30;
const BUCKET: &str = "matrix-bucket";
const REGIONAL: &str = "s3.us-east-1.amazonaws.com";
/// What each refused name's sentence says, as the clients must show it.
const DUALSTACK: &str = "set s3.use_dualstack_endpoint = false";
const OTHER_REGION: &str = "is in region eu-west-1";
const OUTSIDE: &str = "resolved to addresses outside every route";

/// sha256 without another crate: shell out to sha256sum (coreutils).
mod sha2_free {
    pub fn sha256_file(p: &std::path::Path) -> String {
        let out = std::process::Command::new("sha256sum").arg(p).output().expect("sha256sum runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Allow,
    Refuse,
}

struct Row {
    client: &'static str,
    case: String,
    expected: Expect,
    observed: Expect,
    how: String,
    pass: bool,
}

struct Ctx {
    proxy: Proxy,
    clients: PathBuf,
    work: tempfile::TempDir,
    /// The S3 stand-in (owned by the first context; a second proxy's context borrows nothing).
    s3: Option<FakeS3>,
}

impl Ctx {
    fn python(&self) -> PathBuf {
        self.clients.join("venv/bin/python")
    }
    fn bin(&self, name: &str) -> PathBuf {
        self.clients.join("venv/bin").join(name)
    }
    fn ca(&self) -> PathBuf {
        self.proxy.ca_path()
    }
    /// Environment every client gets: the proxy, vpcgate's CA, test credentials, no IMDS, a private HOME.
    fn env(&self) -> Vec<(String, String)> {
        let home = self.work.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        vec![
            ("HTTPS_PROXY".into(), self.proxy.url()),
            ("https_proxy".into(), self.proxy.url()),
            ("AWS_CA_BUNDLE".into(), self.ca().display().to_string()),
            ("NODE_EXTRA_CA_CERTS".into(), self.ca().display().to_string()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT".into(), "regional".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), self.work.path().join("aws-config").display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), self.work.path().join("aws-credentials").display().to_string()),
            ("HOME".into(), home.display().to_string()),
        ]
    }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(ctx: &Ctx, program: &Path, args: &[&str], extra_env: &[(&str, &str)], timeout: Duration) -> Ran {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true).current_dir(ctx.work.path());
    for k in ["HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "AWS_PROFILE", "AWS_USE_DUALSTACK_ENDPOINT"] {
        cmd.env_remove(k);
    }
    for (k, v) in ctx.env() {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Ran { code: -2, stdout: String::new(), stderr: format!("timed out after {timeout:?} (a hang is a failure)") },
        Ok(Err(e)) => Ran { code: -1, stdout: String::new(), stderr: format!("cannot run {}: {e}", program.display()) },
        Ok(Ok(o)) => Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        },
    }
}

fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > 170 {
        format!("{}…", &one[..one.char_indices().take_while(|(i, _)| *i < 170).last().map(|(i, c)| i + c.len_utf8()).unwrap_or(0)])
    } else {
        one
    }
}

/// The part of a client's output that carries vpcgate's explanation.
fn refusal_text(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let pick = lines
        .iter()
        .find(|l| l.contains("vpcgate"))
        .or_else(|| lines.iter().find(|l| l.to_ascii_lowercase().contains("error")))
        .or(lines.last())
        .copied()
        .unwrap_or("");
    short(pick)
}

struct Matrix {
    rows: Vec<Row>,
}

impl Matrix {
    /// Record a case. A refusal passes only when the client saw an error that carries vpcgate's
    /// explanation (`needle`), not merely any failure.
    fn record(&mut self, client: &'static str, case: &str, expected: Expect, ok: bool, output: &str, needle: &str) {
        let observed = if ok { Expect::Allow } else { Expect::Refuse };
        // Allowed: the client's last line (e.g. "upload: … to s3://…" after progress lines).
        let last = output.split(['\r', '\n']).rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let how = if ok { short(last) } else { refusal_text(output) };
        // A needle may be several texts joined by "&&", all of which must be shown.
        let shown = needle.split("&&").all(|n| output.contains(n));
        let pass = observed == expected && (expected == Expect::Allow || shown);
        let how = if !pass && expected == Expect::Refuse && !ok && !shown { format!("{how} [expected to mention {needle:?}]") } else { how };
        self.rows.push(Row { client, case: case.to_string(), expected, observed, how, pass });
    }
}

async fn boto3(ctx: &Ctx, m: &mut Matrix, case: &str, bucket: &str, expected: Expect, needle: &str) {
    boto3_case_named(ctx, m, case, case, bucket, expected, needle).await
}

async fn aws(ctx: &Ctx, m: &mut Matrix, case: &str, args: &[&str], expected: Expect, needle: &str) -> Ran {
    aws_env(ctx, m, case, args, &[], expected, needle).await
}

async fn aws_env(ctx: &Ctx, m: &mut Matrix, case: &str, args: &[&str], env: &[(&str, &str)], expected: Expect, needle: &str) -> Ran {
    let r = run(ctx, &ctx.bin("aws"), args, env, Duration::from_secs(120)).await;
    m.record("aws CLI v1", case, expected, r.code == 0, &format!("{}{}", r.stdout, r.stderr), needle);
    r
}

async fn curl_case(ctx: &Ctx, m: &mut Matrix, client: &'static str, case: &str, args: &[&str], expected: Expect, needle: &str) -> (u16, String) {
    let proxy = ctx.proxy.url();
    let ca = ctx.ca();
    let mut all = vec!["-sS", "-v", "--max-time", "20", "--proxy", proxy.as_str(), "--cacert", ca.to_str().unwrap(), "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let r = run(ctx, Path::new("curl"), &all, &[], Duration::from_secs(40)).await;
    let (body, code) = r.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    let status: u16 = code.trim().parse().unwrap_or(0);
    let ok = r.code == 0 && (200..300).contains(&status);
    let printable = body.chars().all(|c| !c.is_control() || c.is_whitespace());
    let text = match (ok, printable) {
        (true, true) => format!("HTTP {status}: {}", short(body)),
        (true, false) => format!("HTTP {status}: the object's bytes"),
        (false, _) => format!("HTTP {status} {body} {}", r.stderr),
    };
    m.record(client, case, expected, ok, &text, needle);
    (status, body.to_string())
}

/// A presigned URL from a client, then fetched with curl through vpcgate.
async fn presigned(ctx: &Ctx, m: &mut Matrix, client: &'static str, case: &str, url: &str, expected: Expect, needle: &str) {
    if !url.starts_with("https://") {
        m.record(client, case, expected, false, &format!("no URL produced: {url}"), needle);
        return;
    }
    curl_case(ctx, m, client, case, &[url], expected, needle).await;
}

async fn cases(ctx: &Ctx, m: &mut Matrix) {
    let port = ctx.proxy.port.to_string();
    let work = ctx.work.path();
    let sigv2 = "signature_version = s3v4";

    // boto3
    boto3(ctx, m, "create-bucket", BUCKET, Expect::Allow, "").await;
    boto3(ctx, m, "crud-virtual", BUCKET, Expect::Allow, "").await;
    boto3(ctx, m, "crud-path", BUCKET, Expect::Allow, "").await;
    boto3(ctx, m, "upload-20mib", BUCKET, Expect::Allow, "").await;
    boto3(ctx, m, "presign-v4", BUCKET, Expect::Allow, "").await;
    boto3(ctx, m, "presign-default", BUCKET, Expect::Refuse, sigv2).await;
    boto3(ctx, m, "sigv2", BUCKET, Expect::Refuse, sigv2).await;
    // Refused names arrive inside the tunnel as S3 errors (proxy.refuse_in_tunnel), which boto3
    // raises as ClientError with vpcgate's sentence (a refused CONNECT was only a ProxyConnectionError).
    let in_tunnel = |what: &str| format!("AccessDenied: vpcgate refused: &&{what}");
    boto3(ctx, m, "dualstack", BUCKET, Expect::Refuse, &in_tunnel(DUALSTACK)).await;
    boto3(ctx, m, "other-region", BUCKET, Expect::Refuse, &in_tunnel(OTHER_REGION)).await;
    boto3(ctx, m, "outside-answer", "outside-bucket", Expect::Refuse, &in_tunnel(OUTSIDE)).await;
    boto3(ctx, m, "legacy-global", "legacy-bucket", Expect::Refuse, &in_tunnel(OUTSIDE)).await;
    boto3(ctx, m, "untrusted-upstream", "untrusted-bucket", Expect::Refuse, "did not verify").await;
    boto3(ctx, m, "nonfs-upstream", "nonfs-bucket", Expect::Refuse, "forward").await;

    // AWS CLI v1
    let src = work.join("cli-src.bin");
    let dst = work.join("cli-dst.bin");
    std::fs::write(&src, (0..(20u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    aws(ctx, m, "s3 mb", &["s3", "mb", "s3://matrix-cli"], Expect::Allow, "").await;
    aws(ctx, m, "s3 cp up 20 MiB", &["s3", "cp", src.to_str().unwrap(), "s3://matrix-cli/big.bin"], Expect::Allow, "").await;
    let r = aws(ctx, m, "s3 ls", &["s3", "ls", "s3://matrix-cli/"], Expect::Allow, "").await;
    if !r.stdout.contains("big.bin") {
        m.record("aws CLI v1", "s3 ls lists big.bin", Expect::Allow, false, &r.stdout, "");
    }
    aws(ctx, m, "s3 cp down 20 MiB", &["s3", "cp", "s3://matrix-cli/big.bin", dst.to_str().unwrap()], Expect::Allow, "").await;
    let (a, b) = (sha256_file(&src), if dst.exists() { sha256_file(&dst) } else { String::new() });
    m.record("aws CLI v1", "sha256 round trip", Expect::Allow, !a.is_empty() && a == b, &format!("sha256 {}… both ways", &a[..16.min(a.len())]), "");
    let cfg = work.join("aws-config-v4");
    std::fs::write(&cfg, "[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n").unwrap();
    let r =
        run(ctx, &ctx.bin("aws"), &["s3", "presign", "s3://matrix-cli/big.bin"], &[("AWS_CONFIG_FILE", cfg.to_str().unwrap())], Duration::from_secs(60)).await;
    presigned(ctx, m, "aws CLI v1", "s3 presign (s3v4) + curl", r.stdout.trim(), Expect::Allow, "").await;
    let r = run(ctx, &ctx.bin("aws"), &["s3", "presign", "s3://matrix-cli/big.bin"], &[], Duration::from_secs(60)).await;
    presigned(ctx, m, "aws CLI v1", "s3 presign (default: SigV2) + curl", r.stdout.trim(), Expect::Refuse, sigv2).await;
    aws(ctx, m, "s3 rm", &["s3", "rm", "s3://matrix-cli/big.bin"], Expect::Allow, "").await;
    // Refused names: the CLI prints the S3 error vpcgate answers inside the tunnel (for a refused
    // CONNECT it printed only "Failed to connect to proxy URL").
    let cli = |what: &str| format!("An error occurred (AccessDenied) when calling the ListObjectsV2 operation: vpcgate refused: &&{what}");
    aws(
        ctx,
        m,
        "s3 ls, dualstack endpoint",
        &["s3", "ls", "s3://matrix-cli/", "--endpoint-url", "https://s3.dualstack.us-east-1.amazonaws.com"],
        Expect::Refuse,
        &cli(DUALSTACK),
    )
    .await;
    aws(ctx, m, "s3 ls, other region", &["s3", "ls", "s3://matrix-cli/", "--region", "eu-west-1"], Expect::Refuse, &cli(OTHER_REGION)).await;
    aws(ctx, m, "s3 ls, answer outside the routes", &["s3", "ls", "s3://outside-bucket/"], Expect::Refuse, &cli(OUTSIDE)).await;
    aws_env(
        ctx,
        m,
        "s3 ls, legacy global name",
        &["s3", "ls", "s3://legacy-bucket/"],
        &[("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "legacy")],
        Expect::Refuse,
        &cli(OUTSIDE),
    )
    .await;
    aws(ctx, m, "s3 ls (untrusted upstream)", &["s3", "ls", "s3://untrusted-bucket/"], Expect::Refuse, "did not verify").await;
    aws(ctx, m, "s3 ls (non-FS upstream)", &["s3", "ls", "s3://nonfs-bucket/"], Expect::Refuse, "forward").await;

    // s3cmd: ignores HTTPS_PROXY; proxy and CA come from its config file.
    let s3cfg = work.join("s3cfg");
    std::fs::write(
        &s3cfg,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\nhost_base = {REGIONAL}\nhost_bucket = %(bucket)s.{REGIONAL}\n\
             bucket_location = us-east-1\nuse_https = True\nproxy_host = 127.0.0.1\nproxy_port = {port}\nca_certs_file = {}\n\
             check_ssl_certificate = True\ncheck_ssl_hostname = True\nsignature_v2 = False\n",
            ctx.ca().display()
        ),
    )
    .unwrap();
    let s3cmd = |args: Vec<String>| {
        let mut a = vec!["-c".to_string(), s3cfg.display().to_string()];
        a.extend(args);
        a
    };
    // `ls s3://BUCKET` through another endpoint (s3cmd's --host and --host-bucket).
    let host_args =
        |host: &str, bucket: &str| vec![format!("--host={host}"), format!("--host-bucket=%(bucket)s.{host}"), "ls".to_string(), format!("s3://{bucket}")];
    let small = work.join("s3cmd.txt");
    std::fs::write(&small, "hello from s3cmd").unwrap();
    for (case, args, expected, needle) in [
        ("ls (SigV4)", s3cmd(vec!["ls".into(), format!("s3://{BUCKET}")]), Expect::Allow, String::new()),
        ("put", s3cmd(vec!["put".into(), small.display().to_string(), format!("s3://{BUCKET}/s3cmd.txt")]), Expect::Allow, String::new()),
        (
            "get",
            s3cmd(vec!["get".into(), "--force".into(), format!("s3://{BUCKET}/s3cmd.txt"), work.join("s3cmd-back.txt").display().to_string()]),
            Expect::Allow,
            String::new(),
        ),
        ("del", s3cmd(vec!["del".into(), format!("s3://{BUCKET}/s3cmd.txt")]), Expect::Allow, String::new()),
        ("--signature-v2 ls", s3cmd(vec!["--signature-v2".into(), "ls".into(), format!("s3://{BUCKET}")]), Expect::Refuse, sigv2.to_string()),
        ("ls, dualstack host", s3cmd(host_args("s3.dualstack.us-east-1.amazonaws.com", BUCKET)), Expect::Refuse, format!("AccessDenied&&{DUALSTACK}")),
        (
            "ls, other region",
            s3cmd([host_args("s3.eu-west-1.amazonaws.com", BUCKET), vec!["--region=eu-west-1".into()]].concat()),
            Expect::Refuse,
            format!("AccessDenied&&{OTHER_REGION}"),
        ),
        ("ls, answer outside the routes", s3cmd(vec!["ls".into(), "s3://outside-bucket".into()]), Expect::Refuse, format!("AccessDenied&&{OUTSIDE}")),
        ("ls, legacy global name", s3cmd(host_args("s3.amazonaws.com", "legacy-bucket")), Expect::Refuse, format!("AccessDenied&&{OUTSIDE}")),
    ] {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(ctx, &ctx.bin("s3cmd"), &argv, &[], Duration::from_secs(90)).await;
        m.record("s3cmd", case, expected, r.code == 0, &format!("{}{}", r.stdout, r.stderr), &needle);
    }
    let back = std::fs::read_to_string(work.join("s3cmd-back.txt")).unwrap_or_default();
    m.record("s3cmd", "get returns what put stored", Expect::Allow, back == "hello from s3cmd", &format!("{back:?}"), "");

    // rclone: Go's proxy handling (HTTPS_PROXY); CA with --ca-cert (it fails when AWS_CA_BUNDLE is set).
    let rclone_env = [
        ("RCLONE_CONFIG_VG_TYPE", "s3"),
        ("RCLONE_CONFIG_VG_PROVIDER", "AWS"),
        ("RCLONE_CONFIG_VG_ACCESS_KEY_ID", ACCESS_KEY),
        ("RCLONE_CONFIG_VG_SECRET_ACCESS_KEY", SECRET_KEY),
        ("RCLONE_CONFIG_VG_REGION", "us-east-1"),
        ("RCLONE_CONFIG_VG_ENDPOINT", "https://s3.us-east-1.amazonaws.com"),
        ("RCLONE_CONFIG", "/dev/null"),
        ("AWS_CA_BUNDLE", ""),
    ];
    let ca = ctx.ca().display().to_string();
    let rsrc = work.join("rclone-src");
    let rdst = work.join("rclone-dst");
    std::fs::create_dir_all(&rsrc).unwrap();
    std::fs::write(rsrc.join("r.txt"), "hello from rclone").unwrap();
    for (case, args, expected, needle) in [
        ("copy up", vec!["copy".to_string(), rsrc.display().to_string(), format!("vg:{BUCKET}/rclone")], Expect::Allow, String::new()),
        ("ls", vec!["ls".to_string(), format!("vg:{BUCKET}/rclone")], Expect::Allow, String::new()),
        ("copy down", vec!["copy".to_string(), format!("vg:{BUCKET}/rclone"), rdst.display().to_string()], Expect::Allow, String::new()),
        (
            "--s3-v2-auth ls",
            vec!["--s3-v2-auth".to_string(), "ls".to_string(), format!("vg:{BUCKET}/rclone")],
            Expect::Refuse,
            "Signature Version 2".to_string(),
        ),
        (
            "ls, dualstack endpoint",
            vec!["--s3-endpoint".into(), "https://s3.dualstack.us-east-1.amazonaws.com".into(), "ls".into(), format!("vg:{BUCKET}")],
            Expect::Refuse,
            format!("AccessDenied&&{DUALSTACK}"),
        ),
        (
            "ls, other region",
            vec![
                "--s3-region".into(),
                "eu-west-1".into(),
                "--s3-endpoint".into(),
                "https://s3.eu-west-1.amazonaws.com".into(),
                "ls".into(),
                format!("vg:{BUCKET}"),
            ],
            Expect::Refuse,
            format!("AccessDenied&&{OTHER_REGION}"),
        ),
        // rclone uses path style unless told otherwise; these names are the buckets' own.
        (
            "ls, answer outside the routes",
            vec!["--s3-force-path-style=false".into(), "ls".into(), "vg:outside-bucket".into()],
            Expect::Refuse,
            format!("AccessDenied&&{OUTSIDE}"),
        ),
        (
            "ls, legacy global name",
            vec!["--s3-force-path-style=false".into(), "--s3-endpoint".into(), "https://s3.amazonaws.com".into(), "ls".into(), "vg:legacy-bucket".into()],
            Expect::Refuse,
            format!("AccessDenied&&{OUTSIDE}"),
        ),
    ] {
        let mut argv: Vec<&str> = vec!["--ca-cert", &ca, "--retries", "1", "--low-level-retries", "1", "--contimeout", "10s", "--timeout", "30s"];
        argv.extend(args.iter().map(String::as_str));
        let r = run(ctx, Path::new("rclone"), &argv, &rclone_env, Duration::from_secs(90)).await;
        m.record("rclone", case, expected, r.code == 0, &format!("{}{}", r.stdout, r.stderr), &needle);
    }
    let back = std::fs::read_to_string(rdst.join("r.txt")).unwrap_or_default();
    m.record("rclone", "copy down returns what copy up stored", Expect::Allow, back == "hello from rclone", &format!("{back:?}"), "");

    // curl
    let sig = format!("{ACCESS_KEY}:{SECRET_KEY}");
    // curl 7.88 does not add x-amz-content-sha256 itself; S3 requires it with SigV4 (sha256 of the empty body).
    let empty = "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    curl_case(
        ctx,
        m,
        "curl",
        "--aws-sigv4 GET",
        &["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &sig, "-H", empty, &format!("https://{BUCKET}.{REGIONAL}/presigned.txt")],
        Expect::Allow,
        "",
    )
    .await;
    curl_case(ctx, m, "curl", "plain http:// through the proxy", &[&format!("http://{BUCKET}.{REGIONAL}/presigned.txt")], Expect::Refuse, "plaintext").await;
    curl_case(ctx, m, "curl", "CONNECT to port 8443", &[&format!("https://{BUCKET}.{REGIONAL}:8443/")], Expect::Refuse, "X-Vpcgate-Reason: port_not_allowed")
        .await;
    curl_case(ctx, m, "curl", "CONNECT to an IP literal", &[&format!("https://127.{N}.1.1/")], Expect::Refuse, "X-Vpcgate-Reason: ip_literal").await;
    curl_case(ctx, m, "curl", "untrusted upstream", &[&format!("https://untrusted-bucket.{REGIONAL}/")], Expect::Refuse, "did not verify").await;
    curl_case(ctx, m, "curl", "non-FS upstream", &[&format!("https://nonfs-bucket.{REGIONAL}/")], Expect::Refuse, "forward").await;

    // AWS SDK for JavaScript v3 (agent for the proxy, NODE_EXTRA_CA_CERTS for the CA)
    let js = ctx.clients.join("js/js_case.mjs");
    for (case, bucket, expected, needle) in [
        ("crud", BUCKET, Expect::Allow, String::new()),
        ("dualstack", BUCKET, Expect::Refuse, format!("AccessDenied: vpcgate refused: &&{DUALSTACK}")),
        ("other-region", BUCKET, Expect::Refuse, format!("AccessDenied: vpcgate refused: &&{OTHER_REGION}")),
        ("outside-answer", "outside-bucket", Expect::Refuse, format!("AccessDenied: vpcgate refused: &&{OUTSIDE}")),
        ("legacy-global", "legacy-bucket", Expect::Refuse, format!("AccessDenied: vpcgate refused: &&{OUTSIDE}")),
    ] {
        let r = run(ctx, Path::new("node"), &[js.to_str().unwrap(), case, bucket], &[], Duration::from_secs(60)).await;
        let v: Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap_or("")).unwrap_or(Value::Null);
        let ok = v["ok"].as_bool().unwrap_or(false);
        let text = if ok { v["detail"].as_str().unwrap_or("").to_string() } else { format!("{} {}", v["error"].as_str().unwrap_or(""), r.stderr) };
        m.record("JS SDK v3", case, expected, ok, &text, &needle);
    }
}

/// Through a vpcgate with `s3.buckets = ["matrix-*"]`: the listed bucket works, another one is
/// refused in every form, each client printing vpcgate's sentence.
async fn perimeter_cases(ctx: &Ctx, m: &mut Matrix) {
    let not_listed = "not in s3.buckets";
    // "vpcgate refused: a request for …" when the name itself was refused (inside the tunnel),
    // "vpcgate refused a request for …" when a request named the bucket in its path.
    let in_tunnel = |what: &str| format!("AccessDenied: vpcgate refused&&{what}");
    boto3_case_named(ctx, m, "perimeter: crud-virtual (listed bucket)", "crud-virtual", BUCKET, Expect::Allow, "").await;
    boto3_case_named(ctx, m, "perimeter: multipart 20 MiB round trip (listed bucket)", "upload-20mib", BUCKET, Expect::Allow, "").await;
    for (case, bucket, needle) in [
        ("list", "other-bucket", in_tunnel(not_listed)),
        ("list-path", "other-bucket", in_tunnel(not_listed)),
        ("copy-from", "other-bucket", in_tunnel("a copy from other-bucket")),
        ("presign-get", "other-bucket", format!("HTTP 403&&{not_listed}")),
    ] {
        boto3_case_named(ctx, m, &format!("perimeter: {case} other-bucket"), case, bucket, Expect::Refuse, &needle).await;
    }
    let cli = |what: &str| format!("An error occurred (AccessDenied)&&{what}");
    aws(ctx, m, "perimeter: s3 ls s3://other-bucket", &["s3", "ls", "s3://other-bucket/"], Expect::Refuse, &cli(not_listed)).await;
    // (`aws s3 cp` between buckets first sends a HEAD to the source, whose 403 has no body to
    // carry the sentence; CopyObject itself does.)
    aws(
        ctx,
        m,
        "perimeter: s3api copy-object from other-bucket",
        &["s3api", "copy-object", "--bucket", "matrix-cli", "--key", "k.txt", "--copy-source", "other-bucket/k.txt"],
        Expect::Refuse,
        &cli("a copy from other-bucket"),
    )
    .await;
    let port = ctx.proxy.port.to_string();
    let s3cfg = ctx.work.path().join("s3cfg");
    std::fs::write(
        &s3cfg,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\nhost_base = {REGIONAL}\nhost_bucket = %(bucket)s.{REGIONAL}\n\
             bucket_location = us-east-1\nuse_https = True\nproxy_host = 127.0.0.1\nproxy_port = {port}\nca_certs_file = {}\nsignature_v2 = False\n",
            ctx.ca().display()
        ),
    )
    .unwrap();
    let r = run(ctx, &ctx.bin("s3cmd"), &["-c", s3cfg.to_str().unwrap(), "ls", "s3://other-bucket"], &[], Duration::from_secs(90)).await;
    m.record(
        "s3cmd",
        "perimeter: ls s3://other-bucket",
        Expect::Refuse,
        r.code == 0,
        &format!("{}{}", r.stdout, r.stderr),
        &format!("AccessDenied&&{not_listed}"),
    );
    let ca = ctx.ca().display().to_string();
    let rclone_env = [
        ("RCLONE_CONFIG_VG_TYPE", "s3"),
        ("RCLONE_CONFIG_VG_PROVIDER", "AWS"),
        ("RCLONE_CONFIG_VG_ACCESS_KEY_ID", ACCESS_KEY),
        ("RCLONE_CONFIG_VG_SECRET_ACCESS_KEY", SECRET_KEY),
        ("RCLONE_CONFIG_VG_REGION", "us-east-1"),
        ("RCLONE_CONFIG_VG_ENDPOINT", "https://s3.us-east-1.amazonaws.com"),
        ("RCLONE_CONFIG", "/dev/null"),
        ("AWS_CA_BUNDLE", ""),
    ];
    let r = run(
        ctx,
        Path::new("rclone"),
        &["--ca-cert", &ca, "--retries", "1", "--low-level-retries", "1", "ls", "vg:other-bucket"],
        &rclone_env,
        Duration::from_secs(90),
    )
    .await;
    m.record(
        "rclone",
        "perimeter: ls vg:other-bucket (path-style)",
        Expect::Refuse,
        r.code == 0,
        &format!("{}{}", r.stdout, r.stderr),
        &format!("AccessDenied&&{not_listed}"),
    );
    let js = ctx.clients.join("js/js_case.mjs");
    let r = run(ctx, Path::new("node"), &[js.to_str().unwrap(), "outside-answer", "other-bucket"], &[], Duration::from_secs(60)).await;
    let v: Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap_or("")).unwrap_or(Value::Null);
    let text = format!("{} {}", v["error"].as_str().unwrap_or(""), r.stderr);
    m.record("JS SDK v3", "perimeter: list other-bucket", Expect::Refuse, v["ok"].as_bool().unwrap_or(false), &text, &in_tunnel(not_listed));
}

/// Through a vpcgate with `proxy.auth = "basic"` and one client `etl` limited to `matrix-*`: the
/// credentials go in the proxy URL, as each client documents.
async fn auth_cases(ctx: &Ctx, m: &mut Matrix) {
    let port = ctx.proxy.port;
    let good = format!("http://etl:etl-Pass_1@127.0.0.1:{port}");
    let bad = format!("http://etl:wrong@127.0.0.1:{port}");
    let env = |url: &str| vec![("HTTPS_PROXY".to_string(), url.to_string()), ("https_proxy".to_string(), url.to_string())];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration-tests/clients/boto3_case.py");
    let work = ctx.work.path().display().to_string();
    for (label, url, case, bucket, expected, needle) in [
        ("auth: crud-virtual with etl's credentials", &good, "crud-virtual", BUCKET, Expect::Allow, String::new()),
        (
            "auth: list other-bucket (not in etl's list)",
            &good,
            "list",
            "other-bucket",
            Expect::Refuse,
            "AccessDenied: vpcgate refused&&not in s3.buckets".to_string(),
        ),
        ("auth: a wrong password", &bad, "list", BUCKET, Expect::Refuse, "407&&match no configured client".to_string()),
    ] {
        let e = env(url);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = run(ctx, &ctx.python(), &[script.to_str().unwrap(), case, bucket, &work], &e, Duration::from_secs(120)).await;
        let v: Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap_or("")).unwrap_or(Value::Null);
        let ok = v["ok"].as_bool().unwrap_or(false);
        let text = if ok { v["detail"].as_str().unwrap_or("").to_string() } else { format!("{} {}", v["error"].as_str().unwrap_or(""), r.stderr) };
        m.record("boto3", label, expected, ok, &text, &needle);
    }
    let e = env(&good);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    aws_env(ctx, m, "auth: s3 ls s3://matrix-cli with etl's credentials", &["s3", "ls", "s3://matrix-cli/"], &e, Expect::Allow, "").await;
    let js = ctx.clients.join("js/js_case.mjs");
    let r = run(ctx, Path::new("node"), &[js.to_str().unwrap(), "crud", BUCKET], &e, Duration::from_secs(60)).await;
    let v: Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap_or("")).unwrap_or(Value::Null);
    let ok = v["ok"].as_bool().unwrap_or(false);
    let text = if ok { v["detail"].as_str().unwrap_or("").to_string() } else { format!("{} {}", v["error"].as_str().unwrap_or(""), r.stderr) };
    m.record("JS SDK v3", "auth: crud with etl's credentials (https-proxy-agent)", Expect::Allow, ok, &text, "");
}

async fn boto3_case_named(ctx: &Ctx, m: &mut Matrix, label: &str, case: &str, bucket: &str, expected: Expect, needle: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration-tests/clients/boto3_case.py");
    let work = ctx.work.path().display().to_string();
    let r = run(ctx, &ctx.python(), &[script.to_str().unwrap(), case, bucket, &work], &[], Duration::from_secs(120)).await;
    let v: Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap_or("")).unwrap_or(Value::Null);
    let ok = v["ok"].as_bool().unwrap_or(false);
    let text = if ok { v["detail"].as_str().unwrap_or("").to_string() } else { format!("{} {}", v["error"].as_str().unwrap_or(""), r.stderr) };
    m.record("boto3", label, expected, ok, &text, needle);
}

/// The README's "Sixty seconds" as written there: vpcgate on its embedded default configuration
/// (only its ports moved, so that it cannot collide with anything), the README's boto3 snippet with
/// dual-stack on, and the line the README says boto3's traceback ends with. Nothing is dialled: a
/// dual-stack name is refused before any DNS question.
async fn readme_quick_start(clients: &Path) -> Row {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("## Sixty seconds").nth(1).and_then(|s| s.split("\n## ").next()).unwrap_or("");
    let code = section.split("-c '").nth(1).and_then(|s| s.split('\'').next()).unwrap_or("").to_string();
    let expected = section.split("```text\n").nth(1).and_then(|s| s.split("\n```").next()).unwrap_or("").to_string();
    let mut row = Row {
        client: "boto3",
        case: "README quick start: the sentence it shows".into(),
        expected: Expect::Refuse,
        observed: Expect::Allow,
        how: String::new(),
        pass: false,
    };
    if code.is_empty() || !expected.contains("vpcgate refused") {
        row.how = "README.md has no \"Sixty seconds\" snippet and expected line to check".into();
        return row;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("vpcgate.log")).unwrap();
    let _vpcgate = tokio::process::Command::new(env!("CARGO_BIN_EXE_vpcgate"))
        .arg("run")
        .current_dir(dir.path())
        .env_remove("VPCGATE_CONFIG")
        .env("VPCGATE__PROXY__LISTEN", format!("127.0.0.1:{port}"))
        .env("VPCGATE__ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            row.how = format!("vpcgate did not listen: {}", std::fs::read_to_string(dir.path().join("vpcgate.log")).unwrap_or_default());
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = tokio::process::Command::new(clients.join("venv/bin/python"))
        .args(["-c", &code])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))
        .env("AWS_CA_BUNDLE", dir.path().join("certs/ca.pem"))
        .env("AWS_ACCESS_KEY_ID", "example")
        .env("AWS_SECRET_ACCESS_KEY", "example")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_USE_DUALSTACK_ENDPOINT", "true")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(60), out).await {
        Ok(Ok(o)) => o,
        other => {
            row.how = format!("boto3 did not finish: {other:?}");
            return row;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or("").to_string();
    row.observed = if out.status.success() { Expect::Allow } else { Expect::Refuse };
    row.pass = last == expected;
    row.how = if row.pass { short(&last) } else { format!("the README says {expected:?}, boto3 printed {last:?}") };
    row
}

fn ensure_clients(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration-tests/clients/setup-clients.sh");
    let st = std::process::Command::new("bash").arg(script).arg(dir).status().expect("bash runs");
    assert!(st.success(), "installing the S3 clients failed (see above)");
}

fn main() {
    let started = Instant::now();
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients");
    ensure_clients(&clients);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (rows, sigv2_seen) = rt.block_on(async {
        let w = world();
        let stranger = TestCa::new("a CA nobody trusts");
        let names = [REGIONAL, "*.s3.us-east-1.amazonaws.com", "s3.amazonaws.com", "*.s3.amazonaws.com"];
        let s3 = FakeS3::start(sa(N, 1, 1), &w.ca, &names).await;
        let _untrusted = TlsUpstream::start(sa(N, 1, 2), &stranger, &[&format!("untrusted-bucket.{REGIONAL}")], "untrusted").await;
        let _nonfs = NonFsUpstream::start(sa(N, 1, 3), &w.ca, &[&format!("nonfs-bucket.{REGIONAL}")]);
        let inside = a(&[ip(N, 1, 1)]);
        let dual: Vec<std::net::IpAddr> = vec![std::net::IpAddr::V4(ip(N, 1, 1)), "::1".parse().unwrap()];
        let names: Vec<(String, Vec<std::net::IpAddr>)> = vec![
            (REGIONAL.into(), inside.clone()),
            (format!("{BUCKET}.{REGIONAL}"), inside.clone()),
            (format!("matrix-cli.{REGIONAL}"), inside.clone()),
            ("s3.amazonaws.com".into(), inside.clone()),
            (format!("{BUCKET}.s3.amazonaws.com"), inside.clone()),
            ("matrix-cli.s3.amazonaws.com".into(), inside.clone()),
            (format!("{BUCKET}.s3.dualstack.us-east-1.amazonaws.com"), dual.clone()),
            ("s3.dualstack.us-east-1.amazonaws.com".into(), dual),
            (format!("{BUCKET}.s3.eu-west-1.amazonaws.com"), inside.clone()),
            ("s3.eu-west-1.amazonaws.com".into(), inside.clone()),
            (format!("outside-bucket.{REGIONAL}"), a(&[ip(N, 2, 1)])),
            ("legacy-bucket.s3.amazonaws.com".into(), a(&[ip(N, 2, 1)])),
            (format!("untrusted-bucket.{REGIONAL}"), a(&[ip(N, 1, 2)])),
            (format!("nonfs-bucket.{REGIONAL}"), a(&[ip(N, 1, 3)])),
        ];
        let records: Vec<(&str, &[std::net::IpAddr])> = names.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let dns = FakeDns::start(&records).await;
        let proxy = Proxy::start_inspect(N, dns.addr, &w.ca_path, "");
        let ctx = Ctx { proxy, clients: clients.clone(), work: tempfile::tempdir().unwrap(), s3: Some(s3) };
        let mut m = Matrix { rows: Vec::new() };
        cases(&ctx, &mut m).await;
        // The same clients through a second vpcgate with a bucket perimeter.
        let perim = Proxy::start_inspect(N, dns.addr, &w.ca_path, "[s3]\nbuckets = [\"matrix-*\"]\n");
        let pctx = Ctx { proxy: perim, clients, work: tempfile::tempdir().unwrap(), s3: None };
        perimeter_cases(&pctx, &mut m).await;
        drop(pctx);
        // And through a vpcgate that asks for credentials, each client with its own buckets.
        let entry = |name: &str, password: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vpcgate"))
                .args(["client", "add", name, "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n") + "\n"
        };
        let auth = format!("[proxy]\nauth = \"basic\"\n{}buckets = [\"matrix-*\"]\n", entry("etl", "etl-Pass_1"));
        let authed = Proxy::start_inspect(N, dns.addr, &w.ca_path, &auth);
        let actx = Ctx { proxy: authed, clients: ctx.clients.clone(), work: tempfile::tempdir().unwrap(), s3: None };
        auth_cases(&actx, &mut m).await;
        m.rows.push(readme_quick_start(&ctx.clients).await);
        let sigv2: Vec<String> = ctx
            .s3
            .as_ref()
            .expect("the first context owns the S3 stand-in")
            .requests()
            .iter()
            .filter(|r| r.auth.starts_with("sigv2"))
            .map(|r| format!("{} {} ({})", r.method, r.path, r.auth))
            .collect();
        if std::env::var_os("MATRIX_LOG").is_some() {
            eprintln!("{}", ctx.proxy.log_text());
        }
        assert_eq!(dns.count("AAAA") + dns.count("PTR"), 0, "vpcgate asked for AAAA or PTR records");
        (m.rows, sigv2)
    });
    let mut rows = rows;
    rows.push(Row {
        client: "fake S3",
        case: "no SigV2 request ever reached the upstream".into(),
        expected: Expect::Allow,
        observed: if sigv2_seen.is_empty() { Expect::Allow } else { Expect::Refuse },
        how: if sigv2_seen.is_empty() { "requests() shows only SigV4/anonymous".into() } else { sigv2_seen.join(", ") },
        pass: sigv2_seen.is_empty(),
    });

    println!("\n| client | case | expected | observed | how the client saw it | result |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let e = |x: Expect| if x == Expect::Allow { "allowed" } else { "refused" };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.client,
            r.case,
            e(r.expected),
            e(r.observed),
            r.how.replace('|', "\\|"),
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    let passed = rows.iter().filter(|r| r.pass).count();
    let failed = rows.len() - passed;
    println!("\nclient matrix finished in {:.0}s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

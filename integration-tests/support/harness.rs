//! The vpcgate binary as a child process, and the clients the integration tests drive it with:
//! curl, raw proxy requests on a socket. Shared by every integration test file.

pub use super::upstream::free_port;
use super::upstream::TestCa;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn ip(n: u8, sub: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, n, sub, host)
}
pub fn sa(n: u8, sub: u8, host: u8) -> SocketAddr {
    SocketAddr::from((ip(n, sub, host), 443))
}

/// A running vpcgate binary with JSON logs captured to a file.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
    /// The admin listener's port (0 when the test's own config set none).
    pub admin_port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Start vpcgate with `extra` TOML appended to a base config that listens on a free port, uses
    /// `dns` and has a gateway route for 127.N.1.0/24 (unless `extra` brings its own routes).
    /// Passthrough mode.
    pub fn start(n: u8, dns: SocketAddr, extra: &str) -> Proxy {
        Self::start_mode(n, dns, "mode = \"passthrough\"\n", extra)
    }

    /// Inspect mode: vpcgate's CA is created on first start at `{dir}/certs/ca.pem`; upstreams are
    /// trusted through `upstream_ca` (tls.extra_roots).
    pub fn start_inspect(n: u8, dns: SocketAddr, upstream_ca: &Path, extra: &str) -> Proxy {
        let tls = format!(
            "mode = \"inspect\"\nca_cert = \"{{DIR}}/certs/ca.pem\"\nca_key = \"{{DIR}}/certs/ca-key.pem\"\nextra_roots = [\"{}\"]\n",
            upstream_ca.display()
        );
        Self::start_mode(n, dns, &tls, extra)
    }

    /// vpcgate's own CA (inspect mode), for clients to trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    /// `extra` is appended to the base config; when it starts with a `[proxy]` table (then
    /// optionally a `[tls]` table), those keys join the base tables instead (TOML allows a table
    /// only once).
    fn start_mode(n: u8, dns: SocketAddr, tls: &str, extra: &str) -> Proxy {
        let port = free_port();
        let admin = free_port();
        let (proxy_extra, extra) = match extra.strip_prefix("[proxy]\n") {
            Some(rest) => match rest.find("\n[") {
                Some(i) => (&rest[..=i], &rest[i + 1..]),
                None => (rest, ""),
            },
            None => ("", extra),
        };
        // Likewise a leading `[tls]` table joins the base `[tls]` table.
        let (tls_extra, extra) = match extra.strip_prefix("[tls]\n") {
            Some(rest) => match rest.find("\n[") {
                Some(i) => (&rest[..=i], &rest[i + 1..]),
                None => (rest, ""),
            },
            None => ("", extra),
        };
        let routes = if extra.contains("[[routes]]") {
            String::new()
        } else {
            format!("[[routes]]\nname = \"test-gateway\"\nkind = \"gateway\"\ncidrs = [\"127.{n}.1.0/24\"]\n")
        };
        // 5 s unless the test sets its own.
        let handshake = if proxy_extra.contains("handshake_timeout") { "" } else { "handshake_timeout = \"5s\"\n" };
        let toml = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\n{handshake}shutdown_grace = \"5s\"\n{proxy_extra}\
             [dns]\nservers = [\"{dns}\"]\ntimeout = \"1s\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[tls]\n{tls}{tls_extra}{routes}{extra}"
        );
        let mut p = Self::start_with(port, &toml);
        p.admin_port = admin;
        p
    }

    pub fn start_with(port: u16, toml: &str) -> Proxy {
        Self::start_with_env(port, toml, &[])
    }

    /// [`Proxy::start_with`] with these variables set for the child (the AWS ones of its own calls).
    pub fn start_with_env(port: u16, toml: &str, env: &[(&str, String)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("vpcgate.toml");
        std::fs::write(&cfg, toml.replace("{DIR}", &dir.path().display().to_string())).unwrap();
        let log = dir.path().join("vpcgate.log");
        let child = Command::new(env!("CARGO_BIN_EXE_vpcgate"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("VPCGATE_CONFIG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proxy { child, port, admin_port: 0, config: cfg, log, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("vpcgate exited with {status}: {}", std::fs::read_to_string(&p.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "vpcgate did not listen: {}", p.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Parsed JSON log events of the `vpcgate::decision` target with `event == kind`.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.log_text().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["event"] == kind).collect()
    }

    /// Wait (bounded) for an event of `kind` about `host` and return it.
    pub fn wait_event(&self, kind: &str, host: &str) -> Value {
        eventually(10, || format!("no {kind} event for {host} in:\n{}", self.log_text()), || self.events(kind).into_iter().find(|v| v["host"] == host))
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 25 ms until it gives a value, for at most `secs` seconds; then fail with `what()`.
/// Every "wait for the proxy to do X" in the tests goes through here.
pub fn eventually<T>(secs: u64, what: impl Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {secs}s: {}", what());
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub struct CurlOut {
    pub code: i32,
    /// `%{http_connect}` (the proxy's answer to CONNECT) and `%{http_code}`.
    pub connect_status: u16,
    pub status: u16,
    pub body: String,
    pub stderr: String,
}

pub async fn curl(args: &[&str]) -> CurlOut {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl").args(["-sS", "-v", "--max-time", "20", "-w", "\n%{http_connect} %{http_code}"]).args(args).output(),
    )
    .await
    .expect("curl finished within 30s")
    .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut it = codes.split_whitespace().map(|c| c.parse::<u16>().unwrap_or(0));
    CurlOut {
        code: out.status.code().unwrap_or(-1),
        connect_status: it.next().unwrap_or(0),
        status: it.next().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

pub async fn curl_via(p: &Proxy, ca: &Path, url: &str) -> CurlOut {
    curl(&["--proxy", &p.url(), "--cacert", ca.to_str().unwrap(), url]).await
}

/// Send a raw proxy request and read the response head and body (bounded).
pub fn raw_request(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
            if len.is_none_or(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A plain GET to a local HTTP server (the admin listener): status and whole response text.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    raw_request(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
}

pub fn connect_req(target: &str) -> String {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
}

pub struct World {
    pub ca: TestCa,
    pub ca_path: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("vpcgate test upstream CA");
    let ca_path = ca.write_pem(dir.path());
    World { ca, ca_path, _dir: dir }
}

pub fn a(addrs: &[Ipv4Addr]) -> Vec<IpAddr> {
    addrs.iter().map(|x| IpAddr::V4(*x)).collect()
}

/// CONNECT through the proxy on `port` and complete a TLS handshake for `host` trusting `roots`:
/// an established tunnel, as a real client would hold it.
pub async fn tls_tunnel(port: u16, host: &str, roots: rustls::RootCertStore) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(connect_req(&format!("{host}:443")).as_bytes()).await.unwrap();
    let mut head = [0u8; 256];
    let k = tcp.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..k]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..k]));
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(rustls::pki_types::ServerName::try_from(host.to_string()).unwrap(), tcp).await.unwrap()
}

/// What a client of this proxy trusts: vpcgate's own CA in inspect mode, the upstream's otherwise.
pub fn client_roots(p: &Proxy, inspect: bool, w: &World) -> rustls::RootCertStore {
    if !inspect {
        return w.ca.root_store();
    }
    use rustls::pki_types::pem::PemObject;
    let mut r = rustls::RootCertStore::empty();
    let pem = std::fs::read(p.ca_path()).unwrap_or_default();
    r.add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap()).unwrap();
    r
}

/// Read a client stream until `done` holds for the text so far, the peer closes, or 5 s pass with
/// nothing new; the text read. (Responses arrive in several TLS records.)
pub async fn read_text_until<S: tokio::io::AsyncRead + Unpin>(s: &mut S, done: impl Fn(&str) -> bool) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&got)) {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(k)) if k > 0 => got.extend_from_slice(&buf[..k]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The fields of every `handshake_refused` line, in both modes and for both sides (besides the
/// subscriber's own `timestamp`, `level`, `target`).
pub const HANDSHAKE_REFUSED_FIELDS: [&str; 8] = ["addr", "client", "event", "host", "message", "reason", "route", "side"];

/// The field names of a JSON log line without the subscriber's own.
pub fn event_fields(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> =
        v.as_object().map(|o| o.keys().filter(|k| !["timestamp", "level", "target"].contains(&k.as_str())).cloned().collect()).unwrap_or_default();
    keys.sort();
    keys
}

/// A TLS 1.3 ClientHello record as a client would send it: a server_name entry per name (none
/// when empty; two are a trick, RFC 6066 allows one host_name), an ALPN extension when `alpn`
/// lists protocols, an x25519 key share, and early_data when `early`.
pub fn client_hello(names: &[&str], alpn: &[&str], early: bool) -> Vec<u8> {
    fn v16(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u16).to_be_bytes()[..], b].concat()
    }
    fn ext(t: u16, data: &[u8]) -> Vec<u8> {
        [&t.to_be_bytes()[..], &v16(data)].concat()
    }
    let mut exts = Vec::new();
    if !names.is_empty() {
        let list: Vec<u8> = names.iter().flat_map(|n| [&[0u8][..], &v16(n.as_bytes())].concat()).collect();
        exts.extend(ext(0x0000, &v16(&list)));
    }
    exts.extend(ext(0x000a, &v16(&[0x00, 0x1d])));
    exts.extend(ext(0x000d, &v16(&[0x04, 0x03, 0x08, 0x04])));
    if !alpn.is_empty() {
        let list: Vec<u8> = alpn.iter().flat_map(|p| [&[p.len() as u8][..], p.as_bytes()].concat()).collect();
        exts.extend(ext(0x0010, &v16(&list)));
    }
    exts.extend(ext(0x002b, &[2, 0x03, 0x04]));
    exts.extend(ext(0x002d, &[1, 1]));
    exts.extend(ext(0x0033, &v16(&[&[0x00, 0x1d][..], &v16(&[0x42; 32])].concat())));
    if early {
        exts.extend(ext(0x002a, &[]));
    }
    let mut body = vec![0x03, 0x03];
    body.extend([7u8; 32]);
    body.push(32);
    body.extend([9u8; 32]);
    body.extend(v16(&[0x13, 0x01]));
    body.extend([1, 0]);
    body.extend(v16(&exts));
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    [&[22u8, 3, 1][..], &v16(&hs)].concat()
}

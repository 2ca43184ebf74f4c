//! TLS test servers on loopback: a throw-away CA (rcgen), a rustls HTTP/1.1 upstream, and an
//! `openssl s_server` that only offers a cipher suite without forward secrecy.

use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A free TCP port on 127.0.0.1 for a child process to listen on, taken below the kernel's
/// ephemeral range (`ip_local_port_range`): a port the kernel hands out (bind to port 0, or the
/// local side of any outgoing connection of a parallel test) could be taken again between this
/// check and the child's bind, and the child would then fail to start. Ports are walked in order
/// from a start that differs per test process, so parallel tests in one binary never get the same
/// one.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (first, span) = if low > 12_000 { (10_000, low - 10_000) } else { (1_024, 0) };
    if span > 0 {
        let start = (std::process::id() * 997) % span;
        for _ in 0..span {
            let port = first + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % span;
            if StdTcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    StdTcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

// ---------------------------------------------------------------------------------------------
// Test CA
// ---------------------------------------------------------------------------------------------

/// A throw-away certificate authority (ECDSA P-256, CA:true).
pub struct TestCa {
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    common_name: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { cert_pem: cert.pem(), cert_der: cert.der().clone(), common_name: common_name.to_string(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` (DNS names or IP literals), signed by this CA, with its
    /// own fresh ECDSA P-256 key. Returns (certificate PEM, PKCS#8 private key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate leaf key");
        let cert = self.sign_leaf(names, &key);
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `cert_pem` into `dir` as `<common name>-ca.pem` (non-alphanumerics replaced by
    /// '_') and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let stem: String = self.common_name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = dir.join(format!("{stem}-ca.pem"));
        std::fs::write(&path, &self.cert_pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// A root store trusting only this CA (for rustls clients in tests).
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der()).expect("add test CA to root store");
        roots
    }

    fn sign_leaf(&self, names: &[&str], key: &KeyPair) -> rcgen::Certificate {
        assert!(!names.is_empty(), "a leaf certificate needs at least one name");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.signed_by(key, &self.issuer).expect("sign leaf")
    }
}

// ---------------------------------------------------------------------------------------------
// rustls HTTP/1.1 upstream
// ---------------------------------------------------------------------------------------------

/// A TLS server speaking minimal HTTP/1.1 (keep-alive). Every request gets `200` with body
/// `upstream {label} saw {METHOD} {PATH} host={Host} sni={SNI}\n` (`-` where Host or SNI is
/// absent); `/bytes/N` gets N bytes of `x`. Stops accepting (and drops open connections) on drop.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsUpstream {
    /// TLS 1.2 and 1.3 (rustls defaults), ALPN `http/1.1`, leaf for `names` signed by `ca`.
    /// `bind` may use port 0; the real address is in `addr`.
    pub async fn start(bind: SocketAddr, ca: &TestCa, names: &[&str], label: &str) -> TlsUpstream {
        Self::start_with_versions(bind, ca, names, label, rustls::ALL_VERSIONS).await
    }

    /// Same as `start`, but TLS 1.2 only (like S3 PrivateLink interface endpoints).
    pub async fn start_tls12_only(bind: SocketAddr, ca: &TestCa, names: &[&str], label: &str) -> TlsUpstream {
        Self::start_with_versions(bind, ca, names, label, &[&rustls::version::TLS12]).await
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    async fn start_with_versions(
        bind: SocketAddr,
        ca: &TestCa,
        names: &[&str],
        label: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsUpstream {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate leaf key");
        let cert = ca.sign_leaf(names, &key);
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("TlsUpstream: bind {bind}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let hs_counter = handshakes.clone();
        let label: Arc<str> = Arc::from(label);

        let task = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops them too.
            let mut conns = JoinSet::new();
            loop {
                let (tcp, _peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let label = label.clone();
                let hs = hs_counter.clone();
                conns.spawn(async move {
                    let _ = serve_tls_connection(acceptor, tcp, &label, &hs).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });

        TlsUpstream { addr, connections, handshakes, task }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_tls_connection(acceptor: TlsAcceptor, tcp: TcpStream, label: &str, handshakes: &AtomicUsize) -> std::io::Result<()> {
    let tls = acceptor.accept(tcp).await?;
    handshakes.fetch_add(1, Ordering::SeqCst);
    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
    serve_http1(BufReader::new(tls), label, &sni).await
}

const MAX_HEAD: usize = 64 * 1024;

/// Minimal HTTP/1.1 server loop over one connection.
async fn serve_http1<S>(mut stream: BufReader<S>, label: &str, sni: &str) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // After a request for /once…, the next request on the connection is read and not answered:
    // the connection closes, as an endpoint that ends idle or used connections on its own does.
    let mut drop_next = false;
    loop {
        // Request line, skipping stray empty lines between requests.
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(()); // client closed between requests
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();

        let mut headers: Vec<(String, String)> = Vec::new();
        let mut head_len = line.len();
        loop {
            let mut h = String::new();
            let n = stream.read_line(&mut h).await?;
            head_len += n;
            if n == 0 {
                return Ok(()); // EOF inside the head
            }
            if head_len > MAX_HEAD {
                return Err(std::io::Error::other("request head too large"));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

        if drop_next {
            return Ok(());
        }
        drop_next = path.starts_with("/once");
        if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            stream.flush().await?;
        }
        // An answer before the request body (as S3 does for a refused upload), then nothing more.
        if path.starts_with("/early") {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await?;
            stream.flush().await?;
            std::future::pending::<()>().await;
        }
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            discard_chunked_body(&mut stream).await?;
        } else if let Some(len) = header("content-length") {
            let len: u64 = len.parse().map_err(|_| std::io::Error::other("bad Content-Length"))?;
            let copied = tokio::io::copy(&mut (&mut stream).take(len), &mut tokio::io::sink()).await?;
            if copied != len {
                return Ok(()); // truncated body: client went away
            }
        }

        let connection = header("connection").map(|v| v.to_ascii_lowercase());
        let close = match connection.as_deref() {
            Some(c) if c.contains("close") => true,
            Some(c) if c.contains("keep-alive") => false,
            _ => version.eq_ignore_ascii_case("HTTP/1.0"),
        };
        let conn_header = if close { "close" } else { "keep-alive" };
        let head_only = method.eq_ignore_ascii_case("HEAD");

        // Stalls, for idle-timeout tests: no response at all, or a head and 10 of 100 body bytes.
        if path.starts_with("/stall-head") {
            std::future::pending::<()>().await;
        }
        if path.starts_with("/stall-body") {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await?;
            stream.flush().await?;
            std::future::pending::<()>().await;
        }
        let bytes_n = path.split('?').next().and_then(|p| p.strip_prefix("/bytes/")).and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = bytes_n {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {n}\r\nConnection: {conn_header}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            if !head_only {
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let take = left.min(chunk.len() as u64) as usize;
                    stream.write_all(&chunk[..take]).await?;
                    left -= take as u64;
                }
            }
        } else {
            let host = header("host").unwrap_or("-");
            let body = format!("upstream {label} saw {method} {path} host={host} sni={sni}\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: {conn_header}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            if !head_only {
                stream.write_all(body.as_bytes()).await?;
            }
        }
        stream.flush().await?;

        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

async fn discard_chunked_body<S>(stream: &mut BufReader<S>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let mut size_line = String::new();
        if stream.read_line(&mut size_line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let size_hex = size_line.trim().split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_hex, 16).map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if stream.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let copied = tokio::io::copy(&mut (&mut *stream).take(size + 2), &mut tokio::io::sink()).await?;
        if copied != size + 2 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// openssl s_server without forward secrecy
// ---------------------------------------------------------------------------------------------

/// An `openssl s_server -www` child process that offers only TLS 1.2 with
/// `TLS_RSA_WITH_AES_128_GCM_SHA256` (RSA key exchange, no forward secrecy). Its RSA-2048 leaf
/// is signed by the given `TestCa`. Killed on drop.
pub struct NonFsUpstream {
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl NonFsUpstream {
    /// Starts the server on `bind` (port 0 picks a free port) and waits (up to 10 s) until it
    /// accepts TCP connections. Blocking: call it before starting clients, or from
    /// `spawn_blocking` if the runtime must keep serving other tasks meanwhile.
    pub fn start(bind: SocketAddr, ca: &TestCa, names: &[&str]) -> NonFsUpstream {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("nonfs-upstream-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).expect("create NonFsUpstream temp dir");
        let key_path = dir.join("key.pem");
        let cert_path = dir.join("cert.pem");
        let stderr_path = dir.join("s_server.stderr");

        // ring cannot generate RSA keys, so openssl does; rcgen signs the certificate.
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&key_path)
            .output()
            .expect("run openssl genpkey (is openssl installed?)");
        assert!(out.status.success(), "openssl genpkey failed: {}", String::from_utf8_lossy(&out.stderr));
        let key_pem = std::fs::read_to_string(&key_path).expect("read RSA key");
        let key = KeyPair::from_pem(&key_pem).expect("load RSA key (PKCS#8)");
        let cert = ca.sign_leaf(names, &key);
        std::fs::write(&cert_path, cert.pem()).expect("write RSA leaf");

        let addr = if bind.port() == 0 {
            let l = StdTcpListener::bind((bind.ip(), 0)).expect("pick a free port");
            l.local_addr().expect("local_addr")
        } else {
            bind
        };

        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut child = Command::new("openssl")
            .arg("s_server")
            .arg("-accept")
            .arg(addr.to_string())
            .args(["-no_tls1_3", "-cipher", "AES128-GCM-SHA256", "-cert"])
            .arg(&cert_path)
            .arg("-key")
            .arg(&key_path)
            .arg("-www")
            // s_server reads commands from stdin: keep it open (piped, never written).
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn openssl s_server");

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("openssl s_server on {addr} exited early ({status}): {err}");
            }
            if StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("openssl s_server on {addr} did not accept within 10 s: {err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        NonFsUpstream { addr, child, dir }
    }
}

impl Drop for NonFsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

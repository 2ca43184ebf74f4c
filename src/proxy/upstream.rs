//! Upstream side of inspect mode: rustls client connections to the checked address (SNI = the
//! requested host, verified against public roots plus `tls.extra_roots`, TLS 1.2+ with forward
//! secrecy only since rustls has no other suites), HTTP/1.1 on top, and a pool of idle connections
//! keyed by (host, address) that every tunnel shares.

use crate::policy::request::UpstreamFailure;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A request body's error: the client's (hyper's) or vpcgate's own when it cuts a body that turned
/// out to be refused mid-stream (a part after a form's file).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = BoxBody<Bytes, BodyError>;

/// A ready HTTP/1.1 connection to an upstream, with the TLS facts of its handshake.
pub struct UpstreamConn {
    pub sender: SendRequest<ReqBody>,
    pub tls_version: &'static str,
    pub cipher: String,
    /// "VERSION CIPHER", for each request line.
    pub tls: Arc<str>,
}

type Key = (String, SocketAddr);

pub struct Pool {
    tls: Arc<ClientConfig>,
    idle: Mutex<HashMap<Key, Vec<(UpstreamConn, Instant)>>>,
    per_host: usize,
    max_idle: usize,
    idle_timeout: Duration,
    /// Whether the task that drops expired and closed idle connections runs.
    sweeping: std::sync::atomic::AtomicBool,
}

/// Build the upstream TLS client configuration: public roots plus extra roots, ALPN http/1.1.
pub fn client_config(extra_roots: &[rustls::pki_types::CertificateDer<'static>]) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(crate::certs::public_roots());
    if bad > 0 {
        tracing::debug!(unparsable = bad, "some public roots were skipped");
    }
    for c in extra_roots {
        roots.add(c.clone()).map_err(|e| format!("a tls.extra_roots certificate is not a usable root ({e}); give CA certificates in PEM"))?;
    }
    let provider = Arc::new(preferred_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot build the upstream TLS configuration ({e})"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // TLS 1.3 resumption keeps an (EC)DHE exchange (rustls offers only psk_dhe_ke); a resumed
    // TLS 1.2 session has none, so it is never attempted.
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(256).tls12_resumption(rustls::client::Tls12Resumption::Disabled);
    Ok(cfg)
}

/// ring's provider with AES-128-GCM first: every suite is forward-secret either way, and AES-128
/// (10 rounds, SHA-256 with hardware support) costs less per byte and per handshake than AES-256.
pub fn preferred_provider() -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
        _ => 4,
    };
    p.cipher_suites.sort_by_key(rank);
    p
}

/// Read buffer under an upstream TLS stream: rustls asks the socket for one record at a time,
/// a buffer lets one receive carry several.
const UPSTREAM_READ_BUF: usize = 128 * 1024;

/// Encrypted bytes rustls may queue for sending: one flush then carries up to 16 records in one
/// `writev` (rustls's default, 64 KiB, splits a large body chunk into many small sends).
pub const TLS_SEND_BUF: usize = 256 * 1024;

pub fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2",
        Some(_) => "other",
        None => "",
    }
}

pub fn suite_name(s: Option<rustls::SupportedCipherSuite>) -> String {
    s.map(|s| crate::policy::tls::suite_name(u16::from(s.suite()))).unwrap_or_default()
}

/// What a failed TLS handshake with an upstream was, typed.
pub fn tls_failure(e: &std::io::Error) -> UpstreamFailure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => UpstreamFailure::Untrusted { detail: format!("{c:?}") },
        Some(rustls::Error::PeerIncompatible(p)) => UpstreamFailure::NoForwardSecrecy { detail: format!("{p:?}") },
        Some(rustls::Error::AlertReceived(a)) => UpstreamFailure::Alert { alert: format!("{a:?}") },
        Some(other) => UpstreamFailure::Tls { detail: other.to_string() },
        None => UpstreamFailure::ConnectFailed { error: e.to_string() },
    }
}

/// Why an upstream connection could not be made, as the sentence the client sees.
pub fn explain_tls_error(host: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    tls_failure(e).sentence(host, addr)
}

impl Pool {
    /// `max_idle` bounds the idle connections over all (host, address) keys: each holds a TLS
    /// session and a 128 KiB read buffer, and every bucket name is a key of its own.
    pub fn new(tls: ClientConfig, per_host: usize, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool { tls: Arc::new(tls), idle: Mutex::new(HashMap::new()), per_host, max_idle, idle_timeout, sweeping: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Idle connections held now, over all keys.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool").values().map(Vec::len).sum()
    }

    /// Drop expired and closed idle connections and empty keys.
    fn sweep(&self) {
        self.sweep_locked(&mut self.idle.lock().expect("pool"));
    }

    fn sweep_locked(&self, idle: &mut HashMap<Key, Vec<(UpstreamConn, Instant)>>) {
        idle.retain(|_, list| {
            list.retain(|(c, since)| !c.sender.is_closed() && since.elapsed() < self.idle_timeout);
            !list.is_empty()
        });
    }

    /// Started with the first connection given back; ends when the pool is dropped (a reload that
    /// changed `[tls]`).
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = self.idle_timeout.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => return,
                }
            }
        });
    }

    /// Whether an open idle connection to (host, addr) is pooled.
    pub fn has_idle(&self, host: &str, addr: SocketAddr) -> bool {
        let idle = self.idle.lock().expect("pool");
        idle.get(&(host.to_string(), addr)).is_some_and(|l| l.iter().any(|(c, since)| since.elapsed() < self.idle_timeout && !c.sender.is_closed()))
    }

    /// An idle connection to (host, addr), if one is still open.
    pub fn take(&self, host: &str, addr: SocketAddr) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.get_mut(&(host.to_string(), addr))?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < self.idle_timeout && !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Give a connection back once its current exchange has finished.
    pub fn put_back_when_ready(self: &Arc<Self>, host: String, addr: SocketAddr, mut conn: UpstreamConn) {
        self.start_sweeper();
        let pool = self.clone();
        tokio::spawn(async move {
            // Ready means the previous response body was read to its end and the connection can
            // carry another request; a connection that is not ready within the idle timeout goes.
            match tokio::time::timeout(pool.idle_timeout, conn.sender.ready()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            let mut idle = pool.idle.lock().expect("pool");
            let mut total: usize = idle.values().map(Vec::len).sum();
            if total >= pool.max_idle {
                // At the cap: drop dead entries of every key before refusing this one.
                pool.sweep_locked(&mut idle);
                total = idle.values().map(Vec::len).sum();
            }
            let key = (host, addr);
            let list = idle.entry(key.clone()).or_default();
            list.retain(|(c, since)| !c.sender.is_closed() && since.elapsed() < pool.idle_timeout);
            if list.len() < pool.per_host && total < pool.max_idle {
                list.push((conn, Instant::now()));
            } else if list.is_empty() {
                idle.remove(&key);
            }
        });
    }

    /// Handshake TLS and HTTP/1.1 on `tcp`, which is connected to the checked address.
    pub async fn open(&self, host: &str, tcp: TcpStream, timeout: Duration) -> Result<UpstreamConn, UpstreamFailure> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| UpstreamFailure::Tls { detail: format!("{host} is not a TLS server name ({e})") })?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tcp = tokio::io::BufReader::with_capacity(UPSTREAM_READ_BUF, tcp);
        let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Err(_) => return Err(UpstreamFailure::HandshakeTimeout { after: timeout }),
            Ok(Err(e)) => return Err(tls_failure(&e)),
            Ok(Ok(t)) => t,
        };
        let (tls_version, cipher) = {
            let c = tls.get_ref().1;
            (version_name(c.protocol_version()), suite_name(c.negotiated_cipher_suite()))
        };
        let mut tls = tls;
        tls.get_mut().1.set_buffer_limit(Some(TLS_SEND_BUF));
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(crate::proxy::io::AllAtHand::new(tls)))
            .await
            .map_err(|e| UpstreamFailure::Http { detail: format!("HTTP/1.1 did not start: {e}") })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let tls = Arc::from(format!("{tls_version} {cipher}"));
        Ok(UpstreamConn { sender, tls_version, cipher, tls })
    }
}

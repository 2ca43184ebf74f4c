//! `loadgen serve`: the benchmark's stand-in for S3 and its resolver.
//!
//! - A test CA generated at start (rcgen), written as PEM to `--ca-out` once everything listens
//!   (the script waits for that file). Keys: `--ca-key`/`--leaf-key` PKCS#8 PEM files (run.sh
//!   passes RSA-2048 keys, like S3's certificate chain), else fresh ECDSA P-256 keys.
//! - A TLS HTTP/1.1 upstream on `--upstream` (port 443), leaf for `*.ZONE` and `ZONE`, keep-alive,
//!   TCP_NODELAY, answering `GET /bytes/N` with N bytes from one static buffer, and `PUT /sink` (body read and dropped) with 200.
//! - The DNS responder of `dns.rs` on `--dns`, answering every name under ZONE with the upstream's IP.

use crate::args::Args;
use crate::dns::{self, Zone};
use crate::http::Conn;
use crate::{tls, R};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The static body every response is cut from.
const BODY_BUF: usize = 1 << 20;
/// A response head and a body up to this size go out in one write (one TLS record).
const SMALL: usize = 16 * 1024 - 256;

/// A key from a PKCS#8 PEM file (e.g. RSA-2048 made by `openssl genpkey`), else a new ECDSA P-256 key.
fn key(file: Option<&str>) -> R<KeyPair> {
    match file {
        Some(f) => {
            let pem = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
            KeyPair::from_pem(&pem).map_err(|e| format!("{f}: not a usable PKCS#8 key ({e})"))
        }
        None => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string()),
    }
}

fn certs(zone: &str, ca_key: KeyPair, leaf_key: KeyPair) -> R<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let e = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "vpcgate bench upstream CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec![format!("*.{zone}"), zone.to_string()]).map_err(e)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, zone);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(e)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((ca_cert.pem(), vec![leaf_cert.der().clone()], key))
}

pub async fn main(a: &Args) -> R<()> {
    let up = a.addr("upstream")?;
    let dns_addr = a.addr("dns")?;
    let ca_out = PathBuf::from(a.req("ca-out")?);
    let zone = a.opt("zone").unwrap_or("s3.us-east-1.amazonaws.com").to_ascii_lowercase();
    let IpAddr::V4(up_ip) = up.ip() else { return Err("--upstream must be IPv4".into()) };

    let ca_key = key(a.opt("ca-key"))?;
    let leaf_key = key(a.opt("leaf-key"))?;
    let kind = if leaf_key.is_compatible(&rcgen::PKCS_RSA_SHA256) { "RSA" } else { "ECDSA P-256" };
    let (ca_pem, chain, key) = certs(&zone, ca_key, leaf_key)?;
    let acceptor = TlsAcceptor::from(tls::server_config(chain, key)?);
    let body: &'static [u8] = Box::leak(vec![b'x'; BODY_BUF].into_boxed_slice());

    dns::serve(dns_addr, Arc::new(Zone { suffix: zone.clone(), answer: up_ip })).await?;
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.set_reuseaddr(true).map_err(|e| e.to_string())?;
    sock.bind(up).map_err(|e| format!("cannot bind {up} ({e}); port 443 needs root"))?;
    let listener = sock.listen(4096).map_err(|e| e.to_string())?;

    let tmp = ca_out.with_extension("tmp");
    std::fs::write(&tmp, ca_pem).map_err(|e| format!("write {} ({e})", tmp.display()))?;
    std::fs::rename(&tmp, &ca_out).map_err(|e| format!("rename to {} ({e})", ca_out.display()))?;
    eprintln!("loadgen serve: upstream https://{up} (*.{zone}, {kind} leaf), DNS {dns_addr}, CA {}", ca_out.display());

    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    connection(tcp, acceptor, body).await;
                });
            }
            Err(e) => {
                eprintln!("loadgen serve: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, body: &'static [u8]) {
    // rustls reads about 4 KiB per call; a buffer under it lets one receive serve many (uploads).
    let tcp = tokio::io::BufReader::with_capacity(256 * 1024, tcp);
    let Ok(tls) = acceptor.accept(tcp).await else { return };
    let mut c = Conn::new(tls, 8 * 1024);
    loop {
        let head = match c.read_head().await {
            Ok(Some(h)) => h,
            _ => return,
        };
        if c.skip_body(&head).await.is_err() {
            return;
        }
        let size = match (head.first.first().map(|s| s.as_str()), head.first.get(1)) {
            (Some("GET"), Some(p)) => p.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()),
            _ => None,
        };
        let sink = matches!((head.first.first().map(|s| s.as_str()), head.first.get(1).map(|s| s.as_str())), (Some("PUT"), Some("/sink")));
        let ok = match size {
            Some(n) => respond(&mut c.io, n, body).await,
            None if sink => c.io.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.is_ok(),
            None => c.io.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await.is_ok(),
        };
        if !ok || c.io.flush().await.is_err() {
            return;
        }
        if head.close {
            let _ = c.io.shutdown().await;
            return;
        }
    }
}

async fn respond<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, n: u64, body: &'static [u8]) -> bool {
    let mut first = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    let inline = (n as usize).min(SMALL.saturating_sub(first.len()));
    first.extend_from_slice(&body[..inline]);
    if w.write_all(&first).await.is_err() {
        return false;
    }
    let mut left = n - inline as u64;
    while left > 0 {
        let k = (left as usize).min(body.len());
        if w.write_all(&body[..k]).await.is_err() {
            return false;
        }
        left -= k as u64;
    }
    true
}

//! hudsucker as a benchmark peer: `hudsucker-peer LISTEN CA_OUT UPSTREAM_CA UPSTREAM_IP`.
//! A fresh CA (written to CA_OUT for the load generator to trust), hudsucker's rcgen authority
//! (1,000 cached leaves) and no-op handlers, as its own example sets it up. The upstream client
//! trusts only UPSTREAM_CA and resolves every name to UPSTREAM_IP, so nothing leaves loopback.
//! hudsucker's defaults are kept everywhere else (aws-lc-rs, no TCP_NODELAY on accepted sockets);
//! the upstream connector sets TCP_NODELAY, as any sane client does.

use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use hudsucker::rustls::crypto::aws_lc_rs;
use hudsucker::Proxy;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A resolver that answers one address for every name.
#[derive(Clone)]
struct OneAddress(IpAddr);

impl tower_service::Service<Name> for OneAddress {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        let addr = SocketAddr::new(self.0, 0);
        Box::pin(async move { Ok(vec![addr].into_iter()) })
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("hudsucker-peer: {what}: {e}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        fail("usage", "hudsucker-peer LISTEN CA_OUT UPSTREAM_CA UPSTREAM_IP");
    }
    let listen: SocketAddr = args[1].parse().unwrap_or_else(|e| fail("LISTEN", e));
    let upstream_ip: IpAddr = args[4].parse().unwrap_or_else(|e| fail("UPSTREAM_IP", e));
    if !listen.ip().is_loopback() || !upstream_ip.is_loopback() {
        fail("addresses", "LISTEN and UPSTREAM_IP must be loopback addresses");
    }

    let key = KeyPair::generate().unwrap_or_else(|e| fail("CA key", e));
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "hudsucker benchmark peer CA");
    let cert = params.self_signed(&key).unwrap_or_else(|e| fail("CA certificate", e));
    std::fs::write(&args[2], cert.pem()).unwrap_or_else(|e| fail(&args[2], e));
    let ca = RcgenAuthority::new(Issuer::new(params, key), 1_000, aws_lc_rs::default_provider());

    let mut roots = hudsucker::rustls::RootCertStore::empty();
    let pem = std::fs::read(&args[3]).unwrap_or_else(|e| fail(&args[3], e));
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap_or_else(|e| fail(&args[3], e))).unwrap_or_else(|e| fail(&args[3], e));
    }
    let tls = hudsucker::rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| fail("TLS versions", e))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(OneAddress(upstream_ip));
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);

    let proxy = Proxy::builder()
        .with_addr(listen)
        .with_ca(ca)
        .with_http_connector(https)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .build()
        .unwrap_or_else(|e| fail("proxy", e));
    if let Err(e) = proxy.start().await {
        fail("serve", e);
    }
}

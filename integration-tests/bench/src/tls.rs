//! rustls (ring) configurations: the load generator's client and the upstream's server.

use crate::R;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting exactly the given PEM files (the upstream's test CA and vpcgate's CA).
/// Session resumption is off: every connection is a full handshake, like the AWS CLI, boto3 and
/// the Go SDK, and the same in all three setups.
pub fn client_config(ca_files: &[&Path]) -> R<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for f in ca_files {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
            .map_err(|e| format!("cannot read {} ({e})", f.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not PEM ({e})", f.display()))?;
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: not a usable root ({e})", f.display()))?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The upstream: TLS 1.2 and 1.3 (rustls defaults, like S3), ALPN http/1.1.
pub fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> R<Arc<rustls::ServerConfig>> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("upstream certificate ({e})"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

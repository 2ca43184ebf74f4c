//! vpcgate's certificate authority (rcgen) and the leaf certificates it mints for inspected tunnels.
//!
//! - The CA is ECDSA P-256 with name constraints that limit it to AWS's domains, so a leaked key
//!   cannot impersonate any other site. Its key file is written with mode 0600.
//! - Each host gets its own leaf with its own key (never the CA's key), SAN = the host, short
//!   validity, kept in a bounded cache; concurrent first requests for one host mint once.

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// DNS subtrees the CA may sign for, besides `tls.ca_extra_names`.
pub const AWS_NAME_CONSTRAINTS: &[&str] = &["amazonaws.com", "amazonaws.com.cn", "api.aws"];

/// Leaf validity; the cache drops a leaf well before it expires.
const LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const LEAF_CACHE_TTL: Duration = Duration::from_secs(12 * 3600);
const CA_VALIDITY_DAYS: i64 = 825;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA files {cert} and {key} already exist; pass --force to replace them (clients that trust the old CA must then be given the new one)")]
    Exists { cert: String, key: String },
    #[error("cannot write {path} ({error}); create the directory or set tls.ca_cert / tls.ca_key to a writable place")]
    Write { path: String, error: String },
    #[error("cannot read the CA file {path} ({error}); run `vpcgate ca init` or fix tls.ca_cert / tls.ca_key")]
    Read { path: String, error: String },
    #[error("the CA file {path} is not usable ({error}); run `vpcgate ca init --force` to create a new CA")]
    Invalid { path: String, error: String },
    #[error("the CA key {path} is readable by others (mode {mode:o}); run chmod 600 {path}")]
    KeyMode { path: String, mode: u32 },
    #[error("only one of tls.ca_cert ({cert}) and tls.ca_key ({key}) exists; restore the other or run `vpcgate ca init --force`")]
    HalfPresent { cert: String, key: String },
    #[error("cannot mint a certificate for {host} ({error})")]
    Mint { host: String, error: String },
    #[error("the CA key {key} does not belong to the CA certificate {cert} (a leaf it signed did not verify); restore the matching pair or run `vpcgate ca init --force`")]
    Mismatch { cert: String, key: String },
    #[error("the CA certificate {path} expired on {when}; run `vpcgate ca init --force` and give clients the new CA")]
    Expired { path: String, when: String },
    #[error("the CA certificate {path} cannot sign for AWS names ({error}); use a CA without name constraints or one that permits amazonaws.com, or run `vpcgate ca init --force`")]
    CannotSignAws { path: String, error: String },
}

/// Create a new CA; refuses to overwrite existing files unless `force`.
pub fn init_ca(cert_path: &Path, key_path: &Path, extra_names: &[String], force: bool) -> Result<(), CaError> {
    if !force && (cert_path.exists() || key_path.exists()) {
        return Err(CaError::Exists { cert: cert_path.display().to_string(), key: key_path.display().to_string() });
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Mint { host: "CA".into(), error: e.to_string() })?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| CaError::Mint { host: "CA".into(), error: e.to_string() })?;
    let mut dn = DistinguishedName::new();
    let host = std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
    dn.push(DnType::CommonName, format!("vpcgate local CA {}", host).trim().to_string());
    dn.push(DnType::OrganizationName, "vpcgate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let permitted = AWS_NAME_CONSTRAINTS.iter().map(|s| s.to_string()).chain(extra_names.iter().cloned()).map(GeneralSubtree::DnsName).collect();
    // No IP addresses at all: without an excluded IP subtree, DNS-only constraints leave IP SANs
    // unconstrained (RFC 5280), and a leaked key could sign for https://10.0.0.5/.
    let no_ips = vec![GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])), GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16]))];
    params.name_constraints = Some(NameConstraints { permitted_subtrees: permitted, excluded_subtrees: no_ips });
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key).map_err(|e| CaError::Mint { host: "CA".into(), error: e.to_string() })?;
    write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let werr = |e: std::io::Error| CaError::Write { path: path.display().to_string(), error: e.to_string() };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(werr)?;
    std::io::Write::write_all(&mut f, data).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// The key file's permission bits, where the platform has them.
pub fn key_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A loaded CA, able to sign leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub cert_path: PathBuf,
    /// Leaves never outlive the CA.
    pub not_after: time::OffsetDateTime,
    /// What a leaked key of this CA could do beyond AWS names, for the start-up log.
    pub warnings: Vec<String>,
    /// Its DNS name constraints, so that vpcgate never presents a leaf the client would reject.
    dns_constraints: DnsConstraints,
}

/// The DNS subtrees a CA certificate permits and excludes (RFC 5280 §4.2.1.10); no permitted
/// list means any name not excluded.
#[derive(Debug, Clone, Default)]
struct DnsConstraints {
    permitted: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl DnsConstraints {
    fn of(cert: &x509_parser::certificate::X509Certificate<'_>) -> DnsConstraints {
        use x509_parser::extensions::GeneralName;
        let dns = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| -> Option<Vec<String>> {
            let s = subtrees.as_ref()?;
            let names: Vec<String> = s.iter().filter_map(|g| if let GeneralName::DNSName(n) = g.base { Some(n.to_ascii_lowercase()) } else { None }).collect();
            // Constraints apply per name type: a list without DNS names leaves DNS names free.
            Some(names).filter(|n| !n.is_empty())
        };
        match cert.name_constraints() {
            Ok(Some(nc)) => DnsConstraints { permitted: dns(&nc.value.permitted_subtrees), excluded: dns(&nc.value.excluded_subtrees).unwrap_or_default() },
            _ => DnsConstraints::default(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let within = |base: &String| {
            let base = base.trim_start_matches('.');
            host == base || host.strip_suffix(base).is_some_and(|rest| rest.ends_with('.'))
        };
        self.permitted.as_ref().is_none_or(|p| p.iter().any(within)) && !self.excluded.iter().any(within)
    }
}

/// Sentences about a CA certificate's name constraints: none at all, or none on IP addresses.
fn constraint_warnings(cert: &x509_parser::certificate::X509Certificate<'_>, path: &Path) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    match cert.name_constraints() {
        Ok(Some(nc)) => {
            let excludes_ips = nc.value.excluded_subtrees.as_ref().is_some_and(|s| s.iter().any(|g| matches!(g.base, GeneralName::IPAddress(_))));
            let permits_only_ips = nc.value.permitted_subtrees.as_ref().is_some_and(|s| s.iter().any(|g| matches!(g.base, GeneralName::IPAddress(_))));
            if excludes_ips || permits_only_ips {
                vec![]
            } else {
                vec![format!(
                    "the CA certificate {} does not exclude IP addresses, so a leaked key could impersonate any https://IP/ site; run `vpcgate ca init --force` for a CA that excludes them",
                    path.display()
                )]
            }
        }
        _ => vec![format!(
            "the CA certificate {} has no name constraints, so a leaked key could impersonate any site to clients that trust it; prefer a CA from `vpcgate ca init`",
            path.display()
        )],
    }
}

impl Ca {
    /// Load the CA; when neither file exists and `create` is set, create it first.
    /// Returns the CA and whether it was created now.
    pub fn load_or_create(cert_path: &Path, key_path: &Path, extra_names: &[String], create: bool) -> Result<(Ca, bool), CaError> {
        let mut created = false;
        match (cert_path.exists(), key_path.exists()) {
            (false, false) if create => {
                init_ca(cert_path, key_path, extra_names, false)?;
                created = true;
            }
            (true, false) | (false, true) => return Err(CaError::HalfPresent { cert: cert_path.display().to_string(), key: key_path.display().to_string() }),
            _ => {}
        }
        if let Some(mode) = key_mode(key_path) {
            if mode & 0o077 != 0 {
                return Err(CaError::KeyMode { path: key_path.display().to_string(), mode });
            }
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| CaError::Read { path: p.display().to_string(), error: e.to_string() });
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let invalid = |p: &Path, e: String| CaError::Invalid { path: p.display().to_string(), error: e };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(key_path, e.to_string()))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| invalid(cert_path, e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| invalid(cert_path, e.to_string()))?;
        let (not_after, warnings, dns_constraints) = {
            let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| invalid(cert_path, e.to_string()))?;
            (parsed.validity().not_after.to_datetime(), constraint_warnings(&parsed, cert_path), DnsConstraints::of(&parsed))
        };
        let ca = Ca { issuer, cert_der, cert_pem, cert_path: cert_path.to_path_buf(), not_after, warnings, dns_constraints };
        if ca.expired() {
            return Err(CaError::Expired { path: cert_path.display().to_string(), when: ca.not_after.date().to_string() });
        }
        ca.self_check(key_path)?;
        Ok((ca, created))
    }

    /// Whether a leaf for `host` from this CA verifies at a client: inside its DNS name constraints.
    pub fn may_sign(&self, host: &str) -> bool {
        self.dns_constraints.allows(host)
    }

    pub fn expired(&self) -> bool {
        self.not_after <= time::OffsetDateTime::now_utc()
    }

    /// Sign a leaf for an AWS name and verify it against the certificate, as a client would: a
    /// key that belongs to another certificate, or constraints that exclude AWS, fail here at
    /// start rather than in every client's handshake.
    fn self_check(&self, key_path: &Path) -> Result<(), CaError> {
        let mut roots = rustls::RootCertStore::empty();
        let cert = self.cert_path.display().to_string();
        roots.add(self.cert_der.clone()).map_err(|e| CaError::Invalid { path: cert.clone(), error: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CaError::Invalid { path: cert.clone(), error: e.to_string() })?;
        let now = rustls::pki_types::UnixTime::now();
        // One name per AWS DNS suffix: a CA limited to China's amazonaws.com.cn is fine.
        let mut refusal = String::new();
        for suffix in AWS_NAME_CONSTRAINTS {
            let host = format!("vpcgate-self-check.s3.{suffix}");
            let leaf = self.mint(&host)?;
            let name = rustls::pki_types::ServerName::try_from(host).expect("a valid DNS name");
            match verifier.verify_server_cert(&leaf.cert[0], &[], &name, &[], now) {
                Ok(_) => return Ok(()),
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)) => {
                    return Err(CaError::Mismatch { cert, key: key_path.display().to_string() })
                }
                Err(e) => refusal = e.to_string(),
            }
        }
        Err(CaError::CannotSignAws { path: cert, error: refusal })
    }

    /// Mint a leaf for `host` with a fresh P-256 key, signed by the CA.
    pub fn mint(&self, host: &str) -> Result<CertifiedKey, CaError> {
        let merr = |e: String| CaError::Mint { host: host.to_string(), error: e };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| merr(e.to_string()))?;
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(|e| merr(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(10);
        params.not_after = (now + time::Duration::seconds(LEAF_VALIDITY.as_secs() as i64)).min(self.not_after);
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| merr(e.to_string()))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key_der).map_err(|e| merr(e.to_string()))?;
        Ok(CertifiedKey::new(vec![cert.der().clone(), self.cert_der.clone()], signing))
    }
}

/// One cache slot: filled once, shared by every waiter.
type Slot = Arc<tokio::sync::OnceCell<(Arc<CertifiedKey>, Instant)>>;

/// Bounded leaf cache. Concurrent first requests for one host share one mint.
pub struct LeafCache {
    ca: Ca,
    capacity: usize,
    inner: Mutex<(HashMap<String, Slot>, VecDeque<String>)>,
    pub hits: AtomicU64,
    pub mints: AtomicU64,
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints keys.
        f.debug_struct("LeafCache").field("ca", &self.ca.cert_path).field("capacity", &self.capacity).finish()
    }
}

impl LeafCache {
    pub fn new(ca: Ca, capacity: usize) -> LeafCache {
        LeafCache { ca, capacity: capacity.max(1), inner: Mutex::new((HashMap::new(), VecDeque::new())), hits: AtomicU64::new(0), mints: AtomicU64::new(0) }
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The leaf for `host` if it has been minted already (no minting, no waiting).
    pub fn peek(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let guard = self.inner.lock().expect("leaf cache");
        guard.0.get(host).and_then(|s| s.get()).map(|(k, _)| k.clone())
    }

    /// The leaf for `host`, and whether this call minted it.
    pub async fn get(&self, host: &str) -> Result<(Arc<CertifiedKey>, bool), CaError> {
        let slot = {
            let mut guard = self.inner.lock().expect("leaf cache");
            let (map, order) = &mut *guard;
            let stale = map.get(host).and_then(|s| s.get()).is_some_and(|(_, minted)| minted.elapsed() > LEAF_CACHE_TTL);
            if stale {
                map.remove(host);
                order.retain(|h| h != host);
            }
            if let Some(s) = map.get(host) {
                s.clone()
            } else {
                while map.len() >= self.capacity {
                    match order.pop_front() {
                        Some(old) => {
                            map.remove(&old);
                        }
                        None => break,
                    }
                }
                let s: Slot = Arc::new(tokio::sync::OnceCell::new());
                map.insert(host.to_string(), s.clone());
                order.push_back(host.to_string());
                s
            }
        };
        let mut minted_here = false;
        let (leaf, _) = slot
            .get_or_try_init(|| async {
                minted_here = true;
                self.mints.fetch_add(1, Ordering::Relaxed);
                self.ca.mint(host).map(|k| (Arc::new(k), Instant::now()))
            })
            .await?;
        if !minted_here {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok((leaf.clone(), minted_here))
    }
}

/// PEM of the public roots vpcgate trusts for upstreams (Mozilla's, from webpki-root-certs).
pub fn public_roots() -> Vec<CertificateDer<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| c.clone().into_owned()).collect()
}

pub fn der_to_pem(der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// The CA followed by the public roots: a full replacement bundle for `AWS_CA_BUNDLE`.
pub fn bundle(ca_pem: &str) -> String {
    let mut out = String::from(ca_pem);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for root in public_roots() {
        out.push_str(&der_to_pem(&root));
    }
    out
}

/// Read every certificate of a PEM file (for `tls.extra_roots`).
/// Every certificate of every file (`tls.extra_roots`), in order.
pub fn read_extra_roots(paths: &[std::path::PathBuf]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_pem_certs(p)?);
    }
    Ok(out)
}

pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read tls.extra_roots file {} ({e}); fix the path", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.extra_roots file {} is not PEM ({e}); give PEM certificates", path.display()))?;
    if certs.is_empty() {
        return Err(format!("tls.extra_roots file {} holds no certificate; give PEM certificates", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_init_refuses_overwrite_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        init_ca(&c, &k, &[], false).unwrap();
        assert_eq!(key_mode(&k), Some(0o600));
        assert!(matches!(init_ca(&c, &k, &[], false), Err(CaError::Exists { .. })));
        init_ca(&c, &k, &[], true).unwrap();
        std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let err = Ca::load_or_create(&c, &k, &[], false).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    fn verify(ca: &Ca, leaf: &CertificateDer<'static>, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der.clone()).unwrap();
        let v =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider())).build().unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(leaf, &[], &name, &[], rustls::pki_types::UnixTime::now()).map(|_| ())
    }

    #[test]
    fn the_ca_cannot_sign_for_other_names_or_any_ip_address() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        let (ca, _) = Ca::load_or_create(&c, &k, &[], true).unwrap();
        let sign = |sans: Vec<rcgen::SanType>| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            params.signed_by(&key, &ca.issuer).unwrap().der().clone()
        };
        let aws = sign(vec![rcgen::SanType::DnsName("b.s3.amazonaws.com".try_into().unwrap())]);
        assert!(verify(&ca, &aws, "b.s3.amazonaws.com").is_ok());
        let other = sign(vec![rcgen::SanType::DnsName("example.com".try_into().unwrap())]);
        assert!(verify(&ca, &other, "example.com").is_err());
        // What the CA may sign, as the in-tunnel refusal asks before minting a leaf.
        for (host, ok) in [
            ("b.s3.dualstack.us-east-1.amazonaws.com", true),
            ("sts.api.aws", true),
            ("b.s3.cn-north-1.amazonaws.com.cn", true),
            ("example.com", false),
            ("notamazonaws.com", false),
            ("amazonaws.com.evil.io", false),
        ] {
            assert_eq!(ca.may_sign(host), ok, "{host}");
        }
        // Name constraints on DNS names alone would leave IP SANs free (RFC 5280).
        for ip in ["10.0.0.5", "::1"] {
            let leaf = sign(vec![rcgen::SanType::IpAddress(ip.parse().unwrap())]);
            let e = verify(&ca, &leaf, ip).unwrap_err();
            assert!(e.to_string().to_lowercase().contains("name constraint") || e.to_string().contains("NameConstraint"), "{ip}: {e}");
        }
    }

    #[test]
    fn a_key_of_another_ca_or_an_expired_ca_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        init_ca(&p("a.pem"), &p("a-key.pem"), &[], false).unwrap();
        init_ca(&p("b.pem"), &p("b-key.pem"), &[], false).unwrap();
        let err = Ca::load_or_create(&p("a.pem"), &p("b-key.pem"), &[], false).err().unwrap();
        assert!(matches!(err, CaError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not belong to the CA certificate"), "{err}");

        // A CA made elsewhere: self-signed after `edit`, written as NAME.pem / NAME-key.pem, loaded.
        let supplied = |name: &str, edit: &dyn Fn(&mut CertificateParams)| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            edit(&mut params);
            let cert = params.self_signed(&key).unwrap();
            let (c, k) = (p(&format!("{name}.pem")), p(&format!("{name}-key.pem")));
            write_file(&c, cert.pem().as_bytes(), 0o644).unwrap();
            write_file(&k, key.serialize_pem().as_bytes(), 0o600).unwrap();
            Ca::load_or_create(&c, &k, &[], false)
        };
        let constrained = |dns: &str| NameConstraints { permitted_subtrees: vec![GeneralSubtree::DnsName(dns.into())], excluded_subtrees: vec![] };

        let err = supplied("old", &|params| {
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        })
        .err()
        .unwrap();
        assert!(matches!(err, CaError::Expired { .. }) && err.to_string().contains("expired on"), "{err}");

        // A supplied CA without name constraints, or one made before IP addresses were excluded,
        // loads with a warning that says what a leaked key could do.
        let (ours, _) = Ca::load_or_create(&p("a.pem"), &p("a-key.pem"), &[], false).unwrap();
        assert!(ours.warnings.is_empty(), "{:?}", ours.warnings);
        for (name, nc, needle) in [("bare", None, "no name constraints"), ("dns-only", Some(constrained("amazonaws.com")), "does not exclude IP addresses")] {
            let ca = supplied(name, &|params| params.name_constraints = nc.clone()).unwrap().0;
            assert!(ca.warnings.len() == 1 && ca.warnings[0].contains(needle), "{name}: {:?}", ca.warnings);
        }

        // A CA limited to China's partition loads; one limited to another domain cannot sign AWS names.
        for (name, permitted, loads) in [("cn", "amazonaws.com.cn", true), ("other", "example.com", false)] {
            let got = supplied(name, &|params| params.name_constraints = Some(constrained(permitted)));
            assert_eq!(got.is_ok(), loads, "{name}: {:?}", got.err());
            if let Err(e) = got {
                assert!(matches!(e, CaError::CannotSignAws { .. }) && e.to_string().contains("cannot sign for AWS names"), "{e}");
            }
        }
    }

    #[test]
    fn leaves_never_outlive_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        let (mut ca, _) = Ca::load_or_create(&c, &k, &[], true).unwrap();
        ca.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
        let leaf = ca.mint("b.s3.amazonaws.com").unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
        let until = parsed.validity().not_after.to_datetime();
        assert!(until <= ca.not_after && until > time::OffsetDateTime::now_utc() + time::Duration::hours(1), "{until}");
    }

    #[tokio::test]
    async fn leaves_have_their_own_key_and_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        let (ca, created) = Ca::load_or_create(&c, &k, &[], true).unwrap();
        assert!(created);
        let ca_key = std::fs::read_to_string(&k).unwrap();
        let cache = Arc::new(LeafCache::new(ca, 2));
        let (a, minted) = cache.get("a.s3.us-east-1.amazonaws.com").await.unwrap();
        assert!(minted);
        let (a2, minted) = cache.get("a.s3.us-east-1.amazonaws.com").await.unwrap();
        assert!(!minted);
        assert!(Arc::ptr_eq(&a, &a2));
        assert_eq!((cache.mints.load(Ordering::Relaxed), cache.hits.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(a.cert.len(), 2, "leaf + CA");
        assert!(!ca_key.is_empty());
        // Concurrent first requests mint once.
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.get("b.s3.us-east-1.amazonaws.com").await.unwrap() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(cache.mints.load(Ordering::Relaxed), 2);
        // Bounded: a third host evicts the oldest.
        cache.get("c.s3.us-east-1.amazonaws.com").await.unwrap();
        cache.get("a.s3.us-east-1.amazonaws.com").await.unwrap();
        assert_eq!(cache.mints.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn bundle_has_ca_first_then_roots() {
        let b = bundle("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n");
        assert!(b.starts_with("-----BEGIN CERTIFICATE-----\nX\n"));
        assert!(b.matches("BEGIN CERTIFICATE").count() > 100);
        // Round trip of our PEM encoder through the PEM reader.
        let root = &public_roots()[0];
        let pem = der_to_pem(root);
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), root.as_ref());
    }
}

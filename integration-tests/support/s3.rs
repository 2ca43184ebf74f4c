//! A real S3 implementation for tests: `s3s-fs` (objects in a fresh temp directory) behind `s3s`
//! (which verifies SigV4: header auth, presigned URLs, aws-chunked bodies with trailers), served
//! over TLS (rustls, ALPN http/1.1) by hyper on a loopback address.
//!
//! Every request is recorded before s3s sees it (method, path, Host, how it was signed) together
//! with the HTTP status s3s answered, so tests can check what actually reached "S3".
//!
//! Addressing: virtual-hosted style for `BUCKET.s3.us-east-1.amazonaws.com` and
//! `BUCKET.s3.amazonaws.com` (and, best effort, any `BUCKET.s3[.-]….amazonaws.com` and
//! `BUCKET.vpce-….vpce.amazonaws.com`); path style for those base names without a bucket label
//! and for every other Host (`localhost:PORT`, IP literals).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use s3s::dto;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::upstream::TestCa;

/// The only access key the fake accepts.
pub const ACCESS_KEY: &str = "AKIAVPCGATETEST00001";
/// Its secret key.
pub const SECRET_KEY: &str = "vpcgate/test/secret/key/0000000000000000";

/// How long a client may take to finish the TLS handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as it reached the fake.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Request path without the query string, as sent (still percent-encoded).
    pub path: String,
    /// How the request was signed, judged from the raw request: `sigv4-header`, `sigv4-query`,
    /// `sigv2-header`, `sigv2-query`, `anonymous` or `other` (any other Authorization scheme,
    /// e.g. SigV4a; a partial signature query; a browser-form POST upload).
    pub auth: String,
    /// The HTTP status s3s answered (0 while no answer has been produced yet; 500 where s3s
    /// failed internally).
    pub status: u16,
    /// The Host header (empty when absent).
    pub host: String,
    /// The `x-amz-security-token` header (temporary credentials from STS; empty when absent).
    pub security_token: String,
}

/// A TLS S3 server on loopback. Stops (drops open connections) and removes its directory on drop.
pub struct FakeS3 {
    pub addr: SocketAddr,
    /// Removes the directory when dropped.
    _tempdir: tempfile::TempDir,
    root_path: PathBuf,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeS3 {
    /// TLS 1.2 and 1.3, ALPN `http/1.1`, leaf for `names` signed by `ca`, on `bind` (port 0
    /// picks a free port; the real address is in `addr`). Serves s3s-fs rooted at a fresh temp
    /// dir; SigV4 is verified with [`ACCESS_KEY`]/[`SECRET_KEY`]; anonymous requests are denied.
    pub async fn start(bind: SocketAddr, ca: &TestCa, names: &[&str]) -> FakeS3 {
        Self::start_with_versions(bind, ca, names, rustls::ALL_VERSIONS, None).await
    }

    /// Same as [`FakeS3::start`], and also trusts the keys listed in `keys_file` (lines of
    /// `ACCESS_KEY SECRET_KEY`, read at each request): for credentials a test obtains at run
    /// time, from STS say. SigV4 is verified with them all the same.
    pub async fn start_trusting(bind: SocketAddr, ca: &TestCa, names: &[&str], keys_file: PathBuf) -> FakeS3 {
        Self::start_with_versions(bind, ca, names, rustls::ALL_VERSIONS, Some(keys_file)).await
    }

    /// Same as [`FakeS3::start`], TLS 1.2 only (S3 PrivateLink endpoints speak TLS 1.2 only).
    pub async fn start_tls12_only(bind: SocketAddr, ca: &TestCa, names: &[&str]) -> FakeS3 {
        Self::start_with_versions(bind, ca, names, &[&rustls::version::TLS12], None).await
    }

    /// Requests that reached the server so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The directory behind the server (buckets are its subdirectories).
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// Puts an object of `size` zero bytes straight on disk (a sparse file: instant, no disk
    /// use), creating the bucket if needed; for large-download tests without a large upload.
    /// Its ETag is recorded as a fixed dummy (`"00000000000000000000000000000000"`), so a GET
    /// does not MD5 the whole file first (s3s-fs does that for objects it has no record of).
    pub fn put_sparse_object(&self, bucket: &str, key: &str, size: u64) {
        let bucket_dir = self.root_path.join(bucket);
        std::fs::create_dir_all(&bucket_dir).expect("create bucket dir");
        let path = bucket_dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create key dirs");
        }
        std::fs::File::create(&path).and_then(|f| f.set_len(size)).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // s3s-fs 0.14 keeps per-object records in `.bucket-B64.object-B64.internal.json`
        // (URL-safe base64 without padding) at the root.
        let info = self.root_path.join(format!(".bucket-{}.object-{}.internal.json", b64url(bucket.as_bytes()), b64url(key.as_bytes())));
        std::fs::write(&info, br#"{"e_tag":"00000000000000000000000000000000"}"#).expect("write internal info");
    }

    async fn start_with_versions(
        bind: SocketAddr,
        ca: &TestCa,
        names: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
        keys_file: Option<PathBuf>,
    ) -> FakeS3 {
        let (cert_pem, key_pem) = ca.leaf(names);
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("leaf cert PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("leaf key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let root = tempfile::Builder::new().prefix("fakes3-").tempdir().expect("create FakeS3 temp dir");
        let root_path = root.path().canonicalize().expect("canonicalize temp dir");
        let fs = s3s_fs::FileSystem::new(&root_path).expect("s3s-fs on temp dir");
        let mut builder = S3ServiceBuilder::new(Fs { fs, root: root_path.clone() });
        builder.set_auth(Keys { file: keys_file });
        builder.set_host(AwsHosts);
        let s3 = builder.build();

        let listener = TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("FakeS3: bind {bind}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));

        let task = tokio::spawn(accept_loop(listener, acceptor, s3, seen.clone(), connections.clone()));

        FakeS3 { addr, _tempdir: root, root_path, seen, connections, task }
    }
}

/// The fixed test key, then those of a keys file.
struct Keys {
    file: Option<PathBuf>,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        if access_key == ACCESS_KEY {
            return Ok(SECRET_KEY.into());
        }
        let listed = self.file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
        listed
            .lines()
            .find_map(|l| l.split_once(' ').filter(|(k, _)| *k == access_key).map(|(_, secret)| secret.trim().to_string().into()))
            .ok_or_else(|| s3s::s3_error!(InvalidAccessKeyId))
    }
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
        // `_tempdir` removes the directory when the fields are dropped right after this.
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, s3: S3Service, seen: Arc<Mutex<Vec<SeenRequest>>>, connections: Arc<AtomicUsize>) {
    let mut conns = JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        connections.fetch_add(1, Ordering::SeqCst);
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let s3 = s3.clone();
        let seen = seen.clone();
        conns.spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let s3 = s3.clone();
                let seen = seen.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(s3, seen, req).await) }
            });
            // Keep-alive is hyper's default; bodies stream in both directions.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(s3: S3Service, seen: Arc<Mutex<Vec<SeenRequest>>>, req: Request<Incoming>) -> Response<s3s::Body> {
    let entry = SeenRequest {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        auth: auth_kind(&req).to_string(),
        status: 0,
        host: req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        security_token: req.headers().get("x-amz-security-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
    };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(entry);
        seen.len() - 1
    };
    // The body is handed over as the streaming `Incoming`, never collected here.
    let mut response = match s3.call(req.map(s3s::Body::from)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = Response::new(s3s::Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    strip_aws_chunked(&mut response);
    seen.lock().unwrap()[index].status = response.status().as_u16();
    response
}

/// s3s-fs stores the request's Content-Encoding as is, so an object uploaded with
/// `Content-Encoding: aws-chunked` (botocore's default PutObject) would come back labelled
/// `aws-chunked`; real S3 drops that token, and so does the fake.
fn strip_aws_chunked<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    let Some(value) = headers.get(hyper::header::CONTENT_ENCODING) else {
        return;
    };
    let Ok(value) = value.to_str() else { return };
    if !value.to_ascii_lowercase().contains("aws-chunked") {
        return;
    }
    let kept: Vec<&str> = value.split(',').map(str::trim).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked")).collect();
    if kept.is_empty() {
        headers.remove(hyper::header::CONTENT_ENCODING);
    } else if let Ok(v) = hyper::header::HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(hyper::header::CONTENT_ENCODING, v);
    }
}

/// s3s-fs, with GetObject bodies read in 256 KiB pieces instead of s3s-fs' 4 KiB ones (each
/// of those is a round trip to tokio's blocking pool: ~40 MB/s in a debug build, ~8x that with
/// this). Everything else is passed straight through.
struct Fs {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

const GET_READ_SIZE: usize = 256 * 1024;

macro_rules! delegate_to_s3s_fs {
    ($($op:ident($input:ident) -> $output:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for Fs {
            $(
                async fn $op(&self, req: S3Request<dto::$input>) -> S3Result<S3Response<dto::$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn get_object(
                &self,
                req: S3Request<dto::GetObjectInput>,
            ) -> S3Result<S3Response<dto::GetObjectOutput>> {
                let path = self.root.join(&req.input.bucket).join(&req.input.key);
                let mut response = self.fs.get_object(req).await?;
                let output = &mut response.output;
                let start = match &output.content_range {
                    // "bytes FIRST-LAST/SIZE"
                    Some(range) => range
                        .strip_prefix("bytes ")
                        .and_then(|r| r.split('-').next())
                        .and_then(|first| first.parse::<u64>().ok()),
                    None => Some(0),
                };
                let len = output.content_length.and_then(|n| u64::try_from(n).ok());
                if let (Some(start), Some(len), true) = (start, len, path.starts_with(&self.root)) {
                    if let Ok(mut file) = tokio::fs::File::open(&path).await {
                        if file.seek(std::io::SeekFrom::Start(start)).await.is_ok() {
                            let reader = file.take(len);
                            output.body = Some(dto::StreamingBlob::wrap(
                                tokio_util::io::ReaderStream::with_capacity(reader, GET_READ_SIZE),
                            ));
                        }
                    }
                }
                Ok(response)
            }
        }
    };
}

delegate_to_s3s_fs! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

/// How a request is signed, from its Authorization header and query string alone.
fn auth_kind<B>(req: &Request<B>) -> &'static str {
    if let Some(auth) = req.headers().get(hyper::header::AUTHORIZATION) {
        let auth = auth.as_bytes();
        return if auth.starts_with(b"AWS4-HMAC-SHA256 ") {
            "sigv4-header"
        } else if auth.starts_with(b"AWS ") {
            "sigv2-header"
        } else {
            "other"
        };
    }
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| query.split('&').any(|pair| pair.split('=').next() == Some(name));
    if has("X-Amz-Algorithm") || has("X-Amz-Signature") || has("X-Amz-Credential") {
        if query.split('&').any(|pair| pair == "X-Amz-Algorithm=AWS4-HMAC-SHA256") {
            "sigv4-query"
        } else {
            "other"
        }
    } else if has("Signature") && has("AWSAccessKeyId") {
        "sigv2-query"
    } else if has("Signature") || has("AWSAccessKeyId") {
        "other"
    } else if req.method() == hyper::Method::POST
        && req.headers().get(hyper::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"))
    {
        // Browser-style POST upload: the signature (if any) is inside the form.
        "other"
    } else {
        "anonymous"
    }
}

/// Host header parsing: virtual-hosted style under the AWS S3 endpoint names, path style for
/// everything else (notably `localhost:PORT`, which s3s' own `MultiDomain` would take for a
/// bucket name).
struct AwsHosts;

/// The base domains named explicitly; other `s3.REGION.amazonaws.com` forms are handled too.
const BASE_DOMAINS: &[&str] = &["s3.us-east-1.amazonaws.com", "s3.amazonaws.com"];

impl S3Host for AwsHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<VirtualHost<'a>> {
        let name = strip_port(host).trim_end_matches('.');
        if name.is_empty() {
            return Err(s3s::s3_error!(InvalidRequest, "Invalid host header"));
        }
        match split_aws_host(name) {
            Some((Some(bucket), base)) => Ok(VirtualHost::new(Cow::Borrowed(base)).with_bucket(Cow::Owned(bucket.to_ascii_lowercase()))),
            Some((None, base)) => Ok(VirtualHost::new(Cow::Borrowed(base))),
            None => Ok(VirtualHost::new(Cow::Borrowed(name))),
        }
    }
}

/// URL-safe base64 without padding.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// For an AWS S3 host name, (bucket label(s) if any, base domain). None: not an S3 name.
pub(crate) fn split_aws_host(name: &str) -> Option<(Option<&str>, &str)> {
    let lower = name.to_ascii_lowercase();
    for base in BASE_DOMAINS {
        if lower == *base {
            return Some((None, name));
        }
        if lower.ends_with(base) && lower[..lower.len() - base.len()].ends_with('.') {
            let cut = name.len() - base.len();
            return Some((Some(&name[..cut - 1]), &name[cut..]));
        }
    }
    if !lower.ends_with(".amazonaws.com") {
        return None;
    }
    // Byte offsets of each label.
    let mut labels = Vec::new();
    let mut start = 0;
    for (i, c) in name.char_indices() {
        if c == '.' {
            labels.push((start, i));
            start = i + 1;
        }
    }
    labels.push((start, name.len()));
    let label = |i: usize| &lower[labels[i].0..labels[i].1];
    // Interface endpoints: [BUCKET.][bucket.]vpce-ID.s3.REGION.vpce.amazonaws.com
    if lower.ends_with(".vpce.amazonaws.com") {
        let at = (0..labels.len()).find(|&i| label(i).starts_with("vpce-"))?;
        let base = &name[labels[at].0..];
        let mut end = at;
        if end > 0 && label(end - 1) == "bucket" {
            end -= 1;
        }
        return Some(((end > 0).then(|| &name[..labels[end - 1].1]), base));
    }
    // BUCKET.s3.REGION.amazonaws.com, BUCKET.s3-REGION.amazonaws.com, ...: the last `s3` label.
    let at = (0..labels.len()).rev().find(|&i| label(i) == "s3" || label(i).starts_with("s3-"))?;
    let base = &name[labels[at].0..];
    Some(((at > 0).then(|| &name[..labels[at - 1].1]), base))
}

//! vpcgate's own calls to AWS, for `audit` and for routes that follow a prefix list: the standard
//! credential chain and IMDSv2 from `aws-config`, SigV4 from `aws-sigv4`, and one HTTP/1.1 request
//! per call over a connection this module dials itself.
//!
//! Where the calls go: an endpoint override (`AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL_S3`, else
//! `AWS_ENDPOINT_URL`, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true) is the operator's
//! choice and is used as given (plain `http://` only to a loopback address: a signed request in
//! the clear could be replayed). Otherwise the regional name (`ec2.REGION.amazonaws.com`,
//! `BUCKET.s3.REGION.amazonaws.com`) is decided exactly as the proxy decides a CONNECT
//! ([`crate::proxy::connect::decide`]): resolved with the configured DNS servers and dialled at the
//! checked address inside a route, so that vpcgate's own traffic rides the private path it
//! polices. A name no route carries is refused unless the caller allows the public path
//! (`audit --public-api`).

use crate::config::Loaded;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// Bound on one API call: connect, TLS, request and the whole answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on finding where vpcgate runs through IMDSv2 (token, then each metadata path).
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the credential chain.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a DescribeRouteTables page of a big VPC is well under this).
const ANSWER_LIMIT: usize = 16 << 20;
/// The EC2 Query API version the SDKs send.
pub const EC2_VERSION: &str = "2016-11-15";

/// A call that did not get its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Nothing answered (DNS, connect, TLS, timeout) or the path was refused.
    #[error("{0}")]
    Unreachable(String),
    /// The credentials may not call it: the IAM action to grant.
    #[error("{action} is not allowed for these credentials ({code}: {message}); grant {action}")]
    Denied { action: String, code: String, message: String },
    /// AWS answered with an error.
    #[error("{action} answered {status} {code}: {message}")]
    Failed { action: String, status: u16, code: String, message: String },
}

/// The codes that mean "not allowed" rather than "wrong".
const DENIED_CODES: [&str; 3] = ["UnauthorizedOperation", "AccessDenied", "AccessDeniedException"];

/// Where one service's calls go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An override URL: scheme, host, port, path prefix, and the variable that set it.
    Override { https: bool, host: String, port: u16, base_path: String, from: &'static str },
    /// The regional AWS name, decided like a CONNECT.
    Regional,
}

/// The endpoint override for a service (`EC2`, `S3`) from the standard variables.
pub fn endpoint_override(env: &HashMap<String, String>, service: &str) -> Result<Target, String> {
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Target::Regional);
    }
    let specific: &'static str = match service {
        "EC2" => "AWS_ENDPOINT_URL_EC2",
        "S3" => "AWS_ENDPOINT_URL_S3",
        _ => "AWS_ENDPOINT_URL",
    };
    let (from, url) = match (env.get(specific), env.get("AWS_ENDPOINT_URL")) {
        (Some(u), _) if !u.is_empty() => (specific, u),
        (_, Some(u)) if !u.is_empty() => ("AWS_ENDPOINT_URL", u),
        _ => return Ok(Target::Regional),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| format!("{from}={url:?} is not a URL; write it like https://vpce-….ec2.REGION.vpce.amazonaws.com"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{from}={url:?} is neither http:// nor https://; write the endpoint's https:// URL")),
    };
    let host = uri.host().ok_or_else(|| format!("{from}={url:?} has no host; write the endpoint's URL"))?.trim_matches(['[', ']']).to_string();
    if !https {
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!("{from}={url:?} is plain http to a host that is not loopback, which would send signed requests in the clear; use https://"));
        }
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target::Override { https, host, port, base_path: uri.path().trim_end_matches('/').to_string(), from })
}

/// A client for vpcgate's own AWS calls.
pub struct Aws {
    pub region: String,
    creds: Credentials,
    ec2: Target,
    s3: Target,
    tls: Arc<rustls::ClientConfig>,
    config: Loaded,
    dns: crate::dns::Dns,
    /// Whether a name no route carries may be dialled through the system resolver (audit
    /// --public-api): the calls are read-only descriptions, but they leave by the public path.
    public_path: bool,
}

/// The HTTP client aws-config uses for the credential chain and IMDS: hyper and rustls on ring.
pub fn smithy_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build_https()
}

/// Credentials from the standard chain (environment, profile files, web identity, ECS/EKS
/// container credentials, IMDSv2), bounded.
pub async fn credentials(region: &str) -> Result<Credentials, String> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(smithy_http_client())
        .load()
        .await;
    let provider = conf.credentials_provider().ok_or("no AWS credential provider could be built")?;
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Err(_) => Err(format!(
            "no AWS credentials within {} s (the chain: environment, profile files, web identity, container credentials, IMDSv2); give vpcgate credentials the usual way, e.g. an instance role or AWS_PROFILE",
            CREDENTIALS_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!(
            "no AWS credentials ({}); give vpcgate credentials the usual way (instance role, AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        )),
        Ok(Ok(c)) => Ok(c),
    }
}

/// What IMDSv2 says about where vpcgate runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Located {
    pub subnet: String,
    pub vpc: String,
    pub region: String,
    pub account: Option<String>,
    pub address: Option<std::net::Ipv4Addr>,
}

/// Find the subnet, VPC, region, account and address from IMDSv2, within [`IMDS_TIMEOUT`].
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it (as for every SDK).
pub async fn locate() -> Result<Located, String> {
    let provider = aws_config::provider_config::ProviderConfig::default().with_http_client(smithy_http_client());
    let imds = aws_config::imds::Client::builder()
        .configure(&provider)
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_millis(1000))
        .operation_timeout(IMDS_TIMEOUT)
        .build();
    let ask = async {
        let get = |path: &'static str| {
            let imds = &imds;
            async move {
                imds.get(path)
                    .await
                    .map(|s| s.as_ref().trim().to_string())
                    .map_err(|e| format!("{path}: {}", aws_smithy_types::error::display::DisplayErrorContext(&e)))
            }
        };
        let doc = get("/latest/dynamic/instance-identity/document").await?;
        let doc: serde_json::Value = serde_json::from_str(&doc).map_err(|e| format!("the instance identity document is not JSON ({e})"))?;
        let mac = get("/latest/meta-data/mac").await?;
        let subnet = imds.get(format!("/latest/meta-data/network/interfaces/macs/{mac}/subnet-id")).await.map_err(|e| format!("subnet-id: {e}"))?;
        let vpc = imds.get(format!("/latest/meta-data/network/interfaces/macs/{mac}/vpc-id")).await.map_err(|e| format!("vpc-id: {e}"))?;
        let address = get("/latest/meta-data/local-ipv4").await.ok().and_then(|a| a.parse().ok());
        Ok::<_, String>(Located {
            subnet: subnet.as_ref().trim().to_string(),
            vpc: vpc.as_ref().trim().to_string(),
            region: doc.get("region").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            account: doc.get("accountId").and_then(|v| v.as_str()).map(str::to_string),
            address,
        })
    };
    match tokio::time::timeout(IMDS_TIMEOUT + Duration::from_millis(500), ask).await {
        Err(_) => Err(format!("IMDSv2 did not answer within {} s", IMDS_TIMEOUT.as_secs())),
        Ok(r) => r,
    }
}

/// Percent-encoding of Query API values (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

impl Aws {
    pub fn new(config: &Loaded, region: &str, creds: Credentials, env: &HashMap<String, String>, public_path: bool) -> Result<Aws, String> {
        let tls = Arc::new(crate::proxy::upstream::client_config(&crate::certs::read_extra_roots(&config.settings.tls.extra_roots)?)?);
        let dns = crate::dns::Dns::new(&config.dns, config.settings.dns.timeout)?;
        Ok(Aws {
            region: region.to_string(),
            creds,
            ec2: endpoint_override(env, "EC2")?,
            s3: endpoint_override(env, "S3")?,
            tls,
            config: config.clone(),
            dns,
            public_path,
        })
    }

    /// Where the EC2 calls go, in words, for the audit's first line.
    pub fn ec2_text(&self) -> String {
        match &self.ec2 {
            Target::Override { https, host, port, from, .. } => format!("{}://{host}:{port} ({from})", if *https { "https" } else { "http" }),
            Target::Regional => format!("https://ec2.{}.amazonaws.com", self.region),
        }
    }

    /// One EC2 Query API call; the answer's XML. `params` are the action's parameters.
    pub async fn ec2(&self, action: &str, params: &[(String, String)]) -> Result<String, ApiError> {
        let mut body = format!("Action={action}&Version={EC2_VERSION}");
        for (k, v) in params {
            body.push('&');
            body.push_str(&encode(k));
            body.push('=');
            body.push_str(&encode(v));
        }
        let (status, text) = self.call("ec2", &self.ec2, &format!("ec2.{}.amazonaws.com", self.region), "POST", "/", Bytes::from(body)).await?;
        if status == 200 {
            return Ok(text);
        }
        let (code, message) = super::facts::error_code(&text).unwrap_or_else(|| (status.to_string(), text.chars().take(200).collect()));
        Err(classify_error(&format!("ec2:{action}"), status, code, message))
    }

    /// Every page of a Describe* call, concatenated as separate documents.
    pub async fn ec2_pages(&self, action: &str, params: &[(String, String)]) -> Result<Vec<String>, ApiError> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut p = params.to_vec();
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let xml = self.ec2(action, &p).await?;
            token = super::facts::next_token(&xml);
            pages.push(xml);
            if token.is_none() || pages.len() >= 100 {
                return Ok(pages);
            }
        }
    }

    /// S3 GetBucketPolicy: `Ok(Some(policy))`, `Ok(None)` when the bucket has none.
    pub async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        let (host, path) = match &self.s3 {
            Target::Override { host, base_path, .. } => (host.clone(), format!("{base_path}/{bucket}?policy")),
            Target::Regional => (format!("{bucket}.s3.{}.amazonaws.com", self.region), "/?policy".to_string()),
        };
        let (status, text) = self.call("s3", &self.s3, &host, "GET", &path, Bytes::new()).await?;
        if status == 200 {
            return Ok(Some(text));
        }
        let (code, message) = super::facts::error_code(&text).unwrap_or_else(|| (status.to_string(), String::new()));
        if code == "NoSuchBucketPolicy" {
            return Ok(None);
        }
        Err(classify_error("s3:GetBucketPolicy", status, code, message))
    }

    /// Sign and send one request; the status and the answer's text.
    async fn call(&self, service: &str, target: &Target, regional_host: &str, method: &str, path: &str, body: Bytes) -> Result<(u16, String), ApiError> {
        let (https, host, port, path) = match target {
            Target::Override { https, host, port, .. } => (*https, host.clone(), *port, path.to_string()),
            Target::Regional => (true, regional_host.to_string(), 443, path.to_string()),
        };
        let addr = self.address(service, target, &host, port).await?;
        let authority = if (https && port == 443) || (!https && port == 80) { host.clone() } else { format!("{host}:{port}") };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}://{authority}{path}", if https { "https" } else { "http" }))
            .header("host", &authority)
            .header("user-agent", concat!("vpcgate/", env!("CARGO_PKG_VERSION")));
        if method == "POST" {
            req = req.header("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        }
        let mut req = req.body(body.clone()).map_err(|e| ApiError::Unreachable(format!("cannot build the request to {host} ({e})")))?;
        self.sign(service, &mut req, &body).map_err(ApiError::Unreachable)?;
        let (parts, b) = req.into_parts();
        let req = hyper::Request::from_parts(parts, Full::new(b));
        let send = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {host} at {addr} ({e})"))?;
            let _ = tcp.set_nodelay(true);
            let answer = if https {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host} is no TLS server name ({e})"))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host} at {addr} failed ({e})"))?;
                exchange(tls, req).await?
            } else {
                exchange(tcp, req).await?
            };
            Ok::<_, String>(answer)
        };
        match tokio::time::timeout(CALL_TIMEOUT, send).await {
            Err(_) => Err(ApiError::Unreachable(format!("{host} at {addr} did not answer within {} s", CALL_TIMEOUT.as_secs()))),
            Ok(Err(e)) => Err(ApiError::Unreachable(e)),
            Ok(Ok(a)) => Ok(a),
        }
    }

    /// The address to dial: an override's host as the system resolves it, or the regional name
    /// decided like a CONNECT.
    async fn address(&self, service: &str, target: &Target, host: &str, port: u16) -> Result<SocketAddr, ApiError> {
        let system = |host: String| async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ApiError::Unreachable(format!("cannot resolve {host} ({e})")))?
                .find(|a| a.is_ipv4())
                .ok_or_else(|| ApiError::Unreachable(format!("{host} has no IPv4 address")))
        };
        if let Target::Override { .. } = target {
            return system(host.to_string()).await;
        }
        let own = self.config.own_addresses();
        let inputs = crate::proxy::connect::Inputs {
            config: &self.config,
            dns: &self.dns,
            own: &own,
            inspect: false,
            client_buckets: None,
            dns_seconds: None,
            every_answer: false,
        };
        let mut record = crate::proxy::connect::ConnectRecord::default();
        match crate::proxy::connect::decide(&inputs, &format!("{host}:{port}"), &mut record).await {
            Ok((_, chosen)) => Ok(SocketAddr::from((chosen.addr, port))),
            Err(_) if self.public_path => system(host.to_string()).await,
            Err(deny) => Err(ApiError::Unreachable(format!(
                "vpcgate's own call to {host} would not ride a private route ({}); add a route that carries it (an interface endpoint of the service), set AWS_ENDPOINT_URL_{} to the endpoint's URL, or pass --public-api",
                deny,
                service.to_ascii_uppercase()
            ))),
        }
    }

    fn sign(&self, service: &str, req: &mut hyper::Request<Bytes>, body: &[u8]) -> Result<(), String> {
        use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
        let identity: aws_smithy_runtime_api::client::identity::Identity = self.creds.clone().into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot sign the request ({e})"))?
            .into();
        let uri = req.uri().to_string();
        let headers: Vec<(String, String)> =
            req.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string()))).collect();
        let signable = SignableRequest::new(req.method().as_str(), &uri, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), SignableBody::Bytes(body))
            .map_err(|e| format!("cannot sign the request ({e})"))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| format!("cannot sign the request ({e})"))?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

fn classify_error(action: &str, status: u16, code: String, message: String) -> ApiError {
    if DENIED_CODES.contains(&code.as_str()) {
        ApiError::Denied { action: action.to_string(), code, message }
    } else if matches!(code.as_str(), "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidAccessKeyId") {
        ApiError::Unreachable(format!("AWS refused the credentials ({code}: {message}); give vpcgate valid credentials"))
    } else {
        ApiError::Failed { action: action.to_string(), status, code, message }
    }
}

async fn exchange<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake failed ({e})"))?;
    let task = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| format!("the request failed ({e})"))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), ANSWER_LIMIT).collect().await.map_err(|e| format!("the answer was cut ({e})"))?.to_bytes();
    task.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

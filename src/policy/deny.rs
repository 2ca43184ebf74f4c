//! Every "no" vpcgate says, in one type: its stable code, its HTTP status, and the one sentence the
//! client sees (what was refused and what to change). The proxy turns a `Deny` into a response in
//! exactly one place (`proxy::connect::deny_response`).

use crate::policy::authority::AuthorityError;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What one DNS name answered, for refusals that list the addresses seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub result: Result<Vec<Ipv4Addr>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::EnumDiscriminants), strum_discriminants(derive(strum::EnumIter)))]
pub enum Deny {
    Authority(AuthorityError),
    /// Absolute-form `http://` request through the proxy.
    Plaintext {
        uri: String,
    },
    /// A request vpcgate cannot parse at all (request line, headers or target).
    BadRequest {
        what: String,
    },
    /// The proxy request head did not end within `proxy.handshake_timeout` (a slowloris, or a
    /// client that connected and said nothing useful).
    HeadTimeout {
        after: std::time::Duration,
    },
    /// A request that is neither CONNECT nor absolute-form.
    NotProxyRequest {
        method: String,
    },
    NotAws {
        host: String,
    },
    Dualstack {
        host: String,
    },
    Accelerate {
        host: String,
    },
    Website {
        host: String,
    },
    OtherRegion {
        host: String,
        region: String,
        configured: Vec<String>,
    },
    MultiRegionNeedsInterface {
        host: String,
    },
    /// No configured route may carry this class of name (e.g. the legacy global name with only interface routes).
    NoRouteForClass {
        host: String,
        class: &'static str,
        why: &'static str,
    },
    /// Every answer fell outside every candidate route.
    OutsideRoutes {
        host: String,
        answers: Vec<Answer>,
        routes: Vec<String>,
    },
    /// DNS gave no usable answer for any candidate name.
    Dns {
        host: String,
        answers: Vec<Answer>,
        servers: String,
    },
    /// The chosen address is vpcgate's own listener or admin port.
    SelfConnect {
        addr: SocketAddr,
    },
    ConnectTimeout {
        addr: SocketAddr,
        after: Duration,
    },
    ConnectFailed {
        addr: SocketAddr,
        error: String,
    },
    OverCapacity {
        max: usize,
    },
    /// `proxy.auth = "basic"`: no Basic credentials (`missing`), or none that a client has.
    ProxyAuth {
        missing: bool,
    },
    /// The bucket perimeter (`s3.buckets`) refused the name.
    Bucket {
        host: String,
        refusal: crate::policy::bucket::BucketRefusal,
    },
    /// Passthrough mode with `s3.buckets` set: a service name whose requests name their bucket in
    /// the path, which passthrough cannot see.
    BucketHidden {
        host: String,
    },
    /// `sts.amazonaws.com`: no VPC endpoint serves the global STS name.
    GlobalSts {
        host: String,
    },
    /// A regional name of an AWS service that no configured route carries.
    NoRouteForService {
        host: String,
        service: String,
        region: String,
    },
    /// An AWS name that names no service and region (instance and load-balancer names, global names).
    UnknownAwsName {
        host: String,
    },
    /// Instance metadata, ECS or EKS Pod Identity credentials: local plaintext endpoints that
    /// belong in NO_PROXY (`what` names which).
    CredentialEndpoint {
        target: String,
        what: &'static str,
    },
    /// `audit.require = "route_table"`: the gateway route's proof (the subnet's route table sends
    /// its prefix list to an available gateway endpoint) does not hold now; `why` is the check's
    /// sentence.
    RouteUnproven {
        host: String,
        route: String,
        why: String,
    },
}

/// The local credential endpoints SDKs read over plain HTTP, and what each is: they must never
/// go through a proxy (the link-local ones are answered by the host's own hypervisor or agent).
pub const CREDENTIAL_ENDPOINTS: [(&str, &str); 5] = [
    ("169.254.169.254", "the instance metadata service (IMDS)"),
    ("fd00:ec2::254", "the instance metadata service (IMDS, IPv6)"),
    ("169.254.170.2", "the ECS container credentials endpoint"),
    ("169.254.170.23", "the EKS Pod Identity agent"),
    ("fd00:ec2::23", "the EKS Pod Identity agent (IPv6)"),
];

/// What `NO_PROXY` must hold so that SDKs reach their credentials directly.
pub const NO_PROXY_CREDENTIALS: &str = "169.254.169.254,169.254.170.2,169.254.170.23";

/// Which credential endpoint a proxy request's host (`[v6]` brackets and a `:port` allowed)
/// names, if any.
pub fn credential_endpoint(host: &str) -> Option<&'static str> {
    let h = host.trim_end_matches('.');
    let h = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None if h.matches(':').count() == 1 => h.split(':').next().unwrap_or(h),
        None => h,
    };
    let ip: std::net::IpAddr = h.parse().ok()?;
    CREDENTIAL_ENDPOINTS.iter().find(|(a, _)| a.parse::<std::net::IpAddr>().ok() == Some(ip)).map(|(_, what)| *what)
}

/// How many of one name's addresses a sentence or a log line names; the rest are counted. A
/// name can have hundreds (a DNS answer over TCP holds thousands), and the fix at the end of the
/// sentence must still fit in the reason phrase a client shows (512 characters).
pub const ADDRESSES_NAMED: usize = 8;

/// `addrs` joined by `sep`, the first [`ADDRESSES_NAMED`] of them, then `and N more`.
pub fn some_addresses(addrs: &[Ipv4Addr], sep: &str) -> String {
    let mut out = addrs.iter().take(ADDRESSES_NAMED).map(|x| x.to_string()).collect::<Vec<_>>().join(sep);
    if addrs.len() > ADDRESSES_NAMED {
        out.push_str(&format!("{sep}and {} more", addrs.len() - ADDRESSES_NAMED));
    }
    out
}

fn list_answers(answers: &[Answer]) -> String {
    answers
        .iter()
        .map(|a| match &a.result {
            Ok(addrs) if addrs.is_empty() => format!("{} has no A record", a.name),
            Ok(addrs) => format!("{} -> {}", a.name, some_addresses(addrs, ", ")),
            Err(e) => format!("{}: {}", a.name, e),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Deny {
    /// Stable snake_case code: the `X-Vpcgate-Reason` header, the `reason` log field and metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::Authority(e) => e.code(),
            Deny::Plaintext { .. } => "plaintext",
            Deny::BadRequest { .. } => "bad_request",
            Deny::HeadTimeout { .. } => "head_timeout",
            Deny::NotProxyRequest { .. } => "not_proxy_request",
            Deny::NotAws { .. } => "not_aws",
            Deny::Dualstack { .. } => "dualstack",
            Deny::Accelerate { .. } => "accelerate",
            Deny::Website { .. } => "website",
            Deny::OtherRegion { .. } => "other_region",
            Deny::MultiRegionNeedsInterface { .. } => "multi_region_needs_interface",
            Deny::NoRouteForClass { .. } => "no_route_for_class",
            Deny::OutsideRoutes { .. } => "outside_routes",
            Deny::Dns { .. } => "dns_failed",
            Deny::SelfConnect { .. } => "self_connect",
            Deny::ConnectTimeout { .. } => "connect_timeout",
            Deny::ConnectFailed { .. } => "connect_failed",
            Deny::OverCapacity { .. } => "over_capacity",
            Deny::Bucket { refusal, .. } => refusal.code(),
            Deny::ProxyAuth { missing: true } => "proxy_auth_required",
            Deny::ProxyAuth { missing: false } => "proxy_auth_failed",
            Deny::BucketHidden { .. } => "bucket_hidden",
            Deny::GlobalSts { .. } => "global_sts",
            Deny::NoRouteForService { .. } => "no_route_for_service",
            Deny::UnknownAwsName { .. } => "unknown_aws_name",
            Deny::CredentialEndpoint { .. } => "credential_endpoint",
            Deny::RouteUnproven { .. } => "route_unproven",
        }
    }

    /// The HTTP status of the refusal: 403 for policy, 400 for malformed input, 502/504 for an
    /// upstream or DNS that failed, 503 when vpcgate is full.
    pub fn status(&self) -> u16 {
        match self {
            Deny::Authority(AuthorityError::Empty | AuthorityError::MissingPort | AuthorityError::BadPort(_) | AuthorityError::NotAuthorityForm) => 400,
            Deny::Authority(AuthorityError::BadName(_)) => 400,
            Deny::NotProxyRequest { .. } | Deny::BadRequest { .. } => 400,
            Deny::Dns { .. } | Deny::ConnectFailed { .. } => 502,
            Deny::ConnectTimeout { .. } => 504,
            Deny::OverCapacity { .. } => 503,
            Deny::HeadTimeout { .. } => 408,
            Deny::ProxyAuth { .. } => 407,
            Deny::Authority(AuthorityError::IpLiteral(_) | AuthorityError::Bracketed(_) | AuthorityError::Userinfo | AuthorityError::PortNotAllowed { .. })
            | Deny::Plaintext { .. }
            | Deny::NotAws { .. }
            | Deny::Dualstack { .. }
            | Deny::Accelerate { .. }
            | Deny::Website { .. }
            | Deny::OtherRegion { .. }
            | Deny::MultiRegionNeedsInterface { .. }
            | Deny::NoRouteForClass { .. }
            | Deny::OutsideRoutes { .. }
            | Deny::SelfConnect { .. }
            | Deny::Bucket { .. }
            | Deny::BucketHidden { .. }
            | Deny::GlobalSts { .. }
            | Deny::NoRouteForService { .. }
            | Deny::UnknownAwsName { .. }
            | Deny::CredentialEndpoint { .. }
            | Deny::RouteUnproven { .. } => 403,
        }
    }
}

/// What every refusal type knows: its stable code (the `reason` of the log lines and the metric
/// label) and its sentence (Display: what was refused and what to change). Implemented by
/// [`Deny`] (the CONNECT), [`crate::policy::request::RequestDeny`] (a request in a tunnel) and
/// [`crate::policy::handshake::HandshakeRefusal`] (a TLS handshake); the first two also answer
/// over HTTP ([`HttpRefusal`]).
pub trait Refusal: fmt::Display {
    fn code(&self) -> &'static str;
}

/// A refusal answered over HTTP: its status, and the S3 error code SDKs classify it by.
pub trait HttpRefusal: Refusal {
    fn status(&self) -> u16;
    fn s3_code(&self) -> &'static str {
        s3_code(self.status())
    }
}

impl Refusal for Deny {
    fn code(&self) -> &'static str {
        Deny::code(self)
    }
}

impl HttpRefusal for Deny {
    fn status(&self) -> u16 {
        Deny::status(self)
    }
}

impl Refusal for crate::policy::request::RequestDeny {
    fn code(&self) -> &'static str {
        crate::policy::request::RequestDeny::code(self)
    }
}

impl HttpRefusal for crate::policy::request::RequestDeny {
    fn status(&self) -> u16 {
        crate::policy::request::RequestDeny::status(self)
    }
}

impl Refusal for crate::policy::handshake::HandshakeRefusal {
    fn code(&self) -> &'static str {
        crate::policy::handshake::HandshakeRefusal::code(self)
    }
}

/// The error body of any HTTP refusal in the client's protocol.
pub fn refusal_body(shape: ErrorShape, r: &dyn HttpRefusal, message: &str, resource: &str, request_id: &str) -> (&'static str, String, Option<&'static str>) {
    error_body(shape, r.status(), r.code(), message, resource, request_id)
}

/// How a refusal reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// As the status of the proxy's answer to the CONNECT (or to another proxy request).
    Connect,
    /// Inside the tunnel (inspect mode, `proxy.refuse_in_tunnel`): the CONNECT is answered 200,
    /// TLS completes with a leaf for the name, and each request gets an S3-style XML error, which
    /// SDKs print where they print S3's own errors (boto3 and the aws CLI show a refused CONNECT
    /// only as "Failed to connect to proxy URL").
    InTunnel,
}

impl Delivery {
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Connect => "connect",
            Delivery::InTunnel => "in_tunnel",
        }
    }
}

impl Deny {
    /// Whether this refusal may be delivered inside the tunnel: a policy decision about a
    /// well-formed AWS name (that vpcgate's CA may sign is checked by the caller). Malformed
    /// requests, names vpcgate must not sign and a full proxy keep their CONNECT status.
    pub fn deliverable_in_tunnel(&self) -> bool {
        match self {
            Deny::Dualstack { .. }
            | Deny::Accelerate { .. }
            | Deny::Website { .. }
            | Deny::OtherRegion { .. }
            | Deny::MultiRegionNeedsInterface { .. }
            | Deny::NoRouteForClass { .. }
            | Deny::OutsideRoutes { .. }
            | Deny::Dns { .. }
            | Deny::SelfConnect { .. }
            | Deny::GlobalSts { .. }
            | Deny::NoRouteForService { .. }
            | Deny::UnknownAwsName { .. }
            | Deny::RouteUnproven { .. }
            | Deny::Bucket { .. } => true,
            Deny::Authority(_)
            | Deny::Plaintext { .. }
            | Deny::BadRequest { .. }
            | Deny::HeadTimeout { .. }
            | Deny::NotProxyRequest { .. }
            | Deny::NotAws { .. }
            | Deny::OverCapacity { .. }
            | Deny::ProxyAuth { .. }
            | Deny::CredentialEndpoint { .. }
            // Passthrough only: inspect mode dials on the first request, and sees the bucket.
            | Deny::BucketHidden { .. }
            | Deny::ConnectTimeout { .. }
            | Deny::ConnectFailed { .. } => false,
        }
    }
}

/// The S3 error `<Code>` for a refusal's HTTP status, so that SDKs classify it as S3 would.
pub fn s3_code(status: u16) -> &'static str {
    match status {
        400 => "InvalidRequest",
        403 => "AccessDenied",
        // S3's own answer to a request that did not arrive in time.
        408 => "RequestTimeout",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "BadGateway",
    }
}

/// The error format a refusal inside a tunnel takes, so that the client's SDK parses it as the
/// service's own error and prints the sentence: S3's REST-XML `<Error>`; the Query protocol's
/// `<ErrorResponse><Error>` (STS, IAM, EC2 and the other form-encoded services); the JSON
/// protocols' `{"__type", "message"}` with `x-amzn-ErrorType` (DynamoDB, KMS, Logs, ECR, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    S3Xml,
    QueryXml,
    Json,
}

impl ErrorShape {
    /// S3 names get S3's errors; another service's request gets JSON when it was sent as JSON
    /// (its `Content-Type`), the Query protocol's XML otherwise (form bodies, `GET ?Action=`).
    pub fn for_request(s3: bool, content_type: Option<&str>) -> ErrorShape {
        if s3 {
            return ErrorShape::S3Xml;
        }
        if crate::policy::request::body_protocol(content_type) == crate::policy::request::BodyProtocol::Json {
            ErrorShape::Json
        } else {
            ErrorShape::QueryXml
        }
    }
}

/// A refusal's error as the client's protocol writes it: the `Content-Type`, the body, and for
/// JSON the `x-amzn-ErrorType` header value.
pub fn error_body(
    shape: ErrorShape,
    status: u16,
    reason: &str,
    message: &str,
    resource: &str,
    request_id: &str,
) -> (&'static str, String, Option<&'static str>) {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }
    match shape {
        ErrorShape::S3Xml => ("application/xml", s3_error_xml(status, reason, message, resource, request_id), None),
        ErrorShape::QueryXml => (
            "text/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId><VpcgateReason>{}</VpcgateReason></ErrorResponse>\n",
                if status < 500 { "Sender" } else { "Receiver" },
                s3_code(status),
                esc(message),
                esc(request_id),
                reason
            ),
            None,
        ),
        ErrorShape::Json => {
            let code = match status {
                400 => "ValidationException",
                403 => "AccessDeniedException",
                504 => "RequestTimeoutException",
                _ => "ServiceUnavailableException",
            };
            let body = serde_json::json!({ "__type": code, "message": message, "vpcgateReason": reason }).to_string();
            ("application/x-amz-json-1.0", body, Some(code))
        }
    }
}

/// The S3-style XML error body for a refusal, so that SDKs print the message.
pub fn s3_error_xml(status: u16, reason: &str, message: &str, resource: &str, request_id: &str) -> String {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId><VpcgateReason>{}</VpcgateReason></Error>\n",
        s3_code(status),
        esc(message),
        esc(resource),
        esc(request_id),
        reason
    )
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deny::Authority(e) => write!(f, "{e}"),
            Deny::Plaintext { uri } => write!(
                f,
                "plaintext HTTP to {uri} is never forwarded because it would cross the network unencrypted; use https:// (the client then sends CONNECT)"
            ),
            Deny::BadRequest { what } => write!(
                f,
                "the proxy request could not be parsed ({what}); send `CONNECT host:443 HTTP/1.1` followed by a Host header and a blank line"
            ),
            Deny::NotProxyRequest { method } => write!(
                f,
                "vpcgate is a forward proxy and got a {method} request for itself; set HTTPS_PROXY=http://this-address and request https:// URLs"
            ),
            Deny::NotAws { host } => write!(
                f,
                "{host} is not an AWS endpoint and vpcgate only tunnels to AWS names; send this host around the proxy with NO_PROXY or through another proxy"
            ),
            Deny::Dualstack { host } => write!(
                f,
                "{host} is a dual-stack name and gateway endpoints carry IPv4 only; set s3.use_dualstack_endpoint = false (or AWS_USE_DUALSTACK_ENDPOINT=false)"
            ),
            Deny::Accelerate { host } => write!(
                f,
                "{host} is an S3 Transfer Acceleration name, which runs through CloudFront edge locations and never through a VPC endpoint; set s3.use_accelerate_endpoint = false"
            ),
            Deny::Website { host } => write!(
                f,
                "{host} is an S3 website endpoint, which serves plain HTTP only and is not reachable through a VPC endpoint; use the REST endpoint s3.REGION.amazonaws.com"
            ),
            Deny::OtherRegion { host, region, configured } => write!(
                f,
                "{host} is in region {region} but vpcgate carries only {} (a gateway endpoint serves its own region only); use the bucket's regional endpoint in {}, or add {region} to aws.regions with a route that reaches it",
                configured.join(", "),
                configured.join(", ")
            ),
            Deny::MultiRegionNeedsInterface { host } => write!(
                f,
                "{host} is a Multi-Region Access Point, which VPC traffic reaches only through an interface endpoint for com.amazonaws.s3-global.accesspoint; add an interface route for that endpoint"
            ),
            Deny::NoRouteForClass { host, class, why } => write!(
                f,
                "no configured route carries {host} ({class}): {why}"
            ),
            Deny::OutsideRoutes { host, answers, routes } => write!(
                f,
                "{host} resolved to addresses outside every route ({}; routes checked: {}), so the connection would leave the private path; check the bucket's region, dns.servers and the route CIDRs",
                list_answers(answers),
                routes.join(", ")
            ),
            Deny::Dns { host, answers, servers } => write!(
                f,
                "DNS gave no usable IPv4 answer for {host} ({}) from {servers}; check that dns.servers are reachable and serve this name",
                list_answers(answers)
            ),
            Deny::SelfConnect { addr } => write!(
                f,
                "the route check chose {addr}, which is vpcgate itself; fix the route CIDRs or DNS so that they do not point at the proxy"
            ),
            Deny::ConnectTimeout { addr, after } => write!(
                f,
                "no TCP connection to {addr} within {}; check that the VPC endpoint route is reachable from this host (security groups, route tables, VPN) or raise proxy.connect_timeout",
                humantime::format_duration(*after)
            ),
            Deny::ConnectFailed { addr, error } => write!(
                f,
                "the TCP connection to {addr} failed ({error}); check that the VPC endpoint route is reachable from this host"
            ),
            // The sentence without its "vpcgate refused " (the response adds "vpcgate refused: ").
            Deny::Bucket { refusal, .. } => f.write_str(refusal.sentence(false).trim_start_matches("vpcgate refused ")),
            Deny::ProxyAuth { missing: true } => write!(
                f,
                "this proxy needs credentials (proxy.auth = \"basic\"); put the client's name and password in the proxy URL: HTTPS_PROXY=http://NAME:PASSWORD@HOST:PORT"
            ),
            Deny::ProxyAuth { missing: false } => write!(
                f,
                "the proxy credentials match no configured client; check the name and password in HTTPS_PROXY (vpcgate client add NAME makes a new one)"
            ),
            Deny::BucketHidden { host } => write!(
                f,
                "{host} takes the bucket in the request path, which passthrough mode cannot see, and s3.buckets is set; use virtual-hosted addressing (s3.addressing_style = virtual) or tls.mode = \"inspect\""
            ),
            Deny::HeadTimeout { after } => write!(
                f,
                "the proxy request head did not arrive whole within {after:?} (proxy.handshake_timeout); send `CONNECT host:443 HTTP/1.1`, a Host header and a blank line at once"
            ),
            Deny::OverCapacity { max } => write!(
                f,
                "vpcgate is at its limit of {max} open connections; retry later or raise proxy.max_connections"
            ),
            Deny::RouteUnproven { host, route, why } => write!(
                f,
                "{host} would ride route {route}, but the route table does not send its prefix list to the gateway endpoint now ({why}), so the packets would leave by the public path; fix the route table (vpcgate audit shows it) or set audit.require = \"none\""
            ),
            Deny::GlobalSts { host } => write!(
                f,
                "{host} is the global STS endpoint, which no VPC endpoint serves; use the regional one: set AWS_STS_REGIONAL_ENDPOINTS=regional (or sts_regional_endpoints = regional in the AWS config file)"
            ),
            Deny::NoRouteForService { host, service, region } => {
                // The endpoint's DNS labels read the service name backwards (`ecr.api` is `api.ecr`).
                let labels: Vec<&str> = service.split('.').rev().collect();
                write!(
                    f,
                    "no configured route carries {host} (service {service}); add a [[routes]] entry with kind = \"interface\", service = \"{service}\", endpoint = \"vpce-….{}.{region}.vpce.amazonaws.com\" (or \"{host}\" when the endpoint has private DNS) and the CIDRs of the endpoint's subnets",
                    labels.join(".")
                )?;
                if crate::routes::GATEWAY_SERVICES.contains(&service.as_str()) && service != crate::routes::S3 {
                    write!(f, ", or a gateway route: kind = \"gateway\", service = \"{service}\" with the prefix list com.amazonaws.{region}.{service}")?;
                }
                Ok(())
            }
            Deny::UnknownAwsName { host } => write!(
                f,
                "{host} is an AWS name that names no service endpoint vpcgate can tie to a route; use the service's regional endpoint SERVICE.REGION.amazonaws.com, or send this host around the proxy with NO_PROXY"
            ),
            Deny::CredentialEndpoint { target, what } => write!(
                f,
                "{target} is {what}, a local plain-HTTP endpoint that must not go through a proxy; add {NO_PROXY_CREDENTIALS} to NO_PROXY (and no_proxy)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let d = Deny::Dualstack { host: "b.s3.dualstack.us-east-1.amazonaws.com".into() };
        assert_eq!((d.status(), d.code()), (403, "dualstack"));
        assert!(d.to_string().contains("set s3.use_dualstack_endpoint = false"));
        let d = Deny::Dns { host: "h".into(), answers: vec![], servers: "127.0.0.1:53".into() };
        assert_eq!(d.status(), 502);
        let d = Deny::ConnectTimeout { addr: "127.0.0.1:443".parse().unwrap(), after: Duration::from_secs(10) };
        assert_eq!(d.status(), 504);
        assert!(d.to_string().contains("10s"));
        assert_eq!(Deny::OverCapacity { max: 3 }.status(), 503);
        assert_eq!(Deny::Authority(AuthorityError::MissingPort).status(), 400);
        assert_eq!(Deny::Authority(AuthorityError::IpLiteral("1.2.3.4".into())).status(), 403);
    }

    #[test]
    fn policy_refusals_of_aws_names_may_be_delivered_in_the_tunnel() {
        let h = || "b.s3.dualstack.us-east-1.amazonaws.com".to_string();
        assert!(Deny::Dualstack { host: h() }.deliverable_in_tunnel());
        assert!(Deny::Dns { host: h(), answers: vec![], servers: "x".into() }.deliverable_in_tunnel());
        for d in [Deny::NotAws { host: "example.com".into() }, Deny::Authority(AuthorityError::Userinfo), Deny::OverCapacity { max: 1 }] {
            assert!(!d.deliverable_in_tunnel(), "{d:?}");
        }
        let x = s3_error_xml(403, "dualstack", "vpcgate refused: <a & b>", "/k", "rid");
        assert!(x.contains("<Code>AccessDenied</Code>") && x.contains("&lt;a &amp; b&gt;") && x.contains("<VpcgateReason>dualstack<"), "{x}");
        assert_eq!((s3_code(502), s3_code(504), s3_code(400)), ("BadGateway", "GatewayTimeout", "InvalidRequest"));
    }

    #[test]
    fn every_refusal_type_answers_through_the_same_traits() {
        use crate::policy::handshake::HandshakeRefusal;
        use crate::policy::request::RequestDeny;
        let http: Vec<Box<dyn HttpRefusal>> = vec![
            Box::new(Deny::GlobalSts { host: "sts.amazonaws.com".into() }),
            Box::new(RequestDeny::MethodNotAllowed { method: "CONNECT".into() }),
            Box::new(Deny::Dns { host: "h".into(), answers: vec![], servers: "s".into() }),
        ];
        let got: Vec<(&str, u16, &str)> = http.iter().map(|r| (r.code(), r.status(), r.s3_code())).collect();
        assert_eq!(got, [("global_sts", 403, "AccessDenied"), ("method_not_allowed", 403, "AccessDenied"), ("dns_failed", 502, "BadGateway")]);
        let any: Vec<Box<dyn Refusal>> = vec![Box::new(HandshakeRefusal::SecondRetry), Box::new(Deny::OverCapacity { max: 1 })];
        assert!(any.iter().all(|r| !r.code().is_empty() && !r.to_string().is_empty()));
        let (_, body, _) = refusal_body(ErrorShape::S3Xml, http[0].as_ref(), "vpcgate refused: x", "/", "r");
        assert!(body.contains("<VpcgateReason>global_sts<"), "{body}");
    }

    #[test]
    fn errors_take_the_protocol_of_the_request() {
        use ErrorShape::*;
        assert_eq!(ErrorShape::for_request(true, Some("application/x-amz-json-1.0")), S3Xml);
        assert_eq!(ErrorShape::for_request(false, Some("application/x-amz-json-1.0")), Json);
        assert_eq!(ErrorShape::for_request(false, Some("Application/JSON; charset=utf-8")), Json);
        assert_eq!(ErrorShape::for_request(false, Some("application/x-www-form-urlencoded; charset=utf-8")), QueryXml);
        assert_eq!(ErrorShape::for_request(false, None), QueryXml);
        let (ct, body, t) = error_body(Json, 403, "sigv2", "vpcgate refused: \"x\"", "/", "r");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (ct, t, v["__type"].as_str(), v["message"].as_str()),
            ("application/x-amz-json-1.0", Some("AccessDeniedException"), Some("AccessDeniedException"), Some("vpcgate refused: \"x\""))
        );
        let (_, body, t) = error_body(QueryXml, 504, "dns_failed", "a < b", "/", "r");
        assert!(t.is_none() && body.contains("<ErrorResponse><Error><Type>Receiver</Type><Code>GatewayTimeout</Code><Message>a &lt; b</Message>"), "{body}");
    }

    #[test]
    fn credential_endpoints_in_every_spelling() {
        for (host, want) in [
            ("169.254.169.254", Some("IMDS")),
            ("169.254.169.254:80", Some("IMDS")),
            ("[fd00:ec2::254]:80", Some("IMDS, IPv6")),
            ("fd00:ec2::254", Some("IMDS, IPv6")),
            ("169.254.170.2", Some("ECS")),
            ("169.254.170.23:80", Some("Pod Identity")),
            ("169.254.169.253", None),
            ("s3.us-east-1.amazonaws.com:443", None),
        ] {
            let got = credential_endpoint(host);
            assert_eq!(got.map(|w| want.is_some_and(|x| w.contains(x))), want.map(|_| true), "{host}: {got:?}");
        }
        let d = Deny::CredentialEndpoint { target: "169.254.169.254".into(), what: "IMDS" };
        assert_eq!((d.status(), d.code(), d.deliverable_in_tunnel()), (403, "credential_endpoint", false));
        assert!(d.to_string().contains("add 169.254.169.254,169.254.170.2,169.254.170.23 to NO_PROXY"), "{d}");
        let d = Deny::NoRouteForService { host: "api.ecr.us-east-1.amazonaws.com".into(), service: "ecr.api".into(), region: "us-east-1".into() };
        assert!(d.to_string().contains("vpce-….api.ecr.us-east-1.vpce.amazonaws.com") && !d.to_string().contains("gateway"), "{d}");
        let d = Deny::NoRouteForService { host: "dynamodb.us-east-1.amazonaws.com".into(), service: "dynamodb".into(), region: "us-east-1".into() };
        assert!(d.to_string().contains("com.amazonaws.us-east-1.dynamodb"), "{d}");
    }

    #[test]
    fn outside_routes_names_addresses_and_routes() {
        let d = Deny::OutsideRoutes {
            host: "b.s3.us-east-1.amazonaws.com".into(),
            answers: vec![Answer { name: "b.s3.us-east-1.amazonaws.com".into(), result: Ok(vec![Ipv4Addr::new(3, 3, 3, 3)]) }],
            routes: vec!["s3-gateway".into()],
        };
        let s = d.to_string();
        assert!(s.contains("3.3.3.3") && s.contains("s3-gateway"), "{s}");
        // Hundreds of addresses (a DNS answer over TCP): some named, the rest counted, and the fix
        // still within the 512 characters of a reason phrase.
        let many: Vec<Ipv4Addr> = (0..300u32).map(|i| Ipv4Addr::from(0x0303_0000 + i)).collect();
        let d = Deny::OutsideRoutes {
            host: "b.s3.us-east-1.amazonaws.com".into(),
            answers: vec![Answer { name: "b.s3.us-east-1.amazonaws.com".into(), result: Ok(many) }],
            routes: vec!["s3-gateway".into()],
        };
        let s = d.to_string();
        assert!(s.contains("3.3.0.7, and 292 more") && !s.contains("3.3.0.8") && s.len() < 450, "{s}");
    }
}

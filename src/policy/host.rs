//! Hostname classes by the S3 endpoint grammar (botocore's endpoint rules and partitions.json, the S3 User Guide's endpoint names).
//!
//! `classify` is a pure function from a normalised hostname (lowercase, no trailing dot, as
//! produced by [`crate::policy::authority`]) to a [`HostClass`]. The class decides which routes may
//! carry a connection (see [`crate::policy::connect`]); it never decides on its own that a name is
//! private: that needs the DNS answer to fall inside a route.

use std::fmt;

/// DNS suffixes of AWS partitions (botocore partitions.json), longest first so that
/// `amazonaws.com.cn` wins over `amazonaws.com`. `api.aws` is the partitions' dual-stack suffix.
pub const AWS_SUFFIXES: &[&str] =
    &["amazonaws.com.cn", "csp.hci.ic.gov", "cloud.adc-e.uk", "sc2s.sgov.gov", "amazonaws.com", "amazonaws.eu", "c2s.ic.gov", "api.aws"];

/// What kind of endpoint a hostname names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostClass {
    /// `s3.REGION.SUFFIX` (path-style) or `BUCKET.s3.REGION.SUFFIX` (virtual-hosted).
    Regional { region: String, bucket: Option<String> },
    /// Legacy global endpoint `s3.amazonaws.com` / `BUCKET.s3.amazonaws.com`: where it goes depends on the bucket.
    Global { bucket: Option<String> },
    /// Legacy `s3-REGION.amazonaws.com` / `BUCKET.s3-REGION.amazonaws.com`, and `s3-external-1` (us-east-1).
    DashRegion { region: String, bucket: Option<String> },
    /// Any `.dualstack.` S3 name: resolves to IPv6 as well, never carried by an IPv4 prefix list.
    Dualstack { region: Option<String> },
    /// Transfer Acceleration (`BUCKET.s3-accelerate[.dualstack].SUFFIX`): CloudFront edge, never a VPC endpoint.
    Accelerate { bucket: Option<String> },
    /// `s3-fips.REGION.SUFFIX` and `BUCKET.s3-fips.REGION.SUFFIX`.
    Fips { region: String, bucket: Option<String> },
    /// `NAME-ACCOUNT.s3-accesspoint[-fips].REGION.SUFFIX`.
    AccessPoint { region: String, name: String },
    /// `[ACCOUNT.]s3-control[-fips].REGION.SUFFIX`.
    Control { region: String, account: Option<String> },
    /// Multi-Region Access Point `ALIAS.accesspoint.s3-global.SUFFIX` (SigV4A, PrivateLink only).
    MultiRegion { alias: String },
    /// S3 Object Lambda `[NAME-ACCOUNT.]s3-object-lambda[-fips].REGION.SUFFIX`.
    ObjectLambda { region: String },
    /// S3 Express One Zone, zonal `BUCKET.s3express-AZID.REGION.SUFFIX` or regional `s3express-control.REGION.SUFFIX`.
    Express { region: String },
    /// S3 on Outposts `….s3-outposts.REGION.SUFFIX`.
    Outposts { region: String },
    /// Static website endpoints: HTTP only, never reachable over HTTPS.
    Website { region: String },
    /// Interface endpoint name `[bucket.|accesspoint.|control.]vpce-ID[-AZ].SERVICE.REGION.vpce.amazonaws.com`
    /// (`service` is `s3`, `sts`, `ecr.api` for `…api.ecr…`, as in the endpoint's service name).
    Vpce { region: String, endpoint: String, service: String },
    /// Another AWS service's regional name: `SERVICE.REGION.SUFFIX` (`sts.us-east-1.amazonaws.com`,
    /// `kms-fips.us-east-1…`: a FIPS name is its own service, as its endpoint service is),
    /// `api.ecr.REGION…` and `ecr.REGION…` (`ecr.api`), `ACCOUNT.dkr.ecr.REGION…` (`ecr.dkr`),
    /// DynamoDB's account-based `ACCOUNT.ddb.REGION…` (`dynamodb`). Carried only by a route of
    /// that service.
    Service { service: String, region: String },
    /// The global STS name `sts.amazonaws.com`: no VPC endpoint serves it.
    GlobalSts,
    /// Another AWS name that names no service and region vpcgate can tie to a route (instance
    /// DNS names, load balancers, global service names).
    OtherAws { region: Option<String> },
    /// Not an AWS domain.
    Outside,
}

impl HostClass {
    /// Stable snake_case name used in logs and `explain`.
    pub fn name(&self) -> &'static str {
        match self {
            HostClass::Regional { bucket: None, .. } => "regional",
            HostClass::Regional { bucket: Some(_), .. } => "regional_virtual_hosted",
            HostClass::Global { .. } => "legacy_global",
            HostClass::DashRegion { .. } => "dash_region",
            HostClass::Dualstack { .. } => "dualstack",
            HostClass::Accelerate { .. } => "accelerate",
            HostClass::Fips { .. } => "fips",
            HostClass::AccessPoint { .. } => "access_point",
            HostClass::Control { .. } => "control",
            HostClass::MultiRegion { .. } => "multi_region",
            HostClass::ObjectLambda { .. } => "object_lambda",
            HostClass::Express { .. } => "express",
            HostClass::Outposts { .. } => "outposts",
            HostClass::Website { .. } => "website",
            HostClass::Vpce { .. } => "vpce",
            HostClass::Service { .. } => "service",
            HostClass::GlobalSts => "global_sts",
            HostClass::OtherAws { .. } => "other_aws",
            HostClass::Outside => "outside_aws",
        }
    }

    /// The region the name is bound to, when the name says so.
    pub fn region(&self) -> Option<&str> {
        match self {
            HostClass::Regional { region, .. }
            | HostClass::DashRegion { region, .. }
            | HostClass::Fips { region, .. }
            | HostClass::AccessPoint { region, .. }
            | HostClass::Control { region, .. }
            | HostClass::ObjectLambda { region }
            | HostClass::Express { region }
            | HostClass::Outposts { region }
            | HostClass::Website { region }
            | HostClass::Service { region, .. }
            | HostClass::Vpce { region, .. } => Some(region),
            HostClass::Dualstack { region } | HostClass::OtherAws { region } => region.as_deref(),
            HostClass::Global { .. } | HostClass::Accelerate { .. } | HostClass::MultiRegion { .. } | HostClass::GlobalSts | HostClass::Outside => None,
        }
    }

    /// The AWS service whose routes may carry the name: `s3` for every S3 family, the service's
    /// own name for the others, empty for names of no known service.
    pub fn service(&self) -> &str {
        match self {
            HostClass::Service { service, .. } | HostClass::Vpce { service, .. } => service,
            HostClass::GlobalSts => "sts",
            HostClass::OtherAws { .. } | HostClass::Outside => "",
            _ => crate::routes::S3,
        }
    }

    /// Whether requests to the name are S3 requests (buckets, S3 errors, S3 forms).
    pub fn is_s3(&self) -> bool {
        self.service() == crate::routes::S3
    }
}

impl fmt::Display for HostClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True for an AWS region code such as `us-east-1`, `us-gov-west-1`, `cn-north-1`, `eusc-de-east-1`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let first_ok = (2..=4).contains(&parts[0].len()) && parts[0].bytes().all(|b| b.is_ascii_lowercase());
    let middle_ok = parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let last = parts[parts.len() - 1];
    let last_ok = !last.is_empty() && last.len() <= 2 && last.bytes().all(|b| b.is_ascii_digit());
    first_ok && middle_ok && last_ok
}

/// Split a hostname into (labels before the AWS suffix, suffix), or None outside AWS's domains.
fn split_suffix(host: &str) -> Option<(Vec<&str>, &'static str)> {
    for suffix in AWS_SUFFIXES {
        if host == *suffix {
            return Some((Vec::new(), suffix));
        }
        if let Some(rest) = host.strip_suffix(suffix) {
            if let Some(rest) = rest.strip_suffix('.') {
                return Some((rest.split('.').collect(), suffix));
            }
        }
    }
    None
}

fn bucket_of(labels: &[&str]) -> Option<String> {
    if labels.is_empty() {
        None
    } else {
        Some(labels.join("."))
    }
}

/// Classify a normalised hostname.
pub fn classify(host: &str) -> HostClass {
    let Some((labels, suffix)) = split_suffix(host) else {
        return HostClass::Outside;
    };
    if labels.is_empty() {
        return HostClass::OtherAws { region: None };
    }
    let n = labels.len();
    let last = labels[n - 1];
    // The partitions' dual-stack suffix (`sts.us-east-1.api.aws`): IPv6 as well, never carried.
    if suffix == "api.aws" {
        return HostClass::Dualstack { region: labels.iter().find(|l| is_region(l)).map(|s| s.to_string()) };
    }

    // Interface endpoints: [prefix.]vpce-ID[-AZ].SERVICE-LABELS.REGION.vpce.amazonaws.com, the
    // service labels read right to left (`api.ecr` is `ecr.api`).
    if last == "vpce" && n >= 4 && is_region(labels[n - 2]) {
        if let Some(j) = labels[..n - 3].iter().rposition(|l| l.starts_with("vpce-")) {
            let service: Vec<&str> = labels[j + 1..n - 2].iter().rev().copied().collect();
            return HostClass::Vpce { region: labels[n - 2].to_string(), endpoint: labels[j].to_string(), service: service.join(".") };
        }
    }
    // Multi-Region Access Points: ALIAS.accesspoint.s3-global.SUFFIX
    if last == "s3-global" {
        if n >= 3 && labels[n - 2] == "accesspoint" {
            return HostClass::MultiRegion { alias: labels[..n - 2].join(".") };
        }
        return HostClass::OtherAws { region: None };
    }

    // Find the S3 service label: the right-most label that names an S3 endpoint family.
    let service_at = labels.iter().rposition(|l| is_s3_service_label(l));
    let Some(i) = service_at else {
        return other_service(&labels, suffix);
    };
    let service = labels[i];
    let before = &labels[..i];
    let after = &labels[i + 1..];
    let dualstack = after.contains(&"dualstack") || labels.contains(&"dualstack");
    let region_after = after.iter().find(|l| is_region(l)).map(|s| s.to_string());

    if service.starts_with("s3-accelerate") {
        return HostClass::Accelerate { bucket: bucket_of(before) };
    }
    if dualstack {
        return HostClass::Dualstack { region: region_after };
    }
    // The remaining families all take the form SERVICE.REGION (exactly one label after the service),
    // except the legacy global name and dash-region names, which end at the service label.
    let region_only = match after {
        [r] if is_region(r) => Some(r.to_string()),
        _ => None,
    };
    match (service, region_only, after.is_empty()) {
        ("s3", Some(region), _) => HostClass::Regional { region, bucket: bucket_of(before) },
        ("s3", None, true) if suffix == "amazonaws.com" => HostClass::Global { bucket: bucket_of(before) },
        ("s3-fips", Some(region), _) => HostClass::Fips { region, bucket: bucket_of(before) },
        ("s3-accesspoint" | "s3-accesspoint-fips", Some(region), _) if !before.is_empty() => HostClass::AccessPoint { region, name: before.join(".") },
        ("s3-control" | "s3-control-fips", Some(region), _) => HostClass::Control { region, account: bucket_of(before) },
        ("s3-object-lambda" | "s3-object-lambda-fips", Some(region), _) => HostClass::ObjectLambda { region },
        ("s3-outposts", Some(region), _) => HostClass::Outposts { region },
        ("s3-website", Some(region), _) => HostClass::Website { region },
        (s, Some(region), _) if s.starts_with("s3express") => HostClass::Express { region },
        ("s3-external-1", None, true) => HostClass::DashRegion { region: "us-east-1".into(), bucket: bucket_of(before) },
        (s, None, true) if s.starts_with("s3-website-") && is_region(&s["s3-website-".len()..]) => {
            HostClass::Website { region: s["s3-website-".len()..].to_string() }
        }
        (s, None, true) if s.starts_with("s3-") && is_region(&s[3..]) => HostClass::DashRegion { region: s[3..].to_string(), bucket: bucket_of(before) },
        _ => HostClass::OtherAws { region: labels.iter().rev().find(|l| is_region(l)).map(|s| s.to_string()) },
    }
}

/// A name of another AWS service (no S3 label in it).
fn other_service(labels: &[&str], suffix: &str) -> HostClass {
    let service = |name: &str, region: &str| HostClass::Service { service: name.to_string(), region: region.to_string() };
    let account = |l: &str| l.len() == 12 && l.bytes().all(|b| b.is_ascii_digit());
    match labels {
        ["sts"] if suffix == "amazonaws.com" => HostClass::GlobalSts,
        ["api", "ecr", r] | ["ecr", r] if is_region(r) => service("ecr.api", r),
        [a, "dkr", "ecr", r] if account(a) && is_region(r) => service("ecr.dkr", r),
        [a, "ddb", r] if account(a) && is_region(r) => service("dynamodb", r),
        [s, r] if is_region(r) && is_service_label(s) => service(s, r),
        _ => HostClass::OtherAws { region: labels.iter().rev().find(|l| is_region(l)).map(|s| s.to_string()) },
    }
}

/// An endpoint prefix as AWS writes them: lower-case letters, digits and dashes, starting with a letter.
pub fn is_service_label(l: &str) -> bool {
    l.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_s3_service_label(l: &str) -> bool {
    l == "s3"
        || l == "s3-fips"
        || l == "s3-external-1"
        || l.starts_with("s3-accelerate")
        || l.starts_with("s3-accesspoint")
        || l.starts_with("s3-control")
        || l.starts_with("s3-object-lambda")
        || l == "s3-outposts"
        || l.starts_with("s3-website")
        || l.starts_with("s3express")
        || (l.starts_with("s3-") && is_region(&l[3..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use HostClass::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn regions() {
        for r in ["us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1", "eusc-de-east-1", "ap-southeast-7", "us-isob-east-1"] {
            assert!(is_region(r), "{r}");
        }
        for r in ["us-east", "s3", "east-1-us", "us-east-1a", "dualstack", "vpce", "us--1", "US-EAST-1"] {
            assert!(!is_region(r), "{r}");
        }
    }

    #[test]
    fn every_form_in_aws_facts_section_1() {
        let cases: Vec<(&str, HostClass)> = vec![
            ("s3.eu-west-1.amazonaws.com", Regional { region: s("eu-west-1"), bucket: None }),
            ("my-bucket.s3.eu-west-1.amazonaws.com", Regional { region: s("eu-west-1"), bucket: Some(s("my-bucket")) }),
            ("my.dotted.bucket.s3.us-east-1.amazonaws.com", Regional { region: s("us-east-1"), bucket: Some(s("my.dotted.bucket")) }),
            ("s3.cn-north-1.amazonaws.com.cn", Regional { region: s("cn-north-1"), bucket: None }),
            ("s3.us-gov-west-1.amazonaws.com", Regional { region: s("us-gov-west-1"), bucket: None }),
            ("s3.amazonaws.com", Global { bucket: None }),
            ("b.s3.amazonaws.com", Global { bucket: Some(s("b")) }),
            ("s3-external-1.amazonaws.com", DashRegion { region: s("us-east-1"), bucket: None }),
            ("s3-us-west-2.amazonaws.com", DashRegion { region: s("us-west-2"), bucket: None }),
            ("b.s3-us-west-2.amazonaws.com", DashRegion { region: s("us-west-2"), bucket: Some(s("b")) }),
            ("s3.dualstack.us-east-1.amazonaws.com", Dualstack { region: Some(s("us-east-1")) }),
            ("b.s3.dualstack.us-east-1.amazonaws.com", Dualstack { region: Some(s("us-east-1")) }),
            ("s3.dualstack.cn-north-1.amazonaws.com.cn", Dualstack { region: Some(s("cn-north-1")) }),
            ("s3-fips.dualstack.us-east-1.amazonaws.com", Dualstack { region: Some(s("us-east-1")) }),
            ("ap-123456789012.s3-accesspoint.dualstack.us-west-2.amazonaws.com", Dualstack { region: Some(s("us-west-2")) }),
            ("123456789012.s3-control.dualstack.us-east-1.amazonaws.com", Dualstack { region: Some(s("us-east-1")) }),
            ("s3-fips.us-gov-west-1.amazonaws.com", Fips { region: s("us-gov-west-1"), bucket: None }),
            ("b.s3-fips.us-east-1.amazonaws.com", Fips { region: s("us-east-1"), bucket: Some(s("b")) }),
            ("b.s3-accelerate.amazonaws.com", Accelerate { bucket: Some(s("b")) }),
            ("b.s3-accelerate.dualstack.amazonaws.com", Accelerate { bucket: Some(s("b")) }),
            ("b.s3-accelerate.dualstack.us-east-1.amazonaws.com", Accelerate { bucket: Some(s("b")) }),
            ("finance-docs-123456789012.s3-accesspoint.us-west-2.amazonaws.com", AccessPoint { region: s("us-west-2"), name: s("finance-docs-123456789012") }),
            (
                "finance-docs-123456789012.s3-accesspoint-fips.us-east-1.amazonaws.com",
                AccessPoint { region: s("us-east-1"), name: s("finance-docs-123456789012") },
            ),
            ("123456789012.s3-control.us-east-1.amazonaws.com", Control { region: s("us-east-1"), account: Some(s("123456789012")) }),
            ("s3-control.us-east-1.amazonaws.com", Control { region: s("us-east-1"), account: None }),
            ("s3-control-fips.us-east-1.amazonaws.com", Control { region: s("us-east-1"), account: None }),
            ("mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com", MultiRegion { alias: s("mfzwi23gnjvgw.mrap") }),
            ("object-lambda-111122223333.s3-object-lambda.us-east-1.amazonaws.com", ObjectLambda { region: s("us-east-1") }),
            ("s3-object-lambda.us-east-1.amazonaws.com", ObjectLambda { region: s("us-east-1") }),
            ("mybkt--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com", Express { region: s("us-east-1") }),
            ("s3express-control.us-east-1.amazonaws.com", Express { region: s("us-east-1") }),
            ("mybkt--use1-az4--x-s3.s3express-use1-az4.dualstack.us-east-1.amazonaws.com", Dualstack { region: Some(s("us-east-1")) }),
            ("b.op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com", Outposts { region: s("us-west-2") }),
            ("example-bucket.s3-website-us-west-2.amazonaws.com", Website { region: s("us-west-2") }),
            ("example-bucket.s3-website.us-west-2.amazonaws.com", Website { region: s("us-west-2") }),
            ("bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", Vpce { region: s("us-east-1"), endpoint: s("vpce-1a2b3c4d-5e6f"), service: s("s3") }),
            (
                "vpce-0abc-1234-us-east-1a.s3.us-east-1.vpce.amazonaws.com",
                Vpce { region: s("us-east-1"), endpoint: s("vpce-0abc-1234-us-east-1a"), service: s("s3") },
            ),
            (
                "mybucket.bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com",
                Vpce { region: s("us-east-1"), endpoint: s("vpce-1a2b3c4d-5e6f"), service: s("s3") },
            ),
            ("vpce-0abc-1234.sts.us-east-1.vpce.amazonaws.com", Vpce { region: s("us-east-1"), endpoint: s("vpce-0abc-1234"), service: s("sts") }),
            (
                "vpce-0abc-1234-us-east-1a.api.ecr.us-east-1.vpce.amazonaws.com",
                Vpce { region: s("us-east-1"), endpoint: s("vpce-0abc-1234-us-east-1a"), service: s("ecr.api") },
            ),
            ("sts.us-east-1.amazonaws.com", Service { service: s("sts"), region: s("us-east-1") }),
            ("kms-fips.us-east-1.amazonaws.com", Service { service: s("kms-fips"), region: s("us-east-1") }),
            ("dynamodb.eu-west-1.amazonaws.com", Service { service: s("dynamodb"), region: s("eu-west-1") }),
            ("123456789012.ddb.us-east-1.amazonaws.com", Service { service: s("dynamodb"), region: s("us-east-1") }),
            ("api.ecr.us-east-1.amazonaws.com", Service { service: s("ecr.api"), region: s("us-east-1") }),
            ("ecr.us-east-1.amazonaws.com", Service { service: s("ecr.api"), region: s("us-east-1") }),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", Service { service: s("ecr.dkr"), region: s("us-east-1") }),
            ("logs.cn-north-1.amazonaws.com.cn", Service { service: s("logs"), region: s("cn-north-1") }),
            ("sts.amazonaws.com", GlobalSts),
            ("sts.us-east-1.api.aws", Dualstack { region: Some(s("us-east-1")) }),
            ("iam.amazonaws.com", OtherAws { region: None }),
            ("ec2-1-2-3-4.compute-1.amazonaws.com", OtherAws { region: None }),
            ("my-lb-1.us-east-1.elb.amazonaws.com", OtherAws { region: Some(s("us-east-1")) }),
            ("x.dkr.ecr.us-east-1.amazonaws.com", OtherAws { region: Some(s("us-east-1")) }),
            ("amazonaws.com", OtherAws { region: None }),
            ("s3.api.aws", Dualstack { region: None }),
            ("example.com", Outside),
            ("s3.us-east-1.amazonaws.com.evil.com", Outside),
            ("amazonaws.com.evil.com", Outside),
            ("evilamazonaws.com", Outside),
            ("s3.amazonaws.co", Outside),
        ];
        for (host, want) in cases {
            assert_eq!(classify(host), want, "{host}");
        }
    }

    #[test]
    fn regions_of_classes() {
        assert_eq!(classify("b.s3.eu-west-1.amazonaws.com").region(), Some("eu-west-1"));
        assert_eq!(classify("b.s3.amazonaws.com").region(), None);
        assert_eq!(classify("b.s3-us-west-2.amazonaws.com").name(), "dash_region");
        assert_eq!(classify("sts.eu-west-1.amazonaws.com").region(), Some("eu-west-1"));
    }

    #[test]
    fn services_of_classes() {
        for (host, service, s3) in [
            ("b.s3.us-east-1.amazonaws.com", "s3", true),
            ("bucket.vpce-1-2.s3.us-east-1.vpce.amazonaws.com", "s3", true),
            ("vpce-1-2.sts.us-east-1.vpce.amazonaws.com", "sts", false),
            ("sts.us-east-1.amazonaws.com", "sts", false),
            ("sts.amazonaws.com", "sts", false),
            ("123456789012.ddb.us-east-1.amazonaws.com", "dynamodb", false),
            ("iam.amazonaws.com", "", false),
        ] {
            assert_eq!((classify(host).service(), classify(host).is_s3()), (service, s3), "{host}");
        }
    }
}

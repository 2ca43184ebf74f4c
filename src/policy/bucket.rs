//! The bucket perimeter (`[s3] buckets`): which buckets a request may name.
//!
//! A private route keeps S3 traffic off the internet but lets any bucket through; this says
//! which ones. Every request names what it reaches ([`Named`]): from the Host (virtual-hosted
//! names, access points, Multi-Region Access Points, S3 Express zonal names, interface-endpoint
//! names), else from the first path segment (path-style, ARNs included), and a copy names its
//! source too (`x-amz-copy-source`). Each becomes a key matched against the configured patterns:
//!
//! | what | key | example pattern |
//! |---|---|---|
//! | a bucket (also an S3 Express directory bucket, `NAME--AZ--x-s3`) | its name | `logs-prod`, `harness-*` |
//! | an access point (host `NAME-ACCOUNT.s3-accesspoint…`, `NAME-ACCOUNT.accesspoint.vpce-…`, or ARN `arn:PARTITION:s3:REGION:ACCOUNT:accesspoint/NAME`) | `accesspoint/NAME-ACCOUNT` | `accesspoint/ingest-123456789012` |
//! | a Multi-Region Access Point (`ALIAS.accesspoint.s3-global…`) | `mrap/ALIAS` | `mrap/mfzwi23gnjvgw.mrap` |
//!
//! `*` matches any run of characters but `/`, so `*` alone allows every bucket and no access
//! point. What names no bucket and is no `GET /` on a service name (ListBuckets, allowed unless
//! `s3.allow_list_buckets = false`) cannot be matched, and is refused while a list is set: S3
//! Control, Object Lambda, Outposts, other ARNs, a path segment that is no bucket name (`%2F`,
//! `..`, an empty segment). Fail closed: never guess.
//!
//! Pure: names and paths in, decisions out.

use crate::policy::host::HostClass;

/// What a request (or its copy source) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// The service itself (`GET /` on `s3.REGION…`: ListBuckets).
    Service,
    Bucket(String),
    /// `NAME-ACCOUNT`.
    AccessPoint(String),
    MultiRegion(String),
    /// Nothing vpcgate can match to a pattern; why.
    Unknown(&'static str),
}

impl Named {
    /// The key the patterns are matched against.
    pub fn key(&self) -> Option<String> {
        match self {
            Named::Bucket(b) => Some(b.clone()),
            Named::AccessPoint(a) => Some(format!("accesspoint/{a}")),
            Named::MultiRegion(m) => Some(format!("mrap/{m}")),
            Named::Service | Named::Unknown(_) => None,
        }
    }

    /// For the request log line: the key, `-` for the service, `?` when unknown.
    pub fn log_name(&self) -> String {
        match self {
            Named::Service => "-".to_string(),
            Named::Unknown(_) => "?".to_string(),
            other => other.key().unwrap_or_default(),
        }
    }
}

/// A bucket name as S3 has accepted it (lower case today; legacy us-east-1 buckets may hold upper
/// case and `_`, up to 255 characters): anything else in that place (a `/` from `%2F`, `..`, an
/// empty segment) is no bucket, and matching it against a pattern would be a guess.
fn bucket_name(s: &str) -> Option<String> {
    let ok = (3..=255).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !s.contains("..")
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    ok.then(|| s.to_string())
}

/// Percent-decode a path segment; `None` when the escapes do not decode to UTF-8 text.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (h, l) = (b.get(i + 1).copied().and_then(hex)?, b.get(i + 2).copied().and_then(hex)?);
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An S3 access point ARN (`arn:PARTITION:s3:REGION:ACCOUNT:accesspoint/NAME[/…]`, or with
/// `accesspoint:NAME`), as the access point it names; other ARNs are not matched.
fn access_point_arn(s: &str) -> Named {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "s3", region, account, resource]
            if partition.starts_with("aws") && !region.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let name = resource.strip_prefix("accesspoint/").or_else(|| resource.strip_prefix("accesspoint:"));
            match name.map(|n| n.split('/').next().unwrap_or("")) {
                Some(n) if bucket_name(n).is_some() => Named::AccessPoint(format!("{n}-{account}")),
                _ => Named::Unknown("an ARN that names no access point vpcgate can match"),
            }
        }
        _ => Named::Unknown("an ARN that names no access point vpcgate can match"),
    }
}

/// What a path-style request names by its first segment (after `/`).
pub fn path_style(path: &str) -> Named {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Named::Service;
    }
    // An ARN spans segments (`arn:…:accesspoint/NAME/KEY`), written raw or encoded.
    if rest.starts_with("arn:") || rest.starts_with("arn%3A") || rest.starts_with("arn%3a") {
        return match decode(rest) {
            Some(arn) => access_point_arn(&arn),
            None => Named::Unknown("a path whose first segment does not decode"),
        };
    }
    let seg = rest.split('/').next().unwrap_or("");
    let Some(seg) = decode(seg) else { return Named::Unknown("a path whose first segment does not decode") };
    match bucket_name(&seg) {
        Some(b) => Named::Bucket(b),
        None => Named::Unknown("a path whose first segment is no bucket name"),
    }
}

/// What a request to `host` (classified as `class`) for `path` (no query) names.
pub fn named_by(host: &str, class: &HostClass, path: &str) -> Named {
    let bucket = |b: &Option<String>| match b {
        Some(b) => bucket_name(b).map(Named::Bucket).unwrap_or(Named::Unknown("a host whose bucket label is no bucket name")),
        None => path_style(path),
    };
    match class {
        HostClass::Regional { bucket: b, .. }
        | HostClass::Global { bucket: b }
        | HostClass::DashRegion { bucket: b, .. }
        | HostClass::Fips { bucket: b, .. } => bucket(b),
        HostClass::AccessPoint { name, .. } => Named::AccessPoint(name.clone()),
        HostClass::MultiRegion { alias } => Named::MultiRegion(alias.clone()),
        HostClass::Express { .. } => {
            // Zonal `BUCKET.s3express-AZ.REGION…` names its directory bucket; the regional
            // `s3express-control.REGION…` takes it path-style.
            match host.split_once(".s3express-") {
                Some((b, _)) => bucket(&Some(b.to_string())),
                None => path_style(path),
            }
        }
        HostClass::Vpce { endpoint, .. } => {
            // [BUCKET.bucket. | NAME-ACCOUNT.accesspoint. | control.]vpce-ID…: the labels before
            // the endpoint's own say which.
            let before = host.split_once(&format!(".{endpoint}.")).map(|(b, _)| b).unwrap_or("");
            match before.rsplit_once('.') {
                Some((b, "bucket")) => bucket(&Some(b.to_string())),
                Some((a, "accesspoint")) => Named::AccessPoint(a.to_string()),
                None if before == "bucket" => path_style(path),
                _ => Named::Unknown("an interface-endpoint name for S3 Control or another API"),
            }
        }
        HostClass::Control { .. } => Named::Unknown("S3 Control, which names no single bucket"),
        HostClass::ObjectLambda { .. } => Named::Unknown("S3 Object Lambda, whose access points are not matched yet"),
        HostClass::Outposts { .. } => Named::Unknown("S3 on Outposts, whose buckets are not matched yet"),
        HostClass::Dualstack { .. }
        | HostClass::Accelerate { .. }
        | HostClass::Website { .. }
        | HostClass::Service { .. }
        | HostClass::GlobalSts
        | HostClass::OtherAws { .. }
        | HostClass::Outside => Named::Unknown("a name that is no S3 REST endpoint"),
    }
}

/// What an `x-amz-copy-source` value names (CopyObject, UploadPartCopy): `[/]BUCKET/KEY`
/// URL-encoded, optionally `?versionId=…`, or an access point ARN with `/object/KEY`.
pub fn named_by_copy_source(value: &str) -> Named {
    let value = value.split_once('?').map(|(v, _)| v).unwrap_or(value);
    let Some(decoded) = decode(value) else { return Named::Unknown("a copy source that does not decode") };
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    if rest.starts_with("arn:") {
        return access_point_arn(rest);
    }
    match rest.split_once('/') {
        Some((b, key)) if !key.is_empty() => bucket_name(b).map(Named::Bucket).unwrap_or(Named::Unknown("a copy source whose bucket is no bucket name")),
        _ => Named::Unknown("a copy source without BUCKET/KEY"),
    }
}

/// The configured perimeter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketRules {
    /// `[s3] buckets`; empty: any bucket (no perimeter).
    pub patterns: Vec<String>,
    /// `[s3] allow_list_buckets`: whether `GET /` on a service name (ListBuckets) passes.
    pub allow_list_buckets: bool,
}

/// Why the perimeter refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::EnumDiscriminants), strum_discriminants(derive(strum::EnumIter)))]
pub enum BucketRefusal {
    NotListed { key: String },
    ListBuckets,
    Unknown { why: &'static str },
}

impl BucketRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            BucketRefusal::NotListed { .. } => "bucket_not_allowed",
            BucketRefusal::ListBuckets => "list_buckets_not_allowed",
            BucketRefusal::Unknown { .. } => "bucket_unknown",
        }
    }

    /// The sentence, for a request (`copy = false`) or for its copy source.
    pub fn sentence(&self, copy: bool) -> String {
        let what = if copy { "a copy from" } else { "a request for" };
        match self {
            BucketRefusal::NotListed { key } => format!(
                "vpcgate refused {what} {key}, which is not in s3.buckets (the bucket perimeter); use a listed bucket, or add {key} (or a pattern such as \"{}*\") to s3.buckets",
                key.split(['-', '.']).next().unwrap_or(key)
            ),
            BucketRefusal::ListBuckets => "vpcgate refused ListBuckets (GET / on the service name) because s3.allow_list_buckets = false; name a bucket, or set s3.allow_list_buckets = true".to_string(),
            BucketRefusal::Unknown { why } => format!(
                "vpcgate refused {what} something it cannot check against s3.buckets ({why}); address a listed bucket by its name, virtual-hosted or path-style"
            ),
        }
    }
}

/// What the perimeter decides at the CONNECT, from the name alone: a name that carries its
/// bucket (or access point) is decided now; a service name is decided per request in inspect
/// mode, and refused in passthrough mode, which cannot see requests (`Ok(false)` = refuse it as
/// path-style in passthrough).
pub fn at_connect(rules: &BucketRules, host: &str, class: &HostClass, inspect: bool) -> Result<bool, BucketRefusal> {
    // The perimeter is S3's: STS, DynamoDB and the other services name no bucket.
    if !rules.active() || !class.is_s3() {
        return Ok(true);
    }
    match named_by(host, class, "") {
        Named::Service => Ok(inspect),
        named => rules.check(&named).map(|()| true),
    }
}

/// [`at_connect`] as the CONNECT refusal the proxy answers and `explain` reports (one function,
/// so that the two cannot drift).
pub fn connect_decision(rules: &BucketRules, host: &str, class: &HostClass, inspect: bool) -> Result<(), crate::policy::deny::Deny> {
    use crate::policy::deny::Deny;
    match at_connect(rules, host, class, inspect) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Deny::BucketHidden { host: host.to_string() }),
        Err(refusal) => Err(Deny::Bucket { host: host.to_string(), refusal }),
    }
}

impl BucketRules {
    pub fn active(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The decision for what a request names.
    pub fn check(&self, named: &Named) -> Result<(), BucketRefusal> {
        if !self.active() {
            return Ok(());
        }
        match named {
            Named::Service if self.allow_list_buckets => Ok(()),
            Named::Service => Err(BucketRefusal::ListBuckets),
            Named::Unknown(why) => Err(BucketRefusal::Unknown { why }),
            other => {
                let key = other.key().unwrap_or_default();
                if self.patterns.iter().any(|p| glob(p, &key)) {
                    Ok(())
                } else {
                    Err(BucketRefusal::NotListed { key })
                }
            }
        }
    }
}

/// `*` matches any run of characters except `/`; everything else matches itself.
pub fn glob(pattern: &str, key: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == key,
        Some((head, tail)) => {
            let Some(rest) = key.strip_prefix(head) else { return false };
            // Try every split of the rest at which `*` ends (it never spans a `/`).
            (0..=rest.len()).filter(|&i| rest.is_char_boundary(i)).take_while(|&i| !rest[..i].contains('/')).any(|i| glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::host::classify;

    fn named(host: &str, path: &str) -> Named {
        named_by(host, &classify(host), path)
    }

    #[test]
    fn virtual_hosted_and_path_style_forms_of_one_request_decide_alike() {
        // One table: each bucket reached both ways must name the same thing.
        for (bucket, key) in [("logs-prod", "/a/b.txt"), ("my.dotted.bucket", "/k"), ("abc", "/")] {
            for (vhost, phost) in [
                (format!("{bucket}.s3.us-east-1.amazonaws.com"), "s3.us-east-1.amazonaws.com"),
                (format!("{bucket}.s3.amazonaws.com"), "s3.amazonaws.com"),
                (format!("{bucket}.s3-us-west-2.amazonaws.com"), "s3-us-west-2.amazonaws.com"),
                (format!("{bucket}.s3-fips.us-east-1.amazonaws.com"), "s3-fips.us-east-1.amazonaws.com"),
                (
                    format!("{bucket}.bucket.vpce-0a1b2c3d4e5f6a7b8-abcdefgh.s3.us-east-1.vpce.amazonaws.com"),
                    "bucket.vpce-0a1b2c3d4e5f6a7b8-abcdefgh.s3.us-east-1.vpce.amazonaws.com",
                ),
            ] {
                let v = named(&vhost, key);
                let p = named(phost, &format!("/{bucket}{key}"));
                assert_eq!(v, Named::Bucket(bucket.to_string()), "{vhost}");
                assert_eq!(p, v, "{phost}");
            }
        }
    }

    #[test]
    fn what_requests_name() {
        let cases: &[(&str, &str, Named)] = &[
            ("s3.us-east-1.amazonaws.com", "/", Named::Service),
            ("s3.us-east-1.amazonaws.com", "", Named::Service),
            ("s3.us-east-1.amazonaws.com", "/LegacyBucket/k", Named::Bucket("LegacyBucket".into())),
            ("ingest-123456789012.s3-accesspoint.us-east-1.amazonaws.com", "/k", Named::AccessPoint("ingest-123456789012".into())),
            ("ingest-123456789012.accesspoint.vpce-0a1b2c3d.s3.us-east-1.vpce.amazonaws.com", "/k", Named::AccessPoint("ingest-123456789012".into())),
            ("mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com", "/k", Named::MultiRegion("mfzwi23gnjvgw.mrap".into())),
            ("dir--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com", "/k", Named::Bucket("dir--usw2-az1--x-s3".into())),
            ("s3express-control.us-west-2.amazonaws.com", "/dir--usw2-az1--x-s3", Named::Bucket("dir--usw2-az1--x-s3".into())),
            (
                "s3.us-east-1.amazonaws.com",
                "/arn%3Aaws%3As3%3Aus-east-1%3A123456789012%3Aaccesspoint%2Fingest/k",
                Named::AccessPoint("ingest-123456789012".into()),
            ),
            ("s3.us-east-1.amazonaws.com", "/arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/ingest/k", Named::AccessPoint("ingest-123456789012".into())),
        ];
        for (host, path, want) in cases {
            assert_eq!(&named(host, path), want, "{host} {path}");
        }
        // Tricks: nothing to match, so nothing is guessed.
        for (host, path) in [
            ("s3.us-east-1.amazonaws.com", "//logs-prod/k"),
            ("s3.us-east-1.amazonaws.com", "/logs-prod%2Fx/k"),
            ("s3.us-east-1.amazonaws.com", "/../logs-prod/k"),
            ("s3.us-east-1.amazonaws.com", "/logs..prod/k"),
            ("s3.us-east-1.amazonaws.com", "/logs-prod./k"),
            ("s3.us-east-1.amazonaws.com", "/%ZZ/k"),
            ("s3.us-east-1.amazonaws.com", "/arn:aws:s3-outposts:us-east-1:123456789012:outpost/op/bucket/b/k"),
            ("s3.us-east-1.amazonaws.com", "/arn:aws:s3:us-east-1:12345:accesspoint/x/k"),
            ("123456789012.s3-control.us-east-1.amazonaws.com", "/v20180820/accesspoint"),
            ("control.vpce-0a1b2c3d.s3.us-east-1.vpce.amazonaws.com", "/v20180820/jobs"),
            ("x-123456789012.s3-object-lambda.us-east-1.amazonaws.com", "/k"),
        ] {
            assert!(matches!(named(host, path), Named::Unknown(_)), "{host} {path}: {:?}", named(host, path));
        }
    }

    #[test]
    fn copy_sources() {
        let cases: &[(&str, Named)] = &[
            ("logs-prod/a/b.txt", Named::Bucket("logs-prod".into())),
            ("/logs-prod/a%20b.txt?versionId=3", Named::Bucket("logs-prod".into())),
            ("%2Flogs-prod%2Fk", Named::Bucket("logs-prod".into())),
            // S3 decodes the whole value, then splits at the first `/`.
            ("logs%2Fprod/k", Named::Bucket("logs".into())),
            ("arn%3Aaws%3As3%3Aus-west-2%3A123456789012%3Aaccesspoint%2Fingest%2Fobject%2Fk", Named::AccessPoint("ingest-123456789012".into())),
        ];
        for (v, want) in cases {
            assert_eq!(&named_by_copy_source(v), want, "{v}");
        }
        for v in ["logs-prod", "/logs-prod/", "..%2Fother/k", "%E0/k", "/other..b/k"] {
            assert!(matches!(named_by_copy_source(v), Named::Unknown(_)), "{v}");
        }
    }

    #[test]
    fn rules_and_globs() {
        let rules = BucketRules { patterns: vec!["harness-*".into(), "logs-prod".into(), "accesspoint/ingest-*".into()], allow_list_buckets: true };
        assert!(rules.check(&Named::Bucket("harness-a".into())).is_ok());
        assert!(rules.check(&Named::Bucket("logs-prod".into())).is_ok());
        assert_eq!(rules.check(&Named::Bucket("logs-prod2".into())), Err(BucketRefusal::NotListed { key: "logs-prod2".into() }));
        assert_eq!(rules.check(&Named::Bucket("Harness-a".into())), Err(BucketRefusal::NotListed { key: "Harness-a".into() }), "case is the bucket's own");
        assert!(rules.check(&Named::AccessPoint("ingest-123456789012".into())).is_ok());
        assert!(rules.check(&Named::MultiRegion("x.mrap".into())).is_err());
        assert!(rules.check(&Named::Service).is_ok());
        assert!(rules.check(&Named::Unknown("x")).is_err());
        let no_list = BucketRules { allow_list_buckets: false, ..rules.clone() };
        assert_eq!(no_list.check(&Named::Service), Err(BucketRefusal::ListBuckets));
        // No patterns: no perimeter, as before.
        assert!(BucketRules::default().check(&Named::Unknown("x")).is_ok());
        // `*` never crosses a `/`: it allows buckets, not access points.
        assert!(glob("*", "any-bucket") && !glob("*", "accesspoint/x-123456789012"));
        assert!(glob("a*b*c", "a-b-c") && !glob("a*b*c", "a-b-d") && glob("*-prod", "logs-prod") && !glob("logs", "logs-prod"));
    }
}

//! Strict parse of a CONNECT request target (`host:port`).
//!
//! The proxy only ever tunnels to DNS names it can classify, so everything that is not a plain
//! `name:port` is refused here, before any other rule runs: IP literals (v4 and v6, bracketed or
//! not), bracketed names (`[s3.amazonaws.com]:443`, the smokescreen GHSA-qwrf-gfpj-qvj6 shape),
//! userinfo, percent-escapes, empty or non-numeric ports and ports outside the allowlist.

use std::fmt;

/// A CONNECT target that passed the strict parse: a lowercase DNS name without trailing dot, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a CONNECT target was refused by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::EnumDiscriminants), strum_discriminants(derive(strum::EnumIter)))]
pub enum AuthorityError {
    Empty,
    MissingPort,
    BadPort(String),
    PortNotAllowed {
        port: u16,
        allowed: Vec<u16>,
    },
    IpLiteral(String),
    Bracketed(String),
    Userinfo,
    BadName(String),
    /// A URL (`http://host:443`, `host:443/path`) where RFC 9110 wants `host:port`.
    NotAuthorityForm,
}

impl AuthorityError {
    /// Stable snake_case code used in logs, metrics and the `X-Vpcgate-Reason` header.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorityError::Empty | AuthorityError::MissingPort | AuthorityError::BadPort(_) | AuthorityError::NotAuthorityForm => "bad_authority",
            AuthorityError::PortNotAllowed { .. } => "port_not_allowed",
            AuthorityError::IpLiteral(_) | AuthorityError::Bracketed(_) => "ip_literal",
            AuthorityError::Userinfo => "userinfo",
            AuthorityError::BadName(_) => "bad_name",
        }
    }
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorityError::Empty => write!(f, "the CONNECT target is empty; send CONNECT host:443"),
            AuthorityError::MissingPort => {
                write!(f, "the CONNECT target has no port; send CONNECT host:443")
            }
            AuthorityError::BadPort(p) => {
                write!(f, "the CONNECT port {p:?} is not a number from 1 to 65535; send CONNECT host:443")
            }
            AuthorityError::PortNotAllowed { port, allowed } => write!(
                f,
                "port {port} is not allowed (allowed: {}); use HTTPS on an allowed port or add it to proxy.connect_ports",
                allowed.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            ),
            AuthorityError::IpLiteral(h) => {
                write!(f, "CONNECT to the address {h} is refused because vpcgate only tunnels to AWS DNS names it can check; use the service's hostname")
            }
            AuthorityError::Bracketed(h) => {
                write!(f, "the bracketed target {h} is refused because only plain DNS names are tunnelled; use the service's hostname without brackets")
            }
            AuthorityError::Userinfo => write!(f, "the CONNECT target carries userinfo (user@host), which is refused; send CONNECT host:443"),
            AuthorityError::NotAuthorityForm => {
                write!(f, "the CONNECT target is a URL, not host:port; send CONNECT host:443")
            }
            AuthorityError::BadName(h) => write!(f, "{h:?} is not a valid DNS hostname; use the service's hostname (letters, digits, '-' and '.')"),
        }
    }
}

/// Parse a CONNECT request target. `allowed_ports` is `proxy.connect_ports`.
pub fn parse_connect_target(raw: &str, allowed_ports: &[u16]) -> Result<Target, AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if raw.contains('@') {
        return Err(AuthorityError::Userinfo);
    }
    if raw.contains('/') {
        return Err(AuthorityError::NotAuthorityForm);
    }
    if raw.starts_with('[') || raw.contains(']') {
        return Err(AuthorityError::Bracketed(raw.to_string()));
    }
    // More than one colon can only be an unbracketed IPv6 literal (or garbage).
    if raw.matches(':').count() > 1 {
        let host = raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw);
        if host.parse::<std::net::Ipv6Addr>().is_ok() || raw.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(AuthorityError::IpLiteral(raw.to_string()));
        }
        return Err(AuthorityError::BadName(raw.to_string()));
    }
    let (host, port) = raw.rsplit_once(':').ok_or(AuthorityError::MissingPort)?;
    if port.is_empty() {
        return Err(AuthorityError::MissingPort);
    }
    // Digits only, no leading zero: `0443` is 443 to one reader and octal or garbage to another.
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 || port.starts_with('0') {
        return Err(AuthorityError::BadPort(port.to_string()));
    }
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return Err(AuthorityError::BadPort(port.to_string())),
        Ok(p) => p,
    };
    let host = validate_hostname(host)?;
    if !allowed_ports.contains(&port) {
        return Err(AuthorityError::PortNotAllowed { port, allowed: allowed_ports.to_vec() });
    }
    Ok(Target { host, port })
}

/// Validate and normalise a DNS hostname: lowercase, no trailing dot, LDH labels of 1..=63 bytes,
/// at most 253 bytes, and not something that parses as an IPv4 address in any of the forms
/// resolvers accept (dotted quad, `127.1`, a bare number, hex).
pub fn validate_hostname(raw: &str) -> Result<String, AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    let host = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err(AuthorityError::BadName(raw.to_string()));
    }
    if looks_like_ipv4(&host) {
        return Err(AuthorityError::IpLiteral(raw.to_string()));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(AuthorityError::BadName(raw.to_string()));
        }
    }
    Ok(host)
}

/// True when every label is numeric (decimal, octal or 0x-hex): `getaddrinfo` would treat the
/// name as an IPv4 address (`127.1`, `2130706433`, `0x7f.1`).
fn looks_like_ipv4(host: &str) -> bool {
    host.split('.').all(|label| {
        !label.is_empty()
            && (label.bytes().all(|b| b.is_ascii_digit())
                || (label.len() > 2 && label[..2].eq_ignore_ascii_case("0x") && label[2..].bytes().all(|b| b.is_ascii_hexdigit())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &[u16] = &[443];

    #[test]
    fn accepts_plain_names_and_normalises() {
        assert_eq!(parse_connect_target("S3.US-East-1.amazonaws.com.:443", P).unwrap(), Target { host: "s3.us-east-1.amazonaws.com".into(), port: 443 });
        assert_eq!(parse_connect_target("my_bucket.s3.amazonaws.com:443", P).unwrap().host, "my_bucket.s3.amazonaws.com");
    }

    #[test]
    fn refuses_tricky_authorities() {
        let cases: &[(&str, &str)] = &[
            ("", "bad_authority"),
            ("s3.amazonaws.com", "bad_authority"),
            ("s3.amazonaws.com:", "bad_authority"),
            ("s3.amazonaws.com:https", "bad_authority"),
            ("s3.amazonaws.com:0", "bad_authority"),
            ("s3.amazonaws.com:65536", "bad_authority"),
            ("s3.amazonaws.com:+443", "bad_authority"),
            ("s3.amazonaws.com:443 ", "bad_authority"),
            ("s3.amazonaws.com:0000443", "bad_authority"),
            ("s3.amazonaws.com:8443", "port_not_allowed"),
            ("s3.amazonaws.com:80", "port_not_allowed"),
            ("52.216.1.1:443", "ip_literal"),
            ("127.1:443", "ip_literal"),
            ("2130706433:443", "ip_literal"),
            ("0x7f.0.0.1:443", "ip_literal"),
            ("[::1]:443", "ip_literal"),
            ("[s3.amazonaws.com]:443", "ip_literal"),
            ("::1:443", "ip_literal"),
            ("2001:db8::1:443", "ip_literal"),
            ("s3.amazonaws.com]:443", "ip_literal"),
            ("user@s3.amazonaws.com:443", "userinfo"),
            ("user:pw@s3.amazonaws.com:443", "userinfo"),
            ("evil.com@s3.amazonaws.com:443", "userinfo"),
            ("s3.amazonaws.com%2f:443", "bad_name"),
            ("s3..amazonaws.com:443", "bad_name"),
            (".s3.amazonaws.com:443", "bad_name"),
            ("-s3.amazonaws.com:443", "bad_name"),
            ("s3.amazonaws.com/x:443", "bad_authority"),
            // A strict reader's answers to the review's shapes: a leading zero, a URL, two dots.
            ("s3.amazonaws.com:0443", "bad_authority"),
            ("http://s3.amazonaws.com:443", "bad_authority"),
            ("https://s3.amazonaws.com:443/", "bad_authority"),
            ("s3.amazonaws.com..:443", "bad_name"),
            ("s3 .amazonaws.com:443", "bad_name"),
            ("s3.amazonaws.com\0:443", "bad_name"),
            (":443", "bad_authority"),
            ("a:b:c", "bad_name"),
        ];
        for (raw, code) in cases {
            let err = parse_connect_target(raw, P).expect_err(raw);
            assert_eq!(err.code(), *code, "{raw:?} gave {err:?}");
            // Every refusal is one sentence that says what to do.
            let msg = err.to_string();
            assert!(msg.contains(';'), "{raw:?}: {msg}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let label = "a".repeat(64);
        assert_eq!(parse_connect_target(&format!("{label}.amazonaws.com:443"), P).unwrap_err().code(), "bad_name");
        let long = format!("{}amazonaws.com", "abcdefghi.".repeat(25));
        assert_eq!(parse_connect_target(&format!("{long}:443"), P).unwrap_err().code(), "bad_name");
    }

    #[test]
    fn configured_ports_are_allowed() {
        assert_eq!(parse_connect_target("s3.amazonaws.com:8443", &[443, 8443]).unwrap().port, 8443);
    }
}

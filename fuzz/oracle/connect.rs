//! The oracle of the CONNECT path before any rule (`proxy::precheck`, then hyper's URI, then
//! `policy::authority::parse_connect_target`) and of the host classifier (`policy::host`):
//! targets built from the pieces tricky authorities are made of.
//!
//! - Nothing panics. A refusal has its code and a sentence that names the fix (`; `) and carries
//!   no control character (it is logged and sent in a header).
//! - A target vpcgate accepts is a normalised name (lowercase, no trailing dot, LDH labels of
//!   1..=63, at most 253 bytes, not an IPv4 address in any spelling) that reads back the same,
//!   and the `http` crate (hyper's reader) reads the same host and port from the same bytes: the
//!   name vpcgate checks is the name every later reader sees.
//! - The classifier never gives a region that is not a region code.
#![allow(dead_code)]

use arbitrary::Arbitrary;
use vpcgate::policy::authority::{parse_connect_target, validate_hostname};
use vpcgate::policy::host::{classify, is_region};

pub const PORTS: [u16; 2] = [443, 8443];

const LABELS: [&str; 16] = [
    "bucket",
    "s3",
    "us-east-1",
    "amazonaws",
    "com",
    "s3-accelerate",
    "dualstack",
    "xn--bcher-kva",
    "0x7f",
    "127",
    "0",
    "sts",
    "vpce-0abc-1234",
    "s3-fips",
    "accesspoint",
    "AMAZONAWS",
];

#[derive(Debug, Arbitrary)]
pub enum Piece {
    Label(u8),
    Dot,
    Colon,
    Port(u16),
    /// A port written with leading zeros or as text (`0443`, `443 `, `+443`).
    OddPort(u8),
    Bracket(bool),
    At,
    Slash,
    Percent(u8),
    Underscore,
    Dash,
    Long(u8),
    Byte(u8),
    Text(String),
}

#[derive(Debug, Arbitrary)]
pub struct ConnectInput {
    pub pieces: Vec<Piece>,
}

impl ConnectInput {
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Label(i) => out.extend_from_slice(LABELS[*i as usize % LABELS.len()].as_bytes()),
                Piece::Dot => out.push(b'.'),
                Piece::Colon => out.push(b':'),
                Piece::Port(n) => out.extend_from_slice(n.to_string().as_bytes()),
                Piece::OddPort(k) => out.extend_from_slice(["0443", "443 ", "+443", "65536", "0", "4\t43", "443\0"][*k as usize % 7].as_bytes()),
                Piece::Bracket(open) => out.push(if *open { b'[' } else { b']' }),
                Piece::At => out.push(b'@'),
                Piece::Slash => out.push(b'/'),
                Piece::Percent(b) => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
                Piece::Underscore => out.push(b'_'),
                Piece::Dash => out.push(b'-'),
                Piece::Long(n) => out.extend(std::iter::repeat_n(b'a', usize::from(*n) + 40)),
                Piece::Byte(b) => out.push(*b),
                Piece::Text(s) => out.extend_from_slice(s.as_bytes()),
            }
        }
        out
    }
}

/// What the proxy hands `parse_connect_target` for a CONNECT line with this target, or `None`
/// when an earlier reader refuses it (httparse in the pre-check, or hyper's URI).
pub fn raw_target(target: &[u8]) -> Option<String> {
    let mut head = b"CONNECT ".to_vec();
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let uri: hyper::Uri = req.path?.parse().ok()?;
    Some(match (uri.scheme(), uri.path_and_query(), uri.authority()) {
        (None, None, Some(a)) => a.as_str().to_string(),
        _ => uri.to_string(),
    })
}

pub fn check_connect(input: &ConnectInput) {
    let bytes = input.render();
    check_class(&String::from_utf8_lossy(&bytes));
    if let Some(raw) = raw_target(&bytes) {
        check_target(&raw);
    }
}

pub fn check_target(raw: &str) {
    match parse_connect_target(raw, &PORTS) {
        Err(e) => {
            let said = e.to_string();
            assert!(!e.code().is_empty() && said.contains("; "), "a refusal without its fix: {said:?}");
            assert!(!said.chars().any(|c| c.is_control()), "a control character in a refusal: {said:?}");
        }
        Ok(t) => {
            assert!(t.host.len() <= 253 && !t.host.ends_with('.') && t.host == t.host.to_ascii_lowercase(), "not normalised: {t:?}");
            for label in t.host.split('.') {
                assert!((1..=63).contains(&label.len()) && !label.starts_with('-') && !label.ends_with('-'), "label {label:?} of {t:?}");
                assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "label {label:?} of {t:?}");
            }
            assert!(t.host.parse::<std::net::Ipv4Addr>().is_err(), "an address accepted as a name: {t:?}");
            assert!(PORTS.contains(&t.port));
            assert_eq!(parse_connect_target(&t.to_string(), &PORTS).as_ref(), Ok(&t), "does not read back the same");
            assert_eq!(validate_hostname(&t.host).as_deref(), Ok(t.host.as_str()));
            let a: hyper::http::uri::Authority = raw.parse().unwrap_or_else(|e| panic!("vpcgate accepted {raw:?}, which the http crate cannot read ({e})"));
            let theirs = a.host().trim_end_matches('.').to_ascii_lowercase();
            assert_eq!((theirs.as_str(), a.port_u16()), (t.host.as_str(), Some(t.port)), "the http crate reads {raw:?} differently");
            check_class(&t.host);
        }
    }
}

pub fn check_class(host: &str) {
    let class = classify(host);
    if let Some(r) = class.region() {
        assert!(is_region(r), "{host:?} classified with region {r:?}");
    }
}

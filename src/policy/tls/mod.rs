//! Reading TLS hellos in passthrough mode.
//!
//! The proxy never terminates TLS. It looks at the first flight in each direction,
//! the client's ClientHello and the upstream's ServerHello, as raw record-layer
//! bytes, and decides whether the session will have forward secrecy and is for
//! the host named in the CONNECT request.
//!
//! Everything here is pure: no I/O, no async, std only. Memory use is bounded by
//! the hello itself: one reassembled handshake message (at most
//! [`MAX_HELLO_BYTES`]) plus the lists read from it. The input is untrusted
//! network data; every length is checked before it is used and no input makes
//! these functions panic (the tests fuzz every fixture).
//!
//! The fixtures under `testdata/` are real hellos captured on loopback from
//! openssl, curl and rustls; `testdata/capture_hellos.py` reproduces them.
//!
//! Incremental use: call [`parse_client_hello`] / [`parse_server_hello`] with all
//! bytes read so far. [`HelloError::Incomplete`] means "read more and call again
//! with the whole buffer"; it is returned only while the bytes so far are a valid
//! prefix of a hello, so a bad prefix fails as soon as it is seen.

use std::fmt;

/// Facts read from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// server_name host_name, lowercased.
    pub sni: Option<String>,
    /// client_version field.
    pub legacy_version: u16,
    /// From the supported_versions extension (0x002b), GREASE removed; empty if absent.
    pub supported_versions: Vec<u16>,
    /// GREASE removed, SCSVs (0x00ff, 0x5600) removed.
    pub cipher_suites: Vec<u16>,
    pub alpn: Vec<String>,
    /// Groups in the key_share extension, GREASE removed.
    pub key_share_groups: Vec<u16>,
    /// The early_data extension (0x002a): the client sends 0-RTT data after this hello.
    pub early_data: bool,
}

/// Facts read from a ServerHello (or HelloRetryRequest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloInfo {
    /// Negotiated: the supported_versions extension value if present, else legacy server_version.
    pub version: u16,
    pub cipher_suite: u16,
    /// key_share extension (0x0033) present.
    pub has_key_share: bool,
    /// random == the HelloRetryRequest magic, SHA-256("HelloRetryRequest").
    pub hello_retry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// Need more bytes; the caller reads more and calls again with the whole buffer so far.
    Incomplete,
    /// Not a TLS handshake record (e.g. plaintext HTTP sent into a tunnel); the String says what was seen in one short phrase.
    NotTls(String),
    /// TLS but malformed or the wrong message; short phrase.
    Malformed(String),
    /// The hello is larger than MAX_HELLO_BYTES.
    TooLarge,
}

/// Largest handshake message (4-byte header included) accepted as a hello.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// Largest record fragment accepted: 2^14 plus the 256 bytes of slack allowed for
/// compressed records; anything longer is not a record a peer may send.
pub const MAX_RECORD_LEN: usize = (1 << 14) + 256;

/// Most record-layer bytes (headers included) that may carry one hello. A hello
/// dribbled out in tiny records costs 5 header bytes per fragment; beyond this the
/// buffer a caller would have to keep is refused as [`HelloError::TooLarge`].
pub const MAX_HELLO_RECORD_BYTES: usize = 2 * MAX_HELLO_BYTES;

const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const CT_HEARTBEAT: u8 = 24;

const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const EXT_PRE_SHARED_KEY: u16 = 0x0029;
const EXT_EARLY_DATA: u16 = 0x002a;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_KEY_SHARE: u16 = 0x0033;

const TLS1_2: u16 = 0x0303;
const TLS1_3: u16 = 0x0304;

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV and TLS_FALLBACK_SCSV: signals, not suites.
const SCSV_RENEGOTIATION: u16 = 0x00ff;
const SCSV_FALLBACK: u16 = 0x5600;

/// SHA-256("HelloRetryRequest"), the ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e,
    0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

mod parse;
mod refusal;
mod suites;
#[cfg(test)]
mod tests;

pub use parse::{alert_description_name, parse_client_hello, parse_server_hello};
#[cfg(test)]
pub use refusal::HelloRefusalDiscriminants;
pub use refusal::{check_client_hello, check_server_hello, HelloRefusal};
pub use suites::{is_forward_secret_suite, is_forward_secret_tls12_suite, is_grease, is_tls13_suite, suite_name, version_name};

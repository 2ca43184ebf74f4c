//! Every reason a TLS handshake is cut, in both modes and on both sides, as one type: its code
//! (the `reason` of the `handshake_refused` and `close` lines and the metric label), the side it
//! is about, the TLS alert passthrough sends the client, and the sentence for the log.
//!
//! Passthrough reads both hellos itself ([`crate::policy::tls`]); inspect mode lets rustls run the
//! handshakes and reports its failures here too, so that the two modes log the same codes with
//! the same fields.

use crate::policy::tls::{HelloError, HelloRefusal};
use std::fmt;
use std::time::Duration;

/// Which leg of the tunnel a handshake refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// TLS alert descriptions (RFC 8446 §6).
pub const ALERT_HANDSHAKE_FAILURE: u8 = 40;
pub const ALERT_ACCESS_DENIED: u8 = 49;
pub const ALERT_PROTOCOL_VERSION: u8 = 70;
pub const ALERT_UNRECOGNIZED_NAME: u8 = 112;

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::EnumDiscriminants), strum_discriminants(derive(strum::EnumIter)))]
pub enum HandshakeRefusal {
    /// A hello read and refused by policy (no SNI, another SNI, too old, no forward secrecy, …).
    Hello(HelloRefusal),
    /// A hello that could not be read: not TLS, malformed, too large, or the peer closed first.
    Unreadable { side: Side, error: HelloError },
    /// The upstream asked for a second HelloRetryRequest (TLS 1.3 allows one).
    SecondRetry,
    /// The hellos (passthrough) or the client's handshake (inspect) did not complete in time.
    Timeout { after: Duration },
    /// Writing a hello on to a side failed.
    Write { side: Side, error: String },
    /// Inspect mode: no leaf could be minted for the name.
    LeafMint { error: String },
    /// Inspect mode: rustls ended the handshake with the client (its alert or error).
    ClientHandshake { error: String },
}

impl HandshakeRefusal {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        use HelloError::*;
        match self {
            HandshakeRefusal::Hello(r) => r.code(),
            HandshakeRefusal::Unreadable { side: Side::Client, error } => match error {
                NotTls(_) => "client_not_tls",
                TooLarge => "client_hello_too_large",
                Malformed(_) => "client_hello_malformed",
                Incomplete => "client_closed_in_handshake",
            },
            HandshakeRefusal::Unreadable { side: Side::Upstream, error } => match error {
                NotTls(_) => "upstream_not_tls",
                TooLarge => "upstream_hello_too_large",
                Malformed(_) => "upstream_hello_malformed",
                Incomplete => "upstream_closed_in_handshake",
            },
            HandshakeRefusal::SecondRetry => "upstream_hello_malformed",
            HandshakeRefusal::Timeout { .. } => "handshake_timeout",
            HandshakeRefusal::Write { side: Side::Client, .. } => "client_write_failed",
            HandshakeRefusal::Write { side: Side::Upstream, .. } => "upstream_write_failed",
            HandshakeRefusal::LeafMint { .. } => "leaf_mint_failed",
            HandshakeRefusal::ClientHandshake { .. } => "client_handshake_failed",
        }
    }

    /// The side the refusal is about.
    pub fn side(&self) -> Side {
        match self {
            HandshakeRefusal::Hello(HelloRefusal::ServerTlsTooOld { .. } | HelloRefusal::ServerNoForwardSecrecy { .. } | HelloRefusal::ServerNoKeyShare)
            | HandshakeRefusal::SecondRetry => Side::Upstream,
            HandshakeRefusal::Hello(_) | HandshakeRefusal::Timeout { .. } | HandshakeRefusal::LeafMint { .. } | HandshakeRefusal::ClientHandshake { .. } => {
                Side::Client
            }
            HandshakeRefusal::Unreadable { side, .. } | HandshakeRefusal::Write { side, .. } => *side,
        }
    }

    /// The alert passthrough sends the client before closing (none once a write failed or the
    /// time ran out: the client may be gone, or mid-record).
    pub fn alert(&self) -> Option<u8> {
        match self {
            HandshakeRefusal::Hello(HelloRefusal::SniMissing | HelloRefusal::SniMismatch { .. }) => Some(ALERT_UNRECOGNIZED_NAME),
            HandshakeRefusal::Hello(HelloRefusal::ClientTlsTooOld { .. } | HelloRefusal::ServerTlsTooOld { .. }) => Some(ALERT_PROTOCOL_VERSION),
            HandshakeRefusal::Hello(
                HelloRefusal::ClientNoForwardSecrecy
                | HelloRefusal::ClientEarlyData
                | HelloRefusal::ServerNoForwardSecrecy { .. }
                | HelloRefusal::ServerNoKeyShare,
            )
            | HandshakeRefusal::SecondRetry => Some(ALERT_HANDSHAKE_FAILURE),
            HandshakeRefusal::Unreadable { .. } | HandshakeRefusal::LeafMint { .. } | HandshakeRefusal::ClientHandshake { .. } => Some(ALERT_ACCESS_DENIED),
            HandshakeRefusal::Timeout { .. } | HandshakeRefusal::Write { .. } => None,
        }
    }
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeRefusal::Hello(r) => write!(f, "{r}"),
            HandshakeRefusal::Unreadable { side, error } => {
                let what = match error {
                    HelloError::NotTls(w) | HelloError::Malformed(w) => w.clone(),
                    HelloError::TooLarge => "hello too large".to_string(),
                    HelloError::Incomplete => "closed before its hello was complete".to_string(),
                };
                write!(f, "the {} sent no usable TLS hello ({what})", side.name())
            }
            HandshakeRefusal::SecondRetry => f.write_str("the upstream sent a second HelloRetryRequest"),
            HandshakeRefusal::Timeout { after } => {
                write!(f, "the TLS handshake did not complete within {}", humantime::format_duration(*after))
            }
            HandshakeRefusal::Write { side, error } => write!(f, "writing to the {} failed ({error})", side.name()),
            HandshakeRefusal::LeafMint { error } => write!(f, "no certificate could be minted for the name ({error})"),
            HandshakeRefusal::ClientHandshake { error } => write!(f, "the TLS handshake with the client failed ({error})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_sides_and_alerts() {
        let cases: Vec<(HandshakeRefusal, &str, Side, Option<u8>)> = vec![
            (HandshakeRefusal::Hello(HelloRefusal::SniMissing), "sni_missing", Side::Client, Some(ALERT_UNRECOGNIZED_NAME)),
            (
                HandshakeRefusal::Hello(HelloRefusal::ServerNoForwardSecrecy { suite: 0x009c }),
                "server_no_forward_secrecy",
                Side::Upstream,
                Some(ALERT_HANDSHAKE_FAILURE),
            ),
            (
                HandshakeRefusal::Unreadable { side: Side::Client, error: HelloError::NotTls("GET".into()) },
                "client_not_tls",
                Side::Client,
                Some(ALERT_ACCESS_DENIED),
            ),
            (
                HandshakeRefusal::Unreadable { side: Side::Upstream, error: HelloError::Incomplete },
                "upstream_closed_in_handshake",
                Side::Upstream,
                Some(ALERT_ACCESS_DENIED),
            ),
            (HandshakeRefusal::SecondRetry, "upstream_hello_malformed", Side::Upstream, Some(ALERT_HANDSHAKE_FAILURE)),
            (HandshakeRefusal::Timeout { after: Duration::from_secs(10) }, "handshake_timeout", Side::Client, None),
            (HandshakeRefusal::Write { side: Side::Upstream, error: "reset".into() }, "upstream_write_failed", Side::Upstream, None),
            (HandshakeRefusal::ClientHandshake { error: "alert".into() }, "client_handshake_failed", Side::Client, Some(ALERT_ACCESS_DENIED)),
        ];
        for (r, code, side, alert) in cases {
            assert_eq!((r.code(), r.side(), r.alert()), (code, side, alert), "{r:?}");
            assert!(!r.to_string().is_empty());
        }
        assert!(HandshakeRefusal::Timeout { after: Duration::from_secs(10) }.to_string().contains("within 10s"));
    }
}

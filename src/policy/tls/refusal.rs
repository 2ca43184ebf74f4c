//! What a hello is refused for: SNI, protocol versions, forward secrecy, early data.

use super::*;

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// Why a hello is refused. Display gives one lowercase phrase; `code()` gives a stable snake_case code for logs/metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::EnumDiscriminants), strum_discriminants(derive(strum::EnumIter)))]
pub enum HelloRefusal {
    /// code "sni_missing"
    SniMissing,
    /// code "sni_mismatch"
    SniMismatch { sni: String, host: String },
    /// code "client_tls_too_old": the client cannot negotiate TLS1.2 or later.
    ClientTlsTooOld { max_offered: u16 },
    /// code "client_no_forward_secrecy": no TLS1.3 suite usable (1.3 offered) and no FS TLS1.2 suite usable (1.2 offered).
    ClientNoForwardSecrecy,
    /// code "client_early_data": TLS1.3 0-RTT data follows the hello (no forward secrecy, replayable).
    ClientEarlyData,
    /// code "server_tls_too_old"
    ServerTlsTooOld { version: u16 },
    /// code "server_no_forward_secrecy": TLS1.2 with a non-ECDHE/DHE suite.
    ServerNoForwardSecrecy { suite: u16 },
    /// code "server_no_key_share": TLS1.3 ServerHello without key_share (psk_ke resumption).
    ServerNoKeyShare,
}

impl HelloRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            HelloRefusal::SniMissing => "sni_missing",
            HelloRefusal::SniMismatch { .. } => "sni_mismatch",
            HelloRefusal::ClientTlsTooOld { .. } => "client_tls_too_old",
            HelloRefusal::ClientNoForwardSecrecy => "client_no_forward_secrecy",
            HelloRefusal::ClientEarlyData => "client_early_data",
            HelloRefusal::ServerTlsTooOld { .. } => "server_tls_too_old",
            HelloRefusal::ServerNoForwardSecrecy { .. } => "server_no_forward_secrecy",
            HelloRefusal::ServerNoKeyShare => "server_no_key_share",
        }
    }
}

/// "TLS1.1", or "version 0x7f1c" for values version_name does not know.
fn version_label(v: u16) -> String {
    match version_name(v) {
        "unknown" => format!("version 0x{v:04X}"),
        name => name.to_string(),
    }
}

impl fmt::Display for HelloRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloRefusal::SniMissing => f.write_str("the client hello names no server (no sni)"),
            HelloRefusal::SniMismatch { sni, host } => {
                write!(f, "the client hello names {sni}, not the connect host {host}")
            }
            HelloRefusal::ClientTlsTooOld { max_offered } => {
                write!(f, "the client offers at most {}, older than TLS1.2", version_label(*max_offered))
            }
            HelloRefusal::ClientNoForwardSecrecy => f.write_str("the client offers no cipher suite with forward secrecy"),
            HelloRefusal::ClientEarlyData => {
                f.write_str("the client sends TLS1.3 early data (0-RTT), which has no forward secrecy and can be replayed; turn 0-RTT off in the client")
            }
            HelloRefusal::ServerTlsTooOld { version } if *version > TLS1_3 => {
                write!(f, "the upstream chose an unknown protocol {}", version_label(*version))
            }
            HelloRefusal::ServerTlsTooOld { version } => {
                write!(f, "the upstream chose {}, older than TLS1.2", version_label(*version))
            }
            HelloRefusal::ServerNoForwardSecrecy { suite } => {
                write!(f, "the upstream chose {}, a cipher suite without forward secrecy", suite_name(*suite))
            }
            HelloRefusal::ServerNoKeyShare => f.write_str("the upstream resumed TLS1.3 without a key share (psk_ke), which has no forward secrecy"),
        }
    }
}

impl std::error::Error for HelloRefusal {}

impl HelloError {
    /// A stable snake_case code for logs/metrics.
    pub fn code(&self) -> &'static str {
        match self {
            HelloError::Incomplete => "incomplete",
            HelloError::NotTls(_) => "not_tls",
            HelloError::Malformed(_) => "malformed",
            HelloError::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::Incomplete => f.write_str("incomplete tls hello"),
            HelloError::NotTls(what) => write!(f, "not tls: {what}"),
            HelloError::Malformed(what) => write!(f, "malformed tls hello: {what}"),
            HelloError::TooLarge => write!(f, "tls hello larger than {MAX_HELLO_BYTES} bytes"),
        }
    }
}

impl std::error::Error for HelloError {}

/// ASCII case-insensitive host comparison ignoring one trailing dot on either side.
fn same_host(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// SNI must be present and equal (ASCII case-insensitive, trailing dot ignored) to `connect_host`; TLS >= 1.2 offered; at least one FS suite offered.
///
/// When the hello carries supported_versions, that list alone decides which versions
/// are offered (a TLS1.3 server ignores legacy_version then, RFC 8446 4.2.1); otherwise
/// legacy_version does.
pub fn check_client_hello(ch: &ClientHelloInfo, connect_host: &str) -> Result<(), HelloRefusal> {
    let sni = ch.sni.as_deref().ok_or(HelloRefusal::SniMissing)?;
    if !same_host(sni, connect_host) {
        return Err(HelloRefusal::SniMismatch { sni: sni.to_string(), host: connect_host.to_string() });
    }
    let (offers13, offers12, max_offered) = if ch.supported_versions.is_empty() {
        (false, ch.legacy_version >= TLS1_2, ch.legacy_version)
    } else {
        let max = ch.supported_versions.iter().copied().max().unwrap_or(0);
        (ch.supported_versions.contains(&TLS1_3), ch.supported_versions.contains(&TLS1_2), max)
    };
    if !offers13 && !offers12 {
        return Err(HelloRefusal::ClientTlsTooOld { max_offered });
    }
    let fs13 = offers13 && ch.cipher_suites.iter().any(|&s| is_tls13_suite(s));
    let fs12 = offers12 && ch.cipher_suites.iter().any(|&s| is_forward_secret_tls12_suite(s));
    if !fs13 && !fs12 {
        return Err(HelloRefusal::ClientNoForwardSecrecy);
    }
    if ch.early_data {
        return Err(HelloRefusal::ClientEarlyData);
    }
    Ok(())
}

/// TLS 1.3 (0x0304) with key_share → ok; TLS 1.3 HRR → ok (caller will read the next ServerHello); TLS 1.2 with FS suite → ok; else refusal.
pub fn check_server_hello(sh: &ServerHelloInfo) -> Result<(), HelloRefusal> {
    match sh.version {
        TLS1_3 if sh.hello_retry || sh.has_key_share => Ok(()),
        TLS1_3 => Err(HelloRefusal::ServerNoKeyShare),
        TLS1_2 if is_forward_secret_tls12_suite(sh.cipher_suite) => Ok(()),
        TLS1_2 => Err(HelloRefusal::ServerNoForwardSecrecy { suite: sh.cipher_suite }),
        version => Err(HelloRefusal::ServerTlsTooOld { version }),
    }
}

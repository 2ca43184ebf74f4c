//! Cipher suites and versions: which are forward-secret, their names.

/// GREASE values (RFC 8701): 0x0A0A, 0x1A1A, ... 0xFAFA.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// The five TLS 1.3 cipher suites (RFC 8446); key exchange is negotiated separately in 1.3.
pub fn is_tls13_suite(suite: u16) -> bool {
    (0x1301..=0x1305).contains(&suite)
}

/// An ECDHE or DHE TLS 1.2-and-earlier suite (not a TLS 1.3 suite).
pub fn is_forward_secret_tls12_suite(suite: u16) -> bool {
    is_forward_secret_suite(suite) && !is_tls13_suite(suite)
}

/// TLS1.3 suites 0x1301-0x1305 and every ECDHE_* / DHE_* suite of the IANA registry that
/// encrypts and authenticates the peer. False for RSA key transport, static (EC)DH, PSK-only,
/// RSA_PSK, SRP, NULL encryption, and anonymous (DH_anon / ECDH_anon) suites.
pub fn is_forward_secret_suite(suite: u16) -> bool {
    if is_tls13_suite(suite) {
        return true;
    }
    matches!(
        suite,
        // DHE_DSS / DHE_RSA, including the old export and DES suites.
        0x0011..=0x0016
        // DHE_DSS / DHE_RSA with AES_CBC_SHA.
        | 0x0032 | 0x0033 | 0x0038 | 0x0039
        // DHE_DSS_WITH_AES_128_CBC_SHA256, DHE_*_WITH_CAMELLIA_128_CBC_SHA.
        | 0x0040 | 0x0044 | 0x0045
        // DHE_RSA_WITH_AES_128_CBC_SHA256, DHE_DSS/DHE_RSA_WITH_AES_256_CBC_SHA256.
        | 0x0067 | 0x006A | 0x006B
        // DHE_*_WITH_CAMELLIA_256_CBC_SHA.
        | 0x0087 | 0x0088
        // DHE_PSK with RC4/3DES/AES_CBC_SHA.
        | 0x008E..=0x0091
        // DHE_*_WITH_SEED_CBC_SHA.
        | 0x0099 | 0x009A
        // DHE_RSA / DHE_DSS / DHE_PSK AES_GCM.
        | 0x009E | 0x009F | 0x00A2 | 0x00A3 | 0x00AA | 0x00AB
        // DHE_PSK_WITH_AES_*_CBC_SHA256/384 (0x00B4-5 are DHE_PSK NULL: excluded).
        | 0x00B2 | 0x00B3
        // DHE_DSS / DHE_RSA CAMELLIA_*_CBC_SHA256.
        | 0x00BD | 0x00BE | 0x00C3 | 0x00C4
        // ECDHE_ECDSA (0xC006 is NULL) and ECDHE_RSA (0xC010 is NULL).
        | 0xC007..=0xC00A | 0xC011..=0xC014
        // ECDHE_* AES_CBC_SHA256/384.
        | 0xC023 | 0xC024 | 0xC027 | 0xC028
        // ECDHE_* AES_GCM.
        | 0xC02B | 0xC02C | 0xC02F | 0xC030
        // ECDHE_PSK with RC4/3DES/AES_CBC (0xC039-0xC03B are ECDHE_PSK NULL: excluded).
        | 0xC033..=0xC038
        // ARIA CBC: DHE_DSS, DHE_RSA, ECDHE_ECDSA, ECDHE_RSA.
        | 0xC042..=0xC045 | 0xC048 | 0xC049 | 0xC04C | 0xC04D
        // ARIA GCM: DHE_RSA, DHE_DSS, ECDHE_ECDSA, ECDHE_RSA.
        | 0xC052 | 0xC053 | 0xC056 | 0xC057 | 0xC05C | 0xC05D | 0xC060 | 0xC061
        // ARIA with DHE_PSK (CBC, GCM) and ECDHE_PSK (CBC).
        | 0xC066 | 0xC067 | 0xC06C | 0xC06D | 0xC070 | 0xC071
        // CAMELLIA CBC: ECDHE_ECDSA, ECDHE_RSA.
        | 0xC072 | 0xC073 | 0xC076 | 0xC077
        // CAMELLIA GCM: DHE_RSA, DHE_DSS, ECDHE_ECDSA, ECDHE_RSA.
        | 0xC07C | 0xC07D | 0xC080 | 0xC081 | 0xC086 | 0xC087 | 0xC08A | 0xC08B
        // CAMELLIA with DHE_PSK (GCM, CBC) and ECDHE_PSK (CBC).
        | 0xC090 | 0xC091 | 0xC096 | 0xC097 | 0xC09A | 0xC09B
        // AES_CCM / AES_CCM_8: DHE_RSA, DHE_PSK, ECDHE_ECDSA.
        | 0xC09E | 0xC09F | 0xC0A2 | 0xC0A3 | 0xC0A6 | 0xC0A7 | 0xC0AA | 0xC0AB
        | 0xC0AC..=0xC0AF
        // CHACHA20_POLY1305: ECDHE_RSA, ECDHE_ECDSA, DHE_RSA; ECDHE_PSK, DHE_PSK.
        | 0xCCA8..=0xCCAA | 0xCCAC | 0xCCAD
        // ECDHE_PSK AES_GCM / AES_CCM (RFC 8442).
        | 0xD001 | 0xD002 | 0xD003 | 0xD005
    )
}

/// The IANA name of a cipher suite (from rustls's copy of the registry), else "0x" and 4 hex digits.
pub fn suite_name(suite: u16) -> String {
    // rustls knows the IANA registry's names; it writes the TLS 1.3 ones `TLS13_…`, IANA `TLS_…`.
    match rustls::CipherSuite::from(suite).as_str() {
        Some(name) => name.strip_prefix("TLS13_").map(|rest| format!("TLS_{rest}")).unwrap_or_else(|| name.to_string()),
        None if suite == 0x5600 => "TLS_FALLBACK_SCSV".to_string(),
        None => format!("0x{suite:04X}"),
    }
}

/// "TLS1.0".."TLS1.3", "SSL3.0", else "unknown".
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "SSL3.0",
        0x0301 => "TLS1.0",
        0x0302 => "TLS1.1",
        0x0303 => "TLS1.2",
        0x0304 => "TLS1.3",
        _ => "unknown",
    }
}

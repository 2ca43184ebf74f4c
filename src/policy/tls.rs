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

// ---------------------------------------------------------------------------
// Public parsing entry points
// ---------------------------------------------------------------------------

/// `buf` holds raw bytes as read from the client socket (TLS record layer). Reassemble the handshake message across as many
/// handshake records (content type 22) as needed. Returns the info and the number of bytes of `buf` consumed: the end of the
/// record in which the ClientHello message ends (the caller forwards exactly buf[..consumed] upstream, then relays the rest).
pub fn parse_client_hello(buf: &[u8]) -> Result<(ClientHelloInfo, usize), HelloError> {
    let gathered = gather_first_message(buf, HS_CLIENT_HELLO)?;
    let info = gathered.parse_body(client_hello_body)?;
    Ok((info, gathered.consumed.ok_or(HelloError::Incomplete)?))
}

/// Same for bytes read from the upstream server; the first handshake message must be ServerHello (type 2). Records of other
/// content types before it (e.g. alert 21) → Malformed with a phrase that says an alert was received and which (level/description number).
///
/// One exception: dummy change_cipher_spec records (exactly the byte 0x01), which RFC 8446 section 5 says a
/// peer must drop, are skipped before the ServerHello; they count in `consumed`. A server sends one right
/// after a HelloRetryRequest, so it can lead the bytes read for the second ServerHello.
pub fn parse_server_hello(buf: &[u8]) -> Result<(ServerHelloInfo, usize), HelloError> {
    let gathered = gather_first_message(buf, HS_SERVER_HELLO)?;
    let info = gathered.parse_body(server_hello_body)?;
    Ok((info, gathered.consumed.ok_or(HelloError::Incomplete)?))
}

// ---------------------------------------------------------------------------
// Record layer: reassembling the first handshake message
// ---------------------------------------------------------------------------

/// The first handshake message, or as much of it as `buf` holds.
struct Gathered {
    /// Handshake bytes (4-byte header, then body), cut at the end of the first message.
    msg: Vec<u8>,
    /// End of the record in which the message ends, once both are in `buf`.
    consumed: Option<usize>,
}

impl Gathered {
    /// Parse the (possibly partial) body. A parser running out of available bytes
    /// means Incomplete; one finding a contradiction means Malformed.
    fn parse_body<T>(&self, parse: fn(&mut Reader<'_>) -> Result<T, ParseError>) -> Result<T, HelloError> {
        if self.msg.len() < 4 {
            return Err(HelloError::Incomplete);
        }
        let declared = u24(self.msg[1], self.msg[2], self.msg[3]);
        let mut r = Reader::new(&self.msg[4..], declared);
        let value = parse(&mut r).map_err(|e| match e {
            ParseError::Eof => HelloError::Incomplete,
            ParseError::Bad(s) => HelloError::Malformed(s),
        })?;
        r.expect_end(hs_name(self.msg[0])).map_err(|e| match e {
            ParseError::Eof => HelloError::Incomplete,
            ParseError::Bad(s) => HelloError::Malformed(s),
        })?;
        Ok(value)
    }
}

fn gather_first_message(buf: &[u8], want: u8) -> Result<Gathered, HelloError> {
    let mut msg: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut skipped_ccs = false;
    loop {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let Some(&ctype) = rest.first() else {
            return Ok(Gathered { msg, consumed: None });
        };
        if !(CT_CHANGE_CIPHER_SPEC..=CT_HEARTBEAT).contains(&ctype) {
            return Err(if pos == 0 {
                HelloError::NotTls(describe_non_tls(rest))
            } else {
                HelloError::Malformed(format!("invalid record content type {ctype}"))
            });
        }
        if let Some(&major) = rest.get(1) {
            if major != 3 {
                return Err(if pos == 0 {
                    HelloError::NotTls(format!("record version major byte {major}, not 3"))
                } else {
                    HelloError::Malformed(format!("record version major byte {major}, not 3"))
                });
            }
        }
        // RFC 8446 5: a peer MUST drop an unencrypted change_cipher_spec record holding the
        // single byte 0x01 received after the first ClientHello. A server sends one right after
        // a HelloRetryRequest; if it arrives apart from the HRR it leads the next ServerHello.
        let dummy_ccs = ctype == CT_CHANGE_CIPHER_SPEC && want == HS_SERVER_HELLO && msg.is_empty();
        if ctype != CT_HANDSHAKE && ctype != CT_ALERT && !dummy_ccs {
            return Err(HelloError::Malformed(format!("expected a handshake record, got {}", content_type_name(ctype))));
        }
        if rest.len() < 5 {
            return Ok(Gathered { msg, consumed: None });
        }
        let rlen = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rlen == 0 {
            return Err(HelloError::Malformed(format!("zero-length {}", content_type_name(ctype))));
        }
        if rlen > MAX_RECORD_LEN {
            return Err(HelloError::Malformed(format!("record length {rlen} exceeds 2^14+256")));
        }
        let fragment = &rest[5..rest.len().min(5 + rlen)];
        if dummy_ccs {
            if rlen != 1 || fragment.first().is_some_and(|&b| b != 1) {
                return Err(HelloError::Malformed("change_cipher_spec record other than the single byte 0x01".to_string()));
            }
            if skipped_ccs {
                return Err(HelloError::Malformed("more than one change_cipher_spec record".to_string()));
            }
            if fragment.is_empty() {
                return Ok(Gathered { msg, consumed: None });
            }
            skipped_ccs = true;
            pos += 6;
            continue;
        }
        if ctype == CT_ALERT {
            return Err(match fragment {
                [level, desc, ..] => HelloError::Malformed(alert_phrase(*level, *desc)),
                _ if rlen < 2 => HelloError::Malformed("truncated alert record".to_string()),
                _ => HelloError::Incomplete,
            });
        }
        let record_end = pos + 5 + rlen;
        if record_end > MAX_HELLO_RECORD_BYTES {
            return Err(HelloError::TooLarge);
        }

        // Append only what the message still needs (its length is known after 4 bytes).
        for &b in fragment {
            if msg.len() >= 4 && msg.len() >= 4 + u24(msg[1], msg[2], msg[3]) {
                break;
            }
            msg.push(b);
            if msg.len() == 1 && msg[0] != want {
                return Err(HelloError::Malformed(format!("expected {}, got handshake message type {} ({})", hs_name(want), msg[0], hs_name(msg[0]))));
            }
            if msg.len() == 4 {
                let total = 4 + u24(msg[1], msg[2], msg[3]);
                if total > MAX_HELLO_BYTES {
                    return Err(HelloError::TooLarge);
                }
                msg.reserve_exact(total - 4);
            }
        }
        let complete = msg.len() >= 4 && msg.len() == 4 + u24(msg[1], msg[2], msg[3]);
        let record_whole = fragment.len() == rlen;
        if complete {
            let consumed = if record_whole { Some(record_end) } else { None };
            return Ok(Gathered { msg, consumed });
        }
        if !record_whole {
            return Ok(Gathered { msg, consumed: None });
        }
        pos = record_end;
    }
}

/// One short phrase for bytes that do not start a TLS record.
fn describe_non_tls(bytes: &[u8]) -> String {
    let first = bytes.first().copied().unwrap_or(0);
    if first & 0x80 != 0 {
        return "SSLv2-format hello".to_string();
    }
    // An HTTP request line ("GET / HTTP/1.1", "PRI * HTTP/2.0") or status line ("HTTP/1.1 400").
    let head = &bytes[..bytes.len().min(16)];
    let letters = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if letters > 0 && (letters == head.len() || matches!(head[letters], b' ' | b'/')) {
        return "plaintext HTTP".to_string();
    }
    if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        return "plaintext data".to_string();
    }
    format!("first byte 0x{first:02x} is not a TLS record type")
}

fn content_type_name(ctype: u8) -> &'static str {
    match ctype {
        CT_CHANGE_CIPHER_SPEC => "change_cipher_spec record",
        CT_ALERT => "alert record",
        CT_HANDSHAKE => "handshake record",
        CT_APPLICATION_DATA => "application_data record",
        CT_HEARTBEAT => "heartbeat record",
        _ => "unknown record",
    }
}

fn hs_name(t: u8) -> &'static str {
    match t {
        0 => "hello_request",
        HS_CLIENT_HELLO => "ClientHello",
        HS_SERVER_HELLO => "ServerHello",
        4 => "new_session_ticket",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        20 => "finished",
        _ => "unknown",
    }
}

fn alert_phrase(level: u8, desc: u8) -> String {
    let level_name = match level {
        1 => "warning",
        2 => "fatal",
        _ => "unknown level",
    };
    format!("received alert: level {level} ({level_name}), description {desc} ({})", alert_description_name(desc))
}

/// The RFC name of a TLS alert description, or "unknown".
pub fn alert_description_name(desc: u8) -> &'static str {
    match desc {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown",
    }
}

fn u24(a: u8, b: u8, c: u8) -> usize {
    (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
}

// ---------------------------------------------------------------------------
// Bounds-checked reader over a possibly partial handshake body
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum ParseError {
    /// The structure is consistent so far but its bytes have not all arrived.
    Eof,
    /// The structure contradicts itself (a length overruns its container, a forbidden value...).
    Bad(String),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Bad(msg.into()))
}

/// Reads from `data` (the bytes available) up to `end` (where the enclosing
/// structure ends according to its declared length, possibly beyond `data`).
/// Going past `end` is malformed; going past `data` but not `end` is Eof.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], declared_len: usize) -> Self {
        Reader { data, pos: 0, end: declared_len }
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if n > self.remaining() {
            return bad(format!("truncated {what}"));
        }
        let stop = self.pos + n;
        let Some(s) = self.data.get(self.pos..stop) else {
            return Err(ParseError::Eof);
        };
        self.pos = stop;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ParseError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ParseError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A sub-reader over the next `len` declared bytes; this reader moves past them.
    fn sub(&mut self, len: usize, what: &str) -> Result<Reader<'a>, ParseError> {
        if len > self.remaining() {
            return bad(format!("{what} length {len} overruns its container"));
        }
        let r = Reader { data: self.data, pos: self.pos, end: self.pos + len };
        self.pos += len;
        Ok(r)
    }

    /// opaque vector with a 1-byte length prefix.
    fn vec8(&mut self, what: &str) -> Result<Reader<'a>, ParseError> {
        let n = self.u8(what)?;
        self.sub(usize::from(n), what)
    }

    /// opaque vector with a 2-byte length prefix.
    fn vec16(&mut self, what: &str) -> Result<Reader<'a>, ParseError> {
        let n = self.u16(what)?;
        self.sub(usize::from(n), what)
    }

    fn rest(&mut self, what: &str) -> Result<&'a [u8], ParseError> {
        self.bytes(self.remaining(), what)
    }

    fn expect_end(&self, what: &str) -> Result<(), ParseError> {
        if self.pos == self.end {
            Ok(())
        } else {
            bad(format!("trailing bytes in {what}"))
        }
    }
}

/// Extension types seen so far in one hello; duplicates are forbidden (RFC 8446 4.2).
struct SeenExtensions(Box<[u64; 1024]>);

impl SeenExtensions {
    fn new() -> Self {
        SeenExtensions(Box::new([0u64; 1024]))
    }

    /// Records `t`; false if it was already there.
    fn insert(&mut self, t: u16) -> bool {
        let (word, bit) = (usize::from(t >> 6), t & 63);
        let fresh = self.0[word] & (1u64 << bit) == 0;
        self.0[word] |= 1u64 << bit;
        fresh
    }
}

// ---------------------------------------------------------------------------
// ClientHello
// ---------------------------------------------------------------------------

fn client_hello_body(r: &mut Reader<'_>) -> Result<ClientHelloInfo, ParseError> {
    let legacy_version = r.u16("client_version")?;
    r.bytes(32, "random")?;
    let session_id = r.vec8("session_id")?;
    if session_id.remaining() > 32 {
        return bad("session_id longer than 32 bytes");
    }
    let mut suites = r.vec16("cipher_suites")?;
    if suites.remaining() == 0 || suites.remaining() % 2 != 0 {
        return bad(format!("cipher_suites length {} is not a positive even number", suites.remaining()));
    }
    let mut cipher_suites = Vec::with_capacity(suites.remaining() / 2);
    while !suites.at_end() {
        let s = suites.u16("cipher_suites")?;
        if !is_grease(s) && s != SCSV_RENEGOTIATION && s != SCSV_FALLBACK {
            cipher_suites.push(s);
        }
    }
    let mut compression = r.vec8("compression_methods")?;
    if compression.remaining() == 0 {
        return bad("empty compression_methods");
    }
    if !compression.rest("compression_methods")?.contains(&0) {
        return bad("compression_methods lack the null method");
    }

    let mut info = ClientHelloInfo {
        sni: None,
        legacy_version,
        supported_versions: Vec::new(),
        cipher_suites,
        alpn: Vec::new(),
        key_share_groups: Vec::new(),
        early_data: false,
    };
    if r.at_end() {
        // A hello without an extensions block (old clients) is well-formed.
        return Ok(info);
    }
    let mut exts = r.vec16("extensions")?;
    let mut seen = SeenExtensions::new();
    let mut after_psk = false;
    while !exts.at_end() {
        let typ = exts.u16("extension type")?;
        let mut data = exts.vec16("extension")?;
        if after_psk {
            return bad("pre_shared_key is not the last extension");
        }
        if !seen.insert(typ) {
            return bad(format!("duplicate extension 0x{typ:04x}"));
        }
        match typ {
            EXT_SERVER_NAME => info.sni = client_server_name(&mut data)?,
            EXT_ALPN => info.alpn = client_alpn(&mut data)?,
            EXT_SUPPORTED_VERSIONS => info.supported_versions = client_supported_versions(&mut data)?,
            EXT_KEY_SHARE => info.key_share_groups = client_key_share(&mut data)?,
            EXT_EARLY_DATA => {
                info.early_data = true;
                data.rest("early_data")?;
            }
            EXT_PRE_SHARED_KEY => {
                after_psk = true;
                data.rest("pre_shared_key")?;
            }
            _ => {
                data.rest("extension")?;
            }
        }
        data.expect_end(ext_name(typ))?;
    }
    Ok(info)
}

fn ext_name(t: u16) -> &'static str {
    match t {
        EXT_SERVER_NAME => "server_name",
        EXT_ALPN => "application_layer_protocol_negotiation",
        EXT_SUPPORTED_VERSIONS => "supported_versions",
        EXT_KEY_SHARE => "key_share",
        EXT_PRE_SHARED_KEY => "pre_shared_key",
        _ => "extension",
    }
}

/// RFC 6066 server_name: at most one host_name; lowercased; only DNS name characters.
fn client_server_name(d: &mut Reader<'_>) -> Result<Option<String>, ParseError> {
    let mut list = d.vec16("server_name list")?;
    if list.remaining() == 0 {
        return bad("empty server_name list");
    }
    let mut host: Option<String> = None;
    while !list.at_end() {
        let name_type = list.u8("server_name type")?;
        let mut name = list.vec16("server_name")?;
        let name = name.rest("server_name")?;
        if name_type != 0 {
            continue;
        }
        if host.is_some() {
            return bad("more than one host_name in server_name");
        }
        if name.is_empty() {
            return bad("empty host_name in server_name");
        }
        if !name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return bad("host_name in server_name has characters not allowed in a DNS name");
        }
        // All bytes are ASCII, so this is lossless.
        host = Some(name.iter().map(|&b| char::from(b.to_ascii_lowercase())).collect());
    }
    Ok(host)
}

fn client_alpn(d: &mut Reader<'_>) -> Result<Vec<String>, ParseError> {
    let mut list = d.vec16("ALPN list")?;
    if list.remaining() == 0 {
        return bad("empty ALPN list");
    }
    let mut out = Vec::new();
    while !list.at_end() {
        let mut proto = list.vec8("ALPN protocol name")?;
        if proto.remaining() == 0 {
            return bad("empty ALPN protocol name");
        }
        // Names are logged: anything but visible ASCII is kept as \xNN so a client cannot forge log lines.
        let name = proto.rest("ALPN protocol name")?;
        out.push(if name.iter().all(|b| (0x21..0x7f).contains(b) && *b != b'\\') {
            String::from_utf8_lossy(name).into_owned()
        } else {
            name.iter().map(|b| if (0x21..0x7f).contains(b) && *b != b'\\' { (*b as char).to_string() } else { format!("\\x{b:02x}") }).collect()
        });
    }
    Ok(out)
}

fn client_supported_versions(d: &mut Reader<'_>) -> Result<Vec<u16>, ParseError> {
    let mut list = d.vec8("supported_versions")?;
    if list.remaining() == 0 || list.remaining() % 2 != 0 {
        return bad(format!("supported_versions length {} is not a positive even number", list.remaining()));
    }
    let mut out = Vec::new();
    while !list.at_end() {
        let v = list.u16("supported_versions")?;
        if !is_grease(v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn client_key_share(d: &mut Reader<'_>) -> Result<Vec<u16>, ParseError> {
    // An empty client_shares list is legal (the client asks for a HelloRetryRequest).
    let mut shares = d.vec16("key_share client_shares")?;
    let mut out = Vec::new();
    while !shares.at_end() {
        let group = shares.u16("key_share group")?;
        let mut key = shares.vec16("key_share key_exchange")?;
        if key.remaining() == 0 {
            return bad("empty key_share key_exchange");
        }
        key.rest("key_share key_exchange")?;
        if !is_grease(group) {
            out.push(group);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// ServerHello
// ---------------------------------------------------------------------------

fn server_hello_body(r: &mut Reader<'_>) -> Result<ServerHelloInfo, ParseError> {
    let legacy_version = r.u16("server_version")?;
    let hello_retry = r.bytes(32, "random")? == HRR_RANDOM.as_slice();
    let session_id = r.vec8("session_id")?;
    if session_id.remaining() > 32 {
        return bad("session_id longer than 32 bytes");
    }
    let cipher_suite = r.u16("cipher_suite")?;
    r.u8("compression_method")?;

    let mut selected_version: Option<u16> = None;
    let mut has_key_share = false;
    if !r.at_end() {
        let mut exts = r.vec16("extensions")?;
        let mut seen = SeenExtensions::new();
        while !exts.at_end() {
            let typ = exts.u16("extension type")?;
            let mut data = exts.vec16("extension")?;
            if !seen.insert(typ) {
                return bad(format!("duplicate extension 0x{typ:04x}"));
            }
            match typ {
                EXT_SUPPORTED_VERSIONS => {
                    if data.remaining() != 2 {
                        return bad("supported_versions in ServerHello is not one version");
                    }
                    selected_version = Some(data.u16("supported_versions")?);
                }
                EXT_KEY_SHARE => {
                    has_key_share = true;
                    // HelloRetryRequest: selected_group only; ServerHello: one KeyShareEntry.
                    data.u16("key_share group")?;
                    if !hello_retry {
                        let mut key = data.vec16("key_share key_exchange")?;
                        if key.remaining() == 0 {
                            return bad("empty key_share key_exchange");
                        }
                        key.rest("key_share key_exchange")?;
                    }
                }
                _ => {
                    data.rest("extension")?;
                }
            }
            data.expect_end(ext_name(typ))?;
        }
    }
    let version = selected_version.unwrap_or(legacy_version);
    if !(0x0300..=TLS1_3).contains(&version) {
        return bad(format!("server selected unknown version 0x{version:04x}"));
    }
    Ok(ServerHelloInfo { version, cipher_suite, has_key_share, hello_retry })
}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// Why a hello is refused. Display gives one lowercase phrase; `code()` gives a stable snake_case code for logs/metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    const SNI: &str = "s3.us-east-1.amazonaws.com";

    const CH_OPENSSL: &[u8] = include_bytes!("testdata/client_hello_openssl.bin");
    const CH_CURL: &[u8] = include_bytes!("testdata/client_hello_curl.bin");
    const CH_RUSTLS: &[u8] = include_bytes!("testdata/client_hello_rustls.bin");
    const CH_TLS11: &[u8] = include_bytes!("testdata/client_hello_openssl_tls11.bin");
    const CH_RSA_ONLY: &[u8] = include_bytes!("testdata/client_hello_rsa_only.bin");
    const SH_OPENSSL_TLS13: &[u8] = include_bytes!("testdata/server_hello_openssl_tls13.bin");
    const SH_OPENSSL_ECDHE12: &[u8] = include_bytes!("testdata/server_hello_openssl_ecdhe_tls12.bin");
    const SH_OPENSSL_RSA_KX: &[u8] = include_bytes!("testdata/server_hello_openssl_rsa_kx.bin");
    const SH_RUSTLS_TLS13: &[u8] = include_bytes!("testdata/server_hello_rustls_tls13.bin");
    const SH_OPENSSL_HRR: &[u8] = include_bytes!("testdata/server_hello_openssl_hrr.bin");

    const CLIENT_FIXTURES: &[(&str, &[u8])] =
        &[("openssl", CH_OPENSSL), ("curl", CH_CURL), ("rustls", CH_RUSTLS), ("openssl_tls11", CH_TLS11), ("rsa_only", CH_RSA_ONLY)];
    const SERVER_FIXTURES: &[(&str, &[u8])] = &[
        ("openssl_tls13", SH_OPENSSL_TLS13),
        ("openssl_ecdhe_tls12", SH_OPENSSL_ECDHE12),
        ("openssl_rsa_kx", SH_OPENSSL_RSA_KX),
        ("rustls_tls13", SH_RUSTLS_TLS13),
        ("openssl_hrr", SH_OPENSSL_HRR),
    ];

    type Parser<T> = fn(&[u8]) -> Result<(T, usize), HelloError>;

    fn ch(buf: &[u8]) -> (ClientHelloInfo, usize) {
        parse_client_hello(buf).expect("client hello parses")
    }

    fn sh(buf: &[u8]) -> (ServerHelloInfo, usize) {
        parse_server_hello(buf).expect("server hello parses")
    }

    fn malformed(r: Result<impl std::fmt::Debug, HelloError>) -> String {
        match r {
            Err(HelloError::Malformed(s)) => s,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn not_tls(r: Result<impl std::fmt::Debug, HelloError>) -> String {
        match r {
            Err(HelloError::NotTls(s)) => s,
            other => panic!("expected NotTls, got {other:?}"),
        }
    }

    // ---- builders for hand-made hellos -------------------------------------------------

    fn v8(b: &[u8]) -> Vec<u8> {
        let mut v = vec![b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    fn v16(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    fn u16s(xs: &[u16]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    fn ext(t: u16, data: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend(v16(data));
        v
    }

    fn sni_ext(name: &str) -> Vec<u8> {
        let mut entry = vec![0u8];
        entry.extend(v16(name.as_bytes()));
        ext(EXT_SERVER_NAME, &v16(&entry))
    }

    fn versions_ext(vs: &[u16]) -> Vec<u8> {
        ext(EXT_SUPPORTED_VERSIONS, &v8(&u16s(vs)))
    }

    fn client_key_share_ext(groups: &[u16]) -> Vec<u8> {
        let mut shares = Vec::new();
        for g in groups {
            shares.extend(g.to_be_bytes());
            shares.extend(v16(&[0x42; 32]));
        }
        ext(EXT_KEY_SHARE, &v16(&shares))
    }

    fn alpn_ext(protos: &[&str]) -> Vec<u8> {
        let list: Vec<u8> = protos.iter().flat_map(|p| v8(p.as_bytes())).collect();
        ext(EXT_ALPN, &v16(&list))
    }

    fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let mut v = vec![t, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        v.extend_from_slice(body);
        v
    }

    /// Wraps `data` in records of content type `ctype` carrying at most `frag` bytes each.
    fn records(ctype: u8, data: &[u8], frag: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(frag) {
            out.extend([ctype, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    fn client_hello_msg(version: u16, suites: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend([7u8; 32]);
        body.extend(v8(&[9u8; 32]));
        body.extend(v16(&u16s(suites)));
        body.extend(v8(&[0]));
        let all: Vec<u8> = exts.concat();
        body.extend(v16(&all));
        handshake(HS_CLIENT_HELLO, &body)
    }

    fn modern_client_exts(sni: &str) -> Vec<Vec<u8>> {
        vec![sni_ext(sni), versions_ext(&[0x0304, 0x0303]), client_key_share_ext(&[0x001d])]
    }

    fn client_hello_record(version: u16, suites: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
        records(CT_HANDSHAKE, &client_hello_msg(version, suites, exts), 1 << 14)
    }

    fn server_hello_msg(version: u16, random: [u8; 32], suite: u16, exts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend(random);
        body.extend(v8(&[9u8; 32]));
        body.extend(suite.to_be_bytes());
        body.push(0);
        if !exts.is_empty() {
            body.extend(v16(&exts.concat()));
        }
        handshake(HS_SERVER_HELLO, &body)
    }

    fn server_key_share_ext(group: u16) -> Vec<u8> {
        let mut d = group.to_be_bytes().to_vec();
        d.extend(v16(&[0x24; 32]));
        ext(EXT_KEY_SHARE, &d)
    }

    fn server_version_ext(v: u16) -> Vec<u8> {
        ext(EXT_SUPPORTED_VERSIONS, &v.to_be_bytes())
    }

    // ---- fixtures: what each one contains -------------------------------------------

    #[test]
    fn fixture_openssl_client() {
        let (info, consumed) = ch(CH_OPENSSL);
        assert_eq!(consumed, CH_OPENSSL.len());
        assert_eq!(info.sni.as_deref(), Some(SNI));
        assert_eq!(info.legacy_version, 0x0303);
        assert_eq!(info.supported_versions, vec![0x0304, 0x0303, 0x0302, 0x0301]);
        assert_eq!(info.cipher_suites.len(), 30);
        assert_eq!(&info.cipher_suites[..3], &[0x1302, 0x1303, 0x1301]);
        assert!(info.cipher_suites.contains(&0x009c));
        assert!(!info.cipher_suites.contains(&SCSV_RENEGOTIATION), "SCSV must be removed");
        assert_eq!(info.key_share_groups, vec![0x001d]);
        assert!(info.alpn.is_empty());
        assert_eq!(check_client_hello(&info, SNI), Ok(()));
    }

    #[test]
    fn fixture_curl_client() {
        let (info, consumed) = ch(CH_CURL);
        assert_eq!(consumed, CH_CURL.len());
        assert_eq!(info.sni.as_deref(), Some(SNI));
        assert_eq!(info.legacy_version, 0x0303);
        assert_eq!(info.supported_versions, vec![0x0304, 0x0303, 0x0302, 0x0301]);
        assert_eq!(info.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        assert_eq!(info.key_share_groups, vec![0x001d]);
        assert_eq!(info.cipher_suites[0], 0x1302);
        assert!(!info.cipher_suites.contains(&SCSV_RENEGOTIATION));
        assert_eq!(check_client_hello(&info, SNI), Ok(()));
    }

    #[test]
    fn fixture_rustls_client() {
        let (info, consumed) = ch(CH_RUSTLS);
        assert_eq!(consumed, CH_RUSTLS.len());
        assert_eq!(info.sni.as_deref(), Some(SNI));
        assert_eq!(info.legacy_version, 0x0303);
        assert_eq!(info.supported_versions, vec![0x0304, 0x0303]);
        assert_eq!(info.cipher_suites, vec![0x1302, 0x1301, 0x1303, 0xc02c, 0xc02b, 0xcca9, 0xc030, 0xc02f, 0xcca8]);
        assert_eq!(info.key_share_groups, vec![0x001d]);
        assert_eq!(check_client_hello(&info, SNI), Ok(()));
    }

    #[test]
    fn alpn_names_are_kept_printable() {
        let weird = {
            let mut list = vec![8u8];
            list.extend(b"http/1.1");
            list.extend([6u8, b'x', b'\n', 0x1b, b'[', b'2', b'J']);
            ext(EXT_ALPN, &v16(&list))
        };
        let info = ch(&client_hello_record(0x0303, &[0x1301], &[sni_ext(SNI), weird])).0;
        assert_eq!(info.alpn, vec!["http/1.1".to_string(), "x\\x0a\\x1b[2J".to_string()]);
    }

    #[test]
    fn early_data_is_refused() {
        let sv = versions_ext(&[0x0304]);
        let hello = |early: bool| {
            let mut exts = vec![sni_ext(SNI), sv.clone(), client_key_share_ext(&[0x001d])];
            if early {
                exts.push(ext(EXT_EARLY_DATA, &[]));
            }
            ch(&client_hello_record(0x0303, &[0x1301], &exts)).0
        };
        assert_eq!(check_client_hello(&hello(false), SNI), Ok(()));
        let info = hello(true);
        assert!(info.early_data);
        let refusal = check_client_hello(&info, SNI).unwrap_err();
        assert_eq!(refusal.code(), "client_early_data");
        assert!(refusal.to_string().contains("turn 0-RTT off"), "{refusal}");
    }

    #[test]
    fn fixture_tls11_client_refused() {
        let (info, consumed) = ch(CH_TLS11);
        assert_eq!(consumed, CH_TLS11.len());
        assert_eq!(info.sni.as_deref(), Some(SNI));
        assert_eq!(info.legacy_version, 0x0302);
        assert!(info.supported_versions.is_empty());
        assert!(info.key_share_groups.is_empty());
        assert_eq!(info.cipher_suites, vec![0xc00a, 0xc014, 0x0039, 0xc009, 0xc013, 0x0033, 0x0035, 0x002f]);
        let refusal = check_client_hello(&info, SNI).unwrap_err();
        assert_eq!(refusal, HelloRefusal::ClientTlsTooOld { max_offered: 0x0302 });
        assert_eq!(refusal.code(), "client_tls_too_old");
        assert_eq!(refusal.to_string(), "the client offers at most TLS1.1, older than TLS1.2");
    }

    #[test]
    fn fixture_rsa_only_client_refused() {
        let (info, consumed) = ch(CH_RSA_ONLY);
        assert_eq!(consumed, CH_RSA_ONLY.len());
        assert_eq!(info.sni.as_deref(), Some(SNI));
        assert_eq!(info.legacy_version, 0x0303);
        assert!(info.supported_versions.is_empty());
        assert_eq!(info.cipher_suites, vec![0x009c]);
        let refusal = check_client_hello(&info, SNI).unwrap_err();
        assert_eq!(refusal, HelloRefusal::ClientNoForwardSecrecy);
        assert_eq!(refusal.code(), "client_no_forward_secrecy");
    }

    #[test]
    fn fixture_openssl_server_tls13() {
        let (info, consumed) = sh(SH_OPENSSL_TLS13);
        assert_eq!(consumed, 127, "stops at the end of the ServerHello record");
        assert!(SH_OPENSSL_TLS13.len() > consumed, "fixture holds more records than the ServerHello");
        assert_eq!(info, ServerHelloInfo { version: 0x0304, cipher_suite: 0x1302, has_key_share: true, hello_retry: false });
        assert_eq!(check_server_hello(&info), Ok(()));
    }

    #[test]
    fn fixture_openssl_server_ecdhe_tls12() {
        let (info, consumed) = sh(SH_OPENSSL_ECDHE12);
        assert_eq!(consumed, 70);
        assert_eq!(info, ServerHelloInfo { version: 0x0303, cipher_suite: 0xc02f, has_key_share: false, hello_retry: false });
        assert_eq!(check_server_hello(&info), Ok(()));
    }

    #[test]
    fn fixture_openssl_server_rsa_kx_refused() {
        let (info, consumed) = sh(SH_OPENSSL_RSA_KX);
        assert_eq!(consumed, 62);
        assert_eq!(info.version, 0x0303);
        assert_eq!(info.cipher_suite, 0x009c);
        let refusal = check_server_hello(&info).unwrap_err();
        assert_eq!(refusal, HelloRefusal::ServerNoForwardSecrecy { suite: 0x009c });
        assert_eq!(refusal.code(), "server_no_forward_secrecy");
        assert_eq!(refusal.to_string(), "the upstream chose TLS_RSA_WITH_AES_128_GCM_SHA256, a cipher suite without forward secrecy");
    }

    #[test]
    fn fixture_rustls_server_tls13() {
        let (info, consumed) = sh(SH_RUSTLS_TLS13);
        assert_eq!(consumed, 127);
        assert_eq!(info, ServerHelloInfo { version: 0x0304, cipher_suite: 0x1302, has_key_share: true, hello_retry: false });
        assert_eq!(check_server_hello(&info), Ok(()));
    }

    #[test]
    fn fixture_openssl_hello_retry_request() {
        let (info, consumed) = sh(SH_OPENSSL_HRR);
        assert_eq!(consumed, 93, "the dummy change_cipher_spec after the HRR is not consumed");
        assert_eq!(&SH_OPENSSL_HRR[93..], &[20, 3, 3, 0, 1, 1]);
        assert_eq!(info, ServerHelloInfo { version: 0x0304, cipher_suite: 0x1302, has_key_share: true, hello_retry: true });
        assert_eq!(check_server_hello(&info), Ok(()));
    }

    #[test]
    fn dummy_change_cipher_spec_before_server_hello_is_skipped() {
        // After an HRR the server's change_cipher_spec may arrive apart from it, so the bytes
        // read for the second ServerHello start with it.
        let mut buf = SH_OPENSSL_HRR[93..].to_vec();
        buf.extend_from_slice(SH_OPENSSL_TLS13);
        let (info, consumed) = sh(&buf);
        assert_eq!(consumed, 6 + 127);
        assert_eq!(info, sh(SH_OPENSSL_TLS13).0);
        for n in 0..6 + 127 {
            assert_eq!(parse_server_hello(&buf[..n]), Err(HelloError::Incomplete), "prefix {n}");
        }
        // Only the exact dummy record, only once, only before the ServerHello starts.
        assert!(malformed(parse_server_hello(&[20, 3, 3, 0, 1, 2])).contains("change_cipher_spec"));
        assert!(malformed(parse_server_hello(&[20, 3, 3, 0, 2, 1, 1])).contains("change_cipher_spec"));
        assert!(malformed(parse_server_hello(&[20, 3, 3, 0, 1, 1, 20, 3, 3, 0, 1, 1])).contains("more than one"));
        let mut interleaved = records(CT_HANDSHAKE, &message_of(SH_OPENSSL_TLS13)[..10], 10);
        interleaved.extend([20, 3, 3, 0, 1, 1]);
        assert!(malformed(parse_server_hello(&interleaved)).contains("change_cipher_spec"));
        // Not for the client side: the ClientHello comes first.
        assert!(malformed(parse_client_hello(&[20, 3, 3, 0, 1, 1])).contains("change_cipher_spec"));
    }

    #[test]
    fn fixtures_fed_byte_by_byte() {
        fn run<T: PartialEq + std::fmt::Debug>(name: &str, buf: &[u8], parse: Parser<T>) {
            let full = parse(buf).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let consumed = full.1;
            for n in 0..=buf.len() {
                let got = parse(&buf[..n]);
                if n < consumed {
                    assert_eq!(got, Err(HelloError::Incomplete), "{name}: prefix of {n} bytes");
                } else {
                    assert_eq!(got.as_ref(), Ok(&full), "{name}: prefix of {n} bytes");
                }
            }
        }
        for (name, buf) in CLIENT_FIXTURES {
            run(name, buf, parse_client_hello);
        }
        for (name, buf) in SERVER_FIXTURES {
            run(name, buf, parse_server_hello);
        }
    }

    /// The handshake message of a single-record fixture.
    fn message_of(fixture: &[u8]) -> &[u8] {
        let n = usize::from(u16::from_be_bytes([fixture[3], fixture[4]]));
        &fixture[5..5 + n]
    }

    #[test]
    fn client_hello_split_across_records() {
        let (want, _) = ch(CH_CURL);
        let msg = message_of(CH_CURL);
        for frag in [1usize, 2, 3, 4, 5, 100, 256, 300, 507, 508] {
            let buf = records(CT_HANDSHAKE, msg, frag);
            let (info, consumed) = ch(&buf);
            assert_eq!(info, want, "fragment size {frag}");
            assert_eq!(consumed, buf.len(), "fragment size {frag}");
        }
        // Two records, then the start of application data: stop after the second record.
        let mut buf = records(CT_HANDSHAKE, msg, 300);
        let two = buf.len();
        buf.extend([CT_APPLICATION_DATA, 3, 3, 0, 3, 1, 2, 3]);
        assert_eq!(ch(&buf), (want, two));
        // Second record cut short.
        assert_eq!(parse_client_hello(&buf[..two - 1]), Err(HelloError::Incomplete));
    }

    #[test]
    fn hello_ending_mid_record_needs_the_whole_record() {
        // The ClientHello ends inside a record that carries more handshake bytes.
        let mut data = message_of(CH_RUSTLS).to_vec();
        data.extend(handshake(99, &[1, 2, 3]));
        let buf = records(CT_HANDSHAKE, &data, 1 << 14);
        let (info, consumed) = ch(&buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(info, ch(CH_RUSTLS).0);
        assert_eq!(parse_client_hello(&buf[..buf.len() - 1]), Err(HelloError::Incomplete));
    }

    #[test]
    fn server_hello_split_across_records() {
        let (want, _) = sh(SH_OPENSSL_TLS13);
        let msg = message_of(SH_OPENSSL_TLS13);
        let mut buf = records(CT_HANDSHAKE, msg, 50);
        let end = buf.len();
        buf.extend([CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]);
        assert_eq!(sh(&buf), (want, end));
    }

    #[test]
    fn sni_checks() {
        let (info, _) = ch(CH_OPENSSL);
        assert_eq!(check_client_hello(&info, "S3.US-East-1.amazonaws.com"), Ok(()));
        assert_eq!(check_client_hello(&info, "s3.us-east-1.amazonaws.com."), Ok(()));
        let refusal = check_client_hello(&info, "s3.us-west-2.amazonaws.com").unwrap_err();
        assert_eq!(refusal, HelloRefusal::SniMismatch { sni: SNI.to_string(), host: "s3.us-west-2.amazonaws.com".to_string() });
        assert_eq!(refusal.code(), "sni_mismatch");
        assert!(refusal.to_string().contains("s3.us-west-2.amazonaws.com"));

        // Trailing dot and upper case in the SNI itself.
        let buf = client_hello_record(0x0303, &[0x1301], &modern_client_exts("S3.Amazonaws.COM."));
        let (info, _) = ch(&buf);
        assert_eq!(info.sni.as_deref(), Some("s3.amazonaws.com."));
        assert_eq!(check_client_hello(&info, "s3.amazonaws.com"), Ok(()));
        assert!(check_client_hello(&info, "s3.amazonaws.co").is_err());
        assert!(check_client_hello(&info, "").is_err());

        // No SNI at all.
        let exts = vec![versions_ext(&[0x0304]), client_key_share_ext(&[0x001d])];
        let (info, _) = ch(&client_hello_record(0x0303, &[0x1301], &exts));
        assert_eq!(info.sni, None);
        let refusal = check_client_hello(&info, SNI).unwrap_err();
        assert_eq!(refusal, HelloRefusal::SniMissing);
        assert_eq!(refusal.code(), "sni_missing");
    }

    #[test]
    fn bad_server_names_are_malformed() {
        let two_names = {
            let mut list = vec![0u8];
            list.extend(v16(b"a.example"));
            list.push(0);
            list.extend(v16(b"b.example"));
            ext(EXT_SERVER_NAME, &v16(&list))
        };
        for (e, why) in [
            (two_names, "more than one host_name"),
            (sni_ext("evil.example\0.s3.amazonaws.com"), "characters"),
            (sni_ext("évil.example"), "characters"),
            (sni_ext("a b"), "characters"),
            (sni_ext(""), "empty host_name"),
            (ext(EXT_SERVER_NAME, &v16(&[])), "empty server_name list"),
            (ext(EXT_SERVER_NAME, &[]), "truncated"),
        ] {
            let buf = client_hello_record(0x0303, &[0x1301], &[e]);
            let msg = malformed(parse_client_hello(&buf));
            assert!(msg.contains(why), "{msg:?} should mention {why:?}");
        }
        // Unknown name types are skipped.
        let mut list = vec![7u8];
        list.extend(v16(b"whatever"));
        list.push(0);
        list.extend(v16(b"ok.example"));
        let buf = client_hello_record(0x0303, &[0x1301], &[ext(EXT_SERVER_NAME, &v16(&list))]);
        assert_eq!(ch(&buf).0.sni.as_deref(), Some("ok.example"));
    }

    #[test]
    fn grease_and_scsv_are_removed() {
        let exts = vec![
            ext(0x0a0a, &[]),
            sni_ext("x.example"),
            versions_ext(&[0x7a7a, 0x0304, 0x0303]),
            client_key_share_ext(&[0x2a2a, 0x001d, 0x11ec]),
            alpn_ext(&["h2", "http/1.1"]),
            ext(0xfafa, &[0]),
        ];
        let suites = [0xdada, 0x1301, 0xc02b, 0x00ff, 0x5600, 0x009c];
        let (info, _) = ch(&client_hello_record(0x0303, &suites, &exts));
        assert_eq!(
            info,
            ClientHelloInfo {
                sni: Some("x.example".into()),
                legacy_version: 0x0303,
                supported_versions: vec![0x0304, 0x0303],
                cipher_suites: vec![0x1301, 0xc02b, 0x009c],
                alpn: vec!["h2".into(), "http/1.1".into()],
                key_share_groups: vec![0x001d, 0x11ec],
                early_data: false,
            }
        );
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x3a3a));
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301) && !is_grease(0x0b0b));
    }

    #[test]
    fn client_version_rules() {
        let sni = || modern_client_exts("x.example")[0].clone();
        let ks = || client_key_share_ext(&[0x001d]);
        let check = |legacy: u16, versions: Option<&[u16]>, suites: &[u16]| {
            let mut exts = vec![sni(), ks()];
            if let Some(vs) = versions {
                exts.push(versions_ext(vs));
            }
            check_client_hello(&ch(&client_hello_record(legacy, suites, &exts)).0, "x.example")
        };
        // TLS1.2 by legacy_version alone.
        assert_eq!(check(0x0303, None, &[0xc02f]), Ok(()));
        assert_eq!(check(0x0303, None, &[0x009e]), Ok(()));
        // supported_versions decides when present, whatever legacy_version says.
        assert_eq!(check(0x0303, Some(&[0x0302, 0x0301]), &[0xc02f]), Err(HelloRefusal::ClientTlsTooOld { max_offered: 0x0302 }));
        assert_eq!(check(0x0301, Some(&[0x0303]), &[0xc02f]), Ok(()));
        assert_eq!(check(0x0300, None, &[0xc013]), Err(HelloRefusal::ClientTlsTooOld { max_offered: 0x0300 }));
        // TLS1.3-only client with only TLS1.2 suites cannot get forward secrecy (nor a session).
        assert_eq!(check(0x0303, Some(&[0x0304]), &[0xc02f]), Err(HelloRefusal::ClientNoForwardSecrecy));
        assert_eq!(check(0x0303, Some(&[0x0304]), &[0x1303]), Ok(()));
        // TLS1.3 suites do not count for a TLS1.2-only client.
        assert_eq!(check(0x0303, None, &[0x1301, 0x009c]), Err(HelloRefusal::ClientNoForwardSecrecy));
        // Anonymous, NULL and PSK-only suites are not forward secrecy.
        assert_eq!(check(0x0303, None, &[0xc018, 0x00a6, 0xc006, 0x00a8]), Err(HelloRefusal::ClientNoForwardSecrecy));
        assert_eq!(check(0x0303, Some(&[0x0304, 0x0303]), &[0x009c, 0xc02f]), Ok(()));
    }

    #[test]
    fn server_decisions() {
        let random = [0x55u8; 32];
        let parse = |msg: Vec<u8>| sh(&records(CT_HANDSHAKE, &msg, 1 << 14)).0;

        // TLS1.3 without key_share: psk_ke resumption.
        let info = parse(server_hello_msg(0x0303, random, 0x1301, &[server_version_ext(0x0304)]));
        assert_eq!(info, ServerHelloInfo { version: 0x0304, cipher_suite: 0x1301, has_key_share: false, hello_retry: false });
        let refusal = check_server_hello(&info).unwrap_err();
        assert_eq!(refusal, HelloRefusal::ServerNoKeyShare);
        assert_eq!(refusal.code(), "server_no_key_share");

        // TLS1.3 with pre_shared_key and key_share (psk_dhe_ke): fine.
        let info =
            parse(server_hello_msg(0x0303, random, 0x1301, &[server_version_ext(0x0304), ext(EXT_PRE_SHARED_KEY, &[0, 0]), server_key_share_ext(0x001d)]));
        assert_eq!(check_server_hello(&info), Ok(()));

        // TLS1.2 without any extensions block.
        let info = parse(server_hello_msg(0x0303, random, 0xc030, &[]));
        assert_eq!(info.version, 0x0303);
        assert_eq!(check_server_hello(&info), Ok(()));
        let info = parse(server_hello_msg(0x0303, random, 0x0035, &[]));
        assert_eq!(check_server_hello(&info), Err(HelloRefusal::ServerNoForwardSecrecy { suite: 0x0035 }));
        // A TLS1.3 suite under TLS1.2 is not a TLS1.2 key exchange.
        let info = parse(server_hello_msg(0x0303, random, 0x1301, &[]));
        assert_eq!(check_server_hello(&info), Err(HelloRefusal::ServerNoForwardSecrecy { suite: 0x1301 }));

        // TLS1.1 and SSL3.
        let info = parse(server_hello_msg(0x0302, random, 0xc013, &[]));
        let refusal = check_server_hello(&info).unwrap_err();
        assert_eq!(refusal, HelloRefusal::ServerTlsTooOld { version: 0x0302 });
        assert_eq!(refusal.code(), "server_tls_too_old");
        assert_eq!(refusal.to_string(), "the upstream chose TLS1.1, older than TLS1.2");
        let info = parse(server_hello_msg(0x0300, random, 0x0035, &[]));
        assert_eq!(check_server_hello(&info), Err(HelloRefusal::ServerTlsTooOld { version: 0x0300 }));

        // A version nobody offered.
        let msg = server_hello_msg(0x0303, random, 0x1301, &[server_version_ext(0x7f1c)]);
        let err = malformed(parse_server_hello(&records(CT_HANDSHAKE, &msg, 1 << 14)));
        assert!(err.contains("0x7f1c"), "{err}");
    }

    #[test]
    fn hello_retry_request() {
        // HRR: magic random, supported_versions, key_share with selected_group only, cookie.
        let msg =
            server_hello_msg(0x0303, HRR_RANDOM, 0x1301, &[server_version_ext(0x0304), ext(EXT_KEY_SHARE, &0x0017u16.to_be_bytes()), ext(0x002c, &v16(b"c"))]);
        let mut buf = records(CT_HANDSHAKE, &msg, 1 << 14);
        let end = buf.len();
        buf.extend([CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]);
        let (info, consumed) = sh(&buf);
        assert_eq!(consumed, end);
        assert_eq!(info, ServerHelloInfo { version: 0x0304, cipher_suite: 0x1301, has_key_share: true, hello_retry: true });
        assert_eq!(check_server_hello(&info), Ok(()));

        // HRR that only asks for a cookie: no key_share, still fine (the real ServerHello follows).
        let msg = server_hello_msg(0x0303, HRR_RANDOM, 0x1302, &[server_version_ext(0x0304), ext(0x002c, &v16(b"c"))]);
        let (info, _) = sh(&records(CT_HANDSHAKE, &msg, 1 << 14));
        assert!(info.hello_retry && !info.has_key_share);
        assert_eq!(check_server_hello(&info), Ok(()));

        // A full KeyShareEntry in an HRR is malformed (trailing bytes after selected_group).
        let msg = server_hello_msg(0x0303, HRR_RANDOM, 0x1301, &[server_version_ext(0x0304), server_key_share_ext(0x1d)]);
        assert!(malformed(parse_server_hello(&records(CT_HANDSHAKE, &msg, 1 << 14))).contains("key_share"));
    }

    #[test]
    fn plaintext_and_garbage() {
        for input in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"G", b"GE", b"CONNECT x:443 HTTP/1.1\r\n", b"PRI * HTTP/2.0"] {
            assert_eq!(not_tls(parse_client_hello(input)), "plaintext HTTP", "{input:?}");
        }
        assert_eq!(not_tls(parse_server_hello(b"HTTP/1.1 400 Bad Request\r\n")), "plaintext HTTP");
        assert_eq!(not_tls(parse_server_hello(b"SSH-2.0-OpenSSH_9.2\r\n")), "plaintext data");
        // SSLv2-compatible ClientHello: 2-byte header with the high bit set, msg type 1.
        let sslv2 = [0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10];
        assert_eq!(not_tls(parse_client_hello(&sslv2)), "SSLv2-format hello");
        assert_eq!(not_tls(parse_client_hello(&sslv2[..1])), "SSLv2-format hello");
        assert_eq!(not_tls(parse_server_hello(&[0x84, 0x01])), "SSLv2-format hello");
        assert!(not_tls(parse_client_hello(&[0x00, 0x01, 0x02])).contains("0x00"));
        // Handshake content type but not a TLS version.
        assert!(not_tls(parse_client_hello(&[0x16, 0x01])).contains("major"));
        // Empty buffer: need more.
        assert_eq!(parse_client_hello(&[]), Err(HelloError::Incomplete));
        assert_eq!(parse_server_hello(&[]), Err(HelloError::Incomplete));
        assert_eq!(parse_client_hello(&[0x16]), Err(HelloError::Incomplete));
        assert_eq!(parse_client_hello(&[0x16, 0x03, 0x01, 0x00]), Err(HelloError::Incomplete));
    }

    #[test]
    fn record_layer_errors() {
        // Zero-length and oversized records.
        assert!(malformed(parse_client_hello(&[0x16, 3, 1, 0, 0])).contains("zero-length"));
        let mut after_zero = records(CT_HANDSHAKE, &message_of(CH_OPENSSL)[..10], 10);
        after_zero.extend([0x16, 3, 1, 0, 0]);
        assert!(malformed(parse_client_hello(&after_zero)).contains("zero-length"));
        assert!(malformed(parse_client_hello(&[0x16, 3, 1, 0x41, 0x01])).contains("exceeds"));
        assert_eq!(parse_client_hello(&[0x16, 3, 1, 0x41, 0x00]), Err(HelloError::Incomplete));
        // Wrong record types.
        assert!(malformed(parse_client_hello(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5])).contains("application_data"));
        assert!(malformed(parse_client_hello(&[20])).contains("change_cipher_spec"));
        assert!(malformed(parse_server_hello(&[24, 3])).contains("heartbeat"));
        // A non-handshake record in the middle of the hello.
        let msg = message_of(CH_OPENSSL);
        let mut buf = records(CT_HANDSHAKE, &msg[..100], 100);
        buf.extend([CT_APPLICATION_DATA, 3, 3, 0, 1, 0]);
        assert!(malformed(parse_client_hello(&buf)).contains("application_data"));
        let mut buf = records(CT_HANDSHAKE, &msg[..100], 100);
        buf.extend([0x47, 0x45, 0x54]);
        assert!(malformed(parse_client_hello(&buf)).contains("content type"));
        // Wrong handshake message.
        assert!(malformed(parse_server_hello(CH_OPENSSL)).contains("expected ServerHello"));
        assert!(malformed(parse_client_hello(SH_OPENSSL_TLS13)).contains("expected ClientHello"));
        assert!(malformed(parse_client_hello(&[0x16, 3, 1, 0, 4, 20])).contains("finished"));
    }

    #[test]
    fn alerts_before_server_hello() {
        let msg = malformed(parse_server_hello(&[21, 3, 3, 0, 2, 2, 40]));
        assert_eq!(msg, "received alert: level 2 (fatal), description 40 (handshake_failure)");
        let msg = malformed(parse_server_hello(&[21, 3, 3, 0, 2, 2, 112, 22, 3, 3]));
        assert!(msg.contains("alert") && msg.contains("112") && msg.contains("unrecognized_name"), "{msg}");
        let msg = malformed(parse_server_hello(&[21, 3, 1, 0, 2, 1, 0]));
        assert!(msg.contains("level 1 (warning)") && msg.contains("description 0 (close_notify)"), "{msg}");
        assert_eq!(parse_server_hello(&[21, 3, 3, 0, 2, 2]), Err(HelloError::Incomplete));
        assert!(malformed(parse_server_hello(&[21, 3, 3, 0, 1, 2])).contains("truncated alert"));
        // An alert from a client is reported the same way.
        assert!(malformed(parse_client_hello(&[21, 3, 3, 0, 2, 2, 70])).contains("protocol_version"));
    }

    #[test]
    fn too_large() {
        // Declared message length 65533 + 4 header bytes > MAX_HELLO_BYTES.
        assert_eq!(parse_client_hello(&[0x16, 3, 1, 0, 4, 1, 0x00, 0xff, 0xfd]), Err(HelloError::TooLarge));
        assert_eq!(parse_server_hello(&[0x16, 3, 3, 0, 4, 2, 0xff, 0xff, 0xff]), Err(HelloError::TooLarge));
        assert_eq!(parse_client_hello(&[0x16, 3, 1, 0, 4, 1, 0x00, 0xff, 0xfc]), Err(HelloError::Incomplete));
        // A big (padded) hello that fits: parsed.
        let mut exts = modern_client_exts("x.example");
        exts.push(ext(0x0015, &vec![0u8; 60_000]));
        let msg = client_hello_msg(0x0303, &[0x1301], &exts);
        let buf = records(CT_HANDSHAKE, &msg, 1 << 14);
        assert_eq!(ch(&buf).1, buf.len());
        // The same hello dribbled in 1-byte records needs too many record-layer bytes.
        let buf = records(CT_HANDSHAKE, &msg, 1);
        assert_eq!(parse_client_hello(&buf), Err(HelloError::TooLarge));
        // A normal hello in 1-byte records is fine.
        let buf = records(CT_HANDSHAKE, message_of(CH_CURL), 1);
        assert_eq!(ch(&buf).1, buf.len());
    }

    #[test]
    fn malformed_prefix_is_reported_before_the_rest_arrives() {
        let msg = message_of(CH_OPENSSL).to_vec();
        // Offsets: 4 header + 2 version + 32 random + 1 + 32 session id = 71: cipher_suites length.
        assert_eq!(msg[4 + 2 + 32], 32, "fixture has a 32-byte session id");
        let cs_len = 4 + 2 + 32 + 1 + 32;
        let mut odd = msg.clone();
        odd[cs_len + 1] |= 1;
        let buf = records(CT_HANDSHAKE, &odd, 1 << 14);
        let err = malformed(parse_client_hello(&buf[..5 + cs_len + 2]));
        assert!(err.contains("cipher_suites"), "{err}");
        // A session id longer than 32 is refused as soon as its length byte is seen.
        let mut long_sid = msg.clone();
        long_sid[4 + 2 + 32] = 33;
        let buf = records(CT_HANDSHAKE, &long_sid, 1 << 14);
        assert!(malformed(parse_client_hello(&buf[..5 + 4 + 2 + 32 + 1])).contains("session_id"));
        // An extensions block longer than the message is refused at its length field.
        let mut exts = modern_client_exts("x.example");
        exts.push(ext(0x0015, &[0; 20]));
        let mut msg = client_hello_msg(0x0303, &[0x1301], &exts);
        let ext_len_at = 4 + 2 + 32 + 33 + 4 + 2;
        msg[ext_len_at] = 0x7f;
        let buf = records(CT_HANDSHAKE, &msg, 1 << 14);
        assert!(malformed(parse_client_hello(&buf[..5 + ext_len_at + 2])).contains("extensions"));
        // An extension overrunning the extensions block.
        let mut msg = client_hello_msg(0x0303, &[0x1301], &[sni_ext("x.example")]);
        let sni_len_at = ext_len_at + 2 + 2;
        msg[sni_len_at] = 0x10;
        let buf = records(CT_HANDSHAKE, &msg, 1 << 14);
        assert!(malformed(parse_client_hello(&buf[..5 + sni_len_at + 2])).contains("overruns"));
    }

    #[test]
    fn structural_errors() {
        let base = modern_client_exts("x.example");
        let mut dup = base.clone();
        dup.push(sni_ext("y.example"));
        assert!(malformed(parse_client_hello(&client_hello_record(0x0303, &[0x1301], &dup))).contains("duplicate"));
        let mut psk_first = vec![ext(EXT_PRE_SHARED_KEY, &[0, 0])];
        psk_first.extend(base.clone());
        assert!(malformed(parse_client_hello(&client_hello_record(0x0303, &[0x1301], &psk_first))).contains("last"));
        let mut psk_last = base.clone();
        psk_last.push(ext(EXT_PRE_SHARED_KEY, &[0, 0]));
        assert!(parse_client_hello(&client_hello_record(0x0303, &[0x1301], &psk_last)).is_ok());
        assert!(malformed(parse_client_hello(&client_hello_record(0x0303, &[], &base))).contains("cipher_suites"));
        for (e, why) in [
            (ext(EXT_SUPPORTED_VERSIONS, &v8(&[3])), "supported_versions"),
            (ext(EXT_SUPPORTED_VERSIONS, &[4, 3, 4, 3, 3, 0]), "trailing"),
            (ext(EXT_ALPN, &v16(&[0])), "ALPN"),
            (ext(EXT_KEY_SHARE, &v16(&[0, 0x1d, 0, 0])), "key_exchange"),
            (ext(EXT_KEY_SHARE, &v16(&[0, 0x1d, 0, 5, 1])), "overruns"),
        ] {
            let msg = malformed(parse_client_hello(&client_hello_record(0x0303, &[0x1301], &[e])));
            assert!(msg.contains(why), "{msg:?} should mention {why:?}");
        }
        // An empty key_share list is legal (the client wants a HelloRetryRequest).
        let (info, _) = ch(&client_hello_record(0x0303, &[0x1301], &[ext(EXT_KEY_SHARE, &v16(&[]))]));
        assert!(info.key_share_groups.is_empty());
        // No compression methods / no null compression.
        let mut msg = client_hello_msg(0x0303, &[0x1301], &base);
        let comp_at = 4 + 2 + 32 + 33 + 2 + 2;
        msg[comp_at + 1] = 1;
        assert!(malformed(parse_client_hello(&records(CT_HANDSHAKE, &msg, 1 << 14))).contains("null"));
        // Trailing bytes after the extensions block inside the message.
        let mut msg = client_hello_msg(0x0303, &[0x1301], &base);
        msg.push(0);
        let n = msg.len() - 4;
        msg[1..4].copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        assert!(malformed(parse_client_hello(&records(CT_HANDSHAKE, &msg, 1 << 14))).contains("trailing"));
        // A hello with no extensions block at all (very old clients) parses.
        let mut body = 0x0301u16.to_be_bytes().to_vec();
        body.extend([0u8; 32]);
        body.push(0);
        body.extend(v16(&u16s(&[0x002f, 0x00ff])));
        body.extend(v8(&[0]));
        let (info, _) = ch(&records(CT_HANDSHAKE, &handshake(HS_CLIENT_HELLO, &body), 1 << 14));
        assert_eq!(info.cipher_suites, vec![0x002f]);
        assert_eq!(info.sni, None);
        // Empty handshake message.
        assert!(malformed(parse_client_hello(&[0x16, 3, 1, 0, 4, 1, 0, 0, 0])).contains("truncated"));
        // Duplicate extension in a ServerHello.
        let msg = server_hello_msg(0x0303, [1; 32], 0x1301, &[server_version_ext(0x0304), server_version_ext(0x0304)]);
        assert!(malformed(parse_server_hello(&records(CT_HANDSHAKE, &msg, 1 << 14))).contains("duplicate"));
    }

    #[test]
    fn suite_classification() {
        for s in [
            0x1301, 0x1302, 0x1303, 0x1304, 0x1305, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc024, 0xc027, 0xc028, 0xcca8,
            0xcca9, 0xccaa, 0xccac, 0xccad, 0x009e, 0x009f, 0x0033, 0x0039, 0x0067, 0x006b, 0xc0ac, 0xc0ad, 0xc0ae, 0xc0af, 0xc09e, 0xc09f, 0xc0a2, 0xc0a3,
            0xc05c, 0xc060, 0xc04c, 0xc072, 0xc076, 0xc086, 0xc08a, 0xc07c, 0xd001, 0xd005, 0xc035, 0x00aa, 0x00b2, 0x0016, 0x0045,
        ] {
            assert!(is_forward_secret_suite(s), "0x{s:04x} should be forward secret");
        }
        for s in [
            0x0000, 0x0001, 0x000a, 0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d, 0xc09c, 0xc0a0, // RSA kx
            0x00ff, 0x5600, 0x0a0a, // signals and GREASE
            0x008c, 0x00a8, 0x00ae, 0xccab, 0xc0a4, 0xd004, // PSK-only
            0x0092, 0x00ac, 0xccae, // RSA_PSK
            0xc006, 0xc010, 0xc039, 0xc03a, 0xc03b, 0x00b4, 0x00b5, 0x002d, // NULL encryption
            0x0018, 0x0034, 0x003a, 0x006c, 0x00a6, 0x00a7, 0xc015, 0xc018, 0xc019, 0xc084, 0xc05a, // anon
            0xc004, 0xc00e, 0xc02d, 0xc031, 0x0030, 0x00a0, // static (EC)DH
            0xc01e, 0xc0b0, 0xc0b4, 0x1306, 0x1300, // SRP, ECCPWD, integrity-only, unassigned
        ] {
            assert!(!is_forward_secret_suite(s), "0x{s:04x} should not be forward secret");
        }
        assert!(!is_forward_secret_tls12_suite(0x1301));
        assert!(is_forward_secret_tls12_suite(0xc02f));
    }

    #[test]
    fn names_and_codes() {
        assert_eq!(suite_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(suite_name(0x1305), "TLS_AES_128_CCM_8_SHA256");
        assert_eq!(suite_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(suite_name(0xcca9), "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
        assert_eq!(suite_name(0x009c), "TLS_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(suite_name(0x0035), "TLS_RSA_WITH_AES_256_CBC_SHA");
        assert_eq!(suite_name(0xabcd), "0xABCD");
        assert_eq!(suite_name(0x000b), "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA");
        assert_eq!((suite_name(0x5600), suite_name(0x00ff)), ("TLS_FALLBACK_SCSV".to_string(), "TLS_EMPTY_RENEGOTIATION_INFO_SCSV".to_string()));
        assert_eq!(version_name(0x0300), "SSL3.0");
        assert_eq!(version_name(0x0301), "TLS1.0");
        assert_eq!(version_name(0x0302), "TLS1.1");
        assert_eq!(version_name(0x0303), "TLS1.2");
        assert_eq!(version_name(0x0304), "TLS1.3");
        assert_eq!(version_name(0x7f1c), "unknown");
        let all = [
            HelloRefusal::SniMissing,
            HelloRefusal::SniMismatch { sni: "a.example".into(), host: "b.example".into() },
            HelloRefusal::ClientTlsTooOld { max_offered: 0x0301 },
            HelloRefusal::ClientNoForwardSecrecy,
            HelloRefusal::ServerTlsTooOld { version: 0x0302 },
            HelloRefusal::ServerNoForwardSecrecy { suite: 0x002f },
            HelloRefusal::ServerNoKeyShare,
        ];
        let codes: Vec<&str> = all.iter().map(HelloRefusal::code).collect();
        assert_eq!(
            codes,
            [
                "sni_missing",
                "sni_mismatch",
                "client_tls_too_old",
                "client_no_forward_secrecy",
                "server_tls_too_old",
                "server_no_forward_secrecy",
                "server_no_key_share"
            ]
        );
        for r in &all {
            let s = r.to_string();
            assert!(s.starts_with(|c: char| c.is_ascii_lowercase()), "{s}");
            assert!(!s.contains('\n') && !s.ends_with('.'), "{s}");
        }
        assert_eq!(HelloRefusal::ServerTlsTooOld { version: 0x7f1c }.to_string(), "the upstream chose an unknown protocol version 0x7F1C");
        assert_eq!(HelloRefusal::ClientTlsTooOld { max_offered: 0x0002 }.to_string(), "the client offers at most version 0x0002, older than TLS1.2");
        assert_eq!(HelloError::TooLarge.code(), "too_large");
        assert_eq!(HelloError::NotTls("plaintext HTTP".into()).to_string(), "not tls: plaintext HTTP");
    }

    // ---- robustness -----------------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = v.len();
            match rng.below(8) {
                0 | 1 => {
                    if len > 0 {
                        let i = rng.below(len);
                        v[i] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    if len > 0 {
                        let i = rng.below(len);
                        v[i] = rng.next() as u8;
                    }
                }
                3 => {
                    // Interesting values on a length-looking byte pair.
                    if len > 1 {
                        let i = rng.below(len - 1);
                        let val: u16 = [0, 1, 0xff, 0x100, 0x3fff, 0x4100, 0xffff][rng.below(7)];
                        v[i..i + 2].copy_from_slice(&val.to_be_bytes());
                    }
                }
                4 => v.truncate(rng.below(len + 1)),
                5 => {
                    let i = rng.below(len + 1);
                    let n = rng.below(8);
                    for _ in 0..n {
                        v.insert(i, rng.next() as u8);
                    }
                }
                6 => {
                    if len > 0 {
                        let i = rng.below(len);
                        let n = rng.below(len - i + 1).min(64);
                        v.drain(i..i + n);
                    }
                }
                _ => {
                    if len > 0 {
                        let i = rng.below(len);
                        let n = rng.below(len - i + 1).min(64);
                        let chunk: Vec<u8> = v[i..i + n].to_vec();
                        let at = rng.below(v.len() + 1);
                        v.splice(at..at, chunk);
                    }
                }
            }
        }
        v
    }

    /// No panic; Ok is consistent with re-parsing exactly the consumed bytes; a final answer
    /// (Ok or error other than Incomplete) on a prefix stays final on the whole input.
    fn check_invariants<T: PartialEq + std::fmt::Debug>(rng: &mut XorShift, buf: &[u8], parse: Parser<T>) {
        let full = parse(buf);
        if let Ok((ref info, consumed)) = full {
            assert!(consumed > 0 && consumed <= buf.len());
            assert_eq!(parse(&buf[..consumed]).as_ref().map(|r| &r.0), Ok(info));
        }
        let k = rng.below(buf.len() + 1);
        match parse(&buf[..k]) {
            Err(HelloError::Incomplete) => {}
            Ok(prefix_ok) => assert_eq!(full, Ok(prefix_ok), "prefix {k} of {buf:02x?}"),
            Err(_) => assert!(!matches!(full, Err(HelloError::Incomplete) | Ok(_)), "prefix {k} of {buf:02x?} failed but the whole gave {full:?}"),
        }
    }

    #[test]
    fn fuzz_mutations_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut outcomes = [0usize; 5];
        for (_, fixture) in CLIENT_FIXTURES.iter().chain(SERVER_FIXTURES) {
            for _ in 0..3000 {
                let m = mutate(&mut rng, fixture);
                for result in [parse_client_hello(&m).map(|_| ()), parse_server_hello(&m).map(|_| ())] {
                    let slot = match result {
                        Ok(()) => 0,
                        Err(HelloError::Incomplete) => 1,
                        Err(HelloError::NotTls(_)) => 2,
                        Err(HelloError::Malformed(_)) => 3,
                        Err(HelloError::TooLarge) => 4,
                    };
                    outcomes[slot] += 1;
                }
                check_invariants(&mut rng, &m, parse_client_hello);
                check_invariants(&mut rng, &m, parse_server_hello);
                if let Ok((info, _)) = parse_client_hello(&m) {
                    let _ = check_client_hello(&info, SNI);
                }
                if let Ok((info, _)) = parse_server_hello(&m) {
                    let _ = check_server_hello(&info);
                }
            }
        }
        // The mutations reach every kind of outcome, not just the first byte check.
        assert!(outcomes.iter().all(|&n| n > 0), "outcomes {outcomes:?}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for i in 0..4000 {
            let len = rng.below(600);
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them start with a plausible record header.
            if i % 2 == 0 && v.len() >= 6 {
                v[0] = 22;
                v[1] = 3;
                v[2] = 1;
                v[5] = 1 + (i % 4 == 0) as u8;
            }
            check_invariants(&mut rng, &v, parse_client_hello);
            check_invariants(&mut rng, &v, parse_server_hello);
        }
    }
}

//! Reading the first handshake message off the record layer, and the ClientHello and ServerHello in it.

use super::*;

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

/// RFC 6066 server_name: one host_name and nothing else; lowercased; only DNS name characters.
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
        // host_name (0) is the only name type ever assigned. RFC 6066 lets a reader skip others by
        // their length, but rustls stops reading the list at one (so sees no name behind it), and
        // an upstream that reads the list as rustls does would be answering a hello with another
        // name than the one vpcgate checked: refused (fuzz/oracle/hello.rs found it).
        if name_type != 0 {
            return bad("a server_name entry of a type other than host_name");
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

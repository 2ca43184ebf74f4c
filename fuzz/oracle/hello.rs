//! The oracles of the passthrough hello readers (`policy::tls`): ClientHellos and ServerHellos
//! built from the parts real ones have, cut into records at the fuzzer's choice, then raw edits.
//!
//! For every input:
//! - nothing panics, and every error and refusal carries its phrase and code;
//! - the readers do not depend on how the bytes were cut: a hello that parses whole is
//!   `Incomplete` (never an error) at every shorter prefix, and the same message cut into other
//!   records reads the same;
//! - a ClientHello vpcgate accepts (it parses and `check_client_hello` passes) is one rustls, the
//!   TLS stack of inspect mode, reads too, with the same server name and ALPN list: a hello whose
//!   meaning two readers disagree on is how checks are walked around. (The extensions vpcgate
//!   passes on unread are dropped before rustls reads it: see `READ_BY_VPCGATE`.)
#![allow(dead_code)]

use arbitrary::Arbitrary;
use vpcgate::policy::tls::{check_client_hello, check_server_hello, parse_client_hello, parse_server_hello, HelloError};

/// The names a hello may carry; the first is the CONNECT host of every case.
pub const HOSTS: [&str; 6] =
    ["bucket.s3.us-east-1.amazonaws.com", "BUCKET.S3.US-EAST-1.AMAZONAWS.COM", "bucket.s3.us-east-1.amazonaws.com.", "evil.example", "127.0.0.1", ""];

/// Cipher suites worth offering: TLS 1.3, ECDHE (forward secret), static RSA (not), GREASE, SCSVs.
const SUITES: [u16; 10] = [0x1301, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8, 0x009c, 0x002f, 0x0a0a, 0x00ff];
const VERSIONS: [u16; 6] = [0x0304, 0x0303, 0x0302, 0x0301, 0x0300, 0x7a7a];
const GROUPS: [u16; 5] = [0x001d, 0x0017, 0x11ec, 0x0a0a, 0x0100];

#[derive(Debug, Arbitrary)]
pub enum Pick {
    /// An index into the palette.
    Known(u8),
    Raw(u16),
}

impl Pick {
    fn of(&self, palette: &[u16]) -> u16 {
        match self {
            Pick::Known(i) => palette[*i as usize % palette.len()],
            Pick::Raw(v) => *v,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Name {
    Host(u8),
    /// A host of the palette with a byte replaced (NUL, space, `.`, a high byte, …).
    Edited {
        host: u8,
        at: u8,
        byte: u8,
    },
    Raw(Vec<u8>),
}

impl Name {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Name::Host(i) => HOSTS[*i as usize % HOSTS.len()].as_bytes().to_vec(),
            Name::Edited { host, at, byte } => {
                let mut b = HOSTS[*host as usize % HOSTS.len()].as_bytes().to_vec();
                if !b.is_empty() {
                    let i = *at as usize % b.len();
                    b[i] = *byte;
                }
                b
            }
            Name::Raw(r) => r.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Ext {
    /// server_name with these entries (name_type 0 unless `other_type`).
    Sni {
        names: Vec<Name>,
        other_type: Option<u8>,
    },
    Alpn(Vec<Vec<u8>>),
    SupportedVersions(Vec<Pick>),
    KeyShare(Vec<(Pick, u8)>),
    EarlyData,
    /// pre_shared_key with raw contents (it must come last).
    Psk(Vec<u8>),
    Raw {
        kind: u16,
        data: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
pub struct ClientHello {
    pub legacy_version: Pick,
    pub session_id: Vec<u8>,
    pub suites: Vec<Pick>,
    /// Extra compression methods beside null (0), or a list without it.
    pub compression: Option<Vec<u8>>,
    /// `None`: no extensions block at all.
    pub extensions: Option<Vec<Ext>>,
    pub cut: Cut,
}

#[derive(Debug, Arbitrary)]
pub struct ServerHello {
    pub version: Pick,
    pub hello_retry: bool,
    pub session_id: Vec<u8>,
    pub suite: Pick,
    pub compression: u8,
    /// supported_versions (server form: one version).
    pub selected: Option<Pick>,
    pub key_share: Option<(Pick, u8)>,
    pub extra: Vec<(u16, Vec<u8>)>,
    /// A dummy change_cipher_spec record before it (as after a HelloRetryRequest).
    pub leading_ccs: bool,
    pub cut: Cut,
}

/// How the handshake message is put into records, and what is done to the bytes after.
#[derive(Debug, Arbitrary)]
pub struct Cut {
    /// Fragment sizes in turn (0 counts as 1); the last one repeats until the message is out.
    pub records: Vec<u16>,
    /// Another cut of the same message, which must read the same.
    pub other: Vec<u16>,
    /// The record-layer version bytes (0x0301 unless set).
    pub record_version: Option<u16>,
    /// Raw edits applied to the rendered bytes: (position, byte).
    pub edits: Vec<(u16, u8)>,
    /// Bytes after the hello (the next flight, garbage).
    pub trailer: Vec<u8>,
}

fn u16be(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn vec8(out: &mut Vec<u8>, data: &[u8]) {
    out.push(data.len().min(255) as u8);
    out.extend_from_slice(&data[..data.len().min(255)]);
}

fn vec16(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len().min(0xffff);
    u16be(out, n as u16);
    out.extend_from_slice(&data[..n]);
}

fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    u16be(out, kind);
    vec16(out, data);
}

impl ClientHello {
    /// A TLS 1.3 hello for HOSTS[0] as an SDK sends it (x25519 share, TLS 1.3 and ECDHE suites,
    /// `http/1.1`), in one record: the seed variations start from.
    pub fn typical() -> ClientHello {
        ClientHello {
            legacy_version: Pick::Known(1),
            session_id: vec![7; 32],
            suites: vec![Pick::Known(0), Pick::Known(1), Pick::Known(3), Pick::Known(9)],
            compression: None,
            extensions: Some(vec![
                Ext::Sni { names: vec![Name::Host(0)], other_type: None },
                Ext::SupportedVersions(vec![Pick::Known(0), Pick::Known(1)]),
                Ext::KeyShare(vec![(Pick::Known(0), 32)]),
                Ext::Alpn(vec![b"http/1.1".to_vec()]),
                Ext::Raw { kind: 0x000a, data: vec![0, 4, 0, 0x1d, 0, 0x17] },
                Ext::Raw { kind: 0x000d, data: vec![0, 4, 4, 3, 8, 4] },
            ]),
            cut: Cut { records: vec![], other: vec![], record_version: None, edits: vec![], trailer: vec![] },
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        u16be(&mut b, self.legacy_version.of(&VERSIONS));
        b.extend_from_slice(&[0x11; 32]);
        vec8(&mut b, &self.session_id[..self.session_id.len().min(40)]);
        let mut suites = Vec::new();
        for s in &self.suites {
            u16be(&mut suites, s.of(&SUITES));
        }
        vec16(&mut b, &suites);
        match &self.compression {
            None => vec8(&mut b, &[0]),
            Some(c) => vec8(&mut b, c),
        }
        if let Some(exts) = &self.extensions {
            let mut e = Vec::new();
            for x in exts {
                match x {
                    Ext::Sni { names, other_type } => {
                        let mut list = Vec::new();
                        for n in names {
                            list.push(other_type.unwrap_or(0));
                            vec16(&mut list, &n.bytes());
                        }
                        let mut d = Vec::new();
                        vec16(&mut d, &list);
                        ext(&mut e, 0x0000, &d);
                    }
                    Ext::Alpn(protos) => {
                        let mut list = Vec::new();
                        for p in protos {
                            vec8(&mut list, p);
                        }
                        let mut d = Vec::new();
                        vec16(&mut d, &list);
                        ext(&mut e, 0x0010, &d);
                    }
                    Ext::SupportedVersions(vs) => {
                        let mut list = Vec::new();
                        for v in vs {
                            u16be(&mut list, v.of(&VERSIONS));
                        }
                        let mut d = Vec::new();
                        vec8(&mut d, &list);
                        ext(&mut e, 0x002b, &d);
                    }
                    Ext::KeyShare(shares) => {
                        let mut list = Vec::new();
                        for (g, len) in shares {
                            u16be(&mut list, g.of(&GROUPS));
                            vec16(&mut list, &vec![0x42; *len as usize]);
                        }
                        let mut d = Vec::new();
                        vec16(&mut d, &list);
                        ext(&mut e, 0x0033, &d);
                    }
                    Ext::EarlyData => ext(&mut e, 0x002a, &[]),
                    Ext::Psk(d) => ext(&mut e, 0x0029, d),
                    Ext::Raw { kind, data } => ext(&mut e, *kind, data),
                }
            }
            vec16(&mut b, &e);
        }
        b
    }
}

impl ServerHello {
    pub fn body(&self) -> Vec<u8> {
        const HRR: [u8; 32] = [
            0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
            0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
        ];
        let mut b = Vec::new();
        u16be(&mut b, self.version.of(&VERSIONS));
        b.extend_from_slice(if self.hello_retry { &HRR } else { &[0x22; 32] });
        vec8(&mut b, &self.session_id[..self.session_id.len().min(40)]);
        u16be(&mut b, self.suite.of(&SUITES));
        b.push(self.compression);
        let mut e = Vec::new();
        if let Some(v) = &self.selected {
            ext(&mut e, 0x002b, &v.of(&VERSIONS).to_be_bytes());
        }
        if let Some((g, len)) = &self.key_share {
            let mut d = Vec::new();
            u16be(&mut d, g.of(&GROUPS));
            vec16(&mut d, &vec![0x42; *len as usize]);
            ext(&mut e, 0x0033, &d);
        }
        for (kind, data) in &self.extra {
            ext(&mut e, *kind, data);
        }
        if !e.is_empty() {
            vec16(&mut b, &e);
        }
        b
    }
}

/// A handshake message (type, 3-byte length, body).
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// The message cut into handshake records of the given sizes.
pub fn records(msg: &[u8], sizes: &[u16], version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < msg.len() {
        let size = sizes.get(i).or(sizes.last()).map(|s| usize::from(*s).max(1)).unwrap_or(msg.len());
        let end = (at + size.min(1 << 14)).min(msg.len());
        out.push(22);
        u16be(&mut out, version);
        u16be(&mut out, (end - at) as u16);
        out.extend_from_slice(&msg[at..end]);
        at = end;
        i += 1;
    }
    out
}

fn edited(mut bytes: Vec<u8>, edits: &[(u16, u8)]) -> Vec<u8> {
    for (at, b) in edits {
        if !bytes.is_empty() {
            let i = usize::from(*at) % bytes.len();
            bytes[i] = *b;
        }
    }
    bytes
}

fn phrase_of(e: &HelloError) -> bool {
    match e {
        HelloError::NotTls(s) | HelloError::Malformed(s) => !s.trim().is_empty(),
        HelloError::Incomplete | HelloError::TooLarge => true,
    }
}

/// What a reading comes to, for comparing two cuts: the facts, or the kind of error.
fn outcome<T: PartialEq + std::fmt::Debug>(r: &Result<(T, usize), HelloError>) -> String {
    match r {
        Ok((info, _)) => format!("{info:?}"),
        Err(HelloError::Incomplete) => "incomplete".into(),
        Err(HelloError::TooLarge) => "too large".into(),
        Err(HelloError::NotTls(_)) => "not tls".into(),
        Err(HelloError::Malformed(_)) => "malformed".into(),
    }
}

/// Every prefix shorter than what a whole reading consumed is `Incomplete`: the reader never
/// refuses a hello because of where TCP cut it. Checks every prefix of short inputs and a spread
/// of cut points of long ones.
/// A hello reader: the facts and the bytes used, or why not.
type Reader<T> = fn(&[u8]) -> Result<(T, usize), HelloError>;

fn prefixes_are_incomplete<T: std::fmt::Debug>(bytes: &[u8], consumed: usize, parse: Reader<T>) {
    let step = (consumed / 64).max(1);
    let mut cut = 0;
    while cut < consumed {
        match parse(&bytes[..cut]) {
            Err(HelloError::Incomplete) => {}
            other => panic!("a prefix of {cut} of {consumed} bytes read as {other:?}, not Incomplete"),
        }
        cut += if consumed < 600 { 1 } else { step };
    }
}

/// Checks one structured ClientHello; true when vpcgate accepted it (so rustls read it too).
pub fn check_client(input: &ClientHello) -> bool {
    let msg = message(1, &input.body());
    let version = input.cut.record_version.unwrap_or(0x0301);
    let mut bytes = records(&msg, &input.cut.records, version);
    bytes.extend_from_slice(&input.cut.trailer);
    let clean = bytes.clone();
    let bytes = edited(bytes, &input.cut.edits);
    let accepted = check_client_bytes(&bytes, HOSTS[0]);
    if input.cut.edits.is_empty() {
        // Another cut of the same message reads the same (unless so many tiny records make it too large).
        let mut other = records(&msg, &input.cut.other, version);
        other.extend_from_slice(&input.cut.trailer);
        let (a, b) = (parse_client_hello(&clean), parse_client_hello(&other));
        let too_large = |r: &Result<_, HelloError>| matches!(r, Err(HelloError::TooLarge));
        if !too_large(&a) && !too_large(&b) {
            assert_eq!(outcome(&a), outcome(&b), "two cuts of one ClientHello read differently");
        }
    }
    accepted
}

/// Checks one ClientHello as bytes against the CONNECT host; true when vpcgate accepted it.
pub fn check_client_bytes(bytes: &[u8], host: &str) -> bool {
    let r = parse_client_hello(bytes);
    match &r {
        Err(e) => {
            assert!(phrase_of(e), "an error without its phrase: {e:?}");
            false
        }
        Ok((info, consumed)) => {
            assert!(*consumed <= bytes.len() && *consumed >= 5, "consumed {consumed} of {}", bytes.len());
            assert_eq!(parse_client_hello(&bytes[..*consumed]).map(|x| x.0).as_ref(), Ok(info), "the hello reads the same without what follows it");
            prefixes_are_incomplete(bytes, *consumed, parse_client_hello);
            match check_client_hello(info, host) {
                Err(refusal) => {
                    assert!(!refusal.code().is_empty() && !refusal.to_string().trim().is_empty(), "a refusal without its reason: {refusal:?}");
                    false
                }
                Ok(()) => {
                    rustls_reads_the_same(&bytes[..*consumed], info);
                    true
                }
            }
        }
    }
}

/// The extensions whose meaning vpcgate reads: server_name, ALPN, supported_versions, key_share.
/// The others (supported_groups, signature_algorithms, pre_shared_key, …) it passes on unread, and
/// a malformed one is the upstream's to refuse; rustls parses each strictly, so the comparison
/// drops them first (and adds the two rustls requires, signature_algorithms and
/// supported_groups, well-formed).
const READ_BY_VPCGATE: [u16; 4] = [0x0000, 0x0010, 0x002b, 0x0033];

/// The ClientHello in `records` with only the extensions vpcgate reads, in one message, split
/// into records again: an independent small reader of its own (records, then the fixed fields).
fn reduced(records_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    let mut at = 0;
    while at + 5 <= records_bytes.len() {
        let len = usize::from(u16::from_be_bytes([records_bytes[at + 3], records_bytes[at + 4]]));
        if records_bytes[at] == 22 {
            msg.extend_from_slice(&records_bytes[at + 5..(at + 5 + len).min(records_bytes.len())]);
        }
        at += 5 + len;
    }
    let total = 4 + ((usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]));
    let body = &msg[4..total];
    let mut p = 2 + 32;
    p += 1 + usize::from(body[p]);
    p += 2 + usize::from(u16::from_be_bytes([body[p], body[p + 1]]));
    p += 1 + usize::from(body[p]);
    let mut out = body[..p].to_vec();
    if p < body.len() {
        let ext_len = usize::from(u16::from_be_bytes([body[p], body[p + 1]]));
        let exts = &body[p + 2..p + 2 + ext_len];
        let mut kept = Vec::new();
        let mut q = 0;
        while q < exts.len() {
            let kind = u16::from_be_bytes([exts[q], exts[q + 1]]);
            let len = usize::from(u16::from_be_bytes([exts[q + 2], exts[q + 3]]));
            if READ_BY_VPCGATE.contains(&kind) {
                kept.extend_from_slice(&exts[q..q + 4 + len]);
            }
            q += 4 + len;
        }
        // What rustls requires of every hello, in a fixed well-formed spelling.
        ext(&mut kept, 0x000d, &[0, 4, 4, 3, 8, 4]);
        ext(&mut kept, 0x000a, &[0, 4, 0, 0x1d, 0, 0x17]);
        vec16(&mut out, &kept);
    }
    records(&message(1, &out), &[16384], 0x0301)
}

/// rustls's reading of a ClientHello vpcgate accepted (reduced to the extensions vpcgate reads):
/// it must parse, with the same server name (vpcgate lowercases; rustls keeps what was sent) and
/// the same ALPN list.
fn rustls_reads_the_same(bytes: &[u8], info: &vpcgate::policy::tls::ClientHelloInfo) {
    let bytes = reduced(bytes);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd: &[u8] = &bytes;
    let accepted = loop {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => panic!("rustls wanted more than the ClientHello vpcgate accepted ({info:?})"),
            Ok(_) => {}
            Err(e) => panic!("rustls could not take the bytes of a ClientHello vpcgate accepted: {e} ({info:?})"),
        }
        match acceptor.accept() {
            Ok(Some(a)) => break a,
            Ok(None) => continue,
            Err((e, _)) => panic!("rustls refuses a ClientHello vpcgate accepted: {e} ({info:?})"),
        }
    };
    let hello = accepted.client_hello();
    let theirs = hello.server_name().map(|s| s.to_ascii_lowercase());
    let ours = info.sni.as_deref().map(|s| s.trim_end_matches('.').to_string());
    assert_eq!(theirs.as_deref().map(|s| s.trim_end_matches('.')), ours.as_deref(), "the server name differs between vpcgate and rustls");
    // vpcgate logs ALPN names with anything but visible ASCII (and `\\`) as \xNN.
    let escape =
        |p: &[u8]| p.iter().map(|b| if (0x21..0x7f).contains(b) && *b != b'\\' { (*b as char).to_string() } else { format!("\\x{b:02x}") }).collect::<String>();
    let alpn: Vec<String> = hello.alpn().map(|a| a.map(escape).collect()).unwrap_or_default();
    assert_eq!(alpn, info.alpn, "the ALPN list differs between vpcgate and rustls");
}

pub fn check_server(input: &ServerHello) {
    let msg = message(2, &input.body());
    let version = input.cut.record_version.unwrap_or(0x0303);
    let mut bytes = if input.leading_ccs { vec![20, 3, 3, 0, 1, 1] } else { Vec::new() };
    bytes.extend(records(&msg, &input.cut.records, version));
    bytes.extend_from_slice(&input.cut.trailer);
    let clean = bytes.clone();
    let bytes = edited(bytes, &input.cut.edits);
    check_server_bytes(&bytes);
    if input.cut.edits.is_empty() {
        let mut other = if input.leading_ccs { vec![20, 3, 3, 0, 1, 1] } else { Vec::new() };
        other.extend(records(&msg, &input.cut.other, version));
        other.extend_from_slice(&input.cut.trailer);
        let (a, b) = (parse_server_hello(&clean), parse_server_hello(&other));
        let too_large = |r: &Result<_, HelloError>| matches!(r, Err(HelloError::TooLarge));
        if !too_large(&a) && !too_large(&b) {
            assert_eq!(outcome(&a), outcome(&b), "two cuts of one ServerHello read differently");
        }
    }
}

pub fn check_server_bytes(bytes: &[u8]) {
    let r = parse_server_hello(bytes);
    match &r {
        Err(e) => assert!(phrase_of(e), "an error without its phrase: {e:?}"),
        Ok((info, consumed)) => {
            assert!(*consumed <= bytes.len() && *consumed >= 5, "consumed {consumed} of {}", bytes.len());
            prefixes_are_incomplete(bytes, *consumed, parse_server_hello);
            if let Err(refusal) = check_server_hello(info) {
                assert!(!refusal.code().is_empty() && !refusal.to_string().trim().is_empty(), "a refusal without its reason: {refusal:?}");
            }
        }
    }
}

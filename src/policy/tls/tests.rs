//! The hello parsers and checks, from real captured hellos and mutations of them.
use super::*;

const SNI: &str = "s3.us-east-1.amazonaws.com";

const CH_OPENSSL: &[u8] = include_bytes!("../testdata/client_hello_openssl.bin");
const CH_CURL: &[u8] = include_bytes!("../testdata/client_hello_curl.bin");
const CH_RUSTLS: &[u8] = include_bytes!("../testdata/client_hello_rustls.bin");
const CH_TLS11: &[u8] = include_bytes!("../testdata/client_hello_openssl_tls11.bin");
const CH_RSA_ONLY: &[u8] = include_bytes!("../testdata/client_hello_rsa_only.bin");
const SH_OPENSSL_TLS13: &[u8] = include_bytes!("../testdata/server_hello_openssl_tls13.bin");
const SH_OPENSSL_ECDHE12: &[u8] = include_bytes!("../testdata/server_hello_openssl_ecdhe_tls12.bin");
const SH_OPENSSL_RSA_KX: &[u8] = include_bytes!("../testdata/server_hello_openssl_rsa_kx.bin");
const SH_RUSTLS_TLS13: &[u8] = include_bytes!("../testdata/server_hello_rustls_tls13.bin");
const SH_OPENSSL_HRR: &[u8] = include_bytes!("../testdata/server_hello_openssl_hrr.bin");

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
    // A name of another type, before or after the host_name, is refused: rustls stops reading the
    // list at one, so an upstream reading as rustls does would see another name than vpcgate
    // checked (fuzz/corpus/client_hello/found-sni-entry-of-another-type).
    for list in [[&[7u8][..], &v16(b"whatever"), &[0], &v16(b"ok.example")].concat(), [&[0u8][..], &v16(b"ok.example"), &[1], &v16(b"")].concat()] {
        let buf = client_hello_record(0x0303, &[0x1301], &[ext(EXT_SERVER_NAME, &v16(&list))]);
        let msg = malformed(parse_client_hello(&buf));
        assert!(msg.contains("type other than host_name"), "{msg:?}");
    }
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
    let info = parse(server_hello_msg(0x0303, random, 0x1301, &[server_version_ext(0x0304), ext(EXT_PRE_SHARED_KEY, &[0, 0]), server_key_share_ext(0x001d)]));
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
        0x1301, 0x1302, 0x1303, 0x1304, 0x1305, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc024, 0xc027, 0xc028, 0xcca8, 0xcca9,
        0xccaa, 0xccac, 0xccad, 0x009e, 0x009f, 0x0033, 0x0039, 0x0067, 0x006b, 0xc0ac, 0xc0ad, 0xc0ae, 0xc0af, 0xc09e, 0xc09f, 0xc0a2, 0xc0a3, 0xc05c, 0xc060,
        0xc04c, 0xc072, 0xc076, 0xc086, 0xc08a, 0xc07c, 0xd001, 0xd005, 0xc035, 0x00aa, 0x00b2, 0x0016, 0x0045,
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

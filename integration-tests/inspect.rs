//! Inspect mode through real sockets: vpcgate terminates TLS with its own CA, checks every request
//! in the tunnel and streams it to TLS upstreams on 127.N.x.y:443 that it verifies against a test CA.
//! Clients: curl (and openssl). Test blocks 127.40-127.59.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::dns::FakeDns;
use support::harness::*;
use support::upstream::{NonFsUpstream, TestCa, TlsUpstream};

const HOST: &str = "my-bucket.s3.us-east-1.amazonaws.com";

async fn inspect_curl(p: &Proxy, args: &[&str]) -> CurlOut {
    let ca = p.ca_path();
    let url = p.url();
    let mut all = vec!["--proxy", url.as_str(), "--cacert", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    curl(&all).await
}

fn wait_request(p: &Proxy, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    eventually(10, || format!("no matching request event in:\n{}", p.log_text()), || p.events("request").into_iter().find(|v| pred(v)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspected_requests_are_checked_forwarded_and_explained() {
    let n = 40;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");

    // The CA was created on first start, its key private.
    let key = p.dir.path().join("certs/ca-key.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);

    // Two requests on one client connection: both checked, both forwarded.
    let out = inspect_curl(&p, &[&format!("https://{HOST}/a"), &format!("https://{HOST}/b?list-type=2")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.body.contains("upstream inside saw GET /a host=") && out.body.contains("upstream inside saw GET /b?list-type=2"), "{}", out.body);
    assert!(out.body.contains(&format!("sni={HOST}")), "upstream SNI is the requested host: {}", out.body);
    // The leaf vpcgate showed curl was issued by vpcgate's CA for the host.
    assert!(out.stderr.contains(&format!("subject: CN={HOST}")), "{}", out.stderr);

    let r = wait_request(&p, |v| v["path"] == "/b");
    assert_eq!((r["decision"].as_str(), r["signature"].as_str(), r["status"].as_u64()), (Some("allow"), Some("anonymous"), Some(200)));
    assert_eq!(r["upstream"], "reused", "second request reuses the upstream connection: {r}");
    assert!(r["bytes_down"].as_u64().unwrap() > 20);
    let c = p.wait_event("close", HOST);
    assert_eq!((c["mode"].as_str(), c["requests"].as_u64()), (Some("inspect"), Some(2)), "{c}");
    assert_eq!(c["tls_version"], "TLS1.3");

    // A second client connection reuses the pooled upstream connection: one upstream TLS handshake in all.
    let out = inspect_curl(&p, &[&format!("https://{HOST}/c")]).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    let r = wait_request(&p, |v| v["path"] == "/c");
    assert_eq!(r["upstream"], "reused", "{r}");
    assert_eq!(up.handshakes(), 1);
    // The second CONNECT found that verified connection idle in the pool: no new TCP dial either.
    let connects = p.events("connect");
    assert_eq!(connects.last().unwrap()["upstream"], "pooled", "{connects:?}");
    assert_eq!(up.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_in_every_form_and_host_mismatch_are_refused_as_s3_errors() {
    let n = 41;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "hello form").unwrap();
    let form_file = format!("file=@{}", file.display());

    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["-H".into(), "Authorization: AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=".into(), format!("https://{HOST}/k")],
            "sigv2",
            "signature_version = s3v4",
        ),
        (
            vec![format!("https://{HOST}/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1893456000&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D")],
            "sigv2",
            "presigned URL",
        ),
        (
            vec![
                "-F".into(),
                "key=uploads/f.txt".into(),
                "-F".into(),
                "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE".into(),
                "-F".into(),
                "policy=eyJleHBpcmF0aW9uIjoiMjAzMC0wMS0wMVQwMDowMDowMFoifQ==".into(),
                "-F".into(),
                "signature=0RavWzkygo6QX9caELEqKi9kDbU=".into(),
                "-F".into(),
                form_file.clone(),
                format!("https://{HOST}/"),
            ],
            "sigv2",
            "POST form",
        ),
        (vec!["-H".into(), "Host: other-bucket.s3.us-east-1.amazonaws.com".into(), format!("https://{HOST}/k")], "host_mismatch", "domain fronting"),
        (vec!["-H".into(), "Authorization: AWS3-HTTPS AWSAccessKeyId=A,Signature=x".into(), format!("https://{HOST}/k")], "unknown_signature", "SigV4"),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = inspect_curl(&p, &args).await;
        assert_eq!(out.status, 403, "{args:?}: {}", out.stderr);
        assert!(out.body.contains("<Code>AccessDenied</Code>"), "S3-style XML: {}", out.body);
        assert!(out.body.contains(needle), "{args:?}: {}", out.body);
        assert!(out.stderr.contains(&format!("X-Vpcgate-Reason: {code}")) || out.stderr.contains(&format!("x-vpcgate-reason: {code}")), "{}", out.stderr);
    }
    // A SigV4 POST form passes.
    let out = inspect_curl(
        &p,
        &["-F", "key=k", "-F", "x-amz-algorithm=AWS4-HMAC-SHA256", "-F", "x-amz-signature=abcd", "-F", &form_file, &format!("https://{HOST}/")],
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert!(out.body.contains("saw POST /"), "{}", out.body);
    // None of the refused requests reached the upstream: only the SigV4 form did.
    let logged: Vec<serde_json::Value> = p.events("request");
    let denied = logged.iter().filter(|v| v["decision"] == "deny").count();
    assert_eq!(denied, 5, "{logged:?}");
    let sigs: Vec<&str> = logged.iter().filter_map(|v| v["signature"].as_str()).collect();
    for s in ["sigv2-header", "sigv2-query", "sigv2-post-form", "sigv4-post-form"] {
        assert!(sigs.contains(&s), "{sigs:?}");
    }
    assert_eq!(up.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_and_forms_that_could_be_read_two_ways_are_refused() {
    // Requests crafted so that a lenient reader and the endpoint could disagree about the
    // signature or the Host: each is refused before any upstream connection is made.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 49;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let roots = client_roots(&p, true, &w);
    let v2_fields = "--XyZ\r\nContent-Disposition: form-data; name=\"AWSAccessKeyId\"\r\n\r\nAKIAIOSFODNN7EXAMPLE\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\ne30=\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\n0RavWzkygo6QX9caELEqKi9kDbU=\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\nhello\r\n--XyZ--\r\n";
    let post = |ct: &[u8], body: &[u8]| {
        let mut r = format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nContent-Type: ", body.len()).into_bytes();
        r.extend_from_slice(ct);
        r.extend_from_slice(b"\r\n\r\n");
        r.extend_from_slice(body);
        r
    };
    let hidden = format!("--XyZ\r\nContent-Disposition: form-data; name=\"x-ignore-a\"\r\n\r\nz--XyZContent-Disposition:name=file\r\n\r\n\r\n{v2_fields}");
    let get = |extra: &[u8]| {
        let mut r = b"GET /k HTTP/1.1\r\n".to_vec();
        r.extend_from_slice(extra);
        r.extend_from_slice(b"\r\n");
        r
    };
    let host_line = format!("Host: {HOST}\r\n");
    let v4 = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab\r\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a fake file part inside a field value", post(b"multipart/form-data; boundary=XyZ", hidden.as_bytes()), "malformed_form"),
        ("bare LF line endings in the form", post(b"multipart/form-data; boundary=XyZ", v2_fields.replace("\r\n", "\n").as_bytes()), "malformed_form"),
        ("a content-type parameter without a value", post(b"multipart/form-data; x; boundary=XyZ", v2_fields.as_bytes()), "malformed_form"),
        ("a content-type with a byte over 0x7f", post(b"multipart/form-data; boundary=XyZ; x=\xe9", v2_fields.as_bytes()), "unreadable_header"),
        ("a multipart type other than form-data", post(b"multipart/mixed; boundary=XyZ", v2_fields.as_bytes()), "malformed_form"),
        ("two content-types", post(b"text/plain\r\nContent-Type: multipart/form-data; boundary=XyZ", v2_fields.as_bytes()), "duplicate_header"),
        (
            "SigV4 then SigV2 authorization",
            get(format!("{host_line}{v4}Authorization: AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=\r\n").as_bytes()),
            "duplicate_header",
        ),
        (
            "SigV2 authorization with a byte over 0x7f",
            get(&[host_line.as_bytes(), b"Authorization: AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKD\x80\r\n"].concat()),
            "unreadable_header",
        ),
        ("two Host headers", get(format!("{host_line}Host: other-bucket.s3.us-east-1.amazonaws.com\r\n").as_bytes()), "duplicate_header"),
        ("a Host port over 65535", get(format!("Host: {HOST}:66979\r\n").as_bytes()), "host_mismatch"),
    ];
    for (what, request, code) in &cases {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(request).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
        assert!(text.starts_with("HTTP/1.1 403"), "{what}: {text}");
        assert!(text.contains("<Code>AccessDenied</Code>"), "{what}: {text}");
        assert!(text.to_ascii_lowercase().contains(&format!("x-vpcgate-reason: {code}")), "{what}: {text}");
    }
    // A form whose body ends before its Content-Length: the client hears why.
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    let mut cut = format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\r\n").into_bytes();
    cut.extend_from_slice(&v2_fields.as_bytes()[..40]);
    tls.write_all(&cut).await.unwrap();
    tls.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await.expect("an answer");
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 403") && text.to_ascii_lowercase().contains("x-vpcgate-reason: client_body_error"), "{text}");
    assert!(text.contains("could not read the request body from the client"), "{text}");
    let r = wait_request(&p, |v| v["reason"] == "client_body_error");
    assert_eq!(r["status"].as_u64(), Some(403), "{r}");
    // Nothing was forwarded: no request got as far as an upstream connection.
    assert_eq!(up.connections(), 0);
    // The same POST form written the usual way, with SigV4 fields, passes.
    let v4_form = v2_fields.replace("AWSAccessKeyId", "x-amz-credential").replace("\"signature\"", "\"x-amz-signature\"");
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(&post(b"multipart/form-data; boundary=XyZ", v4_form.as_bytes())).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.expect("an answer").unwrap();
    assert!(String::from_utf8_lossy(&buf[..got]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..got]));
    // API calls that are POSTs but not forms pass: CreateMultipartUpload of an object whose own
    // type is multipart/related (the SDK sends it as the request's Content-Type), and an empty body.
    for (path, ct) in [("/big.mhtml?uploads", "multipart/related; boundary=x"), ("/", "multipart/form-data; boundary=XyZ")] {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(format!("POST {path} HTTP/1.1\r\nHost: {HOST}\r\n{v4}Content-Type: {ct}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("sni=")).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains(&format!("saw POST {path}")), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_input_review_s_form_and_framing_bypasses_are_refused() {
    // The shapes a hostile-input review got past inspect mode (a SigV2 POST form stored by an
    // endpoint whose form reader differs from vpcgate's; framing hyper changes before the check),
    // each sent over real TLS through vpcgate: each is refused before anything reaches the upstream.
    use tokio::io::AsyncWriteExt;
    let n = 52;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let roots = client_roots(&p, true, &w);
    let part = |b: &str, name: &str, value: &str| format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
    let file =
        |b: &str, name: &str, content: &str| format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f.txt\"\r\n\r\n{content}\r\n");
    let v2 =
        |b: &str| [part(b, "AWSAccessKeyId", "AKIAIOSFODNN7EXAMPLE"), part(b, "policy", "e30="), part(b, "signature", "0RavWzkygo6QX9caELEqKi9kDbU=")].concat();
    let v2_form = format!("{}{}{}--XyZ--\r\n", part("XyZ", "key", "k"), v2("XyZ"), file("XyZ", "file", "hello"));
    let post = |target: &str, ct: &str, body: &str| {
        format!("POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let form_ct = "multipart/form-data; boundary=XyZ";
    // 2: vpcgate would read the X parts (a key and a decoy file), an RFC 2231 reader the EVIL ones.
    let two_boundaries =
        format!("{}{}--X--\r\n{}{}--EVIL--\r\n", part("X", "key", "k"), file("X", "file", "decoy"), v2("EVIL"), file("EVIL", "file", "payload"));
    // 3: a case-sensitive reader reads on past FILE (and past a first file part) to the SigV2 fields.
    let upper_file = format!("{}{}{}{}--XyZ--\r\n", part("XyZ", "key", "k"), file("XyZ", "FILE", "decoy"), v2("XyZ"), file("XyZ", "file", "payload"));
    let after_file = format!("{}{}{}--XyZ--\r\n", part("XyZ", "key", "k"), file("XyZ", "file", "decoy"), v2("XyZ"));
    let get = |extra: &str| format!("GET /k HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a SigV2 form behind ?x-id=PostObject", post("/?x-id=PostObject", form_ct, &v2_form), "sigv2"),
        ("a SigV2 form behind ?&", post("/?&", form_ct, &v2_form), "sigv2"),
        ("a SigV2 form behind ?foo", post("/?foo", form_ct, &v2_form), "sigv2"),
        ("a SigV2 form behind ?Uploads (not the API call, whose key is lower case)", post("/?Uploads", form_ct, &v2_form), "sigv2"),
        ("boundary*= beside boundary", post("/", "multipart/form-data; boundary=X; boundary*=utf-8''EVIL", &two_boundaries), "malformed_form"),
        ("a part named FILE", post("/", form_ct, &upper_file), "malformed_form"),
        ("fields after the file part", post("/", form_ct, &after_file), "malformed_form"),
        ("Content-Length then Transfer-Encoding", get("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"), "request_smuggling"),
        ("Transfer-Encoding then Content-Length", get("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n"), "request_smuggling"),
        ("Transfer-Encoding gzip, chunked", get("Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n"), "request_smuggling"),
        ("Connection: host", get("Connection: host\r\n"), "connection_names_checked_header"),
        ("Connection: keep-alive, Authorization", get("Authorization: AWS4-HMAC-SHA256 Credential=A/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab\r\nConnection: keep-alive, Authorization\r\n"), "connection_names_checked_header"),
        ("CONNECT inside the tunnel", format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n").into_bytes(), "method_not_allowed"),

        ("Host with two trailing dots", format!("GET /k HTTP/1.1\r\nHost: {HOST}..\r\n\r\n").into_bytes(), "host_mismatch"),
    ];
    let mut with_bad_te = get("").split_off(0);
    with_bad_te.truncate(with_bad_te.len() - 2);
    with_bad_te.extend_from_slice(b"Transfer-Encoding: \x80x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    let cases = cases.into_iter().chain([("a Transfer-Encoding with a byte over 0x7f before chunked", with_bad_te, "request_smuggling")]);
    for (what, request, code) in cases {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(&request).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
        assert!(text.starts_with("HTTP/1.1 403"), "{what}: {text}");
        assert!(text.contains("<Code>AccessDenied</Code>") && text.contains("vpcgate refused"), "{what}: {text}");
        assert!(text.to_ascii_lowercase().contains(&format!("x-vpcgate-reason: {code}")), "{what}: {text}");
        let logged = wait_request(&p, |v| v["reason"] == code);
        assert_eq!(logged["decision"], "deny", "{what}: {logged}");
    }
    assert_eq!(up.connections(), 0, "nothing reached the upstream");

    // A second review's shapes, pipelined: a clean head that hyper reads as trailers (a bare LF
    // in a trailer line is part of it), and a CONNECT refused before its head was taken; either
    // once paired the next request with the wrong head, and Content-Length with
    // Transfer-Encoding went through.
    let pair = format!("POST /b HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    for (what, lead) in [
        (
            "a head hidden in trailers",
            format!("POST /a HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\nPOST /b HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        ),
        ("a CONNECT first", format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\nPOST /c HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n")),
    ] {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(format!("{lead}{pair}").as_bytes()).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.matches("HTTP/1.1 ").count() >= 2 && t.ends_with("</Error>\n")).await;
        assert!(!text.contains("saw POST /b"), "{what}: the pair reached the upstream: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("x-vpcgate-reason: request_smuggling") || lower.contains("x-vpcgate-reason: method_not_allowed"), "{what}: {text}");
    }

    // A part after a file longer than the first read: the form is cut on its way, the upstream
    // gets a short body (which it discards) and the client the reason.
    let big = "x".repeat(256 * 1024);
    let late = format!("{}{}{}--XyZ--\r\n", part("XyZ", "key", "k"), file("XyZ", "file", &big), v2("XyZ"));
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(&post("/", form_ct, &late)).await.unwrap();
    let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
    assert!(text.starts_with("HTTP/1.1 403") && text.to_ascii_lowercase().contains("x-vpcgate-reason: malformed_form"), "{text}");
    assert!(text.contains("the file must be the last field"), "{text}");
    // The same form without the late part, and a chunked upload, still go through: the upstream
    // sees vpcgate's own framing (one chunked, no client Transfer-Encoding line).
    let fine = format!("{}{}{}--XyZ--\r\n", part("XyZ", "key", "k"), part("XyZ", "x-amz-signature", "ff"), file("XyZ", "file", &big));
    let chunked_put = format!("PUT /c HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes();
    for (what, request, saw) in [("a SigV4 form with a large file", post("/", form_ct, &fine), "saw POST /"), ("a chunked PUT", chunked_put, "saw PUT /c")] {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(&request).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("sni=")).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains(saw), "{what}: {text}");
    }
    // Heads hyper cannot read get vpcgate's S3 error, not hyper's bare 400 or 431, after the
    // answers to the requests before them.
    let huge = format!("GET /k HTTP/1.1\r\nHost: {HOST}\r\nx-amz-meta-a: {}\r\n\r\n", "a".repeat(40 * 1024));
    let good_then_garbage = format!("GET /first HTTP/1.1\r\nHost: {HOST}\r\n\r\n\x01\x02 not a request\r\n\r\n");
    for (what, request, before) in
        [("a head over 32 KiB", huge, None), ("a good request, then bytes that are no HTTP", good_then_garbage, Some("saw GET /first"))]
    {
        let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
        if let Some(saw) = before {
            assert!(text.starts_with("HTTP/1.1 200") && text.contains(saw), "{what}: {text}");
        }
        let error = &text[text.find("HTTP/1.1 403").unwrap_or_else(|| panic!("{what}: {text}"))..];
        assert!(
            error.contains("<Code>AccessDenied</Code>")
                && error.contains("X-Vpcgate-Reason: unreadable_head")
                && error.contains("could not read this request's head"),
            "{what}: {text}"
        );
    }
    // At the CONNECT: a strict reader's authority, port without leading zeros, no URL.
    for target in [format!("{HOST}:0443"), format!("http://{HOST}:443")] {
        let (status, text) = raw_request(p.port, &connect_req(&target));
        assert_eq!(status, 400, "{target}: {text}");
        assert!(text.to_ascii_lowercase().contains("x-vpcgate-reason: bad_authority"), "{target}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_aws_names_are_answered_inside_the_tunnel_where_sdks_print_it() {
    // boto3 and the aws CLI print a refused CONNECT only as "Failed to connect to proxy URL"; in
    // inspect mode the refusal comes inside the tunnel as an S3 error, which they print.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 53;
    let w = world();
    let outside_host = "outside-bucket.s3.us-east-1.amazonaws.com";
    // Something listens at the outside address, to show that nothing connects to it.
    let outside = TlsUpstream::start(sa(n, 2, 1), &w.ca, &[outside_host], "outside").await;
    let dns = FakeDns::start(&[(outside_host, &a(&[ip(n, 2, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let roots = client_roots(&p, true, &w);
    let cases = [
        ("my-bucket.s3.dualstack.us-east-1.amazonaws.com", 403, "AccessDenied", "dualstack", "set s3.use_dualstack_endpoint = false"),
        ("my-bucket.s3.eu-west-1.amazonaws.com", 403, "AccessDenied", "other_region", "is in region eu-west-1"),
        ("my-bucket.s3-accelerate.amazonaws.com", 403, "AccessDenied", "accelerate", "use_accelerate_endpoint = false"),
        (outside_host, 403, "AccessDenied", "outside_routes", "outside every route"),
        ("missing-bucket.s3.us-east-1.amazonaws.com", 502, "BadGateway", "dns_failed", "DNS gave no usable IPv4 answer"),
    ];
    for (host, status, s3code, reason, needle) in cases {
        let mut tls = tls_tunnel(p.port, host, roots.clone()).await;
        tls.write_all(format!("GET /?list-type=2 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await.expect("the tunnel closes after the answer").ok();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{host}: {text}");
        assert!(text.contains(&format!("<Code>{s3code}</Code>")) && text.contains("<Message>vpcgate refused: "), "{host}: {text}");
        assert!(text.contains(needle), "{host}: {text}");
        assert!(text.to_ascii_lowercase().contains(&format!("x-vpcgate-reason: {reason}")), "{host}: {text}");
        let c = p.wait_event("connect", host);
        assert_eq!((c["decision"].as_str(), c["delivered"].as_str(), c["reason"].as_str()), (Some("deny"), Some("in_tunnel"), Some(reason)), "{c}");
        let r = wait_request(&p, |v| v["host"] == host);
        assert_eq!((r["decision"].as_str(), r["status"].as_u64()), (Some("deny"), Some(status as u64)), "{r}");
    }
    // An upload sent whole without Expect: 100-continue still gets its answer, not a reset.
    let dual = "my-bucket.s3.dualstack.us-east-1.amazonaws.com";
    let tls = tls_tunnel(p.port, dual, roots.clone()).await;
    let body = vec![b'x'; 4 << 20];
    let mut put = format!("PUT /big HTTP/1.1\r\nHost: {dual}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    put.extend_from_slice(&body);
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&put).await;
        wr
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut got)).await;
    let _ = writer.await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 403") && text.contains("use_dualstack_endpoint = false"), "{text}");
    assert_eq!(outside.connections(), 0, "nothing was dialled for a refused name");
    assert!(
        !dns.queried_names().iter().any(|q| q.contains("dualstack") || q.contains("eu-west-1") || q.contains("accelerate")),
        "refused by name, DNS never asked"
    );
    // A client that opens the tunnel and sends nothing is cut after handshake_timeout (5 s here).
    let started = std::time::Instant::now();
    let mut idle = tls_tunnel(p.port, "idle-bucket.s3.dualstack.us-east-1.amazonaws.com", roots.clone()).await;
    let mut buf = [0u8; 64];
    let n_read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await.expect("closed by vpcgate").unwrap_or(0);
    assert_eq!(n_read, 0);
    assert!((Duration::from_secs(4)..Duration::from_secs(9)).contains(&started.elapsed()), "{:?}", started.elapsed());
    // Names the CA must not sign keep the CONNECT refusal.
    let (status, text) = raw_request(p.port, &connect_req("example.com:443"));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("X-Vpcgate-Reason: not_aws"), "{text}");
    // proxy.refuse_in_tunnel = false keeps the CONNECT status.
    let q = Proxy::start_inspect(n, dns.addr, &w.ca_path, "[proxy]\nrefuse_in_tunnel = false\n");
    let (status, text) = raw_request(q.port, &connect_req("my-bucket.s3.dualstack.us-east-1.amazonaws.com:443"));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("X-Vpcgate-Reason: dualstack") && text.contains("use_dualstack_endpoint = false"), "{text}");
    assert_eq!(q.wait_event("connect", "my-bucket.s3.dualstack.us-east-1.amazonaws.com")["delivered"], "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_the_endpoint_closed_is_retried_and_a_tls_timeout_is_a_504() {
    use tokio::io::AsyncWriteExt;
    let n = 54;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    // An endpoint that takes the TCP connection and never answers the TLS hello.
    let mute_host = "mute-bucket.s3.us-east-1.amazonaws.com";
    let mute = tokio::net::TcpListener::bind(sa(n, 1, 2)).await.unwrap();
    let _mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)])), (mute_host, &a(&[ip(n, 1, 2)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let roots = client_roots(&p, true, &w);
    // Two GETs on one tunnel: the upstream answers the first and closes on the second without a
    // byte; vpcgate sends the second again on a fresh connection, and the client sees only a 200.
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    for path in ["/once-a", "/after"] {
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
        let text = read_text_until(&mut tls, |t| t.contains("sni=")).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains(&format!("saw GET {path}")), "{path}: {text}");
    }
    let r = wait_request(&p, |v| v["path"] == "/after");
    assert_eq!(r["upstream"], "retried", "{r}");
    assert_eq!(up.connections(), 2);
    assert!(p.events("upstream_retry").len() == 1, "{}", p.log_text());
    // A request with a body that was already sent is not sent twice: the client gets the reason.
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    tls.write_all(format!("GET /once-b HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    read_text_until(&mut tls, |t| t.contains("sni=")).await;
    tls.write_all(format!("PUT /k HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello").as_bytes()).await.unwrap();
    let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
    assert!(text.starts_with("HTTP/1.1 502") && text.contains("<Code>BadGateway</Code>") && text.contains("closed the exchange"), "{text}");
    // A TLS handshake with the endpoint that never completes is a timeout (504), not a refusal.
    let started = std::time::Instant::now();
    let mut tls = tls_tunnel(p.port, mute_host, roots.clone()).await;
    tls.write_all(format!("GET /k HTTP/1.1\r\nHost: {mute_host}\r\n\r\n").as_bytes()).await.unwrap();
    // Nothing arrives for the 5 s of the timeout, longer than read_text_until waits.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("</Error>") {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(15), tls.read(&mut buf)).await {
            Ok(Ok(k)) if k > 0 => got.extend_from_slice(&buf[..k]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 504") && text.contains("<Code>GatewayTimeout</Code>"), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-vpcgate-reason: upstream_handshake_timeout") && text.contains("proxy.handshake_timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(4), "after handshake_timeout (5 s here)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_perimeter_refuses_other_buckets_in_every_form() {
    use tokio::io::AsyncWriteExt;
    let n = 56;
    let w = world();
    let regional = "s3.us-east-1.amazonaws.com";
    let (ok_host, other_host) = ("harness-a.s3.us-east-1.amazonaws.com", "other-b.s3.us-east-1.amazonaws.com");
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[regional, ok_host, other_host], "inside").await;
    let dns = FakeDns::start(&[(regional, &a(&[ip(n, 1, 1)])), (ok_host, &a(&[ip(n, 1, 1)])), (other_host, &a(&[ip(n, 1, 1)]))]).await;
    let perimeter = "[s3]\nbuckets = [\"harness-*\"]\nallow_list_buckets = false\n";
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, perimeter);
    let roots = client_roots(&p, true, &w);
    let v4 = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab\r\n";
    let ask = |host: &'static str, head: String| {
        let roots = roots.clone();
        let port = p.port;
        async move {
            let mut tls = tls_tunnel(port, host, roots).await;
            tls.write_all(head.as_bytes()).await.unwrap();
            read_text_until(&mut tls, |t| t.contains("</Error>") || t.contains("sni=")).await
        }
    };
    let get = |host: &str, path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{v4}{extra}\r\n");
    // (what, host, request head, 200 with what the upstream saw | 403 with reason and sentence)
    type Case<'a> = (&'a str, &'static str, String, Result<&'a str, (&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("a listed bucket, virtual-hosted", ok_host, get(ok_host, "/k", ""), Ok("saw GET /k")),
        ("a listed bucket, path-style", regional, get(regional, "/harness-a/k", ""), Ok("saw GET /harness-a/k")),
        (
            "another bucket, path-style",
            regional,
            get(regional, "/other-b/k", ""),
            Err(("bucket_not_allowed", "a request for other-b, which is not in s3.buckets")),
        ),
        (
            "another bucket, presigned path-style",
            regional,
            get(regional, "/other-b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ff", ""),
            Err(("bucket_not_allowed", "other-b")),
        ),
        ("ListBuckets with allow_list_buckets = false", regional, get(regional, "/", ""), Err(("list_buckets_not_allowed", "s3.allow_list_buckets"))),
        ("an empty first segment", regional, get(regional, "//harness-a/k", ""), Err(("bucket_unknown", "no bucket name"))),
        ("an encoded slash in the bucket", regional, get(regional, "/harness-a%2F..%2Fother-b/k", ""), Err(("bucket_unknown", "no bucket name"))),
        (
            "a copy from another bucket into a listed one",
            ok_host,
            format!("PUT /copy HTTP/1.1\r\nHost: {ok_host}\r\n{v4}x-amz-copy-source: /other-b/k%20x?versionId=1\r\nContent-Length: 0\r\n\r\n"),
            Err(("bucket_not_allowed", "a copy from other-b")),
        ),
        (
            "a copy between listed buckets",
            ok_host,
            format!("PUT /copy HTTP/1.1\r\nHost: {ok_host}\r\n{v4}x-amz-copy-source: harness-b/k\r\nContent-Length: 0\r\n\r\n"),
            Ok("saw PUT /copy"),
        ),
        (
            "two copy sources",
            ok_host,
            format!("PUT /copy HTTP/1.1\r\nHost: {ok_host}\r\n{v4}x-amz-copy-source: harness-b/k\r\nx-amz-copy-source: other-b/k\r\nContent-Length: 0\r\n\r\n"),
            Err(("duplicate_header", "more than one x-amz-copy-source")),
        ),
        ("another bucket, virtual-hosted (refused by name, inside the tunnel)", other_host, get(other_host, "/k", ""), Err(("bucket_not_allowed", "other-b"))),
    ];
    for (what, host, head, want) in cases {
        let text = ask(host, head).await;
        match want {
            Ok(saw) => assert!(text.starts_with("HTTP/1.1 200") && text.contains(saw), "{what}: {text}"),
            Err((code, needle)) => {
                assert!(text.starts_with("HTTP/1.1 403") && text.contains("<Code>AccessDenied</Code>"), "{what}: {text}");
                assert!(text.to_ascii_lowercase().contains(&format!("x-vpcgate-reason: {code}")) && text.contains(needle), "{what}: {text}");
            }
        }
    }
    assert!(!dns.queried_names().iter().any(|q| q.contains("other-b")), "a refused bucket name is never resolved");
    let refused: Vec<serde_json::Value> = p.events("request").into_iter().filter(|v| v["decision"] == "deny").collect();
    assert!(refused.iter().all(|v| v["upstream"] == "" || v["upstream"] == "none"), "nothing went upstream for a refusal: {refused:?}");
    assert!(refused.iter().any(|v| v["bucket"] == "other-b"), "{refused:?}");
    // Passthrough sees only the name: a path-style service name cannot be checked, so it is refused.
    let q = Proxy::start(n, dns.addr, perimeter);
    for (target, status, code) in
        [(format!("{regional}:443"), 403, "bucket_hidden"), (format!("{other_host}:443"), 403, "bucket_not_allowed"), (format!("{ok_host}:443"), 200, "")]
    {
        let (got, text) = raw_request(q.port, &connect_req(&target));
        assert_eq!(got, status, "{target}: {text}");
        assert!(code.is_empty() || text.contains(&format!("X-Vpcgate-Reason: {code}")), "{target}: {text}");
    }
}

/// A `[[clients]]` entry from `vpcgate client add NAME --password-stdin`, as a user makes one.
fn client_entry(name: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vpcgate"))
        .args(["client", "add", name, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(password), "the password is never printed back");
    text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_auth_names_the_client_and_each_client_has_its_own_buckets() {
    let n = 57;
    let w = world();
    let (etl_host, web_host) = ("etl-a.s3.us-east-1.amazonaws.com", "web-b.s3.us-east-1.amazonaws.com");
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[etl_host, web_host], "inside").await;
    let dns = FakeDns::start(&[(etl_host, &a(&[ip(n, 1, 1)])), (web_host, &a(&[ip(n, 1, 1)]))]).await;
    let clients = format!("{}buckets = [\"etl-*\"]\n{}", client_entry("etl", "etl-pass:1"), client_entry("web", "web-pass"));
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, &format!("[proxy]\nauth = \"basic\"\n{clients}"));
    // No credentials, wrong ones, an unknown name: 407 with the challenge and a sentence.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (what, header, code) in [
        ("no credentials", String::new(), "proxy_auth_required"),
        ("a wrong password", format!("Proxy-Authorization: Basic {}\r\n", b64("etl:nope")), "proxy_auth_failed"),
        ("an unknown name", format!("Proxy-Authorization: Basic {}\r\n", b64("eve:etl-pass:1")), "proxy_auth_failed"),
    ] {
        let (status, text) = raw_request(p.port, &format!("CONNECT {etl_host}:443 HTTP/1.1\r\nHost: {etl_host}:443\r\n{header}\r\n"));
        assert_eq!(status, 407, "{what}: {text}");
        assert!(text.contains("Proxy-Authenticate: Basic realm=\"vpcgate\"") && text.contains(&format!("X-Vpcgate-Reason: {code}")), "{what}: {text}");
        assert!(text.contains("HTTPS_PROXY"), "{what}: {text}");
    }
    // The right ones: each client within its own list.
    let ca = p.ca_path();
    for (user, host, status) in [("etl:etl-pass:1", etl_host, 200), ("etl:etl-pass:1", web_host, 403), ("web:web-pass", web_host, 200)] {
        let out = curl(&["--proxy", &p.url(), "--proxy-user", user, "--cacert", ca.to_str().unwrap(), &format!("https://{host}/k")]).await;
        assert_eq!(out.status, status, "{user} {host}: {} {}", out.body, out.stderr);
        if status == 403 {
            assert!(out.body.contains("a request for web-b, which is not in s3.buckets"), "{}", out.body);
        }
    }
    let c = p.wait_event("connect", etl_host);
    assert_eq!(c["client"], "etl", "the connect line names the client: {c}");
    let r = wait_request(&p, |v| v["host"] == etl_host);
    assert_eq!(r["client"], "etl", "{r}");
    let log = p.log_text();
    assert!(!log.contains("etl-pass") && !log.contains("web-pass") && !log.contains(&b64("etl:etl-pass:1")), "no secret in the log");
    let (_, metrics) = http_get(p.admin_port, "/metrics");
    assert!(
        metrics.contains("vpcgate_auth_failures_total{kind=\"missing\"} 1") && metrics.contains("vpcgate_auth_failures_total{kind=\"wrong\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_in_a_tunnel_is_checked_not_only_the_first() {
    let n = 42;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    // One connection: an allowed request, then a SigV2 presigned one, then an allowed one again.
    let out = inspect_curl(
        &p,
        &[&format!("https://{HOST}/first"), &format!("https://{HOST}/second?AWSAccessKeyId=AKIA&Expires=1&Signature=x"), &format!("https://{HOST}/third")],
    )
    .await;
    assert!(out.body.contains("saw GET /first") && out.body.contains("saw GET /third"), "{}", out.body);
    assert!(out.body.contains("Signature Version 2"), "{}", out.body);
    assert!(!out.body.contains("saw GET /second"), "{}", out.body);
    let second = wait_request(&p, |v| v["path"] == "/second");
    assert_eq!(second["reason"], "sigv2");
    assert_eq!(p.wait_event("close", HOST)["requests"], 3);
    assert_eq!(up.connections(), 1, "one upstream connection carried both allowed requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_comes_before_the_body_with_expect_continue() {
    let n = 43;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![7u8; 4 << 20]).unwrap();
    let out = inspect_curl(
        &p,
        &[
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "10",
            "-H",
            "Authorization: AWS AKIA:sig",
            "-T",
            file.to_str().unwrap(),
            &format!("https://{HOST}/big.bin"),
        ],
    )
    .await;
    assert_eq!(out.status, 403, "{}", out.stderr);
    assert!(!out.stderr.contains("HTTP/1.1 100"), "no 100 Continue before a refusal: {}", out.stderr);
    let r = wait_request(&p, |v| v["path"] == "/big.bin");
    assert_eq!(r["bytes_up"], 0, "the body was never read: {r}");
    // An allowed upload with Expect: 100-continue streams through.
    let out = inspect_curl(&p, &["-H", "Expect: 100-continue", "-T", file.to_str().unwrap(), &format!("https://{HOST}/ok.bin")]).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    let r = wait_request(&p, |v| v["path"] == "/ok.bin");
    assert_eq!(r["bytes_up"], 4 << 20, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_do_not_verify_or_lack_forward_secrecy_are_refused() {
    let n = 44;
    let w = world();
    let stranger = TestCa::new("someone else's CA");
    let untrusted = "untrusted.s3.us-east-1.amazonaws.com";
    let nonfs = "nonfs.s3.us-east-1.amazonaws.com";
    let _u = TlsUpstream::start(sa(n, 1, 1), &stranger, &[untrusted], "stranger").await;
    let _n = NonFsUpstream::start(sa(n, 1, 2), &w.ca, &[nonfs]);
    let dns = FakeDns::start(&[(untrusted, &a(&[ip(n, 1, 1)])), (nonfs, &a(&[ip(n, 1, 2)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");

    let out = inspect_curl(&p, &[&format!("https://{untrusted}/k")]).await;
    assert_eq!(out.status, 403, "{}", out.stderr);
    assert!(out.body.contains("did not verify") && out.body.contains("never falls back"), "{}", out.body);
    let out = inspect_curl(&p, &[&format!("https://{nonfs}/k")]).await;
    assert_eq!(out.status, 403, "{}", out.stderr);
    assert!(out.body.contains("forward secrecy") || out.body.contains("forward-secret"), "{}", out.body);
    let reasons: Vec<String> = p.events("handshake_refused").iter().map(|v| v["side"].to_string() + v["reason"].as_str().unwrap_or("")).collect();
    assert_eq!(reasons.iter().filter(|r| r.contains("upstream_refused")).count(), 2, "{reasons:?}");
    // The same fields as passthrough's handshake refusals.
    for v in p.events("handshake_refused") {
        assert_eq!(event_fields(&v), HANDSHAKE_REFUSED_FIELDS.map(String::from).to_vec(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_handshakes_without_forward_secrecy_or_with_another_sni_are_refused() {
    let n = 45;
    let w = world();
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let out = inspect_curl(&p, &["--tls-max", "1.2", "--ciphers", "AES128-GCM-SHA256", &format!("https://{HOST}/")]).await;
    assert_ne!(out.code, 0);
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-proxy", &format!("127.0.0.1:{}", p.port), "-connect", &format!("{HOST}:443")])
        .args(["-servername", "other.s3.us-east-1.amazonaws.com", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let reasons = || -> Vec<String> { p.events("handshake_refused").iter().filter_map(|v| v["reason"].as_str().map(str::to_string)).collect() };
    eventually(
        10,
        || format!("{:?}", reasons()),
        || {
            let r = reasons();
            (r.contains(&"client_no_forward_secrecy".to_string()) && r.contains(&"sni_mismatch".to_string())).then_some(())
        },
    );
    for v in p.events("handshake_refused") {
        assert_eq!((event_fields(&v), v["side"].as_str()), (HANDSHAKE_REFUSED_FIELDS.map(String::from).to_vec(), Some("client")), "{v}");
    }
    assert_eq!(up.handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_client_never_resumes_a_session_without_a_new_key_exchange() {
    // openssl saves the TLS 1.2 session of its first connection and offers it on the second; a
    // resumed TLS 1.2 session has no new (EC)DHE exchange, so vpcgate answers with a full handshake.
    let n = 50;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("sess.pem");
    let sess = sess.to_str().unwrap();
    let ca = p.ca_path();
    let handshake = |session: [&'static str; 1]| {
        let args: Vec<String> = ["s_client", "-proxy", &format!("127.0.0.1:{}", p.port), "-connect", &format!("{HOST}:443"), "-servername", HOST]
            .iter()
            .map(|s| s.to_string())
            .chain(["-tls1_2", "-CAfile", ca.to_str().unwrap(), session[0], sess].iter().map(|s| s.to_string()))
            .collect();
        async move {
            let out = tokio::process::Command::new("openssl").args(&args).stdin(std::process::Stdio::null()).output().await.unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    let first = handshake(["-sess_out"]).await;
    assert!(first.contains("New, TLSv1.2"), "{first}");
    // vpcgate hands out no session ID and no ticket, so openssl has nothing to keep; were there
    // one, offering it must still give a full handshake.
    let id = first.lines().find_map(|l| l.trim().strip_prefix("Session-ID:")).map(str::trim).unwrap_or("?").to_string();
    assert_eq!(id, "", "a resumable session ID was handed out: {first}");
    if std::fs::metadata(sess).is_ok_and(|m| m.len() > 0) {
        let second = handshake(["-sess_in"]).await;
        assert!(second.contains("New, TLSv1.2") && !second.contains("Reused"), "{second}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_pool_is_bounded_in_all_and_swept_when_idle() {
    // Every bucket name is a pool key of its own: with tls.upstream_idle_max = 8, twelve buckets
    // leave eight idle upstream connections, and those go once tls.upstream_idle_timeout has
    // passed with no traffic.
    use tokio::io::AsyncWriteExt;
    let n = 51;
    let w = world();
    let hosts: Vec<String> = (0..12).map(|i| format!("b{i}.s3.us-east-1.amazonaws.com")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &names, "inside").await;
    let answer = a(&[ip(n, 1, 1)]);
    let records: Vec<(&str, &[std::net::IpAddr])> = names.iter().map(|h| (*h, answer.as_slice())).collect();
    let dns = FakeDns::start(&records).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "[tls]\nupstream_idle_max = 8\nupstream_idle_timeout = \"2s\"\n");
    let roots = client_roots(&p, true, &w);
    for h in &names {
        let mut tls = tls_tunnel(p.port, h, roots.clone()).await;
        tls.write_all(format!("GET /k HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes()).await.unwrap();
        let end = format!("sni={h}\n");
        let text = read_text_until(&mut tls, |t| t.ends_with(&end)).await;
        assert!(text.ends_with(&end), "{h}: {text}");
    }
    let idle = || -> i64 {
        let (_, m) = http_get(p.admin_port, "/metrics");
        m.lines().find_map(|l| l.strip_prefix("vpcgate_upstream_idle ")).and_then(|v| v.trim().parse().ok()).expect("the gauge")
    };
    let held = eventually(5, || format!("{}", idle()), || (idle() >= 8).then(idle));
    assert_eq!(held, 8, "idle upstream connections over all buckets");
    eventually(10, || format!("{}", idle()), || (idle() == 0).then_some(()));
}

/// Streams 2 GiB through an inspected tunnel and checks vpcgate's resident memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_with_flat_memory() {
    let n = 46;
    let w = world();
    let _up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let size: u64 = 2 << 30;
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Warm up (TLS, leaf, pool) with a small object, then measure during the big one.
    let out = inspect_curl(&p, &[&format!("https://{HOST}/bytes/1000000"), "-o", "/dev/null"]).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    let before = rss(p.child.id());
    let pid = p.child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let out = inspect_curl(&p, &["--max-time", "300", "-o", "/dev/null", &format!("https://{HOST}/bytes/{size}")]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(out.status, 200, "{}", out.stderr);
    let r = wait_request(&p, |v| v["path"] == format!("/bytes/{size}"));
    assert_eq!(r["bytes_down"].as_u64(), Some(size));
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let growth_kib = peak.saturating_sub(before);
    eprintln!(
        "2 GiB through inspect mode in {:.1}s; vpcgate VmRSS {} KiB before, peak {} KiB (+{} KiB)",
        started.elapsed().as_secs_f64(),
        before,
        peak,
        growth_kib
    );
    assert!(growth_kib < 32 * 1024, "memory grew by {growth_kib} KiB while streaming 2 GiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_endpoint_speaking_only_tls12_works_in_inspect_mode() {
    let n = 47;
    let w = world();
    let endpoint = "vpce-0abc-1234.s3.us-east-1.vpce.amazonaws.com";
    // PrivateLink for S3 speaks TLS 1.2 only; the public name answers outside, the endpoint inside the VPC range.
    let up = TlsUpstream::start_tls12_only(sa(n, 3, 5), &w.ca, &[HOST], "vpce").await;
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 2, 1)])), (endpoint, &a(&[ip(n, 3, 5)]))]).await;
    let p = Proxy::start_inspect(
        n,
        dns.addr,
        &w.ca_path,
        &format!("[[routes]]\nname = \"s3-vpn\"\nkind = \"interface\"\nendpoint = \"{endpoint}\"\ncidrs = [\"127.{n}.3.0/24\"]\n"),
    );
    let out = inspect_curl(&p, &[&format!("https://{HOST}/k")]).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert!(out.body.contains(&format!("host={HOST} sni={HOST}")), "{}", out.body);
    let r = wait_request(&p, |v| v["path"] == "/k");
    assert!(r["upstream_tls"].as_str().unwrap().starts_with("TLS1.2 TLS_ECDHE_"), "{r}");
    assert_eq!(p.wait_event("connect", HOST)["route"], "s3-vpn");
    assert_eq!(up.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_dialled_by_the_first_request_and_its_failure_is_an_s3_error() {
    use tokio::io::AsyncWriteExt;
    let n = 48;
    let w = world();
    // Inside the route, but nothing listens there yet.
    let dns = FakeDns::start(&[(HOST, &a(&[ip(n, 1, 1)]))]).await;
    let p = Proxy::start_inspect(n, dns.addr, &w.ca_path, "");
    let roots = client_roots(&p, true, &w);

    // The CONNECT is checked (route, address) and answered; the request that needs the upstream
    // gets the failure as an S3 error naming the address and what to check, which SDKs show.
    let mut tls = tls_tunnel(p.port, HOST, roots.clone()).await;
    assert_eq!(p.wait_event("connect", HOST)["upstream"], "on_request");
    tls.write_all(format!("GET /key HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let text = read_text_until(&mut tls, |t| t.contains("</Error>")).await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(text.contains("<Code>BadGateway</Code>") && text.contains(&format!("could not connect to {HOST} at 127.{n}.1.1:443")), "{text}");
    assert!(text.contains("check the route to the endpoint"), "{text}");
    let r = wait_request(&p, |v| v["path"] == "/key");
    assert_eq!((r["status"].as_u64(), r["reason"].as_str()), (Some(502), Some("upstream_failed")), "{r}");
    drop(tls);

    // Once the endpoint answers, the same proxy forwards.
    let up = TlsUpstream::start(sa(n, 1, 1), &w.ca, &[HOST], "inside").await;
    let out = inspect_curl(&p, &[&format!("https://{HOST}/a")]).await;
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(up.connections(), 1);

    // Inspected tunnels whose clients have not sent a request hold no upstream socket: the one
    // idle connection in the pool serves the first of them, and nothing else is dialled.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(tls_tunnel(p.port, HOST, roots.clone()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.connections(), 1, "tunnels without a request dialled the upstream");
    let mut first = idle.remove(0);
    first.write_all(format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let text = read_text_until(&mut first, |t| t.starts_with("HTTP/1.1 ")).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(up.connections(), 1, "the pooled connection served it");
}

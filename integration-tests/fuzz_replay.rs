//! The fuzz targets' oracles (`fuzz/oracle/`) on the stable toolchain, on every test run: the
//! seed inputs in `fuzz/corpus/TARGET/` (cases found by fuzzing, and hand-written ones), then a
//! fixed number of inputs generated from a seeded pseudo-random stream through the same
//! `Arbitrary` types the fuzzer uses. A disagreement the fuzzer found stays a failing test here
//! once its input is in the corpus. (Coverage-guided runs: `cargo +nightly fuzz run form`.)

#[path = "../fuzz/oracle/form.rs"]
mod form;

#[path = "../fuzz/oracle/query_form.rs"]
mod query_form;

#[path = "../fuzz/oracle/hello.rs"]
mod hello;

#[path = "../fuzz/oracle/connect.rs"]
mod connect;

#[path = "../fuzz/oracle/heads.rs"]
mod heads;

#[path = "../fuzz/oracle/aws_answers.rs"]
mod aws_answers;

#[path = "../fuzz/oracle/config.rs"]
mod config;

use arbitrary::{Arbitrary, Unstructured};

/// xorshift64*: the same inputs on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn run_form(data: &[u8]) {
    if let Ok(input) = form::FormInput::arbitrary_take_rest(Unstructured::new(data)) {
        let (ct, body) = input.render();
        form::check_form(&ct, &body);
    }
}

#[test]
fn form_reader_agrees_with_multer_on_the_corpus() {
    let seeds = corpus("form");
    assert!(!seeds.is_empty(), "fuzz/corpus/form holds the seeds");
    for (name, data) in seeds {
        let r = std::panic::catch_unwind(|| run_form(&data));
        assert!(r.is_ok(), "corpus input {name}");
    }
}

#[test]
fn form_reader_agrees_with_multer_on_generated_forms() {
    let mut rng = Rng(0x5eed_f0f0_1234_5678);
    for _ in 0..20_000 {
        let n = (rng.next() % 512) as usize;
        run_form(&rng.bytes(n));
    }
}

#[test]
fn query_form_check_refuses_whatever_a_standard_form_reader_reads_as_sigv2() {
    // Hand-written seeds: the shapes the check exists for.
    for body in [
        &b"Action=GetCallerIdentity&Version=2011-06-15&AWSAccessKeyId=AKID&SignatureVersion=2&SignatureMethod=HmacSHA256&Signature=abc"[..],
        b"Signature%56ersion=2",
        b"signature%2bversion=2&+Signature=x",
        b"%41WSAccessKeyId=AKID",
        b"Action=X&SIGNATURE=abc&",
        b"Action=X&Signature%=1",
    ] {
        query_form::check_query_form(body);
    }
    let mut rng = Rng(0x0dd_f00d_cafe_beef);
    let mut structured = 0;
    for _ in 0..20_000 {
        let n = (rng.next() % 256) as usize;
        let data = rng.bytes(n);
        if let Ok(input) = query_form::QueryForm::arbitrary_take_rest(Unstructured::new(&data)) {
            structured += 1;
            query_form::check_query_form(&input.render());
        }
        query_form::check_query_form(&data);
    }
    assert!(structured > 10_000, "the generator builds forms from most inputs ({structured})");
}

/// Generated structured inputs of one target: how many of `n` random byte strings built one.
fn generated<T: for<'a> Arbitrary<'a>>(seed: u64, n: usize, max_len: u64, check: impl Fn(&T)) -> usize {
    let mut rng = Rng(seed);
    let mut built = 0;
    for _ in 0..n {
        let len = (rng.next() % max_len) as usize;
        let data = rng.bytes(len);
        if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&data)) {
            built += 1;
            check(&input);
        }
    }
    built
}

#[test]
fn hello_readers_do_not_depend_on_the_cut_and_agree_with_rustls() {
    // The hellos real clients and servers sent (src/policy/testdata, captured on loopback), whole
    // and in every cut the oracle tries; a ClientHello is checked against its own name, so that
    // the accepted ones go through rustls.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata");
    let mut captured = 0;
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        if name.starts_with("client_hello") {
            let sni = vpcgate::policy::tls::parse_client_hello(&data).ok().and_then(|(i, _)| i.sni).unwrap_or_default();
            let accepted = hello::check_client_bytes(&data, &sni);
            assert_eq!(accepted, !name.contains("tls11") && !name.contains("rsa_only"), "{name}");
            captured += 1;
        } else if name.starts_with("server_hello") {
            hello::check_server_bytes(&data);
            captured += 1;
        }
    }
    assert!(captured >= 10, "the captured hellos are read ({captured})");
    for (name, data) in corpus("client_hello") {
        let r = std::panic::catch_unwind(|| {
            if let Ok(input) = hello::ClientHello::arbitrary_take_rest(Unstructured::new(&data)) {
                hello::check_client(&input);
            }
        });
        assert!(r.is_ok(), "corpus input client_hello/{name}");
    }
    for (name, data) in corpus("server_hello") {
        let r = std::panic::catch_unwind(|| {
            if let Ok(input) = hello::ServerHello::arbitrary_take_rest(Unstructured::new(&data)) {
                hello::check_server(&input);
            }
        });
        assert!(r.is_ok(), "corpus input server_hello/{name}");
    }
    let accepted = std::cell::Cell::new(0);
    let built = generated(0xc11e_47ed_0000_0001, 5_000, 400, |h: &hello::ClientHello| accepted.set(accepted.get() + usize::from(hello::check_client(h))));
    assert!(built > 2_500, "{built} ClientHellos built");
    // Variations of a typical accepted hello: other cuts, one more extension anywhere, an edit.
    assert!(hello::check_client(&hello::ClientHello::typical()), "the typical hello is accepted");
    let mut rng = Rng(0xc11e_47ed_0000_0003);
    for _ in 0..5_000 {
        let len = (rng.next() % 96) as usize;
        let data = rng.bytes(len);
        let mut u = Unstructured::new(&data);
        let mut h = hello::ClientHello::typical();
        if let Ok(cut) = hello::Cut::arbitrary(&mut u) {
            h.cut = hello::Cut { edits: if rng.next() % 4 == 0 { cut.edits } else { vec![] }, ..cut };
        }
        let one_more = rng.next() % 2 == 0;
        if let (true, Ok(ext), Some(exts)) = (one_more, hello::Ext::arbitrary(&mut u), h.extensions.as_mut()) {
            let at = (rng.next() as usize) % (exts.len() + 1);
            exts.insert(at, ext);
        }
        match std::panic::catch_unwind(|| hello::check_client(&h)) {
            Ok(a) => accepted.set(accepted.get() + usize::from(a)),
            Err(_) => panic!("the variation {h:?}"),
        }
    }
    assert!(accepted.get() > 1_000, "{} variations accepted", accepted.get());
    // (The coverage-guided fuzzer builds its own from the committed corpus: fuzz/corpus/client_hello.)
    assert!(generated(0x5e7e_7ed0_0000_0002, 5_000, 200, |h: &hello::ServerHello| hello::check_server(h)) > 2_500);
}

/// Every committed corpus input of `target` through `check`, each failure naming its file.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) -> usize {
    let seeds = corpus(target);
    for (name, data) in &seeds {
        let r = std::panic::catch_unwind(|| check(data));
        assert!(r.is_ok(), "corpus input {target}/{name}");
    }
    seeds.len()
}

#[test]
fn connect_targets_read_as_the_http_crate_reads_them() {
    for raw in [
        "bucket.s3.us-east-1.amazonaws.com:443",
        "BUCKET.S3.amazonaws.com.:443",
        "[s3.amazonaws.com]:443",
        "s3.amazonaws.com:0443",
        "127.1:443",
        "0x7f.1:443",
        "a@s3.amazonaws.com:443",
        "s3.amazonaws.com:443/x",
        "xn--bcher-kva.s3.amazonaws.com:443",
        "s3.amazonaws.com",
        "s3.amazonaws.com:65536",
    ] {
        connect::check_target(raw);
        connect::check_class(raw);
    }
    replay("connect", |d| {
        if let Ok(i) = connect::ConnectInput::arbitrary_take_rest(Unstructured::new(d)) {
            connect::check_connect(&i)
        }
    });
    assert!(generated(0xc0_77ec_7000_0001, 20_000, 128, connect::check_connect) > 10_000);
}

#[test]
fn the_head_follower_reads_a_stream_the_same_however_it_is_cut() {
    replay("heads", |d| {
        if let Ok(i) = heads::Stream::arbitrary_take_rest(Unstructured::new(d)) {
            heads::check_stream(&i)
        }
    });
    assert!(generated(0x4ead_5000_0000_0001, 5_000, 512, heads::check_stream) > 2_500);
}

#[test]
fn answers_from_aws_and_caches_never_panic_or_route_a_refused_cidr() {
    // The answers moto gave (the audit's unit test reads them too), under every reader.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/audit/testdata");
    let mut answers = 0;
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let text = std::fs::read(e.path()).unwrap();
        for which in 0..12u8 {
            let mut d = vec![which];
            d.extend_from_slice(&text);
            aws_answers::check_answer(&d);
        }
        answers += 1;
    }
    assert!(answers >= 8, "{answers} captured answers");
    replay("aws_answers", aws_answers::check_answer);
    let mut rng = Rng(0xa75a_0000_0000_0001);
    for _ in 0..5_000 {
        let n = (rng.next() % 256) as usize;
        aws_answers::check_answer(&rng.bytes(n));
    }
}

#[test]
fn every_configuration_loads_or_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vpcgate.toml");
    replay("config", |d| {
        if let Ok(i) = config::ConfigInput::arbitrary_take_rest(Unstructured::new(d)) {
            let (text, env) = i.render();
            config::check_config(&text, env, &file)
        }
    });
    let built = generated(0xc0f1_9000_0000_0001, 3_000, 160, |i: &config::ConfigInput| {
        let (text, env) = i.render();
        config::check_config(&text, env, &file)
    });
    assert!(built > 1_500, "{built}");
}

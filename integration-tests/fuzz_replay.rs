//! The fuzz targets' oracles (`fuzz/oracle/`) on the stable toolchain, on every test run: the
//! seed inputs in `fuzz/corpus/TARGET/` (cases found by fuzzing, and hand-written ones), then a
//! fixed number of inputs generated from a seeded pseudo-random stream through the same
//! `Arbitrary` types the fuzzer uses. A disagreement the fuzzer found stays a failing test here
//! once its input is in the corpus. (Coverage-guided runs: `cargo +nightly fuzz run form`.)

#[path = "../fuzz/oracle/form.rs"]
mod form;

#[path = "../fuzz/oracle/query_form.rs"]
mod query_form;

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

//! Coverage-guided: the inspected tunnel's head follower reads a request stream the same however
//! it is cut (`fuzz/oracle/heads.rs`). `cargo +nightly fuzz run heads`.
#![no_main]

#[path = "../oracle/heads.rs"]
mod heads;

libfuzzer_sys::fuzz_target!(|input: heads::Stream| {
    heads::check_stream(&input);
});

//! Coverage-guided: the ClientHello reader does not depend on the cut, and rustls reads every
//! hello vpcgate accepts the same (`fuzz/oracle/hello.rs`). `cargo +nightly fuzz run client_hello`.
#![no_main]

#[path = "../oracle/hello.rs"]
mod hello;

libfuzzer_sys::fuzz_target!(|input: hello::ClientHello| {
    hello::check_client(&input);
});

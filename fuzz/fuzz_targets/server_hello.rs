//! Coverage-guided: the ServerHello reader does not depend on the cut and every refusal carries
//! its reason (`fuzz/oracle/hello.rs`). `cargo +nightly fuzz run server_hello`.
#![no_main]

#[path = "../oracle/hello.rs"]
mod hello;

libfuzzer_sys::fuzz_target!(|input: hello::ServerHello| {
    hello::check_server(&input);
});

//! Coverage-guided: CONNECT targets through the pre-check, hyper's URI and the strict authority
//! parser, read as the http crate reads them, and the host classifier (`fuzz/oracle/connect.rs`).
#![no_main]

#[path = "../oracle/connect.rs"]
mod connect;

libfuzzer_sys::fuzz_target!(|input: connect::ConnectInput| {
    connect::check_connect(&input);
});

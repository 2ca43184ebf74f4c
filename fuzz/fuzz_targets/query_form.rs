//! Coverage-guided: every Query-API body a standard form reader finds a SigV2 key in is refused
//! (`fuzz/oracle/query_form.rs`). `cargo +nightly fuzz run query_form` from the repository root.
#![no_main]

#[path = "../oracle/query_form.rs"]
mod query_form;

libfuzzer_sys::fuzz_target!(|input: query_form::QueryForm| {
    query_form::check_query_form(&input.render());
});

//! Coverage-guided: every POST form vpcgate lets through is read the same by multer
//! (`fuzz/oracle/form.rs`). `cargo +nightly fuzz run form` from the repository root.
#![no_main]

#[path = "../oracle/form.rs"]
mod form;

libfuzzer_sys::fuzz_target!(|input: form::FormInput| {
    let (content_type, body) = input.render();
    form::check_form(&content_type, &body);
});

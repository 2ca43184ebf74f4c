//! Coverage-guided: EC2 answers, policies, prefix-list sources and caches never panic a reader or
//! route a CIDR the route rules refuse (`fuzz/oracle/aws_answers.rs`).
#![no_main]

#[path = "../oracle/aws_answers.rs"]
mod aws_answers;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aws_answers::check_answer(data);
});

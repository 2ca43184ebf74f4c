//! Coverage-guided: every configuration loads or says why in one line (`fuzz/oracle/config.rs`).
#![no_main]

#[path = "../oracle/config.rs"]
mod config;

libfuzzer_sys::fuzz_target!(|input: config::ConfigInput| {
    // One scratch file per fuzzing process.
    let file = std::env::temp_dir().join(format!("vpcgate-fuzz-config-{}.toml", std::process::id()));
    let (text, env) = input.render();
    config::check_config(&text, env, &file);
});

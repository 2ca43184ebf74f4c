//! The book's reference pages (`docs/src/reference/`), generated from the code so that they
//! cannot drift from it: the configuration keys from the config types and their doc comments
//! (schemars) with the defaults of `config/default.toml`, every refusal from a catalogue that a
//! test holds to every variant of the refusal types, the log events from
//! [`crate::telemetry::EVENTS`], and the metrics from the registry itself. (The commands page is
//! generated in `main.rs`, where the command line is defined.)
//!
//! `cargo test --lib reference` fails when a committed page differs from what the code says;
//! `VPCGATE_BLESS=1 cargo test --lib reference` writes the pages again.

/// The first line of every generated page.
pub const GENERATED: &str = "<!-- Generated from the code by `cargo test reference`; do not edit. `VPCGATE_BLESS=1 cargo test reference` rewrites it. -->";

#[cfg(test)]
pub mod pages;
#[cfg(test)]
pub use pages::{AddressText, DurationText, PathText};

// ---------------------------------------------------------------------------------------------
// The pages on disk
// ---------------------------------------------------------------------------------------------

/// Compares `docs/src/reference/NAME` with `want`, or writes it under `VPCGATE_BLESS=1`; the
/// error says which page is stale and how to renew it.
pub fn check_page(name: &str, want: &str) -> Result<(), String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/reference").join(name);
    if std::env::var_os("VPCGATE_BLESS").is_some() {
        std::fs::write(&path, want).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(());
    }
    let Ok(have) = std::fs::read_to_string(&path) else {
        return Err(format!("{} is missing; run `VPCGATE_BLESS=1 cargo test reference` and commit the page", path.display()));
    };
    if have == want {
        return Ok(());
    }
    let first = have.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or_else(|| have.lines().count().min(want.lines().count()));
    Err(format!(
        "{} is out of date with the code (first difference at line {}: the code says {:?}); run `VPCGATE_BLESS=1 cargo test reference` and commit the page",
        path.display(),
        first + 1,
        want.lines().nth(first).unwrap_or("(end of page)")
    ))
}

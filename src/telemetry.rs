//! Logging setup: `log.format = "text"` (human) or `"json"` (one JSON object per line), level from
//! `log.level` unless `RUST_LOG` is set.
//!
//! Decision events use the target `vpcgate::decision` and an `event` field: `connect` (one per
//! CONNECT, allow or deny), `handshake_refused`, and `close` (one per tunnel, with bytes and TLS facts).

use crate::config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogSettings) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG={v:?} is not a valid filter ({e}); unset it or use e.g. info"))?,
        _ => EnvFilter::try_new(&log.level).map_err(|e| {
            format!("log.level = {:?} is not a valid level ({e}); use error, warn, info, debug or trace", log.level)
        })?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    res.map_err(|e| format!("cannot start logging ({e})"))
}

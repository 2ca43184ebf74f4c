//! `--key value` arguments, and the loopback-only rule for every address.

use crate::R;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;

pub struct Args {
    map: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Args {
    pub fn parse(v: Vec<String>) -> R<Args> {
        let mut map = BTreeMap::new();
        let mut it = v.into_iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| format!("expected --key, got {k:?}"))?.to_string();
            let val = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key, val);
        }
        Ok(Args { map, used: RefCell::new(BTreeSet::new()) })
    }

    pub fn opt(&self, k: &str) -> Option<&str> {
        self.used.borrow_mut().insert(k.to_string());
        self.map.get(k).map(|s| s.as_str())
    }

    pub fn req(&self, k: &str) -> R<&str> {
        self.opt(k).ok_or_else(|| format!("--{k} is required"))
    }

    pub fn num<T: FromStr>(&self, k: &str, default: T) -> R<T> {
        match self.opt(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k} {v:?} is not a number")),
        }
    }

    pub fn addr(&self, k: &str) -> R<SocketAddr> {
        let v = self.req(k)?;
        let a: SocketAddr = v.parse().map_err(|_| format!("--{k} {v:?} is not IP:PORT"))?;
        loopback(a)
    }

    /// Unknown keys are mistakes (a typo would silently use a default).
    pub fn check_all_used(&self) -> R<()> {
        let used = self.used.borrow();
        let unknown: Vec<&String> = self.map.keys().filter(|k| !used.contains(*k)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown option(s) {unknown:?}"))
        }
    }
}

/// The benchmark only ever talks to 127.0.0.0/8.
pub fn loopback(a: SocketAddr) -> R<SocketAddr> {
    match a {
        SocketAddr::V4(v4) if v4.ip().octets()[0] == 127 => Ok(a),
        _ => Err(format!("{a} is not in 127.0.0.0/8; the benchmark runs on loopback only")),
    }
}

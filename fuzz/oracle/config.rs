//! The oracle of the configuration loader (`config::load`): TOML built from the keys vpcgate has,
//! with values of every type, then raw text. A configuration is read at start and at every
//! SIGHUP, so a bad one must come back as one sentence that names the key and the fix, never a
//! panic, and a good one must hold what the rules promise (routes with CIDRs that pass the route
//! rules, a non-empty region list).
#![allow(dead_code)]

use arbitrary::Arbitrary;
use std::collections::HashMap;
use vpcgate::config::{load, Sources};

const KEYS: [(&str, &str); 24] = [
    ("proxy", "listen"),
    ("proxy", "connect_ports"),
    ("proxy", "max_connections"),
    ("proxy", "idle_timeout"),
    ("proxy", "connect_timeout"),
    ("proxy", "auth"),
    ("admin", "listen"),
    ("dns", "servers"),
    ("dns", "timeout"),
    ("aws", "regions"),
    ("aws", "public_api"),
    ("tls", "mode"),
    ("tls", "ca_extra_names"),
    ("log", "format"),
    ("s3", "buckets"),
    ("audit", "require"),
    ("audit", "interval"),
    ("routes", "name"),
    ("routes", "kind"),
    ("routes", "cidrs"),
    ("routes", "endpoint"),
    ("routes", "endpoint_id"),
    ("routes", "prefix_list"),
    ("routes", "service"),
];

const VALUES: [&str; 24] = [
    "\"127.0.0.1:3128\"",
    "[443, 8443]",
    "0",
    "18446744073709551615",
    "\"5s\"",
    "\"soon\"",
    "true",
    "\"us-east-1\"",
    "[\"us-east-1\", \"eu-west-1\"]",
    "[\"useast1\"]",
    "\"inspect\"",
    "\"passthrough\"",
    "\"gateway\"",
    "\"interface\"",
    "[\"52.216.0.0/15\"]",
    "[\"0.0.0.0/0\"]",
    "[\"169.254.169.254/32\"]",
    "\"vpce-0a1b2c3d4e5f60718-ab12cd34.s3.us-east-1.vpce.amazonaws.com\"",
    "\"vpce-0a1b2c3d4e5f60718\"",
    "\"com.amazonaws.us-east-1.s3\"",
    "\"route_table\"",
    "\"json\"",
    "[\"harness-*\"]",
    "\"\"",
];

#[derive(Debug, Arbitrary)]
pub enum Line {
    Set { key: u8, value: u8 },
    Raw { key: u8, value: String },
    NewRoute,
    Text(String),
}

#[derive(Debug, Arbitrary)]
pub struct ConfigInput {
    pub lines: Vec<Line>,
    pub env: Vec<(u8, u8)>,
}

impl ConfigInput {
    pub fn render(&self) -> (String, HashMap<String, String>) {
        // Group keys by table, as TOML needs; `[[routes]]` entries in order.
        let mut tables: Vec<(String, Vec<String>)> = Vec::new();
        let push = |table: &str, line: String, tables: &mut Vec<(String, Vec<String>)>| {
            if table == "routes" {
                if tables.last().is_none_or(|(t, _)| t != "[[routes]]") {
                    tables.push(("[[routes]]".into(), Vec::new()));
                }
                tables.last_mut().unwrap().1.push(line);
                return;
            }
            let name = format!("[{table}]");
            match tables.iter_mut().find(|(t, _)| *t == name) {
                Some((_, lines)) => lines.push(line),
                None => tables.push((name, vec![line])),
            }
        };
        let mut raw = String::new();
        for l in &self.lines {
            match l {
                Line::Set { key, value } => {
                    let (t, k) = KEYS[*key as usize % KEYS.len()];
                    push(t, format!("{k} = {}", VALUES[*value as usize % VALUES.len()]), &mut tables);
                }
                Line::Raw { key, value } => {
                    let (t, k) = KEYS[*key as usize % KEYS.len()];
                    push(t, format!("{k} = {value}"), &mut tables);
                }
                Line::NewRoute => tables.push(("[[routes]]".into(), Vec::new())),
                Line::Text(s) => raw.push_str(s),
            }
        }
        let mut text = String::new();
        for (t, lines) in tables {
            text.push_str(&t);
            text.push('\n');
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        text.push_str(&raw);
        let env = self
            .env
            .iter()
            .map(|(k, v)| {
                let (t, key) = KEYS[*k as usize % KEYS.len()];
                (format!("VPCGATE__{}__{}", t.to_uppercase(), key.to_uppercase()), VALUES[*v as usize % VALUES.len()].trim_matches('"').to_string())
            })
            .collect();
        (text, env)
    }
}

pub fn check_config(text: &str, env: HashMap<String, String>, file: &std::path::Path) {
    std::fs::write(file, text).expect("the scratch config file is writable");
    match load(&Sources { file: Some(file.to_path_buf()), env }, &[]) {
        Err(e) => {
            let said = e.to_string();
            assert!(!said.trim().is_empty(), "an empty configuration error");
            assert!(!said.contains('\n'), "a configuration error of more than one line: {said:?}");
        }
        Ok(l) => {
            assert!(!l.regions.is_empty(), "a configuration without regions");
            for r in &l.routes {
                assert!(!r.cidrs.is_empty() || r.follow.is_some(), "route {} holds nothing and follows nothing", r.name);
                for c in &r.cidrs {
                    assert_eq!(vpcgate::routes::parse_cidr(&c.to_string()).as_ref(), Ok(c), "route {} holds {c}, which the route rules refuse", r.name);
                }
            }
        }
    }
}

//! `loadgen report --results FILE`: medians over rounds (sums for error counts) of the lines
//! `ROUND SETUP METRIC VALUE` written by run.sh, as markdown tables: the figures with each proxy
//! figure's ratio to direct, the targets, and every round's value. Setups other than vpcgate's
//! (peers such as squid or hudsucker, run beside it) get columns of their own after inspect.
//! `--charts DIR [--caption TEXT]` also writes the medians as SVG bar charts (`charts.rs`).

use crate::args::Args;
use crate::R;
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq)]
enum Agg {
    Median,
    Sum,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    agg: Agg,
    /// Show the ratio to direct.
    ratio: bool,
    decimals: usize,
}

const fn m(key: &'static str, label: &'static str, agg: Agg, ratio: bool, decimals: usize) -> Metric {
    Metric { key, label, agg, ratio, decimals }
}

/// vpcgate's setups, always shown first and in this order.
const SETUPS: [&str; 3] = ["direct", "passthrough", "inspect"];

const METRICS: &[Metric] = &[
    m("bulk_mbps", "bulk: one large GET, MB/s (10⁶ B/s)", Agg::Median, true, 0),
    m("bulk_cpu_s_per_gib", "bulk: proxy CPU s per GiB", Agg::Median, false, 3),
    m("upload_mbps", "upload: one large PUT, MB/s (10⁶ B/s)", Agg::Median, true, 0),
    m("upload_cpu_s_per_gib", "upload: proxy CPU s per GiB", Agg::Median, false, 3),
    m("cr_conn_per_s", "connrate: connections/s (32 workers)", Agg::Median, true, 0),
    m("cr_p50_ms", "connrate: p50 latency, ms", Agg::Median, true, 2),
    m("cr_p99_ms", "connrate: p99 latency, ms", Agg::Median, true, 2),
    m("cr_max_ms", "connrate: max latency, ms", Agg::Median, true, 1),
    m("cr_errors", "connrate: errors (all rounds)", Agg::Sum, false, 0),
    m("cr_cpu_s_per_1k", "connrate: proxy CPU s per 1,000 connections", Agg::Median, false, 3),
    m("ka_req_per_s", "keepalive: requests/s (32 connections)", Agg::Median, true, 0),
    m("ka_p50_ms", "keepalive: p50 latency, ms", Agg::Median, true, 3),
    m("ka_p99_ms", "keepalive: p99 latency, ms", Agg::Median, true, 3),
    m("ka_errors", "keepalive: errors (all rounds)", Agg::Sum, false, 0),
    m("ka_cpu_us_per_req", "keepalive: proxy CPU µs per request", Agg::Median, false, 1),
    m("idle_kib_per_tunnel", "idle: proxy RSS per idle tunnel, KiB", Agg::Median, false, 1),
    m("idle_tunnels", "idle: tunnels held open", Agg::Median, false, 0),
    m("idle_errors", "idle: errors (all rounds)", Agg::Sum, false, 0),
    m("idle_open_s", "idle: time to open them, s", Agg::Median, true, 2),
    m("idle_rss_base_mib", "idle: proxy RSS before, MiB", Agg::Median, false, 1),
    m("mint_warm_ms", "mint: handshake to a warm host, ms", Agg::Median, true, 2),
    m("mint_first_ms", "mint: first handshake to a new host, ms", Agg::Median, true, 2),
    m("mint_cold_per_s", "mint: distinct new hosts/s (cold leaf cache)", Agg::Median, true, 0),
    m("mint_warm_per_s", "mint: same hosts again/s (warm cache)", Agg::Median, true, 0),
    m("mint_remints", "mint: hosts re-minted on the warm pass (all rounds)", Agg::Sum, false, 0),
    m("mint_errors", "mint: errors (all rounds)", Agg::Sum, false, 0),
];

/// (setup, metric key, comparison, bound, whether the bound applies to the ratio to direct).
const TARGETS: &[(&str, &str, &str, f64, bool)] = &[
    ("passthrough", "bulk_mbps", ">=", 0.95, true),
    ("passthrough", "bulk_cpu_s_per_gib", "<=", 0.35, false),
    ("passthrough", "ka_req_per_s", ">=", 0.65, true),
    ("passthrough", "cr_conn_per_s", ">=", 0.65, true),
    ("passthrough", "idle_kib_per_tunnel", "<=", 16.0, false),
    ("passthrough", "idle_errors", "<=", 0.0, false),
    ("inspect", "bulk_mbps", ">=", 0.85, true),
    ("inspect", "bulk_cpu_s_per_gib", "<=", 0.55, false),
    ("inspect", "ka_req_per_s", ">=", 0.60, true),
    ("inspect", "cr_conn_per_s", ">=", 1.10, true),
    ("inspect", "idle_kib_per_tunnel", "<=", 24.0, false),
    ("inspect", "idle_errors", "<=", 0.0, false),
    ("inspect", "mint_remints", "<=", 0.0, false),
];

pub(crate) fn fmt(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map(|(i, f)| (i.to_string(), format!(".{f}"))).unwrap_or((s.clone(), String::new()));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}{frac}", if v < 0.0 { "-" } else { "" })
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn main(a: &Args) -> R<()> {
    let path = a.req("results")?;
    let detail = a.opt("detail").unwrap_or("true") == "true";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // (setup, metric) -> round -> value
    let mut data: BTreeMap<(String, String), BTreeMap<u32, f64>> = BTreeMap::new();
    let mut setups: Vec<String> = SETUPS.iter().map(|s| s.to_string()).collect();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            continue;
        }
        let round: u32 = f[0].parse().map_err(|_| format!("{path}:{}: bad round {:?}", i + 1, f[0]))?;
        let v: f64 = f[3].parse().map_err(|_| format!("{path}:{}: bad value {:?}", i + 1, f[3]))?;
        if !setups.iter().any(|s| s == f[1]) {
            setups.push(f[1].to_string());
        }
        data.entry((f[1].to_string(), f[2].to_string())).or_default().insert(round, v);
    }
    let agg = |setup: &str, m: &Metric| -> Option<f64> {
        let vals: Vec<f64> = data.get(&(setup.to_string(), m.key.to_string()))?.values().copied().collect();
        Some(match m.agg {
            Agg::Median => median(&vals),
            Agg::Sum => vals.iter().sum(),
        })
    };

    let header = |ratio: bool| {
        let cols: Vec<String> = setups.iter().enumerate().map(|(i, s)| if ratio && i > 0 { format!("{s} (ratio)") } else { s.clone() }).collect();
        println!("| {} | {} |", if ratio { "metric" } else { "cell" }, cols.join(" | "));
        println!("|---|{}", "---:|".repeat(setups.len()));
    };
    header(true);
    for m in METRICS {
        let d = agg("direct", m);
        let mut cells = vec![d.map(|v| fmt(v, m.decimals)).unwrap_or_else(|| "—".into())];
        for s in &setups[1..] {
            cells.push(match (agg(s, m), d) {
                (None, _) => "—".into(),
                (Some(v), Some(dv)) if m.ratio && dv > 0.0 && v.is_finite() => {
                    format!("{} ({:.2}×)", fmt(v, m.decimals), v / dv)
                }
                (Some(v), _) => fmt(v, m.decimals),
            });
        }
        println!("| {} | {} |", m.label, cells.join(" | "));
    }

    println!();
    println!("| target | measured | met |");
    println!("|---|---:|:---:|");
    for (setup, key, cmp, bound, is_ratio) in TARGETS {
        let m = METRICS.iter().find(|m| m.key == *key).expect("target metric exists");
        let v = agg(setup, m);
        let d = agg("direct", m);
        let measured = match (v, is_ratio) {
            (Some(v), true) => d.filter(|d| *d > 0.0).map(|d| v / d),
            (None, true) => None,
            (v, false) => v,
        };
        let met = match measured {
            Some(x) if x.is_finite() => {
                if (*cmp == ">=" && x >= *bound) || (*cmp == "<=" && x <= *bound) {
                    "yes"
                } else {
                    "**no**"
                }
            }
            _ => "n/a",
        };
        let shown = match measured {
            Some(x) if *is_ratio => format!("{x:.2}×"),
            Some(x) => fmt(x, m.decimals.max(if *bound < 1.0 && *bound > 0.0 { 2 } else { 0 })),
            None => "n/a".into(),
        };
        let what = if *is_ratio { format!("{} ÷ direct", m.label) } else { m.label.to_string() };
        let b = if *is_ratio { format!("{bound:.2}×") } else { format!("{bound}") };
        println!("| {setup}: {what} {cmp} {b} | {shown} | {met} |");
    }

    // Other work on the machine during each cell (run.sh: busy CPU time of the whole machine minus
    // that of loadgen, the upstream and vpcgate, as % of all CPUs over the cell).
    let cells = ["bulk", "upload", "connrate", "keepalive", "idle", "mint"];
    let mut foreign: Vec<(String, Vec<String>)> = Vec::new();
    let mut worst = 0.0f64;
    for c in cells {
        let key = format!("{c}_foreign_pct");
        let row: Vec<String> = setups
            .iter()
            .map(|s| match data.get(&(s.clone(), key.clone())) {
                None => "—".into(),
                Some(by_round) => by_round
                    .values()
                    .map(|v| {
                        worst = worst.max(*v);
                        format!("{v:.0}")
                    })
                    .collect::<Vec<_>>()
                    .join(" / "),
            })
            .collect();
        if row.iter().any(|c| c != "—") {
            foreign.push((c.to_string(), row));
        }
    }
    if !foreign.is_empty() {
        println!();
        println!("Other work on the machine during each cell, % of all CPUs (per round; worst {worst:.0} %; cells over FOREIGN_MAX were rerun):");
        println!();
        header(false);
        for (c, row) in &foreign {
            println!("| {c} | {} |", row.join(" | "));
        }
    }

    if let Some(dir) = a.opt("charts") {
        let caption = a.opt("caption").unwrap_or("");
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        let value = |setup: &str, key: &str| METRICS.iter().find(|m| m.key == key).and_then(|m| agg(setup, m));
        let mut written = Vec::new();
        for chart in crate::charts::CHARTS {
            if let Some(svg) = crate::charts::render(chart, &setups, &value, caption) {
                let path = std::path::Path::new(dir).join(chart.file);
                std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
                written.push(chart.file);
            }
        }
        eprintln!("charts written to {dir}: {}", written.join(", "));
    }

    if detail {
        let rounds: Vec<u32> = {
            let mut r: Vec<u32> = data.values().flat_map(|m| m.keys().copied()).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        println!();
        println!("Per-round values (rounds {}):", rounds.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
        println!();
        println!("| metric | {} |", setups.join(" | "));
        println!("|---|{}", "---:|".repeat(setups.len()));
        for m in METRICS {
            let cells: Vec<String> = setups
                .iter()
                .map(|s| match data.get(&(s.clone(), m.key.to_string())) {
                    None => "—".into(),
                    Some(by_round) => {
                        rounds.iter().map(|r| by_round.get(r).map(|v| fmt(*v, m.decimals)).unwrap_or_else(|| "·".into())).collect::<Vec<_>>().join(" / ")
                    }
                })
                .collect();
            println!("| {} | {} |", m.key, cells.join(" | "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_median() {
        assert_eq!(fmt(1303.4, 0), "1,303");
        assert_eq!(fmt(1234567.891, 2), "1,234,567.89");
        assert_eq!(fmt(0.5, 3), "0.500");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

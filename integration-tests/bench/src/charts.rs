//! `loadgen report --charts DIR`: the run's medians as SVG bar charts, each setup side by side
//! in every group (direct, vpcgate's modes, then the peers), so that the book's performance page
//! shows the figures of one run beside the table. Plain SVG, no dependencies; the caption says
//! which run (date, commit, machine).

use std::fmt::Write as _;

/// One chart: its file, title, unit, and the metric keys it groups (with their group labels).
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub groups: &'static [(&'static str, &'static str)],
    /// Whether more is better (said under the title).
    pub higher_is_better: bool,
}

pub const CHARTS: &[Chart] = &[
    Chart {
        file: "throughput.svg",
        title: "Bulk throughput: one 1 GiB transfer",
        unit: "MB/s",
        groups: &[("bulk_mbps", "GET (download)"), ("upload_mbps", "PUT (upload)")],
        higher_is_better: true,
    },
    Chart {
        file: "cpu-per-gib.svg",
        title: "Proxy CPU per GiB moved",
        unit: "CPU seconds",
        groups: &[("bulk_cpu_s_per_gib", "GET (download)"), ("upload_cpu_s_per_gib", "PUT (upload)")],
        higher_is_better: false,
    },
    Chart {
        file: "keepalive-rate.svg",
        title: "Keep-alive requests per second (32 connections, 1 KiB GETs)",
        unit: "requests/s",
        groups: &[("ka_req_per_s", "keep-alive")],
        higher_is_better: true,
    },
    Chart {
        file: "keepalive-latency.svg",
        title: "Keep-alive request latency (32 connections)",
        unit: "ms",
        groups: &[("ka_p50_ms", "p50"), ("ka_p99_ms", "p99")],
        higher_is_better: false,
    },
    Chart {
        file: "connrate.svg",
        title: "New connections per second (CONNECT, handshake, one 1 KiB GET; 32 workers)",
        unit: "connections/s",
        groups: &[("cr_conn_per_s", "new connections")],
        higher_is_better: true,
    },
    Chart {
        file: "connrate-latency.svg",
        title: "New-connection latency (32 workers)",
        unit: "ms",
        groups: &[("cr_p50_ms", "p50"), ("cr_p99_ms", "p99")],
        higher_is_better: false,
    },
    Chart {
        file: "idle-memory.svg",
        title: "Memory per idle tunnel",
        unit: "KiB of proxy RSS",
        groups: &[("idle_kib_per_tunnel", "idle tunnel")],
        higher_is_better: false,
    },
];

const COLOURS: [&str; 8] = ["#7f7f7f", "#2f6db3", "#6b46b3", "#d08a00", "#2d8a4e", "#b33a3a", "#3a9bb3", "#8a5a2d"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&#39;")
}

fn label(v: f64) -> String {
    if v >= 100.0 {
        crate::report::fmt(v, 0)
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One chart as SVG: a group of horizontal bars per metric, one bar per setup that has it.
/// `value(setup, key)` is the run's aggregate; setups without a value are left out of a group.
pub fn render(chart: &Chart, setups: &[String], value: &dyn Fn(&str, &str) -> Option<f64>, caption: &str) -> Option<String> {
    let rows: Vec<(&str, Vec<(usize, f64)>)> = chart
        .groups
        .iter()
        .map(|(key, name)| (*name, setups.iter().enumerate().filter_map(|(i, s)| value(s, key).filter(|v| v.is_finite()).map(|v| (i, v))).collect::<Vec<_>>()))
        .filter(|(_, bars)| !bars.is_empty())
        .collect();
    if rows.is_empty() {
        return None;
    }
    let max = rows.iter().flat_map(|(_, b)| b.iter().map(|(_, v)| *v)).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    let (w, left, right, bar, gap) = (860.0, 190.0, 90.0, 16.0, 18.0);
    let plot = w - left - right;
    let legend_h = 30.0;
    let top = 58.0 + legend_h;
    let height: f64 = top + rows.iter().map(|(_, b)| b.len() as f64 * (bar + 3.0) + gap).sum::<f64>() + 40.0;
    let mut s = String::new();
    let _ = writeln!(s, "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {w} {height:.0}' width='{w}' height='{height:.0}' role='img'>");
    let _ = writeln!(s, "<title>{}</title>", esc(chart.title));
    let font = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'";
    let _ = writeln!(s, "<rect width='{w}' height='{height:.0}' fill='#ffffff'/>");
    let _ = writeln!(s, "<text x='20' y='26' {font} font-size='16' font-weight='bold' fill='#222'>{}</text>", esc(chart.title));
    let better = if chart.higher_is_better { "longer is better" } else { "shorter is better" };
    let _ = writeln!(s, "<text x='20' y='46' {font} font-size='12' fill='#555'>{} ({better})</text>", esc(chart.unit));
    // Legend: every setup that appears in the chart, in the run's order.
    let mut x = 20.0;
    for (i, name) in setups.iter().enumerate() {
        if !rows.iter().any(|(_, b)| b.iter().any(|(j, _)| *j == i)) {
            continue;
        }
        let c = COLOURS[i % COLOURS.len()];
        let _ = writeln!(s, "<rect x='{x}' y='60' width='12' height='12' fill='{c}'/>");
        let _ = writeln!(s, "<text x='{}' y='70' {font} font-size='12' fill='#222'>{}</text>", x + 16.0, esc(name));
        x += 26.0 + name.len() as f64 * 7.2;
    }
    let mut y = top;
    for (name, bars) in &rows {
        let group_h = bars.len() as f64 * (bar + 3.0);
        let _ = writeln!(
            s,
            "<text x='{}' y='{:.1}' text-anchor='end' {font} font-size='12' fill='#222'>{}</text>",
            left - 10.0,
            y + group_h / 2.0 + 4.0,
            esc(name)
        );
        for (i, v) in bars {
            let len = (v / max * plot).max(1.0);
            let c = COLOURS[i % COLOURS.len()];
            let _ =
                writeln!(s, "<rect x='{left}' y='{y:.1}' width='{len:.1}' height='{bar}' fill='{c}'><title>{}: {}</title></rect>", esc(&setups[*i]), label(*v));
            let _ = writeln!(s, "<text x='{:.1}' y='{:.1}' {font} font-size='11' fill='#222'>{}</text>", left + len + 5.0, y + bar - 4.0, label(*v));
            y += bar + 3.0;
        }
        y += gap;
    }
    let _ = writeln!(s, "<line x1='{left}' y1='{:.1}' x2='{left}' y2='{:.1}' stroke='#999'/>", top - 6.0, y - gap + 4.0);
    let _ = writeln!(s, "<text x='20' y='{:.1}' {font} font-size='11' fill='#555'>{}</text>", height - 14.0, esc(caption));
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_bar_per_setup_with_a_value_and_says_which_run() {
        let setups: Vec<String> = ["direct", "passthrough", "inspect", "squid"].iter().map(|s| s.to_string()).collect();
        let value = |s: &str, k: &str| match (s, k) {
            ("direct", "bulk_mbps") => Some(1000.0),
            ("inspect", "bulk_mbps") => Some(500.0),
            ("squid", "upload_mbps") => Some(250.0),
            _ => None,
        };
        let svg = render(&CHARTS[0], &setups, &value, "2026-12-03, commit abc1234").unwrap();
        assert_eq!(svg.matches("<rect x='190'").count(), 3, "{svg}");
        assert!(svg.contains(">1,000<") && svg.contains(">500<") && svg.contains(">250<"), "{svg}");
        assert!(svg.contains("commit abc1234") && !svg.contains(">passthrough<"), "{svg}");
        // The longest bar is the largest value; the others are in proportion.
        assert!(svg.contains("width='580.0'") && svg.contains("width='290.0'") && svg.contains("width='145.0'"), "{svg}");
        let idle = CHARTS.iter().find(|c| c.file == "idle-memory.svg").unwrap();
        assert!(render(idle, &setups, &value, "x").is_none());
    }
}

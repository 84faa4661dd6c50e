//! The history section: two exporters, one keeping each symbol's history (the defaults) and one
//! without (`--history.points 0`), measured in turn while every hash gets new values, and the
//! budgets history on is held to at 10,000 symbols.

use std::fmt::Write as _;

use super::{Goal, MIB, Results, bytes, check, count, or_dash, ratio, sig, size, table};

const ON: &str = "history_on";
const OFF: &str = "history_off";
/// The same exporters' /metrics runs once the writer stopped.
const STEADY_ON: &str = "history_steady_on";
const STEADY_OFF: &str = "history_steady_off";
const TEN: &str = "10000";

impl Results {
    /// Exporter CPU per refresh over all the cost windows of one side: the windows' CPU added up
    /// over their refreshes added up, so that a window cut short weighs as little as it holds.
    pub(super) fn rewritten_cpu_ms(&self, n: &str, target: &str) -> Option<f64> {
        let cpu = self.all(n, target, "rewritten_cpu_ms");
        let refreshes = self.all(n, target, "rewritten_refreshes");
        let total: f64 = refreshes.iter().sum();
        (cpu.len() == refreshes.len() && total > 0.0)
            .then(|| cpu.iter().zip(&refreshes).map(|(c, r)| c * r).sum::<f64>() / total)
    }

    pub(super) fn rewritten_refreshes(&self, n: &str, target: &str) -> Option<f64> {
        let all = self.all(n, target, "rewritten_refreshes");
        (!all.is_empty()).then(|| all.iter().sum())
    }

    /// RSS once every ring is full, after the side's last cost window.
    fn settled_rss(&self, n: &str, target: &str) -> Option<f64> {
        self.get(n, target, "rss_settled_bytes")
    }
}

fn sizes(r: &Results) -> Vec<&str> {
    r.sizes
        .iter()
        .map(String::as_str)
        .filter(|n| r.rewritten_cpu_ms(n, ON).is_some() || r.rps(n, ON, "plain").is_some())
        .collect()
}

/// One budget of history on against off at 10,000 symbols.
struct Budget {
    /// Its row in the goals table.
    goal: &'static str,
    /// Its words in the section's verdict.
    phrase: &'static str,
    value: Option<f64>,
    shown: fn(f64) -> String,
    limit: &'static str,
    pass: fn(f64) -> bool,
}

fn budget_list(r: &Results) -> [Budget; 3] {
    let rss = r
        .settled_rss(TEN, ON)
        .zip(r.settled_rss(TEN, OFF))
        .map(|(on, off)| (on - off) / MIB);
    let cpu = r
        .rewritten_cpu_ms(TEN, ON)
        .zip(r.rewritten_cpu_ms(TEN, OFF).filter(|&off| off > 0.0))
        .map(|(on, off)| on / off);
    let throughput = r
        .rps(TEN, STEADY_ON, "plain")
        .zip(r.rps(TEN, STEADY_OFF, "plain").filter(|&off| off > 0.0))
        .map(|(on, off)| on / off);
    [
        Budget {
            goal: "history at 10,000: RSS on − off, every ring full (MiB)",
            phrase: "RSS",
            value: rss,
            shown: |v| format!("{}{} MiB", if v >= 0.0 { "+" } else { "" }, sig(v)),
            limit: "≤ 8",
            pass: |v| v <= 8.0,
        },
        Budget {
            goal: "history at 10,000: refresh CPU, every hash rewritten, on / off",
            phrase: "refresh CPU",
            value: cpu,
            shown: |v| format!("{}×", sig(v)),
            limit: "≤ 1.05",
            pass: |v| v <= 1.05,
        },
        Budget {
            goal: "history at 10,000: /metrics throughput (plain, writer stopped), on / off",
            phrase: "/metrics throughput",
            value: throughput,
            shown: |v| format!("{}×", sig(v)),
            limit: "≥ 0.95",
            pass: |v| v >= 0.95,
        },
    ]
}

/// The budgets as rows of the goals table.
pub(super) fn budgets(r: &Results) -> Vec<Goal> {
    budget_list(r)
        .into_iter()
        .map(|b| check(b.goal.into(), b.value, b.limit.into(), b.pass))
        .collect()
}

/// The section's verdict: each budget's figure with history on against off, and its result.
fn verdict(r: &Results) -> String {
    let list = budget_list(r);
    if list.iter().all(|b| b.value.is_none()) {
        return "**Budget at 10,000 symbols:** not measured in this run.".into();
    }
    let parts: Vec<String> = list
        .iter()
        .map(|b| match b.value {
            Some(v) => {
                let result = if (b.pass)(v) { "pass" } else { "**fail**" };
                format!("{} {} ({}: {result})", b.phrase, (b.shown)(v), b.limit)
            }
            None => format!("{} not measured", b.phrase),
        })
        .collect();
    format!(
        "**Budget at 10,000 symbols**, history on against off: {}.",
        parts.join("; ")
    )
}

pub(super) fn section(out: &mut String, r: &Results) {
    let sizes = sizes(r);
    if sizes.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "## History on and off\n\nTwo exporters at once at the fast poll interval of Refresh cost: one keeps each symbol's history as it ships (the defaults of `--history.points` and `--history.max-age`), the other none (`--history.points 0`). Meanwhile the simulator writes new values into every hash, over and over (another seed each pass), so that every refresh records a point for every symbol. The figures are taken after {} refreshes of each, more than a ring holds: every symbol's ring has been full and thinned, the worst case (points held: those of the story of the symbol in the middle of the list, between three quarters of the ring and all of it, as a quarter goes at each thinning). Refresh CPU: all threads' schedstat time over windows of whole refreshes as in Refresh cost, six per exporter in the order on, off, off, on three times, the other paused (SIGSTOP), the windows' CPU over their refreshes. RSS: after each exporter's last window. /metrics: wrk as in Throughput under load, plain, {} per exporter, alternating, the other paused; requests per second of the best, first with the writer still running (the refreshes' extra CPU then competes with the scrapes for the two cores), then with it stopped, as Throughput under load measures (the scrape path reads no history). The budget is held to the latter; the former is the refresh CPU's share, which the CPU columns measure.\n\n",
        r.meta("history_warmup"),
        match r.meta("repeat") {
            "1" => "one run".to_owned(),
            runs => format!("{runs} runs"),
        },
    );
    let rows = sizes
        .iter()
        .map(|n| {
            let (rss_on, rss_off) = (r.settled_rss(n, ON), r.settled_rss(n, OFF));
            let (cpu_on, cpu_off) = (r.rewritten_cpu_ms(n, ON), r.rewritten_cpu_ms(n, OFF));
            let (rps_on, rps_off) = (r.rps(n, ON, "plain"), r.rps(n, OFF, "plain"));
            let steady = (r.rps(n, STEADY_ON, "plain"), r.rps(n, STEADY_OFF, "plain"));
            vec![
                size(n),
                or_dash(r.get(n, ON, "story_points"), count),
                format!(
                    "{} / {}",
                    or_dash(r.rewritten_refreshes(n, ON), count),
                    or_dash(r.rewritten_refreshes(n, OFF), count)
                ),
                or_dash(rss_on, bytes),
                or_dash(rss_off, bytes),
                or_dash(rss_on.zip(rss_off).map(|(a, b)| (a - b) / MIB), sig),
                or_dash(cpu_on, sig),
                or_dash(cpu_off, sig),
                ratio(cpu_on, cpu_off),
                or_dash(rps_on, sig),
                or_dash(rps_off, sig),
                ratio(rps_on, rps_off),
                or_dash(steady.0, sig),
                or_dash(steady.1, sig),
                ratio(steady.0, steady.1),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "points held",
            "refreshes on / off",
            "RSS on",
            "RSS off",
            "RSS on − off (MiB)",
            "refresh CPU on (ms)",
            "refresh CPU off (ms)",
            "CPU on / off",
            "/metrics on, writing (req/s)",
            "/metrics off, writing (req/s)",
            "throughput on / off, writing",
            "/metrics on, stopped (req/s)",
            "/metrics off, stopped (req/s)",
            "throughput on / off, stopped",
        ],
        rows,
    );

    out.push_str("**Telling a story.** Single requests as in Single-scrape latency, plain, to the exporter with history once the writer has stopped (every ring still full): `/metrics`, then the symbol's story as JSON and as a page. Milliseconds, p50 / p99; the number of requests is in parentheses.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let times = |prefix: &str| {
                let get = |key: &str| r.get(n, ON, &format!("{prefix}{key}"));
                match (get("p50_ms"), get("p99_ms"), get("count")) {
                    (Some(p50), Some(p99), Some(requests)) => {
                        format!("{} / {} ({})", sig(p50), sig(p99), count(requests))
                    }
                    _ => r
                        .text(n, ON, &format!("{prefix}skipped"))
                        .map_or_else(|| "–".into(), |why| format!("skipped: {why}")),
                }
            };
            vec![
                size(n),
                r.text(n, ON, "story_symbol").unwrap_or("–").to_owned(),
                times("single_plain_"),
                times("story_"),
                or_dash(r.get(n, ON, "story_wire_bytes"), bytes),
                times("symbol_page_"),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "symbol",
            "/metrics",
            "/api/v1/proposals/{symbol}",
            "story body",
            "/symbol/{symbol}",
        ],
        rows,
    );

    let _ = writeln!(out, "{}\n", verdict(r));
}

#[cfg(test)]
mod tests {
    use super::super::{Results, render};

    #[test]
    fn history_is_set_against_none_and_judged_at_ten_thousand() {
        let mut tsv = "-\tmeta\tsizes\t10000\n-\tmeta\thistory_warmup\t35\n-\tmeta\trepeat\t3\n\
10000\thistory_on\tstory_points\t30\n10000\thistory_on\tstory_symbol\tS005000USDT\n"
            .to_owned();
        for (side, windows, rss, rps, steady) in [
            ("on", [(4, 70.0), (2, 76.0)], 30 << 20, 97, 99),
            ("off", [(4, 66.0), (4, 68.0)], 24 << 20, 100, 100),
        ] {
            for (refreshes, cpu) in windows {
                tsv += &format!(
                    "10000\thistory_{side}\trewritten_refreshes\t{refreshes}\n10000\thistory_{side}\trewritten_cpu_ms\t{cpu}\n"
                );
            }
            tsv += &format!(
                "10000\thistory_{side}\trss_settled_bytes\t{rss}\n\
10000\thistory_{side}\tload_plain_requests\t{rps}\n10000\thistory_{side}\tload_plain_duration_us\t1000000\n\
10000\thistory_steady_{side}\tload_plain_requests\t{steady}\n10000\thistory_steady_{side}\tload_plain_duration_us\t1000000\n"
            );
        }
        tsv += "10000\thistory_on\tstory_count\t50\n10000\thistory_on\tstory_p50_ms\t0.4\n\
10000\thistory_on\tstory_p99_ms\t0.9\n10000\thistory_on\tsymbol_page_skipped\tHTTP 404\n";
        let markdown = render(&Results::parse(&tsv));
        assert!(markdown.contains("## History on and off"), "{markdown}");
        assert!(markdown.contains(
            "| 10,000 | 30 | 6 / 8 | 30.0 MiB | 24.0 MiB | 6.00 | 72.0 | 67.0 | 1.07× | 97.0 | 100 | 0.970× | 99.0 | 100 | 0.990× |"
        ));
        assert!(
            markdown.contains(
                "| 10,000 | S005000USDT | – | 0.400 / 0.900 (50) | – | skipped: HTTP 404 |"
            )
        );
        assert!(markdown.contains(
            "**Budget at 10,000 symbols**, history on against off: RSS +6.00 MiB (≤ 8: pass); \
refresh CPU 1.07× (≤ 1.05: **fail**); /metrics throughput 0.990× (≥ 0.95: pass)."
        ));
        assert!(markdown.contains(
            "| history at 10,000: refresh CPU, every hash rewritten, on / off | 1.07 | ≤ 1.05 | **fail** |"
        ));
        let elsewhere = render(&Results::parse("-\tmeta\tsizes\t3\n"));
        assert!(!elsewhere.contains("## History on and off"));
        assert!(!elsewhere.contains("Budget at 10,000"));
    }
}

//! The history section: an exporter keeping each symbol's history (the defaults) and two
//! without (`--history.points 0`), measured in turn while every hash gets new values; the budgets
//! history on is held to at 10,000 symbols, and the two without against each other: the run's
//! noise.

use std::fmt::Write as _;

use super::{Goal, MIB, Results, bytes, check, count, or_dash, sig, size, table};

const ON: &str = "history_on";
const OFF: &str = "history_off";
/// The second exporter without history.
const TWIN: &str = "history_twin";
/// The same exporters' /metrics runs once the writer stopped.
const STEADY_ON: &str = "history_steady_on";
const STEADY_OFF: &str = "history_steady_off";
const STEADY_TWIN: &str = "history_steady_twin";
const TEN: &str = "10000";
/// The library's benchmark of the history alone (`history::tests`), in one process.
const RECORDING: &str = "history_record";

impl Results {
    /// Exporter CPU per refresh over all the rounds of one side: the rounds' CPU added up over
    /// their refreshes added up, so that a round cut short weighs as little as it holds.
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

    /// RSS once every ring is full, after the last round.
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

/// One exporter against the one without history, at size `n`: RSS apart (MiB), refresh CPU
/// and /metrics throughput (writer running, and stopped) as ratios.
struct Against {
    rss: Option<f64>,
    cpu: Option<f64>,
    throughput_writing: Option<f64>,
    throughput: Option<f64>,
}

impl Against {
    /// `side` and `steady`: the exporter's targets, with the writer running and stopped.
    fn off(r: &Results, n: &str, side: &str, steady: &str) -> Against {
        let over =
            |a: Option<f64>, b: Option<f64>| a.zip(b.filter(|&b| b > 0.0)).map(|(a, b)| a / b);
        Against {
            rss: r
                .settled_rss(n, side)
                .zip(r.settled_rss(n, OFF))
                .map(|(a, b)| (a - b) / MIB),
            cpu: over(r.rewritten_cpu_ms(n, side), r.rewritten_cpu_ms(n, OFF)),
            throughput_writing: over(r.rps(n, side, "plain"), r.rps(n, OFF, "plain")),
            throughput: over(r.rps(n, steady, "plain"), r.rps(n, STEADY_OFF, "plain")),
        }
    }
}

/// Recording one publication of every symbol changed, in the library's benchmark, over the
/// refresh CPU without history at the same size, in percent: the history's share, free of the
/// noise of the end-to-end turns.
fn recording_share(r: &Results) -> Option<f64> {
    let symbols = r.text("-", RECORDING, "symbols")?;
    let recording_ms = r.get("-", RECORDING, "changed_cpu_ns")? / 1e6;
    let off = r.rewritten_cpu_ms(symbols, OFF).filter(|&off| off > 0.0)?;
    Some(recording_ms / off * 100.0)
}

fn budget_list(r: &Results) -> [Budget; 4] {
    let Against {
        rss,
        cpu,
        throughput,
        ..
    } = Against::off(r, TEN, ON, STEADY_ON);
    [
        Budget {
            goal: "history at 10,000: RSS on − off, every ring full (MiB)",
            phrase: "RSS",
            value: rss,
            shown: mib_apart,
            limit: "≤ 8",
            pass: |v| v <= 8.0,
        },
        Budget {
            goal: "history at 10,000: refresh CPU, every hash rewritten, on / off",
            phrase: "refresh CPU",
            value: cpu,
            shown: times,
            limit: "≤ 1.05",
            pass: |v| v <= 1.05,
        },
        Budget {
            goal: "history at 10,000: recording a publication, every value changed, in one process, over refresh CPU off (%)",
            phrase: "recording alone",
            value: recording_share(r),
            shown: |v| format!("{}%", sig(v)),
            limit: "≤ 5%",
            pass: |v| v <= 5.0,
        },
        Budget {
            goal: "history at 10,000: /metrics throughput (plain, writer stopped), on / off",
            phrase: "/metrics throughput",
            value: throughput,
            shown: times,
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
    let twin = Against::off(r, TEN, TWIN, STEADY_TWIN);
    let noise = match (twin.rss, twin.cpu, twin.throughput) {
        (Some(rss), Some(cpu), Some(throughput)) => format!(
            " The two exporters without history, against each other in the same turns: RSS {}, refresh CPU {}, /metrics throughput {}; differences of that size are this run's noise, not the history's.",
            mib_apart(rss),
            times(cpu),
            times(throughput)
        ),
        _ => String::new(),
    };
    format!(
        "**Budget at 10,000 symbols**, history on against off: {}.{noise}",
        parts.join("; ")
    )
}

/// The library's benchmark of the history alone, beside the end-to-end figures above.
fn recording(out: &mut String, r: &Results) {
    let get = |key: &str| r.get("-", RECORDING, key);
    let (Some(symbols), Some(changed), Some(unchanged), Some(held)) = (
        r.text("-", RECORDING, "symbols"),
        get("changed_cpu_ns"),
        get("unchanged_cpu_ns"),
        get("held_bytes"),
    ) else {
        return;
    };
    let share = recording_share(r).map_or_else(String::new, |share| {
        format!(", {}% of the refresh CPU without history above", sig(share))
    });
    let _ = write!(
        out,
        "**The history alone.** The library's benchmark (`history::tests::recording_ten_thousand_symbols`, release build), in one process, away from the noise of the others: {} symbols, every ring full ({} points held by the symbol in the middle), a publication every 5 s; the CPU of recording one, the mean over 48 in a row (thinning included), the lowest of 5 such runs. Every value changed: {} ms per publication{share}; none changed: {} ms. The history then holds {} (its tracks, names and slabs, the allocator's overhead aside).\n\n",
        size(symbols),
        or_dash(get("points"), count),
        sig(changed / 1e6),
        sig(unchanged / 1e6),
        bytes(held),
    );
}

fn mib_apart(value: f64) -> String {
    format!("{}{} MiB", if value >= 0.0 { "+" } else { "" }, sig(value))
}

fn times(value: f64) -> String {
    format!("{}×", sig(value))
}

pub(super) fn section(out: &mut String, r: &Results) {
    let sizes = sizes(r);
    if sizes.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "## History on and off\n\nThree exporters at once at the fast poll interval of Refresh cost: one keeps each symbol's history as it ships (the defaults of `--history.points` and `--history.max-age`), two keep none (`--history.points 0`); the second of these, the twin, is measured as the others are, to show how far two identical exporters differ in the same run. The simulator writes new values into every hash, over and over (another seed each pass), so that every refresh records a point for every symbol. The figures are taken after {} refreshes of each, more than a ring holds: every symbol's ring has been full and thinned, the worst case (points held: those of the story of the symbol in the middle of the list, between three quarters of the ring and all of it, as a quarter goes at each thinning). Refresh CPU: all threads' schedstat time over single refreshes, in {} rounds of turns. The writer is stopped and the three exporters are paused (SIGSTOP) between two refreshes; before each turn every hash is written anew, then each exporter, in an order that rotates, refreshes once alone and is paused again: no writer shares the two cores with a refresh measured, and the three refreshes of a turn lie within a second of each other, so that the machine's other work moves all three alike. The CPU over the refreshes of all rounds. RSS: after the last round. /metrics: wrk as in Throughput under load, plain, {} per exporter, in turn, the order turned round at each run, the others paused; requests per second of the best, first with the writer still running (the refreshes' extra CPU then competes with the scrapes for the two cores), then with it stopped, as Throughput under load measures (the scrape path reads no history). The budget is held to the latter; the former is the refresh CPU's share, which the CPU columns measure.\n\n",
        r.meta("history_warmup"),
        r.meta("history_rounds"),
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
            let on = Against::off(r, n, ON, STEADY_ON);
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
                or_dash(on.rss, sig),
                or_dash(cpu_on, sig),
                or_dash(cpu_off, sig),
                or_dash(on.cpu, times),
                or_dash(rps_on, sig),
                or_dash(rps_off, sig),
                or_dash(on.throughput_writing, times),
                or_dash(steady.0, sig),
                or_dash(steady.1, sig),
                or_dash(on.throughput, times),
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

    recording(out, r);

    out.push_str("**The run's noise.** The twin against the exporter without history, measured in the same way and in the same rounds: what two identical exporters differ by on this machine, beside which the ratios above are read.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let twin = Against::off(r, n, TWIN, STEADY_TWIN);
            vec![
                size(n),
                or_dash(twin.rss, sig),
                or_dash(twin.cpu, times),
                or_dash(twin.throughput_writing, times),
                or_dash(twin.throughput, times),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "RSS twin − off (MiB)",
            "refresh CPU twin / off",
            "throughput twin / off, writing",
            "throughput twin / off, stopped",
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
        let mut tsv = "-\tmeta\tsizes\t10000\n-\tmeta\thistory_warmup\t35\n-\tmeta\thistory_rounds\t8\n-\tmeta\trepeat\t3\n\
10000\thistory_on\tstory_points\t30\n10000\thistory_on\tstory_symbol\tS005000USDT\n"
            .to_owned();
        for (side, windows, rss, rps, steady) in [
            ("on", [(4, 70.0), (2, 76.0)], 30 << 20, 97, 99),
            ("off", [(4, 66.0), (4, 68.0)], 24 << 20, 100, 100),
            ("twin", [(4, 67.0), (4, 67.0)], 25 << 20, 99, 101),
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
        tsv += "-\thistory_record\tsymbols\t10000\n-\thistory_record\tpoints\t23\n\
-\thistory_record\tchanged_cpu_ns\t670000\n-\thistory_record\tunchanged_cpu_ns\t200000\n\
-\thistory_record\theld_bytes\t5242880\n";
        tsv += "10000\thistory_on\tstory_count\t50\n10000\thistory_on\tstory_p50_ms\t0.4\n\
10000\thistory_on\tstory_p99_ms\t0.9\n10000\thistory_on\tsymbol_page_skipped\tHTTP 404\n";
        let markdown = render(&Results::parse(&tsv));
        assert!(markdown.contains("## History on and off"), "{markdown}");
        assert!(markdown.contains("single refreshes, in 8 rounds of turns"));
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
refresh CPU 1.07× (≤ 1.05: **fail**); recording alone 1.00% (≤ 5%: pass); \
/metrics throughput 0.990× (≥ 0.95: pass). \
The two exporters without history, against each other in the same turns: RSS +1.00 MiB, \
refresh CPU 1.00×, /metrics throughput 1.01×; differences of that size are this run's noise, \
not the history's."
        ));
        assert!(markdown.contains("| 10,000 | 1.00 | 1.00× | 0.990× | 1.01× |"));
        assert!(markdown.contains(
            "(23 points held by the symbol in the middle), a publication every 5 s; the CPU of \
recording one, the mean over 48 in a row (thinning included), the lowest of 5 such runs. Every \
value changed: 0.670 ms per publication, 1.00% of the refresh CPU without history above; none \
changed: 0.200 ms. The history then holds 5.00 MiB"
        ));
        assert!(markdown.contains(
            "| history at 10,000: recording a publication, every value changed, in one process, over refresh CPU off (%) | 1.00 | ≤ 5% | pass |"
        ));
        assert!(markdown.contains(
            "| history at 10,000: refresh CPU, every hash rewritten, on / off | 1.07 | ≤ 1.05 | **fail** |"
        ));
        let elsewhere = render(&Results::parse("-\tmeta\tsizes\t3\n"));
        assert!(!elsewhere.contains("## History on and off"));
        assert!(!elsewhere.contains("Budget at 10,000"));
    }
}

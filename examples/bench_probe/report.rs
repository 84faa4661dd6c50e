//! Turns the figures `scripts/bench` recorded (`size <TAB> target <TAB> key <TAB> value`) into
//! `docs/performance.md`: one table per measurement with the ratios, then the goals with a result
//! computed from the same figures.

mod history;

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::{Options, percentile, sorted};

/// Clock ticks of /proc/<pid>/stat (USER_HZ, fixed by the Linux ABI).
const TICK_US: f64 = 10_000.0;
const MIB: f64 = 1024.0 * 1024.0;
/// How long the freshness probe waits between two reads of the body (`fresh --gap`'s default).
const PROBE_GAP_MS: f64 = 1.0;

/// Every recorded value by (size, target, key), in recording order: load runs are repeated.
struct Results {
    values: HashMap<(String, String, String), Vec<String>>,
    sizes: Vec<String>,
}

impl Results {
    fn parse(text: &str) -> Results {
        let mut values = HashMap::new();
        for line in text.lines() {
            let mut cells = line.splitn(4, '\t');
            if let (Some(n), Some(target), Some(key), Some(value)) =
                (cells.next(), cells.next(), cells.next(), cells.next())
            {
                values
                    .entry((n.into(), target.into(), key.into()))
                    .or_insert_with(Vec::new)
                    .push(value.into());
            }
        }
        let sizes = values
            .get(&("-".into(), "meta".into(), "sizes".into()))
            .and_then(|all: &Vec<String>| all.last())
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Results { values, sizes }
    }

    /// The last value recorded.
    fn text(&self, n: &str, target: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(n.into(), target.into(), key.into()))?
            .last()
            .map(String::as_str)
    }

    fn get(&self, n: &str, target: &str, key: &str) -> Option<f64> {
        self.text(n, target, key)?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
    }

    /// Every value recorded, one per run.
    fn all(&self, n: &str, target: &str, key: &str) -> Vec<f64> {
        self.values
            .get(&(n.into(), target.into(), key.into()))
            .map(|all| all.iter().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The sum over the load runs of one server and encoding.
    fn total(&self, n: &str, target: &str, enc: &str, key: &str) -> Option<f64> {
        let all = self.all(n, target, &format!("load_{enc}_{key}"));
        (!all.is_empty()).then(|| all.iter().sum())
    }

    fn meta(&self, key: &str) -> &str {
        self.text("-", "meta", key).unwrap_or("?")
    }

    /// Requests per second of the best run: on a shared machine other work only slows a run down.
    fn rps(&self, n: &str, target: &str, enc: &str) -> Option<f64> {
        let requests = self.all(n, target, &format!("load_{enc}_requests"));
        let durations = self.all(n, target, &format!("load_{enc}_duration_us"));
        requests
            .iter()
            .zip(&durations)
            .map(|(r, d)| r / d * 1e6)
            .reduce(f64::max)
    }

    /// A latency percentile in milliseconds, the median over the runs (the lower middle one of
    /// an even number); none when no request completed. The lowest of the runs would favour
    /// whichever server's tail moves most from run to run.
    fn load_ms(&self, n: &str, target: &str, enc: &str, p: &str) -> Option<f64> {
        let requests = self.all(n, target, &format!("load_{enc}_requests"));
        let latencies = self.all(n, target, &format!("load_{enc}_{p}_us"));
        median(
            requests
                .iter()
                .zip(&latencies)
                .filter(|(r, _)| **r > 0.0)
                .map(|(_, us)| us / 1e3)
                .collect(),
        )
    }

    /// The median over the fixed-rate runs of one server and encoding of a latency, in ms.
    fn paced_ms(&self, n: &str, target: &str, enc: &str, p: &str) -> Option<f64> {
        median(self.all(n, target, &format!("paced_{enc}_{p}_ms")))
    }

    /// CPU microseconds per request over all load runs: (user, user + system).
    fn cpu_per_request(&self, n: &str, target: &str, enc: &str) -> Option<(f64, f64)> {
        let requests = self.total(n, target, enc, "requests")?;
        if requests == 0.0 {
            return None;
        }
        let user = self.total(n, target, enc, "user_ticks")? * TICK_US;
        let sys = self.total(n, target, enc, "sys_ticks")? * TICK_US;
        Some((user / requests, (user + sys) / requests))
    }

    /// harvest-exporter's CPU per request with the refreshes that fell in the run taken out, at
    /// their cost measured alone: the scrape path by itself, (user, user + system).
    fn scrape_cpu_per_request(&self, n: &str, enc: &str) -> Option<(f64, f64)> {
        let (user, total) = self.cpu_per_request(n, "ours", enc)?;
        let requests = self.total(n, "ours", enc, "requests")?;
        let refreshes = self.total(n, "ours", enc, "refreshes")?;
        let per_request = |ms: f64| refreshes * ms * 1e3 / requests;
        let refresh_user = per_request(self.get(n, "ours", "refresh_user_ms")?);
        let refresh_total = per_request(self.get(n, "ours", "refresh_cpu_ms")?);
        Some((
            (user - refresh_user).max(0.0),
            (total - refresh_total).max(0.0),
        ))
    }

    /// The most harvest-exporter's RSS grew during a load run without a refresh.
    fn scrape_rss_growth(&self, n: &str) -> Option<f64> {
        ["plain", "gzip"]
            .iter()
            .flat_map(|enc| {
                let key = |k: &str| self.all(n, "ours", &format!("load_{enc}_{k}"));
                let (before, peak, refreshes) = (
                    key("rss_before_bytes"),
                    key("rss_peak_bytes"),
                    key("refreshes"),
                );
                before
                    .into_iter()
                    .zip(peak)
                    .zip(refreshes)
                    .filter(|(_, refreshes)| *refreshes == 0.0)
                    .map(|((before, peak), _)| (peak - before).max(0.0))
                    .collect::<Vec<_>>()
            })
            .reduce(f64::max)
    }

    /// Why a peer figure is missing, for the cell that would hold it.
    fn peer_gap(&self, n: &str, load: bool) -> String {
        match (
            self.text(n, "peer", "skipped"),
            self.text(n, "peer", "load_skipped"),
        ) {
            (Some(reason), _) => reason.to_owned(),
            (None, Some(reason)) if load => format!("not loaded: {reason}"),
            _ => "–".into(),
        }
    }

    fn refresh_ms(&self, n: &str) -> Option<f64> {
        Some(self.get(n, "ours", "refresh_wall_seconds")? * 1e3)
    }

    /// Redis CPU per refresh above what an idle Redis spends over the same time.
    fn redis_per_refresh_ms(&self, n: &str) -> Option<f64> {
        let total = self.get(n, "ours", "refresh_redis_cpu_ms")?;
        let secs = self.get(n, "ours", "refresh_window_secs")?;
        let refreshes = self.get(n, "ours", "refresh_refreshes")?;
        let idle = self.get(n, "meta", "redis_idle_cpu_ms_per_s")? * secs / refreshes;
        Some((total - idle).max(0.0))
    }

    /// Redis CPU per peer scrape above what an idle Redis spends over the same time.
    fn redis_per_scrape_ms(&self, n: &str) -> Option<f64> {
        let total = self.get(n, "peer", "scrape_redis_cpu_ns")? / 1e6;
        let secs = self.get(n, "peer", "scrape_phase_ns")? / 1e9;
        let idle = self.get(n, "meta", "redis_idle_cpu_ms_per_s")? * secs;
        Some((total - idle).max(0.0))
    }
}

/// The median of runs (the lower middle one of an even number); none without a run.
fn median(runs: Vec<f64>) -> Option<f64> {
    (!runs.is_empty()).then(|| percentile(&sorted(runs), 50.0))
}

fn sig(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if magnitude >= 1000.0 {
        thousands(value.round() as i64)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn whole_or_sig(value: f64) -> String {
    if value.fract() == 0.0 {
        count(value)
    } else {
        sig(value)
    }
}

fn count(value: f64) -> String {
    thousands(value.round() as i64)
}

fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 { format!("-{out}") } else { out }
}

fn bytes(value: f64) -> String {
    if value >= MIB {
        format!("{} MiB", sig(value / MIB))
    } else if value >= 1024.0 {
        format!("{} KiB", sig(value / 1024.0))
    } else {
        format!("{value:.0} B")
    }
}

fn size(n: &str) -> String {
    n.parse().map_or_else(|_| n.to_owned(), thousands)
}

fn or_dash(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or_else(|| "–".into(), format)
}

fn ratio(ours: Option<f64>, other: Option<f64>) -> String {
    match (ours, other) {
        (Some(a), Some(b)) if b > 0.0 => format!("{}×", sig(a / b)),
        (Some(a), Some(_)) if a > 0.0 => "∞".into(),
        _ => "–".into(),
    }
}

fn table(out: &mut String, header: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

pub fn write(options: &Options) -> Result<(), String> {
    let path = options.text("results")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let results = Results::parse(&text);
    let markdown = render(&results);
    let out = options.text("out")?;
    // The cluster section comes from its own run (`scripts/bench --cluster`), so it is carried
    // over from the file being replaced rather than lost.
    let previous = std::fs::read_to_string(out).unwrap_or_default();
    let kept = cluster_block(&previous).map_or(String::new(), |block| format!("\n{block}\n"));
    std::fs::write(out, format!("{markdown}{kept}")).map_err(|e| format!("{out}: {e}"))?;
    let tables = markdown.find("\n## ").map_or(0, |at| at + 1);
    print!("{}", &markdown[tables..]);
    Ok(())
}

/// The Redis Cluster section is one generated block between these markers at the end of the
/// file: `cluster-report` rewrites only the block and `report` keeps it, so each run replaces
/// its own figures and leaves the other's.
const CLUSTER_BEGIN: &str =
    "<!-- cluster: generated by `scripts/bench --cluster`, kept by the full run -->";
const CLUSTER_END: &str = "<!-- cluster end -->";

/// The cluster block of a file, markers included.
fn cluster_block(text: &str) -> Option<&str> {
    let begin = text.find(CLUSTER_BEGIN)?;
    let end = begin + text[begin..].find(CLUSTER_END)? + CLUSTER_END.len();
    Some(&text[begin..end])
}

/// Writes the cluster run's section into the block of `--out`, the rest of the file untouched
/// (a file without the block gets it at the end).
pub fn write_cluster(options: &Options) -> Result<(), String> {
    let path = options.text("results")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let section = render_cluster(&Results::parse(&text));
    let block = format!("{CLUSTER_BEGIN}\n{section}{CLUSTER_END}");
    let out = options.text("out")?;
    let previous = std::fs::read_to_string(out).unwrap_or_default();
    let updated = match cluster_block(&previous) {
        Some(old) => previous.replacen(old, &block, 1),
        None if previous.is_empty() => format!("{block}\n"),
        None => format!("{}\n\n{block}\n", previous.trim_end()),
    };
    std::fs::write(out, updated).map_err(|e| format!("{out}: {e}"))?;
    print!("{section}");
    Ok(())
}

fn render_cluster(r: &Results) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "## Redis Cluster: three primaries against one Redis\n\n\
Generated by `scripts/bench --cluster` ({} s). The same proposals (the simulator's, all of the \
publisher's fields; copied key by key from the single Redis to the cluster) are read by one \
harvest-exporter at a time, with the same flags and poll interval, from one private \
redis-server and from a private three-primary Redis Cluster (`--cluster-replicas 0`, \
`--redis.cluster-nodes` naming all three), one after the other in the same run; in the \
cluster every shard's node is scanned at once, each over its own pipelined connection. \
The poll interval is 0.5 s, or twice the slower first refresh when that is longer, so that \
refreshes do not run back to back. Wall time: median of the \
`quantum_harvest_exporter_refresh_duration_seconds` gauge over 5 scrapes one interval apart. \
Exporter CPU: over a window of whole refreshes with no scrapes (as in Refresh cost), user + \
system from /proc/<pid>/stat (10 ms ticks, and it keeps the time of threads that exited in the \
window), and the live threads' schedstat time, which misses those (hence lower at 100,000). Redis CPU: \
the servers' CPU over the window (the three nodes added up) minus what they spend idle over the \
same time (measured for 1 s with no client just before; a cluster node also gossips on its bus). \
Commands: Redis's `INFO commandstats`, all nodes added up. The three nodes, the single Redis \
and the exporter all share this machine's cores: the cluster can only shorten a refresh by \
splitting Redis's share of it, which here is the smaller one (compare Redis CPU with the \
exporter's), while in production its nodes have cores, or hosts, of their own.\n\n",
        r.meta("elapsed_s"),
    );
    machine_lines(
        &mut out,
        r,
        "The machine \
was shared with other builds and tests, so every absolute figure is noisy: the cluster / single \
ratios, from the same run, are the point.",
    );
    let _ = writeln!(
        out,
        "- Versions: {}; Redis {}; rustc {}\n",
        r.meta("exporter"),
        r.meta("redis"),
        r.meta("rustc")
    );

    let wall = |n: &str, t: &str| Some(r.get(n, t, "refresh_wall_seconds")? * 1e3);
    let cpu =
        |n: &str, t: &str| Some(r.get(n, t, "refresh_user_ms")? + r.get(n, t, "refresh_sys_ms")?);
    let schedstat = |n: &str, t: &str| r.get(n, t, "refresh_cpu_ms");
    let split = |n: &str, t: &str| match (
        r.get(n, t, "refresh_user_ms"),
        r.get(n, t, "refresh_sys_ms"),
    ) {
        (Some(u), Some(s)) => format!("{} / {}", sig(u), sig(s)),
        _ => "–".into(),
    };
    let pair = |n: &str, key: &str, format: fn(f64) -> String| {
        format!(
            "{} / {}",
            or_dash(r.get(n, "single", key), format),
            or_dash(r.get(n, "cluster", key), format)
        )
    };
    let redis_cpu = |n: &str, t: &str| {
        let total = r.get(n, t, "refresh_redis_cpu_ms")?;
        let secs = r.get(n, t, "refresh_window_secs")?;
        let refreshes = r.get(n, t, "refresh_refreshes")?;
        let idle = r.get(n, t, "redis_idle_cpu_ms_per_s")? * secs / refreshes;
        Some((total - idle).max(0.0))
    };
    let verdict = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(c), Some(s)) if c < s => "faster",
        (Some(_), Some(_)) => "**slower**",
        _ => "–",
    };

    out.push_str("**Refresh time and exporter CPU per refresh.**\n\n");
    let rows = r
        .sizes
        .iter()
        .map(|n| {
            vec![
                size(n),
                r.text(n, "meta", "interval")
                    .map_or("–".into(), |i| format!("{i} s")),
                pair(n, "refresh_refreshes", whole_or_sig),
                or_dash(wall(n, "single"), sig),
                or_dash(wall(n, "cluster"), sig),
                ratio(wall(n, "cluster"), wall(n, "single")),
                verdict(wall(n, "cluster"), wall(n, "single")).into(),
                or_dash(cpu(n, "single"), sig),
                or_dash(cpu(n, "cluster"), sig),
                ratio(cpu(n, "cluster"), cpu(n, "single")),
                split(n, "single"),
                split(n, "cluster"),
                format!(
                    "{} / {}",
                    or_dash(schedstat(n, "single"), sig),
                    or_dash(schedstat(n, "cluster"), sig)
                ),
                ratio(schedstat(n, "cluster"), schedstat(n, "single")),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "N",
            "poll interval",
            "refreshes single / cluster",
            "wall single (ms)",
            "wall cluster (ms)",
            "wall cluster / single",
            "cluster refresh",
            "CPU single (ms)",
            "CPU cluster (ms)",
            "CPU cluster / single",
            "user / system single (ms)",
            "user / system cluster (ms)",
            "schedstat CPU single / cluster (ms)",
            "schedstat cluster / single",
        ],
        rows,
    );

    out.push_str("**Redis's side and memory.** Per refresh; keys per node: how the cluster's slots spread the symbols.\n\n");
    let rows = r
        .sizes
        .iter()
        .map(|n| {
            vec![
                size(n),
                or_dash(redis_cpu(n, "single"), sig),
                or_dash(redis_cpu(n, "cluster"), sig),
                ratio(redis_cpu(n, "cluster"), redis_cpu(n, "single")),
                pair(n, "refresh_commands", whole_or_sig),
                pair(n, "refresh_scan", whole_or_sig),
                pair(n, "round_trips", whole_or_sig),
                pair(n, "refresh_rss_peak_bytes", bytes),
                r.text(n, "cluster", "keys_per_node")
                    .map_or("–".into(), |k| {
                        k.split_whitespace()
                            .map(|v| v.parse().map_or_else(|_| v.to_owned(), thousands))
                            .collect::<Vec<_>>()
                            .join(" / ")
                    }),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "N",
            "Redis CPU single (ms)",
            "Redis CPU cluster, 3 nodes (ms)",
            "Redis CPU cluster / single",
            "commands single / cluster",
            "SCAN single / cluster",
            "round trips single / cluster",
            "RSS peak single / cluster",
            "keys per node",
        ],
        rows,
    );
    out
}

fn render(r: &Results) -> String {
    let mut out = String::new();
    header(&mut out, r);
    let sizes = &r.sizes;
    let encodings = ["plain", "gzip"];

    out.push_str("## Body size\n\nOne scrape of each. nginx serves harvest-exporter's bytes, so its bodies are the same. The peer exports only the seed's series (13 per symbol) as `redis_script_values`, against harvest-exporter's 40 or so per symbol, plus Redis's own metrics.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let plain = r.get(n, "ours", "body_plain_bytes");
            let gzip = r.get(n, "ours", "body_gzip_bytes");
            let per_symbol = plain.zip(n.parse::<f64>().ok()).map(|(b, n)| b / n);
            vec![
                size(n),
                or_dash(plain, bytes),
                or_dash(gzip, bytes),
                ratio(plain, gzip),
                or_dash(per_symbol, bytes),
                or_dash(r.get(n, "peer", "body_plain_bytes"), bytes),
                or_dash(r.get(n, "peer", "body_gzip_bytes"), bytes),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "N",
            "ours plain",
            "ours gzip",
            "compression",
            "ours plain per symbol",
            "peer plain",
            "peer gzip",
        ],
        rows,
    );

    let _ = writeln!(
        out,
        "## Throughput under load\n\nRequests per second of {} of wrk with 2 threads and 16 keep-alive connections for {} s, one server at a time, harvest-exporter's and nginx's runs alternating (harvest-exporter is paused with SIGSTOP during nginx's; the peer has one run). `gzip` runs send `Accept-Encoding: gzip`. Above 2,000 symbols harvest-exporter holds its body compressed only, so its plain runs at those sizes inflate the body on every scrape, where nginx sends a file. Errors are socket errors, timeouts and non-2xx answers, over all runs.\n",
        runs_text(r.meta("repeat"), r.meta("repeat_small")),
        r.meta("duration")
    );
    let mut rows = Vec::new();
    for n in sizes {
        for enc in encodings {
            let (ours, nginx, peer) = (
                r.rps(n, "ours", enc),
                r.rps(n, "nginx", enc),
                r.rps(n, "peer", enc),
            );
            let errors: Vec<String> = ["ours", "nginx", "peer"]
                .iter()
                .map(|t| {
                    let count = |key: &str| r.total(n, t, enc, key);
                    match (
                        count("socket_errors"),
                        count("timeouts"),
                        count("status_errors"),
                    ) {
                        (Some(a), Some(b), Some(c)) => format!("{}", a + b + c),
                        _ => "–".into(),
                    }
                })
                .collect();
            rows.push(vec![
                size(n),
                enc.into(),
                or_dash(ours, sig),
                or_dash(nginx, sig),
                peer.map_or_else(|| r.peer_gap(n, true), sig),
                ratio(ours, nginx),
                ratio(ours, peer),
                errors.join(" / "),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "N",
            "encoding",
            "ours",
            "nginx",
            "peer",
            "ours / nginx",
            "ours / peer",
            "errors ours / nginx / peer",
        ],
        rows,
    );

    out.push_str(
        "## Latency under load\n\nMilliseconds, wrk's percentiles from the same runs: the median of the runs, as the lowest would favour whichever server's tail moves most from run to run.\n\n",
    );
    let mut rows = Vec::new();
    for n in sizes {
        for enc in encodings {
            let ms = |t: &str, p: &str| r.load_ms(n, t, enc, p);
            let peer = |p: &str| ms("peer", p).map_or_else(|| r.peer_gap(n, true), sig);
            rows.push(vec![
                size(n),
                enc.into(),
                or_dash(ms("ours", "p50"), sig),
                or_dash(ms("ours", "p99"), sig),
                or_dash(ms("nginx", "p50"), sig),
                or_dash(ms("nginx", "p99"), sig),
                peer("p50"),
                peer("p99"),
                ratio(ms("ours", "p99"), ms("nginx", "p99")),
                ratio(ms("ours", "p99"), ms("peer", "p99")),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "N",
            "encoding",
            "ours p50",
            "ours p99",
            "nginx p50",
            "nginx p99",
            "peer p50",
            "peer p99",
            "p99 ours / nginx",
            "p99 ours / peer",
        ],
        rows,
    );
    fixed_rate(&mut out, r, sizes, &encodings);

    out.push_str("## Single-scrape latency\n\nMilliseconds, median of sequential scrapes on an otherwise idle server, each on a new connection and read to the end (the latency one Prometheus sees); the number of scrapes is in parentheses.\n\n");
    let mut rows = Vec::new();
    for n in sizes {
        for enc in encodings {
            let p50 = |t: &str| r.get(n, t, &format!("single_{enc}_p50_ms"));
            let cell = |t: &str| match (p50(t), r.get(n, t, &format!("single_{enc}_count"))) {
                (Some(ms), Some(count)) => format!("{} ({count})", sig(ms)),
                _ if t == "peer" => r.peer_gap(n, false),
                _ => "–".into(),
            };
            rows.push(vec![
                size(n),
                enc.into(),
                cell("ours"),
                cell("nginx"),
                cell("peer"),
                ratio(p50("ours"), p50("nginx")),
                ratio(p50("ours"), p50("peer")),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "N",
            "encoding",
            "ours",
            "nginx",
            "peer",
            "ours / nginx",
            "ours / peer",
        ],
        rows,
    );

    out.push_str("## Memory\n\nResident set size. Idle: after the single scrapes, before load; for harvest-exporter that is after its first refresh or two, and since the allocator keeps what later refreshes free, it is measured again after the load runs (settled, with the number of refreshes so far). Under load: the peak (VmHWM, reset before each run) over all wrk runs. Scrape growth: the most RSS grew during a load run that no refresh fell in, which is what scrapes themselves allocate. Refreshing: harvest-exporter's peak over the refresh-cost window, scrapes aside. nginx is its master and workers added up.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let peak = |t: &str| {
                encodings
                    .iter()
                    .flat_map(|enc| r.all(n, t, &format!("load_{enc}_rss_peak_bytes")))
                    .reduce(f64::max)
            };
            let idle = |t: &str| r.get(n, t, "rss_idle_bytes");
            let settled = match (
                r.get(n, "ours", "rss_settled_bytes"),
                r.get(n, "ours", "rss_settled_refreshes"),
            ) {
                (Some(rss), Some(refreshes)) => format!("{} ({})", bytes(rss), count(refreshes)),
                _ => "–".into(),
            };
            vec![
                size(n),
                or_dash(idle("ours"), bytes),
                settled,
                or_dash(peak("ours"), bytes),
                or_dash(r.scrape_rss_growth(n), bytes),
                or_dash(r.get(n, "ours", "refresh_rss_peak_bytes"), bytes),
                or_dash(idle("nginx"), bytes),
                or_dash(peak("nginx"), bytes),
                idle("peer").map_or_else(|| r.peer_gap(n, false), bytes),
                peak("peer").map_or_else(|| r.peer_gap(n, true), bytes),
                ratio(peak("ours"), peak("nginx")),
                ratio(peak("ours"), peak("peer")),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "N",
            "ours idle",
            "ours settled (refreshes)",
            "ours under load",
            "ours scrape growth",
            "ours refreshing",
            "nginx idle",
            "nginx under load",
            "peer idle",
            "peer under load",
            "load ours / nginx",
            "load ours / peer",
        ],
        rows,
    );

    out.push_str("## CPU per scrape under load\n\nMicroseconds of CPU (user + system, from /proc in 10 ms ticks) per request answered, over all the wrk runs. The peer's work happens partly in Redis, whose CPU is added in its own column. harvest-exporter refreshes at its default 5 s interval; as it is paused during nginx's runs, the refresh it owes runs when it resumes, before its next run starts, so most of its runs fall between two refreshes. The refreshes that did fall in its runs are counted from Redis and taken out at their cost measured alone (Refresh cost, below) to leave the scrape path. The user share of the scrape path grows with the body because a large body takes many partial socket writes, each a trip through hyper and tokio; it is not copying (the Memory table shows no growth while scraping). Above 2,000 symbols a plain scrape also inflates the body, which is held compressed only.\n\n");
    let mut rows = Vec::new();
    for n in sizes {
        for enc in encodings {
            let cpu = |t: &str| r.cpu_per_request(n, t, enc);
            let peer_redis = r
                .total(n, "peer", enc, "redis_cpu_ns")
                .zip(r.total(n, "peer", enc, "requests").filter(|&q| q > 0.0));
            let peer_total = cpu("peer")
                .map(|(_, total)| total)
                .zip(peer_redis)
                .map(|(total, (ns, requests))| total + ns / 1e3 / requests);
            let scrape = r.scrape_cpu_per_request(n, enc);
            rows.push(vec![
                size(n),
                enc.into(),
                or_dash(r.total(n, "ours", enc, "refreshes"), whole_or_sig),
                or_dash(cpu("ours").map(|c| c.1), sig),
                or_dash(scrape.map(|c| c.1), sig),
                or_dash(scrape.map(|c| c.0), sig),
                or_dash(cpu("nginx").map(|c| c.1), sig),
                cpu("peer").map_or_else(|| r.peer_gap(n, true), |c| sig(c.1)),
                peer_total.map_or_else(|| r.peer_gap(n, true), sig),
                ratio(scrape.map(|c| c.1), cpu("nginx").map(|c| c.1)),
                ratio(cpu("ours").map(|c| c.1), peer_total),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "N",
            "encoding",
            "refreshes in the runs",
            "ours",
            "ours, scrape path",
            "of which user",
            "nginx",
            "peer",
            "peer + Redis",
            "scrape path ours / nginx",
            "ours / (peer + Redis)",
        ],
        rows,
    );

    out.push_str("## Refresh cost\n\nharvest-exporter alone, over a window of whole refreshes (it starts and ends when the exporter is idle and Redis has served a whole number of refreshes), with no scrapes. The poll interval is 0.5 s, or twice the refresh time when that is longer, so that refreshes do not run back to back. Wall time: median of the `quantum_harvest_exporter_refresh_duration_seconds` gauge over 5 scrapes. CPU: all threads' schedstat time. Redis CPU: redis-server's CPU over the window minus what it spends idle over the same time (measured for 1 s with no client just before). Round trips: harvest-exporter's own `quantum_harvest_exporter_redis_round_trips_total` per refresh (each SCAN page travels with the HMGETs of the keys the page before found); the commands columns come from Redis's `INFO commandstats`. Growth: how much the CPU per refresh grew over the previous size, against how much N grew. Nothing writes to Redis meanwhile, so each refresh finds every hash as the one before left it: it parses none of them again and renders only their data ages (the publisher rewrites each hash every 10 s, so at the default 5 s poll about every other refresh finds it so). The table after this one has every hash rewritten.\n\n");
    let mut rows = Vec::new();
    let mut previous: Option<(f64, f64)> = None;
    for n in sizes {
        let symbols: Option<f64> = n.parse().ok();
        let cpu = r.get(n, "ours", "refresh_cpu_ms");
        let growth = match (previous, cpu, symbols) {
            (Some((cpu0, n0)), Some(cpu1), Some(n1)) => {
                format!("{}× for {}× N", sig(cpu1 / cpu0), sig(n1 / n0))
            }
            _ => "–".into(),
        };
        previous = cpu.zip(symbols);
        let scan = r.get(n, "ours", "refresh_scan");
        rows.push(vec![
            size(n),
            or_dash(r.get(n, "ours", "cost_interval"), |s| format!("{s} s")),
            or_dash(r.get(n, "ours", "refresh_refreshes"), count),
            or_dash(r.refresh_ms(n), sig),
            or_dash(cpu, sig),
            or_dash(cpu.zip(symbols).map(|(c, n)| c * 1e3 / n), |us| {
                format!("{} µs", sig(us))
            }),
            growth,
            or_dash(r.redis_per_refresh_ms(n), sig),
            or_dash(r.get(n, "ours", "refresh_commands"), count),
            or_dash(scan, sig),
            or_dash(r.get(n, "ours", "refresh_round_trips"), sig),
            or_dash(r.get(n, "ours", "refresh_rss_peak_bytes"), bytes),
        ]);
    }
    table(
        &mut out,
        &[
            "N",
            "poll interval",
            "refreshes",
            "wall (ms)",
            "exporter CPU (ms)",
            "CPU per symbol",
            "growth",
            "Redis CPU (ms)",
            "Redis commands",
            "of which SCAN",
            "round trips",
            "RSS peak",
        ],
        rows,
    );
    rewritten_refresh_cost(&mut out, r);

    out.push_str("## Redis cost: harvest-exporter per refresh, the peer per scrape\n\nharvest-exporter reads Redis once per poll interval whatever the number of scrapers; the peer runs its script (SCAN and HMGET inside Redis, blocking it meanwhile) on every scrape of every Prometheus, plus its own INFO and CONFIG reads. Peer figures come from its single scrapes; Redis CPU is again above idle.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let ours_cpu = r.redis_per_refresh_ms(n);
            let peer_cpu = r.redis_per_scrape_ms(n);
            let gap = || r.peer_gap(n, false);
            vec![
                size(n),
                or_dash(r.get(n, "ours", "refresh_commands"), count),
                r.get(n, "peer", "scrape_commands").map_or_else(gap, count),
                or_dash(ours_cpu, sig),
                peer_cpu.map_or_else(gap, sig),
                ratio(ours_cpu, peer_cpu),
                r.get(n, "peer", "scrape_cpu_ns")
                    .map_or_else(gap, |ns| sig(ns / 1e6)),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "N",
            "ours: commands per refresh",
            "peer: commands per scrape",
            "ours: Redis CPU per refresh (ms)",
            "peer: Redis CPU per scrape (ms)",
            "ours / peer",
            "peer: its own CPU per scrape (ms)",
        ],
        rows,
    );

    out.push_str("## Freshness\n\nTime from an `HSET` of `BTCUSDT`'s kill score (a value never written before) to that value in `/metrics`, polled every millisecond by reading the start of the body. Before each trial the probe waits a random part of the poll interval, so that writes land at every phase of the refresh cycle. With so few trials the p99 is the maximum (nearest rank). With polling the worst case is one interval plus one refresh, and the probe's millisecond between reads: a write that lands just after a refresh read its key shows when the next refresh has finished, so the goal allows the slowest of the refreshes sampled for the wall time. The peer reads Redis at scrape time: its freshness is its scrape latency (above).\n\n");
    let modes = [
        ("default", "polling, default interval"),
        ("fast", "polling, fast interval"),
        ("event", "event mode"),
    ];
    let mut rows = Vec::new();
    for (mode, label) in modes {
        for n in sizes {
            let get = |key: &str| r.get(n, "ours", &format!("fresh_{mode}_{key}"));
            let Some(trials) = get("trials") else {
                continue;
            };
            rows.push(vec![
                label.to_owned(),
                size(n),
                or_dash(get("interval"), |s| format!("{s} s")),
                count(trials),
                or_dash(get("timeouts"), count),
                or_dash(get("p50_ms"), sig),
                or_dash(get("p99_ms"), sig),
                or_dash(get("max_ms"), sig),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "mode",
            "N",
            "poll interval",
            "trials",
            "timeouts",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
        ],
        rows,
    );

    apply_streams(&mut out, r);
    history::section(&mut out, r);
    reader(&mut out, r);
    goals(&mut out, r);
    out
}

/// How many wrk runs the best throughput is taken from, as the run recorded them.
fn runs_text(repeat: &str, repeat_small: &str) -> String {
    let runs = match repeat {
        "1" => "one run".to_owned(),
        count => format!("the best of {count} runs"),
    };
    match repeat_small {
        "?" => runs,
        small if small == repeat => runs,
        small => format!("{runs} ({small} at 100 symbols and fewer)"),
    }
}

/// The same servers with requests due on a clock (`bench_probe paced`), when those runs were made.
fn fixed_rate(out: &mut String, r: &Results, sizes: &[String], encodings: &[&str]) {
    let mut rows = Vec::new();
    for n in sizes {
        for enc in encodings {
            let rate = r
                .all(n, "ours", &format!("paced_{enc}_rate"))
                .first()
                .copied();
            let Some(rate) = rate else {
                continue;
            };
            let ms = |t: &str, p: &str| r.paced_ms(n, t, enc, p);
            rows.push(vec![
                size(n),
                (*enc).into(),
                thousands(rate as i64),
                or_dash(ms("ours", "p50"), sig),
                or_dash(ms("ours", "p99"), sig),
                or_dash(ms("ours", "max"), sig),
                or_dash(ms("nginx", "p50"), sig),
                or_dash(ms("nginx", "p99"), sig),
                or_dash(ms("nginx", "max"), sig),
                ratio(ms("ours", "p99"), ms("nginx", "p99")),
            ]);
        }
    }
    if rows.is_empty() {
        return;
    }
    out.push_str("**At a fixed rate.** wrk sends a connection's next request when the last answer arrives. On two cores that wrk shares with the server, the slower side sets the pace and the faster side's threads wait their turn for a core, about 4 ms (a scheduler tick), which wrk counts as latency whenever it is wrk that waits: a server that answers faster than wrk reads pushes wrk's p99 up to that tick. Here the requests are due on a clock instead, a quarter of nginx's best rate above for both servers, on 4 keep-alive connections with a thread each, and each is timed from when it was due, so that a late answer also delays, and counts in, the requests after it. A stall on a server's scrape path shows here at any rate. Milliseconds, the median of the runs; the runs alternate as above.\n\n");
    table(
        out,
        &[
            "N",
            "encoding",
            "requests/s",
            "ours p50",
            "ours p99",
            "ours max",
            "nginx p50",
            "nginx p99",
            "nginx max",
            "p99 ours / nginx",
        ],
        rows,
    );
}

/// The sizes at which the apply streams were measured.
fn apply_sizes(r: &Results) -> Vec<&String> {
    r.sizes
        .iter()
        .filter(|n| {
            r.get(n, "streams", "fresh_trials").is_some()
                || r.get(n, "streams", "burst_entries").is_some()
        })
        .collect()
}

fn apply_streams(out: &mut String, r: &Results) {
    let sizes = apply_sizes(r);
    if sizes.is_empty() {
        return;
    }
    out.push_str("## Apply streams\n\nThe follower of the apply layer's two streams (`--apply.streams`, on by default), measured at one size against a private pair of exporters that poll Redis every 300 s, so that no refresh falls in a window: one follows the streams, one runs with `--apply.streams=false`. Each stream has one consumer group, as the real ones have.\n\n");
    out.push_str("**XADD to /metrics.** Time from an `XADD` of a plan (every field the apply layer writes) to `quantum_apply_stream_entries_seen_total{stream=\"plan\"}` counting it, reading the whole body every millisecond (the apply families come after the proposals'), so a trial takes at least one body read (its median alone is in the table). Each trial first waits a random part of the pace, so that writes land at every point of the follower's cycle (a blocked `XREAD`, its 1 s timeout, the `XINFO` round every 5 s).\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let get = |key: &str| r.get(n, "streams", &format!("fresh_{key}"));
            vec![
                size(n),
                or_dash(get("trials"), count),
                or_dash(get("timeouts"), count),
                or_dash(get("polls"), count),
                or_dash(get("read_ms"), sig),
                or_dash(get("p50_ms"), sig),
                or_dash(get("p99_ms"), sig),
                or_dash(get("max_ms"), sig),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "trials",
            "timeouts",
            "polls",
            "one body read (ms)",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
        ],
        rows,
    );

    out.push_str("**A burst of entries.** Plans and their results (the close, failure and dry-run field sets, over 100 symbols), pipelined 500 `XADD`s at a time without trimming, while the exporter's CPU is read every millisecond. The window runs from the first write to the exporter's last CPU activity once both counters have moved by every entry written (checked with one scrape after 50 ms of quiet; more checks mean the exporter was still busy). Wall: that window; write: the writer's own time. CPU: all threads' schedstat time; user and system: /proc/<pid>/stat in 10 ms ticks, so coarse for small bursts. Redis: the follower's commands (`XREAD`, `XINFO`, `TYPE`, `XREVRANGE`) and the microseconds Redis spent in them (`INFO commandstats`), the writer's `XADD`s aside.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let get = |key: &str| r.get(n, "streams", &format!("burst_{key}"));
            let per_k = |value: Option<f64>| {
                value
                    .zip(get("entries").filter(|&e| e > 0.0))
                    .map(|(v, e)| v * 1000.0 / e)
            };
            let entries = match (get("entries"), get("plans"), get("results")) {
                (Some(e), Some(p), Some(res)) => {
                    format!("{} ({} + {})", count(e), count(p), count(res))
                }
                (e, _, _) => or_dash(e, count),
            };
            let split = match (per_k(get("user_ms")), per_k(get("sys_ms"))) {
                (Some(u), Some(s)) => format!("{} / {}", sig(u), sig(s)),
                _ => "–".into(),
            };
            vec![
                size(n),
                entries,
                or_dash(get("write_secs"), |s| sig(s * 1e3)),
                or_dash(get("wall_ms"), sig),
                or_dash(get("checks"), count),
                or_dash(get("cpu_ms"), sig),
                or_dash(per_k(get("cpu_ms")), sig),
                split,
                or_dash(per_k(get("commands")), sig),
                or_dash(per_k(get("xread")), sig),
                or_dash(per_k(get("redis_usec")), sig),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "entries (plans + results)",
            "write (ms)",
            "wall until counted (ms)",
            "checks",
            "exporter CPU (ms)",
            "CPU per 1,000 entries (ms)",
            "user / system per 1,000 (ms)",
            "follower commands per 1,000",
            "of which XREAD",
            "Redis µs per 1,000",
        ],
        rows,
    );

    out.push_str("**Following while idle.** The follower's commands while no entry is written, counted over the scrape runs below (scrapes send Redis nothing): an `XREAD BLOCK 1000` that times out every second, and every 5 s a `TYPE`, `XINFO STREAM` and `XINFO GROUPS` per stream. The follower waits for each reply before sending the next command, so every command is a round trip. Redis µs are the time Redis spent inside those commands, which preemption inflates when the window's load runs keep both cores busy.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let get = |key: &str| r.get(n, "streams", &format!("idle_{key}"));
            let secs = get("secs").filter(|&s| s > 0.0);
            let per_s = |v: Option<f64>| v.zip(secs).map(|(v, s)| v / s);
            let others = get("commands").zip(get("xread")).map(|(c, x)| c - x);
            vec![
                size(n),
                or_dash(secs, |s| format!("{} s", sig(s))),
                or_dash(per_s(get("commands")), sig),
                or_dash(per_s(get("xread")), sig),
                or_dash(per_s(others), sig),
                or_dash(per_s(get("redis_usec")), sig),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "window",
            "commands (round trips) per s",
            "XREAD per s",
            "XINFO and TYPE per s",
            "Redis µs per s",
        ],
        rows,
    );

    out.push_str("**The scrape path, followed or not.** wrk as in Throughput under load, the two exporters' runs alternating, each idle while the other is loaded. The follower's exporter also serves the apply families of the burst's 100 symbols, hence its larger body. With gzip, those families are compressed once per change, when the follower publishes them, and sent as they are. The ratios thus hold the cost of those families' bytes as well as any cost of following.\n\n");
    let mut rows = Vec::new();
    for n in &sizes {
        for enc in ["plain", "gzip"] {
            let (on, off) = (r.rps(n, "streams_on", enc), r.rps(n, "streams_off", enc));
            if on.is_none() && off.is_none() {
                continue;
            }
            let p99 = |t: &str| r.load_ms(n, t, enc, "p99");
            rows.push(vec![
                size(n),
                enc.into(),
                or_dash(on, sig),
                or_dash(off, sig),
                ratio(on, off),
                or_dash(p99("streams_on"), sig),
                or_dash(p99("streams_off"), sig),
                ratio(p99("streams_on"), p99("streams_off")),
                or_dash(r.get(n, "streams_on", &format!("body_{enc}_bytes")), bytes),
                or_dash(r.get(n, "streams_off", &format!("body_{enc}_bytes")), bytes),
            ]);
        }
    }
    table(
        out,
        &[
            "N",
            "encoding",
            "followed: req/s",
            "not: req/s",
            "throughput followed / not",
            "followed: p99 (ms)",
            "not: p99 (ms)",
            "p99 followed / not",
            "body followed",
            "body not",
        ],
        rows,
    );
}

fn apply_goals(goals: &mut Vec<Goal>, r: &Results) {
    let sizes = apply_sizes(r);
    if sizes.is_empty() {
        goals.push(check(
            "apply streams: XADD to /metrics, p99 (ms)".into(),
            None,
            "< 50".into(),
            |v| v < 50.0,
        ));
    }
    for n in sizes {
        let timeouts = r.get(n, "streams", "fresh_timeouts").unwrap_or(0.0);
        goals.push(check(
            format!("apply streams at {}: XADD to /metrics, p99 (ms)", size(n)),
            r.get(n, "streams", "fresh_p99_ms"),
            "< 50 and no timeout".into(),
            |v| v < 50.0 && timeouts == 0.0,
        ));
        let per_k = r
            .get(n, "streams", "burst_cpu_ms")
            .zip(r.get(n, "streams", "burst_entries").filter(|&e| e > 0.0))
            .map(|(cpu, e)| cpu * 1000.0 / e);
        goals.push(check(
            format!(
                "apply streams at {}: exporter CPU per 1,000 entries (ms)",
                size(n)
            ),
            per_k,
            "reported".into(),
            |_| true,
        ));
        for enc in ["plain", "gzip"] {
            let (on, off) = (r.rps(n, "streams_on", enc), r.rps(n, "streams_off", enc));
            if enc == "gzip" && on.is_none() && off.is_none() {
                continue;
            }
            goals.push(check(
                format!(
                    "apply streams at {}: scrape throughput ({enc}), followed / not",
                    size(n)
                ),
                on.zip(off.filter(|&o| o > 0.0)).map(|(a, b)| a / b),
                "≥ 0.9 (within noise)".into(),
                |v| v >= 0.9,
            ));
        }
    }
}

fn header(out: &mut String, r: &Results) {
    let _ = write!(
        out,
        "# Performance\n\nGenerated by `scripts/bench` ({} run, {} s); do not edit by hand: run `scripts/bench` again. \
harvest-exporter (\"ours\") is measured side by side with nginx serving the same body bytes as a \
static file, pre-compressed for gzip (\"the limit\"), and prometheus-redis-exporter running a Lua \
script that exports the same proposal hashes on every scrape (\"the peer\", `scripts/bench.d/peer.lua`), \
one after the other in the same run, against one private redis-server filled with the simulator's \
proposals (all of the publisher's fields). Everything runs on loopback on the machine below, \
including the load generator, so the absolute figures are those of a small shared machine: the \
ratios are the point.\n\n",
        r.meta("mode"),
        r.meta("elapsed_s"),
    );
    machine_lines(
        out,
        r,
        "The machine was shared with other builds, so every figure is noisy; compare within a row.",
    );
    let idle: Vec<String> = r
        .sizes
        .iter()
        .filter_map(|n| {
            let ms = r.text(n, "meta", "redis_idle_cpu_ms_per_s")?;
            Some(format!("{ms} at N={}", size(n)))
        })
        .collect();
    let _ = writeln!(
        out,
        "- Idle redis-server CPU, ms per second (housekeeping, subtracted from the Redis CPU figures): {}",
        idle.join("; ")
    );
    let _ = writeln!(
        out,
        "- Versions: {}; nginx {}; {}; Redis {}; wrk {}; rustc {}",
        r.meta("exporter"),
        r.meta("nginx"),
        r.meta("peer"),
        r.meta("redis"),
        r.meta("wrk"),
        r.meta("rustc")
    );
    let flags = r.meta("exporter_flags");
    let _ = writeln!(
        out,
        "- harvest-exporter flags: `--harvest.max-symbols 200000`{}; event mode: {}",
        if flags.is_empty() {
            String::new()
        } else {
            format!(" `{flags}`")
        },
        match r.meta("event_flags") {
            "" => "not measured (no `BENCH_EVENT_FLAGS`)".to_owned(),
            flags => format!("`{flags}`"),
        }
    );
    out.push('\n');
}

enum Verdict {
    Pass,
    Fail,
    NotMeasured,
}

impl Verdict {
    fn text(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**fail**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

struct Goal {
    name: String,
    measured: String,
    target: String,
    verdict: Verdict,
}

fn check(name: String, measured: Option<f64>, target: String, pass: impl Fn(f64) -> bool) -> Goal {
    Goal {
        name,
        measured: measured.map_or_else(|| "not measured".into(), sig),
        target,
        verdict: match measured {
            Some(value) if pass(value) => Verdict::Pass,
            Some(_) => Verdict::Fail,
            None => Verdict::NotMeasured,
        },
    }
}

/// A refresh's wall time with the CPU Redis spent answering it, which bounds it from below.
fn redis_alone(mut goal: Goal, redis_ms: Option<f64>) -> Goal {
    if let Some(redis_ms) = redis_ms {
        goal.measured = format!(
            "{} (Redis's CPU per refresh: {})",
            goal.measured,
            sig(redis_ms)
        );
    }
    goal
}

/// At `n` symbols with `enc`: throughput at least `least` times nginx's, and p99 under load at
/// most twice nginx's.
fn against_nginx(goals: &mut Vec<Goal>, r: &Results, n: &str, enc: &str, least: f64) {
    let throughput = r.rps(n, "ours", enc).zip(r.rps(n, "nginx", enc));
    goals.push(check(
        format!("throughput at {} symbols ({enc}), ours / nginx", size(n)),
        throughput.map(|(a, b)| a / b),
        format!("≥ {least}"),
        |v| v >= least,
    ));
    let p99 = r
        .load_ms(n, "ours", enc, "p99")
        .zip(r.load_ms(n, "nginx", enc, "p99"));
    goals.push(check(
        format!(
            "p99 latency under load at {} ({enc}), ours / nginx",
            size(n)
        ),
        p99.map(|(a, b)| a / b),
        "≤ 2".into(),
        |v| v <= 2.0,
    ));
    let paced = r
        .paced_ms(n, "ours", enc, "p99")
        .zip(r.paced_ms(n, "nginx", enc, "p99"));
    if paced.is_some() {
        goals.push(check(
            format!(
                "p99 latency at a fixed rate at {} ({enc}), ours / nginx",
                size(n)
            ),
            paced.map(|(a, b)| a / b),
            "≤ 2".into(),
            |v| v <= 2.0,
        ));
    }
}

/// The hand-written RESP reader of `src/source/wire.rs` against the crate's parser, measured
/// alone by the library's `reader_against_the_crate` benchmark.
fn reader(out: &mut String, r: &Results) {
    let get = |key: &str| r.get("-", "reader", key);
    let Some(symbols) = get("symbols") else {
        return;
    };
    let _ = write!(
        out,
        "## The RESP reader\n\nThe replies of a {}-symbol refresh ({} in {}: ten SCAN pages, then an HMGET of every proposal field per symbol with the seed's example values), read from one buffer by the exporter's own reader (`src/source/wire.rs`) and by the redis crate's parser, as it reads them from its connections. CPU: the lowest of 20 reads, this thread's CPU time; allocations: of one read. Parsing only: both then pack the same bytes the same way.\n\n",
        count(symbols),
        or_dash(get("values"), count),
        or_dash(get("reply_bytes"), bytes),
    );
    let cpu = |key: &str| get(key).map(|ns| ns / 1e6);
    table(
        out,
        &["reader", "CPU (ms)", "allocations", "CPU, crate / ours"],
        vec![
            vec![
                "harvest-exporter's".into(),
                or_dash(cpu("wire_cpu_ns"), sig),
                or_dash(get("wire_allocations"), count),
                ratio(cpu("crate_cpu_ns"), cpu("wire_cpu_ns")),
            ],
            vec![
                "the redis crate's".into(),
                or_dash(cpu("crate_cpu_ns"), sig),
                or_dash(get("crate_allocations"), count),
                "1×".into(),
            ],
        ],
    );
}

fn goals(out: &mut String, r: &Results) {
    out.push_str("## Goals\n\nThe goals of the performance issues, judged on the figures above. RSS limits are read in MiB.\n\n");
    let mut goals = Vec::new();
    let k = "1000";
    for enc in ["plain", "gzip"] {
        against_nginx(&mut goals, r, k, enc, 0.8);
        let peer = r
            .rps(k, "ours", enc)
            .zip(r.rps(k, "peer", enc).filter(|&p| p > 0.0));
        goals.push(check(
            format!("throughput at 1,000 ({enc}), ours / peer"),
            peer.map(|(a, b)| a / b),
            "≥ 30".into(),
            |v| v >= 30.0,
        ));
    }
    for n in ["3", "100"] {
        for enc in ["plain", "gzip"] {
            against_nginx(&mut goals, r, n, enc, 0.9);
        }
    }
    let ten = "10000";
    goals.push(redis_alone(
        check(
            "refresh wall time at 10,000 (ms)".into(),
            r.refresh_ms(ten),
            "< 60".into(),
            |v| v < 60.0,
        ),
        r.redis_per_refresh_ms(ten),
    ));
    goals.push(check(
        "refresh CPU at 10,000 (ms)".into(),
        r.get(ten, "ours", "refresh_cpu_ms"),
        "< 50".into(),
        |v| v < 50.0,
    ));
    if let Some(cpu) = r.rewritten_cpu_ms(ten, "history_on") {
        goals.push(check(
            "refresh CPU at 10,000, every hash rewritten (ms)".into(),
            Some(cpu),
            "reported".into(),
            |_| true,
        ));
    }
    let idle = ["rss_idle_bytes", "rss_settled_bytes"]
        .iter()
        .filter_map(|key| r.get(ten, "ours", key))
        .reduce(f64::max);
    goals.push(check(
        "RSS at 10,000, idle, settled (MiB)".into(),
        idle.map(|b| b / MIB),
        "< 30".into(),
        |v| v < 30.0,
    ));
    let busiest = |n: &str| {
        [
            "load_plain_rss_peak_bytes",
            "load_gzip_rss_peak_bytes",
            "refresh_rss_peak_bytes",
        ]
        .iter()
        .flat_map(|key| r.all(n, "ours", key))
        .reduce(f64::max)
    };
    goals.push(check(
        "RSS at 10,000, peak under load or refreshing (MiB)".into(),
        busiest(ten).map(|b| b / MIB),
        "< 40".into(),
        |v| v < 40.0,
    ));
    let hundred = "100000";
    goals.push(check(
        "symbols exported at 100,000".into(),
        r.get(hundred, "ours", "symbols_exported"),
        "100,000".into(),
        |v| v == 100_000.0,
    ));
    goals.push(redis_alone(
        check(
            "refresh wall time at 100,000 (ms)".into(),
            r.refresh_ms(hundred),
            "< 600".into(),
            |v| v < 600.0,
        ),
        r.redis_per_refresh_ms(hundred),
    ));
    goals.push(check(
        "RSS at 100,000, peak under load or refreshing (MiB)".into(),
        busiest(hundred).map(|b| b / MIB),
        "< 200".into(),
        |v| v < 200.0,
    ));
    let per_symbol = |n: &str| Some(r.get(n, "ours", "refresh_cpu_ms")? / n.parse::<f64>().ok()?);
    let per_symbol: Vec<f64> = [k, ten, hundred]
        .iter()
        .filter_map(|n| per_symbol(n))
        .collect();
    let spread = (per_symbol.len() == 3).then(|| {
        let most = per_symbol.iter().copied().fold(f64::MIN, f64::max);
        let least = per_symbol.iter().copied().fold(f64::MAX, f64::min);
        most / least
    });
    goals.push(check(
        "constant cost: refresh CPU per symbol at 1,000, 10,000 and 100,000, highest / lowest"
            .into(),
        spread,
        "≤ 1.3".into(),
        |v| v <= 1.3,
    ));
    for (mode, label) in [("default", "default"), ("fast", "fast")] {
        for n in &r.sizes {
            let get = |key: &str| r.get(n, "ours", &format!("fresh_{mode}_{key}"));
            let (Some(interval), Some(p99)) = (get("interval"), get("p99_ms")) else {
                continue;
            };
            let timeouts = get("timeouts").unwrap_or(0.0);
            // A write just after a refresh read its key shows once the next refresh is done,
            // which may be any refresh: the slowest sampled, and the probe's 1 ms between reads.
            let slowest = r
                .get(n, "ours", "refresh_wall_max_seconds")
                .map(|s| s * 1e3)
                .or(r.refresh_ms(n));
            let limit = interval * 1e3 + slowest.unwrap_or(0.0) + PROBE_GAP_MS;
            goals.push(check(
                format!(
                    "freshness with polling ({label} {interval} s interval) at {}, p99 (ms)",
                    size(n)
                ),
                Some(p99),
                format!(
                    "≤ {} (the interval, the slowest refresh sampled and 1 ms) and no timeout",
                    sig(limit)
                ),
                |v| v <= limit && timeouts == 0.0,
            ));
        }
    }
    let event: Vec<&String> = r
        .sizes
        .iter()
        .filter(|n| r.get(n, "ours", "fresh_event_p99_ms").is_some())
        .collect();
    if event.is_empty() {
        goals.push(check(
            "freshness in event mode, p99 (ms)".into(),
            None,
            "≤ 50".into(),
            |v| v <= 50.0,
        ));
    }
    for n in event {
        let timeouts = r.get(n, "ours", "fresh_event_timeouts").unwrap_or(0.0);
        let limit = match n.as_str() {
            "1000" => 20.0,
            "100000" => 100.0,
            _ => 50.0,
        };
        goals.push(check(
            format!("freshness in event mode at {}, p99 (ms)", size(n)),
            r.get(n, "ours", "fresh_event_p99_ms"),
            format!("< {} and no timeout", sig(limit)),
            |v| v < limit && timeouts == 0.0,
        ));
    }
    for n in [k, hundred] {
        // Each round trip may carry one SCAN page; the hashes a page found travel with the next.
        let allowed = r
            .get(n, "ours", "refresh_scan")
            .map(|pages| pages.ceil() + 1.0);
        goals.push(check(
            format!("Redis round trips per refresh at {}", size(n)),
            r.get(n, "ours", "refresh_round_trips"),
            format!(
                "≤ SCAN pages + 1 ({})",
                allowed.map_or_else(|| "–".into(), count)
            ),
            |v| allowed.is_some_and(|allowed| v <= allowed),
        ));
    }
    goals.push(check(
        "SCAN COUNT: keys per SCAN call at 100,000".into(),
        r.get(hundred, "ours", "refresh_scan")
            .map(|s| 100_000.0 / s),
        "100 to 10,000".into(),
        |v| (100.0..=10_000.0).contains(&v),
    ));
    apply_goals(&mut goals, r);
    goals.extend(history::budgets(r));
    for n in [ten, hundred] {
        goals.push(check(
            format!(
                "scrapes allocate nothing that grows with N: RSS growth under load at {} (MiB)",
                size(n)
            ),
            r.scrape_rss_growth(n).map(|b| b / MIB),
            "≤ 1".into(),
            |v| v <= 1.0,
        ));
    }

    let rows = goals
        .into_iter()
        .map(|g| vec![g.name, g.measured, g.target, g.verdict.text().into()])
        .collect();
    table(out, &["goal", "measured", "target", "result"], rows);
}

/// The date, the machine and its load average as each size started, then `note` on what the
/// load means for the figures.
fn machine_lines(out: &mut String, r: &Results, note: &str) {
    let _ = writeln!(out, "- Date: {}", r.meta("date"));
    let _ = writeln!(
        out,
        "- Machine: {} cores ({}), {} memory, {}",
        r.meta("nproc"),
        r.meta("cpu"),
        r.meta("memory"),
        r.meta("kernel")
    );
    let loads: Vec<String> = r
        .sizes
        .iter()
        .filter_map(|n| {
            Some(format!(
                "{} at N={}",
                r.text(n, "meta", "loadavg")?,
                size(n)
            ))
        })
        .collect();
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min) when each size started: {}; at the end: {}. {note}",
        loads.join("; "),
        r.meta("loadavg_end")
    );
}

/// The refresh cost again, with a writer rewriting every hash between two refreshes.
fn rewritten_refresh_cost(out: &mut String, r: &Results) {
    let sizes: Vec<&str> = (r.sizes.iter().map(String::as_str))
        .filter(|n| r.rewritten_cpu_ms(n, "history_on").is_some())
        .collect();
    if sizes.is_empty() {
        return;
    }
    out.push_str("**Every hash rewritten.** The exporter with history of History on and off (below), over its refreshes in turns, each after every hash was written anew while the exporters were paused, so that each refresh finds every hash changed: it parses every one again, renders and compresses the whole body, and records a point in every symbol's history.\n\n");
    let rows = sizes
        .iter()
        .map(|n| {
            let on = "history_on";
            let cpu = r.rewritten_cpu_ms(n, on);
            vec![
                size(n),
                or_dash(r.rewritten_refreshes(n, on), count),
                or_dash(r.get(n, on, "rewritten_wall_seconds"), |s| sig(s * 1e3)),
                or_dash(cpu, sig),
                ratio(cpu, r.get(n, "ours", "refresh_cpu_ms")),
                or_dash(
                    r.all(n, on, "rewritten_rss_peak_bytes")
                        .into_iter()
                        .reduce(f64::max),
                    bytes,
                ),
            ]
        })
        .collect();
    table(
        out,
        &[
            "N",
            "refreshes",
            "wall (ms)",
            "exporter CPU (ms)",
            "CPU / unchanged",
            "RSS peak",
        ],
        rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(sig(1_234_567.8), "1,234,568");
        assert_eq!(sig(12.345), "12.3");
        assert_eq!(sig(0.01234), "0.012");
        assert_eq!(bytes(2_075_157.0), "1.98 MiB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(ratio(Some(80.0), Some(100.0)), "0.800×");
        assert_eq!(ratio(Some(5.0), Some(0.0)), "∞");
        assert_eq!(ratio(None, Some(1.0)), "–");
    }

    #[test]
    fn goals_follow_the_figures() {
        let tsv = "-\tmeta\tsizes\t1000\n\
1000\tours\tload_plain_requests\t900\n1000\tours\tload_plain_duration_us\t1000000\n\
1000\tnginx\tload_plain_requests\t1000\n1000\tnginx\tload_plain_duration_us\t1000000\n";
        let markdown = render(&Results::parse(tsv));
        assert!(markdown.contains(
            "| throughput at 1,000 symbols (plain), ours / nginx | 0.900 | ≥ 0.8 | pass |"
        ));
        assert!(
            markdown.contains(
                "| refresh wall time at 10,000 (ms) | not measured | < 60 | not measured |"
            )
        );
        assert!(markdown.contains(
            "| apply streams: XADD to /metrics, p99 (ms) | not measured | < 50 | not measured |"
        ));
    }

    #[test]
    fn the_reader_is_set_against_the_crate() {
        let tsv = "-\tmeta\tsizes\t3\n-\treader\tsymbols\t10000\n-\treader\tvalues\t240010\n\
-\treader\treply_bytes\t6320210\n-\treader\twire_cpu_ns\t2650000\n-\treader\twire_allocations\t0\n\
-\treader\tcrate_cpu_ns\t37840000\n-\treader\tcrate_allocations\t252313\n";
        let markdown = render(&Results::parse(tsv));
        assert!(
            markdown.contains("| harvest-exporter's | 2.65 | 0 | 14.3× |"),
            "{markdown}"
        );
        assert!(markdown.contains("| the redis crate's | 37.8 | 252,313 | 1× |"));
        assert!(!render(&Results::parse("-\tmeta\tsizes\t3\n")).contains("## The RESP reader"));
    }

    #[test]
    fn apply_streams_are_judged_where_measured() {
        let tsv = "-\tmeta\tsizes\t3 1000\n\
1000\tstreams\tfresh_trials\t20\n1000\tstreams\tfresh_timeouts\t0\n1000\tstreams\tfresh_p99_ms\t12.5\n\
1000\tstreams\tburst_entries\t20000\n1000\tstreams\tburst_cpu_ms\t300\n\
1000\tstreams_on\tload_plain_requests\t850\n1000\tstreams_on\tload_plain_duration_us\t1000000\n\
1000\tstreams_off\tload_plain_requests\t1000\n1000\tstreams_off\tload_plain_duration_us\t1000000\n";
        let markdown = render(&Results::parse(tsv));
        assert!(markdown.contains("## Apply streams"));
        assert!(markdown.contains(
            "| apply streams at 1,000: XADD to /metrics, p99 (ms) | 12.5 | < 50 and no timeout | pass |"
        ));
        assert!(markdown.contains(
            "| apply streams at 1,000: exporter CPU per 1,000 entries (ms) | 15.0 | reported | pass |"
        ));
        assert!(markdown.contains(
            "| apply streams at 1,000: scrape throughput (plain), followed / not | 0.850 | ≥ 0.9 (within noise) | **fail** |"
        ));
        assert!(!markdown.contains("scrape throughput (gzip)"));
    }

    #[test]
    fn polling_freshness_allows_the_slowest_refresh_sampled() {
        let tsv = |max: &str| {
            format!(
                "-\tmeta\tsizes\t1000\n\
1000\tours\trefresh_wall_seconds\t0.010\n{max}\
1000\tours\tfresh_fast_interval\t0.5\n1000\tours\tfresh_fast_p99_ms\t512\n\
1000\tours\tfresh_fast_timeouts\t0\n"
            )
        };
        let slow = render(&Results::parse(&tsv(
            "1000\tours\trefresh_wall_max_seconds\t0.012\n",
        )));
        assert!(slow.contains(
            "| freshness with polling (fast 0.5 s interval) at 1,000, p99 (ms) | 512 | ≤ 513 (the interval, the slowest refresh sampled and 1 ms) and no timeout | pass |"
        ));
        let median_only = render(&Results::parse(&tsv("")));
        assert!(median_only.contains("| 512 | ≤ 511 (the interval, the slowest refresh sampled and 1 ms) and no timeout | **fail** |"));
    }

    #[test]
    fn latency_under_load_is_the_median_of_the_runs() {
        let mut tsv =
            "-\tmeta\tsizes\t3\n-\tmeta\trepeat\t3\n-\tmeta\trepeat_small\t5\n".to_owned();
        for (target, p99s) in [("ours", [4000, 5000, 4500]), ("nginx", [700, 3000, 6000])] {
            for p99 in p99s {
                tsv += &format!(
                    "3\t{target}\tload_plain_requests\t1000\n3\t{target}\tload_plain_duration_us\t1000000\n3\t{target}\tload_plain_p99_us\t{p99}\n"
                );
            }
        }
        let markdown = render(&Results::parse(&tsv));
        assert!(markdown.contains("the best of 3 runs (5 at 100 symbols and fewer)"));
        assert!(
            markdown.contains(
                "| p99 latency under load at 3 (plain), ours / nginx | 1.50 | ≤ 2 | pass |"
            )
        );
    }

    #[test]
    fn the_fixed_rate_runs_get_a_table_and_goals_when_made() {
        let plain = "-\tmeta\tsizes\t3\n";
        let markdown = render(&Results::parse(plain));
        assert!(!markdown.contains("At a fixed rate"));
        assert!(!markdown.contains("at a fixed rate at 3"));
        let mut tsv = plain.to_owned();
        for (target, runs) in [("ours", [0.2, 0.3, 9.0]), ("nginx", [0.4, 0.5, 0.6])] {
            for p99 in runs {
                tsv += &format!(
                    "3\t{target}\tpaced_plain_rate\t12000\n3\t{target}\tpaced_plain_p50_ms\t0.1\n3\t{target}\tpaced_plain_p99_ms\t{p99}\n3\t{target}\tpaced_plain_max_ms\t{p99}\n"
                );
            }
        }
        let markdown = render(&Results::parse(&tsv));
        assert!(markdown.contains("At a fixed rate"));
        assert!(markdown.contains(
            "| 3 | plain | 12,000 | 0.100 | 0.300 | 0.300 | 0.100 | 0.500 | 0.500 | 0.600× |"
        ));
        assert!(markdown.contains(
            "| p99 latency at a fixed rate at 3 (plain), ours / nginx | 0.600 | ≤ 2 | pass |"
        ));
    }
}

//! The measuring half of `scripts/bench`: the script starts and stops the servers, this program
//! does what needs more precision than a shell can give (sub-millisecond timing, tight polling,
//! CPU windows aligned on refreshes) and turns the recorded figures into `docs/performance.md`.
//!
//! Subcommands print `key=value` pairs on one line, for the script to record.

mod apply_streams;
mod cluster;
mod http;
mod paced;
mod procfs;
mod redis_stats;
mod report;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use harvest_exporter::config::DEFAULT_PREFIX;
use harvest_exporter::simulate;
use harvest_exporter::source::{ReadFrom, RedisSettings, Topology};

const USAGE: &str = "usage: bench_probe COMMAND --key value ...
  fill    --redis-port P --symbols N [--seed S]
  scrape  --port P [--path /metrics] [--gzip] [--count K] [--secs S] [--timeout S]
  story   --port P --symbol SYM
  values  --port P --names a,b [--samples K] [--every S] [--max]
  paced   --port P [--gzip] --rate R [--secs S] [--connections C]
  fresh   --redis-port P --port P --symbol SYM --trials K --budget S --pace S --timeout S
  cost    --pid P --redis-pid P[,P...] --redis-port P[,P...] --symbols N --interval S --refreshes K --max-secs S
          [--rewrite-seed S]
  cluster-copy    --redis-port P --cluster-nodes HOST:PORT,...
  apply-fresh  --redis-port P --port P --trials K --budget S --pace S [--timeout S]
  apply-burst  --redis-port P --port P --pid P --entries E [--symbols N] [--max-secs S]
  report  --results FILE --out FILE
  cluster-report  --results FILE --out FILE";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "fill" => fill(&options),
        "scrape" => http::scrape(&options),
        "story" => http::story(&options),
        "values" => http::values(&options),
        "paced" => paced::paced(&options),
        "fresh" => http::fresh(&options),
        "cost" => redis_stats::cost(&options),
        "apply-fresh" => apply_streams::fresh(&options),
        "apply-burst" => apply_streams::burst(&options),
        "cluster-copy" => cluster::copy(&options),
        "report" => report::write(&options),
        "cluster-report" => report::write_cluster(&options),
        other => Err(format!("unknown command {other}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_probe {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--key value` pairs and bare `--flag`s.
pub struct Options(HashMap<String, String>);

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got {arg}"))?;
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next().unwrap_or_default(),
                _ => String::new(),
            };
            map.insert(key.to_owned(), value);
        }
        Ok(Options(map))
    }

    pub fn flag(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn text(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T, String> {
        match (self.0.get(key), default) {
            (Some(raw), _) => raw
                .parse()
                .map_err(|_| format!("--{key}: not a number: {raw}")),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(format!("--{key} is required")),
        }
    }

    pub fn seconds(&self, key: &str, default: Option<f64>) -> Result<Duration, String> {
        let secs: f64 = self.number(key, default)?;
        Duration::try_from_secs_f64(secs).map_err(|_| format!("--{key}: not a duration: {secs}"))
    }
}

/// The symbols of a run of size `n`: three real ones first, so that `BTCUSDT` sorts first at every
/// size and the freshness probe finds its line at the start of the body.
pub fn symbols(n: usize) -> Vec<String> {
    let real = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    real.iter()
        .take(n)
        .map(|s| (*s).to_owned())
        .chain((real.len()..n).map(|i| format!("S{i:06}USDT")))
        .collect()
}

/// Writes one round of the exporter's own simulator for `n` symbols: every field the publisher
/// writes, as the publisher formats it. The simulator pipelines the whole round, which is fast
/// enough for 100,000 symbols and avoids a second generator of realistic values. The same seed
/// writes the same values again, timestamps aside; another moves every symbol's kill score.
/// Prints the symbol in the middle of the sorted list, the one whose story the bench reads.
fn fill(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("redis-port", None)?;
    let n: usize = options.number("symbols", None)?;
    let seed: u64 = options.number("seed", Some(42))?;
    let mut sorted = symbols(n);
    sorted.sort();
    let middle = sorted.get(n / 2).cloned().unwrap_or_default();
    let took = write_round(port, n, seed)?;
    println!(
        "symbols={n} fill_secs={:.3} middle={middle}",
        took.as_secs_f64()
    );
    Ok(())
}

/// One round of the simulator for `n` symbols with `seed`, into the Redis on `port`; how long
/// it took.
pub fn write_round(port: u16, n: usize, seed: u64) -> Result<Duration, String> {
    let settings = RedisSettings {
        topology: Topology::Single,
        read_from: ReadFrom::Primary,
        url: format!("redis://127.0.0.1:{port}/0"),
        password: None,
        ca_file: None,
        client_cert: None,
        tls_server_name: None,
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(120),
    };
    let simulation = simulate::Options {
        symbols: symbols(n),
        interval: Duration::from_secs(1),
        rounds: Some(1),
        seed: Some(seed),
        heat_gate: false,
        apply: None,
    };
    let started = Instant::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(simulate::run(&settings, DEFAULT_PREFIX, simulation))
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `p50_ms=… p99_ms=… min_ms=… max_ms=…` of latencies in milliseconds, as the bench reads it.
pub fn latency_summary(latencies: Vec<f64>) -> String {
    let s = sorted(latencies);
    format!(
        "p50_ms={:.3} p99_ms={:.3} min_ms={:.3} max_ms={:.3}",
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s.first().copied().unwrap_or(f64::NAN),
        s.last().copied().unwrap_or(f64::NAN),
    )
}

pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn btcusdt_sorts_first() {
        for n in [3, 100, 1_000] {
            let mut list = symbols(n);
            assert_eq!(list.len(), n);
            list.sort();
            assert_eq!(list[0], "BTCUSDT");
        }
    }
}

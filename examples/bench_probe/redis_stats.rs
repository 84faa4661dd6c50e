//! The cost of refreshes: exporter CPU, Redis CPU and Redis commands over a window that starts
//! and ends between two refreshes, so that it holds whole refreshes only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::Options;
use crate::procfs;

/// Calls and microseconds per command, from `INFO commandstats`.
pub type CommandStats = BTreeMap<String, (u64, u64)>;

pub fn command_stats(redis: &mut redis::Connection) -> Result<CommandStats, String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(redis)
        .map_err(|e| e.to_string())?;
    Ok(parse_command_stats(&info))
}

fn parse_command_stats(info: &str) -> CommandStats {
    let mut stats = CommandStats::new();
    for line in info.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        stats.insert(name.to_owned(), (field("calls"), field("usec")));
    }
    stats
}

/// Calls per command between two readings, without the `INFO` calls that took them.
pub fn calls_between(before: &CommandStats, after: &CommandStats) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !name.starts_with("info"))
        .map(|(name, (calls, _))| {
            let earlier = before.get(name).map_or(0, |(c, _)| *c);
            (name.clone(), calls - earlier)
        })
        .filter(|(_, calls)| *calls > 0)
        .collect()
}

/// Calls and microseconds per command summed over several servers (a cluster's nodes).
fn command_stats_all(redis: &mut [redis::Connection]) -> Result<CommandStats, String> {
    let mut total = CommandStats::new();
    for connection in redis {
        for (name, (calls, usec)) in command_stats(connection)? {
            let entry = total.entry(name).or_default();
            entry.0 += calls;
            entry.1 += usec;
        }
    }
    Ok(total)
}

/// Waits until the exporter has used no CPU for a while and Redis has answered a whole number of
/// refreshes' HMGETs, at least `hmget_at_least` in all: a moment between two refreshes.
fn between_refreshes(
    pid: u32,
    redis: &mut [redis::Connection],
    n: u64,
    hmget_at_least: u64,
    deadline: Instant,
) -> Result<CommandStats, String> {
    const QUIET: Duration = Duration::from_millis(40);
    let mut last = procfs::cpu_ns(pid)?;
    let mut quiet_since = Instant::now();
    loop {
        if Instant::now() > deadline {
            return Err("no pause between refreshes before the deadline".into());
        }
        std::thread::sleep(Duration::from_millis(2));
        let now = procfs::cpu_ns(pid)?;
        if now != last {
            last = now;
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() >= QUIET {
            let stats = command_stats_all(redis)?;
            let hmget = hmget_calls(&stats);
            if hmget.is_multiple_of(n) && hmget >= hmget_at_least {
                return Ok(stats);
            }
            quiet_since = Instant::now();
        }
    }
}

fn hmget_calls(stats: &CommandStats) -> u64 {
    stats.get("hmget").map_or(0, |(calls, _)| *calls)
}

/// Comma-separated numbers: one per server, several for a cluster's nodes.
fn list<T: std::str::FromStr>(options: &Options, key: &str) -> Result<Vec<T>, String> {
    options
        .text(key)?
        .split(',')
        .map(|raw| {
            raw.parse()
                .map_err(|_| format!("--{key}: not a number: {raw}"))
        })
        .collect()
}

/// CPU of several processes (a cluster's nodes) added up.
fn cpu_ns_all(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|&pid| procfs::cpu_ns(pid)).sum()
}

pub fn cost(options: &Options) -> Result<(), String> {
    let pids: Vec<u32> = list(options, "pid")?;
    // A cluster's nodes are given as lists: their commands and CPU are added up.
    let redis_pids: Vec<u32> = list(options, "redis-pid")?;
    let ports: Vec<u16> = list(options, "redis-port")?;
    let n: u64 = options.number("symbols", None)?;
    let interval = options.seconds("interval", None)?;
    let wanted: u64 = options.number("refreshes", Some(8))?;
    let max = options.seconds("max-secs", Some(30.0))?;
    let rewrite_seed: Option<u64> = match options.flag("rewrite-seed") {
        true => Some(options.number("rewrite-seed", None)?),
        false => None,
    };

    let mut redis = ports
        .iter()
        .map(|port| {
            redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|client| client.get_connection())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let deadline = started + max + interval * 2;
    let mut meters: Vec<Meter> = pids
        .iter()
        .map(|&pid| Meter {
            pid,
            redis_pids: &redis_pids,
            total: Window::default(),
        })
        .collect();

    match rewrite_seed {
        None => {
            let [meter] = &mut meters[..] else {
                return Err("--pid: one exporter, unless --rewrite-seed".into());
            };
            let before = between_refreshes(meter.pid, &mut redis, n, 0, deadline)?;
            procfs::reset_peak(meter.pid)?;
            let from = meter.read(before)?;
            std::thread::sleep(interval.mul_f64(wanted as f64 - 0.5));
            let after = loop {
                let after = between_refreshes(meter.pid, &mut redis, n, 0, deadline)?;
                if (hmget_calls(&after) - hmget_calls(&from.stats)) / n >= wanted
                    || started.elapsed() > max
                {
                    break after;
                }
                std::thread::sleep(interval / 4);
            };
            meter.add(&from, after)?;
        }
        Some(seed) => {
            let [port] = ports[..] else {
                return Err("--rewrite-seed: one Redis only".into());
            };
            // The exporters come stopped between two refreshes. In each turn every hash is
            // written anew, then each exporter, in an order that rotates, refreshes once alone
            // and is stopped again: no writer shares the cores with a refresh measured, and the
            // turns of the exporters lie within a second of each other, so that the machine's
            // other work, which moves the CPU of a refresh by more than a history costs, moves
            // all alike.
            for meter in &meters {
                procfs::reset_peak(meter.pid)?;
            }
            for turn in 0..wanted {
                if started.elapsed() > max {
                    break;
                }
                crate::write_round(port, n as usize, seed + turn)?;
                let count = meters.len();
                for k in 0..count {
                    let meter = &mut meters[(k + turn as usize) % count];
                    let from = meter.read(command_stats_all(&mut redis)?)?;
                    signal(meter.pid, "CONT")?;
                    let at_least = hmget_calls(&from.stats) + n;
                    let after = between_refreshes(meter.pid, &mut redis, n, at_least, deadline)?;
                    signal(meter.pid, "STOP")?;
                    meter.add(&from, after)?;
                }
            }
        }
    }
    for meter in meters {
        println!("{}", meter.line(n)?);
    }
    Ok(())
}

/// What a window of whole refreshes cost, added up over one or more stretches of time.
#[derive(Default)]
struct Window {
    cpu_ns: u64,
    user_ms: f64,
    sys_ms: f64,
    redis_cpu_ns: u64,
    secs: f64,
    calls: BTreeMap<String, u64>,
}

/// The exporter's and Redis's counters at one moment.
struct Reading {
    cpu_ns: u64,
    split_ms: (f64, f64),
    redis_cpu_ns: u64,
    stats: CommandStats,
    at: Instant,
}

/// Reads the counters and adds up the stretches between two readings.
struct Meter<'a> {
    pid: u32,
    redis_pids: &'a [u32],
    total: Window,
}

impl Meter<'_> {
    fn read(&self, stats: CommandStats) -> Result<Reading, String> {
        Ok(Reading {
            cpu_ns: procfs::cpu_ns(self.pid)?,
            split_ms: procfs::cpu_split_ms(self.pid)?,
            redis_cpu_ns: cpu_ns_all(self.redis_pids)?,
            stats,
            at: Instant::now(),
        })
    }

    /// Adds the stretch from `from` to now, where Redis's commands stood at `stats`.
    fn add(&mut self, from: &Reading, stats: CommandStats) -> Result<(), String> {
        let to = self.read(stats)?;
        let total = &mut self.total;
        total.cpu_ns += to.cpu_ns - from.cpu_ns;
        total.user_ms += to.split_ms.0 - from.split_ms.0;
        total.sys_ms += to.split_ms.1 - from.split_ms.1;
        total.redis_cpu_ns += to.redis_cpu_ns - from.redis_cpu_ns;
        total.secs += to.at.duration_since(from.at).as_secs_f64();
        for (name, calls) in calls_between(&from.stats, &to.stats) {
            *total.calls.entry(name).or_default() += calls;
        }
        Ok(())
    }

    /// The window's figures per refresh, as `key=value` pairs on one line.
    fn line(&self, n: u64) -> Result<String, String> {
        let Window {
            cpu_ns,
            user_ms,
            sys_ms,
            redis_cpu_ns,
            secs,
            calls,
        } = &self.total;
        let refreshes = calls.get("hmget").copied().unwrap_or(0) / n;
        if refreshes == 0 {
            return Err(format!(
                "pid {}: no refresh completed in {secs:.1} s",
                self.pid
            ));
        }
        let per = |ns: u64| ns as f64 / 1e6 / refreshes as f64;
        let per_refresh =
            |name: &str| calls.get(name).copied().unwrap_or(0) as f64 / refreshes as f64;
        let total: u64 = calls.values().sum();
        Ok(format!(
            "refreshes={refreshes} window_secs={secs:.2} cpu_ms={:.4} user_ms={:.3} sys_ms={:.3} redis_cpu_ms={:.4} commands={:.1} scan={:.2} hmget={:.1} rss_peak_bytes={}",
            per(*cpu_ns),
            user_ms / refreshes as f64,
            sys_ms / refreshes as f64,
            per(*redis_cpu_ns),
            total as f64 / refreshes as f64,
            per_refresh("scan"),
            per_refresh("hmget"),
            procfs::peak_rss(self.pid)?,
        ))
    }
}

/// Sends `name` (STOP, CONT) to `pid`. kill(1) rather than a signal crate: two signals a
/// refresh do not justify a dependency.
fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("kill -{name} {pid}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("kill -{name} {pid}: {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines() {
        let info = "# Commandstats\r\ncmdstat_hmget:calls=2000,usec=5400,usec_per_call=2.70,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=90\r\n";
        let before = parse_command_stats(info);
        assert_eq!(before["hmget"], (2000, 5400));
        let mut after = before.clone();
        after.insert("hmget".into(), (3000, 8000));
        after.insert("info".into(), (9, 200));
        after.insert("scan".into(), (2, 10));
        let calls = calls_between(&before, &after);
        assert_eq!(
            calls.into_iter().collect::<Vec<_>>(),
            [("hmget".to_owned(), 1000), ("scan".to_owned(), 2)]
        );
    }
}

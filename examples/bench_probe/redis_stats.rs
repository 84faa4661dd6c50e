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
/// refreshes' HMGETs: a moment between two refreshes.
fn between_refreshes(
    pid: u32,
    redis: &mut [redis::Connection],
    n: u64,
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
            let hmget = stats.get("hmget").map_or(0, |(calls, _)| *calls);
            if hmget.is_multiple_of(n) {
                return Ok(stats);
            }
            quiet_since = Instant::now();
        }
    }
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
    let pid: u32 = options.number("pid", None)?;
    // A cluster's nodes are given as lists: their commands and CPU are added up.
    let redis_pids: Vec<u32> = list(options, "redis-pid")?;
    let ports: Vec<u16> = list(options, "redis-port")?;
    let n: u64 = options.number("symbols", None)?;
    let interval = options.seconds("interval", None)?;
    let wanted: u64 = options.number("refreshes", Some(8))?;
    let max = options.seconds("max-secs", Some(30.0))?;

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

    let before = between_refreshes(pid, &mut redis, n, deadline)?;
    let (cpu0, split0, redis_cpu0, window) = (
        procfs::cpu_ns(pid)?,
        procfs::cpu_split_ms(pid)?,
        cpu_ns_all(&redis_pids)?,
        Instant::now(),
    );
    procfs::reset_peak(pid)?;
    std::thread::sleep(interval.mul_f64(wanted as f64 - 0.5));
    let (after, refreshes) = loop {
        let after = between_refreshes(pid, &mut redis, n, deadline)?;
        let hmget = |s: &CommandStats| s.get("hmget").map_or(0, |(calls, _)| *calls);
        let refreshes = (hmget(&after) - hmget(&before)) / n;
        if refreshes >= wanted || started.elapsed() > max {
            break (after, refreshes);
        }
        std::thread::sleep(interval / 4);
    };
    let (cpu1, split1, redis_cpu1) = (
        procfs::cpu_ns(pid)?,
        procfs::cpu_split_ms(pid)?,
        cpu_ns_all(&redis_pids)?,
    );
    let secs = window.elapsed().as_secs_f64();
    if refreshes == 0 {
        return Err(format!("no refresh completed in {secs:.1} s"));
    }
    let per = |ns: u64| ns as f64 / 1e6 / refreshes as f64;
    let calls = calls_between(&before, &after);
    let per_refresh = |name: &str| calls.get(name).copied().unwrap_or(0) as f64 / refreshes as f64;
    let total: u64 = calls.values().sum();
    println!(
        "refreshes={refreshes} window_secs={secs:.2} cpu_ms={:.4} user_ms={:.3} sys_ms={:.3} redis_cpu_ms={:.4} commands={:.1} scan={:.2} hmget={:.1} rss_peak_bytes={}",
        per(cpu1 - cpu0),
        (split1.0 - split0.0) / refreshes as f64,
        (split1.1 - split0.1) / refreshes as f64,
        per(redis_cpu1 - redis_cpu0),
        total as f64 / refreshes as f64,
        per_refresh("scan"),
        per_refresh("hmget"),
        procfs::peak_rss(pid)?,
    );
    Ok(())
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

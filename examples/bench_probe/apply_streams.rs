//! The apply streams as the exporter follows them: how soon an `XADD` shows in `/metrics`, and
//! what a burst of entries costs the exporter (CPU) and Redis (the follower's commands). Entries
//! carry the field sets the apply layer writes (plans with every field, results of the close,
//! failure and dry-run paths), so that parsing and counting cost what they cost in production.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::redis_stats::{self, CommandStats};
use crate::{Options, latency_summary, percentile, procfs, sorted, symbols};

pub const PLAN_STREAM: &str = "quantum:stream:apply.plan";
pub const RESULT_STREAM: &str = "quantum:stream:apply.result";
/// The commands the follower sends (its TYPE, XINFO, XREVRANGE and XREAD); the writer's XADD and
/// the exporter's refreshes (SCAN, HMGET) are left out.
const FOLLOWER_COMMANDS: [&str; 5] = ["xread", "xinfo|stream", "xinfo|groups", "type", "xrevrange"];
/// XADDs per pipeline while writing a burst.
const PIPELINE: usize = 500;

fn counter_needle(stream: &str) -> String {
    format!("quantum_apply_stream_entries_seen_total{{stream=\"{stream}\"}} ")
}

/// Reads a whole `/metrics` body into `body` (reused between polls).
fn fetch(port: u16, body: &mut Vec<u8>) -> Result<(), String> {
    let mut stream = crate::http::send(port, false, Duration::from_secs(10))
        .map_err(|e| format!("GET /metrics: {e}"))?;
    body.clear();
    stream
        .read_to_end(body)
        .map_err(|e| format!("GET /metrics: {e}"))?;
    Ok(())
}

/// The value of the line starting with `needle`, searched from the end: the apply families come
/// after the proposals' and before the short scrape-time tail.
fn value_of(body: &[u8], needle: &str) -> Option<u64> {
    let at = body
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())?;
    let rest = &body[at + needle.len()..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// The counters' values once the follower has first looked at the streams (they are absent
/// from `/metrics` before), waiting up to 10 s for that.
fn first_look(port: u16, body: &mut Vec<u8>, needles: &[&str]) -> Result<Vec<u64>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        fetch(port, body)?;
        let values: Option<Vec<u64>> = needles.iter().map(|n| value_of(body, n)).collect();
        match values {
            Some(values) => return Ok(values),
            None if Instant::now() > deadline => {
                return Err(format!("no {} in /metrics", needles.join(", ")));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn connect(port: u16) -> Result<redis::Connection, String> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .and_then(|client| client.get_connection())
        .map_err(|e| e.to_string())
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Fields = Vec<(&'static str, String)>;

/// One plan as the apply layer writes it in dry-run mode with a one-symbol allowlist: mostly
/// skipped, sometimes blocked by a high kill score, now and then executed or in error.
fn plan(rng: &mut fastrand::Rng, id: u64, symbol: &str, timestamp: u64) -> Fields {
    const ACTIONS: [&str; 5] = [
        "FULL_CLOSE_PROPOSED",
        "PARTIAL_75",
        "PARTIAL_50",
        "UPDATE_SL",
        "HOLD",
    ];
    let action = ACTIONS[rng.usize(..ACTIONS.len())];
    let kill_score = rng.f64();
    let side = if rng.bool() { "SELL" } else { "BUY" };
    let (decision, reasons, steps) = if action == "HOLD" {
        ("SKIP", "action_hold".to_owned(), "[]".to_owned())
    } else if kill_score >= 0.8 {
        (
            "BLOCKED",
            "kill_score_critical,kill_score_close_blocked".to_owned(),
            "[]".to_owned(),
        )
    } else if rng.f64() < 0.03 {
        ("ERROR", "missing_new_sl".to_owned(), "[]".to_owned())
    } else {
        let kelly = 50 * rng.u32(1..=10);
        let steps = format!(
            r#"[{{"step": 1, "type": "market_reduce_only", "side": "{side}", "pct": 50.0}}]"#
        );
        if rng.f64() < 0.2 {
            (
                "EXECUTE",
                format!("kill_score_close_ok,layer4_kelly_{kelly}usdt"),
                steps,
            )
        } else {
            (
                "SKIP",
                format!("kill_score_close_ok,layer4_kelly_{kelly}usdt,not_in_allowlist"),
                steps,
            )
        }
    };
    let component = |rng: &mut fastrand::Rng| format!("{:.6}", rng.f64() * 0.5);
    let mut fields = vec![
        (
            "plan_id",
            format!("{:016x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        ),
        ("symbol", symbol.to_owned()),
        ("action", action.to_owned()),
        ("kill_score", format!("{kill_score:.6}")),
        ("k_regime_flip", component(rng)),
        ("k_sigma_spike", component(rng)),
        ("k_ts_drop", component(rng)),
        ("k_age_penalty", component(rng)),
        ("R_net", format!("{:.4}", rng.f64() * 8.0)),
        (
            "new_sl_proposed",
            if action == "UPDATE_SL" {
                format!("{:.2}", rng.f64() * 1000.0 + 10.0)
            } else {
                String::new()
            },
        ),
        ("decision", decision.to_owned()),
        ("reason_codes", reasons),
        ("steps", steps),
        ("qty", format!("{:.4}", rng.f64() * 10.0 + 0.001)),
        ("side", side.to_owned()),
        ("source", "apply_layer".to_owned()),
        ("price", String::new()),
        ("reduceOnly", "True".to_owned()),
        ("timestamp", timestamp.to_string()),
    ];
    if rng.f64() < 0.9 {
        fields.push(("event_type", "apply.plan".to_owned()));
    }
    fields
}

/// The result of a plan, with the field set of the code path that wrote it.
fn result(rng: &mut fastrand::Rng, plan: &Fields) -> Fields {
    let get = |name: &str| {
        plan.iter()
            .find(|(key, _)| *key == name)
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let mut fields = vec![("plan_id", get("plan_id")), ("symbol", get("symbol"))];
    match get("decision").as_str() {
        "EXECUTE" if rng.f64() < 0.8 => {
            let order = rng.u64(1_000_000_000..10_000_000_000);
            fields.extend([
                ("decision", "EXECUTED".to_owned()),
                ("executed", "True".to_owned()),
                ("error", String::new()),
                (
                    "steps_results",
                    format!(
                        r#"[{{"step": 1, "status": "FILLED", "error": "", "order_id": "{order}"}}]"#
                    ),
                ),
                ("action", get("action")),
                ("close_qty", get("qty")),
                ("filled_qty", get("qty")),
                ("order_status", "FILLED".to_owned()),
                ("side", get("side")),
                ("timestamp", get("timestamp")),
            ]);
        }
        "EXECUTE" | "ERROR" => {
            let error = format!("position_limit_reached_{}/10", rng.u8(7..=10));
            fields.extend([
                ("decision", "FAILED".to_owned()),
                ("executed", "false".to_owned()),
                ("error", error.clone()),
                (
                    "details",
                    format!(r#"{{"error": "{error}", "plan_id": "{}"}}"#, get("plan_id")),
                ),
                ("steps_results", "[]".to_owned()),
            ]);
        }
        decision => {
            let reasons = get("reason_codes");
            let error = match reasons.rsplit(',').next() {
                Some("action_hold") | None => String::new(),
                Some(last) => last.to_owned(),
            };
            if rng.f64() < 0.85 {
                fields.push(("decision", decision.to_owned()));
            }
            fields.extend([
                ("executed", "False".to_owned()),
                (
                    "would_execute",
                    if get("steps") == "[]" {
                        "False"
                    } else {
                        "True"
                    }
                    .to_owned(),
                ),
                ("error", error),
                ("steps_results", "[]".to_owned()),
            ]);
            if rng.f64() < 0.2 {
                fields.push(("reason", reasons));
            }
        }
    }
    fields.push(("source", "apply_layer".to_owned()));
    if rng.f64() < 0.9 {
        fields.push(("event_type", "apply.result".to_owned()));
    }
    fields
}

fn xadd(pipe: &mut redis::Pipeline, stream: &str, fields: &Fields) {
    pipe.cmd("XADD").arg(stream).arg("*");
    for (key, value) in fields {
        pipe.arg(*key).arg(value);
    }
    pipe.ignore();
}

/// Time from an `XADD` of a plan to `quantum_apply_stream_entries_seen_total{stream="plan"}`
/// counting it in `/metrics`: each trial waits a random part of `--pace`, writes one plan, then
/// reads the whole body every `--gap` until the counter has moved.
pub fn fresh(options: &Options) -> Result<(), String> {
    let redis_port: u16 = options.number("redis-port", None)?;
    let port: u16 = options.number("port", None)?;
    let trials: usize = options.number("trials", None)?;
    let budget = options.seconds("budget", None)?;
    let pace = options.seconds("pace", None)?;
    let timeout = options.seconds("timeout", Some(5.0))?;
    let gap = options.seconds("gap", Some(0.001))?;

    let mut redis = connect(redis_port)?;
    let needle = counter_needle("plan");
    let mut body = Vec::with_capacity(4 << 20);
    let mut expected = first_look(port, &mut body, &[&needle])?[0];
    // What one poll costs by itself: a trial cannot measure less.
    let mut reads = Vec::new();
    for _ in 0..5 {
        let begun = Instant::now();
        fetch(port, &mut body)?;
        reads.push(begun.elapsed().as_secs_f64() * 1e3);
    }
    let read_ms = percentile(&sorted(reads), 50.0);
    let mut rng = fastrand::Rng::with_seed(11);
    let started = Instant::now();
    let (mut latencies, mut timeouts, mut polls) = (Vec::new(), 0, 0u64);
    for trial in 0..trials {
        if trial > 0 && started.elapsed() > budget {
            break;
        }
        std::thread::sleep(pace.mul_f64(rng.f64()));
        let fields = plan(&mut rng, (1 << 40) | trial as u64, "BTCUSDT", unix_secs());
        let mut pipe = redis::pipe();
        xadd(&mut pipe, PLAN_STREAM, &fields);
        expected += 1;
        let written = Instant::now();
        pipe.exec(&mut redis).map_err(|e| e.to_string())?;
        loop {
            polls += 1;
            fetch(port, &mut body)?;
            if value_of(&body, &needle).is_some_and(|seen| seen >= expected) {
                latencies.push(written.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if written.elapsed() > timeout {
                timeouts += 1;
                break;
            }
            std::thread::sleep(gap);
        }
    }
    println!(
        "trials={} timeouts={timeouts} polls={polls} read_ms={read_ms:.3} body_bytes={} {}",
        latencies.len(),
        body.len(),
        latency_summary(latencies),
    );
    Ok(())
}

/// The follower's calls and Redis microseconds between two readings of `INFO commandstats`:
/// (all its commands, XREADs, microseconds).
fn follower_calls(before: &CommandStats, after: &CommandStats) -> (u64, u64, u64) {
    let mut totals = (0, 0, 0);
    for name in FOLLOWER_COMMANDS {
        let (c0, u0) = before.get(name).copied().unwrap_or_default();
        let (c1, u1) = after.get(name).copied().unwrap_or_default();
        totals.0 += c1 - c0;
        totals.2 += u1 - u0;
        if name == "xread" {
            totals.1 += c1 - c0;
        }
    }
    totals
}

/// Waits until the exporter has used no CPU for `quiet`.
fn wait_quiet(pid: u32, quiet: Duration, deadline: Instant) -> Result<(), String> {
    let mut last = procfs::cpu_ns(pid)?;
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        if Instant::now() > deadline {
            return Err("the exporter does not go quiet".into());
        }
        std::thread::sleep(Duration::from_millis(1));
        let now = procfs::cpu_ns(pid)?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(())
}

/// Writes `--entries` entries (a plan then its result, over `--symbols` symbols) in pipelines
/// from a second thread while this one watches the exporter's CPU every millisecond. Once the
/// writer is done and the exporter has been quiet for 50 ms, one scrape checks that both
/// counters have moved by every entry written; if not, watching goes on. The window ends at the
/// exporter's last CPU activity: its CPU and the follower's Redis commands over that window.
pub fn burst(options: &Options) -> Result<(), String> {
    const QUIET: Duration = Duration::from_millis(50);
    let redis_port: u16 = options.number("redis-port", None)?;
    let port: u16 = options.number("port", None)?;
    let pid: u32 = options.number("pid", None)?;
    let entries: usize = options.number("entries", None)?;
    let names = symbols(options.number("symbols", Some(100))?);
    let max = options.seconds("max-secs", Some(60.0))?;

    let plans = entries.div_ceil(2);
    let results = entries - plans;
    let mut redis = connect(redis_port)?;
    let mut body = Vec::with_capacity(4 << 20);
    let (plan_needle, result_needle) = (counter_needle("plan"), counter_needle("result"));
    let first = first_look(port, &mut body, &[&plan_needle, &result_needle])?;
    let (plan0, result0) = (first[0], first[1]);
    let seen = |body: &[u8]| (value_of(body, &plan_needle), value_of(body, &result_needle));
    let deadline = Instant::now() + max;
    wait_quiet(pid, QUIET, deadline)?;

    let stats0 = redis_stats::command_stats(&mut redis)?;
    let (cpu0, split0) = (procfs::cpu_ns(pid)?, procfs::cpu_split_ms(pid)?);
    let started = Instant::now();
    let (write_secs, last_change, cpu1, split1, checks) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<f64, String> {
            let mut redis = connect(redis_port)?;
            let mut rng = fastrand::Rng::with_seed(23);
            let timestamp = unix_secs();
            let mut pipe = redis::pipe();
            for i in 0..plans {
                let fields = plan(&mut rng, i as u64, &names[i % names.len()], timestamp);
                xadd(&mut pipe, PLAN_STREAM, &fields);
                if i < results {
                    xadd(&mut pipe, RESULT_STREAM, &result(&mut rng, &fields));
                }
                if (i + 1) % (PIPELINE / 2) == 0 || i + 1 == plans {
                    pipe.exec(&mut redis).map_err(|e| e.to_string())?;
                    pipe = redis::pipe();
                }
            }
            Ok(started.elapsed().as_secs_f64())
        });
        let mut last = cpu0;
        let mut last_change = started;
        let mut checks = 0;
        loop {
            if Instant::now() > deadline {
                return Err(format!("entries not all counted within {max:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
            let now = procfs::cpu_ns(pid)?;
            if now != last {
                (last, last_change) = (now, Instant::now());
                continue;
            }
            if !writer.is_finished() || last_change.elapsed() < QUIET {
                continue;
            }
            // Read before the check's own scrape adds to them.
            let split = procfs::cpu_split_ms(pid)?;
            checks += 1;
            fetch(port, &mut body)?;
            if let (Some(p), Some(r)) = seen(&body)
                && p >= plan0 + plans as u64
                && r >= result0 + results as u64
            {
                let write_secs = writer.join().map_err(|_| "the writer panicked")??;
                return Ok((write_secs, last_change, last, split, checks));
            }
            // The check's scrape is the exporter's CPU too: watch from after it.
            last = procfs::cpu_ns(pid)?;
            last_change = Instant::now();
        }
    })?;
    let stats1 = redis_stats::command_stats(&mut redis)?;
    let (commands, xreads, usec) = follower_calls(&stats0, &stats1);
    println!(
        "entries={entries} plans={plans} results={results} symbols={} write_secs={write_secs:.3} wall_ms={:.1} cpu_ms={:.3} user_ms={:.0} sys_ms={:.0} commands={commands} xread={xreads} redis_usec={usec} checks={checks}",
        names.len(),
        (last_change - started).as_secs_f64() * 1e3,
        (cpu1 - cpu0) as f64 / 1e6,
        split1.0 - split0.0,
        split1.1 - split0.1,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_end() {
        let body = b"a 1\nquantum_apply_stream_entries_seen_total{stream=\"plan\"} 41\nquantum_apply_stream_entries_seen_total{stream=\"result\"} 40\nup 1\n";
        assert_eq!(value_of(body, &counter_needle("plan")), Some(41));
        assert_eq!(value_of(body, &counter_needle("result")), Some(40));
        assert_eq!(value_of(body, "missing "), None);
    }

    #[test]
    fn results_answer_their_plan() {
        let mut rng = fastrand::Rng::with_seed(1);
        for i in 0..200 {
            let plan = plan(&mut rng, i, "ETHUSDT", 1_700_000_000);
            let result = result(&mut rng, &plan);
            assert_eq!(plan[0], result[0], "plan_id");
            assert_eq!(result[1].1, "ETHUSDT");
            assert!(plan.iter().any(|(k, _)| *k == "reason_codes"));
        }
    }
}

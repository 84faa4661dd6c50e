//! An HA pair costs Redis no more than twice one exporter: two exporters reading the same Redis
//! send, per refresh, what one sends, and together no more than twice what one sends in the same
//! time. Everything counts: the refreshes' SCANs and HMGETs, and the stream follower's blocking
//! XREAD (1 s) and its XINFO rounds (every 5 s).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    Exporter, PLAN_STREAM, RESULT_STREAM, Redis, measured, report, sample, wait_for, xadd,
};

const SYMBOLS: usize = 1_000;
/// Two whole XINFO periods (5 s), so that each exporter's XINFO rounds and its ten blocking
/// XREADs fall into the window whatever its phase.
const WINDOW: Duration = Duration::from_secs(10);
const REFRESHES: &str = "quantum_harvest_exporter_refreshes_total";
const RECALLED_PLAN: &str =
    "quantum_apply_last_plan_decision{symbol=\"S0000USDT\",decision=\"BLOCKED\"}";

/// The stream follower's commands: the start-up XREVRANGE, TYPE and XINFO rounds, XREAD.
const STREAM_COMMANDS: [&str; 5] = ["xread", "xinfo|stream", "xinfo|groups", "type", "xrevrange"];

/// `calls=` of every `cmdstat_` line of `INFO commandstats`, by command.
fn command_calls(connection: &mut redis::Connection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .map(|line| {
            let (command, stats) = line.split_once(':').expect("cmdstat_<command>:<stats>");
            let calls = stats
                .split_once("calls=")
                .and_then(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no calls in {line:?}"));
            (command.to_owned(), calls)
        })
        .collect()
}

fn refreshes(exporter: &Exporter) -> f64 {
    sample(&exporter.get("/metrics").text(), REFRESHES).expect("the refresh counter")
}

/// What Redis served over one window, and the refreshes the exporters made meanwhile.
struct Window {
    /// Every command, the test's own left out.
    calls: u64,
    /// Of which the stream followers'.
    stream_calls: u64,
    refreshes: f64,
    elapsed: Duration,
}

impl Window {
    fn per_refresh(&self) -> f64 {
        self.calls as f64 / self.refreshes
    }

    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Returns just after the exporter's next refresh is published, when its reads are done: a window
/// opened or closed then cuts none of its refreshes in two (unless the next one follows at once,
/// on a machine so loaded that a refresh takes longer than the poll interval).
fn after_next_refresh(exporter: &Exporter) {
    let now = refreshes(exporter);
    wait_for("the next refresh", Duration::from_secs(10), || {
        (refreshes(exporter) > now).then_some(())
    });
}

/// Counts Redis's commands over [`WINDOW`] (or a little more, to end just after a refresh of the
/// first exporter) while `exporters` run. The test's own commands in the window are the INFO
/// that opens it (INFO counts itself only after replying, so the closing one is not in the
/// total); it sends nothing else meanwhile.
fn measure(connection: &mut redis::Connection, exporters: &[&Exporter]) -> Window {
    after_next_refresh(exporters[0]);
    let before = command_calls(connection);
    let started = Instant::now();
    let refreshes_before: f64 = exporters.iter().map(|e| refreshes(e)).sum();
    std::thread::sleep(WINDOW);
    after_next_refresh(exporters[0]);
    let after = command_calls(connection);
    let elapsed = started.elapsed();
    let refreshes_after: f64 = exporters.iter().map(|e| refreshes(e)).sum();
    let delta = |command: &str| {
        after.get(command).copied().unwrap_or(0) - before.get(command).copied().unwrap_or(0)
    };
    Window {
        calls: after.keys().map(|command| delta(command)).sum::<u64>() - 1,
        stream_calls: STREAM_COMMANDS.iter().map(|command| delta(command)).sum(),
        refreshes: refreshes_after - refreshes_before,
        elapsed,
    }
}

/// Waits until the exporter has read every symbol and recalled the plan from its stream, and
/// refreshed a few times since, so that its start-up reads (the streams' XREVRANGE) are over.
fn wait_settled(exporter: &Exporter) {
    let body = exporter.wait_metrics(
        "every symbol and the plan read",
        Duration::from_secs(20),
        |body| {
            sample(body, "quantum_harvest_exporter_symbols_exported") == Some(SYMBOLS as f64)
                && sample(body, RECALLED_PLAN) == Some(1.0)
        },
    );
    let start = sample(&body, REFRESHES).unwrap();
    exporter.wait_metrics("three more refreshes", Duration::from_secs(10), |body| {
        sample(body, REFRESHES).is_some_and(|n| n >= start + 3.0)
    });
}

#[test]
fn an_ha_pair_costs_redis_no_more_than_twice_one_exporter() {
    let redis = Redis::start();
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:04}USDT")).collect();
    redis.fill(&symbols, &[("kill_score", "0.5"), ("R_net", "1.0")]);
    xadd(
        &redis,
        PLAN_STREAM,
        &[
            ("plan_id", "p1"),
            ("symbol", "S0000USDT"),
            ("decision", "BLOCKED"),
            ("timestamp", "1769130500"),
        ],
    );
    xadd(
        &redis,
        RESULT_STREAM,
        &[
            ("plan_id", "p1"),
            ("symbol", "S0000USDT"),
            ("decision", "BLOCK"),
        ],
    );
    let mut connection = redis.connection();

    let first = Exporter::start(&redis, &[]);
    wait_settled(&first);
    let one = measure(&mut connection, &[&first]);

    let second = Exporter::start(&redis, &[]);
    wait_settled(&second);
    let two = measure(&mut connection, &[&first, &second]);

    // Both exporters followed the streams all along: their calls are in the totals.
    for exporter in [&first, &second] {
        let body = exporter.metrics();
        assert_eq!(sample(&body, RECALLED_PLAN), Some(1.0));
        assert_eq!(
            sample(&body, "quantum_harvest_exporter_redis_up"),
            Some(1.0)
        );
    }
    let per_refresh_ratio = two.per_refresh() / one.per_refresh();
    let total_ratio = two.per_second() / one.per_second();
    println!(
        "one exporter: {} calls ({} of the stream follower), {} refreshes in {:.2} s ({:.1} calls a refresh); \
         two: {} calls ({} of the stream followers), {} refreshes in {:.2} s ({:.1} calls a refresh); \
         per refresh x{per_refresh_ratio:.3}, total x{total_ratio:.3}",
        one.calls,
        one.stream_calls,
        one.refreshes,
        one.elapsed.as_secs_f64(),
        one.per_refresh(),
        two.calls,
        two.stream_calls,
        two.refreshes,
        two.elapsed.as_secs_f64(),
        two.per_refresh(),
    );
    assert!(
        one.refreshes >= 10.0 && two.refreshes >= 10.0,
        "refreshes: {} with one exporter, {} with two",
        one.refreshes,
        two.refreshes
    );
    // The second follower's blocking XREADs are in the second window's total.
    assert!(
        one.stream_calls > 0 && two.stream_calls > one.stream_calls,
        "stream follower calls: {} with one exporter, {} with two",
        one.stream_calls,
        two.stream_calls
    );
    assert!(
        (per_refresh_ratio - 1.0).abs() <= 0.10,
        "calls per refresh: {:.1} with one exporter, {:.1} with two",
        one.per_refresh(),
        two.per_refresh()
    );
    assert!(
        total_ratio <= 2.2,
        "two exporters cost Redis {total_ratio:.2}x one over the same time"
    );
    report(
        "HA pair",
        &format!(
            "1,000 symbols and both apply streams; Redis's commands (INFO commandstats, all of them) over {} s with one exporter polling every 0.2 s, then with two",
            WINDOW.as_secs()
        ),
        "two exporters cost Redis what one does per refresh, and together at most twice one",
        "calls a refresh: two exporters within 10% of one; in all: at most 2.2 times one",
    );
    measured(
        "HA pair",
        &format!(
            "{:.0} calls a refresh with one, {:.0} with two (x{per_refresh_ratio:.2}); {:.0} calls/s with one, {:.0} with two (x{total_ratio:.2}); the stream followers' share {:.1} calls/s with one, {:.1} with two",
            one.per_refresh(),
            two.per_refresh(),
            one.per_second(),
            two.per_second(),
            one.stream_calls as f64 / one.elapsed.as_secs_f64(),
            two.stream_calls as f64 / two.elapsed.as_secs_f64()
        ),
    );
}

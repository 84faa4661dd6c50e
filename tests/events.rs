//! Event mode (--harvest.events) against a real redis-server with keyspace notifications: changes
//! arrive between full refreshes, and the exporter falls back to polling when it cannot follow
//! them.

mod common;

use std::time::Duration;

use common::*;

/// Long enough that only a notification can explain a change seen in the tests' waits.
const SLOW_POLL: &str = "30";
const WAIT: Duration = Duration::from_secs(8);

fn notifications_up(body: &str) -> bool {
    sample(body, "quantum_harvest_exporter_notifications_up") == Some(1.0)
}

#[test]
fn announced_changes_show_between_full_refreshes() {
    let redis = Redis::start_with(&["--notify-keyspace-events", "Khgx"]);
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &["--harvest.events", "--harvest.poll-interval", SLOW_POLL],
    );
    let body = exporter.wait_metrics("the subscription", WAIT, notifications_up);
    promtool_check_metrics(&body);

    redis.hset("ETHUSDT", &[("kill_score", "0.951")]);
    exporter.wait_metrics("a changed value", WAIT, |b| {
        kill_score(b, "ETHUSDT") == Some(0.951)
    });
    redis.hset(
        "XRPUSDT",
        &[("kill_score", "0.612"), ("harvest_action", "PARTIAL_25")],
    );
    exporter.wait_metrics("a new symbol", WAIT, |b| {
        kill_score(b, "XRPUSDT") == Some(0.612)
    });
    redis.run(&["DEL", "quantum:harvest:proposal:BTCUSDT"]);
    exporter.wait_metrics("a deleted symbol to go", WAIT, |b| {
        kill_score(b, "BTCUSDT").is_none()
    });
    redis.run(&["PEXPIRE", "quantum:harvest:proposal:SOLUSDT", "50"]);
    let body = exporter.wait_metrics("an expired symbol to go", WAIT, |b| {
        kill_score(b, "SOLUSDT").is_none()
    });
    promtool_check_metrics(&body);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_refreshes_total"),
        Some(1.0),
        "no full refresh was needed"
    );
    assert!(sample(&body, "quantum_harvest_exporter_notified_keys_total").unwrap() >= 4.0);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(2.0)
    );
}

#[test]
fn a_fixed_symbol_list_ignores_other_keys_and_tracks_missing_ones() {
    let redis = Redis::start_with(&["--notify-keyspace-events", "KA"]);
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &[
            "--harvest.events",
            "--harvest.poll-interval",
            SLOW_POLL,
            "--harvest.symbols",
            "BTCUSDT,ETHUSDT",
        ],
    );
    exporter.wait_metrics("the subscription", WAIT, notifications_up);
    redis.hset("DOGEUSDT", &[("kill_score", "0.9")]);
    redis.run(&["DEL", "quantum:harvest:proposal:BTCUSDT"]);
    let body = exporter.wait_metrics("BTCUSDT to be missing", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_missing") == Some(1.0)
    });
    assert!(!body.contains("DOGEUSDT"), "not configured");
    assert!(exporter.get("/ready").text().contains("BTCUSDT"));
}

#[test]
fn without_notifications_it_polls_and_says_why() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &["--harvest.events", "--harvest.poll-interval", "0.3"],
    );
    let body = exporter.wait_metrics("the first refresh", WAIT, |b| {
        kill_score(b, "ETHUSDT").is_some()
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_notifications_up"),
        Some(0.0)
    );
    redis.hset("ETHUSDT", &[("kill_score", "0.852")]);
    exporter.wait_metrics("the change, by polling", WAIT, |b| {
        kill_score(b, "ETHUSDT") == Some(0.852)
    });
    let log = exporter.log_text();
    assert!(log.contains("CONFIG SET notify-keyspace-events"), "{log}");
    assert_eq!(
        log.matches("event mode unavailable").count(),
        1,
        "said once, not every refresh:\n{log}"
    );
}

#[test]
fn a_killed_subscription_falls_back_and_is_restored() {
    let redis = Redis::start_with(&["--notify-keyspace-events", "Khgx"]);
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &["--harvest.events", "--harvest.poll-interval", "1"],
    );
    exporter.wait_metrics("the subscription", WAIT, notifications_up);
    redis.run(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_for("the end of the subscription to be noticed", WAIT, || {
        exporter
            .log_text()
            .contains("subscription ended")
            .then_some(())
    });
    exporter.wait_metrics("the subscription restored", WAIT, notifications_up);
    redis.hset("ETHUSDT", &[("kill_score", "0.777")]);
    exporter.wait_metrics("changes followed again", WAIT, |b| {
        kill_score(b, "ETHUSDT") == Some(0.777)
    });
    assert!(exporter.log_text().contains("subscription ended"));
}

/// A full read that takes long (a million other keys to SCAN past, a thousand round trips)
/// does not hold announced changes back: they show while it runs, and when it ends it does
/// not put back the older values it may have read before them.
#[test]
fn changes_show_while_a_full_read_runs_and_outlive_it() {
    let redis = Redis::start_with(&[
        "--notify-keyspace-events",
        "Khgx",
        "--enable-debug-command",
        "yes",
    ]);
    redis.run(&["DEBUG", "POPULATE", "1000000", "other"]);
    seed_example(&redis);
    // Refreshes run back to back: each takes longer than the interval.
    let exporter = Exporter::start(
        &redis,
        &["--harvest.events", "--harvest.poll-interval", "0.2"],
    );
    exporter.wait_metrics("the subscription", WAIT, notifications_up);
    let refreshes = |body: &str| sample(body, "quantum_harvest_exporter_refreshes_total").unwrap();
    let trials = 8;
    let mut during_one_read = 0;
    for trial in 1..=trials {
        // Writes land at every point of a full read: before and after it reads the key.
        let body = exporter.metrics();
        let took = sample(&body, "quantum_harvest_exporter_refresh_duration_seconds").unwrap();
        std::thread::sleep(Duration::from_secs_f64(
            took * f64::from(trial) / f64::from(trials),
        ));
        let before = refreshes(&exporter.metrics());
        let last_written = 0.5 + f64::from(trial) / 1000.0;
        redis.hset("ETHUSDT", &[("kill_score", &last_written.to_string())]);
        let body = exporter.wait_metrics("the change", WAIT, |b| {
            kill_score(b, "ETHUSDT") == Some(last_written)
        });
        let shown_at = refreshes(&body);
        if shown_at == before {
            during_one_read += 1;
        }
        let body = exporter.wait_metrics("the full read to end", WAIT, |b| refreshes(b) > shown_at);
        assert_eq!(
            kill_score(&body, "ETHUSDT"),
            Some(last_written),
            "the full read that ended after the change put back what it read before it"
        );
    }
    // Queued behind the full read, a change would show only once a refresh has ended: none of
    // the trials would count. Applied at once, a trial misses only when a refresh ends between
    // the count read before the write and the scrape that shows it, a window of a few
    // milliseconds that a busy machine stretches; so a majority, not all, is asked for.
    assert!(
        during_one_read > trials / 2,
        "{during_one_read} of {trials} changes showed before the full read they met ended"
    );
    promtool_check_metrics(&exporter.metrics());
}

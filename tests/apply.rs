//! The apply layer's streams, followed against a real redis-server: entries counted within a
//! second, consumer groups untouched, missing and wrong-type keys, start-up recall, trimming,
//! a stream made anew, a burst, and Redis going away and coming back without double counting.

mod common;

use std::time::Duration;

use common::*;

const PLANS: &str = PLAN_STREAM;
const RESULTS: &str = RESULT_STREAM;
const WAIT: Duration = Duration::from_secs(15);

fn plan(redis: &Redis, plan_id: &str, symbol: &str, decision: &str) {
    xadd(
        redis,
        PLANS,
        &[
            ("plan_id", plan_id),
            ("symbol", symbol),
            ("action", "FULL_CLOSE_PROPOSED"),
            ("kill_score", "0.81"),
            ("decision", decision),
            ("reason_codes", "kill_score_critical,layer4_kelly_250usdt"),
            ("source", "apply_layer"),
            ("timestamp", "1769130500"),
        ],
    );
}

fn value(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or(0.0)
}

#[test]
fn plans_and_results_are_counted_within_a_second() {
    let redis = Redis::start();
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the streams looked at", WAIT, |b| {
        value(b, "quantum_apply_streams_up") == 1.0
    });
    let body = exporter.metrics();
    assert_eq!(
        value(&body, "quantum_apply_stream_exists{stream=\"plan\"}"),
        0.0
    );

    plan(&redis, "p1", "BTCUSDT", "EXECUTE");
    xadd(
        &redis,
        RESULTS,
        &[
            ("plan_id", "p1"),
            ("symbol", "BTCUSDT"),
            ("executed", "True"),
            ("error", ""),
        ],
    );
    xadd(
        &redis,
        RESULTS,
        &[
            ("plan_id", "p0"),
            ("symbol", "ETHUSDT"),
            ("decision", "SKIP"),
            ("error", "position_limit_reached_7/10"),
        ],
    );
    let started = std::time::Instant::now();
    let body = exporter.wait_metrics("the entries counted", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"result\"}",
        ) == 2.0
    });
    let took = started.elapsed();
    promtool_check_metrics(&body);
    // Compressed when the follower published them, the families arrive whole in a gzip scrape.
    let response = http_get(exporter.port, "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    let mut decoded = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(response.body.as_slice()),
        &mut decoded,
    )
    .expect("one valid gzip member");
    promtool_check_metrics(&decoded);
    assert_eq!(
        value(
            &decoded,
            "quantum_apply_stream_entries_seen_total{stream=\"result\"}"
        ),
        2.0
    );
    for (series, expected) in [
        (
            "quantum_apply_plans_seen_total{symbol=\"BTCUSDT\",decision=\"EXECUTE\",action=\"FULL_CLOSE_PROPOSED\"}",
            1.0,
        ),
        (
            "quantum_apply_plan_reasons_seen_total{reason=\"layer4_kelly\"}",
            1.0,
        ),
        (
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"executed\"}",
            1.0,
        ),
        (
            "quantum_apply_results_seen_total{symbol=\"ETHUSDT\",outcome=\"skipped\"}",
            1.0,
        ),
        // On a skip the error field holds the reason, no failure.
        (
            "quantum_apply_result_reasons_seen_total{class=\"position_limit_reached\"}",
            1.0,
        ),
        (
            "quantum_apply_result_errors_seen_total{class=\"position_limit_reached\"}",
            0.0,
        ),
        ("quantum_apply_plan_to_result_seconds_count", 1.0),
        // p0's plan may still come: unmatched only after the grace period.
        ("quantum_apply_results_unmatched_total", 0.0),
        (
            "quantum_apply_last_plan_decision{symbol=\"BTCUSDT\",decision=\"EXECUTE\"}",
            1.0,
        ),
        ("quantum_apply_stream_exists{stream=\"plan\"}", 1.0),
    ] {
        assert_eq!(value(&body, series), expected, "{series}");
    }
    report(
        "Apply streams: XADD to /metrics",
        "a plan and two results added to the real streams",
        "counted under bounded labels, joined on plan_id for the latency, promtool-valid",
        "",
    );
    measured(
        "Apply streams: XADD to /metrics",
        &format!("visible after {} ms", took.as_millis()),
    );
}

#[test]
fn consumer_groups_are_never_touched() {
    let redis = Redis::start();
    for i in 0..20 {
        plan(&redis, &format!("p{i}"), "BTCUSDT", "SKIP");
    }
    redis.run(&["XGROUP", "CREATE", PLANS, "guard", "0"]);
    // The guard reads five entries and acknowledges none: pending 5, lag 15.
    redis.run(&[
        "XREADGROUP",
        "GROUP",
        "guard",
        "g1",
        "COUNT",
        "5",
        "STREAMS",
        PLANS,
        ">",
    ]);
    let groups = |redis: &Redis| format!("{:?}", redis.run(&["XINFO", "GROUPS", PLANS]));
    let before = groups(&redis);
    redis.run(&["CONFIG", "RESETSTAT"]);

    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("the group's lag and pending", WAIT, |b| {
        value(
            b,
            "quantum_apply_consumer_group_pending{stream=\"plan\",group=\"guard\"}",
        ) == 5.0
    });
    assert_eq!(
        value(
            &body,
            "quantum_apply_consumer_group_lag{stream=\"plan\",group=\"guard\"}"
        ),
        15.0
    );
    // Let it read for a while, with a new entry too.
    plan(&redis, "p20", "BTCUSDT", "SKIP");
    exporter.wait_metrics("the new plan", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
        ) == 1.0
    });
    drop(exporter);
    let after = groups(&redis);
    // The new entry raises the lag by one; nothing else about the group may change.
    assert_eq!(
        after,
        before.replace("int(15)", "int(16)"),
        "XINFO GROUPS before/after"
    );
    let stats = format!("{:?}", redis.run(&["INFO", "commandstats"])).to_lowercase();
    for forbidden in [
        "xreadgroup",
        "xack",
        "xgroup",
        "xtrim",
        "xdel",
        "xclaim",
        "xautoclaim",
        "xsetid",
    ] {
        assert!(
            !stats.contains(&format!("cmdstat_{forbidden}")),
            "the exporter sent {forbidden}: {stats}"
        );
    }
    assert!(
        stats.contains("cmdstat_xadd:calls=1,"),
        "only this test's own XADD: {stats}"
    );
    report(
        "Apply streams: observation only",
        "a consumer group with 5 pending and 15 undelivered entries, the exporter following the stream",
        "XINFO GROUPS identical but for the new entry's lag; no XREADGROUP, XACK, XGROUP or write in INFO commandstats",
        "group state changes caused: 0",
    );
}

#[test]
fn start_up_recalls_the_newest_entries_without_counting_them() {
    let redis = Redis::start();
    plan(&redis, "p1", "SOLUSDT", "BLOCKED");
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("the recalled plan", WAIT, |b| {
        value(
            b,
            "quantum_apply_last_plan_decision{symbol=\"SOLUSDT\",decision=\"BLOCKED\"}",
        ) == 1.0
    });
    assert_eq!(
        value(
            &body,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}"
        ),
        0.0,
        "counters count what arrives while the exporter runs"
    );
    assert_eq!(
        value(
            &body,
            "quantum_apply_last_plan_timestamp_seconds{symbol=\"SOLUSDT\"}"
        ),
        1769130500.0
    );
    // A result for the recalled plan still joins.
    xadd(
        &redis,
        RESULTS,
        &[
            ("plan_id", "p1"),
            ("symbol", "SOLUSDT"),
            ("decision", "BLOCK"),
        ],
    );
    exporter.wait_metrics("the joined result", WAIT, |b| {
        value(b, "quantum_apply_plan_to_result_seconds_count") == 1.0
    });
}

#[test]
fn a_wrong_type_key_is_reported_and_the_other_stream_still_read() {
    let redis = Redis::start();
    redis.run(&["SET", PLANS, "not a stream"]);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the wrong type reported", WAIT, |b| {
        value(b, "quantum_apply_stream_wrong_type{stream=\"plan\"}") == 1.0
    });
    xadd(
        &redis,
        RESULTS,
        &[("symbol", "BTCUSDT"), ("decision", "EXECUTED")],
    );
    let body = exporter.wait_metrics("the result read", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"result\"}",
        ) == 1.0
    });
    promtool_check_metrics(&body);
    assert!(exporter.log_text().contains("not a stream"));
}

#[test]
fn entries_trimmed_before_they_are_read_are_counted_as_lost() {
    let redis = Redis::start();
    plan(&redis, "p0", "BTCUSDT", "SKIP");
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the stream looked at", WAIT, |b| {
        value(b, "quantum_apply_stream_exists{stream=\"plan\"}") == 1.0
    });
    // The exporter is stopped while 100 entries come and the stream keeps only the last 10.
    exporter.signal("STOP");
    for i in 0..100 {
        let plan_id = format!("t{i}");
        redis.run(&[
            "XADD", PLANS, "MAXLEN", "10", "*", "symbol", "BTCUSDT", "decision", "SKIP", "plan_id",
            &plan_id,
        ]);
    }
    exporter.signal("CONT");
    // An XREAD blocked at the time may have taken the first of them before the trimming.
    let seen_and_lost = |b: &str| {
        let seen = value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
        );
        let lost = value(
            b,
            "quantum_apply_stream_entries_lost_total{stream=\"plan\"}",
        );
        (seen, lost)
    };
    let body = exporter.wait_metrics("every entry read or counted as lost", WAIT, |b| {
        let (seen, lost) = seen_and_lost(b);
        seen + lost == 100.0
    });
    let (seen, lost) = seen_and_lost(&body);
    assert!(
        // Stopping takes effect a moment after the signal: a few more may be read first.
        seen >= 10.0 && lost >= 80.0,
        "seen {seen}, lost {lost}"
    );
    report(
        "Apply streams: trimmed faster than read",
        "100 plans added with MAXLEN 10 while the exporter was stopped (SIGSTOP)",
        "read the entries left, counted the rest as lost from XINFO STREAM entries-added",
        &format!("read {seen}, lost {lost}, of 100"),
    );
}

#[test]
fn a_stream_made_anew_with_lower_ids_is_read_from_its_start() {
    let redis = Redis::start();
    plan(&redis, "p0", "BTCUSDT", "SKIP");
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the stream looked at", WAIT, |b| {
        value(b, "quantum_apply_stream_exists{stream=\"plan\"}") == 1.0
    });
    redis.run(&["DEL", PLANS]);
    redis.run(&[
        "XADD", PLANS, "5-1", "symbol", "ETHUSDT", "decision", "EXECUTE",
    ]);
    let body = exporter.wait_metrics("the new stream read", WAIT, |b| {
        value(b, "quantum_apply_stream_resets_total{stream=\"plan\"}") == 1.0
            && value(
                b,
                "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
            ) == 1.0
    });
    promtool_check_metrics(&body);
}

#[test]
fn a_burst_of_ten_thousand_entries_is_counted_exactly() {
    let redis = Redis::start();
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the streams looked at", WAIT, |b| {
        value(b, "quantum_apply_streams_up") == 1.0
    });
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("XADD")
            .arg(RESULTS)
            .arg("*")
            .arg("symbol")
            .arg(format!("S{}", i % 700))
            .arg("decision")
            .arg(["EXECUTED", "SKIP", "nonsense", "FAIL"][i % 4])
            .arg("error")
            .arg(format!("execution_failed: timeout after {i} ms"))
            .ignore();
    }
    let started = std::time::Instant::now();
    pipe.query::<()>(&mut redis.connection()).unwrap();
    let body = exporter.wait_metrics("ten thousand results", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"result\"}",
        ) == 10_000.0
    });
    let took = started.elapsed();
    promtool_check_metrics(&body);
    // The error field is an execution error on FAIL, a reason on SKIP, nothing otherwise.
    for (family, count) in [
        ("quantum_apply_result_errors_seen_total", 2_500.0),
        ("quantum_apply_result_reasons_seen_total", 2_500.0),
    ] {
        let series = format!("{family}{{class=\"execution_failed\"}}");
        assert_eq!(value(&body, &series), count, "{series}");
    }
    // S0 to S499 keep their names; S500 to S699, 14 results each, count under OTHER.
    assert_eq!(
        value(
            &body,
            "quantum_apply_label_values_dropped_total{label=\"symbol\"}"
        ),
        2_800.0
    );
    assert!(body.contains("outcome=\"unknown\""));
    report(
        "Apply streams: a burst",
        "10,000 results written in one pipeline, 700 symbols, one in four with an unknown decision",
        "every entry counted once; symbols beyond 500 counted under OTHER; promtool-valid",
        "entries counted: 10,000 of 10,000",
    );
    measured(
        "Apply streams: a burst",
        &format!("all counted {} ms after the burst", took.as_millis()),
    );
}

#[test]
fn redis_going_away_keeps_the_counts_and_resumes_without_double_counting() {
    let mut redis = Redis::start();
    let exporter = Exporter::start(&redis, &[]);
    plan(&redis, "p1", "BTCUSDT", "EXECUTE");
    exporter.wait_metrics("the plan", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
        ) == 1.0
    });
    redis.kill();
    let body = exporter.wait_metrics("the streams down", WAIT, |b| {
        value(b, "quantum_apply_streams_up") == 0.0
    });
    assert_eq!(
        value(
            &body,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}"
        ),
        1.0
    );
    // The data is gone with the unsaved server; the stream starts anew with a second plan.
    redis.restart();
    plan(&redis, "p2", "BTCUSDT", "EXECUTE");
    let body = exporter.wait_metrics("the second plan", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
        ) == 2.0
            && value(b, "quantum_apply_streams_up") == 1.0
    });
    promtool_check_metrics(&body);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        value(
            &exporter.metrics(),
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}"
        ),
        2.0,
        "nothing counted twice"
    );
}

#[test]
fn following_can_be_turned_off() {
    let redis = Redis::start();
    plan(&redis, "p1", "BTCUSDT", "EXECUTE");
    let exporter = Exporter::start(&redis, &["--apply.streams=false"]);
    exporter.wait_metrics("a refresh", WAIT, |b| {
        value(b, "quantum_harvest_exporter_refreshes_total") >= 1.0
    });
    assert!(!exporter.metrics().contains("quantum_apply_"));
}

#[test]
fn the_page_and_status_show_what_became_of_each_proposal() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    plan(&redis, "p1", "ETHUSDT", "BLOCKED");
    xadd(
        &redis,
        RESULTS,
        &[
            ("plan_id", "p1"),
            ("symbol", "ETHUSDT"),
            ("decision", "BLOCK"),
            ("error", "kill_score_close_blocked"),
        ],
    );
    // The page is made at the first request after a refresh: wait for one that has both.
    let document = wait_for("the apply side in /api/v1/proposals", WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&exporter.get("/api/v1/proposals").text()).ok()?;
        let row = json["proposals"]
            .as_array()?
            .iter()
            .find(|r| r["symbol"] == "ETHUSDT")?
            .clone();
        (row["result_outcome"] == "blocked").then_some((json, row))
    });
    let (json, row) = document;
    assert_eq!(row["plan_decision"], "BLOCKED");
    assert_eq!(json["apply"]["following"], true);
    assert_eq!(
        json["apply"]["recent"][0]["what"], "blocked",
        "{}",
        json["apply"]
    );
    assert_eq!(
        json["apply"]["recent"][0]["detail"],
        "kill_score_close_blocked"
    );
    let html = exporter.get("/").text();
    assert!(html.contains("plan BLOCKED \u{b7} blocked"), "{html}");

    // status reads the streams once, as it reads the hashes.
    let output = run_exporter(&["--redis.addr", &redis.url(), "status"], &[]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("apply layer: following the apply streams"),
        "{table}"
    );
    assert!(
        table.contains("ETHUSDT  plan BLOCKED \u{b7} blocked"),
        "{table}"
    );
    assert!(
        table.contains(" result ETHUSDT blocked kill_score_close_blocked"),
        "{table}"
    );
}

/// A result of the apply layer for a plan: its symbol, then the fields of the code path.
fn result(redis: &Redis, plan_id: &str, symbol: &str, fields: &[(&str, &str)]) {
    let mut all = vec![
        ("plan_id", plan_id),
        ("symbol", symbol),
        ("source", "apply_layer"),
    ];
    all.extend_from_slice(fields);
    xadd(redis, RESULTS, &all);
}

/// A later cycle's result for a plan that has its outcome, as the dedupe gate writes it.
fn repeat(redis: &Redis, plan_id: &str, symbol: &str, reason: &str) {
    let fields = [
        ("decision", "SKIP"),
        ("executed", "False"),
        ("would_execute", "False"),
        ("error", reason),
    ];
    result(redis, plan_id, symbol, &fields);
}

/// The symbol's row of /api/v1/proposals once `ready` holds for it.
fn row_when(
    exporter: &Exporter,
    symbol: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(&format!("{symbol}'s row"), WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&exporter.get("/api/v1/proposals").text()).ok()?;
        let row = json["proposals"]
            .as_array()?
            .iter()
            .find(|r| r["symbol"] == symbol)?
            .clone();
        ready(&row).then_some(row)
    })
}

#[test]
fn the_producers_rhythm_plan_once_outcome_then_repeats_each_cycle() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the streams looked at", WAIT, |b| {
        value(b, "quantum_apply_streams_up") == 1.0
    });
    const CYCLES: usize = 6;
    // BTCUSDT's proposal passes the gates; in dry run its outcome is "would execute", then a
    // repeat every cycle, the first reason code being the kill-score gate's.
    plan(&redis, "p1", "BTCUSDT", "EXECUTE");
    let dry_run = [
        ("decision", "EXECUTE"),
        ("executed", "False"),
        ("would_execute", "True"),
        ("error", ""),
    ];
    result(&redis, "p1", "BTCUSDT", &dry_run);
    // ETHUSDT is outside the allowlist: skipped, the reason in `error`, then duplicates.
    plan(&redis, "e1", "ETHUSDT", "SKIP");
    let not_allowed = [
        ("decision", "SKIP"),
        ("executed", "False"),
        ("would_execute", "True"),
        ("error", "not_in_allowlist"),
    ];
    result(&redis, "e1", "ETHUSDT", &not_allowed);
    for _ in 1..CYCLES {
        repeat(&redis, "p1", "BTCUSDT", "kill_score_close_ok");
        repeat(&redis, "e1", "ETHUSDT", "duplicate_plan");
    }
    let body = exporter.wait_metrics("the first plans' results", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"result\"}",
        ) == (2 * CYCLES) as f64
    });
    for (series, expected) in [
        (
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"dry_run\"}",
            1.0,
        ),
        (
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"skipped\"}",
            0.0,
        ),
        (
            "quantum_apply_results_seen_total{symbol=\"ETHUSDT\",outcome=\"skipped\"}",
            1.0,
        ),
        (
            "quantum_apply_result_repeats_total{symbol=\"BTCUSDT\"}",
            (CYCLES - 1) as f64,
        ),
        (
            "quantum_apply_result_repeats_total{symbol=\"ETHUSDT\"}",
            (CYCLES - 1) as f64,
        ),
        (
            "quantum_apply_result_reasons_seen_total{class=\"not_in_allowlist\"}",
            1.0,
        ),
        ("quantum_apply_plan_to_result_seconds_count", 2.0),
    ] {
        assert_eq!(value(&body, series), expected, "{series}");
    }
    assert!(
        !body.contains("quantum_apply_result_errors_seen_total{"),
        "no execution failed: {body}"
    );
    let row = row_when(&exporter, "BTCUSDT", |r| {
        r["result_repeats"] == CYCLES as u64 - 1
    });
    assert_eq!(
        (&row["plan_decision"], &row["result_outcome"]),
        (&"EXECUTE".into(), &"dry_run".into()),
        "repeats do not overwrite the outcome: {row}"
    );

    // The proposal changes: a new plan, which fails to execute, then its repeats.
    xadd(
        &redis,
        PLANS,
        &[
            ("plan_id", "p2"),
            ("symbol", "BTCUSDT"),
            ("action", "PARTIAL_50"),
            ("decision", "EXECUTE"),
            ("reason_codes", "kill_score_close_ok"),
            ("source", "apply_layer"),
            ("timestamp", "1769130600"),
        ],
    );
    let failed = [
        ("decision", "EXECUTE"),
        ("executed", "False"),
        ("would_execute", "False"),
        ("error", "no_position"),
    ];
    result(&redis, "p2", "BTCUSDT", &failed);
    repeat(&redis, "p2", "BTCUSDT", "duplicate_plan");
    repeat(&redis, "p2", "BTCUSDT", "duplicate_plan");
    // A result whose plan never comes, repeated: unmatched once, after the grace period.
    result(&redis, "ghost", "SOLUSDT", &not_allowed);
    repeat(&redis, "ghost", "SOLUSDT", "duplicate_plan");
    repeat(&redis, "ghost", "SOLUSDT", "duplicate_plan");
    let row = row_when(&exporter, "BTCUSDT", |r| r["result_repeats"] == 2);
    assert_eq!(
        (&row["plan_decision"], &row["result_outcome"]),
        (&"EXECUTE".into(), &"error".into()),
        "{row}"
    );
    let html = exporter.get("/").text();
    assert!(
        html.contains("plan EXECUTE \u{b7} error \u{b7} 2 repeats"),
        "{html}"
    );
    let body = exporter.wait_metrics(
        "the result whose plan never came",
        Duration::from_secs(40),
        |b| value(b, "quantum_apply_results_unmatched_total") > 0.0,
    );
    for (series, expected) in [
        ("quantum_apply_results_unmatched_total", 1.0),
        (
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"error\"}",
            1.0,
        ),
        (
            "quantum_apply_result_errors_seen_total{class=\"no_position\"}",
            1.0,
        ),
        (
            "quantum_apply_result_repeats_total{symbol=\"BTCUSDT\"}",
            (CYCLES + 1) as f64,
        ),
        (
            "quantum_apply_result_repeats_total{symbol=\"SOLUSDT\"}",
            2.0,
        ),
        (
            "quantum_apply_result_errors_seen_total{class=\"duplicate_plan\"}",
            0.0,
        ),
        (
            "quantum_apply_result_reasons_seen_total{class=\"duplicate_plan\"}",
            0.0,
        ),
    ] {
        assert_eq!(value(&body, series), expected, "{series}");
    }

    // status, which reads the streams once, tells the same story.
    let output = run_exporter(&["--redis.addr", &redis.url(), "status"], &[]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("BTCUSDT  plan EXECUTE \u{b7} error \u{b7} 2 repeats"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "ETHUSDT  plan SKIP \u{b7} skipped \u{b7} {} repeats",
            CYCLES - 1
        )),
        "{table}"
    );
    report(
        "Apply streams: the producer's rhythm",
        "a plan once, its outcome, a repeat each cycle, then a changed proposal's plan; a result whose plan never comes",
        "repeats counted apart (not outcomes, errors or unmatched); reasons apart from errors; the newest plan's outcome and repeats on the page, in the API and in status",
        "unmatched: 1 of 3 results of the plan never seen, 0 of the others",
    );
}

#[test]
fn hostile_entries_from_redis_are_counted_and_leave_valid_output() {
    let redis = Redis::start();
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the streams looked at", WAIT, |b| {
        value(b, "quantum_apply_streams_up") == 1.0
    });
    let huge = "x".repeat(1 << 20);
    let mut connection = redis.connection();
    // A megabyte in every field a label could come from, bytes that are not UTF-8, quotes and
    // newlines, a garbage timestamp, an unknown decision, and an entry with no fields we read.
    redis::cmd("XADD")
        .arg(PLANS)
        .arg("*")
        .arg("symbol")
        .arg(&huge)
        .arg("action")
        .arg(&huge)
        .arg("decision")
        .arg(&huge)
        .arg("reason_codes")
        .arg(&huge)
        .query::<String>(&mut connection)
        .unwrap();
    redis::cmd("XADD")
        .arg(PLANS)
        .arg("*")
        .arg("symbol")
        .arg(&b"\xff\xfe\"BTC\nUSDT"[..])
        .arg("decision")
        .arg("MAYBE")
        .arg("timestamp")
        .arg("yesterday")
        .arg("reason_codes")
        .arg(&b"code\"with\nnewline,\xff\xff"[..])
        .query::<String>(&mut connection)
        .unwrap();
    redis::cmd("XADD")
        .arg(RESULTS)
        .arg("*")
        .arg("unrelated")
        .arg("1")
        .query::<String>(&mut connection)
        .unwrap();
    xadd(
        &redis,
        RESULTS,
        &[
            ("symbol", "ETHUSDT"),
            ("details", "{not json"),
            ("error", "\"quoted\" \\ back"),
        ],
    );
    let body = exporter.wait_metrics("the four entries counted", WAIT, |b| {
        value(
            b,
            "quantum_apply_stream_entries_seen_total{stream=\"plan\"}",
        ) == 2.0
            && value(
                b,
                "quantum_apply_stream_entries_seen_total{stream=\"result\"}",
            ) == 2.0
    });
    promtool_check_metrics(&body);
    assert_eq!(
        value(
            &body,
            "quantum_apply_stream_entries_defective_total{stream=\"plan\",defect=\"no_symbol\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &body,
            "quantum_apply_stream_entries_defective_total{stream=\"plan\",defect=\"bad_timestamp\"}"
        ),
        1.0
    );
    assert!(body.contains("decision=\"UNKNOWN\""));
    assert!(
        body.len() < 512 * 1024,
        "no megabyte copied into the output"
    );
    // The page and its JSON carry them escaped.
    let page = exporter.get("/").text();
    assert!(!page.contains("<script>alert"), "nothing unescaped");
    report(
        "Apply streams: hostile entries",
        "1 MiB fields, bytes that are not UTF-8, quotes and newlines, garbage timestamps and decisions, an entry of unknown fields",
        "each counted as an entry and as a defect where a field was unusable; labels bounded; promtool-valid",
        "/metrics body under 512 KiB",
    );
    measured(
        "Apply streams: hostile entries",
        &format!("/metrics body {} KiB", body.len() / 1024),
    );
}

//! `/api/v1/proposals/{symbol}` over HTTP against a real redis-server: a symbol's history and
//! events as its hash changes, a symbol gone, the answers for unknown and invalid names, and no
//! Redis command per request. The page that tells the same story is `tests/browser.rs`'s.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn story(exporter: &Exporter, symbol: &str) -> (u16, Value) {
    let response = exporter.get(&format!("/api/v1/proposals/{symbol}"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = serde_json::from_str(&response.text()).expect("a JSON body");
    (response.status, json)
}

fn wait_story(
    exporter: &Exporter,
    symbol: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, WAIT, || {
        let (status, json) = story(exporter, symbol);
        (status == 200 && check(&json)).then_some(json)
    })
}

/// Every key of a story (its points', events', plans' and results' too) is in the field table
/// of docs/operating.md's section on it.
fn assert_documented(story: &Value) {
    let docs = std::fs::read_to_string("docs/operating.md").unwrap();
    let start = docs
        .find("## `/api/v1/proposals/{symbol}`")
        .expect("the story's section");
    let section = &docs[start..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut keys: Vec<&String> = story.as_object().unwrap().keys().collect();
    for list in ["history", "events", "plans"] {
        for item in story[list].as_array().into_iter().flatten() {
            keys.extend(item.as_object().unwrap().keys());
            if let Some(result) = item.get("result").and_then(Value::as_object) {
                keys.extend(result.keys());
            }
        }
    }
    for key in keys {
        assert!(
            section.contains(&format!("`{key}`")),
            "{key} is not documented"
        );
    }
}

fn fresh_hash(kill_score: &str, action: &str) -> Vec<(&'static str, String)> {
    vec![
        ("kill_score", kill_score.to_owned()),
        ("k_regime_flip", "1.0".to_owned()),
        ("k_sigma_spike", "0.25".to_owned()),
        ("k_ts_drop", "0.2".to_owned()),
        ("k_age_penalty", "0.3".to_owned()),
        ("R_net", "2.5".to_owned()),
        ("harvest_action", action.to_owned()),
        ("last_update_epoch", format!("{:.0}", unix_now())),
    ]
}

fn write(redis: &Redis, symbol: &str, hash: &[(&'static str, String)]) {
    let fields: Vec<(&str, &str)> = hash.iter().map(|(k, v)| (*k, v.as_str())).collect();
    redis.hset(symbol, &fields);
}

#[test]
fn a_symbol_tells_its_history_events_and_departure() {
    let redis = Redis::start();
    write(&redis, "BTCUSDT", &fresh_hash("0.5", "PARTIAL_25"));
    write(&redis, "ETHUSDT", &fresh_hash("0.3", "NONE"));
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "200ms"]);
    let first = wait_story(&exporter, "BTCUSDT", "the first refresh", |s| {
        s["current"]["kill_score"] == 0.5
    });
    assert_eq!(first["symbol"], "BTCUSDT");
    assert_eq!(first["history_max_age_seconds"], 3600.0);
    assert_eq!(first["redis_up"], true);
    assert_eq!(first["history"].as_array().unwrap().len(), 1);
    assert_eq!(
        first["events"],
        serde_json::json!([]),
        "first seen, nothing happened"
    );

    write(
        &redis,
        "BTCUSDT",
        &fresh_hash("0.85", "FULL_CLOSE_PROPOSED"),
    );
    let moved = wait_story(&exporter, "BTCUSDT", "the change recorded", |s| {
        s["history"].as_array().unwrap().len() == 2
    });
    let history = moved["history"].as_array().unwrap();
    let (old, new) = (&history[0], &history[1]);
    assert!(
        old["timestamp"].as_f64() <= new["timestamp"].as_f64(),
        "whole seconds"
    );
    assert_eq!(old["kill_score"], 0.5);
    assert_eq!(new["kill_score"], 0.85);
    assert_eq!(new["action"], "FULL_CLOSE_PROPOSED");
    for field in [
        "k_regime_flip",
        "k_sigma_spike",
        "k_ts_drop",
        "k_age_penalty",
    ] {
        assert!(new[field].is_f64(), "{field} in {new}");
    }
    assert_eq!(new["r_net"], 2.5);
    let texts: Vec<&str> = moved["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "action PARTIAL_25 \u{2192} FULL_CLOSE_PROPOSED",
            "kill score rose to 0.850, at or above 0.8"
        ]
    );
    let trend = moved["current"]["kill_score_trend"].as_array().unwrap();
    assert_eq!(
        trend.last().unwrap(),
        0.85,
        "the trend ends at the current value"
    );
    let list: Value = serde_json::from_str(&exporter.get("/api/v1/proposals").text()).unwrap();
    let listed = list["proposals"][0]["kill_score_trend"].as_array().unwrap();
    assert_eq!(
        listed.last().unwrap(),
        0.85,
        "each row of the list has its trend"
    );

    redis.run(&["DEL", &format!("{PREFIX}BTCUSDT")]);
    let gone = wait_story(&exporter, "BTCUSDT", "the departure", |s| {
        s["current"].is_null()
    });
    assert_eq!(
        gone["events"].as_array().unwrap().last().unwrap()["kind"],
        "disappeared"
    );
    assert_eq!(
        gone["history"].as_array().unwrap().len(),
        2,
        "the history stays"
    );
}

#[test]
fn unknown_and_invalid_symbols_are_answered_without_reflecting_them() {
    let redis = Redis::start();
    seed_example(&redis);
    redis.hset("<b>x</b>", &[("kill_score", "0.9")]);
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "3600"]);
    exporter.wait_metrics("the first refresh", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(4.0)
    });
    let hmget = command_calls(&mut redis.connection(), "hmget");

    let (status, json) = story(&exporter, "%3Cb%3Ex%3C%2Fb%3E");
    assert_eq!(status, 200, "a percent-encoded name is decoded");
    assert_eq!(json["symbol"], "<b>x</b>");
    assert_eq!(json["current"]["kill_score"], 0.9);

    let unknown = exporter.get("/api/v1/proposals/%3Cscript%3Ealert(1)%3C%2Fscript%3ENOPE");
    assert_eq!(unknown.status, 404);
    let body = unknown.text();
    assert!(!body.contains("script") && !body.contains("NOPE"), "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("no proposal"));

    for invalid in ["", "%00BTC", "%FF%FE", &"X".repeat(65)] {
        let response = exporter.get(&format!("/api/v1/proposals/{invalid}"));
        assert_eq!(response.status, 400, "{invalid:?}");
        let error: Value = serde_json::from_str(&response.text()).unwrap();
        assert!(
            error["error"].as_str().unwrap().starts_with("not a symbol"),
            "{error}"
        );
        assert!(!response.text().contains("XXXX"));
    }
    assert_eq!(
        exporter
            .get("/api/v1/proposals/BTCUSDT")
            .header("cache-control"),
        Some("no-store")
    );

    let page = exporter.get("/symbol/%3Cb%3Ex%3C%2Fb%3E");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|csp| csp.starts_with("default-src 'none'"))
    );
    assert!(page.text().contains("&lt;b&gt;x&lt;/b&gt;") && !page.text().contains("<b>x"));
    for (path, status) in [
        ("/symbol/%3Cscript%3ENOPE", 404),
        ("/symbol/%00%3Cscript%3E", 400),
    ] {
        let refused = exporter.get(path);
        assert_eq!(refused.status, status, "{path}");
        assert!(!refused.text().contains("script"), "{}", refused.text());
    }
    assert_eq!(
        command_calls(&mut redis.connection(), "hmget"),
        hmget,
        "no Redis read per request"
    );
}

#[test]
fn with_history_off_the_story_is_the_current_proposal() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &["--harvest.poll-interval", "3600", "--history.points", "0"],
    );
    let story = wait_story(&exporter, "ETHUSDT", "the first refresh", |s| {
        s["current"]["kill_score"] == 0.753
    });
    assert_eq!(story["history"], serde_json::json!([]));
    assert_eq!(story["events"], serde_json::json!([]));
    assert_eq!(story["current"]["kill_score_trend"], serde_json::json!([]));
}

/// The apply layer's plans for a symbol, each joined to its first result, as the producer
/// writes them: a plan, its outcome and a repeat every cycle; a result before its plan; a plan
/// with no result; an error of 20 KB.
#[test]
fn plans_come_with_their_results_on_the_producers_rhythm() {
    let redis = Redis::start();
    write(
        &redis,
        "BTCUSDT",
        &fresh_hash("0.85", "FULL_CLOSE_PROPOSED"),
    );
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "3600"]);
    wait_story(&exporter, "BTCUSDT", "the first refresh", |s| {
        s["plans"].is_array()
    });
    let now = format!("{:.0}", unix_now());
    let plan = |id: &str| {
        xadd(
            &redis,
            PLAN_STREAM,
            &[
                ("plan_id", id),
                ("symbol", "BTCUSDT"),
                ("action", "FULL_CLOSE_PROPOSED"),
                ("kill_score", "0.85"),
                ("decision", "EXECUTE"),
                ("reason_codes", "kill_score_critical,layer4_kelly_250usdt"),
                ("timestamp", &now),
            ],
        )
    };
    let huge = format!("execution_failed: {}", "<x>".repeat(7_000));
    plan("p-executed");
    let result = |id: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("plan_id", id), ("symbol", "BTCUSDT")];
        all.extend_from_slice(fields);
        xadd(&redis, RESULT_STREAM, &all)
    };
    result("p-executed", &[("executed", "True"), ("error", "")]);
    for _ in 0..3 {
        result(
            "p-executed",
            &[("decision", "SKIP"), ("error", "duplicate_plan")],
        );
    }
    result("p-early", &[("executed", "False"), ("error", &huge)]);
    plan("p-early");
    plan("p-waiting");

    let story = wait_story(&exporter, "BTCUSDT", "three plans", |s| {
        s["plans"].as_array().is_some_and(|p| p.len() == 3)
    });
    let plans = story["plans"].as_array().unwrap();
    let by_id = |id: &str| plans.iter().find(|p| p["plan_id"] == id).unwrap();
    let executed = by_id("p-executed");
    assert_eq!(executed["decision"], "EXECUTE");
    assert_eq!(executed["action"], "FULL_CLOSE_PROPOSED");
    assert_eq!(
        executed["reason_codes"],
        serde_json::json!(["kill_score_critical", "layer4_kelly_250usdt"])
    );
    assert_eq!(executed["kill_score"], 0.85);
    assert_eq!(executed["result_status"], "result");
    assert_eq!(executed["result"]["outcome"], "executed");
    assert_eq!(executed["result"]["executed"], true);
    assert!(executed["result"]["latency_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        executed["repeats"], 3,
        "the repeats are counted, not outcomes"
    );

    let early = by_id("p-early");
    assert_eq!(early["result"]["outcome"], "error", "its result came first");
    let error = early["result"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("execution_failed: <x>") && error.len() <= 1_024,
        "{}",
        error.len()
    );
    assert_eq!(by_id("p-waiting")["result"], Value::Null);
    assert_eq!(by_id("p-waiting")["result_status"], "waiting");
    assert_eq!(plans[0]["plan_id"], "p-waiting", "newest first");
    assert_documented(&story);
}

/// In event mode a batch of announced changes is recorded as it is applied, its symbols alone:
/// with a poll interval no full refresh reaches within the test, the stories still tell the
/// change, the arrival and the departure.
#[test]
fn announced_changes_are_told_without_a_full_refresh() {
    let redis = Redis::start_with(&["--notify-keyspace-events", "Khgx"]);
    write(&redis, "BTCUSDT", &fresh_hash("0.5", "PARTIAL_25"));
    write(&redis, "ETHUSDT", &fresh_hash("0.3", "NONE"));
    let exporter = Exporter::start(
        &redis,
        &["--harvest.events", "--harvest.poll-interval", "300s"],
    );
    exporter.wait_metrics("the subscription", WAIT, |body| {
        sample(body, "quantum_harvest_exporter_notifications_up") == Some(1.0)
    });
    wait_story(&exporter, "BTCUSDT", "the first refresh", |s| {
        s["current"]["kill_score"] == 0.5
    });

    write(
        &redis,
        "BTCUSDT",
        &fresh_hash("0.85", "FULL_CLOSE_PROPOSED"),
    );
    write(&redis, "SOLUSDT", &fresh_hash("0.2", "NONE"));
    redis.run(&["DEL", &format!("{PREFIX}ETHUSDT")]);
    let moved = wait_story(&exporter, "BTCUSDT", "the change", |s| {
        s["history"].as_array().unwrap().len() == 2
    });
    assert_eq!(moved["history"][1]["action"], "FULL_CLOSE_PROPOSED");
    let arrived = wait_story(&exporter, "SOLUSDT", "the arrival", |s| {
        s["current"]["kill_score"] == 0.2
    });
    assert_eq!(arrived["events"][0]["kind"], "appeared");
    let gone = wait_story(&exporter, "ETHUSDT", "the departure", |s| {
        s["current"].is_null()
    });
    assert_eq!(
        gone["events"].as_array().unwrap().last().unwrap()["kind"],
        "disappeared"
    );
    let body = exporter.get("/metrics").text();
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_refreshes_total"),
        Some(1.0),
        "told by event mode alone"
    );
}

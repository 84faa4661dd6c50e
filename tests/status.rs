//! `harvest-exporter status` against a real redis-server, read directly and through a running
//! exporter: the table, `--json`, colour only on a terminal, and every exit code.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A proposal last updated `age` seconds ago.
fn publish(redis: &Redis, symbol: &str, kill_score: &str, age: u64) {
    let epoch = (unix_now() - age).to_string();
    redis.hset(
        symbol,
        &[
            ("harvest_action", "PARTIAL_25"),
            ("kill_score", kill_score),
            ("k_regime_flip", "0.0"),
            ("k_sigma_spike", "0.1"),
            ("k_ts_drop", "0.055"),
            ("k_age_penalty", "0.2"),
            ("R_net", "7.5"),
            ("new_sl_proposed", "None"),
            ("last_update_epoch", &epoch),
        ],
    );
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = run_exporter(args, &[]);
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn direct(redis: &Redis, args: &[&str]) -> (Option<i32>, String, String) {
    let url = redis.url();
    let mut all = vec!["--redis.addr", url.as_str(), "status"];
    all.extend_from_slice(args);
    run(&all)
}

fn line<'a>(table: &'a str, symbol: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{symbol} ")))
        .unwrap_or_else(|| panic!("no {symbol} line in\n{table}"))
}

#[test]
fn reading_redis_directly_every_exit_code() {
    let mut redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    publish(&redis, "ETHUSDT", "0.553", 5);

    let (code, table, stderr) = direct(&redis, &[]);
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(
        !table.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("harvest-exporter ")
            && lines[0].contains(" · Redis up · cache ")
            && lines[0].contains(" · 2 symbols · redis 127.0.0.1:"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("SYMBOL    KILL  FLIP  SPIKE  TSDROP  AGEPEN  R_NET  NEW_SL  ACTION")
    );
    assert!(
        lines[2]
            .starts_with("ETHUSDT  0.553  0.00   0.10    0.06    0.20   7.50          PARTIAL_25"),
        "highest first:\n{table}"
    );
    assert!(lines[3].starts_with("BTCUSDT  0.527"), "{table}");
    assert_eq!(lines[4], "OK: all fresh, every kill score below 0.6");

    publish(&redis, "ETHUSDT", "0.6", 1);
    let (code, table, _) = direct(&redis, &[]);
    assert_eq!(code, Some(1), "{table}");
    assert!(
        table.contains("HIGH: kill score at or above 0.6: ETHUSDT 0.600"),
        "{table}"
    );

    publish(&redis, "BTCUSDT", "0.527", 90);
    let (code, table, _) = direct(&redis, &[]);
    assert_eq!(code, Some(2), "stale wins over high:\n{table}");
    assert!(line(&table, "BTCUSDT").ends_with("STALE"), "{table}");
    assert!(table.contains("STALE: no update for over 60s: BTCUSDT"));
    assert!(
        table.contains("HIGH: kill score at or above 0.6: ETHUSDT"),
        "still shown"
    );

    publish(&redis, "BTCUSDT", "0.527", 1);
    publish(&redis, "ETHUSDT", "0.5", 1);
    let (code, table, _) = direct(&redis, &["--harvest.symbols", "BTCUSDT,ETHUSDT,DOGEUSDT"]);
    assert_eq!(code, Some(2), "a configured symbol is missing:\n{table}");
    assert!(
        table.contains("MISSING: no proposal for DOGEUSDT"),
        "{table}"
    );
    let (code, table, _) = direct(&redis, &["--harvest.symbols", "BTCUSDT,ETHUSDT"]);
    assert_eq!(code, Some(0), "{table}");

    redis.kill();
    let (code, table, stderr) = direct(&redis, &[]);
    assert_eq!(code, Some(2), "{table}{stderr}");
    assert!(
        table.contains(" · Redis down: cannot connect to redis at 127.0.0.1:"),
        "{table}"
    );
    assert!(table.contains("UNKNOWN: Redis is unreachable"), "{table}");
}

#[test]
fn json_is_the_api_document() {
    let redis = Redis::start();
    seed_example(&redis);
    publish(&redis, "XRPUSDT", "0.51", 3);
    redis.hset(
        "ETHUSDT",
        &[
            ("action", "FULL_CLOSE"),
            ("calibrated", "1"),
            ("position_side", "LONG"),
        ],
    );

    let (code, json, stderr) = direct(&redis, &["--json"]);
    assert_eq!(
        code,
        Some(2),
        "the seed's example is from January 2026: {stderr}"
    );
    let view: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(view["redis_up"], true);
    assert_eq!(view["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(view["stale_after_seconds"], 60.0);
    let symbols: Vec<&str> = view["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["SOLUSDT", "ETHUSDT", "BTCUSDT", "XRPUSDT"]);
    let eth = &view["proposals"][1];
    assert_eq!(eth["kill_score"], 0.753);
    assert_eq!(eth["k_ts_drop"], 0.208);
    assert_eq!(eth["r_net"], 2.45);
    assert_eq!(eth["new_sl"], 100.2);
    assert_eq!(eth["action"], "FULL_CLOSE_PROPOSED");
    assert_eq!(eth["calibrated_action"], "FULL_CLOSE");
    assert_eq!(eth["position_side"], "LONG");
    assert_eq!(eth["last_update_epoch"], 1769130500.0);
    assert_eq!(eth["stale"], true);
    let btc = &view["proposals"][2];
    assert_eq!(btc["new_sl"], Value::Null, "None is no stop loss");
    assert_eq!(btc["calibrated_action"], Value::Null);
    let xrp = &view["proposals"][3];
    assert_eq!(xrp["stale"], false);
    assert!(xrp["age_seconds"].as_f64().unwrap() < 60.0);

    redis.run(&[
        "DEL",
        "quantum:harvest:proposal:BTCUSDT",
        "quantum:harvest:proposal:ETHUSDT",
        "quantum:harvest:proposal:SOLUSDT",
    ]);
    let (code, json, _) = direct(&redis, &["--json"]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap()["proposals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn from_a_running_exporter_every_exit_code() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    let exporter = Exporter::start(&redis, &[]);
    let from = format!("http://127.0.0.1:{}", exporter.port);
    let status = || run(&["status", "--from", &from]);
    exporter.wait_metrics("the first refresh", WAIT, |b| {
        sample(b, "quantum_harvest_kill_score{symbol=\"BTCUSDT\"}") == Some(0.527)
    });

    let (code, table, stderr) = status();
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!(" · 1 symbol · {from}/api/v1/proposals")),
        "{table}"
    );
    assert!(line(&table, "BTCUSDT").contains("0.527"));

    publish(&redis, "ETHUSDT", "0.81", 1);
    exporter.wait_metrics("ETHUSDT", WAIT, |b| b.contains("symbol=\"ETHUSDT\""));
    let (code, table, _) = status();
    assert_eq!(code, Some(1), "{table}");
    let (code, json, _) = run(&["status", "--from", &from, "--json"]);
    assert_eq!(code, Some(1));
    let view: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["proposals"][0]["symbol"], "ETHUSDT");
    // Ages and times move with every refresh; the rest is the endpoint's document as read.
    let endpoint: Value = serde_json::from_str(&exporter.get("/api/v1/proposals").text()).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&view), keys(&endpoint));
    assert_eq!(keys(&view["proposals"][0]), keys(&endpoint["proposals"][0]));
    for field in [
        "symbol",
        "kill_score",
        "r_net",
        "action",
        "last_update_epoch",
    ] {
        assert_eq!(
            view["proposals"][0][field], endpoint["proposals"][0][field],
            "{field}"
        );
    }

    publish(&redis, "ETHUSDT", "0.81", 120);
    wait_for("ETHUSDT to go stale", WAIT, || {
        let json = exporter.get("/api/v1/proposals").text();
        json.contains("\"stale\":true").then_some(())
    });
    let (code, table, _) = status();
    assert_eq!(code, Some(2), "{table}");

    drop(exporter);
    let (code, stdout, stderr) = status();
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "harvest-exporter status: cannot connect to the exporter at {from}/api/v1/proposals"
        )),
        "{stderr}"
    );
}

#[test]
fn colour_only_on_a_terminal() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    publish(&redis, "ETHUSDT", "0.85", 2);
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let on_a_terminal = |no_color: &str| {
        let command = format!("{} --redis.addr {} status", exporter_bin(), redis.url());
        let output = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("NO_COLOR", no_color)
            .output()
            .expect("run script");
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (code, table) = on_a_terminal("");
    assert_eq!(code, Some(1), "{table}");
    assert!(table.contains("\x1b[32mRedis up\x1b[0m"), "{table:?}");
    assert!(
        table.contains("\x1b[1;97;41m0.850\x1b[0m"),
        "critical kill score: {table:?}"
    );
    assert!(table.contains("\x1b[32m0.527\x1b[0m"), "{table:?}");
    let (code, table) = on_a_terminal("1");
    assert_eq!(code, Some(1));
    assert!(!table.contains('\x1b'), "NO_COLOR is honoured: {table:?}");
}

#[test]
fn bad_from_urls_are_usage_errors() {
    for url in ["https://127.0.0.1:8042", "127.0.0.1:8042", "http://h/?q=1"] {
        let (code, _, stderr) = run(&["status", "--from", url]);
        assert_eq!(code, Some(2), "{url}");
        assert!(stderr.contains("--from"), "{stderr}");
    }
}

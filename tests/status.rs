//! `harvest-exporter status` against a real redis-server, read directly and through a running
//! exporter: the table, `--json`, colour only on a terminal, every exit code, one symbol's
//! story and `--watch` until SIGTERM.

mod common;

use std::io::Read as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// The seed's BTCUSDT with another action and kill score, last updated `age` seconds ago.
fn publish(redis: &Redis, symbol: &str, kill_score: &str, age: u64) {
    let epoch = (unix_epoch() - age).to_string();
    let hash = with(
        &without(seed_hash("BTCUSDT"), &["computed_at_utc"]),
        &[
            ("harvest_action", "PARTIAL_25"),
            ("kill_score", kill_score),
            ("last_update_epoch", &epoch),
        ],
    );
    redis.hset(symbol, &hash);
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

/// Exit code and output of `status` with the given flags and environment.
fn status_with_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let output = run_exporter(&all, env);
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `status` until it exits 0 (the exporter's first refresh), or its last run after [`WAIT`].
fn status_until_ok(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let result = status_with_env(args, env);
        if result.0 == Some(0) || std::time::Instant::now() > deadline {
            return result;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An exporter behind its own web config (TLS and a basic-auth user) read with `--from https://`,
/// the password from a file and from the environment, and every way it can go wrong.
#[test]
fn from_an_exporter_behind_tls_and_basic_auth() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    let (certs, stranger) = (Certs::new(), Certs::new());
    let web = certs.dir.0.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {}\n",
            bcrypt::hash("scrape-pw", 4).unwrap()
        ),
    )
    .unwrap();
    let password_file = certs.dir.0.join("password");
    std::fs::write(&password_file, "scrape-pw\n").unwrap();
    let (web, url) = (web.to_string_lossy().into_owned(), redis.url());
    let exporter = Exporter::start_listening(
        &["--redis.addr", &url, "--web.config.file", &web],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let from = format!("https://127.0.0.1:{}", exporter.port);
    let (ca, password_file) = (
        certs.ca.to_string_lossy().into_owned(),
        password_file.to_string_lossy().into_owned(),
    );
    let tls = ["--from", from.as_str(), "--tls.ca-file", ca.as_str()];
    let with_file = [
        &tls[..],
        &[
            "--auth.username",
            "prometheus",
            "--auth.password-file",
            &password_file,
        ],
    ]
    .concat();

    let (code, table, stderr) = status_until_ok(&with_file, &[]);
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!(" · 1 symbol · {from}/api/v1/proposals")),
        "{table}"
    );
    assert!(line(&table, "BTCUSDT").contains("0.527"), "{table}");

    fn env(password: &str) -> [(&'static str, &str); 2] {
        [
            ("HARVEST_STATUS_USERNAME", "prometheus"),
            ("HARVEST_STATUS_PASSWORD", password),
        ]
    }
    let (code, table, stderr) = status_with_env(&tls, &env("scrape-pw"));
    assert_eq!(code, Some(0), "password from the environment: {stderr}");
    assert!(line(&table, "BTCUSDT").contains("0.527"), "{table}");

    let (code, stdout, stderr) = status_with_env(&tls, &env("wrong"));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "harvest-exporter status: the exporter at {from}/api/v1/proposals refused the credentials of user \"prometheus\" (401)"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the password is never shown: {stderr}"
    );

    let (code, stdout, stderr) = status_with_env(&tls, &[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("asks for credentials (401)"), "{stderr}");

    let untrusted = stranger.ca.to_string_lossy().into_owned();
    let (code, stdout, stderr) = status_with_env(
        &["--from", &from, "--tls.ca-file", &untrusted],
        &env("scrape-pw"),
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "TLS handshake with the exporter at {from}/api/v1/proposals failed: invalid peer certificate"
        )),
        "{stderr}"
    );

    let (code, _, stderr) = status_with_env(&["--from", &from], &env("scrape-pw"));
    assert_eq!(code, Some(2), "https without a CA is a usage error");
    assert!(stderr.contains("give --tls.ca-file"), "{stderr}");
    let (code, _, stderr) = status_with_env(
        &[&tls[..], &["--auth.username", "prometheus"]].concat(),
        &[],
    );
    assert_eq!(code, Some(2), "a user without a password");
    assert!(stderr.contains("needs a password"), "{stderr}");
}

/// An exporter that requires a client certificate (mutual TLS) is read with one.
#[test]
fn from_an_exporter_that_requires_a_client_certificate() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    let certs = Certs::new();
    let (web, url) = (certs.web_config_requiring_client_certs(), redis.url());
    let exporter = Exporter::start_listening(
        &["--redis.addr", &url, "--web.config.file", &web],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let from = format!("https://127.0.0.1:{}", exporter.port);
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (
        path(&certs.ca),
        path(&certs.client_cert),
        path(&certs.client_key),
    );
    let tls = ["--from", from.as_str(), "--tls.ca-file", ca.as_str()];

    let (code, table, stderr) = status_until_ok(
        &[
            &tls[..],
            &["--tls.cert-file", &cert, "--tls.key-file", &key],
        ]
        .concat(),
        &[],
    );
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(line(&table, "BTCUSDT").contains("0.527"), "{table}");

    let (code, stdout, stderr) = status_with_env(&tls, &[]);
    assert_eq!(code, Some(2), "no client certificate: {stdout}{stderr}");
    assert!(stdout.is_empty() && !stderr.is_empty(), "{stderr}");
}

#[test]
fn bad_from_urls_are_usage_errors() {
    for url in ["ftp://127.0.0.1:8042", "127.0.0.1:8042", "http://h/?q=1"] {
        let (code, _, stderr) = run(&["status", "--from", url]);
        assert_eq!(code, Some(2), "{url}");
        assert!(stderr.contains("--from"), "{stderr}");
    }
}

#[test]
fn one_symbol_read_from_redis_every_exit_code() {
    let mut redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    publish(&redis, "ETHUSDT", "0.81", 2);

    let (code, story, stderr) = direct(&redis, &["BTCUSDT"]);
    assert_eq!(
        code,
        Some(0),
        "ETHUSDT's score is not BTCUSDT's: {story}{stderr}"
    );
    let lines: Vec<&str> = story.lines().collect();
    assert!(
        lines[0].starts_with("harvest-exporter ")
            && lines[0].contains(" · Redis up · BTCUSDT · redis 127.0.0.1:"),
        "{story}"
    );
    assert_eq!(lines[1], "kill score  0.527  low (below 0.6)", "{story}");
    assert!(story.contains("\naction      PARTIAL_25\n"), "{story}");
    assert!(
        story.ends_with(
            "history, events and plans come from a running exporter (--from)\n\
             OK: fresh, kill score below 0.6\n"
        ),
        "{story}"
    );

    let (code, story, _) = direct(&redis, &["ETHUSDT"]);
    assert_eq!(code, Some(1), "{story}");
    assert!(
        story.contains("kill score  0.810  critical (from 0.8)"),
        "{story}"
    );
    assert!(
        story.ends_with("HIGH: kill score at or above 0.6: 0.810\n"),
        "{story}"
    );

    let (code, json, _) = direct(&redis, &["ETHUSDT", "--json"]);
    assert_eq!(code, Some(1), "{json}");
    let document: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(document["symbol"], "ETHUSDT");
    assert_eq!(document["current"]["kill_score"], 0.81);
    assert_eq!(document["history"], serde_json::json!([]));
    assert_eq!(document["plans"], Value::Null);

    publish(&redis, "BTCUSDT", "0.527", 90);
    let (code, story, _) = direct(&redis, &["BTCUSDT"]);
    assert_eq!(code, Some(2), "{story}");
    assert!(story.contains("data age    1m 30s STALE"), "{story}");
    assert!(
        story.ends_with("STALE: no update for over 60s\n"),
        "{story}"
    );

    let (code, story, _) = direct(&redis, &["DOGEUSDT"]);
    assert_eq!(code, Some(2), "{story}");
    assert!(
        story.contains("no proposal for DOGEUSDT in Redis"),
        "{story}"
    );
    assert!(
        story.ends_with("MISSING: no proposal for DOGEUSDT\n"),
        "{story}"
    );

    let (code, stdout, stderr) = direct(&redis, &["BTC\x07USDT"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stderr.contains("[SYMBOL]") && stderr.contains("control characters"),
        "{stderr}"
    );

    redis.kill();
    let (code, story, _) = direct(&redis, &["ETHUSDT"]);
    assert_eq!(code, Some(2), "{story}");
    assert!(story.contains(" · Redis down · ETHUSDT · "), "{story}");
    assert!(story.contains("UNKNOWN: Redis is unreachable"), "{story}");
}

/// `status` started with stdout read as it comes, for `--watch`.
struct Watching {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Watching {
    fn start(args: &[&str]) -> Watching {
        let mut child = Command::new(exporter_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Below the floor of one second between reports.
            .env("POLL_INTERVAL_SEC", "0.2")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start status --watch");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().unwrap();
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Watching { child, stdout }
    }

    /// Waits until the output so far satisfies `check`, and returns it.
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_for(what, WAIT, || {
            let stdout = self.stdout.lock().unwrap().clone();
            check(&stdout).then_some(stdout)
        })
    }

    /// Sends SIGTERM and returns the exit code, the whole stdout and stderr.
    fn terminate(mut self) -> (Option<i32>, String, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = wait_for("status --watch to exit", WAIT, || {
            self.child.try_wait().ok().flatten()
        });
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        // The reader thread has the last bytes once the pipe closes.
        std::thread::sleep(Duration::from_millis(100));
        let stdout = self.stdout.lock().unwrap().clone();
        (status.code(), stdout, stderr)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_redraws_until_sigterm_and_exits_with_the_last_code() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.5", 1);
    let url = redis.url();

    let watching = Watching::start(&["--redis.addr", &url, "status", "--watch"]);
    watching.wait("the first report", |out| out.contains("OK: all fresh"));
    publish(&redis, "BTCUSDT", "0.7", 1);
    watching.wait("a report of the high score", |out| out.contains("HIGH:"));
    let (code, stdout, stderr) = watching.terminate();
    assert_eq!(
        code,
        Some(1),
        "the last report's code, not the first's: {stdout}{stderr}"
    );
    assert!(
        !stdout.starts_with('\n') && !stdout.contains('\x1b'),
        "{stdout:?}"
    );
    let reports: Vec<&str> = stdout.split("\n\n").collect();
    assert!(reports.len() >= 2, "{stdout}");
    assert!(
        reports.iter().all(|r| r.starts_with("harvest-exporter ")),
        "a blank line between reports: {stdout}"
    );

    let watching = Watching::start(&[
        "--redis.addr",
        &url,
        "status",
        "BTCUSDT",
        "--watch",
        "--json",
    ]);
    watching.wait("two documents", |out| out.matches('\n').count() >= 2);
    let (code, stdout, stderr) = watching.terminate();
    assert_eq!(code, Some(1), "{stderr}");
    for line in stdout.lines() {
        let story: Value = serde_json::from_str(line).expect("one document per line");
        assert_eq!(story["current"]["kill_score"], 0.7, "{line}");
    }

    // Nothing listens there: each look fails, is told on stderr, and the watch goes on.
    let from = format!("http://127.0.0.1:{}", free_port());
    let mut watching = Watching::start(&["status", "--from", &from, "--watch"]);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        watching.child.try_wait().unwrap().is_none(),
        "still watching"
    );
    let (code, stdout, stderr) = watching.terminate();
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.matches("cannot connect to the exporter").count() >= 2,
        "{stderr}"
    );
}

/// Needs the exporter's `/api/v1/proposals/{symbol}`: the story of a symbol, as a running
/// exporter tells it, and a symbol it does not know.
#[test]
fn one_symbol_from_a_running_exporter() {
    let redis = Redis::start();
    publish(&redis, "BTCUSDT", "0.527", 2);
    publish(&redis, "BTC/USDT", "0.61", 2);
    let exporter = Exporter::start(&redis, &[]);
    let from = format!("http://127.0.0.1:{}", exporter.port);
    exporter.wait_metrics("the first refresh", WAIT, |b| {
        sample(b, "quantum_harvest_kill_score{symbol=\"BTCUSDT\"}") == Some(0.527)
    });

    let (code, story, stderr) = run(&["status", "--from", &from, "BTCUSDT"]);
    assert_eq!(code, Some(0), "{story}{stderr}");
    assert!(
        story
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!(" · BTCUSDT · {from}/api/v1/proposals/BTCUSDT")),
        "{story}"
    );
    assert!(
        story.contains("kill score  0.527  low (below 0.6)"),
        "{story}"
    );
    assert!(!story.contains("(--from)"), "{story}");
    assert!(story.contains("events"), "{story}");

    let (code, json, _) = run(&["status", "--from", &from, "BTCUSDT", "--json"]);
    assert_eq!(code, Some(0), "{json}");
    let document: Value = serde_json::from_str(&json).unwrap();
    let endpoint: Value =
        serde_json::from_str(&exporter.get("/api/v1/proposals/BTCUSDT").text()).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&document), keys(&endpoint));
    assert_eq!(document["current"]["kill_score"], 0.527);

    let (code, story, stderr) = run(&["status", "--from", &from, "BTC/USDT"]);
    assert_eq!(
        code,
        Some(1),
        "the symbol is one encoded path segment: {story}{stderr}"
    );
    assert!(
        story.contains(&format!("{from}/api/v1/proposals/BTC%2FUSDT")),
        "{story}"
    );

    let (code, stdout, stderr) = run(&["status", "--from", &from, "DOGEUSDT"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "the exporter at {from}/api/v1/proposals/DOGEUSDT knows no symbol \"DOGEUSDT\""
        )),
        "{stderr}"
    );
}

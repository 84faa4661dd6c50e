//! The Alertmanager example, `deploy/alertmanager/alertmanager.yml`: amtool accepts it, its
//! inhibit rules hold back what the README's failure table says a cause suppresses, and, end to
//! end with redis-server, the simulator, the exporter, a real Prometheus and a real
//! Alertmanager sending to a webhook receiver in the test, Redis going down is one
//! notification, for the cause, with no per-symbol page, and its resolve arrives once Redis is
//! back; the apply streams unreadable while the proposals are read pages once as well, and
//! symbols dropped by MAX_SYMBOLS are one warning.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::PromServer;
use crate::common::{Exporter, HASH_ACL, Redis, STREAM_ACL, TempDir, http_request, wait_for};
use crate::e2e::{Prometheus, WAIT, scrape_job_for};
use crate::prometheus::{alert_blocks, alert_names, failure_table};
use crate::{
    JOB, SEED_SYMBOLS, deploy, metrics_with_seed_symbols, read, require_tool, run_ok, simulator,
};

const EXAMPLE: &str = "alertmanager/alertmanager.yml";

#[test]
fn amtool_accepts_the_example() {
    require_tool("amtool", "prometheus-alertmanager");
    let output = run_ok(
        Command::new("amtool")
            .arg("check-config")
            .arg(deploy(EXAMPLE)),
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The alert names a matcher such as `alertname=~"Harvest(A|B)"` or `alertname="HarvestC"`
/// matches.
fn matched_alerts(matcher: &str) -> BTreeSet<String> {
    let pattern = matcher
        .strip_prefix("alertname=~\"")
        .or_else(|| matcher.strip_prefix("alertname=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not an alertname matcher: {matcher}"));
    match pattern.split_once('(') {
        Some((prefix, rest)) => rest
            .strip_suffix(')')
            .unwrap_or_else(|| panic!("{matcher}"))
            .split('|')
            .map(|name| format!("{prefix}{name}"))
            .collect(),
        None => BTreeSet::from([pattern.to_owned()]),
    }
}

/// For each row of the failure table whose cause is an alert, the example inhibits, with that
/// alert as the source, every alert the row says is suppressed; and every name the inhibit
/// rules give is an alert of alerts.yml.
#[test]
fn inhibit_rules_follow_the_failure_table() {
    let example: Value = crate::rules_lint::parse(&read(EXAMPLE));
    let shipped: BTreeSet<String> = alert_blocks(&read("prometheus/alerts.yml"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let rules: Vec<(BTreeSet<String>, BTreeSet<String>)> = example["inhibit_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            let names = |key: &str| -> BTreeSet<String> {
                let matchers = rule[key].as_array().unwrap();
                assert_eq!(matchers.len(), 1, "{rule}");
                matched_alerts(matchers[0].as_str().unwrap())
            };
            (names("source_matchers"), names("target_matchers"))
        })
        .collect();
    for (sources, targets) in &rules {
        for name in sources.iter().chain(targets) {
            assert!(shipped.contains(name), "the inhibit rules name {name}");
        }
    }
    let mut checked = 0;
    for [failure, fires, _, suppressed] in failure_table() {
        if failure.starts_with("HA pair") || fires == "nothing" {
            continue;
        }
        let cause = alert_names(&fires).into_iter().next().unwrap();
        let Some((_, targets)) = rules.iter().find(|(sources, _)| sources.contains(&cause)) else {
            continue;
        };
        for alert in alert_names(&suppressed) {
            assert!(
                targets.contains(&alert),
                "{failure}: {cause} does not inhibit {alert}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "exporter down, Redis down, apply streams unreadable"
    );
    // Grouped by kind and job, as the table's publisher row says.
    assert_eq!(
        example["route"]["group_by"],
        serde_json::json!(["alertname", "job"])
    );
}

/// A webhook receiver on a free loopback port: keeps each notification's path (the receiver's
/// name) and JSON body.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    if let Some(notification) = read_notification(&mut stream) {
                        received.lock().unwrap().push(notification);
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            })
        };
        Receiver {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn notifications(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One POST: its path and its JSON body; `None` for anything else.
fn read_notification(stream: &mut TcpStream) -> Option<(String, Value)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buffer).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let path = head.strip_prefix("POST ")?.split(' ').next()?.to_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))?
        .1
        .trim()
        .parse()
        .ok()?;
    let mut body = raw[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&buffer[..n]);
    }
    Some((path, serde_json::from_slice(&body).ok()?))
}

/// A real Alertmanager on a free loopback port, without clustering.
struct Alertmanager {
    server: PromServer,
}

impl Alertmanager {
    fn start(config: &str) -> Alertmanager {
        Alertmanager {
            server: PromServer::start(
                "prometheus-alertmanager",
                "prometheus-alertmanager",
                config,
                "--storage.path",
                &["--cluster.listen-address="],
            ),
        }
    }

    /// The names of the alerts Alertmanager holds, inhibited ones included.
    fn alert_names(&self) -> Vec<String> {
        let response = http_request(
            self.server.port,
            b"GET /api/v2/alerts HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .expect("GET /api/v2/alerts");
        let alerts: Value = serde_json::from_slice(&response.body).expect("JSON alerts");
        alerts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The shipped example with its webhooks pointed at `receiver` (each at the path of its
/// receiver's name) and its grouping waits shortened, nothing else changed.
fn example_for(receiver: &Receiver) -> String {
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(EXAMPLE)).unwrap();
    for (key, value) in [
        ("group_wait", "1s"),
        ("group_interval", "1s"),
        ("repeat_interval", "1h"),
    ] {
        config["route"][key] = value.into();
    }
    for entry in config["receivers"].as_sequence_mut().unwrap() {
        let name = entry["name"].as_str().unwrap().to_owned();
        for webhook in entry["webhook_configs"].as_sequence_mut().unwrap() {
            webhook["url"] = format!("http://127.0.0.1:{}/{name}", receiver.port).into();
        }
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

/// The rules with the kit's settings, but durations short enough for a test: stale after 5 s
/// (the simulator writes every second), Redis down and the streams unread after 2 s; the kill
/// score alerts kept out of the way, since the simulator's scores wander.
const TEST_SETTINGS: &str = "stale_seconds: 5
stale_for: 3s
redis_down_for: 2s
exporter_down_for: 2s
apply_streams_down_for: 2s
max_symbols_for: 2s
kill_score_high_for: 1h
kill_score_critical_for: 1h
";

/// What turns an exporter's series into notifications: a webhook receiver, Alertmanager with
/// the example, and Prometheus scraping `exporter` every second and evaluating the rules
/// generated with [`TEST_SETTINGS`] every second.
struct Alerting {
    receiver: Receiver,
    alertmanager: Alertmanager,
    prometheus: Prometheus,
    _rules: TempDir,
}

impl Alerting {
    fn start(exporter: &Exporter) -> Alerting {
        require_tool("prometheus", "prometheus");
        let receiver = Receiver::start();
        let alertmanager = Alertmanager::start(&example_for(&receiver));
        let rules = TempDir::new("rules");
        let alerts = rules.0.join("alerts.yml");
        let config = crate::mixin::config(TEST_SETTINGS);
        std::fs::write(&alerts, config.alerts().unwrap()).unwrap();
        let prometheus = Prometheus::start(&format!(
            "global:\n  evaluation_interval: 1s\nalerting:\n  alertmanagers:\n    - static_configs:\n        \
             - targets: ['127.0.0.1:{}']\nrule_files:\n  - {}\n{}",
            alertmanager.server.port,
            alerts.display(),
            scrape_job_for(&format!("127.0.0.1:{}", exporter.port))
        ));
        let fresh = format!("max(time() - quantum_harvest_last_update_epoch{{job=\"{JOB}\"}}) < 5");
        wait_for("fresh proposals in Prometheus", WAIT, || {
            (!prometheus.query(&fresh).is_empty()).then_some(())
        });
        Alerting {
            receiver,
            alertmanager,
            prometheus,
            _rules: rules,
        }
    }

    /// Waits for the first notification of the group of `alertname` with `status`.
    fn wait_notification(&self, alertname: &str, status: &str) -> (String, Value) {
        wait_for(
            &format!("a {status} notification of {alertname}"),
            WAIT,
            || {
                self.receiver.notifications().into_iter().find(|(_, body)| {
                    body["groupLabels"]["alertname"] == alertname && body["status"] == status
                })
            },
        )
    }

    /// Every notification so far was about `alertname`, in one group: the one of `page`.
    fn only_notified(&self, alertname: &str, page: &Value) {
        let notifications = self.receiver.notifications();
        assert!(
            notifications
                .iter()
                .all(|(_, body)| body["groupKey"] == page["groupKey"]
                    && body["groupLabels"]["alertname"] == alertname),
            "{notifications:#?}"
        );
    }
}

/// A page for the cause alone: to the paging receiver, firing, one critical alert of the job.
fn assert_one_page(alertname: &str, (path, page): &(String, Value)) {
    assert_eq!(path, "/harvest-pages", "critical pages: {page}");
    assert_eq!(page["groupLabels"]["job"], JOB, "{page}");
    let alerts = page["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "one alert for the job: {page}");
    assert_eq!(alerts[0]["labels"]["alertname"], alertname, "{page}");
    assert_eq!(alerts[0]["labels"]["severity"], "critical", "{page}");
}

#[test]
fn redis_down_is_one_notification_for_the_cause_and_resolves() {
    let mut redis = Redis::start();
    let mut publisher = simulator(&redis, "1");
    let exporter = Exporter::start(&redis, &["--harvest.symbols", SEED_SYMBOLS]);
    metrics_with_seed_symbols(&exporter);
    let alerting = Alerting::start(&exporter);
    let prometheus = &alerting.prometheus;
    assert!(alerting.receiver.notifications().is_empty());

    // Redis goes away, and the publisher with it.
    redis.kill();
    publisher.stop();
    let page = alerting.wait_notification("HarvestRedisDown", "firing");
    assert_one_page("HarvestRedisDown", &page);

    // The data ages past the stale threshold and its for: (5 s and 3 s, with a margin), and
    // yet HarvestDataStale never even goes pending: the rules leave the exporter out.
    let aged = format!("min(time() - quantum_harvest_last_update_epoch{{job=\"{JOB}\"}}) > 12");
    wait_for(
        "the served proposals to age past the stale alert",
        WAIT,
        || (!prometheus.query(&aged).is_empty()).then_some(()),
    );
    let stale_ever = "count_over_time(ALERTS{alertname=\"HarvestDataStale\"}[10m])";
    assert!(prometheus.query(stale_ever).is_empty());
    assert!(prometheus.alerts("HarvestDataStale").is_empty());
    let held = alerting.alertmanager.alert_names();
    assert!(
        held.iter().all(|name| name == "HarvestRedisDown"),
        "{held:?}"
    );
    alerting.only_notified("HarvestRedisDown", &page.1);

    // Redis is back, and the publisher: the resolve arrives.
    redis.restart();
    let _publisher = simulator(&redis, "1");
    alerting.wait_notification("HarvestRedisDown", "resolved");
    alerting.only_notified("HarvestRedisDown", &page.1);
}

/// The exporter reads the proposals as a Redis user whose ACL lacks the stream commands, as
/// the execution side going dark looks from outside: its own alert pages, and resolves once
/// the user may read the streams.
#[test]
fn apply_streams_unreadable_pages_once_and_resolves() {
    let redis = Redis::start();
    let _publisher = simulator(&redis, "1");
    redis.acl_user("harvest", "secret", &[HASH_ACL]);
    let url = format!("redis://harvest:secret@127.0.0.1:{}/0", redis.port);
    let exporter = Exporter::start_raw(
        &["--redis.addr", &url, "--harvest.symbols", SEED_SYMBOLS],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let body = metrics_with_seed_symbols(&exporter);
    assert!(
        body.contains("quantum_harvest_exporter_redis_up 1"),
        "{body}"
    );
    let alerting = Alerting::start(&exporter);

    let page = alerting.wait_notification("HarvestApplyStreamsDown", "firing");
    assert_one_page("HarvestApplyStreamsDown", &page);
    alerting.only_notified("HarvestApplyStreamsDown", &page.1);

    // The stream part of the ACL the exporter's documentation gives.
    redis.acl_user("harvest", "secret", &[STREAM_ACL]);
    alerting.wait_notification("HarvestApplyStreamsDown", "resolved");
    alerting.only_notified("HarvestApplyStreamsDown", &page.1);
}

/// More symbols in Redis than MAX_SYMBOLS: the dropped ones are reported, once for the job, to
/// the ticket receiver (a warning).
#[test]
fn max_symbols_reached_files_one_warning() {
    let redis = Redis::start();
    let _publisher = simulator(&redis, "1");
    let exporter = Exporter::start(&redis, &["--harvest.max-symbols", "2"]);
    exporter.wait_metrics("a symbol dropped by the cap", WAIT, |body| {
        body.contains("quantum_harvest_exporter_symbols_dropped{reason=\"cap\"} 1")
    });
    let alerting = Alerting::start(&exporter);
    let (path, ticket) = alerting.wait_notification("HarvestMaxSymbolsReached", "firing");
    assert_eq!(path, "/harvest-tickets", "warnings are filed: {ticket}");
    let alerts = ticket["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{ticket}");
    assert_eq!(alerts[0]["labels"]["severity"], "warning", "{ticket}");
    let description = alerts[0]["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("beyond it (1 now)"), "{ticket}");
    alerting.only_notified("HarvestMaxSymbolsReached", &ticket);
}

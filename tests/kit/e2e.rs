//! End to end: redis-server, the simulator as the publisher, the apply layer's plans and
//! results written to its streams, the exporter, and a real Prometheus loading the shipped
//! scrape job and rule files. Every query of every dashboard and every example query of the
//! seed (and of the README) must return data, the recording rules must have values, and the
//! execution-error, kill-switch, consumer-lag, stale, parse-error, Redis-down and exporter-down
//! alerts must go pending or fire when their cause happens. Only the scrape target and
//! intervals are changed for speed, and the test checks that nothing else was.

use std::time::Duration;

use serde_json::Value;

use crate::common::exposition::check_open_metrics;
use crate::common::{Exporter, Redis, http_get, http_request, unix_epoch, unix_now, wait_for};
use crate::dashboard::{self, metric_names};
use crate::prometheus::{alert_blocks, record_names};
use crate::{
    JOB, PromServer, RESULT_STREAM, SEED_SYMBOLS, deploy, metrics_with_seed_symbols,
    publish_apply_entries, read, require_tool, simulator,
};

/// The example queries of the seed's design document, verbatim.
const SEED_QUERIES: [&str; 10] = [
    "quantum_harvest_kill_score",
    "quantum_harvest_kill_score{symbol=\"ETHUSDT\"}",
    "quantum_harvest_r_net{symbol=\"BTCUSDT\"}",
    "quantum_harvest_k_regime_flip{symbol=\"ETHUSDT\"}",
    "sum by(symbol) (\n  quantum_harvest_k_regime_flip * 2.0 +\n  quantum_harvest_k_sigma_spike * 1.5 +\n  \
     quantum_harvest_k_ts_drop * 2.5 +\n  quantum_harvest_k_age_penalty * 0.5\n)",
    "max by(symbol, action) (quantum_harvest_action)",
    "sum(quantum_harvest_action{action=\"FULL_CLOSE_PROPOSED\"})",
    "quantum_harvest_action{action=\"PARTIAL_75\"} == 1",
    "time() - quantum_harvest_last_update_epoch",
    "(time() - quantum_harvest_last_update_epoch) > 60",
];

/// Generous bound for anything that takes a few scrapes or rule evaluations.
pub const WAIT: Duration = Duration::from_secs(60);

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    server: PromServer,
}

impl Prometheus {
    pub fn start(config: &str) -> Prometheus {
        Prometheus {
            server: PromServer::start(
                "prometheus",
                "prometheus",
                config,
                "--storage.tsdb.path",
                &[],
            ),
        }
    }

    /// GET an API path (HTTP/1.0, so that the body is not chunked) and return `data`.
    pub fn api(&self, path: &str) -> Value {
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let response = http_request(self.server.port, request.as_bytes())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", response.text()));
        assert_eq!(body["status"], "success", "GET {path}: {body}");
        body["data"].clone()
    }

    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        match &data["result"] {
            Value::Array(series) => series.clone(),
            // A scalar result (time(), say) is one value.
            scalar => vec![scalar.clone()],
        }
    }

    fn query_range(&self, expr: &str) -> Vec<Value> {
        // The end has to be exact: a whole second could fall before a series' first sample.
        let end = unix_now();
        let data = self.api(&format!(
            "/api/v1/query_range?query={}&start={:.3}&end={end:.3}&step=1",
            url_encode(expr),
            end - 60.0
        ));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts named `name`, with their state.
    pub fn alerts(&self, name: &str) -> Vec<Value> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .cloned()
            .collect()
    }

    /// Waits until the alert `name` with `label` is pending or firing (an alert without `for`
    /// fires at once).
    fn wait_active(&self, name: &str, label: (&str, &str)) -> Value {
        wait_for(&format!("{name} with {label:?} to be active"), WAIT, || {
            self.alerts(name)
                .into_iter()
                .find(|a| a["labels"][label.0] == label.1)
        })
    }

    fn wait_alert(&self, name: &str, label: (&str, &str)) -> Value {
        wait_for(
            &format!("{name} with {label:?} to be pending"),
            WAIT,
            || {
                self.alerts(name)
                    .into_iter()
                    .find(|a| a["labels"][label.0] == label.1 && a["state"] == "pending")
            },
        )
    }

    /// The value of a one-sample instant query.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

/// Replaces Grafana's variables the way Grafana would for Prometheus: `symbol`, `job` and
/// `instance` by the regex alternation of the selected values (`None`: All, which the
/// dashboard sends as `.+`), the interval variables by durations.
fn substitute(expr: &str, symbols: &str, job: Option<&str>, instance: Option<&str>) -> String {
    let alternation = format!("({})", symbols.replace(',', "|"));
    let selected = |value: Option<&str>| value.map_or(".+".to_owned(), |v| format!("({v})"));
    let (job, instance) = (selected(job), selected(instance));
    let mut out = expr.to_owned();
    for (variable, value) in [
        ("${symbol}", alternation.as_str()),
        ("$symbol", alternation.as_str()),
        ("$job", job.as_str()),
        ("$instance", instance.as_str()),
        ("$__rate_interval", "15s"),
        ("$__interval", "5s"),
        ("$__range", "1h"),
    ] {
        out = out.replace(variable, value);
    }
    assert!(!out.contains('$'), "unknown variable left in {out:?}");
    out
}

/// The shipped scrape job pointed at `target` and sped up to 1 s, after checking that only
/// the target, the interval and the timeout changed.
pub fn scrape_job_for(target: &str) -> String {
    let original = read("prometheus/scrape-job.yml");
    let transformed: Vec<String> = original
        .lines()
        .map(|line| match line.trim() {
            "- targets: ['127.0.0.1:8042']" => line.replace("127.0.0.1:8042", target),
            "scrape_interval: 10s" => line.replace("10s", "1s"),
            "scrape_timeout: 5s" => line.replace("5s", "1s"),
            _ => line.to_owned(),
        })
        .collect();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(&transformed)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a, b.as_str()))
        .collect();
    assert_eq!(changed.len(), 3, "expected to change 3 lines: {changed:?}");
    for (before, after) in changed {
        assert_eq!(
            before.split_once(':').unwrap().0,
            after.split_once(':').unwrap().0
        );
    }
    transformed.join("\n") + "\n"
}

/// The PromQL queries in the README's ```promql blocks: each query is a run of lines ended by a
/// comment, a blank line or the block's end.
fn readme_queries() -> Vec<String> {
    let mut queries = Vec::new();
    let mut in_block = false;
    let mut current: Vec<&str> = Vec::new();
    let readme = read("README.md");
    for line in readme.lines() {
        if line.trim() == "```promql" {
            in_block = true;
            continue;
        }
        if !in_block {
            continue;
        }
        let end = line.trim() == "```";
        if end || line.trim().is_empty() || line.trim_start().starts_with('#') {
            if !current.is_empty() {
                queries.push(current.join("\n"));
                current.clear();
            }
            in_block = !end;
        } else {
            current.push(line);
        }
    }
    queries
}

fn normalized(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prometheus asks for OpenMetrics first, and read the exporter's answer as OpenMetrics: only
/// that parser gives it units (`# UNIT`) and counter families named without `_total`, while the
/// counters' samples keep their `_total` names. It took every sample the exporter offers.
fn scraped_as_open_metrics(prometheus: &Prometheus, exporter: &Exporter) {
    // Prometheus 2.42's Accept header, as its scrape requests send it.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                  version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let scrape = || {
        let response = http_get(exporter.port, "/metrics", &[("Accept", accept)]).unwrap();
        assert_eq!(
            response.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        let body = response.text();
        check_open_metrics(&body).unwrap_or_else(|e| panic!("{e}"));
        body
    };
    let metadata = |metric: &str| -> Option<Value> {
        let found = prometheus.api(&format!("/api/v1/metadata?metric={metric}"));
        found[metric].get(0).cloned()
    };
    let duration = wait_for("metadata of the refresh duration", WAIT, || {
        metadata("quantum_harvest_exporter_refresh_duration_seconds")
    });
    assert_eq!(duration["unit"], "seconds", "{duration}");
    assert_eq!(duration["type"], "gauge");
    let refreshes = metadata("quantum_harvest_exporter_refreshes").expect("counter family");
    assert_eq!(refreshes["type"], "counter");
    assert_eq!(refreshes["unit"], "");
    let cpu = metadata("process_cpu_seconds").expect("the tail's counter family");
    assert_eq!(cpu["type"], "counter");
    assert_eq!(cpu["unit"], "seconds");
    assert!(metadata("quantum_harvest_exporter_refreshes_total").is_none());

    let job = format!("{{job=\"{JOB}\"}}");
    assert_eq!(prometheus.value(&format!("up{job}")), Some(1.0));
    for counter in [
        "quantum_harvest_exporter_refreshes_total",
        "process_cpu_seconds_total",
    ] {
        let value = prometheus.value(&format!("{counter}{job}"));
        assert!(value.is_some_and(|v| v > 0.0), "{counter}: {value:?}");
    }
    assert!(
        prometheus
            .query(&format!("quantum_harvest_exporter_refreshes{job}"))
            .is_empty()
    );
    // The samples of a scrape, against Prometheus's count for its last one: the counts agree
    // once no symbol's set of fields changed in between.
    wait_for("scrape_samples_scraped to match a scrape", WAIT, || {
        let samples = scrape()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count();
        let scraped = prometheus.value(&format!("scrape_samples_scraped{job}"))?;
        (scraped == samples as f64).then_some(())
    });
}

#[test]
fn end_to_end_with_prometheus() {
    require_tool("prometheus", "prometheus");
    let mut redis = Redis::start();
    let mut publisher = simulator(&redis, "1");
    let exporter = Exporter::start(&redis, &["--harvest.symbols", SEED_SYMBOLS]);
    metrics_with_seed_symbols(&exporter);
    // The apply layer's streams, until the simulator writes them: a round of plans and
    // results, and a guard's consumer group on the result stream that has read nothing of a
    // dry run's thousand skips (a lag above HarvestApplyConsumerLag's 1000).
    publish_apply_entries(&redis, 0);
    redis.run(&["XGROUP", "CREATE", RESULT_STREAM, "guard", "0"]);
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("XADD")
            .arg(RESULT_STREAM)
            .arg("*")
            .arg(&[
                ("plan_id", format!("dry{i}").as_str()),
                ("symbol", "SOLUSDT"),
                ("decision", "SKIP"),
                ("would_execute", "True"),
                ("error", "not_in_allowlist"),
            ])
            .ignore();
    }
    pipe.query::<()>(&mut redis.connection()).expect("XADD");

    let alerts_path = deploy("prometheus/alerts.yml");
    let recording_path = deploy("prometheus/recording.yml");
    let config = format!(
        "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\n{}",
        alerts_path.display(),
        recording_path.display(),
        scrape_job_for(&format!("127.0.0.1:{}", exporter.port))
    );
    let prometheus = Prometheus::start(&config);

    // Prometheus loaded exactly the rules the kit's files hold, and each evaluates cleanly.
    let mut loaded: Vec<String> = wait_for("every rule evaluated", WAIT, || {
        let mut names = Vec::new();
        for group in prometheus.api("/api/v1/rules")["groups"]
            .as_array()
            .unwrap()
        {
            for rule in group["rules"].as_array().unwrap() {
                assert_ne!(rule["health"], "err", "{rule}");
                if rule["health"] != "ok" {
                    return None;
                }
                names.push(rule["name"].as_str().unwrap().to_owned());
            }
        }
        Some(names)
    });
    let mut shipped: Vec<String> = alert_blocks(&read("prometheus/alerts.yml"))
        .into_iter()
        .map(|(name, _)| name)
        .chain(record_names(&read("prometheus/recording.yml")))
        .collect();
    loaded.sort();
    shipped.sort();
    assert_eq!(loaded, shipped);

    wait_for("two successful scrapes", WAIT, || {
        let scrapes = prometheus.value(&format!("count_over_time(up{{job=\"{JOB}\"}}[5m])"))?;
        let up = prometheus.value(&format!("up{{job=\"{JOB}\"}}"))?;
        (scrapes >= 2.0 && up == 1.0).then_some(())
    });
    // A second round after Prometheus has seen the first, so that rates are not 0.
    publish_apply_entries(&redis, 1);
    wait_for("the second round of plans in Prometheus", WAIT, || {
        let expr = format!(
            "increase(quantum_apply_plans_seen_total{{job=\"{JOB}\", symbol=\"ETHUSDT\"}}[1m]) > 0"
        );
        (!prometheus.query(&expr).is_empty()).then_some(())
    });
    let targets = prometheus.api("/api/v1/targets")["activeTargets"].clone();
    let ours = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == JOB)
        .expect("the harvest job's target");
    assert_eq!(ours["health"], "up");
    assert_eq!(
        ours["scrapeUrl"],
        format!("http://127.0.0.1:{}/metrics", exporter.port)
    );

    scraped_as_open_metrics(&prometheus, &exporter);

    // The recording rules have a value for every symbol (band, action), and the data is fresh.
    let mut records = record_names(&read("prometheus/recording.yml"));
    records.dedup();
    for record in records {
        let expected = match record.as_str() {
            "job_band:quantum_harvest_kill_score:count" => 5,
            "job_action:quantum_harvest_action:count" => 5,
            _ => 3,
        };
        wait_for(&format!("{record}: {expected} series"), WAIT, || {
            (prometheus.query(&record).len() == expected).then_some(())
        });
    }
    // Each symbol is counted once, in one band and under one action.
    for counted in [
        "job_band:quantum_harvest_kill_score:count",
        "job_action:quantum_harvest_action:count",
    ] {
        assert_eq!(
            prometheus.value(&format!("sum({counted})")),
            Some(3.0),
            "{counted}"
        );
    }
    let ages = prometheus.query("symbol:quantum_harvest_last_update_epoch:age_seconds");
    for age in &ages {
        let seconds: f64 = age["value"][1].as_str().unwrap().parse().unwrap();
        assert!(
            seconds < 30.0,
            "data is {seconds}s old while publishing: {age}"
        );
    }

    // Every query of every dashboard returns data, for all symbols, jobs and instances, and for
    // one of each (a repeated panel, the exporter picked in the drop-downs).
    let instance = format!("127.0.0.1:{}", exporter.port);
    for kit in &dashboard::DASHBOARDS {
        let d = dashboard::load_file(kit.file);
        for query in dashboard::queries(&d) {
            for (symbols, job, instance) in [
                (SEED_SYMBOLS, None, None),
                ("ETHUSDT", Some(JOB), Some(instance.as_str())),
            ] {
                let expr = substitute(&query.expr, symbols, job, instance);
                let instant = prometheus.query(&expr);
                assert!(
                    !instant.is_empty(),
                    "{} panel {:?}: no data for {expr}",
                    kit.file,
                    query.panel
                );
                if query.range {
                    let range = prometheus.query_range(&expr);
                    assert!(
                        !range.is_empty(),
                        "{} panel {:?}: no range data for {expr}",
                        kit.file,
                        query.panel
                    );
                }
            }
        }
    }
    // The drop-downs offer the symbols, the job and the instance.
    let d = dashboard::load();
    for (name, expected) in [
        ("symbol", SEED_SYMBOLS.split(',').collect::<Vec<_>>()),
        ("job", vec![JOB]),
        ("instance", vec![instance.as_str()]),
    ] {
        let metric = dashboard::variable_metric(&d, name);
        let values = prometheus.api(&format!(
            "/api/v1/label/{name}/values?match%5B%5D={}",
            url_encode(&metric)
        ));
        for value in expected {
            assert!(
                values.as_array().unwrap().iter().any(|v| v == value),
                "{name}: {values}"
            );
        }
    }
    let p3 = dashboard::load_file(dashboard::DASHBOARDS[2].file);
    let metric = dashboard::variable_metric(&p3, "symbol");
    let values = prometheus.api(&format!(
        "/api/v1/label/symbol/values?match%5B%5D={}",
        url_encode(&metric)
    ));
    for symbol in SEED_SYMBOLS.split(',') {
        assert!(
            values.as_array().unwrap().iter().any(|v| v == symbol),
            "{values}"
        );
    }
    assert!(prometheus.alerts("HarvestDataStale").is_empty());
    assert!(prometheus.alerts("HarvestExporterDown").is_empty());
    assert!(prometheus.alerts("HarvestRedisDown").is_empty());
    assert!(prometheus.alerts("HarvestApplyStalled").is_empty());
    assert!(prometheus.alerts("HarvestApplyEntriesLost").is_empty());

    // The apply layer's alerts: ETHUSDT's failed executions, the kill switch blocking
    // SOLUSDT's plans, and the guard's consumer group 1000 entries behind.
    let errors = prometheus.wait_active("HarvestApplyExecutionErrors", ("symbol", "ETHUSDT"));
    assert_eq!(errors["labels"]["severity"], "warning");
    assert!(
        prometheus
            .alerts("HarvestApplyExecutionErrors")
            .iter()
            .all(|a| a["labels"]["symbol"] == "ETHUSDT"),
        "only ETHUSDT's results are errors"
    );
    prometheus.wait_active(
        "HarvestApplyKillSwitchActive",
        ("reason", "kill_switch_active"),
    );
    let lag = prometheus.wait_alert("HarvestApplyConsumerLag", ("group", "guard"));
    assert_eq!(lag["labels"]["stream"], "result");

    // The publisher stops; one hash keeps what it last wrote ten minutes ago.
    publisher.stop();
    let old_epoch = (unix_epoch() - 600).to_string();
    redis.hset(
        "SOLUSDT",
        &[
            ("last_update_epoch", old_epoch.as_str()),
            ("harvest_action", "PARTIAL_75"),
            ("kill_score", "0.85"),
            ("k_ts_drop", "garbage"),
        ],
    );
    let stale = prometheus.wait_alert("HarvestDataStale", ("symbol", "SOLUSDT"));
    assert_eq!(stale["labels"]["severity"], "critical");
    // The garbled component is counted on every refresh.
    let parse = prometheus.wait_alert("HarvestParseErrors", ("field", "k_ts_drop"));
    assert_eq!(parse["labels"]["severity"], "warning");

    // The seed's example queries, all of them in the README, and the README's own.
    let readme = readme_queries();
    let readme_normalized: Vec<String> = readme.iter().map(|q| normalized(q)).collect();
    for seed in SEED_QUERIES {
        assert!(
            readme_normalized.contains(&normalized(seed)),
            "the README lacks the seed's query {seed}"
        );
    }
    for query in &readme {
        assert!(!metric_names(query).is_empty(), "not a query: {query}");
        wait_for(&format!("data for {query}"), WAIT, || {
            (!prometheus.query(query).is_empty()).then_some(())
        });
    }

    // Redis goes away: the exporter keeps serving, and says it cannot read. The alert is the
    // job's (an HA pair's exporters share their Redis).
    redis.kill();
    let redis_down = prometheus.wait_alert("HarvestRedisDown", ("job", JOB));
    assert_eq!(redis_down["labels"]["severity"], "critical");

    // The exporter stops.
    let instance = format!("127.0.0.1:{}", exporter.port);
    drop(exporter);
    let down = prometheus.wait_alert("HarvestExporterDown", ("instance", &instance));
    assert_eq!(down["labels"]["job"], JOB);
    assert_eq!(prometheus.value(&format!("up{{job=\"{JOB}\"}}")), Some(0.0));
}

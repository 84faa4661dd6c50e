//! The exporter against a real redis-server: the seed's example, bad data, discovery, changes,
//! Redis outages, and the drop-in configuration. Every /metrics body is checked by promtool.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const KNOWN_ACTIONS: [&str; 5] = [
    "NONE",
    "PARTIAL_25",
    "PARTIAL_50",
    "PARTIAL_75",
    "FULL_CLOSE_PROPOSED",
];
const WAIT: Duration = Duration::from_secs(10);

fn action(symbol: &str, action: &str) -> String {
    format!("quantum_harvest_action{{symbol=\"{symbol}\",action=\"{action}\"}}")
}

fn gauge(name: &str, symbol: &str) -> String {
    format!("quantum_harvest_{name}{{symbol=\"{symbol}\"}}")
}

#[test]
fn seed_example_comes_out_as_in_the_seed() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--harvest.symbols", "BTCUSDT,ETHUSDT,SOLUSDT"]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    let body = exporter.metrics();

    assert_eq!(sample(&body, &gauge("kill_score", "BTCUSDT")), Some(0.527));
    assert_eq!(sample(&body, &gauge("kill_score", "ETHUSDT")), Some(0.753));
    assert_eq!(sample(&body, &gauge("kill_score", "SOLUSDT")), Some(0.761));
    assert_eq!(sample(&body, &gauge("k_regime_flip", "ETHUSDT")), Some(1.0));
    assert_eq!(sample(&body, &gauge("k_ts_drop", "ETHUSDT")), Some(0.208));
    assert_eq!(sample(&body, &gauge("r_net", "ETHUSDT")), Some(2.45));
    assert_eq!(
        sample(&body, &gauge("r_net", "SOLUSDT")),
        Some(4.0),
        "legacy r_net is read"
    );
    assert_eq!(sample(&body, &gauge("new_sl", "ETHUSDT")), Some(100.2));
    assert_eq!(
        sample(&body, &gauge("new_sl", "BTCUSDT")),
        Some(0.0),
        "None means no new stop loss"
    );
    assert_eq!(
        sample(&body, &gauge("last_update_epoch", "BTCUSDT")),
        Some(1769130500.0)
    );
    assert_eq!(
        sample(&body, &action("ETHUSDT", "FULL_CLOSE_PROPOSED")),
        Some(1.0)
    );
    assert_eq!(sample(&body, &action("BTCUSDT", "PARTIAL_75")), Some(1.0));
    for symbol in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        let ones: f64 = KNOWN_ACTIONS
            .iter()
            .map(|a| sample(&body, &action(symbol, a)).expect("every known action is present"))
            .sum();
        assert_eq!(ones, 1.0, "exactly one action is 1 for {symbol}");
    }
    for field in [
        "kill_score",
        "R_net",
        "new_sl_proposed",
        "last_update_epoch",
    ] {
        let series = format!("quantum_harvest_exporter_parse_errors_total{{field=\"{field}\"}}");
        assert_eq!(sample(&body, &series), Some(0.0), "{field}");
    }
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(3.0)
    );
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_missing"),
        Some(0.0)
    );
    assert!(body.contains("quantum_harvest_exporter_build_info{version=\""));
    assert!(sample(&body, "process_resident_memory_bytes").unwrap() > 0.0);
    assert_eq!(exporter.get("/ready").status, 200);
}

#[test]
fn bad_fields_are_zero_and_counted_and_hide_nothing() {
    let redis = Redis::start();
    seed_example(&redis);
    redis.hset(
        "BADUSDT",
        &[
            ("harvest_action", "HOLD"),
            ("kill_score", "None"),
            ("k_regime_flip", ""),
            ("k_sigma_spike", "nan"),
            ("k_ts_drop", "inf"),
            ("k_age_penalty", "garbage"),
            ("new_sl_proposed", "1e309"),
            ("last_update_epoch", "yesterday"),
            ("sigma", "NaN"),
            ("cost_est", "1e-09"),
        ],
    );
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("four symbols", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(4.0)
    });
    promtool_check_metrics(&body);
    for name in [
        "kill_score",
        "k_regime_flip",
        "k_sigma_spike",
        "k_ts_drop",
        "k_age_penalty",
        "r_net",
        "new_sl",
        "last_update_epoch",
    ] {
        assert_eq!(sample(&body, &gauge(name, "BADUSDT")), Some(0.0), "{name}");
    }
    for field in [
        "kill_score",
        "k_regime_flip",
        "k_sigma_spike",
        "k_ts_drop",
        "k_age_penalty",
        "R_net",
        "new_sl_proposed",
        "last_update_epoch",
        "sigma",
    ] {
        let series = format!("quantum_harvest_exporter_parse_errors_total{{field=\"{field}\"}}");
        assert!(sample(&body, &series).unwrap() >= 1.0, "{field} counted");
    }
    assert_eq!(
        sample(&body, &gauge("sigma", "BADUSDT")),
        None,
        "invalid extras are left out"
    );
    assert_eq!(sample(&body, &gauge("cost_est", "BADUSDT")), Some(1e-9));
    assert_eq!(
        sample(&body, &action("BADUSDT", "HOLD")),
        Some(1.0),
        "unknown actions are shown"
    );
    for known in KNOWN_ACTIONS {
        assert_eq!(sample(&body, &action("BADUSDT", known)), Some(0.0));
    }
    assert_eq!(
        sample(&body, &gauge("kill_score", "ETHUSDT")),
        Some(0.753),
        "other symbols unaffected"
    );
}

#[test]
fn a_change_in_redis_shows_within_two_poll_intervals() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(
        &redis,
        &[
            "--harvest.symbols",
            "BTCUSDT,ETHUSDT,SOLUSDT",
            "--harvest.poll-interval",
            "1",
        ],
    );
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    redis.hset(
        "ETHUSDT",
        &[("kill_score", "0.912"), ("harvest_action", "PARTIAL_25")],
    );
    let started = std::time::Instant::now();
    // Two intervals plus a margin for a loaded machine; the poll loop itself has no slack to hide.
    let body = exporter.wait_metrics("the new kill score", Duration::from_secs(3), |b| {
        sample(b, &gauge("kill_score", "ETHUSDT")) == Some(0.912)
    });
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sample(&body, &action("ETHUSDT", "PARTIAL_25")), Some(1.0));
    assert_eq!(
        sample(&body, &action("ETHUSDT", "FULL_CLOSE_PROPOSED")),
        Some(0.0)
    );
}

#[test]
fn discovery_finds_new_symbols_and_drops_expired_ones() {
    let redis = Redis::start();
    redis.hset("BTCUSDT", &[("kill_score", "0.5")]);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("BTCUSDT", WAIT, |b| {
        sample(b, &gauge("kill_score", "BTCUSDT")).is_some()
    });

    redis.hset("XRPUSDT", &[("kill_score", "0.7")]);
    let body = exporter.wait_metrics("XRPUSDT, added later", WAIT, |b| {
        sample(b, &gauge("kill_score", "XRPUSDT")) == Some(0.7)
    });
    promtool_check_metrics(&body);

    redis.run(&["PEXPIRE", "quantum:harvest:proposal:BTCUSDT", "100"]);
    let body = exporter.wait_metrics("BTCUSDT to go once its key expired", WAIT, |b| {
        !b.contains("symbol=\"BTCUSDT\"")
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_missing"),
        Some(0.0)
    );
    promtool_check_metrics(&body);
}

#[test]
fn keys_that_are_not_proposals_are_counted_not_exported() {
    let redis = Redis::start();
    redis.hset("BTCUSDT", &[("kill_score", "0.5")]);
    redis.run(&["SET", "quantum:harvest:proposal:STRING", "x"]);
    redis.run(&["RPUSH", "quantum:harvest:proposal:LIST", "x"]);
    redis.run(&["HSET", "quantum:harvest:proposal:", "kill_score", "0.5"]);
    redis.run(&[
        "HSET",
        "quantum:harvest:proposal:BAD\nNAME",
        "kill_score",
        "0.5",
    ]);
    redis.run(&["HSET", "other:prefix:ETHUSDT", "kill_score", "0.5"]);
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("the first refresh", WAIT, redis_up);
    promtool_check_metrics(&body);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "quantum_harvest_exporter_symbols_dropped{reason=\"wrong_type\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &body,
            "quantum_harvest_exporter_symbols_dropped{reason=\"invalid_name\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn symbols_beyond_the_cap_are_dropped_and_counted() {
    let redis = Redis::start();
    for symbol in ["AAA", "BBB", "CCC", "DDD"] {
        redis.hset(symbol, &[("kill_score", "0.5")]);
    }
    let exporter = Exporter::start(&redis, &["--harvest.max-symbols", "3"]);
    let body = exporter.wait_metrics("the first refresh", WAIT, redis_up);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &body,
            "quantum_harvest_exporter_symbols_dropped{reason=\"cap\"}"
        ),
        Some(1.0)
    );
    assert!(!body.contains("symbol=\"DDD\""));
}

#[test]
fn a_configured_symbol_without_a_hash_is_missing_not_zero() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--harvest.symbols", "BTCUSDT,DOGEUSDT"]);
    let body = exporter.wait_metrics("the first refresh", WAIT, redis_up);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_missing"),
        Some(1.0)
    );
    assert!(
        body.lines()
            .filter(|l| l.contains("DOGEUSDT"))
            .all(|l| l.starts_with("quantum_harvest_exporter_symbol_missing{")),
        "no invented zeros for a missing symbol"
    );
    assert_eq!(
        sample(
            &body,
            "quantum_harvest_exporter_symbol_missing{symbol=\"DOGEUSDT\"}"
        ),
        Some(1.0),
        "the missing symbol is named"
    );
    assert!(!body.contains("ETHUSDT"), "only the configured symbols");
    // A data problem, not an unready process: another exporter of the same Redis would not
    // have the hash either, so a load balancer or Kubernetes must keep sending scrapes here.
    let ready = exporter.get("/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(
        ready.text().contains("data problems") && ready.text().contains("DOGEUSDT"),
        "{}",
        ready.text()
    );

    redis.hset("DOGEUSDT", &[("kill_score", "0.6")]);
    exporter.wait_metrics("DOGEUSDT to appear", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_missing") == Some(0.0)
    });
    assert_eq!(exporter.get("/ready").status, 200);
}

#[test]
fn redis_down_keeps_last_values_and_recovers_by_itself() {
    let mut redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--harvest.symbols", "BTCUSDT,ETHUSDT,SOLUSDT"]);
    let before = exporter.wait_metrics("the first refresh", WAIT, redis_up);

    redis.kill();
    let during = exporter.wait_metrics("redis_up 0", WAIT, |b| !redis_up(b));
    promtool_check_metrics(&during);
    for series in [
        gauge("kill_score", "ETHUSDT"),
        gauge("last_update_epoch", "ETHUSDT"),
        action("ETHUSDT", "FULL_CLOSE_PROPOSED"),
    ] {
        assert_eq!(
            sample(&during, &series),
            sample(&before, &series),
            "{series} kept"
        );
    }
    let errors: f64 = ["connect", "timeout", "command"]
        .iter()
        .filter_map(|kind| {
            sample(
                &during,
                &format!("quantum_harvest_exporter_refresh_errors_total{{kind=\"{kind}\"}}"),
            )
        })
        .sum();
    assert!(errors >= 1.0, "the failed refresh is counted");
    let ready = exporter.get("/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("redis unreachable"),
        "{}",
        ready.text()
    );
    assert_eq!(
        exporter.get("/health").status,
        200,
        "liveness does not depend on Redis"
    );
    let age = exporter.wait_metrics("the cache to age", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_cache_age_seconds").unwrap() >= 0.5
    });
    promtool_check_metrics(&age);

    // An empty Redis comes back on the same port: nothing is invented, symbols are missing.
    redis.restart();
    let after = exporter.wait_metrics("redis_up 1 again", WAIT, redis_up);
    assert_eq!(
        sample(&after, "quantum_harvest_exporter_symbols_missing"),
        Some(3.0)
    );
    assert!(!after.contains("quantum_harvest_kill_score{"), "{after}");
    assert!(exporter.log_text().contains("reachable again"));

    seed_example(&redis);
    let restored = exporter.wait_metrics("values to come back", WAIT, |b| {
        sample(b, &gauge("kill_score", "ETHUSDT")) == Some(0.753)
    });
    promtool_check_metrics(&restored);
    assert_eq!(exporter.get("/ready").status, 200);
}

#[test]
fn starts_without_redis_and_connects_when_it_appears() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let exporter = Exporter::start_raw(
        &["--redis.addr", &url, "--harvest.poll-interval", "0.2"],
        &[],
    );
    let body = exporter.metrics();
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(0.0)
    );
    assert_eq!(exporter.get("/ready").status, 503);
    assert!(
        exporter.log_text().contains("refresh failed"),
        "{}",
        exporter.log_text()
    );
    drop(exporter);
}

#[test]
fn gzip_is_one_member_with_the_same_metrics() {
    use std::io::Read as _;
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    let response = http_get(exporter.port, "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("vary"), Some("Accept, Accept-Encoding"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(response.body.as_slice())
        .read_to_string(&mut decoded)
        .expect("a single valid gzip member");
    promtool_check_metrics(&decoded);
    assert!(
        decoded.contains("quantum_harvest_exporter_cache_age_seconds "),
        "the scrape-time tail is inside"
    );
    assert_eq!(
        sample(&decoded, &gauge("kill_score", "ETHUSDT")),
        Some(0.753)
    );
    let plain = exporter.get("/metrics").text();
    let families = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(families(&decoded), families(&plain));
}

/// A body of more symbols than the exporter holds as text is held compressed; a scrape without
/// gzip gets it inflated, with its exact length announced, line for line the gzip body.
#[test]
fn a_large_body_scraped_without_gzip_is_inflated_whole() {
    let redis = Redis::start();
    let symbols: Vec<String> = (0..2_500).map(|i| format!("SYM{i:05}USDT")).collect();
    redis.fill(&symbols, &[("kill_score", "0.5"), ("R_net", "1.25")]);
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "300"]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    let plain = exporter.get("/metrics");
    let length: usize = plain.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, plain.body.len());
    let plain = plain.text();
    promtool_check_metrics(&plain);
    let gzip = http_get(exporter.port, "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(gzip.body.as_slice())
        .read_to_string(&mut decoded)
        .expect("a single valid gzip member");
    // The scrape-time tail differs from scrape to scrape; the proposals' lines do not.
    let proposals = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| l.contains("symbol=\""))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(proposals(&plain), proposals(&decoded));
    assert_eq!(
        sample(&plain, &gauge("kill_score", "SYM02499USDT")),
        Some(0.5)
    );
    let head = http_request(
        exporter.port,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let announced: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(head.body.is_empty());
    assert!(
        announced.abs_diff(length) < 200,
        "{announced} against {length}"
    );
    // More plain scrapes at once than the exporter inflates at once: each waits for its turn.
    let port = exporter.port;
    let scrapes: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || http_get(port, "/metrics", &[]).unwrap()))
        .collect();
    for scrape in scrapes {
        let reply = scrape.join().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(proposals(&reply.text()), proposals(&plain));
    }
}

/// What Prometheus 2.42 asks for: OpenMetrics first, then the text format.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const OPEN_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The series of a body, as names with labels.
fn series(body: &str) -> std::collections::BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

#[test]
fn openmetrics_when_asked_plain_and_gzip() {
    use common::exposition::check_open_metrics;
    use std::io::Read as _;
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    let text = exporter.metrics();

    let plain = http_get(exporter.port, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]).unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some(OPEN_METRICS));
    assert_eq!(plain.header("vary"), Some("Accept, Accept-Encoding"));
    let open_metrics = plain.text();
    let families = check_open_metrics(&open_metrics).unwrap_or_else(|e| panic!("{e}"));
    for expected in [
        "# TYPE quantum_harvest_exporter_refreshes counter\n",
        "# UNIT quantum_harvest_exporter_refresh_duration_seconds seconds\n",
        "# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n",
        "\nprocess_cpu_seconds_total ",
        "\nquantum_harvest_exporter_cache_age_seconds ",
    ] {
        assert!(open_metrics.contains(expected), "no {expected:?}");
    }
    assert!(open_metrics.ends_with("\n# EOF\n"));
    assert_eq!(
        sample(&open_metrics, &gauge("kill_score", "ETHUSDT")),
        Some(0.753)
    );
    // The same series under the same names in both formats; only the counters' families are
    // announced without `_total`.
    assert_eq!(series(&open_metrics), series(&text));
    let text_families: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let name = l.split(' ').next().unwrap();
            name.strip_suffix("_total").unwrap_or(name).to_owned()
        })
        .collect();
    assert_eq!(families, text_families);

    let gzip = http_get(
        exporter.port,
        "/metrics",
        &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")],
    )
    .unwrap();
    assert_eq!(gzip.header("content-type"), Some(OPEN_METRICS));
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(gzip.body.as_slice())
        .read_to_string(&mut decoded)
        .expect("a single valid gzip member");
    assert_eq!(
        check_open_metrics(&decoded).unwrap_or_else(|e| panic!("{e}")),
        families
    );
    assert_eq!(series(&decoded), series(&text));

    // The text format stays the default, and is what a client gets that asks for nothing else.
    for accept in [
        None,
        Some("text/plain"),
        Some("application/openmetrics-text;version=2.0.0"),
        Some("application/openmetrics-text;q=0.2,text/plain;version=0.0.4;q=0.5"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let response = http_get(exporter.port, "/metrics", &headers).unwrap();
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept:?}"
        );
        assert!(!response.text().contains("# EOF"));
    }
}

#[test]
fn http_endpoints_methods_and_errors() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);

    let health = exporter.get("/health");
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    let metrics = exporter.get("/metrics?name[]=x&debug=1");
    assert_eq!(metrics.status, 200, "any query string is accepted");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let landing = exporter.get("/");
    assert_eq!(landing.status, 200);
    for link in ["/metrics", "/health", "/ready"] {
        assert!(
            landing.text().contains(&format!("href=\"{link}\"")),
            "{link}"
        );
    }
    assert_eq!(exporter.get("/nope").status, 404);
    assert_eq!(exporter.get("/../../etc/passwd").status, 404);

    let head = http_request(
        exporter.port,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let request = format!(
            "{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let response = http_request(exporter.port, request.as_bytes()).unwrap();
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn stuck_clients_do_not_delay_scrapes_and_sigterm_is_prompt() {
    let redis = Redis::start();
    seed_example(&redis);
    let mut exporter = Exporter::start(&redis, &["--web.header-timeout", "1"]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);

    // One client sends half a request head and stalls; another asks and never reads.
    let mut stalled = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .unwrap();
    let mut idle_readers = Vec::new();
    for _ in 0..20 {
        let mut reader = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
        reader
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        idle_readers.push(reader);
    }
    for _ in 0..20 {
        exporter.metrics();
    }

    // The stalled head is cut off by the header timeout.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = Vec::new();
    let _ = stalled.read_to_end(&mut buffer);
    let text = String::from_utf8_lossy(&buffer);
    assert!(
        text.is_empty() || text.contains(" 408 "),
        "closed without a normal response: {text}"
    );

    let (took, status) = exporter.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");
    assert!(exporter.log_text().contains("shutting down"));
}

#[test]
fn the_seed_env_file_works_unchanged_with_windows_line_endings() {
    let redis = Redis::start();
    seed_example(&redis);
    let port = redis.port.to_string() + "\r";
    let exporter = Exporter::start_raw(
        &[],
        &[
            ("REDIS_HOST", "127.0.0.1\r"),
            ("REDIS_PORT", &port),
            ("REDIS_DB", "0\r"),
            ("SYMBOLS", "BTCUSDT, ETHUSDT ,SOLUSDT\r"),
            ("POLL_INTERVAL_SEC", "1\r"),
            ("LOG_LEVEL", "INFO\r"),
        ],
    );
    let body = exporter.wait_metrics("the first refresh", WAIT, redis_up);
    promtool_check_metrics(&body);
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(3.0)
    );
}

#[test]
fn redis_password_from_the_environment() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let wrong = Exporter::start_raw(
        &["--redis.addr", &url, "--harvest.poll-interval", "0.2"],
        &[("REDIS_PASSWORD", "wrong")],
    );
    let body = wrong.wait_metrics("a failed refresh", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_refreshes_total").unwrap_or(0.0) >= 1.0
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(0.0)
    );
    assert!(
        !wrong.log_text().contains("wrong"),
        "the password is never logged"
    );
    assert!(
        wrong.log_text().to_lowercase().contains("auth") || wrong.log_text().contains("WRONGPASS"),
        "{}",
        wrong.log_text()
    );

    let right = Exporter::start_raw(
        &["--redis.addr", &url, "--harvest.poll-interval", "0.2"],
        &[("REDIS_PASSWORD", "s3cret")],
    );
    right.wait_metrics("redis_up 1 with the right password", WAIT, redis_up);
}

/// An ACL user and a database other than 0 in the URL: the bulk reads' own connection signs in
/// and selects the database as the crate's connection does.
#[test]
fn an_acl_user_and_a_database_in_the_url() {
    let redis = Redis::start();
    redis.run(&[
        "ACL", "SETUSER", "harvest", "on", ">pw", "~*", "&*", "+@all",
    ]);
    let mut db2 = redis::Client::open(format!("redis://127.0.0.1:{}/2", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("HSET")
        .arg("quantum:harvest:proposal:DBTWOUSDT")
        .arg(&[("kill_score", "0.42")])
        .query::<()>(&mut db2)
        .unwrap();
    redis.hset("DBZEROUSDT", &[("kill_score", "0.5")]);
    // No one reads without signing in.
    redis.run(&["ACL", "SETUSER", "default", "resetpass", ">admin"]);
    let url = format!("redis://harvest:pw@127.0.0.1:{}/2", redis.port);
    let exporter = Exporter::start_raw(&["--redis.addr", &url], &[]);
    let body = exporter.wait_metrics("the symbol of database 2", WAIT, |b| {
        sample(b, "quantum_harvest_kill_score{symbol=\"DBTWOUSDT\"}") == Some(0.42)
    });
    assert_eq!(
        sample(&body, "quantum_harvest_kill_score{symbol=\"DBZEROUSDT\"}"),
        None
    );
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(1.0)
    );
}

#[test]
fn simulator_publishes_what_the_exporter_reads_cleanly() {
    let redis = Redis::start();
    let url = redis.url();
    run_exporter_ok(&[
        "--redis.addr",
        &url,
        "simulate",
        "--rounds",
        "2",
        "--interval",
        "0.1",
        "--seed",
        "7",
    ]);
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("three simulated symbols", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(3.0)
    });
    promtool_check_metrics(&body);
    let errors: f64 = body
        .lines()
        .filter(|l| l.starts_with("quantum_harvest_exporter_parse_errors_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        errors, 0.0,
        "the simulator writes what the publisher writes"
    );
    for family in [
        "position_current_price",
        "sigma",
        "data_age_seconds",
        "risk_unit",
    ] {
        assert!(
            body.contains(&format!("quantum_harvest_{family}{{symbol=\"BTCUSDT\"}}")),
            "{family}"
        );
    }
}

/// Calls of one command that redis-server has served, from `INFO commandstats`.
fn redis_calls(redis: &Redis, command: &str) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0.0, |calls| calls.parse().expect("a call count"))
}

#[test]
fn redis_cost_is_counted_and_matches_what_redis_served() {
    let redis = Redis::start();
    let symbols: Vec<String> = (0..1_200).map(|i| format!("S{i:04}USDT")).collect();
    redis.fill(&symbols, &[("kill_score", "0.5")]);
    let list = symbols.join(",");
    let cost = |body: &str| {
        (
            sample(body, "quantum_harvest_exporter_redis_commands_total").unwrap(),
            sample(body, "quantum_harvest_exporter_redis_round_trips_total").unwrap(),
        )
    };

    // One refresh only (a long poll interval), so the counters hold still to be compared.
    let listed = Exporter::start(
        &redis,
        &["--harvest.symbols", &list, "--harvest.poll-interval", "60"],
    );
    let body = listed.wait_metrics("the first refresh", WAIT, redis_up);
    promtool_check_metrics(&body);
    assert_eq!(
        cost(&body),
        (1_200.0, 2.0),
        "a listed set: one HMGET per symbol, pipelined 1,000 to a round trip"
    );
    assert_eq!(redis_calls(&redis, "hmget"), 1_200.0);
    drop(listed);

    let discovering = Exporter::start(&redis, &["--harvest.poll-interval", "60"]);
    let body = discovering.wait_metrics("the first refresh", WAIT, redis_up);
    let scans = redis_calls(&redis, "scan");
    assert!(scans >= 1.0);
    let (commands, round_trips) = cost(&body);
    assert_eq!(commands, scans + 1_200.0, "discovery adds its SCAN pages");
    // Each SCAN page travels with the HMGETs of the page before; the last page may come back
    // empty, and then nothing follows it.
    assert!(
        (2.0..=scans + 1.0).contains(&round_trips),
        "{round_trips} round trips for {scans} SCAN pages"
    );
    assert_eq!(redis_calls(&redis, "hmget"), 2_400.0);
}

#[test]
fn sigterm_during_a_refresh_exits_quietly() {
    let redis = Redis::start();
    let symbols: Vec<String> = (0..3_000).map(|i| format!("S{i:04}USDT")).collect();
    redis.fill(&symbols, &[("kill_score", "0.5")]);
    // Refreshes back to back, so that the signal most often lands in the middle of one. The race
    // this guards against (a refresh failing as the runtime dropped its connection, then a
    // panic publishing the failure) is rare: the loop makes it likelier, not certain.
    for _ in 0..5 {
        let mut exporter = Exporter::start(&redis, &["--harvest.poll-interval", "0.001"]);
        exporter.wait_metrics("the first refresh", WAIT, redis_up);
        let (_, status) = exporter.terminate();
        let log = exporter.log_text();
        assert!(status.success(), "clean exit on SIGTERM: {status}\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("refresh failed"), "{log}");
    }
}

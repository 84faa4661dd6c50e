//! Faults and abuse against a real redis-server and real TCP clients: Redis unreachable, slow,
//! protected, over TLS, churning or flooding keys; hostile field values and symbol names; idle,
//! slow, non-reading and oversized HTTP clients. Each test adds its row to docs/reliability.md.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

fn counter(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or_else(|| panic!("{series} missing"))
}

/// The seed example's values that must survive any fault, as (series, value) pairs.
fn seed_values(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| {
            l.starts_with("quantum_harvest_") && !l.starts_with("quantum_harvest_exporter_")
        })
        .filter(|l| !l.starts_with("quantum_harvest_data_age_seconds"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// How many of `expected` are absent or changed in `body`.
fn values_lost(expected: &[(String, f64)], body: &str) -> usize {
    expected
        .iter()
        .filter(|(series, value)| sample(body, series) != Some(*value))
        .count()
}

/// Scrapes `count` times and returns the slowest scrape.
fn slowest_of(exporter: &Exporter, count: usize) -> Duration {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(exporter.get("/metrics").status, 200);
            started.elapsed()
        })
        .max()
        .unwrap_or_default()
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

#[test]
fn redis_unreachable_at_start_up_then_appearing() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let exporter = Exporter::start_raw(&["--redis.addr", &url], &[("POLL_INTERVAL_SEC", "0.2")]);
    let body = exporter.metrics();
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(0.0)
    );
    assert!(
        !body.contains("quantum_harvest_kill_score{"),
        "nothing fabricated"
    );
    let ready = exporter.get("/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("redis unreachable"),
        "{}",
        ready.text()
    );

    let redis = Redis::start_on(port, Vec::new());
    seed_example(&redis);
    let started = Instant::now();
    let body = exporter.wait_metrics("the exporter to connect by itself", WAIT, |b| {
        kill_score(b, "ETHUSDT").is_some()
    });
    promtool_check_metrics(&body);
    report(
        "Redis unreachable at start-up",
        "started the exporter with nothing on the Redis port, then started Redis there",
        "served redis_up 0 and /ready 503 with the reason, no invented values; connected by itself",
        "",
    );
    measured(
        "Redis unreachable at start-up",
        &format!("values after Redis appeared: {}", ms(started.elapsed())),
    );
}

#[test]
fn redis_killed_restarted_and_replaced_by_an_empty_one() {
    let mut redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    let before = exporter.wait_metrics("the first refresh", WAIT, |b| {
        kill_score(b, "SOLUSDT").is_some()
    });
    let expected = seed_values(&before);

    redis.kill();
    let during = exporter.wait_metrics("redis_up 0", WAIT, |b| !redis_up(b));
    promtool_check_metrics(&during);
    assert_eq!(
        values_lost(&expected, &during),
        0,
        "last known values kept, timestamps included"
    );
    let slowest = slowest_of(&exporter, 20);
    assert_eq!(exporter.get("/ready").status, 503);

    redis.restart();
    let empty = exporter.wait_metrics("the empty Redis to be read", WAIT, redis_up);
    assert!(
        !empty.contains("quantum_harvest_kill_score{"),
        "an empty Redis means no proposals, not zeros"
    );
    seed_example(&redis);
    let after = exporter.wait_metrics("values to come back", WAIT, |b| {
        kill_score(b, "SOLUSDT").is_some()
    });
    assert_eq!(values_lost(&expected, &after), 0);
    report(
        "Redis killed, then an empty Redis on the same port",
        "killed redis-server, scraped 20 times, started an empty one, then rewrote the data",
        "kept the last values with their timestamps and redis_up 0 while down; exported nothing from the empty Redis; values back when rewritten",
        "values lost: 0",
    );
    measured(
        "Redis killed, then an empty Redis on the same port",
        &format!("slowest scrape while down: {}", ms(slowest)),
    );
}

/// Blocks Redis with `command` on a second connection while the exporter keeps polling.
fn slow_redis(command: &[&str], case: &str) {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--redis.timeout", "0.3"]);
    let before = exporter.wait_metrics("the first refresh", WAIT, |b| {
        kill_score(b, "ETHUSDT").is_some()
    });
    let expected = seed_values(&before);
    let refreshes_before = counter(&before, "quantum_harvest_exporter_refreshes_total");

    let url = redis.url();
    let args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let blocker = std::thread::spawn(move || {
        let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: redis::RedisResult<redis::Value> =
            redis::cmd(&args[0]).arg(&args[1..]).query(&mut connection);
    });
    let stalled = exporter.wait_metrics("a timed-out refresh", WAIT, |b| !redis_up(b));
    let slowest = slowest_of(&exporter, 30);
    assert_eq!(values_lost(&expected, &stalled), 0);
    blocker.join().unwrap();
    let after = exporter.wait_metrics("Redis to answer again", WAIT, redis_up);
    let timeouts = counter(
        &after,
        "quantum_harvest_exporter_refresh_errors_total{kind=\"timeout\"}",
    );
    assert!(timeouts >= 1.0, "the timeout is counted");
    // One loop refreshes at a time: over a 2 s stall, a 0.3 s timeout and 0.2 s interval allow
    // at most a handful of attempts; overlapping refreshes would show many more.
    let stall_refreshes =
        counter(&after, "quantum_harvest_exporter_refreshes_total") - refreshes_before;
    assert!(
        stall_refreshes < 20.0,
        "{stall_refreshes} refreshes during the stall"
    );
    assert_eq!(values_lost(&expected, &after), 0);
    report(
        case,
        &format!(
            "ran `{}` on Redis for 2 s with --redis.timeout 0.3, scraped 30 times",
            command.join(" ")
        ),
        "scrapes answered from the cache; refreshes timed out one at a time, counted as kind=\"timeout\"; recovered by itself",
        "values lost: 0",
    );
    measured(
        case,
        &format!(
            "slowest scrape: {}; timeouts counted: {timeouts}",
            ms(slowest)
        ),
    );
}

#[test]
fn redis_blocked_by_debug_sleep() {
    slow_redis(&["DEBUG", "SLEEP", "2"], "Redis blocked (DEBUG SLEEP)");
}

#[test]
fn redis_paused_by_client_pause() {
    slow_redis(
        &["CLIENT", "PAUSE", "2000", "ALL"],
        "Redis paused (CLIENT PAUSE)",
    );
}

#[test]
fn redis_acl_user_with_least_privilege() {
    let redis = Redis::start();
    seed_example(&redis);
    redis.acl_user("harvest", "exporter-pw", &[HASH_ACL, STREAM_ACL]);
    let url = format!("redis://harvest:exporter-pw@127.0.0.1:{}/0", redis.port);
    let exporter = Exporter::start_raw(&["--redis.addr", &url], &[("POLL_INTERVAL_SEC", "0.2")]);
    let body = exporter.wait_metrics("values read as the ACL user", WAIT, |b| {
        kill_score(b, "ETHUSDT").is_some() && sample(b, "quantum_apply_streams_up") == Some(1.0)
    });
    promtool_check_metrics(&body);
    assert!(
        !exporter.log_text().contains("exporter-pw"),
        "the password is never logged"
    );

    let wrong = format!("redis://harvest:nope@127.0.0.1:{}/0", redis.port);
    let denied = Exporter::start_raw(&["--redis.addr", &wrong], &[("POLL_INTERVAL_SEC", "0.2")]);
    let body = denied.wait_metrics("a failed refresh", WAIT, |b| {
        sample(
            b,
            "quantum_harvest_exporter_refresh_errors_total{kind=\"connect\"}",
        )
        .unwrap_or(0.0)
            >= 2.0
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(0.0)
    );
    // One clear line from each reader of Redis (the refresh loop, the stream follower), not
    // one per retry.
    let log = denied.log_text();
    let warnings = log.lines().filter(|l| l.contains("level=WARN")).count();
    assert_eq!(
        warnings, 2,
        "one line per reader, not one per retry:\n{log}"
    );
    assert!(!log.contains("nope"), "the password is never logged");
    report(
        "Redis ACL user, right and wrong password",
        "ACL user limited to SCAN and HMGET on the prefix; then the same user with a wrong password",
        "read everything with least privilege; with a wrong password: redis_up 0, one warning naming the cause, kept running and retrying",
        "passwords in logs: 0",
    );
}

#[test]
fn redis_over_tls_with_a_ca_file() {
    let certs = Certs::new();
    let redis = Redis::start_tls(&certs);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let ca = certs.ca.to_string_lossy().into_owned();
    run_exporter_ok(&[
        "--redis.addr",
        &url,
        "--redis.tls-ca-file",
        &ca,
        "simulate",
        "--rounds",
        "1",
    ]);

    let exporter = Exporter::start_raw(
        &["--redis.addr", &url, "--redis.tls-ca-file", &ca],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let body = exporter.wait_metrics("values over TLS", WAIT, |b| {
        kill_score(b, "BTCUSDT").is_some()
    });
    promtool_check_metrics(&body);

    let untrusted = Exporter::start_raw(&["--redis.addr", &url], &[("POLL_INTERVAL_SEC", "0.2")]);
    let body = untrusted.wait_metrics("a refused certificate", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_refreshes_total").unwrap_or(0.0) >= 1.0
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_up"),
        Some(0.0),
        "an unknown CA is refused"
    );
    assert!(
        untrusted.log_text().to_lowercase().contains("certificate"),
        "{}",
        untrusted.log_text()
    );
    report(
        "Redis over TLS (rediss://)",
        "redis-server with only a TLS port and a private CA; exporter with and without --redis.tls-ca-file",
        "read the data with the CA file; without it refused the certificate, said so, and exported nothing",
        "values read over TLS: all",
    );
}

#[test]
fn keys_deleted_and_recreated_during_refreshes() {
    let redis = Redis::start();
    let symbols: Vec<String> = (0..2_000).map(|i| format!("SYM{i:05}")).collect();
    redis.fill(&symbols, &[("kill_score", "0.5")]);
    let mut connection = redis.connection();
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "0.05"]);
    exporter.wait_metrics("2,000 symbols", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(2000.0)
    });

    let deadline = Instant::now() + Duration::from_secs(2);
    let mut rng = 12_345u64;
    let mut churned = 0;
    let mut scrapes = 0;
    while Instant::now() < deadline {
        let mut pipe = redis::pipe();
        for _ in 0..50 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("{PREFIX}{}", symbols[(rng >> 33) as usize % symbols.len()]);
            if rng & 1 == 0 {
                pipe.del(&key).ignore();
            } else {
                pipe.pexpire(&key, 30).ignore();
            }
        }
        pipe.query::<()>(&mut connection).unwrap();
        churned += 50;
        let body = exporter.get("/metrics").text();
        assert!(redis_up(&body), "churn is not an error");
        if scrapes % 10 == 0 {
            promtool_check_metrics(&body);
        }
        scrapes += 1;
    }
    let body = exporter.metrics();
    let errors: f64 = ["connect", "timeout", "command"]
        .iter()
        .map(|kind| {
            counter(
                &body,
                &format!("quantum_harvest_exporter_refresh_errors_total{{kind=\"{kind}\"}}"),
            )
        })
        .sum();
    assert_eq!(errors, 0.0);
    report(
        "Keys deleted or expiring mid-refresh",
        "2,000 symbols, deleted and expiring in 30 ms over 2 s while refreshing every 50 ms",
        "every scrape valid; vanished keys simply left the output; no refresh error",
        "refresh errors: 0",
    );
    measured(
        "Keys deleted or expiring mid-refresh",
        &format!("{churned} deletes; scrapes checked: {scrapes}"),
    );
}

#[test]
fn ten_thousand_keys_appearing_at_once() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the seed example", WAIT, |b| {
        kill_score(b, "ETHUSDT").is_some()
    });
    let mut connection = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.hset_multiple(
            format!("{PREFIX}FLOOD{i:05}"),
            &[
                ("kill_score", "0.61"),
                ("harvest_action", "PARTIAL_25"),
                ("last_update_epoch", "1769130500"),
            ],
        )
        .ignore();
    }
    let started = Instant::now();
    pipe.query::<()>(&mut connection).unwrap();
    let body = exporter.wait_metrics("10,003 symbols", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(10_000.0)
    });
    let took = started.elapsed();
    promtool_check_metrics(&body);
    assert_eq!(
        counter(
            &body,
            "quantum_harvest_exporter_symbols_dropped{reason=\"cap\"}"
        ),
        3.0,
        "the default cap of 10,000"
    );
    let refresh = counter(&body, "quantum_harvest_exporter_refresh_duration_seconds");
    report(
        "10,000 keys appearing at once",
        "wrote 10,000 proposal hashes in one pipeline next to 3 existing ones (default cap 10,000)",
        "exported 10,000, dropped 3 by the cap and counted them; output valid",
        "exported: 10,000; dropped: 3",
    );
    measured(
        "10,000 keys appearing at once",
        &format!(
            "all visible after {}; refresh {} (debug build); body {} KiB",
            ms(took),
            ms(Duration::from_secs_f64(refresh)),
            body.len() / 1024
        ),
    );
}

#[test]
fn hostile_values_and_symbol_names() {
    let redis = Redis::start();
    seed_example(&redis);
    let mut connection = redis.connection();
    let huge = vec![b'9'; 1 << 20];
    let values: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        huge.clone(),
        vec![0, 159, 146, 150, 0xff],
        b"\"}\n# HELP x y\n".to_vec(),
        b"\\".to_vec(),
        b"{}=,".to_vec(),
        "κ≈0.9 🚀".as_bytes().to_vec(),
        b"1e309".to_vec(),
        b"-0".to_vec(),
        b"0x10".to_vec(),
        b"NaN".to_vec(),
    ];
    let symbols: Vec<Vec<u8>> = vec![
        b"QUOTE\"D".to_vec(),
        b"BACK\\SLASH".to_vec(),
        b"BRACE{}=,".to_vec(),
        "ÜNÏCØDÉ🚀".as_bytes().to_vec(),
        b"NEW\nLINE".to_vec(),
        vec![b'L'; 1 << 20],
        vec![0xff, 0xfe, b'X'],
        b"<script>alert(1)</script>".to_vec(),
    ];
    for (i, symbol) in symbols.iter().enumerate() {
        let mut key = PREFIX.as_bytes().to_vec();
        key.extend_from_slice(symbol);
        let mut command = redis::cmd("HSET");
        command.arg(&key);
        for (j, field) in [
            "kill_score",
            "harvest_action",
            "R_net",
            "new_sl_proposed",
            "last_update_epoch",
            "computed_at_utc",
            "sigma",
            "action",
        ]
        .iter()
        .enumerate()
        {
            command.arg(*field).arg(&values[(i + j) % values.len()]);
        }
        command
            .arg("calibrated")
            .arg("1")
            .query::<()>(&mut connection)
            .unwrap();
    }
    let before = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.wait_metrics("the hostile hashes", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported").is_some_and(|n| n >= 8.0)
    });
    drop(before);
    promtool_check_metrics(&body);
    let longest_label = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split("=\"").skip(1).map(|v| v.len()))
        .max()
        .unwrap_or(0);
    assert!(
        longest_label < 200,
        "label values are bounded: {longest_label}"
    );
    assert!(
        body.len() < 64 * 1024,
        "the output stays small: {} bytes",
        body.len()
    );
    assert_eq!(
        kill_score(&body, "ETHUSDT"),
        Some(0.753),
        "ordinary symbols are unaffected"
    );
    assert!(body.contains(r#"symbol="QUOTE\"D""#));
    assert!(body.contains(r#"symbol="BACK\\SLASH""#));
    assert!(body.contains("symbol=\"ÜNÏCØDÉ🚀\""));
    assert_eq!(
        counter(
            &body,
            "quantum_harvest_exporter_symbols_dropped{reason=\"invalid_name\"}"
        ),
        3.0
    );
    report(
        "Hostile field values and symbol names",
        "hashes with empty, 1 MiB, binary, invalid UTF-8, quote, backslash, newline, {}=, unicode, 1e309, -0, 0x10 and NaN values, under symbols with the same characters, a 1 MiB name and invalid UTF-8",
        "output valid for promtool; bad values exported as 0 and counted; unusable names (newline, 1 MiB, invalid UTF-8) dropped and counted; other symbols unaffected",
        &format!("longest label value: {longest_label} bytes"),
    );
    measured(
        "Hostile field values and symbol names",
        &format!("body {} bytes", body.len()),
    );
}

/// Opens `count` connections that send nothing.
fn idle_connections(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

#[test]
fn idle_and_slowloris_connections_do_not_keep_a_scrape_out() {
    let redis = Redis::start();
    seed_example(&redis);
    // A header timeout longer than the test, so that only eviction makes room.
    let exporter = Exporter::start(
        &redis,
        &["--web.max-connections", "512", "--web.header-timeout", "30"],
    );
    exporter.wait_metrics("the first refresh", WAIT, redis_up);

    let idle = idle_connections(exporter.port, 1_000);
    let mut slowloris: Vec<TcpStream> = idle_connections(exporter.port, 50);
    let attackers = idle.len() + slowloris.len();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut scrapes = 0;
    // A valid request head, sent a byte per round, too long to finish within the test.
    let head = [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "[..],
        &[b'a'; 4096],
    ]
    .concat();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(2) {
        // The last byte is never sent, so no head is ever complete.
        if sent + 1 < head.len() {
            for stream in slowloris.iter_mut() {
                let _ = stream.write_all(&head[sent..=sent]);
            }
            sent += 1;
        }
        let scrape = Instant::now();
        let body = exporter.get("/metrics").text();
        slowest = slowest.max(scrape.elapsed());
        assert!(kill_score(&body, "ETHUSDT").is_some());
        scrapes += 1;
    }
    // Connections are accepted in order, so every attacker was accepted before this scrape.
    let body = exporter.metrics();
    let open = counter(&body, "quantum_harvest_exporter_http_connections_open");
    let evicted = counter(
        &body,
        "quantum_harvest_exporter_http_connections_evicted_total",
    );
    assert!(open <= 513.0, "the cap holds: {open}");
    assert!(
        evicted >= (attackers - 512) as f64,
        "idle connections made room: {evicted} of {attackers}"
    );

    drop((idle, slowloris));
    let freed = exporter.wait_metrics("the closed connections to be released", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_http_connections_open") == Some(1.0)
    });
    promtool_check_metrics(&freed);
    report(
        "1,000 idle and 50 slowloris connections",
        "opened 1,050 connections that send nothing or a byte at a time (cap 512), scraping meanwhile for 2 s",
        "every scrape answered; the oldest connections still waiting for a request were closed to make room; all released when the clients left",
        "open during the attack: at most the cap, 512",
    );
    measured(
        "1,000 idle and 50 slowloris connections",
        &format!(
            "scrapes: {scrapes}; slowest: {}; open during the attack: {open}; evicted: {evicted}",
            ms(slowest)
        ),
    );
}

#[test]
fn a_client_that_never_reads_is_cut_off() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--web.write-timeout", "1"]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);

    // Pipelined requests whose answers (several MB) fill every buffer while nobody reads.
    let mut greedy = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = greedy.write_all(&request);
    let slowest = slowest_of(&exporter, 20);
    let body = exporter.wait_metrics("the stuck connection to be closed", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_http_connections_open") == Some(1.0)
    });
    promtool_check_metrics(&body);
    report(
        "A client that never reads",
        "sent 2,000 pipelined /metrics requests without reading (--web.write-timeout 1)",
        "other scrapes answered meanwhile; the stuck connection was closed once its response stopped moving",
        "",
    );
    measured(
        "A client that never reads",
        &format!("slowest other scrape: {}", ms(slowest)),
    );
}

#[test]
fn oversized_odd_and_hostile_requests_get_clear_4xx() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the first refresh", WAIT, redis_up);
    let status_of = |request: Vec<u8>| -> u16 {
        match http_request(exporter.port, &request) {
            Ok(response) => {
                let text = String::from_utf8_lossy(&response.body);
                assert!(
                    !text.contains("root:") && !text.contains("[package]"),
                    "nothing else exposed"
                );
                response.status
            }
            Err(_) => 0,
        }
    };
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };

    let big_header = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    )
    .into_bytes();
    let long_uri = get(&format!("/metrics?{}", "q".repeat(64 * 1024)));
    let mut cases = vec![
        ("64 KiB header", status_of(big_header)),
        ("64 KiB URI", status_of(long_uri)),
    ];
    for method in ["PROPFIND", "BREW", "TRACE", "CONNECT"] {
        let request = format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .into_bytes();
        cases.push((method, status_of(request)));
    }
    for path in [
        "/../../etc/passwd",
        "/metrics/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/Cargo.toml",
        "/metrics%00",
    ] {
        cases.push((path, status_of(get(path))));
    }
    cases.push((
        "garbage request line",
        status_of(b"\x00\x01\x02 nonsense\r\n\r\n".to_vec()),
    ));
    for (case, status) in &cases {
        assert!((400..500).contains(status), "{case}: {status}");
    }
    let body = exporter.metrics();
    assert_eq!(kill_score(&body, "ETHUSDT"), Some(0.753), "still serving");
    let summary: Vec<String> = cases
        .iter()
        .map(|(case, status)| format!("{case} {status}"))
        .collect();
    report(
        "Oversized, odd and path-traversal requests",
        "64 KiB header and URI, unknown and dangerous methods, traversal paths, a garbage request line",
        "a 4xx for each, no file or other content exposed, the exporter kept serving",
        &summary.join("; "),
    );
}

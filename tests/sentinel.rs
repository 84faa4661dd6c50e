//! The exporter against a real Redis Sentinel deployment (one primary, two replicas, three
//! sentinels): it follows a failover and then the loss of the new primary while scraped every
//! 100 ms, reads replicas by policy, and meets the single-Redis faults through the sentinels.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::exposition::check_exposition;
use common::topology::{MASTER_NAME, SentinelOptions, Sentinels, TlsFiles};
use common::{
    Certs, Exporter, PREFIX, Scraper, command_calls, measured, report, sample, unix_now, wait_for,
};

const SYMBOLS: usize = 1_000;
const R_NET: &str = "quantum_harvest_r_net{symbol=\"";

fn symbols() -> Vec<String> {
    (0..SYMBOLS).map(|i| format!("S{i:04}USDT")).collect()
}

/// Writes generation `generation` as every symbol's R_net on `port`, and returns once every
/// connected replica has it, so that a failover can lose no acknowledged write.
fn write_generation(sentinels: &Sentinels, port: u16, generation: u64) -> redis::RedisResult<()> {
    let mut connection = sentinels.connection_to(port);
    let replication: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut connection)?;
    let replicas: u64 = replication
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:")?.parse().ok())
        .unwrap_or(0);
    let mut pipe = redis::pipe();
    for symbol in symbols() {
        pipe.cmd("HSET")
            .arg(format!("{PREFIX}{symbol}"))
            .arg("kill_score")
            .arg("0.5")
            .arg("R_net")
            .arg(generation)
            .ignore();
    }
    pipe.cmd("WAIT").arg(replicas).arg(1_500).ignore();
    pipe.query(&mut connection)
}

fn exporter_for(sentinels: &Sentinels, extra_env: &[(&str, &str)]) -> Exporter {
    let list = sentinels.sentinel_list();
    let mut env = vec![
        ("REDIS_SENTINELS", list.as_str()),
        ("REDIS_SENTINEL_MASTER", MASTER_NAME),
        ("POLL_INTERVAL_SEC", "0.5"),
        ("REDIS_TIMEOUT_SEC", "1"),
        ("REDIS_CONNECT_TIMEOUT_SEC", "1"),
    ];
    env.extend_from_slice(extra_env);
    Exporter::start_raw(&["--web.listen-address", "127.0.0.1"], &env)
}

/// The node the exporter says it reads, as `addr` of its node_info series.
fn node_read(body: &str) -> Option<String> {
    let line = body
        .lines()
        .find(|l| l.starts_with("quantum_harvest_exporter_redis_node_info{"))?;
    let start = line.find("addr=\"")? + 6;
    Some(line[start..].split('"').next()?.to_owned())
}

/// One scrape's reading: R_net by symbol and the exporter's own view.
struct Scrape {
    at: Instant,
    r_net: HashMap<String, f64>,
    redis_up: bool,
    last_success: f64,
    node: Option<String>,
}

#[test]
fn failover_then_the_new_primary_killed_while_scraped_every_100_ms() {
    let mut sentinels = Sentinels::start();
    let first = sentinels.primary_port();
    write_generation(&sentinels, first, 1).unwrap();
    let exporter = exporter_for(&sentinels, &[]);
    exporter.wait_metrics("1,000 symbols", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(SYMBOLS as f64)
    });
    exporter.metrics();

    // The scraper checks every scrape as it comes; the main thread makes the failovers.
    let port = exporter.port;
    let scraper = Scraper::start(Duration::from_secs(120), move || scrape_port(port));
    let generation = AtomicU64::new(1);
    let write = |sentinels: &Sentinels, port: u16| {
        let next = generation.load(Ordering::Relaxed) + 1;
        write_generation(sentinels, port, next).unwrap();
        generation.store(next, Ordering::Relaxed);
    };
    write(&sentinels, first);

    let failover_started = Instant::now();
    let second = sentinels.failover();
    let to_second = wait_reading(&exporter, second, failover_started);
    write(&sentinels, second);
    wait_generation(&exporter, generation.load(Ordering::Relaxed));

    let kill_started = Instant::now();
    sentinels.kill_node(second);
    let third = sentinels.wait_new_primary(second, Duration::from_secs(60));
    let to_third = wait_reading(&exporter, third, kill_started);
    write(&sentinels, third);
    wait_generation(&exporter, generation.load(Ordering::Relaxed));

    let scrapes: Vec<Scrape> = scraper
        .stop()
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("an invalid scrape: {e}"));
    let mut highest: HashMap<&str, f64> = HashMap::new();
    let mut saw_down = false;
    for scrape in &scrapes {
        assert_eq!(scrape.r_net.len(), SYMBOLS, "every scrape has every symbol");
        for (symbol, value) in &scrape.r_net {
            let high = highest.entry(symbol).or_insert(*value);
            assert!(
                *value >= *high,
                "{symbol} went back from generation {high} to {value}"
            );
            *high = *value;
        }
        // redis_up 1 means the last read just succeeded; 0 must come while no primary answers.
        if scrape.redis_up {
            let age = unix_now() - scrape.last_success - scrape.at.elapsed().as_secs_f64();
            assert!(age < 3.0, "redis_up 1 with data {age:.1} s old");
        } else {
            saw_down = true;
        }
        assert!(scrape.node.is_some());
    }
    assert!(
        saw_down,
        "the killed primary must show as redis_up 0 for a while"
    );
    // No write lost: the last one is what every symbol shows now.
    let last = scrape_port(exporter.port).unwrap();
    let final_generation = generation.load(Ordering::Relaxed) as f64;
    assert_eq!(last.r_net.len(), SYMBOLS);
    assert!(last.r_net.values().all(|v| *v == final_generation));
    let body = exporter.metrics();
    // Two failovers, or more: a sentinel that has not yet heard of the first one can name the
    // old primary for a moment (it stays a writable primary until the sentinels demote it),
    // and each change of the address read is counted.
    let failovers = sample(&body, "quantum_harvest_exporter_redis_failovers_total").unwrap();
    assert!(failovers >= 2.0, "{failovers} failovers counted");
    report(
        "Sentinel failover",
        "1,000 symbols; SENTINEL FAILOVER, then the new primary SIGKILLed; scraped every 100 ms",
        "every scrape valid, none lost a symbol or went back to an older write; redis_up 0 only while no primary answered",
        "",
    );
    measured(
        "Sentinel failover",
        &format!(
            "{} scrapes; reading the new primary {:.1} s after the failover began, {:.1} s after the kill",
            scrapes.len(),
            to_second.as_secs_f64(),
            to_third.as_secs_f64()
        ),
    );
}

fn scrape_port(port: u16) -> Result<Scrape, String> {
    let response = common::http_get(port, "/metrics", &[]).map_err(|e| e.to_string())?;
    let body = response.text();
    check_exposition(&body)?;
    let r_net = body
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(R_NET)?;
            let (symbol, value) = rest.split_once("\"} ")?;
            Some((symbol.to_owned(), value.parse().ok()?))
        })
        .collect();
    Ok(Scrape {
        at: Instant::now(),
        r_net,
        redis_up: sample(&body, "quantum_harvest_exporter_redis_up") == Some(1.0),
        last_success: sample(
            &body,
            "quantum_harvest_exporter_last_success_timestamp_seconds",
        )
        .unwrap_or(0.0),
        node: node_read(&body),
    })
}

/// Waits until the exporter reads the node on `port` and says Redis is up; returns how long
/// that took from `since`.
fn wait_reading(exporter: &Exporter, port: u16, since: Instant) -> Duration {
    let addr = format!("127.0.0.1:{port}");
    exporter.wait_metrics(
        &format!("the exporter to read {addr}"),
        Duration::from_secs(30),
        |body| {
            node_read(body).as_deref() == Some(addr.as_str())
                && sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
        },
    );
    since.elapsed()
}

/// Waits until every symbol shows `generation`.
fn wait_generation(exporter: &Exporter, generation: u64) {
    wait_for(
        &format!("generation {generation} exported"),
        Duration::from_secs(10),
        || {
            let scrape = scrape_port(exporter.port).ok()?;
            (scrape.r_net.len() == SYMBOLS
                && scrape.r_net.values().all(|v| *v == generation as f64))
            .then_some(())
        },
    );
}

#[test]
fn replicas_are_read_by_policy_and_their_lag_exported() {
    let mut sentinels = Sentinels::start();
    let primary = sentinels.primary_port();
    write_generation(&sentinels, primary, 1).unwrap();
    let exporter = exporter_for(&sentinels, &[("REDIS_READ_FROM", "replica")]);
    let body = exporter.wait_metrics("a replica read", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(SYMBOLS as f64)
    });
    let replica = node_read(&body).unwrap();
    assert_ne!(replica, format!("127.0.0.1:{primary}"));
    assert!(body.contains("role=\"replica\""));
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_replica_link_up"),
        Some(1.0)
    );
    assert!(sample(&body, "quantum_harvest_exporter_redis_replica_lag_seconds").unwrap() < 15.0);
    exporter.metrics();
    // The primary serves none of the exporter's reads.
    assert_eq!(
        command_calls(&mut sentinels.connection_to(primary), "hmget"),
        0,
        "replica reads must not touch the primary"
    );

    // With prefer-replica, no healthy replica means reading the primary; with replica, failing.
    let preferring = exporter_for(&sentinels, &[("REDIS_READ_FROM", "prefer-replica")]);
    preferring.wait_metrics("a replica read", Duration::from_secs(20), |body| {
        body.contains("role=\"replica\"")
    });
    let replicas: Vec<u16> = sentinels
        .node_ports()
        .into_iter()
        .filter(|port| *port != primary)
        .collect();
    for port in &replicas {
        sentinels.kill_node(*port);
    }
    let primary_addr = format!("127.0.0.1:{primary}");
    preferring.wait_metrics("the primary read", Duration::from_secs(30), |body| {
        node_read(body).as_deref() == Some(primary_addr.as_str())
            && sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
    });
    exporter.wait_metrics(
        "replica-only reads failing",
        Duration::from_secs(30),
        |body| {
            sample(body, "quantum_harvest_exporter_redis_up") == Some(0.0)
                && sample(body, "quantum_harvest_exporter_symbols_exported") == Some(SYMBOLS as f64)
        },
    );
    wait_for(
        "the no-replica error logged",
        Duration::from_secs(10),
        || {
            exporter
                .log_text()
                .contains("no healthy replica")
                .then_some(())
        },
    );
    report(
        "Replica reads",
        "REDIS_READ_FROM=replica and prefer-replica through sentinels; then both replicas killed",
        "replica read (the primary saw no HMGET), its link and lag exported; prefer-replica moved to the primary, replica kept the last values with redis_up 0",
        "0 HMGETs on the primary",
    );
}

#[test]
fn sentinel_faults_a_paused_primary_a_dead_sentinel_and_wrong_passwords() {
    let mut sentinels = Sentinels::start_with(SentinelOptions {
        data_password: Some("data-secret".into()),
        sentinel_password: Some("sentinel-secret".into()),
        ..SentinelOptions::default()
    });
    let primary = sentinels.primary_port();
    let mut connection = sentinels.connection_to(primary);
    redis::cmd("HSET")
        .arg(format!("{PREFIX}BTCUSDT"))
        .arg("kill_score")
        .arg("0.5")
        .query::<()>(&mut connection)
        .unwrap();

    // Wrong data password: up, serving nothing, saying why.
    let wrong = exporter_for(
        &sentinels,
        &[
            ("REDIS_PASSWORD", "wrong"),
            ("REDIS_SENTINEL_PASSWORD", "sentinel-secret"),
        ],
    );
    // Wrong sentinel password: the sentinels cannot be asked.
    let no_sentinel = exporter_for(
        &sentinels,
        &[
            ("REDIS_PASSWORD", "data-secret"),
            ("REDIS_SENTINEL_PASSWORD", "wrong"),
        ],
    );
    let good = exporter_for(
        &sentinels,
        &[
            ("REDIS_PASSWORD", "data-secret"),
            ("REDIS_SENTINEL_PASSWORD", "sentinel-secret"),
        ],
    );
    good.wait_metrics("the symbol read", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(1.0)
    });
    for exporter in [&wrong, &no_sentinel] {
        exporter.wait_refused();
        exporter.metrics();
    }

    // One sentinel gone: the others answer.
    sentinels.kill_sentinel(0);
    redis::cmd("HSET")
        .arg(format!("{PREFIX}ETHUSDT"))
        .arg("kill_score")
        .arg("0.7")
        .query::<()>(&mut connection)
        .unwrap();
    good.wait_metrics(
        "a read with a sentinel down",
        Duration::from_secs(20),
        |body| sample(body, "quantum_harvest_exporter_symbols_exported") == Some(2.0),
    );

    // A paused primary: reads time out and the last values stay, until the sentinels fail it
    // over (it is silent past down-after) or it resumes.
    sentinels.pause_node(primary);
    let paused = Instant::now();
    let body = good.wait_metrics("a timeout", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_redis_up") == Some(0.0)
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(2.0)
    );
    let noticed = paused.elapsed();
    sentinels.resume_node(primary);
    good.wait_metrics("reads again", Duration::from_secs(30), |body| {
        sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
    });
    good.metrics();
    report(
        "Sentinel faults",
        "wrong data password, wrong sentinel password, a sentinel killed, the primary paused (SIGSTOP)",
        "wrong passwords: up, redis_up 0, /ready 503; a dead sentinel: the others answered; paused: last values kept with redis_up 0, then read again",
        "",
    );
    measured(
        "Sentinel faults",
        &format!("pause noticed in {:.1} s", noticed.as_secs_f64()),
    );
}

/// Writes a proposal for `symbol` on the data node on `port`.
fn write_symbol(sentinels: &Sentinels, port: u16, symbol: &str) {
    redis::cmd("HSET")
        .arg(format!("{PREFIX}{symbol}"))
        .arg("kill_score")
        .arg("0.5")
        .query::<()>(&mut sentinels.connection_to(port))
        .unwrap();
}

#[test]
fn a_paused_sentinel_does_not_stall_finding_the_primary() {
    let mut sentinels = Sentinels::start();
    let primary = sentinels.primary_port();
    write_symbol(&sentinels, primary, "BTCUSDT");
    // The tight one's search for the primary is bounded by 0.2 * 2 + 0.5 = 0.9 s: less than the
    // crate spends on a hung sentinel (its own 1 s connect and 0.5 s response timeouts).
    let exporters = [
        ("1 s timeouts", exporter_for(&sentinels, &[])),
        (
            "0.2 s connect and 0.5 s response timeouts",
            exporter_for(
                &sentinels,
                &[
                    ("REDIS_CONNECT_TIMEOUT_SEC", "0.2"),
                    ("REDIS_TIMEOUT_SEC", "0.5"),
                ],
            ),
        ),
    ];
    for (_, exporter) in &exporters {
        exporter.wait_metrics("the symbol read", Duration::from_secs(20), |body| {
            sample(body, "quantum_harvest_exporter_symbols_exported") == Some(1.0)
                && sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
        });
    }

    // The first sentinel listed, which the exporters asked so far, hangs: it accepts connections
    // and answers nothing. Killing their connections makes them look the primary up again.
    sentinels.pause_sentinel(0);
    let killed = Instant::now();
    let killed_clients: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut sentinels.connection_to(primary))
        .unwrap();
    assert!(killed_clients >= 2, "the exporters' connections killed");
    write_symbol(&sentinels, primary, "ETHUSDT");
    let reconnected: Vec<Duration> = exporters
        .iter()
        .map(|(_, exporter)| {
            exporter.wait_metrics(
                "a read through the two live sentinels",
                Duration::from_secs(15),
                |body| {
                    sample(body, "quantum_harvest_exporter_symbols_exported") == Some(2.0)
                        && sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
                },
            );
            killed.elapsed()
        })
        .collect();

    // The +switch-master listeners, subscribed on the paused sentinel, give up on it and
    // subscribe on the next one.
    let paused_addr = format!("sentinel={}", sentinels.sentinel_addrs()[0]);
    for (_, exporter) in &exporters {
        wait_for(
            "the listener to leave the paused sentinel",
            Duration::from_secs(10),
            || {
                exporter
                    .log_text()
                    .lines()
                    .any(|line| {
                        line.contains("+switch-master subscription failed")
                            && line.contains(&paused_addr)
                    })
                    .then_some(())
            },
        );
    }

    // A failover made through a live sentinel. The old primary keeps answering as a primary
    // until the sentinels demote it, 8 s after they see it again: only the announcement of a
    // live sentinel moves the exporters on sooner.
    let failover_started = Instant::now();
    let new_primary = sentinels.failover();
    let agreed = failover_started.elapsed();
    write_symbol(&sentinels, new_primary, "SOLUSDT");
    let mut figures = Vec::new();
    for ((name, exporter), reconnected) in exporters.iter().zip(&reconnected) {
        let to_new = wait_reading(exporter, new_primary, failover_started);
        assert!(
            to_new < agreed + Duration::from_secs(5),
            "{name}: the new primary read {:.1} s after the failover began, {:.1} s after the sentinels agreed",
            to_new.as_secs_f64(),
            (to_new - agreed).as_secs_f64()
        );
        let body = exporter.wait_metrics(
            "the symbol written on the new primary",
            Duration::from_secs(10),
            |body| sample(body, "quantum_harvest_exporter_symbols_exported") == Some(3.0),
        );
        assert_eq!(
            sample(&body, "quantum_harvest_exporter_redis_failovers_total"),
            Some(1.0)
        );
        exporter.metrics();
        figures.push(format!(
            "{name}: read again {:.1} s after its connections were killed, the new primary {:.1} s after the failover began",
            reconnected.as_secs_f64(),
            to_new.as_secs_f64()
        ));
    }
    sentinels.resume_sentinel(0);
    report(
        "Sentinel paused",
        "the first sentinel listed SIGSTOPped (connections accepted, nothing answered); the exporters' connections killed, then SENTINEL FAILOVER through a live sentinel",
        "the primary found through the two live sentinels, the failover announced by a live one: read again, then the new primary read, redis_up 1",
        "",
    );
    measured("Sentinel paused", &figures.join("; "));
}

#[test]
fn sentinels_and_data_nodes_over_tls() {
    let certs = Certs::new();
    let sentinels = Sentinels::start_with(SentinelOptions {
        tls: Some(TlsFiles::server(&certs)),
        ..SentinelOptions::default()
    });
    let first = sentinels.primary_port();
    write_generation(&sentinels, first, 1).unwrap();
    let ca = certs.ca.display().to_string();
    // The URL's host is not used: the sentinels name the nodes, by IP, and the server
    // certificate covers 127.0.0.1.
    let exporter = exporter_for(
        &sentinels,
        &[
            ("REDIS_SENTINEL_TLS", "true"),
            ("REDIS_TLS_CA_FILE", &ca),
            ("REDIS_URL", "rediss://ignored/0"),
        ],
    );
    let started = Instant::now();
    let read_first = wait_reading(&exporter, first, started);
    wait_generation(&exporter, 1);
    exporter.metrics();

    let failover_started = Instant::now();
    let second = sentinels.failover();
    let to_second = wait_reading(&exporter, second, failover_started);
    write_generation(&sentinels, second, 2).unwrap();
    wait_generation(&exporter, 2);
    let body = exporter.metrics();
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_failovers_total"),
        Some(1.0)
    );
    // The +switch-master listener speaks TLS to the sentinels too.
    wait_for(
        "the failover announcement logged",
        Duration::from_secs(10),
        || {
            exporter
                .log_text()
                .contains("a sentinel announced a failover")
                .then_some(())
        },
    );
    // Its PINGs, which find a hung sentinel, are answered by live ones: it never resubscribed.
    assert!(
        !exporter
            .log_text()
            .contains("+switch-master subscription failed"),
        "the listener left a live sentinel:\n{}",
        exporter.log_text()
    );
    report(
        "Sentinel over TLS",
        "three data nodes and three sentinels on TLS ports only (replication and the sentinels' links over TLS too); REDIS_SENTINEL_TLS, rediss:// with a private CA; SENTINEL FAILOVER",
        "1,000 symbols read through TLS sentinels from the TLS primary, the failover followed (announced over TLS) and the new primary read",
        "",
    );
    measured(
        "Sentinel over TLS",
        &format!(
            "first read {:.1} s after start; the new primary read {:.1} s after the failover began",
            read_first.as_secs_f64(),
            to_second.as_secs_f64()
        ),
    );
}

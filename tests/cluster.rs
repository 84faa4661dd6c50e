//! The exporter against a real six-node Redis Cluster: 10,000 symbols read while a third of the
//! slots move and then while a primary is killed, scraped every 100 ms; event mode across the
//! topology changes; replica reads; and the single-Redis faults against one node.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::exposition::check_exposition;
use common::topology::Cluster;
use common::{Exporter, PLAN_STREAM, Scraper, command_calls, measured, report, sample, wait_for};

const R_NET: &str = "quantum_harvest_r_net{symbol=\"";

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i:05}USDT")).collect()
}

fn exporter_for(cluster: &Cluster, extra_env: &[(&str, &str)]) -> Exporter {
    let seeds = cluster.seed_list();
    let mut env = vec![
        ("REDIS_CLUSTER_NODES", seeds.as_str()),
        ("POLL_INTERVAL_SEC", "1"),
        ("MAX_SYMBOLS", "100000"),
    ];
    env.extend_from_slice(extra_env);
    Exporter::start_raw(&["--web.listen-address", "127.0.0.1"], &env)
}

/// How many symbols a scrape exports (its R_net series), after checking the whole body.
fn symbols_in_scrape(port: u16) -> Result<usize, String> {
    let body = common::http_get(port, "/metrics", &[])
        .map_err(|e| e.to_string())?
        .text();
    check_exposition(&body)?;
    Ok(body.lines().filter(|l| l.starts_with(R_NET)).count())
}

fn notified(body: &str) -> f64 {
    sample(body, "quantum_harvest_exporter_notified_keys_total").unwrap_or(0.0)
}

/// Writes one symbol and waits until event mode (not a full refresh) has re-read it.
fn event_seen(cluster: &Cluster, exporter: &Exporter, symbol: &str, value: &str) {
    let before = notified(&exporter.get("/metrics").text());
    cluster.hset(symbol, &[("kill_score", "0.5"), ("R_net", value)]);
    let series = format!("{R_NET}{symbol}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = exporter.get("/metrics").text();
        if sample(&body, &series) == value.parse().ok() && notified(&body) > before {
            return;
        }
        if Instant::now() > deadline {
            let log = exporter.log_text();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("level=DEBUG") || l.contains("changes applied"))
                .collect();
            panic!(
                "{symbol} not re-read by event mode in 10 s (notified before: {before}): {:?}; log: {}",
                body.lines()
                    .filter(|l| !l.starts_with("#")
                        && (l.contains(&series)
                            || l.contains("notif")
                            || l.contains("redis_up")
                            || l.contains("refresh")))
                    .collect::<Vec<_>>(),
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How many times the exporter has subscribed to keyspace notifications, by its log.
fn subscriptions(exporter: &Exporter) -> usize {
    exporter.log_text().matches("event mode: following").count()
}

#[test]
fn ten_thousand_symbols_through_a_reshard_and_a_primary_killed() {
    const N: usize = 10_000;
    let mut cluster = Cluster::start();
    cluster.config_set_all("notify-keyspace-events", "Khgx");
    cluster.fill(&symbols(N), &[("kill_score", "0.5"), ("R_net", "1")]);
    // One exporter polls every second and is scraped throughout; another follows events with
    // a full read only every 30 s, so that what it shows within seconds came by an event.
    let exporter = exporter_for(&cluster, &[]);
    let events = exporter_for(
        &cluster,
        &[("HARVEST_EVENTS", "true"), ("POLL_INTERVAL_SEC", "30")],
    );
    let body = exporter.wait_metrics("10,000 symbols", Duration::from_secs(30), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(N as f64)
    });
    assert_eq!(body.matches("role=\"primary\"").count(), 3);
    exporter.metrics();
    events.wait_metrics("10,000 symbols", Duration::from_secs(30), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(N as f64)
            && sample(body, "quantum_harvest_exporter_notifications_up") == Some(1.0)
    });

    let port = exporter.port;
    let scraper = Scraper::start(Duration::from_secs(300), move || symbols_in_scrape(port));

    // A third of the slots move, from two primaries to the third, while scraped.
    let primaries = cluster.primaries();
    let reshard_started = Instant::now();
    let resharding =
        cluster.reshard_in_background(&[primaries[0], primaries[2]], primaries[1], 16_384 / 3);
    // While slots move, a change shows by one path or the other: an event read that meets a
    // moving slot can fail, and then the next full read has it.
    cluster.hset("S00001USDT", &[("kill_score", "0.5"), ("R_net", "2")]);
    exporter.wait_metrics(
        "a change during the reshard",
        Duration::from_secs(15),
        |body| sample(body, &format!("{R_NET}S00001USDT\"}}")) == Some(2.0),
    );
    let output = resharding.wait(Duration::from_secs(240));
    assert!(!output.contains("ERR"), "reshard failed: {output}");
    let reshard_took = reshard_started.elapsed();
    cluster.wait_agreement();
    event_seen(&cluster, &events, "S00002USDT", "3");

    // A primary dies; its replica takes over.
    cluster.wait_replicated();
    let victim = cluster.primaries()[1];
    let subscribed_before_kill = subscriptions(&events);
    let killed = Instant::now();
    cluster.kill_node(victim);
    let promoted = cluster.wait_failover(victim, Duration::from_secs(60));
    let promoted_addr = format!("addr=\"127.0.0.1:{promoted}\",role=\"primary\"");
    let body = exporter.wait_metrics(
        "the promoted replica read",
        Duration::from_secs(60),
        |body| {
            body.contains(&promoted_addr)
                && sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
        },
    );
    let failover_took = killed.elapsed();
    assert!(sample(&body, "quantum_harvest_exporter_redis_failovers_total").unwrap() >= 1.0);
    // Event mode subscribed again, on the new primary too.
    let moved_here = symbols(N)
        .into_iter()
        .find(|s| cluster.slot_owner(&format!("{}{s}", common::PREFIX)) == promoted)
        .expect("a symbol on the promoted node");
    wait_for(
        "a subscription on the new primaries",
        Duration::from_secs(30),
        || (subscriptions(&events) > subscribed_before_kill).then_some(()),
    );
    event_seen(&cluster, &events, &moved_here, "4");

    let counts: Vec<usize> = scraper
        .stop()
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("an invalid scrape: {e}"));
    let short: Vec<&usize> = counts.iter().filter(|c| **c != N).collect();
    assert!(
        short.is_empty(),
        "scrapes without every symbol once: {short:?}"
    );
    exporter.metrics();
    report(
        "Cluster reshard and failover",
        "six-node cluster, 10,000 symbols; a third of the slots resharded, then a primary SIGKILLed; scraped back to back (100 ms apart) by one exporter, events followed by another",
        "every scrape valid, each with all 10,000 symbols once; event mode kept working after both changes",
        "",
    );
    measured(
        "Cluster reshard and failover",
        &format!(
            "{} scrapes; reshard {:.0} s; reading the promoted replica {:.1} s after the kill",
            counts.len(),
            reshard_took.as_secs_f64(),
            failover_took.as_secs_f64()
        ),
    );
}

#[test]
fn replica_reads_and_a_paused_node() {
    let mut cluster = Cluster::start();
    cluster.fill(&symbols(1_000), &[("kill_score", "0.5"), ("R_net", "1")]);
    let exporter = exporter_for(&cluster, &[("REDIS_READ_FROM", "replica")]);
    let body = exporter.wait_metrics("1,000 symbols", Duration::from_secs(30), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(1_000.0)
    });
    assert_eq!(body.matches("role=\"replica\"").count(), 3);
    for primary in cluster.primaries() {
        assert_eq!(
            command_calls(&mut cluster.connection_to(primary), "hmget"),
            0,
            "replica reads must leave the primaries alone"
        );
    }

    // A paused node: reads time out and the last values stay, until the cluster fails it over.
    let paused_node = cluster.replicas()[0];
    cluster.pause_node(paused_node);
    let body = exporter.wait_metrics("a failed read", Duration::from_secs(30), |body| {
        sample(body, "quantum_harvest_exporter_redis_up") == Some(0.0)
    });
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_symbols_exported"),
        Some(1_000.0)
    );
    cluster.resume_node(paused_node);
    exporter.wait_metrics("reads again", Duration::from_secs(60), |body| {
        sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
    });
    exporter.metrics();
    report(
        "Cluster replica reads and a paused node",
        "REDIS_READ_FROM=replica on a six-node cluster; one replica paused (SIGSTOP), then resumed",
        "every shard read from its replica (0 HMGETs on the primaries); paused: last values kept with redis_up 0, read again on resume",
        "0 HMGETs on the primaries",
    );
}

#[test]
fn wrong_password_and_a_slow_node() {
    let cluster = Cluster::start();
    cluster.fill(&symbols(100), &[("kill_score", "0.5")]);
    // The cluster has no password: one given is refused, and the exporter says so.
    let wrong = exporter_for(&cluster, &[("REDIS_PASSWORD", "wrong")]);
    wrong.wait_refused();

    // A node slower than the response timeout: the read fails, the next one succeeds.
    let exporter = exporter_for(&cluster, &[("REDIS_TIMEOUT_SEC", "1")]);
    exporter.wait_metrics("100 symbols", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(100.0)
    });
    let slow = cluster.primaries()[0];
    // Holds every client's commands for 2.5 s, as a node busy with a slow command would.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2_500)
        .arg("ALL")
        .query(&mut cluster.connection_to(slow))
        .unwrap();
    exporter.wait_metrics("a timeout", Duration::from_secs(20), |body| {
        sample(
            body,
            "quantum_harvest_exporter_refresh_errors_total{kind=\"timeout\"}",
        )
        .is_some_and(|n| n > 0.0)
            || sample(body, "quantum_harvest_exporter_redis_up") == Some(0.0)
    });
    wait_for("reads again", Duration::from_secs(20), || {
        let body = exporter.get("/metrics").text();
        (sample(&body, "quantum_harvest_exporter_redis_up") == Some(1.0)
            && sample(&body, "quantum_harvest_exporter_symbols_exported") == Some(100.0))
        .then_some(())
    });
    exporter.metrics();
    report(
        "Cluster faults",
        "a wrong password; a primary stalled by CLIENT PAUSE for 2.5 s with a 1 s response timeout",
        "wrong password: up, redis_up 0, /ready 503; the stalled node: the read failed, the last values stayed, the next read succeeded",
        "",
    );
}

fn plan(cluster: &Cluster, plan_id: &str) {
    redis::cmd("XADD")
        .arg(PLAN_STREAM)
        .arg("*")
        .arg(&[
            ("plan_id", plan_id),
            ("symbol", "S00001USDT"),
            ("action", "FULL_CLOSE_PROPOSED"),
            ("decision", "EXECUTE"),
        ])
        .query::<String>(&mut cluster.connection())
        .expect("XADD in the cluster");
}

#[test]
fn one_node_address_finds_the_cluster_and_its_streams() {
    let cluster = Cluster::start();
    cluster.fill(&symbols(100), &[("kill_score", "0.5")]);
    // Entries before start-up are recalled, not counted.
    plan(&cluster, "p0");
    let node = cluster.primaries()[1];
    let url = format!("redis://127.0.0.1:{node}/0");
    let exporter = Exporter::start_raw(
        &["--web.listen-address", "127.0.0.1"],
        &[("REDIS_URL", url.as_str()), ("POLL_INTERVAL_SEC", "1")],
    );
    let body = exporter.wait_metrics("every node's symbols", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_symbols_exported") == Some(100.0)
            && body.contains("quantum_apply_stream_exists{stream=\"plan\"} 1")
    });
    assert_eq!(body.matches("mode=\"cluster\"").count(), 3);
    let written = Instant::now();
    plan(&cluster, "p1");
    plan(&cluster, "p2");
    let series = "quantum_apply_plans_seen_total{symbol=\"S00001USDT\",decision=\"EXECUTE\",action=\"FULL_CLOSE_PROPOSED\"}";
    exporter.wait_metrics("the two plans", Duration::from_secs(10), |body| {
        sample(body, series) == Some(2.0)
    });
    let seen = written.elapsed();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(sample(&exporter.metrics(), series), Some(2.0));
    report(
        "Cluster found from one node",
        "REDIS_URL naming one node of a three-primary cluster, no REDIS_CLUSTER_NODES; plans appended to the stream's node",
        "the cluster detected and all three primaries read; the plan stream followed on the node that owns it, each entry counted once",
        "plans counted: 2 of 2",
    );
    measured(
        "Cluster found from one node",
        &format!(
            "two plans visible {:.0} ms after they were written",
            seen.as_secs_f64() * 1000.0
        ),
    );
}

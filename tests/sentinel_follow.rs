//! What the exporter follows through a Sentinel failover: keyspace notifications are subscribed
//! again on the new primary, and the apply streams are read there from the last entry ID read,
//! so no entry is lost or counted twice.

mod common;

use std::time::{Duration, Instant};

use common::topology::{MASTER_NAME, Sentinels};
use common::{Exporter, PLAN_STREAM, PREFIX, measured, report, sample, wait_for};

const PLANS_SEEN: &str = "quantum_apply_plans_seen_total{symbol=\"BTCUSDT\",decision=\"EXECUTE\",action=\"FULL_CLOSE_PROPOSED\"}";

fn plan(connection: &mut redis::Connection, plan_id: &str) {
    redis::cmd("XADD")
        .arg(PLAN_STREAM)
        .arg("*")
        .arg(&[
            ("plan_id", plan_id),
            ("symbol", "BTCUSDT"),
            ("action", "FULL_CLOSE_PROPOSED"),
            ("kill_score", "0.81"),
            ("decision", "EXECUTE"),
            ("source", "apply_layer"),
        ])
        .query::<String>(connection)
        .expect("XADD");
}

fn hset(connection: &mut redis::Connection, symbol: &str, kill_score: &str) {
    redis::cmd("HSET")
        .arg(format!("{PREFIX}{symbol}"))
        .arg("kill_score")
        .arg(kill_score)
        .query::<()>(connection)
        .expect("HSET");
}

/// Waits until every connected replica has what the primary on `port` has written.
fn wait_replicated(sentinels: &Sentinels, port: u16) {
    let mut connection = sentinels.connection_to(port);
    let replication: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut connection)
        .unwrap();
    let replicas: u64 = replication
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:")?.parse().ok())
        .unwrap_or(0);
    let acknowledged: u64 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(2_000)
        .query(&mut connection)
        .unwrap();
    assert_eq!(acknowledged, replicas);
}

fn subscriptions(exporter: &Exporter) -> usize {
    exporter.log_text().matches("event mode: following").count()
}

#[test]
fn notifications_and_streams_follow_the_new_primary() {
    let sentinels = Sentinels::start();
    for port in sentinels.node_ports() {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("Khgx")
            .query::<()>(&mut sentinels.connection_to(port))
            .unwrap();
    }
    let first = sentinels.primary_port();
    let mut primary = sentinels.connection_to(first);
    hset(&mut primary, "BTCUSDT", "0.1");
    // Entries before start-up are recalled, not counted.
    plan(&mut primary, "p0");
    // A full read only every 60 s: what shows within seconds came by a notification.
    let list = sentinels.sentinel_list();
    let exporter = Exporter::start_raw(
        &["--web.listen-address", "127.0.0.1"],
        &[
            ("REDIS_SENTINELS", list.as_str()),
            ("REDIS_SENTINEL_MASTER", MASTER_NAME),
            ("POLL_INTERVAL_SEC", "60"),
            ("HARVEST_EVENTS", "true"),
        ],
    );
    exporter.wait_metrics("following", Duration::from_secs(20), |body| {
        sample(body, "quantum_harvest_exporter_notifications_up") == Some(1.0)
            && body.contains("quantum_apply_stream_exists{stream=\"plan\"} 1")
    });
    for id in ["p1", "p2", "p3"] {
        plan(&mut primary, id);
    }
    wait_replicated(&sentinels, first);
    exporter.wait_metrics(
        "the plans and the symbol",
        Duration::from_secs(20),
        |body| {
            sample(body, PLANS_SEEN) == Some(3.0)
                && sample(body, "quantum_harvest_exporter_notifications_up") == Some(1.0)
        },
    );
    let subscribed = subscriptions(&exporter);

    let failover_started = Instant::now();
    let second = sentinels.failover();
    let new_primary = format!("addr=\"127.0.0.1:{second}\"");
    exporter.wait_metrics("the new primary read", Duration::from_secs(20), |body| {
        body.contains(&new_primary)
    });
    let switched = failover_started.elapsed();
    wait_for(
        "a subscription on the new primary",
        Duration::from_secs(20),
        || (subscriptions(&exporter) > subscribed).then_some(()),
    );

    let mut primary = sentinels.connection_to(second);
    let written = Instant::now();
    hset(&mut primary, "BTCUSDT", "0.9");
    exporter.wait_metrics(
        "the change, by notification",
        Duration::from_secs(10),
        |body| sample(body, "quantum_harvest_kill_score{symbol=\"BTCUSDT\"}") == Some(0.9),
    );
    let by_event = written.elapsed();
    assert!(
        by_event < Duration::from_secs(30),
        "came by the next full read, not by a notification"
    );
    plan(&mut primary, "p4");
    plan(&mut primary, "p5");
    exporter.wait_metrics("the two new plans", Duration::from_secs(10), |body| {
        sample(body, PLANS_SEEN) == Some(5.0)
    });
    // Nothing read again from the new primary's copy of the stream.
    std::thread::sleep(Duration::from_secs(2));
    let body = exporter.metrics();
    assert_eq!(sample(&body, PLANS_SEEN), Some(5.0));
    assert_eq!(
        sample(&body, "quantum_harvest_exporter_redis_failovers_total"),
        Some(1.0)
    );
    report(
        "Sentinel failover, followed",
        "event mode and the apply streams on; SENTINEL FAILOVER; then a change and two plans on the new primary",
        "notifications subscribed again on the new primary; the streams read on from the last ID: 5 plans counted, none twice",
        "plans counted: 5 of 5",
    );
    measured(
        "Sentinel failover, followed",
        &format!(
            "new primary read {:.1} s after the failover began; a change there visible in {:.0} ms",
            switched.as_secs_f64(),
            by_event.as_secs_f64() * 1000.0
        ),
    );
}

//! Smoke tests of the Sentinel and Cluster harness in `common::topology`: each deployment starts,
//! fails over and keeps its data, so that exporter tests built on it fail only for their own
//! reasons.

mod common;

use std::time::{Duration, Instant};

use common::PREFIX;
use common::topology::{Cluster, Sentinels};

const FAILOVER_WAIT: Duration = Duration::from_secs(25);

#[test]
fn sentinel_setup_fails_over_and_reports_the_new_primary() {
    let started = Instant::now();
    let mut sentinels = Sentinels::start();
    let first = sentinels.primary_port();
    assert_eq!(first, sentinels.node_ports()[0]);
    let key = format!("{PREFIX}BTCUSDT");
    let mut primary = sentinels.connection_to(first);
    redis::cmd("HSET")
        .arg(&key)
        .arg(&[("kill_score", "0.527")])
        .query::<()>(&mut primary)
        .expect("HSET on the primary");
    let acknowledged: usize = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut primary)
        .expect("WAIT for both replicas");
    assert_eq!(acknowledged, 2);
    let ready = started.elapsed();

    let at = Instant::now();
    let second = sentinels.failover();
    assert_ne!(second, first);
    let forced = at.elapsed();

    let at = Instant::now();
    sentinels.kill_node(second);
    let third = sentinels.wait_new_primary(second, FAILOVER_WAIT);
    assert_ne!(third, second);
    let crashed = at.elapsed();

    let kill_score: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("kill_score")
        .query(&mut sentinels.connection_to(third))
        .expect("HGET on the newest primary");
    assert_eq!(kill_score.as_deref(), Some("0.527"));
    eprintln!(
        "sentinel: ready in {ready:.1?}; SENTINEL FAILOVER {first} -> {second} in {forced:.1?}; \
         crash of {second} -> {third} in {crashed:.1?}; total {:.1?}",
        started.elapsed()
    );
}

#[test]
fn cluster_setup_reshards_and_fails_over() {
    let started = Instant::now();
    let mut cluster = Cluster::start();
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    let ready = started.elapsed();

    let at = Instant::now();
    let symbols: Vec<String> = (0..1000).map(|i| format!("SYM{i:04}USDT")).collect();
    cluster.fill(
        &symbols,
        &[("harvest_action", "PARTIAL_50"), ("kill_score", "0.5")],
    );
    let filled = at.elapsed();

    let at = Instant::now();
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let keys_on = |port: u16| -> usize {
        redis::cmd("DBSIZE")
            .query(&mut cluster.connection_to(port))
            .expect("DBSIZE")
    };
    let (from_before, to_before) = (keys_on(from), keys_on(to));
    // A third of one primary's 5461 slots.
    cluster.reshard(from, to, 1820);
    let moved = to_before.abs_diff(keys_on(to));
    assert!(moved > 0, "no key moved from {from} to {to}");
    assert_eq!(from_before - keys_on(from), moved);
    let resharded = at.elapsed();

    let at = Instant::now();
    cluster.wait_replicated();
    cluster.kill_node(to);
    let promoted = cluster.wait_failover(to, FAILOVER_WAIT);
    assert!(cluster.primaries().contains(&promoted));
    assert!(!cluster.primaries().contains(&to));
    let failed_over = at.elapsed();

    let mut pipe = redis::cluster::cluster_pipe();
    for symbol in &symbols {
        pipe.hget(format!("{PREFIX}{symbol}"), "kill_score");
    }
    let scores: Vec<Option<String>> = pipe
        .query(&mut cluster.connection())
        .expect("read every key back");
    let missing = scores
        .iter()
        .filter(|score| score.as_deref() != Some("0.5"))
        .count();
    assert_eq!(missing, 0, "{missing} of {} keys lost", symbols.len());
    eprintln!(
        "cluster: ready in {ready:.1?}; 1000 keys filled in {filled:.1?}; 1820 slots \
         ({moved} keys) moved {from} -> {to} in {resharded:.1?}; crash of {to} -> {promoted} in \
         {failed_over:.1?}; total {:.1?}",
        started.elapsed()
    );
}

//! Fills a Redis Cluster with the proposals of a filled single Redis, so that both hold the same
//! bytes: every hash under the prefix is read from the single Redis (SCAN, pipelined HGETALLs)
//! and written through the crate's cluster pipeline, which groups the HSETs by slot owner and
//! sends each node its share in one pipeline. `redis-cli -c` would take a round trip per key.

use std::time::Instant;

use harvest_exporter::config::DEFAULT_PREFIX;
use redis::cluster::{ClusterClient, cluster_pipe};

use crate::Options;

/// Hashes read and written per pipeline.
const BATCH: usize = 2_000;

pub fn copy(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("redis-port", None)?;
    let nodes: Vec<String> = options
        .text("cluster-nodes")?
        .split(',')
        .map(|addr| format!("redis://{addr}/"))
        .collect();
    let started = Instant::now();
    let single =
        redis::Client::open(format!("redis://127.0.0.1:{port}/0")).map_err(|e| e.to_string())?;
    let mut single = single.get_connection().map_err(|e| e.to_string())?;
    let cluster = ClusterClient::new(nodes).map_err(|e| e.to_string())?;
    let mut cluster = cluster.get_connection().map_err(|e| e.to_string())?;

    let mut keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{DEFAULT_PREFIX}*"))
        .arg("COUNT")
        .arg(1_000)
        .clone()
        .iter(&mut single)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    keys.sort();
    keys.dedup();
    for batch in keys.chunks(BATCH) {
        let mut read = redis::pipe();
        for key in batch {
            read.hgetall(key);
        }
        let hashes: Vec<Vec<(String, String)>> =
            read.query(&mut single).map_err(|e| e.to_string())?;
        let mut write = cluster_pipe();
        for (key, fields) in batch.iter().zip(&hashes) {
            write.hset_multiple(key, fields).ignore();
        }
        write.exec(&mut cluster).map_err(|e| e.to_string())?;
    }
    println!(
        "symbols={} copy_secs={:.3}",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

//! Reads a Redis Cluster: every shard's node (its primary, or a replica by the read policy) is
//! scanned at once, each node's HMGETs are pipelined to it, and keys whose slot moved meanwhile
//! are read again by key through the crate's routing, which follows MOVED and ASK.

use std::collections::HashSet;

use futures_util::future::join_all;
use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;

use super::{FetchError, Fetched, Node, ReadFrom, Role, Route, Source};

/// A shard as `CLUSTER NODES` lists it: a primary with slots and its replicas that are linked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shard {
    pub primary: String,
    pub replicas: Vec<String>,
}

/// The cluster's shards, asked of any node; also counts a replica promoted since the last call
/// as a failover.
pub(super) async fn shards(
    source: &mut Source,
    connection: &mut ClusterConnection,
) -> Result<Vec<Shard>, FetchError> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            redis::cluster_routing::RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(|error| source.classify(error, false))?;
    let text = match reply {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } => text,
        _ => return Err(source.unexpected("CLUSTER NODES")),
    };
    let shards = parse_nodes(&text);
    if shards.is_empty() {
        return Err(source.unexpected("CLUSTER NODES"));
    }
    let promoted = shards
        .iter()
        .filter(|shard| source.replicas_seen.contains(&shard.primary))
        .count();
    source.endpoint.count_failovers(promoted as u64);
    source.replicas_seen = shards.iter().flat_map(|s| s.replicas.clone()).collect();
    Ok(shards)
}

/// Every hash under the prefix, each shard's node scanned in parallel; returns the symbols
/// found. A symbol found by no SCAN but found by the last full read (its slot moving between
/// two nodes' scans) is read by key, so it is neither lost nor exported twice.
pub(super) async fn discover(
    source: &mut Source,
    connection: &mut ClusterConnection,
    shards: &[Shard],
    fetched: &mut Fetched,
) -> Result<HashSet<Vec<u8>>, FetchError> {
    let read_from = source.endpoint.read_from();
    let mut nodes = Vec::with_capacity(shards.len());
    for shard in shards {
        let node = match (read_from, shard.replicas.first()) {
            (ReadFrom::Primary, _) | (ReadFrom::PreferReplica, None) => Node {
                addr: shard.primary.clone(),
                role: Role::Primary,
            },
            (_, Some(replica)) => Node {
                addr: replica.clone(),
                role: Role::Replica,
            },
            (ReadFrom::Replica, None) => {
                return Err(FetchError::Connect {
                    addr: shard.primary.clone(),
                    source: redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "this shard has no healthy replica (--redis.read-from=replica never reads the primary)",
                    )),
                });
            }
        };
        nodes.push(node);
    }
    let this = &*source;
    let scans = nodes.iter().map(|node| {
        let connection = connection.clone();
        async move {
            let (host, port) =
                split_addr(&node.addr).ok_or_else(|| this.unexpected("CLUSTER NODES"))?;
            let mut route = Route::ClusterNode {
                connection,
                host,
                port,
            };
            let mut part = Fetched::default();
            this.discover(&mut route, &mut part, &mut HashSet::new())
                .await?;
            Ok::<_, FetchError>(part)
        }
    });
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut again: Vec<Vec<u8>> = Vec::new();
    for part in join_all(scans).await {
        let part = part?;
        fetched.commands += part.commands;
        fetched.round_trips = fetched.round_trips.max(part.round_trips);
        fetched.wrong_type += part.wrong_type;
        for hash in part.hashes {
            if seen.insert(hash.symbol.clone()) {
                fetched.hashes.push(hash);
            }
        }
        // A key listed but gone by HMGET was deleted, or its slot moved: ask its new node.
        again.extend(part.redirected);
        again.extend(part.absent);
    }
    again.extend(
        source
            .known
            .iter()
            .filter(|symbol| !seen.contains(*symbol))
            .cloned(),
    );
    again.sort_unstable();
    again.dedup();
    again.retain(|symbol| !seen.contains(symbol));
    let mut stragglers = Fetched::default();
    read_by_key(source, connection, &again, &mut stragglers).await?;
    fetched.commands += stragglers.commands;
    fetched.wrong_type += stragglers.wrong_type;
    for hash in stragglers.hashes {
        seen.insert(hash.symbol.clone());
        fetched.hashes.push(hash);
    }
    source.endpoint.set_cluster_nodes(nodes);
    Ok(seen)
}

/// HMGET of each symbol's key, routed by the crate to the node owning its slot, all in flight
/// at once (each node's connection pipelines them).
pub(super) async fn read_by_key(
    source: &Source,
    connection: &mut ClusterConnection,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    let reads = symbols.iter().map(|symbol| {
        let mut connection = connection.clone();
        let mut command = redis::cmd("HMGET");
        command
            .arg([source.prefix.as_slice(), symbol].concat())
            .arg(source.fields);
        async move { command.query_async::<Value>(&mut connection).await }
    });
    for (symbol, reply) in symbols.iter().zip(join_all(reads).await) {
        match reply {
            Ok(value) => {
                source.take_reads(std::slice::from_ref(symbol), vec![value], fetched, false)?
            }
            Err(error) if error.code() == Some("WRONGTYPE") => fetched.wrong_type += 1,
            Err(error) => return Err(source.classify(error, false)),
        }
    }
    fetched.commands += symbols.len();
    fetched.round_trips += usize::from(!symbols.is_empty());
    Ok(())
}

/// The shards in `CLUSTER NODES` text: primaries that serve slots and are not failed, each with
/// its connected replicas, in address order.
fn parse_nodes(text: &str) -> Vec<Shard> {
    struct Line<'a> {
        id: &'a str,
        addr: String,
        flags: &'a str,
        primary_id: &'a str,
        connected: bool,
        has_slots: bool,
    }
    let lines: Vec<Line> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let addr = fields[1].split(['@', ',']).next()?.to_owned();
            Some(Line {
                id: fields[0],
                addr,
                flags: fields[2],
                primary_id: fields[3],
                connected: fields[7] == "connected",
                has_slots: fields.len() > 8,
            })
        })
        .collect();
    let healthy = |line: &Line| {
        !line
            .flags
            .split(',')
            .any(|flag| matches!(flag, "fail" | "fail?" | "handshake" | "noaddr"))
            && !line.addr.starts_with(':')
    };
    let has_flag = |line: &Line, flag: &str| line.flags.split(',').any(|f| f == flag);
    let mut shards: Vec<Shard> = lines
        .iter()
        .filter(|line| has_flag(line, "master") && line.has_slots && healthy(line))
        .map(|primary| Shard {
            primary: primary.addr.clone(),
            replicas: lines
                .iter()
                .filter(|line| {
                    has_flag(line, "slave")
                        && line.primary_id == primary.id
                        && line.connected
                        && healthy(line)
                })
                .map(|line| line.addr.clone())
                .collect(),
        })
        .collect();
    shards.sort_by(|a, b| a.primary.cmp(&b.primary));
    shards
}

/// `host` and `port` of `host:port` (or `[v6]:port`).
fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_give_each_primary_and_its_linked_replicas() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004,host-4 slave a1 0 1 1 connected
e5 127.0.0.1:7005@17005 slave b2 0 1 2 disconnected
f6 127.0.0.1:7006@17006 master - 0 1 7 connected
g7 127.0.0.1:7007@17007 slave,fail? a1 0 1 1 connected
";
        assert_eq!(
            parse_nodes(text),
            vec![
                Shard {
                    primary: "127.0.0.1:7001".into(),
                    replicas: vec!["127.0.0.1:7004".into()],
                },
                Shard {
                    primary: "127.0.0.1:7002".into(),
                    replicas: vec![],
                },
            ]
        );
        assert_eq!(parse_nodes("garbage\n"), vec![]);
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_addr("127.0.0.1:7001"),
            Some(("127.0.0.1".into(), 7001))
        );
        assert_eq!(split_addr("[::1]:7001"), Some(("::1".into(), 7001)));
        assert_eq!(split_addr("nope"), None);
    }
}

//! Reads a Redis Cluster: every shard's node (its primary, or a replica by the read policy) is
//! read at once, each over a pipelined connection of its own: scanned in a discovery, or sent
//! the HMGETs of the keys its slots hold. Keys whose slot moved meanwhile are read again by key
//! through the crate's cluster connection, which follows MOVED and ASK.

use std::collections::HashMap;

use futures_util::future::join_all;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};

use super::{Multiplexed, ReadFrom, Reader, Source};
use crate::fetch::{FetchError, Fetched, Node, RawHash, Role};

/// Reads by key in flight at once: bounds the work a flood of notifications (a resharding
/// announces every key it moves) queues on the cluster connection.
const IN_FLIGHT: usize = 500;

/// A shard as `CLUSTER NODES` lists it: a primary with slots and its replicas that are linked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shard {
    pub primary: String,
    pub replicas: Vec<String>,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

/// Where a cluster's reads go, from the last `CLUSTER NODES`: the node read for each shard and
/// which of them holds each slot.
#[derive(Debug, Default)]
pub(super) struct Layout {
    shards: Vec<Shard>,
    pub nodes: Vec<Node>,
    /// The primaries, where keyspace notifications come from.
    pub primaries: Vec<String>,
    /// Index in `nodes` by slot. Keyed by the crate's `Slot`, which computes a key's slot
    /// (hash tags included) but does not give out its number.
    owner: HashMap<Slot, usize>,
}

/// Asks any node for the shards, chooses the node to read in each by the read policy, and
/// counts a replica promoted since the last call as a failover.
pub(super) async fn layout(
    source: &mut Source,
    connection: &mut ClusterConnection,
) -> Result<Layout, FetchError> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(|error| source.reader.classify(error, false))?;
    let text = match reply {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } => text,
        _ => return Err(source.reader.unexpected("CLUSTER NODES")),
    };
    let shards = parse_nodes(&text);
    if shards.is_empty() {
        return Err(source.reader.unexpected("CLUSTER NODES"));
    }
    // A node once seen as a replica that now serves slots was promoted. Replicas are
    // remembered across layouts, since one taken mid-failover may list neither the failed
    // primary's shard nor its replica.
    for shard in &shards {
        if source.replicas_seen.remove(&shard.primary) {
            source.endpoint.count_failovers(1);
        }
    }
    source.replicas_seen.extend(replica_addrs(&text));
    // Unchanged shards keep the layout: its slot map has 16,384 entries to build.
    if let Some(layout) = source.layout.take()
        && layout.shards == shards
    {
        return Ok(layout);
    }
    let read_from = source.endpoint.read_from();
    let mut layout = Layout::default();
    for (index, shard) in shards.iter().enumerate() {
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
        layout.nodes.push(node);
        layout.primaries.push(shard.primary.clone());
        for &(first, last) in &shard.slots {
            for slot in first..=last {
                if let Some(slot) = Slot::new(slot) {
                    layout.owner.insert(slot, index);
                }
            }
        }
    }
    layout.shards = shards;
    Ok(layout)
}

/// Every hash under the prefix, each shard's node scanned in parallel; returns the symbols
/// found. A symbol found by no SCAN but found by the last full read (its slot moving between
/// two nodes' scans) is read by key, so it is neither lost nor exported twice.
pub(super) async fn discover(
    source: &mut Source,
    connection: &mut ClusterConnection,
    fetched: &mut Fetched,
) -> Result<Vec<Vec<u8>>, FetchError> {
    let nodes = source
        .layout
        .as_ref()
        .map(|l| l.nodes.clone())
        .unwrap_or_default();
    let connections = node_connections(source, &nodes).await?;
    let scans = connections.into_iter().map(|mut connection| {
        let reader = source.reader.clone();
        tokio::spawn(async move {
            let mut part = Fetched::default();
            reader
                .discover(&mut Multiplexed::new(&mut connection, true), &mut part)
                .await?;
            Ok(part)
        })
    });
    let parts = joined(join_all(scans).await);
    let unread = merge(source, parts, fetched)?;
    // Sorted, a symbol two nodes listed (its slot moving between their scans) is kept once,
    // and what was found is looked up without hashing every symbol.
    sort_unique(&mut fetched.hashes);
    let found = |symbol: &[u8]| {
        fetched
            .hashes
            .binary_search_by(|hash| hash.symbol.as_slice().cmp(symbol))
            .is_ok()
    };
    // Listed but gone by HMGET (deleted, or moved on), or found last time and by no SCAN now:
    // asked of the slot's owner.
    let mut again = unread.redirected;
    again.extend(unread.absent);
    again.extend(source.known.iter().filter(|s| !found(s)).cloned());
    again.sort_unstable();
    again.dedup();
    again.retain(|symbol| !found(symbol));
    read(source, connection, &again, fetched).await?;
    sort_unique(&mut fetched.hashes);
    Ok(fetched
        .hashes
        .iter()
        .map(|hash| hash.symbol.clone())
        .collect())
}

/// Sorts hashes by symbol, keeping the first of each.
fn sort_unique(hashes: &mut Vec<RawHash>) {
    hashes.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    hashes.dedup_by(|later, earlier| later.symbol == earlier.symbol);
}

/// The given symbols, each shard's share pipelined to its node at once. Keys whose slot has
/// moved since the layout was taken are grouped again by a fresh layout; those still
/// redirected (their slot migrating right now) are read by key. Without a layout, all are.
pub(super) async fn read(
    source: &mut Source,
    connection: &mut ClusterConnection,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    if source.layout.is_none() || symbols.is_empty() {
        return read_by_key(&source.reader, connection, symbols, fetched).await;
    }
    let mut redirected = read_grouped(source, symbols, fetched).await?;
    if !redirected.is_empty() {
        source.layout = Some(layout(source, connection).await?);
        redirected = read_grouped(source, &redirected, fetched).await?;
    }
    read_by_key(&source.reader, connection, &redirected, fetched).await
}

/// One pipelined read per node of the symbols its slots hold by the current layout; returns
/// the symbols redirected elsewhere or in a slot no node held.
async fn read_grouped(
    source: &mut Source,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<Vec<Vec<u8>>, FetchError> {
    let Some(layout) = source.layout.take() else {
        return Ok(symbols.to_vec());
    };
    let mut shares: Vec<Vec<Vec<u8>>> = vec![Vec::new(); layout.nodes.len()];
    let mut unplaced = Vec::new();
    for symbol in symbols {
        let key = [&source.reader.prefix[..], symbol].concat();
        match layout.owner.get(&Slot::for_key(&key)) {
            Some(&index) => shares[index].push(symbol.clone()),
            None => unplaced.push(symbol.clone()),
        }
    }
    let connections = node_connections(source, &layout.nodes).await;
    source.layout = Some(layout);
    let reads = connections?
        .into_iter()
        .zip(shares)
        .map(|(mut connection, share)| {
            let reader = source.reader.clone();
            tokio::spawn(async move {
                let mut part = Fetched::default();
                reader
                    .read_hashes(
                        &mut Multiplexed::new(&mut connection, true),
                        &share,
                        &mut part,
                    )
                    .await?;
                Ok(part)
            })
        });
    let parts = joined(join_all(reads).await);
    let unread = merge(source, parts, fetched)?;
    fetched.absent.extend(unread.absent);
    unplaced.extend(unread.redirected);
    Ok(unplaced)
}

/// The nodes' reads as they ended: each node is read by a task of its own, so that the replies
/// are taken apart on every worker thread; a task that did not finish (the runtime shutting
/// down) counts as a failed read.
fn joined(
    tasks: Vec<Result<Result<Fetched, FetchError>, tokio::task::JoinError>>,
) -> Vec<Result<Fetched, FetchError>> {
    tasks
        .into_iter()
        .map(|task| {
            task.unwrap_or_else(|error| {
                Err(FetchError::Command {
                    addr: "a cluster node".to_owned(),
                    source: redis::RedisError::from(std::io::Error::other(error.to_string())),
                })
            })
        })
        .collect()
}

/// The symbols a node read left: redirected elsewhere, or without a hash there.
#[derive(Default)]
struct Unread {
    redirected: Vec<Vec<u8>>,
    absent: Vec<Vec<u8>>,
}

/// Adds each node's part to `fetched`; returns what is left unread. A failed
/// part fails the read and drops the node connections, which are made again next time.
fn merge(
    source: &mut Source,
    parts: Vec<Result<Fetched, FetchError>>,
    fetched: &mut Fetched,
) -> Result<Unread, FetchError> {
    if parts.iter().any(Result::is_err) {
        source.node_connections.clear();
    }
    let mut unread = Unread::default();
    for part in parts {
        let part = part?;
        fetched.commands += part.commands;
        fetched.round_trips = fetched.round_trips.max(part.round_trips);
        fetched.wrong_type += part.wrong_type;
        fetched.hashes.extend(part.hashes);
        unread.redirected.extend(part.redirected);
        unread.absent.extend(part.absent);
    }
    Ok(unread)
}

/// A connection to each node, made (and told READONLY, for a replica) on first use.
async fn node_connections(
    source: &mut Source,
    nodes: &[Node],
) -> Result<Vec<MultiplexedConnection>, FetchError> {
    let mut connections = Vec::with_capacity(nodes.len());
    for node in nodes {
        if let Some(connection) = source.node_connections.get(&node.addr) {
            connections.push(connection.clone());
            continue;
        }
        let client = source.endpoint.node_client(&node.addr)?;
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&source.endpoint.config())
            .await
            .map_err(|error| source.reader.classify(error, true))?;
        if node.role == Role::Replica {
            redis::cmd("READONLY")
                .query_async::<()>(&mut connection)
                .await
                .map_err(|error| source.reader.classify(error, false))?;
        }
        source
            .node_connections
            .insert(node.addr.clone(), connection.clone());
        connections.push(connection);
    }
    Ok(connections)
}

/// HMGET of each symbol's key through the crate's cluster connection, which routes it to the
/// node owning its slot and follows MOVED and ASK; a bounded number in flight at once. Keys
/// that turn out absent are left in `fetched.absent`.
pub(super) async fn read_by_key(
    reader: &Reader,
    connection: &mut ClusterConnection,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    for batch in symbols.chunks(IN_FLIGHT) {
        let reads = batch.iter().map(|symbol| {
            let mut connection = connection.clone();
            let mut command = redis::cmd("HMGET");
            command
                .arg([&reader.prefix[..], symbol].concat())
                .arg(reader.fields);
            async move { command.query_async::<Value>(&mut connection).await }
        });
        for (symbol, reply) in batch.iter().zip(join_all(reads).await) {
            match reply {
                Ok(value) => {
                    reader.take_reads(vec![symbol.clone()], vec![value], fetched, false)?
                }
                Err(error) if error.code() == Some("WRONGTYPE") => fetched.wrong_type += 1,
                Err(error) => return Err(reader.classify(error, false)),
            }
        }
        fetched.commands += batch.len();
        fetched.round_trips += 1;
    }
    Ok(())
}

/// Every replica in `CLUSTER NODES` text, healthy or not.
fn replica_addrs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_replica = fields.get(2)?.split(',').any(|flag| flag == "slave");
            is_replica.then(|| fields[1].split(['@', ',']).next().map(str::to_owned))?
        })
        .collect()
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
        slots: Vec<(u16, u16)>,
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
                // `first-last` or one slot; `[slot->-id]` marks a migration in progress.
                slots: fields[8..]
                    .iter()
                    .filter_map(|range| {
                        let (first, last) = range.split_once('-').unwrap_or((range, range));
                        Some((first.parse().ok()?, last.parse().ok()?))
                    })
                    .collect(),
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
        .filter(|line| has_flag(line, "master") && !line.slots.is_empty() && healthy(line))
        .map(|primary| Shard {
            primary: primary.addr.clone(),
            slots: primary.slots.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_give_each_primary_and_its_linked_replicas() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10921 10922
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
                    slots: vec![(0, 5460)],
                },
                Shard {
                    primary: "127.0.0.1:7002".into(),
                    replicas: vec![],
                    slots: vec![(5461, 10921), (10922, 10922)],
                },
            ]
        );
        assert_eq!(parse_nodes("garbage\n"), vec![]);
        assert_eq!(
            replica_addrs(text),
            ["127.0.0.1:7004", "127.0.0.1:7005", "127.0.0.1:7007"]
        );
    }
}

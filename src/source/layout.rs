//! A Redis Cluster's layout, from `CLUSTER NODES`: its shards, the node read in each by the read
//! policy, and which of them holds each slot; a replica promoted since the last layout counts as
//! a failover. Reading the nodes is `cluster`'s.

use std::collections::HashMap;

use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};

use super::Source;
use super::settings::ReadFrom;
use crate::fetch::{FetchError, Node, Role};

/// A shard as `CLUSTER NODES` lists it: a primary with slots and its replicas that are linked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shard {
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

/// Slots of a Redis Cluster.
const CLUSTER_SLOTS: usize = 16_384;

impl Layout {
    /// Whether every slot has a primary: not so while a failover is under way, when the failed
    /// primary's slots have none until its replica is promoted.
    pub(super) fn serves_every_slot(&self) -> bool {
        self.owner.len() == CLUSTER_SLOTS
    }

    /// Index in `nodes` of the node that holds `key`'s slot.
    pub(super) fn node_of(&self, key: &[u8]) -> Option<usize> {
        self.owner.get(&Slot::for_key(key)).copied()
    }
}

/// Asks any node for the shards, chooses the node to read in each by the read policy, and
/// counts a replica promoted since the last call as a failover.
pub(super) async fn current(
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

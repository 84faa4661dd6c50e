//! Reads a Redis Cluster: every shard's node (its primary, or a replica by the read policy) is
//! read at once, each over a pipelined connection of its own: scanned in a discovery, or sent
//! the HMGETs of the keys its slots hold. Keys whose slot moved meanwhile are read again by key
//! through the crate's cluster connection, which follows MOVED and ASK.

use futures_util::future::join_all;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

use super::pipe::Multiplexed;
use super::reader::Reader;
use super::{Source, discovery, hashes, layout};
use crate::fetch::{FetchError, Fetched, Node, RawHash, Role};

/// Reads by key in flight at once: bounds the work a flood of notifications (a resharding
/// announces every key it moves) queues on the cluster connection.
const IN_FLIGHT: usize = 500;

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
            let mut pipe = Multiplexed::new(&mut connection, true);
            discovery::discover(&reader, &mut pipe, &mut part).await?;
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
        source.layout = Some(layout::current(source, connection).await?);
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
        match layout.node_of(&key) {
            Some(index) => shares[index].push(symbol.clone()),
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
                let mut pipe = Multiplexed::new(&mut connection, true);
                hashes::read(&reader, &mut pipe, &share, &mut part).await?;
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

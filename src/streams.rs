//! Follows the apply layer's two Redis streams on a connection of its own: at start-up the newest
//! entries (XREVRANGE) fill the per-symbol gauges, then XREAD blocks (polls, in a cluster) for
//! entries after the last ID seen, and XINFO now and then reports length, trimming and
//! consumer-group lag. Observation only: never XREADGROUP, XACK, XGROUP or any write. Publishes the rendered `quantum_apply_*`
//! families for the server; interpreting entries is `apply`'s job.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use enum_map::EnumMap;
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::apply::{
    ApplyPublication, ApplyState, ApplyView, Entry, EntryId, Group, StreamInfo, StreamKind,
};
use crate::source::{Announcements, Endpoint, Link, RedisSettings, SettingsError};

/// How long one XREAD waits for new entries; also how soon a stream that appears is noticed.
const BLOCK: Duration = Duration::from_millis(1_000);
/// Entries taken per stream and read: a burst of 10,000 arrives in ten reads.
const READ_COUNT: usize = 1_000;
/// Newest entries read at start-up for the per-symbol gauges; the real streams keep ~10,000.
const RECALL: usize = 2_000;
/// Between two XINFO rounds (length, trimming, consumer groups).
pub(crate) const INFO_EVERY: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Where this follower has read to in one stream, and what it needs to tell entries trimmed
/// away unread from entries it read.
#[derive(Clone, Copy, Debug, Default)]
struct Position {
    /// The last ID read; `None` until the stream was first looked at.
    last: Option<EntryId>,
    /// `entries-added` when the position was taken, and entries read since.
    added_at_start: u64,
    read: u64,
    /// Entries already counted as lost.
    lost: u64,
}

pub struct Follower {
    endpoint: Endpoint,
    /// New primaries as the sentinels announce them: the streams are then read from there.
    switches: Option<Announcements>,
    keys: EnumMap<StreamKind, String>,
    positions: EnumMap<StreamKind, Position>,
    state: ApplyState,
    publisher: watch::Sender<Arc<ApplyPublication>>,
    /// The clock the state's join ages plans by: monotonic, from the follower's start.
    started: std::time::Instant,
}

/// A failed command; the follower reconnects and resumes from its positions.
type Failure = redis::RedisError;

/// Why following stopped: the follower reconnects at once after a failover, with backoff
/// after a failure.
enum Stop {
    Failover,
    Failed(String),
}

/// Between two rounds of non-blocking reads of a cluster's streams: the delay an entry can
/// wait, for 20 commands a second.
const CLUSTER_POLL: Duration = Duration::from_millis(100);

impl Follower {
    /// Checks the settings; connects only when run. The receiver holds what was observed,
    /// empty until the streams were first looked at.
    pub fn new(
        settings: &RedisSettings,
        plan_stream: &str,
        result_stream: &str,
    ) -> Result<(Follower, watch::Receiver<Arc<ApplyPublication>>), SettingsError> {
        // A blocked XREAD must not be taken for a Redis that stopped answering.
        let config = settings
            .connection_config()
            .set_response_timeout(Some(BLOCK + settings.response_timeout));
        let endpoint = Endpoint::new(settings, config)?;
        let (publisher, receiver) = watch::channel(Arc::default());
        let keys = EnumMap::from_array([plan_stream.to_owned(), result_stream.to_owned()]);
        let follower = Follower {
            endpoint,
            switches: None,
            keys,
            positions: EnumMap::default(),
            state: ApplyState::default(),
            publisher,
            started: std::time::Instant::now(),
        };
        Ok((follower, receiver))
    }

    /// Reconnects to the new primary whenever a sentinel announces a failover.
    pub fn follow_failovers(&mut self, switches: Announcements) {
        self.switches = Some(switches);
    }

    /// Follows forever, reconnecting with backoff; a lost connection keeps the counts and the
    /// positions, so reading resumes after the last entry read.
    pub async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        let mut last_error = String::new();
        loop {
            let failure = match self.endpoint.connect().await {
                Ok(Link::Node(mut connection)) => {
                    retry = FIRST_RETRY;
                    self.follow(&mut connection, true).await
                }
                Ok(Link::Cluster(mut connection)) => {
                    retry = FIRST_RETRY;
                    self.follow(&mut connection, false).await
                }
                Err(error) => Stop::Failed(error.to_string()),
            };
            self.state.following = false;
            self.publish();
            let message = match failure {
                Stop::Failover => continue,
                Stop::Failed(message) => message,
            };
            if message != last_error {
                tracing::warn!(
                    addr = self.endpoint.addr(),
                    "following the apply streams failed, retrying: {message}"
                );
                last_error = message;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// One look at both streams, as `status` makes it: the newest entries recalled into the
    /// view, nothing followed.
    pub(crate) async fn view_once(mut self) -> Result<ApplyView, String> {
        match self.endpoint.connect().await.map_err(|e| e.to_string())? {
            Link::Node(mut connection) => self.look(&mut connection).await,
            Link::Cluster(mut connection) => self.look(&mut connection).await,
        }
        .map_err(|e| e.to_string())?;
        self.state.following = true;
        Ok(self.state.view())
    }

    /// Reads until a command fails or a failover is announced. `blocking`: XREAD waits on the
    /// server; a cluster is polled instead, for its two streams may live on different nodes
    /// and one blocked XREAD would hold up the other's node connection.
    async fn follow<C: ConnectionLike + Send>(
        &mut self,
        connection: &mut C,
        blocking: bool,
    ) -> Stop {
        let mut next_info = Instant::now();
        loop {
            if self
                .switches
                .as_mut()
                .is_some_and(|switches| switches.has_changed().unwrap_or(false))
            {
                if let Some(switches) = self.switches.as_mut() {
                    switches.mark_unchanged();
                }
                return Stop::Failover;
            }
            if Instant::now() >= next_info {
                if let Err(error) = self.look(connection).await {
                    return Stop::Failed(error.to_string());
                }
                self.state.following = true;
                self.publish();
                next_info = Instant::now() + INFO_EVERY;
            }
            let read = match self.read(connection, blocking).await {
                Ok(read) => read,
                Err(error) => return Stop::Failed(error.to_string()),
            };
            let settled = self.state.settle(self.now());
            if read > 0 || settled {
                self.publish();
            } else if !blocking {
                tokio::time::sleep(CLUSTER_POLL).await;
            }
        }
    }

    /// TYPE and XINFO for each stream: positions taken on first sight, trimming and resets
    /// noticed, consumer groups read.
    async fn look<C: ConnectionLike + Send>(&mut self, connection: &mut C) -> Result<(), Failure> {
        for kind in [StreamKind::Plan, StreamKind::Result] {
            let key = self.keys[kind].clone();
            let kind_of_key: String = redis::cmd("TYPE").arg(&key).query_async(connection).await?;
            let mut info = StreamInfo {
                exists: kind_of_key == "stream",
                wrong_type: kind_of_key != "stream" && kind_of_key != "none",
                ..StreamInfo::default()
            };
            if info.wrong_type && !self.state.info[kind].wrong_type {
                tracing::warn!(
                    key,
                    kind_of_key,
                    "the apply stream's key is not a stream; not reading it"
                );
            }
            if !info.exists {
                if self.positions[kind].last.is_none() {
                    self.positions[kind] = Position {
                        last: Some(EntryId::default()),
                        ..Position::default()
                    };
                }
                self.state.update_info(kind, info, 0);
                continue;
            }
            let tip = describe(connection, &key, &mut info).await?;

            let position = &mut self.positions[kind];
            let lost = match position.last {
                None => {
                    *position = Position {
                        last: Some(tip.last_generated.unwrap_or_default()),
                        added_at_start: tip.added.unwrap_or(0),
                        ..Position::default()
                    };
                    self.recall(connection, kind).await?;
                    0
                }
                Some(last) => {
                    let went_back = tip.last_generated.is_some_and(|g| g < last)
                        || tip
                            .added
                            .is_some_and(|a| a < position.added_at_start + position.read);
                    if went_back {
                        tracing::info!(
                            key,
                            "the apply stream was made anew; reading it from its start"
                        );
                        self.state.stream_reset(kind);
                        *position = Position {
                            last: Some(EntryId::default()),
                            ..Position::default()
                        };
                        0
                    } else {
                        trimmed_unread(position, &tip, info.length)
                    }
                }
            };
            self.state.update_info(kind, info, lost);
        }
        Ok(())
    }

    /// The newest entries already in a stream, oldest first, into the per-symbol gauges.
    async fn recall<C: ConnectionLike + Send>(
        &mut self,
        connection: &mut C,
        kind: StreamKind,
    ) -> Result<(), Failure> {
        let newest: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys[kind])
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(RECALL)
            .query_async(connection)
            .await?;
        let mut entries: Vec<Entry> = items(&newest).iter().filter_map(entry).collect();
        entries.reverse();
        let now = self.now();
        for entry in &entries {
            self.state.recall(kind, entry, now);
        }
        Ok(())
    }

    /// Reads every readable stream after its position: one XREAD that blocks until an entry
    /// comes, or (`blocking` false) one XREAD per stream that answers at once. Returns the
    /// entries read.
    async fn read<C: ConnectionLike + Send>(
        &mut self,
        connection: &mut C,
        blocking: bool,
    ) -> Result<usize, Failure> {
        let readable: Vec<StreamKind> = [StreamKind::Plan, StreamKind::Result]
            .into_iter()
            .filter(|kind| {
                !self.state.info[*kind].wrong_type && self.positions[*kind].last.is_some()
            })
            .collect();
        if readable.is_empty() {
            tokio::time::sleep(BLOCK).await;
            return Ok(0);
        }
        let groups: Vec<&[StreamKind]> = if blocking {
            vec![&readable]
        } else {
            readable.chunks(1).collect()
        };
        let mut read = 0;
        for group in groups {
            let mut command = redis::cmd("XREAD");
            command.arg("COUNT").arg(READ_COUNT);
            if blocking {
                command.arg("BLOCK").arg(BLOCK.as_millis() as u64);
            }
            command.arg("STREAMS");
            for kind in group {
                command.arg(&self.keys[*kind]);
            }
            for kind in group {
                command.arg(self.positions[*kind].last.unwrap_or_default().to_string());
            }
            let reply: Value = command.query_async(connection).await?;
            read += self.take_entries(&reply, group);
        }
        Ok(read)
    }

    /// The entries of an XREAD reply past each stream's position; returns how many.
    fn take_entries(&mut self, reply: &Value, readable: &[StreamKind]) -> usize {
        let now = self.now();
        let mut read = 0;
        for stream in items(reply) {
            let parts = items(stream);
            let (Some(key), Some(entries)) = (parts.first().and_then(text), parts.get(1)) else {
                continue;
            };
            let Some(kind) = readable.iter().copied().find(|k| self.keys[*k] == key) else {
                continue;
            };
            for entry in items(entries).iter().filter_map(entry) {
                let position = &mut self.positions[kind];
                if position.last.is_some_and(|last| entry.id <= last) {
                    continue;
                }
                position.last = Some(entry.id);
                position.read += 1;
                self.state.observe(kind, &entry, now);
                read += 1;
            }
        }
        read
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn publish(&self) {
        self.publisher
            .send_replace(Arc::new(ApplyPublication::new(&self.state)));
    }
}

/// Entries trimmed (or deleted) before they were read, not yet counted. Everything added since
/// the position was taken is read, still in the stream after the position, or lost; the middle
/// term is known when the follower has caught up (none) or was trimmed past (all there is).
fn trimmed_unread(position: &mut Position, stream: &Tip, length: u64) -> u64 {
    let (Some(last), Some(added)) = (position.last, stream.added) else {
        return 0;
    };
    let unread = if stream.last_generated.is_none_or(|newest| newest <= last) {
        0
    } else if stream.first_entry.is_some_and(|first| first > last) {
        length
    } else {
        return 0;
    };
    let lost = added
        .saturating_sub(position.added_at_start)
        .saturating_sub(position.read)
        .saturating_sub(unread);
    let new = lost.saturating_sub(position.lost);
    position.lost = position.lost.max(lost);
    new
}

/// `XINFO STREAM` and `XINFO GROUPS` of a stream that exists: its length, newest entry and
/// consumer groups into `info`, and where it stands, to tell trimming from a stream made anew.
async fn describe<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    info: &mut StreamInfo,
) -> Result<Tip, Failure> {
    let stream: Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(connection)
        .await?;
    let stream = pairs(&stream);
    info.length = number(stream.get("length").copied());
    let tip = Tip {
        first_entry: stream
            .get("first-entry")
            .and_then(|e| entry(e))
            .map(|e| e.id),
        last_generated: id(stream.get("last-generated-id").copied()),
        added: stream.get("entries-added").map(|v| number(Some(v))),
    };
    info.last_entry = stream
        .get("last-entry")
        .and_then(|e| entry(e))
        .map(|e| e.id);
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(connection)
        .await?;
    info.groups = consumer_groups(&groups);
    Ok(tip)
}

/// Where a stream stands, from XINFO STREAM.
#[derive(Clone, Copy, Debug, Default)]
struct Tip {
    first_entry: Option<EntryId>,
    last_generated: Option<EntryId>,
    /// `entries-added`: every entry ever added, Redis 7 or later.
    added: Option<u64>,
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(other) => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
        None => 0,
    }
}

fn id(value: Option<&Value>) -> Option<EntryId> {
    EntryId::parse(text(value?)?.as_bytes())
}

/// A reply of alternating names and values (XINFO), by name.
fn pairs(value: &Value) -> HashMap<String, &Value> {
    match value {
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => items(value)
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, pair.get(1)?)))
            .collect(),
    }
}

/// `[id, [field, value, ...]]` as an entry; `None` for anything else.
fn entry(value: &Value) -> Option<Entry> {
    let parts = items(value);
    let id = EntryId::parse(text(parts.first()?)?.as_bytes())?;
    let bytes = |v: &Value| match v {
        Value::BulkString(bytes) => Some(bytes.clone()),
        other => text(other).map(String::into_bytes),
    };
    let fields = items(parts.get(1)?)
        .chunks(2)
        .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?)?)))
        .collect();
    Some(Entry { id, fields })
}

fn consumer_groups(reply: &Value) -> Vec<Group> {
    items(reply)
        .iter()
        .filter_map(|group| {
            let fields = pairs(group);
            let name = text(fields.get("name")?)?;
            // Names become label values: keep them printable and short.
            let name: String = name
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .take(64)
                .collect();
            Some(Group {
                name,
                pending: number(fields.get("pending").copied()),
                lag: match fields.get("lag") {
                    Some(Value::Nil) | None => None,
                    Some(lag) => Some(number(Some(lag))),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Option<EntryId> {
        Some(EntryId { ms, seq: 0 })
    }

    #[test]
    fn entries_added_but_neither_read_nor_left_are_lost_once() {
        let mut position = Position {
            last: at(100),
            added_at_start: 1_000,
            read: 50,
            lost: 0,
        };
        let tip = |first: u64, newest: u64, added: u64| Tip {
            first_entry: at(first),
            last_generated: at(newest),
            added: Some(added),
        };
        // Behind, not trimmed past: how many of the stream's entries are unread is not known.
        assert_eq!(trimmed_unread(&mut position, &tip(90, 150, 1_100), 500), 0);
        // Trimmed past: 1,200 added since, 50 read, 100 left (all unread): 1,050 lost.
        assert_eq!(
            trimmed_unread(&mut position, &tip(200, 300, 2_200), 100),
            1_050
        );
        assert_eq!(
            trimmed_unread(&mut position, &tip(200, 300, 2_200), 100),
            0,
            "counted once"
        );
        // Caught up after a loss that no look saw while it was behind.
        let mut caught_up = Position {
            last: at(500),
            added_at_start: 0,
            read: 11,
            lost: 0,
        };
        assert_eq!(trimmed_unread(&mut caught_up, &tip(400, 500, 100), 10), 89);
        // Without entries-added (Redis < 7) nothing can be said.
        let no_count = Tip {
            added: None,
            ..tip(600, 700, 0)
        };
        assert_eq!(trimmed_unread(&mut position, &no_count, 100), 0);
    }

    #[test]
    fn replies_parse_into_entries_and_groups() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let raw = Value::Array(vec![
            bulk("1769130500000-3"),
            Value::Array(vec![
                bulk("symbol"),
                bulk("BTCUSDT"),
                Value::BulkString(vec![0xff]),
                bulk("x"),
            ]),
        ]);
        let parsed = entry(&raw).unwrap();
        assert_eq!(
            parsed.id,
            EntryId {
                ms: 1_769_130_500_000,
                seq: 3
            }
        );
        assert_eq!(parsed.fields.len(), 2);
        let groups = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("guard\n"),
            bulk("pending"),
            Value::Int(7),
            bulk("lag"),
            Value::Nil,
        ])]);
        assert_eq!(
            consumer_groups(&groups),
            [Group {
                name: "guard\u{fffd}".into(),
                pending: 7,
                lag: None
            }]
        );
        assert_eq!(entry(&bulk("garbage")), None);
    }
}

//! Follows the apply layer's two Redis streams on a connection of its own: at start-up the newest
//! entries (XREVRANGE) fill the per-symbol gauges, then XREAD blocks (polls, in a cluster) for
//! entries after the last ID seen, and XINFO now and then reports length, trimming and
//! consumer-group lag. Observation only: never XREADGROUP, XACK, XGROUP or any write. Publishes
//! the rendered `quantum_apply_*` families for the server; interpreting entries is `apply`'s job,
//! where it stands in a stream `position`'s, parsing the replies `reply`'s.

mod position;
mod reply;

use std::sync::Arc;
use std::time::Duration;

use enum_map::EnumMap;
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::apply::{ApplyPublication, ApplyState, ApplyView, Entry, StreamInfo, StreamKind};
use crate::source::{Announcements, Endpoint, Link, RedisSettings, SettingsError};
use position::{Position, describe};
use reply::{entry, items, text};

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
    /// empty until the streams were first looked at. Each symbol's recent plans are kept for
    /// `plans_max_age`, none when it is zero.
    pub fn new(
        settings: &RedisSettings,
        plan_stream: &str,
        result_stream: &str,
        plans_max_age: Duration,
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
            state: ApplyState::with_book_max_age(plans_max_age),
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
                    self.positions[kind] = Position::at_start();
                }
                self.state.update_info(kind, info, 0);
                continue;
            }
            let tip = describe(connection, &key, &mut info).await?;

            let position = &mut self.positions[kind];
            let lost = match position.last {
                None => {
                    *position = Position::at_tip(&tip);
                    self.recall(connection, kind).await?;
                    0
                }
                Some(_) if position.made_anew(&tip) => {
                    tracing::info!(
                        key,
                        "the apply stream was made anew; reading it from its start"
                    );
                    self.state.stream_reset(kind);
                    *position = Position::at_start();
                    0
                }
                Some(_) => position.trimmed_unread(&tip, info.length),
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

//! Reads proposal hashes from Redis: the configured keys, or every key under the prefix found
//! with SCAN, fetched with pipelined HMGET of the fields it is given, under connect and response
//! timeouts; a failed connection is dropped and made again on the next fetch. Returns bytes as
//! Redis holds them; interpreting them is `proposal`'s job. Where to read (one Redis, sentinels,
//! a cluster) is `link`'s; a cluster's reads are `cluster`'s.

mod changes;
mod cluster;
mod link;
mod notifications;
mod settings;
mod switches;
mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

pub(crate) use changes::ChangeReader;
pub(crate) use link::{Endpoint, Link};
pub use link::{ReadFrom, SentinelSettings, Topology};
pub(crate) use notifications::Notifications;
pub use settings::{RedisSettings, SettingsError};
pub use switches::{Announcements, Switches, switches};
use wire::Wire;

use crate::fetch::{FetchError, Fetched, RawHash};

/// SCAN's COUNT hint: large enough for few round trips, small enough not to stall Redis; it also
/// bounds the HMGETs pipelined with the next page.
const SCAN_COUNT: usize = 1_000;
/// Keys per pipelined HMGET round trip for a configured list; bounds the size of one reply.
const FETCH_BATCH: usize = 1_000;

/// Which keys to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// Every key under the prefix, found with SCAN on each refresh.
    Discover,
    /// Exactly these symbols; one without a hash is reported missing.
    Fixed(Vec<String>),
}

/// Why event mode cannot start; the exporter keeps polling meanwhile.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubscribeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(
        "keyspace notifications are off at {addr} (notify-keyspace-events is {current:?}); \
         enable them with: CONFIG SET notify-keyspace-events Khgx"
    )]
    NotificationsOff { addr: String, current: String },
}

/// A Redis connection that is made lazily and dropped after any failure.
pub struct Source {
    endpoint: Endpoint,
    link: Option<Link>,
    /// The bulk reads' own connection to the node `link` goes to, where the crate need not
    /// read it (see [`wire`]).
    wire: Option<Wire>,
    /// The prefix and the hash fields to read, in the order `RawHash` keeps them.
    reader: Reader,
    db: i64,
    connect_timeout: Duration,
    response_timeout: Duration,
    symbols: Symbols,
    /// The configured symbols as a set, which the symbols a notification names are checked
    /// against; `None` when discovering.
    fixed: Option<Arc<HashSet<Vec<u8>>>>,
    /// In a cluster, the symbols the last full read found: one that no SCAN lists while its
    /// slot moves is read by key instead of being lost.
    known: Vec<Vec<u8>>,
    /// In a cluster, where the last full read found each shard and slot.
    layout: Option<cluster::Layout>,
    /// In a cluster, the replicas the last full read found: one of them that becomes a primary
    /// is a failover.
    replicas_seen: HashSet<String>,
    /// How many hashes the last full read found, room for which the next makes at once.
    hashes_last: usize,
    /// In a cluster, a connection to each node scanned, by address. The crate's cluster
    /// connection redirects a whole pipeline when one of its replies is MOVED, which during a
    /// resharding fails every batch; on a plain connection each redirected key is re-read alone.
    node_connections: HashMap<String, MultiplexedConnection>,
}

impl Source {
    /// Checks the settings; does not connect yet, so the exporter starts even when Redis is down.
    pub fn new(
        settings: &RedisSettings,
        prefix: &str,
        symbols: Symbols,
        fields: &'static [&'static str],
    ) -> Result<Source, SettingsError> {
        let db = settings.connection_info()?.redis_settings().db();
        let endpoint = Endpoint::new(settings, settings.connection_config())?;
        Ok(Source {
            reader: Reader {
                prefix: prefix.as_bytes().into(),
                fields,
                addr: endpoint.addr().into(),
            },
            endpoint,
            link: None,
            wire: None,
            db,
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
            fixed: match &symbols {
                Symbols::Fixed(list) => Some(Arc::new(
                    list.iter().map(|s| s.as_bytes().to_vec()).collect(),
                )),
                Symbols::Discover => None,
            },
            symbols,
            known: Vec::new(),
            layout: None,
            replicas_seen: HashSet::new(),
            hashes_last: 0,
            node_connections: HashMap::new(),
        })
    }

    /// The server address (or the sentinels, or the cluster's seeds), without credentials.
    pub fn addr(&self) -> &str {
        self.endpoint.addr()
    }

    /// Drops the connection, so that the next read finds the node to read anew (after a
    /// sentinel announced a failover).
    pub(crate) fn reconnect(&mut self) {
        self.link = None;
        self.wire = None;
    }

    /// Records a primary a sentinel announced.
    pub(crate) fn saw_primary(&mut self, addr: String) {
        self.endpoint.saw_primary(addr);
    }

    /// Reads every proposal hash. On error the connection is dropped, so the next call
    /// reconnects.
    pub(crate) async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let mut link = self.link().await?;
        let mut fetched = Fetched::default();
        fetched.hashes.reserve(self.hashes_last);
        let result = match &mut link {
            Link::Node(connection) => self.fetch_node(connection, &mut fetched).await,
            Link::Cluster(connection) => self.fetch_cluster(connection, &mut fetched).await,
        };
        if result.is_err() {
            self.wire = None;
        }
        result?;
        self.hashes_last = fetched.hashes.len();
        if let Symbols::Fixed(_) = &self.symbols {
            fetched.missing = lossy_names(&fetched.absent);
        }
        // A discovered key that vanished before HMGET has simply expired.
        fetched.absent.clear();
        fetched.placement = self.endpoint.placement().clone();
        self.link = Some(link);
        Ok(fetched)
    }

    /// Reads only the given symbols (those a notification named), skipping any outside a
    /// fixed list.
    pub(crate) async fn fetch_changed(
        &mut self,
        mut symbols: Vec<Vec<u8>>,
    ) -> Result<Fetched, FetchError> {
        keep_configured(self.fixed.as_deref(), &mut symbols);
        let mut link = self.link().await?;
        let mut fetched = Fetched::default();
        match &mut link {
            Link::Node(connection) => {
                self.reader
                    .read_on(connection, &symbols, &mut fetched)
                    .await?
            }
            Link::Cluster(connection) => {
                cluster::read(self, connection, &symbols, &mut fetched).await?
            }
        }
        if matches!(self.symbols, Symbols::Fixed(_)) {
            fetched.missing = lossy_names(&fetched.absent);
        }
        fetched.placement = self.endpoint.placement().clone();
        self.link = Some(link);
        Ok(fetched)
    }

    /// A reader of announced changes to run beside the next full read, over the connection the
    /// last read left; `None` before a connection exists.
    pub(crate) fn change_reader(&self) -> Option<ChangeReader> {
        Some(ChangeReader {
            reader: self.reader.clone(),
            fixed: self.fixed.clone(),
            link: self.link.clone()?,
            placement: self.endpoint.placement().clone(),
        })
    }

    async fn link(&mut self) -> Result<Link, FetchError> {
        match self.link.take() {
            Some(link) => Ok(link),
            None => {
                self.wire = None;
                self.endpoint.connect().await
            }
        }
    }

    async fn fetch_node(
        &mut self,
        connection: &mut MultiplexedConnection,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        if self.endpoint.reads_replica() {
            let lag = link::replica_lag(connection).await;
            self.endpoint.set_replica_lag(lag);
            if !lag.is_some_and(|lag| lag.link_up) {
                // Lost its primary, or was promoted: find what to read again, by the policy.
                self.wire = None;
                *connection = match self.endpoint.connect().await? {
                    Link::Node(connection) => connection,
                    Link::Cluster(_) => return Err(self.reader.unexpected("INFO replication")),
                };
            }
        }
        if self.wire.is_none()
            && let Some(info) = self.endpoint.node_info()
        {
            self.wire = match Wire::connect(info, self.connect_timeout, self.response_timeout).await
            {
                Some(Ok(wire)) => Some(wire),
                Some(Err(error)) => return Err(self.reader.classify(error.into(), true)),
                None => None,
            };
        }
        let (reader, symbols) = (&self.reader, &self.symbols);
        match &mut self.wire {
            Some(wire) => read_all(reader, wire, symbols, fetched).await,
            None => {
                let mut pipe = Multiplexed::new(connection, false);
                read_all(reader, &mut pipe, symbols, fetched).await
            }
        }
    }

    async fn fetch_cluster(
        &mut self,
        connection: &mut ClusterConnection,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        self.layout = Some(cluster::layout(self, connection).await?);
        match &self.symbols {
            Symbols::Fixed(list) => {
                let symbols: Vec<Vec<u8>> = list.iter().map(|s| s.as_bytes().to_vec()).collect();
                cluster::read(self, connection, &symbols, fetched).await?;
            }
            Symbols::Discover => self.known = cluster::discover(self, connection, fetched).await?,
        }
        let nodes = self
            .layout
            .as_ref()
            .map(|l| l.nodes.clone())
            .unwrap_or_default();
        self.endpoint.set_cluster_nodes(nodes);
        Ok(())
    }
}

/// What every read needs: the key prefix, the fields, and the address for errors. Cheap to
/// clone, so that a cluster's nodes are read by tasks of their own, on every worker thread.
#[derive(Clone)]
pub(crate) struct Reader {
    prefix: std::sync::Arc<[u8]>,
    fields: &'static [&'static str],
    addr: std::sync::Arc<str>,
}

/// Pipelined rounds, each a SCAN from a cursor (when given) followed by the HMGETs of some
/// symbols. A round may be sent before the replies of the one before it are taken, so that Redis
/// answers it while the exporter parses those; replies are taken in the order rounds were sent.
pub(super) trait Pipe {
    /// Sends a round, counted in `fetched`.
    async fn send(
        &mut self,
        reader: &Reader,
        symbols: &[Vec<u8>],
        scan: Option<(u64, &[u8])>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError>;

    /// The oldest round's SCAN reply (the round had one): the next cursor (0 at the end) and
    /// the keys of its page.
    async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError>;

    /// The oldest round's HMGET replies, of `symbols`, into `fetched`; the round is then done.
    async fn take_reads(
        &mut self,
        reader: &Reader,
        symbols: Vec<Vec<u8>>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError>;
}

/// The crate's connection as a [`Pipe`]: a round is sent as one pipeline when its replies are
/// first taken, so rounds do not overlap here. `redirects`: a cluster node's, whose keys may
/// move to another node meanwhile; those are left in `fetched.redirected`.
pub(super) struct Multiplexed<'a> {
    connection: &'a mut MultiplexedConnection,
    redirects: bool,
    /// Rounds sent and not yet taken, the oldest first; its replies once it went out.
    rounds: VecDeque<redis::Pipeline>,
    replies: Option<std::vec::IntoIter<Value>>,
}

impl<'a> Multiplexed<'a> {
    pub(super) fn new(connection: &'a mut MultiplexedConnection, redirects: bool) -> Self {
        Multiplexed {
            connection,
            redirects,
            rounds: VecDeque::new(),
            replies: None,
        }
    }

    /// The replies of the oldest round, which goes out now if it has not yet.
    async fn replies(
        &mut self,
        reader: &Reader,
    ) -> Result<&mut std::vec::IntoIter<Value>, FetchError> {
        if self.replies.is_none() {
            let round = self
                .rounds
                .pop_front()
                .ok_or_else(|| reader.unexpected("HMGET"))?;
            let replies: Vec<Value> = round
                .query_async(self.connection)
                .await
                .map_err(|source| reader.classify(source, false))?;
            self.replies = Some(replies.into_iter());
        }
        Ok(self.replies.as_mut().expect("set above"))
    }
}

impl Pipe for Multiplexed<'_> {
    async fn send(
        &mut self,
        reader: &Reader,
        symbols: &[Vec<u8>],
        scan: Option<(u64, &[u8])>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if let Some((cursor, pattern)) = scan {
            pipe.add_command(scan_command(cursor, pattern));
        }
        reader.add_reads(&mut pipe, symbols);
        self.rounds.push_back(pipe);
        fetched.commands += symbols.len() + usize::from(scan.is_some());
        fetched.round_trips += 1;
        Ok(())
    }

    async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
        let reply = self
            .replies(reader)
            .await?
            .next()
            .ok_or_else(|| reader.unexpected("SCAN"))?;
        if let Value::ServerError(error) = reply {
            return Err(reader.classify(redis::RedisError::from(error), false));
        }
        redis::from_redis_value(reply).map_err(|_| reader.unexpected("SCAN"))
    }

    async fn take_reads(
        &mut self,
        reader: &Reader,
        symbols: Vec<Vec<u8>>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let replies: Vec<Value> = self.replies(reader).await?.collect();
        self.replies = None;
        reader.take_reads(symbols, replies, fetched, self.redirects)
    }
}

impl Reader {
    /// [`Reader::read_hashes`] over the crate's connection to one node.
    pub(super) async fn read_on(
        &self,
        connection: &mut MultiplexedConnection,
        symbols: &[Vec<u8>],
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let mut pipe = Multiplexed::new(connection, false);
        self.read_hashes(&mut pipe, symbols, fetched).await
    }

    /// HMGET of the fields for each symbol, pipelined in batches, each sent before the one
    /// before it is parsed; fills hashes, absent keys (those with none of the fields) and wrong
    /// types.
    pub(super) async fn read_hashes(
        &self,
        pipe: &mut impl Pipe,
        symbols: &[Vec<u8>],
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let mut batches = symbols.chunks(FETCH_BATCH);
        let Some(mut in_flight) = batches.next() else {
            return Ok(());
        };
        pipe.send(self, in_flight, None, fetched).await?;
        loop {
            let next = batches.next();
            if let Some(next) = next {
                pipe.send(self, next, None, fetched).await?;
            }
            pipe.take_reads(self, in_flight.to_vec(), fetched).await?;
            match next {
                Some(next) => in_flight = next,
                None => return Ok(()),
            }
        }
    }

    /// Every hash under the prefix on one node. Each round carries the next SCAN and the HMGETs
    /// of the keys the SCAN before it found, and is sent as soon as that SCAN's reply is in,
    /// before the HMGET replies ahead of it are parsed: Redis answers one round while the
    /// exporter parses the one before. A key SCAN returns twice is read twice; the snapshot
    /// keeps one.
    pub(super) async fn discover(
        &self,
        pipe: &mut impl Pipe,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let pattern = [glob_escape(&self.prefix), b"*".to_vec()].concat();
        pipe.send(self, &[], Some((0, &pattern)), fetched).await?;
        // The symbols whose HMGETs the oldest round in flight carries, and whether it scans.
        let mut in_flight: Vec<Vec<u8>> = Vec::new();
        let mut scanning = true;
        loop {
            let (mut cursor, mut found) = (None, Vec::new());
            if scanning {
                let (next, keys) = pipe.take_page(self).await?;
                cursor = (next != 0).then_some(next);
                found = keys;
                found.retain(|key| key.starts_with(&self.prefix));
                for key in &mut found {
                    key.drain(..self.prefix.len());
                }
            }
            let more = cursor.is_some() || !found.is_empty();
            if more {
                let scan = cursor.map(|cursor| (cursor, pattern.as_slice()));
                pipe.send(self, &found, scan, fetched).await?;
            }
            pipe.take_reads(self, std::mem::take(&mut in_flight), fetched)
                .await?;
            if !more {
                return Ok(());
            }
            in_flight = found;
            scanning = cursor.is_some();
        }
    }

    pub(super) fn add_reads(&self, pipe: &mut redis::Pipeline, symbols: &[Vec<u8>]) {
        for symbol in symbols {
            pipe.cmd("HMGET")
                .arg([&self.prefix[..], symbol].concat())
                .arg(self.fields);
        }
    }

    /// The HMGET replies for `symbols`, in order, into hashes, absent keys and wrong types; a
    /// cluster node's redirection (the slot moved) into `redirected` when `redirects`.
    pub(super) fn take_reads(
        &self,
        symbols: Vec<Vec<u8>>,
        replies: Vec<Value>,
        fetched: &mut Fetched,
        redirects: bool,
    ) -> Result<(), FetchError> {
        if replies.len() != symbols.len() {
            return Err(self.unexpected("HMGET"));
        }
        for (symbol, reply) in symbols.into_iter().zip(replies) {
            match reply {
                Value::ServerError(error) if error.code() == "WRONGTYPE" => fetched.wrong_type += 1,
                Value::ServerError(error)
                    if redirects && matches!(error.code(), "MOVED" | "ASK" | "TRYAGAIN") =>
                {
                    fetched.redirected.push(symbol);
                }
                Value::ServerError(error) => {
                    return Err(self.classify(redis::RedisError::from(error), false));
                }
                reply => self.packed(symbol, reply, fetched)?,
            }
        }
        Ok(())
    }

    /// HMGET's reply into `fetched`, as [`Reader::keep`] keeps it.
    pub(super) fn packed(
        &self,
        symbol: Vec<u8>,
        reply: Value,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let Value::Array(items) = reply else {
            return Err(self.unexpected("HMGET"));
        };
        let mut values = Vec::with_capacity(items.len());
        for item in &items {
            values.push(match item {
                Value::BulkString(bytes) => Some(bytes.as_slice()),
                Value::SimpleString(text) => Some(text.as_bytes()),
                Value::Nil => None,
                _ => return Err(self.unexpected("HMGET")),
            });
        }
        self.keep(symbol, &values, fetched)
    }

    /// The values of one HMGET reply, in the order of the fields asked for, into `fetched`: as
    /// a [`RawHash`], or the symbol as absent when the key has none of the fields.
    pub(super) fn keep(
        &self,
        symbol: Vec<u8>,
        values: &[Option<&[u8]>],
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        if values.len() != self.fields.len() {
            return Err(self.unexpected("HMGET"));
        }
        if values.iter().all(Option::is_none) {
            fetched.absent.push(symbol);
        } else {
            fetched.hashes.push(RawHash::new(symbol, values));
        }
        Ok(())
    }

    pub(super) fn classify(&self, source: redis::RedisError, connecting: bool) -> FetchError {
        let addr = self.addr.to_string();
        if source.is_timeout() {
            FetchError::Timeout { addr, source }
        } else if connecting {
            FetchError::Connect { addr, source }
        } else {
            FetchError::Command { addr, source }
        }
    }

    pub(super) fn unexpected(&self, command: &'static str) -> FetchError {
        FetchError::Reply {
            addr: self.addr.to_string(),
            command,
        }
    }
}

/// SCAN of the keys matching `pattern`, from `cursor`, a page of [`SCAN_COUNT`].
fn scan_command(cursor: u64, pattern: &[u8]) -> redis::Cmd {
    let mut scan = redis::cmd("SCAN");
    scan.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    scan
}

/// Drops the symbols outside `fixed`, the configured ones, if any.
fn keep_configured(fixed: Option<&HashSet<Vec<u8>>>, symbols: &mut Vec<Vec<u8>>) {
    if let Some(fixed) = fixed {
        symbols.retain(|symbol| fixed.contains(symbol));
    }
}

/// The configured symbols' hashes, or every hash under the prefix.
async fn read_all(
    reader: &Reader,
    pipe: &mut impl Pipe,
    symbols: &Symbols,
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    match symbols {
        Symbols::Fixed(list) => {
            let symbols: Vec<Vec<u8>> = list.iter().map(|s| s.as_bytes().to_vec()).collect();
            reader.read_hashes(pipe, &symbols, fetched).await
        }
        Symbols::Discover => reader.discover(pipe, fetched).await,
    }
}

fn lossy_names(symbols: &[Vec<u8>]) -> Vec<String> {
    symbols
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Escapes the glob characters of SCAN's MATCH so that a prefix is matched literally.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(prefix.len() + 4);
    for &byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            escaped.push(b'\\');
        }
        escaped.push(byte);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose SCAN pages are given, which records each round sent and each reply taken.
    struct Recorder {
        pages: Vec<Vec<&'static str>>,
        scanned: usize,
        events: Vec<String>,
    }

    fn names(symbols: &[Vec<u8>]) -> String {
        let names: Vec<_> = symbols.iter().map(|s| String::from_utf8_lossy(s)).collect();
        names.join(",")
    }

    impl Pipe for Recorder {
        async fn send(
            &mut self,
            _: &Reader,
            symbols: &[Vec<u8>],
            scan: Option<(u64, &[u8])>,
            _: &mut Fetched,
        ) -> Result<(), FetchError> {
            let scan = scan.map(|(cursor, _)| cursor);
            self.events
                .push(format!("send [{}] scan {scan:?}", names(symbols)));
            Ok(())
        }

        async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
            let page = self.scanned;
            self.scanned += 1;
            self.events.push(format!("page {page}"));
            let keys = self.pages[page]
                .iter()
                .map(|symbol| [&reader.prefix[..], symbol.as_bytes()].concat())
                .collect();
            let next = if self.scanned < self.pages.len() {
                self.scanned
            } else {
                0
            };
            Ok((next as u64, keys))
        }

        async fn take_reads(
            &mut self,
            _: &Reader,
            symbols: Vec<Vec<u8>>,
            _: &mut Fetched,
        ) -> Result<(), FetchError> {
            self.events.push(format!("reads [{}]", names(&symbols)));
            Ok(())
        }
    }

    /// Each round goes out as soon as the SCAN reply before it is in, before the HMGET replies
    /// ahead of it are taken, so that Redis answers one round while the other is parsed.
    #[tokio::test]
    async fn a_round_is_sent_before_the_replies_ahead_of_it_are_parsed() {
        let reader = Reader {
            prefix: Arc::from(&b"p:"[..]),
            fields: &["kill_score"],
            addr: Arc::from("127.0.0.1:6379"),
        };
        let mut node = Recorder {
            pages: vec![vec!["A", "B"], vec!["C", "A"], vec!["D"]],
            scanned: 0,
            events: Vec::new(),
        };
        let mut fetched = Fetched::default();
        reader.discover(&mut node, &mut fetched).await.unwrap();
        assert_eq!(
            node.events,
            [
                "send [] scan Some(0)",
                "page 0",
                "send [A,B] scan Some(1)",
                "reads []",
                "page 1",
                "send [C,A] scan Some(2)",
                "reads [A,B]",
                "page 2",
                "send [D] scan None",
                "reads [C,A]",
                "reads [D]",
            ]
        );
        let symbols: Vec<Vec<u8>> = (0..2_500).map(|i| format!("S{i}").into_bytes()).collect();
        node.events.clear();
        reader
            .read_hashes(&mut node, &symbols, &mut fetched)
            .await
            .unwrap();
        let rounds: Vec<String> = node
            .events
            .iter()
            .map(|event| event.split(" [").next().unwrap().to_owned())
            .collect();
        assert_eq!(rounds, ["send", "send", "reads", "send", "reads", "reads"]);
    }

    #[test]
    fn glob_characters_in_the_prefix_are_literal() {
        assert_eq!(
            glob_escape(b"quantum:harvest:proposal:"),
            b"quantum:harvest:proposal:"
        );
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn password_is_added_only_when_the_url_has_none() {
        let settings = |url: &str| RedisSettings {
            topology: Topology::Single,
            read_from: ReadFrom::Primary,
            url: url.into(),
            password: Some(crate::secret::Secret::new("from-env")),
            ca_file: None,
            client_cert: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        };
        let password = |url: &str| {
            let (client, _) = settings(url).client().unwrap();
            let info = client.get_connection_info();
            info.redis_settings().password().map(str::to_owned)
        };
        assert_eq!(
            password("redis://127.0.0.1:1/0").as_deref(),
            Some("from-env")
        );
        assert_eq!(
            password("redis://:from-url@127.0.0.1:1/0").as_deref(),
            Some("from-url")
        );
        let source = Source::new(
            &settings("redis://127.0.0.1:1/0"),
            "p:",
            Symbols::Discover,
            &["a"],
        )
        .unwrap();
        assert_eq!(source.addr(), "127.0.0.1:1");
        assert!(Source::new(&settings("http://nowhere"), "p:", Symbols::Discover, &["a"]).is_err());
    }
}

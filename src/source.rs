//! Reads proposal hashes from Redis: the configured keys, or every key under the prefix found
//! with SCAN, fetched with pipelined HMGET of the fields it is given, under connect and response
//! timeouts; a failed connection is dropped and made again on the next fetch. Returns bytes as
//! Redis holds them; interpreting them is `proposal`'s job.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use enum_map::Enum;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Value};

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

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// A `redis://` or `rediss://` URL, possibly with user, password and database.
    pub url: String,
    /// Used when the URL carries no password.
    pub password: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for `rediss://`.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// Settings that cannot make a Redis client: found at start-up, before any connection.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid redis address: {source}")]
    Address { source: redis::RedisError },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A read of Redis that failed; the refresh loop counts it by [`ErrorKind`] and retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot connect to redis at {addr}: {source}")]
    Connect {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis at {addr} did not answer in time: {source}")]
    Timeout {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis command failed at {addr}: {source}")]
    Command {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis at {addr} sent an unexpected reply to {command}")]
    Reply { addr: String, command: &'static str },
}

/// Why a read failed, as the `kind` label of the refresh-error counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub(crate) enum ErrorKind {
    Connect,
    Timeout,
    Command,
}

impl ErrorKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Command => "command",
        }
    }
}

impl FetchError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            FetchError::Connect { .. } => ErrorKind::Connect,
            FetchError::Timeout { .. } => ErrorKind::Timeout,
            FetchError::Command { .. } | FetchError::Reply { .. } => ErrorKind::Command,
        }
    }
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

/// One hash read from Redis: the symbol (the key without the prefix) and the values of the
/// requested fields, packed in one buffer so that a large fetch makes few allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHash {
    pub symbol: Vec<u8>,
    data: Vec<u8>,
    /// End offset of each value in `data`, or [`ABSENT`].
    ends: Vec<u32>,
}

const ABSENT: u32 = u32::MAX;

impl RawHash {
    /// Packs the values of the requested fields, in request order; `None` where absent.
    pub(crate) fn new(symbol: Vec<u8>, values: &[Option<&[u8]>]) -> RawHash {
        let mut data = Vec::with_capacity(values.iter().flatten().map(|v| v.len()).sum());
        let ends = values
            .iter()
            .map(|value| match value {
                Some(value) => {
                    data.extend_from_slice(value);
                    data.len() as u32
                }
                None => ABSENT,
            })
            .collect();
        RawHash { symbol, data, ends }
    }

    /// The value of the `index`-th requested field.
    pub(crate) fn value(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)?;
        if end == ABSENT {
            return None;
        }
        let start = self.ends[..index]
            .iter()
            .rev()
            .find(|e| **e != ABSENT)
            .copied()
            .unwrap_or(0);
        Some(&self.data[start as usize..end as usize])
    }
}

/// What one fetch found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub hashes: Vec<RawHash>,
    /// Configured symbols whose key does not exist (full fetches with a fixed list only).
    pub missing: Vec<String>,
    /// Symbols asked for by a partial fetch whose key no longer exists.
    pub absent: Vec<Vec<u8>>,
    /// Keys under the prefix that hold something other than a hash.
    pub wrong_type: usize,
    /// Commands sent (SCAN pages plus HMGETs), for cost accounting.
    pub commands: usize,
    /// Round trips made.
    pub round_trips: usize,
}

impl RedisSettings {
    /// A client for these settings and the server address without credentials; does not connect.
    pub fn client(&self) -> Result<(Client, String), SettingsError> {
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|source| SettingsError::Address { source })?;
        if let Some(password) = &self.password
            && info.redis_settings().password().is_none()
        {
            let redis_settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis_settings);
        }
        let addr = info.addr().to_string();
        let client = match &self.ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|source| SettingsError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(info, certs)
            }
            None => Client::open(info),
        }
        .map_err(|source| SettingsError::Address { source })?;
        Ok((client, addr))
    }

    pub(crate) fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }
}

/// A Redis connection that is made lazily and dropped after any failure.
pub struct Source {
    client: Client,
    /// The hash fields to read, in the order `RawHash` keeps them.
    fields: &'static [&'static str],
    addr: String,
    db: i64,
    connect_timeout: Duration,
    config: AsyncConnectionConfig,
    connection: Option<MultiplexedConnection>,
    prefix: Vec<u8>,
    symbols: Symbols,
}

impl Source {
    /// Checks the settings; does not connect yet, so the exporter starts even when Redis is down.
    pub fn new(
        settings: &RedisSettings,
        prefix: &str,
        symbols: Symbols,
        fields: &'static [&'static str],
    ) -> Result<Source, SettingsError> {
        let (client, addr) = settings.client()?;
        let db = settings
            .url
            .as_str()
            .into_connection_info()
            .map(|info| info.redis_settings().db())
            .unwrap_or(0);
        Ok(Source {
            client,
            fields,
            addr,
            db,
            connect_timeout: settings.connect_timeout,
            config: settings.connection_config(),
            connection: None,
            prefix: prefix.as_bytes().to_vec(),
            symbols,
        })
    }

    /// The server address, without credentials, for logs.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Reads every proposal hash. On error the connection is dropped, so the next call
    /// reconnects.
    pub(crate) async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let mut connection = self.connection().await?;
        let mut fetched = Fetched::default();
        match &self.symbols {
            Symbols::Fixed(list) => {
                let symbols: Vec<Vec<u8>> = list.iter().map(|s| s.as_bytes().to_vec()).collect();
                self.read_hashes(&mut connection, &symbols, &mut fetched)
                    .await?;
                fetched.missing = lossy_names(&fetched.absent);
                fetched.absent.clear();
            }
            Symbols::Discover => {
                self.discover(&mut connection, &mut fetched).await?;
                // A discovered key that vanished before HMGET has simply expired.
                fetched.absent.clear();
            }
        }
        self.connection = Some(connection);
        Ok(fetched)
    }

    /// Reads only the given symbols (those a notification named), skipping any outside a
    /// fixed list.
    pub(crate) async fn fetch_changed(
        &mut self,
        mut symbols: Vec<Vec<u8>>,
    ) -> Result<Fetched, FetchError> {
        if let Symbols::Fixed(list) = &self.symbols {
            symbols.retain(|s| {
                list.iter()
                    .any(|configured| configured.as_bytes() == s.as_slice())
            });
        }
        let mut connection = self.connection().await?;
        let mut fetched = Fetched::default();
        self.read_hashes(&mut connection, &symbols, &mut fetched)
            .await?;
        if matches!(self.symbols, Symbols::Fixed(_)) {
            fetched.missing = lossy_names(&fetched.absent);
        }
        self.connection = Some(connection);
        Ok(fetched)
    }

    /// Subscribes to keyspace notifications for the prefix, after checking that Redis sends
    /// them for hash commands.
    pub(crate) async fn subscribe(&mut self) -> Result<Notifications, SubscribeError> {
        let mut connection = self.connection().await?;
        let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut connection)
            .await;
        self.connection = Some(connection);
        match config {
            Ok(pair) => {
                let current = pair.get(1).cloned().unwrap_or_default();
                if !(current.contains('K') && (current.contains('A') || current.contains('h'))) {
                    return Err(SubscribeError::NotificationsOff {
                        addr: self.addr.clone(),
                        current,
                    });
                }
            }
            // A least-privilege user may not read the config: subscribe and trust the operator.
            Err(error) => tracing::debug!("cannot read notify-keyspace-events: {error}"),
        }
        let channel_prefix = [
            format!("__keyspace@{}__:", self.db).as_bytes(),
            &self.prefix,
        ]
        .concat();
        let pattern = [glob_escape(&channel_prefix), b"*".to_vec()].concat();
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(self.connect_timeout, subscribe).await {
            Ok(result) => result.map_err(|source| self.classify(source, true))?,
            Err(_) => {
                let source =
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
                return Err(FetchError::Timeout {
                    addr: self.addr.clone(),
                    source,
                }
                .into());
            }
        };
        Ok(Notifications {
            messages: pubsub.into_on_message(),
            channel_prefix,
        })
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, FetchError> {
        match self.connection.take() {
            Some(connection) => Ok(connection),
            None => self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map_err(|source| self.classify(source, true)),
        }
    }

    /// HMGET of the fields for each symbol, pipelined in batches; fills hashes, absent keys
    /// (those with none of the fields) and wrong types.
    async fn read_hashes(
        &self,
        connection: &mut MultiplexedConnection,
        symbols: &[Vec<u8>],
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        for batch in symbols.chunks(FETCH_BATCH) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            self.add_reads(&mut pipe, batch);
            let replies: Vec<Value> = pipe
                .query_async(connection)
                .await
                .map_err(|source| self.classify(source, false))?;
            fetched.commands += batch.len();
            fetched.round_trips += 1;
            self.take_reads(batch, replies, fetched)?;
        }
        Ok(())
    }

    /// Every hash under the prefix. Each round trip carries the HMGETs of the keys that the
    /// previous SCAN page found along with the next SCAN, so a refresh costs one round trip per
    /// page plus one, and the SCAN COUNT bounds the size of every reply.
    async fn discover(
        &self,
        connection: &mut MultiplexedConnection,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let pattern = [glob_escape(&self.prefix), b"*".to_vec()].concat();
        // SCAN may return a key twice while Redis resizes its table.
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut found: Vec<Vec<u8>> = Vec::new();
        let mut cursor = Some(0u64);
        while cursor.is_some() || !found.is_empty() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            self.add_reads(&mut pipe, &found);
            if let Some(cursor) = cursor {
                pipe.cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
            }
            let mut replies: Vec<Value> = pipe
                .query_async(connection)
                .await
                .map_err(|source| self.classify(source, false))?;
            fetched.commands += replies.len();
            fetched.round_trips += 1;
            let page = match cursor {
                Some(_) => {
                    let reply = replies.pop().ok_or_else(|| self.unexpected("SCAN"))?;
                    if let Value::ServerError(error) = reply {
                        return Err(self.classify(redis::RedisError::from(error), false));
                    }
                    let (next, keys): (u64, Vec<Vec<u8>>) =
                        redis::from_redis_value(reply).map_err(|_| self.unexpected("SCAN"))?;
                    cursor = (next != 0).then_some(next);
                    keys
                }
                None => Vec::new(),
            };
            self.take_reads(&found, replies, fetched)?;
            found = page
                .into_iter()
                .filter_map(|key| key.strip_prefix(self.prefix.as_slice()).map(<[u8]>::to_vec))
                .filter(|symbol| seen.insert(symbol.clone()))
                .collect();
        }
        Ok(())
    }

    fn add_reads(&self, pipe: &mut redis::Pipeline, symbols: &[Vec<u8>]) {
        for symbol in symbols {
            pipe.cmd("HMGET")
                .arg([self.prefix.as_slice(), symbol].concat())
                .arg(self.fields);
        }
    }

    /// The HMGET replies for `symbols`, in order, into hashes, absent keys and wrong types.
    fn take_reads(
        &self,
        symbols: &[Vec<u8>],
        replies: Vec<Value>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        if replies.len() != symbols.len() {
            return Err(self.unexpected("HMGET"));
        }
        for (symbol, reply) in symbols.iter().zip(replies) {
            match reply {
                Value::ServerError(error) if error.code() == "WRONGTYPE" => fetched.wrong_type += 1,
                Value::ServerError(error) => {
                    return Err(self.classify(redis::RedisError::from(error), false));
                }
                reply => match self.packed(symbol, reply)? {
                    Some(hash) => fetched.hashes.push(hash),
                    None => fetched.absent.push(symbol.clone()),
                },
            }
        }
        Ok(())
    }

    /// HMGET's reply packed as a [`RawHash`]; `None` when the key has none of the fields.
    fn packed(&self, symbol: &[u8], reply: Value) -> Result<Option<RawHash>, FetchError> {
        let Value::Array(items) = reply else {
            return Err(self.unexpected("HMGET"));
        };
        if items.len() != self.fields.len() {
            return Err(self.unexpected("HMGET"));
        }
        let mut values = Vec::with_capacity(items.len());
        for item in &items {
            values.push(match item {
                Value::BulkString(bytes) => Some(bytes.as_slice()),
                Value::SimpleString(text) => Some(text.as_bytes()),
                Value::Nil => None,
                _ => return Err(self.unexpected("HMGET")),
            });
        }
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(RawHash::new(symbol.to_vec(), &values)))
    }

    fn classify(&self, source: redis::RedisError, connecting: bool) -> FetchError {
        let addr = self.addr.clone();
        if source.is_timeout() {
            FetchError::Timeout { addr, source }
        } else if connecting {
            FetchError::Connect { addr, source }
        } else {
            FetchError::Command { addr, source }
        }
    }

    fn unexpected(&self, command: &'static str) -> FetchError {
        FetchError::Reply {
            addr: self.addr.clone(),
            command,
        }
    }
}

/// The symbols whose keys changed, as Redis announces them on its keyspace channels.
pub(crate) struct Notifications {
    messages: redis::aio::PubSubStream,
    channel_prefix: Vec<u8>,
}

/// Changed symbols taken in one batch at most, so that a flood still yields regular updates.
const MAX_BATCH: usize = 10_000;

impl Notifications {
    /// Waits for a change, then takes every change already waiting: the symbols, sorted and
    /// unique. `None` when the subscription has ended (connection lost or killed).
    pub(crate) async fn next_batch(&mut self) -> Option<Vec<Vec<u8>>> {
        use futures_util::{FutureExt as _, StreamExt as _};
        let first = self.messages.next().await?;
        let mut symbols: Vec<Vec<u8>> = self.symbol_of(&first).into_iter().collect();
        while symbols.len() < MAX_BATCH {
            match self.messages.next().now_or_never() {
                Some(Some(message)) => symbols.extend(self.symbol_of(&message)),
                Some(None) | None => break,
            }
        }
        symbols.sort_unstable();
        symbols.dedup();
        Some(symbols)
    }

    fn symbol_of(&self, message: &redis::Msg) -> Option<Vec<u8>> {
        let channel: Vec<u8> = message.get_channel().ok()?;
        channel
            .strip_prefix(self.channel_prefix.as_slice())
            .map(<[u8]>::to_vec)
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

    #[test]
    fn glob_characters_in_the_prefix_are_literal() {
        assert_eq!(
            glob_escape(b"quantum:harvest:proposal:"),
            b"quantum:harvest:proposal:"
        );
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn packed_values_come_back_in_order() {
        let hash = RawHash::new(
            b"X".to_vec(),
            &[Some(b"0.5"), None, Some(b""), Some(b"PARTIAL_75"), None],
        );
        assert_eq!(hash.value(0), Some(&b"0.5"[..]));
        assert_eq!(hash.value(1), None);
        assert_eq!(hash.value(2), Some(&b""[..]));
        assert_eq!(hash.value(3), Some(&b"PARTIAL_75"[..]));
        assert_eq!(hash.value(4), None);
        assert_eq!(hash.value(5), None);
    }

    #[test]
    fn password_is_added_only_when_the_url_has_none() {
        let settings = |url: &str| RedisSettings {
            url: url.into(),
            password: Some("from-env".into()),
            ca_file: None,
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

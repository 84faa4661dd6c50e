//! The Redis layer: [`Source`] reads proposal hashes, the configured keys or every key under the
//! prefix, into `fetch`'s types, and drops a failed connection to make it again on the next read.
//! Bytes stay as Redis holds them: interpreting them is `proposal`'s job.

mod changes;
mod cluster;
mod discovery;
mod hashes;
mod layout;
mod link;
mod notifications;
mod pipe;
mod reader;
mod sentinel;
mod settings;
mod switches;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

pub(crate) use changes::ChangeReader;
pub(crate) use link::{Endpoint, Link};
pub(crate) use notifications::Notifications;
use pipe::{Multiplexed, Pipe};
use reader::Reader;
pub use settings::{ReadFrom, RedisSettings, SentinelSettings, SettingsError, Topology};
pub use switches::{Announcements, Switches, switches};
use wire::Wire;

use crate::fetch::{FetchError, Fetched};

/// Which keys to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// Every key under the prefix, found with SCAN on each refresh.
    Discover,
    /// Exactly these symbols; one without a hash is reported missing.
    Fixed(Vec<String>),
}

/// A Redis connection that is made lazily and dropped after any failure.
pub struct Source {
    endpoint: Endpoint,
    link: Option<Link>,
    /// The bulk reads' own connection to the node `link` goes to, where the crate need not
    /// read it (see [`wire`]).
    wire: Option<Wire>,
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
    layout: Option<layout::Layout>,
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
                hashes::read_on(&self.reader, connection, &symbols, &mut fetched).await?
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
        self.layout = Some(layout::current(self, connection).await?);
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
            hashes::read(reader, pipe, &symbols, fetched).await
        }
        Symbols::Discover => discovery::discover(reader, pipe, fetched).await,
    }
}

fn lossy_names(symbols: &[Vec<u8>]) -> Vec<String> {
    symbols
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

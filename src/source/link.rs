//! Finds the Redis node to read and connects to it: the one address configured, the primary (or a
//! healthy replica) that the sentinels name, or a Redis Cluster through the crate's cluster client.
//! Keeps where the reads go and counts failovers; what is read over a connection is the caller's
//! job, and the sentinels are asked by `sentinel`.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelServerType;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo};

use super::sentinel::{Lookup, Sentinels};
use super::settings::{ReadFrom, RedisSettings, SettingsError, Topology};
use crate::fetch::{FetchError, Mode, Node, Placement, ReplicaLag, Role};

/// An open connection to what the settings describe.
#[derive(Clone)]
pub(crate) enum Link {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

enum Locator {
    Single {
        client: Box<Client>,
        /// Whether the address was asked if it is a cluster node.
        probed: bool,
    },
    Sentinel(Sentinels),
    Cluster(Box<ClusterClient>),
}

/// Connects to the node (or cluster) to read, finding it anew at every connection.
pub(crate) struct Endpoint {
    locator: Locator,
    settings: RedisSettings,
    config: AsyncConnectionConfig,
    /// Bounds a search through sentinels and replicas, which the crate does not time out.
    search_timeout: Duration,
    /// For error messages: the address, the sentinels or the seeds.
    addr: String,
    placement: Placement,
    last_primary: Option<String>,
    /// How to reach the node the last connection went to; `None` in a cluster.
    node_info: Option<ConnectionInfo>,
}

impl Endpoint {
    /// Checks the settings; does not connect.
    pub(crate) fn new(
        settings: &RedisSettings,
        config: AsyncConnectionConfig,
    ) -> Result<Endpoint, SettingsError> {
        let (client, single_addr) = settings.client()?;
        let (locator, addr, mode) = match &settings.topology {
            Topology::Single => (
                Locator::Single {
                    client: Box::new(client),
                    probed: false,
                },
                single_addr,
                Mode::Single,
            ),
            Topology::Sentinel(sentinel) => (
                Locator::Sentinel(Sentinels::new(settings, sentinel)?),
                format!("sentinels {}", sentinel.addrs.join(",")),
                Mode::Sentinel,
            ),
            Topology::Cluster(seeds) => (
                Locator::Cluster(Box::new(cluster_client(settings, seeds)?)),
                format!("cluster {}", seeds.join(",")),
                Mode::Cluster,
            ),
        };
        Ok(Endpoint {
            locator,
            settings: settings.clone(),
            search_timeout: settings.connect_timeout * 2 + settings.response_timeout,
            config,
            addr,
            placement: Placement {
                mode,
                ..Placement::default()
            },
            last_primary: None,
            node_info: None,
        })
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// How to reach the node the last connection went to; `None` in a cluster.
    pub(crate) fn node_info(&self) -> Option<&ConnectionInfo> {
        self.node_info.as_ref()
    }

    pub(crate) fn placement(&self) -> &Placement {
        &self.placement
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.locator, Locator::Cluster(_))
    }

    /// Records the nodes a cluster refresh read.
    pub(crate) fn set_cluster_nodes(&mut self, nodes: Vec<Node>) {
        self.placement.nodes = nodes;
    }

    /// Records a replica's link to its primary, as the last read found it.
    pub(crate) fn set_replica_lag(&mut self, lag: Option<ReplicaLag>) {
        self.placement.replica_lag = lag;
    }

    /// Counts replicas a cluster promoted.
    pub(crate) fn count_failovers(&mut self, promoted: u64) {
        self.placement.failovers += promoted;
    }

    /// Timeouts for a connection of the caller's own to one node.
    pub(crate) fn config(&self) -> AsyncConnectionConfig {
        self.config.clone()
    }

    pub(crate) fn read_from(&self) -> ReadFrom {
        self.settings.read_from
    }

    /// Records the primary's address as a sentinel announced it; a change counts as a failover.
    pub(crate) fn saw_primary(&mut self, addr: String) {
        if self.last_primary.as_ref().is_some_and(|last| *last != addr) {
            self.placement.failovers += 1;
        }
        self.last_primary = Some(addr);
    }

    /// Whether reads go to replicas and their lag must be checked.
    pub(crate) fn reads_replica(&self) -> bool {
        self.placement
            .nodes
            .first()
            .is_some_and(|node| node.role == Role::Replica)
            && !self.is_cluster()
    }

    /// Opens a connection to what to read now.
    pub(crate) async fn connect(&mut self) -> Result<Link, FetchError> {
        match &mut self.locator {
            Locator::Single { client, probed } => {
                let client = Client::clone(client);
                let probe = !*probed;
                let mut connection = self.open(&client).await?;
                if probe && self.is_cluster_node(&mut connection).await {
                    tracing::info!(addr = %self.addr, "the address is a Redis Cluster node: reading the whole cluster");
                    let seed = self.addr.clone();
                    self.locator = Locator::Cluster(Box::new(
                        cluster_client(&self.settings, &[seed])
                            .map_err(|error| self.settings_failed(error))?,
                    ));
                    self.placement.mode = Mode::Cluster;
                    return self.connect_cluster().await;
                }
                if let Locator::Single { probed, .. } = &mut self.locator {
                    *probed = true;
                }
                self.placement.nodes = vec![Node {
                    addr: self.addr.clone(),
                    role: Role::Primary,
                }];
                self.node_info = Some(client.get_connection_info().clone());
                Ok(Link::Node(connection))
            }
            Locator::Sentinel(_) => self.connect_through_sentinels().await,
            Locator::Cluster(_) => self.connect_cluster().await,
        }
    }

    /// A client for the primary, for what must go there whatever the read policy: keyspace
    /// notifications, which replicas do not send.
    pub(crate) async fn primary_client(&mut self) -> Result<Client, FetchError> {
        match &mut self.locator {
            Locator::Single { client, .. } => Ok(Client::clone(client)),
            Locator::Sentinel(_) => {
                let found = self
                    .ask_sentinels(SentinelServerType::Master)
                    .await
                    .map_err(|_| self.timed_out())?
                    .map_err(|source| self.connect_failed(source))?;
                self.saw_primary(node_addr(found.get_connection_info()));
                Ok(found)
            }
            // A cluster has a primary per shard: the caller asks `node_client` for each.
            Locator::Cluster(_) => Err(FetchError::Reply {
                addr: self.addr.clone(),
                command: "SUBSCRIBE",
            }),
        }
    }

    /// Clients for the given cluster nodes, with the cluster's credentials and TLS.
    pub(crate) fn node_client(&self, addr: &str) -> Result<Client, FetchError> {
        let (client, _) = self
            .settings
            .client_for(addr)
            .map_err(|error| self.settings_failed(error))?;
        Ok(client)
    }

    async fn ask_sentinels(&mut self, server_type: SentinelServerType) -> Lookup {
        let Locator::Sentinel(sentinels) = &mut self.locator else {
            unreachable!("called for sentinels only")
        };
        sentinels.ask(server_type, self.search_timeout).await
    }

    async fn connect_through_sentinels(&mut self) -> Result<Link, FetchError> {
        // The primary is looked up whatever the policy: its address is how failovers are seen.
        let found_primary = self.ask_sentinels(SentinelServerType::Master).await;
        if self.settings.read_from != ReadFrom::Primary {
            // Each pick is a random healthy-looking replica; a few tries find a linked one.
            for _ in 0..3 {
                let Ok(Ok(client)) = self.ask_sentinels(SentinelServerType::Replica).await else {
                    break;
                };
                let Ok(mut connection) = self.open(&client).await else {
                    continue;
                };
                let lag = replica_lag(&mut connection).await;
                if lag.is_some_and(|lag| lag.link_up) {
                    self.note_primary(&found_primary);
                    self.placement.replica_lag = lag;
                    self.placement.nodes = vec![Node {
                        addr: node_addr(client.get_connection_info()),
                        role: Role::Replica,
                    }];
                    self.node_info = Some(client.get_connection_info().clone());
                    return Ok(Link::Node(connection));
                }
            }
            if self.settings.read_from == ReadFrom::Replica {
                self.note_primary(&found_primary);
                return Err(FetchError::Connect {
                    addr: self.addr.clone(),
                    source: redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no healthy replica (--redis.read-from=replica never reads the primary)",
                    )),
                });
            }
        }
        let client = match found_primary {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => return Err(self.connect_failed(source)),
            Err(_) => return Err(self.timed_out()),
        };
        self.saw_primary(node_addr(client.get_connection_info()));
        let connection = self.open(&client).await?;
        self.placement.replica_lag = None;
        self.placement.nodes = vec![Node {
            addr: node_addr(client.get_connection_info()),
            role: Role::Primary,
        }];
        self.node_info = Some(client.get_connection_info().clone());
        Ok(Link::Node(connection))
    }

    fn note_primary(&mut self, found: &Lookup) {
        if let Ok(Ok(client)) = found {
            self.saw_primary(node_addr(client.get_connection_info()));
        }
    }

    async fn connect_cluster(&mut self) -> Result<Link, FetchError> {
        let Locator::Cluster(client) = &self.locator else {
            unreachable!("called for a cluster only")
        };
        let client = client.clone();
        self.node_info = None;
        match tokio::time::timeout(self.search_timeout, client.get_async_connection()).await {
            Ok(Ok(connection)) => Ok(Link::Cluster(connection)),
            Ok(Err(source)) => Err(self.connect_failed(source)),
            Err(_) => Err(self.timed_out()),
        }
    }

    async fn open(&self, client: &Client) -> Result<MultiplexedConnection, FetchError> {
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|source| self.connect_failed(source))
    }

    async fn is_cluster_node(&self, connection: &mut MultiplexedConnection) -> bool {
        let info: redis::RedisResult<String> = redis::cmd("INFO")
            .arg("cluster")
            .query_async(connection)
            .await;
        info.is_ok_and(|info| info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }

    fn connect_failed(&self, source: redis::RedisError) -> FetchError {
        if source.is_timeout() {
            FetchError::Timeout {
                addr: self.addr.clone(),
                source,
            }
        } else {
            FetchError::Connect {
                addr: self.addr.clone(),
                source,
            }
        }
    }

    fn timed_out(&self) -> FetchError {
        FetchError::Timeout {
            addr: self.addr.clone(),
            source: redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        }
    }

    fn settings_failed(&self, error: SettingsError) -> FetchError {
        FetchError::Connect {
            addr: self.addr.clone(),
            source: redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "invalid settings",
                error.to_string(),
            )),
        }
    }
}

/// `INFO replication` of a replica; `None` when the node is not one (or did not answer).
pub(crate) async fn replica_lag(connection: &mut MultiplexedConnection) -> Option<ReplicaLag> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(connection)
        .await
        .ok()?;
    replica_lag_in(&info)
}

/// A replica's lag in `INFO replication` text: `master_link_status`, and the seconds since the
/// last exchange or since the link went down; `None` when the text is not a replica's.
fn replica_lag_in(info: &str) -> Option<ReplicaLag> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("role")? != "slave" {
        return None;
    }
    let link_up = field("master_link_status") == Some("up");
    let seconds = if link_up {
        field("master_last_io_seconds_ago")
    } else {
        field("master_link_down_since_seconds")
    };
    Some(ReplicaLag {
        link_up,
        seconds: seconds
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s >= 0.0)
            .unwrap_or(0.0),
    })
}

/// `host:port` of a connection's address.
pub(crate) fn node_addr(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => info.addr().to_string(),
    }
}

fn cluster_client(
    settings: &RedisSettings,
    seeds: &[String],
) -> Result<ClusterClient, SettingsError> {
    let seeds = seeds
        .iter()
        .map(|seed| settings.connection_info_for(seed))
        .collect::<Result<Vec<_>, SettingsError>>()?;
    let tls = seeds
        .first()
        .is_some_and(|seed| matches!(seed.addr(), ConnectionAddr::TcpTls { .. }));
    let mut builder = ClusterClient::builder(seeds)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        // A refresh that fails is retried by the refresh loop; the crate's own retries would
        // only hold the last values back for longer.
        .retries(2);
    if settings.read_from != ReadFrom::Primary {
        // Connections to replicas then send READONLY, so that they answer reads of their slots.
        builder = builder.read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy);
    }
    if tls {
        builder = builder.tls(redis::TlsMode::Secure);
        if let Some(certificates) = settings.certificates()? {
            builder = builder.certs(certificates);
        }
    }
    builder
        .build()
        .map_err(|source| SettingsError::Address { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lag_reads_the_link_and_its_age() {
        let up = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:3\r\n";
        assert_eq!(
            replica_lag_in(up),
            Some(ReplicaLag {
                link_up: true,
                seconds: 3.0
            })
        );
        let down = "role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\nmaster_link_down_since_seconds:12\n";
        assert_eq!(
            replica_lag_in(down),
            Some(ReplicaLag {
                link_up: false,
                seconds: 12.0
            })
        );
        assert_eq!(replica_lag_in("role:master\nconnected_slaves:2\n"), None);
        assert_eq!(replica_lag_in("garbage"), None);
    }
}

//! How to reach Redis, as the settings give it: the URL (with the password added), the CA,
//! client certificate and server name for TLS, the timeouts, the topology and which node to read.
//! Makes clients; does not connect.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use redis::io::AsyncDNSResolver;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo};

use crate::secret::{Secret, redact_url};

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisSettings {
    pub topology: Topology,
    pub read_from: ReadFrom,
    /// A `redis://` or `rediss://` URL, possibly with user, password and database.
    pub url: String,
    /// Used when the URL carries no password.
    pub password: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate, for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and its key, for a server that requires one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate is checked against, and sent in SNI, when it is not
    /// the URL's host.
    pub tls_server_name: Option<String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("topology", &self.topology)
            .field("read_from", &self.read_from)
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("tls_server_name", &self.tls_server_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// How the Redis deployment is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One address (`--redis.addr`); a cluster node there is detected at the first connection.
    Single,
    Sentinel(SentinelSettings),
    /// Seed nodes as `host:port`.
    Cluster(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelSettings {
    /// `host:port` of each sentinel.
    pub addrs: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    pub password: Option<Secret>,
    pub tls: bool,
}

/// Which node the refresh reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadFrom {
    #[default]
    Primary,
    /// Never the primary: with no healthy replica, the read fails and the last values stay.
    Replica,
    /// A healthy replica, else the primary.
    PreferReplica,
}

/// Settings that cannot make a Redis client: found at start-up, before any connection.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid redis address: {source}")]
    Address { source: redis::RedisError },
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RedisSettings {
    /// A client for the configured address and that address without credentials; does not
    /// connect.
    pub fn client(&self) -> Result<(Client, String), SettingsError> {
        let info = self.connection_info()?;
        let addr = info.addr().to_string();
        // The crate checks the certificate against the host it connects to: the host becomes the
        // server name, which `connection_config`'s resolver maps back to the URL's host.
        let info = match (&self.tls_server_name, info.addr().clone()) {
            (
                Some(name),
                ConnectionAddr::TcpTls {
                    port,
                    insecure,
                    tls_params,
                    ..
                },
            ) => info.set_addr(ConnectionAddr::TcpTls {
                host: name.clone(),
                port,
                insecure,
                tls_params,
            }),
            _ => info,
        };
        Ok((self.open(info)?, addr))
    }

    /// A client for another node of the same deployment (a cluster node), with the URL's
    /// credentials and TLS.
    pub(crate) fn client_for(&self, node: &str) -> Result<(Client, String), SettingsError> {
        let info = self.connection_info_for(node)?;
        let addr = info.addr().to_string();
        Ok((self.open(info)?, addr))
    }

    /// The URL's connection settings, with the password added when the URL carries none.
    pub(crate) fn connection_info(&self) -> Result<redis::ConnectionInfo, SettingsError> {
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|source| SettingsError::Address { source })?;
        if let Some(password) = &self.password
            && info.redis_settings().password().is_none()
        {
            let redis_settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(redis_settings);
        }
        Ok(info)
    }

    /// The URL's settings at another `host:port`, in database 0 (a cluster has no other).
    pub(crate) fn connection_info_for(
        &self,
        node: &str,
    ) -> Result<redis::ConnectionInfo, SettingsError> {
        let info = self.connection_info()?;
        let scheme = match info.addr() {
            ConnectionAddr::TcpTls { .. } => "rediss",
            _ => "redis",
        };
        let node_info = format!("{scheme}://{node}/0")
            .as_str()
            .into_connection_info()
            .map_err(|source| SettingsError::Address { source })?;
        let redis_settings = info.redis_settings().clone().set_db(0);
        Ok(node_info.set_redis_settings(redis_settings))
    }

    /// The CA to trust and the client certificate to show for TLS, when either is configured.
    pub(crate) fn certificates(&self) -> Result<Option<redis::TlsCertificates>, SettingsError> {
        if self.ca_file.is_none() && self.client_cert.is_none() {
            return Ok(None);
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| SettingsError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        let client_tls = match &self.client_cert {
            Some((cert, key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            None => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert: self.ca_file.as_ref().map(read).transpose()?,
        }))
    }

    fn open(&self, info: redis::ConnectionInfo) -> Result<Client, SettingsError> {
        match self.certificates()? {
            Some(certs) => Client::build_with_tls(info, certs),
            None => Client::open(info),
        }
        .map_err(|source| SettingsError::Address { source })
    }

    pub(crate) fn connection_config(&self) -> AsyncConnectionConfig {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let url_host = self
            .connection_info()
            .ok()
            .and_then(|info| match info.addr() {
                ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
                _ => None,
            });
        match (&self.tls_server_name, url_host) {
            (Some(name), Some(host)) => config.set_dns_resolver(ServerNameResolver {
                name: name.clone(),
                host,
            }),
            _ => config,
        }
    }
}

/// Resolves the TLS server name to the URL's host, and every other name as usual.
struct ServerNameResolver {
    name: String,
    host: String,
}

impl AsyncDNSResolver for ServerNameResolver {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let target = if host == self.name { &self.host } else { host };
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((target, port)).await?;
            Ok(Box::new(addrs) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

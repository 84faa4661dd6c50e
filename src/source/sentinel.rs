//! Asks the sentinels where the primary, or a healthy-looking replica, is: every sentinel at once,
//! each on a clock of its own. Connecting to what they name, and the read policy, are `link`'s;
//! their failover announcements are `switches`'.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, IntoConnectionInfo};

use super::settings::{RedisSettings, SentinelSettings, SettingsError};

/// A sentinel's answer: a client for the node it names, its error, or its silence.
pub(super) type Lookup = Result<redis::RedisResult<Client>, tokio::time::error::Elapsed>;

/// One client per sentinel, so that each is asked on a clock of its own: the crate's client for
/// several sentinels waits on each in turn for its own timeouts, which a hung first sentinel can
/// make longer than the whole search may take.
pub(super) struct Sentinels {
    primary: Vec<SentinelClient>,
    replicas: Vec<SentinelClient>,
}

impl Sentinels {
    pub(super) fn new(
        settings: &RedisSettings,
        sentinel: &SentinelSettings,
    ) -> Result<Sentinels, SettingsError> {
        Ok(Sentinels {
            primary: clients(settings, sentinel, SentinelServerType::Master)?,
            replicas: clients(settings, sentinel, SentinelServerType::Replica)?,
        })
    }

    /// The first sentinel's answer for the primary (`server_type` Master) or a replica, in the
    /// configured order, as the crate takes them. Every sentinel is asked at once, each within
    /// `timeout`, so that one that hangs (a paused process, a host gone without a
    /// reset) delays the next one's answer by that timeout at most, and never stops it.
    pub(super) async fn ask(
        &mut self,
        server_type: SentinelServerType,
        timeout: Duration,
    ) -> Lookup {
        let sentinels = match server_type {
            SentinelServerType::Master => &mut self.primary,
            _ => &mut self.replicas,
        };
        let mut lookups: FuturesOrdered<_> = sentinels
            .iter_mut()
            .map(|sentinel| tokio::time::timeout(timeout, sentinel.async_get_client()))
            .collect();
        // A sentinel's error says more than another's silence.
        let mut failed = None;
        while let Some(lookup) = lookups.next().await {
            match lookup {
                Ok(Ok(client)) => return Ok(Ok(client)),
                Ok(Err(error)) => failed = Some(Ok(Err(error))),
                Err(elapsed) => {
                    failed.get_or_insert(Err(elapsed));
                }
            }
        }
        failed.expect("at least one sentinel is configured")
    }
}

/// A client for each sentinel.
fn clients(
    settings: &RedisSettings,
    sentinel: &SentinelSettings,
    server_type: SentinelServerType,
) -> Result<Vec<SentinelClient>, SettingsError> {
    sentinel
        .addrs
        .iter()
        .map(|addr| client(settings, sentinel, addr, server_type.clone()))
        .collect()
}

fn client(
    settings: &RedisSettings,
    sentinel: &SentinelSettings,
    addr: &str,
    server_type: SentinelServerType,
) -> Result<SentinelClient, SettingsError> {
    let data = settings.connection_info()?;
    let data_tls = matches!(data.addr(), ConnectionAddr::TcpTls { .. });
    let certificates = settings.certificates()?;
    let info = format!("redis://{addr}")
        .as_str()
        .into_connection_info()
        .map_err(|source| SettingsError::Address { source })?;
    let addr = match info.addr().clone() {
        ConnectionAddr::Tcp(host, port) if sentinel.tls => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        addr => addr,
    };
    let address_error = |source| SettingsError::Address { source };
    let mut builder = SentinelClientBuilder::new([addr], &sentinel.master, server_type)
        .map_err(address_error)?
        .set_client_to_redis_db(data.redis_settings().db());
    let redis_settings = data.redis_settings();
    if let Some(username) = redis_settings.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = redis_settings.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if data_tls {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = certificates.clone() {
            builder = builder.set_client_to_redis_certificates(certificates);
        }
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    if sentinel.tls {
        builder = builder.set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = certificates {
            builder = builder.set_client_to_sentinel_certificates(certificates);
        }
    }
    builder.build().map_err(address_error)
}

//! Listens on the sentinels' `+switch-master` channel, so that a failover is followed as soon as
//! it is announced rather than at the next failed read. Only announces: reconnecting is the
//! readers' job.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::{Client, IntoConnectionInfo as _};
use tokio::sync::watch;

use super::settings::{RedisSettings, SentinelSettings, SettingsError, Topology};

const CHANNEL: &str = "+switch-master";
/// Before subscribing again after a sentinel failed or went away.
const RETRY: Duration = Duration::from_secs(1);
/// Between two PINGs on the subscription: a sentinel that hangs (a paused process, a host gone
/// without a reset) must not keep the listener waiting for announcements that never come.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Each new primary's `host:port`, as the sentinels announce it.
pub type Announcements = watch::Receiver<Option<String>>;

/// The subscription, moving to the next sentinel when one goes away.
pub struct Switches {
    sentinels: Vec<(String, Client)>,
    master: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    announced: watch::Sender<Option<String>>,
}

/// With sentinels configured, the listener to run and the receiver of each new primary's
/// `host:port`; `None` for other topologies.
pub fn switches(
    settings: &RedisSettings,
) -> Result<Option<(Switches, Announcements)>, SettingsError> {
    let Topology::Sentinel(sentinel) = &settings.topology else {
        return Ok(None);
    };
    let sentinels = sentinel
        .addrs
        .iter()
        .map(|addr| Ok((addr.clone(), sentinel_client(settings, sentinel, addr)?)))
        .collect::<Result<Vec<_>, SettingsError>>()?;
    let (announced, receiver) = watch::channel(None);
    let switches = Switches {
        sentinels,
        master: sentinel.master.clone(),
        connect_timeout: settings.connect_timeout,
        response_timeout: settings.response_timeout,
        announced,
    };
    Ok(Some((switches, receiver)))
}

impl Switches {
    /// Listens forever, on one sentinel at a time.
    pub async fn run(self) {
        for (addr, client) in self.sentinels.iter().cycle() {
            match self.listen(client).await {
                Ok(()) => tracing::debug!(sentinel = addr, "sentinel subscription ended"),
                Err(error) => {
                    tracing::debug!(sentinel = addr, "{CHANNEL} subscription failed: {error}")
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn listen(&self, client: &Client) -> redis::RedisResult<()> {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let timed_out = |_| std::io::Error::from(std::io::ErrorKind::TimedOut);
        let pubsub = tokio::time::timeout(self.connect_timeout, subscribe)
            .await
            .map_err(timed_out)??;
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Ok(());
                    };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(primary) = new_primary(&payload, &self.master) {
                        tracing::info!(primary, "a sentinel announced a failover");
                        self.announced.send_replace(Some(primary));
                    }
                }
                _ = ping.tick() => {
                    tokio::time::timeout(self.response_timeout, sink.ping::<redis::Value>())
                        .await
                        .map_err(timed_out)??;
                }
            }
        }
    }
}

/// The new primary in a `+switch-master` payload (`<name> <old-ip> <old-port> <new-ip>
/// <new-port>`), when it is about `master`.
fn new_primary(payload: &str, master: &str) -> Option<String> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    match parts.as_slice() {
        [name, _, _, ip, port] if *name == master => Some(if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }),
        _ => None,
    }
}

fn sentinel_client(
    settings: &RedisSettings,
    sentinel: &SentinelSettings,
    addr: &str,
) -> Result<Client, SettingsError> {
    let scheme = if sentinel.tls { "rediss" } else { "redis" };
    let mut info = format!("{scheme}://{addr}")
        .as_str()
        .into_connection_info()
        .map_err(|source| SettingsError::Address { source })?;
    if let Some(password) = &sentinel.password {
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        info = info.set_redis_settings(redis_settings);
    }
    match settings.certificates()?.filter(|_| sentinel.tls) {
        Some(certs) => Client::build_with_tls(info, certs),
        None => Client::open(info),
    }
    .map_err(|source| SettingsError::Address { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_watched_master_counts() {
        assert_eq!(
            new_primary("harvest 127.0.0.1 7001 127.0.0.1 7002", "harvest").as_deref(),
            Some("127.0.0.1:7002")
        );
        assert_eq!(
            new_primary("other 127.0.0.1 7001 127.0.0.1 7002", "harvest"),
            None
        );
        assert_eq!(
            new_primary("harvest ::1 7001 ::1 7002", "harvest").as_deref(),
            Some("[::1]:7002")
        );
        assert_eq!(new_primary("garbage", "harvest"), None);
    }
}

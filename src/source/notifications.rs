//! Keyspace notifications: the subscription on the primary (on every primary, in a cluster) and
//! the batches of changed symbols it yields. Reading the changed hashes is `Source`'s job.

use std::time::Duration;

use redis::Client;

use super::discovery::glob_escape;
use super::{Source, link};
use crate::fetch::FetchError;

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

impl Source {
    /// Subscribes to keyspace notifications for the prefix on the primary (or, in a cluster,
    /// on every primary), after checking that Redis sends them for hash commands. Replicas send
    /// none, so this goes to the primary whatever `--redis.read-from` says.
    pub(crate) async fn subscribe(&mut self) -> Result<Notifications, SubscribeError> {
        let targets = if self.endpoint.is_cluster() {
            let mut targets = Vec::new();
            let primaries = self.layout.as_ref().map(|l| l.primaries.as_slice());
            for node in primaries.unwrap_or_default() {
                targets.push((node.clone(), self.endpoint.node_client(node)?));
            }
            targets
        } else {
            let client = self.endpoint.primary_client().await?;
            vec![(link::node_addr(client.get_connection_info()), client)]
        };
        let mut streams = Vec::with_capacity(targets.len());
        for (node, client) in &targets {
            use futures_util::StreamExt as _;
            // Each node's messages, then `None` when its subscription ends, so that losing one
            // node's subscription ends the whole (a cluster's other nodes would hide it).
            let messages = self.subscribe_node(client, node).await?.map(Some);
            streams.push(
                messages
                    .chain(futures_util::stream::once(std::future::ready(None)))
                    .boxed(),
            );
        }
        let nodes = targets.into_iter().map(|(node, _)| node).collect();
        let channel_prefix = self.channel_prefix();
        Ok(Notifications {
            messages: futures_util::stream::select_all(streams),
            channel_prefix,
            nodes,
            pending: Vec::new(),
            deadline: None,
        })
    }

    /// Whether the last read found every slot of a cluster served (always, outside a cluster):
    /// a layout read in the middle of a failover lacks the primary being promoted.
    pub(crate) fn serves_every_slot(&self) -> bool {
        !self.endpoint.is_cluster()
            || self
                .layout
                .as_ref()
                .is_none_or(|layout| layout.serves_every_slot())
    }

    /// Whether a subscription still covers every primary: in a cluster, a failover or a new
    /// shard calls for a new one.
    pub(crate) fn covers(&self, notifications: &Notifications) -> bool {
        !self.endpoint.is_cluster()
            || self
                .layout
                .as_ref()
                .is_none_or(|layout| notifications.nodes == layout.primaries)
    }

    fn channel_prefix(&self) -> Vec<u8> {
        [
            format!("__keyspace@{}__:", self.db).as_bytes(),
            &self.reader.prefix,
        ]
        .concat()
    }

    async fn subscribe_node(
        &self,
        client: &Client,
        node: &str,
    ) -> Result<redis::aio::PubSubStream, SubscribeError> {
        let pattern = [glob_escape(&self.channel_prefix()), b"*".to_vec()].concat();
        let addr = || format!("{} ({node})", self.endpoint.addr());
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query_async(&mut client.get_multiplexed_async_connection().await?)
                .await;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>((pubsub, config))
        };
        let (pubsub, config) = match tokio::time::timeout(self.connect_timeout, subscribe).await {
            Ok(Ok(subscribed)) => subscribed,
            Ok(Err(source)) => {
                return Err(FetchError::Connect {
                    addr: addr(),
                    source,
                }
                .into());
            }
            Err(_) => {
                let source =
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
                return Err(FetchError::Timeout {
                    addr: addr(),
                    source,
                }
                .into());
            }
        };
        match config {
            Ok(pair) => {
                let current = pair.get(1).cloned().unwrap_or_default();
                if !(current.contains('K') && (current.contains('A') || current.contains('h'))) {
                    return Err(SubscribeError::NotificationsOff {
                        addr: addr(),
                        current,
                    });
                }
            }
            // A least-privilege user may not read the config: subscribe and trust the operator.
            Err(error) => tracing::debug!("cannot read notify-keyspace-events: {error}"),
        }
        Ok(pubsub.into_on_message())
    }
}

/// The symbols whose keys changed, as Redis announces them on its keyspace channels.
pub(crate) struct Notifications {
    messages: futures_util::stream::SelectAll<
        futures_util::stream::BoxStream<'static, Option<redis::Msg>>,
    >,
    channel_prefix: Vec<u8>,
    /// The nodes subscribed to.
    nodes: Vec<String>,
    /// The batch being taken, and when its window closes.
    pending: Vec<Vec<u8>>,
    deadline: Option<tokio::time::Instant>,
}

/// Changed symbols taken in one batch at most, so that a flood still yields regular updates.
const MAX_BATCH: usize = 10_000;

impl Notifications {
    /// Waits for a change, then takes the changes that come within `window`: the symbols,
    /// sorted and unique. `None` when the subscription has ended (connection lost or killed).
    /// Cancel-safe: what a cancelled call took waits for the next one, whose window ends when
    /// the cancelled one's would have. The refresh loop cancels it whenever a full read or its
    /// publication ends, and that read may predate the changes taken.
    pub(crate) async fn next_batch(&mut self, window: Duration) -> Option<Vec<Vec<u8>>> {
        use futures_util::StreamExt as _;
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => {
                // A subscription that ended (`None` from one node) ends the batch and the whole.
                let first = self.messages.next().await??;
                self.pending.extend(self.symbol_of(&first));
                *self.deadline.insert(tokio::time::Instant::now() + window)
            }
        };
        // The deadline is checked before each message: a steady flood never leaves the
        // stream idle long enough for the timer to win.
        while self.pending.len() < MAX_BATCH && tokio::time::Instant::now() < deadline {
            tokio::select! {
                biased;
                message = self.messages.next() => match message {
                    Some(Some(message)) => {
                        let symbol = self.symbol_of(&message);
                        self.pending.extend(symbol);
                    }
                    Some(None) | None => return None,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.deadline = None;
        let mut symbols = std::mem::take(&mut self.pending);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use redis::Value;

    use super::*;

    fn message(symbol: &str) -> Option<redis::Msg> {
        let channel = format!("__keyspace@0__:p:{symbol}");
        redis::Msg::from_owned_value(Value::Array(vec![
            Value::BulkString(b"pmessage".to_vec()),
            Value::BulkString(b"__keyspace@0__:p:*".to_vec()),
            Value::BulkString(channel.into_bytes()),
            Value::BulkString(b"hset".to_vec()),
        ]))
    }

    /// A batch cancelled while its window is open keeps what it took for the next call, which
    /// closes at the same time: the refresh loop cancels batches whenever a full read ends.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_batch_loses_nothing() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let stream = tokio_stream_of(receiver);
        let mut notifications = Notifications {
            messages: futures_util::stream::select_all([stream]),
            channel_prefix: b"__keyspace@0__:p:".to_vec(),
            nodes: Vec::new(),
            pending: Vec::new(),
            deadline: None,
        };
        sender.send(message("AAA")).unwrap();
        let window = Duration::from_millis(100);
        let cancelled =
            tokio::time::timeout(Duration::from_millis(40), notifications.next_batch(window));
        assert!(cancelled.await.is_err(), "cancelled inside its window");
        sender.send(message("BBB")).unwrap();
        let started = tokio::time::Instant::now();
        let batch = notifications.next_batch(window).await.unwrap();
        assert_eq!(batch, [b"AAA".to_vec(), b"BBB".to_vec()]);
        assert_eq!(started.elapsed(), Duration::from_millis(60));
        sender.send(message("CCC")).unwrap();
        let batch = notifications.next_batch(window).await.unwrap();
        assert_eq!(batch, [b"CCC".to_vec()]);
    }

    fn tokio_stream_of(
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<Option<redis::Msg>>,
    ) -> futures_util::stream::BoxStream<'static, Option<redis::Msg>> {
        futures_util::stream::poll_fn(move |context| receiver.poll_recv(context)).boxed()
    }
}

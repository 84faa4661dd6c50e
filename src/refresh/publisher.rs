//! The refresh loop's end of the watch channel the HTTP server reads: the snapshot last sent,
//! and the next publication built from the current one off the async threads, for a full
//! refresh or a batch of announced changes. When to publish is the loop's.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::civil::unix_now;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::fetch::{FetchError, Fetched};
use crate::published::Published;
use crate::segments::Ages;
use crate::snapshot::Snapshot;

/// Longest wait for more changes once one is announced. The wait is as long as applying the
/// last batch took, so that a flood of changes (a cluster moving slots announces every key
/// it moves) is applied in batches, at most half the time spent re-rendering.
const MAX_BATCH_WINDOW: Duration = Duration::from_millis(250);

/// The watch channel the HTTP server reads, and the snapshot last sent on it.
pub(super) struct Publisher {
    sender: watch::Sender<Arc<Published>>,
    pub(super) current: Arc<Snapshot>,
}

impl Publisher {
    /// The channel, holding `published` until the next is sent, and its receiving end.
    pub(super) fn new(published: Published) -> (Publisher, watch::Receiver<Arc<Published>>) {
        let current = Arc::clone(&published.snapshot);
        let (sender, receiver) = watch::channel(Arc::new(published));
        (Publisher { sender, current }, receiver)
    }

    /// Publishes the re-read of announced symbols that began at `applying`; returns false
    /// when Redis failed (the caller then drops the subscription and the next full refresh
    /// takes over). The next batch collects for as long as this one took to apply.
    pub(super) async fn apply_changes(
        &mut self,
        result: Result<Fetched, FetchError>,
        max_symbols: usize,
        applying: Instant,
        window: &mut Duration,
    ) -> bool {
        let ok = result.is_ok();
        // The symbols read, those found and those gone: all the publication changes, which is
        // all the history has to record of it.
        let changed: Option<Vec<String>> = match &result {
            Ok(fetched) => Some(
                fetched
                    .hashes
                    .iter()
                    .map(|hash| &hash.symbol)
                    .chain(&fetched.absent)
                    .map(|raw| String::from_utf8_lossy(raw).into_owned())
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!("reading announced changes failed: {error}");
                None
            }
        };
        let count = changed.as_ref().map_or(0, Vec::len);
        self.publish(Ages::Kept, changed, move |previous| match result {
            Ok(fetched) => previous.with_changes(fetched, max_symbols),
            Err(error) => Snapshot {
                notifications_up: Some(false),
                ..previous.after_failure(&error)
            },
        })
        .await;
        *window = applying.elapsed().min(MAX_BATCH_WINDOW);
        tracing::debug!(symbols = count, took = ?applying.elapsed(), "announced changes applied");
        ok
    }

    /// Builds the next snapshot from the current one off the async threads, renders what changed
    /// since the current publication, and publishes it; `changed` as [`Publisher::send`] takes it.
    pub(super) async fn publish(
        &mut self,
        ages: Ages,
        changed: Option<Vec<String>>,
        build: impl FnOnce(&Snapshot) -> Snapshot + Send + 'static,
    ) {
        if let Some(published) = joined(self.build(ages, build).await) {
            self.send(published, changed.as_deref());
        }
    }

    /// The next publication, built from the current one on a blocking thread.
    pub(super) fn build(
        &self,
        ages: Ages,
        build: impl FnOnce(&Snapshot) -> Snapshot + Send + 'static,
    ) -> JoinHandle<Published> {
        let previous = Arc::clone(&self.sender.borrow());
        tokio::task::spawn_blocking(move || {
            previous.next(build(&previous.snapshot), unix_now(), ages)
        })
    }

    /// Sends `published` and records it in the history: every publication is, whichever
    /// transition made it, and only those sent; of every symbol, or only of those `changed` when
    /// the publication changed no other.
    pub(super) fn send(&mut self, published: Published, changed: Option<&[String]>) {
        published
            .history
            .record(&published.snapshot, changed, published.rendered_at_unix);
        self.current = Arc::clone(&published.snapshot);
        self.sender.send_replace(Arc::new(published));
    }
}

/// A publication built on a blocking thread; `None` when the runtime is shutting down, and
/// there is no one left to publish to.
pub(super) fn joined(built: Result<Published, JoinError>) -> Option<Published> {
    match built {
        Ok(published) => Some(published),
        Err(error) if error.is_cancelled() => None,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

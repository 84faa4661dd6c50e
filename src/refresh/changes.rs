//! Announced changes applied while a full refresh runs, over a reader of their own, so that
//! a change waits for no full read; and the batches they come in. What the full read then
//! keeps of them is the loop's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::publisher::Publisher;
use crate::source::{ChangeReader, Notifications};

/// Announced changes applied while a full refresh runs, over a reader of their own.
pub(super) struct Changes<'a> {
    pub(super) reader: Option<ChangeReader>,
    pub(super) notifications: &'a mut Option<Notifications>,
    /// The symbols applied so far, whose full read may be older.
    pub(super) applied: HashSet<String>,
    pub(super) window: &'a mut Duration,
    pub(super) max_symbols: usize,
}

impl Changes<'_> {
    /// Runs `work` to its end, applying the changes announced meanwhile. Without a reader (no
    /// subscription, or a read of changes failed) they wait for the next loop.
    pub(super) async fn applied_during<T>(
        &mut self,
        work: impl Future<Output = T>,
        publisher: &mut Publisher,
    ) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                batch = next_batch(self.notifications, *self.window), if self.reader.is_some() => {
                    let applied = match (batch, self.reader.as_mut()) {
                        (Some(symbols), Some(reader)) => {
                            let applying = Instant::now();
                            let names: Vec<String> =
                                symbols.iter().map(|s| String::from_utf8_lossy(s).into()).collect();
                            let result = reader.read(symbols).await;
                            let max = self.max_symbols;
                            let window = &mut *self.window;
                            let applied = publisher.apply_changes(result, max, applying, window).await;
                            // A failed read applied nothing that a full read should keep.
                            if applied {
                                self.applied.extend(names);
                            }
                            applied
                        }
                        // The subscription ended: the full read covers what it missed.
                        _ => false,
                    };
                    if !applied {
                        *self.notifications = None;
                        self.reader = None;
                    }
                }
            }
        }
    }
}

/// The next batch of announced changes; never completes without a subscription.
pub(super) async fn next_batch(
    notifications: &mut Option<Notifications>,
    window: Duration,
) -> Option<Vec<Vec<u8>>> {
    match notifications {
        Some(subscription) => subscription.next_batch(window).await,
        None => std::future::pending().await,
    }
}

//! The refresh loop: on every poll interval it fetches from Redis, parses, renders, and publishes
//! the result for the HTTP server through a watch channel; in event mode it also re-reads the
//! keys Redis announces as changed, between two full refreshes and during one. It owns the
//! counters that live across refreshes and the reconnect backoff; it does not serve HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::fetch::{FetchError, Fetched};
use crate::published::Published;
use crate::segments::Ages;
use crate::snapshot::Snapshot;
use crate::source::{Announcements, ChangeReader, Notifications, Source};
/// First retry delay after a failed refresh; it doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait for more changes once one is announced. The wait is as long as applying the
/// last batch took, so that a flood of changes (a cluster moving slots announces every key
/// it moves) is applied in batches, at most half the time spent re-rendering.
const MAX_BATCH_WINDOW: Duration = Duration::from_millis(250);

/// How often at most the heap is trimmed after a full refresh (see [`release_freed_memory`]).
const TRIM_AT_MOST_EVERY: Duration = Duration::from_secs(30);

pub struct Refresher {
    source: Source,
    poll_interval: Duration,
    max_symbols: usize,
    events: bool,
    publisher: Publisher,
    /// New primaries as the sentinels announce them.
    switches: Option<Announcements>,
    /// When freed memory was last given back to the system.
    trimmed_at: Option<Instant>,
}

/// The watch channel the HTTP server reads, and the snapshot last sent on it.
struct Publisher {
    sender: watch::Sender<Arc<Published>>,
    current: Arc<Snapshot>,
}

impl Refresher {
    /// Publishes an empty snapshot at once, so scrapes are answered before the first refresh.
    /// With `events`, changes announced by keyspace notifications are applied between refreshes.
    pub fn new(
        source: Source,
        poll_interval: Duration,
        max_symbols: usize,
        events: bool,
    ) -> (Refresher, watch::Receiver<Arc<Published>>) {
        let mut snapshot = Snapshot::empty(poll_interval, Instant::now());
        snapshot.notifications_up = events.then_some(false);
        let published = Published::new(snapshot, unix_now());
        let current = Arc::clone(&published.snapshot);
        let (sender, receiver) = watch::channel(Arc::new(published));
        let refresher = Refresher {
            source,
            poll_interval,
            max_symbols,
            events,
            publisher: Publisher { sender, current },
            switches: None,
            trimmed_at: None,
        };
        (refresher, receiver)
    }

    /// Follows the sentinels' failover announcements: each one drops the connection and
    /// starts a full refresh at once.
    pub fn follow_failovers(&mut self, switches: Announcements) {
        self.switches = Some(switches);
    }

    /// Refreshes forever; at most one read of Redis is in flight, and a slow Redis only delays
    /// the next one.
    pub async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        let mut notifications: Option<Notifications> = None;
        let mut subscribe_error: Option<String> = None;
        let mut window = Duration::ZERO;
        loop {
            let started = Instant::now();
            let ok = self.refresh_once(&mut notifications, &mut window).await;
            if notifications
                .as_ref()
                .is_some_and(|n| !self.source.covers(n))
            {
                tracing::info!("the cluster's primaries changed: subscribing again");
                notifications = None;
            }
            if ok && self.events && notifications.is_none() {
                notifications = self.subscribe(&mut subscribe_error).await;
                if notifications.is_some() {
                    self.publisher
                        .publish(Ages::Kept, |previous| Snapshot {
                            notifications_up: Some(true),
                            ..previous.clone()
                        })
                        .await;
                }
            }
            let wait = if ok {
                retry = FIRST_RETRY;
                self.poll_interval
            } else {
                notifications = None;
                let wait = retry.min(self.poll_interval);
                retry = (retry * 2).min(self.poll_interval);
                wait
            };
            let next_refresh = tokio::time::Instant::from_std(started + wait);
            // Until the next full refresh, apply the changes Redis announces; a failover
            // announced by a sentinel cuts the wait short.
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next_refresh) => break,
                    primary = next_switch(&mut self.switches) => {
                        self.source.saw_primary(primary);
                        self.source.reconnect();
                        notifications = None;
                        retry = FIRST_RETRY;
                        break;
                    }
                    batch = next_batch(&mut notifications, window) => match batch {
                        Some(symbols) => {
                            let applying = Instant::now();
                            let result = self.source.fetch_changed(symbols).await;
                            let publisher = &mut self.publisher;
                            let max = self.max_symbols;
                            if !publisher.apply_changes(result, max, applying, &mut window).await {
                                notifications = None;
                            }
                        }
                        None => {
                            // Changes may have been missed: read everything and subscribe again
                            // now rather than at the next poll.
                            tracing::warn!("the keyspace notification subscription ended; reading everything and subscribing again");
                            notifications = None;
                            self.publisher
                                .publish(Ages::Kept, |previous| Snapshot {
                                    notifications_up: Some(false),
                                    ..previous.clone()
                                })
                                .await;
                            break;
                        }
                    },
                }
            }
        }
    }

    /// One full refresh; returns whether Redis was read. The changes announced meanwhile are
    /// applied as they come, not queued behind it, and the full read's view of those symbols,
    /// which may be older, gives way to them.
    async fn refresh_once(
        &mut self,
        notifications: &mut Option<Notifications>,
        window: &mut Duration,
    ) -> bool {
        let started = Instant::now();
        let mut changes = Changes {
            reader: notifications
                .as_ref()
                .and_then(|_| self.source.change_reader()),
            notifications,
            applied: HashSet::new(),
            window,
            max_symbols: self.max_symbols,
        };
        let result = changes
            .applied_during(self.source.fetch(), &mut self.publisher)
            .await;
        self.log_transition(&result);
        let ok = result.is_ok();
        let events = self.events;
        let notifications_up = changes.notifications.is_some();
        let max_symbols = self.max_symbols;
        let during_read = std::mem::take(&mut changes.applied);
        let building = self.publisher.build(Ages::Renewed, move |previous| {
            let mut next = match result {
                Ok(fetched) => previous
                    .after_fetch(fetched, max_symbols, started, unix_now())
                    .keeping_changes(previous, &during_read, max_symbols),
                Err(error) => previous.after_failure(&error),
            };
            next.notifications_up = events.then_some(notifications_up && ok);
            next.refresh_duration = started.elapsed();
            next
        });
        let built = changes.applied_during(building, &mut self.publisher).await;
        let Some(mut published) = joined(built) else {
            return ok;
        };
        let still_up = changes.notifications.is_some();
        if !changes.applied.is_empty() || still_up != notifications_up {
            // Changes were applied to the publication this one replaces while it was built, or
            // their subscription ended: both hold for this one too.
            let mut next = Snapshot::clone(&published.snapshot).keeping_changes(
                &self.publisher.current,
                &changes.applied,
                max_symbols,
            );
            next.notifications_up = events.then_some(still_up && ok);
            let rebuilding =
                tokio::task::spawn_blocking(move || published.next(next, unix_now(), Ages::Kept));
            let Some(rebuilt) = joined(rebuilding.await) else {
                return ok;
            };
            published = rebuilt;
        }
        self.publisher.send(published);
        release_freed_memory(&mut self.trimmed_at);
        ok
    }

    async fn subscribe(&mut self, last_error: &mut Option<String>) -> Option<Notifications> {
        match self.source.subscribe().await {
            Ok(notifications) => {
                tracing::info!(
                    "event mode: following keyspace notifications, with a full refresh every poll interval"
                );
                *last_error = None;
                Some(notifications)
            }
            Err(error) => {
                let message = error.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!("event mode unavailable, polling instead: {message}");
                }
                *last_error = Some(message);
                None
            }
        }
    }

    fn log_transition(&self, result: &Result<Fetched, FetchError>) {
        let previous = &self.publisher.current;
        match result {
            Ok(fetched) => {
                if !previous.redis_up && previous.refreshes_total > 0 {
                    tracing::info!(addr = self.source.addr(), "redis is reachable again");
                }
                if fetched.missing != previous.missing && !fetched.missing.is_empty() {
                    tracing::warn!(missing = ?fetched.missing, "configured symbols have no proposal hash");
                }
            }
            Err(error) => {
                let message = error.to_string();
                if previous.redis_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!("refresh failed, serving the last known values: {message}");
                } else {
                    tracing::debug!("refresh failed again: {message}");
                }
            }
        }
    }
}

impl Publisher {
    /// Publishes the re-read of announced symbols that began at `applying`; returns false
    /// when Redis failed (the caller then drops the subscription and the next full refresh
    /// takes over). The next batch collects for as long as this one took to apply.
    async fn apply_changes(
        &mut self,
        result: Result<Fetched, FetchError>,
        max_symbols: usize,
        applying: Instant,
        window: &mut Duration,
    ) -> bool {
        let ok = result.is_ok();
        let count = match &result {
            Ok(fetched) => fetched.hashes.len() + fetched.absent.len(),
            Err(error) => {
                tracing::warn!("reading announced changes failed: {error}");
                0
            }
        };
        self.publish(Ages::Kept, move |previous| match result {
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
    /// since the current publication, and publishes it.
    async fn publish(
        &mut self,
        ages: Ages,
        build: impl FnOnce(&Snapshot) -> Snapshot + Send + 'static,
    ) {
        if let Some(published) = joined(self.build(ages, build).await) {
            self.send(published);
        }
    }

    /// The next publication, built from the current one on a blocking thread.
    fn build(
        &self,
        ages: Ages,
        build: impl FnOnce(&Snapshot) -> Snapshot + Send + 'static,
    ) -> JoinHandle<Published> {
        let previous = Arc::clone(&self.sender.borrow());
        tokio::task::spawn_blocking(move || {
            previous.next(build(&previous.snapshot), unix_now(), ages)
        })
    }

    fn send(&mut self, published: Published) {
        self.current = Arc::clone(&published.snapshot);
        self.sender.send_replace(Arc::new(published));
    }
}

/// Announced changes applied while a full refresh runs, over a reader of their own.
struct Changes<'a> {
    reader: Option<ChangeReader>,
    notifications: &'a mut Option<Notifications>,
    /// The symbols applied so far, whose full read may be older.
    applied: HashSet<String>,
    window: &'a mut Duration,
    max_symbols: usize,
}

impl Changes<'_> {
    /// Runs `work` to its end, applying the changes announced meanwhile. Without a reader (no
    /// subscription, or a read of changes failed) they wait for the next loop.
    async fn applied_during<T>(
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

/// A publication built on a blocking thread; `None` when the runtime is shutting down, and
/// there is no one left to publish to.
fn joined(built: Result<Published, JoinError>) -> Option<Published> {
    match built {
        Ok(published) => Some(published),
        Err(error) if error.is_cancelled() => None,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// The next batch of announced changes; never completes without a subscription.
async fn next_batch(
    notifications: &mut Option<Notifications>,
    window: Duration,
) -> Option<Vec<Vec<u8>>> {
    match notifications {
        Some(subscription) => subscription.next_batch(window).await,
        None => std::future::pending().await,
    }
}

/// The next primary a sentinel announces; never completes without sentinels.
async fn next_switch(switches: &mut Option<Announcements>) -> String {
    if let Some(receiver) = switches {
        while receiver.changed().await.is_ok() {
            if let Some(primary) = receiver.borrow_and_update().clone() {
                return primary;
            }
        }
        // The listener stopped: nothing more will be announced.
        *switches = None;
    }
    std::future::pending().await
}

/// Gives the system back the pages full refreshes freed, when there are many, at most every
/// [`TRIM_AT_MOST_EVERY`]. A refresh's reads and the previous body leave free chunks spread
/// through the heap, which glibc keeps resident: 39 MiB at 100,000 symbols, 3 MiB at 10,000. The
/// next refresh faults the pages it needs back in, so trimming after every refresh cost 15% of
/// one at 100,000, and at 1,000 (1 MiB free) a fifth; once in a while is enough to bring the
/// resident set back down after the symbols shrink.
fn release_freed_memory(trimmed_at: &mut Option<Instant>) {
    if trimmed_at.is_some_and(|at| at.elapsed() < TRIM_AT_MOST_EVERY) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads the allocator's counters and malloc_trim only returns free
    // memory to the system; both are thread-safe.
    unsafe {
        const WORTH_TRIMMING: usize = 2 << 20;
        if libc::mallinfo2().fordblks > WORTH_TRIMMING {
            libc::malloc_trim(0);
            *trimmed_at = Some(Instant::now());
        }
    }
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Frees `kib` KiB in 1 KiB chunks that stay in the heap: every other chunk is kept, so
    /// that the free ones cannot join the top of the heap, which glibc would give back by itself.
    fn leave_free_chunks(kib: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<Vec<u8>> = (0..2 * kib).map(|_| vec![1; 1024]).collect();
        chunks.into_iter().skip(1).step_by(2).collect()
    }

    #[test]
    fn much_freed_memory_is_given_back_then_not_again_within_the_period() {
        let _kept = leave_free_chunks(8 * 1024);
        let mut trimmed_at = None;
        release_freed_memory(&mut trimmed_at);
        let first = trimmed_at.expect("8 MiB free is worth trimming");

        let _kept_too = leave_free_chunks(8 * 1024);
        release_freed_memory(&mut trimmed_at);
        assert_eq!(trimmed_at, Some(first), "trimmed again within the period");

        let long_ago = Instant::now().checked_sub(TRIM_AT_MOST_EVERY);
        let mut trimmed_at = long_ago;
        release_freed_memory(&mut trimmed_at);
        assert!(
            trimmed_at > long_ago,
            "not trimmed once the period was over"
        );
    }
}

//! The refresh loop: on every poll interval it fetches from Redis, parses, renders, and publishes
//! the result for the HTTP server through a watch channel; in event mode it also re-reads the
//! keys Redis announces as changed, between two full refreshes and during one. It owns the
//! counters that live across refreshes and the reconnect backoff; it does not serve HTTP.

mod changes;
mod memory;
mod publisher;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::fetch::{FetchError, Fetched};
use crate::history;
use crate::published::Published;
use crate::segments::Ages;
use crate::snapshot::Snapshot;
use crate::source::{Announcements, Notifications, Source};
use changes::{Changes, next_batch};
use memory::release_freed_memory;
pub use publisher::unix_now;
use publisher::{Publisher, joined};

/// First retry delay after a failed refresh; it doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The loop's side of the pipeline: where it reads, what it publishes to, and its settings.
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

impl Refresher {
    /// Publishes an empty snapshot at once, so scrapes are answered before the first refresh.
    /// With `events`, changes announced by keyspace notifications are applied between refreshes.
    /// Each publication sent is recorded in a history kept as `history` says.
    pub fn new(
        source: Source,
        poll_interval: Duration,
        max_symbols: usize,
        events: bool,
        history: history::Settings,
    ) -> (Refresher, watch::Receiver<Arc<Published>>) {
        let mut snapshot = Snapshot::empty(poll_interval, Instant::now());
        snapshot.notifications_up = events.then_some(false);
        let history = history::Shared::new(history);
        let (publisher, receiver) = Publisher::new(Published::new(snapshot, unix_now(), history));
        let refresher = Refresher {
            source,
            poll_interval,
            max_symbols,
            events,
            publisher,
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
            // A cluster read in the middle of a failover is read again soon, as a failed one
            // is, and subscribed to only once every slot has a primary: a subscription taken
            // before the promotion would miss the promoted primary until the next poll.
            let ok = self.refresh_once(&mut notifications, &mut window).await
                && self.source.serves_every_slot();
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
                        .publish(Ages::Kept, None, |previous| Snapshot {
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
            if self
                .between_refreshes(next_refresh, &mut notifications, &mut window)
                .await
            {
                retry = FIRST_RETRY;
            }
        }
    }

    /// Until `next_refresh`, applies the changes Redis announces. Ends early on a failover that
    /// a sentinel announces, returning true (the new primary is read at once, without backoff),
    /// and when the subscription ends, after which changes may have been missed: everything is
    /// then read, and subscribed to again, now rather than at the next poll.
    async fn between_refreshes(
        &mut self,
        next_refresh: tokio::time::Instant,
        notifications: &mut Option<Notifications>,
        window: &mut Duration,
    ) -> bool {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_refresh) => return false,
                primary = next_switch(&mut self.switches) => {
                    self.source.saw_primary(primary);
                    self.source.reconnect();
                    *notifications = None;
                    return true;
                }
                batch = next_batch(notifications, *window) => match batch {
                    Some(symbols) => {
                        let applying = Instant::now();
                        let result = self.source.fetch_changed(symbols).await;
                        let publisher = &mut self.publisher;
                        let max = self.max_symbols;
                        if !publisher.apply_changes(result, max, applying, window).await {
                            *notifications = None;
                        }
                    }
                    None => {
                        tracing::warn!("the keyspace notification subscription ended; reading everything and subscribing again");
                        *notifications = None;
                        self.publisher
                            .publish(Ages::Kept, None, |previous| Snapshot {
                                notifications_up: Some(false),
                                ..previous.clone()
                            })
                            .await;
                        return false;
                    }
                },
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
        self.publisher.send(published, None);
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

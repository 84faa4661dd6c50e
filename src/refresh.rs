//! The refresh loop: on every poll interval it fetches from Redis, parses, renders, and publishes
//! the result for the HTTP server through a watch channel; in event mode it also re-reads the
//! keys Redis announces as changed between two full refreshes. It owns the counters that live
//! across refreshes and the reconnect backoff; it does not serve HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::proposal::{self, Proposal};
use crate::render::Published;
use crate::snapshot::{DropReason, ErrorKind, Snapshot};
use crate::source::{Fetched, Notifications, RawHash, Source, SourceError};

/// Distinct unknown action values kept as their own label before they become `OTHER`.
const UNKNOWN_ACTION_LIMIT: usize = 16;
/// First retry delay after a failed refresh; it doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

pub struct Refresher {
    source: Source,
    poll_interval: Duration,
    max_symbols: usize,
    events: bool,
    current: Arc<Snapshot>,
    publisher: watch::Sender<Arc<Published>>,
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
        let (publisher, receiver) = watch::channel(Arc::new(published));
        let refresher = Refresher {
            source,
            poll_interval,
            max_symbols,
            events,
            current,
            publisher,
        };
        (refresher, receiver)
    }

    /// Refreshes forever; at most one read of Redis is in flight, and a slow Redis only delays
    /// the next one.
    pub async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        let mut notifications: Option<Notifications> = None;
        let mut subscribe_error: Option<String> = None;
        loop {
            let started = Instant::now();
            let ok = self.refresh_once(notifications.is_some()).await;
            if ok && self.events && notifications.is_none() {
                notifications = self.subscribe(&mut subscribe_error).await;
                if notifications.is_some() {
                    self.publish(|previous| Snapshot {
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
            // Until the next full refresh, apply the changes Redis announces.
            while let Some(subscription) = notifications.as_mut() {
                tokio::select! {
                    () = tokio::time::sleep_until(next_refresh) => break,
                    batch = subscription.next_batch() => match batch {
                        Some(symbols) => {
                            if !self.apply_changes(symbols).await {
                                notifications = None;
                            }
                        }
                        None => {
                            tracing::warn!("the keyspace notification subscription ended; polling until it is restored");
                            notifications = None;
                            self.publish(|previous| Snapshot {
                                notifications_up: Some(false),
                                ..previous.clone()
                            })
                            .await;
                        }
                    },
                }
            }
            tokio::time::sleep_until(next_refresh).await;
        }
    }

    /// One full refresh; returns whether Redis was read.
    pub async fn refresh_once(&mut self, notifications_up: bool) -> bool {
        let started = Instant::now();
        let result = self.source.fetch().await;
        self.log_transition(&result);
        let ok = result.is_ok();
        let max_symbols = self.max_symbols;
        let events = self.events;
        self.publish(move |previous| {
            let mut next = match result {
                Ok(fetched) => next_snapshot(previous, fetched, max_symbols, started),
                Err(error) => failed_snapshot(previous, &error),
            };
            next.notifications_up = events.then_some(notifications_up && ok);
            next.refresh_duration = started.elapsed();
            next
        })
        .await;
        ok
    }

    /// Re-reads the announced symbols; returns false when Redis failed (the caller then drops
    /// the subscription and the next full refresh takes over).
    async fn apply_changes(&mut self, symbols: Vec<Vec<u8>>) -> bool {
        let result = self.source.fetch_changed(symbols).await;
        let ok = result.is_ok();
        if let Err(error) = &result {
            tracing::warn!("reading announced changes failed: {error}");
        }
        let max_symbols = self.max_symbols;
        self.publish(move |previous| match result {
            Ok(fetched) => merged_snapshot(previous, fetched, max_symbols),
            Err(error) => Snapshot {
                notifications_up: Some(false),
                ..failed_snapshot(previous, &error)
            },
        })
        .await;
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

    /// Builds the next snapshot from the current one off the async threads, renders it, and
    /// publishes it.
    async fn publish(&mut self, build: impl FnOnce(&Snapshot) -> Snapshot + Send + 'static) {
        let previous = Arc::clone(&self.current);
        let building =
            tokio::task::spawn_blocking(move || Published::new(build(&previous), unix_now()));
        let published = match building.await {
            Ok(published) => published,
            // The runtime is shutting down: there is no one left to publish to.
            Err(error) if error.is_cancelled() => return,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        self.current = Arc::clone(&published.snapshot);
        self.publisher.send_replace(Arc::new(published));
    }

    fn log_transition(&self, result: &Result<Fetched, SourceError>) {
        let previous = &self.current;
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

/// The snapshot after a successful full fetch: symbols checked, sorted, capped and parsed.
pub fn next_snapshot(
    previous: &Snapshot,
    fetched: Fetched,
    max_symbols: usize,
    started: Instant,
) -> Snapshot {
    let mut next = Snapshot {
        missing: fetched.missing,
        redis_up: true,
        last_success: Some(started),
        last_success_unix: Some(unix_now()),
        refreshes_total: previous.refreshes_total + 1,
        ..previous.carry_over()
    };
    next.dropped[DropReason::WrongType as usize] = fetched.wrong_type;
    count_redis_cost(fetched.commands, fetched.round_trips, &mut next);
    let mut named = named_hashes(fetched.hashes, &mut next);
    if named.len() > max_symbols {
        next.dropped[DropReason::Cap as usize] = named.len() - max_symbols;
        named.truncate(max_symbols);
    }
    next.proposals = parse_counted(named, &mut next);
    next
}

/// The snapshot after re-reading announced symbols: the current one with those replaced, added
/// or removed. Refresh metadata (cache age, refresh counters) stays that of the last full read.
pub fn merged_snapshot(previous: &Snapshot, fetched: Fetched, max_symbols: usize) -> Snapshot {
    let mut next = Snapshot {
        proposals: previous.proposals.clone(),
        missing: previous.missing.clone(),
        dropped: previous.dropped,
        redis_up: true,
        last_success: previous.last_success,
        last_success_unix: previous.last_success_unix,
        refreshes_total: previous.refreshes_total,
        refresh_duration: previous.refresh_duration,
        notifications_up: Some(true),
        ..previous.carry_over()
    };
    next.notified_total += (fetched.hashes.len() + fetched.absent.len()) as u64;
    count_redis_cost(fetched.commands, fetched.round_trips, &mut next);
    for symbol in &fetched.absent {
        let symbol = String::from_utf8_lossy(symbol);
        if let Ok(index) = next
            .proposals
            .binary_search_by(|p| p.symbol.as_str().cmp(&symbol))
        {
            next.proposals.remove(index);
        }
    }
    next.missing.extend(fetched.missing);
    next.missing.sort_unstable();
    next.missing.dedup();
    let named = named_hashes(fetched.hashes, &mut next);
    for proposal in parse_counted(named, &mut next) {
        next.missing.retain(|m| *m != proposal.symbol);
        match next
            .proposals
            .binary_search_by(|p| p.symbol.cmp(&proposal.symbol))
        {
            Ok(index) => next.proposals[index] = proposal,
            Err(_) if next.proposals.len() >= max_symbols => {
                next.dropped[DropReason::Cap as usize] += 1
            }
            Err(index) => next.proposals.insert(index, proposal),
        }
    }
    proposal::bound_unknown_actions(&mut next.proposals, UNKNOWN_ACTION_LIMIT);
    next
}

fn count_redis_cost(commands: usize, round_trips: usize, next: &mut Snapshot) {
    next.redis_commands_total += commands as u64;
    next.redis_round_trips_total += round_trips as u64;
}

/// Symbols that can be label values, sorted and unique; the others are counted as dropped.
fn named_hashes(hashes: Vec<RawHash>, next: &mut Snapshot) -> Vec<(String, RawHash)> {
    let mut named = Vec::with_capacity(hashes.len());
    for hash in hashes {
        match proposal::parse_symbol(&hash.symbol) {
            Ok(symbol) => named.push((symbol, hash)),
            Err(error) => {
                next.dropped[DropReason::InvalidName as usize] += 1;
                tracing::debug!(symbol = %String::from_utf8_lossy(&hash.symbol), "key dropped: {error}");
            }
        }
    }
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    named.dedup_by(|a, b| a.0 == b.0);
    named
}

/// Parses each hash, counting its invalid fields, and bounds the unknown action labels.
fn parse_counted(named: Vec<(String, RawHash)>, next: &mut Snapshot) -> Vec<Proposal> {
    let mut proposals: Vec<Proposal> = named
        .into_iter()
        .map(|(symbol, hash)| {
            let mut values = [None; proposal::SLOTS];
            for (index, value) in values.iter_mut().enumerate() {
                *value = hash.value(index);
            }
            proposal::parse(symbol, &values)
        })
        .collect();
    proposal::bound_unknown_actions(&mut proposals, UNKNOWN_ACTION_LIMIT);
    for field in proposals.iter().flat_map(|p| &p.invalid_fields) {
        next.parse_errors_total[field.index()] += 1;
    }
    proposals
}

/// The snapshot after a failed fetch: the last known proposals, marked as such.
pub fn failed_snapshot(previous: &Snapshot, error: &SourceError) -> Snapshot {
    let kind = match error {
        SourceError::Timeout { .. } => ErrorKind::Timeout,
        SourceError::Connect { .. } | SourceError::Address(_) | SourceError::CaFile { .. } => {
            ErrorKind::Connect
        }
        SourceError::Command { .. }
        | SourceError::Reply { .. }
        | SourceError::NotificationsOff { .. } => ErrorKind::Command,
    };
    let mut next = Snapshot {
        proposals: previous.proposals.clone(),
        missing: previous.missing.clone(),
        dropped: previous.dropped,
        redis_up: false,
        redis_error: Some(error.to_string()),
        last_success: previous.last_success,
        last_success_unix: previous.last_success_unix,
        refreshes_total: previous.refreshes_total + 1,
        ..previous.carry_over()
    };
    next.refresh_errors_total[kind as usize] += 1;
    next
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(symbol: &[u8], pairs: &[(&str, &str)]) -> RawHash {
        let values: Vec<Option<&[u8]>> = proposal::KEYS
            .iter()
            .map(|key| {
                pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_bytes())
            })
            .collect();
        RawHash::new(symbol.to_vec(), &values)
    }

    fn symbols(snapshot: &Snapshot) -> Vec<&str> {
        snapshot
            .proposals
            .iter()
            .map(|p| p.symbol.as_str())
            .collect()
    }

    #[test]
    fn symbols_are_sorted_checked_and_capped() {
        let start = Instant::now();
        let previous = Snapshot::empty(Duration::from_secs(5), start);
        let fetched = Fetched {
            hashes: vec![
                raw(b"SOLUSDT", &[]),
                raw(b"BTCUSDT", &[]),
                raw(b"\xff", &[]),
                raw(b"ETHUSDT", &[]),
            ],
            wrong_type: 2,
            ..Fetched::default()
        };
        let next = next_snapshot(&previous, fetched, 2, start);
        assert_eq!(symbols(&next), ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(next.dropped, [1, 1, 2]);
        assert!(next.redis_up);
        assert_eq!(next.refreshes_total, 1);
    }

    #[test]
    fn parse_errors_accumulate_across_refreshes() {
        let start = Instant::now();
        let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
        for _ in 0..3 {
            let fetched = Fetched {
                hashes: vec![raw(b"X", &[("kill_score", "None")])],
                ..Fetched::default()
            };
            snapshot = next_snapshot(&snapshot, fetched, 10, start);
        }
        let kill_score = crate::proposal::Field::KillScore.index();
        assert_eq!(snapshot.parse_errors_total[kill_score], 3);
    }

    #[test]
    fn failure_keeps_the_last_values_and_counts_the_error() {
        let start = Instant::now();
        let previous = Snapshot::empty(Duration::from_secs(5), start);
        let fetched = Fetched {
            hashes: vec![raw(b"X", &[("kill_score", "0.9")])],
            ..Fetched::default()
        };
        let good = next_snapshot(&previous, fetched, 10, start);
        let error = SourceError::Reply {
            addr: "127.0.0.1:1".into(),
            command: "HMGET",
        };
        let failed = failed_snapshot(&good, &error);
        assert!(!failed.redis_up);
        assert_eq!(failed.proposals, good.proposals);
        assert_eq!(failed.last_success, good.last_success);
        assert_eq!(failed.refresh_errors_total, [0, 0, 1]);
        assert!(failed.redis_error.unwrap().contains("unexpected reply"));
    }

    #[test]
    fn announced_changes_replace_add_and_remove_symbols() {
        let start = Instant::now();
        let full = Fetched {
            hashes: vec![
                raw(b"AAA", &[("kill_score", "0.5")]),
                raw(b"CCC", &[("kill_score", "0.5")]),
            ],
            ..Fetched::default()
        };
        let base = next_snapshot(
            &Snapshot::empty(Duration::from_secs(5), start),
            full,
            3,
            start,
        );
        let changes = Fetched {
            hashes: vec![
                raw(b"CCC", &[("kill_score", "0.9")]),
                raw(b"BBB", &[("kill_score", "0.7")]),
                raw(b"DDD", &[("kill_score", "0.1")]),
            ],
            absent: vec![b"AAA".to_vec()],
            commands: 4,
            round_trips: 1,
            ..Fetched::default()
        };
        let merged = merged_snapshot(&base, changes, 3);
        assert_eq!(merged.redis_commands_total, base.redis_commands_total + 4);
        assert_eq!(
            merged.redis_round_trips_total,
            base.redis_round_trips_total + 1
        );
        assert_eq!(symbols(&merged), ["BBB", "CCC", "DDD"]);
        assert_eq!(merged.proposals[1].kill_score, 0.9);
        assert_eq!(merged.notified_total, 4);
        assert_eq!(
            merged.refreshes_total, base.refreshes_total,
            "not a full refresh"
        );
        assert_eq!(merged.last_success, base.last_success);

        let over_cap = Fetched {
            hashes: vec![raw(b"EEE", &[])],
            ..Fetched::default()
        };
        let capped = merged_snapshot(&merged, over_cap, 3);
        assert_eq!(symbols(&capped), ["BBB", "CCC", "DDD"]);
        assert_eq!(capped.dropped[DropReason::Cap as usize], 1);
    }

    #[test]
    fn announced_changes_track_missing_configured_symbols() {
        let start = Instant::now();
        let mut base = Snapshot::empty(Duration::from_secs(5), start);
        base.missing = vec!["BBB".into()];
        let changes = Fetched {
            hashes: vec![raw(b"BBB", &[])],
            missing: vec!["AAA".into()],
            absent: vec![b"AAA".to_vec()],
            ..Fetched::default()
        };
        let merged = merged_snapshot(&base, changes, 10);
        assert_eq!(merged.missing, ["AAA"]);
        assert_eq!(symbols(&merged), ["BBB"]);
    }
}

//! The refresh loop: on every poll interval it fetches from Redis, parses, renders, and publishes
//! the result for the HTTP server through a watch channel. It owns the counters that live across
//! refreshes and the reconnect backoff; it does not serve HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::proposal::{self, Proposal};
use crate::render::Published;
use crate::snapshot::{DropReason, ErrorKind, Snapshot};
use crate::source::{Fetched, Fields, Source, SourceError};

/// Distinct unknown action values kept as their own label before they become `OTHER`.
const UNKNOWN_ACTION_LIMIT: usize = 16;
/// First retry delay after a failed refresh; it doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

pub struct Refresher {
    source: Source,
    poll_interval: Duration,
    max_symbols: usize,
    current: Arc<Snapshot>,
    publisher: watch::Sender<Arc<Published>>,
}

impl Refresher {
    /// Publishes an empty snapshot at once, so scrapes are answered before the first refresh.
    pub fn new(
        source: Source,
        poll_interval: Duration,
        max_symbols: usize,
    ) -> (Refresher, watch::Receiver<Arc<Published>>) {
        let snapshot = Snapshot::empty(poll_interval, Instant::now());
        let published = Published::new(snapshot, unix_now());
        let current = Arc::clone(&published.snapshot);
        let (publisher, receiver) = watch::channel(Arc::new(published));
        let refresher = Refresher {
            source,
            poll_interval,
            max_symbols,
            current,
            publisher,
        };
        (refresher, receiver)
    }

    /// Refreshes forever; at most one refresh is in flight, and a slow Redis only delays the
    /// next one.
    pub async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        loop {
            let started = Instant::now();
            let ok = self.refresh_once().await;
            let wait = if ok {
                retry = FIRST_RETRY;
                self.poll_interval
            } else {
                let wait = retry.min(self.poll_interval);
                retry = (retry * 2).min(self.poll_interval);
                wait
            };
            tokio::time::sleep(wait.saturating_sub(started.elapsed())).await;
        }
    }

    /// One refresh; returns whether Redis was read.
    pub async fn refresh_once(&mut self) -> bool {
        let started = Instant::now();
        let result = self.source.fetch().await;
        let previous = Arc::clone(&self.current);
        let max_symbols = self.max_symbols;
        self.log_transition(&previous, &result);
        let ok = result.is_ok();
        let published = tokio::task::spawn_blocking(move || {
            let mut snapshot = match result {
                Ok(fetched) => next_snapshot(&previous, fetched, max_symbols, started),
                Err(error) => failed_snapshot(&previous, &error),
            };
            snapshot.refresh_duration = started.elapsed();
            Published::new(snapshot, unix_now())
        })
        .await
        .expect("rendering does not panic");
        self.current = Arc::clone(&published.snapshot);
        self.publisher.send_replace(Arc::new(published));
        ok
    }

    fn log_transition(&self, previous: &Snapshot, result: &Result<Fetched, SourceError>) {
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

/// The snapshot after a successful fetch: symbols checked, sorted, capped and parsed.
pub fn next_snapshot(
    previous: &Snapshot,
    fetched: Fetched,
    max_symbols: usize,
    started: Instant,
) -> Snapshot {
    let mut next = Snapshot {
        proposals: Vec::new(),
        missing: fetched.missing,
        dropped: [0; DropReason::ALL.len()],
        redis_up: true,
        redis_error: None,
        last_success: Some(started),
        last_success_unix: Some(unix_now()),
        refreshes_total: previous.refreshes_total + 1,
        ..previous.carry_over()
    };
    next.dropped[DropReason::WrongType as usize] = fetched.wrong_type;

    let mut named: Vec<(String, Fields)> = Vec::with_capacity(fetched.hashes.len());
    for hash in fetched.hashes {
        match proposal::parse_symbol(&hash.symbol) {
            Ok(symbol) => named.push((symbol, hash.fields)),
            Err(error) => {
                next.dropped[DropReason::InvalidName as usize] += 1;
                tracing::debug!(symbol = %String::from_utf8_lossy(&hash.symbol), "key dropped: {error}");
            }
        }
    }
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    named.dedup_by(|a, b| a.0 == b.0);
    if named.len() > max_symbols {
        next.dropped[DropReason::Cap as usize] = named.len() - max_symbols;
        named.truncate(max_symbols);
    }

    next.proposals = named
        .into_iter()
        .map(|(symbol, fields)| proposal::parse(symbol, &fields))
        .collect();
    proposal::bound_unknown_actions(&mut next.proposals, UNKNOWN_ACTION_LIMIT);
    for field in next
        .proposals
        .iter()
        .flat_map(|p: &Proposal| &p.invalid_fields)
    {
        next.parse_errors_total[field.index()] += 1;
    }
    next
}

/// The snapshot after a failed fetch: the last known proposals, marked as such.
pub fn failed_snapshot(previous: &Snapshot, error: &SourceError) -> Snapshot {
    let kind = match error {
        SourceError::Timeout { .. } => ErrorKind::Timeout,
        SourceError::Connect { .. } | SourceError::Address(_) | SourceError::CaFile { .. } => {
            ErrorKind::Connect
        }
        SourceError::Command { .. } | SourceError::Reply { .. } => ErrorKind::Command,
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RawHash;

    fn raw(symbol: &[u8], pairs: &[(&str, &str)]) -> RawHash {
        RawHash {
            symbol: symbol.to_vec(),
            fields: pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
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
        let symbols: Vec<_> = next.proposals.iter().map(|p| p.symbol.as_str()).collect();
        assert_eq!(symbols, ["BTCUSDT", "ETHUSDT"]);
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
            command: "HGETALL",
        };
        let failed = failed_snapshot(&good, &error);
        assert!(!failed.redis_up);
        assert_eq!(failed.proposals, good.proposals);
        assert_eq!(failed.last_success, good.last_success);
        assert_eq!(failed.refresh_errors_total, [0, 0, 1]);
        assert!(failed.redis_error.unwrap().contains("unexpected reply"));
    }
}

//! The state of the exported data after one refresh: the proposals and the exporter's own health.
//! Plain data and the readiness rule; no I/O, so both the renderer and the HTTP server can read it
//! without knowing where it came from.

use std::time::{Duration, Instant};

use crate::proposal::{Field, Proposal};

/// Why a refresh failed, as the `kind` label of the refresh-error counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Timeout,
    Command,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 3] = [ErrorKind::Connect, ErrorKind::Timeout, ErrorKind::Command];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Command => "command",
        }
    }
}

/// Why a key under the prefix was not exported, as the `reason` label of the dropped gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// More symbols than `--harvest.max-symbols`.
    Cap,
    /// The symbol cannot be a label value (empty, too long, not UTF-8, control characters).
    InvalidName,
    /// The key is not a hash.
    WrongType,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Cap,
        DropReason::InvalidName,
        DropReason::WrongType,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Cap => "cap",
            DropReason::InvalidName => "invalid_name",
            DropReason::WrongType => "wrong_type",
        }
    }
}

/// Everything one refresh knows. Proposals are sorted by symbol, unique, and within the cap.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub proposals: Vec<Proposal>,
    /// Configured symbols that have no hash in Redis (empty when discovering).
    pub missing: Vec<String>,
    pub dropped: [usize; DropReason::ALL.len()],
    pub redis_up: bool,
    /// The last Redis error, for readiness and logs.
    pub redis_error: Option<String>,
    /// When the proposals were last read successfully; `None` before the first success.
    pub last_success: Option<Instant>,
    pub last_success_unix: Option<f64>,
    pub refresh_duration: Duration,
    pub refreshes_total: u64,
    pub refresh_errors_total: [u64; ErrorKind::ALL.len()],
    pub parse_errors_total: [u64; Field::ALL.len()],
    /// In event mode, whether keyspace notifications are being followed; `None` when polling only.
    pub notifications_up: Option<bool>,
    /// Keys re-read because a notification announced a change.
    pub notified_total: u64,
    /// Commands sent to Redis by successful reads (SCAN pages and HMGETs), and their round trips.
    pub redis_commands_total: u64,
    pub redis_round_trips_total: u64,
    /// The refresh interval, which readiness uses to judge how old is too old.
    pub poll_interval: Duration,
    pub started: Instant,
}

/// Data older than this many poll intervals makes the exporter not ready.
const STALE_AFTER_POLLS: u32 = 3;

impl Snapshot {
    pub fn empty(poll_interval: Duration, started: Instant) -> Snapshot {
        Snapshot {
            proposals: Vec::new(),
            missing: Vec::new(),
            dropped: [0; DropReason::ALL.len()],
            redis_up: false,
            redis_error: None,
            last_success: None,
            last_success_unix: None,
            refresh_duration: Duration::ZERO,
            refreshes_total: 0,
            refresh_errors_total: [0; ErrorKind::ALL.len()],
            parse_errors_total: [0; Field::ALL.len()],
            notifications_up: None,
            notified_total: 0,
            redis_commands_total: 0,
            redis_round_trips_total: 0,
            poll_interval,
            started,
        }
    }

    /// An empty snapshot that keeps what lives across refreshes: the counters and settings.
    pub fn carry_over(&self) -> Snapshot {
        Snapshot {
            refresh_errors_total: self.refresh_errors_total,
            parse_errors_total: self.parse_errors_total,
            notifications_up: self.notifications_up,
            notified_total: self.notified_total,
            redis_commands_total: self.redis_commands_total,
            redis_round_trips_total: self.redis_round_trips_total,
            ..Snapshot::empty(self.poll_interval, self.started)
        }
    }

    /// Seconds since the data was last read from Redis (since start-up if it never was).
    pub fn cache_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_success.unwrap_or(self.started))
    }

    /// `Ok` when ready to be trusted, else every reason it is not.
    pub fn readiness(&self, now: Instant) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.redis_up {
            let cause = self
                .redis_error
                .as_deref()
                .unwrap_or("no refresh has completed yet");
            reasons.push(format!("redis unreachable: {cause}"));
        }
        let age = self.cache_age(now);
        if self.last_success.is_none() {
            reasons.push("no data read from redis yet".to_owned());
        } else if age > self.poll_interval * STALE_AFTER_POLLS {
            reasons.push(format!(
                "data is {:.1}s old (more than {STALE_AFTER_POLLS} poll intervals of {:.1}s)",
                age.as_secs_f64(),
                self.poll_interval.as_secs_f64()
            ));
        }
        if !self.missing.is_empty() {
            reasons.push(format!(
                "configured symbols without a proposal: {}",
                self.missing.join(", ")
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// A successful refresh that read these hashes (symbol, field-value pairs), for tests.
#[cfg(test)]
impl Snapshot {
    pub fn of_hashes(hashes: &[(&str, &[(&str, &str)])], last_success_unix: f64) -> Snapshot {
        let start = Instant::now();
        Snapshot {
            proposals: hashes
                .iter()
                .map(|(symbol, pairs)| crate::proposal::parse_pairs((*symbol).to_owned(), pairs))
                .collect(),
            redis_up: true,
            last_success: Some(start),
            last_success_unix: Some(last_success_unix),
            ..Snapshot::empty(Duration::from_secs(5), start)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_every_reason() {
        let start = Instant::now();
        let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
        let reasons = snapshot.readiness(start).unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");

        snapshot.redis_up = true;
        snapshot.last_success = Some(start);
        assert_eq!(snapshot.readiness(start + Duration::from_secs(15)), Ok(()));

        let reasons = snapshot
            .readiness(start + Duration::from_secs(16))
            .unwrap_err();
        assert!(reasons[0].contains("16.0s old"), "{reasons:?}");

        snapshot.missing = vec!["SOLUSDT".into()];
        snapshot.redis_up = false;
        snapshot.redis_error = Some("connection refused".into());
        let reasons = snapshot.readiness(start).unwrap_err();
        assert_eq!(
            reasons,
            [
                "redis unreachable: connection refused",
                "configured symbols without a proposal: SOLUSDT"
            ]
        );
    }
}

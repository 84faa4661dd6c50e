//! The state of the exported data after one refresh: the proposals and the exporter's own health,
//! and the transitions from one refresh to the next. How a read's hashes become proposals is
//! `hashes`'s, the readiness rule `readiness`'s. No I/O, so both the renderer and the HTTP
//! server can read it without knowing where it came from.

mod hashes;
mod readiness;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enum_map::{Enum, EnumMap};

use crate::fetch::{ErrorKind, FetchError, Fetched, Placement};
use crate::proposal::{self, Field, Proposal};

/// Distinct unknown action values kept as their own label before they become `OTHER`.
const UNKNOWN_ACTION_LIMIT: usize = 16;

/// Why a key under the prefix was not exported, as the `reason` label of the dropped gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum DropReason {
    /// More symbols than `--harvest.max-symbols`.
    Cap,
    /// The symbol cannot be a label value (empty, too long, not UTF-8, control characters).
    InvalidName,
    /// The key is not a hash.
    WrongType,
}

impl DropReason {
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
    /// Shared with the snapshots before and after: a change replaces its proposals, not the list's.
    pub proposals: Vec<Arc<Proposal>>,
    /// Configured symbols that have no hash in Redis (empty when discovering).
    pub missing: Vec<String>,
    pub dropped: EnumMap<DropReason, u64>,
    pub redis_up: bool,
    /// The last Redis error, for readiness and logs.
    pub redis_error: Option<String>,
    /// When the proposals were last read successfully; `None` before the first success.
    pub last_success: Option<Instant>,
    pub last_success_unix: Option<f64>,
    pub refresh_duration: Duration,
    pub refreshes_total: u64,
    pub(crate) refresh_errors_total: EnumMap<ErrorKind, u64>,
    pub parse_errors_total: EnumMap<Field, u64>,
    /// In event mode, whether keyspace notifications are being followed; `None` when polling only.
    pub notifications_up: Option<bool>,
    /// Keys re-read because a notification announced a change.
    pub notified_total: u64,
    /// Commands sent to Redis by successful reads (SCAN pages and HMGETs), and their round trips.
    pub redis_commands_total: u64,
    pub redis_round_trips_total: u64,
    /// Where the last read went (the node, or a cluster's nodes) and the failovers seen; kept
    /// through failures, so the metrics still name the last node read.
    pub(crate) placement: Placement,
    /// The refresh interval, which readiness uses to judge how old is too old.
    pub poll_interval: Duration,
    pub started: Instant,
}

impl Snapshot {
    pub fn empty(poll_interval: Duration, started: Instant) -> Snapshot {
        Snapshot {
            proposals: Vec::new(),
            missing: Vec::new(),
            dropped: EnumMap::default(),
            redis_up: false,
            redis_error: None,
            last_success: None,
            last_success_unix: None,
            refresh_duration: Duration::ZERO,
            refreshes_total: 0,
            refresh_errors_total: EnumMap::default(),
            parse_errors_total: EnumMap::default(),
            notifications_up: None,
            notified_total: 0,
            redis_commands_total: 0,
            redis_round_trips_total: 0,
            placement: Placement::default(),
            poll_interval,
            started,
        }
    }

    /// What survives any transition: the counters and the settings. Everything else is the
    /// state of one read, which each transition below sets or keeps explicitly.
    fn carry_over(&self) -> Snapshot {
        Snapshot {
            refresh_errors_total: self.refresh_errors_total,
            parse_errors_total: self.parse_errors_total,
            notifications_up: self.notifications_up,
            notified_total: self.notified_total,
            redis_commands_total: self.redis_commands_total,
            redis_round_trips_total: self.redis_round_trips_total,
            placement: self.placement.clone(),
            ..Snapshot::empty(self.poll_interval, self.started)
        }
    }

    /// The counters and settings plus the data of the last successful full read, which a
    /// failed read or a partial one keeps serving.
    fn keep_last_read(&self) -> Snapshot {
        Snapshot {
            proposals: self.proposals.clone(),
            missing: self.missing.clone(),
            dropped: self.dropped,
            last_success: self.last_success,
            last_success_unix: self.last_success_unix,
            refreshes_total: self.refreshes_total,
            refresh_duration: self.refresh_duration,
            ..self.carry_over()
        }
    }

    /// After a successful full read that started at `started` and completed at `now_unix` (by
    /// the system clock): symbols checked, sorted, capped and parsed.
    pub(crate) fn after_fetch(
        &self,
        fetched: Fetched,
        max_symbols: usize,
        started: Instant,
        now_unix: f64,
    ) -> Snapshot {
        let mut next = Snapshot {
            missing: fetched.missing,
            redis_up: true,
            last_success: Some(started),
            last_success_unix: Some(now_unix),
            refreshes_total: self.refreshes_total + 1,
            ..self.carry_over()
        };
        next.dropped[DropReason::WrongType] = fetched.wrong_type as u64;
        next.count_redis_cost(fetched.commands, fetched.round_trips);
        next.placement = fetched.placement;
        let mut named = next.named_hashes(fetched.hashes);
        if named.len() > max_symbols {
            next.dropped[DropReason::Cap] = (named.len() - max_symbols) as u64;
            named.truncate(max_symbols);
        }
        next.proposals = next.parse_counted(named, &self.proposals);
        next
    }

    /// After re-reading announced symbols: this snapshot with those replaced, added or
    /// removed. Refresh metadata (cache age, refresh counters) stays that of the last full read.
    pub(crate) fn with_changes(&self, fetched: Fetched, max_symbols: usize) -> Snapshot {
        let mut next = Snapshot {
            redis_up: true,
            notifications_up: Some(true),
            ..self.keep_last_read()
        };
        next.notified_total += (fetched.hashes.len() + fetched.absent.len()) as u64;
        next.count_redis_cost(fetched.commands, fetched.round_trips);
        next.placement = fetched.placement;
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
        let named = next.named_hashes(fetched.hashes);
        for proposal in next.parse_counted(named, &[]) {
            next.missing.retain(|m| *m != proposal.symbol);
            match next
                .proposals
                .binary_search_by(|p| p.symbol.cmp(&proposal.symbol))
            {
                Ok(index) => next.proposals[index] = proposal,
                Err(_) if next.proposals.len() >= max_symbols => next.dropped[DropReason::Cap] += 1,
                Err(index) => next.proposals.insert(index, proposal),
            }
        }
        proposal::bound_unknown_actions(&mut next.proposals, UNKNOWN_ACTION_LIMIT);
        next
    }

    /// This snapshot of a full read, with what `newer` holds for `symbols`: changes to those
    /// were applied while the read was in flight, after it may have read them.
    pub(crate) fn keeping_changes(
        mut self,
        newer: &Snapshot,
        symbols: &HashSet<String>,
        max_symbols: usize,
    ) -> Snapshot {
        if symbols.is_empty() {
            return self;
        }
        self.proposals.retain(|p| !symbols.contains(&p.symbol));
        for proposal in newer
            .proposals
            .iter()
            .filter(|p| symbols.contains(&p.symbol))
        {
            if self.proposals.len() >= max_symbols {
                self.dropped[DropReason::Cap] += 1;
                continue;
            }
            let index = self
                .proposals
                .partition_point(|p| p.symbol < proposal.symbol);
            self.proposals.insert(index, Arc::clone(proposal));
        }
        self.missing.retain(|m| !symbols.contains(m));
        let still_missing = newer.missing.iter().filter(|m| symbols.contains(*m));
        self.missing.extend(still_missing.cloned());
        self.missing.sort_unstable();
        self
    }

    /// After a failed read: the last known proposals, marked as such.
    pub(crate) fn after_failure(&self, error: &FetchError) -> Snapshot {
        let mut next = Snapshot {
            redis_up: false,
            redis_error: Some(error.to_string()),
            refreshes_total: self.refreshes_total + 1,
            ..self.keep_last_read()
        };
        next.refresh_errors_total[error.kind()] += 1;
        next
    }

    fn count_redis_cost(&mut self, commands: usize, round_trips: usize) {
        self.redis_commands_total += commands as u64;
        self.redis_round_trips_total += round_trips as u64;
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
                .map(|(symbol, pairs)| {
                    Arc::new(crate::proposal::parse_pairs((*symbol).to_owned(), pairs))
                })
                .collect(),
            redis_up: true,
            last_success: Some(start),
            last_success_unix: Some(last_success_unix),
            ..Snapshot::empty(Duration::from_secs(5), start)
        }
    }
}

#[cfg(test)]
mod tests;

//! The state of the exported data after one refresh: the proposals and the exporter's own health.
//! Plain data and the readiness rule; no I/O, so both the renderer and the HTTP server can read it
//! without knowing where it came from.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enum_map::{Enum, EnumMap};

use crate::fetch::{ErrorKind, FetchError, Fetched, Placement, RawHash};
use crate::proposal::{self, Field, Proposal, ReadDigest};

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

/// Data older than this many poll intervals makes the exporter not ready.
const STALE_AFTER_POLLS: u32 = 3;

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

    /// Symbols that can be label values, sorted and unique; the others are counted as dropped.
    fn named_hashes(&mut self, hashes: Vec<RawHash>) -> Vec<(String, RawHash)> {
        let mut named = Vec::with_capacity(hashes.len());
        for mut hash in hashes {
            match proposal::parse_symbol(std::mem::take(&mut hash.symbol)) {
                Ok(symbol) => named.push((sort_key(&symbol), symbol, hash)),
                Err((error, raw)) => {
                    self.dropped[DropReason::InvalidName] += 1;
                    tracing::debug!(symbol = %String::from_utf8_lossy(&raw), "key dropped: {error}");
                }
            }
        }
        // The key settles most comparisons without reading the symbols, which a large read
        // has scattered over the heap.
        named.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        named.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        named
            .into_iter()
            .map(|(_, symbol, hash)| (symbol, hash))
            .collect()
    }

    /// Parses each hash, counting its invalid fields, and bounds the unknown action labels. A
    /// hash whose values are those that one of `previous` (sorted by symbol, as `named` is) was
    /// parsed from is that proposal, shared: a full read of unchanged data parses nothing
    /// again, holds no second copy, and compares as unchanged at a glance.
    fn parse_counted(
        &mut self,
        named: Vec<(String, RawHash)>,
        previous: &[Arc<Proposal>],
    ) -> Vec<Arc<Proposal>> {
        let mut before = previous.iter().peekable();
        let mut proposals: Vec<Arc<Proposal>> = named
            .into_iter()
            .map(|(symbol, hash)| {
                // One comparison per step: the symbols compared are mostly equal, to their end.
                let same = loop {
                    match before.peek().map(|p| p.symbol.as_str().cmp(&symbol)) {
                        Some(Ordering::Less) => {
                            before.next();
                        }
                        Some(Ordering::Equal) => break before.next(),
                        Some(Ordering::Greater) | None => break None,
                    }
                };
                let read_from = ReadDigest(Some(hash.digest()));
                if let Some(same) = same
                    && same.read_from.0 == read_from.0
                {
                    return Arc::clone(same);
                }
                let mut values = [None; proposal::SLOTS];
                for (slot, value) in values.iter_mut().zip(hash.values()) {
                    *slot = value;
                }
                Arc::new(Proposal {
                    read_from,
                    ..proposal::parse(symbol, &values)
                })
            })
            .collect();
        proposal::bound_unknown_actions(&mut proposals, UNKNOWN_ACTION_LIMIT);
        for field in proposals.iter().flat_map(|p| &p.invalid_fields) {
            self.parse_errors_total[*field] += 1;
        }
        proposals
    }

    /// Seconds since the data was last read from Redis (since start-up if it never was).
    pub fn cache_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_success.unwrap_or(self.started))
    }

    /// Whether the process can be trusted to serve current data, as a readiness probe or a load
    /// balancer asks: `Err` with every reason when Redis is unreachable or the data is older than
    /// a few poll intervals (another exporter would do better), else `Ok` with the problems of
    /// the data itself, such as configured symbols without a hash, which no other exporter of
    /// the same Redis would fix and which the metrics and alerts already report.
    pub fn readiness(&self, now: Instant) -> Result<Vec<String>, Vec<String>> {
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
        let mut data_problems = Vec::new();
        if !self.missing.is_empty() {
            data_problems.push(format!(
                "configured symbols without a proposal: {}",
                self.missing.join(", ")
            ));
        }
        if reasons.is_empty() {
            Ok(data_problems)
        } else {
            reasons.extend(data_problems);
            Err(reasons)
        }
    }
}

/// The first 16 bytes of a symbol, in two numbers that order as the symbols do, or tie: a
/// shorter symbol is padded with zeros, which sort first, as its end does. Two words, not a
/// `u128`, so that the pairs keep their alignment and the last step needs no new vector.
fn sort_key(symbol: &str) -> (u64, u64) {
    let mut key = [0; 16];
    let len = symbol.len().min(key.len());
    key[..len].copy_from_slice(&symbol.as_bytes()[..len]);
    let key = u128::from_be_bytes(key);
    ((key >> 64) as u64, key as u64)
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
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A full read that began before a change was applied must not undo it: the changed
    /// symbol keeps its newer value, a deleted one stays deleted, a new one stays, and the
    /// symbols nobody touched are the full read's.
    #[test]
    fn a_full_read_keeps_the_changes_applied_while_it_ran() {
        let pairs = |score: &'static str| -> Vec<(&'static str, &'static str)> {
            vec![("kill_score", score)]
        };
        let (old, new) = (pairs("0.1"), pairs("0.9"));
        let read = Snapshot::of_hashes(
            &[("AAA", &old), ("BBB", &old), ("CCC", &old), ("DDD", &old)],
            1.0,
        );
        let newer = Snapshot::of_hashes(&[("BBB", &new), ("CCC", &old), ("EEE", &new)], 1.0);
        let touched: HashSet<String> = ["BBB", "DDD", "EEE", "FFF"].map(String::from).into();
        let kept = read.keeping_changes(&newer, &touched, 100);
        let scores: Vec<(&str, f64)> = kept
            .proposals
            .iter()
            .map(|p| (p.symbol.as_str(), p.kill_score))
            .collect();
        assert_eq!(
            scores,
            [("AAA", 0.1), ("BBB", 0.9), ("CCC", 0.1), ("EEE", 0.9)]
        );
        let capped =
            Snapshot::of_hashes(&[("AAA", &old)], 1.0).keeping_changes(&newer, &touched, 2);
        assert_eq!(capped.proposals.len(), 2);
        assert_eq!(capped.dropped[DropReason::Cap], 1);
    }

    #[test]
    fn readiness_names_every_reason() {
        let start = Instant::now();
        let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
        let reasons = snapshot.readiness(start).unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");

        snapshot.redis_up = true;
        snapshot.last_success = Some(start);
        assert_eq!(
            snapshot.readiness(start + Duration::from_secs(15)),
            Ok(Vec::new())
        );

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

    #[test]
    fn missing_symbols_are_a_data_problem_not_unreadiness() {
        let start = Instant::now();
        let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
        snapshot.redis_up = true;
        snapshot.last_success = Some(start);
        snapshot.missing = vec!["SOLUSDT".into()];
        assert_eq!(
            snapshot.readiness(start),
            Ok(vec![
                "configured symbols without a proposal: SOLUSDT".to_owned()
            ])
        );
    }

    proptest::proptest! {
        /// Whatever order SCAN gave, a full read holds each valid symbol once, in string order:
        /// symbols that share their first 16 bytes, or are the start of another, included.
        #[test]
        fn a_full_read_sorts_its_symbols_and_holds_each_once(
            symbols in proptest::collection::vec("[AB\u{e9}]{0,2}(_SIXTEEN_BYTES__)?[AB\u{e9}]{0,3}", 0..40)
        ) {
            let start = Instant::now();
            let fetched = Fetched {
                hashes: symbols
                    .iter()
                    .map(|symbol| raw(symbol.as_bytes(), &[("kill_score", "0.5")]))
                    .collect(),
                ..Fetched::default()
            };
            let read = Snapshot::empty(Duration::from_secs(5), start)
                .after_fetch(fetched, 100, start, 1.0);
            let held: Vec<&str> = read.proposals.iter().map(|p| p.symbol.as_str()).collect();
            let valid: BTreeSet<&str> =
                symbols.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            proptest::prop_assert_eq!(held, valid.into_iter().collect::<Vec<_>>());
            let empty = symbols.iter().filter(|s| s.is_empty()).count() as u64;
            proptest::prop_assert_eq!(read.dropped[DropReason::InvalidName], empty);
        }
    }

    /// A full read of unchanged hashes shares the proposals it already holds.
    #[test]
    fn a_full_read_shares_the_proposals_that_did_not_change() {
        let start = Instant::now();
        let read = |score: &str| Fetched {
            hashes: vec![
                raw(b"AAA", &[("kill_score", "0.5")]),
                raw(b"BBB", &[("kill_score", score)]),
                raw(b"CCC", &[("kill_score", "0.5")]),
            ],
            ..Fetched::default()
        };
        let first =
            Snapshot::empty(Duration::from_secs(5), start).after_fetch(read("0.5"), 10, start, 1.0);
        let second = first.after_fetch(read("0.7"), 10, start, 2.0);
        let shared: Vec<bool> = (first.proposals.iter().zip(&second.proposals))
            .map(|(a, b)| Arc::ptr_eq(a, b))
            .collect();
        assert_eq!(shared, [true, false, true]);
        assert_eq!(second.proposals[1].kill_score, 0.7);
    }

    /// A proposal read unchanged is not parsed again, unless the bound on unknown actions
    /// renamed its action: once fewer actions are unknown, it gets its own back.
    #[test]
    fn an_action_renamed_by_the_bound_is_named_again_when_room_is_made() {
        let start = Instant::now();
        let unknown = |count: usize| Fetched {
            hashes: (0..count)
                .map(|i| {
                    let (symbol, action) = (format!("S{i:02}"), format!("NEW_{i:02}"));
                    raw(symbol.as_bytes(), &[("harvest_action", &action)])
                })
                .collect(),
            ..Fetched::default()
        };
        let over = UNKNOWN_ACTION_LIMIT + 1;
        let first = Snapshot::empty(Duration::from_secs(5), start).after_fetch(
            unknown(over),
            100,
            start,
            1.0,
        );
        let last = |snapshot: &Snapshot| snapshot.proposals[over - 1].action.to_string();
        assert_eq!(last(&first), proposal::OTHER_ACTION);
        let mut fewer = unknown(over);
        fewer.hashes.remove(0);
        let second = first.after_fetch(fewer, 100, start, 2.0);
        assert_eq!(second.proposals[over - 2].action.to_string(), "NEW_16");
        assert!(Arc::ptr_eq(&first.proposals[1], &second.proposals[0]));
    }

    fn raw(symbol: &[u8], pairs: &[(&str, &str)]) -> RawHash {
        let values: Vec<Option<&[u8]>> = proposal::keys()
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
        let next = previous.after_fetch(fetched, 2, start, 1.0);
        assert_eq!(symbols(&next), ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(next.dropped.into_array(), [1, 1, 2]);
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
            snapshot = snapshot.after_fetch(fetched, 10, start, 1.0);
        }
        assert_eq!(snapshot.parse_errors_total[Field::KillScore], 3);
    }

    #[test]
    fn failure_keeps_the_last_values_and_counts_the_error() {
        let start = Instant::now();
        let previous = Snapshot::empty(Duration::from_secs(5), start);
        let fetched = Fetched {
            hashes: vec![raw(b"X", &[("kill_score", "0.9")])],
            ..Fetched::default()
        };
        let good = previous.after_fetch(fetched, 10, start, 1.0);
        let error = FetchError::Reply {
            addr: "127.0.0.1:1".into(),
            command: "HMGET",
        };
        let failed = good.after_failure(&error);
        assert!(!failed.redis_up);
        assert_eq!(failed.proposals, good.proposals);
        assert_eq!(failed.last_success, good.last_success);
        assert_eq!(failed.refresh_errors_total.into_array(), [0, 0, 1]);
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
        let base = Snapshot::empty(Duration::from_secs(5), start).after_fetch(full, 3, start, 1.0);
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
        let merged = base.with_changes(changes, 3);
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
        let capped = merged.with_changes(over_cap, 3);
        assert_eq!(symbols(&capped), ["BBB", "CCC", "DDD"]);
        assert_eq!(capped.dropped[DropReason::Cap], 1);
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
        let merged = base.with_changes(changes, 10);
        assert_eq!(merged.missing, ["AAA"]);
        assert_eq!(symbols(&merged), ["BBB"]);
    }
}

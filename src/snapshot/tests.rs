use std::collections::BTreeSet;

use super::*;
use crate::fetch::RawHash;

/// A full read that began before a change was applied must not undo it: the changed
/// symbol keeps its newer value, a deleted one stays deleted, a new one stays, and the
/// symbols nobody touched are the full read's.
#[test]
fn a_full_read_keeps_the_changes_applied_while_it_ran() {
    let pairs =
        |score: &'static str| -> Vec<(&'static str, &'static str)> { vec![("kill_score", score)] };
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
    let capped = Snapshot::of_hashes(&[("AAA", &old)], 1.0).keeping_changes(&newer, &touched, 2);
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
    let first =
        Snapshot::empty(Duration::from_secs(5), start).after_fetch(unknown(over), 100, start, 1.0);
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

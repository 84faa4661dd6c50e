//! The tests of `view`: row order, bands, staleness, actions and calibration as the operator
//! reads them, the apply note, the JSON round trip and the wording of ages.

use super::*;
use crate::fixtures::{SPEC_EXAMPLE, VIEWED_AT as NOW, with};
use crate::proposal::{Action, FIELDS, Shown};

fn snapshot(hashes: &[(&str, &[(&str, &str)])]) -> Snapshot {
    Snapshot::of_hashes(hashes, NOW - 0.25)
}

#[test]
fn the_apply_note_tells_the_newest_plan_its_outcome_and_repeats() {
    use crate::apply::{Decision, Newest, Outcome};
    let note = |decision, outcome, repeats| {
        let apply = ApplyView {
            enabled: true,
            newest: [(
                "BTCUSDT".to_owned(),
                Newest {
                    decision,
                    outcome,
                    repeats,
                },
            )]
            .into(),
            ..ApplyView::default()
        };
        let view = View::new(&snapshot(&[("BTCUSDT", &[])]), NOW, &apply);
        view.proposals[0].apply_note()
    };
    let (execute, dry_run) = (Some(Decision::Execute), Some(Outcome::DryRun));
    assert_eq!(
        note(execute, dry_run, 41).as_deref(),
        Some("plan EXECUTE \u{b7} dry run \u{b7} 41 repeats")
    );
    assert_eq!(
        note(execute, dry_run, 1).as_deref(),
        Some("plan EXECUTE \u{b7} dry run \u{b7} 1 repeat")
    );
    assert_eq!(
        note(execute, None, 0).as_deref(),
        Some("plan EXECUTE \u{b7} no result yet")
    );
    assert_eq!(
        note(None, Some(Outcome::Skipped), 3).as_deref(),
        Some("plan \u{2014} \u{b7} skipped \u{b7} 3 repeats")
    );
    assert_eq!(note(None, None, 0), None);
}

#[test]
fn rows_are_sorted_by_kill_score_then_symbol() {
    let view = View::new(
        &snapshot(&[
            ("AAA", &[("kill_score", "0.55")]),
            ("BBB", &[("kill_score", "0.91")]),
            ("CCC", &[("kill_score", "0.55")]),
            ("DDD", &[("kill_score", "None")]),
        ]),
        NOW,
        &ApplyView::default(),
    );
    let symbols: Vec<_> = view.proposals.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(symbols, ["BBB", "AAA", "CCC", "DDD"]);
    assert_eq!(view.proposals[3].invalid_fields[0], "kill_score");
    assert_eq!(view.cache_age_seconds, Some(0.25));
    assert_eq!(view.poll_interval_seconds, 5.0);
}

#[test]
fn bands_follow_the_dashboard_thresholds() {
    assert_eq!(KillBand::of(0.5999), KillBand::Low);
    assert_eq!(KillBand::of(0.6), KillBand::High);
    assert_eq!(KillBand::of(0.7999), KillBand::High);
    assert_eq!(KillBand::of(0.8), KillBand::Critical);
    assert_eq!(RNetBand::of(7.0), RNetBand::Good);
    assert_eq!(RNetBand::of(6.99), RNetBand::Fair);
    assert_eq!(RNetBand::of(3.0), RNetBand::Fair);
    assert_eq!(RNetBand::of(2.99), RNetBand::Poor);
    assert_eq!(RNetBand::of(-1.0), RNetBand::Poor);
}

#[test]
fn data_older_than_a_minute_or_without_a_time_is_stale() {
    let epoch = |age: f64| (NOW - age).to_string();
    let (fresh, edge, old, future) = (epoch(5.0), epoch(60.0), epoch(61.0), epoch(-30.0));
    let view = View::new(
        &snapshot(&[
            ("FRESH", &[("last_update_epoch", &fresh)]),
            ("EDGE", &[("last_update_epoch", &edge)]),
            ("OLD", &[("last_update_epoch", &old)]),
            ("FUTURE", &[("last_update_epoch", &future)]),
            ("NOTIME", &[("kill_score", "0.5")]),
            (
                "COMPUTED",
                &[
                    ("computed_at_utc", "2026-01-23T01:09:50"),
                    ("kill_score", "0.4"),
                ],
            ),
        ]),
        NOW,
        &ApplyView::default(),
    );
    let row = |symbol: &str| {
        let row = view.proposals.iter().find(|r| r.symbol == symbol).unwrap();
        (row.age_seconds, row.stale)
    };
    assert_eq!(row("FRESH"), (Some(5.0), false));
    assert_eq!(row("EDGE"), (Some(60.0), false));
    assert_eq!(row("OLD"), (Some(61.0), true));
    assert_eq!(
        row("FUTURE"),
        (Some(0.0), false),
        "clock skew is not negative age"
    );
    assert_eq!(row("NOTIME"), (None, true));
    assert_eq!(row("COMPUTED"), (Some(10.0), false));
    let stale: Vec<_> = view.stale().map(|r| r.symbol.as_str()).collect();
    assert_eq!(stale, ["NOTIME", "OLD"]);
}

#[test]
fn actions_and_stop_loss_as_the_operator_reads_them() {
    let view = View::new(
        &snapshot(&[
            (
                "CAL",
                &[
                    ("harvest_action", "PARTIAL_50"),
                    ("action", "PARTIAL_75"),
                    ("calibrated", "1"),
                    ("new_sl_proposed", "21.5"),
                    ("position_side", "SHORT"),
                ],
            ),
            (
                "RAW",
                &[("new_sl_proposed", "None"), ("action", "FULL_CLOSE")],
            ),
        ]),
        NOW,
        &ApplyView::default(),
    );
    let cal = &view.proposals.iter().find(|r| r.symbol == "CAL").unwrap();
    assert_eq!(cal.action.as_deref(), Some("PARTIAL_50"));
    assert_eq!(cal.calibrated_action.as_deref(), Some("PARTIAL_75"));
    assert_eq!(cal.new_sl, Some(21.5));
    assert_eq!(cal.position_side.as_deref(), Some("SHORT"));
    let raw = &view.proposals.iter().find(|r| r.symbol == "RAW").unwrap();
    assert_eq!(raw.action, None);
    assert_eq!(
        raw.calibrated_action, None,
        "action counts only when calibrated=1"
    );
    assert_eq!(raw.new_sl, None);
}

#[test]
fn calibration_notes_and_redis_state() {
    let view = View::new(
        &snapshot(&[
            (
                "KEPT",
                &[
                    ("harvest_action", "PARTIAL_50"),
                    ("action", "PARTIAL_50"),
                    ("calibrated", "1"),
                ],
            ),
            (
                "REPLACED",
                &[
                    ("harvest_action", "PARTIAL_50"),
                    ("action", "FULL_CLOSE"),
                    ("calibrated", "1"),
                ],
            ),
            ("RAW", &[("harvest_action", "PARTIAL_50")]),
        ]),
        NOW,
        &ApplyView::default(),
    );
    let calibration = |symbol: &str| {
        let row = view.proposals.iter().find(|r| r.symbol == symbol).unwrap();
        row.calibration().map(|c| c.note("->"))
    };
    assert_eq!(calibration("KEPT").as_deref(), Some("calibrated"));
    assert_eq!(
        calibration("REPLACED").as_deref(),
        Some("-> FULL_CLOSE (calibrated)")
    );
    assert_eq!(calibration("RAW"), None);

    assert_eq!(view.redis_state(), "Redis up");
    let mut down = view.clone();
    down.redis_up = false;
    assert_eq!(down.redis_state(), "Redis down");
    down.redis_error = Some("connection refused".into());
    assert_eq!(down.redis_state(), "Redis down: connection refused");
}

/// The JSON row holds every field but the extras under its name in the field table, with the
/// proposal's value: a field added to the table without its place in the view fails here.
#[test]
fn rows_carry_every_field_but_the_extras_under_its_table_name() {
    let hash = with(
        &SPEC_EXAMPLE,
        &[("action", "FULL_CLOSE"), ("calibrated", "1")],
    );
    let snapshot = snapshot(&[("ETHUSDT", &hash)]);
    let proposal = &snapshot.proposals[0];
    let view = View::new(&snapshot, NOW, &ApplyView::default());
    let row = serde_json::to_value(&view.proposals[0]).unwrap();
    let shown = FIELDS
        .iter()
        .filter(|spec| spec.required || matches!(spec.shown, Shown::OneHot | Shown::Age));
    for spec in shown {
        let expected = match (proposal.number(spec.field), proposal.action_of(spec.field)) {
            (Some(number), _) => serde_json::json!(number),
            (None, action) => serde_json::json!(action.and_then(Action::label)),
        };
        assert_eq!(row[spec.name], expected, "{}", spec.key);
    }
}

#[test]
fn json_round_trips() {
    let view = View::new(
        &snapshot(&[(
            "<script>",
            &[("kill_score", "0.7"), ("new_sl_proposed", "None")],
        )]),
        NOW,
        &ApplyView::default(),
    );
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains(r#""symbol":"<script>""#), "{json}");
    assert!(json.contains(r#""new_sl":null"#), "{json}");
    assert_eq!(serde_json::from_str::<View>(&json).unwrap(), view);
}

#[test]
fn component_shares_are_weighted_clamped_and_fit_the_bar() {
    let close = |a: [f64; 4], b: [f64; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    assert!(close(
        component_shares([0.0, 0.2, 0.12, 0.0]),
        [0.0, 10.0, 10.0, 0.0]
    ));
    let clamped = component_shares([0.0, -1.0, 9.0, 0.0]);
    assert!(close(clamped, [0.0, 0.0, 125.0 / 3.0, 0.0]), "{clamped:?}");
    let full = component_shares([1.0, 2.0, 0.5, 1.0]);
    assert!((full.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    assert!((full[0] - 200.0 / 6.75).abs() < 1e-9, "proportions kept");
}

#[test]
fn ages_read_like_a_clock() {
    assert_eq!(format_age(Some(0.4)), "0s");
    assert_eq!(format_age(Some(59.9)), "59s");
    assert_eq!(format_age(Some(185.0)), "3m 05s");
    assert_eq!(format_age(Some(7_620.0)), "2h 07m");
    assert_eq!(format_age(Some(273_600.0)), "3d 4h");
    assert_eq!(format_age(None), "unknown");
    assert_eq!(format_cache_age(Some(0.26)), "0.3s");
    assert_eq!(format_cache_age(Some(125.0)), "2m 05s");
    assert_eq!(format_cache_age(None), "never");
}

//! The tests of `render`: the seed's example and the golden files byte for byte, in both
//! formats, and a property that any hash and symbol render as valid exposition.

use super::*;
use crate::exposition::Format;
use crate::exposition_check::{assert_golden, check_exposition, check_open_metrics};
use crate::fixtures::{RENDERED_AT, SEED_EXAMPLE, SPEC_EXAMPLE, with, without};
use crate::proposal;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn snapshot_of(hashes: &[(&str, Vec<(&str, &str)>)]) -> Snapshot {
    let hashes: Vec<(&str, &[(&str, &str)])> =
        hashes.iter().map(|(s, p)| (*s, p.as_slice())).collect();
    Snapshot::of_hashes(&hashes, RENDERED_AT)
}

fn text(snapshot: &Snapshot) -> String {
    String::from_utf8(render(snapshot, RENDERED_AT).text).unwrap()
}

#[test]
fn seed_example_renders_like_the_seed() {
    let snapshot = Snapshot::of_hashes(&SEED_EXAMPLE, RENDERED_AT);
    let body = text(&snapshot);
    for expected in [
        "# HELP quantum_harvest_kill_score Kill score (edge collapse indicator)",
        "# TYPE quantum_harvest_kill_score gauge\nquantum_harvest_kill_score{symbol=\"BTCUSDT\"} 0.527\nquantum_harvest_kill_score{symbol=\"ETHUSDT\"} 0.753\nquantum_harvest_kill_score{symbol=\"SOLUSDT\"} 0.761\n",
        "quantum_harvest_k_regime_flip{symbol=\"ETHUSDT\"} 1.0\n",
        "quantum_harvest_action{symbol=\"ETHUSDT\",action=\"FULL_CLOSE_PROPOSED\"} 1.0\n",
        "quantum_harvest_action{symbol=\"ETHUSDT\",action=\"PARTIAL_75\"} 0.0\n",
        "quantum_harvest_action{symbol=\"BTCUSDT\",action=\"PARTIAL_75\"} 1.0\n",
        "quantum_harvest_exporter_redis_up 1.0\n",
        "quantum_harvest_exporter_parse_errors_total{field=\"kill_score\"} 0\n",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
}

#[test]
fn unknown_action_gets_its_own_series_and_known_ones_stay_zero() {
    let body = text(&snapshot_of(&[("X", vec![("harvest_action", "HOLD")])]));
    assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"HOLD\"} 1.0\n"));
    assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"NONE\"} 0.0\n"));
    assert_eq!(body.matches("quantum_harvest_action{").count(), 6);
}

#[test]
fn calibrated_action_only_for_calibrated_proposals() {
    let body = text(&snapshot_of(&[
        (
            "X",
            vec![
                ("harvest_action", "PARTIAL_25"),
                ("action", "FULL_CLOSE"),
                ("calibrated", "1"),
            ],
        ),
        (
            "Y",
            vec![("harvest_action", "NONE"), ("action", "FULL_CLOSE")],
        ),
    ]));
    assert!(
        body.contains(
            "quantum_harvest_calibrated_action{symbol=\"X\",action=\"FULL_CLOSE\"} 1.0\n"
        )
    );
    assert!(
        body.contains(
            "quantum_harvest_calibrated_action{symbol=\"X\",action=\"PARTIAL_25\"} 0.0\n"
        )
    );
    assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"PARTIAL_25\"} 1.0\n"));
    assert!(
        !body.contains("quantum_harvest_calibrated_action{symbol=\"Y\""),
        "not calibrated"
    );
    let plain = text(&snapshot_of(&[("Y", vec![("harvest_action", "NONE")])]));
    assert!(!plain.contains("quantum_harvest_calibrated_action"));
}

#[test]
fn extras_appear_only_when_present() {
    let body = text(&snapshot_of(&[("X", vec![("kill_score", "0.6")])]));
    assert!(!body.contains("quantum_harvest_sigma"));
    assert!(!body.contains("quantum_harvest_data_age_seconds"));
    let body = text(&snapshot_of(&[(
        "X",
        vec![
            ("sigma", "0.015"),
            ("p_mr", "0.2"),
            ("computed_at_utc", "2026-01-23T01:08:20Z"),
        ],
    )]));
    assert!(body.contains("quantum_harvest_sigma{symbol=\"X\"} 0.015\n"));
    assert!(body.contains(
        "quantum_harvest_regime_probability{symbol=\"X\",regime=\"mean_reversion\"} 0.2\n"
    ));
    assert!(body.contains("quantum_harvest_data_age_seconds{symbol=\"X\"} 10.0\n"));
}

#[test]
fn label_values_are_escaped() {
    let body = text(&snapshot_of(&[(r#"we"ird\"#, vec![])]));
    assert!(
        body.contains(r#"quantum_harvest_kill_score{symbol="we\"ird\\"} 0.0"#),
        "{body}"
    );
}

/// A snapshot that exercises every family: the seed's example, hostile symbol and label
/// values, calibrated actions, extras, and every exporter metric with non-zero values.
pub(crate) fn golden_snapshot() -> Snapshot {
    let mut snapshot = snapshot_of(&[
        (
            "BTCUSDT",
            vec![
                ("kill_score", "0.527"),
                ("k_regime_flip", "0.0"),
                ("k_sigma_spike", "0.1"),
                ("k_ts_drop", "0.05"),
                ("k_age_penalty", "0.2"),
                ("R_net", "1.1"),
                ("new_sl_proposed", "None"),
                ("harvest_action", "PARTIAL_75"),
                ("last_update_epoch", "1769130500"),
            ],
        ),
        (
            "ETHUSDT",
            with(
                &without(&SPEC_EXAMPLE, &["last_update_epoch"]),
                &[
                    ("harvest_action", "FULL_CLOSE_PROPOSED"),
                    ("action", "FULL_CLOSE"),
                    ("calibrated", "1"),
                    ("sigma", "0.015"),
                    ("p_trend", "0.5"),
                    ("p_mr", "0.3"),
                    ("p_chop", "0.2"),
                    ("position_age_sec", "3600"),
                    ("position_current_price", "105.0"),
                    ("position_entry_price", "100"),
                    ("position_unrealized_pnl", "-12.5"),
                ],
            ),
        ),
        (
            "we\"ird\\sym\nbol",
            vec![
                ("kill_score", "nan"),
                ("R_net", "inf"),
                ("harvest_action", "HOLD\"\\\n"),
            ],
        ),
    ]);
    snapshot.missing = vec!["SOLUSDT".into(), "x\"y".into()];
    snapshot.dropped = EnumMap::from_array([1, 2, 3]);
    snapshot.refresh_duration = Duration::from_micros(12_345);
    snapshot.refreshes_total = 42;
    snapshot.refresh_errors_total = EnumMap::from_array([1, 2, 3]);
    snapshot.parse_errors_total[Field::KillScore] = 7;
    snapshot.notifications_up = Some(true);
    snapshot.notified_total = 9;
    snapshot.redis_commands_total = 100;
    snapshot.redis_round_trips_total = 50;
    snapshot
}

#[test]
fn body_is_byte_identical_to_the_golden_file() {
    let body = render(&golden_snapshot(), RENDERED_AT);
    let text = String::from_utf8(body.text.to_vec()).unwrap();
    check_exposition(&text).unwrap();
    assert_golden("body.prom", mask_build_info(&text).as_bytes());
}

/// The build's own facts change with every commit and machine: pinned by name only.
fn mask_build_info(body: &str) -> String {
    let lines: Vec<String> = body
        .lines()
        .map(|line| {
            if !line.starts_with("quantum_harvest_exporter_build_info{") {
                return line.to_owned();
            }
            build_info::labels()
                .iter()
                .filter(|(name, _)| *name != "version")
                .fold(line.to_owned(), |line, (name, value)| {
                    line.replace(
                        &format!("{name}=\"{value}\""),
                        &format!("{name}=\"<{name}>\""),
                    )
                })
        })
        .collect();
    format!("{}\n", lines.join("\n"))
}

/// The OpenMetrics body, as the server puts it together, ends with the tail (`# EOF` last).
#[test]
fn open_metrics_body_is_byte_identical_to_the_golden_file() {
    let body = render(&golden_snapshot(), RENDERED_AT);
    let open_metrics = String::from_utf8(body.assembled(Format::OpenMetrics, 0)).unwrap();
    assert_golden("body.om", mask_build_info(&open_metrics).as_bytes());
    let tail = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tail.om"),
    )
    .unwrap();
    let whole = open_metrics + &tail;
    let families = check_open_metrics(&whole).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        families
            .iter()
            .any(|f| f == "quantum_harvest_exporter_refreshes")
    );
    assert!(whole.contains("# UNIT quantum_harvest_exporter_refresh_duration_seconds seconds\n"));
}

const SEED_FAMILIES: [&str; 9] = [
    "quantum_harvest_kill_score",
    "quantum_harvest_k_regime_flip",
    "quantum_harvest_k_sigma_spike",
    "quantum_harvest_k_ts_drop",
    "quantum_harvest_k_age_penalty",
    "quantum_harvest_r_net",
    "quantum_harvest_new_sl",
    "quantum_harvest_action",
    "quantum_harvest_last_update_epoch",
];

pub(crate) fn field_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(proposal::keys().map(|k| k.as_bytes().to_vec()).to_vec()),
        proptest::sample::select(vec![b"r_net".to_vec(), b"calibrated".to_vec()]),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

pub(crate) fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        ".{0,24}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1000..5000),
        any::<f64>().prop_map(|f| f.to_string().into_bytes()),
        proptest::sample::select(vec![
            "None",
            "1",
            "HOLD",
            "FULL_CLOSE_PROPOSED",
            "2026-01-23T00:58:58Z",
            "1e309",
            "-0",
            "NaN"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// Cases per run of the fuzz property: a few hundred in a plain `cargo test`, more from
/// `scripts/test` and `scripts/fuzz` through HARVEST_FUZZ_CASES.
pub(crate) fn fuzz_cases() -> u32 {
    std::env::var("HARVEST_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

pub(crate) fn symbol_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20),
        "[A-Z0-9\"\\\\{}=,\n<>&'\u{e9}\u{1f680}]{1,16}".prop_map(String::into_bytes),
        proptest::collection::vec(Just(b'S'), 60..70),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_hash_and_symbol_render_valid_exposition(
        hashes in proptest::collection::btree_map(
            symbol_bytes(),
            proptest::collection::vec((field_name(), field_value()), 0..30),
            0..6,
        )
    ) {
        let start = Instant::now();
        let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
        snapshot.proposals = hashes
            .iter()
            .filter_map(|(symbol, fields)| {
                proposal::parse_symbol(symbol.to_vec())
                    .ok()
                    .map(|s| std::sync::Arc::new(proposal::parse_pairs(s, fields)))
            })
            .collect();
        proposal::bound_unknown_actions(&mut snapshot.proposals, 4);
        let rendered = render(&snapshot, 1.0e9);
        let body = String::from_utf8(rendered.text.clone()).expect("UTF-8 output");
        let families = check_exposition(&body).map_err(TestCaseError::fail)?;
        for seed in SEED_FAMILIES {
            prop_assert!(families.iter().any(|f| f == seed), "{} missing", seed);
        }
        // Both formats as served: whole runs, and runs split at every length.
        for min_shared in [0, 64, 1 << 30] {
            prop_assert_eq!(&rendered.assembled(Format::Text, min_shared), &rendered.text);
            let open_metrics = String::from_utf8(
                rendered.assembled(Format::OpenMetrics, min_shared),
            )
            .expect("UTF-8 output")
                + "# EOF\n";
            let om_families = check_open_metrics(&open_metrics).map_err(TestCaseError::fail)?;
            let announced: Vec<&str> = families
                .iter()
                .map(|f| f.strip_suffix("_total").unwrap_or(f))
                .collect();
            prop_assert_eq!(om_families, announced);
        }
        for proposal in &snapshot.proposals {
            let ones = KNOWN_ACTIONS.iter().filter(|known| proposal.action.label() == Some(**known)).count();
            prop_assert!(ones <= 1);
        }
    }
}

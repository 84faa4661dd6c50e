//! The tests of `proposal`: the field table's slots, each way a field is read, bad values
//! becoming 0 and recorded, actions and their cap, symbol names.

use super::*;
use crate::fixtures::{SPEC_EXAMPLE, with, without};

#[test]
fn keys_follow_the_slots() {
    let keys = keys();
    assert_eq!(keys[Field::KillScore.into_usize()], "kill_score");
    assert_eq!(
        keys[Field::PositionUnrealizedPnl.into_usize()],
        "position_unrealized_pnl"
    );
    assert_eq!(
        keys[Field::LENGTH + Other::RNetLegacy.into_usize()],
        "r_net"
    );
    assert_eq!(
        keys[Field::LENGTH + Other::ReasonCodes.into_usize()],
        "reason_codes"
    );
    assert!(
        !keys.contains(&"ts"),
        "the untrusted ts field is never read"
    );
}

#[test]
fn complete_hash_parses_without_errors() {
    let p = parse_pairs("ETHUSDT".into(), &SPEC_EXAMPLE);
    assert_eq!(p.kill_score, 0.7533012950554003);
    assert_eq!(p.k_regime_flip, 1.0);
    assert_eq!(p.r_net, 2.45);
    assert_eq!(p.new_sl, Some(100.2));
    assert_eq!(p.last_update_epoch, 1769130500.0);
    assert_eq!(p.action, Action::Known(3));
    assert_eq!(p.cost_est, Some(1e-9));
    assert_eq!(p.sigma, None);
    assert_eq!(p.position_side.as_deref(), Some("LONG"));
    assert!(p.invalid_fields.is_empty(), "{:?}", p.invalid_fields);
}

#[test]
fn bad_values_become_zero_and_are_recorded() {
    for bad in [
        "None", "", "nan", "NaN", "inf", "-inf", "1e309", "garbage", "0x10", "1,5",
    ] {
        let pairs = with(&SPEC_EXAMPLE, &[("kill_score", bad)]);
        let p = parse_pairs("X".into(), &pairs);
        assert_eq!(p.kill_score, 0.0, "{bad:?}");
        assert_eq!(p.invalid_fields, vec![Field::KillScore], "{bad:?}");
    }
}

#[test]
fn missing_fields_become_zero_and_are_recorded() {
    let p = parse_pairs("X".into(), &[("harvest_action", "NONE")]);
    assert_eq!(p.kill_score, 0.0);
    assert_eq!(p.r_net, 0.0);
    assert_eq!(p.new_sl, None);
    assert_eq!(p.last_update_epoch, 0.0);
    assert_eq!(
        p.invalid_fields,
        vec![
            Field::KillScore,
            Field::KRegimeFlip,
            Field::KSigmaSpike,
            Field::KTsDrop,
            Field::KAgePenalty,
            Field::RNet,
            Field::NewSlProposed,
            Field::LastUpdateEpoch,
        ]
    );
}

#[test]
fn none_stop_loss_means_no_proposal_not_an_error() {
    for none in ["None", "", " None\r"] {
        let pairs = with(&SPEC_EXAMPLE, &[("new_sl_proposed", none)]);
        let p = parse_pairs("X".into(), &pairs);
        assert_eq!(p.new_sl, None);
        assert!(p.invalid_fields.is_empty());
    }
}

#[test]
fn r_net_falls_back_to_legacy_field() {
    let mut pairs = with(&without(&SPEC_EXAMPLE, &["R_net"]), &[("r_net", "1.5")]);
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(p.r_net, 1.5);
    assert!(p.invalid_fields.is_empty());

    pairs.push(("R_net", "bad"));
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(
        p.r_net, 1.5,
        "a valid legacy value beats an invalid new one"
    );
}

#[test]
fn last_update_falls_back_to_computed_at() {
    let mut pairs = without(&SPEC_EXAMPLE, &["last_update_epoch"]);
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(p.last_update_epoch, 1769129938.259371);
    assert!(p.invalid_fields.is_empty());

    pairs.push(("last_update_epoch", "soon"));
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(p.last_update_epoch, 1769129938.259371);
    assert_eq!(p.invalid_fields, vec![Field::LastUpdateEpoch]);
}

#[test]
fn actions_known_unknown_unsafe_and_missing() {
    assert_eq!(Action::parse("FULL_CLOSE_PROPOSED"), Action::Known(4));
    assert_eq!(Action::parse("HOLD"), Action::Unknown("HOLD".into()));
    assert_eq!(Action::parse("FULL CLOSE"), Action::Unknown("OTHER".into()));
    assert_eq!(Action::parse("\"}\n"), Action::Unknown("OTHER".into()));
    assert_eq!(
        Action::parse(&"A".repeat(33)),
        Action::Unknown("OTHER".into())
    );
    assert_eq!(Action::parse(" "), Action::Missing);
}

#[test]
fn calibrated_action_only_when_calibrated_is_one() {
    let mut pairs = SPEC_EXAMPLE.to_vec();
    pairs.push(("action", "FULL_CLOSE"));
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(p.calibrated_action, None);

    pairs.push(("calibrated", "1"));
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(
        p.calibrated_action,
        Some(Action::Unknown("FULL_CLOSE".into()))
    );
}

#[test]
fn invalid_extras_are_dropped_and_recorded() {
    let mut pairs = SPEC_EXAMPLE.to_vec();
    pairs.push(("sigma", "nan"));
    let p = parse_pairs("X".into(), &pairs);
    assert_eq!(p.sigma, None);
    assert_eq!(p.invalid_fields, vec![Field::Sigma]);
}

#[test]
fn unknown_actions_are_capped() {
    let mut proposals: Vec<Arc<Proposal>> = ["A1", "A2", "A1", "A3", "HOLD", "A3"]
        .iter()
        .map(|a| Arc::new(parse_pairs("X".into(), &[("harvest_action", a)])))
        .collect();
    let shared = proposals.clone();
    bound_unknown_actions(&mut proposals, 2);
    let labels: Vec<_> = proposals.iter().map(|p| p.action.to_string()).collect();
    assert_eq!(labels, ["A1", "A2", "A1", "OTHER", "OTHER", "OTHER"]);
    assert!(Arc::ptr_eq(&proposals[0], &shared[0]), "kept as it was");
    assert_eq!(
        shared[3].action.to_string(),
        "A3",
        "copied, not changed in place"
    );
}

#[test]
fn symbols_are_checked() {
    let parsed = |raw: &[u8]| {
        parse_symbol(raw.to_vec()).map_err(|(error, back)| {
            assert_eq!(back, raw, "the bytes come back");
            error
        })
    };
    assert_eq!(parsed(b"BTCUSDT"), Ok("BTCUSDT".into()));
    assert_eq!(parsed("é\"{}=\\".as_bytes()), Ok("é\"{}=\\".into()));
    assert_eq!(parsed(b""), Err(SymbolError::Empty));
    assert_eq!(parsed(&[b'A'; 65]), Err(SymbolError::TooLong));
    assert_eq!(parsed(b"\xff\xfe"), Err(SymbolError::NotUtf8));
    assert_eq!(parsed(b"BTC\nUSDT"), Err(SymbolError::ControlCharacter));
}

#[test]
fn binary_field_values_do_not_panic() {
    let fields = vec![(b"kill_score".to_vec(), vec![0xff, 0x00, 0xfe])];
    let p = parse_pairs("X".into(), &fields);
    assert_eq!(p.kill_score, 0.0);
    assert!(p.invalid_fields.contains(&Field::KillScore));
}

//! The examples the unit tests share: the seed's example and the edits of a hash (written once,
//! in `tests/common/seed.rs`, for the integration tests too), the spec's example hash and the
//! times the tests read them at. Test-only; it holds no test of its own.

#[path = "../tests/common/seed.rs"]
#[allow(unreachable_pub)]
mod seed;

pub(crate) use seed::{SEED_EXAMPLE, seed_hash, with, without};

/// The spec's example of a hash: the fields the publisher writes that the exporter reads,
/// with the values the spec shows.
pub(crate) const SPEC_EXAMPLE: [(&str, &str); 13] = [
    ("harvest_action", "PARTIAL_75"),
    ("kill_score", "0.7533012950554003"),
    ("k_regime_flip", "1.0"),
    ("k_sigma_spike", "0.25"),
    ("k_ts_drop", "0.208"),
    ("k_age_penalty", "0.3"),
    ("R_net", "2.45"),
    ("new_sl_proposed", "100.2"),
    ("last_update_epoch", "1769130500"),
    ("computed_at_utc", "2026-01-23T00:58:58.259371"),
    ("risk_unit", "2.0"),
    ("cost_est", "1e-09"),
    ("position_side", "LONG"),
];

/// When the exposition is rendered: ten seconds after the examples' `last_update_epoch`.
pub(crate) const RENDERED_AT: f64 = 1_769_130_510.0;

/// When the operator's view is made: a hundred seconds after the examples' `last_update_epoch`.
pub(crate) const VIEWED_AT: f64 = 1_769_130_600.0;

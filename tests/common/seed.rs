//! The seed's example: the three proposals its document shows as metrics, as the publisher
//! writes them, and the edits that make another proposal of one. Plain data and functions of
//! it, so that the integration tests (`common`) and the unit tests (`src/fixtures.rs`) share them.

/// Each proposal's symbol and hash fields. ETHUSDT's time carries the `Z` test tools write,
/// SOLUSDT has only the older writers' `r_net` and no `computed_at_utc`.
pub const SEED_EXAMPLE: [(&str, &[(&str, &str)]); 3] = [
    (
        "BTCUSDT",
        &[
            ("harvest_action", "PARTIAL_75"),
            ("kill_score", "0.527"),
            ("k_regime_flip", "0.0"),
            ("k_sigma_spike", "0.1"),
            ("k_ts_drop", "0.055"),
            ("k_age_penalty", "0.2"),
            ("R_net", "7.5"),
            ("new_sl_proposed", "None"),
            ("last_update_epoch", "1769130500"),
            ("computed_at_utc", "2026-01-23T01:08:20"),
        ],
    ),
    (
        "ETHUSDT",
        &[
            ("harvest_action", "FULL_CLOSE_PROPOSED"),
            ("kill_score", "0.753"),
            ("k_regime_flip", "1.0"),
            ("k_sigma_spike", "0.25"),
            ("k_ts_drop", "0.208"),
            ("k_age_penalty", "0.3"),
            ("R_net", "2.45"),
            ("new_sl_proposed", "100.2"),
            ("last_update_epoch", "1769130500"),
            ("computed_at_utc", "2026-01-23T01:08:20Z"),
        ],
    ),
    (
        "SOLUSDT",
        &[
            ("harvest_action", "PARTIAL_50"),
            ("kill_score", "0.761"),
            ("k_regime_flip", "1.0"),
            ("k_sigma_spike", "0.4"),
            ("k_ts_drop", "0.286"),
            ("k_age_penalty", "0.1"),
            ("r_net", "4.0"),
            ("new_sl_proposed", "21.5"),
            ("last_update_epoch", "1769130500"),
        ],
    ),
];

/// The fields of one of the seed example's proposals.
pub fn seed_hash(symbol: &str) -> &'static [(&'static str, &'static str)] {
    SEED_EXAMPLE
        .iter()
        .find(|(name, _)| *name == symbol)
        .map(|(_, hash)| *hash)
        .unwrap_or_else(|| panic!("the seed example has no {symbol}"))
}

/// `hash` with each of `changes` in place of the field of its name, or added after the others.
pub fn with<'a>(
    hash: &[(&'a str, &'a str)],
    changes: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut edited: Vec<(&str, &str)> = hash
        .iter()
        .filter(|(name, _)| !changes.iter().any(|(changed, _)| changed == name))
        .copied()
        .collect();
    edited.extend_from_slice(changes);
    edited
}

/// `hash` without the fields named.
pub fn without<'a>(hash: &[(&'a str, &'a str)], names: &[&str]) -> Vec<(&'a str, &'a str)> {
    hash.iter()
        .filter(|(name, _)| !names.contains(name))
        .copied()
        .collect()
}

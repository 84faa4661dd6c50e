//! Renders a [`Snapshot`] as the exposition body: every proposal family, then the exporter's
//! refresh metrics, through the typed writer of `exposition`. Pure: no I/O and no clock reads;
//! callers pass the time in. The values only known at scrape time are `server`'s.

use enum_map::{EnumArray, EnumMap};

use crate::build_info;
use crate::exposition::{DualBody, DualWriter, EscapedLabel, Family};
use crate::proposal::{Action, Extra, Field, KNOWN_ACTIONS, Proposal};
use crate::snapshot::{DropReason, Snapshot};
use crate::source::{ErrorKind, Placement};

/// A per-symbol family and how to read its value from a proposal.
type SeedGauge = (Family, fn(&Proposal) -> f64);

/// The seed's per-symbol gauges, in its order; `quantum_harvest_action` follows them.
const SEED_GAUGES: [SeedGauge; 8] = [
    (
        Family::gauge(
            "quantum_harvest_kill_score",
            "Kill score (edge collapse indicator), 0 to 1; 0 when missing or unparseable.",
        ),
        |p| p.kill_score,
    ),
    (
        Family::gauge(
            "quantum_harvest_k_regime_flip",
            "Regime flip component of the kill score (0 or 1).",
        ),
        |p| p.k_regime_flip,
    ),
    (
        Family::gauge(
            "quantum_harvest_k_sigma_spike",
            "Volatility spike component of the kill score (0 to 2).",
        ),
        |p| p.k_sigma_spike,
    ),
    (
        Family::gauge(
            "quantum_harvest_k_ts_drop",
            "Trend strength drop component of the kill score (0 to 0.5).",
        ),
        |p| p.k_ts_drop,
    ),
    (
        Family::gauge(
            "quantum_harvest_k_age_penalty",
            "Position age penalty component of the kill score (0 to 1).",
        ),
        |p| p.k_age_penalty,
    ),
    (
        Family::gauge(
            "quantum_harvest_r_net",
            "Net R (risk-reward) of the position, from R_net or the legacy r_net.",
        ),
        |p| p.r_net,
    ),
    (
        Family::gauge(
            "quantum_harvest_new_sl",
            "Proposed new stop loss price; 0 when none is proposed.",
        ),
        |p| p.new_sl.unwrap_or(0.0),
    ),
    (
        Family::gauge(
            "quantum_harvest_last_update_epoch",
            "Unix time of the proposal's last update (last_update_epoch, else computed_at_utc).",
        ),
        |p| p.last_update_epoch,
    ),
];

/// Per-symbol gauges beyond the seed, exported only when the publisher wrote a valid value.
const EXTRA_GAUGES: [(Family, Extra); 7] = [
    (
        Family::gauge(
            "quantum_harvest_risk_unit",
            "Risk unit of the position (risk_unit).",
        ),
        Extra::RiskUnit,
    ),
    (
        Family::gauge(
            "quantum_harvest_cost_est",
            "Estimated cost of acting on the proposal (cost_est).",
        ),
        Extra::CostEst,
    ),
    (
        Family::gauge("quantum_harvest_sigma", "Volatility estimate (sigma)."),
        Extra::Sigma,
    ),
    (
        Family::gauge(
            "quantum_harvest_position_age_seconds",
            "Age of the position (position_age_sec).",
        ),
        Extra::PositionAgeSec,
    ),
    (
        Family::gauge(
            "quantum_harvest_position_current_price",
            "Current price of the position's instrument.",
        ),
        Extra::PositionCurrentPrice,
    ),
    (
        Family::gauge(
            "quantum_harvest_position_entry_price",
            "Entry price of the position.",
        ),
        Extra::PositionEntryPrice,
    ),
    (
        Family::gauge(
            "quantum_harvest_position_unrealized_pnl",
            "Unrealized profit and loss of the position.",
        ),
        Extra::PositionUnrealizedPnl,
    ),
];

const REGIMES: [(&str, Extra); 3] = [
    ("trend", Extra::PTrend),
    ("mean_reversion", Extra::PMr),
    ("chop", Extra::PChop),
];

const ACTION: Family = Family::gauge(
    "quantum_harvest_action",
    "Proposed harvest action, one-hot: 1 for the current harvest_action, 0 for the other known actions.",
);
const CALIBRATED_ACTION: Family = Family::gauge(
    "quantum_harvest_calibrated_action",
    "Calibrated action the apply layer acts on, one-hot, for proposals the heat gate calibrated (calibrated=1).",
);
const DATA_AGE: Family = Family::gauge(
    "quantum_harvest_data_age_seconds",
    "Age of the proposal at the last refresh, from computed_at_utc.",
);
const REGIME_PROBABILITY: Family = Family::gauge(
    "quantum_harvest_regime_probability",
    "Probability of each market regime (p_trend, p_mr, p_chop).",
);

const BUILD_INFO: Family = Family::gauge(
    "quantum_harvest_exporter_build_info",
    "Build information of the exporter (version, git revision, build date, compiler); the value is always 1.",
);
const REDIS_UP: Family = Family::gauge(
    "quantum_harvest_exporter_redis_up",
    "1 when the last refresh read Redis successfully, else 0.",
);
const REFRESH_DURATION: Family = Family::gauge(
    "quantum_harvest_exporter_refresh_duration_seconds",
    "Wall time of the last refresh (discovery, fetch, parse and render).",
);
const LAST_SUCCESS: Family = Family::gauge(
    "quantum_harvest_exporter_last_success_timestamp_seconds",
    "Unix time of the last successful refresh.",
);
const SYMBOLS_EXPORTED: Family = Family::gauge(
    "quantum_harvest_exporter_symbols_exported",
    "Symbols exported by the last successful refresh.",
);
const SYMBOLS_MISSING: Family = Family::gauge(
    "quantum_harvest_exporter_symbols_missing",
    "Configured symbols (SYMBOLS) that have no proposal hash in Redis.",
);
const SYMBOL_MISSING: Family = Family::gauge(
    "quantum_harvest_exporter_symbol_missing",
    "1 for each configured symbol (SYMBOLS) that has no proposal hash in Redis.",
);
const SYMBOLS_DROPPED: Family = Family::gauge(
    "quantum_harvest_exporter_symbols_dropped",
    "Keys under the prefix that the last refresh did not export, by reason.",
);
const REFRESHES: Family = Family::counter(
    "quantum_harvest_exporter_refreshes_total",
    "Refreshes attempted since start-up.",
);
const REFRESH_ERRORS: Family = Family::counter(
    "quantum_harvest_exporter_refresh_errors_total",
    "Refreshes that failed, by kind of failure.",
);
const REDIS_COMMANDS: Family = Family::counter(
    "quantum_harvest_exporter_redis_commands_total",
    "Commands sent to Redis by successful reads: SCAN pages and HMGETs.",
);
const REDIS_ROUND_TRIPS: Family = Family::counter(
    "quantum_harvest_exporter_redis_round_trips_total",
    "Round trips to Redis made by successful reads, SCAN pages and pipelined HMGETs together.",
);
const NOTIFICATIONS_UP: Family = Family::gauge(
    "quantum_harvest_exporter_notifications_up",
    "Event mode: 1 while keyspace notifications are followed, 0 while falling back to polling.",
);
const NOTIFIED_KEYS: Family = Family::counter(
    "quantum_harvest_exporter_notified_keys_total",
    "Event mode: keys re-read because a keyspace notification announced a change.",
);
const REDIS_NODE: Family = Family::gauge(
    "quantum_harvest_exporter_redis_node_info",
    "The Redis node the last read went to (every node read, in a cluster), with the topology and the node's role.",
);
const REDIS_FAILOVERS: Family = Family::counter(
    "quantum_harvest_exporter_redis_failovers_total",
    "Changes of primary followed since start-up: a sentinel naming a new primary, or a cluster replica promoted.",
);
const REPLICA_LINK_UP: Family = Family::gauge(
    "quantum_harvest_exporter_redis_replica_link_up",
    "When reading a replica: 1 while its link to the primary is up (INFO replication master_link_status).",
);
const REPLICA_LAG: Family = Family::gauge(
    "quantum_harvest_exporter_redis_replica_lag_seconds",
    "When reading a replica: seconds since it last heard from its primary, or since the link went down.",
);
const PARSE_ERRORS: Family = Family::counter(
    "quantum_harvest_exporter_parse_errors_total",
    "Fields read as missing or unparseable (exported as 0 or left out), by field, summed over refreshes.",
);

/// Renders the per-refresh body, in both formats at once: every proposal family, then the
/// exporter's refresh metrics.
pub(crate) fn render(snapshot: &Snapshot, now_unix: f64) -> DualBody {
    let proposals = &snapshot.proposals;
    let mut w = DualWriter::with_capacity(64 + proposals.len() * 1_800);
    let symbols: Vec<EscapedLabel> = proposals
        .iter()
        .map(|p| EscapedLabel::new(&p.symbol))
        .collect();
    let each = || proposals.iter().zip(&symbols);

    for (family, value) in &SEED_GAUGES {
        let mut samples = w.family(family);
        for (proposal, symbol) in each() {
            samples.symbol(symbol, None, value(proposal));
        }
    }

    let mut samples = w.family(&ACTION);
    for (proposal, symbol) in each() {
        one_hot(&mut samples, symbol, &proposal.action);
    }

    if proposals.iter().any(|p| p.calibrated_action.is_some()) {
        let mut samples = w.family(&CALIBRATED_ACTION);
        for (proposal, symbol) in each() {
            if let Some(calibrated) = &proposal.calibrated_action {
                one_hot(&mut samples, symbol, calibrated);
            }
        }
    }

    if proposals.iter().any(|p| p.computed_at.is_some()) {
        let mut samples = w.family(&DATA_AGE);
        for (proposal, symbol) in each() {
            if let Some(computed_at) = proposal.computed_at {
                samples.symbol(symbol, None, now_unix - computed_at);
            }
        }
    }

    for (family, extra) in &EXTRA_GAUGES {
        if proposals.iter().any(|p| p.extra(*extra).is_some()) {
            let mut samples = w.family(family);
            for (proposal, symbol) in each() {
                if let Some(value) = proposal.extra(*extra) {
                    samples.symbol(symbol, None, value);
                }
            }
        }
    }

    if proposals
        .iter()
        .any(|p| REGIMES.iter().any(|(_, e)| p.extra(*e).is_some()))
    {
        let mut samples = w.family(&REGIME_PROBABILITY);
        for (proposal, symbol) in each() {
            for (regime, extra) in REGIMES {
                if let Some(value) = proposal.extra(extra) {
                    samples.symbol(symbol, Some(("regime", regime)), value);
                }
            }
        }
    }

    render_exporter_metrics(&mut w, snapshot);
    w.into_body()
}

/// Writes the five known actions, 1 for the current one, plus the current one when unknown.
fn one_hot(samples: &mut crate::exposition::Samples<'_>, symbol: &EscapedLabel, action: &Action) {
    let current = action.label();
    for known in KNOWN_ACTIONS {
        let value = if current == Some(known) { 1.0 } else { 0.0 };
        samples.symbol(symbol, Some(("action", known)), value);
    }
    if let Some(unknown) = current.filter(|c| !KNOWN_ACTIONS.contains(c)) {
        samples.symbol(symbol, Some(("action", unknown)), 1.0);
    }
}

fn render_exporter_metrics(w: &mut DualWriter, snapshot: &Snapshot) {
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    w.family(&BUILD_INFO).labelled(&build_info::labels(), 1_u64);
    w.family(&REDIS_UP).value(flag(snapshot.redis_up));
    w.family(&REFRESH_DURATION)
        .value(snapshot.refresh_duration.as_secs_f64());
    if let Some(unix) = snapshot.last_success_unix {
        w.family(&LAST_SUCCESS).value(unix);
    }
    w.family(&SYMBOLS_EXPORTED)
        .value(snapshot.proposals.len() as f64);
    w.family(&SYMBOLS_MISSING)
        .value(snapshot.missing.len() as f64);
    if !snapshot.missing.is_empty() {
        let mut samples = w.family(&SYMBOL_MISSING);
        for symbol in &snapshot.missing {
            samples.labelled(&[("symbol", symbol)], 1_u64);
        }
    }
    per_label(
        w,
        &SYMBOLS_DROPPED,
        "reason",
        &snapshot.dropped,
        DropReason::label,
    );
    w.family(&REFRESHES).value(snapshot.refreshes_total);
    per_label(
        w,
        &REFRESH_ERRORS,
        "kind",
        &snapshot.refresh_errors_total,
        ErrorKind::label,
    );
    w.family(&REDIS_COMMANDS)
        .value(snapshot.redis_commands_total);
    w.family(&REDIS_ROUND_TRIPS)
        .value(snapshot.redis_round_trips_total);
    if let Some(up) = snapshot.notifications_up {
        w.family(&NOTIFICATIONS_UP).value(flag(up));
        w.family(&NOTIFIED_KEYS).value(snapshot.notified_total);
    }
    per_label(
        w,
        &PARSE_ERRORS,
        "field",
        &snapshot.parse_errors_total,
        Field::key,
    );
    render_placement(w, &snapshot.placement);
}

/// Which node was read, from the first successful connection on.
fn render_placement(w: &mut DualWriter, placement: &Placement) {
    if placement.nodes.is_empty() {
        return;
    }
    let mut samples = w.family(&REDIS_NODE);
    for node in &placement.nodes {
        samples.labelled(
            &[
                ("mode", placement.mode.label()),
                ("addr", &node.addr),
                ("role", node.role.label()),
            ],
            1_u64,
        );
    }
    w.family(&REDIS_FAILOVERS).value(placement.failovers);
    if let Some(lag) = placement.replica_lag {
        w.family(&REPLICA_LINK_UP)
            .value(if lag.link_up { 1.0 } else { 0.0 });
        w.family(&REPLICA_LAG).value(lag.seconds);
    }
}

/// One sample per variant of `K`, labelled by `label_of`, in the enum's order.
fn per_label<K: EnumArray<u64>>(
    w: &mut DualWriter,
    family: &Family,
    label: &str,
    counts: &EnumMap<K, u64>,
    label_of: impl Fn(K) -> &'static str,
) {
    let mut samples = w.family(family);
    for (key, count) in counts {
        samples.labelled(&[(label, label_of(key))], *count);
    }
}

#[cfg(test)]
mod tests;

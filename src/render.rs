//! How a [`Snapshot`] reads as exposition text: the per-symbol families in their order and each
//! proposal's samples in them, then the exporter's refresh metrics, through `exposition`'s typed
//! writer. Pure: callers pass the time in. Which pieces are rendered when is `segments`' concern;
//! the values only known at scrape time are `server`'s.

use enum_map::{EnumArray, EnumMap};

use crate::build_info;
use crate::exposition::{DualBody, DualWriter, EscapedLabel, Family, Samples};
use crate::fetch::{ErrorKind, Placement};
use crate::proposal::{
    Action, FIELDS, Field, FieldSpec, KNOWN_ACTIONS, Proposal, REGIME_HELP, REGIME_METRIC, Shown,
};
use crate::snapshot::{DropReason, Snapshot};

/// How a per-symbol family's samples are read from a proposal.
#[derive(Clone, Copy)]
enum PerSymbol {
    /// A gauge: the field's value when present; a required field's is 0 when it is not.
    Gauge(Field),
    /// The action the field holds, one-hot, when it holds one.
    OneHot(Field),
    /// The age of the time the field holds, at the time of rendering.
    Age(Field),
    /// One sample per regime whose probability the publisher wrote.
    RegimeProbability,
}

/// A per-symbol family: its header and how each proposal's samples are written under it.
pub(crate) struct SymbolFamily {
    pub(crate) family: Family,
    samples: PerSymbol,
    /// Announced even when no proposal has a sample in it: the families of the seed's fields.
    required: bool,
}

impl SymbolFamily {
    /// Whether the family is announced when no proposal has a sample in it: the seed's families
    /// are; the others only appear once a publisher writes their fields.
    pub(crate) fn always_announced(&self) -> bool {
        self.required
    }

    /// Whether its samples depend on the time of rendering as well as on the proposal.
    pub(crate) fn changes_with_time(&self) -> bool {
        matches!(self.samples, PerSymbol::Age(_))
    }

    /// Writes `proposal`'s samples, if it has any in this family, labelled by `symbol` (its
    /// symbol escaped), as of `now_unix`.
    pub(crate) fn write(
        &self,
        samples: &mut Samples<'_>,
        proposal: &Proposal,
        symbol: &EscapedLabel<'_>,
        now_unix: f64,
    ) {
        match self.samples {
            PerSymbol::Gauge(field) => {
                let value = proposal.number(field);
                if let Some(value) = value.or(self.required.then_some(0.0)) {
                    samples.symbol(symbol, None, value);
                }
            }
            PerSymbol::OneHot(field) => {
                if let Some(action) = proposal.action_of(field) {
                    one_hot(samples, symbol, action);
                }
            }
            PerSymbol::Age(field) => {
                if let Some(time) = proposal.number(field) {
                    samples.symbol(symbol, None, now_unix - time);
                }
            }
            PerSymbol::RegimeProbability => {
                for (regime, field) in REGIMES {
                    if let Some(value) = proposal.number(field) {
                        samples.symbol(symbol, Some(("regime", regime)), value);
                    }
                }
            }
        }
    }

    /// Whether `proposal` has samples in this family.
    #[cfg(test)]
    fn has_samples(&self, proposal: &Proposal) -> bool {
        match self.samples {
            PerSymbol::Gauge(_) if self.required => true,
            PerSymbol::Gauge(field) | PerSymbol::Age(field) => proposal.number(field).is_some(),
            PerSymbol::OneHot(field) => proposal.action_of(field).is_some(),
            PerSymbol::RegimeProbability => REGIMES
                .iter()
                .any(|(_, field)| proposal.number(*field).is_some()),
        }
    }
}

/// Where a field's family is written among the per-symbol families: the seed's (the required
/// fields') first, then the calibrated action, the data age and the other gauges, each rank in
/// the table's order; `None` for a regime, whose probabilities share the last family.
const fn rank(spec: &FieldSpec) -> Option<usize> {
    match (spec.required, spec.shown) {
        (_, Shown::Regime(_)) => None,
        (true, _) => Some(0),
        (false, Shown::OneHot) => Some(1),
        (false, Shown::Age) => Some(2),
        (false, Shown::Gauge) => Some(3),
    }
}

const RANKS: usize = 4;

/// How many fields have a family of their own.
const fn own_families() -> usize {
    let (mut count, mut i) = (0, 0);
    while i < FIELDS.len() {
        if rank(&FIELDS[i]).is_some() {
            count += 1;
        }
        i += 1;
    }
    count
}

const REGIME_PROBABILITY: SymbolFamily = SymbolFamily {
    family: Family::gauge(REGIME_METRIC, REGIME_HELP),
    samples: PerSymbol::RegimeProbability,
    required: false,
};

/// The per-symbol families in the order they are written, by [`rank`], the regime
/// probabilities last.
pub(crate) const SYMBOL_FAMILIES: [SymbolFamily; own_families() + 1] = {
    let mut families = [REGIME_PROBABILITY; own_families() + 1];
    let (mut next, mut rank_written) = (0, 0);
    while rank_written < RANKS {
        let mut i = 0;
        while i < FIELDS.len() {
            let spec = &FIELDS[i];
            if let Some(rank) = rank(spec)
                && rank == rank_written
            {
                let samples = match spec.shown {
                    Shown::Gauge => PerSymbol::Gauge(spec.field),
                    Shown::OneHot => PerSymbol::OneHot(spec.field),
                    Shown::Age => PerSymbol::Age(spec.field),
                    Shown::Regime(_) => PerSymbol::RegimeProbability,
                };
                families[next] = SymbolFamily {
                    family: Family::gauge(spec.metric, spec.help),
                    samples,
                    required: spec.required,
                };
                next += 1;
            }
            i += 1;
        }
        rank_written += 1;
    }
    families
};

/// The regimes' labels and fields, in the table's order.
const REGIMES: [(&str, Field); regimes()] = {
    let mut regimes = [("", Field::KillScore); regimes()];
    let (mut next, mut i) = (0, 0);
    while i < FIELDS.len() {
        if let Shown::Regime(label) = FIELDS[i].shown {
            regimes[next] = (label, FIELDS[i].field);
            next += 1;
        }
        i += 1;
    }
    regimes
};

const fn regimes() -> usize {
    FIELDS.len() - own_families()
}

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

/// The whole body at once, in both formats: every proposal family, then the exporter's refresh
/// metrics. The body served is put together from pieces (`segments`); this is the plain account
/// of it that the golden files pin and the pieces are checked against.
#[cfg(test)]
pub(crate) fn render(snapshot: &Snapshot, now_unix: f64) -> DualBody {
    let proposals = &snapshot.proposals;
    let mut w = DualWriter::with_capacity(64 + proposals.len() * 1_800);
    let symbols: Vec<EscapedLabel<'_>> = proposals
        .iter()
        .map(|p| EscapedLabel::new(&p.symbol))
        .collect();
    for family in &SYMBOL_FAMILIES {
        if family.always_announced() || proposals.iter().any(|p| family.has_samples(p)) {
            let mut samples = w.family(&family.family);
            for (proposal, symbol) in proposals.iter().zip(&symbols) {
                family.write(&mut samples, proposal, symbol, now_unix);
            }
        }
    }
    render_exporter_metrics(&mut w, snapshot);
    w.into_body()
}

/// The exporter's refresh metrics, which follow the proposal families.
pub(crate) fn exporter_metrics(snapshot: &Snapshot) -> DualBody {
    let mut w = DualWriter::with_capacity(4 * 1_024);
    render_exporter_metrics(&mut w, snapshot);
    w.into_body()
}

/// Writes the five known actions, 1 for the current one, plus the current one when unknown.
fn one_hot(samples: &mut Samples<'_>, symbol: &EscapedLabel<'_>, action: &Action) {
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
pub(crate) mod tests;

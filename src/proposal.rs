//! Turns one raw Redis hash into a typed [`Proposal`]. Owns the proposal field table (one row per
//! field: its key, value, reading and family) and the rules for bad values (0.0 and a recorded
//! error, never a panic); knows nothing of Redis connections or of how samples are written.

use std::fmt;
use std::sync::{Arc, OnceLock};

use enum_map::Enum;

/// The five actions the publisher proposes; each gets a one-hot series for every symbol.
pub(crate) const KNOWN_ACTIONS: [&str; 5] = [
    "NONE",
    "PARTIAL_25",
    "PARTIAL_50",
    "PARTIAL_75",
    "FULL_CLOSE_PROPOSED",
];

/// The weights of the kill score's components (regime flip, sigma spike, trend strength drop,
/// age penalty), as the publisher and the dashboard use them.
pub(crate) const WEIGHTS: [f64; 4] = [2.0, 1.5, 2.5, 0.5];

/// Label value for unknown actions that are not label-safe or exceed the distinct-value cap.
pub(crate) const OTHER_ACTION: &str = "OTHER";

/// Longest unknown action kept as its own label value.
const MAX_ACTION_LEN: usize = 32;

/// Longest symbol accepted; real symbols are a dozen characters, so longer names are garbage.
pub(crate) const MAX_SYMBOL_LEN: usize = 64;

#[macro_use]
mod fields;

pub use fields::{FieldSpec, Read, Shown};
pub(crate) use fields::{REGIME_HELP, REGIME_METRIC};
use fields::{Reader, Value};

// The publisher's fields, one row each: the variant of `Field`, the key in Redis, the
// `Proposal` field that holds the value and its type, whether it is required, how it is read,
// and how it is exported (with the family's name and HELP). The README's field table is checked
// against these rows.
proposal_fields! {
    KillScore "kill_score" => kill_score: f64, required Number,
        Gauge("quantum_harvest_kill_score", "Kill score (edge collapse indicator), 0 to 1; 0 when missing or unparseable.");
    KRegimeFlip "k_regime_flip" => k_regime_flip: f64, required Number,
        Gauge("quantum_harvest_k_regime_flip", "Regime flip component of the kill score (0 or 1).");
    KSigmaSpike "k_sigma_spike" => k_sigma_spike: f64, required Number,
        Gauge("quantum_harvest_k_sigma_spike", "Volatility spike component of the kill score (0 to 2).");
    KTsDrop "k_ts_drop" => k_ts_drop: f64, required Number,
        Gauge("quantum_harvest_k_ts_drop", "Trend strength drop component of the kill score (0 to 0.5).");
    KAgePenalty "k_age_penalty" => k_age_penalty: f64, required Number,
        Gauge("quantum_harvest_k_age_penalty", "Position age penalty component of the kill score (0 to 1).");
    RNet "R_net" => r_net: f64, required NumberOrLegacy,
        Gauge("quantum_harvest_r_net", "Net R (risk-reward) of the position, from R_net or the legacy r_net.");
    /// `None` when the publisher proposes no new stop loss (it writes the literal `None`).
    NewSlProposed "new_sl_proposed" => new_sl: Option<f64>, required StopLoss,
        Gauge("quantum_harvest_new_sl", "Proposed new stop loss price; 0 when none is proposed.");
    /// Seconds since the Unix epoch; from `computed_at_utc` when the heartbeat field is absent.
    LastUpdateEpoch "last_update_epoch" => last_update_epoch: f64, required Heartbeat,
        Gauge("quantum_harvest_last_update_epoch", "Unix time of the proposal's last update (last_update_epoch, else computed_at_utc).");
    /// `computed_at_utc` as seconds since the Unix epoch.
    ComputedAtUtc "computed_at_utc" => computed_at: Option<f64>, optional UtcTime,
        Age("quantum_harvest_data_age_seconds", "Age of the proposal at the last refresh, from computed_at_utc.");
    HarvestAction "harvest_action" => action: Action, required Action,
        OneHot("quantum_harvest_action", "Proposed harvest action, one-hot: 1 for the current harvest_action, 0 for the other known actions.");
    /// The heat gate's calibrated action, present only when it wrote `calibrated=1`.
    Action "action" => calibrated_action: Option<Action>, optional CalibratedAction,
        OneHot("quantum_harvest_calibrated_action", "Calibrated action the apply layer acts on, one-hot, for proposals the heat gate calibrated (calibrated=1).");
    RiskUnit "risk_unit" => risk_unit: Option<f64>, optional Number,
        Gauge("quantum_harvest_risk_unit", "Risk unit of the position (risk_unit).");
    CostEst "cost_est" => cost_est: Option<f64>, optional Number,
        Gauge("quantum_harvest_cost_est", "Estimated cost of acting on the proposal (cost_est).");
    Sigma "sigma" => sigma: Option<f64>, optional Number,
        Gauge("quantum_harvest_sigma", "Volatility estimate (sigma).");
    PTrend "p_trend" => p_trend: Option<f64>, optional Number, Regime("trend");
    PMr "p_mr" => p_mr: Option<f64>, optional Number, Regime("mean_reversion");
    PChop "p_chop" => p_chop: Option<f64>, optional Number, Regime("chop");
    PositionAgeSec "position_age_sec" => position_age_sec: Option<f64>, optional Number,
        Gauge("quantum_harvest_position_age_seconds", "Age of the position (position_age_sec).");
    PositionCurrentPrice "position_current_price" => position_current_price: Option<f64>, optional Number,
        Gauge("quantum_harvest_position_current_price", "Current price of the position's instrument.");
    PositionEntryPrice "position_entry_price" => position_entry_price: Option<f64>, optional Number,
        Gauge("quantum_harvest_position_entry_price", "Entry price of the position.");
    PositionUnrealizedPnl "position_unrealized_pnl" => position_unrealized_pnl: Option<f64>, optional Number,
        Gauge("quantum_harvest_position_unrealized_pnl", "Unrealized profit and loss of the position.");
}

impl Field {
    /// The hash field name as the publisher writes it.
    pub const fn key(self) -> &'static str {
        FIELDS[self as usize].key
    }
}

/// A proposed action as a label value: one of [`KNOWN_ACTIONS`], another label-safe string, or
/// absent (all one-hot series 0, the field counted as an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Known(usize),
    Unknown(String),
    Missing,
}

impl Action {
    pub(crate) fn parse(raw: &str) -> Action {
        let value = raw.trim();
        if value.is_empty() {
            return Action::Missing;
        }
        if let Some(index) = KNOWN_ACTIONS.iter().position(|known| *known == value) {
            return Action::Known(index);
        }
        let label_safe = value.len() <= MAX_ACTION_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        Action::Unknown(if label_safe { value } else { OTHER_ACTION }.to_owned())
    }

    /// The label value, or `None` when the action is missing.
    pub fn label(&self) -> Option<&str> {
        match self {
            Action::Known(index) => Some(KNOWN_ACTIONS[*index]),
            Action::Unknown(value) => Some(value),
            Action::Missing => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label().unwrap_or("-"))
    }
}

/// The digest of the raw values a proposal was parsed from, by which a full read that finds the
/// same values again keeps the proposal without parsing them again; `None` when the proposal
/// no longer says what they say. Not part of a proposal's value: any two compare equal.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadDigest(pub(crate) Option<u64>);

impl PartialEq for ReadDigest {
    fn eq(&self, _: &ReadDigest) -> bool {
        true
    }
}

/// Why a symbol name cannot become a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SymbolError {
    #[error("symbol is empty")]
    Empty,
    #[error("symbol is longer than {MAX_SYMBOL_LEN} bytes")]
    TooLong,
    #[error("symbol is not valid UTF-8")]
    NotUtf8,
    #[error("symbol contains control characters")]
    ControlCharacter,
}

/// Checks a symbol (the key after the prefix) for use as a label value, and makes it one in
/// place; the bytes come back with the error.
pub(crate) fn parse_symbol(raw: Vec<u8>) -> Result<String, (SymbolError, Vec<u8>)> {
    if raw.is_empty() {
        return Err((SymbolError::Empty, raw));
    }
    if raw.len() > MAX_SYMBOL_LEN {
        return Err((SymbolError::TooLong, raw));
    }
    let symbol = String::from_utf8(raw).map_err(|e| (SymbolError::NotUtf8, e.into_bytes()))?;
    if symbol.chars().any(char::is_control) {
        return Err((SymbolError::ControlCharacter, symbol.into_bytes()));
    }
    Ok(symbol)
}

/// Hash fields read besides those in [`Field`]; they are not counted as parse errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
enum Other {
    RNetLegacy,
    Calibrated,
    PositionSide,
    ReasonCodes,
}

impl Other {
    fn key(self) -> &'static str {
        match self {
            Other::RNetLegacy => "r_net",
            Other::Calibrated => "calibrated",
            Other::PositionSide => "position_side",
            Other::ReasonCodes => "reason_codes",
        }
    }
}

/// How many hash fields the exporter reads.
pub(crate) const SLOTS: usize = Field::LENGTH + Other::LENGTH;

/// The hash fields the exporter reads, in slot order: every [`Field`], then the others. The
/// values handed to [`parse`] follow this order, so Redis can be asked for exactly these.
pub fn keys() -> &'static [&'static str; SLOTS] {
    static KEYS: OnceLock<[&str; SLOTS]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let fields = FIELDS.iter().map(|spec| spec.key);
        let others = (0..Other::LENGTH).map(|i| Other::from_usize(i).key());
        let mut keys = [""; SLOTS];
        for (slot, key) in keys.iter_mut().zip(fields.chain(others)) {
            *slot = key;
        }
        keys
    })
}

/// Parses one hash, given the values of [`keys`] in order (`None` where the field is absent).
/// Never fails: bad values become 0.0 (or absent, for extras) and are listed in `invalid_fields`.
pub(crate) fn parse(symbol: String, values: &[Option<&[u8]>; SLOTS]) -> Proposal {
    let mut hash = Reader::new(values);
    let mut proposal = Proposal::read(symbol, &mut hash);
    proposal.invalid_fields = hash.invalid;
    proposal.invalid_fields.sort_unstable();
    proposal
}

/// Caps the number of distinct unknown action values across all proposals: the first `limit`
/// values (in proposal order) keep their name, later ones become [`OTHER_ACTION`]. Only the
/// proposals renamed are copied out of the ones they share.
pub(crate) fn bound_unknown_actions(proposals: &mut [Arc<Proposal>], limit: usize) {
    fn keeps<'a>(action: &'a Action, seen: &mut Vec<&'a str>, limit: usize) -> bool {
        match action {
            Action::Unknown(value) if value != OTHER_ACTION && !seen.contains(&value.as_str()) => {
                let named = seen.len() < limit;
                if named {
                    seen.push(value);
                }
                named
            }
            _ => true,
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut renamed: Vec<(usize, bool, bool)> = Vec::new();
    for (index, proposal) in proposals.iter().enumerate() {
        let action = keeps(&proposal.action, &mut seen, limit);
        let calibrated = (proposal.calibrated_action.as_ref())
            .is_none_or(|calibrated| keeps(calibrated, &mut seen, limit));
        if !(action && calibrated) {
            renamed.push((index, action, calibrated));
        }
    }
    for (index, action, calibrated) in renamed {
        let proposal = Arc::make_mut(&mut proposals[index]);
        proposal.read_from = ReadDigest(None);
        if !action {
            proposal.action = Action::Unknown(OTHER_ACTION.to_owned());
        }
        if !calibrated {
            proposal.calibrated_action = Some(Action::Unknown(OTHER_ACTION.to_owned()));
        }
    }
}

/// Parses field-value pairs as Redis lists them (tests build hashes this way); of two equal
/// fields the first wins.
#[cfg(test)]
pub(crate) fn parse_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    symbol: String,
    pairs: &[(K, V)],
) -> Proposal {
    let keys = keys();
    let mut values: [Option<&[u8]>; SLOTS] = [None; SLOTS];
    for (key, value) in pairs {
        if let Some(slot) = keys.iter().position(|k| k.as_bytes() == key.as_ref()) {
            values[slot].get_or_insert(value.as_ref());
        }
    }
    parse(symbol, &values)
}

#[cfg(test)]
mod tests;

//! Turns one raw Redis hash into a typed [`Proposal`], following the publisher's field table.
//! Owns the field names and the rules for bad values (0.0 and a recorded error, never a panic);
//! knows nothing of Redis connections or of the exposition format.

use std::fmt;
use std::sync::{Arc, OnceLock};

use enum_map::{Enum, EnumMap};

use crate::values::{parse_number, parse_utc_timestamp};

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

/// Every field the exporter reads. The order is the order of the parse-error counter's labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Enum)]
pub enum Field {
    KillScore,
    KRegimeFlip,
    KSigmaSpike,
    KTsDrop,
    KAgePenalty,
    RNet,
    NewSlProposed,
    LastUpdateEpoch,
    ComputedAtUtc,
    HarvestAction,
    Action,
    RiskUnit,
    CostEst,
    Sigma,
    PTrend,
    PMr,
    PChop,
    PositionAgeSec,
    PositionCurrentPrice,
    PositionEntryPrice,
    PositionUnrealizedPnl,
}

impl Field {
    /// The hash field name as the publisher writes it.
    pub const fn key(self) -> &'static str {
        match self {
            Field::KillScore => "kill_score",
            Field::KRegimeFlip => "k_regime_flip",
            Field::KSigmaSpike => "k_sigma_spike",
            Field::KTsDrop => "k_ts_drop",
            Field::KAgePenalty => "k_age_penalty",
            Field::RNet => "R_net",
            Field::NewSlProposed => "new_sl_proposed",
            Field::LastUpdateEpoch => "last_update_epoch",
            Field::ComputedAtUtc => "computed_at_utc",
            Field::HarvestAction => "harvest_action",
            Field::Action => "action",
            Field::RiskUnit => "risk_unit",
            Field::CostEst => "cost_est",
            Field::Sigma => "sigma",
            Field::PTrend => "p_trend",
            Field::PMr => "p_mr",
            Field::PChop => "p_chop",
            Field::PositionAgeSec => "position_age_sec",
            Field::PositionCurrentPrice => "position_current_price",
            Field::PositionEntryPrice => "position_entry_price",
            Field::PositionUnrealizedPnl => "position_unrealized_pnl",
        }
    }
}

/// Numeric fields exported only when present and valid; they are not part of the seed's contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum Extra {
    RiskUnit,
    CostEst,
    Sigma,
    PTrend,
    PMr,
    PChop,
    PositionAgeSec,
    PositionCurrentPrice,
    PositionEntryPrice,
    PositionUnrealizedPnl,
}

impl Extra {
    pub fn field(self) -> Field {
        match self {
            Extra::RiskUnit => Field::RiskUnit,
            Extra::CostEst => Field::CostEst,
            Extra::Sigma => Field::Sigma,
            Extra::PTrend => Field::PTrend,
            Extra::PMr => Field::PMr,
            Extra::PChop => Field::PChop,
            Extra::PositionAgeSec => Field::PositionAgeSec,
            Extra::PositionCurrentPrice => Field::PositionCurrentPrice,
            Extra::PositionEntryPrice => Field::PositionEntryPrice,
            Extra::PositionUnrealizedPnl => Field::PositionUnrealizedPnl,
        }
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

/// One symbol's proposal, every value already checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub symbol: String,
    pub kill_score: f64,
    pub k_regime_flip: f64,
    pub k_sigma_spike: f64,
    pub k_ts_drop: f64,
    pub k_age_penalty: f64,
    pub r_net: f64,
    /// `None` when the publisher proposes no new stop loss (it writes the literal `None`).
    pub new_sl: Option<f64>,
    /// Seconds since the Unix epoch; from `computed_at_utc` when the heartbeat field is absent.
    pub last_update_epoch: f64,
    /// `computed_at_utc` as seconds since the Unix epoch.
    pub computed_at: Option<f64>,
    pub action: Action,
    /// The heat gate's calibrated action, present only when it wrote `calibrated=1`.
    pub calibrated_action: Option<Action>,
    pub extras: EnumMap<Extra, Option<f64>>,
    pub position_side: Option<String>,
    pub reason_codes: String,
    /// Fields that were missing or unparseable; their values above are 0.0.
    pub invalid_fields: Vec<Field>,
    pub(crate) read_from: ReadDigest,
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

impl Proposal {
    pub fn extra(&self, extra: Extra) -> Option<f64> {
        self.extras[extra]
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
        let fields = (0..Field::LENGTH).map(|i| Field::from_usize(i).key());
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
    let mut hash = Reader {
        values,
        invalid: Vec::new(),
    };
    let kill_score = hash.required(Field::KillScore);
    let k_regime_flip = hash.required(Field::KRegimeFlip);
    let k_sigma_spike = hash.required(Field::KSigmaSpike);
    let k_ts_drop = hash.required(Field::KTsDrop);
    let k_age_penalty = hash.required(Field::KAgePenalty);
    let r_net = hash.r_net();
    let new_sl = hash.new_sl();
    let (last_update_epoch, computed_at) = hash.times();
    let action = hash.action(Field::HarvestAction);
    let calibrated = hash
        .other(Other::Calibrated)
        .is_some_and(|value| value.trim() == "1");
    let calibrated_action = calibrated.then(|| hash.action(Field::Action));
    let extras = hash.extras();
    let position_side = hash
        .other(Other::PositionSide)
        .map(str::trim)
        .filter(|side| matches!(*side, "LONG" | "SHORT"))
        .map(str::to_owned);
    let reason_codes = hash
        .other(Other::ReasonCodes)
        .unwrap_or("")
        .trim()
        .to_owned();
    let mut invalid_fields = hash.invalid;
    invalid_fields.sort_unstable();
    Proposal {
        symbol,
        kill_score,
        k_regime_flip,
        k_sigma_spike,
        k_ts_drop,
        k_age_penalty,
        r_net,
        new_sl,
        last_update_epoch,
        computed_at,
        action,
        calibrated_action,
        extras,
        position_side,
        reason_codes,
        invalid_fields,
        read_from: ReadDigest::default(),
    }
}

/// One hash's values as text, and the fields found missing or unparseable so far.
struct Reader<'a> {
    values: &'a [Option<&'a [u8]>; SLOTS],
    invalid: Vec<Field>,
}

impl<'a> Reader<'a> {
    fn text(&self, slot: usize) -> Option<&'a str> {
        self.values[slot].map(|v| std::str::from_utf8(v).unwrap_or("\u{fffd}"))
    }

    fn field(&self, field: Field) -> Option<&'a str> {
        self.text(field.into_usize())
    }

    fn other(&self, other: Other) -> Option<&'a str> {
        self.text(Field::LENGTH + other.into_usize())
    }

    /// A number the seed exports as 0.0 when missing or unparseable.
    fn required(&mut self, field: Field) -> f64 {
        self.field(field).and_then(parse_number).unwrap_or_else(|| {
            self.invalid.push(field);
            0.0
        })
    }

    /// `R_net`, else the older writers' `r_net`.
    fn r_net(&mut self) -> f64 {
        let r_net = match (self.field(Field::RNet), self.other(Other::RNetLegacy)) {
            (Some(value), fallback) => {
                parse_number(value).or_else(|| fallback.and_then(parse_number))
            }
            (None, Some(legacy)) => parse_number(legacy),
            (None, None) => None,
        };
        r_net.unwrap_or_else(|| {
            self.invalid.push(Field::RNet);
            0.0
        })
    }

    /// The proposed stop loss; the literal `None` (or empty) means none is proposed.
    fn new_sl(&mut self) -> Option<f64> {
        let parsed = match self.field(Field::NewSlProposed).map(str::trim) {
            Some("" | "None") => return None,
            Some(value) => parse_number(value),
            None => None,
        };
        if parsed.is_none() {
            self.invalid.push(Field::NewSlProposed);
        }
        parsed
    }

    /// The heartbeat epoch (from `computed_at_utc` when absent) and `computed_at_utc` itself.
    fn times(&mut self) -> (f64, Option<f64>) {
        let computed_at = self.field(Field::ComputedAtUtc).and_then(|value| {
            let parsed = parse_utc_timestamp(value);
            if parsed.is_none() {
                self.invalid.push(Field::ComputedAtUtc);
            }
            parsed
        });
        let heartbeat = self.field(Field::LastUpdateEpoch);
        let last_update_epoch = match heartbeat.and_then(parse_number) {
            Some(epoch) => epoch,
            None => {
                if heartbeat.is_some() || computed_at.is_none() {
                    self.invalid.push(Field::LastUpdateEpoch);
                }
                computed_at.unwrap_or(0.0)
            }
        };
        (last_update_epoch, computed_at)
    }

    fn action(&mut self, field: Field) -> Action {
        let action = Action::parse(self.field(field).unwrap_or(""));
        if action == Action::Missing {
            self.invalid.push(field);
        }
        action
    }

    /// Extras that are present and valid; present but invalid ones are recorded.
    fn extras(&mut self) -> EnumMap<Extra, Option<f64>> {
        let mut extras: EnumMap<Extra, Option<f64>> = EnumMap::default();
        for (extra, value) in &mut extras {
            if let Some(raw) = self.field(extra.field()) {
                *value = parse_number(raw);
                if value.is_none() {
                    self.invalid.push(extra.field());
                }
            }
        }
        extras
    }
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
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
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
        ]
    }

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
        let p = parse_pairs("ETHUSDT".into(), &hash(&complete()));
        assert_eq!(p.kill_score, 0.7533012950554003);
        assert_eq!(p.k_regime_flip, 1.0);
        assert_eq!(p.r_net, 2.45);
        assert_eq!(p.new_sl, Some(100.2));
        assert_eq!(p.last_update_epoch, 1769130500.0);
        assert_eq!(p.action, Action::Known(3));
        assert_eq!(p.extra(Extra::CostEst), Some(1e-9));
        assert_eq!(p.extra(Extra::Sigma), None);
        assert_eq!(p.position_side.as_deref(), Some("LONG"));
        assert!(p.invalid_fields.is_empty(), "{:?}", p.invalid_fields);
    }

    #[test]
    fn bad_values_become_zero_and_are_recorded() {
        for bad in [
            "None", "", "nan", "NaN", "inf", "-inf", "1e309", "garbage", "0x10", "1,5",
        ] {
            let mut pairs = complete();
            pairs[1] = ("kill_score", bad);
            let p = parse_pairs("X".into(), &hash(&pairs));
            assert_eq!(p.kill_score, 0.0, "{bad:?}");
            assert_eq!(p.invalid_fields, vec![Field::KillScore], "{bad:?}");
        }
    }

    #[test]
    fn missing_fields_become_zero_and_are_recorded() {
        let p = parse_pairs("X".into(), &hash(&[("harvest_action", "NONE")]));
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
            let mut pairs = complete();
            pairs[7] = ("new_sl_proposed", none);
            let p = parse_pairs("X".into(), &hash(&pairs));
            assert_eq!(p.new_sl, None);
            assert!(p.invalid_fields.is_empty());
        }
    }

    #[test]
    fn r_net_falls_back_to_legacy_field() {
        let mut pairs = complete();
        pairs[6] = ("r_net", "1.5");
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(p.r_net, 1.5);
        assert!(p.invalid_fields.is_empty());

        pairs.push(("R_net", "bad"));
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(
            p.r_net, 1.5,
            "a valid legacy value beats an invalid new one"
        );
    }

    #[test]
    fn last_update_falls_back_to_computed_at() {
        let mut pairs = complete();
        pairs.remove(8);
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(p.last_update_epoch, 1769129938.259371);
        assert!(p.invalid_fields.is_empty());

        pairs.push(("last_update_epoch", "soon"));
        let p = parse_pairs("X".into(), &hash(&pairs));
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
        let mut pairs = complete();
        pairs.push(("action", "FULL_CLOSE"));
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(p.calibrated_action, None);

        pairs.push(("calibrated", "1"));
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(
            p.calibrated_action,
            Some(Action::Unknown("FULL_CLOSE".into()))
        );
    }

    #[test]
    fn invalid_extras_are_dropped_and_recorded() {
        let mut pairs = complete();
        pairs.push(("sigma", "nan"));
        let p = parse_pairs("X".into(), &hash(&pairs));
        assert_eq!(p.extra(Extra::Sigma), None);
        assert_eq!(p.invalid_fields, vec![Field::Sigma]);
    }

    #[test]
    fn unknown_actions_are_capped() {
        let mut proposals: Vec<Arc<Proposal>> = ["A1", "A2", "A1", "A3", "HOLD", "A3"]
            .iter()
            .map(|a| Arc::new(parse_pairs("X".into(), &hash(&[("harvest_action", a)]))))
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
}

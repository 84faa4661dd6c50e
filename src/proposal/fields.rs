//! What one row of the proposal field table says and what the table expands to: the [`Field`]
//! enum, the [`FIELDS`] descriptors, the [`Proposal`] struct and the reading of a hash into it.
//! The rows themselves are in `proposal`; how a family's samples are written is `render`'s.

use crate::values::{parse_number, parse_utc_timestamp};

use super::{Action, FIELDS, Field, Other, SLOTS};

/// The family of the regime probabilities: one sample per regime field, labelled `regime`.
pub(crate) const REGIME_METRIC: &str = "quantum_harvest_regime_probability";
pub(crate) const REGIME_HELP: &str = "Probability of each market regime (p_trend, p_mr, p_chop).";

/// Everything the exporter knows of one field of the publisher's hash.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub field: Field,
    /// The hash field's name, as the publisher writes it.
    pub key: &'static str,
    /// The [`Proposal`] field that holds its value, which is also its key in the JSON view.
    pub name: &'static str,
    /// A required field is part of the seed's contract: when it is missing its value is 0 and
    /// it is counted as a parse error, and its family is announced even without samples.
    pub required: bool,
    pub read: Read,
    pub shown: Shown,
    /// The family its samples are written in, and that family's HELP.
    pub metric: &'static str,
    pub help: &'static str,
}

/// How a field's text becomes its value. Every form is checked: a bad value is recorded as a
/// parse error and becomes 0 (absent, for a value that may be absent), never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A finite number.
    Number,
    /// A finite number, else the older writers' `r_net`.
    NumberOrLegacy,
    /// A stop loss: the literal `None` (or empty) says none is proposed.
    StopLoss,
    /// Unix seconds, else the time of `computed_at_utc`.
    Heartbeat,
    /// An ISO time in UTC.
    UtcTime,
    /// An action label.
    Action,
    /// An action label, read only when the heat gate wrote `calibrated=1`.
    CalibratedAction,
}

impl Read {
    /// How the README's field table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            Read::Number => "number",
            Read::NumberOrLegacy => "number, else the legacy `r_net`",
            Read::StopLoss => "number; `None` or empty: none proposed",
            Read::Heartbeat => "Unix seconds, else `computed_at_utc`",
            Read::UtcTime => "ISO time, UTC",
            Read::Action => "action",
            Read::CalibratedAction => "action, only with `calibrated=1`",
        }
    }
}

/// How a field's value is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// A gauge of its own: one sample per proposal, 0 when a required value is absent.
    Gauge,
    /// One-hot over the known actions, plus the current action when it is another.
    OneHot,
    /// The age of the time it holds, at the time of rendering.
    Age,
    /// One sample of [`REGIME_METRIC`], labelled with this regime.
    Regime(&'static str),
}

/// A value in the [`Proposal`] as the exposition reads it: a number or an action.
pub(super) trait Value {
    fn number(&self) -> Option<f64> {
        None
    }

    fn action(&self) -> Option<&Action> {
        None
    }
}

impl Value for f64 {
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl Value for Option<f64> {
    fn number(&self) -> Option<f64> {
        *self
    }
}

impl Value for Action {
    fn action(&self) -> Option<&Action> {
        Some(self)
    }
}

impl Value for Option<Action> {
    fn action(&self) -> Option<&Action> {
        self.as_ref()
    }
}

/// A number's value as its field holds it: a required one is 0.0 when absent.
pub(super) trait FromNumber {
    fn from_number(number: Option<f64>) -> Self;
}

impl FromNumber for f64 {
    fn from_number(number: Option<f64>) -> f64 {
        number.unwrap_or(0.0)
    }
}

impl FromNumber for Option<f64> {
    fn from_number(number: Option<f64>) -> Option<f64> {
        number
    }
}

/// Declares the proposal fields from their rows (see `proposal`): each row names the field,
/// its key in Redis, the [`Proposal`] field that holds its value and that value's type, whether
/// it is required, how it is read ([`Read`]) and how it is exported ([`Shown`], the family and
/// its HELP; a regime names only its label). Field order is the parse-error counter's order.
macro_rules! proposal_fields {
    ($(
        $(#[$doc:meta])*
        $field:ident $key:literal => $name:ident: $ty:ty,
        $required:ident $read:ident, $shown:ident $(($($family:literal),+))?;
    )*) => {
        /// Every field the exporter reads and counts parse errors of, in the table's order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, enum_map::Enum)]
        pub enum Field {
            $($field,)*
        }

        /// The table's rows, in [`Field`] order.
        pub const FIELDS: [FieldSpec; <Field as enum_map::Enum>::LENGTH] = [$(
            proposal_fields!(@spec $field $key $name, $required $read, $shown $(($($family),+))?),
        )*];

        /// One symbol's proposal, every value already checked.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Proposal {
            pub symbol: String,
            $($(#[$doc])* pub $name: $ty,)*
            pub position_side: Option<String>,
            pub reason_codes: String,
            /// Fields that were missing or unparseable; their values above are 0.0.
            pub invalid_fields: Vec<Field>,
            pub(crate) read_from: ReadDigest,
        }

        impl Proposal {
            /// Reads every field of `hash`; the invalid ones are left in the reader.
            fn read(symbol: String, hash: &mut Reader<'_>) -> Proposal {
                Proposal {
                    symbol,
                    $($name: proposal_fields!(@read hash $read Field::$field),)*
                    position_side: hash.position_side(),
                    reason_codes: hash.reason_codes(),
                    invalid_fields: Vec::new(),
                    read_from: ReadDigest::default(),
                }
            }

            /// The number `field` holds, if it holds one: for the exposition.
            pub(crate) fn number(&self, field: Field) -> Option<f64> {
                match field {
                    $(Field::$field => Value::number(&self.$name),)*
                }
            }

            /// The action `field` holds, if it holds one: for the exposition.
            pub(crate) fn action_of(&self, field: Field) -> Option<&Action> {
                match field {
                    $(Field::$field => Value::action(&self.$name),)*
                }
            }
        }
    };
    (@spec $field:ident $key:literal $name:ident, $required:ident $read:ident, Regime($label:literal)) => {
        proposal_fields!(@row $field $key $name, $required $read, Shown::Regime($label), REGIME_METRIC, REGIME_HELP)
    };
    (@spec $field:ident $key:literal $name:ident, $required:ident $read:ident, $shown:ident($metric:literal, $help:literal)) => {
        proposal_fields!(@row $field $key $name, $required $read, Shown::$shown, $metric, $help)
    };
    (@row $field:ident $key:literal $name:ident, $required:ident $read:ident, $shown:expr, $metric:expr, $help:expr) => {
        FieldSpec {
            field: Field::$field,
            key: $key,
            name: stringify!($name),
            required: proposal_fields!(@required $required),
            read: Read::$read,
            shown: $shown,
            metric: $metric,
            help: $help,
        }
    };
    (@required required) => { true };
    (@required optional) => { false };
    (@read $hash:ident Number $field:expr) => { $hash.number($field) };
    (@read $hash:ident NumberOrLegacy $field:expr) => { $hash.number_or_legacy($field) };
    (@read $hash:ident StopLoss $field:expr) => { $hash.stop_loss($field) };
    (@read $hash:ident Heartbeat $field:expr) => { $hash.heartbeat($field) };
    (@read $hash:ident UtcTime $field:expr) => { $hash.utc_time($field) };
    (@read $hash:ident Action $field:expr) => { $hash.action($field) };
    (@read $hash:ident CalibratedAction $field:expr) => { $hash.calibrated_action($field) };
}

/// One hash's values as text, and the fields found missing or unparseable so far.
pub(super) struct Reader<'a> {
    values: &'a [Option<&'a [u8]>; SLOTS],
    pub(super) invalid: Vec<Field>,
    /// The UTC time read last, kept for the heartbeat that falls back on it: read once, and
    /// recorded as invalid once.
    utc_time: Option<(Field, Option<f64>)>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(values: &'a [Option<&'a [u8]>; SLOTS]) -> Reader<'a> {
        Reader {
            values,
            invalid: Vec::new(),
            utc_time: None,
        }
    }

    fn text(&self, slot: usize) -> Option<&'a str> {
        self.values[slot].map(|v| std::str::from_utf8(v).unwrap_or("\u{fffd}"))
    }

    fn field(&self, field: Field) -> Option<&'a str> {
        self.text(field as usize)
    }

    fn other(&self, other: Other) -> Option<&'a str> {
        self.text(FIELDS.len() + other as usize)
    }

    /// Records `field` as invalid when it holds no value: a value that is present but bad, or
    /// a required one that is absent.
    fn checked(&mut self, field: Field, present: bool, value: Option<f64>) -> Option<f64> {
        if value.is_none() && (present || FIELDS[field as usize].required) {
            self.invalid.push(field);
        }
        value
    }

    pub(super) fn number<T: FromNumber>(&mut self, field: Field) -> T {
        let text = self.field(field);
        let value = text.and_then(parse_number);
        T::from_number(self.checked(field, text.is_some(), value))
    }

    /// The value, else the older writers' `r_net`; a valid legacy value beats an invalid one.
    pub(super) fn number_or_legacy(&mut self, field: Field) -> f64 {
        let (text, legacy) = (self.field(field), self.other(Other::RNetLegacy));
        let value = text
            .and_then(parse_number)
            .or_else(|| legacy.and_then(parse_number));
        let present = text.is_some() || legacy.is_some();
        self.checked(field, present, value).unwrap_or(0.0)
    }

    pub(super) fn stop_loss(&mut self, field: Field) -> Option<f64> {
        let text = self.field(field).map(str::trim);
        if matches!(text, Some("" | "None")) {
            return None;
        }
        let value = text.and_then(parse_number);
        self.checked(field, text.is_some(), value)
    }

    /// The heartbeat epoch, else the UTC time; absent with no time at all is an error.
    pub(super) fn heartbeat(&mut self, field: Field) -> f64 {
        let text = self.field(field);
        match text.and_then(parse_number) {
            Some(epoch) => epoch,
            None => {
                let fallback = self.utc_time(Field::ComputedAtUtc);
                if text.is_some() || fallback.is_none() {
                    self.invalid.push(field);
                }
                fallback.unwrap_or(0.0)
            }
        }
    }

    pub(super) fn utc_time(&mut self, field: Field) -> Option<f64> {
        if let Some((read, value)) = self.utc_time
            && read == field
        {
            return value;
        }
        let text = self.field(field);
        let value = text.and_then(parse_utc_timestamp);
        let value = self.checked(field, text.is_some(), value);
        self.utc_time = Some((field, value));
        value
    }

    pub(super) fn action(&mut self, field: Field) -> Action {
        let action = Action::parse(self.field(field).unwrap_or(""));
        if action == Action::Missing {
            self.invalid.push(field);
        }
        action
    }

    pub(super) fn calibrated_action(&mut self, field: Field) -> Option<Action> {
        let calibrated = self
            .other(Other::Calibrated)
            .is_some_and(|value| value.trim() == "1");
        calibrated.then(|| self.action(field))
    }

    pub(super) fn position_side(&self) -> Option<String> {
        self.other(Other::PositionSide)
            .map(str::trim)
            .filter(|side| matches!(*side, "LONG" | "SHORT"))
            .map(str::to_owned)
    }

    pub(super) fn reason_codes(&self) -> String {
        self.other(Other::ReasonCodes)
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

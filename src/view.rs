//! The operator's view of one snapshot: rows by kill score with data age and staleness, the
//! thresholds that colour them and the words for Redis's state and the heat gate's verdict.
//! Serialized, it is `/api/v1/proposals`; `page` and `status` render it. No I/O, no clock reads.

mod story;

use serde::{Deserialize, Serialize};

use crate::apply::ApplyView;
use crate::proposal::{Proposal, WEIGHTS};
use crate::snapshot::Snapshot;
use crate::thresholds;
pub(crate) use crate::thresholds::{KILL_CRITICAL, KILL_HIGH, KillBand, STALE_AFTER_SECONDS};
#[cfg(test)]
pub(crate) use story::PlanResult;
pub(crate) use story::{Event, Plan, Point, Story, path_segment};

/// The dashboard's R_net bands: good from 7, fair from 3, poor below.
pub(crate) const R_NET_GOOD: f64 = 7.0;
pub(crate) const R_NET_FAIR: f64 = 3.0;
/// One of the kill score's components: its field, a label, its weight and its largest value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Component {
    pub key: &'static str,
    pub label: &'static str,
    pub weight: f64,
    pub max: f64,
}

pub(crate) const COMPONENTS: [Component; 4] = [
    Component {
        key: "k_regime_flip",
        label: "regime flip",
        weight: WEIGHTS[0],
        max: 1.0,
    },
    Component {
        key: "k_sigma_spike",
        label: "sigma spike",
        weight: WEIGHTS[1],
        max: 2.0,
    },
    Component {
        key: "k_ts_drop",
        label: "TS drop",
        weight: WEIGHTS[2],
        max: 0.5,
    },
    Component {
        key: "k_age_penalty",
        label: "age penalty",
        weight: WEIGHTS[3],
        max: 1.0,
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RNetBand {
    Good,
    Fair,
    Poor,
}

impl RNetBand {
    pub(crate) fn of(r_net: f64) -> RNetBand {
        if r_net >= R_NET_GOOD {
            RNetBand::Good
        } else if r_net >= R_NET_FAIR {
            RNetBand::Fair
        } else {
            RNetBand::Poor
        }
    }

    pub(crate) fn class(self) -> &'static str {
        match self {
            RNetBand::Good => "r-good",
            RNetBand::Fair => "r-fair",
            RNetBand::Poor => "r-poor",
        }
    }
}

/// What `/api/v1/proposals` answers. Times are Unix seconds; ages are as of `generated_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub version: String,
    /// When the view was made: at the exporter's last refresh, so at most one poll interval ago.
    pub generated_at: f64,
    pub poll_interval_seconds: f64,
    pub stale_after_seconds: f64,
    pub redis_up: bool,
    pub redis_error: Option<String>,
    pub last_success: Option<f64>,
    pub cache_age_seconds: Option<f64>,
    /// Configured symbols that have no hash in Redis.
    pub missing: Vec<String>,
    /// Highest kill score first, then by symbol.
    pub proposals: Vec<Row>,
    /// What the apply layer did with the proposals, when the exporter follows its streams.
    #[serde(default)]
    pub apply: Option<ApplySide>,
}

/// The apply layer's side of the view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplySide {
    /// Whether the exporter is reading the streams now.
    pub following: bool,
    /// The latest plans and outcomes (repeats left out), newest first.
    pub recent: Vec<RecentEntry>,
}

impl ApplySide {
    /// Whether the streams are read, as the page and `status` say it.
    pub fn state(&self) -> &'static str {
        if self.following {
            "following the apply streams"
        } else {
            "not reading the apply streams (Redis unreachable?); the values shown are the last ones read"
        }
    }
}

/// One of the latest plans or outcomes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentEntry {
    /// `plan` or `result`.
    pub stream: String,
    pub at: f64,
    pub symbol: String,
    /// The plan's decision (`EXECUTE`, ...) or the result's outcome (`executed`, ...).
    pub what: String,
    /// The plan's action, or the result's error class.
    pub detail: String,
}

impl RecentEntry {
    /// `HH:MM:SS` in UTC, the time of day of the entry.
    pub fn time_of_day(&self) -> String {
        crate::civil::time_of_day(self.at)
    }
}

/// One symbol's proposal as the operator sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub symbol: String,
    pub kill_score: f64,
    pub k_regime_flip: f64,
    pub k_sigma_spike: f64,
    pub k_ts_drop: f64,
    pub k_age_penalty: f64,
    pub r_net: f64,
    pub new_sl: Option<f64>,
    pub action: Option<String>,
    /// The heat gate's action, which the apply layer follows instead of `action`.
    pub calibrated_action: Option<String>,
    pub position_side: Option<String>,
    pub reason_codes: String,
    pub last_update_epoch: f64,
    pub computed_at: Option<f64>,
    /// `None` when the hash carries no usable time at all.
    pub age_seconds: Option<f64>,
    pub stale: bool,
    /// Hash fields that were missing or unparseable; their values above are 0.
    pub invalid_fields: Vec<String>,
    /// The decision of the newest plan for this symbol, when the apply streams are followed.
    #[serde(default)]
    pub plan_decision: Option<String>,
    /// That plan's outcome: its first result (`executed`, `dry_run`, ...), not its repeats.
    #[serde(default)]
    pub result_outcome: Option<String>,
    /// Results of that plan after its outcome (the producer writes one every cycle).
    #[serde(default)]
    pub result_repeats: u64,
    /// The kill score over the recorded history, evenly spaced in time, oldest first and the
    /// current value last; empty with history off.
    #[serde(default)]
    pub kill_score_trend: Vec<f64>,
}

impl View {
    /// The view of a snapshot, with the apply side when the streams are followed.
    pub(crate) fn new(snapshot: &Snapshot, now_unix: f64, apply: &ApplyView) -> View {
        let apply = apply.enabled.then_some(apply);
        let mut proposals: Vec<Row> = snapshot
            .proposals
            .iter()
            .map(|proposal| Row::with_apply(proposal, now_unix, apply))
            .collect();
        proposals.sort_by(|a, b| {
            b.kill_score
                .total_cmp(&a.kill_score)
                .then_with(|| a.symbol.cmp(&b.symbol))
        });
        View {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generated_at: now_unix,
            poll_interval_seconds: snapshot.poll_interval.as_secs_f64(),
            stale_after_seconds: STALE_AFTER_SECONDS,
            redis_up: snapshot.redis_up,
            redis_error: snapshot.redis_error.clone(),
            last_success: snapshot.last_success_unix,
            cache_age_seconds: snapshot
                .last_success_unix
                .map(|last| (now_unix - last).max(0.0)),
            missing: snapshot.missing.clone(),
            proposals,
            apply: apply.map(|apply| ApplySide {
                following: apply.following,
                recent: apply
                    .recent
                    .iter()
                    .map(|r| RecentEntry {
                        stream: r.stream.to_owned(),
                        at: r.at,
                        symbol: r.symbol.clone(),
                        what: r.what.to_owned(),
                        detail: r.detail.clone(),
                    })
                    .collect(),
            }),
        }
    }

    /// Fills each row's kill-score trend from `trend` (by symbol).
    pub(crate) fn with_trends(mut self, trend: impl Fn(&str) -> Vec<f64>) -> View {
        for row in &mut self.proposals {
            row.kill_score_trend = trend(&row.symbol);
        }
        self
    }

    pub fn high(&self) -> impl Iterator<Item = &Row> {
        self.proposals
            .iter()
            .filter(|row| row.kill_score >= KILL_HIGH)
    }

    pub fn stale(&self) -> impl Iterator<Item = &Row> {
        self.proposals.iter().filter(|row| row.stale)
    }

    /// Redis's state as the header tells it: `Redis up`, or `Redis down` with the last error.
    pub fn redis_state(&self) -> String {
        match (self.redis_up, &self.redis_error) {
            (true, _) => "Redis up".to_owned(),
            (false, Some(error)) => format!("Redis down: {error}"),
            (false, None) => "Redis down".to_owned(),
        }
    }
}

impl Row {
    /// The row of `proposal`, with what the apply layer last did for it when its streams are
    /// followed.
    pub(crate) fn with_apply(proposal: &Proposal, now_unix: f64, apply: Option<&ApplyView>) -> Row {
        let mut row = Row::new(proposal, now_unix);
        if let Some(newest) = apply.and_then(|a| a.newest.get(&proposal.symbol)) {
            row.plan_decision = newest.decision.map(|d| d.label().to_owned());
            row.result_outcome = newest.outcome.map(|o| o.label().to_owned());
            row.result_repeats = newest.repeats;
        }
        row
    }

    fn new(proposal: &Proposal, now_unix: f64) -> Row {
        let age_seconds = thresholds::data_age(proposal.last_update_epoch, now_unix);
        Row {
            symbol: proposal.symbol.clone(),
            kill_score: proposal.kill_score,
            k_regime_flip: proposal.k_regime_flip,
            k_sigma_spike: proposal.k_sigma_spike,
            k_ts_drop: proposal.k_ts_drop,
            k_age_penalty: proposal.k_age_penalty,
            r_net: proposal.r_net,
            new_sl: proposal.new_sl,
            action: proposal.action.label().map(str::to_owned),
            calibrated_action: proposal
                .calibrated_action
                .as_ref()
                .map(|action| action.to_string()),
            position_side: proposal.position_side.clone(),
            reason_codes: proposal.reason_codes.clone(),
            last_update_epoch: proposal.last_update_epoch,
            computed_at: proposal.computed_at,
            age_seconds,
            stale: thresholds::is_stale(age_seconds),
            invalid_fields: proposal
                .invalid_fields
                .iter()
                .map(|field| field.key().to_owned())
                .collect(),
            plan_decision: None,
            result_outcome: None,
            result_repeats: 0,
            kill_score_trend: Vec::new(),
        }
    }

    /// The components in [`COMPONENTS`] order.
    pub fn components(&self) -> [f64; 4] {
        [
            self.k_regime_flip,
            self.k_sigma_spike,
            self.k_ts_drop,
            self.k_age_penalty,
        ]
    }

    /// What the apply layer last did for this symbol, e.g. `plan EXECUTE · dry run · 41
    /// repeats`; `None` when nothing of it was seen. The page's script writes the same.
    pub fn apply_note(&self) -> Option<String> {
        if self.plan_decision.is_none() && self.result_outcome.is_none() {
            return None;
        }
        let plan = self.plan_decision.as_deref().unwrap_or("\u{2014}");
        let outcome = self
            .result_outcome
            .as_ref()
            .map_or_else(|| "no result yet".to_owned(), |o| o.replace('_', " "));
        let mut note = format!("plan {plan} \u{b7} {outcome}");
        match self.result_repeats {
            0 => {}
            1 => note.push_str(" \u{b7} 1 repeat"),
            n => note.push_str(&format!(" \u{b7} {n} repeats")),
        }
        Some(note)
    }

    /// What the heat gate made of the action; `None` when it did not calibrate this proposal.
    pub fn calibration(&self) -> Option<Calibration<'_>> {
        let calibrated = self.calibrated_action.as_deref()?;
        Some(if self.action.as_deref() == Some(calibrated) {
            Calibration::Kept
        } else {
            Calibration::Replaced(calibrated)
        })
    }
}

/// The heat gate's verdict on a row's action, told beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibration<'a> {
    /// The gate kept the publisher's action.
    Kept,
    /// The gate replaced it with this one, which the apply layer follows instead.
    Replaced(&'a str),
}

impl Calibration<'_> {
    /// The note beside the action, with the medium's arrow: `calibrated` for a kept action,
    /// `→ FULL_CLOSE (calibrated)` for a replaced one.
    pub fn note(self, arrow: &str) -> String {
        match self {
            Calibration::Kept => "calibrated".to_owned(),
            Calibration::Replaced(action) => format!("{arrow} {action} (calibrated)"),
        }
    }
}

/// The weighted sum of the components that fills the bar: a regime flip (2.0) with a moderate
/// spike or drop. Sums reach 6.75 in theory, but a bar on that scale would show typical values
/// as slivers.
pub(crate) const BAR_FULL: f64 = 3.0;

/// Each component's weighted value as a percentage of [`BAR_FULL`]. Values beyond a component's
/// range are clamped, and a sum beyond the full bar is scaled down to fill it exactly, keeping
/// the proportions that show what drives the score.
pub(crate) fn component_shares(components: [f64; 4]) -> [f64; 4] {
    let mut shares = [0.0; 4];
    for ((share, value), component) in shares.iter_mut().zip(components).zip(COMPONENTS) {
        *share = value.clamp(0.0, component.max) * component.weight / BAR_FULL * 100.0;
    }
    let total: f64 = shares.iter().sum();
    if total > 100.0 {
        shares.iter_mut().for_each(|share| *share *= 100.0 / total);
    }
    shares
}

/// A duration for people: `42s`, `3m 05s`, `2h 07m`, `3d 4h`; `unknown` without one.
pub(crate) fn format_age(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds else {
        return "unknown".to_owned();
    };
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// The cache age: tenths of a second while fresh, then as [`format_age`]; `never` before the
/// first read.
pub(crate) fn format_cache_age(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(_) => format_age(seconds),
        None => "never".to_owned(),
    }
}

#[cfg(test)]
mod tests;

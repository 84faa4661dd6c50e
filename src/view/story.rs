//! One symbol's story, as `/api/v1/proposals/{symbol}` answers it and `/symbol/{symbol}` and
//! `status SYMBOL` tell it: the current proposal, its recent history, the events read from that
//! history and the apply layer's recent plans with their results. Plain serialisable types; the
//! history is `history`'s and the plans `apply`'s.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::Row;

/// Bytes a symbol keeps as they are in a story's path: the unreserved characters of RFC 3986.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `symbol` as the segment of a story's path (`/symbol/…`, `/api/v1/proposals/…`) that the
/// server decodes back to it: every other byte percent-encoded.
pub(crate) fn path_segment(symbol: &str) -> String {
    utf8_percent_encode(symbol, UNRESERVED).to_string()
}

/// What `/api/v1/proposals/{symbol}` answers. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Story {
    pub version: String,
    /// When the story was told: at the request.
    pub generated_at: f64,
    pub symbol: String,
    /// The proposal as `/api/v1/proposals` shows it; `None` once its hash is gone.
    pub current: Option<Row>,
    pub redis_up: bool,
    /// How far back the history reaches at most (`--history.max-age`); 0 with history off.
    pub history_max_age_seconds: f64,
    /// Oldest first: one point per change of the recorded values, thinned out with age.
    pub history: Vec<Point>,
    /// Oldest first.
    pub events: Vec<Event>,
    /// Newest first; `None` when the exporter does not follow the apply streams.
    pub plans: Option<Vec<Plan>>,
}

impl Story {
    /// The story of `symbol` at `now_unix`, from its row while its proposal is published, its
    /// history (points and events) and the apply layer's plans; `None` when nothing of it is
    /// known.
    pub(crate) fn new(
        symbol: &str,
        current: Option<Row>,
        told: Option<(Vec<Point>, Vec<Event>)>,
        plans: Option<Vec<Plan>>,
        redis_up: bool,
        history_max_age_seconds: f64,
        now_unix: f64,
    ) -> Option<Story> {
        let planned = plans.as_ref().is_some_and(|plans| !plans.is_empty());
        if current.is_none() && told.is_none() && !planned {
            return None;
        }
        let (history, events) = told.unwrap_or_default();
        Some(Story {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generated_at: now_unix,
            symbol: symbol.to_owned(),
            current,
            redis_up,
            history_max_age_seconds,
            history,
            events,
            plans,
        })
    }
}

/// The recorded values at one time: the kill score, its components and net R by their names in
/// the view (`kill_score`, `k_regime_flip`, ..., `r_net`), and the action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub timestamp: f64,
    pub action: Option<String>,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl Point {
    /// The recorded value named `name`, 0 when the point has none.
    pub(crate) fn value(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }
}

/// Something that happened to the symbol, derived from its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: f64,
    /// `appeared`, `disappeared`, `action_changed`, `kill_score_rose`, `kill_score_fell`,
    /// `stale` or `fresh`.
    pub kind: String,
    /// The event in a few words, e.g. `action PARTIAL_25 → FULL_CLOSE_PROPOSED`.
    pub text: String,
}

/// One of the apply layer's plans for the symbol, joined to its result by `plan_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub plan_id: String,
    /// The plan's time: its `timestamp` field, else its entry's.
    pub timestamp: f64,
    /// `EXECUTE`, `SKIP`, `BLOCKED`, `ERROR` or `UNKNOWN`.
    pub decision: String,
    pub action: Option<String>,
    pub reason_codes: Vec<String>,
    pub kill_score: Option<f64>,
    /// Its first result, the outcome; `None` before it comes.
    pub result: Option<PlanResult>,
    /// `result`, `waiting` (none yet, and still in time) or `no result yet` (none within the
    /// time a result takes).
    pub result_status: String,
    /// Results of the plan after the first (the producer writes one every cycle).
    pub repeats: u64,
}

/// A plan's first result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanResult {
    pub timestamp: f64,
    /// `executed`, `dry_run`, `skipped`, `blocked`, `error` or `unknown`.
    pub outcome: String,
    pub executed: Option<bool>,
    /// The result's `error` (or its details' error), cut short; on a skip or a block it is the
    /// reason, not a failure.
    pub error: Option<String>,
    /// From the plan's entry to the result's, when the plan came first.
    pub latency_seconds: Option<f64>,
}

impl Plan {
    /// The apply layer's record of a plan as the story tells it, its result's status as of
    /// `now_unix`.
    pub(crate) fn of(record: &crate::apply::PlanRecord, now_unix: f64) -> Plan {
        let result = record.result.as_ref().map(|result| PlanResult {
            timestamp: result.time,
            outcome: result.outcome.label().to_owned(),
            executed: result.executed,
            error: result.error.clone(),
            latency_seconds: result.latency_seconds,
        });
        Plan {
            plan_id: record.plan_id.clone(),
            timestamp: record.time,
            decision: record.decision.label().to_owned(),
            action: record.action.clone(),
            reason_codes: record.reason_codes.clone(),
            kill_score: record.kill_score,
            result,
            result_status: record.result_status(now_unix).to_owned(),
            repeats: record.repeats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Decision, EntryId, Outcome, PlanRecord, ResultRecord};

    #[test]
    fn a_plan_record_becomes_the_story_s_plan() {
        let mut record = PlanRecord {
            plan_id: "p1".to_owned(),
            time: 1_769_130_500.0,
            entry: EntryId {
                ms: 1_769_130_500_250,
                seq: 0,
            },
            decision: Decision::Execute,
            action: Some("FULL_CLOSE_PROPOSED".to_owned()),
            reason_codes: vec!["kill_score_close_ok".to_owned()],
            kill_score: Some(0.82),
            result: None,
            repeats: 0,
        };
        let waiting = Plan::of(&record, 1_769_130_510.0);
        assert_eq!(
            (waiting.result, waiting.result_status.as_str()),
            (None, "waiting")
        );
        assert_eq!(
            Plan::of(&record, 1_769_130_531.0).result_status,
            "no result yet"
        );
        record.result = Some(ResultRecord {
            time: 1_769_130_500.3,
            entry: EntryId {
                ms: 1_769_130_500_300,
                seq: 0,
            },
            outcome: Outcome::DryRun,
            executed: Some(false),
            error: None,
            latency_seconds: Some(0.05),
        });
        record.repeats = 3;
        assert_eq!(
            Plan::of(&record, 1_769_130_600.0),
            Plan {
                plan_id: "p1".to_owned(),
                timestamp: 1_769_130_500.0,
                decision: "EXECUTE".to_owned(),
                action: Some("FULL_CLOSE_PROPOSED".to_owned()),
                reason_codes: vec!["kill_score_close_ok".to_owned()],
                kill_score: Some(0.82),
                result: Some(PlanResult {
                    timestamp: 1_769_130_500.3,
                    outcome: "dry_run".to_owned(),
                    executed: Some(false),
                    error: None,
                    latency_seconds: Some(0.05),
                }),
                result_status: "result".to_owned(),
                repeats: 3,
            }
        );
    }
}

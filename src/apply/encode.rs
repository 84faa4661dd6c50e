//! The apply state written as the `quantum_apply_*` families, in either exposition format.
//! Declares the families and their order; what the values are is `apply`'s state's concern.

use enum_map::Enum;

use super::{ApplyState, Decision, GROUP_CAP, LATENCY_BUCKETS};
use crate::exposition::{Family, Writer};

impl ApplyState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.encode_counters(w);
        self.encode_newest(w);
        self.encode_latency(w);
        self.encode_streams(w);
    }

    fn encode_counters(&self, w: &mut Writer) {
        let mut samples = w.family(&PLANS_SEEN);
        for ((symbol, decision, action), count) in &self.plans_seen {
            samples.labelled(
                &[
                    ("symbol", symbol),
                    ("decision", decision.label()),
                    ("action", action),
                ],
                *count,
            );
        }
        let mut samples = w.family(&REASONS_SEEN);
        for (reason, count) in &self.reasons_seen {
            samples.labelled(&[("reason", reason)], *count);
        }
        let mut samples = w.family(&RESULTS_SEEN);
        for ((symbol, outcome), count) in &self.results_seen {
            samples.labelled(&[("symbol", symbol), ("outcome", outcome.label())], *count);
        }
        let mut samples = w.family(&REPEATS_SEEN);
        for (symbol, count) in &self.repeats_seen {
            samples.labelled(&[("symbol", symbol)], *count);
        }
        let mut samples = w.family(&ERRORS_SEEN);
        for (class, count) in &self.errors_seen {
            samples.labelled(&[("class", class)], *count);
        }
        let mut samples = w.family(&RESULT_REASONS_SEEN);
        for (class, count) in &self.result_reasons_seen {
            samples.labelled(&[("class", class)], *count);
        }
        let mut samples = w.family(&ENTRIES_SEEN);
        for (kind, count) in &self.entries_seen {
            samples.labelled(&[("stream", kind.label())], *count);
        }
        let mut samples = w.family(&ENTRIES_DEFECTIVE);
        for (kind, defects) in &self.defects {
            for (defect, count) in defects {
                samples.labelled(
                    &[("stream", kind.label()), ("defect", defect.label())],
                    *count,
                );
            }
        }
        let mut samples = w.family(&LABELS_DROPPED);
        for (label, bounded) in [
            ("symbol", &self.symbols),
            ("action", &self.actions),
            ("reason", &self.reasons),
            ("class", &self.classes),
        ] {
            samples.labelled(&[("label", label)], bounded.dropped);
        }
    }

    fn encode_newest(&self, w: &mut Writer) {
        let mut samples = w.family(&LAST_PLAN_TIME);
        for (symbol, (time, ..)) in &self.last_plan {
            samples.labelled(&[("symbol", symbol)], *time);
        }
        let mut samples = w.family(&LAST_PLAN_DECISION);
        for (symbol, (_, current, _)) in &self.last_plan {
            for decision in (0..Decision::LENGTH).map(Decision::from_usize) {
                let value = if decision == *current { 1.0 } else { 0.0 };
                samples.labelled(&[("symbol", symbol), ("decision", decision.label())], value);
            }
        }
        let mut samples = w.family(&LAST_RESULT_TIME);
        for (symbol, (time, ..)) in &self.last_result {
            samples.labelled(&[("symbol", symbol)], *time);
        }
    }

    fn encode_latency(&self, w: &mut Writer) {
        let mut samples = w.histogram(&PLAN_TO_RESULT);
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.latency.buckets) {
            samples.bucket(*bound, count);
        }
        samples.finish(self.latency.count, self.latency.sum);
        w.family(&UNMATCHED_RESULTS).value(self.unmatched_results);
    }

    fn encode_streams(&self, w: &mut Writer) {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        w.family(&STREAMS_UP).value(flag(self.following));
        let kinds = || self.info.iter().map(|(kind, info)| (kind.label(), info));
        let mut samples = w.family(&STREAM_EXISTS);
        for (stream, info) in kinds() {
            samples.labelled(&[("stream", stream)], flag(info.exists));
        }
        let mut samples = w.family(&STREAM_WRONG_TYPE);
        for (stream, info) in kinds() {
            samples.labelled(&[("stream", stream)], flag(info.wrong_type));
        }
        let mut samples = w.family(&STREAM_LENGTH);
        for (stream, info) in kinds().filter(|(_, i)| i.exists) {
            samples.labelled(&[("stream", stream)], info.length as f64);
        }
        let mut samples = w.family(&STREAM_LAST_ENTRY);
        for (stream, info) in kinds() {
            if let Some(id) = info.last_entry {
                samples.labelled(&[("stream", stream)], id.ms as f64 / 1000.0);
            }
        }
        let mut samples = w.family(&ENTRIES_LOST);
        for (kind, lost) in &self.lost {
            samples.labelled(&[("stream", kind.label())], *lost);
        }
        let mut samples = w.family(&STREAM_RESETS);
        for (kind, resets) in &self.resets {
            samples.labelled(&[("stream", kind.label())], *resets);
        }
        let mut samples = w.family(&GROUP_PENDING);
        for (stream, info) in kinds() {
            for group in info.groups.iter().take(GROUP_CAP) {
                samples.labelled(
                    &[("stream", stream), ("group", &group.name)],
                    group.pending as f64,
                );
            }
        }
        let mut samples = w.family(&GROUP_LAG);
        for (stream, info) in kinds() {
            for group in info.groups.iter().take(GROUP_CAP) {
                if let Some(lag) = group.lag {
                    samples.labelled(&[("stream", stream), ("group", &group.name)], lag as f64);
                }
            }
        }
    }
}

const PLANS_SEEN: Family = Family::counter(
    "quantum_apply_plans_seen_total",
    "Plans read from the apply layer's plan stream since the exporter started, by symbol, decision and proposed action.",
);
const REASONS_SEEN: Family = Family::counter(
    "quantum_apply_plan_reasons_seen_total",
    "Reason codes of the plans read since start-up, numbers and free text folded (layer4_kelly_250usdt counts as layer4_kelly).",
);
const RESULTS_SEEN: Family = Family::counter(
    "quantum_apply_results_seen_total",
    "Outcomes read from the apply layer's result stream since start-up (a plan's first result, or a result whose plan is unknown), by symbol and outcome (executed, dry_run, skipped, blocked, error, unknown); error is an execution that failed.",
);
const REPEATS_SEEN: Family = Family::counter(
    "quantum_apply_result_repeats_total",
    "Results read since start-up that repeat an outcome already read for the same plan_id (the producer writes one every cycle until the proposal changes), by symbol.",
);
const ERRORS_SEEN: Family = Family::counter(
    "quantum_apply_result_errors_seen_total",
    "Execution errors read since start-up (outcomes error), by error class (the error's code, free text folded).",
);
const RESULT_REASONS_SEEN: Family = Family::counter(
    "quantum_apply_result_reasons_seen_total",
    "Reasons given by skipped and blocked outcomes read since start-up (their error field, which is no failure), by class (the code, free text folded).",
);
const ENTRIES_SEEN: Family = Family::counter(
    "quantum_apply_stream_entries_seen_total",
    "Entries read from each stream since start-up.",
);
const ENTRIES_DEFECTIVE: Family = Family::counter(
    "quantum_apply_stream_entries_defective_total",
    "Entries read since start-up that lack a usable field, by stream and defect; they are counted under OTHER or unknown.",
);
const LABELS_DROPPED: Family = Family::counter(
    "quantum_apply_label_values_dropped_total",
    "Entries counted under OTHER because a label already had the most distinct values it keeps.",
);
const LAST_PLAN_TIME: Family = Family::gauge(
    "quantum_apply_last_plan_timestamp_seconds",
    "Time of the newest plan per symbol (its timestamp field, else its entry ID).",
);
const LAST_PLAN_DECISION: Family = Family::gauge(
    "quantum_apply_last_plan_decision",
    "Decision of the newest plan per symbol, one-hot.",
);
const LAST_RESULT_TIME: Family = Family::gauge(
    "quantum_apply_last_result_timestamp_seconds",
    "Time of the newest result per symbol (its timestamp field, else its entry ID).",
);
const PLAN_TO_RESULT: Family = Family::histogram(
    "quantum_apply_plan_to_result_seconds",
    "Time from a plan's entry to its outcome's entry (its first result, joined on plan_id), for outcomes read since start-up.",
);
const UNMATCHED_RESULTS: Family = Family::counter(
    "quantum_apply_results_unmatched_total",
    "Results read since start-up whose plan was not seen within a grace period (counted once per plan_id, its repeats not again); plans are remembered 15 minutes, beyond the producer's 300 s republish window.",
);
const STREAMS_UP: Family = Family::gauge(
    "quantum_apply_streams_up",
    "1 while the exporter reads the apply streams; 0 while Redis is unreachable (the other quantum_apply_ series then keep their last values).",
);
const STREAM_EXISTS: Family = Family::gauge(
    "quantum_apply_stream_exists",
    "1 when the stream exists as a stream; a missing stream is normal before the apply layer's first entry.",
);
const STREAM_WRONG_TYPE: Family = Family::gauge(
    "quantum_apply_stream_wrong_type",
    "1 when the stream's key holds something other than a stream; it is not read.",
);
const STREAM_LENGTH: Family = Family::gauge(
    "quantum_apply_stream_length",
    "Entries in the stream, from XINFO STREAM every 5 s: it can trail the entries read by up to that much.",
);
const STREAM_LAST_ENTRY: Family = Family::gauge(
    "quantum_apply_stream_last_entry_timestamp_seconds",
    "Time of the stream's newest entry, from its ID; time() minus it is the newest entry's age.",
);
const ENTRIES_LOST: Family = Family::counter(
    "quantum_apply_stream_entries_lost_total",
    "Entries trimmed from the stream before the exporter read them (from XINFO STREAM entries-added, Redis 7 or later).",
);
const STREAM_RESETS: Family = Family::counter(
    "quantum_apply_stream_resets_total",
    "Times the stream's IDs went backwards (deleted and made again); reading restarted from its beginning.",
);
const GROUP_PENDING: Family = Family::gauge(
    "quantum_apply_consumer_group_pending",
    "Entries delivered to a consumer group and not yet acknowledged (XINFO GROUPS pending).",
);
const GROUP_LAG: Family = Family::gauge(
    "quantum_apply_consumer_group_lag",
    "Entries not yet delivered to a consumer group (XINFO GROUPS lag, Redis 7 or later).",
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures the HELP texts give are the ones the code uses.
    #[test]
    fn help_texts_state_the_intervals_in_use() {
        let info_every = crate::streams::INFO_EVERY.as_secs();
        assert!(
            STREAM_LENGTH
                .help
                .contains(&format!("every {info_every} s")),
            "{}",
            STREAM_LENGTH.help
        );
        let keep_minutes = super::super::join::KEEP_SECONDS / 60.0;
        assert!(
            UNMATCHED_RESULTS
                .help
                .contains(&format!("remembered {keep_minutes} minutes")),
            "{}",
            UNMATCHED_RESULTS.help
        );
    }
}

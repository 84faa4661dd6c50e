//! The apply layer as the exporter observes it: plans and results read from its two Redis streams,
//! counted, joined (a plan's outcome told from its repeats), and published as the `quantum_apply_*`
//! families and a view. Pure: entries, stream facts and the time come from `streams`; nothing here
//! reads Redis or the clock. An entry's normalisation is in `entry`, the join in `join`, each
//! symbol's recent plans in `book`, the families in `encode`.

mod book;
mod encode;
mod entry;
mod join;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use enum_map::EnumMap;

use crate::exposition::{Format, Writer};
use crate::gzip::{Deflated, Deflater};
use crate::proposal::{self, Action};

pub(crate) use book::{Book, PlanRecord, ResultRecord};
use entry::{Bounded, Defect, OTHER, normalise_code};
pub(crate) use entry::{Decision, Entry, EntryId, Outcome, StreamKind};
use join::{Join, Joined};

/// Distinct values kept per label before further ones become [`OTHER`].
const SYMBOL_CAP: usize = 500;
const ACTION_CAP: usize = 24;
const REASON_CAP: usize = 64;
const ERROR_CLASS_CAP: usize = 64;
const GROUP_CAP: usize = 32;
/// Entries kept for the page's list of the latest plans and outcomes (repeats are left out: one
/// a cycle per symbol, they would crowd out everything else).
const RECENT: usize = 12;
/// Longest detail (action, error class) shown for a recent entry.
const MAX_DETAIL: usize = 64;
/// Longest `plan_id` kept: the apply layer's are hashes of 16 to 64 characters, and the join
/// holds tens of thousands of them.
const MAX_PLAN_ID: usize = 128;

/// Plan-to-result latency buckets, in seconds: a dry-run skip answers in milliseconds, an order
/// on an exchange in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if value <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// A consumer group as `XINFO GROUPS` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) pending: u64,
    /// Entries not yet delivered to the group; Redis >= 7 only.
    pub(crate) lag: Option<u64>,
}

/// What `TYPE`, `XINFO STREAM` and `XINFO GROUPS` last said of one stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StreamInfo {
    pub(crate) exists: bool,
    pub(crate) wrong_type: bool,
    pub(crate) length: u64,
    pub(crate) last_entry: Option<EntryId>,
    pub(crate) groups: Vec<Group>,
}

/// One of the latest plans or outcomes, as the page and `status` list them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Recent {
    pub(crate) stream: &'static str,
    /// Unix seconds, from the entry's ID.
    pub(crate) at: f64,
    pub(crate) symbol: String,
    /// The plan's decision or the result's outcome.
    pub(crate) what: &'static str,
    /// The plan's action, or the result's error class.
    pub(crate) detail: String,
}

/// What became of a symbol's newest plan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Newest {
    /// `None` when only results of the symbol were seen.
    pub(crate) decision: Option<Decision>,
    /// The plan's first result; `None` before it comes.
    pub(crate) outcome: Option<Outcome>,
    /// Results of the same plan after the first.
    pub(crate) repeats: u64,
}

/// The apply side for the operator's view: what became of each symbol's latest proposal.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ApplyView {
    /// Whether the streams are followed at all (`APPLY_STREAMS`).
    pub(crate) enabled: bool,
    pub(crate) following: bool,
    /// The newest plan, its outcome and repeats, by symbol.
    pub(crate) newest: BTreeMap<String, Newest>,
    /// Newest first.
    pub(crate) recent: Vec<Recent>,
}

/// What the follower hands the server after each change: the rendered families, in each
/// format (they are small: written twice), and the view.
#[derive(Debug, Default)]
pub struct ApplyPublication {
    pub(crate) text: bytes::Bytes,
    pub(crate) open_metrics: bytes::Bytes,
    /// The same, compressed here, once per change: scrapes send them as they are.
    text_gzip: Deflated,
    open_metrics_gzip: Deflated,
    pub(crate) view: ApplyView,
    /// The follower's book itself, not a copy: read on request, a symbol at a time.
    book: Option<Arc<RwLock<Book>>>,
}

impl ApplyPublication {
    pub(crate) fn new(state: &ApplyState) -> ApplyPublication {
        let render = |format| {
            let mut w = Writer::new(format, 16 * 1024);
            state.encode(&mut w);
            bytes::Bytes::from(w.into_bytes())
        };
        let (text, open_metrics) = (render(Format::Text), render(Format::OpenMetrics));
        let mut deflater = Deflater::new();
        ApplyPublication {
            text_gzip: deflater.deflate(&text),
            open_metrics_gzip: deflater.deflate(&open_metrics),
            text,
            open_metrics,
            view: state.view(),
            book: state.book.clone(),
        }
    }

    /// The symbol's recent plans, newest first; `None` when the streams are not followed.
    pub(crate) fn plans(&self, symbol: &str) -> Option<Vec<PlanRecord>> {
        if !self.view.enabled {
            return None;
        }
        let plans = self.book.as_ref().map(|book| {
            // A panic while the follower held the lock leaves a book still worth reading.
            let book = book.read().unwrap_or_else(PoisonError::into_inner);
            book.plans(symbol)
        });
        Some(plans.unwrap_or_default())
    }

    /// [`Self::metrics`] compressed, for a gzip member's middle.
    pub(crate) fn gzip(&self, format: Format) -> &Deflated {
        match format {
            Format::Text => &self.text_gzip,
            Format::OpenMetrics => &self.open_metrics_gzip,
        }
    }

    /// The families in `format`, not ended: the scrape-time tail follows them.
    pub(crate) fn metrics(&self, format: Format) -> &bytes::Bytes {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.open_metrics,
        }
    }
}

/// Everything observed since start-up.
#[derive(Debug)]
pub(crate) struct ApplyState {
    symbols: Bounded,
    actions: Bounded,
    reasons: Bounded,
    classes: Bounded,
    plans_seen: BTreeMap<(String, Decision, String), u64>,
    reasons_seen: BTreeMap<String, u64>,
    results_seen: BTreeMap<(String, Outcome), u64>,
    repeats_seen: BTreeMap<String, u64>,
    errors_seen: BTreeMap<String, u64>,
    result_reasons_seen: BTreeMap<String, u64>,
    defects: EnumMap<StreamKind, EnumMap<Defect, u64>>,
    entries_seen: EnumMap<StreamKind, u64>,
    /// The newest plan's time, decision and `plan_id`, by symbol.
    last_plan: BTreeMap<String, (f64, Decision, Option<String>)>,
    /// The newest result's time, outcome and `plan_id`, by symbol.
    last_result: BTreeMap<String, (f64, Outcome, Option<String>)>,
    join: Join,
    latency: Histogram,
    unmatched_results: u64,
    pub(crate) info: EnumMap<StreamKind, StreamInfo>,
    /// Whether the streams are being read (the follower's connection works).
    pub(crate) following: bool,
    lost: EnumMap<StreamKind, u64>,
    resets: EnumMap<StreamKind, u64>,
    recent: VecDeque<Recent>,
    /// Each symbol's recent plans, shared with the publications; `None` keeps none.
    book: Option<Arc<RwLock<Book>>>,
}

impl Default for ApplyState {
    fn default() -> Self {
        ApplyState {
            symbols: Bounded::new(SYMBOL_CAP),
            actions: Bounded::new(ACTION_CAP),
            reasons: Bounded::new(REASON_CAP),
            classes: Bounded::new(ERROR_CLASS_CAP),
            plans_seen: BTreeMap::new(),
            reasons_seen: BTreeMap::new(),
            results_seen: BTreeMap::new(),
            repeats_seen: BTreeMap::new(),
            errors_seen: BTreeMap::new(),
            result_reasons_seen: BTreeMap::new(),
            defects: EnumMap::default(),
            entries_seen: EnumMap::default(),
            last_plan: BTreeMap::new(),
            last_result: BTreeMap::new(),
            join: Join::default(),
            latency: Histogram::default(),
            unmatched_results: 0,
            info: EnumMap::default(),
            following: false,
            lost: EnumMap::default(),
            resets: EnumMap::default(),
            recent: VecDeque::new(),
            book: None,
        }
    }
}

impl ApplyState {
    /// A state that also keeps each symbol's recent plans, for `max_age` (none when zero).
    pub(crate) fn with_book_max_age(max_age: Duration) -> ApplyState {
        ApplyState {
            book: (!max_age.is_zero()).then(|| Arc::new(RwLock::new(Book::new(max_age)))),
            ..ApplyState::default()
        }
    }

    /// Counts a new entry of `kind` and updates the newest-per-symbol gauges. `now` is the
    /// follower's clock in seconds, never decreasing: it ages the join's plans and grace periods.
    pub(crate) fn observe(&mut self, kind: StreamKind, entry: &Entry, now: f64) {
        self.entries_seen[kind] += 1;
        // The stream exists, and this is its newest entry, until the next XINFO says more.
        let info = &mut self.info[kind];
        info.exists = true;
        info.last_entry = info.last_entry.max(Some(entry.id));
        match kind {
            StreamKind::Plan => self.observe_plan(entry, now, true),
            StreamKind::Result => self.observe_result(entry, now, true),
        }
    }

    /// Takes an entry that was already in the stream at start-up into the newest-per-symbol
    /// gauges, the join and the book only: counters count what arrives while the exporter runs,
    /// but the operator sees the recent plans right after a restart.
    pub(crate) fn recall(&mut self, kind: StreamKind, entry: &Entry, now: f64) {
        match kind {
            StreamKind::Plan => self.observe_plan(entry, now, false),
            StreamKind::Result => self.observe_result(entry, now, false),
        }
    }

    /// Counts the results whose plan did not come within the grace period, as of `now`;
    /// whether any did (the families changed).
    pub(crate) fn settle(&mut self, now: f64) -> bool {
        let unmatched = self.join.settle(now);
        self.unmatched_results += unmatched;
        if let Some(mut book) = write(&self.book) {
            book.expire(now);
        }
        unmatched > 0
    }

    /// The entry's symbol as written, and as a label value: one of the first [`SYMBOL_CAP`].
    fn symbol(
        &mut self,
        kind: StreamKind,
        entry: &Entry,
        count: bool,
    ) -> (Option<String>, Option<String>) {
        // Checked as bytes, as the proposal keys are: a symbol that is not UTF-8 is no symbol.
        let symbol = entry
            .raw("symbol")
            .and_then(|s| proposal::parse_symbol(s.trim_ascii().to_vec()).ok());
        if symbol.is_none() && count {
            self.defects[kind][Defect::NoSymbol] += 1;
        }
        let label = symbol.clone().map(|symbol| self.symbols.admit(symbol));
        (symbol, label)
    }

    /// The entry's time: its `timestamp` field in seconds, else the ID's milliseconds.
    fn time(&mut self, kind: StreamKind, entry: &Entry, count: bool) -> f64 {
        let from_id = entry.id.ms as f64 / 1000.0;
        match entry.get("timestamp") {
            None => from_id,
            Some(raw) => match crate::values::parse_number(&raw) {
                Some(seconds) if seconds > 0.0 => seconds,
                _ => {
                    if count {
                        self.defects[kind][Defect::BadTimestamp] += 1;
                    }
                    from_id
                }
            },
        }
    }

    fn observe_plan(&mut self, entry: &Entry, now: f64, count: bool) {
        let kind = StreamKind::Plan;
        let plan_id = plan_id(entry);
        let decision = Decision::parse(entry.get("decision").as_deref());
        let early = plan_id
            .as_deref()
            .and_then(|id| self.join.plan_seen(id, entry.id, decision, now));
        let time = self.time(kind, entry, count);
        let (written, symbol) = self.symbol(kind, entry, count);
        if count {
            if decision == Decision::Unknown {
                self.defects[kind][Defect::NoDecision] += 1;
            }
            let action = match Action::parse(entry.get("action").as_deref().unwrap_or("")) {
                Action::Missing => "none".to_owned(),
                action => self.actions.admit(action.to_string()),
            };
            let symbol_label = symbol.clone().unwrap_or_else(|| OTHER.to_owned());
            *self
                .plans_seen
                .entry((symbol_label, decision, action))
                .or_default() += 1;
            let codes = entry.get("reason_codes").unwrap_or_default();
            for code in codes.split(',').filter_map(normalise_code) {
                let code = self.reasons.admit(code);
                *self.reasons_seen.entry(code).or_default() += 1;
            }
        }
        let action = entry.get("action").unwrap_or_default();
        self.remember(kind, entry, symbol.as_deref(), decision.label(), &action);
        // Other services write to the same stream without a decision: not a plan of the
        // apply layer's, so not the symbol's newest plan either.
        if entry.get("decision").is_none() {
            return;
        }
        if let (Some(mut book), Some(written)) = (write(&self.book), written) {
            let mut record = PlanRecord::read(entry, plan_id.as_deref(), time, decision);
            record.result = early;
            // Results before the plan were counted in its story, the first as its outcome.
            let story = plan_id.as_deref().and_then(|id| self.join.story(id));
            record.repeats = story.map_or(0, |story| story.repeats);
            book.plan(&written, record, now);
        }
        if let Some(symbol) = symbol {
            let newest = self.last_plan.get(&symbol).is_none_or(|(t, ..)| *t <= time);
            if newest {
                self.last_plan.insert(symbol, (time, decision, plan_id));
            }
        }
    }

    fn observe_result(&mut self, entry: &Entry, now: f64, count: bool) {
        let kind = StreamKind::Result;
        let plan_id = plan_id(entry);
        let planned = plan_id
            .as_deref()
            .and_then(|id| self.join.story(id)?.decision);
        let outcome = Outcome::of(entry, planned);
        let time = self.time(kind, entry, count);
        let (written, symbol) = self.symbol(kind, entry, count);
        let joined = match &plan_id {
            Some(plan_id) if count => self.join.result_seen(plan_id, outcome, now),
            Some(plan_id) => self.join.result_recalled(plan_id, outcome, now),
            // Another service's entry: no plan to wait for, its own outcome.
            None => Joined::Early,
        };
        let latency = match joined {
            Joined::Outcome(plan) if plan <= entry.id => {
                Some((entry.id.ms - plan.ms) as f64 / 1000.0)
            }
            _ => None,
        };
        let result = ResultRecord::read(entry, time, outcome, latency);
        // Cut short, the error still starts with its code.
        let class = result.error.as_deref().and_then(normalise_code);
        if count {
            if outcome == Outcome::Unknown {
                self.defects[kind][Defect::NoDecision] += 1;
            }
            let symbol_label = symbol.clone().unwrap_or_else(|| OTHER.to_owned());
            if joined == Joined::Repeat {
                *self.repeats_seen.entry(symbol_label).or_default() += 1;
            } else {
                *self
                    .results_seen
                    .entry((symbol_label, outcome))
                    .or_default() += 1;
                // On a skip or a block the producer puts the reason in `error`: no failure.
                let codes = match outcome {
                    Outcome::Error => Some(&mut self.errors_seen),
                    Outcome::Skipped | Outcome::Blocked => Some(&mut self.result_reasons_seen),
                    _ => None,
                };
                if let (Some(codes), Some(class)) = (codes, &class) {
                    *codes.entry(self.classes.admit(class.clone())).or_default() += 1;
                }
            }
            if let Some(latency) = latency {
                self.latency.observe(latency);
            }
        }
        if let Some(plan_id) = &plan_id {
            self.file_result(written.as_deref(), plan_id, joined, result, now);
        }
        if joined != Joined::Repeat {
            let detail = class.unwrap_or_default();
            self.remember(kind, entry, symbol.as_deref(), outcome.label(), &detail);
        }
        if outcome == Outcome::Unknown {
            return;
        }
        if let Some(symbol) = symbol {
            let newest = self
                .last_result
                .get(&symbol)
                .is_none_or(|(t, ..)| *t <= time);
            if newest {
                self.last_result.insert(symbol, (time, outcome, plan_id));
            }
        }
    }

    /// A result into the book: an outcome to its plan's record, a repeat counted there, and the
    /// first result of a plan not seen yet kept in the join's story until the plan comes.
    fn file_result(
        &mut self,
        symbol: Option<&str>,
        plan_id: &str,
        joined: Joined,
        result: ResultRecord,
        now: f64,
    ) {
        let Some(mut book) = write(&self.book) else {
            return;
        };
        match (joined, symbol) {
            (Joined::Early, _) => self.join.keep_early(plan_id, result),
            (Joined::Outcome(_), Some(symbol)) => book.result(symbol, plan_id, result, now),
            (Joined::Repeat, Some(symbol)) => book.repeat(symbol, plan_id, result.entry, now),
            (_, None) => {}
        }
    }

    fn remember(
        &mut self,
        kind: StreamKind,
        entry: &Entry,
        symbol: Option<&str>,
        what: &'static str,
        detail: &str,
    ) {
        self.recent.push_front(Recent {
            stream: kind.label(),
            at: entry.id.ms as f64 / 1000.0,
            symbol: symbol.unwrap_or("-").to_owned(),
            what,
            detail: detail.chars().take(MAX_DETAIL).collect(),
        });
        self.recent.truncate(RECENT);
    }

    /// The apply side for the page and `status`.
    pub(crate) fn view(&self) -> ApplyView {
        let story =
            |plan_id: &Option<String>| plan_id.as_deref().and_then(|id| self.join.story(id));
        let mut newest: BTreeMap<String, Newest> = BTreeMap::new();
        for (symbol, (_, outcome, plan_id)) in &self.last_result {
            // Only results of the symbol seen: the newest result's plan, as far as it is known.
            let (outcome, repeats) =
                story(plan_id).map_or((Some(*outcome), 0), |s| (s.outcome, s.repeats));
            newest.insert(
                symbol.clone(),
                Newest {
                    decision: None,
                    outcome,
                    repeats,
                },
            );
        }
        for (symbol, (_, decision, plan_id)) in &self.last_plan {
            let story = story(plan_id);
            newest.insert(
                symbol.clone(),
                Newest {
                    decision: Some(*decision),
                    outcome: story.and_then(|s| s.outcome),
                    repeats: story.map_or(0, |s| s.repeats),
                },
            );
        }
        let mut recent: Vec<Recent> = self.recent.iter().cloned().collect();
        recent.sort_by(|a, b| b.at.total_cmp(&a.at));
        ApplyView {
            enabled: true,
            following: self.following,
            newest,
            recent,
        }
    }

    /// Records what `XINFO` says of a stream, and the entries trimmed away before they were read.
    pub(crate) fn update_info(&mut self, kind: StreamKind, info: StreamInfo, lost: u64) {
        self.info[kind] = info;
        self.lost[kind] += lost;
    }

    /// The stream was deleted and made again: its IDs went backwards.
    pub(crate) fn stream_reset(&mut self, kind: StreamKind) {
        self.resets[kind] += 1;
    }
}

/// The book to write in, held only while one entry is filed: the server reads it meanwhile. A
/// panic while it was held leaves it as it was, still worth writing in.
fn write(book: &Option<Arc<RwLock<Book>>>) -> Option<RwLockWriteGuard<'_, Book>> {
    let book = book.as_ref()?;
    Some(book.write().unwrap_or_else(PoisonError::into_inner))
}

/// The entry's `plan_id`, cut to [`MAX_PLAN_ID`] characters.
fn plan_id(entry: &Entry) -> Option<String> {
    let raw = entry.raw("plan_id")?;
    // Read no further than a kept id reaches: a field may hold a megabyte.
    let head = &raw[..raw.len().min(MAX_PLAN_ID * 4)];
    let id: String = String::from_utf8_lossy(head)
        .trim()
        .chars()
        .take(MAX_PLAN_ID)
        .collect();
    Some(id).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::entry::tests::entry;
    use super::*;
    use crate::exposition_check::{check_exposition, check_open_metrics};

    /// Observes an entry at the start of the follower's clock: these tests do not age the join.
    fn observe(state: &mut ApplyState, kind: StreamKind, entry: &Entry) {
        state.observe(kind, entry, 0.0);
    }

    /// The families in the text format, after checking both formats strictly.
    fn text(state: &ApplyState) -> String {
        let publication = ApplyPublication::new(state);
        let open_metrics = String::from_utf8(publication.open_metrics.to_vec()).unwrap();
        check_open_metrics(&(open_metrics + "# EOF\n")).unwrap();
        let text = String::from_utf8(publication.text.to_vec()).unwrap();
        check_exposition(&text).unwrap();
        text
    }

    #[test]
    fn plans_and_results_are_counted_and_joined() {
        let mut state = ApplyState::default();
        observe(
            &mut state,
            StreamKind::Plan,
            &entry(
                1_000,
                &[
                    ("plan_id", "p1"),
                    ("symbol", "BTCUSDT"),
                    ("action", "FULL_CLOSE_PROPOSED"),
                    ("decision", "EXECUTE"),
                    ("reason_codes", "kill_score_close_ok,layer4_kelly_250usdt"),
                    ("timestamp", "1769130500"),
                ],
            ),
        );
        observe(
            &mut state,
            StreamKind::Result,
            &entry(
                1_040,
                &[
                    ("plan_id", "p1"),
                    ("symbol", "BTCUSDT"),
                    ("executed", "True"),
                ],
            ),
        );
        observe(
            &mut state,
            StreamKind::Result,
            &entry(
                2_000,
                &[
                    ("plan_id", "p9"),
                    ("symbol", "BTCUSDT"),
                    ("error", "execution_failed: boom 42"),
                ],
            ),
        );
        assert!(
            !state.settle(join::GRACE_SECONDS - 1.0),
            "p9's plan may still come"
        );
        assert!(state.settle(join::GRACE_SECONDS));
        let text = text(&state);
        for line in [
            "quantum_apply_plans_seen_total{symbol=\"BTCUSDT\",decision=\"EXECUTE\",action=\"FULL_CLOSE_PROPOSED\"} 1\n",
            "quantum_apply_plan_reasons_seen_total{reason=\"layer4_kelly\"} 1\n",
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"executed\"} 1\n",
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"error\"} 1\n",
            "quantum_apply_result_errors_seen_total{class=\"execution_failed\"} 1\n",
            "quantum_apply_plan_to_result_seconds_bucket{le=\"0.025\"} 0\n",
            "quantum_apply_plan_to_result_seconds_bucket{le=\"0.05\"} 1\n",
            "quantum_apply_plan_to_result_seconds_count 1\n",
            "quantum_apply_results_unmatched_total 1\n",
            "quantum_apply_last_plan_timestamp_seconds{symbol=\"BTCUSDT\"} 1769130500.0\n",
            "quantum_apply_last_plan_decision{symbol=\"BTCUSDT\",decision=\"EXECUTE\"} 1.0\n",
            "quantum_apply_last_plan_decision{symbol=\"BTCUSDT\",decision=\"SKIP\"} 0.0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn repeats_are_neither_outcomes_nor_unmatched_and_reasons_are_no_errors() {
        let mut state = ApplyState::default();
        let plan = |id: &str, ms: u64, decision: &str| {
            entry(
                ms,
                &[
                    ("plan_id", id),
                    ("symbol", "BTCUSDT"),
                    ("decision", decision),
                    ("reason_codes", "kill_score_close_ok"),
                ],
            )
        };
        let result = |id: &str, ms: u64, fields: &[(&str, &str)]| {
            let mut all = vec![("plan_id", id), ("symbol", "BTCUSDT")];
            all.extend_from_slice(fields);
            entry(ms, &all)
        };
        let repeat = [("decision", "SKIP"), ("error", "duplicate_plan")];
        let dry_run = [
            ("decision", "EXECUTE"),
            ("executed", "False"),
            ("would_execute", "True"),
            ("error", ""),
        ];
        state.observe(StreamKind::Plan, &plan("p1", 1_000, "EXECUTE"), 0.0);
        state.observe(StreamKind::Result, &result("p1", 1_010, &dry_run), 0.0);
        for cycle in 1..=41u32 {
            let ms = 1_010 + u64::from(cycle) * 5_000;
            state.observe(
                StreamKind::Result,
                &result("p1", ms, &repeat),
                f64::from(cycle) * 5.0,
            );
        }
        assert!(!state.settle(300.0));
        let newest = state.view().newest["BTCUSDT"];
        assert_eq!(
            newest,
            Newest {
                decision: Some(Decision::Execute),
                outcome: Some(Outcome::DryRun),
                repeats: 41
            }
        );
        // The proposal changes: a new plan, skipped, whose reason is no error.
        state.observe(StreamKind::Plan, &plan("p2", 300_000, "SKIP"), 300.0);
        let skipped = [("decision", "SKIP"), ("error", "not_in_allowlist")];
        state.observe(StreamKind::Result, &result("p2", 300_010, &skipped), 300.0);
        state.observe(StreamKind::Result, &result("p2", 305_010, &repeat), 305.0);
        // An execution that failed is an error.
        state.observe(StreamKind::Plan, &plan("p3", 310_000, "EXECUTE"), 310.0);
        let failed = [("executed", "False"), ("error", "no_position")];
        state.observe(StreamKind::Result, &result("p3", 310_010, &failed), 310.0);
        assert!(!state.settle(400.0));
        let text = text(&state);
        for line in [
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"dry_run\"} 1\n",
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"skipped\"} 1\n",
            "quantum_apply_results_seen_total{symbol=\"BTCUSDT\",outcome=\"error\"} 1\n",
            "quantum_apply_result_repeats_total{symbol=\"BTCUSDT\"} 42\n",
            "quantum_apply_result_errors_seen_total{class=\"no_position\"} 1\n",
            "quantum_apply_result_reasons_seen_total{class=\"not_in_allowlist\"} 1\n",
            "quantum_apply_results_unmatched_total 0\n",
            "quantum_apply_plan_to_result_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("duplicate_plan"),
            "a repeat's reason is not counted"
        );
        assert!(!text.contains("outcome=\"skipped\"} 4"), "{text}");
        let newest = state.view().newest["BTCUSDT"];
        assert_eq!(
            (newest.decision, newest.outcome, newest.repeats),
            (Some(Decision::Execute), Some(Outcome::Error), 0)
        );
        let recent: Vec<&str> = state.view().recent.iter().map(|r| r.what).collect();
        assert_eq!(
            recent,
            ["error", "EXECUTE", "skipped", "SKIP", "dry_run", "EXECUTE"],
            "repeats are not listed among the latest entries"
        );
    }

    #[test]
    fn a_result_without_a_decision_is_told_by_its_plans() {
        let mut state = ApplyState::default();
        let plan = entry(
            1,
            &[
                ("plan_id", "p1"),
                ("symbol", "XRPUSDT"),
                ("decision", "BLOCKED"),
            ],
        );
        observe(&mut state, StreamKind::Plan, &plan);
        let result = [
            ("plan_id", "p1"),
            ("symbol", "XRPUSDT"),
            ("executed", "False"),
            ("would_execute", "False"),
            ("error", "kill_score_close_blocked"),
        ];
        observe(&mut state, StreamKind::Result, &entry(2, &result));
        let text = text(&state);
        for line in [
            "quantum_apply_results_seen_total{symbol=\"XRPUSDT\",outcome=\"blocked\"} 1\n",
            "quantum_apply_result_reasons_seen_total{class=\"kill_score_close_blocked\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("quantum_apply_result_errors_seen_total{"),
            "{text}"
        );
    }

    #[test]
    fn recalled_entries_fill_gauges_not_counters() {
        let mut state = ApplyState::default();
        let plan = entry(
            5_000,
            &[
                ("plan_id", "p1"),
                ("symbol", "ETHUSDT"),
                ("decision", "SKIP"),
            ],
        );
        state.recall(StreamKind::Plan, &plan, 0.0);
        let recalled = text(&state);
        assert!(recalled.contains(
            "quantum_apply_last_plan_decision{symbol=\"ETHUSDT\",decision=\"SKIP\"} 1.0"
        ));
        assert!(!recalled.contains("quantum_apply_plans_seen_total{"));
        assert!(recalled.contains("quantum_apply_stream_entries_seen_total{stream=\"plan\"} 0\n"));
        // A result for a plan recalled at start-up still gives a latency.
        observe(
            &mut state,
            StreamKind::Result,
            &entry(5_500, &[("plan_id", "p1"), ("decision", "SKIP")]),
        );
        assert!(text(&state).contains("quantum_apply_plan_to_result_seconds_count 1\n"));
    }

    #[test]
    fn hostile_entries_are_bounded_counted_and_valid() {
        let mut state = ApplyState::default();
        let huge = "x".repeat(1 << 20);
        for i in 0..(SYMBOL_CAP as u64 + 50) {
            let symbol = format!("S{i}");
            let reasons = format!("code_{i}x,reason_{i}");
            observe(
                &mut state,
                StreamKind::Plan,
                &entry(
                    i,
                    &[
                        ("symbol", &symbol),
                        ("decision", "??"),
                        ("reason_codes", &reasons),
                        ("timestamp", "soon"),
                    ],
                ),
            );
        }
        observe(
            &mut state,
            StreamKind::Plan,
            &entry(
                1,
                &[
                    ("symbol", &huge),
                    ("action", &huge),
                    ("reason_codes", &huge),
                    ("timestamp", "1"),
                ],
            ),
        );
        let mut bad = entry(9, &[]);
        bad.fields
            .push((b"symbol".to_vec(), vec![0xff, 0xfe, b'"', b'\n']));
        bad.fields
            .push((b"error".to_vec(), b"\"quoted\" \\ back".to_vec()));
        observe(&mut state, StreamKind::Result, &bad);
        let long_plan = format!("{huge}-p");
        observe(
            &mut state,
            StreamKind::Plan,
            &entry(2, &[("plan_id", &long_plan), ("decision", "SKIP")]),
        );
        assert!(
            state.join.story(&huge[..MAX_PLAN_ID]).is_some(),
            "kept cut short"
        );
        let text = text(&state);
        assert!(text.contains("quantum_apply_label_values_dropped_total{label=\"symbol\"} 50\n"));
        assert!(text.contains("decision=\"UNKNOWN\""));
        assert!(text.contains("quantum_apply_stream_entries_defective_total{stream=\"plan\",defect=\"bad_timestamp\"} 550\n"));
        assert!(text.contains("quantum_apply_stream_entries_defective_total{stream=\"result\",defect=\"no_symbol\"} 1\n"));
        assert!(text.contains("reason=\"OTHER\""));
        assert!(
            text.len() < 1 << 20,
            "a 1 MiB field is not copied into the output"
        );
    }

    #[test]
    fn other_services_entries_are_counted_but_are_not_the_newest_plan() {
        let mut state = ApplyState::default();
        observe(
            &mut state,
            StreamKind::Plan,
            &entry(1, &[("symbol", "BTCUSDT"), ("decision", "SKIP")]),
        );
        observe(
            &mut state,
            StreamKind::Plan,
            &entry(
                2,
                &[
                    ("symbol", "BTCUSDT"),
                    ("source", "intent_executor"),
                    ("qty", "1"),
                ],
            ),
        );
        let text = text(&state);
        assert!(text.contains(
            "quantum_apply_last_plan_decision{symbol=\"BTCUSDT\",decision=\"SKIP\"} 1.0"
        ));
        assert!(text.contains("quantum_apply_stream_entries_seen_total{stream=\"plan\"} 2\n"));
    }
}

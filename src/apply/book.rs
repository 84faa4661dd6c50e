//! Each symbol's recent plans, newest first, each with its first result and its repeats, as a
//! symbol's story shows them. Owns the records, their bounds and the cleaning of the text they
//! keep; which result is a plan's outcome is the join's to tell, the counting `apply`'s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::entry::details_error;
use super::{Decision, Entry, EntryId, Outcome};

pub(crate) const PLANS_PER_SYMBOL: usize = 8;
/// Symbols remembered; beyond, the one whose newest plan came longest ago is forgotten.
pub(crate) const BOOK_SYMBOLS: usize = 20_000;
/// Seconds a plan waits for its result before it is shown as having none: several of the
/// producer's 5 s cycles.
pub(crate) const NO_RESULT_AFTER: f64 = 30.0;
const MAX_ACTION: usize = 64;
const MAX_REASONS: usize = 16;
const MAX_REASON: usize = 64;
/// The producer's exception texts reach 200 characters.
const MAX_ERROR: usize = 256;
/// Longer than any number written as text: a longer field is no number, not one cut short.
const MAX_NUMBER: usize = 64;

/// One plan of the apply layer's, as its entry and its results told it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlanRecord {
    /// Empty when the plan has none: no result can be joined to it then.
    pub(crate) plan_id: String,
    /// Unix seconds: the plan's `timestamp` field, else its entry ID's.
    pub(crate) time: f64,
    pub(crate) entry: EntryId,
    pub(crate) decision: Decision,
    pub(crate) action: Option<String>,
    pub(crate) reason_codes: Vec<String>,
    pub(crate) kill_score: Option<f64>,
    /// The plan's first result, its outcome.
    pub(crate) result: Option<ResultRecord>,
    /// Results of the plan after the first.
    pub(crate) repeats: u64,
}

/// A plan's first result.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResultRecord {
    /// Unix seconds: the result's `timestamp` field, else its entry ID's.
    pub(crate) time: f64,
    pub(crate) entry: EntryId,
    pub(crate) outcome: Outcome,
    pub(crate) executed: Option<bool>,
    /// On a skip or a block the reason, not a failure.
    pub(crate) error: Option<String>,
    /// From the plan's entry to the result's, when the plan came first.
    pub(crate) latency_seconds: Option<f64>,
}

impl PlanRecord {
    /// The plan `entry`, its fields bounded and cleaned; no result yet.
    pub(super) fn read(
        entry: &Entry,
        plan_id: Option<&str>,
        time: f64,
        decision: Decision,
    ) -> PlanRecord {
        let reason_codes = entry.raw("reason_codes").map_or_else(Vec::new, |raw| {
            // Enough bytes for the codes kept, each at its longest: a field may hold a megabyte.
            let head = &raw[..raw.len().min(MAX_REASONS * (MAX_REASON * 4 + 1))];
            head.split(|byte| *byte == b',')
                .map(|code| clean(code, MAX_REASON))
                .filter(|code| !code.is_empty())
                .take(MAX_REASONS)
                .collect()
        });
        PlanRecord {
            plan_id: plan_id.unwrap_or_default().to_owned(),
            time,
            entry: entry.id,
            decision,
            action: text(entry, "action", MAX_ACTION),
            reason_codes,
            kill_score: entry
                .raw("kill_score")
                .map(<[u8]>::trim_ascii)
                .filter(|raw| raw.len() <= MAX_NUMBER)
                .and_then(|raw| std::str::from_utf8(raw).ok())
                .and_then(crate::values::parse_number),
            result: None,
            repeats: 0,
        }
    }

    /// `result`, `waiting` while a result may still come as of `now_unix`, or `no result yet`.
    pub(crate) fn result_status(&self, now_unix: f64) -> &'static str {
        match self.result {
            Some(_) => "result",
            None if now_unix - self.time < NO_RESULT_AFTER => "waiting",
            None => "no result yet",
        }
    }
}

impl ResultRecord {
    /// The result `entry`, its fields bounded and cleaned.
    pub(super) fn read(
        entry: &Entry,
        time: f64,
        outcome: Outcome,
        latency_seconds: Option<f64>,
    ) -> ResultRecord {
        let executed = entry.raw("executed").and_then(|raw| {
            let raw = raw.trim_ascii();
            if raw.eq_ignore_ascii_case(b"true") {
                Some(true)
            } else if raw.eq_ignore_ascii_case(b"false") {
                Some(false)
            } else {
                None
            }
        });
        let error = text(entry, "error", MAX_ERROR).or_else(|| {
            let error = clean(details_error(entry)?.as_bytes(), MAX_ERROR);
            Some(error).filter(|error| !error.is_empty())
        });
        ResultRecord {
            time,
            entry: entry.id,
            outcome,
            executed,
            error,
            latency_seconds,
        }
    }
}

/// A field's value, cleaned and cut to `max` characters; `None` when empty.
fn text(entry: &Entry, name: &str, max: usize) -> Option<String> {
    Some(clean(entry.raw(name)?, max)).filter(|value| !value.is_empty())
}

/// At most `max` characters of `raw`, trimmed, with invalid UTF-8 and control characters
/// replaced, so that what is kept is plain text whatever the field held.
fn clean(raw: &[u8], max: usize) -> String {
    let raw = raw.trim_ascii_start();
    // Read no further than the characters kept reach: a field may hold a megabyte.
    let head = &raw[..raw.len().min(max * 4)];
    let cleaned: String = String::from_utf8_lossy(head)
        .chars()
        .take(max)
        .map(|c| match c {
            c if c.is_whitespace() => ' ',
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect();
    cleaned.trim().to_owned()
}

/// A symbol's plans, newest first.
#[derive(Debug)]
struct Shelf {
    plans: VecDeque<PlanRecord>,
    /// Its key in [`Book::order`].
    written: u64,
}

/// The streams' time, in Unix seconds: the newest entry's ID, run on by the follower's clock
/// since it was read, so that plans age while no entry comes.
#[derive(Clone, Copy, Debug)]
struct Clock {
    unix: f64,
    at: f64,
}

impl Clock {
    fn now(self, now: f64) -> f64 {
        self.unix + (now - self.at)
    }
}

/// The recent plans of each symbol: [`PLANS_PER_SYMBOL`] each, for at most a maximum age (by
/// their entry IDs, the streams' clock), of at most [`BOOK_SYMBOLS`] symbols.
#[derive(Debug)]
pub(crate) struct Book {
    shelves: HashMap<String, Shelf>,
    /// Symbols by their newest plan's arrival, oldest first: plans arrive in their stream's
    /// order, so the first is the one whose plans are the oldest.
    order: BTreeMap<u64, String>,
    next_write: u64,
    max_age: f64,
    cap: usize,
    clock: Option<Clock>,
    /// Plans written before this Unix second are too old to show.
    cutoff: f64,
}

impl Book {
    pub(crate) fn new(max_age: Duration) -> Book {
        Book::with_cap(max_age, BOOK_SYMBOLS)
    }

    fn with_cap(max_age: Duration, cap: usize) -> Book {
        Book {
            shelves: HashMap::new(),
            order: BTreeMap::new(),
            next_write: 0,
            max_age: max_age.as_secs_f64(),
            cap,
            clock: None,
            cutoff: f64::NEG_INFINITY,
        }
    }

    /// The symbol's plans still young enough, newest first.
    pub(crate) fn plans(&self, symbol: &str) -> Vec<PlanRecord> {
        let Some(shelf) = self.shelves.get(symbol) else {
            return Vec::new();
        };
        shelf
            .plans
            .iter()
            .filter(|plan| seconds(plan.entry) >= self.cutoff)
            .cloned()
            .collect()
    }

    /// A plan of `symbol` read at `now` (the follower's clock, in seconds), the newest.
    pub(super) fn plan(&mut self, symbol: &str, record: PlanRecord, now: f64) {
        self.saw(record.entry, now);
        self.expire(now);
        if seconds(record.entry) < self.cutoff {
            return;
        }
        let written = self.next_write;
        self.next_write += 1;
        let cutoff = self.cutoff;
        match self.shelves.get_mut(symbol) {
            Some(shelf) => {
                self.order.remove(&shelf.written);
                shelf.written = written;
                shelf.plans.push_front(record);
                shelf.plans.truncate(PLANS_PER_SYMBOL);
                shelf.plans.retain(|plan| seconds(plan.entry) >= cutoff);
            }
            None => {
                let shelf = Shelf {
                    plans: VecDeque::from([record]),
                    written,
                };
                self.shelves.insert(symbol.to_owned(), shelf);
            }
        }
        self.order.insert(written, symbol.to_owned());
        while self.shelves.len() > self.cap {
            let Some((_, symbol)) = self.order.pop_first() else {
                break;
            };
            self.shelves.remove(&symbol);
        }
    }

    /// The first result of the plan `plan_id` of `symbol`, read at `now`.
    pub(super) fn result(&mut self, symbol: &str, plan_id: &str, result: ResultRecord, now: f64) {
        self.saw(result.entry, now);
        if let Some(record) = self.record(symbol, plan_id) {
            record.result = Some(result);
        }
    }

    /// A later result of the plan `plan_id` of `symbol`, the entry `entry` read at `now`.
    pub(super) fn repeat(&mut self, symbol: &str, plan_id: &str, entry: EntryId, now: f64) {
        self.saw(entry, now);
        if let Some(record) = self.record(symbol, plan_id) {
            record.repeats += 1;
        }
    }

    /// Forgets the symbols whose plans are all older than the maximum age as of `now`.
    pub(super) fn expire(&mut self, now: f64) {
        let Some(clock) = self.clock else {
            return;
        };
        self.cutoff = clock.now(now) - self.max_age;
        while let Some((&written, symbol)) = self.order.first_key_value() {
            let newest = self
                .shelves
                .get(symbol)
                .and_then(|shelf| shelf.plans.front());
            if newest.is_some_and(|plan| seconds(plan.entry) >= self.cutoff) {
                break;
            }
            if let Some(symbol) = self.order.remove(&written) {
                self.shelves.remove(&symbol);
            }
        }
    }

    /// The plan's newest record: a plan written again has a record for each entry, and its
    /// results follow the newest.
    fn record(&mut self, symbol: &str, plan_id: &str) -> Option<&mut PlanRecord> {
        let shelf = self.shelves.get_mut(symbol)?;
        shelf.plans.iter_mut().find(|plan| plan.plan_id == plan_id)
    }

    fn saw(&mut self, entry: EntryId, now: f64) {
        let unix = seconds(entry);
        if self.clock.is_none_or(|clock| unix > clock.now(now)) {
            self.clock = Some(Clock { unix, at: now });
        }
    }
}

fn seconds(entry: EntryId) -> f64 {
    entry.ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::super::entry::tests::entry;
    use super::super::{ApplyPublication, ApplyState, StreamKind, join};
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);

    fn plan(id: &str, symbol: &str, ms: u64) -> Entry {
        entry(
            ms,
            &[
                ("plan_id", id),
                ("symbol", symbol),
                ("action", "FULL_CLOSE_PROPOSED"),
                ("decision", "EXECUTE"),
                ("reason_codes", "kill_score_close_ok,layer4_kelly_250usdt"),
                ("kill_score", "0.82"),
            ],
        )
    }

    fn result(id: &str, symbol: &str, ms: u64, fields: &[(&str, &str)]) -> Entry {
        let mut all = vec![("plan_id", id), ("symbol", symbol)];
        all.extend_from_slice(fields);
        entry(ms, &all)
    }

    const DRY_RUN: [(&str, &str); 3] = [
        ("executed", "False"),
        ("would_execute", "True"),
        ("error", ""),
    ];
    const REPEAT: [(&str, &str); 2] = [("decision", "SKIP"), ("error", "duplicate_plan")];

    fn plans(state: &ApplyState, symbol: &str) -> Vec<PlanRecord> {
        ApplyPublication::new(state).plans(symbol).unwrap()
    }

    #[test]
    fn a_plan_is_joined_to_its_first_result_and_counts_the_rest() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        state.observe(StreamKind::Plan, &plan("p1", "BTCUSDT", 1_000_000), 0.0);
        assert_eq!(plans(&state, "BTCUSDT")[0].result, None);
        let first = result("p1", "BTCUSDT", 1_000_040, &DRY_RUN);
        state.observe(StreamKind::Result, &first, 0.1);
        for cycle in 1..=3u64 {
            let repeat = result("p1", "BTCUSDT", 1_000_040 + cycle * 5_000, &REPEAT);
            state.observe(StreamKind::Result, &repeat, cycle as f64 * 5.0);
        }
        let book = plans(&state, "BTCUSDT");
        assert_eq!(
            book,
            [PlanRecord {
                plan_id: "p1".to_owned(),
                time: 1_000.0,
                entry: EntryId {
                    ms: 1_000_000,
                    seq: 0
                },
                decision: Decision::Execute,
                action: Some("FULL_CLOSE_PROPOSED".to_owned()),
                reason_codes: vec![
                    "kill_score_close_ok".to_owned(),
                    "layer4_kelly_250usdt".to_owned()
                ],
                kill_score: Some(0.82),
                result: Some(ResultRecord {
                    time: 1_000.04,
                    entry: EntryId {
                        ms: 1_000_040,
                        seq: 0
                    },
                    outcome: Outcome::DryRun,
                    executed: Some(false),
                    error: None,
                    latency_seconds: Some(0.04),
                }),
                repeats: 3,
            }]
        );
        assert_eq!(plans(&state, "ETHUSDT"), []);
    }

    #[test]
    fn a_result_before_its_plan_is_joined_when_the_plan_comes() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        let blocked = [
            ("executed", "false"),
            ("details", r#"{"error": "kill_score_close_blocked"}"#),
        ];
        state.observe(
            StreamKind::Result,
            &result("p1", "XRPUSDT", 2_000, &blocked),
            0.0,
        );
        // A repeat before the plan only counts as a repeat.
        state.observe(
            StreamKind::Result,
            &result("p1", "XRPUSDT", 7_000, &REPEAT),
            5.0,
        );
        assert_eq!(plans(&state, "XRPUSDT"), []);
        state.observe(StreamKind::Plan, &plan("p1", "XRPUSDT", 1_000), 6.0);
        let record = &plans(&state, "XRPUSDT")[0];
        let joined = record.result.as_ref().unwrap();
        assert_eq!(joined.entry.ms, 2_000);
        assert_eq!(joined.executed, Some(false));
        assert_eq!(joined.error.as_deref(), Some("kill_score_close_blocked"));
        assert_eq!(joined.latency_seconds, None, "the plan came after");
        assert_eq!(record.repeats, 1);
        assert!(!state.settle(join::GRACE_SECONDS + 10.0), "its plan came");
    }

    #[test]
    fn a_plan_waits_for_its_result_then_has_none() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        let mut entry = plan("p1", "BTCUSDT", 1_769_130_500_500);
        entry
            .fields
            .push((b"timestamp".to_vec(), b"1769130500".to_vec()));
        state.observe(StreamKind::Plan, &entry, 0.0);
        let record = &plans(&state, "BTCUSDT")[0];
        assert_eq!(record.time, 1_769_130_500.0, "the timestamp field first");
        assert_eq!(record.result_status(1_769_130_500.0), "waiting");
        assert_eq!(
            record.result_status(1_769_130_500.0 + NO_RESULT_AFTER - 1.0),
            "waiting"
        );
        assert_eq!(
            record.result_status(1_769_130_500.0 + NO_RESULT_AFTER),
            "no result yet"
        );
        let late = result("p1", "BTCUSDT", 1_769_130_560_000, &DRY_RUN);
        state.observe(StreamKind::Result, &late, 60.0);
        let record = &plans(&state, "BTCUSDT")[0];
        assert_eq!(record.result_status(1_769_130_600.0), "result");
        assert_eq!(record.result.as_ref().unwrap().latency_seconds, Some(59.5));
    }

    #[test]
    fn each_symbol_keeps_its_newest_plans_first() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        for i in 0..12u64 {
            let id = format!("p{i}");
            state.observe(StreamKind::Plan, &plan(&id, "BTCUSDT", i * 1_000), 0.0);
            state.observe(StreamKind::Plan, &plan(&id, "ETHUSDT", i * 1_000), 0.0);
        }
        // The newest plan's result goes to its newest record.
        state.observe(StreamKind::Plan, &plan("p11", "BTCUSDT", 13_000), 0.0);
        let first = result("p11", "BTCUSDT", 13_100, &DRY_RUN);
        state.observe(StreamKind::Result, &first, 0.0);
        let book = plans(&state, "BTCUSDT");
        let ids: Vec<&str> = book.iter().map(|plan| plan.plan_id.as_str()).collect();
        assert_eq!(ids, ["p11", "p11", "p10", "p9", "p8", "p7", "p6", "p5"]);
        assert!(book[0].result.is_some() && book[1].result.is_none());
        assert_eq!(plans(&state, "ETHUSDT").len(), PLANS_PER_SYMBOL);
    }

    #[test]
    fn beyond_the_cap_the_symbol_planned_longest_ago_is_forgotten() {
        let mut book = Book::with_cap(HOUR, 3);
        let record = |ms| PlanRecord::read(&plan("p", "-", ms), Some("p"), 0.0, Decision::Skip);
        book.plan("A", record(1), 0.0);
        book.plan("B", record(2), 0.0);
        book.plan("C", record(3), 0.0);
        book.plan("A", record(4), 0.0);
        book.plan("D", record(5), 0.0);
        assert_eq!(book.shelves.len(), 3);
        assert_eq!(book.order.len(), 3);
        assert!(book.plans("B").is_empty(), "B was written longest ago");
        for symbol in ["A", "C", "D"] {
            assert!(!book.plans(symbol).is_empty(), "{symbol}");
        }
        assert_eq!(book.plans("A").len(), 2);
    }

    #[test]
    fn plans_older_than_the_maximum_age_are_forgotten() {
        let mut state = ApplyState::with_book_max_age(Duration::from_secs(600));
        state.observe(StreamKind::Plan, &plan("p1", "BTCUSDT", 1_000_000), 0.0);
        state.observe(StreamKind::Plan, &plan("p2", "ETHUSDT", 1_100_000), 100.0);
        state.observe(StreamKind::Plan, &plan("p3", "ETHUSDT", 1_500_000), 500.0);
        assert_eq!(plans(&state, "BTCUSDT").len(), 1);
        // No entry comes: the streams' time runs on with the follower's clock.
        state.settle(601.0);
        assert_eq!(plans(&state, "BTCUSDT"), [], "600 s and more old");
        assert_eq!(plans(&state, "ETHUSDT").len(), 2);
        state.settle(1_050.0);
        let left: Vec<String> = plans(&state, "ETHUSDT")
            .into_iter()
            .map(|plan| plan.plan_id)
            .collect();
        assert_eq!(left, ["p3"]);
        state.settle(1_101.0);
        assert_eq!(plans(&state, "ETHUSDT"), []);
        let book = state.book.as_ref().unwrap().read().unwrap();
        assert!(book.shelves.is_empty() && book.order.is_empty());
        drop(book);
        // A plan read already too old is not kept.
        state.observe(StreamKind::Plan, &plan("p0", "XRPUSDT", 1_000), 1_102.0);
        assert_eq!(plans(&state, "XRPUSDT"), []);
    }

    #[test]
    fn hostile_fields_are_cut_and_cleaned() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        let long_error = format!("execution_failed: {}", "é".repeat(10_000));
        let many_codes = vec!["code_x"; 40].join(",");
        let mut odd = plan("p1", "BTCUSDT", 1_000);
        odd.fields.retain(|(name, _)| name != b"action");
        odd.fields.insert(
            0,
            (
                b"action".to_vec(),
                [b"CLOSE\x00\xff\n".as_slice(), &[b'A'; 1 << 20]].concat(),
            ),
        );
        odd.fields
            .insert(0, (b"reason_codes".to_vec(), many_codes.into()));
        odd.fields
            .insert(0, (b"kill_score".to_vec(), vec![b'9'; 1 << 20]));
        state.observe(StreamKind::Plan, &odd, 0.0);
        let failed = [("executed", "False"), ("error", long_error.as_str())];
        state.observe(
            StreamKind::Result,
            &result("p1", "BTCUSDT", 2_000, &failed),
            0.0,
        );
        let record = &plans(&state, "BTCUSDT")[0];
        let action = record.action.as_deref().unwrap();
        assert_eq!(action.chars().count(), MAX_ACTION);
        assert!(action.starts_with("CLOSE\u{fffd}\u{fffd} AAA"), "{action}");
        assert_eq!(record.reason_codes.len(), MAX_REASONS);
        assert_eq!(record.kill_score, None, "not cut into another number");
        let error = record.result.as_ref().unwrap().error.as_deref().unwrap();
        assert_eq!(error.chars().count(), MAX_ERROR);
        assert!(error.starts_with("execution_failed: éé"));
        assert_eq!(clean(b" \t\x1b[31mred\r\n", 64), "\u{fffd}[31mred");
        assert_eq!(clean(&[0xe2, 0x82, 0xac, 0xe2, 0x82], 2), "€\u{fffd}");
        assert_eq!(clean(&[0xe2, 0x82, 0xac, 0xe2, 0x82], 1), "€");
    }

    #[test]
    fn recalled_entries_fill_the_book() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        state.recall(StreamKind::Plan, &plan("p1", "ETHUSDT", 5_000), 0.0);
        state.recall(
            StreamKind::Result,
            &result("p1", "ETHUSDT", 5_500, &DRY_RUN),
            0.0,
        );
        state.recall(
            StreamKind::Result,
            &result("p1", "ETHUSDT", 10_500, &REPEAT),
            0.0,
        );
        let record = &plans(&state, "ETHUSDT")[0];
        assert_eq!(record.result.as_ref().unwrap().latency_seconds, Some(0.5));
        assert_eq!(record.repeats, 1);
    }

    #[test]
    fn other_services_entries_are_no_plans() {
        let mut state = ApplyState::with_book_max_age(HOUR);
        let intent = entry(
            1,
            &[
                ("plan_id", "i1"),
                ("symbol", "BTCUSDT"),
                ("source", "intent_executor"),
                ("qty", "1"),
            ],
        );
        state.observe(StreamKind::Plan, &intent, 0.0);
        assert_eq!(plans(&state, "BTCUSDT"), []);
    }

    #[test]
    fn without_the_streams_or_the_history_no_plans() {
        assert_eq!(ApplyPublication::default().plans("BTCUSDT"), None);
        let mut state = ApplyState::with_book_max_age(Duration::ZERO);
        state.observe(
            StreamKind::Result,
            &result("p1", "BTCUSDT", 1, &DRY_RUN),
            0.0,
        );
        state.observe(StreamKind::Plan, &plan("p1", "BTCUSDT", 2), 0.0);
        assert_eq!(plans(&state, "BTCUSDT"), []);
        assert!(state.book.is_none());
    }
}

//! Results joined to their plans on `plan_id`, on the producer's rhythm: a plan entry once per
//! `plan_id` (again after its 300 s dedupe window), a result every cycle. Tells a plan's outcome
//! from its repeats and a result whose plan never came; bounded, with the clock passed in.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{Decision, EntryId, Outcome, ResultRecord};

/// The producer writes a plan entry again at most 300 s after the last: three times that covers
/// a plan between two of its entries, with room for a slow cycle.
pub(super) const KEEP_SECONDS: f64 = 900.0;
/// Most plans (and results still waiting for theirs) remembered, whatever their age.
pub(super) const CAP: usize = 50_000;
/// How long a result may wait for its plan: the two streams are read in batches, so a result can
/// be read a moment before its plan.
pub(super) const GRACE_SECONDS: f64 = 10.0;

/// What a result is to its plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The plan's first result, the plan's entry seen before it.
    Outcome(EntryId),
    /// The first result of a plan not seen (yet): the outcome, unmatched if the plan does not
    /// come within the grace period.
    Early,
    /// A later result of a plan that already has its outcome.
    Repeat,
}

/// One plan as its entries and results told it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Story {
    /// The plan's newest entry and its decision, once seen.
    pub(crate) plan: Option<EntryId>,
    pub(crate) decision: Option<Decision>,
    /// The first result since that entry.
    pub(crate) outcome: Option<Outcome>,
    /// Results after the first.
    pub(crate) repeats: u64,
    /// The first result's details while the plan is not seen, for its record to take when the
    /// plan comes; boxed, for most stories never hold one.
    early: Option<Box<ResultRecord>>,
    /// Counted as unmatched: its plan did not come within the grace period.
    unmatched: bool,
    touched_at: f64,
    /// Its key in [`Join::order`].
    touch: u64,
}

/// Plans by `plan_id`, each with its outcome and repeats; the least recently written forgotten
/// first, after [`KEEP_SECONDS`] or beyond [`CAP`].
#[derive(Debug)]
pub(crate) struct Join {
    stories: HashMap<String, Story>,
    /// Plan ids by their last plan entry (or first result), oldest first.
    order: BTreeMap<u64, String>,
    next_touch: u64,
    /// Plan ids whose first result came before the plan, by that result's time.
    waiting: VecDeque<(f64, String)>,
    keep: f64,
    cap: usize,
    grace: f64,
}

impl Default for Join {
    fn default() -> Self {
        Join::new(KEEP_SECONDS, CAP, GRACE_SECONDS)
    }
}

impl Join {
    fn new(keep: f64, cap: usize, grace: f64) -> Join {
        Join {
            stories: HashMap::new(),
            order: BTreeMap::new(),
            next_touch: 0,
            waiting: VecDeque::new(),
            keep,
            cap,
            grace,
        }
    }

    /// A plan entry at `now` (seconds, never decreasing). A plan written again starts anew: the
    /// producer writes it when it plans it anew, so the result that follows is an outcome again.
    /// Returns the details of the result that came before the plan, if one was kept.
    pub(crate) fn plan_seen(
        &mut self,
        plan_id: &str,
        entry: EntryId,
        decision: Decision,
        now: f64,
    ) -> Option<ResultRecord> {
        let early = match self.stories.get_mut(plan_id) {
            Some(story) => {
                if story.plan.is_some() {
                    story.outcome = None;
                    story.repeats = 0;
                }
                story.plan = Some(entry);
                story.decision = Some(decision);
                story.early.take()
            }
            None => {
                self.insert(plan_id, Some((entry, decision)), None, now);
                None
            }
        };
        self.touch(plan_id, now);
        self.forget(now);
        early.map(|early| *early)
    }

    /// Keeps the details of a plan's first result while the plan is not seen, for
    /// [`Self::plan_seen`] to hand over; only then, so that the join stays small.
    pub(crate) fn keep_early(&mut self, plan_id: &str, result: ResultRecord) {
        if let Some(story) = self.stories.get_mut(plan_id)
            && story.plan.is_none()
        {
            story.early = Some(Box::new(result));
        }
    }

    /// A result read while following.
    pub(crate) fn result_seen(&mut self, plan_id: &str, outcome: Outcome, now: f64) -> Joined {
        self.result(plan_id, outcome, now, true)
    }

    /// A result already in the stream at start-up: it takes its place in its plan's story, but
    /// is never counted as unmatched, as nothing recalled is counted.
    pub(crate) fn result_recalled(&mut self, plan_id: &str, outcome: Outcome, now: f64) -> Joined {
        self.result(plan_id, outcome, now, false)
    }

    fn result(&mut self, plan_id: &str, outcome: Outcome, now: f64, wait: bool) -> Joined {
        let joined = match self.stories.get_mut(plan_id) {
            Some(story) if story.outcome.is_some() => {
                story.repeats += 1;
                Joined::Repeat
            }
            Some(story) => {
                story.outcome = Some(outcome);
                story.plan.map_or(Joined::Early, Joined::Outcome)
            }
            None => {
                self.insert(plan_id, None, Some(outcome), now);
                self.touch(plan_id, now);
                if wait {
                    self.waiting.push_back((now, plan_id.to_owned()));
                }
                Joined::Early
            }
        };
        self.forget(now);
        joined
    }

    /// Results whose plan did not come within the grace period, newly counted as of `now`;
    /// forgets what is too old as well.
    pub(crate) fn settle(&mut self, now: f64) -> u64 {
        let mut unmatched = 0;
        while let Some((at, _)) = self.waiting.front() {
            // Beyond the cap the oldest is settled early: a flood of unknown plan ids must not
            // grow the queue.
            if now - at < self.grace && self.waiting.len() <= self.cap {
                break;
            }
            let Some((_, plan_id)) = self.waiting.pop_front() else {
                break;
            };
            if let Some(story) = self.stories.get_mut(&plan_id)
                && story.plan.is_none()
                && !story.unmatched
            {
                story.unmatched = true;
                unmatched += 1;
            }
        }
        self.forget(now);
        unmatched
    }

    /// The story of a plan still remembered.
    pub(crate) fn story(&self, plan_id: &str) -> Option<&Story> {
        self.stories.get(plan_id)
    }

    fn insert(
        &mut self,
        plan_id: &str,
        plan: Option<(EntryId, Decision)>,
        outcome: Option<Outcome>,
        now: f64,
    ) {
        let story = Story {
            plan: plan.map(|(entry, _)| entry),
            decision: plan.map(|(_, decision)| decision),
            outcome,
            repeats: 0,
            early: None,
            unmatched: false,
            touched_at: now,
            touch: self.next_touch,
        };
        self.order.insert(self.next_touch, plan_id.to_owned());
        self.next_touch += 1;
        self.stories.insert(plan_id.to_owned(), story);
    }

    fn touch(&mut self, plan_id: &str, now: f64) {
        let Some(story) = self.stories.get_mut(plan_id) else {
            return;
        };
        self.order.remove(&story.touch);
        story.touch = self.next_touch;
        story.touched_at = now;
        self.order.insert(self.next_touch, plan_id.to_owned());
        self.next_touch += 1;
    }

    fn forget(&mut self, now: f64) {
        while let Some((&touch, plan_id)) = self.order.first_key_value() {
            let too_old = self
                .stories
                .get(plan_id)
                .is_none_or(|story| now - story.touched_at > self.keep);
            if !too_old && self.stories.len() <= self.cap {
                break;
            }
            if let Some(plan_id) = self.order.remove(&touch) {
                self.stories.remove(&plan_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn the_first_result_is_the_outcome_and_the_rest_are_repeats() {
        let mut join = Join::default();
        join.plan_seen("p1", id(1_000), Decision::Execute, 0.0);
        assert_eq!(
            join.result_seen("p1", Outcome::DryRun, 0.1),
            Joined::Outcome(id(1_000))
        );
        for cycle in 1..=40 {
            let now = f64::from(cycle) * 5.0;
            assert_eq!(
                join.result_seen("p1", Outcome::Skipped, now),
                Joined::Repeat
            );
            assert_eq!(join.settle(now), 0, "a repeat is never unmatched");
        }
        let story = join.story("p1").unwrap();
        assert_eq!(
            story.outcome,
            Some(Outcome::DryRun),
            "repeats leave the outcome"
        );
        assert_eq!(story.repeats, 40);
    }

    #[test]
    fn a_plan_written_again_starts_anew() {
        let mut join = Join::default();
        join.plan_seen("p1", id(1), Decision::Execute, 0.0);
        join.result_seen("p1", Outcome::DryRun, 0.0);
        join.result_seen("p1", Outcome::Skipped, 5.0);
        join.plan_seen("p1", id(300_000), Decision::Execute, 300.0);
        assert_eq!(join.story("p1").unwrap().repeats, 0);
        assert_eq!(
            join.result_seen("p1", Outcome::Executed, 300.0),
            Joined::Outcome(id(300_000))
        );
        assert_eq!(join.story("p1").unwrap().outcome, Some(Outcome::Executed));
    }

    #[test]
    fn a_result_before_its_plan_is_unmatched_only_after_the_grace_period() {
        let mut join = Join::default();
        assert_eq!(
            join.result_seen("p1", Outcome::DryRun, 100.0),
            Joined::Early
        );
        assert_eq!(
            join.result_seen("p1", Outcome::Skipped, 100.5),
            Joined::Repeat
        );
        join.plan_seen("p1", id(1), Decision::Execute, 101.0);
        assert_eq!(join.settle(100.0 + GRACE_SECONDS + 1.0), 0, "its plan came");
        assert_eq!(join.story("p1").unwrap().outcome, Some(Outcome::DryRun));

        assert_eq!(
            join.result_seen("p2", Outcome::Blocked, 200.0),
            Joined::Early
        );
        assert_eq!(
            join.settle(200.0 + GRACE_SECONDS - 1.0),
            0,
            "still in grace"
        );
        for cycle in 1..=10 {
            assert_eq!(
                join.result_seen("p2", Outcome::Skipped, 200.0 + f64::from(cycle)),
                Joined::Repeat
            );
        }
        assert_eq!(
            join.settle(200.0 + GRACE_SECONDS),
            1,
            "once, not per result"
        );
        assert_eq!(join.settle(400.0), 0);
    }

    #[test]
    fn an_early_result_is_kept_only_until_its_plan_comes() {
        let result = |ms| ResultRecord {
            time: 0.0,
            entry: id(ms),
            outcome: Outcome::Blocked,
            executed: Some(false),
            error: None,
            latency_seconds: None,
        };
        let mut join = Join::default();
        join.result_seen("p1", Outcome::Blocked, 0.0);
        join.keep_early("p1", result(2));
        assert_eq!(
            join.plan_seen("p1", id(1), Decision::Blocked, 0.5),
            Some(result(2))
        );
        assert_eq!(join.story("p1").unwrap().early, None, "handed over");
        join.keep_early("p1", result(3));
        assert_eq!(join.story("p1").unwrap().early, None, "the plan is seen");
        join.keep_early("p2", result(4));
        assert!(join.story("p2").is_none(), "no story is made for it");
    }

    #[test]
    fn recalled_results_are_never_unmatched() {
        let mut join = Join::default();
        assert_eq!(
            join.result_recalled("p1", Outcome::DryRun, 0.0),
            Joined::Early
        );
        assert_eq!(
            join.result_seen("p1", Outcome::Skipped, 1.0),
            Joined::Repeat
        );
        assert_eq!(join.settle(1_000.0), 0);
    }

    #[test]
    fn plans_are_kept_the_republish_window_and_forgotten_after() {
        let mut join = Join::default();
        join.plan_seen("p1", id(1), Decision::Execute, 0.0);
        join.result_seen("p1", Outcome::DryRun, 0.0);
        // A repeat every cycle, the plan written again every 300 s: never forgotten.
        for cycle in 1..=720u32 {
            let now = f64::from(cycle) * 5.0;
            if cycle % 60 == 0 {
                join.plan_seen("p1", id(u64::from(cycle)), Decision::Execute, now);
                join.result_seen("p1", Outcome::DryRun, now);
            } else {
                assert_eq!(
                    join.result_seen("p1", Outcome::Skipped, now),
                    Joined::Repeat
                );
            }
        }
        join.plan_seen("p2", id(2), Decision::Skip, 3_600.0);
        join.settle(3_600.0 + KEEP_SECONDS + 1.0);
        assert!(join.story("p1").is_none() && join.story("p2").is_none());
    }

    #[test]
    fn memory_is_bounded_by_count_oldest_first() {
        let mut join = Join::new(KEEP_SECONDS, 100, GRACE_SECONDS);
        for i in 0..1_000u64 {
            join.plan_seen(&format!("p{i}"), id(i), Decision::Execute, 0.0);
            join.result_seen(&format!("r{i}"), Outcome::Error, 0.0);
        }
        assert_eq!(join.stories.len(), 100);
        assert_eq!(join.order.len(), 100);
        assert!(join.waiting.len() <= 1_000);
        assert!(join.story("r999").is_some() && join.story("p0").is_none());
        // Beyond the cap, waiting results are settled at once.
        join.settle(0.0);
        assert!(join.waiting.len() <= 100);
    }
}

//! One symbol's track: its points, thinned as they age, and its events, with the state the
//! events are read from (the kill score's band, staleness, whether its hash is gone). Times are
//! the history's ticks; what a point holds is the history's.

use std::collections::VecDeque;

use super::{EVENTS_PER_SYMBOL, KILL_SCORE, RECORDED, Sample};
use crate::proposal::Proposal;
use crate::thresholds::{self, KillBand, STALE_AFTER_SECONDS};
use crate::view;

/// What a track may hold, and the room a thinning works in, kept from one to the next: thinning
/// comes every few points for every symbol, and would otherwise allocate each time.
#[derive(Debug, Default)]
pub(super) struct Bounds {
    pub(super) span: u32,
    pub(super) points: usize,
    thinning: Thinning,
}

#[derive(Debug, Default)]
struct Thinning {
    candidates: Vec<(f64, usize)>,
    dropped: Vec<bool>,
}

#[derive(Debug)]
pub(super) struct Track {
    pub(super) symbol: Box<str>,
    pub(super) points: VecDeque<Sample>,
    pub(super) events: VecDeque<Event>,
    band: KillBand,
    stale: bool,
    gone_at: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Event {
    pub(super) at: u32,
    what: What,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum What {
    Appeared,
    Disappeared,
    ActionChanged {
        from: u8,
        to: u8,
    },
    /// The kill score (as a sample keeps it) entered a higher band: crossed its floor upwards.
    Rose {
        to: KillBand,
        kill_score: i16,
    },
    /// The kill score fell below the floor of `line`'s band, the lowest it crossed.
    Fell {
        line: KillBand,
        kill_score: i16,
    },
    Stale,
    Fresh,
}

impl Track {
    /// A symbol first seen at `now`; it `appeared` unless it is among the first full read's.
    /// Its points and events take all the room they may ever need at once: the tracks of a read
    /// are made one after another, and rings that grew later would leave holes between them.
    pub(super) fn new(
        proposal: &Proposal,
        sample: Sample,
        now_unix: f64,
        now: u32,
        appeared: bool,
        points: usize,
    ) -> Track {
        let mut track = Track {
            symbol: proposal.symbol.as_str().into(),
            points: VecDeque::with_capacity(points),
            events: VecDeque::with_capacity(EVENTS_PER_SYMBOL),
            band: KillBand::of(sample.kill_score()),
            stale: false,
            gone_at: None,
        };
        if appeared {
            track.event(now, What::Appeared);
        }
        track.points.push_back(sample);
        track.check_staleness(proposal, now_unix, now);
        track
    }

    /// The symbol's proposal in a publication at `now`, and its values as a point keeps them.
    pub(super) fn observe(
        &mut self,
        proposal: &Proposal,
        sample: Sample,
        now_unix: f64,
        now: u32,
        bounds: &mut Bounds,
    ) {
        if self.gone_at.take().is_some() {
            self.event(now, What::Appeared);
        }
        self.check_staleness(proposal, now_unix, now);
        self.expire(now, bounds.span);
        let previous = self.points.back().copied();
        if previous.is_some_and(|previous| !sample.moved_from(&previous)) {
            return;
        }
        if let Some(previous) = previous
            && previous.action() != sample.action()
        {
            let (from, to) = (previous.action(), sample.action());
            self.event(now, What::ActionChanged { from, to });
        }
        let band = KillBand::of(sample.kill_score());
        let kill_score = sample.values[KILL_SCORE];
        if band > self.band {
            self.event(
                now,
                What::Rose {
                    to: band,
                    kill_score,
                },
            );
        } else if band < self.band {
            let line = band_above(band);
            self.event(now, What::Fell { line, kill_score });
        }
        self.band = band;
        self.push(sample, bounds);
    }

    /// The symbol is not in a publication at `now`: its hash is gone (or beyond the cap).
    pub(super) fn vanish(&mut self, now: u32) {
        if self.gone_at.is_none() {
            self.gone_at = Some(now);
            self.event(now, What::Disappeared);
        }
    }

    /// Gone for longer than the span: nothing of it is left to show.
    pub(super) fn forgotten(&self, now: u32, span: u32) -> bool {
        self.gone_at
            .is_some_and(|gone| now.saturating_sub(gone) > span)
    }

    fn check_staleness(&mut self, proposal: &Proposal, now_unix: f64, now: u32) {
        let stale =
            thresholds::is_stale(thresholds::data_age(proposal.last_update_epoch, now_unix));
        if stale != self.stale {
            self.stale = stale;
            self.event(now, if stale { What::Stale } else { What::Fresh });
        }
    }

    /// Points and events older than the span go, but for the last point before it, whose value
    /// held when the span began (the newest point stays however old: it is the value held now).
    fn expire(&mut self, now: u32, span: u32) {
        let oldest = now.saturating_sub(span);
        while self.points.get(1).is_some_and(|p| p.at() <= oldest) {
            self.points.pop_front();
        }
        while self.events.front().is_some_and(|e| e.at < oldest) {
            self.events.pop_front();
        }
    }

    /// Adds the newest point. When `points` are held, a quarter of them go first: those whose
    /// neighbours are closest together for their age (never two side by side, never the oldest
    /// or the newest), so that the points thin out geometrically with age while the oldest still
    /// reaches back the span. A quarter at a time, the points are gone through once every few
    /// changes rather than at each.
    fn push(&mut self, sample: Sample, bounds: &mut Bounds) {
        if self.points.len() >= bounds.points {
            self.thin(sample.at(), &mut bounds.thinning);
        }
        self.points.push_back(sample);
    }

    fn thin(&mut self, now: u32, thinning: &mut Thinning) {
        let len = self.points.len();
        if len < 4 {
            self.points.pop_front();
            return;
        }
        let at = |i: usize| self.points[i].at();
        // The gap that dropping point i leaves, for its age.
        let cost = |i: usize| {
            f64::from(at(i + 1) - at(i - 1)) / (f64::from(now.saturating_sub(at(i))) + 1.0)
        };
        let Thinning {
            candidates,
            dropped,
        } = thinning;
        candidates.clear();
        candidates.extend((1..len - 1).map(|i| (cost(i), i)));
        candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        dropped.clear();
        dropped.resize(len, false);
        let mut count = 0;
        for &(_, i) in candidates.iter() {
            if count == len / 4 {
                break;
            }
            if !dropped[i - 1] && !dropped[i + 1] {
                dropped[i] = true;
                count += 1;
            }
        }
        let mut index = 0;
        self.points.retain(|_| {
            index += 1;
            !dropped[index - 1]
        });
    }

    /// Every time kept, `shift` seconds back: the history's epoch moved forward by as much. Only
    /// a value held for over a day before the span can be older than that: it is then told as
    /// held from the new epoch, a day before the span, which is all the span needs of it.
    pub(super) fn rebase(&mut self, shift: u32) {
        self.points
            .iter_mut()
            .for_each(|point| point.moved_back(shift));
        for event in &mut self.events {
            event.at = event.at.saturating_sub(shift);
        }
        if let Some(gone) = &mut self.gone_at {
            *gone = gone.saturating_sub(shift);
        }
    }

    fn event(&mut self, at: u32, what: What) {
        if self.events.len() >= EVENTS_PER_SYMBOL {
            self.events.pop_front();
        }
        self.events.push_back(Event { at, what });
    }
}

/// The band just above `band`: a fall into `band` crossed its floor last.
fn band_above(band: KillBand) -> KillBand {
    match band {
        KillBand::Low => KillBand::High,
        KillBand::High | KillBand::Critical => KillBand::Critical,
    }
}

impl Event {
    /// The event as the view tells it, at `timestamp`, naming actions through `action_name`.
    pub(super) fn told<'a>(
        &self,
        timestamp: f64,
        action_name: impl Fn(u8) -> Option<&'a str>,
    ) -> view::Event {
        let (kind, text) = match self.what {
            What::Appeared => ("appeared", "proposal appeared".to_owned()),
            What::Disappeared => (
                "disappeared",
                "proposal gone: its hash is no longer read".to_owned(),
            ),
            What::ActionChanged { from, to } => {
                let name = |a| action_name(a).unwrap_or("\u{2014}");
                (
                    "action_changed",
                    format!("action {} \u{2192} {}", name(from), name(to)),
                )
            }
            What::Rose { to, kill_score } => (
                "kill_score_rose",
                format!(
                    "kill score rose to {:.3}, at or above {}",
                    kill_score_of(kill_score),
                    to.floor().unwrap_or_default()
                ),
            ),
            What::Fell { line, kill_score } => (
                "kill_score_fell",
                format!(
                    "kill score fell to {:.3}, below {}",
                    kill_score_of(kill_score),
                    line.floor().unwrap_or_default()
                ),
            ),
            What::Stale => (
                "stale",
                format!("data stale: no update for over {STALE_AFTER_SECONDS}s"),
            ),
            What::Fresh => ("fresh", "data fresh again".to_owned()),
        };
        view::Event {
            timestamp,
            kind: kind.to_owned(),
            text,
        }
    }
}

fn kill_score_of(kept: i16) -> f64 {
    f64::from(kept) / RECORDED[KILL_SCORE].1
}

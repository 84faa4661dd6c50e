//! One symbol's track: its points, thinned as they age, and its events, with the state the
//! events are read from (the kill score's band, staleness, whether its hash is gone). The points
//! and events themselves lie in the history's slabs, in the track's slot; times are the
//! history's ticks.

use std::ops::Range;

use super::{EVENTS_PER_SYMBOL, KILL_SCORE, RECORDED, Sample};
use crate::proposal::Proposal;
use crate::thresholds::{self, KillBand, STALE_AFTER_SECONDS};
use crate::view;

/// Every track's points and events, in two slabs cut into slots of equal room, one slot per
/// track: two allocations for all the symbols rather than two for each, laid out in the order a
/// refresh goes through them, and no ring's wrap-around to follow.
#[derive(Debug)]
pub(super) struct Slabs {
    /// Points a slot has room for: `--history.points`.
    room: usize,
    points: Vec<Sample>,
    events: Vec<Event>,
    /// Slots of forgotten tracks, taken again before the slabs grow.
    free: Vec<u32>,
    /// The room a thinning works in, kept from one to the next: thinning comes every few points
    /// for every symbol, and would otherwise allocate each time.
    candidates: Vec<u64>,
    dropped: Vec<bool>,
}

impl Slabs {
    pub(super) fn new(room: usize) -> Slabs {
        Slabs {
            room,
            points: Vec::new(),
            events: Vec::new(),
            free: Vec::new(),
            candidates: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// A slot for a new track: a forgotten track's, or a new one at the slabs' end. Only a
    /// history that keeps points takes slots: `room` is then more than 0.
    fn take(&mut self) -> u32 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let slot = self.points.len() / self.room;
        self.points
            .resize(self.points.len() + self.room, Sample::default());
        self.events
            .resize(self.events.len() + EVENTS_PER_SYMBOL, Event::default());
        slot as u32
    }

    /// Slots taken or free: how far the slabs have grown.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.points.len() / self.room
    }

    /// The bytes the slabs hold in use, their slots' and the thinning's room.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.points.len() * size_of::<Sample>()
            + self.events.len() * size_of::<Event>()
            + self.free.capacity() * size_of::<u32>()
            + self.candidates.capacity() * size_of::<u64>()
            + self.dropped.capacity()
    }

    /// A forgotten track's slot, for the next new one.
    pub(super) fn release(&mut self, track: &Track) {
        self.free.push(track.slot);
    }

    /// Where the first `held` points of `slot` lie in the points' slab.
    fn point_range(&self, slot: u32, held: usize) -> Range<usize> {
        let start = slot as usize * self.room;
        start..start + held
    }

    fn event_range(slot: u32, held: usize) -> Range<usize> {
        let start = slot as usize * EVENTS_PER_SYMBOL;
        start..start + held
    }

    fn points(&mut self, slot: u32) -> &mut [Sample] {
        let range = self.point_range(slot, self.room);
        &mut self.points[range]
    }

    fn events(&mut self, slot: u32) -> &mut [Event] {
        &mut self.events[Slabs::event_range(slot, EVENTS_PER_SYMBOL)]
    }

    /// Thins a full slot at `now` (see [`Track::push`]); returns how many points it then holds.
    fn thin(&mut self, slot: u32, now: u32) -> usize {
        let range = self.point_range(slot, self.room);
        let points = &mut self.points[range];
        let len = points.len();
        if len < 4 {
            points.copy_within(1.., 0);
            return len - 1;
        }
        let at = |i: usize| points[i].at();
        // The gap that dropping point i leaves, for its age, and i, in one integer key that sorts
        // as the pair would (non-negative floats order as their bits do), with no comparison of
        // floats: this sort runs for every symbol every few changes.
        let key = |i: usize| {
            let cost = (at(i + 1) - at(i - 1)) as f32 / (now.saturating_sub(at(i)) as f32 + 1.0);
            u64::from(cost.to_bits()) << 32 | i as u64
        };
        self.candidates.clear();
        self.candidates.extend((1..len - 1).map(key));
        self.candidates.sort_unstable();
        self.dropped.clear();
        self.dropped.resize(len, false);
        let mut count = 0;
        for &key in &self.candidates {
            if count == len / 4 {
                break;
            }
            let i = key as u32 as usize;
            if !self.dropped[i - 1] && !self.dropped[i + 1] {
                self.dropped[i] = true;
                count += 1;
            }
        }
        let mut kept = 0;
        for i in 0..len {
            if !self.dropped[i] {
                points[kept] = points[i];
                kept += 1;
            }
        }
        kept
    }

    /// Every time kept, `shift` seconds back: the history's epoch moved forward by as much. Free
    /// slots are moved too, which does them no harm. Only a value held for over a day before the
    /// span can be older than that: it is then told as held from the new epoch, a day before the
    /// span, which is all the span needs of it.
    pub(super) fn moved_back(&mut self, shift: u32) {
        for point in &mut self.points {
            point.moved_back(shift);
        }
        for event in &mut self.events {
            event.at = event.at.saturating_sub(shift);
        }
    }
}

#[derive(Debug)]
pub(super) struct Track {
    /// Its symbol, in the history's names.
    pub(super) name: Name,
    /// Its place in the slabs.
    slot: u32,
    /// How many of its slot's points and events are held, oldest first.
    points: u16,
    events: u8,
    band: KillBand,
    stale: bool,
    gone_at: Option<u32>,
}

/// Where a track's symbol lies in the string that holds every track's, one after another. In
/// 32 bits: symbols of at most 64 bytes would need 67 million tracks to pass 4 GiB.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Name {
    start: u32,
    len: u32,
}

impl Name {
    /// Appends `symbol` to `names`; where it lies there.
    pub(super) fn appended(symbol: &str, names: &mut String) -> Name {
        let name = Name {
            start: names.len() as u32,
            len: symbol.len() as u32,
        };
        names.push_str(symbol);
        name
    }

    pub(super) fn of(self, names: &str) -> &str {
        &names[self.start as usize..][..self.len as usize]
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Event {
    pub(super) at: u32,
    what: What,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum What {
    #[default]
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
    pub(super) fn new(
        proposal: &Proposal,
        sample: Sample,
        now_unix: f64,
        now: u32,
        appeared: bool,
        slabs: &mut Slabs,
    ) -> Track {
        let mut track = Track {
            name: Name::default(),
            slot: slabs.take(),
            points: 0,
            events: 0,
            band: KillBand::of(sample.kill_score()),
            stale: false,
            gone_at: None,
        };
        if appeared {
            track.event(now, What::Appeared, slabs);
        }
        track.push(sample, slabs);
        track.check_staleness(proposal, now_unix, now, slabs);
        track
    }

    /// Its points, oldest first.
    pub(super) fn points<'s>(&self, slabs: &'s Slabs) -> &'s [Sample] {
        &slabs.points[slabs.point_range(self.slot, usize::from(self.points))]
    }

    /// Its events, oldest first.
    pub(super) fn events<'s>(&self, slabs: &'s Slabs) -> &'s [Event] {
        &slabs.events[Slabs::event_range(self.slot, usize::from(self.events))]
    }

    /// The symbol's proposal in a publication at `now`, and its values as a point keeps them.
    pub(super) fn observe(
        &mut self,
        proposal: &Proposal,
        sample: Sample,
        now_unix: f64,
        now: u32,
        span: u32,
        slabs: &mut Slabs,
    ) {
        if self.gone_at.take().is_some() {
            self.event(now, What::Appeared, slabs);
        }
        self.check_staleness(proposal, now_unix, now, slabs);
        self.expire(now, span, slabs);
        let previous = self.points(slabs).last().copied();
        if previous.is_some_and(|previous| !sample.moved_from(&previous)) {
            return;
        }
        if let Some(previous) = previous
            && previous.action() != sample.action()
        {
            let (from, to) = (previous.action(), sample.action());
            self.event(now, What::ActionChanged { from, to }, slabs);
        }
        let band = KillBand::of(sample.kill_score());
        let kill_score = sample.values[KILL_SCORE];
        if band > self.band {
            let what = What::Rose {
                to: band,
                kill_score,
            };
            self.event(now, what, slabs);
        } else if band < self.band {
            let line = band_above(band);
            self.event(now, What::Fell { line, kill_score }, slabs);
        }
        self.band = band;
        self.push(sample, slabs);
    }

    /// The symbol is not in a publication at `now`: its hash is gone (or beyond the cap).
    pub(super) fn vanish(&mut self, now: u32, slabs: &mut Slabs) {
        if self.gone_at.is_none() {
            self.gone_at = Some(now);
            self.event(now, What::Disappeared, slabs);
        }
    }

    /// Gone for longer than the span: nothing of it is left to show.
    pub(super) fn forgotten(&self, now: u32, span: u32) -> bool {
        self.gone_at
            .is_some_and(|gone| now.saturating_sub(gone) > span)
    }

    fn check_staleness(&mut self, proposal: &Proposal, now_unix: f64, now: u32, slabs: &mut Slabs) {
        let stale =
            thresholds::is_stale(thresholds::data_age(proposal.last_update_epoch, now_unix));
        if stale != self.stale {
            self.stale = stale;
            self.event(now, if stale { What::Stale } else { What::Fresh }, slabs);
        }
    }

    /// Points and events older than the span go, but for the last point before it, whose value
    /// held when the span began (the newest point stays however old: it is the value held now).
    fn expire(&mut self, now: u32, span: u32, slabs: &mut Slabs) {
        let oldest = now.saturating_sub(span);
        let held = usize::from(self.points);
        let points = slabs.points(self.slot);
        // Gone through from the front rather than searched: mostly the second point is still
        // within the span, and a search would read the cache lines of the whole slot.
        let gone = points.get(1..held).map_or(0, |after_first| {
            after_first.iter().take_while(|p| p.at() <= oldest).count()
        });
        if gone > 0 {
            points.copy_within(gone..held, 0);
            self.points -= gone as u16;
        }
        let held = usize::from(self.events);
        let events = slabs.events(self.slot);
        let gone = events[..held].iter().take_while(|e| e.at < oldest).count();
        if gone > 0 {
            events.copy_within(gone..held, 0);
            self.events -= gone as u8;
        }
    }

    /// Adds the newest point. When the slot is full, a quarter of its points go first: those
    /// whose neighbours are closest together for their age (never two side by side, never the
    /// oldest or the newest), so that the points thin out geometrically with age while the
    /// oldest still reaches back the span. A quarter at a time, the points are gone through once
    /// every few changes rather than at each.
    fn push(&mut self, sample: Sample, slabs: &mut Slabs) {
        let mut held = usize::from(self.points);
        if held == slabs.room {
            held = slabs.thin(self.slot, sample.at());
        }
        slabs.points(self.slot)[held] = sample;
        self.points = held as u16 + 1;
    }

    /// Every time kept, `shift` seconds back, but those of the slabs: see
    /// [`Slabs::moved_back`].
    pub(super) fn rebase(&mut self, shift: u32) {
        if let Some(gone) = &mut self.gone_at {
            *gone = gone.saturating_sub(shift);
        }
    }

    fn event(&mut self, at: u32, what: What, slabs: &mut Slabs) {
        let events = slabs.events(self.slot);
        let mut held = usize::from(self.events);
        if held == events.len() {
            events.copy_within(1.., 0);
            held -= 1;
        }
        events[held] = Event { at, what };
        self.events = held as u8 + 1;
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

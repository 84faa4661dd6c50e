//! Each symbol's recent past, kept in memory and bounded by construction: a few dozen points of
//! its recorded values, thinned out with age so that they reach back the configured span, and
//! the events read from them. The refresh loop records each publication; requests read it. Pure:
//! the time is passed in, and nothing of it is written back to Redis.

mod track;

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::proposal::{Action, FIELDS, Field, KNOWN_ACTIONS, Proposal};
use crate::snapshot::Snapshot;
use crate::view;
use track::{Name, Slabs, Track};

/// The values a point records, each with the number of steps per unit it is kept to: four
/// decimals for the kill score and its components (0 to 3.2767: the publisher's range is 0 to 2),
/// two for net R (±327.67). With its time and action a point is 16 bytes; kept as `f64`s, it
/// would be 60.
const RECORDED: [(Field, f64); 6] = [
    (Field::KillScore, 10_000.0),
    (Field::KRegimeFlip, 10_000.0),
    (Field::KSigmaSpike, 10_000.0),
    (Field::KTsDrop, 10_000.0),
    (Field::KAgePenalty, 10_000.0),
    (Field::RNet, 100.0),
];
/// The kill score's place in [`RECORDED`].
const KILL_SCORE: usize = 0;

/// Events kept per symbol, the newest; older ones go first, as do those beyond the span.
const EVENTS_PER_SYMBOL: usize = 8;
/// A point's time is kept in 24 bits, whole seconds since the history's epoch (194 days); the
/// epoch moves forward before a time would need more, by the span and a day to spare.
const MAX_TICK: u32 = (1 << 24) - 1;
const DAY: u32 = 86_400;
/// Distinct actions named in the history; further ones are kept as the publisher's `OTHER`.
const MAX_ACTIONS: usize = 64;
/// Values in a row's kill-score trend: the page's sparkline and `status`'s column.
pub(crate) const TREND_SLOTS: usize = 24;

/// How much to keep: at most `points` per symbol, spread over `max_age`; off when either is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub points: usize,
    pub max_age: Duration,
}

impl Settings {
    pub fn off() -> Settings {
        Settings {
            points: 0,
            max_age: Duration::ZERO,
        }
    }

    fn enabled(self) -> bool {
        self.points > 0 && !self.max_age.is_zero()
    }

    /// How long anything of a symbol's past is kept (its plans too): zero when off.
    pub fn kept_for(self) -> Duration {
        if self.enabled() {
            self.max_age
        } else {
            Duration::ZERO
        }
    }
}

/// Every symbol's history, shared between the refresh loop that records it and the requests
/// that read it; a lock rather than a copy per publication, which would hold every symbol's
/// points twice.
#[derive(Clone, Debug)]
pub struct Shared(Arc<RwLock<History>>);

impl Shared {
    pub fn new(settings: Settings) -> Shared {
        Shared(Arc::new(RwLock::new(History::new(settings))))
    }

    /// A history that keeps nothing.
    pub fn off() -> Shared {
        Shared::new(Settings::off())
    }

    /// Records what `snapshot` holds at `now_unix`: of every symbol, or only of those `changed`
    /// when the publication changed no other since the last one recorded.
    pub(crate) fn record(&self, snapshot: &Snapshot, changed: Option<&[String]>, now_unix: f64) {
        let mut history = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match changed {
            None => history.record(snapshot, now_unix),
            Some(symbols) => history.record_changed(snapshot, symbols, now_unix),
        }
    }

    /// The history as it stands; held only while a request reads it.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, History> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The tracks of every symbol seen within the span, gone ones included, sorted by symbol.
#[derive(Debug)]
pub(crate) struct History {
    settings: Settings,
    tracks: Vec<Track>,
    /// The tracks' symbols, one after another in the tracks' order: each publication compares
    /// its symbols with these in that order, and ten thousand names in a row stay in the caches
    /// where ten thousand boxes spread over the heap would each be a miss.
    names: String,
    /// Times are kept as whole seconds since this Unix time.
    epoch: f64,
    /// The action names points and events refer to by index (0 is no action).
    actions: Vec<Box<str>>,
    /// A full read was recorded: symbols new after it appeared, rather than being first seen.
    read_once: bool,
    slabs: Slabs,
}

impl History {
    fn new(settings: Settings) -> History {
        History {
            settings,
            tracks: Vec::new(),
            names: String::new(),
            epoch: f64::NAN,
            // The known actions take the indexes after 0 in their order, found without a search.
            actions: KNOWN_ACTIONS.iter().map(|&name| name.into()).collect(),
            read_once: false,
            slabs: Slabs::new(settings.points),
        }
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    /// Takes a publication's proposals: a point for each whose values moved, the events of what
    /// changed, and the symbols gone since the last one.
    fn record(&mut self, snapshot: &Snapshot, now_unix: f64) {
        let Some((now, span)) = self.clock(now_unix) else {
            return;
        };
        let read_once = self.read_once;
        let mut arrived = Vec::new();
        let mut next = 0;
        let mut any_gone = false;
        for proposal in &snapshot.proposals {
            let sample = Sample::of(proposal, now, &mut self.actions);
            // Most publications hold the symbols the last one held: an equal name is the one
            // comparison most symbols take.
            loop {
                let symbol = proposal.symbol.as_str();
                match self.tracks.get_mut(next) {
                    Some(track) if track.name.of(&self.names) == symbol => {
                        track.observe(proposal, sample, now_unix, now, span, &mut self.slabs);
                        next += 1;
                    }
                    Some(track) if track.name.of(&self.names) < symbol => {
                        track.vanish(now, &mut self.slabs);
                        any_gone = true;
                        next += 1;
                        continue;
                    }
                    _ => arrived.push((
                        symbol,
                        Track::new(proposal, sample, now_unix, now, read_once, &mut self.slabs),
                    )),
                }
                break;
            }
        }
        for track in &mut self.tracks[next..] {
            track.vanish(now, &mut self.slabs);
            any_gone = true;
        }
        if !arrived.is_empty() || (any_gone && self.tracks.iter().any(|t| t.forgotten(now, span))) {
            self.relay(arrived, now, span);
        }
        self.read_once |= snapshot.last_success.is_some();
    }

    /// Takes the proposals of the `changed` symbols in a publication that changed no other: an
    /// announced change costs its symbols, not a walk through every track. Those gone are
    /// forgotten at the next full record.
    fn record_changed(&mut self, snapshot: &Snapshot, changed: &[String], now_unix: f64) {
        let Some((now, span)) = self.clock(now_unix) else {
            return;
        };
        let mut changed: Vec<&str> = changed.iter().map(String::as_str).collect();
        changed.sort_unstable();
        changed.dedup();
        let proposals = &snapshot.proposals;
        let mut arrived = Vec::new();
        for symbol in changed {
            let proposal = proposals
                .binary_search_by(|p| p.symbol.as_str().cmp(symbol))
                .ok()
                .map(|index| &*proposals[index]);
            let track = self
                .tracks
                .binary_search_by(|t| t.name.of(&self.names).cmp(symbol))
                .ok();
            let Some(proposal) = proposal else {
                if let Some(index) = track {
                    self.tracks[index].vanish(now, &mut self.slabs);
                }
                continue;
            };
            let sample = Sample::of(proposal, now, &mut self.actions);
            match track {
                Some(index) => {
                    let track = &mut self.tracks[index];
                    track.observe(proposal, sample, now_unix, now, span, &mut self.slabs);
                }
                None => {
                    let appeared = self.read_once;
                    let track =
                        Track::new(proposal, sample, now_unix, now, appeared, &mut self.slabs);
                    arrived.push((proposal.symbol.as_str(), track));
                }
            }
        }
        if !arrived.is_empty() {
            self.relay(arrived, now, span);
        }
    }

    /// The time of a record at `now_unix` and the span in the history's ticks, the epoch set or
    /// moved on as needed; `None` when the history is off.
    fn clock(&mut self, now_unix: f64) -> Option<(u32, u32)> {
        if !self.settings.enabled() {
            return None;
        }
        if self.epoch.is_nan() {
            self.epoch = now_unix.floor();
        }
        let span = self.ticks(self.settings.max_age);
        let mut now = self.tick(now_unix);
        if now > MAX_TICK - span - DAY {
            self.rebase(now - span - DAY);
            now = self.tick(now_unix);
        }
        Some((now, span))
    }

    /// Lays the tracks and their names out anew: with the `arrived` ones in their places by
    /// symbol, and without those forgotten at `now`, whose slots are freed.
    fn relay(&mut self, arrived: Vec<(&str, Track)>, now: u32, span: u32) {
        let old_names = std::mem::take(&mut self.names);
        let old = std::mem::take(&mut self.tracks);
        let (tracks, names) = (&mut self.tracks, &mut self.names);
        tracks.reserve(old.len() + arrived.len());
        names.reserve(old_names.len() + arrived.iter().map(|(new, _)| new.len()).sum::<usize>());
        let mut arrived = arrived.into_iter().peekable();
        let mut lay = |symbol: &str, mut track: Track| {
            track.name = Name::appended(symbol, names);
            tracks.push(track);
        };
        for track in old {
            let symbol = track.name.of(&old_names);
            while let Some((new, arrival)) = arrived.next_if(|(new, _)| *new < symbol) {
                lay(new, arrival);
            }
            if track.forgotten(now, span) {
                self.slabs.release(&track);
            } else {
                lay(symbol, track);
            }
        }
        for (new, arrival) in arrived {
            lay(new, arrival);
        }
    }

    /// The bytes the history holds: its tracks, their names and the slabs (the allocator's own
    /// overhead aside).
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.tracks.capacity() * size_of::<Track>()
            + self.names.capacity()
            + self.actions.len() * size_of::<Box<str>>()
            + self.actions.iter().map(|name| name.len()).sum::<usize>()
            + self.slabs.held_bytes()
    }

    fn tick(&self, unix: f64) -> u32 {
        (unix - self.epoch).clamp(0.0, f64::from(u32::MAX)) as u32
    }

    fn ticks(&self, span: Duration) -> u32 {
        span.as_secs().min(u64::from(DAY)) as u32
    }

    fn unix(&self, tick: u32) -> f64 {
        self.epoch + f64::from(tick)
    }

    /// Moves the epoch `shift` seconds forward, and every time kept back by as much.
    fn rebase(&mut self, shift: u32) {
        self.epoch += f64::from(shift);
        self.slabs.moved_back(shift);
        for track in &mut self.tracks {
            track.rebase(shift);
        }
    }

    fn action_name(&self, action: u8) -> Option<&str> {
        let index = usize::from(action).checked_sub(1)?;
        self.actions.get(index).map(|name| &**name)
    }

    fn track(&self, symbol: &str) -> Option<&Track> {
        let index = self
            .tracks
            .binary_search_by(|t| t.name.of(&self.names).cmp(symbol))
            .ok()?;
        Some(&self.tracks[index])
    }

    /// The symbol's points and events, oldest first, as the view tells them; `None` for a symbol
    /// not seen within the span.
    pub(crate) fn told(&self, symbol: &str) -> Option<(Vec<view::Point>, Vec<view::Event>)> {
        let track = self.track(symbol)?;
        let points = track
            .points(&self.slabs)
            .iter()
            .map(|point| view::Point {
                timestamp: self.unix(point.at()),
                action: self.action_name(point.action()).map(str::to_owned),
                values: RECORDED
                    .iter()
                    .zip(point.values)
                    .map(|((field, steps), value)| {
                        (
                            FIELDS[*field as usize].name.to_owned(),
                            f64::from(value) / steps,
                        )
                    })
                    .collect(),
            })
            .collect();
        let events = track
            .events(&self.slabs)
            .iter()
            .map(|event| event.told(self.unix(event.at), |a| self.action_name(a)))
            .collect();
        Some((points, events))
    }

    /// The symbol's kill score at [`TREND_SLOTS`] evenly spaced times from its oldest point
    /// within the span to `now_unix`, the last one the newest value; empty without points.
    pub(crate) fn trend(&self, symbol: &str, now_unix: f64) -> Vec<f64> {
        let Some(track) = self.track(symbol) else {
            return Vec::new();
        };
        let points = track.points(&self.slabs);
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return Vec::new();
        };
        let now = self.tick(now_unix).max(last.at());
        let start = now
            .saturating_sub(self.ticks(self.settings.max_age))
            .max(first.at());
        let steps = RECORDED[KILL_SCORE].1;
        let mut points = points.iter().peekable();
        let mut value = f64::from(first.values[KILL_SCORE]) / steps;
        (1..=TREND_SLOTS)
            .map(|slot| {
                let at =
                    start + ((u64::from(now - start) * slot as u64) / TREND_SLOTS as u64) as u32;
                while let Some(point) = points.next_if(|p| p.at() <= at) {
                    value = f64::from(point.values[KILL_SCORE]) / steps;
                }
                value
            })
            .collect()
    }
}

/// One moment of a symbol's recorded values, as kept: fixed-point numbers, and the time (24
/// bits) and action index (8 bits) in one word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sample {
    stamp: u32,
    values: [i16; RECORDED.len()],
}

impl Sample {
    fn of(proposal: &Proposal, at: u32, actions: &mut Vec<Box<str>>) -> Sample {
        Sample {
            stamp: at << 8 | u32::from(action_index(&proposal.action, actions)),
            values: RECORDED.map(|(field, steps)| {
                let scaled = proposal.number(field).unwrap_or(0.0) * steps;
                // Rounded half away from zero as `f64::round` would, which is a call into libm
                // on x86-64's baseline, six times a symbol. The cast saturates, and makes NaN 0
                // (bad values were already made 0 by the parsing).
                (scaled + 0.5f64.copysign(scaled)) as i16
            }),
        }
    }

    fn at(&self) -> u32 {
        self.stamp >> 8
    }

    fn action(&self) -> u8 {
        self.stamp as u8
    }

    fn moved_back(&mut self, shift: u32) {
        self.stamp = self.at().saturating_sub(shift) << 8 | u32::from(self.action());
    }

    fn kill_score(&self) -> f64 {
        f64::from(self.values[KILL_SCORE]) / RECORDED[KILL_SCORE].1
    }

    fn moved_from(&self, other: &Sample) -> bool {
        self.values != other.values || self.action() != other.action()
    }
}

/// The index of an action's name in `actions`, added when new; 0 for no action.
fn action_index(action: &Action, actions: &mut Vec<Box<str>>) -> u8 {
    let name = match action {
        Action::Missing => return 0,
        Action::Known(index) => return *index as u8 + 1,
        Action::Unknown(name) => name.as_str(),
    };
    let name = match actions.iter().position(|known| **known == *name) {
        Some(index) => return index as u8 + 1,
        None if actions.len() + 1 < MAX_ACTIONS => name,
        None => crate::proposal::OTHER_ACTION,
    };
    match actions.iter().position(|known| **known == *name) {
        Some(index) => index as u8 + 1,
        None => {
            actions.push(name.into());
            actions.len() as u8
        }
    }
}

#[cfg(test)]
mod tests;

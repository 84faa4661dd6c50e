//! The exposition body kept in pieces from one publication to the next: each per-symbol family's
//! samples in blocks of consecutive symbols, plain and compressed, so that a new snapshot renders
//! and compresses again only the blocks whose proposals changed. The pieces themselves are
//! `piece`'s, what the lines say `render`'s, the gzip framing `gzip`'s; what a scrape is answered
//! with is `published`'s.

mod piece;

use std::iter;
use std::sync::Arc;

use bytes::Bytes;

use crate::exposition::{EscapedLabel, Format, Writer};
use crate::gzip::{Deflated, Deflater};
use crate::proposal::Proposal;
use crate::render::{SYMBOL_FAMILIES, SymbolFamily};
use crate::snapshot::Snapshot;
use piece::{Both, HEADERS, Piece, exporter_pieces};

/// Symbols per block: a change renders and compresses its block in every family (some 1.5 KiB
/// of text per symbol), while smaller pieces compress worse and make more chunks to send; at 256
/// the gzip body is 3.5% larger than compressed whole (2% at 512, for twice the cost of a change).
const BLOCK: usize = 256;

/// Snapshots of more symbols than this are held compressed only (at this size some 3 MiB of
/// text, eight times its compressed size): a scrape that does not take gzip inflates the body as
/// it is sent. Prometheus takes gzip, so at ten thousand symbols the text would be 15 MiB held
/// for the odd `curl`.
pub(crate) const PLAIN_HELD_UP_TO: usize = 2_000;

/// Blocks whose compressed samples of a family are sent as one chunk (some 30 KiB): a block's
/// compress to a couple of kilobytes, and a scrape takes a write per handful of chunks. A change
/// copies its group again, in each family.
const GROUP: usize = 16;

/// What a publication does with the data ages of the symbols it does not render again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ages {
    /// Renders them at its own time: a full refresh, which read every symbol.
    Renewed,
    /// Keeps them as the last full refresh rendered them: changes applied between two full
    /// refreshes, which re-read only their own symbols. A data age is that of the last read of
    /// its symbol, as when polling.
    Kept,
}

/// The pieces of one snapshot's body.
#[derive(Debug)]
pub(crate) struct Segments {
    /// Symbols per block (tests use small blocks to have many).
    block: usize,
    /// The most symbols whose plain text is held (tests hold none, or every).
    plain_up_to: usize,
    /// Whether these pieces hold their plain text.
    hold_plain: bool,
    /// Runs of the snapshot's proposals, in order, that together hold them all.
    blocks: Vec<Block>,
    /// Each family's compressed samples, the blocks' pieces [`GROUP`] blocks at a time copied
    /// together.
    groups: [Vec<Deflated>; SYMBOL_FAMILIES.len()],
    /// The time the data ages were rendered at, but those of the blocks rendered since the
    /// last full refresh.
    now_unix: f64,
    /// The exporter's refresh metrics, which end the body; rendered anew each time.
    exporter: Vec<Both>,
}

#[derive(Clone, Debug)]
struct Block {
    /// How many proposals, following those of the blocks before.
    len: usize,
    /// Each per-symbol family's samples of these proposals, in [`SYMBOL_FAMILIES`]' order; empty
    /// where none of them has one.
    pieces: [Piece; SYMBOL_FAMILIES.len()],
}

impl Segments {
    /// Before any snapshot: nothing to start from.
    pub(crate) fn new() -> Segments {
        Segments::with_sizes(BLOCK, PLAIN_HELD_UP_TO)
    }

    fn with_sizes(block: usize, plain_up_to: usize) -> Segments {
        Segments {
            block,
            plain_up_to,
            hold_plain: true,
            blocks: Vec::new(),
            groups: Default::default(),
            now_unix: f64::NAN,
            exporter: Vec::new(),
        }
    }

    /// The pieces of `snapshot`'s body rendered at `now_unix`, starting from these, which were
    /// rendered from `previous` (the proposals of the snapshot before). A block whose proposals
    /// all render as they did is kept (its data ages too, unless they are `Renewed`); the
    /// changed ones, with the symbols that appeared among them, are rendered again and cut
    /// into blocks anew.
    pub(crate) fn next(
        &self,
        previous: &[Arc<Proposal>],
        snapshot: &Snapshot,
        now_unix: f64,
        ages: Ages,
    ) -> Segments {
        let proposals = &snapshot.proposals;
        let mut deflater = Deflater::new();
        let renew = ages == Ages::Renewed && now_unix.to_bits() != self.now_unix.to_bits();
        let hold_plain = proposals.len() <= self.plain_up_to;
        let mut next = Segments {
            hold_plain,
            blocks: Vec::with_capacity(proposals.len() / self.block + 1),
            now_unix: if ages == Ages::Renewed || self.blocks.is_empty() {
                now_unix
            } else {
                self.now_unix
            },
            exporter: exporter_pieces(snapshot, &mut deflater, hold_plain),
            ..Segments::with_sizes(self.block, self.plain_up_to)
        };
        // Where the proposals not yet in a block, which are to be rendered, start.
        let mut changed_from: Option<usize> = None;
        let (mut old_at, mut new_at) = (0, 0);
        for (index, block) in self.blocks.iter().enumerate() {
            let old = &previous[old_at..old_at + block.len];
            old_at += block.len;
            // A block holds the symbols from its first on, up to the next block's first. Were
            // the proposals not sorted (a snapshot's are), the `max` keeps the ranges in order,
            // and the comparison below renders again what moved.
            let new_end = match self.blocks.get(index + 1) {
                Some(_) => proposals.partition_point(|p| p.symbol < previous[old_at].symbol),
                None => proposals.len(),
            }
            .max(new_at);
            let new = &proposals[new_at..new_end];
            // Equal proposals render alike: their numbers are finite and never -0 (see
            // `values::parse_number`), the only floats that `==` takes for others printed apart.
            // A block without its text is rendered again once the body's text is to be held.
            let same = old.len() == new.len()
                && block
                    .pieces
                    .iter()
                    .all(|piece| piece.holds_plain(hold_plain))
                && old
                    .iter()
                    .zip(new)
                    .all(|(a, b)| Arc::ptr_eq(a, b) || a == b);
            // A short changed run takes the block after it along, so blocks do not dwindle.
            let short = changed_from.is_some_and(|from| new_at - from < self.block / 2);
            if same && !short {
                if let Some(from) = changed_from.take() {
                    next.render_run(&proposals[from..new_at], now_unix, &mut deflater);
                }
                let renewed_at = renew.then_some(now_unix);
                let kept = next.kept(block, new, renewed_at, &mut deflater);
                next.blocks.push(kept);
            } else {
                changed_from.get_or_insert(new_at);
            }
            new_at = new_end;
        }
        if new_at < proposals.len() {
            // No blocks before: everything is new.
            changed_from.get_or_insert(new_at);
        }
        if let Some(from) = changed_from {
            next.render_run(&proposals[from..], now_unix, &mut deflater);
        }
        next.groups = std::array::from_fn(|family| self.next_groups(&next.blocks, family));
        next
    }

    /// `family`'s groups for `blocks`: those of these segments where their blocks' pieces are
    /// the same, the others copied together anew.
    fn next_groups(&self, blocks: &[Block], family: usize) -> Vec<Deflated> {
        let same = |a: &Piece, b: &Piece| {
            let (a, b) = (a.deflated.bytes(), b.deflated.bytes());
            a.len() == b.len() && (a.is_empty() || a.as_ptr() == b.as_ptr())
        };
        blocks
            .chunks(GROUP)
            .enumerate()
            .map(|(group, blocks)| {
                let start = group * GROUP;
                let before = self.blocks.get(start..).unwrap_or_default();
                let kept = before.len().min(GROUP) == blocks.len()
                    && before
                        .iter()
                        .zip(blocks)
                        .all(|(a, b)| same(&a.pieces[family], &b.pieces[family]));
                match self.groups[family].get(group) {
                    Some(deflated) if kept => deflated.clone(),
                    _ => {
                        let pieces: Vec<&Deflated> =
                            blocks.iter().map(|b| &b.pieces[family].deflated).collect();
                        Deflated::concat(&pieces)
                    }
                }
            })
            .collect()
    }

    /// `block`, whose proposals are now `proposals` and render as before, with its data ages
    /// rendered again at `renewed_at` if given, and without its plain text unless held.
    fn kept(
        &self,
        block: &Block,
        proposals: &[Arc<Proposal>],
        renewed_at: Option<f64>,
        deflater: &mut Deflater,
    ) -> Block {
        let mut kept = block.clone();
        for (family, piece) in SYMBOL_FAMILIES.iter().zip(&mut kept.pieces) {
            if !self.hold_plain {
                piece.plain = Bytes::new();
            }
            if let Some(now_unix) = renewed_at
                && family.changes_with_time()
                && !piece.is_empty()
            {
                let symbols = escaped(proposals);
                *piece = self.render_piece(family, proposals, &symbols, now_unix, deflater);
            }
        }
        kept
    }

    /// Renders `proposals` as the blocks that follow those so far, cut into blocks of about
    /// the block size (a change of one symbol keeps its block whole rather than split it).
    fn render_run(&mut self, proposals: &[Arc<Proposal>], now_unix: f64, deflater: &mut Deflater) {
        let count = ((proposals.len() + self.block / 2) / self.block).max(1);
        for i in 0..count {
            let run = &proposals[proposals.len() * i / count..proposals.len() * (i + 1) / count];
            if run.is_empty() {
                continue;
            }
            let symbols = escaped(run);
            let pieces = std::array::from_fn(|family| {
                self.render_piece(&SYMBOL_FAMILIES[family], run, &symbols, now_unix, deflater)
            });
            self.blocks.push(Block {
                len: run.len(),
                pieces,
            });
        }
    }

    /// The families announced: those with samples, and those always announced.
    fn announced(&self) -> impl Iterator<Item = usize> {
        SYMBOL_FAMILIES
            .iter()
            .enumerate()
            .filter(|(family, symbol_family)| {
                symbol_family.always_announced()
                    || self.blocks.iter().any(|b| !b.pieces[*family].is_empty())
            })
            .map(|(family, _)| family)
    }

    /// The samples of `family` for `proposals`, labelled by `symbols`, their escaped symbols.
    fn render_piece(
        &self,
        family: &SymbolFamily,
        proposals: &[Arc<Proposal>],
        symbols: &[EscapedLabel<'_>],
        now_unix: f64,
        deflater: &mut Deflater,
    ) -> Piece {
        let mut writer = Writer::new(Format::Text, proposals.len() * 64);
        let mut samples = writer.samples(&family.family);
        for (proposal, symbol) in proposals.iter().zip(symbols) {
            family.write(&mut samples, proposal, symbol, now_unix);
        }
        Piece::new(writer.into_bytes(), deflater, self.hold_plain)
    }

    /// One format's body, in order, as a scrape sends it plain before its tail: each announced
    /// family's header and its blocks' samples, then the exporter's refresh metrics; `None`
    /// when the body is held compressed only.
    pub(crate) fn plain(&self, format: Format) -> Option<impl Iterator<Item = &Bytes>> {
        let pieces = self
            .announced()
            .flat_map(move |family| {
                let samples = self.blocks.iter().map(move |b| &b.pieces[family]);
                iter::once(HEADERS[family].get(format)).chain(samples)
            })
            .chain(self.exporter.iter().map(move |run| run.get(format)))
            .map(|piece| &piece.plain)
            .filter(|plain| !plain.is_empty());
        self.hold_plain.then_some(pieces)
    }

    /// The same body compressed, the blocks' samples a group at a time.
    pub(crate) fn deflated(&self, format: Format) -> impl Iterator<Item = &Deflated> {
        self.announced()
            .flat_map(move |family| {
                iter::once(&HEADERS[family].get(format).deflated).chain(&self.groups[family])
            })
            .chain(
                self.exporter
                    .iter()
                    .map(move |run| &run.get(format).deflated),
            )
            .filter(|deflated| !deflated.bytes().is_empty())
    }
}

fn escaped(proposals: &[Arc<Proposal>]) -> Vec<EscapedLabel<'_>> {
    proposals
        .iter()
        .map(|p| EscapedLabel::new(&p.symbol))
        .collect()
}

#[cfg(test)]
mod tests;

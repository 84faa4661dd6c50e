//! The pieces a body is kept in: a run of bytes compressed on its own and, unless the body is
//! held compressed only, plain; a run in each format, shared where they agree; the per-symbol
//! families' headers, compressed once, and the exporter's refresh metrics. Which pieces make a
//! body, and which are kept from one publication to the next, is `segments`'.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::exposition::{Format, Segment, Writer};
use crate::gzip::{Deflated, Deflater};
use crate::render::{self, SYMBOL_FAMILIES, SymbolFamily};
use crate::snapshot::Snapshot;

/// Runs of the exporter metrics that both formats share, when shorter than this, are copied into
/// each format's own runs: below it, a separate chunk costs more than the copy.
pub(super) const MIN_SHARED: usize = 16 * 1024;

/// A run of a body, compressed on its own (see [`Deflated`]), and plain unless the body is held
/// compressed only.
#[derive(Clone, Debug, Default)]
pub(super) struct Piece {
    pub(super) plain: Bytes,
    pub(super) deflated: Deflated,
}

impl Piece {
    /// Nothing to send for no bytes, not even an empty deflate block.
    pub(super) fn new(mut plain: Vec<u8>, deflater: &mut Deflater, hold_plain: bool) -> Piece {
        if plain.is_empty() {
            return Piece::default();
        }
        let deflated = deflater.deflate(&plain);
        if !hold_plain {
            return Piece {
                plain: Bytes::new(),
                deflated,
            };
        }
        // The buffer grew by doubling, and a block's pieces are held until its symbols change.
        plain.shrink_to_fit();
        Piece {
            plain: plain.into(),
            deflated,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.deflated.plain_len() == 0
    }

    /// Whether the plain text is held, or is to be for `hold_plain`.
    pub(super) fn holds_plain(&self, hold_plain: bool) -> bool {
        !hold_plain || self.is_empty() || !self.plain.is_empty()
    }
}

/// A run of a body in each format: the same piece twice where the formats agree.
#[derive(Clone, Debug)]
pub(super) struct Both {
    pub(super) text: Piece,
    pub(super) open_metrics: Piece,
}

impl Both {
    pub(super) fn get(&self, format: Format) -> &Piece {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.open_metrics,
        }
    }
}

/// The per-symbol families' headers, which never change: compressed once for the process.
pub(super) static HEADERS: LazyLock<Vec<Both>> = LazyLock::new(|| {
    let mut deflater = Deflater::new();
    let mut header = |family: &SymbolFamily, format| {
        let mut writer = Writer::new(format, 256);
        writer.family(&family.family);
        Piece::new(writer.into_bytes(), &mut deflater, true)
    };
    SYMBOL_FAMILIES
        .iter()
        .map(|family| Both {
            text: header(family, Format::Text),
            open_metrics: header(family, Format::OpenMetrics),
        })
        .collect()
});

/// The exporter's refresh metrics in each format, the runs they share compressed once.
pub(super) fn exporter_pieces(
    snapshot: &Snapshot,
    deflater: &mut Deflater,
    hold_plain: bool,
) -> Vec<Both> {
    let body = render::exporter_metrics(snapshot);
    let segments = body.segments(MIN_SHARED);
    let text = body.text;
    segments
        .into_iter()
        .map(|segment| match segment {
            Segment::Shared(range) => {
                let piece = Piece::new(text[range].to_vec(), deflater, hold_plain);
                Both {
                    text: piece.clone(),
                    open_metrics: piece,
                }
            }
            Segment::Own { text, open_metrics } => Both {
                text: Piece::new(text, deflater, hold_plain),
                open_metrics: Piece::new(open_metrics, deflater, hold_plain),
            },
        })
        .collect()
}

//! What the HTTP server serves until the next refresh: one snapshot, its exposition body in each
//! format (plain and gzip-framed), every scrape's parts in the order sent, and the page made from
//! it on demand. Built by the refresh loop off the async threads, then only read; it never
//! reaches back to Redis, and how a request is negotiated and written is `server`'s.

mod tail;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::apply::{ApplyPublication, ApplyView};
use crate::exposition::Format;
use crate::gzip::{GzipHead, Inflating};
use crate::history;
use crate::page::Page;
use crate::process;
use crate::proposal::Proposal;
use crate::segments::{Ages, Segments};
use crate::snapshot::Snapshot;
use crate::view::{Plan, Row, Story};
pub(crate) use tail::HttpStats;

/// Plain bodies up to this size are sent as one chunk, copied together once per publication:
/// a small body in dozens of pieces costs a scrape more than the copy (some 10% of the
/// scrapes per second at 100 symbols). Larger ones stay in their pieces, which the next
/// publication shares: at 1,000 symbols (1.5 MiB) the copy took half of the 6 ms that
/// applying one announced change took, and a scrape of so large a body takes several writes
/// whether in one chunk or in pieces.
const ONE_CHUNK: usize = 512 * 1024;

/// One format's plain pieces, copied into one chunk when the body is small; `None` when the
/// body is held compressed only.
fn plain_chunks(segments: &Segments, format: Format) -> Option<Arc<[Bytes]>> {
    let size: usize = segments.plain(format)?.map(Bytes::len).sum();
    if size > ONE_CHUNK {
        return Some(segments.plain(format)?.cloned().collect());
    }
    let mut chunk = Vec::with_capacity(size);
    for piece in segments.plain(format)? {
        chunk.extend_from_slice(piece);
    }
    Some(Arc::new([Bytes::from(chunk)]))
}

#[derive(Debug)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    /// The body's pieces, which the next publication starts from.
    segments: Segments,
    text: Body,
    open_metrics: Body,
    /// When the snapshot was rendered, which the page's data ages count from.
    pub rendered_at_unix: f64,
    /// The page at `/` and its JSON document, made on the first request for either: a large
    /// page costs as much as the metrics, and most refreshes are never looked at.
    page: OnceLock<Page>,
    /// Every symbol's recent past, recorded as each publication is sent; shared by all.
    pub(crate) history: history::Shared,
}

/// One format's body, which a scrape sends before its tail: the plain bytes and the gzip head,
/// both in reference-counted chunks; a large body is held compressed only, and a plain scrape
/// of it inflates the gzip head's chunks.
#[derive(Debug)]
pub(crate) struct Body {
    pub plain: Option<Arc<[Bytes]>>,
    pub gzip: GzipHead,
}

/// What one scrape sends, in order: the body rendered at the refresh, then what was made since
/// (the apply streams' families and the scrape-time tail). Plain, or one gzip member throughout.
pub(crate) struct Scrape {
    pub(crate) body: Refreshed,
    pub(crate) after: Vec<Bytes>,
}

/// The refresh's body as a scrape sends it.
pub(crate) enum Refreshed {
    /// Shared with the publication, sent as they are.
    Chunks(Arc<[Bytes]>),
    /// Held compressed only and asked for plain: inflated as it is sent.
    Inflating(Inflating),
}

impl Published {
    /// Renders and compresses once, so that every scrape until the next refresh only copies
    /// reference-counted pointers.
    pub fn new(snapshot: Snapshot, now_unix: f64, history: history::Shared) -> Published {
        let segments = Segments::new();
        Published::from_segments(&segments, &[], snapshot, now_unix, Ages::Renewed, history)
    }

    /// The publication of `snapshot`, which follows this one: only the pieces of the body
    /// whose proposals changed are rendered and compressed again, the others are shared.
    pub(crate) fn next(&self, snapshot: Snapshot, now_unix: f64, ages: Ages) -> Published {
        let previous = &self.snapshot.proposals;
        let history = self.history.clone();
        Published::from_segments(&self.segments, previous, snapshot, now_unix, ages, history)
    }

    /// The formats share the pieces their bytes have in common, the bulk of the body, plain and
    /// compressed: a second format costs its few headers.
    fn from_segments(
        previous: &Segments,
        rendered: &[Arc<Proposal>],
        snapshot: Snapshot,
        now_unix: f64,
        ages: Ages,
        history: history::Shared,
    ) -> Published {
        let segments = previous.next(rendered, &snapshot, now_unix, ages);
        let body = |format| Body {
            plain: plain_chunks(&segments, format),
            gzip: GzipHead::new(segments.deflated(format).cloned()),
        };
        Published {
            text: body(Format::Text),
            open_metrics: body(Format::OpenMetrics),
            snapshot: Arc::new(snapshot),
            segments,
            rendered_at_unix: now_unix,
            page: OnceLock::new(),
            history,
        }
    }

    /// A scrape in `format`, gzip-compressed or plain: this body, then `apply`'s families as last
    /// published, then the tail of the values read now. Only the tail (and, with gzip, the
    /// member's end) is made per scrape; the rest is shared.
    pub(crate) fn scrape(
        &self,
        apply: &ApplyPublication,
        format: Format,
        gzip: bool,
        http: &HttpStats,
    ) -> Scrape {
        let cache_age = self.snapshot.cache_age(Instant::now());
        let tail = tail::scrape_tail(format, cache_age, http, process::recent().as_ref());
        let body = self.body(format);
        if gzip {
            let apply = apply.gzip(format);
            let end = body.gzip.finish_after(apply, &tail);
            Scrape {
                body: Refreshed::Chunks(Arc::clone(&body.gzip.chunks)),
                after: vec![apply.bytes().clone(), end.into()],
            }
        } else {
            let after = vec![apply.metrics(format).clone(), tail.into()];
            let body = match &body.plain {
                Some(plain) => Refreshed::Chunks(Arc::clone(plain)),
                None => Refreshed::Inflating(body.gzip.inflating()),
            };
            Scrape { body, after }
        }
    }

    pub(crate) fn body(&self, format: Format) -> &Body {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.open_metrics,
        }
    }

    /// The page, linking to the metrics at `metrics_path` (the same for every call), with the
    /// apply side as it stands at the first request after the refresh.
    pub(crate) fn page(&self, metrics_path: &str, apply: &ApplyView) -> &Page {
        self.page.get_or_init(|| {
            let now = self.rendered_at_unix;
            Page::new(&self.snapshot, now, metrics_path, apply, &self.history)
        })
    }

    /// `symbol`'s story at `now_unix`: its proposal as published, its history and the apply
    /// layer's plans for it; `None` for a symbol of which nothing is known.
    pub(crate) fn story(
        &self,
        symbol: &str,
        apply: &ApplyPublication,
        now_unix: f64,
    ) -> Option<Story> {
        let proposals = &self.snapshot.proposals;
        let history = self.history.read();
        let current = proposals
            .binary_search_by(|p| p.symbol.as_str().cmp(symbol))
            .ok()
            .map(|index| {
                let apply = apply.view.enabled.then_some(&apply.view);
                let mut row = Row::with_apply(&proposals[index], now_unix, apply);
                row.kill_score_trend = history.trend(symbol, now_unix);
                row
            });
        let max_age = history.settings().max_age.as_secs_f64();
        let told = history.told(symbol);
        drop(history);
        let redis_up = self.snapshot.redis_up;
        let plans = apply
            .plans(symbol)
            .map(|records| records.iter().map(|r| Plan::of(r, now_unix)).collect());
        Story::new(symbol, current, told, plans, redis_up, max_age, now_unix)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn decoded(body: &Body, tail: &[u8]) -> Vec<u8> {
        let member = [body.gzip.chunks.concat(), body.gzip.finish(tail)].concat();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(member.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        decoded
    }

    fn snapshot(kill_score_of_sym007: &str) -> Snapshot {
        let names: Vec<String> = (0..400).map(|i| format!("SYM{i:03}")).collect();
        let fields: &[(&str, &str)] = &[
            ("kill_score", "0.5"),
            ("computed_at_utc", "2026-01-23T00:58:58Z"),
            ("position_age_sec", "60"),
        ];
        let changed: &[(&str, &str)] = &[("kill_score", kill_score_of_sym007)];
        let hashes: Vec<(&str, &[(&str, &str)])> = names
            .iter()
            .map(|n| (n.as_str(), if n == "SYM007" { changed } else { fields }))
            .collect();
        Snapshot::of_hashes(&hashes, 1_769_130_510.0)
    }

    fn assert_served(published: &Published, snapshot: &Snapshot, now_unix: f64) {
        let body = crate::render::render(snapshot, now_unix);
        for (format, expected) in [
            (Format::Text, body.text.clone()),
            (Format::OpenMetrics, body.assembled(Format::OpenMetrics, 0)),
        ] {
            let served = published.body(format);
            let plain = served.plain.as_ref().expect("a small body is held plain");
            assert_eq!(plain.concat(), expected, "{format:?}");
            assert_eq!(
                decoded(served, b"tail\n"),
                [expected.as_slice(), b"tail\n"].concat()
            );
        }
    }

    /// Each format's chunks, plain or compressed, are its body, and the next publication shares
    /// the pieces whose symbols did not change.
    #[test]
    fn each_format_is_served_whole_plain_and_gzip_and_shared_with_the_next() {
        let first = Published::new(snapshot("0.5"), 1_769_130_510.0, history::Shared::off());
        assert_served(&first, &snapshot("0.5"), 1_769_130_510.0);
        let second = first.next(snapshot("0.9"), 1_769_130_511.0, Ages::Renewed);
        assert_served(&second, &snapshot("0.9"), 1_769_130_511.0);
        let pieces = |published: &Published| -> Vec<*const u8> {
            published
                .segments
                .plain(Format::Text)
                .unwrap()
                .map(|piece| piece.as_ptr())
                .collect()
        };
        let (before, after) = (pieces(&first), pieces(&second));
        let shared = after.iter().filter(|piece| before.contains(piece)).count();
        assert!(
            shared * 2 > after.len(),
            "{shared} of {} pieces shared",
            after.len()
        );
        // A body this small goes out as one chunk.
        assert_eq!(second.text.plain.as_ref().unwrap().len(), 1);
    }

    /// A scrape is the body, the apply streams' families and the tail, in that order; with gzip
    /// one member that inflates to the same, and without it a body held compressed inflated.
    #[test]
    fn a_scrape_is_the_body_then_the_apply_families_then_the_tail() {
        let now_unix = 1_769_130_510.0;
        let apply = ApplyPublication::new(&crate::apply::ApplyState::default());
        let http = HttpStats::default();
        let small = Published::new(snapshot("0.5"), now_unix, history::Shared::off());
        let large = Published::new(
            many(crate::segments::PLAIN_HELD_UP_TO + 1),
            now_unix,
            history::Shared::off(),
        );
        for (published, format, gzip) in [
            (&small, Format::Text, false),
            (&small, Format::OpenMetrics, true),
            (&large, Format::Text, false),
            (&large, Format::OpenMetrics, true),
        ] {
            let Scrape { body, after } = published.scrape(&apply, format, gzip, &http);
            let mut sent = match body {
                Refreshed::Chunks(chunks) => chunks.concat(),
                Refreshed::Inflating(mut inflating) => {
                    std::iter::from_fn(|| inflating.next_chunk())
                        .collect::<Vec<_>>()
                        .concat()
                }
            };
            sent.extend(after.concat());
            if gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(sent.as_slice())
                    .read_to_end(&mut plain)
                    .unwrap();
                sent = plain;
            }
            let sent = String::from_utf8(sent).unwrap();
            let rendered = crate::render::render(&published.snapshot, now_unix);
            let families = [
                rendered.assembled(format, 0),
                apply.metrics(format).to_vec(),
            ]
            .concat();
            let tail = sent
                .strip_prefix(std::str::from_utf8(&families).unwrap())
                .expect("the body, then the apply families");
            assert!(
                tail.starts_with("# HELP quantum_harvest_exporter_cache_age_seconds "),
                "then the tail: {tail:.80}"
            );
        }
    }

    fn many(count: usize) -> Snapshot {
        let names: Vec<String> = (0..count).map(|i| format!("SYM{i:05}")).collect();
        let fields: &[(&str, &str)] = &[("kill_score", "0.5")];
        let hashes: Vec<(&str, &[(&str, &str)])> =
            names.iter().map(|n| (n.as_str(), fields)).collect();
        Snapshot::of_hashes(&hashes, 1_769_130_510.0)
    }

    /// Past the size whose plain text is held, a body is held compressed only, and inflates to
    /// what a whole render writes.
    #[test]
    fn a_large_body_is_held_compressed_only() {
        let snapshot = many(crate::segments::PLAIN_HELD_UP_TO + 1);
        let published = Published::new(snapshot.clone(), 1_769_130_510.0, history::Shared::off());
        let expected = crate::render::render(&snapshot, 1_769_130_510.0).text;
        let body = published.body(Format::Text);
        assert!(body.plain.is_none());
        let mut inflating = body.gzip.inflating();
        assert_eq!(inflating.remaining(), expected.len() as u64);
        let mut plain = Vec::new();
        while let Some(chunk) = inflating.next_chunk() {
            plain.extend_from_slice(&chunk);
        }
        assert_eq!(plain, expected);
    }
}

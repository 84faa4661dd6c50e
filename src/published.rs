//! What the HTTP server serves until the next refresh: one snapshot, its exposition body in each
//! format (plain and gzip-framed), and the page made from it on demand. Built by the refresh loop
//! off the async threads, then only read; it never reaches back to Redis.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::apply::ApplyView;
use crate::exposition::{Format, Segment};
use crate::gzip::{Deflater, GzipHead};
use crate::page::Page;
use crate::render;
use crate::snapshot::Snapshot;

/// Shared runs of the body shorter than this are copied into each format instead: below it, a
/// separate chunk to send and a compressor restart cost more than the copy.
const MIN_SHARED: usize = 16 * 1024;

#[derive(Debug)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    text: Body,
    open_metrics: Body,
    /// When the snapshot was rendered, which the page's data ages count from.
    pub rendered_at_unix: f64,
    /// The page at `/` and its JSON document, made on the first request for either: a large
    /// page costs as much as the metrics, and most refreshes are never looked at.
    page: OnceLock<Page>,
}

/// One format's body, which a scrape sends before its tail: the plain bytes and the gzip head,
/// both in reference-counted chunks.
#[derive(Debug)]
pub(crate) struct Body {
    pub plain: Vec<Bytes>,
    pub gzip: GzipHead,
}

impl Published {
    /// Renders and compresses once, so that every scrape until the next refresh only copies
    /// reference-counted pointers. The formats share the runs their bytes have in common, the
    /// bulk of the body, plain and compressed: a second format costs its few headers.
    pub fn new(snapshot: Snapshot, now_unix: f64) -> Published {
        let body = render::render(&snapshot, now_unix);
        let segments = body.segments(MIN_SHARED);
        let text = Bytes::from(body.text);
        let mut deflater = Deflater::new();
        let mut text_gzip = Vec::with_capacity(segments.len());
        let mut open_metrics_gzip = Vec::with_capacity(segments.len());
        let mut open_metrics = Vec::with_capacity(segments.len());
        for segment in segments {
            match segment {
                Segment::Shared(range) => {
                    let deflated = deflater.deflate(&text[range.clone()]);
                    text_gzip.push(deflated.clone());
                    open_metrics_gzip.push(deflated);
                    open_metrics.push(text.slice(range));
                }
                Segment::Own {
                    text: text_run,
                    open_metrics: open_metrics_run,
                } => {
                    text_gzip.push(deflater.deflate(&text_run));
                    open_metrics_gzip.push(deflater.deflate(&open_metrics_run));
                    open_metrics.push(open_metrics_run.into());
                }
            }
        }
        Published {
            snapshot: Arc::new(snapshot),
            text: Body {
                plain: vec![text],
                gzip: GzipHead::new(text_gzip),
            },
            open_metrics: Body {
                plain: open_metrics,
                gzip: GzipHead::new(open_metrics_gzip),
            },
            rendered_at_unix: now_unix,
            page: OnceLock::new(),
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
        self.page
            .get_or_init(|| Page::new(&self.snapshot, self.rendered_at_unix, metrics_path, apply))
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

    /// Large enough for shared runs: each format's chunks, plain or compressed, are its body.
    #[test]
    fn each_format_is_served_whole_plain_and_gzip() {
        let names: Vec<String> = (0..400).map(|i| format!("SYM{i}")).collect();
        let fields: &[(&str, &str)] = &[
            ("kill_score", "0.5"),
            ("computed_at_utc", "2026-01-23T00:58:58Z"),
            ("position_age_sec", "60"),
        ];
        let hashes: Vec<(&str, &[(&str, &str)])> =
            names.iter().map(|n| (n.as_str(), fields)).collect();
        let snapshot = Snapshot::of_hashes(&hashes, 1_769_130_510.0);
        let body = render::render(&snapshot, 1_769_130_510.0);
        let published = Published::new(snapshot, 1_769_130_510.0);
        let open_metrics = published.body(Format::OpenMetrics);
        assert!(
            open_metrics.plain.len() > 2,
            "shares runs with the text format"
        );
        for (format, expected) in [
            (Format::Text, body.text.clone()),
            (Format::OpenMetrics, body.assembled(Format::OpenMetrics, 0)),
        ] {
            let served = published.body(format);
            assert_eq!(served.plain.concat(), expected, "{format:?}");
            assert_eq!(
                decoded(served, b"tail\n"),
                [expected.as_slice(), b"tail\n"].concat()
            );
        }
        assert_eq!(published.body(Format::Text).plain.len(), 1);
    }
}

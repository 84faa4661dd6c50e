//! What the HTTP server serves until the next refresh: one snapshot, its exposition body (plain
//! and gzip-framed), and the page made from it on demand. Built by the refresh loop off the async
//! threads, then only read; it never reaches back to Redis.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::apply::ApplyView;
use crate::gzip::GzipHead;
use crate::page::Page;
use crate::render;
use crate::snapshot::Snapshot;

#[derive(Debug)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    pub body: Bytes,
    pub body_gzip: GzipHead,
    /// When the snapshot was rendered, which the page's data ages count from.
    pub rendered_at_unix: f64,
    /// The page at `/` and its JSON document, made on the first request for either: a large
    /// page costs as much as the metrics, and most refreshes are never looked at.
    page: OnceLock<Page>,
}

impl Published {
    /// Renders and compresses once, so that every scrape until the next refresh only copies
    /// reference-counted pointers.
    pub fn new(snapshot: Snapshot, now_unix: f64) -> Published {
        let body = render::render(&snapshot, now_unix);
        let body_gzip = GzipHead::new(&body);
        Published {
            snapshot: Arc::new(snapshot),
            body: body.into(),
            body_gzip,
            rendered_at_unix: now_unix,
            page: OnceLock::new(),
        }
    }

    /// The page, linking to the metrics at `metrics_path` (the same for every call), with the
    /// apply side as it stands at the first request after the refresh.
    pub(crate) fn page(&self, metrics_path: &str, apply: &ApplyView) -> &Page {
        self.page
            .get_or_init(|| Page::new(&self.snapshot, self.rendered_at_unix, metrics_path, apply))
    }
}

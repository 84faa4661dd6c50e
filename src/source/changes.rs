//! Reads the symbols a notification named while a full read is in flight, over a clone of the
//! connection the last read left, so that a change shows without waiting for the full read to
//! end. Connecting, failovers and a cluster's layout stay `Source`'s: a failed read here only
//! ends the reader.

use std::collections::HashSet;
use std::sync::Arc;

use super::link::Link;
use super::reader::Reader;
use super::{cluster, hashes, keep_configured, lossy_names};
use crate::fetch::{FetchError, Fetched, Placement};

pub(crate) struct ChangeReader {
    pub(super) reader: Reader,
    /// The configured symbols; `None` when discovering.
    pub(super) fixed: Option<Arc<HashSet<Vec<u8>>>>,
    pub(super) link: Link,
    pub(super) placement: Placement,
}

impl ChangeReader {
    /// Reads `symbols`, skipping any outside a fixed list. On one node the reads share the
    /// connection's pipeline with the full read's, and wait at most for one of its batches; in
    /// a cluster they go key by key through the crate, which routes each to its slot's owner.
    pub(crate) async fn read(&mut self, mut symbols: Vec<Vec<u8>>) -> Result<Fetched, FetchError> {
        keep_configured(self.fixed.as_deref(), &mut symbols);
        let mut fetched = Fetched::default();
        match &mut self.link {
            Link::Node(connection) => {
                hashes::read_on(&self.reader, connection, &symbols, &mut fetched).await?;
            }
            Link::Cluster(connection) => {
                cluster::read_by_key(&self.reader, connection, &symbols, &mut fetched).await?;
            }
        }
        if self.fixed.is_some() {
            fetched.missing = lossy_names(&fetched.absent);
        }
        fetched.placement = self.placement.clone();
        Ok(fetched)
    }
}

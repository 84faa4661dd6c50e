//! A full or partial read's hashes as a snapshot's proposals: symbols checked, sorted and made
//! unique, each hash parsed (or shared with the proposal it was parsed into before), and what was
//! dropped or invalid counted on the snapshot. Which proposals a transition keeps is `snapshot`'s.

use std::cmp::Ordering;
use std::sync::Arc;

use super::{DropReason, Snapshot, UNKNOWN_ACTION_LIMIT};
use crate::fetch::RawHash;
use crate::proposal::{self, Proposal, ReadDigest};

impl Snapshot {
    /// Symbols that can be label values, sorted and unique; the others are counted as dropped.
    pub(super) fn named_hashes(&mut self, hashes: Vec<RawHash>) -> Vec<(String, RawHash)> {
        let mut named = Vec::with_capacity(hashes.len());
        for mut hash in hashes {
            match proposal::parse_symbol(std::mem::take(&mut hash.symbol)) {
                Ok(symbol) => named.push((sort_key(&symbol), symbol, hash)),
                Err((error, raw)) => {
                    self.dropped[DropReason::InvalidName] += 1;
                    tracing::debug!(symbol = %String::from_utf8_lossy(&raw), "key dropped: {error}");
                }
            }
        }
        // The key settles most comparisons without reading the symbols, which a large read
        // has scattered over the heap.
        named.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        named.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        named
            .into_iter()
            .map(|(_, symbol, hash)| (symbol, hash))
            .collect()
    }

    /// Parses each hash, counting its invalid fields, and bounds the unknown action labels. A
    /// hash whose values are those that one of `previous` (sorted by symbol, as `named` is) was
    /// parsed from is that proposal, shared: a full read of unchanged data parses nothing
    /// again, holds no second copy, and compares as unchanged at a glance.
    pub(super) fn parse_counted(
        &mut self,
        named: Vec<(String, RawHash)>,
        previous: &[Arc<Proposal>],
    ) -> Vec<Arc<Proposal>> {
        let mut before = previous.iter().peekable();
        let mut proposals: Vec<Arc<Proposal>> = named
            .into_iter()
            .map(|(symbol, hash)| {
                // One comparison per step: the symbols compared are mostly equal, to their end.
                let same = loop {
                    match before.peek().map(|p| p.symbol.as_str().cmp(&symbol)) {
                        Some(Ordering::Less) => {
                            before.next();
                        }
                        Some(Ordering::Equal) => break before.next(),
                        Some(Ordering::Greater) | None => break None,
                    }
                };
                let read_from = ReadDigest(Some(hash.digest()));
                if let Some(same) = same
                    && same.read_from.0 == read_from.0
                {
                    return Arc::clone(same);
                }
                let mut values = [None; proposal::SLOTS];
                for (slot, value) in values.iter_mut().zip(hash.values()) {
                    *slot = value;
                }
                Arc::new(Proposal {
                    read_from,
                    ..proposal::parse(symbol, &values)
                })
            })
            .collect();
        proposal::bound_unknown_actions(&mut proposals, UNKNOWN_ACTION_LIMIT);
        for field in proposals.iter().flat_map(|p| &p.invalid_fields) {
            self.parse_errors_total[*field] += 1;
        }
        proposals
    }
}

/// The first 16 bytes of a symbol, in two numbers that order as the symbols do, or tie: a
/// shorter symbol is padded with zeros, which sort first, as its end does. Two words, not a
/// `u128`, so that the pairs keep their alignment and the last step needs no new vector.
fn sort_key(symbol: &str) -> (u64, u64) {
    let mut key = [0; 16];
    let len = symbol.len().min(key.len());
    key[..len].copy_from_slice(&symbol.as_bytes()[..len]);
    let key = u128::from_be_bytes(key);
    ((key >> 64) as u64, key as u64)
}

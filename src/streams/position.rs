//! Where the follower stands in each stream, and where the stream stands (XINFO): what tells
//! entries trimmed away before they were read from entries read, and a stream made anew from
//! one trimmed. Which entries are read, and when, is the follower's.

use redis::aio::ConnectionLike;
use redis::{RedisResult, Value};

use super::reply::{consumer_groups, entry, id, number, pairs};
use crate::apply::{EntryId, StreamInfo};

/// Where this follower has read to in one stream, and what it needs to tell entries trimmed
/// away unread from entries it read.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Position {
    /// The last ID read; `None` until the stream was first looked at.
    pub(super) last: Option<EntryId>,
    /// `entries-added` when the position was taken, and entries read since.
    added_at_start: u64,
    pub(super) read: u64,
    /// Entries already counted as lost.
    lost: u64,
}

impl Position {
    /// Before a stream's first entry: everything in it is read.
    pub(super) fn at_start() -> Position {
        Position {
            last: Some(EntryId::default()),
            ..Position::default()
        }
    }

    /// After a stream's newest entry, when it is first seen: what it holds is recalled, not
    /// read.
    pub(super) fn at_tip(tip: &Tip) -> Position {
        Position {
            last: Some(tip.last_generated.unwrap_or_default()),
            added_at_start: tip.added.unwrap_or(0),
            ..Position::default()
        }
    }

    /// Whether the stream went back behind this position (deleted and written again, say):
    /// its newest ID is older than the last read, or fewer entries were ever added to it.
    pub(super) fn made_anew(&self, tip: &Tip) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        tip.last_generated.is_some_and(|newest| newest < last)
            || tip
                .added
                .is_some_and(|added| added < self.added_at_start + self.read)
    }

    /// Entries trimmed (or deleted) before they were read, not yet counted. Everything added
    /// since the position was taken is read, still in the stream after the position, or lost;
    /// the middle term is known when the follower has caught up (none) or was trimmed past (all
    /// there is).
    pub(super) fn trimmed_unread(&mut self, stream: &Tip, length: u64) -> u64 {
        let (Some(last), Some(added)) = (self.last, stream.added) else {
            return 0;
        };
        let unread = if stream.last_generated.is_none_or(|newest| newest <= last) {
            0
        } else if stream.first_entry.is_some_and(|first| first > last) {
            length
        } else {
            return 0;
        };
        let lost = added
            .saturating_sub(self.added_at_start)
            .saturating_sub(self.read)
            .saturating_sub(unread);
        let new = lost.saturating_sub(self.lost);
        self.lost = self.lost.max(lost);
        new
    }
}

/// `XINFO STREAM` and `XINFO GROUPS` of a stream that exists: its length, newest entry and
/// consumer groups into `info`, and where it stands, to tell trimming from a stream made anew.
pub(super) async fn describe<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    info: &mut StreamInfo,
) -> RedisResult<Tip> {
    let stream: Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(connection)
        .await?;
    let stream = pairs(&stream);
    info.length = number(stream.get("length").copied());
    let tip = Tip {
        first_entry: stream
            .get("first-entry")
            .and_then(|e| entry(e))
            .map(|e| e.id),
        last_generated: id(stream.get("last-generated-id").copied()),
        added: stream.get("entries-added").map(|v| number(Some(v))),
    };
    info.last_entry = stream
        .get("last-entry")
        .and_then(|e| entry(e))
        .map(|e| e.id);
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(connection)
        .await?;
    info.groups = consumer_groups(&groups);
    Ok(tip)
}

/// Where a stream stands, from XINFO STREAM.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tip {
    first_entry: Option<EntryId>,
    last_generated: Option<EntryId>,
    /// `entries-added`: every entry ever added, Redis 7 or later.
    added: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Option<EntryId> {
        Some(EntryId { ms, seq: 0 })
    }

    #[test]
    fn entries_added_but_neither_read_nor_left_are_lost_once() {
        let mut position = Position {
            last: at(100),
            added_at_start: 1_000,
            read: 50,
            lost: 0,
        };
        let tip = |first: u64, newest: u64, added: u64| Tip {
            first_entry: at(first),
            last_generated: at(newest),
            added: Some(added),
        };
        // Behind, not trimmed past: how many of the stream's entries are unread is not known.
        assert_eq!(position.trimmed_unread(&tip(90, 150, 1_100), 500), 0);
        // Trimmed past: 1,200 added since, 50 read, 100 left (all unread): 1,050 lost.
        assert_eq!(position.trimmed_unread(&tip(200, 300, 2_200), 100), 1_050);
        assert_eq!(
            position.trimmed_unread(&tip(200, 300, 2_200), 100),
            0,
            "counted once"
        );
        // Caught up after a loss that no look saw while it was behind.
        let mut caught_up = Position {
            last: at(500),
            added_at_start: 0,
            read: 11,
            lost: 0,
        };
        assert_eq!(caught_up.trimmed_unread(&tip(400, 500, 100), 10), 89);
        // Without entries-added (Redis < 7) nothing can be said.
        let no_count = Tip {
            added: None,
            ..tip(600, 700, 0)
        };
        assert_eq!(position.trimmed_unread(&no_count, 100), 0);
    }
}

//! What a read of Redis yields, as the core takes it: the raw hashes, where they were read, and
//! why a read failed. Plain data that `source` fills and `snapshot` and `render` read; it knows
//! nothing of connections, commands or replies.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::LazyLock;

use enum_map::Enum;

/// What one fetch found.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Fetched {
    pub hashes: Vec<RawHash>,
    /// Configured symbols whose key does not exist (full fetches with a fixed list only).
    pub missing: Vec<String>,
    /// Symbols asked for by a partial fetch whose key no longer exists.
    pub absent: Vec<Vec<u8>>,
    /// Keys under the prefix that hold something other than a hash.
    pub wrong_type: usize,
    /// Commands sent (SCAN pages plus HMGETs), for cost accounting.
    pub commands: usize,
    /// Round trips made.
    pub round_trips: usize,
    /// Where the reads went.
    pub placement: Placement,
    /// Keys a cluster node no longer owned when asked; read again by key.
    pub redirected: Vec<Vec<u8>>,
}

/// One hash read from Redis: the symbol (the key without the prefix) and the values of the
/// requested fields, packed in one buffer so that a large fetch makes few allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHash {
    pub symbol: Vec<u8>,
    /// The values one after another, then the end of each in them (or [`ABSENT`]) as four
    /// native-endian bytes: one buffer per hash, not one for values and one for ends.
    packed: Vec<u8>,
    fields: usize,
    /// Of the values, so that a hash read again unchanged need not be parsed again.
    digest: u64,
}

const ABSENT: u32 = u32::MAX;

/// The digests' keys, drawn once per process: no value written to Redis can be chosen to
/// collide with another.
static DIGEST_KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl RawHash {
    /// Packs the values of the requested fields, in request order; `None` where absent.
    pub(crate) fn new(symbol: Vec<u8>, values: &[Option<&[u8]>]) -> RawHash {
        let size: usize = values.iter().flatten().map(|v| v.len()).sum();
        let mut packed = Vec::with_capacity(size + 4 * values.len());
        for value in values.iter().flatten() {
            packed.extend_from_slice(value);
        }
        let mut end = 0;
        for value in values {
            let at = match value {
                Some(value) => {
                    end += value.len() as u32;
                    end
                }
                None => ABSENT,
            };
            packed.extend_from_slice(&at.to_ne_bytes());
        }
        let digest = DIGEST_KEYS.hash_one(&packed);
        RawHash {
            symbol,
            packed,
            fields: values.len(),
            digest,
        }
    }

    /// A 64-bit digest of the values: equal for equal values, and for different ones as likely
    /// equal as two random numbers.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// The values of the requested fields, in request order.
    pub(crate) fn values(&self) -> impl Iterator<Item = Option<&[u8]>> {
        let (data, ends) = self.packed.split_at(self.packed.len() - 4 * self.fields);
        let mut start = 0;
        ends.as_chunks::<4>().0.iter().map(move |end| {
            let end = u32::from_ne_bytes(*end);
            if end == ABSENT {
                return None;
            }
            let value = &data[start as usize..end as usize];
            start = end;
            Some(value)
        })
    }
}

/// Where the reads go, for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Placement {
    pub mode: Mode,
    /// The node read, or every node a cluster refresh read.
    pub nodes: Vec<Node>,
    /// Changes of primary seen since start-up.
    pub failovers: u64,
    pub replica_lag: Option<ReplicaLag>,
}

/// The topology as the `mode` label of the node metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    #[default]
    Single,
    Sentinel,
    Cluster,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Sentinel => "sentinel",
            Mode::Cluster => "cluster",
        }
    }
}

/// A node being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub addr: String,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    Replica,
}

impl Role {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// A replica's view of its link to the primary, from `INFO replication`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ReplicaLag {
    pub link_up: bool,
    /// Seconds since the replica last heard from its primary (or since the link went down).
    pub seconds: f64,
}

/// A read of Redis that failed; the refresh loop counts it by [`ErrorKind`] and retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot connect to redis at {addr}: {source}")]
    Connect {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis at {addr} did not answer in time: {source}")]
    Timeout {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis command failed at {addr}: {source}")]
    Command {
        addr: String,
        source: redis::RedisError,
    },
    #[error("redis at {addr} sent an unexpected reply to {command}")]
    Reply { addr: String, command: &'static str },
}

impl FetchError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            FetchError::Connect { .. } => ErrorKind::Connect,
            FetchError::Timeout { .. } => ErrorKind::Timeout,
            FetchError::Command { .. } | FetchError::Reply { .. } => ErrorKind::Command,
        }
    }
}

/// Why a read failed, as the `kind` label of the refresh-error counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub(crate) enum ErrorKind {
    Connect,
    Timeout,
    Command,
}

impl ErrorKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Command => "command",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_come_back_in_order() {
        let hash = RawHash::new(
            b"X".to_vec(),
            &[Some(b"0.5"), None, Some(b""), Some(b"PARTIAL_75"), None],
        );
        let values: Vec<_> = hash.values().collect();
        assert_eq!(
            values,
            [
                Some(&b"0.5"[..]),
                None,
                Some(b""),
                Some(b"PARTIAL_75"),
                None
            ]
        );
    }
}

//! Pipelined rounds of reads, each a SCAN and some HMGETs: the [`Pipe`] that discovery and the
//! hash reads send rounds through, and [`Multiplexed`], the crate's connection as one. `wire` is
//! the other, a node's connection of its own.

use std::collections::VecDeque;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::reader::Reader;
use crate::fetch::{FetchError, Fetched};

/// SCAN's COUNT hint: large enough for few round trips, small enough not to stall Redis; it also
/// bounds the HMGETs pipelined with the next page.
const SCAN_COUNT: usize = 1_000;

/// Pipelined rounds, each a SCAN from a cursor (when given) followed by the HMGETs of some
/// symbols. A round may be sent before the replies of the one before it are taken, so that Redis
/// answers it while the exporter parses those; replies are taken in the order rounds were sent.
pub(super) trait Pipe {
    /// Sends a round, counted in `fetched`.
    async fn send(
        &mut self,
        reader: &Reader,
        symbols: &[Vec<u8>],
        scan: Option<(u64, &[u8])>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError>;

    /// The oldest round's SCAN reply (the round had one): the next cursor (0 at the end) and
    /// the keys of its page.
    async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError>;

    /// The oldest round's HMGET replies, of `symbols`, into `fetched`; the round is then done.
    async fn take_reads(
        &mut self,
        reader: &Reader,
        symbols: Vec<Vec<u8>>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError>;
}

/// The crate's connection as a [`Pipe`]: a round is sent as one pipeline when its replies are
/// first taken, so rounds do not overlap here. `redirects`: a cluster node's, whose keys may
/// move to another node meanwhile; those are left in `fetched.redirected`.
pub(super) struct Multiplexed<'a> {
    connection: &'a mut MultiplexedConnection,
    redirects: bool,
    /// Rounds sent and not yet taken, the oldest first; its replies once it went out.
    rounds: VecDeque<redis::Pipeline>,
    replies: Option<std::vec::IntoIter<Value>>,
}

impl<'a> Multiplexed<'a> {
    pub(super) fn new(connection: &'a mut MultiplexedConnection, redirects: bool) -> Self {
        Multiplexed {
            connection,
            redirects,
            rounds: VecDeque::new(),
            replies: None,
        }
    }

    /// The replies of the oldest round, which goes out now if it has not yet.
    async fn replies(
        &mut self,
        reader: &Reader,
    ) -> Result<&mut std::vec::IntoIter<Value>, FetchError> {
        if self.replies.is_none() {
            let round = self
                .rounds
                .pop_front()
                .ok_or_else(|| reader.unexpected("HMGET"))?;
            let replies: Vec<Value> = round
                .query_async(self.connection)
                .await
                .map_err(|source| reader.classify(source, false))?;
            self.replies = Some(replies.into_iter());
        }
        Ok(self.replies.as_mut().expect("set above"))
    }
}

impl Pipe for Multiplexed<'_> {
    async fn send(
        &mut self,
        reader: &Reader,
        symbols: &[Vec<u8>],
        scan: Option<(u64, &[u8])>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if let Some((cursor, pattern)) = scan {
            pipe.add_command(scan_command(cursor, pattern));
        }
        reader.add_reads(&mut pipe, symbols);
        self.rounds.push_back(pipe);
        fetched.commands += symbols.len() + usize::from(scan.is_some());
        fetched.round_trips += 1;
        Ok(())
    }

    async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
        let reply = self
            .replies(reader)
            .await?
            .next()
            .ok_or_else(|| reader.unexpected("SCAN"))?;
        if let Value::ServerError(error) = reply {
            return Err(reader.classify(redis::RedisError::from(error), false));
        }
        redis::from_redis_value(reply).map_err(|_| reader.unexpected("SCAN"))
    }

    async fn take_reads(
        &mut self,
        reader: &Reader,
        symbols: Vec<Vec<u8>>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let replies: Vec<Value> = self.replies(reader).await?.collect();
        self.replies = None;
        reader.take_reads(symbols, replies, fetched, self.redirects)
    }
}

/// SCAN of the keys matching `pattern`, from `cursor`, a page of [`SCAN_COUNT`].
pub(super) fn scan_command(cursor: u64, pattern: &[u8]) -> redis::Cmd {
    let mut scan = redis::cmd("SCAN");
    scan.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    scan
}

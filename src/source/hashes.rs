//! Hash reads: the HMGET of each symbol given, pipelined in batches over a [`Pipe`], each batch
//! sent before the one ahead of it is parsed. Which symbols to read is the caller's: a configured
//! list, the symbols a notification named, or a cluster node's share.

use redis::aio::MultiplexedConnection;

use super::pipe::{Multiplexed, Pipe};
use super::reader::Reader;
use crate::fetch::{FetchError, Fetched};

/// Keys per pipelined HMGET round trip for a configured list; bounds the size of one reply.
const FETCH_BATCH: usize = 1_000;

/// [`read`] over the crate's connection to one node.
pub(super) async fn read_on(
    reader: &Reader,
    connection: &mut MultiplexedConnection,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    let mut pipe = Multiplexed::new(connection, false);
    read(reader, &mut pipe, symbols, fetched).await
}

/// HMGET of the fields for each symbol, pipelined in batches, each sent before the one
/// before it is parsed; fills hashes, absent keys (those with none of the fields) and wrong
/// types.
pub(super) async fn read(
    reader: &Reader,
    pipe: &mut impl Pipe,
    symbols: &[Vec<u8>],
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    let mut batches = symbols.chunks(FETCH_BATCH);
    let Some(mut in_flight) = batches.next() else {
        return Ok(());
    };
    pipe.send(reader, in_flight, None, fetched).await?;
    loop {
        let next = batches.next();
        if let Some(next) = next {
            pipe.send(reader, next, None, fetched).await?;
        }
        pipe.take_reads(reader, in_flight.to_vec(), fetched).await?;
        match next {
            Some(next) => in_flight = next,
            None => return Ok(()),
        }
    }
}

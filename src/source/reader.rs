//! What every read needs: the key prefix, the fields and the address for errors; the HMGET of
//! each symbol's fields, and its reply kept as a [`RawHash`] or counted as absent or of the wrong
//! type. Sending the commands is a `Pipe`'s job; which symbols to read is the caller's.

use std::sync::Arc;

use redis::Value;

use crate::fetch::{FetchError, Fetched, RawHash};

/// What every read needs: the key prefix, the fields, and the address for errors. Cheap to
/// clone, so that a cluster's nodes are read by tasks of their own, on every worker thread.
#[derive(Clone)]
pub(crate) struct Reader {
    pub(super) prefix: Arc<[u8]>,
    /// The hash fields to read, in the order `RawHash` keeps them.
    pub(super) fields: &'static [&'static str],
    pub(super) addr: Arc<str>,
}

impl Reader {
    pub(super) fn add_reads(&self, pipe: &mut redis::Pipeline, symbols: &[Vec<u8>]) {
        for symbol in symbols {
            pipe.cmd("HMGET")
                .arg([&self.prefix[..], symbol].concat())
                .arg(self.fields);
        }
    }

    /// The HMGET replies for `symbols`, in order, into hashes, absent keys and wrong types; a
    /// cluster node's redirection (the slot moved) into `redirected` when `redirects`.
    pub(super) fn take_reads(
        &self,
        symbols: Vec<Vec<u8>>,
        replies: Vec<Value>,
        fetched: &mut Fetched,
        redirects: bool,
    ) -> Result<(), FetchError> {
        if replies.len() != symbols.len() {
            return Err(self.unexpected("HMGET"));
        }
        for (symbol, reply) in symbols.into_iter().zip(replies) {
            match reply {
                Value::ServerError(error) if error.code() == "WRONGTYPE" => fetched.wrong_type += 1,
                Value::ServerError(error)
                    if redirects && matches!(error.code(), "MOVED" | "ASK" | "TRYAGAIN") =>
                {
                    fetched.redirected.push(symbol);
                }
                Value::ServerError(error) => {
                    return Err(self.classify(redis::RedisError::from(error), false));
                }
                reply => self.packed(symbol, reply, fetched)?,
            }
        }
        Ok(())
    }

    /// HMGET's reply into `fetched`, as [`Reader::keep`] keeps it.
    pub(super) fn packed(
        &self,
        symbol: Vec<u8>,
        reply: Value,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        let Value::Array(items) = reply else {
            return Err(self.unexpected("HMGET"));
        };
        let mut values = Vec::with_capacity(items.len());
        for item in &items {
            values.push(match item {
                Value::BulkString(bytes) => Some(bytes.as_slice()),
                Value::SimpleString(text) => Some(text.as_bytes()),
                Value::Nil => None,
                _ => return Err(self.unexpected("HMGET")),
            });
        }
        self.keep(symbol, &values, fetched)
    }

    /// The values of one HMGET reply, in the order of the fields asked for, into `fetched`: as
    /// a [`RawHash`], or the symbol as absent when the key has none of the fields.
    pub(super) fn keep(
        &self,
        symbol: Vec<u8>,
        values: &[Option<&[u8]>],
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        if values.len() != self.fields.len() {
            return Err(self.unexpected("HMGET"));
        }
        if values.iter().all(Option::is_none) {
            fetched.absent.push(symbol);
        } else {
            fetched.hashes.push(RawHash::new(symbol, values));
        }
        Ok(())
    }

    pub(super) fn classify(&self, source: redis::RedisError, connecting: bool) -> FetchError {
        let addr = self.addr.to_string();
        if source.is_timeout() {
            FetchError::Timeout { addr, source }
        } else if connecting {
            FetchError::Connect { addr, source }
        } else {
            FetchError::Command { addr, source }
        }
    }

    pub(super) fn unexpected(&self, command: &'static str) -> FetchError {
        FetchError::Reply {
            addr: self.addr.to_string(),
            command,
        }
    }
}

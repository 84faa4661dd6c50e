//! A connection of its own for a node's bulk reads: pipelined SCAN and HMGET commands written,
//! and their replies read, by hand in buffers kept from one refresh to the next, each HMGET reply
//! packed straight from the buffer into a [`RawHash`](crate::fetch::RawHash). Plain TCP and Unix
//! sockets only; TLS, the sentinels, notifications and clusters stay with the crate, as does
//! everything else sent.
//!
//! Hand-written because the crate parses every reply into owned values, an allocation per field
//! (some 25 per symbol): with the parsing, that was most of a refresh's CPU. Property tests hold
//! it to the crate's parser on arbitrary replies delivered in arbitrary pieces, and
//! `scripts/bench` measures the two side by side (`tests::reader_against_the_crate`).

mod resp;

use std::io::{self, Write as _};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

use self::resp::{Frame, frame_of, line, number, parse};
use super::pipe::{Pipe, scan_command};
use super::reader::Reader;
use crate::fetch::{FetchError, Fetched};

/// The most a reply may take in the buffer: far above any HMGET or SCAN page, it bounds what a
/// broken or hostile server can make the exporter hold.
const MAX_BUFFERED: usize = 64 * 1024 * 1024;
/// Fields an HMGET reply may have, at most: those of a proposal.
const MAX_FIELDS: usize = 64;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub(super) struct Wire {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet parsed start at `start`.
    input: Vec<u8>,
    start: usize,
    /// The commands of the next round trip.
    output: Vec<u8>,
    response_timeout: Duration,
}

impl Wire {
    /// Connects to the node `info` names, and authenticates and selects its database as the
    /// crate would; `None` when the crate must read it (TLS).
    pub(super) async fn connect(
        info: &ConnectionInfo,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Option<io::Result<Wire>> {
        if !matches!(
            info.addr(),
            ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)
        ) {
            return None;
        }
        let connecting = async {
            let stream: Box<dyn Stream> = match info.addr() {
                ConnectionAddr::Tcp(host, port) => {
                    let stream = TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Box::new(stream)
                }
                ConnectionAddr::Unix(path) => Box::new(UnixStream::connect(path).await?),
                _ => unreachable!("checked above"),
            };
            io::Result::Ok(stream)
        };
        let stream = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Some(Err(error)),
            Err(_) => return Some(Err(io::ErrorKind::TimedOut.into())),
        };
        let mut wire = Wire {
            stream,
            input: Vec::new(),
            start: 0,
            output: Vec::new(),
            response_timeout,
        };
        Some(wire.handshake(info).await.map(|()| wire))
    }

    async fn handshake(&mut self, info: &ConnectionInfo) -> io::Result<()> {
        let settings = info.redis_settings();
        let mut commands = 0;
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            auth.arg(settings.username()).arg(password);
            auth.write_packed_command(&mut self.output);
            commands += 1;
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .write_packed_command(&mut self.output);
            commands += 1;
        }
        self.send().await?;
        for _ in 0..commands {
            let frame = self.next_frame().await?;
            if let Frame::Error(error) = frame {
                let message = String::from_utf8_lossy(error).into_owned();
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
            }
        }
        Ok(())
    }

    async fn send(&mut self) -> io::Result<()> {
        let writing = self.stream.write_all(&self.output);
        let written = tokio::time::timeout(self.response_timeout, writing).await;
        self.output.clear();
        written.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    /// The next reply, read until whole.
    async fn next_frame(&mut self) -> io::Result<Frame<'_>> {
        loop {
            match parse(&self.input[self.start..], 0)? {
                Some((_, used)) => {
                    let at = self.start;
                    self.start += used;
                    return frame_of(&self.input[at..at + used]);
                }
                None => self.read_more().await?,
            }
        }
    }

    async fn read_more(&mut self) -> io::Result<()> {
        // What was parsed goes, so that the buffer holds one reply at most, not the whole read.
        self.input.drain(..self.start);
        self.start = 0;
        if self.input.len() >= MAX_BUFFERED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply too large",
            ));
        }
        self.input.reserve(64 * 1024);
        let reading = self.stream.read_buf(&mut self.input);
        match tokio::time::timeout(self.response_timeout, reading).await {
            Ok(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// HMGET replies are packed as `Reader::take_reads` packs the crate's. A round is written at
/// once; Redis answers it while the replies before it are parsed.
impl Pipe for Wire {
    async fn send(
        &mut self,
        reader: &Reader,
        symbols: &[Vec<u8>],
        scan: Option<(u64, &[u8])>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        if let Some((cursor, pattern)) = scan {
            scan_command(cursor, pattern).write_packed_command(&mut self.output);
        }
        // Each HMGET is its key, then the same fields.
        let mut fields = Vec::new();
        for field in reader.fields {
            bulk(&mut fields, &[field.as_bytes()]);
        }
        for symbol in symbols {
            array(&mut self.output, reader.fields.len() + 2);
            bulk(&mut self.output, &[b"HMGET"]);
            bulk(&mut self.output, &[&reader.prefix, symbol]);
            self.output.extend_from_slice(&fields);
        }
        self.send()
            .await
            .map_err(|error| wire_error(reader, error))?;
        fetched.commands += symbols.len() + usize::from(scan.is_some());
        fetched.round_trips += 1;
        Ok(())
    }

    async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
        let frame = self.next_frame().await;
        scan_page(reader, frame.map_err(|error| wire_error(reader, error))?)
    }

    async fn take_reads(
        &mut self,
        reader: &Reader,
        symbols: Vec<Vec<u8>>,
        fetched: &mut Fetched,
    ) -> Result<(), FetchError> {
        for symbol in symbols {
            loop {
                let mut slots = [None; MAX_FIELDS];
                let input = &self.input[self.start..];
                match hmget_values(input, &mut slots).map_err(|e| wire_error(reader, e))? {
                    Some(Values::Whole { count, used }) => {
                        reader.keep(symbol, &slots[..count], fetched)?;
                        self.start += used;
                    }
                    Some(Values::Other) => {
                        let frame = self.next_frame().await;
                        let frame = frame.map_err(|error| wire_error(reader, error))?;
                        take_read(reader, symbol, frame, fetched)?;
                    }
                    None => {
                        let more = self.read_more().await;
                        more.map_err(|error| wire_error(reader, error))?;
                        continue;
                    }
                }
                break;
            }
        }
        Ok(())
    }
}

/// What [`hmget_values`] found at the start of the input.
enum Values {
    /// An array of `count` values, now in the slots given, that took `used` bytes.
    Whole { count: usize, used: usize },
    /// A reply of another shape, left to [`parse`] and [`take_read`].
    Other,
}

/// The values of the HMGET reply at the start of `input`, in one pass: most replies are an
/// array of bulk strings and nils, which [`parse`] would walk twice, once to find its end and
/// once for its items. `None` while the reply is incomplete.
fn hmget_values<'a>(
    input: &'a [u8],
    slots: &mut [Option<&'a [u8]>; MAX_FIELDS],
) -> io::Result<Option<Values>> {
    let Some((kind, text, mut used)) = line(input)? else {
        return Ok(None);
    };
    let count = match (kind, number(text).map(usize::try_from)) {
        (b'*', Some(Ok(count))) if count <= MAX_FIELDS => count,
        _ => return Ok(Some(Values::Other)),
    };
    for slot in &mut slots[..count] {
        let Some((kind, text, header)) = line(&input[used..])? else {
            return Ok(None);
        };
        let start = used + header;
        *slot = match (kind, number(text)) {
            (b'$', Some(len)) if len < 0 => {
                used = start;
                continue;
            }
            (b'$', Some(len)) => {
                let Some(body) = input.get(start..start + len as usize + 2) else {
                    return Ok(None);
                };
                used = start + body.len();
                match body.strip_suffix(b"\r\n") {
                    Some(value) => Some(value),
                    None => return Ok(Some(Values::Other)),
                }
            }
            _ => return Ok(Some(Values::Other)),
        };
    }
    Ok(Some(Values::Whole { count, used }))
}

/// An HMGET reply into `fetched`: packed, absent, of the wrong type, or a failure.
fn take_read(
    reader: &Reader,
    symbol: Vec<u8>,
    frame: Frame<'_>,
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    let items = match frame {
        Frame::Array(items) => items,
        Frame::Error(error) => {
            return match server_error(error) {
                Value::ServerError(error) if error.code() == "WRONGTYPE" => {
                    fetched.wrong_type += 1;
                    Ok(())
                }
                Value::ServerError(error) => {
                    Err(reader.classify(redis::RedisError::from(error), false))
                }
                _ => Err(reader.unexpected("HMGET")),
            };
        }
        _ => return Err(reader.unexpected("HMGET")),
    };
    let mut values: [Option<&[u8]>; MAX_FIELDS] = [None; MAX_FIELDS];
    let mut count = 0;
    for item in items {
        let slot = values
            .get_mut(count)
            .ok_or_else(|| reader.unexpected("HMGET"))?;
        *slot = match item {
            Frame::Bytes(bytes) => Some(bytes),
            Frame::Nil => None,
            _ => return Err(reader.unexpected("HMGET")),
        };
        count += 1;
    }
    reader.keep(symbol, &values[..count], fetched)
}

/// A SCAN reply: the next cursor and the page's keys.
fn scan_page(reader: &Reader, frame: Frame<'_>) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
    let unexpected = || reader.unexpected("SCAN");
    let mut parts = match frame {
        Frame::Array(parts) => parts,
        Frame::Error(error) => {
            return match server_error(error) {
                Value::ServerError(error) => {
                    Err(reader.classify(redis::RedisError::from(error), false))
                }
                _ => Err(unexpected()),
            };
        }
        _ => return Err(unexpected()),
    };
    let cursor = match parts.next() {
        Some(Frame::Bytes(cursor)) => std::str::from_utf8(cursor)
            .ok()
            .and_then(|cursor| cursor.parse().ok())
            .ok_or_else(unexpected)?,
        _ => return Err(unexpected()),
    };
    let keys = match parts.next() {
        Some(Frame::Array(keys)) => keys
            .map(|key| match key {
                Frame::Bytes(key) => Ok(key.to_vec()),
                _ => Err(unexpected()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(unexpected()),
    };
    Ok((cursor, keys))
}

/// An error reply as the crate sees it, so that it is classified as the crate's are.
fn server_error(line: &[u8]) -> Value {
    let mut frame = Vec::with_capacity(line.len() + 3);
    frame.push(b'-');
    frame.extend_from_slice(line);
    frame.extend_from_slice(b"\r\n");
    redis::parse_redis_value(&frame).unwrap_or(Value::Nil)
}

fn wire_error(reader: &Reader, error: io::Error) -> FetchError {
    reader.classify(redis::RedisError::from(error), false)
}

/// The header of a command of `len` arguments. Only the HMGETs, one per symbol, are written by
/// hand (their key from two parts, their fields encoded once); the crate encodes the others.
fn array(out: &mut Vec<u8>, len: usize) {
    write!(out, "*{len}\r\n").expect("writing to a Vec cannot fail");
}

/// Appends one bulk string made of `parts`.
fn bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    write!(out, "${len}\r\n").expect("writing to a Vec cannot fail");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;

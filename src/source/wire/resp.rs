//! RESP2, as the crate's connections speak it, parsed in place: a reply borrowed from the buffer
//! it was read into, found whole or found incomplete, never copied. What the replies mean is
//! `wire`'s.

use std::io;

/// How deep arrays may nest: the replies read here nest two deep.
pub(super) const MAX_DEPTH: usize = 4;

/// A reply, borrowed from the buffer it was read into.
#[derive(Debug)]
pub(super) enum Frame<'a> {
    Nil,
    /// A bulk or simple string.
    Bytes(&'a [u8]),
    /// An error's line, without its leading '-'.
    Error(&'a [u8]),
    /// An integer, which none of the commands sent here answers with.
    Integer,
    Array(Items<'a>),
}

/// An array's elements, parsed as they are taken; the whole array was checked complete first.
#[derive(Clone, Debug)]
pub(super) struct Items<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        let (frame, used) = parse(self.rest, 1).ok().flatten()?;
        self.rest = &self.rest[used..];
        self.left -= 1;
        Some(frame)
    }
}

/// The reply at the start of `input` and the bytes it takes; `None` while it is incomplete.
/// RESP2 only, as the crate's connections speak it.
pub(super) fn parse(input: &[u8], depth: usize) -> io::Result<Option<(Frame<'_>, usize)>> {
    let Some((kind, line, header)) = line(input)? else {
        return Ok(None);
    };
    let number = || number(line).ok_or_else(|| invalid("bad number in reply"));
    let parsed = match kind {
        // Simple strings and errors are text, as the crate reads them.
        b'+' | b'-' if std::str::from_utf8(line).is_err() => {
            return Err(invalid("reply line is not UTF-8"));
        }
        b'+' => (Frame::Bytes(line), header),
        b'-' => (Frame::Error(line), header),
        b':' => {
            number()?;
            (Frame::Integer, header)
        }
        b'$' => match usize::try_from(number()?) {
            Err(_) => (Frame::Nil, header),
            Ok(len) => {
                let Some(body) = input.get(header..header + len + 2) else {
                    return Ok(None);
                };
                if !body.ends_with(b"\r\n") {
                    return Err(invalid("bulk string without its line end"));
                }
                (Frame::Bytes(&body[..len]), header + len + 2)
            }
        },
        b'*' => match usize::try_from(number()?) {
            Err(_) => (Frame::Nil, header),
            Ok(_) if depth >= MAX_DEPTH => return Err(invalid("arrays nested too deep")),
            Ok(count) => {
                let mut used = header;
                for _ in 0..count {
                    match parse(&input[used..], depth + 1)? {
                        Some((_, taken)) => used += taken,
                        None => return Ok(None),
                    }
                }
                (items(&input[header..used], count), used)
            }
        },
        _ => return Err(invalid("unknown reply type")),
    };
    Ok(Some(parsed))
}

/// The line at the start of `input`: its type byte, the rest of it, and the bytes it takes with
/// its line end; `None` while incomplete.
pub(super) fn line(input: &[u8]) -> io::Result<Option<(u8, &[u8], usize)>> {
    let Some(end) = input.iter().position(|byte| *byte == b'\r') else {
        return Ok(None);
    };
    match input.get(end + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(invalid("reply line without its line end")),
    }
    match input[..end].split_first() {
        Some((kind, line)) => Ok(Some((*kind, line, end + 2))),
        None => Err(invalid("empty reply line")),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The reply that is `whole`, which [`parse`] found complete: an array's elements are not
/// walked again until they are taken.
pub(super) fn frame_of(whole: &[u8]) -> io::Result<Frame<'_>> {
    if let Some((b'*', rest)) = whole.split_first()
        && let Some(end) = rest.iter().position(|byte| *byte == b'\r')
        && let Some(Ok(count)) = number(&rest[..end]).map(usize::try_from)
    {
        return Ok(items(&rest[end + 2..], count));
    }
    let (frame, _) = parse(whole, 0)?.expect("found complete");
    Ok(frame)
}

fn items(elements: &[u8], count: usize) -> Frame<'_> {
    Frame::Array(Items {
        rest: elements,
        left: count,
    })
}

/// A length or an integer: hand-parsed, as it precedes every value read.
pub(super) fn number(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Some(if negative { -value } else { value })
}

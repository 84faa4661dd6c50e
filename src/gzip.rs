//! Gzip framing for a body compressed once and sent many times: the body is compressed in pieces
//! that can be put together in more than one order (so that two formats sharing most of their
//! bytes share their compressed bytes too), and each scrape closes the member with its own small
//! tail. Knows nothing of what the bytes mean.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use flate2::{Compression, Decompress, FlushDecompress, write::DeflateEncoder};

/// Deflate data of one piece of a body: blocks that refer to nothing before them and end on a
/// byte boundary without the final bit, so that any such pieces, one after another, are one
/// deflate stream of their data in that order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deflated {
    bytes: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Deflated {
    /// The compressed bytes, sent as they are.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many bytes they inflate to.
    pub(crate) fn plain_len(&self) -> u64 {
        self.len
    }

    /// These pieces, one after another, as one piece: their bytes copied together, their
    /// checksums combined.
    pub(crate) fn concat(pieces: &[&Deflated]) -> Deflated {
        let mut bytes = Vec::with_capacity(pieces.iter().map(|p| p.bytes.len()).sum());
        let mut joined = Deflated::default();
        for piece in pieces {
            bytes.extend_from_slice(&piece.bytes);
            joined.crc.combine(&piece.crc);
            joined.len += piece.len;
        }
        joined.bytes = bytes.into();
        joined
    }
}

/// Compresses pieces, reusing the compressor's state (some hundred kilobytes) between them, and
/// between compressors: a dropped one leaves its state for the next, which the allocator would
/// otherwise hand out, fault in and clear again on every publication.
pub(crate) struct Deflater {
    /// `None` only once dropped.
    encoder: Option<DeflateEncoder<Vec<u8>>>,
}

/// States left by dropped compressors, each reset and ready.
static KEPT: Mutex<Vec<DeflateEncoder<Vec<u8>>>> = Mutex::new(Vec::new());
/// As many as are used at once: the refresh loop's and the apply follower's.
const KEEP_AT_MOST: usize = 2;

impl Deflater {
    pub(crate) fn new() -> Deflater {
        let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Deflater {
            encoder: Some(
                kept.unwrap_or_else(|| DeflateEncoder::new(Vec::new(), Compression::fast())),
            ),
        }
    }

    pub(crate) fn deflate(&mut self, data: &[u8]) -> Deflated {
        let encoder = self.encoder.as_mut().expect("present until dropped");
        encoder.get_mut().reserve(data.len() / 8 + 64);
        encoder
            .write_all(data)
            .expect("writing to a Vec cannot fail");
        // Write::flush is a sync flush: it ends the block and aligns to a byte, without BFINAL.
        encoder.flush().expect("writing to a Vec cannot fail");
        let bytes = std::mem::take(encoder.get_mut());
        // Forgets the dictionary, so that the next piece refers to nothing in this one. Resetting
        // first ends the stream in the (now empty) buffer, which is thrown away.
        encoder
            .reset(Vec::new())
            .expect("writing to a Vec cannot fail");
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        Deflated {
            bytes: bytes.into(),
            crc,
            len: data.len() as u64,
        }
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // A piece left unfinished (by a panic) would run into the next one's.
        let clean = self
            .encoder
            .take()
            .filter(|encoder| encoder.total_in() == 0);
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEEP_AT_MOST {
            kept.extend(clean);
        }
    }
}

/// The start of a gzip member: header and the body's deflate data, flushed to a byte boundary but
/// not finished, so that each scrape can close it with its own tail in [`GzipHead::finish`].
/// Hand-written framing (RFC 1951 stored blocks, RFC 1952 trailer): gzip encoders can only
/// start a new member per scrape, and curl reads just the first of several members.
#[derive(Debug)]
pub(crate) struct GzipHead {
    /// The bytes to send, in order: the gzip header, then each piece's deflate data, runs of
    /// small pieces copied together (see [`GzipHead::MIN_CHUNK`]).
    pub chunks: Arc<[Bytes]>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl GzipHead {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

    /// A scrape writes a handful of chunks at a time: runs of pieces smaller than this are
    /// copied into one chunk. Large bodies are mostly pieces above it, so the copy stays small.
    const MIN_CHUNK: usize = 16 * 1024;

    /// The member's start for the body made of these pieces, in this order.
    pub(crate) fn new(pieces: impl IntoIterator<Item = Deflated>) -> GzipHead {
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut small = Self::HEADER.to_vec();
        for piece in pieces {
            crc.combine(&piece.crc);
            len += piece.len;
            if piece.bytes.len() >= Self::MIN_CHUNK {
                if !small.is_empty() {
                    chunks.push(std::mem::take(&mut small).into());
                }
                chunks.push(piece.bytes);
            } else {
                small.extend_from_slice(&piece.bytes);
                if small.len() >= Self::MIN_CHUNK {
                    chunks.push(std::mem::take(&mut small).into());
                }
            }
        }
        if !small.is_empty() {
            chunks.push(small.into());
        }
        GzipHead {
            chunks: chunks.into(),
            crc,
            len,
        }
    }

    /// The head's deflate data inflated back, a chunk at a time.
    pub(crate) fn inflating(&self) -> Inflating {
        Inflating {
            chunks: Arc::clone(&self.chunks),
            next: 0,
            taken: Self::HEADER.len(),
            inflater: None,
            remaining: self.len,
        }
    }

    /// The rest of the member when nothing comes between the head and `tail`.
    #[cfg(test)]
    pub(crate) fn finish(&self, tail: &[u8]) -> Vec<u8> {
        self.finish_after(&Deflated::default(), tail)
    }

    /// The rest of the member after `middle`, a piece compressed elsewhere and sent between
    /// the head and this: `tail` as stored blocks, then the checksum and length of it all.
    pub(crate) fn finish_after(&self, middle: &Deflated, tail: &[u8]) -> Vec<u8> {
        let mut crc = self.crc.clone();
        crc.combine(&middle.crc);
        trailer(crc, self.len + middle.len, tail)
    }
}

/// A [`GzipHead`]'s body inflated back, a frame at a time, for a client that does not take gzip
/// when the plain body is not held (see `segments`), as nginx's gunzip filter does for a body
/// stored compressed. A scrape holds one frame and the inflater's window, whatever the body.
pub(crate) struct Inflating {
    chunks: Arc<[Bytes]>,
    /// The chunk being inflated, and how much of it was taken.
    next: usize,
    taken: usize,
    /// Made at the first frame, so that a scrape waiting to start holds none.
    inflater: Option<Decompress>,
    remaining: u64,
}

impl Inflating {
    /// Plain bytes per frame: what hyper writes at once (its `max_buf_size`).
    const FRAME: usize = 16 * 1024;

    /// Bytes not yet inflated.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next frame of the plain body; `None` after the last.
    pub(crate) fn next_chunk(&mut self) -> Option<Bytes> {
        let mut plain = Vec::with_capacity(Self::FRAME);
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        while plain.len() < Self::FRAME {
            let Some(chunk) = self.chunks.get(self.next) else {
                break;
            };
            let (taken, made) = (inflater.total_in(), plain.len());
            inflater
                .decompress_vec(&chunk[self.taken..], &mut plain, FlushDecompress::None)
                .expect("a body compressed by `Deflater` inflates");
            self.taken += (inflater.total_in() - taken) as usize;
            // No progress: this chunk is used up, and nothing of it is held back.
            if inflater.total_in() == taken && plain.len() == made {
                self.next += 1;
                self.taken = 0;
            }
        }
        self.remaining -= plain.len() as u64;
        (!plain.is_empty()).then(|| plain.into())
    }
}

/// `tail` as stored blocks, the last one final, then the checksum and length of everything,
/// given those of what came before it.
fn trailer(mut crc: crc32fast::Hasher, len: u64, tail: &[u8]) -> Vec<u8> {
    const MAX_STORED: usize = u16::MAX as usize;
    let mut out = Vec::with_capacity(tail.len() + 5 * (tail.len() / MAX_STORED + 1) + 8);
    let mut blocks = tail.chunks(MAX_STORED).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let block_len = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&block_len.to_le_bytes());
        out.extend_from_slice(&(!block_len).to_le_bytes());
        out.extend_from_slice(block);
    }
    crc.update(tail);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&((len + tail.len() as u64) as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(head: &GzipHead, tail: &str) -> String {
        use std::io::Read as _;
        let member = [head.chunks.concat(), head.finish(tail.as_bytes())].concat();
        // MultiGzDecoder would hide a second member; GzDecoder reads exactly one.
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(member.as_slice())
            .read_to_string(&mut decoded)
            .unwrap();
        decoded
    }

    /// A compressor's state, left by one dropped mid-piece, compresses the next one's pieces
    /// as a new state would.
    #[test]
    fn a_kept_state_compresses_as_a_new_one() {
        let text = "a{symbol=\"X\"} 1.0\n".repeat(1_000);
        let fresh = Deflater::new().deflate(text.as_bytes());
        for _ in 0..2 * KEEP_AT_MOST {
            let mut deflater = Deflater::new();
            assert_eq!(deflater.deflate(text.as_bytes()).bytes(), fresh.bytes());
            let encoder = deflater.encoder.as_mut().unwrap();
            encoder.write_all(b"left unfinished").unwrap();
        }
        let again = Deflater::new().deflate(text.as_bytes());
        assert_eq!(again.bytes(), fresh.bytes());
    }

    #[test]
    fn the_head_inflates_back_chunk_by_chunk() {
        let mut rng = fastrand::Rng::with_seed(2);
        let noise: String = (0..40_000).map(|_| rng.alphanumeric()).collect();
        let text = "a{symbol=\"X\"} 1.0\n".repeat(20_000);
        let mut deflater = Deflater::new();
        let pieces = ["a 1\n", noise.as_str(), text.as_str(), "", "b 2\n"]
            .map(|data| deflater.deflate(data.as_bytes()));
        let head = GzipHead::new(pieces);
        assert!(head.chunks.len() > 2, "{} chunks", head.chunks.len());
        let expected = format!("a 1\n{noise}{text}b 2\n");
        let mut inflating = head.inflating();
        assert_eq!(inflating.remaining(), expected.len() as u64);
        let mut plain = Vec::new();
        while let Some(chunk) = inflating.next_chunk() {
            assert!(!chunk.is_empty() && chunk.len() <= Inflating::FRAME);
            plain.extend_from_slice(&chunk);
        }
        assert_eq!(inflating.remaining(), 0);
        assert_eq!(String::from_utf8(plain).unwrap(), expected);
    }

    #[test]
    fn a_piece_compressed_later_goes_between_head_and_tail() {
        use std::io::Read as _;
        let body = "# HELP a A.\n# TYPE a gauge\na 1.0\n".repeat(50);
        let middle_text = "m{x=\"y\"} 2\n".repeat(300);
        let head = GzipHead::new([Deflater::new().deflate(body.as_bytes())]);
        for middle in [
            Deflated::default(),
            Deflater::new().deflate(middle_text.as_bytes()),
        ] {
            let member = [
                head.chunks.concat(),
                middle.bytes().to_vec(),
                head.finish_after(&middle, b"tail 1\n"),
            ]
            .concat();
            let mut decoded = String::new();
            flate2::read::GzDecoder::new(member.as_slice())
                .read_to_string(&mut decoded)
                .unwrap();
            let expected_middle = if middle.bytes().is_empty() {
                ""
            } else {
                middle_text.as_str()
            };
            assert_eq!(decoded, format!("{body}{expected_middle}tail 1\n"));
        }
    }

    #[test]
    fn gzip_head_and_tail_make_one_valid_member() {
        let body = "# HELP a A.\n# TYPE a gauge\na{symbol=\"X\"} 1.0\n".repeat(100);
        let big_tail = "t".repeat(70_000);
        for tail in [
            "",
            "quantum_harvest_exporter_cache_age_seconds 1.5\n",
            big_tail.as_str(),
        ] {
            let head = GzipHead::new([Deflater::new().deflate(body.as_bytes())]);
            assert_eq!(decoded(&head, tail), format!("{body}{tail}"));
        }
    }

    #[test]
    fn pieces_copied_together_are_one_piece() {
        let mut deflater = Deflater::new();
        let [a, b, empty] = ["a 1\n", "b 2\n", ""].map(|data| deflater.deflate(data.as_bytes()));
        let joined = Deflated::concat(&[&a, &empty, &b]);
        let head = GzipHead::new([b.clone(), joined, Deflated::concat(&[]), a]);
        assert_eq!(decoded(&head, "end\n"), "b 2\na 1\nb 2\na 1\nend\n");
    }

    #[test]
    fn pieces_go_together_in_any_order() {
        let shared = "a{symbol=\"X\"} 1.0\n".repeat(1_000);
        let (one, other) = ("# TYPE a counter\n", "# TYPE a gauge\n# UNIT a x\n");
        let mut deflater = Deflater::new();
        let [shared_piece, one_piece, other_piece, empty] =
            [shared.as_str(), one, other, ""].map(|data| deflater.deflate(data.as_bytes()));
        let first = GzipHead::new([one_piece, shared_piece.clone(), empty]);
        let second = GzipHead::new([shared_piece.clone(), other_piece, shared_piece]);
        assert_eq!(decoded(&first, "end\n"), format!("{one}{shared}end\n"));
        assert_eq!(decoded(&second, ""), format!("{shared}{other}{shared}"));
        assert!(
            first.chunks.concat().len() < shared.len() / 10,
            "the shared piece is compressed"
        );
    }

    #[test]
    fn small_pieces_are_sent_together_and_large_ones_as_they_are() {
        let mut rng = fastrand::Rng::with_seed(1);
        let noise: String = (0..30_000).map(|_| rng.alphanumeric()).collect();
        let mut deflater = Deflater::new();
        let [small, large] =
            ["a 1\n", noise.as_str()].map(|data| deflater.deflate(data.as_bytes()));
        assert!(large.bytes().len() >= GzipHead::MIN_CHUNK);
        let head = GzipHead::new([small.clone(), small.clone(), large.clone(), small]);
        assert_eq!(head.chunks.len(), 3);
        assert_eq!(
            head.chunks[1].as_ptr(),
            large.bytes().as_ptr(),
            "not copied"
        );
        assert_eq!(decoded(&head, ""), format!("a 1\na 1\n{noise}a 1\n"));
    }
}

//! Gzip framing for a body compressed once and sent many times: the compressed head is kept,
//! and each scrape closes the member with its own small tail. Knows nothing of what the bytes
//! mean.

use std::io::Write as _;

use bytes::Bytes;
use flate2::{Compression, write::DeflateEncoder};

/// The start of a gzip member: header and the body's deflate data, flushed to a byte boundary but
/// not finished, so that each scrape can close it with its own tail in [`GzipHead::finish`].
/// Hand-written framing (RFC 1951 stored blocks, RFC 1952 trailer): gzip encoders can only
/// start a new member per scrape, and curl reads just the first of several members.
#[derive(Debug)]
pub struct GzipHead {
    pub bytes: Bytes,
    crc: u32,
    len: u64,
}

impl GzipHead {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

    pub fn new(body: &[u8]) -> GzipHead {
        let mut encoder =
            DeflateEncoder::new(Vec::with_capacity(body.len() / 8 + 64), Compression::fast());
        encoder.get_mut().extend_from_slice(&Self::HEADER);
        encoder
            .write_all(body)
            .expect("writing to a Vec cannot fail");
        // Write::flush is a sync flush: it ends the block and aligns to a byte, without BFINAL.
        encoder.flush().expect("writing to a Vec cannot fail");
        let bytes = std::mem::take(encoder.get_mut());
        GzipHead {
            bytes: bytes.into(),
            crc: crc32fast::hash(body),
            len: body.len() as u64,
        }
    }

    /// The rest of the member: `tail` as stored (uncompressed) blocks, the last one final, then
    /// the CRC-32 and length of body and tail together.
    pub fn finish(&self, tail: &[u8]) -> Vec<u8> {
        const MAX_STORED: usize = u16::MAX as usize;
        let mut out = Vec::with_capacity(tail.len() + 5 * (tail.len() / MAX_STORED + 1) + 8);
        let mut blocks = tail.chunks(MAX_STORED).peekable();
        if blocks.peek().is_none() {
            out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        while let Some(block) = blocks.next() {
            let len = block.len() as u16;
            out.push(u8::from(blocks.peek().is_none()));
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        let mut crc = crc32fast::Hasher::new_with_initial_len(self.crc, self.len);
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_head_and_tail_make_one_valid_member() {
        use std::io::Read as _;
        let body = "# HELP a A.\n# TYPE a gauge\na{symbol=\"X\"} 1.0\n".repeat(100);
        let big_tail = "t".repeat(70_000);
        for tail in [
            "",
            "quantum_harvest_exporter_cache_age_seconds 1.5\n",
            big_tail.as_str(),
        ] {
            let head = GzipHead::new(body.as_bytes());
            let member = [head.bytes.to_vec(), head.finish(tail.as_bytes())].concat();
            // MultiGzDecoder would hide a second member; GzDecoder reads exactly one.
            let mut decoded = String::new();
            flate2::read::GzDecoder::new(member.as_slice())
                .read_to_string(&mut decoded)
                .unwrap();
            assert_eq!(decoded, format!("{body}{tail}"));
        }
    }
}

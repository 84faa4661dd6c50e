//! Key discovery: every key under the prefix on one node, found with SCAN, each page's HMGETs
//! sent with the next SCAN. The HMGETs are `reader`'s to write and keep; a cluster's nodes are
//! each discovered by `cluster`.

use super::pipe::Pipe;
use super::reader::Reader;
use crate::fetch::{FetchError, Fetched};

/// Every hash under the prefix on one node, into `fetched`. Each round carries the next SCAN and
/// the HMGETs of the keys the SCAN before it found, and is sent as soon as that SCAN's reply is
/// in, before the HMGET replies ahead of it are parsed: Redis answers one round while the
/// exporter parses the one before. A key SCAN returns twice is read twice; the snapshot keeps
/// one.
pub(super) async fn discover(
    reader: &Reader,
    pipe: &mut impl Pipe,
    fetched: &mut Fetched,
) -> Result<(), FetchError> {
    let pattern = [glob_escape(&reader.prefix), b"*".to_vec()].concat();
    pipe.send(reader, &[], Some((0, &pattern)), fetched).await?;
    // The symbols whose HMGETs the oldest round in flight carries, and whether it scans.
    let mut in_flight: Vec<Vec<u8>> = Vec::new();
    let mut scanning = true;
    loop {
        let (mut cursor, mut found) = (None, Vec::new());
        if scanning {
            let (next, keys) = pipe.take_page(reader).await?;
            cursor = (next != 0).then_some(next);
            found = keys;
            found.retain(|key| key.starts_with(&reader.prefix));
            for key in &mut found {
                key.drain(..reader.prefix.len());
            }
        }
        let more = cursor.is_some() || !found.is_empty();
        if more {
            let scan = cursor.map(|cursor| (cursor, pattern.as_slice()));
            pipe.send(reader, &found, scan, fetched).await?;
        }
        pipe.take_reads(reader, std::mem::take(&mut in_flight), fetched)
            .await?;
        if !more {
            return Ok(());
        }
        in_flight = found;
        scanning = cursor.is_some();
    }
}

/// Escapes the glob characters of SCAN's MATCH so that a prefix is matched literally.
pub(super) fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(prefix.len() + 4);
    for &byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            escaped.push(b'\\');
        }
        escaped.push(byte);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::hashes;

    /// A node whose SCAN pages are given, which records each round sent and each reply taken.
    struct Recorder {
        pages: Vec<Vec<&'static str>>,
        scanned: usize,
        events: Vec<String>,
    }

    fn names(symbols: &[Vec<u8>]) -> String {
        let names: Vec<_> = symbols.iter().map(|s| String::from_utf8_lossy(s)).collect();
        names.join(",")
    }

    impl Pipe for Recorder {
        async fn send(
            &mut self,
            _: &Reader,
            symbols: &[Vec<u8>],
            scan: Option<(u64, &[u8])>,
            _: &mut Fetched,
        ) -> Result<(), FetchError> {
            let scan = scan.map(|(cursor, _)| cursor);
            self.events
                .push(format!("send [{}] scan {scan:?}", names(symbols)));
            Ok(())
        }

        async fn take_page(&mut self, reader: &Reader) -> Result<(u64, Vec<Vec<u8>>), FetchError> {
            let page = self.scanned;
            self.scanned += 1;
            self.events.push(format!("page {page}"));
            let keys = self.pages[page]
                .iter()
                .map(|symbol| [&reader.prefix[..], symbol.as_bytes()].concat())
                .collect();
            let next = if self.scanned < self.pages.len() {
                self.scanned
            } else {
                0
            };
            Ok((next as u64, keys))
        }

        async fn take_reads(
            &mut self,
            _: &Reader,
            symbols: Vec<Vec<u8>>,
            _: &mut Fetched,
        ) -> Result<(), FetchError> {
            self.events.push(format!("reads [{}]", names(&symbols)));
            Ok(())
        }
    }

    /// Each round goes out as soon as the SCAN reply before it is in, before the HMGET replies
    /// ahead of it are taken, so that Redis answers one round while the other is parsed.
    #[tokio::test]
    async fn a_round_is_sent_before_the_replies_ahead_of_it_are_parsed() {
        let reader = Reader {
            prefix: Arc::from(&b"p:"[..]),
            fields: &["kill_score"],
            addr: Arc::from("127.0.0.1:6379"),
        };
        let mut node = Recorder {
            pages: vec![vec!["A", "B"], vec!["C", "A"], vec!["D"]],
            scanned: 0,
            events: Vec::new(),
        };
        let mut fetched = Fetched::default();
        discover(&reader, &mut node, &mut fetched).await.unwrap();
        assert_eq!(
            node.events,
            [
                "send [] scan Some(0)",
                "page 0",
                "send [A,B] scan Some(1)",
                "reads []",
                "page 1",
                "send [C,A] scan Some(2)",
                "reads [A,B]",
                "page 2",
                "send [D] scan None",
                "reads [C,A]",
                "reads [D]",
            ]
        );
        let symbols: Vec<Vec<u8>> = (0..2_500).map(|i| format!("S{i}").into_bytes()).collect();
        node.events.clear();
        hashes::read(&reader, &mut node, &symbols, &mut fetched)
            .await
            .unwrap();
        let rounds: Vec<String> = node
            .events
            .iter()
            .map(|event| event.split(" [").next().unwrap().to_owned())
            .collect();
        assert_eq!(rounds, ["send", "send", "reads", "send", "reads", "reads"]);
    }

    #[test]
    fn glob_characters_in_the_prefix_are_literal() {
        assert_eq!(
            glob_escape(b"quantum:harvest:proposal:"),
            b"quantum:harvest:proposal:"
        );
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }
}

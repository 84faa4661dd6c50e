use proptest::prelude::*;

use super::resp::MAX_DEPTH;
use super::*;
use crate::measure::measure;

fn whole(input: &[u8]) -> Frame<'_> {
    let (frame, used) = parse(input, 0).unwrap().expect("complete");
    assert_eq!(used, input.len());
    frame
}

#[test]
fn replies_parse_when_whole_and_wait_for_more_otherwise() {
    let reply = b"*3\r\n$3\r\n0.5\r\n$-1\r\n$0\r\n\r\n";
    let Frame::Array(items) = whole(reply) else {
        panic!("an array");
    };
    let items: Vec<Option<&[u8]>> = items
        .map(|item| match item {
            Frame::Bytes(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(items, [Some(&b"0.5"[..]), None, Some(&b""[..])]);
    for cut in 0..reply.len() {
        assert!(parse(&reply[..cut], 0).unwrap().is_none(), "{cut}");
    }
    let followed = [&reply[..], b"+OK\r\n"].concat();
    assert_eq!(parse(&followed, 0).unwrap().unwrap().1, reply.len());
}

/// The one-pass read of an HMGET reply agrees with `parse` on every reply, whole or cut
/// short: the same values, incomplete where it is, or the reply left to `parse` when it is
/// not an array of bulk strings and nils.
#[test]
fn hmget_values_agree_with_parse() {
    let values = |input| {
        let mut slots = [None; MAX_FIELDS];
        match hmget_values(input, &mut slots) {
            Ok(Some(Values::Whole { count, used })) => {
                Ok(Some(Some((slots[..count].to_vec(), used))))
            }
            Ok(Some(Values::Other)) => Ok(Some(None)),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        }
    };
    let parsed = |input| match parse(input, 0) {
        Ok(Some((Frame::Array(items), used))) => {
            let items: Option<Vec<_>> = items
                .map(|item| match item {
                    Frame::Bytes(bytes) => Some(Some(bytes)),
                    Frame::Nil => Some(None),
                    _ => None,
                })
                .collect();
            Ok(Some(items.map(|items| (items, used))))
        }
        Ok(Some(_)) => Ok(Some(None)),
        Ok(None) => Ok(None),
        Err(error) => Err(error),
    };
    for reply in [
        &b"*3\r\n$3\r\n0.5\r\n$-1\r\n$0\r\n\r\n+OK\r\n"[..],
        b"*0\r\n",
        b"*-1\r\n",
        b"-WRONGTYPE no\r\n",
        b"*2\r\n$1\r\na\r\n:1\r\n",
        b"*1\r\n*1\r\n$1\r\na\r\n",
        b"*1\r\n$3\r\nabcde\r\n",
        b"*1\r\n$-2\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$1\rx",
    ] {
        for cut in 0..=reply.len() {
            let input = &reply[..cut];
            match (values(input), parsed(input)) {
                (Ok(Some(Some(ours))), Ok(Some(Some(theirs)))) => assert_eq!(ours, theirs),
                // Left to `parse`, which may also find it incomplete.
                (Ok(Some(None)), Ok(Some(None) | None) | Err(_)) => {}
                (Ok(None), Ok(None)) => {}
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{input:?}: {ours:?} against {theirs:?}"),
            }
        }
    }
}

#[test]
fn scan_pages_errors_and_integers() {
    let page = b"*2\r\n$2\r\n17\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
    let Frame::Array(mut parts) = whole(page) else {
        panic!("an array");
    };
    assert!(matches!(parts.next(), Some(Frame::Bytes(b"17"))));
    assert!(matches!(parts.next(), Some(Frame::Array(keys)) if keys.clone().count() == 2));
    assert!(matches!(
        whole(b"-WRONGTYPE no\r\n"),
        Frame::Error(b"WRONGTYPE no")
    ));
    assert!(matches!(whole(b":42\r\n"), Frame::Integer));
    assert!(matches!(whole(b"*-1\r\n"), Frame::Nil));
    match server_error(b"WRONGTYPE Operation against a key") {
        Value::ServerError(error) => assert_eq!(error.code(), "WRONGTYPE"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for garbage in [
        &b"?what\r\n"[..],
        b"$abc\r\n",
        b"$3\r\nabcde\r\n",
        b"\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        b"$1\rx",
        b":12a\r\n",
        b"*99999999999999999999\r\n",
    ] {
        assert!(parse(garbage, 0).is_err(), "{garbage:?}");
    }
}

#[test]
fn commands_are_arrays_of_bulk_strings() {
    let mut out = Vec::new();
    array(&mut out, 3);
    bulk(&mut out, &[b"HMGET"]);
    bulk(&mut out, &[b"k"]);
    bulk(&mut out, &[b""]);
    assert_eq!(out, b"*3\r\n$5\r\nHMGET\r\n$1\r\nk\r\n$0\r\n\r\n");
    assert_eq!(
        out,
        redis::cmd("HMGET").arg("k").arg("").get_packed_command()
    );
}

/// A RESP2 reply as a test writes it: the shapes `wire` reads (SCAN pages, HMGET arrays of bulk
/// strings and nils, error replies) and those it does not expect (integers, simple strings,
/// arrays nested deeper).
#[derive(Clone, Debug)]
enum Reply {
    Nil,
    NilArray,
    Bulk(Vec<u8>),
    Simple(String),
    Error(String),
    Integer(i64),
    Array(Vec<Reply>),
}

impl Reply {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Bulk(bytes) => bulk(out, &[bytes]),
            Reply::Simple(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Reply::Error(text) => out.extend_from_slice(format!("-{text}\r\n").as_bytes()),
            Reply::Integer(value) => out.extend_from_slice(format!(":{value}\r\n").as_bytes()),
            Reply::Array(items) => {
                array(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// What a reply says, written the same for both readers: `wire`'s frame and the crate's value
/// map onto it. An integer's value is not kept by `wire`, which none of its commands expect.
#[derive(Debug, PartialEq)]
enum Said {
    Nil,
    Bytes(Vec<u8>),
    Error(Vec<u8>),
    Integer,
    Array(Vec<Said>),
}

fn ours(frame: Frame<'_>) -> Said {
    match frame {
        Frame::Nil => Said::Nil,
        Frame::Bytes(bytes) => Said::Bytes(bytes.to_vec()),
        Frame::Error(line) => Said::Error(line.to_vec()),
        Frame::Integer => Said::Integer,
        Frame::Array(items) => Said::Array(items.map(ours).collect()),
    }
}

fn theirs(value: Value) -> Said {
    match value {
        Value::Nil => Said::Nil,
        Value::Okay => Said::Bytes(b"OK".to_vec()),
        Value::SimpleString(text) => Said::Bytes(text.into_bytes()),
        Value::BulkString(bytes) => Said::Bytes(bytes),
        Value::Int(_) => Said::Integer,
        Value::ServerError(error) => {
            let mut line = error.code().as_bytes().to_vec();
            if let Some(details) = error.details() {
                line.push(b' ');
                line.extend_from_slice(details.as_bytes());
            }
            Said::Error(line)
        }
        Value::Array(items) => Said::Array(items.into_iter().map(theirs).collect()),
        other => panic!("not a RESP2 value: {other:?}"),
    }
}

/// What `hmget_values` read, as an array reply says it.
fn said_values(slots: &[Option<&[u8]>]) -> Said {
    Said::Array(
        slots
            .iter()
            .map(|slot| slot.map_or(Said::Nil, |value| Said::Bytes(value.to_vec())))
            .collect(),
    )
}

/// The crate's reading of a whole reply.
fn crate_reads(bytes: &[u8]) -> Said {
    theirs(redis::parse_redis_value(bytes).expect("the crate reads what the test wrote"))
}

fn line_text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn scalar() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Nil),
        Just(Reply::NilArray),
        // Binary values, CRLF inside them included: a bulk string's length, not a line end,
        // says where it stops.
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
        proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..8)
            .prop_map(Reply::Bulk),
        line_text().prop_map(Reply::Simple),
        ("[A-Z]{1,10}", proptest::option::of(line_text())).prop_map(|(code, details)| {
            Reply::Error(match details {
                Some(details) => format!("{code} {details}"),
                None => code,
            })
        }),
        // Lengths and integers past 18 digits are refused (see `number`); no reply of the
        // commands sent here comes near them.
        (-999_999_999_999_999_999..=999_999_999_999_999_999i64).prop_map(Reply::Integer),
    ]
}

/// Any reply, arrays nested up to `MAX_DEPTH` deep, the most `wire` reads.
fn reply() -> impl Strategy<Value = Reply> {
    scalar().prop_recursive(MAX_DEPTH as u32, 64, 8, |inner| {
        proptest::collection::vec(inner, 0..8).prop_map(Reply::Array)
    })
}

/// A SCAN page: the next cursor and the keys.
fn scan_reply() -> impl Strategy<Value = Reply> {
    (
        any::<u64>(),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..20),
    )
        .prop_map(|(cursor, keys)| {
            Reply::Array(vec![
                Reply::Bulk(cursor.to_string().into_bytes()),
                Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
            ])
        })
}

/// An HMGET reply: a value or a nil per field.
fn hmget_reply() -> impl Strategy<Value = Reply> {
    let value = prop_oneof![
        Just(Reply::Nil),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
        "[-0-9.e]{0,12}".prop_map(|v| Reply::Bulk(v.into_bytes())),
    ];
    proptest::collection::vec(value, 0..=MAX_FIELDS).prop_map(Reply::Array)
}

fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![reply(), scan_reply(), hmget_reply()]
}

/// Places to cut a run of bytes, as reads from a socket would: sorted, within `len`.
fn cuts(len: usize, picks: &[proptest::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|pick| pick.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// A connection whose reads hand out the bytes in the pieces given, then end; what is written
/// to it is dropped.
struct Pieces(std::collections::VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let room = buf.remaining();
            if piece.len() > room {
                self.0.push_front(piece.split_off(room));
            }
            buf.put_slice(&piece);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pieces {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn wire_over(pieces: Vec<Vec<u8>>) -> Wire {
    Wire {
        stream: Box::new(Pieces(pieces.into())),
        input: Vec::new(),
        start: 0,
        output: Vec::new(),
        response_timeout: Duration::from_secs(5),
    }
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut from = 0;
    // A socket's read gives at least a byte, or none at the end.
    for &cut in cuts.iter().chain([&bytes.len()]) {
        if cut > from {
            pieces.push(bytes[from..cut].to_vec());
            from = cut;
        }
    }
    pieces
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::render::tests::fuzz_cases(),
        ..ProptestConfig::default()
    })]

    /// Replies pipelined one after another and delivered in arbitrary pieces: `wire` reads each
    /// as the crate does, and a connection that ends early is an error, not a wrong value.
    #[test]
    fn wire_reads_what_the_crate_reads(
        replies in proptest::collection::vec(any_reply(), 1..6),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        truncate in any::<proptest::sample::Index>(),
    ) {
        let streamed: Vec<u8> = replies.iter().flat_map(Reply::bytes).collect();
        let cuts = cuts(streamed.len(), &picks);
        runtime().block_on(async {
            let mut wire = wire_over(split(&streamed, &cuts));
            for reply in &replies {
                let frame = wire.next_frame().await.expect("a whole reply");
                prop_assert_eq!(ours(frame), crate_reads(&reply.bytes()));
            }
            prop_assert!(wire.next_frame().await.is_err(), "nothing more to read");

            let short = &streamed[..truncate.index(streamed.len())];
            let mut wire = wire_over(split(short, &cuts.iter().copied().filter(|c| *c < short.len()).collect::<Vec<_>>()));
            let mut offset = 0;
            for reply in &replies {
                let bytes = reply.bytes();
                if offset + bytes.len() > short.len() {
                    prop_assert!(wire.next_frame().await.is_err(), "a reply cut short");
                    break;
                }
                let frame = wire.next_frame().await.expect("a whole reply");
                prop_assert_eq!(ours(frame), crate_reads(&bytes));
                offset += bytes.len();
            }
            Ok(())
        })?;
    }

    /// The one-pass HMGET read gives the crate's values for every HMGET reply, waits on every
    /// prefix of it, and hands any other reply on whole.
    #[test]
    fn hmget_values_read_what_the_crate_reads(reply in prop_oneof![hmget_reply(), reply()]) {
        let bytes = reply.bytes();
        for cut in 0..bytes.len() {
            let mut slots = [None; MAX_FIELDS];
            match hmget_values(&bytes[..cut], &mut slots) {
                Ok(None) | Ok(Some(Values::Other)) => {}
                Ok(Some(Values::Whole { .. })) => prop_assert!(false, "whole at {cut} of {}", bytes.len()),
                Err(error) => prop_assert!(false, "{error} at {cut}"),
            }
        }
        let mut slots = [None; MAX_FIELDS];
        match hmget_values(&bytes, &mut slots).expect("a valid reply").expect("whole") {
            Values::Whole { count, used } => {
                prop_assert_eq!(used, bytes.len());
                let values = said_values(&slots[..count]);
                prop_assert_eq!(values, crate_reads(&bytes));
            }
            Values::Other => {
                let hmget_shaped = matches!(&reply, Reply::Array(items)
                    if items.len() <= MAX_FIELDS
                        && items.iter().all(|item| matches!(item, Reply::Nil | Reply::Bulk(_))));
                prop_assert!(!hmget_shaped, "an HMGET reply handed on: {:?}", reply);
            }
        }
    }

    /// Bytes changed at random in a valid reply: `wire` may find an error or want more, but
    /// whatever it does read, the crate reads the same from the same bytes.
    #[test]
    fn corrupt_replies_are_errors_never_wrong_values(
        reply in any_reply(),
        changes in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = reply.bytes();
        for (at, byte) in changes {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(Some((frame, used))) = parse(&bytes, 0) {
            let read = ours(frame);
            let crate_read = redis::parse_redis_value(&bytes[..used]).map(theirs);
            prop_assert!(crate_read.as_ref().is_ok_and(|said| *said == read),
                "{bytes:?}: wire read {read:?}, the crate {crate_read:?}");
        }
        let mut slots = [None; MAX_FIELDS];
        if let Ok(Some(Values::Whole { count, used })) = hmget_values(&bytes, &mut slots) {
            let values = said_values(&slots[..count]);
            let crate_read = redis::parse_redis_value(&bytes[..used]).map(theirs);
            prop_assert!(crate_read.as_ref().is_ok_and(|said| *said == values),
                "{bytes:?}: wire read {values:?}, the crate {crate_read:?}");
        }
    }

    /// Arrays nested deeper than any reply read here are an error, not a stack to overflow.
    #[test]
    fn nesting_past_the_limit_is_an_error(depth in MAX_DEPTH + 1..64usize) {
        let mut reply = Reply::Integer(1);
        for _ in 0..depth {
            reply = Reply::Array(vec![reply]);
        }
        prop_assert!(parse(&reply.bytes(), 0).is_err());
    }
}

/// A bulk string longer than the buffer may hold: the read stops with an error once
/// `MAX_BUFFERED` bytes are waiting, and never holds more.
#[test]
fn an_oversized_reply_is_refused() {
    let mut pieces = vec![b"$100000000\r\n".to_vec()];
    pieces.extend(std::iter::repeat_n(vec![b'x'; 1 << 20], 80));
    runtime().block_on(async {
        let mut wire = wire_over(pieces);
        let error = wire.next_frame().await.expect_err("too large");
        assert_eq!(error.to_string(), "reply too large");
        assert!(wire.input.len() <= MAX_BUFFERED + 64 * 1024);
    });
}

/// The benchmark `scripts/bench` runs (`--ignored`, in a release build): the replies of a
/// 10,000-symbol refresh (ten SCAN pages and an HMGET of every proposal field per symbol, the
/// seed's example values), read by `wire` and by the crate's parser, as it would read them
/// from its connection. Prints `scripts/bench`'s result lines: CPU and allocations of each.
#[test]
#[ignore = "a benchmark: scripts/bench runs it in a release build"]
fn reader_against_the_crate() {
    const SYMBOLS: usize = 10_000;
    let keys = crate::proposal::keys();
    let value = |field: &str| -> Reply {
        match field {
            "harvest_action" | "action" => Reply::Bulk(b"PARTIAL_25".to_vec()),
            "computed_at_utc" => Reply::Bulk(b"2026-01-23T00:58:58.123456+00:00".to_vec()),
            "reason_codes" | "position_side" => Reply::Nil,
            _ => Reply::Bulk(b"0.7533012950554003".to_vec()),
        }
    };
    let mut replies = Vec::new();
    for page in 0..SYMBOLS / 1_000 {
        let keys = (0..1_000).map(|i| {
            Reply::Bulk(format!("quantum:harvest:proposal:SYM{:05}USDT", page * 1_000 + i).into())
        });
        Reply::Array(vec![
            Reply::Bulk(b"1234".to_vec()),
            Reply::Array(keys.collect()),
        ])
        .encode(&mut replies);
    }
    let hmget = Reply::Array(keys.iter().map(|field| value(field)).collect()).bytes();
    for _ in 0..SYMBOLS {
        replies.extend_from_slice(&hmget);
    }
    let pages = SYMBOLS / 1_000;

    let (ours_ns, ours_allocations, ours_items) = measure(20, || {
        let mut rest = &replies[..];
        let mut fields = 0;
        for _ in 0..pages {
            let (frame, used) = parse(rest, 0).unwrap().unwrap();
            let Frame::Array(mut parts) = frame else {
                panic!("a SCAN page")
            };
            fields += usize::from(matches!(parts.next(), Some(Frame::Bytes(_))));
            let Some(Frame::Array(keys)) = parts.next() else {
                panic!("keys")
            };
            fields += keys.count();
            rest = &rest[used..];
        }
        while !rest.is_empty() {
            let mut slots = [None; MAX_FIELDS];
            let Ok(Some(Values::Whole { count, used })) = hmget_values(rest, &mut slots) else {
                panic!("an HMGET reply")
            };
            fields += slots[..count].iter().flatten().count();
            rest = &rest[used..];
        }
        fields
    });
    let (crate_ns, crate_allocations, crate_items) = measure(20, || {
        let mut parser = redis::Parser::new();
        let mut rest = &replies[..];
        let mut fields = 0;
        // The parser reads ahead into a buffer of its own: replies are counted, not bytes.
        for _ in 0..pages + SYMBOLS {
            match parser.parse_value(&mut rest).unwrap() {
                Value::Array(items) => {
                    for item in items {
                        match item {
                            Value::BulkString(_) => fields += 1,
                            Value::Array(keys) => fields += keys.len(),
                            _ => {}
                        }
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        fields
    });
    assert_eq!(ours_items, crate_items, "both readers read the same");
    for (key, value) in [
        ("symbols", SYMBOLS as u64),
        ("reply_bytes", replies.len() as u64),
        ("values", ours_items as u64),
        ("wire_cpu_ns", ours_ns),
        ("wire_allocations", ours_allocations),
        ("crate_cpu_ns", crate_ns),
        ("crate_allocations", crate_allocations),
    ] {
        println!("-\treader\t{key}\t{value}");
    }
}

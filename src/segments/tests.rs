//! The tests of `segments`: what is kept and what is rendered again, and a property that any
//! sequence of changes, applied piece by piece, serves the body a whole render writes, in both
//! formats, plain and compressed.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::piece::MIN_SHARED;
use super::*;
use crate::exposition::Segment;
use crate::exposition_check::{check_exposition, check_open_metrics};
use crate::gzip::GzipHead;
use crate::proposal;
use crate::render;
use crate::render::tests::{field_name, field_value, fuzz_cases, golden_snapshot, symbol_bytes};

use crate::fixtures::RENDERED_AT as NOW;

type Hashes = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

/// A snapshot of these hashes, with unknown actions bounded as a read bounds them, across
/// symbols (so a change to one symbol can change how another renders).
fn snapshot_of(hashes: &Hashes) -> Snapshot {
    let mut snapshot = Snapshot::empty(Duration::from_secs(5), Instant::now());
    snapshot.proposals = hashes
        .iter()
        .map(|(symbol, fields)| Arc::new(proposal::parse_pairs(symbol.clone(), fields)))
        .collect();
    proposal::bound_unknown_actions(&mut snapshot.proposals, 2);
    snapshot
}

fn hashes(count: usize, kill_score: &str) -> Hashes {
    (0..count)
        .map(|i| {
            let fields = vec![
                (b"kill_score".to_vec(), kill_score.as_bytes().to_vec()),
                (
                    b"computed_at_utc".to_vec(),
                    b"2026-01-23T00:58:58Z".to_vec(),
                ),
            ];
            (format!("S{i:04}"), fields)
        })
        .collect()
}

/// Segments of blocks of `block` symbols that hold the plain text at any size.
fn with_block(block: usize) -> Segments {
    Segments::with_sizes(block, usize::MAX)
}

fn served(segments: &Segments, format: Format) -> Vec<u8> {
    let pieces = segments.plain(format).expect("the plain text is held");
    pieces.flat_map(|p| p.to_vec()).collect()
}

fn inflated(segments: &Segments, format: Format) -> Vec<u8> {
    let head = GzipHead::new(segments.deflated(format).cloned());
    let member = [head.chunks.concat(), head.finish(b"")].concat();
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(member.as_slice())
        .read_to_end(&mut decoded)
        .unwrap();
    decoded
}

/// Each format's body, as a whole render writes it.
fn rendered(snapshot: &Snapshot, now_unix: f64) -> [(Format, Vec<u8>); 2] {
    let body = render::render(snapshot, now_unix);
    let open_metrics = body.assembled(Format::OpenMetrics, 0);
    [
        (Format::Text, body.text),
        (Format::OpenMetrics, open_metrics),
    ]
}

fn chunk_addresses(segments: &Segments) -> Vec<*const u8> {
    segments
        .blocks
        .iter()
        .flat_map(|b| &b.pieces)
        .filter(|p| !p.is_empty())
        .map(|p| p.deflated.bytes().as_ptr())
        .collect()
}

/// How many of `next`'s blocks' pieces are not `previous`'s (the exporter's always are).
fn new_pieces(previous: &Segments, next: &Segments) -> usize {
    let before = chunk_addresses(previous);
    chunk_addresses(next)
        .iter()
        .filter(|address| !before.contains(address))
        .count()
}

#[test]
fn the_golden_snapshot_is_served_as_rendered() {
    let snapshot = golden_snapshot();
    for block in [1, 2, BLOCK] {
        let segments = with_block(block).next(&[], &snapshot, NOW, Ages::Renewed);
        for (format, expected) in rendered(&snapshot, NOW) {
            assert_eq!(served(&segments, format), expected, "{format:?}");
            assert_eq!(inflated(&segments, format), expected, "{format:?}");
        }
    }
}

#[test]
fn a_change_renders_only_its_block_and_time_only_the_data_ages() {
    let before = snapshot_of(&hashes(100, "0.5"));
    let first = with_block(10).next(&[], &before, NOW, Ages::Renewed);
    assert_eq!(first.blocks.len(), 10);

    let mut changed = hashes(100, "0.5");
    changed.get_mut("S0042").unwrap()[0].1 = b"0.9".to_vec();
    let after = snapshot_of(&changed);
    let second = first.next(&before.proposals, &after, NOW, Ages::Renewed);
    // The seed's 8 gauges, the action and the data age of S0040 to S0049.
    assert_eq!(new_pieces(&first, &second), 10);
    assert_eq!(served(&second, Format::Text), rendered(&after, NOW)[0].1);

    // Nothing changed but the time: only the data ages are rendered again, in every block.
    let third = second.next(&after.proposals, &after, NOW + 1.0, Ages::Renewed);
    assert_eq!(new_pieces(&second, &third), 10);
    assert_eq!(
        served(&third, Format::Text),
        rendered(&after, NOW + 1.0)[0].1
    );
    let fourth = third.next(&after.proposals, &after, NOW + 1.0, Ages::Renewed);
    assert_eq!(new_pieces(&third, &fourth), 0);
}

/// Between full refreshes, a change renders its own block's data ages at its time, and keeps
/// the other blocks' as the last full refresh rendered them.
#[test]
fn changes_between_full_refreshes_keep_the_other_blocks_data_ages() {
    let before = snapshot_of(&hashes(100, "0.5"));
    let first = with_block(10).next(&[], &before, NOW, Ages::Renewed);
    let mut changed = hashes(100, "0.5");
    changed.get_mut("S0042").unwrap()[0].1 = b"0.9".to_vec();
    let after = snapshot_of(&changed);
    let second = first.next(&before.proposals, &after, NOW + 1.0, Ages::Kept);
    // The seed's 8 gauges, the action and the data age of S0040 to S0049 only.
    assert_eq!(new_pieces(&first, &second), 10);
    let body = String::from_utf8(served(&second, Format::Text)).unwrap();
    let ages: Vec<&str> = body
        .lines()
        .filter(|line| line.starts_with("quantum_harvest_data_age_seconds{"))
        .collect();
    let age_of = |symbol: &str| {
        let prefix = format!("quantum_harvest_data_age_seconds{{symbol=\"{symbol}\"}} ");
        let line = ages.iter().find(|line| line.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse::<f64>().unwrap()
    };
    assert_eq!(age_of("S0041") - age_of("S0039"), 1.0);
    assert_eq!(age_of("S0050"), age_of("S0039"));
    // Everything else is the whole render's at either time.
    let at_either = |line: &str| {
        rendered(&after, NOW)[0]
            .1
            .split(|b| *b == b'\n')
            .any(|l| l == line.as_bytes())
            || rendered(&after, NOW + 1.0)[0]
                .1
                .split(|b| *b == b'\n')
                .any(|l| l == line.as_bytes())
    };
    assert!(body.lines().all(at_either));
    // The next full refresh renders them all at its time again.
    let third = second.next(&after.proposals, &after, NOW + 2.0, Ages::Renewed);
    assert_eq!(
        String::from_utf8(served(&third, Format::Text)).unwrap(),
        String::from_utf8(rendered(&after, NOW + 2.0)[0].1.clone()).unwrap()
    );
}

/// The compressed samples go a group of blocks at a time; a change copies one group again.
#[test]
fn a_change_copies_only_its_group_of_compressed_blocks() {
    let before = snapshot_of(&hashes(100, "0.5"));
    let first = with_block(2).next(&[], &before, NOW, Ages::Renewed);
    assert_eq!(first.groups[0].len(), 4, "50 blocks");
    let mut changed = hashes(100, "0.5");
    changed.get_mut("S0042").unwrap()[0].1 = b"0.9".to_vec();
    let after = snapshot_of(&changed);
    let second = first.next(&before.proposals, &after, NOW, Ages::Renewed);
    let addresses = |segments: &Segments| -> Vec<*const u8> {
        segments
            .deflated(Format::Text)
            .map(|d| d.bytes().as_ptr())
            .collect()
    };
    let before_addresses = addresses(&first);
    let copied = addresses(&second)
        .iter()
        .filter(|a| !before_addresses.contains(a))
        .count();
    // A group in each of the 10 families S0042's block has samples in, and the exporter's run.
    assert_eq!(copied, 10 + second.exporter.len());
    for (format, expected) in rendered(&after, NOW) {
        assert_eq!(inflated(&second, format), expected, "{format:?}");
    }
}

#[test]
fn blocks_stay_near_their_size_as_symbols_come_and_go() {
    let mut hashes = hashes(40, "0.5");
    let mut snapshot = snapshot_of(&hashes);
    let mut segments = with_block(8).next(&[], &snapshot, NOW, Ages::Renewed);
    for i in 0..200 {
        // Symbols that sort between the others, then most of them gone again.
        if i < 100 {
            hashes.insert(format!("S0020-{i:03}"), Vec::new());
        } else {
            hashes.remove(&format!("S0020-{:03}", i - 100));
            hashes.remove(&format!("S{:04}", i - 100));
        }
        let next = snapshot_of(&hashes);
        segments = segments.next(&snapshot.proposals, &next, NOW, Ages::Renewed);
        snapshot = next;
        let lens: Vec<usize> = segments.blocks.iter().map(|b| b.len).collect();
        assert_eq!(lens.iter().sum::<usize>(), snapshot.proposals.len());
        assert!(lens.iter().all(|len| (1..12).contains(len)), "{lens:?}");
    }
    assert!(snapshot.proposals.is_empty());
    assert!(segments.blocks.is_empty());
    assert_eq!(
        served(&segments, Format::Text),
        rendered(&snapshot, NOW)[0].1
    );
}

/// A snapshot's proposals are sorted; were they not, the body would still be what it says.
#[test]
fn proposals_out_of_order_are_still_served_as_rendered() {
    let sorted = snapshot_of(&hashes(50, "0.5"));
    let mut reversed = snapshot_of(&hashes(50, "0.5"));
    reversed.proposals.reverse();
    let first = with_block(4).next(&[], &sorted, NOW, Ages::Renewed);
    let second = first.next(&sorted.proposals, &reversed, NOW, Ages::Renewed);
    let third = second.next(&reversed.proposals, &sorted, NOW, Ages::Renewed);
    assert_eq!(served(&second, Format::Text), rendered(&reversed, NOW)[0].1);
    assert_eq!(served(&third, Format::Text), rendered(&sorted, NOW)[0].1);
}

/// One publication's worth of changes to the hashes.
#[derive(Clone, Debug)]
enum Change {
    /// A symbol written whole, new or not.
    Write(String, Vec<(Vec<u8>, Vec<u8>)>),
    /// One field of the symbol at this position (modulo their number) written.
    Edit(usize, Vec<u8>, Vec<u8>),
    /// The symbol at this position deleted.
    Delete(usize),
}

/// Symbols that sort among each other, so that new ones land inside blocks, and now and then
/// any valid symbol at all.
fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-D][0-9]{0,2}",
        1 => symbol_bytes().prop_filter_map("not a valid symbol", |bytes| {
            proposal::parse_symbol(bytes).ok()
        }),
    ]
}

/// Mostly the fields read and values that render alike or nearly (zero and negative zero, an
/// unknown action that another symbol's may push out of the bound), sometimes anything.
fn field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = prop_oneof![
        4 => proptest::sample::select(proposal::keys().to_vec()).prop_map(|k| k.as_bytes().to_vec()),
        1 => field_name(),
    ];
    let value = prop_oneof![
        4 => proptest::sample::select(vec![
            "0", "-0", "0.5", "NaN", "-inf", "None", "", "1", "HOLD", "WAIT", "EXIT",
            "PARTIAL_25", "2026-01-23T00:58:58Z", "2026-01-23T00:59:00.5Z",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        1 => field_value(),
    ];
    (name, value)
}

/// A hash's fields, half of them with a `computed_at_utc`, whose data age moves with the time.
fn fields() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    (proptest::collection::vec(field(), 0..10), any::<bool>()).prop_map(|(mut fields, dated)| {
        if dated {
            fields.push((
                b"computed_at_utc".to_vec(),
                b"2026-01-23T00:58:58Z".to_vec(),
            ));
        }
        fields
    })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        2 => (symbol(), fields()).prop_map(|(symbol, fields)| Change::Write(symbol, fields)),
        3 => (any::<usize>(), field()).prop_map(|(at, (name, value))| Change::Edit(at, name, value)),
        1 => any::<usize>().prop_map(Change::Delete),
    ]
}

/// The symbol at position `at`, modulo their number.
fn nth(hashes: &Hashes, at: usize) -> Option<String> {
    let count = hashes.len();
    (count > 0).then(|| hashes.keys().nth(at % count).unwrap().clone())
}

proptest! {
    // Each case publishes several times: a quarter of the cases makes as many bodies as the
    // other properties check.
    #![proptest_config(ProptestConfig { cases: fuzz_cases().div_ceil(4), ..ProptestConfig::default() })]

    #[test]
    fn any_changes_served_piece_by_piece_are_the_whole_render(
        initial in proptest::collection::btree_map(symbol(), fields(), 0..30),
        steps in proptest::collection::vec(
            (proptest::collection::vec(change(), 0..6), 0..3_u8),
            1..6,
        ),
        block in 1..6_usize,
        plain_up_to in 0..40_usize,
    ) {
        let mut hashes = initial;
        let mut now = NOW;
        let mut snapshot = snapshot_of(&hashes);
        let first = Segments::with_sizes(block, plain_up_to);
        let mut segments = first.next(&[], &snapshot, now, Ages::Renewed);
        for (changes, seconds) in steps {
            for change in changes {
                match change {
                    Change::Write(symbol, fields) => {
                        hashes.insert(symbol, fields);
                    }
                    Change::Edit(at, name, value) => {
                        if let Some(symbol) = nth(&hashes, at) {
                            let fields = hashes.get_mut(&symbol).unwrap();
                            // Of two equal fields the first wins, so the edit goes first.
                            fields.insert(0, (name, value));
                        }
                    }
                    Change::Delete(at) => {
                        if let Some(symbol) = nth(&hashes, at) {
                            hashes.remove(&symbol);
                        }
                    }
                }
            }
            now += f64::from(seconds);
            let next = snapshot_of(&hashes);
            segments = segments.next(&snapshot.proposals, &next, now, Ages::Renewed);
            snapshot = next;
            let lens: Vec<usize> = segments.blocks.iter().map(|b| b.len).collect();
            prop_assert_eq!(lens.iter().sum::<usize>(), snapshot.proposals.len());
            for (format, expected) in rendered(&snapshot, now) {
                let held = snapshot.proposals.len() <= plain_up_to;
                prop_assert_eq!(segments.plain(format).is_some(), held);
                if held {
                    prop_assert_eq!(&served(&segments, format), &expected, "{:?}", format);
                }
                prop_assert_eq!(&inflated(&segments, format), &expected, "{:?}", format);
            }
        }
        let [(_, text), (_, open_metrics)] = rendered(&snapshot, now);
        check_exposition(&String::from_utf8(text).unwrap()).map_err(TestCaseError::fail)?;
        let open_metrics = String::from_utf8(open_metrics).unwrap() + "# EOF\n";
        check_open_metrics(&open_metrics).map_err(TestCaseError::fail)?;
    }
}

/// The publisher's fields for `count` symbols, with values that differ from symbol to symbol
/// as real ones do.
fn realistic(count: usize) -> Hashes {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut number = |scale: f64| format!("{:.4}", rng.f64() * scale).into_bytes();
    (0..count)
        .map(|i| {
            let mut fields: Vec<(Vec<u8>, Vec<u8>)> = [
                "kill_score",
                "k_sigma_spike",
                "k_ts_drop",
                "k_age_penalty",
                "R_net",
                "new_sl_proposed",
                "risk_unit",
                "cost_est",
                "sigma",
                "p_trend",
                "p_mr",
                "p_chop",
                "position_age_sec",
                "position_current_price",
                "position_entry_price",
                "position_unrealized_pnl",
            ]
            .into_iter()
            .map(|name| (name.as_bytes().to_vec(), number(100.0)))
            .collect();
            for (name, value) in [
                ("k_regime_flip", "0.0"),
                ("harvest_action", "PARTIAL_50"),
                ("last_update_epoch", "1769130500"),
                ("computed_at_utc", "2026-01-23T00:58:58.259371"),
            ] {
                fields.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
            (format!("SYM{i:06}USDT"), fields)
        })
        .collect()
}

/// The median of `runs` timings of `f`, in milliseconds, each run on a fresh `input`; what it
/// returns is dropped after the timing, as a publication is dropped elsewhere.
fn median_ms<T, R>(runs: usize, input: impl Fn() -> T, f: impl Fn(T) -> R) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let input = input();
            let started = Instant::now();
            let output = std::hint::black_box(f(input));
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            drop(output);
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// What publishing costs, whole and piece by piece, at three sizes. A measurement to run by
/// hand, in a release build; it prints and asserts nothing:
/// `cargo test --release --lib segments::tests::publishing_costs -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand in a release build"]
fn publishing_costs() {
    use crate::published::Published;
    println!(
        "symbols | render+gzip whole (the former way) | first publication | nothing changed | \
         only the time moved | one symbol changed | all changed | snapshot clone | gzip whole / in pieces | \
         chunks plain, gzip"
    );
    for count in [1_000, 10_000, 100_000] {
        let runs = if count > 10_000 { 3 } else { 9 };
        let mut hashes = realistic(count);
        let before = snapshot_of(&hashes);
        let whole = |snapshot: Snapshot| {
            let body = render::render(&snapshot, NOW);
            let mut deflater = Deflater::new();
            let mut compressed = 0;
            for segment in body.segments(MIN_SHARED) {
                compressed += match segment {
                    Segment::Shared(range) => deflater.deflate(&body.text[range]).bytes().len(),
                    Segment::Own { text, open_metrics } => {
                        deflater.deflate(&open_metrics);
                        deflater.deflate(&text).bytes().len()
                    }
                };
            }
            compressed
        };
        let whole_gzip = whole(before.clone());
        let first = Published::new(before.clone(), NOW, crate::history::Shared::off());
        let text = first.body(Format::Text);
        let pieces_gzip: usize = text.gzip.chunks.iter().map(Bytes::len).sum();
        let chunks = (
            text.plain.as_ref().map_or(0, |plain| plain.len()),
            text.gzip.chunks.len(),
        );
        hashes.get_mut("SYM000042USDT").unwrap()[0].1 = b"0.99".to_vec();
        let one_changed = snapshot_of(&hashes);
        for fields in hashes.values_mut() {
            fields[0].1 = b"0.98".to_vec();
        }
        let all_changed = snapshot_of(&hashes);
        let timings = [
            median_ms(runs, || before.clone(), whole),
            median_ms(
                runs,
                || before.clone(),
                |s| Published::new(s, NOW, crate::history::Shared::off()),
            ),
            median_ms(
                runs,
                || before.clone(),
                |s| first.next(s, NOW, Ages::Renewed),
            ),
            median_ms(
                runs,
                || before.clone(),
                |s| first.next(s, NOW + 1.0, Ages::Renewed),
            ),
            median_ms(
                runs,
                || one_changed.clone(),
                |s| first.next(s, NOW + 1.0, Ages::Renewed),
            ),
            median_ms(
                runs,
                || all_changed.clone(),
                |s| first.next(s, NOW + 1.0, Ages::Renewed),
            ),
            median_ms(runs, || (), |()| before.clone()),
        ];
        let timings: Vec<String> = timings.iter().map(|ms| format!("{ms:.2} ms")).collect();
        println!(
            "{count} | {} | {:.3} | {}, {}",
            timings.join(" | "),
            whole_gzip as f64 / pieces_gzip as f64,
            chunks.0,
            chunks.1
        );
    }
}

use std::time::Duration;

use super::*;

const T0: f64 = 1_769_130_000.0;

fn history(points: usize, max_age: Duration) -> History {
    History::new(Settings { points, max_age })
}

/// A publication of one symbol per `(symbol, kill score, action)`, written at `at` (fresh).
fn snapshot(at: f64, symbols: &[(&str, f64, &str)]) -> Snapshot {
    let epoch = at.to_string();
    let hashes: Vec<(String, Vec<(&str, String)>)> = symbols
        .iter()
        .map(|(symbol, kill, action)| {
            let fields = vec![
                ("kill_score", kill.to_string()),
                ("k_regime_flip", "1".to_owned()),
                ("R_net", "-2.5".to_owned()),
                ("harvest_action", (*action).to_owned()),
                ("last_update_epoch", epoch.clone()),
            ];
            ((*symbol).to_owned(), fields)
        })
        .collect();
    let borrowed: Vec<Vec<(&str, &str)>> = hashes
        .iter()
        .map(|(_, fields)| fields.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let pairs: Vec<(&str, &[(&str, &str)])> = hashes
        .iter()
        .zip(&borrowed)
        .map(|((symbol, _), fields)| (symbol.as_str(), fields.as_slice()))
        .collect();
    Snapshot::of_hashes(&pairs, at)
}

fn kinds(history: &History, symbol: &str) -> Vec<String> {
    let (_, events) = history.told(symbol).unwrap();
    events.into_iter().map(|e| e.kind).collect()
}

#[test]
fn a_point_is_kept_per_change_and_an_unchanged_proposal_adds_none() {
    let mut h = history(30, Duration::from_secs(3_600));
    let first = snapshot(T0, &[("BTCUSDT", 0.5, "NONE")]);
    h.record(&first, T0);
    h.record(&first, T0 + 5.0);
    h.record(&snapshot(T0 + 10.0, &[("BTCUSDT", 0.5, "NONE")]), T0 + 10.0);
    let (points, _) = h.told("BTCUSDT").unwrap();
    assert_eq!(
        points.len(),
        1,
        "the same values, read again, are no new point"
    );
    h.record(
        &snapshot(T0 + 15.0, &[("BTCUSDT", 0.55, "NONE")]),
        T0 + 15.0,
    );
    let (points, _) = h.told("BTCUSDT").unwrap();
    assert_eq!(points.len(), 2);
    let newest = &points[1];
    assert_eq!(newest.timestamp, T0 + 15.0);
    assert_eq!(newest.action.as_deref(), Some("NONE"));
    assert_eq!(newest.values["kill_score"], 0.55);
    assert_eq!(newest.values["k_regime_flip"], 1.0);
    assert_eq!(newest.values["r_net"], -2.5);
    assert_eq!(newest.values.len(), RECORDED.len());
    assert!(h.told("ETHUSDT").is_none());
}

#[test]
fn points_are_bounded_reach_back_the_span_and_are_densest_recently() {
    let span = Duration::from_secs(3_600);
    let mut h = history(30, span);
    // A change every 5 s for two hours.
    for step in 0..1_440u32 {
        let at = T0 + f64::from(step) * 5.0;
        let kill = 0.5 + f64::from(step % 7) / 100.0;
        h.record(&snapshot(at, &[("BTCUSDT", kill, "NONE")]), at);
    }
    let now = T0 + 1_439.0 * 5.0;
    let (points, _) = h.told("BTCUSDT").unwrap();
    assert!((23..=30).contains(&points.len()), "{}", points.len());
    let oldest = now - points[0].timestamp;
    assert!(oldest >= 3_600.0, "reaches back {oldest} s");
    assert!(
        now - points[1].timestamp < 3_600.0,
        "one point before the span, its value held when the span began"
    );
    assert_eq!(
        points.last().unwrap().timestamp,
        now,
        "the newest value is kept"
    );
    let gaps: Vec<f64> = points
        .windows(2)
        .map(|w| w[1].timestamp - w[0].timestamp)
        .collect();
    // Geometric: 1280, 660, 640, 660, 320, 320, 160, ..., 10, 10, 10, 5, 5, 5, 5, 5 seconds.
    let newest = &gaps[gaps.len() - 5..];
    assert!(
        newest.iter().all(|gap| *gap == 5.0),
        "each recent change: {gaps:?}"
    );
    assert!(gaps[..5].iter().all(|gap| *gap >= 300.0), "{gaps:?}");
}

#[test]
fn events_tell_action_changes_and_threshold_crossings() {
    let mut h = history(30, Duration::from_secs(3_600));
    let steps = [
        (0.5, "PARTIAL_25"),
        (0.65, "PARTIAL_25"),
        (0.85, "FULL_CLOSE_PROPOSED"),
        (0.7, "FULL_CLOSE_PROPOSED"),
        (0.4, "PARTIAL_25"),
        (0.9, "PARTIAL_25"),
    ];
    for (i, (kill, action)) in steps.iter().enumerate() {
        let at = T0 + i as f64 * 5.0;
        h.record(&snapshot(at, &[("BTCUSDT", *kill, action)]), at);
    }
    let (_, events) = h.told("BTCUSDT").unwrap();
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "kill score rose to 0.650, at or above 0.6",
            "action PARTIAL_25 \u{2192} FULL_CLOSE_PROPOSED",
            "kill score rose to 0.850, at or above 0.8",
            "kill score fell to 0.700, below 0.8",
            "action FULL_CLOSE_PROPOSED \u{2192} PARTIAL_25",
            "kill score fell to 0.400, below 0.6",
            "kill score rose to 0.900, at or above 0.8",
        ]
    );
    assert_eq!(events[1].kind, "action_changed");
    assert_eq!(events[0].timestamp, T0 + 5.0);
}

#[test]
fn symbols_appear_go_stale_and_disappear_until_forgotten() {
    let span = Duration::from_secs(600);
    let mut h = history(30, span);
    h.record(&snapshot(T0, &[("BTCUSDT", 0.5, "NONE")]), T0);
    assert!(
        kinds(&h, "BTCUSDT").is_empty(),
        "the first read's symbols did not appear"
    );
    let both = snapshot(
        T0 + 5.0,
        &[("BTCUSDT", 0.5, "NONE"), ("ETHUSDT", 0.5, "NONE")],
    );
    h.record(&both, T0 + 5.0);
    assert_eq!(kinds(&h, "ETHUSDT"), ["appeared"]);
    // The publisher stops: the same values, older and older.
    h.record(&both, T0 + 70.0);
    assert_eq!(kinds(&h, "ETHUSDT"), ["appeared", "stale"]);
    let eth_again = snapshot(T0 + 80.0, &[("ETHUSDT", 0.5, "NONE")]);
    h.record(&eth_again, T0 + 80.0);
    assert_eq!(kinds(&h, "ETHUSDT"), ["appeared", "stale", "fresh"]);
    assert_eq!(kinds(&h, "BTCUSDT"), ["stale", "disappeared"]);
    h.record(&eth_again, T0 + 80.0 + 590.0);
    assert!(h.told("BTCUSDT").is_some(), "kept for the span");
    h.record(&eth_again, T0 + 80.0 + 601.0);
    assert!(h.told("BTCUSDT").is_none(), "then freed");
    let (points, events) = h.told("ETHUSDT").unwrap();
    assert_eq!(points.len(), 1, "the value still held stays");
    assert_eq!(
        events.len(),
        1,
        "older events went with the span: {events:?}"
    );
}

#[test]
fn the_trend_spans_the_history_and_ends_at_the_current_value() {
    let mut h = history(30, Duration::from_secs(3_600));
    assert!(h.trend("BTCUSDT", T0).is_empty());
    h.record(&snapshot(T0, &[("BTCUSDT", 0.2, "NONE")]), T0);
    h.record(&snapshot(T0 + 60.0, &[("BTCUSDT", 0.9, "NONE")]), T0 + 60.0);
    let trend = h.trend("BTCUSDT", T0 + 120.0);
    assert_eq!(trend.len(), TREND_SLOTS);
    let rises = TREND_SLOTS / 2;
    assert!(trend[..rises - 1].iter().all(|v| *v == 0.2), "{trend:?}");
    assert!(trend[rises..].iter().all(|v| *v == 0.9), "{trend:?}");
    let behind = h.trend("BTCUSDT", T0);
    assert_eq!(
        behind.last(),
        Some(&0.9),
        "a clock behind still ends at the newest"
    );
}

#[test]
fn off_keeps_nothing_and_bad_values_are_bounded() {
    let mut off = history(0, Duration::from_secs(3_600));
    off.record(&snapshot(T0, &[("BTCUSDT", 0.5, "NONE")]), T0);
    assert!(off.told("BTCUSDT").is_none());

    let mut h = history(4, Duration::from_secs(3_600));
    h.record(&snapshot(T0, &[("BTCUSDT", 1e300, "NONE")]), T0);
    let (points, _) = h.told("BTCUSDT").unwrap();
    assert_eq!(points[0].values["kill_score"], 3.2767, "saturated");
    for i in 0..(MAX_ACTIONS + 10) {
        let action = format!("ACTION_{i}");
        let at = T0 + i as f64;
        h.record(&snapshot(at, &[("BTCUSDT", 0.5, &action)]), at);
    }
    assert!(h.actions.len() <= MAX_ACTIONS);
    let (points, _) = h.told("BTCUSDT").unwrap();
    assert_eq!(points.len(), 4);
    assert_eq!(points[3].action.as_deref(), Some("OTHER"));
}

/// What the memory bound is made of: 16 bytes a point, 8 an event.
#[test]
fn points_and_events_are_small() {
    assert_eq!(std::mem::size_of::<Sample>(), 16);
    assert_eq!(std::mem::size_of::<track::Event>(), 8);
    assert_eq!(std::mem::size_of::<Track>(), 28);
}

/// Times are kept in 24 bits from an epoch that moves forward before they run out.
#[test]
fn the_epoch_moves_on_before_times_run_out() {
    let mut h = history(30, Duration::from_secs(3_600));
    h.record(&snapshot(T0, &[("BTCUSDT", 0.5, "NONE")]), T0);
    let later = T0 + f64::from(MAX_TICK) + 1_000.0;
    h.record(
        &snapshot(later - 10.0, &[("BTCUSDT", 0.7, "PARTIAL_25")]),
        later - 10.0,
    );
    h.record(&snapshot(later, &[("BTCUSDT", 0.9, "PARTIAL_50")]), later);
    let (points, events) = h.told("BTCUSDT").unwrap();
    let times: Vec<f64> = points.iter().map(|p| p.timestamp).collect();
    let epoch = later - 10.0 - 3_600.0 - f64::from(DAY);
    assert_eq!(
        times,
        [epoch, later - 10.0, later],
        "the value held when the span began, from the new epoch on"
    );
    assert_eq!(points[2].action.as_deref(), Some("PARTIAL_50"));
    assert_eq!(events.last().unwrap().timestamp, later);
    assert_eq!(h.trend("BTCUSDT", later).last(), Some(&0.9));
}

/// A forgotten symbol's room in the slabs is the next new symbol's, which starts with nothing of
/// the old one's.
#[test]
fn a_forgotten_symbols_room_is_taken_again_empty() {
    let mut h = history(4, Duration::from_secs(600));
    for (i, kill) in [0.5, 0.7, 0.9, 0.65, 0.85, 0.3].into_iter().enumerate() {
        let at = T0 + i as f64 * 5.0;
        h.record(&snapshot(at, &[("BTCUSDT", kill, "PARTIAL_25")]), at);
    }
    let eth = |at: f64| snapshot(at, &[("ETHUSDT", 0.5, "NONE")]);
    h.record(&eth(T0 + 30.0), T0 + 30.0);
    h.record(&eth(T0 + 631.0), T0 + 631.0);
    assert!(h.told("BTCUSDT").is_none(), "forgotten");
    let at = T0 + 640.0;
    h.record(
        &snapshot(at, &[("ETHUSDT", 0.5, "NONE"), ("SOLUSDT", 0.2, "NONE")]),
        at,
    );
    assert_eq!(h.slabs.slots(), 2, "SOLUSDT took BTCUSDT's slot");
    let (points, _) = h.told("SOLUSDT").unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].values["kill_score"], 0.2);
    assert_eq!(kinds(&h, "SOLUSDT"), ["appeared"]);
}

#[test]
fn symbols_arriving_among_others_as_others_are_forgotten_keep_their_own_story() {
    let mut h = history(4, Duration::from_secs(600));
    let first = [
        ("AUSDT", 0.1, "NONE"),
        ("CUSDT", 0.3, "NONE"),
        ("EUSDT", 0.5, "NONE"),
    ];
    h.record(&snapshot(T0, &first), T0);
    h.record(&snapshot(T0 + 5.0, &[("CUSDT", 0.3, "NONE")]), T0 + 5.0);
    let at = T0 + 5.0 + 601.0;
    let last = [
        ("BUSDT", 0.2, "NONE"),
        ("CUSDT", 0.3, "NONE"),
        ("DUSDT", 0.4, "NONE"),
        ("FUSDT", 0.6, "NONE"),
    ];
    h.record(&snapshot(at, &last), at);
    for gone in ["AUSDT", "EUSDT"] {
        assert!(h.told(gone).is_none(), "{gone} forgotten");
    }
    for (symbol, kill, _) in last {
        let (points, _) = h.told(symbol).unwrap();
        assert_eq!(
            points.last().unwrap().values["kill_score"],
            kill,
            "{symbol}"
        );
    }
    assert_eq!(
        h.names, "BUSDTCUSDTDUSDTFUSDT",
        "in order, the forgotten gone"
    );
}

#[test]
fn an_announced_change_records_its_symbols_only() {
    let mut h = history(30, Duration::from_secs(600));
    let first = [
        ("BTCUSDT", 0.5, "NONE"),
        ("ETHUSDT", 0.5, "NONE"),
        ("SOLUSDT", 0.5, "NONE"),
    ];
    h.record(&snapshot(T0, &first), T0);
    // ETH moved as well, unannounced: the next full read records it.
    let next = [
        ("BTCUSDT", 0.7, "NONE"),
        ("ETHUSDT", 0.9, "NONE"),
        ("XRPUSDT", 0.2, "NONE"),
    ];
    let next = snapshot(T0 + 5.0, &next);
    let announced = ["XRPUSDT", "BTCUSDT", "SOLUSDT", "BTCUSDT"].map(String::from);
    h.record_changed(&next, &announced, T0 + 5.0);
    let kill_scores = |h: &History, symbol| -> Vec<f64> {
        let (points, _) = h.told(symbol).unwrap();
        points.iter().map(|p| p.values["kill_score"]).collect()
    };
    assert_eq!(kill_scores(&h, "BTCUSDT"), [0.5, 0.7]);
    assert_eq!(kill_scores(&h, "ETHUSDT"), [0.5]);
    assert_eq!(kinds(&h, "SOLUSDT"), ["disappeared"]);
    assert_eq!(kinds(&h, "XRPUSDT"), ["appeared"]);
    assert_eq!(h.names, "BTCUSDTETHUSDTSOLUSDTXRPUSDT");
    h.record(&next, T0 + 10.0);
    assert_eq!(kill_scores(&h, "ETHUSDT"), [0.5, 0.9]);
    assert_eq!(kinds(&h, "SOLUSDT"), ["disappeared"], "once");
}

/// The benchmark `scripts/bench` runs (`--ignored`, in a release build): the history's own cost
/// at 10,000 symbols, in one process and away from the noise of others. Every ring full, a
/// change every 5 s: the CPU of recording a publication, the mean over 48 in a row (every symbol
/// thins its ring every few changes, all in the same one), the lowest of 5 such runs; with every
/// value changed and with none; and the bytes the history holds. Prints `scripts/bench`'s result
/// lines.
#[test]
#[ignore = "a benchmark: scripts/bench runs it in a release build"]
fn recording_ten_thousand_symbols() {
    const SYMBOLS: usize = 10_000;
    const IN_A_ROW: usize = 48;
    let names: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:06}USDT")).collect();
    // Written in the future: never stale, whatever time a publication is recorded at.
    let written = T0 + 1e6;
    let publications: Vec<Snapshot> = (0..8)
        .map(|round| {
            let rows: Vec<(&str, f64, &str)> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let kill = 0.2 + ((i * 7 + round * 13) % 70) as f64 / 100.0;
                    (name.as_str(), kill, "PARTIAL_25")
                })
                .collect();
            snapshot(written, &rows)
        })
        .collect();
    let mut h = history(24, Duration::from_secs(3_600));
    let mut now = T0;
    let mut record = |h: &mut History, publication: &Snapshot| {
        h.record(publication, now);
        now += 5.0;
    };
    for round in 0..40 {
        record(&mut h, &publications[round % 8]);
    }
    let (changed_ns, ..) = crate::measure::measure(5, || {
        for round in 0..IN_A_ROW {
            record(&mut h, &publications[round % 8]);
        }
        IN_A_ROW
    });
    let (unchanged_ns, ..) = crate::measure::measure(5, || {
        for _ in 0..IN_A_ROW {
            record(&mut h, &publications[0]);
        }
        IN_A_ROW
    });
    let (points, _) = h.told(&names[SYMBOLS / 2]).unwrap();
    for (key, value) in [
        ("symbols", SYMBOLS as u64),
        ("points", points.len() as u64),
        ("changed_cpu_ns", changed_ns / IN_A_ROW as u64),
        ("unchanged_cpu_ns", unchanged_ns / IN_A_ROW as u64),
        ("held_bytes", h.held_bytes() as u64),
    ] {
        println!("-\thistory_record\t{key}\t{value}");
    }
}

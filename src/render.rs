//! Renders a [`Snapshot`] in the Prometheus text format 0.0.4: the body once per refresh (plain
//! and gzipped), and a small tail of scrape-time values (cache age, process metrics) per scrape.
//! Pure: no I/O and no clock reads; callers pass the time in.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use flate2::{Compression, write::DeflateEncoder};

use crate::page::Page;
use crate::proposal::{Action, Extra, Field, KNOWN_ACTIONS, Proposal};
use crate::snapshot::{DropReason, ErrorKind, Snapshot};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP server serves until the next refresh: the snapshot and its rendered body.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    pub body: Bytes,
    pub body_gzip: GzipHead,
    /// When the snapshot was rendered, which the page's data ages count from.
    pub rendered_at_unix: f64,
    /// The page at `/` and its JSON document, made on the first request for either: a large
    /// page costs as much as the metrics, and most refreshes are never looked at.
    page: OnceLock<Page>,
}

impl Published {
    /// Renders and compresses once, so that every scrape until the next refresh only copies
    /// reference-counted pointers.
    pub fn new(snapshot: Snapshot, now_unix: f64) -> Published {
        let body = render(&snapshot, now_unix);
        let body_gzip = GzipHead::new(&body);
        Published {
            snapshot: Arc::new(snapshot),
            body: body.into(),
            body_gzip,
            rendered_at_unix: now_unix,
            page: OnceLock::new(),
        }
    }

    pub fn page(&self) -> &Page {
        self.page
            .get_or_init(|| Page::new(&self.snapshot, self.rendered_at_unix))
    }
}

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

/// The process's own resource use, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: Option<f64>,
}

/// The HTTP server's connection figures, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HttpStats {
    pub open: f64,
    pub evicted: f64,
    /// Whether the last reload of the web configuration file succeeded (true before any).
    pub config_reload_ok: bool,
    pub config_reload_success_unix: f64,
}

type SeedGauge = (&'static str, &'static str, fn(&Proposal) -> f64);

/// The seed's per-symbol gauges, in its order; `quantum_harvest_action` follows them.
const SEED_GAUGES: [SeedGauge; 8] = [
    (
        "quantum_harvest_kill_score",
        "Kill score (edge collapse indicator), 0 to 1; 0 when missing or unparseable.",
        |p| p.kill_score,
    ),
    (
        "quantum_harvest_k_regime_flip",
        "Regime flip component of the kill score (0 or 1).",
        |p| p.k_regime_flip,
    ),
    (
        "quantum_harvest_k_sigma_spike",
        "Volatility spike component of the kill score (0 to 2).",
        |p| p.k_sigma_spike,
    ),
    (
        "quantum_harvest_k_ts_drop",
        "Trend strength drop component of the kill score (0 to 0.5).",
        |p| p.k_ts_drop,
    ),
    (
        "quantum_harvest_k_age_penalty",
        "Position age penalty component of the kill score (0 to 1).",
        |p| p.k_age_penalty,
    ),
    (
        "quantum_harvest_r_net",
        "Net R (risk-reward) of the position, from R_net or the legacy r_net.",
        |p| p.r_net,
    ),
    (
        "quantum_harvest_new_sl",
        "Proposed new stop loss price; 0 when none is proposed.",
        |p| p.new_sl.unwrap_or(0.0),
    ),
    (
        "quantum_harvest_last_update_epoch",
        "Unix time of the proposal's last update (last_update_epoch, else computed_at_utc).",
        |p| p.last_update_epoch,
    ),
];

/// Per-symbol gauges beyond the seed, exported only when the publisher wrote a valid value.
const EXTRA_GAUGES: [(&str, &str, Extra); 7] = [
    (
        "quantum_harvest_risk_unit",
        "Risk unit of the position (risk_unit).",
        Extra::RiskUnit,
    ),
    (
        "quantum_harvest_cost_est",
        "Estimated cost of acting on the proposal (cost_est).",
        Extra::CostEst,
    ),
    (
        "quantum_harvest_sigma",
        "Volatility estimate (sigma).",
        Extra::Sigma,
    ),
    (
        "quantum_harvest_position_age_seconds",
        "Age of the position (position_age_sec).",
        Extra::PositionAgeSec,
    ),
    (
        "quantum_harvest_position_current_price",
        "Current price of the position's instrument.",
        Extra::PositionCurrentPrice,
    ),
    (
        "quantum_harvest_position_entry_price",
        "Entry price of the position.",
        Extra::PositionEntryPrice,
    ),
    (
        "quantum_harvest_position_unrealized_pnl",
        "Unrealized profit and loss of the position.",
        Extra::PositionUnrealizedPnl,
    ),
];

const REGIMES: [(&str, Extra); 3] = [
    ("trend", Extra::PTrend),
    ("mean_reversion", Extra::PMr),
    ("chop", Extra::PChop),
];

/// Writes the five known actions, 1 for the current one, plus the current one when unknown.
fn one_hot(
    out: &mut Vec<u8>,
    line: &mut impl FnMut(&mut Vec<u8>, &str, &str, Option<(&str, &str)>, f64),
    name: &str,
    symbol: &str,
    action: &Action,
) {
    let current = action.label();
    for known in KNOWN_ACTIONS {
        let value = if current == Some(known) { 1.0 } else { 0.0 };
        line(out, name, symbol, Some(("action", known)), value);
    }
    if let Some(unknown) = current.filter(|c| !KNOWN_ACTIONS.contains(c)) {
        line(out, name, symbol, Some(("action", unknown)), 1.0);
    }
}

/// Renders the per-refresh body: every proposal family, then the exporter's refresh metrics.
pub fn render(snapshot: &Snapshot, now_unix: f64) -> Vec<u8> {
    let proposals = &snapshot.proposals;
    let symbols: Vec<String> = proposals.iter().map(|p| escape_label(&p.symbol)).collect();
    let mut out = Vec::with_capacity(64 + proposals.len() * 1_800);
    let mut number = ryu::Buffer::new();
    let mut line =
        |out: &mut Vec<u8>, name: &str, symbol: &str, extra: Option<(&str, &str)>, value: f64| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"{symbol=\"");
            out.extend_from_slice(symbol.as_bytes());
            if let Some((label, label_value)) = extra {
                out.extend_from_slice(b"\",");
                out.extend_from_slice(label.as_bytes());
                out.extend_from_slice(b"=\"");
                out.extend_from_slice(escape_label(label_value).as_bytes());
            }
            out.extend_from_slice(b"\"} ");
            out.extend_from_slice(number.format_finite(value).as_bytes());
            out.push(b'\n');
        };

    for (name, help, value) in SEED_GAUGES {
        header(&mut out, name, help, "gauge");
        for (proposal, symbol) in proposals.iter().zip(&symbols) {
            line(&mut out, name, symbol, None, value(proposal));
        }
    }

    let name = "quantum_harvest_action";
    header(
        &mut out,
        name,
        "Proposed harvest action, one-hot: 1 for the current harvest_action, 0 for the other known actions.",
        "gauge",
    );
    for (proposal, symbol) in proposals.iter().zip(&symbols) {
        one_hot(&mut out, &mut line, name, symbol, &proposal.action);
    }

    if proposals.iter().any(|p| p.calibrated_action.is_some()) {
        let name = "quantum_harvest_calibrated_action";
        header(
            &mut out,
            name,
            "Calibrated action the apply layer acts on, one-hot, for proposals the heat gate calibrated (calibrated=1).",
            "gauge",
        );
        for (proposal, symbol) in proposals.iter().zip(&symbols) {
            if let Some(calibrated) = &proposal.calibrated_action {
                one_hot(&mut out, &mut line, name, symbol, calibrated);
            }
        }
    }

    if proposals.iter().any(|p| p.computed_at.is_some()) {
        let name = "quantum_harvest_data_age_seconds";
        header(
            &mut out,
            name,
            "Age of the proposal at the last refresh, from computed_at_utc.",
            "gauge",
        );
        for (proposal, symbol) in proposals.iter().zip(&symbols) {
            if let Some(computed_at) = proposal.computed_at {
                line(&mut out, name, symbol, None, now_unix - computed_at);
            }
        }
    }

    for (name, help, extra) in EXTRA_GAUGES {
        if proposals.iter().any(|p| p.extra(extra).is_some()) {
            header(&mut out, name, help, "gauge");
            for (proposal, symbol) in proposals.iter().zip(&symbols) {
                if let Some(value) = proposal.extra(extra) {
                    line(&mut out, name, symbol, None, value);
                }
            }
        }
    }

    if proposals
        .iter()
        .any(|p| REGIMES.iter().any(|(_, e)| p.extra(*e).is_some()))
    {
        let name = "quantum_harvest_regime_probability";
        header(
            &mut out,
            name,
            "Probability of each market regime (p_trend, p_mr, p_chop).",
            "gauge",
        );
        for (proposal, symbol) in proposals.iter().zip(&symbols) {
            for (regime, extra) in REGIMES {
                if let Some(value) = proposal.extra(extra) {
                    line(&mut out, name, symbol, Some(("regime", regime)), value);
                }
            }
        }
    }

    render_exporter_metrics(&mut out, snapshot);
    out
}

fn render_exporter_metrics(out: &mut Vec<u8>, snapshot: &Snapshot) {
    let gauge = |out: &mut Vec<u8>, name: &str, help: &str, value: f64| {
        header(out, name, help, "gauge");
        let _ = writeln!(out, "{name} {}", ryu::Buffer::new().format_finite(value));
    };
    let counter = |out: &mut Vec<u8>, name: &str, help: &str, value: u64| {
        header(out, name, help, "counter");
        let _ = writeln!(out, "{name} {value}");
    };
    header(
        out,
        "quantum_harvest_exporter_build_info",
        "Build information of the exporter; the value is always 1.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "quantum_harvest_exporter_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    gauge(
        out,
        "quantum_harvest_exporter_redis_up",
        "1 when the last refresh read Redis successfully, else 0.",
        if snapshot.redis_up { 1.0 } else { 0.0 },
    );
    gauge(
        out,
        "quantum_harvest_exporter_refresh_duration_seconds",
        "Wall time of the last refresh (discovery, fetch, parse and render).",
        snapshot.refresh_duration.as_secs_f64(),
    );
    if let Some(unix) = snapshot.last_success_unix {
        gauge(
            out,
            "quantum_harvest_exporter_last_success_timestamp_seconds",
            "Unix time of the last successful refresh.",
            unix,
        );
    }
    gauge(
        out,
        "quantum_harvest_exporter_symbols_exported",
        "Symbols exported by the last successful refresh.",
        snapshot.proposals.len() as f64,
    );
    gauge(
        out,
        "quantum_harvest_exporter_symbols_missing",
        "Configured symbols (SYMBOLS) that have no proposal hash in Redis.",
        snapshot.missing.len() as f64,
    );

    if !snapshot.missing.is_empty() {
        header(
            out,
            "quantum_harvest_exporter_symbol_missing",
            "1 for each configured symbol (SYMBOLS) that has no proposal hash in Redis.",
            "gauge",
        );
        for symbol in &snapshot.missing {
            let _ = writeln!(
                out,
                "quantum_harvest_exporter_symbol_missing{{symbol=\"{}\"}} 1",
                escape_label(symbol)
            );
        }
    }
    header(
        out,
        "quantum_harvest_exporter_symbols_dropped",
        "Keys under the prefix that the last refresh did not export, by reason.",
        "gauge",
    );
    for reason in DropReason::ALL {
        let count = snapshot.dropped[reason as usize];
        let _ = writeln!(
            out,
            "quantum_harvest_exporter_symbols_dropped{{reason=\"{}\"}} {count}",
            reason.label()
        );
    }

    counter(
        out,
        "quantum_harvest_exporter_refreshes_total",
        "Refreshes attempted since start-up.",
        snapshot.refreshes_total,
    );

    header(
        out,
        "quantum_harvest_exporter_refresh_errors_total",
        "Refreshes that failed, by kind of failure.",
        "counter",
    );
    for kind in ErrorKind::ALL {
        let count = snapshot.refresh_errors_total[kind as usize];
        let _ = writeln!(
            out,
            "quantum_harvest_exporter_refresh_errors_total{{kind=\"{}\"}} {count}",
            kind.label()
        );
    }

    counter(
        out,
        "quantum_harvest_exporter_redis_commands_total",
        "Commands sent to Redis by successful reads: SCAN pages and HMGETs.",
        snapshot.redis_commands_total,
    );
    counter(
        out,
        "quantum_harvest_exporter_redis_round_trips_total",
        "Round trips to Redis made by successful reads, SCAN pages and pipelined HMGETs together.",
        snapshot.redis_round_trips_total,
    );

    if let Some(up) = snapshot.notifications_up {
        gauge(
            out,
            "quantum_harvest_exporter_notifications_up",
            "Event mode: 1 while keyspace notifications are followed, 0 while falling back to polling.",
            if up { 1.0 } else { 0.0 },
        );
        counter(
            out,
            "quantum_harvest_exporter_notified_keys_total",
            "Event mode: keys re-read because a keyspace notification announced a change.",
            snapshot.notified_total,
        );
    }
    header(
        out,
        "quantum_harvest_exporter_parse_errors_total",
        "Fields read as missing or unparseable (exported as 0 or left out), by field, summed over refreshes.",
        "counter",
    );
    for field in Field::ALL {
        let count = snapshot.parse_errors_total[field.index()];
        let _ = writeln!(
            out,
            "quantum_harvest_exporter_parse_errors_total{{field=\"{}\"}} {count}",
            field.key()
        );
    }
}

/// Renders the values that must be read at scrape time.
pub fn render_tail(
    cache_age: Duration,
    http: &HttpStats,
    process: Option<&ProcessStats>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1_024);
    let mut number = ryu::Buffer::new();
    let mut gauge = |out: &mut Vec<u8>, name: &str, help: &str, kind: &str, value: f64| {
        header(out, name, help, kind);
        let _ = writeln!(out, "{name} {}", number.format_finite(value));
    };
    gauge(
        &mut out,
        "quantum_harvest_exporter_cache_age_seconds",
        "Seconds since the cached proposals were last read from Redis (since start-up before the first read).",
        "gauge",
        cache_age.as_secs_f64(),
    );
    gauge(
        &mut out,
        "quantum_harvest_exporter_http_connections_open",
        "HTTP connections open, this scrape's included.",
        "gauge",
        http.open,
    );
    gauge(
        &mut out,
        "quantum_harvest_exporter_http_connections_evicted_total",
        "Connections closed before their first request to make room under the connection cap.",
        "counter",
        http.evicted,
    );
    gauge(
        &mut out,
        "quantum_harvest_exporter_config_last_reload_successful",
        "Whether the last reload of the web configuration file (on SIGHUP) succeeded.",
        "gauge",
        if http.config_reload_ok { 1.0 } else { 0.0 },
    );
    gauge(
        &mut out,
        "quantum_harvest_exporter_config_last_reload_success_timestamp_seconds",
        "Time of the last successful load of the web configuration, in seconds since the epoch.",
        "gauge",
        http.config_reload_success_unix,
    );
    if let Some(p) = process {
        gauge(
            &mut out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            p.cpu_seconds,
        );
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            p.resident_memory_bytes,
        );
        gauge(
            &mut out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            p.virtual_memory_bytes,
        );
        gauge(
            &mut out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            p.open_fds,
        );
        gauge(
            &mut out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            p.max_fds,
        );
        if let Some(start_time) = p.start_time_seconds {
            gauge(
                &mut out,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                start_time,
            );
        }
    }
    out
}

fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value as the text format requires: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposal;
    use proptest::prelude::*;
    use std::time::Instant;

    fn snapshot_of(hashes: &[(&str, Vec<(&str, &str)>)]) -> Snapshot {
        let hashes: Vec<(&str, &[(&str, &str)])> =
            hashes.iter().map(|(s, p)| (*s, p.as_slice())).collect();
        Snapshot::of_hashes(&hashes, 1_769_130_510.0)
    }

    fn text(snapshot: &Snapshot) -> String {
        String::from_utf8(render(snapshot, 1_769_130_510.0)).unwrap()
    }

    #[test]
    fn seed_example_renders_like_the_seed() {
        let snapshot = snapshot_of(&[
            (
                "BTCUSDT",
                vec![
                    ("kill_score", "0.527"),
                    ("k_regime_flip", "0.0"),
                    ("harvest_action", "PARTIAL_75"),
                ],
            ),
            (
                "ETHUSDT",
                vec![
                    ("kill_score", "0.753"),
                    ("k_regime_flip", "1.0"),
                    ("harvest_action", "FULL_CLOSE_PROPOSED"),
                ],
            ),
        ]);
        let body = text(&snapshot);
        for expected in [
            "# HELP quantum_harvest_kill_score Kill score (edge collapse indicator)",
            "# TYPE quantum_harvest_kill_score gauge\nquantum_harvest_kill_score{symbol=\"BTCUSDT\"} 0.527\nquantum_harvest_kill_score{symbol=\"ETHUSDT\"} 0.753\n",
            "quantum_harvest_k_regime_flip{symbol=\"ETHUSDT\"} 1.0\n",
            "quantum_harvest_action{symbol=\"ETHUSDT\",action=\"FULL_CLOSE_PROPOSED\"} 1.0\n",
            "quantum_harvest_action{symbol=\"ETHUSDT\",action=\"PARTIAL_75\"} 0.0\n",
            "quantum_harvest_action{symbol=\"BTCUSDT\",action=\"PARTIAL_75\"} 1.0\n",
            "quantum_harvest_exporter_redis_up 1.0\n",
            "quantum_harvest_exporter_parse_errors_total{field=\"kill_score\"} 0\n",
        ] {
            assert!(body.contains(expected), "missing {expected:?} in\n{body}");
        }
    }

    #[test]
    fn unknown_action_gets_its_own_series_and_known_ones_stay_zero() {
        let body = text(&snapshot_of(&[("X", vec![("harvest_action", "HOLD")])]));
        assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"HOLD\"} 1.0\n"));
        assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"NONE\"} 0.0\n"));
        assert_eq!(body.matches("quantum_harvest_action{").count(), 6);
    }

    #[test]
    fn calibrated_action_only_for_calibrated_proposals() {
        let body = text(&snapshot_of(&[
            (
                "X",
                vec![
                    ("harvest_action", "PARTIAL_25"),
                    ("action", "FULL_CLOSE"),
                    ("calibrated", "1"),
                ],
            ),
            (
                "Y",
                vec![("harvest_action", "NONE"), ("action", "FULL_CLOSE")],
            ),
        ]));
        assert!(body.contains(
            "quantum_harvest_calibrated_action{symbol=\"X\",action=\"FULL_CLOSE\"} 1.0\n"
        ));
        assert!(body.contains(
            "quantum_harvest_calibrated_action{symbol=\"X\",action=\"PARTIAL_25\"} 0.0\n"
        ));
        assert!(body.contains("quantum_harvest_action{symbol=\"X\",action=\"PARTIAL_25\"} 1.0\n"));
        assert!(
            !body.contains("quantum_harvest_calibrated_action{symbol=\"Y\""),
            "not calibrated"
        );
        let plain = text(&snapshot_of(&[("Y", vec![("harvest_action", "NONE")])]));
        assert!(!plain.contains("quantum_harvest_calibrated_action"));
    }

    #[test]
    fn extras_appear_only_when_present() {
        let body = text(&snapshot_of(&[("X", vec![("kill_score", "0.6")])]));
        assert!(!body.contains("quantum_harvest_sigma"));
        assert!(!body.contains("quantum_harvest_data_age_seconds"));
        let body = text(&snapshot_of(&[(
            "X",
            vec![
                ("sigma", "0.015"),
                ("p_mr", "0.2"),
                ("computed_at_utc", "2026-01-23T01:08:20Z"),
            ],
        )]));
        assert!(body.contains("quantum_harvest_sigma{symbol=\"X\"} 0.015\n"));
        assert!(body.contains(
            "quantum_harvest_regime_probability{symbol=\"X\",regime=\"mean_reversion\"} 0.2\n"
        ));
        assert!(body.contains("quantum_harvest_data_age_seconds{symbol=\"X\"} 10.0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        let body = text(&snapshot_of(&[(r#"we"ird\"#, vec![])]));
        assert!(
            body.contains(r#"quantum_harvest_kill_score{symbol="we\"ird\\"} 0.0"#),
            "{body}"
        );
    }

    #[test]
    fn tail_has_cache_age_and_process_metrics() {
        let stats = ProcessStats {
            open_fds: 7.0,
            ..ProcessStats::default()
        };
        let tail = String::from_utf8(render_tail(
            Duration::from_millis(1_500),
            &HttpStats::default(),
            Some(&stats),
        ))
        .unwrap();
        assert!(tail.contains("quantum_harvest_exporter_cache_age_seconds 1.5\n"));
        assert!(tail.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(tail.contains("process_open_fds 7.0\n"));
    }

    #[test]
    fn gzip_head_and_tail_make_one_valid_member() {
        use std::io::Read as _;
        let body = text(&snapshot_of(&[("X", vec![])]));
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

    /// A snapshot that exercises every family: the seed's example, hostile symbol and label
    /// values, calibrated actions, extras, and every exporter metric with non-zero values.
    fn golden_snapshot() -> Snapshot {
        let mut snapshot = snapshot_of(&[
            (
                "BTCUSDT",
                vec![
                    ("kill_score", "0.527"),
                    ("k_regime_flip", "0.0"),
                    ("k_sigma_spike", "0.1"),
                    ("k_ts_drop", "0.05"),
                    ("k_age_penalty", "0.2"),
                    ("R_net", "1.1"),
                    ("new_sl_proposed", "None"),
                    ("harvest_action", "PARTIAL_75"),
                    ("last_update_epoch", "1769130500"),
                ],
            ),
            (
                "ETHUSDT",
                vec![
                    ("kill_score", "0.7533012950554003"),
                    ("k_regime_flip", "1.0"),
                    ("k_sigma_spike", "0.25"),
                    ("k_ts_drop", "0.208"),
                    ("k_age_penalty", "0.3"),
                    ("R_net", "2.45"),
                    ("new_sl_proposed", "100.2"),
                    ("harvest_action", "FULL_CLOSE_PROPOSED"),
                    ("action", "FULL_CLOSE"),
                    ("calibrated", "1"),
                    ("computed_at_utc", "2026-01-23T00:58:58.259371"),
                    ("risk_unit", "2.0"),
                    ("cost_est", "1e-09"),
                    ("sigma", "0.015"),
                    ("p_trend", "0.5"),
                    ("p_mr", "0.3"),
                    ("p_chop", "0.2"),
                    ("position_age_sec", "3600"),
                    ("position_current_price", "105.0"),
                    ("position_entry_price", "100"),
                    ("position_unrealized_pnl", "-12.5"),
                ],
            ),
            (
                "we\"ird\\sym\nbol",
                vec![
                    ("kill_score", "nan"),
                    ("R_net", "inf"),
                    ("harvest_action", "HOLD\"\\\n"),
                ],
            ),
        ]);
        snapshot.missing = vec!["SOLUSDT".into(), "x\"y".into()];
        snapshot.dropped = [1, 2, 3];
        snapshot.refresh_duration = Duration::from_micros(12_345);
        snapshot.refreshes_total = 42;
        snapshot.refresh_errors_total = [1, 2, 3];
        snapshot.parse_errors_total[Field::KillScore.index()] = 7;
        snapshot.notifications_up = Some(true);
        snapshot.notified_total = 9;
        snapshot.redis_commands_total = 100;
        snapshot.redis_round_trips_total = 50;
        snapshot
    }

    /// Compares with the file under tests/golden/, or writes it with UPDATE_GOLDEN=1.
    fn assert_golden(name: &str, actual: &[u8]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            expected == actual,
            "{} differs from the rendering:\n{}",
            path.display(),
            String::from_utf8_lossy(actual)
        );
    }

    #[test]
    fn body_is_byte_identical_to_the_golden_file() {
        let body = render(&golden_snapshot(), 1_769_130_510.0);
        check_exposition(std::str::from_utf8(&body).unwrap()).unwrap();
        assert_golden("body.prom", &body);
    }

    #[test]
    fn tail_is_byte_identical_to_the_golden_file() {
        let process = ProcessStats {
            cpu_seconds: 1.25,
            resident_memory_bytes: 1_048_576.0,
            virtual_memory_bytes: 2_097_152.0,
            open_fds: 7.0,
            max_fds: 1024.0,
            start_time_seconds: Some(1_769_130_000.5),
        };
        let http = HttpStats {
            open: 3.0,
            evicted: 4.0,
            config_reload_ok: false,
            config_reload_success_unix: 1_769_130_001.0,
        };
        let tail = render_tail(Duration::from_millis(1_500), &http, Some(&process));
        assert_golden("tail.prom", &tail);
    }

    /// A strict reader of the text format 0.0.4, enough to reject anything Prometheus would:
    /// every sample belongs to the family announced just before it, names and labels are
    /// well-formed, values parse, and no family or series appears twice.
    pub(crate) fn check_exposition(body: &str) -> Result<Vec<String>, String> {
        let mut families: Vec<String> = Vec::new();
        let mut series = std::collections::HashSet::new();
        let mut current: Option<String> = None;
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
                })
        };
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if !valid_name(name) || families.iter().any(|f| f == name) {
                    return Err(format!("bad or repeated family {name:?}"));
                }
                families.push(name.to_owned());
                current = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                if parts.next() != current.as_deref()
                    || !matches!(parts.next(), Some("gauge" | "counter"))
                {
                    return Err(format!("TYPE out of place: {line:?}"));
                }
                continue;
            }
            let (name_and_labels, value) =
                line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
            let name = name_and_labels.split('{').next().unwrap();
            if Some(name) != current.as_deref() {
                return Err(format!("sample outside its family: {line:?}"));
            }
            if value.parse::<f64>().is_err() {
                return Err(format!("bad value: {line:?}"));
            }
            if let Some(labels) = name_and_labels.strip_prefix(name).filter(|l| !l.is_empty()) {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .ok_or(format!("bad labels: {line:?}"))?;
                let mut chars = inner.chars().peekable();
                while chars.peek().is_some() {
                    let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if !valid_name(&label) || chars.next() != Some('"') {
                        return Err(format!("bad label name: {line:?}"));
                    }
                    loop {
                        match chars.next() {
                            Some('\\') => {
                                if !matches!(chars.next(), Some('\\' | '"' | 'n')) {
                                    return Err(format!("bad escape: {line:?}"));
                                }
                            }
                            Some('"') => break,
                            Some('\n') | None => {
                                return Err(format!("unterminated label: {line:?}"));
                            }
                            Some(_) => {}
                        }
                    }
                    match chars.next() {
                        Some(',') | None => {}
                        Some(_) => return Err(format!("bad label separator: {line:?}")),
                    }
                }
            }
            if !series.insert(name_and_labels.to_owned()) {
                return Err(format!("duplicate series: {line:?}"));
            }
        }
        Ok(families)
    }

    const SEED_FAMILIES: [&str; 9] = [
        "quantum_harvest_kill_score",
        "quantum_harvest_k_regime_flip",
        "quantum_harvest_k_sigma_spike",
        "quantum_harvest_k_ts_drop",
        "quantum_harvest_k_age_penalty",
        "quantum_harvest_r_net",
        "quantum_harvest_new_sl",
        "quantum_harvest_action",
        "quantum_harvest_last_update_epoch",
    ];

    fn field_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::sample::select(Field::ALL.map(|f| f.key().as_bytes().to_vec()).to_vec()),
            proptest::sample::select(vec![b"r_net".to_vec(), b"calibrated".to_vec()]),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn field_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            ".{0,24}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 1000..5000),
            any::<f64>().prop_map(|f| f.to_string().into_bytes()),
            proptest::sample::select(vec![
                "None",
                "1",
                "HOLD",
                "FULL_CLOSE_PROPOSED",
                "2026-01-23T00:58:58Z",
                "1e309",
                "-0",
                "NaN"
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    /// Cases per run of the fuzz property: a few hundred in a plain `cargo test`, more from
    /// `scripts/test` and `scripts/fuzz` through HARVEST_FUZZ_CASES.
    fn fuzz_cases() -> u32 {
        std::env::var("HARVEST_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256)
    }

    fn symbol_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20),
            "[A-Z0-9\"\\\\{}=,\n<>&'\u{e9}\u{1f680}]{1,16}".prop_map(String::into_bytes),
            proptest::collection::vec(Just(b'S'), 60..70),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

        #[test]
        fn fuzz_timestamps_and_numbers_never_panic(raw in ".{0,40}") {
            let _ = proposal::parse_utc_timestamp(&raw);
            prop_assert!(proposal::parse_number(&raw).is_none_or(f64::is_finite));
        }

        #[test]
        fn any_hash_and_symbol_render_valid_exposition(
            hashes in proptest::collection::btree_map(
                symbol_bytes(),
                proptest::collection::vec((field_name(), field_value()), 0..30),
                0..6,
            )
        ) {
            let start = Instant::now();
            let mut snapshot = Snapshot::empty(Duration::from_secs(5), start);
            snapshot.proposals = hashes
                .iter()
                .filter_map(|(symbol, fields)| {
                    proposal::parse_symbol(symbol).ok().map(|s| proposal::parse_pairs(s, fields))
                })
                .collect();
            proposal::bound_unknown_actions(&mut snapshot.proposals, 4);
            let body = String::from_utf8(render(&snapshot, 1.0e9)).expect("UTF-8 output");
            let families = check_exposition(&body).map_err(TestCaseError::fail)?;
            for seed in SEED_FAMILIES {
                prop_assert!(families.iter().any(|f| f == seed), "{} missing", seed);
            }
            for proposal in &snapshot.proposals {
                let ones = KNOWN_ACTIONS.iter().filter(|known| proposal.action.label() == Some(**known)).count();
                prop_assert!(ones <= 1);
            }
        }
    }
}

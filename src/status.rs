//! The `status` subcommand: the operator's view in a terminal, read from Redis with the
//! exporter's settings or from a running exporter's `/api/v1/proposals` (`client`), with an exit
//! code for scripts and cron; with a symbol, that symbol's story (`story`); with `--watch`, again
//! every poll interval until interrupted. Owns the terminal table, its trend column (`trend`) and
//! the exit-code rule; parsing the flags is `config`'s, and what the view and the story hold is
//! `view`'s.

mod client;
mod story;
mod trend;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::apply::ApplyView;
use crate::refresh;
use crate::snapshot::Snapshot;
use crate::source::{RedisSettings, Source, Symbols};
use crate::streams::Follower;
use crate::view::{
    self, ApplySide, Calibration, KILL_HIGH, KillBand, RNetBand, Row, STALE_AFTER_SECONDS, View,
};
pub use client::{ClientTls, Credentials, Exporter, StatusError, TlsSetupError};
pub use story::text as story;

/// All symbols fresh, every kill score below [`KILL_HIGH`].
pub(crate) const EXIT_OK: u8 = 0;
/// A kill score at or above [`KILL_HIGH`].
pub(crate) const EXIT_KILL_HIGH: u8 = 1;
/// Stale or missing data, or Redis or the exporter unreachable.
pub(crate) const EXIT_STALE: u8 = 2;

/// The apply side from one look at the streams; when they cannot be read, the view says so.
async fn apply_view(options: &Options) -> ApplyView {
    let Some((plan, result)) = &options.apply_streams else {
        return ApplyView::default();
    };
    // One look tells no plan's story: none are kept.
    let looked = match Follower::new(&options.redis, plan, result, Duration::ZERO) {
        Ok((follower, _)) => follower.view_once().await.ok(),
        Err(_) => None,
    };
    looked.unwrap_or(ApplyView {
        enabled: true,
        ..ApplyView::default()
    })
}

/// The latest plans and outcomes listed under the table.
const RECENT_LINES: usize = 6;

/// What the command reads and how it prints it: the exporter's settings and the command's flags.
pub struct Options {
    /// Read this exporter's view instead of Redis.
    pub from: Option<Exporter>,
    /// Tell this symbol's story instead of printing the table.
    pub symbol: Option<String>,
    /// Print the JSON document instead of the text.
    pub json: bool,
    /// Print again every poll interval until interrupted.
    pub watch: bool,
    pub redis: RedisSettings,
    pub prefix: String,
    pub symbols: Symbols,
    /// The exporter's poll interval, which the view reports.
    pub poll_interval: Duration,
    /// The most symbols read, as the exporter caps them.
    pub max_symbols: usize,
    /// The apply layer's plan and result streams, when the exporter follows them.
    pub apply_streams: Option<(String, String)>,
}

/// The shortest wait between two reports of `--watch`: a poll interval below it would redraw
/// faster than anyone reads, and ask Redis or the exporter as often.
const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// One look: the text or document to print, its exit code and when to look again.
struct Report {
    output: String,
    code: u8,
    interval: Duration,
}

/// Runs the command and returns its exit code; a failure to read is reported on stderr. With
/// `watch`, looks again every poll interval until `interrupted`, then returns the last look's
/// code.
pub async fn run(options: Options, interrupted: impl Future<Output = ()>) -> u8 {
    let terminal = std::io::stdout().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if !options.watch {
        return show(look(&options, colour).await, "");
    }
    // A screen redrawn in place reads as a live display; a log or a pipe keeps every report,
    // and a stream of JSON one document per line.
    let separator = match (options.json, terminal) {
        (true, _) => "",
        (false, true) => "\x1b[H\x1b[2J",
        (false, false) => "\n",
    };
    let mut interrupted = std::pin::pin!(interrupted);
    // Interrupted before the first look, nothing was vouched for.
    let mut last = EXIT_STALE;
    let mut first = true;
    loop {
        let report = tokio::select! {
            report = look(&options, colour) => report,
            () = &mut interrupted => return last,
        };
        let interval = report
            .as_ref()
            .map_or(options.poll_interval, |r| r.interval)
            .max(MIN_WATCH_INTERVAL);
        let before = if first && !terminal { "" } else { separator };
        first = false;
        last = show(report, before);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut interrupted => return last,
        }
    }
}

/// Prints a report after `before`, or the failure to read on stderr; returns its exit code.
fn show(report: Result<Report, StatusError>, before: &str) -> u8 {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) must not turn the verdict into a crash.
    match report {
        Ok(report) => {
            let _ = write!(stdout, "{before}{}", report.output);
            let _ = stdout.flush();
            report.code
        }
        Err(error) => {
            let _ = write!(stdout, "{before}");
            let _ = stdout.flush();
            eprintln!("harvest-exporter status: {error}");
            EXIT_STALE
        }
    }
}

/// One read of the view or of the symbol's story, from Redis or the exporter, made into text.
async fn look(options: &Options, colour: bool) -> Result<Report, StatusError> {
    let Some(symbol) = &options.symbol else {
        let (view, source) = match &options.from {
            Some(exporter) => (client::fetch(exporter).await?, exporter.url.clone()),
            None => read_redis(options, options.symbols.clone()).await?,
        };
        return Ok(Report {
            output: if options.json {
                document(&view, options.watch)
            } else {
                table(&view, &source, colour)
            },
            code: exit_code(&view),
            interval: Duration::try_from_secs_f64(view.poll_interval_seconds)
                .unwrap_or(options.poll_interval),
        });
    };
    let (story, source) = match &options.from {
        Some(exporter) => client::fetch_story(exporter, symbol).await?,
        None => {
            let (view, source) = read_redis(options, Symbols::Fixed(vec![symbol.clone()])).await?;
            (story::from_view(&view, symbol), source)
        }
    };
    Ok(Report {
        output: if options.json {
            document(&story, options.watch)
        } else {
            story::text(&story, &source, colour, options.from.is_some())
        },
        code: story::exit_code(&story),
        // A story carries no poll interval: the exporter's settings, which `status` shares, say.
        interval: options.poll_interval,
    })
}

/// The JSON document as the API gives it: pretty for a person, or compact on one line for a
/// stream of them.
fn document(value: &impl serde::Serialize, compact: bool) -> String {
    let mut json = if compact {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    }
    .expect("views and stories always serialize");
    json.push('\n');
    json
}

/// 2 when anything cannot be vouched for (Redis unreachable, a configured symbol missing, a
/// symbol without an update for a minute), else 1 when a kill score is at or above 0.6, else 0.
/// Stale wins over high: an answer with a hole in it is not an all-clear, and the table still
/// shows every high score.
pub(crate) fn exit_code(view: &View) -> u8 {
    if !view.redis_up || !view.missing.is_empty() || view.stale().next().is_some() {
        EXIT_STALE
    } else if view.high().next().is_some() {
        EXIT_KILL_HIGH
    } else {
        EXIT_OK
    }
}

/// One read of these symbols in Redis, exactly as one refresh of the exporter would make it.
async fn read_redis(options: &Options, symbols: Symbols) -> Result<(View, String), StatusError> {
    let mut source = Source::new(
        &options.redis,
        &options.prefix,
        symbols,
        crate::proposal::keys(),
    )?;
    let started = Instant::now();
    let empty = Snapshot::empty(options.poll_interval, started);
    let snapshot = match source.fetch().await {
        Ok(fetched) => {
            empty.after_fetch(fetched, options.max_symbols, started, refresh::unix_now())
        }
        Err(error) => empty.after_failure(&error),
    };
    Ok((
        View::new(&snapshot, refresh::unix_now(), &apply_view(options).await),
        format!("redis {}", source.addr()),
    ))
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const WHITE_ON_RED: &str = "\x1b[1;97;41m";

/// The columns; `TREND` only when the view carries trends (see [`has_trends`]).
const COLUMNS: [(&str, Align); 11] = [
    ("SYMBOL", Align::Left),
    ("KILL", Align::Right),
    (TREND, Align::Left),
    ("FLIP", Align::Right),
    ("SPIKE", Align::Right),
    ("TSDROP", Align::Right),
    ("AGEPEN", Align::Right),
    ("R_NET", Align::Right),
    ("NEW_SL", Align::Right),
    ("ACTION", Align::Left),
    ("DATA AGE", Align::Left),
];

const TREND: &str = "TREND";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A cell's text and, when colour is on, its colour.
type Cell = (String, Tint);

#[derive(Clone)]
enum Tint {
    Plain,
    /// One colour for the cell, its padding included.
    Whole(&'static str),
    /// A trend's blocks, each in its band's colour; the padding stays plain.
    Blocks(Vec<(char, &'static str)>),
}

/// The table with a header line and a verdict, coloured with ANSI codes when `colour`.
pub fn table(view: &View, source: &str, colour: bool) -> String {
    let view = &printable(view);
    let paint = Paint(colour);
    let redis = paint.apply(
        &view.redis_state(),
        if view.redis_up { GREEN } else { BOLD_RED },
    );
    let count = view.proposals.len();
    let mut out = format!(
        "harvest-exporter {} · {redis} · cache {} · {count} symbol{} · {source}\n",
        view.version,
        view::format_cache_age(view.cache_age_seconds),
        if count == 1 { "" } else { "s" },
    );
    grid(&mut out, view, paint);
    // Nothing seen of the apply layer (its streams empty or absent) is not worth a line.
    if let Some(apply) = view.apply.as_ref().filter(|a| !a.recent.is_empty()) {
        apply_lines(&mut out, view, apply, paint);
    }
    verdicts(&mut out, view, paint);
    out
}

/// Wraps text in an ANSI colour when colour is on.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn apply(self, text: &str, code: &str) -> String {
        if self.0 {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

/// The column titles and one line per proposal, each column as wide as its widest cell.
fn grid(out: &mut String, view: &View, paint: Paint) {
    let trends = has_trends(view);
    let columns: Vec<(&str, Align)> = COLUMNS
        .into_iter()
        .filter(|&(title, _)| trends || title != TREND)
        .collect();
    let rows: Vec<(Vec<Cell>, bool)> = view
        .proposals
        .iter()
        .map(|row| (cells(row, trends), row.stale))
        .collect();
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|(title, _)| title.chars().count())
        .collect();
    for (cells, _) in &rows {
        for (width, (text, _)) in widths.iter_mut().zip(cells) {
            *width = (*width).max(text.chars().count());
        }
    }
    let line = |cells: &[Cell], colour_cells: bool| -> String {
        let mut line = String::new();
        for (i, ((text, tint), (&width, &(_, align)))) in
            cells.iter().zip(widths.iter().zip(&columns)).enumerate()
        {
            let pad = " ".repeat(width - text.chars().count());
            let last = i + 1 == columns.len();
            let text = match tint {
                Tint::Blocks(blocks) if colour_cells => trend::paint(blocks, paint),
                _ => text.clone(),
            };
            let padded = match (align, last) {
                (Align::Right, _) => format!("{pad}{text}"),
                (Align::Left, true) => text,
                (Align::Left, false) => format!("{text}{pad}"),
            };
            if i > 0 {
                line.push_str("  ");
            }
            match tint {
                Tint::Whole(code) if colour_cells => line.push_str(&paint.apply(&padded, code)),
                _ => line.push_str(&padded),
            }
        }
        line
    };
    let titles: Vec<Cell> = columns
        .iter()
        .map(|(title, _)| (title.to_string(), Tint::Plain))
        .collect();
    out.push_str(&line(&titles, false));
    out.push('\n');
    for (cells, stale) in &rows {
        // A stale row is greyed as a whole: its colours would claim a freshness it lacks.
        let text = line(cells, !stale);
        out.push_str(&if *stale {
            paint.apply(&text, DIM)
        } else {
            text
        });
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no proposals)\n");
    }
}

/// Whether the table has a `TREND` column: an exporter that keeps no history, or Redis read
/// directly, gives no trend, and a column of blanks would only take room.
fn has_trends(view: &View) -> bool {
    view.proposals
        .iter()
        .any(|row| !row.kill_score_trend.is_empty())
}

/// What the apply layer did: per symbol its newest plan, its outcome and repeats, then the latest
/// plans and outcomes.
fn apply_lines(out: &mut String, view: &View, apply: &ApplySide, paint: Paint) {
    let colour = if apply.following { GREEN } else { YELLOW };
    out.push_str(&paint.apply(&format!("apply layer: {}\n", apply.state()), colour));
    let width = view
        .proposals
        .iter()
        .map(|r| r.symbol.chars().count())
        .max()
        .unwrap_or(0);
    for row in &view.proposals {
        if let Some(note) = row.apply_note() {
            out.push_str(&format!("  {:width$}  {note}\n", row.symbol));
        }
    }
    for entry in apply.recent.iter().take(RECENT_LINES) {
        out.push_str(&format!(
            "  {} {:6} {} {} {}\n",
            entry.time_of_day(),
            entry.stream,
            entry.symbol,
            entry.what,
            entry.detail
        ));
    }
}

/// One line per thing the exit code stands for, most serious first, or OK.
fn verdicts(out: &mut String, view: &View, paint: Paint) {
    let high: Vec<String> = view
        .high()
        .map(|r| format!("{} {:.3}", r.symbol, r.kill_score))
        .collect();
    let stale: Vec<&str> = view.stale().map(|r| r.symbol.as_str()).collect();
    if !view.redis_up {
        out.push_str(&paint.apply(
            "UNKNOWN: Redis is unreachable; the values above are the last ones read\n",
            BOLD_RED,
        ));
    }
    if !view.missing.is_empty() {
        out.push_str(&paint.apply(
            &format!("MISSING: no proposal for {}\n", view.missing.join(", ")),
            YELLOW,
        ));
    }
    if !stale.is_empty() {
        out.push_str(&paint.apply(
            &format!(
                "STALE: no update for over {STALE_AFTER_SECONDS}s: {}\n",
                stale.join(", ")
            ),
            YELLOW,
        ));
    }
    if !high.is_empty() {
        out.push_str(&paint.apply(
            &format!(
                "HIGH: kill score at or above {KILL_HIGH}: {}\n",
                high.join(", ")
            ),
            BOLD_RED,
        ));
    }
    if exit_code(view) == EXIT_OK {
        out.push_str(&paint.apply(
            &format!("OK: all fresh, every kill score below {KILL_HIGH}\n"),
            GREEN,
        ));
    }
}

/// The view with every control character replaced: an exporter's answer or a Redis error must
/// not move the cursor or recolour the terminal.
fn printable(view: &View) -> View {
    let mut view = view.clone();
    clean(&mut view.version);
    view.redis_error.iter_mut().for_each(clean);
    view.missing.iter_mut().for_each(clean);
    view.proposals.iter_mut().for_each(clean_row);
    for entry in view.apply.iter_mut().flat_map(|a| &mut a.recent) {
        for text in [
            &mut entry.stream,
            &mut entry.symbol,
            &mut entry.what,
            &mut entry.detail,
        ] {
            clean(text);
        }
    }
    view
}

/// The text with each control character replaced by U+FFFD.
fn clean(text: &mut String) {
    if text.contains(char::is_control) {
        *text = text
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
    }
}

/// A row with its texts [`clean`]ed.
fn clean_row(row: &mut Row) {
    clean(&mut row.symbol);
    row.action.iter_mut().for_each(clean);
    row.calibrated_action.iter_mut().for_each(clean);
    row.plan_decision.iter_mut().for_each(clean);
    row.result_outcome.iter_mut().for_each(clean);
}

/// The colour of a kill score's band.
fn kill_colour(kill_score: f64) -> &'static str {
    match KillBand::of(kill_score) {
        KillBand::Low => GREEN,
        KillBand::High => RED,
        KillBand::Critical => WHITE_ON_RED,
    }
}

fn r_net_colour(r_net: f64) -> &'static str {
    match RNetBand::of(r_net) {
        RNetBand::Good => GREEN,
        RNetBand::Fair => YELLOW,
        RNetBand::Poor => RED,
    }
}

/// The action with the heat gate's verdict beside it.
fn action_text(row: &Row) -> String {
    let mut action = row.action.clone().unwrap_or_else(|| "-".to_owned());
    match row.calibration() {
        // The page sets the lone word apart in small type; a line of text brackets it.
        Some(kept @ Calibration::Kept) => action.push_str(&format!(" ({})", kept.note("->"))),
        Some(replaced) => action.push_str(&format!(" {}", replaced.note("->"))),
        None => {}
    }
    action
}

/// The data age, with `STALE` after it when it is.
fn age_text(row: &Row) -> String {
    let mut age = view::format_age(row.age_seconds);
    if row.stale {
        age.push_str(" STALE");
    }
    age
}

fn cells(row: &Row, trends: bool) -> Vec<Cell> {
    let mut cells: Vec<Cell> = vec![
        (row.symbol.clone(), Tint::Plain),
        (
            format!("{:.3}", row.kill_score),
            Tint::Whole(kill_colour(row.kill_score)),
        ),
    ];
    if trends {
        let blocks = trend::blocks(&row.kill_score_trend, trend::TABLE_WIDTH);
        cells.push((
            blocks.iter().map(|(c, _)| c).collect(),
            Tint::Blocks(blocks),
        ));
    }
    cells.extend(row.components().map(|c| (format!("{c:.2}"), Tint::Plain)));
    cells.extend([
        (
            format!("{:.2}", row.r_net),
            Tint::Whole(r_net_colour(row.r_net)),
        ),
        (
            row.new_sl.map(|sl| sl.to_string()).unwrap_or_default(),
            Tint::Plain,
        ),
        (action_text(row), Tint::Plain),
        (age_text(row), Tint::Plain),
    ]);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{VIEWED_AT as NOW, seed_hash, with, without};

    /// The view of a refresh that just read these hashes, each updated 3s ago unless it says.
    fn view(hashes: &[(&str, &[(&str, &str)])]) -> View {
        let fresh = (NOW - 3.0).to_string();
        let pairs: Vec<Vec<(&str, &str)>> = hashes
            .iter()
            .map(|(_, pairs)| {
                // The first of two equal fields wins, so a test's own epoch replaces this one.
                let mut pairs = pairs.to_vec();
                pairs.push(("last_update_epoch", &fresh));
                pairs
            })
            .collect();
        let hashes: Vec<(&str, &[(&str, &str)])> = hashes
            .iter()
            .zip(&pairs)
            .map(|((symbol, _), pairs)| (*symbol, pairs.as_slice()))
            .collect();
        View::new(
            &Snapshot::of_hashes(&hashes, NOW),
            NOW,
            &ApplyView::default(),
        )
    }

    #[test]
    fn exit_codes() {
        let low = view(&[("BTCUSDT", &[("kill_score", "0.59")])]);
        assert_eq!(exit_code(&low), EXIT_OK);
        let high = view(&[
            ("BTCUSDT", &[("kill_score", "0.59")]),
            ("ETHUSDT", &[("kill_score", "0.6")]),
        ]);
        assert_eq!(exit_code(&high), EXIT_KILL_HIGH);
        let stale_and_high = view(&[
            ("BTCUSDT", &[("kill_score", "0.9")]),
            ("ETHUSDT", &[("last_update_epoch", "1769130000")]),
        ]);
        assert_eq!(exit_code(&stale_and_high), EXIT_STALE);
        let mut down = low.clone();
        down.redis_up = false;
        assert_eq!(exit_code(&down), EXIT_STALE);
        let mut missing = low.clone();
        missing.missing = vec!["DOGEUSDT".into()];
        assert_eq!(exit_code(&missing), EXIT_STALE);
        assert_eq!(
            exit_code(&view(&[])),
            EXIT_OK,
            "nothing open, nothing to fear"
        );
    }

    #[test]
    fn plain_table_is_aligned_and_has_a_verdict() {
        // The seed's ETHUSDT, calibrated and updated as `view` says.
        let eth = with(
            &without(seed_hash("ETHUSDT"), &["last_update_epoch"]),
            &[("action", "FULL_CLOSE"), ("calibrated", "1")],
        );
        let view = view(&[
            ("ETHUSDT", &eth),
            (
                "BTCUSDT",
                &[
                    ("kill_score", "0.527"),
                    ("R_net", "7.5"),
                    ("harvest_action", "PARTIAL_75"),
                    ("new_sl_proposed", "None"),
                ],
            ),
        ]);
        let text = table(&view, "redis 127.0.0.1:6379", false);
        assert!(!text.contains('\x1b'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "harvest-exporter {} · Redis up · cache 0.0s · 2 symbols · redis 127.0.0.1:6379",
                view.version
            )
        );
        assert_eq!(
            lines[1..4],
            [
                "SYMBOL    KILL  FLIP  SPIKE  TSDROP  AGEPEN  R_NET  NEW_SL  ACTION                                          DATA AGE",
                "ETHUSDT  0.753  1.00   0.25    0.21    0.30   2.45   100.2  FULL_CLOSE_PROPOSED -> FULL_CLOSE (calibrated)  3s",
                "BTCUSDT  0.527  0.00   0.00    0.00    0.00   7.50          PARTIAL_75                                      3s",
            ]
        );
        assert_eq!(lines[4], "HIGH: kill score at or above 0.6: ETHUSDT 0.753");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn colours_follow_the_bands_and_stale_rows_are_dim() {
        let view = view(&[
            ("CRIT", &[("kill_score", "0.85"), ("R_net", "8")]),
            ("HIGH", &[("kill_score", "0.65"), ("R_net", "4")]),
            ("LOW", &[("kill_score", "0.55"), ("R_net", "1")]),
            (
                "OLD",
                &[("kill_score", "0.95"), ("last_update_epoch", "1769130000")],
            ),
        ]);
        let text = table(&view, "x", true);
        let line = |symbol: &str| {
            text.lines()
                .find(|l| l.contains(symbol))
                .unwrap()
                .to_owned()
        };
        assert!(line("CRIT").contains(&format!("{WHITE_ON_RED}0.850{RESET}")));
        assert!(line("CRIT").contains(&format!("{GREEN} 8.00{RESET}")));
        assert!(line("HIGH").contains(&format!("{RED}0.650{RESET}")));
        assert!(line("HIGH").contains(&format!("{YELLOW} 4.00{RESET}")));
        assert!(line("LOW").contains(&format!("{GREEN}0.550{RESET}")));
        assert!(line("LOW").contains(&format!("{RED} 1.00{RESET}")));
        let old = line("OLD");
        assert!(old.starts_with(DIM) && old.ends_with(RESET) && old.contains("10m 00s STALE"));
        assert_eq!(
            old.matches('\x1b').count(),
            2,
            "no band colours inside a greyed row"
        );
        assert!(text.contains(&format!("{GREEN}Redis up{RESET}")));
        assert!(text.contains("STALE: no update for over 60s: OLD"));
    }

    #[test]
    fn a_trend_column_only_when_a_row_has_a_trend() {
        let mut view = view(&[
            ("BTCUSDT", &[("kill_score", "0.7")]),
            ("ETHUSDT", &[("kill_score", "0.5")]),
        ]);
        assert!(
            !table(&view, "x", false).contains(TREND),
            "Redis read directly"
        );
        view.proposals[0].kill_score_trend = vec![0.1, 0.4, 0.7];
        let text = table(&view, "x", false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("SYMBOL    KILL  TREND  FLIP"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("BTCUSDT  0.700  ▁▄▆    0.00"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("ETHUSDT  0.500         0.00"),
            "{text}"
        );
        view.proposals[0].kill_score_trend = (0..40).map(|i| f64::from(i) / 39.0).collect();
        let text = table(&view, "x", false);
        assert!(
            text.contains("0.700  ▁▁▂▂▃▃▄▄▅▅▆▆▇▇██  0.00"),
            "16 blocks at most: {text}"
        );
        let text = table(&view, "x", true);
        assert!(
            text.contains(&format!(
                "{GREEN}▁▁▂▂▃▃▄▄▅▅{RESET}{RED}▆▆▇{RESET}{WHITE_ON_RED}▇██{RESET}  "
            )),
            "{text:?}"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let mut view = view(&[("BTCUSDT", &[("kill_score", "0.5")])]);
        view.proposals[0].symbol = "\x1b[2JEVIL".into();
        view.proposals[0].action = Some("\x1b]0;title\x07".into());
        view.redis_error = Some("line\nbreak".into());
        view.redis_up = false;
        let text = table(&view, "x", false);
        assert!(!text.contains(['\x1b', '\x07']), "{text:?}");
        assert!(text.contains("\u{fffd}[2JEVIL"), "{text}");
        assert!(text.contains("Redis down: line\u{fffd}break"), "{text}");
    }

    #[test]
    fn redis_down_and_empty() {
        let mut down = view(&[]);
        down.redis_up = false;
        down.redis_error = Some("cannot connect to redis at 127.0.0.1:1: refused".into());
        let text = table(&down, "redis 127.0.0.1:1", false);
        assert!(
            text.contains("· Redis down: cannot connect to redis at 127.0.0.1:1: refused ·"),
            "{text}"
        );
        assert!(text.contains("(no proposals)"));
        assert!(text.contains("UNKNOWN: Redis is unreachable"));
        assert!(!text.contains("OK:"));
        assert!(table(&view(&[]), "x", false).contains("OK: all fresh"));
    }
}

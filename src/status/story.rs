//! `status SYMBOL`: one symbol's story in a terminal (its current values, the trend of its
//! history, its events and the apply layer's plans), and the exit code it stands for. The story
//! is a running exporter's `/api/v1/proposals/{symbol}`, or made here from one read of Redis,
//! which knows only the present.

use super::{
    BOLD_RED, EXIT_KILL_HIGH, EXIT_OK, EXIT_STALE, GREEN, Paint, YELLOW, action_text, age_text,
    clean, clean_row, kill_colour, r_net_colour, trend,
};
use crate::civil::time_of_day;
use crate::thresholds::KillBand;
use crate::view::{COMPONENTS, KILL_HIGH, Plan, STALE_AFTER_SECONDS, Story, View};

/// The widest trend of a story: it has the line to itself.
const TREND_WIDTH: usize = 48;
/// How long a plan's ID is shown: enough to tell plans apart and to find one in the stream.
const PLAN_ID_WIDTH: usize = 12;

/// The story one read of Redis can tell: the present only.
pub(super) fn from_view(view: &View, symbol: &str) -> Story {
    Story {
        version: view.version.clone(),
        generated_at: view.generated_at,
        symbol: symbol.to_owned(),
        current: view.proposals.iter().find(|r| r.symbol == symbol).cloned(),
        redis_up: view.redis_up,
        history_max_age_seconds: 0.0,
        history: Vec::new(),
        events: Vec::new(),
        plans: None,
    }
}

/// The exit-code rule of the table, for this symbol alone: 2 when it cannot be vouched for
/// (Redis unreachable, no proposal, stale data), else 1 at or above [`KILL_HIGH`], else 0.
pub(super) fn exit_code(story: &Story) -> u8 {
    match &story.current {
        Some(row) if story.redis_up && !row.stale => {
            if row.kill_score >= KILL_HIGH {
                EXIT_KILL_HIGH
            } else {
                EXIT_OK
            }
        }
        _ => EXIT_STALE,
    }
}

/// The story as text, coloured with ANSI codes when `colour`. `from_exporter` says whether
/// history, events and plans could have been told at all.
pub fn text(story: &Story, source: &str, colour: bool, from_exporter: bool) -> String {
    let story = &printable(story);
    let paint = Paint(colour);
    let redis = if story.redis_up {
        paint.apply("Redis up", GREEN)
    } else {
        paint.apply("Redis down", BOLD_RED)
    };
    let mut out = format!(
        "harvest-exporter {} · {redis} · {} · {source}\n",
        story.version, story.symbol
    );
    current(&mut out, story, paint);
    if from_exporter {
        history(&mut out, story, paint);
    } else {
        out.push_str("history, events and plans come from a running exporter (--from)\n");
    }
    verdict(&mut out, story, paint);
    out
}

/// The current values, one to a line.
fn current(out: &mut String, story: &Story, paint: Paint) {
    let Some(row) = &story.current else {
        out.push_str(&format!("no proposal for {} in Redis\n", story.symbol));
        return;
    };
    let band = KillBand::of(row.kill_score);
    let band_text = match band.floor() {
        None => format!("low (below {KILL_HIGH})"),
        Some(floor) => format!("{} (from {floor})", band_name(band)),
    };
    let mut lines = vec![
        (
            "kill score",
            paint.apply(
                &format!("{:.3}  {band_text}", row.kill_score),
                kill_colour(row.kill_score),
            ),
        ),
        (
            "components",
            COMPONENTS
                .iter()
                .zip(row.components())
                .map(|(component, value)| format!("{} {value:.2}", component.label))
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        (
            "R_net",
            paint.apply(&format!("{:.2}", row.r_net), r_net_colour(row.r_net)),
        ),
        (
            "new SL",
            row.new_sl
                .map_or_else(|| "-".to_owned(), |sl| sl.to_string()),
        ),
        ("action", action_text(row)),
    ];
    if let Some(note) = row.apply_note() {
        lines.push(("apply", note));
    }
    let age = age_text(row);
    lines.push((
        "data age",
        if row.stale {
            paint.apply(&age, YELLOW)
        } else {
            age
        },
    ));
    for (label, value) in lines {
        out.push_str(&format!("{label:<11} {value}\n"));
    }
}

fn band_name(band: KillBand) -> &'static str {
    match band {
        KillBand::Low => "low",
        KillBand::High => "high",
        KillBand::Critical => "critical",
    }
}

/// The trend over the history, the events and the plans, as a running exporter told them.
fn history(out: &mut String, story: &Story, paint: Paint) {
    match (story.history.first(), story.history.last()) {
        (Some(first), Some(last)) => {
            let scores: Vec<f64> = story
                .history
                .iter()
                .map(|p| p.value("kill_score"))
                .collect();
            let blocks = trend::blocks(&scores, TREND_WIDTH);
            let count = story.history.len();
            out.push_str(&format!(
                "{:<11} {}  over {} ({count} point{})\n",
                "trend",
                trend::paint(&blocks, paint),
                crate::view::format_age(Some(last.timestamp - first.timestamp)),
                if count == 1 { "" } else { "s" },
            ));
        }
        _ if story.history_max_age_seconds > 0.0 => out.push_str("history: none recorded yet\n"),
        _ => out.push_str("history: the exporter keeps none (--history.max-age)\n"),
    }
    if story.events.is_empty() {
        out.push_str("events: none\n");
    } else {
        out.push_str("events:\n");
        for event in &story.events {
            out.push_str(&format!(
                "  {}  {}\n",
                time_of_day(event.timestamp),
                event.text
            ));
        }
    }
    match &story.plans {
        None => out.push_str("plans: the exporter does not follow the apply streams\n"),
        Some(plans) if plans.is_empty() => out.push_str("plans: none\n"),
        Some(plans) => {
            out.push_str("plans, newest first:\n");
            for plan in plans {
                out.push_str(&format!("  {}\n", plan_line(plan)));
            }
        }
    }
}

/// `HH:MM:SS  plan_id  DECISION  ACTION  codes  outcome`.
fn plan_line(plan: &Plan) -> String {
    let id: String = plan.plan_id.chars().take(PLAN_ID_WIDTH).collect();
    let codes = if plan.reason_codes.is_empty() {
        "-".to_owned()
    } else {
        plan.reason_codes.join(",")
    };
    let mut outcome = match &plan.result {
        Some(result) => {
            let mut outcome = result.outcome.replace('_', " ");
            if let Some(error) = &result.error {
                outcome.push_str(&format!(" ({error})"));
            }
            if let Some(latency) = result.latency_seconds {
                outcome.push_str(&format!(" after {latency:.2}s"));
            }
            outcome
        }
        None => plan.result_status.clone(),
    };
    match plan.repeats {
        0 => {}
        1 => outcome.push_str(" · 1 repeat"),
        n => outcome.push_str(&format!(" · {n} repeats")),
    }
    format!(
        "{}  {id:<PLAN_ID_WIDTH$}  {:<8} {:<20} {codes}  {outcome}",
        time_of_day(plan.timestamp),
        plan.decision,
        plan.action.as_deref().unwrap_or("-"),
    )
}

/// What the exit code stands for, in one line.
fn verdict(out: &mut String, story: &Story, paint: Paint) {
    let symbol = &story.symbol;
    let (line, colour) = match &story.current {
        _ if !story.redis_up => (
            "UNKNOWN: Redis is unreachable; the values above are the last ones read".to_owned(),
            BOLD_RED,
        ),
        None => (format!("MISSING: no proposal for {symbol}"), YELLOW),
        Some(row) if row.stale => (
            format!("STALE: no update for over {STALE_AFTER_SECONDS}s"),
            YELLOW,
        ),
        Some(row) if row.kill_score >= KILL_HIGH => (
            format!(
                "HIGH: kill score at or above {KILL_HIGH}: {:.3}",
                row.kill_score
            ),
            BOLD_RED,
        ),
        Some(_) => (format!("OK: fresh, kill score below {KILL_HIGH}"), GREEN),
    };
    out.push_str(&paint.apply(&line, colour));
    out.push('\n');
}

/// The story with every control character replaced, as [`super::table`] shows a view.
fn printable(story: &Story) -> Story {
    let mut story = story.clone();
    clean(&mut story.version);
    clean(&mut story.symbol);
    story.current.iter_mut().for_each(clean_row);
    for event in &mut story.events {
        clean(&mut event.text);
    }
    for plan in story.plans.iter_mut().flatten() {
        clean(&mut plan.plan_id);
        clean(&mut plan.decision);
        clean(&mut plan.result_status);
        plan.action.iter_mut().for_each(clean);
        plan.reason_codes.iter_mut().for_each(clean);
        if let Some(result) = &mut plan.result {
            clean(&mut result.outcome);
            result.error.iter_mut().for_each(clean);
        }
    }
    story
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{RED, RESET};
    use super::*;
    use crate::apply::ApplyView;
    use crate::fixtures::VIEWED_AT as NOW;
    use crate::snapshot::Snapshot;
    use crate::view::Row;

    /// BTCUSDT's row from a read of these fields, updated 3s before [`NOW`] unless they say.
    fn row(pairs: &[(&str, &str)]) -> Row {
        let fresh = (NOW - 3.0).to_string();
        let mut pairs = pairs.to_vec();
        pairs.push(("last_update_epoch", &fresh));
        let hashes: [(&str, &[(&str, &str)]); 1] = [("BTCUSDT", &pairs)];
        let snapshot = Snapshot::of_hashes(&hashes, NOW);
        View::new(&snapshot, NOW, &ApplyView::default())
            .proposals
            .remove(0)
    }

    /// A story as a running exporter's endpoint answers it, an hour of history to [`NOW`].
    fn told() -> Story {
        let mut current = row(&[
            ("kill_score", "0.653"),
            ("k_regime_flip", "1"),
            ("k_sigma_spike", "0.25"),
            ("R_net", "4.2"),
            ("new_sl_proposed", "101.5"),
            ("harvest_action", "FULL_CLOSE_PROPOSED"),
            ("action", "FULL_CLOSE"),
            ("calibrated", "1"),
        ]);
        current.plan_decision = Some("EXECUTE".into());
        current.result_outcome = Some("dry_run".into());
        current.result_repeats = 3;
        let point = |ago: f64, kill_score: f64| {
            json!({"timestamp": NOW - ago, "action": "PARTIAL_25", "kill_score": kill_score,
                   "k_regime_flip": 0.0, "k_sigma_spike": 0.0, "k_ts_drop": 0.0,
                   "k_age_penalty": 0.0, "r_net": 4.2})
        };
        serde_json::from_value(json!({
            "version": "9.9.9",
            "generated_at": NOW,
            "symbol": "BTCUSDT",
            "current": current,
            "redis_up": true,
            "history_max_age_seconds": 86_400.0,
            "history": [point(3_600.0, 0.1), point(1_800.0, 0.5), point(3.0, 0.653)],
            "events": [{
                "timestamp": NOW - 1_800.0,
                "kind": "action_changed",
                "text": "action PARTIAL_25 → FULL_CLOSE_PROPOSED",
            }],
            "plans": [
                {
                    "plan_id": "3f2a9c1b0d4e5f60718293a4",
                    "timestamp": NOW - 60.0,
                    "decision": "EXECUTE",
                    "action": "FULL_CLOSE",
                    "reason_codes": ["kill_score_high", "regime_flip"],
                    "kill_score": 0.653,
                    "result": {
                        "timestamp": NOW - 59.5,
                        "outcome": "dry_run",
                        "executed": false,
                        "error": null,
                        "latency_seconds": 0.5,
                    },
                    "result_status": "result",
                    "repeats": 3,
                },
                {
                    "plan_id": "short",
                    "timestamp": NOW - 120.0,
                    "decision": "SKIP",
                    "action": null,
                    "reason_codes": [],
                    "kill_score": null,
                    "result": null,
                    "result_status": "no result yet",
                    "repeats": 0,
                },
            ],
        }))
        .expect("the endpoint's document")
    }

    #[test]
    fn the_story_of_a_symbol() {
        let text = text(
            &told(),
            "http://127.0.0.1:8042/api/v1/proposals/BTCUSDT",
            false,
            true,
        );
        let expected = "\
harvest-exporter 9.9.9 · Redis up · BTCUSDT · http://127.0.0.1:8042/api/v1/proposals/BTCUSDT
kill score  0.653  high (from 0.6)
components  regime flip 1.00 · sigma spike 0.25 · TS drop 0.00 · age penalty 0.00
R_net       4.20
new SL      101.5
action      FULL_CLOSE_PROPOSED -> FULL_CLOSE (calibrated)
apply       plan EXECUTE · dry run · 3 repeats
data age    3s
trend       ▁▅▆  over 59m 57s (3 points)
events:
  00:40:00  action PARTIAL_25 → FULL_CLOSE_PROPOSED
plans, newest first:
  01:09:00  3f2a9c1b0d4e  EXECUTE  FULL_CLOSE           kill_score_high,regime_flip  dry run after 0.50s · 3 repeats
  01:08:00  short         SKIP     -                    -  no result yet
HIGH: kill score at or above 0.6: 0.653
";
        assert_eq!(text, expected, "{text}");
    }

    #[test]
    fn what_an_exporter_or_redis_could_not_tell() {
        let mut story = told();
        story.history.clear();
        story.events.clear();
        story.plans = None;
        let text = text(&story, "x", false, true);
        assert!(
            text.contains("history: none recorded yet\nevents: none\n"),
            "{text}"
        );
        assert!(text.contains("plans: the exporter does not follow the apply streams\n"));
        story.history_max_age_seconds = 0.0;
        story.plans = Some(Vec::new());
        let text = super::text(&story, "x", false, true);
        assert!(text.contains("history: the exporter keeps none"), "{text}");
        assert!(text.contains("plans: none\n"), "{text}");

        let view = View::new(
            &Snapshot::of_hashes(&[("BTCUSDT", &[("kill_score", "0.2")])], NOW),
            NOW,
            &ApplyView::default(),
        );
        let read = from_view(&view, "ETHUSDT");
        assert_eq!(read.current, None);
        let text = super::text(&read, "redis 127.0.0.1:6379", false, false);
        assert!(
            text.contains("no proposal for ETHUSDT in Redis\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "history, events and plans come from a running exporter (--from)\n\
                 MISSING: no proposal for ETHUSDT\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn exit_codes_for_one_symbol() {
        let mut story = told();
        assert_eq!(exit_code(&story), EXIT_KILL_HIGH);
        story.current = Some(row(&[("kill_score", "0.59")]));
        assert_eq!(exit_code(&story), EXIT_OK);
        story.redis_up = false;
        assert_eq!(exit_code(&story), EXIT_STALE, "Redis unreachable");
        story.redis_up = true;
        story.current = Some(row(&[
            ("kill_score", "0.1"),
            ("last_update_epoch", "1769130000"),
        ]));
        assert_eq!(exit_code(&story), EXIT_STALE, "stale");
        assert!(text(&story, "x", false, true).contains("STALE: no update for over 60s\n"));
        story.current = None;
        assert_eq!(exit_code(&story), EXIT_STALE, "unknown");
    }

    #[test]
    fn colours_and_hostile_text() {
        let text = text(&told(), "x", true, true);
        assert!(
            text.contains(&format!("{RED}0.653  high (from 0.6){RESET}")),
            "{text:?}"
        );
        assert!(
            text.contains(&format!("{GREEN}▁▅{RESET}{RED}▆{RESET}")),
            "{text:?}"
        );

        let mut story = told();
        story.symbol = "\x1b[2JEVIL".into();
        story.version = "1\x1b[31m".into();
        story.events[0].text = "\x1b]0;title\x07".into();
        let plans = story.plans.as_mut().unwrap();
        plans[0].plan_id = "\x1b[1A\x1b[2K".into();
        plans[0].reason_codes = vec!["code\r".into()];
        plans[0].result.as_mut().unwrap().error = Some("line\nbreak\x1b[0m".into());
        plans[1].decision = "\x08\x08SKIP".into();
        let current = story.current.as_mut().unwrap();
        current.action = Some("\x1b[32mNONE".into());
        current.plan_decision = Some("\u{9b}2J".into());
        let text = super::text(&story, "x", false, true);
        assert!(
            !text.contains(|c: char| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("\u{fffd}[2JEVIL"), "{text}");
        assert!(text.contains("(line\u{fffd}break\u{fffd}[0m)"), "{text}");
    }
}

//! One symbol's page at `/symbol/{symbol}`, from its [`Story`]: the current values as the table
//! at `/` shows them, the kill score and its components over the recorded history, the events
//! read from it and the apply layer's plans with their results. Rendered at the request and not
//! redrawn: it says when it was told and links to itself for a newer telling. Every value from
//! the story is escaped, and the charts' coordinates are numbers computed here.

use std::fmt::Write as _;
use std::time::Duration;

use super::{action, components, data_age, escape, head, kill_pill, r_net_pill, symbol_href, unit};
use crate::civil::{self, time_of_day};
use crate::view::{self, COMPONENTS, KILL_CRITICAL, KILL_HIGH, KillBand, Plan, Point, Row, Story};

const STYLE: &str = include_str!("symbol.css");

/// A chart's box in SVG units. Stretched to its width in CSS, with strokes that do not scale,
/// so the numbers only set the resolution; the pad keeps a stroke at 0 or 1 inside the box.
const CHART_WIDTH: f64 = 1000.0;
const CHART_HEIGHT: f64 = 100.0;
const CHART_PAD: f64 = 2.0;

/// Plan ids are long (a UUID or a hash): the table shows their start, the title all of it.
const PLAN_ID_SHOWN: usize = 8;

/// The page of one symbol's story. `poll` is how often the values change, which the page says
/// beside its reload link; `metrics_path` is where the metrics are served.
pub(crate) fn symbol_page(story: &Story, poll: Duration, metrics_path: &str) -> String {
    let mut out = String::with_capacity(
        12 * 1024
            + story.history.len() * 80
            + story.events.len() * 120
            + story.plans.as_ref().map_or(0, Vec::len) * 400,
    );
    head(
        &mut out,
        &format!("{} \u{b7} Harvest proposals", story.symbol),
        STYLE,
    );
    header(&mut out, story, poll, metrics_path);
    out.push_str("<main>\n");
    match &story.current {
        Some(row) => current(&mut out, row),
        None => out.push_str(
            "<section id=\"now\">\n<p class=\"warn\">The proposal's hash is gone from Redis: \
below is the history that remains.</p>\n</section>\n",
        ),
    }
    history(&mut out, story);
    events(&mut out, story);
    plans(&mut out, story);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, story: &Story, poll: Duration, metrics_path: &str) {
    let side = story
        .current
        .as_ref()
        .and_then(|row| row.position_side.as_deref())
        .map(|side| format!(" <small class=\"side\">{}</small>", escape(side)))
        .unwrap_or_default();
    let (redis_class, redis) = if story.redis_up {
        ("up", "Redis up")
    } else {
        ("down", "Redis down")
    };
    let _ = write!(
        out,
        "<header>\n<p class=\"back\"><a href=\"/\">\u{2190} All proposals</a></p>\n\
<div class=\"title\"><h1><span class=\"name\">{}</span>{side}</h1>\
<nav><a href=\"{metrics_path}\">{metrics_path}</a> <a href=\"/health\">/health</a> <a href=\"/ready\">/ready</a></nav></div>\n\
<p><span id=\"redis\" class=\"{redis_class}\">{redis}</span> · <span id=\"version\">harvest-exporter {}</span> · \
<span id=\"asof\">as of {} UTC</span> · <a id=\"reload\" href=\"{}\">reload</a> \
<small>(values change every {}s)</small></p>\n</header>\n",
        escape(&story.symbol),
        escape(&story.version),
        time_of_day(story.generated_at),
        escape(&symbol_href(&story.symbol)),
        poll.as_secs_f64(),
        metrics_path = escape(metrics_path),
    );
}

/// The current values, with the same markup for each as the table at `/`.
fn current(out: &mut String, row: &Row) {
    out.push_str("<section id=\"now\">\n<dl class=\"now\">\n<div><dt>Kill score</dt><dd>");
    kill_pill(out, row.kill_score);
    out.push_str("</dd></div>\n<div class=\"comp\"><dt>Components</dt><dd>");
    components(out, row);
    out.push_str("</dd></div>\n<div><dt>R_net</dt><dd>");
    r_net_pill(out, row.r_net);
    let _ = write!(
        out,
        "</dd></div>\n<div><dt>New SL</dt><dd>{}</dd></div>\n<div class=\"act\"><dt>Action</dt><dd>",
        row.new_sl
            .map_or_else(|| "\u{2014}".to_owned(), |sl| sl.to_string()),
    );
    action(out, row);
    if !row.reason_codes.is_empty() {
        let _ = write!(
            out,
            "<small class=\"codes\">{}</small>",
            escape(&row.reason_codes)
        );
    }
    let _ = write!(
        out,
        "</dd></div>\n<div><dt>Data age</dt><dd>{}</dd></div>\n</dl>\n</section>\n",
        data_age(row)
    );
}

/// The kill score's chart and its components', over the span from the first point to the
/// story's time.
fn history(out: &mut String, story: &Story) {
    out.push_str("<section id=\"history\">\n<h2>History");
    let Some(first) = story.history.first() else {
        out.push_str("</h2>\n<p class=\"none\">");
        out.push_str(if story.history_max_age_seconds > 0.0 {
            "Nothing recorded yet."
        } else {
            "The exporter keeps no history (--history.max-age is 0)."
        });
        out.push_str("</p>\n</section>\n");
        return;
    };
    let (start, end) = (first.timestamp, story.generated_at.max(first.timestamp));
    let _ = writeln!(
        out,
        " <small>the last {}, kept up to {}</small></h2>",
        view::format_age(Some(end - start)),
        view::format_age(Some(story.history_max_age_seconds)),
    );

    let last = story.history.last().unwrap_or(first);
    let band = story
        .current
        .as_ref()
        .map_or(KillBand::of(last.value("kill_score")), |row| {
            KillBand::of(row.kill_score)
        });
    out.push_str(
        "<h3>Kill score <small>from 0 to 1</small></h3>\n\
<svg class=\"chart\" id=\"kill-chart\"",
    );
    chart_box(out);
    for threshold in [KILL_HIGH, KILL_CRITICAL] {
        let y = chart_y(threshold);
        let _ = write!(
            out,
            "<line class=\"th\" x1=\"0\" x2=\"{CHART_WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>"
        );
    }
    step_line(out, band.class(), &story.history, start, end, |point| {
        point.value("kill_score")
    });
    out.push_str("</svg>\n");
    axis(
        out,
        start,
        end,
        &format!("dashed at {KILL_HIGH} and {KILL_CRITICAL}"),
    );

    out.push_str(
        "<h3>Components <small>each from 0 to its largest value</small></h3>\n\
<svg class=\"chart small\" id=\"components-chart\"",
    );
    chart_box(out);
    for (i, component) in COMPONENTS.iter().enumerate() {
        step_line(out, &format!("c{i}"), &story.history, start, end, |point| {
            point.value(component.key) / component.max
        });
    }
    out.push_str("</svg>\n");
    axis(out, start, end, "");
    out.push_str("<p class=\"legend\">");
    for (i, c) in COMPONENTS.iter().enumerate() {
        let _ = write!(
            out,
            "<span><i class=\"sw c{i}\"></i>{} 0\u{2013}{}</span> ",
            c.label, c.max
        );
    }
    out.push_str("</p>\n");

    let r_nets = story.history.iter().map(|point| point.value("r_net"));
    let (low, high) = r_nets.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), r| {
        (low.min(r), high.max(r))
    });
    let _ = write!(
        out,
        "<p id=\"r-net\">R_net from {low:.2} to {high:.2} over the history, {:.2} at its end.</p>\n</section>\n",
        last.value("r_net"),
    );
}

fn chart_box(out: &mut String) {
    let _ = write!(
        out,
        " viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" preserveAspectRatio=\"none\" aria-hidden=\"true\">"
    );
}

/// The times under a chart, its ends in UTC HH:MM, with a note between them.
fn axis(out: &mut String, start: f64, end: f64, note: &str) {
    let _ = writeln!(
        out,
        "<div class=\"axis\"><time>{}</time><span>{note}</span><time>{}</time></div>",
        &time_of_day(start)[..5],
        &time_of_day(end)[..5],
    );
}

/// The values of `points` (as fractions of the chart's height) as a step line from `start` to
/// `end`: a value holds until the next point's time, the last one until `end`.
fn step_line(
    out: &mut String,
    class: &str,
    points: &[Point],
    start: f64,
    end: f64,
    value: impl Fn(&Point) -> f64,
) {
    let span = end - start;
    let x = |time: f64| {
        if span > 0.0 {
            unit((time - start) / span) * CHART_WIDTH
        } else {
            0.0
        }
    };
    let _ = write!(out, "<path class=\"{class}\" d=\"");
    for (i, point) in points.iter().enumerate() {
        let (x, y) = (x(point.timestamp), chart_y(value(point)));
        if i == 0 {
            let _ = write!(out, "M{x:.1},{y:.1}");
        } else {
            let _ = write!(out, "H{x:.1}V{y:.1}");
        }
    }
    let _ = write!(out, "H{CHART_WIDTH}\"/>");
}

fn chart_y(fraction: f64) -> f64 {
    CHART_PAD + (1.0 - unit(fraction)) * (CHART_HEIGHT - 2.0 * CHART_PAD)
}

/// The events, newest first.
fn events(out: &mut String, story: &Story) {
    out.push_str("<section id=\"events\">\n<h2>Events</h2>\n<ol class=\"events\">\n");
    for event in story.events.iter().rev() {
        let _ = writeln!(
            out,
            "<li><time>{}</time> {}</li>",
            moment(event.timestamp, story.generated_at),
            escape(&event.text),
        );
    }
    if story.events.is_empty() {
        out.push_str("<li class=\"none\">No events in the recorded history.</li>\n");
    }
    out.push_str("</ol>\n</section>\n");
}

/// The apply layer's plans for the symbol, newest first, as cards on a phone.
fn plans(out: &mut String, story: &Story) {
    out.push_str("<section id=\"plans\">\n<h2>Plans</h2>\n");
    let Some(plans) = &story.plans else {
        out.push_str(
            "<p class=\"none\">The exporter does not follow the apply streams: no plans to show.</p>\n</section>\n",
        );
        return;
    };
    if plans.is_empty() {
        out.push_str(
            "<p class=\"none\">No plans for this symbol in the apply streams.</p>\n</section>\n",
        );
        return;
    }
    out.push_str(
        "<table class=\"plans\">\n<thead><tr><th>Time</th><th>Plan</th><th>Decision</th>\
<th>Action</th><th>Reason codes</th><th>Result</th><th>Repeats</th></tr></thead>\n<tbody>\n",
    );
    for plan in plans {
        plan_row(out, plan, story.generated_at);
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn plan_row(out: &mut String, plan: &Plan, now: f64) {
    let shown: String = plan.plan_id.chars().take(PLAN_ID_SHOWN).collect();
    let ellipsis = if shown.len() < plan.plan_id.len() {
        "\u{2026}"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<tr><td class=\"time\" data-label=\"Time\">{}</td>\
<td class=\"id\" data-label=\"Plan\"><span title=\"{}\">{}{ellipsis}</span></td>\
<td class=\"decision\" data-label=\"Decision\">{}</td><td class=\"action\" data-label=\"Action\">{}",
        moment(plan.timestamp, now),
        escape(&plan.plan_id),
        escape(&shown),
        escape(&plan.decision),
        escape(plan.action.as_deref().unwrap_or("\u{2014}")),
    );
    if let Some(kill_score) = plan.kill_score {
        let _ = write!(out, " <small>at {kill_score:.3}</small>");
    }
    let _ = write!(
        out,
        "</td><td class=\"reasons\" data-label=\"Reason codes\">{}</td><td class=\"result\" data-label=\"Result\">",
        escape(&plan.reason_codes.join(", ")),
    );
    match &plan.result {
        Some(result) => {
            let mut parts = vec![escape(&result.outcome.replace('_', " ")).into_owned()];
            if let Some(error) = &result.error {
                parts.push(escape(error).into_owned());
            }
            if let Some(latency) = result.latency_seconds {
                parts.push(latency_text(latency));
            }
            out.push_str(&parts.join(" \u{b7} "));
        }
        None => {
            let _ = write!(
                out,
                "<span class=\"pending\">{}</span>",
                escape(&plan.result_status)
            );
        }
    }
    let _ = writeln!(
        out,
        "</td><td class=\"repeats\" data-label=\"Repeats\">{}</td></tr>",
        plan.repeats
    );
}

/// A result's latency: milliseconds under a second, else seconds to a tenth.
fn latency_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds.max(0.0) * 1000.0)
    } else {
        format!("{seconds:.1} s")
    }
}

/// A time in a list: HH:MM:SS in UTC, with its date when that is not `now`'s.
fn moment(time: f64, now: f64) -> String {
    let (text, today) = (
        civil::format_utc(time.max(0.0) as i64),
        civil::format_utc(now.max(0.0) as i64),
    );
    if text[..10] == today[..10] {
        text[11..].to_owned()
    } else {
        text.replacen('T', " ", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ApplyView;
    use crate::fixtures::{VIEWED_AT as NOW, seed_hash, with};
    use crate::snapshot::Snapshot;
    use crate::view::{Event, PlanResult, View};

    const HOSTILE: &str = "<script>alert('x')</script>\"><svg/onload=alert(1)>";

    fn point(ago: f64, kill_score: f64, r_net: f64) -> Point {
        let values = [
            ("kill_score", kill_score),
            ("k_regime_flip", 1.0),
            ("k_sigma_spike", 1.0),
            ("k_ts_drop", 0.5),
            ("k_age_penalty", 0.0),
            ("r_net", r_net),
        ];
        Point {
            timestamp: NOW - ago,
            action: Some("NONE".into()),
            values: values.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn event(ago: f64, kind: &str, text: &str) -> Event {
        Event {
            timestamp: NOW - ago,
            kind: kind.into(),
            text: text.into(),
        }
    }

    /// A story whose every string the data could hold is hostile.
    fn story() -> Story {
        let hash = with(
            seed_hash("ETHUSDT"),
            &[("action", "FULL_CLOSE"), ("calibrated", "1")],
        );
        let snapshot = Snapshot::of_hashes(&[(HOSTILE, &hash)], NOW);
        let mut row = View::new(&snapshot, NOW, &ApplyView::default())
            .proposals
            .remove(0);
        row.symbol = HOSTILE.into();
        row.action = Some("<i>act</i>".into());
        row.reason_codes = "<b>codes</b>".into();
        row.position_side = Some("<u>LONG</u>".into());
        row.plan_decision = Some("EXECUTE".into());
        Story {
            version: "<v>".into(),
            generated_at: NOW,
            symbol: HOSTILE.into(),
            current: Some(row),
            redis_up: true,
            history_max_age_seconds: 7_200.0,
            history: vec![
                point(600.0, 0.3, 2.0),
                point(300.0, 0.7, 7.5),
                point(60.0, 0.9, 1.25),
            ],
            events: vec![
                event(86_400.0, "appeared", "appeared"),
                event(600.0, "stale", "stale"),
                event(300.0, "action_changed", "action NONE \u{2192} <b>FULL</b>"),
            ],
            plans: Some(vec![
                Plan {
                    plan_id: "0123456789abcdef<x>".into(),
                    timestamp: NOW - 10.0,
                    decision: "<EXECUTE>".into(),
                    action: Some("FULL_CLOSE<br>".into()),
                    reason_codes: vec!["kill_high".into(), "<em>x</em>".into()],
                    kill_score: Some(0.9),
                    result: Some(PlanResult {
                        timestamp: NOW - 9.75,
                        outcome: "dry_run".into(),
                        executed: Some(false),
                        error: Some("<boom>".into()),
                        latency_seconds: Some(0.25),
                    }),
                    result_status: "result".into(),
                    repeats: 3,
                },
                Plan {
                    plan_id: "short".into(),
                    timestamp: NOW - 130.0,
                    decision: "SKIP".into(),
                    action: None,
                    reason_codes: Vec::new(),
                    kill_score: None,
                    result: None,
                    result_status: "waiting".into(),
                    repeats: 0,
                },
            ]),
        }
    }

    fn page(story: &Story) -> String {
        symbol_page(story, Duration::from_secs(5), "/metrics")
    }

    #[test]
    fn every_value_from_the_story_is_text() {
        let html = page(&story());
        assert!(!html.contains("<script"), "the page has no script at all");
        for raw in [
            "<svg/", "<i>", "<b>", "<u>", "<v>", "<em>", "<br>", "<boom>", "<x>",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped");
        }
        let symbol =
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;svg/onload=alert(1)&gt;";
        assert!(html.contains(&format!("<title>{symbol} \u{b7} Harvest proposals</title>")));
        assert!(html.contains(&format!(
            "<h1><span class=\"name\">{symbol}</span> <small class=\"side\">&lt;u&gt;LONG&lt;/u&gt;</small></h1>"
        )));
        assert!(html.contains(
            "href=\"/symbol/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%3E%3Csvg%2Fonload%3Dalert%281%29%3E\">reload</a>"
        ));
        assert!(html.contains("harvest-exporter &lt;v&gt;"));
        assert!(
            symbol_page(&story(), Duration::from_secs(5), "/m\"x")
                .contains("<a href=\"/m&quot;x\">/m&quot;x</a>")
        );
        assert!(html.contains(
            "&lt;i&gt;act&lt;/i&gt;<small class=\"cal\">\u{2192} FULL_CLOSE (calibrated)</small>"
        ));
        assert!(html.contains("<small class=\"apply\">plan EXECUTE \u{b7} no result yet</small>"));
        assert!(html.contains("<small class=\"codes\">&lt;b&gt;codes&lt;/b&gt;</small>"));
        assert!(html.contains("action NONE \u{2192} &lt;b&gt;FULL&lt;/b&gt;"));
        assert!(html.contains("<span title=\"0123456789abcdef&lt;x&gt;\">01234567\u{2026}</span>"));
        assert!(html.contains("&lt;EXECUTE&gt;"));
        assert!(html.contains("FULL_CLOSE&lt;br&gt; <small>at 0.900</small>"));
        assert!(html.contains("kill_high, &lt;em&gt;x&lt;/em&gt;"));
    }

    #[test]
    fn nothing_loads_from_elsewhere_and_the_page_stays_small() {
        let html = page(&story());
        for external in ["http://", "https://", "src=", "url(", "@import"] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.len() < 20 * 1024, "{} bytes", html.len());

        // A day's history at one point a minute, with many events and plans.
        let mut long = story();
        long.history = (0..1_440)
            .rev()
            .map(|m| point(f64::from(m) * 60.0, 0.5, 3.0))
            .collect();
        long.events = (0..200)
            .map(|i| event(f64::from(i), "stale", "stale"))
            .collect();
        let plan = long.plans.as_ref().unwrap()[0].clone();
        long.plans = Some(vec![plan; 100]);
        let html = page(&long);
        assert!(html.len() < 256 * 1024, "{} bytes", html.len());
    }

    #[test]
    fn the_charts_step_through_the_history_to_the_stories_time() {
        let html = page(&story());
        // 01:00 to 01:10 over 1000 units; 0 to 1 from 98 down to 2; in the current value's band.
        assert!(
            html.contains("<path class=\"k-high\" d=\"M0.0,69.2H500.0V30.8H900.0V11.6H1000\"/>"),
            "{html}"
        );
        for y in ["40.4", "21.2"] {
            assert!(html.contains(&format!(
                "<line class=\"th\" x1=\"0\" x2=\"1000\" y1=\"{y}\" y2=\"{y}\"/>"
            )));
        }
        assert!(html.contains(
            "<div class=\"axis\"><time>01:00</time><span>dashed at 0.6 and 0.8</span><time>01:10</time></div>"
        ));
        assert!(html.contains("the last 10m 00s, kept up to 2h 00m"));
        // Each component on its own range: a sigma spike of 1 is half of its 2.
        assert!(html.contains("<path class=\"c0\" d=\"M0.0,2.0H500.0V2.0H900.0V2.0H1000\"/>"));
        assert!(html.contains("<path class=\"c1\" d=\"M0.0,50.0H500.0V50.0H900.0V50.0H1000\"/>"));
        assert!(html.contains("<path class=\"c2\" d=\"M0.0,2.0"));
        assert!(html.contains("<path class=\"c3\" d=\"M0.0,98.0"));
        assert!(html.contains("R_net from 1.25 to 7.50 over the history, 1.25 at its end."));
    }

    #[test]
    fn events_newest_first_with_the_date_when_not_today() {
        let html = page(&story());
        let list = &html[html.find("<ol class=\"events\">").unwrap()..];
        let times: Vec<&str> = list
            .split("<time>")
            .skip(1)
            .map(|item| &item[..item.find('<').unwrap()])
            .collect();
        assert_eq!(times, ["01:05:00", "01:00:00", "2026-01-22 01:10:00"]);
    }

    #[test]
    fn plans_with_their_results_or_why_there_are_none() {
        let html = page(&story());
        assert!(html.contains(
            "<td class=\"result\" data-label=\"Result\">dry run \u{b7} &lt;boom&gt; \u{b7} 250 ms</td>\
<td class=\"repeats\" data-label=\"Repeats\">3</td>"
        ));
        assert!(html.contains("<span title=\"short\">short</span>"));
        assert!(html.contains("<span class=\"pending\">waiting</span>"));
        let order = ["01:09:50", "01:07:50"].map(|t| html.find(&format!(">{t}</td>")).unwrap());
        assert!(order.is_sorted(), "as the story lists them, newest first");
        assert_eq!(latency_text(2.04), "2.0 s");

        let mut story = story();
        story.plans = Some(Vec::new());
        assert!(page(&story).contains("No plans for this symbol in the apply streams."));
        story.plans = None;
        let html = page(&story);
        assert!(html.contains("does not follow the apply streams"));
        assert!(!html.contains("<table"));
    }

    #[test]
    fn a_gone_hash_leaves_its_history() {
        let mut story = story();
        story.current = None;
        story.redis_up = false;
        let html = page(&story);
        assert!(html.contains("The proposal's hash is gone from Redis"));
        assert!(!html.contains("<dl"));
        assert!(html.contains("<span id=\"redis\" class=\"down\">Redis down</span>"));
        assert!(
            html.contains("<path class=\"k-crit\" d=\"M0.0,69.2"),
            "the band of the last point"
        );
        assert!(html.contains("id=\"events\"") && html.contains("id=\"plans\""));

        story.history.clear();
        assert!(page(&story).contains("Nothing recorded yet."));
        story.history_max_age_seconds = 0.0;
        let html = page(&story);
        assert!(html.contains("keeps no history"));
        assert!(!html.contains("<svg"));
    }
}

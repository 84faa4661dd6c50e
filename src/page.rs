//! The live page at `/` and the JSON document at `/api/v1/proposals`, both rendered once per
//! refresh from the snapshot's [`View`], and a symbol's page (`symbol`), from its story. Owns the
//! HTML, its inline style and script, HTML escaping and the percent-encoding of links; serving
//! the bytes is `server`'s job, and what the view and the story hold is `view`'s.

pub(crate) mod symbol;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;

use crate::apply::ApplyView;
use crate::history;
use crate::snapshot::Snapshot;
use crate::view::{
    self, ApplySide, COMPONENTS, KILL_CRITICAL, KILL_HIGH, KillBand, R_NET_FAIR, R_NET_GOOD,
    RNetBand, Row, STALE_AFTER_SECONDS, View,
};

pub(crate) const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";
/// The page loads nothing from anywhere else: its only request is for its own JSON document.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// A page left open asks at most once a second, however short the poll interval.
const MIN_PAGE_POLL: Duration = Duration::from_secs(1);

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// A sparkline's box in SVG units, drawn at that size in CSS pixels. The pad keeps a stroke at 0
/// or 1 inside the box.
const SPARK_WIDTH: f64 = 80.0;
const SPARK_HEIGHT: f64 = 24.0;
const SPARK_PAD: f64 = 2.0;

/// The page and its JSON document for one snapshot.
#[derive(Debug)]
pub(crate) struct Page {
    pub html: Bytes,
    pub json: Bytes,
}

impl Page {
    /// `metrics_path` is where the exporter serves its metrics (`--web.telemetry-path`).
    pub(crate) fn new(
        snapshot: &Snapshot,
        now_unix: f64,
        metrics_path: &str,
        apply: &ApplyView,
        history: &history::Shared,
    ) -> Page {
        // A symbol's trend at a time: the refresh loop, which waits for the lock to record the
        // next publication, never waits for a whole page.
        let view = View::new(snapshot, now_unix, apply).with_trends(|symbol| {
            let history = history.read();
            history.trend(symbol, now_unix)
        });
        let json = serde_json::to_vec(&view).expect("a view holds only strings and numbers");
        let poll = snapshot.poll_interval.max(MIN_PAGE_POLL);
        Page {
            html: html(&view, poll, metrics_path).into(),
            json: json.into(),
        }
    }
}

fn html(view: &View, poll: Duration, metrics_path: &str) -> String {
    let mut out = String::with_capacity(12 * 1024 + view.proposals.len() * 1024);
    head(&mut out, "Harvest proposals", "");
    header(&mut out, view, poll, metrics_path);
    out.push_str(
        "<main>\n<table>\n<thead><tr><th>Symbol</th><th>Kill score</th><th>Components</th>\
<th>R_net</th><th>New SL</th><th>Action</th><th>Data age</th></tr></thead>\n<tbody id=\"rows\">\n",
    );
    for row in &view.proposals {
        table_row(&mut out, row);
    }
    if view.proposals.is_empty() {
        out.push_str("<tr class=\"none\"><td colspan=\"7\">No proposals to show.</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n<template id=\"spark\">");
    // The script draws its sparklines on copies of this one: an element made in the markup gets
    // SVG's namespace from the parser, so the script needs neither that name nor innerHTML.
    spark_svg(&mut out, KillBand::Low, "");
    out.push_str("</template>\n");
    if let Some(apply) = &view.apply {
        apply_section(&mut out, apply);
    }
    out.push_str("</main>\n");
    footer(&mut out);
    let config = serde_json::json!({
        "poll_ms": poll.as_millis() as u64,
        "kill_high": KILL_HIGH,
        "kill_critical": KILL_CRITICAL,
        "r_net_good": R_NET_GOOD,
        "r_net_fair": R_NET_FAIR,
        "bar_full": view::BAR_FULL,
        "components": COMPONENTS,
        "spark": { "width": SPARK_WIDTH, "height": SPARK_HEIGHT, "pad": SPARK_PAD },
    });
    // Inside a script element only "</" could end it early; JSON allows "<\/" for it.
    let config = config.to_string().replace("</", "<\\/");
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"config\">{config}</script>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// The document's start up to its body: `title` is escaped, `style` (trusted) follows the shared
/// stylesheet.
fn head(out: &mut String, title: &str, style: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n{STYLE}{style}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

fn header(out: &mut String, view: &View, poll: Duration, metrics_path: &str) {
    let redis_class = if view.redis_up { "up" } else { "down" };
    let count = view.proposals.len();
    let _ = write!(
        out,
        "<header>\n<div class=\"title\"><h1>Harvest proposals</h1>\
<nav><a href=\"{metrics_path}\">{metrics_path}</a> <a href=\"/health\">/health</a> <a href=\"/ready\">/ready</a></nav></div>\n\
<p><span id=\"redis\" class=\"{redis_class}\">{}</span> · cache <span id=\"cache\">{}</span> · \
<span id=\"count\">{count} symbol{}</span> · <span id=\"version\">harvest-exporter {}</span> · \
<span id=\"live\">updates every {}s</span></p>\n\
<p id=\"missing\" class=\"warn\"{}>No proposal for configured symbols: {}</p>\n\
<noscript><p class=\"warn\">JavaScript is off: reload the page for new values.</p></noscript>\n\
</header>\n",
        escape(&view.redis_state()),
        view::format_cache_age(view.cache_age_seconds),
        if count == 1 { "" } else { "s" },
        escape(&view.version),
        poll.as_secs_f64(),
        if view.missing.is_empty() {
            " hidden"
        } else {
            ""
        },
        escape(&view.missing.join(", ")),
    );
}

fn table_row(out: &mut String, row: &Row) {
    let _ = write!(
        out,
        "<tr{} data-symbol=\"{}\"><td class=\"sym\" data-label=\"Symbol\"><a class=\"name\" href=\"{}\">{}</a>",
        if row.stale { " class=\"stale\"" } else { "" },
        escape(&row.symbol),
        escape(&symbol_href(&row.symbol)),
        escape(&row.symbol),
    );
    if let Some(side) = &row.position_side {
        let _ = write!(out, " <small class=\"side\">{}</small>", escape(side));
    }
    out.push_str("</td><td class=\"kill\" data-label=\"Kill score\">");
    kill_pill(out, row.kill_score);
    sparkline(out, &row.kill_score_trend, KillBand::of(row.kill_score));
    out.push_str("</td><td class=\"comp\" data-label=\"Components\">");
    components(out, row);
    out.push_str("</td><td class=\"rnet\" data-label=\"R_net\">");
    r_net_pill(out, row.r_net);
    let _ = write!(
        out,
        "</td><td class=\"sl\" data-label=\"New SL\">{}</td><td class=\"act\" data-label=\"Action\"",
        row.new_sl.map(|sl| sl.to_string()).unwrap_or_default(),
    );
    if !row.reason_codes.is_empty() {
        let _ = write!(out, " title=\"{}\"", escape(&row.reason_codes));
    }
    out.push('>');
    action(out, row);
    let _ = writeln!(
        out,
        "</td><td class=\"age\" data-label=\"Data age\">{}</td></tr>",
        data_age(row),
    );
}

fn kill_pill(out: &mut String, kill_score: f64) {
    let _ = write!(
        out,
        "<span class=\"pill {}\">{kill_score:.3}</span>",
        KillBand::of(kill_score).class(),
    );
}

fn r_net_pill(out: &mut String, r_net: f64) {
    let _ = write!(
        out,
        "<span class=\"pill {}\">{r_net:.2}</span>",
        RNetBand::of(r_net).class()
    );
}

/// The components' stacked bar, each weighted value in its title, and the values under it.
fn components(out: &mut String, row: &Row) {
    let components = row.components();
    let title: Vec<String> = COMPONENTS
        .iter()
        .zip(components)
        .map(|(c, value)| format!("{} {value} ×{}", c.label, c.weight))
        .collect();
    let _ = write!(
        out,
        "<div class=\"bar\" title=\"{}\">",
        escape(&title.join(", "))
    );
    for (i, share) in view::component_shares(components).iter().enumerate() {
        let _ = write!(out, "<i class=\"c{i}\" style=\"width:{share:.1}%\"></i>");
    }
    let parts: Vec<String> = components.iter().map(|v| format!("{v:.2}")).collect();
    let _ = write!(
        out,
        "</div><small class=\"parts\">{}</small>",
        parts.join(" · ")
    );
}

/// The action with the heat gate's verdict and the apply layer's note under it.
fn action(out: &mut String, row: &Row) {
    out.push_str(&escape(row.action.as_deref().unwrap_or("\u{2014}")));
    if let Some(calibration) = row.calibration() {
        let _ = write!(
            out,
            "<small class=\"cal\">{}</small>",
            escape(&calibration.note("\u{2192}"))
        );
    }
    if let Some(note) = row.apply_note() {
        let _ = write!(out, "<small class=\"apply\">{}</small>", escape(&note));
    }
}

fn data_age(row: &Row) -> String {
    format!(
        "{}{}",
        view::format_age(row.age_seconds),
        if row.stale {
            "<b class=\"tag\">stale</b>"
        } else {
            ""
        },
    )
}

/// The kill score's recent course, on a fixed 0 to 1 scale with the kit's thresholds dashed
/// across, stroked in the current band's colour; nothing without a trend. A single value is
/// drawn flat across.
fn sparkline(out: &mut String, trend: &[f64], band: KillBand) {
    let single;
    let trend = match trend {
        [] => return,
        [value] => {
            single = [*value; 2];
            &single[..]
        }
        trend => trend,
    };
    let step = SPARK_WIDTH / (trend.len() - 1) as f64;
    let mut points = String::with_capacity(trend.len() * 10);
    for (i, &value) in trend.iter().enumerate() {
        let _ = write!(points, "{:.1},{:.1} ", i as f64 * step, spark_y(value));
    }
    spark_svg(out, band, points.trim_end());
}

/// The height in the sparkline's box of a kill score, clamped to the scale.
fn spark_y(kill_score: f64) -> f64 {
    SPARK_PAD + (1.0 - unit(kill_score)) * (SPARK_HEIGHT - 2.0 * SPARK_PAD)
}

/// A value clamped to 0..1 for drawing, NaN at 0, so that no value draws outside its chart.
fn unit(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

fn spark_svg(out: &mut String, band: KillBand, points: &str) {
    let _ = write!(
        out,
        "<svg class=\"spark\" viewBox=\"0 0 {SPARK_WIDTH} {SPARK_HEIGHT}\" preserveAspectRatio=\"none\" aria-hidden=\"true\">"
    );
    for threshold in [KILL_HIGH, KILL_CRITICAL] {
        let y = spark_y(threshold);
        let _ = write!(
            out,
            "<line class=\"th\" x1=\"0\" x2=\"{SPARK_WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>"
        );
    }
    let _ = write!(
        out,
        "<polyline class=\"{}\" points=\"{points}\"/></svg>",
        band.class()
    );
}

/// The path of a symbol's page, the symbol percent-encoded but for ASCII letters, digits and
/// `-_.~`, so that no symbol can leave the path segment.
fn symbol_href(symbol: &str) -> String {
    format!("/symbol/{}", view::path_segment(symbol))
}

/// The apply layer's latest plans and outcomes (repeats left out), newest first.
fn apply_section(out: &mut String, apply: &ApplySide) {
    let _ = write!(
        out,
        "<section id=\"apply\">\n<h2>Apply layer <small id=\"following\" class=\"{}\">{}</small></h2>\n<ol id=\"recent\">\n",
        if apply.following { "up" } else { "down" },
        escape(apply.state()),
    );
    for entry in &apply.recent {
        let _ = writeln!(
            out,
            "<li><time>{}</time> <b>{}</b> <span class=\"name\">{}</span> <span class=\"what\">{}</span> <small>{}</small></li>",
            entry.time_of_day(),
            escape(&entry.stream),
            escape(&entry.symbol),
            escape(&entry.what),
            escape(&entry.detail),
        );
    }
    if apply.recent.is_empty() {
        out.push_str("<li class=\"none\">No plans or results yet.</li>\n");
    }
    out.push_str("</ol>\n</section>\n");
}

fn footer(out: &mut String) {
    let _ = write!(
        out,
        "<footer>\n<p>Kill score <span class=\"pill k-low\">&lt; {KILL_HIGH}</span> \
<span class=\"pill k-high\">≥ {KILL_HIGH}</span> <span class=\"pill k-crit\">≥ {KILL_CRITICAL}</span> · \
R_net <span class=\"pill r-good\">≥ {R_NET_GOOD}</span> <span class=\"pill r-fair\">≥ {R_NET_FAIR}</span> \
<span class=\"pill r-poor\">&lt; {R_NET_FAIR}</span> · stale after {STALE_AFTER_SECONDS}s without an update</p>\n<p>Components, \
weighted; a full bar is a weighted sum of {}:",
        view::BAR_FULL
    );
    for (i, c) in COMPONENTS.iter().enumerate() {
        let _ = write!(out, " <i class=\"sw c{i}\"></i>{} ×{}", c.label, c.weight);
    }
    out.push_str("</p>\n</footer>\n");
}

/// Escapes text for element content and for quoted attribute values alike.
fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{VIEWED_AT as NOW, seed_hash, with};
    use std::time::Instant;

    fn snapshot(hashes: &[(&str, &[(&str, &str)])]) -> Snapshot {
        Snapshot::of_hashes(hashes, NOW)
    }

    fn no_history() -> crate::history::Shared {
        crate::history::Shared::off()
    }

    fn page(snapshot: &Snapshot) -> String {
        String::from_utf8(
            Page::new(
                snapshot,
                NOW,
                "/metrics",
                &ApplyView::default(),
                &no_history(),
            )
            .html
            .to_vec(),
        )
        .unwrap()
    }

    /// The text of the first element after `marker` in `html`, up to the next tag.
    fn text_after<'a>(html: &'a str, marker: &str) -> &'a str {
        let rest = &html[html.find(marker).unwrap_or_else(|| panic!("{marker}")) + marker.len()..];
        let rest = &rest[rest.find('>').unwrap() + 1..];
        &rest[..rest.find('<').unwrap()]
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(escape("BTCUSDT"), "BTCUSDT");
        assert!(matches!(escape("BTCUSDT"), Cow::Borrowed(_)));
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;"
        );
    }

    #[test]
    fn a_hostile_symbol_is_text_everywhere() {
        let hostile = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";
        let html = page(&snapshot(&[(
            hostile,
            &[
                ("kill_score", "0.9"),
                ("reason_codes", "<b>bold</b>"),
                ("harvest_action", "<i>"),
            ],
        )]));
        assert_eq!(
            html.matches("<script").count(),
            2,
            "only the page's own scripts"
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>bold"));
        assert!(html.contains(
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        ));
        assert!(html.contains("title=\"&lt;b&gt;bold&lt;/b&gt;\""));
        assert!(
            html.contains(">OTHER<"),
            "unsafe actions are already labels"
        );
    }

    #[test]
    fn rows_carry_bands_components_and_staleness() {
        let fresh = (NOW - 5.0).to_string();
        let old = (NOW - 185.0).to_string();
        let eth = with(
            seed_hash("ETHUSDT"),
            &[
                ("action", "FULL_CLOSE"),
                ("calibrated", "1"),
                ("position_side", "LONG"),
                ("last_update_epoch", &fresh),
            ],
        );
        let btc = with(seed_hash("BTCUSDT"), &[("last_update_epoch", &old)]);
        let html = page(&snapshot(&[
            ("ETHUSDT", &eth),
            ("BTCUSDT", &btc),
            ("SOLUSDT", &[("kill_score", "0.85"), ("R_net", "4")]),
        ]));
        let order: Vec<_> = ["SOLUSDT", "ETHUSDT", "BTCUSDT"]
            .iter()
            .map(|s| html.find(&format!("data-symbol=\"{s}\"")).unwrap())
            .collect();
        assert!(order.is_sorted(), "highest kill score first");

        assert!(html.contains("<tr data-symbol=\"ETHUSDT\">"));
        assert!(html.contains("<span class=\"pill k-high\">0.753</span>"));
        assert!(html.contains("<span class=\"pill k-crit\">0.850</span>"));
        assert!(html.contains("<span class=\"pill k-low\">0.527</span>"));
        assert!(html.contains("<span class=\"pill r-poor\">2.45</span>"));
        assert!(html.contains("<span class=\"pill r-good\">7.50</span>"));
        assert!(html.contains("<span class=\"pill r-fair\">4.00</span>"));
        assert!(html.contains("<i class=\"c0\" style=\"width:65.7%\"></i>"));
        assert!(html.contains("1.00 · 0.25 · 0.21 · 0.30"));
        assert!(
            html.contains("title=\"regime flip 1 ×2, sigma spike 0.25 ×1.5, TS drop 0.208 ×2.5")
        );
        let eth = &html[html.find("data-symbol=\"ETHUSDT\"").unwrap()..];
        assert_eq!(text_after(eth, "data-label=\"New SL\""), "100.2");
        assert!(
            html.contains(
                "FULL_CLOSE_PROPOSED<small class=\"cal\">→ FULL_CLOSE (calibrated)</small>"
            )
        );
        assert!(html.contains("<small class=\"side\">LONG</small>"));
        assert!(html.contains("<td class=\"age\" data-label=\"Data age\">5s</td>"));

        let btc = &html[html[..html.find("data-symbol=\"BTCUSDT\"").unwrap()]
            .rfind("<tr")
            .unwrap()..];
        assert!(
            btc.starts_with("<tr class=\"stale\" data-symbol=\"BTCUSDT\">"),
            "{btc}"
        );
        assert!(
            btc.contains("data-label=\"New SL\"></td>"),
            "no stop loss is blank"
        );
        assert!(btc.contains("3m 05s<b class=\"tag\">stale</b>"));
        let sol = &html[html.find("data-symbol=\"SOLUSDT\"").unwrap()..];
        assert!(sol.contains("unknown<b class=\"tag\">stale</b>"));
        assert!(sol.contains("data-label=\"Action\">—</td>"));
    }

    #[test]
    fn header_tells_redis_state_cache_age_and_counts() {
        let mut down = snapshot(&[("BTCUSDT", &[])]);
        down.redis_up = false;
        down.redis_error = Some("cannot connect to redis at <127.0.0.1:1>".into());
        down.missing = vec!["DOGEUSDT".into()];
        down.last_success_unix = Some(NOW - 90.0);
        let html = page(&down);
        assert!(html.contains(
            "<span id=\"redis\" class=\"down\">Redis down: cannot connect to redis at &lt;127.0.0.1:1&gt;</span>"
        ));
        assert_eq!(text_after(&html, "id=\"cache\""), "1m 30s");
        assert_eq!(text_after(&html, "id=\"count\""), "1 symbol");
        assert!(html.contains(
            "<p id=\"missing\" class=\"warn\">No proposal for configured symbols: DOGEUSDT</p>"
        ));
        for link in ["/metrics", "/health", "/ready"] {
            assert!(html.contains(&format!("<a href=\"{link}\">{link}</a>")));
        }

        let empty = page(&Snapshot::empty(Duration::from_millis(200), Instant::now()));
        assert_eq!(text_after(&empty, "id=\"cache\""), "never");
        assert_eq!(text_after(&empty, "id=\"count\""), "0 symbols");
        assert_eq!(
            text_after(&empty, "id=\"live\""),
            "updates every 1s",
            "floored"
        );
        assert!(empty.contains("<p id=\"missing\" class=\"warn\" hidden>"));
        assert!(empty.contains("No proposals to show."));
        assert!(empty.contains("\"poll_ms\":1000"));
    }

    fn spark(trend: &[f64], band: KillBand) -> String {
        let mut out = String::new();
        sparkline(&mut out, trend, band);
        out
    }

    #[test]
    fn sparklines_scale_clamp_and_show_the_thresholds() {
        assert_eq!(spark(&[], KillBand::Low), "", "no trend, no sparkline");
        let svg = spark(&[-0.5, 0.0, 0.5, 1.0, 1.7, f64::NAN], KillBand::Critical);
        assert!(
            svg.starts_with("<svg class=\"spark\" viewBox=\"0 0 80 24\""),
            "{svg}"
        );
        // From 0 at the bottom to 1 at the top, inside a pad of 2; beyond the scale, clamped.
        assert!(
            svg.contains(
                "<polyline class=\"k-crit\" points=\"0.0,22.0 16.0,22.0 32.0,12.0 48.0,2.0 64.0,2.0 80.0,22.0\"/>"
            ),
            "{svg}"
        );
        for (threshold, y) in [(KILL_HIGH, "10.0"), (KILL_CRITICAL, "6.0")] {
            assert_eq!(format!("{:.1}", spark_y(threshold)), y);
            assert!(
                svg.contains(&format!(
                    "<line class=\"th\" x1=\"0\" x2=\"80\" y1=\"{y}\" y2=\"{y}\"/>"
                )),
                "{svg}"
            );
        }
        assert!(
            spark(&[0.25], KillBand::Low).contains("points=\"0.0,17.0 80.0,17.0\""),
            "one value is drawn flat across"
        );
    }

    #[test]
    fn rows_link_to_their_symbol_and_show_their_trend() {
        assert_eq!(symbol_href("BTCUSDT"), "/symbol/BTCUSDT");
        assert_eq!(
            symbol_href("a-b_c.d~e/f g?h#i%\"<ü"),
            "/symbol/a-b_c.d~e%2Ff%20g%3Fh%23i%25%22%3C%C3%BC"
        );
        let snapshot = snapshot(&[
            ("ETHUSDT", &[("kill_score", "0.7")]),
            ("BTC/USD\"", &[("kill_score", "0.3")]),
        ]);
        let mut view = View::new(&snapshot, NOW, &ApplyView::default());
        view.proposals[0].kill_score_trend = vec![0.2, 0.7];
        let html = html(&view, MIN_PAGE_POLL, "/metrics");
        assert!(html.contains(
            "<a class=\"name\" href=\"/symbol/ETHUSDT\">ETHUSDT</a></td><td class=\"kill\" data-label=\"Kill score\"><span class=\"pill k-high\">0.700</span><svg class=\"spark\""
        ));
        assert!(html.contains("<polyline class=\"k-high\" points=\"0.0,18.0 80.0,8.0\"/>"));
        assert!(html.contains("<a class=\"name\" href=\"/symbol/BTC%2FUSD%22\">BTC/USD&quot;</a>"));
        assert_eq!(
            html.matches("<svg class=\"spark\"").count(),
            2,
            "the trend's and the script's template; none for an empty trend"
        );
        assert!(html.contains("\"spark\":{\"height\":24.0,\"pad\":2.0,\"width\":80.0}"));
    }

    #[test]
    fn page_is_self_contained_and_small() {
        let html = page(&snapshot(&[("BTCUSDT", &[("kill_score", "0.5")])]));
        for external in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.len() < 16 * 1024, "{} bytes", html.len());
    }

    #[test]
    fn json_is_the_view() {
        let snapshot = snapshot(&[("BTCUSDT", &[("kill_score", "0.5")])]);
        let page = Page::new(
            &snapshot,
            NOW,
            "/metrics",
            &ApplyView::default(),
            &no_history(),
        );
        let view: View = serde_json::from_slice(&page.json).unwrap();
        assert_eq!(view, View::new(&snapshot, NOW, &ApplyView::default()));
    }

    #[test]
    fn the_apply_side_beside_each_proposal_and_in_a_list() {
        use crate::apply::{Decision, Newest, Outcome, Recent};
        let apply = ApplyView {
            enabled: true,
            following: true,
            newest: [(
                "ETHUSDT".to_owned(),
                Newest {
                    decision: Some(Decision::Execute),
                    outcome: Some(Outcome::DryRun),
                    repeats: 41,
                },
            )]
            .into(),
            recent: vec![Recent {
                stream: "result",
                at: 1_769_130_500.0,
                symbol: "ETHUSDT".into(),
                what: "executed",
                detail: "<b>".into(),
            }],
        };
        let html = String::from_utf8(
            Page::new(
                &snapshot(&[("ETHUSDT", &[("kill_score", "0.7")])]),
                NOW,
                "/metrics",
                &apply,
                &no_history(),
            )
            .html
            .to_vec(),
        )
        .unwrap();
        assert!(html.contains(
            "<small class=\"apply\">plan EXECUTE \u{b7} dry run \u{b7} 41 repeats</small>"
        ));
        assert!(
            html.contains(
                "<small id=\"following\" class=\"up\">following the apply streams</small>"
            )
        );
        assert!(html.contains(
            "<li><time>01:08:20</time> <b>result</b> <span class=\"name\">ETHUSDT</span> <span class=\"what\">executed</span> <small>&lt;b&gt;</small></li>"
        ));
        let without = page(&snapshot(&[("ETHUSDT", &[("kill_score", "0.7")])]));
        assert!(
            !without.contains("id=\"apply\""),
            "no section when the streams are not followed"
        );
    }
}

//! The Grafana dashboards, checked statically (Grafana cannot be installed here): valid JSON,
//! fixed uids, every panel on the `${datasource}` variable, unique panel ids, the seed's panels
//! and thresholds, every metric a query names exported by the exporter or recorded by the
//! kit's rules, the links between the dashboards, and a layout that reads top-down on a
//! phone. The end-to-end test runs the same queries against a real Prometheus.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{Exporter, Redis};
use crate::prometheus::record_names;
use crate::{
    JOB, deploy, metric_families, metrics_with_seed_symbols, publish_apply_entries, publish_once,
    read, yaml_values,
};

pub const UID: &str = "quantum-harvest-p27";
const DATASOURCE: &str = "${datasource}";
const DASHBOARD_DIR: &str = "/var/lib/grafana/dashboards/quantum";
const DASHBOARD_FILE: &str = "quantum_harvest_control_p27.json";

/// A dashboard of the kit: its file under deploy/grafana/, its fixed uid, and the panels (not
/// rows) that must come first, in this order, when Grafana stacks the panels in one column
/// (a phone): the most urgent.
pub struct Kit {
    pub file: &'static str,
    pub uid: &'static str,
    pub first: &'static [&'static str],
}

pub const DASHBOARDS: [Kit; 3] = [
    Kit {
        file: "quantum_trader_overview.json",
        uid: "quantum-overview",
        first: &[
            "Exporter scraped",
            "Redis reachable",
            "Apply streams read",
            "Oldest proposal age",
            "Newest plan age",
            "Execution errors",
            "Worst kill scores now",
        ],
    },
    Kit {
        file: DASHBOARD_FILE,
        uid: UID,
        first: &["Kill score", "R_net", "New SL", "Harvest proposals"],
    },
    Kit {
        file: "quantum_apply_layer_p3.json",
        uid: "quantum-apply-p3",
        first: &[
            "Streams read",
            "Newest plan age",
            "Execution errors",
            "Entries lost",
            "Largest consumer-group lag",
        ],
    },
];
/// The Grafana unit ids the dashboards may use: a misspelt id shows the raw number.
const UNITS: [&str; 7] = [
    "none",
    "short",
    "s",
    "ms",
    "cpm",
    "percentunit",
    "dateTimeAsIso",
];
/// Series Prometheus itself adds to every scrape and rule evaluation.
const SYNTHETIC: [&str; 7] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

/// The Harvest Control (P2.7) dashboard.
pub fn load() -> Value {
    load_file(DASHBOARD_FILE)
}

/// A dashboard of deploy/grafana/ by its file name.
pub fn load_file(file: &str) -> Value {
    let text = read(&format!("grafana/{file}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// Every panel, those inside collapsed rows included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A query of the dashboard: where it is, its PromQL, and whether Grafana runs it over a range.
pub struct Query {
    pub panel: String,
    pub expr: String,
    pub range: bool,
}

pub fn queries(dashboard: &Value) -> Vec<Query> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| Query {
                    panel: title.clone(),
                    expr: target["expr"].as_str().unwrap_or("").to_owned(),
                    range: target["range"].as_bool().unwrap_or(true),
                })
        })
        .collect()
}

fn has_variable(dashboard: &Value, name: &str) -> bool {
    dashboard["templating"]["list"]
        .as_array()
        .is_some_and(|list| list.iter().any(|v| v["name"] == name))
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no ${name} variable"))
}

/// The selector a query variable takes its values from (`label_values(SELECTOR, LABEL)`),
/// if it is such a variable.
fn label_values_selector(variable: &Value) -> Option<Selector> {
    let label = variable["name"].as_str()?;
    let query = variable["query"]["query"]
        .as_str()
        .or(variable["query"].as_str())?;
    let inner = query
        .strip_prefix("label_values(")?
        .strip_suffix(&format!(", {label})"))?;
    let mut found = selectors(inner);
    (found.len() == 1).then(|| found.remove(0))
}

/// The metric a query variable takes its values from (`label_values(METRIC{...}, name)`).
pub fn variable_metric(dashboard: &Value, name: &str) -> String {
    let var = variable(dashboard, name);
    label_values_selector(var)
        .unwrap_or_else(|| panic!("unexpected {name} variable {var}"))
        .metric
}

/// The metric the `symbol` variable takes its values from (`label_values(METRIC, symbol)`).
pub fn symbol_variable_metric(dashboard: &Value) -> String {
    variable_metric(dashboard, "symbol")
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords, label names, label values or durations.
pub fn metric_names(expr: &str) -> Vec<String> {
    selectors(expr).into_iter().map(|s| s.metric).collect()
}

/// A vector selector of a PromQL expression: the metric name and its label matchers.
#[derive(Debug, PartialEq)]
pub struct Selector {
    pub metric: String,
    /// (label, operator, value), the value unquoted.
    pub matchers: Vec<(String, String, String)>,
}

impl Selector {
    pub fn has(&self, label: &str, operator: &str, value: &str) -> bool {
        self.matchers
            .iter()
            .any(|(l, o, v)| l == label && o == operator && v == value)
    }
}

/// Parses the inside of `{...}`: `label op "value"` pairs separated by commas.
fn matchers(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let label_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let label = rest[..label_end].to_owned();
        rest = rest[label_end..].trim_start();
        let operator = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .unwrap_or("");
        rest = rest[operator.len()..].trim_start();
        let mut value = String::new();
        if let Some(quote) = rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        {
            let mut chars = rest[1..].char_indices();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                if c == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                } else if c == quote {
                    end = i + 2;
                    break;
                } else {
                    value.push(c);
                }
            }
            rest = &rest[end.min(rest.len())..];
        }
        out.push((label, operator.to_owned(), value));
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        if label_end == 0 && operator.is_empty() {
            break;
        }
    }
    out
}

/// The vector selectors of a PromQL expression, in order.
pub fn selectors(expr: &str) -> Vec<Selector> {
    const SKIPPED: [&str; 23] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "by",
        "without",
        "on",
        "ignoring",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_quoted = |mut i: usize| -> usize {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    let skip_to = |mut i: usize, close: char| -> usize {
        while i < chars.len() && chars[i] != close {
            i = if matches!(chars[i], '"' | '\'' | '`') {
                skip_quoted(i)
            } else {
                i + 1
            };
        }
        i + 1
    };
    let next_non_space = |mut i: usize| -> usize {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_quoted(i);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '#' {
            i = skip_to(i, '\n');
        } else if c.is_ascii_digit() || c == '.' || c == '$' {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let is_call = chars.get(after) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if is_call {
                    i = skip_to(after, ')');
                }
            } else if !is_call && !SKIPPED.contains(&word.to_lowercase().as_str()) {
                let mut selector = Selector {
                    metric: word,
                    matchers: Vec::new(),
                };
                if chars.get(after) == Some(&'{') {
                    let end = skip_to(after, '}');
                    let inside: String = chars[after + 1..end.saturating_sub(1).max(after + 1)]
                        .iter()
                        .collect();
                    selector.matchers = matchers(&inside);
                    i = end;
                }
                found.push(selector);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// Everything wrong with a dashboard, given its fixed uid and the metric names that exist.
pub fn problems(dashboard: &Value, uid: &str, known: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["uid"] != uid {
        problems.push(format!("uid is {}, not the fixed {uid}", dashboard["uid"]));
    }
    let mut ids = BTreeSet::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        match panel["id"].as_u64() {
            Some(id) if !ids.insert(id) => {
                problems.push(format!("panel {title:?}: duplicate id {id}"))
            }
            Some(_) => {}
            None => problems.push(format!("panel {title:?}: no id")),
        }
        if panel["datasource"]["uid"] != DATASOURCE {
            problems.push(format!("panel {title:?}: datasource is not {DATASOURCE}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if panel["type"] != "row" && targets.is_empty() {
            problems.push(format!("panel {title:?}: no query"));
        }
        for target in &targets {
            if target["datasource"]["uid"] != DATASOURCE {
                problems.push(format!(
                    "panel {title:?}: a query's datasource is not {DATASOURCE}"
                ));
            }
            let expr = target["expr"].as_str().unwrap_or("");
            let names = metric_names(expr);
            if names.is_empty() {
                problems.push(format!("panel {title:?}: query {expr:?} names no metric"));
            }
            for name in names.into_iter().filter(|n| !known.contains(n)) {
                problems.push(format!(
                    "panel {title:?}: unknown metric {name} in {expr:?}"
                ));
            }
        }
    }
    for name in ["job", "instance", "symbol"] {
        if name == "symbol" && !has_variable(dashboard, name) {
            continue;
        }
        let metric = variable_metric(dashboard, name);
        if !known.contains(&metric) {
            problems.push(format!("variable {name}: unknown metric {metric}"));
        }
    }
    problems
}

/// The names the exporter exports (with every optional family present), the kit records, and
/// Prometheus adds.
fn known_metrics() -> BTreeSet<String> {
    let redis = Redis::start();
    publish_once(&redis);
    publish_apply_entries(&redis, 0);
    let exporter = Exporter::start(&redis, &[]);
    metrics_with_seed_symbols(&exporter);
    let body = exporter.wait_metrics(
        "the apply streams read",
        std::time::Duration::from_secs(20),
        |body| body.contains("quantum_apply_streams_up 1"),
    );
    let mut known: BTreeSet<String> = metric_families(&body).into_iter().collect();
    // A histogram's series: its buckets, sum and count.
    for line in body.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" histogram"))
        {
            known.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
        }
    }
    assert!(
        known.contains("quantum_harvest_calibrated_action"),
        "heat gate fields missing"
    );
    known.extend(record_names(&read("prometheus/recording.yml")));
    known.extend(SYNTHETIC.map(str::to_owned));
    known
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "sum by (symbol) (rate(a_total{job=\"x\", le=~\"b{c}\"}[5m] offset 1h)) * 2.0 \
             + on (symbol) group_left(action) ns:b_seconds:max - 1e3 > bool c unless d"
        ),
        ["a_total", "ns:b_seconds:max", "c", "d"]
    );
    assert_eq!(
        metric_names("max by(symbol, action) (quantum_harvest_action{symbol=~\"$symbol\"} == 1)"),
        ["quantum_harvest_action"]
    );
    assert_eq!(
        metric_names("increase(x_total[$__rate_interval]) and time() - y"),
        ["x_total", "y"]
    );
    let found =
        selectors("max by (symbol) (a{job=\"x\", instance=~\"$instance\",s!~'q\\'}'}) / b{} + c");
    let owned = |l: &str, o: &str, v: &str| (l.to_owned(), o.to_owned(), v.to_owned());
    assert_eq!(
        found,
        [
            Selector {
                metric: "a".to_owned(),
                matchers: vec![
                    owned("job", "=", "x"),
                    owned("instance", "=~", "$instance"),
                    owned("s", "!~", "q'}"),
                ],
            },
            Selector {
                metric: "b".to_owned(),
                matchers: vec![],
            },
            Selector {
                metric: "c".to_owned(),
                matchers: vec![],
            },
        ]
    );
    assert!(found[0].has("job", "=", "x") && !found[0].has("job", "=~", "x"));
    assert_eq!(
        range_selectors(
            "rate(a{le=~\"[0-9]\"}[$__rate_interval]) + max_over_time(b[1h:5m]) + c{d='\\'['}[$__range]"
        ),
        ["$__rate_interval", "1h:5m", "$__range"]
    );
}

#[test]
fn dashboards_pass_the_static_check() {
    let known = known_metrics();
    let files: Vec<String> = dashboard_files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: Vec<&str> = DASHBOARDS.iter().map(|d| d.file).collect();
    assert_eq!(
        files.iter().collect::<BTreeSet<_>>(),
        listed
            .iter()
            .map(|f| (*f).to_owned())
            .collect::<Vec<_>>()
            .iter()
            .collect(),
        "every dashboard of deploy/grafana/ is in DASHBOARDS"
    );
    for kit in &DASHBOARDS {
        let dashboard = load_file(kit.file);
        let found = problems(&dashboard, kit.uid, &known);
        assert!(
            found.is_empty(),
            "{} problems:\n{}",
            kit.file,
            found.join("\n")
        );
    }
}

/// The check fails on each defect it is meant to catch.
#[test]
fn static_check_catches_a_broken_dashboard() {
    let mut dashboard = load();
    let known: BTreeSet<String> = queries(&dashboard)
        .iter()
        .flat_map(|q| metric_names(&q.expr))
        .chain(["job", "instance", "symbol"].map(|name| variable_metric(&dashboard, name)))
        .collect();
    assert!(problems(&dashboard, UID, &known).is_empty());

    let panels = dashboard["panels"].as_array_mut().unwrap();
    let gauge = panels.iter().position(|p| p["type"] == "gauge").unwrap();
    panels[gauge]["datasource"] = Value::Null;
    panels[gauge + 1]["id"] = panels[gauge]["id"].clone();
    panels[gauge + 1]["targets"][0]["expr"] = "quantum_harvest_r_nett".into();
    let found = problems(&dashboard, "quantum-other", &known).join("\n");
    assert!(found.contains("datasource is not ${datasource}"), "{found}");
    assert!(found.contains("not the fixed quantum-other"), "{found}");
    assert!(found.contains("duplicate id"), "{found}");
    assert!(
        found.contains("unknown metric quantum_harvest_r_nett"),
        "{found}"
    );
}

/// Every dashboard of the kit: the *.json files under deploy/grafana/, at any depth.
pub fn dashboard_files() -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy("grafana"), &mut out);
    out.sort();
    out
}

/// What grafana's dashboard-linter (not packaged here) and the kit's conventions ask of every
/// dashboard: `job` and `instance` query variables from `label_values` on an exporter metric
/// (job defaulting to the kit's job, instance multi-select with All), the `job=~"$job"` and
/// `instance=~"$instance"` matchers on every selector of every query, rates over
/// `$__rate_interval`, a unit on every panel that shows values, not editable (they are
/// provisioned), a link to the other dashboards tagged `quantum`, and a description on every
/// panel. A series the kit's rules record keeps only the labels its level names
/// (`job_band:...` keeps `job`, `symbol:...` neither): the rules combine the exporters of an
/// HA pair, so it has no instance, and a matcher on a label it lacks would match nothing.
pub fn lint(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let list = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for name in ["job", "instance"] {
        let Some(var) = list.iter().find(|v| v["name"] == name) else {
            problems.push(format!("no ${name} variable"));
            continue;
        };
        if var["type"] != "query" || var["label"] != name {
            problems.push(format!(
                "variable {name}: not a query variable labelled {name}"
            ));
        }
        if var["datasource"]["uid"] != DATASOURCE {
            problems.push(format!("variable {name}: datasource is not {DATASOURCE}"));
        }
        match label_values_selector(var) {
            Some(s) if s.metric.starts_with("quantum_harvest_") => {
                if name == "instance" && !s.has("job", "=~", "$job") {
                    problems.push(format!("variable {name}: its query ignores $job"));
                }
            }
            _ => problems.push(format!(
                "variable {name}: not label_values(<exporter metric>, {name}): {}",
                var["query"]
            )),
        }
    }
    if let Some(job) = list.iter().find(|v| v["name"] == "job")
        && job["current"]["value"] != serde_json::json!([JOB])
    {
        problems.push(format!(
            "variable job: defaults to {}, not the kit's job {JOB}",
            job["current"]["value"]
        ));
    }
    if let Some(instance) = list.iter().find(|v| v["name"] == "instance")
        && !(instance["multi"] == true
            && instance["includeAll"] == true
            && instance["allValue"] == ".+")
    {
        problems.push("variable instance: not multi-select with All (.+)".to_owned());
    }
    if let Some(symbol) = list.iter().find(|v| v["name"] == "symbol") {
        match label_values_selector(symbol) {
            Some(s) if s.has("job", "=~", "$job") && s.has("instance", "=~", "$instance") => {}
            _ => problems.push("variable symbol: its query ignores $job or $instance".to_owned()),
        }
    }
    if dashboard["editable"] != false {
        problems.push("editable is not false (the dashboard is provisioned)".to_owned());
    }
    let tags = dashboard["tags"].as_array().cloned().unwrap_or_default();
    if !tags.iter().any(|t| t == "quantum") {
        problems.push("not tagged quantum".to_owned());
    }
    let linked = dashboard["links"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| {
            l["type"] == "dashboards"
                && l["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "quantum"))
        });
    if !linked {
        problems.push("no dashboards link by the tag quantum".to_owned());
    }
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        if panel["description"]
            .as_str()
            .is_none_or(|d| d.trim().is_empty())
        {
            problems.push(format!("panel {title:?}: no description"));
        }
        if !matches!(panel["type"].as_str(), Some("row" | "text")) {
            let overrides = panel["fieldConfig"]["overrides"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|o| o["properties"].as_array().into_iter().flatten())
                .filter(|p| p["id"] == "unit")
                .map(|p| &p["value"]);
            match &panel["fieldConfig"]["defaults"]["unit"] {
                Value::Null => problems.push(format!("panel {title:?}: no unit")),
                default => {
                    for unit in std::iter::once(default).chain(overrides) {
                        if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                            problems.push(format!(
                                "panel {title:?}: unit {unit} is not one of {UNITS:?}"
                            ));
                        }
                    }
                }
            }
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            for selector in selectors(expr) {
                for (label, value) in [("job", "$job"), ("instance", "$instance")] {
                    let kept = match selector.metric.split_once(':') {
                        Some((level, _)) => level.split('_').any(|l| l == label),
                        None => true,
                    };
                    let has = selector.has(label, "=~", value);
                    if kept && !has {
                        problems.push(format!(
                            "panel {title:?}: {} lacks {label}=~\"{value}\" in {expr:?}",
                            selector.metric
                        ));
                    } else if !kept && selector.matchers.iter().any(|m| m.0 == label) {
                        problems.push(format!(
                            "panel {title:?}: {} has no {label} label to match in {expr:?}",
                            selector.metric
                        ));
                    }
                }
            }
            // A total over the dashboard's time range is an instant query over $__range;
            // anything else is a rate, over an interval that spans enough scrapes at any zoom.
            let instant = target["range"] == false;
            for range in range_selectors(expr) {
                let allowed = range == "$__rate_interval" || (instant && range == "$__range");
                if !allowed {
                    problems.push(format!(
                        "panel {title:?}: range [{range}] is not [$__rate_interval]{} in {expr:?}",
                        if instant { " or [$__range]" } else { "" }
                    ));
                }
            }
        }
    }
    problems
}

/// The insides of a PromQL expression's brackets: range selectors and subqueries.
pub fn range_selectors(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut quote = None;
    let mut current: Option<String> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match (c, current.as_mut()) {
            ('"' | '\'' | '`', _) => quote = Some(c),
            ('[', None) => current = Some(String::new()),
            (']', Some(_)) => found.extend(current.take()),
            (_, Some(inside)) => inside.push(c),
            _ => {}
        }
    }
    found
}

#[test]
fn every_dashboard_passes_the_lint() {
    let files = dashboard_files();
    assert!(
        files.iter().any(|f| f.ends_with(DASHBOARD_FILE)),
        "{files:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let found = lint(&dashboard);
        assert!(
            found.is_empty(),
            "{}:\n{}",
            file.display(),
            found.join("\n")
        );
    }
}

/// The lint fails on each defect it is meant to catch.
#[test]
fn lint_catches_a_violating_dashboard() {
    let mut d = load();
    assert!(lint(&d).is_empty());
    d["editable"] = true.into();
    d["links"] = serde_json::json!([]);
    let list = d["templating"]["list"].as_array_mut().unwrap();
    list.retain(|v| v["name"] != "job");
    let instance = list.iter_mut().find(|v| v["name"] == "instance").unwrap();
    instance["multi"] = false.into();
    instance["query"]["query"] = "label_values(up, instance)".into();
    let panels = d["panels"].as_array_mut().unwrap();
    let gauge = panels.iter().position(|p| p["type"] == "gauge").unwrap();
    panels[gauge]["description"] = "".into();
    panels[gauge]["targets"][0]["expr"] =
        "quantum_harvest_kill_score{job=~\"$job\", symbol=~\"$symbol\"}".into();
    panels[gauge + 1]["targets"][0]["expr"] = "max(quantum_harvest_r_net)".into();
    panels[gauge + 1]["fieldConfig"]["defaults"]
        .as_object_mut()
        .unwrap()
        .remove("unit");
    panels[gauge + 2]["fieldConfig"]["defaults"]["unit"] = "secs".into();
    panels[gauge + 2]["targets"][0]["expr"] =
        "job_symbol:quantum_harvest_kill_score:max{job=~\"$job\"} + job_band:x:count \
         + symbol:y:sum{job=~\"$job\"}"
            .into();
    let selected = "{job=~\"$job\", instance=~\"$instance\"}";
    let age = panels
        .iter()
        .position(|p| p["title"] == "Data age")
        .unwrap();
    panels[age]["targets"][0]["expr"] = format!("increase(a_total{selected}[$__range])").into();
    let errors = panels
        .iter()
        .position(|p| p["title"] == "Refresh errors")
        .unwrap();
    panels[errors]["targets"][0]["expr"] = format!("rate(b_total{selected}[5m])").into();
    let found = lint(&d).join("\n");
    assert!(found.contains("no $job variable"), "{found}");
    let list = d["templating"]["list"].as_array_mut().unwrap();
    list.push(serde_json::json!({
        "name": "job",
        "type": "query",
        "label": "job",
        "datasource": {"type": "prometheus", "uid": DATASOURCE},
        "query": {"query": "label_values(quantum_harvest_exporter_build_info, job)"},
        "current": {"text": ["All"], "value": ["$__all"]},
    }));
    let found = found + "\n" + &lint(&d).join("\n");
    for expected in [
        "no $job variable",
        "variable instance: not label_values(<exporter metric>, instance)",
        "variable instance: not multi-select with All",
        "editable is not false",
        "no dashboards link by the tag quantum",
        "panel \"Kill score\": no description",
        "panel \"Kill score\": quantum_harvest_kill_score lacks instance=~\"$instance\"",
        "panel \"R_net\": quantum_harvest_r_net lacks job=~\"$job\"",
        "panel \"R_net\": quantum_harvest_r_net lacks instance=~\"$instance\"",
        "panel \"New SL\": job_band:x:count lacks job=~\"$job\"",
        "panel \"New SL\": symbol:y:sum has no job label to match",
        "panel \"R_net\": no unit",
        "panel \"New SL\": unit \"secs\" is not one of",
        "panel \"Data age\": range [$__range] is not [$__rate_interval] in",
        "panel \"Refresh errors\": range [5m] is not [$__rate_interval] in",
        "variable job: defaults to [\"$__all\"], not the kit's job quantum-harvest-exporter",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
    assert!(
        !found.contains("Kill score\": quantum_harvest_kill_score lacks job"),
        "{found}"
    );
    assert!(
        !found.contains("job_symbol:quantum_harvest_kill_score:max lacks"),
        "{found}"
    );
    assert!(
        !found.contains("job_band:x:count lacks instance"),
        "{found}"
    );
    assert!(!found.contains("symbol:y:sum lacks"), "{found}");
}

fn steps(panel: &Value) -> Vec<(String, Option<f64>)> {
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["color"].as_str().unwrap_or("").to_owned(),
                s["value"].as_f64(),
            )
        })
        .collect()
}

fn panel_querying<'a>(dashboard: &'a Value, kind: &str, metric: &str) -> &'a Value {
    panels(dashboard)
        .into_iter()
        .find(|p| {
            p["type"] == kind
                && p["targets"].as_array().into_iter().flatten().any(|t| {
                    t["expr"]
                        .as_str()
                        .is_some_and(|e| metric_names(e).iter().any(|n| n == metric))
                })
        })
        .unwrap_or_else(|| panic!("no {kind} panel queries {metric}"))
}

fn owned(steps: &[(&str, Option<f64>)]) -> Vec<(String, Option<f64>)> {
    steps.iter().map(|(c, v)| ((*c).to_owned(), *v)).collect()
}

#[test]
fn dashboard_has_the_seed_panels_and_thresholds() {
    let d = load();
    assert_eq!(d["title"], "Quantum — Harvest Control (P2.7)");
    assert_eq!(d["refresh"], "10s");
    assert_eq!(d["time"]["from"], "now-1h");
    assert!(
        d.get("dashboard").is_none(),
        "the JSON must not be wrapped for the API"
    );

    let datasource = variable(&d, "datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let symbol = variable(&d, "symbol");
    assert_eq!(symbol["type"], "query");
    assert_eq!(symbol["multi"], true);
    assert_eq!(symbol["includeAll"], true);
    assert_eq!(symbol["datasource"]["uid"], DATASOURCE);
    assert_eq!(symbol_variable_metric(&d), "quantum_harvest_kill_score");

    let gauge = panel_querying(&d, "gauge", "quantum_harvest_kill_score");
    assert_eq!(steps(gauge), owned(&[("green", None), ("red", Some(0.6))]));
    let r_net = panel_querying(&d, "stat", "quantum_harvest_r_net");
    assert_eq!(
        steps(r_net),
        owned(&[("red", None), ("yellow", Some(3.0)), ("green", Some(7.0))])
    );
    panel_querying(&d, "stat", "quantum_harvest_new_sl");

    // Per-symbol components: one panel repeated for each selected symbol, stacked, each
    // component scaled by its weight and the weight named in the legend.
    let components = panel_querying(&d, "timeseries", "quantum_harvest_k_regime_flip");
    assert_eq!(components["repeat"], "symbol");
    assert_eq!(
        components["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    for (metric, weight) in [
        ("quantum_harvest_k_regime_flip", "2.0"),
        ("quantum_harvest_k_sigma_spike", "1.5"),
        ("quantum_harvest_k_ts_drop", "2.5"),
        ("quantum_harvest_k_age_penalty", "0.5"),
    ] {
        let target = components["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["expr"].as_str().unwrap().contains(metric))
            .unwrap_or_else(|| panic!("components panel lacks {metric}"));
        assert!(
            target["expr"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{weight} * "))
        );
        assert!(
            target["legendFormat"].as_str().unwrap().ends_with(weight),
            "{target}"
        );
    }

    // The summary table: the seed's columns plus the action as text, Kill Score coloured.
    let table = panel_querying(&d, "table", "quantum_harvest_action");
    let renames: BTreeSet<&str> = table["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["options"]["renameByName"].as_object())
        .flat_map(|m| m.values().filter_map(Value::as_str))
        .collect();
    for column in [
        "Symbol",
        "Kill Score",
        "R_net",
        "New SL",
        "Regime Flip",
        "TS Drop",
        "Action",
    ] {
        assert!(
            renames.contains(column),
            "table lacks column {column}: {renames:?}"
        );
    }
    let kill_score = table["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["matcher"]["options"] == "Kill Score")
        .expect("Kill Score override");
    let properties = kill_score["properties"].as_array().unwrap();
    let property = |id: &str| {
        properties
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| &p["value"])
    };
    assert_eq!(
        property("custom.cellOptions").unwrap()["type"],
        "color-background"
    );
    assert_eq!(property("thresholds").unwrap()["steps"][1]["value"], 0.6);
    assert!(
        table["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["instant"] == true)
    );

    panel_querying(&d, "timeseries", "quantum_harvest_last_update_epoch");
    panel_querying(&d, "stat", "quantum_harvest_exporter_redis_up");
    panel_querying(
        &d,
        "timeseries",
        "quantum_harvest_exporter_refresh_errors_total",
    );
    panel_querying(&d, "timeseries", "scrape_duration_seconds");
}

/// The apply side's panels say which results they count: execution errors (first results of
/// plans that failed), skip/block reasons, and the repeats of unchanged plans, each apart.
#[test]
fn apply_panels_tell_execution_errors_from_reasons_and_repeats() {
    let mut files = vec![
        "quantum_trader_overview.json",
        "quantum_apply_layer_p3.json",
    ];
    for file in &files {
        let d = load_file(file);
        let errors = panel_querying(&d, "timeseries", "quantum_apply_result_errors_seen_total");
        assert_eq!(errors["title"], "Execution errors by class", "{file}");
        let stat = panel_querying(&d, "stat", "quantum_apply_results_seen_total");
        assert_eq!(stat["title"], "Execution errors", "{file}");
        for panel in [errors, stat] {
            let description = panel["description"].as_str().unwrap();
            assert!(
                description.contains("plans that failed to execute")
                    && description.contains("reasons")
                    && description.contains("not"),
                "{file}: {description}"
            );
        }
    }
    let d = load_file(files.pop().unwrap());
    for (metric, title, label) in [
        (
            "quantum_apply_result_reasons_seen_total",
            "Skip/block reasons by class",
            "class",
        ),
        (
            "quantum_apply_result_repeats_total",
            "Repeated results per minute by symbol",
            "symbol",
        ),
    ] {
        let panel = panel_querying(&d, "timeseries", metric);
        assert_eq!(panel["title"], title);
        assert_eq!(panel["fieldConfig"]["defaults"]["unit"], "cpm");
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        assert!(
            expr.starts_with(&format!("max by ({label}) (rate({metric}{{")),
            "{expr}"
        );
        assert_eq!(
            panel["targets"][0]["legendFormat"],
            format!("{{{{{label}}}}}")
        );
    }
    let reasons = panel_querying(&d, "timeseries", "quantum_apply_result_reasons_seen_total");
    assert!(
        reasons["description"]
            .as_str()
            .unwrap()
            .contains("not failures"),
        "{reasons}"
    );
}

#[test]
fn provisioning_points_at_the_dashboard_and_its_datasource() {
    let dashboard = load();
    let datasources = read("grafana/provisioning/datasources/quantum-prometheus.yml");
    let providers = read("grafana/provisioning/dashboards/quantum-harvest.yml");
    for text in [&datasources, &providers] {
        assert_eq!(yaml_values(text, "apiVersion"), ["1"]);
    }
    assert_eq!(yaml_values(&datasources, "type"), ["prometheus"]);
    assert_eq!(
        yaml_values(&datasources, "uid"),
        [variable(&dashboard, "datasource")["current"]["value"]
            .as_str()
            .unwrap()]
    );
    // $__rate_interval relies on the scrape interval, which the datasource declares: the
    // shipped scrape job's.
    assert_eq!(
        yaml_values(&datasources, "timeInterval"),
        yaml_values(&read("prometheus/scrape-job.yml"), "scrape_interval")
    );
    assert_eq!(yaml_values(&providers, "type"), ["file"]);
    assert_eq!(yaml_values(&providers, "path"), [DASHBOARD_DIR]);
    // install.sh copies every dashboard of deploy/grafana/ there (tests/kit/install.rs runs it).
    let install = read("install.sh");
    assert!(
        install.contains("\"$kit\"/grafana/*.json")
            && install.contains(&format!("{DASHBOARD_DIR}/$(basename")),
        "install.sh does not install every dashboard"
    );
}

/// What is wrong with a dashboard's layout for a phone. On a narrow screen Grafana shows the
/// panels in one column, in the order of its panel list, which it sorts by gridPos (y, then
/// x) when it loads a dashboard. The JSON keeps that order, so that what the file reads
/// top-down is what a phone shows; panels must not overlap nor leave the 24 columns; and the
/// panels of `first` (titles) open the column, in that order, before any other panel.
pub fn layout_problems(dashboard: &Value, first: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let top: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let grid = |p: &Value| {
        let n = |k: &str| p["gridPos"][k].as_u64();
        (n("x"), n("y"), n("w"), n("h"))
    };
    let title = |p: &Value| p["title"].as_str().unwrap_or("?").to_owned();
    let mut boxes = Vec::new();
    for panel in &top {
        match grid(panel) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                boxes.push((title(panel), x, y, w, h))
            }
            _ => problems.push(format!(
                "panel {:?}: gridPos {} is not within 24 columns",
                title(panel),
                panel["gridPos"]
            )),
        }
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart =
                a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
            if !apart {
                problems.push(format!("panels {:?} and {:?} overlap", a.0, b.0));
            }
        }
    }
    for pair in boxes.windows(2) {
        if (pair[0].2, pair[0].1) > (pair[1].2, pair[1].1) {
            problems.push(format!(
                "panel {:?} (y {}, x {}) comes after {:?} (y {}, x {}): not in (y, x) order",
                pair[1].0, pair[1].2, pair[1].1, pair[0].0, pair[0].2, pair[0].1
            ));
        }
    }
    // What the phone shows: the panels sorted by (y, x), as Grafana sorts them.
    let mut shown = top.clone();
    shown.sort_by_key(|p| (p["gridPos"]["y"].as_u64(), p["gridPos"]["x"].as_u64()));
    let opening: Vec<String> = shown
        .iter()
        .filter(|p| p["type"] != "row")
        .take(first.len())
        .map(|p| title(p))
        .collect();
    if opening != first {
        problems.push(format!(
            "a phone shows first {opening:?}, not the urgent {first:?}"
        ));
    }
    problems
}

#[test]
fn every_dashboard_reads_top_down_on_a_phone() {
    for kit in &DASHBOARDS {
        let found = layout_problems(&load_file(kit.file), kit.first);
        assert!(found.is_empty(), "{}:\n{}", kit.file, found.join("\n"));
    }
}

/// The layout check fails on each defect it is meant to catch.
#[test]
fn layout_check_catches_a_bad_layout() {
    let kit = &DASHBOARDS[1];
    let mut d = load_file(kit.file);
    assert!(layout_problems(&d, kit.first).is_empty());
    let panels = d["panels"].as_array_mut().unwrap();
    // The gauge moves onto the table, the R_net stat onto the New SL stat, and "Data age
    // now" beyond the 24 columns.
    let gauge = panels.iter().position(|p| p["type"] == "gauge").unwrap();
    let table = panels.iter().position(|p| p["type"] == "table").unwrap();
    let age = panels
        .iter()
        .position(|p| p["title"] == "Data age now")
        .unwrap();
    panels[gauge]["gridPos"]["y"] = (panels[table]["gridPos"]["y"].as_u64().unwrap() + 1).into();
    panels[gauge + 1]["gridPos"]["x"] = 16.into();
    panels[age]["gridPos"]["w"] = 9.into();
    let found = layout_problems(&d, kit.first).join("\n");
    for expected in [
        "panels \"Kill score\" and \"Harvest proposals\" overlap",
        "panels \"R_net\" and \"New SL\" overlap",
        "panel \"Data age now\": gridPos",
        "panel \"R_net\" (y 1, x 16) comes after \"Kill score\" (y 11, x 0)",
        "a phone shows first [\"R_net\", \"New SL\", \"Harvest proposals\", \"Kill score\"]",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
}

/// The dashboards link each other: the Overview to both detail dashboards, each of these back
/// to the Overview, by uids that exist; and every one to the dashboards tagged `quantum`.
#[test]
fn dashboards_link_each_other() {
    let uids: BTreeSet<&str> = DASHBOARDS.iter().map(|d| d.uid).collect();
    for kit in &DASHBOARDS {
        let d = load_file(kit.file);
        assert!(
            d["tags"].as_array().unwrap().iter().any(|t| t == "quantum"),
            "{}",
            kit.file
        );
        let linked: BTreeSet<String> = d["links"]
            .as_array()
            .unwrap()
            .iter()
            .chain(
                panels(&d)
                    .iter()
                    .flat_map(|p| p["links"].as_array().into_iter().flatten()),
            )
            .filter_map(|l| l["url"].as_str())
            .filter_map(|url| url.strip_prefix("/d/"))
            .map(|rest| rest.split(['/', '?']).next().unwrap().to_owned())
            .collect();
        for uid in &linked {
            assert!(
                uids.contains(uid.as_str()),
                "{}: link to unknown uid {uid}",
                kit.file
            );
        }
        let expected: Vec<&str> = if kit.uid == "quantum-overview" {
            vec![UID, "quantum-apply-p3"]
        } else {
            vec!["quantum-overview"]
        };
        for uid in expected {
            assert!(
                linked.contains(uid),
                "{} does not link {uid}: {linked:?}",
                kit.file
            );
        }
    }
}

//! The monitoring mixins' rule conventions (what `mixtool lint` checks, which is a Go tool not
//! packaged here), enforced on every rule file of the kit: alert names in CamelCase, a
//! `severity` label of `info`, `warning` or `critical`, `summary`, `description` and
//! `runbook_url` annotations, a summary without templates, a runbook_url that is a URL,
//! recording rules named level:metric:operations, and the job matcher on every selector of an
//! exporter series.

use std::path::PathBuf;

use serde_json::Value;

use crate::dashboard::selectors;
use crate::{JOB, deploy, read};

pub const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// Every rule file of the kit: the YAML files under deploy/prometheus/ (tests excluded) that
/// hold rule groups.
pub fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("prometheus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .any(|l| l.starts_with("groups:"))
        })
        .collect();
    files.sort();
    files
}

pub fn parse(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}"))
}

fn is_camel_case(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_url(text: &str) -> bool {
    ["https://", "http://", "file:///"].iter().any(|scheme| {
        text.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    }) && !text.contains("{{")
}

fn is_level_metric_operations(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The selectors of `expr` that read the exporter's series (every metric that is not a
/// recording rule's output, `up` included) without the `job="quantum-harvest-exporter"`
/// matcher.
pub fn selectors_without_job(expr: &str) -> Vec<String> {
    selectors(expr)
        .into_iter()
        .filter(|s| !s.metric.contains(':') && !s.has("job", "=", JOB))
        .map(|s| s.metric)
        .collect()
}

/// Everything a rule file does against the conventions, one line per problem.
pub fn problems(text: &str) -> Vec<String> {
    let file = parse(text);
    let mut problems = Vec::new();
    let groups = file["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        problems.push("no rule groups".to_owned());
    }
    for group in &groups {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let expr = rule["expr"].as_str().unwrap_or("");
            let name = match (rule["alert"].as_str(), rule["record"].as_str()) {
                (Some(alert), None) => {
                    problems.extend(alert_problems(alert, rule));
                    alert.to_owned()
                }
                (None, Some(record)) => {
                    if !is_level_metric_operations(record) {
                        problems.push(format!(
                            "recording rule {record}: not named level:metric:operations"
                        ));
                    }
                    record.to_owned()
                }
                _ => {
                    problems.push(format!("rule without one alert or record name: {rule}"));
                    continue;
                }
            };
            if expr.trim().is_empty() {
                problems.push(format!("{name}: no expr"));
            }
            for metric in selectors_without_job(expr) {
                problems.push(format!("{name}: selector of {metric} lacks job=\"{JOB}\""));
            }
        }
    }
    problems
}

fn alert_problems(name: &str, rule: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_camel_case(name) {
        problems.push(format!("alert {name}: name is not CamelCase"));
    }
    match rule["labels"]["severity"].as_str() {
        Some(s) if SEVERITIES.contains(&s) => {}
        other => problems.push(format!(
            "alert {name}: severity {other:?} is not one of {SEVERITIES:?}"
        )),
    }
    let annotations = &rule["annotations"];
    for key in ["summary", "description", "runbook_url"] {
        if annotations[key]
            .as_str()
            .is_none_or(|v| v.trim().is_empty())
        {
            problems.push(format!("alert {name}: no {key} annotation"));
        }
    }
    if let Some(summary) = annotations["summary"].as_str()
        && summary.contains("{{")
    {
        problems.push(format!("alert {name}: summary has a template: {summary:?}"));
    }
    if let Some(description) = annotations["description"].as_str()
        && !description.contains("{{")
    {
        problems.push(format!(
            "alert {name}: description has no template (labels, value)"
        ));
    }
    if let Some(url) = annotations["runbook_url"].as_str()
        && !is_url(url)
    {
        problems.push(format!("alert {name}: runbook_url {url:?} is not a URL"));
    }
    if annotations.get("runbook").is_some() {
        problems.push(format!("alert {name}: runbook annotation, not runbook_url"));
    }
    problems
}

#[test]
fn every_rule_file_follows_the_mixin_conventions() {
    let files = rule_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"alerts.yml".to_owned()) && names.contains(&"recording.yml".to_owned()),
        "{names:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let found = problems(&text);
        assert!(
            found.is_empty(),
            "{}:\n{}",
            file.display(),
            found.join("\n")
        );
    }
}

/// The check fails on each defect it is meant to catch.
#[test]
fn rules_lint_catches_broken_rules() {
    let good = read("prometheus/alerts.yml");
    assert!(problems(&good).is_empty());
    let broken = format!(
        "{good}
      - alert: harvest_kill_score_low
        expr: quantum_harvest_kill_score < 0.5 and on (symbol) up{{job=\"other\"}} == 1
        labels:
          severity: page
        annotations:
          summary: 'Kill score of {{{{ $labels.symbol }}}} is low'
          runbook: deploy/README.md#harvestkillscorelow

      - alert: HarvestNoUrl
        expr: quantum_harvest_r_net{{job=\"{JOB}\"}} < 0
        annotations:
          summary: Net R is negative.
          description: Net R is negative.
          runbook_url: runbooks/HarvestNoUrl.md

      - record: harvest_weighted_sum
        expr: sum by (symbol) (quantum_harvest_k_ts_drop{{job=~\".+\"}})
"
    );
    let found = problems(&broken).join("\n");
    for expected in [
        "alert harvest_kill_score_low: name is not CamelCase",
        "alert harvest_kill_score_low: severity Some(\"page\") is not one of",
        "alert harvest_kill_score_low: no description annotation",
        "alert harvest_kill_score_low: no runbook_url annotation",
        "alert harvest_kill_score_low: summary has a template",
        "alert harvest_kill_score_low: runbook annotation, not runbook_url",
        "harvest_kill_score_low: selector of quantum_harvest_kill_score lacks job=",
        "harvest_kill_score_low: selector of up lacks job=",
        "alert HarvestNoUrl: severity None",
        "alert HarvestNoUrl: description has no template",
        "alert HarvestNoUrl: runbook_url \"runbooks/HarvestNoUrl.md\" is not a URL",
        "recording rule harvest_weighted_sum: not named level:metric:operations",
        "harvest_weighted_sum: selector of quantum_harvest_k_ts_drop lacks job=",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
    assert!(!found.contains("HarvestNoUrl: selector"), "{found}");
    assert!(!found.contains("HarvestKillScoreHigh"), "{found}");
}

//! The Prometheus side of the kit: the scrape job, the alerting and recording rules, their
//! promtool unit tests, and the rules' naming and documentation.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::TempDir;
use crate::{JOB, deploy, read, require_tool, run_ok, yaml_values};

/// The promtool unit tests of the alerts: every alert's own, and one per row of the README's
/// failure table.
const ALERT_TESTS: [&str; 2] = ["tests/alerts.test.yml", "tests/failures.test.yml"];

/// The alerts the issue asks for; alerts.yml may hold more, but not fewer.
const REQUIRED_ALERTS: [&str; 16] = [
    "HarvestKillScoreHigh",
    "HarvestKillScoreCritical",
    "HarvestDataStale",
    "HarvestExporterDown",
    "HarvestRedisDown",
    "HarvestExporterRedisDown",
    "HarvestRedisSlow",
    "HarvestMaxSymbolsReached",
    "HarvestApplyStreamsDown",
    "HarvestProposalsMissing",
    "HarvestParseErrors",
    "HarvestApplyExecutionErrors",
    "HarvestApplyStalled",
    "HarvestApplyEntriesLost",
    "HarvestApplyConsumerLag",
    "HarvestApplyKillSwitchActive",
];
/// Where the shipped rules point `runbook_url`: the runbooks `install.sh prometheus` installs.
pub const RUNBOOK_BASE: &str = "file:///usr/local/share/doc/harvest-exporter/runbooks";

fn promtool(args: &[&str]) -> String {
    require_tool("promtool", "prometheus");
    let output = run_ok(
        Command::new("promtool")
            .args(args)
            .current_dir(deploy("prometheus")),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Each `- alert:` block of a rules file, as (name, the block's lines).
pub fn alert_blocks(text: &str) -> Vec<(String, String)> {
    split_blocks(text, "- alert:")
}

/// The names recorded by a rules file.
pub fn record_names(text: &str) -> Vec<String> {
    yaml_values(text, "record")
}

/// Splits `text` at each line starting (after indentation) with `marker`, and returns the
/// value after the marker with the lines up to the next one.
fn split_blocks(text: &str, marker: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix(marker) {
            blocks.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = blocks.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

#[test]
fn scrape_job_is_the_seeds_and_promtool_accepts_it() {
    let text = read("prometheus/scrape-job.yml");
    assert_eq!(yaml_values(&text, "job_name"), [JOB]);
    assert_eq!(yaml_values(&text, "targets"), ["['127.0.0.1:8042']"]);
    assert_eq!(yaml_values(&text, "scrape_interval"), ["10s"]);
    assert_eq!(yaml_values(&text, "scrape_timeout"), ["5s"]);
    promtool(&["check", "config", "scrape-job.yml"]);

    // The configuration the README has the operator build: the job plus the two rule files.
    let dir = TempDir::new("promconfig");
    let config = dir.0.join("prometheus.yml");
    let rules = format!(
        "rule_files:\n  - {}\n  - {}\n",
        deploy("prometheus/alerts.yml").display(),
        deploy("prometheus/recording.yml").display()
    );
    std::fs::write(&config, format!("{rules}{text}")).unwrap();
    let out = promtool(&["check", "config", config.to_str().unwrap()]);
    let alerts = alert_blocks(&read("prometheus/alerts.yml")).len();
    let records = record_names(&read("prometheus/recording.yml")).len();
    for expected in [
        "SUCCESS: 2 rule files found".to_owned(),
        format!("SUCCESS: {alerts} rules found"),
        format!("SUCCESS: {records} rules found"),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in:\n{out}");
    }
}

#[test]
fn rules_pass_promtool_check_and_lint() {
    let out = promtool(&[
        "check",
        "rules",
        "--lint=all",
        "--lint-fatal",
        "alerts.yml",
        "recording.yml",
    ]);
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

#[test]
fn rule_unit_tests_pass() {
    let mut args = vec!["test", "rules", "tests/recording.test.yml"];
    args.extend(ALERT_TESTS);
    let out = promtool(&args);
    assert_eq!(out.matches("SUCCESS").count(), 3, "{out}");
}

/// Every alert has a unit test where it fires and one where it does not, and every recording
/// rule has one that checks its samples.
#[test]
fn every_rule_is_unit_tested() {
    let alerts: Vec<String> = alert_blocks(&read("prometheus/alerts.yml"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let tests: String = ALERT_TESTS
        .iter()
        .map(|file| read(&format!("prometheus/{file}")))
        .collect();
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (_, case) in split_blocks(&tests, "- eval_time:") {
        let name = yaml_values(&case, "alertname")
            .pop()
            .expect("alertname in every case");
        let expected = yaml_values(&case, "exp_alerts").pop().expect("exp_alerts");
        if expected == "[]" {
            quiet.insert(name);
        } else {
            assert!(case.contains("exp_labels:"), "{name}: {case}");
            firing.insert(name);
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no test has {alert} firing");
        assert!(quiet.contains(alert), "no test has {alert} not firing");
    }
    assert!(
        firing
            .iter()
            .chain(&quiet)
            .all(|name| alerts.contains(name)),
        "tests name an alert that alerts.yml lacks"
    );

    let records = record_names(&read("prometheus/recording.yml"));
    assert!(records.len() >= 2, "{records:?}");
    let tests = read("prometheus/tests/recording.test.yml");
    for record in &records {
        let checked = split_blocks(&tests, "- expr:")
            .into_iter()
            .any(|(expr, body)| {
                expr.starts_with(record.as_str())
                    && body.contains("exp_samples:")
                    && body.contains("value:")
            });
        assert!(checked, "no promql_expr_test checks {record}");
    }
}

/// Naming, labels and annotations in general are checked by the mixin lint (rules_lint.rs);
/// this checks the kit's own conventions: the Harvest prefix, one runbook file per alert and
/// the runbook_url pointing at it, the alerts table of the README, and the thresholds.
#[test]
fn alerts_are_named_labelled_and_documented() {
    let readme = read("README.md");
    let blocks = alert_blocks(&read("prometheus/alerts.yml"));
    for required in REQUIRED_ALERTS {
        assert!(
            blocks.iter().any(|(n, _)| n == required),
            "alerts.yml lacks {required}"
        );
    }
    for (name, body) in &blocks {
        assert!(
            name.starts_with("Harvest")
                && name.chars().all(|c| c.is_ascii_alphanumeric())
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
            "{name} is not CamelCase with the Harvest prefix"
        );
        let severity = yaml_values(body, "severity");
        assert!(
            matches!(severity.as_slice(), [s] if s == "warning" || s == "critical"),
            "{name}: severity {severity:?}"
        );
        assert_eq!(
            yaml_values(body, "runbook_url"),
            [format!("{RUNBOOK_BASE}/{name}.md")],
            "{name}: runbook_url"
        );
        let runbook = read(&format!("runbooks/{name}.md"));
        assert_eq!(
            runbook.lines().next(),
            Some(format!("# {name}").as_str()),
            "runbooks/{name}.md"
        );
        assert!(
            readme.contains(&format!("| [{name}](runbooks/{name}.md) |")),
            "the README's alerts table does not link runbooks/{name}.md"
        );
    }
    // No runbook without its alert.
    for entry in std::fs::read_dir(deploy("runbooks")).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        let alert = file.strip_suffix(".md").unwrap_or(&file);
        assert!(
            blocks.iter().any(|(n, _)| n == alert),
            "runbooks/{file} has no alert"
        );
    }
    for (name, for_, threshold) in [
        ("HarvestKillScoreHigh", "2m", ") >= 0.6\n"),
        ("HarvestKillScoreCritical", "1m", ") >= 0.8\n"),
        ("HarvestDataStale", "1m", "> 60"),
        (
            "HarvestParseErrors",
            "5m",
            "increase(quantum_harvest_exporter_parse_errors_total{job=\"quantum-harvest-exporter\"}[10m])) > 0",
        ),
    ] {
        let (_, body) = blocks.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(yaml_values(body, "for"), [for_], "{name}");
        assert!(body.contains(threshold), "{name} lacks {threshold}");
    }
}

#[test]
fn recording_rules_follow_the_naming_convention() {
    let text = read("prometheus/recording.yml");
    for name in record_names(&text) {
        let parts: Vec<&str> = name.split(':').collect();
        assert!(
            parts.len() == 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                }),
            "{name} is not level:metric:operation"
        );
        assert!(parts[1].starts_with("quantum_harvest_"), "{name}");
        assert!(
            parts[0]
                .split('_')
                .all(|l| ["job", "symbol", "band", "action"].contains(&l)),
            "{name}: level {} is not made of the labels it keeps",
            parts[0]
        );
    }
    // The seed's weighted sum, weight by weight, one exporter's (max, not sum, over the
    // exporters of an HA pair).
    for (metric, weight) in [
        ("quantum_harvest_k_regime_flip", "2.0"),
        ("quantum_harvest_k_sigma_spike", "1.5"),
        ("quantum_harvest_k_ts_drop", "2.5"),
        ("quantum_harvest_k_age_penalty", "0.5"),
    ] {
        let term = format!("{metric}{{job=\"{JOB}\"}} * {weight}");
        assert!(text.contains(&term), "recording.yml lacks {term}");
    }
    assert!(text.contains("max by (symbol) ("), "{text}");
    // A sum or count across symbols adds up the maxima of the exporters (a recorded series,
    // or a max by that keeps the symbol), never an HA pair's two copies of the same series.
    let file = crate::rules_lint::parse(&text);
    for rule in file["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        for aggregation in ["sum by", "count by", "sum(", "count("] {
            for (at, _) in expr.match_indices(aggregation) {
                let rest = &expr[at + aggregation.len()..];
                let argument = match rest.find(") (") {
                    Some(end) if aggregation.ends_with("by") => &rest[end + 3..],
                    _ => rest,
                };
                let argument = argument.trim_start().trim_start_matches('(').trim_start();
                assert!(
                    argument.starts_with("max by (") && argument[8..].contains("symbol")
                        || argument
                            .split_whitespace()
                            .next()
                            .is_some_and(|w| w.contains(':')),
                    "{}: {aggregation} of exporter series: {expr}",
                    rule["record"]
                );
            }
        }
    }
    // Evaluation intervals come from the Prometheus configuration, so tests can speed them up
    // without editing the rule files.
    assert!(!text.contains("interval:"));
    assert!(!read("prometheus/alerts.yml").contains("interval:"));
}

#[test]
fn yaml_files_pass_yamllint() {
    require_tool("yamllint", "yamllint");
    run_ok(
        Command::new("yamllint")
            .args([
                "--strict",
                "--config-data",
                "{extends: default, rules: {line-length: disable, document-start: disable}}",
            ])
            .arg(deploy("")),
    );
}

/// The README's failure table, one row per failure: (failure, what fires, severity, what is
/// suppressed), the cells as written.
pub fn failure_table() -> Vec<[String; 4]> {
    let readme = read("README.md");
    let section = readme
        .split("\n## Failures and what pages\n")
        .nth(1)
        .expect("the README's Failures and what pages section");
    let rows: Vec<[String; 4]> = section
        .lines()
        .skip_while(|l| !l.starts_with("| failure |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            cells
                .try_into()
                .unwrap_or_else(|c| panic!("not 4 cells: {c:?}"))
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    rows
}

/// The alert names a table cell mentions.
pub fn alert_names(cell: &str) -> BTreeSet<String> {
    cell.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("Harvest") && w.len() > "Harvest".len())
        .map(str::to_owned)
        .collect()
}

/// Every row of the failure table has its promtool test, named after the row, in which the
/// alerts the row says fire are expected firing at the row's severity, and those it says are
/// suppressed are expected quiet; "nothing" fires nothing, and a healthy pair nothing at all.
#[test]
fn every_row_of_the_failure_table_is_a_rule_test() {
    let shipped: BTreeSet<String> = alert_blocks(&read("prometheus/alerts.yml"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let tests = read("prometheus/tests/failures.test.yml");
    let cases = split_blocks(&tests, "- name:");
    for [failure, fires, severity, suppressed] in failure_table() {
        let (_, case) = cases
            .iter()
            .find(|(name, _)| name.trim_matches('\'') == failure)
            .unwrap_or_else(|| panic!("failures.test.yml has no test named {failure:?}"));
        let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
        for (_, check) in split_blocks(case, "- eval_time:") {
            let alert = yaml_values(&check, "alertname").pop().unwrap();
            if yaml_values(&check, "exp_alerts").pop().as_deref() == Some("[]") {
                quiet.insert(alert);
            } else {
                assert_eq!(
                    yaml_values(&check, "severity")
                        .iter()
                        .collect::<BTreeSet<_>>(),
                    BTreeSet::from([&severity]),
                    "{failure}: {alert}'s severity"
                );
                firing.insert(alert);
            }
        }
        assert_eq!(firing, alert_names(&fires), "{failure}: what fires");
        assert_eq!(
            fires == "nothing",
            severity == "none",
            "{failure}: severity"
        );
        let expected_quiet = if suppressed == "every alert stays quiet." {
            shipped.clone()
        } else {
            alert_names(&suppressed)
        };
        assert!(
            !expected_quiet.is_empty() || suppressed.starts_with("nothing"),
            "{failure}: suppresses nothing the test checks"
        );
        for alert in &expected_quiet {
            assert!(shipped.contains(alert), "{failure}: no alert {alert}");
            assert!(
                quiet.contains(alert),
                "{failure}: no check that {alert} stays quiet"
            );
        }
    }
}

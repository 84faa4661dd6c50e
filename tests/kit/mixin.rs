//! The rules as a mixin: `deploy/prometheus/config.yml` is the one place of the job selector,
//! thresholds, `for:` durations and windows, and the committed rule files are exactly what the
//! generator (`examples/gen_rules.rs`) makes of it.

use std::path::PathBuf;

use crate::read;

#[path = "../../examples/mixin/mod.rs"]
mod generator;

pub use generator::Config;

/// The kit's settings with `overrides` (YAML, the keys to change) applied.
pub fn config(overrides: &str) -> Config {
    Config::new(&read("prometheus/config.yml"), overrides).unwrap_or_else(|e| panic!("{e}"))
}

fn template(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mixin")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn committed_rules_are_generated_from_the_config() {
    let config = config("");
    assert!(
        read("prometheus/alerts.yml") == config.alerts().unwrap(),
        "deploy/prometheus/alerts.yml differs from what config.yml generates: run \
         cargo run --example gen_rules -- deploy/prometheus"
    );
    assert!(
        read("prometheus/recording.yml") == config.recording().unwrap(),
        "deploy/prometheus/recording.yml differs from what config.yml generates: run \
         cargo run --example gen_rules -- deploy/prometheus"
    );
}

/// No setting is declared and left unused, and no threshold of the rules is written into the
/// templates instead of the configuration.
#[test]
fn every_setting_is_used_and_only_once_declared() {
    let defaults: serde_json::Value = crate::rules_lint::parse(&read("prometheus/config.yml"));
    let templates = template("alerts.yml.in") + &template("recording.yml.in");
    for key in defaults.as_object().unwrap().keys() {
        assert!(
            templates.contains(&format!("${{{key}}}")),
            "config.yml's {key} is used by no template"
        );
    }
    for literal in [
        "job=\"quantum-harvest-exporter\"",
        "for: 1m",
        "for: 2m",
        "for: 5m",
        "for: 10m",
        "[10m]",
        "[15m]",
        ">= 0.6",
        ">= 0.8",
        "> 60",
        "> 1000",
    ] {
        assert!(!templates.contains(literal), "a template holds {literal}");
    }
}

#[test]
fn overrides_change_the_rules_where_their_settings_are_used() {
    let config = config(
        "selector: job=\"harvest-canary\"\nkill_score_high: 0.65\nkill_score_high_for: 90s\n",
    );
    let alerts = config.alerts().unwrap();
    assert!(!alerts.contains("quantum-harvest-exporter"), "{alerts}");
    assert!(alerts.contains("quantum_harvest_kill_score{job=\"harvest-canary\"}\n"));
    assert!(alerts.contains(") >= 0.65\n"));
    assert!(alerts.contains("for: 90s"));
    assert!(
        alerts.contains("at or\n            above 0.65 for 90 seconds"),
        "{alerts}"
    );
    assert!(
        !config
            .recording()
            .unwrap()
            .contains("quantum-harvest-exporter")
    );

    for (overrides, error) in [
        ("kill_score_hihg: 0.7", "unknown key kill_score_hihg"),
        (
            "stale_for: 1 minute",
            "stale_for: \"1 minute\" is not a duration",
        ),
        ("- a list", "not a mapping"),
    ] {
        let found = Config::new(&read("prometheus/config.yml"), overrides).err();
        assert!(
            found.as_deref().is_some_and(|e| e.contains(error)),
            "{overrides}: {found:?}"
        );
    }
}

//! The kit's Prometheus rules made from one configuration, as monitoring mixins make theirs from
//! `_config`: `deploy/prometheus/config.yml` sets the job selector, the thresholds, the `for:`
//! durations and the windows, and the templates beside this file say where each one goes.

use std::collections::BTreeMap;

/// The alerting rules, with `${key}` where a configuration value goes.
const ALERTS: &str = include_str!("alerts.yml.in");
/// The recording rules, likewise.
const RECORDING: &str = include_str!("recording.yml.in");

/// The configuration's values as the templates take them: each key of the file, for each
/// duration (a key ending in `_for` or `_window`) `<key>_text`, the duration in words, and the
/// expressions made of them (`source_down`).
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    /// The defaults (the text of `deploy/prometheus/config.yml`), with the keys that
    /// `overrides` (YAML of the same shape, possibly empty) sets replaced. An override of a key
    /// the defaults lack is an error, so that a misspelt key does not go unnoticed.
    pub fn new(defaults: &str, overrides: &str) -> Result<Config, String> {
        let mut values = scalars(defaults, "the defaults")?;
        for (key, value) in scalars(overrides, "the overrides")? {
            match values.get_mut(&key) {
                Some(slot) => *slot = value,
                None => return Err(format!("unknown key {key} in the overrides")),
            }
        }
        let mut texts = BTreeMap::new();
        for (key, value) in &values {
            if key.ends_with("_for") || key.ends_with("_window") {
                let seconds = seconds(value).ok_or_else(|| {
                    format!("{key}: {value:?} is not a duration such as 30s, 5m or 1h")
                })?;
                texts.insert(format!("{key}_text"), in_words(seconds));
            }
        }
        values.append(&mut texts);
        let stalled = ["apply_stalled_window", "apply_stalled_for"]
            .iter()
            .map(|key| values.get(*key).and_then(|v| seconds(v)))
            .sum::<Option<u64>>()
            .ok_or("apply_stalled_window and apply_stalled_for are needed")?;
        values.insert("apply_stalled_total_text".to_owned(), in_words(stalled));
        let selector = values.get("selector").ok_or("selector is needed")?;
        // The exporters whose source is down, which the alerts about the data leave out: their
        // series are missing or frozen, and HarvestExporterDown or HarvestRedisDown says why.
        let source_down = format!(
            "(up{{{selector}}} == 0 or quantum_harvest_exporter_redis_up{{{selector}}} == 0)"
        );
        values.insert("source_down".to_owned(), source_down);
        Ok(Config { values })
    }

    /// The alerting rules file.
    pub fn alerts(&self) -> Result<String, String> {
        self.fill(ALERTS)
    }

    /// The recording rules file.
    pub fn recording(&self) -> Result<String, String> {
        self.fill(RECORDING)
    }

    fn fill(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ at {:?}", &rest[start..]))?;
            let key = &rest[start + 2..start + end];
            let value = self
                .values
                .get(key)
                .ok_or_else(|| format!("the templates use {key}, which the configuration lacks"))?;
            out.push_str(value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The top-level `key: scalar` pairs of a YAML mapping, as text (numbers as written).
fn scalars(text: &str, what: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{what}: not YAML: {e}"))?;
    let mapping = match value {
        serde_yaml_ng::Value::Null => return Ok(BTreeMap::new()),
        serde_yaml_ng::Value::Mapping(mapping) => mapping,
        _ => return Err(format!("{what}: not a mapping of keys to values")),
    };
    let mut out = BTreeMap::new();
    for (key, value) in mapping {
        let key = key
            .as_str()
            .ok_or_else(|| format!("{what}: a key that is not a string"))?
            .to_owned();
        let value = match value {
            serde_yaml_ng::Value::String(s) => s,
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "{what}: {key}: {other:?} is not a string or number"
                ));
            }
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// A Prometheus duration of one unit (`30s`, `5m`, `1h`, `1d`) in seconds.
fn seconds(duration: &str) -> Option<u64> {
    let unit = match duration.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    let count: u64 = duration[..duration.len() - 1].parse().ok()?;
    Some(count * unit)
}

/// "1 minute", "90 seconds", "2 hours": the largest unit that divides the duration.
fn in_words(seconds: u64) -> String {
    let (count, unit) = [(86400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

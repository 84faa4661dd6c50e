//! The env file: every setting in it is one the exporter reads, documented, with the seed's
//! names and defaults, and the exporter starts with the file as systemd would pass it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{Exporter, Redis, run_exporter};
use crate::{SEED_SYMBOLS, metrics_with_seed_symbols, publish_once, read};

const ENV_FILE: &str = "config/harvest-metrics-exporter.env";

#[derive(Debug)]
struct Setting {
    name: String,
    value: String,
    /// Commented out: the line shows the default or an example.
    commented: bool,
}

fn is_setting_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The settings as systemd's EnvironmentFile= reads them (the active ones), plus the
/// commented-out `#NAME=value` lines, each with whether a prose comment documents it.
fn settings(text: &str) -> Vec<(Setting, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let parse = |line: &str| -> Option<Setting> {
        let (commented, rest) = match line.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (name, value) = rest.split_once('=')?;
        is_setting_name(name).then(|| Setting {
            name: name.to_owned(),
            value: value.to_owned(),
            commented,
        })
    };
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(setting) = parse(line) else {
            assert!(
                line.is_empty() || line.starts_with("# ") || *line == "#",
                "line {} is neither a setting nor a comment: {line:?}",
                index + 1
            );
            continue;
        };
        // Settings that share one comment (the two Redis timeouts, say) sit right below it.
        let documented = lines[..index]
            .iter()
            .rev()
            .find(|l| parse(l).is_none())
            .is_some_and(|l| l.starts_with("# "));
        found.push((setting, documented));
    }
    found
}

/// Every env variable `--help` documents, with its default when it has one.
fn help_env_defaults() -> BTreeMap<String, Option<String>> {
    let output = run_exporter(&["--help"], &[]);
    let help = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    let mut envs = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("[env: ") else {
            continue;
        };
        let name = rest
            .trim_end_matches(']')
            .split('=')
            .next()
            .unwrap()
            .to_owned();
        let default = lines
            .get(index + 1)
            .and_then(|l| l.strip_prefix("[default: "))
            .map(|d| d.trim_end_matches(']').trim_matches('"').to_owned());
        envs.insert(name, default);
    }
    assert!(envs.len() > 10, "too few env names in --help:\n{help}");
    envs
}

#[test]
fn env_file_documents_every_setting_with_the_seed_names_and_defaults() {
    let text = read(ENV_FILE);
    let settings = settings(&text);
    let help = help_env_defaults();

    for (setting, documented) in &settings {
        assert!(documented, "{} has no comment above it", setting.name);
        assert!(
            help.contains_key(&setting.name),
            "{} is not a setting of the exporter (--help lists {:?})",
            setting.name,
            help.keys()
        );
    }
    for name in help.keys() {
        assert!(
            settings.iter().any(|(s, _)| &s.name == name),
            "the env file does not mention {name}"
        );
    }

    let active: BTreeMap<&str, &str> = settings
        .iter()
        .filter(|(s, _)| !s.commented)
        .map(|(s, _)| (s.name.as_str(), s.value.as_str()))
        .collect();
    for (name, seed_default) in [
        ("REDIS_HOST", "localhost"),
        ("REDIS_PORT", "6379"),
        ("REDIS_DB", "0"),
        ("SYMBOLS", SEED_SYMBOLS),
        ("POLL_INTERVAL_SEC", "5"),
        ("METRICS_PORT", "8042"),
    ] {
        assert_eq!(active.get(name), Some(&seed_default), "{name}");
    }
    // The file shows the exporter's own defaults, so that uncommenting a line changes nothing.
    // SYMBOLS is the exception: the seed's list, where the exporter defaults to discovery.
    for (setting, _) in &settings {
        if let Some(Some(default)) = help.get(&setting.name)
            && setting.name != "SYMBOLS"
        {
            assert_eq!(
                &setting.value, default,
                "{} differs from --help",
                setting.name
            );
        }
    }
}

/// The exporter started with exactly the file's settings (Redis and HTTP ports moved to the
/// test's) reads the configured symbols and is ready.
#[test]
fn exporter_starts_with_the_env_file() {
    let text = read(ENV_FILE);
    let redis = Redis::start();
    let redis_port = redis.port.to_string();
    let env: Vec<(String, String)> = settings(&text)
        .into_iter()
        // The fixture gives the exporter a free port through METRICS_PORT.
        .filter(|(s, _)| !s.commented && s.name != "METRICS_PORT")
        .map(|(s, _)| match s.name.as_str() {
            "REDIS_PORT" => (s.name, redis_port.clone()),
            _ => (s.name, s.value),
        })
        .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let exporter = Exporter::start_raw(&[], &env_refs);
    publish_once(&redis);
    let body = metrics_with_seed_symbols(&exporter);
    assert!(
        body.contains("quantum_harvest_exporter_symbols_missing 0.0"),
        "{body}"
    );
    let ready = crate::common::wait_for("readiness", Duration::from_secs(20), || {
        let response = exporter.get("/ready");
        (response.status == 200).then_some(response)
    });
    assert_eq!(ready.text(), "ready\n");
}

//! The README's tables agree with `--help` and with what the exporter really exports, the sizing
//! guide with the committed benchmark run, and every setting rejects a bad value with a message
//! naming its flag and environment variable.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clap::CommandFactory;
use common::*;
use harvest_exporter::config::Cli;
use harvest_exporter::{PROPOSAL_FIELDS, Shown};

/// A file of the repository, by its path from the top.
fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn readme_section(title: &str) -> String {
    let readme = read("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no {title} section"));
    let rest = &readme[start + title.len() + 5..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
}

/// The table rows of a section, as cells with the backticks removed.
fn table_rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn configuration_table_matches_the_flags() {
    let documented: BTreeSet<(String, String, String)> =
        table_rows(&readme_section("Configuration"))
            .into_iter()
            .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
            .collect();
    let command = Cli::command();
    let actual: BTreeSet<(String, String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let default = arg
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((env, format!("--{}", arg.get_long()?), default))
        })
        .collect();
    assert_eq!(documented, actual, "README configuration table vs flags");
}

#[test]
fn help_names_every_env_variable_and_default() {
    let output = run_exporter(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for row in table_rows(&readme_section("Configuration")) {
        assert!(
            help.contains(&format!("[env: {}", row[0])),
            "--help lacks {}",
            row[0]
        );
        if !row[2].is_empty() {
            assert!(
                help.contains(&format!("[default: {}]", row[2])),
                "--help lacks the default of {}",
                row[0]
            );
        }
    }
}

/// The README names the env file where the systemd unit and the Debian package read it, and no
/// other place.
#[test]
fn readme_names_the_env_file_the_unit_and_the_package_read() {
    let unit = read("deploy/systemd/quantum-harvest-metrics-exporter.service");
    let env_file = unit
        .lines()
        .find_map(|l| l.strip_prefix("EnvironmentFile="))
        .expect("the unit reads an env file")
        .trim_start_matches('-');
    assert!(
        read("scripts/package-deb").contains(&format!("\"$stage{env_file}\"")),
        "the package installs {env_file}"
    );
    let readme = read("README.md");
    assert!(readme.contains(env_file), "README names {env_file}");
    assert!(
        !readme.contains("/etc/default/"),
        "README names another env file"
    );
}

/// The README's field table is the proposal field table, row for row and word for word.
#[test]
fn field_table_matches_the_declaration() {
    let documented: Vec<String> = readme_section("Proposal fields")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(str::to_owned)
        .collect();
    let declared: Vec<String> = PROPOSAL_FIELDS
        .iter()
        .map(|spec| {
            let metric = match spec.shown {
                Shown::Regime(regime) => format!("{}{{regime=\"{regime}\"}}", spec.metric),
                _ => spec.metric.to_owned(),
            };
            let required = if spec.required { "yes" } else { "no" };
            format!(
                "| `{}` | {required} | {} | `{metric}` | {} |",
                spec.key,
                spec.read.meaning(),
                spec.help
            )
        })
        .collect();
    assert_eq!(
        documented,
        declared,
        "README field table vs the declaration; the rows declared:\n{}",
        declared.join("\n")
    );
}

/// Families exported only while reading a replica through sentinels; tests/topology.rs sees them.
const REPLICA_ONLY: [&str; 2] = [
    "quantum_harvest_exporter_redis_replica_link_up",
    "quantum_harvest_exporter_redis_replica_lag_seconds",
];

#[test]
fn metrics_table_matches_what_is_exported() {
    let redis = Redis::start_with(&["--notify-keyspace-events", "Khgx"]);
    let url = redis.url();
    let output = run_exporter(
        &[
            "--redis.addr",
            &url,
            "simulate",
            "--rounds",
            "1",
            "--heat-gate",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Event mode and a configured symbol without a hash add their own series, so every
    // documented family can appear.
    let exporter = Exporter::start(
        &redis,
        &[
            "--harvest.events",
            "--harvest.symbols",
            "BTCUSDT,ETHUSDT,SOLUSDT,GONEUSDT",
        ],
    );
    let body = exporter.wait_metrics("simulated symbols", Duration::from_secs(10), |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(3.0)
            && sample(b, "quantum_harvest_exporter_notifications_up") == Some(1.0)
    });
    promtool_check_metrics(&body);
    let exported: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    let documented: BTreeSet<String> = table_rows(&readme_section("Metrics"))
        .into_iter()
        .map(|row| row[0].clone())
        .filter(|name| !REPLICA_ONLY.contains(&name.as_str()))
        .collect();
    assert_eq!(documented, exported, "README metrics table vs /metrics");
}

/// A value each setting must reject. A setting added without a row here fails the test.
const BAD_VALUES: [(&str, &str); 42] = [
    ("REDIS_SENTINELS", "127.0.0.1"),
    ("REDIS_SENTINEL_MASTER", "two words"),
    ("REDIS_SENTINEL_PASSWORD", ""),
    ("REDIS_SENTINEL_TLS", "perhaps"),
    ("REDIS_CLUSTER_NODES", "127.0.0.1:7000,::1:7001"),
    ("REDIS_READ_FROM", "nearest"),
    ("LISTEN_ADDRESS", "not a host"),
    ("WEB_TELEMETRY_PATH", "metrics"),
    ("LOG_FORMAT", "xml"),
    ("WEB_SYSTEMD_SOCKET", "maybe"),
    ("APPLY_STREAMS", "sometimes"),
    ("APPLY_PLAN_STREAM", " "),
    ("APPLY_RESULT_STREAM", "\r"),
    ("REDIS_PASSWORD_FILE", "/nonexistent/password"),
    ("METRICS_PORT", "0"),
    ("WEB_MAX_CONNECTIONS", "0"),
    ("WEB_HEADER_TIMEOUT_SEC", "-1"),
    ("WEB_WRITE_TIMEOUT_SEC", "forever"),
    ("WEB_CONFIG_FILE", "/nonexistent/web.yml"),
    ("REDIS_HOST", "bad host"),
    ("REDIS_PORT", "70000"),
    ("REDIS_DB", "first"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("REDIS_PASSWORD", ""),
    ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ("REDIS_TLS_CLIENT_CERT_FILE", "/nonexistent/client.pem"),
    ("REDIS_TLS_CLIENT_KEY_FILE", "/nonexistent/client.key"),
    ("REDIS_TLS_SERVER_NAME", "not a name"),
    ("REDIS_CONNECT_TIMEOUT_SEC", "soon"),
    ("REDIS_TIMEOUT_SEC", "1e9"),
    ("SYMBOLS", "BTCUSDT,ETH\u{7}USDT"),
    ("HARVEST_PREFIX", " \r"),
    ("POLL_INTERVAL_SEC", "0"),
    ("POLL_INTERVAL_SEC", "1s1m"),
    ("MAX_SYMBOLS", "-5"),
    ("HARVEST_EVENTS", "maybe"),
    ("HISTORY_POINTS", "-1"),
    ("HISTORY_POINTS", "100000"),
    ("HISTORY_MAX_AGE", "-1h"),
    ("HISTORY_MAX_AGE", "2d"),
    ("LOG_LEVEL", "loud"),
    ("LOG_LEVEL", "nan"),
];

#[test]
fn every_bad_setting_exits_nonzero_naming_it() {
    let command = Cli::command();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let env = env.to_string_lossy().into_owned();
        assert!(
            BAD_VALUES.iter().any(|(e, _)| *e == env),
            "no bad value listed for {env}"
        );
        for (_, bad) in BAD_VALUES.iter().filter(|(e, _)| *e == env) {
            // Any string is a valid password: there is nothing to reject.
            if env == "REDIS_PASSWORD" || env == "REDIS_SENTINEL_PASSWORD" {
                continue;
            }
            let flag = format!("--{long}");
            let flag_with_value = format!("{flag}={bad}");
            for output in [
                run_exporter(&[], &[(env.as_str(), bad)]),
                run_exporter(&[&flag_with_value], &[]),
            ] {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(
                    output.status.code(),
                    Some(2),
                    "{env}={bad:?} must fail: {stderr}"
                );
                assert!(
                    stderr.contains(&flag) && stderr.contains(&env),
                    "{env}={bad:?}: {stderr}"
                );
            }
        }
    }
}

#[test]
fn a_busy_port_is_a_clear_start_up_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let output = run_exporter(&["--web.listen-port", &port], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot listen on") && stderr.contains("METRICS_PORT"),
        "{stderr}"
    );
}

/// docs/sizing.md cites the committed benchmark run (its date and revision), every figure of
/// its "measured at" columns is one of that run's, every setting it names is a real one, and
/// the README links it.
#[test]
fn sizing_cites_the_committed_benchmark_and_real_settings() {
    let sizing = read("docs/sizing.md");
    let performance = read("docs/performance.md");
    let field = |prefix: &str| {
        let start = performance.find(prefix).unwrap() + prefix.len();
        performance[start..]
            .split(|c: char| c.is_whitespace() || c == ',')
            .next()
            .unwrap()
            .to_owned()
    };
    for cited in [field("- Date: "), field("(revision ")] {
        assert!(
            sizing.contains(&cited),
            "docs/sizing.md does not cite {cited}"
        );
    }

    let is_number_char = |c: char| c.is_ascii_digit() || c == '.' || c == ',';
    // A figure as a whole number in the run's report: not part of a longer one.
    let occurs = |number: &str| {
        performance.match_indices(number).any(|(i, _)| {
            let before = performance[..i].chars().next_back();
            let rest = &performance[i + number.len()..];
            let continues = rest.starts_with(|c: char| c.is_ascii_digit() || c == ',')
                || rest
                    .strip_prefix('.')
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
            !before.is_some_and(is_number_char) && !continues
        })
    };
    let mut measured = 0;
    let mut column = None;
    for line in sizing.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.starts_with('|') {
            column = None;
        } else if let Some(i) = cells.iter().position(|c| c.starts_with("measured at")) {
            column = Some(i);
        } else if let Some(cell) = column.and_then(|i| cells.get(i)) {
            for number in cell
                .split(|c: char| !is_number_char(c))
                .map(|n| n.trim_matches(|c| c == '.' || c == ','))
                .filter(|n| !n.is_empty())
                .filter(|n| !["1,000", "10,000", "100,000"].contains(n))
            {
                assert!(
                    occurs(number),
                    "{number} ({cell}) is not in docs/performance.md"
                );
                measured += 1;
            }
        }
    }
    assert!(measured >= 40, "{measured} measured figures");

    let settings: BTreeSet<String> = table_rows(&readme_section("Configuration"))
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    // Upper-case words in backticks that are not settings: Redis commands and a label value.
    let not_settings = ["HMGET", "SCAN", "OTHER"];
    for word in sizing.split('`').skip(1).step_by(2) {
        let name = word.split('=').next().unwrap();
        if name.len() > 3
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && !not_settings.contains(&name)
        {
            assert!(
                settings.contains(name),
                "docs/sizing.md names no setting {name}"
            );
        }
    }
    assert!(read("README.md").contains("](docs/sizing.md)"));
}

/// The README keeps what a user needs first and links the rest; every relative link of the
/// project's documents reaches a file, and a heading where it names one.
#[test]
fn readme_is_short_and_every_document_link_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = read("README.md");
    assert!(
        readme.lines().count() < 400,
        "README.md has {} lines: move the details to docs/",
        readme.lines().count()
    );
    let anchor = |heading: &str| {
        heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
            .collect::<String>()
            .replace(' ', "-")
    };
    let mut documents = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for dir in ["docs", "deploy", "deploy/runbooks"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                documents.push(path);
            }
        }
    }
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for link in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if link.contains("://") || link.contains(' ') {
                continue;
            }
            let (file, heading) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(file)
            };
            assert!(
                target.exists(),
                "{}: {link} leads nowhere",
                document.display()
            );
            if !heading.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings: Vec<String> = std::fs::read_to_string(&target)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(anchor)
                    .collect();
                assert!(
                    headings.iter().any(|h| h == heading),
                    "{}: {link} names no heading of {}",
                    document.display(),
                    target.display()
                );
            }
        }
    }
}

/// Every switch a test or a script reads from the environment is documented for developers.
#[test]
fn development_guide_names_every_developer_switch() {
    let guide = read("docs/development.md");
    for switch in [
        "UPDATE_GOLDEN",
        "HARVEST_FUZZ_CASES",
        "HARVEST_POLICY_RC_D",
        "BENCH_",
    ] {
        assert!(guide.contains(switch), "docs/development.md lacks {switch}");
    }
}

/// The README's Performance section names every switch `scripts/bench` documents in its header,
/// and none it does not have.
#[test]
fn readme_names_every_benchmark_switch() {
    let switches = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|word| word.starts_with("BENCH_") && word.len() > "BENCH_".len())
            .map(str::to_owned)
            .collect()
    };
    let bench = read("scripts/bench");
    let header: String = bench
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(switches(&readme_section("Performance")), switches(&header));
}

/// docs/reliability.md changes only when what it proves changes: no date, no machine, and no
/// figure that moves from run to run (a time or a rate) in its last column, which holds what the
/// assertions proved; `measured` prints the rest. The other columns say what a test did, with
/// the durations it set ("for 2 s").
#[test]
fn reliability_table_holds_nothing_that_varies_between_runs() {
    let table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reliability.md"))
            .unwrap();
    let varying = |word: &str| {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '/');
        matches!(word, "ms" | "s" | "calls/s" | "Date" | "Machine")
    };
    let proven = |row: &str| {
        row.trim_end_matches(" |")
            .rsplit(" | ")
            .next()
            .map(str::to_owned)
    };
    let texts = table
        .lines()
        .filter(|l| l.starts_with("- "))
        .map(str::to_owned)
        .chain(
            table
                .lines()
                .filter(|l| l.starts_with("| "))
                .filter_map(proven),
        );
    for text in texts {
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(
            !words.iter().take(2).any(|w| varying(w)),
            "docs/reliability.md names the run: {text}"
        );
        for pair in words.windows(2) {
            let figure = pair[0].trim_start_matches(['(', '~']);
            assert!(
                !(figure.parse::<f64>().is_ok() && varying(pair[1])),
                "a figure that varies between runs in docs/reliability.md: {text}"
            );
        }
    }
}

/// Every `.rs` file under `src/{dir}` (all of `src` for ""): its path below `src`, its text.
fn source_files(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src.join(dir), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let shown = path.strip_prefix(&src).unwrap().display().to_string();
            (shown, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The text of every file of module `name`: `src/{name}.rs` and all under `src/{name}/`.
fn module_files(name: &str) -> Vec<(String, String)> {
    let mut files = source_files(name);
    let file = format!("{name}.rs");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(&file);
    if let Ok(text) = std::fs::read_to_string(root) {
        files.insert(0, (file, text));
    }
    files
}

/// The crate's top-level modules a file names: the first segment of each path a `use crate::…`
/// statement imports (each of a `crate::{…}` group's), and of every `crate::…` path in the code.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    let first_segment = |path: &str| {
        let name: String = path
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        name
    };
    let mut imports = BTreeSet::new();
    for statement in code.split(';') {
        let statement: String = statement.split_whitespace().collect();
        let Some((_, path)) = statement.split_once("usecrate::") else {
            continue;
        };
        let Some(group) = path.strip_prefix('{') else {
            imports.insert(first_segment(path));
            continue;
        };
        // The group's paths, split at its own commas, not at those of the groups inside.
        let mut depth = 0;
        let mut start = 0;
        for (at, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 0 => {
                    imports.insert(first_segment(&group[start..at]));
                    start = at + 1;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    for (at, _) in code.match_indices("crate::") {
        imports.insert(first_segment(&code[at + "crate::".len()..]));
    }
    imports.retain(|name| !name.is_empty());
    imports
}

/// ARCHITECTURE.md's layering: the core (the types a read yields, `fetch`, and what turns them
/// into bytes and pages) imports nothing of `source`, the one module that speaks to Redis, and
/// the scrape path (`server`) nothing of `source` or `refresh`.
#[test]
fn the_core_and_the_scrape_path_import_nothing_of_the_redis_layer() {
    let core = [
        "fetch",
        "proposal",
        "snapshot",
        "render",
        "segments",
        "exposition",
        "view",
        "page",
    ];
    let rules = core
        .iter()
        .map(|module| (*module, &["source"][..]))
        .chain([("server", &["source", "refresh"][..])]);
    let mut broken = Vec::new();
    for (module, below) in rules {
        let files = module_files(module);
        assert!(!files.is_empty(), "no module {module}");
        for (file, text) in files {
            let imports = crate_imports(&text);
            for forbidden in below {
                if imports.contains(*forbidden) {
                    broken.push(format!("src/{file} imports crate::{forbidden}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
    let imports = |text| crate_imports(text).into_iter().collect::<Vec<_>>();
    assert_eq!(
        imports(
            "use crate::fetch::{A, B};\nuse crate::{\n    proposal::{self, C},\n    source,\n};"
        ),
        ["fetch", "proposal", "source"]
    );
    assert_eq!(
        imports("// use crate::source::X;\nlet x = crate::refresh::now();"),
        ["refresh"]
    );
}

/// Each file's lines before its tests: files stay small enough to read in one sitting, those of
/// the Redis layer (one part of the reading each) smaller still. A file that is wholly tests
/// (`tests.rs`) has no limit.
#[test]
fn no_file_outgrows_its_limit() {
    let mut too_long = Vec::new();
    for (file, text) in source_files("") {
        if file.ends_with("/tests.rs") {
            continue;
        }
        let code = text
            .lines()
            .take_while(|line| !line.starts_with("#[cfg(test)]"))
            .count();
        let limit = if file == "source.rs" || file.starts_with("source/") {
            500
        } else {
            600
        };
        if code > limit {
            too_long.push(format!(
                "src/{file}: {code} lines before its tests, over {limit}"
            ));
        }
    }
    assert!(too_long.is_empty(), "{too_long:#?}");
}

/// The ACL the tests give the exporter's user is the one docs/security.md tells operators to
/// create, rule for rule.
#[test]
fn the_tested_acl_is_the_documented_one() {
    let security = read("docs/security.md");
    let documented: Vec<&str> = security
        .lines()
        .find(|l| l.starts_with("ACL SETUSER harvest-exporter on >PASSWORD "))
        .expect("docs/security.md gives the exporter's ACL")
        .split_whitespace()
        .skip(5)
        .collect();
    let tested: BTreeSet<&str> = HASH_ACL.iter().chain(STREAM_ACL).copied().collect();
    assert_eq!(
        documented.iter().copied().collect::<BTreeSet<_>>(),
        tested,
        "docs/security.md's ACL against the tests' HASH_ACL and STREAM_ACL"
    );
}

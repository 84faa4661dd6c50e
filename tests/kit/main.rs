//! Tests of the deployment kit in `deploy/`: the systemd unit, the env file, the Prometheus
//! scrape job and rules, the Grafana dashboard and provisioning, the install script, the Debian
//! package, the dependency installer the README's commands run, and an end-to-end run of
//! redis-server, the simulator, the exporter and a real Prometheus (and Alertmanager).

#[path = "../common/mod.rs"]
mod common;

mod alertmanager;
mod config;
mod dashboard;
mod deb;
mod e2e;
mod install;
mod install_deps;
mod mixin;
mod prometheus;
mod rules_lint;
mod systemd;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{Exporter, Redis, require_tool, run_exporter_ok, xadd};
pub use common::{PLAN_STREAM, RESULT_STREAM};

/// The system user the package and the install script create.
pub const SERVICE_USER: &str = "harvest-exporter";

/// An entry of a `getent` database (passwd, group), split at its colons; `None` when absent.
pub fn getent(database: &str, key: &str) -> Option<Vec<String>> {
    let output = Command::new("getent").args([database, key]).output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .split(':')
            .map(str::to_owned)
            .collect()
    })
}

/// The three symbols the seed's examples use; the simulator publishes them in these tests.
pub const SEED_SYMBOLS: &str = "BTCUSDT,ETHUSDT,SOLUSDT";
pub const JOB: &str = "quantum-harvest-exporter";

/// A file or directory of the kit, e.g. `deploy("prometheus/alerts.yml")`.
pub fn deploy(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative)
}

pub fn read(relative: &str) -> String {
    let path = deploy(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Held by the tests that change this host itself: the install test and the Debian package test
/// both create and remove the system user `harvest-exporter`, and the package test installs
/// into the dpkg database. A lock on a file, so that it also keeps apart two test processes
/// (two checkouts tested at once); released when dropped.
pub struct HostLock(#[allow(dead_code)] std::fs::File);

pub fn host_lock() -> HostLock {
    let path = std::env::temp_dir().join("harvest-exporter-kit-host.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; no memory is shared with the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "lock {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    HostLock(file)
}

/// Runs a command to completion and fails the test, with its output, unless it succeeds.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A child process that is killed when the guard is dropped, so that a failing test leaves
/// nothing running.
pub struct Running {
    pub child: Child,
}

impl Running {
    pub fn spawn(command: &mut Command) -> Running {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Running { child }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server of the Prometheus family (Prometheus, Alertmanager) run from its Debian package on a
/// free port, its config and data in a directory of its own; ready (`/-/ready`) when returned,
/// killed when dropped.
pub struct PromServer {
    pub port: u16,
    process: Running,
    log: PathBuf,
    _dir: common::TempDir,
}

impl PromServer {
    /// Starts `binary` with `config` as its configuration file and its data under
    /// `storage_flag`, plus `extra` arguments.
    pub fn start(
        binary: &str,
        package: &str,
        config: &str,
        storage_flag: &str,
        extra: &[&str],
    ) -> PromServer {
        require_tool(binary, package);
        let dir = common::TempDir::new(binary);
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.0.join("server.log");
        let port = common::free_port();
        let process = Running::spawn(
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("{storage_flag}={}", dir.0.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(extra)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        let mut server = PromServer {
            port,
            process,
            log,
            _dir: dir,
        };
        common::wait_for(&format!("{binary} to be ready"), e2e::WAIT, || {
            if let Ok(Some(status)) = server.process.child.try_wait() {
                panic!("{binary} exited with {status}:\n{}", server.log_text());
            }
            let response = common::http_request(port, b"GET /-/ready HTTP/1.0\r\n\r\n").ok()?;
            (response.status == 200).then_some(())
        });
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The simulator publishing the seed's symbols to `redis` every `interval` seconds. The apply
/// layer's entries come from the tests themselves (`xadd`), so that the alerts they expect are
/// the only ones that can fire.
pub fn simulator(redis: &Redis, interval: &str) -> Running {
    Running::spawn(
        Command::new(common::exporter_bin())
            .env_clear()
            .args(["--redis.addr", &redis.url(), "--log.level", "warn"])
            .args([
                "simulate",
                "--symbols",
                SEED_SYMBOLS,
                "--interval",
                interval,
                "--apply=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Publishes one round of simulated proposals, heat gate included, so that every metric
/// family the exporter can export is present.
pub fn publish_once(redis: &Redis) {
    run_exporter_ok(&[
        "--redis.addr",
        &redis.url(),
        "simulate",
        "--symbols",
        SEED_SYMBOLS,
        "--rounds",
        "1",
        "--heat-gate",
    ]);
}

/// Writes one round of the apply layer's plans and results for the seed symbols, the way its
/// code paths write them: BTCUSDT's full close executed, ETHUSDT's partial close failing,
/// SOLUSDT skipped (not in the allowlist) and then blocked by the kill switch; then, as the
/// producer writes a result every cycle, a repeat of each symbol's first plan. `round` keeps the plan ids
/// of successive rounds apart.
pub fn publish_apply_entries(redis: &Redis, round: u32) {
    let now = common::unix_epoch().to_string();
    let plans = [
        (
            "BTCUSDT",
            "FULL_CLOSE_PROPOSED",
            "0.83",
            "EXECUTE",
            "kill_score_critical,kill_score_close_ok",
        ),
        (
            "ETHUSDT",
            "PARTIAL_75",
            "0.71",
            "EXECUTE",
            "layer4_kelly_250usdt",
        ),
        ("SOLUSDT", "PARTIAL_50", "0.64", "SKIP", "not_in_allowlist"),
        (
            "SOLUSDT",
            "PARTIAL_50",
            "0.64",
            "BLOCKED",
            "kill_switch_active",
        ),
    ];
    for (i, (symbol, action, kill_score, decision, reasons)) in plans.into_iter().enumerate() {
        let plan_id = format!("r{round}p{i}");
        xadd(
            redis,
            PLAN_STREAM,
            &[
                ("plan_id", &plan_id),
                ("symbol", symbol),
                ("action", action),
                ("kill_score", kill_score),
                ("decision", decision),
                ("reason_codes", reasons),
                ("steps", "[]"),
                ("source", "apply_layer"),
                ("event_type", "apply.plan"),
                ("timestamp", &now),
            ],
        );
        let result: &[(&str, &str)] = match (symbol, decision) {
            ("BTCUSDT", _) => &[
                ("decision", "EXECUTED"),
                ("executed", "True"),
                ("error", ""),
                ("order_status", "FILLED"),
            ],
            ("ETHUSDT", _) => &[
                ("decision", "FAILED"),
                ("executed", "False"),
                (
                    "error",
                    "execution_failed: ReadTimeout(host='api.exchange', port=443)",
                ),
            ],
            (_, "SKIP") => &[
                ("decision", "SKIP"),
                ("executed", "False"),
                ("error", "not_in_allowlist"),
            ],
            _ => &[
                ("decision", "BLOCKED"),
                ("executed", "False"),
                ("error", "kill_switch_active"),
            ],
        };
        let mut fields = vec![("plan_id", plan_id.as_str()), ("symbol", symbol)];
        fields.extend_from_slice(result);
        fields.extend([("source", "apply_layer"), ("timestamp", now.as_str())]);
        xadd(redis, RESULT_STREAM, &fields);
    }
    for (i, symbol) in SEED_SYMBOLS.split(',').enumerate() {
        let plan_id = format!("r{round}p{i}");
        xadd(
            redis,
            RESULT_STREAM,
            &[
                ("plan_id", &plan_id),
                ("symbol", symbol),
                ("decision", "SKIP"),
                ("executed", "False"),
                ("error", "duplicate_plan"),
                ("source", "apply_layer"),
                ("timestamp", &now),
            ],
        );
    }
}

/// Waits until the exporter's `/metrics` has every seed symbol, and returns the body.
pub fn metrics_with_seed_symbols(exporter: &Exporter) -> String {
    exporter.wait_metrics(
        "the seed symbols in /metrics",
        Duration::from_secs(20),
        |body| {
            SEED_SYMBOLS
                .split(',')
                .all(|s| body.contains(&format!("quantum_harvest_kill_score{{symbol=\"{s}\"}}")))
        },
    )
}

/// The metric names a text-format body declares with `# TYPE`.
pub fn metric_families(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The names that follow `key:` in a YAML file written in this kit's style (one `key: value`
/// per line), in order. Real YAML parsing is left to yamllint, promtool and Prometheus; this
/// only lets tests read the kit's own files.
pub fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
        .collect()
}

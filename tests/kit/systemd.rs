//! The systemd unit: it verifies, it is rated OK or better by systemd's own security review, it
//! carries the hardening the issue lists, and its system call filter admits every call the
//! exporter makes while serving (the filter cannot be exercised here, with no systemd running,
//! so the exporter's calls are traced and compared with the filter's expansion).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Redis, TempDir, exporter_bin, free_port, http_get, wait_for};
use crate::{Running, deploy, publish_once, read, require_tool, run_ok};

const UNIT: &str = "quantum-harvest-metrics-exporter.service";
const SOCKET: &str = "quantum-harvest-metrics-exporter.socket";

fn unit_path() -> std::path::PathBuf {
    deploy(&format!("systemd/{UNIT}"))
}

/// The values of `key=` in the unit's [Service] section, in order.
fn directives(key: &str) -> Vec<String> {
    read(&format!("systemd/{UNIT}"))
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn unit_security_rating_is_ok_or_better() {
    require_tool("systemd-analyze", "systemd");
    let output = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit_path()),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let rating: f64 = text
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    assert!(
        rating <= 2.0,
        "exposure {rating} is above 2.0 (\"OK\"):\n{text}"
    );
}

#[test]
fn unit_runs_unprivileged_with_the_listed_hardening() {
    for (key, value) in [
        ("User", "harvest-exporter"),
        ("Group", "harvest-exporter"),
        (
            "EnvironmentFile",
            "/etc/quantum/harvest-metrics-exporter.env",
        ),
        ("ExecStart", "/usr/local/bin/harvest-exporter"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert!(
            directives(key).iter().any(|v| v == value),
            "{UNIT} lacks {key}={value}"
        );
    }
    // ProcSubset=pid would hide /proc/stat, and with it process_start_time_seconds.
    assert!(directives("ProcSubset").is_empty());
}

/// `systemd-analyze verify` on the unit installed in a scratch root next to the binary it
/// starts and systemd's own units, which it checks the dependencies against.
#[test]
fn unit_verifies() {
    require_tool("systemd-analyze", "systemd");
    let root = TempDir::new("verify");
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("systemd's units (sysinit.target): apt-get install -y systemd");
    let units_dir = root.0.join("usr/lib/systemd/system");
    std::fs::create_dir_all(root.0.join("usr/lib/systemd")).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(system_units)
            .arg(&units_dir),
    );
    std::fs::create_dir_all(root.0.join("etc/systemd/system")).unwrap();
    let units = root.0.join("etc/systemd/system");
    std::fs::copy(unit_path(), units.join(UNIT)).unwrap();
    // The optional socket activation: the .socket unit and the service's drop-in.
    std::fs::copy(deploy(&format!("systemd/{SOCKET}")), units.join(SOCKET)).unwrap();
    let drop_in = units.join(format!("{UNIT}.d"));
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::copy(
        deploy("systemd/socket-activation.conf"),
        drop_in.join("socket-activation.conf"),
    )
    .unwrap();
    std::fs::create_dir_all(root.0.join("usr/local/bin")).unwrap();
    std::fs::copy(
        exporter_bin(),
        root.0.join("usr/local/bin/harvest-exporter"),
    )
    .unwrap();
    // ExecReload's command, which verify also looks for.
    std::fs::create_dir_all(root.0.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.0.join("bin/kill")).unwrap();

    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=false"])
        .arg(format!("--root={}", root.0.display()))
        .args([UNIT, SOCKET])
        .output()
        .expect("run systemd-analyze verify");
    // verify exits 0 on mere warnings (an unknown directive, say), so any output fails too.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "systemd-analyze verify ({}):\n{report}",
        output.status
    );
}

/// The process strace started. Killing strace would leave it running, detached, so it is
/// killed itself when the test ends early.
struct Tracee(Option<u32>);

impl Tracee {
    fn signal(&self, signal: &str) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

/// Every system call in `group` (`@name`) or a single call, with nested groups expanded.
fn expand_syscalls(group: &str, into: &mut BTreeSet<String>) {
    if !group.starts_with('@') {
        into.insert(group.to_owned());
        return;
    }
    let output =
        run_ok(Command::new("systemd-analyze").args(["syscall-filter", "--no-pager", group]));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let members: Vec<&str> = text
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!members.is_empty(), "systemd-analyze knows no {group}");
    for member in members {
        expand_syscalls(member, into);
    }
}

/// The calls the unit's SystemCallFilter= lines allow: the allow lists, minus the `~` lists.
fn allowed_syscalls() -> BTreeSet<String> {
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for line in directives("SystemCallFilter") {
        let (set, list) = match line.strip_prefix('~') {
            Some(list) => (&mut denied, list.to_owned()),
            None => (&mut allowed, line),
        };
        for group in list.split_whitespace() {
            expand_syscalls(group, set);
        }
    }
    assert!(!allowed.is_empty(), "the unit has no allow list");
    allowed.difference(&denied).cloned().collect()
}

#[test]
fn system_call_filter_allows_every_call_the_exporter_makes() {
    require_tool("systemd-analyze", "systemd");
    require_tool("strace", "strace");
    let allowed = allowed_syscalls();

    let redis = Redis::start();
    publish_once(&redis);
    let dir = TempDir::new("strace");
    let trace = dir.0.join("trace");
    let port = free_port();
    let mut traced = Running::spawn(
        Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(exporter_bin())
            .env_clear()
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args([
                "--redis.host",
                "localhost",
                "--redis.port",
                &redis.port.to_string(),
            ])
            .args(["--harvest.poll-interval", "0.2", "--log.level", "debug"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // strace forks short-lived probes of its own before it starts the exporter: the tracee is
    // the child that runs the exporter's binary.
    let strace_pid = traced.child.id();
    let binary = std::fs::canonicalize(exporter_bin()).unwrap();
    let mut exporter = Tracee(Some(wait_for(
        "strace to start the exporter",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
                .ok()?
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&binary)
                })
        },
    )));
    wait_for(
        "the traced exporter's data",
        Duration::from_secs(30),
        || {
            let body = http_get(port, "/metrics", &[]).ok()?.text();
            body.contains("quantum_harvest_kill_score{symbol=\"ETHUSDT\"}")
                .then_some(())
        },
    );
    for (path, headers) in [
        ("/metrics", &[][..]),
        ("/metrics", &[("Accept-Encoding", "gzip")][..]),
        ("/ready", &[][..]),
        ("/", &[][..]),
    ] {
        // Any answer will do (readiness may say 503): the point is the calls made to give it.
        http_get(port, path, headers).expect("GET from the traced exporter");
    }
    // `systemctl reload` sends SIGHUP (ExecReload): the reload path's calls must pass too, and
    // the exporter must still be there to answer afterwards.
    exporter.signal("HUP");
    wait_for(
        "the traced exporter to answer after SIGHUP",
        Duration::from_secs(10),
        || {
            http_get(port, "/health", &[])
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    // Lose Redis once, so that the error and reconnect paths run too.
    drop(redis);
    std::thread::sleep(Duration::from_millis(600));
    exporter.signal("TERM");
    // strace exits with its tracee.
    wait_for(
        "the traced exporter to exit",
        Duration::from_secs(20),
        || traced.child.try_wait().ok().flatten(),
    );
    exporter.0 = None;

    let text = std::fs::read_to_string(&trace).expect("strace output");
    let used: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|call| call.split_once('('))
        .map(|(name, _)| name.to_owned())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let blocked: Vec<&String> = used
        .iter()
        .filter(|call| !allowed.contains(*call))
        .collect();
    assert!(used.len() > 20, "too few calls traced: {used:?}");
    assert!(
        blocked.is_empty(),
        "the unit's SystemCallFilter would refuse {blocked:?} (traced: {used:?})"
    );
}

//! The install script, run for real on this host into a scratch root: the files, their owners
//! and modes, the system user, and idempotence (a second run changes nothing, the operator's
//! env file survives, damaged modes are repaired, an old unit is replaced).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TempDir, exporter_bin};
use crate::{SERVICE_USER, deploy, getent, host_lock, require_tool, run_ok};

const ENV_FILE: &str = "etc/quantum/harvest-metrics-exporter.env";
const UNIT_FILE: &str = "etc/systemd/system/quantum-harvest-metrics-exporter.service";

/// Removes the service user at the end if this test created it, and only then.
struct UserCleanup {
    created_here: bool,
}

impl Drop for UserCleanup {
    fn drop(&mut self) {
        if self.created_here {
            let _ = Command::new("userdel").arg(SERVICE_USER).status();
            // userdel removes the user's own group; an older one may have left it.
            let _ = Command::new("groupdel").arg(SERVICE_USER).status();
        }
    }
}

fn install(root: &Path, args: &[&str]) -> Vec<String> {
    install_with(root, args, None)
}

/// Runs install.sh, with `RUNBOOK_BASE_URL` set to `runbook_base` or unset.
fn install_with(root: &Path, args: &[&str], runbook_base: Option<&str>) -> Vec<String> {
    let mut command = Command::new("bash");
    command.env_remove("RUNBOOK_BASE_URL");
    if let Some(base) = runbook_base {
        command.env("RUNBOOK_BASE_URL", base);
    }
    let output = run_ok(
        command
            .arg(deploy("install.sh"))
            .arg("--root")
            .arg(root)
            .arg("--binary")
            .arg(exporter_bin())
            .args(args),
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Path, mode, owner, group and a hash of the content of everything under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u32, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            if meta.is_file() {
                std::fs::read(&path).unwrap().hash(&mut hasher);
            }
            let relative = path.strip_prefix(root).unwrap().to_owned();
            out.insert(
                relative,
                (
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    hasher.finish(),
                ),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn install_script_installs_idempotently_with_owners_and_modes() {
    let uid = String::from_utf8(run_ok(Command::new("id").arg("-u")).stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "the install test must run as root: it creates the system user {SERVICE_USER} and sets owners"
    );
    require_tool("useradd", "passwd");
    // The package test creates and removes the same user.
    let _host = host_lock();
    let _cleanup = UserCleanup {
        created_here: getent("passwd", SERVICE_USER).is_none(),
    };
    let root = TempDir::new("install");

    let first = install(&root.0, &["all"]);
    let mut files: Vec<(String, u32, &str, PathBuf)> = vec![
        (
            "usr/local/bin/harvest-exporter",
            0o755,
            "root",
            PathBuf::from(exporter_bin()),
        ),
        (
            UNIT_FILE,
            0o644,
            "root",
            deploy("systemd/quantum-harvest-metrics-exporter.service"),
        ),
        (
            ENV_FILE,
            0o640,
            SERVICE_USER,
            deploy("config/harvest-metrics-exporter.env"),
        ),
        (
            "usr/local/share/doc/harvest-exporter/README.md",
            0o644,
            "root",
            deploy("README.md"),
        ),
        (
            "etc/prometheus/rules/quantum-harvest-alerts.yml",
            0o644,
            "root",
            deploy("prometheus/alerts.yml"),
        ),
        (
            "etc/prometheus/rules/quantum-harvest-recording.yml",
            0o644,
            "root",
            deploy("prometheus/recording.yml"),
        ),
        (
            "etc/grafana/provisioning/datasources/quantum-prometheus.yml",
            0o644,
            "root",
            deploy("grafana/provisioning/datasources/quantum-prometheus.yml"),
        ),
        (
            "etc/grafana/provisioning/dashboards/quantum-harvest.yml",
            0o644,
            "root",
            deploy("grafana/provisioning/dashboards/quantum-harvest.yml"),
        ),
    ]
    .into_iter()
    .map(|(path, mode, group, source)| (path.to_owned(), mode, group, source))
    .collect();
    for dashboard in dashboards() {
        let name = dashboard
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        files.push((
            format!("var/lib/grafana/dashboards/quantum/{name}"),
            0o644,
            "root",
            dashboard,
        ));
    }
    for runbook in runbooks() {
        let name = runbook.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("usr/local/share/doc/harvest-exporter/runbooks/{name}"),
            0o644,
            "root",
            runbook,
        ));
    }
    for (path, _, _, _) in &files {
        assert!(
            first.contains(&format!("installed: /{path}")),
            "first run did not report /{path}: {first:#?}"
        );
    }

    let user = getent("passwd", SERVICE_USER).expect("the install created the service user");
    let group = getent("group", SERVICE_USER).expect("the install created the service group");
    let (user_id, user_gid): (u32, u32) = (user[2].parse().unwrap(), user[3].parse().unwrap());
    let gid: u32 = group[2].parse().unwrap();
    assert!(
        user_id < 1000,
        "{SERVICE_USER} is not a system user: {user:?}"
    );
    assert_eq!(user_gid, gid);
    assert_eq!(user[5], "/nonexistent");
    assert_eq!(user[6], "/usr/sbin/nologin");

    let check_files = || {
        for (path, mode, group_name, source) in &files {
            let installed = root.0.join(path);
            let meta = std::fs::metadata(&installed).unwrap_or_else(|e| panic!("/{path}: {e}"));
            assert_eq!(
                meta.mode() & 0o7777,
                *mode,
                "/{path}: mode {:o}",
                meta.mode() & 0o7777
            );
            assert_eq!(meta.uid(), 0, "/{path}: owner");
            let expected_gid = if *group_name == "root" { 0 } else { gid };
            assert_eq!(meta.gid(), expected_gid, "/{path}: group");
            if *path != ENV_FILE {
                assert!(
                    std::fs::read(&installed).unwrap() == std::fs::read(source).unwrap(),
                    "/{path} differs from {}",
                    source.display()
                );
            }
        }
    };
    check_files();
    assert_eq!(
        std::fs::read(root.0.join(ENV_FILE)).unwrap(),
        std::fs::read(deploy("config/harvest-metrics-exporter.env")).unwrap()
    );

    // A second run changes nothing and says so.
    let before = snapshot(&root.0);
    let second = install(&root.0, &["all"]);
    assert!(
        second.len() == files.len() && second.iter().all(|l| l.starts_with("unchanged: /")),
        "second run: {second:#?}"
    );
    assert_eq!(snapshot(&root.0), before, "the second run changed the tree");

    // The operator's settings survive, and the modes they broke are repaired; an old unit (the
    // original exporter's, say) is replaced.
    let env_path = root.0.join(ENV_FILE);
    let edited = "REDIS_HOST=redis.internal\nREDIS_PASSWORD=s3cret\n";
    std::fs::write(&env_path, edited).unwrap();
    run_ok(Command::new("chmod").arg("0644").arg(&env_path));
    run_ok(Command::new("chown").arg("root:root").arg(&env_path));
    std::fs::write(
        root.0.join(UNIT_FILE),
        "[Service]\nExecStart=/usr/bin/python3 main.py\n",
    )
    .unwrap();
    let third = install(&root.0, &["exporter"]);
    assert!(
        third
            .iter()
            .any(|l| l.starts_with("kept: /etc/quantum/harvest-metrics-exporter.env")),
        "{third:#?}"
    );
    assert!(
        third.contains(&format!("updated: /{UNIT_FILE}")),
        "{third:#?}"
    );
    assert_eq!(std::fs::read_to_string(&env_path).unwrap(), edited);
    check_files();
    assert_eq!(
        install(&root.0, &["exporter"])
            .iter()
            .filter(|l| !l.starts_with("unchanged: "))
            .count(),
        1
    );
}

/// The kit's runbooks, deploy/runbooks/*.md.
/// The dashboards `install.sh grafana` installs: every JSON file of deploy/grafana/.
fn dashboards() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

fn runbooks() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    files
}

/// With RUNBOOK_BASE_URL (or --runbook-base-url), the installed alerts point their
/// runbook_url there, and nothing else in the rules changes.
#[test]
fn install_script_points_runbook_urls_at_the_given_base() {
    require_tool("promtool", "prometheus");
    let root = TempDir::new("install-runbooks");
    let alerts = root
        .0
        .join("etc/prometheus/rules/quantum-harvest-alerts.yml");
    let recording = root
        .0
        .join("etc/prometheus/rules/quantum-harvest-recording.yml");
    let base = "https://git.example.com/quantum/harvest-exporter/-/blob/main/deploy/runbooks";
    let shipped = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();

    // A trailing slash is dropped.
    let first = install_with(&root.0, &["prometheus"], Some(&format!("{base}/")));
    assert!(
        first.iter().all(|l| l.starts_with("installed: /")),
        "{first:#?}"
    );
    let installed = std::fs::read_to_string(&alerts).unwrap();
    let mut rewritten = 0;
    for (original, line) in shipped.lines().zip(installed.lines()) {
        match original.trim_start().strip_prefix("runbook_url: ") {
            Some(url) => {
                let file = url.rsplit('/').next().unwrap();
                assert_eq!(line.trim_start(), format!("runbook_url: {base}/{file}"));
                rewritten += 1;
            }
            None => assert_eq!(line, original),
        }
    }
    assert_eq!(shipped.lines().count(), installed.lines().count());
    assert_eq!(rewritten, crate::prometheus::alert_blocks(&shipped).len());
    assert_eq!(
        std::fs::read(&recording).unwrap(),
        std::fs::read(deploy("prometheus/recording.yml")).unwrap()
    );
    run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&alerts),
    );

    // The same base again changes nothing; the option wins over the environment; without a
    // base, the shipped file comes back.
    let again = install_with(&root.0, &["prometheus"], Some(base));
    assert!(
        again.iter().all(|l| l.starts_with("unchanged: /")),
        "{again:#?}"
    );
    let other = install_with(
        &root.0,
        &[
            "--runbook-base-url",
            "https://wiki.example.com/runbooks",
            "prometheus",
        ],
        Some(base),
    );
    assert!(
        other.contains(&"updated: /etc/prometheus/rules/quantum-harvest-alerts.yml".to_owned()),
        "{other:#?}"
    );
    assert!(
        std::fs::read_to_string(&alerts)
            .unwrap()
            .contains("runbook_url: https://wiki.example.com/runbooks/HarvestKillScoreHigh.md")
    );
    install(&root.0, &["prometheus"]);
    assert_eq!(std::fs::read_to_string(&alerts).unwrap(), shipped);

    // Not a URL: refused before anything is installed.
    let empty = TempDir::new("install-badurl");
    for bad in ["runbooks", "ftp://host/runbooks", "https://host/run books"] {
        let output = Command::new("bash")
            .arg(deploy("install.sh"))
            .arg("--root")
            .arg(&empty.0)
            .args(["--runbook-base-url", bad, "prometheus"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("runbook base"),
            "{bad}"
        );
    }
    assert!(std::fs::read_dir(&empty.0).unwrap().next().is_none());
}

#[test]
fn install_script_refuses_a_missing_binary() {
    let root = TempDir::new("install-nobin");
    let output = Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--root")
        .arg(&root.0)
        .args(["--binary", "/nonexistent/harvest-exporter"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cargo build --release") || stderr.contains("run as root"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&root.0).unwrap().next().is_none(),
        "it installed something"
    );
}

#[test]
fn install_script_passes_shellcheck() {
    require_tool("shellcheck", "shellcheck");
    run_ok(Command::new("shellcheck").arg(deploy("install.sh")));
}

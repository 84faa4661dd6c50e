//! `scripts/install-deps`, which the README's two commands run, with `apt-get`, `systemctl`,
//! `service`, `invoke-rc.d` and `sudo` replaced by stand-ins that record their calls: it
//! installs what is missing with the service policy forbidding every start and stop, never
//! asks to stop, kill or restart a service (even when the stand-in `systemctl` says the host's
//! redis-server, prometheus and nginx are running), and puts the host's policy back as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::TempDir;
use crate::run_ok;

/// The service managers' verbs that stop, restart or reconfigure a running service.
const FORBIDDEN: &[&str] = &[
    "stop",
    "kill",
    "restart",
    "reload",
    "try-restart",
    "force-reload",
    "disable",
    "mask",
];

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of stand-ins that append `name args...` to `calls.log` beside them. The
/// stand-in `apt-get install` also records what the service policy answers at that moment,
/// which is what a package's maintainer scripts would be told.
fn stand_ins(dir: &Path, policy: &Path) {
    let log = dir.join("calls.log");
    for name in ["systemctl", "service", "invoke-rc.d"] {
        write_executable(
            &dir.join(name),
            &format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 0\n",
                log.display()
            ),
        );
    }
    write_executable(
        &dir.join("apt-get"),
        &format!(
            "#!/bin/sh\necho \"apt-get $*\" >> '{log}'\n\
             if [ \"$1\" = install ] || [ \"$2\" = install ] || [ \"$3\" = install ]; then\n\
             '{policy}' redis-server start; echo \"policy answered $?\" >> '{log}'\n\
             fi\nexit 0\n",
            log = log.display(),
            policy = policy.display()
        ),
    );
    write_executable(&dir.join("sudo"), "#!/bin/sh\nexec \"$@\"\n");
}

/// Runs the script for two packages whose commands are missing, and returns the calls made.
fn run_install_deps(scratch: &Path, policy: &Path) -> Vec<String> {
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    stand_ins(&bin, policy);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    run_ok(
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-deps"))
            .args([
                "harvest-no-such-command-a:redis-server",
                "harvest-no-such-command-b:prometheus",
            ])
            .env("PATH", path)
            .env("HARVEST_POLICY_RC_D", policy),
    );
    std::fs::read_to_string(bin.join("calls.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn assert_nothing_stopped(calls: &[String]) {
    let install = calls
        .iter()
        .position(|c| c.starts_with("apt-get") && c.contains(" install "))
        .unwrap_or_else(|| panic!("no apt-get install among {calls:?}"));
    assert!(
        calls[install].ends_with("redis-server prometheus"),
        "{calls:?}"
    );
    assert_eq!(
        calls.get(install + 1).map(String::as_str),
        Some("policy answered 101"),
        "the service policy must forbid every start and stop during the install: {calls:?}"
    );
    for call in calls {
        let mut words = call.split_whitespace();
        let tool = words.next().unwrap();
        if ["systemctl", "service", "invoke-rc.d"].contains(&tool) {
            assert!(
                !words.any(|w| FORBIDDEN.contains(&w)),
                "install-deps asked to stop or change a service: {call}"
            );
        }
    }
}

#[test]
fn install_deps_stops_no_service_and_leaves_no_policy_behind() {
    let scratch = TempDir::new("install-deps");
    let policy = scratch.0.join("policy-rc.d");
    let calls = run_install_deps(&scratch.0, &policy);
    assert_nothing_stopped(&calls);
    assert!(
        !policy.exists(),
        "the policy the script wrote must be gone after it"
    );
}

#[test]
fn install_deps_puts_the_hosts_own_policy_back() {
    let scratch = TempDir::new("install-deps-policy");
    let policy = scratch.0.join("policy-rc.d");
    let hosts_own = "#!/bin/sh\n# the host's own policy\nexit 0\n";
    write_executable(&policy, hosts_own);
    let calls = run_install_deps(&scratch.0, &policy);
    assert_nothing_stopped(&calls);
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), hosts_own);
    let mode = std::fs::metadata(&policy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read_dir(&scratch.0).unwrap().count(),
        2,
        "only bin/ and the host's policy are left"
    );
}

#[test]
fn install_deps_does_nothing_when_every_command_is_there() {
    let scratch = TempDir::new("install-deps-none");
    let policy = scratch.0.join("policy-rc.d");
    run_ok(
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-deps"))
            .arg("bash:bash")
            .env("HARVEST_POLICY_RC_D", &policy),
    );
    assert!(!policy.exists());
}

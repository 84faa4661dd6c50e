//! The Debian package, built by scripts/package-deb from the test build's binary and installed
//! on this host with dpkg: its files, owners and modes, the system user, the unit, the man
//! pages and completions, the monitoring kit under /usr/share/harvest-exporter (listed in the
//! deployment guide); an upgrade that keeps the operator's edit of the env file (a
//! conffile); removal, which keeps it; and a purge, which leaves nothing behind. systemd is not
//! PID 1 here, so the maintainer scripts must do without it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{TempDir, exporter_bin};
use crate::{SERVICE_USER, deploy, getent, host_lock, require_tool, run_ok};

const PACKAGE: &str = "harvest-exporter";
const SERVICE: &str = "quantum-harvest-metrics-exporter.service";
const BINARY: &str = "/usr/bin/harvest-exporter";
const UNIT: &str = "/lib/systemd/system/quantum-harvest-metrics-exporter.service";
const ENV_FILE: &str = "/etc/quantum/harvest-metrics-exporter.env";
const DOC_DIR: &str = "/usr/share/doc/harvest-exporter";
/// The kit's Prometheus, Alertmanager and Grafana files, each under the directory of deploy/ it
/// comes from.
const SHARE_DIR: &str = "/usr/share/harvest-exporter";
/// Where the shipped rules' runbook_url points (deploy/install.sh's documentation directory).
const KIT_RUNBOOKS: &str = "file:///usr/local/share/doc/harvest-exporter/runbooks/";
const MAN_PAGES: [&str; 3] = [
    "/usr/share/man/man1/harvest-exporter.1.gz",
    "/usr/share/man/man1/harvest-exporter-simulate.1.gz",
    "/usr/share/man/man1/harvest-exporter-status.1.gz",
];
const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/harvest-exporter";
const ZSH_COMPLETION: &str = "/usr/share/zsh/vendor-completions/_harvest-exporter";
const FISH_COMPLETION: &str = "/usr/share/fish/vendor_completions.d/harvest-exporter.fish";
const ENABLED_LINK: &str =
    "/etc/systemd/system/multi-user.target.wants/quantum-harvest-metrics-exporter.service";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The package of the test build's binary with Debian revision `revision`, written to `out`
/// (compressed quickly: the test build's binary is large).
fn build(revision: u32, out: &Path) -> PathBuf {
    let output = run_ok(
        Command::new("bash")
            .arg(repo().join("scripts/package-deb"))
            .arg("--binary")
            .arg(exporter_bin())
            .args(["--revision", &revision.to_string()])
            .arg("--out")
            .arg(out)
            .arg("--fast"),
    );
    let deb = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!(
            "{PACKAGE}_{}-{revision}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            architecture()
        )
    );
    assert!(deb.is_file(), "{}", deb.display());
    deb
}

fn architecture() -> String {
    let output = run_ok(Command::new("dpkg").arg("--print-architecture"));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// dpkg without a terminal: a question (a conffile prompt, say) would fail it instead of
/// waiting.
fn dpkg(args: &[&str]) -> Output {
    run_ok(
        Command::new("dpkg")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .stdin(Stdio::null()),
    )
}

fn install(deb: &Path) -> String {
    let output = dpkg(&["-i", deb.to_str().unwrap()]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `${Status} ${Version}` of the package, or None when dpkg does not know it.
fn status() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", PACKAGE])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !text.is_empty() && !text.starts_with("unknown")).then_some(text)
}

/// Purges the package when dropped, so that a failing test leaves this host as it found it.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn same_file(installed: &str, source: &Path) {
    assert!(
        std::fs::read(installed).unwrap_or_else(|e| panic!("{installed}: {e}"))
            == std::fs::read(source).unwrap(),
        "{installed} differs from {}",
        source.display()
    );
}

fn mode_owner_group(path: &str) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn gunzip(path: &str) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{path} is not gzip'd text: {e}"));
    text
}

/// Everything the package installs, as checked after the install and after the upgrade.
fn check_installed(version: &str, gid: u32) {
    assert_eq!(
        status().as_deref(),
        Some(format!("install ok installed {version}").as_str())
    );
    // Every file as dpkg unpacked it (the env file aside, which is the operator's).
    let verify = dpkg(&["--verify", PACKAGE]);
    let changed: Vec<String> = String::from_utf8_lossy(&verify.stdout)
        .lines()
        .filter(|l| !l.ends_with(ENV_FILE))
        .map(str::to_owned)
        .collect();
    assert!(changed.is_empty(), "dpkg --verify: {changed:#?}");

    let output = run_ok(Command::new(BINARY).arg("--version"));
    let version_line = String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        (version_line + " ")
            .starts_with(&format!("harvest-exporter {} ", env!("CARGO_PKG_VERSION"))),
        "{BINARY} --version: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(mode_owner_group(BINARY), (0o755, 0, 0));

    // The kit's unit, with only the package's paths changed.
    let unit = read(UNIT);
    let kit_unit = std::fs::read_to_string(deploy(&format!("systemd/{SERVICE}"))).unwrap();
    assert_eq!(unit.lines().count(), kit_unit.lines().count());
    let changed: Vec<(&str, &str)> = kit_unit
        .lines()
        .zip(unit.lines())
        .filter(|(kit, packaged)| kit != packaged)
        .collect();
    assert_eq!(
        changed,
        [
            (
                "# Installed as /etc/systemd/system/quantum-harvest-metrics-exporter.service by deploy/install.sh.",
                "# Installed as /lib/systemd/system/quantum-harvest-metrics-exporter.service by the harvest-exporter package."
            ),
            (
                "Documentation=file:///usr/local/share/doc/harvest-exporter/README.md",
                "Documentation=man:harvest-exporter(1) file:///usr/share/doc/harvest-exporter/README.md"
            ),
            (
                "ExecStart=/usr/local/bin/harvest-exporter",
                "ExecStart=/usr/bin/harvest-exporter"
            ),
        ]
    );
    assert_eq!(mode_owner_group(UNIT), (0o644, 0, 0));
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=false", UNIT])
        .output()
        .expect("run systemd-analyze verify");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Enabled as debhelper's scripts do it, without a running systemd.
    assert_eq!(
        std::fs::read_link(ENABLED_LINK).unwrap_or_else(|e| panic!("{ENABLED_LINK}: {e}")),
        Path::new(UNIT)
    );

    // The env file is a conffile, readable by the service's group only.
    let conffiles = String::from_utf8(
        run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE])).stdout,
    )
    .unwrap();
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{ENV_FILE} "))),
        "conffiles: {conffiles}"
    );
    assert_eq!(mode_owner_group(ENV_FILE), (0o640, 0, gid));

    for page in MAN_PAGES {
        let troff = gunzip(page);
        assert!(troff.contains("\n.TH harvest-exporter"), "{page}: {troff}");
        assert_eq!(mode_owner_group(page), (0o644, 0, 0));
    }
    assert!(gunzip(MAN_PAGES[0]).contains("\\fBREDIS_HOST\\fR"));
    require_tool("man", "man-db");
    let output = run_ok(
        Command::new("man")
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "")
            .args(["--warnings", "harvest-exporter"]),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("--redis.addr"), "{text}");
    assert!(
        output.stderr.is_empty(),
        "man warnings:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The bash completion loads and registers itself; the others name the command.
    let output = run_ok(Command::new("bash").args([
        "-c",
        &format!("source {BASH_COMPLETION} && complete -p harvest-exporter"),
    ]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("harvest-exporter"));
    assert!(read(ZSH_COMPLETION).starts_with("#compdef harvest-exporter"));
    assert!(read(FISH_COMPLETION).contains("complete -c harvest-exporter"));

    same_file(&format!("{DOC_DIR}/README.md"), &deploy("README.md"));
    same_file(&format!("{DOC_DIR}/exporter.md"), &repo().join("README.md"));
    // What the exporter's README links to under docs/ is installed beside it.
    let readme = read(&format!("{DOC_DIR}/exporter.md"));
    for link in readme.split("docs/").skip(1) {
        let name: String = link
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let name = name.trim_end_matches('.');
        same_file(
            &format!("{DOC_DIR}/docs/{name}"),
            &repo().join("docs").join(name),
        );
    }
    let runbooks: Vec<PathBuf> = std::fs::read_dir(deploy("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(runbooks.len() >= 7);
    for runbook in runbooks {
        let name = runbook.file_name().unwrap().to_string_lossy().into_owned();
        same_file(&format!("{DOC_DIR}/runbooks/{name}"), &runbook);
    }
    assert!(read(&format!("{DOC_DIR}/copyright")).contains("License: MIT"));

    check_monitoring_kit();
}

/// Every file of a directory of the kit, at any depth, relative to it; none when it does not
/// exist.
fn kit_files(dir: &str) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy(dir), &deploy(dir), &mut out);
    out.sort();
    out
}

/// The rules and scrape job, the Alertmanager example and the dashboards with their
/// provisioning files, root's and readable by all: each as in deploy/, but for the alerts'
/// runbook_url, which points at the runbooks the package installs.
fn check_monitoring_kit() {
    let prometheus: Vec<PathBuf> = kit_files("prometheus")
        .into_iter()
        .filter(|f| f.parent() == Some(Path::new("")) && f.extension().is_some_and(|e| e == "yml"))
        .collect();
    let names: Vec<String> = prometheus
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    for rules in ["alerts.yml", "recording.yml"] {
        assert!(names.iter().any(|n| n == rules), "{names:?}");
    }
    let mut runbook_urls = 0;
    for file in &prometheus {
        let installed = format!("{SHARE_DIR}/prometheus/{}", file.display());
        let kit = std::fs::read_to_string(deploy("prometheus").join(file)).unwrap();
        let packaged_base = format!("file://{DOC_DIR}/runbooks/");
        let expected: String = kit
            .split_inclusive('\n')
            .map(|line| match line.split_once("runbook_url: ") {
                Some((indent, url)) if indent.trim().is_empty() => format!(
                    "{indent}runbook_url: {}",
                    url.replacen(KIT_RUNBOOKS, &packaged_base, 1)
                ),
                _ => line.to_owned(),
            })
            .collect();
        assert_eq!(read(&installed), expected, "{installed}");
        assert_eq!(mode_owner_group(&installed), (0o644, 0, 0));
        for url in expected
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("runbook_url: "))
        {
            let runbook = url.strip_prefix("file://").unwrap_or(url);
            assert!(
                Path::new(runbook).is_file(),
                "{installed}: {url} is not installed"
            );
            runbook_urls += 1;
        }
    }
    assert!(runbook_urls >= 7, "{runbook_urls} runbook_url annotations");

    let dashboards = kit_files("grafana");
    assert!(dashboards.len() >= 5, "{dashboards:?}");
    for (dir, files) in [
        ("grafana", dashboards),
        ("alertmanager", kit_files("alertmanager")),
    ] {
        for file in files {
            let installed = format!("{SHARE_DIR}/{dir}/{}", file.display());
            same_file(&installed, &deploy(dir).join(&file));
            assert_eq!(mode_owner_group(&installed), (0o644, 0, 0));
        }
    }
}

/// The deployment guide names every file the package puts under /usr/share/harvest-exporter:
/// its path there, or, for a directory the package copies whole, that directory as "every
/// file of `deploy/<dir>/`".
#[test]
fn deployment_guide_lists_the_packaged_monitoring_kit() {
    for (tool, package) in [("dpkg-deb", "dpkg"), ("strip", "binutils")] {
        require_tool(tool, package);
    }
    let out = TempDir::new("deb-contents");
    let deb = build(1, &out.0);
    let listing = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let prefix = format!(".{SHARE_DIR}/");
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|path| path.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect();
    assert!(
        files.iter().any(|f| f == "prometheus/alerts.yml")
            && files
                .iter()
                .any(|f| f == "grafana/quantum_trader_overview.json"),
        "{files:?}"
    );
    let guide = std::fs::read_to_string(deploy("README.md")).unwrap();
    assert!(guide.contains(&format!("`{SHARE_DIR}/`")));
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| {
            let top = f.split('/').next().unwrap();
            !guide.contains(&format!("`{f}`"))
                && !guide.contains(&format!("every file of `deploy/{top}/`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/README.md does not list what the package installs in {SHARE_DIR}: {missing:?}"
    );
}

#[test]
fn debian_package_installs_upgrades_and_purges() {
    let uid = String::from_utf8(run_ok(Command::new("id").arg("-u")).stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "the package test must run as root: it installs the package on this host"
    );
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("strip", "binutils"),
        ("systemd-analyze", "systemd"),
        ("adduser", "adduser"),
    ] {
        require_tool(tool, package);
    }
    let out = TempDir::new("deb");
    let first = build(1, &out.0);
    let second = build(2, &out.0);

    let _host = host_lock();
    assert!(
        status().is_none_or(|s| s.starts_with("deinstall ok config-files")
            || s.starts_with("purge ok not-installed")),
        "{PACKAGE} is installed on this host ({:?}); the test installs and purges it: \
         dpkg --purge {PACKAGE} first",
        status()
    );
    assert!(
        !Path::new(ENV_FILE).exists() && getent("passwd", SERVICE_USER).is_none(),
        "{ENV_FILE} or the user {SERVICE_USER} exists (deploy/install.sh was run here?); the test \
         installs the package and purges it, which removes them"
    );
    let _purge = Purge;

    // A new install: the user, the files, the service enabled but not started (no systemd).
    install(&first);
    let user = getent("passwd", SERVICE_USER).expect("the postinst created the service user");
    let group = getent("group", SERVICE_USER).expect("the postinst created the service group");
    let (user_id, user_gid): (u32, u32) = (user[2].parse().unwrap(), user[3].parse().unwrap());
    let gid: u32 = group[2].parse().unwrap();
    assert!(
        user_id < 1000,
        "{SERVICE_USER} is not a system user: {user:?}"
    );
    assert_eq!(user_gid, gid);
    assert_eq!(user[5], "/nonexistent");
    assert_eq!(user[6], "/usr/sbin/nologin");
    let revision_1 = format!("{}-1", env!("CARGO_PKG_VERSION"));
    check_installed(&revision_1, gid);
    same_file(ENV_FILE, &deploy("config/harvest-metrics-exporter.env"));

    // The operator edits the env file; an upgrade keeps the edit without asking (the shipped
    // file did not change), and the file's group and mode.
    let edited = read(ENV_FILE).replace("REDIS_HOST=localhost", "REDIS_HOST=redis.internal")
        + "REDIS_PASSWORD=s3cret\n";
    std::fs::write(ENV_FILE, &edited).unwrap();
    let log = install(&second);
    assert!(!log.contains("Configuration file"), "dpkg asked: {log}");
    let revision_2 = format!("{}-2", env!("CARGO_PKG_VERSION"));
    check_installed(&revision_2, gid);
    assert_eq!(read(ENV_FILE), edited);
    for suffix in [".dpkg-dist", ".dpkg-new", ".dpkg-old"] {
        assert!(!Path::new(&format!("{ENV_FILE}{suffix}")).exists());
    }
    assert_eq!(
        getent("passwd", SERVICE_USER),
        Some(user.clone()),
        "user changed"
    );

    // The same package again: the maintainer scripts are idempotent.
    install(&second);
    check_installed(&revision_2, gid);
    assert_eq!(read(ENV_FILE), edited);

    // Removal keeps the configuration (and the user it is given to); a purge removes both.
    dpkg(&["--remove", PACKAGE]);
    assert_eq!(
        status().as_deref(),
        Some(format!("deinstall ok config-files {revision_2}").as_str())
    );
    assert!(!Path::new(BINARY).exists() && !Path::new(UNIT).exists());
    assert_eq!(read(ENV_FILE), edited);
    assert_eq!(getent("passwd", SERVICE_USER), Some(user));

    dpkg(&["--purge", PACKAGE]);
    assert!(
        status().is_none_or(|s| s.starts_with("purge ok not-installed")),
        "{:?}",
        status()
    );
    let mut left: Vec<&str> = vec![
        BINARY,
        UNIT,
        ENV_FILE,
        "/etc/quantum",
        DOC_DIR,
        BASH_COMPLETION,
        ZSH_COMPLETION,
        FISH_COMPLETION,
        ENABLED_LINK,
        SHARE_DIR,
    ];
    left.extend(MAN_PAGES);
    left.retain(|p| std::fs::symlink_metadata(p).is_ok());
    assert!(left.is_empty(), "left after the purge: {left:#?}");
    assert!(
        getent("passwd", SERVICE_USER).is_none(),
        "the purge kept the user"
    );
    assert!(
        getent("group", SERVICE_USER).is_none(),
        "the purge kept the group"
    );
}

#[test]
fn package_scripts_pass_shellcheck() {
    require_tool("shellcheck", "shellcheck");
    run_ok(
        Command::new("shellcheck")
            .arg(repo().join("scripts/package-deb"))
            .arg(deploy("debian/postinst"))
            .arg(deploy("debian/prerm"))
            .arg(deploy("debian/postrm")),
    );
}

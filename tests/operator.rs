//! The habits of an operator who runs node_exporter: listen addresses by name and repeated,
//! socket activation, a custom telemetry path, a password file, log formats, and `--version`
//! and build_info that say what was built.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn listens_on_several_addresses_given_by_name() {
    let redis = Redis::start();
    seed_example(&redis);
    let second = free_port();
    let url = redis.url();
    // The first address takes its port from METRICS_PORT, which the fixture sets and waits on:
    // it answering proves `localhost` was resolved to 127.0.0.1.
    let exporter = Exporter::start_raw(
        &[
            "--redis.addr",
            &url,
            "--web.listen-address",
            "localhost",
            "--web.listen-address",
            &format!("[::1]:{second}"),
        ],
        &[],
    );
    assert!(exporter.log_text().contains(&format!("[::1]:{second}")));
    let v6 = std::net::TcpStream::connect(("::1", second));
    assert!(v6.is_ok(), "the second address is served too");
    drop(exporter);

    let output = run_exporter(&["--web.listen-address", "no-such-host.invalid:9"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot resolve no-such-host.invalid (--web.listen-address)"),
        "{stderr}"
    );
}

#[test]
fn a_custom_telemetry_path_moves_the_metrics_and_the_page_link() {
    let redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &["--web.telemetry-path", "/internal/metrics"]);
    let body = wait_for("metrics at the custom path", WAIT, || {
        let response = exporter.get("/internal/metrics");
        (response.status == 200 && response.text().contains("quantum_harvest_kill_score{"))
            .then(|| response.text())
    });
    promtool_check_metrics(&body);
    assert_eq!(exporter.get("/metrics").status, 404);
    assert!(
        exporter
            .get("/")
            .text()
            .contains("<a href=\"/internal/metrics\">/internal/metrics</a>")
    );
}

#[test]
fn socket_activation_serves_the_socket_systemd_passes() {
    require_tool("systemd-socket-activate", "systemd");
    let redis = Redis::start();
    seed_example(&redis);
    let port = free_port();
    let dir = TempDir::new("socket");
    let log = dir.0.join("log");
    let mut activated = Command::new("systemd-socket-activate")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg(exporter_bin())
        .args(["--web.systemd-socket", "--redis.addr", &redis.url()])
        // Ignored under socket activation: the passed socket wins.
        .args(["--web.listen-address", "127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start systemd-socket-activate");
    // systemd-socket-activate holds the socket and starts the exporter on the first connection.
    let body = wait_for("metrics on the activated socket", WAIT, || {
        let response = http_get(port, "/metrics", &[]).ok()?;
        response
            .text()
            .contains("quantum_harvest_kill_score{symbol=\"ETHUSDT\"}")
            .then(|| response.text())
    });
    promtool_check_metrics(&body);
    let _ = activated.kill();
    let _ = activated.wait();

    let output = run_exporter(&["--web.systemd-socket"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--web.systemd-socket: no socket was passed"),
        "{stderr}"
    );
}

#[test]
fn redis_password_from_a_file() {
    let redis = Redis::start_with(&["--requirepass", "from-file-pw"]);
    let dir = TempDir::new("password");
    let file = dir.0.join("redis.password");
    std::fs::write(&file, "from-file-pw\n").unwrap();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let file = file.to_string_lossy().into_owned();
    let exporter = Exporter::start_raw(
        &[
            "--redis.addr",
            &url,
            "--redis.password-file",
            &file,
            "--harvest.poll-interval",
            "0.2",
        ],
        &[],
    );
    exporter.wait_metrics("Redis read with the file's password", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_redis_up") == Some(1.0)
    });
    assert!(!exporter.log_text().contains("from-file-pw"));

    let output = run_exporter(
        &["--redis.password-file", &file, "--redis.password", "x"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "one password source only");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--redis.password"));
}

/// redis_exporter's `REDIS_ADDR`, as `host:port`, is read; one naming another Redis than
/// `REDIS_URL` stops start-up rather than being ignored.
#[test]
fn redis_exporter_address_variable_is_read() {
    let redis = Redis::start();
    seed_example(&redis);
    let addr = format!("127.0.0.1:{}", redis.port);
    let exporter = Exporter::start_raw(
        &[],
        &[
            ("REDIS_ADDR", addr.as_str()),
            ("POLL_INTERVAL_SEC", "200ms"),
        ],
    );
    exporter.wait_metrics("Redis read at REDIS_ADDR", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_redis_up") == Some(1.0)
            && b.contains("quantum_harvest_kill_score{symbol=\"ETHUSDT\"}")
    });

    let output = run_exporter(
        &[],
        &[
            ("REDIS_ADDR", addr.as_str()),
            ("REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("REDIS_URL (redis://:***@127.0.0.1:6379/0) and REDIS_ADDR"),
        "{stderr}"
    );
    let output = run_exporter(&[], &[("REDIS_ADDR", "http://127.0.0.1:6379")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_ADDR"), "{stderr}");
}

/// A Redis with `tls-auth-clients yes` is read with a client certificate, and refuses the
/// exporter without one; a certificate without its key, or for a plain redis:// address, is a
/// bad setting.
#[test]
fn redis_that_requires_a_client_certificate() {
    let certs = Certs::new();
    let redis = Redis::start_tls_with(&certs, true);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let path = |p: &std::path::PathBuf| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (
        path(&certs.ca),
        path(&certs.client_cert),
        path(&certs.client_key),
    );
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_TLS_CA_FILE", ca.as_str()),
        ("REDIS_TLS_CLIENT_CERT_FILE", cert.as_str()),
        ("REDIS_TLS_CLIENT_KEY_FILE", key.as_str()),
        ("POLL_INTERVAL_SEC", "200ms"),
    ];
    let output = run_exporter(&["simulate", "--rounds", "1"], &env);
    assert!(output.status.success(), "{output:?}");
    let exporter = Exporter::start_raw(&[], &env);
    exporter.wait_metrics("values read with a client certificate", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_redis_up") == Some(1.0)
            && b.contains("quantum_harvest_kill_score{symbol=\"BTCUSDT\"}")
    });
    let status = run_exporter(
        &[
            "--redis.addr",
            &url,
            "--redis.tls-ca-file",
            &ca,
            "--redis.tls-client-cert-file",
            &cert,
            "--redis.tls-client-key-file",
            &key,
            "status",
        ],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("BTCUSDT"),
        "{status:?}"
    );

    let without = Exporter::start_raw(&[], &env[..2]);
    without.wait_refused();

    for (args, named) in [
        (
            vec!["--redis.addr", &url, "--redis.tls-client-cert-file", &cert],
            "--redis.tls-client-key-file",
        ),
        (
            vec![
                "--redis.tls-client-cert-file",
                &cert,
                "--redis.tls-client-key-file",
                &key,
            ],
            "rediss://",
        ),
        (
            vec!["--redis.tls-client-key-file", "/nonexistent/key.pem"],
            "REDIS_TLS_CLIENT_KEY_FILE",
        ),
    ] {
        let output = run_exporter(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

/// A Redis whose certificate names another host than the address it is reached at is read with
/// --redis.tls-server-name, and refused without it.
#[test]
fn redis_certificate_for_another_name() {
    let certs = Certs::new();
    let redis = Redis::start_tls_named(&certs);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let ca = certs.ca.to_string_lossy().into_owned();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_TLS_CA_FILE", ca.as_str()),
        ("REDIS_TLS_SERVER_NAME", Certs::SERVER_NAME),
        ("POLL_INTERVAL_SEC", "200ms"),
    ];
    let output = run_exporter(&["simulate", "--rounds", "1"], &env);
    assert!(output.status.success(), "{output:?}");
    let exporter = Exporter::start_raw(&[], &env);
    exporter.wait_metrics("values read from the named server", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_redis_up") == Some(1.0)
            && b.contains("quantum_harvest_kill_score{symbol=\"BTCUSDT\"}")
    });
    // The address shown is still the one configured.
    assert!(
        exporter
            .log_text()
            .contains(&format!("redis=127.0.0.1:{}", redis.port)),
        "{}",
        exporter.log_text()
    );

    let without = Exporter::start_raw(&[], &[env[0], env[1], env[3]]);
    without.wait_refused();
    assert!(
        without.log_text().to_lowercase().contains("certificate"),
        "{}",
        without.log_text()
    );

    let plain = format!("redis://127.0.0.1:{}/0", redis.port);
    for (args, named) in [
        (vec!["--redis.addr", plain.as_str()], "rediss://"),
        (
            vec!["--redis.addr", &url, "--harvest.events"],
            "--harvest.events",
        ),
        (
            vec!["--redis.addr", &url, "--redis.sentinels", "127.0.0.1:26379"],
            "--redis.sentinels",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--redis.tls-server-name", Certs::SERVER_NAME]);
        let output = run_exporter(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("REDIS_TLS_SERVER_NAME"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn logs_as_logfmt_by_default_and_as_json_on_request() {
    let redis = Redis::start();
    seed_example(&redis);
    let logfmt = Exporter::start(&redis, &[]);
    let text = wait_for("the start-up line", WAIT, || {
        let log = logfmt.log_text();
        log.contains("harvest-exporter started").then_some(log)
    });
    let line = text
        .lines()
        .find(|l| l.contains("harvest-exporter started"))
        .unwrap();
    // Prometheus' own keys and level names, in its order.
    assert!(
        line.starts_with("time=20")
            && line.contains("Z level=INFO source=main.rs:")
            && line.contains(" msg=\"harvest-exporter started\" version="),
        "{line}"
    );

    let json = Exporter::start(&redis, &["--log.format", "json"]);
    let text = wait_for("the start-up line", WAIT, || {
        let log = json.log_text();
        log.contains("harvest-exporter started").then_some(log)
    });
    for line in text.lines().filter(|l| !l.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "level", "source", "msg"] {
            assert!(value[key].is_string(), "{key} in {line}");
        }
    }
}

#[test]
fn version_and_build_info_say_what_was_built() {
    let output = run_exporter_ok(&["--version"]);
    let version = String::from_utf8_lossy(&output.stdout);
    for part in [
        "harvest-exporter 0.",
        "revision ",
        "build date: ",
        "rustc: 1.",
    ] {
        assert!(version.contains(part), "{part:?} in {version}");
    }
    let redis = Redis::start();
    let exporter = Exporter::start(&redis, &[]);
    let body = exporter.metrics();
    let line = body
        .lines()
        .find(|l| l.starts_with("quantum_harvest_exporter_build_info{"))
        .expect("build_info");
    for label in [
        "version=\"",
        "revision=\"",
        "build_date=\"",
        "rustc_version=\"1.",
    ] {
        assert!(line.contains(label), "{label} in {line}");
    }
    let revision = version
        .split("revision ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap();
    assert!(
        line.contains(&format!("revision=\"{revision}\"")),
        "{line} vs {version}"
    );
}

/// A build from a release tarball has no `.git`: the build script must still succeed and say
/// `unknown` rather than fail or pick up another repository's revision. The script cargo
/// compiled for this build is run in an empty directory outside any repository.
#[test]
fn a_build_without_git_records_an_unknown_revision() {
    let build_dir = std::path::Path::new(exporter_bin())
        .parent()
        .unwrap()
        .join("build");
    let script = std::fs::read_dir(&build_dir)
        .expect("target/<profile>/build")
        .filter_map(|entry| Some(entry.ok()?.path().join("build-script-build")))
        .filter(|path| {
            path.parent()
                .and_then(|p| p.file_name())
                .is_some_and(|name| name.to_string_lossy().starts_with("harvest-exporter-"))
                && path.exists()
        })
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
        .expect("the exporter's compiled build script");
    let tarball = TempDir::new("tarball");
    let output = Command::new(&script)
        .current_dir(&tarball.0)
        // Outside any repository even if the temporary directory is inside one.
        .env("GIT_CEILING_DIRECTORIES", &tarball.0)
        .env("GIT_DIR", tarball.0.join(".git"))
        .env("TARGET", "x86_64-unknown-linux-gnu")
        .env("SOURCE_DATE_EPOCH", "1769130500")
        .output()
        .expect("run the build script");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "cargo:rustc-env=HARVEST_REVISION=unknown",
        "cargo:rustc-env=HARVEST_BRANCH=unknown",
        "cargo:rustc-env=HARVEST_BUILD_DATE=2026-01-23T01:08:20Z",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
}

//! HTTPS, basic auth and mutual TLS from a `--web.config.file` in the Prometheus exporters'
//! shared format, checked with curl as a real HTTPS client.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs curl against the exporter and returns (HTTP status, body); status 0 when no response.
fn curl(port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn https_and_basic_auth_from_a_node_exporter_style_file() {
    let redis = Redis::start();
    seed_example(&redis);
    let certs = Certs::new();
    let hash = bcrypt::hash("scrape-pw", 10).unwrap();
    // Relative paths resolve against the file's own directory, as in the shared format.
    let web = certs.dir.0.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: default-src 'self'\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let web = web.to_string_lossy().into_owned();
    let url = redis.url();
    let exporter = Exporter::start_listening(
        &["--redis.addr", &url, "--web.config.file", &web],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let ca = certs.ca.to_string_lossy().into_owned();

    let (status, _) = curl(exporter.port, "/metrics", &["--cacert", &ca]);
    assert_eq!(status, 401, "no credentials");
    let (status, _) = curl(
        exporter.port,
        "/metrics",
        &["--cacert", &ca, "-u", "prometheus:wrong"],
    );
    assert_eq!(status, 401, "wrong password");
    let (status, _) = curl(
        exporter.port,
        "/health",
        &["--cacert", &ca, "-u", "nobody:scrape-pw"],
    );
    assert_eq!(status, 401, "unknown user, every path protected");
    let body = wait_for("metrics over HTTPS", Duration::from_secs(10), || {
        let (status, body) = curl(
            exporter.port,
            "/metrics",
            &["--cacert", &ca, "-u", "prometheus:scrape-pw"],
        );
        (status == 200 && body.contains("quantum_harvest_kill_score{symbol=\"ETHUSDT\"} 0.753"))
            .then_some(body)
    });
    promtool_check_metrics(&body);
    let headers = |path: &str| {
        let output = Command::new("curl")
            .args([
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "--cacert",
                &ca,
                "-u",
                "prometheus:scrape-pw",
            ])
            .arg(format!("https://127.0.0.1:{}{path}", exporter.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_lowercase()
    };
    let health = headers("/health");
    assert!(health.contains("x-frame-options: deny"), "{health}");
    assert!(
        health.contains("content-security-policy: default-src 'self'\r\n"),
        "{health}"
    );
    // The page's own policy is written for its inline script and styles, and stays.
    let page = headers("/");
    assert!(page.contains("x-frame-options: deny"), "{page}");
    assert_eq!(
        page.matches("content-security-policy:").count(),
        1,
        "{page}"
    );
    assert!(
        page.contains("content-security-policy: default-src 'none'; script-src"),
        "{page}"
    );
    assert!(
        http_get(exporter.port, "/metrics", &[]).map_or(true, |r| r.status != 200),
        "no plain HTTP on the TLS port"
    );
    let (status, _) = curl(exporter.port, "/metrics", &["-u", "prometheus:scrape-pw"]);
    assert_eq!(
        status, 0,
        "an untrusted certificate is refused by a verifying client"
    );
    report(
        "HTTPS and basic auth (--web.config.file)",
        "node_exporter-style web config: TLS with relative cert paths, one bcrypt user, a custom header",
        "401 without, with wrong and with unknown credentials on every path; 200 and valid metrics with the right ones; no plain HTTP on the TLS port",
        "bcrypt cost 10, checked once then remembered",
    );
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let redis = Redis::start();
    seed_example(&redis);
    let certs = Certs::new();
    let (web, url) = (certs.web_config_requiring_client_certs(), redis.url());
    let exporter =
        Exporter::start_listening(&["--redis.addr", &url, "--web.config.file", &web], &[]);
    let (ca, cert, key) = (
        certs.ca.to_string_lossy().into_owned(),
        certs.client_cert.to_string_lossy().into_owned(),
        certs.client_key.to_string_lossy().into_owned(),
    );
    let (status, _) = curl(exporter.port, "/health", &["--cacert", &ca]);
    assert_eq!(status, 0, "no client certificate, no connection");
    let (status, body) = curl(
        exporter.port,
        "/health",
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
    );
    assert_eq!((status, body.as_str()), (200, "OK"));
    report(
        "Mutual TLS",
        "client_auth_type RequireAndVerifyClientCert with a client CA",
        "refused clients without a certificate at the handshake; served those with one from the CA",
        "handshakes refused without a certificate: 1 of 1",
    );
}

#[test]
fn a_bad_web_config_stops_start_up_naming_it() {
    let dir = TempDir::new("webconfig");
    for (text, expected) in [
        ("basic_auth_user:\n  a: b\n", "unknown field"),
        (
            "basic_auth_users:\n  alice: not-a-hash\n",
            "not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "cannot read",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "not supported",
        ),
        ("- just\n- a list\n", "web.yml"),
        (
            "http_server_config:\n  headers:\n    Content-Type: text/html\n",
            // The log line is logfmt, which escapes the quotes around the header name.
            "http_server_config.headers: HTTP header \\\"Content-Type\\\" can not be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow-from https://example.com\n",
            "invalid value for X-Frame-Options",
        ),
    ] {
        let path = dir.0.join("web.yml");
        std::fs::write(&path, text).unwrap();
        let output = run_exporter(
            &[
                "--web.config.file",
                &path.to_string_lossy(),
                "--web.listen-port",
                "1",
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{text}: {stderr}");
        assert!(
            stderr.contains("--web.config.file") && stderr.contains(expected),
            "{text}: {stderr}"
        );
    }
}

/// `systemctl reload` (ExecReload) and any stray `kill -HUP`: the exporter keeps running,
/// re-reads the file, puts new users and certificates in force, and keeps the previous
/// configuration serving when the new file does not load.
#[test]
fn sighup_reloads_the_web_config_and_keeps_the_old_one_on_error() {
    let redis = Redis::start();
    seed_example(&redis);
    let (first, second) = (Certs::new(), Certs::new());
    let web = first.dir.0.join("web.yml");
    let users = |user: &str, password: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  {user}: {}\n",
            bcrypt::hash(password, 4).unwrap()
        )
    };
    std::fs::write(&web, users("alice", "first-pw")).unwrap();
    let (web_path, url) = (web.to_string_lossy().into_owned(), redis.url());
    let mut exporter = Exporter::start_listening(
        &["--redis.addr", &url, "--web.config.file", &web_path],
        &[("POLL_INTERVAL_SEC", "0.2")],
    );
    let (ca1, ca2) = (
        first.ca.to_string_lossy().into_owned(),
        second.ca.to_string_lossy().into_owned(),
    );
    let port = exporter.port;
    let reload_gauge = |ca: &str, credentials: &str| {
        let (status, body) = curl(port, "/metrics", &["--cacert", ca, "-u", credentials]);
        assert_eq!(status, 200, "{credentials}");
        sample(
            &body,
            "quantum_harvest_exporter_config_last_reload_successful",
        )
    };
    assert_eq!(reload_gauge(&ca1, "alice:first-pw"), Some(1.0));
    // Wait until the log shows the reload: the signal is handled asynchronously.
    let reloads = |exporter: &Exporter, n: usize| {
        wait_for("the reload in the log", Duration::from_secs(10), || {
            let log = exporter.log_text();
            (log.matches("SIGHUP:").count() >= n).then_some(log)
        })
    };

    // A file that no longer loads: still running, still serving alice, gauge 0.
    std::fs::write(&web, "basic_auth_users:\n  alice: not-a-hash\n").unwrap();
    exporter.signal("HUP");
    let log = reloads(&exporter, 1);
    assert!(log.contains("not a bcrypt hash"), "{log}");
    assert!(exporter.running(), "SIGHUP ended the exporter");
    assert_eq!(reload_gauge(&ca1, "alice:first-pw"), Some(0.0));

    // A new user and a new certificate: both in force after the next SIGHUP.
    for name in ["server.crt", "server.key"] {
        std::fs::copy(second.dir.0.join(name), first.dir.0.join(name)).unwrap();
    }
    std::fs::write(&web, users("bob", "second-pw")).unwrap();
    exporter.signal("HUP");
    reloads(&exporter, 2);
    assert_eq!(reload_gauge(&ca2, "bob:second-pw"), Some(1.0));
    let (status, _) = curl(
        exporter.port,
        "/metrics",
        &["--cacert", &ca2, "-u", "alice:first-pw"],
    );
    assert_eq!(status, 401, "the old user is gone");
    let (status, _) = curl(
        exporter.port,
        "/health",
        &["--cacert", &ca1, "-u", "bob:second-pw"],
    );
    assert_eq!(status, 0, "the old certificate is no longer served");
    assert!(exporter.running());
    report(
        "Reload on SIGHUP",
        "SIGHUP with a broken web config file, then with a new user and a new certificate",
        "kept running both times; the broken file left the old users serving (reload gauge 0); the next reload put the new user and certificate in force (gauge 1)",
        "reloads: 2, exits: 0",
    );
}

/// Without a web configuration file SIGHUP has nothing to reload, and must not end the process.
#[test]
fn sighup_without_a_web_config_keeps_the_exporter_running() {
    let redis = Redis::start();
    seed_example(&redis);
    let mut exporter = Exporter::start(&redis, &[]);
    // One at a time: signals sent together may be delivered as one.
    for n in 1..=3 {
        exporter.signal("HUP");
        wait_for("the reload in the log", Duration::from_secs(10), || {
            (exporter.log_text().matches("SIGHUP:").count() >= n).then_some(())
        });
    }
    assert!(exporter.running(), "SIGHUP ended the exporter");
    let body = exporter.metrics();
    assert_eq!(
        sample(
            &body,
            "quantum_harvest_exporter_config_last_reload_successful"
        ),
        Some(1.0)
    );
}

/// A renewed certificate on disk is served from the next handshake, without a reload, as
/// exporter-toolkit does; a half-written one leaves the previous certificate serving.
#[test]
fn a_certificate_renewed_on_disk_is_served_without_a_reload() {
    let redis = Redis::start();
    seed_example(&redis);
    let (first, second) = (Certs::new(), Certs::new());
    let web = first.dir.0.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let (web_path, url) = (web.to_string_lossy().into_owned(), redis.url());
    let exporter =
        Exporter::start_listening(&["--redis.addr", &url, "--web.config.file", &web_path], &[]);
    let (ca1, ca2) = (
        first.ca.to_string_lossy().into_owned(),
        second.ca.to_string_lossy().into_owned(),
    );
    assert_eq!(curl(exporter.port, "/health", &["--cacert", &ca1]).0, 200);

    for name in ["server.crt", "server.key"] {
        std::fs::copy(second.dir.0.join(name), first.dir.0.join(name)).unwrap();
    }
    assert_eq!(curl(exporter.port, "/health", &["--cacert", &ca2]).0, 200);
    assert_eq!(
        curl(exporter.port, "/health", &["--cacert", &ca1]).0,
        0,
        "the old certificate is no longer served"
    );

    std::fs::write(
        first.dir.0.join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nhalf",
    )
    .unwrap();
    assert_eq!(
        curl(exporter.port, "/health", &["--cacert", &ca2]).0,
        200,
        "a file that does not load leaves the one in force"
    );
    assert!(exporter.log_text().contains("does not load"));
    report(
        "Certificate renewed on disk",
        "the server's certificate and key replaced on disk, then the certificate half written",
        "the new certificate served from the next handshake without SIGHUP; the half-written one ignored, the previous one kept",
        "reloads needed: 0",
    );
}

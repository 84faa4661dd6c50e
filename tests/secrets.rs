//! The Redis password, from any of its sources, never appears in what the exporter shows: the
//! help, the errors, the log at trace level, `status`, the JSON API, the metrics and the page.

mod common;

use common::*;

const PASSWORD: &str = "s3cr3t-HARVEST-pw";

/// Flags and environment of one run of the exporter.
type Invocation<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password is shown in {what}:\n{text}"
    );
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_redis_password_is_never_shown() {
    let url_with_password = format!("redis://:{PASSWORD}@127.0.0.1:6379/0");
    let every_source = [
        ("REDIS_URL", url_with_password.as_str()),
        ("REDIS_PASSWORD", PASSWORD),
        ("REDIS_SENTINEL_PASSWORD", PASSWORD),
    ];
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["simulate", "--help"],
    ] {
        let output = run_exporter(args, &every_source);
        assert!(output.status.success());
        assert_hidden(&format!("{args:?}"), &output_text(&output));
    }

    // A URL that does not parse is shown masked, from the environment or the command line.
    let unparseable = format!("redis://:{PASSWORD}@127.0.0.1:notaport/0");
    for output in [
        run_exporter(&[], &[("REDIS_URL", &unparseable)]),
        run_exporter(&["--redis.addr", &unparseable], &[]),
        run_exporter(&[&format!("--redis.addr=http://:{PASSWORD}@host")], &[]),
        run_exporter(&[&format!("--redis.adr={unparseable}")], &[]),
        // redis_exporter's name for the address, refused and in conflict.
        run_exporter(&[], &[("REDIS_ADDR", &unparseable)]),
        run_exporter(
            &[],
            &[
                ("REDIS_ADDR", "127.0.0.1:6380"),
                ("REDIS_URL", &url_with_password),
            ],
        ),
    ] {
        let text = output_text(&output);
        assert_eq!(output.status.code(), Some(2), "{text}");
        assert_hidden("a refused URL", &text);
    }
    let output = run_exporter(&[], &[("REDIS_URL", &unparseable)]);
    let text = output_text(&output);
    assert!(
        text.contains("redis://:***@127.0.0.1:notaport/0") && text.contains("REDIS_URL"),
        "{text}"
    );

    // A real Redis refuses the password: every source of it, logged at trace level.
    let redis = Redis::start_with(&["--requirepass", "the-right-one"]);
    let wrong_url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let plain_url = redis.url();
    let dir = TempDir::new("secrets");
    let password_file = dir.0.join("redis.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let password_file = password_file.to_string_lossy().into_owned();
    let sources: [Invocation; 3] = [
        (&[], &[("REDIS_URL", wrong_url.as_str())]),
        (
            &["--redis.addr", &plain_url],
            &[("REDIS_PASSWORD", PASSWORD)],
        ),
        (
            &[
                "--redis.addr",
                &plain_url,
                "--redis.password-file",
                &password_file,
            ],
            &[],
        ),
    ];
    for (format, (args, env)) in ["logfmt", "json", "logfmt"].into_iter().zip(sources) {
        let mut env = env.to_vec();
        env.extend([
            ("LOG_LEVEL", "trace"),
            ("LOG_FORMAT", format),
            ("POLL_INTERVAL_SEC", "200ms"),
        ]);
        let exporter = Exporter::start_raw(args, &env);
        let metrics = exporter.wait_refused();
        assert_hidden("/metrics", &metrics);
        for path in ["/ready", "/health", "/", "/api/v1/proposals"] {
            assert_hidden(path, &exporter.get(path).text());
        }
        let from = format!("http://127.0.0.1:{}", exporter.port);
        for json in [false, true] {
            let mut status_args = vec!["status", "--from", &from];
            status_args.extend(json.then_some("--json"));
            assert_hidden(
                "status --from",
                &output_text(&run_exporter(&status_args, &[])),
            );
        }
        // status reading Redis itself, with the same settings.
        let mut status_args = args.to_vec();
        status_args.push("status");
        let status = run_exporter(&status_args, &env);
        assert_eq!(status.status.code(), Some(2), "{}", output_text(&status));
        assert_hidden("status", &output_text(&status));
        let log = exporter.log_text();
        assert!(log.contains("authentication failed"), "{log}");
        assert_hidden("the log", &log);
    }

    // The sentinels' own password, refused by a server that requires another.
    let sentinel = format!("127.0.0.1:{}", redis.port);
    let status = run_exporter(
        &["status"],
        &[
            ("REDIS_SENTINELS", sentinel.as_str()),
            ("REDIS_SENTINEL_PASSWORD", PASSWORD),
            ("LOG_LEVEL", "trace"),
        ],
    );
    assert_eq!(status.status.code(), Some(2), "{}", output_text(&status));
    assert_hidden("status through sentinels", &output_text(&status));
}

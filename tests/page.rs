//! The page at / and /api/v1/proposals over HTTP against a real redis-server: headers, escaping,
//! the JSON document, and no Redis command per request. The page in a browser is
//! `tests/browser.rs`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn page_and_json_come_from_the_cache_with_safe_headers() {
    let redis = Redis::start();
    seed_example(&redis);
    redis.hset("<script>alert(1)</script>", &[("kill_score", "0.99")]);
    // One refresh at start-up, then none for an hour: every request below is served from it.
    let exporter = Exporter::start(&redis, &["--harvest.poll-interval", "3600"]);
    exporter.wait_metrics("the first refresh", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(4.0)
    });
    let hmget = command_calls(&mut redis.connection(), "hmget");
    assert!(hmget >= 4, "the refresh read every hash");

    for _ in 0..20 {
        exporter.get("/");
        exporter.get("/api/v1/proposals");
    }
    assert_eq!(
        command_calls(&mut redis.connection(), "hmget"),
        hmget,
        "no Redis read per request"
    );

    let page = exporter.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none';") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text();
    assert!(html.contains(
        "<a class=\"name\" href=\"/symbol/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\">&lt;script&gt;alert(1)&lt;/script&gt;</a>"
    ));
    assert_eq!(html.matches("<script").count(), 2, "only the page's own");
    assert!(html.contains("<span id=\"count\">4 symbols</span>"));
    assert!(
        html.len() < 32 * 1024,
        "small enough to load at once: {}",
        html.len()
    );

    let api = exporter.get("/api/v1/proposals");
    assert_eq!(api.status, 200);
    assert_eq!(api.header("content-type"), Some("application/json"));
    assert_eq!(api.header("cache-control"), Some("no-store"));
    let view: Value = serde_json::from_str(&api.text()).unwrap();
    let proposals = view["proposals"].as_array().unwrap();
    assert_eq!(proposals[0]["symbol"], "<script>alert(1)</script>");
    assert_eq!(proposals[1]["symbol"], "SOLUSDT");
    assert_eq!(proposals[1]["r_net"], 4.0, "the legacy r_net");
    assert_eq!(view["poll_interval_seconds"], 3600.0);
    assert_eq!(view["redis_up"], true);
    assert_eq!(view["missing"], serde_json::json!([]));

    let head = http_request(
        exporter.port,
        b"HEAD /api/v1/proposals HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn json_tells_when_redis_is_down() {
    let mut redis = Redis::start();
    seed_example(&redis);
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("the first refresh", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_redis_up") == Some(1.0)
    });
    redis.kill();
    let view: Value = wait_for("redis_up false", WAIT, || {
        let view: Value = serde_json::from_str(&exporter.get("/api/v1/proposals").text()).unwrap();
        (view["redis_up"] == false).then_some(view)
    });
    assert!(
        view["redis_error"].as_str().unwrap().contains("127.0.0.1:"),
        "the cause is given: {view}"
    );
    assert_eq!(
        view["proposals"].as_array().unwrap().len(),
        3,
        "the last values are kept"
    );
    let html = exporter.get("/").text();
    assert!(
        html.contains("<span id=\"redis\" class=\"down\">Redis down: "),
        "{html}"
    );
}

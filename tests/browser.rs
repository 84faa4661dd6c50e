//! The page at / in a real headless Chromium over the simulator's data in a real redis-server:
//! rows, colours, links and hostile symbols checked through the DOM with JavaScript off (the
//! server's rendering) and on (the script's), a change in Redis shown without a reload, and
//! screenshots at phone and desktop widths saved under artifacts/; then the rows' sparklines and
//! a symbol's page, reached by its link, at both widths. Chromium is driven over the DevTools
//! protocol through a pipe, so there is no debugging port and no WebSocket client.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde::Deserialize;
use serde_json::{Value, json};

// Generous: Chromium can take seconds to start on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(30);
const SCRIPT_SYMBOL: &str = "<script>pwned=1</script>";
const IMG_SYMBOL: &str = "<img src=x onerror=pwned=2>";
/// Every character a link must encode that `encodeURIComponent` leaves alone, and the path's own.
const LINK_SYMBOL: &str = "<script>pwned=3</script> it's (1*)!/?#%\u{fc}";
const SIMULATED: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];

/// Flags for a quiet, loopback-only browser: without the background-networking ones Chromium
/// keeps trying to reach Google on a machine that has no route there.
const FLAGS: [&str; 15] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
];

/// A headless Chromium with one page, killed with its whole process group on drop.
struct Browser {
    child: Child,
    commands: ChildStdin,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    log: PathBuf,
    _profile: TempDir,
}

impl Browser {
    fn start() -> Browser {
        let installed = Command::new("sh")
            .args(["-c", "command -v chromium"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "chromium is not installed: run scripts/test, which installs it"
        );
        let profile = TempDir::new("chromium");
        let log = profile.0.join("chromium.log");
        let mut child = Command::new("sh")
            // With --remote-debugging-pipe, Chromium reads commands from fd 3 and answers on fd 4.
            .args([
                "-c",
                r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#,
                "chromium",
            ])
            .args(FLAGS)
            .arg(format!(
                "--user-data-dir={}",
                profile.0.join("data").display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("chromium log"))
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut message = Vec::new();
            while output.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            replies,
            next_id: 0,
            session: None,
            log,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        browser
    }

    /// Sends one command to the page (or to the browser before a page is attached) and waits for
    /// its reply; events in between are dropped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{method}: chromium is gone ({e}): {}", self.log_text()));
        loop {
            let reply = self
                .replies
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("no reply to {method} ({e}): {}", self.log_text()));
            if reply["id"] != json!(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("{method} failed: {error}");
            }
            return reply["result"].clone();
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(exception) = reply.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        reply["result"]["value"].clone()
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        let loaded = format!(
            "document.readyState === 'complete' && location.href === {}",
            json!(url)
        );
        wait_for("the page to load", WAIT, || {
            (self.eval(&loaded) == json!(true)).then_some(())
        });
    }

    fn viewport(&mut self, width: u32, height: u32, scale: f64, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        );
    }

    /// A PNG of what the viewport shows.
    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64_decode(shot["data"].as_str().unwrap())
    }

    fn page(&mut self) -> PageState {
        serde_json::from_value(self.eval(READ_PAGE)).expect("the page's state")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The renderer and helper processes share the browser's process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test reads from the DOM.
const READ_PAGE: &str = r##"(() => {
  const text = (node, selector) => node.querySelector(selector)?.textContent ?? null;
  const pill = (node, selector) => {
    const element = node.querySelector(selector);
    return { text: element.textContent, class: element.className, background: getComputedStyle(element).backgroundColor };
  };
  return {
    rows: [...document.querySelectorAll("#rows tr:not(.none)")].map((tr) => ({
      symbol: tr.dataset.symbol,
      name: text(tr, ".name"),
      href: tr.querySelector(".name").getAttribute("href"),
      stale: tr.classList.contains("stale"),
      kill: pill(tr, ".kill .pill"),
      r_net: pill(tr, ".rnet .pill"),
      segments: tr.querySelectorAll(".bar i").length,
      new_sl: text(tr, ".sl"),
      action: text(tr, ".act"),
      age: text(tr, ".age"),
      filter: getComputedStyle(tr.querySelector(".kill")).filter,
    })),
    redis: text(document, "#redis"),
    count: text(document, "#count"),
    version: text(document, "#version"),
    links: [...document.querySelectorAll("nav a")].map((a) => a.getAttribute("href")),
    scripts: document.scripts.length,
    pwned: typeof window.pwned,
    polls: Number(document.getElementById("live").dataset.polls ?? 0),
    // Parsed as elements only when scripting is off.
    noscript: document.querySelector("noscript p") !== null,
    width: document.documentElement.scrollWidth,
  };
})()"##;

#[derive(Debug, Deserialize)]
struct PageState {
    rows: Vec<RowState>,
    redis: String,
    count: String,
    version: String,
    links: Vec<String>,
    scripts: u32,
    pwned: String,
    polls: u32,
    noscript: bool,
    width: u32,
}

#[derive(Debug, Deserialize)]
struct RowState {
    symbol: String,
    name: String,
    href: String,
    stale: bool,
    kill: Pill,
    r_net: Pill,
    segments: u32,
    new_sl: String,
    action: String,
    age: String,
    filter: String,
}

#[derive(Debug, Deserialize)]
struct Pill {
    text: String,
    class: String,
    background: String,
}

impl PageState {
    fn row(&self, symbol: &str) -> &RowState {
        self.rows
            .iter()
            .find(|r| r.symbol == symbol)
            .unwrap_or_else(|| panic!("no row for {symbol}: {self:#?}"))
    }
}

/// The checks that hold for the page whoever rendered it, the server or the script.
fn check_page(page: &PageState, symbols: usize) {
    assert_eq!(page.rows.len(), symbols, "{page:#?}");
    assert_eq!(page.count, format!("{symbols} symbols"));
    assert_eq!(page.redis, "Redis up");
    assert_eq!(
        page.version,
        format!("harvest-exporter {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(page.links, ["/metrics", "/health", "/ready"]);

    let kills: Vec<f64> = page
        .rows
        .iter()
        .map(|r| r.kill.text.parse().unwrap())
        .collect();
    assert!(
        kills.is_sorted_by(|a, b| a >= b),
        "highest kill score first: {kills:?}"
    );
    for row in &page.rows {
        let kill: f64 = row.kill.text.parse().unwrap();
        let (class, colour) = match kill {
            k if k >= 0.8 => ("pill k-crit", "rgb(115, 13, 13)"),
            k if k >= 0.6 => ("pill k-high", "rgb(211, 48, 44)"),
            _ => ("pill k-low", "rgb(29, 122, 53)"),
        };
        assert_eq!(
            (row.kill.class.as_str(), row.kill.background.as_str()),
            (class, colour),
            "{row:?}"
        );
        let r_net: f64 = row.r_net.text.parse().unwrap();
        let (class, colour) = match r_net {
            r if r >= 7.0 => ("pill r-good", "rgb(29, 122, 53)"),
            r if r >= 3.0 => ("pill r-fair", "rgb(240, 197, 63)"),
            _ => ("pill r-poor", "rgb(211, 48, 44)"),
        };
        assert_eq!(
            (row.r_net.class.as_str(), row.r_net.background.as_str()),
            (class, colour),
            "{row:?}"
        );
        assert_eq!(row.segments, 4, "a stacked bar of the four components");
        assert_eq!(row.name, row.symbol, "{row:?}");
    }
    check_links(page);

    for symbol in SIMULATED {
        let row = page.row(symbol);
        assert!(!row.stale, "{row:?}");
        assert!(
            row.age.ends_with('s') && !row.age.contains("stale"),
            "{row:?}"
        );
        assert_eq!(row.filter, "none");
        assert!(
            row.action.contains("calibrated"),
            "heat gate shown: {row:?}"
        );
    }
    let stale = page.row("DOGEUSDT");
    assert!(stale.stale);
    assert!(
        stale.age.ends_with("stale") && stale.age.contains("m "),
        "{stale:?}"
    );
    assert!(stale.filter.contains("grayscale"), "{stale:?}");
    assert_eq!(stale.new_sl, "", "no stop loss proposed is blank");
    assert_eq!(stale.action, "NONE");

    assert_eq!(page.scripts, 2, "only the page's own scripts");
    assert_eq!(page.pwned, "undefined", "no value ran as code");
}

/// One round of the simulator's proposals for [`SIMULATED`], with the heat gate's verdicts.
fn simulate_once(redis: &Redis) {
    run_exporter_ok(&[
        "--redis.addr",
        &redis.url(),
        "simulate",
        "--rounds",
        "1",
        "--seed",
        "7",
        "--heat-gate",
        "--symbols",
        &SIMULATED.join(","),
    ]);
}

#[test]
fn the_page_in_a_real_browser() {
    let redis = Redis::start();
    simulate_once(&redis);
    let now = unix_epoch();
    for (symbol, kill) in [(SCRIPT_SYMBOL, "0.85"), (IMG_SYMBOL, "0.55")] {
        redis.hset(
            symbol,
            &[
                ("kill_score", kill),
                ("R_net", "1.5"),
                ("harvest_action", "NONE"),
                ("last_update_epoch", &now.to_string()),
            ],
        );
    }
    let five_minutes_ago = (now - 300).to_string();
    redis.hset(
        "DOGEUSDT",
        &[
            ("harvest_action", "NONE"),
            ("kill_score", "0.58"),
            ("k_regime_flip", "0"),
            ("k_sigma_spike", "0.3"),
            ("k_ts_drop", "0.1"),
            ("k_age_penalty", "0.4"),
            ("R_net", "3.4"),
            ("new_sl_proposed", "None"),
            ("last_update_epoch", &five_minutes_ago),
        ],
    );
    let exporter = Exporter::start(&redis, &[]);
    exporter.wait_metrics("seven symbols", WAIT, |b| {
        sample(b, "quantum_harvest_exporter_symbols_exported") == Some(7.0)
    });
    let url = format!("http://127.0.0.1:{}/", exporter.port);
    let mut browser = Browser::start();
    browser.viewport(1280, 800, 1.0, false);

    // JavaScript off: what the server rendered.
    browser.call(
        "Emulation.setScriptExecutionDisabled",
        json!({ "value": true }),
    );
    browser.navigate(&url);
    let page = browser.page();
    check_page(&page, 7);
    assert!(page.noscript, "scripting is off");
    assert_eq!(page.polls, 0);
    assert_eq!(page.row(SCRIPT_SYMBOL).name, SCRIPT_SYMBOL);
    assert_eq!(page.row(IMG_SYMBOL).name, IMG_SYMBOL);

    // JavaScript on: the same page redrawn by its script from /api/v1/proposals.
    browser.call(
        "Emulation.setScriptExecutionDisabled",
        json!({ "value": false }),
    );
    browser.navigate(&url);
    let page = wait_for("the script's first update", WAIT, || {
        let page = browser.page();
        (page.polls >= 1).then_some(page)
    });
    check_page(&page, 7);
    assert!(!page.noscript, "scripting is on");
    assert_eq!(page.row(SCRIPT_SYMBOL).name, SCRIPT_SYMBOL);
    assert_eq!(page.row(IMG_SYMBOL).name, IMG_SYMBOL);

    // A change in Redis shows up in place: the page is not reloaded.
    browser.eval("window.loadedOnce = 'yes'");
    redis.hset(
        "ETHUSDT",
        &[
            ("kill_score", "0.97"),
            ("k_regime_flip", "1.0"),
            ("harvest_action", "FULL_CLOSE_PROPOSED"),
            ("action", "FULL_CLOSE"),
            ("last_update_epoch", &unix_epoch().to_string()),
        ],
    );
    let page = wait_for("ETHUSDT at 0.970 on top", WAIT, || {
        let page = browser.page();
        (page.rows.first().map(|r| r.kill.text.as_str()) == Some("0.970")).then_some(page)
    });
    let eth = page.row("ETHUSDT");
    assert_eq!(eth.kill.class, "pill k-crit");
    // The action, the heat gate's verdict, then what the simulated apply layer did with it.
    let (action, apply) = eth
        .action
        .split_once("plan ")
        .unwrap_or_else(|| panic!("no apply note: {:?}", eth.action));
    assert_eq!(
        action,
        "FULL_CLOSE_PROPOSED\u{2192} FULL_CLOSE (calibrated)"
    );
    // The newest plan's decision, then its outcome (and its repeats, if any came yet).
    let parts: Vec<&str> = apply.split(" \u{b7} ").collect();
    assert!(
        ["EXECUTE", "SKIP", "BLOCKED", "ERROR"].contains(&parts[0]) && parts.len() >= 2,
        "{apply}"
    );
    assert_eq!(browser.eval("window.loadedOnce"), json!("yes"), "no reload");
    check_page(&page, 7);
    // A later cycle repeats ETHUSDT's plan: the script counts the repeat beside the outcome.
    let plans: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(PLAN_STREAM)
        .arg("-")
        .arg("+")
        .query(&mut redis.connection())
        .expect("XRANGE");
    let plan_id = plans
        .iter()
        .map(|(_, fields)| fields)
        .filter(|fields| fields.contains(&("symbol".into(), "ETHUSDT".into())))
        .find_map(|fields| fields.iter().find(|(k, _)| k == "plan_id"))
        .map(|(_, id)| id.clone())
        .expect("a plan for ETHUSDT");
    xadd(
        &redis,
        RESULT_STREAM,
        &[
            ("plan_id", &plan_id),
            ("symbol", "ETHUSDT"),
            ("decision", "SKIP"),
            ("executed", "False"),
            ("error", "duplicate_plan"),
        ],
    );
    let repeated = wait_for("the repeat on the page", WAIT, || {
        let action = browser.page().row("ETHUSDT").action.clone();
        action.ends_with(" \u{b7} 1 repeat").then_some(action)
    });
    assert!(
        repeated.contains(&format!("plan {}", parts[0])),
        "{repeated}"
    );
    assert_eq!(browser.eval("window.loadedOnce"), json!("yes"), "no reload");
    // The latest plans and results, kept live by the script as by the server.
    let recent = browser.eval("document.querySelectorAll('#recent li:not(.none)').length");
    assert!(
        recent.as_u64().unwrap_or(0) > 0,
        "no recent plans or results"
    );
    assert_eq!(
        browser.eval("document.getElementById('following').className"),
        json!("up")
    );

    // Symbols that go away leave the page too; what remains is what the screenshots show.
    redis.run(&["DEL", &format!("{PREFIX}{SCRIPT_SYMBOL}")]);
    redis.run(&["DEL", &format!("{PREFIX}{IMG_SYMBOL}")]);
    wait_for("the hostile rows to go", WAIT, || {
        (browser.page().rows.len() == 5).then_some(())
    });
    assert_eq!(browser.eval("window.loadedOnce"), json!("yes"), "no reload");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // The phone as its screen shows the page; the desktop down to the end of the page.
    for (name, width, scale, mobile) in [("phone", 390, 2.0, true), ("desktop", 1280, 1.0, false)] {
        browser.viewport(width, 844, scale, mobile);
        let page = browser.page();
        assert!(
            page.width <= width,
            "{name}: {} px of content in a {width} px viewport",
            page.width
        );
        if !mobile {
            let height = browser.eval("Math.ceil(document.body.getBoundingClientRect().bottom)");
            browser.viewport(width, height.as_u64().unwrap() as u32, scale, mobile);
        }
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        assert!(
            png.len() < 300 * 1024,
            "{name}: {} bytes is too large",
            png.len()
        );
        std::fs::write(artifacts.join(format!("page-{name}.png")), png).unwrap();
    }
}

/// The path of a symbol's page as the page links to it: all but ASCII letters, digits and `-_.~`
/// percent-encoded.
fn symbol_path(symbol: &str) -> String {
    let mut path = String::from("/symbol/");
    for byte in symbol.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// What the test reads from a symbol's page.
const READ_SYMBOL_PAGE: &str = r##"(() => ({
  name: document.querySelector("h1 .name")?.textContent ?? null,
  kill_paths: [...document.querySelectorAll("#kill-chart path")].map((p) => p.getAttribute("d")),
  thresholds: document.querySelectorAll("#kill-chart line.th").length,
  component_paths: document.querySelectorAll("#components-chart path").length,
  events: document.querySelectorAll("#events li:not(.none)").length,
  plans: document.querySelectorAll("#plans tbody tr").length,
  plan_cells: [...document.querySelectorAll("#plans tbody tr:first-child td")].map((td) => td.textContent),
  scripts: document.scripts.length,
  pwned: typeof window.pwned,
  width: document.documentElement.scrollWidth,
}))()"##;

#[derive(Debug, Deserialize)]
struct SymbolPageState {
    name: Option<String>,
    kill_paths: Vec<String>,
    thresholds: u32,
    component_paths: u32,
    events: u32,
    plans: u32,
    plan_cells: Vec<String>,
    scripts: u32,
    pwned: String,
    width: u32,
}

/// Each row's sparkline once the exporter has history, and a symbol's page, reached by its
/// row's link, at phone and desktop widths: its charts, events and plans, no horizontal
/// scrolling, and a hostile symbol's page as text. Needs the history and the routes
/// `/symbol/{symbol}` and `/api/v1/proposals/{symbol}`.
#[test]
fn the_symbol_page_in_a_real_browser() {
    let redis = Redis::start();
    simulate_once(&redis);
    redis.hset(
        LINK_SYMBOL,
        &[
            ("kill_score", "0.85"),
            ("R_net", "1.5"),
            ("harvest_action", "NONE"),
            ("last_update_epoch", &unix_epoch().to_string()),
        ],
    );
    let exporter = Exporter::start(&redis, &[]);
    let trends = |exporter: &Exporter| -> Vec<usize> {
        let view: Value = serde_json::from_slice(&exporter.get("/api/v1/proposals").body)
            .expect("the view as JSON");
        view["proposals"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| row["kill_score_trend"].as_array().map_or(0, Vec::len))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("a trend for every symbol", WAIT, || {
        let trends = trends(&exporter);
        (trends.len() == 5 && trends.iter().all(|&n| n > 0)).then_some(())
    });
    // A change the history records: ETHUSDT's score rises and its action changes.
    redis.hset(
        "ETHUSDT",
        &[
            ("kill_score", "0.97"),
            ("k_regime_flip", "1.0"),
            ("harvest_action", "FULL_CLOSE_PROPOSED"),
            ("last_update_epoch", &unix_epoch().to_string()),
        ],
    );
    let url = format!("http://127.0.0.1:{}", exporter.port);
    let mut browser = Browser::start();
    browser.viewport(1280, 800, 1.0, false);

    // A sparkline in every row, drawn by the server (JavaScript off) and by the script.
    let sparklines = "[...document.querySelectorAll('#rows tr:not(.none)')].map((tr) => \
        [...tr.querySelectorAll('.kill svg.spark polyline')].map((p) => p.getAttribute('points')))";
    for scripting in [false, true] {
        browser.call(
            "Emulation.setScriptExecutionDisabled",
            json!({ "value": !scripting }),
        );
        browser.navigate(&format!("{url}/"));
        if scripting {
            wait_for("the script's first update", WAIT, || {
                (browser.page().polls >= 1).then_some(())
            });
        }
        let rows: Vec<Vec<String>> = serde_json::from_value(browser.eval(sparklines)).unwrap();
        assert_eq!(rows.len(), 5, "{rows:?}");
        for points in &rows {
            assert!(
                points.len() == 1 && !points[0].is_empty(),
                "one sparkline a row (scripting {scripting}): {rows:?}"
            );
        }
        check_links(&browser.page());
    }

    // The row's link leads to the symbol's page.
    browser.eval("document.querySelector('tr[data-symbol=\"ETHUSDT\"] a.name').click()");
    wait_for("the symbol's page", WAIT, || {
        let at = browser.eval("document.readyState === 'complete' && location.pathname");
        (at == json!("/symbol/ETHUSDT")).then_some(())
    });
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (name, width, scale, mobile) in [("phone", 390, 2.0, true), ("desktop", 1280, 1.0, false)] {
        browser.viewport(width, 844, scale, mobile);
        let page: SymbolPageState =
            serde_json::from_value(browser.eval(READ_SYMBOL_PAGE)).expect("the symbol page");
        assert_eq!(page.name.as_deref(), Some("ETHUSDT"), "{page:?}");
        assert!(
            page.width <= width,
            "{name}: {} px of content in a {width} px viewport",
            page.width
        );
        assert!(
            page.kill_paths.len() == 1 && page.kill_paths[0].starts_with('M'),
            "{page:?}"
        );
        assert_eq!(page.thresholds, 2, "{page:?}");
        assert_eq!(page.component_paths, 4, "{page:?}");
        assert!(page.events > 0, "{page:?}");
        assert!(page.plans > 0, "the simulated plan for ETHUSDT: {page:?}");
        assert_eq!(page.plan_cells.len(), 7, "{page:?}");
        assert_eq!(page.scripts, 0, "the page has no script: {page:?}");
        if !mobile {
            let height = browser.eval("Math.ceil(document.body.getBoundingClientRect().bottom)");
            browser.viewport(width, height.as_u64().unwrap() as u32, scale, mobile);
        }
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        std::fs::write(artifacts.join(format!("symbol-{name}.png")), png).unwrap();
    }

    // A hostile symbol's page shows it as text and runs nothing.
    browser.viewport(390, 844, 2.0, true);
    browser.navigate(&format!("{url}{}", symbol_path(LINK_SYMBOL)));
    let page: SymbolPageState =
        serde_json::from_value(browser.eval(READ_SYMBOL_PAGE)).expect("the symbol page");
    assert_eq!(page.name.as_deref(), Some(LINK_SYMBOL), "{page:?}");
    assert_eq!(page.pwned, "undefined");
    assert_eq!(page.scripts, 0);
    assert!(page.width <= 390, "{page:?}");
}

/// Every row links to its symbol's page.
fn check_links(page: &PageState) {
    for row in &page.rows {
        assert_eq!(row.href, symbol_path(&row.symbol), "{row:?}");
    }
}

/// Decodes standard base64, which DevTools uses for screenshots; a crate for it would be a
/// dependency for one test.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_every_padding() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}

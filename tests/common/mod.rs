//! Shared test fixtures: a private `redis-server` and the exporter binary, each on a free loopback
//! port and killed on drop, the seed's example (`seed`, which the unit tests read too), a minimal
//! HTTP/1.1 client, readers of a scrape's samples, the clock, and `promtool check metrics`. Every
//! wait is bounded, so a broken build fails fast instead of hanging.
#![allow(dead_code)]

pub mod exposition;
pub mod seed;
pub mod topology;

pub use seed::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const PREFIX: &str = "quantum:harvest:proposal:";
/// The apply layer's streams, as the exporter follows them by default.
pub const PLAN_STREAM: &str = "quantum:stream:apply.plan";
pub const RESULT_STREAM: &str = "quantum:stream:apply.result";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A fresh directory under the system temp dir, removed by [`TempDir`]'s drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("harvest-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test, naming the Debian package to install, when `tool` is not on the PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: apt-get install -y {package} (the test script installs it)"
    );
}

/// A private redis-server on a free port, with no persistence.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: TempDir,
    extra_args: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Redis {
        Redis::start_on(
            free_port(),
            extra_args.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Starts on a given port, e.g. one an exporter was already pointed at.
    pub fn start_on(port: u16, extra_args: Vec<String>) -> Redis {
        require_tool("redis-server", "redis-server");
        let dir = TempDir::new("redis");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir.0)
            .args(&extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis {
            port,
            child,
            dir,
            extra_args,
        };
        wait_for(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || {
                let mut connection = redis.try_connection()?;
                // A server that requires a password answers NOAUTH: it is up all the same.
                match redis::cmd("PING").query::<String>(&mut connection) {
                    Err(error) if error.is_io_error() => None,
                    _ => Some(()),
                }
            },
        );
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A redis-server that speaks only TLS, with a certificate signed by `certs`' CA.
    pub fn start_tls(certs: &Certs) -> Redis {
        Redis::start_tls_with(certs, false)
    }

    /// A redis-server that speaks only TLS and, with `auth_clients`, requires a client
    /// certificate signed by `certs`' CA (`tls-auth-clients yes`, Redis's own default).
    pub fn start_tls_with(certs: &Certs, auth_clients: bool) -> Redis {
        Redis::start_tls_server(certs, &certs.cert, &certs.key, auth_clients)
    }

    /// A TLS-only redis-server whose certificate names only [`Certs::SERVER_NAME`], not the
    /// address it is reached at.
    pub fn start_tls_named(certs: &Certs) -> Redis {
        Redis::start_tls_server(certs, &certs.named_cert, &certs.named_key, false)
    }

    fn start_tls_server(certs: &Certs, cert: &PathBuf, key: &PathBuf, auth_clients: bool) -> Redis {
        require_tool("redis-server", "redis-server");
        let port = free_port();
        let dir = TempDir::new("redis-tls");
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let extra_args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path(cert),
            "--tls-key-file",
            &path(key),
            "--tls-ca-cert-file",
            &path(&certs.ca),
            "--tls-auth-clients",
            if auth_clients { "yes" } else { "no" },
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .args(&extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server with TLS");
        wait_for(
            "redis-server to accept TLS connections",
            Duration::from_secs(10),
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Redis {
            port,
            child,
            dir,
            extra_args,
        }
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }

    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .expect("connect to the test redis-server")
    }

    /// Writes a proposal hash for `symbol`.
    pub fn hset(&self, symbol: &str, fields: &[(&str, &str)]) {
        let mut c = self.connection();
        redis::cmd("HSET")
            .arg(format!("{PREFIX}{symbol}"))
            .arg(fields)
            .query::<()>(&mut c)
            .expect("HSET");
    }

    /// Writes a proposal hash with `fields` for each symbol, in one pipeline.
    pub fn fill(&self, symbols: &[String], fields: &[(&str, &str)]) {
        let mut pipe = redis::pipe();
        for symbol in symbols {
            pipe.hset_multiple(format!("{PREFIX}{symbol}"), fields)
                .ignore();
        }
        pipe.query::<()>(&mut self.connection())
            .expect("fill redis");
    }

    /// Runs any command, for the tests' own setup.
    pub fn run(&self, args: &[&str]) -> redis::Value {
        let mut c = self.connection();
        redis::cmd(args[0])
            .arg(&args[1..])
            .query(&mut c)
            .expect("redis command")
    }

    /// Creates (or extends) the ACL user `user` with `password` and the rules given, e.g.
    /// [`HASH_ACL`] and [`STREAM_ACL`].
    pub fn acl_user(&self, user: &str, password: &str, rules: &[&[&str]]) {
        let password = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", user, "on", &password];
        args.extend(rules.iter().flat_map(|part| part.iter().copied()));
        self.run(&args);
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = Redis::start_on(self.port, self.extra_args.clone());
        *self = fresh;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the seed's example: three symbols with the values its document shows.
pub fn seed_example(redis: &Redis) {
    for (symbol, hash) in SEED_EXAMPLE {
        redis.hset(symbol, hash);
    }
}

/// Appends an entry to a stream as the apply layer does, and returns its ID.
pub fn xadd(redis: &Redis, stream: &str, fields: &[(&str, &str)]) -> String {
    let mut command = redis::cmd("XADD");
    command.arg(stream).arg("*");
    for (name, value) in fields {
        command.arg(name).arg(value);
    }
    command
        .query(&mut redis.connection())
        .expect("XADD to the test redis-server")
}

/// The exporter binary built by cargo for these tests.
pub fn exporter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_harvest-exporter")
}

/// A running exporter on a free port, with a clean environment and the given flags.
pub struct Exporter {
    pub port: u16,
    child: Child,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Exporter {
    /// Starts against `redis` with a 0.2 s poll interval, plus `args`, and waits for /health.
    pub fn start(redis: &Redis, args: &[&str]) -> Exporter {
        let redis_url = redis.url();
        let mut all = vec!["--redis.addr", redis_url.as_str()];
        all.extend_from_slice(args);
        // From the environment, so that a test's own flag wins as it would for an operator.
        Exporter::start_raw(&all, &[("POLL_INTERVAL_SEC", "0.2")])
    }

    /// Starts with exactly these flags and environment variables, and waits for /health.
    pub fn start_raw(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut exporter = Exporter::spawn(args, env);
        let port = exporter.port;
        wait_for("the exporter's /health", Duration::from_secs(10), || {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("exporter exited with {status}: {}", exporter.log_text());
            }
            http_get(port, "/health", &[])
                .ok()
                .filter(|r| r.status == 200)
        });
        exporter
    }

    /// Starts and waits only until the port accepts connections (for HTTPS and basic auth).
    pub fn start_listening(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut exporter = Exporter::spawn(args, env);
        let port = exporter.port;
        wait_for("the exporter's port", Duration::from_secs(10), || {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("exporter exited with {status}: {}", exporter.log_text());
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        exporter
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let port = free_port();
        let dir = TempDir::new("exporter");
        let log = dir.0.join("exporter.log");
        let child = Command::new(exporter_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The seed's env name for the port, so every test also checks the drop-in path.
            .env("METRICS_PORT", port.to_string())
            .env("LOG_LEVEL", "debug")
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start harvest-exporter");
        Exporter {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.port, path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/metrics` as text, after checking it with promtool.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200);
        let body = response.text();
        promtool_check_metrics(&body);
        body
    }

    /// Waits until `/metrics` satisfies `check`.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        wait_for(what, timeout, || {
            let body = self.get("/metrics").text();
            check(&body).then_some(body)
        })
    }

    /// Waits until a refresh has failed to connect, then checks that the exporter says so:
    /// `redis_up` 0 and `/ready` 503. Returns that scrape.
    pub fn wait_refused(&self) -> String {
        let body = self.wait_metrics("a refused connection", Duration::from_secs(20), |body| {
            sample(
                body,
                "quantum_harvest_exporter_refresh_errors_total{kind=\"connect\"}",
            )
            .is_some_and(|n| n > 0.0)
        });
        assert_eq!(
            sample(&body, "quantum_harvest_exporter_redis_up"),
            Some(0.0)
        );
        assert_eq!(self.get("/ready").status, 503);
        body
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let started = Instant::now();
        self.signal("TERM");
        let status = wait_for("the exporter to exit", Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        (started.elapsed(), status)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the exporter binary to completion (for `--help`, bad flags, `simulate`).
pub fn run_exporter(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(exporter_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run harvest-exporter")
}

/// Runs the exporter binary to completion with no environment but PATH, and fails the test,
/// with its stderr, unless it succeeds (for `simulate` publishing test data).
pub fn run_exporter_ok(args: &[&str]) -> std::process::Output {
    let output = run_exporter(args, &[]);
    assert!(
        output.status.success(),
        "harvest-exporter {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn http_request(port: u16, request: &[u8]) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    http_request(port, request.as_bytes())
}

/// Fails the test unless `promtool check metrics` accepts `body` with no lint finding at all,
/// and no series appears twice (promtool does not check that).
pub fn promtool_check_metrics(body: &str) {
    require_tool("promtool", "prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = std::collections::HashSet::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        assert!(seen.insert(series), "duplicate series {series:?}");
    }
}

/// Calls of one command on a Redis, from `INFO commandstats` (0 before its first call).
pub fn command_calls(connection: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Scrapes on a thread of its own, 100 ms apart, until stopped or `limit` has passed, keeping
/// what each call of `scrape` returned.
pub struct Scraper<T> {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<T>>,
}

impl<T: Send + 'static> Scraper<T> {
    pub fn start(limit: Duration, mut scrape: impl FnMut() -> T + Send + 'static) -> Scraper<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut scrapes = Vec::new();
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                scrapes.push(scrape());
                std::thread::sleep(Duration::from_millis(100));
            }
            scrapes
        });
        Scraper { stop, thread }
    }

    /// Stops and returns every scrape's result.
    pub fn stop(self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the scraper thread")
    }
}

/// The value of the sample `series` (name with labels, exactly as rendered), if present.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Whether the scrape says the last refresh read Redis.
pub fn redis_up(body: &str) -> bool {
    sample(body, "quantum_harvest_exporter_redis_up") == Some(1.0)
}

/// The kill score the scrape exports for `symbol`, if any.
pub fn kill_score(body: &str, symbol: &str) -> Option<f64> {
    sample(
        body,
        &format!("quantum_harvest_kill_score{{symbol=\"{symbol}\"}}"),
    )
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Whole seconds since the Unix epoch, as the publisher writes `last_update_epoch`.
pub fn unix_epoch() -> u64 {
    unix_now() as u64
}

/// Appends one row to the reliability table that `scripts/test` turns into docs/reliability.md:
/// the case, what the test did, what the exporter did, and the counts that prove it. Tests call
/// it only after their assertions passed, so every row states something that was just shown to
/// hold; and only with what every passing run shows alike, so that the committed table changes
/// when what it proves changes. What varies from run to run goes to [`measured`].
pub fn report(case: &str, done: &str, outcome: &str, proven: &str) {
    append_row("rows.tsv", &[case, done, outcome, proven]);
}

/// Timings and other figures of a case that vary from run to run: `scripts/reliability-report`
/// prints them after writing the table, and commits none of them.
pub fn measured(case: &str, figures: &str) {
    append_row("measured.tsv", &[case, figures]);
}

fn append_row(file: &str, cells: &[&str]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).expect("report dir");
    let cells: Vec<String> = cells
        .iter()
        .map(|text| text.replace(['\t', '\n', '|'], " "))
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
        .expect("report file");
    file.write_all(format!("{}\n", cells.join("\t")).as_bytes())
        .expect("write report row");
}

/// The least-privilege ACL docs/security.md gives the exporter's user, its part for the
/// proposal hashes: no key but the prefix's, no channel, no command but the reads.
pub const HASH_ACL: &[&str] = &[
    "resetkeys",
    "~quantum:harvest:proposal:*",
    "resetchannels",
    "-@all",
    "+scan",
    "+hmget",
    "+ping",
    "+hello",
    "+type",
];

/// The same ACL's part for the apply streams: read-only keys and the stream reads.
pub const STREAM_ACL: &[&str] = &[
    "%R~quantum:stream:apply.*",
    "+xread",
    "+xrevrange",
    "+xinfo|stream",
    "+xinfo|groups",
];

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with openssl.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate signed by the same CA, for mutual TLS.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A server certificate for [`Certs::SERVER_NAME`] only.
    pub named_cert: PathBuf,
    pub named_key: PathBuf,
    pub dir: TempDir,
}

impl Certs {
    /// The one name in `named_cert`, which resolves nowhere.
    pub const SERVER_NAME: &str = "redis.harvest.test";

    /// Writes a web configuration file that serves HTTPS with the server certificate and
    /// requires a client certificate signed by the CA, and returns its path.
    pub fn web_config_requiring_client_certs(&self) -> String {
        let web = self.dir.0.join("web.yml");
        std::fs::write(
            &web,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        )
        .expect("write the web configuration");
        web.to_string_lossy().into_owned()
    }

    pub fn new() -> Certs {
        require_tool("openssl", "openssl");
        let dir = TempDir::new("certs");
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .current_dir(&dir.0)
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=harvest test CA",
            ],
        ]
        .concat());
        // A key and a certificate signed by the CA, for `name`, with the given extensions.
        let issue = |name: &str, subject: &str, extensions: &str| {
            let (key, csr, ext, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.ext"),
                format!("{name}.crt"),
            );
            run(&[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", subject],
            ]
            .concat());
            std::fs::write(dir.0.join(&ext), extensions).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        };
        issue(
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            "named",
            &format!("/CN={}", Certs::SERVER_NAME),
            &format!(
                "subjectAltName=DNS:{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                Certs::SERVER_NAME
            ),
        );
        issue(
            "client",
            "/CN=prometheus",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        Certs {
            ca: dir.0.join("ca.crt"),
            cert: dir.0.join("server.crt"),
            key: dir.0.join("server.key"),
            client_cert: dir.0.join("client.crt"),
            client_key: dir.0.join("client.key"),
            named_cert: dir.0.join("named.crt"),
            named_key: dir.0.join("named.key"),
            dir,
        }
    }
}

//! Serves what the refresh loop published over HTTP/1.1: /metrics, /health, /ready, the page at /
//! and its JSON at /api/v1/proposals. It reads only what was published and never touches Redis;
//! every connection is its own task, capped in number and in the time it may take to send its
//! request head.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;

use crate::apply::ApplyPublication;
use crate::exposition::{Family, Format, Writer};
use crate::page;
use crate::process::{self, ProcessStats};
use crate::published::Published;
use crate::webconfig::BasicAuth;

#[derive(Clone, Debug)]
pub struct WebSettings {
    /// Where the metrics are served (`--web.telemetry-path`).
    pub telemetry_path: String,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
}

/// What `--web.config.file` asked for; the default is plain HTTP without authentication.
#[derive(Default)]
pub struct Security {
    pub tls: Option<TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Security {
    /// Whether listening on `listen` reaches beyond this host without both TLS and
    /// authentication, which deserves a warning at start-up.
    pub fn exposed(&self, listen: std::net::SocketAddr) -> bool {
        !listen.ip().is_loopback() && (self.tls.is_none() || self.auth.is_none())
    }
}

/// The HTTP server's figures, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct HttpStats {
    pub open: f64,
    pub evicted: f64,
    /// Whether the last reload of the web configuration file succeeded (true before any).
    pub config_reload_ok: bool,
    pub config_reload_success_unix: f64,
}

const CACHE_AGE: Family = Family::gauge(
    "quantum_harvest_exporter_cache_age_seconds",
    "Seconds since the cached proposals were last read from Redis (since start-up before the first read).",
);
const CONNECTIONS_OPEN: Family = Family::gauge(
    "quantum_harvest_exporter_http_connections_open",
    "HTTP connections open, this scrape's included.",
);
const CONNECTIONS_EVICTED: Family = Family::counter(
    "quantum_harvest_exporter_http_connections_evicted_total",
    "Connections closed before their first request to make room under the connection cap.",
);
const RELOAD_OK: Family = Family::gauge(
    "quantum_harvest_exporter_config_last_reload_successful",
    "Whether the last reload of the web configuration file (on SIGHUP) succeeded.",
);
const RELOAD_TIME: Family = Family::gauge(
    "quantum_harvest_exporter_config_last_reload_success_timestamp_seconds",
    "Time of the last successful load of the web configuration, in seconds since the epoch.",
);

/// The values that must be read at scrape time, appended to the body rendered at refresh; they
/// end the exposition.
fn scrape_tail(
    format: Format,
    cache_age: Duration,
    http: &HttpStats,
    process: Option<&ProcessStats>,
) -> Vec<u8> {
    let mut w = Writer::new(format, 1_024);
    w.family(&CACHE_AGE).value(cache_age.as_secs_f64());
    w.family(&CONNECTIONS_OPEN).value(http.open);
    w.family(&CONNECTIONS_EVICTED).value(http.evicted);
    w.family(&RELOAD_OK)
        .value(if http.config_reload_ok { 1.0 } else { 0.0 });
    w.family(&RELOAD_TIME)
        .value(http.config_reload_success_unix);
    if let Some(process) = process {
        process.encode(&mut w);
    }
    w.finish()
}

/// The web configuration in force, which a reload (SIGHUP) replaces, and the outcome of the
/// last reload. A connection keeps the configuration it was accepted under.
pub struct WebConfigState {
    current: RwLock<Arc<Security>>,
    last_reload_ok: AtomicBool,
    last_success_unix: AtomicU64,
}

impl WebConfigState {
    pub fn new(security: Security, now_unix: f64) -> WebConfigState {
        WebConfigState {
            current: RwLock::new(Arc::new(security)),
            last_reload_ok: AtomicBool::new(true),
            last_success_unix: AtomicU64::new(now_unix.to_bits()),
        }
    }

    /// Puts a freshly loaded configuration in force for the connections accepted from now on.
    pub fn replace(&self, security: Security, now_unix: f64) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(security);
        self.last_reload_ok.store(true, Ordering::Relaxed);
        self.last_success_unix
            .store(now_unix.to_bits(), Ordering::Relaxed);
    }

    /// Records a reload that failed; the configuration in force stays.
    pub fn reload_failed(&self) {
        self.last_reload_ok.store(false, Ordering::Relaxed);
    }

    fn current(&self) -> Arc<Security> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Open connections, and those not yet past their first request head, which are the ones
/// closed to make room when the cap is reached: a flood of idle or slow clients then cannot keep
/// a scraper out, and a connection that is being answered is never cut.
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    evicted: AtomicU64,
    next_id: AtomicU64,
    waiting: Mutex<BTreeMap<u64, AbortHandle>>,
}

impl Connections {
    fn stats(&self, web_config: &WebConfigState) -> HttpStats {
        HttpStats {
            open: self.open.load(Ordering::Relaxed) as f64,
            evicted: self.evicted.load(Ordering::Relaxed) as f64,
            config_reload_ok: web_config.last_reload_ok.load(Ordering::Relaxed),
            config_reload_success_unix: f64::from_bits(
                web_config.last_success_unix.load(Ordering::Relaxed),
            ),
        }
    }

    /// Closes the oldest connection still waiting for its first request head.
    fn evict_oldest_waiting(&self) -> bool {
        let oldest = self.waiting.lock().expect("not poisoned").pop_first();
        match oldest {
            Some((_, task)) => {
                task.abort();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn request_started(&self, id: u64) {
        self.waiting.lock().expect("not poisoned").remove(&id);
    }
}

/// Marks a connection closed however its task ends, including by eviction.
struct OpenConnection {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.connections.request_started(self.id);
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything a connection task needs, shared by all of them.
struct Shared {
    published: watch::Receiver<Arc<Published>>,
    /// The apply streams' families and view, published by their follower as entries arrive.
    apply: watch::Receiver<Arc<ApplyPublication>>,
    settings: WebSettings,
    web_config: Arc<WebConfigState>,
    connections: Arc<Connections>,
    /// bcrypt checks in flight at most, so that a password-guessing flood costs one core at most.
    bcrypt_slots: Semaphore,
}

/// Accepts connections on every listener until `shutdown` completes. Connections still open
/// then are dropped with the runtime, so a stuck client cannot hold up the exit.
pub async fn serve(
    listeners: Vec<TcpListener>,
    published: watch::Receiver<Arc<Published>>,
    apply: watch::Receiver<Arc<ApplyPublication>>,
    settings: WebSettings,
    web_config: Arc<WebConfigState>,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        published,
        apply,
        settings,
        web_config,
        connections: Arc::new(Connections::default()),
        bcrypt_slots: Semaphore::new(1),
    });
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, Arc::clone(&shared))))
        .collect();
    shutdown.await;
    for task in accepting {
        task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // A response leaves in two writes (cached body, then the scrape-time tail); with
                // Nagle's algorithm the second would wait for the client's delayed ACK (~40 ms).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {error}");
                }
                admit(stream, &shared);
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Gives the connection a task of its own, under the connection cap.
fn admit(stream: TcpStream, shared: &Arc<Shared>) {
    let connections = &shared.connections;
    let max_connections = shared.settings.max_connections;
    if connections.open.load(Ordering::Relaxed) >= max_connections
        && !connections.evict_oldest_waiting()
    {
        tracing::debug!("{max_connections} connections, all busy: closing a new one");
        return;
    }
    connections.open.fetch_add(1, Ordering::Relaxed);
    let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
    let guard = OpenConnection {
        id,
        connections: Arc::clone(connections),
    };
    let shared = Arc::clone(shared);
    let security = shared.web_config.current();
    // Registered under the lock so that the first request cannot run before registration.
    let mut waiting = connections.waiting.lock().expect("not poisoned");
    let task = tokio::spawn(async move {
        let _guard = guard;
        match &security.tls {
            None => serve_connection(stream, id, shared, Arc::clone(&security)).await,
            Some(acceptor) => {
                // The handshake counts against the header timeout, like the request head.
                match tokio::time::timeout(shared.settings.header_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => serve_connection(tls, id, shared, Arc::clone(&security)).await,
                    Ok(Err(error)) => tracing::debug!("TLS handshake failed: {error}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    });
    waiting.insert(id, task.abort_handle());
}

async fn serve_connection<S>(stream: S, id: u64, shared: Arc<Shared>, security: Arc<Security>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(shared.settings.write_timeout));
    let header_timeout = shared.settings.header_timeout;
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&shared);
        let security = Arc::clone(&security);
        async move {
            shared.connections.request_started(id);
            let mut response = if authorized(&shared, &security, &request).await {
                let published = Arc::clone(&shared.published.borrow());
                let apply = Arc::clone(&shared.apply.borrow());
                respond(
                    &request,
                    &Answer {
                        published: &published,
                        apply: &apply,
                        http: shared.connections.stats(&shared.web_config),
                        telemetry_path: &shared.settings.telemetry_path,
                    },
                )
            } else {
                unauthorized()
            };
            add_configured_headers(&mut response, &security.headers);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(Box::pin(stream)), service);
    if let Err(error) = connection.await {
        tracing::debug!("connection ended with an error: {error}");
    }
}

async fn authorized<B>(shared: &Shared, security: &Security, request: &Request<B>) -> bool {
    let Some(auth) = &security.auth else {
        return true;
    };
    let header = request.headers().get(header::AUTHORIZATION).cloned();
    if auth.remembered(header.as_ref()) {
        return true;
    }
    let Ok(_slot) = shared.bcrypt_slots.acquire().await else {
        return false;
    };
    let auth = Arc::clone(auth);
    tokio::task::spawn_blocking(move || auth.verify(header.as_ref()))
        .await
        .unwrap_or(false)
}

/// Adds the headers of `http_server_config.headers` that the response does not set itself. The
/// page's own Content-Security-Policy wins: it is written for the page's inline script and
/// styles, and a site-wide policy in its place would either break the page or loosen it.
fn add_configured_headers(
    response: &mut Response<Payload>,
    configured: &[(HeaderName, HeaderValue)],
) {
    let headers = response.headers_mut();
    for (name, value) in configured {
        headers.entry(name).or_insert_with(|| value.clone());
    }
}

fn unauthorized() -> Response<Payload> {
    let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"harvest-exporter\""),
    );
    response
}

/// Answers one request from the published snapshot.
/// What a request is answered from: the refresh's publication, the apply streams' families,
/// and the scrape-time figures.
struct Answer<'a> {
    published: &'a Published,
    apply: &'a ApplyPublication,
    http: HttpStats,
    telemetry_path: &'a str,
}

fn respond<B>(request: &Request<B>, answer: &Answer<'_>) -> Response<Payload> {
    let Answer {
        published,
        apply,
        telemetry_path,
        ..
    } = *answer;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let page = || published.page(telemetry_path, &apply.view);
    match request.uri().path() {
        path if path == telemetry_path => metrics(request, answer),
        "/health" => text(StatusCode::OK, "OK"),
        "/ready" => match published.snapshot.readiness(Instant::now()) {
            Ok(warnings) if warnings.is_empty() => text(StatusCode::OK, "ready\n"),
            Ok(warnings) => text(
                StatusCode::OK,
                format!("ready; data problems: {}\n", warnings.join("; ")),
            ),
            Err(reasons) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", reasons.join("; ")),
            ),
        },
        "/" => page_response(page::HTML_CONTENT_TYPE, &page().html),
        "/api/v1/proposals" => page_response(page::JSON_CONTENT_TYPE, &page().json),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: see / for the endpoints\n",
        ),
    }
}

/// The body rendered at the last refresh in the format asked for, then the apply streams'
/// families as last rendered, then the scrape-time tail; with gzip, the last two are stored in
/// the member's final blocks.
fn metrics<B>(request: &Request<B>, answer: &Answer<'_>) -> Response<Payload> {
    let published = answer.published;
    let format = negotiate(request.headers().get(header::ACCEPT));
    let cache_age = published.snapshot.cache_age(Instant::now());
    let apply = answer.apply.metrics(format);
    let tail = scrape_tail(format, cache_age, &answer.http, process::recent().as_ref());
    let body = published.body(format);
    let gzip = accepts_gzip(request.headers().get(header::ACCEPT_ENCODING));
    let (mut chunks, tail) = if gzip {
        let stored = [apply.as_ref(), &tail].concat();
        (body.gzip.chunks.clone(), body.gzip.finish(&stored))
    } else {
        let mut chunks = body.plain.clone();
        chunks.push(apply.clone());
        (chunks, tail)
    };
    chunks.push(tail.into());
    let mut response = Response::new(Payload::new(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The page or its JSON document, as rendered at the last refresh.
fn page_response(content_type: &'static str, body: &Bytes) -> Response<Payload> {
    let mut response = Response::new(Payload::new(vec![body.clone()]));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Payload> {
    let mut response = Response::new(Payload::new(vec![body.into()]));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The format `Accept` asks for, chosen as Prometheus's own client libraries choose it: media
/// ranges by falling quality (in the order given when equal), the first that names a format
/// served wins; text when none does. Either OpenMetrics version asked for gets 1.0.0, which
/// reads the same for gauges and counters. Unlike the client libraries, `q=0` refuses.
fn negotiate(accept: Option<&HeaderValue>) -> Format {
    let Some(value) = accept.and_then(|v| v.to_str().ok()) else {
        return Format::Text;
    };
    let mut ranges: Vec<(f64, Option<Format>)> = value
        .split(',')
        .map(|item| {
            let mut parts = item.split(';');
            let media_type = parts.next().unwrap_or("").trim();
            let (mut quality, mut version) = (1.0, None);
            for parameter in parts {
                let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
                let value = value.trim().trim_matches('"');
                if name.trim().eq_ignore_ascii_case("q") {
                    quality = value.parse().unwrap_or(0.0);
                } else if name.trim().eq_ignore_ascii_case("version") {
                    version = Some(value);
                }
            }
            let format = if media_type.eq_ignore_ascii_case("application/openmetrics-text")
                && matches!(version, None | Some("1.0.0" | "0.0.1"))
            {
                Some(Format::OpenMetrics)
            } else if media_type.eq_ignore_ascii_case("text/plain")
                && matches!(version, None | Some("0.0.4"))
            {
                Some(Format::Text)
            } else {
                None
            };
            (quality, format)
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .into_iter()
        .filter(|(quality, _)| *quality > 0.0)
        .find_map(|(_, format)| format)
        .unwrap_or(Format::Text)
}

/// Whether to answer with gzip, by RFC 9110's rules for `Accept-Encoding`: an entry naming gzip
/// (or its alias x-gzip) wins over `*`, `q=0` refuses, and of gzip and identity the higher
/// quality is sent, gzip on a tie. Identity is acceptable unless refused by `identity;q=0` or by
/// `*;q=0` without an identity entry, and comes last when not named. Without the header, or when
/// the client refuses both, the body goes uncompressed: a client that sent no header (curl, a
/// browser's view-source) reads it as is, and RFC 9110 lets a server disregard a header it
/// cannot satisfy rather than fail the scrape.
fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f64>().ok())
                    .flatten()
            })
            .next()
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        // The first entry for a coding counts, as a repeated one has no defined meaning.
        slot.get_or_insert(quality);
    }
    let gzip = gzip.or(any).unwrap_or(0.0);
    // Below any quality a client can write (three decimals at most) yet still acceptable.
    let identity = identity.or(any).unwrap_or(0.0001);
    gzip > 0.0 && gzip >= identity
}

/// A response body of shared byte chunks, sent without copying. Hand-written: the body crates
/// offer one chunk (`Full`) or a stream that needs an extra dependency to build.
pub(crate) struct Payload {
    chunks: VecDeque<Bytes>,
}

impl Payload {
    fn new(chunks: Vec<Bytes>) -> Payload {
        Payload {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition_check::{assert_golden, check_open_metrics};

    #[test]
    fn tail_has_cache_age_and_process_metrics() {
        let stats = ProcessStats {
            open_fds: 7.0,
            ..ProcessStats::default()
        };
        let tail = String::from_utf8(scrape_tail(
            Format::Text,
            Duration::from_millis(1_500),
            &HttpStats::default(),
            Some(&stats),
        ))
        .unwrap();
        assert!(tail.contains("quantum_harvest_exporter_cache_age_seconds 1.5\n"));
        assert!(tail.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(tail.contains("process_open_fds 7.0\n"));
    }

    #[test]
    fn tail_is_byte_identical_to_the_golden_file() {
        let process = ProcessStats {
            cpu_seconds: 1.25,
            resident_memory_bytes: 1_048_576.0,
            virtual_memory_bytes: 2_097_152.0,
            open_fds: 7.0,
            max_fds: 1024.0,
            start_time_seconds: Some(1_769_130_000.5),
        };
        let http = HttpStats {
            open: 3.0,
            evicted: 4.0,
            config_reload_ok: false,
            config_reload_success_unix: 1_769_130_001.0,
        };
        let tail = scrape_tail(
            Format::Text,
            Duration::from_millis(1_500),
            &http,
            Some(&process),
        );
        assert_golden("tail.prom", &tail);
        let tail = scrape_tail(
            Format::OpenMetrics,
            Duration::from_millis(1_500),
            &http,
            Some(&process),
        );
        check_open_metrics(std::str::from_utf8(&tail).unwrap()).unwrap();
        assert_golden("tail.om", &tail);
    }

    fn header(value: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(value))
    }

    #[test]
    fn format_negotiation() {
        use Format::{OpenMetrics, Text};
        for (accept, expected) in [
            // Prometheus 2.42's scrape request.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics,
            ),
            ("application/openmetrics-text", OpenMetrics),
            (
                "Application/OpenMetrics-Text; Version=\"0.0.1\"",
                OpenMetrics,
            ),
            (
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text",
                OpenMetrics,
            ),
            ("application/openmetrics-text;q=0.5, text/plain", Text),
            (
                "application/openmetrics-text;version=2.0.0, text/plain;q=0.1",
                Text,
            ),
            ("application/openmetrics-text;q=0, */*", Text),
            ("application/openmetrics-text;q=oops", Text),
            (
                "*/*;q=0.1, application/openmetrics-text;q=0.05",
                OpenMetrics,
            ),
            ("text/html, application/json", Text),
            ("", Text),
        ] {
            assert_eq!(negotiate(header(accept).as_ref()), expected, "{accept}");
        }
        assert_eq!(negotiate(None), Text);
    }

    #[test]
    fn gzip_negotiation() {
        let gzip = |value: &'static str| accepts_gzip(header(value).as_ref());
        assert!(gzip("gzip"));
        assert!(gzip("deflate, GZIP;q=0.5"));
        assert!(gzip("*"));
        assert!(gzip("x-gzip"));
        assert!(gzip("br;q=1.0, gzip;q=0.8"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("gzip;q=0.000"));
        assert!(!gzip("identity"));
        assert!(!gzip(""), "empty: identity only");
        assert!(!accepts_gzip(None));
        // An explicit refusal wins over the wildcard, in either order.
        assert!(!gzip("gzip;q=0, *"));
        assert!(!gzip("*, gzip;q=0"));
        assert!(!gzip("*;q=1, gzip;Q=0"));
        assert!(!gzip("*;q=0"), "the wildcard refuses gzip too");
        assert!(gzip("*;q=0, gzip"));
        // Identity against gzip: the higher quality, gzip on a tie.
        assert!(gzip("gzip, identity"));
        assert!(!gzip("gzip;q=0.5, identity"));
        assert!(!gzip("gzip;q=0.5, *"), "the wildcard rates identity at 1");
        assert!(gzip("gzip;q=0.5, identity;q=0.5"));
        assert!(gzip("gzip;q=0.1, identity;q=0"));
        assert!(
            gzip("gzip;q=0.1, *;q=0"),
            "identity refused through the wildcard"
        );
        assert!(
            !gzip("gzip;q=0, identity;q=0"),
            "nothing acceptable: sent uncompressed"
        );
    }

    #[test]
    fn configured_headers_fill_in_and_never_replace_the_pages_own() {
        let configured = [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'"),
            ),
            (
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("sameorigin"),
            ),
        ];
        let mut page = page_response(page::HTML_CONTENT_TYPE, &Bytes::from_static(b"<p>"));
        add_configured_headers(&mut page, &configured);
        let headers = page.headers();
        assert_eq!(
            headers
                .get_all(header::CONTENT_SECURITY_POLICY)
                .iter()
                .collect::<Vec<_>>(),
            [page::CONTENT_SECURITY_POLICY],
            "the page keeps its own policy, once"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "sameorigin");

        let mut plain = text(StatusCode::OK, "OK");
        add_configured_headers(&mut plain, &configured);
        assert_eq!(
            plain.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(plain.headers()[header::X_FRAME_OPTIONS], "sameorigin");
    }

    #[test]
    fn exposure_without_tls_and_auth_is_flagged() {
        let plain = Security::default();
        assert!(!plain.exposed("127.0.0.1:8042".parse().unwrap()));
        assert!(!plain.exposed("[::1]:8042".parse().unwrap()));
        assert!(plain.exposed("0.0.0.0:8042".parse().unwrap()));
        assert!(plain.exposed("192.0.2.7:8042".parse().unwrap()));
    }

    #[test]
    fn payload_reports_its_exact_size() {
        let payload = Payload::new(vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
        ]);
        assert_eq!(payload.size_hint().exact(), Some(5));
        assert_eq!(payload.chunks.len(), 2);
    }
}

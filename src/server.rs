//! Serves what the refresh loop published over HTTP/1.1: /metrics, /health, /ready, the page at /
//! and its JSON at /api/v1/proposals. It reads only what was published and never touches Redis;
//! every connection is its own task, capped in number and in the time it may take to send its
//! request head. What a request is answered with is `respond`'s, the body type `payload`'s.

mod payload;
mod respond;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;

use crate::apply::ApplyPublication;
use crate::published::{HttpStats, Published};
use crate::webconfig::BasicAuth;
use payload::Payload;
use respond::{Answer, respond, unauthorized};

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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use hyper::StatusCode;

    use super::respond::{page_response, text};
    use super::*;
    use crate::page;

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
}

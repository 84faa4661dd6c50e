//! Answering one request from what was published: routing, /metrics with format and gzip
//! negotiation, the page and its JSON, and the response body type. What a scrape's body holds
//! is `published`'s; connections, authentication and the web configuration are `server`'s.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::apply::ApplyPublication;
use crate::exposition::Format;
use crate::gzip::Inflating;
use crate::page;
use crate::published::{HttpStats, Published, Refreshed, Scrape};

pub(super) fn unauthorized() -> Response<Payload> {
    let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"harvest-exporter\""),
    );
    response
}

/// What a request is answered from: the refresh's publication, the apply streams' families,
/// and the scrape-time figures.
pub(super) struct Answer<'a> {
    pub(super) published: &'a Published,
    pub(super) apply: &'a ApplyPublication,
    pub(super) http: HttpStats,
    pub(super) telemetry_path: &'a str,
}

/// Answers one request from the published snapshot.
pub(super) fn respond<B>(request: &Request<B>, answer: &Answer<'_>) -> Response<Payload> {
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

/// The scrape `Accept` and `Accept-Encoding` ask for, as the publication lays it out.
fn metrics<B>(request: &Request<B>, answer: &Answer<'_>) -> Response<Payload> {
    let format = negotiate(request.headers().get(header::ACCEPT));
    let gzip = accepts_gzip(request.headers().get(header::ACCEPT_ENCODING));
    let scrape = answer
        .published
        .scrape(answer.apply, format, gzip, &answer.http);
    let mut response = Response::new(Payload::from(scrape));
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
pub(super) fn page_response(content_type: &'static str, body: &Bytes) -> Response<Payload> {
    let mut response = Response::new(Payload::own(vec![body.clone()]));
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

pub(super) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Payload> {
    let mut response = Response::new(Payload::own(vec![body.into()]));
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

/// A body held compressed is inflated for as many plain scrapes at once as there are cores (at
/// least two); the others wait for a turn. Inflating is CPU work, which more at once would not
/// finish sooner, and each holds an inflater and its frames (some 300 KiB with the allocator's
/// slack, measured): however many plain scrapes come, they hold that many of those.
static TURNS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Semaphore::new(cores.max(2))
});
/// The longest a plain scrape waits for a turn before it inflates without one: a client that
/// stops reading keeps its turn until its connection closes, and must not hold up the others
/// for longer than this.
const TURN_WAIT: Duration = Duration::from_secs(5);

/// A turn to inflate, waited for: `None` once [`TURN_WAIT`] has passed without one.
type Waiting = Pin<Box<dyn Future<Output = Option<SemaphorePermit<'static>>> + Send>>;

/// A response body of shared byte chunks, sent without copying, all of them as one frame.
/// Hyper flushes its write queue once it holds 16 KiB (`max_buf_size`), so a frame per chunk
/// would cost a `writev` per chunk; one frame of many chunks goes out 64 of them per `writev`.
/// The chunks come in runs shared with the publication they belong to, so that a scrape of a
/// body in thousands of pieces copies no list of them. Hand-written: the body crates offer one
/// chunk (`Full`) or a stream of frames, and `bytes` chains two buffers, not a list.
pub(super) struct Payload {
    /// A body held compressed only, inflated a frame at a time before `chunks` are sent.
    inflating: Option<Inflating>,
    /// The turn `inflating` waits for before its first frame, then holds until it is done.
    waiting: Option<Waiting>,
    turn: Option<SemaphorePermit<'static>>,
    chunks: Option<Chunks>,
}

impl Payload {
    /// The chunks of `shared`, then those of `own`; empty chunks are skipped.
    fn new(shared: Arc<[Bytes]>, own: Vec<Bytes>) -> Payload {
        let chunks = Chunks::new(VecDeque::from([shared, own.into()]));
        Payload {
            inflating: None,
            waiting: None,
            turn: None,
            chunks: (chunks.remaining > 0).then_some(chunks),
        }
    }

    fn own(chunks: Vec<Bytes>) -> Payload {
        Payload::new(Arc::new([]), chunks)
    }

    /// What `inflating` inflates, once it has a turn, then the chunks of `own`.
    fn inflated(inflating: Inflating, own: Vec<Bytes>) -> Payload {
        let waiting: Waiting = Box::pin(async {
            let turn = tokio::time::timeout(TURN_WAIT, TURNS.acquire()).await;
            turn.ok()?.ok()
        });
        Payload {
            inflating: (inflating.remaining() > 0).then_some(inflating),
            waiting: Some(waiting),
            ..Payload::own(own)
        }
    }
}

impl From<Scrape> for Payload {
    fn from(Scrape { body, after }: Scrape) -> Payload {
        match body {
            Refreshed::Chunks(chunks) => Payload::new(chunks, after),
            Refreshed::Inflating(inflating) => Payload::inflated(inflating, after),
        }
    }
}

impl Body for Payload {
    type Data = Chunks;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunks>, Infallible>>> {
        let this = self.get_mut();
        if let Some(inflating) = &mut this.inflating {
            if let Some(waiting) = &mut this.waiting {
                this.turn = std::task::ready!(waiting.as_mut().poll(context));
                this.waiting = None;
            }
            if let Some(chunk) = inflating.next_chunk() {
                let chunks = Chunks::new(VecDeque::from([Arc::from([chunk])]));
                return Poll::Ready(Some(Ok(Frame::data(chunks))));
            }
            this.inflating = None;
            this.turn = None;
        }
        Poll::Ready(this.chunks.take().map(|chunks| Ok(Frame::data(chunks))))
    }

    fn is_end_stream(&self) -> bool {
        self.inflating.is_none() && self.chunks.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let inflating = self.inflating.as_ref().map_or(0, Inflating::remaining);
        let chunks = self.chunks.as_ref().map_or(0, |c| c.remaining) as u64;
        SizeHint::with_exact(inflating + chunks)
    }
}

/// Runs of chunks read one after another.
#[derive(Debug)]
pub(super) struct Chunks {
    runs: VecDeque<Arc<[Bytes]>>,
    /// The chunk of the first run being sent, and how many of its bytes are sent; kept on a
    /// chunk with bytes left while any remain (see [`Chunks::settle`]).
    index: usize,
    sent: usize,
    remaining: usize,
}

impl Chunks {
    fn new(runs: VecDeque<Arc<[Bytes]>>) -> Chunks {
        let remaining = runs.iter().flat_map(|run| run.iter()).map(Bytes::len).sum();
        let mut chunks = Chunks {
            runs,
            index: 0,
            sent: 0,
            remaining,
        };
        chunks.settle();
        chunks
    }

    /// Moves past sent and empty chunks, and past runs with none left.
    fn settle(&mut self) {
        while let Some(run) = self.runs.front() {
            match run.get(self.index) {
                Some(chunk) if self.sent < chunk.len() => return,
                Some(_) => self.index += 1,
                None => {
                    self.runs.pop_front();
                    self.index = 0;
                }
            }
            self.sent = 0;
        }
    }

    /// The unsent chunks in order, the current one from where it stands.
    fn unsent(&self) -> impl Iterator<Item = &[u8]> {
        let current = self.runs.front().map(|run| &run[self.index][self.sent..]);
        let after = self.runs.iter().enumerate().flat_map(|(at, run)| {
            let skip = if at == 0 { self.index + 1 } else { 0 };
            run.iter().skip(skip).map(|chunk| &chunk[..])
        });
        current
            .into_iter()
            .chain(after)
            .filter(|chunk| !chunk.is_empty())
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.runs
            .front()
            .map_or(&[], |run| &run[self.index][self.sent..])
    }

    fn advance(&mut self, mut count: usize) {
        assert!(count <= self.remaining, "advanced past the end");
        self.remaining -= count;
        while count > 0 {
            let left = self.chunk().len();
            let step = count.min(left);
            self.sent += step;
            count -= step;
            self.settle();
        }
    }

    fn chunks_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slice, chunk) in slices.iter_mut().zip(self.unsent()) {
            *slice = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain scrapes of a body held compressed inflate it a few at a time: the next waits for
    /// a turn, and inflates without one once it has waited too long.
    #[tokio::test(start_paused = true)]
    async fn plain_scrapes_of_a_compressed_body_take_turns() {
        use crate::gzip::{Deflater, GzipHead};
        let text = "a{symbol=\"X\"} 1.0\n".repeat(5_000);
        let head = GzipHead::new([Deflater::new().deflate(text.as_bytes())]);
        let mut context = Context::from_waker(std::task::Waker::noop());
        // Whether the scrape sent a frame (or ended) rather than waited.
        let mut poll = |payload: &mut Payload| {
            let polled = Pin::new(payload).poll_frame(&mut context);
            polled.map(|frame| frame.map(|frame| frame.unwrap().into_data().unwrap().remaining()))
        };
        let mut scrapes: Vec<Payload> = (0..TURNS.available_permits())
            .map(|_| Payload::inflated(head.inflating(), Vec::new()))
            .collect();
        for scrape in &mut scrapes {
            assert!(poll(scrape).is_ready(), "a turn each");
        }
        let mut next = Payload::inflated(head.inflating(), Vec::new());
        assert!(poll(&mut next).is_pending(), "waits");
        let mut sent = 0;
        while let Poll::Ready(Some(len)) = poll(&mut scrapes[0]) {
            sent += len;
        }
        assert_eq!(
            sent + 16 * 1024,
            text.len(),
            "the rest of the body, then the end"
        );
        let mut last = Payload::inflated(head.inflating(), Vec::new());
        assert!(poll(&mut next).is_ready(), "the turn of the one that ended");
        assert!(poll(&mut last).is_pending(), "waits");
        tokio::time::advance(TURN_WAIT).await;
        assert!(poll(&mut last).is_ready(), "without a turn");
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
    fn payload_is_one_frame_of_its_chunks_and_reports_its_exact_size() {
        let shared: Arc<[Bytes]> = Arc::new([
            Bytes::new(),
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
        ]);
        let mut payload = Payload::new(shared, vec![Bytes::new(), Bytes::from_static(b"fgh")]);
        assert_eq!(payload.size_hint().exact(), Some(8));
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut payload).poll_frame(&mut context) else {
            panic!("a frame");
        };
        assert!(payload.is_end_stream());
        assert_eq!(payload.size_hint().exact(), Some(0));
        let mut chunks = frame.into_data().expect("data");
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(chunks.chunks_vectored(&mut slices), 2);
        assert_eq!((&*slices[0], &*slices[1]), (&b"abc"[..], &b"de"[..]));
        chunks.advance(4);
        assert_eq!((chunks.remaining(), chunks.chunk()), (4, &b"e"[..]));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(chunks.chunks_vectored(&mut slices), 2);
        assert_eq!(&*slices[1], b"fgh");
        assert_eq!(chunks.copy_to_bytes(4), Bytes::from_static(b"efgh"));
        assert!(Payload::own(vec![Bytes::new()]).is_end_stream());
    }
}

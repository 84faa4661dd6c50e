//! Answering one request from what was published: routing, /metrics with format and gzip
//! negotiation, the page and its JSON. What a scrape's body holds is `published`'s, how it is
//! sent `payload`'s; connections, authentication and the web configuration are `server`'s.

use std::time::Instant;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::payload::Payload;
use crate::apply::ApplyPublication;
use crate::exposition::Format;
use crate::page;
use crate::proposal::{self, SymbolError};
use crate::published::{HttpStats, Published};
use crate::view::Story;

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
        path if path.starts_with(STORY_PATH) => match story(&path[STORY_PATH.len()..], answer) {
            Ok(story) => {
                let json = serde_json::to_vec(&story).expect("a story is strings and numbers");
                page_response(page::JSON_CONTENT_TYPE, &json.into())
            }
            Err((status, message)) => json_error(status, message),
        },
        path if path.starts_with(SYMBOL_PAGE_PATH) => {
            match story(&path[SYMBOL_PAGE_PATH.len()..], answer) {
                Ok(story) => {
                    let poll = published.snapshot.poll_interval;
                    let html = page::symbol::symbol_page(&story, poll, telemetry_path);
                    page_response(page::HTML_CONTENT_TYPE, &html.into())
                }
                Err((status, message)) => text(status, format!("{message}\n")),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: see / for the endpoints\n",
        ),
    }
}

/// Where a symbol's story is served as JSON, and as a page; the symbol follows, percent-encoded.
const STORY_PATH: &str = "/api/v1/proposals/";
const SYMBOL_PAGE_PATH: &str = "/symbol/";

/// The story of the symbol `encoded` names; else why not: 400 for a name that cannot be a key
/// suffix, 404 for a symbol of which nothing is known. Neither repeats the name: nothing of the
/// URL is sent back.
fn story(encoded: &str, answer: &Answer<'_>) -> Result<Story, (StatusCode, String)> {
    let symbol = symbol_in(encoded)
        .map_err(|error| (StatusCode::BAD_REQUEST, format!("not a symbol: {error}")))?;
    let now = crate::civil::unix_now();
    let unknown = "no proposal, history or plan is known for this symbol";
    answer
        .published
        .story(&symbol, answer.apply, now)
        .ok_or_else(|| (StatusCode::NOT_FOUND, unknown.to_owned()))
}

/// The symbol a path names after its prefix, checked as a proposal key's suffix is.
fn symbol_in(encoded: &str) -> Result<String, SymbolError> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(encoded).collect();
    proposal::parse_symbol(bytes).map_err(|(error, _)| error)
}

fn json_error(status: StatusCode, message: String) -> Response<Payload> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = page_response(page::JSON_CONTENT_TYPE, &body.into());
    *response.status_mut() = status;
    response
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

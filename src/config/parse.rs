//! The value parsers of the flags: each turns a flag's text (or its env variable's) into a
//! value or a message saying what was expected. Knows the values' types, not the flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;

use super::{ExporterUrl, ListenAddress, LogFormat, NodeList, SymbolList};
use crate::proposal;
use crate::secret::Secret;
use crate::source::ReadFrom;

/// The exporter's JSON document, which `status --from` reads.
const PROPOSALS_PATH: &str = "/api/v1/proposals";

pub(super) fn trimmed(raw: &str) -> Result<String, String> {
    Ok(raw.trim().to_owned())
}

/// A password as given, trimmed; any text is one.
pub(super) fn password(raw: &str) -> Result<Secret, String> {
    Ok(Secret::new(raw.trim()))
}

/// A readable file, or empty for none (as `KEY=` in an env file means).
pub(super) fn readable_file(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    if !path.as_os_str().is_empty() {
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// A readable PEM file; unlike the exporter's settings there is no env file to leave it empty in.
pub(super) fn pem_file(raw: &str) -> Result<PathBuf, String> {
    let path = readable_file(raw)?;
    if path.as_os_str().is_empty() {
        return Err("expected a file".into());
    }
    Ok(path)
}

/// The password in a file, without the spaces and line end around it (as Prometheus reads its
/// `password_file`).
pub(super) fn password_file(raw: &str) -> Result<Secret, String> {
    let path = pem_file(raw)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(password))
}

pub(super) fn port(raw: &str) -> Result<u16, String> {
    match raw.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port number from 1 to 65535".into()),
    }
}

pub(super) fn database(raw: &str) -> Result<u32, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected a database number (0, 1, ...)".into())
}

pub(super) fn positive_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err("expected a whole number greater than 0".into()),
    }
}

/// A duration as Prometheus writes one (`500ms`, `2s`, `1m30s`, `1h`), or a bare number of
/// seconds (`5`, `0.5`) as the original exporter's env files give it; from a millisecond to a day.
pub(super) fn duration(raw: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a duration from 1ms to 24h: 500ms, 2s, 1m, 1h, 1m30s, or seconds (5, 0.5)";
    let text = raw.trim();
    let duration = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs)),
        Ok(_) => None,
        Err(_) => with_units(text),
    };
    match duration {
        Some(d) if (Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&d) => Ok(d),
        _ => Err(EXPECTED.into()),
    }
}

/// The most points of history kept per symbol: at 10,000 symbols, 1,000 points take some 200 MB.
pub(crate) const MAX_HISTORY_POINTS: usize = 1_000;

pub(super) fn history_points(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(points) if points <= MAX_HISTORY_POINTS => Ok(points),
        _ => Err(format!(
            "expected a whole number from 0 (no history) to {MAX_HISTORY_POINTS}"
        )),
    }
}

/// A duration as [`duration`] takes it, or 0 for no history.
pub(super) fn history_max_age(raw: &str) -> Result<Duration, String> {
    if raw.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    duration(raw).map_err(|expected| format!("{expected}; or 0 for no history"))
}

/// `<integer><unit>` terms, each unit (h, m, s, ms) at most once and from the largest down.
/// Hand-written because that is Prometheus' grammar: humantime, the usual crate, also takes
/// `1min`, `2 hours` and units in any order, which a Prometheus flag refuses.
fn with_units(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut rest = text;
    let mut millis: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (number, unit) = (&rest[..digits], &rest[digits..digits + letters]);
        let index = next_unit + UNITS[next_unit..].iter().position(|(u, _)| *u == unit)?;
        let value: u64 = number.parse().ok()?;
        millis = millis.checked_add(value.checked_mul(UNITS[index].1)?)?;
        next_unit = index + 1;
        rest = &rest[digits + letters..];
    }
    (!text.is_empty()).then(|| Duration::from_millis(millis))
}

pub(super) fn host(raw: &str) -> Result<String, String> {
    let host = raw.trim();
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || "/@?#".contains(c))
    {
        return Err("expected a host name or IP address".into());
    }
    Ok(host.to_owned())
}

/// A `redis://` or `rediss://` URL, or `host[:port]` for `redis://host[:port]` as redis_exporter
/// takes its address; empty for none.
pub(super) fn redis_url(raw: &str) -> Result<String, String> {
    use redis::IntoConnectionInfo;
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("redis://{raw}")
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("expected a redis:// or rediss:// URL, or host:port".into());
    }
    url.as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    Ok(url)
}

/// A DNS name or IP address a certificate can be issued for; empty for none.
pub(super) fn tls_server_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if !name.is_empty() && rustls::pki_types::ServerName::try_from(name).is_err() {
        return Err("expected the DNS name or IP address in the server's certificate".into());
    }
    Ok(name.to_owned())
}

/// Comma-separated `host:port` entries; an IPv6 host in brackets. Empty means none.
pub(super) fn node_list(raw: &str) -> Result<NodeList, String> {
    let mut nodes = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, port_text) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("{entry:?}: expected host:port"))?;
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if bare.is_none() && host.contains(':') {
            return Err(format!(
                "{entry:?}: write an IPv6 address in brackets, [::1]:26379"
            ));
        }
        let host = self::host(bare.unwrap_or(host)).map_err(|e| format!("{entry:?}: {e}"))?;
        let port = port(port_text).map_err(|e| format!("{entry:?}: {e}"))?;
        let node = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    Ok(NodeList(nodes))
}

pub(super) fn master_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err("expected the name the sentinels monitor, without spaces".into());
    }
    Ok(name.to_owned())
}

pub(super) fn read_from(raw: &str) -> Result<ReadFrom, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "primary" | "master" => Ok(ReadFrom::Primary),
        "replica" | "slave" => Ok(ReadFrom::Replica),
        "prefer-replica" => Ok(ReadFrom::PreferReplica),
        _ => Err("expected primary, replica or prefer-replica".into()),
    }
}

pub(super) fn prefix(raw: &str) -> Result<String, String> {
    let prefix = raw.trim();
    if prefix.is_empty() {
        return Err("the prefix must not be empty".into());
    }
    Ok(prefix.to_owned())
}

pub(super) fn stream_key(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err("the stream key must not be empty".into());
    }
    Ok(key.to_owned())
}

pub(super) fn symbol_list(raw: &str) -> Result<SymbolList, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(SymbolList(Vec::new()));
    }
    let mut symbols = Vec::new();
    for symbol in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        proposal::parse_symbol(symbol.as_bytes().to_vec())
            .map_err(|(e, _)| format!("{symbol:?}: {e}"))?;
        if !symbols.iter().any(|s| s == symbol) {
            symbols.push(symbol.to_owned());
        }
    }
    Ok(SymbolList(symbols))
}

/// Parses `status`'s SYMBOL as the exporter checks the symbols it reads.
pub(super) fn symbol(raw: &str) -> Result<String, String> {
    proposal::parse_symbol(raw.as_bytes().to_vec()).map_err(|(e, _)| format!("{raw:?}: {e}"))
}

pub(super) fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn log_level(raw: &str) -> Result<tracing::Level, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "error" | "critical" => Ok(tracing::Level::ERROR),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        "trace" => Ok(tracing::Level::TRACE),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or `:port` (every interface), the host an IP
/// literal or a name (`localhost`, a DNS name), resolved when binding.
pub(super) fn listen_address(raw: &str) -> Result<ListenAddress, String> {
    let raw = raw.trim();
    let ip = |host: IpAddr, port: Option<u16>| ListenAddress {
        host: host.to_string(),
        port,
    };
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(ip(addr.ip(), Some(addr.port())));
    }
    let bare = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return Ok(ip(addr, None));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some(("", port_text)) => {
            return Ok(ip(Ipv4Addr::UNSPECIFIED.into(), Some(port(port_text)?)));
        }
        Some((host, port_text)) => (host, Some(port(port_text)?)),
        None => (raw, None),
    };
    let valid_name = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_name {
        return Err(
            "expected an IP address or host name with an optional port, e.g. 127.0.0.1, localhost:8042, 0.0.0.0:8042 or [::1]:8042"
                .into(),
        );
    }
    Ok(ListenAddress {
        host: host.to_owned(),
        port,
    })
}

pub(super) fn telemetry_path(raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err("expected a path starting with /, e.g. /metrics".into());
    }
    if matches!(path, "/" | "/health" | "/ready" | PROPOSALS_PATH) {
        return Err(format!("{path} is taken by another endpoint"));
    }
    Ok(path.to_owned())
}

pub(super) fn log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "logfmt" => Ok(LogFormat::Logfmt),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected logfmt or json".into()),
    }
}

/// Parses `--from`.
pub(super) fn exporter_url(raw: &str) -> Result<ExporterUrl, String> {
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected e.g. http://127.0.0.1:8042"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err("expected an http:// or https:// URL, e.g. http://127.0.0.1:8042".into());
        }
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err(
            "expected http[s]://host[:port][/path]: give the user with --auth.username".into(),
        );
    }
    if uri.query().is_some() {
        return Err("expected http[s]://host[:port][/path], without a query".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let path = format!("{}{PROPOSALS_PATH}", uri.path().trim_end_matches('/'));
    path.parse::<Uri>().map_err(|e| format!("bad path: {e}"))?;
    Ok(ExporterUrl {
        tls,
        authority: authority.as_str().to_owned(),
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses_are_urls_or_host_and_port() {
        for (raw, url) in [
            ("redis://10.0.0.5:6380/2", "redis://10.0.0.5:6380/2"),
            (" rediss://redis.internal\r", "rediss://redis.internal"),
            ("10.0.0.5:6380", "redis://10.0.0.5:6380"),
            ("[::1]:6379", "redis://[::1]:6379"),
            ("localhost", "redis://localhost"),
            ("", ""),
        ] {
            assert_eq!(redis_url(raw).as_deref(), Ok(url), "{raw:?}");
        }
        for bad in [
            "http://10.0.0.5",
            "unix:///run/redis.sock",
            "host:port",
            "host:6379/x",
        ] {
            assert!(redis_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_take_units_or_bare_seconds() {
        let ms = |n| Duration::from_millis(n);
        for (text, expected) in [
            ("500ms", ms(500)),
            ("2s", ms(2_000)),
            ("1m", ms(60_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1h0m5s250ms", ms(3_605_250)),
            (" 24h\r", ms(86_400_000)),
            ("5", ms(5_000)),
            ("0.5", ms(500)),
            ("0.001", ms(1)),
            ("1ms", ms(1)),
        ] {
            assert_eq!(duration(text), Ok(expected), "{text:?}");
        }
        for bad in [
            "",
            "0",
            "0s",
            "-1",
            "-1s",
            "1e9",
            "nan",
            "inf",
            "soon",
            "1.5s",
            "5 s",
            "s",
            "1s1m",
            "1m1m",
            "1d",
            "25h",
            "1x",
            "ms",
            "0.0001",
            "99999999999999999999h",
        ] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn from_urls() {
        let url = exporter_url("http://127.0.0.1:8042").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8042, "/api/v1/proposals")
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:8042/api/v1/proposals");
        let url = exporter_url(" http://[::1]:9000/harvest/ ").unwrap();
        assert_eq!(
            (url.host.as_str(), url.authority.as_str(), url.path.as_str()),
            ("::1", "[::1]:9000", "/harvest/api/v1/proposals")
        );
        assert_eq!(exporter_url("http://exporter.internal").unwrap().port, 80);
        let url = exporter_url("https://exporter.internal/").unwrap();
        assert_eq!((url.tls, url.port), (true, 443));
        assert_eq!(
            url.to_string(),
            "https://exporter.internal/api/v1/proposals"
        );
        for bad in [
            "ftp://127.0.0.1:8042",
            "127.0.0.1:8042",
            "http://u:p@host",
            "http://host/?x=1",
            "",
            "http://",
        ] {
            assert!(exporter_url(bad).is_err(), "{bad}");
        }
    }
}

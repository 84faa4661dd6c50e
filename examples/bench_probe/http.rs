//! HTTP measurements over plain sockets: single scrapes, reading gauges out of a body, and the
//! freshness probe. One connection per request with `Connection: close`, so that every server is
//! read the same way (to end of stream) whatever framing it chooses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harvest_exporter::config::DEFAULT_PREFIX;

use crate::{Options, latency_summary, percentile, sorted};

pub fn send(port: u16, gzip: bool, timeout: Duration) -> std::io::Result<TcpStream> {
    get(port, "/metrics", gzip, timeout)
}

/// Sends `GET path` with `Connection: close`, the answer left to read.
pub fn get(port: u16, path: &str, gzip: bool, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench_probe\r\n{encoding}Connection: close\r\n\r\n"
    )?;
    Ok(stream)
}

/// Reads a whole response and returns its status and the bytes after the head.
fn drain(stream: TcpStream) -> std::io::Result<(u16, u64)> {
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let (status, _) = read_head(&mut reader)?;
    let body = std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok((status, body))
}

/// Reads a response's head, up to its blank line or the end of the stream: the status, and the
/// `Content-Length` when there is one.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Option<u64>)> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {status_line:?}")))?;
    let mut length = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line == b"\r\n" {
            break;
        }
        if let Some((name, value)) = std::str::from_utf8(&line)
            .ok()
            .and_then(|line| line.split_once(':'))
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    Ok((status, length))
}

/// Scrapes one after another, each on an otherwise idle server: the latency one Prometheus sees.
/// `--path` asks for another endpoint than /metrics the same way.
pub fn scrape(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("port", None)?;
    let path = options.text("path").unwrap_or("/metrics");
    let gzip = options.flag("gzip");
    let count: usize = options.number("count", Some(30))?;
    let budget = options.seconds("secs", Some(2.0))?;
    let timeout = options.seconds("timeout", Some(10.0))?;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut bytes = 0;
    while latencies.len() < count {
        let begun = Instant::now();
        let outcome = get(port, path, gzip, timeout).and_then(drain);
        match outcome {
            Ok((200, body)) => {
                latencies.push(begun.elapsed().as_secs_f64() * 1e3);
                bytes = body;
            }
            Ok((status, _)) => return Err(format!("HTTP status {status}")),
            Err(error) if is_timeout(&error) => {
                println!("count={} timeout=1", latencies.len());
                return Ok(());
            }
            Err(error) => return Err(error.to_string()),
        }
        // At least three samples when they fit in twice the budget; one when scrapes are slow.
        let spent = started.elapsed();
        if (spent >= budget && latencies.len() >= 3) || spent >= budget * 2 {
            break;
        }
    }
    let s = sorted(latencies);
    println!(
        "count={} timeout=0 p50_ms={:.4} p99_ms={:.4} min_ms={:.4} max_ms={:.4} wire_bytes={bytes}",
        s.len(),
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s[0],
        s[s.len() - 1],
    );
    Ok(())
}

/// How much of a symbol's story the exporter tells at `/api/v1/proposals/{symbol}`: the points
/// of its history and its events.
pub fn story(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("port", None)?;
    let symbol = options.text("symbol")?;
    let path = format!("/api/v1/proposals/{symbol}");
    let stream = get(port, &path, false, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let (status, _) = read_head(&mut reader).map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{path}: HTTP status {status}"));
    }
    let story: serde_json::Value =
        serde_json::from_reader(reader).map_err(|e| format!("{path}: {e}"))?;
    let count = |key: &str| story[key].as_array().map_or(0, Vec::len);
    println!("points={} events={}", count("history"), count("events"));
    Ok(())
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads unlabelled samples (`name value`) from `--samples` scrapes `--every` seconds apart and
/// prints the median of each, so that one unlucky refresh does not decide a figure; with
/// `--max`, the largest too (`name_max=`).
pub fn values(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("port", None)?;
    let names: Vec<&str> = options.text("names")?.split(',').collect();
    let samples: usize = options.number("samples", Some(1))?;
    let every = options.seconds("every", Some(0.0))?;
    let with_max = options.flag("max");
    let mut seen: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for sample in 0..samples {
        if sample > 0 {
            std::thread::sleep(every);
        }
        let stream = send(port, false, Duration::from_secs(30)).map_err(|e| e.to_string())?;
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| e.to_string())?
                == 0
            {
                break;
            }
            for (name, values) in names.iter().zip(seen.iter_mut()) {
                let value = line
                    .strip_prefix(name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b" "))
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse().ok());
                if let Some(value) = value {
                    values.push(value);
                }
            }
        }
    }
    let fields: Vec<String> = names
        .iter()
        .zip(seen)
        .map(|(name, values)| match values.len() {
            0 => format!("{name}=nan"),
            _ => {
                let values = sorted(values);
                let median = format!("{name}={}", percentile(&values, 50.0));
                match values.last() {
                    Some(max) if with_max => format!("{median} {name}_max={max}"),
                    _ => median,
                }
            }
        })
        .collect();
    println!("{}", fields.join(" "));
    Ok(())
}

/// Time from an `HSET` of a symbol's kill score to the new value in `/metrics`: each trial waits
/// a random part of `--pace` first, so that writes land at every phase of the refresh cycle, then
/// writes a value never used before and polls every millisecond until the body shows it.
pub fn fresh(options: &Options) -> Result<(), String> {
    let redis_port: u16 = options.number("redis-port", None)?;
    let port: u16 = options.number("port", None)?;
    let symbol = options.text("symbol")?;
    let trials: usize = options.number("trials", None)?;
    let budget = options.seconds("budget", None)?;
    let pace = options.seconds("pace", None)?;
    let timeout = options.seconds("timeout", None)?;
    let gap = options.seconds("gap", Some(0.001))?;

    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/0"))
        .map_err(|e| e.to_string())?;
    let mut redis = client.get_connection().map_err(|e| e.to_string())?;
    let key = format!("{DEFAULT_PREFIX}{symbol}");
    let needle = format!("quantum_harvest_kill_score{{symbol=\"{symbol}\"}} ");
    let mut rng = fastrand::Rng::with_seed(7);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut timeouts = 0;
    let mut polls = 0u64;
    for trial in 0..trials {
        if trial > 0 && started.elapsed() > budget {
            break;
        }
        std::thread::sleep(pace.mul_f64(rng.f64()));
        // Six significant digits without a trailing zero print back exactly as written.
        let value = format!("0.6{:04}7", (trial * 7_919 + rng.usize(..10_000)) % 10_000);
        let written = Instant::now();
        redis::cmd("HSET")
            .arg(&key)
            .arg("kill_score")
            .arg(&value)
            .exec(&mut redis)
            .map_err(|e| e.to_string())?;
        loop {
            polls += 1;
            if shows(port, &needle, &value)? {
                latencies.push(written.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if written.elapsed() > timeout {
                timeouts += 1;
                break;
            }
            std::thread::sleep(gap);
        }
    }
    println!(
        "trials={} timeouts={timeouts} polls={polls} {}",
        latencies.len(),
        latency_summary(latencies),
    );
    Ok(())
}

/// Whether the body's `needle` line carries `value`. Reads only until that line (the first
/// symbol's kill score is near the top) and then drops the connection.
fn shows(port: u16, needle: &str, value: &str) -> Result<bool, String> {
    const LIMIT: usize = 256 * 1024;
    let mut stream = send(port, false, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut seen = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    while seen.len() < LIMIT {
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..read]);
        let Some(at) = find(&seen, needle.as_bytes()) else {
            continue;
        };
        let rest = &seen[at + needle.len()..];
        if let Some(end) = rest.iter().position(|&b| b == b'\n') {
            return Ok(&rest[..end] == value.as_bytes());
        }
    }
    Ok(false)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

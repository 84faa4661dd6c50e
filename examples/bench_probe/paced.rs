//! Latency at a fixed request rate, well below what either server can take. wrk sends each
//! request as the last answer arrives: on two cores it shares with the server, whichever side is
//! slower sets the pace and the other's threads wait for a core, which wrk counts as latency.
//! Here requests are due on a clock, on keep-alive connections (one thread each), and each is
//! timed from when it was due, so that a stall of the server shows however short it is.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::http::read_head;
use crate::{Options, latency_summary};

/// `--rate` requests a second in all, for `--secs`, over `--connections` connections whose
/// requests are staggered; prints the count and the latency percentiles.
pub fn paced(options: &Options) -> Result<(), String> {
    let port: u16 = options.number("port", None)?;
    let gzip = options.flag("gzip");
    let rate: f64 = options.number("rate", None)?;
    let secs = options.seconds("secs", Some(3.0))?;
    let connections: u32 = options.number("connections", Some(4))?;
    if !(rate.is_finite() && rate > 0.0) || connections == 0 {
        return Err("--rate and --connections must be positive".into());
    }
    let every = Duration::from_secs_f64(f64::from(connections) / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + secs;
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let first = start + every * i / connections;
            thread::spawn(move || requests(port, gzip, first, every, end))
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        let done = worker
            .join()
            .map_err(|_| "a connection's thread panicked".to_owned())?;
        latencies.extend(done.map_err(|e| e.to_string())?);
    }
    println!(
        "rate={rate} count={} {}",
        latencies.len(),
        latency_summary(latencies)
    );
    Ok(())
}

/// One connection's requests, every `every` from `first` until `end`, each timed from when it
/// was due: an answer that comes late delays the next request, and that wait counts too.
fn requests(
    port: u16,
    gzip: bool,
    first: Instant,
    every: Duration,
    end: Instant,
) -> std::io::Result<Vec<f64>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench_probe\r\n{encoding}\r\n"
    );
    let mut latencies = Vec::new();
    let mut due = first;
    while due < end {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        writer.write_all(request.as_bytes())?;
        read_response(&mut reader)?;
        latencies.push(due.elapsed().as_secs_f64() * 1e3);
        due += every;
    }
    Ok(latencies)
}

/// Reads one `200` response framed by `Content-Length`, as both servers frame `/metrics`.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let unexpected = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let (status, length) = read_head(reader)?;
    if status != 200 {
        return Err(unexpected(format!("HTTP status {status}")));
    }
    let length = length.ok_or_else(|| unexpected("no Content-Length".into()))?;
    if std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())? != length {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

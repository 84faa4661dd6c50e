//! The end of every scrape: the values known only when it is answered (the cache's age, the HTTP
//! server's connections and reloads, the process's figures), written after the bodies rendered
//! before it. How they are read, and how the bytes are sent, is not its business.

use std::time::Duration;

use crate::exposition::{Family, Format, Writer};
use crate::process::ProcessStats;

/// The HTTP server's figures, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct HttpStats {
    pub(crate) open: f64,
    pub(crate) evicted: f64,
    /// Whether the last reload of the web configuration file succeeded (true before any).
    pub(crate) config_reload_ok: bool,
    pub(crate) config_reload_success_unix: f64,
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
pub(super) fn scrape_tail(
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
}

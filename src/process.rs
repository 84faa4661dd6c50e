//! Reads the exporter's own resource use from /proc for the standard `process_*` metrics.
//! Linux only; elsewhere it reports nothing. Hand-written: six numbers from three small files do
//! not justify a /proc crate and its dependencies.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exposition::{Family, Writer};

/// The process's own resource use, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: Option<f64>,
}

const CPU: Family = Family::counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const RESIDENT_MEMORY: Family = Family::gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const VIRTUAL_MEMORY: Family = Family::gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
);
const OPEN_FDS: Family = Family::gauge("process_open_fds", "Number of open file descriptors.");
const MAX_FDS: Family = Family::gauge(
    "process_max_fds",
    "Maximum number of open file descriptors.",
);
const START_TIME: Family = Family::gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
);

impl ProcessStats {
    /// The standard `process_*` families, as the Prometheus client libraries name them.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.family(&CPU).value(self.cpu_seconds);
        w.family(&RESIDENT_MEMORY).value(self.resident_memory_bytes);
        w.family(&VIRTUAL_MEMORY).value(self.virtual_memory_bytes);
        w.family(&OPEN_FDS).value(self.open_fds);
        w.family(&MAX_FDS).value(self.max_fds);
        if let Some(start_time) = self.start_time_seconds {
            w.family(&START_TIME).value(start_time);
        }
    }
}

/// USER_HZ, the unit of the CPU times in /proc/<pid>/stat; fixed at 100 by the Linux ABI.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// How long a sample is reused: scrapes can come thousands of times a second, and reading four
/// /proc files (one a directory of every open descriptor) each time would cost more than the
/// rest of the scrape.
const REUSE_FOR: Duration = Duration::from_secs(1);

/// Figures at most [`REUSE_FOR`] old, or `None` where /proc is not available.
pub(crate) fn recent() -> Option<ProcessStats> {
    static LAST: Mutex<Option<(Instant, ProcessStats)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((taken, stats)) = *last
        && taken.elapsed() < REUSE_FOR
    {
        return Some(stats);
    }
    let stats = sample()?;
    *last = Some((Instant::now(), stats));
    Some(stats)
}

/// Reads the current figures, or `None` where /proc is not available.
fn sample() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field numbers from proc(5), minus the two (pid and comm) before the ')'.
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    let virtual_memory_bytes = field(23)?;

    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let resident_kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;

    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0.0);

    Some(ProcessStats {
        cpu_seconds: cpu_ticks / CLOCK_TICKS_PER_SECOND,
        resident_memory_bytes: resident_kib * 1024.0,
        virtual_memory_bytes,
        open_fds,
        max_fds,
        start_time_seconds: boot_time().map(|boot| boot + start_ticks / CLOCK_TICKS_PER_SECOND),
    })
}

/// The boot time from /proc/stat, read once. `None` where the service may see only its own
/// process in /proc (systemd's ProcSubset=pid): then only the start time is left out.
fn boot_time() -> Option<f64> {
    static BOOT_TIME: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *BOOT_TIME.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_plausible_figures() {
        let stats = super::recent().expect("/proc is readable on Linux");
        assert!(stats.resident_memory_bytes > 1e5);
        assert!(stats.open_fds >= 3.0);
        assert!(stats.max_fds >= stats.open_fds);
        assert!(stats.start_time_seconds.unwrap() > 1.5e9);
    }
}

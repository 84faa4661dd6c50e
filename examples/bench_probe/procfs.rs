//! Per-process figures from /proc (Linux only, as the benchmark is).

use std::fs;

/// CPU time of all live threads in nanoseconds, from schedstat: finer than the 10 ms ticks of
/// /proc/<pid>/stat, which matters for refreshes that take a fraction of a millisecond. Threads
/// that exit inside a window lose their time, so windows are kept shorter than the runtime's
/// idle-thread lifetime.
pub fn cpu_ns(pid: u32) -> Result<u64, String> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("pid {pid}: {e}"))?;
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        if let Ok(text) = fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// User and system CPU of the whole process in milliseconds, from /proc/<pid>/stat: coarse
/// (10 ms ticks) but split by mode, and it keeps the time of threads that have exited.
pub fn cpu_split_ms(pid: u32) -> Result<(f64, f64), String> {
    let stat =
        fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("pid {pid}: {e}"))?;
    // Fields after the command name, which may hold spaces, start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> Result<f64, String> {
        fields
            .get(index)
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| format!("pid {pid}: short stat"))
    };
    // utime and stime are fields 14 and 15 of proc(5); the first after ')' is field 3.
    Ok((ticks(11)? * 10.0, ticks(12)? * 10.0))
}

fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("pid {pid}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("pid {pid}: no {field} in status"))
}

/// Peak resident set since the last [`reset_peak`], in bytes.
pub fn peak_rss(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Restarts the peak-RSS watermark at the current RSS (proc(5), clear_refs value 5).
pub fn reset_peak(pid: u32) -> Result<(), String> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").map_err(|e| format!("pid {pid}: {e}"))
}

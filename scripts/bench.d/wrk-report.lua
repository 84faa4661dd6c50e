-- Prints wrk's results as one line of key=value pairs for scripts/bench; times in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d socket_errors=%d timeouts=%d status_errors=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

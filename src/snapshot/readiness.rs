//! Whether a snapshot's data can be trusted: its age, and the readiness rule that a probe or a
//! load balancer reads. The transitions that set what it judges are `snapshot`'s.

use std::time::{Duration, Instant};

use super::Snapshot;

/// Data older than this many poll intervals makes the exporter not ready.
const STALE_AFTER_POLLS: u32 = 3;

impl Snapshot {
    /// Seconds since the data was last read from Redis (since start-up if it never was).
    pub fn cache_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_success.unwrap_or(self.started))
    }

    /// Whether the process can be trusted to serve current data, as a readiness probe or a load
    /// balancer asks: `Err` with every reason when Redis is unreachable or the data is older than
    /// a few poll intervals (another exporter would do better), else `Ok` with the problems of
    /// the data itself, such as configured symbols without a hash, which no other exporter of
    /// the same Redis would fix and which the metrics and alerts already report.
    pub fn readiness(&self, now: Instant) -> Result<Vec<String>, Vec<String>> {
        let mut reasons = Vec::new();
        if !self.redis_up {
            let cause = self
                .redis_error
                .as_deref()
                .unwrap_or("no refresh has completed yet");
            reasons.push(format!("redis unreachable: {cause}"));
        }
        let age = self.cache_age(now);
        if self.last_success.is_none() {
            reasons.push("no data read from redis yet".to_owned());
        } else if age > self.poll_interval * STALE_AFTER_POLLS {
            reasons.push(format!(
                "data is {:.1}s old (more than {STALE_AFTER_POLLS} poll intervals of {:.1}s)",
                age.as_secs_f64(),
                self.poll_interval.as_secs_f64()
            ));
        }
        let mut data_problems = Vec::new();
        if !self.missing.is_empty() {
            data_problems.push(format!(
                "configured symbols without a proposal: {}",
                self.missing.join(", ")
            ));
        }
        if reasons.is_empty() {
            Ok(data_problems)
        } else {
            reasons.extend(data_problems);
            Err(reasons)
        }
    }
}

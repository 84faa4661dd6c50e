//! The kit's lines, drawn once: the kill-score bands and when data is stale, as the alerting
//! rules (`deploy/prometheus/config.yml`), the page, `status` and the history's events use them.
//! Owns no data; how a band is shown is `view`'s.

/// Kill scores from here up are high (red), as on the dashboard and in the alerting rules.
pub(crate) const KILL_HIGH: f64 = 0.6;
/// Kill scores from here up are critical (dark red), as in the critical alerting rule.
pub(crate) const KILL_CRITICAL: f64 = 0.8;
/// The publisher rewrites every hash at least once a minute, so older data means it stopped.
pub(crate) const STALE_AFTER_SECONDS: f64 = 60.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KillBand {
    Low,
    High,
    Critical,
}

impl KillBand {
    pub(crate) fn of(kill_score: f64) -> KillBand {
        if kill_score >= KILL_CRITICAL {
            KillBand::Critical
        } else if kill_score >= KILL_HIGH {
            KillBand::High
        } else {
            KillBand::Low
        }
    }

    /// The CSS class the page gives it; the page's script uses the same names.
    pub(crate) fn class(self) -> &'static str {
        match self {
            KillBand::Low => "k-low",
            KillBand::High => "k-high",
            KillBand::Critical => "k-crit",
        }
    }

    /// The line a kill score crosses to enter this band from below; `None` for the lowest.
    pub(crate) fn floor(self) -> Option<f64> {
        match self {
            KillBand::Low => None,
            KillBand::High => Some(KILL_HIGH),
            KillBand::Critical => Some(KILL_CRITICAL),
        }
    }
}

/// A proposal's data age at `now_unix`, from its last update; `None` when it carries no usable
/// time at all (a missing heartbeat and `computed_at` leave the epoch at 0: unknown, not 56
/// years).
pub(crate) fn data_age(last_update_epoch: f64, now_unix: f64) -> Option<f64> {
    (last_update_epoch > 0.0).then(|| (now_unix - last_update_epoch).max(0.0))
}

/// Whether data of that age is stale: too old, or of no known age.
pub(crate) fn is_stale(age_seconds: Option<f64>) -> bool {
    age_seconds.is_none_or(|age| age > STALE_AFTER_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kit's alerting rules are generated from `deploy/prometheus/config.yml`: the page's
    /// colours and the history's events must draw the same lines.
    #[test]
    fn the_lines_are_the_kits() {
        let config: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../deploy/prometheus/config.yml")).unwrap();
        let number = |key: &str| config[key].as_f64().unwrap_or_else(|| panic!("{key}"));
        assert_eq!(number("kill_score_high"), KILL_HIGH);
        assert_eq!(number("kill_score_critical"), KILL_CRITICAL);
        assert_eq!(number("stale_seconds"), STALE_AFTER_SECONDS);
    }

    #[test]
    fn bands_and_staleness() {
        assert_eq!(KillBand::of(0.59), KillBand::Low);
        assert_eq!(KillBand::of(0.6), KillBand::High);
        assert_eq!(KillBand::of(0.8), KillBand::Critical);
        assert_eq!(KillBand::Critical.floor(), Some(0.8));
        assert_eq!(data_age(0.0, 100.0), None);
        assert_eq!(data_age(90.0, 100.0), Some(10.0));
        assert!(is_stale(None) && is_stale(Some(61.0)) && !is_stale(Some(60.0)));
    }
}

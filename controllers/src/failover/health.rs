//! A region's health from its probes.
//!
//! Contract: pure. A [`Tracker`] counts consecutive failed and successful probes: a region is
//! [`Health::Down`] after `threshold` consecutive failures and [`Health::Healthy`] after as many
//! consecutive successes; until either has happened it is [`Health::Unknown`]. A single probe
//! never flips a region, so health flapping faster than the threshold moves nothing. The time of
//! the first failure of the current streak is kept: a failover's recovery time counts from it.

use chrono::{DateTime, Utc};

/// A region's health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// Not probed enough yet.
    #[default]
    Unknown,
    /// `threshold` consecutive successful probes.
    Healthy,
    /// `threshold` consecutive failed probes.
    Down,
}

impl Health {
    /// As written in `status.regions[].health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "Unknown",
            Health::Healthy => "Healthy",
            Health::Down => "Down",
        }
    }
}

/// Probe counts of one region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    /// Current health.
    pub health: Health,
    /// Consecutive failed probes.
    pub failures: u32,
    /// Consecutive successful probes.
    pub successes: u32,
    /// When the current failure streak began.
    pub failing_since: Option<DateTime<Utc>>,
    /// What the last failed probe saw.
    pub last_error: Option<String>,
    /// When the region was last probed.
    pub last_probe: Option<DateTime<Utc>>,
}

impl Tracker {
    /// Counts one probe's `outcome` at `now`; returns the new health when it changed.
    pub fn observe(&mut self, outcome: Result<(), String>, now: DateTime<Utc>, threshold: u32) -> Option<Health> {
        let threshold = threshold.max(1);
        self.last_probe = Some(now);
        let before = self.health;
        match outcome {
            Ok(()) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                self.failing_since = None;
                if self.successes >= threshold {
                    self.health = Health::Healthy;
                }
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.failing_since.get_or_insert(now);
                self.last_error = Some(error);
                if self.failures >= threshold {
                    self.health = Health::Down;
                }
            }
        }
        (self.health != before).then_some(self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("time")
    }

    #[test]
    fn down_after_threshold_failures_and_healthy_after_as_many_successes() {
        let mut t = Tracker::default();
        assert_eq!(t.observe(Ok(()), at(0), 3), None);
        assert_eq!(t.observe(Ok(()), at(2), 3), None);
        assert_eq!(t.observe(Ok(()), at(4), 3), Some(Health::Healthy));
        assert_eq!(t.observe(Err("refused".into()), at(6), 3), None);
        assert_eq!(t.observe(Err("refused".into()), at(8), 3), None);
        assert_eq!(t.observe(Err("timeout".into()), at(10), 3), Some(Health::Down));
        assert_eq!(t.failing_since, Some(at(6)));
        assert_eq!(t.last_error.as_deref(), Some("timeout"));
        assert_eq!(t.observe(Ok(()), at(12), 3), None);
        assert_eq!(t.health, Health::Down);
        assert_eq!(t.failing_since, None);
        t.observe(Ok(()), at(14), 3);
        assert_eq!(t.observe(Ok(()), at(16), 3), Some(Health::Healthy));
    }

    #[test]
    fn flapping_faster_than_the_threshold_never_goes_down() {
        let mut t = Tracker::default();
        for i in 0..3 {
            t.observe(Ok(()), at(i), 3);
        }
        for i in 0..50 {
            let outcome = if i % 3 == 2 { Ok(()) } else { Err("flap".to_string()) };
            assert_eq!(t.observe(outcome, at(10 + i), 3), None, "probe {i}");
        }
        assert_eq!(t.health, Health::Healthy);
    }
}

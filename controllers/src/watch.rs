//! The retry policy of every watch the operator runs (its Mall watch, the child caches, member
//! clusters' caches, the autoscaler's Mall watch).
//!
//! Contract: [`backoff`] retries a failing watch after 0.5 s, doubling up to 5 s (plus up to as
//! much again of jitter), and starts over after any successful event. kube-runtime's default
//! (client-go's: up to 30 s, plus jitter) left the operator blind for about 100 s after its API
//! server was restarted: the new server answers 403 until its RBAC cache is warm and 410
//! Expired to the old resource versions, and every such answer doubled the wait
//! (`tests/tests/operator_faults.rs`). At worst this relists each watch every 10 s while the API
//! server is down, which a handful of watches can afford.

use kube::runtime::watcher::ExponentialBackoff;
use std::time::Duration;

/// The shortest wait after a failure.
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// The longest wait after a failure, before jitter.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// A fresh backoff for one watch stream (see the module documentation).
pub fn backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff as _;

    #[test]
    fn doubles_to_a_cap_and_starts_over() {
        let mut b = backoff();
        let delays: Vec<Duration> = b.by_ref().take(12).collect();
        assert!(delays[0] >= MIN_DELAY && delays[0] <= 2 * MIN_DELAY, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 2 * MAX_DELAY), "{delays:?}");
        assert!(delays[8..].iter().all(|d| *d >= MAX_DELAY), "not capped at {MAX_DELAY:?}: {delays:?}");
        b.reset();
        assert!(b.next().is_some_and(|d| d <= 2 * MIN_DELAY));
    }
}

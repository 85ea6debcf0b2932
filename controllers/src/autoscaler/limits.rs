//! Scale-down stabilization and scale-up/scale-down rate limits of one tier
//! (`spec.autoscaling.scaleDown` / `scaleUp`).
//!
//! Contract: pure state machine. [`Limiter::apply`] turns a recommendation into the replicas
//! allowed now and says which limit bound it; it never moves away from the recommendation
//! (a limit only slows a change down). `hold_down` keeps the highest observed need since it was
//! raised; the scale-down limits (stabilization, rate, hold) protect serving capacity: they hold
//! Ready replicas and replicas the observed load needs, but
//! replicas still starting that neither the recommendation nor the observed need wants (a
//! forecast the newer data no longer supports) are withdrawn at once — they serve nothing yet.

use std::collections::VecDeque;

/// Limit parameters (from the spec).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Window whose highest recommendation bounds a scale-down, seconds.
    pub stabilization: f64,
    /// Most replicas removed per minute, percent of the count a minute ago (at least one pod).
    pub down_percent_per_minute: f64,
    /// Most growth factor per step.
    pub up_factor: f64,
    /// Pods that may always be added per step.
    pub up_min_pods: i32,
    /// Scale-down goes straight to the stabilized value, without the per-minute rate: the
    /// replicas above it are a reservation no observed load used (an event's capacity whose hold
    /// ended), not serving capacity in use.
    pub release_reservation: bool,
}

/// What bound the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The recommendation was applied as is.
    None,
    /// Scale-up capped by `scaleUp`.
    UpRate,
    /// Scale-down held by the stabilization window.
    Stabilization,
    /// Scale-down slowed by `maxPercentPerMinute`.
    DownRate,
    /// Scale-down refused: a surge is active or data is missing.
    Hold,
    /// Starting replicas withdrawn; Ready ones (or the observed need) held by a scale-down limit.
    Withdrawn,
}

/// Stabilization and rate-limit memory of one tier.
#[derive(Clone, Debug, Default)]
pub struct Limiter {
    recommendations: VecDeque<(f64, i32)>,
    decided: VecDeque<(f64, i32)>,
    /// Highest observed need since `hold_down` was last raised (0 when not holding).
    held_need: i32,
}

const MINUTE: f64 = 60.0;

impl Limiter {
    /// Replicas allowed at `now` given the `current` replicas and the recommendation `rec`.
    /// `observed_need` (≤ `rec`) is what enters the stabilization window: the replicas the
    /// observed load needs, without forecasts, so a projection that did not materialise is not
    /// held for a whole window. `ready` (≤ `current`) of the current replicas serve; the others
    /// are starting and may be withdrawn down to the Ready count, the recommendation and the
    /// observed need of the stabilization window, whichever is highest.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        now: f64,
        current: i32,
        ready: i32,
        rec: i32,
        observed_need: i32,
        hold_down: bool,
        limits: &Limits,
    ) -> (i32, Bound) {
        self.recommendations.push_back((now, observed_need.min(rec)));
        while self.recommendations.front().is_some_and(|&(t, _)| t <= now - limits.stabilization) {
            self.recommendations.pop_front();
        }
        while self.decided.front().is_some_and(|&(t, _)| t <= now - MINUTE) {
            self.decided.pop_front();
        }
        // A hold (active surge, latency breach) keeps the highest observed need since it began,
        // whatever the window; replicas only a forecast asked for go at the scale-down rate.
        self.held_need = if hold_down { self.held_need.max(observed_need.min(rec)) } else { 0 };
        let window = self.recommendations.iter().map(|&(_, r)| r).max().unwrap_or(rec);
        let stabilized = window.max(self.held_need);
        let (mut to, mut bound) = if rec > current {
            let by_factor = (f64::from(current) * limits.up_factor).ceil() as i32;
            let cap = by_factor.max(current.saturating_add(limits.up_min_pods));
            if rec > cap { (cap, Bound::UpRate) } else { (rec, Bound::None) }
        } else if rec == current {
            (current, Bound::None)
        } else {
            let stabilized = stabilized.min(current);
            let minute_ago = self.decided.iter().map(|&(_, r)| r).max().unwrap_or(current).max(current);
            let by_percent = (f64::from(minute_ago) * (1.0 - limits.down_percent_per_minute / 100.0)).ceil() as i32;
            let floor = if limits.release_reservation { rec } else { by_percent.min(minute_ago - 1) };
            if stabilized > rec && stabilized >= floor {
                (stabilized, if self.held_need > window { Bound::Hold } else { Bound::Stabilization })
            } else if floor > rec {
                (floor.min(current), Bound::DownRate)
            } else {
                (rec, Bound::None)
            }
        };
        let keep = ready.max(stabilized).max(rec);
        if to > keep {
            (to, bound) = (keep, Bound::Withdrawn);
        }
        self.decided.push_back((now, to));
        (to, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        stabilization: 300.0,
        down_percent_per_minute: 20.0,
        up_factor: 4.0,
        up_min_pods: 4,
        release_reservation: false,
    };

    #[test]
    fn scale_up_is_capped_per_step() {
        let mut l = Limiter::default();
        assert_eq!(l.apply(0.0, 2, 2, 100, 100, false, &LIMITS), (8, Bound::UpRate), "max(2*4, 2+4)");
        assert_eq!(l.apply(5.0, 8, 8, 100, 100, false, &LIMITS), (32, Bound::UpRate));
        assert_eq!(l.apply(10.0, 32, 32, 100, 100, false, &LIMITS), (100, Bound::None));
        assert_eq!(Limiter::default().apply(0.0, 0, 0, 3, 3, false, &LIMITS), (3, Bound::None), "+4 pods from zero");
    }

    #[test]
    fn scale_down_waits_for_the_window_then_goes_at_the_rate() {
        let mut l = Limiter::default();
        assert_eq!(l.apply(0.0, 100, 100, 100, 100, false, &LIMITS).0, 100);
        let mut current = 100;
        let mut t = 15.0;
        while t < 300.0 {
            let (to, bound) = l.apply(t, current, current, 10, 10, false, &LIMITS);
            assert_eq!((to, bound), (100, Bound::Stabilization), "at {t}");
            t += 15.0;
        }
        // The 100 recommendation left the window: now 20 % per minute.
        let (to, bound) = l.apply(300.0, current, current, 10, 10, false, &LIMITS);
        assert_eq!((to, bound), (80, Bound::DownRate));
        current = to;
        let (to, _) = l.apply(315.0, current, current, 10, 10, false, &LIMITS);
        assert_eq!(to, 80, "still within the minute of the 100");
        let (to, _) = l.apply(361.0, current, current, 10, 10, false, &LIMITS);
        assert_eq!(to, 64);
    }

    #[test]
    fn hold_keeps_the_observed_need_and_small_counts_still_shrink() {
        let fast = Limits { stabilization: 0.0, ..LIMITS };
        let mut l = Limiter::default();
        assert_eq!(l.apply(0.0, 10, 10, 10, 10, true, &fast), (10, Bound::None));
        // A dip during the hold: the need seen since it began is kept even without a window.
        assert_eq!(l.apply(5.0, 10, 10, 3, 3, true, &fast), (10, Bound::Hold));
        // Replicas only a forecast asked for (need 5 of 10) go at the scale-down rate meanwhile.
        let mut l = Limiter::default();
        assert_eq!(l.apply(0.0, 10, 10, 5, 5, true, &fast), (8, Bound::DownRate));
        // Hold over: the window (none here) and the rate apply.
        let mut l = Limiter::default();
        l.apply(0.0, 10, 10, 10, 10, true, &fast);
        assert_eq!(l.apply(5.0, 10, 10, 3, 3, false, &fast), (8, Bound::DownRate));
        let mut l = Limiter::default();
        assert_eq!(l.apply(0.0, 2, 2, 1, 1, false, &fast), (1, Bound::None), "20 % of 2 rounds to one pod, not zero");
    }

    #[test]
    fn an_unused_reservation_is_released_at_once_down_to_the_observed_need() {
        let release = Limits { release_reservation: true, ..LIMITS };
        let mut l = Limiter::default();
        // 150 Ready for an event whose traffic did not come; the load needs 10, and 30 were
        // needed within the window.
        assert_eq!(l.apply(0.0, 150, 150, 150, 30, false, &LIMITS), (150, Bound::None));
        assert_eq!(l.apply(5.0, 150, 150, 10, 10, false, &release), (30, Bound::Stabilization));
        assert_eq!(Limiter::default().apply(5.0, 150, 150, 10, 10, false, &release), (10, Bound::None));
    }

    #[test]
    fn starting_replicas_beyond_the_need_are_withdrawn_ready_ones_held() {
        let mut l = Limiter::default();
        // A forecast asked for 100; 10 are Ready, the observed load needs 40.
        assert_eq!(l.apply(0.0, 10, 10, 100, 40, false, &LIMITS), (40, Bound::UpRate));
        assert_eq!(l.apply(5.0, 40, 10, 100, 40, false, &LIMITS), (100, Bound::None));
        // The next reading no longer supports the forecast: starting pods go down to the
        // recommendation even while a surge holds scale-down.
        assert_eq!(l.apply(20.0, 100, 10, 60, 40, true, &LIMITS), (60, Bound::Withdrawn));
        // Below the observed need of the window nothing is withdrawn.
        assert_eq!(l.apply(25.0, 60, 10, 20, 20, false, &LIMITS), (40, Bound::Withdrawn));
        // Ready replicas are never withdrawn: the scale-down limits hold them.
        assert_eq!(l.apply(60.0, 60, 60, 20, 20, false, &LIMITS), (60, Bound::DownRate));
    }
}

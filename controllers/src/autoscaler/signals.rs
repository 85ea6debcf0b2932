//! Signals derived from the history of one tier's load observations, and the start-up time
//! learned from how long requested replicas took to become Ready.
//!
//! Contract: pure and deterministic; times are seconds on the caller's clock (any epoch), and
//! every function tolerates empty or one-point histories (it then reports "no signal").

use std::collections::VecDeque;

/// One observed load value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    t: f64,
    load: f64,
}

/// Load observations of one tier, newest last, trimmed to the longest window in use.
#[derive(Clone, Debug, Default)]
pub struct LoadHistory {
    points: VecDeque<Point>,
    keep: f64,
}

/// What the history says now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Signals {
    /// Newest (short-window) load.
    pub current: f64,
    /// Mean load over the stable window.
    pub stable: f64,
    /// Load change per second over the trend window (0 with fewer than two distinct samples).
    pub slope: f64,
    /// Seconds the load has risen sample after sample (0 when the newest sample is not a rise).
    pub rising_for: f64,
    /// Slope over the stable window (least squares), for slow ramps.
    pub stable_slope: f64,
}

impl LoadHistory {
    /// An empty history keeping `keep_seconds` of observations.
    pub fn new(keep_seconds: f64) -> Self {
        Self { points: VecDeque::new(), keep: keep_seconds }
    }

    /// Records `load` at `t`. Repeated values (the same Prometheus scrape read again) are not
    /// stored twice, so slopes are measured between distinct samples.
    pub fn record(&mut self, t: f64, load: f64) {
        if let Some(last) = self.points.back()
            && (last.load == load || t <= last.t)
        {
            return;
        }
        self.points.push_back(Point { t, load });
        // The newest sample older than the window is still in effect (sample-and-hold).
        while self.points.get(1).is_some_and(|p| p.t < t - self.keep) {
            self.points.pop_front();
        }
    }

    /// Number of stored samples.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Signals at time `now` with the given stable and trend windows (seconds).
    pub fn signals(&self, now: f64, stable_window: f64, trend_window: f64) -> Option<Signals> {
        let last = *self.points.back()?;
        // Time-weighted mean over the stable window: each sample holds until the next one.
        let from = now - stable_window;
        let mut weighted = 0.0;
        let mut span = 0.0;
        let mut next_t = now;
        for p in self.points.iter().rev() {
            let start = p.t.max(from);
            if next_t > start {
                weighted += p.load * (next_t - start);
                span += next_t - start;
            }
            next_t = p.t;
            if p.t <= from {
                break;
            }
        }
        let stable = if span > 0.0 { weighted / span } else { last.load };
        // Sample-and-hold: the value in effect `trend_window` before the newest sample.
        let reference = last.t - trend_window;
        let slope = match self.points.iter().rev().find(|p| p.t <= reference) {
            Some(p) => (last.load - p.load) / trend_window,
            None => match self.points.front() {
                Some(first) if first.t < last.t => (last.load - first.load) / (last.t - first.t),
                _ => 0.0,
            },
        };
        // How long the load has been rising sample after sample; a sample held for long before
        // a rise (identical scrapes are stored once) contributes at most one trend window.
        let mut rising_for = 0.0;
        let (mut newer, mut newer_t) = (last.load, last.t);
        for p in self.points.iter().rev().skip(1) {
            if p.load >= newer {
                break;
            }
            rising_for += (newer_t - p.t).min(trend_window);
            (newer, newer_t) = (p.load, p.t);
        }
        Some(Signals {
            current: last.load,
            stable,
            slope,
            rising_for,
            stable_slope: self.regression(now - stable_window),
        })
    }

    /// Least-squares slope of samples newer than `from`.
    fn regression(&self, from: f64) -> f64 {
        let pts: Vec<&Point> = self.points.iter().filter(|p| p.t >= from).collect();
        if pts.len() < 3 {
            return 0.0;
        }
        let n = pts.len() as f64;
        let mt = pts.iter().map(|p| p.t).sum::<f64>() / n;
        let ml = pts.iter().map(|p| p.load).sum::<f64>() / n;
        let cov: f64 = pts.iter().map(|p| (p.t - mt) * (p.load - ml)).sum();
        let var: f64 = pts.iter().map(|p| (p.t - mt).powi(2)).sum();
        if var > 0.0 { cov / var } else { 0.0 }
    }
}

/// Learns the pods' start-up time: each scale-up is remembered with its target, and when that
/// many replicas are Ready the elapsed time is a sample. The estimate is the largest of the
/// recent samples (start-up is a deadline, so the conservative side is the right one).
#[derive(Clone, Debug)]
pub struct StartupLearner {
    pending: VecDeque<(f64, i32)>,
    samples: VecDeque<f64>,
    initial: f64,
}

/// How many recent samples the estimate considers.
const STARTUP_SAMPLES: usize = 8;

impl StartupLearner {
    /// A learner assuming `initial_seconds` until it has a sample.
    pub fn new(initial_seconds: f64) -> Self {
        Self { pending: VecDeque::new(), samples: VecDeque::new(), initial: initial_seconds }
    }

    /// The engine asked for `target` replicas at `t`.
    pub fn requested(&mut self, t: f64, target: i32) {
        self.pending.retain(|&(_, n)| n < target);
        self.pending.push_back((t, target));
    }

    /// `ready` replicas are Ready at `t` while `desired` are asked for: completes the pending
    /// scale-ups that are now satisfied (a scale-up trimmed by a later scale-down completes
    /// when the trimmed count is Ready).
    pub fn observe(&mut self, t: f64, ready: i32, desired: i32) {
        while let Some(&(at, n)) = self.pending.front() {
            // A scale-up later trimmed by a scale-down completes when the trimmed count is Ready.
            let n = n.min(desired);
            if ready >= n {
                // Only scale-ups that actually added pods beyond what was Ready count.
                if n > 0 {
                    self.add_sample(t - at);
                }
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds a sample measured elsewhere (e.g. from pod timestamps).
    pub fn add_sample(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.samples.push_back(seconds);
            if self.samples.len() > STARTUP_SAMPLES {
                self.samples.pop_front();
            }
        }
    }

    /// Current estimate in seconds.
    pub fn estimate(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
            .unwrap_or(self.initial)
    }

    /// Whether the estimate is learned rather than assumed.
    pub fn learned(&self) -> bool {
        !self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_is_time_weighted_and_slope_uses_distinct_samples() {
        let mut h = LoadHistory::new(600.0);
        for t in 0..20 {
            h.record(f64::from(t) * 15.0, 100.0);
        }
        assert_eq!(h.len(), 1, "identical scrapes are stored once");
        h.record(300.0, 400.0);
        let s = h.signals(300.0, 180.0, 30.0).unwrap();
        assert_eq!(s.current, 400.0);
        assert!((s.stable - 100.0).abs() < 1e-9, "the new sample has held for 0 s: {s:?}");
        assert!((s.slope - 10.0).abs() < 1e-9, "100 held until the step: (400-100)/30: {s:?}");
        let later = h.signals(390.0, 180.0, 30.0).unwrap();
        assert!((later.stable - 250.0).abs() < 1e-9, "half the window at each level: {later:?}");
    }

    #[test]
    fn slope_over_trend_window() {
        let mut h = LoadHistory::new(600.0);
        h.record(0.0, 100.0);
        h.record(15.0, 200.0);
        h.record(30.0, 500.0);
        let s = h.signals(30.0, 180.0, 15.0).unwrap();
        assert!((s.slope - 20.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.rising_for, 30.0);
        let s = h.signals(30.0, 180.0, 60.0).unwrap();
        assert!((s.slope - 400.0 / 30.0).abs() < 1e-9, "shorter history than the window: {s:?}");
        let mut h = LoadHistory::new(600.0);
        h.record(0.0, 100.0);
        h.record(300.0, 200.0);
        assert_eq!(h.signals(300.0, 60.0, 15.0).unwrap().rising_for, 15.0, "a long-held sample counts one window");
        assert!(LoadHistory::new(60.0).signals(0.0, 60.0, 15.0).is_none());
    }

    #[test]
    fn startup_is_learned_from_ready_counts() {
        let mut l = StartupLearner::new(45.0);
        assert_eq!(l.estimate(), 45.0);
        l.requested(100.0, 10);
        l.observe(110.0, 4, 10);
        assert!(!l.learned());
        l.observe(132.0, 10, 10);
        assert_eq!(l.estimate(), 32.0);
        l.requested(200.0, 20);
        l.observe(205.0, 10, 12);
        assert_eq!(l.estimate(), 32.0, "trimmed to 12, only 10 Ready: no sample yet");
        l.observe(240.0, 12, 12);
        assert_eq!(l.estimate(), 40.0, "the trimmed scale-up completed after 40 s");
        l.add_sample(50.0);
        assert_eq!(l.estimate(), 50.0, "the slowest recent start-up wins");
        l.add_sample(20.0);
        assert_eq!(l.estimate(), 50.0);
    }
}

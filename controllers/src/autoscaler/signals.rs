//! Signals derived from the history of one tier's load observations (time-weighted mean, slopes,
//! and the robust ones of [`super::robust`]: Theil–Sen trend, recent peak, variability), and the
//! start-up time learned from how long requested replicas took to become Ready.
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
    /// Theil–Sen slope over the memory window: a trend one outlier or one dip cannot fake.
    pub trend: f64,
    /// Theil–Sen slope over the stable window (a step leaves it within one window, while the
    /// memory window's trend still leans on it).
    pub short_trend: f64,
    /// Robust peak (second highest sample) of the memory window before the `sudden` window —
    /// the level the load had before any recent move; the older samples when there are none
    /// that old, the newest load when there is nothing older.
    pub recent_peak: f64,
    /// Highest sample of the same window as `recent_peak` (what a sudden dip holds capacity for).
    pub recent_max: f64,
    /// Highest sample of the `sudden` window before the newest, and at least the previous sample
    /// (the newest load if none).
    pub just_before: f64,
    /// Sample-to-sample relative variability over the memory window (see
    /// [`super::robust::relative_noise`]).
    pub noise: f64,
}

/// Windows of [`LoadHistory::signals`], seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Windows {
    /// Time-weighted mean.
    pub stable: f64,
    /// Short slope.
    pub trend: f64,
    /// Robust trend, recent peak and variability.
    pub memory: f64,
    /// How recent "just before" is (drops within it are sudden).
    pub sudden: f64,
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

    /// Signals at time `now` with the given windows.
    pub fn signals(&self, now: f64, w: &Windows) -> Option<Signals> {
        let (stable_window, trend_window) = (w.stable, w.trend);
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
        // The memory window's samples, starting with the one in effect at its start
        // (sample-and-hold: identical scrapes are stored once).
        let start = last.t - w.memory;
        let first = self.points.iter().position(|p| p.t >= start).unwrap_or(self.points.len());
        let memory: Vec<(f64, f64)> =
            self.points.iter().skip(first.saturating_sub(1)).map(|p| (p.t.max(start), p.load)).collect();
        let older: Vec<f64> = memory.iter().filter(|p| p.0 < last.t - w.sudden).map(|p| p.1).collect();
        let before: Vec<f64> =
            if older.is_empty() { memory.iter().filter(|p| p.0 < last.t).map(|p| p.1).collect() } else { older };
        let short: Vec<(f64, f64)> = memory.iter().copied().filter(|p| p.0 >= last.t - stable_window).collect();
        let loads: Vec<f64> = memory.iter().map(|p| p.1).collect();
        // The previous sample always counts: after a data gap it is the last one seen, and a fall
        // across the gap is as sudden as the data can tell.
        let previous = self.points.len().checked_sub(2).and_then(|i| self.points.get(i)).map(|p| p.load);
        let just_before = memory
            .iter()
            .filter(|p| p.0 < last.t && p.0 >= last.t - w.sudden)
            .map(|p| p.1)
            .chain(previous)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        Some(Signals {
            current: last.load,
            stable,
            slope,
            rising_for,
            stable_slope: self.regression(now - stable_window),
            trend: super::robust::theil_sen(&memory).unwrap_or(0.0),
            short_trend: super::robust::theil_sen(&short).unwrap_or(0.0),
            recent_peak: super::robust::robust_max(&before).unwrap_or(last.load),
            recent_max: before.iter().copied().reduce(f64::max).unwrap_or(last.load),
            just_before: just_before.unwrap_or(last.load),
            noise: super::robust::relative_noise(&loads),
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

    fn win(stable: f64, trend: f64) -> Windows {
        Windows { stable, trend, memory: 300.0, sudden: 45.0 }
    }

    #[test]
    fn robust_signals_see_a_dip_and_its_recovery_as_no_trend() {
        let mut h = LoadHistory::new(600.0);
        let loads = [1000.0, 1010.0, 990.0, 1005.0, 995.0, 1000.0, 200.0, 210.0, 1002.0];
        for (i, &l) in loads.iter().enumerate() {
            h.record(i as f64 * 15.0, l);
        }
        let s = h.signals(120.0, &win(60.0, 15.0)).unwrap();
        assert_eq!(s.current, 1002.0);
        assert_eq!(s.recent_peak, 1005.0, "second highest before the last 45 s");
        assert!(s.trend.abs() < 1.0, "Theil–Sen: no trend {s:?}");
        assert!(s.slope > 40.0, "the last step alone looks like a surge: {s:?}");
        assert_eq!(s.just_before, 1000.0, "45 s before now: still the level before the dip");
        let mut h = LoadHistory::new(600.0);
        h.record(0.0, 500.0);
        let s = h.signals(0.0, &win(60.0, 15.0)).unwrap();
        assert_eq!((s.recent_peak, s.just_before, s.noise, s.trend), (500.0, 500.0, 0.0, 0.0), "one sample");
        // A ramp: the peak is what the load was before the last 45 s, so each new high counts.
        let mut h = LoadHistory::new(600.0);
        for i in 0..10 {
            h.record(f64::from(i) * 15.0, 1000.0 + 300.0 * f64::from(i));
        }
        let s = h.signals(135.0, &win(60.0, 15.0)).unwrap();
        assert_eq!((s.current, s.recent_peak), (3700.0, 2200.0), "second highest before t=90");
        assert_eq!((s.trend, s.short_trend), (20.0, 20.0));
        // After a data gap the last sample seen is "just before", however old.
        let mut h = LoadHistory::new(600.0);
        for i in 0..10 {
            h.record(f64::from(i) * 15.0, 1900.0 + f64::from(i));
        }
        h.record(255.0, 220.0);
        let s = h.signals(255.0, &win(60.0, 15.0)).unwrap();
        assert_eq!(s.just_before, 1909.0, "{s:?}");
    }

    #[test]
    fn stable_is_time_weighted_and_slope_uses_distinct_samples() {
        let mut h = LoadHistory::new(600.0);
        for t in 0..20 {
            h.record(f64::from(t) * 15.0, 100.0);
        }
        assert_eq!(h.len(), 1, "identical scrapes are stored once");
        h.record(300.0, 400.0);
        let s = h.signals(300.0, &win(180.0, 30.0)).unwrap();
        assert_eq!(s.current, 400.0);
        assert!((s.stable - 100.0).abs() < 1e-9, "the new sample has held for 0 s: {s:?}");
        assert!((s.slope - 10.0).abs() < 1e-9, "100 held until the step: (400-100)/30: {s:?}");
        let later = h.signals(390.0, &win(180.0, 30.0)).unwrap();
        assert!((later.stable - 250.0).abs() < 1e-9, "half the window at each level: {later:?}");
    }

    #[test]
    fn slope_over_trend_window() {
        let mut h = LoadHistory::new(600.0);
        h.record(0.0, 100.0);
        h.record(15.0, 200.0);
        h.record(30.0, 500.0);
        let s = h.signals(30.0, &win(180.0, 15.0)).unwrap();
        assert!((s.slope - 20.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.rising_for, 30.0);
        let s = h.signals(30.0, &win(180.0, 60.0)).unwrap();
        assert!((s.slope - 400.0 / 30.0).abs() < 1e-9, "shorter history than the window: {s:?}");
        let mut h = LoadHistory::new(600.0);
        h.record(0.0, 100.0);
        h.record(300.0, 200.0);
        assert_eq!(
            h.signals(300.0, &win(60.0, 15.0)).unwrap().rising_for,
            15.0,
            "a long-held sample counts one window"
        );
        assert!(LoadHistory::new(60.0).signals(0.0, &win(60.0, 15.0)).is_none());
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

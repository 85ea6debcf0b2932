//! Robust statistics of a load history and what a pod can serve: the Theil–Sen trend (median of
//! pairwise slopes), a robust recent maximum (the second highest sample), the traffic's own
//! sample-to-sample variability (median absolute relative change), and the per-pod capacity
//! learned from requests served against requests received.
//!
//! Contract: pure and deterministic; every function accepts empty or one-point input and then
//! returns `None` or a neutral value; non-finite inputs are ignored.

use std::collections::VecDeque;

/// Median of `values` (reordered); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// Theil–Sen slope of `(t, value)` points: the median of the slopes between every pair with
/// distinct times. One outlier (a blip, a recovery sample) cannot move it far; `None` with
/// fewer than two distinct times.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, &(ti, vi)) in points.iter().enumerate() {
        for &(tj, vj) in &points[i + 1..] {
            if tj != ti && vi.is_finite() && vj.is_finite() {
                slopes.push((vj - vi) / (tj - ti));
            }
        }
    }
    median(&mut slopes)
}

/// The second highest value (the highest of one): a recent peak that one outlier cannot set.
pub fn robust_max(values: &[f64]) -> Option<f64> {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &v in values.iter().filter(|v| v.is_finite()) {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    match (first.is_finite(), second.is_finite()) {
        (_, true) => Some(second),
        (true, false) => Some(first),
        _ => None,
    }
}

/// The traffic's relative variability from one sample to the next: 1.4826 × the median of
/// `|vᵢ/vᵢ₋₁ − 1|` (a standard deviation for normal noise, blind to a few jumps); 0 with fewer
/// than [`NOISE_MIN_CHANGES`] changes (too few for a median to ignore a jump).
pub fn relative_noise(values: &[f64]) -> f64 {
    let mut changes: Vec<f64> =
        values.windows(2).filter(|w| w[0] > 0.0 && w[1].is_finite()).map(|w| (w[1] / w[0] - 1.0).abs()).collect();
    if changes.len() < NOISE_MIN_CHANGES {
        return 0.0;
    }
    median(&mut changes).map_or(0.0, |m| 1.4826 * m)
}

/// Fewest sample-to-sample changes [`relative_noise`] measures from.
pub const NOISE_MIN_CHANGES: usize = 6;

/// Learns what one Ready pod serves at most. Served ÷ Ready never exceeds it, so every reading
/// is a lower bound; it is *close* only while the pods refuse requests (served below the load by
/// more than `refusal_share`) for the whole query window. A reading counts as such a sample when
/// it is the [`SATURATED_IN_A_ROW`]-th distinct saturated reading in a row with the same Ready
/// count for `settle` seconds (a short burst that saturates part of one window only teaches a
/// looser bound); the estimate is the highest of the recent samples. A later reading that serves
/// everything at a higher per-pod load than the estimate shows it is stale (pods got faster) and
/// clears it.
#[derive(Clone, Debug)]
pub struct CapacityLearner {
    samples: VecDeque<f64>,
    last_ready: Option<(f64, i32)>,
    last_reading: Option<(f64, f64)>,
    in_a_row: usize,
    settle: f64,
    refusal_share: f64,
}

/// How many saturated readings the estimate considers.
const CAPACITY_SAMPLES: usize = 5;

/// Distinct saturated readings in a row before one is a sample.
pub const SATURATED_IN_A_ROW: usize = 3;

impl CapacityLearner {
    /// A learner ignoring readings within `settle` seconds of a change of the Ready count.
    pub fn new(settle: f64, refusal_share: f64) -> Self {
        Self { samples: VecDeque::new(), last_ready: None, last_reading: None, in_a_row: 0, settle, refusal_share }
    }

    /// At `t`, the tier received `load` and served `served` requests/s with `ready` pods Ready.
    /// The same reading again (the same scrape read twice) is ignored.
    pub fn observe(&mut self, t: f64, load: f64, served: f64, ready: i32) {
        let changed_at = match self.last_ready {
            Some((at, r)) if r == ready => at,
            _ => {
                self.last_ready = Some((t, ready));
                self.in_a_row = 0;
                t
            }
        };
        if self.last_reading == Some((load, served)) {
            return;
        }
        self.last_reading = Some((load, served));
        if ready <= 0 || !(load.is_finite() && served.is_finite()) || load <= 0.0 || t - changed_at < self.settle {
            self.in_a_row = 0;
            return;
        }
        let per_pod = served / f64::from(ready);
        if served < load * (1.0 - self.refusal_share) {
            self.in_a_row += 1;
            if self.in_a_row >= SATURATED_IN_A_ROW {
                self.samples.push_back(per_pod);
                if self.samples.len() > CAPACITY_SAMPLES {
                    self.samples.pop_front();
                }
            }
        } else {
            self.in_a_row = 0;
            if self.estimate().is_some_and(|c| per_pod > c * (1.0 + self.refusal_share)) {
                self.samples.clear();
            }
        }
    }

    /// Requests/s one pod serves at most, once saturation has been observed.
    pub fn estimate(&self) -> Option<f64> {
        self.samples.iter().copied().reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_one_outlier() {
        let line: Vec<(f64, f64)> = (0..5).map(|i| (f64::from(i) * 15.0, 100.0 + 2.0 * f64::from(i) * 15.0)).collect();
        assert_eq!(theil_sen(&line), Some(2.0));
        let mut recovery = vec![(0.0, 1000.0), (15.0, 1000.0), (30.0, 1000.0), (45.0, 1000.0), (60.0, 200.0)];
        recovery.push((75.0, 1000.0));
        let s = theil_sen(&recovery).unwrap();
        assert!(s.abs() < 1e-9, "a dip and its recovery are no trend: {s}");
        assert_eq!(theil_sen(&[(0.0, 1.0)]), None);
        assert_eq!(theil_sen(&[(0.0, 1.0), (0.0, 2.0)]), None, "no distinct times");
    }

    #[test]
    fn robust_max_and_median() {
        assert_eq!(robust_max(&[1.0, 9.0, 3.0, 4.0]), Some(4.0), "one blip does not set the peak");
        assert_eq!(robust_max(&[5.0]), Some(5.0));
        assert_eq!(robust_max(&[]), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn relative_noise_measures_jitter_not_jumps() {
        let calm = [100.0, 101.0, 100.0, 101.0, 100.0, 500.0, 500.0, 505.0, 500.0];
        let n = relative_noise(&calm);
        assert!(n < 0.03, "one jump is not noise: {n}");
        let noisy = [100.0, 120.0, 100.0, 80.0, 100.0, 120.0, 96.0];
        assert!(relative_noise(&noisy) > 0.2);
        assert_eq!(relative_noise(&[1.0, 4.0, 4.01]), 0.0, "too few changes to tell noise from a jump");
    }

    #[test]
    fn capacity_is_learned_from_lasting_refusals_and_forgotten_when_pods_serve_more() {
        let mut c = CapacityLearner::new(30.0, 0.02);
        c.observe(0.0, 1000.0, 700.0, 10);
        for (i, served) in [800.0, 850.0, 860.0].into_iter().enumerate() {
            c.observe(30.0 + 15.0 * i as f64, 1000.0 + i as f64, served, 10);
        }
        assert_eq!(c.estimate(), Some(86.0), "the third saturated reading in a row is a sample");
        c.observe(75.0, 1002.0, 860.0, 10);
        c.observe(80.0, 1002.0, 860.0, 10);
        assert_eq!(c.estimate(), Some(86.0), "the same scrape read again is no new reading");
        c.observe(90.0, 800.0, 800.0, 10);
        assert_eq!(c.estimate(), Some(86.0), "80 per pod served without refusals says nothing new");
        c.observe(105.0, 2000.0, 1000.0, 20);
        assert_eq!(c.estimate(), Some(86.0), "Ready count changed: skipped");
        c.observe(150.0, 2000.0, 2000.0, 20);
        assert_eq!(c.estimate(), None, "100 per pod served without refusals: the estimate was stale");
        // One window with a short burst: refusals, but not for long enough to be a sample.
        let mut c = CapacityLearner::new(30.0, 0.02);
        c.observe(0.0, 900.0, 900.0, 15);
        c.observe(30.0, 900.0, 600.0, 15);
        c.observe(45.0, 1500.0, 1500.0, 15);
        assert_eq!(c.estimate(), None);
    }
}

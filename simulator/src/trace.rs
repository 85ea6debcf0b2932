//! Traffic traces: CSV with header `t,rps`, one row per second, and the simulated Prometheus
//! pipeline over them.
//!
//! Contract: parsing never panics; rows are seconds from 0 in increasing order. A data gap — a
//! row whose rps is `NaN` or empty, or seconds skipped between two rows — is a second without a
//! measurement: it is stored as `NaN` in [`Trace::rps`]; the demand the simulator serves there is
//! interpolated linearly between the measured neighbours ([`Trace::demand`]), and Prometheus has
//! no scrape in it. The pipeline answers "what would `rate(counter[window])` return at time t"
//! for a counter of every request (served or refused) scraped every `scrape_interval` seconds;
//! traffic before t=0 is taken to equal the first row (the service was already running).

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File name.
        file: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `t,rps`.
    #[error("{file}:{line}: {message}")]
    Line {
        /// File name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No rows.
    #[error("{file}: no data rows")]
    Empty {
        /// File name.
        file: String,
    },
}

/// Requests per second, one value per second from t=0.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Name (file stem).
    pub name: String,
    /// Demand per second as measured; `NaN` = no measurement (a data gap).
    pub rps: Vec<f64>,
}

impl Trace {
    /// Reads a CSV file.
    pub fn read(path: &std::path::Path) -> Result<Self, TraceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read { file: file.clone(), source })?;
        let name = path.file_stem().map_or_else(|| file.clone(), |s| s.to_string_lossy().into_owned());
        Self::parse(&name, &file, &text)
    }

    /// Parses CSV text.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Self, TraceError> {
        let mut rps = Vec::new();
        let err = |line: usize, message: String| TraceError::Line { file: file.to_string(), line, message };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || (i == 0 && line.replace(' ', "") == "t,rps") {
                continue;
            }
            let (t, v) = line.split_once(',').ok_or_else(|| err(i + 1, "expected `t,rps`".into()))?;
            let t: usize = t.trim().parse().map_err(|_| err(i + 1, format!("t {t:?} is not a whole second")))?;
            let v: f64 = match v.trim() {
                "" => f64::NAN,
                v if v.eq_ignore_ascii_case("nan") => f64::NAN,
                v => v.parse().map_err(|_| err(i + 1, format!("rps {v:?} is not a number")))?,
            };
            if t < rps.len() {
                return Err(err(i + 1, format!("t={t} after t={}: rows must be in increasing order", rps.len() - 1)));
            }
            if t > MAX_SECONDS {
                return Err(err(i + 1, format!("t={t} is beyond {MAX_SECONDS} s")));
            }
            if v.is_infinite() || v < 0.0 {
                return Err(err(i + 1, format!("rps {v} must be a non-negative number or NaN (no data)")));
            }
            // Skipped seconds are gaps.
            rps.resize(t, f64::NAN);
            rps.push(v);
        }
        if !rps.iter().any(|v| v.is_finite()) {
            return Err(TraceError::Empty { file: file.to_string() });
        }
        Ok(Self { name: name.to_string(), rps })
    }

    /// Length in seconds.
    pub fn len(&self) -> usize {
        self.rps.len()
    }

    /// Whether the trace has no rows (never true for a parsed trace).
    pub fn is_empty(&self) -> bool {
        self.rps.is_empty()
    }

    /// Whether second `t` has no measurement.
    pub fn is_gap(&self, t: usize) -> bool {
        self.rps.get(t).is_some_and(|v| v.is_nan())
    }

    /// Seconds without a measurement.
    pub fn gap_seconds(&self) -> usize {
        self.rps.iter().filter(|v| v.is_nan()).count()
    }

    /// The demand served per second: measured values, gaps interpolated linearly between the
    /// measured neighbours (the nearest one at either end; 0 if nothing was measured).
    pub fn demand(&self) -> Vec<f64> {
        let mut out = self.rps.clone();
        let mut last: Option<(usize, f64)> = None;
        let mut i = 0;
        while i < out.len() {
            if !out[i].is_nan() {
                last = Some((i, out[i]));
                i += 1;
                continue;
            }
            let next = (i..out.len()).find(|&j| !out[j].is_nan());
            let end = next.unwrap_or(out.len());
            for (j, v) in out.iter_mut().enumerate().take(end).skip(i) {
                *v = match (last, next) {
                    (Some((a, va)), Some(b)) => va + (self.rps[b] - va) * (j - a) as f64 / (b - a) as f64,
                    (Some((_, va)), None) => va,
                    (None, Some(b)) => self.rps[b],
                    (None, None) => 0.0,
                };
            }
            i = end;
        }
        out
    }
}

/// Longest trace accepted, seconds (31 days).
pub const MAX_SECONDS: usize = 31 * 24 * 3600;

/// How far back a rate query looks for its two scrapes when the newest ones are missing (the
/// `[1m]` range of the default queries).
pub const QUERY_RANGE: u32 = 60;

/// Prometheus scraping a request counter of the trace.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// counter[i] = requests in seconds [0, i).
    counter: Vec<f64>,
    /// gap[i]: second i has no measurement, so a scrape at i fails.
    gap: Vec<bool>,
    first: f64,
    /// Seconds between scrapes.
    pub scrape_interval: u32,
}

impl Pipeline {
    /// The pipeline of `trace`.
    pub fn new(trace: &Trace, scrape_interval: u32) -> Self {
        let demand = trace.demand();
        let mut counter = Vec::with_capacity(demand.len() + 1);
        let mut sum = 0.0;
        counter.push(0.0);
        for v in &demand {
            sum += v;
            counter.push(sum);
        }
        Self {
            counter,
            gap: trace.rps.iter().map(|v| v.is_nan()).collect(),
            first: demand.first().copied().unwrap_or(0.0),
            scrape_interval: scrape_interval.max(1),
        }
    }

    fn scraped(&self, t: i64) -> bool {
        t < 0 || !usize::try_from(t).is_ok_and(|i| self.gap.get(i).copied().unwrap_or(false))
    }

    fn counter_at(&self, t: i64) -> f64 {
        if t <= 0 {
            return t as f64 * self.first;
        }
        let i = usize::try_from(t).unwrap_or(usize::MAX).min(self.counter.len() - 1);
        self.counter[i]
    }

    /// `rate(counter[window])` evaluated at second `t`: the average over the `window` seconds
    /// before the newest scrape at or before `t` (gaps ignored; see [`Pipeline::sample`]).
    pub fn rate(&self, t: u32, window: u32) -> f64 {
        let scrape = i64::from(t - t % self.scrape_interval);
        let w = i64::from(window.max(1));
        (self.counter_at(scrape) - self.counter_at(scrape - w)) / w as f64
    }

    /// What the query returns at second `t`, with data gaps: `None` while the newest scrape
    /// failed (the series is gone); after a gap, the rate between the newest scrape and the
    /// newest earlier one at least `window` older, when it lies within [`QUERY_RANGE`] (or the
    /// window, if longer) — else `None` until enough scrapes exist. Without gaps it equals
    /// [`Pipeline::rate`].
    pub fn sample(&self, t: u32, window: u32) -> Option<f64> {
        let scrape = i64::from(t - t % self.scrape_interval);
        let w = i64::from(window.max(1));
        if !self.scraped(scrape) {
            return None;
        }
        if self.scraped(scrape - w) {
            return Some(self.rate(t, window));
        }
        let range = w.max(i64::from(QUERY_RANGE));
        let step = i64::from(self.scrape_interval);
        let mut earlier = scrape - w - (scrape - w).rem_euclid(step);
        while earlier >= scrape - range {
            if self.scraped(earlier) {
                return Some((self.counter_at(scrape) - self.counter_at(earlier)) / (scrape - earlier) as f64);
            }
            earlier -= step;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let t = Trace::parse("x", "x.csv", "t,rps\n0,10\n1,20.5\n").unwrap();
        assert_eq!(t.rps, vec![10.0, 20.5]);
        assert!(matches!(Trace::parse("x", "x", "t,rps\n0,1\n2,3\n1,3\n"), Err(TraceError::Line { line: 4, .. })));
        assert!(matches!(Trace::parse("x", "x", "t,rps\n0,NaN\n"), Err(TraceError::Empty { .. })));
        assert!(matches!(Trace::parse("x", "x", "t,rps\n0,inf\n"), Err(TraceError::Line { line: 2, .. })));
        assert!(matches!(Trace::parse("x", "x", "t,rps\n0,abc\n"), Err(TraceError::Line { .. })));
        assert!(matches!(Trace::parse("x", "x", "t,rps\n"), Err(TraceError::Empty { .. })));
        assert!(matches!(Trace::parse("x", "x", "0,-1\n"), Err(TraceError::Line { .. })));
    }

    #[test]
    fn rate_sees_only_scraped_data() {
        let mut rps = vec![100.0; 60];
        rps.extend(vec![1000.0; 60]);
        let p = Pipeline::new(&Trace { name: "s".into(), rps }, 15);
        assert_eq!(p.rate(10, 30), 100.0, "before t=0 the first value held");
        assert_eq!(p.rate(74, 30), 100.0, "the step at 60 is not scraped until 75");
        assert_eq!(p.rate(75, 30), 550.0, "15 s of 1000 and 15 s of 100");
        assert_eq!(p.rate(119, 30), 1000.0);
        assert_eq!(p.sample(119, 30), Some(1000.0), "no gap: the same as rate");
    }

    #[test]
    fn gaps_are_interpolated_for_demand_and_missing_for_prometheus() {
        // Missing rows 2..=3 and an explicit NaN at 5.
        let t = Trace::parse("g", "g.csv", "t,rps\n0,10\n1,10\n4,40\n5,NaN\n6,60\n").unwrap();
        assert_eq!(t.len(), 7);
        assert!(t.is_gap(2) && t.is_gap(3) && t.is_gap(5) && !t.is_gap(4));
        assert_eq!(t.gap_seconds(), 3);
        assert_eq!(t.demand(), vec![10.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let mut rps = vec![100.0; 300];
        for v in &mut rps[100..140] {
            *v = f64::NAN;
        }
        let p = Pipeline::new(&Trace { name: "g".into(), rps }, 15);
        assert_eq!(p.sample(99, 15), Some(100.0));
        assert_eq!(p.sample(105, 15), None, "the scrape at 105 failed");
        assert_eq!(p.sample(135, 15), None);
        assert_eq!(p.sample(150, 15), Some(100.0), "150 against 90: the gap is bridged within the range");
        assert_eq!(p.sample(165, 15), Some(100.0));
    }
}

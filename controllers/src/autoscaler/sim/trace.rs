//! Traffic traces: CSV with header `t,rps`, one row per second, and the simulated Prometheus
//! pipeline over them.
//!
//! Contract: parsing never panics; rows must be consecutive seconds from 0. The pipeline answers
//! "what would `rate(counter[window])` return at time t" for a counter of every request (served
//! or refused) scraped every `scrape_interval` seconds; traffic before t=0 is taken to equal the
//! first row (the service was already running).

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
    /// Demand per second.
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
            let v: f64 = v.trim().parse().map_err(|_| err(i + 1, format!("rps {v:?} is not a number")))?;
            if t != rps.len() {
                return Err(err(i + 1, format!("expected t={} (one row per second from 0), found {t}", rps.len())));
            }
            if !v.is_finite() || v < 0.0 {
                return Err(err(i + 1, format!("rps {v} must be a non-negative number")));
            }
            rps.push(v);
        }
        if rps.is_empty() {
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
}

/// Prometheus scraping a request counter of the trace.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// counter[i] = requests in seconds [0, i).
    counter: Vec<f64>,
    first: f64,
    /// Seconds between scrapes.
    pub scrape_interval: u32,
}

impl Pipeline {
    /// The pipeline of `trace`.
    pub fn new(trace: &Trace, scrape_interval: u32) -> Self {
        let mut counter = Vec::with_capacity(trace.rps.len() + 1);
        let mut sum = 0.0;
        counter.push(0.0);
        for v in &trace.rps {
            sum += v;
            counter.push(sum);
        }
        Self { counter, first: trace.rps.first().copied().unwrap_or(0.0), scrape_interval: scrape_interval.max(1) }
    }

    fn counter_at(&self, t: i64) -> f64 {
        if t <= 0 {
            return t as f64 * self.first;
        }
        let i = usize::try_from(t).unwrap_or(usize::MAX).min(self.counter.len() - 1);
        self.counter[i]
    }

    /// `rate(counter[window])` evaluated at second `t`: the average over the `window` seconds
    /// before the newest scrape at or before `t`.
    pub fn rate(&self, t: u32, window: u32) -> f64 {
        let scrape = i64::from(t - t % self.scrape_interval);
        let w = i64::from(window.max(1));
        (self.counter_at(scrape) - self.counter_at(scrape - w)) / w as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let t = Trace::parse("x", "x.csv", "t,rps\n0,10\n1,20.5\n").unwrap();
        assert_eq!(t.rps, vec![10.0, 20.5]);
        assert!(matches!(Trace::parse("x", "x", "t,rps\n0,1\n2,3\n"), Err(TraceError::Line { line: 3, .. })));
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
    }
}

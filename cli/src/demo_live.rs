//! The live part of `mallctl demo`: the promotion's traffic played through the load exporter in
//! real time, and what the storefront did about it, second by second.
//!
//! Contract: [`Recorder::rate`] is the demand at a wall-clock time (the baseline; the baseline
//! times the multiplier from midnight to the end, reached by a 5 s ramp). [`Recorder::drive_load`]
//! keeps the exporter at that rate (every 250 ms) until aborted. [`Recorder::watch`] samples the
//! eu storefront Deployment once a second until a deadline and counts a second as an SLO violation
//! when the demand is above the Ready capacity (Ready replicas × the capacity of one pod,
//! `targetPerReplica ÷ 0.7`, the simulator's model); it prints a line every 5 s. A sample the API
//! server did not answer repeats the previous one.

use crate::demo::{Args, storefront_replicas};
use chrono::{DateTime, Utc};
use localcluster::prometheus::Exporter;
use mall_simulator::{Outcome, Series, Trace};
use std::time::{Duration, Instant};

/// The promotion and the series it produced.
#[derive(Clone)]
pub struct Recorder {
    /// The load exporter Prometheus scrapes.
    pub exporter: Exporter,
    /// Normal demand, requests/s.
    pub baseline: f64,
    /// Demand during the promotion relative to normal.
    pub multiplier: f64,
    /// The promotion's start.
    pub midnight: DateTime<Utc>,
    /// Its end.
    pub end: DateTime<Utc>,
    /// Requests/s one Ready pod serves.
    pub capacity_per_pod: f64,
}

/// What the storefront did during the promotion.
#[derive(Debug, Default)]
pub struct Summary {
    /// Demand per second.
    pub demand: Vec<f64>,
    /// Replicas wanted per second.
    pub replicas: Vec<i32>,
    /// Ready capacity per second.
    pub capacity: Vec<f64>,
    /// Seconds with demand above the Ready capacity.
    pub violations: u64,
    /// Replicas at the first sample.
    pub first: i32,
    /// Most replicas wanted.
    pub peak: i32,
    /// Replicas wanted at midnight (the warm-up's work).
    pub at_midnight: i32,
    /// Capacity of one pod.
    pub capacity_per_pod: f64,
}

impl Recorder {
    /// Demand at `at`.
    pub fn rate(&self, at: DateTime<Utc>) -> f64 {
        if at < self.midnight || at >= self.end {
            return self.baseline;
        }
        let ramp = ((at - self.midnight).num_milliseconds() as f64 / 5000.0).clamp(0.0, 1.0);
        self.baseline * (1.0 + (self.multiplier - 1.0) * ramp)
    }

    /// Keeps the exporter at [`Self::rate`] until the task is aborted.
    pub fn drive_load(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.exporter.set_rate(this.rate(Utc::now()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    /// Samples eu's storefront every second until `until` (see the module header).
    pub async fn watch(&self, eu: &kube::Client, until: Instant) -> Summary {
        let mut s = Summary { capacity_per_pod: self.capacity_per_pod, ..Summary::default() };
        let mut last = (0, 0);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0u64;
        while Instant::now() < until {
            tick.tick().await;
            let now = Utc::now();
            last = storefront_replicas(eu, "eu").await.unwrap_or(last);
            let (wanted, ready) = last;
            let demand = self.rate(now);
            let capacity = f64::from(ready) * self.capacity_per_pod;
            if demand > capacity + 1e-9 {
                s.violations += 1;
            }
            if s.replicas.is_empty() {
                s.first = wanted;
            }
            if now <= self.midnight {
                s.at_midnight = wanted;
            }
            s.peak = s.peak.max(wanted);
            s.demand.push(demand);
            s.replicas.push(wanted);
            s.capacity.push(capacity);
            if n.is_multiple_of(5) {
                let to = (now - self.midnight).num_seconds();
                let clock = if to < 0 { format!("T-{}s", -to) } else { format!("T+{to}s") };
                println!(
                    "  {clock:>6}  demand {demand:>5.0} req/s   storefront eu: {wanted:>2} wanted, {ready:>2} Ready ({capacity:>4.0} req/s){}",
                    if demand > capacity + 1e-9 { "   OVER CAPACITY" } else { "" }
                );
            }
            n += 1;
        }
        s
    }
}

impl Summary {
    /// The plot: demand, Ready capacity and replicas × pod capacity per second.
    pub fn svg(&self) -> String {
        let trace = Trace { name: "double-eleven (live)".into(), rps: self.demand.clone() };
        let outcome = Outcome {
            name: "mall-operator, live".into(),
            slo_violation_seconds: self.violations,
            dropped_requests: 0.0,
            replica_seconds: self.replicas.iter().map(|&r| f64::from(r)).sum(),
            max_replicas: self.peak,
            scale_actions: self.replicas.windows(2).filter(|w| w[0] != w[1]).count() as u64,
            slo_violation_seconds_after: None,
            series: Some(Series { replicas: self.replicas.clone(), capacity: self.capacity.clone() }),
        };
        crate::plot::svg(&trace, &[outcome], self.capacity_per_pod)
    }

    /// The promotion's lines of the summary.
    pub fn text(&self, args: &Args) -> String {
        let peak_demand = self.demand.iter().copied().fold(0.0, f64::max);
        format!(
            "promotion:      x{} at midnight for {} s ({:.0} -> {:.0} req/s, {:.1} req/s per pod)\n\
             storefront:     {} replicas before, {} at midnight (warm-up), peak {} replicas\n\
             SLO violations: {} s with demand above the Ready capacity, of {} s watched",
            args.multiplier,
            args.surge_for.as_secs(),
            args.baseline,
            peak_demand,
            self.capacity_per_pod,
            self.first,
            self.at_midnight,
            self.peak,
            self.violations,
            self.demand.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_surge_ramps_to_the_multiplier_between_midnight_and_the_end() {
        let exporter = Exporter::start("ns", "m", 1.0).await;
        let midnight = Utc::now();
        let end = midnight + chrono::Duration::seconds(60);
        let r = Recorder { exporter, baseline: 20.0, multiplier: 8.0, midnight, end, capacity_per_pod: 14.0 };
        assert_eq!(r.rate(midnight - chrono::Duration::seconds(1)), 20.0);
        assert_eq!(r.rate(midnight), 20.0);
        assert!((r.rate(midnight + chrono::Duration::milliseconds(2500)) - 90.0).abs() < 1e-9);
        assert_eq!(r.rate(midnight + chrono::Duration::seconds(30)), 160.0);
        assert_eq!(r.rate(midnight + chrono::Duration::seconds(60)), 20.0);
    }
}

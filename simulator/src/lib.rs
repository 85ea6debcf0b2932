//! Deterministic simulator: a trace of demand, pods that serve at most `capacity` requests/s
//! once Ready (`startup` seconds after being requested), Prometheus scraping a request counter
//! every 15 s, and a scaling policy — the engine itself ([`mall::MallPolicy`]) or a baseline
//! ([`baselines`]).
//!
//! Contract: pure and deterministic (no wall clock, no randomness): the same trace, config and
//! policy give the same [`Outcome`]. Accounting per second t: pods are added/removed by the
//! policy's decision at t, pods whose start-up ends at t become Ready, then demand is served;
//! demand above Ready capacity is an SLO-violation second and the excess is dropped requests;
//! every existing pod (Ready or starting) costs one replica-second.

pub mod baselines;
pub mod mall;
pub mod runner;
pub mod trace;
pub mod tracegen;

#[cfg(test)]
mod acceptance_tests;

pub use trace::{Pipeline, Trace, TraceError};

use std::collections::VecDeque;

/// Model parameters shared by every policy.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seconds from request to Ready.
    pub startup: u32,
    /// Requests/s one Ready pod serves at most.
    pub capacity: f64,
    /// Prometheus scrape interval, seconds.
    pub scrape_interval: u32,
    /// Range of the tier's rate query, seconds.
    pub query_window: u32,
    /// Load per replica the policies aim at (the spec's `targetPerReplica`).
    pub target: f64,
    /// Fewest replicas.
    pub min: i32,
    /// Most replicas.
    pub max: i32,
}

impl SimConfig {
    /// Replicas that carry `load` at the target, clamped.
    pub fn initial_replicas(&self, load: f64) -> i32 {
        ((load / self.target).ceil() as i32).clamp(self.min, self.max.max(self.min))
    }
}

/// What a policy sees when asked.
pub struct View<'a> {
    /// Current second.
    pub t: u32,
    /// Whole trace as measured, `NaN` in gaps (only the oracle may look ahead).
    pub trace: &'a Trace,
    /// Demand served per second, gaps interpolated (only the oracle may look ahead).
    pub demand: &'a [f64],
    /// `served[i]`: requests served (not refused) in seconds `[0, i)`, for `i ≤ t`.
    pub served: &'a [f64],
    /// Prometheus.
    pub prometheus: &'a Pipeline,
    /// Pods asked for.
    pub replicas: i32,
    /// Pods Ready.
    pub ready: i32,
    /// Model parameters.
    pub config: &'a SimConfig,
}

impl View<'_> {
    /// Requests/s served (not refused) as the tier query sees them at `t`: over `window` seconds
    /// before the newest scrape, `None` when the request counter itself has no data then.
    pub fn served_rate(&self, window: u32) -> Option<f64> {
        self.prometheus.sample(self.t, window)?;
        let scrape = (self.t - self.t % self.prometheus.scrape_interval) as usize;
        let from = scrape.saturating_sub(window.max(1) as usize);
        let at = |i: usize| self.served.get(i).copied();
        let first = self.demand.first().copied().unwrap_or(0.0);
        // Before t=0 the service served its first row's demand (as the pipeline assumes).
        let before = window.max(1) as usize - (scrape - from);
        Some((at(scrape)? - at(from)? + first * before as f64) / f64::from(window.max(1)))
    }
}

/// A scaling policy under simulation.
pub trait Policy {
    /// Name in tables (`mall`, `hpa`, …).
    fn name(&self) -> String;
    /// Seconds between decisions.
    fn period(&self) -> u32;
    /// Replicas to ask for at `view.t`.
    fn decide(&mut self, view: &View<'_>) -> i32;
}

/// Totals of one policy on one trace.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Policy name.
    pub name: String,
    /// Seconds in which demand exceeded Ready capacity.
    pub slo_violation_seconds: u64,
    /// Requests above Ready capacity.
    pub dropped_requests: f64,
    /// Pod-seconds paid for (Ready or starting).
    pub replica_seconds: f64,
    /// Most pods at once.
    pub max_replicas: i32,
    /// Changes of the desired count.
    pub scale_actions: u64,
    /// SLO-violation seconds at or after `after` (see [`simulate`]), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_violation_seconds_after: Option<u64>,
    /// Per-second series (for plots), when asked.
    #[serde(skip)]
    pub series: Option<Series>,
}

/// Per-second series of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Pods asked for.
    pub replicas: Vec<i32>,
    /// Ready capacity, requests/s.
    pub capacity: Vec<f64>,
}

/// Pods: Ready ones and starting ones (with the second they become Ready).
#[derive(Clone, Debug, Default)]
struct Pods {
    ready: i32,
    starting: VecDeque<(u32, i32)>,
}

impl Pods {
    fn total(&self) -> i32 {
        self.ready + self.starting.iter().map(|&(_, n)| n).sum::<i32>()
    }

    fn set(&mut self, t: u32, startup: u32, desired: i32) {
        let total = self.total();
        if desired > total {
            self.starting.push_back((t + startup, desired - total));
        } else {
            let mut remove = total - desired;
            while remove > 0 {
                match self.starting.back_mut() {
                    Some((_, n)) if *n > remove => {
                        *n -= remove;
                        remove = 0;
                    }
                    Some(&mut (_, n)) => {
                        remove -= n;
                        self.starting.pop_back();
                    }
                    None => {
                        self.ready -= remove;
                        remove = 0;
                    }
                }
            }
        }
    }

    fn advance(&mut self, t: u32) {
        while let Some(&(at, n)) = self.starting.front() {
            if at > t {
                break;
            }
            self.ready += n;
            self.starting.pop_front();
        }
    }
}

/// Runs `policy` over `trace`. `after` (a second) counts violations from then on separately;
/// `record` keeps per-second series.
pub fn simulate(
    trace: &Trace,
    config: &SimConfig,
    policy: &mut dyn Policy,
    after: Option<u32>,
    record: bool,
) -> Outcome {
    let prometheus = Pipeline::new(trace, config.scrape_interval);
    let demand_series = trace.demand();
    let mut served = Vec::with_capacity(demand_series.len() + 1);
    served.push(0.0);
    let mut pods = Pods {
        ready: config.initial_replicas(demand_series.first().copied().unwrap_or(0.0)),
        starting: VecDeque::new(),
    };
    let period = policy.period().max(1);
    let mut out = Outcome {
        name: policy.name(),
        slo_violation_seconds: 0,
        dropped_requests: 0.0,
        replica_seconds: 0.0,
        max_replicas: pods.total(),
        scale_actions: 0,
        slo_violation_seconds_after: after.map(|_| 0),
        series: record.then(Series::default),
    };
    for (t, &demand) in (0u32..).zip(demand_series.iter()) {
        pods.advance(t);
        if t % period == 0 {
            let view = View {
                t,
                trace,
                demand: &demand_series,
                served: &served,
                prometheus: &prometheus,
                replicas: pods.total(),
                ready: pods.ready,
                config,
            };
            let desired = policy.decide(&view).clamp(config.min, config.max.max(config.min));
            if desired != pods.total() {
                out.scale_actions += 1;
                pods.set(t, config.startup, desired);
                pods.advance(t);
            }
        }
        let total = pods.total();
        let capacity = f64::from(pods.ready) * config.capacity;
        if demand > capacity + 1e-9 {
            out.slo_violation_seconds += 1;
            out.dropped_requests += demand - capacity;
            if let (Some(a), Some(v)) = (after, out.slo_violation_seconds_after.as_mut())
                && t >= a
            {
                *v += 1;
            }
        }
        let so_far = served.last().copied().unwrap_or(0.0);
        served.push(so_far + demand.min(capacity));
        out.replica_seconds += f64::from(total);
        out.max_replicas = out.max_replicas.max(total);
        if let Some(s) = out.series.as_mut() {
            s.replicas.push(total);
            s.capacity.push(capacity);
        }
    }
    out
}

//! The traffic-aware autoscaler of a Mall (issue #15): replicas per tier from observed load,
//! latency and announced promotions.
//!
//! Contract: the [`Engine`] is pure — observations in, [`Decision`] out, no clock, no I/O; the
//! same code runs in the operator (metrics from [`prometheus::PrometheusSource`], wall clock),
//! in the simulator (crate `mall-simulator`, simulated clock and metrics pipeline) and in tests. Time and metrics
//! enter through the [`Clock`] and [`MetricsSource`] traits, driven by [`Autoscaler::tick`].
//! Safety: missing data never scales a tier down; it holds and reports `MetricsUnavailable`.

pub mod config;
pub mod engine;
pub mod events;
pub mod limits;
pub mod operate;
pub mod plan;
pub mod prometheus;
pub mod robust;
pub mod signals;

#[cfg(test)]
mod engine_tests;

pub use config::{ConfigError, EngineConfig, EventConfig, Tier, TierConfig, Tuning};
pub use engine::{Condition, Decision, Engine, Observations, TierDecision, TierObservation};

use chrono::{DateTime, Utc};
use std::future::Future;

/// Where "now" comes from.
pub trait Clock {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Loads and latency at one instant; `None` = no data for that series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Storefront requests/s (all pods, refused ones included).
    pub storefront: Option<f64>,
    /// Storefront requests/s served (not refused with 503); below `storefront` when the Ready
    /// pods are saturated, which tells what a pod can really serve.
    pub storefront_served: Option<f64>,
    /// Cache commands/s (all nodes).
    pub cache: Option<f64>,
    /// Database queries/s (all instances).
    pub database: Option<f64>,
    /// Storefront p99 latency, seconds.
    pub p99_latency: Option<f64>,
    /// Why some series are missing (e.g. "Prometheus unreachable: …").
    pub problems: Vec<String>,
}

/// A source of [`Metrics`] (Prometheus in the operator, the simulated pipeline in `mallctl simulate`).
pub trait MetricsSource {
    /// Reads every series at `now`. Failures are reported inside [`Metrics`] (missing series and
    /// a problem), never as a panic: the engine holds on missing data.
    fn sample(&mut self, now: DateTime<Utc>) -> impl Future<Output = Metrics> + Send;
}

/// Replicas asked for and Ready, per tier, as the operator reads them from the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Desired replicas (per shard for cache and database).
    pub replicas: i32,
    /// Ready replicas (per shard: the least Ready shard).
    pub ready: i32,
}

/// Replica counts of every autoscaled tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Storefront pods.
    pub storefront: Counts,
    /// Cache replicas per shard.
    pub cache: Option<Counts>,
    /// Database instances per shard.
    pub database: Option<Counts>,
}

/// Engine + clock + metrics: one call per control-loop tick.
pub struct Autoscaler<C, M> {
    /// The decision engine (public so callers can inspect its estimates).
    pub engine: Engine,
    clock: C,
    metrics: M,
}

impl<C: Clock, M: MetricsSource> Autoscaler<C, M> {
    /// Wires an engine to a clock and a metrics source.
    pub fn new(engine: Engine, clock: C, metrics: M) -> Self {
        Self { engine, clock, metrics }
    }

    /// Reads the clock and the metrics, and decides.
    pub async fn tick(&mut self, counts: ClusterCounts) -> Decision {
        let now = self.clock.now();
        let metrics = self.metrics.sample(now).await;
        self.engine.decide(now, &Observations::from_parts(&metrics, &counts))
    }

    /// The metrics source (e.g. to read what the simulator recorded).
    pub fn metrics_mut(&mut self) -> &mut M {
        &mut self.metrics
    }
}

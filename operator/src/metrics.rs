//! Prometheus metrics of the operator: reconciles by outcome, errors by kind, reconcile
//! duration, children managed per Mall, writes.
//!
//! Contract: implements `mall_controllers::reconcile::Metrics`; [`OperatorMetrics::encode`]
//! renders the OpenMetrics text served on `/metrics`.

use mall_controllers::reconcile::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MallLabel {
    mall: String,
}

/// The operator's metrics registry.
pub struct OperatorMetrics {
    registry: Mutex<Registry>,
    reconciles: Family<Outcome, Counter>,
    duration: Histogram,
    children: Family<MallLabel, Gauge>,
    writes: Counter,
    leader: Gauge,
}

impl OperatorMetrics {
    /// A registry with every metric registered under the `mall_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mall_operator");
        let reconciles = Family::<Outcome, Counter>::default();
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let children = Family::<MallLabel, Gauge>::default();
        let writes = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by outcome (ok, invalid, dependency_missing, or the error kind)",
            reconciles.clone(),
        );
        registry.register("reconcile_duration_seconds", "Duration of one reconcile", duration.clone());
        registry.register("children_managed", "Children the operator manages per Mall", children.clone());
        registry.register("writes", "API writes made by reconciles (applies, deletes, status)", writes.clone());
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        Self { registry: Mutex::new(registry), reconciles, duration, children, writes, leader }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Metrics for OperatorMetrics {
    fn reconciled(&self, took: Duration, outcome: &str) {
        self.reconciles.get_or_create(&Outcome { outcome: outcome.into() }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    fn children(&self, mall: &str, children: usize) {
        self.children.get_or_create(&MallLabel { mall: mall.into() }).set(i64::try_from(children).unwrap_or(i64::MAX));
    }

    fn writes(&self, count: usize) {
        self.writes.inc_by(u64::try_from(count).unwrap_or(0));
    }
}

//! Prometheus metrics of the operator: reconciles by outcome, errors by kind, reconcile
//! duration, children managed per Mall, writes, leadership, and `build_info` (constant 1, the
//! version in a label).
//!
//! Contract: implements `mall_controllers::reconcile::Metrics`; [`OperatorMetrics::forget`] and
//! [`OperatorMetrics::retain`] remove deleted Malls' series (the Mall watch calls them);
//! [`OperatorMetrics::encode`] renders the OpenMetrics text served on `/metrics`.

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
struct BuildLabels {
    version: String,
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
    /// The Malls `children` has a series for.
    malls: Mutex<std::collections::BTreeSet<String>>,
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
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "Always 1; the operator's version in a label", build);
        Self { registry: Mutex::new(registry), reconciles, duration, children, malls: Mutex::default(), writes, leader }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Removes the series of the Mall `namespace/name`.
    pub fn forget(&self, mall: &str) {
        self.children.remove(&MallLabel { mall: mall.into() });
        self.known().remove(mall);
    }

    /// Removes the series of every Mall for which `keep(namespace/name)` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.known().iter().filter(|m| !keep(m)).cloned().collect();
        for mall in gone {
            self.forget(&mall);
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.malls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.known().insert(mall.to_string());
        self.children.get_or_create(&MallLabel { mall: mall.into() }).set(i64::try_from(children).unwrap_or(i64::MAX));
    }

    fn writes(&self, count: usize) {
        self.writes.inc_by(u64::try_from(count).unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_served_and_a_deleted_malls_series_go() {
        let m = OperatorMetrics::new();
        m.children("shop/a", 7);
        m.children("shop/b", 3);
        let text = m.encode();
        let build = format!("mall_operator_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("mall_operator_children_managed{mall=\"shop/a\"} 7"), "{text}");
        m.forget("shop/a");
        let text = m.encode();
        assert!(!text.contains("mall=\"shop/a\""), "{text}");
        assert!(text.contains("mall_operator_children_managed{mall=\"shop/b\"} 3"), "{text}");
        m.children("shop/c", 1);
        m.retain(|mall| mall == "shop/c");
        let text = m.encode();
        assert!(!text.contains("mall=\"shop/b\"") && text.contains("mall=\"shop/c\""), "{text}");
    }
}

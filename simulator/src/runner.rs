//! Running policies by name on a trace: what `mallctl simulate` and the acceptance tests share.
//!
//! Contract: pure; builds each policy fresh (no state shared between runs) from the Mall's
//! engine configuration and the model parameters.

use super::baselines::{Hpa, HpaConfig, Kpa, KpaConfig, Oracle};
use super::mall::MallPolicy;
use super::{Outcome, Policy, SimConfig, Trace, simulate};
use chrono::{DateTime, Utc};
use mall_controllers::autoscaler::{Engine, EngineConfig};

/// A policy by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// The Mall engine.
    Mall,
    /// Kubernetes HPA.
    Hpa,
    /// KEDA Prometheus scaler + HPA, KEDA's defaults (a fresh metric on every sync).
    Keda,
    /// KEDA with `useCachedMetrics: true` (the value of the last 30 s polling).
    KedaCached,
    /// Knative KPA.
    Kpa,
    /// Perfect foresight.
    Oracle,
}

impl PolicyKind {
    /// Every policy, in table order.
    pub const ALL: [PolicyKind; 5] =
        [PolicyKind::Mall, PolicyKind::Hpa, PolicyKind::Keda, PolicyKind::Kpa, PolicyKind::Oracle];

    /// Every policy that can be asked for by name (the table's and `keda-cached`).
    pub const SELECTABLE: [PolicyKind; 6] = [
        PolicyKind::Mall,
        PolicyKind::Hpa,
        PolicyKind::Keda,
        PolicyKind::KedaCached,
        PolicyKind::Kpa,
        PolicyKind::Oracle,
    ];

    /// Parses `mall|hpa|keda|keda-cached|kpa|oracle`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::SELECTABLE.into_iter().find(|k| k.name() == name)
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Mall => "mall",
            PolicyKind::Hpa => "hpa",
            PolicyKind::Keda => "keda",
            PolicyKind::KedaCached => "keda-cached",
            PolicyKind::Kpa => "kpa",
            PolicyKind::Oracle => "oracle",
        }
    }
}

/// Seconds between two runs of the operator's autoscaling loop.
pub const MALL_LOOP_PERIOD: u32 = 5;

/// A simulation of one trace.
pub struct Run<'a> {
    /// Demand.
    pub trace: &'a Trace,
    /// Model.
    pub sim: &'a SimConfig,
    /// The Mall's engine configuration.
    pub engine: &'a EngineConfig,
    /// Wall-clock time of t=0.
    pub start: DateTime<Utc>,
    /// Count violations from this second on separately.
    pub after: Option<u32>,
    /// Keep per-second series.
    pub record: bool,
}

impl Run<'_> {
    /// Runs `kind`.
    pub fn policy(&self, kind: PolicyKind) -> Outcome {
        let mut policy: Box<dyn Policy> = match kind {
            PolicyKind::Mall => {
                Box::new(MallPolicy::new(Engine::new(self.engine.clone()), self.start, MALL_LOOP_PERIOD))
            }
            PolicyKind::Hpa => Box::new(Hpa::new(HpaConfig::default())),
            PolicyKind::Keda => Box::new(Hpa::new(HpaConfig::keda())),
            PolicyKind::KedaCached => Box::new(Hpa::new(HpaConfig::keda_cached())),
            PolicyKind::Kpa => Box::new(Kpa::new(KpaConfig::default())),
            PolicyKind::Oracle => Box::new(Oracle::default()),
        };
        simulate(self.trace, self.sim, policy.as_mut(), self.after, self.record)
    }

    /// Runs every policy in `kinds`.
    pub fn all(&self, kinds: &[PolicyKind]) -> Vec<Outcome> {
        kinds.iter().map(|&k| self.policy(k)).collect()
    }
}

/// Model parameters for the storefront of `engine`: `capacity` defaults to target ÷ 0.7,
/// Prometheus scrapes every 15 s, and the query window is read from the storefront query
/// (`irate`: the scrape interval, as in the default).
pub fn sim_config(engine: &EngineConfig, startup: u32, capacity: Option<f64>) -> SimConfig {
    let sf = &engine.storefront;
    let query = sf.query.as_deref().unwrap_or(mall_controllers::autoscaler::prometheus::DEFAULT_STOREFRONT_QUERY);
    SimConfig {
        startup,
        capacity: capacity.unwrap_or(sf.target_per_replica / 0.7),
        scrape_interval: 15,
        // irate uses the last two scrapes whatever the range.
        query_window: if query.contains("irate(") { 15 } else { query_window(query).unwrap_or(60) },
        target: sf.target_per_replica,
        min: sf.min,
        max: sf.max,
    }
}

/// The range of the first `[...]` selector of a PromQL query, in seconds.
pub fn query_window(query: &str) -> Option<u32> {
    let open = query.find('[')?;
    let close = open + query[open..].find(']')?;
    let inner = query[open + 1..close].split(':').next()?;
    let d = mall_crds::common::parse_duration(inner.trim())?;
    u32::try_from(d.as_secs()).ok().filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_from_queries() {
        assert_eq!(query_window("sum(rate(x[1m]))"), Some(60));
        assert_eq!(query_window("rate(x[30s:5s])"), Some(30));
        assert_eq!(query_window("x"), None);
        assert!(PolicyKind::parse("kpa").is_some() && PolicyKind::parse("vpa").is_none());
        assert_eq!(PolicyKind::parse("keda-cached"), Some(PolicyKind::KedaCached));
    }
}

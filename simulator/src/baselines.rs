//! Baseline policies, from their documented algorithms and defaults, with every parameter
//! explicit so the models can be time-compressed and compared with the real controllers later.
//!
//! Contract: each baseline is a [`Policy`]; none looks at the future except [`Oracle`], which is
//! the cost floor at zero violations by construction.
//! - [`Hpa`]: Kubernetes HorizontalPodAutoscaler v2 (`pkg/controller/podautoscaler`), an External
//!   metric with an `AverageValue` target read through a Prometheus adapter.
//! - KEDA: its Prometheus scaler feeding that HPA. By default (`useCachedMetrics: false`) KEDA's
//!   metrics server queries Prometheus on every request of the HPA, so the HPA sees a fresh value
//!   at each sync; `pollingInterval` (30 s) only drives activation (0 ↔ 1 replicas, which a Mall's
//!   `min ≥ 1` never uses). With `useCachedMetrics: true` the value is the one read at the last
//!   polling ([`KedaConfig::use_cached_metrics`]).
//! - [`Kpa`]: Knative Pod Autoscaler (`pkg/autoscaler/scaling/autoscaler.go`), fed by
//!   queue-proxy statistics at one-second resolution (not by Prometheus).

use super::{Policy, View};
use std::collections::VecDeque;

/// HPA parameters. Defaults: kube-controller-manager and `autoscaling/v2` documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaConfig {
    /// `--horizontal-pod-autoscaler-sync-period` (default 15 s).
    pub sync_period: u32,
    /// `--horizontal-pod-autoscaler-tolerance` (default 0.1).
    pub tolerance: f64,
    /// `behavior.scaleUp.stabilizationWindowSeconds` (default 0).
    pub up_stabilization: u32,
    /// Scale-up policies, selectPolicy Max (default: 100 % and 4 pods per 15 s).
    pub up_percent: f64,
    /// Pods policy of scale-up.
    pub up_pods: i32,
    /// Period of the scale-up policies, seconds.
    pub up_period: u32,
    /// `behavior.scaleDown.stabilizationWindowSeconds` (default 300).
    pub down_stabilization: u32,
    /// Scale-down policy (default: 100 % per 15 s).
    pub down_percent: f64,
    /// Period of the scale-down policy, seconds.
    pub down_period: u32,
    /// The metric comes through KEDA (`None`: a Prometheus adapter queried at every sync).
    pub keda: Option<KedaConfig>,
}

/// KEDA's ScaledObject settings that change what the HPA sees. Defaults: KEDA 2.x
/// (`pollingInterval: 30`, `useCachedMetrics: false`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KedaConfig {
    /// `pollingInterval`, seconds (default 30): how often the operator polls the scaler for
    /// activation, and how often a cached value is refreshed.
    pub polling_interval: u32,
    /// `triggers[].useCachedMetrics` (default false): when true the metrics server answers the
    /// HPA with the value read at the last polling instead of querying Prometheus.
    pub use_cached_metrics: bool,
}

impl Default for KedaConfig {
    fn default() -> Self {
        Self { polling_interval: 30, use_cached_metrics: false }
    }
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            sync_period: 15,
            tolerance: 0.1,
            up_stabilization: 0,
            up_percent: 100.0,
            up_pods: 4,
            up_period: 15,
            down_stabilization: 300,
            down_percent: 100.0,
            down_period: 15,
            keda: None,
        }
    }
}

impl HpaConfig {
    /// The HPA KEDA creates for a ScaledObject with default settings: the HPA's own defaults
    /// (KEDA sets no `behavior` unless asked) and a fresh metric on every sync.
    pub fn keda() -> Self {
        Self { keda: Some(KedaConfig::default()), ..Self::default() }
    }

    /// KEDA with `useCachedMetrics: true`: the HPA sees the value of the last polling.
    pub fn keda_cached() -> Self {
        Self { keda: Some(KedaConfig { use_cached_metrics: true, ..KedaConfig::default() }), ..Self::default() }
    }
}

/// The HorizontalPodAutoscaler (or KEDA + HPA).
pub struct Hpa {
    cfg: HpaConfig,
    recommendations: VecDeque<(u32, i32)>,
    changes: VecDeque<(u32, i32)>,
    cached: Option<(u32, f64)>,
    first_sync: bool,
}

impl Hpa {
    /// An HPA with `cfg`.
    pub fn new(cfg: HpaConfig) -> Self {
        Self { cfg, recommendations: VecDeque::new(), changes: VecDeque::new(), cached: None, first_sync: true }
    }

    /// The metric value at this sync; `None` when the query has no data.
    fn metric(&mut self, view: &View<'_>) -> Option<f64> {
        let window = view.config.query_window;
        match self.cfg.keda {
            Some(KedaConfig { polling_interval, use_cached_metrics: true }) => match self.cached {
                Some((at, v)) if view.t < at + polling_interval => Some(v),
                _ => {
                    let v = view.prometheus.sample(view.t, window)?;
                    self.cached = Some((view.t, v));
                    Some(v)
                }
            },
            // Fresh: the adapter or KEDA's metrics server queries Prometheus now.
            _ => view.prometheus.sample(view.t, window),
        }
    }
}

impl Policy for Hpa {
    fn name(&self) -> String {
        match self.cfg.keda {
            Some(k) if k.use_cached_metrics => "keda-cached".into(),
            Some(_) => "keda".into(),
            None => "hpa".into(),
        }
    }

    fn period(&self) -> u32 {
        self.cfg.sync_period
    }

    fn decide(&mut self, view: &View<'_>) -> i32 {
        let t = view.t;
        let current = view.replicas.max(1);
        // horizontal.go: a metric that cannot be read fails the sync; the scale is left as is and
        // no recommendation is recorded.
        let Some(metric) = self.metric(view) else { return view.replicas };
        let target = view.config.target;
        // replica_calculator.go, GetExternalPerPodMetricReplicas.
        let ratio = metric / (target * f64::from(current));
        let rec = if (ratio - 1.0).abs() <= self.cfg.tolerance { current } else { (metric / target).ceil() as i32 };
        // horizontal.go, maybeInitScaleDownStabilizationWindow: the first sync seeds the
        // scale-down window with the current count.
        if self.first_sync && self.cfg.down_stabilization > 0 {
            self.recommendations.push_back((t, current));
        }
        self.first_sync = false;
        // horizontal.go, stabilizeRecommendationWithBehaviors: past recommendations count while
        // strictly younger than the window (`timestamp.After(now - window)`), the current one
        // always. A real sync comes one period plus its processing time after the previous
        // one, so the recommendation exactly `window` seconds old here is just outside in the
        // real controller: strict `<` keeps the same number of syncs.
        let within = |w: u32| self.recommendations.iter().filter(move |&&(at, _)| at + w > t).map(|&(_, r)| r);
        let up_floor = within(self.cfg.up_stabilization).chain([rec]).min().unwrap_or(rec);
        let down_ceiling = within(self.cfg.down_stabilization).chain([rec]).max().unwrap_or(rec);
        self.recommendations.push_back((t, rec));
        let keep = self.cfg.up_stabilization.max(self.cfg.down_stabilization);
        while self.recommendations.front().is_some_and(|&(at, _)| at + keep <= t) {
            self.recommendations.pop_front();
        }
        let mut desired = current;
        if desired < up_floor {
            desired = up_floor;
        }
        if desired > down_ceiling {
            desired = down_ceiling;
        }
        // convertDesiredReplicasWithBehaviorRate: limits relative to the count at period start
        // (`current - added + deleted` within the period, events strictly younger than it).
        let net_since =
            |period: u32| -> i32 { self.changes.iter().filter(|&&(at, _)| at + period > t).map(|&(_, d)| d).sum() };
        if desired > current {
            let start = current - net_since(self.cfg.up_period);
            let by_percent = (f64::from(start) * (1.0 + self.cfg.up_percent / 100.0)).ceil() as i32;
            let limit = by_percent.max(start + self.cfg.up_pods);
            desired = desired.min(limit.max(current));
        } else if desired < current {
            let start = current - net_since(self.cfg.down_period);
            let limit = (f64::from(start) * (1.0 - self.cfg.down_percent / 100.0)).ceil() as i32;
            desired = desired.max(limit.min(current));
        }
        if desired != current {
            self.changes.push_back((t, desired - current));
        }
        let horizon = self.cfg.up_period.max(self.cfg.down_period);
        while self.changes.front().is_some_and(|&(at, _)| at + horizon < t) {
            self.changes.pop_front();
        }
        desired
    }
}

/// KPA parameters. Defaults: Knative Serving `config-autoscaler`.
#[derive(Clone, Debug, PartialEq)]
pub struct KpaConfig {
    /// `stable-window` (default 60 s).
    pub stable_window: u32,
    /// `panic-window-percentage` of the stable window (default 10 % → 6 s).
    pub panic_window: u32,
    /// `panic-threshold-percentage` (default 200 %).
    pub panic_threshold: f64,
    /// `container-concurrency-target-percentage` / `target-utilization` (default 70 %).
    pub target_utilization: f64,
    /// `max-scale-up-rate` (default 1000).
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (default 2).
    pub max_scale_down_rate: f64,
    /// Autoscaler tick (default 2 s).
    pub tick: u32,
}

impl Default for KpaConfig {
    fn default() -> Self {
        Self {
            stable_window: 60,
            panic_window: 6,
            panic_threshold: 2.0,
            target_utilization: 0.7,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            tick: 2,
        }
    }
}

/// Knative Pod Autoscaler. Its `target` annotation is the spec's target ÷ the utilization, so the
/// effective per-pod target is the same as every other policy's.
pub struct Kpa {
    cfg: KpaConfig,
    panic_since: Option<u32>,
    max_panic_pods: i32,
}

impl Kpa {
    /// A KPA with `cfg`.
    pub fn new(cfg: KpaConfig) -> Self {
        Self { cfg, panic_since: None, max_panic_pods: 0 }
    }
}

/// Queue-proxy statistics of the last complete seconds `[t - window, t)`, seconds without a
/// measurement left out; `None` when the window has none (Knative: `ErrNoData`, no decision).
fn average(rps: &[f64], t: u32, window: u32) -> Option<f64> {
    let end = (t as usize).min(rps.len());
    let start = end.saturating_sub(window as usize);
    if end == 0 || start >= end {
        return rps.iter().copied().find(|v| !v.is_nan());
    }
    let (sum, n) = rps[start..end].iter().filter(|v| !v.is_nan()).fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl Policy for Kpa {
    fn name(&self) -> String {
        "kpa".into()
    }

    fn period(&self) -> u32 {
        self.cfg.tick
    }

    fn decide(&mut self, view: &View<'_>) -> i32 {
        let t = view.t;
        let ready = f64::from(view.ready.max(1));
        // target annotation (spec target ÷ utilization) × utilization = the spec's target.
        let per_pod = view.config.target;
        let (Some(stable), Some(panic)) =
            (average(&view.trace.rps, t, self.cfg.stable_window), average(&view.trace.rps, t, self.cfg.panic_window))
        else {
            return view.replicas;
        };
        let max_up = (self.cfg.max_scale_up_rate * ready).ceil();
        let max_down = (ready / self.cfg.max_scale_down_rate).floor();
        // autoscaler.go, Scale: dspc/dppc, clamped to [maxScaleDown, maxScaleUp]; the panic
        // threshold is tested on the unclamped panic count.
        let (dspc, dppc) = ((stable / per_pod).ceil(), (panic / per_pod).ceil());
        let desired_stable = dspc.clamp(max_down, max_up) as i32;
        let desired_panic = dppc.clamp(max_down, max_up) as i32;
        let over = dppc / ready >= self.cfg.panic_threshold;
        match self.panic_since {
            None if over => self.panic_since = Some(t),
            Some(_) if over => self.panic_since = Some(t),
            Some(since) if t >= since + self.cfg.stable_window => {
                self.panic_since = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }
        if self.panic_since.is_some() {
            // autoscaler.go: in panic mode the larger of the stable and panic counts ("we should
            // provision for stable as for panic"), and only increases are applied.
            self.max_panic_pods = self.max_panic_pods.max(desired_stable.max(desired_panic));
            self.max_panic_pods
        } else {
            desired_stable
        }
    }
}

/// Knows the whole trace; asks for exactly the pods needed `startup` seconds ahead.
#[derive(Default)]
pub struct Oracle {
    need: Vec<i32>,
}

impl Policy for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }

    fn period(&self) -> u32 {
        1
    }

    fn decide(&mut self, view: &View<'_>) -> i32 {
        if self.need.is_empty() {
            self.need = view.demand.iter().map(|d| (d / view.config.capacity - 1e-9).ceil().max(0.0) as i32).collect();
        }
        let t = view.t as usize;
        let end = (t + view.config.startup as usize + 1).min(self.need.len());
        self.need[t.min(end)..end].iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "baselines_tests.rs"]
mod tests;

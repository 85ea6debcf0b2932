//! Engine configuration: `spec.autoscaling` of a validated Mall turned into numbers.
//!
//! Contract: pure. Durations are parsed with `mall_crds::common::parse_duration`, event times with
//! chrono; a validated spec never fails here, but anything unparsable is reported as a
//! [`ConfigError`] rather than a panic. Engine tunables that the API does not expose (signal
//! windows, thresholds) live in [`Tuning`] with documented defaults.

use chrono::{DateTime, Utc};
use mall_crds::Mall;
use mall_crds::autoscaling::{AutoscalingSpec, TierScaling};
use mall_crds::common::parse_duration;
use std::time::Duration;

/// Why a spec could not be turned into an engine configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The Mall has no `spec.autoscaling`.
    #[error("spec.autoscaling is absent: nothing to scale")]
    NoAutoscaling,
    /// A duration string did not parse.
    #[error("{field}: {value:?} is not a duration")]
    Duration {
        /// Field path.
        field: String,
        /// Text found.
        value: String,
    },
    /// An event time did not parse as RFC 3339.
    #[error("{field}: {value:?} is not an RFC 3339 time")]
    Time {
        /// Field path.
        field: String,
        /// Text found.
        value: String,
        /// Cause.
        #[source]
        source: chrono::ParseError,
    },
}

/// Which tier a number belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Storefront pods (load: requests/s).
    Storefront,
    /// Cache replicas per shard (load: commands/s per node).
    Cache,
    /// Database instances per shard (load: queries/s per instance).
    Database,
}

impl Tier {
    /// Lower-case name, as in `status.lastScaling.tier`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Storefront => "storefront",
            Tier::Cache => "cache",
            Tier::Database => "database",
        }
    }
}

/// Bounds and target of one tier, per shard for cache and database.
#[derive(Clone, Debug, PartialEq)]
pub struct TierConfig {
    /// Fewest replicas.
    pub min: i32,
    /// Most replicas.
    pub max: i32,
    /// Load one serving node should carry.
    pub target_per_replica: f64,
    /// Shards sharing the load (1 for the storefront).
    pub shards: i32,
    /// Serving nodes per shard that are not counted as replicas (1 for the cache: the primary
    /// serves too; 0 for the storefront and the database, whose instances include the primary).
    pub extra_serving_nodes: i32,
    /// PromQL override from the spec.
    pub query: Option<String>,
}

impl TierConfig {
    fn from_spec(t: &TierScaling, shards: i32, extra_serving_nodes: i32) -> Self {
        Self {
            min: t.min,
            max: t.max,
            target_per_replica: t.target_per_replica,
            shards: shards.max(1),
            extra_serving_nodes,
            query: t.query.clone(),
        }
    }

    /// Replicas (per shard) needed to carry `load` (the tier's total) at the target, unclamped.
    pub fn replicas_for(&self, load: f64) -> i32 {
        self.replicas_at(load, self.target_per_replica)
    }

    /// Replicas (per shard) needed to carry `load` at `per_replica` per serving node, unclamped.
    pub fn replicas_at(&self, load: f64, per_replica: f64) -> i32 {
        let per_shard = load.max(0.0) / f64::from(self.shards);
        let nodes = (per_shard / per_replica.max(f64::MIN_POSITIVE) - 1e-9).ceil();
        // Saturating float-to-int conversion; loads are far below i32::MAX targets.
        (nodes as i32).saturating_sub(self.extra_serving_nodes)
    }

    /// Clamps to `[min, max]`.
    pub fn clamp(&self, replicas: i32) -> i32 {
        replicas.clamp(self.min, self.max.max(self.min))
    }
}

/// An announced promotion.
#[derive(Clone, Debug, PartialEq)]
pub struct EventConfig {
    /// Name (shown in reasons).
    pub name: String,
    /// Traffic starts.
    pub start: DateTime<Utc>,
    /// Promotion ends; capacity is released gradually afterwards.
    pub end: DateTime<Utc>,
    /// The engine arms (freezes the baseline) this long before `start`.
    pub warmup: Duration,
    /// Expected traffic relative to the baseline.
    pub multiplier: Option<f64>,
    /// Storefront replicas Ready at `start` at the least.
    pub min_replicas: Option<i32>,
}

/// Engine tunables that the API does not expose; defaults are documented in docs/autoscaling.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Long window of the stable signal.
    pub stable_window: Duration,
    /// Window over which the trend (slope) is measured.
    pub trend_window: Duration,
    /// Short-window load above `stable × (1 + surge_threshold)` is a surge.
    pub surge_threshold: f64,
    /// A surge stays active this long after the signal last fired (no scale-down meanwhile).
    pub surge_hold: Duration,
    /// Start-up time assumed until one has been observed.
    pub initial_startup: Duration,
    /// Extra look-ahead added to the start-up time for projections (metrics pipeline delay).
    pub pipeline_delay: Duration,
    /// Longest projection, as a multiple of the current load (4, the default `scaleUp` factor).
    pub max_projection_factor: f64,
    /// Event capacity is released once observed load reached this share of the expected load.
    pub event_confirm_share: f64,
    /// `targetPerReplica` as a share of what one replica can serve (0.7, Knative's default
    /// target utilization): the target keeps headroom for load nobody announced.
    pub target_utilization: f64,
    /// Margin over an announced event's expected load, which its capacity carries at what the
    /// replicas can serve (target ÷ `target_utilization`) rather than at the target.
    pub event_headroom: f64,
    /// Steady load within this fraction of the current size's target keeps the size (0.1, the
    /// HPA's default tolerance).
    pub steady_tolerance: f64,
    /// Window of the robust signals: Theil–Sen trend, recent peak, variability.
    pub memory_window: Duration,
    /// A fall from the recent peak that happened within this window is sudden (a dip).
    pub sudden_window: Duration,
    /// A rise or fall counts when it exceeds this many times the traffic's sample-to-sample
    /// variability (and `surge_threshold`).
    pub noise_sigmas: f64,
    /// Steady load must be covered up to this many times its sample-to-sample variability by
    /// what the replicas can serve; what the target's headroom does not cover is added.
    pub noise_headroom: f64,
    /// Traffic whose `noisy_sigmas` × variability the target's headroom does not cover is noisy.
    pub noisy_sigmas: f64,
    /// Scale-down stabilization window (at least) for noisy traffic.
    pub noisy_stabilization: Duration,
    /// Longest projection, as a multiple of the recent peak (or the stable mean if higher).
    pub max_over_peak: f64,
    /// How long capacity for the level before a sudden dip is held unless the load returns.
    pub dip_hold: Duration,
    /// Readings within this long of a change of the Ready count teach nothing about capacity.
    pub capacity_settle: Duration,
    /// Share of the load refused (served below received) that shows the pods are saturated.
    pub refusal_share: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            stable_window: Duration::from_secs(60),
            trend_window: Duration::from_secs(15),
            surge_threshold: 0.15,
            surge_hold: Duration::from_secs(30),
            initial_startup: Duration::from_secs(45),
            pipeline_delay: Duration::from_secs(15),
            max_projection_factor: 4.0,
            event_confirm_share: 0.5,
            target_utilization: 0.7,
            event_headroom: 0.1,
            steady_tolerance: 0.1,
            memory_window: Duration::from_secs(300),
            sudden_window: Duration::from_secs(45),
            noise_sigmas: 3.0,
            max_over_peak: 8.0,
            noise_headroom: 3.0,
            noisy_sigmas: 6.0,
            noisy_stabilization: Duration::from_secs(300),
            dip_hold: Duration::from_secs(180),
            capacity_settle: Duration::from_secs(30),
            refusal_share: 0.02,
        }
    }
}

/// Everything the engine needs, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Storefront bounds.
    pub storefront: TierConfig,
    /// Cache bounds (replicas per shard), when autoscaled.
    pub cache: Option<TierConfig>,
    /// Database bounds (instances per shard), when autoscaled.
    pub database: Option<TierConfig>,
    /// p99 objective.
    pub latency_slo: Option<Duration>,
    /// Latency query override.
    pub latency_query: Option<String>,
    /// Scale-down stabilization window.
    pub down_stabilization: Duration,
    /// Most replicas removed per minute, percent.
    pub down_percent_per_minute: f64,
    /// Most growth factor per step.
    pub up_factor: f64,
    /// Pods that may always be added per step.
    pub up_min_pods: i32,
    /// Announced promotions, sorted by start.
    pub events: Vec<EventConfig>,
    /// Internal tunables.
    pub tuning: Tuning,
}

fn duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).ok_or_else(|| ConfigError::Duration { field: field.into(), value: value.into() })
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, ConfigError> {
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|source| ConfigError::Time {
        field: field.into(),
        value: value.into(),
        source,
    })
}

impl EngineConfig {
    /// Configuration of a validated Mall.
    pub fn from_mall(mall: &Mall) -> Result<Self, ConfigError> {
        let spec = mall.spec.autoscaling.as_ref().ok_or(ConfigError::NoAutoscaling)?;
        let cache_shards = mall.spec.cache.as_ref().map_or(1, |c| c.shards);
        Self::from_spec(spec, cache_shards, mall.spec.database.shards)
    }

    /// Configuration of `spec.autoscaling` with the shard counts of the cache and database.
    pub fn from_spec(spec: &AutoscalingSpec, cache_shards: i32, db_shards: i32) -> Result<Self, ConfigError> {
        let mut events = Vec::with_capacity(spec.events.len());
        for (i, e) in spec.events.iter().enumerate() {
            let at = |f: &str| format!("spec.autoscaling.events[{i}].{f}");
            events.push(EventConfig {
                name: e.name.clone(),
                start: time(&at("start"), &e.start)?,
                end: time(&at("end"), &e.end)?,
                warmup: duration(&at("warmup"), &e.warmup)?,
                multiplier: e.multiplier,
                min_replicas: e.min_replicas,
            });
        }
        events.sort_by_key(|e| e.start);
        let latency_slo = match &spec.latency_slo {
            Some(slo) => Some(duration("spec.autoscaling.latencySlo.p99", &slo.p99)?),
            None => None,
        };
        Ok(Self {
            storefront: TierConfig::from_spec(&spec.storefront, 1, 0),
            cache: spec.cache.as_ref().map(|c| TierConfig::from_spec(c, cache_shards, 1)),
            database: spec.database.as_ref().map(|d| TierConfig::from_spec(d, db_shards, 0)),
            latency_slo,
            latency_query: spec.latency_slo.as_ref().and_then(|s| s.query.clone()),
            down_stabilization: duration("spec.autoscaling.scaleDown.stabilization", &spec.scale_down.stabilization)?,
            down_percent_per_minute: f64::from(spec.scale_down.max_percent_per_minute),
            up_factor: f64::from(spec.scale_up.max_factor_per_step.max(1)),
            up_min_pods: spec.scale_up.min_pods_per_step.max(1),
            events,
            tuning: Tuning::default(),
        })
    }

    /// The tier's configuration, when it is autoscaled.
    pub fn tier(&self, tier: Tier) -> Option<&TierConfig> {
        match tier {
            Tier::Storefront => Some(&self.storefront),
            Tier::Cache => self.cache.as_ref(),
            Tier::Database => self.database.as_ref(),
        }
    }
}

//! The decision engine: per tier, replicas from the load against the target, a short-window
//! surge signal with trend projection over the learned start-up time, a long-window stable
//! signal, the p99 latency objective, announced events, coordination of the cache and database
//! with the storefront, and the spec's limits.
//!
//! Contract: `Engine::decide(now, observations) -> Decision` is pure apart from the engine's own
//! memory (histories, limits, learned start-up time); calling it with the same sequence gives
//! the same decisions. Missing load for a tier holds that tier (never scales it down, except
//! to honour `max`) and sets `MetricsUnavailable`; every tier decision has a reason in words.

use super::config::{EngineConfig, Tier, TierConfig};
use super::events::{self, EventState, Floor};
use super::limits::{Bound, Limiter, Limits};
use super::plan::{self, Dip};
use super::robust::CapacityLearner;
use super::signals::{LoadHistory, Signals, StartupLearner, Windows};
use super::{ClusterCounts, Counts, Metrics};
use chrono::{DateTime, Utc};

/// What the engine is told about one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TierObservation {
    /// The tier's total load now (short query window); `None` = no data.
    pub load: Option<f64>,
    /// Replicas currently asked for (per shard for cache and database).
    pub replicas: i32,
    /// Replicas Ready.
    pub ready: i32,
}

/// Everything observed at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observations {
    /// Storefront.
    pub storefront: TierObservation,
    /// Cache, when autoscaled.
    pub cache: Option<TierObservation>,
    /// Database, when autoscaled.
    pub database: Option<TierObservation>,
    /// Storefront p99 latency, seconds.
    pub p99_latency: Option<f64>,
    /// Storefront requests/s served (not refused), when known.
    pub storefront_served: Option<f64>,
    /// Start-up times measured elsewhere (pod creation → Ready), seconds.
    pub startup_samples: Vec<f64>,
    /// Why data is missing, if known.
    pub problems: Vec<String>,
}

impl Observations {
    /// Combines metrics with the replica counts read from the cluster.
    pub fn from_parts(m: &Metrics, c: &ClusterCounts) -> Self {
        let tier = |load: Option<f64>, c: Counts| TierObservation { load, replicas: c.replicas, ready: c.ready };
        Self {
            storefront: tier(m.storefront, c.storefront),
            cache: c.cache.map(|c| tier(m.cache, c)),
            database: c.database.map(|c| tier(m.database, c)),
            p99_latency: m.p99_latency,
            storefront_served: m.storefront_served,
            startup_samples: Vec::new(),
            problems: m.problems.clone(),
        }
    }
}

/// The engine's verdict for one tier.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TierDecision {
    /// Which tier.
    pub tier: Tier,
    /// Replicas before.
    pub from: i32,
    /// Replicas to set.
    pub to: i32,
    /// Why, in words.
    pub reason: String,
}

/// A status condition the engine asserts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    /// Condition type (`MetricsUnavailable`).
    pub type_: String,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// One decision of the engine.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// One entry per autoscaled tier with data or a hold.
    pub tiers: Vec<TierDecision>,
    /// Conditions to publish.
    pub conditions: Vec<Condition>,
    /// Start-up time the projections used, seconds.
    pub startup_seconds: f64,
}

impl Decision {
    /// Replicas to set for `tier`.
    pub fn target(&self, tier: Tier) -> Option<i32> {
        self.tiers.iter().find(|d| d.tier == tier).map(|d| d.to)
    }

    /// The tier's decision.
    pub fn tier(&self, tier: Tier) -> Option<&TierDecision> {
        self.tiers.iter().find(|d| d.tier == tier)
    }

    /// Whether `MetricsUnavailable` is true.
    pub fn metrics_unavailable(&self) -> bool {
        self.conditions.iter().any(|c| c.type_ == "MetricsUnavailable" && c.status)
    }
}

#[derive(Clone, Debug)]
struct TierState {
    history: LoadHistory,
    limiter: Limiter,
    surge_until: f64,
    dip: Option<Dip>,
}

impl TierState {
    fn new(keep: f64) -> Self {
        Self { history: LoadHistory::new(keep), limiter: Limiter::default(), surge_until: f64::NEG_INFINITY, dip: None }
    }
}

/// The autoscaling engine of one Mall.
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: EngineConfig,
    storefront: TierState,
    cache: TierState,
    database: TierState,
    startup: StartupLearner,
    capacity: CapacityLearner,
    events: Vec<EventState>,
    /// Replicas the event floor asked for at the previous decision.
    last_floor: i32,
    /// Until when an ended event's unused reservation is released without the scale-down rate.
    release_until: f64,
}

impl Engine {
    /// An engine with empty memory.
    pub fn new(cfg: EngineConfig) -> Self {
        let tuning = &cfg.tuning;
        let keep = tuning
            .stable_window
            .max(tuning.trend_window)
            .max(tuning.memory_window)
            .max(tuning.sudden_window)
            .as_secs_f64()
            + 60.0;
        Self {
            storefront: TierState::new(keep),
            cache: TierState::new(keep),
            database: TierState::new(keep),
            startup: StartupLearner::new(cfg.tuning.initial_startup.as_secs_f64()),
            capacity: CapacityLearner::new(cfg.tuning.capacity_settle.as_secs_f64(), cfg.tuning.refusal_share),
            events: vec![EventState::default(); cfg.events.len()],
            last_floor: 0,
            release_until: f64::NEG_INFINITY,
            cfg,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Current start-up estimate, seconds.
    pub fn startup_estimate(&self) -> f64 {
        self.startup.estimate()
    }

    /// Requests/s a storefront pod serves at most, once saturation was observed.
    pub fn capacity_estimate(&self) -> Option<f64> {
        self.capacity.estimate()
    }

    /// What a storefront pod can serve: `targetPerReplica ÷ target_utilization` from the spec,
    /// or less when the pods were seen to saturate below it.
    fn replica_capacity(&self) -> f64 {
        let spec = self.cfg.storefront.target_per_replica / self.cfg.tuning.target_utilization.clamp(0.1, 1.0);
        self.capacity.estimate().map_or(spec, |c| c.min(spec))
    }

    fn windows(&self) -> Windows {
        let t = &self.cfg.tuning;
        Windows {
            stable: t.stable_window.as_secs_f64(),
            trend: t.trend_window.as_secs_f64(),
            memory: t.memory_window.as_secs_f64(),
            sudden: t.sudden_window.as_secs_f64(),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            stabilization: self.cfg.down_stabilization.as_secs_f64(),
            down_percent_per_minute: self.cfg.down_percent_per_minute,
            up_factor: self.cfg.up_factor,
            up_min_pods: self.cfg.up_min_pods,
            release_reservation: false,
        }
    }

    /// Look-ahead of projections: start-up time plus the metrics pipeline delay.
    fn horizon(&self) -> f64 {
        self.startup.estimate() + self.cfg.tuning.pipeline_delay.as_secs_f64()
    }

    /// Decides the replicas of every tier at `now`.
    pub fn decide(&mut self, now: DateTime<Utc>, obs: &Observations) -> Decision {
        let t = now.timestamp_millis() as f64 / 1000.0;
        for &s in &obs.startup_samples {
            self.startup.add_sample(s);
        }
        self.startup.observe(t, obs.storefront.ready, obs.storefront.replicas);
        let horizon = self.horizon();
        let tuning = self.cfg.tuning.clone();
        let windows = self.windows();
        let limits = self.limits();
        let mut missing: Vec<&'static str> = Vec::new();
        let mut tiers = Vec::new();

        // Storefront.
        let sf_obs = obs.storefront;
        let sf_signals = sf_obs.load.and_then(|l| {
            self.storefront.history.record(t, l);
            self.storefront.history.signals(t, &windows)
        });
        if let (Some(load), Some(served)) = (sf_obs.load, obs.storefront_served) {
            self.capacity.observe(t, load, served, sf_obs.ready.min(sf_obs.replicas));
        }
        let floor = self.event_floor(t, sf_signals.as_ref(), horizon);
        // An event's capacity whose hold just ended is a reservation: what the observed load does
        // not need goes at once (the stabilization window of observed needs still applies).
        let floor_now = floor.as_ref().map_or(0, |f| f.replicas);
        if self.last_floor > 0 && floor_now == 0 {
            self.release_until = t + limits.stabilization;
        }
        self.last_floor = floor_now;
        let limits = Limits { release_reservation: t < self.release_until, ..limits };
        let mut sf_cfg = self.cfg.storefront.clone();
        // Pods that saturate below what the spec implies carry the target's share of what they
        // really serve.
        let capacity_note = self.capacity.estimate().and_then(|c| {
            let target = c * tuning.target_utilization.clamp(0.1, 1.0);
            (target < sf_cfg.target_per_replica).then(|| {
                let note = format!(
                    "; pods saturate at {c:.0}/s, so {target:.0}/s each (not the spec's {:.0}/s)",
                    sf_cfg.target_per_replica
                );
                sf_cfg.target_per_replica = target;
                note
            })
        });
        let (sf_decision, sf_planned_load) = match sf_signals {
            None => {
                missing.push("storefront");
                (hold(Tier::Storefront, &sf_cfg, sf_obs, floor.as_ref()), None)
            }
            Some(s) => {
                let dip = plan::dip(&mut self.storefront.dip, t, &s, &tuning);
                let mut plan =
                    plan::plan(&s, &tuning, horizon, sf_obs.replicas * sf_cfg.shards, sf_cfg.target_per_replica, dip);
                if let Some(note) = &capacity_note {
                    plan.reason.push_str(note);
                }
                // During an announced event its expected load bounds the forecast (observed
                // load above it still counts).
                if let Some(f) = floor.as_ref().filter(|f| f.expected_load > 0.0) {
                    plan.load = plan.load.min(f.expected_load.max(s.current));
                }
                if plan.surge {
                    self.storefront.surge_until = t + tuning.surge_hold.as_secs_f64();
                }
                let mut rec = sf_cfg.replicas_for(plan.load);
                // ... and its capacity bounds what a forecast adds to the observed load.
                if let Some(f) = floor.as_ref().filter(|f| f.capacity > 0) {
                    rec = rec.min(f.capacity.max(sf_cfg.replicas_for(s.current)));
                }
                let mut need = sf_cfg.replicas_for(s.current.min(plan.load));
                let mut hold_down = t < self.storefront.surge_until;
                if let (Some(slo), Some(p99)) = (self.cfg.latency_slo, obs.p99_latency) {
                    let slo = slo.as_secs_f64();
                    if p99 > slo && slo > 0.0 {
                        let by_latency = (f64::from(sf_obs.replicas.max(1)) * (p99 / slo).min(2.0)).ceil() as i32;
                        need = need.max(by_latency);
                        if by_latency > rec {
                            rec = by_latency;
                            plan.reason =
                                format!("p99 latency {:.0}ms exceeds the {:.0}ms objective", p99 * 1e3, slo * 1e3);
                        }
                        hold_down = true;
                    }
                }
                if let Some(f) = floor.as_ref() {
                    if f.replicas > rec {
                        rec = f.replicas;
                        plan.reason = f.reason.clone();
                    } else if f.replicas == 0 {
                        plan.reason = format!("{}; {}", plan.reason, f.reason);
                    }
                }
                let limits = Limits { stabilization: plan::stabilization(&s, &tuning, limits.stabilization), ..limits };
                let decision = limited(
                    Tier::Storefront,
                    &sf_cfg,
                    &mut self.storefront.limiter,
                    t,
                    sf_obs,
                    rec,
                    need,
                    hold_down,
                    &limits,
                    plan.reason,
                );
                let planned = plan.load.max(floor.as_ref().filter(|f| f.replicas > 0).map_or(0.0, |f| f.expected_load));
                (decision, Some((s.stable, planned, hold_down)))
            }
        };
        if sf_decision.to > sf_obs.replicas {
            self.startup.requested(t, sf_decision.to);
        }
        tiers.push(sf_decision);

        // Followers: cache and database.
        for tier in [Tier::Cache, Tier::Database] {
            let (Some(cfg), Some(o)) = (self.cfg.tier(tier).cloned(), follower_obs(obs, tier)) else { continue };
            let state = match tier {
                Tier::Cache => &mut self.cache,
                _ => &mut self.database,
            };
            let signals = o.load.and_then(|l| {
                state.history.record(t, l);
                state.history.signals(t, &windows)
            });
            let Some(s) = signals else {
                missing.push(tier.name());
                tiers.push(hold(tier, &cfg, o, None));
                continue;
            };
            let state = match tier {
                Tier::Cache => &mut self.cache,
                _ => &mut self.database,
            };
            let dip = plan::dip(&mut state.dip, t, &s, &tuning);
            let serving = (o.replicas + cfg.extra_serving_nodes) * cfg.shards;
            let plan = plan::plan(&s, &tuning, horizon, serving, cfg.target_per_replica, dip);
            if plan.surge {
                state.surge_until = t + tuning.surge_hold.as_secs_f64();
            }
            let mut rec = cfg.replicas_for(plan.load);
            let need = cfg.replicas_for(s.current.min(plan.load));
            let mut reason = plan.reason;
            let mut hold_down = t < state.surge_until;
            if let Some((sf_stable, sf_planned, sf_hold)) = sf_planned_load {
                hold_down |= sf_hold;
                // This tier's load moves with the storefront's: scale its stable load by the
                // storefront's planned growth over its own stable load.
                if sf_stable > 0.0 && sf_planned > sf_stable * 1.01 {
                    let growth = sf_planned / sf_stable;
                    let expected = s.stable * growth;
                    let coordinated = cfg.replicas_for(expected);
                    if coordinated > rec {
                        rec = coordinated;
                        reason = format!(
                            "follows the storefront: its load is planned to grow {growth:.1}×, {:.0}/s → {expected:.0}/s here",
                            s.stable
                        );
                    }
                }
            }
            let limits = Limits { stabilization: plan::stabilization(&s, &tuning, limits.stabilization), ..limits };
            tiers.push(limited(tier, &cfg, &mut state.limiter, t, o, rec, need, hold_down, &limits, reason));
        }

        let unavailable = !missing.is_empty();
        let message = if unavailable {
            let mut m = format!("no load data for {}; holding their size", missing.join(", "));
            if !obs.problems.is_empty() {
                m.push_str(": ");
                m.push_str(&obs.problems.join("; "));
            }
            m
        } else {
            "all series have data".to_string()
        };
        let condition = Condition {
            type_: "MetricsUnavailable".into(),
            status: unavailable,
            reason: if unavailable { "NoData".into() } else { "MetricsFlowing".into() },
            message,
        };
        Decision { time: now, tiers, conditions: vec![condition], startup_seconds: self.startup.estimate() }
    }

    fn event_floor(&mut self, t: f64, s: Option<&Signals>, _horizon: f64) -> Option<Floor> {
        let now = events::Now {
            t,
            stable: s.map(|s| s.stable),
            current: s.map(|s| s.current),
            startup: self.startup.estimate(),
            pipeline_delay: self.cfg.tuning.pipeline_delay.as_secs_f64(),
            stabilization: self.cfg.down_stabilization.as_secs_f64(),
            confirm_share: self.cfg.tuning.event_confirm_share,
            replica_capacity: self.replica_capacity(),
            headroom: self.cfg.tuning.event_headroom,
        };
        let mut best: Option<Floor> = None;
        for (event, state) in self.cfg.events.iter().zip(self.events.iter_mut()) {
            if let Some(f) = events::floor(event, state, &now, &self.cfg.storefront)
                && best.as_ref().is_none_or(|b| f.replicas > b.replicas || b.replicas == 0 && f.replicas == 0)
            {
                best = Some(f);
            }
        }
        best
    }
}

fn follower_obs(obs: &Observations, tier: Tier) -> Option<TierObservation> {
    match tier {
        Tier::Cache => obs.cache,
        Tier::Database => obs.database,
        Tier::Storefront => Some(obs.storefront),
    }
}

/// No data: keep the size (within bounds); an event floor may still add capacity.
fn hold(tier: Tier, cfg: &TierConfig, o: TierObservation, floor: Option<&Floor>) -> TierDecision {
    let mut to = o.replicas.max(cfg.min).min(cfg.max.max(cfg.min));
    let mut reason = format!("metrics unavailable: holding {} replicas (never scaling down without data)", o.replicas);
    if let Some(f) = floor.filter(|f| f.replicas > to) {
        to = f.replicas;
        reason = format!("metrics unavailable; {}", f.reason);
    }
    TierDecision { tier, from: o.replicas, to, reason }
}

#[allow(clippy::too_many_arguments)]
fn limited(
    tier: Tier,
    cfg: &TierConfig,
    limiter: &mut Limiter,
    t: f64,
    o: TierObservation,
    rec: i32,
    need: i32,
    hold_down: bool,
    limits: &Limits,
    reason: String,
) -> TierDecision {
    let rec = cfg.clamp(rec);
    let current = o.replicas;
    let (to, bound) = limiter.apply(t, current, o.ready.min(current), rec, cfg.clamp(need), hold_down, limits);
    let to = cfg.clamp(to);
    let suffix = match bound {
        Bound::None if limits.release_reservation && to < current => {
            " (the ended event's unused reservation released at once)".to_string()
        }
        Bound::None => String::new(),
        Bound::UpRate => format!(" (want {rec}; scale-up limited per step)"),
        Bound::Stabilization => format!(" (want {rec}; held by the scale-down stabilization window)"),
        Bound::DownRate => format!(" (want {rec}; scale-down limited to {}%/min)", limits.down_percent_per_minute),
        Bound::Hold => format!(" (want {rec}; no scale-down while a surge or latency breach is active)"),
        Bound::Withdrawn => format!(
            " (want {rec}; {} starting replicas withdrawn, Ready ones and the observed need held)",
            current - to
        ),
    };
    TierDecision { tier, from: current, to, reason: format!("{reason}{suffix}") }
}

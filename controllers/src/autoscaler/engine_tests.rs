//! Unit tests of the engine: each signal, the safety hold, bounds, limits, events, coordination.

use super::*;
use chrono::{DateTime, Utc};
use serde_json::json;

fn at(t: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-10T00:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::seconds(t)
}

fn config(extra: serde_json::Value) -> EngineConfig {
    let mut autoscaling = json!({
        "prometheus": {"url": "http://prom:9090"},
        "storefront": {"min": 2, "max": 100, "targetPerReplica": 100}
    });
    if let (Some(a), Some(e)) = (autoscaling.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    let mall = crate::testing::mall_from(json!({"cache": {"shards": 3}, "autoscaling": autoscaling}));
    EngineConfig::from_mall(&mall).unwrap()
}

/// Drives an engine like the operator would: the decision is applied and pods become Ready
/// `startup` seconds later.
struct Driver {
    engine: Engine,
    replicas: i32,
    ready: i32,
    pending: Vec<(i64, i32)>,
    startup: i64,
}

impl Driver {
    fn new(cfg: EngineConfig, replicas: i32) -> Self {
        Self { engine: Engine::new(cfg), replicas, ready: replicas, pending: Vec::new(), startup: 30 }
    }

    fn step(&mut self, t: i64, load: Option<f64>) -> Decision {
        self.pending.retain(|&(when, n)| {
            if when <= t {
                self.ready = self.ready.max(n);
                false
            } else {
                true
            }
        });
        let obs = Observations {
            storefront: TierObservation { load, replicas: self.replicas, ready: self.ready.min(self.replicas) },
            ..Observations::default()
        };
        let d = self.engine.decide(at(t), &obs);
        let to = d.target(Tier::Storefront).unwrap();
        assert!(!d.tiers[0].reason.is_empty());
        if to > self.replicas {
            self.pending.push((t + self.startup, to));
        } else {
            self.ready = self.ready.min(to);
        }
        self.replicas = to;
        d
    }

    /// Steps every 5 s from `from` to `to` (exclusive) with `load(t)`; returns the last decision.
    fn run(&mut self, from: i64, to: i64, load: impl Fn(i64) -> f64) -> Decision {
        let mut last = None;
        for t in (from..to).step_by(5) {
            last = Some(self.step(t, Some(load(t))));
        }
        last.unwrap()
    }
}

#[test]
fn steady_load_is_sized_at_the_target_and_noise_is_ignored() {
    let mut d = Driver::new(config(json!({})), 2);
    let last = d.run(0, 600, |t| if t % 10 == 0 { 1030.0 } else { 970.0 });
    assert!((10..=11).contains(&d.replicas), "1000/s at 100 per replica (±10 % deadband): {}", last.tiers[0].reason);
    let before = d.replicas;
    for t in (600..1200).step_by(5) {
        let dec = d.step(t, Some(if t % 10 == 0 { 1030.0 } else { 970.0 }));
        assert_eq!(dec.target(Tier::Storefront), Some(before), "noise moved the size: {}", dec.tiers[0].reason);
    }
    assert!(last.tiers[0].reason.starts_with("steady"), "{}", last.tiers[0].reason);
}

#[test]
fn surge_reacts_at_once_and_blocks_scale_down() {
    let mut d = Driver::new(config(json!({})), 10);
    d.run(0, 300, |_| 1000.0);
    let first = d.step(300, Some(4000.0));
    assert!(first.target(Tier::Storefront).unwrap() >= 40, "{first:?}");
    assert!(first.tiers[0].reason.starts_with("surge"), "{}", first.tiers[0].reason);
    // Load dips right after the step: no scale-down while the surge is active.
    let dip = d.step(305, Some(500.0));
    assert_eq!(dip.tiers[0].from, dip.tiers[0].to, "{}", dip.tiers[0].reason);
}

#[test]
fn rising_trend_is_projected_over_the_learned_startup() {
    let mut d = Driver::new(config(json!({})), 10);
    d.startup = 60;
    d.run(0, 300, |_| 1000.0);
    // Teach a 60 s start-up.
    d.run(300, 420, |t| if t < 310 { 1000.0 } else { 1200.0 });
    assert!(d.engine.startup_estimate() >= 55.0, "learned {}", d.engine.startup_estimate());
    d.run(420, 1200, |_| 1000.0);
    // A ramp of 20/s: the engine sizes beyond the current load.
    let dec = d.run(1200, 1240, |t| 1000.0 + 20.0 * (t - 1195) as f64);
    let load_now = 1000.0 + 20.0 * 40.0;
    assert!(
        f64::from(d.replicas) * 100.0 > load_now,
        "{} replicas for {load_now}/s: {}",
        d.replicas,
        dec.tiers[0].reason
    );
    assert!(dec.tiers[0].reason.contains("projected"), "{}", dec.tiers[0].reason);
}

#[test]
fn missing_metrics_hold_and_report() {
    let mut d = Driver::new(config(json!({})), 10);
    d.run(0, 100, |_| 1000.0);
    let held = d.step(100, None);
    assert!(held.metrics_unavailable());
    let sf = held.tier(Tier::Storefront).unwrap();
    assert_eq!((sf.from, sf.to), (10, 10), "{}", sf.reason);
    assert!(sf.reason.contains("metrics unavailable"));
    // Many minutes without data: still no scale-down.
    for t in (105..1000).step_by(5) {
        assert_eq!(d.step(t, None).target(Tier::Storefront), Some(10));
    }
    assert!(!d.step(1000, Some(1000.0)).metrics_unavailable());
}

#[test]
fn min_and_max_bound_every_decision() {
    let mut d = Driver::new(config(json!({"storefront": {"min": 3, "max": 12, "targetPerReplica": 100}})), 5);
    d.run(0, 200, |_| 10.0);
    assert!(d.replicas >= 3);
    d.run(200, 2000, |_| 10.0);
    assert_eq!(d.replicas, 3);
    d.run(2000, 2100, |_| 100_000.0);
    assert_eq!(d.replicas, 12);
}

#[test]
fn scale_up_and_down_are_rate_limited() {
    let cfg = config(
        json!({"scaleUp": {"maxFactorPerStep": 2, "minPodsPerStep": 1}, "scaleDown": {"stabilization": "60s", "maxPercentPerMinute": 50}}),
    );
    let mut d = Driver::new(cfg, 4);
    d.run(0, 120, |_| 400.0);
    let up = d.step(120, Some(5000.0));
    assert_eq!(up.target(Tier::Storefront), Some(8), "doubling at most: {}", up.tiers[0].reason);
    assert!(up.tiers[0].reason.contains("limited"));
    d.run(125, 400, |_| 5000.0);
    let before = d.replicas;
    assert_eq!(before, 50);
    // The load drops: nothing for the stabilization window, then at most 50 % per minute.
    let mut seen = vec![];
    for t in (400..700).step_by(5) {
        seen.push((t, d.step(t, Some(400.0)).target(Tier::Storefront).unwrap()));
    }
    assert!(seen.iter().filter(|&&(t, _)| t < 455).all(|&(_, r)| r == 50), "{seen:?}");
    for &(t, r) in &seen {
        let minute_ago = seen.iter().filter(|&&(u, _)| u > t - 60 && u <= t).map(|&(_, r)| r).max().unwrap_or(before);
        assert!(f64::from(r) >= f64::from(minute_ago.max(r)) * 0.5 - 1.0, "at {t}: {r} after {minute_ago}");
    }
    assert_eq!(seen.last().unwrap().1, 4, "reaches the need in the end: {seen:?}");
}

#[test]
fn announced_event_capacity_is_ready_at_start_and_released_after_its_traffic() {
    let start = at(3600).to_rfc3339();
    let end = at(7200).to_rfc3339();
    let cfg =
        config(json!({"events": [{"name": "promo", "start": start, "end": end, "warmup": "10m", "multiplier": 8}]}));
    let mut d = Driver::new(cfg, 10);
    d.run(0, 3000, |_| 1000.0);
    assert_eq!(d.replicas, 10, "nothing before the warmup");
    let armed = d.step(3000, Some(1000.0));
    assert!(armed.tiers[0].reason.contains("armed"), "{}", armed.tiers[0].reason);
    d.run(3005, 3600, |_| 1000.0);
    // 8 × 1000/s + 10 % margin at what a replica serves (100 ÷ 0.7): ceil(8800 / 142.86) = 62.
    assert_eq!(d.ready, 62, "the announced peak is carried at the replicas' capacity, Ready at the start");
    // Traffic arrives; once it is seen the floor goes, and the size follows the load gradually.
    d.run(3600, 3700, |_| 6000.0);
    assert!(d.replicas >= 60);
    d.run(3700, 5000, |_| 3000.0);
    assert!((30..=33).contains(&d.replicas), "{}", d.replicas);
}

#[test]
fn event_min_replicas_without_multiplier() {
    let cfg = config(
        json!({"events": [{"name": "drop", "start": at(1200).to_rfc3339(), "end": at(1800).to_rfc3339(), "warmup": "5m", "minReplicas": 40}]}),
    );
    let mut d = Driver::new(cfg, 2);
    d.run(0, 1200, |_| 100.0);
    assert_eq!(d.ready, 40);
    // Metrics missing during the event: the floor still holds.
    let held = d.step(1200, None);
    assert_eq!(held.target(Tier::Storefront), Some(40));
}

#[test]
fn cache_and_database_follow_the_storefront_within_their_limits() {
    let cfg = config(json!({
        "cache": {"min": 0, "max": 5, "targetPerReplica": 1000},
        "database": {"min": 1, "max": 9, "targetPerReplica": 500}
    }));
    let mut engine = Engine::new(cfg);
    let obs = |_t: i64, sf: f64, cache: f64, db: f64, replicas: (i32, i32, i32)| Observations {
        storefront: TierObservation { load: Some(sf), replicas: replicas.0, ready: replicas.0 },
        cache: Some(TierObservation { load: Some(cache), replicas: replicas.1, ready: replicas.1 }),
        database: Some(TierObservation { load: Some(db), replicas: replicas.2, ready: replicas.2 }),
        ..Observations::default()
    };
    for t in (0..300).step_by(5) {
        engine.decide(at(t), &obs(t, 1000.0, 3000.0, 1000.0, (10, 0, 1)));
    }
    // The storefront surges 4×: cache (3 shards) and database (1 shard here) follow at once.
    let d = engine.decide(at(300), &obs(300, 4000.0, 3000.0, 1000.0, (10, 0, 1)));
    let sf = d.target(Tier::Storefront).unwrap();
    assert!(sf >= 40, "{d:?}");
    let cache = d.tier(Tier::Cache).unwrap();
    assert!(cache.to >= 3, "3000 cmd/s × 4 over 3 shards at 1000 per node = 4 nodes → 3 replicas: {cache:?}");
    assert!(cache.to <= 5);
    assert!(cache.reason.contains("follows the storefront"), "{}", cache.reason);
    let db = d.tier(Tier::Database).unwrap();
    assert!(db.to >= 4 && db.to <= 9, "{db:?}");
    // Cache data missing: the cache holds, the others decide.
    let mut o = obs(305, 4000.0, 3000.0, 1000.0, (sf, cache.to, db.to));
    o.cache = Some(TierObservation { load: None, replicas: cache.to, ready: cache.to });
    let d = engine.decide(at(305), &o);
    assert!(d.metrics_unavailable());
    assert_eq!(d.target(Tier::Cache), Some(cache.to));
    assert!(d.conditions[0].message.contains("cache"));
}

#[test]
fn latency_breach_scales_up_even_at_target_load() {
    let cfg = config(json!({"latencySlo": {"p99": "300ms"}}));
    let mut engine = Engine::new(cfg);
    let obs = |p99: f64| Observations {
        storefront: TierObservation { load: Some(1000.0), replicas: 10, ready: 10 },
        p99_latency: Some(p99),
        ..Observations::default()
    };
    for t in (0..120).step_by(5) {
        assert_eq!(engine.decide(at(t), &obs(0.1)).target(Tier::Storefront), Some(10));
    }
    let d = engine.decide(at(120), &obs(0.45));
    assert_eq!(d.target(Tier::Storefront), Some(15), "{d:?}");
    assert!(d.tiers[0].reason.contains("p99"), "{}", d.tiers[0].reason);
}

#[test]
fn a_step_projected_as_a_ramp_withdraws_the_starting_replicas_at_the_next_reading() {
    let mut d = Driver::new(config(json!({})), 10);
    d.run(0, 300, |_| 1000.0);
    // The first reading of a step looks like a steep ramp: sized for where it would be.
    d.step(300, Some(4000.0));
    let forecast = d.step(305, Some(4000.0));
    assert!(d.replicas > 60, "projected beyond the observed 4000/s: {}", forecast.tiers[0].reason);
    // The next scrape shows a plateau: the replicas still starting beyond its need go at once,
    // while a surge is active, and Ready capacity is untouched.
    let next = d.step(315, Some(4010.0));
    let sf = next.tier(Tier::Storefront).unwrap();
    assert!((41..=45).contains(&sf.to), "{sf:?}");
    assert!(sf.reason.contains("withdrawn"), "{}", sf.reason);
    assert_eq!(d.ready, 10, "nothing was Ready yet");
}

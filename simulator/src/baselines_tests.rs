//! Tests of the baselines' documented defaults: KEDA reads a fresh metric on every HPA sync
//! unless `useCachedMetrics` is set; the KPA in panic mode provisions for the larger of its
//! stable and panic counts; a metric gap holds every baseline.

use super::*;
use crate::{SimConfig, Trace, simulate};

fn config() -> SimConfig {
    SimConfig {
        startup: 30,
        capacity: 100.0 / 0.7,
        scrape_interval: 15,
        query_window: 15,
        target: 100.0,
        min: 1,
        max: 500,
    }
}

fn step(from: f64, to: f64, at: usize, len: usize) -> Trace {
    Trace { name: "step".into(), rps: (0..len).map(|t| if t < at { from } else { to }).collect() }
}

#[test]
fn keda_by_default_is_the_hpa_and_caching_is_an_option() {
    let trace = step(1000.0, 4000.0, 600, 1800);
    let run = |cfg: HpaConfig| simulate(&trace, &config(), &mut Hpa::new(cfg), None, false);
    let (hpa, keda, cached) = (run(HpaConfig::default()), run(HpaConfig::keda()), run(HpaConfig::keda_cached()));
    assert_eq!(keda.name, "keda");
    assert_eq!(cached.name, "keda-cached");
    assert_eq!(
        (keda.slo_violation_seconds, keda.replica_seconds),
        (hpa.slo_violation_seconds, hpa.replica_seconds),
        "a fresh metric on every sync: the same decisions as the HPA"
    );
    assert!(cached.slo_violation_seconds >= hpa.slo_violation_seconds, "a 30 s cache can only react later");
    assert_eq!(KedaConfig::default(), KedaConfig { polling_interval: 30, use_cached_metrics: false });
}

#[test]
fn kpa_panics_for_the_larger_of_stable_and_panic_counts() {
    // Load falls from 4000/s to 1000/s, then a burst over the panic threshold of 10 Ready pods:
    // the stable window still remembers 4000/s, so panic mode keeps the stable count.
    let mut rps = vec![4000.0; 120];
    rps.extend(vec![1000.0; 30]);
    rps.extend(vec![3000.0; 4]);
    rps.extend(vec![1000.0; 30]);
    let trace = Trace { name: "kpa".into(), rps };
    let cfg = config();
    let prometheus = crate::Pipeline::new(&trace, 15);
    let demand = trace.demand();
    let mut kpa = Kpa::new(KpaConfig::default());
    let view = |t: u32, replicas: i32| View {
        t,
        trace: &trace,
        demand: &demand,
        served: &[],
        prometheus: &prometheus,
        replicas,
        ready: replicas,
        config: &cfg,
    };
    let stable_count = (trace.rps[94..154].iter().sum::<f64>() / 60.0 / 100.0).ceil() as i32;
    let panic_count = (trace.rps[148..154].iter().sum::<f64>() / 6.0 / 100.0).ceil() as i32;
    assert!(stable_count > panic_count, "the case: stable {stable_count} > panic {panic_count}");
    let d = kpa.decide(&view(154, 10));
    assert_eq!(d, stable_count, "panic mode provisions for the larger count");
}

#[test]
fn a_metric_gap_holds_the_hpa_and_the_kpa() {
    let mut rps = vec![1000.0; 300];
    for v in &mut rps[100..250] {
        *v = f64::NAN;
    }
    let trace = Trace { name: "gap".into(), rps };
    let cfg = config();
    let prometheus = crate::Pipeline::new(&trace, 15);
    let demand = trace.demand();
    let view = |t: u32, replicas: i32| View {
        t,
        trace: &trace,
        demand: &demand,
        served: &[],
        prometheus: &prometheus,
        replicas,
        ready: replicas,
        config: &cfg,
    };
    assert_eq!(Hpa::new(HpaConfig::default()).decide(&view(180, 37)), 37, "no metric: the HPA keeps the scale");
    assert_eq!(Kpa::new(KpaConfig::default()).decide(&view(180, 37)), 37, "no statistics: the KPA keeps the scale");
    assert_eq!(Hpa::new(HpaConfig::default()).decide(&view(60, 4)), 8, "with data: scaling up (100 % per period)");
}

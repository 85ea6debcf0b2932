//! Acceptance (issue #15): on each development trace (`../shared/traces`, relative to the repo
//! root) the engine has fewer SLO-violation seconds than hpa, keda and kpa (or none at all), at
//! no more replica-seconds than hpa; on double-eleven, with the event of
//! `examples/double-eleven.yaml`, no violation second after the event's start. Traces run without
//! a start time have the Mall's events removed (unannounced traffic).

use super::runner::{PolicyKind, Run, sim_config};
use super::{Outcome, Trace};
use crate::autoscaler::EngineConfig;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_config() -> EngineConfig {
    let text = std::fs::read_to_string(repo().join("examples/double-eleven.yaml")).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mall = crate::validate::validate_value(&value, None).unwrap();
    EngineConfig::from_mall(&mall).unwrap()
}

fn run(name: &str, start: Option<&str>) -> (Vec<Outcome>, Option<u32>) {
    let trace = Trace::read(&repo().join(format!("../shared/traces/{name}.csv"))).unwrap();
    let mut engine = example_config();
    let start: DateTime<Utc> = match start {
        Some(s) => DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
        None => {
            engine.events.clear();
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
        }
    };
    let after = engine.events.first().map(|e| u32::try_from((e.start - start).num_seconds()).unwrap());
    let sim = sim_config(&engine, 30, None);
    let outcomes = Run { trace: &trace, sim: &sim, engine: &engine, start, after, record: false }.all(&PolicyKind::ALL);
    for o in &outcomes {
        eprintln!(
            "{name:14} {:7} viol {:6} dropped {:12.0} rs {:10.0} max {:4} actions {:5} after {:?}",
            o.name,
            o.slo_violation_seconds,
            o.dropped_requests,
            o.replica_seconds,
            o.max_replicas,
            o.scale_actions,
            o.slo_violation_seconds_after
        );
    }
    (outcomes, after)
}

fn check(name: &str, start: Option<&str>) {
    let (outcomes, after) = run(name, start);
    let get = |n: &str| outcomes.iter().find(|o| o.name == n).unwrap();
    let mall = get("mall");
    for other in ["hpa", "keda", "kpa"] {
        let o = get(other);
        assert!(
            mall.slo_violation_seconds < o.slo_violation_seconds || mall.slo_violation_seconds == 0,
            "{name}: mall {} violation seconds, {other} {}",
            mall.slo_violation_seconds,
            o.slo_violation_seconds
        );
    }
    let hpa = get("hpa");
    assert!(
        mall.replica_seconds <= hpa.replica_seconds,
        "{name}: mall {} replica-seconds, hpa {}",
        mall.replica_seconds,
        hpa.replica_seconds
    );
    assert_eq!(get("oracle").slo_violation_seconds, 0, "{name}: the oracle never violates");
    if after.is_some() {
        assert_eq!(mall.slo_violation_seconds_after, Some(0), "{name}: violations after the event's start");
    }
}

#[test]
fn double_eleven_with_its_event() {
    check("double-eleven", Some("2026-11-10T22:30:00+08:00"));
}

#[test]
fn flash_spikes_unannounced() {
    check("flash-spikes", None);
}

#[test]
fn diurnal_ramp() {
    check("diurnal", None);
}

#[test]
fn double_eleven_unannounced() {
    check("double-eleven", None);
}

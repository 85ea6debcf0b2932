//! Acceptance on the repository's tuned traces (`examples/traces/tuned`, written by
//! [`super::tracegen`]; the drift test there keeps them equal): on every trace, and on every
//! announcement case of `cases.csv` (on time, early, late, half or twice the size, never comes),
//! the engine has no more SLO-violation seconds than hpa and keda, at no more replica-seconds
//! than hpa, with the Mall of `examples/double-eleven.yaml` and the pods' true capacity the spec
//! implies (targetPerReplica ÷ 0.7, which the engine is not told); with the announcement on time,
//! no violation second after the event's start. The held-out set is reported by
//! `mallctl simulate --bench`, not asserted here.

use super::tracegen::{self, Case};
use super::runner::{PolicyKind, Run, sim_config};
use super::{Outcome, Trace};
use crate::autoscaler::EngineConfig;
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

fn run(name: &str, case: Option<&Case>) -> (Vec<Outcome>, Option<u32>) {
    let trace = Trace::read(&repo().join(format!("examples/traces/tuned/{name}.csv"))).unwrap();
    let mut engine = example_config();
    let event = engine.events.first().cloned().unwrap();
    let start = match case {
        Some(c) => {
            engine.events[0].multiplier = Some(c.multiplier);
            event.start - chrono::Duration::seconds(i64::try_from(c.event_at).unwrap())
        }
        None => {
            engine.events.clear();
            event.start
        }
    };
    let after = case.filter(|c| c.case == "on-time").map(|c| u32::try_from(c.event_at).unwrap());
    let sim = sim_config(&engine, 30, None);
    let outcomes = Run { trace: &trace, sim: &sim, engine: &engine, start, after, record: false }.all(&PolicyKind::ALL);
    for o in &outcomes {
        eprintln!(
            "{name:18} {:12} {:7} viol {:6} dropped {:12.0} rs {:10.0} max {:4} actions {:5} after {:?}",
            case.map_or("unannounced", |c| c.case),
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

/// The acceptance failures of one run (empty: met).
fn failures(name: &str, case: Option<&Case>) -> Vec<String> {
    let (outcomes, after) = run(name, case);
    let get = |n: &str| outcomes.iter().find(|o| o.name == n).unwrap();
    let label = format!("{name} ({})", case.map_or("unannounced", |c| c.case));
    let mall = get("mall");
    let mut out = Vec::new();
    for other in ["hpa", "keda"] {
        let o = get(other);
        if mall.slo_violation_seconds > o.slo_violation_seconds {
            out.push(format!("{label}: mall {} violation seconds, {other} {}", mall.slo_violation_seconds, o.slo_violation_seconds));
        }
    }
    let hpa = get("hpa");
    if mall.replica_seconds > hpa.replica_seconds {
        out.push(format!("{label}: mall {:.0} replica-seconds, hpa {:.0}", mall.replica_seconds, hpa.replica_seconds));
    }
    if get("oracle").slo_violation_seconds != 0 {
        out.push(format!("{label}: the oracle violated"));
    }
    if after.is_some() && mall.slo_violation_seconds_after != Some(0) {
        out.push(format!("{label}: {:?} violation seconds after the event's start", mall.slo_violation_seconds_after));
    }
    out
}

fn check(names: &[&str]) {
    let specs = tracegen::tuned();
    let cases = tracegen::cases(&specs);
    let mut all = Vec::new();
    for name in names {
        let mine: Vec<&Case> = cases.iter().filter(|c| c.trace == *name).collect();
        if mine.is_empty() {
            all.extend(failures(name, None));
        }
        for c in mine {
            all.extend(failures(name, Some(c)));
        }
    }
    assert!(all.is_empty(), "acceptance not met:\n{}", all.join("\n"));
}

#[test]
fn surges_announced_rightly_and_wrongly() {
    check(&["announced-surge", "no-show"]);
}

#[test]
fn unannounced_surges_spikes_and_storms() {
    check(&["unannounced-surge", "flash-spikes", "retry-storm", "live-cliff"]);
}

#[test]
fn slow_shapes_dips_gaps_and_noise() {
    check(&["diurnal", "slow-ramp", "dips-and-gaps", "noise"]);
}

#[test]
fn every_tuned_trace_is_checked() {
    let checked = [
        "announced-surge",
        "no-show",
        "unannounced-surge",
        "flash-spikes",
        "retry-storm",
        "live-cliff",
        "diurnal",
        "slow-ramp",
        "dips-and-gaps",
        "noise",
    ];
    let mut names: Vec<&str> = tracegen::tuned().iter().map(|s| s.name).collect();
    names.sort_unstable();
    let mut checked = checked.to_vec();
    checked.sort_unstable();
    assert_eq!(names, checked);
}

//! Regression guard on the repository's tuned traces (`examples/traces/tuned`, written by
//! [`super::tracegen`]; the drift test there keeps them equal), with the Mall of
//! `examples/double-eleven.yaml` and the pods' true capacity the spec implies (targetPerReplica ÷
//! 0.7, which the engine is not told). On every trace and every announcement case of `cases.csv`
//! (on time, early, late, half or twice the size, never comes): violation-seconds at most
//! [`VIOLATION_SLACK`] × the better of hpa and keda, replica-seconds at most [`COST_SLACK`] × hpa's
//! — except an announcement that never comes, whose reservation may cost at most its capacity for
//! the lead time, one stabilization window and a minute on top of the same trace unannounced —
//! and, announced on time, no violation second after the event's start. The strict acceptance
//! (no slack) is the verdict `mallctl simulate --bench` prints for both sets; the slack here is
//! what it misses on the tuned set today (docs/autoscaling.md), so a regression still fails. The
//! shapes the engine was first accepted on (a surge announced on time, unannounced surges and
//! spikes, a live-stream cliff, a diurnal day) are held to the acceptance without slack.

use super::tracegen::{self, Case};

/// Mall's violation-seconds may exceed the better baseline's by this factor (see the module doc).
const VIOLATION_SLACK: f64 = 1.1;
/// Mall's replica-seconds may exceed hpa's by this factor (see the module doc).
const COST_SLACK: f64 = 1.05;
use super::runner::{PolicyKind, Run, sim_config};
use super::{Outcome, Trace};
use mall_controllers::autoscaler::EngineConfig;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_config() -> EngineConfig {
    let text = std::fs::read_to_string(repo().join("examples/double-eleven.yaml")).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mall = mall_controllers::validate::validate_value(&value, None).unwrap();
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

fn get<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
    outcomes.iter().find(|o| o.name == name).unwrap()
}

/// What the engine reserves for the Mall's first event announced with `multiplier` on `trace`
/// at second `event_at`: replicas at what the spec implies a pod serves, for the expected load
/// plus the event margin, from the mean of the 20 minutes before.
fn reservation(trace: &Trace, event_at: usize, multiplier: f64) -> f64 {
    let cfg = example_config();
    let before = &trace.rps[event_at.saturating_sub(1200)..event_at];
    let baseline = before.iter().filter(|v| v.is_finite()).sum::<f64>() / before.len() as f64;
    let per_pod = cfg.storefront.target_per_replica / cfg.tuning.target_utilization;
    (baseline * multiplier * (1.0 + cfg.tuning.event_headroom) / per_pod).ceil()
}

/// How much mall may exceed the baselines: (violation factor, replica-seconds factor).
type Slack = (f64, f64);
/// The regression guard's slack (see the module doc).
const GUARD: Slack = (VIOLATION_SLACK, COST_SLACK);
/// No slack: the acceptance itself.
const STRICT: Slack = (1.0, 1.0);

/// The failures of one run against the guard (empty: met).
fn failures(name: &str, case: Option<&Case>) -> Vec<String> {
    failures_with(name, case, GUARD)
}

/// The failures of one run with the given slack.
fn failures_with(name: &str, case: Option<&Case>, (violation_slack, cost_slack): Slack) -> Vec<String> {
    let (outcomes, after) = run(name, case);
    let label = format!("{name} ({})", case.map_or("unannounced", |c| c.case));
    let mall = get(&outcomes, "mall");
    let mut out = Vec::new();
    let best = get(&outcomes, "hpa").slo_violation_seconds.min(get(&outcomes, "keda").slo_violation_seconds);
    if mall.slo_violation_seconds as f64 > best as f64 * violation_slack {
        out.push(format!("{label}: mall {} violation seconds, hpa/keda {best}", mall.slo_violation_seconds));
    }
    let hpa = get(&outcomes, "hpa");
    if let Some(c) = case.filter(|c| c.case == "never") {
        let (plain, _) = run(name, None);
        let cfg = example_config();
        let seconds = 60.0
            + cfg.tuning.initial_startup.as_secs_f64()
            + cfg.tuning.pipeline_delay.as_secs_f64()
            + cfg.down_stabilization.as_secs_f64();
        let trace = Trace::read(&repo().join(format!("examples/traces/tuned/{name}.csv"))).unwrap();
        let bound = reservation(&trace, c.event_at, c.multiplier) * seconds;
        let cost = mall.replica_seconds - get(&plain, "mall").replica_seconds;
        if cost > bound {
            out.push(format!("{label}: the unused reservation cost {cost:.0} replica-seconds, bound {bound:.0}"));
        }
    } else if mall.replica_seconds > hpa.replica_seconds * cost_slack {
        out.push(format!("{label}: mall {:.0} replica-seconds, hpa {:.0}", mall.replica_seconds, hpa.replica_seconds));
    }
    // The oracle is exact once the first pods it asks for can be Ready (30 s start-up); before,
    // only the initial pods serve.
    if get(&outcomes, "oracle").slo_violation_seconds > 30 {
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

/// Strictly (no slack): the surge announced on time, the unannounced surge, flash spikes, a
/// live-stream cliff and a diurnal day — the shapes the engine was first accepted on.
#[test]
fn the_first_accepted_shapes_meet_the_acceptance_without_slack() {
    let cases = tracegen::cases(&tracegen::tuned());
    let on_time = cases.iter().find(|c| c.trace == "announced-surge" && c.case == "on-time").expect("on-time case");
    let mut all = failures_with("announced-surge", Some(on_time), STRICT);
    for name in ["unannounced-surge", "flash-spikes", "live-cliff", "diurnal"] {
        all.extend(failures_with(name, None, STRICT));
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

//! Unit tests of the pure state machine (no API server).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn spec(instances: u32) -> SpecView {
    SpecView { instances, ..SpecView::default() }
}

/// Runs passes until the state machine stops asking for writes; returns every status written.
fn run(sim: &mut ClusterSim, spec: &SpecView, now: Instant) -> Vec<Value> {
    let mut written = Vec::new();
    let mut idle = 0;
    for _ in 0..100 {
        if let Some(status) = sim.step(spec, now, Duration::from_secs(1)) {
            sim.mark_written(status.clone());
            written.push(status);
            idle = 0;
        } else {
            idle += 1;
            if idle == 3 {
                // Three idle passes in a row: nothing more will change at this instant.
                return written;
            }
        }
    }
    panic!("the state machine did not settle: {written:#?}");
}

fn phases(written: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in written {
        if let Some(p) = s["phase"].as_str()
            && out.last().map(String::as_str) != Some(p)
        {
            out.push(p.to_string());
        }
    }
    out
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

#[test]
fn create_three_instances_follows_cnpg_order() {
    let mut sim = ClusterSim::new("pg");
    let written = run(&mut sim, &spec(3), Instant::now());
    assert_eq!(condition(&written[0], "Initialized")["reason"], "BootstrapPending");
    assert!(written[0]["phase"].is_null());
    assert_eq!(
        phases(&written),
        [
            PHASE_FIRST_PRIMARY,
            PHASE_WAITING,
            PHASE_CREATING_REPLICA,
            PHASE_WAITING,
            PHASE_CREATING_REPLICA,
            PHASE_WAITING,
            PHASE_HEALTHY
        ]
    );
    assert_eq!(written[1]["targetPrimary"], "pg-1");
    assert_eq!(written[1]["phaseReason"], "Creating primary instance pg-1");
    let replicas: Vec<&Value> = written.iter().filter(|s| s["phase"] == PHASE_CREATING_REPLICA).collect();
    assert_eq!(replicas[0]["phaseReason"], "Creating replica pg-2-join");
    assert_eq!(replicas[1]["phaseReason"], "Creating replica pg-3-join");
    // The primary is current before the first replica is created.
    assert_eq!(replicas[0]["currentPrimary"], "pg-1");
    assert_eq!(replicas[0]["timelineID"], 1);
    let last = written.last().expect("writes");
    assert_eq!(last["readyInstances"], 3);
    assert_eq!(last["instances"], 3);
    assert_eq!(last["instancesStatus"], json!({"healthy": ["pg-1", "pg-2", "pg-3"]}));
    assert_eq!(last["instanceNames"], json!(["pg-1", "pg-2", "pg-3"]));
    assert_eq!(condition(last, "Ready")["status"], "True");
    assert_eq!(condition(last, "Initialized")["reason"], "BootstrapCompleted");
    assert_eq!(last["readService"], "pg-r");
    assert_eq!(last["writeService"], "pg-rw");
    // Ready mirrors the phase on every write.
    for s in &written {
        if let Some(p) = s["phase"].as_str() {
            assert_eq!(condition(s, "Ready")["status"] == "True", p == PHASE_HEALTHY, "{s:#}");
        }
    }
}

#[test]
fn scale_down_removes_highest_serials_and_up_reuses_lowest_free() {
    let now = Instant::now();
    let mut sim = ClusterSim::new("pg");
    run(&mut sim, &spec(4), now);
    let written = run(&mut sim, &spec(2), now);
    assert_eq!(sim.serials(), [1, 2]);
    assert_eq!(written.last().expect("writes")["readyInstances"], 2);
    assert_eq!(phases(&written), [PHASE_HEALTHY]);
    let written = run(&mut sim, &spec(3), now);
    assert_eq!(sim.serials(), [1, 2, 3]);
    assert_eq!(phases(&written), [PHASE_CREATING_REPLICA, PHASE_WAITING, PHASE_HEALTHY]);
}

#[test]
fn failing_the_primary_fails_over_to_the_lowest_ready_serial() {
    let t0 = Instant::now();
    let mut sim = ClusterSim::new("pg");
    run(&mut sim, &spec(3), t0);
    assert!(sim.fail_instance(1, t0));
    assert!(!sim.fail_instance(9, t0));
    let written = run(&mut sim, &spec(3), t0);
    assert_eq!(phases(&written), [PHASE_FAILOVER]);
    assert_eq!(written[0]["targetPrimary"], PENDING_FAILOVER);
    assert_eq!(written[0]["phaseReason"], "Initiating a failover from pg-1");
    assert_eq!(written[1]["targetPrimary"], "pg-2");
    assert_eq!(written[1]["phaseReason"], "Failing over from pg-1 to pg-2");
    let last = written.last().expect("writes");
    assert_eq!(last["currentPrimary"], "pg-2");
    assert_eq!(last["timelineID"], 2);
    assert_eq!(last["readyInstances"], 2);
    assert_eq!(last["instancesStatus"]["replicating"], json!(["pg-1"]));
    // The old primary rejoins after the rejoin delay.
    let written = run(&mut sim, &spec(3), t0 + Duration::from_secs(2));
    let last = written.last().expect("writes");
    assert_eq!(last["phase"], PHASE_HEALTHY);
    assert_eq!(last["readyInstances"], 3);
    assert_eq!(last["currentPrimary"], "pg-2");
}

#[test]
fn a_failed_replica_keeps_the_phase_and_drops_ready_instances() {
    let t0 = Instant::now();
    let mut sim = ClusterSim::new("pg");
    run(&mut sim, &spec(2), t0);
    assert!(sim.fail_instance(2, t0));
    let written = run(&mut sim, &spec(2), t0);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["phase"], PHASE_HEALTHY);
    assert_eq!(written[0]["readyInstances"], 1);
    let written = run(&mut sim, &spec(2), t0 + Duration::from_secs(2));
    assert_eq!(written.last().expect("writes")["readyInstances"], 2);
}

#[test]
fn wal_archiver_plugin_sets_continuous_archiving() {
    let obj = json!({"spec": {"instances": 1, "plugins": [
        {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "parameters": {"barmanObjectName": "s"}}
    ]}});
    let view = SpecView::from_object(&obj);
    assert_eq!((view.instances, view.wal_archiver), (1, true));
    assert_eq!(view.archive.as_ref().map(|a| a.object_store.as_str()), Some("s"));
    assert!(!SpecView::from_object(&json!({"spec": {}})).wal_archiver);
    let mut sim = ClusterSim::new("pg");
    let written = run(&mut sim, &view, Instant::now());
    let last = written.last().expect("writes");
    assert_eq!(condition(last, "ContinuousArchiving")["reason"], "ContinuousArchivingSuccess");
}

#[test]
fn state_is_rebuilt_from_a_written_status() {
    let mut sim = ClusterSim::new("pg");
    let written = run(&mut sim, &spec(3), Instant::now());
    let last = written.last().expect("writes");
    let mut rebuilt = ClusterSim::from_status("pg", last);
    assert_eq!(rebuilt.serials(), [1, 2, 3]);
    let again = run(&mut rebuilt, &spec(3), Instant::now());
    // Same status as before (the first pass renders it again since nothing was written yet).
    assert_eq!(again.last().map(|s| &s["currentPrimary"]), Some(&json!("pg-1")));
    assert_eq!(again.last().map(|s| &s["timelineID"]), Some(&json!(1)));
}

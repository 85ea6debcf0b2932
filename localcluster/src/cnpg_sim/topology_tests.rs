//! Unit tests of the distributed topology (two Clusters sharing an in-memory object store).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::spec::ArchiveRef;
use super::super::wal::{ArchiveState, PromotionToken, SEGMENT, lsn_string};
use super::*;

/// Two members `a` and `b`, each archiving under its own serverName.
struct World {
    archives: BTreeMap<String, ArchiveState>,
    now: Instant,
}

fn member(name: &str, primary: &str, token: &str, archive_timeout: &str) -> SpecView {
    let other = if name == "a" { "b" } else { "a" };
    let archive = |server: &str| Some(ArchiveRef { object_store: "store".into(), server_name: server.into() });
    SpecView {
        instances: 1,
        wal_archiver: true,
        archive: archive(name),
        replica: primary != name,
        source_archive: archive(other),
        recovery: name == "b",
        promotion_token: token.to_string(),
        archive_timeout: archive_timeout.to_string(),
        fenced: vec![],
    }
}

impl World {
    fn new() -> World {
        World { archives: BTreeMap::new(), now: Instant::now() }
    }

    /// One step of `sim` (1 MiB of WAL per second); returns the status written, if any.
    fn step(&mut self, sim: &mut ClusterSim, spec: &SpecView) -> Option<Value> {
        let own = spec.archive.as_ref().map(|a| a.server_name.clone()).unwrap_or_default();
        let source = spec.source_archive.as_ref().map(|a| a.server_name.clone()).unwrap_or_default();
        let mut io = WalIo {
            followed: self.archives.get(&source).cloned(),
            own: self.archives.get(&own).cloned(),
            bytes_per_second: 1 << 20,
            ..WalIo::default()
        };
        let status = sim.step_wal(spec, self.now, Duration::from_secs(1), &mut io);
        if let Some(state) = io.archive {
            self.archives.insert(own, state);
        }
        if let Some(s) = &status {
            sim.mark_written(s.clone());
        }
        status
    }

    /// `n` rounds of one second, each stepping every given Cluster once; the statuses written.
    fn rounds(&mut self, n: usize, sims: &mut [(&mut ClusterSim, &SpecView)]) -> Vec<Vec<Value>> {
        let mut out = vec![Vec::new(); sims.len()];
        for _ in 0..n {
            self.now += Duration::from_secs(1);
            for (i, (sim, spec)) in sims.iter_mut().enumerate() {
                out[i].extend(self.step(sim, spec));
            }
        }
        out
    }
}

fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// `a` primary, `b` its replica, both healthy and replaying.
fn pair(world: &mut World, a_timeout: &str) -> (ClusterSim, ClusterSim) {
    let (mut a, mut b) = (ClusterSim::new("a"), ClusterSim::new("b"));
    let (sa, sb) = (member("a", "a", "", a_timeout), member("b", "a", "", "5min"));
    let written = world.rounds(40, &mut [(&mut a, &sa), (&mut b, &sb)]);
    for w in &written {
        assert_eq!(w.last().expect("writes")["phase"], PHASE_HEALTHY);
    }
    (a, b)
}

#[test]
fn replica_bootstraps_from_the_archive_and_follows_it() {
    let mut world = World::new();
    let (a, b) = pair(&mut world, "5min");
    let (pa, pb) = (a.positions(), b.positions());
    assert_eq!((pa.role, pb.role), (Some(Role::Primary), Some(Role::Replica)));
    assert_eq!(pb.system_identifier, pa.system_identifier);
    assert!(pa.written > 40 * SEGMENT / 16, "{pa:?}");
    // Archived at segment boundaries only (archive_timeout 5 min not reached).
    assert_eq!(pa.archived % SEGMENT, 0);
    assert!(pa.archived < pa.written);
    assert_eq!(pb.replayed, pa.archived);
    assert_eq!((pa.timeline, pb.timeline), (1, 1));
    // A short archive_timeout archives everything written.
    let mut world = World::new();
    let (a, b) = pair(&mut world, "1s");
    assert_eq!(a.positions().archived, a.positions().written);
    assert_eq!(b.positions().replayed, a.positions().archived);
}

#[test]
fn controlled_switchover_with_the_demotion_token() {
    let mut world = World::new();
    let (mut a, mut b) = pair(&mut world, "5min");
    // 1. On A: replica.primary = b.
    let sa = member("a", "b", "", "5min");
    let sb = member("b", "a", "", "5min");
    let written = world.rounds(5, &mut [(&mut a, &sa), (&mut b, &sb)]);
    let switch: Vec<&str> =
        written[0].iter().filter_map(|s| cond(s, "ReplicaClusterSwitch")["status"].as_str()).collect();
    assert_eq!(switch.first(), Some(&"False"));
    assert_eq!(switch.last(), Some(&"True"));
    assert!(written[0].iter().any(|s| s["switchReplicaClusterStatus"]["inProgress"] == true));
    assert!(written[0].iter().any(|s| s["readyInstances"] == 0), "fenced while demoting");
    let last = written[0].last().expect("writes");
    assert!(last["switchReplicaClusterStatus"].is_null());
    assert!(cond(last, "ReplicaClusterFencing").is_null());
    let token = last["demotionToken"].as_str().expect("demotionToken").to_string();
    let content = PromotionToken::decode(&token).expect("token");
    let pa = a.positions();
    assert_eq!(pa.role, Some(Role::Replica));
    assert_eq!(pa.archived, pa.written, "the last WAL is archived");
    assert_eq!(content.redo_location, lsn_string(pa.written));
    assert_eq!(content.timeline, "1");
    assert_eq!(Some(content.system_identifier.clone()), pa.system_identifier);
    assert_eq!(b.positions().replayed, pa.written, "B replayed everything A wrote");
    // 2-3. On B: primary = b and the token in one update.
    let sb = member("b", "b", &token, "5min");
    let written = world.rounds(5, &mut [(&mut a, &sa), (&mut b, &sb)]);
    let phases: Vec<&str> = written[1].iter().filter_map(|s| s["phase"].as_str()).collect();
    assert!(phases.contains(&PHASE_PROMOTING), "{phases:?}");
    let last = written[1].last().expect("writes");
    assert_eq!(last["phase"], PHASE_HEALTHY);
    assert_eq!(last["timelineID"], 2);
    assert_eq!(last["lastPromotionToken"], token.as_str());
    assert!(last["demotionToken"].is_null());
    // A follows B on the new timeline without a rebuild; B writes again.
    let (pa, pb) = (a.positions(), b.positions());
    assert_eq!((pb.role, pb.timeline), (Some(Role::Primary), 2));
    assert!(pb.written > pa.written, "B writes on timeline 2");
    assert_eq!(pa.timeline, 2);
    assert_eq!(pa.replayed, pb.archived);
}

#[test]
fn a_wrong_token_makes_the_cluster_unrecoverable() {
    for kind in ["system id", "older LSN"] {
        let mut world = World::new();
        let (_a, mut b) = pair(&mut world, "5min");
        let pb = b.positions();
        let token = match kind {
            "system id" => PromotionToken::new("42", 1, pb.replayed),
            _ => PromotionToken::new(pb.system_identifier.as_deref().unwrap_or_default(), 1, pb.replayed - 1),
        }
        .encode();
        let sb = member("b", "b", &token, "5min");
        let written = world.rounds(4, &mut [(&mut b, &sb)]);
        let last = written[0].last().expect("writes");
        assert_eq!(last["phase"], PHASE_UNRECOVERABLE, "{kind}");
        assert_eq!(last["phaseReason"], "Promotion token content is not correct for current instance");
        assert_eq!(b.positions().timeline, 1, "{kind}: not promoted");
    }
}

#[test]
fn failover_without_a_token_loses_the_unarchived_wal() {
    let mut world = World::new();
    let (a, mut b) = pair(&mut world, "1d");
    // A's region is lost: A is never stepped again. B is told it is the primary, no token.
    let pa = a.positions();
    let sb = member("b", "b", "", "5min");
    let written = world.rounds(3, &mut [(&mut b, &sb)]);
    assert!(!written[0].iter().any(|s| s["phase"] == PHASE_PROMOTING));
    assert_eq!(written[0].last().expect("writes")["timelineID"], 2);
    let pb = b.positions();
    assert_eq!(pb.role, Some(Role::Primary));
    assert_eq!(pb.replayed, pa.archived, "promoted from what was archived");
    let lost = pa.written - pb.replayed;
    assert!(lost > 0 && lost == pa.written - pa.archived, "lost {lost}: {pa:?} {pb:?}");
}

#[test]
fn fencing_stops_the_primary_writing() {
    let mut world = World::new();
    let (mut a, _b) = pair(&mut world, "5min");
    let mut sa = member("a", "a", "", "5min");
    sa.fenced = vec!["*".to_string()];
    let before = a.positions().written;
    let written = world.rounds(3, &mut [(&mut a, &sa)]);
    assert_eq!(written[0].last().expect("writes")["readyInstances"], 0);
    assert_eq!(a.positions().written, before);
    assert_eq!(a.positions().role, Some(Role::Primary), "no failover for a fenced primary");
    sa.fenced.clear();
    let written = world.rounds(3, &mut [(&mut a, &sa)]);
    assert_eq!(written[0].last().expect("writes")["readyInstances"], 1);
    assert!(a.positions().written > before);
}

//! The simulated state of one CloudNativePG `Cluster` and the pure state machine that moves it.
//!
//! Contract: [`ClusterSim::step`] performs ONE simulated reconcile pass (or one instance-side
//! event) and returns the full `.status` to write, or `None` when nothing is left to do. It reads
//! the spec through [`SpecView`] and never touches the API. Like CloudNativePG's reconciler, a
//! pass first takes the counts (`instances`, `readyInstances`, `instancesStatus`,
//! `instanceNames`: C:internal/controller/cluster_status.go `updateResourceStatus`) and then acts,
//! so those counts lag the action by one pass, as they do in CNPG. [`ClusterSim::step_wal`] is
//! the same pass with the WAL and the distributed topology (submodule `topology`): the caller
//! hands in the archive the Cluster follows and writes back the one it archives to ([`WalIo`]);
//! [`ClusterSim::step`] is `step_wal` without an object store.
//!
//! `C:` = `github.com/cloudnative-pg/cloudnative-pg@v1.30.1/` in the Go module cache.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

pub use super::spec::SpecView;

#[path = "topology.rs"]
mod topology;
pub use topology::{PHASE_PROMOTING, PHASE_UNRECOVERABLE, Role, WalIo, WalPositions};

/// Phase constants, C:api/v1/cluster_types.go.
pub const PHASE_HEALTHY: &str = "Cluster in healthy state";
/// `PhaseFirstPrimary`.
pub const PHASE_FIRST_PRIMARY: &str = "Setting up primary";
/// `PhaseCreatingReplica`.
pub const PHASE_CREATING_REPLICA: &str = "Creating a new replica";
/// `PhaseFailOver`.
pub const PHASE_FAILOVER: &str = "Failing over";
/// `PhaseWaitingForInstancesToBeActive`.
pub const PHASE_WAITING: &str = "Waiting for the instances to become active";
/// `PendingFailoverMarker`, C:api/v1/cluster_types.go.
pub const PENDING_FAILOVER: &str = "pending";

/// One simulated instance (a PVC group and its pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// Created, pod not active yet (Pending).
    Pending,
    /// Pod Ready.
    Ready,
    /// Pod running but not Ready since the instant (fault injected).
    Failed(Instant),
}

/// `status.targetPrimary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Not set yet.
    None,
    /// `<c>-<serial>`.
    Serial(u32),
    /// `pending`: a failover is waiting for the WAL receivers to stop.
    Pending,
}

/// The simulated state of one Cluster.
#[derive(Debug, Clone)]
pub struct ClusterSim {
    name: String,
    started: bool,
    instances: BTreeMap<u32, Instance>,
    current_primary: Option<u32>,
    target: Target,
    timeline: u32,
    latest_generated_node: u32,
    phase: Option<(String, String)>,
    conditions: Vec<Condition>,
    last_written: Option<Value>,
    /// Primary or replica cluster; `None` until the first bootstrapped pass reads the spec.
    role: Option<Role>,
    /// The replica-cluster switch (demotion) in progress.
    switch: Option<topology::SwitchStage>,
    demotion_token: Option<String>,
    last_promotion_token: Option<String>,
    wal: topology::Wal,
}

/// Counts taken at the start of a pass.
struct Counts {
    instances: usize,
    ready: usize,
    healthy: Vec<String>,
    replicating: Vec<String>,
    names: Vec<String>,
}

impl ClusterSim {
    /// A Cluster seen for the first time.
    pub fn new(name: &str) -> ClusterSim {
        ClusterSim {
            name: name.to_string(),
            started: false,
            instances: BTreeMap::new(),
            current_primary: None,
            target: Target::None,
            timeline: 0,
            latest_generated_node: 0,
            phase: None,
            conditions: Vec::new(),
            last_written: None,
            role: None,
            switch: None,
            demotion_token: None,
            last_promotion_token: None,
            wal: topology::Wal::default(),
        }
    }

    /// Rebuilds the state from a `.status` written earlier (a restarted simulator): every listed
    /// instance is taken as Ready. Returns a fresh state when the status is empty.
    pub fn from_status(name: &str, status: &Value) -> ClusterSim {
        let mut sim = ClusterSim::new(name);
        let Some(names) = status["instanceNames"].as_array() else { return sim };
        for n in names.iter().filter_map(|n| n.as_str()) {
            if let Some(serial) = sim.serial_of(n) {
                sim.instances.insert(serial, Instance::Ready);
            }
        }
        sim.started = true;
        sim.current_primary = status["currentPrimary"].as_str().and_then(|p| sim.serial_of(p));
        sim.target = match status["targetPrimary"].as_str() {
            Some(PENDING_FAILOVER) => Target::Pending,
            Some(t) => sim.serial_of(t).map_or(Target::None, Target::Serial),
            None => Target::None,
        };
        sim.timeline = status["timelineID"].as_u64().and_then(|t| u32::try_from(t).ok()).unwrap_or(0);
        sim.latest_generated_node = sim.instances.keys().max().copied().unwrap_or(0);
        if let Some(phase) = status["phase"].as_str() {
            sim.phase = Some((phase.to_string(), status["phaseReason"].as_str().unwrap_or_default().to_string()));
        }
        sim.conditions = serde_json::from_value(status["conditions"].clone()).unwrap_or_default();
        sim.demotion_token = status["demotionToken"].as_str().map(str::to_string);
        sim.last_promotion_token = status["lastPromotionToken"].as_str().map(str::to_string);
        sim
    }

    /// `<c>-<serial>`, C:pkg/specs (`GetInstanceName`).
    pub fn instance_name(&self, serial: u32) -> String {
        format!("{}-{serial}", self.name)
    }

    fn serial_of(&self, instance: &str) -> Option<u32> {
        instance.strip_prefix(&self.name)?.strip_prefix('-')?.parse().ok()
    }

    /// The serials that exist.
    pub fn serials(&self) -> Vec<u32> {
        self.instances.keys().copied().collect()
    }

    /// Fault injection: the instance's pod stops being Ready (its readiness probe fails) until
    /// `rejoin_after` has passed (and, for the primary, a failover has completed). Returns false
    /// when the serial does not exist.
    pub fn fail_instance(&mut self, serial: u32, now: Instant) -> bool {
        match self.instances.get_mut(&serial) {
            Some(inst) => {
                *inst = Instance::Failed(now);
                true
            }
            None => false,
        }
    }

    fn counts(&self, spec: &SpecView) -> Counts {
        // C:api/v1/base_funcs.go: `healthy` = Ready pods, `replicating` = running, not Ready;
        // `instances` counts PVC groups, not pods (C:api/v1/cluster_types.go `Instances`).
        let mut c =
            Counts { instances: self.instances.len(), ready: 0, healthy: vec![], replicating: vec![], names: vec![] };
        for (serial, inst) in &self.instances {
            let name = self.instance_name(*serial);
            // A fenced instance (annotation, or all of them during a demotion) runs, not Ready.
            let fenced = spec.is_fenced(&name) || self.switch.is_some();
            match inst {
                Instance::Ready if fenced => c.replicating.push(name.clone()),
                Instance::Ready => {
                    c.ready += 1;
                    c.healthy.push(name.clone());
                }
                Instance::Failed(_) => c.replicating.push(name.clone()),
                Instance::Pending => {}
            }
            c.names.push(name);
        }
        c
    }

    fn lowest_free_serial(&self) -> u32 {
        // C:internal/controller/cluster_create.go `generateNodeSerial`: the first gap in [1, N],
        // else N+1.
        (1..).find(|s| !self.instances.contains_key(s)).unwrap_or(1)
    }

    fn set_phase(&mut self, phase: &str, reason: String) {
        // C:pkg/resources/status/transactions.go `SetPhase`.
        self.phase = Some((phase.to_string(), reason));
    }

    fn is_ready(&self, serial: u32) -> bool {
        self.instances.get(&serial) == Some(&Instance::Ready)
    }

    /// One pass. `Some(status)` when a status write is due (the caller skips a write equal to
    /// the last one it made, see [`ClusterSim::mark_written`]).
    pub fn step(&mut self, spec: &SpecView, now: Instant, rejoin_after: Duration) -> Option<Value> {
        self.step_wal(spec, now, rejoin_after, &mut WalIo::default())
    }

    /// [`ClusterSim::step`] with the WAL: `io` carries the archive the Cluster follows and
    /// receives the state to write to its own archive (see [`WalIo`]).
    pub fn step_wal(&mut self, spec: &SpecView, now: Instant, rejoin_after: Duration, io: &mut WalIo) -> Option<Value> {
        self.instance_side_recovery(now, rejoin_after);
        let counts = self.counts(spec);
        if !self.started {
            // First reconcile: `updateResourceStatus` writes Initialized=False/BootstrapPending,
            // then `createPostgresClusterObjects` makes the secrets and services
            // (C:internal/controller/cluster_status.go, cluster_create.go).
            self.started = true;
        } else {
            // The replica-cluster switch and promotion run before the rest of the reconcile
            // (C:internal/controller/cluster_controller.go: `ShouldPromoteFromReplicaCluster`,
            // then `replicaclusterswitch.Reconcile`).
            let acted = match self.topology_pass(spec, now) {
                Some(acted) => acted,
                None => self.operator_pass(spec),
            };
            if !acted {
                self.instance_side_activation(spec, io, now);
            }
        }
        self.advance_wal(spec, io, now);
        let status = self.render(&counts, spec);
        (self.last_written.as_ref() != Some(&status)).then_some(status)
    }

    /// Records that `status` reached the API server.
    pub fn mark_written(&mut self, status: Value) {
        self.last_written = Some(status);
    }

    /// A pod that was failed restarts and becomes Ready again after `rejoin_after`: a replica
    /// in place; the former primary only once it is no longer the current primary (it "will
    /// restart, detect that it is no longer the primary, and become a replica node",
    /// C:docs/src/failover.md), or at once when no other instance could take over.
    fn instance_side_recovery(&mut self, now: Instant, rejoin_after: Duration) {
        let others_ready = |me: u32, instances: &BTreeMap<u32, Instance>| {
            instances.iter().any(|(s, i)| *s != me && *i == Instance::Ready)
        };
        let snapshot = self.instances.clone();
        for (serial, inst) in self.instances.iter_mut() {
            if let Instance::Failed(since) = *inst {
                let is_primary = self.current_primary == Some(*serial);
                let may_rejoin = !is_primary || !others_ready(*serial, &snapshot);
                if now.duration_since(since) >= rejoin_after && may_rejoin {
                    *inst = Instance::Ready;
                }
            }
        }
    }

    /// The operator's reconcile, one action at most; false when it did nothing (it waits).
    fn operator_pass(&mut self, spec: &SpecView) -> bool {
        // Failover first: C:internal/controller/cluster_controller.go runs
        // `reconcileTargetPrimaryFromPods` before `reconcileResources`.
        if let Some(primary) = self.current_primary
            && let Some(done) = self.failover(primary)
        {
            return done;
        }
        // C:internal/controller/cluster_controller.go `reconcileResources`: any pod not active
        // -> "Waiting for the instances to become active" / "Some instances are not yet active.
        // Please wait."
        if self.instances.values().any(|i| *i == Instance::Pending) {
            if self.phase.as_ref().is_some_and(|(p, _)| p == PHASE_WAITING) {
                return false;
            }
            self.set_phase(PHASE_WAITING, "Some instances are not yet active. Please wait.".to_string());
            return true;
        }
        // C:internal/controller/cluster_controller.go `reconcilePods`: no instance -> the primary
        // (C:internal/controller/cluster_create.go `createPrimaryInstance`: targetPrimary, then
        // "Setting up primary" / "Creating primary instance <c>-1").
        if self.instances.is_empty() {
            let serial = self.lowest_free_serial();
            self.instances.insert(serial, Instance::Pending);
            self.latest_generated_node = self.latest_generated_node.max(serial);
            self.target = Target::Serial(serial);
            self.set_phase(PHASE_FIRST_PRIMARY, format!("Creating primary instance {}", self.instance_name(serial)));
            return true;
        }
        let wanted = usize::try_from(spec.instances).unwrap_or(usize::MAX);
        // C:internal/controller/cluster_scale.go `scaleDownCluster` with
        // C:internal/controller/replicas.go `findDeletableInstance`: the Ready, non-primary
        // instance with the highest serial; no phase of its own.
        if self.instances.len() > wanted {
            let victim =
                self.instances.iter().rev().find(|(s, i)| **i == Instance::Ready && Some(**s) != self.current_primary);
            if let Some((&serial, _)) = victim {
                self.instances.remove(&serial);
                return true;
            }
            return false;
        }
        // `reconcilePods`: wait while readyInstances != instances.
        if self.instances.values().any(|i| *i != Instance::Ready) {
            return false;
        }
        // C:internal/controller/cluster_create.go `reconcileMissingInstance` / `createReplica`:
        // lowest free serial, job `<c>-<n>-join`, "Creating a new replica" / "Creating replica
        // <c>-<n>-join".
        if self.instances.len() < wanted {
            let serial = self.lowest_free_serial();
            self.instances.insert(serial, Instance::Pending);
            self.latest_generated_node = self.latest_generated_node.max(serial);
            self.set_phase(PHASE_CREATING_REPLICA, format!("Creating replica {}-join", self.instance_name(serial)));
            return true;
        }
        // End of a clean reconcile: `RegisterPhase(PhaseHealthy, "")`
        // (C:internal/controller/plugins.go, cluster_controller.go).
        self.set_phase(PHASE_HEALTHY, String::new());
        true
    }

    /// The failover of C:docs/src/failover.md and C:internal/controller/replicas.go
    /// `reconcileTargetPrimaryForNonReplicaCluster`. `None` when the primary is fine.
    fn failover(&mut self, primary: u32) -> Option<bool> {
        match self.target {
            // A promotion in progress: the new primary's instance manager takes the primary
            // Lease, promotes and sets currentPrimary; a promotion opens a new timeline.
            Target::Serial(t) if t != primary && self.is_ready(t) => {
                self.current_primary = Some(t);
                self.timeline += 1;
                Some(true)
            }
            _ if self.is_ready(primary) => None,
            // Step 1: "Failing over" / "Initiating a failover from X", targetPrimary=pending
            // (failoverDelay defaults to 0 s, C:docs/src/instance_manager.md).
            Target::Serial(t) if t == primary => {
                self.set_phase(PHASE_FAILOVER, format!("Initiating a failover from {}", self.instance_name(primary)));
                self.target = Target::Pending;
                Some(true)
            }
            // Step 2, once the WAL receivers are down: "Failing over from X to Y". CNPG picks the
            // most advanced replica (received LSN, then replay LSN, then name); with no WAL
            // here the simulator takes the lowest Ready serial, which is deterministic.
            Target::Pending => {
                let candidate = self.instances.iter().find(|(_, i)| **i == Instance::Ready).map(|(s, _)| *s);
                let Some(next) = candidate else { return Some(false) };
                let reason =
                    format!("Failing over from {} to {}", self.instance_name(primary), self.instance_name(next));
                self.set_phase(PHASE_FAILOVER, reason);
                self.target = Target::Serial(next);
                Some(true)
            }
            _ => Some(false),
        }
    }

    /// Pod side: the one Pending pod becomes Ready once the "Waiting" phase is registered
    /// (kwok-like). The first primary takes the Lease, sets currentPrimary and timeline 1
    /// (facts file §1 "Orderings").
    /// With `bootstrap.recovery` the first instance waits until the source archive exists.
    fn instance_side_activation(&mut self, spec: &SpecView, io: &WalIo, now: Instant) {
        let Some((&serial, _)) = self.instances.iter().find(|(_, i)| **i == Instance::Pending) else { return };
        if self.current_primary.is_none() && self.target == Target::Serial(serial) {
            if !self.bootstrap_wal(spec, io, now) {
                return;
            }
            self.current_primary = Some(serial);
        }
        self.instances.insert(serial, Instance::Ready);
    }

    fn remove_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
    }

    fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        // `meta.SetStatusCondition`: lastTransitionTime changes only with the status.
        let status = if status { "True" } else { "False" };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status.to_string();
                c.reason = reason.to_string();
                c.message = message.to_string();
            }
            None => self.conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: now,
                observed_generation: None,
            }),
        }
    }

    fn render(&mut self, counts: &Counts, spec: &SpecView) -> Value {
        // C:internal/controller/cluster_status.go: Initialized=True once instances > 0, never
        // cleared; False/BootstrapPending only when absent.
        if counts.instances > 0 {
            self.set_condition("Initialized", true, "BootstrapCompleted", "Cluster has been bootstrapped");
        } else if !self.conditions.iter().any(|c| c.type_ == "Initialized") {
            self.set_condition("Initialized", false, "BootstrapPending", "Cluster has not been bootstrapped yet");
        }
        // C:pkg/resources/status/transactions.go `SetClusterReadyCondition`, on every phase write.
        if let Some((phase, _)) = self.phase.clone() {
            if phase == PHASE_HEALTHY {
                self.set_condition("Ready", true, "ClusterIsReady", "Cluster is Ready");
            } else {
                self.set_condition("Ready", false, "ClusterIsNotReady", "Cluster Is Not Ready");
            }
        }
        // C:pkg/management/postgres/webserver/local.go: the primary reports each archived WAL.
        if spec.wal_archiver && self.current_primary.is_some_and(|p| self.is_ready(p)) {
            self.set_condition(
                "ContinuousArchiving",
                true,
                "ContinuousArchivingSuccess",
                "Continuous archiving is working",
            );
        }
        let conditions = serde_json::to_value(&self.conditions).unwrap_or_default();
        let mut status = json!({
            "instances": counts.instances,
            "readyInstances": counts.ready,
            "instanceNames": counts.names,
            "instancesStatus": {},
            "latestGeneratedNode": self.latest_generated_node,
            // C:internal/controller/cluster_status.go: `GetServiceReadWriteName` (-rw) and
            // `GetServiceReadName` (-r, not -ro), and the scale subresource's selector.
            "writeService": format!("{}-rw", self.name),
            "readService": format!("{}-r", self.name),
            "selector": format!("cnpg.io/cluster={},cnpg.io/podRole=instance", self.name),
            "conditions": conditions,
        });
        if !counts.healthy.is_empty() {
            status["instancesStatus"]["healthy"] = json!(counts.healthy);
        }
        if !counts.replicating.is_empty() {
            status["instancesStatus"]["replicating"] = json!(counts.replicating);
        }
        if let Some((phase, reason)) = &self.phase {
            status["phase"] = json!(phase);
            status["phaseReason"] = json!(reason);
        }
        match self.target {
            Target::None => {}
            Target::Pending => status["targetPrimary"] = json!(PENDING_FAILOVER),
            Target::Serial(s) => status["targetPrimary"] = json!(self.instance_name(s)),
        }
        if let Some(p) = self.current_primary {
            status["currentPrimary"] = json!(self.instance_name(p));
        }
        if self.timeline > 0 {
            status["timelineID"] = json!(self.timeline);
        }
        // C:api/v1/cluster_types.go `demotionToken`, `lastPromotionToken`,
        // `switchReplicaClusterStatus`.
        if let Some(token) = &self.demotion_token {
            status["demotionToken"] = json!(token);
        }
        if let Some(token) = &self.last_promotion_token {
            status["lastPromotionToken"] = json!(token);
        }
        if self.switch.is_some() {
            status["switchReplicaClusterStatus"] = json!({"inProgress": true});
        }
        status
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "topology_tests.rs"]
mod topology_tests;

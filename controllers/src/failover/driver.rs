//! One failover tick of one Mall: probe every region, update health, fence returning old
//! primaries, advance or start a move, write the status and the DNS record.
//!
//! Contract: [`Driver::tick`] is called every `spec.failover.probeInterval` for each Mall with a
//! distributed topology (two or more regions and a backup; other Malls are left alone). It
//! probes all regions concurrently (each bounded by the interval), counts the results
//! ([`super::health`]), and then, in order:
//! 1. a reachable non-active region whose shard still claims the primary role (an old primary
//!    back after a failover) is demoted on first contact (epoch = the current one; its storefront
//!    goes to 0 through the reconciler), marked `Rebuilding` with `serverEpoch` = the current epoch
//!    and `seededFrom` = the active region, and its shard Clusters are deleted so the reconciler
//!    recreates them from the new primary into a fresh archive folder; it is `Healthy` again once
//!    its rebuilt shards pass `failureThreshold` probes;
//! 2. a running move advances ([`super::moves`]); otherwise [`super::machine::decide`] runs on the
//!    probed health, the witnesses' reports and the pending request, and its decision starts a
//!    move, refuses the request, or sets `FailoverRecommended` / `FailoverBlocked`;
//! 3. the status ([`super::status`]) is written when it changed beyond probe times, counts and errors
//!    (a converged Mall costs no writes), conditioned on the resourceVersion the tick read (on a
//!    conflict re-read, and written only if the epoch is still the tick's: a stalled leader never
//!    writes an older epoch),
//!    and the hub's `DNSEndpoint` ([`super::dns`]) when it changed.
//!
//! Every region's client comes from the [`Clusters`] registry (the operator's own cluster or a
//! member kubeconfig Secret). Errors of one region become its probe failure; a refused write
//! (an admission policy fencing a stale epoch) is returned and published as a Warning Event.

use super::health::{Health, Tracker};
use super::machine::{self, Decision, Inputs, RegionView};
use super::moves::{self, Move};
use super::probe::{self, Probe};
use super::status::{self, BLOCKED, FailoverStatus, RECOMMENDED};
use super::{dns, execute};
use crate::build::database::topology::Topology;
use crate::build::names::Target;
use crate::clusters::Clusters;
use crate::reconcile::error_chain;
use chrono::{DateTime, Utc};
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use mall_crds::Mall;
use mall_crds::requests::{FailoverRequest, REQUEST_ANNOTATION};
use mall_crds::status::{RegionStatus, RequestOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a tick could not do.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Writing the status failed (409 when the Mall changed meanwhile; the next tick retries).
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// Writing a shard Cluster's role failed.
    #[error(transparent)]
    Execute(#[from] execute::ExecuteError),
    /// Publishing the DNS record failed.
    #[error("publishing the DNSEndpoint")]
    Dns(#[source] kube::Error),
    /// Reading the Mall again failed.
    #[error("reading the Mall")]
    Read(#[source] kube::Error),
    /// The Mall's epoch moved past this tick's: nothing was written (the next tick rereads).
    #[error("the Mall moved past failover epoch {epoch} during this tick: nothing written")]
    Fenced {
        /// The epoch this tick computed from.
        epoch: i64,
    },
}

/// What the driver remembers of one Mall between ticks.
#[derive(Debug, Default)]
pub struct MallState {
    /// Probe counts per region.
    pub trackers: BTreeMap<String, Tracker>,
    /// The move in progress.
    pub current: Option<Move>,
    /// The status last written.
    pub written: Option<FailoverStatus>,
    /// The DNS record last published.
    pub published: Option<serde_json::Value>,
}

/// The failover controller's effects: clients, Events.
pub struct Driver {
    /// Clients of the hub and the member clusters.
    pub clusters: Arc<Clusters>,
    /// Events on the Mall.
    pub recorder: Recorder,
}

impl Driver {
    /// A driver using `clusters`, reporting Events as `recorder`.
    pub fn new(clusters: Arc<Clusters>, recorder: Recorder) -> Self {
        Self { clusters, recorder }
    }

    /// The client of `target` for `mall`'s namespace.
    pub async fn client(&self, namespace: &str, target: &Target) -> Result<kube::Client, String> {
        match target {
            Target::Local => Ok(self.clusters.local().client.clone()),
            Target::Member { secret, key } => self
                .clusters
                .member(namespace, secret, key)
                .await
                .map(|c| c.client.clone())
                .map_err(|e| error_chain(&e)),
        }
    }

    /// The client of the cluster holding `region` of `mall`.
    pub async fn region_client(&self, mall: &Mall, region: &str) -> Result<kube::Client, String> {
        let region =
            mall.spec.regions.iter().find(|r| r.name == region).ok_or_else(|| format!("no region {region}"))?;
        let namespace = mall.metadata.namespace.as_deref().unwrap_or_default();
        self.client(namespace, &Target::of(region.cluster.as_ref())).await
    }

    /// Gives shard `shard`'s member in `region` its role in `topology` (see
    /// [`execute::set_role`]), the error on one line.
    pub async fn set_role(
        &self,
        mall: &Mall,
        topology: &Topology,
        region: &str,
        shard: i32,
        token: Option<&str>,
    ) -> Result<(), String> {
        let client = self.region_client(mall, region).await?;
        let namespace = mall.metadata.namespace.as_deref().unwrap_or_default();
        execute::set_role(&client, namespace, topology, region, shard, topology.epoch, token)
            .await
            .map_err(|e| e.note())
    }

    /// Publishes an Event on `mall`.
    pub async fn event(&self, mall: &Mall, warning: bool, reason: &str, mut note: String) {
        // The API server refuses a note over 1024 bytes (an admission refusal can be longer).
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push('…');
        }
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Failover".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &mall.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish a failover Event");
        }
    }

    /// One tick for `mall` at `now` (see the module header).
    pub async fn tick(&self, mall: &Mall, state: &mut MallState, now: DateTime<Utc>) -> Result<(), DriverError> {
        let Ok(plan) = crate::validate::plan(mall) else { return Ok(()) };
        let (Some(topology), Some(failover)) = (Topology::of(mall), plan.failover.clone()) else { return Ok(()) };
        let ns = plan.namespace.clone();
        let interval = failover.probe_interval;
        let probes = futures::future::join_all(plan.scopes.iter().map(|scope| async {
            let region = scope.region.unwrap_or_default().to_string();
            let probe = match self.client(&ns, &scope.target).await {
                Ok(client) => probe::probe(&client, mall, &region, interval).await,
                Err(e) => Probe::failed(e),
            };
            (region, probe)
        }))
        .await;
        let probes: BTreeMap<String, Probe> = probes.into_iter().collect();
        let previous = mall.status.clone().unwrap_or_default();
        let mut regions: Vec<RegionStatus> = Vec::new();
        for r in &mall.spec.regions {
            let tracker = state.trackers.entry(r.name.clone()).or_default();
            if let Some(p) = probes.get(&r.name) {
                tracker.observe(p.outcome.clone(), now, failover.failure_threshold);
            }
            let old = previous.regions.iter().find(|s| s.name == r.name).cloned();
            regions.push(region_status(&r.name, tracker, old, &topology));
        }
        let mut out = FailoverStatus {
            active_region: topology.active.clone(),
            failover_epoch: topology.epoch,
            regions,
            last_failover: previous.last_failover.clone(),
            switchover: previous.switchover.clone(),
            last_request: previous.last_request.clone(),
            conditions: Vec::new(),
        };
        self.fence_returning(mall, &topology, &probes, state, &mut out).await?;
        if state.current.is_none() {
            state.current = moves::resume(&previous);
        }
        let request = pending_request(mall);
        let mut recommended = None;
        let mut blocked = None;
        if let Some(current) = state.current.take() {
            let failover = !current.is_switchover();
            state.current = moves::advance(self, mall, &topology, current, &probes, &mut out, now).await?;
            if failover && state.current.is_none() {
                self.rebuild_demoted(mall, &probes, state, &mut out).await?;
            }
            if let Some(r) = request.filter(|r| out.last_request.as_ref().is_none_or(|l| l.id != r.id)) {
                out.last_request = Some(outcome(&r.id, "Refused", "another failover or switchover is running".into()));
            }
        } else {
            let inputs = inputs(mall, &topology, &out, &probes, state, request.clone(), &failover, now);
            match machine::decide(&inputs) {
                Decision::Stay => {}
                Decision::Refuse { message } => {
                    if let Some(r) = &request {
                        self.event(mall, true, "RequestRefused", message.clone()).await;
                        out.last_request = Some(outcome(&r.id, "Refused", message));
                    }
                }
                Decision::Recommend { to, reason } => {
                    recommended = Some(format!("{reason}: run `mallctl failover {} --to {to}`", plan.name))
                }
                Decision::Blocked { why, message } => blocked = Some((why.reason(), message)),
                Decision::Failover { to, reason } => {
                    let started = state
                        .trackers
                        .get(&topology.active)
                        .and_then(|t| t.failing_since)
                        .filter(|_| request.is_none())
                        .unwrap_or(now);
                    state.current = moves::start_failover(
                        self,
                        mall,
                        &topology,
                        &to,
                        &reason,
                        started,
                        request.as_ref(),
                        &probes,
                        &mut out,
                    )
                    .await?;
                }
                Decision::Switchover { to } => {
                    state.current =
                        moves::start_switchover(self, mall, &topology, &to, request.as_ref(), &mut out, now).await?;
                }
            }
        }
        out.conditions = vec![
            status::condition(
                mall,
                RECOMMENDED,
                recommended.is_some(),
                if recommended.is_some() { "ActiveRegionDown" } else { "ActiveRegionServing" },
                recommended.unwrap_or_default(),
                now,
            ),
            match blocked {
                Some((reason, message)) => status::condition(mall, BLOCKED, true, reason, message, now),
                None => status::condition(mall, BLOCKED, false, "NotBlocked", String::new(), now),
            },
        ];
        if state.written.as_ref().map(significant) != Some(significant(&out)) {
            tracing::debug!(
                mall = %plan.name,
                desired = %serde_json::to_string(&significant(&out)).unwrap_or_default(),
                last = %state.written.as_ref().map(|w| serde_json::to_string(&significant(w)).unwrap_or_default()).unwrap_or_default(),
                "writing status (failover)"
            );
            self.write_status(mall, &out).await?;
            state.written = Some(out.clone());
        }
        self.publish_dns(mall, &out, &probes, state).await
    }

    /// Demotes, marks and deletes the shards of non-active regions that still claim the primary
    /// role (module header, step 1).
    async fn fence_returning(
        &self,
        mall: &Mall,
        topology: &Topology,
        probes: &BTreeMap<String, Probe>,
        state: &mut MallState,
        out: &mut FailoverStatus,
    ) -> Result<(), DriverError> {
        let ns = mall.metadata.namespace.clone().unwrap_or_default();
        let switching = state.current.as_ref().is_some_and(Move::is_switchover);
        for (region, p) in probes {
            if region == &topology.active || !p.reachable || switching {
                continue;
            }
            let stale: Vec<i32> = p.shards.iter().filter(|s| s.claims_primary()).map(|s| s.index).collect();
            if stale.is_empty() {
                continue;
            }
            let Ok(client) = self.region_client(mall, region).await else { continue };
            for shard in &stale {
                if let Err(e) = execute::set_role(&client, &ns, topology, region, *shard, topology.epoch, None).await {
                    self.event(mall, true, e.reason(), e.note()).await;
                    return Err(e.into());
                }
            }
            let note = format!(
                "region {region} came back claiming the primary role of shard(s) {stale:?}: demoted in epoch {} and \
                 rebuilt from {} (archive folder suffix -e{})",
                topology.epoch, topology.active, topology.epoch
            );
            self.rebuild(mall, topology, region, &client, state, out, note).await?;
        }
        Ok(())
    }

    /// Marks `region` `Rebuilding` (its shards re-seeded from the active region into archive
    /// folders of the current epoch), records it, deletes its shard Clusters for the reconciler
    /// to recreate, and resets its probe counts (it is `Healthy` again only once the rebuilt
    /// shards pass `failureThreshold` probes).
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &self,
        mall: &Mall,
        topology: &Topology,
        region: &str,
        client: &kube::Client,
        state: &mut MallState,
        out: &mut FailoverStatus,
        note: String,
    ) -> Result<(), DriverError> {
        let ns = mall.metadata.namespace.clone().unwrap_or_default();
        if let Some(r) = out.regions.iter_mut().find(|r| r.name == region) {
            r.health = "Rebuilding".into();
            r.server_epoch = topology.epoch;
            r.seeded_from = Some(topology.active.clone());
            r.role = Some("replica".into());
        }
        // The new archive folder and seed must be recorded before the Clusters go.
        self.write_status(mall, out).await?;
        if let Err(e) = execute::delete_shards(client, &ns, topology, region, mall.spec.database.shards).await {
            self.event(mall, true, e.reason(), e.note()).await;
            return Err(e.into());
        }
        state.trackers.insert(region.to_string(), Tracker::default());
        self.event(mall, false, "RegionFenced", note).await;
        Ok(())
    }

    /// After a failover that demoted a reachable old primary (a requested failover), that
    /// region is rebuilt: without a token its shards may hold writes the new primary never had.
    async fn rebuild_demoted(
        &self,
        mall: &Mall,
        probes: &BTreeMap<String, Probe>,
        state: &mut MallState,
        out: &mut FailoverStatus,
    ) -> Result<(), DriverError> {
        let Some(last) = out.last_failover.clone().filter(|l| l.kind == "failover" && l.completed.is_some()) else {
            return Ok(());
        };
        if !probes.get(&last.from).is_some_and(|p| p.reachable) {
            return Ok(());
        }
        let Some(base) = Topology::of(mall) else { return Ok(()) };
        let topology = Topology { active: last.to.clone(), epoch: last.epoch, ..base };
        let Ok(client) = self.region_client(mall, &last.from).await else { return Ok(()) };
        let note = format!(
            "region {} was demoted by a failover without a token in epoch {}: rebuilt from {} (archive folder suffix \
             -e{})",
            last.from, last.epoch, last.to, last.epoch
        );
        self.rebuild(mall, &topology, &last.from, &client, state, out, note).await
    }

    /// Writes `out` only over a Mall whose epoch is `expected`, conditioned on its
    /// resourceVersion: first the Mall this tick read, and after a conflict (another writer,
    /// usually the reconciler, wrote the status meanwhile) or an epoch mismatch the Mall read
    /// again, once. `Ok(false)`: the epoch is not `expected` (another move happened, or this
    /// writer is stale), nothing written. The one way the failover controller writes its status:
    /// an epoch is raised exactly once per move, and a leader that stalled mid-tick never writes
    /// an older epoch or active region over a newer one.
    pub async fn write_fenced(&self, mall: &Mall, out: &FailoverStatus, expected: i64) -> Result<bool, DriverError> {
        let hub = self.clusters.local().client.clone();
        let epoch = |m: &Mall| m.status.as_ref().map_or(0, |s| s.failover_epoch);
        if epoch(mall) == expected {
            match status::write(&hub, mall, out, mall.metadata.resource_version.as_deref()).await {
                Err(status::StatusError::Write { source: kube::Error::Api(e), .. }) if e.code == 409 => {}
                other => return other.map(|()| true).map_err(DriverError::from),
            }
        }
        let api: kube::Api<Mall> =
            kube::Api::namespaced(hub.clone(), mall.metadata.namespace.as_deref().unwrap_or_default());
        let fresh = api.get(mall.metadata.name.as_deref().unwrap_or_default()).await.map_err(DriverError::Read)?;
        if epoch(&fresh) != expected {
            return Ok(false);
        }
        status::write(&hub, &fresh, out, fresh.metadata.resource_version.as_deref()).await?;
        Ok(true)
    }

    /// [`Self::write_fenced`] for `out`'s own epoch; a stale epoch is an error.
    async fn write_status(&self, mall: &Mall, out: &FailoverStatus) -> Result<(), DriverError> {
        match self.write_fenced(mall, out, out.failover_epoch).await? {
            true => Ok(()),
            false => Err(DriverError::Fenced { epoch: out.failover_epoch }),
        }
    }

    async fn publish_dns(
        &self,
        mall: &Mall,
        out: &FailoverStatus,
        probes: &BTreeMap<String, Probe>,
        state: &mut MallState,
    ) -> Result<(), DriverError> {
        let addresses = dns::Addresses {
            by_region: probes.iter().map(|(r, p)| (r.clone(), p.gateway_addresses.clone())).collect(),
            serving: out
                .regions
                .iter()
                .filter(|r| r.health == Health::Healthy.as_str())
                .map(|r| r.name.clone())
                .collect(),
        };
        let Some(endpoint) = dns::endpoint(mall, &out.active_region, &addresses) else { return Ok(()) };
        let value = serde_json::to_value(&endpoint).ok();
        if state.published == value {
            return Ok(());
        }
        dns::publish(&self.clusters.local().client, &endpoint).await.map_err(DriverError::Dns)?;
        state.published = value;
        Ok(())
    }
}

/// `status` without what changes on every probe (probe time, counts, the last error): the status
/// is written when anything else changed (health, roles, a move, a request, a condition), so a
/// converged Mall costs no writes and a failing region one write when it goes `Down`; the counts,
/// probe time and error written are those of the last change.
fn significant(status: &FailoverStatus) -> FailoverStatus {
    let mut s = status.clone();
    for r in &mut s.regions {
        r.last_probe = None;
        r.consecutive_failures = 0;
        r.consecutive_successes = 0;
        r.last_error = None;
    }
    s
}

/// The region's status entry: health from its tracker, sticky `Rebuilding` until healthy.
fn region_status(name: &str, tracker: &Tracker, old: Option<RegionStatus>, topology: &Topology) -> RegionStatus {
    let old = old.unwrap_or_default();
    let member = topology.member(name);
    let health = match (old.health.as_str(), tracker.health) {
        ("Rebuilding", Health::Healthy) => Health::Healthy.as_str().to_string(),
        ("Rebuilding", _) => "Rebuilding".to_string(),
        (_, h) => h.as_str().to_string(),
    };
    RegionStatus {
        name: name.into(),
        health,
        consecutive_failures: i32::try_from(tracker.failures).unwrap_or(i32::MAX),
        consecutive_successes: i32::try_from(tracker.successes).unwrap_or(i32::MAX),
        last_probe: tracker.last_probe.map(status::timestamp),
        last_error: tracker.last_error.clone().filter(|_| tracker.failures > 0),
        role: Some(if name == topology.active { "primary" } else { "replica" }.into()),
        server_epoch: member.map_or(0, |m| m.server_epoch),
        seeded_from: member.and_then(|m| m.seeded_from.clone()),
    }
}

/// The request in the Mall's annotation, unless already answered.
fn pending_request(mall: &Mall) -> Option<FailoverRequest> {
    let text = mall.metadata.annotations.as_ref()?.get(REQUEST_ANNOTATION)?;
    let request: FailoverRequest = serde_json::from_str(text).ok()?;
    let answered = mall.status.as_ref().and_then(|s| s.last_request.as_ref()).is_some_and(|l| l.id == request.id);
    (!answered).then_some(request)
}

/// A request's outcome.
pub fn outcome(id: &str, outcome: &str, message: String) -> RequestOutcome {
    RequestOutcome { id: id.into(), outcome: outcome.into(), message }
}

#[allow(clippy::too_many_arguments)]
fn inputs(
    mall: &Mall,
    topology: &Topology,
    out: &FailoverStatus,
    probes: &BTreeMap<String, Probe>,
    state: &MallState,
    request: Option<FailoverRequest>,
    failover: &crate::validate::plan::Failover,
    now: DateTime<Utc>,
) -> Inputs {
    let regions = mall
        .spec
        .regions
        .iter()
        .map(|r| RegionView {
            name: r.name.clone(),
            health: state.trackers.get(&r.name).map_or(Health::Unknown, |t| t.health),
            weight: r.weight,
            fenced: out.regions.iter().any(|s| s.name == r.name && s.health == "Rebuilding"),
            witness: probe::witness(probes, &r.name, failover.probe_interval, now),
        })
        .collect();
    let last_move = out
        .last_failover
        .as_ref()
        .and_then(|l| DateTime::parse_from_rfc3339(&l.started).ok())
        .map(|t| t.with_timezone(&Utc));
    Inputs {
        active: topology.active.clone(),
        regions,
        mode: failover.mode,
        cooldown: failover.cooldown,
        require_witness: failover.require_witness,
        now,
        last_move,
        request,
        busy: out.switchover.is_some(),
    }
}

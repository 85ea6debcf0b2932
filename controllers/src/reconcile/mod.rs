//! The Mall controller: one reconcile runs the pipeline validate → build → apply → status.
//!
//! Contract: [`reconcile`] is idempotent and level-triggered. It works from the validated
//! [`Plan`](crate::validate::Plan) and applies each region's children in the region's cluster
//! (the operator's own, or a member cluster: [`targets`], [`finalize`]). An invalid spec sets
//! `Degraded/InvalidSpec` and waits for a change; a missing composed CRD sets
//! `Degraded/DependencyMissing` naming it and re-checks on a slow timer (no crash loop, no log
//! spam); a member cluster that cannot be reached sets `Degraded/RegionUnreachable` naming the
//! region and the error while every other region is still applied and the status still written,
//! and is retried with jittered backoff; other transient API errors back off exponentially per
//! Mall, capped ([`error_policy`]). A converged Mall costs reads only: children whose live state
//! already matches are not applied, and the status is written only when it changes. Time,
//! randomness and metrics come in through [`Context`]'s small traits.

pub mod apply;
pub mod compare;
pub mod dbsecrets;
pub mod fencing;
pub mod finalize;
pub mod handoff;
pub mod kinds;
pub mod refusal;
pub mod secrets;
pub mod status;
pub mod store;
pub mod targets;

use crate::build::{self, BuildError, ChildSet, Scope, Target};
use crate::clusters::{Cluster, Clusters, Settings, Trigger};
use crate::validate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use mall_crds::Mall;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Field manager of the status the reconciler writes.
pub const STATUS_MANAGER: &str = build::names::FIELD_MANAGER;

/// The wall clock (a trait so tests and simulators can set it).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Time;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }
}

/// 32 random bytes (a trait so tests can make them deterministic).
pub trait Entropy: Send + Sync {
    /// Fresh random bytes.
    fn bytes32(&self) -> [u8; 32];
}

/// The operating system's RNG.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn bytes32(&self) -> [u8; 32] {
        rand::random()
    }
}

/// What the reconciler reports to metrics.
pub trait Metrics: Send + Sync {
    /// A reconcile finished after `took`; `outcome` is `ok`, `invalid`, `dependency_missing` or an
    /// error kind.
    fn reconciled(&self, took: Duration, outcome: &str);
    /// The Mall `namespace/name` now has `children` children.
    fn children(&self, mall: &str, children: usize);
    /// Writes made by one reconcile (applies, prunes, status).
    fn writes(&self, count: usize);
}

/// Metrics that go nowhere.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn reconciled(&self, _: Duration, _: &str) {}
    fn children(&self, _: &str, _: usize) {}
    fn writes(&self, _: usize) {}
}

/// Shared state of the controller.
pub struct Context {
    /// API client of the operator's own cluster (the operator's identity).
    pub client: kube::Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// The clusters children go to: the operator's own and the members.
    pub clusters: Clusters,
    /// Clock.
    pub clock: Box<dyn Clock>,
    /// Randomness for generated credentials.
    pub entropy: Box<dyn Entropy>,
    /// Metrics sink.
    pub metrics: Arc<dyn Metrics>,
    /// How long before a Mall waiting on something no watch shows (a dependency to be
    /// installed, a tier still starting) is looked at again.
    pub recheck: Duration,
    /// Settings of member clusters.
    settings: Settings,
    /// Namespaces whose children the operator's own cluster caches (`None`: all).
    cached: Option<Option<Vec<String>>>,
    /// Consecutive failures per Mall, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When each Mall's status was last written (progress writes are coalesced).
    status_writes: Mutex<HashMap<String, Instant>>,
}

/// Least time between two status writes of one Mall that only report progress.
pub const STATUS_COALESCE: Duration = Duration::from_secs(1);

impl Context {
    /// A context with the system clock, OS randomness and the given metrics.
    pub fn new(client: kube::Client, reporter: &str, metrics: Arc<dyn Metrics>) -> Self {
        let settings =
            Settings { user_agent: format!("{reporter}/{}", env!("CARGO_PKG_VERSION")), ..Settings::default() };
        let mut ctx = Self {
            recorder: Recorder::new(client.clone(), reporter.to_string().into()),
            clusters: Clusters::new(
                Cluster::new("local", client.clone(), settings.discovery_ttl, None),
                settings.clone(),
            ),
            client,
            clock: Box::new(SystemClock),
            entropy: Box::new(OsEntropy),
            metrics,
            recheck: Duration::from_secs(60),
            settings,
            cached: None,
            failures: Mutex::new(HashMap::new()),
            status_writes: Mutex::new(HashMap::new()),
        };
        ctx.rebuild_clusters();
        ctx
    }

    fn rebuild_clusters(&mut self) {
        let stores = self.cached.clone().map(|namespaces| store::ChildStores::new(self.client.clone(), namespaces));
        let local = Cluster::new("local", self.client.clone(), self.settings.discovery_ttl, stores);
        self.clusters = Clusters::new(local, self.settings.clone());
    }

    /// Sets the recheck interval (served kinds are re-discovered at half of it).
    pub fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self.settings.discovery_ttl = recheck / 2;
        self.rebuild_clusters();
        self
    }

    /// Reads children from watch-fed caches (in the operator's own cluster of `namespaces`,
    /// `None`: all; in member clusters of every namespace) instead of LISTs.
    pub fn with_child_stores(mut self, namespaces: Option<Vec<String>>) -> Self {
        self.cached = Some(namespaces);
        self.settings.caches = true;
        self.rebuild_clusters();
        self
    }

    /// Reports changes of member clusters' children to `trigger` (the operator reconciles the
    /// Mall named by the change).
    pub fn with_member_trigger(mut self, trigger: Trigger) -> Self {
        self.settings.trigger = Some(trigger);
        self.rebuild_clusters();
        self
    }

    /// The operator's own cluster's served kinds (discovery, cached).
    pub async fn served_locally(&self) -> Result<std::collections::BTreeSet<&'static str>, kinds::DiscoveryError> {
        let local = self.clusters.local();
        local.kinds.served(&local.client).await
    }

    /// How long a progress-only status write of Mall `key` must wait (`None`: write now).
    fn status_hold(&self, key: &str) -> Option<Duration> {
        let writes = self.status_writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = writes.get(key)?.elapsed();
        (since < STATUS_COALESCE).then(|| STATUS_COALESCE - since)
    }

    /// Records a status write of Mall `key` (forgetting writes too old to matter).
    fn status_written(&self, key: String) {
        let mut writes = self.status_writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if writes.len() > 1024 {
            writes.retain(|_, at| at.elapsed() < STATUS_COALESCE);
        }
        writes.insert(key, Instant::now());
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Mall has no namespace (the CRD is namespaced: a bug or a hand-made object).
    #[error("the Mall has no namespace")]
    NoNamespace,
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] kinds::DiscoveryError),
    /// Building children failed.
    #[error("building children")]
    Build(#[source] BuildError),
    /// Reading or generating credentials failed.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    /// Writing the status failed.
    #[error("writing the status")]
    Status(#[source] kube::Error),
    /// Writing the finalizer or the member record failed.
    #[error("recording member clusters on the Mall")]
    Record(#[source] kube::Error),
}

impl Error {
    /// Metric label of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Discovery(_) => "discovery",
            Error::Build(_) => "build",
            Error::Secrets(_) => "secrets",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
            Error::Record(_) => "record",
        }
    }
}

/// Reconciles one Mall.
pub async fn reconcile(mall: Arc<Mall>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any());
    let result = reconcile_inner(&mall, &ctx).await;
    match &result {
        Ok((_, outcome)) => {
            ctx.failures().remove(&key);
            ctx.metrics.reconciled(started.elapsed(), outcome);
        }
        Err(e) => ctx.metrics.reconciled(started.elapsed(), e.kind()),
    }
    result.map(|(action, _)| action)
}

async fn reconcile_inner(mall: &Mall, ctx: &Context) -> Result<(Action, &'static str), Error> {
    let namespace = mall.namespace().ok_or(Error::NoNamespace)?;
    let name = mall.name_any();
    if mall.metadata.deletion_timestamp.is_some() {
        return delete(mall, ctx, &namespace).await;
    }
    let mut writes = 0;
    let plan = match validate::plan(mall) {
        Ok(plan) => plan,
        Err(invalid) => {
            let observed = status::Observed { invalid: Some(invalid.to_string()), ..Default::default() };
            let computed = status::compute(mall, &observed, ctx.clock.now());
            if write_status(ctx, mall, &namespace, &computed).await? {
                publish(ctx, mall, EventType::Warning, "InvalidSpec", &invalid.to_string()).await;
            }
            return Ok((Action::await_change(), "invalid"));
        }
    };
    let planned = plan.targets();
    let (leaving, recorded) = finalize::record_members(ctx, mall, &planned).await?;
    writes += usize::from(recorded);
    let mut visit: std::collections::BTreeSet<Target> = planned.union(&leaving).cloned().collect();
    visit.insert(Target::Local);
    let mut resolved = targets::resolve(ctx, &namespace, &visit).await;
    let scopes = targets::resolved_scopes(&plan, &resolved);
    let credentials = secrets::CacheCredentials::resolve(mall, &namespace, ctx.entropy.as_ref(), &scopes).await?;
    for (target, error) in credentials.failed() {
        resolved.insert(target.clone(), Err((error.clone(), None)));
    }
    let mut by_target =
        build::children_by_target(&plan, &|scope: &Scope<'_>| credentials.for_scope(scope)).map_err(Error::Build)?;
    // A region whose cluster cannot be used yet is not applied; its cache password may not
    // have been read back, so nothing is built for it from a guess.
    by_target.retain(|target, _| matches!(resolved.get(target), Some(Ok(_))) || *target == Target::Local);
    // The shard credentials of a distributed topology: made in the hub, copied to the members.
    let shard_credentials = dbsecrets::resolve(&ctx.clusters.local(), mall, &namespace, ctx.entropy.as_ref()).await?;
    by_target.entry(Target::Local).or_default().secrets.extend(shard_credentials.iter().cloned());
    let children = by_target.values().map(ChildSet::len).sum::<usize>();
    let sources = if plan.has_members() {
        let mut sources = secrets::hub_sources(&ctx.clusters.local(), mall, &namespace).await?;
        sources.extend(shard_credentials);
        sources
    } else {
        Vec::new()
    };
    let outcome = targets::apply_all(ctx, &plan, &resolved, by_target, &leaving, &sources).await;
    let emptied: std::collections::BTreeSet<Target> =
        leaving.iter().filter(|t| !outcome.failures.iter().any(|f| &f.target == *t)).cloned().collect();
    writes += usize::from(finalize::forget_members(ctx, mall, &planned, &emptied).await?);
    let mut applied = outcome.applied;
    writes += applied.written.len() + applied.pruned.len();
    ctx.metrics.children(&format!("{namespace}/{name}"), children);
    if !applied.written.is_empty() {
        let note = format!("applied {}", summarize(&applied.written));
        publish(ctx, mall, EventType::Normal, "Applied", &note).await;
    }
    if !applied.pruned.is_empty() {
        let note = format!("deleted {}", summarize(&applied.pruned));
        publish(ctx, mall, EventType::Normal, "Pruned", &note).await;
    }
    let unreachable: Vec<String> = outcome.failures.iter().map(targets::RegionFailure::describe).collect();
    let (refused, stale_read) =
        refusal::own_stale_read(ctx, mall, &namespace, std::mem::take(&mut applied.refused)).await;
    let live = ChildSet::<build::Live>::from_plurals(std::mem::take(&mut applied.live));
    let observed = status::Observed {
        live: Some(&live),
        missing: Some(&applied.missing),
        unreachable: unreachable.clone(),
        conflicts: applied.conflicts.clone(),
        refused: refused.iter().map(|r| (r.authority.reason().to_string(), r.describe())).collect(),
        ..Default::default()
    };
    let computed = status::compute(mall, &observed, ctx.clock.now());
    let key = format!("{namespace}/{name}");
    // Progress (counts, shard phases) is coalesced: at most one such write per Mall every
    // STATUS_COALESCE; a new generation or a condition changing status is written at once.
    let hold = if status::is_urgent(&computed, mall.status.as_ref()) { None } else { ctx.status_hold(&key) };
    let wrote = match hold {
        Some(_) => false,
        None => write_status(ctx, mall, &namespace, &computed).await?,
    };
    if wrote {
        ctx.status_written(key);
        writes += 1;
        if !applied.missing.is_empty() {
            let deps: Vec<&str> = applied.missing.keys().copied().collect();
            publish(ctx, mall, EventType::Warning, "DependencyMissing", &format!("missing {}", deps.join(", "))).await;
        }
        for failure in &unreachable {
            publish(ctx, mall, EventType::Warning, "RegionUnreachable", failure).await;
        }
        if !applied.conflicts.is_empty() {
            let note = format!("left alone (another Mall's): {}", summarize(&applied.conflicts));
            publish(ctx, mall, EventType::Warning, "OwnershipConflict", &note).await;
        }
        for (reason, notes) in refusal::by_reason(&refused) {
            publish(ctx, mall, EventType::Warning, reason, &summarize(&notes)).await;
        }
    }
    ctx.metrics.writes(writes);
    let ready = computed.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    let outcome_label = match () {
        _ if !outcome.failures.is_empty() => "region_unreachable",
        _ if !refused.is_empty() => "refused",
        _ if !applied.missing.is_empty() => "dependency_missing",
        _ => "ok",
    };
    // Children's changes come back through the owned-object watches (members: their caches'
    // trigger); the slow recheck covers what no watch shows (a CRD installed later, status of
    // kinds not watched, a rotated kubeconfig Secret).
    let mut next =
        if ready && applied.missing.is_empty() && !plan.has_members() { ctx.recheck * 5 } else { ctx.recheck };
    if let Some(retry) = outcome.failures.iter().filter_map(|f| f.retry_in).min() {
        next = next.min(retry.max(Duration::from_millis(100)));
    }
    if stale_read {
        next = next.min(Duration::from_millis(200));
    }
    let next = hold.map_or(next, |wait| next.min(wait));
    Ok((Action::requeue(next), outcome_label))
}

/// A Mall being deleted: empties its member clusters, then lets it go ([`finalize`]).
async fn delete(mall: &Mall, ctx: &Context, namespace: &str) -> Result<(Action, &'static str), Error> {
    if !mall.finalizers().iter().any(|f| f == finalize::FINALIZER) {
        return Ok((Action::await_change(), "deleted"));
    }
    let done = finalize::finalize(ctx, mall).await?;
    if !done.pruned.is_empty() {
        publish(ctx, mall, EventType::Normal, "Pruned", &format!("deleted {}", summarize(&done.pruned))).await;
    }
    if done.released {
        if !done.blocked.is_empty() {
            let note = format!("released with children left behind in: {}", done.blocked.join("; "));
            publish(ctx, mall, EventType::Warning, "ReleasedUnreachableMembers", &note).await;
        }
        return Ok((Action::await_change(), "deleted"));
    }
    let observed = status::Observed { cleanup_blocked: done.blocked.clone(), ..Default::default() };
    let computed = status::compute(mall, &observed, ctx.clock.now());
    if write_status(ctx, mall, namespace, &computed).await? {
        let note = format!(
            "cannot delete children in {}; retrying (annotate the Mall {}=true to let it go and leave them)",
            done.blocked.join("; "),
            finalize::RELEASE_ANNOTATION
        );
        publish(ctx, mall, EventType::Warning, "CleanupBlocked", &note).await;
    }
    Ok((Action::requeue(ctx.recheck.min(Duration::from_secs(30))), "cleanup_blocked"))
}

fn summarize(items: &[String]) -> String {
    if items.len() <= 5 { items.join(", ") } else { format!("{} and {} more", items[..5].join(", "), items.len() - 5) }
}

/// Writes the reconciler's status fields when they differ from the live status; returns whether
/// it wrote.
async fn write_status(
    ctx: &Context,
    mall: &Mall,
    namespace: &str,
    computed: &status::ReconcilerStatus,
) -> Result<bool, Error> {
    let desired = serde_json::to_value(computed).unwrap_or_default();
    let live = serde_json::to_value(&mall.status).unwrap_or_default();
    if compare::status_is_subset(&desired, &live) {
        return Ok(false);
    }
    tracing::debug!(mall = %mall.name_any(), desired = %desired, live = %live, "writing status");
    let api: Api<Mall> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", mall_crds::GROUP, mall_crds::VERSION),
        "kind": "Mall",
        "status": desired,
    });
    api.patch_status(&mall.name_any(), &PatchParams::apply(STATUS_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(true)
}

async fn publish(ctx: &Context, mall: &Mall, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mall.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an event");
    }
}

/// What to do after a failed reconcile: exponential backoff per Mall (1 s doubling, capped at
/// 5 minutes). Invalid specs never get here: they wait for a change inside [`reconcile`].
pub fn error_policy(mall: Arc<Mall>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any());
    let attempt = {
        let mut failures = ctx.failures();
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(attempt);
    tracing::warn!(mall = %key, attempt, retry_in = ?delay, error = %error_chain(error), "reconcile failed");
    Action::requeue(delay)
}

/// Backoff after `attempt` consecutive failures: 1 s, 2 s, 4 s, ... capped at 300 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}

//! The per-Mall loops and their [`Supervisor`].
//!
//! Contract: one tokio task per Mall that has `spec.autoscaling`, ticking every
//! [`LoopOptions::interval`] (the first tick at once; every second while there is nothing to
//! decide on yet). A tick: GET the Mall (its live status) → the children of its active region,
//! in that region's cluster (the operator's own, or a member cluster reached through its
//! kubeconfig Secret: the autoscaler follows a failover) → read their counts ([`counts`]) → [`Autoscaler::tick`] (system clock, Prometheus
//! through [`MallSource`]) → apply the replica fields that differ ([`scale`]) and one `Scaled`
//! Event per scale action → write `lastScaling` / `MetricsUnavailable` when they changed
//! ([`status`]). A tick whose storefront Deployment does not exist yet does nothing; a failed
//! write is logged and retried by the next tick (the decision is recomputed then).
//!
//! The supervisor is told about every Mall the operator sees ([`Supervisor::observe`]) and
//! decides with the pure [`plan`]: start a loop for a new autoscaled Mall; hand a new generation
//! to its running loop, which rebuilds the configuration and the metrics source and restarts the
//! engine when `spec.autoscaling` (or the shard counts) changed — an unrelated edit keeps the
//! engine's memory, so an image change cannot trigger a scale-down; stop it when autoscaling is
//! removed (its status fields are then released) or the Mall is deleted or recreated. Loops only
//! run while the supervisor lives ([`Supervisor::stop_all`] on shutdown or lost leadership).

use super::counts;
use super::scale;
use super::source::{self, MallSource};
use super::status;
use crate::autoscaler::{Autoscaler, Engine, EngineConfig, SystemClock, TierDecision};
use crate::build::Scope;
use crate::build::names::Target as BuildTarget;
use crate::clusters::{Cluster, Clusters, Settings};
use crate::reconcile::error_chain;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::Recorder;
use mall_crds::Mall;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Timing of the loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopOptions {
    /// Time between ticks of one Mall.
    pub interval: Duration,
    /// Bound of every Prometheus query.
    pub query_timeout: Duration,
}

impl LoopOptions {
    /// Ticks every `interval`; queries time out after the interval, at most 5 s.
    pub fn every(interval: Duration) -> Self {
        Self { interval, query_timeout: interval.min(Duration::from_secs(5)).max(Duration::from_millis(500)) }
    }
}

/// What the supervisor does about one Mall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing changed.
    Keep,
    /// Start a loop.
    Start,
    /// Hand the new generation to the running loop.
    Update,
    /// Stop the running loop and start a new one (the Mall was recreated).
    Restart,
    /// Stop the running loop (autoscaling removed); its status fields are released.
    Stop,
}

/// What the supervisor knows of a running loop: the Mall's uid and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
}

/// The supervisor's decision for `mall`, given the loop running for its name (pure).
pub fn plan(running: Option<&Running>, mall: &Mall) -> Plan {
    let wanted = mall.spec.autoscaling.is_some() && mall.metadata.deletion_timestamp.is_none();
    match (running, wanted) {
        (None, false) => Plan::Keep,
        (None, true) => Plan::Start,
        (Some(_), false) => Plan::Stop,
        (Some(r), true) if r.uid != mall.metadata.uid => Plan::Restart,
        (Some(r), true) if r.generation != mall.metadata.generation => Plan::Update,
        (Some(_), true) => Plan::Keep,
    }
}

struct Shared {
    client: kube::Client,
    /// Clients of the member clusters the active region may run in.
    clusters: Clusters,
    recorder: Recorder,
    options: LoopOptions,
}

impl Shared {
    /// The client of the cluster holding the region the autoscaler sizes (the active one).
    async fn target_client(&self, mall: &Mall) -> Result<kube::Client, String> {
        match Scope::autoscaler_scope(mall).target {
            BuildTarget::Local => Ok(self.client.clone()),
            BuildTarget::Member { secret, key } => {
                let namespace = mall.namespace().unwrap_or_default();
                self.clusters
                    .member(&namespace, &secret, &key)
                    .await
                    .map(|c| c.client.clone())
                    .map_err(|e| error_chain(&e))
            }
        }
    }
}

struct Handle {
    running: Running,
    spec: watch::Sender<Arc<Mall>>,
    task: JoinHandle<()>,
}

/// Starts, updates and stops the per-Mall loops.
pub struct Supervisor {
    shared: Arc<Shared>,
    loops: HashMap<String, Handle>,
}

fn key(mall: &Mall) -> String {
    format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any())
}

impl Supervisor {
    /// A supervisor writing with `client`; Events are reported as `reporter`.
    pub fn new(client: kube::Client, reporter: &str, options: LoopOptions) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.to_string().into());
        let settings =
            Settings { user_agent: format!("{reporter}/{}", env!("CARGO_PKG_VERSION")), ..Settings::default() };
        let clusters = Clusters::new(Cluster::new("local", client.clone(), settings.discovery_ttl, None), settings);
        Self { shared: Arc::new(Shared { client, clusters, recorder, options }), loops: HashMap::new() }
    }

    /// Malls with a running loop, as `namespace/name`.
    pub fn running(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.loops.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Acts on the current state of `mall` (see [`plan`]).
    pub fn observe(&mut self, mall: &Mall) {
        let key = key(mall);
        let action = plan(self.loops.get(&key).map(|h| &h.running), mall);
        match action {
            Plan::Keep => {}
            Plan::Start => self.start(key, mall),
            Plan::Update => {
                if let Some(h) = self.loops.get_mut(&key) {
                    h.running.generation = mall.metadata.generation;
                    h.spec.send_replace(Arc::new(mall.clone()));
                }
            }
            Plan::Restart => {
                self.stop(&key);
                self.start(key, mall);
            }
            Plan::Stop => {
                self.stop(&key);
                if mall.metadata.deletion_timestamp.is_some() {
                    return;
                }
                tracing::info!(mall = %key, "autoscaling removed: loop stopped");
                let (client, mall) = (self.shared.client.clone(), mall.clone());
                tokio::spawn(async move {
                    if let Err(e) = status::release(&client, &mall).await {
                        tracing::warn!(mall = %key, error = %error_chain(&e), "could not release the autoscaler's status");
                    }
                });
            }
        }
    }

    /// The Mall `namespace/name` was deleted: its loop stops.
    pub fn deleted(&mut self, mall: &Mall) {
        self.stop(&key(mall));
    }

    /// Keeps only the loops of `present` Malls (after a watch restart); returns how many stopped.
    pub fn retain(&mut self, present: &std::collections::HashSet<String>) -> usize {
        let gone: Vec<String> = self.loops.keys().filter(|k| !present.contains(*k)).cloned().collect();
        gone.iter().for_each(|k| self.stop(k));
        gone.len()
    }

    /// Stops every loop.
    pub fn stop_all(&mut self) {
        let keys: Vec<String> = self.loops.keys().cloned().collect();
        keys.iter().for_each(|k| self.stop(k));
    }

    fn start(&mut self, key: String, mall: &Mall) {
        let (tx, rx) = watch::channel(Arc::new(mall.clone()));
        let task = tokio::spawn(run(self.shared.clone(), rx));
        tracing::info!(mall = %key, interval = ?self.shared.options.interval, "autoscaler loop started");
        let running = Running { uid: mall.metadata.uid.clone(), generation: mall.metadata.generation };
        self.loops.insert(key, Handle { running, spec: tx, task });
    }

    fn stop(&mut self, key: &str) {
        if let Some(h) = self.loops.remove(key) {
            h.task.abort();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One Mall's loop state.
struct MallLoop {
    mall: Arc<Mall>,
    config: Option<EngineConfig>,
    autoscaler: Option<Autoscaler<SystemClock, MallSource>>,
}

impl MallLoop {
    async fn new(shared: &Shared, mall: Arc<Mall>) -> Self {
        let mut this = Self { mall, config: None, autoscaler: None };
        this.configure(shared).await;
        this
    }

    /// (Re)builds configuration and source from the current spec; the engine restarts only when
    /// its configuration changed.
    async fn configure(&mut self, shared: &Shared) {
        let cfg = match EngineConfig::from_mall(&self.mall) {
            Ok(cfg) => cfg,
            Err(e) => {
                tracing::warn!(mall = %key(&self.mall), error = %error_chain(&e), "autoscaling not configurable");
                (self.config, self.autoscaler) = (None, None);
                return;
            }
        };
        let source = source::build(&shared.client, &self.mall, &cfg, shared.options.query_timeout).await;
        match self.autoscaler.as_mut().filter(|_| self.config.as_ref() == Some(&cfg)) {
            Some(a) => *a.metrics_mut() = source,
            None => {
                tracing::info!(mall = %key(&self.mall), "autoscaler engine (re)started");
                self.autoscaler = Some(Autoscaler::new(Engine::new(cfg.clone()), SystemClock, source));
            }
        }
        self.config = Some(cfg);
    }

    /// One tick; false when there was nothing to decide on yet (no storefront Deployment, a
    /// failed read), so the loop retries sooner than the interval.
    async fn tick(&mut self, shared: &Shared) -> bool {
        let name = key(&self.mall);
        let Some(autoscaler) = self.autoscaler.as_mut() else { return true };
        if autoscaler.metrics_mut().is_unavailable()
            && let Some(cfg) = &self.config
        {
            *autoscaler.metrics_mut() =
                source::build(&shared.client, &self.mall, cfg, shared.options.query_timeout).await;
        }
        let namespace = self.mall.namespace().unwrap_or_default();
        let api: Api<Mall> = Api::namespaced(shared.client.clone(), &namespace);
        let live_mall = match api.get_opt(&self.mall.name_any()).await {
            Ok(Some(m)) => m,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(mall = %name, error = %e, "autoscaler could not read the Mall");
                return false;
            }
        };
        // The active region may have moved (a failover): size the one that is active now, in
        // its own cluster.
        let targets = counts::targets(&live_mall);
        let client = match shared.target_client(&live_mall).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(mall = %name, error = %e, "autoscaler cannot reach the active region's cluster");
                return false;
            }
        };
        let live = match counts::read(&client, &live_mall, &targets).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(mall = %name, error = %error_chain(&e), "autoscaler could not read the children");
                return false;
            }
        };
        let Some(cluster) = counts::counts(&live) else {
            tracing::debug!(mall = %name, "storefront not created yet: nothing to scale");
            return false;
        };
        let decision = autoscaler.tick(cluster).await;
        tracing::debug!(mall = %name, decision = ?decision, "autoscaler decision");
        let writes = scale::plan(&decision, &live);
        let scaled: Option<TierDecision> = match scale::apply(&client, &live_mall, &writes).await {
            Ok(()) => {
                let actions: Vec<&TierDecision> = decision.tiers.iter().filter(|d| d.to != d.from).collect();
                for d in &actions {
                    tracing::info!(mall = %name, tier = d.tier.name(), from = d.from, to = d.to, reason = %d.reason, "scaled");
                    scale::publish(&shared.recorder, &live_mall, d).await;
                }
                actions.last().map(|d| (*d).clone())
            }
            Err(e) => {
                tracing::warn!(mall = %name, error = %error_chain(&e), "autoscaler could not scale");
                None
            }
        };
        let generation = live_mall.metadata.generation;
        if let Some(s) = status::desired(&decision, scaled.as_ref(), live_mall.status.as_ref(), generation)
            && let Err(e) = status::write(&shared.client, &live_mall, &s).await
        {
            tracing::warn!(mall = %name, error = %error_chain(&e), "autoscaler could not write the status");
        }
        true
    }
}

/// Delay before the next tick when a tick had nothing to decide on.
const RETRY: Duration = Duration::from_secs(1);

async fn run(shared: Arc<Shared>, mut spec: watch::Receiver<Arc<Mall>>) {
    let mall = spec.borrow_and_update().clone();
    let mut state = MallLoop::new(&shared, mall).await;
    let interval = shared.options.interval.max(Duration::from_millis(100));
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let decided = state.tick(&shared).await;
                // Until the children exist, look again sooner: the first decision (and the
                // condition it publishes) comes right after the reconciler created them.
                next = tokio::time::Instant::now() + if decided { interval } else { interval.min(RETRY) };
            }
            changed = spec.changed() => {
                if changed.is_err() {
                    return;
                }
                state.mall = spec.borrow_and_update().clone();
                state.configure(&shared).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    fn mall(autoscaling: bool, uid: &str, generation: i64) -> Mall {
        let extra =
            if autoscaling { json!({"autoscaling": {"prometheus": {"url": "http://p:9090"}}}) } else { json!({}) };
        let mut m = mall_from(extra);
        m.metadata.uid = Some(uid.into());
        m.metadata.generation = Some(generation);
        m
    }

    #[test]
    fn loops_follow_the_spec() {
        let running = Running { uid: Some("u1".into()), generation: Some(3) };
        assert_eq!(plan(None, &mall(false, "u1", 1)), Plan::Keep);
        assert_eq!(plan(None, &mall(true, "u1", 1)), Plan::Start);
        assert_eq!(plan(Some(&running), &mall(true, "u1", 3)), Plan::Keep);
        assert_eq!(plan(Some(&running), &mall(true, "u1", 4)), Plan::Update);
        assert_eq!(plan(Some(&running), &mall(true, "u2", 1)), Plan::Restart);
        assert_eq!(plan(Some(&running), &mall(false, "u1", 4)), Plan::Stop);
        let mut deleting = mall(true, "u1", 3);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(plan(Some(&running), &deleting), Plan::Stop);
        assert_eq!(
            LoopOptions::every(Duration::from_secs(15)).query_timeout,
            Duration::from_secs(5),
            "queries end before the next tick"
        );
    }
}

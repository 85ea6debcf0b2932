//! The clusters a Mall's children go to: the operator's own and one per member kubeconfig Secret.
//!
//! Contract: [`Clusters`] hands out one [`Cluster`] per target — an API client with its own
//! discovery cache ([`Availability`]) and, in the operator, its own watch-fed child caches
//! ([`ChildStores`]). A member cluster is built from the kubeconfig in a Secret of the Mall's
//! namespace in the operator's cluster ([`kubeconfig::parse`]: self-contained, CA embedded), read
//! on every use and rebuilt when its bytes change, so a rotated Secret is picked up without a
//! restart. Watch events of a member's children are mapped back to their Mall by label and handed
//! to the [`Trigger`]. A member that failed is not contacted again before its retry time
//! (exponential backoff with jitter, [`retry_delay`]), so a dead cluster costs a bounded number of
//! requests however often its Malls are reconciled.

pub mod kubeconfig;

use crate::reconcile::kinds::Availability;
use crate::reconcile::store::ChildStores;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Called with (namespace, Mall name) when a member cluster's child of that Mall changed.
pub type Trigger = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Why a member cluster could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Reading the kubeconfig Secret failed.
    #[error("reading Secret {secret}")]
    Read {
        /// Secret name.
        secret: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig Secret does not exist.
    #[error("Secret {secret} does not exist")]
    SecretMissing {
        /// Secret name.
        secret: String,
    },
    /// The Secret lacks the key.
    #[error("Secret {secret} has no key {key:?}")]
    KeyMissing {
        /// Secret name.
        secret: String,
        /// The key.
        key: String,
    },
    /// The kubeconfig was refused.
    #[error("the kubeconfig in Secret {secret} (key {key:?})")]
    Kubeconfig {
        /// Secret name.
        secret: String,
        /// The key.
        key: String,
        /// Cause.
        #[source]
        source: kubeconfig::KubeconfigError,
    },
    /// No client could be made from the kubeconfig.
    #[error("building a client from Secret {secret}")]
    Client {
        /// Secret name.
        secret: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig's settings could not be loaded.
    #[error("loading the kubeconfig of Secret {secret}")]
    Config {
        /// Secret name.
        secret: String,
        /// Cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The member failed recently and is not retried yet.
    #[error("not retried for another {}s after: {last}", retry_in.as_secs_f32().ceil())]
    CoolingDown {
        /// Time left before the next attempt.
        retry_in: Duration,
        /// The last failure.
        last: String,
    },
}

impl ClusterError {
    /// When the reconciler should look again (only for a member cooling down).
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            ClusterError::CoolingDown { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }
}

/// One cluster a Mall's children go to.
pub struct Cluster {
    /// Name for logs and status: `local`, or `<namespace>/<secret>`.
    pub name: String,
    /// API client.
    pub client: kube::Client,
    /// Served kinds, cached.
    pub kinds: Availability,
    /// Watch-fed caches of the children (`None`: every reconcile LISTs).
    pub stores: Option<ChildStores>,
    /// Namespaces known to exist there.
    namespaces: Mutex<BTreeSet<String>>,
}

impl Cluster {
    /// A cluster reached with `client`, discovery trusted for `discovery_ttl`.
    pub fn new(
        name: impl Into<String>,
        client: kube::Client,
        discovery_ttl: Duration,
        stores: Option<ChildStores>,
    ) -> Self {
        Self {
            name: name.into(),
            client,
            kinds: Availability::new(discovery_ttl),
            stores,
            namespaces: Mutex::new(BTreeSet::new()),
        }
    }

    /// Whether `namespace` was seen to exist.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        lock(&self.namespaces).contains(namespace)
    }

    /// Records that `namespace` exists.
    pub fn namespace_seen(&self, namespace: &str) {
        lock(&self.namespaces).insert(namespace.to_string());
    }

    /// Forgets which namespaces exist (after a failure: one may have been deleted).
    pub fn forget_namespaces(&self) {
        lock(&self.namespaces).clear();
    }
}

/// How clusters are set up.
#[derive(Clone)]
pub struct Settings {
    /// How long discovery results are trusted.
    pub discovery_ttl: Duration,
    /// Whether members get watch-fed caches (the operator) or LIST on every use (tests, tools).
    pub caches: bool,
    /// `User-Agent` of member clients.
    pub user_agent: String,
    /// What a member's child change triggers.
    pub trigger: Option<Trigger>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            discovery_ttl: Duration::from_secs(30),
            caches: false,
            user_agent: format!("mall-operator/{}", env!("CARGO_PKG_VERSION")),
            trigger: None,
        }
    }
}

type MemberKey = (String, String, String);

struct Member {
    cluster: Arc<Cluster>,
    fingerprint: u64,
}

#[derive(Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    last: String,
}

/// The registry of clusters.
pub struct Clusters {
    local: Arc<Cluster>,
    members: Mutex<HashMap<MemberKey, Member>>,
    health: Mutex<HashMap<MemberKey, Health>>,
    settings: Settings,
}

/// Least and greatest wait before a failed member is contacted again.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The wait after `failures` consecutive failures: 1 s doubling to 30 s, scaled by a jitter
/// factor in [0.8, 1.2) taken from `random` so members failing together do not retry together.
pub fn retry_delay(failures: u32, random: u64) -> Duration {
    let base = RETRY_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(5)).min(RETRY_MAX);
    let jitter = 0.8 + 0.4 * ((random % 10_000) as f64 / 10_000.0);
    base.mul_f64(jitter)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Clusters {
    /// A registry whose local cluster is `local`.
    pub fn new(local: Cluster, settings: Settings) -> Self {
        Self {
            local: Arc::new(local),
            members: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            settings,
        }
    }

    /// The operator's own cluster.
    pub fn local(&self) -> Arc<Cluster> {
        self.local.clone()
    }

    /// The member cluster of the kubeconfig at `key` in Secret `namespace/secret` (read from the
    /// operator's cluster now; the client is reused while the kubeconfig's bytes are unchanged).
    pub async fn member(&self, namespace: &str, secret: &str, key: &str) -> Result<Arc<Cluster>, ClusterError> {
        let id: MemberKey = (namespace.into(), secret.into(), key.into());
        if let Some(health) = lock(&self.health).get(&id)
            && let Some(at) = health.retry_at
        {
            let now = Instant::now();
            if at > now {
                return Err(ClusterError::CoolingDown { retry_in: at - now, last: health.last.clone() });
            }
        }
        let api: Api<Secret> = Api::namespaced(self.local.client.clone(), namespace);
        let object = api
            .get_opt(secret)
            .await
            .map_err(|source| ClusterError::Read { secret: secret.into(), source })?
            .ok_or_else(|| ClusterError::SecretMissing { secret: secret.into() })?;
        let bytes = object
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| ClusterError::KeyMissing { secret: secret.into(), key: key.into() })?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let fingerprint = hasher.finish();
        if let Some(member) = lock(&self.members).get(&id)
            && member.fingerprint == fingerprint
        {
            return Ok(member.cluster.clone());
        }
        let cluster = Arc::new(self.connect(namespace, secret, key, &bytes).await?);
        tracing::info!(cluster = %cluster.name, "member cluster client built from its kubeconfig Secret");
        lock(&self.members).insert(id, Member { cluster: cluster.clone(), fingerprint });
        Ok(cluster)
    }

    async fn connect(&self, namespace: &str, secret: &str, key: &str, bytes: &[u8]) -> Result<Cluster, ClusterError> {
        let text = String::from_utf8_lossy(bytes);
        let parsed = kubeconfig::parse(&text).map_err(|source| ClusterError::Kubeconfig {
            secret: secret.into(),
            key: key.into(),
            source,
        })?;
        let mut config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|source| ClusterError::Config { secret: secret.into(), source })?;
        // A dead member must fail fast; watches keep the default read timeout (longer than
        // the server's watch timeout).
        config.connect_timeout = Some(Duration::from_secs(5));
        config.write_timeout = Some(Duration::from_secs(10));
        if let Ok(agent) = http::HeaderValue::from_str(&self.settings.user_agent) {
            config.headers.push((http::header::USER_AGENT, agent));
        }
        let client =
            kube::Client::try_from(config).map_err(|source| ClusterError::Client { secret: secret.into(), source })?;
        let name = format!("{namespace}/{secret}");
        let stores = self.settings.caches.then(|| {
            let stores = ChildStores::per_namespace(client.clone());
            match &self.settings.trigger {
                Some(trigger) => stores.with_trigger(trigger.clone()),
                None => stores,
            }
        });
        Ok(Cluster::new(name, client, self.settings.discovery_ttl, stores))
    }

    /// Records a failure to reach or use a member; returns how long it is left alone.
    pub fn failed(&self, namespace: &str, secret: &str, key: &str, error: &str, random: u64) -> Duration {
        let mut health = lock(&self.health);
        let entry = health.entry((namespace.into(), secret.into(), key.into())).or_default();
        entry.failures = entry.failures.saturating_add(1);
        let delay = retry_delay(entry.failures, random);
        entry.retry_at = Some(Instant::now() + delay);
        entry.last = error.to_string();
        delay
    }

    /// Records a success: the member is contacted normally again.
    pub fn succeeded(&self, namespace: &str, secret: &str, key: &str) {
        lock(&self.health).remove(&(namespace.to_string(), secret.to_string(), key.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_and_a_cap() {
        assert!((800..1200).contains(&retry_delay(1, 0).as_millis()));
        assert!((800..1200).contains(&retry_delay(1, 9_999).as_millis()));
        assert_ne!(retry_delay(1, 0), retry_delay(1, 5_000));
        assert!((3_200..4_800).contains(&retry_delay(3, 1234).as_millis()));
        for failures in [6, 7, 50, u32::MAX] {
            assert!(retry_delay(failures, 7_777).as_millis() <= 36_000, "{failures}");
            assert!(retry_delay(failures, 0).as_millis() >= 24_000, "{failures}");
        }
    }
}

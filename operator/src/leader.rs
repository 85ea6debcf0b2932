//! Leader election on a `coordination.k8s.io/v1` Lease: of several operator replicas, only the
//! holder of the Lease reconciles (and so writes).
//!
//! Contract: [`Elector::run`] acquires the Lease when it is free or expired, renews it every
//! `renew` interval, and flips the shared flag. Updates use the Lease's `resourceVersion`
//! (optimistic concurrency), so two candidates never both win. A leader that fails to renew
//! within `duration` reports the loss; the binary then exits rather than risk two writers.
//! On shutdown the leader releases the Lease so a standby takes over at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// Why leadership could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Renewing failed for longer than the lease duration.
    #[error("lost the lease {name}: not renewed within {duration:?}")]
    Lost {
        /// Lease name.
        name: String,
        /// Lease duration.
        duration: Duration,
    },
}

/// Timing of the election (defaults as client-go's: 15 s lease, renew every 5 s, retry 2 s).
#[derive(Clone, Debug)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a candidate retries.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { duration: Duration::from_secs(15), renew: Duration::from_secs(5), retry: Duration::from_secs(2) }
    }
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    leader: watch::Sender<bool>,
}

enum Attempt {
    Held,
    Other,
}

impl Elector {
    /// A candidate for the Lease `namespace/name` as `identity`; subscribe to [`Self::watch`].
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            leader: watch::channel(false).0,
        }
    }

    /// Whether this candidate leads, now and on every change.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Campaigns until `shutdown` fires (then releases a held Lease) or leadership is lost.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), LeaderError> {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            let leading = *self.leader.borrow();
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    if !leading {
                        tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                        self.leader.send_replace(true);
                    }
                }
                Ok(Attempt::Other) => {
                    if leading {
                        self.leader.send_replace(false);
                        return Err(LeaderError::Lost { name: self.name.clone(), duration: self.timing.duration });
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease update failed");
                    if leading && last_renewed.is_some_and(|t| t.elapsed() >= self.timing.duration) {
                        self.leader.send_replace(false);
                        return Err(LeaderError::Lost { name: self.name.clone(), duration: self.timing.duration });
                    }
                }
            }
            let wait = if *self.leader.borrow() { self.timing.renew } else { self.timing.retry };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {
                    if *self.leader.borrow() {
                        self.release().await;
                        self.leader.send_replace(false);
                    }
                    return Ok(());
                }
            }
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let duration_secs = i32::try_from(self.timing.duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Other),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == self.identity;
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => *renewed + SignedDuration::from_secs(i64::from(secs)) < now,
            _ => true,
        };
        if !held_by_me && !holder.is_empty() && !expired {
            return Ok(Attempt::Other);
        }
        if !held_by_me {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(MicroTime(now));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(MicroTime(now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Other),
            Err(e) => Err(e),
        }
    }

    async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
                tracing::warn!(error = %e, "could not release the lease");
            } else {
                tracing::info!(lease = %self.name, "released leadership");
            }
        }
    }
}

//! Leader election on a `coordination.k8s.io/v1` Lease: of several operator replicas, only the
//! holder of the Lease reconciles (and so writes).
//!
//! Contract: [`Elector::run`] acquires the Lease when it is free or expired, renews it every
//! `renew` interval, and flips the shared flag. Updates use the Lease's `resourceVersion`
//! (optimistic concurrency), so two candidates never both win. A leader that fails to renew
//! within `duration` reports the loss; the binary then exits rather than risk two writers.
//! On shutdown the leader releases the Lease so a standby takes over at once.
//!
//! An error that retrying alone cannot fix — the Lease's namespace does not exist, or the
//! identity may not use Leases there — is logged once as an error naming the fix, reported as
//! not usable through [`Elector::usable`] (the binary's `/readyz`), and retried with exponential
//! backoff up to `max_backoff` until it clears, which is logged once too. Other errors are
//! logged as warnings and retried every `retry`.

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

/// Timing of the election (defaults as client-go's: 15 s lease, renew every 5 s, retry 2 s;
/// a blocked Lease is retried after 2 s, 4 s, … up to 30 s).
#[derive(Clone, Debug)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a candidate retries.
    pub retry: Duration,
    /// Longest wait between attempts while the Lease is blocked (see [`Blocked`]).
    pub max_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
            retry: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why the Lease cannot be used until someone acts on the cluster or the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The Lease's namespace does not exist.
    NamespaceMissing,
    /// The identity may not get, create or update Leases in that namespace.
    Forbidden,
}

impl Blocked {
    /// The blocking cause of `error`, if it is one.
    fn of(error: &kube::Error) -> Option<Blocked> {
        let kube::Error::Api(status) = error else { return None };
        let kind = status.details.as_ref().map(|d| d.kind.as_str()).unwrap_or_default();
        match status.code {
            404 if kind == "namespaces" => Some(Blocked::NamespaceMissing),
            403 => Some(Blocked::Forbidden),
            _ => None,
        }
    }

    /// One line naming the cause and the fix.
    fn explain(self, namespace: &str, name: &str) -> String {
        let retry = "retrying with backoff; /readyz reports not ready until then";
        match self {
            Blocked::NamespaceMissing => format!(
                "leader election cannot start: namespace {namespace:?} of the Lease {name:?} does not exist; \
                 create it (kubectl create namespace {namespace}) or pass --leader-election-namespace=<an existing \
                 namespace> (--no-leader-election for a single replica); {retry}"
            ),
            Blocked::Forbidden => format!(
                "leader election cannot start: this identity may not get, create or update Leases in namespace \
                 {namespace:?}; grant it (the chart's <release>-leader-election Role and RoleBinding) or pass \
                 --leader-election-namespace=<a namespace where it may>; {retry}"
            ),
        }
    }
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timing: Timing,
    leader: watch::Sender<bool>,
    usable: watch::Sender<Option<bool>>,
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
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timing,
            leader: watch::channel(false).0,
            usable: watch::channel(None).0,
        }
    }

    /// Whether this candidate leads, now and on every change.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Whether the Lease can be used: `None` before the first attempt, `Some(false)` while a
    /// [`Blocked`] cause persists, `Some(true)` once an attempt got an answer (held or not).
    /// Transient errors leave it as it was.
    pub fn usable(&self) -> watch::Receiver<Option<bool>> {
        self.usable.subscribe()
    }

    /// Campaigns until `shutdown` fires (then releases a held Lease) or leadership is lost.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), LeaderError> {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        let mut blocked: Option<Blocked> = None;
        let mut blocked_attempts: u32 = 0;
        loop {
            let leading = *self.leader.borrow();
            let attempt = self.try_acquire_or_renew().await;
            if attempt.is_ok() {
                if blocked.take().is_some() {
                    blocked_attempts = 0;
                    tracing::info!(lease = %self.name, namespace = %self.namespace, "the leader-election Lease is usable now");
                }
                self.usable.send_replace(Some(true));
            }
            match attempt {
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
                    match Blocked::of(&e) {
                        Some(cause) => {
                            if blocked != Some(cause) {
                                let line = cause.explain(&self.namespace, &self.name);
                                let error = match &e {
                                    kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
                                    other => other.to_string(),
                                };
                                tracing::error!(lease = %self.name, namespace = %self.namespace, %error, "{line}");
                                blocked = Some(cause);
                            }
                            blocked_attempts = blocked_attempts.saturating_add(1);
                            self.usable.send_replace(Some(false));
                        }
                        None => tracing::warn!(lease = %self.name, error = %e, "lease update failed"),
                    }
                    if leading && last_renewed.is_some_and(|t| t.elapsed() >= self.timing.duration) {
                        self.leader.send_replace(false);
                        return Err(LeaderError::Lost { name: self.name.clone(), duration: self.timing.duration });
                    }
                }
            }
            let wait = if blocked.is_some() {
                let factor = 2u32.saturating_pow(blocked_attempts.saturating_sub(1).min(16));
                self.timing.retry.saturating_mul(factor).min(self.timing.max_backoff)
            } else if *self.leader.borrow() {
                self.timing.renew
            } else {
                self.timing.retry
            };
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
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    annotations: Some(version_annotation()),
                    ..ObjectMeta::default()
                },
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
        lease.metadata.annotations.get_or_insert_with(Default::default).extend(version_annotation());
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

/// The holder's version, kept on the Lease it writes (`mallctl version` shows it).
fn version_annotation() -> std::collections::BTreeMap<String, String> {
    [(mall_crds::OPERATOR_VERSION_ANNOTATION.to_string(), env!("CARGO_PKG_VERSION").to_string())].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, kind: &str) -> kube::Error {
        let status = serde_json::json!({"code": code, "details": {"kind": kind}});
        kube::Error::Api(Box::new(serde_json::from_value(status).expect("a Status")))
    }

    #[test]
    fn a_missing_namespace_and_missing_rights_block_other_errors_do_not() {
        assert_eq!(Blocked::of(&api_error(404, "namespaces")), Some(Blocked::NamespaceMissing));
        assert_eq!(Blocked::of(&api_error(403, "leases")), Some(Blocked::Forbidden));
        assert_eq!(Blocked::of(&api_error(404, "leases")), None);
        assert_eq!(Blocked::of(&api_error(500, "")), None);
        assert_eq!(Blocked::of(&api_error(429, "")), None);
    }

    #[test]
    fn the_blocked_line_names_the_namespace_and_the_fixes() {
        let line = Blocked::NamespaceMissing.explain("mall-system", "mall-operator");
        for part in
            ["\"mall-system\"", "kubectl create namespace mall-system", "--leader-election-namespace", "/readyz"]
        {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        let line = Blocked::Forbidden.explain("ops", "mall-operator");
        assert!(line.contains("\"ops\"") && line.contains("leader-election Role"), "{line}");
    }
}

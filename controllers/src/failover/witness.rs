//! The witness: an agent in one region's cluster that reports which other regions it reaches,
//! so the hub can tell an outage from a partition between itself and a region
//! (`spec.failover.requireWitness`).
//!
//! Contract: [`check`] asks a watched region's API server for `/version` within a timeout;
//! [`lease`] is the pure record of a successful check: Lease `mallctl-witness-<region>` in the
//! Mall's namespace of the witness's own cluster, labelled [`WITNESS_LABEL`] = the watched
//! region, holder = the witness's region, `renewTime` = now, `leaseDurationSeconds` = three
//! intervals; [`record`] server-side applies it (field manager [`FIELD_MANAGER`]). A failed
//! check writes nothing: the Lease ages, and the hub reads an aged Lease as "the witness no
//! longer sees it" (`probe::witness`). The `mall-witness` binary runs the loop.

use super::probe::WITNESS_LABEL;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// Field manager of the witness's Leases.
pub const FIELD_MANAGER: &str = "mall-witness";

/// `mallctl-witness-<region>`.
pub fn lease_name(region: &str) -> String {
    format!("mallctl-witness-{region}")
}

/// Whether `remote`'s API server answers `/version` within `timeout`.
pub async fn check(remote: &kube::Client, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, remote.apiserver_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::reconcile::error_chain(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The Lease recording that `holder`'s witness saw `region` at `now` (see the module header).
pub fn lease(namespace: &str, region: &str, holder: &str, now: DateTime<Utc>, interval: Duration) -> Lease {
    let renew = k8s_openapi::jiff::Timestamp::from_millisecond(now.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(region)),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(WITNESS_LABEL.to_string(), region.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renew)),
            lease_duration_seconds: i32::try_from((interval * 3).as_secs().max(1)).ok(),
            ..LeaseSpec::default()
        }),
    }
}

/// Applies `lease` in `local`.
pub async fn record(local: &kube::Client, lease: &Lease) -> Result<(), kube::Error> {
    let ns = lease.metadata.namespace.clone().unwrap_or_default();
    let name = lease.metadata.name.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(local.clone(), &ns);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(lease)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_lease_names_the_watched_region_and_the_witness() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
        let l = lease("malls", "eu", "us", now, Duration::from_secs(2));
        assert_eq!(l.metadata.name.as_deref(), Some("mallctl-witness-eu"));
        assert_eq!(l.metadata.labels.as_ref().and_then(|m| m.get(WITNESS_LABEL)).map(String::as_str), Some("eu"));
        let spec = l.spec.expect("spec");
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_duration_seconds), (Some("us"), Some(6)));
        assert_eq!(spec.renew_time.map(|t| t.0.as_second()), Some(1_800_000_000));
    }
}

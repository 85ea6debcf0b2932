//! The status fields the failover controller owns, and their write.
//!
//! Contract: [`FailoverStatus`] is everything the failover controller writes on a Mall:
//! `activeRegion`, `failoverEpoch`, `regions`, `lastFailover`, `switchover`, `lastRequest` and
//! the conditions `FailoverRecommended` and `FailoverBlocked`. [`write`] server-side applies it
//! on the status subresource as [`super::FIELD_MANAGER`] (a field it no longer sets is released);
//! with `resource_version` the write is conditioned on it, so an epoch is only ever raised over
//! the status it was computed from (a stale leader's or a second hub's write fails with 409).

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use mall_crds::status::{FailoverRecord, RegionStatus, RequestOutcome, SwitchoverState};
use serde::Serialize;
use serde_json::json;

/// `FailoverRecommended`: `mode: manual` and the active region is down.
pub const RECOMMENDED: &str = "FailoverRecommended";
/// `FailoverBlocked`: the active region is down and no automatic failover happens (why).
pub const BLOCKED: &str = "FailoverBlocked";

/// The failover controller's part of the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// The region serving writes.
    pub active_region: String,
    /// The fencing epoch.
    pub failover_epoch: i64,
    /// Every region.
    pub regions: Vec<RegionStatus>,
    /// The last move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// A switchover in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverState>,
    /// The last request's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_request: Option<RequestOutcome>,
    /// `FailoverRecommended` and `FailoverBlocked`.
    pub conditions: Vec<Condition>,
}

/// Writing the status failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The API server refused (409: the Mall changed since it was read).
    #[error("writing the failover status of Mall {mall}")]
    Write {
        /// The Mall.
        mall: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// RFC 3339 with milliseconds.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A condition of this controller; keeps the previous transition time when its status holds.
pub fn condition(mall: &Mall, type_: &str, on: bool, reason: &str, message: String, now: DateTime<Utc>) -> Condition {
    let status = if on { "True" } else { "False" };
    let previous = mall.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        // Whole seconds, as the API server stores a condition's time: a value with milliseconds
        // would read back different and cost one more write.
        _ => Time(
            k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        ),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: mall.metadata.generation,
        last_transition_time: since,
    }
}

/// Applies `status` to `mall`'s status subresource, conditioned on `resource_version` if given.
pub async fn write(
    client: &kube::Client,
    mall: &Mall,
    status: &FailoverStatus,
    resource_version: Option<&str>,
) -> Result<(), StatusError> {
    let name = mall.metadata.name.clone().unwrap_or_default();
    let ns = mall.metadata.namespace.clone().unwrap_or_default();
    let mut metadata = json!({"name": name});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    let body = json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall", "metadata": metadata, "status": status});
    let api: Api<Mall> = Api::namespaced(client.clone(), &ns);
    api.patch_status(&name, &PatchParams::apply(super::FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map(|_| ())
        .map_err(|source| StatusError::Write { mall: format!("{ns}/{name}"), source })
}

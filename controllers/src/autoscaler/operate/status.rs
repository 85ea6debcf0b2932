//! Step 3 of a tick: the autoscaler's part of the Mall's status — `lastScaling` and the
//! `MetricsUnavailable` condition.
//!
//! Contract: [`desired`] is pure: from the decision, the scale action just applied (if any) and
//! the live status, the status the autoscaler owns, or `None` when the live status already says
//! it (same condition status, reason, message and observed generation; same `lastScaling`) —
//! a steady Mall costs no write. The condition keeps its `lastTransitionTime` while its status
//! holds. [`write`] applies it to the status subresource by server-side apply with field manager
//! [`AUTOSCALER_MANAGER`] (`force`). Every apply carries ALL the autoscaler's fields (the live
//! `lastScaling` when nothing was scaled), since server-side apply removes a field its manager
//! stops sending; [`release`] sends none of them, removing both when autoscaling is turned off.
//! `status.conditions` is a map keyed by `type`, so the reconciler's conditions are not touched.

use crate::autoscaler::{Decision, TierDecision};
use crate::build::names::AUTOSCALER_MANAGER;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use mall_crds::status::{MallStatus, ScalingDecision};
use serde_json::{Value, json};

/// The condition type the autoscaler owns.
pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";

/// Why the status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The Mall has no namespace.
    #[error("the Mall has no namespace")]
    NoNamespace,
    /// The apply failed.
    #[error("writing the autoscaler's status of Mall {name}")]
    Apply {
        /// Mall name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What the autoscaler writes into the status.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscalerStatus {
    /// `MetricsUnavailable`.
    pub condition: Condition,
    /// The most recent scale action.
    pub last_scaling: Option<ScalingDecision>,
}

fn time(t: DateTime<Utc>) -> Time {
    let ts =
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// `status.lastScaling` of the scale action `d` taken at `at`.
pub fn scaling(d: &TierDecision, at: DateTime<Utc>) -> ScalingDecision {
    ScalingDecision {
        time: at.to_rfc3339_opts(SecondsFormat::Secs, true),
        tier: d.tier.name().to_string(),
        from: d.from,
        to: d.to,
        reason: d.reason.chars().take(1024).collect(),
    }
}

/// The autoscaler's status after `decision` (with `scaled`, the last scale action applied), or
/// `None` when `live` already says it (see the module header).
pub fn desired(
    decision: &Decision,
    scaled: Option<&TierDecision>,
    live: Option<&MallStatus>,
    generation: Option<i64>,
) -> Option<AutoscalerStatus> {
    let engine = decision.conditions.iter().find(|c| c.type_ == METRICS_UNAVAILABLE)?;
    let live_condition = live.and_then(|s| s.conditions.iter().find(|c| c.type_ == METRICS_UNAVAILABLE));
    let status = if engine.status { "True" } else { "False" };
    let message: String = engine.message.chars().take(2048).collect();
    let mut condition = Condition {
        type_: METRICS_UNAVAILABLE.into(),
        status: status.into(),
        reason: engine.reason.clone(),
        message,
        observed_generation: generation,
        last_transition_time: time(decision.time),
    };
    if let Some(l) = live_condition.filter(|l| l.status == condition.status) {
        condition.last_transition_time = l.last_transition_time.clone();
    }
    let live_last = live.and_then(|s| s.last_scaling.clone());
    let last_scaling = scaled.map(|d| scaling(d, decision.time)).or(live_last.clone());
    let unchanged = live_condition.is_some_and(|l| {
        (&l.status, &l.reason, &l.message, l.observed_generation)
            == (&condition.status, &condition.reason, &condition.message, condition.observed_generation)
    }) && last_scaling == live_last;
    (!unchanged).then_some(AutoscalerStatus { condition, last_scaling })
}

fn envelope(status: Value) -> Value {
    json!({
        "apiVersion": format!("{}/{}", mall_crds::GROUP, mall_crds::VERSION),
        "kind": "Mall",
        "status": status,
    })
}

/// The apply configuration of `s`.
pub fn patch(s: &AutoscalerStatus) -> Value {
    let mut status = json!({"conditions": [s.condition]});
    if let Some(last) = &s.last_scaling {
        status["lastScaling"] = json!(last);
    }
    envelope(status)
}

async fn send(mall: &Mall, client: &kube::Client, body: &Value) -> Result<(), StatusError> {
    let namespace = mall.metadata.namespace.as_deref().ok_or(StatusError::NoNamespace)?;
    let api: Api<Mall> = Api::namespaced(client.clone(), namespace);
    let name = mall.name_any();
    api.patch_status(&name, &PatchParams::apply(AUTOSCALER_MANAGER).force(), &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(|source| StatusError::Apply { name, source })
}

/// Writes `s` (see the module header).
pub async fn write(client: &kube::Client, mall: &Mall, s: &AutoscalerStatus) -> Result<(), StatusError> {
    send(mall, client, &patch(s)).await
}

/// Removes the autoscaler's status fields (autoscaling was turned off).
pub async fn release(client: &kube::Client, mall: &Mall) -> Result<(), StatusError> {
    send(mall, client, &envelope(json!({}))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::{Condition as EngineCondition, Tier};

    fn decision(unavailable: bool, message: &str) -> Decision {
        Decision {
            time: DateTime::parse_from_rfc3339("2026-11-11T00:00:05Z").unwrap().with_timezone(&Utc),
            tiers: vec![TierDecision { tier: Tier::Storefront, from: 2, to: 5, reason: "surge".into() }],
            conditions: vec![EngineCondition {
                type_: METRICS_UNAVAILABLE.into(),
                status: unavailable,
                reason: if unavailable { "NoData" } else { "MetricsFlowing" }.into(),
                message: message.into(),
            }],
            startup_seconds: 45.0,
        }
    }

    fn live_of(s: &AutoscalerStatus) -> MallStatus {
        MallStatus {
            conditions: vec![s.condition.clone()],
            last_scaling: s.last_scaling.clone(),
            ..MallStatus::default()
        }
    }

    #[test]
    fn first_decision_writes_then_a_steady_one_does_not() {
        let d = decision(false, "all series have data");
        let first = desired(&d, None, None, Some(1)).unwrap();
        assert_eq!((first.condition.status.as_str(), first.condition.reason.as_str()), ("False", "MetricsFlowing"));
        assert_eq!(first.last_scaling, None);
        let live = live_of(&first);
        assert_eq!(desired(&d, None, Some(&live), Some(1)), None);
        // A new generation is a change.
        assert!(desired(&d, None, Some(&live), Some(2)).is_some());
    }

    #[test]
    fn a_scale_action_and_an_outage_are_changes() {
        let d = decision(false, "all series have data");
        let live = live_of(&desired(&d, None, None, Some(1)).unwrap());
        let scaled = desired(&d, Some(&d.tiers[0]), Some(&live), Some(1)).unwrap();
        let last = scaled.last_scaling.clone().unwrap();
        assert_eq!((last.tier.as_str(), last.from, last.to, last.reason.as_str()), ("storefront", 2, 5, "surge"));
        assert_eq!(last.time, "2026-11-11T00:00:05Z");
        let live = live_of(&scaled);
        // Metrics go away: the condition flips, lastScaling is carried along (not dropped).
        let down = decision(true, "no load data for storefront; holding their size");
        let held = desired(&down, None, Some(&live), Some(1)).unwrap();
        assert_eq!(held.condition.status, "True");
        assert_eq!(held.last_scaling, Some(last));
        let body = patch(&held);
        assert_eq!(body["status"]["conditions"][0]["type"], METRICS_UNAVAILABLE);
        assert_eq!(body["status"]["lastScaling"]["to"], 5);
        // While it holds, the transition time is kept.
        let mut later = down.clone();
        later.time += chrono::Duration::seconds(30);
        later.conditions[0].message = "no load data for storefront; holding their size: refused".into();
        let again = desired(&later, None, Some(&live_of(&held)), Some(1)).unwrap();
        assert_eq!(again.condition.last_transition_time, held.condition.last_transition_time);
    }
}

//! Step 2 of a tick: apply a [`Decision`] to the children — the replica field only.
//!
//! Contract: [`plan`] is pure: for every tier decision, every child of that tier whose replica
//! field differs from the decided size (cache StatefulSets hold the primary too: `to + 1`) gets one
//! [`ScaleWrite`]; children already at the size get none, so a steady Mall writes nothing.
//! [`apply`] sends each as a server-side apply with field manager [`AUTOSCALER_MANAGER`] and
//! `force`, holding ONLY `spec.replicas` (`spec.instances` for CloudNativePG): the autoscaler
//! takes that one field over from the reconciler (which then releases it, see
//! `reconcile::handoff`) and owns nothing else. [`publish`] emits one `Scaled` Event per scale
//! action (a tier whose size changed), its note the decision's reason.

use super::counts::{LiveChildren, Target};
use crate::autoscaler::{Decision, Tier, TierDecision};
use crate::build::names::AUTOSCALER_MANAGER;
use crate::reconcile::kinds;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use mall_crds::Mall;
use serde_json::{Value, json};

/// Why a scale write failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The Mall has no namespace.
    #[error("the Mall has no namespace")]
    NoNamespace,
    /// A kind the autoscaler sizes is not known (a bug).
    #[error("{0} is not a managed kind")]
    UnknownKind(&'static str),
    /// The server-side apply failed.
    #[error("scaling {kind} {name} to {value}")]
    Apply {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Value asked for.
        value: i64,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// One replica-field write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleWrite {
    /// The tier it belongs to.
    pub tier: Tier,
    /// What is written.
    pub target: Target,
    /// Object name.
    pub name: String,
    /// New value of the field (objects' own count, e.g. 1 + replicas for a cache shard).
    pub value: i64,
}

impl ScaleWrite {
    /// The apply configuration: type, name and the one field.
    pub fn patch(&self) -> Value {
        let (api_version, kind) = self.target.type_meta();
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": self.name},
            "spec": {self.target.field(): self.value},
        })
    }
}

fn tier_of(target: Target) -> Tier {
    match target {
        Target::Deployment => Tier::Storefront,
        Target::CacheStatefulSet => Tier::Cache,
        Target::CnpgCluster => Tier::Database,
    }
}

/// The writes that bring `live` to `decision` (see the module header).
pub fn plan(decision: &Decision, live: &LiveChildren) -> Vec<ScaleWrite> {
    let mut writes = Vec::new();
    for (target, name, object) in live.all() {
        let (Some(object), Some(to)) = (object, decision.target(tier_of(target))) else { continue };
        let value = i64::from(to) + target.offset();
        if object["spec"][target.field()].as_i64() != Some(value) {
            writes.push(ScaleWrite { tier: tier_of(target), target, name: name.clone(), value });
        }
    }
    writes
}

/// Applies `writes` to the children of `mall`, in order; stops at the first failure.
pub async fn apply(client: &kube::Client, mall: &Mall, writes: &[ScaleWrite]) -> Result<(), ScaleError> {
    let namespace = mall.metadata.namespace.as_deref().ok_or(ScaleError::NoNamespace)?;
    for w in writes {
        let (api_version, kind) = w.target.type_meta();
        let ar = kinds::find(api_version, kind).ok_or(ScaleError::UnknownKind(kind))?.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        api.patch(&w.name, &PatchParams::apply(AUTOSCALER_MANAGER).force(), &Patch::Apply(&w.patch()))
            .await
            .map_err(|source| ScaleError::Apply { kind, name: w.name.clone(), value: w.value, source })?;
    }
    Ok(())
}

/// The note of a scale action's Event: `storefront 2 → 5: <reason>`.
pub fn note(d: &TierDecision) -> String {
    let text = format!("{} {} → {}: {}", d.tier.name(), d.from, d.to, d.reason);
    // events.k8s.io caps notes at 1 KiB.
    text.chars().take(1000).collect()
}

/// Emits one Normal `Scaled` Event on the Mall for the scale action `d`.
pub async fn publish(recorder: &Recorder, mall: &Mall, d: &TierDecision) {
    let event = Event {
        type_: EventType::Normal,
        reason: "Scaled".into(),
        note: Some(note(d)),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &mall.object_ref(&())).await {
        tracing::warn!(mall = %mall.name_any(), error = %e, "could not publish a Scaled event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn decision(tiers: &[(Tier, i32, i32)]) -> Decision {
        Decision {
            time: Utc::now(),
            tiers: tiers
                .iter()
                .map(|&(tier, from, to)| TierDecision { tier, from, to, reason: "because".into() })
                .collect(),
            conditions: Vec::new(),
            startup_seconds: 45.0,
        }
    }

    fn obj(field: &str, n: i64) -> Option<Value> {
        Some(json!({"spec": {field: n}}))
    }

    #[test]
    fn only_fields_that_differ_are_written() {
        let live = LiveChildren {
            storefront: ("sf".into(), obj("replicas", 2)),
            cache: vec![("c0".into(), obj("replicas", 3)), ("c1".into(), obj("replicas", 2))],
            database: vec![("d0".into(), obj("instances", 3)), ("d1".into(), None)],
        };
        let d = decision(&[(Tier::Storefront, 2, 5), (Tier::Cache, 2, 2), (Tier::Database, 3, 3)]);
        let writes = plan(&d, &live);
        assert_eq!(
            writes,
            [
                ScaleWrite { tier: Tier::Storefront, target: Target::Deployment, name: "sf".into(), value: 5 },
                // Cache: 2 replicas + the primary; the shard already at 3 is left alone.
                ScaleWrite { tier: Tier::Cache, target: Target::CacheStatefulSet, name: "c1".into(), value: 3 },
            ]
        );
        assert_eq!(
            writes[0].patch(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sf"}, "spec": {"replicas": 5}})
        );
        let db = ScaleWrite { tier: Tier::Database, target: Target::CnpgCluster, name: "d0".into(), value: 4 };
        assert_eq!(db.patch()["spec"], json!({"instances": 4}));
        // A steady decision writes nothing.
        let steady = decision(&[(Tier::Storefront, 2, 2)]);
        assert!(plan(&steady, &LiveChildren { cache: vec![], database: vec![], ..live }).is_empty());
    }

    #[test]
    fn the_note_names_the_change_and_the_reason() {
        let d = TierDecision { tier: Tier::Storefront, from: 2, to: 5, reason: "surge".into() };
        assert_eq!(note(&d), "storefront 2 → 5: surge");
    }
}

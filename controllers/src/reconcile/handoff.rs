//! The reconciler hands the replica field of an autoscaled child over to the autoscaler without
//! ever resetting it.
//!
//! Contract: pure. [`prepare`] rewrites one desired child just before apply compares it with the
//! live object. Only children carrying [`AUTOSCALED_ANNOTATION`] (its value is the field the
//! autoscaler sizes: `spec.replicas`, or `spec.instances` for CloudNativePG) are touched:
//! - no live object (create): the builder's initial size stays;
//! - the live object's `metadata.managedFields` show [`AUTOSCALER_MANAGER`] owning the field: the
//!   field is removed from the child, so the reconciler's server-side apply no longer owns it and
//!   the autoscaler's value stays;
//! - otherwise (the autoscaler has not scaled it yet): the child takes the live value, so the
//!   reconciler keeps co-owning the field without changing it (dropping a field it solely owns
//!   would make the API server reset it to its default).
//!
//! A converged child therefore stays converged: the annotation is part of what the reconciler
//! applies once, and the replica field always equals (or leaves out) what is live.
//!
//! The failover controller gets the same hand-off for the shard Clusters of a distributed
//! topology (those carrying [`EPOCH_ANNOTATION`]): once a Cluster exists, the reconciler applies
//! the live `spec.replica` (without `promotionToken`, which only the failover controller sets
//! and clears), the live `spec.bootstrap` (fixed at creation) and the live epoch, so only the
//! failover controller (field manager `mall-failover`) ever moves the primary role or raises the
//! fencing token; the builder's values are only those a new Cluster is created with.
//!
//! Except for a stale writer: when the child's epoch (the epoch of the Mall this operator read)
//! is lower than the live Cluster's, nothing is handed over ([`is_stale`]): the child is applied
//! as this operator's view has it, carrying its older epoch, and the member cluster's fence
//! ([`crate::build::fencing`]) refuses the whole write. Were the live epoch copied, a stale
//! operator (a hub restored from an old backup, a leader that missed a failover) would pass the
//! fence and rewrite a rebuilt member's archive folder and sources from its outdated view.

use crate::build::database::topology::EPOCH_ANNOTATION;
use crate::build::names::{AUTOSCALED_ANNOTATION, AUTOSCALER_MANAGER};
use serde_json::Value;

/// Rewrites the fields `child` hands over (autoscaled size, failover role) against its `live`
/// object (see the module header).
pub fn prepare(child: &mut Value, live: Option<&Value>) {
    prepare_failover(child, live);
    prepare_autoscaled(child, live);
}

/// The epoch annotation of an object (`None`: absent or not an integer).
fn epoch_of(object: &Value) -> Option<i64> {
    object["metadata"]["annotations"][EPOCH_ANNOTATION].as_str()?.parse().ok()
}

/// Whether `child` is a topology member written from a view older than its `live` object: its
/// epoch is lower than the live one (see the module header; the fence refuses such a write).
pub fn is_stale(child: &Value, live: Option<&Value>) -> bool {
    match (epoch_of(child), live.and_then(epoch_of)) {
        (Some(view), Some(live)) => view < live,
        _ => false,
    }
}

/// Keeps the live `spec.replica` and epoch of a topology member (see the module header).
fn prepare_failover(child: &mut Value, live: Option<&Value>) {
    let Some(live) = live else { return };
    if child["metadata"]["annotations"][EPOCH_ANNOTATION].is_null() || is_stale(child, Some(live)) {
        return;
    }
    // How a member bootstraps is decided when it is created; a live one keeps its own (a standby
    // created with `initdb` before the topology is reported by the failover probe, never
    // silently rewritten).
    if let (Some(bootstrap), Some(spec)) = (live["spec"].get("bootstrap"), child["spec"].as_object_mut()) {
        spec.insert("bootstrap".into(), bootstrap.clone());
    }
    if let Some(epoch) = live["metadata"]["annotations"][EPOCH_ANNOTATION].as_str() {
        child["metadata"]["annotations"][EPOCH_ANNOTATION] = Value::String(epoch.to_string());
    }
    if let (Some(replica), Some(spec)) = (live["spec"].get("replica"), child["spec"].as_object_mut()) {
        let mut replica = replica.clone();
        // The promotion token is the failover controller's alone: were the reconciler to co-own
        // it, a later demotion could not drop it, and CloudNativePG refuses a token on a replica.
        if let Some(r) = replica.as_object_mut() {
            r.remove("promotionToken");
        }
        spec.insert("replica".into(), replica);
    }
}

/// Rewrites the autoscaled field of `child` against its `live` object (see the module header).
fn prepare_autoscaled(child: &mut Value, live: Option<&Value>) {
    let Some(path) = child["metadata"]["annotations"][AUTOSCALED_ANNOTATION].as_str().map(str::to_string) else {
        return;
    };
    let Some(live) = live else { return };
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((field, parents)) = segments.split_last() else { return };
    if autoscaler_owns(live, &segments) {
        if let Some(Value::Object(parent)) = pointer_mut(child, parents) {
            parent.remove(*field);
        }
        return;
    }
    let Some(value) = lookup(live, &segments).filter(|v| !v.is_null()).cloned() else { return };
    if let Some(Value::Object(parent)) = pointer_mut(child, parents) {
        parent.insert((*field).to_string(), value);
    }
}

/// Whether a `managedFields` entry of [`AUTOSCALER_MANAGER`] holds the field at `segments`.
pub fn autoscaler_owns(live: &Value, segments: &[&str]) -> bool {
    let Some(entries) = live["metadata"]["managedFields"].as_array() else { return false };
    entries.iter().filter(|e| e["manager"] == AUTOSCALER_MANAGER).any(|e| {
        let mut node = &e["fieldsV1"];
        for s in segments {
            node = &node[format!("f:{s}")];
        }
        !node.is_null()
    })
}

fn lookup<'a>(value: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    segments.iter().try_fold(value, |v, s| v.get(*s))
}

fn pointer_mut<'a>(value: &'a mut Value, segments: &[&str]) -> Option<&'a mut Value> {
    segments.iter().try_fold(value, |v, s| v.get_mut(*s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(field: &str, value: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop-storefront", "annotations": {AUTOSCALED_ANNOTATION: format!("spec.{field}")}},
            "spec": {field: value, "template": {}}})
    }

    fn live(field: &str, value: i64, managers: Value) -> Value {
        json!({"metadata": {"name": "shop-storefront", "managedFields": managers}, "spec": {field: value}})
    }

    fn owner(manager: &str, field: &str) -> Value {
        json!({"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": {format!("f:{field}"): {}}}})
    }

    #[test]
    fn a_topology_member_keeps_the_live_role_and_epoch() {
        let desired = || {
            json!({"kind": "Cluster", "metadata": {"name": "shop-eu-db-0", "annotations": {EPOCH_ANNOTATION: "3"}},
                "spec": {"instances": 3, "replica": {"primary": "shop-eu-db-0", "source": "shop-us-db-0"}}})
        };
        let mut created = desired();
        prepare(&mut created, None);
        assert_eq!(created, desired());
        let live = json!({"metadata": {"annotations": {EPOCH_ANNOTATION: "2"}},
            "spec": {"instances": 3, "replica": {"primary": "shop-us-db-0", "source": "shop-us-db-0", "promotionToken": "t"}}});
        let mut updated = desired();
        prepare(&mut updated, Some(&live));
        assert_eq!(updated["metadata"]["annotations"][EPOCH_ANNOTATION], "2");
        assert_eq!(updated["spec"]["replica"]["primary"], "shop-us-db-0");
        assert!(updated["spec"]["replica"].get("promotionToken").is_none(), "the token is not the reconciler's");
        let mut kept = desired();
        kept["spec"]["bootstrap"] = json!({"recovery": {"source": "shop-us-db-0"}});
        let mut initdb = live.clone();
        initdb["spec"]["bootstrap"] = json!({"initdb": {"database": "app"}});
        prepare(&mut kept, Some(&initdb));
        assert_eq!(kept["spec"]["bootstrap"], json!({"initdb": {"database": "app"}}), "bootstrap is never rewritten");
        // A view older than the live Cluster hands nothing over: the write carries its own epoch
        // (and the fence refuses it).
        let mut stale = desired();
        stale["metadata"]["annotations"][EPOCH_ANNOTATION] = json!("1");
        assert!(is_stale(&stale, Some(&live)) && !is_stale(&desired(), Some(&live)) && !is_stale(&stale, None));
        let before = stale.clone();
        prepare(&mut stale, Some(&live));
        assert_eq!(stale, before, "a stale view is written as it is");
        // A Cluster outside a topology is left alone.
        let mut single = json!({"kind": "Cluster", "metadata": {"name": "shop-db-0"}, "spec": {"instances": 1}});
        prepare(&mut single, Some(&live));
        assert!(single["spec"].get("replica").is_none());
    }

    #[test]
    fn create_keeps_the_initial_size() {
        let mut c = child("replicas", 3);
        prepare(&mut c, None);
        assert_eq!(c["spec"]["replicas"], 3);
    }

    #[test]
    fn the_field_is_released_once_the_autoscaler_owns_it() {
        let mut c = child("replicas", 3);
        let l = live("replicas", 9, json!([owner("mall-operator", "template"), owner(AUTOSCALER_MANAGER, "replicas")]));
        prepare(&mut c, Some(&l));
        assert_eq!(c["spec"].get("replicas"), None);
        assert_eq!(c["spec"]["template"], json!({}));
        // CloudNativePG: spec.instances.
        let mut c = child("instances", 2);
        prepare(&mut c, Some(&live("instances", 4, json!([owner(AUTOSCALER_MANAGER, "instances")]))));
        assert_eq!(c["spec"].get("instances"), None);
    }

    #[test]
    fn until_then_the_live_value_is_kept() {
        let mut c = child("replicas", 3);
        // The reconciler owns it, and the autoscaler owns something else only.
        let l = live("replicas", 5, json!([owner("mall-operator", "replicas"), owner(AUTOSCALER_MANAGER, "paused")]));
        prepare(&mut c, Some(&l));
        assert_eq!(c["spec"]["replicas"], 5);
        let mut c = child("replicas", 3);
        prepare(&mut c, Some(&live("replicas", 5, Value::Null)));
        assert_eq!(c["spec"]["replicas"], 5);
    }

    #[test]
    fn children_without_the_annotation_are_untouched() {
        let mut c = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let l = live("replicas", 9, json!([owner(AUTOSCALER_MANAGER, "replicas")]));
        prepare(&mut c, Some(&l));
        assert_eq!(c["spec"]["replicas"], 3);
    }
}

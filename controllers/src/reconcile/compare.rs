//! Is a live object already what we would apply? A converged Mall must cost no writes, and a
//! server-side apply is a write even when it changes nothing, so apply first asks this.
//!
//! Contract: pure. `desired ⊆ live`: every field we set is present in the live object with an
//! equal value; fields the server or other controllers added are ignored. Values the API server
//! canonicalises compare semantically: quantities (`"1.5Gi"` = `"1536Mi"`, `"1000m"` = `"1"`)
//! and integers written as floats. Lists compare element by element (same length, each element a
//! subset), which fits the operator's lists: it owns them whole.

use serde_json::Value;

/// Whether every field set in `desired` has the same value in `live`.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b || quantities_equal(a, b),
        (Value::String(a), Value::Number(b)) | (Value::Number(b), Value::String(a)) => {
            quantity_value(a).is_some_and(|q| Some(q) == b.as_f64())
        }
        (a, b) => a == b || (is_empty(a) && b.is_null()),
    }
}

/// [`is_subset`] for a status: `conditions` is a map list keyed by `type` whose entries other
/// writers own too (the autoscaler's `MetricsUnavailable`), so each desired condition must be a
/// subset of the live condition of the same type, in any order, and live conditions of other
/// types are ignored. Every other field compares as in [`is_subset`].
pub fn status_is_subset(desired: &Value, live: &Value) -> bool {
    let (Value::Object(d), Value::Object(l)) = (desired, live) else { return is_subset(desired, live) };
    d.iter().all(|(k, dv)| match (k.as_str(), dv, l.get(k)) {
        ("conditions", Value::Array(wanted), Some(Value::Array(have))) => wanted
            .iter()
            .all(|c| have.iter().any(|h| h.get("type").is_some_and(|t| Some(t) == c.get("type")) && is_subset(c, h))),
        (_, dv, Some(lv)) => is_subset(dv, lv),
        (_, dv, None) => is_empty(dv),
    })
}

/// Values the server drops: `null`, `{}` and `[]` set by us mean "absent".
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn quantities_equal(a: &str, b: &str) -> bool {
    matches!((quantity_value(a), quantity_value(b)), (Some(x), Some(y)) if (x - y).abs() <= f64::EPSILON * x.abs().max(1.0))
}

/// The numeric value of a Kubernetes quantity string, or None when it is not one.
pub fn quantity_value(text: &str) -> Option<f64> {
    mall_crds::common::parse_quantity(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_are_ignored() {
        let desired = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let live = json!({"spec": {"replicas": 3, "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "a", "terminationMessagePath": "/dev/x"}]}}},
            "status": {"readyReplicas": 3}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn changed_or_missing_fields_are_not_subsets() {
        assert!(!is_subset(&json!({"spec": {"replicas": 3}}), &json!({"spec": {"replicas": 4}})));
        assert!(!is_subset(&json!({"spec": {"image": "a"}}), &json!({"spec": {}})));
        assert!(!is_subset(&json!({"l": [1, 2]}), &json!({"l": [1]})));
        assert!(!is_subset(&json!({"l": [{"a": 1}]}), &json!({"l": [{"a": 2}]})));
        assert!(!is_subset(&json!({"m": "512Mi"}), &json!({"m": "1Gi"})));
    }

    #[test]
    fn status_conditions_compare_by_type() {
        let desired = json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}]});
        let live = json!({"observedGeneration": 2, "lastScaling": {"tier": "storefront"}, "conditions": [
            {"type": "MetricsUnavailable", "status": "True"},
            {"type": "Degraded", "status": "False"}, {"type": "Ready", "status": "True"}]});
        assert!(status_is_subset(&desired, &live));
        // Plain is_subset would see three live conditions against two.
        assert!(!is_subset(&desired, &live));
        let changed = json!({"conditions": [{"type": "Ready", "status": "False"}]});
        assert!(!status_is_subset(&changed, &live));
        let missing = json!({"conditions": [{"type": "Progressing", "status": "False"}]});
        assert!(!status_is_subset(&missing, &live));
        assert!(!status_is_subset(&json!({"observedGeneration": 3}), &live));
        assert!(status_is_subset(&json!({"shards": []}), &live));
    }

    #[test]
    fn canonicalised_values_compare_equal() {
        assert!(is_subset(&json!({"memory": "1.5Gi"}), &json!({"memory": "1536Mi"})));
        assert!(is_subset(&json!({"cpu": "1000m"}), &json!({"cpu": "1"})));
        assert!(is_subset(&json!({"n": 3.0}), &json!({"n": 3})));
        assert!(is_subset(&json!({"empty": {}, "none": null, "list": []}), &json!({})));
        assert_eq!(quantity_value("2e3"), Some(2000.0));
        assert_eq!(quantity_value("ten"), None);
    }
}

//! Test helpers: validated Malls from JSON fragments.

use mall_crds::Mall;
use serde_json::{Value, json};

/// A validated, defaulted Mall named `shop` in namespace `ns` (uid `u-1`), whose spec is a
/// minimal storefront + database merged with `extra` (top-level keys of `spec`).
pub fn mall_from(extra: Value) -> Mall {
    let mut spec = json!({"storefront": {"image": "shop:1"}, "database": {}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let value = json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    });
    crate::validate::validate_value(&value, None).unwrap_or_else(|e| panic!("test Mall invalid: {e}"))
}

/// Parses one YAML document (test fixtures).
pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("fixture is not YAML: {e}"))
}

/// Built children as JSON (what `mallctl render` prints of them).
pub fn values(children: Vec<crate::build::Child>) -> Vec<Value> {
    children.iter().map(|c| c.to_value().unwrap_or_else(|e| panic!("child does not serialize: {e}"))).collect()
}

//! Test helpers: validated Malls from JSON fragments.

use mall_crds::Mall;
use serde_json::{Value, json};

/// The backup [`mall_from`] gives a Mall with standby regions that sets none (validation
/// requires one: standby regions replicate through the object store).
pub const TEST_BACKUP: &str = "s3://shop-backups/pg/";

/// A validated, defaulted Mall named `shop` in namespace `ns` (uid `u-1`), whose spec is a
/// minimal storefront + database merged with `extra` (top-level keys of `spec`); with two or more
/// regions and no `database.backup`, the backup [`TEST_BACKUP`] (Secret `s3`) is added.
pub fn mall_from(extra: Value) -> Mall {
    let mut spec = json!({"storefront": {"image": "shop:1"}, "database": {}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let standby = spec["regions"].as_array().is_some_and(|r| r.len() > 1);
    if standby && spec["database"]["backup"].is_null() {
        spec["database"]["backup"] =
            json!({"objectStore": {"destinationPath": TEST_BACKUP, "credentials": {"secretName": "s3"}}});
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

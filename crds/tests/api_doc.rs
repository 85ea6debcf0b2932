//! docs/api.md lists every field of the spec: a field added to the API without documentation
//! fails here.

use serde_json::Value;

fn walk(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (key, sub) in props {
        let p = format!("{path}.{key}");
        out.push(p.clone());
        if p == "spec.storefront.env" || p == "spec.storefront.envFrom" {
            continue; // core/v1 types, documented by Kubernetes
        }
        match sub.get("type").and_then(Value::as_str) {
            Some("object") => walk(sub, &p, out),
            Some("array") => {
                if let Some(items) = sub.get("items") {
                    walk(items, &format!("{p}[]"), out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_spec_field_is_documented() {
    let crd = serde_json::to_value(mall_crds::Mall::definition()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut fields = Vec::new();
    walk(spec, "spec", &mut fields);
    assert!(fields.len() > 100, "schema walk found only {} fields", fields.len());
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let missing: Vec<_> = fields.iter().filter(|f| !doc.contains(&format!("`{f}`"))).collect();
    assert!(missing.is_empty(), "docs/api.md does not mention: {missing:?}");
}

//! Offline validation against the examples and against inputs the examples do not cover.

use super::*;
use serde_json::json;

fn base() -> Value {
    json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "shop"},
        "spec": {"storefront": {"image": "shop:1"}, "database": {}},
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = base();
    let mut cur = &mut v;
    for key in &path[..path.len() - 1] {
        cur = cur.as_object_mut().unwrap().entry(key.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut().unwrap().insert(path[path.len() - 1].to_string(), value);
    v
}

fn paths(v: &Value) -> Vec<String> {
    match validate_value(v, None) {
        Ok(_) => vec![],
        Err(Invalid(errors)) => errors.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn minimal_mall_is_valid_and_defaulted() {
    let mall = validate_value(&base(), None).unwrap();
    assert_eq!(mall.spec.database.shards, 1);
    assert_eq!(mall.spec.database.instances_per_shard, 3);
    assert_eq!(mall.spec.storefront.port, 8080);
    assert_eq!(mall.spec.database.storage.size, "10Gi");
    assert!(mall.spec.database.pooling.enabled);
}

#[test]
fn openapi_bounds_report_the_field() {
    assert_eq!(paths(&with(&["spec", "database", "shards"], json!(0))), ["spec.database.shards"]);
    assert_eq!(paths(&with(&["spec", "database", "shards"], json!(257))), ["spec.database.shards"]);
    assert_eq!(paths(&with(&["spec", "database", "shards"], json!("4"))), ["spec.database.shards"]);
    // Beyond ±(2^53 − 1) a float is not an integer to the server: a type error, and its format
    // check's cause without a field.
    assert_eq!(paths(&with(&["spec", "storefront", "port"], json!(1e30))), ["spec.storefront.port", ""]);
    assert_eq!(paths(&with(&["spec", "cache"], json!({"engine": "memcached"}))), ["spec.cache.engine"]);
}

#[test]
fn integral_floats_are_integers_like_the_server_says() {
    let mall = validate_value(&with(&["spec", "database", "shards"], json!(4.0)), None).unwrap();
    assert_eq!(mall.spec.database.shards, 4);
    // A fractional value: the type error, and the server's second cause without a field.
    assert_eq!(paths(&with(&["spec", "database", "shards"], json!(4.5))), ["spec.database.shards", ""]);
}

#[test]
fn unknown_fields_and_nulls() {
    assert_eq!(paths(&with(&["spec", "storefront", "imag"], json!("x"))), ["spec.storefront.imag"]);
    assert_eq!(paths(&with(&["spec", "bogus"], json!(1))), ["spec.bogus"]);
    assert_eq!(paths(&with(&["spec", "database"], Value::Null)), ["spec.database"]);
    // A null optional section is simply absent.
    assert!(paths(&with(&["spec", "cache"], Value::Null)).is_empty());
}

#[test]
fn cel_rules_report_their_field_paths() {
    let unbacked = |r: Value| with(&["spec", "regions"], r);
    let regions = |r: Value| {
        let mut v = unbacked(r);
        v["spec"]["database"]["backup"] =
            json!({"objectStore": {"destinationPath": "s3://shop-backups/pg/", "credentials": {"secretName": "s3"}}});
        v
    };
    assert_eq!(
        paths(&regions(json!([{"name": "a", "role": "primary"}, {"name": "b", "role": "primary"}]))),
        ["spec.regions"]
    );
    // A standby region replicates through the object store.
    assert_eq!(
        paths(&unbacked(json!([{"name": "a", "role": "primary"}, {"name": "b", "role": "standby"}]))),
        ["spec.regions"]
    );
    assert!(paths(&unbacked(json!([{"name": "a", "role": "primary"}]))).is_empty());
    assert_eq!(
        paths(&regions(json!([{"name": "a", "role": "primary"}, {"name": "a", "role": "standby"}]))),
        ["spec.regions"]
    );
    assert!(paths(&regions(json!([{"name": "a", "role": "primary"}, {"name": "b", "role": "standby"}]))).is_empty());
    let scaling =
        json!({"prometheus": {"url": "http://p:9090"}, "storefront": {"min": 5, "max": 2, "targetPerReplica": 10}});
    assert_eq!(paths(&with(&["spec", "autoscaling"], scaling)), ["spec.autoscaling.storefront.min"]);
    let sync = json!({"instancesPerShard": 2, "synchronous": {"number": 2}});
    assert_eq!(paths(&with(&["spec", "database"], sync)), ["spec.database.synchronous.number"]);
    let params = json!({"parameters": {"work_mem": "8MB", "recovery_target_time": "x"}});
    assert_eq!(paths(&with(&["spec", "database"], params)), ["spec.database.parameters"]);
}

#[test]
fn blocking_openapi_errors_skip_cel_like_the_server() {
    // An enum error blocks CEL: the duplicate-primary rule is not reported alongside it.
    let r = json!([{"name": "a", "role": "primary"}, {"name": "b", "role": "primary"}, {"name": "c", "role": "boss"}]);
    assert_eq!(paths(&with(&["spec", "regions"], r)), ["spec.regions[2].role"]);
}

#[test]
fn shards_are_immutable_on_update() {
    let old = with(&["spec", "database", "shards"], json!(4));
    let new = with(&["spec", "database", "shards"], json!(8));
    let err = validate_value(&new, Some(&old)).unwrap_err();
    assert_eq!(err.0[0].path, "spec.database.shards");
    assert!(validate_value(&old, Some(&old)).is_ok());
    // Creation has no old object: any count is fine.
    assert!(validate_value(&new, None).is_ok());
}

#[test]
fn metadata_and_type_meta_are_checked() {
    let mut v = base();
    v["kind"] = json!("Deployment");
    assert_eq!(paths(&v), ["kind"]);
    let mut v = base();
    v["metadata"] = json!({"name": "Shop_1"});
    assert_eq!(paths(&v), ["metadata.name"]);
    let mut v = base();
    v["metadata"] = json!({"name": "a-very-long-mall-name-that-will-not-fit"});
    assert_eq!(paths(&v), ["metadata.name"]);
    assert_eq!(paths(&json!([1, 2])), [""]);
    assert_eq!(paths(&json!("text")), [""]);
}

/// Every example in `examples/` is valid; every file in `examples/invalid/` is refused with the
/// field path in its `# expect:` header.
#[test]
fn repository_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let read = |p: &std::path::Path| -> Value {
        let text = std::fs::read_to_string(p).unwrap();
        crate::testing::yaml(&text)
    };
    let mut valid = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            validate_value(&read(&path), None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            valid += 1;
        }
    }
    assert!(valid >= 4, "expected at least 4 valid examples, found {valid}");
    let mut invalid = 0;
    for entry in std::fs::read_dir(root.join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display()))
            .trim();
        let got = paths(&read(&path));
        assert!(got.iter().any(|p| p == expect), "{}: expected {expect}, got {got:?}", path.display());
        invalid += 1;
    }
    assert!(invalid >= 25, "expected at least 25 invalid examples, found {invalid}");
}

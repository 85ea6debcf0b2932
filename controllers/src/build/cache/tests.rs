use super::*;
use crate::testing::mall_from;
use serde_json::Value;
use serde_json::json;

fn secrets() -> CacheSecrets {
    CacheSecrets::from_random_bytes(&[7; 32])
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
        .collect()
}

#[test]
fn no_cache_spec_builds_nothing() {
    let mall = mall_from(json!({}));
    assert!(build(&Scope::all(&mall)[0], &secrets()).unwrap().is_empty());
}

#[test]
fn cluster_objects_are_named_per_shard() {
    let mall = mall_from(json!({"cache": {"shards": 4, "replicasPerShard": 2}}));
    let objects = crate::testing::values(build(&Scope::all(&mall)[0], &secrets()).unwrap());
    assert_eq!(
        kinds(&objects),
        [
            "ConfigMap/shop-cache",
            "Secret/shop-cache-connection",
            "Service/shop-cache-headless",
            "Service/shop-cache",
            "StatefulSet/shop-cache-0",
            "StatefulSet/shop-cache-1",
            "StatefulSet/shop-cache-2",
            "StatefulSet/shop-cache-3",
            "PodDisruptionBudget/shop-cache",
            "NetworkPolicy/shop-cache",
        ]
    );
    let sts = &objects[5];
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["serviceName"], "shop-cache-headless");
    assert_eq!(sts["spec"]["selector"]["matchLabels"]["mallctl.io/shard"], "1");
    for o in &objects {
        let labels = &o["metadata"]["labels"];
        for key in ["name", "instance", "component", "managed-by", "part-of"] {
            assert!(labels[format!("app.kubernetes.io/{key}")].is_string(), "{key} on {}", o["metadata"]["name"]);
        }
        assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Mall");
    }
    assert_eq!(objects[2]["spec"]["clusterIP"], "None");
    assert_eq!(objects[2]["spec"]["publishNotReadyAddresses"], true);
}

#[test]
fn config_follows_spec_and_holds_no_password() {
    let mall = mall_from(json!({"cache": {"maxMemory": "1.5Gi", "evictionPolicy": "volatile-lfu",
        "persistence": {"enabled": true, "size": "9Gi"}}}));
    let s = secrets();
    let objects = crate::testing::values(build(&Scope::all(&mall)[0], &s).unwrap());
    let conf = objects[0]["data"]["cache.conf"].as_str().unwrap();
    assert!(conf.contains("maxmemory 1610612736\n"), "{conf}");
    assert!(conf.contains("maxmemory-policy volatile-lfu\n"));
    assert!(conf.contains("appendonly yes\n"));
    assert!(conf.contains("cluster-enabled yes\n"));
    for o in objects.iter().filter(|o| o["kind"] != "Secret") {
        assert!(!o.to_string().contains(s.password()), "password leaked into {}", o["metadata"]["name"]);
    }
    assert_eq!(objects[0]["data"]["cluster.sh"].as_str().unwrap(), CLUSTER_SCRIPT);
    let sts = &objects[4];
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "9Gi");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let pw = env.iter().find(|e| e["name"] == "CACHE_PASSWORD").unwrap();
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "shop-cache-connection");
    assert!(pw.get("value").is_none());
    let tmpl = env.iter().find(|e| e["name"] == "NODE_HOST_TEMPLATE").unwrap();
    assert_eq!(tmpl["value"], "shop-cache-{shard}-{ordinal}.shop-cache-headless.$(POD_NAMESPACE).svc");

    let off = mall_from(json!({"cache": {}}));
    let objects = crate::testing::values(build(&Scope::all(&off)[0], &s).unwrap());
    assert!(objects[0]["data"]["cache.conf"].as_str().unwrap().contains("appendonly no\n"));
    assert!(objects[4]["spec"].get("volumeClaimTemplates").is_none());
}

#[test]
fn secret_carries_password_and_marks_placeholder() {
    let mall = mall_from(json!({"cache": {}}));
    let scope = &Scope::all(&mall)[0];
    let s = secrets();
    assert_eq!(s.password().len(), 64);
    let secret = connection_secret(scope, &s);
    let data: BTreeMap<String, String> =
        secret.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect();
    assert_eq!(data["CACHE_PASSWORD"], s.password());
    assert_eq!(data["CACHE_ADDRESS"], "shop-cache.ns.svc:6379");
    assert_eq!(data["CACHE_URL"], format!("redis://mall:{}@shop-cache.ns.svc:6379", s.password()));
    assert_eq!((data["CACHE_USER"].as_str(), data["CACHE_MODE"].as_str()), ("mall", "cluster"));
    assert_eq!(secret.metadata.annotations.unwrap()[PASSWORD_ANNOTATION], "generated");
    let rendered = connection_secret(scope, &CacheSecrets::placeholder());
    assert_eq!(rendered.data.unwrap()["CACHE_PASSWORD"].0, PLACEHOLDER.as_bytes());
    assert_eq!(rendered.metadata.annotations.unwrap()[PASSWORD_ANNOTATION], "placeholder");
    assert!(!format!("{s:?}").contains(s.password()), "Debug must not print the password");
}

#[test]
fn weak_passwords_are_refused() {
    assert!(CacheSecrets::new("short").is_err());
    assert!(CacheSecrets::new("x".repeat(42)).is_err());
    assert!(CacheSecrets::new(format!("{}/", "x".repeat(50))).is_err());
    assert!(CacheSecrets::new("a".repeat(64)).is_ok());
}

#[test]
fn network_policy_admits_storefront_and_peers_only() {
    let mall = mall_from(json!({"cache": {}}));
    let np = network_policy(&Scope::all(&mall)[0]);
    let spec = np.spec.unwrap();
    let rules = spec.ingress.unwrap();
    assert_eq!(rules.len(), 2);
    let from =
        |i: usize| rules[i].from.as_ref().unwrap()[0].pod_selector.as_ref().unwrap().match_labels.clone().unwrap();
    assert_eq!(from(0)["app.kubernetes.io/component"], "storefront");
    assert_eq!(rules[0].ports.as_ref().unwrap().len(), 1);
    assert_eq!(from(1)["app.kubernetes.io/component"], "cache");
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
}

#[test]
fn autoscaling_bounds_replicas_and_regions_get_own_clusters() {
    let mall = mall_from(json!({"cache": {"replicasPerShard": 0},
        "autoscaling": {"prometheus": {"url": "http://p:9090"}, "storefront": {"min": 1, "max": 2, "targetPerReplica": 5},
            "cache": {"min": 2, "max": 3, "targetPerReplica": 100}},
        "regions": [{"name": "east", "role": "primary"}, {"name": "west", "role": "standby"}]}));
    let scopes = Scope::all(&mall);
    let west = crate::testing::values(build(&scopes[1], &secrets()).unwrap());
    assert_eq!(west[4]["metadata"]["name"], "shop-west-cache-0");
    // The standby runs standbyCapacityPercent (50 %) of the 2 replicas per shard, rounded up.
    assert_eq!(west[4]["spec"]["replicas"], 2);
    // Only the active region's StatefulSets are sized by the autoscaler.
    assert_eq!(west[4]["metadata"]["annotations"], Value::Null);
    let east = crate::testing::values(build(&scopes[0], &secrets()).unwrap());
    assert_eq!(east[4]["metadata"]["annotations"]["mallctl.io/autoscaled"], "spec.replicas");
    assert_eq!(east[4]["spec"]["replicas"], 3);
    let address = connection_secret(&scopes[1], &secrets()).data.unwrap()["CACHE_ADDRESS"].0.clone();
    assert_eq!(address, b"shop-west-cache.ns.svc:6379");
}

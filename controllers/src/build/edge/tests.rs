use super::*;
use crate::testing::{mall_from, yaml};
use serde_json::Value;
use serde_json::json;

fn cdn_mall() -> mall_crds::Mall {
    mall_from(
        json!({"cdn": {"domains": ["shop.example.com"], "gateway": {"name": "public", "namespace": "gw", "sectionName": "https"},
        "tlsSecretName": "shop-tls", "rules": [{"pathPrefix": "/static/", "ttl": "24h"}, {"pathPrefix": "/search", "bypass": true}],
        "purgeAllowedCidrs": ["10.0.0.0/8", "127.0.0.1/32"]}}),
    )
}

#[test]
fn edge_objects_follow_spec() {
    let mall = cdn_mall();
    let objects = crate::testing::values(build(&Scope::all(&mall)[0]).unwrap());
    let kinds: Vec<_> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HTTPRoute"]);
    for o in &objects {
        assert_eq!(o["metadata"]["name"], "shop-edge");
        assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/component"], "edge");
        assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Mall");
    }
    let vcl = objects[0]["data"]["default.vcl"].as_str().unwrap();
    assert!(vcl.contains(".host = \"shop-storefront.ns.svc\";"), "{vcl}");
    assert!(vcl.contains(".port = \"80\";"));
    assert!(vcl.contains(".url = \"/healthz\";"));
    assert!(vcl.contains("\"10.0.0.0\"/8;"));
    assert!(vcl.contains("req.url ~ \"^/static/\""));
    assert!(vcl.contains("set beresp.ttl = 86400s;"));
    assert!(vcl.contains("set beresp.grace = 21600s;"));
    let route = &objects[4];
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(
        route["spec"]["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
        "name": "public", "namespace": "gw", "sectionName": "https"})
    );
    assert_eq!(route["spec"]["hostnames"], json!(["shop.example.com"]));
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["name"], "shop-edge");
    assert_eq!(route["metadata"]["annotations"][TLS_ANNOTATION], "shop-tls");
    let pod = &objects[1]["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"][IMAGE_HASH_ANNOTATION], fingerprint("shop:1"));
    assert!(pod["spec"]["containers"][0]["command"].as_array().unwrap().contains(&json!("malloc,256M")));
}

#[test]
fn new_storefront_image_rolls_the_edge_only_with_purge_on_rollout() {
    let hash = |extra: serde_json::Value| {
        let mall = mall_from(extra);
        let d = deployment(&Scope::all(&mall)[0], mall.spec.cdn.as_ref().unwrap());
        d.spec.unwrap().template.metadata.unwrap().annotations.and_then(|a| a.get(IMAGE_HASH_ANNOTATION).cloned())
    };
    let cdn = json!({"domains": ["a.example.com"], "gateway": {"name": "g"}});
    let a = hash(json!({"storefront": {"image": "shop:1"}, "cdn": cdn}));
    let b = hash(json!({"storefront": {"image": "shop:2"}, "cdn": cdn}));
    assert!(a.is_some() && b.is_some() && a != b);
    let mut off = cdn.clone();
    off["purgeOnRollout"] = json!(false);
    assert_eq!(hash(json!({"storefront": {"image": "shop:1"}, "cdn": off})), None);
}

#[test]
fn headers_follow_spec() {
    let mall = mall_from(json!({"cdn": {"domains": ["a.example.com"], "gateway": {"name": "g"},
        "headers": {"browserMaxAge": "60s", "surrogateControl": false}}}));
    let v = vcl::vcl(mall.spec.cdn.as_ref().unwrap(), &storefront_backend(&Scope::all(&mall)[0])).unwrap();
    assert!(v.contains("\"public, max-age=60, s-maxage=\" + req.http.x-mall-ttl"), "{v}");
    assert!(!v.contains("surrogate-control"));
    let v = vcl::vcl(cdn_mall().spec.cdn.as_ref().unwrap(), &storefront_backend(&Scope::all(&cdn_mall())[0])).unwrap();
    assert!(v.contains("set resp.http.cache-control = \"no-cache\";"));
    assert!(v.contains(
        "set resp.http.surrogate-control = \"max-age=\" + req.http.x-mall-ttl + \", stale-if-error=21600\";"
    ));
}

#[test]
fn varnish_sizes() {
    assert_eq!(varnish_size("512Mi"), "512M");
    assert_eq!(varnish_size("1Gi"), "1024M");
    assert_eq!(varnish_size("1G"), "1000000000");
}

/// Every container-bearing object in `objects`: (kind/name, pod spec).
fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let spec = o["spec"]["template"]["spec"].as_object().map(|_| &o["spec"]["template"]["spec"])?;
            Some((format!("{}/{}", o["kind"].as_str()?, o["metadata"]["name"].as_str()?), spec))
        })
        .collect()
}

#[test]
fn examples_render_cache_and_edge_with_restricted_pods() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut rendered = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let mut value = yaml(&std::fs::read_to_string(path).unwrap());
        value["metadata"]["namespace"] = json!("ns");
        let mall = crate::validate::validate_value(&value, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let objects = crate::build::children(&mall).unwrap();
        let scopes = Scope::all(&mall).len();
        let count = |kind: &str, component: &str| {
            objects
                .iter()
                .filter(|o| o["kind"] == kind && o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
                .count()
        };
        if let Some(cache) = &mall.spec.cache {
            assert_eq!(count("StatefulSet", "cache"), scopes * cache.shards as usize, "{}", path.display());
        }
        if mall.spec.cdn.is_some() {
            assert_eq!(count("HTTPRoute", "edge"), scopes, "{}", path.display());
            assert_eq!(count("Deployment", "edge"), scopes, "{}", path.display());
        }
        for (what, pod) in pod_specs(&objects) {
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{what}");
            assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
            for key in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(pod[key], true, "{what} {key}");
            }
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                assert!(volume.get("hostPath").is_none(), "{what} hostPath");
            }
            let containers = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(pod["initContainers"].as_array().into_iter().flatten());
            for c in containers {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_ne!(sc["privileged"], true, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(sc["capabilities"].get("add").is_none(), "{what}");
                assert_ne!(sc["runAsUser"], 0, "{what}");
                for port in c["ports"].as_array().into_iter().flatten() {
                    assert!(port.get("hostPort").is_none(), "{what} hostPort");
                }
            }
            rendered += 1;
        }
    }
    assert!(rendered >= 10, "only {rendered} pod templates rendered");
}

/// The `HTTPRoute` of `examples/production.yaml`, as the edge tier has always written it.
#[test]
fn typed_http_route_keeps_the_production_shape() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production.yaml");
    let value = yaml(&std::fs::read_to_string(dir).unwrap());
    let mall = crate::validate::validate_value(&value, None).unwrap();
    let scope = &Scope::all(&mall)[0];
    let route = crate::build::kinds::resource_value(&http_route(scope, mall.spec.cdn.as_ref().unwrap())).unwrap();
    let mut metadata = serde_json::to_value(scope.meta("shop-edge", COMPONENT)).unwrap();
    metadata["annotations"] = json!({TLS_ANNOTATION: "shop-example-com-tls"});
    assert_eq!(
        route,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": {
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                    "namespace": "gateway-system", "sectionName": "https"}],
                "hostnames": ["shop.example.com", "www.shop.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": "shop-edge", "port": 80}],
                }],
            },
        })
    );
}

#[test]
fn typed_http_route_omits_what_the_spec_leaves_out() {
    let mall = mall_from(json!({"cdn": {"domains": ["a.example.com"], "gateway": {"name": "g"}}}));
    let route = http_route(&Scope::all(&mall)[0], mall.spec.cdn.as_ref().unwrap());
    let value = serde_json::to_value(&route).unwrap();
    assert_eq!(
        value["spec"]["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}])
    );
    assert!(value["metadata"].get("annotations").is_none());
    assert!(value.get("status").is_none());
}

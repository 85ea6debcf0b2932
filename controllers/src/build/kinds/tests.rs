use super::*;
use crate::build::Scope;
use crate::testing::mall_from;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use std::collections::BTreeMap;

#[test]
fn http_service_and_budget_select_the_component() {
    let mall = mall_from(json!({}));
    let scope = &Scope::all(&mall)[0];
    let service = resource_value(&http_service(scope, "edge")).unwrap();
    assert_eq!((service["apiVersion"].as_str(), service["kind"].as_str()), (Some("v1"), Some("Service")));
    assert_eq!(service["metadata"]["name"], "shop-edge");
    assert_eq!(service["spec"]["selector"]["app.kubernetes.io/name"], "edge");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    );
    let budget = resource_value(&pod_disruption_budget(scope, "edge")).unwrap();
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(budget["spec"]["selector"]["matchLabels"], json!(scope.selector("edge")));
}

#[test]
fn restricted_pod_sets_both_security_contexts() {
    let pod = restricted_pod(42, Container { name: "c".into(), ..Container::default() }, Vec::new(), Vec::new());
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_user, Some(42));
    assert_eq!((pod.automount_service_account_token, pod.enable_service_links), (Some(false), Some(false)));
}

#[test]
fn deployment_rolls_with_none_unavailable_and_omits_empty_annotations() {
    let selector = BTreeMap::from([("a".to_string(), "b".to_string())]);
    let template = pod_template(selector.clone(), BTreeMap::new(), Default::default());
    let d = resource_value(&deployment(
        ObjectMeta { name: Some("d".into()), ..ObjectMeta::default() },
        3,
        selector,
        template,
    ))
    .unwrap();
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": "25%", "maxUnavailable": 0}));
    assert_eq!(d["spec"]["template"]["metadata"], json!({"labels": {"a": "b"}}));
}

#[test]
fn ingress_policy_admits_only_its_rules() {
    let policy = ingress_policy(
        ObjectMeta::default(),
        match_labels([("app", "db")]),
        vec![allow(pods(match_labels([("app", "web")])), &[5432, 8000])],
    );
    let v = serde_json::to_value(&policy).unwrap();
    assert_eq!(v["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        v["spec"]["ingress"],
        json!([{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]}])
    );
}

#[test]
fn resources_keep_only_the_amounts_set() {
    let r: mall_crds::common::Resources =
        serde_json::from_value(json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}})).unwrap();
    let v = serde_json::to_value(resources(&r)).unwrap();
    assert_eq!(v, json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}}));
}

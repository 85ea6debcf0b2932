//! The Helm chart, rendered and linted with the pinned real `helm`: every object parses as its
//! k8s-openapi type without losing a field, RBAC is least-privilege, the operator pod meets Pod
//! Security `restricted`, and the chart's CRD is the one `mallctl crd` prints.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use mall_e2e::{repo_root, tools_bin};
use serde_json::Value;
use std::process::Command;

fn helm(args: &[&str]) -> String {
    let out = Command::new(tools_bin().join("helm"))
        .args(args)
        .current_dir(repo_root().join("charts"))
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "mall", "mall-operator", "--namespace", "mall-system", "--kube-version", "1.36.3"];
    args.extend_from_slice(extra);
    let text = helm(&args);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered chart is YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Parses `doc` as `T` and checks nothing was dropped on the way (an unknown or misspelled field
/// would vanish in the round trip).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let parsed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    let mut back = serde_json::to_value(&parsed).unwrap();
    if let (Some(b), Some(d)) = (back.as_object_mut(), doc.as_object()) {
        for k in ["apiVersion", "kind"] {
            if let Some(v) = d.get(k) {
                b.insert(k.into(), v.clone());
            }
        }
    }
    assert_eq!(&back, doc, "round trip through the typed object changed it");
    parsed
}

fn check_rules(rules: &[PolicyRule], cluster_wide: bool) {
    for rule in rules {
        for list in [&rule.verbs, rule.resources.as_ref().unwrap(), rule.api_groups.as_ref().unwrap()] {
            assert!(!list.iter().any(|v| v == "*"), "wildcard in {rule:?}");
        }
        if cluster_wide {
            assert!(
                !rule.resources.as_ref().unwrap().iter().any(|r| r == "secrets"),
                "cluster-wide Secret access: {rule:?}"
            );
        }
    }
}

fn check_objects(docs: &[Value]) -> Vec<String> {
    let mut kinds = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Deployment" => {
                let d: Deployment = typed(doc);
                let pod = d.spec.unwrap().template.spec.unwrap();
                let psc = pod.security_context.unwrap();
                assert_eq!(psc.run_as_non_root, Some(true));
                assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
                for c in pod.containers {
                    let sc = c.security_context.unwrap();
                    assert_eq!(sc.allow_privilege_escalation, Some(false));
                    assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
                    assert_eq!(sc.read_only_root_filesystem, Some(true));
                    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
                }
                assert!(pod.host_network.is_none() && pod.volumes.is_none());
            }
            "Service" => drop(typed::<Service>(doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
            "ClusterRole" => check_rules(&typed::<ClusterRole>(doc).rules.unwrap(), true),
            "Role" => check_rules(&typed::<Role>(doc).rules.unwrap(), false),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(doc)),
            "ServiceMonitor" => assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1"),
            "PodDisruptionBudget" => {
                let pdb: PodDisruptionBudget = typed(doc);
                let spec = pdb.spec.unwrap();
                assert!(spec.max_unavailable.is_some() && spec.selector.unwrap().match_labels.is_some());
            }
            other => panic!("unexpected kind {other} in the chart"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    kinds
}

#[test]
fn lints_strict_and_renders_with_defaults() {
    helm(&["lint", "--strict", "mall-operator"]);
    let kinds = check_objects(&render(&[]));
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

/// Two replicas by default: a PodDisruptionBudget leaving one, spread over nodes as a
/// preference; one replica: neither. The security contexts are values, replaced whole.
#[test]
fn replicas_get_a_disruption_budget_and_spread_and_security_is_overridable() {
    let docs = render(&[]);
    let pdb = docs.iter().find(|d| d["kind"] == "PodDisruptionBudget").expect("a PDB with 2 replicas");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deploy["spec"]["template"]["spec"];
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(spread["labelSelector"]["matchLabels"], deploy["spec"]["selector"]["matchLabels"]);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], deploy["spec"]["selector"]["matchLabels"]);

    let docs = render(&["--set", "replicaCount=1"]);
    assert!(!docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"), "a PDB for one replica blocks every drain");
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert!(deploy["spec"]["template"]["spec"].get("topologySpreadConstraints").is_none());

    let docs =
        render(&["--set", "podSecurityContext.runAsUser=1000700000", "--set", "podSecurityContext.fsGroup=1000700000"]);
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let psc = &deploy["spec"]["template"]["spec"]["securityContext"];
    assert_eq!((psc["runAsUser"].as_i64(), psc["fsGroup"].as_i64()), (Some(1_000_700_000), Some(1_000_700_000)));
    assert_eq!(psc["runAsNonRoot"], true, "the rest of the default is kept by --set");
    let out = Command::new(tools_bin().join("helm"))
        .args(["template", "mall", "mall-operator", "--kube-version", "1.36.3"])
        .args(["--set", "topologySpread.whenUnsatisfiable=Sometimes"])
        .current_dir(repo_root().join("charts"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("whenUnsatisfiable"));
}

#[test]
fn renders_namespaced_with_service_monitor() {
    let docs = render(&[
        "--set",
        "watchNamespaces={shop,outlet}",
        "--set",
        "secretNamespaces={shop,outlet}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "replicaCount=3",
        "--set",
        "image.tag=v9.9.9",
    ]);
    let kinds = check_objects(&docs);
    let cluster_wide: Vec<&Value> =
        docs.iter().filter(|d| d["kind"].as_str().unwrap().starts_with("Cluster")).collect();
    assert_eq!(cluster_wide.len(), 2, "namespaced install: only the fencing ClusterRole and its binding: {kinds:?}");
    let fencing = cluster_wide.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(fencing["metadata"]["name"], "mall-mall-operator-fencing");
    check_fencing_rules(&typed::<ClusterRole>(fencing).rules.unwrap());
    assert_eq!(kinds.iter().filter(|k| *k == "Role").count(), 5);
    assert!(kinds.contains(&"ServiceMonitor".to_string()));
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 3);
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert!(container["image"].as_str().unwrap().ends_with(":v9.9.9"));
    assert!(container["args"].as_array().unwrap().iter().any(|a| a == "--namespaces=shop,outlet"));
}

/// Exactly the rules to install the fencing policy: get/patch by name, create (which Kubernetes
/// cannot restrict by name).
fn check_fencing_rules(rules: &[PolicyRule]) {
    let fencing: Vec<&PolicyRule> = rules
        .iter()
        .filter(|r| r.api_groups.as_ref().unwrap().iter().any(|g| g == "admissionregistration.k8s.io"))
        .collect();
    assert_eq!(fencing.len(), 2, "{rules:?}");
    for rule in fencing {
        assert_eq!(
            rule.resources.as_ref().unwrap(),
            &["validatingadmissionpolicies", "validatingadmissionpolicybindings"]
        );
        match rule.resource_names.as_deref() {
            Some(names) => {
                assert_eq!(names, [mall_controllers::build::fencing::POLICY_NAME]);
                assert_eq!(names, [mall_controllers::build::fencing::BINDING_NAME]);
                assert_eq!(rule.verbs, ["get", "patch"]);
            }
            None => assert_eq!(rule.verbs, ["create"]),
        }
    }
}

#[test]
fn member_mode_installs_the_fencing_policy_and_nothing_more() {
    let docs = render(&["--set", "mode=member", "--set", "member.namespaces={shop}"]);
    check_objects(&docs);
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let rules = typed::<ClusterRole>(role).rules.unwrap();
    check_fencing_rules(&rules);
    assert_eq!(rules.len(), 3, "namespaces and the fencing policy only: {rules:?}");
}

#[test]
fn values_schema_refuses_bad_values() {
    let out = Command::new(tools_bin().join("helm"))
        .args(["template", "mall", "mall-operator", "--kube-version", "1.36.3", "--set", "replicaCount=0"])
        .current_dir(repo_root().join("charts"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicaCount"));
}

#[test]
fn chart_crd_is_the_generated_one() {
    let path = repo_root().join("charts/mall-operator/crds/mall.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value = serde_saphyr::from_multiple::<Value>(&text).unwrap().into_iter().find(|d| !d.is_null()).unwrap();
    let generated = serde_json::to_value(mall_crds::Mall::definition()).unwrap();
    assert_eq!(doc, generated);
}

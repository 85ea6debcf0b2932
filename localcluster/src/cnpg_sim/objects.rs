//! The objects CloudNativePG creates next to a Cluster that clients rely on: the `<c>-app`
//! Secret and the `<c>-rw`, `<c>-ro`, `<c>-r` Services, owned by the Cluster (controller owner
//! reference, so the garbage collector removes them with it).
//!
//! Contract: [`ensure_objects`] is idempotent. The Secret is created once and never rewritten
//! (its random password stays stable; an existing Secret, e.g. the user's own, is left alone);
//! the Services are server-side applied. Sources: C:pkg/specs/secrets.go `CreateSecret`,
//! C:internal/controller/cluster_create.go `reconcileAppUserSecret`, C:pkg/specs/services.go,
//! C:docs/src/service_management.md, C:docs/src/applications.md, C:pkg/utils/ownership.go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;

use super::{CnpgSimError, FIELD_MANAGER};

/// PostgreSQL's port (C:pkg/postgres `ServerPort`).
const PORT: i32 = 5432;
/// Annotation marking objects made by this stand-in, not by CloudNativePG.
pub const SIMULATED_ANNOTATION: &str = "localcluster.mall-operator.io/simulated-by";

fn owner(cluster: &DynamicObject) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "postgresql.cnpg.io/v1".to_string(),
        kind: "Cluster".to_string(),
        name: cluster.metadata.name.clone()?,
        uid: cluster.metadata.uid.clone()?,
        // C:pkg/utils/ownership.go `SetAsOwnedBy`: controller, no blockOwnerDeletion.
        controller: Some(true),
        block_owner_deletion: None,
    })
}

fn meta(cluster: &DynamicObject, name: String, mut labels: BTreeMap<String, String>) -> Option<ObjectMeta> {
    let cluster_name = cluster.metadata.name.clone()?;
    labels.insert("cnpg.io/cluster".to_string(), cluster_name);
    labels.insert("app.kubernetes.io/managed-by".to_string(), "cloudnative-pg".to_string());
    Some(ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(SIMULATED_ANNOTATION.to_string(), FIELD_MANAGER.to_string())])),
        owner_references: Some(vec![owner(cluster)?]),
        ..Default::default()
    })
}

/// `(dbname, owner)` of the application database, or `None` when CNPG would not create the
/// app Secret: `bootstrap.initdb.secret` given, or a bootstrap other than initdb without
/// a database. Defaults `app`/`app` (C:api/v1/cluster_defaults.go, C:docs/src/bootstrap.md).
fn app_database(spec: &Value) -> Option<(String, String)> {
    let bootstrap = &spec["bootstrap"];
    let from = |section: &Value| {
        let db = section["database"].as_str().filter(|s| !s.is_empty()).unwrap_or("app").to_string();
        let owner = section["owner"].as_str().filter(|s| !s.is_empty()).unwrap_or(&db).to_string();
        (db, owner)
    };
    for method in ["recovery", "pg_basebackup"] {
        if bootstrap[method].is_object() {
            return bootstrap[method]["database"].is_string().then(|| from(&bootstrap[method]));
        }
    }
    if bootstrap["initdb"]["secret"].is_object() {
        return None;
    }
    Some(from(&bootstrap["initdb"]))
}

fn app_secret(cluster: &DynamicObject, namespace: &str) -> Option<Secret> {
    let name = cluster.metadata.name.clone()?;
    let (dbname, username) = app_database(&cluster.data["spec"])?;
    let password: String = rand::rng().sample_iter(&Alphanumeric).take(64).map(char::from).collect();
    let host = format!("{name}-rw");
    let ns_host = format!("{host}.{namespace}:{PORT}");
    let fqdn_host = format!("{host}.{namespace}.svc.cluster.local:{PORT}");
    // Alphanumeric user names and passwords need no percent-encoding.
    let uri = |h: &str| format!("postgresql://{username}:{password}@{h}/{dbname}");
    let jdbc = |h: &str| format!("jdbc:postgresql://{h}/{dbname}?password={password}&user={username}");
    let data = BTreeMap::from([
        ("username".to_string(), username.clone()),
        ("user".to_string(), username.clone()),
        ("password".to_string(), password.clone()),
        ("dbname".to_string(), dbname.clone()),
        ("host".to_string(), host.clone()),
        ("port".to_string(), PORT.to_string()),
        ("pgpass".to_string(), format!("{host}:{PORT}:{dbname}:{username}:{password}\n")),
        ("uri".to_string(), uri(&ns_host)),
        ("jdbc-uri".to_string(), jdbc(&ns_host)),
        ("fqdn-uri".to_string(), uri(&fqdn_host)),
        ("fqdn-jdbc-uri".to_string(), jdbc(&fqdn_host)),
    ]);
    let labels = BTreeMap::from([
        ("cnpg.io/userType".to_string(), "app".to_string()),
        ("cnpg.io/reload".to_string(), "true".to_string()),
    ]);
    Some(Secret {
        metadata: meta(cluster, format!("{name}-app"), labels)?,
        type_: Some("kubernetes.io/basic-auth".to_string()),
        string_data: Some(data),
        ..Default::default()
    })
}

/// The default Services not listed in `spec.managed.services.disabledDefaultServices` (`rw`
/// cannot be disabled).
fn services(cluster: &DynamicObject) -> Option<Vec<Service>> {
    let name = cluster.metadata.name.clone()?;
    let disabled: Vec<&str> = cluster.data["spec"]["managed"]["services"]["disabledDefaultServices"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let kinds = [
        ("rw", "cnpg.io/instanceRole", "primary"),
        ("ro", "cnpg.io/instanceRole", "replica"),
        ("r", "cnpg.io/podRole", "instance"),
    ];
    let mut out = Vec::new();
    for (suffix, key, value) in kinds {
        if suffix != "rw" && disabled.contains(&suffix) {
            continue;
        }
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "postgresql".to_string()),
            ("app.kubernetes.io/instance".to_string(), name.clone()),
            ("app.kubernetes.io/component".to_string(), "database".to_string()),
        ]);
        out.push(Service {
            metadata: meta(cluster, format!("{name}-{suffix}"), labels)?,
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_string()),
                selector: Some(BTreeMap::from([
                    ("cnpg.io/cluster".to_string(), name.clone()),
                    (key.to_string(), value.to_string()),
                ])),
                ports: Some(vec![ServicePort {
                    name: Some("postgres".to_string()),
                    protocol: Some("TCP".to_string()),
                    port: PORT,
                    target_port: Some(IntOrString::Int(PORT)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Some(out)
}

/// Creates the app Secret (when missing) and applies the Services of `cluster`.
pub async fn ensure_objects(client: &kube::Client, cluster: &DynamicObject) -> Result<(), CnpgSimError> {
    let (Some(name), Some(namespace)) = (cluster.metadata.name.clone(), cluster.metadata.namespace.clone()) else {
        return Ok(());
    };
    let err = |object: String| move |source| CnpgSimError::Objects { object, source };
    if let Some(secret) = app_secret(cluster, &namespace) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let pp = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
        match api.create(&pp, &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(err(format!("Secret {namespace}/{name}-app"))(e)),
        }
    }
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for svc in services(cluster).unwrap_or_default() {
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        api.patch(&svc_name, &pp, &Patch::Apply(&svc)).await.map_err(err(format!("Service {namespace}/{svc_name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cluster(spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "shop", "uid": "u-1"},
            "spec": spec,
        }))
        .expect("object")
    }

    #[test]
    fn app_secret_has_cnpg_keys() {
        let s = app_secret(&cluster(json!({"instances": 1})), "shop").expect("secret");
        let d = s.string_data.expect("data");
        assert_eq!(d["username"], "app");
        assert_eq!(d["dbname"], "app");
        assert_eq!(d["host"], "pg-rw");
        assert_eq!(d["port"], "5432");
        assert_eq!(d["password"].len(), 64);
        assert_eq!(d["uri"], format!("postgresql://app:{}@pg-rw.shop:5432/app", d["password"]));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(s.metadata.owner_references.expect("owner")[0].uid, "u-1");
        let custom = app_secret(&cluster(json!({"bootstrap": {"initdb": {"database": "shop", "owner": "web"}}})), "x")
            .expect("secret")
            .string_data
            .expect("data");
        assert_eq!((custom["dbname"].as_str(), custom["username"].as_str()), ("shop", "web"));
        assert!(app_secret(&cluster(json!({"bootstrap": {"initdb": {"secret": {"name": "mine"}}}})), "x").is_none());
    }

    #[test]
    fn services_honour_disabled_defaults() {
        let all = services(&cluster(json!({}))).expect("services");
        let names: Vec<_> = all.iter().filter_map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, ["pg-rw", "pg-ro", "pg-r"]);
        let rw_selector = all[0].spec.as_ref().and_then(|s| s.selector.clone()).expect("selector");
        assert_eq!(rw_selector["cnpg.io/instanceRole"], "primary");
        let some = services(&cluster(json!({"managed": {"services": {"disabledDefaultServices": ["ro", "r", "rw"]}}})))
            .expect("services");
        assert_eq!(some.len(), 1);
    }
}

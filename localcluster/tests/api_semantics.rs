//! API-server semantics on one cluster: PodSecurity admission, RBAC through a ServiceAccount
//! token, server-side apply conflicts, a kube-runtime watcher and Controller (no errors, no hot
//! loop), audit attribution, and installing the third-party CRDs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, namespace, obj, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use localcluster::Options;
use serde_json::json;

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_semantics() {
    let cluster = start(Options::new("semantics")).await;
    let admin = cluster.client();

    // PodSecurity: a bare pod is refused in a `restricted` namespace.
    namespace(&admin, "restricted", &[("pod-security.kubernetes.io/enforce", "restricted")]).await;
    let bare: Pod = obj(json!({
        "metadata": { "name": "bare" },
        "spec": { "containers": [{ "name": "c", "image": "registry.invalid/app:1" }] }
    }));
    let err = Api::<Pod>::namespaced(admin.clone(), "restricted")
        .create(&PostParams::default(), &bare)
        .await
        .expect_err("non-compliant pod admitted");
    assert_eq!(api_code(&err), Some(403), "{err}");
    assert!(err.to_string().contains("violates PodSecurity"), "{err}");

    // Server-side apply: a second field manager conflicts (409) unless it forces.
    namespace(&admin, "ssa", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "ssa");
    let cm = |v: &str| -> ConfigMap {
        obj(json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": "shared" }, "data": { "key": v } }))
    };
    cms.patch("shared", &PatchParams::apply("alice"), &Patch::Apply(cm("a"))).await.expect("first apply");
    let err = cms
        .patch("shared", &PatchParams::apply("bob"), &Patch::Apply(cm("b")))
        .await
        .expect_err("conflicting apply accepted");
    assert_eq!(api_code(&err), Some(409), "{err}");
    cms.patch("shared", &PatchParams::apply("bob").force(), &Patch::Apply(cm("b"))).await.expect("forced apply");

    // RBAC: a ServiceAccount with a narrow Role gets exactly what the Role grants.
    namespace(&admin, "ctl", &[]).await;
    Api::<Role>::namespaced(admin.clone(), "ctl")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "configmaps" },
                "rules": [{ "apiGroups": [""], "resources": ["configmaps"],
                            "verbs": ["get", "list", "watch", "patch"] }]
            })),
        )
        .await
        .expect("create role");
    Api::<RoleBinding>::namespaced(admin.clone(), "ctl")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "controller" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "configmaps" },
                "subjects": [{ "kind": "ServiceAccount", "name": "controller",
                               "namespace": "ctl" }]
            })),
        )
        .await
        .expect("create rolebinding");
    let user = cluster.user_client("ctl", "controller").await.expect("user client");
    let secret: Secret = obj(json!({ "metadata": { "name": "s" }, "stringData": { "a": "b" } }));
    let err = Api::<Secret>::namespaced(user.clone(), "ctl")
        .create(&PostParams::default(), &secret)
        .await
        .expect_err("secret created without permission");
    assert_eq!(api_code(&err), Some(403), "{err}");
    let err = Api::<ConfigMap>::namespaced(user.clone(), "ssa")
        .list(&ListParams::default())
        .await
        .expect_err("listed outside the Role's namespace");
    assert_eq!(api_code(&err), Some(403), "{err}");

    // A watcher sees objects created by someone else.
    let user_cms: Api<ConfigMap> = Api::namespaced(user.clone(), "ctl");
    let mut seen = watcher(user_cms.clone(), watcher::Config::default()).applied_objects().boxed();
    let ctl_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "ctl");
    for i in 0..5 {
        ctl_cms
            .create(
                &PostParams::default(),
                &obj(json!({ "metadata": { "name": format!("cm-{i}") }, "data": { "i": "x" } })),
            )
            .await
            .expect("create configmap");
    }
    let mut names = std::collections::BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while names.len() < 5 {
            let cm = seen.try_next().await.expect("watcher error").expect("stream ended");
            names.extend(cm.metadata.name.filter(|n| n.starts_with("cm-")));
        }
    })
    .await
    .expect("watcher saw every configmap");
    drop(seen);

    // A Controller marks every configmap once; no errors and no hot loop.
    struct Ctx {
        api: Api<ConfigMap>,
        reconciles: AtomicUsize,
        errors: AtomicUsize,
    }
    let ctx = Arc::new(Ctx { api: user_cms.clone(), reconciles: AtomicUsize::new(0), errors: AtomicUsize::new(0) });
    async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        ctx.reconciles.fetch_add(1, Ordering::SeqCst);
        let marked = cm.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("example.com/seen"));
        if !marked && let Some(name) = cm.metadata.name.as_deref() {
            let patch = json!({ "metadata": { "annotations": { "example.com/seen": "yes" } } });
            ctx.api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, ctx: Arc<Ctx>) -> Action {
        ctx.errors.fetch_add(1, Ordering::SeqCst);
        Action::requeue(Duration::from_secs(1))
    }
    let controller = tokio::spawn(
        Controller::new(user_cms.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );
    eventually("every configmap marked", Duration::from_secs(15), || async {
        let list = user_cms.list(&ListParams::default()).await.ok()?;
        let marked = list
            .items
            .iter()
            .filter(|c| c.metadata.name.as_deref().is_some_and(|n| n.starts_with("cm-")))
            .filter(|c| c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("example.com/seen")))
            .count();
        (marked == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = ctx.reconciles.load(Ordering::SeqCst);
    controller.abort();
    assert_eq!(ctx.errors.load(Ordering::SeqCst), 0, "reconcile errors");
    // One reconcile per object plus one for its own write (+ kube-root-ca.crt's).
    assert!(settled <= 14, "{settled} reconciles for 6 configmaps");
    assert_eq!(later, settled, "reconciles continued without changes (hot loop)");

    // The audit log attributes the controller's writes to its ServiceAccount.
    let sa_user = "system:serviceaccount:ctl:controller";
    let events = eventually("audit lines of the controller", Duration::from_secs(10), || {
        let path = cluster.audit_log();
        async move {
            let events = localcluster::audit::read_events(&path).ok()?;
            let patches: Vec<_> = events
                .into_iter()
                .filter(|e| e.user == sa_user && e.verb == "patch")
                .filter(|e| e.name.as_deref().is_some_and(|n| n.starts_with("cm-")))
                .collect();
            (patches.len() >= 5).then_some(patches)
        }
    })
    .await;
    assert_eq!(events.len(), 5, "{events:#?}");
    assert!(events.iter().all(|e| e.resource.as_deref() == Some("configmaps")
        && e.namespace.as_deref() == Some("ctl")
        && e.code == Some(200)
        && e.user_agent.as_deref() == Some("localcluster/ctl/controller")));
    let all = localcluster::audit::read_events(&cluster.audit_log()).expect("audit log");
    let refused = all.iter().filter(|e| e.user == sa_user && e.verb == "create" && e.code == Some(403)).count();
    assert_eq!(refused, 1, "the refused secret create is audited once");
    assert!(
        all.iter().any(|e| e.user == "localcluster-admin"
            && e.verb == "create"
            && e.resource.as_deref() == Some("namespaces"))
    );

    // Third-party CRDs install with server-side apply and become Established.
    let files =
        tokio::task::spawn_blocking(localcluster::thirdparty::crd_files).await.expect("join").expect("crd files");
    let names = localcluster::install_crds(&admin, &files)
        .await
        .unwrap_or_else(|e| panic!("install CRDs: {}", common::chain(&e)));
    for expected in [
        "clusters.postgresql.cnpg.io",
        "objectstores.barmancloud.cnpg.io",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "dnsendpoints.externaldns.k8s.io",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("dnsrecords")), "{names:?}");
}

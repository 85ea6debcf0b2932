//! The fault proxy: injected error rates match what was asked within sampling error, per
//! resource; latency injection is measurable; dropped connections fail requests and the proxy
//! recovers; watches stream through it; and the audit log names the token's user.

mod common;

use std::time::{Duration, Instant};

use common::{namespace, obj, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use localcluster::Options;
use localcluster::faults::FaultRule;
use serde_json::json;

fn code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy() {
    let cluster = start(Options::new("faults")).await;
    let admin = cluster.client();
    namespace(&admin, "faulty", &[]).await;
    Api::<Role>::namespaced(admin.clone(), "faulty")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "app" },
                "rules": [{ "apiGroups": [""], "resources": ["configmaps", "secrets"],
                            "verbs": ["get", "list", "watch", "create"] }]
            })),
        )
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(admin.clone(), "faulty")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "app" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app" },
                "subjects": [{ "kind": "ServiceAccount", "name": "app", "namespace": "faulty" }]
            })),
        )
        .await
        .expect("rolebinding");
    let admin_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "faulty");
    admin_cms
        .create(&PostParams::default(), &obj(json!({ "metadata": { "name": "target" } })))
        .await
        .expect("configmap");
    Api::<Secret>::namespaced(admin.clone(), "faulty")
        .create(&PostParams::default(), &obj(json!({ "metadata": { "name": "other" } })))
        .await
        .expect("secret");

    let proxy = cluster.fault_proxy().await.expect("fault proxy");
    let token_kubeconfig = cluster.user_kubeconfig("faulty", "app").await.expect("token");
    let proxied = cluster.proxied_kubeconfig(&proxy, &token_kubeconfig).expect("proxied kubeconfig");
    assert!(
        cluster.proxied_kubeconfig(&proxy, &cluster.kubeconfig()).is_err(),
        "a client-certificate kubeconfig cannot go through the proxy"
    );
    let client =
        localcluster::kubeconfig::client_from_kubeconfig(&proxied, "fault-test/1").await.expect("proxied client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "faulty");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "faulty");

    // No faults: everything passes; measure the baseline latency.
    let started = Instant::now();
    for _ in 0..50 {
        cms.get("target").await.expect("get without faults");
    }
    let baseline = started.elapsed() / 50;

    // 30 % of configmap requests fail with 500; secrets are untouched.
    proxy.set_rules(vec![FaultRule::status(500, 0.3).for_resource("configmaps")]);
    proxy.reset_stats();
    let n = 400u32;
    let mut failed = 0u32;
    for _ in 0..n {
        match cms.get("target").await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(code(&e), Some(500), "{e}");
                failed += 1;
            }
        }
    }
    let (mean, sd) = (f64::from(n) * 0.3, (f64::from(n) * 0.3 * 0.7).sqrt());
    assert!((f64::from(failed) - mean).abs() <= 4.0 * sd, "{failed} of {n} failed; expected {mean} ± {:.0}", 4.0 * sd);
    assert_eq!(proxy.stats().injected_status, u64::from(failed));
    assert_eq!(proxy.stats().requests, u64::from(n));
    for _ in 0..50 {
        secrets.get("other").await.expect("secrets are not faulted");
    }

    // A 409 on writes only.
    proxy.set_rules(vec![FaultRule::status(409, 1.0).for_methods(&["POST"])]);
    let err = cms
        .create(&PostParams::default(), &obj(json!({ "metadata": { "name": "refused" } })))
        .await
        .expect_err("injected conflict");
    assert_eq!(code(&err), Some(409), "{err}");
    cms.get("target").await.expect("reads pass");

    // Latency: 150 ms on every request.
    let delay = Duration::from_millis(150);
    proxy.set_rules(vec![FaultRule::latency(delay)]);
    let started = Instant::now();
    for _ in 0..5 {
        cms.get("target").await.expect("delayed get");
    }
    let delayed = started.elapsed() / 5;
    assert!(delayed >= delay, "{delayed:?} per request with {delay:?} injected (baseline {baseline:?})");
    proxy.clear();
    let started = Instant::now();
    for _ in 0..5 {
        cms.get("target").await.expect("get after clearing");
    }
    let cleared = started.elapsed() / 5;
    assert!(cleared < delay, "{cleared:?} per request after clearing the latency");

    // Dropped connections fail the request (not with an API status); the proxy recovers.
    proxy.set_rules(vec![FaultRule::drop_connection(1.0).for_resource("configmaps")]);
    let err = cms.get("target").await.expect_err("dropped");
    assert_eq!(code(&err), None, "a dropped connection is not an API error: {err}");
    proxy.clear();
    cms.get("target").await.expect("works again after the drop");

    // Watches stream through the proxy.
    let mut events = watcher(cms.clone(), watcher::Config::default()).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("initial list in time")
        .expect("watch error")
        .expect("stream");
    assert!(first.metadata.name.is_some());
    admin_cms
        .create(&PostParams::default(), &obj(json!({ "metadata": { "name": "streamed" } })))
        .await
        .expect("create streamed");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let cm = events.try_next().await.expect("watch error").expect("stream");
            if cm.metadata.name.as_deref() == Some("streamed") {
                break;
            }
        }
    })
    .await
    .expect("the watch delivered the new object");
    drop(events);

    // kubectl (Go, offers HTTP/2) works through the proxy too, as the token's user.
    let out = tokio::process::Command::new(cluster.tools_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&proxied)
        .args(["get", "configmap", "target", "-n", "faulty", "-o", "name"])
        .output()
        .await
        .expect("kubectl");
    assert!(out.status.success(), "kubectl through the proxy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/target");

    // Writes through the proxy are audited under the token's user.
    cms.create(&PostParams::default(), &obj(json!({ "metadata": { "name": "via-proxy" } })))
        .await
        .expect("create via proxy");
    let event = common::eventually("audit of the proxied write", Duration::from_secs(10), || {
        let path = cluster.audit_log();
        async move {
            localcluster::audit::read_events(&path)
                .ok()?
                .into_iter()
                .find(|e| e.verb == "create" && e.name.as_deref() == Some("via-proxy"))
        }
    })
    .await;
    assert_eq!(event.user, "system:serviceaccount:faulty:app");
    assert_eq!(event.user_agent.as_deref(), Some("fault-test/1"));
    assert_eq!(event.code, Some(201));
}

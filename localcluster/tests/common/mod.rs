//! Helpers shared by the integration tests: starting a cluster with readable errors, polling,
//! and running kubectl.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use localcluster::{LocalCluster, Options};

/// The error and its whole source chain, one cause per line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("\n  caused by: {s}"));
        source = s.source();
    }
    out
}

/// Starts a cluster, panicking with the full error chain on failure.
pub async fn start(opts: Options) -> LocalCluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "localcluster=info".to_string()))
        .with_test_writer()
        .try_init();
    let name = opts.name.clone();
    let started = Instant::now();
    match LocalCluster::start(opts).await {
        Ok(c) => {
            eprintln!("cluster {name} ready in {:?}", started.elapsed());
            c
        }
        Err(e) => panic!("cluster {name} failed to start: {}", chain(&e)),
    }
}

/// Polls `check` every 50 ms until it yields `Some`, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a namespace with the given labels.
pub async fn namespace(client: &kube::Client, name: &str, labels: &[(&str, &str)]) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
}

/// Runs kubectl against the cluster and returns (success, stdout + stderr).
pub async fn kubectl(cluster: &LocalCluster, args: &[&str]) -> (bool, String) {
    let out = cluster.kubectl().args(args).output().await.expect("run kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Deserializes a JSON literal into a typed object.
pub fn obj<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

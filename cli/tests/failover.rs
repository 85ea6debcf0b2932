//! `mallctl failover`/`switchover` and the failover fields of `mallctl status` against a real
//! API server (a local control plane with the Mall CRD, no operator): the pre-checks refuse with
//! one line and exit 1 without writing the request; a valid request writes the
//! `mallctl.io/request` annotation; `--wait` follows the answer the test writes in the
//! operator's place through the status subresource (Completed → exit 0 and the summary line,
//! Refused → exit 1 and the message, no answer → exit 1 at the timeout naming what is pending).

use kube::api::{Api, Patch, PatchParams};
use localcluster::{LocalCluster, Options};
use mall_crds::{FailoverRequest, Mall, REQUEST_ANNOTATION, RequestAction};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mallctl(kubeconfig: &Path, args: &[&str]) -> Output {
    spawn(kubeconfig, args).wait_with_output().expect("mallctl runs")
}

fn spawn(kubeconfig: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mallctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", "malls"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mallctl starts")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A refusal: exit 1, exactly one line on stderr containing `expected`, nothing on stdout.
fn assert_refused(out: &Output, expected: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

async fn annotation(api: &Api<Mall>, name: &str) -> Option<String> {
    api.get(name).await.expect("Mall").metadata.annotations.and_then(|a| a.get(REQUEST_ANNOTATION).cloned())
}

/// Waits until the request annotation is a new one (not `previous`) and returns it.
async fn new_request(api: &Api<Mall>, previous: Option<&str>) -> FailoverRequest {
    let start = Instant::now();
    loop {
        if let Some(value) = annotation(api, "shop").await.filter(|v| Some(v.as_str()) != previous) {
            return serde_json::from_str(&value).expect("request JSON");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no request written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the status as the operator would (merge patch on the status subresource), then leaves
/// the polling CLI time to see it.
async fn answer(api: &Api<Mall>, status: Value) {
    api.patch_status("shop", &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await.expect("status");
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

fn region(name: &str, health: &str, role: &str, failures: i32, error: Option<&str>) -> Value {
    let mut value = json!({"name": name, "health": health, "role": role, "consecutiveFailures": failures});
    if let Some(error) = error {
        value["lastError"] = json!(error);
    }
    value
}

fn mall(name: &str, regions: &[(&str, &str)]) -> Value {
    let regions: Vec<Value> = regions.iter().map(|(n, role)| json!({"name": n, "role": role})).collect();
    json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall", "metadata": {"name": name, "namespace": "malls"},
        "spec": {"storefront": {"image": "ghcr.io/example/storefront:1.0.0"},
            "database": {"backup": {"objectStore": {"destinationPath": "s3://shop-backups/pg/",
                "credentials": {"secretName": "backup-s3"}}}},
            "regions": regions}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_switchover_requests() {
    let cluster = LocalCluster::start(Options::new("mallctl-failover").index(28)).await.expect("local control plane");
    let client = cluster.client();
    localcluster::install_crd_objects(&client, &[Mall::definition()], Duration::from_secs(60)).await.expect("CRD");
    let kubeconfig = cluster.kubeconfig();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "malls"}});
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.patch("malls", &PatchParams::apply("test"), &Patch::Apply(&ns)).await.expect("namespace");
    let api: Api<Mall> = Api::namespaced(client.clone(), "malls");
    for (name, regions) in [("shop", vec![("eu", "primary"), ("us", "standby")]), ("solo", vec![("eu", "primary")])] {
        api.patch(name, &PatchParams::apply("test"), &Patch::Apply(&mall(name, &regions))).await.expect("Mall");
    }
    answer(
        &api,
        json!({"activeRegion": "eu", "failoverEpoch": 2, "regions": [region("eu", "Healthy", "primary", 0, None),
            region("us", "Down", "replica", 3, Some("probe: connection refused"))]}),
    )
    .await;

    // status: per region health, database role, failures and last error.
    let out = mallctl(&kubeconfig, &["status", "shop"]);
    let (stdout, stderr) = text(&out);
    eprintln!("--- status (us down):\n{stdout}");
    assert!(out.status.success(), "{stderr}");
    let us = stdout.lines().find(|l| l.trim_start().starts_with("us ")).unwrap_or_default();
    for cell in ["standby", "Down", "replica", "3", "probe: connection refused"] {
        assert!(us.contains(cell), "region us lacks {cell:?}:\n{stdout}");
    }
    assert!(stdout.contains("Regions (active: eu, failover epoch 2)") && stdout.contains("LAST ERROR"), "{stdout}");

    // Pre-checks: one line, exit 1, nothing written.
    let refusals: [(&[&str], &str); 7] = [
        (&["switchover", "shop", "--to", "ap"], r#"region "ap" is not a region of Mall malls/shop (regions: eu, us)"#),
        (&["failover", "shop", "--to", "eu"], r#"region "eu" is already active in Mall malls/shop (failover epoch 2)"#),
        (
            &["switchover", "shop", "--to", "us"],
            r#"switchover refused: target region "us" is Down: probe: connection refused (a switchover needs both regions Healthy)"#,
        ),
        (
            &["failover", "shop", "--to", "us"],
            r#"failover refused: target region "us" is Down: probe: connection refused (--force skips this check)"#,
        ),
        (
            &["failover", "solo", "--to", "eu"],
            "failover needs at least two regions: Mall malls/solo has 1 (spec.regions)",
        ),
        (&["failover", "gone", "--to", "eu"], r#"Mall "gone" not found in namespace malls"#),
        (&["failover", "shop", "--to", "ap", "--force"], r#"region "ap" is not a region of Mall malls/shop"#),
    ];
    for (args, expected) in refusals {
        let out = mallctl(&kubeconfig, args);
        eprintln!("$ mallctl -n malls {}\n{}exit {:?}", args.join(" "), text(&out).1, out.status.code());
        assert_refused(&out, expected);
    }
    assert_eq!(annotation(&api, "shop").await, None, "a refused request was written");
    assert_eq!(mallctl(&kubeconfig, &["failover", "shop"]).status.code(), Some(2), "--to is required");

    // --force skips the target's health: the request is written, its id printed.
    let out = mallctl(&kubeconfig, &["failover", "shop", "--to", "us", "--force"]);
    let (stdout, stderr) = text(&out);
    eprintln!("--- failover --force:\n{stdout}");
    assert!(out.status.success(), "{stderr}");
    let written = annotation(&api, "shop").await.expect("request annotation");
    let request: FailoverRequest = serde_json::from_str(&written).expect("request JSON");
    assert_eq!((request.action, request.to.as_str()), (RequestAction::Failover, "us"));
    assert_eq!(stdout.trim(), format!("failover of shop to us requested (request {})", request.id));
    let value: Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(value, json!({"id": request.id, "action": "failover", "to": "us"}));

    // The active region Down refuses a switchover too (named as the active one).
    answer(&api, json!({"regions": [region("eu", "Down", "primary", 5, Some("timeout")), region("us", "Healthy", "replica", 0, None)]})).await;
    assert_refused(
        &mallctl(&kubeconfig, &["switchover", "shop", "--to", "us"]),
        r#"switchover refused: active region "eu" is Down: timeout"#,
    );

    // switchover --wait, answered step by step; `status` shows the switchover in progress.
    answer(
        &api,
        json!({"regions": [region("eu", "Healthy", "primary", 0, None), region("us", "Healthy", "replica", 0, None)]}),
    )
    .await;
    let child = spawn(&kubeconfig, &["switchover", "shop", "--to", "us", "--wait", "--timeout", "60s"]);
    let request = new_request(&api, Some(&written)).await;
    assert_eq!(request.action, RequestAction::Switchover);
    let id = request.id.clone();
    let switch = |token: Option<&str>, promoted: bool| {
        let mut shard = json!({"index": 0, "promoted": promoted});
        if let Some(token) = token {
            shard["demotionToken"] = json!(token);
        }
        json!({"from": "eu", "to": "us", "epoch": 3, "started": "2026-12-07T22:00:00Z",
            "shards": [shard, {"index": 1, "promoted": false}]})
    };
    answer(
        &api,
        json!({"lastRequest": {"id": id, "outcome": "Accepted", "message": "switching over from eu to us"},
        "switchover": switch(None, false)}),
    )
    .await;
    assert_refused(&mallctl(&kubeconfig, &["switchover", "shop", "--to", "us"]), "already in progress");
    answer(&api, json!({"switchover": switch(Some("token-0"), false)})).await;
    let out = mallctl(&kubeconfig, &["status", "shop"]);
    let (stdout, _) = text(&out);
    eprintln!("--- status (switchover in progress):\n{stdout}");
    assert!(stdout.contains("Switchover in progress: eu → us, epoch 3"), "{stdout}");
    assert!(stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "read", "no"]), "{stdout}");
    answer(&api, json!({"switchover": switch(Some("token-0"), true)})).await;
    answer(
        &api,
        json!({"switchover": null, "activeRegion": "us", "failoverEpoch": 3,
            "regions": [region("eu", "Healthy", "replica", 0, None), region("us", "Healthy", "primary", 0, None)],
            "lastFailover": {"kind": "switchover", "from": "eu", "to": "us", "epoch": 3, "reason": format!("request {id}"),
                "started": "2026-12-07T22:00:00Z", "completed": "2026-12-07T22:00:04Z", "rtoMilliseconds": 4200, "rpo": "0"},
            "lastRequest": {"id": id, "outcome": "Completed", "message": "us is active"}}),
    )
    .await;
    let out = child.wait_with_output().expect("mallctl switchover --wait");
    let (stdout, stderr) = text(&out);
    eprintln!("--- switchover --wait stdout:\n{stdout}--- stderr:\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "us is active (epoch 3), RTO 4.2 s, RPO 0 (switchover)");
    for line in [
        format!("switchover of shop to us requested (request {id})"),
        format!("request {id}: Accepted: switching over from eu to us"),
        "shard 0: waiting for the demotion token, then promoting in us (switchover eu → us, epoch 3)".into(),
        "shard 0: demotion token read, promoting in us (switchover eu → us, epoch 3)".into(),
        "shard 0: promoted in us (switchover eu → us, epoch 3)".into(),
        "region us: Healthy (primary)".into(),
        "active region us (epoch 3)".into(),
        format!("request {id}: Completed: us is active"),
    ] {
        assert!(stderr.lines().any(|l| l == line), "no progress line {line:?} in:\n{stderr}");
    }

    // status: the last switchover and the request's outcome.
    let out = mallctl(&kubeconfig, &["status", "shop"]);
    let (stdout, _) = text(&out);
    eprintln!("--- status:\n{stdout}");
    assert!(stdout.contains(&format!("switchover eu → us, epoch 3, RTO 4.2 s, RPO 0: request {id}")), "{stdout}");
    assert!(stdout.contains(&format!("Last request\n  {id}: Completed: us is active")), "{stdout}");
    assert!(!stdout.contains("Switchover in progress"), "{stdout}");

    // A refused request: exit 1 with the operator's message.
    let previous = annotation(&api, "shop").await;
    let child = spawn(&kubeconfig, &["failover", "shop", "--to", "eu", "--wait", "--timeout", "60s"]);
    let request = new_request(&api, previous.as_deref()).await;
    let message = "cooldown: the last failover was 4s ago (cooldown 5m)";
    answer(&api, json!({"lastRequest": {"id": request.id, "outcome": "Refused", "message": message}})).await;
    let out = child.wait_with_output().expect("mallctl failover --wait");
    let (stdout, stderr) = text(&out);
    eprintln!("--- failover --wait (refused) stdout:\n{stdout}--- stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.lines().last().unwrap_or_default().ends_with(&format!("failover of shop to eu refused: {message}")),
        "{stderr}"
    );

    // Nobody answers: exit 1 at the timeout, naming what is pending.
    let out = mallctl(&kubeconfig, &["failover", "shop", "--to", "eu", "--wait", "--timeout", "2s"]);
    let (stdout, stderr) = text(&out);
    eprintln!("--- failover --wait (timeout) stdout:\n{stdout}--- stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("failover of shop to eu not completed after 2s: the operator has not answered request"),
        "{stderr}"
    );
}

//! The Mall CRD on a real API server versus `mall_controllers::validate` (what `mallctl
//! validate` runs): both must reject the same manifests with the same field paths.
//!
//! One cluster; the Mall CRD from `mall_crds::Mall::definition()`. Cases:
//! - every `examples/invalid/*.yaml` through `kubectl apply --server-side --dry-run=server`
//!   (rejected, the `# expect:` path in the server's message and in the validator's paths);
//! - every `examples/*.yaml` accepted by kubectl (dry run) and by the validator;
//! - the examples plus 40+ mutations generated from the schema ([`mutations::generate`]) and
//!   one breaker per CEL rule ([`CEL_BREAKERS`]), each sent as a dry-run server-side apply with
//!   strict field validation and to the validator: both accept, or both reject with the same
//!   set of paths (`details.causes[].field` of the 422, or the paths in the message of a
//!   server-side apply error);
//! - the `spec.database.shards` transition rule on a real update.
//!
//! Normalisation (explicit, [`mutations::canonical`]): server-side apply writes unknown-field
//! paths with a leading `.`, and structured-merge-diff writes map keys as `.key` where the
//! validator (and the server's OpenAPI errors) write `[key]`; the server's root cause saying CEL
//! rules were skipped after a blocking error ([`CEL_SKIPPED`]) names no field and is dropped.
//!
//! [`KNOWN_DIFFERENCES`] lists disagreements awaiting a fix in the validator or the CRD; an entry
//! that no longer shows fails the test so the list cannot go stale.

mod common;
#[path = "mall_crd/mutations.rs"]
mod mutations;
#[path = "mall_crd/verdict.rs"]
mod verdict;

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use localcluster::Options;
use serde_json::{Value, json};

use common::{namespace, start};
use mutations::{Mutation, canonical, set};
use verdict::{Verdict, api, apply, describe, disagreement, paths_in_message, schema, server_verdict, validator};

/// Namespace the manifests are sent to.
const NS: &str = "mall-crd";

/// Disagreements awaiting a fix: (case id, or a prefix ending in `*`; why). The test fails on
/// any other disagreement, and on an entry here that no longer matches one.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

fn known(id: &str) -> bool {
    KNOWN_DIFFERENCES.iter().any(|(k, _)| match k.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => id == *k,
    })
}

/// One breaker per CEL rule: (holder path, message prefix, JSON-pointer edits of the production
/// example). Every non-transition rule of the schema must have one; an entry whose rule has
/// moved into the OpenAPI schema (the Mall name, now `metadata.name` maxLength and pattern) still
/// runs as an invalid manifest.
type Edit = (&'static str, fn() -> Option<Value>);
const CEL_BREAKERS: &[(&str, &str, &[Edit])] = &[
    ("", "a Mall name must be", &[("/metadata/name", || Some(json!("a-mall-name-longer-than-thirty-chars")))]),
    (
        "spec",
        "exactly one region must have role primary",
        &[("/spec/regions", || {
            Some(json!([{"name": "east", "role": "standby"}, {"name": "west", "role": "standby"}]))
        })],
    ),
    (
        "spec",
        "standby regions and regions in member clusters need spec.database.backup",
        &[
            ("/spec/regions", || {
                Some(json!([{"name": "east", "role": "primary", "cluster": {"secretName": "east-kubeconfig"}}]))
            }),
            ("/spec/database/backup", || None),
        ],
    ),
    (
        "spec",
        "standby regions and regions in member clusters need spec.database.backup",
        &[
            ("/spec/regions", || {
                Some(json!([{"name": "east", "role": "primary"}, {"name": "west", "role": "standby"}]))
            }),
            ("/spec/database/backup", || None),
        ],
    ),
    ("spec", "database instances per shard scale", &[("/spec/autoscaling/database/max", || Some(json!(12)))]),
    ("spec", "cache replicas per shard scale", &[("/spec/autoscaling/cache/max", || Some(json!(7)))]),
    ("spec", "autoscaling.cache needs spec.cache", &[("/spec/cache", || None)]),
    (
        "spec.autoscaling.cache",
        "min must not exceed max",
        &[("/spec/autoscaling/cache/min", || Some(json!(3))), ("/spec/autoscaling/cache/max", || Some(json!(2)))],
    ),
    (
        "spec.autoscaling.database",
        "min must not exceed max",
        &[("/spec/autoscaling/database/min", || Some(json!(5))), ("/spec/autoscaling/database/max", || Some(json!(4)))],
    ),
    (
        "spec.autoscaling.storefront",
        "min must not exceed max",
        &[("/spec/autoscaling/storefront/min", || Some(json!(100)))],
    ),
    (
        "spec.autoscaling.storefront",
        "targetPerReplica must be greater than 0",
        &[("/spec/autoscaling/storefront/targetPerReplica", || Some(json!(0)))],
    ),
    (
        "spec.autoscaling.cache",
        "targetPerReplica must be greater than 0",
        &[("/spec/autoscaling/cache/targetPerReplica", || Some(json!(0)))],
    ),
    (
        "spec.autoscaling.database",
        "targetPerReplica must be greater than 0",
        &[("/spec/autoscaling/database/targetPerReplica", || Some(json!(0)))],
    ),
    (
        "spec.autoscaling.events",
        "event names must be unique",
        &[("/spec/autoscaling/events", || {
            let e = json!({"name": "sale", "start": "2026-11-11T00:00:00Z", "end": "2026-11-11T02:00:00Z", "multiplier": 2});
            Some(json!([e.clone(), e]))
        })],
    ),
    (
        "spec.autoscaling.events[*]",
        "end must be after start",
        &[("/spec/autoscaling/events", || {
            Some(
                json!([{"name": "sale", "start": "2026-11-11T02:00:00Z", "end": "2026-11-11T00:00:00Z", "multiplier": 2}]),
            )
        })],
    ),
    (
        "spec.autoscaling.events[*]",
        "set multiplier or minReplicas",
        &[("/spec/autoscaling/events", || {
            Some(json!([{"name": "sale", "start": "2026-11-11T00:00:00Z", "end": "2026-11-11T02:00:00Z"}]))
        })],
    ),
    (
        "spec.cache.resources",
        "requests must not exceed limits",
        &[("/spec/cache/resources/requests/cpu", || Some(json!("2")))],
    ),
    (
        "spec.cdn.domains",
        "domains must be unique",
        &[("/spec/cdn/domains", || Some(json!(["shop.example.com", "shop.example.com"])))],
    ),
    (
        "spec.cdn.purgeAllowedCidrs",
        "must be IPv4 CIDRs",
        &[("/spec/cdn/purgeAllowedCidrs", || Some(json!(["10.0.0.0/33"])))],
    ),
    (
        "spec.cdn.rules",
        "each pathPrefix may appear once",
        &[("/spec/cdn/rules", || {
            Some(json!([{"pathPrefix": "/a/", "ttl": "1m"}, {"pathPrefix": "/a/", "ttl": "2m"}]))
        })],
    ),
    ("spec.cdn.rules[*]", "set exactly one of ttl or bypass", &[("/spec/cdn/rules/0/bypass", || Some(json!(true)))]),
    (
        "spec.database",
        "synchronous.number must be less than",
        &[("/spec/database/synchronous/number", || Some(json!(3)))],
    ),
    (
        "spec.database.parameters",
        "sets a parameter",
        &[("/spec/database/parameters/archive_mode", || Some(json!("off")))],
    ),
    (
        "spec.database.resources",
        "requests must not exceed limits",
        &[("/spec/database/resources/requests/memory", || Some(json!("16Gi")))],
    ),
    (
        "spec.regions",
        "region names must be unique",
        &[("/spec/regions", || {
            Some(json!([{"name": "east", "role": "primary"}, {"name": "east", "role": "standby"}]))
        })],
    ),
    (
        "spec.storefront.resources",
        "requests must not exceed limits",
        &[("/spec/storefront/resources/requests/cpu", || Some(json!("2")))],
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read example");
    serde_saphyr::from_str(&text).expect("example is YAML")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The manifest without a namespace (everything goes to [`NS`]).
fn without_namespace(mut v: Value) -> Value {
    set(&mut v, "/metadata/namespace", None);
    v
}

/// The breakers of the CEL rules as mutations of the production example; every create-time
/// rule of the schema must have at least one (a breaker whose rule is gone still runs: it is
/// an invalid manifest either way).
fn cel_mutations(schema: &Value, production: &Value) -> Vec<Mutation> {
    for rule in mutations::cel_rules(schema).iter().filter(|r| !r.transition) {
        assert!(
            CEL_BREAKERS.iter().any(|(h, m, _)| *h == rule.holder && rule.message.starts_with(m)),
            "no CEL_BREAKERS entry for rule {:?} on {:?}",
            rule.message,
            rule.holder
        );
    }
    CEL_BREAKERS
        .iter()
        .map(|(holder, message, edits)| {
            let mut object = production.clone();
            for (pointer, value) in *edits {
                set(&mut object, pointer, value());
            }
            Mutation { id: format!("cel {holder}: {message}"), object }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_and_validator_agree() {
    let cluster = start(Options::new("mall-crd")).await;
    let client = cluster.client();
    let schema = schema();
    let mut disagreements: Vec<(String, String)> = Vec::new();

    localcluster::install_crd_objects(&client, &[mall_crds::Mall::definition()], std::time::Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("the API server refuses Mall::definition(): {}", common::chain(&e)));
    namespace(&client, NS, &[]).await;

    // examples/invalid through kubectl: rejected, naming the expected field, like the validator.
    let started = Instant::now();
    let invalid = yaml_files(&root().join("examples/invalid"));
    assert!(invalid.len() >= 40, "only {} invalid examples", invalid.len());
    let kubectl_checks = futures::stream::iter(invalid.iter().map(|file| {
        let cluster = &cluster;
        let schema = &schema;
        async move {
            let text = std::fs::read_to_string(file).expect("read");
            let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).expect("# expect: header").trim();
            let path = file.to_string_lossy();
            let (ok, out) =
                common::kubectl(cluster, &["apply", "--server-side", "--dry-run=server", "-n", NS, "-f", &path]).await;
            let mut problems = Vec::new();
            if ok {
                problems.push(format!("accepted by the API server: {out}"));
            } else if !paths_in_message(schema, &out).contains(&canonical(schema, expect)) {
                problems.push(format!("the server does not name {expect}: {out}"));
            }
            match validator(schema, &read_yaml(file), None) {
                Verdict::Rejected(paths, _) if paths.contains(&canonical(schema, expect)) => {}
                other => problems.push(format!("the validator does not name {expect}: {}", describe(&other))),
            }
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (!problems.is_empty()).then(|| (format!("kubectl {name}"), problems.join("\n      ")))
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<_>>()
    .await;
    disagreements.extend(kubectl_checks.into_iter().flatten());
    eprintln!("kubectl on {} invalid examples: {:?}", invalid.len(), started.elapsed());

    // Valid examples: accepted by kubectl (dry run) and the validator.
    let valid = yaml_files(&root().join("examples"));
    for file in &valid {
        let object = without_namespace(read_yaml(file));
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(tmp.path(), serde_json::to_string(&object).expect("json")).expect("write");
        let path = tmp.path().to_string_lossy();
        let (ok, out) =
            common::kubectl(&cluster, &["apply", "--server-side", "--dry-run=server", "-n", NS, "-f", &path]).await;
        assert!(ok, "{}: refused by the API server: {out}", file.display());
        assert!(matches!(validator(&schema, &object, None), Verdict::Accepted), "{}: refused offline", file.display());
    }

    // The same through the API, plus the generated mutations: same verdicts, same paths.
    let bases: Vec<Value> = valid.iter().map(|f| without_namespace(read_yaml(f))).collect();
    let production = bases
        .iter()
        .find(|b| b.pointer("/metadata/name") == Some(&json!("shop")))
        .expect("examples/production.yaml")
        .clone();
    let generated = mutations::generate(&schema, &bases);
    let cel = cel_mutations(&schema, &production);
    eprintln!("{} schema mutations, {} CEL breakers", generated.len(), cel.len());
    assert!(generated.len() >= 40, "only {} generated mutations", generated.len());
    let mut cases: Vec<(String, Value, bool)> = Vec::new();
    for file in invalid.iter().chain(&valid) {
        let expect_valid = !file.starts_with(root().join("examples/invalid"));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        cases.push((format!("example {name}"), without_namespace(read_yaml(file)), expect_valid));
    }
    cases.extend(generated.into_iter().chain(cel).map(|m| (m.id, m.object, false)));

    let started = Instant::now();
    let api = api(&client, NS);
    let results = futures::stream::iter(cases.iter().map(|(id, object, expect_valid)| {
        let api = &api;
        let schema = &schema;
        async move {
            let server = server_verdict(schema, apply(api, object, true).await);
            let offline = validator(schema, object, None);
            (id.clone(), *expect_valid, server, offline)
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    eprintln!("{} cases through the API: {:?}", results.len(), started.elapsed());
    let mut both_accept_invalid = Vec::new();
    for (id, expect_valid, server, offline) in &results {
        if let Some(d) = disagreement(server, offline) {
            disagreements.push((id.clone(), d));
        } else if !expect_valid && matches!(server, Verdict::Accepted) {
            both_accept_invalid.push(id.clone());
        }
    }

    // Update: `spec.database.shards` is immutable.
    let mut old = production.clone();
    set(&mut old, "/metadata/name", Some(json!("immutable")));
    apply(&api, &old, false).await.expect("create a Mall");
    let stored = serde_json::to_value(api.get("immutable").await.expect("get the Mall")).expect("json");
    let mut changed = old.clone();
    set(&mut changed, "/spec/database/shards", Some(json!(5)));
    let server = server_verdict(&schema, apply(&api, &changed, false).await);
    let offline = validator(&schema, &changed, Some(&stored));
    match (&server, disagreement(&server, &offline)) {
        (Verdict::Rejected(paths, _), None) if paths.contains("spec.database.shards") => {}
        (_, d) => disagreements.push(("update spec.database.shards".into(), d.unwrap_or(describe(&server)))),
    }
    let mut image = old.clone();
    set(&mut image, "/spec/storefront/image", Some(json!("ghcr.io/example/storefront:2.3.2")));
    let server = server_verdict(&schema, apply(&api, &image, false).await);
    let offline = validator(&schema, &image, Some(&stored));
    if let Some(d) = disagreement(&server, &offline).or_else(|| match server {
        Verdict::Accepted => None,
        other => Some(format!("an update keeping shards was refused: {}", describe(&other))),
    }) {
        disagreements.push(("update spec.storefront.image".into(), d));
    }

    // Report, then fail on anything unexplained.
    for (id, d) in &disagreements {
        eprintln!("DISAGREEMENT {id}\n      {d}");
    }
    let unexplained: Vec<&String> = disagreements.iter().map(|(id, _)| id).filter(|id| !known(id)).collect();
    let stale: Vec<&str> = KNOWN_DIFFERENCES
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| {
            !disagreements.iter().any(|(id, _)| match k.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => id == k,
            })
        })
        .collect();
    let mut failures = Vec::new();
    if !both_accept_invalid.is_empty() {
        failures.push(format!("mutations both accepted (a generator bug?): {both_accept_invalid:?}"));
    }
    if !unexplained.is_empty() {
        failures.push(format!("{} disagreement(s) between server and validator: {unexplained:?}", unexplained.len()));
    }
    if !stale.is_empty() {
        failures.push(format!("KNOWN_DIFFERENCES entries that now agree (remove them): {stale:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

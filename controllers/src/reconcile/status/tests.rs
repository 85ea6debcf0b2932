use super::*;
use crate::testing::mall_from;
use serde_json::json;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

fn deployment(component: &str, replicas: i32, ready: i32) -> Value {
    json!({"metadata": {"generation": 2, "labels": {"app.kubernetes.io/component": component}},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, "readyReplicas": ready, "updatedReplicas": replicas}})
}

fn cnpg(shard: &str, instances: i32, ready: i32, phase: &str) -> Value {
    json!({"metadata": {"labels": {"mallctl.io/shard": shard}}, "spec": {"instances": instances},
        "status": {"readyInstances": ready, "phase": phase, "currentPrimary": format!("shop-db-{shard}-1")}})
}

fn get<'a>(s: &'a ReconcilerStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

fn live(entries: Vec<(&'static str, &str, Value)>) -> ChildSet<Live> {
    let mut m: BTreeMap<&'static str, BTreeMap<String, Value>> = BTreeMap::new();
    for (plural, name, v) in entries {
        m.entry(plural).or_default().insert(name.into(), v);
    }
    ChildSet::<Live>::from_plurals(m)
}

#[test]
fn all_serving_is_ready_and_converged() {
    let mall = mall_from(json!({}));
    let l = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 2)),
        ("clusters", "shop-db-0", cnpg("0", 3, 3, CNPG_HEALTHY)),
    ]);
    let s = compute(&mall, &Observed { live: Some(&l), ..Default::default() }, now());
    assert_eq!(get(&s, "Ready").status, "True");
    assert_eq!(get(&s, "Progressing").status, "False");
    assert_eq!(get(&s, "Degraded").status, "False");
    assert_eq!(get(&s, "BackupsConfigured").reason, "BackupsDisabled");
    let tiers = s.tiers.unwrap();
    assert_eq!((tiers.storefront.desired, tiers.storefront.ready), (2, 2));
    assert_eq!((tiers.database.desired, tiers.database.ready), (3, 3));
    assert_eq!(s.shards[0].primary.as_deref(), Some("shop-db-0-1"));
}

#[test]
fn a_shard_short_of_instances_is_ready_but_degraded_naming_it() {
    let mall = mall_from(json!({"database": {"shards": 2}}));
    let l = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 2)),
        ("clusters", "shop-db-0", cnpg("0", 3, 3, CNPG_HEALTHY)),
        ("clusters", "shop-db-1", cnpg("1", 3, 2, CNPG_HEALTHY)),
    ]);
    let s = compute(&mall, &Observed { live: Some(&l), ..Default::default() }, now());
    assert_eq!(get(&s, "Ready").status, "True");
    let degraded = get(&s, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ShardDegraded"));
    assert!(degraded.message.contains("shard 1 (shop-db-1)"), "{}", degraded.message);
}

#[test]
fn a_shard_still_creating_instances_is_not_ready_yet() {
    let mall = mall_from(json!({}));
    let l = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 2)),
        ("clusters", "shop-db-0", cnpg("0", 3, 1, "Creating a new replica")),
    ]);
    let s = compute(&mall, &Observed { live: Some(&l), ..Default::default() }, now());
    assert_eq!(get(&s, "Ready").status, "False");
    assert!(get(&s, "Ready").message.contains("1/3 instances"), "{}", get(&s, "Ready").message);
    assert_eq!(get(&s, "Progressing").status, "True");
    assert_eq!(get(&s, "Degraded").status, "False");
}

#[test]
fn rollouts_and_missing_dependencies() {
    let mall = mall_from(json!({}));
    let l = live(vec![("deployments", "shop-storefront", deployment("storefront", 3, 1))]);
    let missing = BTreeMap::from([("CloudNativePG v1.30 (postgresql.cnpg.io)", vec!["Cluster/shop-db-0".to_string()])]);
    let s = compute(&mall, &Observed { live: Some(&l), missing: Some(&missing), ..Default::default() }, now());
    assert_eq!(get(&s, "Ready").status, "False");
    assert_eq!(get(&s, "Progressing").status, "True");
    let d = get(&s, "Degraded");
    assert_eq!(d.reason, "DependencyMissing");
    assert!(d.message.contains("CloudNativePG") && d.message.contains("Cluster/shop-db-0"));
}

#[test]
fn unchanged_conditions_keep_their_transition_time() {
    let mut mall = mall_from(json!({}));
    let l = live(vec![("deployments", "shop-storefront", deployment("storefront", 2, 2))]);
    let first = compute(&mall, &Observed { live: Some(&l), ..Default::default() }, now());
    mall.status = Some(mall_crds::MallStatus { conditions: first.conditions.clone(), ..Default::default() });
    let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_600).unwrap());
    let second = compute(&mall, &Observed { live: Some(&l), ..Default::default() }, later);
    assert_eq!(first, second, "an unchanged world computes an identical status");
}

#[test]
fn invalid_spec_is_degraded_with_the_reason() {
    let mall = mall_from(json!({}));
    let s = compute(
        &mall,
        &Observed { invalid: Some("spec.database.shards: immutable".into()), ..Default::default() },
        now(),
    );
    let d = get(&s, "Degraded");
    assert_eq!((d.reason.as_str(), d.message.as_str()), ("InvalidSpec", "spec.database.shards: immutable"));
    assert_eq!(get(&s, "Ready").status, "False");
}

#[test]
fn only_generation_and_condition_changes_are_urgent() {
    let mall = mall_from(json!({}));
    let starting = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 0)),
        ("clusters", "shop-db-0", cnpg("0", 3, 1, "Creating replica")),
    ]);
    let first = compute(&mall, &Observed { live: Some(&starting), ..Default::default() }, now());
    assert!(is_urgent(&first, None), "the first status is written at once");
    let written: mall_crds::status::MallStatus = serde_json::from_value(serde_json::to_value(&first).unwrap()).unwrap();
    let more = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 1)),
        ("clusters", "shop-db-0", cnpg("0", 3, 2, "Creating replica")),
    ]);
    let progress = compute(&mall, &Observed { live: Some(&more), ..Default::default() }, now());
    assert_ne!(progress.tiers, first.tiers, "counts moved");
    assert!(!is_urgent(&progress, Some(&written)), "counts alone are progress");
    let serving = live(vec![
        ("deployments", "shop-storefront", deployment("storefront", 2, 2)),
        ("clusters", "shop-db-0", cnpg("0", 3, 3, CNPG_HEALTHY)),
    ]);
    let ready = compute(&mall, &Observed { live: Some(&serving), ..Default::default() }, now());
    assert!(is_urgent(&ready, Some(&written)), "Ready turning True is written at once");
    let mut newer = written.clone();
    newer.observed_generation = Some(newer.observed_generation.unwrap_or(0) + 1);
    assert!(is_urgent(&progress, Some(&newer)), "a new generation is written at once");
}

#[test]
fn refused_writes_are_degraded_naming_who_refused() {
    let mall = mall_from(json!({}));
    let l = live(vec![("deployments", "shop-storefront", deployment("storefront", 2, 2))]);
    let refused = vec![(
        "FencedByNewerEpoch".to_string(),
        "Cluster/shop-eu-db-0 in region eu refused by the failover epoch fence: failover epoch 4 is older".to_string(),
    )];
    let s = compute(&mall, &Observed { live: Some(&l), refused, ..Default::default() }, now());
    let degraded = get(&s, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "FencedByNewerEpoch"));
    assert!(degraded.message.contains("Cluster/shop-eu-db-0 in region eu"), "{}", degraded.message);
    assert_eq!(get(&s, "Ready").status, "True", "what is live still serves");
}

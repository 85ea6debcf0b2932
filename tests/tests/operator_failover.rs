//! Regional failover and switchover on three real control planes (hub, eu, us), each with
//! CloudNativePG's own admission webhooks judging every CNPG object and the CloudNativePG status
//! simulator (a stand-in, sharing one object-store directory so WAL crosses clusters).
//!
//! The operator runs against the hub under the chart's RBAC; the members are reached through
//! kubeconfig Secrets holding the chart's member identity. A sampler reads every shard Cluster in
//! eu and us every 100 ms for the whole test and records the most writable primaries of a shard
//! at one instant (a Cluster whose `replica.primary` names itself, in the healthy phase, in the
//! newest epoch of its shard: an older-epoch primary is fenced by the epoch, see
//! docs/failover.md) and how long a returning old primary was seen claiming the role in a stale
//! epoch before it was demoted.
//!
//! A real Prometheus scrapes a request counter (40 requests/s at 10 per replica): the autoscaler
//! sizes the active region's storefront to 4 or more (up to `max` 6) in its member cluster and
//! follows every move,
//! while the standby region stays at its standby size (1).
//!
//! Steps: converge (eu active, DNS at eu); switchover eu → us → eu through `mallctl switchover
//! --wait` (tokens, RPO 0); manual mode: kill eu, `FailoverRecommended`, nothing moves until
//! `mallctl failover --to us --wait`; eu restarts and is rebuilt; switchover back to eu;
//! automatic: kill eu → us active, epoch + 1, DNS at us, RTO and the WAL lost printed; restart eu
//! → demoted, rebuilt from us into a new archive folder, Healthy; a second operator on a hub
//! restored from a backup of epoch 4 (the Mall's UID and status kept, written into its etcd)
//! is refused by eu's and us's API servers (`Degraded/FencedByNewerEpoch` and Events in its
//! hub; eu and us unchanged); switchover back to eu; eu's health flapping faster than the
//! threshold (fault proxy between hub and eu) moves nothing; a partition hub↔eu while the witness
//! in us (`mall-witness`) still sees eu: no failover, `FailoverBlocked/WitnessSeesPrimary`.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams};
use localcluster::members::{install_member_identity, put_kubeconfig_secret};
use localcluster::{CnpgSimulator, LocalCluster, Options, SimulatorOptions};
use mall_controllers::build::database::topology::EPOCH_ANNOTATION;
use mall_crds::Mall;
use mall_e2e::prometheus::{Exporter, Prometheus};
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, operator_bin, repo_root, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const OPERATOR_NS: &str = "mall-system";
const NS: &str = "malls";
const NAME: &str = "global-shop";

fn cluster_resource() -> kube::api::ApiResource {
    mall_controllers::failover::probe::cluster_resource()
}

/// Storefront requests per second the exporter reports, and what one replica serves: the
/// autoscaler wants at least 4 replicas in the active region (the spec's size there is 2, a
/// standby's 1; the engine may add headroom, up to `max` 6).
const RATE: f64 = 40.0;
const PER_REPLICA: f64 = 10.0;
const SCALED: i32 = 4;

fn mall(mode: &str, prometheus: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/multi-cluster.yaml")).unwrap();
    let mut value: Value = serde_saphyr::from_str(&text).unwrap();
    value["spec"]["storefront"]["image"] = json!("shop:1");
    value["spec"]["cdn"] = json!({"domains": ["shop.example.test"], "gateway": {"name": "public"}});
    value["spec"]["database"]["parameters"] = json!({"archive_timeout": "60s"});
    value["spec"]["failover"] = json!({"mode": mode, "probeInterval": "2s", "failureThreshold": 3,
        "cooldown": "10s", "requireWitness": false, "dnsTTLSeconds": 5});
    value["spec"]["autoscaling"] = json!({"prometheus": {"url": prometheus},
        "storefront": {"min": 1, "max": 6, "targetPerReplica": PER_REPLICA},
        "scaleDown": {"stabilization": "10m"}});
    value
}

/// `spec.replicas` of region `region`'s storefront in `env`.
async fn storefront(env: &Env, region: &str) -> Option<i32> {
    let d: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    d.get(&format!("{NAME}-{region}-storefront")).await.ok().and_then(|d| d.spec?.replicas)
}

/// Waits until the storefronts of (active, standby) have the autoscaled and the standby size.
async fn sized(active: (&Env, &str), standby: (&Env, &str), op: &OperatorProcess, what: &str) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    loop {
        let (a, s) = (storefront(active.0, active.1).await, storefront(standby.0, standby.1).await);
        if a.is_some_and(|a| (SCALED..=6).contains(&a)) && s == Some(1) {
            println!("{what}: after {:.1} s", started.elapsed().as_secs_f64());
            return;
        }
        if Instant::now() > deadline {
            let log = op.log_text();
            let tail: Vec<&str> = log.lines().filter(|l| l.contains("autoscal") || l.contains("scaled")).collect();
            let tail = &tail[tail.len().saturating_sub(30)..];
            panic!(
                "{what}: timed out with {}={a:?}, {}={s:?}\nautoscaler log:\n{}",
                active.1,
                standby.1,
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start(name: &str, index: u8) -> Env {
    let cluster = LocalCluster::start(
        Options::new(name).index(index).pod_startup(Duration::from_millis(300)).cnpg_webhooks(true),
    )
    .await
    .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let env = Env { client: cluster.client(), kubeconfig: cluster.kubeconfig(), local: Some(cluster) };
    env.install_third_party().await;
    localcluster::install_crd_objects(&env.client, &[mall_crds::Mall::definition()], Duration::from_secs(60))
        .await
        .expect("Mall CRD");
    env
}

/// Installs the member identity in `member` and its kubeconfig Secret in the hub (through
/// `proxy` when given); returns the direct kubeconfig's text.
async fn connect(hub: &Env, member: &Env, secret: &str, proxy: Option<&localcluster::faults::FaultProxy>) -> String {
    let kubeconfig =
        install_member_identity(member.local.as_ref().expect("local"), &repo_root(), &[NS]).await.expect("identity");
    let text = match proxy {
        None => kubeconfig.clone(),
        Some(proxy) => {
            let path = member.local.as_ref().unwrap().dir().join(format!("{secret}.kubeconfig"));
            std::fs::write(&path, &kubeconfig).unwrap();
            std::fs::read_to_string(proxy.kubeconfig_for(&path).expect("proxied kubeconfig")).unwrap()
        }
    };
    put_kubeconfig_secret(&hub.client, NS, secret, "kubeconfig", &text).await.expect("kubeconfig Secret");
    kubeconfig
}

async fn get(malls: &Api<Mall>) -> Mall {
    malls.get(NAME).await.expect("the Mall")
}

async fn wait_mall(
    malls: &Api<Mall>,
    op: &OperatorProcess,
    what: &str,
    secs: u64,
    test: impl Fn(&Mall) -> bool,
) -> Mall {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(m) = malls.get_opt(NAME).await.ok().flatten().filter(|m| test(m)) {
            return m;
        }
        if Instant::now() > deadline {
            let status = malls.get_opt(NAME).await.ok().flatten().and_then(|m| m.status);
            let log = op.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!("{what}: timed out; status: {status:#?}\noperator log tail:\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn health(m: &Mall, region: &str) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.regions.iter().find(|r| r.name == region))
        .map_or(String::new(), |r| r.health.clone())
}

fn active(m: &Mall) -> (String, i64) {
    let s = m.status.clone().unwrap_or_default();
    (s.active_region.unwrap_or_default(), s.failover_epoch)
}

fn condition(m: &Mall, type_: &str) -> Option<(String, String, String)> {
    let c = m.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn dns_targets(hub: &Env) -> Vec<String> {
    mall_controllers::failover::dns::published_targets(&hub.client, NS, NAME).await
}

/// The sampler's findings.
#[derive(Default)]
struct Samples {
    /// Samples taken.
    taken: AtomicUsize,
    /// The most writable primaries of one shard seen at once.
    most: AtomicUsize,
    /// Milliseconds a stale-epoch primary claim was visible (summed over samples).
    stale_ms: AtomicU64,
    stop: AtomicBool,
}

/// Samples every shard Cluster of eu and us every 100 ms (module header).
async fn sample(clients: Vec<kube::Client>, samples: Arc<Samples>) {
    while !samples.stop.load(Ordering::Relaxed) {
        let mut by_shard: BTreeMap<String, Vec<(bool, i64)>> = BTreeMap::new();
        for client in &clients {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &cluster_resource());
            let Ok(Ok(list)) = tokio::time::timeout(Duration::from_millis(300), api.list(&ListParams::default())).await
            else {
                continue;
            };
            for o in list.items {
                let shard = mall_controllers::failover::probe::shard_of(&o);
                let writable =
                    shard.claims_primary() && shard.phase == mall_controllers::failover::probe::PHASE_HEALTHY;
                by_shard.entry(shard.index.to_string()).or_default().push((writable, shard.epoch.unwrap_or(0)));
            }
        }
        for members in by_shard.values() {
            let newest = members.iter().map(|m| m.1).max().unwrap_or(0);
            let writable = members.iter().filter(|m| m.0 && m.1 == newest).count();
            samples.most.fetch_max(writable, Ordering::Relaxed);
            if members.iter().any(|m| m.0 && m.1 < newest) {
                samples.stale_ms.fetch_add(100, Ordering::Relaxed);
            }
        }
        samples.taken.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a backup of the hub holds of the Mall: the Mall as stored (UID, status) and its Secrets.
struct Backup {
    mall: Value,
    secrets: Vec<k8s_openapi::api::core::v1::Secret>,
}

async fn backup(hub: &Env) -> Backup {
    let raw: Api<DynamicObject> =
        Api::namespaced_with(hub.client.clone(), NS, &kube::api::ApiResource::erase::<Mall>(&()));
    let mall = serde_json::to_value(raw.get(NAME).await.expect("the Mall")).unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(hub.client.clone(), NS);
    Backup { mall, secrets: secrets.list(&ListParams::default()).await.expect("Secrets").items }
}

/// Restores `backup` into `hub` as an etcd restore would: the Mall into storage (keeping its
/// UID and status), then its Secrets.
async fn restore(hub: &Env, backup: &Backup) {
    let key = localcluster::storage::storage_key(mall_crds::GROUP, "malls", NS, NAME);
    localcluster::storage::restore(hub.local.as_ref().unwrap(), &key, &backup.mall).await.expect("restoring the Mall");
    let malls: Api<Mall> = Api::namespaced(hub.client.clone(), NS);
    let uid = backup.mall["metadata"]["uid"].as_str().map(str::to_string);
    wait_until("the restored Mall served", Duration::from_secs(30), || async {
        malls.get_opt(NAME).await.ok().flatten().filter(|m| m.metadata.uid == uid).map(|_| ())
    })
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(hub.client.clone(), NS);
    for secret in &backup.secrets {
        let mut secret = secret.clone();
        let meta = &mut secret.metadata;
        (meta.uid, meta.resource_version, meta.creation_timestamp, meta.managed_fields) = (None, None, None, None);
        secrets.create(&Default::default(), &secret).await.expect("restoring a Secret");
    }
}

fn mallctl(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let bin = operator_bin().with_file_name("mallctl");
    let out = std::process::Command::new(bin)
        .args(["--kubeconfig", &kubeconfig.to_string_lossy(), "-n", NS])
        .args(args)
        .output()
        .expect("mallctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_and_switchover_across_three_clusters() {
    let (hub, eu, us) = tokio::join!(start("fo-hub", 4), start("fo-eu", 5), start("fo-us", 6));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&hub, OPERATOR_NS, &[NS], dir.path()).await;
    eu.namespace(NS, &[]).await;
    us.namespace(NS, &[]).await;
    // The hub reaches eu through a fault proxy (flapping health, a partition).
    let eu_proxy = eu.local.as_ref().unwrap().fault_proxy().await.expect("fault proxy");
    connect(&hub, &eu, "cluster-eu-kubeconfig", Some(&eu_proxy)).await;
    connect(&hub, &us, "cluster-us-kubeconfig", None).await;
    localcluster::gateway::publish(&eu.client, NS, "public", "127.0.10.1").await.expect("eu Gateway");
    localcluster::gateway::publish(&us.client, NS, "public", "127.0.20.1").await.expect("us Gateway");
    let store = tempfile::tempdir().unwrap();
    let sim = |client: kube::Client| {
        CnpgSimulator::spawn(
            client,
            SimulatorOptions {
                object_store_dir: Some(store.path().to_path_buf()),
                clock_scale: 10.0,
                ..SimulatorOptions::default()
            },
        )
    };
    let sims = [sim(eu.client.clone()), sim(us.client.clone())];
    // A real Prometheus scraping the storefront's request counter: the autoscaler sizes the
    // active region's storefront, in that region's member cluster, and follows a failover.
    let exporter = Exporter::start(NS, NAME, RATE).await;
    let prometheus = Prometheus::start(exporter.address, dir.path());
    let op = OperatorProcess::spawn(
        &kubeconfig,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", OPERATOR_NS, "--autoscale-interval", "2s"],
    );
    let malls: Api<Mall> = Api::namespaced(hub.client.clone(), NS);
    let mut doc = mall("automatic", &prometheus.url);
    doc["metadata"]["namespace"] = json!(NS);
    apply_yaml(&hub.client, None, &[doc.clone()]).await;

    let converged = |m: &Mall| mall_e2e::mall_ready(m) && health(m, "eu") == "Healthy" && health(m, "us") == "Healthy";
    let up = wait_mall(&malls, &op, "Ready with both regions Healthy", 180, converged).await;
    assert_eq!(active(&up), ("eu".to_string(), 0));
    wait_until("DNS at eu", Duration::from_secs(30), || async {
        (dns_targets(&hub).await == ["127.0.10.1"]).then_some(())
    })
    .await;
    let samples = Arc::new(Samples::default());
    let sampler = tokio::spawn(sample(vec![eu.client.clone(), us.client.clone()], samples.clone()));
    sized((&eu, "eu"), (&us, "us"), &op, "eu's storefront autoscaled in its member cluster, us's at standby size")
        .await;
    println!(
        "converged; storefront replicas: eu (active, autoscaled) {:?}, us (standby) {:?}",
        storefront(&eu, "eu").await,
        storefront(&us, "us").await
    );

    // Switchover eu -> us -> eu with tokens, through mallctl.
    let hub_kc = hub.kubeconfig.clone();
    for (to, epoch) in [("us", 1), ("eu", 2)] {
        let started = Instant::now();
        let (code, out, err) = mallctl(&hub_kc, &["switchover", NAME, "--to", to, "--wait", "--timeout", "3m"]);
        assert_eq!(code, 0, "switchover to {to}: {out}\n{err}\noperator log:\n{}", op.log_text());
        assert!(out.contains("RPO 0"), "{out}");
        let m = get(&malls).await;
        assert_eq!(active(&m), (to.to_string(), epoch));
        let last = m.status.clone().unwrap().last_failover.unwrap();
        assert_eq!((last.kind.as_str(), last.rpo.starts_with('0')), ("switchover", true));
        let clusters: Api<DynamicObject> = Api::namespaced_with(
            if to == "us" { us.client.clone() } else { eu.client.clone() },
            NS,
            &cluster_resource(),
        );
        for shard in 0..2 {
            let c = clusters.get(&format!("{NAME}-{to}-db-{shard}")).await.unwrap();
            assert!(c.data["status"]["lastPromotionToken"].is_string(), "shard {shard} promoted with a token: {c:?}");
        }
        println!("switchover to {to}: {:.1} s ({out})", started.elapsed().as_secs_f64());
        wait_mall(&malls, &op, "both Healthy after the switchover", 120, converged).await;
    }

    // Manual mode: eu dies, the failover is recommended, nothing moves.
    doc["spec"]["failover"]["mode"] = json!("manual");
    apply_yaml(&hub.client, None, &[doc.clone()]).await;
    let mut eu = eu;
    eu.local.as_mut().unwrap().kill();
    let m = wait_mall(&malls, &op, "FailoverRecommended", 60, |m| {
        condition(m, "FailoverRecommended").is_some_and(|c| c.0 == "True")
    })
    .await;
    println!("manual mode: {:?}", condition(&m, "FailoverRecommended"));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(active(&get(&malls).await), ("eu".to_string(), 2), "manual mode moved by itself");
    // ... until a person runs `mallctl failover`.
    let (code, out, err) = mallctl(&hub_kc, &["failover", NAME, "--to", "us", "--wait", "--timeout", "3m"]);
    assert_eq!(code, 0, "manual failover: {out}\n{err}\noperator log:\n{}", op.log_text());
    assert_eq!(active(&get(&malls).await), ("us".to_string(), 3));
    println!("manual mode, mallctl failover: {}", out.trim());
    eu.local.as_mut().unwrap().restart().await.expect("eu restarts");
    let rebuilt_in = |epoch: i64| {
        move |m: &Mall| {
            health(m, "eu") == "Healthy"
                && m.status
                    .as_ref()
                    .and_then(|s| s.regions.iter().find(|r| r.name == "eu"))
                    .is_some_and(|r| r.server_epoch == epoch)
        }
    };
    wait_mall(&malls, &op, "eu rebuilt after the manual failover", 180, rebuilt_in(3)).await;
    let (code, out, err) = mallctl(&hub_kc, &["switchover", NAME, "--to", "eu", "--wait", "--timeout", "3m"]);
    assert_eq!(code, 0, "switchover back to the rebuilt eu: {out}\n{err}");
    wait_mall(&malls, &op, "both Healthy on eu (epoch 4)", 120, converged).await;

    // A backup of the hub in epoch 4, restored into a second hub later on.
    let backup = backup(&hub).await;

    // Automatic: kill eu; us takes over.
    doc["spec"]["failover"]["mode"] = json!("automatic");
    apply_yaml(&hub.client, None, &[doc.clone()]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What the simulated eu primaries had written but not archived when they died: the data a
    // failover without a token loses (RPO), measured.
    let mut lost = Vec::new();
    eu.local.as_mut().unwrap().kill();
    let killed = Instant::now();
    for shard in 0..2 {
        let p = sims[0].positions(NS, &format!("{NAME}-eu-db-{shard}")).await.expect("eu positions");
        lost.push(p.written.saturating_sub(p.archived));
    }
    let after = wait_mall(&malls, &op, "us active after eu died", 120, |m| {
        active(m) == ("us".to_string(), 5)
            && m.status.as_ref().and_then(|s| s.last_failover.as_ref()).is_some_and(|l| l.completed.is_some())
    })
    .await;
    let measured = killed.elapsed();
    let record = after.status.clone().unwrap().last_failover.unwrap();
    println!(
        "failover: kill -> us active with every shard primary and its storefront Ready in {:.1} s (status RTO {} ms, \
         from the first failed probe); RPO: {}",
        measured.as_secs_f64(),
        record.rto_milliseconds.unwrap_or(-1),
        record.rpo
    );
    println!("failover: WAL written by the eu primaries but not archived at the kill (lost): {lost:?} bytes");
    wait_until("DNS at us", Duration::from_secs(30), || async {
        (dns_targets(&hub).await == ["127.0.20.1"]).then_some(())
    })
    .await;
    wait_until("us's storefront autoscaled after the failover", Duration::from_secs(90), || async {
        storefront(&us, "us").await.filter(|n| *n >= SCALED).map(|_| ())
    })
    .await;

    // eu returns: demoted on first contact, rebuilt from us into a new archive folder.
    eu.local.as_mut().unwrap().restart().await.expect("eu restarts");
    let back = wait_mall(&malls, &op, "eu rebuilt and Healthy", 180, rebuilt_in(5)).await;
    let eu_db: Api<DynamicObject> = Api::namespaced_with(eu.client.clone(), NS, &cluster_resource());
    let rebuilt = eu_db.get(&format!("{NAME}-eu-db-0")).await.unwrap();
    assert_eq!(rebuilt.data["spec"]["replica"]["primary"], format!("{NAME}-us-db-0"));
    assert_eq!(rebuilt.data["spec"]["plugins"][0]["parameters"]["serverName"], format!("{NAME}-eu-db-0-e5"));
    assert_eq!(rebuilt.data["spec"]["bootstrap"]["recovery"]["source"], format!("{NAME}-us-db-0"));
    assert_eq!(active(&back), ("us".to_string(), 5));
    sized((&us, "us"), (&eu, "eu"), &op, "the autoscaler on us, eu back at standby size").await;

    // A second operator with a stale view: a hub restored from the backup taken in epoch 4 (the
    // Mall with its UID and status, and its Secrets), running its own operator against the same
    // members. It would re-promote eu and demote us; the members' API servers refuse it, its
    // Mall says so, its Events name the refusal, and nothing in eu or us changes.
    let us_storefront = storefront(&us, "us").await;
    let stale_hub = start("fo-stale", 7).await;
    let stale_dir = tempfile::tempdir().unwrap();
    let stale_kc = install_operator_identity(&stale_hub, OPERATOR_NS, &[NS], stale_dir.path()).await;
    restore(&stale_hub, &backup).await;
    let stale_op = OperatorProcess::spawn(
        &stale_kc,
        &dir.path().join("stale-operator.log"),
        &["--leader-election-namespace", OPERATOR_NS],
    );
    let stale_malls: Api<Mall> = Api::namespaced(stale_hub.client.clone(), NS);
    let fenced = wait_mall(&stale_malls, &stale_op, "the stale operator fenced", 90, |m| {
        condition(m, "Degraded").is_some_and(|c| c.1 == "FencedByNewerEpoch")
    })
    .await;
    assert_eq!(active(&fenced), ("eu".to_string(), 4), "the restored hub's view");
    let message = condition(&fenced, "Degraded").unwrap().2;
    assert!(message.contains("fenced by a newer failover"), "{message}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(stale_hub.client.clone(), NS);
    // Its reconciler re-promoting eu, and its failover controller demoting us: both refused.
    for (what, words) in [
        ("reconciler", "in region eu refused by the failover epoch fence"),
        ("failover controller", "setting the role of Cluster global-shop-us-db-"),
    ] {
        let event =
            wait_until(&format!("the stale {what}'s FencedByNewerEpoch Event"), Duration::from_secs(30), || async {
                events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some("FencedByNewerEpoch")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME)
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains(words) && n.contains("fenced by a newer failover"))
                })
            })
            .await;
        println!("stale operator (hub restored at epoch 4), its {what} refused: {}", event.note.unwrap_or_default());
    }
    for (region, client) in [("eu", eu.client.clone()), ("us", us.client.clone())] {
        let db: Api<DynamicObject> = Api::namespaced_with(client, NS, &cluster_resource());
        for shard in 0..2 {
            let c = db.get(&format!("{NAME}-{region}-db-{shard}")).await.unwrap();
            assert_eq!(c.data["spec"]["replica"]["primary"], format!("{NAME}-us-db-{shard}"), "{region} {shard}");
            let epoch = c.metadata.annotations.as_ref().and_then(|a| a.get(EPOCH_ANNOTATION)).cloned();
            assert_eq!(epoch.as_deref(), Some("5"), "{region} shard {shard}");
        }
    }
    // Its view has us as the standby: it would have shrunk us's storefront to 1.
    let now = storefront(&us, "us").await;
    assert!(now >= Some(SCALED), "the stale operator resized us: {us_storefront:?} -> {now:?}");
    drop(stale_op);
    drop(stale_hub);

    // Back to eu by switchover; then eu's health flaps faster than the threshold: no failover.
    let (code, out, err) = mallctl(&hub_kc, &["switchover", NAME, "--to", "eu", "--wait", "--timeout", "3m"]);
    assert_eq!(code, 0, "switchover back to eu: {out}\n{err}");
    wait_mall(&malls, &op, "both Healthy on eu", 120, converged).await;
    sized((&eu, "eu"), (&us, "us"), &op, "the autoscaler back on eu, us at standby size").await;
    let flapping = Instant::now();
    while flapping.elapsed() < Duration::from_secs(18) {
        eu_proxy.set_rules(vec![localcluster::faults::FaultRule::status(503, 1.0)]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        eu_proxy.clear();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let m = get(&malls).await;
    assert_eq!(active(&m), ("eu".to_string(), 6), "flapping health moved the primary");
    println!("flapping eu for 18 s (3 s down / 3 s up, threshold 3 x 2 s): no failover");

    // A partition between hub and eu while a witness in us still sees eu: no failover, and a
    // condition says why.
    doc["spec"]["failover"]["requireWitness"] = json!(true);
    apply_yaml(&hub.client, None, &[doc.clone()]).await;
    let mut witness = std::process::Command::new(operator_bin().with_file_name("mall-witness"))
        .env("KUBECONFIG", &us.kubeconfig)
        .args(["--region", "us", "--namespace", NS, "--interval", "1s"])
        .arg(format!("--watch=eu={}", eu.kubeconfig.display()))
        .stderr(std::fs::File::create(dir.path().join("witness.log")).unwrap())
        .spawn()
        .expect("mall-witness starts");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(us.client.clone(), NS);
    wait_until("the witness Lease", Duration::from_secs(30), || async {
        leases.get_opt("mallctl-witness-eu").await.ok().flatten().map(|_| ())
    })
    .await;
    eu_proxy.set_rules(vec![localcluster::faults::FaultRule::status(503, 1.0)]);
    let blocked = wait_mall(&malls, &op, "FailoverBlocked/WitnessSeesPrimary", 60, |m| {
        condition(m, "FailoverBlocked").is_some_and(|c| c.0 == "True" && c.1 == "WitnessSeesPrimary")
    })
    .await;
    println!("partition: {:?}", condition(&blocked, "FailoverBlocked"));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(active(&get(&malls).await), ("eu".to_string(), 6), "a partition caused a failover");
    eu_proxy.clear();
    let _ = witness.kill();
    let _ = witness.wait();
    wait_mall(&malls, &op, "eu Healthy after the partition", 60, converged).await;

    samples.stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let (taken, most, stale) = (
        samples.taken.load(Ordering::Relaxed),
        samples.most.load(Ordering::Relaxed),
        samples.stale_ms.load(Ordering::Relaxed),
    );
    println!(
        "sampler: {taken} samples, at most {most} writable primary per shard; a stale-epoch primary claim was visible for ~{stale} ms"
    );
    assert!(taken > 100, "the sampler barely ran: {taken}");
    assert_eq!(most, 1, "two writable primaries of one shard at once");
    // CloudNativePG's webhooks admitted every CNPG object the operator wrote: a refusal would be
    // a `RefusedByCloudNativePG` Event, or a failover Event quoting the webhook.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(hub.client.clone(), NS);
    let listed = events.list(&ListParams::default()).await.expect("the hub's Events").items;
    assert!(listed.len() > 5, "too few Events to judge: {}", listed.len());
    let refused: Vec<String> = listed
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("RefusedByCloudNativePG")
                || e.note.as_deref().is_some_and(|n| n.contains("admission webhook") && n.contains("cnpg.io"))
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();
    assert!(refused.is_empty(), "CloudNativePG refused writes: {refused:#?}");
    drop(sims);
}

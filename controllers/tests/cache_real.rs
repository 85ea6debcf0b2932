//! The cache tier with the real programs (redis-server/redis-cli 7, which read the same
//! configuration as Valkey): the generated `cache.conf` and `cluster.sh` from the built
//! ConfigMap bring a cluster up from nothing on 127.0.0.1, serve a cluster-mode client, fail
//! over, repair themselves, refuse strangers and grow without losing keys.

#[path = "../examples/support/dataplane.rs"]
mod dataplane;

use dataplane::CacheCluster;
use mall_controllers::build::{Scope, cache};
use serde_json::json;
use std::time::Duration;

const SHARDS: u16 = 3;

fn mall(shards: u16) -> mall_crds::Mall {
    let value = json!({
        "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"},
        "spec": {"storefront": {"image": "shop:1"}, "database": {},
            "cache": {"shards": shards, "replicasPerShard": 1, "maxMemory": "64Mi"}},
    });
    mall_controllers::validate::validate_value(&value, None).unwrap_or_else(|e| panic!("{e}"))
}

/// A loopback cluster from the built ConfigMap, 3 shards × (1 primary + 1 replica), all Ready.
fn cluster(max_shards: u16) -> CacheCluster {
    let mall = mall(SHARDS);
    let scope = &Scope::all(&mall)[0];
    let spec = mall.spec.cache.as_ref().unwrap();
    let config = serde_json::to_value(cache::config_map(scope, spec).unwrap()).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let bytes: [u8; 32] = std::array::from_fn(|i| (nanos >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(37));
    let secrets = cache::CacheSecrets::from_random_bytes(&bytes);
    let mut c = CacheCluster::new(&config["data"], secrets.password(), max_shards, Some(2000));
    for shard in 0..SHARDS {
        for ordinal in 0..2 {
            c.start(shard, ordinal);
        }
    }
    let took = c.wait_ready(Duration::from_secs(90));
    eprintln!("cluster of {SHARDS}x2 nodes ready in {took:?}");
    c
}

fn write_keys(c: &CacheCluster, entry: (u16, u16), prefix: &str, n: usize) {
    let commands: String = (0..n).map(|i| format!("SET {prefix}:{i} v{i}\n")).collect();
    let out = c.session(entry.0, entry.1, &commands);
    let ok = out.iter().filter(|l| *l == "OK").count();
    assert_eq!(ok, n, "writes through {entry:?}: {:?}", out.iter().filter(|l| *l != "OK").take(5).collect::<Vec<_>>());
}

fn missing_keys(c: &CacheCluster, entry: (u16, u16), prefix: &str, n: usize) -> Vec<usize> {
    let commands: String = (0..n).map(|i| format!("GET {prefix}:{i}\n")).collect();
    let out = c.session(entry.0, entry.1, &commands);
    let missing: Vec<usize> =
        (0..n).filter(|i| out.get(*i).map(String::as_str) != Some(format!("v{i}").as_str())).collect();
    if let Some(first) = missing.first() {
        eprintln!("{} of {n} keys missing through {entry:?}; key {first} read {:?}", missing.len(), out.get(*first));
    }
    missing
}

/// Every key reads back, within 20 s: like a cluster client, a read after a topology change is
/// retried until the slot map the nodes hand out has converged. A lost key fails the test.
fn all_readable(c: &CacheCluster, entry: (u16, u16), prefix: &str, n: usize, when: &str) {
    dataplane::wait_for(
        &format!("every {prefix}:* key readable {when}"),
        Duration::from_secs(20),
        Duration::from_millis(500),
        || missing_keys(c, entry, prefix, n).is_empty(),
    );
}

fn dbsize(c: &CacheCluster, shard: u16, ordinal: u16) -> u64 {
    c.cmd(shard, ordinal, &["dbsize"]).parse().unwrap_or(0)
}

/// Every primary acknowledged by its replica (so a failover loses nothing written before).
fn wait_replicated(c: &CacheCluster, primaries: &[(u16, u16)]) {
    for (s, o) in primaries {
        assert_eq!(c.cmd(*s, *o, &["wait", "1", "5000"]), "1", "replica of {s}/{o} did not acknowledge");
    }
}

#[test]
fn cluster_forms_serves_fails_over_and_refuses_strangers() {
    let mut c = cluster(SHARDS);

    // Strangers: no credentials, the default user, a wrong password.
    let port = c.port(0, 0).to_string();
    let cli = dataplane::program("redis-cli");
    let anon = std::process::Command::new(&cli).args(["-h", "127.0.0.1", "-p", &port, "get", "x"]).output().unwrap();
    assert!(String::from_utf8_lossy(&anon.stdout).contains("NOAUTH"), "anonymous: {anon:?}");
    for (user, pass) in [("default", ""), ("default", "x"), ("mall", "wrong")] {
        let out = std::process::Command::new(&cli)
            .args(["--no-auth-warning", "-h", "127.0.0.1", "-p", &port, "--user", user, "--pass", pass, "ping"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("PONG") && (text.contains("WRONGPASS") || text.contains("AUTH")), "{user}: {text}");
    }
    assert_eq!(c.cmd(0, 0, &["ping"]), "PONG");

    // Writes and reads across all shards through one cluster-aware session.
    write_keys(&c, (0, 0), "k", 300);
    assert!(missing_keys(&c, (2, 1), "k", 300).is_empty());
    for shard in 0..SHARDS {
        assert!(dbsize(&c, shard, 0) > 50, "shard {shard} holds {} keys", dbsize(&c, shard, 0));
    }
    assert_eq!(
        c.cmd(0, 0, &["cluster", "info"]).lines().find(|l| l.starts_with("cluster_size")).map(str::trim),
        Some("cluster_size:3")
    );
    wait_replicated(&c, &[(0, 0), (1, 0), (2, 0)]);

    // Shard 1's primary dies: its replica is promoted and the client goes on.
    c.kill(1, 0);
    let took =
        dataplane::wait_for("shard 1 replica promoted", Duration::from_secs(30), Duration::from_millis(100), || {
            c.replication(1, 1, "role").as_deref() == Some("master")
        });
    eprintln!("shard 1 failover in {took:?}");
    dataplane::wait_for("writes accepted after failover", Duration::from_secs(20), Duration::from_millis(200), || {
        c.session(0, 0, "SET after:1 v1\n").first().map(String::as_str) == Some("OK")
    });
    all_readable(&c, (0, 0), "k", 300, "after failover");
    write_keys(&c, (2, 0), "f", 100);

    // The old primary restarts with its data dir (container restart): it rejoins as a replica.
    c.start(1, 0);
    dataplane::wait_for("old primary rejoins as replica", Duration::from_secs(30), Duration::from_millis(200), || {
        c.replication(1, 0, "role").as_deref() == Some("slave") && c.ready(1, 0)
    });

    // Shard 2's primary dies and comes back with an empty data dir (pod recreated, no volume):
    // cluster.sh finds the promoted replica of its shard and replicates it.
    wait_replicated(&c, &[(2, 0)]);
    c.kill(2, 0);
    dataplane::wait_for("shard 2 replica promoted", Duration::from_secs(30), Duration::from_millis(100), || {
        c.replication(2, 1, "role").as_deref() == Some("master")
    });
    c.start_fresh(2, 0);
    dataplane::wait_for(
        "recreated node replicates its shard",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            c.replication(2, 0, "role").as_deref() == Some("slave")
                && c.replication(2, 0, "master_port").as_deref() == Some(c.port(2, 1).to_string().as_str())
                && c.ready(2, 0)
        },
    );
    assert_eq!(dbsize(&c, 2, 0), dbsize(&c, 2, 1), "recreated replica did not sync\n{}", c.log(2, 0));
    all_readable(&c, (1, 0), "k", 300, "after the rejoins");
    all_readable(&c, (0, 1), "f", 100, "after the rejoins");

    // A planned stop (the pod's preStop hook): shard 0's primary hands over to its replica first.
    let out = c.script(0, 0, "prestop").output().unwrap();
    assert!(out.status.success(), "prestop: {out:?}");
    assert_eq!(c.replication(0, 0, "role").as_deref(), Some("slave"));
    assert_eq!(c.replication(0, 1, "role").as_deref(), Some("master"));
    all_readable(&c, (0, 0), "k", 300, "after a planned handover");

    // The password is in no node's log (script and server output).
    for shard in 0..SHARDS {
        for ordinal in 0..2 {
            let log = c.log(shard, ordinal);
            assert!(!log.is_empty() && !log.contains(&c.password), "node {shard}/{ordinal} log");
        }
    }
}

#[test]
fn scaling_replicas_and_shards_keeps_every_key() {
    let mut c = cluster(SHARDS + 1);
    write_keys(&c, (0, 0), "s", 500);
    wait_replicated(&c, &[(0, 0), (1, 0), (2, 0)]);

    // Scale-up of replicas: a third pod per shard joins and syncs from its primary.
    for shard in 0..SHARDS {
        c.start(shard, 2);
    }
    c.wait_ready(Duration::from_secs(60));
    for shard in 0..SHARDS {
        assert_eq!(c.replication(shard, 2, "role").as_deref(), Some("slave"));
        assert_eq!(c.replication(shard, 0, "connected_slaves").as_deref(), Some("2"));
        assert_eq!(dbsize(&c, shard, 2), dbsize(&c, shard, 0), "shard {shard} new replica");
    }
    assert!(missing_keys(&c, (1, 2), "s", 500).is_empty());

    // Scale-up of shards: shard 3's first pod joins as an empty primary and rebalances slots
    // onto itself; keys move with MIGRATE, none is lost.
    c.start(SHARDS, 0);
    let took =
        dataplane::wait_for("new shard owns slots", Duration::from_secs(120), Duration::from_millis(500), || {
            dbsize(&c, SHARDS, 0) > 0 && c.log(SHARDS, 0).contains("slots rebalanced")
        });
    eprintln!("shard added and rebalanced in {took:?}");
    all_readable(&c, (0, 0), "s", 500, "after the rebalance");
    let total: u64 = (0..=SHARDS).map(|s| dbsize(&c, s, if s == SHARDS { 0 } else { c.primary_ordinal(s) })).sum();
    assert_eq!(total, 500);
}

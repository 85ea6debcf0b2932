use super::*;
use crate::build::children;
use crate::build::kinds::resource_value;
use crate::build::names::{MALL_LABEL, REGION_LABEL};
use crate::cnpg::{Cluster, ObjectStore, Pooler, ScheduledBackup};
use crate::testing::mall_from;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::path::Path;

/// An example Mall from `/examples`, validated, with a uid so children get owner references.
fn example(file: &str) -> Mall {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    value["metadata"]["uid"] = json!("uid-1");
    crate::validate::validate_value(&value, None).unwrap_or_else(|e| panic!("{file} is invalid: {e}"))
}

fn id(o: &Value) -> String {
    format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", objects.iter().map(id).collect::<Vec<_>>()))
}

/// Parses `value` as `T` and serializes it back: the built object is exactly a `T`.
fn round_trip<T>(value: &Value) -> Value
where
    T: Serialize + DeserializeOwned + kube::Resource<DynamicType = ()>,
{
    let typed: T =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{} is no {}: {e}", id(value), T::kind(&())));
    resource_value(&typed).unwrap()
}

fn assert_round_trips(objects: &[Value]) {
    for o in objects {
        let back = match o["kind"].as_str() {
            Some("Cluster") => round_trip::<Cluster>(o),
            Some("Pooler") => round_trip::<Pooler>(o),
            Some("ScheduledBackup") => round_trip::<ScheduledBackup>(o),
            Some("ObjectStore") => round_trip::<ObjectStore>(o),
            Some("ConfigMap") => round_trip::<ConfigMap>(o),
            Some("NetworkPolicy") => round_trip::<NetworkPolicy>(o),
            other => panic!("unexpected kind {other:?}"),
        };
        assert_eq!(&back, o, "{} changes through its type", id(o));
    }
}

#[test]
fn every_example_builds_the_right_objects_with_owner_and_labels() {
    // file -> (regions, shards, poolers per region, scheduled backups per region, object stores per region)
    let expected = [
        ("minimal.yaml", (1, 1, 1, 0, 0)),
        ("production.yaml", (1, 4, 4, 4, 1)),
        ("double-eleven.yaml", (2, 2, 2, 2, 1)),
        // Each member cluster also holds the other region's ObjectStore (its members read it).
        ("multi-cluster.yaml", (2, 2, 2, 2, 2)),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = expected.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every example needs an expectation here");
    for (file, (regions, shards, poolers, backups, stores)) in expected {
        let mall = example(file);
        let objects = tier(&mall).unwrap();
        let count = |kind: &str| of_kind(&objects, kind).len();
        assert_eq!(count("Cluster"), regions * shards, "{file}");
        assert_eq!(count("Pooler"), regions * poolers, "{file}");
        assert_eq!(count("ScheduledBackup"), regions * backups, "{file}");
        assert_eq!(count("ObjectStore"), regions * stores, "{file}");
        assert_eq!(count("ConfigMap"), regions, "{file}");
        assert_eq!(count("NetworkPolicy"), regions * shards, "{file}");
        assert_eq!(objects.len(), regions * (2 * shards + poolers + backups + stores + 1), "{file}");
        let uid = mall.metadata.uid.as_deref();
        for o in &objects {
            let member = !o["metadata"]["labels"][crate::build::names::REGION_LABEL].is_null()
                && mall.spec.regions.iter().any(|r| {
                    Some(r.name.as_str()) == o["metadata"]["labels"][crate::build::names::REGION_LABEL].as_str()
                        && r.cluster.is_some()
                });
            assert_eq!(o["metadata"]["labels"][crate::build::names::MALL_UID_LABEL].as_str(), uid, "{file} {}", id(o));
            if member {
                // In a member cluster the Mall does not exist: the UID label, no owner reference.
                assert!(o["metadata"]["ownerReferences"].is_null(), "{file} {}", id(o));
                continue;
            }
            let owner = &o["metadata"]["ownerReferences"][0];
            assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("Mall"), uid), "{file} {}", id(o));
            assert_eq!(owner["controller"], true);
            assert_eq!(o["metadata"]["namespace"].as_str(), mall.metadata.namespace.as_deref());
            assert_eq!(o["metadata"]["labels"][MALL_LABEL].as_str(), mall.metadata.name.as_deref());
            assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/component"], COMPONENT);
        }
        for scope in Scope::all(&mall) {
            for shard in 0..scope.mall.spec.database.shards {
                let name = format!("{}-db-{shard}", scope.prefix());
                let c = find(&objects, "Cluster", &name);
                assert_eq!(c["metadata"]["labels"][SHARD_LABEL], shard.to_string());
                assert_eq!(c["metadata"]["labels"][REGION_LABEL].as_str(), scope.region);
                if poolers > 0 {
                    let p = find(&objects, "Pooler", &format!("{name}-pooler-rw"));
                    assert_eq!(p["spec"]["cluster"]["name"], name.as_str());
                }
                if backups > 0 {
                    find(&objects, "ScheduledBackup", &name);
                }
            }
            find(&objects, "ConfigMap", &format!("{}-shardmap", scope.prefix()));
        }
        assert_round_trips(&objects);
    }
}

#[test]
fn production_cluster_follows_the_spec() {
    let mall = example("production.yaml");
    let objects = tier(&mall).unwrap();
    let c = find(&objects, "Cluster", "shop-db-3");
    assert_eq!(c["apiVersion"], "postgresql.cnpg.io/v1");
    let spec = &c["spec"];
    assert_eq!(spec["instances"], 3);
    assert_eq!(spec["imageName"], "ghcr.io/cloudnative-pg/postgresql:17-standard-trixie");
    assert_eq!(spec["storage"], json!({"size": "50Gi", "storageClass": "fast-ssd"}));
    assert_eq!(
        spec["resources"],
        json!({"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}})
    );
    assert_eq!(
        spec["postgresql"]["parameters"],
        json!({"max_connections": "400", "shared_buffers": "2GB", "work_mem": "16MB"})
    );
    assert_eq!(spec["postgresql"]["synchronous"], json!({"method": "any", "number": 1, "dataDurability": "required"}));
    assert_eq!(
        spec["affinity"],
        json!({"enablePodAntiAffinity": true, "topologyKey": "topology.kubernetes.io/zone", "podAntiAffinityType": "preferred"})
    );
    assert_eq!(spec["bootstrap"], json!({"initdb": {"database": "app", "owner": "app"}}));
    assert_eq!(
        spec["plugins"],
        json!([{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true,
                "parameters": {"barmanObjectName": "shop-db-backup"}}])
    );
    assert_eq!(spec["inheritedMetadata"]["labels"], json!({"mallctl.io/mall": "shop", "mallctl.io/shard": "3"}));
    assert!(spec.get("backup").is_none(), "in-tree barmanObjectStore is deprecated");
}

#[test]
fn minimal_cluster_has_no_backup_wiring_and_takes_defaults() {
    let objects = tier(&example("minimal.yaml")).unwrap();
    let spec = &find(&objects, "Cluster", "corner-shop-db-0")["spec"];
    assert_eq!(spec["instances"], 3);
    assert_eq!(spec["storage"], json!({"size": "10Gi"}));
    assert!(spec.get("plugins").is_none());
    assert!(spec.get("resources").is_none());
    assert_eq!(spec["postgresql"], json!({}));
    assert!(of_kind(&objects, "ObjectStore").is_empty() && of_kind(&objects, "ScheduledBackup").is_empty());
}

#[test]
fn versions_durability_and_resources_map_onto_the_cluster() {
    let mall = mall_from(json!({"database": {"postgresVersion": 14, "instancesPerShard": 5,
        "synchronous": {"number": 2, "dataDurability": "preferred"},
        "resources": {"requests": {"memory": "1Gi"}}}}));
    let c = cluster(&Scope::all(&mall)[0], 0);
    assert_eq!(c.spec.image_name.as_deref(), Some("ghcr.io/cloudnative-pg/postgresql:14-standard-trixie"));
    assert_eq!(c.spec.instances, 5);
    let v = resource_value(&c).unwrap();
    assert_eq!(
        v["spec"]["postgresql"]["synchronous"],
        json!({"method": "any", "number": 2, "dataDurability": "preferred"})
    );
    assert_eq!(v["spec"]["resources"], json!({"requests": {"memory": "1Gi"}}));
    assert_eq!(image_name(18), "ghcr.io/cloudnative-pg/postgresql:18-standard-trixie");
}

#[test]
fn object_store_is_per_region_with_credentials_compression_encryption_retention() {
    let objects = tier(&example("production.yaml")).unwrap();
    let os = find(&objects, "ObjectStore", "shop-db-backup");
    assert_eq!(os["apiVersion"], "barmancloud.cnpg.io/v1");
    assert_eq!(os["spec"]["retentionPolicy"], "30d");
    let conf = &os["spec"]["configuration"];
    assert_eq!(conf["destinationPath"], "s3://shop-backups/postgres/default/");
    assert_eq!(conf["endpointURL"], "https://s3.eu-central-1.amazonaws.com");
    assert_eq!(
        conf["s3Credentials"],
        json!({"accessKeyId": {"name": "shop-backup-s3", "key": "ACCESS_KEY_ID"},
               "secretAccessKey": {"name": "shop-backup-s3", "key": "ACCESS_SECRET_KEY"}})
    );
    assert_eq!(conf["wal"], json!({"compression": "gzip", "encryption": "AES256"}));
    assert_eq!(conf["data"], json!({"compression": "gzip", "encryption": "AES256"}));
    assert!(conf.get("serverName").is_none(), "the plugin rejects configuration.serverName");
    assert_eq!(
        os["spec"]["instanceSidecarConfiguration"]["env"],
        json!([{"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"}])
    );

    // Regions: one store each, own folder, and in each member cluster the other region's store
    // too; encryption defaults to AES256; no region, no env.
    let objects = tier(&example("multi-cluster.yaml")).unwrap();
    let paths: Vec<&str> = of_kind(&objects, "ObjectStore")
        .iter()
        .filter_map(|o| o["spec"]["configuration"]["destinationPath"].as_str())
        .collect();
    let (eu, us) = ("s3://global-shop-backups/pg/eu/", "s3://global-shop-backups/pg/us/");
    assert_eq!(paths, [eu, us, us, eu]);
    let us = find(&objects, "ObjectStore", "global-shop-us-db-backup");
    assert_eq!(us["spec"]["configuration"]["data"]["encryption"], "AES256");
    assert!(us["spec"].get("instanceSidecarConfiguration").is_none());
    let plugin = &find(&objects, "Cluster", "global-shop-us-db-1")["spec"]["plugins"][0];
    assert_eq!(plugin["parameters"]["barmanObjectName"], "global-shop-us-db-backup");
}

#[test]
fn encryption_kms_and_none() {
    let backup = |encryption: &str| {
        mall_from(json!({"database": {"backup": {"encryption": encryption,
            "objectStore": {"destinationPath": "s3://bucket", "credentials": {"secretName": "s3",
                "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"}}}}}))
    };
    let kms = backup("aws:kms");
    let os = resource_value(&object_store(&Scope::all(&kms)[0], kms.spec.database.backup.as_ref().unwrap())).unwrap();
    assert_eq!(os["spec"]["configuration"]["wal"]["encryption"], "aws:kms");
    assert_eq!(os["spec"]["configuration"]["data"]["encryption"], "aws:kms");
    assert_eq!(os["spec"]["configuration"]["destinationPath"], "s3://bucket/default/");
    assert_eq!(os["spec"]["configuration"]["s3Credentials"]["accessKeyId"], json!({"name": "s3", "key": "id"}));
    assert_eq!(os["spec"]["configuration"]["s3Credentials"]["secretAccessKey"], json!({"name": "s3", "key": "secret"}));
    let none = backup("none");
    let os = resource_value(&object_store(&Scope::all(&none)[0], none.spec.database.backup.as_ref().unwrap())).unwrap();
    assert_eq!(os["spec"]["configuration"]["wal"], json!({"compression": "gzip"}));
    assert_eq!(os["spec"]["configuration"]["data"], json!({"compression": "gzip"}));
}

#[test]
fn scheduled_backup_uses_the_plugin_on_the_spec_schedule() {
    let objects = tier(&example("production.yaml")).unwrap();
    let sb = find(&objects, "ScheduledBackup", "shop-db-2");
    assert_eq!(
        sb["spec"],
        json!({"schedule": "0 30 2 * * *", "cluster": {"name": "shop-db-2"}, "method": "plugin",
               "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"},
               "backupOwnerReference": "self", "immediate": true})
    );
    assert_eq!(sb["metadata"]["labels"][SHARD_LABEL], "2");
}

#[test]
fn pooler_follows_pooling_and_can_be_disabled() {
    let objects = tier(&example("production.yaml")).unwrap();
    let p = find(&objects, "Pooler", "shop-db-1-pooler-rw");
    assert_eq!(
        p["spec"],
        json!({"cluster": {"name": "shop-db-1"}, "type": "rw", "instances": 2,
               "pgbouncer": {"poolMode": "transaction",
                             "parameters": {"max_client_conn": "2000", "default_pool_size": "25"}}})
    );
    let session = mall_from(json!({"database": {"pooling": {"mode": "session"}}}));
    assert_eq!(
        resource_value(&pooler(&Scope::all(&session)[0], 0)).unwrap()["spec"]["pgbouncer"]["poolMode"],
        "session"
    );

    let off = mall_from(json!({"database": {"shards": 2, "pooling": {"enabled": false}}}));
    let objects = tier(&off).unwrap();
    assert!(of_kind(&objects, "Pooler").is_empty());
    let map: Value =
        serde_json::from_str(find(&objects, "ConfigMap", "shop-shardmap")["data"]["shards.json"].as_str().unwrap())
            .unwrap();
    assert_eq!(map[1]["pooler"], Value::Null);
    assert_eq!(map[1]["write"], "shop-db-1-rw");
}

#[test]
fn shard_map_lists_every_shard_and_the_rule() {
    let objects = tier(&example("double-eleven.yaml")).unwrap();
    let name = of_kind(&objects, "ConfigMap")[1]["metadata"]["name"].as_str().unwrap().to_string();
    let cm = find(&objects, "ConfigMap", &name);
    let prefix = name.trim_end_matches("-shardmap");
    assert!(prefix.ends_with("-west"), "{name}");
    assert_eq!(cm["data"]["shards"], "2");
    assert_eq!(cm["data"]["hash"], "jump-fnv1a64");
    assert_eq!(cm["data"]["database"], "app");
    let map: Value = serde_json::from_str(cm["data"]["shards.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        map[1],
        json!({"shard": 1, "cluster": format!("{prefix}-db-1"), "rw": format!("{prefix}-db-1-rw"),
               "ro": format!("{prefix}-db-1-ro"), "r": format!("{prefix}-db-1-r"),
               "pooler": format!("{prefix}-db-1-pooler-rw"), "write": format!("{prefix}-db-1-pooler-rw"),
               // Standby regions: the shard's credentials Secret shared by every region.
               "secret": "singles-day-db-1-app", "database": "app", "port": 5432})
    );
    assert_eq!(map.as_array().unwrap().len(), 2);
}

#[test]
fn longest_names_fit_cloudnative_pg_and_dns_limits() {
    let mall =
        mall_from(json!({"database": {"shards": 256}, "regions": [{"name": "abcdefghijkl", "role": "primary"}]}));
    let mut mall = mall;
    mall.metadata.name = Some("a".repeat(30));
    let scope = &Scope::all(&mall)[0];
    assert_eq!(cluster_name(scope, 255).len(), 50, "CloudNativePG refuses Cluster names over 50");
    assert!(pooler_name(scope, 255).len() <= 63);
    assert!(object_store_name(scope).len() <= 63 && shard_map_name(scope).len() <= 63);
}

#[test]
fn children_include_the_database_tier() {
    let mall = mall_from(json!({"database": {"shards": 2}}));
    let ids: Vec<String> = children(&mall).unwrap().iter().map(id).collect();
    for want in
        ["NetworkPolicy/shop-db-0", "Cluster/shop-db-1", "Pooler/shop-db-1-pooler-rw", "ConfigMap/shop-shardmap"]
    {
        assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
    }
}

#[test]
fn autoscaled_clusters_are_marked_and_keep_their_initial_size() {
    let mall = mall_from(json!({"database": {"shards": 2, "instancesPerShard": 2},
        "autoscaling": {"prometheus": {"url": "http://p:9090"},
            "database": {"min": 1, "max": 4, "targetPerReplica": 100}}}));
    let scope = &Scope::all(&mall)[0];
    let c = cluster(scope, 1);
    assert_eq!(c.spec.instances, 2);
    assert_eq!(c.metadata.annotations.unwrap()[crate::build::names::AUTOSCALED_ANNOTATION], "spec.instances");
    let storefront_only = mall_from(json!({"autoscaling": {"prometheus": {"url": "http://p:9090"}}}));
    assert_eq!(cluster(&Scope::all(&storefront_only)[0], 0).metadata.annotations, None);
}

#[test]
fn regions_form_a_distributed_topology_through_the_object_store() {
    let objects = tier(&example("multi-cluster.yaml")).unwrap();
    let eu = find(&objects, "Cluster", "global-shop-eu-db-1");
    let us = find(&objects, "Cluster", "global-shop-us-db-1");
    for member in [eu, us] {
        assert_eq!(member["metadata"]["annotations"]["mallctl.io/failover-epoch"], "0");
        let names: Vec<&str> =
            member["spec"]["externalClusters"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(names, ["global-shop-eu-db-1", "global-shop-us-db-1"]);
        assert_eq!(member["spec"]["replica"]["primary"], "global-shop-eu-db-1");
    }
    assert_eq!(
        us["spec"]["externalClusters"][0]["plugin"],
        json!({"name": "barman-cloud.cloudnative-pg.io",
            "parameters": {"barmanObjectName": "global-shop-eu-db-backup", "serverName": "global-shop-eu-db-1"}})
    );
    // The initial primary bootstraps with initdb; the standby recovers from it and follows it.
    assert!(eu["spec"]["bootstrap"]["initdb"].is_object() && eu["spec"]["bootstrap"].get("recovery").is_none());
    assert_eq!(us["spec"]["bootstrap"]["recovery"]["source"], "global-shop-eu-db-1");
    // One application role Secret per shard, the same in every member.
    assert_eq!(eu["spec"]["bootstrap"]["initdb"]["secret"]["name"], "global-shop-db-1-app");
    assert_eq!(us["spec"]["bootstrap"]["recovery"]["secret"]["name"], "global-shop-db-1-app");
    let maps = of_kind(&objects, "ConfigMap");
    for map in maps {
        let shards: Value = serde_json::from_str(map["data"]["shards.json"].as_str().unwrap()).unwrap();
        assert_eq!(shards[1]["secret"], "global-shop-db-1-app", "{}", map["metadata"]["name"]);
    }
    assert_eq!(us["spec"]["replica"]["source"], "global-shop-eu-db-1");
    assert_eq!(us["spec"]["replica"]["self"], "global-shop-us-db-1");
    assert_eq!(eu["spec"]["replica"]["source"], "global-shop-us-db-1");
    // Epoch 0: archives keep the plugin's default folder (the Cluster name).
    assert!(us["spec"]["plugins"][0]["parameters"].get("serverName").is_none());
    // One-region Malls are unchanged: no replica, no external clusters, no epoch.
    let single = tier(&example("production.yaml")).unwrap();
    for cluster in of_kind(&single, "Cluster") {
        assert!(cluster["spec"].get("replica").is_none() && cluster["spec"].get("externalClusters").is_none());
        assert!(cluster["metadata"]["annotations"].get("mallctl.io/failover-epoch").is_none());
    }
}

#[test]
fn a_member_rebuilt_after_a_failover_archives_to_a_new_folder_and_recovers_from_the_new_primary() {
    use mall_crds::status::{MallStatus, RegionStatus};
    let mut mall = example("multi-cluster.yaml");
    mall.status = Some(MallStatus {
        active_region: Some("us".into()),
        failover_epoch: 1,
        regions: vec![RegionStatus {
            name: "eu".into(),
            server_epoch: 1,
            seeded_from: Some("us".into()),
            ..RegionStatus::default()
        }],
        ..MallStatus::default()
    });
    let objects = tier(&mall).unwrap();
    let eu = find(&objects, "Cluster", "global-shop-eu-db-0");
    assert_eq!(eu["spec"]["plugins"][0]["parameters"]["serverName"], "global-shop-eu-db-0-e1");
    assert_eq!(eu["spec"]["bootstrap"]["recovery"]["source"], "global-shop-us-db-0");
    assert_eq!(eu["spec"]["replica"]["primary"], "global-shop-us-db-0");
    assert_eq!(eu["metadata"]["annotations"]["mallctl.io/failover-epoch"], "1");
    let us = find(&objects, "Cluster", "global-shop-us-db-0");
    assert_eq!(us["spec"]["externalClusters"][0]["plugin"]["parameters"]["serverName"], "global-shop-eu-db-0-e1");
}

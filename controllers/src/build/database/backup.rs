//! Backups through the Barman Cloud Plugin: the region's `ObjectStore` and each shard's
//! `ScheduledBackup`.
//!
//! Contract: pure; only called with `spec.database.backup` set. One `ObjectStore` per region,
//! shared by its shards: `destinationPath` = the spec's path + `<region or "default">/`, and
//! since the plugin's archive `serverName` defaults to the Cluster name, shard `i` writes below
//! `<destinationPath>/<prefix>-db-<i>/` (no two shards, no two regions share a folder). S3
//! credentials from the spec's Secret, gzip and server-side encryption (`none` omits it) for WAL
//! and base backups, `retentionPolicy` = the spec's retention, the bucket region as the sidecar's
//! `AWS_DEFAULT_REGION`. Each `ScheduledBackup` takes a base backup with the plugin on the spec's
//! six-field schedule, immediately once, owning its `Backup`s.

use super::{BARMAN_PLUGIN, Scope, cluster_name, object_store_name, shard_meta};
use crate::cnpg::objectstore::{
    ObjectStore, ObjectStoreConfiguration, ObjectStoreConfigurationData, ObjectStoreConfigurationDataCompression,
    ObjectStoreConfigurationDataEncryption, ObjectStoreConfigurationS3Credentials,
    ObjectStoreConfigurationS3CredentialsAccessKeyId, ObjectStoreConfigurationS3CredentialsSecretAccessKey,
    ObjectStoreConfigurationWal, ObjectStoreConfigurationWalCompression, ObjectStoreConfigurationWalEncryption,
    ObjectStoreInstanceSidecarConfiguration, ObjectStoreInstanceSidecarConfigurationEnv, ObjectStoreSpec,
};
use crate::cnpg::scheduledbackup::{
    ScheduledBackup, ScheduledBackupBackupOwnerReference, ScheduledBackupCluster, ScheduledBackupMethod,
    ScheduledBackupPluginConfiguration, ScheduledBackupSpec,
};
use mall_crds::database::{Backup, Encryption};

/// Folder below the spec's path used when the Mall has no regions.
pub const DEFAULT_REGION_FOLDER: &str = "default";

/// `<spec path>/<region or default>/`.
pub fn destination_path(scope: &Scope<'_>, backup: &Backup) -> String {
    let base = backup.object_store.destination_path.trim_end_matches('/');
    format!("{base}/{}/", scope.region.unwrap_or(DEFAULT_REGION_FOLDER))
}

/// The region's `ObjectStore`.
pub fn object_store(scope: &Scope<'_>, backup: &Backup) -> ObjectStore {
    let store = &backup.object_store;
    let creds = &store.credentials;
    let (wal_encryption, data_encryption) = match backup.encryption {
        Encryption::AES256 => {
            (Some(ObjectStoreConfigurationWalEncryption::Aes256), Some(ObjectStoreConfigurationDataEncryption::Aes256))
        }
        Encryption::AwsKms => {
            (Some(ObjectStoreConfigurationWalEncryption::AwsKms), Some(ObjectStoreConfigurationDataEncryption::AwsKms))
        }
        Encryption::None => (None, None),
    };
    let sidecar = store.region.as_ref().map(|region| ObjectStoreInstanceSidecarConfiguration {
        env: Some(vec![ObjectStoreInstanceSidecarConfigurationEnv {
            name: "AWS_DEFAULT_REGION".into(),
            value: Some(region.clone()),
            ..ObjectStoreInstanceSidecarConfigurationEnv::default()
        }]),
        ..ObjectStoreInstanceSidecarConfiguration::default()
    });
    ObjectStore {
        metadata: scope.meta(object_store_name(scope), super::COMPONENT),
        spec: ObjectStoreSpec {
            retention_policy: Some(backup.retention.clone()),
            configuration: ObjectStoreConfiguration {
                destination_path: destination_path(scope, backup),
                endpoint_url: store.endpoint_url.clone(),
                s3_credentials: Some(ObjectStoreConfigurationS3Credentials {
                    access_key_id: Some(ObjectStoreConfigurationS3CredentialsAccessKeyId {
                        name: creds.secret_name.clone(),
                        key: creds.access_key_id_key.clone(),
                    }),
                    secret_access_key: Some(ObjectStoreConfigurationS3CredentialsSecretAccessKey {
                        name: creds.secret_name.clone(),
                        key: creds.secret_access_key_key.clone(),
                    }),
                    ..ObjectStoreConfigurationS3Credentials::default()
                }),
                wal: Some(ObjectStoreConfigurationWal {
                    compression: Some(ObjectStoreConfigurationWalCompression::Gzip),
                    encryption: wal_encryption,
                    ..ObjectStoreConfigurationWal::default()
                }),
                data: Some(ObjectStoreConfigurationData {
                    compression: Some(ObjectStoreConfigurationDataCompression::Gzip),
                    encryption: data_encryption,
                    ..ObjectStoreConfigurationData::default()
                }),
                ..ObjectStoreConfiguration::default()
            },
            instance_sidecar_configuration: sidecar,
        },
        status: None,
    }
}

/// Shard `shard`'s `ScheduledBackup` (named like its Cluster).
pub fn scheduled_backup(scope: &Scope<'_>, shard: i32, backup: &Backup) -> ScheduledBackup {
    let cluster = cluster_name(scope, shard);
    ScheduledBackup {
        metadata: shard_meta(scope, cluster.clone(), shard),
        spec: ScheduledBackupSpec {
            schedule: backup.schedule.trim().to_string(),
            cluster: ScheduledBackupCluster { name: cluster },
            method: Some(ScheduledBackupMethod::Plugin),
            plugin_configuration: Some(ScheduledBackupPluginConfiguration {
                name: BARMAN_PLUGIN.into(),
                ..ScheduledBackupPluginConfiguration::default()
            }),
            backup_owner_reference: Some(ScheduledBackupBackupOwnerReference::r#_Self),
            immediate: Some(true),
            ..ScheduledBackupSpec::default()
        },
        status: None,
    }
}

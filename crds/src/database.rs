//! `spec.database`: sharded PostgreSQL, composed from CloudNativePG (one `Cluster` per shard).
//!
//! Contract: API types only. We never run PostgreSQL ourselves; these fields map onto
//! CloudNativePG `Cluster`, `Pooler`, `ScheduledBackup` and the Barman Cloud Plugin's
//! `ObjectStore` (see `docs/database.md`).

use crate::common::{DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN, Resources, SECRET_KEY_PATTERN};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// PostgreSQL parameters CloudNativePG manages itself and refuses ("fixed parameters"), plus the
/// ones this operator owns. A key listed here in `spec.database.parameters` is rejected.
pub const FORBIDDEN_PARAMETERS: &[&str] = &[
    "allow_alter_system",
    "allow_system_table_mods",
    "archive_cleanup_command",
    "archive_command",
    "archive_mode",
    "bonjour",
    "bonjour_name",
    "cluster_name",
    "config_file",
    "data_directory",
    "data_sync_retry",
    "event_source",
    "external_pid_file",
    "hba_file",
    "hot_standby",
    "ident_file",
    "jit_provider",
    "listen_addresses",
    "log_destination",
    "log_directory",
    "log_file_mode",
    "log_filename",
    "log_rotation_age",
    "log_rotation_size",
    "log_truncate_on_rotation",
    "logging_collector",
    "port",
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "recovery_end_command",
    "recovery_min_apply_delay",
    "restart_after_crash",
    "restore_command",
    "shared_preload_libraries",
    "ssl",
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_crl_file",
    "ssl_dh_params_file",
    "ssl_key_file",
    "ssl_prefer_server_ciphers",
    "stats_temp_directory",
    "synchronous_standby_names",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
];

/// The CEL rule refusing [`FORBIDDEN_PARAMETERS`] and prefix families (`recovery_target*`,
/// `ssl_passphrase_command*`, `syslog_*`), built from the same list.
fn parameters_rule() -> kube::core::Rule {
    let list = FORBIDDEN_PARAMETERS.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ");
    kube::core::Rule::new(format!(
        "self.all(k, !(k in [{list}]) && !k.startsWith('recovery_target') && !k.startsWith('ssl_passphrase_command') && !k.startsWith('syslog_'))"
    ))
    .message("sets a parameter CloudNativePG or the operator manages (archiving, replication, TLS, logging, paths and ports cannot be set)")
}

/// The database tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.synchronous) || self.synchronous.number < self.instancesPerShard").message("synchronous.number must be less than instancesPerShard (a primary needs that many standbys)").field_path(".synchronous.number"))]
pub struct DatabaseSpec {
    /// PostgreSQL major version (CloudNativePG's default images).
    #[serde(default = "default_postgres_version")]
    #[schemars(range(min = 14, max = 18))]
    pub postgres_version: i32,
    /// Number of shards, one CloudNativePG `Cluster` each. Fixed once set: resharding is a
    /// migration, not an edit (see docs/sharding.md).
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 256))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("shards is immutable once set (resharding is a migration, see docs/sharding.md)"))]
    pub shards: i32,
    /// PostgreSQL instances per shard: one primary, the rest hot standbys (read replicas).
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances_per_shard: i32,
    /// Synchronous replication inside each shard; absent = asynchronous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<Synchronous>,
    /// Volume of each instance.
    #[serde(default)]
    pub storage: Storage,
    /// CPU and memory of each PostgreSQL instance (equal requests and limits give Guaranteed QoS).
    #[serde(default)]
    pub resources: Resources,
    /// PgBouncer in front of each shard's primary.
    #[serde(default)]
    pub pooling: Pooling,
    /// Extra `postgresql.conf` parameters (string values). Parameters CloudNativePG manages are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = parameters_rule())]
    pub parameters: BTreeMap<String, String>,
    /// Scheduled, encrypted backups to an S3-compatible object store; absent = no backups
    /// (the Mall then reports Degraded reason `BackupsDisabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// Synchronous replication (CloudNativePG `postgresql.synchronous`, method `any`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Synchronous {
    /// Standbys that must confirm each commit.
    #[schemars(range(min = 1, max = 8))]
    pub number: i32,
    /// `required`: commits wait and writes stop with too few standbys (RPO 0).
    /// `preferred`: only healthy standbys count; writes go on (possible loss on failover).
    #[serde(default)]
    pub data_durability: DataDurability,
}

/// CloudNativePG `dataDurability`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataDurability {
    /// Writes wait for the standbys.
    #[default]
    Required,
    /// Writes continue when standbys are missing.
    Preferred,
}

/// Instance volumes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each instance's volume.
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1, max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub size: String,
    /// StorageClass; absent = the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub storage_class: Option<String>,
}

impl Default for Storage {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class: None }
    }
}

/// PgBouncer pooling (a CloudNativePG `Pooler` of type `rw` per shard).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pooling {
    /// Whether each shard gets a pooler.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// PgBouncer pool mode.
    #[serde(default)]
    pub mode: PoolMode,
    /// PgBouncer pods per shard.
    #[serde(default = "default_pooler_instances")]
    #[schemars(range(min = 1, max = 32))]
    pub instances: i32,
    /// `max_client_conn` of each PgBouncer.
    #[serde(default = "default_max_client_conn")]
    #[schemars(range(min = 10, max = 100000))]
    pub max_client_connections: i32,
    /// `default_pool_size`: server connections per user/database pair.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub default_pool_size: i32,
}

impl Default for Pooling {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: PoolMode::default(),
            instances: default_pooler_instances(),
            max_client_connections: default_max_client_conn(),
            default_pool_size: default_pool_size(),
        }
    }
}

/// PgBouncer `pool_mode`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PoolMode {
    /// A server connection per client session.
    Session,
    /// A server connection per transaction (most connections per database server).
    #[default]
    Transaction,
}

/// Backups through the Barman Cloud Plugin (`ObjectStore` + `ScheduledBackup` with `method: plugin`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Cron schedule with six fields, seconds first, as CloudNativePG reads it (`0 0 2 * * *`).
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 11, max = 128), regex(pattern = CRON6_PATTERN))]
    pub schedule: String,
    /// Recovery window kept in the object store: a number and `d`, `w` or `m` (`30d`).
    #[serde(default = "default_retention")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[1-9][0-9]*[dwm]$"))]
    pub retention: String,
    /// Where base backups and WAL go.
    pub object_store: ObjectStoreRef,
    /// Server-side encryption of WAL and base backups in the bucket.
    #[serde(default)]
    pub encryption: Encryption,
}

/// Six whitespace-separated cron fields (seconds first); each a cron term of digits, `*`, `?`,
/// ranges, steps, lists and month/day names.
pub const CRON6_PATTERN: &str = r"^\s*[0-9*?/,A-Za-z\-LW#]+(\s+[0-9*?/,A-Za-z\-LW#]+){5}\s*$";

/// An S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreRef {
    /// Bucket and prefix: `s3://bucket/path/`. Each shard writes below it in its own folder.
    #[schemars(length(min = 6, max = 1024), regex(pattern = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$"))]
    pub destination_path: String,
    /// Endpoint of a non-AWS S3 service (`https://minio.example:9000`).
    #[serde(default, rename = "endpointURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://[^\s/]+(/[^\s]*)?$"))]
    pub endpoint_url: Option<String>,
    /// Bucket region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Secret holding the access key pair (keys `ACCESS_KEY_ID` and `ACCESS_SECRET_KEY` unless
    /// overridden).
    pub credentials: S3Credentials,
}

/// Names of the Secret and keys with the S3 access key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// Secret in the Mall's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Key of the access key id.
    #[serde(default = "default_access_key_id")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub access_key_id_key: String,
    /// Key of the secret access key.
    #[serde(default = "default_secret_access_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub secret_access_key_key: String,
}

/// Server-side encryption of backups (the plugin's `wal.encryption` and `data.encryption`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Encryption {
    /// SSE with S3-managed keys.
    #[default]
    AES256,
    /// SSE with KMS-managed keys.
    #[serde(rename = "aws:kms")]
    AwsKms,
    /// No server-side encryption (the Mall's `BackupsConfigured` condition says so).
    #[serde(rename = "none")]
    None,
}

fn default_postgres_version() -> i32 {
    17
}
fn default_shards() -> i32 {
    1
}
fn default_instances() -> i32 {
    3
}
fn default_storage_size() -> String {
    "10Gi".into()
}
fn default_true() -> bool {
    true
}
fn default_pooler_instances() -> i32 {
    2
}
fn default_max_client_conn() -> i32 {
    1000
}
fn default_pool_size() -> i32 {
    20
}
fn default_schedule() -> String {
    "0 0 2 * * *".into()
}
fn default_retention() -> String {
    "30d".into()
}
fn default_access_key_id() -> String {
    "ACCESS_KEY_ID".into()
}
fn default_secret_access_key() -> String {
    "ACCESS_SECRET_KEY".into()
}

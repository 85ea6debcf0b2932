//! Rust types of the third-party resources the database tier builds: CloudNativePG v1.30.1's
//! `Cluster`, `Pooler` and `ScheduledBackup` (`postgresql.cnpg.io/v1`) and the Barman Cloud
//! Plugin v0.15.0's `ObjectStore` (`barmancloud.cnpg.io/v1`).
//!
//! Contract: the four submodules are kopium's output for the pinned CRDs, written by
//! `hack/kopium.sh` and never edited by hand; `controllers/tests/kopium_types.rs` regenerates them
//! and fails on any difference. Each type implements `kube::Resource` (`DynamicType = ()`), so
//! builders return them as `build::Child`ren and apply serializes them with
//! `build::kinds::resource_value`.

pub mod cluster;
pub mod objectstore;
pub mod pooler;
pub mod scheduledbackup;

pub use cluster::Cluster;
pub use objectstore::ObjectStore;
pub use pooler::Pooler;
pub use scheduledbackup::ScheduledBackup;

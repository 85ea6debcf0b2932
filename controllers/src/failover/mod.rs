//! Regional failover and switchover: the operator as the external authority CloudNativePG asks
//! for across Kubernetes clusters.
//!
//! Contract: [`health`] (probe counts → region health) and [`machine`] (what to do next) are
//! pure; the clock is an input. The effectful steps live in their own modules and are driven per
//! Mall by the operator.
//! See `docs/failover.md`.

pub mod dns;
pub mod driver;
pub mod execute;
pub mod health;
pub mod machine;
pub mod moves;
pub mod probe;
pub mod status;
pub mod witness;

/// Field manager of every write the failover controller makes (shard Clusters' `spec.replica`
/// and epoch annotation, the Mall's `activeRegion`, `failoverEpoch`, `regions`, `lastFailover`,
/// `switchover`, `lastRequest` and its conditions).
pub const FIELD_MANAGER: &str = "mall-failover";

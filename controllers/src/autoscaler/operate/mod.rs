//! The autoscaler inside the operator (issue #15 item 3): a loop per autoscaled Mall that reads
//! the children's counts, asks the engine, and applies its decision.
//!
//! Contract: one step per module — [`counts`] (which children, their desired/Ready counts),
//! [`scale`] (server-side apply of the replica field only, one `Scaled` Event per scale action),
//! [`status`] (`lastScaling` and the `MetricsUnavailable` condition), [`source`] (Prometheus from
//! `spec.autoscaling.prometheus`, bearer token from `authSecret`), [`driver`] (the per-Mall tokio
//! tasks and their [`Supervisor`]). Every write uses the field manager
//! [`crate::build::names::AUTOSCALER_MANAGER`] (`mall-autoscaler`) and happens only when
//! something differs: a steady Mall costs reads only. The reconciler hands the replica fields
//! over through the `mallctl.io/autoscaled` annotation (`reconcile::handoff`). Missing metrics
//! hold the current size (the engine's contract) and set `MetricsUnavailable=True`.

pub mod counts;
pub mod driver;
pub mod scale;
pub mod source;
pub mod status;

pub use driver::{LoopOptions, Plan, Supervisor};

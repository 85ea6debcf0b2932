//! Rust types of the Gateway API resources the edge tier builds: `HTTPRoute`
//! (`gateway.networking.k8s.io/v1`, standard channel of Gateway API v1.5.0).
//!
//! Contract: [`httproute`] is kopium's output for the pinned CRD, written by `hack/kopium.sh` and
//! never edited by hand; `controllers/tests/kopium_types.rs` regenerates it and fails on any
//! difference. [`HttpRoute`] implements `kube::Resource` (`DynamicType = ()`), so it is a
//! `build::Child` and apply serializes it with `build::kinds::resource_value`.

pub mod httproute;

pub use httproute::HttpRoute;

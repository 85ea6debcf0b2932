//! Rust types of the external-dns resources the operator builds: `DNSEndpoint`
//! (`externaldns.k8s.io/v1alpha1`, external-dns v0.22.0).
//!
//! Contract: [`dnsendpoint`] is kopium's output for the pinned CRD, written by `hack/kopium.sh`
//! and never edited by hand; `controllers/tests/kopium_types.rs` regenerates it and fails on any
//! difference. [`DnsEndpoint`] implements `kube::Resource` (`DynamicType = ()`), so it is a
//! `build::Child` and apply serializes it with `build::kinds::resource_value`.

pub mod dnsendpoint;

pub use dnsendpoint::DnsEndpoint;

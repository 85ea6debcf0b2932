//! Services and PodDisruptionBudgets of a tier's pods.
//!
//! Contract: pure. Every object carries `scope.meta(name, component)` and selects the component's
//! pods by `scope.selector(component)`; ports are TCP.

use crate::build::Scope;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A TCP Service port `name`: `port` to the pods' `target`.
pub fn service_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(target),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The Service `name` of `component`'s pods with `ports`.
pub fn service(scope: &Scope<'_>, name: String, component: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: scope.meta(name, component),
        spec: Some(ServiceSpec {
            selector: Some(scope.selector(component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service `<prefix>-<component>`: port 80 (`http`) to the pods' port named `http`.
pub fn http_service(scope: &Scope<'_>, component: &str) -> Service {
    service(scope, scope.name(component), component, vec![service_port("http", 80, IntOrString::String("http".into()))])
}

/// The PodDisruptionBudget `<prefix>-<component>`: at most one of the component's pods
/// voluntarily down at a time.
pub fn pod_disruption_budget(scope: &Scope<'_>, component: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: scope.meta(scope.name(component), component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(super::match_labels(scope.selector(component))),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

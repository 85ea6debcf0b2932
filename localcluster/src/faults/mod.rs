//! Fault injection between clients and a local API server.
//!
//! Contract: a [`FaultProxy`] is a TLS-terminating HTTP/1.1 reverse proxy on 127.0.0.1 in front
//! of one cluster's API server. Its serving certificate is signed by the cluster CA (so the
//! cluster's kubeconfigs work against it unchanged but for the server URL); upstream it speaks
//! TLS trusting the cluster CA and presents *no* client certificate, forwarding the
//! `Authorization` header untouched, so clients behind it must use bearer tokens (e.g. from
//! [`crate::LocalCluster::user_kubeconfig`]) and the audit log names them. Streaming responses
//! (watches) pass through as they arrive; connection upgrades (exec, port-forward) are not
//! supported.
//!
//! Faults are [`FaultRule`]s switched at run time with [`FaultProxy::set_rules`]. For each
//! request the rules whose resource and method match are taken in order, each firing
//! independently with its probability: a firing [`FaultAction::Latency`] adds its delay and
//! evaluation continues; a firing [`FaultAction::Status`] or [`FaultAction::Drop`] ends it,
//! answering with a Kubernetes `Status` error of that code or closing the connection without a
//! response. Note that kube-rs retries 429, 503 and 504 by default (`Config::default_retry`),
//! which hides those codes from callers unless it is switched off.

mod proxy;

use std::time::Duration;

pub use proxy::{FaultError, FaultProxy, FaultStats};

/// What a firing rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this HTTP status (e.g. 500, 429, 409) and a Kubernetes `Status` body.
    Status(u16),
    /// Delay the request by this much before forwarding it (or failing it).
    Latency(Duration),
    /// Close the connection without answering.
    Drop,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The resource (plural, as in the URL: `deployments`, `pods`) it applies to; `None`: all
    /// requests, including discovery.
    pub resource: Option<String>,
    /// HTTP methods it applies to (upper case); empty: all.
    pub methods: Vec<String>,
    /// Probability in `0.0..=1.0` that it fires on a matching request.
    pub probability: f64,
    /// What it does when it fires.
    pub action: FaultAction,
}

impl FaultRule {
    /// Fails a fraction `probability` of all requests with `status`.
    pub fn status(status: u16, probability: f64) -> Self {
        FaultRule { resource: None, methods: Vec::new(), probability, action: FaultAction::Status(status) }
    }

    /// Delays every request by `delay`.
    pub fn latency(delay: Duration) -> Self {
        FaultRule { resource: None, methods: Vec::new(), probability: 1.0, action: FaultAction::Latency(delay) }
    }

    /// Drops the connection of a fraction `probability` of all requests.
    pub fn drop_connection(probability: f64) -> Self {
        FaultRule { resource: None, methods: Vec::new(), probability, action: FaultAction::Drop }
    }

    /// Restricts the rule to one resource (URL plural, e.g. `"deployments"`).
    pub fn for_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Restricts the rule to some HTTP methods (e.g. `["POST", "PUT", "PATCH"]`).
    pub fn for_methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        self
    }

    /// Sets the probability.
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    fn matches(&self, method: &str, resource: Option<&str>) -> bool {
        let resource_ok = match &self.resource {
            None => true,
            Some(r) => resource == Some(r.as_str()),
        };
        resource_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// The outcome of evaluating the rules for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Total injected delay.
    pub delay: Duration,
    /// `None`: forward; `Some(Status)` / `Some(Drop)`: the failure to inject.
    pub failure: Option<FaultAction>,
}

/// Evaluates `rules` for a request; `roll` yields uniform numbers in `0.0..1.0`.
pub fn decide(rules: &[FaultRule], method: &str, path: &str, mut roll: impl FnMut() -> f64) -> Decision {
    let resource = resource_of(path);
    let mut decision = Decision { delay: Duration::ZERO, failure: None };
    for rule in rules.iter().filter(|r| r.matches(method, resource)) {
        if roll() >= rule.probability {
            continue;
        }
        match &rule.action {
            FaultAction::Latency(d) => decision.delay += *d,
            failure => {
                decision.failure = Some(failure.clone());
                break;
            }
        }
    }
    decision
}

/// The resource segment of an API path: `/api/v1/namespaces/a/pods/x/status` → `pods`,
/// `/apis/apps/v1/deployments` → `deployments`, `/api/v1/namespaces/a` → `namespaces`;
/// `None` for discovery and non-resource paths (`/api`, `/apis/apps/v1`, `/readyz`).
pub fn resource_of(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.first() {
        Some(&"api") if segments.len() >= 2 => &segments[2..],
        Some(&"apis") if segments.len() >= 3 => &segments[3..],
        _ => return None,
    };
    let rest = match rest.first() {
        Some(&"watch") => &rest[1..],
        _ => rest,
    };
    match rest {
        ["namespaces", _, resource, ..] => Some(resource),
        [resource, ..] => Some(resource),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_segments() {
        assert_eq!(resource_of("/api/v1/namespaces/a/pods/x/status"), Some("pods"));
        assert_eq!(resource_of("/apis/apps/v1/namespaces/a/deployments?watch=1"), Some("deployments"));
        assert_eq!(resource_of("/apis/apps/v1/deployments"), Some("deployments"));
        assert_eq!(resource_of("/api/v1/namespaces/a"), Some("namespaces"));
        assert_eq!(resource_of("/api/v1/namespaces"), Some("namespaces"));
        assert_eq!(resource_of("/api/v1/watch/namespaces/a/pods"), Some("pods"));
        assert_eq!(resource_of("/apis/apps/v1"), None);
        assert_eq!(resource_of("/api"), None);
        assert_eq!(resource_of("/readyz"), None);
    }

    #[test]
    fn rules_fire_in_order() {
        let rules = vec![
            FaultRule::latency(Duration::from_millis(5)),
            FaultRule::status(500, 0.5).for_resource("pods"),
            FaultRule::drop_connection(1.0).for_methods(&["post"]),
        ];
        // Rolls below the probability fire.
        let d = decide(&rules, "GET", "/api/v1/namespaces/a/pods", || 0.1);
        assert_eq!(d.delay, Duration::from_millis(5));
        assert_eq!(d.failure, Some(FaultAction::Status(500)));
        let d = decide(&rules, "GET", "/api/v1/namespaces/a/pods", || 0.9);
        assert_eq!(d.failure, None);
        let d = decide(&rules, "POST", "/api/v1/namespaces/a/configmaps", || 0.9);
        assert_eq!(d.failure, Some(FaultAction::Drop));
        let d = decide(&[], "GET", "/api", || 0.0);
        assert_eq!(d.delay, Duration::ZERO);
        assert_eq!(d.failure, None);
    }
}

//! Where a Mall's loop reads its metrics: `spec.autoscaling.prometheus`.
//!
//! Contract: [`build`] never fails: it returns a [`MallSource`] that is either a
//! [`PrometheusSource`] for the URL (with the bearer token of `authSecret` when set, read from the
//! Secret in the Mall's namespace) or [`MallSource::Unavailable`] carrying why not (bad URL,
//! Secret or key missing). An unavailable source samples no series and reports the reason as a
//! problem, so the engine holds and the Mall shows `MetricsUnavailable` with it; the loop
//! retries [`build`] every tick until it works. The token is never logged.

use crate::autoscaler::prometheus::{PrometheusSource, Queries};
use crate::autoscaler::{EngineConfig, Metrics, MetricsSource};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use mall_crds::Mall;
use std::future::Future;
use std::time::Duration;

/// Why the bearer token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the Secret failed.
    #[error("reading Secret {name}")]
    Secret {
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The key is not in the Secret (or not UTF-8).
    #[error("Secret {name} has no UTF-8 key {key}")]
    Key {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
}

/// The metrics source of one Mall.
#[derive(Clone)]
pub enum MallSource {
    /// Prometheus.
    Prometheus(Box<PrometheusSource>),
    /// No source; why.
    Unavailable(String),
}

impl MallSource {
    /// Whether [`build`] should be tried again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MallSource::Unavailable(_))
    }
}

impl MetricsSource for MallSource {
    fn sample(&mut self, now: DateTime<Utc>) -> impl Future<Output = Metrics> + Send {
        let this = self.clone();
        async move {
            match this {
                MallSource::Prometheus(p) => p.read(now).await,
                MallSource::Unavailable(why) => Metrics { problems: vec![why], ..Metrics::default() },
            }
        }
    }
}

async fn bearer(client: &kube::Client, namespace: &str, name: &str, key: &str) -> Result<String, SourceError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.map_err(|source| SourceError::Secret { name: name.into(), source })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SourceError::Key { name: name.into(), key: key.into() })
}

/// The source of `mall` (see the module header); `timeout` bounds every query.
pub async fn build(client: &kube::Client, mall: &Mall, cfg: &EngineConfig, timeout: Duration) -> MallSource {
    let Some(spec) = mall.spec.autoscaling.as_ref() else {
        return MallSource::Unavailable("spec.autoscaling is absent".into());
    };
    let namespace = mall.namespace().unwrap_or_default();
    let queries = Queries::for_mall(cfg, &namespace, &mall.name_any());
    let url = &spec.prometheus.url;
    let source = match PrometheusSource::new(url, queries, timeout) {
        Ok(s) => s,
        Err(e) => return MallSource::Unavailable(crate::reconcile::error_chain(&e)),
    };
    match &spec.prometheus.auth_secret {
        None => MallSource::Prometheus(Box::new(source)),
        Some(r) => match bearer(client, &namespace, &r.name, &r.key).await {
            Ok(token) => MallSource::Prometheus(Box::new(source.with_bearer(token))),
            Err(e) => MallSource::Unavailable(format!(
                "spec.autoscaling.prometheus.authSecret: {}",
                crate::reconcile::error_chain(&e)
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unavailable_source_reports_why() {
        let mut s = MallSource::Unavailable("Secret prom has no UTF-8 key token".into());
        assert!(s.is_unavailable());
        let m = s.sample(Utc::now()).await;
        assert_eq!((m.storefront, m.problems.len()), (None, 1));
    }
}

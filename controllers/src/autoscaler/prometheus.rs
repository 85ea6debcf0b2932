//! Prometheus as the engine's [`MetricsSource`], through the `prometheus-http-query` crate.
//!
//! Contract: one instant query per series (default PromQL below, or the spec's override), with
//! `$namespace` and `$mall` substituted. A failed query, an empty result or a non-finite value
//! leaves that series `None` and adds a problem line — never an error to the caller, never a
//! panic — so the engine holds and reports `MetricsUnavailable`. Every request has a timeout.

use super::config::EngineConfig;
use super::{Metrics, MetricsSource};
use chrono::{DateTime, Utc};
use prometheus_http_query::Client;
use std::future::Future;
use std::time::Duration;

/// Storefront requests/s: every request the storefront pods counted, refused ones included.
/// `irate` (the last two scrapes) is the short window the surge signal needs; the engine keeps
/// its own long window.
pub const DEFAULT_STOREFRONT_QUERY: &str =
    r#"sum(irate(mall_http_requests_total{namespace="$namespace",mall="$mall"}[1m]))"#;
/// Storefront p99 latency in seconds, from the request-duration histogram.
/// Storefront requests/s served, not refused: with a `code` label on the request counter, the
/// engine learns what a pod really serves when pods refuse (503); without one it equals the
/// storefront query and nothing is learned. Only asked with the default storefront query.
pub const DEFAULT_SERVED_QUERY: &str =
    r#"sum(irate(mall_http_requests_total{namespace="$namespace",mall="$mall",code!="503"}[1m]))"#;
pub const DEFAULT_LATENCY_QUERY: &str = r#"histogram_quantile(0.99, sum by (le) (rate(mall_http_request_duration_seconds_bucket{namespace="$namespace",mall="$mall"}[1m])))"#;
/// Cache commands/s (redis_exporter / valkey exporter).
pub const DEFAULT_CACHE_QUERY: &str =
    r#"sum(rate(redis_commands_processed_total{namespace="$namespace",mall="$mall"}[1m]))"#;
/// Database queries/s: committed plus rolled-back transactions (CloudNativePG exporter).
pub const DEFAULT_DATABASE_QUERY: &str = r#"sum(rate(cnpg_pg_stat_database_xact_commit{namespace="$namespace",mall="$mall"}[1m])) + sum(rate(cnpg_pg_stat_database_xact_rollback{namespace="$namespace",mall="$mall"}[1m]))"#;

/// Why the source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Http(#[source] reqwest::Error),
    /// The URL is not usable.
    #[error("Prometheus URL {url:?}")]
    Url {
        /// URL given.
        url: String,
        /// Cause.
        #[source]
        source: prometheus_http_query::Error,
    },
}

/// The PromQL of every series, substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// Storefront load.
    pub storefront: String,
    /// Cache load, when autoscaled.
    pub cache: Option<String>,
    /// Database load, when autoscaled.
    pub database: Option<String>,
    /// Storefront p99, when a latency objective is set.
    pub latency: Option<String>,
    /// Storefront requests/s served (see [`DEFAULT_SERVED_QUERY`]).
    pub served: Option<String>,
}

/// `$namespace` and `$mall` substituted into `query`.
pub fn substitute(query: &str, namespace: &str, mall: &str) -> String {
    query.replace("$namespace", namespace).replace("$mall", mall)
}

impl Queries {
    /// The queries of `cfg` for the Mall `mall` in `namespace`.
    pub fn for_mall(cfg: &EngineConfig, namespace: &str, mall: &str) -> Self {
        let q = |custom: Option<&String>, default: &str| {
            substitute(custom.map_or(default, String::as_str), namespace, mall)
        };
        Self {
            storefront: q(cfg.storefront.query.as_ref(), DEFAULT_STOREFRONT_QUERY),
            cache: cfg.cache.as_ref().map(|c| q(c.query.as_ref(), DEFAULT_CACHE_QUERY)),
            database: cfg.database.as_ref().map(|d| q(d.query.as_ref(), DEFAULT_DATABASE_QUERY)),
            latency: cfg.latency_slo.map(|_| q(cfg.latency_query.as_ref(), DEFAULT_LATENCY_QUERY)),
            served: cfg.storefront.query.is_none().then(|| q(None, DEFAULT_SERVED_QUERY)),
        }
    }
}

/// Reads the series from a Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    queries: Queries,
    bearer: Option<String>,
}

impl PrometheusSource {
    /// A source querying `url` with a per-request `timeout`.
    pub fn new(url: &str, queries: Queries, timeout: Duration) -> Result<Self, PrometheusError> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(PrometheusError::Http)?;
        let client = Client::from(http, url).map_err(|source| PrometheusError::Url { url: url.to_string(), source })?;
        Ok(Self { client, queries, bearer: None })
    }

    /// Sends `Authorization: Bearer TOKEN` (from `prometheus.authSecret`).
    pub fn with_bearer(mut self, token: String) -> Self {
        self.bearer = Some(token);
        self
    }

    /// The queries in use.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Runs one query: its single value, or why there is none.
    pub async fn scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, String> {
        let mut builder = self.client.query(query).at(at.timestamp());
        if let Some(token) = &self.bearer {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("bearer token is not a header value: {e}"))?;
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = builder.get().await.map_err(|e| format!("Prometheus query failed: {e}"))?;
        let data = response.data();
        let value = if let Some(vector) = data.as_vector() {
            match vector.as_slice() {
                [] => return Err(format!("no data for {query}")),
                [one] => one.sample().value(),
                many => many.iter().map(|v| v.sample().value()).sum(),
            }
        } else if let Some(scalar) = data.as_scalar() {
            scalar.value()
        } else {
            return Err(format!("{query} returned a range vector, expected an instant value"));
        };
        if value.is_finite() { Ok(value) } else { Err(format!("{query} returned {value}")) }
    }

    /// The values of `query` over `[start, end]`, one per second (the sum of its series; a
    /// coarser step for histories over 10,000 s, each value then repeated for its step; seconds
    /// without a sample are `NaN`).
    pub async fn history(&self, query: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<f64>, String> {
        let seconds = (end - start).num_seconds().max(1);
        let step = (seconds / 10_000 + 1) as f64;
        let mut builder = self.client.query_range(query, start.timestamp(), end.timestamp(), step);
        if let Some(token) = &self.bearer {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("bearer token is not a header value: {e}"))?;
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = builder.get().await.map_err(|e| format!("Prometheus range query failed: {e}"))?;
        let Some(matrix) = response.data().as_matrix() else {
            return Err(format!("{query} did not return a range of values"));
        };
        let len = usize::try_from(seconds).unwrap_or(0);
        let mut out = vec![f64::NAN; len];
        for series in matrix {
            for sample in series.samples() {
                let offset = sample.timestamp() - start.timestamp() as f64;
                if !(0.0..seconds as f64).contains(&offset) || !sample.value().is_finite() {
                    continue;
                }
                let from = offset as usize;
                for slot in out.iter_mut().skip(from).take(step as usize) {
                    *slot = if slot.is_nan() { sample.value() } else { *slot + sample.value() };
                }
            }
        }
        if out.iter().all(|v| v.is_nan()) {
            return Err(format!("no data for {query} between {start} and {end}"));
        }
        Ok(out)
    }

    async fn series(&self, query: Option<&String>, at: DateTime<Utc>, problems: &mut Vec<String>) -> Option<f64> {
        match self.scalar(query?, at).await {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(e);
                None
            }
        }
    }

    /// Reads every series at `at`.
    pub async fn read(&self, at: DateTime<Utc>) -> Metrics {
        let mut problems = Vec::new();
        let storefront = self.series(Some(&self.queries.storefront), at, &mut problems).await;
        let cache = self.series(self.queries.cache.as_ref(), at, &mut problems).await;
        let database = self.series(self.queries.database.as_ref(), at, &mut problems).await;
        let p99_latency = self.series(self.queries.latency.as_ref(), at, &mut problems).await;
        // Optional: its absence holds nothing (no problem line).
        let storefront_served = match &self.queries.served {
            Some(q) => self.scalar(q, at).await.ok(),
            None => None,
        };
        problems.dedup();
        Metrics { storefront, storefront_served, cache, database, p99_latency, problems }
    }
}

impl MetricsSource for PrometheusSource {
    fn sample(&mut self, now: DateTime<Utc>) -> impl Future<Output = Metrics> + Send {
        let this = self.clone();
        async move { this.read(now).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_are_substituted() {
        let mall = crate::testing::mall_from(serde_json::json!({
            "cache": {},
            "autoscaling": {
                "prometheus": {"url": "http://prom:9090"},
                "storefront": {"min": 1, "max": 5, "targetPerReplica": 50, "query": "sum(rate(x{ns=\"$namespace\",m=\"$mall\"}[30s]))"},
                "cache": {"min": 0, "max": 2, "targetPerReplica": 1000},
                "latencySlo": {"p99": "300ms"}
            }
        }));
        let cfg = EngineConfig::from_mall(&mall).unwrap();
        let q = Queries::for_mall(&cfg, "ns", "shop");
        assert_eq!(q.storefront, "sum(rate(x{ns=\"ns\",m=\"shop\"}[30s]))");
        assert!(q.cache.as_deref().unwrap().contains(r#"redis_commands_processed_total{namespace="ns",mall="shop"}"#));
        assert!(q.latency.as_deref().unwrap().starts_with("histogram_quantile(0.99"));
        assert_eq!(q.database, None);
        assert_eq!(q.served, None, "a custom storefront query has no known served counterpart");
        let mut plain = cfg.clone();
        plain.storefront.query = None;
        assert!(Queries::for_mall(&plain, "ns", "shop").served.unwrap().contains(r#"code!="503""#));
        assert!(PrometheusSource::new("not a url", q, Duration::from_secs(1)).is_err());
    }
}

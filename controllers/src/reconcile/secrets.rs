//! Credentials the operator generates, and the one shape of Secret it applies.
//!
//! Contract: a generated password is made once — from [`Entropy`] when its Secret does not
//! exist yet — and afterwards always read back from that Secret, so re-applying never changes
//! it and it never appears in logs, events or ConfigMaps. [`normalize`] turns `stringData` of
//! built Secrets into `data` (what the API server stores), so comparing with the live Secret
//! works and a converged Secret is never rewritten.

use super::Entropy;
use super::store::ChildStores;
use crate::build::Scope;
use crate::build::cache::{self, CacheSecrets};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use mall_crds::Mall;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Reading an existing Secret failed.
    #[error("reading Secret {name}")]
    Read {
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The existing Secret holds a password the cache refuses (edited by hand?).
    #[error("Secret {name} holds an unusable CACHE_PASSWORD (delete it to have a new one generated)")]
    Unusable {
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: cache::CacheError,
    },
}

/// Cache credentials of every region of a Mall.
pub struct CacheCredentials {
    by_prefix: BTreeMap<String, CacheSecrets>,
}

impl CacheCredentials {
    /// Reads each region's existing connection Secret, or generates a password for it.
    pub async fn resolve(
        client: &kube::Client,
        mall: &Mall,
        namespace: &str,
        entropy: &dyn Entropy,
        stores: Option<&ChildStores>,
    ) -> Result<Self, SecretsError> {
        let mut by_prefix = BTreeMap::new();
        if mall.spec.cache.is_none() {
            return Ok(Self { by_prefix });
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret_kind = super::kinds::find("v1", "Secret");
        let stores = stores.zip(secret_kind);
        for scope in Scope::all(mall) {
            let name = cache::secret_name(&scope);
            // A cached Secret is trusted (a password never changes once made); a miss is
            // checked with a GET, so a cache that lags never makes a second password.
            let cached = stores
                .and_then(|(s, kind)| s.get(kind, namespace, &mall.name_any(), &name))
                .and_then(|v| serde_json::from_value::<Secret>(v).ok());
            let existing = match cached {
                Some(secret) => Some(secret),
                None => api.get_opt(&name).await.map_err(|source| SecretsError::Read { name: name.clone(), source })?,
            };
            let password = existing
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get("CACHE_PASSWORD"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            let secrets = match password {
                Some(p) => {
                    CacheSecrets::new(p).map_err(|source| SecretsError::Unusable { name: name.clone(), source })?
                }
                None => CacheSecrets::from_random_bytes(&entropy.bytes32()),
            };
            by_prefix.insert(scope.prefix(), secrets);
        }
        Ok(Self { by_prefix })
    }

    /// The credentials of `scope` (a placeholder only when the Mall has no cache).
    pub fn for_scope(&self, scope: &Scope<'_>) -> CacheSecrets {
        self.by_prefix.get(&scope.prefix()).cloned().unwrap_or_else(CacheSecrets::placeholder)
    }
}

/// Moves `stringData` of every Secret into `data`, base64-encoded as the server stores it.
pub fn normalize(children: Vec<Value>) -> Vec<Value> {
    children
        .into_iter()
        .map(|mut child| {
            if child["kind"] == "Secret"
                && child["apiVersion"] == "v1"
                && let Some(map) = child.as_object_mut()
                && let Some(Value::Object(strings)) = map.remove("stringData")
            {
                let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
                for (k, v) in strings {
                    data.insert(k, ByteString(v.as_str().unwrap_or_default().as_bytes().to_vec()));
                }
                if let Ok(Value::Object(encoded)) = serde_json::to_value(&data) {
                    let target = map.entry("data").or_insert_with(|| Value::Object(Default::default()));
                    if let Some(target) = target.as_object_mut() {
                        target.extend(encoded);
                    }
                }
            }
            child
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_data_becomes_base64_data() {
        let out = normalize(vec![
            json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"A": "hello"}, "data": {"B": "d29ybGQ="}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"A": "x"}}),
        ]);
        assert_eq!(out[0]["data"], json!({"A": "aGVsbG8=", "B": "d29ybGQ="}));
        assert!(out[0].get("stringData").is_none());
        assert_eq!(out[1]["stringData"]["A"], "x");
    }
}

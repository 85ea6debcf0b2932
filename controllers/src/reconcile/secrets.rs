//! Credentials the operator generates, and the one shape of Secret it applies.
//!
//! Contract: a generated password is made once — from [`Entropy`] when its Secret does not
//! exist yet — and afterwards always read back from that Secret, so re-applying never changes
//! it and it never appears in logs, events or ConfigMaps; every region of a Mall gets the same
//! cache credentials. Secrets a member region's children refer to (backup credentials, TLS) are
//! copied there from the operator's cluster ([`member_copies`]). [`normalize`] turns `stringData` of
//! built Secrets into `data` (what the API server stores), so comparing with the live Secret
//! works and a converged Secret is never rewritten.

use super::Entropy;
use crate::build::Scope;
use crate::build::cache::{self, CacheSecrets};
use crate::clusters::Cluster;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use mall_crds::Mall;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    failed: BTreeMap<crate::build::Target, String>,
}

impl CacheCredentials {
    /// Reads each region's existing connection Secret from the region's cluster; a region without
    /// one gets the password another region already has (so every region's cache takes the same
    /// credentials), or, when none has one yet, one password generated now for all of them.
    /// Existing passwords are never changed.
    pub async fn resolve(
        mall: &Mall,
        namespace: &str,
        entropy: &dyn Entropy,
        scopes: &[(Scope<'_>, Arc<Cluster>)],
    ) -> Result<Self, SecretsError> {
        let mut by_prefix = BTreeMap::new();
        let mut failed = BTreeMap::new();
        if mall.spec.cache.is_none() {
            return Ok(Self { by_prefix, failed });
        }
        let mut pending = Vec::new();
        for (scope, cluster) in scopes {
            match existing_password(mall, namespace, scope, cluster).await {
                Ok(Some(secrets)) => {
                    by_prefix.insert(scope.prefix(), secrets);
                }
                Ok(None) => pending.push(scope.prefix()),
                // That cluster cannot be read: its regions are not applied this time (a
                // password is never generated for a Secret that could not be looked at).
                Err(SecretsError::Read { name, source }) => {
                    let error = SecretsError::Read { name, source };
                    failed.insert(scope.target.clone(), super::error_chain(&error));
                }
                Err(other) => return Err(other),
            }
        }
        if !pending.is_empty() {
            let shared = match by_prefix.values().next() {
                Some(existing) => existing.clone(),
                None => CacheSecrets::from_random_bytes(&entropy.bytes32()),
            };
            for prefix in pending {
                by_prefix.insert(prefix, shared.clone());
            }
        }
        Ok(Self { by_prefix, failed })
    }

    /// Clusters whose connection Secrets could not be read, with the error.
    pub fn failed(&self) -> &BTreeMap<crate::build::Target, String> {
        &self.failed
    }

    /// The credentials of `scope` (a placeholder only when the Mall has no cache).
    pub fn for_scope(&self, scope: &Scope<'_>) -> CacheSecrets {
        self.by_prefix.get(&scope.prefix()).cloned().unwrap_or_else(CacheSecrets::placeholder)
    }
}

/// The password in `scope`'s connection Secret in its cluster, if that Secret exists.
async fn existing_password(
    mall: &Mall,
    namespace: &str,
    scope: &Scope<'_>,
    cluster: &Cluster,
) -> Result<Option<CacheSecrets>, SecretsError> {
    let name = cache::secret_name(scope);
    // A cached Secret is trusted (a password never changes once made); a miss is checked with a
    // GET, so a cache that lags never makes a second password.
    let secret_kind = super::kinds::find("v1", "Secret");
    let cached = cluster
        .stores
        .as_ref()
        .zip(secret_kind)
        .and_then(|(s, kind)| s.get(kind, namespace, &mall.name_any(), &name))
        .and_then(|v| serde_json::from_value::<Secret>(v).ok());
    let existing = match cached {
        Some(secret) => Some(secret),
        None => {
            let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
            api.get_opt(&name).await.map_err(|source| SecretsError::Read { name: name.clone(), source })?
        }
    };
    let password = existing
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("CACHE_PASSWORD"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    password
        .map(|p| CacheSecrets::new(p).map_err(|source| SecretsError::Unusable { name: name.clone(), source }))
        .transpose()
}

/// Names of the Secrets in the Mall's namespace its children refer to but the operator does not
/// make: the backup credentials and the edge TLS Secret.
pub fn referenced(mall: &Mall) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(backup) = &mall.spec.database.backup {
        names.push(backup.object_store.credentials.secret_name.clone());
    }
    if let Some(tls) = mall.spec.cdn.as_ref().and_then(|c| c.tls_secret_name.clone()) {
        names.push(tls);
    }
    names.sort();
    names.dedup();
    names
}

/// The Secrets of the operator's cluster that children refer to ([`referenced`]) and that exist
/// there: read once per reconcile, copied to every member cluster ([`member_copies`]).
pub async fn hub_sources(hub: &Cluster, mall: &Mall, namespace: &str) -> Result<Vec<Secret>, SecretsError> {
    let api: Api<Secret> = Api::namespaced(hub.client.clone(), namespace);
    let mut sources = Vec::new();
    for name in referenced(mall) {
        if let Some(secret) = api.get_opt(&name).await.map_err(|source| SecretsError::Read { name, source })? {
            sources.push(secret);
        }
    }
    Ok(sources)
}

/// Copies, for a member cluster, of the hub's `sources` ([`hub_sources`]), labelled as the
/// Mall's (so they are pruned with it). A Secret the member already holds that is not the Mall's
/// (provisioned there by hand) is left alone and not copied; a source Secret that does not exist
/// yet is not copied (the children wait for it as they would in the operator's cluster).
pub async fn member_copies(
    member: &Cluster,
    mall: &Mall,
    namespace: &str,
    scope: &Scope<'_>,
    sources: &[Secret],
) -> Result<Vec<Secret>, SecretsError> {
    let mut copies = Vec::new();
    let member_api: Api<Secret> = Api::namespaced(member.client.clone(), namespace);
    let secret_kind = super::kinds::find("v1", "Secret");
    let uid = mall.metadata.uid.as_deref();
    for source in sources {
        let name = source.metadata.name.clone().unwrap_or_default();
        let ours = member
            .stores
            .as_ref()
            .zip(secret_kind)
            .and_then(|(s, kind)| s.get(kind, namespace, &mall.name_any(), &name))
            .is_some_and(|live| super::apply::is_ours(&live, uid));
        if !ours {
            let there =
                member_api.get_opt(&name).await.map_err(|source| SecretsError::Read { name: name.clone(), source })?;
            if let Some(there) = there {
                let value = serde_json::to_value(&there).unwrap_or_default();
                let labelled = value["metadata"]["labels"][crate::build::names::MALL_LABEL].as_str().is_some();
                if !(labelled && super::apply::is_ours(&value, uid)) {
                    continue;
                }
            }
        }
        copies.push(Secret {
            metadata: scope.meta(name, "copied-secret"),
            data: source.data.clone(),
            type_: source.type_.clone(),
            ..Secret::default()
        });
    }
    Ok(copies)
}

/// Moves `stringData` of every Secret (JSON with `apiVersion` and `kind`) into `data`, base64-encoded as the server stores it.
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

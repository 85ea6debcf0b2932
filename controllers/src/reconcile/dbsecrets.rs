//! The shard application credentials of a distributed topology: one Secret per shard, identical
//! in every region, so the `app` role's password is the same whichever region is primary
//! (CloudNativePG's advice for a distributed topology: identical role Secrets in every member).
//!
//! Contract: only for Malls with a topology (`build::database::topology`). [`resolve`] returns,
//! per shard, Secret `<mall>-db-<shard>-app` (`kubernetes.io/basic-auth`, `username: app`) for
//! the operator's own cluster, owned by the Mall: the password is read back from the live Secret
//! when there is one (so it never changes once made, and never appears in logs or Events), else
//! generated from [`Entropy`]. The reconciler applies them in the hub and copies them to every
//! member cluster with the other Secrets the children refer to (`secrets::member_copies`); every
//! member's bootstrap names them (`build::database::cluster`).

use super::Entropy;
use super::secrets::SecretsError;
use crate::build::Scope;
use crate::build::database::topology::Topology;
use crate::build::database::{APP_DATABASE, COMPONENT, shared_app_secret_name};
use crate::build::names::Target;
use crate::clusters::Cluster;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use mall_crds::Mall;
use std::collections::BTreeMap;

/// The key holding the password.
pub const PASSWORD_KEY: &str = "password";

/// A password of 64 hex characters from 32 random bytes.
pub fn password(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The credentials Secret of `shard` with `password`, in the operator's own cluster.
pub fn secret(mall: &Mall, shard: i32, password: &str) -> Secret {
    let scope = Scope { mall, region: None, target: Target::Local };
    let name = shared_app_secret_name(scope.mall_name(), shard);
    Secret {
        metadata: scope.meta(name, COMPONENT),
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(BTreeMap::from([
            ("username".to_string(), ByteString(APP_DATABASE.as_bytes().to_vec())),
            (PASSWORD_KEY.to_string(), ByteString(password.as_bytes().to_vec())),
        ])),
        ..Secret::default()
    }
}

/// The shard credentials of `mall` (empty without a topology), see the module header.
pub async fn resolve(
    hub: &Cluster,
    mall: &Mall,
    namespace: &str,
    entropy: &dyn Entropy,
) -> Result<Vec<Secret>, SecretsError> {
    let Some(topology) = Topology::of(mall) else { return Ok(Vec::new()) };
    let api: Api<Secret> = Api::namespaced(hub.client.clone(), namespace);
    let mut out = Vec::new();
    for shard in 0..mall.spec.database.shards {
        let name = shared_app_secret_name(&topology.mall, shard);
        let live = api.get_opt(&name).await.map_err(|source| SecretsError::Read { name: name.clone(), source })?;
        let existing = live
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(PASSWORD_KEY))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .filter(|p| !p.is_empty());
        let password = existing.unwrap_or_else(|| password(&entropy.bytes32()));
        out.push(secret(mall, shard, &password));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn one_basic_auth_secret_per_shard_owned_by_the_mall() {
        let mall = mall_from(json!({"database": {"shards": 2, "backup": {"objectStore": {
            "destinationPath": "s3://shop-backups/pg/", "credentials": {"secretName": "s3"}}}},
            "regions": [{"name": "eu", "role": "primary"}, {"name": "us", "role": "standby"}]}));
        let s = secret(&mall, 1, &password(&[7u8; 32]));
        assert_eq!(s.metadata.name.as_deref(), Some("shop-db-1-app"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        let data = s.data.expect("data");
        assert_eq!(data["username"].0, b"app");
        assert_eq!(data[PASSWORD_KEY].0.len(), 64);
        assert_eq!(s.metadata.owner_references.expect("owner")[0].kind, "Mall");
    }
}

//! Installs the failover-epoch fencing policy ([`crate::build::fencing`]) in a cluster.
//!
//! Contract: [`ensure`] is idempotent. It reads the policy and its binding and server-side
//! applies (field manager [`FIELD_MANAGER`], forced) only those that are missing or differ from
//! what [`crate::build::fencing::objects`] builds (compared as `desired ⊆ live`,
//! [`super::compare::is_subset`], so fields the API server defaults are ignored). A converged
//! cluster costs two GETs and no write. The policy is applied before its binding, so a binding
//! never names a policy that is not there. It needs `get` and `patch` on both objects (by name)
//! and `create` on both resources (an apply that creates checks `create`); the Helm chart grants
//! exactly that in both modes.

use crate::build::fencing;
use crate::build::names::FIELD_MANAGER;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Why the fencing policy could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum FencingError {
    /// Reading the live object failed.
    #[error("reading {kind} {name}")]
    Get {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Applying the object failed.
    #[error("applying {kind} {name}")]
    Apply {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A built object did not serialize (a bug, reported rather than panicking).
    #[error("serializing {kind}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What [`ensure`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    /// Objects written (0 when the cluster was already converged).
    pub written: usize,
}

/// Installs (or repairs) the fencing policy and its binding in the cluster of `client`.
pub async fn ensure(client: &kube::Client) -> Result<(), FencingError> {
    ensure_counted(client).await.map(|_| ())
}

/// [`ensure`], saying how many objects it wrote.
pub async fn ensure_counted(client: &kube::Client) -> Result<Ensured, FencingError> {
    let (policy, binding) = fencing::objects();
    let mut written = 0;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    written += usize::from(converge(&policies, fencing::POLICY_NAME, "ValidatingAdmissionPolicy", &policy).await?);
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    written +=
        usize::from(converge(&bindings, fencing::BINDING_NAME, "ValidatingAdmissionPolicyBinding", &binding).await?);
    Ok(Ensured { written })
}

/// Applies `desired` unless the live object already holds it; returns whether it wrote.
async fn converge<K>(api: &Api<K>, name: &str, kind: &'static str, desired: &K) -> Result<bool, FencingError>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let mut value = serde_json::to_value(desired).map_err(|source| FencingError::Serialize { kind, source })?;
    value["apiVersion"] = serde_json::Value::String(K::api_version(&()).into_owned());
    value["kind"] = serde_json::Value::String(K::kind(&()).into_owned());
    let live = api.get_opt(name).await.map_err(|source| FencingError::Get { kind, name: name.into(), source })?;
    if let Some(live) = live {
        let live = serde_json::to_value(&live).map_err(|source| FencingError::Serialize { kind, source })?;
        if super::compare::is_subset(&value, &live) {
            return Ok(false);
        }
    }
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&value))
        .await
        .map_err(|source| FencingError::Apply { kind, name: name.into(), source })?;
    Ok(true)
}

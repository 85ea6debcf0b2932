//! Member clusters for the operator: the least-privilege identity the Helm chart defines for them
//! (`mode=member`), and the self-contained kubeconfig the operator in the hub reads from a Secret.
//!
//! Contract: [`install_member_identity`] renders `charts/mall-operator` with `helm template`
//! (the pinned helm of [`crate::tools`]) in member mode for the given namespaces, applies what it
//! renders (ServiceAccount, ClusterRole and binding to create namespaces, a Role and binding in
//! each namespace) into the member cluster with server-side apply, and returns a kubeconfig for
//! that ServiceAccount with a 24-hour token and the cluster's CA embedded (no file paths), as a
//! hub's kubeconfig Secret must hold it. [`put_kubeconfig_secret`] stores such a kubeconfig in the
//! hub. Nothing here grants more than the chart does.

use crate::LocalCluster;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::path::Path;

/// Release name and namespace of the member identity.
pub const RELEASE: &str = "mall";
/// Namespace of the member identity's ServiceAccount.
pub const IDENTITY_NAMESPACE: &str = "mall-system";

/// Why a member identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// helm could not be run or failed.
    #[error("helm template of {chart} failed: {detail}")]
    Helm {
        /// The chart directory.
        chart: String,
        /// stderr or the spawn error.
        detail: String,
    },
    /// helm's output did not parse.
    #[error("helm rendered YAML that does not parse")]
    Yaml(#[source] serde_saphyr::Error),
    /// An API call failed.
    #[error("{what}")]
    Api {
        /// What was attempted.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// No token could be made for the member identity.
    #[error("making a token for the member identity")]
    Token(#[source] Box<crate::ClusterError>),
    /// The chart rendered no ServiceAccount.
    #[error("the chart rendered no ServiceAccount in member mode")]
    NoServiceAccount,
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> MemberError {
    let what = what.into();
    move |source| MemberError::Api { what, source }
}

/// Renders the chart in member mode for `namespaces`.
pub fn render_member_chart(repo_root: &Path, tools: &Path, namespaces: &[&str]) -> Result<Vec<Value>, MemberError> {
    let chart = repo_root.join("charts/mall-operator");
    let set = format!("mode=member,member.namespaces={{{}}}", namespaces.join(","));
    let out = std::process::Command::new(tools.join("helm"))
        .args(["template", RELEASE])
        .arg(&chart)
        .args(["--namespace", IDENTITY_NAMESPACE, "--kube-version", "1.36.3", "--set", &set])
        .output()
        .map_err(|e| MemberError::Helm { chart: chart.display().to_string(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).into_owned();
        return Err(MemberError::Helm { chart: chart.display().to_string(), detail });
    }
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).map_err(MemberError::Yaml)?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

/// Applies one rendered object with server-side apply.
async fn apply(client: &kube::Client, doc: &Value) -> Result<(), MemberError> {
    let (api_version, kind) =
        (doc["apiVersion"].as_str().unwrap_or_default(), doc["kind"].as_str().unwrap_or_default());
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = format!("{}s", kind.to_lowercase());
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(name, &PatchParams::apply("localcluster").force(), &Patch::Apply(doc))
        .await
        .map_err(api_err(format!("applying {kind} {name}")))?;
    Ok(())
}

/// Ensures a namespace exists.
async fn namespace(client: &kube::Client, name: &str) -> Result<(), MemberError> {
    let doc = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    apply(client, &doc).await
}

/// Installs the chart's member identity into `member` for Malls in `namespaces` and returns a
/// self-contained kubeconfig of it (token and CA embedded).
pub async fn install_member_identity(
    member: &LocalCluster,
    repo_root: &Path,
    namespaces: &[&str],
) -> Result<String, MemberError> {
    let docs = render_member_chart(repo_root, member.tools_dir(), namespaces)?;
    let client = member.client();
    namespace(&client, IDENTITY_NAMESPACE).await?;
    for ns in namespaces {
        namespace(&client, ns).await?;
    }
    for doc in &docs {
        apply(&client, doc).await?;
    }
    let account = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .and_then(|d| d["metadata"]["name"].as_str())
        .ok_or(MemberError::NoServiceAccount)?;
    let token =
        member.service_account_token(IDENTITY_NAMESPACE, account).await.map_err(|e| MemberError::Token(Box::new(e)))?;
    Ok(embedded_kubeconfig(member.name(), &member.server(), member.pki().ca_pem().as_bytes(), &token))
}

/// A kubeconfig for `server` trusting the CA `ca_pem` (embedded) with a bearer `token`.
pub fn embedded_kubeconfig(name: &str, server: &str, ca_pem: &[u8], token: &str) -> String {
    let ca = serde_json::to_value(ByteString(ca_pem.to_vec())).unwrap_or_default();
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Stores `kubeconfig` under `key` in Secret `namespace/name` of the hub (creating the
/// namespace), replacing what it held.
pub async fn put_kubeconfig_secret(
    hub: &kube::Client,
    namespace_name: &str,
    name: &str,
    key: &str,
    kubeconfig: &str,
) -> Result<(), MemberError> {
    namespace(hub, namespace_name).await?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some([(key.to_string(), ByteString(kubeconfig.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    let mut doc = serde_json::to_value(&secret).unwrap_or_default();
    doc["apiVersion"] = json!("v1");
    doc["kind"] = json!("Secret");
    let api: Api<Secret> = Api::namespaced(hub.clone(), namespace_name);
    api.patch(name, &PatchParams::apply("localcluster").force(), &Patch::Apply(&doc))
        .await
        .map_err(api_err(format!("applying Secret {namespace_name}/{name}")))?;
    Ok(())
}

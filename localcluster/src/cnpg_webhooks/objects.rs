//! The API objects behind [`super::CnpgWebhooks`]: the namespaces, the ExternalName Service,
//! the two webhook configurations rewritten from CloudNativePG's own manifests, and the
//! readiness probe.
//!
//! Contract: everything is applied with server-side apply (field manager
//! `localcluster-cnpg-webhooks`, forced), so applying again (a restart, a new port) replaces
//! the previous values; the manifests' paths, rules and failure policies are kept as shipped.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ServiceReference, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::{
    CnpgWebhooksError, FIELD_MANAGER, IDLE_NAMESPACE, MUTATING_CONFIGURATION, OPERATOR_NAMESPACE, SERVICE_NAME, Setup,
    VALIDATING_CONFIGURATION, api_err,
};

/// A Cluster CloudNativePG refuses with [`PROBE_REFUSAL`] (only ever created with dry-run).
pub(super) fn probe_cluster() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": { "name": "cnpg-webhooks-probe", "namespace": IDLE_NAMESPACE },
        "spec": {
            "instances": 1,
            "storage": { "size": "1Gi" },
            "bootstrap": { "initdb": {}, "recovery": { "backup": { "name": "probe" } } }
        }
    })
}

pub(super) async fn apply_namespaces_and_service(client: &kube::Client, port: u16) -> Result<(), CnpgWebhooksError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [OPERATOR_NAMESPACE, IDLE_NAMESPACE] {
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
        namespaces
            .patch(name, &params, &Patch::Apply(&ns))
            .await
            .map_err(api_err(format!("apply Namespace {name}")))?;
    }
    let service = Service {
        metadata: ObjectMeta {
            name: Some(SERVICE_NAME.into()),
            namespace: Some(OPERATOR_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("127.0.0.1".into()),
            ports: Some(vec![ServicePort {
                name: Some("webhook-server".into()),
                port: i32::from(port),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Service>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .patch(SERVICE_NAME, &params, &Patch::Apply(&service))
        .await
        .map_err(api_err(format!("apply Service {OPERATOR_NAMESPACE}/{SERVICE_NAME}")))?;
    Ok(())
}

/// The client configuration every CloudNativePG webhook gets: the Service on `port`, the
/// module's own path, the cluster CA.
fn client_config(original: &WebhookClientConfig, port: u16, ca_pem: &str) -> WebhookClientConfig {
    let path = original.service.as_ref().and_then(|s| s.path.clone());
    WebhookClientConfig {
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
        service: Some(ServiceReference {
            name: SERVICE_NAME.into(),
            namespace: OPERATOR_NAMESPACE.into(),
            path,
            port: Some(i32::from(port)),
        }),
        url: None,
    }
}

pub(super) async fn apply_configurations(
    client: &kube::Client,
    setup: &Setup,
    port: u16,
    ca_pem: &str,
) -> Result<(), CnpgWebhooksError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let shape = |what: &str| {
        let what = what.to_string();
        let path = setup.manifests_path.clone();
        move |source| CnpgWebhooksError::Shape { path, what, source }
    };
    let (mut mutating, mut validating) = (0, 0);
    for doc in &setup.manifests {
        match doc.get("kind").and_then(|k| k.as_str()) {
            Some("MutatingWebhookConfiguration") => {
                let mut config: MutatingWebhookConfiguration =
                    serde_json::from_value(doc.clone()).map_err(shape("a MutatingWebhookConfiguration"))?;
                config.metadata = ObjectMeta { name: Some(MUTATING_CONFIGURATION.into()), ..Default::default() };
                for hook in config.webhooks.iter_mut().flatten() {
                    hook.client_config = client_config(&hook.client_config, port, ca_pem);
                }
                Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .patch(MUTATING_CONFIGURATION, &params, &Patch::Apply(&config))
                    .await
                    .map_err(api_err(format!("apply {MUTATING_CONFIGURATION}")))?;
                mutating += 1;
            }
            Some("ValidatingWebhookConfiguration") => {
                let mut config: ValidatingWebhookConfiguration =
                    serde_json::from_value(doc.clone()).map_err(shape("a ValidatingWebhookConfiguration"))?;
                config.metadata = ObjectMeta { name: Some(VALIDATING_CONFIGURATION.into()), ..Default::default() };
                for hook in config.webhooks.iter_mut().flatten() {
                    hook.client_config = client_config(&hook.client_config, port, ca_pem);
                }
                Api::<ValidatingWebhookConfiguration>::all(client.clone())
                    .patch(VALIDATING_CONFIGURATION, &params, &Patch::Apply(&config))
                    .await
                    .map_err(api_err(format!("apply {VALIDATING_CONFIGURATION}")))?;
                validating += 1;
            }
            _ => {}
        }
    }
    if (mutating, validating) != (1, 1) {
        return Err(CnpgWebhooksError::Shape {
            path: setup.manifests_path.clone(),
            what: format!("expected one mutating and one validating configuration, found {mutating} and {validating}"),
            source: <serde_json::Error as serde::de::Error>::custom("unexpected document kinds"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_points_at_the_service_port_with_the_ca() {
        let original = WebhookClientConfig {
            service: Some(ServiceReference {
                name: "webhook-service".into(),
                namespace: "system".into(),
                path: Some("/validate-postgresql-cnpg-io-v1-cluster".into()),
                port: None,
            }),
            ..Default::default()
        };
        let config = client_config(&original, 40123, "PEM");
        let service = config.service.expect("service");
        assert_eq!(service.name, SERVICE_NAME);
        assert_eq!(service.namespace, OPERATOR_NAMESPACE);
        assert_eq!(service.port, Some(40123));
        assert_eq!(service.path.as_deref(), Some("/validate-postgresql-cnpg-io-v1-cluster"));
        assert_eq!(config.ca_bundle, Some(ByteString(b"PEM".to_vec())));
    }

    #[test]
    fn probe_has_two_bootstrap_methods() {
        let probe = probe_cluster();
        let bootstrap = &probe["spec"]["bootstrap"];
        assert!(bootstrap.get("initdb").is_some() && bootstrap.get("recovery").is_some());
    }
}

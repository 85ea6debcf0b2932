//! Secret values where they must never appear: the operator's log, Events, the Malls' status and
//! ConfigMaps.
//!
//! Contract: [`secret_leaks`] reads every Secret the operator manages in the namespaces given
//! (label `app.kubernetes.io/managed-by=mall-operator`), takes each data value of 12 bytes or
//! more (passwords, tokens, connection strings holding them; short values such as a port are
//! not secrets), and returns one line per place one of them appears, naming the Secret and key
//! and never the value. List errors panic: a scan that could not look is not a clean scan.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use mall_crds::Mall;

/// Values shorter than this are not treated as secret (ports, booleans, short names).
const MIN_LEN: usize = 12;

/// Where the managed Secrets' values appear in `operator_log`, Events, Mall status or ConfigMaps
/// of `namespaces`; empty when nowhere. Also returns how many values were looked for.
pub async fn secret_leaks(client: &kube::Client, namespaces: &[&str], operator_log: &str) -> (Vec<String>, usize) {
    let selector = ListParams::default().labels("app.kubernetes.io/managed-by=mall-operator");
    let mut values: Vec<(String, String)> = Vec::new();
    for ns in namespaces {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let list = secrets.list(&selector).await.unwrap_or_else(|e| panic!("listing Secrets in {ns}: {e}"));
        for s in list {
            let name = s.metadata.name.clone().unwrap_or_default();
            for (key, value) in s.data.unwrap_or_default() {
                if let Ok(text) = String::from_utf8(value.0)
                    && text.len() >= MIN_LEN
                {
                    values.push((format!("Secret {ns}/{name} key {key}"), text));
                }
            }
        }
    }
    let mut places: Vec<(String, String)> = vec![("the operator log".into(), operator_log.to_string())];
    for ns in namespaces {
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        for e in events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing Events in {ns}: {e}")) {
            let text = format!("{} {}", e.note.unwrap_or_default(), e.reason.unwrap_or_default());
            places.push((format!("Event {ns}/{}", e.metadata.name.unwrap_or_default()), text));
        }
        let malls: Api<Mall> = Api::namespaced(client.clone(), ns);
        for m in malls.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing Malls in {ns}: {e}")) {
            let status = serde_json::to_string(&m.status).unwrap_or_default();
            places.push((format!("the status of Mall {ns}/{}", m.metadata.name.unwrap_or_default()), status));
        }
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for c in maps.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing ConfigMaps in {ns}: {e}")) {
            let data = serde_json::to_string(&c.data).unwrap_or_default();
            places.push((format!("ConfigMap {ns}/{}", c.metadata.name.unwrap_or_default()), data));
        }
    }
    let mut leaks = Vec::new();
    for (secret, value) in &values {
        for (place, text) in &places {
            if text.contains(value.as_str()) {
                leaks.push(format!("{secret} appears in {place}"));
            }
        }
    }
    (leaks, values.len())
}

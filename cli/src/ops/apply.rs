//! `mallctl apply -f FILE [--wait] [--timeout]`: validate offline, server-side apply, and
//! optionally wait until every applied Mall is Ready.
//!
//! Contract: every document must be a valid Mall (checked offline first, exactly as the API
//! server would: nothing is sent when one is invalid); each is applied with field manager
//! `mallctl` into its own namespace or `-n`. With `--wait`, its progress is shown on stderr
//! ([`super::progress`]: live per-tier bars on a terminal, one line per change of its tiers or
//! conditions otherwise) until it is Ready for its new generation; on timeout the command fails
//! naming the condition that blocks (`Ready=False NotServing: ...`).

use super::progress::{Progress, stale};
use super::{KubeArgs, condition, is_ready};
use crate::input::read_documents;
use anyhow::{Context as _, bail};
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Runs `apply`.
pub async fn run(kube: &KubeArgs, files: &[String], wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for file in files {
        for doc in read_documents(file)? {
            mall_controllers::validate::validate_value(&doc.value, None).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            docs.push(doc.value);
        }
    }
    let conn = kube.connect().await?;
    let mut applied = Vec::new();
    for mut doc in docs {
        let namespace = kube
            .namespace
            .clone()
            .or_else(|| doc["metadata"]["namespace"].as_str().map(str::to_string))
            .unwrap_or_else(|| conn.namespace.clone());
        doc["metadata"]["namespace"] = Value::String(namespace.clone());
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let api: Api<Mall> = Api::namespaced(conn.client.clone(), &namespace);
        let mall = api
            .patch(&name, &PatchParams::apply("mallctl").force(), &Patch::Apply(&doc))
            .await
            .with_context(|| format!("applying Mall {namespace}/{name}"))?;
        println!("mall {namespace}/{name} applied (generation {})", mall.metadata.generation.unwrap_or(0));
        applied.push((api, name, namespace));
    }
    if !wait {
        return Ok(());
    }
    let start = Instant::now();
    for (api, name, namespace) in applied {
        let mut progress = Progress::new(&format!("{namespace}/{name}"));
        loop {
            let mall = api.get(&name).await.with_context(|| format!("reading Mall {namespace}/{name}"))?;
            progress.show(&mall);
            if is_ready(&mall) {
                progress.finish();
                println!("mall {namespace}/{name} Ready after {:.1}s", start.elapsed().as_secs_f64());
                break;
            }
            if start.elapsed() >= timeout {
                progress.finish();
                let blocking = match (stale(&mall), condition(&mall, "Ready")) {
                    (Some(stale), _) => format!(
                        "generation {} not observed yet{stale}; is the operator running?",
                        mall.metadata.generation.unwrap_or(0)
                    ),
                    (None, Some(c)) => format!("Ready={} {}: {}", c.0, c.1, c.2),
                    (None, None) => "no status yet (is the operator running?)".into(),
                };
                bail!("mall {namespace}/{name} not Ready after {timeout:?}: {blocking}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

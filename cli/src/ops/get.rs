//! `mallctl get [NAME]`: Malls of a namespace (or one), as a table, wide table, YAML or JSON.
//!
//! Contract: a missing NAME is an error naming it and the namespace; an empty namespace prints
//! `No Malls in namespace NS.` on stderr and exits 0, as kubectl does.

use super::{KubeArgs, Output, age, condition, table};
use anyhow::{Context as _, bail};
use kube::api::{Api, ListParams};
use mall_crds::Mall;

fn row(mall: &Mall, wide: bool) -> Vec<String> {
    let status = mall.status.clone().unwrap_or_default();
    let tiers = status.tiers.clone().unwrap_or_default();
    let ready = condition(mall, "Ready").map_or_else(|| "Unknown".into(), |c| c.0);
    let mut cells = vec![
        mall.metadata.name.clone().unwrap_or_default(),
        ready,
        status.active_region.clone().unwrap_or_else(|| "-".into()),
        format!("{}/{}", tiers.storefront.ready, tiers.storefront.desired),
        format!("{}/{}", tiers.database.ready, tiers.database.desired),
        age(mall.metadata.creation_timestamp.as_ref()),
    ];
    if wide {
        let regions: Vec<&str> = mall.spec.regions.iter().map(|r| r.name.as_str()).collect();
        cells.insert(5, if regions.is_empty() { "-".into() } else { regions.join(",") });
        cells.insert(6, status.failover_epoch.to_string());
        let message = match condition(mall, "Degraded") {
            Some((s, reason, message)) if s == "True" => format!("{reason}: {message}"),
            _ => condition(mall, "Ready").filter(|c| c.0 != "True").map(|c| c.2).unwrap_or_default(),
        };
        cells.push(message.chars().take(120).collect());
    }
    cells
}

/// Runs `get`.
pub async fn run(kube: &KubeArgs, name: Option<&str>, output: Output) -> anyhow::Result<()> {
    let conn = kube.connect().await?;
    let api: Api<Mall> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let malls: Vec<Mall> = match name {
        Some(name) => {
            match api.get_opt(name).await.with_context(|| format!("reading Mall {}/{name}", conn.namespace))? {
                Some(mall) => vec![mall],
                None => bail!("Mall {name:?} not found in namespace {}", conn.namespace),
            }
        }
        None => {
            api.list(&ListParams::default())
                .await
                .with_context(|| format!("listing Malls in {}", conn.namespace))?
                .items
        }
    };
    match output {
        Output::Json => {
            let value = if name.is_some() {
                serde_json::to_value(&malls[0])?
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": malls})
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Yaml => {
            for mall in &malls {
                println!("---\n{}", serde_saphyr::to_string(mall)?.trim_end());
            }
        }
        Output::Table | Output::Wide => {
            if malls.is_empty() {
                eprintln!("No Malls in namespace {}.", conn.namespace);
                return Ok(());
            }
            let wide = output == Output::Wide;
            let mut header: Vec<String> =
                ["NAME", "READY", "ACTIVE", "STOREFRONT", "DATABASE", "AGE"].iter().map(|s| s.to_string()).collect();
            if wide {
                header.insert(5, "REGIONS".into());
                header.insert(6, "EPOCH".into());
                header.push("MESSAGE".into());
            }
            let mut rows = vec![header];
            rows.extend(malls.iter().map(|m| row(m, wide)));
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

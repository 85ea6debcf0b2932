//! `mallctl status NAME`: one Mall as an operator reads it — tiers, shards and their primaries,
//! regions (where each runs, health, database role, failed probes, last error) and the active
//! one, the failover epoch, the last failover or switchover, a switchover in progress, the last
//! `failover`/`switchover` request's outcome, the last scaling decision, conditions and the most
//! recent Events.
//!
//! Contract: read-only; a missing Mall is an error naming it; Events are those whose regarding
//! object is the Mall (events.k8s.io/v1), newest last, at most ten.

use super::{KubeArgs, age, table};
use anyhow::{Context as _, bail};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use mall_crds::Mall;
use std::fmt::Write as _;

/// The report of `status`, as text.
pub fn report(mall: &Mall, events: &[Event]) -> String {
    let mut out = String::new();
    let status = mall.status.clone().unwrap_or_default();
    let name = mall.metadata.name.clone().unwrap_or_default();
    let namespace = mall.metadata.namespace.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "Mall {namespace}/{name} (generation {}, observed {})",
        mall.metadata.generation.unwrap_or(0),
        status.observed_generation.unwrap_or(0)
    );
    let tiers = status.tiers.clone().unwrap_or_default();
    let _ = writeln!(out, "\nTiers (ready/desired)");
    let mut rows =
        vec![vec!["storefront".to_string(), format!("{}/{}", tiers.storefront.ready, tiers.storefront.desired)]];
    rows.push(vec![
        "database".into(),
        format!(
            "{}/{} instances in {} shard cluster(s)",
            tiers.database.ready,
            tiers.database.desired,
            status.shards.len()
        ),
    ]);
    if let Some(c) = tiers.cache {
        rows.push(vec!["cache".into(), format!("{}/{}", c.ready, c.desired)]);
    }
    if let Some(c) = tiers.edge {
        rows.push(vec!["edge".into(), format!("{}/{}", c.ready, c.desired)]);
    }
    out.push_str(&indent(&table(&rows)));
    if !status.shards.is_empty() {
        let _ = writeln!(out, "\nShards");
        let mut rows = vec![["SHARD", "CLUSTER", "PHASE", "INSTANCES", "PRIMARY"].map(String::from).to_vec()];
        for s in &status.shards {
            rows.push(vec![
                s.index.to_string(),
                s.cluster.clone(),
                s.phase.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", s.instances.ready, s.instances.desired),
                s.primary.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&indent(&table(&rows)));
    }
    if !mall.spec.regions.is_empty() {
        let _ = writeln!(
            out,
            "\nRegions (active: {}, failover epoch {})",
            status.active_region.as_deref().unwrap_or("-"),
            status.failover_epoch
        );
        let mut rows = vec![
            ["REGION", "ROLE", "CLUSTER", "HEALTH", "DATABASE", "FAILURES", "LAST ERROR"].map(String::from).to_vec(),
        ];
        for r in &mall.spec.regions {
            let observed = status.regions.iter().find(|h| h.name == r.name);
            let cluster =
                r.cluster.as_ref().map_or_else(|| "operator's cluster".into(), |c| format!("Secret {}", c.secret_name));
            rows.push(vec![
                r.name.clone(),
                format!("{:?}", r.role).to_lowercase(),
                cluster,
                observed.map_or_else(|| "-".into(), |h| h.health.clone()),
                observed.and_then(|h| h.role.clone()).unwrap_or_else(|| "-".into()),
                observed.map_or_else(|| "-".into(), |h| h.consecutive_failures.to_string()),
                observed
                    .and_then(|h| h.last_error.clone())
                    .map_or_else(|| "-".into(), |e| e.chars().take(100).collect()),
            ]);
        }
        out.push_str(&indent(&table(&rows)));
    }
    failover_sections(&mut out, &status);
    if let Some(s) = &status.last_scaling {
        let _ = writeln!(out, "\nLast scaling\n  {} {} {} → {}: {}", s.time, s.tier, s.from, s.to, s.reason);
    }
    let _ = writeln!(out, "\nConditions");
    let mut rows = vec![["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"].map(String::from).to_vec()];
    for c in &status.conditions {
        rows.push(vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            age(Some(&c.last_transition_time)),
            c.message.clone(),
        ]);
    }
    out.push_str(&indent(&table(&rows)));
    let _ = writeln!(out, "\nEvents");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        let mut rows = vec![["TYPE", "REASON", "AGE", "FROM", "MESSAGE"].map(String::from).to_vec()];
        for e in events {
            rows.push(vec![
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                age(e
                    .event_time
                    .as_ref()
                    .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.0))
                    .as_ref()
                    .or(e.metadata.creation_timestamp.as_ref())),
                e.reporting_controller.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default().chars().take(160).collect(),
            ]);
        }
        out.push_str(&indent(&table(&rows)));
    }
    out
}

/// The last failover or switchover, a switchover in progress, the last request's outcome.
fn failover_sections(out: &mut String, status: &mall_crds::MallStatus) {
    if let Some(f) = &status.last_failover {
        let rto = f.rto_milliseconds.map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        let _ = writeln!(out, "\nLast failover");
        let _ = writeln!(
            out,
            "  {} {} → {}, epoch {}, RTO {rto}, RPO {}: {}",
            f.kind, f.from, f.to, f.epoch, f.rpo, f.reason
        );
        let completed = f.completed.as_deref().unwrap_or("not yet");
        let _ = writeln!(out, "  started {}, completed {completed}", f.started);
    }
    if let Some(s) = &status.switchover {
        let _ =
            writeln!(out, "\nSwitchover in progress: {} → {}, epoch {}, started {}", s.from, s.to, s.epoch, s.started);
        let mut rows = vec![["SHARD", "DEMOTION TOKEN", "PROMOTED"].map(String::from).to_vec()];
        for shard in &s.shards {
            let token = if shard.demotion_token.is_some() { "read" } else { "pending" };
            rows.push(vec![shard.index.to_string(), token.into(), if shard.promoted { "yes" } else { "no" }.into()]);
        }
        out.push_str(&indent(&table(&rows)));
    }
    if let Some(r) = &status.last_request {
        let _ = writeln!(out, "\nLast request\n  {}: {}: {}", r.id, r.outcome, r.message);
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Runs `status`.
pub async fn run(kube: &KubeArgs, name: &str) -> anyhow::Result<()> {
    let conn = kube.connect().await?;
    let api: Api<Mall> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let Some(mall) = api.get_opt(name).await.with_context(|| format!("reading Mall {}/{name}", conn.namespace))? else {
        bail!("Mall {name:?} not found in namespace {}", conn.namespace);
    };
    let events: Api<Event> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let uid = mall.metadata.uid.clone().unwrap_or_default();
    let mut list: Vec<Event> = events
        .list(&ListParams::default().fields(&format!("regarding.uid={uid}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    let recent = list.split_off(list.len().saturating_sub(10));
    print!("{}", report(&mall, &recent));
    Ok(())
}

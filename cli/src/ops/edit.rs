//! `mallctl scale` and `mallctl event add|list|remove`: small changes to a live Mall's
//! autoscaling, validated like `mallctl validate` before anything is sent.
//!
//! Contract: a change is a read-modify-write of the live Mall: its spec is changed in memory,
//! the whole Mall validated offline (the same verdicts as the API server; a refusal prints
//! `spec.path: message` and sends nothing), then sent as a JSON merge patch of
//! `spec.autoscaling` carrying the read's `resourceVersion`, so a concurrent change is never
//! overwritten: on a conflict the Mall is read again and the change re-made (at most
//! [`ATTEMPTS`] times), as field manager [`FIELD_MANAGER`]. A missing Mall, a Mall without `spec.autoscaling`, a tier or event that
//! does not exist (or already exists, for `add`) are errors naming it. `event list` prints the
//! events as a table (or YAML/JSON) with their state at this moment.

use super::{KubeArgs, Output, table};
use anyhow::{Context as _, bail};
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use serde_json::{Value, json};

/// Field manager of the edits (an update, as `kubectl scale` is; `mallctl apply` is `mallctl`).
pub const FIELD_MANAGER: &str = "mallctl-edit";

/// Read-modify-write attempts before a conflict is reported.
pub const ATTEMPTS: usize = 3;

/// A tier the autoscaler sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    /// The storefront Deployment(s).
    Storefront,
    /// The cache.
    Cache,
    /// The database (instances per shard).
    Database,
}

impl Tier {
    fn field(self) -> &'static str {
        match self {
            Tier::Storefront => "storefront",
            Tier::Cache => "cache",
            Tier::Database => "database",
        }
    }
}

/// What `scale` changes.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The tier.
    pub tier: Tier,
    /// New minimum.
    pub min: Option<i32>,
    /// New maximum.
    pub max: Option<i32>,
    /// New load per replica (needed to add a tier that is not autoscaled yet).
    pub target_per_replica: Option<f64>,
}

/// A promotion to add.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Event name.
    pub name: String,
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
    /// Warm-up before the start.
    pub warmup: Option<String>,
    /// Traffic multiplier.
    pub multiplier: Option<f64>,
    /// Storefront replicas at the start at the least.
    pub min_replicas: Option<i32>,
}

/// The autoscaling object of a spec, or an error saying the Mall is not autoscaled.
fn autoscaling<'a>(spec: &'a mut Value, mall: &str) -> anyhow::Result<&'a mut serde_json::Map<String, Value>> {
    match spec.get_mut("autoscaling").and_then(Value::as_object_mut) {
        Some(a) => Ok(a),
        None => {
            bail!("Mall {mall} has no spec.autoscaling: it is not autoscaled (add spec.autoscaling with mallctl apply)")
        }
    }
}

/// Sets a tier's bounds in `spec` (see [`Bounds`]); returns what changed, in words.
pub fn scale(spec: &mut Value, mall: &str, bounds: Bounds) -> anyhow::Result<String> {
    let field = bounds.tier.field();
    let scaling = autoscaling(spec, mall)?;
    if bounds.min.is_none() && bounds.max.is_none() && bounds.target_per_replica.is_none() {
        bail!("nothing to change: pass --min, --max or --target-per-replica");
    }
    let tier = match scaling.get_mut(field) {
        Some(Value::Object(tier)) => tier,
        _ => {
            let (Some(min), Some(max), Some(target)) = (bounds.min, bounds.max, bounds.target_per_replica) else {
                bail!(
                    "spec.autoscaling.{field} is not set: the {field} tier is not autoscaled; pass --min, --max and \
                     --target-per-replica to add it"
                );
            };
            scaling.insert(field.into(), json!({"min": min, "max": max, "targetPerReplica": target}));
            return Ok(format!("{field} autoscaled from {min} to {max} replicas at {target} per replica"));
        }
    };
    let mut changes = Vec::new();
    for (key, value) in [("min", bounds.min.map(Value::from)), ("max", bounds.max.map(Value::from))]
        .into_iter()
        .chain([("targetPerReplica", bounds.target_per_replica.map(Value::from))])
    {
        if let Some(value) = value {
            let old = tier.insert(key.into(), value.clone()).unwrap_or(Value::Null);
            changes.push(format!("{key} {} -> {value}", if old.is_null() { "-".into() } else { old.to_string() }));
        }
    }
    Ok(format!("{field}: {}", changes.join(", ")))
}

/// Adds `event` to `spec` (an event of that name must not exist yet).
pub fn add_event(spec: &mut Value, mall: &str, event: &NewEvent) -> anyhow::Result<String> {
    let scaling = autoscaling(spec, mall)?;
    let events = scaling.entry("events").or_insert_with(|| json!([]));
    let Some(list) = events.as_array_mut() else { bail!("spec.autoscaling.events is not a list") };
    if list.iter().any(|e| e["name"] == event.name.as_str()) {
        bail!("Mall {mall} already has an event {:?}: remove it first (mallctl event remove)", event.name);
    }
    let mut value = json!({"name": event.name, "start": event.start, "end": event.end});
    if let Some(w) = &event.warmup {
        value["warmup"] = json!(w);
    }
    if let Some(m) = event.multiplier {
        value["multiplier"] = json!(m);
    }
    if let Some(r) = event.min_replicas {
        value["minReplicas"] = json!(r);
    }
    list.push(value);
    Ok(format!("event {} added ({} to {})", event.name, event.start, event.end))
}

/// Removes the event `name` from `spec`.
pub fn remove_event(spec: &mut Value, mall: &str, name: &str) -> anyhow::Result<String> {
    let scaling = autoscaling(spec, mall)?;
    let list = scaling.get_mut("events").and_then(Value::as_array_mut);
    let Some(list) = list.filter(|l| l.iter().any(|e| e["name"] == name)) else {
        bail!("Mall {mall} has no event {name:?}");
    };
    list.retain(|e| e["name"] != name);
    Ok(format!("event {name} removed"))
}

/// Reads Mall `name`, applies `change` to its spec, validates and patches it (module header).
/// Returns the patched Mall and what changed.
pub async fn edit(
    kube: &KubeArgs,
    name: &str,
    change: impl Fn(&mut Value) -> anyhow::Result<String>,
) -> anyhow::Result<(Mall, String)> {
    let conn = kube.connect().await?;
    let api: Api<Mall> = Api::namespaced(conn.client.clone(), &conn.namespace);
    for attempt in 1..=ATTEMPTS {
        let Some(live) = api.get_opt(name).await.with_context(|| format!("reading Mall {}/{name}", conn.namespace))?
        else {
            bail!("Mall {name:?} not found in namespace {}", conn.namespace);
        };
        let mut value = serde_json::to_value(&live)?;
        let said = change(&mut value["spec"])?;
        if let Err(invalid) = mall_controllers::validate::validate_value(&value, None) {
            let lines: Vec<String> = invalid.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            bail!("the change makes Mall {name} invalid (nothing sent):\n{}", lines.join("\n"));
        }
        let patch = json!({
            "metadata": {"resourceVersion": live.metadata.resource_version},
            "spec": {"autoscaling": value["spec"]["autoscaling"]},
        });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(mall) => return Ok((mall, said)),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e).with_context(|| format!("patching Mall {}/{name}", conn.namespace)),
        }
    }
    bail!("Mall {name} kept changing during {ATTEMPTS} attempts; run the command again")
}

/// Prints the events of Mall `name` (table: NAME, START, END, WARMUP, MULTIPLIER, MIN, STATE).
pub async fn list_events(kube: &KubeArgs, name: &str, output: Output) -> anyhow::Result<()> {
    let conn = kube.connect().await?;
    let api: Api<Mall> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let Some(mall) = api.get_opt(name).await.with_context(|| format!("reading Mall {}/{name}", conn.namespace))? else {
        bail!("Mall {name:?} not found in namespace {}", conn.namespace);
    };
    let events = mall.spec.autoscaling.as_ref().map(|a| a.events.clone()).unwrap_or_default();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&events)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&events)?),
        Output::Table | Output::Wide => {
            if events.is_empty() {
                eprintln!("Mall {name} has no events.");
                return Ok(());
            }
            let now = chrono::Utc::now();
            let mut rows =
                vec![["NAME", "START", "END", "WARMUP", "MULTIPLIER", "MIN", "STATE"].map(String::from).to_vec()];
            for e in &events {
                rows.push(vec![
                    e.name.clone(),
                    e.start.clone(),
                    e.end.clone(),
                    e.warmup.clone(),
                    e.multiplier.map_or_else(|| "-".into(), |m| format!("{m}x")),
                    e.min_replicas.map_or_else(|| "-".into(), |m| m.to_string()),
                    state(e, now),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

/// `upcoming`, `warming up`, `running` or `over`, at `now`.
fn state(event: &mall_crds::autoscaling::ScalingEvent, now: chrono::DateTime<chrono::Utc>) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc));
    let warmup = mall_crds::common::parse_duration(&event.warmup);
    match (parse(&event.start), parse(&event.end)) {
        (Some(start), Some(end)) => {
            let warm_from = warmup.and_then(|w| chrono::Duration::from_std(w).ok()).map_or(start, |w| start - w);
            if now >= end {
                "over".into()
            } else if now >= start {
                "running".into()
            } else if now >= warm_from {
                "warming up".into()
            } else {
                "upcoming".into()
            }
        }
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({"autoscaling": {"prometheus": {"url": "http://127.0.0.1:9090"},
            "storefront": {"min": 2, "max": 10, "targetPerReplica": 50.0}}})
    }

    #[test]
    fn scale_changes_the_bounds_and_adds_a_tier_only_when_complete() {
        let mut s = spec();
        let bounds = Bounds { tier: Tier::Storefront, min: Some(4), max: None, target_per_replica: None };
        assert_eq!(scale(&mut s, "shop", bounds).unwrap(), "storefront: min 2 -> 4");
        assert_eq!(s["autoscaling"]["storefront"]["min"], 4);
        let partial = Bounds { tier: Tier::Cache, min: Some(1), max: Some(3), target_per_replica: None };
        let err = scale(&mut s, "shop", partial).unwrap_err().to_string();
        assert!(err.contains("spec.autoscaling.cache is not set"), "{err}");
        let full = Bounds { target_per_replica: Some(500.0), ..partial };
        scale(&mut s, "shop", full).unwrap();
        assert_eq!(s["autoscaling"]["cache"], json!({"min": 1, "max": 3, "targetPerReplica": 500.0}));
        let none = Bounds { tier: Tier::Cache, min: None, max: None, target_per_replica: None };
        assert!(scale(&mut s, "shop", none).is_err());
        let err = scale(&mut json!({}), "shop", bounds).unwrap_err().to_string();
        assert!(err.contains("has no spec.autoscaling"), "{err}");
    }

    #[test]
    fn events_are_added_once_and_removed_by_name() {
        let mut s = spec();
        let event = NewEvent {
            name: "double-eleven".into(),
            start: "2026-11-11T00:00:00+08:00".into(),
            end: "2026-11-12T00:00:00+08:00".into(),
            warmup: Some("30m".into()),
            multiplier: Some(8.0),
            min_replicas: None,
        };
        add_event(&mut s, "shop", &event).unwrap();
        assert_eq!(s["autoscaling"]["events"][0]["multiplier"], 8.0);
        assert!(add_event(&mut s, "shop", &event).unwrap_err().to_string().contains("already has an event"));
        assert!(remove_event(&mut s, "shop", "black-friday").unwrap_err().to_string().contains("no event"));
        remove_event(&mut s, "shop", "double-eleven").unwrap();
        assert_eq!(s["autoscaling"]["events"], json!([]));
    }

    #[test]
    fn event_states_follow_the_clock() {
        let event: mall_crds::autoscaling::ScalingEvent = serde_json::from_value(json!({"name": "d", "start":
            "2026-11-11T00:00:00Z", "end": "2026-11-11T02:00:00Z", "warmup": "30m", "multiplier": 2.0}))
        .unwrap();
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc);
        assert_eq!(state(&event, at("2026-11-10T23:00:00Z")), "upcoming");
        assert_eq!(state(&event, at("2026-11-10T23:45:00Z")), "warming up");
        assert_eq!(state(&event, at("2026-11-11T01:00:00Z")), "running");
        assert_eq!(state(&event, at("2026-11-11T02:00:00Z")), "over");
    }
}

//! `mallctl failover NAME --to REGION` and `mallctl switchover NAME --to REGION`: check the
//! request against the Mall, write it as the `mallctl.io/request` annotation, and optionally
//! wait for the operator's answer.
//!
//! Contract: nothing is written when a pre-check refuses (exit 1, one line naming why): the Mall
//! must exist and have at least two regions, REGION must be one of them and not the active one;
//! a switchover needs REGION and the active region `Healthy` and no switchover in progress; a
//! failover needs REGION `Healthy` unless `--force`. The request is a JSON merge patch of the
//! annotation ([`mall_crds::FailoverRequest`], id `<unix-millis>-<pid>`). Without `--wait` the
//! command prints `ACTION of NAME to REGION requested (request ID)`; with it, see [`super::watch`].

use super::{KubeArgs, watch};
use anyhow::Context as _;
use kube::api::{Api, Patch, PatchParams};
use mall_crds::{FailoverRequest, Mall, REQUEST_ANNOTATION, RequestAction};
use std::time::Duration;

/// Why a request was not written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No such Mall.
    #[error("Mall {name:?} not found in namespace {namespace}")]
    NotFound {
        /// Mall name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// Fewer than two regions.
    #[error("{action} needs at least two regions: Mall {mall} has {count} (spec.regions)")]
    TooFewRegions {
        /// `failover` or `switchover`.
        action: &'static str,
        /// `namespace/name`.
        mall: String,
        /// Regions in the spec.
        count: usize,
    },
    /// REGION is not a region of the Mall.
    #[error("region {to:?} is not a region of Mall {mall} (regions: {regions})")]
    UnknownRegion {
        /// The requested region.
        to: String,
        /// `namespace/name`.
        mall: String,
        /// The Mall's regions, comma-separated.
        regions: String,
    },
    /// REGION is the active region already.
    #[error("region {to:?} is already active in Mall {mall} (failover epoch {epoch})")]
    AlreadyActive {
        /// The requested region.
        to: String,
        /// `namespace/name`.
        mall: String,
        /// Current epoch.
        epoch: i64,
    },
    /// A switchover is running.
    #[error("a switchover of Mall {mall} from {from} to {to} (epoch {epoch}) is already in progress")]
    SwitchoverInProgress {
        /// `namespace/name`.
        mall: String,
        /// Its source.
        from: String,
        /// Its target.
        to: String,
        /// Its epoch.
        epoch: i64,
    },
    /// A region the action needs is not Healthy.
    #[error("{action} refused: {which} region {region:?} is {health}{detail}")]
    Unhealthy {
        /// `failover` or `switchover`.
        action: &'static str,
        /// `target` or `active`.
        which: &'static str,
        /// Region name.
        region: String,
        /// Its health.
        health: String,
        /// `: last error`, and the hint about `--force`.
        detail: String,
    },
}

/// The active region: `status.activeRegion`, else the spec's primary region.
pub fn active_region(mall: &Mall) -> Option<String> {
    mall.status
        .as_ref()
        .and_then(|s| s.active_region.clone())
        .or_else(|| mall.spec.regions.iter().find(|r| r.role == mall_crds::RegionRole::Primary).map(|r| r.name.clone()))
}

/// The health of a region as the status reports it (`Unknown` when not probed yet), and its
/// last error.
fn health(mall: &Mall, region: &str) -> (String, Option<String>) {
    let found = mall.status.as_ref().and_then(|s| s.regions.iter().find(|r| r.name == region));
    match found {
        Some(r) => (r.health.clone(), r.last_error.clone()),
        None => ("Unknown".into(), Some("not probed yet".into())),
    }
}

/// Checks a request against the Mall as read; `Ok` means it may be written.
pub fn precheck(mall: &Mall, action: RequestAction, to: &str, force: bool) -> Result<(), Refusal> {
    let name = mall.metadata.name.clone().unwrap_or_default();
    let namespace = mall.metadata.namespace.clone().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let regions: Vec<&str> = mall.spec.regions.iter().map(|r| r.name.as_str()).collect();
    if regions.len() < 2 {
        return Err(Refusal::TooFewRegions { action: action.as_str(), mall: id, count: regions.len() });
    }
    if !regions.contains(&to) {
        return Err(Refusal::UnknownRegion { to: to.into(), mall: id, regions: regions.join(", ") });
    }
    let status = mall.status.clone().unwrap_or_default();
    let active = active_region(mall);
    if active.as_deref() == Some(to) {
        return Err(Refusal::AlreadyActive { to: to.into(), mall: id, epoch: status.failover_epoch });
    }
    let unhealthy = |which, region: &str, hint: &str| {
        let (health, error) = health(mall, region);
        (health != "Healthy").then(|| Refusal::Unhealthy {
            action: action.as_str(),
            which,
            region: region.into(),
            health,
            detail: format!("{}{hint}", error.map(|e| format!(": {e}")).unwrap_or_default()),
        })
    };
    match action {
        RequestAction::Switchover => {
            if let Some(s) = status.switchover {
                return Err(Refusal::SwitchoverInProgress { mall: id, from: s.from, to: s.to, epoch: s.epoch });
            }
            const BOTH: &str = " (a switchover needs both regions Healthy)";
            if let Some(refusal) = unhealthy("target", to, BOTH) {
                return Err(refusal);
            }
            if let Some(refusal) = active.as_deref().and_then(|a| unhealthy("active", a, BOTH)) {
                return Err(refusal);
            }
        }
        RequestAction::Failover if !force => {
            if let Some(refusal) = unhealthy("target", to, " (--force skips this check)") {
                return Err(refusal);
            }
        }
        RequestAction::Failover => {}
    }
    Ok(())
}

/// A new request id: `<unix-millis>-<pid>`.
fn request_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{millis}-{}", std::process::id())
}

/// What `failover`/`switchover` was asked to do.
pub struct Request<'a> {
    /// Mall name.
    pub name: &'a str,
    /// Failover or switchover.
    pub action: RequestAction,
    /// Target region.
    pub to: &'a str,
    /// Skip the target's health check (failover only).
    pub force: bool,
    /// Wait for the outcome.
    pub wait: bool,
    /// How long to wait.
    pub timeout: Duration,
}

/// Runs `failover` or `switchover`.
pub async fn run(kube: &KubeArgs, req: Request<'_>) -> anyhow::Result<()> {
    let conn = kube.connect().await?;
    let api: Api<Mall> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let name = req.name;
    let mall = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading Mall {}/{name}", conn.namespace))?
        .ok_or_else(|| Refusal::NotFound { name: name.into(), namespace: conn.namespace.clone() })?;
    precheck(&mall, req.action, req.to, req.force)?;
    let request = FailoverRequest { id: request_id(), action: req.action, to: req.to.into() };
    let value = serde_json::to_string(&request)?;
    let patch = serde_json::json!({"metadata": {"annotations": {REQUEST_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("writing the {REQUEST_ANNOTATION} annotation on Mall {}/{name}", conn.namespace))?;
    let action = req.action.as_str();
    if !req.wait {
        println!("{action} of {name} to {} requested (request {})", req.to, request.id);
        return Ok(());
    }
    eprintln!("{action} of {name} to {} requested (request {})", req.to, request.id);
    watch::wait(&api, name, &request, req.timeout).await
}

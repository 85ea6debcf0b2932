//! The two moves of the active region, step by step across ticks.
//!
//! Contract: a move starts with ONE status write conditioned on the Mall's resourceVersion,
//! read again just before and refused if the epoch moved meanwhile: the epoch is raised exactly
//! once per move, and a second hub or a stale leader loses the race. Then:
//! - **failover** (no token): `activeRegion` = target and epoch + 1 in that write; each target
//!   shard is promoted (`replica.primary` = itself, new epoch), the old region's shards are
//!   demoted where it answers; each tick re-sends a promotion that has not landed (and says so in
//!   an Event); complete when every target shard claims the primary role in the new epoch, is
//!   healthy on a newer timeline, and the target's storefront has a ready pod. The recovery time
//!   counts from the first failed probe of the old region (or the request), the data loss is
//!   stated as the WAL the old primary had not archived: at most `archive_timeout`.
//! - **switchover** (tokens, CloudNativePG's documented procedure): epoch + 1 and
//!   `status.switchover` in that write; every shard of the active region is demoted
//!   (`replica.primary` = the target's member); each tick records the `status.demotionToken`s as
//!   they appear, sets `replica.primary` and `replica.promotionToken` on the target member in one
//!   update, and marks a shard promoted once its `lastPromotionToken` equals the token; complete
//!   (activeRegion = target, no loss) when all are. A target refusing its token
//!   ("unrecoverable") fails the request with what to do.
//!
//! A move in progress survives an operator restart through the status ([`resume`]).

use super::driver::{Driver, DriverError, outcome};
use super::probe::{PHASE_HEALTHY, PHASE_UNRECOVERABLE, Probe};
use super::status::{self, FailoverStatus};
use crate::build::database::topology::Topology;
use chrono::{DateTime, Utc};
use mall_crds::Mall;
use mall_crds::requests::FailoverRequest;
use mall_crds::status::{FailoverRecord, ShardSwitch, SwitchoverState};
use std::collections::BTreeMap;

/// A move in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Promotion without a token.
    Failover {
        /// Old active region.
        from: String,
        /// New active region.
        to: String,
        /// The epoch of the move.
        epoch: i64,
        /// Timelines of the target's shards before the promotion.
        baseline: BTreeMap<i32, i64>,
    },
    /// Controlled switchover.
    Switchover {
        /// Old active region.
        from: String,
        /// New active region.
        to: String,
        /// The epoch of the move.
        epoch: i64,
    },
}

impl Move {
    /// Whether this is a switchover.
    pub fn is_switchover(&self) -> bool {
        matches!(self, Move::Switchover { .. })
    }
}

/// The move a previous leader left running, from the status.
pub fn resume(status: &mall_crds::status::MallStatus) -> Option<Move> {
    if let Some(s) = &status.switchover {
        return Some(Move::Switchover { from: s.from.clone(), to: s.to.clone(), epoch: s.epoch });
    }
    let last = status.last_failover.as_ref().filter(|l| l.completed.is_none() && l.kind == "failover")?;
    Some(Move::Failover { from: last.from.clone(), to: last.to.clone(), epoch: last.epoch, baseline: BTreeMap::new() })
}

/// The RPO statement of a failover of `mall`.
pub fn failover_rpo(mall: &Mall) -> String {
    let timeout = mall.spec.database.parameters.get("archive_timeout").map_or("5min", String::as_str);
    format!(
        "up to archive_timeout ({timeout}) of writes: what the old primary had written but not yet archived to the \
         object store is lost"
    )
}

fn with_active(topology: &Topology, to: &str, epoch: i64) -> Topology {
    Topology { active: to.to_string(), epoch, ..topology.clone() }
}

fn set_roles(out: &mut FailoverStatus) {
    for r in &mut out.regions {
        r.role = Some(if r.name == out.active_region { "primary" } else { "replica" }.into());
    }
}

/// Starts a failover to `to` (see the module header).
#[allow(clippy::too_many_arguments)]
pub async fn start_failover(
    driver: &Driver,
    mall: &Mall,
    topology: &Topology,
    to: &str,
    reason: &str,
    started: DateTime<Utc>,
    request: Option<&FailoverRequest>,
    probes: &BTreeMap<String, Probe>,
    out: &mut FailoverStatus,
) -> Result<Option<Move>, DriverError> {
    let epoch = topology.epoch + 1;
    let from = topology.active.clone();
    out.active_region = to.to_string();
    out.failover_epoch = epoch;
    set_roles(out);
    out.last_failover = Some(FailoverRecord {
        kind: "failover".into(),
        from: from.clone(),
        to: to.into(),
        epoch,
        reason: reason.into(),
        started: status::timestamp(started),
        completed: None,
        rto_milliseconds: None,
        rpo: failover_rpo(mall),
    });
    if let Some(r) = request {
        out.last_request =
            Some(outcome(&r.id, "Accepted", format!("failing over from {from} to {to} in epoch {epoch}")));
    }
    if !driver.write_fenced(mall, out, topology.epoch).await? {
        return Ok(None);
    }
    driver.event(mall, true, "FailoverStarted", format!("{reason}: promoting {to} in epoch {epoch}")).await;
    let baseline = probes.get(to).map(|p| p.shards.iter().map(|s| (s.index, s.timeline)).collect()).unwrap_or_default();
    let step = Move::Failover { from, to: to.into(), epoch, baseline };
    roles(driver, mall, &with_active(topology, to, epoch), &step, probes, true).await;
    Ok(Some(step))
}

/// Starts a switchover to `to` (see the module header).
pub async fn start_switchover(
    driver: &Driver,
    mall: &Mall,
    topology: &Topology,
    to: &str,
    request: Option<&FailoverRequest>,
    out: &mut FailoverStatus,
    now: DateTime<Utc>,
) -> Result<Option<Move>, DriverError> {
    let epoch = topology.epoch + 1;
    let from = topology.active.clone();
    out.failover_epoch = epoch;
    out.switchover = Some(SwitchoverState {
        from: from.clone(),
        to: to.into(),
        epoch,
        started: status::timestamp(now),
        shards: (0..mall.spec.database.shards).map(|index| ShardSwitch { index, ..ShardSwitch::default() }).collect(),
    });
    if let Some(r) = request {
        out.last_request =
            Some(outcome(&r.id, "Accepted", format!("switching over from {from} to {to} in epoch {epoch}")));
    }
    if !driver.write_fenced(mall, out, topology.epoch).await? {
        return Ok(None);
    }
    driver.event(mall, false, "SwitchoverStarted", format!("demoting {from} in epoch {epoch}")).await;
    let step = Move::Switchover { from, to: to.into(), epoch };
    roles(driver, mall, &with_active(topology, to, epoch), &step, &BTreeMap::new(), true).await;
    Ok(Some(step))
}

/// Sends the role writes of `step` that have not landed: the target's promotion (failover) or
/// the old primary's demotion (both), as `probes` show them (`all`: send every one).
async fn roles(
    driver: &Driver,
    mall: &Mall,
    next: &Topology,
    step: &Move,
    probes: &BTreeMap<String, Probe>,
    all: bool,
) {
    let (from, to, epoch, promote) = match step {
        Move::Failover { from, to, epoch, .. } => (from, to, *epoch, true),
        Move::Switchover { from, to, epoch } => (from, to, *epoch, false),
    };
    // Demotions first, then promotions: with the old primary reachable (a requested failover)
    // no shard ever has two primaries by our hand. A failover does not wait on an old region
    // its last probe did not reach; a switchover always demotes first (it is healthy).
    let reachable = probes.get(from).is_some_and(|p| p.reachable);
    let mut demote: Vec<(&str, i32)> = Vec::new();
    let mut promotions: Vec<(&str, i32)> = Vec::new();
    for shard in 0..mall.spec.database.shards {
        let seen = |region: &str| probes.get(region).and_then(|p| p.shards.iter().find(|s| s.index == shard));
        let landed = |region: &str, primary: bool| {
            seen(region).is_some_and(|s| s.epoch == Some(epoch) && s.claims_primary() == primary)
        };
        if (reachable && !landed(from, false)) || (all && !promote) {
            demote.push((from, shard));
        }
        if promote && (all || !landed(to, true)) {
            promotions.push((to, shard));
        }
    }
    let writes = demote.into_iter().chain(promotions);
    for (region, shard) in writes {
        let result = driver.set_role(mall, next, region, shard, None).await;
        if let Err(e) = result {
            let warn = region == to.as_str();
            tracing::warn!(region, shard, error = %e, "role write failed; retried next tick");
            if warn {
                driver.event(mall, true, "PromotionRetrying", format!("shard {shard} in {region}: {e}")).await;
            }
        }
    }
}

/// Advances `step` by one tick; `None` once it is complete or failed.
pub async fn advance(
    driver: &Driver,
    mall: &Mall,
    topology: &Topology,
    step: Move,
    probes: &BTreeMap<String, Probe>,
    out: &mut FailoverStatus,
    now: DateTime<Utc>,
) -> Result<Option<Move>, DriverError> {
    match &step {
        Move::Failover { to, epoch, baseline, .. } => {
            let next = with_active(topology, to, *epoch);
            roles(driver, mall, &next, &step, probes, false).await;
            let Some(p) = probes.get(to) else { return Ok(Some(step)) };
            let promoted = (0..mall.spec.database.shards).all(|i| {
                p.shards.iter().any(|s| {
                    s.index == i
                        && s.claims_primary()
                        && s.epoch == Some(*epoch)
                        && s.phase == PHASE_HEALTHY
                        && baseline.get(&i).is_none_or(|b| s.timeline > *b)
                })
            });
            if !promoted || p.storefront_ready == 0 {
                return Ok(Some(step));
            }
            let rto = complete(out, now);
            if let Some(r) = out.last_request.as_mut().filter(|r| r.outcome == "Accepted") {
                r.outcome = "Completed".into();
                r.message = format!("{to} is active in epoch {epoch}");
            }
            driver.event(mall, true, "FailoverCompleted", format!("{to} is active in epoch {epoch}; RTO {rto}")).await;
            Ok(None)
        }
        Move::Switchover { from, to, epoch } => {
            let next = with_active(topology, to, *epoch);
            roles(driver, mall, &next, &step, probes, false).await;
            let Some(state) = out.switchover.as_mut() else { return Ok(None) };
            for shard in &mut state.shards {
                let old = probes.get(from).and_then(|p| p.shards.iter().find(|s| s.index == shard.index));
                let new = probes.get(to).and_then(|p| p.shards.iter().find(|s| s.index == shard.index));
                if shard.demotion_token.is_none() {
                    shard.demotion_token = old.and_then(|s| s.demotion_token.clone());
                }
                let Some(token) = shard.demotion_token.clone() else { continue };
                match new {
                    Some(s)
                        if s.last_promotion_token.as_deref() == Some(token.as_str()) && s.phase == PHASE_HEALTHY =>
                    {
                        shard.promoted = true;
                    }
                    Some(s) if s.phase == PHASE_UNRECOVERABLE => {
                        let message = format!(
                            "shard {}: {} refused the demotion token of {from} ({}); the old primary is a replica now: \
                             run `mallctl failover {} --to {from}` to make it primary again, then retry",
                            shard.index,
                            s.name,
                            s.phase,
                            mall.metadata.name.as_deref().unwrap_or_default()
                        );
                        driver.event(mall, true, "SwitchoverFailed", message.clone()).await;
                        if let Some(r) = out.last_request.as_mut() {
                            r.outcome = "Failed".into();
                            r.message = message;
                        }
                        out.switchover = None;
                        return Ok(None);
                    }
                    Some(s) if s.epoch == Some(*epoch) && s.claims_primary() => {}
                    _ => {
                        if let Err(e) = driver.set_role(mall, &next, to, shard.index, Some(&token)).await {
                            driver.event(mall, true, "PromotionRetrying", format!("shard {}: {e}", shard.index)).await;
                        }
                    }
                }
            }
            if !state.shards.iter().all(|s| s.promoted) {
                return Ok(Some(step));
            }
            let started = state.started.clone();
            out.switchover = None;
            out.active_region = to.clone();
            set_roles(out);
            out.last_failover = Some(FailoverRecord {
                kind: "switchover".into(),
                from: from.clone(),
                to: to.clone(),
                epoch: *epoch,
                reason: out.last_request.as_ref().map_or("requested".into(), |r| format!("request {}", r.id)),
                started,
                completed: None,
                rto_milliseconds: None,
                rpo: "0: every shard was promoted from its old primary's demotion token".into(),
            });
            let rto = complete(out, now);
            if let Some(r) = out.last_request.as_mut().filter(|r| r.outcome == "Accepted") {
                r.outcome = "Completed".into();
                r.message = format!("{to} is active in epoch {epoch}, no data lost");
            }
            driver
                .event(mall, false, "SwitchoverCompleted", format!("{to} is active in epoch {epoch}; took {rto}"))
                .await;
            Ok(None)
        }
    }
}

/// Marks the last failover complete at `now`; returns its recovery time in words.
fn complete(out: &mut FailoverStatus, now: DateTime<Utc>) -> String {
    let Some(last) = out.last_failover.as_mut() else { return "unknown".into() };
    last.completed = Some(status::timestamp(now));
    let rto =
        DateTime::parse_from_rfc3339(&last.started).ok().map(|s| (now - s.with_timezone(&Utc)).num_milliseconds());
    last.rto_milliseconds = rto;
    rto.map_or("unknown".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

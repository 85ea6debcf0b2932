//! What the failover controller does next about one Mall: the pure decision.
//!
//! Contract: pure and deterministic ([`decide`]; the clock is an input). A pending `mallctl`
//! request comes first: a switchover needs the active and the target region `Healthy`; a failover
//! needs a target that is not `Down` (a person decided: neither the cooldown nor the witness
//! applies); a request naming an unknown or the already active region, or arriving while another
//! move runs, is refused with the reason. Without a request, nothing happens unless the active
//! region is `Down` (after `failureThreshold` failed probes, see `health`); then, in order:
//! no healthy standby → blocked (`NoHealthyStandby`); `requireWitness` and a witness still sees
//! the active region healthy, or no witness has reported → blocked (`WitnessSeesPrimary`,
//! `NoWitness`); within `cooldown` of the last move → blocked (`Cooldown`); `mode: manual` →
//! recommended only (`FailoverRecommended`, nothing moves); else a failover to the healthy standby
//! with the highest weight (spec order breaks ties).

use super::health::Health;
use chrono::{DateTime, Utc};
use mall_crds::regions::FailoverMode;
use mall_crds::requests::{FailoverRequest, RequestAction};
use std::time::Duration;

/// One region as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// Probed health.
    pub health: Health,
    /// `spec.regions[].weight`.
    pub weight: i32,
    /// Demoted after a failover and not rebuilt yet: never a target.
    pub fenced: bool,
    /// What the witnesses (other regions' clusters) last reported about this region:
    /// `Some(true)` one sees it healthy, `Some(false)` they see it down, `None` no report.
    pub witness: Option<bool>,
}

/// Everything [`decide`] reads.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The active region.
    pub active: String,
    /// Every region, in spec order.
    pub regions: Vec<RegionView>,
    /// `spec.failover.mode`.
    pub mode: FailoverMode,
    /// `spec.failover.cooldown`.
    pub cooldown: Duration,
    /// `spec.failover.requireWitness`.
    pub require_witness: bool,
    /// Now.
    pub now: DateTime<Utc>,
    /// When the last failover or switchover started.
    pub last_move: Option<DateTime<Utc>>,
    /// A request not answered yet.
    pub request: Option<FailoverRequest>,
    /// A failover or switchover is running.
    pub busy: bool,
}

/// Why an automatic failover does not happen although the active region is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// No other region is `Healthy`.
    NoHealthyStandby,
    /// A witness still sees the active region healthy (a partition between hub and region).
    WitnessSeesPrimary,
    /// `requireWitness` and no witness has reported on the active region.
    NoWitness,
    /// Within `cooldown` of the last move.
    Cooldown,
}

impl Blocked {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::NoHealthyStandby => "NoHealthyStandby",
            Blocked::WitnessSeesPrimary => "WitnessSeesPrimary",
            Blocked::NoWitness => "NoWitness",
            Blocked::Cooldown => "Cooldown",
        }
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Stay,
    /// Fail over to `to` (no token; the active region is lost or a person asked).
    Failover {
        /// Target region.
        to: String,
        /// Why, in words.
        reason: String,
    },
    /// Switch over to `to` (controlled, tokens, no loss).
    Switchover {
        /// Target region.
        to: String,
    },
    /// `mode: manual`: recommend a failover to `to` and wait for `mallctl failover`.
    Recommend {
        /// The region a failover would go to.
        to: String,
        /// Why, in words.
        reason: String,
    },
    /// The active region is down but no automatic failover happens.
    Blocked {
        /// Which rule holds it.
        why: Blocked,
        /// In words.
        message: String,
    },
    /// The pending request is refused.
    Refuse {
        /// Why, in words.
        message: String,
    },
}

/// The decision for `inputs` (see the module header).
pub fn decide(inputs: &Inputs) -> Decision {
    if let Some(request) = &inputs.request {
        return answer(inputs, request);
    }
    if inputs.busy {
        return Decision::Stay;
    }
    let Some(active) = inputs.regions.iter().find(|r| r.name == inputs.active) else { return Decision::Stay };
    if active.health != Health::Down {
        return Decision::Stay;
    }
    let Some(to) = best_standby(inputs) else {
        return Decision::Blocked {
            why: Blocked::NoHealthyStandby,
            message: format!("region {} is down and no other region is Healthy", inputs.active),
        };
    };
    if inputs.require_witness {
        match active.witness {
            Some(true) => {
                return Decision::Blocked {
                    why: Blocked::WitnessSeesPrimary,
                    message: format!(
                        "the operator cannot reach region {} but a witness in another region still sees it healthy \
                         (a partition, not an outage): no automatic failover",
                        inputs.active
                    ),
                };
            }
            None => {
                return Decision::Blocked {
                    why: Blocked::NoWitness,
                    message: format!(
                        "region {} is down as the operator sees it, and requireWitness is set but no witness has \
                         reported on it",
                        inputs.active
                    ),
                };
            }
            Some(false) => {}
        }
    }
    if let Some(last) = inputs.last_move {
        let until = last + chrono::Duration::from_std(inputs.cooldown).unwrap_or(chrono::Duration::MAX);
        if inputs.now < until {
            return Decision::Blocked {
                why: Blocked::Cooldown,
                message: format!(
                    "region {} is down; the last move was at {last}, cooldown until {until}",
                    inputs.active
                ),
            };
        }
    }
    let reason = format!("region {} failed its health probes", inputs.active);
    match inputs.mode {
        FailoverMode::Manual => Decision::Recommend { to: to.to_string(), reason },
        FailoverMode::Automatic => Decision::Failover { to: to.to_string(), reason },
    }
}

/// The healthy, unfenced standby with the highest weight (spec order breaks ties).
fn best_standby(inputs: &Inputs) -> Option<&str> {
    let mut best: Option<&RegionView> = None;
    for r in inputs.regions.iter().filter(|r| r.name != inputs.active && r.health == Health::Healthy && !r.fenced) {
        if best.is_none_or(|b| r.weight > b.weight) {
            best = Some(r);
        }
    }
    best.map(|r| r.name.as_str())
}

fn answer(inputs: &Inputs, request: &FailoverRequest) -> Decision {
    let refuse = |message: String| Decision::Refuse { message };
    let Some(target) = inputs.regions.iter().find(|r| r.name == request.to) else {
        let names: Vec<&str> = inputs.regions.iter().map(|r| r.name.as_str()).collect();
        return refuse(format!("region {:?} is not one of the Mall's regions ({})", request.to, names.join(", ")));
    };
    if request.to == inputs.active {
        return refuse(format!("region {} is already active", request.to));
    }
    if inputs.busy {
        return refuse("another failover or switchover is running".into());
    }
    if target.fenced {
        return refuse(format!("region {} is fenced and being rebuilt", request.to));
    }
    match request.action {
        RequestAction::Switchover => {
            let active = inputs.regions.iter().find(|r| r.name == inputs.active).map(|r| r.health);
            if target.health != Health::Healthy {
                refuse(format!("region {} is {}: a switchover needs it Healthy", request.to, target.health.as_str()))
            } else if active != Some(Health::Healthy) {
                refuse(format!(
                    "the active region {} is {}: a switchover needs it Healthy (use failover)",
                    inputs.active,
                    active.map_or("unknown", Health::as_str)
                ))
            } else {
                Decision::Switchover { to: request.to.clone() }
            }
        }
        RequestAction::Failover if target.health == Health::Down => {
            refuse(format!("region {} is Down: it cannot take over", request.to))
        }
        RequestAction::Failover => {
            Decision::Failover { to: request.to.clone(), reason: format!("requested (request {})", request.id) }
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

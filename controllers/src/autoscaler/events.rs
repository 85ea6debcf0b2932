//! Announced promotions (`spec.autoscaling.events`): the storefront capacity floor they impose.
//!
//! Contract: pure. An event arms at `start − warmup` (the baseline — the stable load then — is
//! frozen), requests its capacity (the expected load `baseline × multiplier` plus a margin, at
//! what the replicas can serve — target ÷ utilization: the peak is announced, so the target's
//! headroom for unannounced growth is not added on top — and at least `minReplicas`) one
//! lead time before `start` (the learned start-up time — the slowest recent one — plus the
//! metrics delay, within the warmup) so it is Ready at `start`, and holds it until the expected
//! traffic has been observed (`event_confirm_share` of it), one stabilization window has passed
//! since `start`, or `end`, whichever comes first. The engine then releases what the observed
//! load does not need at once (an unused reservation); until `end` the expected load is still
//! reported (it bounds forecasts).

use super::config::{EventConfig, TierConfig};

/// Per-event memory.
#[derive(Clone, Debug, Default)]
pub struct EventState {
    baseline: Option<f64>,
    confirmed: bool,
}

/// What the events ask of the storefront now.
#[derive(Clone, Debug, PartialEq)]
pub struct Floor {
    /// Replicas that must exist now (0 = no floor).
    pub replicas: i32,
    /// The event's capacity once requested (0 before): bounds forecasts until `end`.
    pub capacity: i32,
    /// Load the event expects, for the coordination of other tiers.
    pub expected_load: f64,
    /// Why.
    pub reason: String,
}

/// Inputs of [`floor`].
pub struct Now {
    /// Seconds since the Unix epoch.
    pub t: f64,
    /// Stable storefront load, when known.
    pub stable: Option<f64>,
    /// Newest storefront load, when known.
    pub current: Option<f64>,
    /// Learned start-up time, seconds.
    pub startup: f64,
    /// Metrics pipeline delay, seconds.
    pub pipeline_delay: f64,
    /// Scale-down stabilization window, seconds.
    pub stabilization: f64,
    /// Share of the expected load that confirms the event's traffic has arrived.
    pub confirm_share: f64,
    /// Load one replica can serve (target ÷ target utilization).
    pub replica_capacity: f64,
    /// Margin over the expected load.
    pub headroom: f64,
}

fn secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The floor `event` imposes now, if any (updates its state).
pub fn floor(event: &EventConfig, state: &mut EventState, now: &Now, tier: &TierConfig) -> Option<Floor> {
    let (start, end) = (secs(event.start), secs(event.end));
    let warmup = event.warmup.as_secs_f64();
    if now.t < start - warmup || now.t >= end {
        return None;
    }
    if state.baseline.is_none() {
        state.baseline = now.stable;
    }
    let expected_load = match (event.multiplier, state.baseline) {
        (Some(m), Some(b)) => b * m,
        _ => 0.0,
    };
    let by_load = if expected_load > 0.0 {
        tier.replicas_at(expected_load * (1.0 + now.headroom.max(0.0)), now.replica_capacity)
    } else {
        0
    };
    let capacity = tier.clamp(by_load.max(event.min_replicas.unwrap_or(0)));
    let expected_load = expected_load.max(f64::from(capacity) * tier.target_per_replica);
    let lead = (now.startup + now.pipeline_delay).min(warmup);
    if now.t < start - lead {
        let reason = format!(
            "event {} armed: baseline {:.0}/s, {} replicas will be requested {:.0}s before the start",
            event.name,
            state.baseline.unwrap_or(0.0),
            capacity,
            lead
        );
        return Some(Floor { replicas: 0, capacity: 0, expected_load: 0.0, reason });
    }
    if !state.confirmed && now.current.is_some_and(|c| c >= now.confirm_share * expected_load) {
        state.confirmed = true;
    }
    if state.confirmed || now.t >= start + now.stabilization {
        let why = if state.confirmed { "its traffic arrived" } else { "one stabilization window passed" };
        let reason = format!("event {}: capacity released ({why}); following observed load", event.name);
        // The expected load still bounds forecasts until the end.
        return Some(Floor { replicas: 0, capacity, expected_load, reason });
    }
    let reason = format!(
        "event {}: {} replicas for {:.0}/s expected ({}) Ready by the start",
        event.name,
        capacity,
        expected_load,
        match event.multiplier {
            Some(m) => format!("{m}× the baseline {:.0}/s", state.baseline.unwrap_or(0.0)),
            None => "minReplicas".to_string(),
        }
    );
    Some(Floor { replicas: capacity, capacity, expected_load, reason })
}

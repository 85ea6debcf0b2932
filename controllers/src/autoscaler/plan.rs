//! The load one tier is sized for, from its [`Signals`]: a surge projected ahead, a recovery, a
//! transient dip held, a fall, or the steady level (with its robust trend), and why in words.
//!
//! Contract: pure apart from the dip memory passed in ([`Dip`]); the same signals and memory
//! give the same plan. Rules:
//! - A rise counts when it exceeds `surge_threshold` and `noise_sigmas` × the traffic's own
//!   sample-to-sample variability (so noise does not look like a surge).
//! - **Surge**: the load is above its stable mean *and* above the recent peak (nothing like it
//!   was seen within the memory window): projected along its slope to when replicas asked for
//!   now are Ready, at most `max_projection_factor` × the load and `max_over_peak` × the recent
//!   peak.
//! - **Recovery**: above the stable mean but not above the recent peak — a level seen minutes
//!   ago is back (after a dip, a gap or noise): sized for the load itself, nothing projected.
//! - **Dip**: the load fell below the recent peak by more than the threshold within the
//!   `sudden` window: capacity for the highest level before it is held for `dip_hold` unless
//!   the load comes back
//!   (then the dip is over) — a lasting fall is released through the scale-down limits after it.
//! - **Steady**: the stable mean moved ahead by the robust (Theil–Sen) trend when it rises over
//!   both the memory and the stable window, never below the load itself, with a margin for
//!   traffic more variable than the target's headroom covers and the HPA's ±10 % deadband
//!   around the current size's target load.

use super::config::Tuning;
use super::signals::Signals;

/// The load a tier should be sized for, whether it is surging, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPlan {
    /// Load to size for.
    pub load: f64,
    /// A surge is active (scale-down is held for `surge_hold`).
    pub surge: bool,
    /// Why, in words.
    pub reason: String,
}

/// A transient dip being ridden out: since when, and the level whose capacity is held.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dip {
    /// When the dip was detected, seconds.
    pub since: f64,
    /// Load before the dip.
    pub level: f64,
}

/// The relative rise or fall that counts: the threshold, or `noise_sigmas` × the variability.
pub fn threshold(s: &Signals, tuning: &Tuning) -> f64 {
    tuning.surge_threshold.max(tuning.noise_sigmas * s.noise)
}

/// The margin over a steady level that the traffic's variability asks for: the target's headroom
/// (1 ÷ `target_utilization`) covers `noise_headroom` × the variability; what it does not cover.
pub fn noise_margin(s: &Signals, tuning: &Tuning) -> f64 {
    (tuning.target_utilization * (1.0 + tuning.noise_headroom * s.noise) - 1.0).max(0.0)
}

/// The scale-down stabilization window for this traffic: `noisy_stabilization` when the target's
/// headroom does not cover `noisy_sigmas` × its variability, else the spec's.
pub fn stabilization(s: &Signals, tuning: &Tuning, spec: f64) -> f64 {
    let noisy = Tuning { noise_headroom: tuning.noisy_sigmas, ..tuning.clone() };
    if noise_margin(s, &noisy) > 0.0 { spec.max(tuning.noisy_stabilization.as_secs_f64()) } else { spec }
}

/// Updates the dip memory at `t` and returns the level to hold, if any.
pub fn dip(memory: &mut Option<Dip>, t: f64, s: &Signals, tuning: &Tuning) -> Option<Dip> {
    let thr = threshold(s, tuning);
    let hold = tuning.dip_hold.as_secs_f64();
    match *memory {
        Some(d) if s.current >= d.level * (1.0 - thr) || t - d.since >= hold => *memory = None,
        Some(_) => {}
        None => {
            let low = s.current < s.recent_peak * (1.0 - thr) && s.current < s.stable * (1.0 - thr);
            let sudden = s.just_before >= s.recent_peak * (1.0 - thr);
            if low && sudden {
                *memory = Some(Dip { since: t, level: s.recent_max.max(s.recent_peak) });
            }
        }
    }
    *memory
}

/// The plan for signals `s`, looking `horizon` seconds ahead, with `replicas` serving nodes at
/// `target` each and the dip being held, if any.
pub fn plan(s: &Signals, tuning: &Tuning, horizon: f64, replicas: i32, target: f64, dip: Option<Dip>) -> LoadPlan {
    let thr = threshold(s, tuning);
    let stable_w = tuning.stable_window.as_secs();
    let memory_w = tuning.memory_window.as_secs();
    if s.current > s.stable * (1.0 + thr) && s.current > s.recent_peak * (1.0 + thr) {
        // A step mistaken for a ramp costs little: the next reading withdraws the replicas still
        // starting (see `Limiter::apply`), and only the observed need enters the stabilization
        // window.
        let rising = s.slope.max(0.0);
        let cap = (s.current * tuning.max_projection_factor).min(s.recent_peak.max(s.stable) * tuning.max_over_peak);
        let projected = (s.current + rising * horizon).min(cap).max(s.current);
        let reason = format!(
            "surge: load {:.0}/s is {:.1}× the {stable_w}s mean and above the {memory_w}s peak {:.0}/s, rising {:.0}/s; sized for {:.0}/s projected {:.0}s ahead",
            s.current,
            s.current / s.stable.max(f64::MIN_POSITIVE),
            s.recent_peak,
            rising,
            projected,
            horizon
        );
        return LoadPlan { load: projected, surge: true, reason };
    }
    if let Some(d) = dip {
        let reason = format!(
            "dip: load {:.0}/s fell suddenly from {:.0}/s; holding capacity for {:.0}/s (up to {}s unless it returns)",
            s.current,
            d.level,
            d.level,
            tuning.dip_hold.as_secs()
        );
        return LoadPlan { load: d.level.max(s.current), surge: false, reason };
    }
    if s.current > s.stable * (1.0 + thr) {
        let reason = format!(
            "recovery: load {:.0}/s is back within the {memory_w}s peak {:.0}/s; sized for the load, nothing projected",
            s.current, s.recent_peak
        );
        return LoadPlan { load: s.current, surge: false, reason };
    }
    if s.current < s.stable * (1.0 - thr) {
        let reason = format!("load falling: {:.0}/s against a mean of {:.0}/s", s.current, s.stable);
        return LoadPlan { load: s.current, surge: false, reason };
    }
    // Slow trends: the robust trend carries the mean to when new replicas would be Ready, within
    // the threshold; never below the load itself (the mean lags a rise by half its window).
    let ahead = horizon;
    // Both the memory window and the stable window must see the rise (a past step does not).
    let trend = s.trend.min(s.short_trend).max(0.0);
    let level = (s.stable + trend * ahead).min(s.stable * (1.0 + thr)).max(s.current);
    let margin = noise_margin(s, tuning);
    let level = level * (1.0 + margin);
    let mut reason = format!("steady: mean load {:.0}/s", s.stable);
    if trend > 0.0 && level > s.stable * (1.0 + margin) * 1.005 {
        reason.push_str(&format!(", trend +{trend:.1}/s"));
    }
    if margin >= 0.005 {
        reason.push_str(&format!(", +{:.0}% for its variability", margin * 100.0));
    }
    if level > s.stable * 1.005 {
        reason.push_str(&format!(": sized for {level:.0}/s"));
    }
    // Deadband (as the HPA's tolerance): within ±tolerance of the current size's target load,
    // keep the size rather than chase noise.
    let held = f64::from(replicas) * target;
    let tol = tuning.steady_tolerance;
    if held > 0.0 && (level / held - 1.0).abs() <= tol {
        return LoadPlan {
            load: held.min(level * (1.0 + tol)),
            surge: false,
            reason: format!("{reason}, within {:.0}% of the current size's target", tol * 100.0),
        };
    }
    LoadPlan { load: level, surge: false, reason }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

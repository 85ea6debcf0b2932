//! Tests of the load plan: noise, recoveries and dips are not surges; surges are projected within
//! bounds; dips are held for a while; slow trends are followed.

use super::*;

fn signals(current: f64, stable: f64, recent_peak: f64) -> Signals {
    Signals {
        current,
        stable,
        slope: 0.0,
        rising_for: 0.0,
        stable_slope: 0.0,
        trend: 0.0,
        short_trend: 0.0,
        recent_peak,
        recent_max: recent_peak,
        just_before: recent_peak,
        noise: 0.01,
    }
}

#[test]
fn a_new_high_is_a_surge_projected_within_bounds() {
    let t = Tuning::default();
    let s = Signals { slope: 20.0, ..signals(3000.0, 1200.0, 1000.0) };
    let p = plan(&s, &t, 45.0, 12, 100.0, None);
    assert!(p.surge, "{p:?}");
    assert_eq!(p.load, 3000.0 + 20.0 * 45.0, "{}", p.reason);
    let steep = Signals { slope: 5000.0, ..s };
    let p = plan(&steep, &t, 45.0, 12, 100.0, None);
    assert_eq!(p.load, 8.0 * 1200.0, "capped at 8× the recent peak or mean: {}", p.reason);
    let higher = Signals { slope: 5000.0, ..signals(3000.0, 2000.0, 2000.0) };
    assert_eq!(plan(&higher, &t, 45.0, 12, 100.0, None).load, 4.0 * 3000.0, "and at 4× the load");
}

#[test]
fn a_recovery_to_a_recent_level_is_not_projected() {
    let t = Tuning::default();
    // After a dip the mean is low and the last step steep, but 1000/s was seen minutes ago.
    let s = Signals { slope: 50.0, ..signals(1000.0, 400.0, 1010.0) };
    let p = plan(&s, &t, 45.0, 10, 100.0, None);
    assert!(!p.surge);
    assert_eq!(p.load, 1000.0);
    assert!(p.reason.starts_with("recovery"), "{}", p.reason);
}

#[test]
fn noise_raises_the_threshold() {
    let t = Tuning::default();
    let quiet = Signals { slope: 5.0, ..signals(1300.0, 1000.0, 1100.0) };
    assert!(plan(&quiet, &t, 45.0, 10, 100.0, None).surge, "30 % above everything, in calm traffic");
    let noisy = Signals { noise: 0.15, ..quiet };
    assert_eq!(threshold(&noisy, &t), 0.15 * 3.0);
    let p = plan(&noisy, &t, 45.0, 10, 100.0, None);
    assert!(!p.surge, "30 % is within three sigmas of this traffic's noise: {p:?}");
}

#[test]
fn a_sudden_dip_holds_the_level_until_it_returns_or_the_hold_expires() {
    let t = Tuning::default();
    let mut memory = None;
    let fell = signals(300.0, 900.0, 1000.0);
    let d = dip(&mut memory, 100.0, &fell, &t).unwrap();
    assert_eq!(d, Dip { since: 100.0, level: 1000.0 });
    let p = plan(&fell, &t, 45.0, 10, 100.0, Some(d));
    assert_eq!(p.load, 1000.0, "{}", p.reason);
    assert!(p.reason.starts_with("dip"));
    assert!(dip(&mut memory, 200.0, &signals(300.0, 300.0, 1000.0), &t).is_some(), "still low, within the hold");
    assert!(dip(&mut memory, 281.0, &signals(300.0, 300.0, 1000.0), &t).is_none(), "expired: a new level");
    assert!(dip(&mut memory, 285.0, &signals(300.0, 300.0, 1000.0), &t).is_none(), "no longer sudden");
    let mut memory = None;
    dip(&mut memory, 0.0, &fell, &t);
    assert!(dip(&mut memory, 30.0, &signals(990.0, 600.0, 1000.0), &t).is_none(), "recovered");
    // A gradual decline (the level just before was already low) is no dip.
    let mut memory = None;
    let gradual = Signals { just_before: 500.0, ..signals(300.0, 600.0, 1000.0) };
    assert!(dip(&mut memory, 0.0, &gradual, &t).is_none());
}

#[test]
fn steady_load_follows_its_robust_trend_within_the_threshold() {
    let t = Tuning::default();
    let ramp = Signals { trend: 2.0, short_trend: 2.5, ..signals(1000.0, 1000.0, 1000.0) };
    let p = plan(&ramp, &t, 45.0, 5, 100.0, None);
    assert_eq!(p.load, 1000.0 + 2.0 * 45.0, "carried over the horizon: {}", p.reason);
    let steep = Signals { trend: 20.0, short_trend: 20.0, ..ramp };
    assert_eq!(plan(&steep, &t, 45.0, 5, 100.0, None).load, 1150.0, "within the threshold");
    let past_step = Signals { trend: 5.0, short_trend: 0.0, ..ramp };
    assert_eq!(plan(&past_step, &t, 45.0, 5, 100.0, None).load, 1000.0, "a step minutes ago is no trend");
    let flat = signals(1000.0, 1000.0, 1000.0);
    let p = plan(&flat, &t, 45.0, 10, 100.0, None);
    assert_eq!(p.load, 1000.0);
    assert!(p.reason.contains("within 10%"), "{}", p.reason);
    let above_mean = signals(1100.0, 1000.0, 1000.0);
    assert_eq!(plan(&above_mean, &t, 45.0, 5, 100.0, None).load, 1100.0, "never below the load itself");
}

//! Tests of the trace generator: determinism, shapes, and that the committed traces are exactly
//! what the generator produces (no drift).

use super::*;
use crate::Trace;

fn traces_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/traces")
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for s in tuned().iter().chain(&heldout()) {
        assert_eq!(csv(s), csv(s), "{}", s.name);
        let other = Spec { seed: s.seed + 1000, ..s.clone() };
        assert_ne!(csv(s), csv(&other), "{}: the seed matters", s.name);
    }
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    assert_eq!((0..10).map(|_| a.next_u64()).collect::<Vec<_>>(), (0..10).map(|_| b.next_u64()).collect::<Vec<_>>());
    assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF, "SplitMix64 reference value");
}

#[test]
fn every_trace_parses_and_has_its_shape() {
    for s in tuned().iter().chain(&heldout()) {
        let text = csv(s);
        let t = Trace::parse(s.name, s.name, &text).unwrap();
        assert_eq!(t.len(), s.seconds, "{}", s.name);
        let d = t.demand();
        assert!(d.iter().all(|v| v.is_finite() && *v >= 0.0), "{}", s.name);
        let max = d.iter().copied().fold(0.0, f64::max);
        match s.shape {
            Shape::DipsAndGaps => {
                assert!(t.gap_seconds() > 0, "{}: has gaps", s.name);
                assert!(text.contains("NaN"), "{}: NaN rows", s.name);
                assert!(text.lines().count() - 1 < s.seconds, "{}: missing rows", s.name);
                assert!(d.iter().any(|&v| v < 0.4 * s.base), "{}: deep dips", s.name);
            }
            Shape::AnnouncedSurge => {
                let at = s.event_at.unwrap();
                assert!(max > 0.7 * s.size * s.base, "{}: peak {max}", s.name);
                assert!(d[at - 60] < 1.5 * s.base, "{}: quiet before the event", s.name);
            }
            _ => assert_eq!(t.gap_seconds(), 0, "{}", s.name),
        }
    }
}

#[test]
fn cases_cover_every_wrong_announcement() {
    let c = cases(&tuned());
    let names: Vec<&str> = c.iter().map(|c| c.case).collect();
    assert_eq!(names, ["on-time", "early-10m", "late-10m", "half-size", "double-size", "never"]);
    assert_eq!(c[1].event_at + 600, c[0].event_at);
    assert_eq!(c[3].multiplier * 4.0, c[4].multiplier);
}

/// The committed traces are the generator's output: regenerate with
/// `cargo run -q -p mallctl -- simulate --generate examples/traces`.
#[test]
fn committed_traces_equal_the_generator_output() {
    let dir = traces_dir();
    let mut total = 0;
    for (path, text) in files() {
        let committed = std::fs::read_to_string(dir.join(&path))
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate with mallctl simulate --generate)", path));
        assert!(committed == text, "{path} differs from the generator's output: regenerate it");
        total += committed.len();
    }
    assert!(total < 5_000_000, "the committed traces stay small: {total} bytes");
}

//! Seeded generator of the benchmark traces (`examples/traces/{tuned,heldout}`): the shapes a
//! mall sees — diurnal cycles, announced and unannounced surges, flash spikes, retry storms, slow
//! ramps, live-stream cliffs, deep dips and data gaps with fast recovery, high-frequency noise, and
//! an announced event that never comes.
//!
//! Contract: pure and deterministic — a [`Spec`] (shape, seed, parameters) always gives the same
//! values and the same CSV bytes (own SplitMix64 generator, no platform randomness). Values are
//! requests/s rounded to 0.1; a data gap is `NaN` in the values and, in the CSV, a row `t,NaN` or
//! no row at all (both forms occur). [`cases_csv`] lists which traces run with an announced event
//! and how the announcement relates to the real traffic (on time, early, late, half or twice the
//! size, never comes); traces without a case run unannounced. The two sets differ in seeds and
//! shape parameters; the held-out set is for reporting only, never for tuning.

use std::f64::consts::PI;
use std::fmt::Write as _;

/// SplitMix64: a small, well-mixed, portable pseudo-random sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// The kinds of traffic the generator produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A day compressed into the trace: a sinusoid with a lunch and an evening bump.
    Diurnal,
    /// A promotion at `event_at`: `size`× the baseline within `rise` seconds, decaying slowly.
    AnnouncedSurge,
    /// The same kind of surge nobody announced, at a random time in the middle third.
    UnannouncedSurge,
    /// `count` short spikes of 2.5–`size`× the baseline, rising within `rise` seconds.
    FlashSpikes,
    /// `count` failures: a short drop, then clients' retries at up to `size`× decaying in waves.
    RetryStorm,
    /// A linear ramp from the baseline to `size`× over the trace.
    SlowRamp,
    /// `count` live streams: a `rise`-second ramp to `size`×, a plateau, then a cliff.
    LiveCliff,
    /// `count` deep dips (to 10–30 %, 15–90 s, recovering within seconds) and data gaps.
    DipsAndGaps,
    /// Strong second-to-second noise (`noise` σ) with 1–3 s blips of `size`×.
    Noise,
    /// Steady traffic; an event of `size`× is announced at `event_at` and never comes.
    NoShow,
}

/// Parameters of one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// File stem.
    pub name: &'static str,
    /// Kind of traffic.
    pub shape: Shape,
    /// Seed of the random sequence.
    pub seed: u64,
    /// Length, seconds.
    pub seconds: usize,
    /// Baseline requests/s.
    pub base: f64,
    /// Main multiple of the shape (surge size, spike height, ramp end, …).
    pub size: f64,
    /// Seconds of the shape's rise.
    pub rise: f64,
    /// Relative noise (σ of the slow log-noise; the per-second noise is half of it).
    pub noise: f64,
    /// Episodes (spikes, storms, streams, dips).
    pub count: usize,
    /// Second at which an event is announced (announced surge and no-show only).
    pub event_at: Option<usize>,
}

const fn spec(name: &'static str, shape: Shape, seed: u64, seconds: usize, base: f64, size: f64) -> Spec {
    Spec { name, shape, seed, seconds, base, size, rise: 30.0, noise: 0.03, count: 6, event_at: None }
}

/// The set the engine is tuned on.
pub fn tuned() -> Vec<Spec> {
    use Shape::*;
    vec![
        spec("diurnal", Diurnal, 11, 10_800, 1500.0, 0.6),
        Spec { event_at: Some(5400), rise: 20.0, ..spec("announced-surge", AnnouncedSurge, 12, 9000, 1000.0, 20.0) },
        Spec { rise: 120.0, ..spec("unannounced-surge", UnannouncedSurge, 13, 7200, 1200.0, 6.0) },
        Spec { rise: 10.0, count: 8, ..spec("flash-spikes", FlashSpikes, 14, 7200, 1000.0, 5.0) },
        Spec { count: 5, ..spec("retry-storm", RetryStorm, 15, 7200, 1500.0, 3.0) },
        spec("slow-ramp", SlowRamp, 16, 7200, 800.0, 4.0),
        Spec { rise: 300.0, count: 3, ..spec("live-cliff", LiveCliff, 17, 7200, 1000.0, 5.0) },
        Spec { count: 8, ..spec("dips-and-gaps", DipsAndGaps, 18, 7200, 2000.0, 1.0) },
        Spec { noise: 0.25, ..spec("noise", Noise, 19, 7200, 2000.0, 2.0) },
        Spec { event_at: Some(3600), ..spec("no-show", NoShow, 20, 7200, 1000.0, 20.0) },
    ]
}

/// The held-out set: other seeds and shape parameters; reported, never tuned on.
pub fn heldout() -> Vec<Spec> {
    use Shape::*;
    vec![
        Spec { noise: 0.04, ..spec("diurnal-d", Diurnal, 301, 10_800, 1200.0, 0.5) },
        Spec {
            event_at: Some(4800),
            rise: 30.0,
            noise: 0.05,
            ..spec("announced-surge-d", AnnouncedSurge, 302, 9000, 1500.0, 10.0)
        },
        Spec { rise: 90.0, noise: 0.04, ..spec("unannounced-surge-d", UnannouncedSurge, 303, 7200, 900.0, 7.0) },
        Spec { rise: 8.0, count: 9, ..spec("flash-spikes-d", FlashSpikes, 304, 7200, 1500.0, 3.5) },
        Spec { count: 6, noise: 0.03, ..spec("retry-storm-d", RetryStorm, 305, 7200, 2000.0, 2.5) },
        Spec { noise: 0.04, ..spec("slow-ramp-d", SlowRamp, 306, 7200, 600.0, 5.0) },
        Spec { rise: 400.0, count: 2, ..spec("live-cliff-d", LiveCliff, 307, 7200, 900.0, 6.0) },
        Spec { count: 10, noise: 0.03, ..spec("dips-and-gaps-d", DipsAndGaps, 308, 7200, 2500.0, 1.0) },
        Spec { noise: 0.2, ..spec("noise-d", Noise, 309, 7200, 3000.0, 2.0) },
        Spec { event_at: Some(3000), noise: 0.05, ..spec("no-show-d", NoShow, 310, 7200, 900.0, 25.0) },
    ]
}

/// A smooth 0→1 step over `[start, start + width]` (half a cosine).
fn ramp(t: f64, start: f64, width: f64) -> f64 {
    if t <= start {
        0.0
    } else if t >= start + width.max(1e-9) {
        1.0
    } else {
        0.5 - 0.5 * (PI * (t - start) / width).cos()
    }
}

/// `count` episode starts, at least `gap` seconds apart, within `[from, to)`.
fn episodes(rng: &mut Rng, count: usize, from: f64, to: f64, gap: f64) -> Vec<f64> {
    let slot = (to - from) / count.max(1) as f64;
    (0..count).map(|i| from + slot * i as f64 + rng.range(0.0, (slot - gap).max(1.0))).collect()
}

/// Multiplies every second's level by `f(t)`.
fn set(level: &mut [f64], f: &dyn Fn(f64) -> f64) {
    for (t, l) in level.iter_mut().enumerate() {
        *l *= f(t as f64);
    }
}

/// The per-second values of `spec` (`NaN` in data gaps).
pub fn generate(spec: &Spec) -> Vec<f64> {
    let mut rng = Rng::new(spec.seed);
    let n = spec.seconds;
    let len = n as f64;
    let (b, k) = (spec.base, spec.size);
    // Level as a multiple of the baseline, per second.
    let mut level = vec![1.0; n];
    let mut gaps: Vec<(usize, usize)> = Vec::new();
    match spec.shape {
        Shape::Diurnal => set(&mut level, &|t| {
            let x = t / len;
            let bump = |c: f64, w: f64, h: f64| h * (-((x - c) / w).powi(2)).exp();
            1.0 + k * (2.0 * PI * x - PI / 2.0).sin() * 0.8 + bump(0.45, 0.04, 0.3) + bump(0.8, 0.06, 0.4)
        }),
        Shape::AnnouncedSurge | Shape::UnannouncedSurge => {
            let at = match spec.event_at {
                Some(at) => at as f64,
                None => rng.range(len / 3.0, len / 2.0),
            };
            let (rise, hold, decay) = (spec.rise, rng.range(300.0, 900.0), rng.range(1200.0, 2400.0));
            set(&mut level, &|t| {
                let up = ramp(t, at, rise);
                let after = (t - at - rise - hold).max(0.0);
                // Decays towards 40 % of the peak's excess.
                let excess = (k - 1.0) * (0.4 + 0.6 * (-after / decay).exp());
                1.0 + excess * up
            });
        }
        Shape::FlashSpikes => {
            for start in episodes(&mut rng, spec.count, 300.0, len - 300.0, 200.0) {
                let (height, rise) = (rng.range(2.5, k), rng.range(spec.rise * 0.5, spec.rise * 1.5));
                let (hold, fall) = (rng.range(20.0, 90.0), rng.range(10.0, 30.0));
                set(&mut level, &|t| {
                    let up = ramp(t, start, rise) * (1.0 - ramp(t, start + rise + hold, fall));
                    1.0 + (height - 1.0) * up
                });
            }
        }
        Shape::RetryStorm => {
            for start in episodes(&mut rng, spec.count, 300.0, len - 400.0, 300.0) {
                let (down, amp, tau) = (rng.range(8.0, 25.0), rng.range(1.5, k), rng.range(15.0, 40.0));
                set(&mut level, &|t| {
                    if t >= start && t < start + down {
                        return 0.3;
                    }
                    let since = t - start - down;
                    if since < 0.0 {
                        return 1.0;
                    }
                    // Retries back off exponentially: waves 2, 4, 8, … s apart on a decay.
                    let wave = (0..6).map(|i| (-((since - f64::from(1 << i)) / 2.0).powi(2)).exp()).sum::<f64>();
                    1.0 + (amp - 1.0) * (-since / tau).exp() * (0.7 + 0.3 * wave.min(1.0))
                });
            }
        }
        Shape::SlowRamp => set(&mut level, &|t| 1.0 + (k - 1.0) * t / len),
        Shape::LiveCliff => {
            for start in episodes(&mut rng, spec.count, 300.0, len - 300.0, 600.0) {
                let plateau = rng.range(600.0, 1500.0).min(len / spec.count.max(1) as f64 - spec.rise - 300.0);
                let cliff = rng.range(5.0, 15.0);
                set(&mut level, &|t| {
                    let up = ramp(t, start, spec.rise) * (1.0 - ramp(t, start + spec.rise + plateau, cliff));
                    1.0 + (k - 1.0) * up
                });
            }
        }
        Shape::DipsAndGaps => {
            set(&mut level, &|t| 1.0 + 0.2 * (2.0 * PI * t / len).sin());
            for start in episodes(&mut rng, spec.count, 200.0, len - 200.0, 150.0) {
                let (depth, fall, hold, rise) =
                    (rng.range(0.1, 0.3), rng.range(2.0, 5.0), rng.range(15.0, 90.0), rng.range(3.0, 10.0));
                set(&mut level, &|t| {
                    let down = ramp(t, start, fall) * (1.0 - ramp(t, start + fall + hold, rise));
                    1.0 - (1.0 - depth) * down
                });
                // Every other dip comes with a gap in the data around it; others stand alone.
                if rng.uniform() < 0.5 {
                    let from = (start + rng.range(-60.0, hold)).max(0.0) as usize;
                    gaps.push((from, from + rng.range(30.0, 240.0) as usize));
                }
            }
            let lone = (len * rng.range(0.1, 0.9)) as usize;
            gaps.push((lone, lone + 120));
        }
        Shape::Noise => {
            let blips = episodes(&mut rng, (len / 120.0) as usize, 0.0, len - 5.0, 3.0);
            for start in blips {
                let width = rng.range(1.0, 3.0);
                set(&mut level, &|t| if t >= start && t < start + width { k } else { 1.0 });
            }
        }
        Shape::NoShow => set(&mut level, &|t| 1.0 + 0.15 * (2.0 * PI * t / len).sin()),
    }
    // Slow multiplicative noise (AR(1) in log space, ~1 min memory) and per-second noise.
    let phi: f64 = 0.98;
    let mut x = 0.0;
    let mut out = Vec::with_capacity(n);
    for l in level {
        x = phi * x + spec.noise * (1.0 - phi * phi).sqrt() * rng.normal();
        let jitter = (1.0 + spec.noise * 0.5 * rng.normal()).max(0.05);
        out.push((b * l * x.exp() * jitter * 10.0).round().max(0.0) / 10.0);
    }
    for (from, to) in gaps {
        for v in out.iter_mut().take(to.min(n)).skip(from) {
            *v = f64::NAN;
        }
    }
    out
}

/// The CSV text of `spec` (header `t,rps`). Gaps alternate between `NaN` rows and missing rows.
pub fn csv(spec: &Spec) -> String {
    let values = generate(spec);
    let mut out = String::with_capacity(values.len() * 14);
    out.push_str("t,rps\n");
    let mut gap_index = 0usize;
    let mut in_gap = false;
    for (t, v) in values.iter().enumerate() {
        if v.is_nan() {
            if !in_gap {
                in_gap = true;
                gap_index += 1;
            }
            if gap_index % 2 == 1 {
                let _ = writeln!(out, "{t},NaN");
            }
            continue;
        }
        in_gap = false;
        let _ = writeln!(out, "{t},{v:.1}");
    }
    out
}

/// How an announcement relates to the real traffic, seconds and multiplier.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Trace name.
    pub trace: &'static str,
    /// Case name (`on-time`, `early-10m`, `late-10m`, `half-size`, `double-size`, `never`).
    pub case: &'static str,
    /// Second of the trace at which the announced event starts.
    pub event_at: usize,
    /// Announced multiplier.
    pub multiplier: f64,
}

/// The announced cases of a set: every announced surge on time, 10 minutes early and late, at
/// half and at twice its real size; every no-show once.
pub fn cases(specs: &[Spec]) -> Vec<Case> {
    let mut out = Vec::new();
    for s in specs {
        let Some(at) = s.event_at else { continue };
        let case = |case, event_at, multiplier| Case { trace: s.name, case, event_at, multiplier };
        match s.shape {
            Shape::AnnouncedSurge => out.extend([
                case("on-time", at, s.size),
                case("early-10m", at.saturating_sub(600), s.size),
                case("late-10m", at + 600, s.size),
                case("half-size", at, s.size / 2.0),
                case("double-size", at, s.size * 2.0),
            ]),
            _ => out.push(case("never", at, s.size)),
        }
    }
    out
}

/// `cases.csv` of a set: `trace,case,event_at,multiplier`.
pub fn cases_csv(specs: &[Spec]) -> String {
    let mut out = String::from("trace,case,event_at,multiplier\n");
    for c in cases(specs) {
        let _ = writeln!(out, "{},{},{},{}", c.trace, c.case, c.event_at, c.multiplier);
    }
    out
}

/// Every file of both sets, as (path relative to the traces directory, contents).
pub fn files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (dir, specs) in [("tuned", tuned()), ("heldout", heldout())] {
        for s in &specs {
            out.push((format!("{dir}/{}.csv", s.name), csv(s)));
        }
        out.push((format!("{dir}/cases.csv"), cases_csv(&specs)));
    }
    out
}

#[cfg(test)]
#[path = "tracegen_tests.rs"]
mod tests;

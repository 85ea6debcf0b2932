//! `mallctl simulate`: replays a traffic trace (CSV `t,rps`) against the Mall's autoscaling engine
//! and the baseline policies, deterministically; `--bench` (see [`crate::bench`]) runs every policy
//! on every trace of the repository's trace sets; `--generate DIR` writes those sets.
//!
//! Contract: validates the Mall first (same rules as `validate`); prints only the table or JSON
//! on stdout. `--start` is the wall-clock time of the trace's t=0; when omitted it is the first
//! event's start − its warmup − 1 h (an hour of normal traffic before the event arms), or
//! 2026-01-01T00:00:00Z when the Mall has no events.

use crate::plot;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use mall_controllers::autoscaler::EngineConfig;
use mall_simulator::runner::{PolicyKind, Run, sim_config};
use mall_simulator::{Outcome, Trace};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Output formats of `simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text.
    Table,
    /// JSON.
    Json,
}

/// Arguments of `mallctl simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Mall manifest whose `spec.autoscaling` drives the engine.
    #[arg(short = 'f', long = "filename", required_unless_present = "generate")]
    pub file: Option<String>,
    /// Trace CSV (`t,rps`, one row per second; `NaN`, an empty value or skipped seconds are data
    /// gaps).
    #[arg(long, required_unless_present_any = ["bench", "generate"])]
    pub trace: Option<PathBuf>,
    /// mall, hpa, keda, keda-cached, kpa, oracle (comma-separated) or all (all but keda-cached).
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Wall-clock time of t=0 (RFC 3339); with --bench also NAME=TIME per trace. Repeatable.
    #[arg(long)]
    pub start: Vec<String>,
    /// Pod start-up time (request → Ready).
    #[arg(long, default_value = "30s")]
    pub startup: String,
    /// Requests/s one Ready pod serves at most (default: targetPerReplica ÷ 0.7). The engine is
    /// not told this value.
    #[arg(long)]
    pub capacity: Option<f64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Write an SVG of demand, capacity and replicas per policy (single trace only).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Run every policy on every trace of --traces (each sub-directory is a set; every trace runs
    /// unannounced, and once per row of the set's `cases.csv` with an announced event), at every
    /// --capacity-factors, and print one line per run with the ratios and whether mall met the
    /// acceptance (violation-s ≤ hpa and keda, replica-s ≤ hpa), then what announcements cost.
    #[arg(long)]
    pub bench: bool,
    /// Directory of traces for --bench (default: the repository's `examples/traces`).
    #[arg(long)]
    pub traces: Option<PathBuf>,
    /// With --bench: the true pod capacity as multiples of --capacity (or targetPerReplica ÷ 0.7).
    #[arg(long, value_delimiter = ',', default_value = "0.6,1,1.5")]
    pub capacity_factors: Vec<f64>,
    /// Write the generated benchmark traces (`tuned/`, `heldout/`, with `cases.csv`) into DIR and
    /// exit; the repository's copy is `examples/traces`.
    #[arg(long, value_name = "DIR")]
    pub generate: Option<PathBuf>,
}

pub(crate) fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("--start {text:?} is not an RFC 3339 time"))
}

/// The documented default t=0.
pub fn default_start(cfg: &EngineConfig) -> DateTime<Utc> {
    match cfg.events.first() {
        Some(e) => e.start - chrono::Duration::from_std(e.warmup).unwrap_or_default() - chrono::Duration::hours(1),
        None => DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20454),
    }
}

pub(crate) fn load_config(file: &str) -> anyhow::Result<EngineConfig> {
    let mut report = Vec::new();
    let (malls, ok) = crate::validate::run(&[file.to_string()], &mut report)?;
    if !ok {
        bail!("{file} is not valid:\n{}", String::from_utf8_lossy(&report).trim_end());
    }
    let [(_, mall)] = malls.as_slice() else { bail!("{file}: expected exactly one Mall, found {}", malls.len()) };
    EngineConfig::from_mall(mall).with_context(|| format!("{file}: spec.autoscaling"))
}

pub(crate) fn kinds(policy: &str) -> anyhow::Result<Vec<PolicyKind>> {
    if policy == "all" {
        return Ok(PolicyKind::ALL.to_vec());
    }
    policy
        .split(',')
        .map(|p| {
            PolicyKind::parse(p.trim())
                .with_context(|| format!("unknown policy {p:?} (mall, hpa, keda, keda-cached, kpa, oracle, all)"))
        })
        .collect()
}

/// One trace's result.
pub(crate) struct TraceResult {
    pub(crate) trace: Trace,
    pub(crate) start: DateTime<Utc>,
    pub(crate) announced: bool,
    pub(crate) outcomes: Vec<Outcome>,
}

/// `--startup` in whole seconds.
pub(crate) fn startup_seconds(args: &Args) -> anyhow::Result<u32> {
    let startup = mall_crds::common::parse_duration(&args.startup)
        .with_context(|| format!("--startup {:?} is not a duration", args.startup))?;
    Ok(u32::try_from(startup.as_secs()).unwrap_or(u32::MAX))
}

/// Runs `kinds` on `trace`. Without `start` the documented default applies, or — with
/// `unannounced` — the Mall's events are removed. `capacity` is the pods' true capacity.
#[allow(clippy::too_many_arguments)]
pub(crate) fn simulate_one(
    trace: Trace,
    cfg: &EngineConfig,
    start: Option<DateTime<Utc>>,
    unannounced: bool,
    capacity: Option<f64>,
    args: &Args,
    kinds: &[PolicyKind],
    record: bool,
) -> anyhow::Result<TraceResult> {
    let startup = startup_seconds(args)?;
    let mut cfg = cfg.clone();
    let announced = start.is_some() || !unannounced;
    let start = match start {
        Some(s) => s,
        None => {
            if unannounced {
                cfg.events.clear();
            }
            default_start(&cfg)
        }
    };
    let after = cfg
        .events
        .iter()
        .map(|e| (e.start - start).num_seconds())
        .find(|&s| s >= 0)
        .and_then(|s| u32::try_from(s).ok());
    let sim = sim_config(&cfg, startup, capacity);
    let outcomes = Run { trace: &trace, sim: &sim, engine: &cfg, start, after, record }.all(kinds);
    Ok(TraceResult { trace, start, announced, outcomes })
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 { if a == 0.0 { "0/0".into() } else { "inf".into() } } else { format!("{:.2}", a / b) }
}

fn table(r: &TraceResult) -> String {
    let mut s = format!(
        "trace {} ({} s, t=0 at {}, events {})\n{:<8} {:>10} {:>14} {:>14} {:>6} {:>8} {:>12}\n",
        r.trace.name,
        r.trace.len(),
        r.start.to_rfc3339(),
        if r.announced { "announced" } else { "removed" },
        "policy",
        "violation-s",
        "dropped",
        "replica-s",
        "max",
        "actions",
        "viol-after-ev"
    );
    for o in &r.outcomes {
        s.push_str(&format!(
            "{:<8} {:>10} {:>14.0} {:>14.0} {:>6} {:>8} {:>12}\n",
            o.name,
            o.slo_violation_seconds,
            o.dropped_requests,
            o.replica_seconds,
            o.max_replicas,
            o.scale_actions,
            o.slo_violation_seconds_after.map_or("-".into(), |v| v.to_string())
        ));
    }
    if let Some(m) = r.outcomes.iter().find(|o| o.name == "mall") {
        for o in r.outcomes.iter().filter(|o| o.name != "mall") {
            s.push_str(&format!(
                "mall/{:<7} violation-s {:>6}  replica-s {:>6}\n",
                o.name,
                ratio(m.slo_violation_seconds as f64, o.slo_violation_seconds as f64),
                ratio(m.replica_seconds, o.replica_seconds)
            ));
        }
    }
    s
}

pub(crate) fn to_json(r: &TraceResult) -> serde_json::Value {
    json!({"trace": r.trace.name, "start": r.start.to_rfc3339(), "eventsAnnounced": r.announced, "policies": r.outcomes})
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.generate {
        return crate::bench::generate(dir);
    }
    let file = args.file.as_deref().context("-f/--filename is required")?;
    let cfg = load_config(file)?;
    let kinds = kinds(&args.policy)?;
    if args.bench {
        return crate::bench::run(args, &cfg, &kinds);
    }
    let path = args.trace.as_ref().context("--trace is required without --bench")?;
    let start = match args.start.as_slice() {
        [] => None,
        [one] => Some(parse_time(one)?),
        _ => bail!("one --start without --bench"),
    };
    let r = simulate_one(read_trace(path)?, &cfg, start, false, args.capacity, args, &kinds, args.plot.is_some())?;
    if let Some(path) = &args.plot {
        let capacity = args.capacity.unwrap_or(cfg.storefront.target_per_replica / 0.7);
        std::fs::write(path, plot::svg(&r.trace, &r.outcomes, capacity))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&r))?),
        Output::Table => println!("{}", table(&r)),
    }
    Ok(())
}

pub(crate) fn read_trace(path: &Path) -> anyhow::Result<Trace> {
    Ok(Trace::read(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(file: &str) -> EngineConfig {
        load_config(&format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn default_start_is_an_hour_before_the_first_warmup() {
        let c = cfg("examples/double-eleven.yaml");
        // 2026-11-11T00:00+08:00 − 20m − 1h.
        assert_eq!(default_start(&c), parse_time("2026-11-10T22:40:00+08:00").unwrap());
        let mut none = c.clone();
        none.events.clear();
        assert_eq!(default_start(&none), parse_time("2026-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn policies_parse() {
        assert_eq!(kinds("all").unwrap().len(), 5);
        assert_eq!(kinds("mall,kpa").unwrap(), vec![PolicyKind::Mall, PolicyKind::Kpa]);
        assert!(kinds("vpa").is_err());
        assert_eq!(ratio(0.0, 0.0), "0/0");
        assert_eq!(ratio(1.0, 4.0), "0.25");
    }

    #[test]
    fn simulates_a_small_trace_deterministically() {
        let c = cfg("examples/double-eleven.yaml");
        let mut text = String::from("t,rps\n");
        for t in 0..1200 {
            text.push_str(&format!("{t},{}\n", if (600..900).contains(&t) { 3000.0 } else { 500.0 }));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step.csv");
        std::fs::write(&path, text).unwrap();
        let svg = dir.path().join("p.svg");
        let args = Args {
            file: None,
            trace: Some(path.clone()),
            policy: "all".into(),
            start: vec![],
            startup: "30s".into(),
            capacity: None,
            output: Output::Json,
            plot: Some(svg.clone()),
            bench: false,
            traces: None,
            capacity_factors: vec![1.0],
            generate: None,
        };
        let run =
            || simulate_one(read_trace(&path).unwrap(), &c, None, false, None, &args, &PolicyKind::ALL, true).unwrap();
        let (a, b) = (run(), run());
        let strip = |r: &TraceResult| serde_json::to_string(&to_json(r)).unwrap();
        assert_eq!(strip(&a), strip(&b), "deterministic");
        let oracle = a.outcomes.iter().find(|o| o.name == "oracle").unwrap();
        assert_eq!(oracle.slo_violation_seconds, 0);
        let hpa = a.outcomes.iter().find(|o| o.name == "hpa").unwrap();
        assert!(hpa.slo_violation_seconds > 0, "a 6× step violates a reactive HPA");
        assert!(table(&a).contains("mall/hpa"));
        std::fs::write(&svg, plot::svg(&a.trace, &a.outcomes, 142.0)).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    }
}

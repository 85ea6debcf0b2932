//! `mallctl plan NAME --event EVENT`: before a promotion, replay the traffic it should bring
//! through the autoscaler with the Mall's live settings, and say what it would take.
//!
//! Contract: the live Mall is read (its `spec.autoscaling`, the event by name: a missing Mall,
//! autoscaling or event is an error naming it). The baseline traffic is `--trace FILE` (`t,rps`)
//! or the Mall's own storefront series over the last `--history` from its Prometheus
//! (`spec.autoscaling.prometheus.url`, the autoscaler's storefront query, one point per second
//! or coarser for long histories; gaps filled with the mean). The planned traffic runs from
//! `--lead` before the event's warm-up to `--lead` after its end: the baseline repeated, times
//! the event's `multiplier` between its start and end (1 when it only sets `minReplicas`). That
//! trace is simulated (`mall_simulator`, the same engine as the operator; pods take `--startup`
//! to become Ready and serve `--capacity` requests/s each, default `targetPerReplica ÷ 0.7`) for
//! the Mall's policy and the oracle (exactly the replicas demand needs). Printed: the peak
//! demand, the peak replicas the autoscaler would run, replica-hours, SLO-violation seconds
//! (overall and from the event's start), and whether `max` would cap it (the oracle's peak
//! above `max`), with the command that lifts it. Deterministic for a given trace.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use mall_controllers::autoscaler::EngineConfig;
use mall_controllers::autoscaler::config::EventConfig;
use mall_simulator::Trace;
use mall_simulator::runner::{PolicyKind, Run, sim_config};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `mallctl plan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Mall name.
    pub name: String,
    /// The event (`spec.autoscaling.events[].name`).
    #[arg(long)]
    pub event: String,
    /// Baseline traffic from a trace CSV (`t,rps`) instead of the Mall's Prometheus history.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// How much Prometheus history makes the baseline.
    #[arg(long, default_value = "1h", value_parser = crate::dev::parse_duration)]
    pub history: Duration,
    /// Normal traffic simulated before the warm-up and after the end.
    #[arg(long, default_value = "30m", value_parser = crate::dev::parse_duration)]
    pub lead: Duration,
    /// Pod start-up time (request → Ready).
    #[arg(long, default_value = "30s", value_parser = crate::dev::parse_duration)]
    pub startup: Duration,
    /// Requests/s one Ready pod serves at most (default: targetPerReplica ÷ 0.7).
    #[arg(long)]
    pub capacity: Option<f64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = crate::simulate::Output::Table)]
    pub output: crate::simulate::Output,
}

/// What the plan found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The Mall, `namespace/name`.
    pub mall: String,
    /// The event.
    pub event: String,
    /// Where the baseline came from.
    pub baseline: String,
    /// Mean baseline demand, requests/s.
    pub baseline_mean: f64,
    /// Multiplier applied during the event.
    pub multiplier: f64,
    /// The event's start.
    pub event_start: DateTime<Utc>,
    /// The event's end.
    pub event_end: DateTime<Utc>,
    /// Wall-clock time of the simulation's first second.
    pub simulated_from: DateTime<Utc>,
    /// Seconds simulated.
    pub simulated_seconds: usize,
    /// Requests/s one pod serves in the simulation.
    pub capacity_per_pod: f64,
    /// Highest demand, requests/s.
    pub peak_demand: f64,
    /// Most storefront replicas the autoscaler would run.
    pub peak_replicas: i32,
    /// Most the demand needs (the oracle, uncapped by `max`).
    pub needed_at_peak: i32,
    /// `spec.autoscaling.storefront.max`.
    pub max: i32,
    /// Replica-hours the autoscaler would use.
    pub replica_hours: f64,
    /// Seconds over the SLO (demand above the Ready capacity), whole run.
    pub slo_violation_seconds: u64,
    /// Of those, from the event's start.
    pub slo_violation_seconds_from_start: u64,
    /// Whether `max` would cap the storefront below what the peak needs.
    pub capped_by_max: bool,
}

/// The mean of the measured (finite) values; `None` without any.
fn mean(values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}

/// The planned trace: `base` repeated from `from`, times the event's multiplier during it.
pub fn event_trace(base: &[f64], event: &EventConfig, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Trace> {
    let Some(mean) = mean(base) else { bail!("the baseline has no data") };
    let seconds = usize::try_from((to - from).num_seconds()).unwrap_or(0);
    if seconds > 31 * 86_400 {
        bail!("event {} spans {} days: plan simulates at most 31 days", event.name, seconds / 86_400);
    }
    let multiplier = event.multiplier.unwrap_or(1.0);
    let rps = (0..seconds)
        .map(|t| {
            let at = from + chrono::Duration::seconds(t as i64);
            let value = base[t % base.len()];
            let value = if value.is_finite() { value } else { mean };
            if at >= event.start && at < event.end { value * multiplier } else { value }
        })
        .collect();
    Ok(Trace { name: event.name.clone(), rps })
}

/// Plans `event` of a Mall with engine `cfg` on baseline `base` (see the module header).
pub fn plan(cfg: &EngineConfig, event: &EventConfig, base: &[f64], args: &Args) -> anyhow::Result<Report> {
    let lead = chrono::Duration::from_std(args.lead).unwrap_or_default();
    let warmup = chrono::Duration::from_std(event.warmup).unwrap_or_default();
    let from = event.start - warmup - lead;
    let trace = event_trace(base, event, from, event.end + lead)?;
    let startup = u32::try_from(args.startup.as_secs()).unwrap_or(u32::MAX);
    let sim = sim_config(cfg, startup, args.capacity);
    // The oracle shows what demand needs: the same model without the `max` cap.
    let mut uncapped = sim.clone();
    uncapped.max = i32::MAX / 2;
    let after = u32::try_from((event.start - from).num_seconds()).ok();
    let run = |sim| Run { trace: &trace, sim, engine: cfg, start: from, after, record: false };
    let mall = run(&sim).policy(PolicyKind::Mall);
    let oracle = run(&uncapped).policy(PolicyKind::Oracle);
    Ok(Report {
        mall: String::new(),
        event: event.name.clone(),
        baseline: String::new(),
        baseline_mean: mean(base).unwrap_or(0.0),
        multiplier: event.multiplier.unwrap_or(1.0),
        event_start: event.start,
        event_end: event.end,
        simulated_from: from,
        simulated_seconds: trace.len(),
        capacity_per_pod: sim.capacity,
        peak_demand: trace.rps.iter().copied().fold(0.0, f64::max),
        peak_replicas: mall.max_replicas,
        needed_at_peak: oracle.max_replicas,
        max: cfg.storefront.max,
        replica_hours: mall.replica_seconds / 3600.0,
        slo_violation_seconds: mall.slo_violation_seconds,
        slo_violation_seconds_from_start: mall.slo_violation_seconds_after.unwrap_or(0),
        capped_by_max: oracle.max_replicas > cfg.storefront.max,
    })
}

/// The report as text.
pub fn text(r: &Report, name: &str) -> String {
    let verdict = if r.capped_by_max {
        format!(
            "WOULD CAP IT: {} replicas needed at the peak, max is {} (mallctl scale {name} --tier storefront --max {})",
            r.needed_at_peak, r.max, r.needed_at_peak
        )
    } else {
        format!("enough ({} needed at the peak, max {})", r.needed_at_peak, r.max)
    };
    let hours = r.simulated_seconds as f64 / 3600.0;
    format!(
        "plan for Mall {}, event {} (x{}, {} to {})\n\
         baseline:       {} (mean {:.1} req/s)\n\
         simulated:      {:.1} h from {} ({:.1} req/s per pod)\n\
         peak demand:    {:.1} req/s\n\
         storefront:     up to {} replicas\n\
         replica-hours:  {:.1}\n\
         SLO violations: {} s ({} s from the event's start)\n\
         max:            {verdict}\n",
        r.mall,
        r.event,
        r.multiplier,
        r.event_start.to_rfc3339(),
        r.event_end.to_rfc3339(),
        r.baseline,
        r.baseline_mean,
        hours,
        r.simulated_from.to_rfc3339(),
        r.capacity_per_pod,
        r.peak_demand,
        r.peak_replicas,
        r.replica_hours,
        r.slo_violation_seconds,
        r.slo_violation_seconds_from_start,
    )
}

/// Runs `plan`.
pub async fn run(kube: &crate::ops::KubeArgs, args: &Args) -> anyhow::Result<()> {
    let conn = kube.connect().await?;
    let api: kube::Api<mall_crds::Mall> = kube::Api::namespaced(conn.client.clone(), &conn.namespace);
    let Some(mall) =
        api.get_opt(&args.name).await.with_context(|| format!("reading Mall {}/{}", conn.namespace, args.name))?
    else {
        bail!("Mall {:?} not found in namespace {}", args.name, conn.namespace);
    };
    let Some(scaling) = &mall.spec.autoscaling else {
        bail!("Mall {} has no spec.autoscaling: nothing to plan", args.name);
    };
    let cfg = EngineConfig::from_mall(&mall).context("spec.autoscaling")?;
    let Some(event) = cfg.events.iter().find(|e| e.name == args.event) else {
        let names: Vec<&str> = cfg.events.iter().map(|e| e.name.as_str()).collect();
        bail!(
            "Mall {} has no event {:?} (events: {})",
            args.name,
            args.event,
            if names.is_empty() { "none".into() } else { names.join(", ") }
        );
    };
    let (base, source) = match &args.trace {
        Some(path) => {
            let trace = Trace::read(path).with_context(|| format!("reading {}", path.display()))?;
            let what = format!("trace {}, {} s", path.display(), trace.len());
            (trace.rps, what)
        }
        None => {
            let queries =
                mall_controllers::autoscaler::prometheus::Queries::for_mall(&cfg, &conn.namespace, &args.name);
            let source = mall_controllers::autoscaler::prometheus::PrometheusSource::new(
                &scaling.prometheus.url,
                queries.clone(),
                Duration::from_secs(30),
            )?;
            let end = Utc::now();
            let start = end - chrono::Duration::from_std(args.history).unwrap_or_default();
            let base = source.history(&queries.storefront, start, end).await.map_err(|e| anyhow::anyhow!(e))?;
            let what = format!(
                "the last {} of {} (Prometheus {})",
                crate::dev::format_duration(args.history),
                queries.storefront,
                scaling.prometheus.url
            );
            (base, what)
        }
    };
    let mut report = plan(&cfg, event, &base, args)?;
    report.mall = format!("{}/{}", conn.namespace, args.name);
    report.baseline = source;
    match args.output {
        crate::simulate::Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        crate::simulate::Output::Table => print!("{}", text(&report, &args.name)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(multiplier: Option<f64>) -> EventConfig {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        EventConfig {
            name: "d11".into(),
            start: at("2026-11-11T00:00:00Z"),
            end: at("2026-11-11T01:00:00Z"),
            warmup: Duration::from_secs(600),
            multiplier,
            min_replicas: None,
        }
    }

    #[test]
    fn the_event_multiplies_the_repeated_baseline_inside_its_window_only() {
        let e = event(Some(8.0));
        let from = e.start - chrono::Duration::seconds(10);
        let trace = event_trace(&[10.0, f64::NAN], &e, from, e.start + chrono::Duration::seconds(4)).unwrap();
        assert_eq!(trace.rps[..10], [10.0; 10], "before: the baseline, its gap filled with the mean");
        assert_eq!(trace.rps[10..], [80.0; 4]);
        assert!(event_trace(&[f64::NAN], &e, from, e.start).is_err());
    }
}

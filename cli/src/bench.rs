//! `mallctl simulate --bench` and `--generate`: the benchmark over the repository's trace sets.
//!
//! Contract: `--generate DIR` writes exactly the generator's files (`tuned/`, `heldout/`, each
//! with `cases.csv`) and nothing else. `--bench` reads `--traces` (default: `examples/traces` in
//! the working directory, else beside the sources this binary was built from): every
//! sub-directory with `*.csv` traces is a set (the directory itself when it holds traces). A
//! trace runs once with the Mall's events removed, and once per row of its set's `cases.csv`
//! (`trace,case,event_at,multiplier`: the Mall's first event starts at second `event_at` of the
//! trace and announces `multiplier`); `--start NAME=TIME` (or a bare `--start TIME` for every
//! trace) replaces these by one run with that t=0. Every run is repeated at each capacity factor.
//! One line per run on stdout with the acceptance verdict (violation-s ≤ hpa's and keda's,
//! replica-s ≤ hpa's), then what each announcement costs against the same trace unannounced,
//! then a summary per set; malformed input is an error naming the file and line.

use crate::simulate::{Args, Output, TraceResult, parse_time, ratio, read_trace, simulate_one};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use mall_controllers::autoscaler::EngineConfig;
use mall_simulator::runner::PolicyKind;
use mall_simulator::tracegen;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes the generated trace sets into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let files = tracegen::files();
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("wrote {} files under {}", files.len(), dir.display());
    Ok(())
}

/// The trace directory: `--traces`, else `examples/traces` here, else in the source tree.
fn traces_root(args: &Args) -> PathBuf {
    if let Some(dir) = &args.traces {
        return dir.clone();
    }
    let here = PathBuf::from("examples/traces");
    if here.is_dir() { here } else { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/traces") }
}

fn csv_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv") && p.file_stem().is_some_and(|s| s != "cases"))
        .collect();
    files.sort();
    Ok(files)
}

/// (set name, directory) of every set under `root`.
fn sets(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if !csv_files(root)?.is_empty() {
        out.push((root.file_name().map_or("traces".into(), |n| n.to_string_lossy().into_owned()), root.to_path_buf()));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        if !csv_files(&d)?.is_empty() {
            out.push((d.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()), d));
        }
    }
    if out.is_empty() {
        bail!("{}: no *.csv traces (generate them with `mallctl simulate --generate DIR`)", root.display());
    }
    Ok(out)
}

/// One row of `cases.csv`.
#[derive(Clone, Debug, PartialEq)]
struct CaseRow {
    case: String,
    event_at: i64,
    multiplier: f64,
}

/// `cases.csv` of a set, by trace name (empty when the file does not exist).
fn read_cases(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<CaseRow>>> {
    let path = dir.join("cases.csv");
    let mut out: BTreeMap<String, Vec<CaseRow>> = BTreeMap::new();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for (i, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [trace, case, event_at, multiplier] = fields.as_slice() else {
            bail!("{}: expected `trace,case,event_at,multiplier`", at());
        };
        let event_at = event_at.parse().with_context(|| format!("{}: event_at {event_at:?}", at()))?;
        let multiplier: f64 = multiplier.parse().with_context(|| format!("{}: multiplier {multiplier:?}", at()))?;
        if !(multiplier.is_finite() && multiplier > 0.0) {
            bail!("{}: multiplier must be positive", at());
        }
        out.entry(trace.to_string()).or_default().push(CaseRow { case: case.to_string(), event_at, multiplier });
    }
    Ok(out)
}

/// One run of the benchmark.
struct Row {
    set: String,
    case: String,
    factor: f64,
    result: TraceResult,
}

impl Row {
    fn get(&self, name: &str) -> Option<&mall_simulator::Outcome> {
        self.result.outcomes.iter().find(|o| o.name == name)
    }

    /// The acceptance failures of this run (empty: met).
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(mall) = self.get("mall") else { return out };
        for other in ["hpa", "keda"] {
            if self.get(other).is_some_and(|o| mall.slo_violation_seconds > o.slo_violation_seconds) {
                out.push(format!("viol>{other}"));
            }
        }
        if let Some(h) = self.get("hpa").filter(|h| mall.replica_seconds > h.replica_seconds) {
            out.push(format!("rs>hpa×{:.3}", mall.replica_seconds / h.replica_seconds));
        }
        out
    }

    /// Stretch goals: (≤ 0.5× hpa's violations, or hpa has none; ≤ 1.25× oracle's cost).
    fn stretch(&self) -> (bool, bool) {
        match (self.get("mall"), self.get("hpa"), self.get("oracle")) {
            (Some(m), Some(h), Some(o)) => (
                h.slo_violation_seconds == 0 || m.slo_violation_seconds as f64 <= 0.5 * h.slo_violation_seconds as f64,
                m.replica_seconds <= 1.25 * o.replica_seconds,
            ),
            _ => (false, false),
        }
    }
}

/// The Mall configuration for `case`: the first event starts at `case.event_at` with its multiplier.
fn announced(cfg: &EngineConfig, case: &CaseRow, file: &Path) -> anyhow::Result<(EngineConfig, DateTime<Utc>)> {
    let mut cfg = cfg.clone();
    let Some(event) = cfg.events.first_mut() else {
        bail!("{}: case {} announces an event, but the Mall has none", file.display(), case.case);
    };
    event.multiplier = Some(case.multiplier);
    let start = event.start - chrono::Duration::seconds(case.event_at);
    Ok((cfg, start))
}

/// Runs the benchmark.
pub fn run(args: &Args, cfg: &EngineConfig, kinds: &[PolicyKind]) -> anyhow::Result<()> {
    if args.plot.is_some() {
        bail!("--plot needs a single --trace");
    }
    if args.capacity_factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        bail!("--capacity-factors: every factor must be a positive number");
    }
    let mut named = BTreeMap::new();
    let mut bare = None;
    for s in &args.start {
        match s.split_once('=') {
            Some((name, t)) => {
                named.insert(name.to_string(), parse_time(t)?);
            }
            None => bare = Some(parse_time(s)?),
        }
    }
    let base_capacity = args.capacity.unwrap_or(cfg.storefront.target_per_replica / 0.7);
    let mut rows = Vec::new();
    for (set, dir) in sets(&traces_root(args))? {
        let cases = read_cases(&dir)?;
        let files = csv_files(&dir)?;
        if let Some(unknown) =
            cases.keys().find(|name| !files.iter().any(|f| f.file_stem().is_some_and(|s| s == name.as_str())))
        {
            bail!("{}: trace {unknown:?} has no {unknown}.csv in {}", dir.join("cases.csv").display(), dir.display());
        }
        for file in files {
            let trace = read_trace(&file)?;
            let runs: Vec<(String, EngineConfig, Option<DateTime<Utc>>)> =
                match (named.get(&trace.name).copied().or(bare), cases.get(&trace.name)) {
                    (Some(start), _) => vec![("announced".into(), cfg.clone(), Some(start))],
                    // The same trace unannounced too: what each announcement costs or saves.
                    (None, Some(rows)) => std::iter::once(Ok(("unannounced".to_string(), cfg.clone(), None)))
                        .chain(rows.iter().map(|c| {
                            announced(cfg, c, &dir.join("cases.csv")).map(|(e, s)| (c.case.clone(), e, Some(s)))
                        }))
                        .collect::<anyhow::Result<_>>()?,
                    (None, None) => vec![("unannounced".into(), cfg.clone(), None)],
                };
            for (case, engine, start) in runs {
                for &factor in &args.capacity_factors {
                    let result = simulate_one(
                        trace.clone(),
                        &engine,
                        start,
                        start.is_none(),
                        Some(base_capacity * factor),
                        args,
                        kinds,
                        false,
                    )?;
                    rows.push(Row { set: set.clone(), case: case.clone(), factor, result });
                }
            }
        }
    }
    match args.output {
        Output::Json => {
            let runs: Vec<_> = rows
                .iter()
                .map(|r| {
                    let mut v = crate::simulate::to_json(&r.result);
                    v["set"] = json!(r.set);
                    v["case"] = json!(r.case);
                    v["capacityFactor"] = json!(r.factor);
                    v["acceptanceFailures"] = json!(r.failures());
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({"runs": runs}))?);
        }
        Output::Table => print!("{}", table(&rows)),
    }
    Ok(())
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<20} {:<12} {:>4} | {:>5} {:>5} {:>5} {:>5} | {:>7} {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6} {:>6} | verdict",
        "set",
        "trace",
        "case",
        "cap",
        "mall",
        "hpa",
        "keda",
        "kpa",
        "mall",
        "hpa",
        "keda",
        "kpa",
        "oracle",
        "v/hpa",
        "v/keda",
        "rs/hpa",
        "rs/orc"
    );
    let _ = writeln!(s, "{:52}| {:^23} | {:^39} |", "", "violation-seconds", "replica-seconds (thousands)");
    let policy = |r: &Row, n: &str| r.get(n).map(|o| (o.slo_violation_seconds, o.replica_seconds));
    for r in rows {
        let v = |n| policy(r, n).map_or("-".into(), |(v, _)| v.to_string());
        let c = |n| policy(r, n).map_or("-".into(), |(_, c)| format!("{:.1}", c / 1000.0));
        let vr = |n| match (policy(r, "mall"), policy(r, n)) {
            (Some((m, _)), Some((o, _))) => ratio(m as f64, o as f64),
            _ => "-".into(),
        };
        let cr = |n| match (policy(r, "mall"), policy(r, n)) {
            (Some((_, m)), Some((_, o))) => ratio(m, o),
            _ => "-".into(),
        };
        let failures = r.failures();
        let _ = writeln!(
            s,
            "{:<8} {:<20} {:<12} {:>4} | {:>5} {:>5} {:>5} {:>5} | {:>7} {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6} {:>6} | {}",
            r.set,
            r.result.trace.name,
            r.case,
            r.factor,
            v("mall"),
            v("hpa"),
            v("keda"),
            v("kpa"),
            c("mall"),
            c("hpa"),
            c("keda"),
            c("kpa"),
            c("oracle"),
            vr("hpa"),
            vr("keda"),
            cr("hpa"),
            cr("oracle"),
            if failures.is_empty() { "ok".to_string() } else { format!("FAIL {}", failures.join(" ")) }
        );
    }
    // What an announcement costs: mall's replica-seconds against the same trace unannounced.
    let mut wrote_header = false;
    for r in rows.iter().filter(|r| r.result.announced) {
        let plain = rows.iter().find(|u| {
            u.set == r.set && u.factor == r.factor && u.result.trace.name == r.result.trace.name && !u.result.announced
        });
        if let (Some(m), Some(u)) = (r.get("mall"), plain.and_then(|u| u.get("mall"))) {
            if !wrote_header {
                let _ = writeln!(
                    s,
                    "\nannouncement cost (mall replica-s announced − unannounced; violation-s announced/unannounced):"
                );
                wrote_header = true;
            }
            let _ = writeln!(
                s,
                "  {:<8} {:<20} {:<12} ×{:<4} {:>+9.0} replica-s ({:>+6.1} % of hpa's), violation-s {} / {}",
                r.set,
                r.result.trace.name,
                r.case,
                r.factor,
                m.replica_seconds - u.replica_seconds,
                r.get("hpa").map_or(0.0, |h| 100.0 * (m.replica_seconds - u.replica_seconds) / h.replica_seconds),
                m.slo_violation_seconds,
                u.slo_violation_seconds
            );
        }
    }
    let mut groups: BTreeMap<(String, String), (usize, usize, usize, usize)> = BTreeMap::new();
    for r in rows {
        let g = groups.entry((r.set.clone(), format!("{}", r.factor))).or_default();
        let (half, cost) = r.stretch();
        *g = (g.0 + 1, g.1 + usize::from(r.failures().is_empty()), g.2 + usize::from(half), g.3 + usize::from(cost));
    }
    let _ = writeln!(s);
    for ((set, factor), (n, ok, half, cost)) in groups {
        let _ = writeln!(
            s,
            "summary {set:<8} capacity ×{factor:<4}: acceptance met on {ok}/{n}; stretch: violation-s ≤ 0.5× hpa on {half}/{n}, replica-s ≤ 1.25× oracle on {cost}/{n}"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::load_config;

    #[test]
    fn cases_are_parsed_with_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_cases(dir.path()).unwrap().is_empty(), "no cases.csv: none");
        std::fs::write(
            dir.path().join("cases.csv"),
            "trace,case,event_at,multiplier\na,on-time,5400,20\na,half,5400,10\n",
        )
        .unwrap();
        let c = read_cases(dir.path()).unwrap();
        assert_eq!(c["a"].len(), 2);
        assert_eq!(c["a"][1], CaseRow { case: "half".into(), event_at: 5400, multiplier: 10.0 });
        std::fs::write(dir.path().join("cases.csv"), "trace,case,event_at,multiplier\na,x,soon,20\n").unwrap();
        let e = format!("{:#}", read_cases(dir.path()).unwrap_err());
        assert!(e.contains("cases.csv:2") && e.contains("event_at"), "{e}");
    }

    #[test]
    fn the_repository_sets_are_found() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/traces");
        let names: Vec<String> = sets(&root).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["heldout", "tuned"]);
        let cfg = load_config(&format!("{}/../examples/double-eleven.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let case = CaseRow { case: "early".into(), event_at: 4800, multiplier: 10.0 };
        let (e, start) = announced(&cfg, &case, Path::new("cases.csv")).unwrap();
        assert_eq!(e.events[0].multiplier, Some(10.0));
        assert_eq!((e.events[0].start - start).num_seconds(), 4800);
    }
}

//! `--plot FILE.svg`: demand, Ready capacity and replicas over time, one panel per policy.
//!
//! Contract: writes a self-contained SVG (polylines and `<text>`, no fonts or other files
//! needed); series are down-sampled to at most [`POINTS`] points per line (max per bucket, so
//! spikes stay visible).

use mall_simulator::{Outcome, Trace};
use std::fmt::Write as _;

/// Most points per polyline.
pub const POINTS: usize = 1200;
const W: f64 = 1000.0;
const PANEL_H: f64 = 220.0;
const MARGIN: f64 = 50.0;

fn bucket_max(values: &[f64], buckets: usize) -> Vec<f64> {
    let n = values.len();
    let per = n.div_ceil(buckets.max(1)).max(1);
    values.chunks(per).map(|c| c.iter().copied().fold(f64::MIN, f64::max)).collect()
}

fn polyline(out: &mut String, values: &[f64], top: f64, y_max: f64, color: &str) {
    let n = values.len().max(2) as f64 - 1.0;
    let mut points = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = MARGIN + (W - 2.0 * MARGIN) * i as f64 / n;
        let y = top + PANEL_H - 30.0 - (PANEL_H - 50.0) * (v / y_max).min(1.0);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let _ =
        writeln!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="1" points="{}"/>"#, points.trim_end());
}

/// The SVG text for `trace` and the outcomes (those without series are skipped).
pub fn svg(trace: &Trace, outcomes: &[Outcome], capacity_per_pod: f64) -> String {
    let panels: Vec<&Outcome> = outcomes.iter().filter(|o| o.series.is_some()).collect();
    let height = PANEL_H * panels.len().max(1) as f64 + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let demand = bucket_max(&trace.rps, POINTS);
    for (i, o) in panels.iter().enumerate() {
        let Some(series) = o.series.as_ref() else { continue };
        let top = 10.0 + PANEL_H * i as f64;
        let capacity = bucket_max(&series.capacity, POINTS);
        let replicas: Vec<f64> = series.replicas.iter().map(|&r| f64::from(r) * capacity_per_pod).collect();
        let replicas = bucket_max(&replicas, POINTS);
        let y_max = demand.iter().chain(&capacity).chain(&replicas).copied().fold(1.0, f64::max) * 1.05;
        let _ = writeln!(
            out,
            r#"<text x="{MARGIN}" y="{:.0}" font-weight="bold">{} — {} violation s, {:.0} replica-s, max {} replicas</text>"#,
            top + 12.0,
            o.name,
            o.slo_violation_seconds,
            o.replica_seconds,
            o.max_replicas
        );
        let bottom = top + PANEL_H - 30.0;
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN}" y1="{bottom}" x2="{:.0}" y2="{bottom}" stroke="#999"/><text x="{MARGIN}" y="{:.0}">0 s</text><text x="{:.0}" y="{:.0}" text-anchor="end">{} s</text><text x="5" y="{:.0}">{:.0}/s</text>"##,
            W - MARGIN,
            bottom + 14.0,
            W - MARGIN,
            bottom + 14.0,
            trace.len(),
            top + 30.0,
            y_max
        );
        polyline(&mut out, &replicas, top, y_max, "#2ca02c");
        polyline(&mut out, &capacity, top, y_max, "#1f77b4");
        polyline(&mut out, &demand, top, y_max, "#d62728");
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.0}" y="{:.0}" text-anchor="end"><tspan fill="#d62728">demand</tspan> · <tspan fill="#1f77b4">Ready capacity</tspan> · <tspan fill="#2ca02c">replicas × pod capacity</tspan></text>"##,
        W - MARGIN,
        height - 5.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mall_simulator::Series;

    #[test]
    fn svg_has_one_panel_per_recorded_policy() {
        let trace = Trace { name: "t".into(), rps: vec![10.0, 20.0, 30.0] };
        let o = |name: &str, series: Option<Series>| Outcome {
            name: name.into(),
            slo_violation_seconds: 1,
            dropped_requests: 0.0,
            replica_seconds: 3.0,
            max_replicas: 1,
            scale_actions: 0,
            slo_violation_seconds_after: None,
            series,
        };
        let s = Series { replicas: vec![1, 1, 1], capacity: vec![14.0, 14.0, 14.0] };
        let text = svg(&trace, &[o("mall", Some(s)), o("hpa", None)], 14.0);
        assert!(text.starts_with("<svg") && text.ends_with("</svg>\n"));
        assert_eq!(text.matches("<polyline").count(), 3);
        assert!(text.contains("mall — 1 violation s") && !text.contains("hpa —"));
        assert_eq!(bucket_max(&[1.0, 5.0, 2.0, 3.0], 2), vec![5.0, 3.0]);
    }
}

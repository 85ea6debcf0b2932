//! What `apply --wait` shows while a Mall comes up: live per-tier bars (indicatif) when stderr is
//! a terminal, one plain line per change otherwise (logs, CI, pipes).
//!
//! Contract: [`Progress::new`] picks the form; [`Progress::show`] redraws from a Mall (each
//! tier's ready/desired, the `Ready` condition with its reason and message, a status that still
//! describes an older generation); [`Progress::finish`] leaves the last state on screen. A plain
//! line reads `mall NS/NAME: storefront 1/2, database 3/3; Ready=False NotServing: ...`. Nothing
//! here writes to stdout.

use super::condition;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mall_crds::Mall;
use std::io::IsTerminal as _;
use std::time::Duration;

/// Each tier's (name, ready, desired), in the order they are shown; none before the operator
/// has reported them.
pub fn tiers(mall: &Mall) -> Vec<(&'static str, i32, i32)> {
    let Some(tiers) = mall.status.as_ref().and_then(|s| s.tiers.clone()) else { return Vec::new() };
    let mut out = vec![
        ("storefront", tiers.storefront.ready, tiers.storefront.desired),
        ("database", tiers.database.ready, tiers.database.desired),
    ];
    out.extend(tiers.cache.map(|c| ("cache", c.ready, c.desired)));
    out.extend(tiers.edge.map(|c| ("edge", c.ready, c.desired)));
    out
}

/// ` (status of generation M; waiting for N)` when the status describes an older generation.
pub fn stale(mall: &Mall) -> Option<String> {
    let generation = mall.metadata.generation.unwrap_or(0);
    let observed = mall.status.as_ref().and_then(|s| s.observed_generation)?;
    (observed != generation).then(|| format!(" (status of generation {observed}; waiting for {generation})"))
}

/// `Ready`, or `Ready=False Reason: message`, with [`stale`] appended.
pub fn readiness(mall: &Mall) -> String {
    let ready = condition(mall, "Ready").map_or_else(
        || "Ready=Unknown (no status yet)".into(),
        |c| if c.0 == "True" { "Ready".to_string() } else { format!("Ready={} {}: {}", c.0, c.1, c.2) },
    );
    format!("{ready}{}", stale(mall).unwrap_or_default())
}

/// One line describing where a Mall stands.
pub fn line(mall: &Mall) -> String {
    let parts: Vec<String> =
        tiers(mall).iter().map(|(name, ready, desired)| format!("{name} {ready}/{desired}")).collect();
    if parts.is_empty() { readiness(mall) } else { format!("{}; {}", parts.join(", "), readiness(mall)) }
}

/// The live display of one Mall.
pub enum Progress {
    /// Plain lines on stderr, one per change.
    Plain {
        /// `NS/NAME`.
        label: String,
        /// The last line printed.
        last: String,
    },
    /// Bars on a terminal.
    Bars {
        /// The group.
        multi: MultiProgress,
        /// One per tier, by name, in display order.
        tiers: Vec<(&'static str, ProgressBar)>,
        /// The Ready condition, with a spinner.
        status: ProgressBar,
    },
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new(label: &str) -> Progress {
        if std::io::stderr().is_terminal() { Progress::bars(label) } else { Progress::plain(label) }
    }

    /// Plain lines.
    pub fn plain(label: &str) -> Progress {
        Progress::Plain { label: label.to_string(), last: String::new() }
    }

    fn bars(label: &str) -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        status.set_prefix(format!("mall {label}:"));
        status.enable_steady_tick(Duration::from_millis(120));
        Progress::Bars { multi, tiers: Vec::new(), status }
    }

    /// Redraws from `mall`.
    pub fn show(&mut self, mall: &Mall) {
        match self {
            Progress::Plain { label, last } => {
                let now = line(mall);
                if now != *last {
                    eprintln!("mall {label}: {now}");
                    *last = now;
                }
            }
            Progress::Bars { multi, tiers: bars, status } => {
                for (name, ready, desired) in tiers(mall) {
                    let bar = match bars.iter().find(|(n, _)| *n == name) {
                        Some((_, bar)) => bar.clone(),
                        None => {
                            let bar = multi.add(ProgressBar::new(0));
                            bar.set_style(
                                ProgressStyle::with_template("  {prefix:>10} [{bar:24}] {pos}/{len}")
                                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                                    .progress_chars("=> "),
                            );
                            bar.set_prefix(name);
                            bars.push((name, bar.clone()));
                            bar
                        }
                    };
                    bar.set_length(u64::try_from(desired).unwrap_or(0));
                    bar.set_position(u64::try_from(ready).unwrap_or(0));
                }
                status.set_message(readiness(mall));
            }
        }
    }

    /// Leaves the last state on screen (bars stop animating).
    pub fn finish(&self) {
        if let Progress::Bars { tiers, status, .. } = self {
            for (_, bar) in tiers {
                bar.abandon();
            }
            status.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mall(status: serde_json::Value) -> Mall {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
            "metadata": {"name": "shop", "generation": 2},
            "spec": {"storefront": {"image": "x"}, "database": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_line_names_every_tier_and_what_blocks() {
        let m = mall(serde_json::json!({
            "observedGeneration": 2,
            "tiers": {"storefront": {"desired": 2, "ready": 1}, "database": {"desired": 3, "ready": 3},
                      "cache": {"desired": 6, "ready": 0}},
            "conditions": [{"type": "Ready", "status": "False", "reason": "NotServing", "message": "cache 0/6",
                            "lastTransitionTime": "2026-12-08T00:00:00Z"}],
        }));
        assert_eq!(tiers(&m), vec![("storefront", 1, 2), ("database", 3, 3), ("cache", 0, 6)]);
        assert_eq!(line(&m), "storefront 1/2, database 3/3, cache 0/6; Ready=False NotServing: cache 0/6");
    }

    #[test]
    fn an_old_status_says_which_generation_it_describes() {
        let m = mall(serde_json::json!({"observedGeneration": 1}));
        assert_eq!(line(&m), "Ready=Unknown (no status yet) (status of generation 1; waiting for 2)");
        let m = mall(serde_json::json!(null));
        assert_eq!(stale(&m), None);
    }

    #[test]
    fn bars_follow_the_status() {
        let mut p = Progress::bars("shop/shop");
        p.show(&mall(serde_json::json!(null)));
        let Progress::Bars { tiers, .. } = &p else { panic!("bars") };
        assert!(tiers.is_empty(), "bars before the operator reported the tiers");
        let m = mall(serde_json::json!({
            "observedGeneration": 2,
            "tiers": {"storefront": {"desired": 2, "ready": 1}, "database": {"desired": 3, "ready": 0}},
        }));
        p.show(&m);
        let Progress::Bars { tiers, status, .. } = &p else { panic!("bars") };
        let got: Vec<_> = tiers.iter().map(|(n, b)| (*n, b.position(), b.length())).collect();
        assert_eq!(got, vec![("storefront", 1, Some(2)), ("database", 0, Some(3))]);
        assert_eq!(status.message(), "Ready=Unknown (no status yet)");
        p.finish();
    }
}

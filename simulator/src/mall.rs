//! The engine under simulation: the same [`Engine`] as in the operator, driven through
//! [`Autoscaler::tick`] by a simulated clock and a simulated Prometheus.
//!
//! Contract: the engine sees only what the operator would — the tier query's value at the newest
//! scrape (none while scrapes fail), the rate of requests served rather than refused over the
//! same window, and the desired and Ready pod counts — at the operator's loop period. It is not
//! told the pods' capacity.

use super::{Policy, View};
use chrono::{DateTime, Utc};
use mall_controllers::autoscaler::{Autoscaler, Clock, ClusterCounts, Counts, Engine, Metrics, MetricsSource, Tier};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Simulated wall clock: `start` + the simulated second.
#[derive(Clone)]
pub struct SimClock {
    start: DateTime<Utc>,
    t: Rc<Cell<u32>>,
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(i64::from(self.t.get()))
    }
}

/// Simulated Prometheus: the value the tier query returns now.
#[derive(Default)]
pub struct SimMetrics {
    storefront: Option<f64>,
    storefront_served: Option<f64>,
}

impl MetricsSource for SimMetrics {
    fn sample(&mut self, _now: DateTime<Utc>) -> impl Future<Output = Metrics> + Send {
        std::future::ready(Metrics {
            storefront: self.storefront,
            storefront_served: self.storefront_served,
            problems: if self.storefront.is_none() { vec!["no scrape of the request counter".into()] } else { vec![] },
            ..Metrics::default()
        })
    }
}

/// Polls a future that is ready at once (the simulator's sources never wait).
fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The Mall engine as a simulated policy.
pub struct MallPolicy {
    autoscaler: Autoscaler<SimClock, SimMetrics>,
    t: Rc<Cell<u32>>,
    period: u32,
    /// Reasons of the decisions that changed the storefront, with their second.
    pub log: Vec<(u32, i32, String)>,
}

impl MallPolicy {
    /// Wraps `engine`; `start` is the wall-clock time of the trace's t=0; the operator loop runs
    /// every `period` seconds.
    pub fn new(engine: Engine, start: DateTime<Utc>, period: u32) -> Self {
        let t = Rc::new(Cell::new(0));
        let clock = SimClock { start, t: Rc::clone(&t) };
        Self {
            autoscaler: Autoscaler::new(engine, clock, SimMetrics::default()),
            t,
            period: period.max(1),
            log: Vec::new(),
        }
    }
}

impl Policy for MallPolicy {
    fn name(&self) -> String {
        "mall".into()
    }

    fn period(&self) -> u32 {
        self.period
    }

    fn decide(&mut self, view: &View<'_>) -> i32 {
        self.t.set(view.t);
        let window = view.config.query_window;
        let metrics = self.autoscaler.metrics_mut();
        metrics.storefront = view.prometheus.sample(view.t, window);
        metrics.storefront_served = view.served_rate(window);
        let counts = ClusterCounts {
            storefront: Counts { replicas: view.replicas, ready: view.ready },
            cache: None,
            database: None,
        };
        let Some(decision) = now_or_never(self.autoscaler.tick(counts)) else {
            return view.replicas;
        };
        match decision.tier(Tier::Storefront) {
            Some(d) => {
                if d.to != d.from {
                    self.log.push((view.t, d.to, d.reason.clone()));
                }
                d.to
            }
            None => view.replicas,
        }
    }
}

//! The autoscaler's Mall watch: every Mall the operator watches is shown to the
//! [`Supervisor`], which runs one loop per autoscaled Mall (`mall_controllers::autoscaler::operate`).
//!
//! Contract: runs only while leading (main spawns it next to the controllers), one watch per
//! watched namespace (or one for all). Applied Malls are observed (start / new generation /
//! autoscaling removed), deleted ones stop their loop, and after a watch (re)list the loops of
//! Malls no longer listed stop. On shutdown every loop stops; nothing is written then.

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use mall_controllers::autoscaler::operate::{LoopOptions, Supervisor};
use mall_crds::Mall;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

/// Events are reported as this controller.
pub const REPORTER: &str = "mall-autoscaler";

/// Hands a Mall to the supervisor (its loop sizes the active region, in whichever cluster).
fn observe(supervisor: &mut Supervisor, mall: &Mall) {
    supervisor.observe(mall);
}

fn key(mall: &Mall) -> String {
    format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any())
}

/// Watches Malls in `namespaces` (`None` = all) and drives their loops every `interval` until
/// `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    namespaces: Vec<Option<String>>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut supervisor = Supervisor::new(client.clone(), REPORTER, LoopOptions::every(interval));
    let streams = namespaces.into_iter().map(|ns| {
        let api: Api<Mall> = match &ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        watcher(api, watcher::Config::default())
            .backoff(mall_controllers::watch::backoff())
            .map(move |e| (ns.clone(), e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    // Malls listed since the current (re)list of each watch began.
    let mut listing: std::collections::HashMap<Option<String>, HashSet<String>> = Default::default();
    tracing::info!(interval = ?interval, "autoscaler started");
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = shutdown.changed() => None,
        };
        if *shutdown.borrow() {
            break;
        }
        let Some((ns, event)) = next else { break };
        match event {
            Ok(watcher::Event::Apply(mall)) => observe(&mut supervisor, &mall),
            Ok(watcher::Event::Delete(mall)) => supervisor.deleted(&mall),
            Ok(watcher::Event::Init) => {
                listing.insert(ns, HashSet::new());
            }
            Ok(watcher::Event::InitApply(mall)) => {
                listing.entry(ns).or_default().insert(key(&mall));
                observe(&mut supervisor, &mall);
            }
            Ok(watcher::Event::InitDone) => {
                let listed = listing.remove(&ns).unwrap_or_default();
                let prefix = ns.as_ref().map(|n| format!("{n}/"));
                let mut keep: HashSet<String> = supervisor
                    .running()
                    .into_iter()
                    .filter(|k| prefix.as_ref().is_some_and(|p| !k.starts_with(p.as_str())))
                    .collect();
                keep.extend(listed);
                let stopped = supervisor.retain(&keep);
                if stopped > 0 {
                    tracing::info!(stopped, "autoscaler loops of Malls gone during a watch restart stopped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "Mall watch of the autoscaler"),
        }
    }
    supervisor.stop_all();
    tracing::info!("autoscaler stopped");
}

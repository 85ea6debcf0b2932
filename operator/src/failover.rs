//! The failover controller's loops: one per Mall with a distributed topology.
//!
//! Contract: runs only while leading (main spawns it next to the controllers). Every second the
//! Malls of the watched namespaces are listed; a Mall with two or more regions and a backup gets
//! a task that reads it fresh and runs `mall_controllers::failover::driver::Driver::tick` every
//! `spec.failover.probeInterval`, keeping its probe counts and move in memory (a move survives a
//! restart through the status). A task ends when its Mall is gone, recreated (new uid) or loses
//! its topology, and all end on shutdown. Tick errors are logged (a refused role write is also an
//! Event on the Mall) and the next tick retries.

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::Recorder;
use mall_controllers::build::database::topology::Topology;
use mall_controllers::clusters::{Cluster, Clusters, Settings};
use mall_controllers::failover::driver::{Driver, MallState};
use mall_crds::Mall;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events are reported as this controller.
pub const REPORTER: &str = "mall-failover";

/// Runs the loops of the Malls in `namespaces` (`None` = all) until `shutdown` turns true.
pub async fn run(client: kube::Client, namespaces: Vec<Option<String>>, mut shutdown: watch::Receiver<bool>) {
    let settings = Settings { user_agent: format!("{REPORTER}/{}", env!("CARGO_PKG_VERSION")), ..Settings::default() };
    let local = Cluster::new("local", client.clone(), settings.discovery_ttl, None);
    let driver = Arc::new(Driver::new(
        Arc::new(Clusters::new(local, settings)),
        Recorder::new(client.clone(), REPORTER.to_string().into()),
    ));
    let mut loops: HashMap<String, (String, JoinHandle<()>)> = HashMap::new();
    tracing::info!("failover controller started");
    loop {
        let mut seen = HashMap::new();
        for ns in &namespaces {
            let api: Api<Mall> = match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for mall in list.items.into_iter().filter(|m| Topology::of(m).is_some()) {
                        let key = format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any());
                        seen.insert(key, mall.uid().unwrap_or_default());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing Malls for failover"),
            }
        }
        loops.retain(|key, (uid, handle)| {
            let keep = seen.get(key) == Some(uid) && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        for (key, uid) in seen {
            if loops.contains_key(&key) {
                continue;
            }
            let Some((ns, name)) = key.split_once('/').map(|(n, m)| (n.to_string(), m.to_string())) else { continue };
            let handle = tokio::spawn(mall_loop(driver.clone(), client.clone(), ns, name, uid.clone()));
            loops.insert(key, (uid, handle));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for (_, (_, handle)) in loops {
        handle.abort();
    }
    tracing::info!("failover controller stopped");
}

async fn mall_loop(driver: Arc<Driver>, client: kube::Client, ns: String, name: String, uid: String) {
    let api: Api<Mall> = Api::namespaced(client, &ns);
    let mut state = MallState::default();
    loop {
        let mall = match api.get_opt(&name).await {
            Ok(Some(m)) if m.uid().as_deref() == Some(uid.as_str()) && Topology::of(&m).is_some() => m,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(mall = %name, error = %e, "reading the Mall for failover");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let interval = mall_controllers::validate::plan(&mall)
            .ok()
            .and_then(|p| p.failover.map(|f| f.probe_interval))
            .unwrap_or(Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        if let Err(e) = driver.tick(&mall, &mut state, Utc::now()).await {
            tracing::warn!(mall = %name, error = %mall_controllers::reconcile::error_chain(&e), "failover tick");
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

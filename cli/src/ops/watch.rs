//! `--wait` of `failover`/`switchover`: poll the Mall every 500 ms, print what changed, end on
//! the operator's answer to the request.
//!
//! Contract: progress lines go to stderr, one per change of: the answer to this request
//! (`status.lastRequest` with its id), a region's health, a shard's switchover step, the active
//! region and epoch. `Completed` prints the summary from `status.lastFailover` on stdout
//! (`us is active (epoch 3), RTO 4.2 s, RPO 0 (switchover)`) and succeeds; `Refused` and
//! `Failed` fail with the operator's message; at `--timeout` the error names what is pending.

use anyhow::{Context as _, bail};
use kube::api::Api;
use mall_crds::{FailoverRequest, Mall, status::MallStatus};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Progress lines by subject (`region eu`, `shard 0`, `active`, `request`), in that order.
pub fn progress(status: &MallStatus, id: &str) -> BTreeMap<String, String> {
    let mut lines = BTreeMap::new();
    if let Some(r) = status.last_request.as_ref().filter(|r| r.id == id) {
        lines.insert("4 request".into(), format!("request {id}: {}: {}", r.outcome, r.message));
    }
    for r in &status.regions {
        let mut line = format!("region {}: {}", r.name, r.health);
        if let Some(role) = &r.role {
            line.push_str(&format!(" ({role})"));
        }
        if r.consecutive_failures > 0 {
            line.push_str(&format!(", {} consecutive failures", r.consecutive_failures));
        }
        if let Some(e) = r.last_error.as_ref().filter(|_| r.health != "Healthy") {
            line.push_str(&format!(": {e}"));
        }
        lines.insert(format!("1 region {}", r.name), line);
    }
    if let Some(s) = &status.switchover {
        for shard in &s.shards {
            let step = match (&shard.demotion_token, shard.promoted) {
                (_, true) => "promoted in",
                (Some(_), false) => "demotion token read, promoting in",
                (None, false) => "waiting for the demotion token, then promoting in",
            };
            lines.insert(
                format!("2 shard {:04}", shard.index),
                format!("shard {}: {step} {} (switchover {} → {}, epoch {})", shard.index, s.to, s.from, s.to, s.epoch),
            );
        }
    }
    lines.insert(
        "3 active".into(),
        format!("active region {} (epoch {})", status.active_region.as_deref().unwrap_or("-"), status.failover_epoch),
    );
    lines
}

/// `us is active (epoch 3), RTO 4.2 s, RPO 0 (switchover)`.
pub fn summary(status: &MallStatus) -> String {
    match &status.last_failover {
        Some(f) => format!(
            "{} is active (epoch {}), RTO {}, RPO {} ({})",
            f.to,
            f.epoch,
            f.rto_milliseconds.map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            f.rpo,
            f.kind
        ),
        None => {
            format!("{} is active (epoch {})", status.active_region.as_deref().unwrap_or("-"), status.failover_epoch)
        }
    }
}

/// What a request still waits for, in words.
fn pending(status: &MallStatus, request: &FailoverRequest) -> String {
    let Some(answer) = status.last_request.as_ref().filter(|r| r.id == request.id) else {
        return format!("the operator has not answered request {} (is it running?)", request.id);
    };
    let mut parts = vec![format!("request {} is {}", request.id, answer.outcome)];
    if let Some(s) = &status.switchover {
        let waiting: Vec<String> = s
            .shards
            .iter()
            .filter(|x| !x.promoted)
            .map(|x| {
                let step = if x.demotion_token.is_some() { "promotion" } else { "demotion token" };
                format!("shard {} ({step})", x.index)
            })
            .collect();
        if !waiting.is_empty() {
            parts.push(format!("waiting for {}", waiting.join(", ")));
        }
    }
    parts.push(format!("active region {}", status.active_region.as_deref().unwrap_or("-")));
    parts.join("; ")
}

/// Waits for the answer to `request`.
pub async fn wait(api: &Api<Mall>, name: &str, request: &FailoverRequest, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let action = request.action.as_str();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mall = api.get(name).await.with_context(|| format!("reading Mall {name}"))?;
        let status = mall.status.unwrap_or_default();
        for (key, line) in progress(&status, &request.id) {
            if shown.get(&key) != Some(&line) {
                eprintln!("{line}");
                shown.insert(key, line);
            }
        }
        if let Some(answer) = status.last_request.as_ref().filter(|r| r.id == request.id) {
            match answer.outcome.as_str() {
                "Completed" => {
                    println!("{}", summary(&status));
                    return Ok(());
                }
                "Refused" | "Failed" => {
                    bail!("{action} of {name} to {} {}: {}", request.to, answer.outcome.to_lowercase(), answer.message)
                }
                _ => {}
            }
        }
        if start.elapsed() >= timeout {
            bail!(
                "{action} of {name} to {} not completed after {timeout:?}: {}",
                request.to,
                pending(&status, request)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mall_crds::status::{FailoverRecord, RequestOutcome, ShardSwitch, SwitchoverState};

    #[test]
    fn summary_and_progress_name_each_step() {
        let mut status = MallStatus { active_region: Some("eu".into()), ..Default::default() };
        status.switchover = Some(SwitchoverState {
            from: "eu".into(),
            to: "us".into(),
            epoch: 3,
            started: "t".into(),
            shards: vec![ShardSwitch { index: 0, demotion_token: Some("tok".into()), promoted: false }],
        });
        status.last_request = Some(RequestOutcome { id: "x".into(), outcome: "Accepted".into(), message: "ok".into() });
        let lines = progress(&status, "x");
        assert_eq!(lines["4 request"], "request x: Accepted: ok");
        assert_eq!(
            lines["2 shard 0000"],
            "shard 0: demotion token read, promoting in us (switchover eu → us, epoch 3)"
        );
        let request = FailoverRequest { id: "x".into(), action: mall_crds::RequestAction::Switchover, to: "us".into() };
        assert_eq!(
            pending(&status, &request),
            "request x is Accepted; waiting for shard 0 (promotion); active region eu"
        );
        status.last_failover = Some(FailoverRecord {
            kind: "switchover".into(),
            from: "eu".into(),
            to: "us".into(),
            epoch: 3,
            rto_milliseconds: Some(4200),
            rpo: "0".into(),
            ..Default::default()
        });
        assert_eq!(summary(&status), "us is active (epoch 3), RTO 4.2 s, RPO 0 (switchover)");
    }
}

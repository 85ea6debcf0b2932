//! Options of a local cluster.
//!
//! Contract: [`Options`] are plain data with builder methods; [`Options::validate`] rejects an
//! index outside `0..32` (cluster `i` gets pods in `127.(64+i).0.0/16` and Services in
//! `127.(96+i).0.0/16`, so 32 clusters at most have disjoint loopback ranges) and names that are
//! not DNS labels.

use std::path::PathBuf;
use std::time::Duration;

/// How to start a [`crate::LocalCluster`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster's name (a DNS label): the region label of its nodes, its kubeconfig context,
    /// its client's user agent.
    pub name: String,
    /// Selects the cluster's loopback CIDRs (see [`Options::pod_cidr`]); give each of several
    /// concurrent clusters its own.
    pub index: u8,
    /// Directory for data, logs, PKI and kubeconfigs; `None`: a fresh temporary directory,
    /// removed on drop unless `keep_dir` is set or `LOCALCLUSTER_KEEP=1`.
    pub dir: Option<PathBuf>,
    /// Keep a temporary directory after drop (for post-mortems).
    pub keep_dir: bool,
    /// Time from a pod's scheduling to its Ready condition (kwok Stage delay).
    pub pod_startup: Duration,
    /// Fake nodes per zone (three zones).
    pub nodes_per_zone: u32,
    /// Extra kube-controller-manager flags (e.g. `--horizontal-pod-autoscaler-sync-period=1s`);
    /// a flag given here overrides the default of the same name.
    pub kcm_args: Vec<String>,
    /// Extra kube-apiserver flags (same override rule).
    pub apiserver_args: Vec<String>,
    /// Time allowed for the cluster to become ready.
    pub ready_timeout: Duration,
    /// Start CloudNativePG's own admission webhooks with the cluster (and after each restart);
    /// see [`crate::cnpg_webhooks`]. Needs `cnpg-manager` in the tools directory.
    pub cnpg_webhooks: bool,
}

/// Errors of invalid options.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The index is out of range.
    #[error("cluster index {0} is out of range 0..32")]
    Index(u8),
    /// The name is not a DNS label.
    #[error("cluster name {0:?} is not a DNS label (a-z, 0-9, '-', at most 40 characters)")]
    Name(String),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "local".into(),
            index: 0,
            dir: None,
            keep_dir: false,
            pod_startup: Duration::ZERO,
            nodes_per_zone: 1,
            kcm_args: Vec::new(),
            apiserver_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            cnpg_webhooks: false,
        }
    }
}

impl Options {
    /// Options for a cluster named `name` with index 0 and defaults otherwise.
    pub fn new(name: impl Into<String>) -> Self {
        Options { name: name.into(), ..Options::default() }
    }

    /// Sets the index selecting the cluster's CIDRs.
    pub fn index(mut self, index: u8) -> Self {
        self.index = index;
        self
    }

    /// Sets the data directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Sets the pod start-up delay.
    pub fn pod_startup(mut self, delay: Duration) -> Self {
        self.pod_startup = delay;
        self
    }

    /// Sets the number of nodes per zone.
    pub fn nodes_per_zone(mut self, n: u32) -> Self {
        self.nodes_per_zone = n;
        self
    }

    /// Starts CloudNativePG's admission webhooks with the cluster ([`crate::CnpgWebhooks`]).
    pub fn cnpg_webhooks(mut self, on: bool) -> Self {
        self.cnpg_webhooks = on;
        self
    }

    /// Adds a kube-controller-manager flag (`--name=value`).
    pub fn kcm_arg(mut self, arg: impl Into<String>) -> Self {
        self.kcm_args.push(arg.into());
        self
    }

    /// Adds a kube-apiserver flag (`--name=value`).
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// The pod CIDR: `127.(64+index).0.0/16`.
    pub fn pod_cidr(&self) -> String {
        format!("127.{}.0.0/16", 64 + u16::from(self.index))
    }

    /// The Service CIDR: `127.(96+index).0.0/16`.
    pub fn service_cidr(&self) -> String {
        format!("127.{}.0.0/16", 96 + u16::from(self.index))
    }

    /// Checks the index and name.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.index >= 32 {
            return Err(OptionsError::Index(self.index));
        }
        let ok = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !ok {
            return Err(OptionsError::Name(self.name.clone()));
        }
        Ok(())
    }
}

/// Merges `defaults` and `extra` flags: a flag in `extra` replaces the default with the same
/// `--name`.
pub(crate) fn merge_flags(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    fn key(flag: &str) -> &str {
        flag.split('=').next().unwrap_or(flag)
    }
    let mut out: Vec<String> = defaults.into_iter().filter(|d| !extra.iter().any(|e| key(e) == key(d))).collect();
    out.extend(extra.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_loopback_and_distinct() {
        let a = Options::new("a").index(0);
        let b = Options::new("b").index(31);
        assert_eq!(a.pod_cidr(), "127.64.0.0/16");
        assert_eq!(a.service_cidr(), "127.96.0.0/16");
        assert_eq!(b.pod_cidr(), "127.95.0.0/16");
        assert_eq!(b.service_cidr(), "127.127.0.0/16");
        assert!(Options::new("c").index(32).validate().is_err());
        assert!(Options::new("Bad_Name").validate().is_err());
        assert!(Options::new("hub").validate().is_ok());
    }

    #[test]
    fn extra_flags_override_defaults() {
        let merged = merge_flags(vec!["--kube-api-qps=200".into(), "--v=1".into()], &["--kube-api-qps=500".into()]);
        assert_eq!(merged, vec!["--v=1", "--kube-api-qps=500"]);
    }
}

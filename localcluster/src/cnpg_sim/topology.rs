//! The distributed topology part of [`ClusterSim`]: the simulated WAL, replica clusters, the
//! controlled switchover (demotion token, promotion token) and the failover without a token.
//!
//! Contract (C:docs/src/replica_cluster.md; facts file §5):
//! - a primary cluster writes WAL at [`WalIo::bytes_per_second`] (simulated time, scaled by
//!   [`WalIo::clock_scale`]) while its primary is Ready, not fenced and not being demoted; it
//!   archives at every segment boundary ([`SEGMENT`]) and when `archive_timeout` has passed;
//! - a replica cluster bootstraps from its source archive and replays what that archive holds,
//!   when the system identifier matches and its timeline history does not diverge;
//! - demotion (spec turned replica while primary): `ReplicaClusterSwitch=False` + fencing, the
//!   last WAL archived, `status.demotionToken`, `ReplicaClusterSwitch=True`
//!   (C:pkg/reconciler/replicaclusterswitch/reconciler.go);
//! - promotion (spec turned primary while replica): with a new `promotionToken`,
//!   "Promoting to primary cluster" until the replayed LSN equals the token's, or
//!   "Cluster is unrecoverable..." for a token that cannot match
//!   (C:pkg/promotiontoken, C:internal/management/controller/instance_controller.go); without one,
//!   at once. Promotion opens timeline+1 from the replayed LSN; WAL never archived is lost.

use std::time::Instant;

use rand::Rng;

use super::super::wal::{ArchiveState, HistoryEntry, PromotionToken, SEGMENT, parse_archive_timeout, parse_lsn};
use super::{ClusterSim, SpecView};

/// `PhaseReplicaClusterPromotion`, C:api/v1/cluster_types.go.
pub const PHASE_PROMOTING: &str = "Promoting to primary cluster";
/// `PhaseUnrecoverable`, C:api/v1/cluster_types.go.
pub const PHASE_UNRECOVERABLE: &str = "Cluster is unrecoverable and needs manual intervention";
/// C:pkg/reconciler/replicaclusterswitch/conditions/conditions.go.
const COND_SWITCH: &str = "ReplicaClusterSwitch";
const COND_FENCE: &str = "ReplicaClusterFencing";
const COND_TRANSITION: &str = "ReplicaClusterDesignatedPrimaryTransition";

/// Whether the Cluster is the primary cluster or a replica cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Writes WAL.
    Primary,
    /// Replays the archive it follows.
    Replica,
}

/// A demotion in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SwitchStage {
    /// Fenced, waiting for the instance manager to demote.
    Fencing,
    /// Demoted and archived; the token is next.
    Demoted,
}

/// The WAL positions of one Cluster (LSNs as bytes; see [`super::super::wal::lsn_string`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalPositions {
    /// Database system identifier (`None` before bootstrap).
    pub system_identifier: Option<String>,
    /// Current timeline.
    pub timeline: u32,
    /// WAL written (a replica: what it replayed).
    pub written: u64,
    /// WAL archived to its own archive.
    pub archived: u64,
    /// WAL replayed from the archive followed (a primary: where it was promoted, or 0).
    pub replayed: u64,
    /// Primary or replica (`None` before bootstrap).
    pub role: Option<Role>,
}

/// The WAL state kept in [`ClusterSim`].
#[derive(Debug, Clone, Default)]
pub(super) struct Wal {
    pos: WalPositions,
    history: Vec<HistoryEntry>,
    last_tick: Option<Instant>,
    last_archive_at: Option<Instant>,
    last_archive_state: Option<ArchiveState>,
}

/// The runner's side of one step.
#[derive(Debug, Clone)]
pub struct WalIo {
    /// The archive the Cluster follows (its `replica.source` / recovery source), as stored now.
    pub followed: Option<ArchiveState>,
    /// Its own archive as stored now (used to recover the state after a restart).
    pub own: Option<ArchiveState>,
    /// Set by the step: the new state of its own archive, to be written.
    pub archive: Option<ArchiveState>,
    /// WAL bytes written per simulated second by a primary.
    pub bytes_per_second: u64,
    /// Simulated seconds per real second (scales the WAL rate and `archive_timeout`).
    pub clock_scale: f64,
}

impl Default for WalIo {
    fn default() -> Self {
        WalIo { followed: None, own: None, archive: None, bytes_per_second: 16 * 1024, clock_scale: 1.0 }
    }
}

/// The outcome of checking a promotion token (C:pkg/promotiontoken `ValidateAgainstInstanceStatus`).
enum Verdict {
    Ok,
    Wait,
    Fatal(String),
}

impl ClusterSim {
    /// The WAL positions.
    pub fn positions(&self) -> WalPositions {
        let mut p = self.wal.pos.clone();
        p.timeline = self.timeline;
        p.role = self.role;
        p
    }

    /// First instance: initdb (new system identifier, timeline 1) or recovery from the followed
    /// archive (false while it does not exist). A recovered non-replica promotes at once.
    pub(super) fn bootstrap_wal(&mut self, spec: &SpecView, io: &WalIo, now: Instant) -> bool {
        if spec.recovery {
            let Some(f) = &io.followed else { return false };
            self.wal.pos.system_identifier = Some(f.system_identifier.clone());
            self.timeline = f.timeline;
            self.wal.history = f.history.clone();
            self.set_all_positions(f.archived_lsn);
            self.role = Some(Role::Replica);
        } else {
            // pg_controldata prints a 64-bit number; a fresh one per initdb.
            let id: u64 = rand::rng().random_range(7_000_000_000_000_000_000..7_999_999_999_999_999_999);
            self.wal.pos.system_identifier = Some(id.to_string());
            self.timeline = 1;
            self.set_all_positions(SEGMENT);
            self.role = Some(if spec.replica { Role::Replica } else { Role::Primary });
        }
        self.wal.last_tick = Some(now);
        self.wal.last_archive_at = Some(now);
        if spec.recovery && !spec.replica {
            self.promote(None, now);
        }
        true
    }

    fn set_all_positions(&mut self, lsn: u64) {
        self.wal.pos.written = lsn;
        self.wal.pos.archived = lsn;
        self.wal.pos.replayed = lsn;
    }

    /// The switch and promotion steps; `None` when none applies (the normal reconcile runs),
    /// `Some(acted)` otherwise.
    pub(super) fn topology_pass(&mut self, spec: &SpecView, now: Instant) -> Option<bool> {
        // C:internal/controller/cluster_status.go: tokens cleared on every status update.
        if spec.promotion_token.is_empty() {
            self.last_promotion_token = None;
        }
        if !spec.replica {
            self.demotion_token = None;
        }
        self.current_primary?;
        let role = *self.role.get_or_insert(if spec.replica { Role::Replica } else { Role::Primary });
        if self.switch.is_some() || (spec.replica && role == Role::Primary) {
            return Some(self.demote_step());
        }
        if spec.replica || role == Role::Primary {
            return None;
        }
        let token = spec.promotion_token.clone();
        if token.is_empty() || self.last_promotion_token.as_deref() == Some(token.as_str()) {
            // No (new) token: `ShouldPromoteFromReplicaCluster` is false and the designated
            // primary promotes at once — a failover.
            self.promote(None, now);
            return Some(true);
        }
        let phase = self.phase.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
        if phase != PHASE_PROMOTING && phase != PHASE_UNRECOVERABLE {
            self.set_phase(PHASE_PROMOTING, "Replica cluster promotion in progress".to_string());
            return Some(true);
        }
        match self.verify_token(&token) {
            Verdict::Ok => {
                self.promote(Some(token), now);
                Some(true)
            }
            Verdict::Wait => {
                self.set_phase(PHASE_PROMOTING, "Replica cluster promotion in progress".to_string());
                Some(phase != PHASE_PROMOTING)
            }
            Verdict::Fatal(why) => {
                tracing::info!(cluster = %self.name, %why, "CNPG simulator: promotion token rejected");
                self.set_phase(
                    PHASE_UNRECOVERABLE,
                    "Promotion token content is not correct for current instance".into(),
                );
                Some(phase != PHASE_UNRECOVERABLE)
            }
        }
    }

    fn verify_token(&self, token: &str) -> Verdict {
        // An undecodable token only logs an error in CNPG (the webhook should have refused it).
        let Some(t) = PromotionToken::decode(token) else { return Verdict::Wait };
        let (Ok(tli), Some(lsn)) = (t.timeline.parse::<u32>(), parse_lsn(&t.redo_location)) else {
            return Verdict::Fatal("invalid timeline or LSN".into());
        };
        let ours = self.wal.pos.system_identifier.clone().unwrap_or_default();
        if t.system_identifier != ours {
            return Verdict::Fatal(format!(
                "mismatching system identifiers, current:{ours} wanted:{}",
                t.system_identifier
            ));
        }
        let replayed = self.wal.pos.replayed;
        match (tli.cmp(&self.timeline), lsn.cmp(&replayed)) {
            (std::cmp::Ordering::Greater, _) => Verdict::Wait,
            (std::cmp::Ordering::Less, _) => Verdict::Fatal("requested timeline is older than current one".into()),
            (_, std::cmp::Ordering::Less) => {
                Verdict::Fatal("promotion token LSN is older than the last replay LSN".into())
            }
            (_, std::cmp::Ordering::Greater) => Verdict::Wait,
            _ => Verdict::Ok,
        }
    }

    /// The instance manager promotes: a new timeline from the replayed LSN.
    fn promote(&mut self, token: Option<String>, now: Instant) {
        let at = self.wal.pos.replayed;
        self.wal.history.push(HistoryEntry { timeline: self.timeline, end_lsn: at });
        self.timeline += 1;
        self.wal.pos.written = at;
        self.wal.pos.archived = at;
        self.wal.last_tick = Some(now);
        self.wal.last_archive_at = Some(now);
        self.role = Some(Role::Primary);
        if token.is_some() {
            self.last_promotion_token = token;
        }
        self.demotion_token = None;
    }

    /// One step of C:pkg/reconciler/replicaclusterswitch (operator) and of the instance
    /// manager's transition to designated primary.
    fn demote_step(&mut self) -> bool {
        match self.switch {
            None => {
                let (reason, message) =
                    ("ReplicaClusterAfterCreation", "Enabled external cluster after a node was generated");
                self.set_condition(COND_TRANSITION, false, reason, message);
                self.set_condition(COND_FENCE, true, reason, message);
                self.set_condition(
                    COND_SWITCH,
                    false,
                    "ReplicaEnabledSetTrue",
                    "Starting the Replica cluster transition",
                );
                self.switch = Some(SwitchStage::Fencing);
            }
            Some(SwitchStage::Fencing) => {
                // Shutdown checkpoint; the last (partial) WAL file is archived.
                let end = self.wal.pos.written;
                self.wal.pos.archived = end;
                self.wal.pos.replayed = end;
                self.role = Some(Role::Replica);
                self.set_condition(
                    COND_TRANSITION,
                    true,
                    "TransitionCompleted",
                    "Instance Manager has completed the DesignatedPrimary transition",
                );
                self.switch = Some(SwitchStage::Demoted);
            }
            Some(SwitchStage::Demoted) => {
                let id = self.wal.pos.system_identifier.clone().unwrap_or_default();
                self.demotion_token = Some(PromotionToken::new(&id, self.timeline, self.wal.pos.written).encode());
                self.remove_condition(COND_TRANSITION);
                self.remove_condition(COND_FENCE);
                self.set_condition(
                    COND_SWITCH,
                    true,
                    "ReplicaEnabledSetTrue",
                    "Completed the Replica cluster transition",
                );
                self.switch = None;
            }
        }
        true
    }

    /// Moves the WAL to `now` and fills [`WalIo::archive`] when the own archive changed.
    pub(super) fn advance_wal(&mut self, spec: &SpecView, io: &mut WalIo, now: Instant) {
        if self.wal.pos.system_identifier.is_none() {
            // A restarted simulator: take the state from the Cluster's own archive.
            let (Some(_), Some(own)) = (self.current_primary, &io.own) else { return };
            self.wal.pos.system_identifier = Some(own.system_identifier.clone());
            self.wal.history = own.history.clone();
            self.set_all_positions(own.archived_lsn);
            self.wal.last_archive_state = Some(own.clone());
        }
        let elapsed = self.wal.last_tick.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.wal.last_tick = Some(now);
        let scale = if io.clock_scale > 0.0 { io.clock_scale } else { 1.0 };
        match self.role {
            Some(Role::Primary) => {
                let up = self.switch.is_none()
                    && self
                        .current_primary
                        .is_some_and(|p| self.is_ready(p) && !spec.is_fenced(&self.instance_name(p)));
                if up {
                    let p = &mut self.wal.pos;
                    p.written += (io.bytes_per_second as f64 * elapsed * scale) as u64;
                    let boundary = p.written / SEGMENT * SEGMENT;
                    if boundary > p.archived {
                        p.archived = boundary;
                        self.wal.last_archive_at = Some(now);
                    }
                    let since =
                        self.wal.last_archive_at.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
                    if let Some(timeout) = parse_archive_timeout(&spec.archive_timeout)
                        && p.written > p.archived
                        && since * scale >= timeout.as_secs_f64()
                    {
                        p.archived = p.written;
                        self.wal.last_archive_at = Some(now);
                    }
                }
            }
            Some(Role::Replica) if self.switch.is_none() => {
                if let Some(f) = &io.followed
                    && Some(&f.system_identifier) == self.wal.pos.system_identifier.as_ref()
                    && f.archived_lsn >= self.wal.pos.replayed
                    && f.can_follow_from(self.timeline, self.wal.pos.replayed)
                {
                    self.timeline = f.timeline;
                    self.wal.history = f.history.clone();
                    // The designated primary archives what it replays (archive_mode=always).
                    self.set_all_positions(f.archived_lsn);
                }
            }
            _ => {}
        }
        let Some(id) = self.wal.pos.system_identifier.clone() else { return };
        let state = ArchiveState {
            system_identifier: id,
            timeline: self.timeline,
            archived_lsn: self.wal.pos.archived,
            history: self.wal.history.clone(),
        };
        if self.wal.last_archive_state.as_ref() != Some(&state) {
            self.wal.last_archive_state = Some(state.clone());
            io.archive = Some(state);
        }
    }
}

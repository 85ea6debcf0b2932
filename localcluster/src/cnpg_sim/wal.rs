//! The simulated WAL and the object store the Barman Cloud Plugin archives it to.
//!
//! Contract: an [`ArchiveState`] is what a `<destinationPath>/<serverName>/` archive holds, reduced
//! to what a follower needs: the database system identifier, the newest timeline, the LSN archived
//! so far and the timeline history. [`WalStore`] keeps these, either in a directory shared by every
//! simulator instance (even across processes and restarts; one JSON file per archive at
//! `<dir>/<escaped destinationPath>/<escaped serverName>/wal.json`, written atomically by rename)
//! or, without a directory, in this simulator's memory. [`PromotionToken`] is CloudNativePG's
//! demotion/promotion token (C:pkg/utils/parser.go `PgControldataTokenContent`, base64 of its JSON).
//! LSNs are byte positions (`u64`), shown as PostgreSQL does (`%X/%08X`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// PostgreSQL's default WAL segment size (16 MiB).
pub const SEGMENT: u64 = 16 * 1024 * 1024;

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum WalStoreError {
    /// Reading or writing an archive file failed.
    #[error("cannot access the simulated archive {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An archive file is not the JSON the simulator writes.
    #[error("the simulated archive {path} is not valid")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// `lsn` as PostgreSQL prints it.
pub fn lsn_string(lsn: u64) -> String {
    format!("{:X}/{:08X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses `X/XXXXXXXX`.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The name of the WAL file holding `lsn` on `timeline` (`TTTTTTTTXXXXXXXXYYYYYYYY`).
pub fn wal_file_name(timeline: u32, lsn: u64) -> String {
    let segments_per_id = 0x1_0000_0000 / SEGMENT;
    let seg = lsn / SEGMENT;
    format!("{timeline:08X}{:08X}{:08X}", seg / segments_per_id, seg % segments_per_id)
}

/// PostgreSQL's `archive_timeout` (a number with an optional unit, seconds by default); 0 or
/// an unreadable value disables it (`None`).
pub fn parse_archive_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let d = match s[split..].trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// Where an archive lives: the ObjectStore's `destinationPath` and the `serverName`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveLocation {
    /// `spec.configuration.destinationPath` of the ObjectStore.
    pub destination_path: String,
    /// The plugin's `serverName` parameter.
    pub server_name: String,
}

/// One timeline switch: `timeline` ended at `end_lsn` (a `.history` file line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended (the next timeline starts there).
    pub end_lsn: u64,
}

/// What one archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveState {
    /// The database system identifier (`pg_controldata`).
    pub system_identifier: String,
    /// The newest timeline archived.
    pub timeline: u32,
    /// Everything before this LSN is archived.
    pub archived_lsn: u64,
    /// The timeline history.
    pub history: Vec<HistoryEntry>,
}

impl ArchiveState {
    /// Whether a server at (`timeline`, `lsn`) can follow this archive: same timeline, or its
    /// timeline ended in this archive's history at or after `lsn` (otherwise it diverged).
    pub fn can_follow_from(&self, timeline: u32, lsn: u64) -> bool {
        if timeline == self.timeline {
            return true;
        }
        self.history.iter().any(|h| h.timeline == timeline && h.end_lsn >= lsn)
    }
}

/// The object store all simulators share.
#[derive(Debug, Clone)]
pub struct WalStore {
    dir: Option<PathBuf>,
    memory: Arc<Mutex<BTreeMap<ArchiveLocation, ArchiveState>>>,
}

/// `destinationPath`/`serverName` as one path component.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    match out.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => out,
    }
}

impl WalStore {
    /// A store in `dir` (shared), or in memory when `None`.
    pub fn new(dir: Option<PathBuf>) -> WalStore {
        WalStore { dir, memory: Arc::default() }
    }

    /// The file of an archive (only with a directory).
    pub fn file(&self, loc: &ArchiveLocation) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(escape(&loc.destination_path)).join(escape(&loc.server_name)).join("wal.json"))
    }

    /// The archive at `loc`, `None` when nothing was archived there.
    pub fn read(&self, loc: &ArchiveLocation) -> Result<Option<ArchiveState>, WalStoreError> {
        let Some(path) = self.file(loc) else {
            return Ok(self.memory.lock().map(|m| m.get(loc).cloned()).unwrap_or(None));
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(WalStoreError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| WalStoreError::Json { path, source })
    }

    /// Replaces the archive at `loc` (atomically for a directory).
    pub fn write(&self, loc: &ArchiveLocation, state: &ArchiveState) -> Result<(), WalStoreError> {
        let Some(path) = self.file(loc) else {
            if let Ok(mut m) = self.memory.lock() {
                m.insert(loc.clone(), state.clone());
            }
            return Ok(());
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalStoreError::Io { path, source }
        };
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|source| WalStoreError::Json { path: path.clone(), source })?;
        let tmp = parent.join(format!(".wal.json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}

/// CloudNativePG's promotion/demotion token content (C:pkg/utils/parser.go
/// `PgControldataTokenContent`; the JSON field names are CNPG's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PromotionToken {
    /// Latest checkpoint's TimeLineID (a string, as in CNPG).
    #[serde(rename = "latestCheckpointTimelineID", default, skip_serializing_if = "String::is_empty")]
    pub timeline: String,
    /// Latest checkpoint's REDO WAL file.
    #[serde(rename = "redoWalFile", default, skip_serializing_if = "String::is_empty")]
    pub redo_wal_file: String,
    /// Database system identifier.
    #[serde(rename = "databaseSystemIdentifier", default, skip_serializing_if = "String::is_empty")]
    pub system_identifier: String,
    /// Latest checkpoint's REDO location (`X/XXXXXXXX`).
    #[serde(rename = "latestCheckpointREDOLocation", default, skip_serializing_if = "String::is_empty")]
    pub redo_location: String,
    /// Time of latest checkpoint.
    #[serde(rename = "timeOfLatestCheckpoint", default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    /// The operator version that made the token.
    #[serde(rename = "operatorVersion", default, skip_serializing_if = "String::is_empty")]
    pub operator_version: String,
}

impl PromotionToken {
    /// The token of a server shut down at `lsn` on `timeline`.
    pub fn new(system_identifier: &str, timeline: u32, lsn: u64) -> PromotionToken {
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%a %b %e %H:%M:%S %Y").to_string();
        PromotionToken {
            timeline: timeline.to_string(),
            redo_wal_file: wal_file_name(timeline, lsn),
            system_identifier: system_identifier.to_string(),
            redo_location: lsn_string(lsn),
            time,
            operator_version: "1.30.1".to_string(),
        }
    }

    /// base64 (standard, padded) of the JSON, as `status.demotionToken`.
    pub fn encode(&self) -> String {
        base64_encode(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses a token written by [`PromotionToken::encode`] or by CloudNativePG.
    pub fn decode(s: &str) -> Option<PromotionToken> {
        serde_json::from_slice(&base64_decode(s.trim())?).ok()
    }
}

use crate::base64::{decode as base64_decode, encode as base64_encode};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_wal_file_and_timeout_formats() {
        assert_eq!(lsn_string(0x3_0000_0028), "3/00000028");
        assert_eq!(parse_lsn("3/00000028"), Some(0x3_0000_0028));
        assert_eq!(wal_file_name(2, 0x3_0100_0028), "000000020000000300000001");
        assert_eq!(parse_archive_timeout("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_archive_timeout("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_archive_timeout("0"), None);
    }

    #[test]
    fn token_round_trips_with_cnpg_field_names() {
        let t = PromotionToken::new("7300000000000000001", 3, 0x0500_0028);
        let encoded = t.encode();
        assert_eq!(PromotionToken::decode(&encoded), Some(t.clone()));
        let json: serde_json::Value = serde_json::from_slice(&base64_decode(&encoded).expect("b64")).expect("json");
        assert_eq!(json["latestCheckpointTimelineID"], "3");
        assert_eq!(json["latestCheckpointREDOLocation"], "0/05000028");
        assert_eq!(json["redoWalFile"], "000000030000000000000005");
        assert_eq!(json["databaseSystemIdentifier"], "7300000000000000001");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
    }

    #[test]
    fn directory_store_is_shared_between_instances() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loc = ArchiveLocation { destination_path: "s3://bucket/pg/".into(), server_name: "pg-a".into() };
        let a = WalStore::new(Some(dir.path().to_path_buf()));
        let b = WalStore::new(Some(dir.path().to_path_buf()));
        assert_eq!(b.read(&loc).expect("read"), None);
        let state = ArchiveState { system_identifier: "1".into(), timeline: 1, archived_lsn: 42, history: vec![] };
        a.write(&loc, &state).expect("write");
        assert_eq!(b.read(&loc).expect("read"), Some(state));
        let file = a.file(&loc).expect("file");
        assert!(file.ends_with("s3%3A%2F%2Fbucket%2Fpg%2F/pg-a/wal.json"), "{file:?}");
    }
}

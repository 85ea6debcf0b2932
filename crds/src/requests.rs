//! `mallctl failover`/`switchover` requests: the `mallctl.io/request` annotation a client writes
//! on a Mall, and its JSON.
//!
//! Contract: API types only — no client, no I/O. A request is the annotation
//! [`REQUEST_ANNOTATION`] holding one [`FailoverRequest`] as JSON (written with a JSON merge
//! patch on `metadata.annotations`); the failover controller answers in `status.lastRequest`
//! ([`crate::status::RequestOutcome`]) under the same `id`.

use serde::{Deserialize, Serialize};

/// The annotation holding a [`FailoverRequest`] as JSON.
pub const REQUEST_ANNOTATION: &str = "mallctl.io/request";

/// A request to move the active region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRequest {
    /// Unique id (`mallctl` writes `<unix-millis>-<pid>`); `status.lastRequest.id` echoes it.
    pub id: String,
    /// What to do.
    pub action: RequestAction,
    /// The region to make active.
    pub to: String,
}

/// The kind of a [`FailoverRequest`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RequestAction {
    /// Promote `to` without the old primary's demotion token (it is lost or fenced): data not
    /// yet archived may be lost.
    Failover,
    /// Controlled: demote the active region, then promote `to` with its demotion token (RPO 0).
    Switchover,
}

impl RequestAction {
    /// `failover` or `switchover`, as written in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Switchover => "switchover",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_is_the_protocol() {
        let request = FailoverRequest { id: "1-2".into(), action: RequestAction::Switchover, to: "us".into() };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"id":"1-2","action":"switchover","to":"us"}"#);
        let back: FailoverRequest = serde_json::from_str(r#"{"id":"x","action":"failover","to":"eu"}"#).unwrap();
        assert_eq!(back.action, RequestAction::Failover);
    }
}

//! Requests to the failover controller: `mallctl failover` and `mallctl switchover` write one
//! as the annotation [`REQUEST_ANNOTATION`] on the Mall; the operator answers in
//! `status.lastRequest` (same `id`).
//!
//! Contract: API types only.

use serde::{Deserialize, Serialize};

/// Annotation holding a [`FailoverRequest`] as JSON.
pub const REQUEST_ANNOTATION: &str = "mallctl.io/request";

/// A request to move the active region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FailoverRequest {
    /// Unique id, echoed in `status.lastRequest.id`.
    pub id: String,
    /// What to do.
    pub action: RequestAction,
    /// The region to make active.
    pub to: String,
}

/// What a request asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RequestAction {
    /// Promote `to` without a token (the active region is lost or must be abandoned).
    Failover,
    /// Controlled switchover with tokens: no data lost.
    Switchover,
}

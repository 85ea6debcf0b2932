//! Reading the API server's audit log.
//!
//! Contract: the cluster's audit policy logs one `ResponseComplete` (or `Panic`) event at
//! `Metadata` level per write (create, update, patch, delete, deletecollection) and nothing
//! else; refused writes are logged too (see [`AuditEvent::code`]). Server-side apply appears as
//! `patch`. [`read_events`] parses every complete line of the log; a partially written last
//! line is skipped. Events of impersonated requests carry the impersonated user in
//! [`AuditEvent::user`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of reading the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log could not be read.
    #[error("cannot read audit log {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One audit event, reduced to what tests count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The verb (`create`, `update`, `patch`, `delete`, `deletecollection`).
    pub verb: String,
    /// The user name (the impersonated user's when impersonating).
    pub user: String,
    /// The user agent, when sent.
    pub user_agent: Option<String>,
    /// The resource (plural), when the request was for one.
    pub resource: Option<String>,
    /// The subresource (`status`, `scale`, ...), if any.
    pub subresource: Option<String>,
    /// The namespace, if namespaced.
    pub namespace: Option<String>,
    /// The object name, if known.
    pub name: Option<String>,
    /// The response code.
    pub code: Option<u16>,
    /// The request URI.
    pub uri: String,
    /// When the event's stage was reached (`stageTimestamp`, RFC 3339 with microseconds; for
    /// `ResponseComplete`, when the response was sent), if present.
    pub timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    verb: String,
    #[serde(rename = "requestURI")]
    request_uri: String,
    user: RawUser,
    impersonated_user: Option<RawUser>,
    user_agent: Option<String>,
    object_ref: Option<RawObjectRef>,
    response_status: Option<RawStatus>,
    stage_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    username: Option<String>,
}

#[derive(Deserialize)]
struct RawObjectRef {
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    code: Option<u16>,
}

/// Parses the audit log at `path` (a missing file reads as empty).
pub fn read_events(path: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::Read { path: path.to_path_buf(), source });
        }
    };
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<AuditEvent> {
    let raw: RawEvent = serde_json::from_str(line).ok()?;
    let user = raw.impersonated_user.and_then(|u| u.username).or(raw.user.username).unwrap_or_default();
    let object = raw.object_ref;
    Some(AuditEvent {
        verb: raw.verb,
        user,
        user_agent: raw.user_agent,
        resource: object.as_ref().and_then(|o| o.resource.clone()),
        subresource: object.as_ref().and_then(|o| o.subresource.clone()),
        namespace: object.as_ref().and_then(|o| o.namespace.clone()),
        name: object.and_then(|o| o.name),
        code: raw.response_status.and_then(|s| s.code),
        uri: raw.request_uri,
        timestamp: raw.stage_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_apiserver_line() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/configmaps?fieldManager=t","verb":"create","user":{"username":"system:serviceaccount:a:b","groups":["system:serviceaccounts"]},"sourceIPs":["127.0.0.1"],"userAgent":"t/1","objectRef":{"resource":"configmaps","namespace":"a","name":"c","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-11-25T17:22:59.100000Z","stageTimestamp":"2026-11-25T17:22:59.123456Z"}"#;
        let e = parse_line(line).expect("parsed");
        assert_eq!(e.verb, "create");
        assert_eq!(e.user, "system:serviceaccount:a:b");
        assert_eq!(e.resource.as_deref(), Some("configmaps"));
        assert_eq!(e.code, Some(201));
        assert_eq!(e.timestamp.as_deref(), Some("2026-11-25T17:22:59.123456Z"));
        assert!(parse_line("{\"truncated").is_none());
    }
}

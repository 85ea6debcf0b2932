//! Restoring objects into a local cluster's storage, as restoring an etcd backup does.
//!
//! Contract: [`restore`] writes one object, as the API server stores it, under its storage key
//! in the cluster's etcd (plain HTTP on 127.0.0.1, etcd's JSON gateway `/v3/kv/put`), so the
//! object keeps what the API never lets a client choose: its UID, creation time, generation and
//! status. The API server's watch picks it up like any write. It is for tests that need a second
//! control plane holding an older copy of an object (a hub restored from a backup); only custom
//! resources are stored as JSON, so only they can be restored this way ([`storage_key`]).

use crate::LocalCluster;
use crate::base64::encode as base64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// etcd could not be reached or the exchange failed.
    #[error("talking to etcd on 127.0.0.1:{port}")]
    Io {
        /// etcd's client port.
        port: u16,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd answered with an error.
    #[error("etcd refused the write: {answer}")]
    Refused {
        /// The first line and body of its answer.
        answer: String,
    },
    /// The object could not be serialized.
    #[error("serializing the object")]
    Serialize(#[source] serde_json::Error),
}

/// The key the API server stores a custom resource under (default `--etcd-prefix`):
/// `/registry/<group>/<plural>/<namespace>/<name>`.
pub fn storage_key(group: &str, plural: &str, namespace: &str, name: &str) -> String {
    format!("/registry/{group}/{plural}/{namespace}/{name}")
}

/// Writes `object` (a custom resource as the API returned it; its `resourceVersion` is dropped,
/// etcd's revision takes its place) under `key` in `cluster`'s etcd.
pub async fn restore(cluster: &LocalCluster, key: &str, object: &serde_json::Value) -> Result<(), StorageError> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let value = serde_json::to_vec(&object).map_err(StorageError::Serialize)?;
    let body = serde_json::json!({"key": base64(key.as_bytes()), "value": base64(&value)}).to_string();
    let port = cluster.ports().etcd_client;
    let io = |source| StorageError::Io { port, source };
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(io)?;
    let request = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .map_err(|_| io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 10 s")))?
        .map_err(io)?;
    let status_ok = answer.lines().next().is_some_and(|l| l.contains(" 200 "));
    if !status_ok || answer.contains("\"error\"") {
        return Err(StorageError::Refused { answer: answer.chars().take(500).collect() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys() {
        assert_eq!(storage_key("mall.io", "malls", "shop", "a"), "/registry/mall.io/malls/shop/a");
    }
}

//! Verdicts on a Mall manifest, offline and from the API server, in one comparable form;
//! shared by the tests that compare them (`mall_crd.rs`, `mall_proptest.rs`).
//!
//! Contract: [`validator`] runs `mall_controllers::validate::validate_value` (what `mallctl
//! validate` runs); [`apply`] sends a server-side apply (dry run or not) with strict field
//! validation and [`server_verdict`] turns its answer into a [`Verdict`]; both name fields by
//! [`canonical`] paths, so [`disagreement`] compares them as sets. The server's cause saying
//! CEL rules were skipped ([`CEL_SKIPPED`]) names no field and is left out. Requests that fail
//! for another reason than a refusal panic: the comparison cannot go on without the server.
#![allow(dead_code)]

use std::collections::BTreeSet;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, ValidationDirective};
use serde::Serialize as _;
use serde_json::Value;

use crate::mutations::canonical;

/// The server's extra root cause (`<nil>: Invalid value: null: ...`) when a blocking OpenAPI
/// error kept it from evaluating CEL rules. It names no field; the validator skips CEL in the
/// same situation without saying so, so this cause is left out of the comparison.
pub const CEL_SKIPPED: &str = "some validation rules were not checked because the object was invalid";

pub fn schema() -> Value {
    let crd = mall_crds::Mall::definition();
    let schema = crd.spec.versions.first().and_then(|v| v.schema.as_ref()).and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema).expect("schema as JSON")
}

/// A verdict: accepted, or rejected with canonical paths and the raw text (for reports).
pub enum Verdict {
    /// Accepted.
    Accepted,
    /// Rejected: the canonical field paths named, and the whole text.
    Rejected(BTreeSet<String>, String),
}

pub fn validator(schema: &Value, object: &Value, old: Option<&Value>) -> Verdict {
    match mall_controllers::validate::validate_value(object, old) {
        Ok(_) => Verdict::Accepted,
        Err(invalid) => Verdict::Rejected(
            invalid.0.iter().map(|e| canonical(schema, &e.path)).collect(),
            invalid.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "),
        ),
    }
}

/// Paths in a server message: `spec.x.y: ...` or `.spec.x.y: field not declared in schema`.
pub fn paths_in_message(schema: &Value, message: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"(?:^|[\s*])(\.?(?:spec|metadata|status)(?:\.[A-Za-z0-9_-]+|\[[^\]\s]*\])*): ")
        .expect("regex");
    re.captures_iter(message).filter_map(|c| c.get(1)).map(|m| canonical(schema, m.as_str())).collect()
}

pub fn server_verdict(schema: &Value, result: Result<DynamicObject, kube::Error>) -> Verdict {
    match result {
        Ok(_) => Verdict::Accepted,
        Err(kube::Error::Api(status)) => {
            let causes = status.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
            let mut paths = BTreeSet::new();
            for cause in &causes {
                if cause.message.contains(CEL_SKIPPED) {
                    continue;
                }
                if cause.field.is_empty() {
                    paths.extend(paths_in_message(schema, &cause.message));
                } else {
                    paths.insert(canonical(schema, &cause.field));
                }
            }
            if causes.is_empty() {
                paths = paths_in_message(schema, &status.message);
            }
            Verdict::Rejected(paths, format!("{} {}: {}", status.code, status.reason, status.message))
        }
        Err(other) => panic!("request failed: {other}"),
    }
}

pub fn api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<mall_crds::Mall>(&());
    Api::namespaced_with(client.clone(), namespace, &resource)
}

pub async fn apply(api: &Api<DynamicObject>, object: &Value, dry_run: bool) -> Result<DynamicObject, kube::Error> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("unnamed");
    let mut params = PatchParams::apply("mall-crd-test").force().validation(ValidationDirective::Strict);
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(object)).await
}

/// Compares the verdicts; `None` when they agree.
pub fn disagreement(server: &Verdict, offline: &Verdict) -> Option<String> {
    match (server, offline) {
        (Verdict::Accepted, Verdict::Accepted) => None,
        (Verdict::Rejected(a, _), Verdict::Rejected(b, _)) if a == b => None,
        _ => Some(format!("server: {}\n      validator: {}", describe(server), describe(offline))),
    }
}

pub fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Accepted => "accepted".into(),
        Verdict::Rejected(paths, text) => format!("rejected {paths:?}: {text}"),
    }
}

/// Characters YAML does not allow raw in a document (go-yaml: "control characters are not
/// allowed") that JSON encoders, serde_json included, write raw: DEL, the C1 controls but NEL,
/// the byte-order mark and the non-characters U+FFFE, U+FFFF.
fn yaml_forbidden(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// JSON with [`yaml_forbidden`] characters written as `\uXXXX` escapes (same value).
struct YamlSafe;

impl serde_json::ser::Formatter for YamlSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if yaml_forbidden(c) {
                write!(writer, "\\u{:04x}", u32::from(c))?;
            } else {
                let mut buf = [0u8; 4];
                writer.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Like [`apply`], with the body written by [`YamlSafe`]: a server-side apply body is decoded
/// as YAML, which refuses a raw control character (400, no field named) before any validation,
/// while the same value escaped reaches the CRD's validation like any other string.
pub async fn apply_escaped(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    use kube::Resource as _;
    let resource = ApiResource::erase::<mall_crds::Mall>(&());
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("unnamed");
    let mut params = PatchParams::apply("mall-crd-test").force().validation(ValidationDirective::Strict);
    params.dry_run = dry_run;
    let mut request = kube::core::Request::new(DynamicObject::url_path(&resource, Some(namespace)))
        .patch(name, &params, &Patch::Apply(object))
        .map_err(kube::Error::BuildRequest)?;
    let mut body = Vec::new();
    object
        .serialize(&mut serde_json::Serializer::with_formatter(&mut body, YamlSafe))
        .map_err(kube::Error::SerdeError)?;
    *request.body_mut() = body;
    client.request::<DynamicObject>(request).await
}

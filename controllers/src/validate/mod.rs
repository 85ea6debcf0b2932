//! Step 1 of every controller, and `mallctl validate`: is this Mall acceptable, and if not, which
//! field is wrong and why.
//!
//! Contract: pure (no client, no clock). The rules are not written here: they are read from the
//! CRD schema that `mall_crds` generates — OpenAPI structure, bounds, enums and patterns are
//! checked by [`schema`], the CEL `x-kubernetes-validations` by kube's offline CEL evaluator —
//! in the order the API server uses (prune/unknown fields, defaults, OpenAPI, then CEL unless an
//! OpenAPI error blocks it). So each problem carries the same field path the server reports,
//! which `localcluster`'s tests prove against the real API server.

pub mod plan;
mod quantities;
mod schema;

pub use plan::{Plan, plan};

use mall_crds::Mall;
use serde_json::Value;
use std::sync::OnceLock;

/// One problem with a Mall: the field (`spec.regions[1].name`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path as the API server prints it; empty for the whole object.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Why a Mall was refused: one or more field errors, in schema order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

struct Compiled {
    schema: Value,
    cel: kube::core::cel::CompiledSchema,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let crd = Mall::definition();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null);
        let cel = kube::core::cel::compile_schema(&schema);
        Compiled { schema, cel }
    })
}

/// Validates a manifest (as parsed from YAML or JSON) as the API server would on create
/// (`old` = None) or update (`old` = the stored object, for transition rules such as the
/// immutable `spec.database.shards`). On success returns the typed, defaulted Mall.
pub fn validate_value(object: &Value, old: Option<&Value>) -> Result<Mall, Invalid> {
    let mut errors = Vec::new();
    check_type_meta(object, &mut errors);
    if object.is_object() {
        check_object_meta(object, &mut errors);
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    let compiled = compiled();
    let outcome = schema::check(&compiled.schema, object);
    errors.extend(outcome.errors);
    if !outcome.blocking {
        let old = old.map(|o| cel_view(&schema::check(&compiled.schema, o).defaulted));
        let validator = kube::core::cel::Validator::new();
        if let Err(cel_errors) = validator.validate_compiled(&compiled.cel, &cel_view(&outcome.defaulted), old.as_ref())
        {
            errors.extend(cel_errors.iter().map(|e| FieldError {
                path: e.field_path.trim_start_matches('.').to_string(),
                message: e.message.clone(),
            }));
        }
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    serde_json::from_value::<Mall>(outcome.defaulted).map_err(|e| {
        Invalid(vec![FieldError {
            path: String::new(),
            message: format!("does not decode as a Mall after validation: {e}"),
        }])
    })
}

/// The object as the API server's CEL rules see it: without nulls ([`without_nulls`]), and with
/// the quantity pairs kube-cel cannot compare replaced ([`quantities::make_cel_safe`]).
fn cel_view(value: &Value) -> Value {
    let mut view = without_nulls(value);
    quantities::make_cel_safe(&mut view);
    view
}

/// A field set to `null` (kept by a `nullable` schema) is not set for the server's CEL rules:
/// `has(self.x)` is false for it.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Validates a typed Mall (the operator's step 1): the same checks, on its JSON form.
pub fn validate(mall: &Mall) -> Result<(), Invalid> {
    let value = serde_json::to_value(mall)
        .map_err(|e| Invalid(vec![FieldError { path: String::new(), message: format!("does not serialize: {e}") }]))?;
    validate_value(&value, None).map(|_| ())
}

fn check_type_meta(object: &Value, errors: &mut Vec<FieldError>) {
    let Some(map) = object.as_object() else {
        errors.push(FieldError {
            path: String::new(),
            message: format!("expected a Mall object, got {}", schema::json_type(object)),
        });
        return;
    };
    let expected_api = format!("{}/{}", mall_crds::GROUP, mall_crds::VERSION);
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == expected_api => {}
        Some(v) => errors.push(FieldError {
            path: "apiVersion".into(),
            message: format!("Unsupported value: {v:?}: supported values: {expected_api:?}"),
        }),
        None => errors.push(FieldError { path: "apiVersion".into(), message: "Required value".into() }),
    }
    match map.get("kind").and_then(Value::as_str) {
        Some("Mall") => {}
        Some(k) => errors.push(FieldError {
            path: "kind".into(),
            message: format!("Unsupported value: {k:?}: supported values: \"Mall\""),
        }),
        None => errors.push(FieldError { path: "kind".into(), message: "Required value".into() }),
    }
}

fn check_object_meta(object: &Value, errors: &mut Vec<FieldError>) {
    let Some(meta) = object.get("metadata") else {
        errors.push(FieldError {
            path: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
        return;
    };
    let Some(meta) = meta.as_object() else {
        errors.push(FieldError {
            path: "metadata".into(),
            message: format!("must be an object, got {}", schema::json_type(meta)),
        });
        return;
    };
    match meta.get("name") {
        None => errors.push(FieldError {
            path: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        }),
        Some(Value::String(name)) if !is_dns_subdomain(name) => errors.push(FieldError {
            path: "metadata.name".into(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        }),
        Some(Value::String(_)) => {}
        Some(other) => errors.push(FieldError {
            path: "metadata.name".into(),
            message: format!("must be a string, got {}", schema::json_type(other)),
        }),
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(ns) if is_dns_label(ns) => {}
            _ => errors.push(FieldError {
                path: "metadata.namespace".into(),
                message: "must be a lowercase RFC 1123 label".into(),
            }),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests;

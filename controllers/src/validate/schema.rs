//! The OpenAPI half of the API server's custom-resource validation, offline: unknown fields
//! (kubectl's default strict field validation), null pruning, defaulting, then structural checks
//! (type, required, enum, bounds, lengths, patterns, formats, item and property counts).
//!
//! Contract: pure. Paths and the blocking rule follow kube-apiserver v1.36
//! (`apiextensions-apiserver/pkg/registry/customresource/strategy.go` `hasBlockingErr`: a type,
//! required, enum, too-long or too-many error means CEL rules are not evaluated). Messages follow
//! the server's wording closely; the field path is the contract.

use super::FieldError;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// What the OpenAPI pass found.
pub(super) struct Outcome {
    /// The object with unknown fields pruned and defaults applied (what CEL sees).
    pub defaulted: Value,
    /// Problems found.
    pub errors: Vec<FieldError>,
    /// Whether one of them stops the server from evaluating CEL rules.
    pub blocking: bool,
}

/// Runs unknown-field detection, defaulting and structural validation of `object` (a whole
/// Mall) against the root `schema`.
pub(super) fn check(schema: &Value, object: &Value) -> Outcome {
    let mut walker = Walker { errors: Vec::new(), blocking: false };
    let mut defaulted = object.clone();
    // apiVersion, kind and metadata are the server's own business (checked by the caller);
    // only `spec` and `status` are governed by the schema.
    if let (Some(map), Some(props)) = (defaulted.as_object_mut(), properties(schema)) {
        for key in ["spec", "status"] {
            if let (Some(value), Some(sub)) = (map.get_mut(key), props.get(key)) {
                walker.default_and_prune(sub, value, key);
            } else if !map.contains_key(key)
                && let Some(default) = props.get(key).and_then(|s| s.get("default"))
            {
                map.insert(key.to_string(), default.clone());
            }
        }
        for key in map.keys() {
            if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()) {
                walker.errors.push(FieldError { path: key.clone(), message: "unknown field".into() });
            }
        }
        let required = schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                walker.required(key);
            }
        }
        // The only metadata field a CRD schema may restrict is the name.
        if let Some(name) = map.get("metadata").and_then(|m| m.get("name"))
            && let Some(name_schema) = props.get("metadata").and_then(properties).and_then(|p| p.get("name"))
        {
            walker.validate(name_schema, name, "metadata.name");
        }
        for key in ["spec", "status"] {
            if let (Some(value), Some(sub)) = (map.get(key), props.get(key)) {
                walker.validate(sub, value, key);
            }
        }
    }
    Outcome { defaulted, errors: walker.errors, blocking: walker.blocking }
}

/// The JSON type name of a value, as the server's messages write it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Go-compatible rendering of a value inside messages.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Whether `v` is an integer in the server's sense: what fits an `int64` is one; anything else
/// is decoded as a `float64`, which go-openapi accepts when integral and within ±(2^53 − 1)
/// (`swag.IsFloat64AJSONInteger`).
fn is_integer(v: &Value) -> bool {
    const MAX_JSON_FLOAT: f64 = 9_007_199_254_740_991.0;
    match v {
        Value::Number(n) => {
            n.is_i64() || n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.is_finite() && f.abs() <= MAX_JSON_FLOAT)
        }
        _ => false,
    }
}

fn cached_regex(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    guard.entry(pattern.to_string()).or_insert_with(|| Regex::new(&ascii_perl_classes(pattern)).ok()).clone()
}

/// The pattern with the Perl classes `\d`, `\s`, `\w` (and outside brackets their negations)
/// spelled out as the API server's Go RE2 reads them, ASCII only: `\s` is `[\t\n\f\r ]`, where
/// Rust's `regex` would also match Unicode spaces (U+2028, U+202F, …).
fn ascii_perl_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push(c);
                    break;
                };
                let set = match next.to_ascii_lowercase() {
                    'd' => Some("0-9"),
                    's' => Some("\\t\\n\\f\\r "),
                    'w' => Some("0-9A-Za-z_"),
                    _ => None,
                };
                match (set, in_class, next.is_ascii_uppercase()) {
                    (Some(set), true, false) => out.push_str(set),
                    (Some(set), false, false) => out.push_str(&format!("[{set}]")),
                    (Some(set), false, true) => out.push_str(&format!("[^{set}]")),
                    _ => {
                        out.push(c);
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                let rest = chars.as_str();
                let skip = if rest.starts_with("^]") { 2 } else { usize::from(rest.starts_with(']')) };
                out.push_str(&rest[..skip]);
                chars = rest[skip..].chars();
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

struct Walker {
    errors: Vec<FieldError>,
    blocking: bool,
}

impl Walker {
    fn push(&mut self, path: &str, message: String) {
        self.errors.push(FieldError { path: path.to_string(), message });
    }

    fn block(&mut self, path: &str, message: String) {
        self.blocking = true;
        self.push(path, message);
    }

    fn required(&mut self, path: &str) {
        self.block(path, "Required value".into());
    }

    /// Pruning of unknown fields (reported: kubectl validates strictly by default), pruning of
    /// non-nullable nulls, and defaulting — top-down, as the server does before validating.
    fn default_and_prune(&mut self, schema: &Value, value: &mut Value, path: &str) {
        match value {
            Value::Object(map) => {
                if is_true(schema, "x-kubernetes-preserve-unknown-fields") && properties(schema).is_none() {
                    return;
                }
                let props = properties(schema);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let sub = props.and_then(|p| p.get(&key)).or(additional);
                    let Some(sub) = sub else {
                        if props.is_some() || !is_true(schema, "x-kubernetes-preserve-unknown-fields") {
                            self.push(&child(path, &key), "unknown field".into());
                            map.remove(&key);
                        }
                        continue;
                    };
                    if map.get(&key).is_some_and(Value::is_null) && !is_true(sub, "nullable") {
                        match sub.get("default") {
                            Some(d) => {
                                map.insert(key.clone(), d.clone());
                            }
                            None => {
                                map.remove(&key);
                            }
                        }
                    }
                }
                if let Some(props) = props {
                    for (key, sub) in props {
                        if !map.contains_key(key)
                            && let Some(d) = sub.get("default")
                        {
                            map.insert(key.clone(), d.clone());
                        }
                    }
                }
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let sub = props.and_then(|p| p.get(&key)).or(additional);
                    if let (Some(sub), Some(v)) = (sub, map.get_mut(&key)) {
                        let p = if props.is_some_and(|p| p.contains_key(&key)) {
                            child(path, &key)
                        } else {
                            format!("{path}[{key}]")
                        };
                        self.default_and_prune(sub, v, &p);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.default_and_prune(sub, item, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Number(n) if schema.get("type").and_then(Value::as_str) == Some("integer") => {
                // The server stores an integral float (`3.0`) of an integer field as an integer.
                if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    && !(n.is_i64() || n.is_u64())
                {
                    *value = Value::from(f as i64);
                }
            }
            _ => {}
        }
    }

    fn validate(&mut self, schema: &Value, value: &Value, path: &str) {
        if value.is_null() {
            if !is_true(schema, "nullable") {
                let ty = schema.get("type").and_then(Value::as_str).unwrap_or("object");
                self.block(path, format!("Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""));
            }
            return;
        }
        if is_true(schema, "x-kubernetes-int-or-string") {
            if !(value.is_string() || is_integer(value)) {
                self.block(path, format!("Invalid value: {}: must be an integer or a string", show(value)));
            }
            return;
        }
        let Some(ty) = schema.get("type").and_then(Value::as_str) else { return };
        let type_ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => is_integer(value),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !type_ok {
            let got = json_type(value);
            self.block(path, format!("Invalid value: \"{got}\": {path} in body must be of type {ty}: \"{got}\""));
            // For a fractional number in an integer field with a format, the server adds a second
            // cause without a field (kube-openapi's format check).
            if ty == "integer"
                && value.is_number()
                && let Some(format) = schema.get("format").and_then(Value::as_str)
            {
                self.push("", format!("Checked value must be of type integer with format {format} in {path}"));
            }
            return;
        }
        self.check_enum(schema, value, path);
        match value {
            Value::Object(map) => self.validate_object(schema, map, path),
            Value::Array(items) => self.validate_array(schema, items, path),
            Value::String(s) => self.validate_string(schema, s, path),
            Value::Number(_) => self.validate_number(schema, value, path),
            _ => {}
        }
    }

    fn check_enum(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(allowed) = schema.get("enum").and_then(Value::as_array) else { return };
        if !allowed.contains(value) {
            let list = allowed.iter().map(show).collect::<Vec<_>>().join(", ");
            self.block(path, format!("Unsupported value: {}: supported values: {list}", show(value)));
        }
    }

    fn validate_object(&mut self, schema: &Value, map: &Map<String, Value>, path: &str) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    self.required(&child(path, key));
                }
            }
        }
        let count = map.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            self.block(path, format!("Too many: {count}: must have at most {max} items"));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            self.push(path, format!("Invalid value: {count}: {path} in body should have at least {min} properties"));
        }
        let props = properties(schema);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, v) in map {
            if let Some(sub) = props.and_then(|p| p.get(key)) {
                self.validate(sub, v, &child(path, key));
            } else if let Some(sub) = additional {
                self.validate(sub, v, &format!("{path}[{key}]"));
            }
        }
    }

    fn validate_array(&mut self, schema: &Value, items: &[Value], path: &str) {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            self.block(path, format!("Too many: {count}: must have at most {max} items"));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            self.push(path, format!("Invalid value: {count}: {path} in body should have at least {min} items"));
        }
        if let Some(sub) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.validate(sub, item, &format!("{path}[{i}]"));
            }
        }
    }

    fn validate_string(&mut self, schema: &Value, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.block(path, format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.push(path, format!("Invalid value: {s:?}: {path} in body should be at least {min} chars long"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match cached_regex(pattern) {
                Some(re) if re.is_match(s) => {}
                Some(_) => self.push(path, format!("Invalid value: {s:?}: {path} in body should match '{pattern}'")),
                None => self.push(path, format!("schema pattern '{pattern}' does not compile")),
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            // A format error is a type error to the server (`field.TypeInvalid`): it blocks CEL.
            self.block(path, format!("Invalid value: {s:?}: {path} in body must be of type date-time: {s:?}"));
        }
    }

    fn validate_number(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(n) = value.as_f64() else { return };
        // kube-openapi's MinimumNativeType/MaximumNativeType compare an integral JSON value
        // with the bound converted to int64 (truncated), a fractional one with the float bound.
        let integral = matches!(value, Value::Number(v) if v.is_i64() || v.is_u64());
        let bound = |b: f64| if integral { b.trunc() } else { b };
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64).map(bound)
            && n > max
        {
            self.push(
                path,
                format!(
                    "Invalid value: {}: {path} in body should be less than or equal to {}",
                    show(value),
                    trim_float(max)
                ),
            );
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64).map(bound)
            && n < min
        {
            self.push(
                path,
                format!(
                    "Invalid value: {}: {path} in body should be greater than or equal to {}",
                    show(value),
                    trim_float(min)
                ),
            );
        }
    }
}

fn trim_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { format!("{f}") }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::{ascii_perl_classes, cached_regex};

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        assert_eq!(ascii_perl_classes(r"^\s*[^\s/]+\d\S$"), r"^[\t\n\f\r ]*[^\t\n\f\r /]+[0-9][^\t\n\f\r ]$");
        assert_eq!(ascii_perl_classes(r"^[]\w-]\.$"), r"^[]0-9A-Za-z_-]\.$");
        let schedule = cached_regex(r"^\s*[0-9*?/,A-Za-z\-LW#]+(\s+[0-9*?/,A-Za-z\-LW#]+){5}\s*$").expect("compiles");
        assert!(schedule.is_match("0 0 2 * * *"));
        assert!(!schedule.is_match("0\u{202f}0 2 * * *"), "U+202F is not \\s in RE2");
        let image = cached_regex(r"^[^\s]+$").expect("compiles");
        assert!(image.is_match("shop:1\u{2028}"), "U+2028 is not \\s in RE2");
    }
}

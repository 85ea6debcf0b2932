//! A proptest strategy for Mall manifests, derived from the CRD's OpenAPI schema.
//!
//! Contract: pure. [`manifest`] yields whole Mall manifests (`metadata.name` fixed, `spec`
//! generated) in which every schema node gets a value that follows it — type, enum, bounds,
//! lengths, pattern, `date-time`, required properties, map sizes, `nullable` — except where a
//! hostility draw replaces it with a value breaking a rule: a wrong type, a number past a bound
//! or not integral, a string outside its pattern or length, hostile text (control characters,
//! bidi overrides, non-ASCII, 5,000 characters), an unknown enum value, a missing required
//! property, an unknown property, too many items. Each manifest draws its hostility (0, 1, 5 or
//! 20 % per node), so some are valid and CEL rules hold or break by chance. Valid alternatives
//! come first, so failures shrink towards valid, smaller values.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::{Map, Value, json};

type Gen = BoxedStrategy<Value>;

/// Lists and maps get at most this many entries when valid (requests stay small and fast).
const MAX_ENTRIES: usize = 3;

/// Hostility levels, in percent of nodes replaced by a rule-breaking value.
pub const HOSTILITY: [u32; 4] = [0, 1, 5, 20];

/// Strategy for whole manifests, from the CRD's `openAPIV3Schema`, each drawing one of the
/// hostility `levels` (see [`HOSTILITY`]).
pub fn manifest(schema: &Value, levels: &[u32]) -> impl Strategy<Value = Value> + use<> {
    let spec = &schema["properties"]["spec"];
    let levels: Vec<Gen> = levels.iter().map(|h| node(spec, *h)).collect();
    Union::new(levels).prop_map(
        |spec| json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall", "metadata": {"name": "fuzz"}, "spec": spec}),
    )
}

fn node(schema: &Value, hostility: u32) -> Gen {
    let valid = valid(schema, hostility);
    if hostility == 0 {
        return valid;
    }
    prop_oneof![100 - hostility => valid, hostility => hostile(schema, hostility)].boxed()
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Value, key: &str) -> Option<usize> {
    schema.get(key).and_then(Value::as_u64).map(|n| n as usize)
}

fn valid(schema: &Value, hostility: u32) -> Gen {
    let plain = valid_non_null(schema, hostility);
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return prop_oneof![9 => plain, 1 => Just(Value::Null)].boxed();
    }
    plain
}

fn valid_non_null(schema: &Value, hostility: u32) -> Gen {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return proptest::sample::select(values.clone()).boxed();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object(schema, hostility),
        Some("array") => {
            let items = node(&schema["items"], hostility);
            let min = count(schema, "minItems").unwrap_or(0);
            let max = count(schema, "maxItems").unwrap_or(MAX_ENTRIES).min(min.max(MAX_ENTRIES));
            proptest::collection::vec(items, min..=max).prop_map(Value::Array).boxed()
        }
        Some("integer") => {
            let min = num(schema, "minimum").unwrap_or(-5.0) as i64;
            let max = num(schema, "maximum").unwrap_or(100.0) as i64;
            prop_oneof![min..=max, Just(min), Just(max)].prop_map(Value::from).boxed()
        }
        Some("number") => {
            let min = num(schema, "minimum").unwrap_or(0.0);
            let max = num(schema, "maximum").unwrap_or(1000.0);
            prop_oneof![(min..=max).prop_map(Value::from), Just(Value::from(min)), Just(Value::from(max))].boxed()
        }
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        Some("string") => string(schema),
        _ => Just(json!({})).boxed(),
    }
}

fn string(schema: &Value) -> Gen {
    let min = count(schema, "minLength").unwrap_or(0);
    let max = count(schema, "maxLength").unwrap_or(64);
    let pattern = match (schema.get("format").and_then(Value::as_str), schema.get("pattern").and_then(Value::as_str)) {
        (Some("date-time"), _) => {
            r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|[+-]0[0-9]:00)"
                .to_string()
        }
        (_, Some(p)) => p.trim_start_matches('^').trim_end_matches('$').to_string(),
        _ => "[a-zA-Z0-9 ._:/-]*".to_string(),
    };
    match proptest::string::string_regex(&pattern) {
        Ok(strings) => strings
            .prop_filter("within the length bounds", move |s| (min..=max).contains(&s.chars().count()))
            .prop_map(Value::String)
            .boxed(),
        Err(_) => Just(Value::String("x".repeat(min.max(1)))).boxed(),
    }
}

fn object(schema: &Value, hostility: u32) -> Gen {
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|k| k.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
            .iter()
            .map(|(key, sub)| {
                let key = key.clone();
                let value = node(sub, hostility);
                if required.contains(&key) {
                    value.prop_map(move |v| Some((key.clone(), v))).boxed()
                } else {
                    proptest::option::weighted(0.3, value.prop_map(move |v| (key.clone(), v))).boxed()
                }
            })
            .collect();
        return fields.prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>())).boxed();
    }
    if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        let max = count(schema, "maxProperties").unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES);
        // Postgres parameter names, some of which the operator manages (a CEL rule refuses them).
        let keys = prop_oneof![
            "[a-z][a-z_]{0,20}",
            proptest::sample::select(vec!["archive_mode", "max_connections", "shared_buffers", "work_mem"])
                .prop_map(String::from),
        ];
        return proptest::collection::btree_map(keys, node(values, hostility), 0..=max)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed();
    }
    Just(json!({})).boxed()
}

/// Text no schema here allows: control characters, bidi overrides, non-ASCII, very long.
fn hostile_text() -> Gen {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("line\nbreak\ttab\u{0}nul".to_string()),
        Just("\u{202e}evil\u{202c}".to_string()),
        Just("Ünïcödé-名前-🛒".to_string()),
        Just("UPPER_case.Value!".to_string()),
        Just("a".repeat(5000)),
        Just("${jndi:ldap://127.0.0.1/x}".to_string()),
        Just("'; DROP TABLE malls; --".to_string()),
        "\\PC{1,40}",
    ]
    .prop_map(Value::String)
    .boxed()
}

fn hostile(schema: &Value, hostility: u32) -> Gen {
    let mut options: Vec<Gen> = vec![
        // A value of another type (the node's own type is refused below by the type checks).
        Just(json!("a string")).boxed(),
        Just(json!(42)).boxed(),
        Just(json!(true)).boxed(),
        Just(json!({"unexpected": 1})).boxed(),
        Just(json!([1, "two"])).boxed(),
        hostile_text(),
    ];
    if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
        options.push(Just(Value::Null).boxed());
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let first = values.first().and_then(Value::as_str).unwrap_or("x");
        options.push(Just(json!(first.to_uppercase())).boxed());
        options.push(Just(json!("not-a-choice")).boxed());
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => {
            if let Some(min) = num(schema, "minimum") {
                options.push(Just(json!(min - 1.0)).boxed());
            }
            if let Some(max) = num(schema, "maximum") {
                options.push(Just(json!(max + 1.0)).boxed());
            }
            options.push(Just(json!(1.5)).boxed());
            options.push(Just(json!(-1)).boxed());
            options.push(Just(json!(i64::MAX)).boxed());
            options.push(Just(json!(1e300)).boxed());
        }
        Some("string") => {
            if let Some(max) = count(schema, "maxLength") {
                options.push(Just(json!("a".repeat(max + 1))).boxed());
            }
            if let Some(min) = count(schema, "minLength").filter(|m| *m > 1) {
                options.push(Just(json!("a".repeat(min - 1))).boxed());
            }
        }
        Some("array") => {
            if let Some(max) = count(schema, "maxItems") {
                let item = valid(&schema["items"], 0);
                options.push(item.prop_map(move |v| Value::Array(vec![v; max + 1])).boxed());
            }
        }
        Some("object") => {
            let base = valid(schema, hostility);
            options.push(
                base.clone()
                    .prop_map(|mut v| {
                        if let Some(map) = v.as_object_mut() {
                            map.insert("unknownField".into(), json!("x"));
                        }
                        v
                    })
                    .boxed(),
            );
            let required: Vec<String> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if !required.is_empty() {
                let drop = (base, proptest::sample::select(required)).prop_map(|(mut v, key)| {
                    if let Some(map) = v.as_object_mut() {
                        map.remove(&key);
                    }
                    v
                });
                options.push(drop.boxed());
            }
        }
        _ => {}
    }
    Union::new(options).boxed()
}

//! Quantity comparisons the validator's CEL library (kube-cel) cannot make. It holds a quantity
//! as an `i128` mantissa times a power of ten: a very large quantity does not parse
//! (`isQuantity` is false where the API server says true), and comparing two quantities far
//! apart overflows (a panic in a debug build, a wrong order in a release one).
//!
//! kube-cel also reads a quantity exactly where the API server (apimachinery `ParseQuantity`)
//! does not: the server caps a binary-suffixed quantity (`Ki` … `Ei`) at 2^63 − 1 and rounds
//! anything finer than a nano up to the next nano.
//!
//! Contract: pure. [`make_cel_safe`] rewrites, in the copy of the object the CEL rules see, each
//! `requests.X` / `limits.X` pair of an object holding both, when both are quantities and
//! kube-cel could not compare them or would read one differently from the server, into
//! `"1"`/`"2"` stand-ins in the server's order, computed with
//! [`mall_crds::common::parse_quantity`] (`f64`) plus the cap and the rounding. Other pairs are
//! left as they are.

use mall_crds::common::parse_quantity;
use serde_json::Value;
use std::cmp::Ordering;

/// kube-cel's reading of a quantity, `(mantissa, power of ten)`, or None where it fails.
fn exact(text: &str) -> Option<(i128, i32)> {
    let text = text.trim();
    let end = text.find(|c: char| !c.is_ascii_digit() && c != '.' && c != '-' && c != '+').unwrap_or(text.len());
    let rest = &text[end..];
    let exponent_form = (rest.starts_with('e') || rest.starts_with('E'))
        && !rest.starts_with("Ei")
        && rest.len() > 1
        && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '+' || c == '-');
    let (number, suffix) = if exponent_form { (text, "") } else { (&text[..end], rest) };
    let (digits, exponent) = match number.find(['e', 'E']) {
        Some(at) => (&number[..at], number[at + 1..].parse::<i32>().ok()?),
        None => (number, 0),
    };
    let (mantissa, shift) = match digits.split_once('.') {
        Some((int, frac)) => (format!("{int}{frac}").parse::<i128>().ok()?, -i32::try_from(frac.len()).ok()?),
        None => (digits.parse::<i128>().ok()?, 0),
    };
    let (scale, binary): (i32, i128) = match suffix {
        "" => (0, 1),
        "n" => (-9, 1),
        "u" => (-6, 1),
        "m" => (-3, 1),
        "k" => (3, 1),
        "M" => (6, 1),
        "G" => (9, 1),
        "T" => (12, 1),
        "P" => (15, 1),
        "E" => (18, 1),
        "Ki" => (0, 1 << 10),
        "Mi" => (0, 1 << 20),
        "Gi" => (0, 1 << 30),
        "Ti" => (0, 1 << 40),
        "Pi" => (0, 1 << 50),
        "Ei" => (0, 1 << 60),
        _ => return None,
    };
    let (mut mantissa, mut power) = (mantissa.checked_mul(binary)?, shift.checked_add(exponent)?.checked_add(scale)?);
    while mantissa != 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        power = power.checked_add(1)?;
    }
    Some((mantissa, power))
}

/// Whether kube-cel compares `a` and `b` without overflowing.
fn comparable(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (exact(a), exact(b)) else { return false };
    let low = a.1.min(b.1);
    let aligned = |(m, p): (i128, i32)| {
        u32::try_from(p - low).ok().and_then(|d| 10i128.checked_pow(d)).and_then(|f| m.checked_mul(f))
    };
    aligned(a).is_some() && aligned(b).is_some()
}

/// The order of two `(mantissa, power of ten)` values, without aligning them (which overflows).
fn exact_order(a: (i128, i32), b: (i128, i32)) -> Ordering {
    let sign = |m: i128| m.signum();
    if sign(a.0) != sign(b.0) || a.0 == 0 {
        return a.0.signum().cmp(&b.0.signum());
    }
    let (da, db) = (a.0.unsigned_abs().to_string(), b.0.unsigned_abs().to_string());
    // Same sign and both non-zero: first the order of magnitude, then the digits.
    let magnitude = |digits: &str, power: i32| i64::try_from(digits.len()).unwrap_or(i64::MAX) + i64::from(power);
    let width = da.len().max(db.len());
    let order = magnitude(&da, a.1)
        .cmp(&magnitude(&db, b.1))
        .then_with(|| format!("{da:0<width$}").cmp(&format!("{db:0<width$}")));
    if a.0 < 0 { order.reverse() } else { order }
}

/// The largest binary-suffixed quantity the server keeps (larger ones are capped to it).
const MAX_BINARY: f64 = 9_223_372_036_854_775_807.0;

/// Whether kube-cel would read `text` differently from the server: capped, or finer than a nano.
fn server_reads_differently(text: &str) -> bool {
    let binary = text.trim().ends_with('i');
    let capped = binary && parse_quantity(text).is_some_and(|v| v > MAX_BINARY);
    let finer_than_nano = exact(text).is_some_and(|(_, power)| power < -9);
    capped || finer_than_nano
}

/// The value as the server keeps it, as far as an `f64` holds it.
fn server_value(text: &str, value: f64) -> f64 {
    let value = if text.trim().ends_with('i') { value.min(MAX_BINARY) } else { value };
    let nanos = value * 1e9;
    if nanos.abs() < 9e15 { nanos.ceil() / 1e9 } else { value }
}

/// Rewrites the pairs kube-cel cannot compare (see the module header), everywhere in `value`.
pub fn make_cel_safe(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::Object(requests)), Some(Value::Object(limits))) =
                (map.get("requests"), map.get("limits"))
            {
                let mut stand_ins = Vec::new();
                for (key, request) in requests {
                    let (Some(request), Some(limit)) = (request.as_str(), limits.get(key).and_then(Value::as_str))
                    else {
                        continue;
                    };
                    if comparable(request, limit)
                        && !server_reads_differently(request)
                        && !server_reads_differently(limit)
                    {
                        continue;
                    }
                    let order = match (parse_quantity(request), parse_quantity(limit)) {
                        (Some(r), Some(l)) if r.is_finite() && l.is_finite() => {
                            server_value(request, r).partial_cmp(&server_value(limit, l))
                        }
                        _ => match (exact(request), exact(limit)) {
                            (Some(a), Some(b)) => Some(exact_order(a, b)),
                            _ => continue,
                        },
                    };
                    let pair = match order {
                        Some(Ordering::Less) => ("1", "2"),
                        Some(Ordering::Greater) => ("2", "1"),
                        _ => ("1", "1"),
                    };
                    stand_ins.push((key.clone(), pair));
                }
                for (key, (request, limit)) in stand_ins {
                    map["requests"][&key] = Value::from(request);
                    map["limits"][&key] = Value::from(limit);
                }
            }
            map.values_mut().for_each(make_cel_safe);
        }
        Value::Array(items) => items.iter_mut().for_each(make_cel_safe),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_kube_cel_cannot_compare_get_stand_ins_in_the_same_order() {
        let mut v = json!({"resources": {
            "requests": {"cpu": "200000000000000000000Ei", "memory": "170200000000000000000000"},
            "limits": {"cpu": "0", "memory": ".000000000000001"}}});
        make_cel_safe(&mut v);
        assert_eq!(v["resources"]["requests"], json!({"cpu": "2", "memory": "2"}));
        assert_eq!(v["resources"]["limits"], json!({"cpu": "1", "memory": "1"}));
    }

    #[test]
    fn values_beyond_f64_are_ordered_exactly() {
        let mut v = json!({"requests": {"cpu": ".1e310"}, "limits": {"cpu": "0"}});
        make_cel_safe(&mut v);
        assert_eq!(v, json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}));
        assert_eq!(exact_order((15, 308), (2, 310)), Ordering::Less);
        assert_eq!(exact_order((15, 308), (2, 307)), Ordering::Greater);
        assert_eq!(exact_order((-15, 308), (-2, 307)), Ordering::Less);
        assert_eq!(exact_order((0, 0), (1, -400)), Ordering::Less);
        assert_eq!(exact_order((10, 0), (1, 1)), Ordering::Equal);
    }

    #[test]
    fn the_servers_cap_and_nano_rounding_are_applied() {
        let mut v = json!({"requests": {"memory": "10000000001Gi", "cpu": "0.0000000011"},
            "limits": {"memory": "10000000000Gi", "cpu": "0.0000000012"}});
        make_cel_safe(&mut v);
        assert_eq!(v, json!({"requests": {"memory": "1", "cpu": "1"}, "limits": {"memory": "1", "cpu": "1"}}));
    }

    #[test]
    fn pairs_kube_cel_compares_are_untouched() {
        let original = json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}});
        let mut v = original.clone();
        make_cel_safe(&mut v);
        assert_eq!(v, original);
        assert_eq!(exact("1.5Gi"), Some((1610612736, 0)));
        assert_eq!(exact("2e3"), Some((2, 3)));
        assert!(comparable("1", "1E"));
        assert!(!comparable("1e-30", "1e30"));
    }
}

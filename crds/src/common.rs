//! Shared field types and string formats of the Mall API.
//!
//! Contract: only types and constants — no client, no I/O. The patterns here are enforced by the
//! API server through the CRD's OpenAPI schema and offline by `mall_controllers::validate`, which
//! reads the same generated schema.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A Go-style duration as Kubernetes writes them: `30s`, `5m`, `1h30m`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}(ms|s|m|h))+$";
/// A non-negative Kubernetes quantity (`512Mi`, `1`, `250m`, `1.5Gi`, `2e3`), as `resource.Quantity`
/// parses it, with a decimal exponent of at most two digits: the API server's quantity parser
/// spends unbounded time on a huge exponent (`1e00891195794983705718` held an API server for
/// more than 30 s per request in the property test), so no such string reaches it.
pub const QUANTITY_PATTERN: &str =
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE]\+?[0-9]{1,2}))?$";
/// A DNS-1123 label (names of Secrets' keys aside, most object names we refer to).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain (Secret, Gateway and StorageClass names).
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key inside a Secret or ConfigMap.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// A reference to one key of a Secret in the Mall's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the Mall).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// CPU and memory amounts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Memory, e.g. `512Mi` or `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub memory: Option<String>,
}

/// Compute resources of a container: the shape of `core/v1 ResourceRequirements`, limited to CPU
/// and memory so every amount is checked as a quantity when the Mall is admitted. The rule never
/// hands a string with a three-digit exponent to `isQuantity`/`quantity` (the pattern refuses it
/// anyway; the API server would spend unbounded time parsing it, see [`QUANTITY_PATTERN`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(concat!(
    "!has(self.requests) || !has(self.limits) || (",
    "(!has(self.requests.cpu) || !has(self.limits.cpu) || self.requests.cpu.matches('[eE][+]?[0-9]{3}') || self.limits.cpu.matches('[eE][+]?[0-9]{3}') || !isQuantity(self.requests.cpu) || !isQuantity(self.limits.cpu) || quantity(self.requests.cpu).compareTo(quantity(self.limits.cpu)) <= 0) && ",
    "(!has(self.requests.memory) || !has(self.limits.memory) || self.requests.memory.matches('[eE][+]?[0-9]{3}') || self.limits.memory.matches('[eE][+]?[0-9]{3}') || !isQuantity(self.requests.memory) || !isQuantity(self.limits.memory) || quantity(self.requests.memory).compareTo(quantity(self.limits.memory)) <= 0))"
)).message("requests must not exceed limits").field_path(".requests"))]
pub struct Resources {
    /// Guaranteed amounts, used for scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// The value of a Kubernetes quantity (`1Gi`, `512M`, `1.5Gi`, `250m`, `2e9`, `-1`): the one
/// quantity parser of the workspace. `None` when the text is not a quantity.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.matches(['+', '-']).count() > 1 || number[1..].contains(['+', '-']) {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            10f64.powi(exp.strip_prefix('+').unwrap_or(exp).parse::<i32>().ok()?)
        }
        _ => return None,
    };
    let value = base * factor;
    value.is_finite().then_some(value)
}

/// Parses a duration written with [`DURATION_PATTERN`] (`1h30m`, `250ms`).
///
/// Returns `None` for anything the pattern would refuse, so callers holding a validated spec can
/// treat `None` as a bug in validation rather than panic.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let value: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total_ms = total_ms.checked_add(value.checked_mul(unit_ms)?)?;
        rest = &rest[len..];
    }
    u64::try_from(total_ms).ok().map(std::time::Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m5"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn patterns_compile_and_agree_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["1s", "10m", "1h30m", "250ms"] {
            assert!(re.is_match(ok) && parse_duration(ok).is_some(), "{ok}");
        }
        for bad in ["", "1", "1d", "-1s", "1.5s"] {
            assert!(!re.is_match(bad), "{bad}");
        }
        let q = regex::Regex::new(QUANTITY_PATTERN).unwrap();
        for ok in ["1", "500m", "1.5Gi", "10Gi", "2e3", ".5"] {
            assert!(q.is_match(ok), "{ok}");
        }
        for bad in ["", "-1", "1GB", "ten", "1 Gi", "1e123", "217005725e00891195794983705718", "1e1.5"] {
            assert!(!q.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1.5Gi"), Some(1610612736.0));
        assert_eq!(parse_quantity("512M"), Some(512e6));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("+2E+3"), Some(2000.0));
        assert_eq!(parse_quantity("-1"), Some(-1.0));
        for bad in ["", "ten", "1GB", "1-2", "--1", "Gi", "1e"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }
}

//! The fencing policy a member cluster's own API server enforces: the failover epoch
//! ([`EPOCH_ANNOTATION`], see [`super::database::topology`]) is a fencing token, so a stale
//! writer (an operator that has not seen the latest failover) can never move a shard's primary
//! back to a fenced region.
//!
//! Contract: pure. [`objects`] returns a `ValidatingAdmissionPolicy` ([`POLICY_NAME`]) and its
//! `ValidatingAdmissionPolicyBinding` ([`BINDING_NAME`], `validationActions: [Deny]`, every
//! namespace). The policy matches UPDATE of `postgresql.cnpg.io` `clusters` (the main resource:
//! `clusters/status` is not matched, so CloudNativePG's status writes are never affected) whose
//! OLD object carries the annotation with a valid epoch (1 to 18 decimal digits; a Cluster without
//! it, or with a value no policy admitted, is not fenced). Such an update is refused when:
//! - the new object drops the annotation;
//! - the new value is not an integer (checked with `matches` first, so it is a clear refusal, not
//!   a CEL error);
//! - the new epoch is lower than the old one ("this writer was fenced by a newer failover");
//! - `spec.replica` (present or absent, compared whole: primary, source, self, promotionToken,
//!   enabled) differs from the old one without the epoch being strictly higher.
//!
//! Not covered, by design of a stateless policy:
//! - CREATE: the API server shows an admission policy the new object only, never the one that was
//!   deleted, so a stale writer that deletes a fenced Cluster and recreates it at its old epoch is
//!   not refused here. That needs an epoch floor kept outside the Cluster (e.g. a per-namespace
//!   parameter object holding the highest epoch, itself guarded by the same rule).
//! - DELETE: a delete carries no epoch to compare.
//!
//! `failurePolicy: Fail`: should an expression fail anyway, the update is refused, not admitted.

use super::database::topology::EPOCH_ANNOTATION;
use super::names::{MANAGED_BY, PART_OF};
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
    Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Name of the `ValidatingAdmissionPolicy`.
pub const POLICY_NAME: &str = "mallctl-failover-epoch";
/// Name of its `ValidatingAdmissionPolicyBinding`.
pub const BINDING_NAME: &str = "mallctl-failover-epoch";
/// A valid epoch: 1 to 18 decimal digits (so `int()` cannot overflow).
pub const EPOCH_PATTERN: &str = "^[0-9]{1,18}$";

/// The policy and its binding.
pub fn objects() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    (policy(), binding())
}

fn metadata(name: &str) -> ObjectMeta {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/part-of".to_string(), PART_OF.to_string()),
    ]);
    ObjectMeta { name: Some(name.to_string()), labels: Some(labels), ..Default::default() }
}

fn named(name: &str, expression: String) -> Variable {
    Variable { name: name.to_string(), expression }
}

fn validation(expression: &str, message: &str, message_expression: String) -> Validation {
    Validation {
        expression: expression.to_string(),
        message: Some(message.to_string()),
        message_expression: Some(message_expression),
        reason: Some("Forbidden".to_string()),
    }
}

/// The `ValidatingAdmissionPolicy` (see the module header).
pub fn policy() -> ValidatingAdmissionPolicy {
    let key = EPOCH_ANNOTATION;
    let has_old = format!("has(oldObject.metadata.annotations) && '{key}' in oldObject.metadata.annotations");
    let old_valid = format!("oldObject.metadata.annotations['{key}'].matches('{EPOCH_PATTERN}')");
    let variables = vec![
        named("oldText", format!("oldObject.metadata.annotations['{key}']")),
        named("oldEpoch", "int(variables.oldText)".to_string()),
        named("hasNew", format!("has(object.metadata.annotations) && '{key}' in object.metadata.annotations")),
        named("newText", format!("variables.hasNew ? object.metadata.annotations['{key}'] : ''")),
        named("newValid", format!("variables.newText.matches('{EPOCH_PATTERN}')")),
        named("newEpoch", "variables.newValid ? int(variables.newText) : -1".to_string()),
        named("hadReplica", "has(oldObject.spec) && has(oldObject.spec.replica)".to_string()),
        named("hasReplica", "has(object.spec) && has(object.spec.replica)".to_string()),
        named(
            "replicaChanged",
            "variables.hadReplica != variables.hasReplica || \
             (variables.hasReplica && object.spec.replica != oldObject.spec.replica)"
                .to_string(),
        ),
    ];
    let validations = vec![
        validation(
            "variables.hasNew",
            &format!("the failover epoch annotation {key} cannot be removed: the cluster is fenced by it"),
            format!(
                "'the failover epoch annotation {key} cannot be removed: the cluster is fenced by failover epoch ' \
                 + variables.oldText"
            ),
        ),
        validation(
            "!variables.hasNew || variables.newValid",
            &format!("the failover epoch annotation {key} must be a non-negative integer"),
            format!(
                "'failover epoch \"' + variables.newText + '\" is not a non-negative integer of at most 18 digits: the \
                 annotation {key} is a fencing token (the cluster is at epoch ' + variables.oldText + ')'"
            ),
        ),
        validation(
            "!variables.newValid || variables.newEpoch >= variables.oldEpoch",
            "the failover epoch is older than the cluster's: this writer was fenced by a newer failover",
            "'failover epoch ' + variables.newText + ' is older than the cluster\\'s ' + variables.oldText + \
             ': this writer was fenced by a newer failover'"
                .to_string(),
        ),
        validation(
            "!variables.newValid || !variables.replicaChanged || variables.newEpoch > variables.oldEpoch",
            "spec.replica may change only with a higher failover epoch",
            "'spec.replica changed at failover epoch ' + variables.newText + ' but the cluster is at epoch ' + \
             variables.oldText + ': only a newer failover (a strictly higher epoch) may change the primary'"
                .to_string(),
        ),
    ];
    ValidatingAdmissionPolicy {
        metadata: metadata(POLICY_NAME),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_string()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec!["postgresql.cnpg.io".to_string()]),
                    api_versions: Some(vec!["*".to_string()]),
                    operations: Some(vec!["UPDATE".to_string()]),
                    resources: Some(vec!["clusters".to_string()]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            match_conditions: Some(vec![
                MatchCondition { name: "old-object-has-epoch".to_string(), expression: has_old },
                MatchCondition { name: "old-epoch-is-valid".to_string(), expression: old_valid },
            ]),
            variables: Some(variables),
            validations: Some(validations),
            ..Default::default()
        }),
        status: None,
    }
}

/// The binding: [`POLICY_NAME`] denies in every namespace.
pub fn binding() -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: metadata(BINDING_NAME),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: POLICY_NAME.to_string(),
            validation_actions: vec!["Deny".to_string()],
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_updates_of_clusters_only() {
        let (policy, binding) = objects();
        let spec = policy.spec.unwrap();
        let rules = spec.match_constraints.unwrap().resource_rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resources.as_deref(), Some(&["clusters".to_string()][..]));
        assert_eq!(rules[0].operations.as_deref(), Some(&["UPDATE".to_string()][..]));
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let conditions = spec.match_conditions.unwrap();
        assert!(conditions.iter().all(|c| c.expression.contains(EPOCH_ANNOTATION)));
        let binding = binding.spec;
        assert_eq!(binding.policy_name, POLICY_NAME);
        assert_eq!(binding.validation_actions, ["Deny"]);
        assert!(binding.match_resources.is_none(), "every namespace");
    }

    #[test]
    fn every_validation_has_a_message() {
        for v in policy().spec.unwrap().validations.unwrap() {
            assert!(v.message.is_some_and(|m| !m.is_empty()) && v.message_expression.is_some(), "{}", v.expression);
        }
    }
}

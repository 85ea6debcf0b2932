//! A write the API server refused, told apart from one it could not answer.
//!
//! Contract: pure apart from [`own_stale_read`] (one read of the Mall). [`classify`] turns an API error into a [`Refusal`] when the server answered
//! with a verdict on the object (400, 403 or 422: admission, validation or authorization) and
//! `None` otherwise (unreachable, timed out, 5xx, conflict), and names who refused it: the
//! failover epoch fence ([`crate::build::fencing`]), a CloudNativePG admission webhook, or the API
//! server itself. A refusal is not a region failure: the other children are still applied, the
//! member is not backed off, and the Mall reports it as `Degraded` with [`Authority::reason`] and
//! a Warning Event of the same reason, naming the object, its region and the server's message.

use crate::build::fencing::POLICY_NAME;
use kube::ResourceExt;
use kube::api::Api;
use mall_crds::Mall;

/// Who refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Authority {
    /// The member cluster's failover epoch policy: the writer's view is older than the object's.
    EpochFence,
    /// A CloudNativePG admission webhook.
    CloudNativePg,
    /// The API server (schema validation, another admission plugin, authorization).
    ApiServer,
}

impl Authority {
    /// The condition and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Authority::EpochFence => "FencedByNewerEpoch",
            Authority::CloudNativePg => "RefusedByCloudNativePG",
            Authority::ApiServer => "WriteRefused",
        }
    }

    /// Who, in a sentence.
    pub fn who(self) -> &'static str {
        match self {
            Authority::EpochFence => "the failover epoch fence",
            Authority::CloudNativePg => "CloudNativePG's admission webhook",
            Authority::ApiServer => "the API server",
        }
    }
}

/// One refused write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `Kind/name`.
    pub object: String,
    /// Who refused it.
    pub authority: Authority,
    /// The server's message.
    pub message: String,
    /// The regions whose cluster refused it (set when targets are merged; empty for a Mall
    /// without regions).
    pub regions: Vec<String>,
}

impl Refusal {
    /// `Cluster/x in region eu refused by <who>: <message>`.
    pub fn describe(&self) -> String {
        let place = match self.regions.len() {
            0 => String::new(),
            1 => format!(" in region {}", self.regions[0]),
            _ => format!(" in regions {}", self.regions.join(", ")),
        };
        format!("{}{place} refused by {}: {}", self.object, self.authority.who(), self.message)
    }
}

/// The refusals grouped by reason (one Event each), their descriptions in order.
pub fn by_reason(refused: &[Refusal]) -> std::collections::BTreeMap<&'static str, Vec<String>> {
    let mut grouped: std::collections::BTreeMap<&'static str, Vec<String>> = std::collections::BTreeMap::new();
    for r in refused {
        grouped.entry(r.authority.reason()).or_default().push(r.describe());
    }
    grouped
}

/// The refusal `error` carries, if it is one (see the module header).
pub fn classify(object: String, error: &kube::Error) -> Option<Refusal> {
    let kube::Error::Api(status) = error else { return None };
    if !matches!(status.code, 400 | 403 | 422) {
        return None;
    }
    let message = status.message.clone();
    let authority = if message.contains(&format!("ValidatingAdmissionPolicy '{POLICY_NAME}'")) {
        Authority::EpochFence
    } else if message.contains("admission webhook") && message.contains("cnpg.io") {
        Authority::CloudNativePg
    } else {
        Authority::ApiServer
    };
    Some(Refusal { object, authority, message, regions: Vec::new() })
}

/// A refusal by the epoch fence while the Mall has meanwhile moved to a newer epoch is this
/// reconcile's own stale read (the failover controller raised the epoch after the Mall was
/// read), not a stale operator: such refusals are dropped and the reconcile is repeated soon
/// (`true`) with the new epoch. Any other refusal, or a fence refusal at the Mall's current
/// epoch (this operator's hub is behind the member clusters), is kept and reported.
pub async fn own_stale_read(
    ctx: &super::Context,
    mall: &Mall,
    namespace: &str,
    mut refused: Vec<Refusal>,
) -> (Vec<Refusal>, bool) {
    refused.sort_by(|a, b| (a.authority, &a.object).cmp(&(b.authority, &b.object)));
    if !refused.iter().any(|r| r.authority == Authority::EpochFence) {
        return (refused, false);
    }
    let epoch = |m: &Mall| crate::build::database::topology::Topology::of(m).map(|t| t.epoch);
    let api: Api<Mall> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get(&mall.name_any()).await {
        Ok(fresh) if epoch(&fresh) > epoch(mall) => {
            tracing::info!(mall = %mall.name_any(), read = ?epoch(mall), now = ?epoch(&fresh),
                "fenced writes from an older read of the Mall; reconciling again at the new epoch");
            refused.retain(|r| r.authority != Authority::EpochFence);
            (refused, true)
        }
        _ => (refused, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let status = serde_json::json!({"status": "Failure", "message": message, "reason": "Forbidden", "code": code});
        kube::Error::Api(serde_json::from_value(status).expect("a Status"))
    }

    #[test]
    fn refusals_are_named_by_who_refused() {
        let fence = api(
            403,
            "clusters.postgresql.cnpg.io \"shop-eu-db-0\" is forbidden: ValidatingAdmissionPolicy \
             'mallctl-failover-epoch' with binding 'mallctl-failover-epoch' denied request: failover epoch 4 is older",
        );
        let r = classify("Cluster/shop-eu-db-0".into(), &fence).expect("a refusal");
        assert_eq!(r.authority, Authority::EpochFence);
        assert_eq!(r.authority.reason(), "FencedByNewerEpoch");
        let cnpg = api(422, "admission webhook \"vcluster.cnpg.io\" denied the request: spec.replica.self: Invalid");
        assert_eq!(classify("Cluster/a".into(), &cnpg).map(|r| r.authority), Some(Authority::CloudNativePg));
        let schema = api(422, "Deployment.apps \"x\" is invalid: spec.replicas: Invalid value: -1");
        assert_eq!(classify("Deployment/x".into(), &schema).map(|r| r.authority), Some(Authority::ApiServer));
    }

    #[test]
    fn failures_to_answer_are_not_refusals() {
        assert_eq!(classify("Cluster/a".into(), &api(500, "etcdserver: request timed out")), None);
        assert_eq!(classify("Cluster/a".into(), &api(409, "conflict")), None);
        assert_eq!(classify("Cluster/a".into(), &api(401, "Unauthorized")), None);
    }

    #[test]
    fn a_refusal_says_where_and_why() {
        let r = Refusal {
            object: "Cluster/shop-eu-db-0".into(),
            authority: Authority::EpochFence,
            message: "failover epoch 4 is older than the cluster's 5".into(),
            regions: vec!["eu".into()],
        };
        assert_eq!(
            r.describe(),
            "Cluster/shop-eu-db-0 in region eu refused by the failover epoch fence: failover epoch 4 is older than the \
             cluster's 5"
        );
    }
}

//! The children of a Mall as typed objects: [`Child`] (one object, in the order the builders make
//! them) and [`ChildSet`] (the objects of one target cluster, one field per managed kind).
//!
//! Contract: pure. Every kind the operator manages is one variant of [`Child`] and one field of
//! [`ChildSet`], holding k8s-openapi types or the kopium types of `crate::{cnpg, gateway,
//! externaldns}`; `reconcile::kinds::MANAGED` lists the same kinds in field order (a test keeps
//! them equal, see [`field_kinds`]). A [`ChildSet`] comes in two forms: [`Desired`] (what the
//! builders made, `Vec<T>` per kind) and [`Live`] (what the cluster holds, JSON by object name per
//! kind). Apply, prune and status destructure the set without `..`, so a new field does not
//! compile until each of them handles it; helpers that treat every kind alike (counting, listing
//! the kinds) go through [`ChildSet::visit`]. [`Child::to_value`] serializes one child for
//! `mallctl render` (with `apiVersion` and `kind`).

use super::kinds::{self, KindsError};
use crate::cnpg::{Cluster, ObjectStore, Pooler, ScheduledBackup};
use crate::externaldns::DnsEndpoint;
use crate::gateway::HttpRoute;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// What a [`ChildSet`] holds per kind.
pub trait Form {
    /// The objects of kind `T`.
    type Of<T: Clone + Debug>: Clone + Debug + Default;
    /// How many objects `objects` holds.
    fn count<T: Clone + Debug>(objects: &Self::Of<T>) -> usize;
}

/// Built children: the typed objects, in build order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Desired;

impl Form for Desired {
    type Of<T: Clone + Debug> = Vec<T>;
    fn count<T: Clone + Debug>(objects: &Vec<T>) -> usize {
        objects.len()
    }
}

/// Live children: the cluster's JSON of each object, by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Live;

impl Form for Live {
    type Of<T: Clone + Debug> = BTreeMap<String, Value>;
    fn count<T: Clone + Debug>(objects: &BTreeMap<String, Value>) -> usize {
        objects.len()
    }
}

/// The children of one target cluster, one field per managed kind (in apply order).
#[derive(Clone, Debug, Default)]
pub struct ChildSet<F: Form = Desired> {
    /// `v1` Secrets.
    pub secrets: F::Of<Secret>,
    /// `v1` ConfigMaps.
    pub config_maps: F::Of<ConfigMap>,
    /// `v1` Services.
    pub services: F::Of<Service>,
    /// `networking.k8s.io/v1` NetworkPolicies.
    pub network_policies: F::Of<NetworkPolicy>,
    /// `policy/v1` PodDisruptionBudgets.
    pub pod_disruption_budgets: F::Of<PodDisruptionBudget>,
    /// Barman Cloud `ObjectStore`s.
    pub object_stores: F::Of<ObjectStore>,
    /// CloudNativePG `Cluster`s.
    pub clusters: F::Of<Cluster>,
    /// CloudNativePG `Pooler`s.
    pub poolers: F::Of<Pooler>,
    /// CloudNativePG `ScheduledBackup`s.
    pub scheduled_backups: F::Of<ScheduledBackup>,
    /// `apps/v1` StatefulSets.
    pub stateful_sets: F::Of<StatefulSet>,
    /// `apps/v1` Deployments.
    pub deployments: F::Of<Deployment>,
    /// `batch/v1` Jobs.
    pub jobs: F::Of<Job>,
    /// Gateway API `HTTPRoute`s.
    pub http_routes: F::Of<HttpRoute>,
    /// external-dns `DNSEndpoint`s.
    pub dns_endpoints: F::Of<DnsEndpoint>,
}

/// One child of any managed kind.
#[derive(Clone, Debug)]
pub enum Child {
    /// A Secret.
    Secret(Secret),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Service.
    Service(Service),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// A Barman Cloud `ObjectStore`.
    ObjectStore(ObjectStore),
    /// A CloudNativePG `Cluster`.
    Cluster(Box<Cluster>),
    /// A CloudNativePG `Pooler`.
    Pooler(Box<Pooler>),
    /// A CloudNativePG `ScheduledBackup`.
    ScheduledBackup(ScheduledBackup),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A Deployment.
    Deployment(Deployment),
    /// A Job.
    Job(Job),
    /// A Gateway API `HTTPRoute`.
    HttpRoute(HttpRoute),
    /// An external-dns `DNSEndpoint`.
    DnsEndpoint(DnsEndpoint),
}

macro_rules! child_from {
    ($($variant:ident($ty:ty) $(boxed $boxed:tt)?),* $(,)?) => {$(
        impl From<$ty> for Child {
            fn from(object: $ty) -> Self {
                Child::$variant(child_from!(@wrap object $($boxed)?))
            }
        }
    )*};
    (@wrap $object:ident) => { $object };
    (@wrap $object:ident $boxed:tt) => { Box::new($object) };
}

child_from!(
    Secret(Secret),
    ConfigMap(ConfigMap),
    Service(Service),
    NetworkPolicy(NetworkPolicy),
    PodDisruptionBudget(PodDisruptionBudget),
    ObjectStore(ObjectStore),
    Cluster(Cluster) boxed !,
    Pooler(Pooler) boxed !,
    ScheduledBackup(ScheduledBackup),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    Job(Job),
    HttpRoute(HttpRoute),
    DnsEndpoint(DnsEndpoint),
);

impl Child {
    /// The child as JSON with `apiVersion` and `kind`.
    pub fn to_value(&self) -> Result<Value, KindsError> {
        match self {
            Child::Secret(o) => kinds::resource_value(o),
            Child::ConfigMap(o) => kinds::resource_value(o),
            Child::Service(o) => kinds::resource_value(o),
            Child::NetworkPolicy(o) => kinds::resource_value(o),
            Child::PodDisruptionBudget(o) => kinds::resource_value(o),
            Child::ObjectStore(o) => kinds::resource_value(o),
            Child::Cluster(o) => kinds::resource_value(o.as_ref()),
            Child::Pooler(o) => kinds::resource_value(o.as_ref()),
            Child::ScheduledBackup(o) => kinds::resource_value(o),
            Child::StatefulSet(o) => kinds::resource_value(o),
            Child::Deployment(o) => kinds::resource_value(o),
            Child::Job(o) => kinds::resource_value(o),
            Child::HttpRoute(o) => kinds::resource_value(o),
            Child::DnsEndpoint(o) => kinds::resource_value(o),
        }
    }
}

impl ChildSet {
    /// Adds `child` to the field of its kind (after the objects already there).
    pub fn push(&mut self, child: Child) {
        match child {
            Child::Secret(o) => self.secrets.push(o),
            Child::ConfigMap(o) => self.config_maps.push(o),
            Child::Service(o) => self.services.push(o),
            Child::NetworkPolicy(o) => self.network_policies.push(o),
            Child::PodDisruptionBudget(o) => self.pod_disruption_budgets.push(o),
            Child::ObjectStore(o) => self.object_stores.push(o),
            Child::Cluster(o) => self.clusters.push(*o),
            Child::Pooler(o) => self.poolers.push(*o),
            Child::ScheduledBackup(o) => self.scheduled_backups.push(o),
            Child::StatefulSet(o) => self.stateful_sets.push(o),
            Child::Deployment(o) => self.deployments.push(o),
            Child::Job(o) => self.jobs.push(o),
            Child::HttpRoute(o) => self.http_routes.push(o),
            Child::DnsEndpoint(o) => self.dns_endpoints.push(o),
        }
    }
}

impl Extend<Child> for ChildSet {
    fn extend<I: IntoIterator<Item = Child>>(&mut self, children: I) {
        children.into_iter().for_each(|child| self.push(child));
    }
}

impl FromIterator<Child> for ChildSet {
    fn from_iter<I: IntoIterator<Item = Child>>(children: I) -> Self {
        let mut set = ChildSet::default();
        set.extend(children);
        set
    }
}

/// `(apiVersion, kind, plural)` of the kind `T`.
pub fn kind_of<T: kube::Resource<DynamicType = ()>>() -> (String, String, String) {
    (T::api_version(&()).into_owned(), T::kind(&()).into_owned(), T::plural(&()).into_owned())
}

/// `(apiVersion, kind, plural)` of every field of [`ChildSet`], in field order (what
/// `reconcile::kinds::MANAGED` must list).
pub fn field_kinds() -> Vec<(String, String, String)> {
    struct Kinds(Vec<(String, String, String)>);
    impl<F: Form> Visit<F> for Kinds {
        fn field<T: Kind>(&mut self, _: &F::Of<T>) {
            self.0.push(kind_of::<T>());
        }
    }
    let mut kinds = Kinds(Vec::new());
    ChildSet::<Desired>::default().visit(&mut kinds);
    kinds.0
}

/// What every managed kind is: a typed object with a static API resource.
pub trait Kind: kube::Resource<DynamicType = ()> + Clone + Debug {}

impl<T: kube::Resource<DynamicType = ()> + Clone + Debug> Kind for T {}

/// Looks at each field of a [`ChildSet`] in turn.
pub trait Visit<F: Form> {
    /// The objects of kind `T`.
    fn field<T: Kind>(&mut self, objects: &F::Of<T>);
}

impl<F: Form> ChildSet<F> {
    /// Shows `visit` every field, in field order.
    pub fn visit(&self, visit: &mut impl Visit<F>) {
        let ChildSet {
            secrets,
            config_maps,
            services,
            network_policies,
            pod_disruption_budgets,
            object_stores,
            clusters,
            poolers,
            scheduled_backups,
            stateful_sets,
            deployments,
            jobs,
            http_routes,
            dns_endpoints,
        } = self;
        visit.field::<Secret>(secrets);
        visit.field::<ConfigMap>(config_maps);
        visit.field::<Service>(services);
        visit.field::<NetworkPolicy>(network_policies);
        visit.field::<PodDisruptionBudget>(pod_disruption_budgets);
        visit.field::<ObjectStore>(object_stores);
        visit.field::<Cluster>(clusters);
        visit.field::<Pooler>(poolers);
        visit.field::<ScheduledBackup>(scheduled_backups);
        visit.field::<StatefulSet>(stateful_sets);
        visit.field::<Deployment>(deployments);
        visit.field::<Job>(jobs);
        visit.field::<HttpRoute>(http_routes);
        visit.field::<DnsEndpoint>(dns_endpoints);
    }

    /// How many objects the set holds.
    pub fn len(&self) -> usize {
        struct Count(usize);
        impl<F: Form> Visit<F> for Count {
            fn field<T: Kind>(&mut self, objects: &F::Of<T>) {
                self.0 += F::count(objects);
            }
        }
        let mut count = Count(0);
        self.visit(&mut count);
        count.0
    }

    /// Whether the set holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChildSet<Live> {
    /// The live set of objects listed by plural resource name (kinds absent from `by_plural`
    /// are empty).
    pub fn from_plurals(mut by_plural: BTreeMap<&str, BTreeMap<String, Value>>) -> Self {
        let mut take = |plural: String| by_plural.remove(plural.as_str()).unwrap_or_default();
        ChildSet {
            secrets: take(kind_of::<Secret>().2),
            config_maps: take(kind_of::<ConfigMap>().2),
            services: take(kind_of::<Service>().2),
            network_policies: take(kind_of::<NetworkPolicy>().2),
            pod_disruption_budgets: take(kind_of::<PodDisruptionBudget>().2),
            object_stores: take(kind_of::<ObjectStore>().2),
            clusters: take(kind_of::<Cluster>().2),
            poolers: take(kind_of::<Pooler>().2),
            scheduled_backups: take(kind_of::<ScheduledBackup>().2),
            stateful_sets: take(kind_of::<StatefulSet>().2),
            deployments: take(kind_of::<Deployment>().2),
            jobs: take(kind_of::<Job>().2),
            http_routes: take(kind_of::<HttpRoute>().2),
            dns_endpoints: take(kind_of::<DnsEndpoint>().2),
        }
    }
}

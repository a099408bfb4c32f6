//! The tenant controller: each agency gets an isolated, quota-bound home on the shared cluster.
//!
//! A reconcile reads the Tenant, every other Tenant and the Platform from caches;
//! [`validate`] checks the rules across objects; the quota ledger ([`crate::quota`]) decides how
//! much of its parent's quota it holds; [`build`] makes its namespaces, quotas, limit ranges,
//! network policies and role bindings, with no client; [`reconcile`] applies them by server-side
//! apply, prunes what is no longer wanted, scales Deployments for [`suspend`]ed tenants, and
//! writes the [`status`] computed from what it applied.
//!
//! Triggers: a Tenant's spec changing (a generation predicate: its own status writes do not
//! retrigger it); any owned object changing or vanishing (metadata watchers, so a deleted
//! NetworkPolicy or an edited ResourceQuota is repaired at once); the Platform changing (every
//! Tenant); a Tenant created or deleted (its parent and children); and explicit wake-ups between
//! parent and child when the quota ledger moves. Everything is resynced hourly as a safety net.

pub mod build;
pub mod census;
pub mod pacing;
pub mod reconcile;
pub mod status;
pub mod suspend;
pub mod validate;

#[cfg(test)]
mod fixtures;

use crate::settings::Settings;
use crate::tenancy::TenantObject;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use govpaas_crds::conditions::{HIERARCHY_VALID, QUOTA_EXCEEDED};
use govpaas_crds::platform::PLATFORM_NAME;
use govpaas_crds::{DataSharingService, DocumentService, Platform, Portal};
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self};
use kube::runtime::{WatchStreamExt, predicates};
use kube::{Client, Resource, ResourceExt};

use crate::certificates::published::TrustSubscriber;
use crate::quota::Ledger;
use crate::reconcile::events::Publisher;
use crate::reconcile::shared::{self, Subscription};
use crate::reconcile::triggers::Triggers;
use crate::reconcile::watch::Census;
use crate::reconcile::{conditions, labels, runner, watch};

/// The `app.kubernetes.io/component` of everything the tenant controller creates.
pub const COMPONENT: &str = "tenant";

/// Caches of what the tenant controller owns: metadata only, except ResourceQuotas, whose usage
/// goes into status.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub resource_quotas: Store<ResourceQuota>,
    pub limit_ranges: Store<PartialObjectMeta<LimitRange>>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    pub cluster_roles: Store<PartialObjectMeta<ClusterRole>>,
    pub cluster_role_bindings: Store<PartialObjectMeta<ClusterRoleBinding>>,
    /// The trust bundles it wrote.
    pub trust_bundles: Store<PartialObjectMeta<ConfigMap>>,
    /// The tenant CA Secrets, whole (a shared watch's cache, listed before the first reconcile):
    /// each reconcile loads its tenant's CA from here.
    pub ca_secrets: Store<Secret>,
    /// Every Portal, DocumentService and DataSharingService, counted by namespace: the tenant's
    /// service counts.
    pub portals: Census<Portal>,
    pub document_services: Census<DocumentService>,
    pub data_sharing_services: Census<DataSharingService>,
}

impl Caches {
    /// Waits until every cache has listed once. Call it from one task only: a store's readiness
    /// wakes a single waiter (kube-runtime's `DelayedInit` keeps one waker), so concurrent
    /// reconciles wait on [`Context::caches_ready`] instead. The Tenant store is not awaited here:
    /// the controller itself waits for it before the first reconcile, and a second waiter on it
    /// would leave one of the two asleep.
    pub async fn wait_until_ready(&self) -> bool {
        self.namespaces.wait_until_ready().await.is_ok()
            && self.limit_ranges.wait_until_ready().await.is_ok()
            && self.network_policies.wait_until_ready().await.is_ok()
            && self.role_bindings.wait_until_ready().await.is_ok()
            && self.cluster_roles.wait_until_ready().await.is_ok()
            && self.cluster_role_bindings.wait_until_ready().await.is_ok()
            && self.portals.wait_until_ready().await
            && self.document_services.wait_until_ready().await
            && self.data_sharing_services.wait_until_ready().await
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub tenants: Store<TenantObject>,
    pub platforms: Store<Platform>,
    pub caches: Caches,
    pub ledger: Arc<Mutex<Ledger>>,
    pub publisher: Publisher,
    pub status_writes: crate::reconcile::apply::StatusWrites,
    /// How often what a Tenant observes alone reaches its status.
    pub observation_pacing: pacing::ObservationPacing,
    /// Where each tenant CA loaded or issued is published, for the service controllers.
    pub tenant_cas: Arc<crate::certificates::tenant_cas::TenantCas>,
    /// What the tenant controller applied (objects already right are not applied again).
    pub applied: Arc<crate::reconcile::apply::AppliedObjects>,
    /// The tenant CA Secrets this controller wrote lately, served until its cache shows them.
    pub known_cas: crate::reconcile::known::KnownObjects<Secret>,
    /// Turns `true` once every cache has listed (see [`Caches::wait_until_ready`]).
    pub caches_ready: tokio::sync::watch::Receiver<bool>,
    /// The platform trust the trust controller publishes.
    pub trust: TrustSubscriber,
    wake: UnboundedSender<ObjectRef<TenantObject>>,
}

impl Context {
    /// Asks for `tenant` to be reconciled again soon.
    pub fn wake(&self, tenant: &str) {
        // Fails only when the controller is shutting down: nothing left to wake then.
        let _ = self.wake.unbounded_send(ObjectRef::new(tenant));
    }

    /// Asks for `tenant` to be reconciled again after `wait`.
    pub fn wake_after(&self, tenant: &str, wait: std::time::Duration) {
        let wake = self.wake.clone();
        let tenant = ObjectRef::new(tenant);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = wake.unbounded_send(tenant);
        });
    }

    /// Wakes the children of `parent` whose quota was refused: room may have been made.
    pub fn wake_refused_children(&self, parent: &str) {
        for name in refused_children(&self.tenants, parent) {
            self.wake(&name);
        }
    }

    /// The Platform, if it exists.
    pub fn platform(&self) -> Option<Arc<Platform>> {
        self.platforms.get(&ObjectRef::new(PLATFORM_NAME))
    }

    /// Locks the quota ledger (never held across an `.await`).
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Wakes the Tenants a watch event concerns besides itself: on a new or changed spec, its parent
/// and children (a parent re-created under orphans adopts them); on a deletion, also the Tenants
/// whose tree was invalid (a freed agency code or namespace), and the ledger forgets it.
struct Relations {
    tenants: Store<TenantObject>,
    ledger: Arc<Mutex<Ledger>>,
    wake: UnboundedSender<ObjectRef<TenantObject>>,
    generations: HashMap<String, Option<i64>>,
    /// A deleted Tenant's CA leaves the certificate gauges (its Secret goes with it).
    settings: Settings,
}

impl Relations {
    fn observe(&mut self, event: &watcher::Event<TenantObject>) {
        match event {
            watcher::Event::InitApply(object) => {
                self.generations.insert(uid(object), object.meta().generation);
            }
            watcher::Event::Apply(object) => {
                let previous = self.generations.insert(uid(object), object.meta().generation);
                if previous != Some(object.meta().generation) {
                    self.wake_family(object);
                }
            }
            watcher::Event::Delete(object) => {
                self.generations.remove(&uid(object));
                {
                    let mut ledger = self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    ledger.forget(&object.name_any());
                }
                let secret = crate::certificates::ca_secrets::tenant_ca_secret_name(&object.name_any());
                let namespace = &self.settings.operator_namespace;
                let key = crate::certificates::ca_secrets::ca_gauge_key(namespace, &secret, "tenant-ca");
                self.settings.telemetry.certificates.forget(&key);
                self.wake_family(object);
                if let Ok(tenant) = &object.0
                    && let Some(parent) = &tenant.spec.parent
                {
                    // Its quota is free again.
                    for name in refused_children(&self.tenants, parent) {
                        self.send(&name);
                    }
                }
                for other in self.tenants.state() {
                    let invalid = other.0.as_ref().ok().and_then(|t| t.status.as_ref()).is_some_and(|s| {
                        conditions::find(&s.conditions, HIERARCHY_VALID).is_some_and(|c| c.status == conditions::FALSE)
                    });
                    if invalid {
                        self.send(&other.name_any());
                    }
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn wake_family(&self, object: &TenantObject) {
        let name = object.name_any();
        if let Ok(tenant) = &object.0
            && let Some(parent) = &tenant.spec.parent
        {
            self.send(parent);
        }
        for child in self.tenants.state() {
            if child.0.as_ref().ok().and_then(|c| c.spec.parent.as_deref()) == Some(name.as_str()) {
                self.send(&child.name_any());
            }
        }
    }

    fn send(&self, name: &str) {
        let _ = self.wake.unbounded_send(ObjectRef::new(name));
    }
}

/// The children of `parent` whose status says their quota did not fit.
fn refused_children(tenants: &Store<TenantObject>, parent: &str) -> Vec<String> {
    tenants
        .state()
        .iter()
        .filter_map(|t| t.0.as_ref().ok())
        .filter(|t| t.spec.parent.as_deref() == Some(parent))
        .filter(|t| t.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, QUOTA_EXCEEDED)))
        .map(|t| t.name_any())
        .collect()
}

fn uid(object: &TenantObject) -> String {
    object.meta().uid.clone().unwrap_or_else(|| object.name_any())
}

/// Maps an owned object to the cluster-scoped Tenants in `tenants` that own it (kube's `owns`
/// keeps a namespaced child's namespace in the owner's reference, which never matches a
/// cluster-scoped Tenant). Owners outside this operator's cache (another scope) are skipped.
fn owning_tenants<K: Resource>(tenants: Store<TenantObject>) -> impl Fn(K) -> Vec<ObjectRef<TenantObject>> {
    let api_version = format!("{}/{}", govpaas_crds::GROUP, govpaas_crds::VERSION);
    move |object: K| {
        object
            .meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|owner| owner.kind == "Tenant" && owner.api_version == api_version)
            .map(|owner| ObjectRef::new(&owner.name))
            .filter(|owner| tenants.get(owner).is_some())
            .collect()
    }
}

/// Maps a service (a Portal, DocumentService or DataSharingService) to the Tenant that owns its
/// namespace, by the one rule of [`crate::tenancy::tenant_of_namespace`].
fn tenant_of_service<K: Resource>(
    namespaces: Store<PartialObjectMeta<Namespace>>,
    tenants: Store<TenantObject>,
) -> impl Fn(K) -> Option<ObjectRef<TenantObject>> {
    move |object: K| {
        let name = object.meta().namespace.as_deref()?;
        let namespace = namespaces.get(&ObjectRef::new(name))?;
        let all = tenants.state();
        let readable = all.iter().filter_map(|tenant| tenant.0.as_ref().ok());
        let tenant = crate::tenancy::tenant_of_namespace(name, namespace.metadata.labels.as_ref(), readable)?;
        Some(ObjectRef::new(&tenant.name_any()))
    }
}

/// Maps any change to every Tenant in `tenants` (a Platform change, a step of a CA rotation).
fn every_tenant<T>(tenants: Store<TenantObject>) -> impl Fn(T) -> Vec<ObjectRef<TenantObject>> {
    move |_| tenants.state().iter().map(|tenant| ObjectRef::from_obj(tenant.as_ref())).collect()
}

/// What the tenant controller reads from the watches it shares with other controllers
/// (`reconcile::shared`): the composition root subscribes it.
pub struct SharedInputs {
    pub tenants: Subscription<TenantObject>,
    pub platforms: Subscription<Platform>,
    /// The platform trust the trust controller publishes: what tenant CAs are issued with, and
    /// every step of a CA rotation changes the bundle each tenant's namespaces must carry.
    pub trust: TrustSubscriber,
    /// The ResourceQuotas it writes (their usage goes into status).
    pub resource_quotas: Subscription<ResourceQuota>,
    /// Where it publishes each tenant CA it loads or issues, for the service controllers.
    pub tenant_cas: Arc<crate::certificates::tenant_cas::TenantCas>,
    /// The tenant CA Secrets (it is their one writer): each reconcile loads its tenant's CA from
    /// this cache, and a Secret deleted or edited by hand wakes its Tenant, which issues it again.
    pub ca_secrets: Subscription<Secret>,
}

/// Runs the tenant controller until shutdown.
pub async fn run(client: Client, settings: Settings, shared: SharedInputs) {
    let SharedInputs {
        tenants: tenant_subscription,
        platforms,
        trust,
        resource_quotas: quota_subscription,
        tenant_cas,
        ca_secrets: ca_secret_subscription,
    } = shared;
    let (wake, woken) = unbounded();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let tenants = tenant_subscription.store.clone();
    let tenants_listed = tenant_subscription.listed.clone();
    let mut relations = Relations {
        tenants: tenants.clone(),
        ledger: ledger.clone(),
        wake: wake.clone(),
        generations: HashMap::new(),
        settings: settings.clone(),
    };
    let tenant_stream = tenant_subscription
        .events
        .flat_map(move |event| {
            relations.observe(&event);
            futures::stream::iter(shared::touched(event).map(Ok::<_, watcher::Error>))
        })
        .predicate_filter(predicates::generation, Default::default());

    let platforms_listed = platforms.listed.clone();
    let platform_store = platforms.store.clone();
    let platform_stream = platforms.touched().predicate_filter(predicates::generation, Default::default());
    let trust_stream = trust.changes();
    let quotas_listed = quota_subscription.listed.clone();
    let resource_quotas = quota_subscription.store.clone();
    let quota_stream = quota_subscription.touched();

    let owned = labels::component_selector(COMPONENT);
    let (namespaces, namespace_stream) = watch::metadata_cache::<Namespace>(client.clone(), &owned);
    let (limit_ranges, limit_range_stream) = watch::metadata_cache::<LimitRange>(client.clone(), &owned);
    let (network_policies, policy_stream) = watch::metadata_cache::<NetworkPolicy>(client.clone(), &owned);
    let (role_bindings, binding_stream) = watch::metadata_cache::<RoleBinding>(client.clone(), &owned);
    let (cluster_roles, cluster_role_stream) = watch::metadata_cache::<ClusterRole>(client.clone(), &owned);
    let (cluster_role_bindings, cluster_binding_stream) =
        watch::metadata_cache::<ClusterRoleBinding>(client.clone(), &owned);
    // Trust bundles are never pruned, so nothing reads their cache: the watch only brings a
    // hand-edited or deleted bundle back at once (agency admins may edit ConfigMaps).
    let (trust_bundles, trust_bundle_stream) = watch::metadata_cache::<ConfigMap>(client.clone(), &owned);
    let ca_secrets = ca_secret_subscription.store.clone();
    let ca_secrets_listed = ca_secret_subscription.listed.clone();
    let ca_secret_stream = ca_secret_subscription.touched();

    let (portals, portal_stream) = watch::census::<Portal>(client.clone());
    let (document_services, document_stream) = watch::census::<DocumentService>(client.clone());
    let (data_sharing_services, data_sharing_stream) = watch::census::<DataSharingService>(client.clone());

    // Every watch but the Tenant watch wakes Tenants from a task of its own (`reconcile::triggers`).
    let (mut triggers, changed) = Triggers::<TenantObject>::new(COMPONENT);
    triggers.watch("Namespace", namespace_stream, owning_tenants(tenants.clone()));
    triggers.watch("ResourceQuota", quota_stream, owning_tenants(tenants.clone()));
    triggers.watch("LimitRange", limit_range_stream, owning_tenants(tenants.clone()));
    triggers.watch("NetworkPolicy", policy_stream, owning_tenants(tenants.clone()));
    triggers.watch("RoleBinding", binding_stream, owning_tenants(tenants.clone()));
    triggers.watch("ClusterRole", cluster_role_stream, owning_tenants(tenants.clone()));
    triggers.watch("ClusterRoleBinding", cluster_binding_stream, owning_tenants(tenants.clone()));
    triggers.watch("trust bundle", trust_bundle_stream, owning_tenants(tenants.clone()));
    triggers.watch("tenant CA Secret", ca_secret_stream, owning_tenants(tenants.clone()));
    triggers.watch("Portal", portal_stream, tenant_of_service(namespaces.clone(), tenants.clone()));
    triggers.watch("DocumentService", document_stream, tenant_of_service(namespaces.clone(), tenants.clone()));
    triggers.watch("DataSharingService", data_sharing_stream, tenant_of_service(namespaces.clone(), tenants.clone()));
    triggers.watch("Platform", platform_stream, every_tenant(tenants.clone()));
    triggers.watch("platform trust", trust_stream, every_tenant(tenants.clone()));
    let clock = runner::QueueClock::default();
    let controller = Controller::for_stream(clock.watched(tenant_stream), tenants.clone())
        .reconcile_on(clock.woken(futures::stream::select(woken, changed)));

    let caches = Caches {
        namespaces,
        resource_quotas,
        limit_ranges,
        network_policies,
        role_bindings,
        cluster_roles,
        cluster_role_bindings,
        trust_bundles,
        ca_secrets,
        portals,
        document_services,
        data_sharing_services,
    };
    let (ready_tx, caches_ready) = tokio::sync::watch::channel(false);
    {
        let caches = caches.clone();
        let trust_settled = trust.clone();
        tokio::spawn(async move {
            if caches.wait_until_ready().await
                && trust_settled.settled().await
                && platforms_listed.wait().await
                && quotas_listed.wait().await
                && ca_secrets_listed.wait().await
                && tenants_listed.wait().await
            {
                tracing::info!(controller = COMPONENT, "caches ready");
                let _ = ready_tx.send(true);
            }
        });
    }
    let context = Arc::new(Context {
        publisher: Publisher::new(client.clone(), settings.instance.clone()),
        client,
        tenants,
        platforms: platform_store,
        caches,
        caches_ready,
        ledger,
        status_writes: Default::default(),
        observation_pacing: Default::default(),
        applied: Default::default(),
        known_cas: Default::default(),
        tenant_cas,
        trust,
        wake,
        settings: settings.clone(),
    });
    let telemetry = settings.telemetry.clone();
    let synced = {
        let mut ready = context.caches_ready.clone();
        async move { ready.wait_for(|ready| *ready).await.is_ok() }
    };
    runner::run("tenant", controller, clock, settings.concurrency, &telemetry, synced, reconcile::reconcile, context)
        .await;
    drop(triggers);
}

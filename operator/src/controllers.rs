//! The composition root: the only module that names every controller and starts them, and that
//! routes the changes of one kind to the controllers they concern. No controller module imports
//! another (`tests::controllers_never_import_each_other` checks it).
//!
//! - `trust` (the Platform's CA and its rotation) and `tenant` (Tenants) run with their own watches;
//! - the service controllers (`portal`, `document`, `data_sharing`) share the caches of
//!   `crate::service::runtime::Shared`, filled here by one watch per kind, whose events are fanned
//!   out as explicit wake-ups: a Tenant (suspended, resumed, domain) or a namespace to the services
//!   in its namespaces, and a namespace naming an agency for the first time to the
//!   DataSharingServices consuming from that agency and the agency's exchanging DocumentServices;
//!   a ResourceQuota (usage freed) to the services in its namespace; the Platform
//!   and a change of the platform trust the trust controller publishes
//!   (`crate::certificates::published`) to every service; a service deleted or changed to the services held
//!   back by a host conflict or by quota, which may now fit; a DataSharingService to the ones its
//!   grants concern (`crate::data_sharing::triggers`).

use std::collections::HashMap;
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{StreamExt, TryStreamExt};
use govpaas_crds::Platform;
use govpaas_crds::conditions::{READY, reasons};
use govpaas_crds::metadata::TENANT_LABEL;
use govpaas_crds::platform::PLATFORM_NAME;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::watcher::{self};
use kube::runtime::{WatchStreamExt, predicates};
use kube::{Api, Client, Resource, ResourceExt};

use crate::certificates::published::TrustSubscriber;
use crate::data_sharing::triggers;
use crate::reconcile::events::Publisher;
use crate::reconcile::shared::{self, SharedWatch, Subscription};
use crate::reconcile::{conditions, labels, watch};
use crate::service::pipeline;
use crate::service::runtime::{DataSharingObject, DocumentObject, Listed, PortalObject, ServiceWatch, Shared};
use crate::settings::Settings;
use crate::tenancy::TenantObject;

/// Runs every controller until shutdown (SIGTERM: each finishes the reconciles in flight).
pub async fn run(client: Client, settings: Settings) {
    // The kinds several controllers read are watched once each (`reconcile::shared`).
    let platform_config = watch::config().fields(&format!("metadata.name={PLATFORM_NAME}"));
    let mut platforms = SharedWatch::new("Platform", Api::<Platform>::all(client.clone()), platform_config);
    let trust_config = crate::certificates::trust_store::watch_config(&settings.operator_namespace);
    let mut trust = SharedWatch::new("trust ConfigMap", Api::<ConfigMap>::all(client.clone()), trust_config);
    let mut tenant_config = watch::config();
    if let Some(selector) = &settings.tenant_selector {
        tenant_config = tenant_config.labels(selector);
    }
    let mut tenants = SharedWatch::new("Tenant", Api::<TenantObject>::all(client.clone()), tenant_config);
    // Quota per tenant is read from this cache when /metrics is scraped.
    settings.telemetry.tenant_quota.read_from(tenants.store());
    // Only the quotas the tenant controller writes (agency admins cannot create others): not every
    // ResourceQuota of the cluster.
    let quota_config = watch::config().labels(&labels::component_selector(crate::tenant::COMPONENT));
    let mut quotas = SharedWatch::new("ResourceQuota", Api::<ResourceQuota>::all(client.clone()), quota_config);

    // The trust controller is the one reader of the platform CA: it publishes the platform trust
    // to the tenant and service controllers, whose changes wake them.
    let (trust_publisher, platform_trust) = crate::certificates::published::channel();
    let trust_controller = crate::trust::run(
        client.clone(),
        settings.clone(),
        platforms.subscribe(),
        trust.subscribe(),
        trust_publisher,
        tenants.store(),
    );
    // The tenant CAs the tenant controller loads, which the service controllers issue with; their
    // Secrets, which the tenant controller writes and both read (the services only until the
    // tenant controller has loaded a CA in this process).
    let tenant_cas = Arc::new(crate::certificates::tenant_cas::TenantCas::default());
    let ca_config = watch::config().labels(&labels::component_selector(crate::certificates::ca_secrets::COMPONENT));
    let ca_api = Api::<Secret>::namespaced(client.clone(), &settings.operator_namespace);
    let mut ca_secrets = SharedWatch::new("tenant CA Secret", ca_api, ca_config);
    let tenant_inputs = crate::tenant::SharedInputs {
        tenants: tenants.subscribe(),
        platforms: platforms.subscribe(),
        trust: platform_trust.clone(),
        resource_quotas: quotas.subscribe(),
        tenant_cas: tenant_cas.clone(),
        ca_secrets: ca_secrets.subscribe(),
    };
    let tenant_controller = crate::tenant::run(client.clone(), settings.clone(), tenant_inputs);
    let service_inputs = ServiceInputs {
        platforms: platforms.subscribe(),
        trust: platform_trust,
        tenants: tenants.subscribe(),
        quotas: quotas.subscribe(),
        tenant_cas,
        ca_secrets: ca_secrets.subscribe(),
    };
    // The Platform's tenant count: only an operator that sees every Tenant counts them.
    let census = settings
        .tenant_selector
        .is_none()
        .then(|| crate::tenant::census::run(client.clone(), tenants.subscribe(), platforms.subscribe()));
    // It stops with the controllers (dropped at shutdown), and never ends by itself before them.
    let census = async {
        match census {
            Some(census) => census.await,
            None => std::future::pending().await,
        }
    };
    let services = run_services(client, settings, service_inputs);
    // The shared watches end only when every subscriber has gone, the controllers on SIGTERM.
    let watches = async {
        tokio::join!(platforms.run(), trust.run(), tenants.run(), quotas.run(), ca_secrets.run());
    };
    tokio::select! {
        _ = async { tokio::join!(trust_controller, tenant_controller, services) } => {}
        () = census => {}
        () = watches => {}
    }
}

/// What of a Tenant its services depend on: its spec (generation), its domain and its CA.
#[derive(Clone, PartialEq, Eq)]
struct TenantSeen {
    generation: Option<i64>,
    domain: Option<String>,
    ca_serial: Option<String>,
}

/// What the service controllers read from the shared watches.
struct ServiceInputs {
    platforms: Subscription<Platform>,
    trust: TrustSubscriber,
    tenants: Subscription<TenantObject>,
    quotas: Subscription<ResourceQuota>,
    tenant_cas: Arc<crate::certificates::tenant_cas::TenantCas>,
    ca_secrets: Subscription<Secret>,
}

/// Runs `on_change` for each object `subscription` touches, recording in `listed` when its watch
/// has listed; poll it or the fan-out sees nothing.
fn follow<K>(
    subscription: Subscription<K>,
    cache: &'static str,
    listed: &Listed,
    mut on_change: impl FnMut(&K) + Send + 'static,
) -> (Store<K>, impl futures::Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let Subscription { store, events, .. } = subscription;
    let listed = listed.clone();
    let task = events.for_each(move |event| {
        listed.observe(cache, &event);
        if let Some(object) = shared::touched(event) {
            on_change(&object);
        }
        futures::future::ready(())
    });
    (store, task)
}

/// Where wake-ups go.
#[derive(Clone)]
struct Wakers {
    portals: UnboundedSender<ObjectRef<PortalObject>>,
    documents: UnboundedSender<ObjectRef<DocumentObject>>,
    data_sharing: UnboundedSender<ObjectRef<DataSharingObject>>,
}

/// Whether a service is held back by something another service may release.
fn is_blocked(conditions: &[Condition]) -> bool {
    conditions::find(conditions, READY).is_some_and(|c| {
        c.status == conditions::FALSE && (c.reason == reasons::HOST_CONFLICT || c.reason == reasons::QUOTA_EXCEEDED)
    })
}

/// Sends wake-ups for the services that an object's change concerns.
struct Fanout {
    portals: Store<PortalObject>,
    documents: Store<DocumentObject>,
    data_sharing: Store<DataSharingObject>,
    /// Tenant namespaces: a DataSharingService's agency is its namespace's agency-code label.
    namespaces: Store<PartialObjectMeta<Namespace>>,
    wakers: Wakers,
    /// Each service's last seen generation, to tell a spec change from a status write.
    generations: HashMap<String, Option<i64>>,
    /// Each DataSharingService's last seen generation and the agencies its grants involve.
    sharing: HashMap<String, (Option<i64>, std::collections::BTreeSet<String>)>,
    route_tables_orphaned: Arc<tokio::sync::Notify>,
    /// Each DocumentService's last seen generation and whether its exchange was enabled.
    exchanging: HashMap<String, (Option<i64>, bool)>,
    exchange_tables_orphaned: Arc<tokio::sync::Notify>,
    /// Each tenant namespace's agency (normalised), as last seen.
    agencies: HashMap<String, Option<String>>,
}

impl Fanout {
    /// Wakes every service in the namespaces `wanted` accepts.
    fn wake_where(&self, wanted: impl Fn(&str) -> bool) {
        self.wake_workloads_where(&wanted);
        for service in self.data_sharing.state() {
            if service.namespace().is_some_and(|ns| wanted(&ns)) {
                let _ = self.wakers.data_sharing.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }

    /// Wakes the Portals and DocumentServices (what runs Pods, and so depends on ResourceQuotas) in
    /// the namespaces `wanted` accepts.
    fn wake_workloads_where(&self, wanted: impl Fn(&str) -> bool) {
        for portal in self.portals.state() {
            if portal.namespace().is_some_and(|ns| wanted(&ns)) {
                let _ = self.wakers.portals.unbounded_send(ObjectRef::from_obj(portal.as_ref()));
            }
        }
        for service in self.documents.state() {
            if service.namespace().is_some_and(|ns| wanted(&ns)) {
                let _ = self.wakers.documents.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }

    fn wake_blocked(&self) {
        for portal in self.portals.state() {
            if portal.0.as_ref().ok().and_then(|p| p.status.as_ref()).is_some_and(|s| is_blocked(&s.conditions)) {
                let _ = self.wakers.portals.unbounded_send(ObjectRef::from_obj(portal.as_ref()));
            }
        }
        for service in self.documents.state() {
            if service.0.as_ref().ok().and_then(|d| d.status.as_ref()).is_some_and(|s| is_blocked(&s.conditions)) {
                let _ = self.wakers.documents.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }

    /// A service changed: when its spec changed or it went away, the blocked ones may now fit.
    fn service_event<K: Resource>(&mut self, event: &watcher::Event<K>) {
        let key = |object: &K| object.meta().uid.clone().unwrap_or_default();
        match event {
            watcher::Event::InitApply(object) => {
                self.generations.insert(key(object), object.meta().generation);
            }
            watcher::Event::Apply(object) => {
                let previous = self.generations.insert(key(object), object.meta().generation);
                if previous != Some(object.meta().generation) {
                    self.wake_blocked();
                }
            }
            watcher::Event::Delete(object) => {
                self.generations.remove(&key(object));
                self.wake_blocked();
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// A DocumentService changed its spec or went away: when its exchange is or was enabled, the
    /// other exchange-enabled DocumentServices of its agency and name look again (which of them
    /// holds the endpoint may change; no other's route table depends on it). A deleted one's route
    /// table is swept.
    fn document_event(&mut self, event: &watcher::Event<DocumentObject>) {
        let key = |object: &DocumentObject| object.meta().uid.clone().unwrap_or_default();
        let enabled = |object: &DocumentObject| object.0.as_ref().is_ok_and(|d| d.spec.exchange.enabled);
        let (object, deleted) = match event {
            watcher::Event::InitApply(object) => {
                self.exchanging.insert(key(object), (object.meta().generation, enabled(object)));
                return;
            }
            watcher::Event::Apply(object) => (object, false),
            watcher::Event::Delete(object) => (object, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let now = enabled(object) && !deleted;
        let previous = if deleted {
            self.exchanging.remove(&key(object))
        } else {
            self.exchanging.insert(key(object), (object.meta().generation, now))
        };
        if deleted {
            self.exchange_tables_orphaned.notify_one();
        }
        let unchanged = previous.is_some_and(|(generation, _)| generation == object.meta().generation) && !deleted;
        let was = previous.is_some_and(|(_, enabled)| enabled);
        if unchanged || !(now || was) {
            return;
        }
        let name = object.name_any();
        let agency = object.namespace().and_then(|namespace| self.agency_of(&namespace));
        for service in self.documents.state() {
            let namesake = service.meta().uid != object.meta().uid
                && service.name_any() == name
                && service.namespace().and_then(|namespace| self.agency_of(&namespace)) == agency;
            if namesake && service.0.as_ref().is_ok_and(|d| d.spec.exchange.enabled) {
                let _ = self.wakers.documents.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }

    /// A tenant namespace changed: its services look again. When it names an agency it did not
    /// name before (an agency arriving, or its namespace seen only now), the DataSharingServices
    /// consuming from that agency and the agency's exchange-enabled DocumentServices look again
    /// too: a grant decided before the namespace was in this cache said the agency was not on the
    /// platform, and nothing else would wake it (the provider's own services may have changed
    /// before the namespace was seen). Not on the first list: every service is reconciled at start
    /// anyway.
    fn namespace_event(&mut self, event: &watcher::Event<PartialObjectMeta<Namespace>>) {
        let (namespace, listing) = match event {
            watcher::Event::InitApply(namespace) => (namespace, true),
            watcher::Event::Apply(namespace) | watcher::Event::Delete(namespace) => (namespace, false),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let name = namespace.name_any();
        self.wake_where(|ns| ns == name);
        let agency = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(govpaas_crds::metadata::AGENCY_CODE_LABEL))
            .map(|code| govpaas_crds::agency::normalise(code));
        let before = self.agencies.insert(name, agency.clone()).flatten();
        let Some(agency) = agency else { return };
        if listing || before.as_ref() == Some(&agency) {
            return;
        }
        for service in self.data_sharing.state() {
            let consumes_from_it = service.0.as_ref().is_ok_and(|s| {
                s.spec
                    .consumes
                    .iter()
                    .any(|c| c.agency_code.as_deref().map(govpaas_crds::agency::normalise).as_ref() == Some(&agency))
            });
            if consumes_from_it {
                let _ = self.wakers.data_sharing.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
        // The same for document exchange: the agency's exchange-enabled DocumentServices in its
        // other namespaces may now have a namesake to list.
        for service in self.documents.state() {
            let exchanging = service.0.as_ref().is_ok_and(|d| d.spec.exchange.enabled);
            if exchanging && service.namespace().and_then(|ns| self.agency_of(&ns)).as_ref() == Some(&agency) {
                let _ = self.wakers.documents.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }

    /// The agency (normalised) of the DataSharingServices in `namespace`, from its label.
    fn agency_of(&self, namespace: &str) -> Option<String> {
        let labels = self.namespaces.get(&ObjectRef::new(namespace))?.metadata.labels.clone()?;
        labels.get(govpaas_crds::metadata::AGENCY_CODE_LABEL).map(|code| govpaas_crds::agency::normalise(code))
    }

    /// A DataSharingService changed its spec or went away: the ones its grants concern look
    /// again (the rules: `crate::data_sharing::triggers`). A deleted one's route table is swept.
    fn data_sharing_event(&mut self, event: &watcher::Event<DataSharingObject>) {
        let key = |object: &DataSharingObject| object.meta().uid.clone().unwrap_or_default();
        let (object, deleted) = match event {
            watcher::Event::InitApply(object) => {
                let own = object.namespace().and_then(|ns| self.agency_of(&ns));
                self.sharing.insert(key(object), (object.meta().generation, triggers::involved_agencies(object, own)));
                return;
            }
            watcher::Event::Apply(object) => (object, false),
            watcher::Event::Delete(object) => (object, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let own = object.namespace().and_then(|ns| self.agency_of(&ns));
        let now = triggers::involved_agencies(object, own.clone());
        let previous = if deleted {
            self.sharing.remove(&key(object))
        } else {
            self.sharing.insert(key(object), (object.meta().generation, now.clone()))
        };
        if !deleted && previous.as_ref().map(|(generation, _)| *generation) == Some(object.meta().generation) {
            return;
        }
        if deleted {
            self.route_tables_orphaned.notify_one();
        }
        let mut agencies = now;
        agencies.extend(previous.map(|(_, before)| before).unwrap_or_default());
        let services = self.data_sharing.state();
        for service in triggers::to_wake(object, own.as_ref(), &agencies, &services, |ns| self.agency_of(ns)) {
            let _ = self.wakers.data_sharing.unbounded_send(service);
        }
    }
}

/// Locks the fan-out (never held across an `.await`). A panic elsewhere cannot leave its map
/// half-updated in a way that matters: at worst one wake-up too many.
fn lock(fanout: &std::sync::Mutex<Fanout>) -> std::sync::MutexGuard<'_, Fanout> {
    fanout.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the Portal, DocumentService and DataSharingService controllers, and the watches whose
/// changes wake them, until shutdown.
async fn run_services(client: Client, settings: Settings, inputs: ServiceInputs) {
    let (portal_wake, portal_woken) = unbounded();
    let (document_wake, document_woken) = unbounded();
    let (data_sharing_wake, data_sharing_woken) = unbounded();
    let wakers = Wakers { portals: portal_wake, documents: document_wake, data_sharing: data_sharing_wake };

    let (listed_tx, listed_rx) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
    let listed = Listed(listed_tx);
    let (portals, portal_writer) = reflector::store::<PortalObject>();
    let (documents, document_writer) = reflector::store::<DocumentObject>();
    let (data_sharing, data_sharing_writer) = reflector::store::<DataSharingObject>();
    let (namespaces, namespace_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let route_tables_orphaned = Arc::new(tokio::sync::Notify::new());
    let exchange_tables_orphaned = Arc::new(tokio::sync::Notify::new());
    let fanout = Arc::new(std::sync::Mutex::new(Fanout {
        portals: portals.clone(),
        documents: documents.clone(),
        data_sharing: data_sharing.clone(),
        namespaces: namespaces.clone(),
        wakers: wakers.clone(),
        generations: HashMap::new(),
        sharing: HashMap::new(),
        route_tables_orphaned: route_tables_orphaned.clone(),
        exchanging: HashMap::new(),
        exchange_tables_orphaned: exchange_tables_orphaned.clone(),
        agencies: HashMap::new(),
    }));

    // Services read the Platform's spec only: its status (written on every step of a CA rotation)
    // wakes nobody.
    let wake_all = {
        let fanout = fanout.clone();
        let mut seen = None;
        move |platform: &Platform| {
            if seen.replace(platform.meta().generation) != Some(platform.meta().generation) {
                lock(&fanout).wake_where(|_| true);
            }
        }
    };
    let (platforms, platform_task) = follow(inputs.platforms, "Platform", &listed, wake_all);
    // Every step of a CA rotation changes the published trust: which CA issues, which bundle is
    // handed out. Every service looks again.
    let trust_task = {
        let fanout = fanout.clone();
        inputs.trust.changes().for_each(move |_| {
            lock(&fanout).wake_where(|_| true);
            futures::future::ready(())
        })
    };

    let known_tenants = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let wake_tenant = {
        let fanout = fanout.clone();
        let known = known_tenants.clone();
        // What of a Tenant its services read and its status may change: the domain, and its CA
        // (issued or renewed by the tenant controller, its one writer: the services wait for it).
        // The rest they read is spec (a new generation). Its other status writes (usage) wake nobody.
        let mut seen: HashMap<String, TenantSeen> = HashMap::new();
        move |tenant: &TenantObject| {
            known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(tenant.name_any());
            let status = tenant.0.as_ref().ok().and_then(|t| t.status.as_ref());
            let domain = status.and_then(|s| s.domain.clone());
            let ca = status.and_then(|s| s.ca.as_ref()).and_then(|ca| ca.serial.clone());
            let now = TenantSeen { generation: tenant.meta().generation, domain, ca_serial: ca };
            if seen.insert(tenant.meta().uid.clone().unwrap_or_default(), now.clone()).as_ref() == Some(&now) {
                return;
            }
            let namespaces = match &tenant.0 {
                Ok(tenant) => tenant.namespace_names(),
                Err(_) => vec![tenant.name_any()],
            };
            lock(&fanout).wake_where(|ns| namespaces.iter().any(|n| n == ns));
        }
    };
    let (tenants, tenant_task) = follow(inputs.tenants, "Tenant", &listed, wake_tenant);

    let namespace_task = {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let fanout = fanout.clone();
        let listed = listed.clone();
        watch::watcher(api, crate::reconcile::watch::config().labels(TENANT_LABEL))
            .default_backoff()
            .modify(watch::strip)
            .reflect(namespace_writer)
            .inspect_ok(move |event| listed.observe("Namespace", event))
            .for_each(move |event| {
                if let Ok(event) = event {
                    lock(&fanout).namespace_event(&event);
                }
                futures::future::ready(())
            })
    };

    let wake_quota = {
        let fanout = fanout.clone();
        move |quota: &ResourceQuota| {
            let namespace = quota.namespace().unwrap_or_default();
            lock(&fanout).wake_workloads_where(|ns| ns == namespace);
        }
    };
    let (quotas, quota_task) = follow(inputs.quotas, "ResourceQuota", &listed, wake_quota);
    // A renewed tenant CA reaches the services through their Tenant's status (its serial).
    let (tenant_ca_secrets, ca_secret_task) = follow(inputs.ca_secrets, "tenant CA Secret", &listed, |_| {});

    let portal_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watch::watcher(Api::<PortalObject>::all(client.clone()), crate::reconcile::watch::config())
            .default_backoff()
            .modify(watch::strip)
            .reflect(portal_writer)
            .inspect_ok(move |event| {
                listed.observe("Portal", event);
                lock(&fanout).service_event(event);
            })
            .touched_objects()
            .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default())
    };
    let document_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watch::watcher(Api::<DocumentObject>::all(client.clone()), crate::reconcile::watch::config())
            .default_backoff()
            .modify(watch::strip)
            .reflect(document_writer)
            .inspect_ok(move |event| {
                listed.observe("DocumentService", event);
                let mut fanout = lock(&fanout);
                fanout.service_event(event);
                fanout.document_event(event);
            })
            .touched_objects()
            // The restore annotation is read too.
            .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default())
    };

    let data_sharing_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watch::watcher(Api::<DataSharingObject>::all(client.clone()), crate::reconcile::watch::config())
            .default_backoff()
            .modify(watch::strip)
            .reflect(data_sharing_writer)
            .inspect_ok(move |event| {
                listed.observe("DataSharingService", event);
                lock(&fanout).data_sharing_event(event);
            })
            .touched_objects()
            .predicate_filter(predicates::generation, Default::default())
    };

    let shared = Arc::new(Shared {
        publisher: Publisher::new(client.clone(), settings.instance.clone()),
        status_writes: Default::default(),
        applied: Default::default(),
        tenant_cas: inputs.tenant_cas.clone(),
        client: client.clone(),
        settings,
        platforms,
        tenants,
        namespaces,
        quotas,
        tenant_ca_secrets,
        portals: portals.clone(),
        documents: documents.clone(),
        data_sharing: data_sharing.clone(),
        route_tables_orphaned,
        exchange_tables_orphaned,
        known_tenants,
        listed: listed_rx,
        platform_trust: inputs.trust,
    });
    // The services' certificate gauges are read from their statuses in these caches at each scrape.
    let gauges = &shared.settings.telemetry.certificates;
    let (reader, services) = (shared.clone(), portals.clone());
    gauges.read_from(move || pipeline::certificate_gauges(&reader, &services));
    let (reader, services) = (shared.clone(), documents.clone());
    gauges.read_from(move || pipeline::certificate_gauges(&reader, &services));
    let (reader, services) = (shared.clone(), data_sharing.clone());
    gauges.read_from(move || pipeline::certificate_gauges(&reader, &services));
    let portal_watch = ServiceWatch { store: portals, stream: Box::pin(portal_stream), wake: portal_woken };
    let document_watch = ServiceWatch { store: documents, stream: Box::pin(document_stream), wake: document_woken };
    let data_sharing_watch =
        ServiceWatch { store: data_sharing, stream: Box::pin(data_sharing_stream), wake: data_sharing_woken };

    // The related watchers run until their streams end, which they do not; the controllers stop
    // on SIGTERM, and then so does this.
    let related = async {
        tokio::join!(platform_task, trust_task, tenant_task, namespace_task, quota_task, ca_secret_task);
    };
    let controllers = async {
        tokio::join!(
            crate::portal::run(shared.clone(), portal_watch),
            crate::document::run(shared.clone(), document_watch),
            crate::data_sharing::run(shared.clone(), data_sharing_watch)
        );
    };
    tokio::select! {
        () = controllers => {}
        () = related => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(reason: &str, status: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    #[test]
    fn an_agency_whose_namespace_arrives_wakes_its_consumers() {
        let (portals, _portal_writer) = reflector::store::<PortalObject>();
        let (documents, _document_writer) = reflector::store::<DocumentObject>();
        let (data_sharing, mut data_sharing_writer) = reflector::store::<DataSharingObject>();
        let (namespaces, _namespace_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
        let consumer: govpaas_crds::DataSharingService = serde_json::from_value(serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "DataSharingService",
            "metadata": {"name": "mot-cua", "namespace": "thanh-khe", "uid": "c1"},
            "spec": {"consumes": [{"name": "can-bo", "agencyCode": "H17.01", "api": "can-bo-cong-chuc"}]},
        }))
        .expect("a DataSharingService");
        data_sharing_writer.apply_watcher_event(&watcher::Event::Apply(kube::core::DeserializeGuard(Ok(consumer))));
        let (portal_wake, _portal_woken) = futures::channel::mpsc::unbounded();
        let (document_wake, _document_woken) = futures::channel::mpsc::unbounded();
        let (data_sharing_wake, mut data_sharing_woken) = futures::channel::mpsc::unbounded();
        let mut fanout = Fanout {
            portals,
            documents,
            data_sharing,
            namespaces,
            wakers: Wakers { portals: portal_wake, documents: document_wake, data_sharing: data_sharing_wake },
            generations: HashMap::new(),
            sharing: HashMap::new(),
            route_tables_orphaned: Default::default(),
            exchanging: HashMap::new(),
            exchange_tables_orphaned: Default::default(),
            agencies: HashMap::new(),
        };
        let namespace = |name: &str, code: Option<&str>| {
            let mut namespace = PartialObjectMeta::<Namespace>::default();
            namespace.metadata.name = Some(name.into());
            namespace.metadata.labels =
                code.map(|c| [(govpaas_crds::metadata::AGENCY_CODE_LABEL.to_owned(), c.to_owned())].into());
            namespace
        };
        let mut woken = || {
            let mut names = Vec::new();
            while let Ok(reference) = data_sharing_woken.try_recv() {
                names.push(reference.name);
            }
            names
        };
        // The first list wakes no consumer: every service is reconciled at start.
        fanout.namespace_event(&watcher::Event::InitApply(namespace("other", Some("H17.02"))));
        assert!(woken().is_empty());
        // The provider's namespace seen for the first time, in either form of its code.
        fanout.namespace_event(&watcher::Event::Apply(namespace("so-noivu", Some("000.00.01.H17"))));
        assert_eq!(woken(), ["mot-cua"]);
        // Seen again, unchanged: nobody.
        fanout.namespace_event(&watcher::Event::Apply(namespace("so-noivu", Some("000.00.01.H17"))));
        assert!(woken().is_empty());
        // Another agency: not its consumers.
        fanout.namespace_event(&watcher::Event::Apply(namespace("so-yte", Some("H17.02.01"))));
        assert!(woken().is_empty());
    }

    #[test]
    fn only_host_conflicts_and_quota_are_worth_a_wake_up() {
        assert!(is_blocked(&[condition("HostConflict", "False")]));
        assert!(is_blocked(&[condition("QuotaExceeded", "False")]));
        assert!(!is_blocked(&[condition("Suspended", "False")]));
        assert!(!is_blocked(&[condition("Reconciled", "True")]));
        assert!(!is_blocked(&[]));
    }
}

//! What the Portal, DocumentService and DataSharingService controllers share at run time: the
//! caches of what their reconciles read (the Platform, Tenants, tenant namespaces, ResourceQuotas,
//! every Portal and DocumentService, whose hosts each must know, and every DataSharingService,
//! whose grants depend on the others), and the wake-ups that those objects' changes send.
//!
//! Each cache is filled by one watcher whose events are fanned out, as explicit wake-ups, to the
//! services they concern: a Tenant (suspended, resumed, domain) or a namespace to the services in
//! its namespaces; a ResourceQuota (usage freed) to the services in its namespace; the Platform to
//! every service; a service deleted or changed to the services held back by a host conflict or by
//! quota, which may now fit; a DataSharingService changed or deleted to the DataSharingServices on
//! the other side of its grants (see [`Fanout::data_sharing_event`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt, TryStreamExt};
use govpaas_crds::conditions::{READY, reasons};
use govpaas_crds::metadata::{SUSPENDED_LABEL, TENANT_LABEL};
use govpaas_crds::platform::PLATFORM_NAME;
use govpaas_crds::{DataSharingService, DocumentService, Platform, Portal, Tenant};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};

use crate::trust::TrustStore;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use time::OffsetDateTime;

use super::ca_secrets;
use super::certificate::Issuer;
use super::hosts::{self, Dated, HostClaim};
use super::tenant::{TenantContext, tenant_of_namespace};
use crate::certificates::{CertificateAuthority, IssuancePolicy, TrustAnchors};
use crate::error::{Error, Result};
use crate::reconcile::events::Publisher;
use crate::reconcile::{conditions, watch};
use crate::telemetry::{CertificateGauges, CertificateKey};
use crate::tenant::{Settings, TenantObject};

/// A Portal, or the error of one that cannot be read (one bad object never breaks the watch).
pub type PortalObject = DeserializeGuard<Portal>;
/// A DocumentService, or the error of one that cannot be read.
pub type DocumentObject = DeserializeGuard<DocumentService>;
/// A DataSharingService, or the error of one that cannot be read.
pub type DataSharingObject = DeserializeGuard<DataSharingService>;

/// The caches every reconcile reads, by the name each reports when it has listed once.
const CACHES: [&str; 8] = [
    "Platform",
    "ConfigMap",
    "Tenant",
    "Namespace",
    "ResourceQuota",
    "Portal",
    "DocumentService",
    "DataSharingService",
];

/// Which caches have listed once. Readiness is tracked from the watch streams' `InitDone`, not by
/// awaiting `Store::wait_until_ready`: a store wakes only one waiter (kube-runtime's `DelayedInit`
/// keeps a single waker), and each controller already waits on its own store.
#[derive(Clone)]
struct Listed(tokio::sync::watch::Sender<std::collections::BTreeSet<&'static str>>);

impl Listed {
    /// Records that `cache` has listed, when `event` says so.
    fn observe<K>(&self, cache: &'static str, event: &watcher::Event<K>) {
        if matches!(event, watcher::Event::InitDone) {
            self.0.send_if_modified(|listed| listed.insert(cache));
        }
    }
}

/// What both controllers read.
pub struct Shared {
    pub client: Client,
    pub settings: Settings,
    pub publisher: Publisher,
    pub platforms: Store<Platform>,
    pub tenants: Store<TenantObject>,
    /// Tenant namespaces (those labelled `govpaas.io/tenant`), metadata only.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub quotas: Store<ResourceQuota>,
    pub portals: Store<PortalObject>,
    pub documents: Store<DocumentObject>,
    pub data_sharing: Store<DataSharingObject>,
    /// Woken when a DataSharingService is deleted: its route table, in the operator's namespace,
    /// has no owner reference to go with it (see `crate::data_sharing::sweep`).
    pub route_tables_orphaned: Arc<tokio::sync::Notify>,
    /// Every Tenant this operator has seen since it started, deleted ones included: whose
    /// retained volumes are this operator's to announce.
    pub known_tenants: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The caches that have listed once.
    listed: tokio::sync::watch::Receiver<std::collections::BTreeSet<&'static str>>,
}

impl Shared {
    /// The service inside `object`, or `None` after reporting that it cannot be read (a Warning
    /// Event on it and a log line): an object that does not deserialize waits for its owner to fix
    /// it, and never breaks the watch.
    pub async fn readable<'a, K>(&self, object: &'a DeserializeGuard<K>, kind: &str) -> Option<&'a K>
    where
        K: Resource<DynamicType = ()>,
    {
        match &object.0 {
            Ok(service) => Some(service),
            Err(invalid) => {
                let note = format!("the {kind} cannot be read: {invalid}; fix or re-apply it");
                let reference = object.object_ref(&());
                self.publisher.publish(&reference, EventType::Warning, "InvalidSpec", "Reconcile", &note, None).await;
                tracing::warn!(error = %invalid, kind, "unreadable object");
                None
            }
        }
    }
}

/// What every reconcile of one service controller shares: the runtime, and that controller's own
/// caches (`C`).
pub struct ServiceContext<C> {
    pub shared: Arc<Shared>,
    pub caches: C,
}

impl<C> ServiceContext<C> {
    /// Runs `reconcile` on the service in `object` once it can be read (else [`Shared::readable`]
    /// reported why, and nothing is done until it changes) and every cache has listed.
    pub async fn when_readable<'a, K, Fut>(
        &self,
        object: &'a DeserializeGuard<K>,
        kind: &str,
        reconcile: impl FnOnce(&'a K) -> Fut,
    ) -> Result<kube::runtime::controller::Action>
    where
        K: Resource<DynamicType = ()>,
        Fut: std::future::Future<Output = Result<kube::runtime::controller::Action>>,
    {
        let Some(service) = self.shared.readable(object, kind).await else {
            return Ok(kube::runtime::controller::Action::await_change());
        };
        self.shared.wait_until_ready().await?;
        reconcile(service).await
    }
}

/// Where a service stands with its tenant.
pub enum Scope {
    /// Its namespace belongs to this Tenant, which this operator reconciles.
    Tenant(Arc<TenantObject>),
    /// Its namespace belongs to no Tenant this operator knows of; the message says so.
    NoTenant(String),
    /// Another operator's tenant (`--tenant-selector`): not this operator's business.
    OutOfScope,
}

/// The tenant of a service in `namespace` (with these `labels`), among the `tenants` this operator
/// caches; `selective`: the operator serves only some Tenants (`--tenant-selector`).
pub fn scope_of(
    namespace: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    tenants: &[Arc<TenantObject>],
    selective: bool,
) -> Scope {
    let readable: Vec<&Tenant> = tenants.iter().filter_map(|t| t.0.as_ref().ok()).collect();
    if let Some(tenant) = tenant_of_namespace(namespace, labels, readable.iter().copied()) {
        let name = tenant.name_any();
        if let Some(found) = tenants.iter().find(|t| t.name_any() == name) {
            return Scope::Tenant(found.clone());
        }
    }
    if selective {
        // A tenant this operator does not select, or none: another operator's business.
        return Scope::OutOfScope;
    }
    Scope::NoTenant(match labels.and_then(|l| l.get(TENANT_LABEL)) {
        Some(tenant) => format!(
            "namespace {namespace} is labelled for Tenant {tenant}, which does not exist or does not list the namespace"
        ),
        None => format!("namespace {namespace} belongs to no govpaas Tenant (its Tenant has not provisioned it yet)"),
    })
}

/// The CA side of a service's certificates, loaded for one reconcile.
pub struct Authority {
    pub tenant_ca: CertificateAuthority,
    pub trust: TrustAnchors,
    pub trust_pem: String,
    pub policy: IssuancePolicy,
}

impl Authority {
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer { ca: &self.tenant_ca, trust: &self.trust, trust_pem: &self.trust_pem, policy: &self.policy }
    }
}

impl Shared {
    /// Before the first reconcile, every cache has listed once: a decision on a half-filled cache
    /// (a host conflict with a service not seen yet) would be wrong.
    pub async fn wait_until_ready(&self) -> Result<()> {
        let mut listed = self.listed.clone();
        listed
            .wait_for(|listed| listed.len() == CACHES.len())
            .await
            .map_err(|_| Error::Config("the service controllers' caches stopped before they were ready".into()))?;
        Ok(())
    }

    /// The Platform, if it exists.
    pub fn platform(&self) -> Option<Arc<Platform>> {
        self.platforms.get(&ObjectRef::new(PLATFORM_NAME))
    }

    /// The tenant of a service in `namespace`.
    pub fn scope(&self, namespace: &str) -> Scope {
        let labels = self.namespaces.get(&ObjectRef::new(namespace)).and_then(|ns| ns.metadata.labels.clone());
        scope_of(namespace, labels.as_ref(), &self.tenants.state(), self.settings.tenant_selector.is_some())
    }

    /// The tenant context of `tenant`, with suspension read from both the Tenant and its
    /// namespace's label (whichever says so first: the namespace's quota is already at zero Pods).
    pub fn tenant_context(&self, tenant: &Tenant, platform: &Platform, namespace: &str) -> TenantContext {
        let mut context = TenantContext::of(tenant, platform);
        let labelled = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.as_ref().and_then(|l| l.get(SUSPENDED_LABEL).cloned()))
            .is_some_and(|v| v == "true");
        context.suspended |= labelled;
        context
    }

    /// Every Portal's and DocumentService's hosts, oldest first.
    pub fn host_claims(&self) -> Vec<HostClaim> {
        let mut dated: Vec<Dated> = Vec::new();
        for portal in self.portals.state() {
            if let Ok(portal) = &portal.0 {
                dated.push(crate::portal::build::claim(portal));
            }
        }
        for service in self.documents.state() {
            if let Ok(service) = &service.0 {
                dated.push(crate::document::build::claim(service));
            }
        }
        hosts::oldest_first(dated)
    }

    /// The tenant and agency code of every tenant namespace this operator serves: the Tenants that
    /// list the namespace and whose label it carries (as [`Shared::scope`] decides, for all at once).
    pub fn tenant_agencies(&self) -> HashMap<String, (String, String)> {
        let mut agencies = HashMap::new();
        for tenant in self.tenants.state() {
            let Ok(tenant) = &tenant.0 else { continue };
            let name = tenant.name_any();
            for namespace in tenant.namespace_names() {
                let labelled = self
                    .namespaces
                    .get(&ObjectRef::new(&namespace))
                    .and_then(|ns| ns.metadata.labels.as_ref().and_then(|l| l.get(TENANT_LABEL).cloned()))
                    .is_some_and(|owner| owner == name);
                if labelled {
                    agencies.insert(namespace, (name.clone(), tenant.spec.agency.code.clone()));
                }
            }
        }
        agencies
    }

    /// The ResourceQuotas of `namespace`.
    pub fn quotas_in(&self, namespace: &str) -> Vec<ResourceQuota> {
        self.quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace.as_deref() == Some(namespace))
            .map(|q| q.as_ref().clone())
            .collect()
    }

    /// The platform CA and `tenant`'s CA (created on first use), or why they cannot be used.
    pub async fn authority(
        &self,
        tenant: &Tenant,
        context: &TenantContext,
        platform: &Platform,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<Authority, String>> {
        let policy = match ca_secrets::issuance_policy(&platform.spec) {
            Ok(policy) => policy,
            Err(message) => return Ok(Err(message)),
        };
        let store = TrustStore::new(self.client.clone(), &self.settings.operator_namespace);
        let platform_trust = match crate::trust::platform_trust(&store, platform, &policy, now).await? {
            Ok(trust) => trust,
            Err(message) => return Ok(Err(message)),
        };
        let base_domain = &platform.spec.base_domain;
        let tenant_ca =
            match ca_secrets::tenant_ca(&store.secrets, tenant, context, base_domain, &platform_trust, &policy, now)
                .await?
            {
                Ok(ca) => ca,
                Err(message) => return Ok(Err(message)),
            };
        let crate::trust::PlatformTrust { bundle_pem: trust_pem, anchors: trust, .. } = platform_trust;
        Ok(Ok(Authority { tenant_ca, trust, trust_pem, policy }))
    }
}

impl Shared {
    /// Records a certificate's expiry and renewal time in the gauges.
    pub fn observe_certificate(&self, key: CertificateKey, leaf: &super::certificate::Leaf, policy: &IssuancePolicy) {
        let renewal = leaf.renewal_time(policy).unix_timestamp();
        self.settings.telemetry.certificates.observe(key, leaf.not_after.unix_timestamp(), renewal);
    }

    /// Whether this operator serves (or served, before it was deleted) the Tenant `name`.
    pub fn serves_tenant(&self, name: &str) -> bool {
        self.settings.tenant_selector.is_none()
            || self.known_tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(name)
    }

    /// Publishes the Events of the conditions that changed since `previous`.
    pub async fn publish_changes(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        previous: &[Condition],
        desired: &[conditions::Desired],
    ) {
        for changed in conditions::changed_with_events(previous, desired) {
            let type_ = changed.event.unwrap_or(kube::runtime::events::EventType::Normal);
            // A condition that came good is news of its own.
            let reason = match (changed.type_.as_str(), changed.status) {
                (READY, conditions::TRUE) => "Serving".to_owned(),
                _ => changed.reason.clone(),
            };
            self.publisher.publish(regarding, type_, &reason, "Reconcile", &changed.message, None).await;
        }
    }

    /// Publishes an Event for a certificate that was issued (`what`: "TLS certificate for …").
    pub async fn publish_issued(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        what: &str,
        leaf: &super::certificate::Leaf,
    ) {
        use super::certificate::Issued;
        use kube::runtime::events::EventType;
        let until = super::status::time_of(leaf.not_after).0;
        let (type_, reason, note) = match &leaf.issued {
            None => return,
            Some(Issued::New) => {
                (EventType::Normal, "CertificateIssued", format!("issued the {what}, valid until {until}"))
            }
            Some(Issued::Renewal) => {
                (EventType::Normal, "CertificateRenewed", format!("renewed the {what}, now valid until {until}"))
            }
            Some(Issued::Replaced(why)) => {
                (EventType::Normal, "CertificateReissued", format!("re-issued the {what} ({why}), valid until {until}"))
            }
            Some(Issued::Damaged(why)) => (
                EventType::Warning,
                "CertificateDamaged",
                format!("the stored {what} was damaged ({why}); re-issued, valid until {until}"),
            ),
        };
        self.publisher.publish(regarding, type_, reason, "IssueCertificate", &note, None).await;
    }
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
    certificates: Arc<CertificateGauges>,
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

    /// A service changed: when its spec changed or it went away, the blocked ones may now fit; a
    /// service gone takes its certificates out of the gauges.
    fn service_event<K: Resource>(&mut self, event: &watcher::Event<K>, certificates: fn(&K) -> Vec<CertificateKey>) {
        if let watcher::Event::Delete(object) = event {
            for key in certificates(object) {
                self.certificates.forget(&key);
            }
        }
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

    /// The agency (normalised) of the DataSharingServices in `namespace`, from its label.
    fn agency_of(&self, namespace: &str) -> Option<String> {
        let labels = self.namespaces.get(&ObjectRef::new(namespace))?.metadata.labels.clone()?;
        labels.get(govpaas_crds::metadata::AGENCY_CODE_LABEL).map(|code| crate::data_sharing::grants::normalise(code))
    }

    /// A DataSharingService changed its spec or went away: its own agency's services (the API
    /// names and the `lgspApis` quota they share), the providers it consumes from (whose route
    /// tables list it), before and after the change, and the services that consume from its agency
    /// (whose grants it decides) look again. A deleted one's route table is swept, and its client
    /// certificate leaves the gauges.
    fn data_sharing_event(&mut self, event: &watcher::Event<DataSharingObject>) {
        let involved = |object: &DataSharingObject, own: Option<String>| {
            let mut agencies: std::collections::BTreeSet<String> = own.into_iter().collect();
            if let Ok(service) = &object.0 {
                agencies.extend(
                    service
                        .spec
                        .consumes
                        .iter()
                        .filter_map(|c| c.agency_code.as_deref())
                        .map(crate::data_sharing::grants::normalise),
                );
            }
            agencies
        };
        let key = |object: &DataSharingObject| object.meta().uid.clone().unwrap_or_default();
        let (object, deleted) = match event {
            watcher::Event::InitApply(object) => {
                let own = object.namespace().and_then(|ns| self.agency_of(&ns));
                self.sharing.insert(key(object), (object.meta().generation, involved(object, own)));
                return;
            }
            watcher::Event::Apply(object) => (object, false),
            watcher::Event::Delete(object) => (object, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let own = object.namespace().and_then(|ns| self.agency_of(&ns));
        let now = involved(object, own.clone());
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
            for key in crate::data_sharing::reconcile::certificate_keys(object) {
                self.certificates.forget(&key);
            }
        }
        let mut agencies = now;
        agencies.extend(previous.map(|(_, before)| before).unwrap_or_default());
        for service in self.data_sharing.state() {
            if service.meta().uid == object.meta().uid {
                continue;
            }
            let Some(namespace) = service.namespace() else { continue };
            let theirs = self.agency_of(&namespace);
            let provider_or_sibling = theirs.as_ref().is_some_and(|code| agencies.contains(code));
            let consumer = own.as_ref().is_some_and(|own| {
                service.0.as_ref().is_ok_and(|s| {
                    s.spec.consumes.iter().any(|c| {
                        c.agency_code.as_deref().map(crate::data_sharing::grants::normalise).as_ref() == Some(own)
                    })
                })
            });
            if provider_or_sibling || consumer {
                let _ = self.wakers.data_sharing.unbounded_send(ObjectRef::from_obj(service.as_ref()));
            }
        }
    }
}

/// Locks the fan-out (never held across an `.await`). A panic elsewhere cannot leave its map
/// half-updated in a way that matters: at worst one wake-up too many.
fn lock(fanout: &std::sync::Mutex<Fanout>) -> std::sync::MutexGuard<'_, Fanout> {
    fanout.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cache of `K` (optionally by label `selector`) and the stream that fills it, each touched object
/// passed to `on_change`. Poll the stream or the cache stays empty.
fn related<K>(
    client: &Client,
    config: watcher::Config,
    listed: &Listed,
    mut on_change: impl FnMut(&K) + Send + 'static,
) -> (Store<K>, impl futures::Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let listed = listed.clone();
    let cache = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    };
    let task = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .modify(watch::strip)
        .reflect(writer)
        .inspect_ok(move |event| listed.observe(cache, event))
        .touched_objects()
        .for_each(move |touched| {
            match touched {
                Ok(object) => on_change(&object),
                Err(err) => tracing::warn!(error = %err, kind = %K::kind(&()), "watch failed; retrying"),
            }
            futures::future::ready(())
        });
    (store, task)
}

/// A watched service kind: its cache and the stream that drives its controller.
pub struct ServiceWatch<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    pub store: Store<K>,
    pub stream: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<K, watcher::Error>> + Send>>,
    pub wake: UnboundedReceiver<ObjectRef<K>>,
}

/// Runs the Portal, DocumentService and DataSharingService controllers until shutdown.
pub async fn run(client: Client, settings: Settings) {
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
    let fanout = Arc::new(std::sync::Mutex::new(Fanout {
        portals: portals.clone(),
        documents: documents.clone(),
        data_sharing: data_sharing.clone(),
        namespaces: namespaces.clone(),
        wakers: wakers.clone(),
        generations: HashMap::new(),
        sharing: HashMap::new(),
        route_tables_orphaned: route_tables_orphaned.clone(),
        certificates: settings.telemetry.certificates.clone(),
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
    let platform_config = watcher::Config::default().fields(&format!("metadata.name={PLATFORM_NAME}"));
    let (platforms, platform_task) = related::<Platform>(&client, platform_config, &listed, wake_all);
    // Every step of a CA rotation changes the trust state: which CA issues, which bundle is handed
    // out. Every service looks again.
    let wake_on_trust = {
        let fanout = fanout.clone();
        move |_: &ConfigMap| lock(&fanout).wake_where(|_| true)
    };
    let (_, trust_task) =
        related::<ConfigMap>(&client, crate::trust::watch_config(&settings.operator_namespace), &listed, wake_on_trust);

    let known_tenants = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let wake_tenant = {
        let fanout = fanout.clone();
        let known = known_tenants.clone();
        // What of a Tenant its services read and its status may change: the domain. The rest they
        // read is spec (a new generation). Its other status writes (usage) wake nobody.
        let mut seen: HashMap<String, (Option<i64>, Option<String>)> = HashMap::new();
        move |tenant: &TenantObject| {
            known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(tenant.name_any());
            let domain = tenant.0.as_ref().ok().and_then(|t| t.status.as_ref()).and_then(|s| s.domain.clone());
            let now = (tenant.meta().generation, domain);
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
    let mut tenant_config = watcher::Config::default();
    if let Some(selector) = &settings.tenant_selector {
        tenant_config = tenant_config.labels(selector);
    }
    let (tenants, tenant_task) = related::<TenantObject>(&client, tenant_config, &listed, wake_tenant);

    let wake_namespace = {
        let fanout = fanout.clone();
        move |namespace: &PartialObjectMeta<Namespace>| {
            let name = namespace.name_any();
            lock(&fanout).wake_where(|ns| ns == name);
        }
    };
    let namespace_task = {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let on_change = wake_namespace;
        let listed = listed.clone();
        watcher(api, watcher::Config::default().labels(TENANT_LABEL))
            .default_backoff()
            .modify(watch::strip)
            .reflect(namespace_writer)
            .inspect_ok(move |event| listed.observe("Namespace", event))
            .touched_objects()
            .for_each(move |touched| {
                if let Ok(namespace) = touched {
                    on_change(&namespace);
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
    let (quotas, quota_task) = related::<ResourceQuota>(&client, watcher::Config::default(), &listed, wake_quota);

    let portal_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watcher(Api::<PortalObject>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(watch::strip)
            .reflect(portal_writer)
            .inspect_ok(move |event| {
                listed.observe("Portal", event);
                lock(&fanout).service_event(event, crate::portal::reconcile::certificate_keys);
            })
            .touched_objects()
            .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default())
    };
    let document_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watcher(Api::<DocumentObject>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(watch::strip)
            .reflect(document_writer)
            .inspect_ok(move |event| {
                listed.observe("DocumentService", event);
                lock(&fanout).service_event(event, crate::document::reconcile::certificate_keys);
            })
            .touched_objects()
            // The restore annotation is read too.
            .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default())
    };

    let data_sharing_stream = {
        let fanout = fanout.clone();
        let listed = listed.clone();
        watcher(Api::<DataSharingObject>::all(client.clone()), watcher::Config::default())
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
        client: client.clone(),
        settings,
        platforms,
        tenants,
        namespaces,
        quotas,
        portals: portals.clone(),
        documents: documents.clone(),
        data_sharing: data_sharing.clone(),
        route_tables_orphaned,
        known_tenants,
        listed: listed_rx,
    });
    let portal_watch = ServiceWatch { store: portals, stream: Box::pin(portal_stream), wake: portal_woken };
    let document_watch = ServiceWatch { store: documents, stream: Box::pin(document_stream), wake: document_woken };
    let data_sharing_watch =
        ServiceWatch { store: data_sharing, stream: Box::pin(data_sharing_stream), wake: data_sharing_woken };

    // The related watchers run until their streams end, which they do not; the controllers stop
    // on SIGTERM, and then so does this.
    let related = async {
        tokio::join!(platform_task, trust_task, tenant_task, namespace_task, quota_task);
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

    fn tenants() -> Vec<Arc<TenantObject>> {
        vec![Arc::new(DeserializeGuard(Ok(crate::workload::fixtures::tenant())))]
    }

    fn labelled(tenant: &str) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([(TENANT_LABEL.to_owned(), tenant.to_owned())])
    }

    #[test]
    fn a_service_belongs_to_the_tenant_that_labels_and_lists_its_namespace() {
        let tenants = tenants();
        let labels = labelled("so-noi-vu");
        assert!(
            matches!(scope_of("so-noi-vu", Some(&labels), &tenants, false), Scope::Tenant(t) if t.name_any() == "so-noi-vu")
        );
        assert!(matches!(scope_of("so-noi-vu", Some(&labels), &tenants, true), Scope::Tenant(_)));
    }

    #[test]
    fn without_its_tenant_a_service_waits_or_is_another_operators() {
        let tenants = tenants();
        let other = labelled("so-tai-chinh");
        match scope_of("so-tai-chinh", Some(&other), &tenants, false) {
            Scope::NoTenant(message) => assert!(message.contains("labelled for Tenant so-tai-chinh"), "{message}"),
            _ => panic!("expected NoTenant"),
        }
        match scope_of("default", None, &tenants, false) {
            Scope::NoTenant(message) => assert!(message.contains("belongs to no govpaas Tenant"), "{message}"),
            _ => panic!("expected NoTenant"),
        }
        assert!(matches!(scope_of("so-tai-chinh", Some(&other), &tenants, true), Scope::OutOfScope));
        // The label alone, on a namespace the tenant does not list, is not enough.
        let copied = labelled("so-noi-vu");
        assert!(matches!(scope_of("elsewhere", Some(&copied), &tenants, true), Scope::OutOfScope));
    }

    #[test]
    fn every_cache_reports_its_listing_under_a_name_readiness_waits_for() {
        fn name<K: Resource<DynamicType = ()>>() -> &'static str {
            match K::kind(&()) {
                std::borrow::Cow::Borrowed(kind) => kind,
                std::borrow::Cow::Owned(_) => "object",
            }
        }
        let reported = [
            name::<Platform>(),
            name::<ConfigMap>(),
            name::<TenantObject>(),
            "Namespace",
            name::<ResourceQuota>(),
            "Portal",
            "DocumentService",
            "DataSharingService",
        ];
        assert_eq!(reported, CACHES);

        let (tx, rx) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
        let listed = Listed(tx);
        for cache in CACHES {
            listed.observe::<Platform>(cache, &watcher::Event::Init);
        }
        assert!(rx.borrow().is_empty(), "only InitDone counts");
        for cache in CACHES.iter().chain(CACHES.iter()) {
            listed.observe::<Platform>(cache, &watcher::Event::InitDone);
        }
        assert_eq!(rx.borrow().len(), CACHES.len(), "a re-list counts once");
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

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

use futures::Stream;
use futures::channel::mpsc::UnboundedReceiver;
use govpaas_crds::conditions::READY;
use govpaas_crds::metadata::{SUSPENDED_LABEL, TENANT_LABEL};
use govpaas_crds::platform::PLATFORM_NAME;
use govpaas_crds::{DataSharingService, DocumentService, Platform, Portal, Tenant};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use time::OffsetDateTime;

use crate::certificates::ca_secrets;
use crate::certificates::leaf::Issuer;
use crate::certificates::published::TrustSubscriber;
use crate::error::{Error, Result};
use crate::reconcile::conditions;
use crate::reconcile::events::Publisher;
use crate::reconcile::known::KnownObjects;
use crate::reconcile::outcome::{Step, Stop};
use crate::reconcile::watch;
use crate::settings::Settings;
use crate::tenancy::{Scope, TenantContext, TenantObject, scope_of};
use crate::workload::hosts::{self, Dated, HostClaim};
use govpaas_crds::conditions::reasons;
use govpaas_pki::{CertificateAuthority, IssuancePolicy, TrustAnchors};

/// A Portal, or the error of one that cannot be read (one bad object never breaks the watch).
pub type PortalObject = DeserializeGuard<Portal>;
/// A DocumentService, or the error of one that cannot be read.
pub type DocumentObject = DeserializeGuard<DocumentService>;
/// A DataSharingService, or the error of one that cannot be read.
pub type DataSharingObject = DeserializeGuard<DataSharingService>;

/// The caches every reconcile reads, by the name each reports when it has listed once.
const CACHES: [&str; 8] = [
    "Platform",
    "Tenant",
    "Namespace",
    "ResourceQuota",
    "tenant CA Secret",
    "Portal",
    "DocumentService",
    "DataSharingService",
];

/// Every cache listed, for tests that fill the stores by hand.
#[cfg(test)]
pub(crate) fn all_listed() -> tokio::sync::watch::Receiver<std::collections::BTreeSet<&'static str>> {
    let (listed, receiver) = tokio::sync::watch::channel(CACHES.into_iter().collect());
    // Kept open: a closed channel would read as caches that stopped.
    std::mem::forget(listed);
    receiver
}

/// Which caches have listed once. Readiness is tracked from the watch streams' `InitDone`, not by
/// awaiting `Store::wait_until_ready`: a store wakes only one waiter (kube-runtime's `DelayedInit`
/// keeps a single waker), and each controller already waits on its own store.
#[derive(Clone)]
pub(crate) struct Listed(pub(crate) tokio::sync::watch::Sender<std::collections::BTreeSet<&'static str>>);

impl Listed {
    /// Records that `cache` has listed, when `event` says so.
    pub(crate) fn observe<K>(&self, cache: &'static str, event: &watcher::Event<K>) {
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
    /// The status writes of the three service controllers (keyed by uid).
    pub status_writes: crate::reconcile::apply::StatusWrites,
    /// The tenant CAs loaded in this process (the tenant controller publishes them).
    pub tenant_cas: Arc<crate::certificates::tenant_cas::TenantCas>,
    /// What the three service controllers applied (objects already right are not applied again).
    pub applied: Arc<crate::reconcile::apply::AppliedObjects>,
    pub platforms: Store<Platform>,
    pub tenants: Store<TenantObject>,
    /// Tenant namespaces (those labelled `govpaas.io/tenant`), metadata only.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub quotas: Store<ResourceQuota>,
    /// The tenant CA Secrets, read until the tenant controller has loaded a CA in this process.
    pub tenant_ca_secrets: Store<k8s_openapi::api::core::v1::Secret>,
    pub portals: Store<PortalObject>,
    pub documents: Store<DocumentObject>,
    pub data_sharing: Store<DataSharingObject>,
    /// Woken when a DataSharingService is deleted: its route table, in the operator's namespace,
    /// has no owner reference to go with it (the data-sharing controller sweeps it).
    pub route_tables_orphaned: Arc<tokio::sync::Notify>,
    /// Rung when a DocumentService goes away: its exchange route table is swept.
    pub exchange_tables_orphaned: Arc<tokio::sync::Notify>,
    /// Every Tenant this operator has seen since it started, deleted ones included: whose
    /// retained volumes are this operator's to announce.
    pub known_tenants: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The caches that have listed once.
    pub(crate) listed: tokio::sync::watch::Receiver<std::collections::BTreeSet<&'static str>>,
    /// The platform trust the trust controller publishes.
    pub platform_trust: TrustSubscriber,
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
    /// Whether the whole-object caches in `caches` have listed once: reconciles wait for it, and
    /// then take what they lack as not existing.
    pub owned_listed: crate::reconcile::shared::Listed,
    /// The whole objects this controller's reconciles read, kept while unchanged.
    pub known: Known,
}

/// What a service controller applied lately of the whole objects its reconciles read (a
/// certificate's Secret, what its workload holds of the quota), served until its whole-object
/// caches catch up (`reconcile::known`).
pub struct Known {
    pub secrets: KnownObjects<k8s_openapi::api::core::v1::Secret>,
    pub deployments: KnownObjects<k8s_openapi::api::apps::v1::Deployment>,
    pub ingresses: KnownObjects<k8s_openapi::api::networking::v1::Ingress>,
    pub claims: KnownObjects<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            secrets: KnownObjects::trimmed(watch::keep_all),
            deployments: KnownObjects::trimmed(watch::trim_deployment),
            ingresses: KnownObjects::trimmed(watch::trim_ingress),
            claims: KnownObjects::trimmed(watch::keep_all),
        }
    }
}

impl Known {
    /// Keeps what `applier` applied of the kinds reconciles read.
    pub fn remember_applied(&self, applier: &crate::reconcile::apply::Applier) {
        self.secrets.remember_applied(applier);
        self.deployments.remember_applied(applier);
        self.ingresses.remember_applied(applier);
        self.claims.remember_applied(applier);
    }
}

/// The CA side of a service's certificates, loaded for one reconcile.
pub struct Authority {
    pub tenant_ca: Arc<CertificateAuthority>,
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
        listed.wait_for(|listed| listed.len() == CACHES.len()).await.map_err(|_| Error::CachesStopped("service"))?;
        // And the trust controller has loaded the platform CA once (or said why it cannot): else
        // every service would report, for a moment, a CA that is only not loaded yet.
        if !self.platform_trust.settled().await {
            return Err(Error::CachesStopped("platform trust"));
        }
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
                dated.push(hosts::dated(portal));
            }
        }
        for service in self.documents.state() {
            if let Ok(service) = &service.0 {
                dated.push(hosts::dated(service));
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

    /// The platform CA and `tenant`'s CA as the tenant controller issued it, or why they cannot be
    /// used yet (each with its own reason: the policy, the platform CA, the tenant CA pending,
    /// damaged or issued for another domain).
    pub async fn authority(
        &self,
        context: &TenantContext,
        platform: &Platform,
        now: OffsetDateTime,
    ) -> Step<Authority> {
        let policy = ca_secrets::issuance_policy(&platform.spec)
            .map_err(|message| Stop::waiting(reasons::CERTIFICATE_POLICY_INVALID, message))?;
        let platform_trust = self.platform_trust.current()?;
        let secrets = Api::namespaced(self.client.clone(), &self.settings.operator_namespace);
        let name = ca_secrets::tenant_ca_secret_name(&context.name);
        let cached = self.tenant_ca_secrets.get(&ObjectRef::new(&name).within(&self.settings.operator_namespace));
        let tenant_ca =
            ca_secrets::issued_tenant_ca(&secrets, cached, context, &platform_trust, now, &self.tenant_cas).await?;
        let (trust, trust_pem) = (platform_trust.anchors.clone(), platform_trust.bundle_pem.clone());
        Ok(Authority { tenant_ca, trust, trust_pem, policy })
    }
}

impl Shared {
    /// Whether the Tenant of `namespace` (by its label) is one this operator serves: the Tenant
    /// cache holds only those.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.as_ref()?.get(TENANT_LABEL).cloned())
            .is_some_and(|tenant| self.tenants.get(&ObjectRef::new(&tenant)).is_some())
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
        leaf: &crate::certificates::leaf::Leaf,
    ) {
        use crate::certificates::leaf::Issued;
        use kube::runtime::events::EventType;
        let until = crate::reconcile::conditions::time_of(leaf.not_after).0;
        let (type_, reason, note) = match &leaf.issued {
            // A service's first certificate is part of its creation: its status shows it, and an
            // Event per new service would be one more write each for a province's worth of them.
            None | Some(Issued::New) => return,
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

/// A watched service kind: its cache and the stream that drives its controller.
pub struct ServiceWatch<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    pub store: Store<K>,
    pub stream: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<K, watcher::Error>> + Send>>,
    pub wake: UnboundedReceiver<ObjectRef<K>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Vec<Arc<TenantObject>> {
        vec![Arc::new(DeserializeGuard(Ok(crate::fixtures::tenant())))]
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
            name::<TenantObject>(),
            "Namespace",
            name::<ResourceQuota>(),
            "tenant CA Secret",
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
}

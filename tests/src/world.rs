//! One test's world on the shared control plane, and typed builders for what tests apply.
//!
//! [`World::new`] installs the chart (CRDs, admission policies, RBAC), makes sure the Platform
//! exists, and starts an operator process for a fresh scope (see [`crate::operator`]); its Tenants
//! carry that scope's label, so the operator — and its `/metrics` — is the test's alone. Dropping
//! the world deletes every Tenant of the scope (their namespaces go with them), what the operator
//! keeps for them in its own namespace, and stops the operator.
//!
//! Objects are built from the API types of `govpaas-crds` ([`TenantBuilder`], [`PortalBuilder`],
//! [`DocumentServiceBuilder`], [`DataSharingServiceBuilder`]) and applied by server-side apply
//! ([`World::apply`]). Waits ([`World::ready`], [`World::condition`]) accept a status only when it
//! describes the object's current `metadata.generation`, so a stale status never satisfies them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::process::Stdio;
use std::time::Duration;

use govpaas_crds::common::Size;
use govpaas_crds::data_sharing::{AccessDecision, ApiConsumer, ConsumedApi, ProvidedApi};
use govpaas_crds::document_service::{
    DeletePolicy, DocumentExchange, DocumentSender, DocumentSigning, DocumentStorage,
};
use govpaas_crds::metadata::{DOMAIN_ANNOTATION, TENANT_LABEL};
use govpaas_crds::portal::OnlineServiceMode;
use govpaas_crds::tenant::{Admins, Agency, Exposure, NamespaceQuota, TenantNamespace, TenantQuota};
use govpaas_crds::{
    AgencyLevel, DataSharingService, DataSharingServiceSpec, DocumentService, DocumentServiceSpec, Platform, Portal,
    PortalSpec, Tenant, TenantSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::operator::{self, OperatorProcess, SCOPE_LABEL};
use crate::{Cluster, cluster, eventually, unique_name};

/// How long a wait on the operator's work may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(120);

/// The field manager the world applies objects with.
pub const FIELD_MANAGER: &str = "govpaas-tests-world";

/// A test's world: the cluster, an admin client, the Platform's base domain, a scope of its own
/// and (unless the chart's Pods are the operator) an operator process reconciling that scope.
pub struct World {
    pub cluster: &'static Cluster,
    pub client: Client,
    pub base_domain: String,
    /// The scope's name: the value of the `govpaas.io/scope` label on its Tenants.
    pub scope: String,
    operator: Option<OperatorProcess>,
    /// The Tenants applied through this world, for cleaning up what the operator keeps for them
    /// outside their namespaces.
    tenants: RefCell<Vec<String>>,
}

impl World {
    /// The chart installed, the Platform ensured, and an operator for a new scope `<prefix>-…`.
    pub async fn new(prefix: &str) -> Self {
        let mut world = Self::without_operator(prefix).await;
        world.operator = Some(OperatorProcess::start(world.cluster, &world.scope));
        world
    }

    /// Like [`World::new`] without an operator process: for a test whose operator runs elsewhere
    /// (the chart's Pods on the real node), scoped to [`World::selector`].
    pub async fn without_operator(prefix: &str) -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        let base_domain = operator::ensure_platform(cluster);
        World {
            cluster,
            client: cluster.client().await,
            base_domain,
            scope: unique_name(prefix),
            operator: None,
            tenants: RefCell::default(),
        }
    }

    /// The operator process reconciling this world's scope.
    pub fn operator(&self) -> &OperatorProcess {
        self.operator.as_ref().expect("this world runs no operator process")
    }

    pub fn operator_mut(&mut self) -> &mut OperatorProcess {
        self.operator.as_mut().expect("this world runs no operator process")
    }

    /// The scope's label selector, `govpaas.io/scope=<scope>`.
    pub fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    /// The domain of a tenant whose `spec.domain` is unset: `<tenant>.<base domain>`.
    pub fn domain_of(&self, tenant: &str) -> String {
        format!("{tenant}.{}", self.base_domain)
    }

    /// A Tenant of this world's scope (labelled with it): a Province `H49` with [`Quota`]'s
    /// defaults until told otherwise.
    pub fn tenant(&self, name: &str) -> TenantBuilder {
        let mut tenants = self.tenants.borrow_mut();
        if !tenants.iter().any(|t| t == name) {
            tenants.push(name.to_owned());
        }
        TenantBuilder::new(name).label(SCOPE_LABEL, &self.scope)
    }

    /// Server-side applies `object` (force: the world owns what it writes); panics with the API
    /// server's message when refused. Returns the object as stored.
    pub async fn apply<K>(&self, object: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Debug,
    {
        self.try_apply(object).await.unwrap_or_else(|err| panic!("applying {object:?}: {err}"))
    }

    /// Server-side applies `object`; the API server's message when it refuses it.
    pub async fn try_apply<K>(&self, object: &K) -> Result<K, String>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Debug,
    {
        self.server_side_apply(object, false).await
    }

    /// A server-side dry run of applying `object`: what admission says, with nothing stored.
    pub async fn dry_run<K>(&self, object: &K) -> Result<K, String>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Debug,
    {
        self.server_side_apply(object, true).await
    }

    async fn server_side_apply<K>(&self, object: &K, dry_run: bool) -> Result<K, String>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Debug,
    {
        let name = object.meta().name.clone().expect("an object to apply has a name");
        let api = dynamic_api::<K>(&self.client, object.meta().namespace.as_deref().unwrap_or_default());
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let applied = api.patch(&name, &params, &Patch::Apply(object)).await.map_err(api_message)?;
        Ok(applied.try_parse().expect("the API server returns the kind it was sent"))
    }

    /// The object `namespace/name` of kind `K` (`namespace` empty for a cluster-scoped kind), if
    /// it exists.
    pub async fn get_opt<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let found = dynamic_api::<K>(&self.client, namespace)
            .get_opt(name)
            .await
            .unwrap_or_else(|err| panic!("reading {} {namespace}/{name}: {err}", K::kind(&())));
        found.map(|object| object.try_parse().expect("the API server returns the kind asked for"))
    }

    /// The object `namespace/name` of kind `K`; panics when it does not exist.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> K
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.get_opt(namespace, name).await.unwrap_or_else(|| panic!("no {} {namespace}/{name}", K::kind(&())))
    }

    /// Deletes `namespace/name` of kind `K` (in the background) if it exists.
    pub async fn delete<K>(&self, namespace: &str, name: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        match dynamic_api::<K>(&self.client, namespace).delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => panic!("deleting {} {namespace}/{name}: {err}", K::kind(&())),
        }
    }

    /// Waits until `check` finds what it looks for in `namespace/name` of kind `K`.
    pub async fn wait<K, T>(&self, namespace: &str, name: &str, what: &str, check: impl Fn(&K) -> Option<T>) -> T
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let api = dynamic_api::<K>(&self.client, namespace);
        let what = format!("{what} ({} {namespace}/{name})", K::kind(&()));
        eventually(WAIT, &what, || async {
            let object: K = api.get_opt(name).await.ok()??.try_parse().ok()?;
            check(&object)
        })
        .await
    }

    /// Waits until `namespace/name` of kind `K` does not exist.
    pub async fn gone<K>(&self, namespace: &str, name: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let api = dynamic_api::<K>(&self.client, namespace);
        let what = format!("{} {namespace}/{name} gone", K::kind(&()));
        eventually(WAIT, &what, || async { api.get_opt(name).await.ok()?.is_none().then_some(()) }).await;
    }

    /// Waits until `namespace/name` reports `Ready=True` for its current generation.
    pub async fn ready<K: Reported>(&self, namespace: &str, name: &str) -> K {
        self.condition(namespace, name, govpaas_crds::conditions::READY, "True", None).await
    }

    /// Waits until `namespace/name` has the condition `type_` with `status` (and `reason`, when
    /// given), stated for the object's current `metadata.generation`.
    pub async fn condition<K: Reported>(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> K {
        let what = format!("{type_}={status} {} at the current generation", reason.unwrap_or_default());
        self.wait(namespace, name, &what, |object: &K| {
            let condition = object.current_condition(type_)?;
            (condition.status == status && reason.is_none_or(|r| condition.reason == r)).then(|| object.clone())
        })
        .await
    }

    /// Waits until `namespace/name`'s status describes its current generation and `check` accepts
    /// the object.
    pub async fn observed<K: Reported, T>(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&K) -> Option<T>,
    ) -> T {
        self.wait(namespace, name, what, |object: &K| if object.is_observed() { check(object) } else { None }).await
    }

    /// Waits until the Tenant `name` is Ready for its current generation and its namespaces carry
    /// the domain the admission policies check hosts against.
    pub async fn tenant_ready(&self, name: &str) -> Tenant {
        let tenant: Tenant = self.ready("", name).await;
        let namespaces = tenant.status.as_ref().map(|s| s.namespaces.clone()).unwrap_or_default();
        let namespaces = if namespaces.is_empty() { vec![name.to_owned()] } else { namespaces };
        for namespace in namespaces {
            self.wait("", &namespace, "the tenant namespace's domain annotation", |ns: &Namespace| {
                ns.annotations().contains_key(DOMAIN_ANNOTATION).then_some(())
            })
            .await;
        }
        tenant
    }

    /// The operator's reconcile counter for `controller` (`tenant`, `portal`, `document-service`,
    /// `data-sharing`): every reconcile that finished, failed ones included.
    pub async fn reconciles(&self, controller: &str) -> f64 {
        operator::reconciles(&self.operator().metrics().await, controller)
    }

    /// The operator's failed reconciles of `controller`, every error variant together.
    pub async fn reconcile_errors(&self, controller: &str) -> f64 {
        operator::reconcile_errors(&self.operator().metrics().await, controller)
    }

    /// Waits until the operator has finished a reconcile of `controller` beyond `seen` (a value
    /// of [`World::reconciles`]); returns the new count.
    pub async fn reconciled_beyond(&self, controller: &str, seen: f64) -> f64 {
        eventually(WAIT, &format!("a {controller} reconcile beyond the {seen} seen"), || async {
            let now = self.reconciles(controller).await;
            (now > seen).then_some(now)
        })
        .await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Every Tenant of the scope; their namespaces, and all in them, go with them.
        let selector = self.selector();
        quiet(self.cluster.kubectl().args([
            "delete",
            "tenants",
            "-l",
            &selector,
            "--ignore-not-found",
            "--wait=false",
        ]));
        // The operator stops; what it kept for these Tenants in its own namespace (tenant CAs,
        // route tables) is removed after it, so that it cannot write them back.
        self.operator = None;
        let tenants = self.tenants.borrow();
        if !tenants.is_empty() {
            let selector = format!("{TENANT_LABEL} in ({})", tenants.join(","));
            quiet(self.cluster.kubectl().args([
                "delete",
                "configmaps,secrets",
                "-n",
                operator::NAMESPACE,
                "-l",
                &selector,
                "--ignore-not-found",
                "--wait=false",
            ]));
        }
    }
}

fn quiet(command: &mut std::process::Command) {
    let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// An [`Api`] for kind `K` in `namespace` (empty: cluster-scoped), through [`DynamicObject`] so
/// that one function serves namespaced and cluster-scoped kinds alike.
fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<K>(&());
    let scope = if namespace.is_empty() { Scope::Cluster } else { Scope::Namespaced };
    Api::<DynamicObject>::dynamic(client.clone(), &resource, &scope).constrain(namespace)
}

/// The API server's own words for a refusal.
fn api_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// A govpaas kind whose status reports conditions for an observed generation.
pub trait Reported: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug {
    fn conditions(&self) -> &[Condition];
    fn status_generation(&self) -> Option<i64>;

    /// Whether the status describes the current `metadata.generation`.
    fn is_observed(&self) -> bool {
        self.meta().generation.is_some() && self.status_generation() == self.meta().generation
    }

    /// The condition `type_`, if it was stated for the current `metadata.generation` (its own
    /// `observedGeneration`, or the status's when the condition has none).
    fn current_condition(&self, type_: &str) -> Option<&Condition> {
        let condition = self.conditions().iter().find(|c| c.type_ == type_)?;
        let generation = condition.observed_generation.or(self.status_generation());
        (self.meta().generation.is_some() && generation == self.meta().generation).then_some(condition)
    }
}

macro_rules! reported {
    ($($kind:ty),*) => {$(
        impl Reported for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
            }
            fn status_generation(&self) -> Option<i64> {
                self.status.as_ref().and_then(|s| s.observed_generation)
            }
        }
    )*};
}
reported!(Tenant, Platform, Portal, DocumentService, DataSharingService);

/// The condition `type_` of `conditions`; panics naming what is there when it is missing.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

fn metadata(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), namespace: namespace.map(str::to_owned), ..ObjectMeta::default() }
}

/// A tenant's quota: 4 CPUs, 8Gi of memory, 10Gi of storage, 10 Pods, 10 Services, 2 public
/// hosts and 5 LGSP APIs, until told otherwise.
#[derive(Clone, Debug)]
pub struct Quota(TenantQuota);

impl Default for Quota {
    fn default() -> Self {
        Quota(TenantQuota {
            cpu: Quantity("4".into()),
            memory: Quantity("8Gi".into()),
            storage: Quantity("10Gi".into()),
            pods: 10,
            services: 10,
            public_hosts: 2,
            lgsp_apis: 5,
        })
    }
}

impl Quota {
    pub fn cpu(mut self, cpu: &str) -> Self {
        self.0.cpu = Quantity(cpu.into());
        self
    }
    pub fn memory(mut self, memory: &str) -> Self {
        self.0.memory = Quantity(memory.into());
        self
    }
    pub fn storage(mut self, storage: &str) -> Self {
        self.0.storage = Quantity(storage.into());
        self
    }
    pub fn pods(mut self, pods: i32) -> Self {
        self.0.pods = pods;
        self
    }
    pub fn services(mut self, services: i32) -> Self {
        self.0.services = services;
        self
    }
    pub fn public_hosts(mut self, public_hosts: i32) -> Self {
        self.0.public_hosts = public_hosts;
        self
    }
    pub fn lgsp_apis(mut self, lgsp_apis: i32) -> Self {
        self.0.lgsp_apis = lgsp_apis;
        self
    }
}

impl From<Quota> for TenantQuota {
    fn from(quota: Quota) -> Self {
        quota.0
    }
}

/// A Tenant, built from the API's types (see [`World::tenant`] for one of a world's scope).
#[derive(Clone, Debug)]
pub struct TenantBuilder(Tenant);

impl TenantBuilder {
    /// A Province `H49`, "Ủy ban nhân dân tỉnh Quảng Nam", with [`Quota`]'s defaults.
    pub fn new(name: &str) -> Self {
        let spec = TenantSpec {
            agency: Agency {
                code: "H49".into(),
                display_name: "Ủy ban nhân dân tỉnh Quảng Nam".into(),
                level: AgencyLevel::Province,
            },
            parent: None,
            domain: None,
            admins: Admins::default(),
            quota: Quota::default().into(),
            namespaces: Vec::new(),
            suspended: false,
            exposure: Default::default(),
        };
        TenantBuilder(Tenant { metadata: metadata(None, name), spec, status: None })
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.metadata.labels.get_or_insert_with(BTreeMap::new).insert(key.to_owned(), value.to_owned());
        self
    }
    /// The electronic agency code.
    pub fn code(mut self, code: &str) -> Self {
        self.0.spec.agency.code = code.to_owned();
        self
    }
    pub fn display_name(mut self, display_name: &str) -> Self {
        self.0.spec.agency.display_name = display_name.to_owned();
        self
    }
    pub fn level(mut self, level: AgencyLevel) -> Self {
        self.0.spec.agency.level = level;
        self
    }
    /// The parent agency's Tenant.
    pub fn parent(mut self, parent: &str) -> Self {
        self.0.spec.parent = Some(parent.to_owned());
        self
    }
    pub fn domain(mut self, domain: &str) -> Self {
        self.0.spec.domain = Some(domain.to_owned());
        self
    }
    pub fn quota(mut self, quota: impl Into<TenantQuota>) -> Self {
        self.0.spec.quota = quota.into();
        self
    }
    pub fn suspended(mut self, suspended: bool) -> Self {
        self.0.spec.suspended = suspended;
        self
    }
    /// One more of the agency's namespaces (`spec.namespaces`), with its share of the quota.
    pub fn namespace(mut self, name: &str, quota: NamespaceQuota) -> Self {
        self.0.spec.namespaces.push(TenantNamespace { name: name.to_owned(), quota: Some(quota) });
        self
    }
    /// The Service exposure the provincial admin allows the agency.
    pub fn exposure(mut self, exposure: Exposure) -> Self {
        self.0.spec.exposure = exposure;
        self
    }
    /// Users and groups that administer the agency's namespaces.
    pub fn admins(mut self, users: &[&str], groups: &[&str]) -> Self {
        self.0.spec.admins = Admins {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        self
    }
    pub fn build(self) -> Tenant {
        self.0
    }
}

/// A Portal: one replica on `hosts` until told otherwise.
#[derive(Clone, Debug)]
pub struct PortalBuilder(Portal);

impl PortalBuilder {
    pub fn new(namespace: &str, name: &str, hosts: &[String]) -> Self {
        let spec = PortalSpec {
            hosts: hosts.to_vec(),
            mode: OnlineServiceMode::default(),
            size: Size::default(),
            replicas: 1,
            image: None,
        };
        PortalBuilder(Portal { metadata: metadata(Some(namespace), name), spec, status: None })
    }
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.0.spec.replicas = replicas;
        self
    }
    pub fn mode(mut self, mode: OnlineServiceMode) -> Self {
        self.0.spec.mode = mode;
        self
    }
    pub fn size(mut self, size: Size) -> Self {
        self.0.spec.size = size;
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        self.0.spec.image = Some(image.to_owned());
        self
    }
    pub fn build(self) -> Portal {
        self.0
    }
}

/// The annotation that has a new DocumentService take over a retained document volume.
pub const RESTORE_FROM_VOLUME: &str = "govpaas.io/restore-from-volume";

/// A DocumentService: the API's defaults (10Gi retained, signing on, exchange off) until told
/// otherwise.
#[derive(Clone, Debug)]
pub struct DocumentServiceBuilder(DocumentService);

impl DocumentServiceBuilder {
    pub fn new(namespace: &str, name: &str) -> Self {
        let spec = DocumentServiceSpec {
            storage: DocumentStorage::default(),
            exchange: DocumentExchange::default(),
            signing: DocumentSigning::default(),
            host: None,
            size: Size::default(),
            replicas: 1,
            image: None,
        };
        DocumentServiceBuilder(DocumentService { metadata: metadata(Some(namespace), name), spec, status: None })
    }
    /// The document volume's size.
    pub fn storage(mut self, size: &str) -> Self {
        self.0.spec.storage.size = Quantity(size.into());
        self
    }
    pub fn delete_policy(mut self, policy: DeletePolicy) -> Self {
        self.0.spec.storage.delete_policy = policy;
        self
    }
    pub fn storage_class(mut self, class: &str) -> Self {
        self.0.spec.storage.storage_class_name = Some(class.to_owned());
        self
    }
    /// Electronic document exchange over the LGSP.
    pub fn exchange(mut self, enabled: bool) -> Self {
        self.0.spec.exchange.enabled = enabled;
        self
    }
    /// Who may send when no rule names them.
    pub fn default_sender_decision(mut self, decision: AccessDecision) -> Self {
        self.0.spec.exchange.default_decision = decision;
        self
    }
    /// A rule about the senders of agency `code`'s DocumentService `service` (`*`: any of its).
    pub fn sender(mut self, code: &str, service: &str, decision: AccessDecision) -> Self {
        self.0.spec.exchange.senders.push(DocumentSender {
            agency_code: code.to_owned(),
            service: service.to_owned(),
            decision,
        });
        self
    }
    pub fn host(mut self, host: &str) -> Self {
        self.0.spec.host = Some(host.to_owned());
        self
    }
    /// Take over the retained volume `volume` ([`RESTORE_FROM_VOLUME`]).
    pub fn restore_from(mut self, volume: &str) -> Self {
        self.0.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(RESTORE_FROM_VOLUME.into(), volume.into());
        self
    }
    pub fn build(self) -> DocumentService {
        self.0
    }
}

/// A DataSharingService: what it provides and what it consumes.
#[derive(Clone, Debug)]
pub struct DataSharingServiceBuilder(DataSharingService);

impl DataSharingServiceBuilder {
    pub fn new(namespace: &str, name: &str) -> Self {
        let spec = DataSharingServiceSpec { provides: Vec::new(), consumes: Vec::new() };
        DataSharingServiceBuilder(DataSharingService { metadata: metadata(Some(namespace), name), spec, status: None })
    }
    pub fn provides(mut self, api: ProvidedApiBuilder) -> Self {
        self.0.spec.provides.push(api.0);
        self
    }
    pub fn consumes(mut self, api: ConsumedApiBuilder) -> Self {
        self.0.spec.consumes.push(api.0);
        self
    }
    pub fn build(self) -> DataSharingService {
        self.0
    }
}

/// An API a DataSharingService provides: `service:port` under `/`, no consumers, until told
/// otherwise.
#[derive(Clone, Debug)]
pub struct ProvidedApiBuilder(ProvidedApi);

impl ProvidedApiBuilder {
    pub fn new(name: &str, service: &str, port: i32) -> Self {
        ProvidedApiBuilder(ProvidedApi {
            name: name.to_owned(),
            service: service.to_owned(),
            port,
            path: "/".into(),
            description: String::new(),
            open_api: None,
            rate_limit: None,
            open_data: false,
            consumers: Vec::new(),
        })
    }
    /// The path prefix on the Service.
    pub fn path(mut self, path: &str) -> Self {
        self.0.path = path.to_owned();
        self
    }
    pub fn open_data(mut self) -> Self {
        self.0.open_data = true;
        self
    }
    /// Approves every DataSharingService of the agency `agency_code`.
    pub fn approve(self, agency_code: &str) -> Self {
        self.decide(agency_code, AccessDecision::Approve)
    }
    /// Denies every DataSharingService of the agency `agency_code`.
    pub fn deny(self, agency_code: &str) -> Self {
        self.decide(agency_code, AccessDecision::Deny)
    }
    fn decide(mut self, agency_code: &str, decision: AccessDecision) -> Self {
        self.0.consumers.push(ApiConsumer { agency_code: agency_code.to_owned(), service: "*".into(), decision });
        self
    }
}

/// An API a DataSharingService asks to use: `api` of the agency `agency_code`.
#[derive(Clone, Debug)]
pub struct ConsumedApiBuilder(ConsumedApi);

impl ConsumedApiBuilder {
    pub fn new(name: &str, agency_code: &str, api: &str) -> Self {
        ConsumedApiBuilder(ConsumedApi {
            name: name.to_owned(),
            agency_code: Some(agency_code.to_owned()),
            national: false,
            api: api.to_owned(),
            purpose: String::new(),
        })
    }
    /// Why the agency needs the API.
    pub fn purpose(mut self, purpose: &str) -> Self {
        self.0.purpose = purpose.to_owned();
        self
    }
}

/// A Service `name` selecting the Pods labelled `app: <app>`, on `port` (to `target_port`, or the
/// same port).
pub fn service(namespace: &str, name: &str, app: &str, port: i32, target_port: Option<i32>) -> Service {
    Service {
        metadata: metadata(Some(namespace), name),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
            ports: Some(vec![ServicePort {
                port,
                target_port: target_port.map(IntOrString::Int),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

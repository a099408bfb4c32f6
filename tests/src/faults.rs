//! Fault injection support: a synthetic province (agencies, their quotas, their Portals,
//! DocumentServices and DataSharingServices with grants between them), an operator process that can
//! be killed with SIGKILL and restarted at any moment, and the checks that a crash lost nothing and
//! left nothing half-done:
//!
//! - [`Province::not_converged`]: what is not Ready yet (or, for the agencies that ask for more
//!   than their parent has, not refused with `QuotaExceeded`);
//! - [`sample_ledger`]: one atomic list of every ResourceQuota, summed up each agency's subtree and
//!   compared with its quota (what Kubernetes enforces, so what an oversubscription would cost),
//!   and the children's recorded quotas compared with their parent's;
//! - [`Tracker`]: each certificate Secret's leaf and each claim's volume, recorded when first seen
//!   and compared at the end;
//! - [`orphans`]: every object labelled `app.kubernetes.io/managed-by=govpaas-operator` in the
//!   province, of every kind the API server serves, with an owner that exists (route tables, which
//!   cannot have an owner across namespaces, with their DataSharingService or DocumentService).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use govpaas_crds::lgsp::{
    DATA_SHARING_SOURCE, DOCUMENT_SOURCE, ROUTE_TABLE_COMPONENT, SOURCE_KIND_LABEL, SOURCE_NAMESPACE_LABEL,
    SOURCE_UID_LABEL,
};
use govpaas_crds::metadata::{DOMAIN_ANNOTATION, TENANT_LABEL};
use govpaas_crds::quantity::Amount;
use govpaas_crds::quota::{QuotaVector, Resource};
use govpaas_crds::{DataSharingService, DocumentService, Portal, Tenant};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, ResourceQuota, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::Cluster;
use crate::operator::{self, NAMESPACE, SCOPE_LABEL};

/// The field manager the province is applied with.
pub const MANAGER: &str = "govpaas-fault-injection";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by=govpaas-operator";
const COMPONENT: &str = "app.kubernetes.io/component";
const INSTANCE: &str = "app.kubernetes.io/instance";

/// splitmix64: a seeded, replayable sequence for the moments of the kills (the tests crate has no
/// random-number crate, and this needs no more than a well-mixed 64-bit stream).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn uniformly from `[low, high)`.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next_u64() % span)
    }
}

/// A seed from `GOVPAAS_FAULT_SEED`, else from the clock.
pub fn seed() -> u64 {
    std::env::var("GOVPAAS_FAULT_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    })
}

/// A number from the environment, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

/// A tenant quota in whole units (memory and storage in GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub cpu: u32,
    pub memory_gi: u32,
    pub storage_gi: u32,
    pub pods: u32,
    pub services: u32,
    pub public_hosts: u32,
    pub lgsp_apis: u32,
}

impl Quota {
    /// What every agency that runs services gets for its own namespace.
    pub const LEAF: Quota =
        Quota { cpu: 4, memory_gi: 8, storage_gi: 40, pods: 30, services: 15, public_hosts: 6, lgsp_apis: 6 };

    fn times(self, n: u32) -> Quota {
        Quota {
            cpu: self.cpu * n,
            memory_gi: self.memory_gi * n,
            storage_gi: self.storage_gi * n,
            pods: self.pods * n,
            services: self.services * n,
            public_hosts: self.public_hosts * n,
            lgsp_apis: self.lgsp_apis * n,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "cpu": self.cpu.to_string(), "memory": format!("{}Gi", self.memory_gi),
            "storage": format!("{}Gi", self.storage_gi), "pods": self.pods, "services": self.services,
            "publicHosts": self.public_hosts, "lgspApis": self.lgsp_apis,
        })
    }

    /// The same quota as the operator's arithmetic sees it.
    pub fn vector(self) -> QuotaVector {
        let mut v = QuotaVector::default();
        let gi = |n: u32| Amount::from_units(i64::from(n) << 30);
        v.set(Resource::Cpu, Amount::from_units(self.cpu.into()));
        v.set(Resource::Memory, gi(self.memory_gi));
        v.set(Resource::Storage, gi(self.storage_gi));
        v.set(Resource::Pods, Amount::from_units(self.pods.into()));
        v.set(Resource::Services, Amount::from_units(self.services.into()));
        v.set(Resource::PublicHosts, Amount::from_units(self.public_hosts.into()));
        v.set(Resource::LgspApis, Amount::from_units(self.lgsp_apis.into()));
        v
    }
}

/// One agency of the province: a Tenant.
#[derive(Debug, Clone)]
pub struct Agency {
    /// The Tenant's name, and its namespace's.
    pub name: String,
    pub code: String,
    pub level: &'static str,
    pub parent: Option<String>,
    pub quota: Quota,
    /// One of the units that together ask their department for more than it has: some of them
    /// must be refused (`QuotaExceeded`), never all granted.
    pub contended: bool,
}

/// What a service of the province is.
#[derive(Debug, Clone)]
pub enum ServiceKind {
    Portal,
    Documents,
    /// Provides `api` (behind a Service of the same name) to the agency `consumer_code`.
    Provider {
        api: String,
        consumer_code: String,
    },
    /// Consumes `api` of the agency `provider_code`.
    Consumer {
        provider_code: String,
        api: String,
    },
}

/// One service an agency declares in its namespace.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub tenant: String,
    pub name: String,
    pub kind: ServiceKind,
}

impl ServicePlan {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            ServiceKind::Portal => "Portal",
            ServiceKind::Documents => "DocumentService",
            ServiceKind::Provider { .. } | ServiceKind::Consumer { .. } => "DataSharingService",
        }
    }

    /// `Kind namespace/name`, as reports name it.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind_name(), self.tenant, self.name)
    }
}

/// How many contended units there are, and how many of them their department has room for.
pub const CONTENDED: u32 = 3;
pub const CONTENDED_ROOM: u32 = 2;

/// The most agencies one synthetic province holds ([`Province::country`]).
pub const PROVINCE_AGENCIES: usize = 500;

/// A synthetic province: a People's Committee, departments, communes and public-service units,
/// and a department whose units ask for more CPU than it has (the quota ledger's test).
#[derive(Debug, Clone)]
pub struct Province {
    pub scope: String,
    pub agencies: Vec<Agency>,
    pub services: Vec<ServicePlan>,
}

impl Province {
    /// `tenants` agencies (at least 8) and `services` services, in the operator scope `scope`,
    /// named `<prefix>-…`, with agency codes under the province code `code` (`H17`). Several
    /// provinces may share a scope when their prefixes and codes differ.
    pub fn new(scope: &str, prefix: &str, code: &str, tenants: usize, services: usize) -> Self {
        let tenants = tenants.max(8);
        let name = |short: &str| format!("{prefix}-{short}");
        let rest = tenants - 2 - CONTENDED as usize;
        let departments = (rest / 3).max(1);
        let units = rest / 6;
        let communes = rest - departments - units;
        let mut agencies = Vec::new();
        // Departments hold their units' quotas plus their own.
        let units_of = |d: usize| (0..units).filter(|u| u % departments == d).count() as u32;
        let mut department_quotas = Vec::new();
        for d in 0..departments {
            department_quotas.push(Quota::LEAF.times(1 + units_of(d)));
        }
        let contended_parent = Quota { cpu: CONTENDED_ROOM, ..Quota::LEAF };
        let province = Quota::LEAF.times(2 + departments as u32 + units as u32 + communes as u32);
        agencies.push(Agency {
            name: name("p"),
            code: code.to_owned(),
            level: "Province",
            parent: None,
            quota: province,
            contended: false,
        });
        for (d, quota) in department_quotas.iter().enumerate() {
            agencies.push(Agency {
                name: name(&format!("d{d}")),
                code: format!("{code}.{:02}", d + 1),
                level: "Department",
                parent: Some(name("p")),
                quota: *quota,
                contended: false,
            });
        }
        for c in 0..communes {
            agencies.push(Agency {
                name: name(&format!("c{c}")),
                code: format!("{code}.3{c:03}"),
                level: "Commune",
                parent: Some(name("p")),
                quota: Quota::LEAF,
                contended: false,
            });
        }
        for u in 0..units {
            let d = u % departments;
            agencies.push(Agency {
                name: name(&format!("u{u}")),
                code: format!("{code}.{:02}.{:02}", d + 1, u / departments + 1),
                level: "Unit",
                parent: Some(name(&format!("d{d}"))),
                quota: Quota::LEAF,
                contended: false,
            });
        }
        agencies.push(Agency {
            name: name("t"),
            code: format!("{code}.TT"),
            level: "Department",
            parent: Some(name("p")),
            quota: contended_parent,
            contended: false,
        });
        for k in 0..CONTENDED {
            agencies.push(Agency {
                name: name(&format!("t{k}")),
                code: format!("{code}.TT.{:02}", k + 1),
                level: "Unit",
                parent: Some(name("t")),
                quota: Quota {
                    cpu: 1,
                    memory_gi: 1,
                    storage_gi: 5,
                    pods: 5,
                    services: 3,
                    public_hosts: 1,
                    lgsp_apis: 1,
                },
                contended: true,
            });
        }
        // Services go round the agencies that run them (not the contended department's).
        let hosts: Vec<&Agency> = agencies.iter().filter(|a| !a.contended && a.name != name("t")).collect();
        let at = |i: usize| hosts[i % hosts.len()];
        let mut plans = Vec::new();
        for i in 0..services {
            let tenant = at(i).name.clone();
            let (service, kind) = match i % 4 {
                0 => (format!("cong-{i}"), ServiceKind::Portal),
                1 => (format!("vb-{i}"), ServiceKind::Documents),
                2 => (
                    format!("cc-{i}"),
                    ServiceKind::Provider { api: format!("api-{i}"), consumer_code: at(i + 1).code.clone() },
                ),
                _ => (
                    format!("sd-{i}"),
                    ServiceKind::Consumer { provider_code: at(i - 1).code.clone(), api: format!("api-{}", i - 1) },
                ),
            };
            plans.push(ServicePlan { tenant, name: service, kind });
        }
        Province { scope: scope.to_owned(), agencies, services: plans }
    }

    /// `tenants` agencies and `services` services as provinces of at most [`PROVINCE_AGENCIES`]
    /// agencies each, side by side in `scope`: up to that size the one province `new` makes
    /// (`prefix`, `code`); beyond it provinces `<prefix><i>` with codes `H10`, `H11`, … A country is
    /// many provinces, each its own root: one root over 4,000 agencies would ask for more than a
    /// Tenant's quota may hold (the schema's caps).
    pub fn country(scope: &str, prefix: &str, code: &str, tenants: usize, services: usize) -> Self {
        let count = tenants.div_ceil(PROVINCE_AGENCIES).max(1);
        if count == 1 {
            return Province::new(scope, prefix, code, tenants, services);
        }
        assert!(count <= 54, "at most 54 provinces (codes H10 to H63), not {count}");
        let mut country = Province { scope: scope.to_owned(), agencies: Vec::new(), services: Vec::new() };
        for i in 0..count {
            let share = |total: usize| total / count + usize::from(i < total % count);
            let province =
                Province::new(scope, &format!("{prefix}{i}"), &format!("H{}", 10 + i), share(tenants), share(services));
            country.agencies.extend(province.agencies);
            country.services.extend(province.services);
        }
        country
    }

    /// How many provinces (roots) these agencies form.
    pub fn provinces(&self) -> usize {
        self.agencies.iter().filter(|a| a.parent.is_none()).count()
    }

    pub fn agency(&self, name: &str) -> Option<&Agency> {
        self.agencies.iter().find(|a| a.name == name)
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.agencies.iter().map(|a| a.name.clone()).collect()
    }

    fn children<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Agency> + 'a {
        self.agencies.iter().filter(move |a| a.parent.as_deref() == Some(parent))
    }

    /// The Tenant of an agency, as the provincial admin writes it.
    pub fn tenant_manifest(&self, agency: &Agency) -> Value {
        let mut spec = json!({
            "agency": {"code": agency.code, "displayName": format!("Cơ quan thử nghiệm {}", agency.code), "level": agency.level},
            "quota": agency.quota.to_json(),
        });
        if let Some(parent) = &agency.parent {
            spec["parent"] = json!(parent);
        }
        json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": agency.name, "labels": {SCOPE_LABEL: self.scope}},
            "spec": spec,
        })
    }
}

/// Server-side apply of `object` through `api`.
async fn apply<K>(api: &Api<K>, name: &str, object: &Value) -> kube::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object)).await.map(|_| ())
}

/// Applies every Tenant of the province.
pub async fn apply_tenants(client: &Client, province: &Province) -> kube::Result<()> {
    apply_some_tenants(client, province, &province.agencies).await
}

/// Applies the Tenants of `agencies`, agencies of the province.
pub async fn apply_some_tenants(client: &Client, province: &Province, agencies: &[Agency]) -> kube::Result<()> {
    let api: Api<Tenant> = Api::all(client.clone());
    for agency in agencies {
        apply(&api, &agency.name, &province.tenant_manifest(agency)).await?;
    }
    Ok(())
}

/// The agency's DNS domain, once its namespace is provisioned and carries it.
pub async fn provisioned_domain(client: &Client, tenant: &str) -> Option<String> {
    let namespace = Api::<Namespace>::all(client.clone()).get_opt(tenant).await.ok()??;
    namespace.annotations().get(DOMAIN_ANNOTATION).cloned()
}

/// One service's objects, as its agency writes them in its namespace, whose domain is `domain`:
/// for a provider, the Service behind its API first, then the govpaas object.
pub fn service_manifests(plan: &ServicePlan, domain: &str) -> Vec<Value> {
    let ns = plan.tenant.as_str();
    let meta = json!({"name": plan.name, "namespace": ns});
    match &plan.kind {
        ServiceKind::Portal => vec![json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "Portal", "metadata": meta,
            "spec": {"hosts": [format!("{}.{domain}", plan.name)], "replicas": 1},
        })],
        ServiceKind::Documents => vec![json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "DocumentService", "metadata": meta,
            "spec": {"storage": {"size": "1Gi", "deletePolicy": "Retain"}, "exchange": {"enabled": true}},
        })],
        ServiceKind::Provider { api, consumer_code } => vec![
            json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": api, "namespace": ns},
                "spec": {"selector": {"app": api}, "ports": [{"port": 8080}]},
            }),
            json!({
                "apiVersion": "govpaas.io/v1alpha1", "kind": "DataSharingService", "metadata": meta,
                "spec": {"provides": [{
                    "name": api, "service": api, "port": 8080, "path": "/api/v1",
                    "consumers": [{"agencyCode": consumer_code}],
                }]},
            }),
        ],
        ServiceKind::Consumer { provider_code, api } => vec![json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "DataSharingService", "metadata": meta,
            "spec": {"consumes": [{
                "name": format!("nguon-{}", plan.name), "agencyCode": provider_code, "api": api,
                "purpose": "Tra cứu dữ liệu liên thông giữa các cơ quan",
            }]},
        })],
    }
}

/// Applies one service (and, for a provider, the Service behind its API) in its agency's namespace,
/// whose domain is `domain`.
pub async fn apply_service(client: &Client, plan: &ServicePlan, domain: &str) -> kube::Result<()> {
    let ns = plan.tenant.as_str();
    for object in service_manifests(plan, domain) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        match object["kind"].as_str().unwrap_or_default() {
            "Service" => apply(&Api::<Service>::namespaced(client.clone(), ns), &name, &object).await?,
            "Portal" => apply(&Api::<Portal>::namespaced(client.clone(), ns), &name, &object).await?,
            "DocumentService" => apply(&Api::<DocumentService>::namespaced(client.clone(), ns), &name, &object).await?,
            _ => apply(&Api::<DataSharingService>::namespaced(client.clone(), ns), &name, &object).await?,
        }
    }
    Ok(())
}

/// Applies each agency's services as soon as its namespace is provisioned, until all are applied
/// or `deadline` passes; returns what is still unapplied with the last error.
pub async fn apply_services(client: &Client, province: &Province, deadline: Instant) -> Vec<String> {
    let mut pending: Vec<&ServicePlan> = province.services.iter().collect();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut domains: HashMap<String, Option<String>> = HashMap::new();
        let mut still = Vec::new();
        for plan in pending {
            if !domains.contains_key(&plan.tenant) {
                let domain = provisioned_domain(client, &plan.tenant).await;
                domains.insert(plan.tenant.clone(), domain);
            }
            let Some(domain) = domains[&plan.tenant].clone() else {
                still.push(plan);
                continue;
            };
            match apply_service(client, plan, &domain).await {
                Ok(()) => {
                    errors.remove(&plan.describe());
                }
                Err(err) => {
                    errors.insert(plan.describe(), err.to_string());
                    still.push(plan);
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    pending
        .iter()
        .map(|p| format!("{} ({})", p.describe(), errors.get(&p.describe()).map_or("namespace not provisioned", |e| e)))
        .collect()
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn ready(conditions: &[Condition]) -> bool {
    condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

fn ready_summary(conditions: &[Condition]) -> String {
    match condition(conditions, "Ready") {
        Some(c) => format!("Ready={} {}: {}", c.status, c.reason, c.message),
        None => "no Ready condition".into(),
    }
}

impl Province {
    /// What has not converged: each object not Ready (with its Ready condition), and the
    /// contended units unless exactly [`CONTENDED_ROOM`] are Ready and the others refused with
    /// `QuotaExceeded`. Empty when the province has converged.
    pub async fn not_converged(&self, client: &Client) -> kube::Result<Vec<String>> {
        let mut problems = Vec::new();
        let tenants = Api::<Tenant>::all(client.clone())
            .list(&ListParams::default().labels(&format!("{SCOPE_LABEL}={}", self.scope)))
            .await?;
        let by_name: HashMap<String, &Tenant> = tenants.items.iter().map(|t| (t.name_any(), t)).collect();
        let mut contended_ready = 0;
        let mut contended_refused = 0;
        for agency in &self.agencies {
            let Some(tenant) = by_name.get(&agency.name) else {
                problems.push(format!("Tenant {} is missing", agency.name));
                continue;
            };
            let conditions = tenant.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
            if agency.contended {
                let refused = condition(conditions, "QuotaExceeded")
                    .is_some_and(|c| c.status == "True" && c.reason == "QuotaExceeded");
                if ready(conditions) {
                    contended_ready += 1;
                } else if refused {
                    contended_refused += 1;
                }
            } else if !ready(conditions) {
                problems.push(format!("Tenant {}: {}", agency.name, ready_summary(conditions)));
            }
        }
        if contended_ready != CONTENDED_ROOM || contended_refused != CONTENDED - CONTENDED_ROOM {
            problems.push(format!(
                "contended units: {contended_ready} Ready and {contended_refused} refused with QuotaExceeded; \
                 expected {CONTENDED_ROOM} and {}",
                CONTENDED - CONTENDED_ROOM
            ));
        }
        let mut conditions_of: HashMap<String, (Vec<Condition>, Option<String>)> = HashMap::new();
        for portal in Api::<Portal>::all(client.clone()).list(&ListParams::default()).await?.items {
            let key = format!("Portal {}/{}", portal.namespace().unwrap_or_default(), portal.name_any());
            conditions_of.insert(key, (portal.status.map(|s| s.conditions).unwrap_or_default(), None));
        }
        for docs in Api::<DocumentService>::all(client.clone()).list(&ListParams::default()).await?.items {
            let key = format!("DocumentService {}/{}", docs.namespace().unwrap_or_default(), docs.name_any());
            conditions_of.insert(key, (docs.status.map(|s| s.conditions).unwrap_or_default(), None));
        }
        for dss in Api::<DataSharingService>::all(client.clone()).list(&ListParams::default()).await?.items {
            let key = format!("DataSharingService {}/{}", dss.namespace().unwrap_or_default(), dss.name_any());
            let status = dss.status.unwrap_or_default();
            let ungranted = status
                .consumptions
                .iter()
                .find(|c| !matches!(c.state, govpaas_crds::data_sharing::GrantState::Granted))
                .map(|c| format!("consumption {} is {:?} ({}): {}", c.name, c.state, c.reason, c.message));
            conditions_of.insert(key, (status.conditions, ungranted));
        }
        for plan in &self.services {
            match conditions_of.get(&plan.describe()) {
                None => problems.push(format!("{} is missing", plan.describe())),
                Some((conditions, _)) if !ready(conditions) => {
                    problems.push(format!("{}: {}", plan.describe(), ready_summary(conditions)))
                }
                Some((_, Some(ungranted))) => problems.push(format!("{}: {ungranted}", plan.describe())),
                Some(_) => {}
            }
        }
        Ok(problems)
    }
}

/// One sample of the quota ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerSample {
    /// The fullest subtree: its ResourceQuotas' sum over its agency's quota, fullest resource.
    pub max_fill: f64,
    pub violations: Vec<String>,
}

fn ratio(used: Amount, limit: Amount) -> f64 {
    if limit.nanos() == 0 {
        if used.nanos() == 0 { 0.0 } else { f64::INFINITY }
    } else {
        used.nanos() as f64 / limit.nanos() as f64
    }
}

/// Samples the ledger: one list of every ResourceQuota (one consistent read), summed over each
/// agency's own namespace and its descendants', must fit in the agency's quota, resource by
/// resource; and the children's `status.quota.hard` must add up to at most their parent's quota.
pub async fn sample_ledger(client: &Client, province: &Province) -> kube::Result<LedgerSample> {
    let quotas = Api::<ResourceQuota>::all(client.clone()).list(&ListParams::default().labels(MANAGED_BY)).await?;
    let names = province.names();
    let mut own: HashMap<String, QuotaVector> = HashMap::new();
    for rq in &quotas.items {
        let Some(ns) = rq.namespace() else { continue };
        if !names.contains(&ns) {
            continue;
        }
        let hard = rq.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
        let entry = own.entry(ns).or_default();
        for r in Resource::ALL {
            let Some(key) = r.resource_quota_key() else { continue };
            if let Some(q) = hard.get(key)
                && let Ok(amount) = Amount::of(q)
                && let Some(sum) = entry.get(r).checked_add(amount)
            {
                entry.set(r, sum);
            }
        }
    }
    fn subtree(province: &Province, name: &str, own: &HashMap<String, QuotaVector>) -> QuotaVector {
        let mut sum = own.get(name).copied().unwrap_or_default();
        for child in province.children(name) {
            sum = sum.add(&subtree(province, &child.name, own)).unwrap_or(sum);
        }
        sum
    }
    // What the operator recorded: each tenant's applied quota, `status.quota.hard`.
    let tenants = Api::<Tenant>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{SCOPE_LABEL}={}", province.scope)))
        .await?;
    let mut recorded_hard: HashMap<String, QuotaVector> = HashMap::new();
    for tenant in &tenants.items {
        if let Some(hard) = tenant.status.as_ref().and_then(|s| s.quota.as_ref()).map(|q| &q.hard)
            && !hard.is_empty()
            && let Ok(v) = QuotaVector::from_status(hard)
        {
            recorded_hard.insert(tenant.name_any(), v);
        }
    }
    let mut sample = LedgerSample::default();
    for agency in &province.agencies {
        let limit = agency.quota.vector();
        let held = subtree(province, &agency.name, &own);
        for r in Resource::ALL.into_iter().filter(|r| r.resource_quota_key().is_some()) {
            let fill = ratio(held.get(r), limit.get(r));
            if fill > sample.max_fill {
                sample.max_fill = fill;
            }
        }
        for excess in held.excess_over(&limit) {
            // Where it went: the agency's own ResourceQuota and each child's subtree, for this
            // resource, and whether the child's status records the quota it applied.
            let r = excess.resource;
            let parts: Vec<String> = province
                .children(&agency.name)
                .map(|child| {
                    let amount = subtree(province, &child.name, &own).get(r);
                    let recorded = recorded_hard.get(&child.name).map(|v| v.get(r).to_string());
                    format!("{} {amount} (status.quota.hard {})", child.name, recorded.as_deref().unwrap_or("unset"))
                })
                .filter(|part| !part.contains(" 0 (status.quota.hard unset)"))
                .collect();
            sample.violations.push(format!(
                "ResourceQuotas of {} and its descendants: {excess} at resourceVersion {}: its own {}, its children's subtrees: {}",
                agency.name,
                quotas.metadata.resource_version.as_deref().unwrap_or("?"),
                own.get(&agency.name).map(|v| v.get(r)).unwrap_or_default(),
                parts.join(", ")
            ));
        }
    }
    // The children's recorded quotas within their parent's.
    let recorded = &recorded_hard;
    for agency in &province.agencies {
        let mut sum = QuotaVector::default();
        for child in province.children(&agency.name) {
            if let Some(v) = recorded.get(&child.name) {
                sum = sum.add(v).unwrap_or(sum);
            }
        }
        for excess in sum.excess_over(&agency.quota.vector()) {
            sample.violations.push(format!("status.quota.hard of the children of {}: {excess}", agency.name));
        }
    }
    Ok(sample)
}

/// A certificate Secret's leaf or a claim's volume, as first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: String,
    value: String,
}

/// Certificates and volumes, recorded the first time each is seen issued or bound, and every
/// later change.
#[derive(Debug, Default)]
pub struct Tracker {
    certificates: BTreeMap<String, Seen>,
    volumes: BTreeMap<String, Seen>,
    /// Changes seen while sampling: `what: before -> after`.
    pub changes: BTreeSet<String>,
}

/// The first PEM block of `tls.crt`: the leaf.
fn leaf(secret: &Secret) -> Option<String> {
    let crt = secret.data.as_ref()?.get("tls.crt")?;
    let text = String::from_utf8_lossy(&crt.0);
    let end = text.find("-----END CERTIFICATE-----")?;
    Some(text[..end].to_owned())
}

impl Tracker {
    pub fn certificates(&self) -> usize {
        self.certificates.len()
    }

    pub fn volumes(&self) -> usize {
        self.volumes.len()
    }

    fn observe(map: &mut BTreeMap<String, Seen>, changes: &mut BTreeSet<String>, kind: &str, key: String, now: Seen) {
        match map.get(&key) {
            None => {
                map.insert(key, now);
            }
            Some(first) if *first == now => {}
            Some(first) => {
                let what = if first.uid != now.uid { "deleted and re-created" } else { "replaced" };
                changes.insert(format!("{kind} {key}: {what}"));
            }
        }
    }

    /// Records what is issued and bound now in the province's namespaces and, for its tenant CAs,
    /// in the operator's namespace.
    pub async fn sample(&mut self, client: &Client, province: &Province) -> kube::Result<()> {
        let names = province.names();
        let secrets =
            Api::<Secret>::all(client.clone()).list(&ListParams::default().fields("type=kubernetes.io/tls")).await?;
        for secret in &secrets.items {
            let ns = secret.namespace().unwrap_or_default();
            let tenant = secret.labels().get(TENANT_LABEL).cloned().unwrap_or_default();
            if !(names.contains(&ns) || (ns == NAMESPACE && names.contains(&tenant))) {
                continue;
            }
            if let Some(leaf) = leaf(secret) {
                let seen = Seen { uid: secret.uid().unwrap_or_default(), value: leaf };
                Self::observe(
                    &mut self.certificates,
                    &mut self.changes,
                    "certificate",
                    format!("{ns}/{}", secret.name_any()),
                    seen,
                );
            }
        }
        let claims = Api::<PersistentVolumeClaim>::all(client.clone()).list(&ListParams::default()).await?;
        for claim in &claims.items {
            let ns = claim.namespace().unwrap_or_default();
            if !names.contains(&ns) || claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
                continue;
            }
            let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else { continue };
            let seen = Seen { uid: claim.uid().unwrap_or_default(), value: volume };
            Self::observe(&mut self.volumes, &mut self.changes, "claim", format!("{ns}/{}", claim.name_any()), seen);
        }
        Ok(())
    }

    /// At the end: every certificate and claim recorded still there, unchanged, and each volume
    /// present and retained. Returns (certificates re-issued or lost, volumes changed or lost).
    pub async fn verify(&mut self, client: &Client, province: &Province) -> kube::Result<(Vec<String>, Vec<String>)> {
        let before_certificates = self.certificates.clone();
        let before_volumes = self.volumes.clone();
        self.sample(client, province).await?;
        let mut certificates: Vec<String> =
            self.changes.iter().filter(|c| c.starts_with("certificate")).cloned().collect();
        for (key, _) in before_certificates {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            if Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await?.is_none() {
                certificates.push(format!("certificate {key}: lost"));
            }
        }
        let mut volumes: Vec<String> = self.changes.iter().filter(|c| c.starts_with("claim")).cloned().collect();
        for (key, seen) in before_volumes {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            if Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).get_opt(name).await?.is_none() {
                volumes.push(format!("claim {key}: lost"));
            }
            match Api::<PersistentVolume>::all(client.clone()).get_opt(&seen.value).await? {
                None => volumes.push(format!("volume {} of {key}: lost", seen.value)),
                Some(pv) => {
                    let policy = pv.spec.and_then(|s| s.persistent_volume_reclaim_policy).unwrap_or_default();
                    if policy != "Retain" {
                        volumes.push(format!("volume {} of {key}: reclaim policy {policy:?}, not Retain", seen.value));
                    }
                }
            }
        }
        Ok((certificates, volumes))
    }
}

/// Every object labelled `app.kubernetes.io/managed-by=govpaas-operator` that belongs to the
/// province (in its namespaces; or labelled with one of its tenants, in the operator's namespace
/// or cluster-wide), of every kind the API server lists, whose owner is missing: no owner
/// reference, or one naming an object that does not exist (with that uid). Route tables have no
/// owner (it would cross namespaces): theirs is the DataSharingService their labels name.
/// PersistentVolumes are left out (a retained volume outlives its claim by design), and so are
/// Endpoints (kube-controller-manager copies them from a Service, labels and all, without an owner).
pub async fn orphans(client: &Client, province: &Province) -> anyhow::Result<Vec<String>> {
    let names = province.names();
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut objects: Vec<(String, DynamicObject)> = Vec::new();
    let mut uids: HashSet<String> = HashSet::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            // Endpoints are kube-controller-manager's copy of a Service, labels included, made
            // and removed with the Service without an owner reference: not govpaas's objects.
            if !capabilities.supports_operation(verbs::LIST)
                || matches!(resource.kind.as_str(), "Event" | "PersistentVolume" | "Endpoints")
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let Ok(list) = api.list(&ListParams::default().labels(MANAGED_BY)).await else { continue };
            for object in list.items {
                let ns = object.namespace().unwrap_or_default();
                let tenant = object.labels().get(TENANT_LABEL).cloned().unwrap_or_default();
                let ours = names.contains(&ns) || ((ns.is_empty() || ns == NAMESPACE) && names.contains(&tenant));
                if ours {
                    uids.extend(object.uid());
                    objects.push((resource.kind.clone(), object));
                }
            }
        }
    }
    for tenant in Api::<Tenant>::all(client.clone()).list(&ListParams::default()).await?.items {
        uids.extend(tenant.uid());
    }
    let mut found = Vec::new();
    let mut checked: HashMap<String, bool> = HashMap::new();
    for (kind, object) in &objects {
        let ns = object.namespace().unwrap_or_default();
        let what =
            format!("{kind} {}{}", if ns.is_empty() { String::new() } else { format!("{ns}/") }, object.name_any());
        if object.labels().get(COMPONENT).map(String::as_str) == Some(ROUTE_TABLE_COMPONENT) {
            let labels = object.labels();
            let (Some(source_ns), Some(name), Some(uid)) =
                (labels.get(SOURCE_NAMESPACE_LABEL), labels.get(INSTANCE), labels.get(SOURCE_UID_LABEL))
            else {
                found.push(format!("{what}: a route table without its source labels"));
                continue;
            };
            // A DocumentService's exchange table says so by its kind label; a DataSharingService's has none.
            let source_kind = labels.get(SOURCE_KIND_LABEL).map_or(DATA_SHARING_SOURCE, String::as_str);
            let source_uid = if source_kind == DOCUMENT_SOURCE {
                Api::<DocumentService>::namespaced(client.clone(), source_ns).get_opt(name).await?.and_then(|s| s.uid())
            } else {
                Api::<DataSharingService>::namespaced(client.clone(), source_ns)
                    .get_opt(name)
                    .await?
                    .and_then(|s| s.uid())
            };
            if source_uid.as_deref() != Some(uid.as_str()) {
                found.push(format!("{what}: its {source_kind} {source_ns}/{name} (uid {uid}) is gone"));
            }
            continue;
        }
        let owners: &[OwnerReference] = object.metadata.owner_references.as_deref().unwrap_or_default();
        if owners.is_empty() {
            found.push(format!("{what}: no owner reference"));
            continue;
        }
        for owner in owners {
            if uids.contains(&owner.uid) {
                continue;
            }
            let exists = match checked.get(&owner.uid) {
                Some(exists) => *exists,
                None => {
                    let exists = owner_exists(client, &discovery, &ns, owner).await?;
                    checked.insert(owner.uid.clone(), exists);
                    exists
                }
            };
            if !exists {
                found.push(format!("{what}: its owner {} {} (uid {}) is gone", owner.kind, owner.name, owner.uid));
            }
        }
    }
    Ok(found)
}

async fn owner_exists(
    client: &Client,
    discovery: &Discovery,
    ns: &str,
    owner: &OwnerReference,
) -> anyhow::Result<bool> {
    let (group, version) = owner.api_version.split_once('/').unwrap_or(("", owner.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
        return Ok(false);
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    Ok(api.get_opt(&owner.name).await?.and_then(|o| o.uid()).as_deref() == Some(owner.uid.as_str()))
}

/// An operator process for fault injection: like [`operator::OperatorProcess`], with leader
/// election on or off, and telling a kill (ours) from an exit (its own).
pub struct FaultyOperator {
    child: Option<Child>,
    scope: String,
    leader_elect: bool,
    log: PathBuf,
    binary: PathBuf,
    kubeconfig: PathBuf,
    /// How each process ended on its own (never by our SIGKILL): each is a crash.
    pub exits: Vec<String>,
    pub starts: usize,
}

impl FaultyOperator {
    /// Installs the chart if needed and starts an operator for Tenants labelled with `scope`.
    pub fn start(cluster: &Cluster, scope: &str, leader_elect: bool) -> Self {
        let kubeconfig = operator::operator_kubeconfig(cluster);
        let binary = operator::operator_binary(cluster);
        let log = operator::work_dir(cluster).join(format!("operator-{scope}.log"));
        let _ = fs::remove_file(&log);
        let mut process = FaultyOperator {
            child: None,
            scope: scope.to_owned(),
            leader_elect,
            log,
            binary,
            kubeconfig,
            exits: Vec::new(),
            starts: 0,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("opening the operator log");
        writeln!(log, "===== govpaas-operator starting (scope {}, start {}) =====", self.scope, self.starts + 1)
            .expect("writing the operator log");
        let stderr = log.try_clone().expect("cloning the log handle");
        let child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--tenant-selector", &format!("{SCOPE_LABEL}={}", self.scope)])
            .args(["--namespace", NAMESPACE])
            .arg(format!("--leader-elect={}", self.leader_elect))
            .env(
                "RUST_LOG",
                std::env::var("GOVPAAS_TEST_OPERATOR_LOG").unwrap_or_else(|_| "info,govpaas_operator=debug".into()),
            )
            .env("POD_NAME", format!("govpaas-operator-{}", self.scope))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("starting govpaas-operator");
        self.child = Some(child);
        self.starts += 1;
    }

    /// Records an exit the process made on its own since the last look.
    pub fn check_alive(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.record_exit(status);
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    fn record_exit(&mut self, status: ExitStatus) {
        self.exits.push(format!("start {} exited on its own with {status}; log:\n{}", self.starts, self.log_tail(15)));
    }

    /// Starts a new process (after [`FaultyOperator::kill`], or an exit of its own).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL: no graceful shutdown, no Lease released, reconciles cut off wherever they are.
    pub fn kill(&mut self) {
        if self.check_alive()
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it gracefully (SIGTERM), SIGKILL after 15 s.
    pub fn stop(&mut self) {
        self.check_alive();
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// The operator's `/metrics`, or `None` while the running process has not served them yet.
    pub async fn try_metrics(&self) -> Option<String> {
        self.child.as_ref()?;
        operator::http_get_logged(&self.log(), "/metrics").await.ok()
    }

    /// The scope label as `key: value` YAML.
    pub fn scope_label(&self) -> String {
        format!("{SCOPE_LABEL}: {}", self.scope)
    }
}

impl Drop for FaultyOperator {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- govpaas-operator log ({}) ---\n{}", self.log.display(), self.log_tail(60));
        }
    }
}

/// Whether the API server answers `/readyz`.
pub fn readyz(cluster: &Cluster) -> bool {
    cluster
        .kubectl()
        .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Items one per line, or "none".
pub fn report_list(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { format!("\n  {}", items.join("\n  ")) }
}

/// Writes the report where `cargo xtask faults` asked for it (`GOVPAAS_FAULT_REPORT`).
pub fn write_report(report: &xtask::faults::Report) {
    if let Some(path) = std::env::var_os("GOVPAAS_FAULT_REPORT") {
        std::fs::write(&path, serde_json::to_string_pretty(report).expect("the report as JSON"))
            .expect("writing the report");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_country_is_provinces_each_its_own_root() {
        let province = Province::country("s", "bv", "H17", 500, 1500);
        assert_eq!(province.names(), Province::new("s", "bv", "H17", 500, 1500).names());
        assert_eq!(province.provinces(), 1);
        let nation = Province::country("s", "bv", "H17", 4000, 12000);
        assert_eq!((nation.agencies.len(), nation.services.len(), nation.provinces()), (4000, 12000, 8));
        assert_eq!(nation.names().len(), 4000, "names are unique");
        let codes: BTreeSet<&str> = nation.agencies.iter().map(|a| a.code.as_str()).collect();
        assert_eq!(codes.len(), 4000, "agency codes are unique");
        for root in nation.agencies.iter().filter(|a| a.parent.is_none()) {
            // The Tenant schema's caps (crds/src/tenant.rs).
            let q = root.quota;
            assert!(
                q.pods <= 100_000 && q.services <= 10_000 && q.public_hosts <= 10_000 && q.lgsp_apis <= 10_000,
                "{q:?}"
            );
        }
        for plan in &nation.services {
            assert!(nation.agency(&plan.tenant).is_some(), "{} runs in an agency of the nation", plan.describe());
        }
    }

    /// The province asks for nothing its parents cannot give, except in the contended department,
    /// whose units ask for exactly one CPU too many per unit beyond its room.
    #[test]
    fn the_province_fits_its_quotas_except_the_contended_department() {
        for (tenants, services) in [(8, 0), (20, 30), (100, 200)] {
            let province = Province::new("s", "s", "H17", tenants, services);
            assert_eq!(province.agencies.len(), tenants);
            assert_eq!(province.services.len(), services);
            let codes: BTreeSet<&str> = province.agencies.iter().map(|a| a.code.as_str()).collect();
            assert_eq!(codes.len(), tenants, "agency codes are unique");
            for agency in &province.agencies {
                let mut sum = QuotaVector::default();
                for child in province.children(&agency.name) {
                    sum = sum.add(&child.quota.vector()).unwrap();
                    assert!(
                        child.code.starts_with(&format!("{}.", agency.code)),
                        "{} under {}",
                        child.code,
                        agency.code
                    );
                }
                let excess = sum.excess_over(&agency.quota.vector());
                if province.children(&agency.name).any(|c| c.contended) {
                    assert_eq!(excess.len(), 1, "{excess:?}");
                    assert_eq!(excess[0].resource, Resource::Cpu);
                    assert_eq!(excess[0].requested, CONTENDED.to_string());
                    assert_eq!(excess[0].available, CONTENDED_ROOM.to_string());
                } else {
                    assert!(excess.is_empty(), "{}: {excess:?}", agency.name);
                }
            }
            // Every consumer's provider is in the province, and approves it.
            for plan in &province.services {
                if let ServiceKind::Consumer { provider_code, api } = &plan.kind {
                    let consumer = province.agency(&plan.tenant).unwrap();
                    let approved = province.services.iter().any(|p| {
                        matches!(&p.kind, ServiceKind::Provider { api: a, consumer_code } if a == api && *consumer_code == consumer.code)
                            && province.agency(&p.tenant).is_some_and(|a| &a.code == provider_code)
                    });
                    assert!(approved, "{}", plan.describe());
                }
            }
        }
    }

    #[test]
    fn a_seed_replays_the_same_moments() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..20).map(|_| rng.duration(Duration::from_millis(300), Duration::from_secs(6))).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        assert!(draw(7).iter().all(|d| *d >= Duration::from_millis(300) && *d < Duration::from_secs(6)));
    }
}

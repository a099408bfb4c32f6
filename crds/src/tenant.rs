//! `Tenant`: one government agency on the platform.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    agency::{AGENCY_CODE_MAX_LEN, AGENCY_CODE_PATTERN, AgencyLevel},
    common::{DNS_LABEL_PATTERN, HOST_PATTERN, immutable, non_negative_quantity},
    status::CertificateStatus,
};

/// Namespace names a tenant may never own.
pub const RESERVED_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease", "govpaas-system"];

/// One government agency: its electronic agency code, level and place in the agency tree, its
/// admins, its quota (carved out of its parent's) and its namespaces. Created by the provincial
/// admin; the operator provisions namespaces, quotas, network isolation, RBAC and a tenant CA.
// kube's repeated `printcolumn(type_ = …)` arguments look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govpaas.io",
    version = "v1alpha1",
    kind = "Tenant",
    status = "TenantStatus",
    shortname = "tnt",
    category = "govpaas",
    derive = "PartialEq",
    doc = "One government agency on the platform: its agency code, level, parent, admins, quota and namespaces.",
    validation = Rule::new("size(self.metadata.name) <= 63 && !self.metadata.name.contains('.')").message("metadata.name must be a DNS label (at most 63 characters, no dots): it names the tenant's namespace and its domain"),
    validation = Rule::new("size(self.spec.namespaces) > 0 || !(self.metadata.name in ['default', 'kube-system', 'kube-public', 'kube-node-lease', 'govpaas-system'] || self.metadata.name.startsWith('kube-'))").message("metadata.name is a reserved namespace name: a tenant's namespace is named after it unless spec.namespaces lists others"),
    selectable = ".spec.parent",
    selectable = ".spec.agency.code",
    selectable = ".spec.agency.level",
    printcolumn(name = "Code", type_ = "string", json_path = ".spec.agency.code", description = "Electronic agency code"),
    printcolumn(name = "Level", type_ = "string", json_path = ".spec.agency.level"),
    printcolumn(name = "Agency", type_ = "string", json_path = ".spec.agency.displayName", description = "The agency's name"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".status.domain", description = "The tenant's DNS domain"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended", priority = 1),
    printcolumn(name = "CA Expires", type_ = "string", json_path = ".status.ca.notAfter", description = "When the tenant's intermediate CA expires (it is renewed at .status.ca.renewalTime)", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.agency.level != 'Province' || !has(self.parent)").message("a Province has no parent: it is the top of its province's agency tree").field_path(".parent").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("self.agency.level == 'Province' || has(self.parent)").message("parent is required for a Department, Commune or Unit: name the Tenant of the agency it belongs to").field_path(".parent").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Who the agency is.
    pub agency: Agency,

    /// Name of the parent agency's Tenant. Required except for a Province. The parent must be of a
    /// higher level (Province above Department and Commune; a Unit may hang below any agency), the
    /// agency code must extend the parent's, and this quota is carved out of the parent's.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    #[x_kube(validation = immutable("parent"))]
    pub parent: Option<String>,

    /// The tenant's DNS domain; every host of its Portals and DocumentServices must be it or sit
    /// under it. Unset: `<tenant name>.<Platform baseDomain>`. Must sit under the Platform's
    /// `baseDomain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 253), regex(pattern = HOST_PATTERN))]
    pub domain: Option<String>,

    /// Users and groups that administer the agency's namespaces (bound to the
    /// `govpaas-agency-admin` ClusterRole there) and may read this Tenant.
    #[serde(default)]
    pub admins: Admins,

    /// The agency's resources, carved out of its parent's quota: the parent keeps its quota minus
    /// the sum of its children's.
    pub quota: TenantQuota,

    /// The agency's namespaces. Empty: one namespace named after the Tenant, with the whole of the
    /// tenant's own share. Several: each names its share of the quota explicitly.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new("size(self) <= 1 || self.all(n, has(n.quota))").message("each namespace needs a quota share when a tenant has several namespaces").reason(Reason::FieldValueRequired))]
    pub namespaces: Vec<TenantNamespace>,

    /// Suspend the agency: its workloads are scaled to zero, its LGSP routes withdrawn and no new
    /// services accepted; nothing is deleted.
    #[serde(default)]
    pub suspended: bool,

    /// Ways the agency's own Services may reach outside the cluster network. By default none: a
    /// tenant namespace refuses NodePort and LoadBalancer Services (ValidatingAdmissionPolicy
    /// `govpaas-tenant-services`), because public hosts go through Portals and DocumentServices,
    /// behind the platform's ingress, host fence and TLS. `externalIPs` are refused always
    /// (CVE-2020-8554: they let a Service intercept cluster traffic to any address).
    #[serde(default, skip_serializing_if = "Exposure::is_none")]
    pub exposure: Exposure,
}

/// Service exposure the provincial admin allows one tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Allow Services of type NodePort (a port opened on every node of the cluster).
    #[serde(default)]
    pub node_ports: bool,
    /// Allow Services of type LoadBalancer (an address from the cloud's load balancer; it opens
    /// node ports too).
    #[serde(default)]
    pub load_balancers: bool,
}

impl Exposure {
    /// Nothing allowed: the default, left out of the serialised spec.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// The agency's identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Agency {
    /// Electronic agency code (Decision 20/2020/QĐ-TTg), e.g. `H49` or `H49.12`; the legacy QCVN
    /// 102:2016 form `000.00.12.H49` is accepted. At most 35 characters of 0-9, A-Z and '.'.
    /// Unique cluster-wide; immutable.
    #[schemars(length(min = 3, max = AGENCY_CODE_MAX_LEN), regex(pattern = AGENCY_CODE_PATTERN))]
    #[x_kube(validation = immutable("agency.code"))]
    pub code: String,

    /// The agency's official name, in Vietnamese with its diacritics, e.g. "Ủy ban nhân dân tỉnh
    /// Quảng Nam".
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.trim() != ''").message("displayName must not be blank").reason(Reason::FieldValueRequired))]
    #[x_kube(validation = crate::common::visible_text())]
    pub display_name: String,

    /// Province, Department, Commune or Unit. Immutable.
    #[x_kube(validation = immutable("agency.level"))]
    pub level: AgencyLevel,
}

/// Users and groups, as the API server authenticates them. Never a `system:` identity: those are
/// Kubernetes' own (`system:authenticated` is every user, `system:serviceaccounts` every
/// workload, `system:masters` the cluster admins), so one line would hand the agency to them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admins {
    /// User names, e.g. `nguyen.van.a@quangnam.gov.vn`; not `system:…`.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::admin_users")]
    pub users: Vec<String>,
    /// Group names, e.g. `so-noi-vu-admins`; not `system:…`.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::admin_groups")]
    pub groups: Vec<String>,
}

/// The prefix of Kubernetes' own users and groups.
pub const SYSTEM_PREFIX: &str = "system:";

/// Why a `system:` user is refused (the CEL rule's message).
pub const SYSTEM_USER_MESSAGE: &str = "system: users are Kubernetes' own identities (system:anonymous, system:serviceaccount:<namespace>:<name>, system:node:<name>, system:kube-controller-manager…), not people: name a person of the province's identity provider";
/// Why a `system:` group is refused (the CEL rule's message).
pub const SYSTEM_GROUP_MESSAGE: &str = "system: groups are Kubernetes' own (system:authenticated, system:unauthenticated, system:serviceaccounts, system:serviceaccounts:<namespace>, system:masters, system:nodes…): one line would make every user, every workload or the cluster admins agency admins; name a group of the province's identity provider";
/// Why a blank name, or one with surrounding whitespace, is refused (the CEL rule's message).
pub const ADMIN_WHITESPACE_MESSAGE: &str =
    "must not be blank or start or end with whitespace: the API server matches names exactly";

impl Admins {
    /// The rules of the schema in Rust (defence in depth for the controller): one message per
    /// refused name, naming its field.
    pub fn problems(&self) -> Vec<String> {
        let lists = [("users", &self.users, SYSTEM_USER_MESSAGE), ("groups", &self.groups, SYSTEM_GROUP_MESSAGE)];
        let mut problems = Vec::new();
        for (field, names, system) in lists {
            for (i, name) in names.iter().enumerate() {
                let at = format!("spec.admins.{field}[{i}] {name:?}");
                if name.is_empty() || name.trim() != name {
                    problems.push(format!("{at} {ADMIN_WHITESPACE_MESSAGE}"));
                } else if name.starts_with(SYSTEM_PREFIX) {
                    problems.push(format!("{at}: {system}"));
                } else if let Some((position, c)) = crate::common::invisible_character(name) {
                    problems.push(format!(
                        "{at} has U+{:04X} at {position}: {}",
                        u32::from(c),
                        crate::common::VISIBLE_TEXT_MESSAGE
                    ));
                }
            }
        }
        problems
    }
}

impl Agency {
    /// The rules of the schema about free text in Rust (defence in depth for the controller).
    pub fn problems(&self) -> Vec<String> {
        let name = &self.display_name;
        let mut problems = Vec::new();
        if name.trim().is_empty() {
            problems.push("spec.agency.displayName must not be blank".to_owned());
        }
        if let Some((position, c)) = crate::common::invisible_character(name) {
            problems.push(format!(
                "spec.agency.displayName has U+{:04X} at character {position}: {}",
                u32::from(c),
                crate::common::VISIBLE_TEXT_MESSAGE
            ));
        }
        problems
    }
}

/// A tenant's quota. CPU, memory, storage, pods and Services become ResourceQuotas on its
/// namespaces; public hosts and LGSP APIs are counted by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    /// CPU requests, in cores (`8`, `500m`).
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub cpu: Quantity,
    /// Memory requests, in bytes (`16Gi`).
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub memory: Quantity,
    /// Persistent storage requested by volume claims, in bytes (`100Gi`).
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub storage: Quantity,
    /// Pods.
    #[schemars(range(min = 0, max = 100_000))]
    pub pods: i32,
    /// Kubernetes Services (each Portal and DocumentService runs one).
    #[schemars(range(min = 0, max = 10_000))]
    pub services: i32,
    /// Host names that Portals and DocumentServices may serve publicly.
    #[schemars(range(min = 0, max = 10_000))]
    pub public_hosts: i32,
    /// APIs that DataSharingServices may provide on the LGSP.
    #[schemars(range(min = 0, max = 10_000))]
    pub lgsp_apis: i32,
}

/// One of a tenant's namespaces.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantNamespace {
    /// Namespace name; unique cluster-wide; never a system namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    #[x_kube(validation = Rule::new("!(self in ['default', 'kube-system', 'kube-public', 'kube-node-lease', 'govpaas-system']) && !self.startsWith('kube-')").message("is a reserved namespace name: choose another").reason(Reason::FieldValueForbidden))]
    pub name: String,
    /// This namespace's share of the tenant's quota. Required when there are several namespaces;
    /// the shares together must fit the tenant's own share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<NamespaceQuota>,
}

/// A namespace's share of its tenant's quota.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceQuota {
    /// CPU requests, in cores.
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub cpu: Quantity,
    /// Memory requests, in bytes.
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub memory: Quantity,
    /// Persistent storage, in bytes.
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub storage: Quantity,
    /// Pods.
    #[schemars(range(min = 0, max = 100_000))]
    pub pods: i32,
    /// Kubernetes Services.
    #[schemars(range(min = 0, max = 10_000))]
    pub services: i32,
}

/// What the operator observed of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions listed for this kind in `crate::conditions` (the generated CRD describes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The tenant's effective DNS domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The namespaces the operator provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The Tenants whose parent this is, by name; their quotas are carved out of this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Quota: the tenant's, what its children took, its own share and what is in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStatus>,
    /// How many services of each kind the tenant runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceCounts>,
    /// The tenant's intermediate CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateStatus>,
}

/// Quota accounting, by resource name (`cpu`, `memory`, `storage`, `pods`, `services`,
/// `publicHosts`, `lgspApis`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// The tenant's quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, Quantity>,
    /// The sum of the children's quotas, carved out of `hard`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, Quantity>,
    /// What the tenant's own namespaces get: `hard` minus `children`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub own: BTreeMap<String, Quantity>,
    /// In use in the tenant's own namespaces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, Quantity>,
}

/// Services per kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCounts {
    /// Portals.
    pub portals: i32,
    /// DocumentServices.
    pub document_services: i32,
    /// DataSharingServices.
    pub data_sharing_services: i32,
}

impl Tenant {
    /// The namespaces this tenant owns: those listed, or one named after it.
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespace_refs().into_iter().map(str::to_owned).collect()
    }

    /// [`Tenant::namespace_names`], borrowed.
    pub fn namespace_refs(&self) -> Vec<&str> {
        if self.spec.namespaces.is_empty() {
            vec![self.metadata.name.as_deref().unwrap_or_default()]
        } else {
            self.spec.namespaces.iter().map(|n| n.name.as_str()).collect()
        }
    }

    /// The tenant's domain: `spec.domain`, or `<name>.<base domain>`.
    pub fn domain(&self, base_domain: &str) -> String {
        match &self.spec.domain {
            Some(domain) => domain.clone(),
            None => format!("{}.{base_domain}", kube::ResourceExt::name_any(self)),
        }
    }
}

//! `Platform`: the province's one set of platform-wide settings, named `default`.

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        DURATION_MAX, DURATION_PATTERN, HOST_PATTERN, IMAGE_PATTERN, RateLimit, duration_at_least, duration_at_most,
        duration_not_longer, non_negative_quantity, visible_text,
    },
    status::CertificateStatus,
};

/// The name of the one Platform.
pub const PLATFORM_NAME: &str = "default";

/// Platform-wide settings of govpaas: the province's base domain, ingress and storage classes,
/// default images, size presets, the certificate authority, certificate lifetimes and the LGSP
/// gateway. There is exactly one, named `default`; the platform engineer owns it.
// kube's repeated `printcolumn(type_ = …)` arguments look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govpaas.io",
    version = "v1alpha1",
    kind = "Platform",
    status = "PlatformStatus",
    shortname = "gpf",
    category = "govpaas",
    derive = "PartialEq",
    doc = "Platform-wide settings of govpaas: base domain, ingress and storage classes, images, size presets, the certificate authority and the LGSP gateway. Exactly one exists, named `default`.",
    validation = Rule::new("self.metadata.name == 'default'").message("metadata.name must be 'default': a cluster has exactly one Platform, named default"),
    printcolumn(name = "Base Domain", type_ = "string", json_path = ".spec.baseDomain", description = "Domain under which every tenant gets its own"),
    printcolumn(name = "CA", type_ = "string", json_path = ".spec.ca.mode", description = "Generated root or imported intermediate"),
    printcolumn(name = "CA Expires", type_ = "string", json_path = ".status.ca.notAfter", description = "When the platform CA certificate expires"),
    printcolumn(name = "Trust", type_ = "string", json_path = ".status.trust.phase", description = "Stable, or the phase of a CA rotation under way"),
    printcolumn(name = "Tenants", type_ = "integer", json_path = ".status.tenants", description = "Tenants on the platform"),
    printcolumn(name = "Tenants Ready", type_ = "integer", json_path = ".status.readyTenants", description = "Tenants whose Ready condition is True"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// The province's DNS domain (e.g. `quangnam.gov.vn`). A tenant's domain defaults to
    /// `<tenant name>.<baseDomain>` and must sit under it; the LGSP gateway is served at
    /// `lgsp.<baseDomain>` unless `lgsp.host` says otherwise.
    #[schemars(length(min = 3, max = 253), regex(pattern = HOST_PATTERN))]
    pub base_domain: String,

    /// IngressClass for the Ingresses of every Portal and DocumentService. Unset: the cluster's
    /// default IngressClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::common::DNS_SUBDOMAIN_PATTERN))]
    pub ingress_class_name: Option<String>,

    /// Namespace of the ingress controller: every tenant's NetworkPolicies admit traffic from it.
    /// Unset: `ingress-nginx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::common::DNS_LABEL_PATTERN))]
    pub ingress_namespace: Option<String>,

    /// StorageClass for the volumes of DocumentServices that name none. Unset: the cluster's
    /// default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::common::DNS_SUBDOMAIN_PATTERN))]
    pub storage_class_name: Option<String>,

    /// Container images run for each kind of service, unless a service overrides its own.
    #[serde(default)]
    pub images: Images,

    /// CPU and memory of one replica for each size a service can choose.
    #[serde(default)]
    pub sizes: SizePresets,

    /// The platform's certificate authority, root of every tenant CA.
    #[serde(default)]
    pub ca: CaSettings,

    /// How long each kind of certificate is valid, and when in its lifetime it is renewed.
    #[serde(default)]
    pub certificates: CertificateLifetimes,

    /// The LGSP gateway: the province's front door for data sharing between agencies and to the
    /// national data exchange platform (NDXP).
    #[serde(default)]
    pub lgsp: LgspSettings,

    /// The nodes agency workloads (the Pods of Portals and DocumentServices) run on, e.g. the Data
    /// Integration Centre's node pool for agencies. Unset: any node the scheduler picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_nodes: Option<NodePool>,
}

/// A set of nodes: the labels they carry and the taints Pods placed on them tolerate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePool {
    /// Node labels the Pods require (a nodeSelector).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[schemars(extend("additionalProperties" = {"type": "string", "maxLength": 63, "description": "The label's value."}))]
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Taints of those nodes the Pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub tolerations: Vec<NodeToleration>,
}

/// One taint the Pods tolerate, as a Pod's `tolerations[]` entry says it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeToleration {
    /// The taint's key (a label key). Unset with `operator: Exists`: every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 316))]
    pub key: Option<String>,
    /// `Exists` (any value) or `Equal` (the value below). Unset: `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// The taint's value, for `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub value: Option<String>,
    /// The taint effect tolerated. Unset: every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// How a toleration matches a taint's value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

/// What a taint does to Pods that do not tolerate it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl NodeToleration {
    /// The Pod's toleration.
    pub fn to_toleration(&self) -> k8s_openapi::api::core::v1::Toleration {
        k8s_openapi::api::core::v1::Toleration {
            key: self.key.clone(),
            operator: self.operator.map(|o| format!("{o:?}")),
            value: self.value.clone(),
            effect: self.effect.map(|e| format!("{e:?}")),
            toleration_seconds: None,
        }
    }
}

/// Default container images, one per kind of service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// Image of a Portal's web server.
    #[serde(default = "default_portal_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = IMAGE_PATTERN))]
    pub portal: String,
    /// Image of a DocumentService (document management and edXML exchange).
    #[serde(default = "default_document_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = IMAGE_PATTERN))]
    pub document_service: String,
    /// Image of the LGSP gateway.
    #[serde(default = "default_gateway_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = IMAGE_PATTERN))]
    pub gateway: String,
}

fn default_portal_image() -> String {
    "ghcr.io/govpaas/portal:0.1.0".into()
}
fn default_document_image() -> String {
    "ghcr.io/govpaas/document-service:0.1.0".into()
}
fn default_gateway_image() -> String {
    concat!("govpaas.local/govpaas-gateway:", env!("CARGO_PKG_VERSION")).into()
}

impl Default for Images {
    fn default() -> Self {
        Self {
            portal: default_portal_image(),
            document_service: default_document_image(),
            gateway: default_gateway_image(),
        }
    }
}

/// The sizes services choose from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizePresets {
    /// `size: small`.
    #[serde(default = "SizePreset::small")]
    pub small: SizePreset,
    /// `size: medium`.
    #[serde(default = "SizePreset::medium")]
    pub medium: SizePreset,
    /// `size: large`.
    #[serde(default = "SizePreset::large")]
    pub large: SizePreset,
}

impl Default for SizePresets {
    fn default() -> Self {
        Self { small: SizePreset::small(), medium: SizePreset::medium(), large: SizePreset::large() }
    }
}

/// Requests and limits of one replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!isQuantity(string(self.limits.cpu)) || !isQuantity(string(self.requests.cpu)) || quantity(string(self.limits.cpu)).compareTo(quantity(string(self.requests.cpu))) >= 0").message("limits.cpu must be at least requests.cpu").field_path(".limits.cpu"))]
#[x_kube(validation = Rule::new("!isQuantity(string(self.limits.memory)) || !isQuantity(string(self.requests.memory)) || quantity(string(self.limits.memory)).compareTo(quantity(string(self.requests.memory))) >= 0").message("limits.memory must be at least requests.memory").field_path(".limits.memory"))]
#[serde(rename_all = "camelCase")]
pub struct SizePreset {
    /// What the scheduler reserves for one replica.
    pub requests: ComputeResources,
    /// The most one replica may use.
    pub limits: ComputeResources,
}

impl SizePreset {
    fn of(requests: (&str, &str), limits: (&str, &str)) -> Self {
        Self {
            requests: ComputeResources::new(requests.0, requests.1),
            limits: ComputeResources::new(limits.0, limits.1),
        }
    }
    fn small() -> Self {
        Self::of(("100m", "128Mi"), ("500m", "512Mi"))
    }
    fn medium() -> Self {
        Self::of(("250m", "512Mi"), ("1", "1Gi"))
    }
    fn large() -> Self {
        Self::of(("500m", "1Gi"), ("2", "4Gi"))
    }
}

/// CPU and memory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// CPU, in cores: `500m`, `2`.
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub cpu: Quantity,
    /// Memory, in bytes: `512Mi`, `4Gi`.
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = non_negative_quantity())]
    pub memory: Quantity,
}

impl ComputeResources {
    /// From quantity strings.
    pub fn new(cpu: &str, memory: &str) -> Self {
        Self { cpu: Quantity(cpu.into()), memory: Quantity(memory.into()) }
    }
}

/// Where the platform's certificate authority comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CaMode {
    /// The operator generates a self-signed root CA and keeps it in `ca.secretName`.
    #[default]
    Generate,
    /// The operator uses an intermediate CA issued by the government CA, read from `ca.secretName`
    /// (`tls.crt` with its chain, `tls.key`), which the platform engineer creates.
    Import,
}

/// The platform certificate authority.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CaSettings {
    /// `Generate` a root, or `Import` an intermediate issued by the government CA.
    #[serde(default)]
    pub mode: CaMode,
    /// Secret in the operator's namespace holding the CA (`tls.crt`, `tls.key`); never readable
    /// by tenants.
    #[serde(default = "default_ca_secret")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::common::DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Organization (O) in the subject of the generated root and of every tenant CA.
    #[serde(default = "default_ca_organization")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = visible_text())]
    pub organization: String,
    /// Key type of the CAs the operator generates: the root (in `Generate` mode) and every tenant
    /// CA. Leaves keep ECDSA P-256, which every browser accepts. Changing it affects CAs generated
    /// from then on (a new tenant, a renewal, a rotation), never an existing one.
    #[serde(default)]
    pub key_algorithm: CaKeyAlgorithm,
    /// During a CA rotation, how long the two-CA trust bundle must have been everywhere before
    /// certificates are re-issued from the new CA: time for kubelets to refresh mounted
    /// ConfigMaps and Secrets (about a minute by default) and for every client to reload its
    /// trust. A rotation starts when `secretName` is changed to a Secret holding another CA.
    #[serde(default = "default_propagation_delay")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_most("propagationDelay", "720h", "30 days"))]
    pub propagation_delay: String,
}

/// The key type of generated CAs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CaKeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519 (verifiers of a portal's chain must accept Ed25519 signatures: rustls and current
    /// OpenSSL do; some browsers do not).
    Ed25519,
}

fn default_ca_secret() -> String {
    "govpaas-ca".into()
}
fn default_ca_organization() -> String {
    "govpaas".into()
}
fn default_propagation_delay() -> String {
    "10m".into()
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            mode: CaMode::default(),
            secret_name: default_ca_secret(),
            organization: default_ca_organization(),
            key_algorithm: CaKeyAlgorithm::default(),
            propagation_delay: default_propagation_delay(),
        }
    }
}

/// Certificate lifetimes, as Go durations in hours, minutes and seconds (`2160h` = 90 days).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new(duration_not_longer("tenantCa", "rootCa")).message("tenantCa must not outlive rootCa: a CA cannot issue beyond its own expiry").field_path(".tenantCa"))]
#[x_kube(validation = Rule::new(format!("{} && {} && {}", duration_not_longer("server", "tenantCa"), duration_not_longer("client", "tenantCa"), duration_not_longer("signing", "tenantCa"))).message("server, client and signing certificates must not outlive tenantCa"))]
#[serde(rename_all = "camelCase")]
pub struct CertificateLifetimes {
    /// The generated root CA (ignored for an imported CA, which has its own).
    #[serde(default = "default_root_ca")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("24h"))]
    #[x_kube(validation = duration_at_most("rootCa", DURATION_MAX, "100 years"))]
    pub root_ca: String,
    /// Each tenant's intermediate CA.
    #[serde(default = "default_tenant_ca")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("24h"))]
    #[x_kube(validation = duration_at_most("tenantCa", DURATION_MAX, "100 years"))]
    pub tenant_ca: String,
    /// TLS server certificates of Portals, DocumentServices and the gateway.
    #[serde(default = "default_leaf")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("1h"))]
    #[x_kube(validation = duration_at_most("server", DURATION_MAX, "100 years"))]
    pub server: String,
    /// Client certificates of LGSP consumers.
    #[serde(default = "default_leaf")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("1h"))]
    #[x_kube(validation = duration_at_most("client", DURATION_MAX, "100 years"))]
    pub client: String,
    /// Document-signing certificates of DocumentServices.
    #[serde(default = "default_signing")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("1h"))]
    #[x_kube(validation = duration_at_most("signing", DURATION_MAX, "100 years"))]
    pub signing: String,
    /// The percentage of its lifetime (notBefore to notAfter) after which every certificate is
    /// renewed: 67 renews a 90-day certificate after about 60 days.
    #[serde(default = "default_renewal_percent")]
    #[schemars(range(min = 50, max = 90))]
    pub renewal_percent: i32,
}

fn default_renewal_percent() -> i32 {
    67
}

fn default_root_ca() -> String {
    "87600h".into()
}
fn default_tenant_ca() -> String {
    "43800h".into()
}
fn default_leaf() -> String {
    "2160h".into()
}
fn default_signing() -> String {
    "8760h".into()
}

impl Default for CertificateLifetimes {
    fn default() -> Self {
        Self {
            root_ca: default_root_ca(),
            tenant_ca: default_tenant_ca(),
            server: default_leaf(),
            client: default_leaf(),
            signing: default_signing(),
            renewal_percent: default_renewal_percent(),
        }
    }
}

/// The LGSP gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LgspSettings {
    /// Public host name of the gateway. Unset: `lgsp.<baseDomain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 253), regex(pattern = HOST_PATTERN))]
    pub host: Option<String>,
    /// Gateway replicas.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: i32,
    /// Rate limit of a provided API that sets none, per consumer.
    #[serde(default)]
    pub default_rate_limit: RateLimit,
    /// How often the gateway signs a checkpoint of its hash-chained audit log.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_at_least("1s"))]
    #[x_kube(validation = duration_at_most("checkpointInterval", "24h", "a day"))]
    pub checkpoint_interval: String,
    /// The national data exchange platform (NDXP) the gateway forwards national routes to. Unset:
    /// APIs of the national platform cannot be consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndxp: Option<NdxpUpstream>,
}

fn default_gateway_replicas() -> i32 {
    2
}
fn default_checkpoint_interval() -> String {
    "5m".into()
}

impl Default for LgspSettings {
    fn default() -> Self {
        Self {
            host: None,
            replicas: default_gateway_replicas(),
            default_rate_limit: RateLimit::default(),
            checkpoint_interval: default_checkpoint_interval(),
            ndxp: None,
        }
    }
}

/// The national data exchange platform.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NdxpUpstream {
    /// Base URL of the NDXP, `https://…`.
    #[schemars(length(min = 9, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''").message("must be an absolute https:// URL"))]
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("must have no query or fragment: the gateway appends each request's path to it"))]
    #[x_kube(validation = crate::common::url_path_rule())]
    pub url: String,
    /// The province's agency code as the NDXP knows it (the client identity of national routes).
    #[schemars(length(min = 3, max = 35), regex(pattern = crate::agency::AGENCY_CODE_PATTERN))]
    pub agency_code: String,
    /// ConfigMap in the operator's namespace whose `ca.crt` holds the CAs that sign the NDXP's
    /// server certificate: the gateway verifies the NDXP against these only (never skipped, never
    /// the system's roots).
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::common::DNS_SUBDOMAIN_PATTERN))]
    pub ca_config_map: String,
    /// Secret (`kubernetes.io/tls`) in the operator's namespace holding the client certificate the
    /// national platform's CA issued to the province, and its key: the gateway's identity toward
    /// the NDXP. Unset: the platform CA issues one for `agencyCode` — for test environments, whose
    /// mock NDXP trusts the platform CA (`status.ndxp.clientIdentity` says which is in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::common::DNS_SUBDOMAIN_PATTERN))]
    pub client_secret_name: Option<String>,
    /// The national APIs agencies of the province may consume (the catalogue). A consumption of an
    /// API not listed here is `Denied` with reason `ApiNotFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("lists the same national API twice: list each once"))]
    pub apis: Vec<NationalApi>,
}

/// A national API the province's agencies may consume through the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NationalApi {
    /// The NDXP's name for the API; agencies consume it by this name, and the gateway serves it at
    /// `/ndxp/<name>/`, forwarded to `<url>/<name>/`.
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::common::DNS_LABEL_PATTERN))]
    pub name: String,
    /// What it offers, for agency staff (`kubectl get platform -o yaml` shows it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = crate::common::visible_text())]
    pub description: String,
    /// Per consumer. Unset: `lgsp.defaultRateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// The province's client identity toward the national platform, as in force.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NdxpStatus {
    /// `Provided` (the Secret `lgsp.ndxp.clientSecretName`, issued by the national platform's CA)
    /// or `IssuedByPlatformCa` (no Secret named: for test environments only).
    pub client_identity: String,
    /// The Secret the gateway mounts: the client certificate, its key, the NDXP's CAs and URL.
    pub secret_name: String,
    /// The client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
}

/// What the operator observed of the platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions listed for this kind in `crate::conditions` (the generated CRD describes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The platform CA certificate named by `spec.ca.secretName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateStatus>,
    /// The province's client identity toward the national platform, when `lgsp.ndxp` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndxp: Option<NdxpStatus>,
    /// The trust bundle every tenant receives, and the progress of a CA rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustStatus>,
    /// The LGSP gateway's public URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// Tenants on the platform. Counted by the operator that reconciles every Tenant (one run
    /// without `--tenant-selector`); an operator scoped to some Tenants leaves it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<i32>,
    /// Of those, the Tenants whose `Ready` condition is `True`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_tenants: Option<i32>,
}

/// The platform trust bundle and its rotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustStatus {
    /// `Stable` (one CA), `Distributing` (the new CA is joining every bundle; certificates still
    /// come from the old one) or `Reissuing` (certificates are re-issued from the new CA; the old
    /// one leaves the bundles when none chains to it any more).
    pub phase: String,
    /// The CAs in every trust bundle, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cas: Vec<TrustedCa>,
    /// Distributing: when certificates start to be re-issued from the new CA, at the earliest
    /// (the new CA joined the bundles plus `spec.ca.propagationDelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_after: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Distributing: trust bundles and certificate Secrets that do not carry the two-CA bundle yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundles_pending: Option<i32>,
    /// During a rotation: tenant CAs and certificates that still chain to the old CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_old_ca: Option<i32>,
    /// During a rotation: tenant CAs and certificates already chaining to the new CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_new_ca: Option<i32>,
    /// Some of what the rotation waits for (`namespace/secret` or `namespace/configmap`), at most ten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

/// A CA of the trust bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedCa {
    /// The Secret in the operator's namespace that holds it.
    pub secret_name: String,
    /// SHA-256 fingerprint of its certificate, hex.
    pub fingerprint: String,
    /// `issuing`, `retiring` (leaving the bundle once nothing chains to it) or `joining` (in the
    /// bundle, issuing once the propagation delay has passed).
    pub role: String,
}

//! `DataSharingService`: APIs an agency provides to others over the LGSP, and the APIs of other
//! agencies (or of the national platform) it consumes.
//!
//! A grant is active only when both sides declare it (X-Road's access rights): the consumer lists
//! the API in `consumes`, the provider lists the consumer's agency in that API's `consumers`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    agency::{AGENCY_CODE_MAX_LEN, AGENCY_CODE_PATTERN, normalise_cel},
    common::{
        DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, HTTP_PATH_PATTERN, RateLimit, http_path_no_ascii_percent_encoding,
        http_path_no_dot_segments, http_path_no_empty_segments, visible_text,
    },
    status::CertificateStatus,
};

/// APIs the agency provides to other agencies over the province's LGSP, and APIs of other
/// agencies or of the national data exchange platform (NDXP) it consumes. A consumption is
/// granted only when the provider approves the consumer's agency.
// kube's repeated `printcolumn(type_ = …)` arguments look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govpaas.io",
    version = "v1alpha1",
    kind = "DataSharingService",
    namespaced,
    status = "DataSharingServiceStatus",
    shortname = "dss",
    category = "govpaas",
    derive = "PartialEq",
    doc = "APIs an agency provides over the LGSP and APIs of other agencies or of the national platform it consumes.",
    printcolumn(
        name = "Provides",
        type_ = "integer",
        json_path = ".status.providedApis",
        description = "APIs registered on the gateway"
    ),
    printcolumn(
        name = "Granted",
        type_ = "integer",
        json_path = ".status.grantedConsumptions",
        description = "Consumptions the providers approved"
    ),
    printcolumn(
        name = "Pending",
        type_ = "integer",
        json_path = ".status.pendingConsumptions",
        description = "Consumptions waiting for the provider"
    ),
    printcolumn(name = "Gateway", type_ = "string", json_path = ".status.gatewayUrl"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("size(self.provides) + size(self.consumes) > 0").message("a DataSharingService must provide or consume at least one API").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct DataSharingServiceSpec {
    /// APIs this agency offers, each addressed on the gateway by the agency's code and the API's
    /// name.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub provides: Vec<ProvidedApi>,

    /// APIs of other agencies, or of the national platform, that this agency asks to use.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = consumes_each_api_once())]
    pub consumes: Vec<ConsumedApi>,
}

/// An API the agency provides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.openData || size(self.consumers) == 0").message("an open-data API is served to everyone without a client certificate: it takes no consumers").field_path(".consumers").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct ProvidedApi {
    /// The API's name, unique within the agency; consumers ask for it by this name. `edoc` is
    /// the agency's document exchange (`/<agency code>/edoc/…` on the gateway), never an API.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    #[x_kube(validation = Rule::new("self != 'edoc'").message("edoc names the agency's document exchange endpoints on the LGSP gateway (/<agency code>/edoc/…): choose another API name"))]
    pub name: String,
    /// The Service, in this namespace, that serves the API.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub service: String,
    /// The Service's port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path prefix on the Service under which the API lives.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 256), regex(pattern = HTTP_PATH_PATTERN))]
    #[x_kube(validation = http_path_no_dot_segments())]
    #[x_kube(validation = http_path_no_empty_segments())]
    #[x_kube(validation = http_path_no_ascii_percent_encoding())]
    pub path: String,
    /// What the API offers, for the agencies that may ask for it (Vietnamese welcome).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = visible_text())]
    pub description: String,
    /// Where the API's OpenAPI document is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_api: Option<OpenApiDocument>,
    /// Rate limit per consumer. Unset: the Platform's `lgsp.defaultRateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Open data: served to anyone, without a client certificate, rate-limited per client
    /// address.
    #[serde(default)]
    pub open_data: bool,
    /// The agencies this agency approves (or explicitly denies) as consumers of the API.
    #[serde(default)]
    #[schemars(length(max = 128))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["agencyCode".into(), "service".into()]))]
    pub consumers: Vec<ApiConsumer>,
}

/// CEL on `consumes`: no API of one provider twice, its agency compared normalised (`H48.12` and
/// `000.00.12.H48` are one provider).
fn consumes_each_api_once() -> Rule {
    let agency = |c: &str| format!("(has({c}.agencyCode) ? {} : '')", normalise_cel(&format!("{c}.agencyCode")));
    Rule::new(format!(
        "self.all(a, self.exists_one(b, b.api == a.api && b.national == a.national && {} == {}))",
        agency("b"),
        agency("a")
    ))
    .message(
        "consumes the same API twice (an agency's code in either form is one agency): list each provider's API once",
    )
}

fn default_path() -> String {
    "/".into()
}

/// An OpenAPI document kept in a ConfigMap of this namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OpenApiDocument {
    /// The ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub config_map: String,
    /// The key in the ConfigMap.
    #[serde(default = "default_openapi_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("'.' and '..' are not ConfigMap keys: name the key that holds the document"))]
    pub key: String,
}

fn default_openapi_key() -> String {
    "openapi.yaml".into()
}

/// A provider's decision about a consumer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessDecision {
    /// The consumer may call the API once it asks for it.
    #[default]
    Approve,
    /// The consumer's request is refused; its status says so.
    Deny,
}

/// A consuming agency, as its provider sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiConsumer {
    /// The consuming agency's code.
    #[schemars(length(min = 3, max = AGENCY_CODE_MAX_LEN), regex(pattern = AGENCY_CODE_PATTERN))]
    pub agency_code: String,
    /// The consuming DataSharingService's name, or `*` for any of the agency's.
    #[serde(default = "default_any_service")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$"))]
    pub service: String,
    /// `Approve` (default) or `Deny`.
    #[serde(default)]
    pub decision: AccessDecision,
}

fn default_any_service() -> String {
    "*".into()
}

/// An API the agency asks to use.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.agencyCode) != self.national").message("set exactly one of agencyCode (another agency's API) and national: true (an API of the national platform)").field_path(".agencyCode"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumedApi {
    /// A local name for this consumption; the client certificate Secret and status use it.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// The providing agency's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = AGENCY_CODE_MAX_LEN), regex(pattern = AGENCY_CODE_PATTERN))]
    pub agency_code: Option<String>,
    /// The API is one of the national data exchange platform (NDXP), reached through the
    /// province's gateway with the province's identity.
    #[serde(default)]
    pub national: bool,
    /// The provider's name for the API.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub api: String,
    /// Why the agency needs the API (legal basis, procedure); shown to the provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = visible_text())]
    pub purpose: String,
}

/// Whether a consumption may be used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GrantState {
    /// Both sides declared it: the gateway lets the consumer through.
    Granted,
    /// The provider has not (yet) approved the consumer.
    Pending,
    /// The provider denied the consumer, or the API does not exist.
    Denied,
}

/// What the operator observed of the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSharingServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions listed for this kind in `crate::conditions` (the generated CRD describes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The LGSP gateway's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// APIs registered on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provided_apis: Option<i32>,
    /// Consumptions granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_consumptions: Option<i32>,
    /// Consumptions pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_consumptions: Option<i32>,
    /// Each provided API's route on the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
    /// Each consumption's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumptions: Vec<ConsumptionStatus>,
    /// The consumer's client certificate (identity `spiffe://<base domain>/agency/<code>/dss/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<CertificateStatus>,
}

/// A provided API's route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The API.
    pub api: String,
    /// Its URL on the gateway.
    pub url: String,
}

/// A consumption's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumptionStatus {
    /// The consumption's `name`.
    pub name: String,
    /// Granted, Pending or Denied.
    pub state: GrantState,
    /// CamelCase reason for the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The URL to call, once granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

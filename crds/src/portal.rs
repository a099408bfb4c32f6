//! `Portal`: an agency's public-service portal.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{HOST_PATTERN, IMAGE_PATTERN, Size},
    status::CertificateStatus,
};

/// A public-service portal of the agency: a web front on the agency's hosts, with TLS
/// certificates issued by the tenant CA. Hosts must sit under the tenant's domain.
// kube's repeated `printcolumn(type_ = …)` arguments look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govpaas.io",
    version = "v1alpha1",
    kind = "Portal",
    namespaced,
    status = "PortalStatus",
    shortname = "ptl",
    category = "govpaas",
    derive = "PartialEq",
    doc = "A public-service portal of an agency, served on hosts under the tenant's domain with TLS from the tenant CA.",
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "Where citizens reach the portal"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Full or Partial online public services"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Cert Expires", type_ = "string", json_path = ".status.certificate.notAfter"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PortalSpec {
    /// Host names the portal answers on, the first one its canonical URL. Each must be the
    /// tenant's domain or sit under it, and may be served by no other Portal.
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 253), regex(pattern = HOST_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub hosts: Vec<String>,

    /// Online public services offered (Decree 42/2022/NĐ-CP): `Full` (the whole procedure online)
    /// or `Partial` (some steps at a counter).
    #[serde(default)]
    pub mode: OnlineServiceMode,

    /// CPU and memory of each replica: a preset of the Platform's `sizes`.
    #[serde(default)]
    pub size: Size,

    /// Replicas of the portal's web server; two or more keep it up through node maintenance.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 50))]
    pub replicas: i32,

    /// Container image, instead of the Platform's `images.portal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = IMAGE_PATTERN))]
    pub image: Option<String>,
}

fn default_replicas() -> i32 {
    2
}

/// How much of a public service is online (Decree 42/2022/NĐ-CP; the older levels 3 and 4 map to
/// Partial and Full).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnlineServiceMode {
    /// The whole procedure, payment and result included, is done online.
    #[default]
    Full,
    /// Part of the procedure is online; the rest at a counter.
    Partial,
}

/// What the operator observed of the portal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions listed for this kind in `crate::conditions` (the generated CRD describes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The portal's URL, `https://<first host>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Replicas ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The TLS certificate of the portal's hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
}

//! `DocumentService`: document management and electronic document exchange for an agency.

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    agency::{AGENCY_CODE_MAX_LEN, AGENCY_CODE_PATTERN},
    common::{DNS_SUBDOMAIN_PATTERN, HOST_PATTERN, IMAGE_PATTERN, RateLimit, Size, positive_quantity},
    data_sharing::AccessDecision,
    lgsp::SenderRules,
    status::CertificateStatus,
};

/// Document management and electronic document exchange (edXML packages, QCVN 102:2016) for an
/// agency: a workload with its own volume, an optional web host, a document-signing certificate,
/// and an exchange endpoint registered on the LGSP.
// kube's repeated `printcolumn(type_ = …)` arguments look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govpaas.io",
    version = "v1alpha1",
    kind = "DocumentService",
    namespaced,
    status = "DocumentServiceStatus",
    shortname = "docs",
    category = "govpaas",
    derive = "PartialEq",
    doc = "Document management and electronic document exchange (edXML over the LGSP) for an agency.",
    printcolumn(
        name = "Routes",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RoutesRegistered\")].reason",
        description = "Whether the exchange endpoint is on the LGSP (the RoutesRegistered condition's reason)"
    ),
    printcolumn(name = "Exchange", type_ = "boolean", json_path = ".spec.exchange.enabled"),
    printcolumn(name = "Storage", type_ = "string", json_path = ".spec.storage.size"),
    printcolumn(
        name = "Bound",
        type_ = "string",
        json_path = ".status.storage.phase",
        description = "The volume claim's phase"
    ),
    printcolumn(name = "Cert Expires", type_ = "string", json_path = ".status.certificate.notAfter"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DocumentServiceSpec {
    /// Where the documents are kept.
    #[serde(default)]
    pub storage: DocumentStorage,

    /// Electronic document exchange with other agencies over the LGSP.
    #[serde(default)]
    pub exchange: DocumentExchange,

    /// The agency's document-signing certificate, issued by the tenant CA.
    #[serde(default)]
    pub signing: DocumentSigning,

    /// Host name of the staff's web interface; must be the tenant's domain or sit under it. Unset:
    /// reachable inside the cluster only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 253), regex(pattern = HOST_PATTERN))]
    pub host: Option<String>,

    /// CPU and memory of each replica: a preset of the Platform's `sizes`.
    #[serde(default)]
    pub size: Size,

    /// Replicas of the document service.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,

    /// Container image, instead of the Platform's `images.documentService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = IMAGE_PATTERN))]
    pub image: Option<String>,
}

fn default_replicas() -> i32 {
    1
}

/// What happens to the document volume when the DocumentService is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletePolicy {
    /// Keep the volume claim and its documents (default): deleting a service never destroys
    /// documents unless told to.
    #[default]
    Retain,
    /// Delete the volume claim, and with it the documents.
    Delete,
}

/// The document volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')").message("storageClassName is immutable: the volume keeps the class it was created with").field_path(".storageClassName").reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct DocumentStorage {
    /// Size of the volume; it can grow, never shrink.
    #[serde(default = "default_storage_size")]
    #[schemars(schema_with = "crate::schema::quantity")]
    #[x_kube(validation = positive_quantity())]
    #[x_kube(validation = Rule::new("!isQuantity(string(self)) || !isQuantity(string(oldSelf)) || quantity(string(self)).compareTo(quantity(string(oldSelf))) >= 0").message("storage.size can grow but never shrink"))]
    pub size: Quantity,
    /// StorageClass of the volume. Unset: the Platform's `storageClassName`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub storage_class_name: Option<String>,
    /// `Retain` (default) keeps the documents when the DocumentService is deleted; `Delete`
    /// deletes them with it.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for DocumentStorage {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None, delete_policy: DeletePolicy::default() }
    }
}

/// Electronic document exchange.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentExchange {
    /// Register the agency's exchange endpoint on the LGSP so that other agencies can send it
    /// edXML packages and it can send theirs.
    #[serde(default)]
    pub enabled: bool,
    /// Who may send when no rule of `senders` names them: `Approve` (default: every
    /// exchange-enabled DocumentService of the province) or `Deny` (only those `senders` approves).
    #[serde(default)]
    pub default_decision: AccessDecision,
    /// Rules about senders, one per agency code and service. A rule naming the sending
    /// DocumentService outranks one for its whole agency (`service: "*"`); within a rank `Deny`
    /// wins, so two rules for one agency written in both code forms are never ambiguous.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["agencyCode".into(), "service".into()]))]
    pub senders: Vec<DocumentSender>,
    /// Rate limit per sender. Unset: the Platform's `lgsp.defaultRateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A rule about who may send documents to this DocumentService.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentSender {
    /// The sending agency's code (Decision 20/2020 `H48.12` or the legacy `000.00.12.H48`).
    #[schemars(length(min = 3, max = AGENCY_CODE_MAX_LEN), regex(pattern = AGENCY_CODE_PATTERN))]
    pub agency_code: String,
    /// The sending DocumentService's name, or `*` for any of the agency's.
    #[serde(default = "any_service")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$"))]
    pub service: String,
    /// `Approve` (default) or `Deny`.
    #[serde(default)]
    pub decision: AccessDecision,
}

fn any_service() -> String {
    "*".into()
}

impl DocumentExchange {
    /// Its rules about senders, as the gateway applies them ([`SenderRules::admits`]).
    pub fn sender_rules(&self) -> SenderRules {
        SenderRules { default_decision: self.default_decision, senders: self.senders.clone() }
    }
}

/// The document-signing certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentSigning {
    /// Issue a document-signing certificate for the agency (its subject carries the agency code
    /// and name).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl Default for DocumentSigning {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// What the operator observed of the document service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions listed for this kind in `crate::conditions` (the generated CRD describes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The exchange endpoint on the LGSP gateway: `https://<gateway>/<agency code>/edoc/<name>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The client certificate this DocumentService sends documents with (its identity
    /// `spiffe://<base domain>/agency/<code>/docs/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_certificate: Option<CertificateStatus>,
    /// The web interface's URL, when `host` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Replicas ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The document volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// The TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// The document-signing certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate: Option<CertificateStatus>,
}

/// The document volume as observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The claim's phase: `Pending`, `Bound` or `Lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The capacity the volume provides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(default: AccessDecision, rules: &[(&str, &str, AccessDecision)]) -> DocumentExchange {
        DocumentExchange {
            enabled: true,
            default_decision: default,
            senders: rules
                .iter()
                .map(|(code, service, decision)| DocumentSender {
                    agency_code: (*code).into(),
                    service: (*service).into(),
                    decision: *decision,
                })
                .collect(),
            rate_limit: None,
        }
    }

    #[test]
    fn a_named_rule_outranks_the_agencys_star_and_deny_wins_within_a_rank() {
        use AccessDecision::{Approve, Deny};
        let open = exchange(Approve, &[]);
        assert!(open.sender_rules().admits("H48.12", "van-ban"), "by default every exchange-enabled service may send");
        let closed = exchange(
            Deny,
            &[
                ("H48", "*", Approve),
                ("000.00.12.H48", "van-ban", Approve),
                ("H48.12", "*", Deny),
                ("H48.13", "x", Deny),
            ],
        );
        assert!(closed.sender_rules().admits("H48", "any"), "the agency's star");
        assert!(
            closed.sender_rules().admits("H48.12", "van-ban"),
            "named (legacy code form) outranks the agency's Deny"
        );
        assert!(!closed.sender_rules().admits("H48.12", "khac"), "the agency's Deny");
        assert!(!closed.sender_rules().admits("H48.14", "van-ban"), "no rule: the default");
        assert!(!closed.sender_rules().admits("H48.13", "x"));
        let both = exchange(Approve, &[("H48.12", "*", Approve), ("H48.12", "*", Deny)]);
        assert!(!both.sender_rules().admits("H48.12", "a"), "Deny wins within a rank");
    }
}

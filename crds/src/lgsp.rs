//! The LGSP gateway's route table: what the operator compiles from the DataSharingServices and
//! what the gateway will serve. The types live here, beside the API, so that the operator (which
//! writes the table) and the gateway (which reads it) share one definition.
//!
//! # Where the table is
//!
//! One ConfigMap per DataSharingService that has something for the gateway (it provides an API,
//! or it was granted an API of the national platform), in the **operator's namespace** — never in
//! the agency's, since agency admins may edit ConfigMaps there and must not be able to forge a
//! route or a grant. The ConfigMap is named [`route_table_name`]`(namespace, name)`, labelled
//! [`ROUTE_TABLE_SELECTOR`] (which is how the gateway lists them all and how the operator prunes
//! them) plus [`SOURCE_NAMESPACE_LABEL`] and [`SOURCE_UID_LABEL`], annotated
//! [`SOURCE_NAME_ANNOTATION`] (a name may be longer than a label value), naming the
//! DataSharingService it was compiled from, and holds the JSON of a [`RouteTable`] under
//! [`ROUTE_TABLE_KEY`].
//!
//! # Schema, version 1 (`govpaas.io/lgsp-routes/v1`)
//!
//! ```json
//! {
//!   "schema": "govpaas.io/lgsp-routes/v1",
//!   "source": {"namespace": "so-noivu", "name": "ho-tich", "uid": "…", "generation": 3},
//!   "agencyCode": "H48.12",
//!   "routes": [{
//!     "api": "tra-cuu-ho-tich",
//!     "pathPrefix": "/H48.12/tra-cuu-ho-tich/",
//!     "upstream": {"namespace": "so-noivu", "service": "ho-tich", "port": 8080, "path": "/api/v1"},
//!     "rateLimit": {"requestsPerMinute": 300, "burst": 10},
//!     "openData": false,
//!     "consumers": [{"identity": "spiffe://danang.gov.vn/agency/H48.40/dss/mot-cua",
//!                    "agencyCode": "H48.40", "service": "mot-cua"}]
//!   }],
//!   "national": [{"api": "csdlqg-dan-cu", "pathPrefix": "/ndxp/csdlqg-dan-cu/",
//!                 "consumer": "spiffe://danang.gov.vn/agency/H48.12/dss/ho-tich",
//!                 "rateLimit": {"requestsPerMinute": 60, "burst": 5}}]
//! }
//! ```
//!
//! - `routes`: the APIs the DataSharingService provides and whose Service exists. A request to
//!   `https://<gateway>/<pathPrefix><rest>` goes to `http://<service>.<namespace>.svc:<port><path><rest>`
//!   when the caller's verified client certificate carries one of `consumers[].identity`, or to
//!   anyone (no client certificate, rate-limited per client address) when `openData` is true.
//! - `national`: the national-platform APIs this DataSharingService was granted (the Platform's
//!   `lgsp.ndxp` is set and lists the API in its catalogue); `consumer` may call
//!   `https://<gateway>/<pathPrefix><rest>`, forwarded over mutual TLS to `<lgsp.ndxp.url>/<api><rest>`
//!   with the province's client certificate, and with the consumer's verified identity in
//!   `X-Lgsp-Consumer`; `rateLimit` applies per consumer. Several tables may grant one national
//!   API, each to its own consumer: the gateway serves one route to all of them.
//!
//! # Schema, version 2 (`govpaas.io/lgsp-routes/v2`)
//!
//! Version 1 and, in tables of DocumentServices, the electronic document exchange: `source.kind`
//! names the kind of the source (`DataSharingService` when absent) and `exchange` lists the
//! exchange endpoints of that source (a DocumentService has one):
//!
//! ```json
//! {
//!   "schema": "govpaas.io/lgsp-routes/v2",
//!   "source": {"kind": "DocumentService", "namespace": "so-noivu", "name": "van-thu", "uid": "…"},
//!   "agencyCode": "H48.12",
//!   "exchange": [{
//!     "service": "van-thu",
//!     "pathPrefix": "/H48.12/edoc/van-thu/",
//!     "upstream": {"namespace": "so-noivu", "service": "van-thu-docs", "port": 443,
//!                  "path": "/edxml", "serverName": "van-thu-docs.so-noivu.danang.gov.vn"},
//!     "rateLimit": {"requestsPerMinute": 600, "burst": 20},
//!     "senders": [{"identity": "spiffe://danang.gov.vn/agency/H48/docs/van-thu",
//!                  "agencyCode": "H48", "service": "van-thu"}]
//!   }]
//! }
//! ```
//!
//! - `exchange`: a sender whose verified client certificate carries one of `senders[].identity` may
//!   `POST` an edXML package to `https://<gateway>/<pathPrefix><rest>`; the gateway forwards it over
//!   TLS to `https://<service>.<namespace>.svc:<port><path><rest>`, verifying the receiver's
//!   certificate for `serverName` against the platform trust bundle, with the sender's identity in
//!   `X-Lgsp-Consumer`, and records the package's SHA-256 in the audit.
//! - A version 1 table with `exchange` entries is refused whole: version 1 has none.
//!
//! # Schema, version 3 (`govpaas.io/lgsp-routes/v3`)
//!
//! Version 2, with the exchange's admission decided by the gateway instead of listed: an exchange
//! endpoint carries no `senders` but its own sending `identity` and its receiver's `admission`
//! rules, exactly as its DocumentService's `spec.exchange` writes them:
//!
//! ```json
//! "exchange": [{
//!   "service": "van-thu", "pathPrefix": "/H48.12/edoc/van-thu/", "upstream": {…}, "rateLimit": {…},
//!   "identity": "spiffe://danang.gov.vn/agency/000.00.12.H48/docs/van-thu",
//!   "admission": {"defaultDecision": "Deny",
//!                 "senders": [{"agencyCode": "H48", "service": "*", "decision": "Approve"}]}
//! }]
//! ```
//!
//! - The **active senders** are the `identity` of every exchange endpoint in the gateway's tables.
//!   A caller may send to an endpoint when its verified identity is an active sender other than the
//!   endpoint itself and `admission` admits the sender's agency and DocumentService
//!   ([`SenderRules::admits`]: a rule naming the DocumentService, else its agency's `*`, else
//!   `defaultDecision`; `Deny` wins within a rank). A DocumentService that turns exchange off or goes
//!   loses its table, so it stops being a sender everywhere at once.
//! - Each table depends on its own DocumentService alone: a DocumentService turning exchange on or
//!   off rewrites its own table, never the others' (version 2 listed the senders in every receiver's
//!   table, so each one rewrote the tables of all the receivers admitting it: quadratic in a province).
//!
//! # Versions and upgrades
//!
//! The operator writes version 3 for DocumentServices' tables and version 1 for the rest, which have
//! nothing of the later versions: a gateway older than the operator keeps serving data sharing during
//! an upgrade (it refuses the tables of a version it does not know, keeping their previous content),
//! and the gateway reads all three. Version 2 tables (an operator before version 3) are still served
//! with their listed senders; their DocumentServices are not active senders to version 3 endpoints
//! until the upgraded operator rewrites their tables, which it does on its first pass.
//!
//! Fields may be added within a version (a reader ignores those it does not know); a change that
//! an older reader would misread gets a new `schema` string, and a reader refuses a schema it does
//! not know ([`RouteTable::from_json`]).

use serde::{Deserialize, Serialize};

use crate::agency::normalise;
use crate::common::RateLimit;
use crate::data_sharing::AccessDecision;
use crate::document_service::DocumentSender;

/// The `schema` of version 1 of the route table.
pub const SCHEMA_V1: &str = "govpaas.io/lgsp-routes/v1";
/// The `schema` of version 2: version 1 and the document exchange, its senders listed.
pub const SCHEMA_V2: &str = "govpaas.io/lgsp-routes/v2";
/// The `schema` of version 3: version 2 with the exchange's sender rules, decided by the gateway.
pub const SCHEMA_V3: &str = "govpaas.io/lgsp-routes/v3";
/// The second path segment of exchange endpoints (`/<agency code>/edoc/<service>/`): no API may
/// take this name.
pub const EXCHANGE_SEGMENT: &str = "edoc";
/// The kind segment of a DocumentService's sending identity (`spiffe://<base>/agency/<code>/docs/<name>`).
pub const EXCHANGE_IDENTITY_KIND: &str = "docs";
/// The ConfigMap key holding the table's JSON.
pub const ROUTE_TABLE_KEY: &str = "routes.json";
/// The `app.kubernetes.io/component` of route table ConfigMaps.
pub const ROUTE_TABLE_COMPONENT: &str = "lgsp-routes";
/// Selects every route table ConfigMap (in the operator's namespace).
pub const ROUTE_TABLE_SELECTOR: &str =
    "app.kubernetes.io/managed-by=govpaas-operator,app.kubernetes.io/component=lgsp-routes";
/// Label on a route table: the namespace of its DataSharingService.
pub const SOURCE_NAMESPACE_LABEL: &str = "govpaas.io/lgsp-source-namespace";
/// Annotation on a route table: the name of its DataSharingService.
pub const SOURCE_NAME_ANNOTATION: &str = "govpaas.io/lgsp-source-name";
/// Label on a route table: the uid of its DataSharingService (a re-created one is another source).
pub const SOURCE_UID_LABEL: &str = "govpaas.io/lgsp-source-uid";
/// Label on a DocumentService's route table: [`DOCUMENT_SOURCE`] (a DataSharingService's has none),
/// so that each controller watches and sweeps only its own kind of table.
pub const SOURCE_KIND_LABEL: &str = "govpaas.io/lgsp-source-kind";
/// The label (key, value) of the LGSP gateway's Pods in the operator's namespace: what a provider's
/// NetworkPolicy admits.
pub const GATEWAY_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "govpaas-gateway");
/// The first path segment of routes to the national platform (agency codes are upper case, so no
/// agency's routes can take it).
pub const NATIONAL_PREFIX: &str = "ndxp";
/// The longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME: usize = 253;

/// The name of the route table of DataSharingService `namespace/name`:
/// `lgsp-routes.<namespace>.<name>`. A namespace has no dots, so the name is unambiguous; one
/// too long for an object name is cut and ends with a hash of the whole, so it stays unique.
pub fn route_table_name(namespace: &str, name: &str) -> String {
    cut_name(format!("lgsp-routes.{namespace}.{name}"))
}

/// `full` if it fits an object name, else cut, ending with a hash of the whole.
fn cut_name(full: String) -> String {
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = format!("{:016x}", fnv1a(full.as_bytes()));
    let mut cut = full[..MAX_NAME - hash.len() - 1].trim_end_matches(['.', '-']).to_owned();
    cut.push('-');
    cut.push_str(&hash);
    cut
}

/// FNV-1a, 64 bits: stable across releases and platforms (unlike std's hasher), for names only.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The path prefix of `api` of the agency `agency_code` on the gateway: `/<code>/<api>/`.
pub fn api_path(agency_code: &str, api: &str) -> String {
    format!("/{agency_code}/{api}/")
}

/// The path prefix of the exchange endpoint of DocumentService `service` of agency `agency_code`:
/// `/<code>/edoc/<service>/`.
pub fn exchange_path(agency_code: &str, service: &str) -> String {
    format!("/{agency_code}/{EXCHANGE_SEGMENT}/{service}/")
}

/// The name of the route table of DocumentService `namespace/name`: `lgsp-edoc.<namespace>.<name>`
/// (a DataSharingService of the same name has its own), cut and hashed like [`route_table_name`].
pub fn exchange_table_name(namespace: &str, name: &str) -> String {
    cut_name(format!("lgsp-edoc.{namespace}.{name}"))
}

/// The path prefix of the national platform's `api` on the gateway: `/ndxp/<api>/`.
pub fn national_path(api: &str) -> String {
    format!("/{NATIONAL_PREFIX}/{api}/")
}

/// One DataSharingService's routes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    /// [`SCHEMA_V1`].
    pub schema: String,
    /// The DataSharingService it was compiled from.
    pub source: Source,
    /// The agency code of the DataSharingService's tenant, in Decision 20/2020 form.
    pub agency_code: String,
    /// The APIs it provides.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The national-platform APIs it was granted.
    #[serde(default)]
    pub national: Vec<NationalRoute>,
    /// Version 2: the exchange endpoints of a DocumentService.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchange: Vec<ExchangeRoute>,
}

/// The kind of a table's source when `source.kind` is absent (every version 1 table).
pub const DATA_SHARING_SOURCE: &str = "DataSharingService";
/// The kind of a DocumentService's table.
pub const DOCUMENT_SOURCE: &str = "DocumentService";

/// A DocumentService's exchange endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeRoute {
    /// The DocumentService's name.
    pub service: String,
    /// `/<agency code>/edoc/<service>/`: what the gateway matches.
    pub path_prefix: String,
    /// The receiver's Service and exchange port.
    pub upstream: ExchangeUpstream,
    /// Per sender.
    pub rate_limit: RateLimit,
    /// Version 2: the identities that may send to it (the DocumentServices of the province whose
    /// exchange is enabled, as its sender rules allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<Consumer>,
    /// Version 3: the identity its DocumentService sends as (`spiffe://<base>/agency/<code>/docs/<service>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Version 3: who may send to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<SenderRules>,
}

/// A receiver's rules about its senders: its DocumentService's `spec.exchange.defaultDecision` and
/// `senders`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SenderRules {
    #[serde(default)]
    pub default_decision: AccessDecision,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<DocumentSender>,
}

impl SenderRules {
    /// Whether the DocumentService `service` of agency `agency` (either code form) may send: a rule
    /// naming it, else a rule for its agency's `*`, else `defaultDecision`; within a rank `Deny`
    /// wins, so two rules for one agency written in both code forms are never ambiguous.
    pub fn admits(&self, agency: &str, service: &str) -> bool {
        let agency = normalise(agency);
        let decide = |named: bool| {
            let mut matching = self
                .senders
                .iter()
                .filter(|rule| if named { rule.service == service } else { rule.service == "*" })
                .filter(|rule| normalise(&rule.agency_code) == agency)
                .map(|rule| rule.decision)
                .peekable();
            matching.peek().is_some().then(|| {
                if matching.any(|d| d == AccessDecision::Deny) { AccessDecision::Deny } else { AccessDecision::Approve }
            })
        };
        decide(true).or_else(|| decide(false)).unwrap_or(self.default_decision) == AccessDecision::Approve
    }
}

/// Where an exchange endpoint's packages go: the receiver's Service, over TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeUpstream {
    pub namespace: String,
    pub service: String,
    /// The Service's TLS port.
    pub port: i32,
    /// The path on the Service that replaces `pathPrefix`.
    pub path: String,
    /// The name the receiver's certificate carries, which the gateway verifies.
    pub server_name: String,
}

/// Which DataSharingService a table was compiled from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// [`DATA_SHARING_SOURCE`] (when absent) or [`DOCUMENT_SOURCE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The `metadata.generation` compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// A provided API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The API's name.
    pub api: String,
    /// `/<agency code>/<api>/`: what the gateway matches.
    pub path_prefix: String,
    /// Where the gateway forwards to.
    pub upstream: Upstream,
    /// Per consumer (per client address for open data).
    pub rate_limit: RateLimit,
    /// Served to anyone without a client certificate.
    pub open_data: bool,
    /// The consumers both sides agreed on (empty for open data).
    #[serde(default)]
    pub consumers: Vec<Consumer>,
}

/// The provider's Service behind a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    pub namespace: String,
    pub service: String,
    /// The Service's port.
    pub port: i32,
    /// The path prefix on the Service that replaces `pathPrefix`.
    pub path: String,
}

/// A consumer granted a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// The URI SAN its client certificate carries:
    /// `spiffe://<base domain>/agency/<code>/dss/<name>`.
    pub identity: String,
    /// Its agency code, as its Tenant writes it.
    pub agency_code: String,
    /// Its DataSharingService's name.
    pub service: String,
}

/// A national-platform API granted to the table's DataSharingService.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NationalRoute {
    /// The NDXP's name for the API.
    pub api: String,
    /// `/ndxp/<api>/`.
    pub path_prefix: String,
    /// The identity that may call it.
    pub consumer: String,
    /// Per consumer: the national catalogue's limit for the API, else the Platform's default.
    /// (Added within v1: a table without it reads with [`RateLimit::default`].)
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// Why a route table cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    #[error("not a route table: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "route table schema {0:?} is none of {SCHEMA_V1:?}, {SCHEMA_V2:?}, {SCHEMA_V3:?}: this reader does not understand it"
    )]
    UnknownSchema(String),
    #[error("a {SCHEMA_V1:?} table has no exchange endpoints (they came with {SCHEMA_V2:?})")]
    ExchangeInVersion1,
    #[error("exchange endpoint {service}: {reason}")]
    ExchangeAdmission { service: String, reason: &'static str },
}

impl RouteTable {
    /// The table as stored in the ConfigMap.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and lists cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a stored table, refusing one of another schema.
    pub fn from_json(text: &str) -> Result<Self, RouteTableError> {
        #[derive(Deserialize)]
        struct Versioned {
            schema: String,
        }
        let versioned: Versioned = serde_json::from_str(text)?;
        if ![SCHEMA_V1, SCHEMA_V2, SCHEMA_V3].contains(&versioned.schema.as_str()) {
            return Err(RouteTableError::UnknownSchema(versioned.schema));
        }
        let table: RouteTable = serde_json::from_str(text)?;
        if table.schema == SCHEMA_V1 && !table.exchange.is_empty() {
            return Err(RouteTableError::ExchangeInVersion1);
        }
        // Each version's admission and only it: a table mixing them would be read differently by
        // gateways of either version.
        let version_3 = table.schema == SCHEMA_V3;
        for exchange in &table.exchange {
            let refuse = |reason| Err(RouteTableError::ExchangeAdmission { service: exchange.service.clone(), reason });
            match (version_3, &exchange.identity, &exchange.admission) {
                (true, Some(_), Some(_)) if exchange.senders.is_empty() => {}
                (true, Some(_), Some(_)) => return refuse("version 3 lists no senders: its admission decides"),
                (true, _, _) => return refuse("version 3 needs the endpoint's identity and admission"),
                (false, None, None) => {}
                (false, _, _) => return refuse("identity and admission came with version 3"),
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable {
            schema: SCHEMA_V1.into(),
            source: Source {
                kind: None,
                namespace: "so-noivu".into(),
                name: "ho-tich".into(),
                uid: "u1".into(),
                generation: Some(3),
            },
            agency_code: "H48.12".into(),
            routes: vec![Route {
                api: "tra-cuu-ho-tich".into(),
                path_prefix: api_path("H48.12", "tra-cuu-ho-tich"),
                upstream: Upstream {
                    namespace: "so-noivu".into(),
                    service: "ho-tich".into(),
                    port: 8080,
                    path: "/api/v1".into(),
                },
                rate_limit: RateLimit { requests_per_minute: 300, burst: 10 },
                open_data: false,
                consumers: vec![Consumer {
                    identity: "spiffe://danang.gov.vn/agency/H48.40/dss/mot-cua".into(),
                    agency_code: "H48.40".into(),
                    service: "mot-cua".into(),
                }],
            }],
            national: vec![NationalRoute {
                api: "csdlqg-dan-cu".into(),
                path_prefix: national_path("csdlqg-dan-cu"),
                consumer: "spiffe://danang.gov.vn/agency/H48.12/dss/ho-tich".into(),
                rate_limit: RateLimit::default(),
            }],
            exchange: Vec::new(),
        }
    }

    fn exchange_table() -> RouteTable {
        RouteTable {
            schema: SCHEMA_V2.into(),
            source: Source {
                kind: Some(DOCUMENT_SOURCE.into()),
                namespace: "so-noivu".into(),
                name: "van-thu".into(),
                uid: "u2".into(),
                generation: Some(1),
            },
            agency_code: "H48.12".into(),
            routes: Vec::new(),
            national: Vec::new(),
            exchange: vec![ExchangeRoute {
                service: "van-thu".into(),
                path_prefix: exchange_path("H48.12", "van-thu"),
                upstream: ExchangeUpstream {
                    namespace: "so-noivu".into(),
                    service: "van-thu-docs".into(),
                    port: 443,
                    path: "/edxml".into(),
                    server_name: "van-thu-docs.so-noivu.danang.gov.vn".into(),
                },
                rate_limit: RateLimit::default(),
                senders: vec![Consumer {
                    identity: "spiffe://danang.gov.vn/agency/H48/docs/van-thu".into(),
                    agency_code: "H48".into(),
                    service: "van-thu".into(),
                }],
                identity: None,
                admission: None,
            }],
        }
    }

    /// `exchange_table` as version 3 writes it: its own identity and its rules, no senders.
    fn exchange_table_v3() -> RouteTable {
        let mut table = exchange_table();
        table.schema = SCHEMA_V3.into();
        let exchange = &mut table.exchange[0];
        exchange.senders.clear();
        exchange.identity = Some("spiffe://danang.gov.vn/agency/H48.12/docs/van-thu".into());
        exchange.admission = Some(SenderRules {
            default_decision: AccessDecision::Deny,
            senders: vec![DocumentSender {
                agency_code: "H48".into(),
                service: "*".into(),
                decision: AccessDecision::Approve,
            }],
        });
        table
    }

    #[test]
    fn version_3_carries_the_rules_and_refuses_a_mixture_of_versions() {
        let v3 = exchange_table_v3();
        let json = v3.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["schema"], "govpaas.io/lgsp-routes/v3");
        assert_eq!(value["exchange"][0]["admission"]["defaultDecision"], "Deny");
        assert_eq!(value["exchange"][0]["admission"]["senders"][0]["agencyCode"], "H48");
        assert!(value["exchange"][0].get("senders").is_none(), "{json}");
        assert_eq!(RouteTable::from_json(&json).unwrap(), v3);

        let mut listing = exchange_table_v3();
        listing.exchange[0].senders = exchange_table().exchange[0].senders.clone();
        assert!(RouteTable::from_json(&listing.to_json()).is_err(), "version 3 with listed senders");
        let mut without_rules = exchange_table_v3();
        without_rules.exchange[0].admission = None;
        assert!(RouteTable::from_json(&without_rules.to_json()).is_err(), "version 3 without admission");
        let mut without_identity = exchange_table_v3();
        without_identity.exchange[0].identity = None;
        assert!(RouteTable::from_json(&without_identity.to_json()).is_err(), "version 3 without identity");
        let mut v2_with_rules = exchange_table_v3();
        v2_with_rules.schema = SCHEMA_V2.into();
        assert!(RouteTable::from_json(&v2_with_rules.to_json()).is_err(), "rules in a version 2 table");
    }

    #[test]
    fn sender_rules_named_outrank_the_agency_and_deny_wins_within_a_rank() {
        let rule = |agency: &str, service: &str, decision| DocumentSender {
            agency_code: agency.into(),
            service: service.into(),
            decision,
        };
        let rules = SenderRules {
            default_decision: AccessDecision::Deny,
            senders: vec![
                rule("H48.12", "*", AccessDecision::Deny),
                rule("000.00.12.H48", "van-ban", AccessDecision::Approve),
                rule("H48.31", "*", AccessDecision::Approve),
                rule("000.00.31.H48", "*", AccessDecision::Deny),
            ],
        };
        assert!(rules.admits("H48.12", "van-ban"), "named, in the other code form, outranks the agency's Deny");
        assert!(!rules.admits("000.00.12.H48", "khac"), "the agency's Deny");
        assert!(!rules.admits("H48.31", "x"), "Deny wins within a rank across code forms");
        assert!(!rules.admits("H48.40", "x"), "no rule: the default");
        assert!(SenderRules::default().admits("H48.40", "x"), "Approve by default");
    }

    #[test]
    fn both_versions_read_and_version_2_carries_the_exchange() {
        // A version 1 table, as an operator before version 2 wrote it, reads as it always did.
        let v1 = table();
        assert_eq!(RouteTable::from_json(&v1.to_json()).unwrap(), v1);
        assert!(!v1.to_json().contains("exchange"), "a table without exchange endpoints does not name them");
        // Version 2, with an exchange endpoint.
        let v2 = exchange_table();
        let json = v2.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["schema"], "govpaas.io/lgsp-routes/v2");
        assert_eq!(value["source"]["kind"], "DocumentService");
        assert_eq!(value["exchange"][0]["pathPrefix"], "/H48.12/edoc/van-thu/");
        assert_eq!(value["exchange"][0]["upstream"]["serverName"], "van-thu-docs.so-noivu.danang.gov.vn");
        assert_eq!(RouteTable::from_json(&json).unwrap(), v2);
        // Version 2 of a DataSharingService's table is version 1's content under another name.
        let mut relabelled = table();
        relabelled.schema = SCHEMA_V2.into();
        assert_eq!(RouteTable::from_json(&relabelled.to_json()).unwrap(), relabelled);
    }

    #[test]
    fn a_version_1_table_with_exchange_endpoints_is_refused_whole() {
        let mut mislabelled = exchange_table();
        mislabelled.schema = SCHEMA_V1.into();
        assert!(matches!(RouteTable::from_json(&mislabelled.to_json()), Err(RouteTableError::ExchangeInVersion1)));
        let mut value: serde_json::Value = serde_json::from_str(&exchange_table().to_json()).unwrap();
        value["exchange"][0]["upstream"].as_object_mut().unwrap().remove("serverName");
        assert!(RouteTable::from_json(&value.to_string()).is_err(), "an exchange endpoint without its TLS name");
    }

    #[test]
    fn exchange_names_and_paths() {
        assert_eq!(exchange_path("H48.12", "van-thu"), "/H48.12/edoc/van-thu/");
        assert_eq!(exchange_table_name("so-noivu", "van-thu"), "lgsp-edoc.so-noivu.van-thu");
        assert_ne!(exchange_table_name("so-noivu", "van-thu"), route_table_name("so-noivu", "van-thu"));
        assert!(exchange_table_name("so-noivu", &"x".repeat(253)).len() <= 253);
    }

    #[test]
    fn the_json_is_the_documented_schema_and_reads_back() {
        let json = table().to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["schema"], "govpaas.io/lgsp-routes/v1");
        assert_eq!(value["agencyCode"], "H48.12");
        let route = &value["routes"][0];
        assert_eq!(route["pathPrefix"], "/H48.12/tra-cuu-ho-tich/");
        assert_eq!(route["upstream"]["port"], 8080);
        assert_eq!(route["rateLimit"]["requestsPerMinute"], 300);
        assert_eq!(route["openData"], false);
        assert_eq!(route["consumers"][0]["identity"], "spiffe://danang.gov.vn/agency/H48.40/dss/mot-cua");
        assert_eq!(value["national"][0]["pathPrefix"], "/ndxp/csdlqg-dan-cu/");
        assert_eq!(RouteTable::from_json(&json).unwrap(), table());
    }

    #[test]
    fn a_reader_refuses_another_schema_and_ignores_new_fields() {
        let future = table().to_json().replace("lgsp-routes/v1", "lgsp-routes/v4");
        assert!(matches!(RouteTable::from_json(&future), Err(RouteTableError::UnknownSchema(s)) if s.ends_with("v4")));
        let mut value: serde_json::Value = serde_json::from_str(&table().to_json()).unwrap();
        value["addedLater"] = serde_json::json!(true);
        assert_eq!(RouteTable::from_json(&value.to_string()).unwrap(), table());
        assert!(RouteTable::from_json("not json").is_err());
    }

    #[test]
    fn table_names_are_deterministic_unambiguous_and_short_enough() {
        assert_eq!(route_table_name("so-noivu", "ho-tich"), "lgsp-routes.so-noivu.ho-tich");
        assert_ne!(route_table_name("a-b", "c"), route_table_name("a", "b-c"));
        let long = "x".repeat(253);
        let name = route_table_name("so-noivu", &long);
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(name, route_table_name("so-noivu", &long));
        assert_ne!(name, route_table_name("so-noivu", &format!("{}y", &long[1..])));
    }
}

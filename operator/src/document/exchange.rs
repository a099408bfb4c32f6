//! A DocumentService's electronic document exchange on the LGSP, with no client: who may send to
//! it, its route table (schema v2, `govpaas_crds::lgsp`), its sending identity, and the
//! NetworkPolicy that lets the gateway reach its exchange port.
//!
//! - **Endpoint**: `https://<gateway>/<agency code>/edoc/<name>/`; the gateway forwards a package
//!   over TLS to `https://<name>-docs.<namespace>.svc:443/edxml/<rest>`, verifying the receiver's
//!   certificate for `<name>-docs.<tenant domain>` (the name its TLS certificate carries).
//! - **Identity**: `spiffe://<base domain>/agency/<code>/docs/<name>`, in a client certificate from
//!   the tenant CA, mounted at [`CLIENT_DIR`]; the same identity for every namespace of an agency,
//!   so within an agency one DocumentService of a name holds it — the oldest
//!   ([`holder`]); a younger one of the same name is refused (`ExchangeNameConflict`).
//! - **Senders**: every other registered exchange endpoint of the province (the holders of their
//!   identities) that the receiver's rules admit. The route table (schema v3) carries the
//!   receiver's own identity and its rules, and the gateway decides (`SenderRules::admits` over
//!   the identities of the tables it serves), so a table changes only with its own
//!   DocumentService. Whether a DocumentService holds its name depends on the others of its agency
//!   and name alone: the composition root wakes those when one changes.

use std::collections::BTreeMap;

use govpaas_crds::DocumentService;
use govpaas_crds::agency::normalise;
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_crds::platform::PlatformSpec;
use govpaas_pki::{AgencyIdentity, WorkloadIdentity};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::build::{HTTPS_PORT, IDENTITY_KIND, Names};
use crate::lgsp::tables::{self, TableSource};
use crate::workload::objects::Owner;

/// Where the exchange client certificate is mounted in the container.
pub const CLIENT_DIR: &str = "/etc/govpaas/exchange-client";
/// The path on the receiver's exchange port that replaces the endpoint's prefix.
pub const UPSTREAM_PATH: &str = "/edxml";
/// The Service port the gateway sends to (the container's [`HTTPS_PORT`] behind it).
pub const SERVICE_PORT: i32 = 443;
/// `RoutesRegistered`'s reason when the endpoint is in the gateway's route table.
pub const REGISTERED: &str = "Registered";
/// `RoutesRegistered`'s reason when exchange is off.
pub const EXCHANGE_DISABLED: &str = "ExchangeDisabled";
/// `RoutesRegistered`'s reason when an older DocumentService of the agency holds the name.
pub const NAME_CONFLICT: &str = "ExchangeNameConflict";

/// The exchange client certificate's Secret: `<name>-docs-edoc-client`.
pub fn client_secret_name(names: &Names) -> String {
    format!("{}-edoc-client", names.workload)
}

/// The NetworkPolicy admitting the gateway to the exchange port: `<name>-docs.lgsp-exchange`.
pub fn network_policy_name(names: &Names) -> String {
    format!("{}.lgsp-exchange", names.workload)
}

/// An exchange-enabled DocumentService of the province, with its agency.
#[derive(Clone, Debug)]
pub struct Peer<'a> {
    pub service: &'a DocumentService,
    pub namespace: String,
    pub name: String,
    /// Its Tenant's name.
    pub tenant: String,
    /// Its agency's code as its Tenant writes it: what its identity carries.
    pub agency_code: String,
    /// The same code in Decision 20/2020 form: what its endpoint's path carries.
    pub agency: String,
}

impl Peer<'_> {
    fn created(&self) -> Option<&Time> {
        self.service.metadata.creation_timestamp.as_ref()
    }

    /// Its sending identity.
    pub fn identity(&self, base_domain: &str) -> Result<WorkloadIdentity, govpaas_pki::Error> {
        AgencyIdentity::new(base_domain, &self.agency_code)
            .and_then(|agency| agency.workload(IDENTITY_KIND, &self.name))
    }
}

/// The exchange-enabled DocumentServices among `services` whose namespace `tenant_of` resolves to
/// `(tenant, agency code)`, not being deleted, oldest first (creation time, then namespace and
/// name: a fixed order even within one second).
pub fn peers<'a>(
    services: impl IntoIterator<Item = &'a DocumentService>,
    tenant_of: impl Fn(&str) -> Option<(String, String)>,
) -> Vec<Peer<'a>> {
    let mut peers: Vec<Peer<'a>> = services
        .into_iter()
        .filter(|service| service.spec.exchange.enabled && service.metadata.deletion_timestamp.is_none())
        .filter_map(|service| {
            let namespace = service.namespace()?;
            let (tenant, agency_code) = tenant_of(&namespace)?;
            Some(Peer {
                service,
                name: service.name_any(),
                namespace,
                tenant,
                agency: normalise(&agency_code),
                agency_code,
            })
        })
        .collect();
    peers.sort_by(|a, b| {
        let key = |p: &Peer<'a>| (p.created().is_none(), p.created().cloned(), p.namespace.clone(), p.name.clone());
        key(a).cmp(&key(b))
    });
    peers
}

/// The DocumentService holding the endpoint and identity of `name` in agency `agency`
/// (normalised): the oldest of `peers` with both.
pub fn holder<'p, 'a>(peers: &'p [Peer<'a>], agency: &str, name: &str) -> Option<&'p Peer<'a>> {
    peers.iter().find(|peer| peer.agency == agency && peer.name == name)
}

/// What the gateway and the agency's staff are told of an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// `https://<gateway>/<code>/edoc/<name>/`.
    pub url: String,
    /// The route table's ConfigMap.
    pub table: ConfigMap,
}

/// The receiver's route table (schema v3) and its ConfigMap in `operator_namespace`: its endpoint,
/// the identity it sends as (`identity`, which makes it a sender to the others) and its rules about
/// senders, which the gateway applies. Nothing of the other DocumentServices: a table changes only
/// with its own DocumentService.
pub fn endpoint(
    receiver: &Peer<'_>,
    identity: &WorkloadIdentity,
    platform: &PlatformSpec,
    tenant_domain: &str,
    uid: &str,
    operator_namespace: &str,
) -> Endpoint {
    let names = Names::of(receiver.service);
    let path_prefix = lgsp::exchange_path(&receiver.agency, &receiver.name);
    let table = RouteTable {
        schema: lgsp::SCHEMA_V3.to_owned(),
        source: lgsp::Source {
            kind: Some(lgsp::DOCUMENT_SOURCE.to_owned()),
            namespace: receiver.namespace.clone(),
            name: receiver.name.clone(),
            uid: uid.to_owned(),
            generation: receiver.service.metadata.generation,
        },
        agency_code: receiver.agency.clone(),
        routes: Vec::new(),
        national: Vec::new(),
        exchange: vec![lgsp::ExchangeRoute {
            service: receiver.name.clone(),
            path_prefix: path_prefix.clone(),
            upstream: lgsp::ExchangeUpstream {
                namespace: receiver.namespace.clone(),
                service: names.workload.clone(),
                port: SERVICE_PORT,
                path: UPSTREAM_PATH.to_owned(),
                server_name: format!("{}.{tenant_domain}", names.workload),
            },
            rate_limit: receiver
                .service
                .spec
                .exchange
                .rate_limit
                .clone()
                .unwrap_or_else(|| platform.lgsp.default_rate_limit.clone()),
            senders: Vec::new(),
            identity: Some(identity.uri()),
            admission: Some(receiver.service.spec.exchange.sender_rules()),
        }],
    };
    let source = TableSource {
        kind: Some(lgsp::DOCUMENT_SOURCE),
        namespace: &receiver.namespace,
        name: &receiver.name,
        uid,
        tenant: &receiver.tenant,
    };
    let name = lgsp::exchange_table_name(&receiver.namespace, &receiver.name);
    Endpoint {
        url: format!("https://{}{path_prefix}", crate::lgsp::gateway_host(platform)),
        table: tables::table_config_map(name, operator_namespace, &source, &table),
    }
}

/// The NetworkPolicy letting the gateway's Pods reach the exchange port of the service's Pods, and
/// nothing else of them.
pub fn network_policy(
    owner: &Owner,
    names: &Names,
    pods: BTreeMap<String, String>,
    operator_namespace: &str,
) -> NetworkPolicy {
    crate::lgsp::gateway_ingress_policy(
        owner.child_meta(&network_policy_name(names)),
        pods,
        operator_namespace,
        IntOrString::Int(HTTPS_PORT),
        "TCP",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_crds::data_sharing::AccessDecision;
    use govpaas_crds::document_service::DocumentSender;
    use k8s_openapi::jiff::Timestamp;

    fn service(namespace: &str, name: &str, second: i64, enabled: bool) -> DocumentService {
        let mut service: DocumentService = serde_yaml::from_str(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DocumentService\nmetadata: {{name: {name}, namespace: {namespace}, uid: u-{namespace}-{name}}}\nspec: {{exchange: {{enabled: {enabled}}}}}\n"
        ))
        .unwrap();
        service.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).unwrap()));
        service
    }

    fn tenant_of(namespace: &str) -> Option<(String, String)> {
        match namespace {
            "ubnd" => Some(("ubnd".into(), "H48".into())),
            "so-noivu" | "so-noivu-2" => Some(("so-noivu".into(), "000.00.12.H48".into())),
            "hai-chau" => Some(("hai-chau".into(), "H48.31".into())),
            _ => None,
        }
    }

    #[test]
    fn the_holder_is_the_oldest_of_an_agency_and_name_and_the_table_carries_the_rules() {
        let mut receiver = service("so-noivu", "van-ban", 10, true);
        receiver.spec.exchange.default_decision = AccessDecision::Deny;
        receiver.spec.exchange.senders =
            vec![DocumentSender { agency_code: "H48".into(), service: "*".into(), decision: AccessDecision::Approve }];
        let services = [
            receiver.clone(),
            service("ubnd", "van-ban", 1, true),
            service("ubnd", "luu-tru", 2, false),
            // Same agency and name as the receiver, younger: not the holder.
            service("so-noivu-2", "van-ban", 20, true),
            // A namespace outside any tenant.
            service("ngoai", "van-ban", 5, true),
        ];
        let peers = peers(&services, tenant_of);
        assert_eq!(peers.len(), 3, "exchange-enabled services of tenants only");
        assert_eq!(holder(&peers, "H48.12", "van-ban").unwrap().namespace, "so-noivu");
        let me = peers.iter().find(|p| p.namespace == "so-noivu").unwrap();

        let platform: PlatformSpec =
            serde_json::from_value(serde_json::json!({"baseDomain": "danang.gov.vn"})).unwrap();
        let identity = me.identity("danang.gov.vn").unwrap();
        let endpoint = endpoint(me, &identity, &platform, "so-noivu.danang.gov.vn", "u-1", "govpaas-system");
        assert_eq!(endpoint.url, "https://lgsp.danang.gov.vn/H48.12/edoc/van-ban/");
        let table = endpoint.table;
        assert_eq!(table.metadata.name.as_deref(), Some("lgsp-edoc.so-noivu.van-ban"));
        assert_eq!(table.metadata.labels.as_ref().unwrap()[lgsp::SOURCE_KIND_LABEL], lgsp::DOCUMENT_SOURCE);
        let parsed = RouteTable::from_json(&table.data.unwrap()[lgsp::ROUTE_TABLE_KEY]).unwrap();
        assert_eq!(parsed.schema, lgsp::SCHEMA_V3);
        let route = &parsed.exchange[0];
        assert_eq!(route.upstream.server_name, "van-ban-docs.so-noivu.danang.gov.vn");
        assert_eq!((route.upstream.service.as_str(), route.upstream.port), ("van-ban-docs", 443));
        assert_eq!(
            route.identity.as_deref(),
            Some("spiffe://danang.gov.vn/agency/000.00.12.H48/docs/van-ban"),
            "the identity as the tenant writes its code, as its certificate carries it"
        );
        assert_eq!(route.admission.as_ref(), Some(&receiver.spec.exchange.sender_rules()));
        assert!(route.senders.is_empty(), "no list of the others: the table depends on its service alone");
    }
}

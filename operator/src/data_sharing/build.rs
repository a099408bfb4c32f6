//! A DataSharingService's desired objects and status, with no client: pure functions of the
//! service, its place in the [`Directory`] of grants, the Platform, the Services behind its APIs
//! and its client certificate; unit-tested from `operator/tests/fixtures/data-sharing/`.
//!
//! - provider side: per provided API, the Service behind it ([`backend`]) and a NetworkPolicy
//!   admitting the LGSP gateway's Pods to that Service's Pods on its target port;
//! - consumer side: the client certificate Secret `<name>-lgsp-client`;
//! - the gateway: the route table ConfigMap in the operator's namespace ([`route_table`]).

use std::collections::BTreeMap;

use govpaas_crds::data_sharing::{
    ConsumptionStatus, DataSharingService, DataSharingServiceStatus, GrantState, ProvidedApi, RouteStatus,
};
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_crds::platform::PlatformSpec;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::grants::{Decision, Directory, IDENTITY_KIND, Member};
use crate::certificates::TlsMaterial;
use crate::error::Result;
use crate::lgsp::tables::{self, TableSource};
use crate::reconcile::Problem;
use crate::workload::objects::{self, Owner};
use govpaas_pki::AgencyIdentity;

/// The `app.kubernetes.io/component` of a DataSharingService's objects.
pub const COMPONENT: &str = "data-sharing";
/// The suffix of the client certificate Secret's name.
pub const CLIENT_SECRET_SUFFIX: &str = "-lgsp-client";
/// The label Kubernetes puts on every namespace: its name.
/// The longest name a DataSharingService may have: it is the `app.kubernetes.io/instance` label
/// value of its objects, which has at most 63 characters.
pub const MAX_NAME: usize = 63;

/// `Ready`'s and `RoutesRegistered`'s reason when the Service behind an API is missing or lacks
/// the port.
pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
/// The same, for a Service that selects no Pods (the NetworkPolicy could not select them).
pub const SERVICE_WITHOUT_SELECTOR: &str = "ServiceWithoutSelector";

/// `Ready`'s and `RoutesRegistered`'s reason when a provided API's `path` could climb out of its
/// prefix or be read two ways (admission refuses it; a route is never built from one that got
/// past, say under an older CRD).
pub const INVALID_PATH: &str = "InvalidPath";

/// `https://<lgsp.host or lgsp.<baseDomain>>`.
pub fn gateway_url(platform: &PlatformSpec) -> String {
    format!("https://{}", crate::lgsp::gateway_host(platform))
}

/// `<name>-lgsp-client`.
pub fn client_secret_name(name: &str) -> String {
    format!("{name}{CLIENT_SECRET_SUFFIX}")
}

/// `<name>.lgsp-<api>`: an API name has no dots, so no two (service, API) pairs share a name.
pub fn network_policy_name(name: &str, api: &str) -> String {
    format!("{name}.lgsp-{api}")
}

/// Checks what needs no other object: the name fits a label value.
pub fn validate(service: &DataSharingService) -> Option<Problem> {
    let name = service.name_any();
    (name.len() > MAX_NAME).then(|| Problem {
        reason: govpaas_crds::conditions::reasons::INVALID_SPEC,
        message: format!(
            "metadata.name {name:?} is {} characters long; at most {MAX_NAME} fit, because it labels the objects made for it (app.kubernetes.io/instance)",
            name.len()
        ),
    })
}

/// What a reconcile builds from.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub service: &'a DataSharingService,
    /// The service as the directory knows it (its agency).
    pub member: &'a Member<'a>,
    pub directory: &'a Directory<'a>,
    pub platform: &'a PlatformSpec,
    /// Where the operator and the LGSP gateway run.
    pub operator_namespace: &'a str,
}

impl Inputs<'_> {
    /// The client identity of this service: `spiffe://<base>/agency/<code>/dss/<name>`.
    pub fn identity(&self) -> std::result::Result<govpaas_pki::WorkloadIdentity, govpaas_pki::Error> {
        identity_of(&self.platform.base_domain, self.member)
    }
}

fn identity_of(
    base_domain: &str,
    member: &Member<'_>,
) -> std::result::Result<govpaas_pki::WorkloadIdentity, govpaas_pki::Error> {
    AgencyIdentity::new(base_domain, &member.agency_code)
        .and_then(|agency| agency.workload(IDENTITY_KIND, &member.name))
}

/// The Pods behind a provided API's Service and the port they serve it on.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub selector: BTreeMap<String, String>,
    pub target_port: IntOrString,
    pub protocol: String,
}

/// The backend of `api` from its Service as read (`None`: it does not exist).
pub fn backend(namespace: &str, api: &ProvidedApi, service: Option<&Service>) -> std::result::Result<Backend, Problem> {
    let what = format!("Service {namespace}/{} of API {}", api.service, api.name);
    let Some(service) = service else {
        return Err(Problem {
            reason: SERVICE_NOT_FOUND,
            message: format!("{what} does not exist: create it, or name another in spec.provides[].service"),
        });
    };
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let Some(port) = ports.iter().find(|p| p.port == api.port) else {
        let have: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
        return Err(Problem {
            reason: SERVICE_NOT_FOUND,
            message: format!(
                "{what} has no port {} (it has: {}): fix spec.provides[].port",
                api.port,
                if have.is_empty() { "none".into() } else { have.join(", ") }
            ),
        });
    };
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(Problem {
            reason: SERVICE_WITHOUT_SELECTOR,
            message: format!(
                "{what} selects no Pods (it has no spec.selector), so the gateway cannot be let through to them: give the Service a selector"
            ),
        });
    }
    Ok(Backend {
        selector,
        target_port: port.target_port.clone().unwrap_or(IntOrString::Int(port.port)),
        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
    })
}

/// A provided API and whether it can be registered.
#[derive(Clone, Debug)]
pub struct Provided<'a> {
    pub api: &'a ProvidedApi,
    pub backend: std::result::Result<Backend, Problem>,
}

/// Each provided API: its backend from `services` (by name), or why it cannot be registered (its
/// path is unsafe, an older service of the agency holds its name, its Service is missing).
pub fn provided<'a>(inputs: &Inputs<'a>, services: impl Fn(&str) -> Option<&'a Service>) -> Vec<Provided<'a>> {
    let namespace = &inputs.member.namespace;
    inputs
        .service
        .spec
        .provides
        .iter()
        .map(|api| {
            let path = govpaas_crds::common::check_http_path(&api.path).map_err(|rule| Problem {
                reason: INVALID_PATH,
                message: format!(
                    "API {}: spec.provides[].path {:?} {rule}: the API is not registered until the path is fixed",
                    api.name, api.path
                ),
            });
            let backend = match (path, inputs.directory.conflict(inputs.member, &api.name)) {
                (Err(problem), _) => Err(problem),
                (Ok(()), Some(owner)) => Err(Problem {
                    reason: super::grants::reasons::API_NAME_CONFLICT,
                    message: format!(
                        "API {} is already provided by DataSharingService {}/{} of the same agency: an API name belongs to one service; rename it",
                        api.name, owner.namespace, owner.name
                    ),
                }),
                (Ok(()), None) => backend(namespace, api, services(&api.service)),
            };
            Provided { api, backend }
        })
        .collect()
}

/// Each consumption's state, as status shows it, and the decision behind it.
pub fn consumptions(inputs: &Inputs<'_>) -> Vec<(ConsumptionStatus, Decision)> {
    let base = gateway_url(inputs.platform);
    let secret = client_secret_name(&inputs.member.name);
    inputs
        .service
        .spec
        .consumes
        .iter()
        .map(|consumed| {
            let decision = inputs.directory.decide(inputs.member, consumed);
            let url = decision.path.as_ref().map(|path| format!("{base}{path}"));
            let message = match (&decision.state, &url) {
                (GrantState::Granted, Some(url)) if decision.reason == super::grants::reasons::OPEN_DATA => {
                    format!("{}; call {url}", decision.message)
                }
                (GrantState::Granted, Some(url)) => {
                    format!("{}; call {url} with the client certificate in Secret {secret}", decision.message)
                }
                _ => decision.message.clone(),
            };
            let status = ConsumptionStatus {
                name: consumed.name.clone(),
                state: decision.state,
                reason: decision.reason.to_owned(),
                message,
                url: (decision.state == GrantState::Granted).then_some(url).flatten(),
            };
            (status, decision)
        })
        .collect()
}

/// The route table of this service: its registered APIs with the consumers both sides agreed on,
/// and the national APIs it was granted; `None` when it has nothing for the gateway.
pub fn route_table(
    inputs: &Inputs<'_>,
    registered: &[&ProvidedApi],
    consumptions: &[(ConsumptionStatus, Decision)],
    uid: &str,
) -> Option<RouteTable> {
    let member = inputs.member;
    let base_domain = &inputs.platform.base_domain;
    let routes: Vec<lgsp::Route> = registered
        .iter()
        .map(|api| {
            let mut consumers: Vec<lgsp::Consumer> = if api.open_data {
                Vec::new()
            } else {
                inputs
                    .directory
                    .granted_consumers(member, &api.name)
                    .into_iter()
                    .filter_map(|consumer| {
                        // An identity that cannot be named has no certificate either.
                        let identity = identity_of(base_domain, consumer).ok()?;
                        Some(lgsp::Consumer {
                            identity: identity.uri(),
                            agency_code: consumer.agency_code.clone(),
                            service: consumer.name.clone(),
                        })
                    })
                    .collect()
            };
            consumers.sort();
            lgsp::Route {
                api: api.name.clone(),
                path_prefix: lgsp::api_path(&member.agency, &api.name),
                upstream: lgsp::Upstream {
                    namespace: member.namespace.clone(),
                    service: api.service.clone(),
                    port: api.port,
                    path: api.path.clone(),
                },
                rate_limit: api.rate_limit.clone().unwrap_or_else(|| inputs.platform.lgsp.default_rate_limit.clone()),
                open_data: api.open_data,
                consumers,
            }
        })
        .collect();
    let national: Vec<lgsp::NationalRoute> = match inputs.identity() {
        Ok(identity) => inputs
            .service
            .spec
            .consumes
            .iter()
            .zip(consumptions)
            .filter(|(consumed, (status, _))| consumed.national && status.state == GrantState::Granted)
            .map(|(consumed, _)| lgsp::NationalRoute {
                api: consumed.api.clone(),
                path_prefix: lgsp::national_path(&consumed.api),
                consumer: identity.uri(),
                rate_limit: national_rate_limit(inputs.platform, &consumed.api),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if routes.is_empty() && national.is_empty() {
        return None;
    }
    Some(RouteTable {
        // Version 1: a data-sharing table has nothing of version 2's, and a gateway older than this
        // operator keeps reading it during an upgrade.
        schema: lgsp::SCHEMA_V1.to_owned(),
        source: lgsp::Source {
            kind: None,
            namespace: member.namespace.clone(),
            name: member.name.clone(),
            uid: uid.to_owned(),
            generation: inputs.service.metadata.generation,
        },
        agency_code: member.agency.clone(),
        routes,
        national,
        exchange: Vec::new(),
    })
}

/// The per-consumer rate limit of national API `api`: the catalogue's, else the Platform's default.
fn national_rate_limit(platform: &govpaas_crds::platform::PlatformSpec, api: &str) -> govpaas_crds::common::RateLimit {
    platform
        .lgsp
        .ndxp
        .as_ref()
        .and_then(|ndxp| ndxp.apis.iter().find(|listed| listed.name == api))
        .and_then(|listed| listed.rate_limit.clone())
        .unwrap_or_else(|| platform.lgsp.default_rate_limit.clone())
}

/// The ConfigMap holding `table`, in the operator's namespace (`crate::lgsp::tables`).
pub fn route_table_config_map(inputs: &Inputs<'_>, table: &RouteTable) -> ConfigMap {
    let member = inputs.member;
    let source = TableSource {
        kind: None,
        namespace: &member.namespace,
        name: &member.name,
        uid: &table.source.uid,
        tenant: &member.tenant,
    };
    tables::table_config_map(
        lgsp::route_table_name(&member.namespace, &member.name),
        inputs.operator_namespace,
        &source,
        table,
    )
}

/// The NetworkPolicy letting the LGSP gateway's Pods reach `backend`'s Pods on its target port.
pub fn network_policy(owner: &Owner, operator_namespace: &str, api: &ProvidedApi, backend: &Backend) -> NetworkPolicy {
    crate::lgsp::gateway_ingress_policy(
        owner.child_meta(&network_policy_name(&owner.name, &api.name)),
        backend.selector.clone(),
        operator_namespace,
        backend.target_port.clone(),
        &backend.protocol,
    )
}

/// A DataSharingService's desired objects.
#[derive(Clone, Debug)]
pub struct Desired {
    pub network_policies: Vec<NetworkPolicy>,
    /// Only when it consumes an API.
    pub client_secret: Option<Secret>,
    /// Only when it has something for the gateway.
    pub route_table: Option<ConfigMap>,
}

#[cfg(test)]
impl Desired {
    /// Every object, for golden files.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut values: Vec<serde_json::Value> =
            self.network_policies.iter().map(|p| serde_json::to_value(p).expect("serialises")).collect();
        values.extend(self.client_secret.iter().map(|s| serde_json::to_value(s).expect("serialises")));
        values.extend(self.route_table.iter().map(|c| serde_json::to_value(c).expect("serialises")));
        values
    }
}

/// Builds the objects: a NetworkPolicy per registered API, the client Secret from `client` (when
/// it consumes), the route table from `table`.
pub fn build(
    inputs: &Inputs<'_>,
    provided: &[Provided<'_>],
    client: Option<&TlsMaterial>,
    table: Option<&RouteTable>,
) -> Result<Desired> {
    let owner = Owner::of(inputs.service, COMPONENT)?;
    let network_policies = provided
        .iter()
        .filter_map(|p| p.backend.as_ref().ok().map(|backend| (p.api, backend)))
        .map(|(api, backend)| network_policy(&owner, inputs.operator_namespace, api, backend))
        .collect();
    Ok(Desired {
        network_policies,
        client_secret: client.map(|material| objects::tls_secret(&owner, &client_secret_name(&owner.name), material)),
        route_table: table.map(|table| route_table_config_map(inputs, table)),
    })
}

/// The status fields computed from what was applied (conditions and generation aside).
pub fn status(
    inputs: &Inputs<'_>,
    registered: &[&ProvidedApi],
    consumptions: &[(ConsumptionStatus, Decision)],
    client_certificate: Option<govpaas_crds::status::CertificateStatus>,
) -> DataSharingServiceStatus {
    let base = gateway_url(inputs.platform);
    let count = |state: GrantState| {
        i32::try_from(consumptions.iter().filter(|(c, _)| c.state == state).count()).unwrap_or(i32::MAX)
    };
    DataSharingServiceStatus {
        gateway_url: Some(base.clone()),
        provided_apis: Some(i32::try_from(registered.len()).unwrap_or(i32::MAX)),
        granted_consumptions: Some(count(GrantState::Granted)),
        pending_consumptions: Some(count(GrantState::Pending)),
        routes: registered
            .iter()
            .map(|api| RouteStatus {
                api: api.name.clone(),
                url: format!("{base}{}", lgsp::api_path(&inputs.member.agency, &api.name)),
            })
            .collect(),
        consumptions: consumptions.iter().map(|(c, _)| c.clone()).collect(),
        client_certificate,
        ..DataSharingServiceStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use govpaas_crds::Tenant;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    use super::*;
    use crate::data_sharing::grants::members;
    use crate::fixtures::{self, Case};

    struct World {
        case: Case,
        services: Vec<DataSharingService>,
        tenants: Vec<Tenant>,
        k8s_services: Vec<Service>,
    }

    fn world() -> World {
        let case = fixtures::case("data-sharing/grants.yaml");
        let services = case.all("DataSharingService");
        let tenants = case.all("Tenant");
        let k8s_services = fixtures::case("data-sharing/services.yaml").all("Service");
        World { case, services, tenants, k8s_services }
    }

    fn directory(world: &World) -> Directory<'_> {
        crate::data_sharing::grants::testing::directory(&world.services, &world.tenants, None)
    }

    fn service_named<'a>(world: &'a World, namespace: &str) -> impl Fn(&str) -> Option<&'a Service> {
        let namespace = namespace.to_owned();
        move |name| {
            world.k8s_services.iter().find(|s| s.name_any() == name && s.namespace().as_deref() == Some(&namespace))
        }
    }

    fn material() -> TlsMaterial {
        TlsMaterial {
            tls_crt: "-----BEGIN CERTIFICATE-----\nclient leaf and tenant CA\n-----END CERTIFICATE-----\n".into(),
            tls_key: "-----BEGIN PRIVATE KEY-----\nfixture\n-----END PRIVATE KEY-----\n".into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\nplatform CA\n-----END CERTIFICATE-----\n".into(),
            decided_from: None,
        }
    }

    /// Builds `namespace/name` as the reconcile would, with `golden` its golden file.
    fn built(world: &World, namespace: &str, name: &str, golden: &str) -> (Desired, DataSharingServiceStatus) {
        let directory = directory(world);
        let member = directory.member(namespace, name).unwrap();
        let inputs = Inputs {
            service: member.service,
            member,
            directory: &directory,
            platform: &world.case.platform.spec,
            operator_namespace: "govpaas-system",
        };
        assert_eq!(validate(member.service), None);
        let provided = provided(&inputs, service_named(world, namespace));
        let registered: Vec<&ProvidedApi> = provided.iter().filter(|p| p.backend.is_ok()).map(|p| p.api).collect();
        let consumptions = consumptions(&inputs);
        let uid = member.service.uid().unwrap_or_default();
        let table = route_table(&inputs, &registered, &consumptions, &uid);
        let consumes = !member.service.spec.consumes.is_empty();
        let material = material();
        let desired = build(&inputs, &provided, consumes.then_some(&material), table.as_ref()).unwrap();
        fixtures::assert_golden(&format!("data-sharing/{golden}.expected.yaml"), &desired.to_values());
        (desired, status(&inputs, &registered, &consumptions, None))
    }

    #[test]
    fn a_provider_gets_a_policy_per_api_and_a_route_table_listing_its_granted_consumers() {
        let world = world();
        let (desired, status) = built(&world, "so-tu-phap", "ho-tich", "provider");
        assert_eq!(desired.network_policies.len(), 3);
        assert!(desired.client_secret.is_none(), "a provider that consumes nothing has no client certificate");
        let policy = desired.network_policies[0].spec.clone().unwrap();
        let rule = &policy.ingress.unwrap()[0];
        assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::String("http".into())));
        let peer = &rule.from.as_ref().unwrap()[0];
        assert_eq!(
            peer.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
            "govpaas-gateway"
        );
        assert_eq!(
            peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "govpaas-system"
        );

        let config_map = desired.route_table.unwrap();
        assert_eq!(config_map.metadata.name.as_deref(), Some("lgsp-routes.so-tu-phap.ho-tich"));
        assert_eq!(config_map.metadata.namespace.as_deref(), Some("govpaas-system"));
        let table = RouteTable::from_json(&config_map.data.unwrap()["routes.json"]).unwrap();
        let route = &table.routes[0];
        assert_eq!(route.path_prefix, "/H48.12/tra-cuu-ho-tich/");
        assert_eq!(
            route.consumers.iter().map(|c| c.identity.as_str()).collect::<Vec<_>>(),
            ["spiffe://danang.gov.vn/agency/000.00.40.H48/dss/mot-cua"]
        );
        assert_eq!(route.rate_limit.requests_per_minute, 300);
        let giay_phep = &table.routes[1];
        assert!(giay_phep.consumers.is_empty(), "the only asker is denied");
        assert_eq!(giay_phep.rate_limit.requests_per_minute, 600, "the Platform's default");
        assert!(table.routes[2].open_data);

        assert_eq!(status.provided_apis, Some(3));
        assert_eq!(status.gateway_url.as_deref(), Some("https://lgsp.danang.gov.vn"));
        assert_eq!(status.routes[0].url, "https://lgsp.danang.gov.vn/H48.12/tra-cuu-ho-tich/");
    }

    #[test]
    fn a_consumer_gets_its_client_secret_and_each_consumptions_state() {
        let world = world();
        let (desired, status) = built(&world, "xa-hoa-vang", "mot-cua", "consumer");
        assert!(desired.network_policies.is_empty());
        let secret = desired.client_secret.unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("mot-cua-lgsp-client"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert!(desired.route_table.is_none(), "no national platform: nothing for the gateway");
        let states: Vec<(&str, GrantState, &str)> =
            status.consumptions.iter().map(|c| (c.name.as_str(), c.state, c.reason.as_str())).collect();
        assert_eq!(
            states,
            [
                ("ho-tich", GrantState::Granted, "Approved"),
                ("giay-phep", GrantState::Denied, "DeniedByProvider"),
                ("dat-dai", GrantState::Pending, "WaitingForProvider"),
                ("khong-co-api", GrantState::Denied, "ApiNotFound"),
                ("khong-co-co-quan", GrantState::Denied, "ApiNotFound"),
                ("dan-cu", GrantState::Denied, "NationalPlatformNotConfigured"),
            ]
        );
        let granted = &status.consumptions[0];
        assert_eq!(granted.url.as_deref(), Some("https://lgsp.danang.gov.vn/H48.12/tra-cuu-ho-tich/"));
        assert!(granted.message.contains("Secret mot-cua-lgsp-client"), "{}", granted.message);
        assert!(status.consumptions[2].url.is_none());
        assert_eq!((status.granted_consumptions, status.pending_consumptions), (Some(1), Some(1)));
        assert_eq!(status.provided_apis, Some(0));
    }

    #[test]
    fn national_grants_go_into_the_consumers_own_table() {
        let mut world = world();
        let mut ndxp = crate::data_sharing::grants::testing::ndxp(&["csdlqg-dan-cu"]);
        ndxp.apis[0].rate_limit = Some(govpaas_crds::common::RateLimit { requests_per_minute: 30, burst: 3 });
        world.case.platform.spec.lgsp.ndxp = Some(ndxp);
        world.case.platform.spec.lgsp.host = Some("lgsp.danang.gov.vn".into());
        let tenant_of = |namespace: &str| {
            world
                .tenants
                .iter()
                .find(|t| t.namespace_names().iter().any(|n| n == namespace))
                .map(|t| (t.name_any(), t.spec.agency.code.clone()))
        };
        let directory =
            Directory::new(members(&world.services, tenant_of), [], world.case.platform.spec.lgsp.ndxp.as_ref());
        let member = directory.member("xa-hoa-vang", "mot-cua").unwrap();
        let inputs = Inputs {
            service: member.service,
            member,
            directory: &directory,
            platform: &world.case.platform.spec,
            operator_namespace: "govpaas-system",
        };
        let consumptions = consumptions(&inputs);
        let table = route_table(&inputs, &[], &consumptions, "uid-1").unwrap();
        assert!(table.routes.is_empty());
        assert_eq!(table.national.len(), 1);
        assert_eq!(table.national[0].consumer, "spiffe://danang.gov.vn/agency/000.00.40.H48/dss/mot-cua");
        assert_eq!(table.national[0].rate_limit.requests_per_minute, 30, "the catalogue's limit");
        assert_eq!(table.agency_code, "H48.40");
        let config_map = route_table_config_map(&inputs, &table);
        let labels = config_map.metadata.labels.unwrap();
        assert_eq!(labels["govpaas.io/lgsp-source-uid"], "uid-1");
        assert_eq!(labels["govpaas.io/tenant"], "xa-hoa-vang");
        assert_eq!(labels["app.kubernetes.io/component"], "lgsp-routes");
    }

    #[test]
    fn a_missing_service_a_missing_port_and_a_name_conflict_are_reported_per_api() {
        let world = world();
        let directory = directory(&world);
        let member = directory.member("so-tu-phap", "ho-tich-moi").unwrap();
        let inputs = Inputs {
            service: member.service,
            member,
            directory: &directory,
            platform: &world.case.platform.spec,
            operator_namespace: "govpaas-system",
        };
        let provided = provided(&inputs, service_named(&world, "so-tu-phap"));
        let reasons: Vec<&str> = provided.iter().map(|p| p.backend.as_ref().err().map_or("ok", |e| e.reason)).collect();
        assert_eq!(reasons, ["ApiNameConflict", "ServiceNotFound"]);
        assert!(
            provided[1]
                .backend
                .as_ref()
                .unwrap_err()
                .message
                .contains("ho-tich-2 of API ho-tich-moi-api does not exist")
        );

        let api = &member.service.spec.provides[1];
        let wrong_port = Service {
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "x".into())])),
                ports: Some(vec![ServicePort { port: 9090, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let problem = backend("so-tu-phap", api, Some(&wrong_port)).unwrap_err();
        assert_eq!(problem.reason, "ServiceNotFound");
        assert!(problem.message.contains("has no port 8080 (it has: 9090)"), "{}", problem.message);
        let selectorless = Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort { port: 8080, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(backend("so-tu-phap", api, Some(&selectorless)).unwrap_err().reason, "ServiceWithoutSelector");
        let numbered = Service {
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "x".into())])),
                ports: Some(vec![ServicePort { port: 8080, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let backend = backend("so-tu-phap", api, Some(&numbered)).unwrap();
        assert_eq!((backend.target_port, backend.protocol.as_str()), (IntOrString::Int(8080), "TCP"));
    }

    #[test]
    fn an_api_whose_path_could_escape_its_prefix_is_not_registered() {
        let mut world = world();
        let unsafe_paths = [
            "/api/../admin",
            "/..",
            "/api/./v1",
            "/api/%2e%2e/admin",
            "/api/.%2E/admin",
            "/api/%2E./admin",
            "/api%2fadmin",
            "/api%5Cadmin",
            "/api\\admin",
            "/api//v1",
            "/api/\u{7}",
            "/api/%00",
        ];
        let good = world.services.iter().position(|s| s.name_any() == "ho-tich").unwrap();
        let mut paths = unsafe_paths.iter();
        for api in &mut world.services[good].spec.provides {
            api.path = (*paths.next().unwrap()).to_owned();
        }
        let directory = directory(&world);
        let member = directory.member("so-tu-phap", "ho-tich").unwrap();
        let inputs = Inputs {
            service: member.service,
            member,
            directory: &directory,
            platform: &world.case.platform.spec,
            operator_namespace: "govpaas-system",
        };
        let provided = provided(&inputs, service_named(&world, "so-tu-phap"));
        for p in &provided {
            let problem = p.backend.as_ref().expect_err(&p.api.path);
            assert_eq!(problem.reason, INVALID_PATH, "{}", p.api.path);
            assert!(problem.message.contains("spec.provides[].path"), "{}", problem.message);
        }
        assert!(provided[0].backend.as_ref().unwrap_err().message.contains("'.' or '..' segments"));
        let registered: Vec<&ProvidedApi> = provided.iter().filter(|p| p.backend.is_ok()).map(|p| p.api).collect();
        let table = route_table(&inputs, &registered, &consumptions(&inputs), "uid");
        assert!(table.is_none(), "no route is built from an unsafe path");
        let desired = build(&inputs, &provided, None, None).unwrap();
        assert!(desired.network_policies.is_empty());
        for path in unsafe_paths {
            assert!(govpaas_crds::common::check_http_path(path).is_err(), "{path}");
        }
    }

    #[test]
    fn names_and_the_gateway_url() {
        assert_eq!(client_secret_name("mot-cua"), "mot-cua-lgsp-client");
        assert_eq!(network_policy_name("ho-tich", "tra-cuu"), "ho-tich.lgsp-tra-cuu");
        let mut platform = fixtures::platform().spec;
        assert_eq!(gateway_url(&platform), "https://lgsp.quangnam.gov.vn");
        platform.lgsp.host = Some("lienthong.quangnam.gov.vn".into());
        assert_eq!(gateway_url(&platform), "https://lienthong.quangnam.gov.vn");
        let mut service: DataSharingService = world().services[0].clone();
        service.metadata.name = Some("x".repeat(64));
        assert_eq!(validate(&service).unwrap().reason, "InvalidSpec");
    }
}

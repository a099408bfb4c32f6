//! DataSharingServices on the real control plane: the chart installed, the operator running as a
//! local process with the chart's ServiceAccount token and scoped to this test's two Tenants (see
//! `govpaas_tests::operator`): a provider agency with a Service behind its API, and a consumer.

use std::ops::Deref;
use std::time::Duration;

use govpaas_crds::DataSharingService;
use govpaas_crds::data_sharing::{ConsumptionStatus, GrantState};
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_pki::TrustAnchors;
use govpaas_pki::verify::{chain_from_pem, verify_client_chain};
use govpaas_tests::operator;
use govpaas_tests::world::{
    ConsumedApiBuilder, DataSharingServiceBuilder, ProvidedApiBuilder, World, condition, service,
};
use govpaas_tests::{eventually, secret_data};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use time::OffsetDateTime;

const PROVIDER_CODE: &str = "H48";
const CONSUMER_CODE: &str = "H49";

/// The shared world with two Tenants: a provider agency and a consumer.
struct Sharing {
    world: World,
    provider: String,
    consumer: String,
}

impl Deref for Sharing {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Sharing {
    async fn new() -> Self {
        let world = World::new("dss").await;
        let (provider, consumer) = (format!("{}-tp", world.scope), format!("{}-xa", world.scope));
        world.apply(&world.tenant(&provider).code(PROVIDER_CODE).display_name("Sở Tư pháp").build()).await;
        let consumer_tenant = world.tenant(&consumer).code(CONSUMER_CODE).display_name("Ủy ban nhân dân xã Hòa Vang");
        world.apply(&consumer_tenant.build()).await;
        world.tenant_ready(&provider).await;
        world.tenant_ready(&consumer).await;
        Sharing { world, provider, consumer }
    }

    /// The provider's DataSharingService `ho-tich`, its API `tra-cuu-ho-tich` decided on by `decide`.
    async fn apply_provider(&self, decide: impl FnOnce(ProvidedApiBuilder) -> ProvidedApiBuilder) {
        let api = ProvidedApiBuilder::new("tra-cuu-ho-tich", "ho-tich", 8080).path("/api/v1");
        self.apply(&DataSharingServiceBuilder::new(&self.provider, "ho-tich").provides(decide(api)).build()).await;
    }

    /// Waits until `check` finds what it looks for in DataSharingService `namespace/name`, its
    /// status describing its current generation.
    async fn wait_service<T>(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&DataSharingService) -> Option<T>,
    ) -> T {
        self.observed(namespace, name, what, check).await
    }

    /// Waits for the consumer's consumption `ho-tich` in `state` with `reason`.
    async fn consumption(&self, state: GrantState, reason: &str) -> ConsumptionStatus {
        self.wait_service(&self.consumer, "mot-cua", &format!("consumption ho-tich {state:?} {reason}"), |s| {
            let c = s.status.as_ref()?.consumptions.iter().find(|c| c.name == "ho-tich")?;
            (c.state == state && c.reason == reason).then(|| c.clone())
        })
        .await
    }

    /// Waits for the condition on `namespace/name` at its current generation; its message.
    async fn condition_message(&self, namespace: &str, name: &str, type_: &str, status: &str, reason: &str) -> String {
        let service: DataSharingService = self.condition(namespace, name, type_, status, Some(reason)).await;
        condition(&service.status.expect("a status").conditions, type_).message.clone()
    }

    /// The provider's route table, once `check` accepts it.
    async fn route_table(&self, what: &str, check: impl Fn(&RouteTable) -> bool) -> RouteTable {
        let name = lgsp::route_table_name(&self.provider, "ho-tich");
        self.wait(operator::NAMESPACE, &name, &format!("route table: {what}"), |config_map: &ConfigMap| {
            let table = RouteTable::from_json(config_map.data.as_ref()?.get(lgsp::ROUTE_TABLE_KEY)?).ok()?;
            check(&table).then_some(table)
        })
        .await
    }

    fn consumer_identity(&self) -> String {
        format!("spiffe://{}/agency/{CONSUMER_CODE}/dss/mot-cua", self.base_domain)
    }
}

#[tokio::test]
async fn a_grant_needs_both_sides_and_the_route_table_follows_the_providers_decision() {
    let world = Sharing::new().await;
    let (provider, consumer) = (world.provider.clone(), world.consumer.clone());

    // The provider's API, behind its own Service; nobody approved yet.
    world.apply(&service(&provider, "ho-tich", "ho-tich", 8080, Some(9000))).await;
    world.apply_provider(|api| api).await;
    let asking =
        ConsumedApiBuilder::new("ho-tich", PROVIDER_CODE, "tra-cuu-ho-tich").purpose("Tiếp nhận hồ sơ một cửa");
    world.apply(&DataSharingServiceBuilder::new(&consumer, "mot-cua").consumes(asking).build()).await;

    // Asked but not approved: pending, no URL, no consumer in the route table.
    let pending = world.consumption(GrantState::Pending, "WaitingForProvider").await;
    assert!(pending.url.is_none());
    assert!(pending.message.contains(&format!("{{agencyCode: {CONSUMER_CODE}}}")), "{}", pending.message);
    let message = world.condition_message(&provider, "ho-tich", "RoutesRegistered", "True", "Registered").await;
    assert!(message.contains("the LGSP gateway serves the provided APIs"), "{message}");
    let table = world.route_table("registered, no consumer", |t| t.routes.len() == 1).await;
    let route = &table.routes[0];
    assert!(route.consumers.is_empty(), "{route:?}");
    assert_eq!(route.path_prefix, format!("/{PROVIDER_CODE}/tra-cuu-ho-tich/"));
    assert_eq!(
        (route.upstream.service.as_str(), route.upstream.port, route.upstream.path.as_str()),
        ("ho-tich", 8080, "/api/v1")
    );
    assert_eq!(route.rate_limit.requests_per_minute, 600, "the Platform's default");

    // Only the gateway reaches the API's Pods, on the Service's target port.
    let policy =
        world.wait(&provider, "ho-tich.lgsp-tra-cuu-ho-tich", "the API's NetworkPolicy", |p: &NetworkPolicy| {
            Some(p.clone())
        });
    let spec = policy.await.spec.expect("a spec");
    assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap()["app"], "ho-tich");
    let rule = &spec.ingress.unwrap()[0];
    assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(9000)));
    let peer = &rule.from.as_ref().unwrap()[0];
    assert_eq!(
        peer.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "govpaas-gateway"
    );

    // The consumer's client certificate: a client chain to the platform trust, with its identity.
    let secret = world.wait(&consumer, "mot-cua-lgsp-client", "the client certificate", |s: &Secret| Some(s.clone()));
    let secret = secret.await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = chain_from_pem("tls.crt", &secret_data(&secret, "tls.crt")).expect("a chain");
    assert_eq!(chain.len(), 2, "the leaf and the tenant CA");
    let trust = TrustAnchors::from_pem(&secret_data(&secret, "ca.crt")).expect("ca.crt is the trust bundle");
    let identity = verify_client_chain(&chain, &trust, OffsetDateTime::now_utc()).expect("a valid client certificate");
    assert_eq!(identity.uri(), world.consumer_identity());
    assert!(!secret_data(&secret, "tls.key").is_empty());
    let ready = world.condition_message(&consumer, "mot-cua", "CertificateReady", "True", "Issued").await;
    assert!(ready.contains(&world.consumer_identity()), "{ready}");
    let status = world
        .wait_service(&consumer, "mot-cua", "status.clientCertificate", |s| s.status.clone()?.client_certificate)
        .await;
    assert_eq!(status.secret_name.as_deref(), Some("mot-cua-lgsp-client"));

    // The provider approves the consumer's agency: granted, with its URL; the table lists it.
    world.apply_provider(|api| api.approve(CONSUMER_CODE)).await;
    let granted = world.consumption(GrantState::Granted, "Approved").await;
    let url = format!("https://lgsp.{}/{PROVIDER_CODE}/tra-cuu-ho-tich/", world.base_domain);
    assert_eq!(granted.url.as_deref(), Some(url.as_str()));
    let identity = world.consumer_identity();
    let table = world
        .route_table("the consumer granted", |t| t.routes[0].consumers.iter().any(|c| c.identity == identity))
        .await;
    assert_eq!(table.routes[0].consumers.len(), 1);
    let gateway = world.wait_service(&consumer, "mot-cua", "granted count", |s| {
        let status = s.status.clone()?;
        (status.granted_consumptions == Some(1)).then_some(status.gateway_url)?
    });
    assert_eq!(gateway.await, format!("https://lgsp.{}", world.base_domain));

    // The provider denies it: denied, and the identity leaves the table.
    world.apply_provider(|api| api.deny(CONSUMER_CODE)).await;
    let denied = world.consumption(GrantState::Denied, "DeniedByProvider").await;
    assert!(denied.url.is_none());
    world.route_table("the consumer removed", |t| t.routes[0].consumers.is_empty()).await;

    // The provider's DataSharingService goes: the sweep deletes its route table (no owner
    // reference can reach across namespaces, so nothing else would), and the API is not found any
    // more. The table stays gone: nothing writes it back.
    let name = lgsp::route_table_name(&provider, "ho-tich");
    world.delete::<DataSharingService>(&provider, "ho-tich").await;
    world.gone::<DataSharingService>(&provider, "ho-tich").await;
    world.gone::<ConfigMap>(operator::NAMESPACE, &name).await;
    world.consumption(GrantState::Denied, "ApiNotFound").await;
    assert!(world.get_opt::<ConfigMap>(operator::NAMESPACE, &name).await.is_none(), "the route table came back");
}

#[tokio::test]
async fn a_missing_service_is_a_condition_until_it_appears() {
    let world = Sharing::new().await;
    let provider = world.provider.clone();
    let open_data = ProvidedApiBuilder::new("du-lieu-mo", "du-lieu-mo", 80).open_data();
    world.apply(&DataSharingServiceBuilder::new(&provider, "du-lieu-mo").provides(open_data).build()).await;
    let message = world.condition_message(&provider, "du-lieu-mo", "Ready", "False", "ServiceNotFound").await;
    assert!(message.contains("du-lieu-mo does not exist"), "{message}");
    world.condition_message(&provider, "du-lieu-mo", "RoutesRegistered", "False", "ServiceNotFound").await;

    // The Service appears: the watch wakes the DataSharingService, which registers its route.
    world.apply(&service(&provider, "du-lieu-mo", "du-lieu-mo", 80, None)).await;
    world.condition_message(&provider, "du-lieu-mo", "Ready", "True", "Reconciled").await;
    let table: ConfigMap = world.get(operator::NAMESPACE, &lgsp::route_table_name(&provider, "du-lieu-mo")).await;
    let table = RouteTable::from_json(&table.data.unwrap()[lgsp::ROUTE_TABLE_KEY]).expect("a route table");
    assert!(table.routes[0].open_data);
    assert!(table.routes[0].consumers.is_empty());
    assert!(
        world.get_opt::<Secret>(&provider, "du-lieu-mo-lgsp-client").await.is_none(),
        "a provider only has no client certificate"
    );
}

/// Agency codes name agencies, whichever form they are written in: a consumption and an approval
/// in the legacy QCVN 102:2016 form grant exactly as the plain form does (the URL and the route
/// table use the plain form), and a service consuming its own API under its agency's legacy code
/// is refused at admission, the policy reading the label the tenant controller wrote.
#[tokio::test]
async fn agency_codes_in_either_form_name_the_same_agency() {
    let world = Sharing::new().await;
    let (provider, consumer) = (world.provider.clone(), world.consumer.clone());
    let legacy = |code: &str| format!("000.00.00.{code}");
    world.apply(&service(&provider, "ho-tich", "ho-tich", 8080, None)).await;
    world.apply_provider(|api| api.approve(&legacy(CONSUMER_CODE))).await;
    let asking = ConsumedApiBuilder::new("ho-tich", &legacy(PROVIDER_CODE), "tra-cuu-ho-tich");
    world.apply(&DataSharingServiceBuilder::new(&consumer, "mot-cua").consumes(asking).build()).await;
    let granted = world.consumption(GrantState::Granted, "Approved").await;
    let url = format!("https://lgsp.{}/{PROVIDER_CODE}/tra-cuu-ho-tich/", world.base_domain);
    assert_eq!(granted.url.as_deref(), Some(url.as_str()));
    let identity = world.consumer_identity();
    let table = world
        .route_table("the consumer granted", |t| t.routes[0].consumers.iter().any(|c| c.identity == identity))
        .await;
    assert_eq!(table.agency_code, PROVIDER_CODE);

    // Consuming its own API, its agency written in the legacy form: refused at admission.
    let own = DataSharingServiceBuilder::new(&provider, "chinh-minh")
        .provides(ProvidedApiBuilder::new("tu-tra-cuu", "ho-tich", 8080))
        .consumes(ConsumedApiBuilder::new("vong-lai", &legacy(PROVIDER_CODE), "tu-tra-cuu"))
        .build();
    // Admission reads the namespace's labels from an informer: allow it a moment to see them.
    let refusal = eventually(Duration::from_secs(30), "the self-consumption refused at admission", || async {
        world.dry_run(&own).await.err()
    })
    .await;
    assert!(refusal.contains("ValidatingAdmissionPolicy 'govpaas-data-sharing-no-self-consumption'"), "{refusal}");
    assert!(
        refusal.contains(&format!(
            "spec.consumes: vong-lai consumes an API that this DataSharingService provides itself (agency {PROVIDER_CODE})"
        )),
        "{refusal}"
    );
    assert!(world.get_opt::<DataSharingService>(&provider, "chinh-minh").await.is_none(), "nothing stored");
}

//! DataSharingServices on the real control plane: the chart installed, the operator running as a
//! local process with the chart's ServiceAccount token and scoped to this test's two Tenants (see
//! `govpaas_tests::operator`): a provider agency with a Service behind its API, and a consumer.

use std::time::Duration;

use govpaas_crds::DataSharingService;
use govpaas_crds::data_sharing::{ConsumptionStatus, GrantState};
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_pki::TrustAnchors;
use govpaas_pki::verify::{chain_from_pem, verify_client_chain};
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, cluster, eventually, secret_data, unique_name};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client, ResourceExt};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(120);
const PROVIDER_CODE: &str = "H48";
const CONSUMER_CODE: &str = "H49";

/// The test's world: its operator, two Tenants (deleted at the end), a client.
struct World {
    cluster: &'static Cluster,
    operator: OperatorProcess,
    client: Client,
    base_domain: String,
    provider: String,
    consumer: String,
}

impl World {
    async fn new() -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        let base_domain = operator::ensure_platform(cluster);
        let scope = unique_name("dss");
        let operator = OperatorProcess::start(cluster, &scope);
        let world = World {
            cluster,
            operator,
            client: cluster.client().await,
            base_domain,
            provider: format!("{scope}-tp"),
            consumer: format!("{scope}-xa"),
        };
        world.apply_tenant(&world.provider, PROVIDER_CODE, "Sở Tư pháp");
        world.apply_tenant(&world.consumer, CONSUMER_CODE, "Ủy ban nhân dân xã Hòa Vang");
        world.wait_tenant_ready(&world.provider).await;
        world.wait_tenant_ready(&world.consumer).await;
        world
    }

    fn apply_tenant(&self, name: &str, code: &str, display_name: &str) {
        self.cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"{display_name}\"\n    level: Province\n  quota: {{cpu: \"4\", memory: 8Gi, storage: 10Gi, pods: 10, services: 10, publicHosts: 2, lgspApis: 5}}\n",
            scope = self.operator.scope_label(),
        ));
    }

    async fn wait_tenant_ready(&self, name: &str) {
        let api: Api<govpaas_crds::Tenant> = Api::all(self.client.clone());
        eventually(WAIT, &format!("Tenant {name} Ready"), || async {
            let tenant = api.get(name).await.ok()?;
            tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());
        eventually(WAIT, &format!("namespace {name} labelled and annotated"), || async {
            let ns = namespaces.get(name).await.ok()?;
            ns.annotations().contains_key("govpaas.io/domain").then_some(())
        })
        .await;
    }

    fn apply(&self, manifest: &str) {
        self.cluster.apply(manifest);
    }

    /// The provider's DataSharingService `ho-tich`, approving `consumers` (YAML flow list).
    fn apply_provider(&self, consumers: &str) {
        self.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: ho-tich\n  namespace: {ns}\nspec:\n  provides:\n  - name: tra-cuu-ho-tich\n    service: ho-tich\n    port: 8080\n    path: /api/v1\n    consumers: {consumers}\n",
            ns = self.provider
        ));
    }

    /// Waits until `check` finds what it looks for in DataSharingService `namespace/name`.
    async fn wait_service<T>(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&DataSharingService) -> Option<T>,
    ) -> T {
        let api: Api<DataSharingService> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("{what} ({namespace}/{name})");
        let found = eventually(WAIT, &what, || async { api.get(name).await.ok().and_then(|s| check(&s)) });
        found.await
    }

    /// Waits for the consumer's consumption `ho-tich` in `state` with `reason`.
    async fn consumption(&self, state: GrantState, reason: &str) -> ConsumptionStatus {
        self.wait_service(&self.consumer, "mot-cua", &format!("consumption ho-tich {state:?} {reason}"), |s| {
            let c = s.status.as_ref()?.consumptions.iter().find(|c| c.name == "ho-tich")?;
            (c.state == state && c.reason == reason).then(|| c.clone())
        })
        .await
    }

    async fn condition(&self, namespace: &str, name: &str, type_: &str, status: &str, reason: &str) -> String {
        self.wait_service(namespace, name, &format!("{type_}={status} {reason}"), |s| {
            let c = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
            (c.status == status && c.reason == reason).then(|| c.message.clone())
        })
        .await
    }

    /// The provider's route table, once `check` accepts it.
    async fn route_table(&self, what: &str, check: impl Fn(&RouteTable) -> bool) -> RouteTable {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), operator::NAMESPACE);
        let name = lgsp::route_table_name(&self.provider, "ho-tich");
        eventually(WAIT, &format!("route table {name}: {what}"), || async {
            let config_map = api.get(&name).await.ok()?;
            let table = RouteTable::from_json(config_map.data.as_ref()?.get(lgsp::ROUTE_TABLE_KEY)?).ok()?;
            check(&table).then_some(table)
        })
        .await
    }

    fn consumer_identity(&self) -> String {
        format!("spiffe://{}/agency/{CONSUMER_CODE}/dss/mot-cua", self.base_domain)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for tenant in [&self.provider, &self.consumer] {
            let _ = self
                .cluster
                .kubectl()
                .args(["delete", "tenant", tenant, "--ignore-not-found", "--wait=false"])
                .output();
        }
    }
}

#[tokio::test]
async fn a_grant_needs_both_sides_and_the_route_table_follows_the_providers_decision() {
    let world = World::new().await;
    let (provider, consumer) = (world.provider.clone(), world.consumer.clone());

    // The provider's API, behind its own Service; nobody approved yet.
    world.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ho-tich\n  namespace: {provider}\nspec:\n  selector: {{app: ho-tich}}\n  ports: [{{port: 8080, targetPort: 9000}}]\n"
    ));
    world.apply_provider("[]");
    world.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: mot-cua\n  namespace: {consumer}\nspec:\n  consumes:\n  - {{name: ho-tich, agencyCode: {PROVIDER_CODE}, api: tra-cuu-ho-tich, purpose: \"Tiếp nhận hồ sơ một cửa\"}}\n"
    ));

    // Asked but not approved: pending, no URL, no consumer in the route table.
    let pending = world.consumption(GrantState::Pending, "WaitingForProvider").await;
    assert!(pending.url.is_none());
    assert!(pending.message.contains(&format!("{{agencyCode: {CONSUMER_CODE}}}")), "{}", pending.message);
    let message = world.condition(&provider, "ho-tich", "RoutesRegistered", "True", "Registered").await;
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
    let policies: Api<NetworkPolicy> = Api::namespaced(world.client.clone(), &provider);
    let policy = eventually(WAIT, "the API's NetworkPolicy", || async {
        policies.get("ho-tich.lgsp-tra-cuu-ho-tich").await.ok()
    })
    .await;
    let spec = policy.spec.expect("a spec");
    assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap()["app"], "ho-tich");
    let rule = &spec.ingress.unwrap()[0];
    assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(9000)));
    let peer = &rule.from.as_ref().unwrap()[0];
    assert_eq!(
        peer.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "govpaas-gateway"
    );

    // The consumer's client certificate: a client chain to the platform trust, with its identity.
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), &consumer);
    let secret =
        eventually(WAIT, "the client certificate Secret", || async { secrets.get("mot-cua-lgsp-client").await.ok() })
            .await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = chain_from_pem("tls.crt", &secret_data(&secret, "tls.crt")).expect("a chain");
    assert_eq!(chain.len(), 2, "the leaf and the tenant CA");
    let trust = TrustAnchors::from_pem(&secret_data(&secret, "ca.crt")).expect("ca.crt is the trust bundle");
    let identity = verify_client_chain(&chain, &trust, OffsetDateTime::now_utc()).expect("a valid client certificate");
    assert_eq!(identity.uri(), world.consumer_identity());
    assert!(!secret_data(&secret, "tls.key").is_empty());
    let ready = world.condition(&consumer, "mot-cua", "CertificateReady", "True", "Issued").await;
    assert!(ready.contains(&world.consumer_identity()), "{ready}");
    let status = world
        .wait_service(&consumer, "mot-cua", "status.clientCertificate", |s| s.status.clone()?.client_certificate)
        .await;
    assert_eq!(status.secret_name.as_deref(), Some("mot-cua-lgsp-client"));

    // The provider approves the consumer's agency: granted, with its URL; the table lists it.
    world.apply_provider(&format!("[{{agencyCode: {CONSUMER_CODE}}}]"));
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
    world.apply_provider(&format!("[{{agencyCode: {CONSUMER_CODE}, decision: Deny}}]"));
    let denied = world.consumption(GrantState::Denied, "DeniedByProvider").await;
    assert!(denied.url.is_none());
    world.route_table("the consumer removed", |t| t.routes[0].consumers.is_empty()).await;

    // The provider's DataSharingService goes: its route table goes; the API is not found any more.
    let api: Api<DataSharingService> = Api::namespaced(world.client.clone(), &provider);
    api.delete("ho-tich", &Default::default()).await.expect("deleting the provider's DataSharingService");
    let config_maps: Api<ConfigMap> = Api::namespaced(world.client.clone(), operator::NAMESPACE);
    let name = lgsp::route_table_name(&provider, "ho-tich");
    eventually(WAIT, "the route table deleted", || async {
        config_maps.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    world.consumption(GrantState::Denied, "ApiNotFound").await;
    assert!(world.operator.log().contains("deleted the route table"), "the sweep logged it");
}

#[tokio::test]
async fn a_missing_service_is_a_condition_until_it_appears() {
    let world = World::new().await;
    let provider = world.provider.clone();
    world.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: du-lieu-mo\n  namespace: {provider}\nspec:\n  provides:\n  - {{name: du-lieu-mo, service: du-lieu-mo, port: 80, openData: true}}\n"
    ));
    let message = world.condition(&provider, "du-lieu-mo", "Ready", "False", "ServiceNotFound").await;
    assert!(message.contains("du-lieu-mo does not exist"), "{message}");
    world.condition(&provider, "du-lieu-mo", "RoutesRegistered", "False", "ServiceNotFound").await;

    // The Service appears: the watch wakes the DataSharingService, which registers its route.
    world.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: du-lieu-mo\n  namespace: {provider}\nspec:\n  selector: {{app: du-lieu-mo}}\n  ports: [{{port: 80}}]\n"
    ));
    world.condition(&provider, "du-lieu-mo", "Ready", "True", "Reconciled").await;
    let api: Api<ConfigMap> = Api::namespaced(world.client.clone(), operator::NAMESPACE);
    let table = api.get(&lgsp::route_table_name(&provider, "du-lieu-mo")).await.expect("the route table");
    let table = RouteTable::from_json(&table.data.unwrap()[lgsp::ROUTE_TABLE_KEY]).expect("a route table");
    assert!(table.routes[0].open_data);
    assert!(table.routes[0].consumers.is_empty());
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), &provider);
    assert!(
        secrets.get_opt("du-lieu-mo-lgsp-client").await.unwrap().is_none(),
        "a provider only has no client certificate"
    );
}

/// Agency codes name agencies, whichever form they are written in: a consumption and an approval
/// in the legacy QCVN 102:2016 form grant exactly as the plain form does (the URL and the route
/// table use the plain form), and a service consuming its own API under its agency's legacy code
/// is refused at admission, the policy reading the label the tenant controller wrote.
#[tokio::test]
async fn agency_codes_in_either_form_name_the_same_agency() {
    let world = World::new().await;
    let (provider, consumer) = (world.provider.clone(), world.consumer.clone());
    let legacy = |code: &str| format!("000.00.00.{code}");
    world.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ho-tich\n  namespace: {provider}\nspec:\n  selector: {{app: ho-tich}}\n  ports: [{{port: 8080}}]\n"
    ));
    world.apply_provider(&format!("[{{agencyCode: \"{}\"}}]", legacy(CONSUMER_CODE)));
    world.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: mot-cua\n  namespace: {consumer}\nspec:\n  consumes:\n  - {{name: ho-tich, agencyCode: \"{}\", api: tra-cuu-ho-tich}}\n",
        legacy(PROVIDER_CODE)
    ));
    let granted = world.consumption(GrantState::Granted, "Approved").await;
    let url = format!("https://lgsp.{}/{PROVIDER_CODE}/tra-cuu-ho-tich/", world.base_domain);
    assert_eq!(granted.url.as_deref(), Some(url.as_str()));
    let identity = world.consumer_identity();
    let table = world
        .route_table("the consumer granted", |t| t.routes[0].consumers.iter().any(|c| c.identity == identity))
        .await;
    assert_eq!(table.agency_code, PROVIDER_CODE);

    // Consuming its own API, its agency written in the legacy form: refused at admission.
    let own = format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: chinh-minh\n  namespace: {provider}\nspec:\n  provides:\n  - {{name: tu-tra-cuu, service: ho-tich, port: 8080}}\n  consumes:\n  - {{name: vong-lai, agencyCode: \"{}\", api: tu-tra-cuu}}\n",
        legacy(PROVIDER_CODE)
    );
    // Admission reads the namespace's labels from an informer: allow it a moment to see them.
    let refusal = eventually(Duration::from_secs(30), "the self-consumption refused at admission", || async {
        let (accepted, _, err) = world.cluster.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &own);
        (!accepted).then_some(err)
    })
    .await;
    assert!(refusal.contains("ValidatingAdmissionPolicy 'govpaas-data-sharing-no-self-consumption'"), "{refusal}");
    assert!(
        refusal.contains(&format!(
            "spec.consumes: vong-lai consumes an API that this DataSharingService provides itself (agency {PROVIDER_CODE})"
        )),
        "{refusal}"
    );
}

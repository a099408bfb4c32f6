//! The LGSP end to end on the real control plane: the operator (a local process with the chart's
//! credentials, scoped to this test's Tenants) compiles the DataSharingServices into route tables
//! and issues the client certificates and the gateway's own certificate; the gateway (a local
//! process with the chart's gateway credentials, `--routes-from-cluster`) serves them. A hyper
//! upstream on loopback stands in for the provider's Service, reached through `--resolve`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use govpaas_crds::data_sharing::GrantState;
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_crds::{DataSharingService, Platform};
use govpaas_pki::TrustAnchors;
use govpaas_tests::gateway::GatewayProcess;
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, cluster, eventually, secret_data, unique_name};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use rustls::pki_types::ServerName;

const WAIT: Duration = Duration::from_secs(120);
/// Agency codes of this test's scope (the operator sees only its scope's Tenants).
const PROVIDER_CODE: &str = "H48.20";
const CONSUMER_CODE: &str = "H48.21";
const OTHER_CODE: &str = "H48.22";

struct World {
    cluster: &'static Cluster,
    operator: OperatorProcess,
    client: Client,
    base_domain: String,
    scope: String,
    tenants: Vec<String>,
}

impl World {
    async fn new() -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        let base_domain = operator::ensure_platform(cluster);
        let scope = unique_name("lgsp");
        let operator = OperatorProcess::start(cluster, &scope);
        let client = cluster.client().await;
        let mut world = World { cluster, operator, client, base_domain, scope, tenants: Vec::new() };
        for (suffix, code, display_name) in [
            ("tp", PROVIDER_CODE, "Sở Tư pháp"),
            ("xa", CONSUMER_CODE, "Ủy ban nhân dân xã Hòa Vang"),
            ("yt", OTHER_CODE, "Sở Y tế"),
        ] {
            let name = format!("{}-{suffix}", world.scope);
            world.cluster.apply(&format!(
                "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"{display_name}\"\n    level: Province\n  quota: {{cpu: \"4\", memory: 8Gi, storage: 10Gi, pods: 10, services: 10, publicHosts: 2, lgspApis: 5}}\n",
                scope = world.operator.scope_label(),
            ));
            world.tenants.push(name);
        }
        for name in world.tenants.clone() {
            world.wait_tenant_ready(&name).await;
        }
        world
    }

    fn provider(&self) -> &str {
        &self.tenants[0]
    }

    fn consumer(&self) -> &str {
        &self.tenants[1]
    }

    fn other(&self) -> &str {
        &self.tenants[2]
    }

    /// The API's name: unique per run, so route tables left by an earlier run never contest it.
    fn api(&self) -> String {
        format!("ho-tich-{}", self.scope)
    }

    async fn wait_tenant_ready(&self, name: &str) {
        let api: Api<govpaas_crds::Tenant> = Api::all(self.client.clone());
        eventually(WAIT, &format!("Tenant {name} Ready"), || async {
            let tenant = api.get(name).await.ok()?;
            tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
    }

    /// The provider's DataSharingService `ho-tich`, deciding on `consumers` (a YAML flow list).
    fn apply_provider(&self, consumers: &str) {
        self.cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: ho-tich\n  namespace: {ns}\nspec:\n  provides:\n  - name: {api}\n    service: ho-tich\n    port: 8080\n    path: /api/v1\n    consumers: {consumers}\n",
            ns = self.provider(),
            api = self.api(),
        ));
    }

    /// A DataSharingService `name` in `namespace` consuming the provider's API.
    fn apply_consumer(&self, namespace: &str, name: &str) {
        self.cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  consumes:\n  - {{name: ho-tich, agencyCode: \"{PROVIDER_CODE}\", api: {api}, purpose: \"Tiếp nhận hồ sơ một cửa\"}}\n",
            api = self.api(),
        ));
    }

    async fn consumption(&self, namespace: &str, name: &str, state: GrantState) {
        let api: Api<DataSharingService> = Api::namespaced(self.client.clone(), namespace);
        eventually(WAIT, &format!("{namespace}/{name}: consumption {state:?}"), || async {
            let service = api.get(name).await.ok()?;
            service.status?.consumptions.iter().any(|c| c.name == "ho-tich" && c.state == state).then_some(())
        })
        .await;
    }

    async fn route_table(&self, what: &str, check: impl Fn(&RouteTable) -> bool) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), operator::NAMESPACE);
        let name = lgsp::route_table_name(self.provider(), "ho-tich");
        eventually(WAIT, &format!("route table {name}: {what}"), || async {
            let config_map = api.get(&name).await.ok()?;
            let table = RouteTable::from_json(config_map.data.as_ref()?.get(lgsp::ROUTE_TABLE_KEY)?).ok()?;
            check(&table).then_some(())
        })
        .await;
    }

    async fn secret(&self, namespace: &str, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        eventually(WAIT, &format!("Secret {namespace}/{name}"), || async { api.get(name).await.ok() }).await
    }

    fn identity(&self, code: &str, service: &str) -> String {
        format!("spiffe://{}/agency/{code}/dss/{service}", self.base_domain)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for tenant in &self.tenants {
            let _ = self
                .cluster
                .kubectl()
                .args(["delete", "tenant", tenant, "--ignore-not-found", "--wait=false"])
                .output();
        }
    }
}

/// A provider's stand-in: echoes the path, the query, the `Host` and the LGSP headers it received.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the upstream");
    let address = listener.local_addr().expect("the upstream's address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let header =
                        |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let echo = serde_json::json!({
                        "path": request.uri().path(),
                        "query": request.uri().query(),
                        "host": header("host"),
                        "consumer": header("x-lgsp-consumer"),
                    });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(echo.to_string()))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    address
}

/// A real rustls client: trusts the platform bundle, presents the client certificate of `secret`.
fn client_config(secret: &Secret) -> Arc<rustls::ClientConfig> {
    let trust = TrustAnchors::from_pem(&secret_data(secret, "ca.crt")).expect("ca.crt is the trust bundle");
    let (crt, key) = (secret_data(secret, "tls.crt"), secret_data(secret, "tls.key"));
    govpaas_pki::tls::client_config(&trust, Some((&crt, &key))).expect("a client configuration")
}

/// `GET https://<host><path>` through the gateway at `address`: (status, JSON body).
async fn call(
    address: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(StatusCode, serde_json::Value), String> {
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let request = Request::builder().uri(path).header("host", host).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(format!("{body:?}")));
    Ok((status, body))
}

/// Writes the gateway's TLS files from the Secret the operator issued.
fn write_gateway_tls(secret: &Secret, dir: &Path) {
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::write(dir.join(key), secret_data(secret, key)).expect("writing the gateway's TLS files");
    }
}

#[tokio::test]
async fn a_consumer_reaches_the_provider_through_the_gateway_until_the_provider_denies_it() {
    let world = World::new().await;
    let (provider, consumer, other) =
        (world.provider().to_owned(), world.consumer().to_owned(), world.other().to_owned());
    let upstream = upstream().await;

    // The provider's API behind its Service, approving the consumer's agency; the consumer asks
    // for it, and so does a third agency the provider never approved.
    world.cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ho-tich\n  namespace: {provider}\nspec:\n  selector: {{app: ho-tich}}\n  ports: [{{port: 8080, targetPort: 9000}}]\n"
    ));
    world.apply_provider(&format!("[{{agencyCode: \"{CONSUMER_CODE}\"}}]"));
    world.apply_consumer(&consumer, "mot-cua");
    world.apply_consumer(&other, "benh-an");
    world.consumption(&consumer, "mot-cua", GrantState::Granted).await;
    world.consumption(&other, "benh-an", GrantState::Pending).await;
    let consumer_identity = world.identity(CONSUMER_CODE, "mot-cua");
    world
        .route_table("the consumer granted", |t| {
            t.routes.iter().any(|r| r.consumers.iter().any(|c| c.identity == consumer_identity))
        })
        .await;

    // The gateway's certificate, issued by the operator from the platform CA for the LGSP host.
    let platform: Platform = Api::all(world.client.clone()).get("default").await.expect("the Platform");
    let host = govpaas_operator::lgsp::gateway_host(&platform.spec);
    let gateway_secret = world.secret(operator::NAMESPACE, govpaas_operator::lgsp::GATEWAY_TLS_SECRET).await;
    assert_eq!(gateway_secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_gateway_tls(&gateway_secret, dir.path());

    let resolve = [format!("ho-tich.{provider}.svc={upstream}")];
    let mut gateway = GatewayProcess::start(world.cluster, &world.scope, dir.path(), &resolve);
    let consumer_secret = world.secret(&consumer, "mot-cua-lgsp-client").await;
    let other_secret = world.secret(&other, "benh-an-lgsp-client").await;
    let path = format!("/{PROVIDER_CODE}/{}/so-ho-tich/42?nam=2026", world.api());

    // The consumer's call reaches the provider, which sees the verified identity.
    let (status, body) = eventually(WAIT, "the consumer's call answered by the provider", || async {
        let answer = call(gateway.listen, &host, client_config(&consumer_secret), &path).await.ok()?;
        (answer.0 == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["path"], "/api/v1/so-ho-tich/42");
    assert_eq!(body["query"], "nam=2026");
    assert_eq!(body["consumer"], consumer_identity.as_str());
    assert_eq!(body["host"], format!("ho-tich.{provider}.svc:8080"));

    // A third agency's valid certificate: refused, naming its identity.
    let (status, body) = call(gateway.listen, &host, client_config(&other_secret), &path).await.expect("an answer");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains(&world.identity(OTHER_CODE, "benh-an")), "{body}");

    // The provider denies the consumer: the next calls are refused, the gateway never restarted.
    world.apply_provider(&format!("[{{agencyCode: \"{CONSUMER_CODE}\", decision: Deny}}]"));
    world.consumption(&consumer, "mot-cua", GrantState::Denied).await;
    let (status, body) = eventually(WAIT, "the denial in force at the gateway", || async {
        let answer = call(gateway.listen, &host, client_config(&consumer_secret), &path).await.ok()?;
        (answer.0 == StatusCode::FORBIDDEN).then_some(answer)
    })
    .await;
    assert_eq!(body["title"], "API not granted", "{status}: {body}");
    assert!(gateway.is_running(), "the same gateway process served the denial");

    // The audit: every exchange recorded with the verified caller, and the chain verifies
    // against the gateway's certificate (whose key signed the checkpoints).
    assert!(gateway.stop(), "the gateway stops cleanly:\n{}", gateway.log());
    let audit = std::fs::read_to_string(&gateway.audit_log).expect("the audit log");
    let records: Vec<serde_json::Value> =
        audit.lines().map(|l| serde_json::from_str(l).expect("a JSON record")).collect();
    let exchanges = |status: u64| records.iter().filter(|r| r["kind"] == "exchange" && r["status"] == status).count();
    assert!(exchanges(200) >= 1 && exchanges(403) >= 2, "{audit}");
    assert!(records.iter().any(|r| r["status"] == 200 && r["caller"] == consumer_identity.as_str()), "{audit}");
    assert_eq!(records.last().expect("records")["kind"], "checkpoint", "a last checkpoint at shutdown");
    let verified = gateway.verify_audit(&[&dir.path().join("tls.crt")], &dir.path().join("ca.crt"));
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success() && report.contains("OK"),
        "audit verify: {report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // The operator named its work on the Platform: the gateway certificate was issued or kept.
    let secret_now = world.secret(operator::NAMESPACE, govpaas_operator::lgsp::GATEWAY_TLS_SECRET).await;
    assert_eq!(secret_now.labels()["app.kubernetes.io/component"], govpaas_operator::lgsp::COMPONENT);
}

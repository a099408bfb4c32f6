//! The LGSP end to end on the real control plane: the operator (a local process with the chart's
//! credentials, scoped to this test's Tenants) compiles the DataSharingServices into route tables
//! and issues the client certificates and the gateway's own certificate; the gateway (a local
//! process with the chart's gateway credentials, `--routes-from-cluster`) serves them. A hyper
//! upstream on loopback stands in for the provider's Service, reached through `--resolve`.

mod lgsp_client;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Deref;

use bytes::Bytes;
use govpaas_crds::data_sharing::GrantState;
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_crds::{DataSharingService, Platform};
use govpaas_tests::eventually;
use govpaas_tests::gateway::GatewayProcess;
use govpaas_tests::operator;
use govpaas_tests::world::{ConsumedApiBuilder, DataSharingServiceBuilder, ProvidedApiBuilder, WAIT, World, service};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;

/// Agency codes of this test's scope (the operator sees only its scope's Tenants).
const PROVIDER_CODE: &str = "H48.20";
const CONSUMER_CODE: &str = "H48.21";
const OTHER_CODE: &str = "H48.22";

/// The shared world with three Tenants: a provider, a consumer it approves, and another agency.
struct Lgsp {
    world: World,
    tenants: Vec<String>,
}

impl Deref for Lgsp {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Lgsp {
    async fn new() -> Self {
        let world = World::new("lgsp").await;
        let mut tenants = Vec::new();
        for (suffix, code, display_name) in [
            ("tp", PROVIDER_CODE, "Sở Tư pháp"),
            ("xa", CONSUMER_CODE, "Ủy ban nhân dân xã Hòa Vang"),
            ("yt", OTHER_CODE, "Sở Y tế"),
        ] {
            let name = format!("{}-{suffix}", world.scope);
            world.apply(&world.tenant(&name).code(code).display_name(display_name).build()).await;
            tenants.push(name);
        }
        for name in &tenants {
            world.tenant_ready(name).await;
        }
        Lgsp { world, tenants }
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

    /// The provider's DataSharingService `ho-tich`, its API decided on by `decide`.
    async fn apply_provider(&self, decide: impl FnOnce(ProvidedApiBuilder) -> ProvidedApiBuilder) {
        let api = ProvidedApiBuilder::new(&self.api(), "ho-tich", 8080).path("/api/v1");
        self.apply(&DataSharingServiceBuilder::new(self.provider(), "ho-tich").provides(decide(api)).build()).await;
    }

    /// A DataSharingService `name` in `namespace` consuming the provider's API.
    async fn apply_consumer(&self, namespace: &str, name: &str) {
        let asking = ConsumedApiBuilder::new("ho-tich", PROVIDER_CODE, &self.api()).purpose("Tiếp nhận hồ sơ một cửa");
        self.apply(&DataSharingServiceBuilder::new(namespace, name).consumes(asking).build()).await;
    }

    async fn consumption(&self, namespace: &str, name: &str, state: GrantState) {
        self.observed(namespace, name, &format!("consumption {state:?}"), |service: &DataSharingService| {
            service.status.as_ref()?.consumptions.iter().any(|c| c.name == "ho-tich" && c.state == state).then_some(())
        })
        .await
    }

    async fn route_table(&self, what: &str, check: impl Fn(&RouteTable) -> bool) {
        let name = lgsp::route_table_name(self.provider(), "ho-tich");
        self.wait(operator::NAMESPACE, &name, &format!("route table: {what}"), |config_map: &ConfigMap| {
            let table = RouteTable::from_json(config_map.data.as_ref()?.get(lgsp::ROUTE_TABLE_KEY)?).ok()?;
            check(&table).then_some(())
        })
        .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Secret {
        self.wait(namespace, name, "the Secret", |secret: &Secret| Some(secret.clone())).await
    }

    fn identity(&self, code: &str, service: &str) -> String {
        format!("spiffe://{}/agency/{code}/dss/{service}", self.base_domain)
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

#[tokio::test]
async fn a_consumer_reaches_the_provider_through_the_gateway_until_the_provider_denies_it() {
    let world = Lgsp::new().await;
    let (provider, consumer, other) =
        (world.provider().to_owned(), world.consumer().to_owned(), world.other().to_owned());
    let upstream = upstream().await;

    // The provider's API behind its Service, approving the consumer's agency; the consumer asks
    // for it, and so does a third agency the provider never approved.
    world.apply(&service(&provider, "ho-tich", "ho-tich", 8080, Some(9000))).await;
    world.apply_provider(|api| api.approve(CONSUMER_CODE)).await;
    world.apply_consumer(&consumer, "mot-cua").await;
    world.apply_consumer(&other, "benh-an").await;
    world.consumption(&consumer, "mot-cua", GrantState::Granted).await;
    world.consumption(&other, "benh-an", GrantState::Pending).await;
    let consumer_identity = world.identity(CONSUMER_CODE, "mot-cua");
    world
        .route_table("the consumer granted", |t| {
            t.routes.iter().any(|r| r.consumers.iter().any(|c| c.identity == consumer_identity))
        })
        .await;

    // The gateway's certificate, issued by the operator from the platform CA for the LGSP host.
    let platform: Platform = world.get("", "default").await;
    let host = govpaas_operator::lgsp::gateway_host(&platform.spec);
    let gateway_secret = world.secret(operator::NAMESPACE, govpaas_operator::lgsp::GATEWAY_TLS_SECRET).await;
    assert_eq!(gateway_secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    lgsp_client::mount(&gateway_secret, &["tls.crt", "tls.key", "ca.crt"], dir.path());

    let resolve = [format!("ho-tich.{provider}.svc={upstream}")];
    let mut gateway = GatewayProcess::start(world.cluster, &world.scope, dir.path(), &resolve);
    let consumer_secret = world.secret(&consumer, "mot-cua-lgsp-client").await;
    let other_secret = world.secret(&other, "benh-an-lgsp-client").await;
    let path = format!("/{PROVIDER_CODE}/{}/so-ho-tich/42?nam=2026", world.api());

    // The consumer's call reaches the provider, which sees the verified identity.
    let (status, body) = eventually(WAIT, "the consumer's call answered by the provider", || async {
        let answer =
            lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&consumer_secret), &path).await.ok()?;
        (answer.0 == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["path"], "/api/v1/so-ho-tich/42");
    assert_eq!(body["query"], "nam=2026");
    assert_eq!(body["consumer"], consumer_identity.as_str());
    assert_eq!(body["host"], format!("ho-tich.{provider}.svc:8080"));

    // A third agency's valid certificate: refused, naming its identity.
    let (status, body) = lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&other_secret), &path)
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains(&world.identity(OTHER_CODE, "benh-an")), "{body}");

    // The provider denies the consumer: the next calls are refused, the gateway never restarted.
    world.apply_provider(|api| api.deny(CONSUMER_CODE)).await;
    world.consumption(&consumer, "mot-cua", GrantState::Denied).await;
    let (status, body) = eventually(WAIT, "the denial in force at the gateway", || async {
        let answer =
            lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&consumer_secret), &path).await.ok()?;
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

//! Electronic document exchange end to end on the real control plane: the operator (a local process
//! with the chart's credentials) registers exchange-enabled DocumentServices on the LGSP — route
//! tables carrying each one's identity and sender rules (which the gateway applies), client
//! certificates for their identities — and the gateway (a local process with the chart's gateway credentials) forwards an edXML
//! package from the sender's certificate to the receiver's exchange port: a real HTTPS server on
//! loopback presenting the TLS certificate the operator issued for the receiver's exchange name,
//! reached through `--resolve` as the Service would be.

// `call` (GET) is the data-sharing tests'.
#[allow(dead_code)]
mod lgsp_client;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use govpaas_crds::data_sharing::AccessDecision;
use govpaas_crds::lgsp::{self, RouteTable};
use govpaas_crds::{DocumentService, Platform};
use govpaas_tests::gateway::GatewayProcess;
use govpaas_tests::world::{DocumentServiceBuilder, WAIT, World};
use govpaas_tests::{eventually, secret_data};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;

/// The receiver: Sở Nội vụ, which accepts documents only from the senders it names.
const RECEIVER_CODE: &str = "H48.60";
/// A sender the receiver approves by name.
const SENDER_CODE: &str = "H48.61";
/// An exchange-enabled agency the receiver never approved.
const DENIED_CODE: &str = "H48.62";
/// An agency without exchange.
const CLOSED_CODE: &str = "H48.63";

/// The shared world with one Tenant per agency above.
struct Exchange {
    world: World,
    tenants: Vec<String>,
}

impl Deref for Exchange {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Exchange {
    async fn new() -> Self {
        let world = World::new("edoc").await;
        let mut tenants = Vec::new();
        for (suffix, code, display_name) in [
            ("snv", RECEIVER_CODE, "Sở Nội vụ"),
            ("hc", SENDER_CODE, "Ủy ban nhân dân quận Hải Châu"),
            ("syt", DENIED_CODE, "Sở Y tế"),
            ("stc", CLOSED_CODE, "Sở Tài chính"),
        ] {
            let name = format!("{}-{suffix}", world.scope);
            world.apply(&world.tenant(&name).code(code).display_name(display_name).build()).await;
            tenants.push(name);
        }
        for name in &tenants {
            world.tenant_ready(name).await;
        }
        Exchange { world, tenants }
    }

    fn identity(&self, code: &str) -> String {
        format!("spiffe://{}/agency/{code}/docs/van-ban", self.base_domain)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Secret {
        self.wait(namespace, name, "the Secret", |secret: &Secret| Some(secret.clone())).await
    }

    async fn routes_registered(&self, namespace: &str, reason: &str) -> DocumentService {
        self.wait(namespace, "van-ban", &format!("RoutesRegistered {reason}"), |service: &DocumentService| {
            let status = service.status.as_ref()?;
            let routes = status.conditions.iter().find(|c| c.type_ == "RoutesRegistered")?;
            (routes.reason == reason && status.observed_generation == service.metadata.generation)
                .then(|| service.clone())
        })
        .await
    }
}

/// What the receiver got.
#[derive(Clone, Debug)]
struct Delivered {
    path: String,
    sender: Option<String>,
    body: Bytes,
}

/// The receiver's exchange port: HTTPS with the certificate of `secret` (its `tls.crt` chain and
/// `tls.key`), recording each delivery and answering `{"received": <bytes>}`.
async fn receiver(secret: &Secret) -> (SocketAddr, Arc<Mutex<Vec<Delivered>>>) {
    let config =
        govpaas_pki::tls::server_config(&secret_data(secret, "tls.crt"), &secret_data(secret, "tls.key"), None)
            .expect("the receiver's TLS configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the receiver");
    let address = listener.local_addr().expect("the receiver's address");
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let record = delivered.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let sender =
                            request.headers().get("x-lgsp-consumer").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let answer = serde_json::json!({"received": body.len()}).to_string();
                        record.lock().unwrap().push(Delivered { path, sender, body });
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (address, delivered)
}

/// An edXML package (QCVN 102:2016's envelope), as a document office sends one.
fn package() -> Bytes {
    Bytes::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edXMLEnvelope xmlns=\"http://www.e-doc.vn/Schema/\">\
         <edXMLHeader><MessageHeader><From><OrganId>H48.61</OrganId><OrganName>UBND quận Hải Châu</OrganName></From>\
         <To><OrganId>H48.60</OrganId><OrganName>Sở Nội vụ</OrganName></To>\
         <Code><CodeNumber>118</CodeNumber><CodeNotation>UBND-VP</CodeNotation></Code>\
         <Subject>Về việc tổ chức tiếp công dân định kỳ năm 2026</Subject></MessageHeader></edXMLHeader>\
         <edXMLBody>Nội dung công văn số 118.</edXMLBody></edXMLEnvelope>\n",
    )
}

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_package_reaches_the_receiver_from_an_approved_sender_only() {
    let world = Exchange::new().await;
    let [receiver_ns, sender_ns, denied_ns, closed_ns] = [0, 1, 2, 3].map(|i| world.tenants[i].clone());

    // Sở Nội vụ takes documents only from Hải Châu's document office; the others' exchange is on
    // (the health department's) or off (finance's).
    let receiver_service = DocumentServiceBuilder::new(&receiver_ns, "van-ban")
        .storage("1Gi")
        .exchange(true)
        .default_sender_decision(AccessDecision::Deny)
        .sender(SENDER_CODE, "van-ban", AccessDecision::Approve);
    world.apply(&receiver_service.clone().build()).await;
    for namespace in [&sender_ns, &denied_ns] {
        world.apply(&DocumentServiceBuilder::new(namespace, "van-ban").storage("1Gi").exchange(true).build()).await;
    }
    world.apply(&DocumentServiceBuilder::new(&closed_ns, "van-ban").storage("1Gi").build()).await;

    // The receiver's endpoint is registered, naming who may send; its table lists exactly them.
    let platform: Platform = world.get("", "default").await;
    let host = govpaas_operator::lgsp::gateway_host(&platform.spec);
    let registered = world.routes_registered(&receiver_ns, "Registered").await;
    let endpoint = format!("https://{host}/{RECEIVER_CODE}/edoc/van-ban/");
    let status = registered.status.expect("status");
    assert_eq!(status.endpoint.as_deref(), Some(endpoint.as_str()));
    assert_eq!(status.exchange_certificate.and_then(|c| c.secret_name).as_deref(), Some("van-ban-docs-edoc-client"));
    let table_name = lgsp::exchange_table_name(&receiver_ns, "van-ban");
    let (sender_identity, denied_identity) = (world.identity(SENDER_CODE), world.identity(DENIED_CODE));
    // The table carries the receiver's own sending identity and its rules (schema v3), never a
    // list of the others: the gateway decides over the identities of the tables it serves.
    let receiver_identity = world.identity(RECEIVER_CODE);
    let table = world
        .wait(govpaas_tests::operator::NAMESPACE, &table_name, "the receiver's table", |map: &ConfigMap| {
            RouteTable::from_json(map.data.as_ref()?.get(lgsp::ROUTE_TABLE_KEY)?).ok()
        })
        .await;
    assert_eq!(table.schema, lgsp::SCHEMA_V3);
    let endpoint_entry = &table.exchange[0];
    assert_eq!(endpoint_entry.identity.as_deref(), Some(receiver_identity.as_str()));
    assert_eq!(endpoint_entry.admission.as_ref(), Some(&receiver_service.clone().build().spec.exchange.sender_rules()));
    assert!(endpoint_entry.senders.is_empty(), "{table:?}");
    // The senders' own tables make them senders; the closed agency has none.
    for namespace in [&sender_ns, &denied_ns] {
        let name = lgsp::exchange_table_name(namespace, "van-ban");
        world.wait(govpaas_tests::operator::NAMESPACE, &name, "a sender's table", |_: &ConfigMap| Some(())).await;
    }
    assert_eq!(table.exchange[0].upstream.server_name, format!("van-ban-docs.{}", world.domain_of(&receiver_ns)));
    world.routes_registered(&closed_ns, "ExchangeDisabled").await;
    // The gateway reaches the receiver's exchange port, and nothing else of it.
    let policy: NetworkPolicy = world.get(&receiver_ns, "van-ban-docs.lgsp-exchange").await;
    let rule = &policy.spec.expect("spec").ingress.expect("ingress")[0];
    assert_eq!(rule.ports.as_ref().expect("ports").len(), 1);

    // The receiver's Pod, as a real HTTPS server with the certificate the operator issued for it.
    let receiver_tls = world.secret(&receiver_ns, "van-ban-docs-tls").await;
    let (receiver_address, delivered) = receiver(&receiver_tls).await;
    let gateway_secret =
        world.secret(govpaas_tests::operator::NAMESPACE, govpaas_operator::lgsp::GATEWAY_TLS_SECRET).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    lgsp_client::mount(&gateway_secret, &["tls.crt", "tls.key", "ca.crt"], dir.path());
    let resolve = [format!("van-ban-docs.{receiver_ns}.svc={receiver_address}")];
    let mut gateway = GatewayProcess::start(world.cluster, &world.scope, dir.path(), &resolve);

    // The approved sender posts a package with its DocumentService's certificate: it arrives
    // with the same bytes, under /edxml, with the verified sender.
    let sender_client = lgsp_client::client_config(&world.secret(&sender_ns, "van-ban-docs-edoc-client").await);
    let denied_client = lgsp_client::client_config(&world.secret(&denied_ns, "van-ban-docs-edoc-client").await);
    let path = format!("/{RECEIVER_CODE}/edoc/van-ban/cong-van/2026-118");
    let post = |client: Arc<rustls::ClientConfig>, path: String| {
        let listen = gateway.listen;
        let host = host.clone();
        async move { lgsp_client::send(listen, &host, client, Method::POST, &path, package()).await }
    };
    let (status, body) = eventually(WAIT, "the package delivered through the gateway", || async {
        let answer = post(sender_client.clone(), path.clone()).await.ok()?;
        (answer.0 == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(body["received"], package().len(), "{status}: {body}");
    let first = delivered.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/edxml/cong-van/2026-118");
    assert_eq!(first.sender.as_deref(), Some(sender_identity.as_str()));
    assert_eq!(first.body, package(), "the same bytes");

    // A sender the receiver's rules do not admit: 403, naming it; nothing reaches the receiver.
    let (status, body) = post(denied_client.clone(), path.clone()).await.expect("an answer");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains(&denied_identity), "{body}");
    // An agency without exchange has no endpoint: 404.
    let (status, body) =
        post(sender_client.clone(), format!("/{CLOSED_CODE}/edoc/van-ban/cong-van/1")).await.expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(delivered.lock().unwrap().len(), 1, "refused packages never reach the receiver");

    // The receiver now approves the health department too: its table follows, and so does the gateway.
    world.apply(&receiver_service.clone().sender(DENIED_CODE, "*", AccessDecision::Approve).build()).await;
    let (status, _) = eventually(WAIT, "the newly approved sender delivered", || async {
        let answer = post(denied_client.clone(), path.clone()).await.ok()?;
        (answer.0 == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delivered.lock().unwrap().last().unwrap().sender.as_deref(), Some(denied_identity.as_str()));

    // The receiver turns exchange off: its table goes, then its endpoint (404).
    world.apply(&DocumentServiceBuilder::new(&receiver_ns, "van-ban").storage("1Gi").build()).await;
    world.routes_registered(&receiver_ns, "ExchangeDisabled").await;
    world.gone::<ConfigMap>(govpaas_tests::operator::NAMESPACE, &table_name).await;
    eventually(WAIT, "the endpoint gone from the gateway", || async {
        let answer = post(sender_client.clone(), path.clone()).await.ok()?;
        (answer.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    // A deleted DocumentService's table is swept.
    let sender_table = lgsp::exchange_table_name(&sender_ns, "van-ban");
    world.get::<ConfigMap>(govpaas_tests::operator::NAMESPACE, &sender_table).await;
    world.delete::<DocumentService>(&sender_ns, "van-ban").await;
    world.gone::<ConfigMap>(govpaas_tests::operator::NAMESPACE, &sender_table).await;

    // The audit records the package's SHA-256 with the verified sender, and verifies.
    assert!(gateway.stop(), "the gateway stops cleanly:\n{}", gateway.log());
    let audit = std::fs::read_to_string(&gateway.audit_log).expect("the audit log");
    let records: Vec<serde_json::Value> =
        audit.lines().map(|l| serde_json::from_str(l).expect("a JSON record")).collect();
    assert!(
        records.iter().any(|r| r["status"] == 200
            && r["caller"] == sender_identity.as_str()
            && r["packageSha256"] == sha256(&package())),
        "{audit}"
    );
    assert!(records.iter().any(|r| r["status"] == 403 && r["caller"] == denied_identity.as_str()), "{audit}");
    let verified = gateway.verify_audit(&[&dir.path().join("tls.crt")], &dir.path().join("ca.crt"));
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success() && report.contains("OK"),
        "audit verify: {report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

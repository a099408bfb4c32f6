//! Electronic document exchange through the gateway: a sender's DocumentService identity posts an
//! edXML package to a receiver's exchange endpoint (route table schema v2, as an operator before v3
//! wrote it, which the gateway still serves; v3 end to end is `tests/tests/document_exchange.rs`);
//! the gateway forwards it over TLS to the receiver — a real HTTPS server whose certificate its
//! tenant CA issued for the exchange name — with the verified sender, and records the package's
//! SHA-256 in the audit.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::{RunningGateway, Settings};
use govpaas_pki::{CertificateAuthority, ServerCertificateRequest};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The receiver: Sở Tài chính's DocumentService `van-thu` (the finance tenant's domain).
const RECEIVER: &str = "H49.12";
const SERVER_NAME: &str = "van-thu-docs.stc.quangnam.gov.vn";

/// What the receiver got.
#[derive(Clone, Debug)]
struct Delivered {
    path: String,
    sender: Option<String>,
    body: Bytes,
}

/// A DocumentService's identity (`…/docs/<name>`) from its tenant CA.
fn document_identity(tenant: &CertificateAuthority, name: &str) -> ClientCert {
    workload_cert(tenant, "docs", name)
}

/// The receiver's exchange port: HTTPS with a certificate `ca` issued for `name`, answering
/// `{"received": <bytes>}` and recording each delivery.
async fn receiver(ca: &CertificateAuthority, name: &str) -> (SocketAddr, Arc<Mutex<Vec<Delivered>>>) {
    let issued = ca.issue_server_certificate(&ServerCertificateRequest::new([name]), &policy(), now()).unwrap();
    let config = govpaas_pki::tls::server_config(
        issued.chain_pem().as_bytes(),
        issued.private_key_pem().expose().as_bytes(),
        None,
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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
                        let sender = request.headers().get("x-lgsp-consumer").map(|v| v.to_str().unwrap().to_owned());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let answer = serde_json::json!({"received": body.len()}).to_string();
                        record.lock().unwrap().push(Delivered { path, sender, body });
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (addr, delivered)
}

/// The receiver's route table, as the operator writes it (v2): its exchange endpoint, open to
/// `senders`.
fn exchange_table(senders: &[&str]) -> String {
    let senders: Vec<serde_json::Value> = senders
        .iter()
        .map(|identity| serde_json::json!({"identity": identity, "agencyCode": "H49.13", "service": "van-ban"}))
        .collect();
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v2",
        "source": {"kind": "DocumentService", "namespace": "stc", "name": "van-thu", "uid": "u3"},
        "agencyCode": RECEIVER,
        "exchange": [{
            "service": "van-thu", "pathPrefix": format!("/{RECEIVER}/edoc/van-thu/"),
            "upstream": {"namespace": "stc", "service": "van-thu-docs", "port": 443, "path": "/edxml",
                         "serverName": SERVER_NAME},
            "rateLimit": {"requestsPerMinute": 600, "burst": 20},
            "senders": senders,
        }],
    })
    .to_string()
}

struct Exchange {
    gateway: Option<RunningGateway>,
    province: Province,
    dir: tempfile::TempDir,
}

impl Exchange {
    /// The province's gateway with the receiver's table, its Service resolved to `receiver`.
    async fn start(province: Province, receiver: SocketAddr, senders: &[&str]) -> Exchange {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("van-thu.json"), exchange_table(senders)).unwrap();
        let paths = ConfigPaths {
            tls_crt: dir.path().join("tls.crt"),
            tls_key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            routes: RoutesSource::Files(dir.path().join("van-thu.json")),
            resolve: govpaas_gateway::routes::Resolve([("van-thu-docs.stc.svc".to_owned(), receiver)].into()),
            national: None,
        };
        let (crt, key) = province.gateway_certificate();
        std::fs::write(&paths.tls_crt, crt).unwrap();
        std::fs::write(&paths.tls_key, key).unwrap();
        std::fs::write(&paths.client_ca, province.platform.certificate_pem()).unwrap();
        let mut settings = Settings::new(paths, "127.0.0.1:0".parse().unwrap(), dir.path().join("audit.jsonl"));
        settings.checkpoint_interval = Duration::from_secs(3600);
        settings.forward.timeout = Duration::from_secs(5);
        let gateway = govpaas_gateway::start(settings).await.unwrap();
        Exchange { gateway: Some(gateway), province, dir }
    }

    /// `POST <path>` with `package` as `who`: (status, body).
    async fn post(&self, who: &ClientCert, path: &str, package: &[u8]) -> (StatusCode, serde_json::Value) {
        let config = client_config(&self.province.trust(), Some(who));
        let stream = connect(self.gateway.as_ref().unwrap().listen, config).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::post(path)
            .header("host", GATEWAY_HOST)
            .header("content-type", "application/xml")
            .header("x-lgsp-consumer", "spiffe://quangnam.gov.vn/agency/H49/docs/forged")
            .body(Full::new(Bytes::copy_from_slice(package)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    fn exchanges(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|record| record["kind"] == "exchange")
            .collect()
    }

    async fn verify_audit(mut self) -> (bool, String) {
        self.gateway.take().unwrap().shutdown().await;
        audit_verify(self.dir.path())
    }
}

/// An edXML package (QCVN 102:2016's envelope, abridged), Vietnamese text and all.
fn package() -> Vec<u8> {
    r#"<?xml version="1.0" encoding="UTF-8"?>
<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLHeader><edXML:MessageHeader>
    <edXML:From><edXML:OrganId>000.00.13.H49</edXML:OrganId><edXML:OrganName>Sở Y tế</edXML:OrganName></edXML:From>
    <edXML:To><edXML:OrganId>000.00.12.H49</edXML:OrganId><edXML:OrganName>Sở Tài chính</edXML:OrganName></edXML:To>
    <edXML:Subject>Về việc đề nghị bổ sung kinh phí phòng, chống dịch năm 2026</edXML:Subject>
  </edXML:MessageHeader></edXML:edXMLHeader>
</edXML:edXMLEnvelope>"#
        .as_bytes()
        .to_vec()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[tokio::test]
async fn a_package_arrives_with_the_verified_sender_and_the_same_bytes_and_its_hash_is_audited() {
    let province = Province::new();
    let (addr, delivered) = receiver(&province.finance, SERVER_NAME).await;
    let sender = document_identity(&province.health, "van-ban");
    let exchange = Exchange::start(province, addr, &[&sender.identity]).await;

    let package = package();
    let (status, body) = exchange.post(&sender, &format!("/{RECEIVER}/edoc/van-thu/goi-tin"), &package).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["received"], package.len(), "the receiver's own answer comes back");

    let delivered = delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].path, "/edxml/goi-tin");
    assert_eq!(delivered[0].body.as_ref(), package.as_slice(), "the same bytes");
    assert_eq!(
        delivered[0].sender.as_deref(),
        Some(sender.identity.as_str()),
        "the verified sender, not the forged header"
    );

    let record = exchange.exchanges().pop().expect("an exchange record");
    assert_eq!(record["status"], 200);
    assert_eq!(record["caller"], sender.identity.as_str());
    assert_eq!(record["api"], "edoc/van-thu");
    assert_eq!(record["packageSha256"], sha256(&package), "{record}");
    let (ok, report) = exchange.verify_audit().await;
    assert!(ok, "{report}");
}

#[tokio::test]
async fn a_sender_not_allowed_gets_403_an_agency_without_exchange_404_and_nothing_is_delivered() {
    let province = Province::new();
    let (addr, delivered) = receiver(&province.finance, SERVER_NAME).await;
    let allowed = document_identity(&province.health, "van-ban");
    let exchange = Exchange::start(province, addr, &[&allowed.identity]).await;

    // Another DocumentService of the same agency, and a data-sharing identity: neither is a sender.
    let other_service = document_identity(&exchange.province.health, "luu-tru");
    let (status, body) = exchange.post(&other_service, &format!("/{RECEIVER}/edoc/van-thu/"), &package()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let data_sharing = client_cert(&exchange.province.health, "van-ban");
    let (status, _) = exchange.post(&data_sharing, &format!("/{RECEIVER}/edoc/van-thu/"), &package()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An agency whose exchange is not enabled has no endpoint.
    let (status, body) = exchange.post(&allowed, &format!("/{PROVIDER}/edoc/van-thu/"), &package()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains("document exchange endpoint"), "{body}");
    // A DocumentService name that is not a path segment.
    let (status, _) = exchange.post(&allowed, &format!("/{RECEIVER}/edoc/%2e%2e/"), &package()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert!(delivered.lock().unwrap().is_empty(), "nothing reached the receiver");
    let records = exchange.exchanges();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r["packageSha256"].is_null()), "refused packages were never read: {records:?}");
}

#[tokio::test]
async fn a_receiver_whose_certificate_is_not_for_its_exchange_name_gets_nothing() {
    let province = Province::new();
    // Listening where the receiver's Service resolves, with a certificate of another agency's CA.
    let (addr, delivered) = receiver(&province.health, "van-ban-docs.syt.quangnam.gov.vn").await;
    let sender = document_identity(&province.health, "van-ban");
    let exchange = Exchange::start(province, addr, &[&sender.identity]).await;
    let (status, body) = exchange.post(&sender, &format!("/{RECEIVER}/edoc/van-thu/"), &package()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains("refused the secure connection"), "{body}");
    assert!(delivered.lock().unwrap().is_empty());
}

//! National routes against a mock national platform (NDXP) that is a real HTTPS server: nginx
//! with a PKI of its own (not the province's), requiring a client certificate its CA issued —
//! the province's — and logging what it received (the client certificate's fingerprint, the
//! consumer header, the path). The gateway runs in-process with the province's files and a
//! national directory as the operator's Secret would mount it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::nginx::nginx_binary;
use common::*;
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::{RunningGateway, Settings};
use http::StatusCode;

const POPULATION: &str = "csdlqg-dan-cu";
/// An API nginx answers through a backend that accepts connections and never answers.
const SLOW: &str = "cham";

/// A PKI that is not the province's: the national platform's own CA, its server certificate for
/// `localhost`, and the client certificate it issued to the province.
struct NationalPki {
    ca_pem: String,
    server: (String, String),
    province: (String, String),
    /// SHA-1 of the province's client certificate, as nginx logs `$ssl_client_fingerprint`.
    province_sha1: String,
}

fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.not_before = now() - time::Duration::HOUR;
    params.not_after = now() + time::Duration::DAY;
    let certificate = params.self_signed(&key).unwrap();
    let issuer = rcgen::Issuer::new(params, key);
    (certificate, issuer)
}

fn leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, name: &str, server: bool) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.not_before = now() - time::Duration::HOUR;
    params.not_after = now() + time::Duration::DAY;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    if server {
        params.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.use_authority_key_identifier_extension = true;
    let certificate = params.signed_by(&key, issuer).unwrap();
    (certificate.pem(), key.serialize_pem(), certificate.der().to_vec())
}

impl NationalPki {
    fn new() -> Self {
        let (root, issuer) = ca("Cục Chuyển đổi số quốc gia — NDXP CA");
        let (crt, key, _) = leaf(&issuer, "ndxp.gov.vn", true);
        let (province_crt, province_key, province_der) = leaf(&issuer, "UBND tỉnh Quảng Nam (H49)", false);
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &province_der);
        NationalPki {
            ca_pem: root.pem(),
            server: (crt, key),
            province: (province_crt, province_key),
            province_sha1: hex::encode(sha1.as_ref()),
        }
    }
}

/// nginx as the NDXP, on a free loopback port.
struct MockNdxp {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
    /// Accepts connections for the slow API and never answers.
    _silent: std::net::TcpListener,
}

/// What the NDXP logged of one request.
#[derive(Debug)]
struct Received {
    request_uri: String,
    client_verify: String,
    client_sha1: String,
    consumer: String,
    client_address: String,
}

impl MockNdxp {
    /// Serves `/api/<POPULATION>/…` itself and `/api/<SLOW>/…` from a silent backend, with
    /// `server` (certificate, key) as its certificate, and requires a client certificate issued
    /// by `client_ca`.
    fn start(server: &(String, String), client_ca: &str) -> MockNdxp {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("server.crt"), &server.0).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.1).unwrap();
        std::fs::write(dir.path().join("clients.crt"), client_ca).unwrap();
        let addr = process::free_port();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/json;
    log_format received escape=json '$request_uri\t$ssl_client_verify\t$ssl_client_fingerprint\t$http_x_lgsp_consumer\t$http_x_lgsp_client_address';
    access_log {d}/access.log received;
    server {{
        listen {addr} ssl;
        ssl_certificate {d}/server.crt;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/clients.crt;
        ssl_verify_client on;
        location /api/{POPULATION}/ {{
            return 200 '{{"ndxp":"{POPULATION}","uri":"$uri","args":"$args","consumer":"$http_x_lgsp_consumer"}}';
        }}
        location /api/{SLOW}/ {{
            proxy_pass http://{silent_addr};
            proxy_read_timeout 60s;
        }}
        location / {{
            return 404 '{{"ndxp":"unknown"}}';
        }}
    }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        std::fs::write(dir.path().join("access.log"), "").unwrap();
        let binary = nginx_binary();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let ndxp = MockNdxp { addr, dir, child, _silent: silent };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return ndxp;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the mock NDXP did not listen: {}", std::fs::read_to_string(ndxp.dir.path().join("error.log")).unwrap());
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/api", self.addr.port())
    }

    /// Everything it logged (nginx logs a request once it has answered it).
    fn received(&self) -> Vec<Received> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap()
            .lines()
            .map(|line| {
                let mut fields = line.split('\t').map(str::to_owned);
                let mut next = || fields.next().unwrap_or_default();
                Received {
                    request_uri: next(),
                    client_verify: next(),
                    client_sha1: next(),
                    consumer: next(),
                    client_address: next(),
                }
            })
            .collect()
    }

    /// The requests logged once there are `count`, at most five seconds.
    fn received_at_least(&self, count: usize) -> Vec<Received> {
        for _ in 0..100 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the NDXP logged fewer than {count} requests: {:?}", self.received());
    }
}

impl Drop for MockNdxp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the national directory as the operator's Secret would mount it.
fn write_national_dir(dir: &Path, url: &str, pki: &NationalPki) {
    std::fs::create_dir_all(dir).unwrap();
    replace_file(&dir.join("url"), url);
    replace_file(&dir.join("tls.crt"), &pki.province.0);
    replace_file(&dir.join("tls.key"), &pki.province.1);
    replace_file(&dir.join("ca.crt"), &pki.ca_pem);
}

/// The route table of the consumer `identity`'s DataSharingService, granted `apis` of the
/// national platform (as the operator writes it).
fn national_grants(identity: &str, apis: &[&str]) -> String {
    let national: Vec<serde_json::Value> = apis
        .iter()
        .map(|api| {
            serde_json::json!({"api": api, "pathPrefix": format!("/ndxp/{api}/"), "consumer": identity,
                               "rateLimit": {"requestsPerMinute": 6000, "burst": 100}})
        })
        .collect();
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v1",
        "source": {"namespace": "stc", "name": "mot-cua", "uid": "u2"},
        "agencyCode": "H49.12", "routes": [], "national": national,
    })
    .to_string()
}

/// A gateway of the province whose finance department's `mot-cua` was granted the population
/// database and the slow API; `national_url`, when given, is where the national directory says
/// the NDXP is.
struct Province {
    gateway: Option<RunningGateway>,
    province: common::Province,
    dir: tempfile::TempDir,
    national_dir: PathBuf,
    granted: ClientCert,
    not_granted: ClientCert,
}

impl Province {
    async fn start(national_url: Option<&str>, pki: &NationalPki) -> Province {
        let province = common::Province::new();
        let granted = client_cert(&province.finance, "mot-cua");
        let not_granted = client_cert(&province.health, "ho-so");
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes");
        std::fs::create_dir_all(&routes).unwrap();
        std::fs::write(routes.join("mot-cua.json"), national_grants(&granted.identity, &[POPULATION, SLOW])).unwrap();
        let national_dir = dir.path().join("ndxp");
        if let Some(url) = national_url {
            write_national_dir(&national_dir, url, pki);
        }
        let paths = ConfigPaths {
            tls_crt: dir.path().join("tls.crt"),
            tls_key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            routes: RoutesSource::Files(routes),
            resolve: Default::default(),
            national: Some(national_dir.clone()),
        };
        let (crt, key) = province.gateway_certificate();
        std::fs::write(&paths.tls_crt, crt).unwrap();
        std::fs::write(&paths.tls_key, key).unwrap();
        std::fs::write(&paths.client_ca, province.platform.certificate_pem()).unwrap();
        let mut settings = Settings::new(paths, "127.0.0.1:0".parse().unwrap(), dir.path().join("audit.jsonl"));
        settings.reload_interval = Duration::from_millis(100);
        settings.checkpoint_interval = Duration::from_secs(3600);
        settings.forward.timeout = Duration::from_secs(2);
        let gateway = govpaas_gateway::start(settings).await.unwrap();
        Province { gateway: Some(gateway), province, dir, national_dir, granted, not_granted }
    }

    async fn call(&self, who: &ClientCert, path: &str, headers: &[(&str, &str)]) -> Answer {
        let config = client_config(&self.province.trust(), Some(who));
        send(self.gateway.as_ref().unwrap().listen, config, path, headers).await.unwrap()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|record: &serde_json::Value| record["kind"] == "exchange")
            .collect()
    }

    /// Stops the gateway (a last checkpoint is signed) and runs `govpaas-gateway audit verify`.
    async fn verify_audit(mut self) -> (bool, String) {
        self.gateway.take().unwrap().shutdown().await;
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_govpaas-gateway"))
            .args(["audit", "verify", "--log"])
            .arg(self.dir.path().join("audit.jsonl"))
            .arg("--certificate")
            .arg(self.dir.path().join("tls.crt"))
            .arg("--ca")
            .arg(self.dir.path().join("ca.crt"))
            .output()
            .unwrap();
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    }
}

fn detail(answer: &Answer) -> String {
    answer.body["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_granted_consumer_reaches_the_ndxp_with_the_provinces_identity_and_its_own_header() {
    let pki = NationalPki::new();
    let ndxp = MockNdxp::start(&pki.server, &pki.ca_pem);
    let province = Province::start(Some(&ndxp.url()), &pki).await;

    // A forged consumer header and client address are dropped: only the verified identity goes.
    let forged =
        [("x-lgsp-consumer", "spiffe://quangnam.gov.vn/agency/H49/dss/admin"), ("x-lgsp-client-address", "10.0.0.1")];
    let answer = province.call(&province.granted, &format!("/ndxp/{POPULATION}/cong-dan/001?ho=Nguyen"), &forged).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["ndxp"], POPULATION, "the NDXP's own answer comes back: {:?}", answer.body);
    assert_eq!(answer.body["uri"], format!("/api/{POPULATION}/cong-dan/001"));
    assert_eq!(answer.body["args"], "ho=Nguyen");

    let received = ndxp.received_at_least(1);
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request.request_uri, format!("/api/{POPULATION}/cong-dan/001?ho=Nguyen"));
    assert_eq!(request.client_verify, "SUCCESS", "the NDXP verified a client certificate");
    assert_eq!(request.client_sha1, pki.province_sha1, "the TLS client is the province's identity");
    assert_eq!(request.consumer, province.granted.identity, "the calling agency travels in X-Lgsp-Consumer");
    assert!(
        request.client_address.is_empty() || request.client_address == "-",
        "a Pod's address stays in the province"
    );

    let audit = province.audit();
    let record = audit.last().expect("an exchange record");
    assert_eq!(record["status"], 200, "{record}");
    assert!(record.to_string().contains(&format!("ndxp/{POPULATION}")), "{record}");
    assert!(record.to_string().contains(&province.granted.identity), "{record}");
    let (ok, report) = province.verify_audit().await;
    assert!(ok, "{report}");
}

#[tokio::test]
async fn a_consumer_without_the_grant_gets_403_and_the_ndxp_receives_nothing() {
    let pki = NationalPki::new();
    let ndxp = MockNdxp::start(&pki.server, &pki.ca_pem);
    let province = Province::start(Some(&ndxp.url()), &pki).await;

    let refused = province.call(&province.not_granted, &format!("/ndxp/{POPULATION}/cong-dan/001"), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let unknown = province.call(&province.granted, "/ndxp/csdlqg-dat-dai/thua/1", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{:?}", unknown.body);
    assert!(detail(&unknown).contains("national API"), "{:?}", unknown.body);
    // A request that does reach it afterwards is the first thing it logs.
    let granted = province.call(&province.granted, &format!("/ndxp/{POPULATION}/"), &[]).await;
    assert_eq!(granted.status, StatusCode::OK);
    let received = ndxp.received_at_least(1);
    assert_eq!(received.len(), 1, "only the granted call reached the NDXP: {received:?}");
    assert_eq!(received[0].consumer, province.granted.identity);

    let statuses: Vec<i64> = province.audit().iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [403, 404, 200]);
    let (ok, report) = province.verify_audit().await;
    assert!(ok, "{report}");
}

#[tokio::test]
async fn an_ndxp_whose_certificate_its_ca_did_not_issue_is_a_502_and_is_sent_nothing() {
    let pki = NationalPki::new();
    // An impostor on the NDXP's address: a certificate for the right name from another CA, and
    // it would accept the province's client certificate.
    let (_, impostor) = ca("Impostor CA");
    let (crt, key, _) = leaf(&impostor, "ndxp.gov.vn", true);
    let ndxp = MockNdxp::start(&(crt, key), &pki.ca_pem);
    let province = Province::start(Some(&ndxp.url()), &pki).await;

    let answer = province.call(&province.granted, &format!("/ndxp/{POPULATION}/cong-dan/001"), &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{:?}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    let detail = detail(&answer);
    assert!(detail.contains("national platform") && detail.contains("certificate"), "{detail}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(ndxp.received().is_empty(), "no request may reach an unverified NDXP: {:?}", ndxp.received());
    assert_eq!(province.audit().last().unwrap()["status"], 502);
}

#[tokio::test]
async fn an_ndxp_that_is_down_is_a_502_a_slow_one_a_504_and_none_configured_a_502() {
    let pki = NationalPki::new();
    let ndxp = MockNdxp::start(&pki.server, &pki.ca_pem);
    let down = format!("https://localhost:{}/api", process::free_port().port());
    let province = Province::start(Some(&down), &pki).await;

    let answer = province.call(&province.granted, &format!("/ndxp/{POPULATION}/x"), &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{:?}", answer.body);
    assert!(detail(&answer).contains("cannot be reached"), "{:?}", answer.body);

    // The operator's Secret changes: the NDXP is up now (swapped in without a restart).
    write_national_dir(&province.national_dir, &ndxp.url(), &pki);
    let mut reached = false;
    for _ in 0..50 {
        if province.call(&province.granted, &format!("/ndxp/{POPULATION}/x"), &[]).await.status == StatusCode::OK {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached, "the new national directory was not taken");

    let slow = province.call(&province.granted, &format!("/ndxp/{SLOW}/x"), &[]).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", slow.body);
    assert!(detail(&slow).contains("did not answer within"), "{:?}", slow.body);

    // The national platform taken out of the Platform: the directory empties, and national routes
    // say so instead of hanging.
    for file in ["url", "tls.crt", "tls.key", "ca.crt"] {
        std::fs::remove_file(province.national_dir.join(file)).unwrap();
    }
    let mut unconfigured = None;
    for _ in 0..50 {
        let answer = province.call(&province.granted, &format!("/ndxp/{POPULATION}/x"), &[]).await;
        if detail(&answer).contains("not configured") {
            unconfigured = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unconfigured = unconfigured.expect("national routes answer that no national platform is configured");
    assert_eq!(unconfigured.status, StatusCode::BAD_GATEWAY);

    let statuses: Vec<i64> = province.audit().iter().map(|r| r["status"].as_i64().unwrap()).collect();
    assert!(statuses.contains(&504) && statuses.first() == Some(&502), "{statuses:?}");
    let (ok, report) = province.verify_audit().await;
    assert!(ok, "{report}");
}

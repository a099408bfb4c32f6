//! National routes against a mock national platform (NDXP) that is a real HTTPS server
//! (`common::ndxp`: nginx with a PKI of its own, not the province's, requiring a client
//! certificate its CA issued — the province's). The gateway runs in-process with the province's
//! files and a national directory as the operator's Secret would mount it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ndxp::{MockNdxp, POPULATION, SLOW, ca, leaf};
use common::*;
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::{RunningGateway, Settings};
use http::StatusCode;

/// A PKI that is not the province's: the national platform's own CA, its server certificate for
/// `localhost`, and the client certificate it issued to the province.
struct NationalPki {
    ca_pem: String,
    server: (String, String),
    province: (String, String),
    /// SHA-1 of the province's client certificate, as nginx logs `$ssl_client_fingerprint`.
    province_sha1: String,
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
        audit_verify(self.dir.path())
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

//! The national platform (NDXP) end to end, on a control plane of this test's own (it sets the
//! Platform's `lgsp.ndxp`, which every other test's Platform would share): the provincial admin
//! declares the national catalogue, the operator (the chart's credentials) issues the province's
//! identity from its tenant CA and writes the gateway's national Secret, the gateway (the chart's
//! gateway credentials, its national directory written from that Secret as the kubelet mounts it)
//! forwards a granted agency's call over mutual TLS to a mock NDXP that is a real HTTPS server
//! (nginx, with a PKI of its own, trusting the platform CA as a test environment's NDXP does).

#[path = "../../gateway/tests/common/nginx.rs"]
#[allow(dead_code)]
mod nginx;

#[path = "../../gateway/tests/common/ndxp.rs"]
#[allow(dead_code)]
mod ndxp;

mod lgsp_client;

use std::time::Duration;

use govpaas_crds::data_sharing::GrantState;
use govpaas_crds::{DataSharingService, Platform};
use govpaas_tests::gateway::GatewayProcess;
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{eventually, private_cluster, secret_data, unique_name};
use hyper::StatusCode;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use ndxp::{MockNdxp, POPULATION};

const WAIT: Duration = Duration::from_secs(120);
/// The province: the national platform knows it by this code.
const PROVINCE_CODE: &str = "H48";
const CONSUMER_CODE: &str = "H48.12";
const OTHER_CODE: &str = "H48.13";

#[tokio::test]
async fn a_granted_agency_reaches_the_national_platform_with_the_provinces_identity() {
    let private = private_cluster("national");
    let cluster = private.cluster;
    operator::install_chart(cluster);
    let base_domain = operator::ensure_platform(cluster);
    let scope = unique_name("ndxp");
    let operator = OperatorProcess::start(cluster, &scope);
    let client = cluster.client().await;

    // The province's Tenant (whose tenant CA issues its national identity), a department that will
    // consume the population database, and one that asks for an API the catalogue does not list.
    let tenants = [
        ("ubnd", PROVINCE_CODE, "Ủy ban nhân dân thành phố Đà Nẵng"),
        ("snv", CONSUMER_CODE, "Sở Nội vụ"),
        ("syt", OTHER_CODE, "Sở Y tế"),
    ];
    let mut names = Vec::new();
    for (suffix, code, display_name) in tenants {
        let name = format!("{scope}-{suffix}");
        cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {label}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"{display_name}\"\n    level: Province\n  quota: {{cpu: \"4\", memory: 8Gi, storage: 10Gi, pods: 10, services: 10, publicHosts: 2, lgspApis: 5}}\n",
            label = operator.scope_label(),
        ));
        names.push(name);
    }
    let (consumer, other) = (names[1].clone(), names[2].clone());
    let tenant_api: Api<govpaas_crds::Tenant> = Api::all(client.clone());
    for name in &names {
        eventually(WAIT, &format!("Tenant {name} Ready"), || async {
            let tenant = tenant_api.get(name).await.ok()?;
            tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
    }

    // The national platform: its own PKI, trusting the platform CA for clients (a test
    // environment's NDXP, as docs/lgsp.md says).
    let trust: Api<ConfigMap> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let platform_bundle = eventually(WAIT, "the platform trust bundle", || async {
        trust.get("govpaas-trust").await.ok()?.data?.get("ca.crt").cloned()
    })
    .await;
    let (ndxp_root, ndxp_issuer) = ndxp::ca("Cục Chuyển đổi số quốc gia — NDXP CA");
    let (server_crt, server_key, _) = ndxp::leaf(&ndxp_issuer, "ndxp.gov.vn", true);
    let national = MockNdxp::start(&(server_crt, server_key), &platform_bundle);

    // The provincial admin: the NDXP's CAs, and the Platform's national platform with its catalogue.
    let ca_pem = ndxp_root.pem().replace('\n', "\n    ");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ndxp-ca\n  namespace: {}\ndata:\n  ca.crt: |\n    {ca_pem}\n",
        operator::NAMESPACE
    ));
    let platform_patch = format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  baseDomain: {base_domain}\n  lgsp:\n    ndxp:\n      url: {url}\n      agencyCode: {PROVINCE_CODE}\n      caConfigMap: ndxp-ca\n      apis:\n        - name: {POPULATION}\n          description: Cơ sở dữ liệu quốc gia về dân cư\n",
        url = national.url()
    );
    let (ok, _, err) = cluster
        .kubectl_stdin(&["apply", "--server-side", "--field-manager", "govpaas-test-ndxp", "-f", "-"], &platform_patch);
    assert!(ok, "configuring the national platform: {err}");

    // The operator reports the national platform ready, with an identity it issued.
    let platforms: Api<Platform> = Api::all(client.clone());
    let ndxp_status = eventually(WAIT, "NationalPlatformReady on the Platform", || async {
        let platform = platforms.get("default").await.ok()?;
        let status = platform.status?;
        let ready = status.conditions.iter().any(|c| c.type_ == "NationalPlatformReady" && c.status == "True");
        ready.then_some(status.ndxp?)
    })
    .await;
    assert_eq!(ndxp_status.client_identity, "IssuedByPlatformCa");
    assert!(ndxp_status.certificate.and_then(|c| c.not_after).is_some(), "its expiry is in status");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let national_secret = secrets.get("govpaas-lgsp-ndxp").await.expect("the gateway's national Secret");
    assert_eq!(secret_data(&national_secret, "url"), national.url().as_bytes());
    assert_eq!(String::from_utf8(secret_data(&national_secret, "ca.crt")).unwrap().trim(), ndxp_root.pem().trim());

    // The department consumes the population database (listed) and the land registry (not listed).
    let apply_consumer = |namespace: &str, name: &str, api: &str| {
        cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  consumes:\n  - {{name: quoc-gia, national: true, api: {api}, purpose: \"Xác thực công dân\"}}\n"
        ));
    };
    apply_consumer(&consumer, "mot-cua", POPULATION);
    apply_consumer(&other, "benh-an", "csdlqg-dat-dai");
    let consumption = |namespace: String, name: &'static str, state: GrantState| {
        let api: Api<DataSharingService> = Api::namespaced(client.clone(), &namespace);
        async move {
            eventually(WAIT, &format!("{namespace}/{name}: {state:?}"), || async {
                let service = api.get(name).await.ok()?;
                service.status?.consumptions.into_iter().find(|c| c.name == "quoc-gia" && c.state == state)
            })
            .await
        }
    };
    let granted = consumption(consumer.clone(), "mot-cua", GrantState::Granted).await;
    assert_eq!(granted.reason, "NationalPlatform");
    let refused = consumption(other.clone(), "benh-an", GrantState::Denied).await;
    assert_eq!(refused.reason, "ApiNotFound");
    assert!(refused.message.contains("csdlqg-dat-dai") && refused.message.contains(POPULATION), "{}", refused.message);

    // The gateway, as its Pod runs it: its TLS and national Secrets mounted.
    let gateway_secret = secrets.get(govpaas_operator::lgsp::GATEWAY_TLS_SECRET).await.expect("the gateway's TLS");
    let dir = tempfile::tempdir().expect("a temporary directory");
    lgsp_client::mount(&gateway_secret, &["tls.crt", "tls.key", "ca.crt"], dir.path());
    lgsp_client::mount(&national_secret, &["url", "tls.crt", "tls.key", "ca.crt"], &dir.path().join("ndxp"));
    let national_dir = dir.path().join("ndxp").display().to_string();
    let mut gateway =
        GatewayProcess::start_with(cluster, &scope, dir.path(), &[], &["--national".to_owned(), national_dir]);
    let platform = platforms.get("default").await.expect("the Platform");
    let host = govpaas_operator::lgsp::gateway_host(&platform.spec);
    let consumer_secret: Secret = eventually(WAIT, "the department's client certificate", || async {
        Api::<Secret>::namespaced(client.clone(), &consumer).get("mot-cua-lgsp-client").await.ok()
    })
    .await;
    let other_secret: Secret = eventually(WAIT, "the other department's client certificate", || async {
        Api::<Secret>::namespaced(client.clone(), &other).get("benh-an-lgsp-client").await.ok()
    })
    .await;
    let consumer_identity = format!("spiffe://{base_domain}/agency/{CONSUMER_CODE}/dss/mot-cua");

    // The granted department's call: answered by the NDXP, which saw the province's identity
    // as the TLS client and the department in X-Lgsp-Consumer.
    let path = format!("/ndxp/{POPULATION}/cong-dan/001?ho=Nguyen");
    let (status, body) = eventually(WAIT, "the national route served", || async {
        let answer = lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&consumer_secret), &path)
            .await
            .expect("an answer");
        (answer.0 == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ndxp"], POPULATION, "{body}");
    assert_eq!(body["consumer"], consumer_identity.as_str());
    let received = national.received_at_least(1);
    let first = &received[0];
    assert_eq!(first.request_uri, format!("/api/{POPULATION}/cong-dan/001?ho=Nguyen"));
    assert_eq!(first.client_verify, "SUCCESS");
    assert!(first.client_subject.contains(PROVINCE_CODE), "the province's identity: {}", first.client_subject);
    assert_eq!(first.consumer, consumer_identity);

    // The other department: not granted (its consumption was refused), so 403 — and the NDXP
    // receives nothing more.
    let (status, body) = lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&other_secret), &path)
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) =
        lgsp_client::call(gateway.listen, &host, lgsp_client::client_config(&other_secret), "/ndxp/csdlqg-dat-dai/x")
            .await
            .expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(national.received().len(), 1, "refused calls never reach the NDXP: {:?}", national.received());

    // The audit verifies, and records the national exchange with the verified caller.
    assert!(gateway.stop(), "the gateway stops cleanly:\n{}", gateway.log());
    let audit = std::fs::read_to_string(&gateway.audit_log).expect("the audit log");
    assert!(
        audit.lines().any(|l| l.contains(&format!("ndxp/{POPULATION}"))
            && l.contains(&consumer_identity)
            && l.contains("\"status\":200")),
        "{audit}"
    );
    let verified = gateway.verify_audit(&[&dir.path().join("tls.crt")], &dir.path().join("ca.crt"));
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success() && report.contains("OK"),
        "audit verify: {report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // The national platform removed from the Platform: the gateway's Secret goes with it.
    let removed = format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  baseDomain: {base_domain}\n"
    );
    let (ok, _, err) =
        cluster.kubectl_stdin(&["apply", "--server-side", "--field-manager", "govpaas-test-ndxp", "-f", "-"], &removed);
    assert!(ok, "{err}");
    eventually(WAIT, "the national Secret deleted", || async {
        secrets.get_opt("govpaas-lgsp-ndxp").await.ok()?.is_none().then_some(())
    })
    .await;
    drop(operator);
    for name in &names {
        let _ = cluster.kubectl().args(["delete", "tenant", name, "--ignore-not-found", "--wait=false"]).output();
    }
}

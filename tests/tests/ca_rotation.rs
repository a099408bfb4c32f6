//! A platform CA rotation end to end, on a control plane of its own (it changes what every tenant
//! trusts, so it cannot share the cluster with other tests): two agencies serve Portals; the
//! platform engineer points `spec.ca.secretName` at a new Secret; the operator generates the new
//! CA there, distributes the two-CA bundle, waits out the propagation delay, re-issues every
//! tenant CA and leaf, and drops the old CA. Throughout, the test samples the Secrets and bundles
//! as servers and clients would load them and completes a real rustls handshake at every sample:
//!
//! - a server's current certificate, with the tenant's current trust bundle ConfigMap, and with
//!   the bundle in its own Secret's `ca.crt`;
//! - while the new CA is being distributed, with the bundle from before the rotation (a client that
//!   has not refreshed its mounted ConfigMap yet): no new leaf may be shown before then;
//! - until the rotation completes, a server still holding its certificate from before the rotation,
//!   with the current bundle.
//!
//! Then the old CA is gone from every bundle (the old certificate no longer verifies); a second
//! rotation is refused while one runs and is aborted by pointing back; a CA replaced inside its
//! Secret is refused, not rotated to; and importing something that is not a CA is refused.

use std::time::{Duration, Instant};

use govpaas_crds::Platform;
use govpaas_operator::certificates::trust_state::TrustState;
use govpaas_pki::tls::handshake_ok;
use govpaas_pki::{CertificateAuthority, IssuancePolicy, PlatformCaRequest, generate_platform_ca};
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, eventually, private_cluster, secret_data, unique_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(120);
const BASE_DOMAIN: &str = "danang.gov.vn";
const OLD_SECRET: &str = "govpaas-ca";
const NEW_SECRET: &str = "govpaas-ca-2027";
const TRUST_BUNDLE: &str = "govpaas-trust-bundle";

/// An agency serving one Portal.
struct Agency {
    namespace: String,
    host: String,
}

const LEAF_SECRET: &str = "dichvucong-portal-tls";

impl Agency {
    async fn leaf(&self, client: &Client) -> Secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        eventually(WAIT, "the Portal's TLS Secret", || async { api.get_opt(LEAF_SECRET).await.ok()? }).await
    }

    async fn bundle(&self, client: &Client) -> String {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        eventually(WAIT, "the tenant's trust bundle", || async {
            api.get_opt(TRUST_BUNDLE).await.ok()??.data?.get("ca.crt").cloned()
        })
        .await
    }
}

/// A real rustls handshake: the server presents `leaf`, the client trusts only `bundle`.
fn handshake(leaf: &Secret, bundle: &[u8], host: &str) -> Result<(), String> {
    handshake_ok(&secret_data(leaf, "tls.crt"), &secret_data(leaf, "tls.key"), bundle, host)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The LGSP gateway's TLS Secret, once the operator has issued it.
async fn gateway_certificate(client: &Client) -> Secret {
    let api: Api<Secret> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let name = govpaas_operator::lgsp::GATEWAY_TLS_SECRET;
    eventually(WAIT, "the gateway's certificate", || async { api.get_opt(name).await.ok()? }).await
}

fn certificates_in(bundle: &str) -> usize {
    bundle.matches("BEGIN CERTIFICATE").count()
}

/// The persisted trust state.
async fn trust_state(client: &Client) -> TrustState {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let config_map = eventually(WAIT, "the trust state ConfigMap", || async {
        api.get_opt(govpaas_operator::certificates::trust_store::TRUST_CONFIG_MAP).await.ok()?
    })
    .await;
    let text = config_map.data.and_then(|d| d.get("state.json").cloned()).expect("state.json");
    serde_json::from_str(&text).expect("a readable trust state")
}

async fn set_ca(client: &Client, secret_name: &str, propagation_delay: &str) {
    let platforms: Api<Platform> = Api::all(client.clone());
    let patch =
        serde_json::json!({ "spec": { "ca": { "secretName": secret_name, "propagationDelay": propagation_delay } } });
    platforms.patch("default", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patching the Platform");
}

/// The Platform's condition `type_` as (status, reason, message), once `check` accepts it.
async fn platform_condition(
    client: &Client,
    type_: &str,
    what: &str,
    check: impl Fn(&str, &str) -> bool,
) -> (String, String, String) {
    let platforms: Api<Platform> = Api::all(client.clone());
    eventually(WAIT, what, || async {
        let platform = platforms.get("default").await.ok()?;
        let condition = platform.status?.conditions.into_iter().find(|c| c.type_ == type_)?;
        check(&condition.status, &condition.reason).then_some((condition.status, condition.reason, condition.message))
    })
    .await
}

async fn platform_events(client: &Client) -> Vec<String> {
    let events: Api<Event> = Api::all(client.clone());
    let list = events.list(&ListParams::default()).await.expect("listing Events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Platform"))
        .filter_map(|e| e.reason)
        .collect()
}

fn install(cluster: &Cluster) {
    operator::install_chart(cluster);
    // A short propagation delay keeps the test quick; production's default is 10 minutes.
    cluster.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  baseDomain: {BASE_DOMAIN}\n  ca:\n    propagationDelay: 3s\n"
    ));
}

async fn agency(cluster: &Cluster, client: &Client, operator: &OperatorProcess, code: &str) -> Agency {
    let namespace = unique_name("rot");
    let host = format!("dichvucong.{namespace}.{BASE_DOMAIN}");
    cluster.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {namespace}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"Ủy ban nhân dân {code}\"\n    level: Province\n  quota: {{cpu: \"4\", memory: 8Gi, storage: 10Gi, pods: 10, services: 5, publicHosts: 2, lgspApis: 2}}\n",
        scope = operator.scope_label(),
    ));
    // The Portal goes into the namespace the operator makes for the Tenant.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(WAIT, "the tenant's namespace", || async { namespaces.get_opt(&namespace).await.ok()? }).await;
    cluster.apply(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Portal\nmetadata:\n  name: dichvucong\n  namespace: {namespace}\nspec:\n  hosts: [{host}]\n  replicas: 1\n"
    ));
    Agency { namespace, host }
}

#[tokio::test]
async fn a_platform_ca_rotation_keeps_every_handshake_working_at_every_step() {
    let private = private_cluster("ca-rotation");
    let cluster = private.cluster;
    install(cluster);
    // Two operators, as two scopes: the second one's agency is the one the test holds back.
    let operator = OperatorProcess::start(cluster, &unique_name("rotation"));
    let mut late = OperatorProcess::start(cluster, &unique_name("rotation-late"));
    let client = cluster.client().await;
    let agencies = [
        agency(cluster, &client, &operator, "H17").await,
        agency(cluster, &client, &operator, "H49").await,
        agency(cluster, &client, &late, "H48").await,
    ];
    let held_back = &agencies[2];

    // Before: one CA, every leaf verifies with the tenant's bundle.
    let mut before = Vec::new();
    for agency in &agencies {
        let leaf = agency.leaf(&client).await;
        let bundle = agency.bundle(&client).await;
        assert_eq!(certificates_in(&bundle), 1, "one CA before the rotation");
        handshake(&leaf, bundle.as_bytes(), &agency.host).expect("a handshake before the rotation");
        before.push((leaf, bundle));
    }
    let old = trust_state(&client).await;
    assert_eq!(old.rotation.phase(), "Stable");
    // The LGSP gateway's certificate, issued by the platform CA itself, is part of the rotation.
    let gateway_host = format!("lgsp.{BASE_DOMAIN}");
    let gateway_before = gateway_certificate(&client).await;
    handshake(&gateway_before, &secret_data(&gateway_before, "ca.crt"), &gateway_host)
        .expect("the gateway's certificate");
    // Every controller, the platform trust one included, has synced.
    let ready = eventually(WAIT, "the operator ready", || async {
        let response = operator.http_get("/readyz").await;
        (response.split_whitespace().nth(1) == Some("200")).then_some(response)
    })
    .await;
    assert!(ready.ends_with("ok"), "{ready}");
    let old_ca = old.rotation.issuing().clone();

    // The platform engineer starts the rotation: a new Secret name (Generate mode: the operator
    // generates the new CA in it).
    set_ca(&client, NEW_SECRET, "10s").await;

    // The second operator stops once its agency has the two-CA bundle (Distributing needs that),
    // so that its certificates stay on the old CA and the Reissuing phase lasts until it returns:
    // every phase is sampled, whatever the timing.
    let (mut late_stopped, mut late_restarted) = (false, false);
    let started = Instant::now();
    let mut samples: std::collections::BTreeMap<String, usize> = Default::default();
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "the rotation did not finish; phases seen: {samples:?}");
        // Read what servers and clients hold first, the phase after: a phase still shown afterwards
        // was in force when they were read.
        let mut sampled = Vec::new();
        for agency in &agencies {
            sampled.push((agency.leaf(&client).await, agency.bundle(&client).await));
        }
        let state = trust_state(&client).await;
        let phase = state.rotation.phase();
        let completed = phase == "Stable" && state.rotation.issuing() != &old_ca;
        for (agency, ((leaf, bundle), (old_leaf, old_bundle))) in agencies.iter().zip(sampled.iter().zip(&before)) {
            let step = format!("{phase} ({} s, {})", started.elapsed().as_secs(), agency.namespace);
            handshake(leaf, bundle.as_bytes(), &agency.host)
                .unwrap_or_else(|err| panic!("{step}: the current leaf with the tenant's current bundle: {err}"));
            handshake(leaf, &secret_data(leaf, "ca.crt"), &agency.host)
                .unwrap_or_else(|err| panic!("{step}: the current leaf with its Secret's ca.crt: {err}"));
            if phase == "Distributing" {
                handshake(leaf, old_bundle.as_bytes(), &agency.host).unwrap_or_else(|err| {
                    panic!("{step}: a client that has not received the new bundle yet refused the server: {err}")
                });
            }
            if !completed {
                handshake(old_leaf, bundle.as_bytes(), &agency.host).unwrap_or_else(|err| {
                    panic!("{step}: a server not yet moved was refused with the current bundle: {err}")
                });
            }
        }
        *samples.entry(phase.to_owned()).or_default() += 1;
        if completed {
            break;
        }
        let (held_leaf, held_bundle) = &sampled[2];
        if phase == "Distributing"
            && !late_stopped
            && certificates_in(held_bundle) == 2
            && certificates_in(&String::from_utf8_lossy(&secret_data(held_leaf, "ca.crt"))) == 2
        {
            late.stop();
            late_stopped = true;
        }
        if phase == "Reissuing" && late_stopped && !late_restarted && samples["Reissuing"] >= 4 {
            // The rotation waits for the held-back agency, and says so.
            let platforms: Api<Platform> = Api::all(client.clone());
            let trust = platforms.get("default").await.expect("the Platform").status.and_then(|s| s.trust);
            let trust = trust.expect("status.trust");
            assert!(trust.on_old_ca >= Some(2), "its tenant CA and leaf are on the old CA: {trust:?}");
            assert!(
                trust.waiting_for.iter().any(|w| w.contains(&held_back.namespace)),
                "status names what the rotation waits for: {trust:?}"
            );
            late.restart();
            late_restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(late_restarted, "the held-back operator was stopped and restarted during the rotation: {samples:?}");
    eprintln!(
        "rotation completed in {} s, samples by phase {samples:?}, every handshake working",
        started.elapsed().as_secs()
    );

    // After: the new CA alone; every tenant CA and leaf chains to it; the old leaf is refused.
    let new = trust_state(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let new_secret = secrets.get(NEW_SECRET).await.expect("the generated new CA");
    let new_ca = CertificateAuthority::import_platform_ca(
        &secret_data(&new_secret, "tls.crt"),
        &secret_data(&new_secret, "tls.key"),
        OffsetDateTime::now_utc(),
    )
    .expect("a usable new CA");
    assert_eq!(new.rotation.issuing().fingerprint, new_ca.fingerprint());
    assert_eq!(new.secrets.values().collect::<Vec<_>>(), [NEW_SECRET]);
    for (agency, (old_leaf, _)) in agencies.iter().zip(&before) {
        let bundle = eventually(WAIT, "the bundle without the old CA", || async {
            let bundle = agency.bundle(&client).await;
            (certificates_in(&bundle) == 1).then_some(bundle)
        })
        .await;
        assert_eq!(bundle.trim(), new_ca.certificate_pem().trim(), "the bundle is the new CA");
        let leaf = agency.leaf(&client).await;
        handshake(&leaf, bundle.as_bytes(), &agency.host).expect("the re-issued leaf with the new bundle");
        let refused = handshake(old_leaf, bundle.as_bytes(), &agency.host).expect_err("the old leaf must be refused");
        assert!(refused.contains("UnknownIssuer"), "{refused}");
        let tenant_ca = secrets.get(&format!("govpaas-tenant-ca-{}", agency.namespace)).await.expect("the tenant CA");
        CertificateAuthority::load_tenant_ca(
            &secret_data(&tenant_ca, "tls.crt"),
            &secret_data(&tenant_ca, "tls.key"),
            &new_ca,
            OffsetDateTime::now_utc(),
        )
        .expect("the tenant CA was re-issued by the new platform CA");
    }
    // The gateway's certificate was re-issued by the new platform CA (the rotation waited for it).
    let new_bundle = new_ca.certificate_pem().as_bytes();
    let gateway_after = gateway_certificate(&client).await;
    handshake(&gateway_after, new_bundle, &gateway_host).expect("the gateway's re-issued certificate, new bundle");
    let refused = handshake(&gateway_before, new_bundle, &gateway_host).expect_err("the old gateway certificate");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let platforms: Api<Platform> = Api::all(client.clone());
    let trust = platforms.get("default").await.expect("the Platform").status.and_then(|s| s.trust).expect("trust");
    assert_eq!(trust.phase, "Stable");
    assert_eq!(trust.cas.iter().map(|ca| ca.secret_name.as_str()).collect::<Vec<_>>(), [NEW_SECRET]);
    let events = platform_events(&client).await;
    for reason in ["RotationStarted", "ReissuingStarted", "RotationCompleted"] {
        assert!(events.iter().any(|e| e == reason), "Event {reason} on the Platform: {events:?}");
    }
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains(&format!("secret=\"{NEW_SECRET}\"")) && !metrics.contains(&format!("secret=\"{OLD_SECRET}\"")),
        "the gauges follow the platform CA: {metrics}"
    );

    // A second rotation with a long propagation delay: distributed, then a third CA is refused,
    // then pointing back aborts it and the bundles return to one CA.
    set_ca(&client, "govpaas-ca-2028", "1h").await;
    eventually(WAIT, "the two-CA bundle of the second rotation", || async {
        (certificates_in(&agencies[0].bundle(&client).await) == 2).then_some(())
    })
    .await;
    set_ca(&client, "govpaas-ca-2029", "1h").await;
    let (_, _, message) = platform_condition(&client, "CaRotation", "a refused third CA", |status, reason| {
        status == "False" && reason == "RotationInProgress"
    })
    .await;
    assert!(message.contains("govpaas-ca-2029"), "{message}");
    set_ca(&client, NEW_SECRET, "1h").await;
    platform_condition(&client, "CaRotation", "the aborted rotation", |status, reason| {
        status == "False" && reason == "Stable"
    })
    .await;
    for agency in &agencies {
        eventually(WAIT, "the bundle back to one CA", || async {
            (agency.bundle(&client).await.trim() == new_ca.certificate_pem().trim()).then_some(())
        })
        .await;
        let leaf = agency.leaf(&client).await;
        handshake(&leaf, new_ca.certificate_pem().as_bytes(), &agency.host).expect("nothing came from the aborted CA");
    }
    assert!(platform_events(&client).await.iter().any(|e| e == "RotationAborted"));

    // A CA replaced inside its Secret is refused, and everything keeps the CA it had.
    let impostor = generate_platform_ca(
        &PlatformCaRequest::new(BASE_DOMAIN, "someone else"),
        &IssuancePolicy::default(),
        OffsetDateTime::now_utc(),
    )
    .expect("a CA");
    let replace = |ca: &CertificateAuthority| {
        serde_json::json!({ "data": {
            "tls.crt": ByteString(ca.certificate_pem().as_bytes().to_vec()),
            "tls.key": ByteString(ca.private_key_pem().expose().as_bytes().to_vec()),
        }})
    };
    secrets.patch(NEW_SECRET, &PatchParams::default(), &Patch::Merge(&replace(&impostor))).await.expect("replacing");
    // The Secret's change is seen at the next pass of the controller: a Platform edit brings it now.
    set_ca(&client, NEW_SECRET, "2h").await;
    let (_, _, message) = platform_condition(&client, "CaRotation", "the in-place replacement refused", |s, r| {
        s == "False" && r == "CaReplacedInPlace"
    })
    .await;
    assert!(message.contains(NEW_SECRET), "{message}");
    platform_condition(&client, "CertificateAuthorityReady", "the CA reported unusable", |s, _| s == "False").await;
    assert_eq!(trust_state(&client).await.rotation.issuing().fingerprint, new_ca.fingerprint());
    for agency in &agencies {
        assert_eq!(agency.bundle(&client).await.trim(), new_ca.certificate_pem().trim(), "no bundle changed");
    }
    secrets.patch(NEW_SECRET, &PatchParams::default(), &Patch::Merge(&replace(&new_ca))).await.expect("restoring");
    set_ca(&client, NEW_SECRET, "3h").await;
    platform_condition(&client, "Ready", "the Platform ready again", |s, _| s == "True").await;

    // An import of something that is not a CA (here a Portal's server certificate) is refused with
    // a clear condition, and nothing changes.
    let server = agencies[0].leaf(&client).await;
    let bogus = Secret {
        metadata: kube::api::ObjectMeta { name: Some("govpaas-ca-bogus".into()), ..Default::default() },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [("tls.crt", secret_data(&server, "tls.crt")), ("tls.key", secret_data(&server, "tls.key"))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    };
    secrets.create(&Default::default(), &bogus).await.expect("creating the bogus CA Secret");
    let platforms: Api<Platform> = Api::all(client.clone());
    let import = serde_json::json!({ "spec": { "ca": { "mode": "Import", "secretName": "govpaas-ca-bogus" } } });
    platforms.patch("default", &PatchParams::default(), &Patch::Merge(&import)).await.expect("importing");
    let (_, _, message) =
        platform_condition(&client, "CertificateAuthorityReady", "the bogus import refused", |s, r| {
            s == "False" && r == "CaUnusable"
        })
        .await;
    assert!(message.contains("govpaas-ca-bogus") && message.contains("not a certificate authority"), "{message}");
    assert_eq!(trust_state(&client).await.rotation.trusted().len(), 1, "no rotation started");
    let back = serde_json::json!({ "spec": { "ca": { "mode": "Generate", "secretName": NEW_SECRET } } });
    platforms.patch("default", &PatchParams::default(), &Patch::Merge(&back)).await.expect("reverting");
    platform_condition(&client, "Ready", "the Platform ready after the refused import", |s, _| s == "True").await;
    drop(operator);
    drop(late);
}

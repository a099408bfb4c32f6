//! The certificate authority on the real control plane: a tenant gets its intermediate CA and its
//! trust bundle before it has any service; a Portal's TLS Secret, taken as a server, completes a
//! real rustls handshake with a client that trusts only the tenant's trust bundle ConfigMap; and a
//! hand-damaged certificate Secret is reported with a Warning Event and re-issued.
//!
//! The chart is installed and the operator runs as a local process with its ServiceAccount's
//! token, scoped to this test's Tenant (see `govpaas_tests::operator`).

use std::ops::Deref;
use std::time::Duration;

use govpaas_crds::{Platform, Portal, Tenant};
use govpaas_pki::tls::handshake_ok;
use govpaas_pki::{
    CertificateAuthority, IssuancePolicy, PlatformCaRequest, TenantCaRequest, TrustAnchors, generate_platform_ca,
};
use govpaas_tests::operator;
use govpaas_tests::world::{PortalBuilder, Quota, WAIT, World};
use govpaas_tests::{eventually, secret_data};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use time::OffsetDateTime;

const TRUST_BUNDLE: &str = "govpaas-trust-bundle";

/// The shared world with one Tenant (named after the scope), applied but not waited for: the
/// tests watch its CA and trust bundle arrive.
struct Certificates {
    world: World,
    /// The Tenant's name, which is also its namespace's.
    tenant: String,
}

impl Deref for Certificates {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Certificates {
    async fn new(prefix: &str) -> Self {
        let world = World::new(prefix).await;
        let tenant = world.scope.clone();
        let quota = Quota::default().cpu("8").memory("16Gi").pods(20).public_hosts(4);
        world.apply(&world.tenant(&tenant).quota(quota).build()).await;
        Certificates { world, tenant }
    }

    fn domain(&self) -> String {
        self.domain_of(&self.tenant)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.tenant)
    }

    /// The Portal `dichvucong` on `host`, one replica.
    async fn apply_portal(&self, host: &str) {
        self.apply(&PortalBuilder::new(&self.tenant, "dichvucong", &[host.to_owned()]).build()).await;
    }

    /// The platform CA, as the operator stored it.
    async fn platform_ca(&self) -> CertificateAuthority {
        let secret =
            self.wait(operator::NAMESPACE, "govpaas-ca", "the platform CA", |s: &Secret| Some(s.clone())).await;
        CertificateAuthority::import_platform_ca(
            &secret_data(&secret, "tls.crt"),
            &secret_data(&secret, "tls.key"),
            now(),
        )
        .expect("a usable platform CA")
    }

    /// The tenant's trust bundle, once the tenant controller has written it.
    async fn trust_bundle(&self) -> String {
        self.wait(&self.tenant, TRUST_BUNDLE, "the tenant's trust bundle", |c: &ConfigMap| {
            c.data.as_ref()?.get("ca.crt").cloned()
        })
        .await
    }

    /// The Secret `name` once `check` accepts it.
    async fn secret_where(&self, name: &str, what: &str, check: impl Fn(&Secret) -> bool) -> Secret {
        self.wait(&self.tenant, name, what, |s: &Secret| check(s).then(|| s.clone())).await
    }

    /// The notes of the Warning Events with `reason` about the Portal `name`.
    async fn warnings(&self, reason: &str, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.tenant);
        let list = events.list(&ListParams::default()).await.expect("listing Events");
        list.items
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.note)
            .collect()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A real rustls handshake: the server presents the Secret's `tls.crt` with its `tls.key`, the
/// client trusts only `bundle` and connects to `host`.
fn assert_handshake(secret: &Secret, bundle: &str, host: &str) {
    let outcome =
        handshake_ok(&secret_data(secret, "tls.crt"), &secret_data(secret, "tls.key"), bundle.as_bytes(), host)
            .unwrap_or_else(|err| panic!("a TLS handshake to {host} with the tenant's trust bundle: {err}"));
    assert_eq!(outcome.server_chain_len, 2, "the leaf and its tenant CA");
}

#[tokio::test]
async fn a_tenant_gets_its_intermediate_and_trust_bundle_and_a_portal_handshakes_with_them() {
    let world = Certificates::new("cert-bundle").await;
    let platform_ca = world.platform_ca().await;

    // The trust bundle: the platform CA alone, nothing else (no tenant CA, no key).
    let bundle = world.trust_bundle().await;
    assert_eq!(bundle, platform_ca.certificate_pem(), "the bundle is the platform CA");
    assert_eq!(TrustAnchors::from_pem(bundle.as_bytes()).expect("a usable bundle").certificates().len(), 1);

    // Agency admins may edit ConfigMaps: a bundle edited by hand (a CA of their own slipped in) is
    // put back at once, not at the next hourly resync.
    let bundles: Api<ConfigMap> = Api::namespaced(world.client.clone(), &world.tenant);
    let edit = serde_json::json!({ "data": { "ca.crt": format!("{bundle}{}", foreign_ca().certificate_pem()) } });
    bundles.patch(TRUST_BUNDLE, &PatchParams::default(), &Patch::Merge(&edit)).await.expect("editing the bundle");
    eventually(Duration::from_secs(30), "the hand-edited trust bundle put back", || async {
        let data = bundles.get(TRUST_BUNDLE).await.ok()?.data?;
        (data.get("ca.crt") == Some(&bundle)).then_some(())
    })
    .await;

    // The Platform's status shows the CA's expiry (the `CA Expires` column).
    let platforms: Api<Platform> = Api::all(world.client.clone());
    let expected = platform_ca.not_after().unix_timestamp();
    eventually(WAIT, "the Platform's status.ca.notAfter", || async {
        let ca = platforms.get("default").await.ok()?.status?.ca?;
        (ca.not_after?.0.as_second() == expected && ca.secret_name.as_deref() == Some("govpaas-ca")).then_some(())
    })
    .await;

    // The intermediate, before any service: in the operator's namespace, issued by the platform
    // CA and constrained to the tenant's domain.
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), operator::NAMESPACE);
    let name = format!("govpaas-tenant-ca-{}", world.tenant);
    let stored = eventually(WAIT, "the tenant CA Secret", || async { secrets.get_opt(&name).await.ok()? }).await;
    let tenant_ca = CertificateAuthority::load_tenant_ca(
        &secret_data(&stored, "tls.crt"),
        &secret_data(&stored, "tls.key"),
        &platform_ca,
        now(),
    )
    .expect("a tenant CA issued by the platform CA");
    assert_eq!(tenant_ca.permitted_domains(), [world.domain()]);
    assert_eq!(tenant_ca.agency().map(|a| a.agency_code().to_owned()).as_deref(), Some("H49"));
    // Both CAs' expiry is a gauge (the tenant controller records them as it loads them).
    for (kind, secret, ca) in [("platform-ca", "govpaas-ca", &platform_ca), ("tenant-ca", name.as_str(), &tenant_ca)] {
        let labels = [format!("kind=\"{kind}\""), format!("secret=\"{secret}\"")];
        let expected = format!(" {}", ca.not_after().unix_timestamp());
        eventually(WAIT, &format!("the {kind}'s expiry gauge"), || async {
            let metrics = world.operator().metrics().await;
            metrics
                .lines()
                .filter(|l| l.contains("certificate_expiration_timestamp_seconds{"))
                .any(|l| labels.iter().all(|label| l.contains(label)) && l.ends_with(&expected))
                .then_some(())
        })
        .await;
    }

    // Quota per tenant, read from the Tenant cache at scrape time: what its status says.
    let hard_cpu = world
        .observed("", &world.tenant, "the Tenant's quota in status", |tenant: &Tenant| {
            let quota = tenant.status.as_ref()?.quota.as_ref()?;
            quota
                .hard
                .get("cpu")
                .map(|q| govpaas_crds::quantity::Amount::of(q).expect("a quantity").nanos() as f64 / 1e9)
        })
        .await;
    let expected =
        format!("govpaas_tenant_quota{{tenant=\"{}\",resource=\"cpu\",share=\"hard\"}} {hard_cpu:?}", world.tenant);
    eventually(WAIT, "the tenant's quota gauge", || async {
        let metrics = world.operator().metrics().await;
        metrics.lines().any(|line| line == expected).then_some(())
    })
    .await;

    // The tenant's intermediate is in its trust bundle ConfigMap too, beside (not among) the anchors.
    eventually(WAIT, "the tenant CA in the trust bundle ConfigMap", || async {
        let data = bundles.get(TRUST_BUNDLE).await.ok()?.data?;
        (data.get("tenant-ca.crt").map(|pem| pem.trim()) == Some(tenant_ca.certificate_pem().trim())).then_some(())
    })
    .await;

    // The Tenant's status names its CA: where it is, when it expires, when the operator renews it
    // (two thirds of its lifetime by default).
    let ca = world
        .observed("", &world.tenant, "the Tenant's status.ca", |tenant: &Tenant| tenant.status.as_ref()?.ca.clone())
        .await;
    assert_eq!(ca.secret_name.as_deref(), Some(name.as_str()));
    assert_eq!(ca.not_after.expect("notAfter").0.as_second(), tenant_ca.not_after().unix_timestamp());
    let (from, to) = (tenant_ca.not_before().unix_timestamp(), tenant_ca.not_after().unix_timestamp());
    let renewal = ca.renewal_time.expect("renewalTime").0.as_second();
    assert!((renewal - (from + (to - from) * 67 / 100)).abs() <= 1, "renewal at 67 % of the lifetime: {renewal}");

    // Nothing of it in the tenant's own namespace.
    let own = world.secrets().list(&ListParams::default()).await.expect("listing the tenant's Secrets");
    assert!(own.items.iter().all(|s| s.metadata.name.as_deref() != Some(name.as_str())));

    // A Portal: its TLS Secret, as a server, handshakes with a client trusting the bundle.
    let host = format!("dichvucong.{}", world.domain());
    world.apply_portal(&host).await;
    let portals: Api<Portal> = Api::namespaced(world.client.clone(), &world.tenant);
    world.condition::<Portal>(&world.tenant, "dichvucong", "CertificateReady", "True", None).await;
    let secret_name = "dichvucong-portal-tls";
    let secret = world.secret_where(secret_name, "the Portal's TLS Secret", |_| true).await;
    assert_handshake(&secret, &bundle, &host);
    // Its status: the certificate's expiry and the instant it is renewed.
    let certificate = portals.get("dichvucong").await.expect("the Portal").status.and_then(|s| s.certificate);
    let certificate = certificate.expect("status.certificate");
    let (not_after, renewal) = (certificate.not_after.expect("notAfter").0, certificate.renewal_time.expect("renewal"));
    assert!(renewal.0 < not_after, "renewed before it expires: {renewal:?} / {not_after:?}");
    // The same Secret presented for a host outside its names fails: the handshake is real.
    let stranger = format!("other.{}", world.domain());
    assert!(
        handshake_ok(&secret_data(&secret, "tls.crt"), &secret_data(&secret, "tls.key"), bundle.as_bytes(), &stranger)
            .is_err()
    );
}

#[tokio::test]
async fn a_damaged_certificate_secret_is_reported_and_reissued() {
    let world = Certificates::new("cert-damage").await;
    let bundle = world.trust_bundle().await;
    let host = format!("dichvucong.{}", world.domain());
    world.apply_portal(&host).await;
    let secret_name = "dichvucong-portal-tls";
    let original = world
        .secret_where(secret_name, "the Portal's TLS Secret", |s| {
            s.data.as_ref().is_some_and(|d| d.contains_key("tls.crt") && d.contains_key("tls.key"))
        })
        .await;
    assert_handshake(&original, &bundle, &host);

    // Each edit below may land while a reconcile is in flight (one woken by the operator's own
    // writes, which the test has just seen): that reconcile read the Secret before the edit, and its
    // apply is conditional on what it read, so it never writes the healthy leaf back over the damage.

    // 1. A key that belongs to another certificate (a hand edit gone wrong).
    let foreign_key = foreign_ca().private_key_pem().expose().as_bytes().to_vec();
    patch_secret(&world, secret_name, "tls.key", foreign_key.clone()).await;
    let repaired = world
        .secret_where(secret_name, "the TLS Secret re-issued after a foreign key", |s| {
            secret_data(s, "tls.key") != foreign_key && secret_data(s, "tls.crt") != secret_data(&original, "tls.crt")
        })
        .await;
    assert_handshake(&repaired, &bundle, &host);
    let notes = eventually(WAIT, "a CertificateDamaged Warning", || async {
        let notes = world.warnings("CertificateDamaged", "dichvucong").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes.iter().any(|n| n.contains("damaged") && n.contains("re-issued")), "{notes:?}");

    // 2. Garbage in place of the certificate.
    let garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n".to_vec();
    patch_secret(&world, secret_name, "tls.crt", garbage.clone()).await;
    let repaired_again = world
        .secret_where(secret_name, "the TLS Secret re-issued after garbage", |s| {
            let crt = secret_data(s, "tls.crt");
            crt != garbage && crt != secret_data(&repaired, "tls.crt")
        })
        .await;
    assert_handshake(&repaired_again, &bundle, &host);

    // The operator is still there: damage is never a crash.
    let mut world = world;
    let operator = world.world.operator_mut();
    assert!(operator.is_running(), "the operator exited:\n{}", operator.log_tail(40));
}

#[tokio::test]
async fn a_tenant_ca_due_for_renewal_is_renewed_and_its_leaves_move_with_every_handshake_working() {
    let world = Certificates::new("cert-renew").await;
    let bundle = world.trust_bundle().await;
    let platform_ca = world.platform_ca().await;
    let host = format!("dichvucong.{}", world.domain());
    world.apply_portal(&host).await;
    let secret_name = "dichvucong-portal-tls";
    let first = world.secret_where(secret_name, "the Portal's TLS Secret", |s| s.data.is_some()).await;
    assert_handshake(&first, &bundle, &host);

    // Put in place a tenant CA for this tenant, issued by the platform CA, that is past its
    // renewal point: one hour of life, issued 45 minutes ago (as if time had passed).
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), operator::NAMESPACE);
    let ca_secret = format!("govpaas-tenant-ca-{}", world.tenant);
    let mut short = IssuancePolicy::default();
    short.lifetimes.tenant_ca = time::Duration::HOUR;
    let request = TenantCaRequest {
        base_domain: world.base_domain.clone(),
        agency_code: "H49".into(),
        display_name: "Ủy ban nhân dân tỉnh Quảng Nam".into(),
        domain: world.domain(),
    };
    let due = platform_ca.issue_tenant_ca(&request, &short, now() - time::Duration::minutes(45)).expect("a due CA");
    let patch = serde_json::json!({ "data": {
        "tls.crt": ByteString(due.certificate_pem().as_bytes().to_vec()),
        "tls.key": ByteString(due.private_key_pem().expose().as_bytes().to_vec()),
    }});
    secrets.patch(&ca_secret, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("replacing the tenant CA");

    // A reconcile of the Portal (an annotation wakes it) finds the tenant CA due, renews it, and
    // re-issues the leaf from the renewed CA.
    let portals: Api<Portal> = Api::namespaced(world.client.clone(), &world.tenant);
    let touch = serde_json::json!({ "metadata": { "annotations": { "test.govpaas.io/touch": "1" } } });
    portals.patch("dichvucong", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("annotating the Portal");
    let renewed = eventually(WAIT, "a renewed tenant CA", || async {
        let stored = secrets.get(&ca_secret).await.ok()?;
        let ca = CertificateAuthority::load_tenant_ca(
            &secret_data(&stored, "tls.crt"),
            &secret_data(&stored, "tls.key"),
            &platform_ca,
            now(),
        )
        .ok()?;
        (ca.fingerprint() != due.fingerprint() && ca.not_after() > now() + time::Duration::days(30)).then_some(ca)
    })
    .await;
    assert_eq!(renewed.permitted_domains(), [world.domain()], "the renewed CA keeps the name constraint");

    // The leaf moves to the renewed CA; its chain carries it, and the handshake works.
    let moved = world
        .secret_where(secret_name, "the leaf re-issued from the renewed tenant CA", |s| {
            String::from_utf8_lossy(&secret_data(s, "tls.crt")).contains(renewed.certificate_pem().trim())
        })
        .await;
    assert_handshake(&moved, &bundle, &host);
    // A leaf of the old tenant CA, wherever a copy of it still serves, stays trusted until it
    // expires: its chain carries its own intermediate.
    assert_handshake(&first, &bundle, &host);
}

/// A CA that has nothing to do with the platform.
fn foreign_ca() -> CertificateAuthority {
    let request = PlatformCaRequest::new("example.org", "someone else");
    generate_platform_ca(&request, &IssuancePolicy::default(), now()).expect("a throw-away CA")
}

/// Overwrites one key of a Secret in the tenant's namespace, as someone editing it by hand would.
async fn patch_secret(world: &Certificates, name: &str, key: &str, value: Vec<u8>) {
    let patch = serde_json::json!({ "data": { key: ByteString(value) } });
    world
        .secrets()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|err| panic!("editing {key} of Secret {name}: {err}"));
}

//! The certificate gauges of the services, end to end: a certificate issued by the code a
//! reconcile runs ([`crate::certificates::leaf`]), recorded in a status as the reconcile records
//! it, read from the cache at every scrape by [`pipeline::certificate_gauges`] (the source the
//! composition root registers) and shown by [`crate::telemetry`] — checked against the
//! certificate's own validity, never against a value the test wrote.

use std::sync::Arc;

use govpaas_crds::Portal;
use govpaas_crds::portal::PortalStatus;
use govpaas_pki::{CertificateAuthority, IssuancePolicy, PlatformCaRequest, TenantCaRequest, TrustAnchors};
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};
use time::OffsetDateTime;

use crate::certificates::leaf::{Issued, Issuer, Leaf, LeafSpec, Stored, keep_or_issue};
use crate::service::pipeline;
use crate::service::runtime::{Shared, all_listed};
use crate::telemetry::{CertificateGauges, Metrics};
use crate::{fixtures, workload};

/// The context the service controllers share, on a client nothing answers: reading the
/// gauges asks the API server nothing.
fn shared() -> Shared {
    let (service, _) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let client = kube::Client::new(service, "default");
    Shared {
        publisher: crate::reconcile::events::Publisher::new(client.clone(), None),
        status_writes: Default::default(),
        applied: Default::default(),
        tenant_cas: Default::default(),
        client,
        settings: crate::settings::Settings {
            tenant_selector: None,
            operator_namespace: "govpaas-system".into(),
            concurrency: 1,
            instance: None,
            telemetry: Default::default(),
        },
        platforms: reflector::store().0,
        tenants: reflector::store().0,
        namespaces: reflector::store().0,
        quotas: reflector::store().0,
        tenant_ca_secrets: reflector::store().0,
        portals: reflector::store().0,
        documents: reflector::store().0,
        data_sharing: reflector::store().0,
        route_tables_orphaned: Default::default(),
        exchange_tables_orphaned: Default::default(),
        known_tenants: Default::default(),
        listed: all_listed(),
        platform_trust: crate::certificates::published::channel().1,
    }
}

/// A platform CA and a tenant CA under it, for the fixture tenant's domain.
fn authorities(policy: &IssuancePolicy, now: OffsetDateTime) -> (CertificateAuthority, CertificateAuthority) {
    let platform = fixtures::platform();
    let context = crate::tenancy::TenantContext::of(&fixtures::tenant(), &platform);
    let request = PlatformCaRequest::new(&platform.spec.base_domain, "Trung tâm");
    let issuing = govpaas_pki::generate_platform_ca(&request, policy, now).unwrap();
    let request = TenantCaRequest {
        base_domain: platform.spec.base_domain.clone(),
        agency_code: context.agency_code.clone(),
        display_name: context.display_name.clone(),
        domain: context.domain.clone(),
    };
    let tenant_ca = issuing.issue_tenant_ca(&request, policy, now).unwrap();
    (issuing, tenant_ca)
}

/// The fixture Portal with the status its reconcile writes for `leaf` in Secret `secret`.
fn portal_with(leaf: &Leaf, secret: &str, policy: &IssuancePolicy) -> DeserializeGuard<Portal> {
    let mut portal = fixtures::portal();
    let certificate = workload::status::certificate_status(secret, leaf, policy);
    portal.status = Some(PortalStatus { certificate: Some(certificate), ..Default::default() });
    DeserializeGuard(Ok(portal))
}

/// `(notBefore, notAfter)` of the first certificate of `pem`, in unix seconds, read from the
/// certificate itself.
fn validity(pem: &str) -> (i64, i64) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let validity = certificate.validity();
    (validity.not_before.timestamp(), validity.not_after.timestamp())
}

#[tokio::test]
async fn gauges_are_computed_at_scrape_time_from_the_statuses_of_issued_certificates() {
    let gauges = Arc::new(CertificateGauges::default());
    let metrics = Metrics::new(gauges.clone());
    // A Portal's certificate, issued by its tenant CA and recorded in its status by the code
    // its reconcile runs; the Portal in a cache whose content changes between scrapes, as a
    // controller's does, read by the source the controllers register.
    let policy = IssuancePolicy::default();
    let now = OffsetDateTime::now_utc();
    let (issuing, tenant_ca) = authorities(&policy, now);
    let trust_pem = issuing.certificate_pem().to_owned();
    let trust = TrustAnchors::from_pem(trust_pem.as_bytes()).unwrap();
    let issuer = Issuer { ca: &tenant_ca, trust: &trust, trust_pem: &trust_pem, policy: &policy };
    let portal = fixtures::portal();
    let namespace = portal.metadata.namespace.clone().unwrap();
    let spec = LeafSpec::Server { dns_names: portal.spec.hosts.clone() };
    let secret = "dichvucong-portal-tls";
    let issued = keep_or_issue(Stored::default(), &spec, &issuer, now).unwrap();
    let (cache, mut writer) = reflector::store::<DeserializeGuard<Portal>>();
    let shared = shared();
    gauges.read_from(move || pipeline::certificate_gauges(&shared, &cache));
    writer.apply_watcher_event(&watcher::Event::Apply(portal_with(&issued, secret, &policy)));

    // What the gauges show is what the certificate says: its notAfter, and the renewal at the
    // policy's point of its lifetime.
    let series = |name: &str, value: i64| {
        format!("govpaas_certificate_{name}{{namespace=\"{namespace}\",secret=\"{secret}\",kind=\"server\"}} {value}")
    };
    let expected = |pem: &str| {
        let (not_before, not_after) = validity(pem);
        let renewal = govpaas_pki::renewal::renewal_time(
            OffsetDateTime::from_unix_timestamp(not_before).unwrap(),
            OffsetDateTime::from_unix_timestamp(not_after).unwrap(),
            policy.renewal,
        );
        (not_after, renewal.unix_timestamp())
    };
    let (not_after, renewal) = expected(&issued.material.tls_crt);
    let text = metrics.render();
    assert!(text.contains(&series("expiration_timestamp_seconds", not_after)), "{text}");
    assert!(text.contains(&series("renewal_timestamp_seconds", renewal)), "{text}");

    // Renewed: past its renewal point the reconcile issues a new certificate; the next scrape
    // reads the new times. Gone from the cache: gone from the gauges.
    let later = OffsetDateTime::from_unix_timestamp(renewal).unwrap() + time::Duration::HOUR;
    let stored = Stored {
        tls_crt: Some(issued.material.tls_crt.as_bytes()),
        tls_key: Some(issued.material.tls_key.as_bytes()),
        resource_version: Some("1"),
    };
    let renewed = keep_or_issue(stored, &spec, &issuer, later).unwrap();
    assert_eq!(renewed.issued, Some(Issued::Renewal));
    let (renewed_not_after, _) = expected(&renewed.material.tls_crt);
    assert!(renewed_not_after > not_after);
    writer.apply_watcher_event(&watcher::Event::Apply(portal_with(&renewed, secret, &policy)));
    let text = metrics.render();
    assert!(text.contains(&series("expiration_timestamp_seconds", renewed_not_after)), "{text}");
    writer.apply_watcher_event(&watcher::Event::Delete(portal_with(&renewed, secret, &policy)));
    assert!(!metrics.render().contains("portal-tls"));
}

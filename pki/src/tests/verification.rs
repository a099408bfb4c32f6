//! What rustls-webpki accepts and refuses among the certificates govpaas issues, and among
//! certificates signed "by hand" with a tenant CA's key to probe the constraints.

use rcgen::{BasicConstraints, CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, IsCa, SanType};
use time::Duration;
use webpki::KeyUsage;

use crate::authority::distinguished_name;
use crate::leaf::DOCUMENT_SIGNING_EKU;
use crate::pem::{certificates_from_pem, parse_certificate};
use crate::policy::random_serial;
use crate::testing::*;
use crate::verify::{verify_client_chain, verify_server_chain, verify_signing_chain};
use crate::{
    AgencyIdentity, CertificateAuthority, ClientCertificateRequest, Error, IssuancePolicy, KeyAlgorithm,
    ServerCertificateRequest, SigningCertificateRequest,
};

fn webpki_error(result: Result<impl std::fmt::Debug, Error>) -> webpki::Error {
    match result {
        Err(Error::ChainInvalid(e)) => e,
        other => panic!("expected a webpki refusal, got {other:?}"),
    }
}

fn server_leaf(ca: &CertificateAuthority, hosts: &[&str]) -> String {
    ca.issue_server_certificate(
        &ServerCertificateRequest::new(hosts.iter().copied()),
        &IssuancePolicy::default(),
        now(),
    )
    .unwrap()
    .chain_pem()
    .to_owned()
}

fn client_request(ca: &CertificateAuthority, name: &str) -> ClientCertificateRequest {
    ClientCertificateRequest { identity: ca.agency().unwrap().workload("dss", name).unwrap() }
}

#[test]
fn a_tenant_server_leaf_verifies_to_the_root_through_the_intermediate() {
    let (platform, tenant) = platform_and_tenant();
    let hosts = ["portal.h49.quangnam.gov.vn", "h49.quangnam.gov.vn", "api.portal.h49.quangnam.gov.vn"];
    let crt = server_leaf(&tenant, &hosts);
    let chain = chain(&crt);
    assert_eq!(chain.len(), 2, "tls.crt is leaf + tenant CA");
    for host in hosts {
        verify_server_chain(&chain, &trust(&platform), host, now()).unwrap();
    }
    // Without the intermediate, the root alone does not vouch for the leaf.
    let e = webpki_error(verify_server_chain(&chain[..1], &trust(&platform), hosts[0], now()));
    assert!(matches!(e, webpki::Error::UnknownIssuer), "{e:?}");
    // A host the certificate does not name.
    let e = webpki_error(verify_server_chain(&chain, &trust(&platform), "other.h49.quangnam.gov.vn", now()));
    assert!(matches!(e, webpki::Error::CertNotValidForName(_)), "{e:?}");
}

#[test]
fn every_key_type_verifies() {
    for ca_alg in KeyAlgorithm::GENERATABLE {
        for leaf_alg in KeyAlgorithm::GENERATABLE {
            let policy =
                IssuancePolicy { ca_key_algorithm: ca_alg, leaf_key_algorithm: leaf_alg, ..IssuancePolicy::default() };
            let t = now();
            let platform = platform_at(&policy, t);
            let tenant = platform.issue_tenant_ca(&tenant_request(AGENCY, DOMAIN), &policy, t).unwrap();
            let leaf = tenant.issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &policy, t).unwrap();
            verify_server_chain(&chain(leaf.chain_pem()), &trust(&platform), DOMAIN, t)
                .unwrap_or_else(|e| panic!("{ca_alg}/{leaf_alg}: {e}"));
        }
    }
}

#[test]
fn issuance_refuses_hosts_outside_the_tenant_domain() {
    let (_, tenant) = platform_and_tenant();
    for host in ["portal.h50.quangnam.gov.vn", "quangnam.gov.vn", "evilh49.quangnam.gov.vn", "google.com"] {
        let err = tenant
            .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN, host]), &IssuancePolicy::default(), now())
            .unwrap_err();
        assert_eq!(err.label(), "NameOutsideDomain", "{host}: {err}");
    }
    let err = tenant
        .issue_server_certificate(
            &ServerCertificateRequest::new(Vec::<String>::new()),
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap_err();
    assert_eq!(err.label(), "InvalidName");
}

#[test]
fn a_hand_signed_leaf_outside_the_tenant_domain_is_refused_by_the_name_constraint() {
    let (platform, tenant) = platform_and_tenant();
    // The tenant CA's key signs a certificate for another agency's host and for a foreign site.
    for host in ["portal.h50.quangnam.gov.vn", "www.google.com", "quangnam.gov.vn"] {
        let (crt, _) = hand_signed_now(&tenant, vec![dns(host)], ExtendedKeyUsagePurpose::ServerAuth);
        let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), host, now()));
        assert!(matches!(e, webpki::Error::NameConstraintViolation), "{host}: {e:?}");
    }
    // One permitted name does not excuse another.
    let (crt, _) = hand_signed_now(
        &tenant,
        vec![dns("ok.h49.quangnam.gov.vn"), dns("portal.h50.quangnam.gov.vn")],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), "ok.h49.quangnam.gov.vn", now()));
    assert!(matches!(e, webpki::Error::NameConstraintViolation), "{e:?}");
    // The same hand-signing inside the domain verifies: the refusals above are the constraint's.
    let (crt, _) = hand_signed_now(&tenant, vec![dns("ok.h49.quangnam.gov.vn")], ExtendedKeyUsagePurpose::ServerAuth);
    verify_server_chain(&chain(&crt), &trust(&platform), "ok.h49.quangnam.gov.vn", now()).unwrap();
}

#[test]
fn a_hand_signed_leaf_with_an_ip_address_is_refused() {
    let (platform, tenant) = platform_and_tenant();
    let (crt, _) = hand_signed_now(
        &tenant,
        vec![dns("ok.h49.quangnam.gov.vn"), SanType::IpAddress("10.1.2.3".parse().unwrap())],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), "ok.h49.quangnam.gov.vn", now()));
    assert!(matches!(e, webpki::Error::NameConstraintViolation), "{e:?}");
}

#[test]
fn the_platform_root_constrains_tenant_cas_too() {
    let platform = platform();
    // A tenant CA for a domain outside the base domain, made by hand with the platform key.
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("rogue tenant CA", "rogue", None);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.serial_number = Some(random_serial().unwrap());
    params.not_before = now() - Duration::HOUR;
    params.not_after = now() + Duration::DAY;
    params.name_constraints = crate::authority::name_constraints(&["example.org".to_owned()]);
    let rogue_cert = params.signed_by(&key, &platform.issuer).unwrap();
    let rogue =
        CertificateAuthority::from_pem(rogue_cert.pem().as_bytes(), key.serialize_pem().as_bytes(), now()).unwrap();
    let (crt, _) = hand_signed_now(&rogue, vec![dns("www.example.org")], ExtendedKeyUsagePurpose::ServerAuth);
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), "www.example.org", now()));
    assert!(matches!(e, webpki::Error::NameConstraintViolation), "{e:?}");
}

#[test]
fn expired_and_not_yet_valid_leaves_are_refused() {
    let (platform, tenant) = platform_and_tenant();
    let t = now();
    let host = "ok.h49.quangnam.gov.vn";
    let (crt, _) = hand_signed_leaf(
        &tenant,
        vec![dns(host)],
        ExtendedKeyUsagePurpose::ServerAuth,
        t - Duration::DAY,
        t - Duration::HOUR,
    );
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), host, t));
    assert!(matches!(e, webpki::Error::CertExpired { .. }), "{e:?}");
    let (crt, _) = hand_signed_leaf(
        &tenant,
        vec![dns(host)],
        ExtendedKeyUsagePurpose::ServerAuth,
        t + Duration::HOUR,
        t + Duration::DAY,
    );
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), host, t));
    assert!(matches!(e, webpki::Error::CertNotValidYet { .. }), "{e:?}");
    // An issued leaf, checked after its notAfter.
    let crt = server_leaf(&tenant, &[host]);
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&platform), host, t + Duration::days(91)));
    assert!(matches!(e, webpki::Error::CertExpired { .. }), "{e:?}");
}

#[test]
fn a_foreign_ca_is_refused() {
    let (_, tenant) = platform_and_tenant();
    let foreign_root = platform();
    let crt = server_leaf(&tenant, &[DOMAIN]);
    let e = webpki_error(verify_server_chain(&chain(&crt), &trust(&foreign_root), DOMAIN, now()));
    assert!(matches!(e, webpki::Error::UnknownIssuer), "{e:?}");
}

#[test]
fn leaves_are_backdated_randomly_numbered_and_not_cas() {
    let (_, tenant) = platform_and_tenant();
    let t = now();
    let a = tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), t)
        .unwrap();
    let b = tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), t)
        .unwrap();
    assert_ne!(a.serial(), b.serial());
    assert_eq!(a.serial().len(), 32, "16 bytes");
    assert_eq!(a.not_before(), t.replace_nanosecond(0).unwrap() - Duration::minutes(5));
    assert_eq!(a.not_after(), t.replace_nanosecond(0).unwrap() + Duration::days(90));
    let der = certificates_from_pem("tls.crt", a.leaf_pem().as_bytes()).unwrap().remove(0);
    let cert = parse_certificate("tls.crt", &der).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert_eq!(cert.raw_serial().len(), 16);
    assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), DOMAIN);
}

#[test]
fn a_client_certificate_verifies_as_a_client_with_its_uri_identity() {
    let (platform, tenant) = platform_and_tenant();
    let issued = tenant
        .issue_client_certificate(&client_request(&tenant, "land-records"), &IssuancePolicy::default(), now())
        .unwrap();
    let chain = chain(issued.chain_pem());
    let identity = verify_client_chain(&chain, &trust(&platform), now()).unwrap();
    assert_eq!(identity.uri(), "spiffe://quangnam.gov.vn/agency/H49.12/dss/land-records");
    assert_eq!(identity.agency().agency_code(), AGENCY);
    // Not a server certificate: no DNS name, and serverAuth is missing.
    let e = webpki_error(verify_server_chain(&chain, &trust(&platform), DOMAIN, now()));
    assert!(matches!(e, webpki::Error::RequiredEkuNotFoundContext(_)), "{e:?}");
    // And a server certificate is not a client certificate.
    let server = server_leaf(&tenant, &[DOMAIN]);
    let e = webpki_error(verify_client_chain(&self::chain(&server), &trust(&platform), now()));
    assert!(matches!(e, webpki::Error::RequiredEkuNotFoundContext(_)), "{e:?}");
}

#[test]
fn client_identities_are_bound_to_the_issuing_agency() {
    let (platform, tenant) = platform_and_tenant();
    let other = AgencyIdentity::new(BASE, "H49.13").unwrap();
    // Issuance refuses another agency's identity...
    let err = tenant
        .issue_client_certificate(
            &ClientCertificateRequest { identity: other.workload("dss", "x").unwrap() },
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap_err();
    assert_eq!(err.label(), "IdentityOutsideAgency", "{err}");
    // ...and the platform CA issues no agency identities at all.
    let err = platform
        .issue_client_certificate(&client_request(&tenant, "x"), &IssuancePolicy::default(), now())
        .unwrap_err();
    assert_eq!(err.label(), "IssuerNotPermitted");

    // A hand-signed certificate claiming another agency's identity: webpki alone accepts it (its
    // name constraints say nothing about URIs)...
    let forged = "spiffe://quangnam.gov.vn/agency/H49.13/dss/x";
    let (crt, _) = hand_signed_now(&tenant, vec![uri(forged)], ExtendedKeyUsagePurpose::ClientAuth);
    let chain = chain(&crt);
    let anchors = trust(&platform);
    let anchor_list = anchors.anchors().unwrap();
    let end_entity = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    let time =
        rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now().unix_timestamp() as u64));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchor_list,
            &chain[1..],
            time,
            KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("webpki does not constrain URI SANs below a DNS-constrained CA");
    // ...and govpaas's client verification refuses it.
    let err = verify_client_chain(&chain, &anchors, now()).unwrap_err();
    assert_eq!(err.label(), "IdentityOutsideAgency", "{err}");
}

/// The finding written down in docs/certificates.md: rustls-webpki 0.103 does not evaluate URI
/// name constraints; it fails closed, refusing every certificate with a URI SAN below a CA that has
/// a URI constraint, matching or not.
#[test]
fn webpki_fails_closed_on_uri_name_constraints() {
    let platform = platform();
    let agency = AgencyIdentity::new(BASE, AGENCY).unwrap();
    let policy = IssuancePolicy::default();
    for uri_constraint in [
        // RFC 5280's form: a host name.
        "quangnam.gov.vn".to_owned(),
        // The prefix govpaas would want.
        format!("{}/", agency.uri()),
    ] {
        let tenant = tenant_with_uri_constraint(&platform, &agency, &uri_constraint);
        // A server certificate (DNS only) still verifies: the URI subtree does not affect DNS names.
        let server = tenant.issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &policy, now()).unwrap();
        verify_server_chain(&chain(server.chain_pem()), &trust(&platform), DOMAIN, now()).unwrap();
        // A client certificate whose URI matches the permitted subtree is refused all the same.
        let client = tenant
            .issue_client_certificate(
                &ClientCertificateRequest { identity: agency.workload("dss", "x").unwrap() },
                &policy,
                now(),
            )
            .unwrap();
        let e = webpki_error(verify_client_chain(&chain(client.chain_pem()), &trust(&platform), now()));
        assert!(matches!(e, webpki::Error::NameConstraintViolation), "{uri_constraint}: {e:?}");
    }
}

/// A tenant CA like govpaas's but whose name constraints also permit a URI subtree (rcgen cannot
/// express one, so the extension is DER-encoded here).
fn tenant_with_uri_constraint(
    platform: &CertificateAuthority,
    agency: &AgencyIdentity,
    uri_subtree: &str,
) -> CertificateAuthority {
    let constraints = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_tagged_implicit(yasna::Tag::context(2), |w| w.write_ia5_string(DOMAIN))
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(uri_subtree))
                    });
                })
            })
        })
    });
    let mut extension = CustomExtension::from_oid_content(&[2, 5, 29, 30], constraints);
    extension.set_criticality(true);
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("tenant CA with URI constraint", "test", Some(AGENCY));
    params.subject_alt_names = vec![uri(&agency.uri())];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.serial_number = Some(random_serial().unwrap());
    params.not_before = now() - Duration::HOUR;
    params.not_after = now() + Duration::days(30);
    params.custom_extensions = vec![extension];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &platform.issuer).unwrap();
    CertificateAuthority::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), now()).unwrap()
}

#[test]
fn a_document_signing_certificate_is_for_signing_only() {
    let (platform, tenant) = platform_and_tenant();
    let request = SigningCertificateRequest {
        identity: tenant.agency().unwrap().workload("documentservice", "van-thu").unwrap(),
        signer_name: "Văn thư Sở Tài nguyên và Môi trường".to_owned(),
    };
    let issued = tenant.issue_signing_certificate(&request, &IssuancePolicy::default(), now()).unwrap();
    assert_eq!(issued.not_after() - issued.not_before(), Duration::days(365) + Duration::minutes(5));
    let chain = chain(issued.chain_pem());
    verify_signing_chain(&chain, &trust(&platform), now()).unwrap();

    let cert = parse_certificate("tls.crt", &chain[0]).unwrap();
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.non_repudiation() && !ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(!eku.server_auth && !eku.client_auth && !eku.email_protection);
    let expected_oid = x509_parser::oid_registry::Oid::from(DOCUMENT_SIGNING_EKU).unwrap();
    assert_eq!(eku.other, vec![expected_oid]);
    assert_eq!(
        cert.subject().iter_common_name().next().unwrap().as_str().unwrap(),
        "Văn thư Sở Tài nguyên và Môi trường"
    );

    // Not usable for TLS in either direction.
    let e = webpki_error(verify_client_chain(&chain, &trust(&platform), now()));
    assert!(matches!(e, webpki::Error::RequiredEkuNotFoundContext(_)), "{e:?}");
    // And a client certificate is not a signing certificate.
    let client =
        tenant.issue_client_certificate(&client_request(&tenant, "x"), &IssuancePolicy::default(), now()).unwrap();
    let err = verify_signing_chain(&self::chain(client.chain_pem()), &trust(&platform), now()).unwrap_err();
    assert!(matches!(err, Error::ChainInvalid(_) | Error::UsageMismatch { .. }), "{err}");
}

//! In-memory rustls handshakes built from the Secrets govpaas writes.

use crate::testing::*;
use crate::tls::{handshake_ok, mutual_handshake_ok};
use crate::{
    CertificateAuthority, ClientCertificateRequest, IssuancePolicy, IssuedCertificate, KeyAlgorithm,
    ServerCertificateRequest, TlsSecretData,
};

fn server_secret(tenant: &CertificateAuthority, platform: &CertificateAuthority) -> TlsSecretData {
    tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), now())
        .unwrap()
        .into_tls_secret(platform.certificate_pem())
}

fn client(tenant: &CertificateAuthority) -> IssuedCertificate {
    tenant
        .issue_client_certificate(
            &ClientCertificateRequest { identity: tenant.agency().unwrap().workload("dss", "land-records").unwrap() },
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap()
}

#[test]
fn a_server_built_from_its_secret_is_trusted_through_the_bundle() {
    let (platform, tenant) = platform_and_tenant();
    let secret = server_secret(&tenant, &platform);
    let entries = secret.entries();
    assert_eq!(entries.map(|(k, _)| k), ["tls.crt", "tls.key", "ca.crt"]);
    assert_eq!(TlsSecretData::SECRET_TYPE, "kubernetes.io/tls");
    let outcome =
        handshake_ok(secret.tls_crt.as_bytes(), secret.tls_key.expose().as_bytes(), secret.ca_crt.as_bytes(), DOMAIN)
            .unwrap();
    assert_eq!(outcome.protocol, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(outcome.server_chain_len, 2);
    assert_eq!(outcome.client_chain_len, 0);
}

#[test]
fn handshakes_fail_for_a_foreign_bundle_or_another_name() {
    let (platform, tenant) = platform_and_tenant();
    let secret = server_secret(&tenant, &platform);
    let foreign = platform_at(&IssuancePolicy::default(), now());
    let err = handshake_ok(
        secret.tls_crt.as_bytes(),
        secret.tls_key.expose().as_bytes(),
        foreign.certificate_pem().as_bytes(),
        DOMAIN,
    )
    .unwrap_err();
    assert_eq!(err.label(), "Tls");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let err = handshake_ok(
        secret.tls_crt.as_bytes(),
        secret.tls_key.expose().as_bytes(),
        secret.ca_crt.as_bytes(),
        "other.h49.quangnam.gov.vn",
    )
    .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // A Secret whose key belongs to another certificate cannot even configure a server.
    let other = server_secret(&tenant, &platform);
    let err =
        handshake_ok(secret.tls_crt.as_bytes(), other.tls_key.expose().as_bytes(), secret.ca_crt.as_bytes(), DOMAIN)
            .unwrap_err();
    assert_eq!(err.label(), "Tls", "{err}");
}

#[test]
fn mutual_tls_accepts_the_agency_client_certificate() {
    let (platform, tenant) = platform_and_tenant();
    let server = server_secret(&tenant, &platform);
    let client = client(&tenant);
    let outcome = mutual_handshake_ok(
        (server.tls_crt.as_bytes(), server.tls_key.expose().as_bytes()),
        (client.chain_pem().as_bytes(), client.private_key_pem().expose().as_bytes()),
        server.ca_crt.as_bytes(),
        DOMAIN,
    )
    .unwrap();
    assert_eq!(outcome.client_chain_len, 2);
}

#[test]
fn mutual_tls_refuses_missing_foreign_and_wrong_kind_client_certificates() {
    let (platform, tenant) = platform_and_tenant();
    let server = server_secret(&tenant, &platform);
    let server_pair = (server.tls_crt.as_bytes(), server.tls_key.expose().as_bytes());

    // A client certificate from another platform's tenant.
    let foreign_platform = platform_at(&IssuancePolicy::default(), now());
    let foreign_tenant = tenant_of(&foreign_platform, AGENCY, DOMAIN);
    let foreign = client(&foreign_tenant);
    let err = mutual_handshake_ok(
        server_pair,
        (foreign.chain_pem().as_bytes(), foreign.private_key_pem().expose().as_bytes()),
        server.ca_crt.as_bytes(),
        DOMAIN,
    )
    .unwrap_err();
    assert_eq!(err.label(), "Tls", "{err}");

    // A server certificate offered as a client certificate (no clientAuth).
    let err = mutual_handshake_ok(
        server_pair,
        (server.tls_crt.as_bytes(), server.tls_key.expose().as_bytes()),
        server.ca_crt.as_bytes(),
        DOMAIN,
    )
    .unwrap_err();
    assert_eq!(err.label(), "Tls", "{err}");

    // No client certificate at all.
    let trust = crate::TrustAnchors::from_pem(server.ca_crt.as_bytes()).unwrap();
    let err = crate::tls::handshake(
        crate::tls::client_config(&trust, None).unwrap(),
        crate::tls::server_config(server_pair.0, server_pair.1, Some(&trust)).unwrap(),
        DOMAIN,
    )
    .unwrap_err();
    assert_eq!(err.label(), "Tls", "{err}");
}

#[test]
fn ed25519_and_p384_certificates_work_in_rustls() {
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP384] {
        let policy = IssuancePolicy { ca_key_algorithm: alg, leaf_key_algorithm: alg, ..IssuancePolicy::default() };
        let platform = platform_at(&policy, now());
        let tenant = platform.issue_tenant_ca(&tenant_request(AGENCY, DOMAIN), &policy, now()).unwrap();
        let leaf = tenant.issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &policy, now()).unwrap();
        handshake_ok(
            leaf.chain_pem().as_bytes(),
            leaf.private_key_pem().expose().as_bytes(),
            platform.certificate_pem().as_bytes(),
            DOMAIN,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
}

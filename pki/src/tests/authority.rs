//! Generating, importing and loading CAs; issuing tenant CAs.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use crate::pem::{certificates_from_pem, parse_certificate};
use crate::testing::*;
use crate::verify::verify_server_chain;
use crate::{
    CertificateAuthority, IssuancePolicy, KeyAlgorithm, PlatformCaRequest, ServerCertificateRequest, TenantCaRequest,
    TrustAnchors, generate_platform_ca,
};

fn parsed(pem: &str) -> Vec<u8> {
    certificates_from_pem("tls.crt", pem.as_bytes()).unwrap().remove(0).to_vec()
}

/// A CA certificate made directly with rcgen, as another CA (the government's) would make it.
fn foreign_ca(
    name: &str,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "VN");
    params.distinguished_name.push(DnType::OrganizationName, "Ban Cơ yếu Chính phủ");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn ca_usages() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
}

#[test]
fn generated_platform_ca_is_a_constrained_root_for_every_key_type() {
    for alg in KeyAlgorithm::GENERATABLE {
        let policy = IssuancePolicy { ca_key_algorithm: alg, ..IssuancePolicy::default() };
        let t = now();
        let ca = platform_at(&policy, t);
        assert_eq!(ca.key_algorithm(), alg);
        assert_eq!(ca.path_len(), Some(1));
        assert_eq!(ca.permitted_domains(), [BASE.to_owned()]);
        assert!(ca.agency().is_none());
        assert!(ca.subject().starts_with("govpaas platform CA "));
        assert_eq!(ca.organization(), "Trung tâm Dữ liệu tỉnh Quảng Nam");

        let der = parsed(ca.certificate_pem());
        let cert = parse_certificate("tls.crt", &der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(1));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let nc = cert.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        let permitted = nc.value.permitted_subtrees.as_ref().unwrap();
        assert!(matches!(permitted[0].base, GeneralName::DNSName(BASE)));
        assert_eq!(nc.value.excluded_subtrees.as_ref().unwrap().len(), 2, "IPv4 and IPv6 excluded");
        cert.verify_signature(None).expect("self-signed");
        assert_eq!(ca.not_before(), t.replace_nanosecond(0).unwrap() - Duration::minutes(5));
        assert_eq!(ca.not_after(), t.replace_nanosecond(0).unwrap() + Duration::days(3650));
    }
}

#[test]
fn an_unconstrained_root_can_be_asked_for() {
    let request = PlatformCaRequest { permitted_domains: vec![], ..PlatformCaRequest::new(BASE, "") };
    let ca = generate_platform_ca(&request, &IssuancePolicy::default(), now()).unwrap();
    assert!(ca.permitted_domains().is_empty());
    assert_eq!(ca.organization(), BASE, "organisation defaults to the base domain");
    let der = parsed(ca.certificate_pem());
    assert!(parse_certificate("tls.crt", &der).unwrap().name_constraints().unwrap().is_none());
}

#[test]
fn generated_cas_round_trip_through_their_secret() {
    let (platform, tenant) = platform_and_tenant();
    let t = now();
    let loaded = CertificateAuthority::from_pem(
        platform.certificate_pem().as_bytes(),
        platform.private_key_pem().expose().as_bytes(),
        t,
    )
    .unwrap();
    assert_eq!(loaded.fingerprint(), platform.fingerprint());
    assert_eq!(loaded.not_after(), platform.not_after());
    assert_eq!(loaded.permitted_domains(), platform.permitted_domains());
    assert_eq!(loaded.path_len(), Some(1));

    let loaded_tenant = CertificateAuthority::from_pem(
        tenant.certificate_pem().as_bytes(),
        tenant.private_key_pem().expose().as_bytes(),
        t,
    )
    .unwrap();
    assert_eq!(loaded_tenant.agency().unwrap().agency_code(), AGENCY);
    assert_eq!(loaded_tenant.agency().unwrap().base_domain(), BASE);
    assert_eq!(loaded_tenant.permitted_domains(), [DOMAIN.to_owned()]);
    assert_eq!(loaded_tenant.organization(), "Sở Tài nguyên và Môi trường tỉnh Quảng Nam");

    // A reloaded CA issues leaves that chain exactly like the original's.
    let leaf = loaded_tenant
        .issue_server_certificate(
            &ServerCertificateRequest::new(["portal.h49.quangnam.gov.vn"]),
            &IssuancePolicy::default(),
            t,
        )
        .unwrap();
    verify_server_chain(&chain(leaf.chain_pem()), &trust(&loaded), "portal.h49.quangnam.gov.vn", t).unwrap();
}

#[test]
fn tenant_ca_has_path_length_zero_name_constraints_and_the_agency_identity() {
    let (platform, tenant) = platform_and_tenant();
    let der = parsed(tenant.certificate_pem());
    let cert = parse_certificate("tls.crt", &der).unwrap();
    assert_eq!(cert.basic_constraints().unwrap().unwrap().value.path_len_constraint, Some(0));
    let nc = cert.name_constraints().unwrap().unwrap().value;
    let permitted = nc.permitted_subtrees.as_ref().unwrap();
    assert_eq!(permitted.len(), 1);
    assert!(matches!(permitted[0].base, GeneralName::DNSName(DOMAIN)));
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert!(matches!(san.general_names[0], GeneralName::URI("spiffe://quangnam.gov.vn/agency/H49.12")));
    let ou = cert.subject().iter_organizational_unit().next().unwrap().as_str().unwrap();
    assert_eq!(ou, AGENCY);
    // Issued by the platform CA, with an authority key identifier.
    let platform_der = parsed(platform.certificate_pem());
    let platform_cert = parse_certificate("tls.crt", &platform_der).unwrap();
    cert.verify_signature(Some(platform_cert.public_key())).unwrap();
    assert!(cert.iter_extensions().any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER));
    assert!(tenant.subject().starts_with("govpaas H49.12 CA "), "{}", tenant.subject());
    assert!(tenant.subject().chars().count() <= 64);
    assert_ne!(tenant.subject(), tenant_of(&platform, AGENCY, DOMAIN).subject(), "every generation is named apart");
}

#[test]
fn a_tenant_ca_knows_whether_it_still_fits_its_tenant() {
    let (platform, tenant) = platform_and_tenant();
    assert!(tenant.is_for(&tenant_request(AGENCY, DOMAIN)));
    assert!(tenant.is_for(&tenant_request(AGENCY, "H49.QuangNam.gov.vn")), "case does not matter");
    assert!(!tenant.is_for(&tenant_request("H49.13", DOMAIN)));
    assert!(!tenant.is_for(&tenant_request(AGENCY, "x.h49.quangnam.gov.vn")));
    assert!(!tenant.is_for(&TenantCaRequest { base_domain: "hue.gov.vn".into(), ..tenant_request(AGENCY, DOMAIN) }));
    assert!(!platform.is_for(&tenant_request(AGENCY, DOMAIN)));
}

#[test]
fn tenant_ca_requests_are_checked() {
    let platform = platform();
    let policy = IssuancePolicy::default();
    let t = now();
    let err = platform.issue_tenant_ca(&tenant_request(AGENCY, "h49.danang.gov.vn"), &policy, t).unwrap_err();
    assert_eq!(err.label(), "NameOutsideDomain", "{err}");
    let err = platform.issue_tenant_ca(&tenant_request("h49", DOMAIN), &policy, t).unwrap_err();
    assert_eq!(err.label(), "InvalidName");
    let err = platform.issue_tenant_ca(&tenant_request(AGENCY, "*.quangnam.gov.vn"), &policy, t).unwrap_err();
    assert_eq!(err.label(), "InvalidName");
    let tenant = tenant_of(&platform, AGENCY, DOMAIN);
    let err = tenant.issue_tenant_ca(&tenant_request("H49.12.01", "x.h49.quangnam.gov.vn"), &policy, t).unwrap_err();
    assert_eq!(err.label(), "IssuerNotPermitted");
}

#[test]
fn tenant_ca_never_outlives_the_platform_ca() {
    let policy = IssuancePolicy::default();
    // A platform CA generated almost ten years ago has a few days left.
    let t = now();
    let platform = platform_at(&policy, t - Duration::days(3650) + Duration::days(10));
    let tenant = platform.issue_tenant_ca(&tenant_request(AGENCY, DOMAIN), &policy, t).unwrap();
    assert_eq!(tenant.not_after(), platform.not_after());
    let leaf = tenant.issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &policy, t).unwrap();
    assert_eq!(leaf.not_after(), platform.not_after());
}

#[test]
fn import_refuses_a_certificate_that_is_not_a_ca() {
    let (_, tenant) = platform_and_tenant();
    let leaf = tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), now())
        .unwrap();
    let err = CertificateAuthority::import_platform_ca(
        leaf.chain_pem().as_bytes(),
        leaf.private_key_pem().expose().as_bytes(),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.label(), "NotACertificateAuthority", "{err}");
}

#[test]
fn import_refuses_a_ca_whose_key_usage_forbids_signing_certificates() {
    let key = KeyPair::generate().unwrap();
    let t = now();
    let params = foreign_ca(
        "CA without keyCertSign",
        IsCa::Ca(BasicConstraints::Unconstrained),
        vec![KeyUsagePurpose::DigitalSignature],
        t - Duration::DAY,
        t + Duration::days(365),
    );
    let cert = params.self_signed(&key).unwrap();
    let err =
        CertificateAuthority::import_platform_ca(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), t).unwrap_err();
    assert_eq!(err.label(), "NotACertificateAuthority");
    assert!(err.to_string().contains("keyCertSign"), "{err}");
}

#[test]
fn import_refuses_expired_and_not_yet_valid_cas() {
    let policy = IssuancePolicy::default();
    let t = now();
    let old = platform_at(&policy, t - Duration::days(3651));
    let err = CertificateAuthority::import_platform_ca(
        old.certificate_pem().as_bytes(),
        old.private_key_pem().expose().as_bytes(),
        t,
    )
    .unwrap_err();
    assert_eq!(err.label(), "Expired", "{err}");
    let future = platform_at(&policy, t + Duration::days(2));
    let err = CertificateAuthority::import_platform_ca(
        future.certificate_pem().as_bytes(),
        future.private_key_pem().expose().as_bytes(),
        t,
    )
    .unwrap_err();
    assert_eq!(err.label(), "NotYetValid", "{err}");
}

#[test]
fn import_refuses_a_key_that_does_not_match() {
    let a = platform();
    let b = platform();
    let err = CertificateAuthority::import_platform_ca(
        a.certificate_pem().as_bytes(),
        b.private_key_pem().expose().as_bytes(),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.label(), "KeyMismatch");
    // A key of another type is a mismatch too, not a panic.
    let ed = KeyAlgorithm::Ed25519.generate().unwrap();
    let err =
        CertificateAuthority::import_platform_ca(a.certificate_pem().as_bytes(), ed.serialize_pem().as_bytes(), now())
            .unwrap_err();
    assert_eq!(err.label(), "KeyMismatch");
}

#[test]
fn import_refuses_garbage_precisely() {
    let a = platform();
    let key = a.private_key_pem().expose().as_bytes();
    let crt = a.certificate_pem().as_bytes();
    let cases: [(&[u8], &[u8], &str); 5] = [
        (b"", key, "InvalidPem"),
        (b"\x00\xff garbage", key, "InvalidPem"),
        (crt, b"not a key", "InvalidPem"),
        (key, crt, "InvalidPem"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n", key, "InvalidCertificate"),
    ];
    for (crt, key, label) in cases {
        let err = CertificateAuthority::import_platform_ca(crt, key, now()).unwrap_err();
        assert_eq!(err.label(), label, "{err}");
    }
}

#[test]
fn import_refuses_a_tenant_ca_or_a_ca_without_room_for_tenants() {
    let (_, tenant) = platform_and_tenant();
    let err = CertificateAuthority::import_platform_ca(
        tenant.certificate_pem().as_bytes(),
        tenant.private_key_pem().expose().as_bytes(),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.label(), "NotACertificateAuthority");

    let key = KeyPair::generate().unwrap();
    let t = now();
    let params = foreign_ca(
        "CA with pathLen 0",
        IsCa::Ca(BasicConstraints::Constrained(0)),
        ca_usages(),
        t - Duration::DAY,
        t + Duration::days(365),
    );
    let cert = params.self_signed(&key).unwrap();
    let err =
        CertificateAuthority::import_platform_ca(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), t).unwrap_err();
    assert_eq!(err.label(), "PathLengthExhausted");
}

/// The province's case: the government CA (a P-384 root here) issued the province an RSA
/// intermediate; govpaas imports it and issues tenant CAs and leaves below it.
#[test]
fn an_imported_rsa_intermediate_of_the_government_ca_issues_verifiable_chains() {
    let t = now();
    let gov_key = KeyAlgorithm::EcdsaP384.generate().unwrap();
    let gov_params = foreign_ca(
        "Government Root CA (test)",
        IsCa::Ca(BasicConstraints::Unconstrained),
        ca_usages(),
        t - Duration::days(365),
        t + Duration::days(3650),
    );
    let gov_cert = gov_params.self_signed(&gov_key).unwrap();
    let gov = rcgen::Issuer::new(gov_params, gov_key);

    let province_key = KeyPair::from_pem(RSA_KEY_PEM).unwrap();
    let mut province_params = foreign_ca(
        "UBND tỉnh Quảng Nam - govpaas",
        IsCa::Ca(BasicConstraints::Constrained(1)),
        ca_usages(),
        t - Duration::days(30),
        t + Duration::days(1825),
    );
    province_params.use_authority_key_identifier_extension = true;
    province_params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("quangnam.gov.vn".to_owned())],
        excluded_subtrees: vec![],
    });
    let province_cert = province_params.signed_by(&province_key, &gov).unwrap();

    let platform =
        CertificateAuthority::import_platform_ca(province_cert.pem().as_bytes(), RSA_KEY_PEM.as_bytes(), t).unwrap();
    assert_eq!(platform.key_algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(platform.permitted_domains(), ["quangnam.gov.vn".to_owned()]);

    let policy = IssuancePolicy::default();
    let err = platform.issue_tenant_ca(&tenant_request(AGENCY, "h49.hue.gov.vn"), &policy, t).unwrap_err();
    assert_eq!(err.label(), "NameOutsideDomain", "the import's own constraints are honoured early");
    let tenant = platform.issue_tenant_ca(&tenant_request(AGENCY, DOMAIN), &policy, t).unwrap();
    let leaf = tenant.issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &policy, t).unwrap();

    // Trusting the imported intermediate (govpaas's bundle)...
    verify_server_chain(&chain(leaf.chain_pem()), &trust(&platform), DOMAIN, t).unwrap();
    // ...or the government root, given the intermediate in the chain.
    let mut full = chain(leaf.chain_pem());
    full.push(platform.certificate_der().clone());
    let gov_trust = TrustAnchors::from_pem(gov_cert.pem().as_bytes()).unwrap();
    verify_server_chain(&full, &gov_trust, DOMAIN, t).unwrap();
}

#[test]
fn debug_output_never_contains_key_material() {
    let (platform, tenant) = platform_and_tenant();
    let leaf = tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), now())
        .unwrap();
    let key_body: String = leaf.private_key_pem().expose().lines().nth(1).unwrap().to_owned();
    let platform_key_body: String = platform.private_key_pem().expose().lines().nth(1).unwrap().to_owned();
    let outputs = [format!("{platform:?}"), format!("{tenant:?}"), format!("{leaf:?}")];
    for out in &outputs {
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        assert!(!out.contains(&key_body) && !out.contains(&platform_key_body));
        assert!(out.contains("<redacted>"));
    }
    let secret = leaf.into_tls_secret(platform.certificate_pem());
    let out = format!("{secret:?}");
    assert!(!out.contains("PRIVATE KEY") && out.contains("<redacted>"));
}

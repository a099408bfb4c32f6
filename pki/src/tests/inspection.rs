//! Reading back leaf Secrets: healthy, stale, hand-edited, corrupted, garbage.

use time::Duration;

use crate::testing::*;
use crate::{
    CertificateAuthority, ClientCertificateRequest, Error, ExpectedLeaf, IssuancePolicy, IssuedCertificate, LeafKind,
    ServerCertificateRequest, SigningCertificateRequest, TrustAnchors, WorkloadIdentity, inspect_leaf,
};

struct Fixture {
    platform: CertificateAuthority,
    tenant: CertificateAuthority,
    trust: TrustAnchors,
    hosts: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let (platform, tenant) = platform_and_tenant();
        let trust = trust(&platform);
        Fixture { platform, tenant, trust, hosts: vec!["portal.h49.quangnam.gov.vn".to_owned(), DOMAIN.to_owned()] }
    }

    fn server(&self) -> IssuedCertificate {
        self.tenant
            .issue_server_certificate(
                &ServerCertificateRequest { dns_names: self.hosts.clone() },
                &IssuancePolicy::default(),
                now(),
            )
            .unwrap()
    }

    fn expected(&self) -> ExpectedLeaf<'_> {
        ExpectedLeaf {
            kind: LeafKind::Server,
            issuer: &self.tenant,
            trust: &self.trust,
            dns_names: &self.hosts,
            identity: None,
        }
    }
}

fn label(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    result.expect_err("expected a refusal").label()
}

#[test]
fn a_healthy_secret_is_accepted_with_its_times() {
    let f = Fixture::new();
    let issued = f.server();
    let inspected =
        inspect_leaf(issued.chain_pem().as_bytes(), issued.private_key_pem().expose().as_bytes(), &f.expected(), now())
            .unwrap();
    assert_eq!(inspected.times.not_after, issued.not_after());
    assert_eq!(inspected.times.not_before, issued.not_before());
    assert_eq!(inspected.serial, issued.serial());
    // Host order and case in the desired list do not matter.
    let reordered = vec![DOMAIN.to_uppercase(), "portal.h49.quangnam.gov.vn".to_owned()];
    let expected = ExpectedLeaf { dns_names: &reordered, ..f.expected() };
    inspect_leaf(issued.chain_pem().as_bytes(), issued.private_key_pem().expose().as_bytes(), &expected, now())
        .unwrap();
}

#[test]
fn a_key_that_does_not_match_is_detected() {
    let f = Fixture::new();
    let a = f.server();
    let b = f.server();
    assert_eq!(
        label(inspect_leaf(a.chain_pem().as_bytes(), b.private_key_pem().expose().as_bytes(), &f.expected(), now())),
        "KeyMismatch"
    );
}

#[test]
fn a_leaf_of_another_issuer_is_detected() {
    let f = Fixture::new();
    // Another tenant's CA under the same platform.
    let other = tenant_of(&f.platform, "H49.13", "h49-13.quangnam.gov.vn");
    let foreign = other
        .issue_server_certificate(
            &ServerCertificateRequest::new(["x.h49-13.quangnam.gov.vn"]),
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap();
    assert_eq!(
        label(inspect_leaf(
            foreign.chain_pem().as_bytes(),
            foreign.private_key_pem().expose().as_bytes(),
            &f.expected(),
            now()
        )),
        "IssuerMismatch"
    );
    // The tenant's successor CA after a rotation: same agency, same name pattern, new key.
    let issued = f.server();
    let successor = tenant_of(&f.platform, AGENCY, DOMAIN);
    let expected = ExpectedLeaf { issuer: &successor, ..f.expected() };
    let err =
        inspect_leaf(issued.chain_pem().as_bytes(), issued.private_key_pem().expose().as_bytes(), &expected, now())
            .unwrap_err();
    assert_eq!(err.label(), "IssuerMismatch");
    assert!(!err.is_corruption(), "a stale issuer is expected during rotation");
}

#[test]
fn a_chain_without_its_intermediate_is_detected() {
    let f = Fixture::new();
    let issued = f.server();
    let err =
        inspect_leaf(issued.leaf_pem().as_bytes(), issued.private_key_pem().expose().as_bytes(), &f.expected(), now())
            .unwrap_err();
    assert_eq!(err.label(), "InvalidCertificate", "{err}");
    assert!(err.is_corruption());
    // Or with the root appended where the tenant CA should be.
    let wrong = format!("{}{}", issued.leaf_pem(), f.platform.certificate_pem());
    assert_eq!(
        label(inspect_leaf(wrong.as_bytes(), issued.private_key_pem().expose().as_bytes(), &f.expected(), now())),
        "InvalidCertificate"
    );
}

#[test]
fn changed_names_are_reported_precisely() {
    let f = Fixture::new();
    let issued = f.server();
    let wanted = vec![DOMAIN.to_owned(), "new.h49.quangnam.gov.vn".to_owned()];
    let expected = ExpectedLeaf { dns_names: &wanted, ..f.expected() };
    match inspect_leaf(issued.chain_pem().as_bytes(), issued.private_key_pem().expose().as_bytes(), &expected, now()) {
        Err(Error::NamesMismatch { missing, unexpected }) => {
            assert_eq!(missing, ["new.h49.quangnam.gov.vn"]);
            assert_eq!(unexpected, ["portal.h49.quangnam.gov.vn"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expiry_and_clock_are_checked() {
    let f = Fixture::new();
    let issued = f.server();
    let crt = issued.chain_pem().as_bytes();
    let key = issued.private_key_pem().expose().as_bytes();
    assert_eq!(label(inspect_leaf(crt, key, &f.expected(), now() + Duration::days(91))), "Expired");
    assert_eq!(label(inspect_leaf(crt, key, &f.expected(), now() - Duration::HOUR)), "NotYetValid");
}

#[test]
fn the_wrong_kind_of_certificate_is_detected() {
    let f = Fixture::new();
    let identity: WorkloadIdentity = f.tenant.agency().unwrap().workload("dss", "x").unwrap();
    let signing = f
        .tenant
        .issue_signing_certificate(
            &SigningCertificateRequest { identity: identity.clone(), signer_name: String::new() },
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap();
    let as_client = ExpectedLeaf { kind: LeafKind::Client, dns_names: &[], identity: Some(&identity), ..f.expected() };
    let err =
        inspect_leaf(signing.chain_pem().as_bytes(), signing.private_key_pem().expose().as_bytes(), &as_client, now())
            .unwrap_err();
    assert_eq!(err.label(), "UsageMismatch", "{err}");

    let client = f
        .tenant
        .issue_client_certificate(
            &ClientCertificateRequest { identity: identity.clone() },
            &IssuancePolicy::default(),
            now(),
        )
        .unwrap();
    inspect_leaf(client.chain_pem().as_bytes(), client.private_key_pem().expose().as_bytes(), &as_client, now())
        .unwrap();
    let as_signing = ExpectedLeaf { kind: LeafKind::DocumentSigning, ..as_client };
    inspect_leaf(signing.chain_pem().as_bytes(), signing.private_key_pem().expose().as_bytes(), &as_signing, now())
        .unwrap();
    // A client certificate for another system of the same agency.
    let other = f.tenant.agency().unwrap().workload("dss", "y").unwrap();
    let expected = ExpectedLeaf { identity: Some(&other), ..as_client };
    assert_eq!(
        label(inspect_leaf(
            client.chain_pem().as_bytes(),
            client.private_key_pem().expose().as_bytes(),
            &expected,
            now()
        )),
        "NamesMismatch"
    );
}

#[test]
fn garbage_gets_a_precise_error() {
    let f = Fixture::new();
    let issued = f.server();
    let crt = issued.chain_pem().as_bytes();
    let key = issued.private_key_pem().expose().as_bytes();
    let truncated_crt = &crt[..crt.len() / 2];
    let body_start = crt.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut bad_base64 = crt.to_vec();
    bad_base64[body_start + 10] = b'!';
    let cases: Vec<(&[u8], &[u8], &str)> = vec![
        (b"", key, "InvalidPem"),
        (b"hello", key, "InvalidPem"),
        (&[0u8, 159, 146, 150], key, "InvalidPem"),
        (truncated_crt, key, "InvalidPem"),
        (&bad_base64, key, "InvalidPem"),
        (key, crt, "InvalidPem"),
        (crt, b"", "InvalidPem"),
        (crt, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "InvalidPrivateKey"),
        (b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", key, "InvalidCertificate"),
    ];
    for (i, (crt, key, want)) in cases.into_iter().enumerate() {
        let err = inspect_leaf(crt, key, &f.expected(), now()).unwrap_err();
        assert_eq!(err.label(), want, "case {i}: {err}");
        assert!(err.is_corruption(), "case {i}");
    }
}

/// Flip, truncate and splice the Secret's bytes in many places: never a panic, and never accepted
/// unless the change left the decoded certificate and key intact (base64 padding bits, line
/// breaks).
#[test]
fn mutated_secrets_never_panic_and_are_never_accepted_when_changed() {
    let f = Fixture::new();
    let issued = f.server();
    let crt = issued.chain_pem().as_bytes().to_vec();
    let key = issued.private_key_pem().expose().as_bytes().to_vec();
    let original_chain = chain(issued.chain_pem());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // xorshift64*: a fixed, reproducible sequence.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut refused = 0;
    for round in 0..600 {
        let (mut c, mut k) = (crt.clone(), key.clone());
        let target = if round % 3 == 0 { &mut k } else { &mut c };
        let pos = (next() as usize) % target.len();
        match round % 4 {
            0 => target[pos] ^= 1 << (next() % 8),
            1 => target.truncate(pos),
            2 => target[pos] = (next() % 256) as u8,
            _ => target.insert(pos, (next() % 256) as u8),
        }
        match inspect_leaf(&c, &k, &f.expected(), now()) {
            Err(_) => refused += 1,
            Ok(_) => {
                let decoded = crate::pem::certificates_from_pem("tls.crt", &c).unwrap();
                assert_eq!(decoded, original_chain, "round {round}: a changed certificate was accepted");
                let key_pair = crate::pem::key_from_pem("tls.key", &k).unwrap();
                assert_eq!(key_pair.serialize_pem().as_bytes(), key.as_slice(), "round {round}: a changed key");
            }
        }
    }
    assert!(refused > 500, "only {refused} of 600 mutations refused");
}

/// A CA Secret altered anywhere is refused, or (for a root, whose altered name makes it a
/// different, unsigned certificate) at least never mistaken for the original: its fingerprint
/// changes, and the controller compares fingerprints with the trust bundle's.
#[test]
fn mutated_ca_secrets_never_panic_and_are_never_taken_for_the_original() {
    let (platform, tenant) = platform_and_tenant();
    let mutate = |bytes: &[u8], pos: usize| {
        let mut b = bytes.to_vec();
        b[pos] = b[pos].wrapping_add(1);
        b
    };
    let decoded_same = |a: &[u8], b: &[u8]| {
        crate::pem::certificates_from_pem("tls.crt", a).ok() == crate::pem::certificates_from_pem("tls.crt", b).ok()
    };

    let crt = tenant.certificate_pem().as_bytes();
    let key = tenant.private_key_pem().expose().as_bytes();
    for pos in 0..crt.len() {
        let c = mutate(crt, pos);
        if CertificateAuthority::load_tenant_ca(&c, key, &platform, now()).is_ok() {
            assert!(decoded_same(&c, crt), "tenant CA certificate mutated at {pos} was accepted");
        }
    }
    for pos in 0..key.len() {
        let k = mutate(key, pos);
        if let Ok(ca) = CertificateAuthority::load_tenant_ca(crt, &k, &platform, now()) {
            assert_eq!(ca.private_key_pem().expose(), tenant.private_key_pem().expose(), "key mutated at {pos}");
        }
    }

    let crt = platform.certificate_pem().as_bytes();
    let key = platform.private_key_pem().expose().as_bytes();
    for pos in 0..crt.len() {
        let c = mutate(crt, pos);
        if let Ok(ca) = CertificateAuthority::from_pem(&c, key, now()) {
            assert!(
                decoded_same(&c, crt) || ca.fingerprint() != platform.fingerprint(),
                "root mutated at {pos} passed as the original"
            );
        }
    }
}

#[test]
fn a_tenant_ca_is_loaded_only_from_its_own_platform_ca() {
    let (platform, tenant) = platform_and_tenant();
    let crt = tenant.certificate_pem().as_bytes();
    let key = tenant.private_key_pem().expose().as_bytes();
    let loaded = CertificateAuthority::load_tenant_ca(crt, key, &platform, now()).unwrap();
    assert_eq!(loaded.fingerprint(), tenant.fingerprint());
    let other_platform = crate::testing::platform();
    assert_eq!(label(CertificateAuthority::load_tenant_ca(crt, key, &other_platform, now())), "IssuerMismatch");
    let p_crt = platform.certificate_pem().as_bytes();
    let p_key = platform.private_key_pem().expose().as_bytes();
    assert_eq!(label(CertificateAuthority::load_tenant_ca(p_crt, p_key, &platform, now())), "NotACertificateAuthority");
}

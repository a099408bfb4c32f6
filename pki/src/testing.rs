//! Fixtures for the certificate tests: a platform, tenants, and certificates signed "by hand"
//! (bypassing the issuance checks) to show what the verifier does with them.

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::pem::certificates_from_pem;
use super::policy::random_serial;
use super::{
    CertificateAuthority, IssuancePolicy, PlatformCaRequest, TenantCaRequest, TrustAnchors, generate_platform_ca,
};

pub(crate) const BASE: &str = "quangnam.gov.vn";
pub(crate) const AGENCY: &str = "H49.12";
pub(crate) const DOMAIN: &str = "h49.quangnam.gov.vn";

/// A 2048-bit RSA key made once with `openssl genpkey` for these tests only (ring cannot generate
/// RSA keys): it stands in for a CA key imported from elsewhere.
pub(crate) const RSA_KEY_PEM: &str = include_str!("testdata/rsa2048-test-only.pkcs8.pem");

/// Real time: the rustls handshakes check validity against the system clock.
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn platform_at(policy: &IssuancePolicy, at: OffsetDateTime) -> CertificateAuthority {
    generate_platform_ca(&PlatformCaRequest::new(BASE, "Trung tâm Dữ liệu tỉnh Quảng Nam"), policy, at).unwrap()
}

pub(crate) fn platform() -> CertificateAuthority {
    platform_at(&IssuancePolicy::default(), now())
}

pub(crate) fn tenant_request(code: &str, domain: &str) -> TenantCaRequest {
    TenantCaRequest {
        base_domain: BASE.to_owned(),
        agency_code: code.to_owned(),
        display_name: "Sở Tài nguyên và Môi trường tỉnh Quảng Nam".to_owned(),
        domain: domain.to_owned(),
    }
}

pub(crate) fn tenant_of(platform: &CertificateAuthority, code: &str, domain: &str) -> CertificateAuthority {
    platform.issue_tenant_ca(&tenant_request(code, domain), &IssuancePolicy::default(), now()).unwrap()
}

pub(crate) fn platform_and_tenant() -> (CertificateAuthority, CertificateAuthority) {
    let platform = platform();
    let tenant = tenant_of(&platform, AGENCY, DOMAIN);
    (platform, tenant)
}

pub(crate) fn trust(ca: &CertificateAuthority) -> TrustAnchors {
    TrustAnchors::from_pem(ca.certificate_pem().as_bytes()).unwrap()
}

pub(crate) fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    certificates_from_pem("tls.crt", pem.as_bytes()).unwrap()
}

/// A leaf signed directly with `issuer`'s key, with whatever names and usage the test wants: what
/// a compromised or buggy issuer could produce. Returns (`tls.crt`, `tls.key`).
pub(crate) fn hand_signed_leaf(
    issuer: &CertificateAuthority,
    names: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "hand-signed");
    params.subject_alt_names = names;
    params.serial_number = Some(random_serial().unwrap());
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer.issuer).unwrap();
    (format!("{}{}", cert.pem(), issuer.certificate_pem()), key.serialize_pem())
}

/// A hand-signed leaf valid from an hour ago for a day.
pub(crate) fn hand_signed_now(
    issuer: &CertificateAuthority,
    names: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let t = now();
    hand_signed_leaf(issuer, names, eku, t - Duration::HOUR, t + Duration::DAY)
}

pub(crate) fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

pub(crate) fn uri(name: &str) -> SanType {
    SanType::URI(name.try_into().unwrap())
}

//! A certificate authority that can sign: the platform CA (generated here, or imported from the
//! government CA) and, built by [`tenant_ca`](super::tenant_ca), each tenant's intermediate.
//!
//! A CA is stored as two PEM texts (`tls.crt`, `tls.key`) in a Secret of the operator's namespace;
//! [`CertificateAuthority::from_pem`] loads it back and refuses anything that is not a usable CA.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::identity::{self, AgencyIdentity};
use super::pem::{self, certificates_from_pem, key_from_pem, parse_certificate};
use super::policy::random_serial;
use super::{Error, IssuancePolicy, KeyAlgorithm, PrivateKeyPem, Result};

/// The longest value X.509 allows for a common or organisation name (`ub-common-name`).
const MAX_NAME_CHARS: usize = 64;

/// What a generated platform CA looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCaRequest {
    /// The platform's base domain (`quangnam.gov.vn`); also the SPIFFE trust domain.
    pub base_domain: String,
    /// The organisation operating the platform, UTF-8 (`Trung tâm Dữ liệu tỉnh Quảng Nam`).
    pub organization: String,
    /// DNS domains every certificate below this CA must lie in (a name constraint on the root).
    /// Empty leaves the root unconstrained; the tenants' own CAs are always constrained.
    pub permitted_domains: Vec<String>,
}

impl PlatformCaRequest {
    /// A root constrained to the base domain, the recommended setting.
    pub fn new(base_domain: &str, organization: &str) -> Self {
        PlatformCaRequest {
            base_domain: base_domain.to_owned(),
            organization: organization.to_owned(),
            permitted_domains: vec![base_domain.to_owned()],
        }
    }
}

/// A CA certificate together with its signing key.
///
/// `Debug` never shows the key; [`CertificateAuthority::private_key_pem`] hands it out for storage.
pub struct CertificateAuthority {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    key_pem: PrivateKeyPem,
    certificate_der: CertificateDer<'static>,
    certificate_pem: String,
    key_algorithm: KeyAlgorithm,
    subject: String,
    organization: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    path_len: Option<u32>,
    permitted_domains: Vec<String>,
    agency: Option<AgencyIdentity>,
    fingerprint: String,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field("organization", &self.organization)
            .field("key_algorithm", &self.key_algorithm)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("path_len", &self.path_len)
            .field("permitted_domains", &self.permitted_domains)
            .field("agency", &self.agency)
            .field("fingerprint", &self.fingerprint)
            .field("key", &self.key_pem)
            .finish()
    }
}

/// Generates a self-signed platform root CA.
pub fn generate_platform_ca(
    request: &PlatformCaRequest,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<CertificateAuthority> {
    policy.validate()?;
    let base_domain = identity::dns_name("base domain", &request.base_domain)?;
    let permitted = request
        .permitted_domains
        .iter()
        .map(|d| identity::dns_name("permitted domain", d))
        .collect::<Result<Vec<_>>>()?;
    let organization =
        if request.organization.trim().is_empty() { base_domain.clone() } else { request.organization.clone() };

    let key = policy.ca_key_algorithm.generate()?;
    let (not_before, not_after) = policy.validity(now, policy.lifetimes.platform_ca, None)?;
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(
        &format!("govpaas platform CA {}", generation_tag(now, &serial)),
        &organization,
        Some(&base_domain),
    );
    params.serial_number = Some(serial);
    params.not_before = not_before;
    params.not_after = not_after;
    // One level of tenant intermediates below the root, none below those.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = ca_key_usages();
    params.name_constraints = name_constraints(&permitted);
    let cert = params.self_signed(&key).map_err(Error::Signing)?;
    Ok(CertificateAuthority::assemble(
        cert.der().clone(),
        key,
        params,
        CaFacts { not_before, not_after, path_len: Some(1), permitted_domains: permitted, agency: None },
    ))
}

/// What a freshly generated CA is known to be, without parsing it back.
pub(crate) struct CaFacts {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub path_len: Option<u32>,
    pub permitted_domains: Vec<String>,
    pub agency: Option<AgencyIdentity>,
}

impl CertificateAuthority {
    /// Builds a CA that this module has just generated.
    pub(crate) fn assemble(
        der: CertificateDer<'static>,
        key: KeyPair,
        params: CertificateParams,
        facts: CaFacts,
    ) -> Self {
        let dn_text = |ty| params.distinguished_name.get(&ty).map(dn_value_text).unwrap_or_default();
        let subject = dn_text(DnType::CommonName);
        let organization = dn_text(DnType::OrganizationName);
        CertificateAuthority {
            key_pem: PrivateKeyPem::from_key_pair(&key),
            key_algorithm: KeyAlgorithm::of(&key),
            certificate_pem: der_to_pem(&der),
            fingerprint: pem::fingerprint(&der),
            certificate_der: der,
            issuer: Issuer::new(params, key),
            subject,
            organization,
            not_before: facts.not_before,
            not_after: facts.not_after,
            path_len: facts.path_len,
            permitted_domains: facts.permitted_domains,
            agency: facts.agency,
        }
    }

    /// Loads a CA from its certificate and PKCS#8 key PEM: a stored govpaas CA, or an intermediate
    /// issued by the government CA. Refused, with a precise error, when the certificate is not a CA
    /// (basicConstraints, keyUsage), is expired or not yet valid, the key does not match, or the
    /// CA's subject cannot be reproduced exactly in the certificates it would issue.
    ///
    /// When `certificate_pem` holds a chain, the first certificate is the CA.
    pub fn from_pem(certificate_pem: &[u8], key_pem: &[u8], now: OffsetDateTime) -> Result<CertificateAuthority> {
        const CRT: &str = "tls.crt";
        let chain = certificates_from_pem(CRT, certificate_pem)?;
        let der = chain
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidPem { field: CRT, reason: "no CERTIFICATE block found".to_owned() })?;
        let cert = parse_certificate(CRT, &der)?;

        let (is_ca, path_len) = pem::basic_constraints(CRT, &cert)?;
        if !is_ca {
            return Err(Error::NotACertificateAuthority { reason: "basicConstraints does not set cA" });
        }
        let key_usage =
            cert.key_usage().map_err(|e| Error::InvalidCertificate { field: CRT, reason: format!("keyUsage: {e}") })?;
        if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(Error::NotACertificateAuthority { reason: "keyUsage does not allow keyCertSign" });
        }
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        if now < not_before {
            return Err(Error::NotYetValid { not_before });
        }
        if now >= not_after {
            return Err(Error::Expired { not_after });
        }

        // A self-issued certificate (a root) must carry its own valid signature; an intermediate's
        // is checked by whoever verifies a chain through it.
        if cert.issuer().as_raw() == cert.subject().as_raw() && cert.verify_signature(None).is_err() {
            return Err(Error::InvalidCertificate {
                field: CRT,
                reason: "the self-signed certificate's signature does not verify".to_owned(),
            });
        }
        let key = key_from_pem("tls.key", key_pem)?;
        pem::check_key_matches(&cert, &key)?;
        check_reproducible_subject(&cert)?;

        let permitted_domains = permitted_dns_subtrees(&cert)?;
        let agency = tenant_agency(&cert, path_len, &permitted_domains)?;
        let subject = common_name(&cert);
        let organization =
            cert.subject().iter_organization().next().and_then(|o| o.as_str().ok()).unwrap_or_default().to_owned();
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| Error::InvalidCertificate { field: CRT, reason: format!("cannot act as an issuer: {e}") })?;

        let ca = CertificateAuthority {
            key_pem: PrivateKeyPem::from_key_pair(issuer.key()),
            key_algorithm: KeyAlgorithm::of(issuer.key()),
            certificate_pem: der_to_pem(&der),
            fingerprint: pem::fingerprint(&der),
            issuer,
            subject,
            organization,
            not_before,
            not_after,
            path_len,
            permitted_domains,
            agency,
            certificate_der: der,
        };
        ca.probe(now)?;
        Ok(ca)
    }

    /// Imports the platform CA: [`CertificateAuthority::from_pem`], and it must be able to carry
    /// a level of tenant CAs below it (not a tenant CA, pathLenConstraint absent or at least 1).
    pub fn import_platform_ca(
        certificate_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority> {
        let ca = Self::from_pem(certificate_pem, key_pem, now)?;
        if ca.agency.is_some() {
            return Err(Error::NotACertificateAuthority { reason: "this is a tenant CA, not a platform CA" });
        }
        match ca.path_len {
            Some(0) => Err(Error::PathLengthExhausted { path_len: 0 }),
            _ => Ok(ca),
        }
    }

    /// Loads a tenant CA from its Secret and checks that `platform` issued it (name and signature),
    /// so that a tenant CA Secret replaced by any other CA is refused.
    pub fn load_tenant_ca(
        certificate_pem: &[u8],
        key_pem: &[u8],
        platform: &CertificateAuthority,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority> {
        let ca = Self::from_pem(certificate_pem, key_pem, now)?;
        if ca.agency.is_none() {
            return Err(Error::NotACertificateAuthority {
                reason: "it carries no agency identity: not a govpaas tenant CA",
            });
        }
        let cert = parse_certificate("tls.crt", &ca.certificate_der)?;
        pem::check_issued_by(&cert, platform.certificate_der())?;
        Ok(ca)
    }

    /// Issues a throw-away certificate and checks that a verifier will chain it to this CA: the
    /// issuer name is byte-identical to our subject and the signature verifies with our
    /// certificate's key. Catches subjects rcgen cannot reproduce (repeated attribute types)
    /// before any tenant depends on them.
    fn probe(&self, now: OffsetDateTime) -> Result<()> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "govpaas issuer probe");
        params.serial_number = Some(random_serial()?);
        params.not_before = now;
        params.not_after = self.not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let probe = params.signed_by(self.issuer.key(), &self.issuer).map_err(Error::Signing)?;
        let probe = parse_certificate("probe", probe.der())?;
        let ca = parse_certificate("tls.crt", &self.certificate_der)?;
        if probe.issuer().as_raw() != ca.subject().as_raw() {
            return Err(Error::InvalidCertificate {
                field: "tls.crt",
                reason: "the CA's subject name cannot be reproduced exactly (repeated attribute \
                         types); certificates it issued would not chain"
                    .to_owned(),
            });
        }
        probe.verify_signature(Some(ca.public_key())).map_err(|_| Error::KeyMismatch)
    }

    /// The CA certificate, PEM (for a Secret's `tls.crt` and for trust bundles).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate_der
    }

    /// The CA's PKCS#8 private key, PEM, for its Secret's `tls.key`. Never log it.
    pub fn private_key_pem(&self) -> &PrivateKeyPem {
        &self.key_pem
    }

    /// The CA key's algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }

    /// The certificate's common name.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The certificate's organisation name (a tenant CA: the agency's display name).
    pub fn organization(&self) -> &str {
        &self.organization
    }

    /// notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The pathLenConstraint; `None` when unconstrained.
    pub fn path_len(&self) -> Option<u32> {
        self.path_len
    }

    /// DNS domains permitted by the CA's name constraints; empty when unconstrained.
    pub fn permitted_domains(&self) -> &[String] {
        &self.permitted_domains
    }

    /// For a tenant CA, the agency whose identities it certifies.
    pub fn agency(&self) -> Option<&AgencyIdentity> {
        self.agency.as_ref()
    }

    /// SHA-256 of the certificate, hex: the CA's identity in trust bundles and rotations.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// True when `name` (lower case) is allowed by this CA's DNS name constraints.
    pub(crate) fn permits_dns_name(&self, name: &str) -> bool {
        self.permitted_domains.is_empty() || self.permitted_domains.iter().any(|d| identity::is_within_domain(name, d))
    }
}

/// keyUsage of every CA govpaas makes: sign certificates and CRLs, and digitalSignature for
/// OCSP-style responses some verifiers expect of a CA.
pub(crate) fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature]
}

/// Name constraints: the permitted DNS subtrees, and every IP address excluded (govpaas never
/// certifies IP addresses, so a leaf carrying one was not made by it). `None` when nothing is
/// permitted-restricted, i.e. an unconstrained root.
pub(crate) fn name_constraints(permitted: &[String]) -> Option<NameConstraints> {
    if permitted.is_empty() {
        return None;
    }
    Some(NameConstraints {
        permitted_subtrees: permitted.iter().map(|d| GeneralSubtree::DnsName(d.clone())).collect(),
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    })
}

/// CN, O and (optionally) OU, each cut to X.509's 64-character bound.
pub(crate) fn distinguished_name(
    common_name: &str,
    organization: &str,
    organizational_unit: Option<&str>,
) -> DistinguishedName {
    let cut = |s: &str| s.chars().take(MAX_NAME_CHARS).collect::<String>();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cut(common_name));
    dn.push(DnType::OrganizationName, cut(organization));
    if let Some(ou) = organizational_unit {
        dn.push(DnType::OrganizationalUnitName, cut(ou));
    }
    dn
}

/// `YYYYMMDD-xxxxxxxx` (date and the serial's first four bytes): every CA generation gets a
/// distinct subject, so an admin tells old and new apart in a bundle, and no verifier confuses two
/// CAs made on the same day.
pub(crate) fn generation_tag(now: OffsetDateTime, serial: &rcgen::SerialNumber) -> String {
    let serial = serial.to_bytes();
    format!(
        "{:04}{:02}{:02}-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        pem::hex(&serial[..serial.len().min(4)])
    )
}

/// PEM text of a DER certificate, with `\n` line endings whatever the platform.
pub(crate) fn der_to_pem(der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new("CERTIFICATE", der.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

fn dn_value_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.subject().to_string(), str::to_owned)
}

/// rcgen re-encodes the issuer name of everything a CA issues from the CA's parsed subject. It
/// cannot represent empty or multi-valued RDNs, and its DER writer panics on attribute types whose
/// OID has no canonical encoding (a first arc above 2, which a parser can read from a damaged first
/// byte). Refuse those up front, so no Secret content can make issuance panic.
fn check_reproducible_subject(cert: &X509Certificate<'_>) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::InvalidCertificate {
            field: "tls.crt",
            reason: format!("the subject cannot be reproduced as an issuer name: {reason}"),
        })
    };
    for rdn in cert.subject().iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return refuse("an empty or multi-valued RDN");
        };
        let arcs: Option<Vec<u64>> = attribute.attr_type().iter().map(Iterator::collect);
        match arcs.as_deref() {
            Some([first, second, ..]) if *first < 2 && *second < 40 => {}
            Some([2, _, ..]) => {}
            _ => return refuse("an attribute type that is not a valid OID"),
        }
    }
    Ok(())
}

/// The DNS names of the permitted subtrees of the certificate's nameConstraints, lower case.
fn permitted_dns_subtrees(cert: &X509Certificate<'_>) -> Result<Vec<String>> {
    let constraints = cert
        .name_constraints()
        .map_err(|e| Error::InvalidCertificate { field: "tls.crt", reason: format!("nameConstraints: {e}") })?;
    Ok(constraints
        .and_then(|nc| nc.value.permitted_subtrees.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|subtree| match subtree.base {
            GeneralName::DNSName(name) => Some(name.trim_start_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// A tenant CA is recognised by its agency URI SAN; it must then also carry pathLen 0 and exactly
/// one permitted DNS subtree, or it was not made by govpaas.
fn tenant_agency(
    cert: &X509Certificate<'_>,
    path_len: Option<u32>,
    permitted: &[String],
) -> Result<Option<AgencyIdentity>> {
    let names = pem::subject_alt_names("tls.crt", cert)?;
    let Some(agency) = names.uris.iter().find_map(|uri| AgencyIdentity::parse(uri).ok()) else {
        return Ok(None);
    };
    if path_len != Some(0) || permitted.len() != 1 {
        return Err(Error::InvalidCertificate {
            field: "tls.crt",
            reason: "a tenant CA must have pathLenConstraint 0 and exactly one permitted DNS \
                     name constraint"
                .to_owned(),
        });
    }
    Ok(Some(agency))
}

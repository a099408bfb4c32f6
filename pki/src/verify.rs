//! Chain verification with rustls-webpki, the verifier rustls (and so the LGSP gateway) uses.
//!
//! The inspect step and the tests verify every certificate the way a real peer would: path to a
//! trust anchor of the bundle, signatures, validity, basic and name constraints, extended key usage,
//! and the name (a host, or the client's URI identity).

use rustls::pki_types::TrustAnchor;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};

use super::identity::{AgencyIdentity, WorkloadIdentity};
use super::leaf::DOCUMENT_SIGNING_EKU_DER;
use super::pem::{self, certificates_from_pem, parse_certificate};
use super::{Error, Result};

/// The certificates a verifier trusts as anchors: a trust bundle (`ca.crt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchors {
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustAnchors {
    /// Reads a PEM bundle; every certificate must be usable as a webpki trust anchor.
    pub fn from_pem(bundle: &[u8]) -> Result<Self> {
        Self::from_certificates(certificates_from_pem("ca.crt", bundle)?)
    }

    /// Builds the anchors from DER certificates.
    pub fn from_certificates(certificates: impl IntoIterator<Item = CertificateDer<'static>>) -> Result<Self> {
        let anchors = TrustAnchors { certificates: certificates.into_iter().collect() };
        if anchors.certificates.is_empty() {
            return Err(Error::InvalidPem {
                field: "ca.crt",
                reason: "the trust bundle holds no certificate".to_owned(),
            });
        }
        anchors.anchors()?;
        Ok(anchors)
    }

    /// The bundle's certificates.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// A rustls root store holding the same anchors.
    pub fn root_store(&self) -> Result<rustls::RootCertStore> {
        let mut store = rustls::RootCertStore::empty();
        for cert in &self.certificates {
            store.add(cert.clone()).map_err(Error::Tls)?;
        }
        Ok(store)
    }

    pub(crate) fn anchors(&self) -> Result<Vec<TrustAnchor<'_>>> {
        self.certificates
            .iter()
            .map(|cert| {
                webpki::anchor_from_trusted_cert(cert).map_err(|e| Error::InvalidCertificate {
                    field: "ca.crt",
                    reason: format!("not usable as a trust anchor: {e}"),
                })
            })
            .collect()
    }
}

/// Reads a `tls.crt`-style PEM chain, leaf first.
pub fn chain_from_pem(field: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    certificates_from_pem(field, pem)
}

fn unix_time(now: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(now.unix_timestamp()).unwrap_or(0)))
}

/// Builds and checks the path from `chain[0]` through `chain[1..]` to one of `anchors`, and hands
/// the verified path to `then`.
fn with_verified_path<T>(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    now: OffsetDateTime,
    usage: KeyUsage,
    then: impl FnOnce(&VerifiedPath<'_>) -> Result<T>,
) -> Result<T> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| Error::InvalidPem { field: "tls.crt", reason: "empty certificate chain".to_owned() })?;
    let end_entity = EndEntityCert::try_from(leaf).map_err(Error::ChainInvalid)?;
    let anchors = anchors.anchors()?;
    let path = end_entity
        .verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, intermediates, unix_time(now), usage, None, None)
        .map_err(Error::ChainInvalid)?;
    then(&path)
}

/// Verifies a TLS server chain for `host`, as a TLS client would.
pub fn verify_server_chain(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    host: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let server_name = ServerName::try_from(host).map_err(|_| Error::InvalidName {
        what: "host",
        value: host.to_owned(),
        reason: "not a valid server name",
    })?;
    with_verified_path(chain, anchors, now, KeyUsage::server_auth(), |path| {
        path.end_entity().verify_is_valid_for_subject_name(&server_name).map_err(Error::ChainInvalid)
    })
}

/// Verifies an LGSP client chain as the gateway does, and returns the caller's identity.
///
/// Beyond webpki's checks, the identity's agency must be the one of the tenant CA that issued the
/// leaf (that CA's URI SAN). webpki does not honour URI name constraints, so this check is what
/// stops one agency's CA from vouching for another agency's identity.
/// The earliest notAfter of `chain`: when a verification of it stops holding. `None` when a
/// certificate cannot be parsed.
pub fn chain_not_after(chain: &[CertificateDer<'_>]) -> Option<OffsetDateTime> {
    chain
        .iter()
        .map(|der| x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c.validity().not_after.to_datetime()))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

pub fn verify_client_chain(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    now: OffsetDateTime,
) -> Result<WorkloadIdentity> {
    with_verified_path(chain, anchors, now, KeyUsage::client_auth(), |path| {
        let mut uris = path.end_entity().valid_uri_names();
        let (Some(uri), None) = (uris.next(), uris.next()) else {
            return Err(Error::UsageMismatch {
                expected: "Client",
                reason: "a client certificate carries exactly one URI identity",
            });
        };
        let identity = WorkloadIdentity::parse(uri)?;
        let issuing_agency = path
            .intermediate_certificates()
            .next()
            .and_then(|issuer| issuer.valid_uri_names().find_map(|uri| AgencyIdentity::parse(uri).ok()));
        match issuing_agency {
            Some(agency) if &agency == identity.agency() => Ok(identity),
            Some(agency) => Err(Error::IdentityOutsideAgency {
                identity: identity.uri(),
                expected_prefix: format!("{}/", agency.uri()),
            }),
            None => Err(Error::IdentityOutsideAgency {
                identity: identity.uri(),
                expected_prefix: "(no tenant CA issued this certificate)".to_owned(),
            }),
        }
    })
}

/// Verifies a document-signing chain: documentSigning in the leaf's extendedKeyUsage,
/// digitalSignature and contentCommitment in its keyUsage.
pub fn verify_signing_chain(chain: &[CertificateDer<'_>], anchors: &TrustAnchors, now: OffsetDateTime) -> Result<()> {
    // `required_if_present`: the CAs above carry no EKU; the leaf's own EKU is checked below.
    let usage = KeyUsage::required_if_present(DOCUMENT_SIGNING_EKU_DER);
    with_verified_path(chain, anchors, now, usage, |_| Ok(()))?;
    let leaf = parse_certificate("tls.crt", &chain[0])?;
    let eku = leaf
        .extended_key_usage()
        .map_err(|e| Error::InvalidCertificate { field: "tls.crt", reason: format!("extendedKeyUsage: {e}") })?;
    let has_document_signing =
        eku.is_some_and(|eku| eku.value.other.iter().any(|oid| oid.as_bytes() == DOCUMENT_SIGNING_EKU_DER));
    if !has_document_signing {
        return Err(Error::UsageMismatch {
            expected: "DocumentSigning",
            reason: "extendedKeyUsage lacks documentSigning",
        });
    }
    let ku = leaf
        .key_usage()
        .map_err(|e| Error::InvalidCertificate { field: "tls.crt", reason: format!("keyUsage: {e}") })?;
    match ku {
        Some(ku) if ku.value.digital_signature() && ku.value.non_repudiation() => Ok(()),
        _ => Err(Error::UsageMismatch {
            expected: "DocumentSigning",
            reason: "keyUsage lacks digitalSignature or contentCommitment",
        }),
    }
}

/// SHA-256 fingerprint (hex) of a DER certificate.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    pem::fingerprint(der)
}

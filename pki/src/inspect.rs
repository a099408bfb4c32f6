//! Reading back a leaf Secret that the operator wrote earlier, and deciding whether it is still
//! what it should be. Secrets can be edited by hand, truncated or replaced, so everything here
//! treats its input as hostile: any defect is a precise [`Error`], never a panic.
//!
//! The checks run from the most to the least fundamental, so the error names the first real
//! problem: PEM → certificate → key → key matches certificate → issued by the expected CA → chain
//! carries that CA → validity → names → usage → full verification with rustls-webpki.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use super::identity::WorkloadIdentity;
use super::leaf::{DOCUMENT_SIGNING_EKU_DER, LeafKind};
use super::pem::{self, certificates_from_pem, key_from_pem, parse_certificate};
use super::renewal::CertificateTimes;
use super::verify::{self, TrustAnchors};
use super::{CertificateAuthority, Error, Result};

/// What a leaf Secret should hold.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedLeaf<'a> {
    /// The kind of certificate.
    pub kind: LeafKind,
    /// The CA that should have issued it (the tenant's current CA).
    pub issuer: &'a CertificateAuthority,
    /// The trust bundle it must verify against.
    pub trust: &'a TrustAnchors,
    /// For a server certificate: the desired hosts (order does not matter).
    pub dns_names: &'a [String],
    /// For a client or signing certificate: the desired identity.
    pub identity: Option<&'a WorkloadIdentity>,
}

/// What a healthy leaf Secret holds, for status and gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedLeaf {
    /// notBefore and notAfter.
    pub times: CertificateTimes,
    /// The serial number, hex.
    pub serial: String,
}

/// Checks a leaf Secret's `tls.crt` and `tls.key` against what it should be at `now`.
pub fn inspect_leaf(
    tls_crt: &[u8],
    tls_key: &[u8],
    expected: &ExpectedLeaf<'_>,
    now: OffsetDateTime,
) -> Result<InspectedLeaf> {
    const CRT: &str = "tls.crt";
    let chain = certificates_from_pem(CRT, tls_crt)?;
    let leaf = parse_certificate(CRT, &chain[0])?;
    let key = key_from_pem("tls.key", tls_key)?;
    pem::check_key_matches(&leaf, &key)?;
    // Same issuer name and a signature by the expected CA's key: a leaf of a previous CA with the
    // same agency (after a rotation) or of a foreign CA is caught here.
    pem::check_issued_by(&leaf, expected.issuer.certificate_der())?;
    if chain[1..] != [expected.issuer.certificate_der().clone()] {
        return Err(Error::InvalidCertificate {
            field: CRT,
            reason: "the certificates after the leaf are not exactly the issuing CA's".to_owned(),
        });
    }
    let times = CertificateTimes {
        not_before: leaf.validity().not_before.to_datetime(),
        not_after: leaf.validity().not_after.to_datetime(),
    };
    if now < times.not_before {
        return Err(Error::NotYetValid { not_before: times.not_before });
    }
    if now >= times.not_after {
        return Err(Error::Expired { not_after: times.not_after });
    }
    check_names(&leaf, expected)?;
    check_usage(&leaf, expected.kind)?;
    verify_like_a_peer(&chain, expected, now)?;
    Ok(InspectedLeaf { times, serial: pem::hex(leaf.raw_serial()) })
}

fn check_names(leaf: &X509Certificate<'_>, expected: &ExpectedLeaf<'_>) -> Result<()> {
    let present = pem::subject_alt_names("tls.crt", leaf)?;
    let mut have: Vec<String> = present.dns;
    have.extend(present.uris);
    have.extend(present.other);
    let want: Vec<String> = match expected.kind {
        LeafKind::Server => expected.issuer.checked_dns_names(expected.dns_names)?,
        LeafKind::Client | LeafKind::DocumentSigning => {
            expected.identity.map(|id| vec![id.uri()]).ok_or(Error::InvalidName {
                what: "identity",
                value: String::new(),
                reason: "a client or signing certificate needs an identity",
            })?
        }
    };
    let missing: Vec<String> = want.iter().filter(|n| !have.contains(n)).cloned().collect();
    let unexpected: Vec<String> = have.iter().filter(|n| !want.contains(n)).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() { Ok(()) } else { Err(Error::NamesMismatch { missing, unexpected }) }
}

fn check_usage(leaf: &X509Certificate<'_>, kind: LeafKind) -> Result<()> {
    let (is_ca, _) = pem::basic_constraints("tls.crt", leaf)?;
    if is_ca {
        return Err(Error::UsageMismatch { expected: kind.name(), reason: "the certificate is a CA" });
    }
    let eku = leaf
        .extended_key_usage()
        .map_err(|e| Error::InvalidCertificate { field: "tls.crt", reason: format!("extendedKeyUsage: {e}") })?
        .map(|eku| eku.value);
    let ok = eku.is_some_and(|eku| match kind {
        LeafKind::Server => eku.server_auth,
        LeafKind::Client => eku.client_auth,
        LeafKind::DocumentSigning => eku.other.iter().any(|oid| oid.as_bytes() == DOCUMENT_SIGNING_EKU_DER),
    });
    if ok {
        Ok(())
    } else {
        Err(Error::UsageMismatch { expected: kind.name(), reason: "extendedKeyUsage lacks the purpose" })
    }
}

fn verify_like_a_peer(chain: &[CertificateDer<'_>], expected: &ExpectedLeaf<'_>, now: OffsetDateTime) -> Result<()> {
    match expected.kind {
        LeafKind::Server => {
            for host in expected.dns_names {
                verify::verify_server_chain(chain, expected.trust, host, now)?;
            }
            Ok(())
        }
        LeafKind::Client => verify::verify_client_chain(chain, expected.trust, now).map(|_| ()),
        LeafKind::DocumentSigning => verify::verify_signing_chain(chain, expected.trust, now),
    }
}

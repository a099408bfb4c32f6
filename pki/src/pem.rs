//! Decoding PEM and DER from untrusted bytes (Secrets can be hand-edited): every failure is a
//! precise [`Error`], never a panic.

use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::{Error, Result};

/// Every `CERTIFICATE` block of `bytes`, in order. At least one, or an error.
pub(crate) fn certificates_from_pem(field: &'static str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidPem { field, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(Error::InvalidPem { field, reason: "no CERTIFICATE block found".to_owned() });
    }
    Ok(certs)
}

/// Parses one DER certificate; trailing bytes after it are refused. rustls-webpki must accept the
/// encoding too: x509-parser is lenient in places (an outer AlgorithmIdentifier's tag, for one)
/// where webpki, which every peer of ours uses, is strict.
pub(crate) fn parse_certificate<'a>(field: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    let cert_der = CertificateDer::from(der);
    if let Err(e) = webpki::EndEntityCert::try_from(&cert_der) {
        return Err(Error::InvalidCertificate { field, reason: format!("malformed for rustls-webpki: {e}") });
    }
    match x509_parser::parse_x509_certificate(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err(Error::InvalidCertificate { field, reason: "trailing bytes after the certificate".to_owned() }),
        Err(e) => Err(Error::InvalidCertificate { field, reason: e.to_string() }),
    }
}

/// Loads an unencrypted PKCS#8 private key (`PRIVATE KEY`) of a type rcgen can sign with.
pub(crate) fn key_from_pem(field: &'static str, bytes: &[u8]) -> Result<KeyPair> {
    let invalid = |reason: String| Error::InvalidPrivateKey { field, reason };
    let key = PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| Error::InvalidPem { field, reason: format!("no private key found: {e}") })?;
    match key {
        PrivateKeyDer::Pkcs8(pkcs8) => KeyPair::try_from(&pkcs8).map_err(|_| {
            invalid("PKCS#8 content is not an ECDSA P-256/P-384, Ed25519 or RSA key that can be loaded".to_owned())
        }),
        PrivateKeyDer::Sec1(_) => Err(invalid(
            "SEC1 \"EC PRIVATE KEY\" is not accepted; convert it with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .to_owned(),
        )),
        PrivateKeyDer::Pkcs1(_) => Err(invalid(
            "PKCS#1 \"RSA PRIVATE KEY\" is not accepted; convert it with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .to_owned(),
        )),
        _ => Err(invalid("unsupported private key format".to_owned())),
    }
}

/// The certificate's public key bits must be the key pair's public key.
pub(crate) fn check_key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> Result<()> {
    if cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw() {
        Ok(())
    } else {
        Err(Error::KeyMismatch)
    }
}

/// `cert` names `issuer_der`'s subject as its issuer and carries a signature that verifies with
/// `issuer_der`'s key; otherwise [`Error::IssuerMismatch`].
pub(crate) fn check_issued_by(cert: &X509Certificate<'_>, issuer_der: &[u8]) -> Result<()> {
    let issuer = parse_certificate("issuer", issuer_der)?;
    let mismatch =
        || Error::IssuerMismatch { expected: issuer.subject().to_string(), actual: cert.issuer().to_string() };
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(mismatch());
    }
    cert.verify_signature(Some(issuer.public_key())).map_err(|_| mismatch())
}

/// The DNS names and URIs of the subjectAltName extension, in certificate order.
pub(crate) struct SubjectAltNames {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    /// Names of any other form (IP addresses, e-mail addresses…), rendered for messages.
    pub other: Vec<String>,
}

pub(crate) fn subject_alt_names(field: &'static str, cert: &X509Certificate<'_>) -> Result<SubjectAltNames> {
    let mut names = SubjectAltNames { dns: Vec::new(), uris: Vec::new(), other: Vec::new() };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::InvalidCertificate { field, reason: format!("subjectAltName: {e}") })?;
    for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => names.dns.push(dns.to_ascii_lowercase()),
            GeneralName::URI(uri) => names.uris.push((*uri).to_owned()),
            other => names.other.push(other.to_string()),
        }
    }
    Ok(names)
}

/// The `(ca, pathLenConstraint)` of basicConstraints; `(false, None)` when absent.
pub(crate) fn basic_constraints(field: &'static str, cert: &X509Certificate<'_>) -> Result<(bool, Option<u32>)> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| Error::InvalidCertificate { field, reason: format!("basicConstraints: {e}") })?;
    Ok(bc.map_or((false, None), |bc| (bc.value.ca, bc.value.path_len_constraint)))
}

/// Lower-case hex, colon-free: serials and fingerprints in status and messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the certificate's DER, hex: the identity of a CA in the rotation state machine.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"garbage",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            &[0xff, 0xfe, 0x00, 0x80],
        ] {
            assert!(certificates_from_pem("tls.crt", bytes).is_err());
            assert!(key_from_pem("tls.key", bytes).is_err());
        }
        let not_der = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let certs = certificates_from_pem("tls.crt", not_der).unwrap();
        assert_eq!(parse_certificate("tls.crt", &certs[0]).unwrap_err().label(), "InvalidCertificate");
    }

    #[test]
    fn non_pkcs8_keys_get_a_conversion_hint() {
        let sec1 = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let err = key_from_pem("tls.key", sec1).unwrap_err();
        assert_eq!(err.label(), "InvalidPrivateKey");
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        let pkcs1 = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(key_from_pem("tls.key", pkcs1).unwrap_err().to_string().contains("PKCS#1"));
        let bad_pkcs8 = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(key_from_pem("tls.key", bad_pkcs8).unwrap_err().label(), "InvalidPrivateKey");
    }
}

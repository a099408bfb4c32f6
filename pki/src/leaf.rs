//! End-entity certificates issued by a tenant CA (or, for the platform's own hosts, by the
//! platform CA): TLS server certificates, LGSP client certificates with a URI identity, and
//! document-signing certificates. Each comes with a fresh key, as PEM ready for a
//! `kubernetes.io/tls` Secret.

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::authority::distinguished_name;
use super::identity::{self, MAX_DNS_NAMES, WorkloadIdentity};
use super::pem::hex;
use super::policy::random_serial;
use super::renewal::{RenewalFraction, renewal_time};
use super::{CertificateAuthority, Error, IssuancePolicy, PrivateKeyPem, Result};

/// id-kp-documentSigning (RFC 9336), 1.3.6.1.5.5.7.3.36.
pub const DOCUMENT_SIGNING_EKU: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];
/// The same OID as DER content bytes, as rustls-webpki's `KeyUsage::required` wants it.
pub const DOCUMENT_SIGNING_EKU_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];

/// The three kinds of leaf govpaas issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeafKind {
    /// TLS server: DNS SANs, serverAuth.
    Server,
    /// TLS client (LGSP consumer): one URI SAN identity, clientAuth.
    Client,
    /// Document signing: one URI SAN identity, digitalSignature + contentCommitment, documentSigning.
    DocumentSigning,
}

impl LeafKind {
    /// The name used in messages and labels.
    pub fn name(self) -> &'static str {
        match self {
            LeafKind::Server => "Server",
            LeafKind::Client => "Client",
            LeafKind::DocumentSigning => "DocumentSigning",
        }
    }
}

/// A TLS server certificate for one or more hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCertificateRequest {
    /// Host names; the first becomes the common name. Each must lie in the CA's domain.
    pub dns_names: Vec<String>,
}

impl ServerCertificateRequest {
    /// A request for these hosts.
    pub fn new<S: Into<String>>(dns_names: impl IntoIterator<Item = S>) -> Self {
        ServerCertificateRequest { dns_names: dns_names.into_iter().map(Into::into).collect() }
    }
}

/// An LGSP client certificate for one system of the tenant's agency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificateRequest {
    /// The identity; its agency must be the issuing tenant CA's.
    pub identity: WorkloadIdentity,
}

/// A document-signing certificate for one system (or office) of the tenant's agency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningCertificateRequest {
    /// The identity; its agency must be the issuing tenant CA's.
    pub identity: WorkloadIdentity,
    /// The signer's name as shown by document viewers (UTF-8); defaults to the agency's name.
    pub signer_name: String,
}

/// A freshly issued leaf: certificate, chain and key.
#[derive(Debug)]
pub struct IssuedCertificate {
    kind: LeafKind,
    leaf_pem: String,
    chain_pem: String,
    key: PrivateKeyPem,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: String,
}

impl IssuedCertificate {
    /// The kind of leaf.
    pub fn kind(&self) -> LeafKind {
        self.kind
    }

    /// The leaf certificate alone, PEM.
    pub fn leaf_pem(&self) -> &str {
        &self.leaf_pem
    }

    /// The leaf followed by its issuing CA, PEM: a Secret's `tls.crt`.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The leaf's PKCS#8 private key, PEM: a Secret's `tls.key`. Never log it.
    pub fn private_key_pem(&self) -> &PrivateKeyPem {
        &self.key
    }

    /// notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The serial number, hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// When this certificate is due for renewal.
    pub fn renewal_time(&self, fraction: RenewalFraction) -> OffsetDateTime {
        renewal_time(self.not_before, self.not_after, fraction)
    }

    /// The contents of a `kubernetes.io/tls` Secret, with `ca.crt` set to the trust bundle.
    pub fn into_tls_secret(self, trust_bundle_pem: &str) -> TlsSecretData {
        TlsSecretData { tls_crt: self.chain_pem, tls_key: self.key, ca_crt: trust_bundle_pem.to_owned() }
    }
}

/// The data of a `kubernetes.io/tls` Secret: `tls.crt`, `tls.key`, `ca.crt`.
#[derive(Debug)]
pub struct TlsSecretData {
    /// Leaf and intermediate, PEM.
    pub tls_crt: String,
    /// PKCS#8 key, PEM.
    pub tls_key: PrivateKeyPem,
    /// The trust bundle, PEM.
    pub ca_crt: String,
}

impl TlsSecretData {
    /// The Secret's `type`.
    pub const SECRET_TYPE: &'static str = "kubernetes.io/tls";
    /// Key of the certificate chain.
    pub const TLS_CRT: &'static str = "tls.crt";
    /// Key of the private key.
    pub const TLS_KEY: &'static str = "tls.key";
    /// Key of the trust bundle.
    pub const CA_CRT: &'static str = "ca.crt";

    /// `(key, bytes)` pairs for the Secret's `data`.
    pub fn entries(&self) -> [(&'static str, &[u8]); 3] {
        [
            (Self::TLS_CRT, self.tls_crt.as_bytes()),
            (Self::TLS_KEY, self.tls_key.expose().as_bytes()),
            (Self::CA_CRT, self.ca_crt.as_bytes()),
        ]
    }
}

impl CertificateAuthority {
    /// Issues a TLS server certificate. Every name must be a valid host within this CA's name
    /// constraints (a tenant CA: the tenant's domain); duplicates are dropped.
    pub fn issue_server_certificate(
        &self,
        request: &ServerCertificateRequest,
        policy: &IssuancePolicy,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        let names = self.checked_dns_names(&request.dns_names)?;
        let mut params = CertificateParams::default();
        // A common name is only for humans; leave it out if the first host is too long for one.
        let common_name = names.first().filter(|n| n.len() <= 64).cloned();
        params.distinguished_name = distinguished_name(
            common_name.as_deref().unwrap_or("govpaas server"),
            self.organization(),
            self.agency().map(|a| a.agency_code()),
        );
        params.subject_alt_names =
            names.iter().map(|n| ia5(n, "DNS name").map(SanType::DnsName)).collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(LeafKind::Server, params, policy.lifetimes.server, policy, now)
    }

    /// Issues an LGSP client certificate whose only name is the identity's URI.
    pub fn issue_client_certificate(
        &self,
        request: &ClientCertificateRequest,
        policy: &IssuancePolicy,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        self.check_identity(&request.identity)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(
            &format!("{}/{}", request.identity.kind(), request.identity.name()),
            self.organization(),
            Some(request.identity.agency().agency_code()),
        );
        params.subject_alt_names = vec![SanType::URI(ia5(&request.identity.uri(), "identity")?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(LeafKind::Client, params, policy.lifetimes.client, policy, now)
    }

    /// Issues a document-signing certificate: keyUsage digitalSignature and contentCommitment
    /// (nonRepudiation), extendedKeyUsage documentSigning only (not usable for TLS or e-mail).
    pub fn issue_signing_certificate(
        &self,
        request: &SigningCertificateRequest,
        policy: &IssuancePolicy,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        self.check_identity(&request.identity)?;
        let signer = if request.signer_name.trim().is_empty() { self.organization() } else { &request.signer_name };
        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(signer, self.organization(), Some(request.identity.agency().agency_code()));
        params.subject_alt_names = vec![SanType::URI(ia5(&request.identity.uri(), "identity")?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(DOCUMENT_SIGNING_EKU.to_vec())];
        self.sign_leaf(LeafKind::DocumentSigning, params, policy.lifetimes.signing, policy, now)
    }

    /// Validated, lower-cased, de-duplicated host names, all permitted to this CA.
    pub(crate) fn checked_dns_names(&self, requested: &[String]) -> Result<Vec<String>> {
        if requested.is_empty() || requested.len() > MAX_DNS_NAMES {
            return Err(Error::InvalidName {
                what: "host list",
                value: format!("{} names", requested.len()),
                reason: "a server certificate needs 1 to 100 host names",
            });
        }
        let mut names: Vec<String> = Vec::with_capacity(requested.len());
        for raw in requested {
            let name = identity::dns_name("host", raw)?;
            if !self.permits_dns_name(&name) {
                return Err(Error::NameOutsideDomain { name, permitted: self.permitted_domains().to_vec() });
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Only a tenant CA certifies identities, and only its own agency's.
    fn check_identity(&self, identity: &WorkloadIdentity) -> Result<()> {
        let agency =
            self.agency().ok_or(Error::IssuerNotPermitted { reason: "only a tenant CA issues agency identities" })?;
        if identity.agency() != agency {
            return Err(Error::IdentityOutsideAgency {
                identity: identity.uri(),
                expected_prefix: format!("{}/", agency.uri()),
            });
        }
        Ok(())
    }

    fn sign_leaf(
        &self,
        kind: LeafKind,
        mut params: CertificateParams,
        lifetime: time::Duration,
        policy: &IssuancePolicy,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        let (not_before, not_after) = policy.validity(now, lifetime, Some(self.not_after()))?;
        let serial = random_serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let key = policy.leaf_key_algorithm.generate()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::Signing)?;
        let leaf_pem = cert.pem();
        let mut chain_pem = String::with_capacity(leaf_pem.len() * 2 + 8);
        chain_pem.push_str(&leaf_pem);
        chain_pem.push_str(self.certificate_pem());
        Ok(IssuedCertificate {
            kind,
            leaf_pem,
            chain_pem,
            key: PrivateKeyPem::from_key_pair(&key),
            not_before,
            not_after,
            serial: serial_hex,
        })
    }
}

fn ia5(value: &str, what: &'static str) -> Result<rcgen::string::Ia5String> {
    value.try_into().map_err(|_| Error::InvalidName { what, value: value.to_owned(), reason: "not ASCII" })
}

//! Each tenant's intermediate CA: issued by the platform CA, pathLenConstraint 0 (it signs leaves
//! only), name-constrained to the tenant's DNS domain, and carrying the agency's identity
//! `spiffe://<base-domain>/agency/<code>` as its URI SAN.
//!
//! The URI identity prefix is *not* a name constraint: rustls-webpki fails closed on URI name
//! constraints (any leaf with a URI SAN below such a CA is refused), see `docs/certificates.md`.
//! The agency binding of client identities is enforced at issuance and re-checked by
//! [`verify_client_chain`](super::verify::verify_client_chain) against this URI SAN.

use rcgen::{BasicConstraints, CertificateParams, IsCa, SanType};
use time::OffsetDateTime;

use super::authority::{CaFacts, ca_key_usages, distinguished_name, generation_tag, name_constraints};
use super::identity::{self, AgencyIdentity};
use super::policy::random_serial;
use super::{CertificateAuthority, Error, IssuancePolicy, Result};

/// Who a tenant CA is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantCaRequest {
    /// The platform's base domain.
    pub base_domain: String,
    /// The agency's electronic code (`H49.12`).
    pub agency_code: String,
    /// The agency's display name, UTF-8 (`Sở Tài nguyên và Môi trường`).
    pub display_name: String,
    /// The tenant's DNS domain: every host it may certify lies here.
    pub domain: String,
}

impl CertificateAuthority {
    /// Issues a tenant intermediate CA with a fresh key of the policy's CA key type.
    ///
    /// Refused when this CA is itself a tenant CA or its pathLenConstraint is 0, when the tenant's
    /// domain lies outside this CA's own name constraints (every certificate below would fail
    /// verification), or when a name is malformed.
    pub fn issue_tenant_ca(
        &self,
        request: &TenantCaRequest,
        policy: &IssuancePolicy,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority> {
        if self.agency().is_some() {
            return Err(Error::IssuerNotPermitted { reason: "a tenant CA issues leaves only, not further CAs" });
        }
        if let Some(path_len) = self.path_len()
            && path_len == 0
        {
            return Err(Error::PathLengthExhausted { path_len });
        }
        let agency = AgencyIdentity::new(&request.base_domain, &request.agency_code)?;
        let domain = identity::dns_name("tenant domain", &request.domain)?;
        if !self.permits_dns_name(&domain) {
            return Err(Error::NameOutsideDomain { name: domain, permitted: self.permitted_domains().to_vec() });
        }
        let display_name = if request.display_name.trim().is_empty() {
            agency.agency_code().to_owned()
        } else {
            request.display_name.clone()
        };

        let key = policy.ca_key_algorithm.generate()?;
        let (not_before, not_after) = policy.validity(now, policy.lifetimes.tenant_ca, Some(self.not_after()))?;
        let permitted = vec![domain];
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        // At most 8 + 35 + 4 + 17 = 64 characters, X.509's bound for a common name.
        params.distinguished_name = distinguished_name(
            &format!("govpaas {} CA {}", agency.agency_code(), generation_tag(now, &serial)),
            &display_name,
            Some(agency.agency_code()),
        );
        params.subject_alt_names = vec![SanType::URI(agency.uri().try_into().map_err(|_| Error::InvalidName {
            what: "agency identity",
            value: agency.uri(),
            reason: "not an IA5 string",
        })?)];
        params.serial_number = Some(serial);
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_key_usages();
        params.name_constraints = name_constraints(&permitted);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::Signing)?;
        Ok(CertificateAuthority::assemble(
            cert.der().clone(),
            key,
            params,
            CaFacts { not_before, not_after, path_len: Some(0), permitted_domains: permitted, agency: Some(agency) },
        ))
    }

    /// True when this is a tenant CA for `request`'s agency and domain: when the Tenant is
    /// reconciled unchanged, its CA stands; when the agency code, base domain or domain changed,
    /// a new tenant CA is issued. (The display name is cosmetic and does not count.)
    pub fn is_for(&self, request: &TenantCaRequest) -> bool {
        let Some(agency) = self.agency() else {
            return false;
        };
        AgencyIdentity::new(&request.base_domain, &request.agency_code).is_ok_and(|wanted| &wanted == agency)
            && identity::dns_name("tenant domain", &request.domain)
                .is_ok_and(|domain| self.permitted_domains() == [domain])
    }
}

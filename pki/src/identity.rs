//! Names that go into certificates: DNS names, agency codes, and the SPIFFE-style URI identities of
//! agencies' systems (`spiffe://<base-domain>/agency/<agency-code>/<kind>/<name>`).

use rustls::pki_types::DnsName;

use super::{Error, Result};

/// The most DNS names govpaas puts into one server certificate.
pub const MAX_DNS_NAMES: usize = 100;

/// Validates a DNS name for a certificate or a name constraint and returns it in lower case.
///
/// Wildcards, IP addresses, trailing dots and single-label names are refused: every name govpaas
/// certifies is a concrete host below a tenant's domain.
pub fn dns_name(what: &'static str, value: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidName { what, value: value.to_owned(), reason };
    if value.contains('*') {
        return Err(invalid("wildcards are not issued"));
    }
    if value.ends_with('.') {
        return Err(invalid("a trailing dot is not allowed"));
    }
    if !value.contains('.') {
        return Err(invalid("a fully qualified name has at least two labels"));
    }
    if value.parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid("IP addresses are not issued"));
    }
    DnsName::try_from(value).map_err(|_| invalid("not a valid DNS name"))?;
    Ok(value.to_ascii_lowercase())
}

/// True when `name` is `domain` itself or a name below it (both lower case).
pub fn is_within_domain(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|prefix| prefix.ends_with('.'))
}

/// Validates an electronic agency code (Decision 20/2020/QĐ-TTg, or a legacy QCVN 102:2016 code):
/// 1 to 35 characters of `0-9`, `A-Z` and `.`, in non-empty dot-separated groups.
pub fn agency_code(value: &str) -> Result<&str> {
    let invalid = |reason| Error::InvalidName { what: "agency code", value: value.to_owned(), reason };
    if value.is_empty() || value.len() > 35 {
        return Err(invalid("must be 1 to 35 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'.') {
        return Err(invalid("only 0-9, A-Z and '.' are allowed"));
    }
    if value.split('.').any(str::is_empty) {
        return Err(invalid("groups separated by '.' must not be empty"));
    }
    Ok(value)
}

/// Validates one path segment of an identity (a kind such as `dss`, or a Kubernetes object name):
/// 1 to 253 characters of `a-z`, `0-9`, `-` and `.`, starting and ending with a letter or digit.
pub fn path_segment<'a>(what: &'static str, value: &'a str) -> Result<&'a str> {
    let invalid = |reason| Error::InvalidName { what, value: value.to_owned(), reason };
    if value.is_empty() || value.len() > 253 {
        return Err(invalid("must be 1 to 253 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
        return Err(invalid("only a-z, 0-9, '-' and '.' are allowed"));
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge_ok(value.bytes().next()) || !edge_ok(value.bytes().last()) {
        return Err(invalid("must start and end with a letter or digit"));
    }
    Ok(value)
}

/// The identity of one agency: the prefix of every URI identity its tenant CA may certify, and the
/// URI SAN of that tenant CA itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgencyIdentity {
    base_domain: String,
    agency_code: String,
}

impl AgencyIdentity {
    /// Validates and builds an agency identity.
    pub fn new(base_domain: &str, agency_code: &str) -> Result<Self> {
        Ok(AgencyIdentity {
            base_domain: dns_name("base domain", base_domain)?,
            agency_code: self::agency_code(agency_code)?.to_owned(),
        })
    }

    /// The platform's base domain, which is also the SPIFFE trust domain.
    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    /// The agency's electronic code.
    pub fn agency_code(&self) -> &str {
        &self.agency_code
    }

    /// `spiffe://<base-domain>/agency/<agency-code>`: the tenant CA's own URI SAN.
    pub fn uri(&self) -> String {
        format!("spiffe://{}/agency/{}", self.base_domain, self.agency_code)
    }

    /// Parses the URI produced by [`AgencyIdentity::uri`].
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidName { what: "agency identity", value: uri.to_owned(), reason };
        let rest = uri.strip_prefix("spiffe://").ok_or_else(|| invalid("must start with spiffe://"))?;
        let (base, path) = rest.split_once('/').ok_or_else(|| invalid("missing path"))?;
        let code = path.strip_prefix("agency/").ok_or_else(|| invalid("path must be agency/<code>"))?;
        AgencyIdentity::new(base, code)
    }

    /// The identity of one of the agency's systems.
    pub fn workload(&self, kind: &str, name: &str) -> Result<WorkloadIdentity> {
        Ok(WorkloadIdentity {
            agency: self.clone(),
            kind: path_segment("identity kind", kind)?.to_owned(),
            name: path_segment("identity name", name)?.to_owned(),
        })
    }
}

/// The identity of one system of an agency, carried as the URI SAN of its client certificate:
/// `spiffe://<base-domain>/agency/<agency-code>/<kind>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadIdentity {
    agency: AgencyIdentity,
    kind: String,
    name: String,
}

impl WorkloadIdentity {
    /// The agency this system belongs to.
    pub fn agency(&self) -> &AgencyIdentity {
        &self.agency
    }

    /// The kind of system (for example `dss` for a DataSharingService).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The system's name (the Kubernetes object's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URI form, as written into the certificate.
    pub fn uri(&self) -> String {
        format!("{}/{}/{}", self.agency.uri(), self.kind, self.name)
    }

    /// Parses and validates a URI identity.
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidName { what: "workload identity", value: uri.to_owned(), reason };
        let (agency, name) =
            uri.rsplit_once('/').ok_or_else(|| invalid("expected spiffe://<base>/agency/<code>/<kind>/<name>"))?;
        let (agency, kind) =
            agency.rsplit_once('/').ok_or_else(|| invalid("expected spiffe://<base>/agency/<code>/<kind>/<name>"))?;
        AgencyIdentity::parse(agency)
            .map_err(|_| invalid("expected spiffe://<base>/agency/<code>/<kind>/<name>"))?
            .workload(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_validated_and_lowercased() {
        assert_eq!(dns_name("host", "Portal.H49.QuangNam.gov.vn").unwrap(), "portal.h49.quangnam.gov.vn");
        for bad in [
            "",
            "localhost",
            "*.quangnam.gov.vn",
            "quangnam.gov.vn.",
            "10.0.0.1",
            "bad_name..gov.vn",
            "-x.gov.vn",
            "dịch-vụ.gov.vn",
        ] {
            let err = dns_name("host", bad).unwrap_err();
            assert_eq!(err.label(), "InvalidName", "{bad:?} gave {err}");
        }
    }

    #[test]
    fn domain_membership_is_by_whole_labels() {
        assert!(is_within_domain("h49.quangnam.gov.vn", "h49.quangnam.gov.vn"));
        assert!(is_within_domain("a.h49.quangnam.gov.vn", "h49.quangnam.gov.vn"));
        assert!(!is_within_domain("xh49.quangnam.gov.vn", "h49.quangnam.gov.vn"));
        assert!(!is_within_domain("quangnam.gov.vn", "h49.quangnam.gov.vn"));
        assert!(!is_within_domain("h49.quangnam.gov.vn.evil.com", "h49.quangnam.gov.vn"));
    }

    #[test]
    fn agency_codes_follow_the_decision() {
        for good in ["H49", "H49.12", "G01.05.03", "000.00.00.H49"] {
            assert_eq!(agency_code(good).unwrap(), good);
        }
        for bad in ["", "h49", "H49..12", ".H49", "H49.", "H49/12", &"A".repeat(36)] {
            assert_eq!(agency_code(bad).unwrap_err().label(), "InvalidName", "{bad}");
        }
    }

    #[test]
    fn workload_identities_round_trip() {
        let agency = AgencyIdentity::new("QuangNam.gov.vn", "H49.12").unwrap();
        assert_eq!(agency.uri(), "spiffe://quangnam.gov.vn/agency/H49.12");
        assert_eq!(AgencyIdentity::parse(&agency.uri()).unwrap(), agency);
        let id = agency.workload("dss", "land-records").unwrap();
        assert_eq!(id.uri(), "spiffe://quangnam.gov.vn/agency/H49.12/dss/land-records");
        assert_eq!(WorkloadIdentity::parse(&id.uri()).unwrap(), id);
        for bad in [
            "https://quangnam.gov.vn/agency/H49/dss/x",
            "spiffe://quangnam.gov.vn/agency/H49/dss",
            "spiffe://quangnam.gov.vn/agency/H49/dss/X",
            "spiffe://quangnam.gov.vn/tenant/H49/dss/x",
            "spiffe://quangnam.gov.vn/agency/h49/dss/x",
            "spiffe://quangnam.gov.vn/agency/H49/dss/x/",
            "garbage",
        ] {
            assert_eq!(WorkloadIdentity::parse(bad).unwrap_err().label(), "InvalidName", "{bad}");
        }
    }
}

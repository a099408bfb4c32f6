//! What must hold before anything of a Tenant is applied. Pure: it reads the Tenant, the other
//! Tenants and the Platform as the caches show them.
//!
//! Rules about one object alone live in the CRD schema and CEL; the ones here need other objects:
//! the agency tree (`govpaas_crds::hierarchy`), the domain under the Platform's base domain and
//! unique among tenants, and a quota that parses. A Tenant that breaks one is not applied at all:
//! whatever it had stays as it was, and its status says why.

use govpaas_crds::Tenant;
use govpaas_crds::hierarchy::{self, HierarchyError, TenantNode};
use govpaas_crds::quota::{QuotaError, QuotaVector};
use kube::ResourceExt;

use crate::quota::Member;

/// What validation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Broken rules of the agency tree, the parent's among them.
    pub hierarchy: Vec<HierarchyError>,
    /// The tenant's domain, or why it cannot have it.
    pub domain: Result<String, String>,
    /// The tenant as quota decisions see it, or why its quota cannot be read.
    pub member: Result<Member, QuotaError>,
}

impl Validation {
    /// Whether the tenant may be applied.
    pub fn is_valid(&self) -> bool {
        self.hierarchy.is_empty() && self.domain.is_ok() && self.member.is_ok()
    }

    /// The hierarchy errors about the tenant's parent (the `InvalidParent` condition).
    pub fn parent_errors(&self) -> Vec<&HierarchyError> {
        self.hierarchy.iter().filter(|e| is_parent_error(e)).collect()
    }
}

/// Whether the error is about `spec.parent`.
pub fn is_parent_error(error: &HierarchyError) -> bool {
    matches!(
        error,
        HierarchyError::ParentNotFound { .. } | HierarchyError::ParentLevel { .. } | HierarchyError::ParentCycle { .. }
    )
}

/// Orders Tenants oldest first (ties by name): the order in which claims (an agency code, a
/// namespace, a domain) are settled, so the Tenant that had it first keeps it.
pub fn oldest_first(tenants: &mut [&Tenant]) {
    tenants.sort_by(|a, b| {
        let created = |t: &Tenant| t.metadata.creation_timestamp.clone();
        created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// Validates `tenant` against every Tenant (`all`, oldest first, `tenant` among them) and the
/// Platform's base domain.
pub fn validate(tenant: &Tenant, all: &[&Tenant], base_domain: &str) -> Validation {
    let nodes: Vec<TenantNode> = all.iter().map(|t| TenantNode::from(*t)).collect();
    let hierarchy = hierarchy::check(&TenantNode::from(tenant), &nodes);
    Validation { hierarchy, domain: domain(tenant, all, base_domain), member: member(tenant) }
}

/// The tenant's domain: `spec.domain` or `<name>.<base domain>`; it must be or sit under the base
/// domain, and no older Tenant may have it.
fn domain(tenant: &Tenant, all: &[&Tenant], base_domain: &str) -> Result<String, String> {
    let domain = tenant.domain(base_domain);
    if domain != base_domain && !domain.ends_with(&format!(".{base_domain}")) {
        return Err(format!(
            "spec.domain {domain:?} is not under the platform's base domain {base_domain:?}: use {}.{base_domain} or another name under it",
            tenant.name_any()
        ));
    }
    let position = all.iter().position(|t| t.name_any() == tenant.name_any()).unwrap_or(all.len());
    if let Some(other) = all[..position].iter().find(|other| other.domain(base_domain) == domain) {
        return Err(format!(
            "spec.domain {domain:?} is already the domain of Tenant {:?}: each tenant needs its own",
            other.name_any()
        ));
    }
    Ok(domain)
}

/// The tenant as the quota ledger sees it.
pub fn member(tenant: &Tenant) -> Result<Member, QuotaError> {
    let requested = QuotaVector::of_tenant(&tenant.spec.quota)?;
    let recorded = match tenant.status.as_ref().and_then(|s| s.quota.as_ref()) {
        Some(quota) if !quota.hard.is_empty() => Some(QuotaVector::from_status(&quota.hard)?),
        _ => None,
    };
    let mut namespace_shares = QuotaVector::default();
    for share in tenant.spec.namespaces.iter().filter_map(|n| n.quota.as_ref()) {
        namespace_shares = namespace_shares.add(&QuotaVector::of_namespace(share)?)?;
    }
    Ok(Member {
        name: tenant.name_any(),
        uid: tenant.metadata.uid.clone().unwrap_or_default(),
        requested,
        recorded,
        namespace_shares,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::fixtures;

    #[test]
    fn a_well_formed_province_is_valid() {
        let tenants = fixtures::province();
        let all = fixtures::refs(&tenants);
        for tenant in &all {
            let validation = validate(tenant, &all, "quangnam.gov.vn");
            assert!(validation.is_valid(), "{}: {validation:?}", tenant.name_any());
        }
        let so_noi_vu = validate(all[1], &all, "quangnam.gov.vn");
        assert_eq!(so_noi_vu.domain.unwrap(), "so-noi-vu.quangnam.gov.vn");
    }

    #[test]
    fn a_missing_parent_is_a_parent_error() {
        let tenants = fixtures::province();
        let all = fixtures::refs(&tenants);
        // Without the province.
        let orphans: Vec<&Tenant> = all[1..].to_vec();
        let validation = validate(orphans[0], &orphans, "quangnam.gov.vn");
        assert!(!validation.is_valid());
        assert_eq!(validation.parent_errors().len(), 1);
        assert_eq!(validation.parent_errors()[0].reason(), "ParentNotFound");
    }

    #[test]
    fn a_domain_outside_the_base_domain_or_taken_is_refused() {
        let mut tenants = fixtures::province();
        tenants[1].spec.domain = Some("sonoivu.example.com".into());
        tenants[2].spec.domain = Some("quang-nam.quangnam.gov.vn".into());
        let all = fixtures::refs(&tenants);
        let outside = validate(all[1], &all, "quangnam.gov.vn").domain.unwrap_err();
        assert!(outside.contains("not under the platform's base domain"), "{outside}");
        let taken = validate(all[2], &all, "quangnam.gov.vn").domain.unwrap_err();
        assert!(taken.contains("already the domain of Tenant \"quang-nam\""), "{taken}");
        // The older tenant keeps it.
        assert!(validate(all[0], &all, "quangnam.gov.vn").domain.is_ok());
    }

    #[test]
    fn members_read_their_recorded_quota_and_namespace_shares() {
        let tenants = fixtures::province();
        let split = tenants.iter().find(|t| t.spec.namespaces.len() > 1).expect("a tenant with several namespaces");
        let m = member(split).unwrap();
        assert_eq!(m.namespace_shares.get(govpaas_crds::quota::Resource::Pods).to_string(), "30");
        assert!(m.recorded.is_none());
    }
}

//! Tenancy: which Tenant owns a namespace (one rule, here only), and the facts about its tenant
//! that a service needs, read from the Tenant and the Platform.
//!
//! A service's namespace carries the `govpaas.io/tenant` label the tenant controller writes; that
//! names the Tenant, which is the source of truth for the domain, the agency and suspension (the
//! namespace's copies may lag behind it). The label alone is never enough: the Tenant must also
//! list the namespace, so a label copied onto another namespace gives it no tenant.

use std::sync::Arc;

use govpaas_crds::metadata::TENANT_LABEL;
use govpaas_crds::{Platform, Tenant};
use kube::ResourceExt;
use kube::core::DeserializeGuard;

/// The controller's main kind: a Tenant, or the error of one that cannot be read (so one bad
/// object never breaks the watch).
pub type TenantObject = DeserializeGuard<Tenant>;

/// Where an object in a namespace stands with its tenant.
pub enum Scope {
    /// Its namespace belongs to this Tenant, which this operator reconciles.
    Tenant(Arc<TenantObject>),
    /// Its namespace belongs to no Tenant this operator knows of; the message says so.
    NoTenant(String),
    /// Another operator's tenant (`--tenant-selector`): not this operator's business.
    OutOfScope,
}

/// The tenant of an object in `namespace` (with these `labels`), among the `tenants` this operator
/// caches; `selective`: the operator serves only some Tenants (`--tenant-selector`).
pub fn scope_of(
    namespace: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    tenants: &[Arc<TenantObject>],
    selective: bool,
) -> Scope {
    let readable: Vec<&Tenant> = tenants.iter().filter_map(|t| t.0.as_ref().ok()).collect();
    if let Some(tenant) = tenant_of_namespace(namespace, labels, readable.iter().copied()) {
        let name = tenant.name_any();
        if let Some(found) = tenants.iter().find(|t| t.name_any() == name) {
            return Scope::Tenant(found.clone());
        }
    }
    if selective {
        // A tenant this operator does not select, or none: another operator's business.
        return Scope::OutOfScope;
    }
    Scope::NoTenant(match labels.and_then(|l| l.get(TENANT_LABEL)) {
        Some(tenant) => format!(
            "namespace {namespace} is labelled for Tenant {tenant}, which does not exist or does not list the namespace"
        ),
        None => format!("namespace {namespace} belongs to no govpaas Tenant (its Tenant has not provisioned it yet)"),
    })
}

/// What a Portal or DocumentService needs to know about its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantContext {
    /// The Tenant's name.
    pub name: String,
    /// The electronic agency code (`H49.12`).
    pub agency_code: String,
    /// The agency's name, in Vietnamese.
    pub display_name: String,
    /// The tenant's DNS domain: every host of its services lies here.
    pub domain: String,
    /// Suspended by the provincial admin: workloads at zero.
    pub suspended: bool,
    /// Public hosts the tenant may serve, over all its services.
    pub public_hosts: i32,
    /// The tenant's namespaces.
    pub namespaces: Vec<String>,
}

impl TenantContext {
    /// The context of `tenant` on `platform`.
    pub fn of(tenant: &Tenant, platform: &Platform) -> Self {
        // The status records the domain the tenant controller provisioned; before that, the spec
        // says what it will be.
        let domain = tenant
            .status
            .as_ref()
            .and_then(|s| s.domain.clone())
            .unwrap_or_else(|| tenant.domain(&platform.spec.base_domain));
        TenantContext {
            name: tenant.name_any(),
            agency_code: tenant.spec.agency.code.clone(),
            display_name: tenant.spec.agency.display_name.clone(),
            domain,
            suspended: tenant.spec.suspended,
            public_hosts: tenant.spec.quota.public_hosts,
            namespaces: tenant.namespace_names(),
        }
    }
}

/// The Tenant that owns a namespace, by the namespace's `govpaas.io/tenant` label, if the tenant
/// also lists that namespace (a label copied by hand onto another namespace is not enough).
pub fn tenant_of_namespace<'a>(
    namespace: &str,
    namespace_labels: Option<&std::collections::BTreeMap<String, String>>,
    tenants: impl IntoIterator<Item = &'a Tenant>,
) -> Option<&'a Tenant> {
    let name = namespace_labels?.get(TENANT_LABEL)?;
    tenants.into_iter().find(|t| &t.name_any() == name && t.namespace_names().iter().any(|n| n == namespace))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures;

    #[test]
    fn context_reads_the_tenant_and_defaults_the_domain() {
        let platform = fixtures::platform();
        let mut tenant = fixtures::tenant();
        tenant.status = None;
        let ctx = TenantContext::of(&tenant, &platform);
        assert_eq!(ctx.domain, "so-noi-vu.quangnam.gov.vn");
        assert_eq!(ctx.agency_code, "H49.12");
        assert!(!ctx.suspended);
        assert_eq!(ctx.namespaces, ["so-noi-vu"]);

        tenant.spec.domain = Some("sonoivu.quangnam.gov.vn".into());
        assert_eq!(TenantContext::of(&tenant, &platform).domain, "sonoivu.quangnam.gov.vn");
    }

    #[test]
    fn namespace_label_must_match_a_tenant_that_lists_the_namespace() {
        let tenant = fixtures::tenant();
        let labels = BTreeMap::from([(TENANT_LABEL.to_owned(), "so-noi-vu".to_owned())]);
        assert!(tenant_of_namespace("so-noi-vu", Some(&labels), [&tenant]).is_some());
        // The label copied onto a namespace the tenant does not own.
        assert!(tenant_of_namespace("elsewhere", Some(&labels), [&tenant]).is_none());
        assert!(tenant_of_namespace("so-noi-vu", None, [&tenant]).is_none());
    }
}

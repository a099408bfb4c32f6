//! Quota carving: a child's quota is carved out of its parent's, so the parent's own namespaces
//! get the parent's quota minus its children's and the sum never exceeds the province's budget,
//! whatever order things are applied in. The tenant controller calls [`carve`] and
//! [`split_namespaces`]; an error becomes the `QuotaExceeded` condition and the tenant's
//! ResourceQuotas are left as they were.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::{
    conditions::reasons,
    quantity::{Amount, QuantityError, Style},
    tenant::{NamespaceQuota, Tenant, TenantQuota},
};

/// The resources a quota counts, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// CPU requests.
    Cpu,
    /// Memory requests.
    Memory,
    /// Storage requests.
    Storage,
    /// Pods.
    Pods,
    /// Kubernetes Services.
    Services,
    /// Public host names.
    PublicHosts,
    /// LGSP APIs provided.
    LgspApis,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 7] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Storage,
        Resource::Pods,
        Resource::Services,
        Resource::PublicHosts,
        Resource::LgspApis,
    ];

    /// The field name in `spec.quota`.
    pub fn field(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Storage => "storage",
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::PublicHosts => "publicHosts",
            Resource::LgspApis => "lgspApis",
        }
    }

    /// The ResourceQuota `hard` key that enforces it, if Kubernetes enforces it.
    pub fn resource_quota_key(self) -> Option<&'static str> {
        match self {
            Resource::Cpu => Some("requests.cpu"),
            Resource::Memory => Some("requests.memory"),
            Resource::Storage => Some("requests.storage"),
            Resource::Pods => Some("pods"),
            Resource::Services => Some("services"),
            Resource::PublicHosts | Resource::LgspApis => None,
        }
    }

    fn style(self) -> Style {
        match self {
            Resource::Memory | Resource::Storage => Style::Binary,
            _ => Style::Decimal,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// An exact amount of every resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaVector([Amount; 7]);

impl QuotaVector {
    /// The amount of one resource.
    pub fn get(&self, resource: Resource) -> Amount {
        self.0[resource as usize]
    }

    /// Sets the amount of one resource.
    pub fn set(&mut self, resource: Resource, amount: Amount) {
        self.0[resource as usize] = amount;
    }

    /// The larger amount of each resource.
    pub fn max(&self, other: &QuotaVector) -> QuotaVector {
        let mut out = *self;
        for (mine, theirs) in out.0.iter_mut().zip(other.0) {
            *mine = (*mine).max(theirs);
        }
        out
    }

    /// A tenant's quota.
    pub fn of_tenant(quota: &TenantQuota) -> Result<Self, QuotaError> {
        let mut v = Self::default();
        v.set(Resource::Cpu, parse(Resource::Cpu, &quota.cpu)?);
        v.set(Resource::Memory, parse(Resource::Memory, &quota.memory)?);
        v.set(Resource::Storage, parse(Resource::Storage, &quota.storage)?);
        v.set(Resource::Pods, Amount::from_units(quota.pods.into()));
        v.set(Resource::Services, Amount::from_units(quota.services.into()));
        v.set(Resource::PublicHosts, Amount::from_units(quota.public_hosts.into()));
        v.set(Resource::LgspApis, Amount::from_units(quota.lgsp_apis.into()));
        Ok(v)
    }

    /// A namespace's share (it has no public hosts or LGSP APIs of its own: those are counted per
    /// tenant).
    pub fn of_namespace(quota: &NamespaceQuota) -> Result<Self, QuotaError> {
        let mut v = Self::default();
        v.set(Resource::Cpu, parse(Resource::Cpu, &quota.cpu)?);
        v.set(Resource::Memory, parse(Resource::Memory, &quota.memory)?);
        v.set(Resource::Storage, parse(Resource::Storage, &quota.storage)?);
        v.set(Resource::Pods, Amount::from_units(quota.pods.into()));
        v.set(Resource::Services, Amount::from_units(quota.services.into()));
        Ok(v)
    }

    /// `self + other`, resource by resource.
    pub fn add(&self, other: &QuotaVector) -> Result<QuotaVector, QuotaError> {
        let mut sum = *self;
        for r in Resource::ALL {
            let total = self.get(r).checked_add(other.get(r)).ok_or(QuotaError::Overflow(r))?;
            sum.set(r, total);
        }
        Ok(sum)
    }

    /// `self - other`, resource by resource (may go negative; see [`QuotaVector::excess_over`]).
    pub fn sub(&self, other: &QuotaVector) -> Result<QuotaVector, QuotaError> {
        let mut difference = *self;
        for r in Resource::ALL {
            let d = self.get(r).checked_sub(other.get(r)).ok_or(QuotaError::Overflow(r))?;
            difference.set(r, d);
        }
        Ok(difference)
    }

    /// The resources where `self` asks for more than `limit` has.
    pub fn excess_over(&self, limit: &QuotaVector) -> Vec<Excess> {
        Resource::ALL
            .into_iter()
            .filter(|r| self.get(*r) > limit.get(*r))
            .map(|r| Excess {
                resource: r,
                available: limit.get(r).format(r.style()),
                requested: self.get(r).format(r.style()),
            })
            .collect()
    }

    /// From a quota status map (`status.quota.hard`); resources it lacks are zero.
    pub fn from_status(map: &BTreeMap<String, Quantity>) -> Result<Self, QuotaError> {
        let mut v = Self::default();
        for r in Resource::ALL {
            if let Some(quantity) = map.get(r.field()) {
                v.set(r, parse(r, quantity)?);
            }
        }
        Ok(v)
    }

    /// As a quota status map keyed by `spec.quota` field names.
    pub fn to_status(&self) -> BTreeMap<String, Quantity> {
        Resource::ALL.into_iter().map(|r| (r.field().to_owned(), self.get(r).to_quantity(r.style()))).collect()
    }

    /// As a ResourceQuota's `hard`: the resources Kubernetes enforces.
    pub fn to_resource_quota_hard(&self) -> BTreeMap<String, Quantity> {
        Resource::ALL
            .into_iter()
            .filter_map(|r| {
                r.resource_quota_key().map(|key| (key.to_owned(), self.get(r).to_canonical_quantity(r.style())))
            })
            .collect()
    }
}

fn parse(resource: Resource, quantity: &Quantity) -> Result<Amount, QuotaError> {
    Amount::of(quantity).map_err(|error| QuotaError::Invalid { resource, error })
}

/// One resource over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    /// Which.
    pub resource: Resource,
    /// What there is.
    pub available: String,
    /// What is asked for.
    pub requested: String,
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} > {}", self.resource, self.requested, self.available)
    }
}

fn list(excess: &[Excess]) -> String {
    excess.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Why a quota cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A quantity does not parse (only an object written before the schema existed can get here).
    #[error("spec.quota.{resource}: {error}")]
    Invalid { resource: Resource, error: QuantityError },
    /// A sum does not fit in the arithmetic.
    #[error("spec.quota.{0}: the sum is too large")]
    Overflow(Resource),
    /// The children together ask for more than the tenant has.
    #[error(
        "spec.quota: the child tenants' quotas add up to more than this tenant's ({}); raise this quota or lower theirs",
        list(excess)
    )]
    ChildrenExceed { excess: Vec<Excess> },
    /// The namespaces' shares add up to more than the tenant's own share.
    #[error(
        "spec.namespaces: the namespaces' quota shares add up to more than the tenant's own share, its quota minus its children's ({})",
        list(excess)
    )]
    NamespacesExceed { excess: Vec<Excess> },
}

impl QuotaError {
    /// The condition reason, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self {
            QuotaError::Invalid { .. } | QuotaError::Overflow(_) => reasons::INVALID_SPEC,
            QuotaError::ChildrenExceed { .. } => reasons::QUOTA_EXCEEDED,
            QuotaError::NamespacesExceed { .. } => reasons::NAMESPACE_QUOTA_EXCEEDED,
        }
    }
}

/// A tenant's quota, what its children took, and what is left for its own namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carving {
    /// The tenant's quota.
    pub hard: QuotaVector,
    /// The sum of its children's quotas.
    pub children: QuotaVector,
    /// `hard - children`: what the tenant's own namespaces get.
    pub own: QuotaVector,
}

/// Carves the children's quotas out of the tenant's; fails, naming each resource, when they do
/// not fit.
pub fn carve(tenant: &TenantQuota, children: &[&TenantQuota]) -> Result<Carving, QuotaError> {
    let hard = QuotaVector::of_tenant(tenant)?;
    let mut sum = QuotaVector::default();
    for child in children {
        sum = sum.add(&QuotaVector::of_tenant(child)?)?;
    }
    let excess = sum.excess_over(&hard);
    if !excess.is_empty() {
        return Err(QuotaError::ChildrenExceed { excess });
    }
    Ok(Carving { hard, children: sum, own: hard.sub(&sum)? })
}

/// Each of the tenant's namespaces with its share of `own` (the tenant's own share): one
/// namespace gets all of it; several get the shares they name, which together must fit.
pub fn split_namespaces(tenant: &Tenant, own: &QuotaVector) -> Result<Vec<(String, QuotaVector)>, QuotaError> {
    let names = tenant.namespace_names();
    if tenant.spec.namespaces.len() <= 1 {
        let share = match tenant.spec.namespaces.first().and_then(|n| n.quota.as_ref()) {
            Some(quota) => QuotaVector::of_namespace(quota)?,
            None => *own,
        };
        let excess = share.excess_over(own);
        if !excess.is_empty() {
            return Err(QuotaError::NamespacesExceed { excess });
        }
        return Ok(names.into_iter().map(|n| (n, share)).collect());
    }
    let mut shares = Vec::new();
    let mut sum = QuotaVector::default();
    for namespace in &tenant.spec.namespaces {
        // The schema requires a share for each of several namespaces; an object older than that
        // rule gets none rather than a guess.
        let share = match &namespace.quota {
            Some(quota) => QuotaVector::of_namespace(quota)?,
            None => QuotaVector::default(),
        };
        sum = sum.add(&share)?;
        shares.push((namespace.name.clone(), share));
    }
    // Public hosts and LGSP APIs are counted per tenant, not per namespace.
    let mut limit = *own;
    limit.set(Resource::PublicHosts, Amount::ZERO);
    limit.set(Resource::LgspApis, Amount::ZERO);
    let excess = sum.excess_over(&limit);
    if !excess.is_empty() {
        return Err(QuotaError::NamespacesExceed { excess });
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{Agency, TenantNamespace, TenantSpec};

    fn quota(cpu: &str, memory: &str, storage: &str, pods: i32) -> TenantQuota {
        TenantQuota {
            cpu: Quantity(cpu.into()),
            memory: Quantity(memory.into()),
            storage: Quantity(storage.into()),
            pods,
            services: pods / 2,
            public_hosts: pods / 5,
            lgsp_apis: pods / 10,
        }
    }

    fn ns_quota(cpu: &str, memory: &str, pods: i32) -> NamespaceQuota {
        NamespaceQuota {
            cpu: Quantity(cpu.into()),
            memory: Quantity(memory.into()),
            storage: Quantity("10Gi".into()),
            pods,
            services: 1,
        }
    }

    fn tenant(namespaces: Vec<TenantNamespace>) -> Tenant {
        Tenant::new(
            "so-noi-vu",
            TenantSpec {
                agency: Agency {
                    code: "H49.12".into(),
                    display_name: "Sở Nội vụ".into(),
                    level: crate::AgencyLevel::Department,
                },
                parent: Some("quang-nam".into()),
                domain: None,
                admins: Default::default(),
                quota: quota("8", "16Gi", "100Gi", 100),
                namespaces,
                suspended: false,
                exposure: Default::default(),
            },
        )
    }

    #[test]
    fn the_parent_keeps_its_quota_minus_its_childrens() {
        let province = quota("64", "128Gi", "2Ti", 1000);
        let a = quota("8", "16Gi", "100Gi", 100);
        let b = quota("500m", "1536Mi", "50Gi", 20);
        let carving = carve(&province, &[&a, &b]).unwrap();
        assert_eq!(carving.own.get(Resource::Cpu), Amount::parse("55.5").unwrap());
        let own = carving.own.to_status();
        assert_eq!(own["cpu"], Quantity("55500m".into()));
        assert_eq!(own["memory"], Quantity("113152Mi".into()));
        assert_eq!(own["storage"], Quantity("1898Gi".into()));
        assert_eq!(own["pods"], Quantity("880".into()));
        assert_eq!(own["services"], Quantity("440".into()));
        assert_eq!(own["publicHosts"], Quantity("176".into()));
        assert_eq!(carving.children.to_status()["cpu"], Quantity("8500m".into()));
        // Hard = own + children, exactly.
        assert_eq!(carving.own.add(&carving.children).unwrap(), carving.hard);
    }

    #[test]
    fn children_that_do_not_fit_are_refused_naming_each_resource() {
        let parent = quota("4", "8Gi", "100Gi", 50);
        let a = quota("3", "4Gi", "10Gi", 10);
        let b = quota("1500m", "4Gi", "10Gi", 10);
        let err = carve(&parent, &[&a, &b]).unwrap_err();
        assert_eq!(err.reason(), "QuotaExceeded");
        let QuotaError::ChildrenExceed { excess } = &err else { panic!("{err:?}") };
        assert_eq!(excess, &[Excess { resource: Resource::Cpu, available: "4".into(), requested: "4500m".into() }]);
        assert!(err.to_string().contains("cpu 4500m > 4"), "{err}");
        // Exactly full is fine.
        let b = quota("1", "4Gi", "10Gi", 10);
        let carving = carve(&parent, &[&a, &b]).unwrap();
        assert_eq!(carving.own.get(Resource::Cpu), Amount::ZERO);
        assert_eq!(carving.own.get(Resource::Memory), Amount::ZERO);
    }

    #[test]
    fn counts_are_carved_too() {
        let mut parent = quota("4", "8Gi", "100Gi", 50);
        parent.lgsp_apis = 3;
        let mut child = quota("1", "1Gi", "1Gi", 1);
        child.lgsp_apis = 4;
        let err = carve(&parent, &[&child]).unwrap_err();
        assert!(err.to_string().contains("lgspApis 4 > 3"), "{err}");
    }

    #[test]
    fn unparsable_quantities_name_the_field() {
        let parent = quota("lots", "8Gi", "100Gi", 50);
        let err = carve(&parent, &[]).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().starts_with("spec.quota.cpu:"), "{err}");
    }

    #[test]
    fn resource_quota_hard_holds_what_kubernetes_enforces() {
        let hard = QuotaVector::of_tenant(&quota("2", "4Gi", "20Gi", 30)).unwrap().to_resource_quota_hard();
        assert_eq!(
            hard.keys().collect::<Vec<_>>(),
            ["pods", "requests.cpu", "requests.memory", "requests.storage", "services"]
        );
        assert_eq!(hard["requests.memory"], Quantity("4Gi".into()));
    }

    #[test]
    fn one_namespace_gets_the_whole_own_share() {
        let t = tenant(vec![]);
        let own = QuotaVector::of_tenant(&t.spec.quota).unwrap();
        let shares = split_namespaces(&t, &own).unwrap();
        assert_eq!(shares, [("so-noi-vu".to_owned(), own)]);
    }

    #[test]
    fn several_namespaces_split_the_own_share() {
        let t = tenant(vec![
            TenantNamespace { name: "mot-cua".into(), quota: Some(ns_quota("6", "8Gi", 60)) },
            TenantNamespace { name: "van-thu".into(), quota: Some(ns_quota("2", "8Gi", 40)) },
        ]);
        let own = QuotaVector::of_tenant(&t.spec.quota).unwrap();
        let shares = split_namespaces(&t, &own).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].0, "mot-cua");
        assert_eq!(shares[1].1.get(Resource::Pods), Amount::from_units(40));

        let greedy = tenant(vec![
            TenantNamespace { name: "mot-cua".into(), quota: Some(ns_quota("6", "8Gi", 60)) },
            TenantNamespace { name: "van-thu".into(), quota: Some(ns_quota("2500m", "8Gi", 40)) },
        ]);
        let err = split_namespaces(&greedy, &own).unwrap_err();
        assert_eq!(err.reason(), "NamespaceQuotaExceeded");
        assert!(err.to_string().contains("cpu 8500m > 8"), "{err}");
    }

    #[test]
    fn a_single_named_namespace_with_a_share_may_not_exceed_the_own_share() {
        let t = tenant(vec![TenantNamespace { name: "mot-cua".into(), quota: Some(ns_quota("9", "8Gi", 10)) }]);
        let own = QuotaVector::of_tenant(&t.spec.quota).unwrap();
        assert!(matches!(split_namespaces(&t, &own), Err(QuotaError::NamespacesExceed { .. })));
    }
}

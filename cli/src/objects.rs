//! What every command reads off govpaas objects: readiness from conditions, which tenant a
//! namespace belongs to, quantities printed the way the operator prints them.

use std::collections::BTreeMap;

use govpaas_crds::Tenant;
use govpaas_crds::conditions::{READY, SUSPENDED};
use govpaas_crds::quantity::Amount;
use govpaas_crds::quota::{QuotaVector, Resource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

/// The `Ready` condition as the report shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `True`, `False` or `Unknown` (also when the operator has not written the condition yet).
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "True"
    }

    /// `Ready`, `NotReady: <reason>` or `Unknown`, for a table.
    pub fn label(&self) -> String {
        match self.status.as_str() {
            "True" => "Ready".into(),
            "False" if self.reason.is_empty() => "NotReady".into(),
            "False" => format!("NotReady: {}", self.reason),
            _ => "Unknown".into(),
        }
    }
}

/// The condition of type `kind`, if written.
pub fn condition<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

/// The `Ready` condition of an object's conditions.
pub fn readiness(conditions: &[Condition]) -> Readiness {
    match condition(conditions, READY) {
        Some(c) => Readiness { status: c.status.clone(), reason: c.reason.clone(), message: c.message.clone() },
        None => Readiness { status: "Unknown".into(), reason: String::new(), message: String::new() },
    }
}

pub fn tenant_conditions(tenant: &Tenant) -> &[Condition] {
    tenant.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
}

/// Suspended by its spec, or still reported suspended (resuming).
pub fn is_suspended(tenant: &Tenant) -> bool {
    tenant.spec.suspended || condition(tenant_conditions(tenant), SUSPENDED).is_some_and(|c| c.status == "True")
}

/// Which Tenant owns each namespace: the namespaces its status says were provisioned, else the
/// ones its spec names.
pub fn namespace_owners(tenants: &[Tenant]) -> BTreeMap<String, &Tenant> {
    let mut owners = BTreeMap::new();
    for tenant in tenants {
        let provisioned = tenant.status.as_ref().map(|s| s.namespaces.clone()).unwrap_or_default();
        let namespaces = if provisioned.is_empty() { tenant.namespace_names() } else { provisioned };
        for namespace in namespaces {
            owners.entry(namespace).or_insert(tenant);
        }
    }
    owners
}

/// Tenants by name.
pub fn by_name(tenants: &[Tenant]) -> BTreeMap<String, &Tenant> {
    tenants.iter().map(|t| (t.name_any(), t)).collect()
}

/// An amount printed as the operator prints it in status (`8`, `500m`, `16Gi`).
pub fn format_amount(resource: Resource, amount: Amount) -> String {
    let mut vector = QuotaVector::default();
    vector.set(resource, amount);
    vector.to_status().remove(resource.field()).map(|q| q.0).unwrap_or_else(|| amount.to_string())
}

/// `part` as a percentage of `whole`, to one decimal; `None` when `whole` is zero.
pub fn percent(part: Amount, whole: Amount) -> Option<f64> {
    if whole.nanos() <= 0 {
        return None;
    }
    // Tenths of a percent, rounded half up, in integers: quantities are exact and so is this.
    let tenths = (part.nanos() * 2000 + whole.nanos()) / (2 * whole.nanos());
    Some(tenths as f64 / 10.0)
}

/// A percentage for a table: whole numbers, `<1%` for a little, `-` for unknown.
pub fn percent_label(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v > 0.0 && v < 1.0 => "<1%".into(),
        Some(v) => format!("{:.0}%", v.round()),
    }
}

/// A resource by its `spec.quota` field name (`cpu`, `publicHosts`, …).
pub fn resource_named(field: &str) -> Option<Resource> {
    Resource::ALL.into_iter().find(|r| r.field() == field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn percentages_are_exact_and_rounded_half_up() {
        assert_eq!(percent(amount("1500m"), amount("4")), Some(37.5));
        assert_eq!(percent(amount("1"), amount("3")), Some(33.3));
        assert_eq!(percent(amount("2"), amount("3")), Some(66.7));
        assert_eq!(percent(amount("512Mi"), amount("1Gi")), Some(50.0));
        assert_eq!(percent(amount("1"), amount("0")), None);
        assert_eq!(percent_label(Some(0.3)), "<1%");
        assert_eq!(percent_label(Some(0.0)), "0%");
        assert_eq!(percent_label(Some(66.7)), "67%");
        assert_eq!(percent_label(None), "-");
    }

    #[test]
    fn amounts_print_as_the_operator_prints_them() {
        assert_eq!(format_amount(Resource::Memory, amount("16384Mi")), "16Gi");
        assert_eq!(format_amount(Resource::Cpu, amount("0.5")), "500m");
        assert_eq!(format_amount(Resource::Pods, amount("30")), "30");
    }
}

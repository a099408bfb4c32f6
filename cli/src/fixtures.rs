//! Test fixtures: the Đà Nẵng examples as the operator would report them once applied, plus the
//! hand-written statuses of `testdata/` (a refused clinic, a suspended commune, usage, CAs).

use std::collections::BTreeMap;

use govpaas_crds::conditions::{READY, reasons};
use govpaas_crds::quota::{QuotaVector, Resource};
use govpaas_crds::tenant::QuotaStatus;
use govpaas_crds::{DataSharingService, DocumentService, Platform, Portal, Tenant, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

const EXAMPLE_TENANTS: [&str; 4] = [
    include_str!("../../examples/danang/10-province.yaml"),
    include_str!("../../examples/danang/20-departments.yaml"),
    include_str!("../../examples/danang/30-communes.yaml"),
    include_str!("../../examples/danang/40-units.yaml"),
];
const TENANTS: &str = include_str!("../testdata/tenants.yaml");
pub const PLATFORM: &str = include_str!("../../examples/danang/00-platform.yaml");
pub const PORTALS: &str = include_str!("../../examples/danang/50-portals.yaml");
pub const DOCUMENT_SERVICES: &str = include_str!("../../examples/danang/60-document-services.yaml");
pub const DATA_SHARING: &str = include_str!("../../examples/danang/70-data-sharing.yaml");

/// The objects of `kind` in a multi-document YAML file (other kinds skipped).
pub fn objects<K: DeserializeOwned>(yaml: &str, kind: &str) -> Vec<K> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("a YAML document"))
        .filter(|doc| doc.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .map(|doc| serde_yaml::from_value(doc).expect("an object of its kind"))
        .collect()
}

pub fn tenants(yaml: &str) -> Vec<Tenant> {
    objects(yaml, "Tenant")
}

pub fn portals() -> Vec<Portal> {
    objects(PORTALS, "Portal")
}

pub fn document_services() -> Vec<DocumentService> {
    objects(DOCUMENT_SERVICES, "DocumentService")
}

pub fn data_sharing() -> Vec<DataSharingService> {
    objects(DATA_SHARING, "DataSharingService")
}

pub fn platform() -> Platform {
    objects(PLATFORM, "Platform").remove(0)
}

pub fn time(text: &str) -> Time {
    Time(text.parse().expect("an RFC 3339 time"))
}

pub fn ready_condition(status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: time("2026-12-01T08:00:00Z"),
        observed_generation: Some(1),
    }
}

/// The Đà Nẵng examples and the refused clinic, with statuses.
pub fn danang() -> Vec<Tenant> {
    let mut all: Vec<Tenant> = EXAMPLE_TENANTS.iter().flat_map(|yaml| tenants(yaml)).collect();
    let mut overrides: BTreeMap<String, Tenant> = BTreeMap::new();
    for tenant in tenants(TENANTS) {
        if all.iter().any(|t| t.name_any() == tenant.name_any()) {
            overrides.insert(tenant.name_any(), tenant);
        } else {
            all.push(tenant);
        }
    }
    let refused: Vec<String> = all.iter().filter(|t| t.status.is_some()).map(|t| t.name_any()).collect();
    let specs = all.clone();
    for tenant in &mut all {
        let name = tenant.name_any();
        let children: Vec<&Tenant> = specs.iter().filter(|t| t.spec.parent.as_deref() == Some(&name)).collect();
        let mut status = tenant.status.take().unwrap_or_else(|| applied(tenant, &children, &refused));
        status.children = children.iter().map(|c| c.name_any()).collect();
        status.children.sort();
        if let Some(over) = overrides.remove(&name) {
            tenant.spec.suspended = over.spec.suspended;
            let over = over.status.unwrap_or_default();
            if !over.conditions.is_empty() {
                status.conditions = over.conditions;
            }
            if let (Some(quota), Some(used)) = (status.quota.as_mut(), over.quota.map(|q| q.used)) {
                quota.used = used;
            }
            status.ca = over.ca.or(status.ca);
        }
        tenant.status = Some(status);
    }
    all
}

/// The status of a Tenant applied as declared, its children (but the refused ones) carved out,
/// nothing in use.
fn applied(tenant: &Tenant, children: &[&Tenant], refused: &[String]) -> TenantStatus {
    let hard = QuotaVector::of_tenant(&tenant.spec.quota).expect("a quota");
    let mut carved = QuotaVector::default();
    for child in children.iter().filter(|c| !refused.contains(&c.name_any())) {
        carved = carved.add(&QuotaVector::of_tenant(&child.spec.quota).expect("a quota")).expect("a sum");
    }
    let own = hard.sub(&carved).expect("a difference");
    let mut used = QuotaVector::default().to_status();
    used.retain(|field, _| Resource::ALL.iter().any(|r| r.field() == field && r.resource_quota_key().is_some()));
    TenantStatus {
        observed_generation: Some(1),
        conditions: vec![ready_condition("True", reasons::RECONCILED, "provisioned")],
        domain: Some(format!("{}.danang.gov.vn", tenant.name_any())),
        namespaces: vec![tenant.name_any()],
        quota: Some(QuotaStatus { hard: hard.to_status(), children: carved.to_status(), own: own.to_status(), used }),
        ..TenantStatus::default()
    }
}

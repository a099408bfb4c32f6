//! What a Portal and a DocumentService have in common: each is a web workload the operator runs
//! for an agency in its tenant namespace — a Deployment that Pod Security `restricted` admits, a
//! Service, an Ingress with TLS from the tenant CA — that must fit the tenant's quota, stops while
//! the tenant is suspended, and may not serve a host another service already serves.
//!
//! Everything here is pure: the controllers in `portal` and `document` read the world (through
//! `service`), hand it to these functions and apply what comes back. Certificates (keep or issue,
//! the CA Secrets) are `crate::certificates`; the tenant facts are `crate::tenancy`.
//!
//! - [`names`]: the child objects' names, and the check that a service's name can carry them;
//! - [`pod`]: restricted pod templates, resources from the Platform's size presets;
//! - [`objects`]: Service, Ingress, PodDisruptionBudget and TLS Secret builders, owner references;
//! - [`hosts`]: which service owns a host, and how many public hosts a tenant has left;
//! - [`quota_fit`]: whether a service fits its namespace's ResourceQuotas, naming what is short;
//! - [`status`]: the conditions of a running workload, from what was applied.

pub mod hosts;
pub mod names;
pub mod objects;
pub mod pod;
pub mod quota_fit;
pub mod status;

use crate::reconcile::Problem;

/// The condition reason for hosts outside the tenant's domain (the admission policy refuses them;
/// this catches a tenant whose domain changed afterwards).
pub const HOST_NOT_IN_DOMAIN: &str = "HostNotInTenantDomain";

/// Checks a service's hosts: each is the tenant's domain or under it, and no older service
/// (`ordered` is every claim, oldest first) serves it already.
pub fn check_hosts(me: &hosts::HostClaim, domain: &str, ordered: &[hosts::HostClaim]) -> Option<Problem> {
    let outside: Vec<&str> =
        me.hosts.iter().filter(|h| !govpaas_pki::identity::is_within_domain(h, domain)).map(String::as_str).collect();
    if !outside.is_empty() {
        return Some(Problem {
            reason: HOST_NOT_IN_DOMAIN,
            message: format!(
                "{} must be the tenant domain {domain} or end with .{domain}; the tenant CA can certify no other host",
                outside.join(", ")
            ),
        });
    }
    hosts::conflict_message(&hosts::conflicts(me, ordered))
        .map(|message| Problem { reason: govpaas_crds::conditions::reasons::HOST_CONFLICT, message })
}

/// What a quota check compares.
pub struct QuotaCheck<'a> {
    /// The service's namespace.
    pub namespace: &'a str,
    /// The namespace's ResourceQuotas, with status.
    pub quotas: &'a [k8s_openapi::api::core::v1::ResourceQuota],
    /// What the service will hold.
    pub wanted: quota_fit::Usage,
    /// What it was admitted with (its Deployment's `spec.replicas`, its claim, its Service).
    pub admitted: quota_fit::Usage,
    /// What of that it holds now (Pods that exist), counted in the quota's `used`.
    pub held: quota_fit::Usage,
    /// The StorageClass of its volume, for per-class quotas.
    pub storage_class: Option<&'a str>,
    /// The tenant's `quota.publicHosts`.
    pub public_hosts_quota: i32,
    /// Public hosts the tenant's older services use.
    pub public_hosts_used_before: i64,
    /// The service's public hosts.
    pub public_hosts: usize,
    /// The public hosts it serves now (its Ingress's).
    pub current_public_hosts: usize,
}

/// Checks that a service fits its quota, naming every short resource.
pub fn check_quota(check: &QuotaCheck<'_>) -> Option<Problem> {
    let mut short =
        quota_fit::shortfalls(check.quotas, &check.wanted, &check.admitted, &check.held, check.storage_class);
    // As for every resource, only more hosts than it serves now can be short.
    if check.public_hosts > check.current_public_hosts {
        short.extend(quota_fit::public_hosts_shortfall(
            check.public_hosts_quota,
            check.public_hosts_used_before,
            check.public_hosts,
        ));
    }
    (!short.is_empty()).then(|| Problem {
        reason: govpaas_crds::conditions::reasons::QUOTA_EXCEEDED,
        message: quota_fit::message(check.namespace, &short),
    })
}

//! The steps the Deployment-backed services (Portal, DocumentService) share, and the certificate
//! step every service shares: what a workload holds of its quota now, whether its hosts are free
//! and it fits, and keep-or-issue of a certificate Secret.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use time::OffsetDateTime;

use super::runtime::{Authority, Shared};
use crate::certificates::leaf::{Leaf, LeafSpec, Stored, keep_or_issue};
use crate::reconcile::known::Lookup;
use crate::reconcile::outcome::{Halt, Step, Stop};
use crate::tenancy::TenantContext;
use crate::workload::hosts::{self, HostClaim};
use crate::workload::quota_fit::Usage;
use crate::workload::{QuotaCheck, check_hosts, check_quota};

/// What a workload holds of its namespace's quota now, as stored.
pub struct Current {
    /// Its Deployment, if it exists.
    pub deployment: Option<Deployment>,
    /// What it was admitted with (its Deployment's `spec.replicas`, its Service, its claim).
    pub admitted: Usage,
    /// What of that it holds now (Pods that exist).
    pub held: Usage,
    /// The public hosts its Ingress serves.
    pub public_hosts: usize,
}

impl Current {
    /// Adds what else it holds (a volume claim).
    pub fn plus(mut self, usage: Usage) -> Self {
        self.admitted = self.admitted.plus(usage);
        self.held = self.held.plus(usage);
        self
    }
}

/// Reads what the workload named `workload` in `namespace` holds now: its Deployment and Ingress
/// (their spec decides the quota; read from the API server only when changed since last read or
/// applied), its Service from the metadata `services`.
pub async fn current(
    client: &Client,
    services: &Store<PartialObjectMeta<k8s_openapi::api::core::v1::Service>>,
    deployments: Lookup<'_, Deployment>,
    ingresses: Lookup<'_, Ingress>,
    namespace: &str,
    workload: &str,
) -> Step<Current> {
    let deployment = deployments.get(client, namespace, workload).await?.map(|d| d.as_ref().clone());
    let mut current = Current {
        admitted: deployment.as_ref().map(Usage::admitted_by).unwrap_or_default(),
        held: deployment.as_ref().map(Usage::held_by).unwrap_or_default(),
        deployment,
        public_hosts: 0,
    };
    if services.get(&ObjectRef::new(workload).within(namespace)).is_some() {
        current = current.plus(Usage::one_service());
    }
    let ingress = ingresses.get(client, namespace, workload).await?;
    current.public_hosts =
        ingress.and_then(|i| i.spec.as_ref().and_then(|s| s.rules.as_ref().map(Vec::len))).unwrap_or(0);
    Ok(current)
}

/// Refuses a service whose hosts lie outside its tenant's domain or are served by an older
/// service; returns every service's claim, oldest first.
pub fn hosts_free(shared: &Shared, tenant: &TenantContext, claim: &HostClaim) -> Step<Vec<HostClaim>> {
    let ordered = shared.host_claims();
    match check_hosts(claim, &tenant.domain, &ordered) {
        Some(problem) => Err(Stop::refused(problem)),
        None => Ok(ordered),
    }
}

/// What a workload asks of its namespace's quota.
pub struct Ask<'a> {
    pub claim: &'a HostClaim,
    /// Every claim, oldest first ([`hosts_free`]).
    pub ordered: &'a [HostClaim],
    pub wanted: Usage,
    pub public_hosts: usize,
    pub storage_class: Option<&'a str>,
}

/// Refuses a workload that does not fit its namespace's quotas or its tenant's public hosts,
/// naming everything short.
pub fn fits(shared: &Shared, tenant: &TenantContext, namespace: &str, ask: &Ask<'_>, current: &Current) -> Step<()> {
    let quotas = shared.quotas_in(namespace);
    let check = QuotaCheck {
        namespace,
        quotas: &quotas,
        wanted: ask.wanted,
        admitted: current.admitted,
        held: current.held,
        storage_class: ask.storage_class,
        public_hosts_quota: tenant.public_hosts,
        public_hosts_used_before: hosts::used_before(ask.claim, ask.ordered, &tenant.namespaces),
        public_hosts: ask.public_hosts,
        current_public_hosts: current.public_hosts,
    };
    match check_quota(&check) {
        Some(problem) => Err(Stop::refused(problem)),
        None => Ok(()),
    }
}

/// The leaf stored in `secret` if it is still right for `spec`, else a new one from the tenant CA;
/// `what` names it in the message when it cannot be issued ("the TLS certificate for a.gov.vn").
/// The stored Secret is read from the API server only when changed since last read.
#[allow(clippy::too_many_arguments)]
pub async fn certificate(
    client: &Client,
    secrets: Lookup<'_, Secret>,
    namespace: &str,
    secret: &str,
    spec: &LeafSpec,
    authority: &Authority,
    now: OffsetDateTime,
    what: &str,
) -> Step<Leaf> {
    let stored = secrets.get(client, namespace, secret).await?;
    keep_or_issue(Stored::of(stored.as_deref()), spec, &authority.issuer(), now)
        .map_err(|err| Halt::CertificateFailed(format!("cannot issue {what}: {err}")).into())
}

//! One reconcile of one Portal: read → validate (name, hosts, quota) → certificate → build →
//! apply → prune → status and Events. Only the reads of the Portal's own objects, the CA Secrets
//! and the applies talk to the API server; every decision is a pure function.

use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::Portal;
use govpaas_crds::portal::PortalStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use time::OffsetDateTime;
use tracing::{Instrument, debug, info, info_span};

use super::build::{self, COMPONENT, Inputs, Names};
use crate::certificates::leaf::{LeafSpec, Stored, keep_or_issue};
use crate::error::{Error, Result};
use crate::reconcile::apply::{self, Applier};
use crate::reconcile::conditions;
use crate::telemetry::CertificateKey;
use crate::tenancy::Scope;
use crate::workload::quota_fit::Usage;
use crate::workload::runtime::{PortalObject, ServiceContext};
use crate::workload::status::{self, Applied, Outcome};
use crate::workload::{Problem, QuotaCheck, check_hosts, check_quota, hosts};
use govpaas_pki::renewal::requeue_after;

/// The safety-net resync of an unchanged Portal.
pub const RESYNC: Duration = Duration::from_secs(3600);

/// Caches of what the Portal controller owns: metadata only, for wake-ups and pruning.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub ingresses: Store<PartialObjectMeta<Ingress>>,
    pub pod_disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

/// What every Portal reconcile shares.
pub type Context = ServiceContext<Caches>;

/// Reconciles one Portal.
pub async fn reconcile(object: Arc<PortalObject>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        controller = COMPONENT,
        namespace = %object.namespace().unwrap_or_default(),
        portal = %object.name_any()
    );
    ctx.when_readable(&object, "Portal", |portal| reconcile_portal(portal, &ctx)).instrument(span).await
}

/// What status keeps from what runs when a reconcile applies nothing.
fn kept(portal: &Portal) -> PortalStatus {
    portal.status.clone().unwrap_or_default()
}

async fn reconcile_portal(portal: &Portal, ctx: &Context) -> Result<Action> {
    let shared = &ctx.shared;
    if portal.metadata.deletion_timestamp.is_some() {
        // Its children carry owner references: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let namespace = portal.namespace().ok_or(Error::MissingField { kind: "Portal", field: "metadata.namespace" })?;
    let uid = portal.uid().ok_or(Error::MissingField { kind: "Portal", field: "metadata.uid" })?;
    let name = portal.name_any();

    // Read: the tenant and the Platform.
    let tenant = match shared.scope(&namespace) {
        Scope::OutOfScope => return Ok(Action::await_change()),
        Scope::NoTenant(message) => return waiting(ctx, portal, message).await,
        Scope::Tenant(tenant) => tenant,
    };
    let Ok(tenant) = &tenant.0 else {
        return waiting(ctx, portal, format!("the Tenant of namespace {namespace} cannot be read")).await;
    };
    let Some(platform) = shared.platform() else {
        return waiting(ctx, portal, "no Platform named default exists yet".into()).await;
    };
    let tenant_context = shared.tenant_context(tenant, &platform, &namespace);
    let inputs = Inputs { portal, platform: &platform.spec, tenant: &tenant_context };
    let names = Names::of(portal);

    // Validate: the name, the hosts, the quota.
    if let Some(problem) = build::validate(&inputs) {
        return refused(ctx, portal, &problem).await;
    }
    let ordered = shared.host_claims();
    let claim = inputs.host_claim();
    if let Some(problem) = check_hosts(&claim, &tenant_context.domain, &ordered) {
        return refused(ctx, portal, &problem).await;
    }
    let wanted = match inputs.usage() {
        Ok(usage) => usage,
        Err(problem) => return refused(ctx, portal, &problem).await,
    };
    let client = shared.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment = deployments.get_opt(&names.workload).await?;
    let mut admitted = deployment.as_ref().map(Usage::admitted_by).unwrap_or_default();
    let mut held = deployment.as_ref().map(Usage::held_by).unwrap_or_default();
    if ctx.caches.services.get(&ObjectRef::new(&names.workload).within(&namespace)).is_some() {
        admitted = admitted.plus(Usage::one_service());
        held = held.plus(Usage::one_service());
    }
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
    let current_public_hosts = ingresses
        .get_opt(&names.workload)
        .await?
        .and_then(|i| i.spec.and_then(|s| s.rules))
        .map_or(0, |rules| rules.len());
    let quotas = shared.quotas_in(&namespace);
    let check = QuotaCheck {
        namespace: &namespace,
        quotas: &quotas,
        wanted,
        admitted,
        held,
        storage_class: None,
        public_hosts_quota: tenant_context.public_hosts,
        public_hosts_used_before: hosts::used_before(&claim, &ordered, &tenant_context.namespaces),
        public_hosts: inputs.hosts().len(),
        current_public_hosts,
    };
    if let Some(problem) = check_quota(&check) {
        return refused(ctx, portal, &problem).await;
    }

    // The certificate of the hosts: kept while it is right, else issued by the tenant CA.
    let now = OffsetDateTime::now_utc();
    let authority = match shared.authority(&tenant_context, &platform, now).await? {
        Ok(authority) => authority,
        Err(message) => return waiting(ctx, portal, message).await,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let stored_secret = secrets.get_opt(&names.tls_secret).await?;
    let stored = Stored::of(stored_secret.as_ref());
    let hosts = inputs.hosts();
    let leaf = match keep_or_issue(stored, &LeafSpec::Server { dns_names: hosts.clone() }, &authority.issuer(), now) {
        Ok(leaf) => leaf,
        Err(err) => {
            let message = format!("cannot issue the TLS certificate for {}: {err}", hosts.join(", "));
            return certificate_failed(ctx, portal, message).await;
        }
    };

    // Build and apply; then prune what this Portal made before and no longer wants.
    let desired = build::build(&inputs, &leaf.material)?;
    let mut applier = Applier::new(client.clone());
    let applied = match apply_desired(&mut applier, &desired).await {
        Ok(deployment) => deployment,
        Err(err) if apply::is_conflict(&err) => return Ok(status::changed_meanwhile(&err)),
        Err(Error::Kube(err)) => match status::refusal(&err, "applying the Portal's objects") {
            Some(problem) => return refused(ctx, portal, &problem).await,
            None => return Err(Error::Kube(err)),
        },
        Err(other) => return Err(other),
    };
    let caches = &ctx.caches;
    let mut pruned = Vec::new();
    pruned.extend(applier.prune(&caches.pod_disruption_budgets.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.ingresses.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.services.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.deployments.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.secrets.state(), COMPONENT, &name, &uid).await?);
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the Portal no longer wants");
    }

    let reference = portal.object_ref(&());
    let what = format!("TLS certificate for {}", hosts.join(", "));
    shared.publish_issued(&reference, &what, &leaf).await;
    for key in certificate_keys_of(&namespace, &name) {
        shared.observe_certificate(key, &leaf, &authority.policy);
    }

    let url = inputs.url();
    let outcome = Outcome::Applied(Applied {
        deployment: &applied,
        replicas: inputs.replicas(),
        declared_replicas: portal.spec.replicas,
        suspended: tenant_context.suspended.then_some(tenant_context.name.as_str()),
        held_by: None,
        url: url.as_deref(),
        certificates: vec![(what.as_str(), &leaf)],
    });
    let status = PortalStatus {
        url: url.clone(),
        ready_replicas: Some(status::replica_counts(&applied).0),
        certificate: Some(status::certificate_status(&names.tls_secret, &leaf, &authority.policy)),
        ..PortalStatus::default()
    };
    write_status(ctx, portal, &outcome, status).await?;
    debug!("applied Portal {namespace}/{name}");
    let renewal = requeue_after(now, leaf.renewal_time(&authority.policy));
    Ok(Action::requeue(renewal.min(RESYNC)))
}

/// The gauge keys of a Portal's certificates.
pub fn certificate_keys(portal: &PortalObject) -> Vec<CertificateKey> {
    certificate_keys_of(&portal.namespace().unwrap_or_default(), &portal.name_any())
}

fn certificate_keys_of(namespace: &str, name: &str) -> Vec<CertificateKey> {
    vec![CertificateKey {
        namespace: namespace.to_owned(),
        secret: format!("{name}{}-tls", build::SUFFIX),
        kind: "server",
    }]
}

/// Applies the objects in dependency order (the Secret before the Ingress that names it) and
/// returns the Deployment as stored.
async fn apply_desired(applier: &mut Applier, desired: &build::Desired) -> Result<Deployment> {
    applier.apply(&desired.tls_secret).await?;
    applier.apply(&desired.service).await?;
    let deployment = applier.apply(&desired.deployment).await?;
    applier.apply(&desired.ingress).await?;
    if let Some(budget) = &desired.pod_disruption_budget {
        applier.apply(budget).await?;
    }
    Ok(deployment)
}

async fn waiting(ctx: &Context, portal: &Portal, message: String) -> Result<Action> {
    write_status(ctx, portal, &Outcome::Waiting(message), kept(portal)).await?;
    // What it waits for (the Platform, the Tenant, its namespace) wakes it when it comes.
    Ok(Action::requeue(RESYNC))
}

async fn refused(ctx: &Context, portal: &Portal, problem: &Problem) -> Result<Action> {
    info!(reason = problem.reason, message = %problem.message, "Portal not applied");
    write_status(ctx, portal, &Outcome::Refused(problem), kept(portal)).await?;
    // A change of the Portal, its quota or the services in its way wakes it.
    Ok(Action::requeue(RESYNC))
}

async fn certificate_failed(ctx: &Context, portal: &Portal, message: String) -> Result<Action> {
    write_status(ctx, portal, &Outcome::CertificateFailed(message), kept(portal)).await?;
    Ok(Action::requeue(RESYNC))
}

/// Writes the status for `outcome` over `base` (url, replicas, certificate), a no-op on the
/// server when nothing changed, and publishes the Events of the conditions that changed.
async fn write_status(ctx: &Context, portal: &Portal, outcome: &Outcome<'_>, base: PortalStatus) -> Result<()> {
    let previous = portal.status.as_ref();
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let desired = status::conditions(outcome, previous_conditions);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = PortalStatus {
        observed_generation: portal.metadata.generation,
        conditions: conditions::merge(previous_conditions, &desired, portal.metadata.generation, &now),
        ..base
    };
    let api: Api<Portal> = Api::namespaced(ctx.shared.client.clone(), &portal.namespace().unwrap_or_default());
    ctx.shared.status_writes.write(&api, portal, previous, &new_status).await?;
    ctx.shared.publish_changes(&portal.object_ref(&()), previous_conditions, &desired).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn certificate_gauges_name_the_secret_the_portal_writes() {
        let portal = fixtures::portal();
        let keys = certificate_keys(&kube::core::DeserializeGuard(Ok(portal.clone())));
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].secret, Names::of(&portal).tls_secret);
        assert_eq!(keys[0].namespace, "so-noi-vu");
    }
}

//! One reconcile of one Portal, the Portal's part of `crate::service::pipeline`: validate (name,
//! hosts, quota) → certificate → build → apply and prune → status. Only the reads of the Portal's
//! own objects, the CA Secrets and the applies talk to the API server; every decision is a pure
//! function.

use std::sync::Arc;

use govpaas_crds::Portal;
use govpaas_crds::conditions::PORTAL;
use govpaas_crds::portal::PortalStatus;
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use time::OffsetDateTime;
use tracing::{debug, info};

use super::build::{self, COMPONENT, Inputs, Names};
use crate::certificates::leaf::LeafSpec;
use crate::error::Error;
use crate::reconcile::apply::Applier;
use crate::reconcile::known::Lookup;
use crate::reconcile::outcome::{Step, Stop};
use crate::service::owned::{self, DesiredSet, Owned, OwnedKey, OwnedKind};
use crate::service::pipeline::{self, Applied, Read, ServiceKind};
use crate::service::runtime::ServiceContext;
use crate::service::workload::{self, Ask};
use crate::workload::status::{self, Running};
use govpaas_pki::renewal::requeue_after;

/// Caches of what the Portal controller owns, for wake-ups and pruning: whole objects of the
/// kinds its reconciles read (trimmed to what they read), metadata of the others.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub ingresses: Store<Ingress>,
    pub pod_disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    pub secrets: Store<Secret>,
}

/// What every Portal reconcile shares.
pub type Context = ServiceContext<Caches>;

impl DesiredSet for build::Desired {
    type Caches = Caches;

    fn owned<'a>(&'a self, caches: &'a Caches) -> Vec<Box<dyn OwnedKind + 'a>> {
        let build::Desired { deployment, service, ingress, pod_disruption_budget, tls_secret } = self;
        let Caches { deployments, services, ingresses, pod_disruption_budgets, secrets } = caches;
        vec![
            // The Secret before the Ingress that names it.
            Owned::boxed(std::slice::from_ref(tls_secret), secrets),
            Owned::boxed(std::slice::from_ref(service), services),
            Owned::boxed(std::slice::from_ref(deployment), deployments),
            Owned::boxed(std::slice::from_ref(ingress), ingresses),
            Owned::boxed(pod_disruption_budget.as_slice(), pod_disruption_budgets),
        ]
    }
}

impl ServiceKind for Portal {
    type Status = PortalStatus;
    type Caches = Caches;
    const KIND: &'static str = "Portal";
    const COMPONENT: &'static str = COMPONENT;
    const CONDITIONS: &'static [govpaas_crds::conditions::Documented] = PORTAL;

    fn status(&self) -> Option<&PortalStatus> {
        self.status.as_ref()
    }

    fn certificates(status: &PortalStatus) -> Vec<(&'static str, &CertificateStatus)> {
        status.certificate.iter().map(|certificate| ("server", certificate)).collect()
    }

    async fn apply(read: &Read<'_, Portal>, ctx: &Context) -> Step<Applied<PortalStatus>> {
        apply(read, ctx).await
    }
}

async fn apply(read: &Read<'_, Portal>, ctx: &Context) -> Step<Applied<PortalStatus>> {
    let shared = &ctx.shared;
    let (portal, namespace) = (read.service, read.namespace.as_str());
    let inputs = Inputs { portal, platform: &read.platform.spec, tenant: &read.tenant_context };
    let names = Names::of(portal);

    // Validate: the name, the hosts, the quota.
    if let Some(problem) = build::validate(&inputs) {
        return Err(Stop::refused(problem));
    }
    let claim = inputs.host_claim();
    let ordered = workload::hosts_free(shared, &read.tenant_context, &claim)?;
    let wanted = inputs.usage().map_err(Stop::refused)?;
    let hosts = inputs.hosts();
    let deployments = Lookup { known: &ctx.known.deployments, cache: &ctx.caches.deployments };
    let ingresses = Lookup { known: &ctx.known.ingresses, cache: &ctx.caches.ingresses };
    let current =
        workload::current(&shared.client, &ctx.caches.services, deployments, ingresses, namespace, &names.workload)
            .await?;
    let ask = Ask { claim: &claim, ordered: &ordered, wanted, public_hosts: hosts.len(), storage_class: None };
    workload::fits(shared, &read.tenant_context, namespace, &ask, &current)?;

    // The certificate of the hosts: kept while it is right, else issued by the tenant CA.
    let now = OffsetDateTime::now_utc();
    let authority = shared.authority(&read.tenant_context, &read.platform, now).await?;
    let what = format!("TLS certificate for {}", hosts.join(", "));
    let spec = LeafSpec::Server { dns_names: hosts.clone() };
    let leaf = workload::certificate(
        &shared.client,
        Lookup { known: &ctx.known.secrets, cache: &ctx.caches.secrets },
        namespace,
        &names.tls_secret,
        &spec,
        &authority,
        now,
        &format!("the {what}"),
    )
    .await?;

    // Build, apply and prune from the same set.
    let desired = build::build(&inputs, &leaf.material)?;
    let mut applier = Applier::remembering(shared.client.clone(), shared.applied.clone());
    let owner = OwnedKey { component: COMPONENT, name: &read.name, uid: &read.uid };
    let pruned = owned::apply_and_prune(&mut applier, &desired, &ctx.caches, &owner).await;
    // What was applied is served until the caches show it, failed reconciles included.
    ctx.known.remember_applied(&applier);
    let pruned = pruned.map_err(|err| pipeline::apply_failed(err, "applying the Portal's objects"))?;
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the Portal no longer wants");
    }
    // Its status: from the apply's answer, or, when it was already right and not applied, as
    // last read or applied (the cache shows it unchanged since).
    let deployment = match applier.applied::<Deployment>(Some(namespace), &names.workload) {
        Some(applied) => Arc::new(applied.clone()),
        None => Lookup { known: &ctx.known.deployments, cache: &ctx.caches.deployments }
            .get(&shared.client, namespace, &names.workload)
            .await?
            .ok_or(Error::MissingField { kind: "Deployment", field: "status" })?,
    };
    let deployment = deployment.as_ref();

    let reference = portal.object_ref(&());
    shared.publish_issued(&reference, &what, &leaf).await;

    let url = inputs.url();
    let running = Running {
        deployment,
        replicas: inputs.replicas(),
        declared_replicas: portal.spec.replicas,
        suspended: read.tenant_context.suspended.then_some(read.tenant_context.name.as_str()),
        held_by: None,
        url: url.as_deref(),
        certificates: vec![(what.as_str(), &leaf)],
    };
    let status = PortalStatus {
        url: url.clone(),
        ready_replicas: Some(status::replica_counts(deployment).0),
        certificate: Some(status::certificate_status(&names.tls_secret, &leaf, &authority.policy)),
        ..PortalStatus::default()
    };
    debug!("applied Portal {namespace}/{}", read.name);
    Ok(Applied {
        conditions: status::conditions(&running),
        status,
        requeue: requeue_after(now, leaf.renewal_time(&authority.policy)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_gauges_read_the_certificate_the_status_records() {
        let mut portal = fixtures::portal();
        assert!(Portal::certificates(&PortalStatus::default()).is_empty(), "no status, no gauge");
        let names = Names::of(&portal);
        let recorded = CertificateStatus { secret_name: Some(names.tls_secret.clone()), ..Default::default() };
        portal.status = Some(PortalStatus { certificate: Some(recorded.clone()), ..Default::default() });
        let certificates = Portal::certificates(portal.status.as_ref().unwrap());
        assert_eq!(certificates, [("server", &recorded)]);
    }
}

//! One reconcile of one DocumentService: read → validate (name, size, host, quota) → certificates
//! → the volume (restore a retained one if asked, apply the claim, mark the bound volume with the
//! delete policy) → build → apply → prune → status and Events.

use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::DocumentService;
use govpaas_crds::conditions::{ROUTES_REGISTERED, STORAGE_BOUND, reasons};
use govpaas_crds::document_service::{DeletePolicy, DocumentServiceStatus, StorageStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{Instrument, debug, info, info_span};

use super::build::{self, COMPONENT, ClaimBinding, EXCHANGE_LABEL, IDENTITY_KIND, Inputs, Names};
use super::retention::{self, RESTORE_ANNOTATION, RestoreTarget, VolumeOwner};
use crate::certificates::leaf::{Leaf, LeafSpec, Stored, keep_or_issue};
use crate::error::{Error, Result};
use crate::reconcile::apply::{self, Applier, FIELD_MANAGER};
use crate::reconcile::conditions::{self, Desired};
use crate::telemetry::CertificateKey;
use crate::tenancy::Scope;
use crate::workload::objects::Owner;
use crate::workload::quota_fit::Usage;
use crate::workload::runtime::{DocumentObject, ServiceContext};
use crate::workload::status::{self, Applied, Outcome};
use crate::workload::{Problem, QuotaCheck, check_hosts, check_quota, hosts};
use govpaas_pki::AgencyIdentity;
use govpaas_pki::renewal::requeue_after;

/// The safety-net resync of an unchanged DocumentService.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How soon to look again while the volume binds (the claim's watch usually comes first).
const BINDING: Duration = Duration::from_secs(10);
/// `Ready`'s and `StorageBound`'s reason while the volume is not ready for documents.
pub const STORAGE_PENDING: &str = "StoragePending";
/// `Ready`'s and `StorageBound`'s reason when the claim's StorageClass does not exist (or none is
/// named and the cluster has no default).
pub const STORAGE_CLASS_NOT_FOUND: &str = "StorageClassNotFound";
/// `StorageBound`'s reason when a retained volume cannot be restored.
pub const VOLUME_NOT_RESTORABLE: &str = "VolumeNotRestorable";

/// Caches of what the DocumentService controller owns: metadata only, for wake-ups and pruning.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub ingresses: Store<PartialObjectMeta<Ingress>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub claims: Store<PartialObjectMeta<PersistentVolumeClaim>>,
}

/// What every DocumentService reconcile shares.
pub type Context = ServiceContext<Caches>;

/// Reconciles one DocumentService.
pub async fn reconcile(object: Arc<DocumentObject>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        controller = COMPONENT,
        namespace = %object.namespace().unwrap_or_default(),
        document_service = %object.name_any()
    );
    ctx.when_readable(&object, "DocumentService", |service| reconcile_service(service, &ctx)).instrument(span).await
}

/// What the volume is ready for, and the `StorageBound` condition that says so.
struct Storage {
    /// Documents may be written: Pods may run.
    ready: bool,
    condition: Desired,
    status: StorageStatus,
}

async fn reconcile_service(service: &DocumentService, ctx: &Context) -> Result<Action> {
    let shared = &ctx.shared;
    if service.metadata.deletion_timestamp.is_some() {
        // Children carry owner references; the volume keeps the reclaim policy it was given.
        return Ok(Action::await_change());
    }
    let namespace =
        service.namespace().ok_or(Error::MissingField { kind: "DocumentService", field: "metadata.namespace" })?;
    let uid = service.uid().ok_or(Error::MissingField { kind: "DocumentService", field: "metadata.uid" })?;
    let name = service.name_any();

    // Read: the tenant and the Platform.
    let tenant = match shared.scope(&namespace) {
        Scope::OutOfScope => return Ok(Action::await_change()),
        Scope::NoTenant(message) => return not_applied(ctx, service, &Outcome::Waiting(message)).await,
        Scope::Tenant(tenant) => tenant,
    };
    let Ok(tenant) = &tenant.0 else {
        let message = format!("the Tenant of namespace {namespace} cannot be read");
        return not_applied(ctx, service, &Outcome::Waiting(message)).await;
    };
    let Some(platform) = shared.platform() else {
        return not_applied(ctx, service, &Outcome::Waiting("no Platform named default exists yet".into())).await;
    };
    let tenant_context = shared.tenant_context(tenant, &platform, &namespace);
    let inputs = Inputs { service, platform: &platform.spec, tenant: &tenant_context };
    let names = Names::of(service);
    let client = shared.client.clone();

    // Validate: the name and size, the host, the quota.
    if let Some(problem) = build::validate(&inputs) {
        return refused(ctx, service, &problem).await;
    }
    let ordered = shared.host_claims();
    let claim = inputs.host_claim();
    if let Some(problem) = check_hosts(&claim, &tenant_context.domain, &ordered) {
        return refused(ctx, service, &problem).await;
    }
    let wanted = match inputs.usage() {
        Ok(usage) => usage,
        Err(problem) => return refused(ctx, service, &problem).await,
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
    let stored_claim = claims.get_opt(&names.claim).await?;
    let deployment = deployments.get_opt(&names.workload).await?;
    let mut admitted = deployment.as_ref().map(Usage::admitted_by).unwrap_or_default();
    let mut held = deployment.as_ref().map(Usage::held_by).unwrap_or_default();
    if ctx.caches.services.get(&ObjectRef::new(&names.workload).within(&namespace)).is_some() {
        admitted = admitted.plus(Usage::one_service());
        held = held.plus(Usage::one_service());
    }
    if let Some(size) = stored_claim
        .as_ref()
        .and_then(|c| c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").cloned())
    {
        let claim = Usage::one_claim(govpaas_crds::quantity::Amount::of(&size).unwrap_or_default());
        admitted = admitted.plus(claim);
        held = held.plus(claim);
    }
    let current_public_hosts =
        ingresses.get_opt(&names.workload).await?.and_then(|i| i.spec.and_then(|s| s.rules)).map_or(0, |r| r.len());
    let quotas = shared.quotas_in(&namespace);
    let storage_class = stored_claim
        .as_ref()
        .and_then(|c| c.spec.as_ref()?.storage_class_name.clone())
        .or_else(|| inputs.storage_class().map(str::to_owned));
    let check = QuotaCheck {
        namespace: &namespace,
        quotas: &quotas,
        wanted,
        admitted,
        held,
        storage_class: storage_class.as_deref(),
        public_hosts_quota: tenant_context.public_hosts,
        public_hosts_used_before: hosts::used_before(&claim, &ordered, &tenant_context.namespaces),
        public_hosts: inputs.host().map_or(0, |_| 1),
        current_public_hosts,
    };
    if let Some(problem) = check_quota(&check) {
        return refused(ctx, service, &problem).await;
    }

    // Certificates: TLS for the host and the exchange name, and the agency's signing certificate.
    let now = OffsetDateTime::now_utc();
    let authority = match shared.authority(&tenant_context, &platform, now).await? {
        Ok(authority) => authority,
        Err(message) => return not_applied(ctx, service, &Outcome::Waiting(message)).await,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let tls_names = inputs.tls_names();
    let tls =
        match leaf_in(&secrets, &names.tls_secret, &LeafSpec::Server { dns_names: tls_names.clone() }, &authority, now)
            .await?
        {
            Ok(leaf) => leaf,
            Err(err) => {
                let message = format!("cannot issue the TLS certificate for {}: {err}", tls_names.join(", "));
                return not_applied(ctx, service, &Outcome::CertificateFailed(message)).await;
            }
        };
    let signing = if service.spec.signing.enabled {
        let identity = AgencyIdentity::new(&platform.spec.base_domain, &tenant_context.agency_code)
            .and_then(|agency| agency.workload(IDENTITY_KIND, &name));
        let spec = match identity {
            Ok(identity) => LeafSpec::Signing { identity, signer_name: tenant_context.display_name.clone() },
            Err(err) => {
                let message = format!("cannot name the signing identity: {err}");
                return not_applied(ctx, service, &Outcome::CertificateFailed(message)).await;
            }
        };
        match leaf_in(&secrets, &names.signing_secret, &spec, &authority, now).await? {
            Ok(leaf) => Some(leaf),
            Err(err) => {
                let message = format!("cannot issue the document-signing certificate: {err}");
                return not_applied(ctx, service, &Outcome::CertificateFailed(message)).await;
            }
        }
    } else {
        None
    };

    // The volume: restore a retained one if asked, then the claim, then its volume's marking.
    let mut applier = Applier::new(client.clone());
    let owner = Owner::of(service, COMPONENT)?;
    let binding = match claim_binding(ctx, &inputs, &names, stored_claim.as_ref()).await? {
        Ok(binding) => binding,
        Err(problem) => return refused(ctx, service, &problem).await,
    };
    let applied_claim = match applier.apply(&build::volume_claim(&inputs, &owner, &binding)).await {
        Ok(claim) => claim,
        Err(Error::Kube(err)) => match status::refusal(&err, &format!("the volume claim {}", names.claim)) {
            Some(problem) => return refused(ctx, service, &problem).await,
            None => return Err(Error::Kube(err)),
        },
        Err(other) => return Err(other),
    };
    let storage = storage(ctx, &inputs, &names, &applied_claim, &mut applier).await?;

    // Build and apply the rest; prune what this service made before and no longer wants.
    let desired = build::build(&inputs, &binding, storage.ready, &tls.material, signing.as_ref().map(|l| &l.material))?;
    let applied = match apply_desired(&mut applier, &desired).await {
        Ok(deployment) => deployment,
        Err(err) if apply::is_conflict(&err) => return Ok(status::changed_meanwhile(&err)),
        Err(Error::Kube(err)) => match status::refusal(&err, "applying the DocumentService's objects") {
            Some(problem) => return refused(ctx, service, &problem).await,
            None => return Err(Error::Kube(err)),
        },
        Err(other) => return Err(other),
    };
    let caches = &ctx.caches;
    let mut pruned = Vec::new();
    pruned.extend(applier.prune(&caches.ingresses.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.services.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.deployments.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.secrets.state(), COMPONENT, &name, &uid).await?);
    // The claim is never pruned: it always has the one name, and it holds the documents.
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the DocumentService no longer wants");
    }

    let reference = service.object_ref(&());
    let tls_what = format!("TLS certificate for {}", tls_names.join(", "));
    shared.publish_issued(&reference, &tls_what, &tls).await;
    let signing_what = format!("document-signing certificate of agency {}", tenant_context.agency_code);
    if let Some(leaf) = &signing {
        shared.publish_issued(&reference, &signing_what, leaf).await;
    }
    for key in certificate_keys_of(&namespace, &names) {
        match key.kind {
            "server" => shared.observe_certificate(key, &tls, &authority.policy),
            _ => match &signing {
                Some(leaf) => shared.observe_certificate(key, leaf, &authority.policy),
                None => shared.settings.telemetry.certificates.forget(&key),
            },
        }
    }

    let url = inputs.url();
    let mut certificates = vec![(tls_what.as_str(), &tls)];
    if let Some(leaf) = &signing {
        certificates.push((signing_what.as_str(), leaf));
    }
    let outcome = Outcome::Applied(Applied {
        deployment: &applied,
        replicas: inputs.replicas(storage.ready),
        declared_replicas: service.spec.replicas,
        suspended: tenant_context.suspended.then_some(tenant_context.name.as_str()),
        held_by: (!storage.ready).then(|| Problem {
            reason: if storage.condition.reason == STORAGE_CLASS_NOT_FOUND {
                STORAGE_CLASS_NOT_FOUND
            } else {
                STORAGE_PENDING
            },
            message: storage.condition.message.clone(),
        }),
        url: url.as_deref(),
        certificates,
    });
    let base = DocumentServiceStatus {
        url: url.clone(),
        ready_replicas: Some(status::replica_counts(&applied).0),
        storage: Some(storage.status.clone()),
        certificate: Some(status::certificate_status(&names.tls_secret, &tls, &authority.policy)),
        signing_certificate: signing
            .as_ref()
            .map(|leaf| status::certificate_status(&names.signing_secret, leaf, &authority.policy)),
        ..DocumentServiceStatus::default()
    };
    write_status(ctx, service, &outcome, vec![storage.condition, routes(service, &names)], base).await?;
    debug!("applied DocumentService {namespace}/{name}");
    let renewals = std::iter::once(&tls).chain(signing.as_ref()).map(|leaf| leaf.renewal_time(&authority.policy)).min();
    let next = renewals.map_or(RESYNC, |at| requeue_after(now, at).min(RESYNC));
    Ok(Action::requeue(if storage.ready { next } else { next.min(BINDING) }))
}

/// The gauge keys of a DocumentService's certificates (TLS and signing).
pub fn certificate_keys(service: &DocumentObject) -> Vec<CertificateKey> {
    let name = service.name_any();
    let workload = format!("{name}{}", build::SUFFIX);
    let names = Names {
        claim: format!("{workload}-data"),
        tls_secret: format!("{workload}-tls"),
        signing_secret: format!("{workload}-signing"),
        workload,
    };
    certificate_keys_of(&service.namespace().unwrap_or_default(), &names)
}

fn certificate_keys_of(namespace: &str, names: &Names) -> Vec<CertificateKey> {
    let key = |secret: &str, kind| CertificateKey { namespace: namespace.to_owned(), secret: secret.to_owned(), kind };
    vec![key(&names.tls_secret, "server"), key(&names.signing_secret, "signing")]
}

/// The stored leaf in `secret` if it is still right, else a new one.
async fn leaf_in(
    secrets: &Api<Secret>,
    secret: &str,
    spec: &LeafSpec,
    authority: &crate::workload::runtime::Authority,
    now: OffsetDateTime,
) -> Result<std::result::Result<Leaf, govpaas_pki::Error>> {
    let stored_secret = secrets.get_opt(secret).await?;
    Ok(keep_or_issue(Stored::of(stored_secret.as_ref()), spec, &authority.issuer(), now))
}

/// What the claim binds to: the volume it is bound to already, or, for a new claim of a service
/// that asks to restore a retained volume, that volume's class (the volume is promised to the
/// claim through its `claimRef`; the claim never names it).
async fn claim_binding(
    ctx: &Context,
    inputs: &Inputs<'_>,
    names: &Names,
    stored: Option<&PersistentVolumeClaim>,
) -> Result<std::result::Result<ClaimBinding, Problem>> {
    let stored_spec = stored.and_then(|c| c.spec.as_ref());
    let mut binding = ClaimBinding {
        volume_name: stored_spec.and_then(|s| s.volume_name.clone()),
        storage_class: stored_spec.and_then(|s| s.storage_class_name.clone()),
    };
    let restore = inputs.service.annotations().get(RESTORE_ANNOTATION).cloned();
    let Some(volume_name) = restore else { return Ok(Ok(binding)) };
    if let Some(bound) = &binding.volume_name {
        // The claim exists and names its volume: a claim's volume never changes.
        if bound != &volume_name {
            info!(bound, requested = volume_name, "restore annotation ignored: the claim is bound already");
        }
        return Ok(Ok(binding));
    }
    if stored.is_some() {
        return Ok(Err(Problem {
            reason: VOLUME_NOT_RESTORABLE,
            message: format!(
                "{RESTORE_ANNOTATION}: {volume_name} came after the claim {} was created with a new volume; delete this DocumentService (with deletePolicy Retain its new volume is kept) and create it again with the annotation",
                names.claim
            ),
        }));
    }
    let namespace = inputs.service.namespace().unwrap_or_default();
    let volumes: Api<PersistentVolume> = Api::all(ctx.shared.client.clone());
    let Some(volume) = volumes.get_opt(&volume_name).await? else {
        return Ok(Err(Problem {
            reason: VOLUME_NOT_RESTORABLE,
            message: format!(
                "{RESTORE_ANNOTATION}: PersistentVolume {volume_name} does not exist (kubectl get pv -l {}={} lists the tenant's retained volumes)",
                govpaas_crds::metadata::TENANT_LABEL,
                inputs.tenant.name
            ),
        }));
    };
    let size = match inputs.storage_size() {
        Ok(size) => size,
        Err(problem) => return Ok(Err(problem)),
    };
    let target = RestoreTarget { tenant: inputs.tenant, namespace: &namespace, claim: &names.claim, size };
    if let Err(message) = retention::check_restorable(&volume, &target) {
        return Ok(Err(Problem { reason: VOLUME_NOT_RESTORABLE, message: format!("{RESTORE_ANNOTATION}: {message}") }));
    }
    if !retention::is_promised_to(&volume, &namespace, &names.claim) {
        // A merge patch, not an apply: claimRef is the volume controller's to complete (it adds the
        // new claim's uid), and the marking applied later must not take it back.
        let promise = json!({"spec": {"claimRef": {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": namespace, "name": names.claim, "uid": null, "resourceVersion": null,
        }}});
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        volumes.patch(&volume_name, &params, &Patch::Merge(&promise)).await?;
        info!(volume = volume_name, claim = names.claim, "promised a retained volume to the new claim");
    }
    // The claim does not name the volume (tenant namespaces refuse `volumeName`, policy
    // govpaas-tenant-volume-claims): the volume's claimRef, pre-bound above, makes the volume
    // controller bind exactly this volume to the new claim. The claim must ask for its class.
    binding.storage_class = retention::storage_class_of(&volume);
    Ok(Ok(binding))
}

/// The volume's state after the claim was applied: once bound, the volume is marked with the
/// delete policy and the service it serves; until then, Pods wait — unless the StorageClass binds
/// only for a consumer, in which case a Pod has to come first.
async fn storage(
    ctx: &Context,
    inputs: &Inputs<'_>,
    names: &Names,
    claim: &PersistentVolumeClaim,
    applier: &mut Applier,
) -> Result<Storage> {
    let policy = inputs.service.spec.storage.delete_policy;
    let phase = claim.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    let status = StorageStatus {
        claim_name: Some(names.claim.clone()),
        phase: Some(phase.clone()),
        capacity: claim.status.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage").cloned()),
    };
    if let (true, Some(volume_name)) = (phase == "Bound", volume_name) {
        let volumes: Api<PersistentVolume> = Api::all(ctx.shared.client.clone());
        if let Some(volume) = volumes.get_opt(&volume_name).await? {
            let namespace = inputs.service.namespace().unwrap_or_default();
            let name = inputs.service.name_any();
            let owner = VolumeOwner {
                tenant: inputs.tenant,
                namespace: &namespace,
                service: &name,
                claim: &names.claim,
                policy,
            };
            let marked = if retention::is_marked(&volume, &owner) {
                volume
            } else {
                let marked = applier.apply(&retention::volume_marking(&volume_name, &owner)).await?;
                info!(volume = volume_name, policy = retention::reclaim_policy(policy), "marked the document volume");
                marked
            };
            let (reason, message) = retention::bound_message(&names.claim, &marked, policy);
            return Ok(Storage {
                ready: true,
                condition: Desired::holds(STORAGE_BOUND, reason, message).with_event(EventType::Normal),
                status,
            });
        }
    }
    let class = claim.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    let classes: Api<StorageClass> = Api::all(ctx.shared.client.clone());
    let stored_class = match &class {
        Some(class) if !class.is_empty() => classes.get_opt(class).await?,
        _ => None,
    };
    let source = if inputs.service.spec.storage.storage_class_name.is_some() {
        "spec.storage.storageClassName"
    } else {
        "the Platform's storageClassName, or the cluster's default"
    };
    let missing = match (&class, &stored_class) {
        (Some(class), None) if !class.is_empty() => Some(format!(
            "claim {} is {phase}: StorageClass {class:?} ({source}) does not exist, so no volume can be provisioned; name an existing class (kubectl get storageclass) in spec.storage.storageClassName, or ask the platform engineer to create it",
            names.claim
        )),
        (None, _) => Some(format!(
            "claim {} is {phase}: it names no StorageClass and the cluster has no default one, so no volume can be provisioned; name a class (kubectl get storageclass) in spec.storage.storageClassName",
            names.claim
        )),
        _ => None,
    };
    if let Some(message) = missing {
        return Ok(Storage {
            ready: false,
            condition: Desired::fails(STORAGE_BOUND, STORAGE_CLASS_NOT_FOUND, message).with_event(EventType::Warning),
            status,
        });
    }
    let class = class.unwrap_or_default();
    let waits_for_consumer =
        stored_class.and_then(|c| c.volume_binding_mode).as_deref() == Some("WaitForFirstConsumer");
    let message = if waits_for_consumer {
        format!(
            "claim {} is {phase}: StorageClass {class} binds a volume only for a Pod, so the Pods start now; the volume is marked {} as soon as it binds",
            names.claim,
            retention::reclaim_policy(policy)
        )
    } else {
        match policy {
            DeletePolicy::Retain => format!(
                "claim {} is {phase}: waiting for StorageClass {class} to provision its volume; no Pod starts before the volume is bound and marked Retain, so no document is written to a volume that could be lost",
                names.claim
            ),
            DeletePolicy::Delete => {
                format!("claim {} is {phase}: waiting for StorageClass {class} to provision its volume", names.claim)
            }
        }
    };
    Ok(Storage {
        ready: waits_for_consumer,
        condition: Desired::fails(STORAGE_BOUND, STORAGE_PENDING, message),
        status,
    })
}

/// The `RoutesRegistered` condition: the exchange flag is recorded on the Service for the LGSP
/// wiring; the gateway's route table is not provisioned by this controller.
fn routes(service: &DocumentService, names: &Names) -> Desired {
    if service.spec.exchange.enabled {
        Desired::fails(
            ROUTES_REGISTERED,
            reasons::PENDING,
            format!(
                "document exchange is enabled and recorded on Service {} ({EXCHANGE_LABEL}=enabled); the LGSP gateway's route table is not provisioned by this operator yet, so there is no exchange endpoint",
                names.workload
            ),
        )
    } else {
        Desired::fails(ROUTES_REGISTERED, "ExchangeDisabled", "spec.exchange.enabled is false: no LGSP route is wanted")
    }
}

/// Applies the objects in dependency order (Secrets before the Deployment and Ingress that mount
/// or name them) and returns the Deployment as stored.
async fn apply_desired(applier: &mut Applier, desired: &build::Desired) -> Result<Deployment> {
    applier.apply(&desired.tls_secret).await?;
    if let Some(secret) = &desired.signing_secret {
        applier.apply(secret).await?;
    }
    applier.apply(&desired.service).await?;
    let deployment = applier.apply(&desired.deployment).await?;
    if let Some(ingress) = &desired.ingress {
        applier.apply(ingress).await?;
    }
    Ok(deployment)
}

async fn refused(ctx: &Context, service: &DocumentService, problem: &Problem) -> Result<Action> {
    info!(reason = problem.reason, message = %problem.message, "DocumentService not applied");
    not_applied(ctx, service, &Outcome::Refused(problem)).await
}

/// Writes the status of an outcome that applied nothing: what runs is described as before.
async fn not_applied(ctx: &Context, service: &DocumentService, outcome: &Outcome<'_>) -> Result<Action> {
    let previous = service.status.clone().unwrap_or_default();
    let kept: Vec<Desired> = [STORAGE_BOUND, ROUTES_REGISTERED]
        .iter()
        .filter_map(|type_| conditions::find(&previous.conditions, type_))
        .map(|c| Desired {
            type_: c.type_.clone(),
            status: if c.status == conditions::TRUE { conditions::TRUE } else { conditions::FALSE },
            reason: c.reason.clone(),
            message: c.message.clone(),
            event: None,
        })
        .collect();
    write_status(ctx, service, outcome, kept, previous).await?;
    // What it waits for (the Platform, the Tenant, the quota, a host) wakes it when it changes.
    Ok(Action::requeue(RESYNC))
}

/// Writes the status for `outcome` plus the kind's own conditions over `base`, a no-op on the
/// server when nothing changed, and publishes the Events of the conditions that changed.
async fn write_status(
    ctx: &Context,
    service: &DocumentService,
    outcome: &Outcome<'_>,
    own: Vec<Desired>,
    base: DocumentServiceStatus,
) -> Result<()> {
    let previous = service.status.as_ref();
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut desired = status::conditions(outcome, previous_conditions);
    desired.extend(own);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = DocumentServiceStatus {
        observed_generation: service.metadata.generation,
        conditions: conditions::merge(previous_conditions, &desired, service.metadata.generation, &now),
        ..base
    };
    let api: Api<DocumentService> =
        Api::namespaced(ctx.shared.client.clone(), &service.namespace().unwrap_or_default());
    ctx.shared.status_writes.write(&api, service, previous, &new_status).await?;
    ctx.shared.publish_changes(&service.object_ref(&()), previous_conditions, &desired).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn certificate_gauges_name_the_secrets_the_service_writes() {
        let service: DocumentService = fixtures::case("document/retained.yaml").one("DocumentService");
        let names = Names::of(&service);
        let keys = certificate_keys(&kube::core::DeserializeGuard(Ok(service)));
        let secrets: Vec<(&str, &str)> = keys.iter().map(|k| (k.secret.as_str(), k.kind)).collect();
        assert_eq!(secrets, [(names.tls_secret.as_str(), "server"), (names.signing_secret.as_str(), "signing")]);
    }

    #[test]
    fn exchange_is_recorded_but_no_route_is_claimed() {
        let mut service: DocumentService = fixtures::case("document/retained.yaml").one("DocumentService");
        let names = Names::of(&service);
        let enabled = routes(&service, &names);
        assert_eq!((enabled.status, enabled.reason.as_str()), (conditions::FALSE, reasons::PENDING));
        assert!(enabled.message.contains("govpaas.io/document-exchange=enabled"), "{}", enabled.message);
        service.spec.exchange.enabled = false;
        assert_eq!(routes(&service, &names).reason, "ExchangeDisabled");
    }
}

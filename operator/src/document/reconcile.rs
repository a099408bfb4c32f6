//! One reconcile of one DocumentService, its part of `crate::service::pipeline`: validate (name,
//! size, host, quota) → certificates → the volume (restore a retained one if asked, apply the
//! claim, mark the bound volume with the delete policy) → build → apply and prune → status.

use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::DocumentService;
use govpaas_crds::conditions::{DOCUMENT_SERVICE, Documented, ROUTES_REGISTERED, STORAGE_BOUND};
use govpaas_crds::document_service::{DeletePolicy, DocumentServiceStatus, StorageStatus};
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{debug, info};

use super::build::{self, COMPONENT, ClaimBinding, IDENTITY_KIND, Inputs, Names};
use super::exchange;
use super::retention::{self, RESTORE_ANNOTATION, RestoreTarget, VolumeOwner};
use crate::certificates::leaf::LeafSpec;
use crate::error::{Error, Result};
use crate::lgsp::tables::TableSlot;
use crate::reconcile::Problem;
use crate::reconcile::apply::{Applier, FIELD_MANAGER};
use crate::reconcile::conditions::Desired;
use crate::reconcile::known::Lookup;
use crate::reconcile::outcome::{Halt, Step, Stop};
use crate::service::owned::{self, DesiredSet, Owned, OwnedKey, OwnedKind};
use crate::service::pipeline::{self, Applied, Read, ServiceKind};
use crate::service::runtime::ServiceContext;
use crate::service::workload::{self, Ask};
use crate::workload::objects::Owner;
use crate::workload::quota_fit::Usage;
use crate::workload::status::{self, Running};
use govpaas_crds::agency::normalise;
use govpaas_pki::renewal::requeue_after;
use govpaas_pki::{AgencyIdentity, WorkloadIdentity};

/// How soon to look again while the volume binds (the claim's watch usually comes first).
const BINDING: Duration = Duration::from_secs(10);
/// `Ready`'s and `StorageBound`'s reason while the volume is not ready for documents.
pub const STORAGE_PENDING: &str = "StoragePending";
/// `Ready`'s and `StorageBound`'s reason when the claim's StorageClass does not exist (or none is
/// named and the cluster has no default).
pub const STORAGE_CLASS_NOT_FOUND: &str = "StorageClassNotFound";
/// `StorageBound`'s reason when a retained volume cannot be restored.
pub const VOLUME_NOT_RESTORABLE: &str = "VolumeNotRestorable";

/// Caches of what the DocumentService controller owns, for wake-ups and pruning: whole objects of
/// the kinds its reconciles read (trimmed to what they read), metadata of the others.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub ingresses: Store<Ingress>,
    pub secrets: Store<Secret>,
    pub claims: Store<PersistentVolumeClaim>,
    /// The document volumes already marked with their service (filled by `announce_retained`'s
    /// watch).
    pub marked_volumes: Store<PersistentVolume>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    /// The exchange route tables, in the operator's namespace.
    pub route_tables: Store<PartialObjectMeta<ConfigMap>>,
    /// The operator's namespace, where route tables live.
    pub operator_namespace: String,
}

/// What every DocumentService reconcile shares.
pub type Context = ServiceContext<Caches>;

/// A DocumentService's desired objects, with its route table (wanted or not) by name.
pub struct DesiredObjects {
    pub objects: build::Desired,
    /// Only while its exchange endpoint is registered.
    pub route_table: Option<ConfigMap>,
    /// The route table's name, which exists only while it is wanted.
    pub route_table_name: String,
}

impl DesiredSet for DesiredObjects {
    type Caches = Caches;

    fn owned<'a>(&'a self, caches: &'a Caches) -> Vec<Box<dyn OwnedKind + 'a>> {
        // The claim is applied before the set (whether its volume is bound decides whether Pods
        // run) and never pruned: it always has the one name, and it holds the documents.
        let build::Desired { claim: _, deployment, service, ingress, tls_secret, signing_secret, exchange } =
            &self.objects;
        let Caches {
            deployments,
            services,
            ingresses,
            secrets,
            claims: _,
            marked_volumes: _,
            network_policies,
            route_tables,
            operator_namespace,
        } = caches;
        let mut certificates: Vec<Secret> = std::iter::once(tls_secret).chain(signing_secret).cloned().collect();
        certificates.extend(exchange.iter().map(|e| e.client_secret.clone()));
        let policies: Vec<NetworkPolicy> = exchange.iter().map(|e| e.network_policy.clone()).collect();
        vec![
            // Secrets before the Deployment and Ingress that mount or name them.
            Owned::boxed(certificates, secrets),
            Owned::boxed(std::slice::from_ref(service), services),
            Owned::boxed(std::slice::from_ref(deployment), deployments),
            Owned::boxed(ingress.as_slice(), ingresses),
            Owned::boxed(policies, network_policies),
            // The route table last: the gateway sends packages only once the Pods may be reached.
            Box::new(TableSlot {
                wanted: self.route_table.as_ref(),
                name: &self.route_table_name,
                namespace: operator_namespace,
                cached: route_tables,
            }),
        ]
    }
}

impl ServiceKind for DocumentService {
    type Status = DocumentServiceStatus;
    type Caches = Caches;
    const KIND: &'static str = "DocumentService";
    const COMPONENT: &'static str = COMPONENT;
    const CONDITIONS: &'static [Documented] = DOCUMENT_SERVICE;

    fn status(&self) -> Option<&DocumentServiceStatus> {
        self.status.as_ref()
    }

    fn certificates(status: &DocumentServiceStatus) -> Vec<(&'static str, &CertificateStatus)> {
        let server = status.certificate.iter().map(|certificate| ("server", certificate));
        let signing = status.signing_certificate.iter().map(|certificate| ("signing", certificate));
        let exchange = status.exchange_certificate.iter().map(|certificate| ("exchange-client", certificate));
        server.chain(signing).chain(exchange).collect()
    }

    async fn apply(read: &Read<'_, DocumentService>, ctx: &Context) -> Step<Applied<DocumentServiceStatus>> {
        apply(read, ctx).await
    }
}

/// What the volume is ready for, and the `StorageBound` condition that says so.
struct Storage {
    /// Documents may be written: Pods may run.
    ready: bool,
    condition: Desired,
    status: StorageStatus,
}

async fn apply(read: &Read<'_, DocumentService>, ctx: &Context) -> Step<Applied<DocumentServiceStatus>> {
    let shared = &ctx.shared;
    let (service, namespace, name) = (read.service, read.namespace.as_str(), read.name.as_str());
    let tenant_context = &read.tenant_context;
    let inputs = Inputs { service, platform: &read.platform.spec, tenant: tenant_context };
    let names = Names::of(service);
    let client = shared.client.clone();

    // Validate: the name and size, the host, the quota (its claim's size counts).
    if let Some(problem) = build::validate(&inputs) {
        return Err(Stop::refused(problem));
    }
    let claim = inputs.host_claim();
    let ordered = workload::hosts_free(shared, tenant_context, &claim)?;
    let wanted = inputs.usage().map_err(Stop::refused)?;
    let claims = Lookup { known: &ctx.known.claims, cache: &ctx.caches.claims };
    let stored_claim = claims.get(&client, namespace, &names.claim).await?.map(|c| c.as_ref().clone());
    let deployments = Lookup { known: &ctx.known.deployments, cache: &ctx.caches.deployments };
    let ingresses = Lookup { known: &ctx.known.ingresses, cache: &ctx.caches.ingresses };
    let mut current =
        workload::current(&client, &ctx.caches.services, deployments, ingresses, namespace, &names.workload).await?;
    let stored_spec = stored_claim.as_ref().and_then(|c| c.spec.as_ref());
    if let Some(size) = stored_spec.and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage")) {
        current = current.plus(Usage::one_claim(govpaas_crds::quantity::Amount::of(size).unwrap_or_default()));
    }
    let storage_class =
        stored_spec.and_then(|s| s.storage_class_name.clone()).or_else(|| inputs.storage_class().map(str::to_owned));
    let ask = Ask {
        claim: &claim,
        ordered: &ordered,
        wanted,
        public_hosts: inputs.host().map_or(0, |_| 1),
        storage_class: storage_class.as_deref(),
    };
    workload::fits(shared, tenant_context, namespace, &ask, &current)?;

    // Certificates: TLS for the host and the exchange name, and the agency's signing certificate.
    let now = OffsetDateTime::now_utc();
    let authority = shared.authority(tenant_context, &read.platform, now).await?;
    let tls_names = inputs.tls_names();
    let tls_what = format!("TLS certificate for {}", tls_names.join(", "));
    let spec = LeafSpec::Server { dns_names: tls_names.clone() };
    let secrets = || Lookup { known: &ctx.known.secrets, cache: &ctx.caches.secrets };
    let tls = workload::certificate(
        &client,
        secrets(),
        namespace,
        &names.tls_secret,
        &spec,
        &authority,
        now,
        &format!("the {tls_what}"),
    )
    .await?;
    let signing_what = format!("document-signing certificate of agency {}", tenant_context.agency_code);
    let signing = if service.spec.signing.enabled {
        let identity = AgencyIdentity::new(&read.platform.spec.base_domain, &tenant_context.agency_code)
            .and_then(|agency| agency.workload(IDENTITY_KIND, name))
            .map_err(|err| Halt::CertificateFailed(format!("cannot name the signing identity: {err}")))?;
        let spec = LeafSpec::Signing { identity, signer_name: tenant_context.display_name.clone() };
        let what = "the document-signing certificate";
        Some(
            workload::certificate(&client, secrets(), namespace, &names.signing_secret, &spec, &authority, now, what)
                .await?,
        )
    } else {
        None
    };

    // The exchange: its endpoint and identity, unless an older DocumentService of the agency holds
    // the name.
    let exchange = exchange_state(read, ctx)?;
    let client_leaf = match &exchange {
        ExchangeState::Registered { identity, .. } => {
            let spec = LeafSpec::Client { identity: identity.clone() };
            let what = "the exchange client certificate";
            let secret = exchange::client_secret_name(&names);
            Some(workload::certificate(&client, secrets(), namespace, &secret, &spec, &authority, now, what).await?)
        }
        _ => None,
    };

    // The volume: restore a retained one if asked, then the claim, then its volume's marking.
    let mut applier = Applier::remembering(client.clone(), shared.applied.clone());
    let owner = Owner::of(service, COMPONENT)?;
    let binding = claim_binding(ctx, &inputs, &names, stored_claim.as_ref()).await?;
    let claim = build::volume_claim(&inputs, &owner, &binding);
    applier
        .apply_unless_current(&claim, &ctx.caches.claims)
        .await
        .map_err(|err| pipeline::apply_failed(err, &format!("the volume claim {}", names.claim)))?;
    // The claim as stored: the apply's answer, or, when it was already right, as last read.
    let applied_claim = match applier.applied::<PersistentVolumeClaim>(Some(namespace), &names.claim) {
        Some(applied) => {
            ctx.known.claims.remember(applied);
            applied.clone()
        }
        None => claims
            .get(&client, namespace, &names.claim)
            .await?
            .ok_or(Error::MissingField { kind: "PersistentVolumeClaim", field: "status" })?
            .as_ref()
            .clone(),
    };
    let storage = storage(ctx, &inputs, &names, &applied_claim, &mut applier).await?;

    // Build, apply and prune the rest from the same set.
    let registered = match (&exchange, &client_leaf) {
        (ExchangeState::Registered { endpoint, .. }, Some(leaf)) => Some((endpoint, leaf)),
        _ => None,
    };
    let exchange_build = registered.map(|(endpoint, leaf)| build::ExchangeBuild {
        client: &leaf.material,
        endpoint: &endpoint.url,
        operator_namespace: &ctx.caches.operator_namespace,
    });
    let objects = build::build(
        &inputs,
        &binding,
        storage.ready,
        &tls.material,
        signing.as_ref().map(|l| &l.material),
        exchange_build,
    )?;
    let desired = DesiredObjects {
        objects,
        route_table: registered.map(|(endpoint, _)| endpoint.table.clone()),
        route_table_name: govpaas_crds::lgsp::exchange_table_name(namespace, name),
    };
    let owner = OwnedKey { component: COMPONENT, name, uid: &read.uid };
    let pruned = owned::apply_and_prune(&mut applier, &desired, &ctx.caches, &owner).await;
    // What was applied is served until the caches show it, failed reconciles included.
    ctx.known.remember_applied(&applier);
    let pruned = pruned.map_err(|err| pipeline::apply_failed(err, "applying the DocumentService's objects"))?;
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the DocumentService no longer wants");
    }
    // Its status: from the apply's answer, or, when it was already right and not applied, as
    // last read or applied (the cache shows it unchanged since).
    let deployment = match applier.applied::<Deployment>(Some(namespace), &names.workload) {
        Some(applied) => Arc::new(applied.clone()),
        None => Lookup { known: &ctx.known.deployments, cache: &ctx.caches.deployments }
            .get(&client, namespace, &names.workload)
            .await?
            .ok_or(Error::MissingField { kind: "Deployment", field: "status" })?,
    };
    let deployment = deployment.as_ref();

    let reference = service.object_ref(&());
    shared.publish_issued(&reference, &tls_what, &tls).await;
    if let Some(leaf) = &signing {
        shared.publish_issued(&reference, &signing_what, leaf).await;
    }
    let exchange_what = "exchange client certificate";
    if let Some(leaf) = &client_leaf {
        shared.publish_issued(&reference, exchange_what, leaf).await;
    }

    let url = inputs.url();
    let mut certificates = vec![(tls_what.as_str(), &tls)];
    if let Some(leaf) = &signing {
        certificates.push((signing_what.as_str(), leaf));
    }
    if let Some(leaf) = &client_leaf {
        certificates.push((exchange_what, leaf));
    }
    let running = Running {
        deployment,
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
    };
    let status = DocumentServiceStatus {
        url: url.clone(),
        ready_replicas: Some(status::replica_counts(deployment).0),
        storage: Some(storage.status.clone()),
        certificate: Some(status::certificate_status(&names.tls_secret, &tls, &authority.policy)),
        signing_certificate: signing
            .as_ref()
            .map(|leaf| status::certificate_status(&names.signing_secret, leaf, &authority.policy)),
        endpoint: registered.map(|(endpoint, _)| endpoint.url.clone()),
        exchange_certificate: client_leaf
            .as_ref()
            .map(|leaf| status::certificate_status(&exchange::client_secret_name(&names), leaf, &authority.policy)),
        ..DocumentServiceStatus::default()
    };
    let mut conditions = status::conditions(&running);
    conditions.push(storage.condition);
    conditions.push(routes(service, &exchange, &ctx.caches.operator_namespace));
    debug!("applied DocumentService {namespace}/{name}");
    let renewal = std::iter::once(&tls)
        .chain(signing.as_ref())
        .chain(client_leaf.as_ref())
        .map(|leaf| leaf.renewal_time(&authority.policy))
        .min();
    let next = renewal.map_or(pipeline::RESYNC, |at| requeue_after(now, at));
    Ok(Applied { conditions, status, requeue: if storage.ready { next } else { next.min(BINDING) } })
}

/// What the claim binds to: the volume it is bound to already, or, for a new claim of a service
/// that asks to restore a retained volume, that volume's class (the volume is promised to the
/// claim through its `claimRef`; the claim never names it).
async fn claim_binding(
    ctx: &Context,
    inputs: &Inputs<'_>,
    names: &Names,
    stored: Option<&PersistentVolumeClaim>,
) -> Step<ClaimBinding> {
    let stored_spec = stored.and_then(|c| c.spec.as_ref());
    let mut binding = ClaimBinding {
        volume_name: stored_spec.and_then(|s| s.volume_name.clone()),
        storage_class: stored_spec.and_then(|s| s.storage_class_name.clone()),
    };
    let restore = inputs.service.annotations().get(RESTORE_ANNOTATION).cloned();
    let Some(volume_name) = restore else { return Ok(binding) };
    if let Some(bound) = &binding.volume_name {
        // The claim exists and names its volume: a claim's volume never changes.
        if bound != &volume_name {
            info!(bound, requested = volume_name, "restore annotation ignored: the claim is bound already");
        }
        return Ok(binding);
    }
    if stored.is_some() {
        return Err(Stop::refused(Problem {
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
        return Err(Stop::refused(Problem {
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
        Err(problem) => return Err(Stop::refused(problem)),
    };
    let target = RestoreTarget { tenant: inputs.tenant, namespace: &namespace, claim: &names.claim, size };
    if let Err(message) = retention::check_restorable(&volume, &target) {
        return Err(Stop::refused(Problem {
            reason: VOLUME_NOT_RESTORABLE,
            message: format!("{RESTORE_ANNOTATION}: {message}"),
        }));
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
    Ok(binding)
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
        let namespace = inputs.service.namespace().unwrap_or_default();
        let name = inputs.service.name_any();
        let owner =
            VolumeOwner { tenant: inputs.tenant, namespace: &namespace, service: &name, claim: &names.claim, policy };
        // Marked already, as the cache shows: nothing to read or write. Else read it (not marked,
        // or marked for another service or policy) and mark it.
        let cached = ctx.caches.marked_volumes.get(&ObjectRef::new(&volume_name));
        let volume = match cached {
            Some(volume) if retention::is_marked(&volume, &owner) => Some(volume.as_ref().clone()),
            _ => Api::<PersistentVolume>::all(ctx.shared.client.clone()).get_opt(&volume_name).await?,
        };
        if let Some(volume) = volume {
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

/// Where the service's exchange stands.
#[derive(Debug)]
enum ExchangeState {
    /// `spec.exchange.enabled` is false.
    Disabled,
    /// An older DocumentService of the agency (`namespace/name`) holds the endpoint and identity.
    Conflict { holder: String, path: String },
    /// Its endpoint, and the identity it sends as.
    Registered { endpoint: Box<exchange::Endpoint>, identity: WorkloadIdentity },
}

/// Decides the exchange from every DocumentService of the province in the cache (no request).
fn exchange_state(read: &Read<'_, DocumentService>, ctx: &Context) -> Step<ExchangeState> {
    let service = read.service;
    if !service.spec.exchange.enabled {
        return Ok(ExchangeState::Disabled);
    }
    let shared = &ctx.shared;
    let agencies = shared.tenant_agencies();
    let documents = shared.documents.state();
    let peers = exchange::peers(documents.iter().filter_map(|d| d.0.as_ref().ok()), |namespace| {
        agencies.get(namespace).cloned()
    });
    let tenant = &read.tenant_context;
    let me = exchange::Peer {
        service,
        namespace: read.namespace.clone(),
        name: read.name.clone(),
        tenant: tenant.name.clone(),
        agency_code: tenant.agency_code.clone(),
        agency: normalise(&tenant.agency_code),
    };
    if let Some(holder) = exchange::holder(&peers, &me.agency, &me.name)
        && holder.namespace != me.namespace
    {
        return Ok(ExchangeState::Conflict {
            holder: format!("{}/{}", holder.namespace, holder.name),
            path: govpaas_crds::lgsp::exchange_path(&me.agency, &me.name),
        });
    }
    let base_domain = &read.platform.spec.base_domain;
    let identity = me
        .identity(base_domain)
        .map_err(|err| Halt::CertificateFailed(format!("cannot name the exchange identity: {err}")))?;
    let endpoint = exchange::endpoint(
        &me,
        &identity,
        &read.platform.spec,
        &tenant.domain,
        &read.uid,
        &ctx.caches.operator_namespace,
    );
    Ok(ExchangeState::Registered { endpoint: Box::new(endpoint), identity })
}

/// The `RoutesRegistered` condition.
fn routes(service: &DocumentService, exchange: &ExchangeState, operator_namespace: &str) -> Desired {
    match exchange {
        ExchangeState::Disabled => Desired::fails(
            ROUTES_REGISTERED,
            exchange::EXCHANGE_DISABLED,
            "spec.exchange.enabled is false: the agency has no exchange endpoint on the LGSP and sends no documents through it",
        ),
        ExchangeState::Conflict { holder, path } => Desired::fails(
            ROUTES_REGISTERED,
            exchange::NAME_CONFLICT,
            format!(
                "DocumentService {holder}, older and of the same agency, holds the exchange endpoint {path} and its sending identity: rename this DocumentService or turn its exchange off"
            ),
        )
        .with_event(EventType::Warning),
        ExchangeState::Registered { endpoint, identity } => {
            let rules = &service.spec.exchange;
            let table = endpoint.table.metadata.name.as_deref().unwrap_or_default();
            Desired::holds(
                ROUTES_REGISTERED,
                exchange::REGISTERED,
                // Nothing of the other DocumentServices: a status that named them would be
                // rewritten on every receiver with every new one.
                format!(
                    "exchange endpoint {} is in the LGSP gateway's route table {operator_namespace}/{table} with its sender rules (defaultDecision {:?}, {} sender rules): the gateway admits the province's registered exchange endpoints they allow; it sends as {}",
                    endpoint.url,
                    rules.default_decision,
                    rules.senders.len(),
                    identity.uri()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_gauges_read_both_certificates_the_status_records() {
        let tls = CertificateStatus { secret_name: Some("a-tls".into()), ..Default::default() };
        let signing = CertificateStatus { secret_name: Some("a-signing".into()), ..Default::default() };
        let mut status = DocumentServiceStatus { certificate: Some(tls.clone()), ..Default::default() };
        assert_eq!(DocumentService::certificates(&status), [("server", &tls)]);
        status.signing_certificate = Some(signing.clone());
        assert_eq!(DocumentService::certificates(&status), [("server", &tls), ("signing", &signing)]);
    }

    #[test]
    fn routes_registered_says_where_the_endpoint_is_or_why_not() {
        let service: DocumentService = fixtures::case("document/retained.yaml").one("DocumentService");
        let disabled = routes(&service, &ExchangeState::Disabled, "govpaas-system");
        assert_eq!(
            (disabled.status, disabled.reason.as_str()),
            (crate::reconcile::conditions::FALSE, "ExchangeDisabled")
        );
        let conflict = ExchangeState::Conflict { holder: "so-a/van-ban".into(), path: "/H48.12/edoc/van-ban/".into() };
        let refused = routes(&service, &conflict, "govpaas-system");
        assert_eq!(refused.reason, exchange::NAME_CONFLICT);
        assert!(refused.message.contains("so-a/van-ban") && refused.message.contains("/H48.12/edoc/van-ban/"));
    }
}

//! One reconcile of one Tenant: read → validate → decide its quota → build → apply → prune →
//! suspend or resume → status and Events. Only the apply steps talk to the API server; every
//! decision before them is a pure function of what the caches hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use govpaas_crds::platform::Platform;
use govpaas_crds::quantity::Amount;
use govpaas_crds::quota::{QuotaVector, Resource, split_namespaces};
use govpaas_crds::tenant::ServiceCounts;
use govpaas_crds::{Tenant, conditions::SUSPENDED};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource as _, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use super::build::{self, DEFAULT_INGRESS_NAMESPACE, Inputs, RESOURCE_QUOTA};
use super::pacing::{self, Pace};
use super::status::{self, Outcome, Suspension};
use super::validate;
use super::{COMPONENT, Context, suspend};
use crate::certificates::ca_secrets;
use crate::error::{Error, Result};
use crate::quota::{Family, Member, Request};
use crate::reconcile::apply::{Applier, FIELD_MANAGER};
use crate::reconcile::conditions;
use crate::reconcile::known::Lookup;
use crate::reconcile::outcome::Stop;
use crate::tenancy::TenantContext;
use crate::tenancy::TenantObject;
use govpaas_pki::renewal::requeue_after;

/// The safety-net resync of an unchanged Tenant.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How soon to look again while waiting for the parent to make room (a wake-up usually comes first).
const WAITING: Duration = Duration::from_secs(10);
/// How soon to look again at a namespace that belongs to someone else.
const TAKEN: Duration = Duration::from_secs(60);

/// Reconciles one Tenant.
pub async fn reconcile(object: Arc<TenantObject>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", controller = COMPONENT, tenant = %object.name_any());
    async move {
        let tenant = match &object.0 {
            Ok(tenant) => tenant,
            Err(invalid) => {
                // Only an object stored before the schema existed can fail to parse. Its status
                // cannot be computed, so it is left alone; the Event says why.
                let reference = object.object_ref(&());
                let note = format!("the Tenant cannot be read: {invalid}; fix or re-apply it");
                ctx.publisher.publish(&reference, EventType::Warning, "InvalidSpec", "Reconcile", &note, None).await;
                warn!(error = %invalid, "unreadable Tenant");
                return Ok(Action::await_change());
            }
        };
        tracing::debug!("waiting for caches");
        wait_for_caches(&ctx).await?;
        tracing::debug!("caches ready");
        reconcile_tenant(tenant, &ctx).await
    }
    .instrument(span)
    .await
}

/// Before the first reconcile, every cache has listed once: deciding on a half-filled cache
/// would write a wrong status (or prune what is merely not yet seen).
async fn wait_for_caches(ctx: &Context) -> Result<()> {
    let mut ready = ctx.caches_ready.clone();
    ready.wait_for(|ready| *ready).await.map(|_| ()).map_err(|_| Error::CachesStopped(COMPONENT))
}

async fn reconcile_tenant(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    let name = tenant.name_any();
    let uid = tenant.metadata.uid.clone().ok_or(Error::MissingField { kind: "Tenant", field: "metadata.uid" })?;

    // Read.
    let snapshot = ctx.tenants.state();
    let mut all: Vec<&Tenant> = snapshot.iter().filter_map(|t| t.0.as_ref().ok()).collect();
    validate::oldest_first(&mut all);
    let Some(platform) = ctx.platform() else {
        write_status(ctx, tenant, &Outcome::NoPlatform).await?;
        // The Platform's arrival reconciles every Tenant.
        return Ok(Action::await_change());
    };

    // Validate.
    let gateway_host = crate::lgsp::gateway_host(&platform.spec);
    let validation = validate::validate(tenant, &all, &platform.spec.base_domain, &[gateway_host.as_str()]);
    let (Ok(member), Ok(domain)) = (&validation.member, &validation.domain) else {
        write_status(ctx, tenant, &Outcome::Invalid(&validation)).await?;
        return Ok(Action::requeue(RESYNC));
    };
    if !validation.is_valid() {
        write_status(ctx, tenant, &Outcome::Invalid(&validation)).await?;
        return Ok(Action::requeue(RESYNC));
    }

    // Decide the quota. What each tenant holds is what its status records or, if more, what its
    // ResourceQuotas say they were written for (a kill between the two loses nothing).
    let quotas = &ctx.caches.resource_quotas;
    let quota_in = |namespace: &str| quotas.get(&ObjectRef::new(RESOURCE_QUOTA).within(namespace));
    let member = &with_written(member.clone(), written_quota(tenant, &quota_in));
    let members = family_members(tenant, &all, &quota_in);
    let family = Family {
        tenant: member,
        parent: members.parent.as_ref(),
        siblings: members.siblings.iter().collect(),
        children: members.children.iter().collect(),
    };
    let planned = ctx.ledger().plan(&family);
    let plan = match planned {
        Ok(plan) => plan,
        Err(error) => {
            write_status(ctx, tenant, &Outcome::QuotaUnusable { domain, error: &error }).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    tracing::debug!(request = ?plan.request, applying = plan.hard.is_some(), "quota decided");
    let waiting = matches!(plan.request, Request::WaitingForParent { .. } | Request::ParentNotProvisioned { .. });
    if waiting && let Some(parent) = &tenant.spec.parent {
        ctx.wake(parent);
    }
    let Some(own) = plan.own else {
        write_status(ctx, tenant, &Outcome::NotApplied { domain, plan: &plan }).await?;
        // Waiting for the parent is a moment (its reconcile wakes this one; the requeue is a
        // safety net); a refusal lasts until someone changes a quota, which wakes this Tenant
        // (see `Context::wake_refused_children`).
        return Ok(Action::requeue(if waiting { WAITING } else { RESYNC }));
    };
    let namespaces = match split_namespaces(tenant, &own) {
        Ok(namespaces) => namespaces,
        Err(error) => {
            write_status(ctx, tenant, &Outcome::QuotaUnusable { domain, error: &error }).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    let namespace_names: Vec<String> = namespaces.iter().map(|(n, _)| n.clone()).collect();
    if let Some(message) = taken_namespace(ctx, &namespace_names, &uid).await? {
        write_status(ctx, tenant, &Outcome::NamespaceTaken { domain, message }).await?;
        // A namespace made by hand is not watched: look again in a minute.
        return Ok(Action::requeue(TAKEN));
    }

    // Build.
    let owner = build::owner_reference(tenant).ok_or(Error::MissingField { kind: "Tenant", field: "metadata.uid" })?;
    let mut inputs = inputs(&platform, domain, namespaces, &ctx.settings.operator_namespace);
    inputs.quota_hard = plan.hard;
    let trust = trust_bundle(ctx, tenant, &platform, domain).await?;
    inputs.trust_bundle = trust.bundle;
    inputs.tenant_ca = trust.tenant_ca_pem;
    let objects = build::build(tenant, &owner, &inputs);

    // Apply, then prune what this Tenant had and no longer wants.
    // What the caches show already right is not applied again.
    let caches = &ctx.caches;
    let mut applier = Applier::remembering(ctx.client.clone(), ctx.applied.clone());
    applier.apply_all_unless_current(&objects.namespaces, &caches.namespaces).await?;
    applier.apply_all_unless_current(&objects.resource_quotas, &caches.resource_quotas).await?;
    applier.apply_all_unless_current(&objects.limit_ranges, &caches.limit_ranges).await?;
    applier.apply_all_unless_current(&objects.network_policies, &caches.network_policies).await?;
    applier.apply_all_unless_current(&objects.cluster_roles, &caches.cluster_roles).await?;
    applier.apply_all_unless_current(&objects.role_bindings, &caches.role_bindings).await?;
    applier.apply_all_unless_current(&objects.cluster_role_bindings, &caches.cluster_role_bindings).await?;
    // Trust bundles are not pruned: one goes with its namespace or its Tenant (owner reference),
    // and one left in place while the platform CA cannot be read keeps workloads verifying.
    applier.apply_all_unless_current(&objects.config_maps, &caches.trust_bundles).await?;
    let mut pruned = Vec::new();
    pruned.extend(
        applier.prune::<ClusterRoleBinding, _>(&caches.cluster_role_bindings.state(), COMPONENT, &name, &uid).await?,
    );
    pruned.extend(applier.prune::<RoleBinding, _>(&caches.role_bindings.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune::<ClusterRole, _>(&caches.cluster_roles.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune::<NetworkPolicy, _>(&caches.network_policies.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune::<LimitRange, _>(&caches.limit_ranges.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune::<ResourceQuota, _>(&caches.resource_quotas.state(), COMPONENT, &name, &uid).await?);
    // Namespaces last: deleting one deletes everything in it.
    pruned.extend(applier.prune::<Namespace, _>(&caches.namespaces.state(), COMPONENT, &name, &uid).await?);
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the tenant no longer wants");
    }

    // The quota is in place: tell the ledger, and whoever may now move.
    let effects = ctx.ledger().applied(member, &plan);
    if effects.parent_changed {
        // What this tenant holds changed: its parent resizes its own share, and a refused sibling
        // or child may fit now.
        if let Some(parent) = &tenant.spec.parent {
            ctx.wake(parent);
            ctx.wake_refused_children(parent);
        }
        ctx.wake_refused_children(&name);
    }
    for child in &effects.children_to_wake {
        ctx.wake(child);
    }

    // Suspend or resume the agency's Deployments.
    let previous = tenant.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let suspension =
        suspend_or_resume(ctx, tenant.spec.suspended, conditions::is_true(previous, SUSPENDED), &namespace_names)
            .await?;

    let used = used(ctx, &namespace_names);
    let outcome = Outcome::Applied { domain, plan: &plan, namespaces: &namespace_names, suspension };
    write_status_with_usage(ctx, tenant, &outcome, used, trust.tenant_ca).await?;
    // Back soon while a suspension or resumption is still settling (a ReplicaSet releasing a Pod it
    // does not select, a Pod still terminating).
    let resuming = (suspension.held > 0 && !suspension.suspended) || suspension.settling;
    // Back at the tenant CA's renewal instant, if that comes before the resync.
    let resync =
        trust.renewal.map_or(RESYNC, |at| requeue_after(time::OffsetDateTime::now_utc(), at).min(RESYNC).max(WAITING));
    Ok(Action::requeue(if waiting || resuming { WAITING } else { resync }))
}

/// What a tenant's namespaces get of the platform trust, and what its status says of its CA.
#[derive(Default)]
struct TenantTrust {
    /// The bundle (`ca.crt`); `None` while the platform trust cannot be used.
    bundle: Option<String>,
    /// The tenant CA's certificate, for the bundle's `tenant-ca.crt`.
    tenant_ca_pem: Option<String>,
    /// The tenant CA for status.
    tenant_ca: Option<govpaas_crds::status::CertificateStatus>,
    /// When the tenant CA is next due.
    renewal: Option<time::OffsetDateTime>,
}

/// The trust bundle of the tenant's namespaces, after making sure the platform trust and the
/// tenant's own CA exist and are current (so a tenant has its intermediate before its first
/// service, it is renewed on time even without services, and it moves to the new platform CA as
/// soon as a rotation re-issues); and when the tenant CA is next due. No bundle, with a warning,
/// when the platform trust cannot be used: the Platform's and the services' conditions say why,
/// and an existing bundle stays as it is.
async fn trust_bundle(ctx: &Context, tenant: &Tenant, platform: &Platform, domain: &str) -> Result<TenantTrust> {
    let now = time::OffsetDateTime::now_utc();
    let operator_namespace = &ctx.settings.operator_namespace;
    let store = crate::certificates::trust_store::TrustStore::new(ctx.client.clone(), operator_namespace);
    let unusable = |message: String| {
        warn!(%message, "no trust bundle: the certificate authority cannot be used");
        Ok(TenantTrust::default())
    };
    let policy = match ca_secrets::issuance_policy(&platform.spec) {
        Ok(policy) => policy,
        Err(message) => return unusable(message),
    };
    let trust = match ctx.trust.current() {
        Ok(trust) => trust,
        Err(Stop::Halt(halt)) => return unusable(halt.into_message()),
        Err(Stop::Failed(error)) => return Err(error),
    };
    let mut context = TenantContext::of(tenant, platform);
    context.domain = domain.to_owned();
    let base_domain = &platform.spec.base_domain;
    let name = ca_secrets::tenant_ca_secret_name(&context.name);
    let stored = Lookup { known: &ctx.known_cas, cache: &ctx.caches.ca_secrets }
        .get(&ctx.client, operator_namespace, &name)
        .await?;
    let tenant_ca = ca_secrets::tenant_ca(
        &store.secrets,
        stored,
        &ctx.known_cas,
        tenant,
        &context,
        base_domain,
        &trust,
        &policy,
        now,
    )
    .await?;
    let trust_now = trust;
    let mut trust = TenantTrust { bundle: Some(trust_now.bundle_pem.clone()), ..TenantTrust::default() };
    match tenant_ca {
        Ok(tenant_ca) => {
            let tenant_ca = Arc::new(tenant_ca);
            ctx.tenant_cas.publish(&tenant.name_any(), &trust_now.issuing, tenant_ca.clone());
            // A tenant CA's renewal point is when the operator renews it.
            let renewal = ca_secrets::tenant_ca_renewal_time(&tenant_ca, &policy);
            let secret = ca_secrets::tenant_ca_secret_name(&tenant.name_any());
            let key = ca_secrets::ca_gauge_key(operator_namespace, &secret, "tenant-ca");
            let gauges = &ctx.settings.telemetry.certificates;
            gauges.observe(key, tenant_ca.not_after().unix_timestamp(), renewal.unix_timestamp());
            trust.renewal = Some(renewal);
            trust.tenant_ca = Some(ca_secrets::ca_status(&secret, &tenant_ca, &policy));
            trust.tenant_ca_pem = Some(tenant_ca.certificate_pem().to_owned());
        }
        // The bundle's `ca.crt` holds the platform CAs only: it is still right.
        Err(message) => warn!(%message, "the tenant's CA cannot be used"),
    }
    Ok(trust)
}

/// The parent, siblings and children of `tenant` as quota decisions see them.
struct Members {
    parent: Option<Member>,
    siblings: Vec<Member>,
    children: Vec<Member>,
}

/// The most any of `tenant`'s ResourceQuotas say they were written for (the granted-quota
/// annotation, the tenant's whole quota, is on each of them). Looked up by name in the tenant's
/// namespaces (`quota_in`: the cached `govpaas-quota` of a namespace), not by scanning every
/// ResourceQuota: it runs for the whole family on every reconcile.
fn written_quota(tenant: &Tenant, quota_in: &dyn Fn(&str) -> Option<Arc<ResourceQuota>>) -> Option<QuotaVector> {
    let name = tenant.metadata.name.as_deref()?;
    let mut written: Option<QuotaVector> = None;
    for namespace in tenant.namespace_refs() {
        let Some(quota) = quota_in(namespace) else { continue };
        if quota.labels().get(govpaas_crds::metadata::TENANT_LABEL).map(String::as_str) != Some(name) {
            continue;
        }
        let Some(granted) = quota.annotations().get(build::GRANTED_QUOTA_ANNOTATION) else { continue };
        let Ok(map) = serde_json::from_str::<BTreeMap<String, Quantity>>(granted) else { continue };
        let Ok(granted) = QuotaVector::from_status(&map) else { continue };
        written = Some(written.map_or(granted, |w| w.max(&granted)));
    }
    written
}

/// `member` holding the larger of what its status records and what its ResourceQuotas were
/// written for.
fn with_written(mut member: Member, written: Option<QuotaVector>) -> Member {
    if let Some(granted) = written {
        member.recorded = Some(member.recorded.map_or(granted, |recorded| recorded.max(&granted)));
    }
    member
}

fn family_members(tenant: &Tenant, all: &[&Tenant], quota_in: &dyn Fn(&str) -> Option<Arc<ResourceQuota>>) -> Members {
    let name = tenant.metadata.name.as_deref();
    let as_member = |t: &&Tenant| validate::member(t).ok().map(|m| with_written(m, written_quota(t, quota_in)));
    let parent_name = tenant.spec.parent.as_deref();
    Members {
        parent: parent_name
            .and_then(|p| all.iter().find(|t| t.metadata.name.as_deref() == Some(p)))
            .and_then(as_member),
        siblings: match parent_name {
            Some(p) => all.iter().filter(|t| t.spec.parent.as_deref() == Some(p)).filter_map(as_member).collect(),
            None => Vec::new(),
        },
        children: match name {
            Some(name) => all.iter().filter(|t| t.spec.parent.as_deref() == Some(name)).filter_map(as_member).collect(),
            None => Vec::new(),
        },
    }
}

fn inputs(
    platform: &Platform,
    domain: &str,
    namespaces: Vec<(String, QuotaVector)>,
    operator_namespace: &str,
) -> Inputs {
    let small = &platform.spec.sizes.small;
    Inputs {
        domain: domain.to_owned(),
        namespaces,
        ingress_namespace: platform.spec.ingress_namespace.clone().unwrap_or_else(|| DEFAULT_INGRESS_NAMESPACE.into()),
        gateway_namespace: operator_namespace.to_owned(),
        default_requests: small.requests.clone(),
        default_limits: small.limits.clone(),
        trust_bundle: None,
        tenant_ca: None,
        quota_hard: None,
    }
}

/// A message if one of `namespaces` exists and is not this Tenant's: applying would take over
/// someone else's namespace, and deleting the Tenant would then delete it.
async fn taken_namespace(ctx: &Context, namespaces: &[String], uid: &str) -> Result<Option<String>> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for namespace in namespaces {
        let ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.owner_references.iter().flatten().any(|owner| owner.uid == uid)
        };
        // The cache holds the namespaces govpaas labelled; only others need a look.
        if ctx.caches.namespaces.get(&ObjectRef::new(namespace)).is_some_and(|cached| ours(&cached.metadata)) {
            continue;
        }
        if let Some(existing) = api.get_metadata_opt(namespace).await?
            && !ours(&existing.metadata)
        {
            if existing.metadata.deletion_timestamp.is_some() {
                // Its deletion ends with a watch event that reconciles this Tenant again.
                return Ok(Some(format!(
                    "namespace {namespace:?} is still being deleted (it belonged to an earlier owner); it is provisioned as soon as it is gone"
                )));
            }
            let owner = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Tenant")
                .map(|o| format!("Tenant {:?}", o.name))
                .unwrap_or_else(|| "no Tenant (it was made by hand or by another tool)".into());
            return Ok(Some(format!(
                "namespace {namespace:?} already exists and belongs to {owner}: choose another name in spec.namespaces, or delete that namespace"
            )));
        }
    }
    Ok(None)
}

/// Stops every workload of a suspended tenant, or brings it back on resume ([`suspend`]). Lists
/// workloads only while suspended or resuming.
async fn suspend_or_resume(
    ctx: &Context,
    suspended: bool,
    was_suspended: bool,
    namespaces: &[String],
) -> Result<Suspension> {
    if !suspended && !was_suspended {
        return Ok(Suspension::default());
    }
    let mut held = 0;
    let mut acted = false;
    for namespace in namespaces {
        let workloads = suspend::Workloads {
            deployments: list(ctx, namespace).await?,
            stateful_sets: list(ctx, namespace).await?,
            replica_sets: list(ctx, namespace).await?,
            jobs: list(ctx, namespace).await?,
            cron_jobs: list(ctx, namespace).await?,
            pods: if suspended { list(ctx, namespace).await? } else { Vec::new() },
        };
        let plan = suspend::plan(&workloads, suspended);
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        for step in &plan.steps {
            acted = true;
            match step {
                suspend::Step::Patch { kind, name, patch } => {
                    let patch = Patch::Merge(patch);
                    let client = ctx.client.clone();
                    match kind {
                        suspend::Kind::Deployment => {
                            patch_named::<Deployment>(client, namespace, name, &params, &patch).await?
                        }
                        suspend::Kind::StatefulSet => {
                            patch_named::<StatefulSet>(client, namespace, name, &params, &patch).await?
                        }
                        suspend::Kind::ReplicaSet => {
                            patch_named::<ReplicaSet>(client, namespace, name, &params, &patch).await?
                        }
                        suspend::Kind::Job => patch_named::<Job>(client, namespace, name, &params, &patch).await?,
                        suspend::Kind::CronJob => {
                            patch_named::<CronJob>(client, namespace, name, &params, &patch).await?
                        }
                    }
                    info!(namespace, ?kind, name, suspended, "suspension step");
                }
                suspend::Step::DeletePod { name } => {
                    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
                    match pods.delete(name, &DeleteParams::default()).await {
                        Ok(_) => {
                            info!(namespace, pod = name, "deleted a Pod no workload controls: the tenant is suspended")
                        }
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        }
        held += plan.held;
    }
    Ok(Suspension { suspended, held, settling: acted })
}

async fn list<K>(ctx: &Context, namespace: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items)
}

async fn patch_named<K>(
    client: kube::Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    patch: &Patch<&serde_json::Value>,
) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    match api.patch(name, params, patch).await {
        Ok(_) => Ok(()),
        // Deleted since the list: nothing left to hold.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// What the tenant's namespaces use, summed, by quota field name.
fn used(ctx: &Context, namespaces: &[String]) -> BTreeMap<String, Quantity> {
    let mut totals: BTreeMap<Resource, Amount> = BTreeMap::new();
    for namespace in namespaces {
        let key = ObjectRef::new(RESOURCE_QUOTA).within(namespace);
        let Some(quota) = ctx.caches.resource_quotas.get(&key) else { continue };
        let Some(used) = quota.status.as_ref().and_then(|s| s.used.as_ref()) else { continue };
        for resource in Resource::ALL {
            let Some(amount) = resource.resource_quota_key().and_then(|k| used.get(k)).and_then(|q| Amount::of(q).ok())
            else {
                continue;
            };
            let total = totals.entry(resource).or_default();
            *total = total.checked_add(amount).unwrap_or(*total);
        }
    }
    totals
        .into_iter()
        .map(|(resource, amount)| {
            let mut vector = QuotaVector::default();
            vector.set(resource, amount);
            let formatted = vector.to_status().remove(resource.field()).unwrap_or_else(|| Quantity(amount.to_string()));
            (resource.field().to_owned(), formatted)
        })
        .collect()
}

/// The tenant's services, counted in its namespaces (objects being deleted are no longer counted).
fn service_counts(ctx: &Context, namespaces: &[String]) -> ServiceCounts {
    let caches = &ctx.caches;
    let sum = |count: &dyn Fn(&str) -> i32| namespaces.iter().map(|n| count(n)).fold(0i32, i32::saturating_add);
    ServiceCounts {
        portals: sum(&|n| caches.portals.in_namespace(n)),
        document_services: sum(&|n| caches.document_services.in_namespace(n)),
        data_sharing_services: sum(&|n| caches.data_sharing_services.in_namespace(n)),
    }
}

/// Writes a status for an outcome that applied nothing: usage stays as last seen.
async fn write_status(ctx: &Context, tenant: &Tenant, outcome: &Outcome<'_>) -> Result<()> {
    let used = tenant.status.as_ref().and_then(|s| s.quota.as_ref()).map(|q| q.used.clone()).unwrap_or_default();
    write_status_with_usage(ctx, tenant, outcome, used, None).await
}

/// Writes the status for `outcome` (a no-op on the server when nothing changed) and publishes the
/// Events of the conditions that changed.
async fn write_status_with_usage(
    ctx: &Context,
    tenant: &Tenant,
    outcome: &Outcome<'_>,
    used: BTreeMap<String, Quantity>,
    ca: Option<govpaas_crds::status::CertificateStatus>,
) -> Result<()> {
    let previous = tenant.status.as_ref();
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let desired = status::conditions(outcome, previous_conditions);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut children: Vec<String> = ctx
        .tenants
        .state()
        .iter()
        .filter_map(|t| t.0.as_ref().ok())
        .filter(|t| t.spec.parent.as_deref() == Some(tenant.name_any().as_str()))
        .map(|t| t.name_any())
        .collect();
    children.sort();
    let services = service_counts(ctx, &tenant.namespace_names());
    let observed = status::Observed { used, children, services, ca };
    let new_status = status::status(outcome, &desired, previous, tenant.metadata.generation, observed, &now);
    // What the tenant observes alone waits for the end of its pacing interval (`super::pacing`).
    let key = tenant.metadata.uid.clone().unwrap_or_else(|| tenant.name_any());
    if previous.is_some_and(|stored| pacing::observations_only(stored, &new_status))
        && let Pace::Wait(wait, schedule) = ctx.observation_pacing.pace(&key, Instant::now())
    {
        if schedule {
            ctx.wake_after(&tenant.name_any(), wait);
        }
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    match ctx.status_writes.write(&api, tenant, previous, &new_status).await {
        // Deleted meanwhile: nothing left to report on.
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => return Ok(()),
        Ok(true) => ctx.observation_pacing.written(&key, Instant::now()),
        Ok(false) => {}
        Err(error) => return Err(error),
    };

    let reference = tenant.object_ref(&());
    for changed in conditions::changed_with_events(previous_conditions, &desired) {
        let type_ = changed.event.unwrap_or(EventType::Normal);
        let reason = event_reason(changed);
        ctx.publisher.publish(&reference, type_, &reason, "Reconcile", &changed.message, None).await;
    }
    // The parent hears of a child that asks for more than it has left.
    if let Outcome::NotApplied { plan, .. } | Outcome::Applied { plan, .. } = outcome
        && let (Some(excess), Some(parent_name)) = (status::exceeds_parent(&plan.request), &tenant.spec.parent)
        && conditions::changed_with_events(previous_conditions, &desired)
            .iter()
            .any(|d| d.type_ == govpaas_crds::conditions::QUOTA_EXCEEDED)
        && let Some(parent) = ctx.tenants.get(&ObjectRef::new(parent_name))
    {
        let note = format!(
            "child Tenant {:?} asks for more than is left ({excess}); it is not given the increase",
            tenant.name_any()
        );
        ctx.publisher
            .publish(
                &parent.object_ref(&()),
                EventType::Warning,
                "ChildQuotaExceeded",
                "Reconcile",
                &note,
                Some(reference),
            )
            .await;
    }
    Ok(())
}

/// An Event's reason: the condition's reason, or for a condition that came good, what happened.
fn event_reason(condition: &conditions::Desired) -> String {
    match (condition.type_.as_str(), condition.status) {
        ("Ready", conditions::TRUE) => "Provisioned".into(),
        (SUSPENDED, conditions::FALSE) => "Resumed".into(),
        _ => condition.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::fixtures;

    /// A kill between a child's ResourceQuotas and its status: the next process finds what the
    /// child holds on its ResourceQuotas, so its parent does not take the child's share back.
    #[test]
    fn what_resource_quotas_were_written_for_counts_when_the_status_lags() {
        let tenants = fixtures::province();
        let tenant = tenants.iter().find(|t| t.spec.namespaces.len() > 1).expect("a tenant with several namespaces");
        let namespaces = tenant.namespace_names();
        let granted = QuotaVector::of_tenant(&tenant.spec.quota).unwrap();
        let quota = |owner: &str, granted: &QuotaVector| {
            let mut quota = ResourceQuota::default();
            quota.metadata.labels =
                Some(BTreeMap::from([(govpaas_crds::metadata::TENANT_LABEL.to_owned(), owner.to_owned())]));
            quota.metadata.annotations = Some(BTreeMap::from([(
                build::GRANTED_QUOTA_ANNOTATION.to_owned(),
                serde_json::to_string(&granted.to_status()).unwrap(),
            )]));
            Arc::new(quota)
        };
        let smaller = QuotaVector::default();
        let in_namespaces = |quotas: Vec<Arc<ResourceQuota>>| {
            let by_namespace: std::collections::HashMap<String, Arc<ResourceQuota>> =
                namespaces.iter().cloned().zip(quotas).collect();
            move |namespace: &str| by_namespace.get(namespace).cloned()
        };
        let written = written_quota(
            tenant,
            &in_namespaces(vec![quota(&tenant.name_any(), &smaller), quota(&tenant.name_any(), &granted)]),
        );
        assert_eq!(written, Some(granted), "the larger of a tenant's ResourceQuotas");
        // A ResourceQuota of that name labelled for another tenant is not this tenant's.
        let foreign = written_quota(tenant, &in_namespaces(vec![quota("someone-else", &granted)]));
        assert_eq!(foreign, None);

        let mut member = validate::member(tenant).unwrap();
        member.recorded = None;
        assert_eq!(with_written(member.clone(), written).recorded, Some(granted));
        member.recorded = Some(smaller);
        assert_eq!(with_written(member.clone(), written).recorded, Some(granted));
        assert_eq!(with_written(member, None).recorded, Some(smaller));
    }

    #[test]
    fn family_members_come_from_the_cache() {
        let tenants = fixtures::province();
        let mut all = fixtures::refs(&tenants);
        validate::oldest_first(&mut all);
        let members = family_members(all[1], &all, &|_| None);
        assert_eq!(members.parent.unwrap().name, "quang-nam");
        let siblings: Vec<_> = members.siblings.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(siblings, ["so-noi-vu", "so-y-te", "xa-dai-loc"]);
        assert!(members.children.is_empty());
        let province = family_members(all[0], &all, &|_| None);
        assert!(province.parent.is_none());
        assert_eq!(province.children.len(), 3);
    }

    #[test]
    fn the_ingress_namespace_defaults() {
        let mut platform = fixtures::platform();
        platform.spec.ingress_namespace = None;
        let inputs = inputs(&platform, "d", vec![], "govpaas-system");
        assert_eq!(inputs.ingress_namespace, "ingress-nginx");
        assert_eq!(inputs.default_requests.cpu, Quantity("100m".into()));
    }
}

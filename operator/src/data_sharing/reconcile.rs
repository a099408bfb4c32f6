//! One reconcile of one DataSharingService: read (its tenant, the Platform, every
//! DataSharingService's grants, the Services behind its APIs) → validate (name, `lgspApis` quota)
//! → client certificate → build → apply → prune → status and Events. Only the reads of Services
//! and the client Secret, the CA Secrets and the writes talk to the API server; every decision is a
//! pure function ([`super::grants`], [`super::build`]).

use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::conditions::{CERTIFICATE_READY, READY, ROUTES_REGISTERED, reasons};
use govpaas_crds::data_sharing::{
    ConsumptionStatus, DataSharingService, DataSharingServiceStatus, GrantState, ProvidedApi,
};
use govpaas_crds::lgsp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use time::OffsetDateTime;
use tracing::{Instrument, debug, info, info_span};

use super::build::{self, COMPONENT, Inputs};
use super::grants::{self, Directory};
use crate::certificates::leaf::{Leaf, LeafSpec, Stored, keep_or_issue};
use crate::error::{Error, Result};
use crate::reconcile::apply::{self, Applier};
use crate::reconcile::conditions::{self, Desired};
use crate::telemetry::CertificateKey;
use crate::tenancy::Scope;
use crate::workload::Problem;
use crate::workload::runtime::{DataSharingObject, ServiceContext};
use crate::workload::status::{self as workload_status, CERTIFICATE_FAILED};
use govpaas_pki::renewal::requeue_after;

/// The safety-net resync of an unchanged DataSharingService.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// `RoutesRegistered`'s reason when it is in the route table.
pub const REGISTERED: &str = "Registered";
/// `RoutesRegistered`'s reason when there is nothing for the gateway.
pub const NO_ROUTES: &str = "NoRoutes";

/// Caches of what the controller writes: metadata only, for wake-ups and pruning.
#[derive(Clone)]
pub struct Caches {
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Route tables, in the operator's namespace.
    pub route_tables: Store<PartialObjectMeta<ConfigMap>>,
}

/// What every reconcile shares.
pub type Context = ServiceContext<Caches>;

/// Reconciles one DataSharingService.
pub async fn reconcile(object: Arc<DataSharingObject>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        controller = COMPONENT,
        namespace = %object.namespace().unwrap_or_default(),
        data_sharing_service = %object.name_any()
    );
    ctx.when_readable(&object, "DataSharingService", |service| reconcile_service(service, &ctx)).instrument(span).await
}

/// What a reconcile did.
enum Outcome<'a> {
    /// Waiting for the Platform, the tenant or its CA.
    Waiting(String),
    /// Refused as declared (name, quota): nothing was changed.
    Refused(&'a Problem),
    /// The client certificate could not be issued: nothing was changed.
    CertificateFailed(String),
    /// Applied.
    Applied(Applied<'a>),
}

/// What was applied.
struct Applied<'a> {
    /// The provided APIs that are in the route table.
    registered: usize,
    /// The provided APIs that are not, and why.
    unregistered: Vec<Problem>,
    /// National APIs granted (also in the table).
    national: usize,
    /// The route table's `namespace/name`, if it has one.
    table: Option<String>,
    /// The client certificate: its Secret, its identity and the leaf.
    client: Option<(&'a str, &'a str, &'a Leaf)>,
    consumptions: &'a [ConsumptionStatus],
}

async fn reconcile_service(service: &DataSharingService, ctx: &Context) -> Result<Action> {
    let shared = &ctx.shared;
    if service.metadata.deletion_timestamp.is_some() {
        // Its NetworkPolicies and Secret carry owner references; its route table is swept.
        return Ok(Action::await_change());
    }
    let namespace =
        service.namespace().ok_or(Error::MissingField { kind: "DataSharingService", field: "metadata.namespace" })?;
    let uid = service.uid().ok_or(Error::MissingField { kind: "DataSharingService", field: "metadata.uid" })?;
    let name = service.name_any();

    // Read: the tenant, the Platform, and every DataSharingService with its agency.
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
    let everyone = shared.data_sharing.state();
    let agencies = shared.tenant_agencies();
    let members = grants::members(everyone.iter().filter_map(|s| s.0.as_ref().ok()), |ns| agencies.get(ns).cloned());
    let codes: Vec<String> = agencies.values().map(|(_, code)| code.clone()).collect();
    let directory = Directory::new(members, codes, platform.spec.lgsp.ndxp.is_some());
    let Some(member) = directory.member(&namespace, &name) else {
        let message = format!("namespace {namespace} is not provisioned by its Tenant yet");
        return not_applied(ctx, service, &Outcome::Waiting(message)).await;
    };
    let inputs = Inputs {
        service,
        member,
        directory: &directory,
        platform: &platform.spec,
        operator_namespace: &shared.settings.operator_namespace,
    };

    // Validate: the name, the tenant's lgspApis (only growth is checked, oldest services first).
    if let Some(problem) = build::validate(service) {
        return refused(ctx, service, &problem).await;
    }
    let wanted = service.spec.provides.len();
    let current = service.status.as_ref().and_then(|s| s.provided_apis).unwrap_or(0);
    if i64::try_from(wanted).unwrap_or(i64::MAX) > i64::from(current) {
        let before = directory.lgsp_apis_before(member);
        let quota = i64::from(tenant.spec.quota.lgsp_apis);
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
        if before.saturating_add(wanted) > quota {
            let problem = Problem {
                reason: reasons::QUOTA_EXCEEDED,
                message: format!(
                    "tenant {} may provide {quota} LGSP APIs (quota.lgspApis); its older DataSharingServices provide {before} and this one asks for {wanted}. Nothing was changed; provide fewer APIs or ask the provincial admin to raise the quota",
                    member.tenant
                ),
            };
            return refused(ctx, service, &problem).await;
        }
    }

    // The Services behind the provided APIs.
    let client = shared.client.clone();
    let services_api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let mut found: Vec<Service> = Vec::new();
    for wanted in service.spec.provides.iter().map(|api| api.service.as_str()) {
        if found.iter().any(|s| s.name_any() == wanted) {
            continue;
        }
        if let Some(svc) = services_api.get_opt(wanted).await? {
            found.push(svc);
        }
    }
    let provided = build::provided(&inputs, |wanted| found.iter().find(|s| s.name_any() == wanted));
    let registered: Vec<&ProvidedApi> = provided.iter().filter(|p| p.backend.is_ok()).map(|p| p.api).collect();
    let unregistered: Vec<Problem> = provided.iter().filter_map(|p| p.backend.clone().err()).collect();
    let consumptions = build::consumptions(&inputs);

    // The client certificate, when it consumes anything.
    let now = OffsetDateTime::now_utc();
    let secret_name = build::client_secret_name(&name);
    let mut renewal = None;
    let client_leaf = if service.spec.consumes.is_empty() {
        None
    } else {
        let tenant_context = shared.tenant_context(tenant, &platform, &namespace);
        let authority = match shared.authority(&tenant_context, &platform, now).await? {
            Ok(authority) => authority,
            Err(message) => return not_applied(ctx, service, &Outcome::Waiting(message)).await,
        };
        let identity = match inputs.identity() {
            Ok(identity) => identity,
            Err(err) => {
                let message = format!("cannot name the client identity: {err}");
                return not_applied(ctx, service, &Outcome::CertificateFailed(message)).await;
            }
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let stored = secrets.get_opt(&secret_name).await?;
        let spec = LeafSpec::Client { identity: identity.clone() };
        match keep_or_issue(Stored::of(stored.as_ref()), &spec, &authority.issuer(), now) {
            Ok(leaf) => {
                renewal = Some(leaf.renewal_time(&authority.policy));
                Some((identity.uri(), leaf, authority.policy))
            }
            Err(err) => {
                let message = format!("cannot issue the LGSP client certificate for {}: {err}", identity.uri());
                return not_applied(ctx, service, &Outcome::CertificateFailed(message)).await;
            }
        }
    };

    // Build and apply; prune what it made before and no longer wants.
    let table = build::route_table(&inputs, &registered, &consumptions, &uid);
    let desired =
        build::build(&inputs, &provided, client_leaf.as_ref().map(|(_, leaf, _)| &leaf.material), table.as_ref())?;
    let mut applier = Applier::new(client.clone());
    let applied = async {
        if let Some(secret) = &desired.client_secret {
            applier.apply(secret).await?;
        }
        applier.apply_all(&desired.network_policies).await?;
        if let Some(table) = &desired.route_table {
            applier.apply(table).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    match applied {
        Ok(()) => {}
        Err(err) if apply::is_conflict(&err) => return Ok(workload_status::changed_meanwhile(&err)),
        Err(Error::Kube(err)) => match workload_status::refusal(&err, "applying the DataSharingService's objects") {
            Some(problem) => return refused(ctx, service, &problem).await,
            None => return Err(Error::Kube(err)),
        },
        Err(other) => return Err(other),
    }
    let caches = &ctx.caches;
    let mut pruned = Vec::new();
    pruned.extend(applier.prune(&caches.network_policies.state(), COMPONENT, &name, &uid).await?);
    pruned.extend(applier.prune(&caches.secrets.state(), COMPONENT, &name, &uid).await?);
    let table_name = lgsp::route_table_name(&namespace, &name);
    if desired.route_table.is_none() {
        let operator_namespace = &shared.settings.operator_namespace;
        if let Some(stale) = caches.route_tables.get(&ObjectRef::new(&table_name).within(operator_namespace)) {
            let stale = super::sweep::Stale {
                name: table_name.clone(),
                uid: stale.metadata.uid.clone().unwrap_or_default(),
                resource_version: stale.metadata.resource_version.clone(),
            };
            if super::sweep::delete(&Api::namespaced(client.clone(), operator_namespace), &stale).await? {
                pruned.push(format!("{operator_namespace}/{table_name}"));
            }
        }
    }
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the DataSharingService no longer wants");
    }

    let reference = service.object_ref(&());
    let key = certificate_key(&namespace, &name);
    let client = match &client_leaf {
        Some((identity, leaf, policy)) => {
            let what = format!("LGSP client certificate for {identity}");
            shared.publish_issued(&reference, &what, leaf).await;
            shared.observe_certificate(key, leaf, policy);
            Some((secret_name.as_str(), identity.as_str(), leaf))
        }
        None => {
            shared.settings.telemetry.certificates.forget(&key);
            None
        }
    };
    let statuses: Vec<ConsumptionStatus> = consumptions.iter().map(|(c, _)| c.clone()).collect();
    let outcome = Outcome::Applied(Applied {
        registered: registered.len(),
        unregistered,
        national: table.as_ref().map_or(0, |t| t.national.len()),
        table: desired.route_table.as_ref().map(|_| format!("{}/{table_name}", shared.settings.operator_namespace)),
        client,
        consumptions: &statuses,
    });
    let certificate = client_leaf
        .as_ref()
        .zip(client)
        .map(|((_, _, policy), (secret, _, leaf))| workload_status::certificate_status(secret, leaf, policy));
    let base = build::status(&inputs, &registered, &consumptions, certificate);
    write_status(ctx, service, &outcome, base).await?;
    debug!("applied DataSharingService {namespace}/{name}");
    let next = renewal.map_or(RESYNC, |at| requeue_after(now, at).min(RESYNC));
    Ok(Action::requeue(next))
}

/// The gauge key of a DataSharingService's client certificate.
pub fn certificate_keys(service: &DataSharingObject) -> Vec<CertificateKey> {
    vec![certificate_key(&service.namespace().unwrap_or_default(), &service.name_any())]
}

fn certificate_key(namespace: &str, name: &str) -> CertificateKey {
    CertificateKey { namespace: namespace.to_owned(), secret: build::client_secret_name(name), kind: "client" }
}

async fn refused(ctx: &Context, service: &DataSharingService, problem: &Problem) -> Result<Action> {
    info!(reason = problem.reason, message = %problem.message, "DataSharingService not applied");
    not_applied(ctx, service, &Outcome::Refused(problem)).await
}

/// Writes the status of an outcome that applied nothing: what was registered is described as
/// before.
async fn not_applied(ctx: &Context, service: &DataSharingService, outcome: &Outcome<'_>) -> Result<Action> {
    let base = service.status.clone().unwrap_or_default();
    write_status(ctx, service, outcome, base).await?;
    // What it waits for (the Platform, the Tenant, the quota, the other side) wakes it.
    Ok(Action::requeue(RESYNC))
}

fn carried_over(previous: &[Condition], type_: &str) -> Option<Desired> {
    conditions::find(previous, type_).map(|c| Desired {
        type_: c.type_.clone(),
        status: if c.status == conditions::TRUE { conditions::TRUE } else { conditions::FALSE },
        reason: c.reason.clone(),
        message: c.message.clone(),
        event: None,
    })
}

/// The conditions of `outcome`; `previous` are those in status now.
fn conditions_of(outcome: &Outcome<'_>, previous: &[Condition]) -> Vec<Desired> {
    let mut all = Vec::new();
    match outcome {
        Outcome::Waiting(message) => {
            all.push(Desired::fails(READY, reasons::PENDING, message.clone()));
            all.extend(carried_over(previous, ROUTES_REGISTERED));
            all.extend(carried_over(previous, CERTIFICATE_READY));
        }
        Outcome::Refused(problem) => {
            all.push(Desired::fails(READY, problem.reason, problem.message.clone()).with_event(EventType::Warning));
            all.extend(carried_over(previous, ROUTES_REGISTERED));
            all.extend(carried_over(previous, CERTIFICATE_READY));
        }
        Outcome::CertificateFailed(message) => {
            all.push(Desired::fails(READY, CERTIFICATE_FAILED, message.clone()).with_event(EventType::Warning));
            all.extend(carried_over(previous, ROUTES_REGISTERED));
            all.push(Desired::fails(CERTIFICATE_READY, CERTIFICATE_FAILED, message.clone()));
        }
        Outcome::Applied(applied) => {
            all.push(ready(applied));
            all.push(routes_registered(applied));
            if let Some((secret, identity, leaf)) = applied.client {
                all.push(Desired::holds(
                    CERTIFICATE_READY,
                    "Issued",
                    format!(
                        "LGSP client certificate for {identity} in Secret {secret}, issued by the tenant CA, valid until {}",
                        crate::reconcile::conditions::time_of(leaf.not_after).0
                    ),
                ));
            }
        }
    }
    all
}

fn ready(applied: &Applied<'_>) -> Desired {
    if let Some(first) = applied.unregistered.first() {
        let message = applied.unregistered.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
        return Desired::fails(READY, first.reason, message).with_event(EventType::Warning);
    }
    let count = |state: GrantState| applied.consumptions.iter().filter(|c| c.state == state).count();
    let message = format!(
        "{} APIs provided; {} consumptions: {} granted, {} pending, {} denied",
        applied.registered,
        applied.consumptions.len(),
        count(GrantState::Granted),
        count(GrantState::Pending),
        count(GrantState::Denied)
    );
    Desired::holds(READY, reasons::RECONCILED, message).with_event(EventType::Normal)
}

fn routes_registered(applied: &Applied<'_>) -> Desired {
    let not_served = "the LGSP gateway serves the provided APIs (national APIs are not served yet)";
    let registered = match &applied.table {
        Some(table) => format!(
            "{} provided and {} national APIs in the route table ConfigMap {table}; {not_served}",
            applied.registered, applied.national
        ),
        None => "nothing to register: no provided API can be registered, and no national API is granted".to_owned(),
    };
    if let Some(first) = applied.unregistered.first() {
        let problems = applied.unregistered.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
        return Desired::fails(ROUTES_REGISTERED, first.reason, format!("{problems}. {registered}"));
    }
    match applied.table {
        Some(_) => Desired::holds(ROUTES_REGISTERED, REGISTERED, registered),
        None => Desired::fails(ROUTES_REGISTERED, NO_ROUTES, registered),
    }
}

/// Events for the consumptions whose state or reason changed since `previous`.
fn consumption_events<'a>(
    previous: &[ConsumptionStatus],
    now: &'a [ConsumptionStatus],
) -> Vec<(EventType, &'static str, &'a ConsumptionStatus)> {
    now.iter()
        .filter(|c| !previous.iter().any(|p| p.name == c.name && p.state == c.state && p.reason == c.reason))
        .map(|c| match c.state {
            GrantState::Granted => (EventType::Normal, "ConsumptionGranted", c),
            GrantState::Pending => (EventType::Normal, "ConsumptionPending", c),
            GrantState::Denied => (EventType::Warning, "ConsumptionDenied", c),
        })
        .collect()
}

/// Writes the status for `outcome` over `base`, a no-op on the server when nothing changed, and
/// publishes the Events of what changed.
async fn write_status(
    ctx: &Context,
    service: &DataSharingService,
    outcome: &Outcome<'_>,
    base: DataSharingServiceStatus,
) -> Result<()> {
    let previous = service.status.as_ref();
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let desired = conditions_of(outcome, previous_conditions);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = DataSharingServiceStatus {
        observed_generation: service.metadata.generation,
        conditions: conditions::merge(previous_conditions, &desired, service.metadata.generation, &now),
        ..base
    };
    let api: Api<DataSharingService> =
        Api::namespaced(ctx.shared.client.clone(), &service.namespace().unwrap_or_default());
    ctx.shared.status_writes.write(&api, service, previous, &new_status).await?;
    let reference = service.object_ref(&());
    ctx.shared.publish_changes(&reference, previous_conditions, &desired).await;
    let before = previous.map(|s| s.consumptions.as_slice()).unwrap_or_default();
    for (type_, reason, consumption) in consumption_events(before, &new_status.consumptions) {
        let note = format!("consumption {}: {}", consumption.name, consumption.message);
        ctx.shared.publisher.publish(&reference, type_, reason, "Grant", &note, None).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumption(name: &str, state: GrantState, reason: &str) -> ConsumptionStatus {
        ConsumptionStatus {
            name: name.into(),
            state,
            reason: reason.into(),
            message: format!("{name} {reason}"),
            url: None,
        }
    }

    fn applied<'a>(
        unregistered: Vec<Problem>,
        table: Option<&str>,
        consumptions: &'a [ConsumptionStatus],
    ) -> Applied<'a> {
        Applied {
            registered: 2,
            unregistered,
            national: 0,
            table: table.map(str::to_owned),
            client: None,
            consumptions,
        }
    }

    fn find<'a>(all: &'a [Desired], type_: &str) -> &'a Desired {
        all.iter().find(|d| d.type_ == type_).unwrap()
    }

    #[test]
    fn routes_are_registered_with_an_honest_message() {
        let consumptions = [
            consumption("a", GrantState::Granted, "Approved"),
            consumption("b", GrantState::Pending, "WaitingForProvider"),
        ];
        let all = conditions_of(
            &Outcome::Applied(applied(vec![], Some("govpaas-system/lgsp-routes.x.y"), &consumptions)),
            &[],
        );
        let routes = find(&all, ROUTES_REGISTERED);
        assert_eq!((routes.status, routes.reason.as_str()), (conditions::TRUE, "Registered"));
        assert!(routes.message.contains("lgsp-routes.x.y"), "{}", routes.message);
        assert!(routes.message.contains("national APIs are not served yet"), "{}", routes.message);
        let ready = find(&all, READY);
        assert_eq!(ready.status, conditions::TRUE);
        assert_eq!(ready.message, "2 APIs provided; 2 consumptions: 1 granted, 1 pending, 0 denied");
        assert!(all.iter().all(|d| d.type_ != CERTIFICATE_READY), "no client certificate: no condition");
    }

    #[test]
    fn a_missing_service_is_a_condition_and_the_rest_is_carried_or_registered() {
        let problem = Problem {
            reason: build::SERVICE_NOT_FOUND,
            message: "Service so-tu-phap/ho-tich of API x does not exist".into(),
        };
        let all = conditions_of(&Outcome::Applied(applied(vec![problem.clone()], None, &[])), &[]);
        assert_eq!(find(&all, READY).reason, "ServiceNotFound");
        assert_eq!(find(&all, READY).event, Some(EventType::Warning));
        let routes = find(&all, ROUTES_REGISTERED);
        assert_eq!((routes.status, routes.reason.as_str()), (conditions::FALSE, "ServiceNotFound"));

        let written =
            conditions::merge(&[], &all, Some(1), &crate::reconcile::conditions::time_of(OffsetDateTime::UNIX_EPOCH));
        let quota = Problem { reason: "QuotaExceeded", message: "lgspApis".into() };
        let refused = conditions_of(&Outcome::Refused(&quota), &written);
        assert_eq!(find(&refused, READY).reason, "QuotaExceeded");
        assert_eq!(find(&refused, ROUTES_REGISTERED).reason, "ServiceNotFound", "carried over");
    }

    #[test]
    fn nothing_to_register_is_said_so() {
        let all = conditions_of(&Outcome::Applied(applied(vec![], None, &[])), &[]);
        assert_eq!(find(&all, ROUTES_REGISTERED).reason, NO_ROUTES);
    }

    #[test]
    fn only_changed_consumptions_are_worth_an_event() {
        let before = [
            consumption("a", GrantState::Pending, "WaitingForProvider"),
            consumption("b", GrantState::Granted, "Approved"),
        ];
        let now = [
            consumption("a", GrantState::Granted, "Approved"),
            consumption("b", GrantState::Granted, "Approved"),
            consumption("c", GrantState::Denied, "ApiNotFound"),
        ];
        let events: Vec<(&str, &str)> =
            consumption_events(&before, &now).iter().map(|(_, r, c)| (*r, c.name.as_str())).collect();
        assert_eq!(events, [("ConsumptionGranted", "a"), ("ConsumptionDenied", "c")]);
    }

    #[test]
    fn the_gauge_names_the_client_secret() {
        let service: DataSharingService = crate::fixtures::case("data-sharing/grants.yaml")
            .all::<DataSharingService>("DataSharingService")[1]
            .clone();
        let keys = certificate_keys(&kube::core::DeserializeGuard(Ok(service)));
        assert_eq!(
            (keys[0].secret.as_str(), keys[0].kind, keys[0].namespace.as_str()),
            ("mot-cua-lgsp-client", "client", "xa-hoa-vang")
        );
    }
}

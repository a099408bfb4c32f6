//! One reconcile of one DataSharingService, its part of `crate::service::pipeline`: read every
//! DataSharingService's grants and the Services behind its APIs → validate (name, `lgspApis`
//! quota) → client certificate → build → apply and prune → status. The Services behind its APIs
//! and its client Secret are read from caches; only the writes (and a tenant CA not loaded yet)
//! talk to the API server; every decision is a pure function ([`super::grants`], [`super::build`]).

use std::sync::Arc;

use govpaas_crds::conditions::{
    CERTIFICATE_READY, DATA_SHARING_SERVICE, Documented, READY, ROUTES_REGISTERED, reasons,
};
use govpaas_crds::data_sharing::{
    ConsumptionStatus, DataSharingService, DataSharingServiceStatus, GrantState, ProvidedApi,
};
use govpaas_crds::lgsp;
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use time::OffsetDateTime;
use tracing::{debug, info};

use super::build::{self, COMPONENT, Inputs};
use super::grants::{self, Directory};
use crate::certificates::leaf::{Leaf, LeafSpec};
use crate::lgsp::tables::TableSlot;
use crate::reconcile::Problem;
use crate::reconcile::apply::Applier;
use crate::reconcile::conditions::Desired;
use crate::reconcile::known::Lookup;
use crate::reconcile::outcome::{Halt, Step, Stop};
use crate::service::owned::{self, DesiredSet, Owned, OwnedKey, OwnedKind};
use crate::service::pipeline::{self, Applied, Read, ServiceKind, StatusEvent};
use crate::service::runtime::ServiceContext;
use crate::service::workload;
use crate::workload::status as workload_status;
use govpaas_pki::renewal::requeue_after;

/// `RoutesRegistered`'s reason when it is in the route table.
pub const REGISTERED: &str = "Registered";
/// `RoutesRegistered`'s reason when there is nothing for the gateway.
pub const NO_ROUTES: &str = "NoRoutes";

/// Caches of what the controller writes, for wake-ups and pruning: the client certificate Secrets
/// whole (reconciles read them), the rest as metadata.
#[derive(Clone)]
pub struct Caches {
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub secrets: Store<Secret>,
    /// Every Service, trimmed to its selector and ports: the provided APIs' backends.
    pub kubernetes_services: Store<Service>,
    /// Route tables, in the operator's namespace.
    pub route_tables: Store<PartialObjectMeta<ConfigMap>>,
    /// The operator's namespace, where route tables live.
    pub operator_namespace: String,
}

/// What every reconcile shares.
pub type Context = ServiceContext<Caches>;

/// A DataSharingService's desired objects, with the name of its route table (wanted or not).
pub struct DesiredObjects {
    pub objects: build::Desired,
    /// The route table's name, which exists only while it is wanted.
    pub route_table: String,
}

impl DesiredSet for DesiredObjects {
    type Caches = Caches;

    fn owned<'a>(&'a self, caches: &'a Caches) -> Vec<Box<dyn OwnedKind + 'a>> {
        let build::Desired { network_policies, client_secret, route_table } = &self.objects;
        let Caches { network_policies: policies, secrets, route_tables, operator_namespace, kubernetes_services: _ } =
            caches;
        vec![
            Owned::boxed(client_secret.as_slice(), secrets),
            Owned::boxed(network_policies.as_slice(), policies),
            Box::new(TableSlot {
                wanted: route_table.as_ref(),
                name: &self.route_table,
                namespace: operator_namespace,
                cached: route_tables,
            }),
        ]
    }
}

impl ServiceKind for DataSharingService {
    type Status = DataSharingServiceStatus;
    type Caches = Caches;
    const KIND: &'static str = "DataSharingService";
    const COMPONENT: &'static str = COMPONENT;
    const CONDITIONS: &'static [Documented] = DATA_SHARING_SERVICE;

    fn status(&self) -> Option<&DataSharingServiceStatus> {
        self.status.as_ref()
    }

    fn certificates(status: &DataSharingServiceStatus) -> Vec<(&'static str, &CertificateStatus)> {
        status.client_certificate.iter().map(|certificate| ("client", certificate)).collect()
    }

    async fn apply(read: &Read<'_, DataSharingService>, ctx: &Context) -> Step<Applied<DataSharingServiceStatus>> {
        apply(read, ctx).await
    }

    fn status_events(previous: Option<&DataSharingServiceStatus>, new: &DataSharingServiceStatus) -> Vec<StatusEvent> {
        let before = previous.map(|s| s.consumptions.as_slice()).unwrap_or_default();
        consumption_events(before, &new.consumptions)
            .into_iter()
            .map(|(type_, reason, consumption)| StatusEvent {
                type_,
                reason,
                action: "Grant",
                note: format!("consumption {}: {}", consumption.name, consumption.message),
            })
            .collect()
    }
}

/// What was applied.
struct Registered<'a> {
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

async fn apply(read: &Read<'_, DataSharingService>, ctx: &Context) -> Step<Applied<DataSharingServiceStatus>> {
    let shared = &ctx.shared;
    let (service, namespace, name) = (read.service, read.namespace.as_str(), read.name.as_str());
    let platform = &read.platform;

    // Read every DataSharingService with its agency.
    let everyone = shared.data_sharing.state();
    let agencies = shared.tenant_agencies();
    let members = grants::members(everyone.iter().filter_map(|s| s.0.as_ref().ok()), |ns| agencies.get(ns).cloned());
    let codes: Vec<String> = agencies.values().map(|(_, code)| code.clone()).collect();
    let directory = Directory::new(members, codes, platform.spec.lgsp.ndxp.as_ref());
    let Some(member) = directory.member(namespace, name) else {
        return Err(Stop::waiting(
            reasons::PENDING,
            format!("namespace {namespace} is not provisioned by its Tenant yet"),
        ));
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
        return Err(Stop::refused(problem));
    }
    let wanted = service.spec.provides.len();
    let current = service.status.as_ref().and_then(|s| s.provided_apis).unwrap_or(0);
    if i64::try_from(wanted).unwrap_or(i64::MAX) > i64::from(current) {
        let before = directory.lgsp_apis_before(member);
        let quota = i64::from(read.tenant().spec.quota.lgsp_apis);
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
        if before.saturating_add(wanted) > quota {
            return Err(Stop::refused(Problem {
                reason: reasons::QUOTA_EXCEEDED,
                message: format!(
                    "tenant {} may provide {quota} LGSP APIs (quota.lgspApis); its older DataSharingServices provide {before} and this one asks for {wanted}. Nothing was changed; provide fewer APIs or ask the provincial admin to raise the quota",
                    member.tenant
                ),
            }));
        }
    }

    // The Services behind the provided APIs, from the cache: one created later wakes this service.
    let client = shared.client.clone();
    let found: Vec<Arc<Service>> = service
        .spec
        .provides
        .iter()
        .filter_map(|api| ctx.caches.kubernetes_services.get(&ObjectRef::new(&api.service).within(namespace)))
        .collect();
    let provided = build::provided(&inputs, |wanted| found.iter().find(|s| s.name_any() == wanted).map(|s| s.as_ref()));
    let registered: Vec<&ProvidedApi> = provided.iter().filter(|p| p.backend.is_ok()).map(|p| p.api).collect();
    let unregistered: Vec<Problem> = provided.iter().filter_map(|p| p.backend.clone().err()).collect();
    let consumptions = build::consumptions(&inputs);

    // The client certificate, when it consumes anything.
    let now = OffsetDateTime::now_utc();
    let secret_name = build::client_secret_name(name);
    let client_leaf = if service.spec.consumes.is_empty() {
        None
    } else {
        let authority = shared.authority(&read.tenant_context, platform, now).await?;
        let identity = inputs
            .identity()
            .map_err(|err| Halt::CertificateFailed(format!("cannot name the client identity: {err}")))?;
        let spec = LeafSpec::Client { identity: identity.clone() };
        let what = format!("the LGSP client certificate for {}", identity.uri());
        let secrets = Lookup { known: &ctx.known.secrets, cache: &ctx.caches.secrets };
        let leaf =
            workload::certificate(&client, secrets, namespace, &secret_name, &spec, &authority, now, &what).await?;
        Some((identity.uri(), leaf, authority.policy))
    };

    // Build, apply and prune from the same set.
    let table = build::route_table(&inputs, &registered, &consumptions, &read.uid);
    let objects =
        build::build(&inputs, &provided, client_leaf.as_ref().map(|(_, leaf, _)| &leaf.material), table.as_ref())?;
    let table_name = lgsp::route_table_name(namespace, name);
    let desired = DesiredObjects { objects, route_table: table_name.clone() };
    let mut applier = Applier::remembering(client.clone(), shared.applied.clone());
    let owner = OwnedKey { component: COMPONENT, name, uid: &read.uid };
    let pruned = owned::apply_and_prune(&mut applier, &desired, &ctx.caches, &owner).await;
    // What was applied is served until the caches show it, failed reconciles included.
    ctx.known.remember_applied(&applier);
    let pruned = pruned.map_err(|err| pipeline::apply_failed(err, "applying the DataSharingService's objects"))?;
    if !pruned.is_empty() {
        info!(?pruned, "pruned objects the DataSharingService no longer wants");
    }

    let reference = service.object_ref(&());
    let client = match &client_leaf {
        Some((identity, leaf, _)) => {
            let what = format!("LGSP client certificate for {identity}");
            shared.publish_issued(&reference, &what, leaf).await;
            Some((secret_name.as_str(), identity.as_str(), leaf))
        }
        None => None,
    };
    let statuses: Vec<ConsumptionStatus> = consumptions.iter().map(|(c, _)| c.clone()).collect();
    let applied = Registered {
        registered: registered.len(),
        unregistered,
        national: table.as_ref().map_or(0, |t| t.national.len()),
        table: desired
            .objects
            .route_table
            .as_ref()
            .map(|_| format!("{}/{table_name}", shared.settings.operator_namespace)),
        client,
        consumptions: &statuses,
    };
    let certificate = client_leaf
        .as_ref()
        .zip(client)
        .map(|((_, _, policy), (secret, _, leaf))| workload_status::certificate_status(secret, leaf, policy));
    let status = build::status(&inputs, &registered, &consumptions, certificate);
    debug!("applied DataSharingService {namespace}/{name}");
    let renewal = client_leaf.as_ref().map(|(_, leaf, policy)| leaf.renewal_time(policy));
    Ok(Applied {
        conditions: conditions_of(&applied),
        status,
        requeue: renewal.map_or(pipeline::RESYNC, |at| requeue_after(now, at)),
    })
}

/// The conditions of what was applied.
fn conditions_of(applied: &Registered<'_>) -> Vec<Desired> {
    let mut all = vec![ready(applied), routes_registered(applied)];
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
    all
}

fn ready(applied: &Registered<'_>) -> Desired {
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

fn routes_registered(applied: &Registered<'_>) -> Desired {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::conditions;

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
    ) -> Registered<'a> {
        Registered {
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
        let all = conditions_of(&applied(vec![], Some("govpaas-system/lgsp-routes.x.y"), &consumptions));
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
        let all = conditions_of(&applied(vec![problem.clone()], None, &[]));
        assert_eq!(find(&all, READY).reason, "ServiceNotFound");
        assert_eq!(find(&all, READY).event, Some(EventType::Warning));
        let routes = find(&all, ROUTES_REGISTERED);
        assert_eq!((routes.status, routes.reason.as_str()), (conditions::FALSE, "ServiceNotFound"));

        let written =
            conditions::merge(&[], &all, Some(1), &crate::reconcile::conditions::time_of(OffsetDateTime::UNIX_EPOCH));
        let quota = Problem { reason: "QuotaExceeded", message: "lgspApis".into() };
        let refused = pipeline::not_applied(&Halt::Refused(quota), &written, DATA_SHARING_SERVICE);
        assert_eq!(find(&refused, READY).reason, "QuotaExceeded");
        assert_eq!(find(&refused, ROUTES_REGISTERED).reason, "ServiceNotFound", "carried over");
    }

    #[test]
    fn nothing_to_register_is_said_so() {
        let all = conditions_of(&applied(vec![], None, &[]));
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
    fn the_gauge_reads_the_client_certificate_the_status_records() {
        let client = CertificateStatus { secret_name: Some("mot-cua-lgsp-client".into()), ..Default::default() };
        let status = DataSharingServiceStatus { client_certificate: Some(client.clone()), ..Default::default() };
        assert_eq!(DataSharingService::certificates(&status), [("client", &client)]);
        assert!(DataSharingService::certificates(&DataSharingServiceStatus::default()).is_empty());
    }
}

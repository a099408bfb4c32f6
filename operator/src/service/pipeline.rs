//! The one reconcile of Portal, DocumentService and DataSharingService:
//!
//! 1. **read** what every service needs ([`read`]: readable, not being deleted, its tenant in
//!    scope, the Platform) — else it waits, with a reason;
//! 2. the kind's own [`ServiceKind::apply`]: validate (pure), read the rest, build its typed
//!    desired set (pure), apply and prune from that set ([`super::owned`]), and compute its
//!    status from what was applied;
//! 3. **status**, written by one writer ([`write_status`]) from either what was applied or why
//!    nothing was ([`Halt`]): `Ready` says why, and every other documented condition of the kind
//!    keeps what it said, since what runs did not change ([`not_applied`]).
//!
//! Every step returns a [`Step`]: an API error is retried with backoff; a [`Halt`] is a state
//! the user sees, with a stable reason.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::Platform;
use govpaas_crds::conditions::{CERTIFICATE_READY, Documented, READY, reasons};
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, info_span};

use super::runtime::{ServiceContext, Shared};
use crate::error::{Error, Result};
use crate::reconcile::Problem;
use crate::reconcile::conditions::{self, Desired};
use crate::reconcile::outcome::{Halt, Step, Stop};
use crate::telemetry::CertificateKey;
use crate::telemetry::Observed;
use crate::tenancy::{Scope, TenantContext, TenantObject};

/// The safety-net resync of an unchanged service, and how soon one that applied nothing looks
/// again (what it waits for wakes it before).
pub const RESYNC: Duration = Duration::from_secs(3600);
/// `Ready`'s reason when a certificate cannot be issued.
pub const CERTIFICATE_FAILED: &str = "CertificateFailed";

/// A status the pipeline writes: its conditions and the generation they describe.
pub trait ServiceStatus: Clone + Default + Serialize + PartialEq + Send + Sync + 'static {
    fn conditions(&self) -> &[Condition];
    /// Sets the conditions and the generation they were computed for.
    fn stamp(&mut self, observed_generation: Option<i64>, conditions: Vec<Condition>);
}

/// The three service statuses share their bookkeeping fields.
macro_rules! service_status {
    ($($status:ty),*) => {$(
        impl ServiceStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn stamp(&mut self, observed_generation: Option<i64>, conditions: Vec<Condition>) {
                self.observed_generation = observed_generation;
                self.conditions = conditions;
            }
        }
    )*};
}

service_status!(
    govpaas_crds::portal::PortalStatus,
    govpaas_crds::document_service::DocumentServiceStatus,
    govpaas_crds::data_sharing::DataSharingServiceStatus
);

/// An Event of a kind's own, beyond those of its conditions (a consumption granted).
pub struct StatusEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// A kind the pipeline reconciles.
pub trait ServiceKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Status: ServiceStatus;
    /// The metadata caches of what it owns.
    type Caches: Send + Sync + 'static;
    /// The kind, as messages name it.
    const KIND: &'static str;
    /// Its controller's component label and name in logs and metrics.
    const COMPONENT: &'static str;
    /// Its documented conditions (`govpaas_crds::conditions`): what is carried over when nothing
    /// is applied.
    const CONDITIONS: &'static [Documented];

    fn status(&self) -> Option<&Self::Status>;

    /// The certificates its status records, each with its gauge kind (`server`, `signing`,
    /// `client`): the certificate gauges read them at scrape time ([`certificate_gauges`]).
    fn certificates(status: &Self::Status) -> Vec<(&'static str, &CertificateStatus)>;

    /// Validates, builds, applies and prunes; the status of what was applied.
    fn apply(
        read: &Read<'_, Self>,
        ctx: &ServiceContext<Self::Caches>,
    ) -> impl Future<Output = Step<Applied<Self::Status>>> + Send;

    /// Events of its own for a status change (none by default).
    fn status_events(_previous: Option<&Self::Status>, _new: &Self::Status) -> Vec<StatusEvent> {
        Vec::new()
    }
}

/// What a service's reconcile applied: its status and when to look again.
pub struct Applied<S> {
    /// Every condition of the kind, computed from what was applied.
    pub conditions: Vec<Desired>,
    /// The rest of the status (url, replicas, certificates…).
    pub status: S,
    /// When to reconcile again (a certificate's renewal, a volume binding), at most [`RESYNC`].
    pub requeue: Duration,
}

/// What the pipeline read for every service.
pub struct Read<'a, K> {
    pub service: &'a K,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub tenant: Arc<TenantObject>,
    pub platform: Arc<Platform>,
    /// The tenant as its services see it (domain, suspension, public hosts).
    pub tenant_context: TenantContext,
}

impl<K> Read<'_, K> {
    /// The Tenant (readable: [`read`] checked it).
    pub fn tenant(&self) -> &govpaas_crds::Tenant {
        self.tenant.0.as_ref().expect("read() only returns readable tenants")
    }
}

/// Reconciles one service of kind `K`.
pub async fn reconcile<K: ServiceKind>(
    object: Arc<DeserializeGuard<K>>,
    ctx: Arc<ServiceContext<K::Caches>>,
) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        controller = K::COMPONENT,
        namespace = %object.namespace().unwrap_or_default(),
        name = %object.name_any()
    );
    async {
        let Some(service) = ctx.shared.readable(&object, K::KIND).await else {
            return Ok(Action::await_change());
        };
        ctx.shared.wait_until_ready().await?;
        if !ctx.owned_listed.clone().wait().await {
            return Err(Error::CachesStopped(K::COMPONENT));
        }
        if service.meta().deletion_timestamp.is_some() {
            // Its children carry owner references: the garbage collector removes them.
            return Ok(Action::await_change());
        }
        let step = match read(&ctx.shared, service) {
            Ok(read) => K::apply(&read, &ctx).await,
            Err(stop) => Err(stop),
        };
        match step {
            Ok(applied) => {
                write_status(&ctx.shared, service, applied.conditions, applied.status).await?;
                Ok(Action::requeue(applied.requeue.min(RESYNC)))
            }
            Err(Stop::Failed(error)) => Err(error),
            Err(Stop::Halt(Halt::NotServed)) => Ok(Action::await_change()),
            Err(Stop::Halt(Halt::ChangedMeanwhile)) => {
                info!("an object changed after this reconcile read it; reconciling again");
                Ok(Action::requeue(Duration::ZERO))
            }
            Err(Stop::Halt(halt)) => {
                if let Halt::Refused(problem) = &halt {
                    info!(reason = problem.reason, message = %problem.message, "{} not applied", K::KIND);
                }
                let previous = service.status();
                let conditions =
                    not_applied(&halt, previous.map(|s| s.conditions()).unwrap_or_default(), K::CONDITIONS);
                write_status(&ctx.shared, service, conditions, previous.cloned().unwrap_or_default()).await?;
                Ok(Action::requeue(RESYNC))
            }
        }
    }
    .instrument(span)
    .await
}

/// The certificates of every service of kind `K` this operator serves, as their statuses record
/// them: what the certificate gauges show at scrape time. A service gone from the cache is gone
/// from the gauges.
pub fn certificate_gauges<K: ServiceKind>(shared: &Shared, services: &Store<DeserializeGuard<K>>) -> Vec<Observed> {
    let seconds = |time: Option<&Time>| time.map(|t| t.0.as_second());
    let mut observed = Vec::new();
    for service in services.state() {
        let Ok(service) = &service.0 else { continue };
        let Some(namespace) = service.meta().namespace.as_deref() else { continue };
        if shared.settings.tenant_selector.is_some() && !shared.serves_namespace(namespace) {
            continue;
        }
        for (kind, certificate) in service.status().map(K::certificates).unwrap_or_default() {
            let (Some(secret), Some(not_after), Some(renewal)) = (
                certificate.secret_name.clone(),
                seconds(certificate.not_after.as_ref()),
                seconds(certificate.renewal_time.as_ref()),
            ) else {
                continue;
            };
            observed.push(Observed {
                key: CertificateKey { namespace: namespace.to_owned(), secret, kind },
                not_after,
                renewal,
            });
        }
    }
    observed
}

/// The first step of every service: its namespace and uid, its tenant, the Platform.
fn read<'a, K: ServiceKind>(shared: &Shared, service: &'a K) -> Step<Read<'a, K>> {
    let missing = |field| Error::MissingField { kind: K::KIND, field };
    let namespace = service.namespace().ok_or_else(|| missing("metadata.namespace"))?;
    let uid = service.uid().ok_or_else(|| missing("metadata.uid"))?;
    let tenant = match shared.scope(&namespace) {
        Scope::OutOfScope => return Err(Halt::NotServed.into()),
        Scope::NoTenant(message) => return Err(Stop::waiting(reasons::PENDING, message)),
        Scope::Tenant(tenant) => tenant,
    };
    let Ok(readable) = &tenant.0 else {
        return Err(Stop::waiting(reasons::PENDING, format!("the Tenant of namespace {namespace} cannot be read")));
    };
    let Some(platform) = shared.platform() else {
        return Err(Stop::waiting(reasons::PENDING, "no Platform named default exists yet"));
    };
    let tenant_context = shared.tenant_context(readable, &platform, &namespace);
    Ok(Read { service, name: service.name_any(), namespace, uid, tenant: tenant.clone(), platform, tenant_context })
}

/// What an apply error means for the service: a conflict ([`crate::reconcile::apply::is_conflict`])
/// is [`Halt::ChangedMeanwhile`]; a refusal that is the user's to fix (an exceeded quota, an invalid
/// value) is [`Halt::Refused`]; anything else (an outage, a missing permission) is the operator's
/// and retried.
pub fn apply_failed(error: Error, what: &str) -> Stop {
    if crate::reconcile::apply::is_conflict(&error) {
        return Halt::ChangedMeanwhile.into();
    }
    match error {
        Error::Kube(err) => match refusal(&err, what) {
            Some(problem) => Stop::refused(problem),
            None => Stop::Failed(Error::Kube(err)),
        },
        other => Stop::Failed(other),
    }
}

/// A refusal by the API server that is the user's to fix (a quota's `exceeded quota`, an invalid
/// value such as a volume that cannot grow), as a problem; `None` for anything else.
pub fn refusal(error: &kube::Error, what: &str) -> Option<Problem> {
    let kube::Error::Api(status) = error else { return None };
    let message = status.message.clone();
    if status.code == 403 && message.contains("exceeded quota") {
        return Some(Problem::new(reasons::QUOTA_EXCEEDED, format!("{what} refused: {message}")));
    }
    if status.code == 422 || (status.code == 403 && message.contains("forbidden:") && !message.contains("cannot ")) {
        return Some(Problem::new(reasons::INVALID_SPEC, format!("{what} refused: {message}")));
    }
    None
}

/// The conditions of a reconcile that applied nothing: `Ready` says why; a failed certificate
/// says so in `CertificateReady`; every other documented condition keeps what it said.
pub fn not_applied(halt: &Halt, previous: &[Condition], documented: &[Documented]) -> Vec<Desired> {
    let (ready, certificate) = match halt {
        Halt::Waiting(problem) => (Desired::fails(READY, problem.reason, problem.message.clone()), None),
        Halt::Refused(problem) => {
            (Desired::fails(READY, problem.reason, problem.message.clone()).with_event(EventType::Warning), None)
        }
        Halt::CertificateFailed(message) => (
            Desired::fails(READY, CERTIFICATE_FAILED, message.clone()).with_event(EventType::Warning),
            Some(Desired::fails(CERTIFICATE_READY, CERTIFICATE_FAILED, message.clone())),
        ),
        // Nothing is written for these: only for completeness.
        Halt::NotServed | Halt::ChangedMeanwhile => return conditions::carried(previous),
    };
    let mut all = vec![ready];
    for condition in documented.iter().filter(|d| d.type_ != READY) {
        match &certificate {
            Some(failed) if condition.type_ == CERTIFICATE_READY => all.push(failed.clone()),
            _ => all.extend(conditions::carried_over(previous, condition.type_)),
        }
    }
    all
}

/// Writes `K`'s status: `base` with `desired` merged over the conditions it has now, a no-op on the
/// server when nothing changed; then the Events of what changed.
pub async fn write_status<K: ServiceKind>(
    shared: &Shared,
    service: &K,
    desired: Vec<Desired>,
    base: K::Status,
) -> Result<()> {
    let previous = service.status();
    let previous_conditions = previous.map(|s| s.conditions()).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = service.meta().generation;
    let mut status = base;
    status.stamp(generation, conditions::merge(previous_conditions, &desired, generation, &now));
    let api: Api<K> = Api::namespaced(shared.client.clone(), &service.namespace().unwrap_or_default());
    shared.status_writes.write(&api, service, previous, &status).await?;
    let reference = service.object_ref(&());
    shared.publish_changes(&reference, previous_conditions, &desired).await;
    for event in K::status_events(previous, &status) {
        shared.publisher.publish(&reference, event.type_, event.reason, event.action, &event.note, None).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_crds::conditions::{AVAILABLE, DATA_SHARING_SERVICE, PORTAL, ROUTES_REGISTERED, SUSPENDED};

    fn find<'a>(all: &'a [Desired], type_: &str) -> &'a Desired {
        all.iter().find(|d| d.type_ == type_).unwrap_or_else(|| panic!("no {type_} in {all:?}"))
    }

    fn written(desired: &[Desired]) -> Vec<Condition> {
        conditions::merge(&[], desired, Some(1), &conditions::time_of(time::OffsetDateTime::UNIX_EPOCH))
    }

    #[test]
    fn what_runs_is_described_as_before_when_nothing_is_applied() {
        let before = written(&[
            Desired::holds(READY, "Reconciled", "serving"),
            Desired::holds(AVAILABLE, "MinimumReplicasAvailable", "2 of 2"),
            Desired::holds(CERTIFICATE_READY, "Issued", "until 2027"),
            Desired::holds(SUSPENDED, "Suspended", "tenant x is suspended"),
        ]);
        let quota = Halt::Refused(Problem::new("QuotaExceeded", "pods"));
        let refused = not_applied(&quota, &before, PORTAL);
        assert_eq!(
            (find(&refused, READY).reason.as_str(), find(&refused, READY).event),
            ("QuotaExceeded", Some(EventType::Warning))
        );
        assert_eq!(find(&refused, AVAILABLE).status, conditions::TRUE);
        assert_eq!(find(&refused, SUSPENDED).status, conditions::TRUE, "a suspension is never forgotten");
        assert_eq!(find(&refused, CERTIFICATE_READY).reason, "Issued");

        let failed = not_applied(&Halt::CertificateFailed("no key".into()), &before, PORTAL);
        assert_eq!(find(&failed, CERTIFICATE_READY).reason, CERTIFICATE_FAILED);
        assert_eq!(find(&failed, SUSPENDED).status, conditions::TRUE);

        let waiting =
            not_applied(&Halt::Waiting(Problem::new(reasons::TENANT_CA_PENDING, "issue")), &[], DATA_SHARING_SERVICE);
        assert_eq!(waiting.len(), 1, "nothing said before: only Ready");
        assert_eq!((find(&waiting, READY).reason.as_str(), find(&waiting, READY).event), ("TenantCaPending", None));
        assert!(waiting.iter().all(|d| d.type_ != ROUTES_REGISTERED));
    }

    #[test]
    fn refusals_that_are_the_users() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status::failure(message, "Forbidden").with_code(code)))
        };
        let quota = refusal(&api(403, "persistentvolumeclaims \"x\" is forbidden: exceeded quota: q"), "the claim");
        assert_eq!(quota.unwrap().reason, "QuotaExceeded");
        let invalid =
            refusal(&api(422, "spec.resources.requests.storage: field can not be less than previous value"), "x");
        assert_eq!(invalid.unwrap().reason, "InvalidSpec");
        assert!(refusal(&api(403, "User cannot patch resource"), "x").is_none());
        assert!(refusal(&api(500, "etcd down"), "x").is_none());
        let conflict = api(409, "the object has been modified");
        assert!(matches!(apply_failed(Error::Kube(conflict), "x"), Stop::Halt(Halt::ChangedMeanwhile)));
        assert!(matches!(apply_failed(Error::Kube(api(500, "etcd down")), "x"), Stop::Failed(_)));
    }
}

//! The conditions of a Portal or DocumentService, computed from what the reconcile applied (or why
//! it applied nothing), with no client.
//!
//! `Ready` answers the user's first question and its reason says why not: `Pending` (waiting for
//! the Platform, the tenant or its CA), a refusal (`InvalidSpec`, `HostNotInTenantDomain`,
//! `HostConflict`, `QuotaExceeded`), `Suspended`, `CertificateFailed`, a ReplicaSet's
//! `FailedCreate`, or `Progressing` while Pods start. `Available` and `CertificateReady` describe
//! what runs; when nothing was applied they keep what they said before, since what runs did not
//! change. Every message is stable while the world is, so a resync writes nothing.

use govpaas_crds::conditions::{AVAILABLE, CERTIFICATE_READY, READY, SUSPENDED, reasons};
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::reconcile::conditions::time_of;
use kube::runtime::events::EventType;

use super::Problem;
use super::quota_fit::replica_failure;
use crate::certificates::leaf::Leaf;
use crate::reconcile::conditions::{self, Desired};
use govpaas_pki::IssuancePolicy;

/// `Ready`'s reason while Pods start.
pub const PROGRESSING: &str = "Progressing";
/// `Ready`'s reason when a certificate cannot be issued.
pub const CERTIFICATE_FAILED: &str = "CertificateFailed";
/// `Ready`'s reason when a ReplicaSet cannot create Pods for a reason other than quota.
pub const FAILED_CREATE: &str = "FailedCreate";

/// The status of a certificate stored in `secret_name`.
pub fn certificate_status(secret_name: &str, leaf: &Leaf, policy: &IssuancePolicy) -> CertificateStatus {
    CertificateStatus {
        secret_name: Some(secret_name.to_owned()),
        not_after: Some(time_of(leaf.not_after)),
        serial: Some(leaf.serial.clone()),
        renewal_time: Some(time_of(leaf.renewal_time(policy))),
    }
}

/// What a reconcile did.
pub enum Outcome<'a> {
    /// Waiting for something outside the service (the Platform, the tenant, its CA).
    Waiting(String),
    /// Declared in a way that cannot be applied, or does not fit: nothing was changed.
    Refused(&'a Problem),
    /// A certificate could not be issued: nothing was changed.
    CertificateFailed(String),
    /// Everything was applied.
    Applied(Applied<'a>),
}

/// What was applied.
pub struct Applied<'a> {
    /// The Deployment as the API server returned it.
    pub deployment: &'a Deployment,
    /// The replicas asked for (zero while suspended or waiting for storage).
    pub replicas: i32,
    /// The replicas the service declares.
    pub declared_replicas: i32,
    /// The tenant is suspended.
    pub suspended: Option<&'a str>,
    /// Something of the kind's own that keeps it from being ready (its volume), as `Ready` would
    /// say it.
    pub held_by: Option<Problem>,
    /// Where it serves, for `Ready`'s message.
    pub url: Option<&'a str>,
    /// Its certificates: what each is for, and the leaf.
    pub certificates: Vec<(&'a str, &'a Leaf)>,
}

/// `(ready, desired)` replicas of a Deployment, as its status reports them for its current spec.
pub fn replica_counts(deployment: &Deployment) -> (i32, bool) {
    let status = deployment.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let current = status.and_then(|s| s.observed_generation).unwrap_or(0) >= generation;
    (ready, current)
}

fn carried_over(previous: &[Condition], type_: &str) -> Option<Desired> {
    conditions::find(previous, type_).map(|c| Desired {
        type_: c.type_.clone(),
        status: match c.status.as_str() {
            conditions::TRUE => conditions::TRUE,
            conditions::FALSE => conditions::FALSE,
            _ => conditions::UNKNOWN,
        },
        reason: c.reason.clone(),
        message: c.message.clone(),
        event: None,
    })
}

/// The conditions of `outcome`; `previous` are the conditions in status now.
pub fn conditions(outcome: &Outcome<'_>, previous: &[Condition]) -> Vec<Desired> {
    let ready = match outcome {
        Outcome::Waiting(message) => Desired::fails(READY, reasons::PENDING, message.clone()),
        Outcome::Refused(problem) => {
            Desired::fails(READY, problem.reason, problem.message.clone()).with_event(EventType::Warning)
        }
        Outcome::CertificateFailed(message) => {
            Desired::fails(READY, CERTIFICATE_FAILED, message.clone()).with_event(EventType::Warning)
        }
        Outcome::Applied(applied) => ready_when_applied(applied),
    };
    let mut all = vec![ready];
    match outcome {
        Outcome::Applied(applied) => {
            all.push(available(applied));
            all.push(certificate_ready(&applied.certificates));
            if let Some(tenant) = applied.suspended {
                all.push(Desired::holds(
                    SUSPENDED,
                    reasons::SUSPENDED,
                    format!("tenant {tenant} is suspended by the provincial admin"),
                ));
            }
        }
        Outcome::CertificateFailed(message) => {
            all.extend(carried_over(previous, AVAILABLE));
            all.push(Desired::fails(CERTIFICATE_READY, CERTIFICATE_FAILED, message.clone()));
        }
        Outcome::Waiting(_) | Outcome::Refused(_) => {
            all.extend(carried_over(previous, AVAILABLE));
            all.extend(carried_over(previous, CERTIFICATE_READY));
            all.extend(carried_over(previous, SUSPENDED));
        }
    }
    all
}

fn ready_when_applied(applied: &Applied<'_>) -> Desired {
    if let Some(tenant) = applied.suspended {
        return Desired::fails(
            READY,
            reasons::SUSPENDED,
            format!(
                "tenant {tenant} is suspended: scaled to zero replicas, nothing deleted; it runs {} again when the tenant is resumed",
                applied.declared_replicas
            ),
        )
        .with_event(EventType::Normal);
    }
    if let Some(problem) = &applied.held_by {
        return Desired::fails(READY, problem.reason, problem.message.clone());
    }
    if let Some(failure) = replica_failure(applied.deployment) {
        let reason = if failure.contains("exceeded quota") { reasons::QUOTA_EXCEEDED } else { FAILED_CREATE };
        return Desired::fails(READY, reason, format!("Pods cannot be created: {failure}"))
            .with_event(EventType::Warning);
    }
    let (ready, current) = replica_counts(applied.deployment);
    if current && ready >= applied.replicas {
        let at = applied.url.map(|url| format!(" at {url}")).unwrap_or_default();
        Desired::holds(
            READY,
            reasons::RECONCILED,
            format!("serving{at} with {} of {} replicas ready", ready, applied.replicas),
        )
        .with_event(EventType::Normal)
    } else {
        Desired::fails(READY, PROGRESSING, format!("{ready} of {} replicas ready", applied.replicas))
    }
}

fn available(applied: &Applied<'_>) -> Desired {
    let (ready, _) = replica_counts(applied.deployment);
    if applied.replicas == 0 {
        return Desired::fails(AVAILABLE, "ScaledToZero", "no replica runs");
    }
    let message = format!("{ready} of {} replicas ready", applied.replicas);
    if ready > 0 {
        Desired::holds(AVAILABLE, "MinimumReplicasAvailable", message)
    } else {
        Desired::fails(AVAILABLE, "NoReplicaReady", message)
    }
}

fn certificate_ready(certificates: &[(&str, &Leaf)]) -> Desired {
    let parts: Vec<String> =
        certificates.iter().map(|(what, leaf)| format!("{what} valid until {}", time_of(leaf.not_after).0)).collect();
    Desired::holds(CERTIFICATE_READY, "Issued", format!("issued by the tenant CA: {}", parts.join("; ")))
}

/// A refusal by the API server that is the user's to fix (a quota's `exceeded quota`, an invalid
/// value such as a volume that cannot grow), as a problem; `None` for anything else (an outage, a
/// missing permission), which is the operator's and retried.
pub fn refusal(error: &kube::Error, what: &str) -> Option<Problem> {
    let kube::Error::Api(status) = error else { return None };
    let message = status.message.clone();
    if status.code == 403 && message.contains("exceeded quota") {
        return Some(Problem { reason: reasons::QUOTA_EXCEEDED, message: format!("{what} refused: {message}") });
    }
    if status.code == 422 || (status.code == 403 && message.contains("forbidden:") && !message.contains("cannot ")) {
        return Some(Problem { reason: reasons::INVALID_SPEC, message: format!("{what} refused: {message}") });
    }
    None
}

/// What a reconcile does when an apply met a conflict ([`crate::reconcile::apply::is_conflict`]):
/// a certificate Secret changed after it was read (edited by hand mid-reconcile), so the decision
/// taken on its old content was not written over it. Nothing is wrong: the next reconcile, at
/// once, checks what the Secret holds now (and reports and repairs it if it is damaged).
pub fn changed_meanwhile(error: &crate::error::Error) -> kube::runtime::controller::Action {
    tracing::info!(%error, "an object changed after this reconcile read it; reconciling again");
    kube::runtime::controller::Action::requeue(std::time::Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    use super::*;

    fn deployment(ready: i32, failure: Option<&str>) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta { generation: Some(2), ..Default::default() },
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                ready_replicas: Some(ready),
                conditions: failure.map(|message| {
                    vec![DeploymentCondition {
                        type_: Some("ReplicaFailure".into()),
                        status: Some("True".into()),
                        reason: Some("FailedCreate".into()),
                        message: Some(message.into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn applied<'a>(deployment: &'a Deployment, replicas: i32) -> Applied<'a> {
        Applied {
            deployment,
            replicas,
            declared_replicas: replicas,
            suspended: None,
            held_by: None,
            url: Some("https://a.gov.vn/"),
            certificates: vec![],
        }
    }

    fn find<'a>(all: &'a [Desired], type_: &str) -> &'a Desired {
        all.iter().find(|d| d.type_ == type_).unwrap()
    }

    #[test]
    fn ready_once_every_replica_is() {
        let d = deployment(2, None);
        let all = conditions(&Outcome::Applied(applied(&d, 2)), &[]);
        let ready = find(&all, READY);
        assert_eq!((ready.status, ready.reason.as_str()), (conditions::TRUE, "Reconciled"));
        assert_eq!(ready.message, "serving at https://a.gov.vn/ with 2 of 2 replicas ready");
        let d = deployment(1, None);
        let all = conditions(&Outcome::Applied(applied(&d, 2)), &[]);
        assert_eq!(find(&all, READY).reason, PROGRESSING);
        assert_eq!(find(&all, AVAILABLE).status, conditions::TRUE);
    }

    #[test]
    fn a_quota_failure_of_the_replica_set_is_named() {
        let d = deployment(
            1,
            Some(
                "pods \"x\" is forbidden: exceeded quota: govpaas-quota, requested: pods=1, used: pods=2, limited: pods=2",
            ),
        );
        let all = conditions(&Outcome::Applied(applied(&d, 3)), &[]);
        let ready = find(&all, READY);
        assert_eq!(ready.reason, "QuotaExceeded");
        assert!(ready.message.contains("limited: pods=2"));
        assert_eq!(ready.event, Some(EventType::Warning));
    }

    #[test]
    fn suspended_says_so_and_keeps_what_runs_described() {
        let d = deployment(0, None);
        let mut a = applied(&d, 0);
        a.declared_replicas = 3;
        a.suspended = Some("so-noi-vu");
        let all = conditions(&Outcome::Applied(a), &[]);
        assert_eq!(find(&all, READY).reason, "Suspended");
        assert!(find(&all, READY).message.contains("runs 3 again"));
        assert_eq!(find(&all, SUSPENDED).status, conditions::TRUE);
        assert_eq!(find(&all, AVAILABLE).reason, "ScaledToZero");

        // Refused later: the suspension and availability are carried over, not forgotten.
        let written = conditions::merge(&[], &all, Some(1), &time_of(time::OffsetDateTime::UNIX_EPOCH));
        let problem = Problem { reason: "QuotaExceeded", message: "pods".into() };
        let refused = conditions(&Outcome::Refused(&problem), &written);
        assert_eq!(find(&refused, SUSPENDED).status, conditions::TRUE);
        assert_eq!(find(&refused, AVAILABLE).reason, "ScaledToZero");
        assert_eq!(find(&refused, READY).event, Some(EventType::Warning));
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
    }
}

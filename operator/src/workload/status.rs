//! The conditions of a Portal or DocumentService that was applied, computed from what runs, with no
//! client (why nothing was applied is `service::pipeline`'s to say).
//!
//! `Ready` answers the user's first question and its reason says why not: `Suspended`, a
//! ReplicaSet's `FailedCreate` or `QuotaExceeded`, what holds it (its volume), or `Progressing`
//! while Pods start. `Available` and `CertificateReady` describe what runs. Every message is
//! stable while the world is, so a resync writes nothing.

use govpaas_crds::conditions::{AVAILABLE, CERTIFICATE_READY, READY, SUSPENDED, reasons};
use govpaas_crds::status::CertificateStatus;
use k8s_openapi::api::apps::v1::Deployment;

use crate::reconcile::conditions::time_of;
use kube::runtime::events::EventType;

use super::quota_fit::replica_failure;
use crate::certificates::leaf::Leaf;
use crate::reconcile::Problem;
use crate::reconcile::conditions::Desired;
use govpaas_pki::IssuancePolicy;

/// `Ready`'s reason while Pods start.
pub const PROGRESSING: &str = "Progressing";
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

/// What was applied and runs.
pub struct Running<'a> {
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

/// The conditions of a workload that was applied: `Ready`, `Available`, `CertificateReady`, and
/// `Suspended` while its tenant is. (When nothing was applied, `service::pipeline` says why
/// and carries these over.)
pub fn conditions(applied: &Running<'_>) -> Vec<Desired> {
    let mut all = vec![ready_when_applied(applied), available(applied), certificate_ready(&applied.certificates)];
    if let Some(tenant) = applied.suspended {
        all.push(Desired::holds(
            SUSPENDED,
            reasons::SUSPENDED,
            format!("tenant {tenant} is suspended by the provincial admin"),
        ));
    }
    all
}

fn ready_when_applied(applied: &Running<'_>) -> Desired {
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

fn available(applied: &Running<'_>) -> Desired {
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

    fn applied<'a>(deployment: &'a Deployment, replicas: i32) -> Running<'a> {
        Running {
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
        let all = conditions(&applied(&d, 2));
        let ready = find(&all, READY);
        assert_eq!((ready.status, ready.reason.as_str()), (crate::reconcile::conditions::TRUE, "Reconciled"));
        assert_eq!(ready.message, "serving at https://a.gov.vn/ with 2 of 2 replicas ready");
        let d = deployment(1, None);
        let all = conditions(&applied(&d, 2));
        assert_eq!(find(&all, READY).reason, PROGRESSING);
        assert_eq!(find(&all, AVAILABLE).status, crate::reconcile::conditions::TRUE);
    }

    #[test]
    fn a_quota_failure_of_the_replica_set_is_named() {
        let d = deployment(
            1,
            Some(
                "pods \"x\" is forbidden: exceeded quota: govpaas-quota, requested: pods=1, used: pods=2, limited: pods=2",
            ),
        );
        let all = conditions(&applied(&d, 3));
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
        let all = conditions(&a);
        assert_eq!(find(&all, READY).reason, "Suspended");
        assert!(find(&all, READY).message.contains("runs 3 again"));
        assert_eq!(find(&all, SUSPENDED).status, crate::reconcile::conditions::TRUE);
        assert_eq!(find(&all, AVAILABLE).reason, "ScaledToZero");
    }
}

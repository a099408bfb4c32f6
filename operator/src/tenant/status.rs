//! A Tenant's status, computed from what the reconcile applied (or why it applied nothing).
//!
//! Pure, and stable: the same outcome over the same previous status gives a byte-identical
//! status, so a resync writes nothing. Parts the tenant controller did not apply this time (the
//! quota of a tenant that is not applied) are carried over unchanged from the previous status:
//! `status.quota.hard` must always say what the ResourceQuotas were last written with, since the
//! quota ledger is re-seeded from it after a restart.

use std::collections::BTreeMap;

use govpaas_crds::conditions::{
    HIERARCHY_VALID, INVALID_PARENT, NAMESPACES_READY, QUOTA_EXCEEDED, READY, SUSPENDED, reasons,
};
use govpaas_crds::quota::{Excess, QuotaError};
use govpaas_crds::status::CertificateStatus;
use govpaas_crds::tenant::{QuotaStatus, ServiceCounts, TenantStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use super::validate::{Validation, is_parent_error};
use crate::quota::{Plan, Request};
use crate::reconcile::conditions::{self, Desired};

/// Reason of conditions that hold because nothing is wrong.
const WITHIN_QUOTA: &str = "WithinQuota";
const PARENT_VALID: &str = "ParentValid";
const ACTIVE: &str = "Active";
const RESUMING: &str = "Resuming";

/// What a reconcile did with a Tenant.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// The Platform `default` does not exist: nothing can be applied.
    NoPlatform,
    /// A rule across objects is broken: nothing applied.
    Invalid(&'a Validation),
    /// Valid, but its quota cannot be applied yet (see the request): nothing applied.
    NotApplied { domain: &'a str, plan: &'a Plan },
    /// Valid, but its quota cannot be used: its namespaces' shares do not fit its own share (or a
    /// sum overflows): nothing applied.
    QuotaUnusable { domain: &'a str, error: &'a QuotaError },
    /// One of its namespaces exists and belongs to something else: nothing applied.
    NamespaceTaken { domain: &'a str, message: String },
    /// Applied.
    Applied { domain: &'a str, plan: &'a Plan, namespaces: &'a [String], suspension: Suspension },
}

/// Where a suspension (or resume) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Suspension {
    pub suspended: bool,
    /// Workloads held down by the suspension (scaled to zero, or suspended) and not yet restored.
    pub held: usize,
    /// This pass still changed something: look again soon.
    pub settling: bool,
}

/// The tenant's conditions for `outcome`, in a fixed order, with the Events they call for.
pub fn conditions(outcome: &Outcome<'_>, previous: &[Condition]) -> Vec<Desired> {
    let suspended_before = conditions::is_true(previous, SUSPENDED);
    match outcome {
        Outcome::NoPlatform => {
            let message = "waiting for the Platform \"default\": it sets the base domain and the ingress controller; the platform engineer creates it (helm install creates it from values)";
            vec![
                Desired::fails(READY, reasons::PENDING, message).with_event(EventType::Warning),
                Desired::fails(NAMESPACES_READY, reasons::PENDING, message),
            ]
        }
        Outcome::Invalid(validation) => {
            let (reason, message) = first_problem(validation);
            let mut out = vec![Desired::fails(READY, reason, format!("not applied: {message}"))];
            out.extend(hierarchy_conditions(validation));
            if let Err(error) = &validation.member {
                out.push(
                    Desired::holds(QUOTA_EXCEEDED, error.reason(), error.to_string()).with_event(EventType::Warning),
                );
            }
            out.push(Desired::fails(
                NAMESPACES_READY,
                reason,
                "not applied; whatever the tenant had is left as it was",
            ));
            out
        }
        Outcome::NotApplied { plan, .. } => {
            let (reason, message) = request_problem(&plan.request);
            vec![
                Desired::fails(READY, reason, format!("not applied: {message}")),
                Desired::holds(HIERARCHY_VALID, reasons::RECONCILED, "the agency tree rules hold"),
                Desired::fails(INVALID_PARENT, PARENT_VALID, "the parent exists and is of a higher level"),
                quota_condition(&plan.request),
                Desired::fails(NAMESPACES_READY, reason, format!("not provisioned: {message}")),
            ]
        }
        Outcome::QuotaUnusable { error, .. } => vec![
            Desired::fails(READY, error.reason(), format!("not applied: {error}")),
            Desired::holds(HIERARCHY_VALID, reasons::RECONCILED, "the agency tree rules hold"),
            Desired::fails(INVALID_PARENT, PARENT_VALID, "the parent exists and is of a higher level"),
            Desired::holds(QUOTA_EXCEEDED, error.reason(), error.to_string()).with_event(EventType::Warning),
            Desired::fails(NAMESPACES_READY, error.reason(), "not applied; whatever the tenant had is left as it was"),
        ],
        Outcome::NamespaceTaken { message, .. } => vec![
            Desired::fails(READY, reasons::NAMESPACE_CONFLICT, format!("not applied: {message}")),
            Desired::holds(HIERARCHY_VALID, reasons::RECONCILED, "the agency tree rules hold"),
            Desired::fails(INVALID_PARENT, PARENT_VALID, "the parent exists and is of a higher level"),
            Desired::fails(NAMESPACES_READY, reasons::NAMESPACE_CONFLICT, message.clone())
                .with_event(EventType::Warning),
        ],
        Outcome::Applied { plan, namespaces, suspension, .. } => {
            let ready = if suspension.suspended {
                Desired::fails(READY, reasons::SUSPENDED, "the tenant is suspended")
            } else if suspension.held > 0 {
                Desired::fails(
                    READY,
                    RESUMING,
                    format!("restoring {} workload(s) after the suspension", suspension.held),
                )
            } else if let Request::Granted = plan.request {
                Desired::holds(READY, reasons::RECONCILED, format!("provisioned: {}", namespaces.join(", ")))
                    .with_event(EventType::Normal)
            } else {
                let (reason, message) = request_problem(&plan.request);
                Desired::fails(READY, reason, format!("running on its previous quota: {message}"))
            };
            let suspended = if suspension.suspended {
                Desired::holds(
                    SUSPENDED,
                    reasons::SUSPENDED,
                    "workloads stopped (Deployments, StatefulSets and ReplicaSets scaled to zero and their replicas remembered, Jobs and CronJobs suspended, uncontrolled Pods deleted) and new Pods refused (pods quota 0)",
                )
                .with_event(EventType::Normal)
            } else if suspension.held > 0 {
                Desired::holds(SUSPENDED, RESUMING, format!("resuming: {} workload(s) to restore", suspension.held))
            } else if suspended_before {
                Desired::fails(SUSPENDED, ACTIVE, "not suspended; workloads restored").with_event(EventType::Normal)
            } else {
                Desired::fails(SUSPENDED, ACTIVE, "not suspended")
            };
            vec![
                ready,
                Desired::holds(HIERARCHY_VALID, reasons::RECONCILED, "the agency tree rules hold"),
                Desired::fails(INVALID_PARENT, PARENT_VALID, "the parent exists and is of a higher level"),
                quota_condition(&plan.request),
                Desired::holds(
                    NAMESPACES_READY,
                    reasons::RECONCILED,
                    format!(
                        "namespaces, quotas, limit ranges, network policies and role bindings applied: {}",
                        namespaces.join(", ")
                    ),
                ),
                suspended,
            ]
        }
    }
}

/// What the caches show of a tenant besides what a reconcile applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// What its namespaces use, by quota field name.
    pub used: BTreeMap<String, Quantity>,
    /// The Tenants whose parent it is, sorted.
    pub children: Vec<String>,
    /// Its services, counted in its namespaces.
    pub services: ServiceCounts,
    /// Its intermediate CA, as just loaded (or renewed); `None` keeps what status said.
    pub ca: Option<CertificateStatus>,
}

/// The whole status to write.
pub fn status(
    outcome: &Outcome<'_>,
    desired: &[Desired],
    previous: Option<&TenantStatus>,
    generation: Option<i64>,
    observed: Observed,
    now: &Time,
) -> TenantStatus {
    let previous = previous.cloned().unwrap_or_default();
    let Observed { used, children, services, ca } = observed;
    let mut status = TenantStatus {
        observed_generation: generation,
        conditions: conditions::merge(&previous.conditions, desired, generation, now),
        children,
        services: Some(services),
        ca: ca.or(previous.ca.clone()),
        ..previous
    };
    match outcome {
        Outcome::NoPlatform | Outcome::Invalid(_) => {}
        Outcome::NotApplied { domain, .. }
        | Outcome::QuotaUnusable { domain, .. }
        | Outcome::NamespaceTaken { domain, .. } => {
            status.domain = Some((*domain).to_owned());
        }
        Outcome::Applied { domain, plan, namespaces, .. } => {
            status.domain = Some((*domain).to_owned());
            status.namespaces = namespaces.to_vec();
            if let (Some(hard), Some(own)) = (plan.hard, plan.own) {
                status.quota = Some(QuotaStatus {
                    hard: hard.to_status(),
                    children: plan.children.to_status(),
                    own: own.to_status(),
                    used,
                });
            }
        }
    }
    status
}

/// The HierarchyValid and InvalidParent conditions of an invalid tenant.
fn hierarchy_conditions(validation: &Validation) -> Vec<Desired> {
    let mut out = Vec::new();
    let mut problems: Vec<String> = validation.hierarchy.iter().map(ToString::to_string).collect();
    if let Err(problem) = &validation.domain {
        problems.push(problem.message.clone());
    }
    out.push(match (validation.hierarchy.first(), &validation.domain) {
        (Some(first), _) => {
            Desired::fails(HIERARCHY_VALID, first.reason(), problems.join("; ")).with_event(EventType::Warning)
        }
        (None, Err(problem)) => {
            Desired::fails(HIERARCHY_VALID, problem.reason, problem.message.clone()).with_event(EventType::Warning)
        }
        (None, Ok(_)) => Desired::holds(HIERARCHY_VALID, reasons::RECONCILED, "the agency tree rules hold"),
    });
    let parent_errors = validation.parent_errors();
    out.push(match parent_errors.first() {
        Some(first) => {
            let message = parent_errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            Desired::holds(INVALID_PARENT, first.reason(), message).with_event(EventType::Warning)
        }
        None => Desired::fails(INVALID_PARENT, PARENT_VALID, "the parent exists and is of a higher level"),
    });
    out
}

/// The reason and message of the first thing wrong with an invalid tenant.
fn first_problem(validation: &Validation) -> (&'static str, String) {
    if let Some(first) = validation.hierarchy.iter().find(|e| is_parent_error(e)).or(validation.hierarchy.first()) {
        return (first.reason(), first.to_string());
    }
    if let Err(message) = &validation.spec {
        return (reasons::INVALID_SPEC, message.clone());
    }
    if let Err(problem) = &validation.domain {
        return (problem.reason, problem.message.clone());
    }
    if let Err(error) = &validation.member {
        return (error.reason(), error.to_string());
    }
    (reasons::RECONCILED, String::new())
}

fn list(excess: &[Excess]) -> String {
    excess.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Reason and message for a request that is not (yet) granted.
fn request_problem(request: &Request) -> (&'static str, String) {
    match request {
        Request::Granted => (reasons::RECONCILED, "granted".into()),
        Request::WaitingForParent { parent } => (
            reasons::PENDING,
            format!("the quota is granted; waiting for parent {parent:?} to carve it out of its own namespaces"),
        ),
        Request::ParentNotProvisioned { parent } => {
            (reasons::PENDING, format!("waiting for parent {parent:?} to be provisioned"))
        }
        Request::ExceedsParent { parent, excess } => (
            reasons::QUOTA_EXCEEDED,
            format!(
                "spec.quota asks for more than parent {parent:?} has left after its other children and its own namespaces' shares ({}); lower this quota, or raise the parent's",
                list(excess)
            ),
        ),
        Request::BelowCommitted { excess } => (
            reasons::QUOTA_EXCEEDED,
            format!(
                "spec.quota is less than what this tenant's children hold plus its namespaces' shares ({}); lower theirs first",
                list(excess)
            ),
        ),
    }
}

fn quota_condition(request: &Request) -> Desired {
    match request {
        Request::Granted => Desired::fails(QUOTA_EXCEEDED, WITHIN_QUOTA, "the quota fits"),
        Request::WaitingForParent { .. } | Request::ParentNotProvisioned { .. } => {
            let (reason, message) = request_problem(request);
            Desired::fails(QUOTA_EXCEEDED, reason, message)
        }
        Request::ExceedsParent { .. } | Request::BelowCommitted { .. } => {
            let (reason, message) = request_problem(request);
            Desired::holds(QUOTA_EXCEEDED, reason, message).with_event(EventType::Warning)
        }
    }
}

/// Whether these conditions say the tenant asked for more than its parent has left.
pub fn exceeds_parent(request: &Request) -> Option<String> {
    match request {
        Request::ExceedsParent { excess, .. } => Some(list(excess)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use govpaas_crds::quota::QuotaVector;
    use kube::ResourceExt;

    use super::*;
    use crate::quota::{Family, Ledger};
    use crate::tenant::{fixtures, validate};

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn applied_plan() -> Plan {
        let tenants = fixtures::province();
        let member = validate::member(&tenants[0]).unwrap();
        let mut ledger = Ledger::default();
        ledger.plan(&Family { tenant: &member, parent: None, siblings: vec![], children: vec![] }).unwrap()
    }

    #[test]
    fn an_applied_tenant_is_ready_and_its_status_is_stable() {
        let plan = applied_plan();
        let namespaces = vec!["quang-nam".to_owned()];
        let outcome = Outcome::Applied {
            domain: "quang-nam.quangnam.gov.vn",
            plan: &plan,
            namespaces: &namespaces,
            suspension: Suspension::default(),
        };
        let desired = conditions(&outcome, &[]);
        let children = vec!["so-noi-vu".to_owned(), "xa-dai-loc".to_owned()];
        let services = ServiceCounts { portals: 2, document_services: 1, data_sharing_services: 0 };
        let observed =
            Observed { used: BTreeMap::new(), children: children.clone(), services: services.clone(), ca: None };
        let first = status(&outcome, &desired, None, Some(1), observed.clone(), &at(100));
        assert_eq!(first.children, children);
        assert_eq!(first.services, Some(services));
        assert!(conditions::is_true(&first.conditions, READY));
        assert!(!conditions::is_true(&first.conditions, QUOTA_EXCEEDED));
        assert_eq!(first.quota.as_ref().unwrap().hard["cpu"], Quantity("64".into()));
        assert_eq!(first.quota.as_ref().unwrap().own["memory"], Quantity("128Gi".into()));
        assert_eq!(first.domain.as_deref(), Some("quang-nam.quangnam.gov.vn"));

        // A resync of the same world: identical status, and no Event.
        let desired = conditions(&outcome, &first.conditions);
        let again = status(&outcome, &desired, Some(&first), Some(1), observed, &at(500));
        assert_eq!(again, first);
        assert!(conditions::changed_with_events(&first.conditions, &desired).is_empty());
    }

    #[test]
    fn a_child_over_its_parent_says_which_resource_and_keeps_its_old_quota_status() {
        let tenants = fixtures::province();
        let parent = validate::member(&tenants[0]).unwrap();
        let mut big = validate::member(&tenants[1]).unwrap();
        big.requested = QuotaVector::of_tenant(&govpaas_crds::tenant::TenantQuota {
            cpu: Quantity("65".into()),
            ..tenants[1].spec.quota.clone()
        })
        .unwrap();
        let mut ledger = Ledger::default();
        let province_plan =
            ledger.plan(&Family { tenant: &parent, parent: None, siblings: vec![], children: vec![&big] }).unwrap();
        ledger.applied(&parent, &province_plan);
        let plan = ledger
            .plan(&Family { tenant: &big, parent: Some(&parent), siblings: vec![&big], children: vec![] })
            .unwrap();
        let outcome = Outcome::NotApplied { domain: "so-noi-vu.quangnam.gov.vn", plan: &plan };
        let desired = conditions(&outcome, &[]);
        let written = status(&outcome, &desired, None, Some(3), Observed::default(), &at(1));
        let exceeded = conditions::find(&written.conditions, QUOTA_EXCEEDED).unwrap();
        assert_eq!(exceeded.status, "True");
        assert_eq!(exceeded.reason, "QuotaExceeded");
        assert!(exceeded.message.contains("cpu 65 > 64"), "{}", exceeded.message);
        assert!(written.quota.is_none(), "nothing applied, nothing recorded");
        let events = conditions::changed_with_events(&[], &desired);
        assert!(events.iter().any(|d| d.type_ == QUOTA_EXCEEDED));
        assert_eq!(exceeds_parent(&plan.request).as_deref(), Some("cpu 65 > 64"));
    }

    #[test]
    fn an_orphan_is_reported_as_an_invalid_parent() {
        let tenants = fixtures::province();
        let orphans: Vec<_> = tenants[1..].iter().collect();
        let validation = validate::validate(orphans[0], &orphans, "quangnam.gov.vn", &[]);
        let outcome = Outcome::Invalid(&validation);
        let desired = conditions(&outcome, &[]);
        let written = status(&outcome, &desired, None, Some(1), Observed::default(), &at(1));
        let invalid = conditions::find(&written.conditions, INVALID_PARENT).unwrap();
        assert_eq!((invalid.status.as_str(), invalid.reason.as_str()), ("True", "ParentNotFound"));
        let ready = conditions::find(&written.conditions, READY).unwrap();
        assert_eq!(ready.reason, "ParentNotFound");
        assert!(ready.message.contains("quang-nam"), "{}", ready.message);
        assert_eq!(orphans[0].name_any(), "so-noi-vu");
    }

    #[test]
    fn suspension_and_resume_are_reported() {
        let plan = applied_plan();
        let namespaces = vec!["quang-nam".to_owned()];
        let suspended = Outcome::Applied {
            domain: "d",
            plan: &plan,
            namespaces: &namespaces,
            suspension: Suspension { suspended: true, held: 2, settling: false },
        };
        let desired = conditions(&suspended, &[]);
        let written = status(&suspended, &desired, None, Some(2), Observed::default(), &at(1));
        assert!(conditions::is_true(&written.conditions, SUSPENDED));
        assert_eq!(conditions::find(&written.conditions, READY).unwrap().reason, "Suspended");

        let resumed = Outcome::Applied {
            domain: "d",
            plan: &plan,
            namespaces: &namespaces,
            suspension: Suspension { suspended: false, held: 0, settling: false },
        };
        let desired = conditions(&resumed, &written.conditions);
        let events = conditions::changed_with_events(&written.conditions, &desired);
        assert!(events.iter().any(|d| d.type_ == SUSPENDED && d.status == "False"), "a Resumed event");
    }
}

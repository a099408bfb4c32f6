//! Suspension: every workload of a suspended tenant stops, and comes back on resume.
//!
//! - Deployments, StatefulSets and ReplicaSets no Deployment controls are scaled to zero, their
//!   replica count remembered in an annotation on the object itself;
//! - Jobs still running and CronJobs get `spec.suspend: true` (a suspended Job's Pods are
//!   terminated; it resumes where it was), remembered likewise;
//! - Pods that no listed ReplicaSet, StatefulSet or Job controls (bare Pods, or Pods whose owner
//!   reference names something else) are deleted: nothing could stop them otherwise, and nothing
//!   would restore them either way.
//!
//! Nothing a tenant can write is trusted to exempt a workload: not a label
//! (`app.kubernetes.io/managed-by`), not an owner reference (an agency admin can put its own
//! Portal's uid on any Deployment). Deployments govpaas manages (a Portal's, a DocumentService's) are
//! scaled like the others; their own controllers read the namespace's `govpaas.io/suspended` label
//! and apply zero replicas too, so the two writers agree while suspended, and on resume the
//! service controller's count wins (a count already above zero is never touched).
//!
//! New Pods are stopped by the ResourceQuota (`pods: 0`, see `build`), so a workload created or
//! scaled up while suspended gets no Pods either. The planner is pure; the reconcile sends its
//! patches and deletions.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde_json::{Value, json};

/// Annotation on a Deployment, StatefulSet or ReplicaSet scaled down by a suspension: the replicas
/// to restore.
pub const SUSPENDED_REPLICAS_ANNOTATION: &str = "govpaas.io/suspended-replicas";
/// Annotation on a Job or CronJob suspended by a suspension (`"true"`): resume it afterwards.
pub const SUSPENSION_HELD_ANNOTATION: &str = "govpaas.io/suspension-held";

/// The kinds a suspension patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
    ReplicaSet,
    Job,
    CronJob,
}

/// One thing to do in a namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A JSON merge patch: the count (or `suspend`) and the annotation together, so a crash
    /// between them is impossible.
    Patch { kind: Kind, name: String, patch: Value },
    /// A Pod nothing listed controls.
    DeletePod { name: String },
}

/// The workloads of one tenant namespace, as listed.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    pub replica_sets: Vec<ReplicaSet>,
    pub jobs: Vec<Job>,
    pub cron_jobs: Vec<CronJob>,
    pub pods: Vec<Pod>,
}

/// What a suspension still has to do in one namespace, and how many workloads it holds there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Workloads held down by the suspension (already, or by this plan's patches).
    pub held: usize,
}

/// Plans suspension (`suspended`) or resumption of `workloads`.
pub fn plan(workloads: &Workloads, suspended: bool) -> Plan {
    let mut plan = Plan::default();
    let mut scale = |kind: Kind, meta: &ObjectMeta, replicas: Option<i32>| {
        let step = scale_step(meta, replicas, suspended);
        let held = suspended && (step.is_some() || meta_held(meta, SUSPENDED_REPLICAS_ANNOTATION));
        plan.held += usize::from(held);
        if let Some(patch) = step {
            plan.steps.push(Step::Patch { kind, name: name_of(meta), patch });
        }
    };
    for deployment in &workloads.deployments {
        scale(Kind::Deployment, &deployment.metadata, deployment.spec.replicas);
    }
    for set in &workloads.stateful_sets {
        scale(Kind::StatefulSet, &set.metadata, set.spec.replicas);
    }
    // A ReplicaSet a listed Deployment controls is scaled through its Deployment.
    let deployment_uids = uids(workloads.deployments.iter().map(|d| &d.metadata));
    for set in workloads.replica_sets.iter().filter(|rs| !controlled_by(&rs.metadata, "Deployment", &deployment_uids)) {
        scale(Kind::ReplicaSet, &set.metadata, set.spec.replicas);
    }

    let mut hold = |kind: Kind, meta: &ObjectMeta, is_suspended: bool| {
        let step = suspend_step(meta, is_suspended, suspended);
        let held = suspended && (step.is_some() || meta_held(meta, SUSPENSION_HELD_ANNOTATION));
        plan.held += usize::from(held);
        if let Some(patch) = step {
            plan.steps.push(Step::Patch { kind, name: name_of(meta), patch });
        }
    };
    for job in workloads.jobs.iter().filter(|job| !is_finished(job)) {
        hold(Kind::Job, &job.metadata, job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false));
    }
    for cron_job in &workloads.cron_jobs {
        hold(Kind::CronJob, &cron_job.metadata, cron_job.spec.suspend.unwrap_or(false));
    }

    if suspended {
        let controllers = Controllers {
            replica_sets: uids(workloads.replica_sets.iter().map(|r| &r.metadata)),
            stateful_sets: uids(workloads.stateful_sets.iter().map(|s| &s.metadata)),
            jobs: uids(workloads.jobs.iter().map(|j| &j.metadata)),
        };
        for pod in workloads.pods.iter().filter(|pod| is_running(pod) && !controllers.control(&pod.metadata)) {
            plan.steps.push(Step::DeletePod { name: pod.name_any() });
        }
    }
    plan
}

/// Whether the Deployment is still scaled down by a suspension.
pub fn is_held(deployment: &Deployment) -> bool {
    meta_held(&deployment.metadata, SUSPENDED_REPLICAS_ANNOTATION)
}

fn scale_step(meta: &ObjectMeta, replicas: Option<i32>, suspended: bool) -> Option<Value> {
    let replicas = replicas.unwrap_or(1);
    let remembered = meta.annotations.as_ref().and_then(|a| a.get(SUSPENDED_REPLICAS_ANNOTATION));
    match (suspended, remembered) {
        // Scale down; remember the latest count, even one set while suspended.
        (true, _) if replicas > 0 => Some(json!({
            "metadata": {"annotations": {SUSPENDED_REPLICAS_ANNOTATION: replicas.to_string()}},
            "spec": {"replicas": 0},
        })),
        (true, _) | (false, None) => None,
        (false, Some(value)) => {
            // Someone set replicas during the suspension (an agency admin, or the service
            // controller that owns it): theirs wins.
            let restore = if replicas > 0 { replicas } else { value.parse::<i32>().unwrap_or(1).max(0) };
            Some(json!({
                "metadata": {"annotations": {SUSPENDED_REPLICAS_ANNOTATION: null}},
                "spec": {"replicas": restore},
            }))
        }
    }
}

fn suspend_step(meta: &ObjectMeta, is_suspended: bool, suspended: bool) -> Option<Value> {
    let held = meta_held(meta, SUSPENSION_HELD_ANNOTATION);
    match (suspended, held) {
        (true, _) if !is_suspended => Some(json!({
            "metadata": {"annotations": {SUSPENSION_HELD_ANNOTATION: "true"}},
            "spec": {"suspend": true},
        })),
        (false, true) => Some(json!({
            "metadata": {"annotations": {SUSPENSION_HELD_ANNOTATION: null}},
            "spec": {"suspend": false},
        })),
        // Suspended by the agency itself before: left as it was, on both sides.
        _ => None,
    }
}

fn meta_held(meta: &ObjectMeta, annotation: &str) -> bool {
    meta.annotations.as_ref().is_some_and(|a| a.contains_key(annotation))
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn uids<'a>(metas: impl Iterator<Item = &'a ObjectMeta>) -> BTreeSet<String> {
    metas.filter_map(|m| m.uid.clone()).collect()
}

/// Whether `meta`'s controller owner reference is a `kind` among `uids` (an owner reference
/// names its owner's uid, which the API server gave it: a forged one names nothing listed).
fn controlled_by(meta: &ObjectMeta, kind: &str, uids: &BTreeSet<String>) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.kind == kind && uids.contains(&owner.uid))
}

/// The controllers in a namespace that stop their own Pods when held.
struct Controllers {
    replica_sets: BTreeSet<String>,
    stateful_sets: BTreeSet<String>,
    jobs: BTreeSet<String>,
}

impl Controllers {
    fn control(&self, pod: &ObjectMeta) -> bool {
        controlled_by(pod, "ReplicaSet", &self.replica_sets)
            || controlled_by(pod, "StatefulSet", &self.stateful_sets)
            || controlled_by(pod, "Job", &self.jobs)
    }
}

fn is_running(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn is_finished(job: &Job) -> bool {
    job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
        conditions.iter().any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::fixtures;

    fn workloads() -> Workloads {
        let file = "workloads.yaml";
        Workloads {
            deployments: fixtures::documents(file, "Deployment"),
            stateful_sets: fixtures::documents(file, "StatefulSet"),
            replica_sets: fixtures::documents(file, "ReplicaSet"),
            jobs: fixtures::documents(file, "Job"),
            cron_jobs: fixtures::documents(file, "CronJob"),
            pods: fixtures::documents(file, "Pod"),
        }
    }

    fn patched(plan: &Plan) -> Vec<(Kind, &str)> {
        plan.steps
            .iter()
            .filter_map(|step| match step {
                Step::Patch { kind, name, .. } => Some((*kind, name.as_str())),
                Step::DeletePod { .. } => None,
            })
            .collect()
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        plan.steps
            .iter()
            .filter_map(|step| match step {
                Step::DeletePod { name } => Some(name.as_str()),
                Step::Patch { .. } => None,
            })
            .collect()
    }

    #[test]
    fn suspending_stops_every_workload_whatever_its_labels_and_owners_claim() {
        let plan = plan(&workloads(), true);
        assert_eq!(
            patched(&plan),
            [
                (Kind::Deployment, "cong-dich-vu-cong"),
                // Labelled managed-by govpaas and owned by a Portal: no exemption.
                (Kind::Deployment, "portal-mot-cua"),
                (Kind::Deployment, "gia-mao"),
                (Kind::StatefulSet, "co-so-du-lieu"),
                // Standalone; the ReplicaSet of a listed Deployment is left to its Deployment.
                (Kind::ReplicaSet, "rieng-le"),
                (Kind::Job, "dong-bo"),
                (Kind::CronJob, "sao-luu"),
            ]
        );
        assert_eq!(
            plan.steps[0],
            Step::Patch {
                kind: Kind::Deployment,
                name: "cong-dich-vu-cong".into(),
                patch: json!({
                    "metadata": {"annotations": {"govpaas.io/suspended-replicas": "3"}},
                    "spec": {"replicas": 0},
                }),
            }
        );
        let job = plan.steps.iter().find(|s| matches!(s, Step::Patch { kind: Kind::Job, .. })).unwrap();
        let Step::Patch { patch, .. } = job else { unreachable!() };
        assert_eq!(patch["spec"]["suspend"], true);
        // The bare Pod and the one whose owner reference names no listed controller go; the Pods
        // of a listed ReplicaSet and StatefulSet, and a finished bare Pod, stay.
        assert_eq!(deleted(&plan), ["tran-tran", "chu-gia"]);
        // 7 patched, plus tra-cuu already held; bao-tri (at zero by itself) is not held.
        assert_eq!(plan.held, 8);
    }

    #[test]
    fn resuming_restores_what_was_remembered_and_deletes_nothing() {
        let mut workloads = workloads();
        for cron_job in &mut workloads.cron_jobs {
            cron_job.annotations_mut().insert(SUSPENSION_HELD_ANNOTATION.into(), "true".into());
            cron_job.spec.suspend = Some(true);
        }
        let plan = plan(&workloads, false);
        assert_eq!(patched(&plan), [(Kind::Deployment, "tra-cuu"), (Kind::CronJob, "sao-luu")]);
        let Step::Patch { patch, .. } = &plan.steps[0] else { unreachable!() };
        assert_eq!(patch["spec"]["replicas"], 2);
        assert_eq!(patch["metadata"]["annotations"][SUSPENDED_REPLICAS_ANNOTATION], Value::Null);
        let Step::Patch { patch, .. } = &plan.steps[1] else { unreachable!() };
        assert_eq!(patch["spec"]["suspend"], false);
        assert!(deleted(&plan).is_empty());
        assert_eq!(plan.held, 0);
    }

    #[test]
    fn a_count_set_during_suspension_wins_on_resume() {
        let mut workloads = workloads();
        let held = workloads.deployments.iter_mut().find(|d| d.name_any() == "tra-cuu").unwrap();
        held.spec.replicas = Some(5);
        assert!(is_held(held));
        let plan = plan(&workloads, false);
        let Step::Patch { patch, .. } = &plan.steps[0] else { unreachable!() };
        assert_eq!(patch["spec"]["replicas"], 5);
    }

    #[test]
    fn a_job_the_agency_suspended_itself_stays_suspended() {
        let mut workloads = workloads();
        workloads.jobs[0].spec.as_mut().unwrap().suspend = Some(true);
        assert!(!patched(&plan(&workloads, true)).contains(&(Kind::Job, "dong-bo")));
        assert!(!patched(&plan(&workloads, false)).contains(&(Kind::Job, "dong-bo")));
    }

    #[test]
    fn planning_again_after_the_patches_does_nothing_more() {
        let mut workloads = workloads();
        let first = plan(&workloads, true);
        for step in &first.steps {
            let Step::Patch { kind, name, patch } = step else { continue };
            let annotations = patch["metadata"]["annotations"].as_object().unwrap();
            let apply = |meta: &mut ObjectMeta| {
                let map = meta.annotations.get_or_insert_with(Default::default);
                for (key, value) in annotations {
                    map.insert(key.clone(), value.as_str().unwrap().to_owned());
                }
            };
            match kind {
                Kind::Deployment => {
                    let d = workloads.deployments.iter_mut().find(|d| &d.name_any() == name).unwrap();
                    apply(&mut d.metadata);
                    d.spec.replicas = Some(0);
                }
                Kind::StatefulSet => {
                    let s = workloads.stateful_sets.iter_mut().find(|d| &d.name_any() == name).unwrap();
                    apply(&mut s.metadata);
                    s.spec.replicas = Some(0);
                }
                Kind::ReplicaSet => {
                    let s = workloads.replica_sets.iter_mut().find(|d| &d.name_any() == name).unwrap();
                    apply(&mut s.metadata);
                    s.spec.replicas = Some(0);
                }
                Kind::Job => {
                    let j = workloads.jobs.iter_mut().find(|d| &d.name_any() == name).unwrap();
                    apply(&mut j.metadata);
                    j.spec.as_mut().unwrap().suspend = Some(true);
                }
                Kind::CronJob => {
                    let c = workloads.cron_jobs.iter_mut().find(|d| &d.name_any() == name).unwrap();
                    apply(&mut c.metadata);
                    c.spec.suspend = Some(true);
                }
            }
        }
        workloads.pods.retain(|pod| !deleted(&first).contains(&pod.name_any().as_str()));
        let second = plan(&workloads, true);
        assert!(second.steps.is_empty(), "{:?}", second.steps);
        assert_eq!(second.held, first.held);
    }
}

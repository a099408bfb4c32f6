//! Suspension: every Deployment of a suspended tenant is scaled to zero, its replica count
//! remembered in an annotation on the Deployment itself, and restored on resume.
//!
//! New Pods are stopped by the ResourceQuota (`pods: 0`, see `build`), so a Deployment created or
//! scaled up while suspended gets no Pods either. Deployments govpaas manages (a Portal's, a
//! DocumentService's) are left to their own controllers, which read the namespace's
//! `govpaas.io/suspended` label and scale them from their spec: two writers of one `replicas` would
//! fight. The planner is pure; the reconcile sends its patches.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::reconcile::labels;

/// Annotation on a Deployment scaled down by a suspension: the replicas to restore.
pub const SUSPENDED_REPLICAS_ANNOTATION: &str = "govpaas.io/suspended-replicas";

/// One Deployment to patch.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub namespace: String,
    pub name: String,
    /// A JSON merge patch: replicas and the annotation, together, so a crash between them is
    /// impossible.
    pub patch: Value,
}

/// What suspension still has to do to `deployments`.
pub fn plan(deployments: &[Deployment], suspended: bool) -> Vec<Scale> {
    deployments
        .iter()
        .filter(|d| !is_managed_by_govpaas(d))
        .filter_map(|deployment| {
            let replicas = deployment.spec.replicas.unwrap_or(1);
            let remembered = deployment.annotations().get(SUSPENDED_REPLICAS_ANNOTATION);
            let patch = match (suspended, remembered) {
                // Scale down; remember the latest count, even one set while suspended.
                (true, _) if replicas > 0 => json!({
                    "metadata": {"annotations": {SUSPENDED_REPLICAS_ANNOTATION: replicas.to_string()}},
                    "spec": {"replicas": 0},
                }),
                (true, _) => return None,
                (false, Some(value)) => {
                    // Someone set replicas by hand during the suspension: theirs wins.
                    let restore = if replicas > 0 { replicas } else { value.parse::<i32>().unwrap_or(1).max(0) };
                    json!({
                        "metadata": {"annotations": {SUSPENDED_REPLICAS_ANNOTATION: null}},
                        "spec": {"replicas": restore},
                    })
                }
                (false, None) => return None,
            };
            Some(Scale { namespace: deployment.namespace().unwrap_or_default(), name: deployment.name_any(), patch })
        })
        .collect()
}

/// Whether the Deployment is still scaled down by a suspension.
pub fn is_held(deployment: &Deployment) -> bool {
    deployment.annotations().contains_key(SUSPENDED_REPLICAS_ANNOTATION)
}

fn is_managed_by_govpaas(deployment: &Deployment) -> bool {
    deployment.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_OPERATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::fixtures;

    fn deployments() -> Vec<Deployment> {
        fixtures::documents("deployments.yaml", "Deployment")
    }

    #[test]
    fn suspending_scales_the_agencys_own_deployments_to_zero_and_remembers() {
        let plan = plan(&deployments(), true);
        assert_eq!(
            plan,
            vec![Scale {
                namespace: "so-noi-vu".into(),
                name: "cong-dich-vu-cong".into(),
                patch: json!({
                    "metadata": {"annotations": {"govpaas.io/suspended-replicas": "3"}},
                    "spec": {"replicas": 0},
                }),
            }],
            "already at zero, already held, and govpaas-managed Deployments are left alone"
        );
    }

    #[test]
    fn resuming_restores_what_was_remembered() {
        let plan = plan(&deployments(), false);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].name, "tra-cuu");
        assert_eq!(plan[0].patch["spec"]["replicas"], 2);
        assert_eq!(plan[0].patch["metadata"]["annotations"][SUSPENDED_REPLICAS_ANNOTATION], Value::Null);
    }

    #[test]
    fn a_count_set_by_hand_during_suspension_wins_on_resume() {
        let mut deployments = deployments();
        deployments[2].spec.replicas = Some(5);
        let plan = plan(&deployments, false);
        assert_eq!(plan[0].patch["spec"]["replicas"], 5);
        assert!(is_held(&deployments[2]));
        assert!(!is_held(&deployments[0]));
    }
}

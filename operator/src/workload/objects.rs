//! Builders for the child objects every service has: metadata with labels and an owner reference,
//! a Service, an Ingress with TLS, a PodDisruptionBudget, and a `kubernetes.io/tls` Secret.

use std::collections::BTreeMap;

use govpaas_crds::platform::{NodePool, NodeToleration};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Container, PodAffinity, PodAffinityTerm, PodSpec, PodTemplateSpec, Secret, Service, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use super::pod::{HTTP_PORT_NAME, pod_security_context, selector, selector_labels, tmp_volume};
use crate::certificates::TlsMaterial;
use crate::error::{Error, Result};
use crate::reconcile::labels;

/// The service (Portal or DocumentService) that owns the objects being built.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    /// The `app.kubernetes.io/component` of its children: `portal`, `document-service`.
    pub component: &'static str,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The controller owner reference every child carries.
    pub reference: OwnerReference,
}

impl Owner {
    /// The owner facts of a stored object (it has a name, a namespace and a uid).
    pub fn of<K: Resource<DynamicType = ()>>(object: &K, component: &'static str) -> Result<Self> {
        let kind = match K::kind(&()) {
            std::borrow::Cow::Borrowed(kind) => kind,
            std::borrow::Cow::Owned(_) => "object",
        };
        let meta = object.meta();
        let name = meta.name.clone().ok_or(Error::MissingField { kind, field: "metadata.name" })?;
        let namespace = meta.namespace.clone().ok_or(Error::MissingField { kind, field: "metadata.namespace" })?;
        let mut reference =
            object.controller_owner_ref(&()).ok_or(Error::MissingField { kind, field: "metadata.uid" })?;
        // Foreground deletion of the service waits for its children.
        reference.block_owner_deletion = Some(true);
        Ok(Owner { component, name, namespace, reference })
    }

    /// Metadata of a child named `name`: the owner's namespace, the govpaas labels and the owner
    /// reference.
    pub fn child_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.reference.clone()]),
            ..Default::default()
        }
    }

    /// The labels of every child (and of the Pods).
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels::owned_labels(self.component, &self.name)
    }

    /// The labels that select the owner's Pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        selector_labels(self.component, &self.name)
    }
}

/// Where a service's Pods go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Spread over nodes, so one node's loss or drain leaves the others serving.
    Spread,
    /// Together on one node: they share a ReadWriteOnce volume, which only one node can mount.
    OneNode,
}

/// How a Deployment replaces its Pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// One Pod at a time, never more Pods than replicas: a rollout needs no quota beyond what the
    /// service was admitted with; the other replicas serve meanwhile.
    OneAtATime,
    /// All old Pods go before new ones start: one writer on a volume at any time.
    Recreate,
}

/// The service's Deployment: `replicas` Pods of `container` (plus `/tmp`), `restricted` pod
/// security, no service-account token (the workloads never call the API), `volumes` added.
// Each argument is one decision of the caller's (the Deployment has no smaller part that varies alone).
#[allow(clippy::too_many_arguments)]
pub fn deployment(
    owner: &Owner,
    name: &str,
    replicas: i32,
    rollout: Rollout,
    placement: Placement,
    nodes: Option<&NodePool>,
    container: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    let strategy = match rollout {
        Rollout::OneAtATime => DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(1)),
            }),
        },
        Rollout::Recreate => DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None },
    };
    let pods = selector(owner.component, &owner.name);
    let (topology_spread_constraints, affinity) = match placement {
        Placement::Spread => (
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".into(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: Some(pods.clone()),
                match_label_keys: Some(vec!["pod-template-hash".into()]),
                ..Default::default()
            }]),
            None,
        ),
        Placement::OneNode => (
            None,
            Some(Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                        label_selector: Some(pods.clone()),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
    };
    let mut all_volumes = vec![tmp_volume()];
    all_volumes.extend(volumes);
    Deployment {
        metadata: owner.child_meta(name),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            revision_history_limit: Some(5),
            selector: pods,
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(owner.labels()), ..Default::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![container],
                    volumes: Some(all_volumes),
                    topology_spread_constraints,
                    affinity,
                    node_selector: nodes.filter(|n| !n.node_selector.is_empty()).map(|n| n.node_selector.clone()),
                    tolerations: nodes
                        .filter(|n| !n.tolerations.is_empty())
                        .map(|n| n.tolerations.iter().map(NodeToleration::to_toleration).collect()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A ClusterIP Service in front of the owner's Pods, one port per `(name, port)`; each targets the
/// container port of the same name.
pub fn service(owner: &Owner, name: &str, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: owner.child_meta(name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(owner.selector_labels()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port)| ServicePort {
                        name: Some((*port_name).to_owned()),
                        port: *port,
                        target_port: Some(IntOrString::String((*port_name).to_owned())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An Ingress routing every path of each host to the Service's `http` port, with TLS for all the
/// hosts from `tls_secret`.
pub fn ingress(
    owner: &Owner,
    name: &str,
    ingress_class: Option<&str>,
    hosts: &[String],
    service_name: &str,
    tls_secret: &str,
) -> Ingress {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: service_name.to_owned(),
            port: Some(ServiceBackendPort { name: Some(HTTP_PORT_NAME.into()), number: None }),
        }),
        ..Default::default()
    };
    Ingress {
        metadata: owner.child_meta(name),
        spec: Some(IngressSpec {
            ingress_class_name: ingress_class.map(str::to_owned),
            tls: Some(vec![IngressTLS { hosts: Some(hosts.to_vec()), secret_name: Some(tls_secret.to_owned()) }]),
            rules: Some(
                hosts
                    .iter()
                    .map(|host| IngressRule {
                        host: Some(host.clone()),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".into()),
                                path_type: "Prefix".into(),
                                backend: backend.clone(),
                            }],
                        }),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A PodDisruptionBudget letting voluntary disruptions (node drains) take one Pod at a time. Pods
/// that are not ready may always be evicted, so a broken rollout never blocks a drain.
pub fn pod_disruption_budget(owner: &Owner, name: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.child_meta(name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(owner.component, &owner.name)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `kubernetes.io/tls` Secret holding `material`, to be applied only over the version of the
/// Secret the material was decided from (see [`TlsMaterial::decided_from`]).
pub fn tls_secret(owner: &Owner, name: &str, material: &TlsMaterial) -> Secret {
    let entry = |value: &str| ByteString(value.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta { resource_version: material.decided_from.clone(), ..owner.child_meta(name) },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), entry(&material.tls_crt)),
            ("tls.key".to_owned(), entry(&material.tls_key)),
            ("ca.crt".to_owned(), entry(&material.ca_crt)),
        ])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn owner_needs_a_uid() {
        let mut portal = fixtures::portal();
        let owner = Owner::of(&portal, "portal").unwrap();
        assert_eq!(owner.reference.kind, "Portal");
        assert_eq!(owner.reference.controller, Some(true));
        portal.metadata.uid = None;
        assert_eq!(Owner::of(&portal, "portal").unwrap_err().metric_label(), "MissingField");
    }

    #[test]
    fn a_tls_secret_is_applied_over_the_version_it_was_decided_from() {
        let owner = Owner::of(&fixtures::portal(), "portal").unwrap();
        let mut material = TlsMaterial {
            tls_crt: "crt".into(),
            tls_key: "key".into(),
            ca_crt: "ca".into(),
            decided_from: Some("41".into()),
        };
        let secret = tls_secret(&owner, "x-portal-tls", &material);
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("41"));
        assert_eq!(secret.metadata.name.as_deref(), Some("x-portal-tls"));
        assert!(secret.metadata.owner_references.is_some());
        material.decided_from = None;
        let first = serde_json::to_value(tls_secret(&owner, "x-portal-tls", &material)).unwrap();
        assert!(first["metadata"].get("resourceVersion").is_none(), "a first Secret is created unconditionally");
    }

    #[test]
    fn ingress_has_a_rule_and_tls_for_every_host() {
        let owner = Owner::of(&fixtures::portal(), "portal").unwrap();
        let hosts = vec!["a.so-noi-vu.quangnam.gov.vn".to_owned(), "so-noi-vu.quangnam.gov.vn".to_owned()];
        let ingress = ingress(&owner, "x-portal", Some("nginx"), &hosts, "x-portal", "x-portal-tls");
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.rules.unwrap().len(), 2);
        assert_eq!(spec.tls.unwrap()[0].hosts.as_deref(), Some(hosts.as_slice()));
    }
}

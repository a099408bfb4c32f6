//! The objects a Tenant should have, built with no client: a pure function of the Tenant, its
//! validated domain, its namespaces' quota shares and the platform settings.
//!
//! Per namespace: the Namespace (Pod Security `restricted`, govpaas labels and the domain
//! annotation the ValidatingAdmissionPolicies read), a ResourceQuota with the namespace's share, a
//! LimitRange whose defaults let Pods without requests in under the quota, NetworkPolicies (default
//! deny; allow DNS, the tenant's own namespaces, the ingress controller and the LGSP gateway) and a
//! RoleBinding of the admins to `govpaas-agency-admin`, and the trust bundle ConfigMap (the
//! platform CA, or the old and new ones during a rotation). Cluster-wide: a ClusterRole and
//! binding that let the admins get and watch their own Tenant and no other.

use std::collections::BTreeMap;

use govpaas_crds::Tenant;
use govpaas_crds::metadata::{
    AGENCY_CODE_LABEL, AGENCY_LEVEL_LABEL, ALLOW_LOAD_BALANCERS_LABEL, ALLOW_NODE_PORTS_LABEL, DOMAIN_ANNOTATION,
    SUSPENDED_LABEL, TENANT_LABEL,
};
use govpaas_crds::platform::ComputeResources;
use govpaas_crds::quota::QuotaVector;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::COMPONENT;
use crate::reconcile::labels;

/// The ClusterRole (installed by the Helm chart) that agency admins get in their namespaces.
pub const AGENCY_ADMIN_CLUSTER_ROLE: &str = "govpaas-agency-admin";
/// The ResourceQuota in each tenant namespace.
pub const RESOURCE_QUOTA: &str = "govpaas-quota";
/// The LimitRange in each tenant namespace.
pub const LIMIT_RANGE: &str = "govpaas-defaults";
pub const TRUST_BUNDLE_KEY: &str = "ca.crt";
/// The key of the trust bundle ConfigMap that holds the tenant's own intermediate CA.
pub const TENANT_CA_KEY: &str = "tenant-ca.crt";
/// The RoleBinding of the admins in each tenant namespace.
pub const ADMINS_ROLE_BINDING: &str = "govpaas-agency-admins";
/// Annotation on a tenant namespace: the agency's name, for `kubectl describe namespace`.
pub const AGENCY_NAME_ANNOTATION: &str = "govpaas.io/agency-name";
/// Label of the LGSP gateway's Pods, in the operator's namespace.
pub const GATEWAY_POD_LABEL: (&str, &str) = govpaas_crds::lgsp::GATEWAY_POD_LABEL;
/// Where cluster DNS runs, and its Pods' label: every cluster made by kubeadm and most others.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The ingress controller's namespace when the Platform names none.
pub const DEFAULT_INGRESS_NAMESPACE: &str = "ingress-nginx";
/// The well-known label holding a namespace's own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Everything the builder needs besides the Tenant.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The tenant's validated domain.
    pub domain: String,
    /// Each namespace with its share of the tenant's own quota.
    pub namespaces: Vec<(String, QuotaVector)>,
    /// Where the ingress controller runs (from the Platform).
    pub ingress_namespace: String,
    /// Where the LGSP gateway runs (the operator's namespace).
    pub gateway_namespace: String,
    /// Defaults for containers that state no requests or limits (the Platform's `small` size).
    pub default_requests: ComputeResources,
    pub default_limits: ComputeResources,
    /// The trust bundle's PEM (`TrustRotation::bundle_pem`). `None` while the platform CA cannot
    /// be read: no bundle is written then, and one written before is left as it is.
    pub trust_bundle: Option<String>,
    /// The tenant's intermediate CA certificate (PEM), for the bundle's `tenant-ca.crt`; `None`
    /// while it cannot be read.
    pub tenant_ca: Option<String>,
    /// The tenant's whole quota these objects are written for (the ledger's plan), recorded on
    /// each ResourceQuota in [`GRANTED_QUOTA_ANNOTATION`].
    pub quota_hard: Option<QuotaVector>,
}

/// The desired objects of one Tenant, by kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantObjects {
    pub namespaces: Vec<Namespace>,
    pub resource_quotas: Vec<ResourceQuota>,
    pub limit_ranges: Vec<LimitRange>,
    pub network_policies: Vec<NetworkPolicy>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub config_maps: Vec<ConfigMap>,
}

/// The name of the ClusterRole (and its binding) that lets a tenant's admins read their Tenant.
pub fn tenant_reader_name(tenant: &str) -> String {
    format!("govpaas-tenant-{tenant}")
}

/// The owner reference every object of `tenant` carries, so deleting the Tenant deletes them.
pub fn owner_reference(tenant: &Tenant) -> Option<OwnerReference> {
    use kube::Resource;
    tenant.controller_owner_ref(&())
}

/// Annotation on each of a tenant's ResourceQuotas: the tenant's whole quota (`status.quota.hard`
/// format, JSON) its namespaces were written for. Written in the same request as the namespace's
/// share, so an operator killed between the ResourceQuotas and the status still finds, after its
/// restart, what the tenant holds: the quota ledger is re-seeded from the larger of the two.
pub const GRANTED_QUOTA_ANNOTATION: &str = "govpaas.io/tenant-quota";

/// Builds the desired objects. `owner` is the Tenant's controller reference.
pub fn build(tenant: &Tenant, owner: &OwnerReference, inputs: &Inputs) -> TenantObjects {
    let name = tenant.name_any();
    let mut objects = TenantObjects::default();
    let subjects = subjects(tenant);
    for (namespace, share) in &inputs.namespaces {
        objects.namespaces.push(namespace_object(tenant, owner, namespace, &inputs.domain));
        objects.resource_quotas.push(resource_quota(tenant, owner, namespace, share, inputs.quota_hard.as_ref()));
        objects.limit_ranges.push(limit_range(tenant, owner, namespace, inputs));
        objects.network_policies.extend(network_policies(tenant, owner, namespace, inputs));
        if let Some(bundle) = &inputs.trust_bundle {
            objects.config_maps.push(trust_bundle(tenant, owner, namespace, bundle, inputs.tenant_ca.as_deref()));
        }
        if !subjects.is_empty() {
            objects.role_bindings.push(RoleBinding {
                metadata: meta(tenant, owner, ADMINS_ROLE_BINDING, Some(namespace)),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: AGENCY_ADMIN_CLUSTER_ROLE.into(),
                },
                subjects: Some(subjects.clone()),
            });
        }
    }
    if !subjects.is_empty() {
        let reader = tenant_reader_name(&name);
        objects.cluster_roles.push(ClusterRole {
            metadata: meta(tenant, owner, &reader, None),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![govpaas_crds::GROUP.into()]),
                resources: Some(vec!["tenants".into()]),
                resource_names: Some(vec![name.clone()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            }]),
            ..Default::default()
        });
        objects.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: meta(tenant, owner, &reader, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: reader,
            },
            subjects: Some(subjects),
        });
    }
    objects
}

/// The trust bundle of one namespace: what its workloads mount to verify every govpaas
/// certificate (portals, services, LGSP peers). `ca.crt` holds the platform CA(s) only — every
/// certificate in it is a trust anchor to a verifier, and a tenant CA must not be one (a leaf's
/// `tls.crt` carries its tenant CA; see docs/certificates.md). The tenant's own intermediate is
/// beside it, under `tenant-ca.crt`, for whoever builds chains or inspects the agency's CA.
pub fn trust_bundle(
    tenant: &Tenant,
    owner: &OwnerReference,
    namespace: &str,
    bundle_pem: &str,
    tenant_ca_pem: Option<&str>,
) -> ConfigMap {
    let mut data = BTreeMap::from([(TRUST_BUNDLE_KEY.to_owned(), bundle_pem.to_owned())]);
    if let Some(tenant_ca) = tenant_ca_pem {
        data.insert(TENANT_CA_KEY.to_owned(), tenant_ca.to_owned());
    }
    ConfigMap {
        metadata: meta(tenant, owner, crate::certificates::TRUST_BUNDLE, Some(namespace)),
        data: Some(data),
        ..Default::default()
    }
}

/// Labels, owner and name of an object of `tenant`.
fn meta(tenant: &Tenant, owner: &OwnerReference, name: &str, namespace: Option<&str>) -> ObjectMeta {
    let mut object_labels = labels::owned_labels(COMPONENT, &tenant.name_any());
    object_labels.insert(TENANT_LABEL.into(), tenant.name_any());
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(object_labels),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

fn namespace_object(tenant: &Tenant, owner: &OwnerReference, name: &str, domain: &str) -> Namespace {
    let mut metadata = meta(tenant, owner, name, None);
    let object_labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        object_labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".into());
        object_labels.insert(format!("pod-security.kubernetes.io/{mode}-version"), "latest".into());
    }
    object_labels.insert(AGENCY_CODE_LABEL.into(), tenant.spec.agency.code.clone());
    object_labels.insert(AGENCY_LEVEL_LABEL.into(), tenant.spec.agency.level.as_str().into());
    object_labels.insert(SUSPENDED_LABEL.into(), tenant.spec.suspended.to_string());
    object_labels.insert(ALLOW_NODE_PORTS_LABEL.into(), tenant.spec.exposure.node_ports.to_string());
    object_labels.insert(ALLOW_LOAD_BALANCERS_LABEL.into(), tenant.spec.exposure.load_balancers.to_string());
    metadata.annotations = Some(BTreeMap::from([
        (DOMAIN_ANNOTATION.into(), domain.into()),
        (AGENCY_NAME_ANNOTATION.into(), tenant.spec.agency.display_name.clone()),
    ]));
    Namespace { metadata, ..Default::default() }
}

fn resource_quota(
    tenant: &Tenant,
    owner: &OwnerReference,
    namespace: &str,
    share: &QuotaVector,
    tenant_hard: Option<&QuotaVector>,
) -> ResourceQuota {
    let mut hard = share.to_resource_quota_hard();
    if tenant.spec.suspended {
        // A suspended tenant starts no Pods: the API server refuses them, whoever asks.
        hard.insert("pods".into(), Quantity("0".into()));
    }
    let mut metadata = meta(tenant, owner, RESOURCE_QUOTA, Some(namespace));
    if let Some(granted) = tenant_hard {
        let granted = serde_json::to_string(&granted.to_status()).expect("quantities serialise");
        metadata.annotations = Some(BTreeMap::from([(GRANTED_QUOTA_ANNOTATION.to_owned(), granted)]));
    }
    ResourceQuota {
        metadata,
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
        ..Default::default()
    }
}

fn limit_range(tenant: &Tenant, owner: &OwnerReference, namespace: &str, inputs: &Inputs) -> LimitRange {
    let resources = |r: &ComputeResources| {
        BTreeMap::from([("cpu".to_owned(), r.cpu.clone()), ("memory".to_owned(), r.memory.clone())])
    };
    LimitRange {
        metadata: meta(tenant, owner, LIMIT_RANGE, Some(namespace)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(resources(&inputs.default_requests)),
                default: Some(resources(&inputs.default_limits)),
                ..Default::default()
            }],
        }),
    }
}

fn network_policies(tenant: &Tenant, owner: &OwnerReference, namespace: &str, inputs: &Inputs) -> Vec<NetworkPolicy> {
    let policy = |name: &str, types: &[&str], ingress: Option<Vec<NetworkPolicyIngressRule>>, egress| NetworkPolicy {
        metadata: meta(tenant, owner, name, Some(namespace)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
            ingress,
            egress,
        }),
    };
    let namespace_named = |name: &str| selector(NAMESPACE_NAME_LABEL, name);
    let tenant_peer = NetworkPolicyPeer {
        namespace_selector: Some(selector(TENANT_LABEL, &tenant.name_any())),
        ..Default::default()
    };
    let gateway_peer = NetworkPolicyPeer {
        namespace_selector: Some(namespace_named(&inputs.gateway_namespace)),
        pod_selector: Some(selector(GATEWAY_POD_LABEL.0, GATEWAY_POD_LABEL.1)),
        ..Default::default()
    };
    let dns_ports = ["UDP", "TCP"]
        .into_iter()
        .map(|protocol| NetworkPolicyPort {
            protocol: Some(protocol.into()),
            port: Some(IntOrString::Int(53)),
            ..Default::default()
        })
        .collect();
    vec![
        // Everything not allowed below is denied, both ways.
        policy("govpaas-default-deny", &["Ingress", "Egress"], None, None),
        policy(
            "govpaas-allow-dns",
            &["Egress"],
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_named(DNS_NAMESPACE)),
                    pod_selector: Some(selector(DNS_POD_LABEL.0, DNS_POD_LABEL.1)),
                    ..Default::default()
                }]),
                ports: Some(dns_ports),
            }]),
        ),
        policy(
            "govpaas-allow-tenant",
            &["Ingress", "Egress"],
            Some(vec![NetworkPolicyIngressRule { from: Some(vec![tenant_peer.clone()]), ports: None }]),
            Some(vec![NetworkPolicyEgressRule { to: Some(vec![tenant_peer]), ports: None }]),
        ),
        policy(
            "govpaas-allow-ingress-controller",
            &["Ingress"],
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_named(&inputs.ingress_namespace)),
                    ..Default::default()
                }]),
                ports: None,
            }]),
            None,
        ),
        // The agency's systems may call the LGSP gateway (as consumers). The gateway may reach only
        // the Pods behind the APIs the agency provides: the DataSharingService controller admits it
        // there, API by API (least privilege: nothing else of the agency is reachable from it).
        policy(
            "govpaas-allow-lgsp-gateway",
            &["Egress"],
            None,
            Some(vec![NetworkPolicyEgressRule { to: Some(vec![gateway_peer]), ports: None }]),
        ),
    ]
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector { match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])), ..Default::default() }
}

/// The admins as RBAC subjects, users first, each list in its given order.
fn subjects(tenant: &Tenant) -> Vec<Subject> {
    let admins = &tenant.spec.admins;
    let users = admins.users.iter().map(|user| Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: user.clone(),
        namespace: None,
    });
    let groups = admins.groups.iter().map(|group| Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Group".into(),
        name: group.clone(),
        namespace: None,
    });
    users.chain(groups).collect()
}

#[cfg(test)]
mod tests {
    use govpaas_crds::quota::{Resource, split_namespaces};

    use super::*;
    use crate::tenant::fixtures;

    fn inputs_for(tenant: &Tenant, own: &QuotaVector) -> Inputs {
        let platform = fixtures::platform();
        Inputs {
            domain: tenant.domain(&platform.spec.base_domain),
            namespaces: split_namespaces(tenant, own).unwrap(),
            ingress_namespace: platform.spec.ingress_namespace.clone().unwrap(),
            gateway_namespace: "govpaas-system".into(),
            default_requests: platform.spec.sizes.small.requests.clone(),
            default_limits: platform.spec.sizes.small.limits.clone(),
            trust_bundle: None,
            tenant_ca: None,
            quota_hard: None,
        }
    }

    #[test]
    fn each_resource_quota_records_the_whole_quota_it_was_written_for() {
        let so_noi_vu = tenant("so-noi-vu");
        let own = QuotaVector::of_tenant(&so_noi_vu.spec.quota).unwrap();
        let owner = owner_reference(&so_noi_vu).unwrap();
        let mut inputs = inputs_for(&so_noi_vu, &own);
        inputs.quota_hard = Some(own);
        let objects = build(&so_noi_vu, &owner, &inputs);
        for quota in &objects.resource_quotas {
            let recorded = &quota.annotations()[GRANTED_QUOTA_ANNOTATION];
            let map: BTreeMap<String, Quantity> = serde_json::from_str(recorded).unwrap();
            assert_eq!(QuotaVector::from_status(&map).unwrap(), own);
        }
        assert!(!objects.resource_quotas.is_empty());
    }

    fn tenant(name: &str) -> Tenant {
        fixtures::province().into_iter().find(|t| t.name_any() == name).unwrap()
    }

    #[test]
    fn a_department_gets_its_namespace_fenced_and_bound() {
        let so_noi_vu = tenant("so-noi-vu");
        let own = QuotaVector::of_tenant(&so_noi_vu.spec.quota).unwrap();
        let owner = owner_reference(&so_noi_vu).unwrap();
        let objects = build(&so_noi_vu, &owner, &inputs_for(&so_noi_vu, &own));

        let expected: TenantObjects = fixtures::objects("so-noi-vu.objects.yaml");
        assert_eq!(objects, expected, "\n{}", serde_yaml::to_string(&objects.namespaces).unwrap());
    }

    #[test]
    fn every_object_is_owned_and_labelled_for_pruning() {
        let so_y_te = tenant("so-y-te");
        let own = QuotaVector::of_tenant(&so_y_te.spec.quota).unwrap();
        let owner = owner_reference(&so_y_te).unwrap();
        let objects = build(&so_y_te, &owner, &inputs_for(&so_y_te, &own));
        let metas = objects
            .namespaces
            .iter()
            .map(|o| &o.metadata)
            .chain(objects.resource_quotas.iter().map(|o| &o.metadata))
            .chain(objects.limit_ranges.iter().map(|o| &o.metadata))
            .chain(objects.network_policies.iter().map(|o| &o.metadata))
            .chain(objects.role_bindings.iter().map(|o| &o.metadata))
            .chain(objects.cluster_roles.iter().map(|o| &o.metadata))
            .chain(objects.cluster_role_bindings.iter().map(|o| &o.metadata));
        let mut count = 0;
        for meta in metas {
            count += 1;
            assert!(labels::is_owned_by(meta.labels.as_ref().unwrap(), COMPONENT, "so-y-te"), "{:?}", meta.name);
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "0b1c5a52-0000-4000-8000-000000000003");
        }
        // Two namespaces × (namespace, quota, limit range, 5 policies, binding) + reader role and binding.
        assert_eq!(count, 2 * 9 + 2);
        let names: Vec<_> = objects.namespaces.iter().map(|n| n.name_any()).collect();
        assert_eq!(names, ["so-y-te-web", "so-y-te-data"]);
        let data_pods = &objects.resource_quotas[1].spec.as_ref().unwrap().hard.as_ref().unwrap()["pods"];
        assert_eq!(data_pods, &Quantity("10".into()));
    }

    #[test]
    fn a_suspended_tenant_gets_no_pods() {
        let unit = tenant("benh-vien-da-khoa");
        let own = QuotaVector::of_tenant(&unit.spec.quota).unwrap();
        assert_eq!(own.get(Resource::Pods).to_string(), "20");
        let owner = owner_reference(&unit).unwrap();
        let objects = build(&unit, &owner, &inputs_for(&unit, &own));
        let hard = objects.resource_quotas[0].spec.as_ref().unwrap().hard.as_ref().unwrap();
        assert_eq!(hard["pods"], Quantity("0".into()));
        assert_eq!(hard["requests.cpu"], Quantity("4".into()));
        assert_eq!(objects.namespaces[0].labels()[SUSPENDED_LABEL], "true");
    }

    #[test]
    fn every_namespace_gets_the_trust_bundle() {
        let so_y_te = tenant("so-y-te");
        let own = QuotaVector::of_tenant(&so_y_te.spec.quota).unwrap();
        let owner = owner_reference(&so_y_te).unwrap();
        let expected: Vec<ConfigMap> = fixtures::documents("trust-bundle.yaml", "ConfigMap");
        let bundle = expected[0].data.as_ref().unwrap()[TRUST_BUNDLE_KEY].clone();
        let inputs = Inputs { trust_bundle: Some(bundle.clone()), ..inputs_for(&so_y_te, &own) };
        let objects = build(&so_y_te, &owner, &inputs);
        assert_eq!(objects.config_maps, expected, "\n{}", serde_yaml::to_string(&objects.config_maps).unwrap());
        // The fixture's bundle is a rotation's: two CAs, both usable as trust anchors, oldest first.
        let anchors = govpaas_pki::TrustAnchors::from_pem(bundle.as_bytes()).unwrap();
        assert_eq!(anchors.certificates().len(), 2);

        // The tenant's intermediate goes beside the anchors, never among them.
        let with_ca = Inputs { tenant_ca: Some("-----BEGIN CERTIFICATE-----\n…\n".into()), ..inputs.clone() };
        let objects = build(&so_y_te, &owner, &with_ca);
        let data = objects.config_maps[0].data.as_ref().unwrap();
        assert_eq!(data[TRUST_BUNDLE_KEY], bundle);
        assert!(data[TENANT_CA_KEY].starts_with("-----BEGIN CERTIFICATE-----"));

        // Without a readable platform CA no bundle is written (and none is pruned: see reconcile).
        let objects = build(&so_y_te, &owner, &inputs_for(&so_y_te, &own));
        assert!(objects.config_maps.is_empty());
    }

    #[test]
    fn no_admins_no_bindings() {
        let commune = tenant("xa-dai-loc");
        let own = QuotaVector::of_tenant(&commune.spec.quota).unwrap();
        let owner = owner_reference(&commune).unwrap();
        let objects = build(&commune, &owner, &inputs_for(&commune, &own));
        assert!(objects.role_bindings.is_empty());
        assert!(objects.cluster_roles.is_empty());
        assert!(objects.cluster_role_bindings.is_empty());
        assert_eq!(objects.network_policies.len(), 5);
    }
}

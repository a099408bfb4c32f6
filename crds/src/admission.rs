//! ValidatingAdmissionPolicies: the rules that need more than the object itself but no more than
//! the API server already has — the namespace's govpaas labels and annotations
//! (`namespaceObject`), which the tenant controller writes, and what of the Platform they need,
//! which the operator copies into the ConfigMap [`PARAMS_CONFIG_MAP`] (the policies' parameter).
//!
//! Why a ConfigMap and not the Platform itself: a policy whose `paramKind` is a custom resource
//! fails closed ("failed to find resource referenced by paramKind") when the API server compiles it
//! before it has discovered the CRD — after every API server restart — and stays so until the policy
//! changes (kubernetes/kubernetes#122658, #124237): every agency Pod would be refused. A built-in
//! kind is always known.
//!
//! They run inside the API server, so they hold while the operator is down. Most match govpaas
//! kinds only. The tenant fence ([`TENANT_SERVICES_POLICY`], [`TENANT_VOLUME_CLAIMS_POLICY`])
//! matches core objects, but only in namespaces carrying the tenant label (a `namespaceSelector`
//! in the policy itself, so no binding can widen it): nothing outside a tenant ever waits on it,
//! and nothing in the cluster depends on govpaas being up.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
    Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

use crate::{
    GROUP,
    metadata::{
        AGENCY_CODE_LABEL, ALLOW_LOAD_BALANCERS_LABEL, ALLOW_NODE_PORTS_LABEL, DOMAIN_ANNOTATION, SUSPENDED_LABEL,
        TENANT_LABEL,
    },
};

/// The ConfigMap (in the operator's namespace) the parameterised policies read: what of the Platform
/// they need, written by the operator's platform-trust controller ([`params_config_map`]).
pub const PARAMS_CONFIG_MAP: &str = "govpaas-admission-params";
/// Its key holding `Platform spec.baseDomain`.
pub const BASE_DOMAIN_KEY: &str = "baseDomain";
/// Its key holding `Platform spec.workloadNodes.tolerations`, one per line as
/// `key|operator|value|effect` (an unset field empty).
pub const WORKLOAD_TOLERATIONS_KEY: &str = "workloadTolerations";
/// Stands for the release namespace (where [`PARAMS_CONFIG_MAP`] is) in the generated bindings; the
/// chart's template puts `{{ .Release.Namespace }}` there.
pub const RELEASE_NAMESPACE_PLACEHOLDER: &str = "GOVPAAS_RELEASE_NAMESPACE";

/// The parameter ConfigMap for `platform`, in the operator's `namespace`. A toleration with a field
/// holding `|` or a line break cannot be written unambiguously: it is left out (the policy then
/// allows less, never more).
pub fn params_config_map(
    platform: &crate::platform::PlatformSpec,
    namespace: &str,
) -> k8s_openapi::api::core::v1::ConfigMap {
    let line = |t: &crate::platform::NodeToleration| {
        let operator = t.operator.map(|o| match o {
            crate::platform::TolerationOperator::Exists => "Exists",
            crate::platform::TolerationOperator::Equal => "Equal",
        });
        let effect = t.effect.map(|e| match e {
            crate::platform::TaintEffect::NoSchedule => "NoSchedule",
            crate::platform::TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            crate::platform::TaintEffect::NoExecute => "NoExecute",
        });
        let fields = [t.key.as_deref(), operator, t.value.as_deref(), effect].map(Option::unwrap_or_default);
        fields.iter().all(|f| !f.contains(['|', '\n', '\r'])).then(|| fields.join("|"))
    };
    let tolerations: Vec<String> =
        platform.workload_nodes.iter().flat_map(|pool| &pool.tolerations).filter_map(line).collect();
    k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta {
            name: Some(PARAMS_CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            labels: Some(
                [
                    ("app.kubernetes.io/managed-by".to_owned(), "govpaas-operator".to_owned()),
                    ("app.kubernetes.io/component".to_owned(), "admission-params".to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            [
                (BASE_DOMAIN_KEY.to_owned(), platform.base_domain.clone()),
                (WORKLOAD_TOLERATIONS_KEY.to_owned(), tolerations.join("\n")),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// The parameter kind of the parameterised policies.
fn params_kind() -> ParamKind {
    ParamKind { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }
}

/// The policy that keeps services in tenant namespaces and refuses new ones while suspended.
pub const TENANT_NAMESPACE_POLICY: &str = "govpaas-tenant-namespace";
/// The policy that keeps a Portal's hosts under its tenant's domain.
pub const PORTAL_HOSTS_POLICY: &str = "govpaas-portal-hosts";
/// The policy that keeps a DocumentService's host under its tenant's domain.
pub const DOCUMENT_SERVICE_HOST_POLICY: &str = "govpaas-document-service-host";
/// The policy that stops a DataSharingService consuming an API it provides itself.
pub const NO_SELF_CONSUMPTION_POLICY: &str = "govpaas-data-sharing-no-self-consumption";
/// The policy that keeps a Tenant's domain under the Platform's base domain.
pub const TENANT_DOMAIN_POLICY: &str = "govpaas-tenant-domain";

/// The policy that keeps an agency's Services inside the cluster network (no NodePort or
/// LoadBalancer unless its Tenant allows them, never `externalIPs`).
pub const TENANT_SERVICES_POLICY: &str = "govpaas-tenant-services";
/// The policy that stops a claim in a tenant namespace from choosing its volume (`volumeName`, a
/// selector, a data source in another namespace): only the volume controller binds, so no agency
/// can mount another agency's retained documents.
pub const TENANT_VOLUME_CLAIMS_POLICY: &str = "govpaas-tenant-volume-claims";

/// The policies that keep an agency's Pods, and the Pod templates of its workloads, on the nodes
/// the platform gives agencies: no `nodeName` (it skips the scheduler and every taint), and only
/// the tolerations the Platform's `spec.workloadNodes` lists (plus the API server's own defaults),
/// so no agency schedules onto control-plane nodes, the real node of another pool, or every node
/// at once with a key-less `Exists`. Three policies, one per place a Pod spec lives.
pub const TENANT_POD_PLACEMENT_POLICY: &str = "govpaas-tenant-pod-placement";
/// Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs: `spec.template.spec`.
pub const TENANT_WORKLOAD_PLACEMENT_POLICY: &str = "govpaas-tenant-workload-placement";
/// CronJobs: `spec.jobTemplate.spec.template.spec`.
pub const TENANT_CRONJOB_PLACEMENT_POLICY: &str = "govpaas-tenant-cronjob-placement";

/// Tolerations every Pod may carry: those the API server's `DefaultTolerationSeconds` admission
/// plugin adds (evict after 5 minutes on a node that is not ready or unreachable).
pub const DEFAULT_TOLERATIONS: &[&str] = &["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];

/// The policy that keeps the objects govpaas writes in a tenant namespace (its NetworkPolicies and
/// RoleBindings, whose rights agency admins otherwise hold for their own) the operator's, and keeps
/// an agency's own RoleBindings from granting its namespace to system groups or foreign accounts.
pub const TENANT_OBJECTS_POLICY: &str = "govpaas-tenant-objects";

/// Stands for the operator's user name in the generated tenant-objects policy; the chart's
/// template puts `system:serviceaccount:<release namespace>:<operator ServiceAccount>` there.
pub const OPERATOR_USER_PLACEHOLDER: &str = "GOVPAAS_OPERATOR_USER";

/// Users that act for Kubernetes itself in a tenant namespace and may delete what govpaas wrote:
/// the garbage collector and the namespace controller (their own identities, or their
/// ServiceAccounts in kube-system with `--use-service-account-credentials`).
const KUBERNETES_CONTROLLERS: &str = "request.userInfo.username == 'system:kube-controller-manager' || request.userInfo.username.startsWith('system:serviceaccount:kube-system:')";

/// Who may set a claim's `volumeName`: the PersistentVolume controller of kube-controller-manager,
/// under its own identity or, with `--use-service-account-credentials`, its ServiceAccount.
/// govpaas's own restore path never names a volume on the claim: it pre-binds the volume's
/// `claimRef` to the new claim and the volume controller completes the binding.
pub const VOLUME_BINDERS: &[&str] =
    &["system:kube-controller-manager", "system:serviceaccount:kube-system:persistent-volume-binder"];

/// A CEL expression: the namespace carries the tenant label.
fn in_tenant_namespace() -> String {
    format!("has(namespaceObject.metadata.labels) && '{TENANT_LABEL}' in namespaceObject.metadata.labels")
}

fn rules(resources: &[&str]) -> MatchResources {
    MatchResources {
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![GROUP.into()]),
            api_versions: Some(vec!["*".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn validation(expression: String, message_expression: String, reason: &str) -> Validation {
    Validation {
        expression,
        message_expression: Some(message_expression),
        reason: Some(reason.into()),
        ..Default::default()
    }
}

fn variable(name: &str, expression: String) -> Variable {
    Variable { name: name.into(), expression }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            [
                ("app.kubernetes.io/name".to_owned(), "govpaas".to_owned()),
                ("app.kubernetes.io/component".to_owned(), "api".to_owned()),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn policy(name: &str, spec: ValidatingAdmissionPolicySpec) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(name),
        spec: Some(ValidatingAdmissionPolicySpec { failure_policy: Some("Fail".into()), ..spec }),
        ..Default::default()
    }
}

fn binding(policy: &str, param_ref: Option<ParamRef>) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(policy),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: policy.into(),
            validation_actions: vec!["Deny".into()],
            param_ref,
            ..Default::default()
        },
    }
}

/// Portals, DocumentServices and DataSharingServices live in a namespace the tenant controller
/// provisioned (labelled `govpaas.io/tenant`); a suspended tenant gets no new ones.
fn tenant_namespace() -> ValidatingAdmissionPolicy {
    policy(
        TENANT_NAMESPACE_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["portals", "documentservices", "datasharingservices"])),
            validations: Some(vec![
                validation(
                    in_tenant_namespace(),
                    format!(
                        "'metadata.namespace: namespace ' + namespaceObject.metadata.name + ' belongs to no govpaas Tenant (it has no {TENANT_LABEL} label): a ' + request.kind.kind + ' lives in a namespace its Tenant provisions'"
                    ),
                    "Forbidden",
                ),
                validation(
                    format!(
                        "request.operation != 'CREATE' || !has(namespaceObject.metadata.labels) || !('{SUSPENDED_LABEL}' in namespaceObject.metadata.labels) || namespaceObject.metadata.labels['{SUSPENDED_LABEL}'] != 'true'"
                    ),
                    format!(
                        "'metadata.namespace: tenant ' + namespaceObject.metadata.labels['{TENANT_LABEL}'] + ' is suspended ({SUSPENDED_LABEL}=true): no new ' + request.kind.kind + ' is accepted until the provincial admin resumes it'"
                    ),
                    "Forbidden",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// `variables.inTenant`: the namespace carries the tenant label. (Match conditions cannot see
/// `namespaceObject`, so policies that need the tenant guard their validations with this instead;
/// [`TENANT_NAMESPACE_POLICY`] reports namespaces outside any tenant.)
fn in_tenant_variable() -> Variable {
    variable("inTenant", in_tenant_namespace())
}

fn domain_variable() -> Variable {
    variable(
        "domain",
        format!(
            "has(namespaceObject.metadata.annotations) && '{DOMAIN_ANNOTATION}' in namespaceObject.metadata.annotations ? namespaceObject.metadata.annotations['{DOMAIN_ANNOTATION}'] : ''"
        ),
    )
}

fn domain_known() -> Validation {
    validation(
        "!variables.inTenant || variables.domain != ''".into(),
        format!(
            "'metadata.namespace: namespace ' + namespaceObject.metadata.name + ' has no {DOMAIN_ANNOTATION} annotation yet, so hosts cannot be checked against the tenant domain: the tenant controller writes it once the Tenant is provisioned; try again then'"
        ),
        "Forbidden",
    )
}

/// Every host of a Portal is the tenant's domain or sits under it.
fn portal_hosts() -> ValidatingAdmissionPolicy {
    let under = "h == variables.domain || h.endsWith('.' + variables.domain)";
    policy(
        PORTAL_HOSTS_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["portals"])),
            variables: Some(vec![in_tenant_variable(), domain_variable()]),
            validations: Some(vec![
                domain_known(),
                validation(
                    format!("!variables.inTenant || variables.domain == '' || object.spec.hosts.all(h, {under})"),
                    format!(
                        "'spec.hosts: ' + object.spec.hosts.filter(h, !({under})).join(', ') + ' must be the tenant domain ' + variables.domain + ' or end with .' + variables.domain"
                    ),
                    "Invalid",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// A DocumentService's web host, if any, is the tenant's domain or sits under it.
fn document_service_host() -> ValidatingAdmissionPolicy {
    policy(
        DOCUMENT_SERVICE_HOST_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["documentservices"])),
            match_conditions: Some(vec![MatchCondition {
                name: "has-host".into(),
                expression: "has(object.spec.host)".into(),
            }]),
            variables: Some(vec![in_tenant_variable(), domain_variable()]),
            validations: Some(vec![
                domain_known(),
                validation(
                    "!variables.inTenant || variables.domain == '' || object.spec.host == variables.domain || object.spec.host.endsWith('.' + variables.domain)".into(),
                    "'spec.host: ' + object.spec.host + ' must be the tenant domain ' + variables.domain + ' or end with .' + variables.domain".into(),
                    "Invalid",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// A DataSharingService does not consume, through the gateway, an API it provides itself. Codes
/// are compared normalised ([`crate::agency::normalise_cel`]): the namespace's label and the
/// consumption may each be written in either form.
fn no_self_consumption() -> ValidatingAdmissionPolicy {
    let consumed = crate::agency::normalise_cel("c.agencyCode");
    let own = format!("has(c.agencyCode) && {consumed} == variables.agency && c.api in variables.provided");
    policy(
        NO_SELF_CONSUMPTION_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["datasharingservices"])),
            variables: Some(vec![
                variable(
                    "agencyCode",
                    format!(
                        "{} && '{AGENCY_CODE_LABEL}' in namespaceObject.metadata.labels ? namespaceObject.metadata.labels['{AGENCY_CODE_LABEL}'] : ''",
                        in_tenant_namespace()
                    ),
                ),
                variable("agency", crate::agency::normalise_cel("variables.agencyCode")),
                variable("provided", "has(object.spec.provides) ? object.spec.provides.map(p, p.name) : []".into()),
            ]),
            validations: Some(vec![validation(
                format!(
                    "variables.agencyCode == '' || !has(object.spec.consumes) || !object.spec.consumes.exists(c, {own})"
                ),
                format!(
                    "'spec.consumes: ' + object.spec.consumes.filter(c, {own}).map(c, c.name).join(', ') + ' consumes an API that this DataSharingService provides itself (agency ' + variables.agencyCode + '): call it directly, not through the LGSP'"
                ),
                "Invalid",
            )]),
            ..Default::default()
        },
    )
}

/// A Tenant's explicit domain sits strictly under the Platform's base domain (when the Platform
/// exists). Overlaps between tenants need every Tenant: the tenant controller refuses them.
fn tenant_domain() -> ValidatingAdmissionPolicy {
    policy(
        TENANT_DOMAIN_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["tenants"])),
            param_kind: Some(params_kind()),
            match_conditions: Some(vec![MatchCondition {
                name: "has-domain".into(),
                expression: "has(object.spec.domain)".into(),
            }]),
            // '' until the operator has read a Platform: nothing to check against yet.
            variables: Some(vec![variable(
                "base",
                format!(
                    "params != null && has(params.data) && '{BASE_DOMAIN_KEY}' in params.data ? params.data.{BASE_DOMAIN_KEY} : ''"
                ),
            )]),
            validations: Some(vec![
                validation(
                    "variables.base == '' || object.spec.domain.lowerAscii() != variables.base.lowerAscii()".into(),
                    "'spec.domain: ' + object.spec.domain + ' is the Platform baseDomain itself: a tenant CA for it would cover every other tenant; use a name under it, like ' + object.metadata.name + '.' + variables.base".into(),
                    "Invalid",
                ),
                validation(
                    "variables.base == '' || object.spec.domain.lowerAscii() == variables.base.lowerAscii() || object.spec.domain.lowerAscii().endsWith('.' + variables.base.lowerAscii())".into(),
                    "'spec.domain: ' + object.spec.domain + ' must end with .' + variables.base + ' (the Platform baseDomain)'".into(),
                    "Invalid",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// Core objects of `resources` (API group `""`), only in tenant namespaces.
fn core_rules_in_tenant_namespaces(resources: &[&str]) -> MatchResources {
    MatchResources {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: TENANT_LABEL.into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        }),
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// A CEL expression: the tenant namespace's label `label` is `"true"`.
fn namespace_allows(label: &str) -> String {
    format!(
        "has(namespaceObject.metadata.labels) && '{label}' in namespaceObject.metadata.labels && namespaceObject.metadata.labels['{label}'] == 'true'"
    )
}

/// An agency's Services stay inside the cluster network: public exposure goes through Portals and
/// DocumentServices (the platform's ingress, host fence and TLS). NodePort and LoadBalancer need
/// the Tenant's `spec.exposure`; `externalIPs` (CVE-2020-8554) and ExternalName Services
/// (CVE-2021-25740: a confused ingress controller) are refused always.
fn tenant_services() -> ValidatingAdmissionPolicy {
    let allow = |label: &str, kind: &str, field: &str| {
        validation(
            format!("!has(object.spec.type) || object.spec.type != '{kind}' || {}", namespace_allows(label)),
            format!(
                "'spec.type: a {kind} Service is not allowed in the namespaces of tenant ' + namespaceObject.metadata.labels['{TENANT_LABEL}'] + ': agencies publish through Portals and DocumentServices; the provincial admin may allow it with the Tenant field spec.exposure.{field}'"
            ),
            "Forbidden",
        )
    };
    policy(
        TENANT_SERVICES_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(core_rules_in_tenant_namespaces(&["services"])),
            validations: Some(vec![
                allow(ALLOW_NODE_PORTS_LABEL, "NodePort", "nodePorts"),
                allow(ALLOW_LOAD_BALANCERS_LABEL, "LoadBalancer", "loadBalancers"),
                validation(
                    "!has(object.spec.type) || object.spec.type != 'ExternalName'".into(),
                    "'spec.type: an ExternalName Service is not allowed in a tenant namespace: it would let the ingress controller or the gateway be pointed at any name, the Services of other agencies included (CVE-2021-25740); call external systems by their own DNS name'".into(),
                    "Forbidden",
                ),
                validation(
                    "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0".into(),
                    "'spec.externalIPs: not allowed in a tenant namespace: a Service with external IPs can intercept the traffic of the cluster to those addresses (CVE-2020-8554)'".into(),
                    "Forbidden",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// A claim in a tenant namespace never chooses its volume: only the volume controller binds (a
/// new volume from the StorageClass, or the retained one govpaas pre-bound for a restore).
/// Otherwise an agency could bind another agency's retained document volume by name or by label.
fn tenant_volume_claims() -> ValidatingAdmissionPolicy {
    let binders = VOLUME_BINDERS.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ");
    let volume_name = |o: &str| format!("(has({o}.spec.volumeName) ? {o}.spec.volumeName : '')");
    policy(
        TENANT_VOLUME_CLAIMS_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(core_rules_in_tenant_namespaces(&["persistentvolumeclaims"])),
            match_conditions: Some(vec![MatchCondition {
                name: "not-the-volume-controller".into(),
                expression: format!("!(request.userInfo.username in [{binders}])"),
            }]),
            validations: Some(vec![
                validation(
                    format!(
                        "request.operation == 'CREATE' ? {new} == '' : {new} == {old}",
                        new = volume_name("object"),
                        old = volume_name("oldObject")
                    ),
                    "'spec.volumeName: a claim in a tenant namespace may not name its PersistentVolume (' + object.spec.volumeName + '): the volume controller binds it; to take over a retained document volume, create the DocumentService with the govpaas.io/restore-from-volume annotation'".into(),
                    "Forbidden",
                ),
                validation(
                    "request.operation != 'CREATE' || !has(object.spec.selector)".into(),
                    "'spec.selector: a claim in a tenant namespace may not select existing PersistentVolumes by label: the volume controller provisions its volume from the StorageClass'".into(),
                    "Forbidden",
                ),
                validation(
                    "!has(object.spec.dataSourceRef) || !has(object.spec.dataSourceRef.namespace) || object.spec.dataSourceRef.namespace == '' || object.spec.dataSourceRef.namespace == namespaceObject.metadata.name".into(),
                    "'spec.dataSourceRef.namespace: a claim in a tenant namespace may not copy data from another namespace (' + object.spec.dataSourceRef.namespace + ')'".into(),
                    "Forbidden",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// A placement policy for the Pod spec at `path` (a CEL path from `object`) of the objects `rules`
/// match, the Platform as its parameter.
fn placement(name: &str, rules: MatchResources, path: &str) -> ValidatingAdmissionPolicy {
    let defaults = DEFAULT_TOLERATIONS.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
    let text = |o: &str, field: &str| format!("(has({o}.{field}) ? {o}.{field} : '')");
    // A Pod's toleration is allowed when it is a default one, or no wider than one the Platform
    // lists: the same key, the Platform's `Exists` or the same value, and the same effect unless
    // the Platform's covers every effect.
    // What an update leaves as it was stays allowed (a Pod's labels changed, a Platform that lists
    // fewer tolerations now): only what is added is checked.
    let allowed = format!(
        "t in variables.oldTolerations || ({key} in [{defaults}] && {effect} == 'NoExecute') || variables.allowed.exists(p, {pkey} == {key} && ({pop} == 'Exists' || ({op} != 'Exists' && {pvalue} == {value})) && ({peffect} == '' || {peffect} == {effect}))",
        key = text("t", "key"),
        effect = text("t", "effect"),
        op = text("t", "operator"),
        value = text("t", "value"),
        pkey = "p[0]",
        pop = "p[1]",
        pvalue = "p[2]",
        peffect = "p[3]",
    );
    let describe = |[key, op, value, effect]: [String; 4]| {
        format!("{key} + ({op} == 'Exists' ? ' (Exists)' : '=' + {value}) + ({effect} == '' ? '' : ':' + {effect})")
    };
    let toleration_fields = |o: &str| ["key", "operator", "value", "effect"].map(|field| text(o, field));
    let listed_fields = ["p[0]", "p[1]", "p[2]", "p[3]"].map(String::from);
    policy(
        name,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules),
            param_kind: Some(params_kind()),
            variables: Some(vec![
                variable("pod", format!("object.{path}")),
                variable(
                    "oldNodeName",
                    format!("request.operation == 'UPDATE' && has(oldObject.{path}.nodeName) ? oldObject.{path}.nodeName : ''"),
                ),
                variable(
                    "oldTolerations",
                    format!("request.operation == 'UPDATE' && has(oldObject.{path}.tolerations) ? oldObject.{path}.tolerations : []"),
                ),
                // The Platform's tolerations as [key, operator, value, effect] lists.
                variable(
                    "allowed",
                    format!(
                        "params != null && has(params.data) && '{WORKLOAD_TOLERATIONS_KEY}' in params.data ? params.data.{WORKLOAD_TOLERATIONS_KEY}.split('\\n').filter(l, l != '').map(l, l.split('|')).filter(p, size(p) == 4) : []"
                    ),
                ),
            ]),
            validations: Some(vec![
                validation(
                    "!has(variables.pod.nodeName) || variables.pod.nodeName == '' || variables.pod.nodeName == variables.oldNodeName".into(),
                    format!(
                        "'{path}.nodeName: a Pod of an agency may not name its node (' + variables.pod.nodeName + '): it would skip the scheduler and every taint; the scheduler places it on the nodes the Platform gives agencies'"
                    ),
                    "Forbidden",
                ),
                validation(
                    format!("!has(variables.pod.tolerations) || variables.pod.tolerations.all(t, {allowed})"),
                    format!(
                        "'{path}.tolerations: an agency may tolerate only the taints of the nodes the Platform gives agencies (spec.workloadNodes.tolerations: ' + (size(variables.allowed) == 0 ? 'none' : variables.allowed.map(p, {}).join(', ')) + '); refused: ' + variables.pod.tolerations.filter(t, !({allowed})).map(t, {}).join(', ')",
                        describe(listed_fields),
                        describe(toleration_fields("t"))
                    ),
                    "Forbidden",
                ),
            ]),
            ..Default::default()
        },
    )
}

/// Bare Pods in tenant namespaces (the Pods the workloads' controllers create included).
fn tenant_pod_placement() -> ValidatingAdmissionPolicy {
    placement(TENANT_POD_PLACEMENT_POLICY, core_rules_in_tenant_namespaces(&["pods"]), "spec")
}

/// The Pod templates of an agency's workloads: refused where they are written, not only when
/// their controller's Pods are.
fn tenant_workload_placement() -> ValidatingAdmissionPolicy {
    let mut rules = rules_in_tenant_namespaces("apps", &["deployments", "statefulsets", "daemonsets", "replicasets"]);
    let jobs = rules_in_tenant_namespaces("batch", &["jobs"]);
    rules.resource_rules.get_or_insert_with(Vec::new).extend(jobs.resource_rules.into_iter().flatten());
    for rule in rules.resource_rules.iter_mut().flatten() {
        rule.operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
    }
    placement(TENANT_WORKLOAD_PLACEMENT_POLICY, rules, "spec.template.spec")
}

fn tenant_cronjob_placement() -> ValidatingAdmissionPolicy {
    let mut rules = rules_in_tenant_namespaces("batch", &["cronjobs"]);
    for rule in rules.resource_rules.iter_mut().flatten() {
        rule.operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
    }
    placement(TENANT_CRONJOB_PLACEMENT_POLICY, rules, "spec.jobTemplate.spec.template.spec")
}

/// Objects of `resources` in API group `group`, only in tenant namespaces, on every write.
fn rules_in_tenant_namespaces(group: &str, resources: &[&str]) -> MatchResources {
    let mut rules = core_rules_in_tenant_namespaces(resources);
    for rule in rules.resource_rules.iter_mut().flatten() {
        rule.api_groups = Some(vec![group.into()]);
        rule.api_versions = Some(vec!["*".into()]);
        rule.operations = Some(vec!["CREATE".into(), "UPDATE".into(), "DELETE".into()]);
    }
    rules
}

/// Agency admins manage their own Roles, RoleBindings and NetworkPolicies (the multi-tenancy
/// benchmark's self-service), but not govpaas's: an object named `govpaas-…` or labelled
/// `app.kubernetes.io/managed-by: govpaas-operator` is written by the operator only (and removed by
/// Kubernetes' own controllers). A RoleBinding of the agency never grants its namespace to a system
/// identity (`system:authenticated`, `system:anonymous`, …) or to another namespace's
/// ServiceAccount: one line would open the agency to every user of the cluster.
///
/// Cluster admins (`system:masters`) are spared too: they may repair or debug by hand, and the
/// operator takes back whatever they change. Agency admins can never be among them.
///
/// `operator_user` is the operator's user name ([`OPERATOR_USER_PLACEHOLDER`] when generated for
/// the chart, which templates it).
pub fn tenant_objects(operator_user: &str) -> ValidatingAdmissionPolicy {
    let govpaas_owned = |o: &str| {
        format!(
            "({o}.metadata.name.startsWith('govpaas-') || (has({o}.metadata.labels) && 'app.kubernetes.io/managed-by' in {o}.metadata.labels && {o}.metadata.labels['app.kubernetes.io/managed-by'] == 'govpaas-operator'))"
        )
    };
    let subject_ok = "s.kind == 'ServiceAccount' ? (!has(s.namespace) || s.namespace == '' || s.namespace == namespaceObject.metadata.name) : !s.name.startsWith('system:')";
    let mut policy = policy(
        TENANT_OBJECTS_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules_in_tenant_namespaces("networking.k8s.io", &["networkpolicies"])),
            match_conditions: Some(vec![MatchCondition {
                name: "not-govpaas-or-kubernetes".into(),
                expression: format!(
                    "!(request.userInfo.username == '{operator_user}' || {KUBERNETES_CONTROLLERS} || 'system:masters' in request.userInfo.groups)"
                ),
            }]),
            variables: Some(vec![
                variable("touched", "request.operation == 'DELETE' ? oldObject : object".into()),
                variable(
                    "wasGovpaas",
                    format!("request.operation != 'CREATE' && {}", govpaas_owned("oldObject")),
                ),
                variable(
                    "becomesGovpaas",
                    format!("request.operation != 'DELETE' && {}", govpaas_owned("object")),
                ),
            ]),
            validations: Some(vec![
                validation(
                    "!variables.wasGovpaas && !variables.becomesGovpaas".into(),
                    "request.kind.kind + ' ' + variables.touched.metadata.name + ': the objects govpaas writes in a tenant namespace (named govpaas-..., or labelled app.kubernetes.io/managed-by=govpaas-operator) belong to the operator; create your own under another name and without that label'".into(),
                    "Forbidden",
                ),
                validation(
                    format!(
                        "request.kind.kind != 'RoleBinding' || request.operation == 'DELETE' || !has(object.subjects) || object.subjects.all(s, {subject_ok})"
                    ),
                    "'subjects: a RoleBinding in a tenant namespace may not grant it to a system identity (system:...) or to a ServiceAccount of another namespace; name users, groups or ServiceAccounts of the agency itself'".into(),
                    "Forbidden",
                ),
            ]),
            ..Default::default()
        },
    );
    let spec = policy.spec.as_mut().expect("the policy has a spec");
    let constraints = spec.match_constraints.as_mut().expect("match constraints");
    let rbac = rules_in_tenant_namespaces("rbac.authorization.k8s.io", &["roles", "rolebindings"]);
    constraints.resource_rules.get_or_insert_with(Vec::new).extend(rbac.resource_rules.into_iter().flatten());
    policy
}

/// Every policy govpaas ships.
pub fn policies() -> Vec<ValidatingAdmissionPolicy> {
    vec![
        tenant_namespace(),
        portal_hosts(),
        document_service_host(),
        no_self_consumption(),
        tenant_domain(),
        tenant_services(),
        tenant_volume_claims(),
        tenant_pod_placement(),
        tenant_workload_placement(),
        tenant_cronjob_placement(),
    ]
}

/// The binding of a policy that needs no parameter, denying what it rejects.
pub fn binding_for(policy: &str) -> ValidatingAdmissionPolicyBinding {
    binding(policy, None)
}

/// One binding per policy, denying what it rejects.
pub fn bindings() -> Vec<ValidatingAdmissionPolicyBinding> {
    policies()
        .iter()
        .map(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let with_platform = [
                TENANT_DOMAIN_POLICY,
                TENANT_POD_PLACEMENT_POLICY,
                TENANT_WORKLOAD_PLACEMENT_POLICY,
                TENANT_CRONJOB_PLACEMENT_POLICY,
            ];
            let param_ref = with_platform.contains(&name).then(|| ParamRef {
                name: Some(PARAMS_CONFIG_MAP.into()),
                namespace: Some(RELEASE_NAMESPACE_PLACEHOLDER.into()),
                // Before the operator has read a Platform there is no base domain to check a
                // Tenant against (the tenant controller checks it too); but an agency Pod — there are
                // none before the operator has run — is refused rather than placed anywhere.
                parameter_not_found_action: Some(if name == TENANT_DOMAIN_POLICY { "Allow" } else { "Deny" }.into()),
                ..Default::default()
            });
            binding(name, param_ref)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_carries_the_base_domain_and_one_toleration_a_line() {
        use crate::platform::{NodePool, NodeToleration, TaintEffect, TolerationOperator};
        let mut platform: crate::platform::PlatformSpec =
            serde_json::from_value(serde_json::json!({"baseDomain": "danang.gov.vn"})).unwrap();
        let empty = params_config_map(&platform, "govpaas-system");
        let data = empty.data.unwrap();
        assert_eq!((data[BASE_DOMAIN_KEY].as_str(), data[WORKLOAD_TOLERATIONS_KEY].as_str()), ("danang.gov.vn", ""));
        assert_eq!(empty.metadata.namespace.as_deref(), Some("govpaas-system"));
        platform.workload_nodes = Some(NodePool {
            tolerations: vec![
                NodeToleration {
                    key: Some("govpaas.io/agencies".into()),
                    operator: Some(TolerationOperator::Exists),
                    value: None,
                    effect: Some(TaintEffect::NoSchedule),
                },
                NodeToleration { key: Some("zone".into()), operator: None, value: Some("a".into()), effect: None },
                // Would read as more fields than it has: left out, so the policy allows less.
                NodeToleration { key: Some("x".into()), operator: None, value: Some("a|Exists".into()), effect: None },
            ],
            ..Default::default()
        });
        let data = params_config_map(&platform, "govpaas-system").data.unwrap();
        assert_eq!(data[WORKLOAD_TOLERATIONS_KEY], "govpaas.io/agencies|Exists||NoSchedule\nzone||a|");
    }

    #[test]
    fn parameterised_policies_read_a_built_in_kind() {
        // A custom-resource parameter fails closed after an API server restart (kubernetes#124237).
        for policy in policies() {
            if let Some(kind) = policy.spec.as_ref().and_then(|s| s.param_kind.as_ref()) {
                assert_eq!((kind.api_version.as_deref(), kind.kind.as_deref()), (Some("v1"), Some("ConfigMap")));
            }
        }
        let bound: Vec<_> = bindings().into_iter().filter_map(|b| b.spec.param_ref).collect();
        assert_eq!(bound.len(), 4);
        for param in bound {
            assert_eq!(param.name.as_deref(), Some(PARAMS_CONFIG_MAP));
            assert_eq!(param.namespace.as_deref(), Some(RELEASE_NAMESPACE_PLACEHOLDER));
        }
    }

    #[test]
    fn every_policy_has_a_binding_and_fails_closed() {
        let policies = policies();
        let bindings = bindings();
        assert_eq!(policies.len(), bindings.len());
        for (policy, binding) in policies.iter().zip(&bindings) {
            let spec = policy.spec.as_ref().unwrap();
            assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
            assert_eq!(Some(&binding.spec.policy_name), policy.metadata.name.as_ref());
            assert_eq!(binding.spec.validation_actions, ["Deny"]);
            for validation in spec.validations.as_ref().unwrap() {
                assert!(validation.message_expression.is_some());
                assert!(validation.reason.is_some());
            }
        }
    }

    #[test]
    fn the_tenant_objects_policy_spares_the_operator_and_kubernetes_and_matches_tenant_namespaces_only() {
        let policy = tenant_objects("system:serviceaccount:govpaas-system:govpaas-operator");
        let spec = policy.spec.unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let condition = &spec.match_conditions.unwrap()[0].expression;
        assert!(condition.contains("'system:serviceaccount:govpaas-system:govpaas-operator'"), "{condition}");
        assert!(condition.contains("system:serviceaccount:kube-system:"), "{condition}");
        let constraints = spec.match_constraints.unwrap();
        let selector = constraints.namespace_selector.unwrap().match_expressions.unwrap();
        assert_eq!((selector[0].key.as_str(), selector[0].operator.as_str()), (TENANT_LABEL, "Exists"));
        let resources: Vec<String> =
            constraints.resource_rules.unwrap().into_iter().flat_map(|r| r.resources.unwrap()).collect();
        assert_eq!(resources, ["networkpolicies", "roles", "rolebindings"]);
    }

    /// The tenant fence's policies match core objects and workloads in tenant namespaces only;
    /// every other policy matches govpaas kinds only.
    #[test]
    fn policies_match_govpaas_kinds_or_tenant_namespaces_only() {
        for policy in policies() {
            let name = policy.metadata.name.clone().unwrap();
            let constraints = policy.spec.unwrap().match_constraints.unwrap();
            let fence = [
                TENANT_SERVICES_POLICY,
                TENANT_VOLUME_CLAIMS_POLICY,
                TENANT_POD_PLACEMENT_POLICY,
                TENANT_WORKLOAD_PLACEMENT_POLICY,
                TENANT_CRONJOB_PLACEMENT_POLICY,
            ];
            if fence.contains(&name.as_str()) {
                let selector = constraints.namespace_selector.unwrap();
                let requirements = selector.match_expressions.unwrap();
                assert_eq!(requirements.len(), 1, "{name}");
                assert_eq!(requirements[0].key, TENANT_LABEL, "{name}");
                assert_eq!(requirements[0].operator, "Exists", "{name}");
                let allowed = [
                    ("", "services"),
                    ("", "persistentvolumeclaims"),
                    ("", "pods"),
                    ("apps", "deployments"),
                    ("apps", "statefulsets"),
                    ("apps", "daemonsets"),
                    ("apps", "replicasets"),
                    ("batch", "jobs"),
                    ("batch", "cronjobs"),
                ];
                for rule in constraints.resource_rules.unwrap() {
                    let groups = rule.api_groups.unwrap();
                    assert_eq!(groups.len(), 1, "{name}");
                    for resource in rule.resources.unwrap() {
                        assert!(allowed.contains(&(groups[0].as_str(), resource.as_str())), "{name}: {resource}");
                    }
                }
                continue;
            }
            let rules = constraints.resource_rules.unwrap();
            for rule in rules {
                assert_eq!(rule.api_groups.unwrap(), [GROUP]);
                let resources = rule.resources.unwrap();
                assert!(!resources.is_empty());
                for resource in resources {
                    assert!(
                        ["tenants", "portals", "documentservices", "datasharingservices"].contains(&resource.as_str()),
                        "{resource}"
                    );
                }
            }
        }
    }
}

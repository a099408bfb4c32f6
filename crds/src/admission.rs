//! ValidatingAdmissionPolicies: the rules that need more than the object itself but no more than
//! the API server already has — the namespace's govpaas labels and annotations
//! (`namespaceObject`), which the tenant controller writes, and the Platform (a policy parameter).
//!
//! They run inside the API server, so they hold while the operator is down, and they match
//! govpaas kinds only: a core object never waits on them.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
    Variable,
};
use kube::api::ObjectMeta;

use crate::{
    GROUP, VERSION,
    metadata::{AGENCY_CODE_LABEL, DOMAIN_ANNOTATION, SUSPENDED_LABEL, TENANT_LABEL},
    platform::PLATFORM_NAME,
};

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

/// A DataSharingService does not consume, through the gateway, an API it provides itself.
fn no_self_consumption() -> ValidatingAdmissionPolicy {
    let own = "has(c.agencyCode) && c.agencyCode == variables.agencyCode && c.api in variables.provided";
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

/// A Tenant's explicit domain sits under the Platform's base domain (when the Platform exists).
fn tenant_domain() -> ValidatingAdmissionPolicy {
    policy(
        TENANT_DOMAIN_POLICY,
        ValidatingAdmissionPolicySpec {
            match_constraints: Some(rules(&["tenants"])),
            param_kind: Some(ParamKind {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some("Platform".into()),
            }),
            match_conditions: Some(vec![MatchCondition {
                name: "has-domain".into(),
                expression: "has(object.spec.domain)".into(),
            }]),
            validations: Some(vec![validation(
                "params == null || object.spec.domain == params.spec.baseDomain || object.spec.domain.endsWith('.' + params.spec.baseDomain)".into(),
                "'spec.domain: ' + object.spec.domain + ' must be the Platform baseDomain ' + params.spec.baseDomain + ' or end with .' + params.spec.baseDomain".into(),
                "Invalid",
            )]),
            ..Default::default()
        },
    )
}

/// Every policy govpaas ships.
pub fn policies() -> Vec<ValidatingAdmissionPolicy> {
    vec![tenant_namespace(), portal_hosts(), document_service_host(), no_self_consumption(), tenant_domain()]
}

/// One binding per policy, denying what it rejects.
pub fn bindings() -> Vec<ValidatingAdmissionPolicyBinding> {
    policies()
        .iter()
        .map(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let param_ref = (name == TENANT_DOMAIN_POLICY).then(|| ParamRef {
                name: Some(PLATFORM_NAME.into()),
                // Without a Platform there is no base domain to check against yet.
                parameter_not_found_action: Some("Allow".into()),
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
    fn policies_match_govpaas_kinds_only() {
        for policy in policies() {
            let rules = policy.spec.unwrap().match_constraints.unwrap().resource_rules.unwrap();
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

//! A Portal's desired objects, with no client: validation and building are pure functions of the
//! Portal, the Platform, the tenant and the certificate material, unit-tested from the YAML
//! fixtures in `operator/tests/fixtures/portal/`.

use govpaas_crds::Portal;
use govpaas_crds::platform::PlatformSpec;
use govpaas_crds::portal::OnlineServiceMode;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;

use crate::certificates::TlsMaterial;
use crate::error::Result;
use crate::reconcile::Problem;
use crate::tenancy::TenantContext;
use crate::workload::hosts::HostClaim;
use crate::workload::names;
use crate::workload::objects::{self, Owner, Placement, Rollout};
use crate::workload::pod::{self, HTTP_PORT_NAME};
use crate::workload::quota_fit::Usage;

/// The `app.kubernetes.io/component` of a Portal's objects.
pub const COMPONENT: &str = "portal";
/// The suffix of a Portal's Deployment, Service, Ingress and PodDisruptionBudget names.
pub const SUFFIX: &str = "-portal";
/// The port the Service exposes to the ingress controller.
pub const SERVICE_PORT: i32 = 80;

/// The names of a Portal's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, Ingress, PodDisruptionBudget.
    pub workload: String,
    /// The TLS Secret of its hosts.
    pub tls_secret: String,
}

impl Names {
    pub fn of(portal: &Portal) -> Self {
        let workload = names::workload(&portal.name_any(), SUFFIX);
        Names { tls_secret: format!("{workload}-tls"), workload }
    }
}

/// What a Portal is built from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub portal: &'a Portal,
    pub platform: &'a PlatformSpec,
    pub tenant: &'a TenantContext,
}

impl Inputs<'_> {
    /// Pods to run: none while the tenant is suspended.
    pub fn replicas(&self) -> i32 {
        if self.tenant.suspended { 0 } else { self.portal.spec.replicas }
    }

    /// The container image: the Portal's own, or the Platform's default.
    pub fn image(&self) -> &str {
        self.portal.spec.image.as_deref().unwrap_or(&self.platform.images.portal)
    }

    /// The hosts, de-duplicated, in the order given.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::with_capacity(self.portal.spec.hosts.len());
        for host in &self.portal.spec.hosts {
            let host = host.to_ascii_lowercase();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }

    /// `https://<first host>/`.
    pub fn url(&self) -> Option<String> {
        self.hosts().first().map(|host| format!("https://{host}/"))
    }

    /// The Portal's claim on its hosts.
    pub fn host_claim(&self) -> HostClaim {
        HostClaim::from(self.portal)
    }

    /// What the Portal holds when it runs as declared.
    pub fn usage(&self) -> std::result::Result<Usage, Problem> {
        let preset = pod::preset(self.platform, self.portal.spec.size);
        Usage::of_pods(self.replicas(), preset).map(|pods| pods.plus(Usage::one_service())).map_err(|err| Problem {
            reason: govpaas_crds::conditions::reasons::INVALID_SPEC,
            message: format!("the Platform's size preset {:?} cannot be used: {err}", self.portal.spec.size),
        })
    }
}

/// Checks what needs no other object: the name can carry the children's names.
pub fn validate(inputs: &Inputs<'_>) -> Option<Problem> {
    names::check_service_name(&inputs.portal.name_any(), SUFFIX)
        .err()
        .map(|message| Problem { reason: govpaas_crds::conditions::reasons::INVALID_SPEC, message })
}

/// A Portal's desired objects.
#[derive(Clone, Debug)]
pub struct Desired {
    pub deployment: Deployment,
    pub service: Service,
    pub ingress: Ingress,
    /// Only with more than one replica running: a budget for one Pod cannot allow any drain.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    pub tls_secret: Secret,
}

#[cfg(test)]
impl Desired {
    /// Every object, for golden files.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut values = vec![
            serde_json::to_value(&self.deployment),
            serde_json::to_value(&self.service),
            serde_json::to_value(&self.ingress),
        ];
        values.extend(self.pod_disruption_budget.as_ref().map(serde_json::to_value));
        values.push(serde_json::to_value(&self.tls_secret));
        values.into_iter().map(|v| v.expect("k8s objects serialise")).collect()
    }
}

/// Builds a Portal's objects; `tls` is its hosts' certificate.
pub fn build(inputs: &Inputs<'_>, tls: &TlsMaterial) -> Result<Desired> {
    let portal = inputs.portal;
    let owner = Owner::of(portal, COMPONENT)?;
    let names = Names::of(portal);
    let hosts = inputs.hosts();
    let mode = match portal.spec.mode {
        OnlineServiceMode::Full => "Full",
        OnlineServiceMode::Partial => "Partial",
    };
    let container = pod::web_container(
        "portal",
        inputs.image(),
        pod::preset(inputs.platform, portal.spec.size),
        vec![],
        vec![
            pod::env("GOVPAAS_AGENCY_CODE", inputs.tenant.agency_code.clone()),
            pod::env("GOVPAAS_AGENCY_NAME", inputs.tenant.display_name.clone()),
            pod::env("GOVPAAS_ONLINE_SERVICE_MODE", mode),
            pod::env("GOVPAAS_PUBLIC_URL", inputs.url().unwrap_or_default()),
            pod::env("GOVPAAS_HOSTS", hosts.join(",")),
        ],
        vec![],
    );
    let replicas = inputs.replicas();
    Ok(Desired {
        deployment: objects::deployment(
            &owner,
            &names.workload,
            replicas,
            Rollout::OneAtATime,
            Placement::Spread,
            inputs.platform.workload_nodes.as_ref(),
            container,
            vec![],
        ),
        service: objects::service(&owner, &names.workload, &[(HTTP_PORT_NAME, SERVICE_PORT)]),
        ingress: objects::ingress(
            &owner,
            &names.workload,
            inputs.platform.ingress_class_name.as_deref(),
            &hosts,
            &names.workload,
            &names.tls_secret,
        ),
        pod_disruption_budget: (replicas > 1).then(|| objects::pod_disruption_budget(&owner, &names.workload)),
        tls_secret: objects::tls_secret(&owner, &names.tls_secret, tls),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, Case};

    fn tls() -> TlsMaterial {
        TlsMaterial {
            tls_crt: "-----BEGIN CERTIFICATE-----\nleaf and tenant CA\n-----END CERTIFICATE-----\n".into(),
            tls_key: "-----BEGIN PRIVATE KEY-----\nfixture\n-----END PRIVATE KEY-----\n".into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\nplatform CA\n-----END CERTIFICATE-----\n".into(),
            decided_from: None,
        }
    }

    fn built(case: &Case) -> Desired {
        let portal: Portal = case.one("Portal");
        let tenant = TenantContext::of(&case.tenant, &case.platform);
        let inputs = Inputs { portal: &portal, platform: &case.platform.spec, tenant: &tenant };
        assert_eq!(validate(&inputs), None);
        build(&inputs, &tls()).unwrap()
    }

    fn golden(name: &str) -> Desired {
        let case = fixtures::case(&format!("portal/{name}.yaml"));
        let desired = built(&case);
        fixtures::assert_golden(&format!("portal/{name}.expected.yaml"), &desired.to_values());
        desired
    }

    #[test]
    fn two_hosts_two_replicas() {
        let desired = golden("two-hosts");
        assert!(desired.pod_disruption_budget.is_some());
        let spec = desired.deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let ingress = desired.ingress.spec.unwrap();
        assert_eq!(ingress.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(ingress.rules.unwrap().len(), 2);
    }

    #[test]
    fn one_replica_medium_with_its_own_image() {
        let desired = golden("one-replica");
        assert!(desired.pod_disruption_budget.is_none(), "no budget for a single replica");
        let pod = desired.deployment.spec.template.spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("registry.quangnam.gov.vn/cong-dvc:2.3.1"));
        assert_eq!(pod.containers[0].resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0, "250m");
        assert!(desired.ingress.spec.unwrap().ingress_class_name.is_none(), "the cluster default class");
    }

    #[test]
    fn the_platform_workload_nodes_place_the_pods() {
        let mut case = fixtures::case("portal/two-hosts.yaml");
        let unplaced = built(&case).deployment.spec.template.spec.unwrap();
        assert!(unplaced.node_selector.is_none() && unplaced.tolerations.is_none(), "any node by default");
        case.platform.spec.workload_nodes = Some(
            serde_json::from_value(serde_json::json!({
                "nodeSelector": {"govpaas.io/pool": "agencies"},
                "tolerations": [{"key": "govpaas.io/pool", "operator": "Exists", "effect": "NoSchedule"}],
            }))
            .unwrap(),
        );
        let pod = built(&case).deployment.spec.template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["govpaas.io/pool"], "agencies");
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("govpaas.io/pool"));
    }

    #[test]
    fn a_suspended_tenant_runs_no_pods() {
        let desired = golden("suspended");
        assert_eq!(desired.deployment.spec.replicas, Some(0));
        assert!(desired.pod_disruption_budget.is_none());
    }

    #[test]
    fn names_urls_and_usage() {
        let case = fixtures::case("portal/two-hosts.yaml");
        let portal: Portal = case.one("Portal");
        let tenant = TenantContext::of(&case.tenant, &case.platform);
        let inputs = Inputs { portal: &portal, platform: &case.platform.spec, tenant: &tenant };
        assert_eq!(
            Names::of(&portal),
            Names { workload: "dichvucong-portal".into(), tls_secret: "dichvucong-portal-tls".into() }
        );
        assert_eq!(inputs.url().as_deref(), Some("https://dichvucong.so-noi-vu.quangnam.gov.vn/"));
        let usage = inputs.usage().unwrap();
        assert_eq!(usage.requests_cpu.format(govpaas_crds::quantity::Style::Decimal), "200m");
        assert_eq!(usage.services, govpaas_crds::quantity::Amount::from_units(1));
        assert_eq!(crate::workload::hosts::dated(&portal).claim.hosts.len(), 2);
    }

    #[test]
    fn a_name_too_long_for_a_service_is_a_condition_not_an_api_error() {
        let mut portal = fixtures::portal();
        portal.metadata.name = Some(format!("cong-{}", "x".repeat(60)));
        let case = fixtures::case("portal/two-hosts.yaml");
        let tenant = TenantContext::of(&case.tenant, &case.platform);
        let problem = validate(&Inputs { portal: &portal, platform: &case.platform.spec, tenant: &tenant }).unwrap();
        assert_eq!(problem.reason, "InvalidSpec");
        assert!(problem.message.contains("at most 56"), "{}", problem.message);
    }

    #[test]
    fn deployment_meets_pod_security_restricted() {
        let desired = golden("two-hosts");
        let pod = desired.deployment.spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let security = pod.security_context.unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        let container = &pod.containers[0];
        let csc = container.security_context.as_ref().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
    }
}

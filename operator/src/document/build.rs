//! A DocumentService's desired objects, with no client: validation and building are pure
//! functions of the DocumentService, the Platform, the tenant, what is known of its volume and the
//! certificate material, unit-tested from the YAML fixtures in `operator/tests/fixtures/document/`.

use std::collections::BTreeMap;

use govpaas_crds::DocumentService;
use govpaas_crds::conditions::reasons;
use govpaas_crds::platform::PlatformSpec;
use govpaas_crds::quantity::Amount;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Secret, SecretVolumeSource,
    Service, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::exchange;
use super::retention::{DELETE_POLICY_ANNOTATION, reclaim_policy};
use crate::certificates::TlsMaterial;
use crate::error::Result;
use crate::reconcile::Problem;
use crate::tenancy::TenantContext;
use crate::workload::hosts::HostClaim;
use crate::workload::names;
use crate::workload::objects::{self, Owner, Placement, Rollout};
use crate::workload::pod::{self, HTTP_PORT_NAME};
use crate::workload::quota_fit::Usage;

/// The `app.kubernetes.io/component` of a DocumentService's objects.
pub const COMPONENT: &str = "document-service";
/// The suffix of a DocumentService's Deployment, Service and Ingress names.
pub const SUFFIX: &str = "-docs";
/// The TLS port of the exchange endpoint (edXML over HTTPS), behind the LGSP gateway.
pub const HTTPS_PORT: i32 = 8443;
/// The name of [`HTTPS_PORT`].
pub const HTTPS_PORT_NAME: &str = "https";
/// Where the documents live in the container.
pub const DOCUMENTS_DIR: &str = "/var/lib/govpaas/documents";
/// Label on the Service of a DocumentService whose exchange is enabled: what the LGSP wiring
/// selects to register the agency's exchange endpoint.
pub const EXCHANGE_LABEL: &str = "govpaas.io/document-exchange";
/// The kind segment of a DocumentService's identity: `spiffe://<base>/agency/<code>/docs/<name>`.
pub const IDENTITY_KIND: &str = govpaas_crds::lgsp::EXCHANGE_IDENTITY_KIND;

/// The names of a DocumentService's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, Ingress.
    pub workload: String,
    /// The document volume's claim.
    pub claim: String,
    /// The TLS Secret.
    pub tls_secret: String,
    /// The document-signing Secret.
    pub signing_secret: String,
}

impl Names {
    pub fn of(service: &DocumentService) -> Self {
        let workload = names::workload(&service.name_any(), SUFFIX);
        Names {
            claim: format!("{workload}-data"),
            tls_secret: format!("{workload}-tls"),
            signing_secret: format!("{workload}-signing"),
            workload,
        }
    }
}

/// What a DocumentService is built from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub service: &'a DocumentService,
    pub platform: &'a PlatformSpec,
    pub tenant: &'a TenantContext,
}

impl Inputs<'_> {
    /// The container image: the service's own, or the Platform's default.
    pub fn image(&self) -> &str {
        self.service.spec.image.as_deref().unwrap_or(&self.platform.images.document_service)
    }

    /// Pods to run: none while the tenant is suspended or the volume is not ready for documents.
    pub fn replicas(&self, storage_ready: bool) -> i32 {
        if self.tenant.suspended || !storage_ready { 0 } else { self.service.spec.replicas }
    }

    /// The host of the staff's web interface, lower case.
    pub fn host(&self) -> Option<String> {
        self.service.spec.host.as_ref().map(|h| h.to_ascii_lowercase())
    }

    /// `https://<host>/`.
    pub fn url(&self) -> Option<String> {
        self.host().map(|host| format!("https://{host}/"))
    }

    /// The TLS certificate's names: the web host, if any, and `<name>-docs.<tenant domain>`, the
    /// name the exchange endpoint answers to behind the LGSP gateway (inside the tenant's domain,
    /// the only names the tenant CA may certify).
    pub fn tls_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.host().into_iter().collect();
        let internal = format!("{}.{}", Names::of(self.service).workload, self.tenant.domain);
        if !names.contains(&internal) {
            names.push(internal);
        }
        names
    }

    /// The DocumentService's claim on its host.
    pub fn host_claim(&self) -> HostClaim {
        HostClaim::from(self.service)
    }

    /// The StorageClass a new volume gets: the service's, else the Platform's, else the cluster's
    /// default (`None`).
    pub fn storage_class(&self) -> Option<&str> {
        self.service.spec.storage.storage_class_name.as_deref().or(self.platform.storage_class_name.as_deref())
    }

    /// The requested storage.
    pub fn storage_size(&self) -> std::result::Result<Amount, Problem> {
        Amount::of(&self.service.spec.storage.size)
            .map_err(|err| Problem { reason: reasons::INVALID_SPEC, message: format!("spec.storage.size: {err}") })
    }

    /// What the service holds when it runs as declared.
    pub fn usage(&self) -> std::result::Result<Usage, Problem> {
        let preset = pod::preset(self.platform, self.service.spec.size);
        let pods = Usage::of_pods(self.replicas(true), preset).map_err(|err| Problem {
            reason: reasons::INVALID_SPEC,
            message: format!("the Platform's size preset {:?} cannot be used: {err}", self.service.spec.size),
        })?;
        Ok(pods.plus(Usage::one_service()).plus(Usage::one_claim(self.storage_size()?)))
    }
}

/// Checks what needs no other object: the name can carry the children's names, the size parses.
pub fn validate(inputs: &Inputs<'_>) -> Option<Problem> {
    if let Err(message) = names::check_service_name(&inputs.service.name_any(), SUFFIX) {
        return Some(Problem { reason: reasons::INVALID_SPEC, message });
    }
    inputs.storage_size().err()
}

/// What the claim is to be bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimBinding {
    /// The PersistentVolume: the one the claim is bound to, or the retained one being restored.
    pub volume_name: Option<String>,
    /// The claim's StorageClass when it is already fixed: the stored claim's (immutable), or the
    /// restored volume's (the claim must name it to bind). `None`: [`Inputs::storage_class`].
    pub storage_class: Option<String>,
}

/// A DocumentService's desired objects.
#[derive(Clone, Debug)]
pub struct Desired {
    pub claim: PersistentVolumeClaim,
    pub deployment: Deployment,
    pub service: Service,
    /// Only with a web host.
    pub ingress: Option<Ingress>,
    pub tls_secret: Secret,
    /// Only with signing enabled.
    pub signing_secret: Option<Secret>,
    /// Only while its exchange endpoint is registered.
    pub exchange: Option<ExchangeObjects>,
}

/// The exchange's objects in the service's namespace (its route table lives in the operator's).
#[derive(Clone, Debug)]
pub struct ExchangeObjects {
    /// The client certificate it sends with.
    pub client_secret: Secret,
    /// The gateway's way in to the exchange port.
    pub network_policy: NetworkPolicy,
}

/// What a registered exchange endpoint adds to the build.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeBuild<'a> {
    /// The sending client certificate.
    pub client: &'a TlsMaterial,
    /// `https://<gateway>/<code>/edoc/<name>/`.
    pub endpoint: &'a str,
    /// The operator's namespace, where the gateway's Pods run.
    pub operator_namespace: &'a str,
}

#[cfg(test)]
impl Desired {
    /// Every object, for golden files.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut values = vec![serde_json::to_value(&self.claim), serde_json::to_value(&self.deployment)];
        values.push(serde_json::to_value(&self.service));
        values.extend(self.ingress.as_ref().map(serde_json::to_value));
        values.push(serde_json::to_value(&self.tls_secret));
        values.extend(self.signing_secret.as_ref().map(serde_json::to_value));
        if let Some(exchange) = &self.exchange {
            values.push(serde_json::to_value(&exchange.client_secret));
            values.push(serde_json::to_value(&exchange.network_policy));
        }
        values.into_iter().map(|v| v.expect("k8s objects serialise")).collect()
    }
}

/// The document volume's claim.
pub fn volume_claim(inputs: &Inputs<'_>, owner: &Owner, binding: &ClaimBinding) -> PersistentVolumeClaim {
    let names = Names::of(inputs.service);
    let storage = &inputs.service.spec.storage;
    let mut meta = owner.child_meta(&names.claim);
    meta.annotations =
        Some(BTreeMap::from([(DELETE_POLICY_ANNOTATION.to_owned(), reclaim_policy(storage.delete_policy).to_owned())]));
    PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(storage.size.0.clone()))])),
                ..Default::default()
            }),
            storage_class_name: binding.storage_class.clone().or_else(|| inputs.storage_class().map(str::to_owned)),
            volume_name: binding.volume_name.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // Readable by the pod's group only.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Builds a DocumentService's objects. `storage_ready`: the volume may receive documents (bound,
/// and marked `Retain` when the service retains). `tls` is the certificate of [`Inputs::tls_names`];
/// `signing` the document-signing certificate, when enabled; `exchange` what its registered
/// exchange endpoint needs.
pub fn build(
    inputs: &Inputs<'_>,
    binding: &ClaimBinding,
    storage_ready: bool,
    tls: &TlsMaterial,
    signing: Option<&TlsMaterial>,
    exchange_endpoint: Option<ExchangeBuild<'_>>,
) -> Result<Desired> {
    let service = inputs.service;
    let owner = Owner::of(service, COMPONENT)?;
    let names = Names::of(service);
    let exchange = service.spec.exchange.enabled;

    let mut env = vec![
        pod::env("GOVPAAS_AGENCY_CODE", inputs.tenant.agency_code.clone()),
        pod::env("GOVPAAS_AGENCY_NAME", inputs.tenant.display_name.clone()),
        pod::env("GOVPAAS_DOCUMENTS_DIR", DOCUMENTS_DIR),
        pod::env("GOVPAAS_EXCHANGE_ENABLED", exchange.to_string()),
        pod::env("GOVPAAS_TLS_DIR", "/etc/govpaas/tls"),
    ];
    let mut mounts = vec![pod::mount("documents", DOCUMENTS_DIR, false), pod::mount("tls", "/etc/govpaas/tls", true)];
    let mut volumes = vec![
        Volume {
            name: "documents".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names.claim.clone(),
                read_only: None,
            }),
            ..Default::default()
        },
        secret_volume("tls", &names.tls_secret),
    ];
    if signing.is_some() {
        env.push(pod::env("GOVPAAS_SIGNING_DIR", "/etc/govpaas/signing"));
        mounts.push(pod::mount("signing", "/etc/govpaas/signing", true));
        volumes.push(secret_volume("signing", &names.signing_secret));
    }
    let client_secret = exchange::client_secret_name(&names);
    if let Some(endpoint) = &exchange_endpoint {
        // What the container needs to send: its client certificate, and where its own endpoint is
        // (the gateway's host is the URL's).
        env.push(pod::env("GOVPAAS_EXCHANGE_ENDPOINT", endpoint.endpoint));
        env.push(pod::env("GOVPAAS_EXCHANGE_CLIENT_DIR", exchange::CLIENT_DIR));
        mounts.push(pod::mount("exchange-client", exchange::CLIENT_DIR, true));
        volumes.push(secret_volume("exchange-client", &client_secret));
    }
    let container = pod::web_container(
        "document-service",
        inputs.image(),
        pod::preset(inputs.platform, service.spec.size),
        vec![pod::container_port(HTTPS_PORT_NAME, HTTPS_PORT)],
        env,
        mounts,
    );

    let mut kube_service = objects::service(&owner, &names.workload, &[(HTTP_PORT_NAME, 80), (HTTPS_PORT_NAME, 443)]);
    if exchange {
        kube_service.metadata.labels.get_or_insert_with(BTreeMap::new).insert(EXCHANGE_LABEL.into(), "enabled".into());
    }

    Ok(Desired {
        claim: volume_claim(inputs, &owner, binding),
        // One volume, one writer: Pods are replaced all at once and kept on the node that mounts it.
        deployment: objects::deployment(
            &owner,
            &names.workload,
            inputs.replicas(storage_ready),
            Rollout::Recreate,
            Placement::OneNode,
            inputs.platform.workload_nodes.as_ref(),
            container,
            volumes,
        ),
        service: kube_service,
        ingress: inputs.host().map(|host| {
            objects::ingress(
                &owner,
                &names.workload,
                inputs.platform.ingress_class_name.as_deref(),
                &[host],
                &names.workload,
                &names.tls_secret,
            )
        }),
        tls_secret: objects::tls_secret(&owner, &names.tls_secret, tls),
        signing_secret: signing.map(|material| objects::tls_secret(&owner, &names.signing_secret, material)),
        exchange: exchange_endpoint.map(|endpoint| ExchangeObjects {
            client_secret: objects::tls_secret(&owner, &client_secret, endpoint.client),
            network_policy: exchange::network_policy(
                &owner,
                &names,
                owner.selector_labels(),
                endpoint.operator_namespace,
            ),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn material(what: &str) -> TlsMaterial {
        TlsMaterial {
            tls_crt: format!("-----BEGIN CERTIFICATE-----\n{what} leaf and tenant CA\n-----END CERTIFICATE-----\n"),
            tls_key: "-----BEGIN PRIVATE KEY-----\nfixture\n-----END PRIVATE KEY-----\n".into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\nplatform CA\n-----END CERTIFICATE-----\n".into(),
            decided_from: None,
        }
    }

    fn golden(name: &str, binding: &ClaimBinding, storage_ready: bool) -> Desired {
        let case = fixtures::case(&format!("document/{name}.yaml"));
        let service: DocumentService = case.one("DocumentService");
        let tenant = TenantContext::of(&case.tenant, &case.platform);
        let inputs = Inputs { service: &service, platform: &case.platform.spec, tenant: &tenant };
        assert_eq!(validate(&inputs), None);
        let signing = service.spec.signing.enabled.then(|| material("signing"));
        let client = material("exchange client");
        let endpoint = format!("https://lgsp.quangnam.gov.vn/{}/edoc/{}/", tenant.agency_code, service.name_any());
        let exchange = service.spec.exchange.enabled.then(|| ExchangeBuild {
            client: &client,
            endpoint: &endpoint,
            operator_namespace: "govpaas-system",
        });
        let desired = build(&inputs, binding, storage_ready, &material("tls"), signing.as_ref(), exchange).unwrap();
        fixtures::assert_golden(&format!("document/{name}.expected.yaml"), &desired.to_values());
        desired
    }

    #[test]
    fn retained_with_host_exchange_and_signing() {
        let binding = ClaimBinding { volume_name: Some("pvc-0a1b".into()), storage_class: Some("standard".into()) };
        let desired = golden("retained", &binding, true);
        assert_eq!(desired.deployment.spec.replicas, Some(1));
        assert!(desired.ingress.is_some());
        assert!(desired.signing_secret.is_some());
        assert_eq!(desired.service.metadata.labels.as_ref().unwrap()[EXCHANGE_LABEL], "enabled");
        // The exchange: its client certificate mounted, and the gateway let in to port 8443 only.
        let exchange = desired.exchange.as_ref().expect("the exchange's objects");
        assert_eq!(exchange.client_secret.metadata.name.as_deref(), Some("van-ban-docs-edoc-client"));
        let policy = exchange.network_policy.spec.as_ref().unwrap();
        let ingress = &policy.ingress.as_ref().unwrap()[0];
        assert_eq!(ingress.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(HTTPS_PORT)));
        let pod = desired.deployment.spec.template.spec.as_ref().unwrap();
        let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == exchange::CLIENT_DIR && m.read_only == Some(true)));
        let claim = desired.claim.spec.unwrap();
        assert_eq!(claim.volume_name.as_deref(), Some("pvc-0a1b"));
        assert_eq!(desired.claim.metadata.annotations.unwrap()[DELETE_POLICY_ANNOTATION], "Retain");
    }

    #[test]
    fn a_new_service_waits_for_its_volume_before_running() {
        let desired = golden("delete-internal", &ClaimBinding::default(), false);
        assert_eq!(desired.deployment.spec.replicas, Some(0), "no Pod before the volume is ready");
        assert!(desired.ingress.is_none(), "no host, no Ingress");
        assert!(desired.signing_secret.is_none());
        assert!(desired.exchange.is_none());
        assert!(!desired.service.metadata.labels.as_ref().unwrap().contains_key(EXCHANGE_LABEL));
        let claim = desired.claim.spec.unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"), "the service's own class");
        assert_eq!(claim.volume_name, None);
    }

    #[test]
    fn a_restore_binds_the_named_volume_in_its_class() {
        let binding = ClaimBinding { volume_name: Some("pvc-retained".into()), storage_class: Some("standard".into()) };
        let desired = golden("restore", &binding, false);
        let claim = desired.claim.spec.unwrap();
        assert_eq!(claim.volume_name.as_deref(), Some("pvc-retained"));
        assert_eq!(claim.storage_class_name.as_deref(), Some("standard"));
    }

    #[test]
    fn certificate_names_and_usage() {
        let case = fixtures::case("document/retained.yaml");
        let service: DocumentService = case.one("DocumentService");
        let tenant = TenantContext::of(&case.tenant, &case.platform);
        let inputs = Inputs { service: &service, platform: &case.platform.spec, tenant: &tenant };
        assert_eq!(inputs.tls_names(), ["van-ban.so-noi-vu.quangnam.gov.vn", "van-ban-docs.so-noi-vu.quangnam.gov.vn"]);
        assert_eq!(inputs.url().as_deref(), Some("https://van-ban.so-noi-vu.quangnam.gov.vn/"));
        let usage = inputs.usage().unwrap();
        assert_eq!(usage.requests_storage, Amount::parse("20Gi").unwrap());
        assert_eq!(usage.pods, Amount::from_units(1));
        assert_eq!(usage.claims, Amount::from_units(1));
        assert_eq!(crate::workload::hosts::dated(&service).claim.hosts, ["van-ban.so-noi-vu.quangnam.gov.vn"]);
        assert_eq!(
            Names::of(&service),
            Names {
                workload: "van-ban-docs".into(),
                claim: "van-ban-docs-data".into(),
                tls_secret: "van-ban-docs-tls".into(),
                signing_secret: "van-ban-docs-signing".into(),
            }
        );
    }

    #[test]
    fn a_suspended_tenant_runs_no_pods() {
        let case = fixtures::case("document/retained.yaml");
        let service: DocumentService = case.one("DocumentService");
        let mut tenant = TenantContext::of(&case.tenant, &case.platform);
        tenant.suspended = true;
        let inputs = Inputs { service: &service, platform: &case.platform.spec, tenant: &tenant };
        assert_eq!(inputs.replicas(true), 0);
        assert_eq!(inputs.usage().unwrap().pods, Amount::ZERO);
    }
}

//! Portals and DocumentServices on the real control plane: the chart installed, the operator
//! running as a local process with the chart's ServiceAccount token, one operator per test scoped
//! to that test's Tenant (see `govpaas_tests::operator`). Pods run on kwok's nodes; volumes are
//! real directories made by kube-controller-manager's hostPath provisioner, so a retained volume's
//! data can be checked on disk.

use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use govpaas_crds::common::Size;
use govpaas_crds::document_service::DeletePolicy;
use govpaas_crds::portal::OnlineServiceMode;
use govpaas_crds::{DocumentService, Portal, Tenant};
use govpaas_pki::verify::{chain_from_pem, verify_server_chain};
use govpaas_pki::{CertificateAuthority, ExpectedLeaf, LeafKind, TrustAnchors, inspect_leaf};
use govpaas_tests::operator;
use govpaas_tests::world::{DocumentServiceBuilder, PortalBuilder, Quota, WAIT, World, condition};
use govpaas_tests::{eventually, secret_data};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use time::OffsetDateTime;

/// The shared world, with the one Tenant these tests run services in (named after the scope) and
/// the retained volumes they make.
struct Services {
    world: World,
    /// The Tenant's name, which is also its namespace's.
    tenant: String,
    /// Retained volumes the test made, deleted (with their directories) at the end.
    volumes: Vec<String>,
}

impl Deref for Services {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Services {
    /// The shared world with a Province Tenant with `quota`, provisioned.
    async fn new(prefix: &str, quota: Quota) -> Self {
        let world = World::new(prefix).await;
        let tenant = world.scope.clone();
        let services = Services { world, tenant, volumes: Vec::new() };
        services.apply_tenant(quota, false).await;
        services.tenant_ready(&services.tenant).await;
        services
    }

    async fn apply_tenant(&self, quota: Quota, suspended: bool) -> Tenant {
        self.apply(&self.tenant(&self.tenant).quota(quota).suspended(suspended).build()).await
    }

    fn namespace(&self) -> String {
        self.tenant.clone()
    }

    fn domain(&self) -> String {
        self.domain_of(&self.tenant)
    }

    /// A Portal in the tenant's namespace.
    fn portal(&self, name: &str, hosts: &[String]) -> PortalBuilder {
        PortalBuilder::new(&self.tenant, name, hosts)
    }

    /// A DocumentService in the tenant's namespace, with `storage` of volume and exchange on.
    fn document_service(&self, name: &str, storage: &str, policy: DeletePolicy) -> DocumentServiceBuilder {
        DocumentServiceBuilder::new(&self.tenant, name).storage(storage).delete_policy(policy)
    }

    /// Applying `object` is refused: the API server's message.
    async fn apply_refused<K>(&self, object: &K) -> String
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match self.try_apply(object).await {
            Ok(stored) => panic!("applying was expected to be refused: {stored:?}"),
            Err(message) => message,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    /// Waits until the Portal `name` has the condition, stated for its current generation.
    async fn portal_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Portal {
        self.condition(&self.tenant, name, type_, status, reason).await
    }

    /// Waits until the DocumentService `name` has the condition, stated for its current generation.
    async fn document_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> DocumentService {
        self.condition(&self.tenant, name, type_, status, reason).await
    }

    /// The Running Pods of a service, each with its node.
    async fn running_pods(&self, component: &str, instance: &str) -> Vec<Pod> {
        let selector = format!("app.kubernetes.io/name=govpaas-{component},app.kubernetes.io/instance={instance}");
        let pods = self.api::<Pod>().list(&ListParams::default().labels(&selector)).await.expect("listing pods");
        pods.items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// The tenant CA and the trust bundle, read from the operator's namespace.
    async fn tenant_ca(&self) -> (CertificateAuthority, String) {
        let now = OffsetDateTime::now_utc();
        let platform: Secret = self.get(operator::NAMESPACE, "govpaas-ca").await;
        let platform = CertificateAuthority::import_platform_ca(
            &secret_data(&platform, "tls.crt"),
            &secret_data(&platform, "tls.key"),
            now,
        )
        .expect("a usable platform CA");
        let tenant: Secret = self.get(operator::NAMESPACE, &format!("govpaas-tenant-ca-{}", self.tenant)).await;
        let tenant = CertificateAuthority::load_tenant_ca(
            &secret_data(&tenant, "tls.crt"),
            &secret_data(&tenant, "tls.key"),
            &platform,
            now,
        )
        .expect("a tenant CA issued by the platform CA");
        (tenant, platform.certificate_pem().to_owned())
    }

    /// Checks that the TLS Secret holds a certificate of the tenant CA for exactly `hosts`, that
    /// verifies for each host to the tenant CA and to the trust bundle in `ca.crt`.
    async fn assert_certificate(&self, secret: &str, hosts: &[String]) {
        let secret: Secret = self.get(&self.tenant, secret).await;
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let (tenant_ca, platform_pem) = self.tenant_ca().await;
        let (crt, key, bundle) =
            (secret_data(&secret, "tls.crt"), secret_data(&secret, "tls.key"), secret_data(&secret, "ca.crt"));
        assert_eq!(String::from_utf8_lossy(&bundle), platform_pem, "ca.crt is the platform CA");
        let trust = TrustAnchors::from_pem(&bundle).expect("ca.crt is a trust bundle");
        let now = OffsetDateTime::now_utc();
        let expected = ExpectedLeaf {
            kind: LeafKind::Server,
            issuer: &tenant_ca,
            trust: &trust,
            dns_names: hosts,
            identity: None,
        };
        // Issued by the tenant CA, with exactly these SANs, for serverAuth, verifying for each host.
        inspect_leaf(&crt, &key, &expected, now).unwrap_or_else(|e| panic!("the certificate for {hosts:?}: {e}"));
        let chain = chain_from_pem("tls.crt", &crt).expect("a chain");
        let tenant_anchor = TrustAnchors::from_pem(tenant_ca.certificate_pem().as_bytes()).expect("tenant CA anchor");
        for host in hosts {
            verify_server_chain(&chain, &tenant_anchor, host, now).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let stranger = format!("other.{}", self.domain());
        assert!(verify_server_chain(&chain, &trust, &stranger, now).is_err(), "{stranger} must not verify");
    }

    /// The resourceVersions of a Portal `dichvucong` and its objects.
    async fn resource_versions(&self) -> Vec<Option<String>> {
        let (ns, name) = (self.tenant.as_str(), "dichvucong-portal");
        vec![
            self.get::<Portal>(ns, "dichvucong").await.metadata.resource_version,
            self.get::<Deployment>(ns, name).await.metadata.resource_version,
            self.get::<Service>(ns, name).await.metadata.resource_version,
            self.get::<Ingress>(ns, name).await.metadata.resource_version,
            self.get::<PodDisruptionBudget>(ns, name).await.metadata.resource_version,
            self.get::<Secret>(ns, &format!("{name}-tls")).await.metadata.resource_version,
        ]
    }

    /// Labels `kind/name` in the tenant's namespace by hand: a change that wakes the operator
    /// (it watches what it owns) and that it must leave alone.
    fn touch(&self, kind: &str, name: &str, label: &str) {
        self.cluster.kubectl_ok(&["label", kind, name, "-n", &self.tenant, &format!("{label}=yes")]);
    }

    /// Waits for the volume under a bound claim and returns it.
    async fn bound_volume(&self, claim: &str) -> PersistentVolume {
        let volume_name = self
            .wait(&self.tenant, claim, "the claim Bound", |c: &PersistentVolumeClaim| {
                (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then(|| c.spec.as_ref()?.volume_name.clone())?
            })
            .await;
        self.get("", &volume_name).await
    }

    /// Waits until `volume` has `phase`.
    async fn volume_phase(&self, volume: &str, phase: &str) -> PersistentVolume {
        self.wait("", volume, &format!("phase {phase}"), |pv: &PersistentVolume| {
            (pv.status.as_ref()?.phase.as_deref() == Some(phase)).then(|| pv.clone())
        })
        .await
    }

    /// Waits for the operator's Event announcing that `volume` holds retained documents.
    async fn retained_event(&self, volume: &str) -> Event {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        eventually(WAIT, &format!("a DocumentsRetained Event on {volume}"), || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("DocumentsRetained")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(volume)
            })
        })
        .await
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for volume in &self.volumes {
            let path = self
                .cluster
                .kubectl()
                .args(["get", "pv", volume, "-o", "jsonpath={.spec.hostPath.path}"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            let _ =
                self.cluster.kubectl().args(["delete", "pv", volume, "--ignore-not-found", "--wait=false"]).output();
            if path.starts_with("/tmp/hostpath_pv/") {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

/// A quota of 8 CPUs, 16Gi of memory, 10 Services and 5 LGSP APIs, with these Pods, storage and
/// public hosts.
fn quota(pods: i32, storage: &str, public_hosts: i32) -> Quota {
    Quota::default().cpu("8").memory("16Gi").storage(storage).pods(pods).services(10).public_hosts(public_hosts)
}

/// The directory that holds a hostPath volume's data on this machine.
fn volume_dir(volume: &PersistentVolume) -> PathBuf {
    let path =
        volume.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.clone()).expect("a hostPath volume");
    PathBuf::from(path)
}

/// Writes a document into the volume's directory, as the service would.
fn write_document(volume: &PersistentVolume) -> PathBuf {
    let file = volume_dir(volume).join("cong-van-so-123.edxml");
    std::fs::write(&file, "<edXML>Công văn số 123/UBND</edXML>").expect("writing into the volume directory");
    file
}

#[tokio::test]
async fn a_portal_with_two_hosts_serves_with_tls_from_the_tenant_ca() {
    let world = Services::new("svc-portal", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("dichvucong.{}", world.domain()), world.domain()];
    world.apply(&world.portal("dichvucong", &hosts).replicas(2).mode(OnlineServiceMode::Full).build()).await;

    let ready = world.portal_condition("dichvucong", "Ready", "True", None).await;
    let status = ready.status.expect("status");
    assert_eq!(status.url.as_deref(), Some(format!("https://{}/", hosts[0]).as_str()));
    assert_eq!(status.ready_replicas, Some(2));
    let certificate = status.certificate.expect("certificate status");
    assert_eq!(certificate.secret_name.as_deref(), Some("dichvucong-portal-tls"));
    assert!(certificate.not_after.is_some());
    assert_eq!(condition(&status.conditions, "CertificateReady").status, "True");
    assert_eq!(condition(&status.conditions, "Available").status, "True");

    // The Deployment is available, its Pods Running on kwok nodes.
    let deployment: Deployment = world.get(&ns, "dichvucong-portal").await;
    assert_eq!(deployment.status.as_ref().and_then(|s| s.available_replicas), Some(2));
    let pods = world.running_pods("portal", "dichvucong").await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
        assert!(node.starts_with("kwok-node-"), "{node}");
    }

    // The Ingress routes both hosts, with TLS from the Secret.
    let ingress: Ingress = world.get(&ns, "dichvucong-portal").await;
    let spec = ingress.spec.expect("spec");
    let tls = &spec.tls.expect("tls")[0];
    assert_eq!(tls.hosts.as_deref(), Some(hosts.as_slice()));
    assert_eq!(tls.secret_name.as_deref(), Some("dichvucong-portal-tls"));
    let rule_hosts: Vec<String> = spec.rules.expect("rules").into_iter().filter_map(|r| r.host).collect();
    assert_eq!(rule_hosts, hosts);
    world.assert_certificate("dichvucong-portal-tls", &hosts).await;

    // Two replicas: a budget lets drains take one at a time.
    let budget: PodDisruptionBudget = world.get(&ns, "dichvucong-portal").await;
    assert_eq!(
        budget.spec.and_then(|s| s.max_unavailable),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    // `kubectl get portal` answers the first question.
    let line = world.cluster.kubectl_ok(&["get", "portal", "dichvucong", "-n", &ns, "--no-headers"]);
    assert!(line.contains(&format!("https://{}/", hosts[0])) && line.contains("True"), "{line}");

    // The certificate's expiry is in the operator's metrics too, and the reconciles are counted.
    let not_after = certificate.not_after.expect("notAfter").0.as_second();
    let metrics = world.operator().metrics().await;
    let series = metrics
        .lines()
        .find(|l| {
            l.contains("certificate_expiration_timestamp_seconds{")
                && l.contains("secret=\"dichvucong-portal-tls\"")
                && l.contains(&format!("namespace=\"{ns}\""))
        })
        .unwrap_or_else(|| panic!("no expiry gauge for the portal's certificate in:\n{metrics}"));
    assert!(series.ends_with(&format!(" {not_after}")), "{series} (notAfter {not_after})");
    assert!(operator::reconciles(&metrics, "portal") >= 1.0, "{metrics}");

    // A steady world is quiet: reconciles of an unchanged Portal write nothing. Each hand-made
    // label wakes one (the operator watches what it owns); the reconcile counter says when it has
    // finished (the operator scoped to this test's Tenant, the counter is this Portal's).
    let errors = world.reconcile_errors("portal").await;
    let seen = world.reconciles("portal").await;
    world.touch("ingress", "dichvucong-portal", "touched-by-hand");
    let versions = world.resource_versions().await;
    let seen = world.reconciled_beyond("portal", seen).await;
    assert_eq!(world.resource_versions().await, versions, "a no-op reconcile changed something");
    // A second look, after a second label: the operator looked again and still wrote nothing.
    world.touch("ingress", "dichvucong-portal", "touched-again");
    let versions = world.resource_versions().await;
    world.reconciled_beyond("portal", seen).await;
    assert_eq!(world.resource_versions().await, versions, "a no-op reconcile changed something");
    assert_eq!(world.reconcile_errors("portal").await, errors, "the no-op reconciles succeeded");

    // A hand edit of what the operator owns is taken back.
    world.cluster.kubectl_ok(&["scale", "deployment", "dichvucong-portal", "-n", &ns, "--replicas=5"]);
    world
        .wait(&ns, "dichvucong-portal", "replicas back to 2", |d: &Deployment| {
            (d.spec.replicas == Some(2) && d.metadata.generation > deployment.metadata.generation).then_some(())
        })
        .await;
}

#[tokio::test]
async fn a_host_outside_the_tenant_domain_is_refused_at_admission() {
    let world = Services::new("svc-admission", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("cong.{}", world.domain()), "dichvucong.gov.vn".to_owned()];
    let err = world.apply_refused(&world.portal("lac-duong", &hosts).build()).await;
    assert!(err.contains("dichvucong.gov.vn must be the tenant domain"), "{err}");
    assert!(err.contains(&world.domain()), "{err}");
    let err =
        world.apply_refused(&DocumentServiceBuilder::new(&ns, "van-ban").host("vanban.other.gov.vn").build()).await;
    assert!(err.contains("spec.host: vanban.other.gov.vn must be the tenant domain"), "{err}");
    assert!(world.get_opt::<Portal>(&ns, "lac-duong").await.is_none());
    assert!(world.get_opt::<DocumentService>(&ns, "van-ban").await.is_none());
}

#[tokio::test]
async fn changes_apply_in_place() {
    let world = Services::new("svc-change", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("cong.{}", world.domain()), format!("www.{}", world.domain())];
    world.apply(&world.portal("cong", &hosts).replicas(2).build()).await;
    world.portal_condition("cong", "Ready", "True", None).await;
    let before: Deployment = world.get(&ns, "cong-portal").await;

    // Fewer hosts, more replicas, a bigger size, the agency's own image: all in place.
    let kept = vec![hosts[0].clone()];
    let changed = |replicas| {
        world.portal("cong", &kept).replicas(replicas).size(Size::Medium).image("registry.example.vn/cong-dvc:2.0.1")
    };
    world.apply(&changed(3).build()).await;
    let deployment = world
        .wait(&ns, "cong-portal", "3 replicas of the new image", |d: &Deployment| {
            let spec = &d.spec;
            let pod = spec.template.spec.as_ref()?;
            let ready = d.status.as_ref()?.ready_replicas? == 3 && spec.replicas == Some(3);
            (ready && pod.containers[0].image.as_deref() == Some("registry.example.vn/cong-dvc:2.0.1"))
                .then(|| d.clone())
        })
        .await;
    assert_eq!(deployment.uid(), before.uid(), "the same Deployment, changed in place");
    let requests = deployment.spec.template.spec.unwrap().containers[0].resources.clone().unwrap().requests.unwrap();
    assert_eq!(requests["cpu"].0, "250m");
    assert_eq!(requests["memory"].0, "512Mi");

    // The removed host leaves the Ingress and the certificate.
    world
        .wait(&ns, "cong-portal", "the Ingress with one host", |i: &Ingress| {
            let rules = i.spec.as_ref()?.rules.as_ref()?;
            (rules.len() == 1 && rules[0].host.as_deref() == Some(kept[0].as_str())).then_some(())
        })
        .await;
    let portal = world.portal_condition("cong", "Ready", "True", None).await;
    assert_eq!(portal.status.unwrap().ready_replicas, Some(3));
    world.assert_certificate("cong-portal-tls", &kept).await;

    // Back to one replica: the budget goes, since one Pod cannot spare any.
    world.apply(&changed(1).build()).await;
    world.gone::<PodDisruptionBudget>(&ns, "cong-portal").await;
}

#[tokio::test]
async fn a_document_service_keeps_its_volume_when_deleted_and_a_new_one_restores_it() {
    let mut world = Services::new("svc-retain", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&world.document_service("van-ban", "1Gi", DeletePolicy::Retain).build()).await;

    let service = world.document_condition("van-ban", "Ready", "True", None).await;
    let status = service.status.expect("status");
    let storage = status.storage.expect("storage status");
    assert_eq!(storage.claim_name.as_deref(), Some("van-ban-docs-data"));
    assert_eq!(storage.phase.as_deref(), Some("Bound"));
    let bound = condition(&status.conditions, "StorageBound");
    assert_eq!((bound.status.as_str(), bound.reason.as_str()), ("True", "VolumeRetained"));
    assert!(status.signing_certificate.is_some(), "a document-signing certificate");
    // Exchange is off (the API's default): no endpoint on the LGSP (tests/tests/document_exchange.rs has it on).
    let routes = condition(&status.conditions, "RoutesRegistered");
    assert_eq!((routes.status.as_str(), routes.reason.as_str()), ("False", "ExchangeDisabled"));
    assert!(status.endpoint.is_none() && status.exchange_certificate.is_none());

    let volume = world.bound_volume("van-ban-docs-data").await;
    let volume_name = volume.name_any();
    world.volumes.push(volume_name.clone());
    assert!(bound.message.contains(&volume_name), "status says where: {}", bound.message);
    let spec = volume.spec.as_ref().unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    let labels = volume.labels();
    assert_eq!(labels["govpaas.io/tenant"], world.tenant);
    assert_eq!(labels["govpaas.io/document-service"], "van-ban");
    assert_eq!(world.running_pods("document-service", "van-ban").await.len(), 1);
    let document = write_document(&volume);

    // Quiet once settled: reconciles rewrite neither the service, its claim, its volume nor its
    // workload. Each hand-made label on its Service wakes one; the counter says when it finished.
    let versions = || async {
        vec![
            world.get::<DocumentService>(&ns, "van-ban").await.metadata.resource_version,
            world.get::<PersistentVolumeClaim>(&ns, "van-ban-docs-data").await.metadata.resource_version,
            world.get::<Deployment>(&ns, "van-ban-docs").await.metadata.resource_version,
            world.get::<Secret>(&ns, "van-ban-docs-signing").await.metadata.resource_version,
            world.get::<PersistentVolume>("", &volume_name).await.metadata.resource_version,
        ]
    };
    // The first look lets a write still in flight land (the Pod's readiness reaching the status).
    let errors = world.reconcile_errors("document-service").await;
    let seen = world.reconciles("document-service").await;
    world.touch("service", "van-ban-docs", "settling");
    let seen = world.reconciled_beyond("document-service", seen).await;
    world.touch("service", "van-ban-docs", "touched-by-hand");
    let before = versions().await;
    let seen = world.reconciled_beyond("document-service", seen).await;
    assert_eq!(versions().await, before, "a no-op reconcile changed something");
    // A second look, after a second label: the operator looked again and still wrote nothing.
    world.touch("service", "van-ban-docs", "touched-again");
    world.reconciled_beyond("document-service", seen).await;
    assert_eq!(versions().await, before, "a no-op reconcile changed something");
    assert_eq!(world.reconcile_errors("document-service").await, errors, "the no-op reconciles succeeded");

    // Deleted: the claim goes with the service, the volume and its data stay, and an Event says where.
    world.delete::<DocumentService>(&ns, "van-ban").await;
    world.gone::<DocumentService>(&ns, "van-ban").await;
    world.gone::<PersistentVolumeClaim>(&ns, "van-ban-docs-data").await;
    world.volume_phase(&volume_name, "Released").await;
    assert!(document.exists(), "the document survives in {}", document.display());
    let event = world.retained_event(&volume_name).await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains(&format!("govpaas.io/restore-from-volume: {volume_name}")), "{note}");

    // A new DocumentService takes the volume over, with the document in it.
    let restoring = world.document_service("van-ban-moi", "1Gi", DeletePolicy::Retain).restore_from(&volume_name);
    world.apply(&restoring.build()).await;
    world.document_condition("van-ban-moi", "Ready", "True", None).await;
    let restored = world.bound_volume("van-ban-moi-docs-data").await;
    assert_eq!(restored.name_any(), volume_name, "the retained volume, not a new one");
    assert_eq!(restored.labels()["govpaas.io/document-service"], "van-ban-moi");
    assert!(document.exists());
    assert_eq!(std::fs::read_to_string(&document).expect("the document"), "<edXML>Công văn số 123/UBND</edXML>");
}

#[tokio::test]
async fn a_document_service_with_delete_policy_takes_its_volume_with_it() {
    let world = Services::new("svc-delete", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&world.document_service("nhap", "1Gi", DeletePolicy::Delete).build()).await;
    let service = world.document_condition("nhap", "StorageBound", "True", Some("VolumeBound")).await;
    assert!(
        condition(&service.status.unwrap().conditions, "StorageBound")
            .message
            .contains("deleted with this DocumentService")
    );
    let volume = world.bound_volume("nhap-docs-data").await;
    assert_eq!(volume.spec.as_ref().unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    let dir = volume_dir(&volume);
    write_document(&volume);

    world.delete::<DocumentService>(&ns, "nhap").await;
    world.gone::<PersistentVolume>("", &volume.name_any()).await;
    eventually(WAIT, "the volume's directory removed", || async { (!dir.exists()).then_some(()) }).await;
}

/// A claim on a StorageClass that does not exist is a condition and a Warning Event naming the
/// class (not "waiting for its volume"), and no Pod starts.
#[tokio::test]
async fn a_missing_storage_class_is_named_with_an_event() {
    let world = Services::new("svc-class", quota(20, "10Gi", 4)).await;
    let service = world.document_service("luu-tru", "1Gi", DeletePolicy::Delete).storage_class("khong-ton-tai");
    world.apply(&service.build()).await;
    let service = world.document_condition("luu-tru", "StorageBound", "False", Some("StorageClassNotFound")).await;
    let conditions = service.status.unwrap().conditions;
    let message = &condition(&conditions, "StorageBound").message;
    assert!(message.contains("StorageClass \"khong-ton-tai\"") && message.contains("does not exist"), "{message}");
    let ready = condition(&conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "StorageClassNotFound"));
    let events: Api<Event> = world.api();
    let about = ListParams::default().fields("regarding.name=luu-tru,reason=StorageClassNotFound");
    let notes = eventually(WAIT, "the StorageClassNotFound Event", || async {
        let notes: Vec<String> = events.list(&about).await.ok()?.items.into_iter().filter_map(|e| e.note).collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes.iter().any(|n| n.contains("khong-ton-tai")), "{notes:?}");
    assert!(world.running_pods("document-service", "luu-tru").await.is_empty(), "no Pod starts");
}

#[tokio::test]
async fn too_little_quota_is_a_condition_naming_what_is_short() {
    let world = Services::new("svc-quota", quota(2, "5Gi", 2)).await;
    let ns = world.namespace();
    let host = |h: &str| format!("{h}.{}", world.domain());

    // Three replicas where two Pods fit.
    world.apply(&world.portal("lon", &[host("lon")]).replicas(3).build()).await;
    let portal = world.portal_condition("lon", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("for pods:") && message.contains("pods needs 3 but 2 is left"), "{message}");
    assert!(world.get_opt::<Deployment>(&ns, "lon-portal").await.is_none(), "nothing half-done");

    // More storage than the tenant has.
    world.apply(&world.document_service("kho", "10Gi", DeletePolicy::Delete).build()).await;
    let service = world.document_condition("kho", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&service.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("storage needs 10Gi but 5Gi is left"), "{message}");
    assert!(world.get_opt::<PersistentVolumeClaim>(&ns, "kho-docs-data").await.is_none());

    // More public hosts than the tenant may serve (the first Portal, although refused, came first).
    world.apply(&world.portal("nhieu", &[host("a"), host("b")]).build()).await;
    let portal = world.portal_condition("nhieu", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("publicHosts needs 2 but 1 is left"), "{message}");

    // Fixed: it runs.
    world.apply(&world.portal("lon", &[host("lon")]).replicas(2).build()).await;
    world.portal_condition("lon", "Ready", "True", None).await;
}

#[tokio::test]
async fn a_suspended_tenant_runs_its_services_at_zero() {
    let world = Services::new("svc-suspend", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&world.portal("cong", &[format!("cong.{}", world.domain())]).replicas(2).build()).await;
    world.apply(&world.document_service("van-ban", "1Gi", DeletePolicy::Delete).build()).await;
    world.portal_condition("cong", "Ready", "True", None).await;
    world.document_condition("van-ban", "Ready", "True", None).await;

    world.apply_tenant(quota(20, "10Gi", 4), true).await;
    world.condition::<Tenant>("", &world.tenant, "Suspended", "True", None).await;
    let portal = world.portal_condition("cong", "Ready", "False", Some("Suspended")).await;
    assert_eq!(condition(&portal.status.unwrap().conditions, "Suspended").status, "True");
    world.document_condition("van-ban", "Suspended", "True", None).await;
    for deployment in ["cong-portal", "van-ban-docs"] {
        world
            .wait(&ns, deployment, "scaled to zero", |d: &Deployment| (d.spec.replicas == Some(0)).then_some(()))
            .await;
    }
    assert!(world.get_opt::<PodDisruptionBudget>(&ns, "cong-portal").await.is_none(), "no budget for zero Pods");
    // Nothing is deleted: the Ingress, the certificate and the volume stay.
    assert!(world.get_opt::<Ingress>(&ns, "cong-portal").await.is_some());
    assert!(world.get_opt::<Secret>(&ns, "cong-portal-tls").await.is_some());
    assert!(world.get_opt::<PersistentVolumeClaim>(&ns, "van-ban-docs-data").await.is_some());

    world.apply_tenant(quota(20, "10Gi", 4), false).await;
    let portal = world.portal_condition("cong", "Ready", "True", None).await;
    assert!(portal.status.unwrap().conditions.iter().all(|c| c.type_ != "Suspended"));
    world.document_condition("van-ban", "Ready", "True", None).await;
    assert_eq!(world.running_pods("portal", "cong").await.len(), 2);
}

#[tokio::test]
async fn deleting_a_tenant_loses_no_retained_document_volume() {
    let mut world = Services::new("svc-tenant-gone", quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&world.document_service("luu-tru", "1Gi", DeletePolicy::Retain).build()).await;
    world.document_condition("luu-tru", "Ready", "True", None).await;
    let volume = world.bound_volume("luu-tru-docs-data").await;
    let volume_name = volume.name_any();
    world.volumes.push(volume_name.clone());
    let document = write_document(&volume);

    // The whole tenant goes: its namespace, the service, the claim.
    world.delete::<Tenant>("", &world.tenant).await;
    let namespaces = Api::<Namespace>::all(world.client.clone());
    eventually(Duration::from_secs(180), "the tenant namespace deleted", || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    let released = world.volume_phase(&volume_name, "Released").await;
    assert_eq!(released.spec.as_ref().unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(released.labels()["govpaas.io/tenant"], world.tenant);
    assert!(document.exists(), "the documents outlive their tenant");
    world.retained_event(&volume_name).await;

    // The agency comes back: its new DocumentService takes the volume over.
    world.apply_tenant(quota(20, "10Gi", 4), false).await;
    world.tenant_ready(&world.tenant).await;
    let restoring = world.document_service("luu-tru", "1Gi", DeletePolicy::Retain).restore_from(&volume_name);
    world.apply(&restoring.build()).await;
    world.document_condition("luu-tru", "Ready", "True", None).await;
    assert_eq!(world.bound_volume("luu-tru-docs-data").await.name_any(), volume_name);
    assert!(document.exists());
}

#[tokio::test]
async fn pods_the_quota_refuses_later_are_reported() {
    let world = Services::new("svc-failed-create", quota(3, "5Gi", 2)).await;
    let ns = world.namespace();
    world.apply(&world.portal("cong", &[format!("cong.{}", world.domain())]).replicas(2).build()).await;
    world.portal_condition("cong", "Ready", "True", None).await;

    // Another workload takes the last Pod, then the admin lowers the quota under what runs.
    let tool: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "cong-cu", "namespace": ns },
        "spec": {
            "securityContext": { "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "cong-cu",
                "image": "registry.example.vn/cong-cu:1",
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
            }],
        },
    }))
    .expect("a Pod");
    world.apply(&tool).await;
    world.apply_tenant(quota(2, "5Gi", 2), false).await;
    world
        .wait(&ns, "govpaas-quota", "pods quota lowered to 2", |q: &ResourceQuota| {
            (q.spec.as_ref()?.hard.as_ref()?.get("pods")?.0 == "2").then_some(())
        })
        .await;

    // A Portal Pod goes (a node drained, say): its ReplicaSet may not replace it, and status says so.
    let pod = world.running_pods("portal", "cong").await.pop().expect("a portal Pod").name_any();
    world.delete::<Pod>(&ns, &pod).await;
    let portal = world.portal_condition("cong", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.starts_with("Pods cannot be created:") && message.contains("exceeded quota"), "{message}");
}

//! Portals and DocumentServices on the real control plane: the chart installed, the operator
//! running as a local process with the chart's ServiceAccount token, one operator per test scoped
//! to that test's Tenant (see `govpaas_tests::operator`). Pods run on kwok's nodes; volumes are
//! real directories made by kube-controller-manager's hostPath provisioner, so a retained volume's
//! data can be checked on disk.

use std::path::PathBuf;
use std::time::Duration;

use govpaas_crds::{DocumentService, Portal};
use govpaas_pki::verify::{chain_from_pem, verify_server_chain};
use govpaas_pki::{CertificateAuthority, ExpectedLeaf, LeafKind, TrustAnchors, inspect_leaf};
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, cluster, eventually, secret_data, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(120);

/// One test's world: its operator, its Tenant (deleted at the end), a client.
struct World {
    cluster: &'static Cluster,
    operator: OperatorProcess,
    client: Client,
    base_domain: String,
    /// The Tenant's name, which is also its namespace's.
    tenant: String,
    /// Retained volumes the test made, deleted (with their directories) at the end.
    volumes: Vec<String>,
}

impl World {
    /// Starts an operator for a new scope and applies a Province Tenant with `quota`, waiting until
    /// it is provisioned.
    async fn new(prefix: &str, quota: &str) -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        let base_domain = operator::ensure_platform(cluster);
        let tenant = unique_name(prefix);
        let operator = OperatorProcess::start(cluster, &tenant);
        let world =
            World { cluster, operator, client: cluster.client().await, base_domain, tenant, volumes: Vec::new() };
        world.apply_tenant(quota, false);
        world.wait_tenant_ready().await;
        world
    }

    fn apply_tenant(&self, quota: &str, suspended: bool) {
        self.cluster.apply(&format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"H49\"\n    displayName: \"Ủy ban nhân dân tỉnh Quảng Nam\"\n    level: Province\n  quota: {quota}\n  suspended: {suspended}\n",
            name = self.tenant,
            scope = self.operator.scope_label(),
        ));
    }

    async fn wait_tenant_ready(&self) {
        let api: Api<govpaas_crds::Tenant> = Api::all(self.client.clone());
        let what = format!("Tenant {} Ready", self.tenant);
        eventually(WAIT, &what, || async {
            let tenant = api.get(&self.tenant).await.ok()?;
            tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
        // The namespace carries the domain the admission policies check hosts against.
        let namespace = self.namespace();
        eventually(WAIT, "the tenant namespace's domain annotation", || async {
            let ns =
                Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone()).get(&namespace).await.ok()?;
            ns.annotations().contains_key("govpaas.io/domain").then_some(())
        })
        .await;
    }

    fn namespace(&self) -> String {
        self.tenant.clone()
    }

    fn domain(&self) -> String {
        format!("{}.{}", self.tenant, self.base_domain)
    }

    fn apply(&self, manifest: &str) {
        self.cluster.apply(manifest);
    }

    /// `kubectl apply` that is expected to fail: its stderr.
    fn apply_refused(&self, manifest: &str) -> String {
        let (ok, _, err) = self.cluster.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(!ok, "kubectl apply was expected to fail:\n{manifest}");
        err
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    /// Waits until `check` finds what it looks for in the named object of kind `K`.
    async fn wait<K, T>(&self, name: &str, what: &str, check: impl Fn(&K) -> Option<T>) -> T
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let what = format!("{what} ({name})");
        eventually(WAIT, &what, || async { api.get(name).await.ok().and_then(|o| check(&o)) }).await
    }

    async fn portal_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Portal {
        self.wait::<Portal, _>(name, &format!("Portal {type_}={status} {}", reason.unwrap_or("")), |p| {
            has_condition(p.status.as_ref().map(|s| s.conditions.as_slice()), type_, status, reason).then(|| p.clone())
        })
        .await
    }

    async fn document_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> DocumentService {
        self.wait::<DocumentService, _>(
            name,
            &format!("DocumentService {type_}={status} {}", reason.unwrap_or("")),
            |d| {
                has_condition(d.status.as_ref().map(|s| s.conditions.as_slice()), type_, status, reason)
                    .then(|| d.clone())
            },
        )
        .await
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
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), operator::NAMESPACE);
        let now = OffsetDateTime::now_utc();
        let platform = secrets.get("govpaas-ca").await.expect("the platform CA Secret");
        let platform = CertificateAuthority::import_platform_ca(
            &secret_data(&platform, "tls.crt"),
            &secret_data(&platform, "tls.key"),
            now,
        )
        .expect("a usable platform CA");
        let tenant = secrets.get(&format!("govpaas-tenant-ca-{}", self.tenant)).await.expect("the tenant CA Secret");
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
        let secret = self.api::<Secret>().get(secret).await.expect("the TLS Secret");
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
        let name = "dichvucong-portal";
        vec![
            self.api::<Portal>().get("dichvucong").await.expect("Portal").metadata.resource_version,
            self.api::<Deployment>().get(name).await.expect("Deployment").metadata.resource_version,
            self.api::<k8s_openapi::api::core::v1::Service>()
                .get(name)
                .await
                .expect("Service")
                .metadata
                .resource_version,
            self.api::<Ingress>().get(name).await.expect("Ingress").metadata.resource_version,
            self.api::<PodDisruptionBudget>().get(name).await.expect("PDB").metadata.resource_version,
            self.api::<Secret>().get(&format!("{name}-tls")).await.expect("Secret").metadata.resource_version,
        ]
    }

    /// The operator's `/metrics`.
    async fn metrics(&self) -> String {
        self.operator.metrics().await
    }

    /// How many times the operator logged applying the `kind` `name` (a debug line of each
    /// reconcile that applied).
    fn reconciles(&self, kind: &str, name: &str) -> usize {
        let line = format!("applied {kind} {}/{name}", self.namespace());
        self.operator.log().lines().filter(|l| l.contains(&line)).count()
    }

    /// Waits for the volume under a bound claim and returns it.
    async fn bound_volume(&self, claim: &str) -> PersistentVolume {
        let volume_name = self
            .wait::<PersistentVolumeClaim, _>(claim, "the claim Bound", |c| {
                (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then(|| c.spec.as_ref()?.volume_name.clone())?
            })
            .await;
        Api::<PersistentVolume>::all(self.client.clone()).get(&volume_name).await.expect("the bound volume")
    }

    /// Waits until `volume` has `phase`.
    async fn volume_phase(&self, volume: &str, phase: &str) -> PersistentVolume {
        let api = Api::<PersistentVolume>::all(self.client.clone());
        eventually(WAIT, &format!("PersistentVolume {volume} {phase}"), || async {
            let pv = api.get(volume).await.ok()?;
            (pv.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(pv)
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

impl Drop for World {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "tenant", &self.tenant, "--ignore-not-found", "--wait=false"])
            .output();
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

fn has_condition(conditions: Option<&[Condition]>, type_: &str, status: &str, reason: Option<&str>) -> bool {
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

fn quota(pods: u32, storage: &str, public_hosts: u32) -> String {
    format!(
        "{{cpu: \"8\", memory: 16Gi, storage: {storage}, pods: {pods}, services: 10, publicHosts: {public_hosts}, lgspApis: 5}}"
    )
}

fn portal_manifest(name: &str, namespace: &str, hosts: &[String], replicas: i32, extra: &str) -> String {
    format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Portal\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  hosts: [{}]\n  replicas: {replicas}\n{extra}",
        hosts.join(", ")
    )
}

fn document_service(name: &str, namespace: &str, size: &str, policy: &str, annotations: &str) -> String {
    format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DocumentService\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}spec:\n  storage:\n    size: {size}\n    deletePolicy: {policy}\n  exchange:\n    enabled: true\n"
    )
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
    let world = World::new("svc-portal", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("dichvucong.{}", world.domain()), world.domain()];
    world.apply(&portal_manifest("dichvucong", &ns, &hosts, 2, "  mode: Full\n"));

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
    let deployment = world.api::<Deployment>().get("dichvucong-portal").await.expect("the Deployment");
    assert_eq!(deployment.status.as_ref().and_then(|s| s.available_replicas), Some(2));
    let pods = world.running_pods("portal", "dichvucong").await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
        assert!(node.starts_with("kwok-node-"), "{node}");
    }

    // The Ingress routes both hosts, with TLS from the Secret.
    let ingress = world.api::<Ingress>().get("dichvucong-portal").await.expect("the Ingress");
    let spec = ingress.spec.expect("spec");
    let tls = &spec.tls.expect("tls")[0];
    assert_eq!(tls.hosts.as_deref(), Some(hosts.as_slice()));
    assert_eq!(tls.secret_name.as_deref(), Some("dichvucong-portal-tls"));
    let rule_hosts: Vec<String> = spec.rules.expect("rules").into_iter().filter_map(|r| r.host).collect();
    assert_eq!(rule_hosts, hosts);
    world.assert_certificate("dichvucong-portal-tls", &hosts).await;

    // Two replicas: a budget lets drains take one at a time.
    let budget = world.api::<PodDisruptionBudget>().get("dichvucong-portal").await.expect("the PodDisruptionBudget");
    assert_eq!(
        budget.spec.and_then(|s| s.max_unavailable),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    // `kubectl get portal` answers the first question.
    let line = world.cluster.kubectl_ok(&["get", "portal", "dichvucong", "-n", &ns, "--no-headers"]);
    assert!(line.contains(&format!("https://{}/", hosts[0])) && line.contains("True"), "{line}");

    // The certificate's expiry is in the operator's metrics too, and the reconciles are counted.
    let not_after = certificate.not_after.expect("notAfter").0.as_second();
    let metrics = world.metrics().await;
    let series = metrics
        .lines()
        .find(|l| {
            l.contains("certificate_expiration_timestamp_seconds{")
                && l.contains("secret=\"dichvucong-portal-tls\"")
                && l.contains(&format!("namespace=\"{ns}\""))
        })
        .unwrap_or_else(|| panic!("no expiry gauge for the portal's certificate in:\n{metrics}"));
    assert!(series.ends_with(&format!(" {not_after}")), "{series} (notAfter {not_after})");
    assert!(metrics.lines().any(|l| l.contains("reconciles") && l.contains("controller=\"portal\"")), "{metrics}");

    // A steady world is quiet: a reconcile of an unchanged Portal writes nothing.
    world.cluster.kubectl_ok(&["label", "ingress", "dichvucong-portal", "-n", &ns, "touched-by-hand=yes"]);
    let versions = world.resource_versions().await;
    let reconciles = world.reconciles("Portal", "dichvucong");
    eventually(WAIT, "a reconcile after the hand-made label", || async {
        (world.reconciles("Portal", "dichvucong") > reconciles).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.resource_versions().await, versions, "a no-op reconcile changed something");

    // A hand edit of what the operator owns is taken back.
    world.cluster.kubectl_ok(&["scale", "deployment", "dichvucong-portal", "-n", &ns, "--replicas=5"]);
    world
        .wait::<Deployment, _>("dichvucong-portal", "replicas back to 2", |d| {
            (d.spec.replicas == Some(2) && d.metadata.generation > deployment.metadata.generation).then_some(())
        })
        .await;
}

#[tokio::test]
async fn a_host_outside_the_tenant_domain_is_refused_at_admission() {
    let world = World::new("svc-admission", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("cong.{}", world.domain()), "dichvucong.gov.vn".to_owned()];
    let err = world.apply_refused(&portal_manifest("lac-duong", &ns, &hosts, 1, ""));
    assert!(err.contains("dichvucong.gov.vn must be the tenant domain"), "{err}");
    assert!(err.contains(&world.domain()), "{err}");
    let err = world.apply_refused(&format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: DocumentService\nmetadata:\n  name: van-ban\n  namespace: {ns}\nspec:\n  host: vanban.other.gov.vn\n"
    ));
    assert!(err.contains("spec.host: vanban.other.gov.vn must be the tenant domain"), "{err}");
    assert!(world.api::<Portal>().get_opt("lac-duong").await.expect("get").is_none());
}

#[tokio::test]
async fn changes_apply_in_place() {
    let world = World::new("svc-change", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let hosts = vec![format!("cong.{}", world.domain()), format!("www.{}", world.domain())];
    world.apply(&portal_manifest("cong", &ns, &hosts, 2, ""));
    world.portal_condition("cong", "Ready", "True", None).await;
    let before = world.api::<Deployment>().get("cong-portal").await.expect("the Deployment");

    // Fewer hosts, more replicas, a bigger size, the agency's own image: all in place.
    let kept = vec![hosts[0].clone()];
    world.apply(&portal_manifest(
        "cong",
        &ns,
        &kept,
        3,
        "  size: medium\n  image: registry.example.vn/cong-dvc:2.0.1\n",
    ));
    let deployment = world
        .wait::<Deployment, _>("cong-portal", "3 replicas of the new image", |d| {
            let pod = d.spec.template.spec.as_ref()?;
            let ready = d.status.as_ref()?.ready_replicas? == 3 && d.spec.replicas == Some(3);
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
        .wait::<Ingress, _>("cong-portal", "the Ingress with one host", |i| {
            let rules = i.spec.as_ref()?.rules.as_ref()?;
            (rules.len() == 1 && rules[0].host.as_deref() == Some(kept[0].as_str())).then_some(())
        })
        .await;
    let portal = world.portal_condition("cong", "Ready", "True", None).await;
    assert_eq!(portal.status.unwrap().ready_replicas, Some(3));
    world.assert_certificate("cong-portal-tls", &kept).await;

    // Back to one replica: the budget goes, since one Pod cannot spare any.
    world.apply(&portal_manifest(
        "cong",
        &ns,
        &kept,
        1,
        "  size: medium\n  image: registry.example.vn/cong-dvc:2.0.1\n",
    ));
    let budgets = world.api::<PodDisruptionBudget>();
    eventually(WAIT, "the PodDisruptionBudget pruned", || async {
        budgets.get_opt("cong-portal").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_document_service_keeps_its_volume_when_deleted_and_a_new_one_restores_it() {
    let mut world = World::new("svc-retain", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&document_service("van-ban", &ns, "1Gi", "Retain", ""));

    let service = world.document_condition("van-ban", "Ready", "True", None).await;
    let status = service.status.expect("status");
    let storage = status.storage.expect("storage status");
    assert_eq!(storage.claim_name.as_deref(), Some("van-ban-docs-data"));
    assert_eq!(storage.phase.as_deref(), Some("Bound"));
    let bound = condition(&status.conditions, "StorageBound");
    assert_eq!((bound.status.as_str(), bound.reason.as_str()), ("True", "VolumeRetained"));
    assert!(status.signing_certificate.is_some(), "a document-signing certificate");
    assert_eq!(condition(&status.conditions, "RoutesRegistered").status, "False");

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

    // Quiet once settled: a reconcile rewrites neither the service, its claim, its volume nor its
    // workload.
    let versions = || async {
        let volume = Api::<PersistentVolume>::all(world.client.clone()).get(&volume_name).await.expect("volume");
        vec![
            world.api::<DocumentService>().get("van-ban").await.expect("service").metadata.resource_version,
            world
                .api::<PersistentVolumeClaim>()
                .get("van-ban-docs-data")
                .await
                .expect("claim")
                .metadata
                .resource_version,
            world.api::<Deployment>().get("van-ban-docs").await.expect("deployment").metadata.resource_version,
            world.api::<Secret>().get("van-ban-docs-signing").await.expect("signing").metadata.resource_version,
            volume.metadata.resource_version,
        ]
    };
    world.cluster.kubectl_ok(&["label", "service", "van-ban-docs", "-n", &ns, "touched-by-hand=yes"]);
    let before = versions().await;
    let applied = world.reconciles("DocumentService", "van-ban");
    eventually(WAIT, "a reconcile after the hand-made label", || async {
        (world.reconciles("DocumentService", "van-ban") > applied).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(versions().await, before, "a no-op reconcile changed something");

    // Deleted: the claim goes with the service, the volume and its data stay, and an Event says where.
    world.cluster.kubectl_ok(&["delete", "documentservice", "van-ban", "-n", &ns, "--wait=true"]);
    let claims = world.api::<PersistentVolumeClaim>();
    eventually(WAIT, "the claim deleted with its service", || async {
        claims.get_opt("van-ban-docs-data").await.ok()?.is_none().then_some(())
    })
    .await;
    world.volume_phase(&volume_name, "Released").await;
    assert!(document.exists(), "the document survives in {}", document.display());
    let event = world.retained_event(&volume_name).await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains(&format!("govpaas.io/restore-from-volume: {volume_name}")), "{note}");

    // A new DocumentService takes the volume over, with the document in it.
    let annotation = format!("  annotations:\n    govpaas.io/restore-from-volume: {volume_name}\n");
    world.apply(&document_service("van-ban-moi", &ns, "1Gi", "Retain", &annotation));
    world.document_condition("van-ban-moi", "Ready", "True", None).await;
    let restored = world.bound_volume("van-ban-moi-docs-data").await;
    assert_eq!(restored.name_any(), volume_name, "the retained volume, not a new one");
    assert_eq!(restored.labels()["govpaas.io/document-service"], "van-ban-moi");
    assert!(document.exists());
    assert_eq!(std::fs::read_to_string(&document).expect("the document"), "<edXML>Công văn số 123/UBND</edXML>");
}

#[tokio::test]
async fn a_document_service_with_delete_policy_takes_its_volume_with_it() {
    let world = World::new("svc-delete", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&document_service("nhap", &ns, "1Gi", "Delete", ""));
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

    world.cluster.kubectl_ok(&["delete", "documentservice", "nhap", "-n", &ns]);
    let volumes = Api::<PersistentVolume>::all(world.client.clone());
    let name = volume.name_any();
    eventually(WAIT, "the volume deleted", || async { volumes.get_opt(&name).await.ok()?.is_none().then_some(()) })
        .await;
    eventually(WAIT, "the volume's directory removed", || async { (!dir.exists()).then_some(()) }).await;
}

/// A claim on a StorageClass that does not exist is a condition and a Warning Event naming the
/// class (not "waiting for its volume"), and no Pod starts.
#[tokio::test]
async fn a_missing_storage_class_is_named_with_an_event() {
    let world = World::new("svc-class", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    let manifest = document_service("luu-tru", &ns, "1Gi", "Delete", "")
        .replace("    deletePolicy: Delete\n", "    deletePolicy: Delete\n    storageClassName: khong-ton-tai\n");
    world.apply(&manifest);
    let service = world.document_condition("luu-tru", "StorageBound", "False", Some("StorageClassNotFound")).await;
    let conditions = service.status.unwrap().conditions;
    let message = &condition(&conditions, "StorageBound").message;
    assert!(message.contains("StorageClass \"khong-ton-tai\"") && message.contains("does not exist"), "{message}");
    let ready = condition(&conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "StorageClassNotFound"));
    let notes = eventually(WAIT, "the StorageClassNotFound Event", || async {
        let notes = world.cluster.kubectl_ok(&[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "--field-selector",
            "regarding.name=luu-tru,reason=StorageClassNotFound",
            "-o",
            "jsonpath={.items[*].note}",
        ]);
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes.contains("khong-ton-tai"), "{notes}");
}

#[tokio::test]
async fn too_little_quota_is_a_condition_naming_what_is_short() {
    let world = World::new("svc-quota", &quota(2, "5Gi", 2)).await;
    let ns = world.namespace();
    let host = |h: &str| format!("{h}.{}", world.domain());

    // Three replicas where two Pods fit.
    world.apply(&portal_manifest("lon", &ns, &[host("lon")], 3, ""));
    let portal = world.portal_condition("lon", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("for pods:") && message.contains("pods needs 3 but 2 is left"), "{message}");
    assert!(world.api::<Deployment>().get_opt("lon-portal").await.unwrap().is_none(), "nothing half-done");

    // More storage than the tenant has.
    world.apply(&document_service("kho", &ns, "10Gi", "Delete", ""));
    let service = world.document_condition("kho", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&service.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("storage needs 10Gi but 5Gi is left"), "{message}");
    assert!(world.api::<PersistentVolumeClaim>().get_opt("kho-docs-data").await.unwrap().is_none());

    // More public hosts than the tenant may serve (the first Portal, although refused, came first).
    world.apply(&portal_manifest("nhieu", &ns, &[host("a"), host("b")], 1, ""));
    let portal = world.portal_condition("nhieu", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.contains("publicHosts needs 2 but 1 is left"), "{message}");

    // Fixed: it runs.
    world.apply(&portal_manifest("lon", &ns, &[host("lon")], 2, ""));
    world.portal_condition("lon", "Ready", "True", None).await;
}

#[tokio::test]
async fn a_suspended_tenant_runs_its_services_at_zero() {
    let world = World::new("svc-suspend", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&portal_manifest("cong", &ns, &[format!("cong.{}", world.domain())], 2, ""));
    world.apply(&document_service("van-ban", &ns, "1Gi", "Delete", ""));
    world.portal_condition("cong", "Ready", "True", None).await;
    world.document_condition("van-ban", "Ready", "True", None).await;

    world.apply_tenant(&quota(20, "10Gi", 4), true);
    let portal = world.portal_condition("cong", "Ready", "False", Some("Suspended")).await;
    assert_eq!(condition(&portal.status.unwrap().conditions, "Suspended").status, "True");
    world.document_condition("van-ban", "Suspended", "True", None).await;
    for deployment in ["cong-portal", "van-ban-docs"] {
        world.wait::<Deployment, _>(deployment, "scaled to zero", |d| (d.spec.replicas == Some(0)).then_some(())).await;
    }
    let budgets = world.api::<PodDisruptionBudget>();
    assert!(budgets.get_opt("cong-portal").await.unwrap().is_none(), "no budget for zero Pods");
    // Nothing is deleted: the Ingress, the certificate and the volume stay.
    assert!(world.api::<Ingress>().get_opt("cong-portal").await.unwrap().is_some());
    assert!(world.api::<PersistentVolumeClaim>().get_opt("van-ban-docs-data").await.unwrap().is_some());

    world.apply_tenant(&quota(20, "10Gi", 4), false);
    let portal = world.portal_condition("cong", "Ready", "True", None).await;
    assert!(portal.status.unwrap().conditions.iter().all(|c| c.type_ != "Suspended"));
    world.document_condition("van-ban", "Ready", "True", None).await;
    assert_eq!(world.running_pods("portal", "cong").await.len(), 2);
}

#[tokio::test]
async fn deleting_a_tenant_loses_no_retained_document_volume() {
    let mut world = World::new("svc-tenant-gone", &quota(20, "10Gi", 4)).await;
    let ns = world.namespace();
    world.apply(&document_service("luu-tru", &ns, "1Gi", "Retain", ""));
    world.document_condition("luu-tru", "Ready", "True", None).await;
    let volume = world.bound_volume("luu-tru-docs-data").await;
    let volume_name = volume.name_any();
    world.volumes.push(volume_name.clone());
    let document = write_document(&volume);

    // The whole tenant goes: its namespace, the service, the claim.
    world.cluster.kubectl_ok(&["delete", "tenant", &world.tenant, "--wait=false"]);
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(world.client.clone());
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
    world.apply_tenant(&quota(20, "10Gi", 4), false);
    world.wait_tenant_ready().await;
    let annotation = format!("  annotations:\n    govpaas.io/restore-from-volume: {volume_name}\n");
    world.apply(&document_service("luu-tru", &ns, "1Gi", "Retain", &annotation));
    world.document_condition("luu-tru", "Ready", "True", None).await;
    assert_eq!(world.bound_volume("luu-tru-docs-data").await.name_any(), volume_name);
    assert!(document.exists());
}

#[tokio::test]
async fn pods_the_quota_refuses_later_are_reported() {
    let world = World::new("svc-failed-create", &quota(3, "5Gi", 2)).await;
    let ns = world.namespace();
    world.apply(&portal_manifest("cong", &ns, &[format!("cong.{}", world.domain())], 2, ""));
    world.portal_condition("cong", "Ready", "True", None).await;

    // Another workload takes the last Pod, then the admin lowers the quota under what runs.
    world.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: cong-cu, namespace: {ns}}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
    - name: cong-cu
      image: registry.example.vn/cong-cu:1
      securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#
    ));
    world.apply_tenant(&quota(2, "5Gi", 2), false);
    world
        .wait::<k8s_openapi::api::core::v1::ResourceQuota, _>("govpaas-quota", "pods quota lowered to 2", |q| {
            (q.spec.as_ref()?.hard.as_ref()?.get("pods")?.0 == "2").then_some(())
        })
        .await;

    // A Portal Pod goes (a node drained, say): its ReplicaSet may not replace it, and status says so.
    let pod = world.running_pods("portal", "cong").await.pop().expect("a portal Pod").name_any();
    world.cluster.kubectl_ok(&["delete", "pod", &pod, "-n", &ns, "--wait=false"]);
    let portal = world.portal_condition("cong", "Ready", "False", Some("QuotaExceeded")).await;
    let message = condition(&portal.status.unwrap().conditions, "Ready").message.clone();
    assert!(message.starts_with("Pods cannot be created:") && message.contains("exceeded quota"), "{message}");
}

//! The tenant controller on the real control plane: the chart installed, the operator running as a
//! local process with the chart's ServiceAccount token, one operator per test scoped to that
//! test's Tenants (see `govpaas_tests::world`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use govpaas_crds::AgencyLevel::{self, Commune, Department, Province, Unit};
use govpaas_crds::quantity::Amount;
use govpaas_crds::tenant::{Exposure, NamespaceQuota};
use govpaas_crds::{Tenant, TenantStatus};
use govpaas_tests::operator;
use govpaas_tests::world::{PortalBuilder, Quota, Reported, TenantBuilder, WAIT, World, condition, service};
use govpaas_tests::{TestNamespace, eventually};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, LimitRange, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceQuota, ResourceRequirements, SeccompProfile, Secret,
    SecurityContext, Service, VolumeResourceRequirements,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

/// The ResourceQuota the operator writes in each tenant namespace.
const RESOURCE_QUOTA: &str = "govpaas-quota";
/// The ConfigMap of the platform's trust (and the tenant's CA) in each tenant namespace.
const TRUST_BUNDLE: &str = "govpaas-trust-bundle";
/// The label a test puts on a trust bundle by hand, to wake its tenant's reconcile.
const TOUCHED_LABEL: &str = "govpaas-tests/touched";

/// The shared world, whose Tenants are named `<scope>-<short name>` and called "Cơ quan <short
/// name>".
struct Agencies {
    world: World,
}

impl Deref for Agencies {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl Agencies {
    async fn new(prefix: &str) -> Self {
        Agencies { world: World::new(prefix).await }
    }

    /// The full name of this world's Tenant `short`.
    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.scope)
    }

    /// The Tenant `short`, "Cơ quan <short>", under the Tenant `parent` (a short name too).
    fn agency(&self, short: &str, code: &str, level: AgencyLevel, parent: Option<&str>, quota: Quota) -> TenantBuilder {
        let agency = self
            .tenant(&self.name(short))
            .code(code)
            .display_name(&format!("Cơ quan {short}"))
            .level(level)
            .quota(quota);
        match parent {
            Some(parent) => agency.parent(&self.name(parent)),
            None => agency,
        }
    }

    /// Applies a Tenant; its name.
    async fn apply_tenant(&self, tenant: TenantBuilder) -> String {
        self.apply(&tenant.build()).await.name_any()
    }

    /// Waits until the Tenant `name` has the condition `type_` with `status` (and `reason`, when
    /// given), stated for its current generation; that condition.
    async fn tenant_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Condition {
        let tenant: Tenant = self.condition("", name, type_, status, reason).await;
        condition(tenant.conditions(), type_).clone()
    }

    /// The Tenant's status as stored now.
    async fn status(&self, name: &str) -> TenantStatus {
        self.get::<Tenant>("", name).await.status.unwrap_or_else(|| panic!("Tenant {name} has no status"))
    }

    /// The hard limit `key` of the ResourceQuota in `namespace`.
    async fn quota_hard(&self, namespace: &str, key: &str) -> Amount {
        hard(&self.get(namespace, RESOURCE_QUOTA).await, key)
    }

    /// Runs kubectl; (success, stdout and stderr).
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self.cluster.kubectl().args(args).output().expect("running kubectl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Creates `object` as `user` (`kubectl --as`); kubectl's message when it is refused.
    fn create_as<K: Serialize>(&self, user: &str, object: &K) -> Result<(), String> {
        let json = serde_json::to_string(object).expect("an object serializes");
        let (ok, _, err) = self.cluster.kubectl_stdin(&["--as", user, "create", "-f", "-"], &json);
        if ok { Ok(()) } else { Err(err) }
    }

    /// The Events about cluster-scoped objects (they live in `default`) that the field selector
    /// `fields` picks.
    async fn events(&self, fields: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events.list(&ListParams::default().fields(fields)).await.expect("listing Events").items
    }

    /// Waits for at least one Event `fields` picks; all of them.
    async fn some_events(&self, what: &str, fields: &str) -> Vec<Event> {
        eventually(WAIT, what, || async {
            let events = self.events(fields).await;
            (!events.is_empty()).then_some(events)
        })
        .await
    }

    /// Every object of `tenants` with its resourceVersion: the Tenant, its namespace and what the
    /// operator made in it and for it (quota, limits, policies, bindings, reader role, trust
    /// bundle), and its CA Secret in the operator's namespace.
    async fn resource_versions(&self, tenants: &[String]) -> BTreeMap<String, String> {
        let mut versions = BTreeMap::new();
        let mut record = |kind: &str, object: &ObjectMeta| {
            let name = object.name.clone().unwrap_or_default();
            let namespace = object.namespace.clone().unwrap_or_default();
            versions.insert(key(kind, &namespace, &name), object.resource_version.clone().unwrap_or_default());
        };
        let lp = ListParams::default();
        for tenant in tenants {
            record("Tenant", &self.get::<Tenant>("", tenant).await.metadata);
            record("Namespace", &self.get::<Namespace>("", tenant).await.metadata);
            for rq in Api::<ResourceQuota>::namespaced(self.client.clone(), tenant).list(&lp).await.unwrap() {
                record("ResourceQuota", &rq.metadata);
            }
            for lr in Api::<LimitRange>::namespaced(self.client.clone(), tenant).list(&lp).await.unwrap() {
                record("LimitRange", &lr.metadata);
            }
            for np in Api::<NetworkPolicy>::namespaced(self.client.clone(), tenant).list(&lp).await.unwrap() {
                record("NetworkPolicy", &np.metadata);
            }
            for rb in Api::<RoleBinding>::namespaced(self.client.clone(), tenant).list(&lp).await.unwrap() {
                record("RoleBinding", &rb.metadata);
            }
            let reader = format!("govpaas-tenant-{tenant}");
            if let Some(role) = self.get_opt::<ClusterRole>("", &reader).await {
                record("ClusterRole", &role.metadata);
            }
            if let Some(binding) = self.get_opt::<ClusterRoleBinding>("", &reader).await {
                record("ClusterRoleBinding", &binding.metadata);
            }
            record("ConfigMap", &self.get::<ConfigMap>(tenant, TRUST_BUNDLE).await.metadata);
            record("Secret", &self.get::<Secret>(operator::NAMESPACE, &tenant_ca_secret(tenant)).await.metadata);
        }
        versions
    }

    /// Labels each tenant's trust bundle by hand ([`TOUCHED_LABEL`]`: <round>`, new each round): a
    /// change that wakes the tenant's reconcile and that the operator must leave alone. Our
    /// writes' resourceVersions go into `versions`, so that only someone else's write shows.
    async fn touch_trust_bundles(&self, tenants: &[String], round: u32, versions: &mut BTreeMap<String, String>) {
        let mut labels = BTreeMap::new();
        labels.insert(TOUCHED_LABEL, round.to_string());
        let patch = serde_json::json!({ "metadata": { "labels": labels } });
        for tenant in tenants {
            let bundles: Api<ConfigMap> = Api::namespaced(self.client.clone(), tenant);
            let touched = bundles
                .patch(TRUST_BUNDLE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|err| panic!("labelling the trust bundle of {tenant}: {err}"));
            versions.insert(key("ConfigMap", tenant, TRUST_BUNDLE), touched.resource_version().unwrap_or_default());
        }
    }

    /// The tenant reconciles the running operator process has finished, once it serves its
    /// metrics.
    async fn tenant_reconciles(&self) -> f64 {
        eventually(WAIT, "the operator's metrics", || async {
            self.operator().try_metrics().await.map(|metrics| operator::reconciles(&metrics, "tenant"))
        })
        .await
    }

    /// Waits until the running operator process has finished at least `count` tenant reconciles.
    async fn tenant_reconciles_reach(&self, count: f64) {
        eventually(WAIT, &format!("{count} finished tenant reconciles"), || async {
            let finished = self.operator().try_metrics().await.map(|m| operator::reconciles(&m, "tenant"))?;
            (finished >= count).then_some(())
        })
        .await;
    }

    /// The operator's Events about `tenants`, by name, each with its resourceVersion (an Event
    /// published again is a new one, or its series counted up).
    async fn events_about(&self, tenants: &[String]) -> BTreeMap<String, String> {
        self.events("reportingController=govpaas.io/operator")
            .await
            .into_iter()
            .filter(|event| {
                let regarding = event.regarding.as_ref().and_then(|r| r.name.as_deref());
                regarding.is_some_and(|name| tenants.iter().any(|t| t == name))
            })
            .map(|event| (event.name_any(), event.resource_version().unwrap_or_default()))
            .collect()
    }
}

/// A Tenant quota; public hosts and LGSP APIs as many as Services.
fn quota(cpu: &str, memory: &str, storage: &str, pods: i32, services: i32) -> Quota {
    Quota::default()
        .cpu(cpu)
        .memory(memory)
        .storage(storage)
        .pods(pods)
        .services(services)
        .public_hosts(services)
        .lgsp_apis(services)
}

/// One namespace's share of its tenant's quota.
fn share(cpu: &str, memory: &str, storage: &str, pods: i32, services: i32) -> NamespaceQuota {
    NamespaceQuota {
        cpu: Quantity(cpu.into()),
        memory: Quantity(memory.into()),
        storage: Quantity(storage.into()),
        pods,
        services,
    }
}

fn amount(q: &Quantity) -> Amount {
    Amount::of(q).unwrap_or_else(|e| panic!("{e}"))
}

fn hard(rq: &ResourceQuota, key: &str) -> Amount {
    amount(&rq.spec.as_ref().and_then(|s| s.hard.as_ref()).expect("hard")[key])
}

/// Every quantity of `map`, as amounts (spellings differ: `1024Mi` is `1Gi`).
fn amounts(map: &BTreeMap<String, Quantity>) -> BTreeMap<String, Amount> {
    map.iter().map(|(key, quantity)| (key.clone(), amount(quantity))).collect()
}

/// The key of an object in a snapshot of resourceVersions.
fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// The Secret of the tenant's CA in the operator's namespace.
fn tenant_ca_secret(tenant: &str) -> String {
    format!("govpaas-tenant-ca-{tenant}")
}

/// Whether an operator's `/metrics` show the tenant's CA among its certificate gauges: only a
/// reconcile of that Tenant records it, as it loads the CA, before it applies the tenant's objects.
fn records_tenant_ca(metrics: &str, tenant: &str) -> bool {
    let secret = tenant_ca_secret(tenant);
    let labels = [("namespace", operator::NAMESPACE), ("secret", secret.as_str()), ("kind", "tenant-ca")];
    operator::metric_sum(metrics, "govpaas_certificate_expiration_timestamp_seconds", &labels) > 0.0
}

fn notes(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| e.note.clone()).collect()
}

fn object_meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), namespace: Some(namespace.to_owned()), ..ObjectMeta::default() }
}

/// A Pod spec that Pod Security `restricted` admits, requesting (and limited to) `cpu` if given.
fn restricted(cpu: Option<&str>) -> PodSpec {
    let resources = cpu.map(|cpu| {
        let cpu = BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into()))]);
        ResourceRequirements { requests: Some(cpu.clone()), limits: Some(cpu), ..ResourceRequirements::default() }
    });
    PodSpec {
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: "app".into(),
            image: Some("nginx:1.27".into()),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
                ..SecurityContext::default()
            }),
            resources,
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

/// A bare Pod, `restricted`, with an optional CPU request.
fn pod(namespace: &str, name: &str, cpu: Option<&str>) -> Pod {
    Pod { metadata: object_meta(namespace, name), spec: Some(restricted(cpu)), status: None }
}

fn app_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), name.to_owned())])
}

/// Pods labelled `app: <name>`, `restricted`.
fn template(name: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(app_labels(name)), ..ObjectMeta::default() }),
        spec: Some(restricted(None)),
    }
}

fn app_selector(name: &str) -> LabelSelector {
    LabelSelector { match_labels: Some(app_labels(name)), ..LabelSelector::default() }
}

/// A Deployment of `replicas` `restricted` Pods.
fn deployment(namespace: &str, name: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: object_meta(namespace, name),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: app_selector(name),
            template: template(name),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// A StatefulSet of `replicas`.
fn stateful_set(namespace: &str, name: &str, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: object_meta(namespace, name),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name.to_owned()),
            selector: app_selector(name),
            template: template(name),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

/// A CronJob, not suspended.
fn cron_job(namespace: &str, name: &str) -> CronJob {
    let pod = PodSpec { restart_policy: Some("Never".into()), ..restricted(None) };
    CronJob {
        metadata: object_meta(namespace, name),
        spec: CronJobSpec {
            schedule: "0 2 * * *".into(),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    template: PodTemplateSpec { metadata: None, spec: Some(pod) },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        status: None,
    }
}

/// A claim of 1Gi, ReadWriteOnce.
fn claim(namespace: &str, name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: object_meta(namespace, name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity("1Gi".into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// A Service on port 80 of the Pods labelled `app: web`, of `type_` (ClusterIP when `None`).
fn web_service(namespace: &str, name: &str, type_: Option<&str>) -> Service {
    let mut service = service(namespace, name, "web", 80, Some(8080));
    service.spec.as_mut().expect("a spec").type_ = type_.map(str::to_owned);
    service
}

async fn pod_names(world: &World, namespace: &str) -> BTreeSet<String> {
    let pods: Api<Pod> = Api::namespaced(world.client.clone(), namespace);
    pods.list(&ListParams::default()).await.expect("listing Pods").items.iter().map(|p| p.name_any()).collect()
}

#[tokio::test]
async fn a_province_with_departments_communes_and_a_unit() {
    let mut t = Agencies::new("prov").await;
    let province = t
        .apply_tenant(
            t.agency("tinh", "H49", Province, None, quota("32", "64Gi", "1Ti", 500, 100))
                .admins(&["cntt@quangnam.gov.vn"], &[]),
        )
        .await;
    let noi_vu = t
        .apply_tenant(
            t.agency("so-noi-vu", "H49.12", Department, Some("tinh"), quota("8", "16Gi", "100Gi", 100, 20))
                .admins(&["nguyen.van.a@quangnam.gov.vn"], &["so-noi-vu-admins"]),
        )
        .await;
    let y_te_namespaces = [t.name("so-y-te-web"), t.name("so-y-te-data")];
    let y_te = t
        .apply_tenant(
            t.agency("so-y-te", "H49.13", Department, Some("tinh"), quota("6", "12Gi", "100Gi", 40, 10))
                .namespace(&y_te_namespaces[0], share("2", "4Gi", "10Gi", 10, 5))
                .namespace(&y_te_namespaces[1], share("1", "2Gi", "50Gi", 5, 2)),
        )
        .await;
    let xa_a =
        t.apply_tenant(t.agency("xa-dai-loc", "H49.40", Commune, Some("tinh"), quota("2", "4Gi", "20Gi", 20, 5))).await;
    let xa_b = t
        .apply_tenant(t.agency("xa-duy-xuyen", "H49.41", Commune, Some("tinh"), quota("2", "4Gi", "20Gi", 20, 5)))
        .await;
    let unit = t
        .apply_tenant(
            t.agency("benh-vien", "H49.13.01", Unit, Some("so-y-te"), quota("2", "4Gi", "40Gi", 20, 3))
                .admins(&["it@benhvien.quangnam.gov.vn"], &[]),
        )
        .await;

    for name in [&province, &noi_vu, &y_te, &xa_a, &xa_b, &unit] {
        t.tenant_ready(name).await;
    }
    let client = t.client.clone();

    // Namespaces: Pod Security restricted, and the labels and annotation the admission policies read.
    let namespaces: Vec<String> =
        [&province, &noi_vu, &xa_a, &xa_b, &unit].into_iter().cloned().chain(y_te_namespaces.iter().cloned()).collect();
    for namespace in &namespaces {
        let ns: Namespace = t.get("", namespace).await;
        let labels = ns.labels();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "{namespace}");
        assert_eq!(labels["govpaas.io/suspended"], "false");
        assert!(labels.contains_key("govpaas.io/tenant") && labels.contains_key("govpaas.io/agency-code"));
        let owner = &labels["govpaas.io/tenant"];
        assert_eq!(ns.annotations()["govpaas.io/domain"], t.domain_of(owner));
    }
    let unit_ns: Namespace = t.get("", &unit).await;
    assert_eq!(unit_ns.labels()["govpaas.io/agency-code"], "H49.13.01");
    assert_eq!(unit_ns.labels()["govpaas.io/agency-level"], "Unit");
    assert_eq!(unit_ns.annotations()["govpaas.io/agency-name"], "Cơ quan benh-vien");

    // Quotas: children carved out of their parents; the sum within the province's.
    let cpu = |n: &str| Amount::parse(n).unwrap();
    assert_eq!(t.quota_hard(&province, "requests.cpu").await, cpu("14"), "32 - 8 - 6 - 2 - 2");
    assert_eq!(t.quota_hard(&noi_vu, "requests.cpu").await, cpu("8"));
    assert_eq!(t.quota_hard(&y_te_namespaces[0], "requests.cpu").await, cpu("2"));
    assert_eq!(t.quota_hard(&y_te_namespaces[1], "requests.cpu").await, cpu("1"));
    assert_eq!(t.quota_hard(&unit, "requests.cpu").await, cpu("2"));
    assert_eq!(t.quota_hard(&province, "pods").await, Amount::from_units(500 - 100 - 40 - 20 - 20));
    assert_eq!(
        t.quota_hard(&province, "requests.memory").await,
        Amount::parse("28Gi").unwrap(),
        "64 - 16 - 12 - 4 - 4"
    );
    let mut total = Amount::ZERO;
    let mut total_pods = Amount::ZERO;
    for namespace in &namespaces {
        let rq: ResourceQuota = t.get(namespace, RESOURCE_QUOTA).await;
        total = total.checked_add(hard(&rq, "requests.cpu")).unwrap();
        total_pods = total_pods.checked_add(hard(&rq, "pods")).unwrap();
    }
    assert!(total <= cpu("32"), "the namespaces' CPU adds up to {total}, over the province's 32");
    assert!(total_pods <= Amount::from_units(500), "pods add up to {total_pods}");
    let status = t.status(&y_te).await;
    let y_te_quota = status.quota.clone().unwrap();
    assert_eq!(amount(&y_te_quota.children["cpu"]), cpu("2"));
    assert_eq!(amount(&y_te_quota.own["cpu"]), cpu("4"));
    assert_eq!(status.namespaces, y_te_namespaces.to_vec());
    let province_status = t.status(&province).await;
    assert_eq!(amount(&province_status.quota.as_ref().unwrap().children["cpu"]), cpu("18"));
    assert_eq!(province_status.domain, Some(t.domain_of(&province)));
    let mut children = vec![noi_vu.clone(), y_te.clone(), xa_a.clone(), xa_b.clone()];
    children.sort();
    assert_eq!(province_status.children, children);
    assert_eq!(t.status(&y_te).await.children, vec![unit.clone()]);

    // LimitRange defaults, so Pods without requests are admitted under the quota.
    let lr: LimitRange = t.get(&noi_vu, "govpaas-defaults").await;
    let item = &lr.spec.unwrap().limits[0];
    assert_eq!(item.type_, "Container");
    assert!(item.default_request.as_ref().unwrap().contains_key("cpu"));
    assert!(item.default.as_ref().unwrap().contains_key("memory"));

    // NetworkPolicies: default deny, then DNS, the tenant itself, the ingress controller, the gateway.
    for namespace in &namespaces {
        let policies =
            Api::<NetworkPolicy>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.unwrap();
        let names: BTreeSet<String> = policies.items.iter().map(|p| p.name_any()).collect();
        let expected: BTreeSet<String> = [
            "govpaas-default-deny",
            "govpaas-allow-dns",
            "govpaas-allow-tenant",
            "govpaas-allow-ingress-controller",
            "govpaas-allow-lgsp-gateway",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, expected, "{namespace}");
        let deny =
            policies.items.iter().find(|p| p.name_any() == "govpaas-default-deny").unwrap().spec.clone().unwrap();
        assert_eq!(deny.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert!(deny.ingress.is_none() && deny.egress.is_none());
    }
    let within: NetworkPolicy = t.get(&y_te_namespaces[1], "govpaas-allow-tenant").await;
    let peer = &within.spec.unwrap().ingress.unwrap()[0].from.clone().unwrap()[0];
    assert_eq!(peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["govpaas.io/tenant"], y_te);

    // RBAC: the admins bound to govpaas-agency-admin in each namespace, and a reader role for the Tenant.
    let rb: RoleBinding = t.get(&noi_vu, "govpaas-agency-admins").await;
    assert_eq!(rb.role_ref.name, "govpaas-agency-admin");
    let subjects: Vec<(String, String)> = rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
    assert_eq!(
        subjects,
        [("User".into(), "nguyen.van.a@quangnam.gov.vn".into()), ("Group".into(), "so-noi-vu-admins".into())]
    );
    let reader: ClusterRole = t.get("", &format!("govpaas-tenant-{noi_vu}")).await;
    let rule = &reader.rules.unwrap()[0];
    assert_eq!(rule.resource_names.as_ref().unwrap(), &vec![noi_vu.clone()]);
    // A tenant without admins gets no bindings at all.
    let none = Api::<RoleBinding>::namespaced(client.clone(), &xa_a).list(&ListParams::default()).await.unwrap();
    assert!(none.items.iter().all(|b| b.name_any() != "govpaas-agency-admins"));
    assert!(t.world.operator_mut().is_running());
}

#[tokio::test]
async fn quota_that_does_not_fit_is_refused_and_reported() {
    let t = Agencies::new("fit").await;
    let province_tenant = t.agency("tinh", "H50", Province, None, quota("4", "8Gi", "100Gi", 40, 10));
    let province = t.apply_tenant(province_tenant.clone()).await;
    let first =
        t.apply_tenant(t.agency("so-a", "H50.01", Department, Some("tinh"), quota("3", "4Gi", "10Gi", 10, 2))).await;
    t.tenant_ready(&province).await;
    t.tenant_ready(&first).await;

    // Only 1 CPU is left: a second department asking for 2 is not applied.
    let second =
        t.apply_tenant(t.agency("so-b", "H50.02", Department, Some("tinh"), quota("2", "2Gi", "10Gi", 10, 2))).await;
    let exceeded = t.tenant_condition(&second, "QuotaExceeded", "True", Some("QuotaExceeded")).await;
    assert!(exceeded.message.contains("cpu 2 > 1"), "{}", exceeded.message);
    let ready = t.tenant_condition(&second, "Ready", "False", Some("QuotaExceeded")).await;
    assert!(ready.message.starts_with("not applied"), "{}", ready.message);
    assert!(t.get_opt::<Namespace>("", &second).await.is_none(), "a tenant that does not fit gets no namespace");
    // The parent hears of it.
    let about_parent = format!("regarding.name={province},reason=ChildQuotaExceeded");
    let events = notes(&t.some_events("a ChildQuotaExceeded Event on the parent", &about_parent).await);
    assert!(events.iter().any(|note| note.contains(&second)), "no ChildQuotaExceeded Event on the parent: {events:?}");
    // And the child has its own Event.
    let about_child = format!("regarding.name={second},reason=QuotaExceeded");
    let child_events = t.some_events("a QuotaExceeded Event on the child", &about_child).await;
    let types: Vec<_> = child_events.iter().filter_map(|e| e.type_.clone()).collect();
    assert!(types.iter().any(|type_| type_ == "Warning"), "{types:?}");

    // Lowering the parent below what its children hold is refused the same way; its quota stays.
    t.apply_tenant(province_tenant.clone().quota(quota("2", "8Gi", "100Gi", 40, 10))).await;
    let refused = t.tenant_condition(&province, "QuotaExceeded", "True", Some("QuotaExceeded")).await;
    assert!(refused.message.contains("cpu 3 > 2"), "{}", refused.message);
    assert_eq!(t.quota_hard(&province, "requests.cpu").await, Amount::parse("1").unwrap());

    // Room made: the parent grows, the waiting child gets in, and the parent's own share shrinks by it.
    t.apply_tenant(province_tenant.quota(quota("8", "8Gi", "100Gi", 40, 10))).await;
    t.tenant_condition(&province, "QuotaExceeded", "False", None).await;
    t.tenant_ready(&second).await;
    let own = t
        .wait(&province, RESOURCE_QUOTA, "the province's own share to be 8 - 3 - 2", |rq: &ResourceQuota| {
            let cpu = hard(rq, "requests.cpu");
            (cpu == Amount::parse("3").unwrap()).then_some(cpu)
        })
        .await;
    assert_eq!(own, Amount::parse("3").unwrap());
}

#[tokio::test]
async fn agency_admins_are_fenced_into_their_namespaces() {
    let t = Agencies::new("rbac").await;
    let alice = format!("alice-{}@quangnam.gov.vn", t.scope);
    let group = format!("{}-admins", t.scope);
    let province = t.apply_tenant(t.agency("tinh", "H51", Province, None, quota("8", "16Gi", "100Gi", 100, 20))).await;
    let mine = t
        .apply_tenant(
            t.agency("so-a", "H51.01", Department, Some("tinh"), quota("2", "4Gi", "10Gi", 20, 5))
                .admins(&[alice.as_str()], &[]),
        )
        .await;
    let theirs = t
        .apply_tenant(
            t.agency("so-b", "H51.02", Department, Some("tinh"), quota("2", "4Gi", "10Gi", 20, 5))
                .admins(&[], &[group.as_str()]),
        )
        .await;
    for name in [&province, &mine, &theirs] {
        t.tenant_ready(name).await;
    }
    let secret = Secret {
        metadata: object_meta(&theirs, "mat-khau"),
        data: Some(BTreeMap::from([("k".to_owned(), ByteString(b"v".to_vec()))])),
        ..Secret::default()
    };
    t.apply(&secret).await;

    let as_alice = |args: &[&str]| {
        let mut all = vec!["--as", alice.as_str()];
        all.extend_from_slice(args);
        t.kubectl(&all)
    };

    // Allowed: workloads and govpaas services in her namespace, and her own Tenant.
    t.create_as(&alice, &deployment(&mine, "web", 1))
        .unwrap_or_else(|err| panic!("alice cannot create a Deployment in her namespace: {err}"));
    let portal = PortalBuilder::new(&mine, "cong", &[format!("cong.{}", t.domain_of(&mine))]).build();
    t.create_as(&alice, &portal).unwrap_or_else(|err| panic!("alice cannot create a Portal in her namespace: {err}"));
    // Her Tenant counts it.
    t.observed("", &mine, "the Tenant to count the Portal", |tenant: &Tenant| {
        let services = tenant.status.as_ref()?.services.as_ref()?;
        (services.portals == 1 && services.document_services == 0).then_some(())
    })
    .await;
    let (ok, out) = as_alice(&["get", "tenant", &mine, "-o", "name"]);
    assert!(ok, "alice cannot read her own Tenant: {out}");
    let (ok, out) = as_alice(&["get", "secrets", "-n", &mine]);
    assert!(ok, "alice cannot read her own Secrets: {out}");

    // Refused: another tenant's Secrets and Tenant, her own fence, namespaces, more rights.
    let refused: Vec<(&str, Vec<String>)> = vec![
        (
            "read another tenant's Secrets",
            vec!["get".into(), "secret".into(), "mat-khau".into(), "-n".into(), theirs.clone()],
        ),
        ("read another Tenant", vec!["get".into(), "tenant".into(), theirs.clone()]),
        ("list every Tenant", vec!["get".into(), "tenants".into()]),
        (
            "raise her own ResourceQuota",
            vec![
                "-n".into(),
                mine.clone(),
                "patch".into(),
                "resourcequota".into(),
                RESOURCE_QUOTA.into(),
                "--type=merge".into(),
                "-p".into(),
                r#"{"spec":{"hard":{"pods":"1000"}}}"#.into(),
            ],
        ),
        (
            "delete her NetworkPolicy",
            vec!["-n".into(), mine.clone(), "delete".into(), "networkpolicy".into(), "govpaas-default-deny".into()],
        ),
        (
            "edit her LimitRange",
            vec![
                "-n".into(),
                mine.clone(),
                "label".into(),
                "limitrange".into(),
                "govpaas-defaults".into(),
                "x=y".into(),
            ],
        ),
        ("create a namespace", vec!["create".into(), "namespace".into(), t.name("mine")]),
        (
            "bind herself cluster-admin",
            vec![
                "-n".into(),
                mine.clone(),
                "create".into(),
                "rolebinding".into(),
                "more".into(),
                "--clusterrole=cluster-admin".into(),
                format!("--user={alice}"),
            ],
        ),
        (
            "create a Deployment elsewhere",
            vec!["-n".into(), theirs.clone(), "create".into(), "deployment".into(), "x".into(), "--image=nginx".into()],
        ),
    ];
    for (what, args) in &refused {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = as_alice(&args);
        assert!(!ok, "alice could {what}: {out}");
        assert!(out.contains("forbidden") || out.contains("Forbidden"), "{what}: expected Forbidden, got {out}");
    }
    // The quota is untouched, and the policy still there.
    assert_eq!(t.quota_hard(&mine, "pods").await, Amount::from_units(20));
    t.get::<NetworkPolicy>(&mine, "govpaas-default-deny").await;

    // Group members administer their tenant the same way.
    let (ok, out) = t.kubectl(&["--as", "someone", "--as-group", &group, "get", "tenant", &theirs, "-o", "name"]);
    assert!(ok, "a member of {group} cannot read their Tenant: {out}");
    let (ok, out) = t.kubectl(&["--as", "someone", "--as-group", &group, "-n", &mine, "get", "pods"]);
    assert!(!ok, "a member of {group} can read pods of another tenant: {out}");
}

#[tokio::test]
async fn a_pod_over_the_carved_quota_is_refused_by_the_api_server() {
    let t = Agencies::new("pod").await;
    let province = t.apply_tenant(t.agency("tinh", "H52", Province, None, quota("4", "8Gi", "100Gi", 40, 10))).await;
    let commune =
        t.apply_tenant(t.agency("xa", "H52.40", Commune, Some("tinh"), quota("1", "1Gi", "10Gi", 5, 2))).await;
    t.tenant_ready(&province).await;
    t.tenant_ready(&commune).await;

    let err = t
        .try_apply(&pod(&commune, "qua-lon", Some("2")))
        .await
        .expect_err("a Pod asking for 2 CPU in a namespace with 1 was admitted");
    assert!(err.contains("exceeded quota") && err.contains("requests.cpu"), "{err}");

    // The province's own namespace has 4 - 1 = 3 CPU: 4 does not fit there either.
    let err = t.try_apply(&pod(&province, "qua-lon", Some("4"))).await.expect_err("4 CPU fit in 3");
    assert!(err.contains("exceeded quota"), "{err}");

    // A Pod that states no requests gets the LimitRange's defaults and fits.
    let admitted = t.try_apply(&pod(&commune, "vua-du", None)).await;
    let admitted = admitted.unwrap_or_else(|err| panic!("a Pod without requests was refused: {err}"));
    let requests = admitted.spec.and_then(|s| s.containers[0].resources.clone()?.requests).unwrap_or_default();
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("100m"));

    // The Tenant's status follows what its namespaces use.
    let used = t
        .observed("", &commune, "the commune's status to count the Pod", |tenant: &Tenant| {
            let quota = tenant.status.as_ref()?.quota.as_ref()?;
            (quota.used.get("pods").map(amount) == Some(Amount::from_units(1))).then(|| quota.used.clone())
        })
        .await;
    assert_eq!(amount(&used["cpu"]), Amount::parse("100m").unwrap());
}

#[tokio::test]
async fn suspend_and_resume_restore_the_replicas() {
    let t = Agencies::new("susp").await;
    let province = t.apply_tenant(t.agency("tinh", "H53", Province, None, quota("8", "16Gi", "100Gi", 100, 20))).await;
    let unit_tenant = t.agency("don-vi", "H53.01", Unit, Some("tinh"), quota("4", "8Gi", "10Gi", 20, 5));
    let unit = t.apply_tenant(unit_tenant.clone()).await;
    t.tenant_ready(&province).await;
    t.tenant_ready(&unit).await;
    t.apply(&deployment(&unit, "web", 3)).await;
    t.apply(&deployment(&unit, "idle", 0)).await;
    // The dodges: a Deployment wearing govpaas's label, a StatefulSet, a bare Pod, a CronJob.
    let mut forged = deployment(&unit, "gia-mao", 2);
    forged.metadata.labels =
        Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "govpaas-operator".to_owned())]));
    let forged = t.apply(&forged).await;
    assert_eq!(forged.labels()["app.kubernetes.io/managed-by"], "govpaas-operator", "{forged:?}");
    t.apply(&stateful_set(&unit, "csdl", 2)).await;
    t.apply(&pod(&unit, "tran-tran", None)).await;
    t.apply(&cron_job(&unit, "sao-luu")).await;
    eventually(WAIT, "the StatefulSet's and the forged Deployment's Pods to run", || async {
        let pods = pod_names(&t, &unit).await;
        let forged = pods.iter().any(|p| p.starts_with("gia-mao-"));
        (pods.contains("csdl-1") && forged && pods.contains("tran-tran")).then_some(())
    })
    .await;

    t.apply_tenant(unit_tenant.clone().suspended(true)).await;
    t.tenant_condition(&unit, "Suspended", "True", Some("Suspended")).await;
    t.tenant_condition(&unit, "Ready", "False", Some("Suspended")).await;
    let web: Deployment = t.get(&unit, "web").await;
    assert_eq!(web.spec.replicas, Some(0));
    assert_eq!(web.annotations()["govpaas.io/suspended-replicas"], "3");
    let idle: Deployment = t.get(&unit, "idle").await;
    assert!(!idle.annotations().contains_key("govpaas.io/suspended-replicas"));
    let forged: Deployment = t.get(&unit, "gia-mao").await;
    assert_eq!(forged.spec.replicas, Some(0), "a label the agency wrote exempted its Deployment");
    let set: StatefulSet = t.get(&unit, "csdl").await;
    assert_eq!(set.spec.replicas, Some(0));
    assert_eq!(set.annotations()["govpaas.io/suspended-replicas"], "2");
    let cron: CronJob = t.get(&unit, "sao-luu").await;
    assert_eq!(cron.spec.suspend, Some(true));
    assert_eq!(t.quota_hard(&unit, "pods").await, Amount::ZERO);
    let namespace: Namespace = t.get("", &unit).await;
    assert_eq!(namespace.labels()["govpaas.io/suspended"], "true");
    let err = t.try_apply(&pod(&unit, "moi", None)).await.expect_err("a new Pod in a suspended tenant was admitted");
    assert!(err.contains("exceeded quota"), "a new Pod in a suspended tenant: {err}");
    eventually(WAIT, "every Pod of the suspended tenant to go", || async {
        pod_names(&t, &unit).await.is_empty().then_some(())
    })
    .await;
    let message = t.tenant_condition(&unit, "Suspended", "True", Some("Suspended")).await.message;
    assert!(message.contains("StatefulSets") && message.contains("uncontrolled Pods deleted"), "{message}");

    t.apply_tenant(unit_tenant.suspended(false)).await;
    t.tenant_condition(&unit, "Suspended", "False", None).await;
    t.tenant_ready(&unit).await;
    let web: Deployment = t.get(&unit, "web").await;
    assert_eq!(web.spec.replicas, Some(3));
    assert!(!web.annotations().contains_key("govpaas.io/suspended-replicas"));
    assert_eq!(t.get::<Deployment>(&unit, "idle").await.spec.replicas, Some(0));
    assert_eq!(t.get::<Deployment>(&unit, "gia-mao").await.spec.replicas, Some(2));
    let set: StatefulSet = t.get(&unit, "csdl").await;
    assert_eq!(set.spec.replicas, Some(2));
    assert!(!set.annotations().contains_key("govpaas.io/suspended-replicas"));
    let cron: CronJob = t.get(&unit, "sao-luu").await;
    assert_eq!(cron.spec.suspend, Some(false));
    assert_eq!(t.quota_hard(&unit, "pods").await, Amount::from_units(20));
    let about_unit = format!("regarding.name={unit}");
    t.some_events("a Resumed Event", &format!("{about_unit},reason=Resumed")).await;
    let reasons: Vec<String> = t.events(&about_unit).await.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "Suspended") && reasons.iter().any(|r| r == "Resumed"), "{reasons:?}");
}

/// Tenant domains are disjoint: inside, around or equal to another tenant's domain is refused
/// with a condition and an Event naming the other tenant; the older tenant keeps its domain.
#[tokio::test]
async fn overlapping_tenant_domains_are_refused_naming_the_other_tenant() {
    let t = Agencies::new("dom").await;
    let province = t.apply_tenant(t.agency("tinh", "H56", Province, None, quota("8", "16Gi", "100Gi", 100, 20))).await;
    let older =
        t.apply_tenant(t.agency("so-a", "H56.01", Department, Some("tinh"), quota("1", "1Gi", "1Gi", 5, 2))).await;
    t.tenant_ready(&province).await;
    let older_domain = t.tenant_ready(&older).await.status.unwrap().domain.unwrap();
    assert_eq!(older_domain, t.domain_of(&older));

    let inside_tenant = t.agency("so-b", "H56.02", Department, Some("tinh"), quota("1", "1Gi", "1Gi", 5, 2));
    let inside = t.apply_tenant(inside_tenant.clone().domain(&format!("cong.{older_domain}"))).await;
    let refused = t.tenant_condition(&inside, "Ready", "False", Some("DomainConflict")).await;
    assert!(
        refused.message.contains(&format!("sits inside the domain \"{older_domain}\" of Tenant \"{older}\"")),
        "{}",
        refused.message
    );
    // Nothing of it was provisioned: no namespace, so no CA for the other tenant's hosts.
    assert!(
        t.get_opt::<Namespace>("", &inside).await.is_none(),
        "a tenant with a conflicting domain got its namespace"
    );
    // The Event says the same as the condition.
    let conflicts = format!("regarding.name={inside},reason=DomainConflict");
    let notes_now = notes(&t.some_events("the DomainConflict Event", &conflicts).await);
    assert!(notes_now.iter().any(|n| n.contains(&older)), "{notes_now:?}");

    // Refused again for the same reason with another cause: a second Event with the new cause,
    // not a count on the first one's series (kubectl describe shows what is wrong now).
    let province_domain = t.domain_of(&province);
    t.apply_tenant(inside_tenant.clone().domain(&format!("cong.{province_domain}"))).await;
    t.wait("", &inside, "the DomainConflict condition to name the province", |tenant: &Tenant| {
        let ready = tenant.current_condition("Ready")?;
        (ready.reason == "DomainConflict" && ready.message.contains(&format!("Tenant \"{province}\""))).then_some(())
    })
    .await;
    let notes_now = eventually(WAIT, "a second DomainConflict Event with the new cause", || async {
        let found = notes(&t.events(&conflicts).await);
        (found.iter().collect::<BTreeSet<_>>().len() >= 2).then_some(found)
    })
    .await;
    assert!(notes_now.iter().any(|n| n.contains(&format!("Tenant \"{older}\""))), "{notes_now:?}");
    assert!(notes_now.iter().any(|n| n.contains(&format!("Tenant \"{province}\""))), "{notes_now:?}");

    // Moved to a free domain, it is provisioned.
    t.apply_tenant(inside_tenant.domain(&format!("khac-{inside}.{}", t.base_domain))).await;
    t.tenant_ready(&inside).await;
    // The older tenant was never disturbed.
    assert_eq!(t.status(&older).await.domain.unwrap(), older_domain);
}

/// The tenant fence for core objects: NodePort and LoadBalancer Services only when the Tenant
/// allows them, external IPs never, and no claim that chooses its volume — refused for the
/// agency admin by ValidatingAdmissionPolicies, while a namespace outside any tenant is untouched.
#[tokio::test]
async fn agency_services_stay_inside_and_claims_never_choose_their_volume() {
    let t = Agencies::new("fence").await;
    let admin = format!("admin-{}@quangnam.gov.vn", t.scope);
    let province = t.apply_tenant(t.agency("tinh", "H57", Province, None, quota("8", "16Gi", "100Gi", 100, 20))).await;
    let unit_tenant = t
        .agency("don-vi", "H57.01", Unit, Some("tinh"), quota("2", "4Gi", "10Gi", 20, 5))
        .admins(&[admin.as_str()], &[]);
    let unit = t.apply_tenant(unit_tenant.clone()).await;
    t.tenant_ready(&province).await;
    t.tenant_ready(&unit).await;
    let node_port = web_service(&unit, "cong-mo", Some("NodePort"));
    let mut external = web_service(&unit, "chan-bat", None);
    external.spec.as_mut().unwrap().external_ips = Some(vec!["10.0.0.10".into()]);

    let err = t.create_as(&admin, &node_port).expect_err("a NodePort Service was admitted in a tenant namespace");
    assert!(err.contains("govpaas-tenant-services") && err.contains("spec.exposure.nodePorts"), "{err}");
    let err = t
        .create_as(&admin, &web_service(&unit, "can-bang", Some("LoadBalancer")))
        .expect_err("a LoadBalancer Service was admitted in a tenant namespace");
    assert!(err.contains("spec.exposure.loadBalancers"), "{err}");
    let err = t.create_as(&admin, &external).expect_err("a Service with external IPs was admitted");
    assert!(err.contains("CVE-2020-8554"), "{err}");
    t.create_as(&admin, &web_service(&unit, "noi-bo", None))
        .unwrap_or_else(|err| panic!("a ClusterIP Service was refused: {err}"));

    // The provincial admin allows NodePorts for this tenant: admitted once the namespace says so.
    let node_ports = Exposure { node_ports: true, ..Exposure::default() };
    t.apply_tenant(unit_tenant.exposure(node_ports)).await;
    eventually(WAIT, "a NodePort Service to be admitted after spec.exposure.nodePorts", || async {
        t.create_as(&admin, &node_port).ok()
    })
    .await;
    let err = t.create_as(&admin, &external).expect_err("a Service with external IPs was admitted");
    assert!(err.contains("CVE-2020-8554"), "external IPs are refused even then: {err}");

    // Claims: no volumeName, no selector, for the agency admin and the cluster admin alike.
    let mut named = claim(&unit, "muon");
    named.spec.as_mut().unwrap().volume_name = Some("pvc-of-another-agency".into());
    let err = t.create_as(&admin, &named).expect_err("a claim naming its volume was admitted");
    assert!(err.contains("spec.volumeName") && err.contains("govpaas.io/restore-from-volume"), "{err}");
    let err = t.try_apply(&named).await.expect_err("the cluster admin's claim naming its volume was admitted");
    assert!(err.contains("govpaas-tenant-volume-claims"), "{err}");
    let mut selecting = claim(&unit, "chon");
    selecting.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("govpaas.io/tenant".to_owned(), "ubnd".to_owned())])),
        ..LabelSelector::default()
    });
    let err = t.create_as(&admin, &selecting).expect_err("a claim with a selector was admitted");
    assert!(err.contains("spec.selector"), "{err}");
    // An ordinary claim is provisioned and bound by the volume controller (which sets volumeName).
    t.create_as(&admin, &claim(&unit, "binh-thuong"))
        .unwrap_or_else(|err| panic!("an ordinary claim was refused: {err}"));
    t.wait(&unit, "binh-thuong", "the ordinary claim to bind", |claim: &PersistentVolumeClaim| {
        (claim.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;

    // Outside tenant namespaces the policies never apply.
    let plain = TestNamespace::new(t.cluster, &t.name("plain"));
    let mut outside = node_port.clone();
    outside.metadata.namespace = Some(plain.name.clone());
    t.try_apply(&outside)
        .await
        .unwrap_or_else(|err| panic!("a NodePort Service outside any tenant was refused: {err}"));
}

#[tokio::test]
async fn hand_edits_to_owned_objects_are_repaired() {
    let t = Agencies::new("edit").await;
    let province = t
        .apply_tenant(
            t.agency("tinh", "H54", Province, None, quota("8", "16Gi", "100Gi", 100, 20))
                .admins(&["cntt@quangnam.gov.vn"], &[]),
        )
        .await;
    t.tenant_ready(&province).await;

    let old_uid = t.get::<NetworkPolicy>(&province, "govpaas-default-deny").await.metadata.uid;
    t.delete::<NetworkPolicy>(&province, "govpaas-default-deny").await;
    t.wait(&province, "govpaas-default-deny", "the deleted NetworkPolicy to come back", |p: &NetworkPolicy| {
        (p.metadata.uid != old_uid).then_some(())
    })
    .await;

    let quotas: Api<ResourceQuota> = Api::namespaced(t.client.clone(), &province);
    let raise = serde_json::json!({ "spec": { "hard": { "requests.cpu": "100", "pods": "9999" } } });
    quotas.patch(RESOURCE_QUOTA, &PatchParams::default(), &Patch::Merge(&raise)).await.expect("raising the quota");
    t.wait(&province, RESOURCE_QUOTA, "the quota to be restored", |rq: &ResourceQuota| {
        (hard(rq, "requests.cpu") == Amount::parse("8").unwrap() && hard(rq, "pods") == Amount::from_units(100))
            .then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    let relabel = serde_json::json!({ "metadata": { "labels": {
        "govpaas.io/suspended": "true",
        "pod-security.kubernetes.io/enforce": "privileged",
    } } });
    namespaces.patch(&province, &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabelling");
    t.wait("", &province, "the namespace labels to be restored", |ns: &Namespace| {
        let labels = ns.labels();
        (labels["govpaas.io/suspended"] == "false" && labels["pod-security.kubernetes.io/enforce"] == "restricted")
            .then_some(())
    })
    .await;

    let old_uid = t.get::<RoleBinding>(&province, "govpaas-agency-admins").await.metadata.uid;
    t.delete::<RoleBinding>(&province, "govpaas-agency-admins").await;
    t.wait(&province, "govpaas-agency-admins", "the admins' RoleBinding to come back", |rb: &RoleBinding| {
        (rb.metadata.uid != old_uid).then_some(())
    })
    .await;
    t.tenant_ready(&province).await;
}

#[tokio::test]
async fn a_restart_over_an_unchanged_world_writes_nothing() {
    let mut t = Agencies::new("quiet").await;
    let province = t
        .apply_tenant(
            t.agency("tinh", "H55", Province, None, quota("16", "32Gi", "200Gi", 200, 40))
                .admins(&["cntt@quangnam.gov.vn"], &[]),
        )
        .await;
    let department = t
        .apply_tenant(
            t.agency("so", "H55.01", Department, Some("tinh"), quota("4", "8Gi", "50Gi", 50, 10))
                .admins(&[], &["so-admins"]),
        )
        .await;
    let commune =
        t.apply_tenant(t.agency("xa", "H55.40", Commune, Some("tinh"), quota("2", "4Gi", "20Gi", 20, 5))).await;
    let unit =
        t.apply_tenant(t.agency("don-vi", "H55.01.01", Unit, Some("so"), quota("1", "2Gi", "10Gi", 10, 2))).await;
    let tenants = vec![province, department, commune, unit];
    let count = tenants.len() as f64;
    for name in &tenants {
        t.tenant_ready(name).await;
    }
    // The API server's quota controller has counted every ResourceQuota at its current limits (the
    // operator copies what it counts into the Tenant's status).
    for name in &tenants {
        t.wait(name, RESOURCE_QUOTA, "the quota counted at its current limits", |rq: &ResourceQuota| {
            let counted = rq.status.as_ref()?;
            let current = amounts(counted.hard.as_ref()?) == amounts(rq.spec.as_ref()?.hard.as_ref()?);
            (current && counted.used.is_some()).then_some(())
        })
        .await;
        // ... and the Tenant's status shows it (what a Tenant observes alone is written at most
        // once per `tenant::pacing::INTERVAL`, so it may follow the count by a few seconds).
        t.observed("", name, "the Tenant's status to show what is used", |tenant: &Tenant| {
            let quota = tenant.status.as_ref()?.quota.as_ref()?;
            (!quota.used.is_empty()).then_some(())
        })
        .await;
    }

    // Converged: woken once more for every tenant (a label on its trust bundle), the operator
    // finishes as many more reconciles as there are tenants and writes nothing.
    let mut before = t.resource_versions(&tenants).await;
    let mut round = 0;
    loop {
        round += 1;
        assert!(round <= 10, "the tenants never converged:\n{}", t.operator().log_tail(40));
        let seen = t.tenant_reconciles().await;
        t.touch_trust_bundles(&tenants, round, &mut before).await;
        t.tenant_reconciles_reach(seen + count).await;
        let again = t.resource_versions(&tenants).await;
        if again == before {
            break;
        }
        before = again;
    }
    let events_before = t.events_about(&tenants).await;

    t.world.operator_mut().restart();
    // The new process reconciles every tenant: each Tenant's reconcile records the tenant's CA in
    // the process's certificate gauges, and its counter, from zero, shows at least one finished
    // reconcile per tenant.
    let seen = eventually(WAIT, "the restarted operator to reconcile every tenant", || async {
        let metrics = t.operator().try_metrics().await?;
        let finished = operator::reconciles(&metrics, "tenant");
        (finished >= count && tenants.iter().all(|name| records_tenant_ca(&metrics, name))).then_some(finished)
    })
    .await;
    // And looks at each once more, woken by a label on its trust bundle: as many more reconciles
    // as there are tenants.
    t.touch_trust_bundles(&tenants, round + 1, &mut before).await;
    t.tenant_reconciles_reach(seen + count).await;

    let after = t.resource_versions(&tenants).await;
    let changed: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    assert!(changed.is_empty(), "a restart over an unchanged world wrote {changed:?}\n{}", t.operator().log_tail(40));
    assert_eq!(after.len(), before.len());
    assert!(after.len() >= 4 * 8, "the snapshot covers every object: {}", after.len());
    for name in &tenants {
        for object in [
            key("Tenant", "", name),
            key("Namespace", "", name),
            key("ResourceQuota", name, RESOURCE_QUOTA),
            key("LimitRange", name, "govpaas-defaults"),
            key("NetworkPolicy", name, "govpaas-default-deny"),
            key("ConfigMap", name, TRUST_BUNDLE),
            key("Secret", operator::NAMESPACE, &tenant_ca_secret(name)),
        ] {
            assert!(after.contains_key(&object), "the snapshot misses {object}: {:?}", after.keys());
        }
    }
    assert_eq!(t.events_about(&tenants).await, events_before, "a restart published Events");
    assert!(t.world.operator_mut().is_running());
}

#[tokio::test]
async fn deleting_a_parent_leaves_its_children_running() {
    let t = Agencies::new("orph").await;
    let province_tenant = t.agency("tinh", "H56", Province, None, quota("8", "16Gi", "100Gi", 100, 20));
    let province = t.apply_tenant(province_tenant.clone()).await;
    let department =
        t.apply_tenant(t.agency("so", "H56.01", Department, Some("tinh"), quota("2", "4Gi", "10Gi", 20, 5))).await;
    t.tenant_ready(&province).await;
    t.tenant_ready(&department).await;
    let before: ResourceQuota = t.get(&department, RESOURCE_QUOTA).await;

    t.delete::<Tenant>("", &province).await;
    let invalid = t.tenant_condition(&department, "InvalidParent", "True", Some("ParentNotFound")).await;
    assert!(invalid.message.contains(&province), "{}", invalid.message);
    // The parent's own namespace goes with it; the child's home is untouched.
    eventually(WAIT, "the parent's namespace to be deleted", || async {
        let ns = t.get_opt::<Namespace>("", &province).await;
        ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;
    let ns: Namespace = t.get("", &department).await;
    assert!(ns.metadata.deletion_timestamp.is_none(), "the child's namespace is being deleted");
    let after: ResourceQuota = t.get(&department, RESOURCE_QUOTA).await;
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "the child's quota was rewritten");

    // The parent comes back: the child is adopted again.
    t.gone::<Tenant>("", &province).await;
    t.apply_tenant(province_tenant).await;
    t.tenant_ready(&province).await;
    t.tenant_condition(&department, "InvalidParent", "False", None).await;
    t.tenant_ready(&department).await;
    let own = t
        .wait(&province, RESOURCE_QUOTA, "the new parent to carve the child out", |rq: &ResourceQuota| {
            let cpu = hard(rq, "requests.cpu");
            (cpu == Amount::parse("6").unwrap()).then_some(cpu)
        })
        .await;
    assert_eq!(own, Amount::parse("6").unwrap());
}

//! The tenant controller on the real control plane: the chart installed, the operator running as a
//! local process with the chart's ServiceAccount token, one operator per test scoped to that
//! test's Tenants (see `govpaas_tests::operator`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use govpaas_crds::Tenant;
use govpaas_crds::quantity::Amount;
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, cluster, eventually, unique_name};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

const WAIT: Duration = Duration::from_secs(120);

/// One test's world: its operator, its Tenants (deleted at the end), a client.
struct Scope {
    cluster: &'static Cluster,
    operator: OperatorProcess,
    client: Client,
    base_domain: String,
    /// Prefix of every Tenant name in this test (unique in the cluster).
    prefix: String,
    created: Vec<String>,
}

impl Scope {
    async fn new(prefix: &str) -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        let base_domain = operator::ensure_platform(cluster);
        let prefix = unique_name(prefix);
        let operator = OperatorProcess::start(cluster, &prefix);
        Scope { cluster, operator, client: cluster.client().await, base_domain, prefix, created: Vec::new() }
    }

    /// The full name of this test's Tenant `short`.
    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Applies a Tenant named `short` (prefixed) in this scope. `parent` is a short name too.
    #[allow(clippy::too_many_arguments)]
    fn tenant(
        &mut self,
        short: &str,
        code: &str,
        level: &str,
        parent: Option<&str>,
        quota: &str,
        extra: &str,
    ) -> String {
        let name = self.name(short);
        let parent = parent.map(|p| format!("  parent: {}\n", self.name(p))).unwrap_or_default();
        let manifest = format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"Cơ quan {short}\"\n    level: {level}\n{parent}  quota: {quota}\n{extra}",
            scope = self.operator.scope_label(),
        );
        self.cluster.apply(&manifest);
        if !self.created.contains(&name) {
            self.created.push(name.clone());
        }
        name
    }

    async fn get(&self, name: &str) -> Tenant {
        Api::<Tenant>::all(self.client.clone()).get(name).await.unwrap_or_else(|e| panic!("getting Tenant {name}: {e}"))
    }

    /// Waits until the Tenant's condition `type_` has `status` (and `reason`, if given).
    async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Condition {
        let api = Api::<Tenant>::all(self.client.clone());
        let what = format!("Tenant {name}: {type_}={status} {}", reason.unwrap_or(""));
        let found = tokio::time::timeout(
            WAIT + Duration::from_secs(5),
            eventually(WAIT, &what, || async {
                let tenant = api.get(name).await.ok()?;
                let status_ = tenant.status?;
                status_
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
            }),
        )
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}\n{}", self.operator.log_tail(40)))
    }

    async fn wait_ready(&self, name: &str) -> Tenant {
        self.wait_condition(name, "Ready", "True", None).await;
        self.get(name).await
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    /// Runs kubectl; returns (success, stdout + stderr).
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self.cluster.kubectl().args(args).output().expect("running kubectl");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.created.is_empty() {
            let mut args = vec!["delete", "tenant", "--ignore-not-found", "--wait=false"];
            args.extend(self.created.iter().map(String::as_str));
            let _ = self.cluster.kubectl().args(&args).output();
        }
    }
}

/// A Tenant quota; public hosts and LGSP APIs as many as Services.
fn quota(cpu: &str, memory: &str, storage: &str, pods: u32, services: u32) -> String {
    format!(
        "{{cpu: \"{cpu}\", memory: {memory}, storage: {storage}, pods: {pods}, services: {services}, publicHosts: {services}, lgspApis: {services}}}"
    )
}

fn amount(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Amount {
    Amount::of(q).unwrap_or_else(|e| panic!("{e}"))
}

fn hard(rq: &ResourceQuota, key: &str) -> Amount {
    amount(&rq.spec.as_ref().and_then(|s| s.hard.as_ref()).expect("hard")[key])
}

async fn resource_quota(client: &Client, namespace: &str) -> ResourceQuota {
    Api::<ResourceQuota>::namespaced(client.clone(), namespace).get("govpaas-quota").await.expect("govpaas-quota")
}

/// A Pod that Pod Security `restricted` admits, with optional CPU request.
fn pod(name: &str, namespace: &str, cpu: Option<&str>) -> String {
    let resources = cpu
        .map(|cpu| format!("\n      resources: {{requests: {{cpu: \"{cpu}\"}}, limits: {{cpu: \"{cpu}\"}}}}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
    - name: app
      image: nginx:1.27
      securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}{resources}
"#
    )
}

/// The Pod template every workload here uses: one Pod Security `restricted` admits.
const RESTRICTED_POD_SPEC: &str = r#"      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: app
          image: nginx:1.27
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"#;

/// A StatefulSet of `replicas`.
fn stateful_set(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: {replicas}\n  serviceName: {name}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{RESTRICTED_POD_SPEC}"
    )
}

/// A CronJob, not suspended.
fn cron_job(name: &str, namespace: &str) -> String {
    let spec = RESTRICTED_POD_SPEC.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n");
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  schedule: \"0 2 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n{spec}\n"
    )
}

/// A Deployment whose Pods Pod Security `restricted` admits.
fn deployment(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: app
          image: nginx:1.27
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#
    )
}

#[tokio::test]
async fn a_province_with_departments_communes_and_a_unit() {
    let mut s = Scope::new("prov").await;
    let province = s.tenant(
        "tinh",
        "H49",
        "Province",
        None,
        &quota("32", "64Gi", "1Ti", 500, 100),
        "  admins:\n    users: [cntt@quangnam.gov.vn]\n",
    );
    let noi_vu = s.tenant(
        "so-noi-vu",
        "H49.12",
        "Department",
        Some("tinh"),
        &quota("8", "16Gi", "100Gi", 100, 20),
        "  admins:\n    users: [nguyen.van.a@quangnam.gov.vn]\n    groups: [so-noi-vu-admins]\n",
    );
    let y_te = s.tenant(
        "so-y-te",
        "H49.13",
        "Department",
        Some("tinh"),
        &quota("6", "12Gi", "100Gi", 40, 10),
        &format!(
            "  namespaces:\n    - name: {p}-so-y-te-web\n      quota: {{cpu: \"2\", memory: 4Gi, storage: 10Gi, pods: 10, services: 5}}\n    - name: {p}-so-y-te-data\n      quota: {{cpu: \"1\", memory: 2Gi, storage: 50Gi, pods: 5, services: 2}}\n",
            p = s.prefix
        ),
    );
    let xa_a = s.tenant("xa-dai-loc", "H49.40", "Commune", Some("tinh"), &quota("2", "4Gi", "20Gi", 20, 5), "");
    let xa_b = s.tenant("xa-duy-xuyen", "H49.41", "Commune", Some("tinh"), &quota("2", "4Gi", "20Gi", 20, 5), "");
    let unit = s.tenant(
        "benh-vien",
        "H49.13.01",
        "Unit",
        Some("so-y-te"),
        &quota("2", "4Gi", "40Gi", 20, 3),
        "  admins:\n    users: [it@benhvien.quangnam.gov.vn]\n",
    );

    for name in [&province, &noi_vu, &y_te, &xa_a, &xa_b, &unit] {
        s.wait_ready(name).await;
    }
    let client = s.client.clone();
    let y_te_namespaces = [format!("{}-so-y-te-web", s.prefix), format!("{}-so-y-te-data", s.prefix)];

    // Namespaces: Pod Security restricted, and the labels and annotation the admission policies read.
    let namespaces: Vec<String> =
        [&province, &noi_vu, &xa_a, &xa_b, &unit].into_iter().cloned().chain(y_te_namespaces.iter().cloned()).collect();
    let ns_api = Api::<Namespace>::all(client.clone());
    for namespace in &namespaces {
        let ns = ns_api.get(namespace).await.expect("the tenant namespace");
        let labels = ns.labels();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "{namespace}");
        assert_eq!(labels["govpaas.io/suspended"], "false");
        assert!(labels.contains_key("govpaas.io/tenant") && labels.contains_key("govpaas.io/agency-code"));
        let owner = &labels["govpaas.io/tenant"];
        assert_eq!(ns.annotations()["govpaas.io/domain"], format!("{owner}.{}", s.base_domain));
    }
    let unit_ns = ns_api.get(&unit).await.unwrap();
    assert_eq!(unit_ns.labels()["govpaas.io/agency-code"], "H49.13.01");
    assert_eq!(unit_ns.labels()["govpaas.io/agency-level"], "Unit");
    assert_eq!(unit_ns.annotations()["govpaas.io/agency-name"], "Cơ quan benh-vien");

    // Quotas: children carved out of their parents; the sum within the province's.
    let cpu = |n: &str| Amount::parse(n).unwrap();
    let rq_cpu = |rq: &ResourceQuota| hard(rq, "requests.cpu");
    assert_eq!(rq_cpu(&resource_quota(&client, &province).await), cpu("14"), "32 - 8 - 6 - 2 - 2");
    assert_eq!(rq_cpu(&resource_quota(&client, &noi_vu).await), cpu("8"));
    assert_eq!(rq_cpu(&resource_quota(&client, &y_te_namespaces[0]).await), cpu("2"));
    assert_eq!(rq_cpu(&resource_quota(&client, &y_te_namespaces[1]).await), cpu("1"));
    assert_eq!(rq_cpu(&resource_quota(&client, &unit).await), cpu("2"));
    let province_rq = resource_quota(&client, &province).await;
    assert_eq!(hard(&province_rq, "pods"), Amount::from_units(500 - 100 - 40 - 20 - 20));
    assert_eq!(hard(&province_rq, "requests.memory"), Amount::parse("28Gi").unwrap(), "64 - 16 - 12 - 4 - 4");
    let mut total = Amount::ZERO;
    let mut total_pods = Amount::ZERO;
    for namespace in &namespaces {
        let rq = resource_quota(&client, namespace).await;
        total = total.checked_add(rq_cpu(&rq)).unwrap();
        total_pods = total_pods.checked_add(hard(&rq, "pods")).unwrap();
    }
    assert!(total <= cpu("32"), "the namespaces' CPU adds up to {total}, over the province's 32");
    assert!(total_pods <= Amount::from_units(500), "pods add up to {total_pods}");
    let status = s.get(&y_te).await.status.unwrap();
    let y_te_quota = status.quota.unwrap();
    assert_eq!(amount(&y_te_quota.children["cpu"]), cpu("2"));
    assert_eq!(amount(&y_te_quota.own["cpu"]), cpu("4"));
    assert_eq!(status.namespaces, y_te_namespaces.to_vec());
    let province_status = s.get(&province).await.status.unwrap();
    assert_eq!(amount(&province_status.quota.as_ref().unwrap().children["cpu"]), cpu("18"));
    assert_eq!(province_status.domain, Some(format!("{province}.{}", s.base_domain)));
    let mut children = vec![noi_vu.clone(), y_te.clone(), xa_a.clone(), xa_b.clone()];
    children.sort();
    assert_eq!(province_status.children, children);
    assert_eq!(s.get(&y_te).await.status.unwrap().children, vec![unit.clone()]);

    // LimitRange defaults, so Pods without requests are admitted under the quota.
    let lr = Api::<LimitRange>::namespaced(client.clone(), &noi_vu).get("govpaas-defaults").await.unwrap();
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
    let within = Api::<NetworkPolicy>::namespaced(client.clone(), &y_te_namespaces[1])
        .get("govpaas-allow-tenant")
        .await
        .unwrap();
    let peer = &within.spec.unwrap().ingress.unwrap()[0].from.clone().unwrap()[0];
    assert_eq!(peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["govpaas.io/tenant"], y_te);

    // RBAC: the admins bound to govpaas-agency-admin in each namespace, and a reader role for the Tenant.
    let rb = Api::<RoleBinding>::namespaced(client.clone(), &noi_vu).get("govpaas-agency-admins").await.unwrap();
    assert_eq!(rb.role_ref.name, "govpaas-agency-admin");
    let subjects: Vec<(String, String)> = rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
    assert_eq!(
        subjects,
        [("User".into(), "nguyen.van.a@quangnam.gov.vn".into()), ("Group".into(), "so-noi-vu-admins".into())]
    );
    let reader = Api::<ClusterRole>::all(client.clone()).get(&format!("govpaas-tenant-{noi_vu}")).await.unwrap();
    let rule = &reader.rules.unwrap()[0];
    assert_eq!(rule.resource_names.as_ref().unwrap(), &vec![noi_vu.clone()]);
    // A tenant without admins gets no bindings at all.
    let none = Api::<RoleBinding>::namespaced(client.clone(), &xa_a).list(&ListParams::default()).await.unwrap();
    assert!(none.items.iter().all(|b| b.name_any() != "govpaas-agency-admins"));
    assert!(s.operator.is_running());
}

#[tokio::test]
async fn quota_that_does_not_fit_is_refused_and_reported() {
    let mut s = Scope::new("fit").await;
    let province = s.tenant("tinh", "H50", "Province", None, &quota("4", "8Gi", "100Gi", 40, 10), "");
    let first = s.tenant("so-a", "H50.01", "Department", Some("tinh"), &quota("3", "4Gi", "10Gi", 10, 2), "");
    s.wait_ready(&province).await;
    s.wait_ready(&first).await;

    // Only 1 CPU is left: a second department asking for 2 is not applied.
    let second = s.tenant("so-b", "H50.02", "Department", Some("tinh"), &quota("2", "2Gi", "10Gi", 10, 2), "");
    let exceeded = s.wait_condition(&second, "QuotaExceeded", "True", Some("QuotaExceeded")).await;
    assert!(exceeded.message.contains("cpu 2 > 1"), "{}", exceeded.message);
    let ready = s.wait_condition(&second, "Ready", "False", Some("QuotaExceeded")).await;
    assert!(ready.message.starts_with("not applied"), "{}", ready.message);
    let (exists, _) = s.kubectl(&["get", "namespace", &second]);
    assert!(!exists, "a tenant that does not fit gets no namespace");
    // The parent hears of it.
    let events = s.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "--field-selector",
        &format!("regarding.name={province},reason=ChildQuotaExceeded"),
        "-o",
        "jsonpath={.items[*].note}",
    ]);
    assert!(events.contains(&second), "no ChildQuotaExceeded Event on the parent: {events:?}");
    // And the child has its own Event.
    let child_events = s.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "--field-selector",
        &format!("regarding.name={second},reason=QuotaExceeded"),
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(child_events.contains("Warning"), "{child_events:?}");

    // Lowering the parent below what its children hold is refused the same way; its quota stays.
    s.tenant("tinh", "H50", "Province", None, &quota("2", "8Gi", "100Gi", 40, 10), "");
    let refused = s.wait_condition(&province, "QuotaExceeded", "True", Some("QuotaExceeded")).await;
    assert!(refused.message.contains("cpu 3 > 2"), "{}", refused.message);
    assert_eq!(hard(&resource_quota(&s.client, &province).await, "requests.cpu"), Amount::parse("1").unwrap());

    // Room made: the parent grows, the waiting child gets in, and the parent's own share shrinks by it.
    s.tenant("tinh", "H50", "Province", None, &quota("8", "8Gi", "100Gi", 40, 10), "");
    s.wait_condition(&province, "QuotaExceeded", "False", None).await;
    s.wait_ready(&second).await;
    let own = eventually(WAIT, "the province's own share to be 8 - 3 - 2", || async {
        let cpu = hard(&resource_quota(&s.client, &province).await, "requests.cpu");
        (cpu == Amount::parse("3").unwrap()).then_some(cpu)
    })
    .await;
    assert_eq!(own, Amount::parse("3").unwrap());
}

#[tokio::test]
async fn agency_admins_are_fenced_into_their_namespaces() {
    let mut s = Scope::new("rbac").await;
    let alice = format!("alice-{}@quangnam.gov.vn", s.prefix);
    let group = format!("{}-admins", s.prefix);
    let province = s.tenant("tinh", "H51", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    let mine = s.tenant(
        "so-a",
        "H51.01",
        "Department",
        Some("tinh"),
        &quota("2", "4Gi", "10Gi", 20, 5),
        &format!("  admins:\n    users: [{alice}]\n"),
    );
    let theirs = s.tenant(
        "so-b",
        "H51.02",
        "Department",
        Some("tinh"),
        &quota("2", "4Gi", "10Gi", 20, 5),
        &format!("  admins:\n    groups: [{group}]\n"),
    );
    for name in [&province, &mine, &theirs] {
        s.wait_ready(name).await;
    }
    s.kubectl_ok(&["-n", &theirs, "create", "secret", "generic", "mat-khau", "--from-literal=k=v"]);

    let as_alice = |args: &[&str]| {
        let mut all = vec!["--as", alice.as_str()];
        all.extend_from_slice(args);
        s.kubectl(&all)
    };
    let as_alice_stdin = |args: &[&str], input: &str| {
        let mut all = vec!["--as", alice.as_str()];
        all.extend_from_slice(args);
        s.cluster.kubectl_stdin(&all, input)
    };

    // Allowed: workloads and govpaas services in her namespace, and her own Tenant.
    let (ok, _, err) = as_alice_stdin(&["create", "-f", "-"], &deployment("web", &mine, 1));
    assert!(ok, "alice cannot create a Deployment in her namespace: {err}");
    let portal = format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Portal\nmetadata:\n  name: cong\n  namespace: {mine}\nspec:\n  hosts: [cong.{mine}.{base}]\n",
        base = s.base_domain
    );
    let (ok, _, err) = as_alice_stdin(&["create", "-f", "-"], &portal);
    assert!(ok, "alice cannot create a Portal in her namespace: {err}");
    // Her Tenant counts it.
    eventually(WAIT, "the Tenant to count the Portal", || async {
        let services = s.get(&mine).await.status?.services?;
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
                "govpaas-quota".into(),
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
        ("create a namespace", vec!["create".into(), "namespace".into(), format!("{}-mine", s.prefix)]),
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
    assert_eq!(hard(&resource_quota(&s.client, &mine).await, "pods"), Amount::from_units(20));
    s.kubectl_ok(&["-n", &mine, "get", "networkpolicy", "govpaas-default-deny"]);

    // Group members administer their tenant the same way.
    let (ok, out) = s.kubectl(&["--as", "someone", "--as-group", &group, "get", "tenant", &theirs, "-o", "name"]);
    assert!(ok, "a member of {group} cannot read their Tenant: {out}");
    let (ok, out) = s.kubectl(&["--as", "someone", "--as-group", &group, "-n", &mine, "get", "pods"]);
    assert!(!ok, "a member of {group} can read pods of another tenant: {out}");
}

#[tokio::test]
async fn a_pod_over_the_carved_quota_is_refused_by_the_api_server() {
    let mut s = Scope::new("pod").await;
    let province = s.tenant("tinh", "H52", "Province", None, &quota("4", "8Gi", "100Gi", 40, 10), "");
    let commune = s.tenant("xa", "H52.40", "Commune", Some("tinh"), &quota("1", "1Gi", "10Gi", 5, 2), "");
    s.wait_ready(&province).await;
    s.wait_ready(&commune).await;

    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &pod("qua-lon", &commune, Some("2")));
    assert!(!ok, "a Pod asking for 2 CPU in a namespace with 1 was admitted");
    assert!(err.contains("exceeded quota") && err.contains("requests.cpu"), "{err}");

    // The province's own namespace has 4 - 1 = 3 CPU: 4 does not fit there either.
    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &pod("qua-lon", &province, Some("4")));
    assert!(!ok && err.contains("exceeded quota"), "{err}");

    // A Pod that states no requests gets the LimitRange's defaults and fits.
    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &pod("vua-du", &commune, None));
    assert!(ok, "a Pod without requests was refused: {err}");
    let requested = s.kubectl_ok(&[
        "-n",
        &commune,
        "get",
        "pod",
        "vua-du",
        "-o",
        "jsonpath={.spec.containers[0].resources.requests.cpu}",
    ]);
    assert_eq!(requested, "100m");

    // The Tenant's status follows what its namespaces use.
    let used = eventually(WAIT, "the commune's status to count the Pod", || async {
        let quota = s.get(&commune).await.status?.quota?;
        (quota.used.get("pods").map(amount) == Some(Amount::from_units(1))).then_some(quota.used)
    })
    .await;
    assert_eq!(amount(&used["cpu"]), Amount::parse("100m").unwrap());
}

#[tokio::test]
async fn suspend_and_resume_restore_the_replicas() {
    let mut s = Scope::new("susp").await;
    let province = s.tenant("tinh", "H53", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    let unit = s.tenant("don-vi", "H53.01", "Unit", Some("tinh"), &quota("4", "8Gi", "10Gi", 20, 5), "");
    s.wait_ready(&province).await;
    s.wait_ready(&unit).await;
    s.cluster.apply(&deployment("web", &unit, 3));
    s.cluster.apply(&deployment("idle", &unit, 0));
    // The dodges: a Deployment wearing govpaas's label, a StatefulSet, a bare Pod, a CronJob.
    let forged = deployment("gia-mao", &unit, 2).replace(
        "metadata: {name: gia-mao,",
        "metadata: {labels: {app.kubernetes.io/managed-by: govpaas-operator}, name: gia-mao,",
    );
    assert!(forged.contains("managed-by"), "{forged}");
    s.cluster.apply(&forged);
    s.cluster.apply(&stateful_set("csdl", &unit, 2));
    s.cluster.apply(&pod("tran-tran", &unit, None));
    s.cluster.apply(&cron_job("sao-luu", &unit));
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &unit);
    let stateful_sets = Api::<StatefulSet>::namespaced(s.client.clone(), &unit);
    eventually(WAIT, "the StatefulSet's and the forged Deployment's Pods to run", || async {
        let pods = s.kubectl_ok(&["-n", &unit, "get", "pods", "-o", "name"]);
        (pods.contains("csdl-1") && pods.contains("gia-mao") && pods.contains("tran-tran")).then_some(())
    })
    .await;

    s.tenant("don-vi", "H53.01", "Unit", Some("tinh"), &quota("4", "8Gi", "10Gi", 20, 5), "  suspended: true\n");
    s.wait_condition(&unit, "Suspended", "True", Some("Suspended")).await;
    s.wait_condition(&unit, "Ready", "False", Some("Suspended")).await;
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.spec.replicas, Some(0));
    assert_eq!(web.annotations()["govpaas.io/suspended-replicas"], "3");
    assert!(!deployments.get("idle").await.unwrap().annotations().contains_key("govpaas.io/suspended-replicas"));
    let forged = deployments.get("gia-mao").await.unwrap();
    assert_eq!(forged.spec.replicas, Some(0), "a label the agency wrote exempted its Deployment");
    let set = stateful_sets.get("csdl").await.unwrap();
    assert_eq!(set.spec.replicas, Some(0));
    assert_eq!(set.annotations()["govpaas.io/suspended-replicas"], "2");
    let cron = s.kubectl_ok(&["-n", &unit, "get", "cronjob", "sao-luu", "-o", "jsonpath={.spec.suspend}"]);
    assert_eq!(cron, "true");
    assert_eq!(hard(&resource_quota(&s.client, &unit).await, "pods"), Amount::ZERO);
    assert_eq!(
        s.kubectl_ok(&["get", "namespace", &unit, "-o", "jsonpath={.metadata.labels.govpaas\\.io/suspended}"]),
        "true"
    );
    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &pod("moi", &unit, None));
    assert!(!ok && err.contains("exceeded quota"), "a new Pod in a suspended tenant: {err}");
    eventually(WAIT, "every Pod of the suspended tenant to go", || async {
        let pods = s.kubectl_ok(&["-n", &unit, "get", "pods", "-o", "name"]);
        pods.trim().is_empty().then_some(())
    })
    .await;
    let message = s.wait_condition(&unit, "Suspended", "True", Some("Suspended")).await.message;
    assert!(message.contains("StatefulSets") && message.contains("uncontrolled Pods deleted"), "{message}");

    s.tenant("don-vi", "H53.01", "Unit", Some("tinh"), &quota("4", "8Gi", "10Gi", 20, 5), "  suspended: false\n");
    s.wait_condition(&unit, "Suspended", "False", None).await;
    s.wait_ready(&unit).await;
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.spec.replicas, Some(3));
    assert!(!web.annotations().contains_key("govpaas.io/suspended-replicas"));
    assert_eq!(deployments.get("idle").await.unwrap().spec.replicas, Some(0));
    assert_eq!(deployments.get("gia-mao").await.unwrap().spec.replicas, Some(2));
    let set = stateful_sets.get("csdl").await.unwrap();
    assert_eq!(set.spec.replicas, Some(2));
    assert!(!set.annotations().contains_key("govpaas.io/suspended-replicas"));
    let cron = s.kubectl_ok(&["-n", &unit, "get", "cronjob", "sao-luu", "-o", "jsonpath={.spec.suspend}"]);
    assert_eq!(cron, "false");
    assert_eq!(hard(&resource_quota(&s.client, &unit).await, "pods"), Amount::from_units(20));
    let resumed = s.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "--field-selector",
        &format!("regarding.name={unit}"),
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(resumed.contains("Suspended") && resumed.contains("Resumed"), "{resumed}");
}

/// Tenant domains are disjoint: inside, around or equal to another tenant's domain is refused
/// with a condition and an Event naming the other tenant; the older tenant keeps its domain.
#[tokio::test]
async fn overlapping_tenant_domains_are_refused_naming_the_other_tenant() {
    let mut s = Scope::new("dom").await;
    let province = s.tenant("tinh", "H56", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    let older = s.tenant("so-a", "H56.01", "Department", Some("tinh"), &quota("1", "1Gi", "1Gi", 5, 2), "");
    s.wait_ready(&province).await;
    let older_domain = s.wait_ready(&older).await.status.unwrap().domain.unwrap();
    assert_eq!(older_domain, format!("{older}.{}", s.base_domain));

    let inside = s.tenant(
        "so-b",
        "H56.02",
        "Department",
        Some("tinh"),
        &quota("1", "1Gi", "1Gi", 5, 2),
        &format!("  domain: cong.{older_domain}\n"),
    );
    let refused = s.wait_condition(&inside, "Ready", "False", Some("DomainConflict")).await;
    assert!(
        refused.message.contains(&format!("sits inside the domain \"{older_domain}\" of Tenant \"{older}\"")),
        "{}",
        refused.message
    );
    // Nothing of it was provisioned: no namespace, so no CA for the other tenant's hosts.
    let (exists, _) = s.kubectl(&["get", "namespace", &inside]);
    assert!(!exists, "a tenant with a conflicting domain got its namespace");
    // The Event says the same as the condition.
    let notes = eventually(WAIT, "the DomainConflict Event", || async {
        let notes = event_notes(&s, &inside, "DomainConflict");
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(notes.iter().any(|n| n.contains(&older)), "{notes:?}");

    // Refused again for the same reason with another cause: a second Event with the new cause,
    // not a count on the first one's series (kubectl describe shows what is wrong now).
    let province_domain = format!("{province}.{}", s.base_domain);
    s.tenant(
        "so-b",
        "H56.02",
        "Department",
        Some("tinh"),
        &quota("1", "1Gi", "1Gi", 5, 2),
        &format!("  domain: cong.{province_domain}\n"),
    );
    eventually(WAIT, "the DomainConflict condition to name the province", || async {
        let tenant = s.get(&inside).await;
        let ready = tenant.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "DomainConflict" && ready.message.contains(&format!("Tenant \"{province}\""))).then_some(())
    })
    .await;
    let notes = eventually(WAIT, "a second DomainConflict Event with the new cause", || async {
        let notes = event_notes(&s, &inside, "DomainConflict");
        (notes.iter().collect::<BTreeSet<_>>().len() >= 2).then_some(notes)
    })
    .await;
    assert!(notes.iter().any(|n| n.contains(&format!("Tenant \"{older}\""))), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains(&format!("Tenant \"{province}\""))), "{notes:?}");

    // Moved to a free domain, it is provisioned.
    s.tenant(
        "so-b",
        "H56.02",
        "Department",
        Some("tinh"),
        &quota("1", "1Gi", "1Gi", 5, 2),
        &format!("  domain: khac-{inside}.{}\n", s.base_domain),
    );
    s.wait_ready(&inside).await;
    // The older tenant was never disturbed.
    assert_eq!(s.get(&older).await.status.unwrap().domain.unwrap(), older_domain);
}

/// The tenant fence for core objects: NodePort and LoadBalancer Services only when the Tenant
/// allows them, external IPs never, and no claim that chooses its volume — refused for the
/// agency admin by ValidatingAdmissionPolicies, while a namespace outside any tenant is untouched.
#[tokio::test]
async fn agency_services_stay_inside_and_claims_never_choose_their_volume() {
    let mut s = Scope::new("fence").await;
    let admin = format!("admin-{}@quangnam.gov.vn", s.prefix);
    let province = s.tenant("tinh", "H57", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    let admins = format!("  admins:\n    users: [{admin}]\n");
    let unit = s.tenant("don-vi", "H57.01", "Unit", Some("tinh"), &quota("2", "4Gi", "10Gi", 20, 5), &admins);
    s.wait_ready(&province).await;
    s.wait_ready(&unit).await;
    let as_admin = |manifest: &str| s.cluster.kubectl_stdin(&["--as", &admin, "create", "-f", "-"], manifest);
    let service = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {unit}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n{extra}"
        )
    };
    let node_port = service("cong-mo", "  type: NodePort\n");
    let external = service("chan-bat", "  externalIPs: [10.0.0.10]\n");

    let (ok, _, err) = as_admin(&node_port);
    assert!(!ok, "a NodePort Service was admitted in a tenant namespace");
    assert!(err.contains("govpaas-tenant-services") && err.contains("spec.exposure.nodePorts"), "{err}");
    let (ok, _, err) = as_admin(&service("can-bang", "  type: LoadBalancer\n"));
    assert!(!ok && err.contains("spec.exposure.loadBalancers"), "{err}");
    let (ok, _, err) = as_admin(&external);
    assert!(!ok && err.contains("CVE-2020-8554"), "{err}");
    let (ok, _, err) = as_admin(&service("noi-bo", ""));
    assert!(ok, "a ClusterIP Service was refused: {err}");

    // The provincial admin allows NodePorts for this tenant: admitted once the namespace says so.
    s.tenant(
        "don-vi",
        "H57.01",
        "Unit",
        Some("tinh"),
        &quota("2", "4Gi", "10Gi", 20, 5),
        &format!("{admins}  exposure:\n    nodePorts: true\n"),
    );
    eventually(WAIT, "a NodePort Service to be admitted after spec.exposure.nodePorts", || async {
        let (ok, _, _) = as_admin(&node_port);
        ok.then_some(())
    })
    .await;
    let (ok, _, err) = as_admin(&external);
    assert!(!ok && err.contains("CVE-2020-8554"), "external IPs are refused even then: {err}");

    // Claims: no volumeName, no selector, for the agency admin and the cluster admin alike.
    let claim = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: {unit}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n{extra}"
        )
    };
    let named = claim("muon", "  volumeName: pvc-of-another-agency\n");
    let (ok, _, err) = as_admin(&named);
    assert!(!ok && err.contains("spec.volumeName") && err.contains("govpaas.io/restore-from-volume"), "{err}");
    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &named);
    assert!(!ok && err.contains("govpaas-tenant-volume-claims"), "{err}");
    let selecting = claim("chon", "  selector: {matchLabels: {govpaas.io/tenant: ubnd}}\n");
    let (ok, _, err) = as_admin(&selecting);
    assert!(!ok && err.contains("spec.selector"), "{err}");
    // An ordinary claim is provisioned and bound by the volume controller (which sets volumeName).
    let (ok, _, err) = as_admin(&claim("binh-thuong", ""));
    assert!(ok, "an ordinary claim was refused: {err}");
    eventually(WAIT, "the ordinary claim to bind", || async {
        let phase = s.kubectl_ok(&["-n", &unit, "get", "pvc", "binh-thuong", "-o", "jsonpath={.status.phase}"]);
        (phase == "Bound").then_some(())
    })
    .await;

    // Outside tenant namespaces the policies never apply.
    let plain = format!("{}-plain", s.prefix);
    s.kubectl_ok(&["create", "namespace", &plain]);
    let outside = node_port.replace(&format!("namespace: {unit}"), &format!("namespace: {plain}"));
    let (ok, _, err) = s.cluster.kubectl_stdin(&["create", "-f", "-"], &outside);
    let _ = s.kubectl(&["delete", "namespace", &plain, "--wait=false"]);
    assert!(ok, "a NodePort Service outside any tenant was refused: {err}");
}

#[tokio::test]
async fn hand_edits_to_owned_objects_are_repaired() {
    let mut s = Scope::new("edit").await;
    let province = s.tenant(
        "tinh",
        "H54",
        "Province",
        None,
        &quota("8", "16Gi", "100Gi", 100, 20),
        "  admins:\n    users: [cntt@quangnam.gov.vn]\n",
    );
    s.wait_ready(&province).await;
    let client = s.client.clone();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &province);
    let old_uid = policies.get("govpaas-default-deny").await.unwrap().metadata.uid;

    s.kubectl_ok(&["-n", &province, "delete", "networkpolicy", "govpaas-default-deny"]);
    eventually(WAIT, "the deleted NetworkPolicy to come back", || async {
        let policy = policies.get_opt("govpaas-default-deny").await.ok()??;
        (policy.metadata.uid != old_uid).then_some(())
    })
    .await;

    s.kubectl_ok(&[
        "-n",
        &province,
        "patch",
        "resourcequota",
        "govpaas-quota",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"requests.cpu":"100","pods":"9999"}}}"#,
    ]);
    eventually(WAIT, "the quota to be restored", || async {
        let rq = resource_quota(&client, &province).await;
        (hard(&rq, "requests.cpu") == Amount::parse("8").unwrap() && hard(&rq, "pods") == Amount::from_units(100))
            .then_some(())
    })
    .await;

    s.kubectl_ok(&[
        "label",
        "--overwrite",
        "namespace",
        &province,
        "govpaas.io/suspended=true",
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    eventually(WAIT, "the namespace labels to be restored", || async {
        let ns = Api::<Namespace>::all(client.clone()).get(&province).await.ok()?;
        let labels = ns.labels();
        (labels["govpaas.io/suspended"] == "false" && labels["pod-security.kubernetes.io/enforce"] == "restricted")
            .then_some(())
    })
    .await;

    s.kubectl_ok(&["-n", &province, "delete", "rolebinding", "govpaas-agency-admins"]);
    eventually(WAIT, "the admins' RoleBinding to come back", || async {
        Api::<RoleBinding>::namespaced(client.clone(), &province)
            .get_opt("govpaas-agency-admins")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    s.wait_ready(&province).await;
}

/// Every object of the scope's tenants with its resourceVersion.
async fn resource_versions(s: &Scope, tenants: &[String]) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let mut record =
        |kind: &str, namespace: &str, object: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            versions.insert(
                format!("{kind}/{namespace}/{}", object.name.clone().unwrap_or_default()),
                object.resource_version.clone().unwrap_or_default(),
            );
        };
    let client = s.client.clone();
    for tenant in tenants {
        let t = Api::<Tenant>::all(client.clone()).get(tenant).await.unwrap();
        record("Tenant", "", &t.metadata);
        let namespace = Api::<Namespace>::all(client.clone()).get(tenant).await.unwrap();
        record("Namespace", "", &namespace.metadata);
        let lp = ListParams::default();
        for rq in Api::<ResourceQuota>::namespaced(client.clone(), tenant).list(&lp).await.unwrap() {
            record("ResourceQuota", tenant, &rq.metadata);
        }
        for lr in Api::<LimitRange>::namespaced(client.clone(), tenant).list(&lp).await.unwrap() {
            record("LimitRange", tenant, &lr.metadata);
        }
        for np in Api::<NetworkPolicy>::namespaced(client.clone(), tenant).list(&lp).await.unwrap() {
            record("NetworkPolicy", tenant, &np.metadata);
        }
        for rb in Api::<RoleBinding>::namespaced(client.clone(), tenant).list(&lp).await.unwrap() {
            record("RoleBinding", tenant, &rb.metadata);
        }
        let reader = format!("govpaas-tenant-{tenant}");
        if let Some(role) = Api::<ClusterRole>::all(client.clone()).get_opt(&reader).await.unwrap() {
            record("ClusterRole", "", &role.metadata);
        }
        if let Some(binding) =
            Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone()).get_opt(&reader).await.unwrap()
        {
            record("ClusterRoleBinding", "", &binding.metadata);
        }
    }
    versions
}

/// How many Events the operator published about these tenants.
/// The notes of the Events about Tenant `name` with `reason`, one per Event.
fn event_notes(s: &Scope, name: &str, reason: &str) -> Vec<String> {
    let notes = s.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "--field-selector",
        &format!("regarding.name={name},reason={reason}"),
        "-o",
        "jsonpath={range .items[*]}{.note}{\"\\n\"}{end}",
    ]);
    notes.lines().map(str::to_owned).collect()
}

fn events_about(s: &Scope, tenants: &[String]) -> usize {
    let names = s.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "--field-selector",
        "reportingController=govpaas.io/operator",
        "-o",
        "jsonpath={range .items[*]}{.regarding.name}{\"\\n\"}{end}",
    ]);
    names.lines().filter(|name| tenants.iter().any(|t| t == name)).count()
}

#[tokio::test]
async fn a_restart_over_an_unchanged_world_writes_nothing() {
    let mut s = Scope::new("quiet").await;
    let province = s.tenant(
        "tinh",
        "H55",
        "Province",
        None,
        &quota("16", "32Gi", "200Gi", 200, 40),
        "  admins:\n    users: [cntt@quangnam.gov.vn]\n",
    );
    let department = s.tenant(
        "so",
        "H55.01",
        "Department",
        Some("tinh"),
        &quota("4", "8Gi", "50Gi", 50, 10),
        "  admins:\n    groups: [so-admins]\n",
    );
    let commune = s.tenant("xa", "H55.40", "Commune", Some("tinh"), &quota("2", "4Gi", "20Gi", 20, 5), "");
    let unit = s.tenant("don-vi", "H55.01.01", "Unit", Some("so"), &quota("1", "2Gi", "10Gi", 10, 2), "");
    let tenants = vec![province, department, commune, unit];
    for name in &tenants {
        s.wait_ready(name).await;
    }

    // Converged: two snapshots a few seconds apart agree.
    let mut before = resource_versions(&s, &tenants).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = resource_versions(&s, &tenants).await;
        if again == before {
            break;
        }
        before = again;
    }
    let events_before = events_about(&s, &tenants);

    s.operator.restart();
    // The new process reconciles every tenant (its log says so), then some more time for any wake-up.
    let log_start = s.operator.log().rfind("===== govpaas-operator starting").unwrap();
    eventually(WAIT, "the restarted operator to reconcile every tenant", || async {
        let log = s.operator.log();
        let since = &log[log_start..];
        tenants.iter().all(|t| since.lines().any(|l| l.contains("reconciled") && l.contains(t.as_str()))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let after = resource_versions(&s, &tenants).await;
    let changed: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    assert!(changed.is_empty(), "a restart over an unchanged world wrote {changed:?}\n{}", s.operator.log_tail(40));
    assert_eq!(after.len(), before.len());
    assert!(after.len() >= 4 * 8, "the snapshot covers every object: {}", after.len());
    assert_eq!(events_about(&s, &tenants), events_before, "a restart published Events");
    assert!(s.operator.is_running());
}

#[tokio::test]
async fn deleting_a_parent_leaves_its_children_running() {
    let mut s = Scope::new("orph").await;
    let province = s.tenant("tinh", "H56", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    let department = s.tenant("so", "H56.01", "Department", Some("tinh"), &quota("2", "4Gi", "10Gi", 20, 5), "");
    s.wait_ready(&province).await;
    s.wait_ready(&department).await;
    let before = resource_quota(&s.client, &department).await;

    s.kubectl_ok(&["delete", "tenant", &province, "--wait=false"]);
    let invalid = s.wait_condition(&department, "InvalidParent", "True", Some("ParentNotFound")).await;
    assert!(invalid.message.contains(&province), "{}", invalid.message);
    // The parent's own namespace goes with it; the child's home is untouched.
    eventually(WAIT, "the parent's namespace to be deleted", || async {
        let ns = Api::<Namespace>::all(s.client.clone()).get_opt(&province).await.ok()?;
        ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;
    let ns = Api::<Namespace>::all(s.client.clone()).get(&department).await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_none(), "the child's namespace is being deleted");
    let after = resource_quota(&s.client, &department).await;
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "the child's quota was rewritten");

    // The parent comes back: the child is adopted again.
    eventually(WAIT, "the old parent to be gone", || async {
        Api::<Tenant>::all(s.client.clone()).get_opt(&province).await.ok()?.is_none().then_some(())
    })
    .await;
    s.tenant("tinh", "H56", "Province", None, &quota("8", "16Gi", "100Gi", 100, 20), "");
    s.wait_ready(&province).await;
    s.wait_condition(&department, "InvalidParent", "False", None).await;
    s.wait_ready(&department).await;
    let own = eventually(WAIT, "the new parent to carve the child out", || async {
        let rq =
            Api::<ResourceQuota>::namespaced(s.client.clone(), &province).get_opt("govpaas-quota").await.ok()??;
        let cpu = hard(&rq, "requests.cpu");
        (cpu == Amount::parse("6").unwrap()).then_some(cpu)
    })
    .await;
    assert_eq!(own, Amount::parse("6").unwrap());
}

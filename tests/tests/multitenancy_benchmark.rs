//! The Kubernetes multi-tenancy benchmark's checks (kubernetes-sigs/multi-tenancy `benchmarks`,
//! profile level 1), ported: each one is asserted for the agency admin of a real Tenant, provisioned
//! by the operator (running with the chart's credentials) on the real control plane, with a second
//! Tenant as "another tenant". What refuses each attempt is the platform itself: RBAC (the chart's
//! `govpaas-agency-admin`), Pod Security `restricted` on every tenant namespace, and govpaas's
//! ValidatingAdmissionPolicies — never the operator being up.

use std::time::Duration;

use govpaas_crds::Tenant;
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, cluster, eventually, unique_name};
use kube::Api;

const WAIT: Duration = Duration::from_secs(120);

/// A Pod spec that Pod Security `restricted` admits; each check changes one thing in it.
fn pod(name: &str, namespace: &str, pod_extra: &str, container_security: &str, volumes: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {{type: RuntimeDefault}}}}
{pod_extra}  containers:
    - name: app
      image: nginx:1.27
      securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}{container_security}}}
{volumes}"#
    )
}

struct Benchmark {
    cluster: &'static Cluster,
    _operator: OperatorProcess,
    admin: String,
    province: String,
    mine: String,
    theirs: String,
}

impl Benchmark {
    async fn new() -> Self {
        let cluster = cluster();
        operator::install_chart(cluster);
        operator::ensure_platform(cluster);
        let prefix = unique_name("mtb");
        let operator = OperatorProcess::start(cluster, &prefix);
        let admin = format!("quan-tri-{prefix}@quangnam.gov.vn");
        let scope = operator.scope_label();
        let small = "{cpu: \"2\", memory: 4Gi, storage: 10Gi, pods: 20, services: 5, publicHosts: 5, lgspApis: 5}";
        let large = "{cpu: \"8\", memory: 16Gi, storage: 50Gi, pods: 80, services: 20, publicHosts: 20, lgspApis: 20}";
        let tenant = |short: &str, code: &str, level: &str, parent: Option<&str>, quota: &str, extra: &str| {
            let name = format!("{prefix}-{short}");
            let parent = parent.map(|p| format!("  parent: {prefix}-{p}\n")).unwrap_or_default();
            cluster.apply(&format!(
                "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"Cơ quan {short}\"\n    level: {level}\n{parent}  quota: {quota}\n{extra}"
            ));
            name
        };
        let province = tenant("tinh", "H58", "Province", None, large, "");
        let mine =
            tenant("so-a", "H58.01", "Department", Some("tinh"), small, &format!("  admins:\n    users: [{admin}]\n"));
        let theirs = tenant("so-b", "H58.02", "Department", Some("tinh"), small, "");
        let benchmark = Benchmark { cluster, _operator: operator, admin, province, mine, theirs };
        let client = cluster.client().await;
        let api = Api::<Tenant>::all(client);
        for name in [&benchmark.province, &benchmark.mine, &benchmark.theirs] {
            eventually(WAIT, &format!("Tenant {name} Ready"), || async {
                let tenant = api.get(name).await.ok()?;
                tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
            })
            .await;
        }
        // Admission reads namespaces from an informer: wait until it sees the tenant's labels.
        eventually(WAIT, "admission to see the tenant namespace", || async {
            let probe = format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: probe, namespace: {}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n",
                benchmark.mine
            );
            let (ok, _, err) = cluster.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &probe);
            (!ok && err.contains("govpaas-tenant-services")).then_some(())
        })
        .await;
        benchmark
    }

    /// `kubectl --as <agency admin> <args>` with `input` on stdin: (success, stdout + stderr).
    fn as_admin(&self, args: &[&str], input: &str) -> (bool, String) {
        let mut all = vec!["--as", self.admin.as_str()];
        all.extend_from_slice(args);
        let (ok, out, err) = self.cluster.kubectl_stdin(&all, input);
        (ok, format!("{out}{err}"))
    }

    fn refused(&self, check: &str, args: &[&str], input: &str, because: &str) {
        let (ok, out) = self.as_admin(args, input);
        assert!(!ok, "{check}: the agency admin was allowed: {out}");
        assert!(out.contains(because), "{check}: refused, but not because of {because:?}: {out}");
    }

    fn allowed(&self, check: &str, args: &[&str], input: &str) {
        let (ok, out) = self.as_admin(args, input);
        assert!(ok, "{check}: the agency admin was refused: {out}");
    }

    fn create_pod_refused(&self, check: &str, manifest: &str, because: &str) {
        self.refused(check, &["create", "--dry-run=server", "-f", "-"], manifest, because);
    }
}

impl Drop for Benchmark {
    fn drop(&mut self) {
        let args = ["delete", "tenant", "--ignore-not-found", "--wait=false", &self.theirs, &self.mine, &self.province];
        let _ = self.cluster.kubectl().args(args).output();
    }
}

#[tokio::test]
async fn every_multitenancy_benchmark_check_holds_for_an_agency_admin() {
    let b = Benchmark::new().await;
    let mine = b.mine.clone();
    let theirs = b.theirs.clone();

    // The baseline: a Pod that breaks no rule is admitted (so every refusal below is the rule's).
    b.allowed("baseline", &["create", "--dry-run=server", "-f", "-"], &pod("hop-le", &mine, "", "", ""));

    // MTB-PL1-CC-CPI-1 Block access to cluster resources.
    for (what, args) in [
        ("list nodes", vec!["get", "nodes"]),
        ("list namespaces", vec!["get", "namespaces"]),
        ("list PersistentVolumes", vec!["get", "persistentvolumes"]),
        ("list ClusterRoles", vec!["get", "clusterroles"]),
        ("list CRDs", vec!["get", "customresourcedefinitions"]),
        ("list admission policies", vec!["get", "validatingadmissionpolicies"]),
        ("create a ClusterRoleBinding", vec!["create", "clusterrolebinding", "x", "--clusterrole=view", "--user=x"]),
        ("create a namespace", vec!["create", "namespace", "ngoai-le"]),
    ] {
        b.refused(&format!("CPI-1 {what}"), &args, "", "forbidden");
    }

    // MTB-PL1-BC-CPI-2 Block add capabilities.
    b.create_pod_refused(
        "CPI-2 add capabilities",
        &pod("nang-quyen", &mine, "", "", "").replace("drop: [ALL]}", "drop: [ALL], add: [NET_ADMIN]}"),
        "violates PodSecurity",
    );
    // MTB-PL1-BC-CPI-3 Require run as non-root user.
    b.create_pod_refused(
        "CPI-3 run as root",
        &pod("goc", &mine, "", "", "").replace("runAsNonRoot: true, runAsUser: 1000", "runAsUser: 0"),
        "violates PodSecurity",
    );
    // MTB-PL1-BC-CPI-4 Block privileged containers.
    b.create_pod_refused("CPI-4 privileged", &pod("dac-quyen", &mine, "", ", privileged: true", ""), "privileged");
    // MTB-PL1-BC-CPI-5 Block privilege escalation.
    b.create_pod_refused(
        "CPI-5 privilege escalation",
        &pod("leo-thang", &mine, "", "", "")
            .replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
        "allowPrivilegeEscalation",
    );
    // MTB-PL1-BC-HI-1 Block use of host path volumes.
    b.create_pod_refused(
        "HI-1 hostPath",
        &pod("o-dia", &mine, "", "", "  volumes: [{name: host, hostPath: {path: /etc}}]\n"),
        "hostPath",
    );
    // MTB-PL1-BC-HI-2 Block use of NodePort services.
    b.refused(
        "HI-2 NodePort",
        &["create", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: cong-nut, namespace: {mine}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n"
        ),
        "govpaas-tenant-services",
    );
    // MTB-PL1-BC-HI-3 Block use of host networking and ports; HI-4 host PID; HI-5 host IPC.
    b.create_pod_refused("HI-3 host network", &pod("mang", &mine, "  hostNetwork: true\n", "", ""), "hostNetwork");
    b.create_pod_refused(
        "HI-3 host port",
        &pod("cong", &mine, "", "", "").replace(
            "      image: nginx:1.27\n",
            "      image: nginx:1.27\n      ports: [{containerPort: 80, hostPort: 80}]\n",
        ),
        "hostPort",
    );
    b.create_pod_refused("HI-4 host PID", &pod("tien-trinh", &mine, "  hostPID: true\n", "", ""), "hostPID");
    b.create_pod_refused("HI-5 host IPC", &pod("ipc", &mine, "  hostIPC: true\n", "", ""), "hostIPC");

    // MTB-PL1-BC-CPI-6 Block modification of resource quotas (and the LimitRange).
    b.refused(
        "CPI-6 raise the ResourceQuota",
        &[
            "-n",
            &mine,
            "patch",
            "resourcequota",
            "govpaas-quota",
            "--type=merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"1000"}}}"#,
        ],
        "",
        "forbidden",
    );
    b.refused(
        "CPI-6 delete the ResourceQuota",
        &["-n", &mine, "delete", "resourcequota", "govpaas-quota"],
        "",
        "forbidden",
    );
    b.refused(
        "CPI-6 delete the LimitRange",
        &["-n", &mine, "delete", "limitrange", "govpaas-defaults"],
        "",
        "forbidden",
    );

    // MTB-PL1-CC-TI-1 Block access to other tenants' resources.
    for (what, args) in [
        ("list another tenant's Pods", vec!["-n", theirs.as_str(), "get", "pods"]),
        ("read another tenant's Secrets", vec!["-n", theirs.as_str(), "get", "secrets"]),
        ("create in another tenant", vec!["-n", theirs.as_str(), "create", "configmap", "x"]),
        ("read another Tenant", vec!["get", "tenant", theirs.as_str()]),
    ] {
        b.refused(&format!("TI-1 {what}"), &args, "", "forbidden");
    }

    // MTB-PL1-CC-FNS-1/2 Configure namespace resource quotas and object limits: both present, and
    // the quota bounds compute, storage and object counts.
    let hard =
        b.cluster.kubectl_ok(&["-n", &mine, "get", "resourcequota", "govpaas-quota", "-o", "jsonpath={.spec.hard}"]);
    for key in ["requests.cpu", "requests.memory", "requests.storage", "pods", "services"] {
        assert!(hard.contains(&format!("\"{key}\"")), "FNS-1: the quota has no {key}: {hard}");
    }
    let limits =
        b.cluster.kubectl_ok(&["-n", &mine, "get", "limitrange", "govpaas-defaults", "-o", "jsonpath={.spec.limits}"]);
    assert!(limits.contains("defaultRequest"), "FNS-2: no default requests in the LimitRange: {limits}");
    b.allowed("FNS read own quota", &["-n", &mine, "get", "resourcequota"], "");

    // MTB-PL1-CC-TI-2 (self-service): the admin manages its own Roles, RoleBindings and
    // NetworkPolicies …
    b.allowed("own Role", &["-n", &mine, "create", "role", "doc-pod", "--verb=get,list", "--resource=pods"], "");
    b.allowed(
        "own RoleBinding",
        &["-n", &mine, "create", "rolebinding", "doc-pod", "--role=doc-pod", "--user=nhan-vien@quangnam.gov.vn"],
        "",
    );
    let policy = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: cho-phep-web, namespace: {mine}}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress: [{{from: [{{podSelector: {{}}}}]}}]\n"
    );
    b.allowed("own NetworkPolicy", &["create", "-f", "-"], &policy);
    b.allowed("delete own NetworkPolicy", &["-n", &mine, "delete", "networkpolicy", "cho-phep-web"], "");
    b.allowed("delete own RoleBinding", &["-n", &mine, "delete", "rolebinding", "doc-pod"], "");
    // … but not govpaas's fence, nor more rights than it holds, nor its namespace for everyone.
    b.refused(
        "govpaas's NetworkPolicy",
        &["-n", &mine, "delete", "networkpolicy", "govpaas-default-deny"],
        "",
        "govpaas-tenant-objects",
    );
    b.refused(
        "govpaas's RoleBinding",
        &["-n", &mine, "label", "rolebinding", "govpaas-agency-admins", "x=y"],
        "",
        "govpaas-tenant-objects",
    );
    b.refused(
        "a NetworkPolicy posing as govpaas's",
        &["create", "-f", "-"],
        &policy.replace("name: cho-phep-web", "name: govpaas-allow-all"),
        "govpaas-tenant-objects",
    );
    b.refused(
        "bind cluster-admin",
        &[
            "-n",
            &mine,
            "create",
            "rolebinding",
            "toan-quyen",
            "--clusterrole=cluster-admin",
            &format!("--user={}", b.admin),
        ],
        "",
        "forbidden",
    );
    b.refused(
        "grant the namespace to every user",
        &[
            "-n",
            &mine,
            "create",
            "rolebinding",
            "moi-nguoi",
            "--clusterrole=govpaas-agency-admin",
            "--group=system:authenticated",
        ],
        "",
        "govpaas-tenant-objects",
    );
    b.refused(
        "grant the namespace to another namespace's ServiceAccount",
        &[
            "-n",
            &mine,
            "create",
            "rolebinding",
            "ngoai",
            "--role=doc-pod",
            &format!("--serviceaccount={theirs}:default"),
        ],
        "",
        "govpaas-tenant-objects",
    );
    // The fence is intact.
    b.cluster.kubectl_ok(&["-n", &mine, "get", "networkpolicy", "govpaas-default-deny"]);
}

//! govpaas on the real node (`cargo xtask cluster up` as root: containerd, the kubelet, kube-proxy,
//! CoreDNS, kube-router's firewall): the chart installs the operator and the gateway from the images
//! `cargo xtask images` builds, as Pods; agencies' Pods run the agency-echo image; and every claim
//! about traffic is checked with real TCP connections and real HTTPS calls made inside Pods
//! (`kubectl exec … agency-echo connect|get|lookup`), each asserted both ways.
//!
//! One test, in phases that build on each other (the chart on Pods, isolation, the LGSP, then the
//! chart's upgrade, leader hand-over and uninstall), because the machine has one real node and the
//! phases share its Pods.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use govpaas_crds::AgencyLevel;
use govpaas_crds::data_sharing::GrantState;
use govpaas_crds::{DataSharingService, Platform};
use govpaas_tests::eventually;
use govpaas_tests::operator::{self, NAMESPACE, RELEASE};
use govpaas_tests::world::{
    ConsumedApiBuilder, DataSharingServiceBuilder, PortalBuilder, ProvidedApiBuilder, Quota, World, service,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use xtask::node;

const WAIT: Duration = Duration::from_secs(180);
/// The field manager of this test's changes to the shared Platform, undone at the end.
const MANAGER: &str = "govpaas-tests-real-node";
const ECHO_BINARY: &str = "/usr/local/bin/agency-echo";

/// The agency codes of this test's scope: a parent and its child, and two more agencies.
const PARENT_CODE: &str = "H49.10";
const CHILD_CODE: &str = "H49.10.01";
const PROVIDER_CODE: &str = "H49.11";
const CONSUMER_CODE: &str = "H49.12";

/// The shared world (its scope, Tenants and cleanup; the operator is the chart's, on Pods) and
/// what this test alone puts on the node.
struct RealNode {
    world: World,
}

impl Deref for RealNode {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl RealNode {
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self.cluster.kubectl().args(args).output().expect("running kubectl");
        (out.status.success(), text(&out))
    }

    fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut all: Vec<&str> = args.to_vec();
        let expression = format!("jsonpath={path}");
        all.extend(["-o", &expression]);
        let (ok, out) = self.kubectl(&all);
        assert!(ok, "kubectl {}: {out}", all.join(" "));
        out.trim().to_owned()
    }

    /// `agency-echo <args>` inside `namespace/pod`: (exit 0, output).
    fn exec(&self, namespace: &str, pod: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["exec", "-n", namespace, pod, "--", ECHO_BINARY];
        all.extend(args);
        self.kubectl(&all)
    }

    /// Polls one TCP connection from `namespace/pod` to `target` until its outcome is `expected`
    /// (policies take a moment to reach the firewall), then checks it holds on a second try.
    async fn expect_connection(&self, (namespace, pod): (&str, &str), target: &str, expected: bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last;
        loop {
            let (connected, out) = self.exec(namespace, pod, &["connect", target, "2s"]);
            last = out;
            if connected == expected && !last.contains("error:") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {namespace}/{pod} → {target} should be {}; last: {last}",
                if expected { "connected" } else { "refused" }
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (again, out) = self.exec(namespace, pod, &["connect", target, "2s"]);
        assert_eq!(again, expected, "{what}: {namespace}/{pod} → {target} changed its outcome: {out}");
    }

    fn pod_ip(&self, namespace: &str, pod: &str) -> String {
        self.jsonpath(&["get", "pod", "-n", namespace, pod], "{.status.podIP}")
    }

    /// An agency-echo Pod on the real node, meeting the `restricted` Pod Security Standard, serving
    /// plain HTTP on 8080 and 9090; `secret` is mounted at /etc/lgsp-client.
    async fn echo_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)], secret: Option<&str>) {
        let labels: serde_json::Map<String, serde_json::Value> =
            labels.iter().map(|(key, value)| ((*key).to_owned(), (*value).into())).collect();
        let (mounts, volumes) = match secret {
            Some(secret) => (
                serde_json::json!([{ "name": "client", "mountPath": "/etc/lgsp-client", "readOnly": true }]),
                serde_json::json!([{ "name": "client", "secret": { "secretName": secret } }]),
            ),
            None => (serde_json::json!([]), serde_json::json!([])),
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "spec": {
                "nodeSelector": { node::TAINT: "true" },
                "tolerations": [{ "key": node::TAINT, "operator": "Exists", "effect": "NoSchedule" }],
                "automountServiceAccountToken": false,
                "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
                "containers": [{
                    "name": "echo",
                    "image": xtask::images::reference(xtask::images::ECHO),
                    "imagePullPolicy": "Never",
                    "env": [{ "name": "ECHO_PORTS", "value": "8080,9090" }, { "name": "ECHO_NAME", "value": name }],
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": { "drop": ["ALL"] },
                    },
                    "resources": {
                        "requests": { "cpu": "10m", "memory": "16Mi" },
                        "limits": { "cpu": "100m", "memory": "64Mi" },
                    },
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        }))
        .expect("an agency-echo Pod");
        self.apply(&pod).await;
    }

    /// Waits until at least `count` Pods matching `selector` are Ready and not being deleted.
    fn wait_pods_ready(&self, namespace: &str, selector: &str, count: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = self.jsonpath(
                &["get", "pods", "-n", namespace, "-l", selector],
                r#"{range .items[*]}{.metadata.deletionTimestamp}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            );
            // Pods being deleted print their deletion time before the status: they never count.
            if ready.lines().filter(|l| *l == "True").count() >= count {
                return;
            }
            if Instant::now() > deadline {
                let (_, pods) = self.kubectl(&["get", "pods", "-n", namespace, "-l", selector, "-o", "wide"]);
                let (_, events) = self.kubectl(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]);
                panic!("{count} Pods {selector} in {namespace} not Ready:\n{pods}\n{events}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn tenant_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.scope)
    }

    async fn consumption(&self, namespace: &str, name: &str, state: GrantState) {
        self.observed(namespace, name, &format!("consumption {state:?}"), |service: &DataSharingService| {
            service.status.as_ref()?.consumptions.iter().any(|c| c.state == state).then_some(())
        })
        .await
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        for namespace in ["ingress-nginx", &format!("{}-outside", self.scope)] {
            let _ = self
                .cluster
                .kubectl()
                .args(["delete", "namespace", namespace, "--ignore-not-found", "--wait=false"])
                .output();
        }
        // The probe that stands in for a gateway Pod lives in the release's namespace.
        let probe = format!("gateway-probe-{}", self.scope);
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "pod", "-n", NAMESPACE, &probe, "--ignore-not-found", "--wait=false"])
            .output();
        // The Platform as this test found it: its fields go with the manager that set them.
        let platform = serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1",
            "kind": "Platform",
            "metadata": { "name": "default" },
            "spec": { "baseDomain": self.base_domain },
        });
        let _ = self.cluster.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "--field-manager", MANAGER, "-f", "-"],
            &platform.to_string(),
        );
    }
}

/// The API server's port as Pods reach it after the `kubernetes` Service's DNAT: the NetworkPolicies
/// of the chart must allow it.
fn api_server_port(world: &RealNode) -> String {
    world.jsonpath(&["get", "endpointslice", "-n", "default", "kubernetes"], "{.ports[0].port}")
}

/// The chart's values that put its Pods on the real node, scoped to this test's Tenants.
fn values(world: &RealNode, log_level: &str) -> String {
    let port = api_server_port(world);
    let placement = node::placement_yaml(2);
    format!(
        "operator:\n  replicas: 2\n  logLevel: {log_level}\n  tenantSelector: \"{selector}\"\n{placement}  networkPolicy:\n    apiServerPorts: [443, 6443, {port}]\ngateway:\n  replicas: 1\n  audit:\n    checkpointSeconds: 2\n{placement}  networkPolicy:\n    apiServerPorts: [443, 6443, {port}]\n",
        selector = world.selector(),
    )
}

fn helm_upgrade(world: &RealNode, values: &str) {
    let file = operator::work_dir(world.cluster).join(format!("real-node-values-{}.yaml", std::process::id()));
    std::fs::write(&file, values).expect("writing the values");
    let out = world
        .cluster
        .helm()
        .args(["upgrade", "--install", RELEASE])
        .arg(world.cluster.root.join("charts/govpaas"))
        .args(["--namespace", NAMESPACE, "--history-max", "3", "-f"])
        .arg(&file)
        .output()
        .expect("running helm");
    assert!(out.status.success(), "helm upgrade: {}", text(&out));
}

/// The gateway's audit volumes come from kube-controller-manager's hostPath provisioner, which makes
/// their directories root's with mode 0750 (it is meant for single-node tests, and a hostPath volume
/// takes no fsGroup): give them to the gateway's user, as a volume plugin with ownership management
/// would.
fn give_audit_volumes_to_the_gateway(world: &RealNode) {
    let claims = world.jsonpath(
        &["get", "pvc", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=govpaas-gateway"],
        r#"{range .items[*]}{.spec.volumeName}{"\n"}{end}"#,
    );
    for volume in claims.lines().filter(|l| !l.is_empty()) {
        let path = world.jsonpath(&["get", "pv", volume], "{.spec.hostPath.path}");
        if path.starts_with("/tmp/hostpath_pv/") {
            std::fs::create_dir_all(&path).expect("the volume's directory");
            let status = Command::new("chown").args(["-R", "65532:65532", &path]).status().expect("chown");
            assert!(status.success());
        }
    }
}

/// The debug images of the operator and the gateway, built and imported into the node's containerd.
fn load_govpaas_images() {
    let out = xtask::paths::target_dir().join("images-real-node");
    let images = xtask::images::build(xtask::install::Profile::Debug, &out).expect("cargo xtask images");
    for image in images {
        node::load_image(&image.archive).unwrap_or_else(|err| panic!("loading {}: {err:#}", image.reference));
    }
}

async fn setup() -> RealNode {
    // The control plane up (with its real node, when it has one) before its state is read.
    govpaas_tests::cluster();
    let state = xtask::cluster::read_state().expect("the cluster's state");
    match &state.node {
        Some(node) if node.ready => {}
        other => panic!(
            "the real node is not up ({}): `cargo xtask cluster up` runs it as root",
            other.as_ref().and_then(|n| n.error.clone()).unwrap_or_else(|| "GOVPAAS_REAL_NODE=0?".into())
        ),
    }
    load_govpaas_images();
    let world = RealNode { world: World::without_operator("pods").await };
    // Agencies' workloads run agency-echo on the real node. Only these fields, under this test's
    // own manager (released at the end): a whole typed Platform would take over every default.
    let echo = xtask::images::reference(xtask::images::ECHO);
    let platform = serde_json::json!({
        "apiVersion": "govpaas.io/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "default" },
        "spec": {
            "baseDomain": world.base_domain,
            "images": { "portal": echo, "documentService": echo },
            "workloadNodes": {
                "nodeSelector": { node::TAINT: "true" },
                "tolerations": [{ "key": node::TAINT, "operator": "Exists", "effect": "NoSchedule" }],
            },
        },
    });
    Api::<Platform>::all(world.client.clone())
        .patch("default", &PatchParams::apply(MANAGER).force(), &Patch::Apply(&platform))
        .await
        .unwrap_or_else(|err| panic!("the Platform: {err}"));
    give_audit_volumes_to_the_gateway(&world);
    helm_upgrade(&world, &values(&world, "info"));
    // The release's Pods move from the kwok nodes (the chart's defaults) to the real node.
    let release = "app.kubernetes.io/component in (operator, lgsp-gateway)";
    let deadline = Instant::now() + WAIT;
    loop {
        let pods = world.jsonpath(
            &["get", "pods", "-n", NAMESPACE, "-l", release],
            r#"{range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        );
        let on_node = |line: &&str| line.starts_with(&format!("{} True", node::NAME));
        if pods.lines().count() == 3 && pods.lines().all(|line| on_node(&line)) {
            break;
        }
        assert!(Instant::now() < deadline, "the release's 3 Pods Ready on {}:\n{pods}", node::NAME);
        std::thread::sleep(Duration::from_secs(1));
    }
    world
}

#[tokio::test]
async fn on_the_real_node_isolation_holds_on_real_connections_and_the_lgsp_and_the_chart_work_as_pods() {
    let world = setup().await;
    let (parent, child, provider, consumer) =
        (world.tenant_name("p"), world.tenant_name("c"), world.tenant_name("a"), world.tenant_name("b"));
    let parent_quota = Quota::default().pods(20);
    let agency_quota =
        Quota::default().cpu("1").memory("2Gi").storage("2Gi").pods(8).services(4).public_hosts(1).lgsp_apis(2);
    for (name, code, level, quota) in [
        (&parent, PARENT_CODE, AgencyLevel::Province, parent_quota),
        (&child, CHILD_CODE, AgencyLevel::Department, agency_quota.clone()),
        (&provider, PROVIDER_CODE, AgencyLevel::Province, agency_quota.clone()),
        (&consumer, CONSUMER_CODE, AgencyLevel::Province, agency_quota),
    ] {
        let tenant = world.tenant(name).code(code).display_name(&format!("Cơ quan {code}")).level(level).quota(quota);
        let tenant = if name == &child { tenant.parent(&parent) } else { tenant };
        world.apply(&tenant.build()).await;
    }
    for name in [&parent, &child, &provider, &consumer] {
        world.tenant_ready(name).await;
    }

    // Pods: two in the provider's namespace (its API and a second workload), one in each other tenant,
    // the ingress controller's stand-in, a Pod outside every tenant, and one wearing the gateway's
    // label (which the providers' NetworkPolicies admit) without being the chart's gateway.
    world.echo_pod(&provider, "ho-tich", &[("app", "ho-tich")], None).await;
    world.echo_pod(&provider, "worker", &[("app", "worker")], None).await;
    world.echo_pod(&parent, "echo", &[("app", "echo")], None).await;
    world.echo_pod(&child, "echo", &[("app", "echo")], None).await;
    world.apply(&service(&provider, "ho-tich", "ho-tich", 8080, Some(8080))).await;
    let outside = format!("{}-outside", world.scope);
    for namespace in ["ingress-nginx", outside.as_str()] {
        // An earlier run's namespace may still be going away.
        let deadline = Instant::now() + WAIT;
        while world
            .kubectl(&["get", "namespace", namespace, "-o", "jsonpath={.status.phase}"])
            .1
            .contains("Terminating")
        {
            assert!(Instant::now() < deadline, "namespace {namespace} stays Terminating");
            std::thread::sleep(Duration::from_secs(1));
        }
        let (ok, out) = world.kubectl(&["create", "namespace", namespace]);
        assert!(ok || out.contains("AlreadyExists"), "{out}");
    }
    world.echo_pod("ingress-nginx", &format!("controller-{}", world.scope), &[("app", "ingress")], None).await;
    world.echo_pod(&outside, "echo", &[("app", "echo")], None).await;
    let probe_labels = [("app.kubernetes.io/name", "govpaas-gateway")];
    world.echo_pod(NAMESPACE, &format!("gateway-probe-{}", world.scope), &probe_labels, None).await;
    // A Portal of the provider's agency, built by the operator Pods, run by the real node.
    let portal_host = format!("cong.{}", world.domain_of(&provider));
    world.apply(&PortalBuilder::new(&provider, "cong", &[portal_host]).build()).await;

    // The LGSP: the provider's API, granted to the consumer's agency; the parent's agency asks too,
    // and is never approved.
    let api = format!("ho-tich-{}", world.scope);
    let provide = |decide: fn(ProvidedApiBuilder) -> ProvidedApiBuilder| {
        let provided = decide(ProvidedApiBuilder::new(&api, "ho-tich", 8080).path("/api/v1"));
        DataSharingServiceBuilder::new(&provider, "ho-tich").provides(provided).build()
    };
    world.apply(&provide(|api| api.approve(CONSUMER_CODE))).await;
    for (namespace, name) in [(&consumer, "mot-cua"), (&parent, "benh-an")] {
        let asking = ConsumedApiBuilder::new("ho-tich", PROVIDER_CODE, &api).purpose("Tiếp nhận hồ sơ một cửa");
        world.apply(&DataSharingServiceBuilder::new(namespace, name).consumes(asking).build()).await;
    }
    world.consumption(&consumer, "mot-cua", GrantState::Granted).await;
    world.consumption(&parent, "benh-an", GrantState::Pending).await;
    let consumer_secret = format!("{}-lgsp-client", "mot-cua");
    let parent_secret = format!("{}-lgsp-client", "benh-an");
    for (namespace, secret) in [(&consumer, &consumer_secret), (&parent, &parent_secret)] {
        world.wait(namespace, secret, "the client certificate", |_: &Secret| Some(())).await;
    }
    world.echo_pod(&consumer, "caller", &[("app", "caller")], Some(&consumer_secret)).await;
    world.echo_pod(&parent, "caller", &[("app", "caller")], Some(&parent_secret)).await;
    for namespace in [&provider, &parent, &child, &consumer, &outside] {
        let count = if namespace == &provider || namespace == &parent { 2 } else { 1 };
        let selector = if namespace == &provider { "app in (ho-tich, worker)" } else { "app in (echo, caller)" };
        world.wait_pods_ready(namespace, selector, count);
    }
    world.wait_pods_ready("ingress-nginx", "app=ingress", 1);
    world.wait_pods_ready(NAMESPACE, "app.kubernetes.io/component=lgsp-gateway", 1);
    world.wait_pods_ready(&provider, "app.kubernetes.io/name=govpaas-portal", 1);

    // ---- Isolation, on real connections.
    let ip = |namespace: &str, pod: &str| world.pod_ip(namespace, pod);
    let (api_pod, worker) = (ip(&provider, "ho-tich"), ip(&provider, "worker"));
    let (parent_pod, child_pod) = (ip(&parent, "echo"), ip(&child, "echo"));
    let consumer_pod = ip(&consumer, "caller");
    let outside_pod = ip(&outside, "echo");
    // Same tenant: allowed.
    world.expect_connection((&provider, "worker"), &format!("{api_pod}:8080"), true, "same tenant").await;
    world.expect_connection((&provider, "ho-tich"), &format!("{worker}:9090"), true, "same tenant").await;
    // Across tenants, parent and child included, both ways: refused.
    for ((from_ns, from_pod), to, what) in [
        ((&parent, "echo"), &child_pod, "parent → child"),
        ((&child, "echo"), &parent_pod, "child → parent"),
        ((&provider, "worker"), &consumer_pod, "provider → consumer"),
        ((&consumer, "caller"), &worker, "consumer → provider"),
        ((&consumer, "caller"), &parent_pod, "consumer → parent"),
        ((&parent, "echo"), &api_pod, "parent → provider"),
    ] {
        world.expect_connection((from_ns, from_pod), &format!("{to}:8080"), false, what).await;
    }
    // A namespace outside every tenant reaches no tenant, and no tenant reaches it.
    world.expect_connection((&outside, "echo"), &format!("{worker}:8080"), false, "outside → tenant").await;
    world.expect_connection((&provider, "worker"), &format!("{outside_pod}:8080"), false, "tenant → outside").await;
    // Another tenant's Service ClusterIP: refused to the consumer, open to the provider's own Pods.
    let cluster_ip = world.jsonpath(&["get", "service", "-n", &provider, "ho-tich"], "{.spec.clusterIP}");
    world
        .expect_connection((&consumer, "caller"), &format!("{cluster_ip}:8080"), false, "another tenant's Service")
        .await;
    world.expect_connection((&provider, "worker"), &format!("{cluster_ip}:8080"), true, "its own Service").await;
    // DNS: resolved through the Service; CoreDNS's port 53 open, its other ports not.
    let (resolved, out) =
        world.exec(&consumer, "caller", &["lookup", &format!("ho-tich.{provider}.svc.cluster.local")]);
    assert!(resolved && out.contains(&cluster_ip), "DNS from a tenant: {out}");
    let dns_pod =
        world.jsonpath(&["get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns"], "{.items[0].status.podIP}");
    world.expect_connection((&consumer, "caller"), &format!("{dns_pod}:53"), true, "DNS").await;
    world.expect_connection((&consumer, "caller"), &format!("{dns_pod}:8181"), false, "CoreDNS's other port").await;
    // The ingress controller's namespace reaches the Portal's Pods; a namespace that is not it does not.
    let portal_pod = world.jsonpath(
        &["get", "pods", "-n", &provider, "-l", "app.kubernetes.io/name=govpaas-portal"],
        "{.items[0].status.podIP}",
    );
    let controller = format!("controller-{}", world.scope);
    world
        .expect_connection(("ingress-nginx", &controller), &format!("{portal_pod}:8080"), true, "ingress → Portal")
        .await;
    world.expect_connection((&outside, "echo"), &format!("{portal_pod}:8080"), false, "outside → Portal").await;
    // The gateway's Pods reach the provider's API Pods on the API port, and nothing else.
    let probe = format!("gateway-probe-{}", world.scope);
    world.expect_connection((NAMESPACE, &probe), &format!("{api_pod}:8080"), true, "gateway → API port").await;
    world
        .expect_connection(
            (NAMESPACE, &probe),
            &format!("{api_pod}:9090"),
            false,
            "gateway → another port of the API Pod",
        )
        .await;
    world
        .expect_connection((NAMESPACE, &probe), &format!("{worker}:8080"), false, "gateway → a Pod that serves no API")
        .await;
    // The operator's Pods: closed to agencies, open to a namespace the chart lets scrape them.
    let operator_pod = world.jsonpath(
        &["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator"],
        "{.items[0].status.podIP}",
    );
    world.expect_connection((&consumer, "caller"), &format!("{operator_pod}:8080"), false, "agency → operator").await;
    world
        .expect_connection(
            ("ingress-nginx", &controller),
            &format!("{operator_pod}:8080"),
            true,
            "scraper → operator metrics",
        )
        .await;

    // ---- The LGSP on Pods: the consumer's Pod calls through the gateway's Service.
    let host = format!("lgsp.{}", world.base_domain);
    let path = format!("https://{host}/{PROVIDER_CODE}/{api}/so-ho-tich/42?nam=2026");
    let gateway_service = format!("govpaas-gateway.{NAMESPACE}.svc.cluster.local:443");
    let call = |namespace: &str| {
        world.exec(
            namespace,
            "caller",
            &[
                "get",
                &path,
                "--connect",
                &gateway_service,
                "--cert",
                "/etc/lgsp-client/tls.crt",
                "--key",
                "/etc/lgsp-client/tls.key",
                "--ca",
                "/etc/lgsp-client/ca.crt",
            ],
        )
    };
    let answer = eventually(WAIT, "the consumer's call answered by the provider's Pod", || async {
        let (ok, out) = call(&consumer);
        (ok && out.contains(" 200 ")).then_some(out)
    })
    .await;
    let identity = format!("spiffe://{}/agency/{CONSUMER_CODE}/dss/mot-cua", world.base_domain);
    assert!(answer.contains(r#""name":"ho-tich""#) && answer.contains(r#""path":"/api/v1/so-ho-tich/42""#), "{answer}");
    assert!(answer.contains(&identity), "the provider sees the consumer's verified identity: {answer}");
    let (_, refused) = call(&parent);
    assert!(refused.contains(" 403 "), "an agency without a grant gets 403: {refused}");
    // The provider denies the consumer: refused from then on, with no restart.
    let gateway_pod_uid = world.jsonpath(&["get", "pod", "-n", NAMESPACE, "govpaas-gateway-0"], "{.metadata.uid}");
    world.apply(&provide(|api| api.deny(CONSUMER_CODE))).await;
    world.consumption(&consumer, "mot-cua", GrantState::Denied).await;
    eventually(WAIT, "the denial in force at the gateway", || async {
        call(&consumer).1.contains(" 403 ").then_some(())
    })
    .await;
    assert_eq!(
        world.jsonpath(&["get", "pod", "-n", NAMESPACE, "govpaas-gateway-0"], "{.metadata.uid}"),
        gateway_pod_uid,
        "the same gateway Pod"
    );
    // The audit, from the gateway's volume once its Pod stopped (a last checkpoint on SIGTERM),
    // verified by `govpaas-gateway audit verify` against the certificate that signed it.
    let volume = world.jsonpath(&["get", "pvc", "-n", NAMESPACE, "audit-govpaas-gateway-0"], "{.spec.volumeName}");
    let audit_dir = PathBuf::from(world.jsonpath(&["get", "pv", &volume], "{.spec.hostPath.path}"));
    let (ok, out) = world.kubectl(&["scale", "statefulset", "-n", NAMESPACE, "govpaas-gateway", "--replicas=0"]);
    assert!(ok, "{out}");
    eventually(WAIT, "the gateway Pod gone", || async {
        (!world.kubectl(&["get", "pod", "-n", NAMESPACE, "govpaas-gateway-0"]).0).then_some(())
    })
    .await;
    let audit = std::fs::read_to_string(audit_dir.join("audit.jsonl")).expect("the audit log on the gateway's volume");
    let records: Vec<serde_json::Value> =
        audit.lines().map(|l| serde_json::from_str(l).expect("a JSON record")).collect();
    assert!(
        records.iter().any(|r| r["kind"] == "exchange" && r["status"] == 200 && r["caller"] == identity.as_str()),
        "{audit}"
    );
    assert!(records.iter().filter(|r| r["kind"] == "exchange" && r["status"] == 403).count() >= 2, "{audit}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    for key in ["tls.crt", "ca.crt"] {
        let data = world.jsonpath(
            &["get", "secret", "-n", NAMESPACE, "govpaas-gateway-tls"],
            &format!("{{.data.{}}}", key.replace('.', "\\.")),
        );
        let decoded = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(data.as_bytes())?;
                child.wait_with_output()
            })
            .expect("base64");
        std::fs::write(dir.path().join(key), decoded.stdout).unwrap();
    }
    let verified = Command::new(govpaas_tests::gateway::gateway_binary())
        .args(["audit", "verify", "--log"])
        .arg(audit_dir.join("audit.jsonl"))
        .arg("--ca")
        .arg(dir.path().join("ca.crt"))
        .arg("--certificate")
        .arg(dir.path().join("tls.crt"))
        .output()
        .expect("govpaas-gateway audit verify");
    assert!(verified.status.success() && text(&verified).contains("OK"), "audit verify: {}", text(&verified));

    // ---- The chart on Pods: an upgrade with changed values rolls the operator's Pods.
    let before = world.jsonpath(
        &["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator"],
        "{.items[*].metadata.name}",
    );
    helm_upgrade(&world, &values(&world, "debug"));
    let deadline = Instant::now() + WAIT;
    loop {
        let now = world.jsonpath(
            &["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator"],
            "{.items[*].metadata.name}",
        );
        if before.split(' ').all(|old| !now.contains(old)) && now.split(' ').count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the upgrade did not roll the operator's Pods: {before} → {now}");
        std::thread::sleep(Duration::from_secs(1));
    }
    world.wait_pods_ready(NAMESPACE, "app.kubernetes.io/component=operator", 2);
    world.wait_pods_ready(NAMESPACE, "app.kubernetes.io/component=lgsp-gateway", 1);
    // Deleting the leader's Pod hands the Lease to the standby within 15 s.
    let lease = govpaas_operator::leader::lease_name(Some(&world.selector()));
    let holder = || world.jsonpath(&["get", "lease", "-n", NAMESPACE, &lease], "{.spec.holderIdentity}");
    let leader = eventually(WAIT, "a leader", || async {
        let h = holder();
        (!h.is_empty()).then_some(h)
    })
    .await;
    let leader_pod = world
        .jsonpath(
            &["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator"],
            "{.items[*].metadata.name}",
        )
        .split(' ')
        .find(|pod| leader.contains(pod))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the Lease holder {leader} is one of the operator's Pods"));
    let started = Instant::now();
    let (ok, out) = world.kubectl(&["delete", "pod", "-n", NAMESPACE, &leader_pod, "--wait=false"]);
    assert!(ok, "{out}");
    let new_leader = eventually(Duration::from_secs(30), "a new leader", || async {
        let h = holder();
        (!h.is_empty() && !h.contains(&leader_pod)).then_some(h)
    })
    .await;
    let handover = started.elapsed();
    assert!(handover <= Duration::from_secs(15), "the standby {new_leader} took the Lease after {handover:?}");
    eprintln!("leader hand-over: {handover:?} ({leader_pod} → {new_leader})");

    // `helm uninstall` removes the release's Pods and keeps what docs/operations.md says it keeps.
    let out = world
        .cluster
        .helm()
        .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "2m"])
        .output()
        .expect("helm");
    assert!(out.status.success(), "helm uninstall: {}", text(&out));
    eventually(WAIT, "the release's Pods gone", || async {
        world
            .jsonpath(
                &["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component in (operator, lgsp-gateway)"],
                "{.items[*].metadata.name}",
            )
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(world.kubectl(&["get", "crd", "tenants.govpaas.io"]).0, "the CRDs are kept");
    assert!(world.kubectl(&["get", "tenant", &provider]).0, "the Tenants are kept");
    assert!(world.kubectl(&["get", "pvc", "-n", NAMESPACE, "audit-govpaas-gateway-0"]).0, "the audit volumes are kept");
    assert!(world.kubectl(&["get", "pod", "-n", &provider, "ho-tich"]).0, "the agencies keep running");
}

//! The local control plane behaves like a cluster: scheduling onto kwok nodes, volume binding, namespace
//! deletion, garbage collection and quota admission all happen for real.

use std::time::Duration;

use govpaas_tests::{TestNamespace, cluster, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn deployment_pods_run_on_kwok_nodes() {
    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-deploy");
    cluster.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx:1.27}}]
"#,
        ns = ns.name
    ));
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, &ns.name);
    let running = eventually(WAIT, "3 Running pods", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        let running: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        (running.len() == 3).then_some(running)
    })
    .await;
    for pod in running {
        let node = pod.spec.and_then(|s| s.node_name).expect("a running pod has a node");
        assert!(node.starts_with("kwok-node-"), "pod scheduled on {node}");
    }
    let available =
        cluster.kubectl_ok(&["-n", &ns.name, "get", "deployment", "web", "-o", "jsonpath={.status.availableReplicas}"]);
    assert_eq!(available, "3");
}

#[tokio::test]
async fn pvc_of_the_default_storage_class_binds() {
    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-pvc");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data, namespace: {}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n",
        ns.name
    ));
    let client = cluster.client().await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let pvc = eventually(WAIT, "the PVC to bind", || async {
        let pvc = pvcs.get("data").await.ok()?;
        (pvc.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(pvc)
    })
    .await;
    let spec = pvc.spec.expect("spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"), "the default class is filled in");
    let volume = spec.volume_name.expect("a bound PVC names its volume");
    let pv = Api::<PersistentVolume>::all(client).get(&volume).await.expect("the bound volume exists");
    let path = pv.spec.and_then(|s| s.host_path).map(|h| h.path).expect("a hostPath volume");
    assert!(std::path::Path::new(&path).is_dir(), "the provisioner made the directory {path}");
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents() {
    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-nsdel");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {n}}}\ndata: {{a: b}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: token, namespace: {n}}}\nstringData: {{t: x}}\n",
        n = ns.name
    ));
    let client = cluster.client().await;
    cluster.kubectl_ok(&["delete", "namespace", &ns.name, "--wait=false"]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(WAIT, "the namespace to be gone", || async {
        matches!(namespaces.get_opt(&ns.name).await, Ok(None)).then_some(())
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert!(configmaps.get_opt("settings").await.expect("get").is_none());
}

#[tokio::test]
async fn owner_references_cascade() {
    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-gc");
    cluster.apply(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owner, namespace: {}}}\n", ns.name));
    let client = cluster.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    let owner_uid = configmaps.get("owner").await.expect("owner").metadata.uid.expect("uid");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  namespace: {}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}\n",
        ns.name
    ));
    cluster.kubectl_ok(&["-n", &ns.name, "delete", "configmap", "owner"]);
    eventually(WAIT, "the garbage collector to delete the child", || async {
        matches!(configmaps.get_opt("child").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn resource_quota_refuses_a_pod_over_it() {
    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-quota");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: fence, namespace: {}}}\nspec:\n  hard: {{pods: \"1\", requests.cpu: 500m, limits.cpu: \"1\"}}\n",
        ns.name
    ));
    // The quota controller must have computed usage before the admission plugin enforces it.
    eventually(WAIT, "the quota's status", || async {
        let used = cluster
            .kubectl()
            .args(["-n", &ns.name, "get", "resourcequota", "fence", "-o", "jsonpath={.status.used.pods}"])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&used.stdout) == "0").then_some(())
    })
    .await;
    let pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: {cpu}}}, limits: {{cpu: {cpu}}}}}\n",
            ns.name
        )
    };
    let (ok, _, err) = cluster.kubectl_stdin(&["create", "-f", "-"], &pod("too-big", "800m"));
    assert!(!ok, "a pod over the CPU quota was admitted");
    assert!(err.contains("exceeded quota: fence"), "unexpected refusal: {err}");
    assert!(err.contains("requests.cpu"), "the refusal names the resource: {err}");
    cluster.apply(&pod("fits", "400m"));
    let (ok, _, err) = cluster.kubectl_stdin(&["create", "-f", "-"], &pod("second", "50m"));
    assert!(!ok, "a second pod over the pod count was admitted");
    assert!(err.contains("exceeded quota: fence") && err.contains("pods"), "unexpected refusal: {err}");
}

/// The operator skips a ResourceQuota whose cached copy says everything it would apply, string for
/// string; that holds only if it writes each limit the way the API server stores it
/// (`Amount::canonical`). Checked here against the real API server for every shape of amount.
#[tokio::test]
async fn quota_quantities_read_back_in_their_canonical_form() {
    use govpaas_crds::quantity::{Amount, Style};
    use k8s_openapi::api::core::v1::ResourceQuota;
    use std::collections::BTreeMap;

    let cluster = cluster();
    let ns = TestNamespace::new(cluster, "cp-canon");
    let written = [
        ("1000", Style::Decimal),
        ("1500", Style::Decimal),
        ("2000m", Style::Decimal),
        ("1500m", Style::Decimal),
        ("0.5", Style::Decimal),
        ("1500u", Style::Decimal),
        ("3000000", Style::Decimal),
        ("0", Style::Decimal),
        ("1024Mi", Style::Binary),
        ("2048", Style::Binary),
        ("1000", Style::Binary),
        ("1536", Style::Binary),
        ("1.5Gi", Style::Binary),
    ];
    // Each amount under a key of its own (extended resources may be any name); sent as the
    // operator prints it (`format`), read back, and compared with `canonical`.
    let key = |i: usize| format!("requests.quantities.test/q{i}");
    let hard: BTreeMap<String, String> = written
        .iter()
        .enumerate()
        .map(|(i, (amount, style))| (key(i), Amount::parse(amount).expect("amount").format(*style)))
        .collect();
    let quota = serde_json::json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "canonical", "namespace": ns.name},
        "spec": {"hard": hard},
    });
    cluster.apply(&serde_json::to_string(&quota).expect("json"));
    let quotas: Api<ResourceQuota> = Api::namespaced(cluster.client().await, &ns.name);
    let stored = quotas.get("canonical").await.expect("the quota").spec.and_then(|s| s.hard).expect("hard");
    for (i, (amount, style)) in written.iter().enumerate() {
        let expected = Amount::parse(amount).expect("amount").canonical(*style);
        assert_eq!(stored[&key(i)].0, expected, "{amount} ({style:?}) was sent as {:?}", hard[&key(i)]);
    }
}

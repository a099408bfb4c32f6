//! The Helm chart: `helm lint` clean (values.schema.json included), and every manifest it renders —
//! with every optional part switched on that this cluster has the API for — accepted by the real API
//! server's schemas in a server-side dry run. Bad values are refused by the schema with a clear message.

use std::process::Output;

use govpaas_tests::cluster;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_chart_lints_and_renders_manifests_the_api_server_accepts() {
    let cluster = cluster();
    govpaas_tests::api::install_api(cluster);
    let chart = cluster.root.join("charts").join("govpaas");
    let chart = chart.to_str().expect("a UTF-8 path");

    let lint = cluster.helm().args(["lint", "--strict", chart]).output().expect("helm lint");
    assert!(lint.status.success(), "helm lint: {}", text(&lint));

    let values = [
        "--set",
        "platform.create=true",
        "--set",
        "platform.spec.baseDomain=quangnam.gov.vn",
        "--set",
        "operator.tenantSelector=govpaas.io/scope=staged",
        "--set-json",
        r#"operator.networkPolicy.metricsFrom=[{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}]"#,
        "--set-json",
        r#"agencyAdmin.extraRules=[{"apiGroups":["batch"],"resources":["cronjobs"],"verbs":["get"]}]"#,
    ];
    let rendered = cluster
        .helm()
        .args(["template", "govpaas", chart, "--namespace", "govpaas-system", "--kube-version", "1.37.2"])
        .args(values)
        .output()
        .expect("helm template");
    assert!(rendered.status.success(), "helm template: {}", text(&rendered));
    let manifests = String::from_utf8_lossy(&rendered.stdout).into_owned();
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Platform",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(manifests.contains(&format!("kind: {kind}\n")), "the chart renders a {kind}");
    }
    // Prometheus scrapes the gateway's probes port: a Service for it, and ServiceMonitors on request
    // (their CRD is prometheus-operator's, so they are rendered here, not applied).
    assert!(manifests.contains("name: govpaas-gateway-metrics\n"), "the gateway's metrics Service");
    let monitored = cluster
        .helm()
        .args(["template", "govpaas", chart, "--namespace", "govpaas-system", "--kube-version", "1.37.2"])
        .args([
            "--set",
            "operator.metrics.serviceMonitor.enabled=true",
            "--set",
            "gateway.metrics.serviceMonitor.enabled=true",
        ])
        .output()
        .expect("helm template");
    assert!(monitored.status.success(), "helm template: {}", text(&monitored));
    let monitored = String::from_utf8_lossy(&monitored.stdout).into_owned();
    assert_eq!(monitored.matches("kind: ServiceMonitor\n").count(), 2, "{monitored}");
    assert!(monitored.contains("  name: govpaas-gateway\n  namespace: govpaas-system"), "the gateway's ServiceMonitor");
    // The release namespace, as `helm install --create-namespace` makes it (other tests share it).
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: govpaas-system\n");
    let (ok, out, err) =
        cluster.kubectl_stdin(&["apply", "--dry-run=server", "--namespace", "govpaas-system", "-f", "-"], &manifests);
    assert!(ok, "the API server refused a rendered manifest: {err}\n{out}");

    // Values the schema refuses, each with a message naming the value.
    for (set, expected) in [
        ("operator.replicas=0", "/operator/replicas"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("platform.create=true", "/platform/spec/baseDomain"),
        ("operator.metrics.port=80", "/operator/metrics/port"),
        ("gateway.metrics.serviceMonitor.interval=soon", "/gateway/metrics/serviceMonitor/interval"),
    ] {
        let out = cluster.helm().args(["template", "govpaas", chart, "--set", set]).output().expect("helm template");
        assert!(!out.status.success(), "{set} was accepted");
        assert!(text(&out).contains(expected), "{set}: {}", text(&out));
    }
}

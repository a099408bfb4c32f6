//! End to end, on a private control plane: `cargo xtask demo` installs the chart with Helm, runs the
//! operator with the chart's ServiceAccount token (so a verb missing from the chart's RBAC fails here)
//! and converges the Đà Nẵng examples; `helm upgrade` with changed values takes effect; `helm
//! uninstall` leaves what docs/operations.md says it leaves.

use std::path::Path;
use std::process::{Command, Output};

use xtask::install;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let tools = xtask::tools::ensure().expect("tools");
    let out = Command::new(&tools.kubectl).arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl");
    assert!(out.status.success(), "kubectl {} failed: {}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let tools = xtask::tools::ensure().expect("tools");
    let out = Command::new(&tools.helm).arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("helm");
    assert!(out.status.success(), "helm {} failed: {}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct PrivateCluster(std::path::PathBuf);

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["cluster", "down"])
            .env("GOVPAAS_REAL_NODE", "0")
            .env("GOVPAAS_CLUSTER_DIR", &self.0)
            .status();
    }
}

#[test]
fn helm_install_converges_the_examples_then_upgrade_and_uninstall() {
    xtask::tools::ensure().expect("tools");
    let dir = xtask::paths::workspace_root().join("target").join(format!("e2e-{}", std::process::id()));
    let cluster = PrivateCluster(dir.clone());
    let kubeconfig = dir.join("kubeconfig");

    // The demo waits until every Tenant, Portal and DocumentService is Ready, and fails otherwise.
    let demo = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("demo")
        .env("GOVPAAS_REAL_NODE", "0")
        .env("GOVPAAS_CLUSTER_DIR", &dir)
        .output()
        .expect("demo");
    assert!(demo.status.success(), "cargo xtask demo failed: {}", text(&demo));
    let shown = text(&demo);
    assert!(shown.contains("└── thanh-khe  H17.32  Commune  \"Phường Thanh Khê\"  [Ready]"), "{shown}");
    assert!(shown.contains("│   └── bv-danang  H17.03.01  Unit  \"Bệnh viện Đà Nẵng\"  [Ready]"), "{shown}");
    let not_ready = kubectl(
        &kubeconfig,
        &[
            "get",
            "tenants,portals,documentservices,datasharingservices",
            "-A",
            "-o",
            r#"jsonpath={range .items[?(@.status.conditions[0].status!="True")]}{.metadata.name}{" "}{end}"#,
        ],
    );
    assert_eq!(not_ready.trim(), "", "objects not Ready after the demo");
    assert_eq!(kubectl(&kubeconfig, &["get", "tenants", "--no-headers"]).lines().count(), 20);
    // The commune's consumption of the department's API is granted (both sides declared it).
    let consumption = kubectl(
        &kubeconfig,
        &["get", "datasharingservice", "mot-cua", "-n", "thanh-khe", "-o", "jsonpath={.status.consumptions[0].state}"],
    );
    assert_eq!(consumption, "Granted");
    // The operator ran with the chart's ServiceAccount, not the admin's certificate.
    let operator_kubeconfig = std::fs::read_to_string(dir.join("govpaas-operator.kubeconfig")).expect("kubeconfig");
    assert!(operator_kubeconfig.contains("token:") && !operator_kubeconfig.contains("client-key"));

    // Running the demo again is safe.
    let again = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("demo")
        .env("GOVPAAS_REAL_NODE", "0")
        .env("GOVPAAS_CLUSTER_DIR", &dir)
        .output()
        .expect("demo");
    assert!(again.status.success(), "a second cargo xtask demo failed: {}", text(&again));

    // helm upgrade with changed values takes effect.
    let chart = xtask::paths::workspace_root().join("charts").join("govpaas");
    let chart = chart.to_str().expect("utf-8 path");
    helm(
        &kubeconfig,
        &[
            "upgrade",
            install::RELEASE,
            chart,
            "-n",
            install::NAMESPACE,
            "--wait",
            "--timeout",
            "2m",
            "--set",
            "operator.replicas=3",
            "--set",
            "operator.logLevel=debug",
            "--set-json",
            r#"agencyAdmin.extraRules=[{"apiGroups":["batch"],"resources":["cronjobs"],"verbs":["get","list"]}]"#,
        ],
    );
    let deployment = kubectl(
        &kubeconfig,
        &[
            "-n",
            install::NAMESPACE,
            "get",
            "deployment",
            "govpaas-operator",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env[0].value}",
        ],
    );
    assert_eq!(deployment, "3 debug");
    let role = kubectl(&kubeconfig, &["get", "clusterrole", "govpaas-agency-admin", "-o", "json"]);
    assert!(role.contains("cronjobs"), "the extra rule reached govpaas-agency-admin: {role}");

    // helm uninstall removes what the chart installed from templates and keeps the CRDs (Helm never
    // deletes a chart's crds/), so every Tenant, its namespaces and the agencies' data stay.
    helm(&kubeconfig, &["uninstall", install::RELEASE, "-n", install::NAMESPACE, "--wait"]);
    let gone = Command::new(xtask::tools::ensure().expect("tools").kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", install::NAMESPACE, "get", "deployment", "govpaas-operator"])
        .output()
        .expect("kubectl");
    assert!(!gone.status.success() && text(&gone).contains("NotFound"), "the operator Deployment is gone");
    for kept in ["crd/tenants.govpaas.io", "tenant/ubnd", "namespace/ubnd"] {
        kubectl(&kubeconfig, &["get", kept]);
    }
    assert!(
        kubectl(&kubeconfig, &["get", "clusterrole", "-o", "name"])
            .lines()
            .all(|r| r != "clusterrole.rbac.authorization.k8s.io/govpaas-operator")
    );
    let claims = kubectl(&kubeconfig, &["-n", "ubnd", "get", "pvc", "-o", "name"]);
    assert!(!claims.trim().is_empty(), "document volumes stay");
    drop(cluster);
}

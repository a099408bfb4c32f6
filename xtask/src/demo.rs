//! `cargo xtask demo`: the control plane, govpaas installed with Helm, the Đà Nẵng examples applied
//! and Ready, and the tenants shown as a tree. Safe to run again: each step converges.
//!
//! With the real node up (`cargo xtask cluster up` as root), the chart runs **as Pods** there: the
//! operator (2 replicas, leader election, in-cluster credentials) and the LGSP gateway, from the
//! images `cargo xtask images` builds; then one LGSP exchange end to end — a Pod of Phường Thanh Khê
//! calls Sở Nội vụ's API through the gateway's Service with its mounted client certificate and
//! prints the answer, a Pod of Phường Sơn Trà, which has no grant, gets 403 — and the two audit
//! records. Without the node (not root, or `GOVPAAS_REAL_NODE=0`), the operator runs as a local
//! process with the chart's ServiceAccount, on the kwok nodes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::{self, ProcessRecord};
use crate::install::{self, kubectl, run as run_tool};
use crate::paths;
use crate::tools::{self, Tools};

mod pods;

/// The example province, applied in two phases: the platform and the agencies, then (once their
/// namespaces exist) the agencies' services.
const AGENCIES: &[&str] =
    &["00-platform.yaml", "10-province.yaml", "20-departments.yaml", "30-communes.yaml", "40-units.yaml"];
const SERVICES: &[&str] = &["50-portals.yaml", "60-document-services.yaml", "70-data-sharing.yaml"];
const READY_TIMEOUT: &str = "240s";

fn operator_record_path() -> PathBuf {
    paths::cluster_dir().join("demo-operator.json")
}

/// Stops the demo's operator, if one runs (SIGTERM: it finishes its reconciles and releases the
/// Lease; SIGKILL after 15 s).
pub fn stop_operator() {
    let Some(record) = fs::read_to_string(operator_record_path())
        .ok()
        .and_then(|text| serde_json::from_str::<ProcessRecord>(&text).ok())
    else {
        return;
    };
    if record.is_alive() {
        let _ = Command::new("kill").args(["-TERM", &record.pid.to_string()]).status();
        for _ in 0..150 {
            if !record.is_alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if record.is_alive() {
            let _ = Command::new("kill").args(["-KILL", &record.pid.to_string()]).status();
        }
    }
    let _ = fs::remove_file(operator_record_path());
}

/// Stops every operator a demo started: its local process, and the chart's operator Pods when the
/// demo ran them on the real node (scaled to zero; the tests' `helm upgrade` puts the chart back on
/// its defaults, on the kwok nodes). An unscoped operator would fight the tests' own.
pub fn stop_operators(tools: &Tools, kubeconfig: &Path) {
    stop_operator();
    let on_the_node = run_tool(
        kubectl(tools, kubeconfig).args([
            "get",
            "pods",
            "-n",
            install::NAMESPACE,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ]),
        "the operator's Pods",
    )
    .is_ok_and(|nodes| nodes.contains(crate::node::NAME));
    if on_the_node {
        eprintln!("xtask: scaling the demo's operator Pods to zero: the tests run operators of their own");
        let _ = run_tool(
            kubectl(tools, kubeconfig).args([
                "scale",
                "deployment",
                "govpaas-operator",
                "-n",
                install::NAMESPACE,
                "--replicas=0",
            ]),
            "scaling the demo's operator down",
        );
    }
    pods::release_platform_fields(tools, kubeconfig);
}

fn start_operator(tools: &Tools, admin: &Path) -> Result<(ProcessRecord, u16)> {
    stop_operator();
    let binary = install::build_operator()?;
    let dir = paths::cluster_dir();
    let kubeconfig = dir.join("govpaas-operator.kubeconfig");
    install::operator_kubeconfig(tools, admin, &kubeconfig, "24h")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = dir.join("logs").join("govpaas-operator.log");
    let out = fs::File::create(&log)?;
    let child = Command::new(&binary)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespace", install::NAMESPACE, "--metrics-address", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .env("POD_NAME", "govpaas-operator-demo")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Outlives `cargo xtask demo`; `cargo xtask cluster down` stops it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let record = ProcessRecord { name: "govpaas-operator".into(), pid: child.id(), log };
    fs::write(operator_record_path(), serde_json::to_string(&record)?)?;
    Ok((record, port))
}

fn apply_examples(tools: &Tools, kubeconfig: &Path, files: &[&str]) -> Result<()> {
    let dir = paths::workspace_root().join("examples").join("danang");
    for file in files {
        run_tool(
            kubectl(tools, kubeconfig).args(["apply", "-f"]).arg(dir.join(file)),
            &format!("kubectl apply -f {file}"),
        )?;
    }
    Ok(())
}

/// Prints the tenants as a tree and every govpaas object.
fn show_province(tools: &Tools, kubeconfig: &Path) -> Result<()> {
    let tenants: Value = serde_json::from_str(&run_tool(
        kubectl(tools, kubeconfig).args(["get", "tenants", "-o", "json"]),
        "listing tenants",
    )?)?;
    println!("\nThe agencies of Đà Nẵng on govpaas (tenant, agency code, level, name):\n");
    print!("{}", tenant_tree(&tenants));
    println!("\n$ kubectl get govpaas -A");
    print!("{}", run_tool(kubectl(tools, kubeconfig).args(["get", "govpaas", "-A"]), "kubectl get govpaas -A")?);
    Ok(())
}

/// Waits until every object of `kind` is Ready; on time-out, says which are not and why
/// (`diagnose`: where the operator's log is).
fn wait_ready(tools: &Tools, kubeconfig: &Path, kind: &str, diagnose: &dyn Fn() -> String) -> Result<()> {
    eprintln!("xtask: waiting for every {kind} to be Ready");
    let waited = run_tool(
        kubectl(tools, kubeconfig).args([
            "wait",
            "--for=condition=Ready",
            kind,
            "--all",
            "--all-namespaces",
            &format!("--timeout={READY_TIMEOUT}"),
        ]),
        &format!("waiting for {kind}"),
    );
    if let Err(err) = waited {
        let report = run_tool(
            kubectl(tools, kubeconfig).args([
                "get",
                kind,
                "-A",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}"#,
            ]),
            "reading conditions",
        )
        .unwrap_or_default();
        bail!("{err:#}\n{report}\n{}", diagnose());
    }
    Ok(())
}

/// The tenants as a tree by parent, one line each: name, agency code, level, display name, Ready.
pub fn tenant_tree(tenants: &Value) -> String {
    let items = tenants["items"].as_array().cloned().unwrap_or_default();
    let mut children: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let names: Vec<String> = items.iter().filter_map(|t| t["metadata"]["name"].as_str().map(String::from)).collect();
    for tenant in &items {
        let parent = tenant["spec"]["parent"].as_str().filter(|p| names.iter().any(|n| n == p)).unwrap_or("");
        children.entry(parent.to_string()).or_default().push(tenant);
    }
    let mut out = String::new();
    fn walk(out: &mut String, children: &BTreeMap<String, Vec<&Value>>, parent: &str, prefix: &str) {
        let Some(list) = children.get(parent) else { return };
        for (i, tenant) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let name = tenant["metadata"]["name"].as_str().unwrap_or("?");
            let ready = tenant["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready".to_string()
                    } else {
                        format!("not ready: {}", c["reason"].as_str().unwrap_or("?"))
                    }
                })
                .unwrap_or_else(|| "pending".into());
            let branch = if parent.is_empty() {
                ""
            } else if last {
                "└── "
            } else {
                "├── "
            };
            out.push_str(&format!(
                "{prefix}{branch}{name}  {}  {}  \"{}\"  [{ready}]\n",
                tenant["spec"]["agency"]["code"].as_str().unwrap_or("?"),
                tenant["spec"]["agency"]["level"].as_str().unwrap_or("?"),
                tenant["spec"]["agency"]["displayName"].as_str().unwrap_or("?"),
            ));
            let deeper = if parent.is_empty() {
                prefix.to_string()
            } else if last {
                format!("{prefix}    ")
            } else {
                format!("{prefix}│   ")
            };
            walk(out, children, name, &deeper);
        }
    }
    walk(&mut out, &children, "", "");
    out
}

pub fn run() -> Result<()> {
    let state = cluster::up()?;
    let tools = tools::ensure()?;
    let kubeconfig = &state.kubeconfig;
    if state.node.as_ref().is_some_and(|node| node.ready) {
        return pods::run(&tools, kubeconfig);
    }
    if let Some(why) = state.node.as_ref().and_then(|node| node.error.clone()) {
        eprintln!("xtask: the real node is not up ({why}); the operator runs as a local process on the kwok nodes");
    }
    eprintln!("xtask: installing charts/govpaas with Helm (release {} in {})", install::RELEASE, install::NAMESPACE);
    install::install_chart(&tools, kubeconfig, &[], install::Wait::Ready)?;
    eprintln!("xtask: starting govpaas-operator as a local process with the chart's ServiceAccount token");
    let (operator, port) = start_operator(&tools, kubeconfig)?;
    let diagnose = || {
        format!(
            "the operator's log: {} (alive: {})\n{}",
            operator.log.display(),
            operator.is_alive(),
            cluster::log_tail(&operator.log, 20)
        )
    };
    eprintln!("xtask: applying examples/danang: the platform and the agencies");
    apply_examples(&tools, kubeconfig, AGENCIES)?;
    wait_ready(&tools, kubeconfig, "tenants", &diagnose)?;
    eprintln!("xtask: applying examples/danang: the agencies' portals, document services and data sharing");
    apply_examples(&tools, kubeconfig, SERVICES)?;
    for kind in ["portals", "documentservices", "datasharingservices"] {
        wait_ready(&tools, kubeconfig, kind, &diagnose)?;
    }

    show_province(&tools, kubeconfig)?;
    println!(
        "\nLook around:\n  eval \"$(cargo xtask cluster env)\"\n  kubectl get tenants\n  kubectl describe tenant so-yte\n  \
         kubectl -n ubnd get deploy,svc,ingress,pvc,secrets\n  kubectl get tenant so-yte --as cntt.so-yte@danang.gov.vn    # an agency admin reads its own Tenant\n  \
         curl -s http://127.0.0.1:{port}/metrics | grep govpaas_\n  tail -f {}\nStop everything:  cargo xtask cluster down",
        operator.log.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_follows_parents() {
        let tenants = serde_json::json!({"items": [
            {"metadata": {"name": "so-yte"}, "spec": {"parent": "ubnd", "agency": {"code": "H17.03", "level": "Department", "displayName": "Sở Y tế"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "ubnd"}, "spec": {"agency": {"code": "H17", "level": "Province", "displayName": "UBND"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "bv"}, "spec": {"parent": "so-yte", "agency": {"code": "H17.03.01", "level": "Unit", "displayName": "Bệnh viện"}},
             "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "QuotaExceeded"}]}},
            {"metadata": {"name": "hai-chau"}, "spec": {"parent": "ubnd", "agency": {"code": "H17.31", "level": "Commune", "displayName": "Phường Hải Châu"}}}
        ]});
        let tree = tenant_tree(&tenants);
        assert_eq!(
            tree,
            "ubnd  H17  Province  \"UBND\"  [Ready]\n\
             ├── so-yte  H17.03  Department  \"Sở Y tế\"  [Ready]\n\
             │   └── bv  H17.03.01  Unit  \"Bệnh viện\"  [not ready: QuotaExceeded]\n\
             └── hai-chau  H17.31  Commune  \"Phường Hải Châu\"  [pending]\n"
        );
    }
}

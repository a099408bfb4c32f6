//! The demo on the real node: govpaas's own Pods, and one LGSP exchange between agencies' Pods.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{AGENCIES, SERVICES, apply_examples, show_province, stop_operator, wait_ready};
use crate::install::{self, kubectl, run as run_tool};
use crate::tools::Tools;
use crate::{images, node, paths};

/// Sở Nội vụ (H17.01), which publishes its civil-servant register as the API below
/// (examples/danang/70-data-sharing.yaml), behind the Service `can-bo-api`.
const PROVIDER_NAMESPACE: &str = "so-noivu";
const PROVIDER_CODE: &str = "H17.01";
const API: &str = "can-bo-cong-chuc";
/// Phường Thanh Khê's one-stop shop, granted by the provider.
const GRANTED: (&str, &str) = ("thanh-khe", "mot-cua");
/// Phường Sơn Trà, which asks for the API here but is not among the provider's consumers.
const NOT_GRANTED: (&str, &str) = ("son-tra", "tra-cuu-can-bo");
const ECHO_BINARY: &str = "/usr/local/bin/agency-echo";
/// How long the release's Pods, the agencies' Pods and the first exchange may take.
const WAIT: Duration = Duration::from_secs(240);
const FIELD_MANAGER: &str = "govpaas-demo";

pub fn run(tools: &Tools, kubeconfig: &Path) -> Result<()> {
    // A previous demo's operator process would be a second writer.
    stop_operator();
    eprintln!("xtask: building the operator and gateway images (cargo xtask images --profile debug) for the real node");
    let out = paths::target_dir().join("images-real-node");
    for image in images::build(install::Profile::Debug, &out)? {
        node::load_image(&image.archive)?;
    }
    eprintln!(
        "xtask: installing charts/govpaas with Helm (release {} in {}): the operator (2 replicas) and the LGSP gateway as Pods on {}",
        install::RELEASE,
        install::NAMESPACE,
        node::NAME
    );
    let values = paths::cluster_dir().join("demo-values.yaml");
    fs::write(&values, release_values(tools, kubeconfig)?)?;
    let values_arg = values.display().to_string();
    // The gateway's audit volume comes from kube-controller-manager's hostPath provisioner, which
    // leaves its directory root's: give it to the gateway's user until the release's Pods are up.
    let installed = Arc::new(AtomicBool::new(false));
    let chown = {
        let (tools, kubeconfig, installed) = (tools.clone(), kubeconfig.to_owned(), installed.clone());
        std::thread::spawn(move || {
            while !installed.load(Ordering::Relaxed) {
                give_audit_volumes_to_the_gateway(&tools, &kubeconfig);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Helm does not wait for the Pods: the gateway starts only once the operator has issued its
    // certificate, which needs the Platform (its base domain), applied next. On a fresh cluster
    // there is none until then.
    let release = install::install_chart(tools, kubeconfig, &["-f", &values_arg], install::Wait::No)
        .and_then(|()| {
            eprintln!("xtask: applying examples/danang: the platform and the agencies");
            apply_examples(tools, kubeconfig, AGENCIES)
        })
        .and_then(|()| apply_demo_platform(tools, kubeconfig))
        .and_then(|()| wait_release_on_the_node(tools, kubeconfig));
    installed.store(true, Ordering::Relaxed);
    let _ = chown.join();
    release?;
    // What a reader of a failed run needs: the agencies' Pods that are not ready, where they
    // were scheduled, the Warning Events of the cluster, and the operator's log.
    let diagnose = || {
        let pods = run_tool(
            kubectl(tools, kubeconfig).args([
                "get",
                "pods",
                "-A",
                "-o",
                "wide",
                "--field-selector",
                &format!("metadata.namespace!={}", install::NAMESPACE),
            ]),
            "the Pods",
        )
        .unwrap_or_default();
        let warnings = run_tool(
            kubectl(tools, kubeconfig).args([
                "get",
                "events",
                "-A",
                "--field-selector",
                "type=Warning",
                "--sort-by=.lastTimestamp",
            ]),
            "the Warning Events",
        )
        .unwrap_or_default();
        let warnings: Vec<&str> = warnings.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        let operator = run_tool(
            kubectl(tools, kubeconfig).args([
                "logs",
                "-n",
                install::NAMESPACE,
                "-l",
                "app.kubernetes.io/component=operator",
                "--tail=20",
                "--prefix",
            ]),
            "the operator's logs",
        )
        .unwrap_or_default();
        format!("the Pods:\n{pods}\nthe last Warning Events:\n{}\nthe operator:\n{operator}", warnings.join("\n"))
    };

    wait_ready(tools, kubeconfig, "tenants", &diagnose)?;
    eprintln!("xtask: applying examples/danang: the agencies' portals, document services and data sharing");
    apply_examples(tools, kubeconfig, SERVICES)?;
    for kind in ["portals", "documentservices", "datasharingservices"] {
        wait_ready(tools, kubeconfig, kind, &diagnose)?;
    }
    show_province(tools, kubeconfig)?;

    eprintln!("xtask: the LGSP exchange: the provider's API and two callers, as Pods on {}", node::NAME);
    apply(tools, kubeconfig, &exchange_manifests(), "the exchange's Pods")?;
    wait_pods_ready(tools, kubeconfig, PROVIDER_NAMESPACE, "app=can-bo-api")?;
    wait_pods_ready(tools, kubeconfig, GRANTED.0, "app=lgsp-caller")?;
    wait_pods_ready(tools, kubeconfig, NOT_GRANTED.0, "app=lgsp-caller")?;
    let base_domain = run_tool(
        kubectl(tools, kubeconfig).args(["get", "platform", "default", "-o", "jsonpath={.spec.baseDomain}"]),
        "the base domain",
    )?;
    let url = format!("https://lgsp.{}/{PROVIDER_CODE}/{API}/can-bo?don-vi=thanh-khe", base_domain.trim());
    let started = Instant::now();
    let answer = loop {
        let (ok, out) = call(tools, kubeconfig, GRANTED.0, &url);
        if ok && out.contains(" 200 ") {
            break out;
        }
        if started.elapsed() > WAIT {
            bail!(
                "the granted call did not succeed within {} s:\n{out}\n{}",
                WAIT.as_secs(),
                why_the_provider_is_unreachable(tools, kubeconfig)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    println!(
        "\n$ kubectl exec -n {} lgsp-caller -- agency-echo get {url} --connect govpaas-gateway.{}.svc.cluster.local:443 --cert /etc/lgsp-client/tls.crt ...",
        GRANTED.0,
        install::NAMESPACE
    );
    println!("{}", answer.trim());
    let (_, refused) = call(tools, kubeconfig, NOT_GRANTED.0, &url);
    println!("\n$ kubectl exec -n {} lgsp-caller -- agency-echo get {url} ...   # no grant", NOT_GRANTED.0);
    println!("{}", refused.trim());
    if !refused.contains(" 403 ") {
        bail!("the agency without a grant was not refused with 403:\n{refused}");
    }
    print_audit(tools, kubeconfig)?;
    println!(
        "\nLook around:\n  eval \"$(cargo xtask cluster env)\"\n  kubectl get pods -n {ns} -o wide      # the operator (2 replicas) and the gateway, on {node}\n  kubectl get lease -n {ns}             # the operator's leader\n  kubectl get tenants\n  kubectl get datasharingservices -A\n  kubectl logs -n {ns} govpaas-gateway-0\nStop everything:  cargo xtask cluster down",
        ns = install::NAMESPACE,
        node = node::NAME,
    );
    Ok(())
}

/// Gives up the Platform fields the demo set (agency-echo images, the real node's toleration), so
/// that whoever applies the Platform next owns them alone: an apply with no fields releases them.
pub(super) fn release_platform_fields(tools: &Tools, kubeconfig: &Path) {
    let _ = apply(
        tools,
        kubeconfig,
        "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\n",
        "releasing the demo's Platform fields",
    );
}

/// The chart's values: its Pods on the real node, the operator twice, the API server's port open to
/// them.
fn release_values(tools: &Tools, kubeconfig: &Path) -> Result<String> {
    let port = run_tool(
        kubectl(tools, kubeconfig).args([
            "get",
            "endpointslice",
            "-n",
            "default",
            "kubernetes",
            "-o",
            "jsonpath={.ports[0].port}",
        ]),
        "the API server's port",
    )?;
    let placement = node::placement_yaml(2);
    let port = port.trim();
    Ok(format!(
        "operator:\n  replicas: 2\n{placement}  networkPolicy:\n    apiServerPorts: [443, 6443, {port}]\ngateway:\n  replicas: 1\n{placement}  networkPolicy:\n    apiServerPorts: [443, 6443, {port}]\n"
    ))
}

/// Chowns the hostPath directories of the gateway's audit volumes to the gateway's user (what a
/// volume plugin with ownership management does; the hostPath provisioner is for tests only).
fn give_audit_volumes_to_the_gateway(tools: &Tools, kubeconfig: &Path) {
    let Ok(volumes) = run_tool(
        kubectl(tools, kubeconfig).args([
            "get",
            "pvc",
            "-n",
            install::NAMESPACE,
            "-l",
            "app.kubernetes.io/name=govpaas-gateway",
            "-o",
            r#"jsonpath={range .items[*]}{.spec.volumeName}{"\n"}{end}"#,
        ]),
        "the gateway's claims",
    ) else {
        return;
    };
    for volume in volumes.lines().filter(|l| !l.is_empty()) {
        let Ok(path) = run_tool(
            kubectl(tools, kubeconfig).args(["get", "pv", volume, "-o", "jsonpath={.spec.hostPath.path}"]),
            "the volume's path",
        ) else {
            continue;
        };
        let path = path.trim();
        if path.starts_with("/tmp/hostpath_pv/") && fs::create_dir_all(path).is_ok() {
            let _ = Command::new("chown").args(["-R", &format!("{0}:{0}", images::NONROOT), path]).status();
        }
    }
}

/// Waits until the release's three Pods (two operators, one gateway) are Ready on the real node.
/// The Platform's workload images and node tolerations for the real node: the agencies' workloads
/// may run there (they tolerate its taint) and run agency-echo, which is loaded there (no registry
/// is reachable).
fn apply_demo_platform(tools: &Tools, kubeconfig: &Path) -> Result<()> {
    let echo = images::reference(images::ECHO);
    apply(
        tools,
        kubeconfig,
        &format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  images: {{portal: \"{echo}\", documentService: \"{echo}\"}}\n  workloadNodes:\n    tolerations: [{{key: {taint}, operator: Exists, effect: NoSchedule}}]\n",
            taint = node::TAINT
        ),
        "the Platform's workload images and node tolerations",
    )
}

fn wait_release_on_the_node(tools: &Tools, kubeconfig: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        let pods = run_tool(
            kubectl(tools, kubeconfig).args([
                "get",
                "pods",
                "-n",
                install::NAMESPACE,
                "-l",
                "app.kubernetes.io/component in (operator, lgsp-gateway)",
                "-o",
                r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}"#,
            ]),
            "the release's Pods",
        )?;
        let ready = pods.lines().filter(|line| line.trim_end() == format!("{} True", node::NAME)).count();
        if ready == 3 && pods.lines().count() == 3 {
            return Ok(());
        }
        if started.elapsed() > WAIT {
            bail!("the release's 3 Pods are not Ready on {}:\n{pods}", node::NAME);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn apply(tools: &Tools, kubeconfig: &Path, manifest: &str, what: &str) -> Result<()> {
    let file = paths::cluster_dir().join("demo-apply.yaml");
    fs::write(&file, manifest)?;
    run_tool(
        kubectl(tools, kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f"])
            .arg(&file),
        what,
    )
    .with_context(|| format!("applying {what}"))?;
    Ok(())
}

/// An agency-echo Pod on the real node, admitted by Pod Security `restricted`.
fn echo_pod(namespace: &str, name: &str, labels: &str, ports: &str, secret: Option<&str>) -> String {
    let (mounts, volumes) = match secret {
        Some(secret) => (
            "    volumeMounts: [{name: client, mountPath: /etc/lgsp-client, readOnly: true}]\n".to_owned(),
            format!("  volumes: [{{name: client, secret: {{secretName: {secret}}}}}]\n"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {labels}\nspec:\n{placement}  automountServiceAccountToken: false\n  securityContext: {{runAsNonRoot: true, runAsUser: {uid}, seccompProfile: {{type: RuntimeDefault}}}}\n  containers:\n  - name: echo\n    image: {image}\n    imagePullPolicy: Never\n    env: [{{name: ECHO_PORTS, value: \"{ports}\"}}, {{name: ECHO_NAME, value: {name}}}]\n    securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}\n    resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 100m, memory: 64Mi}}}}\n{mounts}{volumes}",
        placement = node::placement_yaml(2),
        uid = images::NONROOT,
        image = images::reference(images::ECHO),
    )
}

/// The provider's API Pod behind `can-bo-api`, a second DataSharingService that asks for the API
/// without a grant, and a caller Pod in each consumer's namespace with its client certificate.
fn exchange_manifests() -> String {
    let (granted_ns, granted) = GRANTED;
    let (other_ns, other) = NOT_GRANTED;
    [
        echo_pod(PROVIDER_NAMESPACE, "can-bo-api", "{app: can-bo-api}", "8080", None),
        format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: {other}\n  namespace: {other_ns}\nspec:\n  consumes:\n  - {{name: can-bo, agencyCode: \"{PROVIDER_CODE}\", api: {API}, purpose: \"Tra cứu cán bộ (không được cấp quyền)\"}}\n"
        ),
        echo_pod(granted_ns, "lgsp-caller", "{app: lgsp-caller}", "8080", Some(&format!("{granted}-lgsp-client"))),
        echo_pod(other_ns, "lgsp-caller", "{app: lgsp-caller}", "8080", Some(&format!("{other}-lgsp-client"))),
    ]
    .join("---\n")
}

fn wait_pods_ready(tools: &Tools, kubeconfig: &Path, namespace: &str, selector: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let ready = run_tool(
            kubectl(tools, kubeconfig).args([
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                selector,
                "-o",
                r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ]),
            "the Pods' readiness",
        )?;
        if ready.lines().any(|l| l == "True") {
            return Ok(());
        }
        if started.elapsed() > WAIT {
            let pods = run_tool(
                kubectl(tools, kubeconfig).args(["get", "pods", "-n", namespace, "-l", selector, "-o", "wide"]),
                "the Pods",
            )
            .unwrap_or_default();
            let events = run_tool(
                kubectl(tools, kubeconfig).args(["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
                "the events",
            )
            .unwrap_or_default();
            bail!("no Pod {selector} Ready in {namespace}:\n{pods}\n{events}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What a failed exchange needs explained, in few lines: the provider's Pod and endpoints, the
/// NetworkPolicies of its namespace, its DataSharingService's conditions, whether the Pod answers
/// from the node itself (no policy applies there) and through its Service, the firewall's rules
/// for the Pod, and the last lines of the gateway's and the firewall's logs.
fn why_the_provider_is_unreachable(tools: &Tools, kubeconfig: &Path) -> String {
    let get = |what: &str, args: &[&str]| {
        let out = kubectl(tools, kubeconfig).args(args).output();
        let text = match out {
            Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(err) => err.to_string(),
        };
        format!("-- {what}:\n{}", text.trim_end())
    };
    let ns = PROVIDER_NAMESPACE;
    let mut report = vec![
        get("the provider's Pod", &["get", "pods", "-n", ns, "-l", "app=can-bo-api", "-o", "wide", "--no-headers"]),
        get(
            "its endpoints",
            &[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=can-bo-api",
                "-o",
                "jsonpath={range .items[*].endpoints[*]}{.addresses} ready={.conditions.ready}{\"\\n\"}{end}",
            ],
        ),
        get(
            "NetworkPolicies",
            &[
                "get",
                "networkpolicies",
                "-n",
                ns,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} pods={.spec.podSelector.matchLabels} types={.spec.policyTypes} from={.spec.ingress[*].from} ports={.spec.ingress[*].ports}{\"\\n\"}{end}",
            ],
        ),
        get(
            "DataSharingServices",
            &[
                "get",
                "datasharingservices",
                "-n",
                ns,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: {range .status.conditions[*]}{.type}={.status} {.reason}; {end}{\"\\n\"}{end}",
            ],
        ),
    ];
    let pod_ip = crate::cluster::kubectl_output(
        tools,
        kubeconfig,
        &["get", "pod", "-n", ns, "can-bo-api", "-o", "jsonpath={.status.podIP}"],
    );
    let cluster_ip = crate::cluster::kubectl_output(
        tools,
        kubeconfig,
        &["get", "service", "-n", ns, "can-bo-api", "-o", "jsonpath={.spec.clusterIP}"],
    );
    for (what, ip) in [("the Pod", pod_ip.clone()), ("the Service", cluster_ip)] {
        let answer = match ip.as_deref().map(|ip| format!("{}:8080", ip.trim())).and_then(|a| a.parse().ok()) {
            Some(address) => match std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
                Ok(_) => format!("{address} accepts a connection"),
                Err(err) => format!("{address}: {err}"),
            },
            None => "no address".to_owned(),
        };
        report.push(format!("-- {what} from the node: {answer}"));
    }
    let rules = Command::new("iptables-save").args(["-t", "filter"]).output();
    let rules = rules.map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default();
    let pod_ip = pod_ip.unwrap_or_default();
    let mentions = rules.lines().filter(|l| !pod_ip.is_empty() && l.contains(pod_ip.trim())).count();
    report.push(format!(
        "-- the firewall: {} pod chains, {} policy chains, {mentions} rules for the Pod's address",
        rules.lines().filter(|l| l.starts_with(":KUBE-POD-FW-")).count(),
        rules.lines().filter(|l| l.starts_with(":KUBE-NWPLCY-")).count(),
    ));
    report.push(get("the gateway's log", &["logs", "-n", install::NAMESPACE, "govpaas-gateway-0", "--tail=6"]));
    let firewall_log = paths::cluster_dir().join("logs").join("kube-router.log");
    let text = fs::read_to_string(&firewall_log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with('E') || l.starts_with('W')).collect();
    let last: Vec<&str> = errors.iter().rev().take(6).rev().copied().collect();
    report.push(format!("-- the firewall's last warnings and errors ({} in all):\n{}", errors.len(), last.join("\n")));
    report.join("\n")
}

/// `agency-echo get URL` in the caller Pod of `namespace`, through the gateway's Service, with the
/// Pod's mounted client certificate: (exit 0, output).
fn call(tools: &Tools, kubeconfig: &Path, namespace: &str, url: &str) -> (bool, String) {
    let gateway = format!("govpaas-gateway.{}.svc.cluster.local:443", install::NAMESPACE);
    let out = kubectl(tools, kubeconfig)
        .args(["exec", "-n", namespace, "lgsp-caller", "--", ECHO_BINARY, "get", url, "--connect", &gateway])
        .args(["--cert", "/etc/lgsp-client/tls.crt", "--key", "/etc/lgsp-client/tls.key"])
        .args(["--ca", "/etc/lgsp-client/ca.crt"])
        .output();
    match out {
        Ok(out) => (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        ),
        Err(err) => (false, err.to_string()),
    }
}

/// Prints the audit records of the two calls, read from the gateway's volume.
fn print_audit(tools: &Tools, kubeconfig: &Path) -> Result<()> {
    let volume = run_tool(
        kubectl(tools, kubeconfig).args([
            "get",
            "pvc",
            "-n",
            install::NAMESPACE,
            "audit-govpaas-gateway-0",
            "-o",
            "jsonpath={.spec.volumeName}",
        ]),
        "the gateway's audit claim",
    )?;
    let path = run_tool(
        kubectl(tools, kubeconfig).args(["get", "pv", volume.trim(), "-o", "jsonpath={.spec.hostPath.path}"]),
        "the audit volume's path",
    )?;
    let log = Path::new(path.trim()).join("audit.jsonl");
    let started = Instant::now();
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let exchanges: Vec<Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| record["kind"] == "exchange")
            .collect();
        let last = |status: u64| exchanges.iter().rev().find(|r| r["status"] == status).cloned();
        if let (Some(granted), Some(refused)) = (last(200), last(403)) {
            println!("\nThe gateway's audit ({}; verify it with `govpaas-gateway audit verify`):", log.display());
            for record in [granted, refused] {
                println!("{}", serde_json::to_string_pretty(&record)?);
            }
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the two exchanges are not in the audit log {}", log.display());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

//! The local cluster's real node, beside the kwok nodes: containerd and runc run the Pods, CNI's bridge,
//! host-local, loopback and portmap plugins wire them, kube-proxy (nftables mode) serves Services,
//! CoreDNS answers cluster DNS, and kube-router's firewall (iptables and ipset) enforces NetworkPolicies.
//!
//! containerd, runc, the CNI plugins, iptables, nftables and conntrack are Debian's packages at pinned
//! versions ([`PACKAGES`], installed by `up` when missing); the kubelet and kube-proxy are built from the
//! control plane's own `k8s.io/kubernetes` release, CoreDNS and kube-router from their Go modules ([`tools::node_tools`]), and every image the node runs is built here ([`images`]) and
//! imported into containerd from its OCI archive: nothing is pulled.
//!
//! The node is tainted [`TAINT`]`:NoSchedule`, so only Pods that tolerate it (the node's add-ons, the
//! Platform's agency workloads where `spec.placement` says so, the chart's Pods with their values, and
//! the tests' own Pods) run on it: the kwok nodes keep every other Pod, as before.
//!
//! Everything it changes on the host is under [`paths::cluster_dir`]`/node` or listed in [`cleanup`],
//! which `down` runs: processes, the Pods' cgroups, mounts, network namespaces, the bridge, kube-proxy's
//! and CNI's rules, the node's address and the sysctls it set. docs/development.md tells the story.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::images;
use crate::paths;
use crate::tools::{NodeTools, Tools};

/// The node's name, as its kubelet registers it.
pub const NAME: &str = "govpaas-node";
/// The node's address, on the host's loopback interface: the kubelet's and the API server's (Pods reach
/// the API server through the `kubernetes` Service, whose endpoint this is; a loopback 127.x address
/// would not do, as neither the endpoint reconciler nor a Pod's routing accept it).
pub const ADDRESS: &str = "10.201.0.1";
/// The real node's Pod addresses (kwok's fake Pods take 10.244.0.0/16, which nothing routes).
pub const POD_SUBNET: &str = "10.245.0.0/24";
pub const POD_GATEWAY: &str = "10.245.0.1";
/// The bridge the Pods' veths are attached to.
pub const BRIDGE: &str = "govpaas-br0";
/// The cluster DNS Service's address.
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
/// The taint keeping every Pod that does not ask for the real node on the kwok nodes; also the node's
/// label (`govpaas.io/real-node: "true"`), for a nodeSelector.
pub const TAINT: &str = "govpaas.io/real-node";

/// Debian 12's packages the node needs, at the versions it was made to work with.
pub const PACKAGES: &[(&str, &str)] = &[
    ("containerd", "1.6.20~ds1-1+deb12u3"),
    ("runc", "1.1.5+ds1-1+deb12u1"),
    ("containernetworking-plugins", "1.1.1+ds1-3+b5"),
    ("iptables", "1.8.9-2"),
    ("nftables", "1.0.6-2+deb12u2"),
    ("conntrack", "1:1.4.7-1+b2"),
    ("ipset", "7.17-1"),
];

/// The CNI plugins' directory of Debian's containernetworking-plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Host settings the node needs, with the value `up` found, restored by `down`.
const SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    // Bridged Pod-to-Pod packets must cross netfilter: kube-proxy's DNAT and the NetworkPolicies.
    ("net/bridge/bridge-nf-call-iptables", "1"),
    ("net/bridge/bridge-nf-call-ip6tables", "1"),
];

/// What the node recorded for `down` and the tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeState {
    /// Up and Ready, with its add-ons.
    pub ready: bool,
    /// Why it is not, when it could not be brought up (the kwok nodes then run alone).
    pub error: Option<String>,
    /// The containerd socket, for loading images.
    pub containerd_socket: Option<PathBuf>,
    /// This cluster owns the machine's real node and changed the host for it: `down` must undo it.
    #[serde(default)]
    pub owned: bool,
    /// The sysctls' values before `up`.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
}

impl NodeState {
    /// Undoes what `up` changed on the host, if this cluster owns the node; says what stayed.
    pub fn tear_down(&self, cluster_dir: &Path) -> Vec<String> {
        if !self.owned {
            return Vec::new();
        }
        let left = cleanup(&self.sysctls);
        release(cluster_dir);
        left
    }
}

/// The node's own directory: containerd's root and state, the kubelet's root, CNI's configuration.
pub fn dir() -> PathBuf {
    paths::cluster_dir().join("node")
}

fn containerd_socket() -> PathBuf {
    dir().join("containerd.sock")
}

/// The machine has one real node (one bridge, one kube-proxy, one firewall): the file naming the cluster
/// directory that owns it.
fn owner_file() -> PathBuf {
    PathBuf::from("/run/govpaas-real-node.owner")
}

/// Takes the real node for the cluster in `cluster_dir`, unless another cluster that still runs has it.
pub fn claim(cluster_dir: &Path) -> Result<()> {
    if let Ok(owner) = fs::read_to_string(owner_file()) {
        let owner = PathBuf::from(owner.trim());
        let alive = fs::read_to_string(owner.join("state.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<crate::cluster::State>(&text).ok())
            .is_some_and(|state| state.processes.iter().any(crate::cluster::ProcessRecord::is_alive));
        if owner != cluster_dir && alive {
            bail!(
                "the machine's one real node belongs to the cluster in {} (stop it with                  `GOVPAAS_CLUSTER_DIR={} cargo xtask cluster down`)",
                owner.display(),
                owner.display()
            );
        }
    }
    fs::write(owner_file(), cluster_dir.display().to_string()).context("recording the real node's owner")?;
    Ok(())
}

/// Gives the real node back (`down`).
pub fn release(cluster_dir: &Path) {
    if fs::read_to_string(owner_file()).is_ok_and(|owner| Path::new(owner.trim()) == cluster_dir) {
        let _ = fs::remove_file(owner_file());
    }
}

/// Checks that this machine can run a node, installing the pinned packages when they are missing.
/// Errs with what is missing and how to get it.
pub fn preflight() -> Result<()> {
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        bail!(
            "the real node needs root (containerd, network namespaces, iptables); run `cargo xtask cluster up` \
             as root, or set GOVPAAS_REAL_NODE=0 for the kwok nodes alone"
        );
    }
    for (what, path) in [
        ("network namespaces", "/proc/self/ns/net"),
        ("the bridge's netfilter hooks (br_netfilter)", "/proc/sys/net/bridge/bridge-nf-call-iptables"),
        ("cgroups", "/sys/fs/cgroup"),
    ] {
        if !Path::new(path).exists() {
            bail!("the real node needs {what} in the kernel: {path} is missing");
        }
    }
    ensure_packages()
}

/// Installs each of [`PACKAGES`] that is missing, at its pinned version. A package installed at another
/// Debian revision of the same upstream version is accepted (a security update), any other is refused.
fn ensure_packages() -> Result<()> {
    let mut missing = Vec::new();
    for (package, version) in PACKAGES {
        let installed = output(Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", package]))
            .filter(|out| out.starts_with("install ok installed|"))
            .map(|out| out.rsplit('|').next().unwrap_or_default().to_string());
        match installed {
            Some(found) if found == *version => {}
            Some(found) if upstream(&found) == upstream(version) => {
                eprintln!("xtask: {package} {found} is installed (pinned: {version}); same upstream release, kept");
            }
            Some(found) => bail!(
                "{package} {found} is installed, but the real node is pinned to {version}: \
                 `apt-get install {package}={version}`"
            ),
            None => missing.push(format!("{package}={version}")),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing the real node's packages: {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    // A fresh machine may hold no package lists yet.
    let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
    if !install() {
        bail!("apt-get could not install {} (are Debian 12's package sources reachable?)", missing.join(" "));
    }
    Ok(())
}

/// `1:1.4.7-1+b2` → `1:1.4.7`: the version without the Debian revision.
fn upstream(version: &str) -> &str {
    version.rsplit_once('-').map_or(version, |(upstream, _)| upstream)
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: could not start it"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's side, before the API server starts (it listens on [`ADDRESS`]): the address on `lo` and
/// the sysctls. Returns the sysctls' previous values.
pub fn prepare_host() -> Result<BTreeMap<String, String>> {
    let lo = output(Command::new("ip").args(["-o", "addr", "show", "dev", "lo"])).unwrap_or_default();
    if !lo.contains(&format!("inet {ADDRESS}/")) {
        run(
            Command::new("ip").args(["addr", "add", &format!("{ADDRESS}/32"), "dev", "lo"]),
            "adding the node address",
        )?;
    }
    let mut previous = BTreeMap::new();
    for (key, value) in SYSCTLS {
        let path = Path::new("/proc/sys").join(key);
        let old = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        previous.insert((*key).to_string(), old.trim().to_string());
        fs::write(&path, value).with_context(|| format!("setting {} to {value}", path.display()))?;
    }
    Ok(previous)
}

/// Client certificates the node's components use, made by [`crate::pki`].
pub struct Credentials {
    pub kubelet_kubeconfig: PathBuf,
    pub kube_proxy_kubeconfig: PathBuf,
    pub kube_router_kubeconfig: PathBuf,
    pub ca_cert: PathBuf,
}

/// Starts containerd, loads the images, starts the kubelet and kube-proxy, and applies the add-ons.
/// Returns the processes it started, in start order. `started` receives each one at once, so that a
/// failure part-way still lets `down` stop what runs.
pub fn start(
    tools: &Tools,
    node_tools: &NodeTools,
    credentials: &Credentials,
    kubeconfig: &Path,
    logs: &Path,
    started: &mut dyn FnMut(crate::cluster::ProcessRecord) -> Result<()>,
) -> Result<()> {
    let dir = dir();
    for sub in ["containerd", "cni", "kubelet", "cni-ipam"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let image_dir = paths::target_dir().join("images");
    eprintln!("xtask: building the real node's images (pause, agency-echo, CoreDNS)");
    let node_images = images::build_node_images(node_tools, &image_dir)?;

    fs::write(dir.join("containerd.toml"), containerd_config(&dir))?;
    fs::write(dir.join("cni").join("10-govpaas.conflist"), cni_config(&dir))?;
    let containerd = crate::cluster::start_process(
        "containerd",
        Path::new("/usr/bin/containerd"),
        &["--config".into(), dir.join("containerd.toml").display().to_string()],
        logs,
    )?;
    let containerd_log = containerd.log.clone();
    started(containerd)?;
    wait(Duration::from_secs(60), "containerd to answer", || {
        ctr().args(["version"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
    .with_context(|| format!("containerd's log:\n{}", crate::cluster::log_tail(&containerd_log, 20)))?;
    for image in &node_images {
        load_image(&image.archive)?;
    }

    let kubelet_config = dir.join("kubelet.yaml");
    fs::write(&kubelet_config, kubelet_config_yaml(&credentials.ca_cert)?)?;
    let p = |path: &Path| path.display().to_string();
    started(crate::cluster::start_process(
        "kubelet",
        &node_tools.kubelet,
        &[
            format!("--config={}", p(&kubelet_config)),
            format!("--kubeconfig={}", p(&credentials.kubelet_kubeconfig)),
            format!("--hostname-override={NAME}"),
            format!("--node-ip={ADDRESS}"),
            format!("--root-dir={}", p(&dir.join("kubelet"))),
            format!("--cert-dir={}", p(&dir.join("kubelet").join("pki"))),
            format!("--node-labels={TAINT}=true"),
            "--v=1".into(),
        ],
        logs,
    )?)?;
    let proxy_config = dir.join("kube-proxy.yaml");
    fs::write(&proxy_config, kube_proxy_config_yaml(&credentials.kube_proxy_kubeconfig)?)?;
    started(crate::cluster::start_process(
        "kube-proxy",
        &node_tools.kube_proxy,
        &[format!("--config={}", p(&proxy_config)), "--v=1".into()],
        logs,
    )?)?;
    crate::cluster::kubectl_apply(tools, kubeconfig, &addons_manifest())?;
    // kube-router reads its Node at start and gives up if the kubelet has not registered it yet.
    wait(Duration::from_secs(120), "the kubelet to register the node", || {
        crate::cluster::kubectl_output(tools, kubeconfig, &["get", "node", NAME, "-o", "name"]).is_some()
    })?;
    // The firewall alone: the bridge plugin wires the Pods and kube-proxy serves Services.
    started(crate::cluster::start_process(
        "kube-router",
        &node_tools.kube_router,
        &[
            format!("--kubeconfig={}", p(&credentials.kube_router_kubeconfig)),
            format!("--hostname-override={NAME}"),
            "--run-firewall=true".into(),
            "--run-router=false".into(),
            "--run-service-proxy=false".into(),
            "--run-loadbalancer=false".into(),
            "--enable-cni=false".into(),
            "--enable-ipv6=false".into(),
            // Its rules follow the API's events; a full sync every 15 s (5 min by default) mends
            // them soon if an event's sync was missed or failed, as a test's 240 s wait requires.
            "--iptables-sync-period=15s".into(),
            "--metrics-port=0".into(),
            format!("--health-port={}", free_port()?),
            "--v=1".into(),
        ],
        logs,
    )?)?;
    Ok(())
}

/// The identity kube-router's firewall runs as, and what it reads.
pub const KUBE_ROUTER_USER: &str = "govpaas:kube-router";

/// Whether the node is Ready and its add-ons' Pods are.
pub fn ready(tools: &Tools, kubeconfig: &Path) -> bool {
    let node = crate::cluster::kubectl_output(
        tools,
        kubeconfig,
        &["get", "node", NAME, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#],
    );
    if node.as_deref() != Some("True") {
        return false;
    }
    let pods = crate::cluster::kubectl_output(
        tools,
        kubeconfig,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "govpaas.io/node-addon",
            "-o",
            r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ],
    )
    .unwrap_or_default();
    let statuses: Vec<&str> = pods.lines().collect();
    statuses.len() == 1 && statuses.iter().all(|s| *s == "True")
}

fn ctr() -> Command {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address").arg(containerd_socket()).args(["--namespace", "k8s.io"]);
    cmd
}

/// Imports an OCI archive (`cargo xtask images`) into the node's containerd, under the name it carries.
pub fn load_image(archive: &Path) -> Result<()> {
    run(
        ctr().args(["images", "import", "--all-platforms"]).arg(archive),
        &format!("ctr images import {}", archive.display()),
    )?;
    Ok(())
}

fn containerd_config(dir: &Path) -> String {
    let d = |sub: &str| dir.join(sub).display().to_string();
    format!(
        r#"# Written by `cargo xtask cluster up`: the real node's containerd, all its state under {node}.
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This sandbox lets no process lower its oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroupDriver: cgroupfs (the machine has no systemd).
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni}"
"#,
        node = dir.display(),
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = containerd_socket().display(),
        opt = d("containerd/opt"),
        pause = images::reference("pause"),
        cni_bin = CNI_BIN_DIR,
        cni = d("cni"),
    )
}

fn cni_config(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "govpaas",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.join("cni-ipam").display().to_string(),
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    })
    .to_string()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn kubelet_config_yaml(ca_cert: &Path) -> Result<String> {
    Ok(format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ADDRESS}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
containerRuntimeEndpoint: unix://{socket}
# No systemd here; cgroup v1 hierarchies, which 1.35+ refuses unless told.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerWithTaints:
- {{key: {TAINT}, value: "true", effect: NoSchedule}}
# The images are imported, never pulled: garbage-collecting one would lose it for good.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}}
serializeImagePulls: false
"#,
        port = free_port()?,
        healthz = free_port()?,
        ca = ca_cert.display(),
        socket = containerd_socket().display(),
    ))
}

fn kube_proxy_config_yaml(kubeconfig: &Path) -> Result<String> {
    Ok(format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NAME}
mode: nftables
clusterCIDR: {POD_SUBNET}
bindAddress: {ADDRESS}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
# Leave the host's conntrack table and timeouts as they are (this sandbox may refuse to change them).
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
        kubeconfig = kubeconfig.display(),
        healthz = free_port()?,
        metrics = free_port()?,
    ))
}

/// Tolerates the real node's taint and selects it: for every Pod meant to run there.
pub fn placement_yaml(indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}nodeSelector: {{{TAINT}: \"true\"}}\n{pad}tolerations:\n{pad}- {{key: {TAINT}, operator: Exists, effect: NoSchedule}}\n"
    )
}

/// CoreDNS (Deployment, Service kube-dns) with its RBAC, and kube-router's RBAC.
pub fn addons_manifest() -> String {
    let placement = placement_yaml(6);
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
    .:53 {{
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }}
        forward . /etc/resolv.conf
        cache 30
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {{k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata:
      labels: {{k8s-app: kube-dns, govpaas.io/node-addon: coredns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
{placement}      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {{type: RuntimeDefault}}
        # Port 53 without a capability: the Pod's own network namespace lowers the privileged range.
        sysctls: [{{name: net.ipv4.ip_unprivileged_port_start, value: "0"}}]
      containers:
      - name: coredns
        image: {coredns}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {{name: dns, containerPort: 53, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        readinessProbe: {{httpGet: {{path: /ready, port: 8181}}, periodSeconds: 2}}
        livenessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 10, failureThreshold: 5}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns, readOnly: true}}]
      volumes:
      - {{name: config, configMap: {{name: coredns}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{k8s-app: kube-dns}}
spec:
  clusterIP: {DNS_SERVICE_IP}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "govpaas:kube-router"}}
rules:
- apiGroups: [""]
  resources: [pods, namespaces, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "govpaas:kube-router"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "govpaas:kube-router"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{KUBE_ROUTER_USER}"}}]
"#,
        coredns = images::coredns_reference(),
    )
}

/// Polls `ready` until it holds.
fn wait(timeout: Duration, what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Removes every trace of the node from the host, after its processes stopped: the Pods' processes and
/// cgroups, mounts under the node's directory, the network namespaces containerd made, the bridge,
/// kube-proxy's nftables tables, kube-router's, the kubelet's and CNI's iptables chains and kube-router's
/// ipsets, the node address, and the sysctls (back to what `up` found). Best effort, each step on its
/// own: reports what stayed.
pub fn cleanup(sysctls: &BTreeMap<String, String>) -> Vec<String> {
    let mut left = Vec::new();
    kill_pod_processes();
    // containerd's shims outlive containerd; they hold the containers' mounts.
    let socket = containerd_socket().display().to_string();
    for pid in processes_matching(|cmdline| cmdline.contains("containerd-shim") && cmdline.contains(&socket)) {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
    }
    sleep(Duration::from_millis(300));
    remove_cgroups(&mut left);
    unmount_under(&dir(), &mut left);
    for netns in fs::read_dir("/var/run/netns").into_iter().flatten().flatten() {
        let name = netns.file_name().to_string_lossy().into_owned();
        if name.starts_with("cni-") {
            let _ = Command::new("umount").arg("-l").arg(netns.path()).status();
            if fs::remove_file(netns.path()).is_err() {
                left.push(format!("network namespace {name}"));
            }
        }
    }
    if Path::new(&format!("/sys/class/net/{BRIDGE}")).exists()
        && !Command::new("ip").args(["link", "delete", BRIDGE]).status().is_ok_and(|s| s.success())
    {
        left.push(format!("the bridge {BRIDGE}"));
    }
    for (family, table) in [("ip", "kube-proxy"), ("ip6", "kube-proxy")] {
        let _ = Command::new("nft").args(["delete", "table", family, table]).stderr(Stdio::null()).status();
    }
    remove_chains(&mut left);
    remove_ipsets(&mut left);
    let _ =
        Command::new("ip").args(["addr", "del", &format!("{ADDRESS}/32"), "dev", "lo"]).stderr(Stdio::null()).status();
    for (key, value) in sysctls {
        if fs::write(Path::new("/proc/sys").join(key), value).is_err() {
            left.push(format!("sysctl {key}"));
        }
    }
    left
}

/// The pids whose command line matches.
fn processes_matching(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if matches(&cmdline) {
            pids.push(pid);
        }
    }
    pids
}

/// Every cgroup directory under `kubepods` in each hierarchy, deepest first.
fn kubepods_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    for hierarchy in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let kubepods = hierarchy.path().join("kubepods");
        if kubepods.is_dir() {
            walk(&kubepods, &mut out);
        }
    }
    out
}

fn kill_pod_processes() {
    for cgroup in kubepods_cgroups() {
        let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
}

fn remove_cgroups(left: &mut Vec<String>) {
    for attempt in 0..10 {
        let remaining: Vec<PathBuf> = kubepods_cgroups().into_iter().filter(|cg| fs::remove_dir(cg).is_err()).collect();
        if remaining.is_empty() {
            return;
        }
        if attempt == 9 {
            left.push(format!("{} cgroups under kubepods (e.g. {})", remaining.len(), remaining[0].display()));
        }
        kill_pod_processes();
        sleep(Duration::from_millis(300));
    }
}

/// Unmounts, deepest first, every mount point under `dir` (containers' root filesystems, the kubelet's
/// volumes).
fn unmount_under(dir: &Path, left: &mut Vec<String>) {
    let prefix = dir.display().to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(|point| point.replace("\\040", " "))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        if !Command::new("umount").arg("-l").arg(&point).status().is_ok_and(|s| s.success()) {
            left.push(format!("mount {point}"));
        }
    }
}

/// The iptables chains the node's components make: `CNI-*` (the bridge plugin's masquerading and
/// portmap's), `KUBE-*` (kube-router's firewall, the kubelet's canaries). The jumps to them go first,
/// then the chains.
const CHAIN_PREFIXES: [&str; 2] = ["CNI-", "KUBE-"];

fn ours(chain: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|prefix| chain.starts_with(prefix))
}

fn remove_chains(left: &mut Vec<String>) {
    for (binary, table) in ["iptables", "ip6tables"]
        .into_iter()
        .flat_map(|binary| ["raw", "mangle", "nat", "filter"].map(|table| (binary, table)))
    {
        let Some(rules) = output(Command::new(binary).args(["-t", table, "-S"])) else { continue };
        // Rules are deleted by their number in their chain (a rule's text may hold quoted comments),
        // last first so that the numbers before stay valid.
        let mut numbers: BTreeMap<&str, usize> = BTreeMap::new();
        let mut jumps: Vec<(&str, usize)> = Vec::new();
        for rule in rules.lines().filter_map(|r| r.strip_prefix("-A ")) {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let number = numbers.entry(words[0]).or_default();
            *number += 1;
            if words.windows(2).any(|w| w[0] == "-j" && ours(w[1])) {
                jumps.push((words[0], *number));
            }
        }
        for (chain, number) in jumps.into_iter().rev() {
            let _ = Command::new(binary)
                .args(["-t", table, "-D", chain, &number.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let chains: Vec<&str> =
            rules.lines().filter_map(|r| r.strip_prefix("-N ")).filter(|chain| ours(chain)).collect();
        for chain in &chains {
            let _ = Command::new(binary).args(["-t", table, "-F", chain]).stderr(Stdio::null()).status();
        }
        for chain in chains {
            if !Command::new(binary)
                .args(["-t", table, "-X", chain])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                left.push(format!("{binary} chain {table}/{chain}"));
            }
        }
    }
}

/// kube-router's ipsets (`KUBE-SRC-…`, `KUBE-DST-…`, `kube-router-…`), once no rule refers to them.
fn remove_ipsets(left: &mut Vec<String>) {
    let Some(names) = output(Command::new("ipset").args(["list", "-n"])) else { return };
    for name in names.lines().filter(|n| n.starts_with("KUBE-") || n.starts_with("kube-router")) {
        if !Command::new("ipset").args(["destroy", name]).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            left.push(format!("ipset {name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_revision_is_not_part_of_the_upstream_version() {
        assert_eq!(upstream("1:1.4.7-1+b2"), "1:1.4.7");
        assert_eq!(upstream("1.6.20~ds1-1+deb12u3"), "1.6.20~ds1");
        assert_eq!(upstream("1.0"), "1.0");
    }

    #[test]
    fn the_configurations_parse() {
        let dir = Path::new("/tmp/node");
        let cni: serde_json::Value = serde_json::from_str(&cni_config(dir)).unwrap();
        assert_eq!(cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
        let containerd = containerd_config(dir);
        assert!(containerd.contains("sandbox_image = \"govpaas.local/pause:"), "{containerd}");
        for document in addons_manifest().split("\n---\n") {
            let value: serde_yaml::Value = serde_yaml::from_str(document).unwrap_or_else(|e| panic!("{e}: {document}"));
            assert!(value.get("kind").is_some(), "{document}");
        }
        let kubelet: serde_yaml::Value =
            serde_yaml::from_str(&kubelet_config_yaml(Path::new("/ca.crt")).unwrap()).unwrap();
        assert_eq!(kubelet["registerWithTaints"][0]["key"], TAINT);
    }
}

//! `cargo xtask cluster up | down | status | env`: a real Kubernetes control plane on loopback.
//!
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local processes, with
//! their data, PKI, logs and recorded process ids in [`paths::cluster_dir`]. kwok plays the kubelets of
//! three fake nodes. Volumes come from kube-controller-manager's own hostPath provisioner behind a default
//! StorageClass (see docs/development.md for why).
//!
//! As root, a real node joins them ([`crate::node`]): containerd, the kubelet, kube-proxy, CoreDNS and
//! kube-network-policies, for the tests and the demo that need Pods that run and packets that flow. The
//! API server then listens on the node's address instead of 127.0.0.1 (Pods reach it through the
//! `kubernetes` Service). `GOVPAAS_REAL_NODE=0` keeps the kwok nodes alone.

use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::node::{self, NodeState};
use crate::paths;
use crate::pki;
use crate::tools::{self, Tools};

/// How many fake nodes kwok runs.
pub const NODES: usize = 3;

/// The admission plugins of a production cluster (on top of the defaults the API server always adds).
const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,\
DefaultTolerationSeconds,DefaultIngressClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,\
RuntimeClass,Priority,TaintNodesByCondition,NodeRestriction,PodSecurity,CertificateApproval,\
CertificateSigning,CertificateSubjectRestriction,MutatingAdmissionPolicy,MutatingAdmissionWebhook,\
ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota";

/// What `up` recorded, read back by `status`, `down` and the tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub server: String,
    pub kubeconfig: PathBuf,
    pub processes: Vec<ProcessRecord>,
    /// The real node, when one was asked for: whether it came up, or why not.
    #[serde(default)]
    pub node: Option<NodeState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl ProcessRecord {
    /// Alive and not a zombie (a child that died while `up` still runs stays in /proc until reaped).
    pub fn is_alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state is the first field after the parenthesised command name.
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }
}

fn state_file() -> PathBuf {
    paths::cluster_dir().join("state.json")
}

/// The admin kubeconfig of the local cluster (it may not be up).
pub fn kubeconfig_path() -> PathBuf {
    paths::cluster_dir().join("kubeconfig")
}

pub fn read_state() -> Option<State> {
    let text = fs::read_to_string(state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// A free port on loopback, found by asking the kernel for one.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `lines` lines of a log file, for reporting a component that died.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let all: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn readyz(tools: &Tools, kubeconfig: &Path) -> bool {
    Command::new(&tools.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn start_process(name: &str, binary: &Path, args: &[String], logs: &Path) -> Result<ProcessRecord> {
    let log = logs.join(format!("{name}.log"));
    let out = fs::File::create(&log)?;
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: a Ctrl-C in the terminal, or the end of a test binary, must not take
        // the shared cluster down; `down` stops it by the recorded id.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(ProcessRecord { name: name.to_string(), pid: child.id(), log })
}

/// Brings the control plane up, or reuses it if it is already up and healthy. Returns its state.
///
/// Holds a file lock meanwhile, so that a test binary and a shell starting it at once share one cluster.
pub fn up() -> Result<State> {
    let lock_path = paths::cluster_dir().with_extension("lock");
    fs::create_dir_all(lock_path.parent().context("the cluster directory has a parent")?)?;
    let lock = fs::File::create(&lock_path)?;
    lock.lock().context("locking the cluster")?;
    let result = tools::ensure().and_then(|tools| up_locked(&tools));
    drop(lock);
    result
}

fn up_locked(tools: &Tools) -> Result<State> {
    if let Some(state) = read_state() {
        // Every process alive: a slow /readyz is load, not death (a busy 2-core machine can take
        // seconds to answer). Replacing the shared cluster then would pull it from under the tests.
        let alive = state.processes.iter().all(ProcessRecord::is_alive);
        if alive
            && (0..6).any(|attempt| {
                if attempt > 0 {
                    sleep(Duration::from_secs(5));
                }
                readyz(tools, &state.kubeconfig)
            })
        {
            eprintln!("xtask: the control plane is already up ({})", state.server);
            return Ok(state);
        }
        eprintln!("xtask: a previous control plane is recorded but not healthy; replacing it");
        stop(&state);
        if let Some(node) = &state.node {
            node.tear_down(&paths::cluster_dir());
        }
    }
    let dir = paths::cluster_dir();
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing old cluster data in {}", dir.display()))?;
    }
    let (logs, data) = (dir.join("logs"), dir.join("data"));
    fs::create_dir_all(&logs)?;
    fs::create_dir_all(&data)?;
    // The real node, unless told otherwise: checked (and its packages installed) before anything starts,
    // as the API server's address depends on it.
    let mut node_state = None;
    if std::env::var("GOVPAAS_REAL_NODE").as_deref() != Ok("0") {
        match node::preflight().and_then(|()| node::claim(&dir)).and_then(|()| node::prepare_host()) {
            Ok(sysctls) => node_state = Some(NodeState { sysctls, owned: true, ..NodeState::default() }),
            Err(err) => {
                node::release(&dir);
                eprintln!("xtask: WARNING: no real node: {err:#}");
                node_state = Some(NodeState { error: Some(format!("{err:#}")), ..NodeState::default() });
            }
        }
    }
    let real_node = node_state.as_ref().is_some_and(|n| n.error.is_none());
    let host = if real_node { node::ADDRESS } else { "127.0.0.1" };
    let pki = pki::create(&dir.join("pki"), &[node::ADDRESS])?;

    let etcd_client = free_port()?;
    let etcd_peer = free_port()?;
    let apiserver_port = free_port()?;
    let server = format!("https://{host}:{apiserver_port}");
    let kubeconfig = kubeconfig_path();
    fs::write(&kubeconfig, pki::kubeconfig(&server, &pki.ca.cert, &pki.admin, "admin"))?;
    let component_kubeconfig = |name: &str, files: &pki::CertFiles| -> Result<PathBuf> {
        let path = dir.join(format!("{name}.kubeconfig"));
        fs::write(&path, pki::kubeconfig(&server, &pki.ca.cert, files, name))?;
        Ok(path)
    };
    let kcm_kubeconfig = component_kubeconfig("kube-controller-manager", &pki.controller_manager)?;
    let scheduler_kubeconfig = component_kubeconfig("kube-scheduler", &pki.scheduler)?;
    let kwok_kubeconfig = component_kubeconfig("kwok", &pki.kwok)?;
    let p = |path: &Path| path.display().to_string();

    let mut processes = Vec::new();
    let mut state =
        State { server: server.clone(), kubeconfig: kubeconfig.clone(), processes: vec![], node: node_state };
    let result = (|| -> Result<()> {
        processes.push(start_process(
            "etcd",
            &tools.etcd,
            &[
                "--name=govpaas".into(),
                format!("--data-dir={}", p(&data.join("etcd"))),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=govpaas=http://127.0.0.1:{etcd_peer}"),
                // A throwaway test cluster on a shared disk: durability is not worth an fsync per write.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &logs,
        )?);
        record(&mut state, &processes)?;
        let mut apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--bind-address={host}"),
            format!("--advertise-address={host}"),
        ];
        if real_node {
            // `kubectl logs` and `exec` on the real node's Pods.
            apiserver_args.extend([
                format!("--kubelet-client-certificate={}", p(&pki.apiserver_kubelet_client.cert)),
                format!("--kubelet-client-key={}", p(&pki.apiserver_kubelet_client.key)),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ]);
        } else {
            // The endpoint reconciler refuses a loopback address; nothing in the cluster dials the API
            // server through the `kubernetes` Service without a real node.
            apiserver_args.push("--endpoint-reconciler-type=none".into());
        }
        processes.push(start_process(
            "kube-apiserver",
            &tools.kube_apiserver,
            &[
                apiserver_args,
                vec![
                    format!("--secure-port={apiserver_port}"),
                    format!("--cert-dir={}", p(&dir.join("pki"))),
                    format!("--tls-cert-file={}", p(&pki.apiserver.cert)),
                    format!("--tls-private-key-file={}", p(&pki.apiserver.key)),
                    format!("--client-ca-file={}", p(&pki.ca.cert)),
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                    format!("--service-account-key-file={}", p(&pki.service_account_pub)),
                    format!("--service-account-signing-key-file={}", p(&pki.service_account_key)),
                    "--service-cluster-ip-range=10.96.0.0/16".into(),
                    "--authorization-mode=Node,RBAC".into(),
                    format!("--enable-admission-plugins={ADMISSION_PLUGINS}"),
                    "--allow-privileged=true".into(),
                    "--profiling=false".into(),
                    "--v=1".into(),
                ],
            ]
            .concat(),
            &logs,
        )?);
        record(&mut state, &processes)?;
        wait_for(&processes, Duration::from_secs(120), "the API server to become ready", || {
            readyz(tools, &kubeconfig)
        })?;
        processes.push(start_process(
            "kube-controller-manager",
            &tools.kube_controller_manager,
            &[
                format!("--kubeconfig={}", p(&kcm_kubeconfig)),
                format!("--authentication-kubeconfig={}", p(&kcm_kubeconfig)),
                format!("--authorization-kubeconfig={}", p(&kcm_kubeconfig)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", p(&pki.service_account_key)),
                format!("--root-ca-file={}", p(&pki.ca.cert)),
                "--enable-hostpath-provisioner=true".into(),
                "--v=1".into(),
            ],
            &logs,
        )?);
        processes.push(start_process(
            "kube-scheduler",
            &tools.kube_scheduler,
            &[
                format!("--kubeconfig={}", p(&scheduler_kubeconfig)),
                format!("--authentication-kubeconfig={}", p(&scheduler_kubeconfig)),
                format!("--authorization-kubeconfig={}", p(&scheduler_kubeconfig)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ],
            &logs,
        )?);
        processes.push(start_process(
            "kwok",
            &tools.kwok,
            &[
                format!("--kubeconfig={}", p(&kwok_kubeconfig)),
                format!("--config={}", p(&tools.kwok_stages)),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                "--node-lease-duration-seconds=40".into(),
                "--cidr=10.244.0.0/16".into(),
                "--node-ip=127.0.0.1".into(),
                format!("--node-port={}", free_port()?),
                format!("--server-address=127.0.0.1:{}", free_port()?),
            ],
            &logs,
        )?);
        record(&mut state, &processes)?;
        kubectl_apply(tools, &kubeconfig, &bootstrap_manifest())?;
        wait_for(&processes, Duration::from_secs(120), "the nodes and the controllers", || {
            cluster_converged(tools, &kubeconfig)
        })?;
        Ok(())
    })();
    if let Err(err) = result {
        stop(&state);
        if let Some(node) = &state.node {
            node.tear_down(&paths::cluster_dir());
        }
        return Err(err);
    }
    eprintln!("xtask: the control plane is up at {server} with {NODES} kwok nodes");
    if real_node {
        // A node that does not come up leaves the control plane and the kwok nodes working: what needs
        // the node fails on its own, with the reason recorded here.
        if let Err(err) = start_node(tools, &pki, &dir, &logs, &kubeconfig, &server, &mut processes, &mut state) {
            eprintln!("xtask: WARNING: the real node did not come up: {err:#}");
            if let Some(node) = state.node.as_mut() {
                node.error = Some(format!("{err:#}"));
            }
            record(&mut state, &processes)?;
        }
    }
    Ok(state)
}

#[allow(clippy::too_many_arguments)]
fn start_node(
    tools: &Tools,
    pki: &pki::Pki,
    dir: &Path,
    logs: &Path,
    kubeconfig: &Path,
    server: &str,
    processes: &mut Vec<ProcessRecord>,
    state: &mut State,
) -> Result<()> {
    let node_tools = tools::node_tools()?;
    let credentials = node::Credentials {
        kubelet_kubeconfig: dir.join("kubelet.kubeconfig"),
        kube_proxy_kubeconfig: dir.join("kube-proxy.kubeconfig"),
        kube_router_kubeconfig: dir.join("kube-router.kubeconfig"),
        ca_cert: pki.ca.cert.clone(),
    };
    fs::write(&credentials.kubelet_kubeconfig, pki::kubeconfig(server, &pki.ca.cert, &pki.kubelet, "kubelet"))?;
    fs::write(
        &credentials.kube_proxy_kubeconfig,
        pki::kubeconfig(server, &pki.ca.cert, &pki.kube_proxy, "kube-proxy"),
    )?;
    fs::write(
        &credentials.kube_router_kubeconfig,
        pki::kubeconfig(server, &pki.ca.cert, &pki.kube_router, "kube-router"),
    )?;
    if let Some(node) = state.node.as_mut() {
        node.containerd_socket = Some(node::dir().join("containerd.sock"));
    }
    node::start(tools, &node_tools, &credentials, kubeconfig, logs, &mut |process| {
        processes.push(process);
        record(state, processes)
    })?;
    wait_for(processes, Duration::from_secs(300), "the real node and its add-ons to be Ready", || {
        node::ready(tools, kubeconfig)
    })?;
    if let Some(node) = state.node.as_mut() {
        node.ready = true;
    }
    record(state, processes)?;
    eprintln!("xtask: the real node {} is Ready (Pods on {})", node::NAME, node::POD_SUBNET);
    Ok(())
}

fn record(state: &mut State, processes: &[ProcessRecord]) -> Result<()> {
    state.processes = processes.to_vec();
    fs::write(state_file(), serde_json::to_string_pretty(state)?)?;
    Ok(())
}

/// Polls `ready` until it holds; fails at once, with the log's tail, if a component dies meanwhile.
fn wait_for(processes: &[ProcessRecord], timeout: Duration, what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(dead) = processes.iter().find(|p| !p.is_alive()) {
            bail!(
                "{} died while waiting for {what}; the end of its log ({}):\n{}",
                dead.name,
                dead.log.display(),
                log_tail(&dead.log, 30)
            );
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {}s waiting for {what}; logs are in {}",
                timeout.as_secs(),
                paths::cluster_dir().join("logs").display()
            );
        }
        sleep(Duration::from_millis(500));
    }
}

/// The nodes kwok runs and the default StorageClass.
fn bootstrap_manifest() -> String {
    let mut out = String::new();
    for i in 0..NODES {
        out.push_str(&format!(
            r#"apiVersion: v1
kind: Node
metadata:
  name: kwok-node-{i}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-{i}
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    topology.kubernetes.io/zone: zone-{i}
    type: kwok
status:
  allocatable: {{cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 500Gi}}
  capacity: {{cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 500Gi}}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
---
"#
        ));
    }
    out.push_str(
        r#"# Dynamic provisioning by kube-controller-manager's own hostPath provisioner: PVCs bind on their own,
# reclaimPolicy is honoured (Delete removes the directory, Retain keeps it), as on a real cluster.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
"#,
    );
    out
}

fn kubectl(tools: &Tools, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(&tools.kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig);
    cmd
}

pub fn kubectl_apply(tools: &Tools, kubeconfig: &Path, manifest: &str) -> Result<()> {
    use std::io::Write;
    let mut child = kubectl(tools, kubeconfig)
        .args(["apply", "--server-side", "--field-manager=govpaas-xtask", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("kubectl stdin")?.write_all(manifest.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub fn kubectl_output(tools: &Tools, kubeconfig: &Path, args: &[&str]) -> Option<String> {
    let out = kubectl(tools, kubeconfig).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every kwok node Ready, and kube-controller-manager at work (it creates each namespace's `default`
/// ServiceAccount, without which no Pod is admitted).
fn cluster_converged(tools: &Tools, kubeconfig: &Path) -> bool {
    let ready = kubectl_output(
        tools,
        kubeconfig,
        &[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ],
    )
    .map(|out| out.lines().filter(|l| *l == "True").count())
    .unwrap_or(0);
    ready >= NODES
        && kubectl_output(tools, kubeconfig, &["get", "serviceaccount", "default", "-n", "default"]).is_some()
}

/// Stops every recorded process: SIGTERM, then SIGKILL for whatever is still there after 10 s.
fn stop(state: &State) {
    // Reverse order: the API server's clients first, etcd last.
    for p in state.processes.iter().rev() {
        signal(p.pid, "TERM");
    }
    if !wait_until_stopped(state, Duration::from_secs(10)) {
        for p in state.processes.iter().filter(|p| p.is_alive()) {
            signal(p.pid, "KILL");
        }
        // SIGKILL is delivered asynchronously: give the kernel a moment to tear the processes down.
        wait_until_stopped(state, Duration::from_secs(5));
    }
}

fn wait_until_stopped(state: &State, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !state.processes.iter().any(ProcessRecord::is_alive) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Stops the control plane and removes its data, including the directories of provisioned volumes.
pub fn down() -> Result<()> {
    let Some(state) = read_state() else {
        eprintln!("xtask: no control plane is recorded in {}", paths::cluster_dir().display());
        return Ok(());
    };
    crate::demo::stop_operator();
    let volume_dirs = tools::cached().and_then(|t| {
        kubectl_output(
            &t,
            &state.kubeconfig,
            &["get", "pv", "-o", r#"jsonpath={range .items[*]}{.spec.hostPath.path}{"\n"}{end}"#],
        )
    });
    stop(&state);
    let survivors: Vec<_> = state.processes.iter().filter(|p| p.is_alive()).collect();
    if !survivors.is_empty() {
        bail!("could not stop: {:?}", survivors.iter().map(|p| (&p.name, p.pid)).collect::<Vec<_>>());
    }
    if let Some(node) = &state.node {
        let left = node.tear_down(&paths::cluster_dir());
        if !left.is_empty() {
            eprintln!("xtask: WARNING: the real node left: {}", left.join("; "));
        }
    }
    for dir in volume_dirs.iter().flat_map(|s| s.lines()) {
        // Only what the hostPath provisioner made (it refuses anything outside /tmp as well).
        if dir.starts_with("/tmp/hostpath_pv/") {
            let _ = fs::remove_dir_all(dir);
        }
    }
    fs::remove_dir_all(paths::cluster_dir())?;
    eprintln!("xtask: stopped {} processes and removed the cluster's data", state.processes.len());
    Ok(())
}

/// Prints what runs; reports a dead component with the tail of its log. Errs when not healthy.
pub fn status() -> Result<()> {
    let Some(state) = read_state() else {
        println!("no control plane (run `cargo xtask cluster up`)");
        bail!("not up");
    };
    println!("server: {}\nkubeconfig: {}", state.server, state.kubeconfig.display());
    let mut dead = 0;
    for p in &state.processes {
        if p.is_alive() {
            println!("  {:<24} running  pid {}", p.name, p.pid);
        } else {
            dead += 1;
            println!(
                "  {:<24} DEAD     (was pid {}); the end of {}:\n{}",
                p.name,
                p.pid,
                p.log.display(),
                log_tail(&p.log, 20)
            );
        }
    }
    match &state.node {
        Some(NodeState { ready: true, .. }) => println!("  {:<24} Ready", format!("real node {}", node::NAME)),
        Some(NodeState { error: Some(error), .. }) => println!("  {:<24} NOT UP: {error}", "real node"),
        Some(_) => println!("  {:<24} starting", "real node"),
        None => println!("  {:<24} not asked for (GOVPAAS_REAL_NODE=0)", "real node"),
    }
    let tools = tools::cached().context("the tools are not built (run `cargo xtask cluster up`)")?;
    let ready = readyz(&tools, &state.kubeconfig);
    println!("  {:<24} {}", "API /readyz", if ready { "ok" } else { "NOT READY" });
    if let Some(nodes) = kubectl_output(&tools, &state.kubeconfig, &["get", "nodes", "--no-headers"]) {
        print!("{nodes}");
    }
    if dead > 0 || !ready {
        bail!("the control plane is not healthy");
    }
    Ok(())
}

/// The lines that point a shell at the cluster: `eval "$(cargo xtask cluster env)"`.
pub fn env() -> Result<String> {
    let tools = tools::cached().context("the tools are not built (run `cargo xtask cluster up`)")?;
    let path: Vec<String> = tools.bin_dirs().iter().map(|d| d.display().to_string()).collect();
    Ok(format!("export KUBECONFIG={}\nexport PATH={}:$PATH\n", kubeconfig_path().display(), path.join(":")))
}

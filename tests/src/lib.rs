//! Test support for govpaas's integration and end-to-end tests.
//!
//! One real control plane per test run ([`cluster`]), started by `cargo xtask`'s own code if it is not
//! up yet; each test works in namespaces and objects of its own ([`TestNamespace`], [`unique_name`]) and
//! cleans them up when done.

pub mod api;
pub mod converge;
pub mod faults;
pub mod gateway;
pub mod operator;
pub mod world;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The shared local control plane.
#[derive(Debug)]
pub struct Cluster {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The workspace root, for manifests and charts.
    pub root: PathBuf,
    pub kubectl_bin: PathBuf,
    pub helm_bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The control plane, started if it is not up (blocking; one start even when tests race for it).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        // `up` holds a lock across processes: test binaries started at once share one cluster.
        let state =
            xtask::cluster::up().unwrap_or_else(|err| panic!("the local control plane did not come up: {err:#}"));
        let tools = xtask::tools::ensure().expect("tools");
        Cluster {
            kubeconfig: state.kubeconfig,
            root: xtask::paths::workspace_root(),
            kubectl_bin: tools.kubectl,
            helm_bin: tools.helm,
        }
    })
}

/// A control plane of this test process's own, for a test that changes what every other test
/// depends on (the platform CA): [`cluster`] returns it from then on, and it is stopped and its
/// data removed when the guard is dropped. Call before anything else touches [`cluster`], in a
/// test binary that holds only tests meant for it.
pub fn private_cluster(name: &str) -> PrivateCluster {
    let dir = xtask::paths::workspace_root().join("target").join(format!("{name}-{}", std::process::id()));
    // SAFETY: set before the cluster or any thread of this process reads the environment; the
    // binary's tests all run on this one cluster.
    unsafe { std::env::set_var("GOVPAAS_CLUSTER_DIR", &dir) };
    // The machine's one real node stays with the shared cluster.
    unsafe { std::env::set_var("GOVPAAS_REAL_NODE", "0") };
    PrivateCluster { cluster: cluster(), dir }
}

/// A private control plane, stopped when dropped.
pub struct PrivateCluster {
    pub cluster: &'static Cluster,
    pub dir: PathBuf,
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(err) = xtask::cluster::down() {
            eprintln!("stopping the private control plane in {}: {err:#}", self.dir.display());
        }
    }
}

impl Cluster {
    /// A client with the admin's credentials.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("reading the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client config from the kubeconfig");
        kube::Client::try_from(config).expect("a client")
    }

    /// kubectl pointed at this cluster.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl_bin);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// helm pointed at this cluster.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(&self.helm_bin);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl; panics with its stderr when it fails; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl().args(args).output().expect("running kubectl");
        assert!(out.status.success(), "kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `input` on stdin; returns (success, stdout, stderr).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing to kubectl");
        let out = child.wait_with_output().expect("waiting for kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kubectl apply -f -` of a manifest; panics with kubectl's message when refused.
    pub fn apply(&self, manifest: &str) {
        let (ok, _, err) = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "kubectl apply failed: {err}\n--- manifest ---\n{manifest}");
    }
}

/// The bytes under `key` of a Secret's data; panics, naming the key, when it is missing.
pub fn secret_data(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> Vec<u8> {
    secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone()).unwrap_or_else(|| panic!("no {key} in Secret"))
}

/// A name no other test, in this run or an earlier one, uses: `<prefix>-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A namespace of the test's own, deleted (without waiting) when dropped.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
    cluster: &'static Cluster,
}

impl TestNamespace {
    /// Creates a fresh namespace labelled `govpaas.io/test: "true"`.
    pub fn new(cluster: &'static Cluster, prefix: &str) -> Self {
        let name = unique_name(prefix);
        cluster.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    govpaas.io/test: \"true\"\n"
        ));
        TestNamespace { name, cluster }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {}s waiting for {what}", timeout.as_secs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

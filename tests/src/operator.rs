//! Running the operator on the shared cluster the way production runs it: the Helm chart installed
//! (CRDs, admission policies, the operator's ServiceAccount and ClusterRole), and the
//! `govpaas-operator` binary started as a local process with a token of that ServiceAccount, so a
//! verb missing from the chart's RBAC fails the tests.
//!
//! Tests share one cluster, and an operator reconciles every Tenant it can see. So each test runs
//! its own operator with `--tenant-selector govpaas.io/scope=<scope>` and labels its Tenants with
//! its scope ([`OperatorProcess::scope_label`]): tests never reconcile, prune or quota-carve each
//! other's tenants, and a test may restart its operator without disturbing anyone. Agency codes
//! are unique per scope (the operator only sees its scope), so tests may reuse them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::Kubeconfig;

use crate::Cluster;

/// The Helm release the tests install, and its namespace (the operator's).
pub const RELEASE: &str = "govpaas";
pub const NAMESPACE: &str = "govpaas-system";
/// The operator's ServiceAccount, as the chart's values name it.
pub const SERVICE_ACCOUNT: &str = "govpaas-operator";
/// The label each test puts on its Tenants, and its operator selects.
pub const SCOPE_LABEL: &str = "govpaas.io/scope";
/// The base domain of the Platform the tests create when none exists.
pub const TEST_BASE_DOMAIN: &str = "danang.gov.vn";
/// What the log says before each start of an operator process.
const START_MARKER: &str = "===== govpaas-operator starting";
/// The field manager the tests write the Platform with.
const MANAGER: &str = "govpaas-tests-operator";

/// Where the tests' own files go (kubeconfigs, operator logs): `target/govpaas-tests`.
pub fn work_dir(cluster: &Cluster) -> PathBuf {
    let dir = target_dir(&cluster.root).join("govpaas-tests");
    fs::create_dir_all(&dir).expect("creating target/govpaas-tests");
    dir
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Installs the chart (`helm upgrade --install`), CRDs included, once per test process; processes
/// racing for it take turns on a file lock.
pub fn install_chart(cluster: &Cluster) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // CRDs Established and the admission policies compiled: `helm` applies CRDs only on a
        // first install, never on upgrades, so the API module applies the current ones first.
        crate::api::install_api(cluster);
        let lock = File::create(xtask::paths::cluster_dir().join("helm-install.lock")).expect("the helm lock file");
        lock.lock().expect("locking the helm lock file");
        // Objects another test applied from the chart's files (the admission policies) are adopted
        // by the release instead of refused as "owned by no release".
        let policies = crate::api::admission_policies(cluster);
        let (ok, _, err) =
            cluster.kubectl_stdin(&["label", "--overwrite", "-f", "-", "app.kubernetes.io/managed-by=Helm"], &policies);
        assert!(ok, "labelling the admission policies: {err}");
        let (ok, _, err) = cluster.kubectl_stdin(
            &[
                "annotate",
                "--overwrite",
                "-f",
                "-",
                &format!("meta.helm.sh/release-name={RELEASE}"),
                &format!("meta.helm.sh/release-namespace={NAMESPACE}"),
            ],
            &policies,
        );
        assert!(ok, "annotating the admission policies: {err}");
        let chart = cluster.root.join("charts/govpaas");
        let out = cluster
            .helm()
            .args(["upgrade", "--install", RELEASE])
            .arg(&chart)
            // The chart's defaults, whatever the release had: Helm reuses the last release's values
            // when none are given, and a demo's release runs on the real node with its own images.
            .args(["--namespace", NAMESPACE, "--create-namespace", "--history-max", "3", "--reset-values"])
            .args(["--wait", "--timeout", "2m"])
            .output()
            .expect("running helm");
        assert!(
            out.status.success(),
            "helm upgrade --install failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Makes sure the Platform `default` exists and returns its base domain. It is written (with the
/// value it has, or [`TEST_BASE_DOMAIN`]) under this module's field manager, so that other tests
/// that created it see a co-owner and do not delete it while tenants depend on it.
pub fn ensure_platform(cluster: &Cluster) -> String {
    let current = cluster
        .kubectl()
        .args(["get", "platform", "default", "-o", "jsonpath={.spec.baseDomain}"])
        .output()
        .expect("running kubectl");
    let existing = String::from_utf8_lossy(&current.stdout).trim().to_owned();
    let base_domain = if current.status.success() && !existing.is_empty() { existing } else { TEST_BASE_DOMAIN.into() };
    let manifest = format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  baseDomain: {base_domain}\n"
    );
    let (ok, _, err) =
        cluster.kubectl_stdin(&["apply", "--server-side", "--field-manager", MANAGER, "-f", "-"], &manifest);
    assert!(ok, "applying the Platform: {err}");
    base_domain
}

/// The operator binary, built once per test process (a no-op when fresh), in a target directory of
/// its own (see [`xtask::install::build_operator`]); the release build when
/// `GOVPAAS_TEST_OPERATOR_PROFILE=release` (benchmarks).
pub fn operator_binary(_cluster: &Cluster) -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let built = if std::env::var("GOVPAAS_TEST_OPERATOR_PROFILE").is_ok_and(|p| p == "release") {
                xtask::install::build_binary("govpaas-operator", "operator", xtask::install::Profile::Release)
            } else {
                xtask::install::build_operator()
            };
            let binary = built.unwrap_or_else(|err| panic!("{err:#}"));
            assert!(binary.exists(), "{} is missing after cargo build", binary.display());
            binary
        })
        .clone()
}

/// A kubeconfig holding an 8-hour token of the operator's ServiceAccount (server and CA from the
/// admin kubeconfig), made once per test process.
pub fn operator_kubeconfig(cluster: &Cluster) -> PathBuf {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| service_account_kubeconfig(cluster, SERVICE_ACCOUNT, "operator")).clone()
}

/// A kubeconfig holding an 8-hour token (a national benchmark runs for hours) of the chart's
/// ServiceAccount `service_account` in the release namespace (server and CA from the admin
/// kubeconfig), written as `<name>-<pid>.kubeconfig`. The chart is installed first.
pub fn service_account_kubeconfig(cluster: &Cluster, service_account: &str, name: &str) -> PathBuf {
    install_chart(cluster);
    let token = cluster.kubectl_ok(&["create", "token", service_account, "-n", NAMESPACE, "--duration=8h"]);
    let admin = Kubeconfig::read_from(&cluster.kubeconfig).expect("reading the admin kubeconfig");
    let named = admin.clusters.first().expect("a cluster in the admin kubeconfig");
    let server_config = named.cluster.as_ref().expect("cluster details");
    let server = server_config.server.clone().expect("a server in the admin kubeconfig");
    let ca = match (&server_config.certificate_authority_data, &server_config.certificate_authority) {
        (Some(data), _) => format!("certificate-authority-data: {data}"),
        (None, Some(path)) => format!("certificate-authority: {path}"),
        (None, None) => panic!("the admin kubeconfig names no certificate authority"),
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: govpaas-local\n  cluster:\n    server: {server}\n    {ca}\nusers:\n- name: {service_account}\n  user:\n    token: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: govpaas-local\n    user: {service_account}\ncurrent-context: {name}\n",
        token.trim()
    );
    let path = work_dir(cluster).join(format!("{name}-{}.kubeconfig", std::process::id()));
    fs::write(&path, kubeconfig).expect("writing the kubeconfig");
    path
}

/// A `govpaas-operator` process reconciling one test's scope with the chart's credentials;
/// stopped (SIGTERM, then SIGKILL) when dropped.
pub struct OperatorProcess {
    child: Option<Child>,
    scope: String,
    /// Run without `--tenant-selector` (every Tenant): on a private control plane only.
    unscoped: bool,
    log: PathBuf,
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl OperatorProcess {
    /// Installs the chart if needed and starts an operator for Tenants labelled
    /// `govpaas.io/scope=<scope>`.
    pub fn start(cluster: &Cluster, scope: &str) -> Self {
        Self::start_replica(cluster, scope, "")
    }

    /// Like [`OperatorProcess::start`], for a further replica of the same scope: the replicas
    /// elect one leader on their scope's Lease. `replica` names its log.
    pub fn start_replica(cluster: &Cluster, scope: &str, replica: &str) -> Self {
        let kubeconfig = operator_kubeconfig(cluster);
        let binary = operator_binary(cluster);
        let suffix = if replica.is_empty() { String::new() } else { format!("-{replica}") };
        let log = work_dir(cluster).join(format!("operator-{scope}{suffix}.log"));
        let _ = fs::remove_file(&log);
        let mut process =
            OperatorProcess { child: None, scope: scope.to_owned(), unscoped: false, log, binary, kubeconfig };
        process.spawn();
        process
    }

    /// An operator for every Tenant (no `--tenant-selector`), as production runs it: only on a
    /// control plane of the test's own ([`crate::private_cluster`]), where it cannot reconcile
    /// another test's Tenants. Its Tenants still carry `scope`'s label, so [`Self::selector`]
    /// lists them. It alone writes what needs every Tenant (the Platform's tenant count).
    pub fn start_unscoped(cluster: &Cluster, scope: &str) -> Self {
        let kubeconfig = operator_kubeconfig(cluster);
        let binary = operator_binary(cluster);
        let log = work_dir(cluster).join(format!("operator-{scope}.log"));
        let _ = fs::remove_file(&log);
        let mut process =
            OperatorProcess { child: None, scope: scope.to_owned(), unscoped: true, log, binary, kubeconfig };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("opening the operator log");
        writeln!(log, "{START_MARKER} (scope {}) =====", self.scope).expect("writing the operator log");
        let stderr = log.try_clone().expect("cloning the log handle");
        // GOVPAAS_TEST_OPERATOR_WRAPPER runs the operator under another program, e.g. a profiler
        // (`heaptrack -o target/op`): its words, then the operator's command line. A benchmark then
        // reads the wrapper's /proc figures, not the operator's: profile with it, never record.
        let wrapper = std::env::var("GOVPAAS_TEST_OPERATOR_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        if !self.unscoped {
            command.args(["--tenant-selector", &format!("{SCOPE_LABEL}={}", self.scope)]);
        }
        let child = command
            .args(["--namespace", NAMESPACE])
            // GOVPAAS_TEST_OPERATOR_LOG overrides the level, e.g. to add kube_runtime=debug.
            .env(
                "RUST_LOG",
                std::env::var("GOVPAAS_TEST_OPERATOR_LOG").unwrap_or_else(|_| "info,govpaas_operator=debug".into()),
            )
            .env("POD_NAME", format!("govpaas-operator-{}", self.scope))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("starting govpaas-operator");
        self.child = Some(child);
    }

    /// The scope label as `key: value` YAML, for a Tenant's `metadata.labels`.
    pub fn scope_label(&self) -> String {
        format!("{SCOPE_LABEL}: {}", self.scope)
    }

    /// The scope's label selector (`govpaas.io/scope=<scope>`).
    pub fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    /// Stops the operator gracefully (SIGTERM: reconciles in flight finish), or kills it after 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the operator with SIGKILL: no graceful shutdown, the Lease is not released.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the operator and starts a new one over the same scope.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the operator again after [`Self::stop`] (a no-op while it runs).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Whether the process is still running (it must never exit on its own).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The operator's `/metrics` (the whole HTTP response), from the address it logged at start-up.
    pub async fn metrics(&self) -> String {
        self.http_get("/metrics").await
    }

    /// The operator's `/metrics`, or `None` while the running process has not served them yet.
    pub async fn try_metrics(&self) -> Option<String> {
        self.try_http_get("/metrics").await
    }

    /// `GET path` on the running process's metrics and health port, or `None` while it has not
    /// served it yet.
    pub async fn try_http_get(&self, path: &str) -> Option<String> {
        self.child.as_ref()?;
        // Only the address logged since the last start: until a restarted process logs its own,
        // its predecessor's is no answer (another process may have its port by then).
        let log = self.log();
        let current = log.rfind(START_MARKER).map_or(log.as_str(), |start| &log[start..]);
        http_get_logged(current, path).await.ok()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The whole HTTP response (status line, headers, body) of `path` on the operator's metrics
    /// and health port: `/metrics`, `/healthz`, `/readyz`.
    pub async fn http_get(&self, path: &str) -> String {
        http_get_logged(&self.log(), path).await.unwrap_or_else(|err| panic!("{err}"))
    }

    /// The identity this process takes part in leader election with (`holderIdentity` of the
    /// Lease it holds), or `None` when it is not running.
    pub fn identity(&self) -> Option<String> {
        let child = self.child.as_ref()?;
        Some(format!("govpaas-operator-{}-{}", self.scope, child.id()))
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- govpaas-operator log ({}) ---\n{}", self.log.display(), self.log_tail(60));
        }
    }
}

/// `GET path` on the metrics and health port the operator logged last in `log` (a restarted
/// process logs a new one): the whole HTTP response, or why there is none.
pub async fn http_get_logged(log: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let line =
        log.lines().rev().find(|l| l.contains("serving /metrics")).ok_or("the operator logged no metrics address")?;
    let start = line.find("127.0.0.1:").ok_or("the metrics address is not on loopback")?;
    let address: String = line[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|err| format!("connecting to the metrics port {address}: {err}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .map_err(|err| format!("asking for {path}: {err}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.map_err(|err| format!("reading {path}: {err}"))?;
    Ok(response)
}

/// The sum of the samples of metric `name` (exactly that name, e.g. `govpaas_reconciles_total`)
/// whose labels include every one of `labels`, in a `/metrics` text; 0 when there is none (a
/// counter appears on its first increment).
pub fn metric_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, series_labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| series_labels.split(',').any(|l| l == format!("{key}=\"{value}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Reconciles `controller` finished (failed ones included), from a `/metrics` text.
pub fn reconciles(metrics: &str, controller: &str) -> f64 {
    metric_sum(metrics, "govpaas_reconciles_total", &[("controller", controller)])
}

/// Reconciles of `controller` that failed, every error variant together, from a `/metrics` text.
pub fn reconcile_errors(metrics: &str, controller: &str) -> f64 {
    metric_sum(metrics, "govpaas_reconcile_errors_total", &[("controller", controller)])
}

/// Every reconcile finished, of every controller, from a `/metrics` text.
pub fn all_reconciles(metrics: &str) -> f64 {
    metric_sum(metrics, "govpaas_reconciles_total", &[])
}

/// Whether the `govpaas_leader` gauge says this instance holds the leader Lease.
pub fn leading(metrics: &str) -> bool {
    metric_sum(metrics, "govpaas_leader", &[]) == 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_match_the_name_and_every_label_asked_for() {
        let metrics = "# HELP govpaas_reconciles Reconciles run, by controller\n\
            # TYPE govpaas_reconciles counter\n\
            govpaas_reconciles_total{controller=\"portal\"} 3\n\
            govpaas_reconciles_total{controller=\"tenant\"} 5\n\
            govpaas_reconcile_errors_total{controller=\"portal\",error=\"Kube\"} 1\n\
            govpaas_reconcile_errors_total{controller=\"portal\",error=\"Quota\"} 2\n\
            govpaas_leader 1\n";
        assert_eq!(reconciles(metrics, "portal"), 3.0);
        assert_eq!(reconciles(metrics, "document-service"), 0.0);
        assert_eq!(reconcile_errors(metrics, "portal"), 3.0);
        assert_eq!(all_reconciles(metrics), 8.0);
        assert!(leading(metrics));
        assert!(!leading("govpaas_leader 0\n"));
    }
}

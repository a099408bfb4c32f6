//! Running the LGSP gateway the way production runs it, as far as a cluster without containers
//! allows: the `govpaas-gateway` binary as a local process, with a token of the chart's gateway
//! ServiceAccount (so a verb missing from its Role fails the tests), reading the route tables from
//! the cluster (`--routes-from-cluster`), its TLS files written from the Secret the operator issued.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::operator::{NAMESPACE, install_chart, service_account_kubeconfig, work_dir};

/// The gateway's ServiceAccount, as the chart's values name it.
pub const SERVICE_ACCOUNT: &str = "govpaas-gateway";

/// The gateway binary, built once per test process in a target directory of its own (see
/// [`xtask::install::build_gateway`]).
pub fn gateway_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let binary = xtask::install::build_gateway().unwrap_or_else(|err| panic!("{err:#}"));
            assert!(binary.exists(), "{} is missing after cargo build", binary.display());
            binary
        })
        .clone()
}

/// A kubeconfig with an 8-hour token of the gateway's ServiceAccount, made once per test process.
pub fn gateway_kubeconfig(cluster: &Cluster) -> PathBuf {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            install_chart(cluster);
            service_account_kubeconfig(cluster, SERVICE_ACCOUNT, "gateway")
        })
        .clone()
}

/// A `govpaas-gateway serve` process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct GatewayProcess {
    child: Option<Child>,
    /// The mutual-TLS listener.
    pub listen: SocketAddr,
    /// The audit log.
    pub audit_log: PathBuf,
    log: PathBuf,
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("its address")
}

impl GatewayProcess {
    /// Starts the gateway on a free loopback port with the route tables of the operator's
    /// namespace, the TLS files `tls.crt`, `tls.key` and `ca.crt` in `dir` (the audit log goes there too) and `--resolve` overrides `resolve`
    /// (`host=ip:port`), and waits until it accepts connections (it lists the route tables first).
    pub fn start(cluster: &Cluster, name: &str, dir: &Path, resolve: &[String]) -> Self {
        Self::start_with(cluster, name, dir, resolve, &[])
    }

    /// [`GatewayProcess::start`] with `extra` arguments (`--national <dir>`…).
    pub fn start_with(cluster: &Cluster, name: &str, dir: &Path, resolve: &[String], extra: &[String]) -> Self {
        let binary = gateway_binary();
        let kubeconfig = gateway_kubeconfig(cluster);
        let log = work_dir(cluster).join(format!("gateway-{name}.log"));
        let audit_log = dir.join("audit.jsonl");
        let listen = free_port();
        let stderr = File::create(&log).expect("creating the gateway log");
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .arg("--routes-from-cluster")
            .args(["--namespace", NAMESPACE])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .arg("--client-ca")
            .arg(dir.join("ca.crt"))
            .args(["--listen", &listen.to_string()])
            .arg("--audit-log")
            .arg(&audit_log)
            .args(["--checkpoint-seconds", "2", "--upstream-timeout-seconds", "10"]);
        for entry in resolve {
            command.args(["--resolve", entry]);
        }
        command.args(extra);
        let child = command
            .env("RUST_LOG", std::env::var("GOVPAAS_TEST_GATEWAY_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting govpaas-gateway");
        let mut process = GatewayProcess { child: Some(child), listen, audit_log, log };
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(listen).is_err() {
            assert!(process.is_running(), "the gateway exited:\n{}", process.log());
            assert!(Instant::now() < deadline, "the gateway did not listen within 90 s:\n{}", process.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        process
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the gateway gracefully (SIGTERM: requests finish, a last checkpoint is signed), or
    /// kills it after 40 s. Returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `govpaas-gateway audit verify` of the audit log against `certificates` (PEM files), whose
    /// signers must chain to the platform CA bundle `ca`.
    pub fn verify_audit(&self, certificates: &[&Path], ca: &Path) -> Output {
        let mut command = Command::new(gateway_binary());
        command.args(["audit", "verify", "--log"]).arg(&self.audit_log).arg("--ca").arg(ca);
        for certificate in certificates {
            command.arg("--certificate").arg(certificate);
        }
        command.output().expect("running govpaas-gateway audit verify")
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- govpaas-gateway log ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
}

//! Installing govpaas on the local control plane as a platform engineer would — the Helm chart — and
//! running the operator as a local process with the credentials the chart grants it (kwok runs no
//! containers). Shared by `cargo xtask demo` and the end-to-end tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::paths;
use crate::tools::Tools;

/// The Helm release, its namespace (the operator's) and the operator's ServiceAccount.
pub const RELEASE: &str = "govpaas";
pub const NAMESPACE: &str = "govpaas-system";
pub const SERVICE_ACCOUNT: &str = "govpaas-operator";

/// Runs a tool, failing with its output when it fails; returns stdout.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("{what}: could not start"))?;
    if !out.status.success() {
        bail!("{what} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn kubectl(tools: &Tools, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(&tools.kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig);
    cmd
}

/// Whether `helm upgrade --install` waits for the release's Pods to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `--wait --timeout 3m`.
    Ready,
    /// Returns once the objects are written (the caller waits for what it needs).
    No,
}

/// `helm upgrade --install` of `charts/govpaas` with `values` (`--set`/`-f` arguments). The CRDs are
/// applied first, server-side: Helm installs a chart's `crds/` on the first install only.
pub fn install_chart(tools: &Tools, kubeconfig: &Path, values: &[&str], wait: Wait) -> Result<()> {
    let chart = paths::workspace_root().join("charts").join("govpaas");
    run(
        kubectl(tools, kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "--field-manager=govpaas-install", "-f"])
            .arg(chart.join("crds")),
        "applying the CRDs",
    )?;
    let crds: Vec<String> = fs::read_dir(chart.join("crds"))?
        .filter_map(|entry| entry.ok()?.path().file_stem()?.to_str().map(|name| format!("crd/{name}")))
        .collect();
    run(
        kubectl(tools, kubeconfig).args(["wait", "--for=condition=Established", "--timeout=60s"]).args(&crds),
        "waiting for the CRDs to be established",
    )?;
    run(
        Command::new(&tools.helm)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["upgrade", "--install", RELEASE])
            .arg(&chart)
            // Exactly `values` over the chart's defaults: with no values given, Helm would reuse the
            // last release's (a real-node demo's placement and images).
            .args(["--namespace", NAMESPACE, "--create-namespace", "--history-max", "5", "--reset-values"])
            .args(if wait == Wait::Ready { &["--wait", "--timeout", "3m"][..] } else { &[] })
            .args(values),
        "helm upgrade --install",
    )?;
    Ok(())
}

/// A kubeconfig at `dest` holding a token of the operator's ServiceAccount (server and CA from the
/// admin kubeconfig), so the operator runs with exactly the chart's RBAC.
pub fn operator_kubeconfig(tools: &Tools, admin: &Path, dest: &Path, duration: &str) -> Result<()> {
    let token = run(
        kubectl(tools, admin).args([
            "create",
            "token",
            SERVICE_ACCOUNT,
            "-n",
            NAMESPACE,
            &format!("--duration={duration}"),
        ]),
        "minting the operator's token",
    )?;
    let server = run(
        kubectl(tools, admin).args(["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]),
        "reading the server",
    )?;
    let ca = run(
        kubectl(tools, admin).args([
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ]),
        "reading the CA",
    )?;
    fs::write(
        dest,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: govpaas-local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {SERVICE_ACCOUNT}\n  user:\n    token: {token}\ncontexts:\n- name: operator\n  context:\n    cluster: govpaas-local\n    user: {SERVICE_ACCOUNT}\ncurrent-context: operator\n",
            token = token.trim()
        ),
    )?;
    Ok(())
}

/// A cargo profile to build govpaas's binaries with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The directory cargo puts this profile's binaries in.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Builds the `govpaas-gateway` binary the way [`build_operator`] builds the operator: in a target
/// directory of its own (`target/gateway`), so that it never waits on, nor invalidates, the test
/// build's lock and artefacts. Returns the binary's path.
pub fn build_gateway() -> Result<PathBuf> {
    build_binary("govpaas-gateway", "gateway", Profile::Debug)
}

/// Builds `govpaas-operator` (a no-op when fresh) and returns the binary.
///
/// It gets a target directory of its own (`target/operator`): `cargo build -p govpaas-operator`
/// resolves features for that package alone, and sharing `target/` with the workspace's test build
/// would recompile kube and its dependencies back and forth between the two.
pub fn build_operator() -> Result<PathBuf> {
    build_binary("govpaas-operator", "operator", Profile::Debug)
}

/// Builds the binary `package` (named as its package) in `target/<target_subdir>` with `profile` and
/// returns its path.
pub fn build_binary(package: &str, target_subdir: &str, profile: Profile) -> Result<PathBuf> {
    let root = paths::workspace_root();
    let target = paths::target_dir().join(target_subdir);
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", package, "--bin", package, "--target-dir"]).arg(&target);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    let status = cargo.current_dir(&root).status().context("running cargo build")?;
    if !status.success() {
        bail!("building {package} failed");
    }
    Ok(target.join(profile.dir()).join(package))
}

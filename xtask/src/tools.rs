//! The control plane's binaries, and umoci for the images, built from their published Go modules at
//! pinned versions and cached under `$HOME` keyed by version, so a second run builds nothing.
//!
//! `k8s.io/kubernetes` is not meant to be required as a module: its `go.mod` points every `k8s.io/*`
//! staging module at a directory inside its own tree. We build it from a small helper module that requires
//! it and replaces each staging module with the matching published `v0.x.y` release, as projects that
//! embed the scheduler do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

/// The newest Kubernetes release whose API k8s-openapi 0.29 supports (its `latest` feature is `v1_37`).
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// The staging modules (`k8s.io/api`, `k8s.io/client-go`, …) published for that release.
pub const KUBERNETES_STAGING_VERSION: &str = "v0.37.2";
/// Kubernetes 1.37 is built against the etcd 3.7 client.
pub const ETCD_VERSION: &str = "v3.7.3";
pub const KWOK_VERSION: &str = "v0.8.0";
pub const HELM_VERSION: &str = "v3.22.0";
/// Builds the OCI images (`cargo xtask images`): the first release that clamps timestamps to
/// `SOURCE_DATE_EPOCH`, which reproducible digests need.
pub const UMOCI_VERSION: &str = "v0.6.0";
/// The real node's cluster DNS, run as a Pod from an image built here (`cluster::node`).
pub const COREDNS_VERSION: &str = "v1.14.7";
/// The real node's NetworkPolicy implementation: kube-router's firewall alone (iptables and ipset), run
/// beside the kubelet. docs/development.md says why this one.
pub const KUBE_ROUTER_VERSION: &str = "v2.10.0";
/// The gateway benchmark's load generator (`cargo xtask bench gateway`): HTTP/1.1 over TLS with a
/// client certificate, keep-alive or not, at a fixed rate or as fast as it can.
pub const VEGETA_VERSION: &str = "v12.12.0";

/// One helper module to build: a Go module at a version and the binaries to build from it.
struct GoBuild {
    name: &'static str,
    module: &'static str,
    version: &'static str,
    /// (package path, binary name)
    binaries: &'static [(&'static str, &'static str)],
    /// Linker flags that stamp the version the binaries report (Helm checks a chart's kubeVersion
    /// against the server's, so the API server must not report `v0.0.0-master`).
    ldflags: fn() -> String,
    /// Replace k8s.io/kubernetes's staging modules with their published releases.
    replace_staging: bool,
    /// Dependencies pinned to another release: (module, version). For a pseudo-version the module proxy
    /// here does not serve.
    replace: &'static [(&'static str, &'static str)],
}

const KUBERNETES: GoBuild = GoBuild {
    name: "kubernetes",
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    binaries: &[
        ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
        ("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
        ("k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
        ("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
    ],
    ldflags: kubernetes_ldflags,
    replace_staging: true,
    replace: &[],
};

/// The real node's kubelet and kube-proxy, from the same module and release as the control plane; a
/// tool directory of their own, so that a kwok-only machine never builds them.
const KUBERNETES_NODE: GoBuild = GoBuild {
    name: "kubernetes-node",
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    binaries: &[("k8s.io/kubernetes/cmd/kubelet", "kubelet"), ("k8s.io/kubernetes/cmd/kube-proxy", "kube-proxy")],
    ldflags: kubernetes_ldflags,
    replace_staging: true,
    replace: &[],
};

const COREDNS: GoBuild = GoBuild {
    name: "coredns",
    module: "github.com/coredns/coredns",
    version: COREDNS_VERSION,
    binaries: &[("github.com/coredns/coredns", "coredns")],
    ldflags: String::new,
    replace_staging: false,
    replace: &[],
};

const KUBE_ROUTER: GoBuild = GoBuild {
    name: "kube-router",
    module: "github.com/cloudnativelabs/kube-router/v2",
    version: KUBE_ROUTER_VERSION,
    binaries: &[("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router", "kube-router")],
    ldflags: || format!("-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version={KUBE_ROUTER_VERSION}"),
    replace_staging: false,
    // v2.10.0 requires a netlink pseudo-version that the module proxy reachable here does not serve; the
    // release before it builds kube-router, and the real-node tests prove its firewall.
    replace: &[("github.com/vishvananda/netlink", "v1.3.1")],
};

const ETCD: GoBuild = GoBuild {
    name: "etcd",
    module: "go.etcd.io/etcd/server/v3",
    version: ETCD_VERSION,
    binaries: &[("go.etcd.io/etcd/server/v3", "etcd")],
    ldflags: || format!("-X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}"),
    replace_staging: false,
    replace: &[],
};

const KWOK: GoBuild = GoBuild {
    name: "kwok",
    module: "sigs.k8s.io/kwok",
    version: KWOK_VERSION,
    binaries: &[("sigs.k8s.io/kwok/cmd/kwok", "kwok")],
    ldflags: || format!("-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}"),
    replace_staging: false,
    replace: &[],
};

const HELM: GoBuild = GoBuild {
    name: "helm",
    module: "helm.sh/helm/v3",
    version: HELM_VERSION,
    binaries: &[("helm.sh/helm/v3/cmd/helm", "helm")],
    ldflags: || format!("-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"),
    replace_staging: false,
    replace: &[],
};

const UMOCI: GoBuild = GoBuild {
    name: "umoci",
    module: "github.com/opencontainers/umoci",
    version: UMOCI_VERSION,
    binaries: &[("github.com/opencontainers/umoci/cmd/umoci", "umoci")],
    // umoci embeds its version from the module's VERSION file.
    ldflags: String::new,
    replace_staging: false,
    replace: &[],
};

const VEGETA: GoBuild = GoBuild {
    name: "vegeta",
    module: "github.com/tsenart/vegeta/v12",
    version: VEGETA_VERSION,
    binaries: &[("github.com/tsenart/vegeta/v12", "vegeta")],
    ldflags: || format!("-X main.Version={VEGETA_VERSION}"),
    replace_staging: false,
    replace: &[],
};

fn kubernetes_ldflags() -> String {
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or("0");
    ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
        .iter()
        .map(|pkg| {
            format!(
                "-X {pkg}.gitVersion={KUBERNETES_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
                 -X {pkg}.gitTreeState=clean -X {pkg}.buildDate=1970-01-01T00:00:00Z"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Paths of every binary the local control plane uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub kwok: PathBuf,
    pub helm: PathBuf,
    /// kwok's node and pod lifecycle stages, taken from the kwok module at the pinned version.
    pub kwok_stages: PathBuf,
}

impl Tools {
    /// The directories holding the binaries, for `PATH`.
    pub fn bin_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.kubectl, &self.helm, &self.etcd, &self.kwok]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.dedup();
        dirs
    }
}

fn tool_dir(build: &GoBuild) -> PathBuf {
    paths::cache_dir().join("tools").join(format!("{}-{}", build.name, build.version))
}

/// The tools, from the cache when present: nothing is built or downloaded then.
pub fn cached() -> Option<Tools> {
    let all = [&KUBERNETES, &ETCD, &KWOK, &HELM];
    if all.iter().all(|b| tool_dir(b).join(".complete").exists()) { Some(tools_at()) } else { None }
}

fn tools_at() -> Tools {
    let k = tool_dir(&KUBERNETES);
    Tools {
        etcd: tool_dir(&ETCD).join("etcd"),
        kube_apiserver: k.join("kube-apiserver"),
        kube_controller_manager: k.join("kube-controller-manager"),
        kube_scheduler: k.join("kube-scheduler"),
        kubectl: k.join("kubectl"),
        kwok: tool_dir(&KWOK).join("kwok"),
        helm: tool_dir(&HELM).join("helm"),
        kwok_stages: tool_dir(&KWOK).join("stages.yaml"),
    }
}

/// Builds whatever is missing from the cache (minutes, once per machine) and returns the tools.
pub fn ensure() -> Result<Tools> {
    for build in [&ETCD, &KUBERNETES, &KWOK, &HELM] {
        ensure_built(build)?;
    }
    let tools = tools_at();
    if !tools.kwok_stages.exists() {
        write_kwok_stages(&tools.kwok_stages)?;
    }
    Ok(tools)
}

/// umoci, which turns a root filesystem into an OCI image (`cargo xtask images`); built once, like the
/// control plane's tools, but only when images are asked for.
pub fn umoci() -> Result<PathBuf> {
    ensure_built(&UMOCI)?;
    Ok(tool_dir(&UMOCI).join("umoci"))
}

/// vegeta, the gateway benchmark's load generator: built once, on first use.
pub fn vegeta() -> Result<PathBuf> {
    ensure_built(&VEGETA)?;
    Ok(tool_dir(&VEGETA).join("vegeta"))
}

/// What the real node runs besides the Debian packages (`cluster::node`): built once, on first use.
#[derive(Debug, Clone)]
pub struct NodeTools {
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub coredns: PathBuf,
    pub kube_router: PathBuf,
}

pub fn node_tools() -> Result<NodeTools> {
    for build in [&KUBERNETES_NODE, &COREDNS, &KUBE_ROUTER] {
        ensure_built(build)?;
    }
    let k = tool_dir(&KUBERNETES_NODE);
    Ok(NodeTools {
        kubelet: k.join("kubelet"),
        kube_proxy: k.join("kube-proxy"),
        coredns: tool_dir(&COREDNS).join("coredns"),
        kube_router: tool_dir(&KUBE_ROUTER).join("kube-router"),
    })
}

fn go() -> Command {
    let mut cmd = Command::new("go");
    // A module that needs a newer Go than the machine's gets it through the module proxy.
    cmd.env("GOTOOLCHAIN", "auto").env("GOFLAGS", "-buildvcs=false").env("CGO_ENABLED", "0");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: could not start `go` (is Go installed and on PATH?)"))?;
    if !out.status.success() {
        bail!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_built(build: &GoBuild) -> Result<()> {
    let out_dir = tool_dir(build);
    if out_dir.join(".complete").exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: building {} {} from its Go module (once per machine; cached in {})",
        build.name,
        build.version,
        out_dir.display()
    );
    let src = paths::cache_dir().join("build").join(format!("{}-{}", build.name, build.version));
    fs::create_dir_all(&src)?;
    fs::create_dir_all(&out_dir)?;

    let mut go_mod = format!(
        "// Generated by `cargo xtask`: a helper module that builds {} {}.\nmodule govpaas.local/build/{}\n\ngo 1.26.0\n\nrequire {} {}\n",
        build.module, build.version, build.name, build.module, build.version
    );
    if build.replace_staging {
        go_mod.push_str(&staging_replacements(build)?);
    }
    for (module, version) in build.replace {
        go_mod.push_str(&format!("\nreplace {module} => {module} {version}\n"));
    }
    fs::write(src.join("go.mod"), go_mod)?;
    let imports: String = build.binaries.iter().map(|(pkg, _)| format!("\t_ \"{pkg}\"\n")).collect();
    fs::write(
        src.join("tools.go"),
        format!(
            "//go:build tools\n\n// Records the binaries' packages so that `go mod tidy` keeps their dependencies.\npackage tools\n\nimport (\n{imports})\n"
        ),
    )?;
    run(go().arg("mod").arg("tidy").current_dir(&src), &format!("go mod tidy for {}", build.name))?;
    for (pkg, bin) in build.binaries {
        eprintln!("xtask:   go build {bin}");
        run(
            go().args(["build", "-trimpath", "-ldflags", &(build.ldflags)(), "-o"])
                .arg(out_dir.join(bin))
                .arg(pkg)
                .current_dir(&src),
            &format!("go build {pkg}"),
        )?;
    }
    fs::write(out_dir.join(".complete"), format!("{} {}\n", build.module, build.version))?;
    Ok(())
}

/// A `replace` block pointing each staging module that k8s.io/kubernetes replaces at its release.
fn staging_replacements(build: &GoBuild) -> Result<String> {
    let json = run(
        go().args(["mod", "download", "-json"]).arg(format!("{}@{}", build.module, build.version)),
        "go mod download k8s.io/kubernetes",
    )?;
    let info: serde_json::Value = serde_json::from_str(&json).context("parsing `go mod download -json`")?;
    let go_mod_path = info["GoMod"].as_str().context("`go mod download` gave no GoMod path")?;
    let upstream = fs::read_to_string(go_mod_path)?;
    let staging = staging_modules(&upstream);
    if staging.is_empty() {
        bail!("found no staging replacements in {go_mod_path}");
    }
    let mut block = String::from("\nreplace (\n");
    for module in staging {
        block.push_str(&format!("\t{module} => {module} {KUBERNETES_STAGING_VERSION}\n"));
    }
    block.push_str(")\n");
    Ok(block)
}

/// The modules that a go.mod's `replace` block maps onto `./staging/...` directories.
fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|line| {
            let (module, target) = line.trim().split_once("=>")?;
            target.trim().starts_with("./staging/").then(|| module.trim().to_string())
        })
        .collect()
}

/// kwok runs no stage unless told: nodes become Ready and keep a heartbeat lease (else the node
/// lifecycle controller would taint them and evict every Pod), Pods become Running and Ready, and
/// deleted Pods go away. The stage definitions ship in the kwok module we built from.
fn write_kwok_stages(dest: &Path) -> Result<()> {
    let json = run(
        go().args(["mod", "download", "-json"]).arg(format!("{}@{}", KWOK.module, KWOK.version)),
        "go mod download sigs.k8s.io/kwok",
    )?;
    let info: serde_json::Value = serde_json::from_str(&json)?;
    let dir = PathBuf::from(info["Dir"].as_str().context("`go mod download` gave no Dir")?);
    let stages = dir.join("kustomize").join("stage");
    let files = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ];
    // Spelled out: kwok applies its documented defaults only on some paths, and a zero parallelism is fatal.
    let mut docs = vec![
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  podPlayStageParallelism: 4\n  \
         nodePlayStageParallelism: 4\n  nodeLeaseParallelism: 4\n  podsOnNodeSyncParallelism: 1\n  \
         enablePodsOnNodeSyncListPager: true\n  enablePodsOnNodeSyncStreamWatch: false"
            .to_string(),
    ];
    for file in files {
        let text = fs::read_to_string(stages.join(file)).with_context(|| format!("reading kwok stage {file}"))?;
        docs.push(text.trim_end().to_string());
    }
    let out = docs.join("\n---\n") + "\n";
    fs::write(dest, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_staging_modules_in_a_replace_block() {
        let go_mod = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";
        assert_eq!(staging_modules(go_mod), vec!["k8s.io/api", "k8s.io/client-go"]);
    }

    #[test]
    fn kubernetes_binaries_report_the_pinned_version() {
        let flags = kubernetes_ldflags();
        assert!(flags.contains("k8s.io/component-base/version.gitVersion=v1.37.2"));
        assert!(flags.contains("k8s.io/client-go/pkg/version.gitMinor=37"));
    }
}

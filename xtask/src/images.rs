//! `cargo xtask images`: govpaas's images — the operator, the LGSP gateway, and the pause image a real
//! node's Pod sandboxes need — as OCI image archives, built on this machine without a container daemon
//! or a registry.
//!
//! Each image is one layer holding a root filesystem assembled here: the binary, the dynamic loader and
//! the shared libraries `ldd` names, and for the non-root user its /etc/passwd and /etc/group lines (plus
//! /etc/nsswitch.conf, so that names resolve from /etc/hosts before DNS, as in any distribution). umoci,
//! pinned and built from its Go module ([`crate::tools::umoci`]), turns that directory into a layer and an
//! image in an OCI image layout, and GNU tar packs the layout into one archive. Timestamps are clamped to
//! `SOURCE_DATE_EPOCH` (0 unless set), entries sorted, owners numeric: the same binaries give the same
//! digests.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::install::{self, Profile, run};
use crate::{paths, tools};

/// The registry part of every image name. `.local` is reserved for local names (RFC 6762): no public
/// registry answers to it, so a node never pulls a stranger's image under this name.
pub const REGISTRY: &str = "govpaas.local";
/// Every image's tag: the workspace's version, which is also the chart's appVersion (a test checks).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The `org.opencontainers.image.source` label.
pub const SOURCE: &str = "https://github.com/govpaas/govpaas";
/// The user and group the operator and the gateway run as: the chart's `runAsUser`/`runAsGroup`.
pub const NONROOT: u32 = 65532;
/// The pause image's user, as Kubernetes' own pause image.
pub const PAUSE_USER: u32 = 65535;

/// The full name of one of the images: `govpaas.local/<name>:<version>`.
pub fn reference(name: &str) -> String {
    tagged(name, VERSION)
}

fn tagged(name: &str, tag: &str) -> String {
    format!("{REGISTRY}/{name}:{tag}")
}

/// The agency workload image (`dist/echo`): what Portals, DocumentServices and the APIs of tests and the
/// demo run on a real node.
pub const ECHO: &str = "agency-echo";
/// The real node's cluster DNS, tagged with its upstream version.
pub const COREDNS: &str = "coredns";

pub fn coredns_reference() -> String {
    tagged(COREDNS, tools::COREDNS_VERSION)
}

/// What goes into one image.
struct Recipe {
    /// The repository under [`REGISTRY`], also the archive's name.
    name: &'static str,
    /// The tag: the workspace's version for govpaas's own images, the upstream's for the node add-ons.
    tag: &'static str,
    /// The binary on this machine.
    binary: PathBuf,
    /// Where the binary lives in the image; the image's entrypoint.
    entrypoint: String,
    user: u32,
    /// Write /etc/passwd and /etc/group lines for `user` (the pause binary never looks a user up).
    accounts: bool,
}

/// One image written by [`build`].
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
    /// The manifest's digest: what a registry reports once the archive is pushed as it is.
    pub digest: String,
    /// The archive's size in bytes.
    pub size: u64,
}

/// `cargo xtask images`: builds the three images into `out` (default `target/images`) and prints each
/// one's name, digest, size and archive.
pub fn run_task(profile: Profile, out: Option<PathBuf>) -> Result<()> {
    let out = out.unwrap_or_else(|| paths::target_dir().join("images"));
    for image in build(profile, &out)? {
        println!(
            "{}  {}  {:.1} MiB  {}",
            image.reference,
            image.digest,
            image.size as f64 / (1024.0 * 1024.0),
            image.archive.display()
        );
    }
    Ok(())
}

/// Builds the binaries with `profile` (the pause program always with gcc), then the images, into `out`.
pub fn build(profile: Profile, out: &Path) -> Result<Vec<Image>> {
    let umoci = tools::umoci()?;
    let work = out.join(".work");
    if work.exists() {
        // What an interrupted run left.
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let recipes = [
        service("govpaas-operator", install::build_binary("govpaas-operator", "operator", profile)?),
        service("govpaas-gateway", install::build_binary("govpaas-gateway", "gateway", profile)?),
        pause(&work)?,
        echo(&work)?,
    ];
    let images = recipes.iter().map(|recipe| build_image(&umoci, recipe, out)).collect::<Result<Vec<_>>>()?;
    fs::remove_dir_all(&work)?;
    Ok(images)
}

/// What a real node needs before any of govpaas runs on it: the pause image, the agency workload image,
/// and CoreDNS (a static Go binary built by [`tools::node_tools`]).
pub fn build_node_images(node: &tools::NodeTools, out: &Path) -> Result<Vec<Image>> {
    let umoci = tools::umoci()?;
    let work = out.join(".work-node");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let recipes = [
        pause(&work)?,
        echo(&work)?,
        Recipe {
            name: COREDNS,
            tag: tools::COREDNS_VERSION,
            binary: node.coredns.clone(),
            entrypoint: "/coredns".into(),
            user: NONROOT,
            accounts: true,
        },
    ];
    let images = recipes.iter().map(|recipe| build_image(&umoci, recipe, out)).collect::<Result<Vec<_>>>()?;
    fs::remove_dir_all(&work)?;
    Ok(images)
}

fn pause(work: &Path) -> Result<Recipe> {
    Ok(Recipe {
        name: "pause",
        tag: VERSION,
        binary: build_pause(work)?,
        entrypoint: "/pause".into(),
        user: PAUSE_USER,
        accounts: false,
    })
}

fn echo(work: &Path) -> Result<Recipe> {
    Ok(Recipe {
        name: ECHO,
        tag: VERSION,
        binary: build_echo(work)?,
        entrypoint: "/usr/local/bin/agency-echo".into(),
        user: NONROOT,
        accounts: true,
    })
}

/// The agency workload program, `go build` of `dist/echo` (standard library only, static).
fn build_echo(work: &Path) -> Result<PathBuf> {
    let source = paths::workspace_root().join("dist").join("echo");
    let binary = work.join("agency-echo-program");
    run(
        Command::new("go")
            .args(["build", "-trimpath", &format!("-ldflags=-s -w -X main.version={VERSION}"), "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-buildvcs=false")
            .env("GOTOOLCHAIN", "auto"),
        "building the agency workload program (go build in dist/echo)",
    )?;
    Ok(binary)
}

/// The operator or the gateway: its binary in /usr/local/bin, run as the non-root user.
fn service(name: &'static str, binary: PathBuf) -> Recipe {
    Recipe { name, tag: VERSION, binary, entrypoint: format!("/usr/local/bin/{name}"), user: NONROOT, accounts: true }
}

/// The pause program, compiled static from `dist/pause/pause.c` into `work`.
fn build_pause(work: &Path) -> Result<PathBuf> {
    let source = paths::workspace_root().join("dist").join("pause").join("pause.c");
    // Beside, not in, the image's own work directory (`.work/pause`).
    let binary = work.join("pause-program");
    run(
        Command::new("gcc")
            .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-DVERSION=\"{VERSION}\""))
            .arg("-o")
            .arg(&binary)
            .arg(&source),
        "compiling the pause program (gcc -static; needs gcc and the static C library, Debian's libc6-dev)",
    )?;
    Ok(binary)
}

fn build_image(umoci: &Path, recipe: &Recipe, out: &Path) -> Result<Image> {
    let work = out.join(".work").join(recipe.name);
    let rootfs = work.join("rootfs");
    assemble_rootfs(recipe, &rootfs)?;
    let layout = work.join("layout");
    let reference = tagged(recipe.name, recipe.tag);
    make_image(umoci, recipe, &rootfs, &layout, &reference)?;
    // Packed beside the layout and then renamed: an interrupted run leaves no half archive behind.
    let packed = work.join("image.oci.tar");
    pack_layout(&layout, &packed)?;
    let archive = out.join(format!("{}.oci.tar", recipe.name));
    fs::rename(&packed, &archive)?;
    let digest = manifest_digest(&layout)?;
    fs::remove_dir_all(&work)?;
    let size = fs::metadata(&archive)?.len();
    Ok(Image { reference, archive, digest, size })
}

/// The image's root filesystem: the binary at its entrypoint, the loader and libraries it links, the
/// accounts. Modes are set explicitly so the layer does not depend on the umask.
fn assemble_rootfs(recipe: &Recipe, rootfs: &Path) -> Result<()> {
    create_dir(rootfs)?;
    install_file(&recipe.binary, &rootfs.join(recipe.entrypoint.trim_start_matches('/')), 0o755)?;
    for library in shared_libraries(&recipe.binary)? {
        install_file(&library, &rootfs.join(library.strip_prefix("/").unwrap_or(&library)), 0o755)?;
    }
    if recipe.accounts {
        let etc = rootfs.join("etc");
        write_file(&etc.join("passwd"), &format!("nonroot:x:{0}:{0}:nonroot:/:/sbin/nologin\n", recipe.user))?;
        write_file(&etc.join("group"), &format!("nonroot:x:{}:\n", recipe.user))?;
        // glibc's default without this file asks DNS before /etc/hosts (the kubelet's hostAliases).
        write_file(&etc.join("nsswitch.conf"), "hosts: files dns\n")?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Copies `from` (its content, through symlinks) to `to`, creating the directories on the way.
fn install_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let mut parents: Vec<&Path> = to.ancestors().skip(1).take_while(|dir| !dir.exists()).collect();
    parents.reverse();
    for dir in parents {
        create_dir(dir)?;
    }
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The files the dynamic loader maps for `binary`, as `ldd` reports them; none for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    // As the loader resolves them with the system's configuration alone (cargo run sets a search path).
    let out = Command::new("ldd").arg(binary).env_remove("LD_LIBRARY_PATH").output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd fails on a static binary, saying so.
        if String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
            || text.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// The paths in `ldd`'s output: `name => /path (0x…)` and the loader's `/path (0x…)`. The vDSO has no
/// file; a library `not found` is an error (the image would not start).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        let target = line.split_once("=>").map_or(line, |(_, target)| target.trim());
        if target.starts_with("not found") {
            bail!("a shared library is missing: {line}");
        }
        let path = target.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// The `SOURCE_DATE_EPOCH` every timestamp is clamped to: the environment's, else 0 (1970-01-01).
fn source_date_epoch() -> Result<String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => {
            value.parse::<u64>().with_context(|| format!("SOURCE_DATE_EPOCH={value} is not a number of seconds"))?;
            Ok(value)
        }
        Err(_) => Ok("0".into()),
    }
}

/// umoci: an empty image, the root filesystem as its one layer, then the config. One history entry, for
/// the layer (tools that pair history with layers expect it); the config change adds none.
fn make_image(umoci: &Path, recipe: &Recipe, rootfs: &Path, layout: &Path, reference: &str) -> Result<()> {
    let epoch = source_date_epoch()?;
    let tool = |args: &[&str], what: &str| -> Result<()> {
        run(Command::new(umoci).args(["--log", "error"]).args(args).env("SOURCE_DATE_EPOCH", &epoch), what)?;
        Ok(())
    };
    let layout_str = layout.to_str().context("a UTF-8 path")?;
    let image = format!("{layout_str}:{reference}");
    tool(&["init", "--layout", layout_str], "umoci init")?;
    tool(&["new", "--image", &image], "umoci new")?;
    // We made every file, so its owner is us: mapped to root in the layer, whoever runs this.
    let owner = fs::metadata(rootfs)?;
    let (uid_map, gid_map) = (format!("0:{}:1", owner.uid()), format!("0:{}:1", owner.gid()));
    let created_by = format!("cargo xtask images: {} {VERSION}", recipe.name);
    let rootfs_str = rootfs.to_str().context("a UTF-8 path")?;
    tool(
        &[
            "insert",
            "--image",
            &image,
            "--uid-map",
            &uid_map,
            "--gid-map",
            &gid_map,
            "--history.created_by",
            &created_by,
            rootfs_str,
            ".",
        ],
        "umoci insert",
    )?;
    let user = format!("{0}:{0}", recipe.user);
    let labels = [
        format!("org.opencontainers.image.title={}", recipe.name),
        format!("org.opencontainers.image.version={VERSION}"),
        format!("org.opencontainers.image.source={SOURCE}"),
    ];
    let mut config = vec![
        "config",
        "--image",
        &image,
        "--no-history",
        "--config.user",
        &user,
        "--config.entrypoint",
        &recipe.entrypoint,
        "--config.workingdir",
        "/",
    ];
    for label in &labels {
        config.extend(["--config.label", label]);
    }
    tool(&config, "umoci config")?;
    // `new` and `insert` left manifests and configs that nothing refers to any more.
    tool(&["gc", "--layout", layout_str], "umoci gc")?;
    Ok(())
}

/// Packs an OCI image layout into an archive (`oci-archive:` to skopeo, `podman load`, `ctr images
/// import`) with GNU tar, byte for byte the same for the same layout.
fn pack_layout(layout: &Path, archive: &Path) -> Result<()> {
    let epoch = source_date_epoch()?;
    run(
        Command::new("tar")
            .args(["--create", "--format=ustar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{epoch}"))
            .args(["--mode=u=rwX,go=rX", "--file"])
            .arg(archive)
            .arg("--directory")
            .arg(layout)
            .args(["oci-layout", "index.json", "blobs"]),
        "packing the OCI layout (GNU tar)",
    )?;
    Ok(())
}

/// The digest of the one manifest in a layout's index.
fn manifest_digest(layout: &Path) -> Result<String> {
    let index: serde_json::Value = serde_json::from_str(&fs::read_to_string(layout.join("index.json"))?)?;
    let manifests = index["manifests"].as_array().context("index.json has no manifests")?;
    if manifests.len() != 1 {
        bail!("index.json lists {} manifests, expected one", manifests.len());
    }
    Ok(manifests[0]["digest"].as_str().context("a manifest without a digest")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_loader_and_the_libraries_but_not_the_vdso() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd6b5f2000)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e1c000000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1be00000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c9d0000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let text = "\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n";
        assert!(parse_ldd(text).unwrap_err().to_string().contains("libfoo.so.1"));
    }

    #[test]
    fn a_static_pie_has_no_libraries() {
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn image_names_are_local_and_tagged_with_the_version() {
        assert_eq!(reference("govpaas-operator"), format!("govpaas.local/govpaas-operator:{VERSION}"));
    }

    fn chart_file(name: &str) -> serde_yaml::Value {
        let path = paths::workspace_root().join("charts").join("govpaas").join(name);
        serde_yaml::from_str(&fs::read_to_string(&path).expect("the chart's file")).expect("YAML")
    }

    /// `helm install` with the chart's defaults must find exactly the images `cargo xtask images` loads.
    #[test]
    fn the_charts_default_images_are_the_ones_built_here() {
        let chart = chart_file("Chart.yaml");
        assert_eq!(chart["appVersion"].as_str(), Some(VERSION), "the chart's appVersion is the images' tag");
        let values = chart_file("values.yaml");
        for (component, name) in [("operator", "govpaas-operator"), ("gateway", "govpaas-gateway")] {
            let image = &values[component]["image"];
            let tag = image["tag"].as_str().filter(|tag| !tag.is_empty()).unwrap_or(VERSION);
            let repository = image["repository"].as_str().expect("a repository");
            assert_eq!(format!("{repository}:{tag}"), reference(name), "{component}.image");
        }
    }
}

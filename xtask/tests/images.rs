//! `cargo xtask images --profile debug`: each archive is an OCI image layout whose index, manifest,
//! config and layer agree (digests, sizes, user, entrypoint, labels, one layer with its history entry),
//! and each image's root filesystem, unpacked by umoci, runs its binary under `chroot` as the image's
//! user: the loader and every shared library it needs are in the image, and nothing else is. A second
//! run gives the same digests. Debug
//! binaries keep it cheap: the suite has built them already (target/operator, target/gateway). Needs
//! root for `chroot`, as CI has; no control plane.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xtask::images::{NONROOT, PAUSE_USER, VERSION, reference};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What each image must be.
struct Expected {
    name: &'static str,
    user: u32,
    entrypoint: &'static str,
    /// A static binary: the image holds it and, for a named user, the account files, nothing else.
    is_static: bool,
}

const IMAGES: [Expected; 4] = [
    Expected {
        name: "govpaas-operator",
        user: NONROOT,
        entrypoint: "/usr/local/bin/govpaas-operator",
        is_static: false,
    },
    Expected { name: "govpaas-gateway", user: NONROOT, entrypoint: "/usr/local/bin/govpaas-gateway", is_static: false },
    Expected { name: "pause", user: PAUSE_USER, entrypoint: "/pause", is_static: true },
    Expected { name: "agency-echo", user: NONROOT, entrypoint: "/usr/local/bin/agency-echo", is_static: true },
];

#[test]
fn the_images_are_oci_archives_whose_binaries_run_from_their_own_root_filesystem() {
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(uid.trim(), "0", "this test runs the images' binaries under chroot, which needs root");
    let dir = xtask::paths::target_dir().join(format!("images-test-{}", std::process::id()));
    let out = dir.join("out");

    let images = || {
        let started = Instant::now();
        let printed = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["images", "--profile", "debug", "--out"])
            .arg(&out)
            .env_remove("SOURCE_DATE_EPOCH"));
        eprintln!("cargo xtask images --profile debug: {:.1} s", started.elapsed().as_secs_f64());
        printed
    };
    let printed = images();
    // Reproducible: a second run over the same binaries prints the same digests.
    assert_eq!(images(), printed, "the second run's digests differ");

    let umoci = xtask::tools::umoci().expect("umoci (built by `cargo xtask images`)");
    for expected in &IMAGES {
        let layout = dir.join(expected.name).join("layout");
        fs::create_dir_all(&layout).unwrap();
        run(Command::new("tar").arg("-xf").arg(out.join(format!("{}.oci.tar", expected.name))).arg("-C").arg(&layout));
        let digest = check_layout(&layout, expected);
        assert!(
            printed.contains(&format!("{}  {digest}", reference(expected.name))),
            "`cargo xtask images` prints each image's name and manifest digest:\n{printed}"
        );

        let bundle = dir.join(expected.name).join("bundle");
        run(Command::new(&umoci)
            .args(["--log", "error", "unpack", "--image"])
            .arg(format!("{}:{}", layout.display(), reference(expected.name)))
            .arg(&bundle));
        // umoci's runtime configuration, as a runtime gets it from the image: the user, the entrypoint.
        let process = &json(&bundle.join("config.json"))["process"];
        assert_eq!(process["user"]["uid"].as_u64(), Some(expected.user.into()), "{}", expected.name);
        assert_eq!(process["user"]["gid"].as_u64(), Some(expected.user.into()), "{}", expected.name);
        assert_eq!(process["args"], serde_json::json!([expected.entrypoint]), "{}", expected.name);
        let rootfs = bundle.join("rootfs");
        check_only_runtime_files(&rootfs, expected);
        if expected.name == "pause" {
            check_pause_runs_until_terminated(&rootfs, expected);
        } else {
            let version = run(chroot(&rootfs, expected).arg("--version"));
            assert_eq!(version.trim(), format!("{} {VERSION}", expected.name), "{}: --version", expected.name);
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// Checks the layout from index to layer; returns the manifest's digest.
fn check_layout(layout: &Path, expected: &Expected) -> String {
    let name = expected.name;
    assert_eq!(json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    check_blob_digests(layout);

    let index = json(&layout.join("index.json"));
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{name}: one image in the archive");
    let descriptor = &manifests[0];
    assert_eq!(descriptor["annotations"]["org.opencontainers.image.ref.name"], reference(name).as_str());
    let manifest = check_descriptor(layout, descriptor, "application/vnd.oci.image.manifest.v1+json");

    let config = check_descriptor(layout, &manifest["config"], "application/vnd.oci.image.config.v1+json");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{name}: one layer");
    let layer = layout.join(blob_path(&layers[0]));
    check_descriptor_size(&layer, &layers[0], "application/vnd.oci.image.layer.v1.tar+gzip");
    let diff_id = sha256(Command::new("gzip").arg("-dc").arg(&layer));
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([format!("sha256:{diff_id}")]), "{name}: diff_id");

    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));
    let user = format!("{0}:{0}", expected.user);
    assert_eq!(config["config"]["User"], user.as_str(), "{name}: non-root user");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!([expected.entrypoint]), "{name}: entrypoint");
    assert_eq!(config["config"]["WorkingDir"], "/");
    assert!(config["config"]["Cmd"].is_null(), "{name}: no default arguments: the chart passes them");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], name);
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.source"], xtask::images::SOURCE);
    let history = config["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{name}: one history entry, the layer's: {history:?}");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z", "{name}: SOURCE_DATE_EPOCH 0");
    descriptor["digest"].as_str().expect("a digest").to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())))
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn blob_path(descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    Path::new("blobs").join("sha256").join(hex)
}

/// The blob a descriptor names, its media type and size as the descriptor says, parsed.
fn check_descriptor(layout: &Path, descriptor: &Value, media_type: &str) -> Value {
    let path = layout.join(blob_path(descriptor));
    check_descriptor_size(&path, descriptor, media_type);
    let blob = json(&path);
    if blob.get("mediaType").is_some() {
        assert_eq!(blob["mediaType"], media_type);
    }
    blob
}

fn check_descriptor_size(path: &Path, descriptor: &Value, media_type: &str) {
    assert_eq!(descriptor["mediaType"], media_type);
    let size = fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).len();
    assert_eq!(descriptor["size"].as_u64(), Some(size), "{}: size", path.display());
}

/// Every blob's content hashes to its name.
fn check_blob_digests(layout: &Path) {
    let blobs = layout.join("blobs").join("sha256");
    for entry in fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256(Command::new("cat").arg(&path)), name, "blob {name}");
    }
}

/// The SHA-256 of what `source` writes, by `sha256sum`.
fn sha256(source: &mut Command) -> String {
    let mut source = source.stdout(Stdio::piped()).spawn().expect("spawning");
    let hashed = Command::new("sha256sum").stdin(source.stdout.take().unwrap()).output().expect("running sha256sum");
    assert!(source.wait().unwrap().success(), "{source:?}");
    String::from_utf8_lossy(&hashed.stdout).split_whitespace().next().expect("a hash").to_string()
}

/// The image holds its binary, the loader and the libraries, and the accounts files: no shell, no
/// package manager, nothing else.
fn check_only_runtime_files(rootfs: &Path, expected: &Expected) {
    let files = files_under(rootfs, rootfs);
    let allowed = |file: &String| {
        file == expected.entrypoint
            || ["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"].contains(&file.as_str())
            || file.starts_with("/lib/")
            || file.starts_with("/lib64/")
    };
    let stray: Vec<&String> = files.iter().filter(|file| !allowed(file)).collect();
    assert!(stray.is_empty(), "{}: files no runtime needs: {stray:?}", expected.name);
    assert!(files.contains(expected.entrypoint), "{}: {files:?}", expected.name);
    if expected.is_static {
        assert!(files.iter().all(|file| !file.contains(".so")), "{} is static: {files:?}", expected.name);
    } else {
        assert!(files.iter().any(|file| file.contains("libc.so")), "{}: {files:?}", expected.name);
    }
    if expected.user != PAUSE_USER {
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains(&format!(":{0}:{0}:", expected.user)), "{}: {passwd}", expected.name);
    }
}

fn files_under(root: &Path, dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(root, &path));
        } else {
            files.insert(format!("/{}", path.strip_prefix(root).unwrap().display()));
        }
    }
    files
}

/// The image's entrypoint, run in its root filesystem as its user.
fn chroot(rootfs: &Path, expected: &Expected) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(format!("--userspec={0}:{0}", expected.user)).arg(rootfs).arg(expected.entrypoint);
    // Nothing from this environment may help the binary find a library (cargo sets LD_LIBRARY_PATH).
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// pause stays up until SIGTERM, then exits 0.
fn check_pause_runs_until_terminated(rootfs: &Path, expected: &Expected) {
    let version = run(chroot(rootfs, expected).arg("-v"));
    assert_eq!(version.trim(), format!("pause (govpaas) {VERSION}"));
    let mut pause = chroot(rootfs, expected).stderr(Stdio::null()).spawn().expect("starting pause");
    std::thread::sleep(Duration::from_millis(300));
    assert!(pause.try_wait().unwrap().is_none(), "pause exited on its own");
    // chroot execs pause, so the child's pid is pause's.
    run(Command::new("kill").args(["-TERM", &pause.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = pause.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "pause ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "pause exits 0 on SIGTERM: {status:?}");
}

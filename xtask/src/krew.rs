//! `cargo xtask krew`: the kubectl plugin `kubectl-govpaas` packed as krew installs it — a
//! `.tar.gz` holding the binary — and the manifest of `dist/krew/govpaas.yaml` with that archive's
//! sha256, so `kubectl krew install --manifest … --archive …` installs it from this machine.
//! The archive is reproducible for the same binary (sorted, owners and times fixed, gzip without
//! a name or time).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::install::{self, Profile, run};
use crate::paths;

/// The plugin's binary, as kubectl looks it up on PATH.
pub const BINARY: &str = "kubectl-govpaas";
/// The archive of the one platform built here.
pub const ARCHIVE: &str = "kubectl-govpaas-linux-amd64.tar.gz";
/// The manifest template's placeholder checksum.
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn run_task(profile: Profile, out: Option<PathBuf>) -> Result<()> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!("the krew manifest names linux/amd64 only: build this on a linux/amd64 machine");
    }
    let out = out.unwrap_or_else(|| paths::target_dir().join("krew"));
    // The operator's target directory: the plugin shares its dependencies (k8s-openapi, govpaas-crds).
    let binary = install::build_binary(BINARY, "operator", profile)?;
    let archive = pack(&binary, &out)?;
    let sha256 = sha256(&archive)?;
    let template_path = paths::workspace_root().join("dist/krew/govpaas.yaml");
    let template =
        fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let manifest = out.join("govpaas.yaml");
    fs::write(&manifest, with_sha256(&template, &sha256)?)?;
    println!("{}  sha256 {sha256}", archive.display());
    println!("{}", manifest.display());
    println!("kubectl krew install --manifest={} --archive={}", manifest.display(), archive.display());
    Ok(())
}

/// `<out>/kubectl-govpaas-linux-amd64.tar.gz` holding `kubectl-govpaas`, mode 0755.
fn pack(binary: &Path, out: &Path) -> Result<PathBuf> {
    let work = out.join(".work");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let staged = work.join(BINARY);
    fs::copy(binary, &staged).with_context(|| format!("copying {}", binary.display()))?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))?;
    let tar = out.join(ARCHIVE.trim_end_matches(".gz"));
    run(
        Command::new("tar")
            .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=gnu", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&work)
            .arg(BINARY),
        "tar",
    )?;
    run(Command::new("gzip").args(["-n", "-9", "-f"]).arg(&tar), "gzip")?;
    fs::remove_dir_all(&work)?;
    Ok(out.join(ARCHIVE))
}

fn sha256(file: &Path) -> Result<String> {
    let out = run(Command::new("sha256sum").arg(file), "sha256sum")?;
    let digest = out.split_whitespace().next().unwrap_or_default().to_owned();
    if digest.len() != 64 {
        bail!("sha256sum printed {out:?}");
    }
    Ok(digest)
}

/// The manifest template with its placeholder checksum replaced by `sha256`.
pub fn with_sha256(template: &str, sha256: &str) -> Result<String> {
    if template.matches(PLACEHOLDER).count() != 1 {
        bail!("dist/krew/govpaas.yaml must hold the placeholder sha256 {PLACEHOLDER} exactly once");
    }
    Ok(template.replace(PLACEHOLDER, sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> String {
        fs::read_to_string(paths::workspace_root().join("dist/krew/govpaas.yaml")).unwrap()
    }

    #[test]
    fn the_manifest_names_this_version_and_the_binary_and_takes_the_checksum() {
        let template = template();
        let version = format!("version: v{}\n", env!("CARGO_PKG_VERSION"));
        assert!(template.contains(&version), "dist/krew/govpaas.yaml must say {version}");
        assert!(template.contains(&format!("/v{}/{ARCHIVE}\n", env!("CARGO_PKG_VERSION"))), "the release URI");
        assert!(template.contains(&format!("bin: {BINARY}\n")));
        let filled = with_sha256(&template, &"ab".repeat(32)).unwrap();
        assert!(filled.contains(&format!("sha256: \"{}\"", "ab".repeat(32))));
        assert!(with_sha256(&filled, &"cd".repeat(32)).is_err(), "no placeholder left to fill");
    }
}

//! `cargo xtask crds [--check]`: (re)generates the CRD YAML and the admission policies from the
//! Rust types in `crds/`, or, with `--check`, fails when the committed files differ (CI's drift
//! check).

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use govpaas_crds::generate::{self, CRD_DIR};

use crate::paths::workspace_root;

/// Writes every generated file under the workspace root and removes stale CRD files; with
/// `check`, writes nothing and fails listing the files that are missing, differ or are stale.
pub fn crds(check: bool) -> Result<()> {
    sync(&workspace_root(), check)
}

fn sync(root: &Path, check: bool) -> Result<()> {
    let files = generate::files().context("serializing the generated YAML")?;
    let mut drift = Vec::new();
    for file in &files {
        let path = root.join(&file.path);
        let current = fs::read_to_string(&path).ok();
        if current.as_deref() == Some(file.contents.as_str()) {
            continue;
        }
        drift.push(format!("{} ({})", file.path, if current.is_some() { "differs" } else { "missing" }));
        if !check {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    // A CRD file no kind generates any more is stale: it would install a kind nobody serves.
    let crd_dir = root.join(CRD_DIR);
    if crd_dir.is_dir() {
        for entry in fs::read_dir(&crd_dir)? {
            let entry = entry?;
            let relative = format!("{CRD_DIR}/{}", entry.file_name().to_string_lossy());
            if !files.iter().any(|f| f.path == relative) {
                drift.push(format!("{relative} (stale)"));
                if !check {
                    fs::remove_file(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
                }
            }
        }
    }
    if check && !drift.is_empty() {
        bail!("generated files are out of date; run `cargo xtask crds` and commit:\n  {}", drift.join("\n  "));
    }
    for line in &drift {
        println!("updated {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("govpaas-codegen-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generates_then_checks_clean_then_detects_drift() {
        let root = scratch("drift");
        assert!(sync(&root, true).is_err(), "missing files are drift");
        sync(&root, false).unwrap();
        sync(&root, true).unwrap();

        let tenant = root.join(CRD_DIR).join("tenants.govpaas.io.yaml");
        fs::write(&tenant, "edited by hand\n").unwrap();
        let stale = root.join(CRD_DIR).join("olds.govpaas.io.yaml");
        fs::write(&stale, "kind: CustomResourceDefinition\n").unwrap();
        let err = sync(&root, true).unwrap_err().to_string();
        assert!(err.contains("tenants.govpaas.io.yaml (differs)"), "{err}");
        assert!(err.contains("olds.govpaas.io.yaml (stale)"), "{err}");

        sync(&root, false).unwrap();
        assert!(!stale.exists());
        sync(&root, true).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    /// The committed chart files match the types: the same check CI runs.
    #[test]
    fn committed_files_are_current() {
        crds(true).unwrap();
    }
}

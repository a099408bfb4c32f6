//! Where things live: the workspace, the tool cache under `$HOME`, and the local cluster's state.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target` in this checkout.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// The cache of built tools, kept across checkouts: `$GOVPAAS_CACHE_DIR`, else `$HOME/.cache/govpaas`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GOVPAAS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("govpaas")
}

/// The local control plane's state (PKI, data, logs, process ids): `$GOVPAAS_CLUSTER_DIR`, else
/// `target/govpaas-cluster` in this checkout, so two checkouts never share a cluster by accident.
pub fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GOVPAAS_CLUSTER_DIR") {
        return PathBuf::from(dir);
    }
    workspace_root().join("target").join("govpaas-cluster")
}

//! Each controller writes exactly the condition types documented for its kind
//! (`govpaas_crds::conditions::{TENANT, PLATFORM, …}`, from which `kubectl explain` and
//! docs/conditions.md are generated): a condition written but undocumented, or documented but
//! written by nothing, fails here. Read from the source — the constants passed to
//! `Desired::holds`/`Desired::fails` in the controller's modules (comments and tests left out) —
//! a short check, not a compiler.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use source::{rust_files, source_dir};

use govpaas_crds::conditions::{self, Documented};

/// Each kind, its documented conditions, and the modules that write its status.
const KINDS: [(&str, &[Documented], &[&str]); 5] = [
    ("Tenant", conditions::TENANT, &["tenant"]),
    ("Platform", conditions::PLATFORM, &["trust"]),
    // The service pipeline writes `Ready` and a failed `CertificateReady` for the three service
    // kinds; the workload library the conditions both Deployment-backed kinds share.
    ("Portal", conditions::PORTAL, &["portal", "workload", "service"]),
    ("DocumentService", conditions::DOCUMENT_SERVICE, &["document", "workload", "service"]),
    ("DataSharingService", conditions::DATA_SHARING_SERVICE, &["data_sharing", "service"]),
];

/// The source of `file` without its `#[cfg(test)]` module and without comments.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The constant names of `govpaas_crds::conditions` (the condition types, not the reasons) and
/// their values.
fn condition_constants() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/src/conditions.rs");
    let text = fs::read_to_string(&path).expect("crds/src/conditions.rs");
    let types = text.split("pub mod reasons").next().unwrap_or_default();
    types
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| {
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name.to_owned(), value.strip_suffix("\";")?.to_owned()))
        })
        .collect()
}

/// The condition types written in `modules`: the first argument of every `Desired::holds(` and
/// `Desired::fails(`, resolved through the constants.
fn written(modules: &[&str], constants: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut types = BTreeSet::new();
    for module in modules {
        let source = source_dir().join(module);
        let path = if source.is_dir() { source } else { source.with_extension("rs") };
        for file in rust_files(&path) {
            let code = code(&file);
            for call in ["Desired::holds(", "Desired::fails("] {
                for (_, rest) in code.match_indices(call).map(|(at, _)| code.split_at(at + call.len())) {
                    let argument: String =
                        rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let value = constants.get(&argument).unwrap_or_else(|| {
                        panic!(
                            "{}: a condition type that is not a constant of govpaas_crds::conditions: {argument}",
                            file.display()
                        )
                    });
                    types.insert(value.clone());
                }
            }
        }
    }
    types
}

#[test]
fn every_controller_writes_exactly_the_conditions_documented_for_its_kind() {
    let constants = condition_constants();
    assert!(constants.contains_key("READY"), "{constants:?}");
    for (kind, documented, modules) in KINDS {
        let documented: BTreeSet<String> = documented.iter().map(|c| c.type_.to_owned()).collect();
        let written = written(modules, &constants);
        // The workload library's conditions belong to both kinds it serves; the kinds' own modules
        // add theirs.
        assert_eq!(written, documented, "{kind}: written by {modules:?} (left) against documented (right)");
    }
}

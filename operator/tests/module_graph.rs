//! The operator's module graph runs one way: controllers never import each other, libraries never
//! import a controller, and no set of modules reaches itself. Only the composition root
//! (`controllers.rs`, called by `main.rs`) names every controller. Read from the `crate::…` paths
//! of the source (comments left out): a short check, not a compiler.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use source::{rust_files, source_dir};

/// Modules that reconcile a kind: each stands alone.
const CONTROLLERS: [&str; 5] = ["portal", "document", "data_sharing", "tenant", "trust"];
/// The composition root: the one module that may name them all.
const ROOT: &str = "controllers";

/// The top-level modules of the crate and the files of each (`main.rs` and `lib.rs` left out).
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(source_dir()).expect("operator/src") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_stem().expect("a name").to_string_lossy().into_owned();
        if name == "main" || name == "lib" || (path.is_file() && path.extension().is_none_or(|e| e != "rs")) {
            continue;
        }
        modules.insert(name, rust_files(&path));
    }
    modules
}

/// The top-level modules `files` refer to as `crate::<module>`, outside comments.
fn references(files: &[PathBuf], known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if known.contains(&name) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let mut uses = references(files, &known);
            uses.remove(name);
            (name.clone(), uses)
        })
        .collect()
}

#[test]
fn the_graph_sees_every_controller_and_the_root() {
    let graph = graph();
    for module in CONTROLLERS.iter().chain([&ROOT]) {
        assert!(graph.contains_key(*module), "no module {module} in operator/src: {:?}", graph.keys());
    }
    // The check reads real edges: the root uses every controller.
    for controller in CONTROLLERS {
        assert!(graph[ROOT].contains(controller), "the composition root does not start {controller}");
    }
}

#[test]
fn controllers_never_import_each_other_and_libraries_never_import_controllers() {
    let mut wrong = Vec::new();
    for (module, uses) in graph() {
        if module == ROOT {
            continue;
        }
        for used in uses.iter().filter(|u| CONTROLLERS.contains(&u.as_str()) || u.as_str() == ROOT) {
            wrong.push(format!("{module} -> {used}"));
        }
    }
    assert!(wrong.is_empty(), "only the composition root ({ROOT}) may name controllers: {wrong:?}");
}

#[test]
fn no_set_of_modules_reaches_itself() {
    let graph = graph();
    // Depth-first search; a module met again while on the path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("the operator's modules form a cycle: {}", cycle.join(" -> "));
        }
    }
}

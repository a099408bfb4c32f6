//! `cargo xtask cluster up | status | down` on a second, private control plane: reuse of the tool cache,
//! a dead component reported with its log, and nothing left running after `down`.

use std::path::Path;
use std::process::{Command, Output};

use xtask::cluster::{ProcessRecord, State};

fn xtask(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("GOVPAAS_REAL_NODE", "0")
        .env("GOVPAAS_CLUSTER_DIR", dir)
        .output()
        .expect("running xtask")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn up_reuses_the_cache_status_reports_a_dead_component_and_down_stops_everything() {
    // Make sure the tools are built before timing anything: the shared cluster's start builds them.
    xtask::tools::ensure().expect("tools");
    let dir = xtask::paths::workspace_root().join("target").join(format!("lifecycle-{}", std::process::id()));

    let up = xtask(&dir, &["cluster", "up"]);
    assert!(up.status.success(), "cluster up failed: {}", text(&up));
    assert!(!text(&up).contains("building"), "a second `up` rebuilt tools: {}", text(&up));
    let state: State = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).expect("state.json"))
        .expect("state.json parses");
    let names: Vec<&str> = state.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]);
    assert!(state.processes.iter().all(ProcessRecord::is_alive));

    let status = xtask(&dir, &["cluster", "status"]);
    assert!(status.status.success(), "status of a healthy cluster failed: {}", text(&status));
    assert!(text(&status).contains("kwok-node-2"), "status lists the nodes: {}", text(&status));

    let env = xtask(&dir, &["cluster", "env"]);
    assert!(text(&env).contains(&format!("export KUBECONFIG={}", dir.join("kubeconfig").display())));

    // A component that dies is reported, with the end of its log.
    let kwok = state.processes.iter().find(|p| p.name == "kwok").expect("kwok");
    Command::new("kill").args(["-KILL", &kwok.pid.to_string()]).status().expect("kill");
    while kwok.is_alive() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = xtask(&dir, &["cluster", "status"]);
    assert!(!status.status.success(), "status of a cluster with a dead component succeeded");
    assert!(text(&status).contains("kwok") && text(&status).contains("DEAD"), "{}", text(&status));
    assert!(text(&status).contains("Watch nodes"), "the tail of kwok's log is shown: {}", text(&status));

    let down = xtask(&dir, &["cluster", "down"]);
    assert!(down.status.success(), "cluster down failed: {}", text(&down));
    let survivors: Vec<&ProcessRecord> = state.processes.iter().filter(|p| p.is_alive()).collect();
    assert!(survivors.is_empty(), "processes left after down: {survivors:?}");
    assert!(!dir.exists(), "down removed the cluster's data");
}

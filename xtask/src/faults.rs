//! Fault injection on the local control plane.
//!
//! - [`kill_component`] and [`start_component`]: `kill -9` one recorded component (etcd,
//!   kube-apiserver, …) and start it again with exactly the command line it ran with, read from
//!   `/proc/<pid>/cmdline` before the kill; the new process id is recorded in the cluster's state,
//!   so `status` and `down` keep working.
//! - `cargo xtask faults`: the long form of `tests/tests/fault_injection.rs` (a province converging
//!   while the operator is killed again and again), with its figures written into
//!   `docs/resilience.md`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, ProcessRecord};
use crate::paths;

/// A component killed by [`kill_component`]: what it takes to start it again.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub name: String,
    /// The command line, program first, as the kernel recorded it.
    pub argv: Vec<String>,
    pub log: PathBuf,
}

/// Sends SIGKILL to the recorded component `name` (`etcd`, `kube-apiserver`, …) and waits until it
/// is gone. Its command line is read first, so [`start_component`] can run it again.
pub fn kill_component(name: &str) -> Result<Stopped> {
    let state = cluster::read_state().context("no control plane is recorded")?;
    let record = state.processes.iter().find(|p| p.name == name).with_context(|| format!("no component {name}"))?;
    if !record.is_alive() {
        bail!("{name} (pid {}) is not running", record.pid);
    }
    let cmdline = fs::read(format!("/proc/{}/cmdline", record.pid))
        .with_context(|| format!("reading the command line of {name} (pid {})", record.pid))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if argv.is_empty() {
        bail!("{name} (pid {}) has an empty command line", record.pid);
    }
    let status = Command::new("kill").args(["-KILL", &record.pid.to_string()]).stderr(Stdio::null()).status()?;
    if !status.success() {
        bail!("kill -KILL {} ({name}) failed", record.pid);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while record.is_alive() {
        if Instant::now() > deadline {
            bail!("{name} (pid {}) survived SIGKILL for 10 s", record.pid);
        }
        sleep(Duration::from_millis(50));
    }
    Ok(Stopped { name: name.to_owned(), argv, log: record.log.clone() })
}

/// Starts a component killed by [`kill_component`] again, in its own process group, appending to
/// its log, and records its new process id. Returns the new pid.
pub fn start_component(stopped: &Stopped) -> Result<u32> {
    let mut log = OpenOptions::new().create(true).append(true).open(&stopped.log)?;
    writeln!(log, "===== xtask faults: {} restarted after kill -9 =====", stopped.name)?;
    let child = Command::new(&stopped.argv[0])
        .args(&stopped.argv[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} again", stopped.name))?;
    let pid = child.id();
    let mut state = cluster::read_state().context("no control plane is recorded")?;
    for record in state.processes.iter_mut().filter(|p| p.name == stopped.name) {
        *record = ProcessRecord { name: record.name.clone(), pid, log: record.log.clone() };
    }
    fs::write(paths::cluster_dir().join("state.json"), serde_json::to_string_pretty(&state)?)?;
    Ok(pid)
}

/// What one run of the province fault-injection test measured; the test writes it as JSON to
/// `$GOVPAAS_FAULT_REPORT` when that is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub tenants: usize,
    pub services: usize,
    /// SIGKILLs of the operator, each followed by a restart.
    pub kills: usize,
    /// Times the operator exited on its own (a crash, or a crash loop).
    pub crashes: usize,
    pub leader_elect: bool,
    /// From the first object applied to every object converged.
    pub seconds_to_converge: f64,
    /// From the last restart to every object converged.
    pub seconds_after_last_kill: f64,
    pub orphans: Vec<String>,
    pub certificates_tracked: usize,
    pub certificates_reissued: Vec<String>,
    pub volumes_tracked: usize,
    pub volumes_changed: Vec<String>,
    pub ledger_samples: usize,
    /// The fullest any parent's quota was at any sample: its own namespaces' ResourceQuotas plus
    /// its descendants', over its quota, for the fullest resource (1.0 = exactly full).
    pub ledger_max_fill: f64,
    pub ledger_violations: Vec<String>,
    pub not_converged: Vec<String>,
    /// The control-plane phases: per component, how long it was away and how the operator fared.
    pub control_plane: Vec<String>,
    pub machine: String,
}

/// The machine, as docs describe it: CPUs, model, memory.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cpus} vCPUs ({model}), {mem_gib:.0} GiB")
}

/// The sizes of a `cargo xtask faults` run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub tenants: usize,
    pub services: usize,
    pub kills: usize,
    pub seed: Option<u64>,
    pub leader_elect: bool,
    /// Also restart the API server and etcd under a running operator (known to fail today).
    pub control_plane: bool,
}

const DOC: &str = "docs/resilience.md";
const BEGIN: &str = "<!-- faults:begin -->";
const END: &str = "<!-- faults:end -->";

/// `cargo xtask faults`: runs the fault-injection test at `sizes`, prints its figures and records
/// them in docs/resilience.md. Fails when the test fails (the figures are recorded all the same).
pub fn run(sizes: Sizes) -> Result<()> {
    let root = paths::workspace_root();
    let report_path = root.join("target").join("faults-report.json");
    let _ = fs::remove_file(&report_path);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["test", "-p", "govpaas-tests", "--test", "fault_injection", "--"])
        .args(["nothing_is_lost_when_the_operator_dies_again_and_again", "--exact", "--nocapture"])
        .env("GOVPAAS_FAULT_TENANTS", sizes.tenants.to_string())
        .env("GOVPAAS_FAULT_SERVICES", sizes.services.to_string())
        .env("GOVPAAS_FAULT_KILLS", sizes.kills.to_string())
        .env("GOVPAAS_FAULT_LEADER_ELECT", sizes.leader_elect.to_string())
        .env("GOVPAAS_FAULT_REPORT", &report_path);
    if let Some(seed) = sizes.seed {
        cmd.env("GOVPAAS_FAULT_SEED", seed.to_string());
    }
    eprintln!(
        "xtask: fault injection: {} tenants, {} services, {} operator kills",
        sizes.tenants, sizes.services, sizes.kills
    );
    let started = Instant::now();
    let status = cmd.status().context("running cargo test")?;
    let wall = started.elapsed();
    let text = fs::read_to_string(&report_path)
        .with_context(|| format!("the test wrote no report to {} (it failed early)", report_path.display()))?;
    let mut report: Report = serde_json::from_str(&text)?;
    let mut passed = status.success();
    if sizes.control_plane {
        // Phase 2, outside CI while it is known to fail: its own private control plane.
        let _ = fs::remove_file(&report_path);
        let control = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["test", "-p", "govpaas-tests", "--test", "control_plane_restart", "--"])
            .args(["the_operator_recovers_when_the_api_server_or_etcd_restarts", "--exact", "--include-ignored"])
            .arg("--nocapture")
            .env("GOVPAAS_FAULT_REPORT", &report_path)
            .status()
            .context("running cargo test")?;
        passed &= control.success();
        if let Ok(text) = fs::read_to_string(&report_path) {
            let phase2: Report = serde_json::from_str(&text)?;
            report.control_plane = phase2.control_plane;
        }
    }
    let table = render(&report, wall, passed);
    println!("{table}");
    record(&root.join(DOC), &table)?;
    eprintln!("xtask: recorded in {DOC}");
    if !passed {
        bail!("the fault-injection run failed (its figures are recorded above)");
    }
    Ok(())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    // The first few, each cut short: the test's own output has them in full.
    let shown: Vec<String> = items
        .iter()
        .take(5)
        .map(|item| {
            if item.chars().count() > 200 {
                format!("{}…", item.chars().take(200).collect::<String>())
            } else {
                item.clone()
            }
        })
        .collect();
    let more = if items.len() > 5 { format!(" and {} more", items.len() - 5) } else { String::new() };
    format!("{}: {}{more}", items.len(), shown.join("; "))
}

fn render(report: &Report, wall: Duration, passed: bool) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "Last `cargo xtask faults` run: {date}, on {machine}, with the rest of the machine shared with other builds \
(read the times as upper bounds). Result: **{result}**.\n\n\
| figure | value |\n|---|---|\n\
| tenants, services | {tenants}, {services} |\n\
| seed (`GOVPAAS_FAULT_SEED` replays it) | {seed} |\n\
| leader election | {leader} |\n\
| operator kills survived (kill -9, restart) | {kills} |\n\
| operator exits on its own (crashes) | {crashes} |\n\
| time to converge (first apply to all Ready) | {converge:.0} s |\n\
| time to converge after the last kill | {after:.0} s |\n\
| objects not converged | {not_converged} |\n\
| orphans found | {orphans} |\n\
| certificates tracked / re-issued | {certs} / {reissued} |\n\
| volumes tracked / changed | {volumes} / {changed} |\n\
| quota ledger samples / violations | {samples} / {violations} |\n\
| fullest parent at any sample (1.0 = exactly full) | {fill:.3} |\n\
| API server and etcd killed while a fresh operator reconciles | {control_plane} |\n\
| wall time of the whole run (build, control plane, test) | {wall:.0} s |\n",
        machine = report.machine,
        result = if passed { "passed" } else { "FAILED" },
        tenants = report.tenants,
        services = report.services,
        seed = report.seed,
        leader = if report.leader_elect { "on" } else { "off (one replica)" },
        kills = report.kills,
        crashes = report.crashes,
        converge = report.seconds_to_converge,
        after = report.seconds_after_last_kill,
        not_converged = list(&report.not_converged),
        orphans = list(&report.orphans),
        certs = report.certificates_tracked,
        reissued = list(&report.certificates_reissued),
        volumes = report.volumes_tracked,
        changed = list(&report.volumes_changed),
        samples = report.ledger_samples,
        violations = list(&report.ledger_violations),
        fill = report.ledger_max_fill,
        control_plane =
            if report.control_plane.is_empty() { "not run".into() } else { report.control_plane.join("; ") },
        wall = wall.as_secs_f64(),
    )
}

/// Replaces what lies between the markers in the doc with `table`.
fn record(doc: &std::path::Path, table: &str) -> Result<()> {
    let text = fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} lacks the markers {BEGIN} and {END}", doc.display());
    };
    let updated = format!("{}{BEGIN}\n{table}{}", &text[..begin], &text[end..]);
    fs::write(doc, updated)?;
    Ok(())
}

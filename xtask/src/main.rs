//! `cargo xtask …`: see `cargo xtask --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::install::Profile;
use xtask::{cluster, testrun};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "govpaas developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Bring up the control plane and show govpaas at work.
    Demo,
    /// Run a benchmark and record its results in docs/benchmarks.md: `certificates` (release), `tree` (the release plugin over 4,000 Tenants on a control plane of its own), `gateway` (govpaas-gateway against nginx as mTLS reverse proxies, driven by vegeta), `converge` (a province converged by the release operator against a raw writer of the same objects, each on a control plane of its own).
    Bench {
        /// Which benchmark.
        what: String,
        #[command(flatten)]
        converge: xtask::bench::ConvergeOptions,
    },
    /// Fault injection: a province converging while the operator is killed again and again; the
    /// figures go into docs/resilience.md.
    Faults {
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        #[arg(long, default_value_t = 200)]
        services: usize,
        #[arg(long, default_value_t = 40)]
        kills: usize,
        /// Replay a run: the seed it printed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run the operator with leader election, as the chart does (each restart then waits for the
        /// killed leader's Lease to expire).
        #[arg(long)]
        leader_elect: bool,
        /// Also kill and restart the API server and etcd under a running operator (known to fail
        /// today: docs/resilience.md).
        #[arg(long)]
        control_plane: bool,
    },
    /// Build the operator, gateway and pause images as OCI archives, without a container daemon or
    /// registry, and print each one's name, digest and size.
    Images {
        /// The cargo profile of the binaries.
        #[arg(long, value_enum, default_value_t = Profile::Release)]
        profile: Profile,
        /// Where to write the archives (default: target/images).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Pack the kubectl plugin for krew: target/krew/kubectl-govpaas-linux-amd64.tar.gz and the
    /// manifest dist/krew/govpaas.yaml with its sha256 (target/krew/govpaas.yaml).
    Krew {
        /// The cargo profile of the binary.
        #[arg(long, value_enum, default_value_t = Profile::Release)]
        profile: Profile,
        /// Where to write the archive and manifest (default: target/krew).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate the CRD YAML and admission policies from the Rust API types.
    Crds {
        /// Write nothing; fail if the committed files differ from what generation produces.
        #[arg(long)]
        check: bool,
    },
    /// Everything CI runs: formatting, lints, generated-file drift, unit and integration tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Build the tools if needed (cached under $HOME), start the control plane and wait until healthy.
    Up,
    /// Stop every process `up` started and remove the cluster's data.
    Down,
    /// Say what runs; a dead component is reported with the end of its log.
    Status,
    /// Print the lines that point kubectl at the cluster: eval "$(cargo xtask cluster env)".
    Env,
    /// Build what the real node runs (kubelet, kube-proxy, CoreDNS, kube-network-policies) ahead of
    /// `up`, which would otherwise build them on first use.
    NodeTools,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Task::Cluster { action } => match action {
            ClusterAction::Up => {
                cluster::up()?;
                print!("{}", cluster::env()?);
            }
            ClusterAction::Down => cluster::down()?,
            ClusterAction::Status => cluster::status()?,
            ClusterAction::Env => print!("{}", cluster::env()?),
            ClusterAction::NodeTools => {
                let tools = xtask::tools::node_tools()?;
                println!("{tools:#?}");
            }
        },
        Task::Demo => xtask::demo::run()?,
        Task::Bench { what, converge } => xtask::bench::run(&what, &converge)?,
        Task::Faults { tenants, services, kills, seed, leader_elect, control_plane } => {
            xtask::faults::run(xtask::faults::Sizes { tenants, services, kills, seed, leader_elect, control_plane })?
        }
        Task::Images { profile, out } => xtask::images::run_task(profile, out)?,
        Task::Krew { profile, out } => xtask::krew::run_task(profile, out)?,
        Task::Crds { check } => xtask::codegen::crds(check)?,
        Task::Test { cargo_test_args } => return test(&cargo_test_args),
    }
    Ok(ExitCode::SUCCESS)
}

fn test(cargo_test_args: &[String]) -> Result<ExitCode> {
    let mut failures = Vec::new();
    if !testrun::cargo_check(&["fmt", "--all", "--", "--check"])? {
        failures.push("cargo fmt --check");
    }
    if !testrun::cargo_check(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])? {
        failures.push("cargo clippy");
    }
    if let Err(err) = xtask::codegen::crds(true) {
        eprintln!("xtask: error: generated files are stale (run `cargo xtask crds`): {err:#}");
        failures.push("generated files drift");
    }
    // A demo's operator reconciles every tenant: it would fight the tests' own operators.
    xtask::demo::stop_operator();
    // The integration tests share one control plane; bring it up once, before they start.
    let state = match cluster::up() {
        Ok(state) => {
            if let Ok(tools) = xtask::tools::ensure() {
                xtask::demo::stop_operators(&tools, &state.kubeconfig);
            }
            Some(state)
        }
        Err(err) => {
            eprintln!("xtask: error: the control plane did not come up: {err:#}");
            failures.push("cluster up");
            None
        }
    };
    let (tests_ok, mut totals) = testrun::cargo_test(cargo_test_args)?;
    if !tests_ok {
        failures.push("cargo test");
    }
    // Last, on the control plane the tests leave: `cargo xtask demo` itself, on the real node's Pods
    // (the one check of the demo's Pods path; its operator is stopped again afterwards).
    if cargo_test_args.is_empty() {
        match state.as_ref().and_then(|s| s.node.as_ref()) {
            Some(node) if node.ready => match testrun::demo_check() {
                Ok(()) => totals.passed += 1,
                Err(err) => {
                    eprintln!("xtask: error: cargo xtask demo on the real node: {err:#}");
                    totals.failed += 1;
                    failures.push("cargo xtask demo");
                }
            },
            _ => {
                eprintln!("xtask: the demo on the real node is skipped: the real node is not up");
                totals.ignored += 1;
            }
        }
        if let (Some(state), Ok(tools)) = (&state, xtask::tools::ensure()) {
            xtask::demo::stop_operators(&tools, &state.kubeconfig);
        }
    }
    if !failures.is_empty() {
        eprintln!("xtask: FAILED: {}", failures.join(", "));
    }
    println!("summary: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

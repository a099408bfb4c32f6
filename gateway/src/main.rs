//! `govpaas-gateway`: the LGSP gateway (`serve`) and its audit verifier (`audit verify`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::layers::forward::ForwardSettings;
use govpaas_gateway::routes::Resolve;
use govpaas_gateway::{Settings, audit};

#[derive(Parser)]
#[command(version, about = "The LGSP gateway: mutual TLS, grants, rate limits and a tamper-evident audit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway.
    Serve(Box<ServeArgs>),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// The gateway's certificate followed by its chain (PEM).
    #[arg(long, env = "GATEWAY_TLS_CERT", default_value = "/etc/lgsp/tls/tls.crt")]
    tls_cert: PathBuf,
    /// The gateway's PKCS#8 key (PEM); ECDSA P-256 also signs the audit checkpoints.
    #[arg(long, env = "GATEWAY_TLS_KEY", default_value = "/etc/lgsp/tls/tls.key")]
    tls_key: PathBuf,
    /// The platform CA(s) client certificates must chain to (PEM; two during a CA rotation).
    #[arg(long, env = "GATEWAY_CLIENT_CA", default_value = "/etc/lgsp/trust/ca.crt")]
    client_ca: PathBuf,
    /// Route tables from files: a route table (JSON, see docs/lgsp.md) or a directory of them
    /// (`*.json`). Not with --routes-from-cluster.
    #[arg(
        long,
        env = "GATEWAY_ROUTES",
        conflicts_with = "routes_from_cluster",
        required_unless_present = "routes_from_cluster"
    )]
    routes: Option<PathBuf>,
    /// Route tables from the cluster: the operator's route table ConfigMaps in --namespace, watched.
    #[arg(long, env = "GATEWAY_ROUTES_FROM_CLUSTER", requires = "namespace")]
    routes_from_cluster: bool,
    /// The namespace of the route tables (the operator's).
    #[arg(long, env = "GATEWAY_NAMESPACE")]
    namespace: Option<String>,
    /// A kubeconfig for --routes-from-cluster; unset: the in-cluster configuration.
    #[arg(long, env = "GATEWAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// `<host>=<ip:port>`: connect to this address for an upstream host (e.g.
    /// `ho-tich.so-tu-phap.svc=127.0.0.1:9000`), like curl's --resolve. For running the gateway
    /// outside the cluster; repeatable.
    #[arg(long = "resolve", value_parser = Resolve::parse_entry)]
    resolve: Vec<(String, std::net::SocketAddr)>,
    /// Address of the mutual-TLS listener.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Address of the open-data listener (TLS, no client certificate); off when not given.
    #[arg(long, env = "GATEWAY_OPEN_DATA_LISTEN")]
    open_data_listen: Option<SocketAddr>,
    /// The audit log (JSON lines, appended to).
    #[arg(long, env = "GATEWAY_AUDIT_LOG", default_value = "/var/lib/lgsp/audit.jsonl")]
    audit_log: PathBuf,
    /// Seconds between signed audit checkpoints.
    #[arg(long, env = "GATEWAY_CHECKPOINT_SECONDS", default_value_t = 60)]
    checkpoint_seconds: u64,
    /// Seconds between checks of the configuration files.
    #[arg(long, env = "GATEWAY_RELOAD_SECONDS", default_value_t = 2)]
    reload_seconds: u64,
    /// Seconds a provider has to answer (504 after).
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT_SECONDS", default_value_t = 30)]
    upstream_timeout_seconds: u64,
    /// Largest request body accepted, and largest response relayed, in bytes.
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and every checkpoint signature; reports the first bad record.
    Verify {
        /// The audit log.
        #[arg(long)]
        log: PathBuf,
        /// The gateway's certificate(s) over the log's lifetime (PEM, one file may hold several).
        #[arg(long = "certificate", required = true)]
        certificates: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Audit(AuditCommand::Verify { log, certificates }) => verify(&log, &certificates),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let routes = match (args.routes_from_cluster, args.routes, args.namespace) {
        (true, _, Some(namespace)) => RoutesSource::Cluster { namespace, kubeconfig: args.kubeconfig },
        (false, Some(path), _) => RoutesSource::Files(path),
        _ => {
            eprintln!("give --routes <file or directory>, or --routes-from-cluster --namespace <namespace>");
            return ExitCode::from(2);
        }
    };
    let config = ConfigPaths {
        tls_crt: args.tls_cert,
        tls_key: args.tls_key,
        client_ca: args.client_ca,
        routes,
        resolve: Resolve(args.resolve.into_iter().collect()),
    };
    let mut settings = Settings::new(config, args.listen, args.audit_log);
    settings.open_data_listen = args.open_data_listen;
    settings.checkpoint_interval = Duration::from_secs(args.checkpoint_seconds.max(1));
    settings.reload_interval = Duration::from_secs(args.reload_seconds.max(1));
    settings.forward = ForwardSettings {
        timeout: Duration::from_secs(args.upstream_timeout_seconds.max(1)),
        max_response_bytes: args.max_body_bytes,
    };
    settings.max_request_bytes = args.max_body_bytes;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gateway = match govpaas_gateway::start(settings).await {
            Ok(gateway) => gateway,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "the gateway cannot start");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "SIGTERM not handled; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn verify(log: &PathBuf, certificates: &[PathBuf]) -> ExitCode {
    let mut certs = Vec::new();
    for path in certificates {
        let pem = match std::fs::read(path) {
            Ok(pem) => pem,
            Err(error) => {
                eprintln!("{}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        match govpaas_pki::verify::chain_from_pem("certificate", &pem) {
            Ok(found) => certs.extend(found),
            Err(error) => {
                eprintln!("{}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("{}: {error}", log.display());
            return ExitCode::from(2);
        }
    };
    match audit::verify_log(std::io::BufReader::new(file), &certs) {
        Ok(report) => {
            println!("{}: OK, {report}", log.display());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("{}: TAMPERED at {failure}", log.display());
            ExitCode::FAILURE
        }
    }
}

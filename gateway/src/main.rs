//! `govpaas-gateway`: the LGSP gateway (`serve`) and its audit verifier (`audit verify`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use govpaas_gateway::audit::AuditSettings;
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::connections::ConnectionLimits;
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
    /// Directory of the national platform (a mounted Secret: url, tls.crt, tls.key, ca.crt);
    /// national routes (/ndxp/<api>/…) are forwarded there. Absent or empty: they answer 502.
    #[arg(long, env = "GATEWAY_NATIONAL_DIR")]
    national: Option<PathBuf>,
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
    /// Address of the kubelet's probes (plain HTTP: GET /livez, /readyz); off when not given.
    #[arg(long, env = "GATEWAY_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    /// The audit log (JSON lines, appended to).
    #[arg(long, env = "GATEWAY_AUDIT_LOG", default_value = "/var/lib/lgsp/audit.jsonl")]
    audit_log: PathBuf,
    /// fdatasync each exchange's audit record before its answer is released (grouped); false:
    /// records are written but a node crash may lose the last ones.
    #[arg(long, env = "GATEWAY_AUDIT_FSYNC", default_value_t = true, action = clap::ArgAction::Set)]
    audit_fsync: bool,
    /// Size at which the audit log is rotated (renamed to <log>.<last seq>; the chain continues).
    #[arg(long, env = "GATEWAY_AUDIT_MAX_FILE_BYTES", default_value_t = 64 * 1024 * 1024)]
    audit_max_file_bytes: u64,
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
    /// Bytes of request bodies held in memory at once, gateway-wide, and as many for response
    /// bodies (503 with Retry-After when exhausted for a whole body timeout).
    #[arg(long, env = "GATEWAY_BODY_BUDGET_BYTES", default_value_t = 48 * 1024 * 1024)]
    body_budget_bytes: usize,
    /// Seconds a request body has to arrive, once the request is authorised (408 after).
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    body_timeout_seconds: u64,
    /// Gateway replicas behind the Service: each admits 1/replicas of every rate limit (rounded
    /// down, at least 1), so a caller spread over them gets the provider's limit in total.
    #[arg(long, env = "GATEWAY_REPLICAS", default_value_t = std::num::NonZeroU32::MIN)]
    replicas: std::num::NonZeroU32,
    /// Exchanges in flight at once, gateway-wide (503 with Retry-After above); an exchange whose
    /// client went away still counts until the provider has answered and it is recorded.
    #[arg(long, env = "GATEWAY_MAX_EXCHANGES", default_value_t = 4096)]
    max_exchanges: usize,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "GATEWAY_HANDSHAKE_TIMEOUT_SECONDS", default_value_t = 10)]
    handshake_timeout_seconds: u64,
    /// Seconds an HTTP/1.1 request head may take to arrive.
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    header_timeout_seconds: u64,
    /// Seconds a connection may stay without a request in flight before it is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    idle_timeout_seconds: u64,
    /// Connections the mutual-TLS listener holds at once.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Connections the mutual-TLS listener holds from one IP address.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 128)]
    max_connections_per_address: usize,
    /// Connections the open-data listener holds at once.
    #[arg(long, env = "GATEWAY_OPEN_DATA_MAX_CONNECTIONS", default_value_t = 256)]
    open_data_max_connections: usize,
    /// Connections the open-data listener holds from one IP address.
    #[arg(long, env = "GATEWAY_OPEN_DATA_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 32)]
    open_data_max_connections_per_address: usize,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and every checkpoint signature; reports the first bad record.
    Verify {
        /// The audit log: a file, or a directory holding the log and its rotated files
        /// (`<log>.<seq>`); repeatable. Files are verified as one chain, in the order of their
        /// first records.
        #[arg(long = "log", required = true)]
        logs: Vec<PathBuf>,
        /// The gateway's certificate(s) over the log's lifetime, with their chains (PEM; one
        /// file may hold several).
        #[arg(long = "certificate", required = true)]
        certificates: Vec<PathBuf>,
        /// The platform CA bundle: every certificate that signed a checkpoint must chain to it.
        #[arg(long, required = true)]
        ca: PathBuf,
        /// Accept a set that does not start at the first record (older files deleted or kept
        /// elsewhere); the report says where it starts.
        #[arg(long)]
        partial: bool,
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
        Command::Audit(AuditCommand::Verify { logs, certificates, ca, partial }) => {
            verify(&logs, &certificates, &ca, partial)
        }
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
        national: args.national,
    };
    let mut settings = Settings::new(config, args.listen, args.audit_log);
    settings.open_data_listen = args.open_data_listen;
    settings.health_listen = args.health_listen;
    settings.audit = AuditSettings { fsync: args.audit_fsync, max_file_bytes: args.audit_max_file_bytes.max(4096) };
    settings.checkpoint_interval = Duration::from_secs(args.checkpoint_seconds.max(1));
    settings.reload_interval = Duration::from_secs(args.reload_seconds.max(1));
    settings.forward = ForwardSettings {
        timeout: Duration::from_secs(args.upstream_timeout_seconds.max(1)),
        max_response_bytes: args.max_body_bytes,
    };
    settings.max_request_bytes = args.max_body_bytes;
    settings.body_budget_bytes = args.body_budget_bytes.max(args.max_body_bytes);
    settings.body_timeout = Duration::from_secs(args.body_timeout_seconds.max(1));
    settings.replicas = args.replicas;
    settings.max_exchanges = args.max_exchanges;
    settings.handshake_timeout = Duration::from_secs(args.handshake_timeout_seconds.max(1));
    settings.header_timeout = Duration::from_secs(args.header_timeout_seconds.max(1));
    settings.idle_timeout = Duration::from_secs(args.idle_timeout_seconds.max(1));
    settings.mutual_limits = ConnectionLimits {
        max_connections: args.max_connections.max(1),
        max_per_address: args.max_connections_per_address.max(1),
    };
    settings.open_data_limits = ConnectionLimits {
        max_connections: args.open_data_max_connections.max(1),
        max_per_address: args.open_data_max_connections_per_address.max(1),
    };
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

fn read_certificates(path: &PathBuf) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    govpaas_pki::verify::chain_from_pem("certificate", &pem).map_err(|error| format!("{}: {error}", path.display()))
}

fn verify(logs: &[PathBuf], certificates: &[PathBuf], ca: &PathBuf, partial: bool) -> ExitCode {
    let mut certs = Vec::new();
    for path in certificates {
        match read_certificates(path) {
            Ok(found) => certs.extend(found),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(2);
            }
        }
    }
    let anchors = match read_certificates(ca) {
        Ok(anchors) => anchors,
        Err(error) => {
            eprintln!("the platform CA bundle {error}");
            return ExitCode::from(2);
        }
    };
    let verification = match audit::verify_files(logs, &certs, &anchors, partial) {
        Ok(verification) => verification,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let name = verification.name;
    match verification.verdict {
        audit::Verdict::Verified(report) => {
            println!("{name}: OK, {report}; every checkpoint signer chains to {}", ca.display());
            ExitCode::SUCCESS
        }
        audit::Verdict::Tampered(failure) => {
            println!("{name}: TAMPERED at {failure}");
            ExitCode::FAILURE
        }
        audit::Verdict::UntrustedSigner(reason) => {
            println!("{name}: UNTRUSTED SIGNER: {reason} (CA bundle {})", ca.display());
            ExitCode::FAILURE
        }
    }
}

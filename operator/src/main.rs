//! `govpaas-operator`: runs govpaas's controllers against a cluster.
//!
//! Credentials come from `--kubeconfig`, else the usual inference (in-cluster service account,
//! `$KUBECONFIG`, `~/.kube/config`). Logs go to stderr, their level from `RUST_LOG` (default
//! `info`), as text or JSON (`--log-format json`). SIGTERM or Ctrl-C stops it gracefully:
//! reconciles in flight finish, no new ones start, and the leader Lease is released.
//!
//! Replicas elect a leader on a Lease (see [`govpaas_operator::leader`]); only the leader reconciles.
//! `/metrics`, `/healthz` and `/readyz` are served on `--metrics-address` by every replica.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use govpaas_operator::error::{Error, Result};
use govpaas_operator::leader::{self, Leadership};
use govpaas_operator::reconcile::watch;
use govpaas_operator::telemetry::{self, Metrics, Telemetry, api_requests};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The govpaas operator: tenants, portals, document services and data sharing on one cluster.
#[derive(Debug, Parser)]
#[command(name = "govpaas-operator", version, about)]
struct Args {
    /// Kubeconfig to use; unset: in-cluster credentials, else $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Reconcile only Tenants with these labels (a label selector, e.g. `govpaas.io/scope=ci-42`).
    /// For tests that share a cluster and for staged roll-outs; unset: every Tenant.
    #[arg(long, env = "GOVPAAS_TENANT_SELECTOR")]
    tenant_selector: Option<String>,

    /// The operator's namespace (where the LGSP gateway runs).
    #[arg(long, env = "POD_NAMESPACE", default_value = "govpaas-system")]
    namespace: String,

    /// Most reconciles of one kind running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// Where to serve /metrics, /healthz and /readyz. Port 0: a free port (logged).
    #[arg(long, env = "GOVPAAS_METRICS_ADDRESS", default_value = "127.0.0.1:0")]
    metrics_address: SocketAddr,

    /// Elect a leader among replicas on a Lease in `--namespace`; `false` for a single process
    /// that may reconcile at once.
    #[arg(long, env = "GOVPAAS_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Log format on stderr.
    #[arg(long, env = "GOVPAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// How watches list what exists: `streaming` (the API server sends the objects one at a time,
    /// Kubernetes WatchList), `paged` (pages of 500), or `auto`: streaming if the API server serves
    /// it, checked once at start.
    #[arg(long, env = "GOVPAAS_LISTS", value_enum, default_value_t = Lists::Auto)]
    lists: Lists,
}

/// How watches list what exists (`--lists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lists {
    Auto,
    Streaming,
    Paged,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, error_kind = err.metric_label(), "govpaas-operator failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The kube client, counting every request it sends (`govpaas_api_requests_total`).
async fn client(kubeconfig: Option<&PathBuf>, metrics: Arc<Metrics>) -> Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|err| Error::Config(format!("reading {}: {err}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|err| Error::Config(format!("{}: {err}", path.display())))?
        }
        None => Config::infer().await.map_err(|err| Error::Config(err.to_string()))?,
    };
    watch::bound_reads(&mut config);
    let count = tower::util::MapRequestLayer::new(api_requests::counter(metrics));
    Ok(ClientBuilder::try_from(config).map_err(Error::Kube)?.with_layer(&count).build())
}

async fn run(args: Args) -> Result<()> {
    let telemetry = Telemetry::new();
    let client = client(args.kubeconfig.as_ref(), telemetry.metrics.clone()).await?;
    let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        tenant_selector = args.tenant_selector.as_deref().unwrap_or("(all)"),
        namespace = %args.namespace,
        concurrency = args.concurrency,
        "govpaas-operator starting"
    );
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .map_err(|source| Error::Serve { address: args.metrics_address, source })?;
    let address = listener.local_addr().map_err(|source| Error::Serve { address: args.metrics_address, source })?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    let router = telemetry::router(telemetry.clone());
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(error = %err, "the metrics and health port stopped");
        }
    });

    let identity = format!("{}-{}", instance.clone().unwrap_or_else(|| "govpaas-operator".into()), std::process::id());
    let mut leadership = if args.leader_elect {
        // Operators scoped to different tenants (a staged roll-out, or tests sharing a cluster) never
        // write the same objects, so each scope elects its own leader.
        let lease = leader::lease_name(args.tenant_selector.as_deref());
        let mut leadership = Leadership::join(client.clone(), &args.namespace, &lease, identity).await?;
        tracing::info!(lease = %lease, identity = leadership.identity(), "waiting to lead");
        tokio::select! {
            acquired = leadership.acquired() => acquired?,
            () = shutdown_signal() => {
                tracing::info!("stopping before leading");
                return leadership.release().await;
            }
        }
        tracing::info!(lease = %lease, identity = leadership.identity(), "leading: reconciling from now on");
        Some(leadership)
    } else {
        None
    };
    telemetry.health.set_leading(true);
    telemetry.metrics.set_leader(true);

    // Decided before any watch starts; probed only once leading (a standby lists nothing).
    let streaming = match args.lists {
        Lists::Streaming => true,
        Lists::Paged => false,
        Lists::Auto => {
            let platforms: kube::Api<govpaas_crds::Platform> = kube::Api::all(client.clone());
            let only_the_platform = format!("metadata.name={}", govpaas_crds::platform::PLATFORM_NAME);
            watch::serves_streaming_lists(&platforms, Some(&only_the_platform)).await
        }
    };
    watch::use_streaming_lists(streaming);
    tracing::info!(lists = if streaming { "streaming" } else { "paged" }, "watches list what exists");

    let settings = govpaas_operator::settings::Settings {
        tenant_selector: args.tenant_selector,
        operator_namespace: args.namespace,
        concurrency: args.concurrency,
        instance,
        telemetry: telemetry.clone(),
    };
    // Every controller, composed in one place; they stop on SIGTERM themselves, finishing the
    // reconciles in flight.
    let controllers = govpaas_operator::controllers::run(client, settings);
    match leadership.as_mut() {
        Some(leading) => {
            tokio::select! {
                () = controllers => {}
                () = leading.lost() => {
                    // Never keep writing beside a new leader: stop, and let the Pod restart as a standby.
                    telemetry.metrics.set_leader(false);
                    return Err(Error::Leadership("lost the Lease while leading".into()));
                }
            }
        }
        None => controllers.await,
    }
    telemetry.metrics.set_leader(false);
    if let Some(leadership) = leadership {
        leadership.release().await?;
        tracing::info!("released the leader Lease");
    }
    Ok(())
}

/// SIGTERM (Kubernetes stopping the Pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

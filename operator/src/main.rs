//! `govpaas-operator`: runs govpaas's controllers against a cluster.
//!
//! Credentials come from `--kubeconfig`, else the usual inference (in-cluster service account,
//! `$KUBECONFIG`, `~/.kube/config`). Logs go to stderr, their level from `RUST_LOG` (default
//! `info`), as text or JSON (`--log-format json`). SIGTERM or Ctrl-C stops it gracefully:
//! reconciles in flight finish, no new ones start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use govpaas_operator::error::{Error, Result};
use govpaas_operator::{tenant, workload};
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

    /// Log format on stderr.
    #[arg(long, env = "GOVPAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|err| Error::Config(format!("reading {}: {err}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|err| Error::Config(format!("{}: {err}", path.display())))?
        }
        None => Config::infer().await.map_err(|err| Error::Config(err.to_string()))?,
    };
    Client::try_from(config).map_err(Error::Kube)
}

async fn run(args: Args) -> Result<()> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        tenant_selector = args.tenant_selector.as_deref().unwrap_or("(all)"),
        namespace = %args.namespace,
        concurrency = args.concurrency,
        "govpaas-operator starting"
    );
    let settings = tenant::Settings {
        tenant_selector: args.tenant_selector,
        operator_namespace: args.namespace,
        concurrency: args.concurrency,
        instance,
    };
    // Portals and DocumentServices run beside the tenant controller, with the same settings.
    tokio::join!(tenant::run(client.clone(), settings.clone()), workload::runtime::run(client, settings));
    Ok(())
}

//! The command line: `kubectl govpaas <command>`, with kubectl's connection flags (kubectl passes
//! a plugin its arguments as they are, so the plugin reads `--kubeconfig`, `--context`, `--as` and
//! `--as-group` itself).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use govpaas_crds::quota::Resource;

use crate::access::ClientOptions;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-govpaas",
    bin_name = "kubectl govpaas",
    version,
    about = "The provincial admin's view of govpaas: the agency tree, quota carving, LGSP grants and certificates",
    after_help = "Every command reads the cluster with your own kubeconfig and permissions: one list per kind. An agency admin, who may not list Tenants, sees the Tenants it may read and is told what it cannot see."
)]
pub struct Args {
    /// The kubeconfig to use (default: the files KUBECONFIG names, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// A user to impersonate, as kubectl's --as.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// A group to impersonate (repeatable), as kubectl's --as-group.
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_groups: Vec<String>,
    /// Output format: table (default), json or yaml (stable field names, apiVersion
    /// kubectl.govpaas.io/v1), or dot (grants only: Graphviz).
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The agency tree by spec.parent: code, level, name, Ready, and per resource the share of the
    /// tenant's own quota in use and the share of its quota carved out for its children.
    Tree {
        /// Show only this Tenant and the Tenants below it.
        tenant: Option<String>,
        /// Resources to show in the table (comma-separated, or `all`): cpu, memory, storage, pods,
        /// services, publicHosts, lgspApis. JSON and YAML always carry every resource.
        #[arg(long, value_delimiter = ',', default_value = "cpu,memory,storage,pods")]
        resources: Vec<String>,
    },
    /// The quota carving from the top of the tree down to TENANT and its children: what each
    /// holds, carved and has free, and what blocks a child whose quota was refused.
    Quota {
        /// The Tenant.
        tenant: String,
    },
    /// Who may call what over the LGSP: each consumption (provider agency, API, consumer agency,
    /// Granted/Pending/Denied and why) and each provided API with its approvals.
    Grants {
        /// Only grants where this agency consumes or provides (either code form).
        #[arg(long, value_name = "CODE")]
        agency: Option<String>,
    },
    /// Every certificate govpaas reports: platform CA, tenant CAs, TLS, signing and LGSP client
    /// certificates, with notAfter, renewal time, and the overdue ones flagged.
    Certs {
        /// Only certificates that expire within this window: days (30d) or hours, minutes and
        /// seconds (720h, 1h30m).
        #[arg(long, value_name = "WINDOW", value_parser = crate::certs::parse_window)]
        expiring: Option<std::time::Duration>,
    },
    /// The LGSP gateway's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit log's hash chain and every checkpoint signature, with the gateway's
    /// certificate (Secret govpaas-gateway-tls) and the platform CA bundle (ConfigMap
    /// govpaas-trust) read from the cluster: OK, or the first tampered record (exit status 1).
    Verify {
        /// The audit log copied off the gateway's volume: a file, or a directory holding the log
        /// and its rotated files; repeatable. Verified as one chain, in the order of their first records.
        #[arg(long = "log", required = true, value_name = "PATH")]
        logs: Vec<PathBuf>,
        /// The gateway's earlier certificates (PEM; each `tls.crt` it held before a renewal): the
        /// cluster holds only the current one. Repeatable.
        #[arg(long = "certificate", value_name = "FILE")]
        certificates: Vec<PathBuf>,
        /// More platform CAs to trust (PEM), e.g. one a completed CA rotation retired: the
        /// cluster's bundle holds only the CAs trusted now. Repeatable.
        #[arg(long, value_name = "FILE")]
        ca: Vec<PathBuf>,
        /// Accept a set that does not start at the first record (older files deleted or kept
        /// elsewhere); the report says where it starts.
        #[arg(long)]
        partial: bool,
        /// govpaas's namespace (the Helm release's), where the Secret and the ConfigMap are.
        #[arg(short = 'n', long, default_value = "govpaas-system")]
        namespace: String,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
    Dot,
}

impl Args {
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            as_user: self.as_user.clone(),
            as_groups: self.as_groups.clone(),
        }
    }
}

/// `--resources`: names of `spec.quota` fields, or `all`.
pub fn parse_resources(names: &[String]) -> Result<Vec<Resource>, String> {
    if names.iter().any(|n| n == "all") {
        return Ok(Resource::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            let name = name.trim();
            Resource::ALL
                .into_iter()
                .find(|r| r.field().eq_ignore_ascii_case(name) || crate::tree::column_name(*r) == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Resource::ALL.iter().map(|r| r.field()).collect();
                    format!("unknown resource {name:?}: use {} or all", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line() {
        let args = Args::try_parse_from(["kubectl-govpaas", "tree", "so-yte", "-o", "json", "--as", "a@b.vn"]).unwrap();
        assert!(matches!(args.command, Command::Tree { tenant: Some(ref t), .. } if t == "so-yte"));
        assert_eq!(args.output, Output::Json);
        assert_eq!(args.client_options().as_user.as_deref(), Some("a@b.vn"));
        let args = Args::try_parse_from(["kubectl-govpaas", "certs", "--expiring", "30d"]).unwrap();
        assert!(matches!(args.command, Command::Certs { expiring: Some(d) } if d.as_secs() == 2_592_000));
        assert!(Args::try_parse_from(["kubectl-govpaas", "certs", "--expiring", "soon"]).is_err());
        assert!(Args::try_parse_from(["kubectl-govpaas", "quota"]).is_err(), "quota needs a tenant");
        let args = Args::try_parse_from([
            "kubectl-govpaas",
            "audit",
            "verify",
            "--log",
            "a.jsonl",
            "--log",
            "dir",
            "-n",
            "lgsp",
        ])
        .unwrap();
        assert!(matches!(
            args.command,
            Command::Audit(AuditCommand::Verify { ref logs, ref namespace, partial: false, .. })
                if logs.len() == 2 && namespace == "lgsp"
        ));
        assert!(Args::try_parse_from(["kubectl-govpaas", "audit", "verify"]).is_err(), "verify needs a log");
        <Args as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn resources_by_field_or_column_name() {
        assert_eq!(
            parse_resources(&["cpu".into(), "hosts".into(), "lgspApis".into()]),
            Ok(vec![Resource::Cpu, Resource::PublicHosts, Resource::LgspApis])
        );
        assert_eq!(parse_resources(&["all".into()]).unwrap().len(), 7);
        assert!(parse_resources(&["gpu".into()]).unwrap_err().contains("publicHosts"));
    }
}

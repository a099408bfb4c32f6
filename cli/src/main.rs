//! `kubectl-govpaas`: run as `kubectl govpaas …` once on PATH (see README.md).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use kubectl_govpaas::access::{self, AccessError, Reader};
use kubectl_govpaas::args::{self, Args, Command, Output};
use kubectl_govpaas::table::use_colour;
use kubectl_govpaas::{certs, grants, quota, tree};
use serde::Serialize;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What a command prints: its report (JSON/YAML) and the text of it (table or dot).
struct Printed<R> {
    report: R,
    text: String,
    notes: Vec<String>,
}

async fn run(args: &Args) -> Result<(), String> {
    let colour = use_colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    if args.output == Output::Dot && !matches!(args.command, Command::Grants { .. }) {
        return Err("-o dot is for `grants` only; use table, json or yaml".into());
    }
    let client = access::client(&args.client_options()).await.map_err(describe)?;
    let mut reader = Reader::new(client);
    match &args.command {
        Command::Tree { tenant, resources } => {
            let resources = args::parse_resources(resources)?;
            let tenants = reader.tenants().await.map_err(describe)?;
            let mut report =
                tree::build(&tenants.items, tenants.scope, tenant.as_deref()).map_err(|e| e.to_string())?;
            report.notes.splice(0..0, reader.notes.clone());
            let text = tree::render(&report, &resources, colour);
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes })
        }
        Command::Quota { tenant } => {
            let tenants = reader.tenants().await.map_err(describe)?;
            let mut report = quota::build(&tenants.items, tenants.scope, tenant).map_err(|e| e.to_string())?;
            report.notes.splice(0..0, reader.notes.clone());
            let text = quota::render(&report, colour);
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes })
        }
        Command::Grants { agency } => {
            let tenants = reader.tenants().await.map_err(describe)?;
            let (services, scope) = reader.namespaced(&tenants).await.map_err(describe)?;
            let mut report = grants::build(&services, &tenants.items, scope, agency.as_deref());
            report.notes = reader.notes.clone();
            let text = if args.output == Output::Dot { grants::dot(&report) } else { grants::render(&report, colour) };
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes })
        }
        Command::Certs { expiring } => {
            let platform = reader.platform().await.map_err(describe)?;
            let tenants = reader.tenants().await.map_err(describe)?;
            let (portals, a) = reader.namespaced(&tenants).await.map_err(describe)?;
            let (document_services, b) = reader.namespaced(&tenants).await.map_err(describe)?;
            let (data_sharing, c) = reader.namespaced(&tenants).await.map_err(describe)?;
            let scope = [tenants.scope, a, b, c]
                .into_iter()
                .find(|s| *s == kubectl_govpaas::Scope::Partial)
                .unwrap_or(kubectl_govpaas::Scope::Complete);
            let sources = certs::Sources {
                platform: platform.as_ref(),
                tenants: &tenants.items,
                portals: &portals,
                document_services: &document_services,
                data_sharing: &data_sharing,
            };
            let now = k8s_openapi::jiff::Timestamp::now();
            let mut report = certs::build(sources, scope, now, *expiring);
            report.notes = reader.notes.clone();
            let text = certs::render(&report, colour);
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes })
        }
    }
}

/// The report on stdout; notes (what the user could not see) on stderr, as kubectl's warnings.
fn print<R: Serialize>(output: Output, printed: Printed<R>) -> Result<(), String> {
    let body = match output {
        Output::Table | Output::Dot => printed.text,
        Output::Json => serde_json::to_string_pretty(&printed.report).map_err(|e| e.to_string())? + "\n",
        Output::Yaml => serde_yaml::to_string(&printed.report).map_err(|e| e.to_string())?,
    };
    for note in &printed.notes {
        eprintln!("note: {note}");
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = stdout.write_all(body.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

fn describe(error: AccessError) -> String {
    error.to_string()
}

//! `kubectl-govpaas`: run as `kubectl govpaas …` once on PATH (see README.md).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use kubectl_govpaas::access::{self, AccessError, Reader};
use kubectl_govpaas::args::{self, Args, AuditCommand, Command, Output};
use kubectl_govpaas::audit::{self, GATEWAY_TLS_SECRET, Source, TRUST_CONFIG_MAP};
use kubectl_govpaas::table::use_colour;
use kubectl_govpaas::{certs, grants, quota, tree};
use serde::Serialize;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(code) => code,
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

async fn run(args: &Args) -> Result<ExitCode, String> {
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
            print(args.output, Printed { report, text, notes }).map(|()| ExitCode::SUCCESS)
        }
        Command::Quota { tenant } => {
            let tenants = reader.tenants().await.map_err(describe)?;
            let mut report = quota::build(&tenants.items, tenants.scope, tenant).map_err(|e| e.to_string())?;
            report.notes.splice(0..0, reader.notes.clone());
            let text = quota::render(&report, colour);
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes }).map(|()| ExitCode::SUCCESS)
        }
        Command::Grants { agency } => {
            let tenants = reader.tenants().await.map_err(describe)?;
            let (services, scope) = reader.namespaced(&tenants).await.map_err(describe)?;
            let mut report = grants::build(&services, &tenants.items, scope, agency.as_deref());
            report.notes = reader.notes.clone();
            let text = if args.output == Output::Dot { grants::dot(&report) } else { grants::render(&report, colour) };
            let notes = report.notes.clone();
            print(args.output, Printed { report, text, notes }).map(|()| ExitCode::SUCCESS)
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
            print(args.output, Printed { report, text, notes }).map(|()| ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { logs, certificates, ca, partial, namespace }) => {
            let files = AuditFiles { logs, certificates, ca, partial: *partial };
            // 1 says the log failed verification; 2 that it could not be verified.
            Ok(audit_verify(&reader, args.output, &files, namespace).await.unwrap_or_else(|message| {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }))
        }
    }
}

/// What `audit verify` was given on the command line.
struct AuditFiles<'a> {
    logs: &'a [std::path::PathBuf],
    certificates: &'a [std::path::PathBuf],
    ca: &'a [std::path::PathBuf],
    partial: bool,
}

/// `audit verify`: the gateway's certificate and the platform CA bundle from the cluster (a
/// missing one is an error unless files stand in for it), then the gateway's verifier.
async fn audit_verify(
    reader: &Reader,
    output: Output,
    files: &AuditFiles<'_>,
    namespace: &str,
) -> Result<ExitCode, String> {
    let mut notes = Vec::new();
    // What cannot be read from the cluster: an error, or a note when files were given instead.
    let mut missing = |given: bool, message: String| {
        if given {
            notes.push(message);
            Ok(())
        } else {
            Err(message)
        }
    };

    let mut certificates = Vec::new();
    let secret = format!("Secret {namespace}/{GATEWAY_TLS_SECRET}");
    let has_files = !files.certificates.is_empty();
    match reader.secret_key(namespace, GATEWAY_TLS_SECRET, "tls.crt").await {
        Ok(Some(pem)) => certificates.push(Source::from_pem(secret, &pem)?),
        Ok(None) => missing(
            has_files,
            format!(
                "{secret} does not exist or holds no tls.crt: is govpaas installed in namespace {namespace} (-n) and the Platform Ready? Or give the gateway's certificate with --certificate"
            ),
        )?,
        Err(error) => missing(has_files, format!("{error}. Or give the gateway's certificate with --certificate"))?,
    }
    for file in files.certificates {
        certificates.push(Source::from_file(file)?);
    }

    let mut bundle = Vec::new();
    let config_map = format!("ConfigMap {namespace}/{TRUST_CONFIG_MAP}");
    let has_files = !files.ca.is_empty();
    match reader.config_map_key(namespace, TRUST_CONFIG_MAP, "ca.crt").await {
        Ok(Some(pem)) => bundle.push(Source::from_pem(config_map, pem.as_bytes())?),
        Ok(None) => missing(
            has_files,
            format!(
                "{config_map} does not exist or holds no ca.crt: is govpaas installed in namespace {namespace} (-n)? Or give the platform CA bundle with --ca"
            ),
        )?,
        Err(error) => missing(has_files, format!("{error}. Or give the platform CA bundle with --ca"))?,
    }
    for file in files.ca {
        bundle.push(Source::from_file(file)?);
    }

    let (verification, mut report) = audit::verify(files.logs, &certificates, &bundle, files.partial)?;
    report.notes.splice(0..0, notes);
    let text = audit::render(&report);
    let notes = report.notes.clone();
    print(output, Printed { report, text, notes })?;
    Ok(match verification.verdict {
        govpaas_audit::Verdict::Verified(_) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
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

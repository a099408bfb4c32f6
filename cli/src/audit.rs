//! `kubectl govpaas audit verify`: the LGSP gateway's audit log verified with the gateway's own
//! verifier (the crate `govpaas_audit`), against certificates read from the cluster with the
//! user's credentials — the gateway's certificate from the Secret `govpaas-gateway-tls` (its
//! `tls.crt`: the certificate that signs checkpoints, with its chain) and the platform CA bundle
//! from the ConfigMap `govpaas-trust` (its `ca.crt`), both in govpaas's namespace — plus any
//! certificate or CA bundle given as a file (the gateway's earlier certificates, a CA retired by
//! a rotation: the cluster holds only the current ones).
//!
//! The log itself is read from files: the gateway's volume is not reachable through the API
//! server (its image has no shell, so `kubectl cp` cannot copy from it); copy the log and its
//! rotated files off the volume, as docs/lgsp.md says to for retention.

use std::path::PathBuf;

use govpaas_audit::{UNKNOWN_SIGNER, Verdict, Verification};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::API_VERSION;

/// The Secret holding the gateway's certificate (`tls.crt`), in govpaas's namespace.
pub const GATEWAY_TLS_SECRET: &str = "govpaas-gateway-tls";
/// The ConfigMap holding the platform CA bundle (`ca.crt`), in govpaas's namespace.
pub const TRUST_CONFIG_MAP: &str = "govpaas-trust";

/// Certificates from one place: the cluster object or the file they were read from.
#[derive(Debug, Clone)]
pub struct Source {
    /// `Secret govpaas-system/govpaas-gateway-tls`, `ConfigMap …`, or a file's path.
    pub origin: String,
    pub certificates: Vec<CertificateDer<'static>>,
}

impl Source {
    /// The certificates of a PEM bundle read from `origin`.
    pub fn from_pem(origin: String, pem: &[u8]) -> Result<Self, String> {
        let certificates = govpaas_pki::verify::chain_from_pem("certificate", pem)
            .map_err(|error| format!("{origin}: no certificate could be read ({error})"))?;
        Ok(Source { origin, certificates })
    }

    /// The certificates of a PEM file.
    pub fn from_file(path: &PathBuf) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        Self::from_pem(format!("file {}", path.display()), &pem)
    }
}

/// The verification (`kind: AuditVerification`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub api_version: String,
    pub kind: String,
    /// `Verified`, `Tampered` or `UntrustedSigner`.
    pub result: String,
    /// The files verified as one chain, in chain order.
    pub files: Vec<String>,
    /// The sentence `govpaas-gateway audit verify` prints.
    pub message: String,
    /// Verified: what the chain holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSummary>,
    /// Tampered: the first bad record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The certificates that may have signed checkpoints, with their chains, and where each came from.
    pub certificates: Vec<CertificateOrigin>,
    /// The platform CA bundle signers must chain to, and where each CA came from.
    pub ca_bundle: Vec<CertificateOrigin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChainSummary {
    pub records: u64,
    pub checkpoints: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint: chained, not signed (truncation there is undetectable).
    pub unsigned_tail: u64,
    /// 1 unless older files were left out (`--partial`).
    pub first_seq: u64,
    /// SHA-256 fingerprints of the certificates that signed checkpoints.
    pub signers: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateOrigin {
    /// SHA-256 of the certificate, hex (what a checkpoint's `signer` names).
    pub fingerprint: String,
    pub source: String,
}

fn origins(sources: &[Source]) -> Vec<CertificateOrigin> {
    sources
        .iter()
        .flat_map(|source| {
            source.certificates.iter().map(|der| CertificateOrigin {
                fingerprint: govpaas_pki::verify::fingerprint(der),
                source: source.origin.clone(),
            })
        })
        .collect()
}

/// Verifies `logs` against the certificates and CA bundle of `certificates` and `ca`.
pub fn verify(
    logs: &[PathBuf],
    certificates: &[Source],
    ca: &[Source],
    partial: bool,
) -> Result<(Verification, AuditReport), String> {
    let signers: Vec<CertificateDer<'static>> =
        certificates.iter().flat_map(|s| s.certificates.iter().cloned()).collect();
    let anchors: Vec<CertificateDer<'static>> = ca.iter().flat_map(|s| s.certificates.iter().cloned()).collect();
    let verification = govpaas_audit::verify_files(logs, &signers, &anchors, partial)?;
    let report = report(&verification, certificates, ca);
    Ok((verification, report))
}

/// The report of a verification (pure).
pub fn report(verification: &Verification, certificates: &[Source], ca: &[Source]) -> AuditReport {
    let ca_names: Vec<&str> = ca.iter().map(|s| s.origin.as_str()).collect();
    let ca_names = ca_names.join(" and ");
    let name = &verification.name;
    let mut notes = Vec::new();
    let (result, message, chain, failure) = match &verification.verdict {
        Verdict::Verified(report) => (
            "Verified",
            format!("{name}: OK, {report}; every checkpoint signer chains to the platform CA of {ca_names}"),
            Some(ChainSummary {
                records: report.records,
                checkpoints: report.checkpoints,
                last_checkpoint_seq: report.last_checkpoint_seq,
                unsigned_tail: report.unsigned_tail,
                first_seq: report.first_seq,
                signers: report.signers.keys().cloned().collect(),
            }),
            None,
        ),
        Verdict::Tampered(failure) => {
            if failure.reason.starts_with(UNKNOWN_SIGNER) {
                notes.push(
                    "the cluster holds only the gateway's current certificate: if the gateway's certificate was renewed since that checkpoint, give the earlier ones with --certificate (keep each tls.crt of govpaas-gateway-tls with the log)"
                        .to_owned(),
                );
            }
            (
                "Tampered",
                format!("{name}: TAMPERED at {failure}"),
                None,
                Some(Failure {
                    file: failure.file.clone(),
                    line: failure.line,
                    seq: failure.seq,
                    reason: failure.reason.clone(),
                }),
            )
        }
        Verdict::UntrustedSigner(reason) => {
            notes.push("the cluster's bundle holds only the CAs trusted now: a log signed before a completed CA rotation needs the retired CA, given with --ca".to_owned());
            ("UntrustedSigner", format!("{name}: UNTRUSTED SIGNER: {reason} (CA bundle of {ca_names})"), None, None)
        }
    };
    AuditReport {
        api_version: API_VERSION.to_owned(),
        kind: "AuditVerification".to_owned(),
        result: result.to_owned(),
        files: verification.files.iter().map(|f| f.display().to_string()).collect(),
        message,
        chain,
        failure,
        certificates: origins(certificates),
        ca_bundle: origins(ca),
        notes,
    }
}

/// The text of a report: its sentence, then where the certificates came from.
pub fn render(report: &AuditReport) -> String {
    let mut out = format!("{}\n", report.message);
    for certificate in &report.certificates {
        out.push_str(&format!("  certificate {} from {}\n", certificate.fingerprint, certificate.source));
    }
    for ca in &report.ca_bundle {
        out.push_str(&format!("  trusted CA {} from {}\n", ca.fingerprint, ca.source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_audit::{VerifyFailure, VerifyReport};

    fn source(origin: &str) -> Source {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["lgsp.danang.gov.vn".to_owned()]).unwrap().self_signed(&key).unwrap();
        Source::from_pem(origin.to_owned(), cert.pem().as_bytes()).unwrap()
    }

    #[test]
    fn a_tampered_log_is_reported_at_its_first_bad_record_with_where_the_certificates_came_from() {
        let certificates = [source("Secret govpaas-system/govpaas-gateway-tls")];
        let ca = [source("ConfigMap govpaas-system/govpaas-trust")];
        let verification = Verification {
            name: "audit.jsonl".to_owned(),
            files: vec![PathBuf::from("audit.jsonl")],
            verdict: Verdict::Tampered(VerifyFailure {
                file: None,
                line: 3,
                seq: Some(3),
                reason: "its hash does not match its contents: the record was altered".to_owned(),
            }),
        };
        let report = report(&verification, &certificates, &ca);
        assert_eq!(report.result, "Tampered");
        assert_eq!(
            report.message,
            "audit.jsonl: TAMPERED at line 3 (record 3): its hash does not match its contents: the record was altered"
        );
        assert_eq!(report.failure.as_ref().map(|f| f.line), Some(3));
        assert!(report.notes.is_empty());
        let text = render(&report);
        assert!(text.contains("from Secret govpaas-system/govpaas-gateway-tls"), "{text}");
        assert!(text.contains("from ConfigMap govpaas-system/govpaas-trust"), "{text}");
        assert_eq!(
            report.certificates[0].fingerprint,
            govpaas_pki::verify::fingerprint(&certificates[0].certificates[0])
        );

        let unknown = Verification {
            verdict: Verdict::Tampered(VerifyFailure {
                file: None,
                line: 9,
                seq: Some(9),
                reason: format!("{UNKNOWN_SIGNER} (SHA-256 ab12)"),
            }),
            ..verification
        };
        let report = super::report(&unknown, &certificates, &ca);
        assert!(report.notes[0].contains("--certificate"), "{:?}", report.notes);
    }

    #[test]
    fn a_verified_log_names_the_bundle_it_chains_to() {
        let ca = [source("ConfigMap govpaas-system/govpaas-trust")];
        let verification = Verification {
            name: "audit.jsonl".to_owned(),
            files: vec![PathBuf::from("audit.jsonl")],
            verdict: Verdict::Verified(VerifyReport {
                records: 4,
                checkpoints: 2,
                last_checkpoint_seq: Some(4),
                unsigned_tail: 0,
                first_seq: 1,
                signers: Default::default(),
            }),
        };
        let report = report(&verification, &[], &ca);
        assert_eq!(report.result, "Verified");
        assert_eq!(report.chain.as_ref().map(|c| (c.records, c.checkpoints)), Some((4, 2)));
        assert!(
            report.message.ends_with(
                "every checkpoint signer chains to the platform CA of ConfigMap govpaas-system/govpaas-trust"
            ),
            "{}",
            report.message
        );
    }
}

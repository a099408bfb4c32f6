//! The LGSP gateway's audit log format and its verifier: what the gateway writes
//! (`govpaas-gateway`'s `audit` module appends records) and what `govpaas-gateway audit verify`
//! and `kubectl govpaas audit verify` check. A crate of its own so that the kubectl plugin
//! verifies with the gateway's own code without linking the gateway.
//!
//! A line is the record's canonical JSON with its own hash appended as the last field:
//!
//! ```text
//! {"seq":7,"time":"2026-03-01T08:00:00.123Z","kind":"exchange",…,"prev":"<hex>","hash":"<hex>"}
//! ```
//!
//! - canonical bytes = the line without `,"hash":"…"` (exactly as written, byte for byte);
//! - `hash` = SHA-256(previous record's hash (32 bytes; zeros before the first record) ‖ canonical bytes);
//! - a `checkpoint` record carries `head` (= its `prev`, the chain head), the SHA-256 fingerprint
//!   of the signing certificate, and an ECDSA P-256/SHA-256 signature (ASN.1 DER, hex) over
//!   `govpaas-lgsp-audit-checkpoint/v1\n<seq>\n<head>`.
//!
//! What [`verify_log`] detects, reporting the first bad line: an edited byte anywhere in a record
//! (its hash no longer matches), a deleted, inserted or reordered record (sequence numbers and
//! the `prev` links break), a rewritten chain whose hashes were all recomputed (the next
//! checkpoint's signature no longer covers its head), and a forged checkpoint (the signature does
//! not verify with the given certificate, or it names an unknown one). [`verify_signers`] then
//! checks that every signing certificate chains to the platform CA.
//!
//! What it cannot detect: records removed from the end after the last checkpoint (truncation, or
//! a whole file cut back to an earlier checkpoint). Hashes alone need no secret, so anything after
//! the last checkpoint is only as trustworthy as the file's storage; a shorter checkpoint interval
//! narrows that window.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `prev` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];
/// What separates a record's canonical bytes from its hash.
pub const HASH_FIELD: &str = ",\"hash\":\"";
/// How a failure names a checkpoint signed by a certificate that was not given (followed by
/// its fingerprint): a tool that fetched the certificates itself can say where to find the others.
pub const UNKNOWN_SIGNER: &str = "checkpoint signed by an unknown certificate";
/// Longest request path recorded; longer ones are cut (and marked with `…`).
const MAX_RECORDED_PATH: usize = 2048;

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// The gateway opened the log (a start or restart).
    #[serde(rename_all = "camelCase")]
    Start { gateway_version: String },
    /// One request and its answer.
    #[serde(rename_all = "camelCase")]
    Exchange(Exchange),
    /// A signature over the chain head.
    #[serde(rename_all = "camelCase")]
    Checkpoint { head: String, signer: String, signature: String },
    /// What was refused before a request could be audited one by one (a refused or timed-out
    /// TLS handshake, a request head hyper could not parse, a connection over a cap or idle too
    /// long), counted since the previous such record.
    #[serde(rename_all = "camelCase")]
    Refusals(RefusalCounts),
}

/// The counts of a `refusals` record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalCounts {
    pub handshakes_refused: u64,
    pub handshakes_timed_out: u64,
    pub over_listener_cap: u64,
    pub over_address_cap: u64,
    /// Requests hyper answered itself (400, 414, 431): their heads could not be parsed.
    pub malformed_requests: u64,
    pub headers_timed_out: u64,
    pub idle_closed: u64,
}

impl RefusalCounts {
    pub fn is_empty(&self) -> bool {
        *self == RefusalCounts::default()
    }
}

/// One request through the gateway and its result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    /// The verified identity URI of the caller; absent on the open-data listener or when refused.
    pub caller: Option<String>,
    /// The client's address and port.
    pub client: String,
    pub provider: Option<String>,
    pub api: Option<String>,
    pub method: String,
    /// The request path (the query string is not recorded: it may carry personal data).
    pub path: String,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration_micros: u64,
    /// The client was gone (closed the connection, reset the stream) before the answer was
    /// ready: the exchange happened, the client did not get its answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_gone: bool,
    /// SHA-256 of the request body, hexadecimal: recorded for document exchange (the edXML
    /// package as the gateway received and forwarded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_sha256: Option<String>,
}

impl Exchange {
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = if path.len() > MAX_RECORDED_PATH {
            let mut end = MAX_RECORDED_PATH;
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &path[..end])
        } else {
            path.to_owned()
        };
        self
    }
}

/// A record in its canonical form: field order is the order of this struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canonical {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub entry: Entry,
    /// The previous record's hash, hex.
    pub prev: String,
}

/// What a checkpoint signs.
pub fn checkpoint_message(seq: u64, head: &str) -> Vec<u8> {
    format!("govpaas-lgsp-audit-checkpoint/v1\n{seq}\n{head}").into_bytes()
}

/// SHA-256(previous record's hash ‖ canonical bytes).
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The line of `canonical` (newline included) chained after `prev`, and its hash.
pub fn encode_line(prev: &[u8; 32], canonical: &Canonical) -> (Vec<u8>, [u8; 32]) {
    let mut line = serde_json::to_vec(canonical).expect("audit records serialise");
    let hash = chain_hash(prev, &line);
    line.pop(); // the closing brace
    line.extend_from_slice(HASH_FIELD.as_bytes());
    line.extend_from_slice(hex::encode(hash).as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// A line read back: the record, its canonical bytes (the line without its hash field) and the
/// hash it claims.
pub struct ParsedLine {
    pub canonical: Canonical,
    pub canonical_bytes: Vec<u8>,
    pub hash: [u8; 32],
}

/// Reads one line of the log; the reason when it is not a record.
pub fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let (head, tail) = line.rsplit_once(HASH_FIELD).ok_or("no hash field at the end of the record")?;
    let hash_hex = tail.strip_suffix("\"}").ok_or("the record does not end with its hash")?;
    // Exactly as the writer encodes it (lower case): the hash field is outside the bytes it
    // covers, so a second spelling of the same hash would be an edit nothing notices.
    let hash: [u8; 32] = hex::decode(hash_hex)
        .ok()
        .and_then(|h| h.try_into().ok())
        .filter(|h: &[u8; 32]| hex::encode(h) == hash_hex)
        .ok_or("the hash field is not 64 lower-case hexadecimal digits")?;
    let mut canonical_bytes = head.as_bytes().to_vec();
    canonical_bytes.push(b'}');
    let canonical: Canonical =
        serde_json::from_slice(&canonical_bytes).map_err(|e| format!("not an audit record: {e}"))?;
    Ok(ParsedLine { canonical, canonical_bytes, hash })
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint: chained, but not signed yet.
    pub unsigned_tail: u64,
    /// The first record's sequence number (1 unless earlier files were left out).
    pub first_seq: u64,
    /// Every certificate that signed a checkpoint (by fingerprint), with the times of its
    /// first and last checkpoint.
    pub signers: std::collections::BTreeMap<String, (OffsetDateTime, OffsetDateTime)>,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records verified, {} signed checkpoints", self.records, self.checkpoints)?;
        match self.last_checkpoint_seq {
            Some(seq) => write!(f, ", the last at record {seq}")?,
            None => write!(f, " (nothing in this log is signed yet)")?,
        }
        if self.unsigned_tail > 0 {
            write!(
                f,
                "; the {} records after it are chained but not signed (truncation there cannot be detected)",
                self.unsigned_tail
            )?;
        }
        if self.first_seq > 1 {
            write!(f, "; it starts at record {} (the files before it were not given)", self.first_seq)?;
        }
        Ok(())
    }
}

/// The first bad record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}{}: {reason}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), seq.map(|s| format!(" (record {s})")).unwrap_or_default())]
pub struct VerifyFailure {
    /// The file, when a set of files was verified.
    pub file: Option<String>,
    /// 1-based line number in the file.
    pub line: u64,
    /// The sequence number the line claims, when it could be read.
    pub seq: Option<u64>,
    pub reason: String,
}

/// Verifies the whole chain and every checkpoint signature against `certificates` (the gateway's
/// certificates over the log's lifetime; a checkpoint names the one that signed it).
pub fn verify_log(log: impl BufRead, certificates: &[CertificateDer<'_>]) -> Result<VerifyReport, VerifyFailure> {
    let mut verifier = Verifier::new(certificates, false);
    verifier.file(None, log)?;
    Ok(verifier.report)
}

/// Verifies a rotated log as one chain: `files` in chain order (the rotated files, oldest
/// first, then the current one). The chain must start at record 1 unless `partial` (older files
/// deleted or kept elsewhere), and continue across files.
pub fn verify_logs<R: BufRead>(
    files: Vec<(String, R)>,
    certificates: &[CertificateDer<'_>],
    partial: bool,
) -> Result<VerifyReport, VerifyFailure> {
    let mut verifier = Verifier::new(certificates, partial);
    for (name, reader) in files {
        verifier.file(Some(name), reader)?;
    }
    Ok(verifier.report)
}

/// The chain as it is read, record after record, file after file.
struct Verifier<'a> {
    signers: Vec<(String, &'a CertificateDer<'a>)>,
    report: VerifyReport,
    /// The previous record's hash; `None` before the first record.
    prev: Option<[u8; 32]>,
    partial: bool,
}

impl<'a> Verifier<'a> {
    fn new(certificates: &'a [CertificateDer<'a>], partial: bool) -> Self {
        Verifier {
            signers: certificates.iter().map(|c| (govpaas_pki::verify::fingerprint(c), c)).collect(),
            report: VerifyReport {
                records: 0,
                checkpoints: 0,
                last_checkpoint_seq: None,
                unsigned_tail: 0,
                first_seq: 1,
                signers: Default::default(),
            },
            prev: None,
            partial,
        }
    }

    fn file(&mut self, name: Option<String>, reader: impl BufRead) -> Result<(), VerifyFailure> {
        for (index, line) in reader.lines().enumerate() {
            let fail = |seq, reason: String| VerifyFailure { file: name.clone(), line: index as u64 + 1, seq, reason };
            let line = line.map_err(|e| fail(None, format!("cannot be read: {e}")))?;
            self.record(&line).map_err(|(seq, reason)| fail(seq, reason))?;
        }
        Ok(())
    }

    fn record(&mut self, line: &str) -> Result<(), (Option<u64>, String)> {
        let parsed = parse_line(line).map_err(|reason| (None, reason))?;
        let record = &parsed.canonical;
        let seq = Some(record.seq);
        let prev = match self.prev {
            Some(prev) => prev,
            // The first record given: the genesis, or (partial) wherever the given files start.
            None if self.partial => {
                self.report.first_seq = record.seq;
                hex::decode(&record.prev)
                    .ok()
                    .and_then(|h| h.try_into().ok())
                    .ok_or((seq, "its prev is not a hash".to_owned()))?
            }
            None => GENESIS,
        };
        let expected_seq = self.report.first_seq + self.report.records;
        if record.seq != expected_seq {
            let reason = if self.prev.is_none() {
                format!(
                    "the log starts at record {} where 1 was expected: the files before it are missing (give them all, or --partial)",
                    record.seq
                )
            } else {
                format!(
                    "sequence number {} where {expected_seq} was expected: a record was deleted, inserted or reordered",
                    record.seq
                )
            };
            return Err((seq, reason));
        }
        if record.prev != hex::encode(prev) {
            return Err((
                seq,
                "its prev does not match the previous record's hash: the chain is broken here".to_owned(),
            ));
        }
        if chain_hash(&prev, &parsed.canonical_bytes) != parsed.hash {
            return Err((seq, "its hash does not match its contents: the record was altered".to_owned()));
        }
        if let Entry::Checkpoint { head, signer, signature } = &record.entry {
            if *head != record.prev {
                return Err((seq, "the checkpoint's head is not the chain head before it".to_owned()));
            }
            let Some((_, certificate)) = self.signers.iter().find(|(fp, _)| fp == signer) else {
                return Err((seq, format!("{UNKNOWN_SIGNER} (SHA-256 {signer})")));
            };
            let signature =
                hex::decode(signature).map_err(|_| (seq, "checkpoint signature is not hexadecimal".to_owned()))?;
            webpki::EndEntityCert::try_from(*certificate)
                .and_then(|cert| {
                    cert.verify_signature(
                        webpki::ring::ECDSA_P256_SHA256,
                        &checkpoint_message(record.seq, head),
                        &signature,
                    )
                })
                .map_err(|e| (seq, format!("checkpoint signature does not verify ({e:?}): forged or altered")))?;
            let time = OffsetDateTime::parse(&record.time, &Rfc3339)
                .map_err(|e| (seq, format!("the checkpoint's time {:?} is not RFC 3339: {e}", record.time)))?;
            let span = self.report.signers.entry(signer.clone()).or_insert((time, time));
            span.0 = span.0.min(time);
            span.1 = span.1.max(time);
            self.report.checkpoints += 1;
            self.report.last_checkpoint_seq = Some(record.seq);
            self.report.unsigned_tail = 0;
        } else {
            self.report.unsigned_tail += 1;
        }
        self.report.records += 1;
        self.prev = Some(parsed.hash);
        Ok(())
    }
}

/// Checks that every certificate that signed checkpoints chains to `ca` (the platform CA
/// bundle) and was valid when it signed (at its first and last checkpoint). `certificates` are
/// all the certificates given (the gateway's, with their chains): any of them may serve as an
/// intermediate.
pub fn verify_signers(
    report: &VerifyReport,
    certificates: &[CertificateDer<'_>],
    ca: &[CertificateDer<'_>],
) -> Result<(), String> {
    let anchors: Vec<_> = ca
        .iter()
        .map(|der| webpki::anchor_from_trusted_cert(der).map_err(|e| format!("the CA bundle: {e:?}")))
        .collect::<Result<_, _>>()?;
    if anchors.is_empty() {
        return Err("the CA bundle holds no certificate".to_owned());
    }
    for (fingerprint, (first, last)) in &report.signers {
        let Some(leaf) = certificates.iter().find(|c| govpaas_pki::verify::fingerprint(c) == *fingerprint) else {
            return Err(format!("the certificate {fingerprint} that signed checkpoints was not given"));
        };
        let intermediates: Vec<CertificateDer<'_>> =
            certificates.iter().filter(|c| *c != leaf).map(|c| c.clone().into_owned()).collect();
        let end_entity =
            webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("certificate {fingerprint}: {e:?}"))?;
        for at in [first, last] {
            let time = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(at.unix_timestamp()).unwrap_or_default(),
            ));
            end_entity
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &anchors,
                    &intermediates,
                    time,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .map_err(|e| {
                    format!(
                        "the certificate {fingerprint} that signed checkpoints does not chain to the platform CA (at {at}): {e:?}"
                    )
                })?;
        }
    }
    Ok(())
}

/// The files of `logs` (directories expanded to their log files: every file whose name contains
/// `.jsonl`, torn records set aside after a crash excepted), in chain order: by the sequence
/// number of their first record. Empty files hold nothing to verify and are left out.
pub fn log_files(logs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for log in logs {
        if log.is_dir() {
            let entries = std::fs::read_dir(log).map_err(|error| format!("{}: {error}", log.display()))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Torn records set aside after a crash are not part of the chain.
                if entry.path().is_file() && name.contains(".jsonl") && !name.contains(".torn.") {
                    files.push(entry.path());
                }
            }
        } else {
            files.push(log.clone());
        }
    }
    let mut ordered = Vec::new();
    for file in files {
        let text = std::fs::File::open(&file).map_err(|error| format!("{}: {error}", file.display()))?;
        let mut first = String::new();
        io::BufReader::new(text).read_line(&mut first).map_err(|error| format!("{}: {error}", file.display()))?;
        if first.is_empty() {
            continue;
        }
        let seq = serde_json::from_str::<serde_json::Value>(&first).ok().and_then(|r| r["seq"].as_u64()).unwrap_or(0);
        ordered.push((seq, file));
    }
    ordered.sort();
    Ok(ordered.into_iter().map(|(_, file)| file).collect())
}

/// What verifying a set of log files concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record chains, and every checkpoint is signed by a given certificate that chains to
    /// the platform CA bundle.
    Verified(VerifyReport),
    /// The first bad record.
    Tampered(VerifyFailure),
    /// The chain holds, but a certificate that signed checkpoints does not chain to the platform
    /// CA bundle (or was not valid when it signed): why.
    UntrustedSigner(String),
}

/// A set of log files verified: their name for a report, and the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The file, or `first … last (N files)`.
    pub name: String,
    pub files: Vec<PathBuf>,
    pub verdict: Verdict,
}

/// Verifies the log files of `logs` ([`log_files`]) as one chain against `certificates` (the
/// gateway's certificates, with their chains), and every checkpoint signer against `anchors` (the
/// platform CA bundle). `Err` when a file cannot be read or there is nothing to verify.
pub fn verify_files(
    logs: &[PathBuf],
    certificates: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'_>],
    partial: bool,
) -> Result<Verification, String> {
    let files = log_files(logs)?;
    if files.is_empty() {
        let given: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
        return Err(format!("no audit records in {}", given.join(", ")));
    }
    let mut readers = Vec::new();
    for file in &files {
        let opened = std::fs::File::open(file).map_err(|error| format!("{}: {error}", file.display()))?;
        readers.push((file.display().to_string(), io::BufReader::new(opened)));
    }
    let name = files_name(&files);
    let verdict = match verify_logs(readers, certificates, partial) {
        Err(failure) => Verdict::Tampered(failure),
        Ok(report) => match verify_signers(&report, certificates, anchors) {
            Ok(()) => Verdict::Verified(report),
            Err(reason) => Verdict::UntrustedSigner(reason),
        },
    };
    Ok(Verification { name, files, verdict })
}

fn files_name(files: &[PathBuf]) -> String {
    let show = |path: &Path| path.display().to_string();
    match files {
        [one] => show(one),
        [first, .., last] => format!("{} … {} ({} files)", show(first), show(last), files.len()),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, prev: &[u8; 32], entry: Entry) -> (Vec<u8>, [u8; 32]) {
        let canonical = Canonical { seq, time: "2026-03-01T08:00:00Z".to_owned(), entry, prev: hex::encode(prev) };
        encode_line(prev, &canonical)
    }

    #[test]
    fn an_encoded_line_parses_back_to_its_record_and_hash() {
        let (line, hash) = record(1, &GENESIS, Entry::Start { gateway_version: "0.1.0".to_owned() });
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with(&format!("{HASH_FIELD}{}\"}}\n", hex::encode(hash))), "{text}");
        let parsed = parse_line(text.trim_end()).unwrap();
        assert_eq!(parsed.hash, hash);
        assert_eq!(parsed.canonical.seq, 1);
        assert_eq!(chain_hash(&GENESIS, &parsed.canonical_bytes), hash);
        assert!(parse_line("{\"seq\":1}").is_err());
        // The same hash spelled in upper case is an edit: refused, not read as the same record.
        let hash_hex = hex::encode(hash);
        let shouted = text.trim_end().replace(&hash_hex, &hash_hex.to_uppercase());
        assert_ne!(shouted, text.trim_end(), "the hash has letters to shout");
        assert!(parse_line(&shouted).err().is_some_and(|reason| reason.contains("lower-case")));
    }

    #[test]
    fn log_files_are_ordered_by_their_first_record_and_torn_tails_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (first, hash) = record(1, &GENESIS, Entry::Start { gateway_version: "0.1.0".to_owned() });
        let (second, _) = record(2, &hash, Entry::Start { gateway_version: "0.1.0".to_owned() });
        // Names sort the other way round from the chain.
        std::fs::write(dir.path().join("a.jsonl"), &second).unwrap();
        std::fs::write(dir.path().join("b.jsonl.00000000000000000001"), &first).unwrap();
        std::fs::write(dir.path().join("a.jsonl.torn.1700000000"), b"{\"seq\":3").unwrap();
        std::fs::write(dir.path().join("empty.jsonl"), b"").unwrap();
        let files = log_files(&[dir.path().to_owned()]).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["b.jsonl.00000000000000000001", "a.jsonl"]);
        assert!(files_name(&files).ends_with("(2 files)"));
        let verified = verify_files(&[dir.path().to_owned()], &[], &[], false).unwrap();
        // The chain holds; an empty CA bundle is refused even for a log nothing signed.
        assert!(
            matches!(verified.verdict, Verdict::UntrustedSigner(ref reason) if reason.contains("holds no certificate")),
            "{verified:?}"
        );
        let err = verify_files(&[dir.path().join("empty.jsonl")], &[], &[], false).unwrap_err();
        assert!(err.starts_with("no audit records in"), "{err}");
    }
}

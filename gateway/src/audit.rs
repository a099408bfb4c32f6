//! The tamper-evident audit log: one JSON line per exchange, each hash-chained to the one before,
//! with checkpoints that sign the chain head (X-Road's message log, in one file).
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
//! not verify with the given certificate, or it names an unknown one).
//!
//! What it cannot detect: records removed from the end after the last checkpoint (truncation, or
//! a whole file cut back to an earlier checkpoint). Hashes alone need no secret, so anything after
//! the last checkpoint is only as trustworthy as the file's storage; a shorter checkpoint interval
//! narrows that window. Copying checkpoints elsewhere (not done yet) would close it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const GENESIS: [u8; 32] = [0; 32];
const HASH_FIELD: &str = ",\"hash\":\"";
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

/// The canonical form: field order is the order of this struct.
#[derive(Serialize, Deserialize)]
struct Canonical {
    seq: u64,
    time: String,
    #[serde(flatten)]
    entry: Entry,
    prev: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "audit log {path} cannot be continued: {reason}; move it aside (keep it, it is evidence) and start a new log"
    )]
    CannotContinue { path: String, reason: String },
    #[error("checkpoint key: {0}")]
    Key(String),
}

/// The key that signs checkpoints: the gateway's own (ECDSA P-256, PKCS#8) and its certificate.
pub struct CheckpointSigner {
    key: EcdsaKeyPair,
    fingerprint: String,
}

impl CheckpointSigner {
    pub fn new(certificate: &CertificateDer<'_>, pkcs8: &[u8]) -> Result<Self, AuditError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|e| AuditError::Key(format!("an ECDSA P-256 PKCS#8 key is needed to sign checkpoints: {e}")))?;
        Ok(CheckpointSigner { key, fingerprint: govpaas_pki::verify::fingerprint(certificate) })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn checkpoint_message(seq: u64, head: &str) -> Vec<u8> {
    format!("govpaas-lgsp-audit-checkpoint/v1\n{seq}\n{head}").into_bytes()
}

fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The append-only log. Appends are serialised by a mutex; each record is one `write` of a whole
/// line to a file opened for appending.
pub struct AuditLog {
    path: String,
    state: Mutex<WriterState>,
}

struct WriterState {
    file: File,
    last_seq: u64,
    head: [u8; 32],
    /// Records appended since the last checkpoint.
    unsigned: u64,
}

impl AuditLog {
    /// Opens (or creates) the log, continuing an existing chain after its last record, and writes
    /// a `start` record.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let display = path.display().to_string();
        let io_err = |source| AuditError::Io { path: display.clone(), source };
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(path).map_err(io_err)?;
        let (last_seq, head) = last_record(&mut file).map_err(|reason| match reason {
            TailError::Io(source) => AuditError::Io { path: display.clone(), source },
            TailError::Bad(reason) => AuditError::CannotContinue { path: display.clone(), reason },
        })?;
        let log = AuditLog { path: display, state: Mutex::new(WriterState { file, last_seq, head, unsigned: 0 }) };
        log.append(Entry::Start { gateway_version: env!("CARGO_PKG_VERSION").to_owned() })?;
        Ok(log)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Appends one record and returns its sequence number.
    pub fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.append_locked(&mut state, entry)
    }

    /// Signs the chain head, unless nothing was appended since the last checkpoint. Returns the
    /// checkpoint's sequence number.
    pub fn checkpoint(&self, signer: &CheckpointSigner) -> Result<Option<u64>, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.unsigned == 0 {
            return Ok(None);
        }
        let seq = state.last_seq + 1;
        let head = hex::encode(state.head);
        let signature = signer
            .key
            .sign(&SystemRandom::new(), &checkpoint_message(seq, &head))
            .map_err(|e| AuditError::Key(format!("signing failed: {e}")))?;
        let entry =
            Entry::Checkpoint { head, signer: signer.fingerprint.clone(), signature: hex::encode(signature.as_ref()) };
        let seq = self.append_locked(&mut state, entry)?;
        state.unsigned = 0;
        Ok(Some(seq))
    }

    fn append_locked(&self, state: &mut WriterState, entry: Entry) -> Result<u64, AuditError> {
        let seq = state.last_seq + 1;
        let time = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "unknown".to_owned());
        let canonical = Canonical { seq, time, entry, prev: hex::encode(state.head) };
        let mut line = serde_json::to_vec(&canonical).expect("audit records serialise");
        let hash = chain_hash(&state.head, &line);
        line.pop(); // the closing brace
        line.extend_from_slice(HASH_FIELD.as_bytes());
        line.extend_from_slice(hex::encode(hash).as_bytes());
        line.extend_from_slice(b"\"}\n");
        state.file.write_all(&line).map_err(|source| AuditError::Io { path: self.path.clone(), source })?;
        state.last_seq = seq;
        state.head = hash;
        state.unsigned += 1;
        Ok(seq)
    }
}

enum TailError {
    Io(io::Error),
    Bad(String),
}

/// The sequence number and hash of the file's last record (0 and the genesis hash when empty).
fn last_record(file: &mut File) -> Result<(u64, [u8; 32]), TailError> {
    let len = file.seek(SeekFrom::End(0)).map_err(TailError::Io)?;
    if len == 0 {
        return Ok((0, GENESIS));
    }
    // A record is far smaller than this (paths are cut at MAX_RECORDED_PATH).
    let window = len.min(64 * 1024);
    file.seek(SeekFrom::Start(len - window)).map_err(TailError::Io)?;
    let mut tail = Vec::with_capacity(window as usize);
    file.take(window).read_to_end(&mut tail).map_err(TailError::Io)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Err(TailError::Bad("its last record is incomplete (no final newline)".to_owned()));
    };
    let line = body.rsplit(|b| *b == b'\n').next().unwrap_or(body);
    let line = std::str::from_utf8(line).map_err(|_| TailError::Bad("its last record is not UTF-8".to_owned()))?;
    let parsed = parse_line(line).map_err(TailError::Bad)?;
    Ok((parsed.canonical.seq, parsed.hash))
}

struct ParsedLine {
    canonical: Canonical,
    canonical_bytes: Vec<u8>,
    hash: [u8; 32],
}

fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let (head, tail) = line.rsplit_once(HASH_FIELD).ok_or("no hash field at the end of the record")?;
    let hash_hex = tail.strip_suffix("\"}").ok_or("the record does not end with its hash")?;
    let hash: [u8; 32] = hex::decode(hash_hex)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or("the hash field is not 64 hexadecimal digits")?;
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
        Ok(())
    }
}

/// The first bad record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", seq.map(|s| format!(" (record {s})")).unwrap_or_default())]
pub struct VerifyFailure {
    /// 1-based line number in the file.
    pub line: u64,
    /// The sequence number the line claims, when it could be read.
    pub seq: Option<u64>,
    pub reason: String,
}

/// Verifies the whole chain and every checkpoint signature against `certificates` (the gateway's
/// certificates over the log's lifetime; a checkpoint names the one that signed it).
pub fn verify_log(log: impl BufRead, certificates: &[CertificateDer<'_>]) -> Result<VerifyReport, VerifyFailure> {
    let signers: Vec<(String, &CertificateDer<'_>)> =
        certificates.iter().map(|c| (govpaas_pki::verify::fingerprint(c), c)).collect();
    let mut report = VerifyReport { records: 0, checkpoints: 0, last_checkpoint_seq: None, unsigned_tail: 0 };
    let mut prev = GENESIS;
    for (index, line) in log.lines().enumerate() {
        let line_no = index as u64 + 1;
        let fail = |seq, reason: String| VerifyFailure { line: line_no, seq, reason };
        let line = line.map_err(|e| fail(None, format!("cannot be read: {e}")))?;
        let parsed = parse_line(&line).map_err(|reason| fail(None, reason))?;
        let record = &parsed.canonical;
        let seq = Some(record.seq);
        let expected_seq = report.records + 1;
        if record.seq != expected_seq {
            return Err(fail(
                seq,
                format!(
                    "sequence number {} where {expected_seq} was expected: a record was deleted, inserted or reordered",
                    record.seq
                ),
            ));
        }
        if record.prev != hex::encode(prev) {
            return Err(fail(
                seq,
                "its prev does not match the previous record's hash: the chain is broken here".to_owned(),
            ));
        }
        if chain_hash(&prev, &parsed.canonical_bytes) != parsed.hash {
            return Err(fail(seq, "its hash does not match its contents: the record was altered".to_owned()));
        }
        if let Entry::Checkpoint { head, signer, signature } = &record.entry {
            if *head != record.prev {
                return Err(fail(seq, "the checkpoint's head is not the chain head before it".to_owned()));
            }
            let Some((_, certificate)) = signers.iter().find(|(fp, _)| fp == signer) else {
                return Err(fail(seq, format!("checkpoint signed by an unknown certificate (SHA-256 {signer})")));
            };
            let signature =
                hex::decode(signature).map_err(|_| fail(seq, "checkpoint signature is not hexadecimal".to_owned()))?;
            webpki::EndEntityCert::try_from(*certificate)
                .and_then(|cert| {
                    cert.verify_signature(
                        webpki::ring::ECDSA_P256_SHA256,
                        &checkpoint_message(record.seq, head),
                        &signature,
                    )
                })
                .map_err(|e| fail(seq, format!("checkpoint signature does not verify ({e:?}): forged or altered")))?;
            report.checkpoints += 1;
            report.last_checkpoint_seq = Some(record.seq);
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        report.records += 1;
        prev = parsed.hash;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (CheckpointSigner, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway.quangnam.gov.vn".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        (CheckpointSigner::new(&der, &key.serialize_der()).unwrap(), der)
    }

    fn exchange(status: u16) -> Entry {
        Entry::Exchange(
            Exchange { client: "127.0.0.1:4000".to_owned(), method: "GET".to_owned(), status, ..Exchange::default() }
                .with_path("/H17.12/land-records/parcels"),
        )
    }

    fn written_log(dir: &Path) -> (std::path::PathBuf, CertificateDer<'static>) {
        let (signer, cert) = signer();
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(exchange(200)).unwrap();
        log.append(exchange(403)).unwrap();
        assert_eq!(log.checkpoint(&signer).unwrap(), Some(4));
        assert_eq!(log.checkpoint(&signer).unwrap(), None, "nothing new to sign");
        log.append(exchange(200)).unwrap();
        log.checkpoint(&signer).unwrap();
        log.append(exchange(429)).unwrap();
        (path, cert)
    }

    fn verify(text: &str, cert: &CertificateDer<'_>) -> Result<VerifyReport, VerifyFailure> {
        verify_log(text.as_bytes(), std::slice::from_ref(cert))
    }

    #[test]
    fn a_written_log_verifies_and_a_reopened_log_continues_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cert) = written_log(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let report = verify(&text, &cert).unwrap();
        assert_eq!(report, VerifyReport { records: 7, checkpoints: 2, last_checkpoint_seq: Some(6), unsigned_tail: 1 });
        drop(AuditLog::open(&path).unwrap());
        let report = verify(&std::fs::read_to_string(&path).unwrap(), &cert).unwrap();
        assert_eq!(report.records, 8, "a start record continues the chain");
        assert!(report.to_string().contains("not signed"), "{report}");
    }

    #[test]
    fn every_single_byte_edit_is_detected_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cert) = written_log(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let line_starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        for (pos, byte) in text.bytes().enumerate() {
            if byte == b'\n' {
                continue;
            }
            let mut edited = text.clone().into_bytes();
            edited[pos] = if byte == b'0' { b'1' } else { b'0' };
            let edited = String::from_utf8_lossy(&edited);
            let line = line_starts.iter().filter(|start| **start <= pos).count() as u64;
            let err = verify(&edited, &cert).expect_err(&format!("edit at byte {pos} went unnoticed"));
            // A changed `prev` or `seq` is reported at its own line too.
            assert_eq!(err.line, line, "edit at byte {pos}: {err}");
        }
    }

    #[test]
    fn deleted_inserted_reordered_and_forged_records_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cert) = written_log(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let join = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

        let mut deleted = lines.clone();
        deleted.remove(2);
        let err = verify(&join(&deleted), &cert).unwrap_err();
        assert_eq!((err.line, err.seq), (3, Some(4)));
        assert!(err.reason.contains("deleted, inserted or reordered"), "{err}");

        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&join(&reordered), &cert).unwrap_err().line, 2);

        let mut inserted = lines.clone();
        inserted.insert(3, lines[1]);
        assert_eq!(verify(&join(&inserted), &cert).unwrap_err().line, 4);

        // A checkpoint signed by another key, over a correctly chained log.
        let (forger, forger_cert) = signer();
        let forged_path = dir.path().join("forged.jsonl");
        let log = AuditLog::open(&forged_path).unwrap();
        log.append(exchange(200)).unwrap();
        log.checkpoint(&forger).unwrap();
        let forged = std::fs::read_to_string(&forged_path).unwrap();
        let err = verify(&forged, &cert).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("unknown certificate"), "{err}");
        // Claiming the real certificate's fingerprint does not help.
        let claimed = forged.replace(forger.fingerprint(), &govpaas_pki::verify::fingerprint(&cert));
        let claimed = rechain(&claimed);
        let err = verify(&claimed, &cert).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("does not verify"), "{err}");
        verify(&forged, &forger_cert).unwrap();
    }

    #[test]
    fn a_recomputed_chain_is_caught_by_the_next_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cert) = written_log(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = rechain(&text.replacen("\"status\":403", "\"status\":200", 1));
        let err = verify(&edited, &cert).unwrap_err();
        assert_eq!(err.line, 4, "the checkpoint after the edited record: {err}");
        assert!(err.reason.contains("does not verify"), "{err}");
    }

    #[test]
    fn an_incomplete_last_line_refuses_to_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        drop(AuditLog::open(&path).unwrap());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.truncate(text.len() - 5);
        std::fs::write(&path, text).unwrap();
        let err = AuditLog::open(&path).err().unwrap();
        assert!(matches!(err, AuditError::CannotContinue { .. }), "{err}");
    }

    /// What an attacker without the key can do: recompute every hash (and `prev`) after an edit.
    fn rechain(text: &str) -> String {
        let mut prev = GENESIS;
        let mut out = String::new();
        for line in text.lines() {
            let parsed = parse_line(line).unwrap();
            let mut canonical = parsed.canonical;
            if let Entry::Checkpoint { head, .. } = &mut canonical.entry {
                *head = hex::encode(prev);
            }
            canonical.prev = hex::encode(prev);
            let mut bytes = serde_json::to_vec(&canonical).unwrap();
            prev = chain_hash(&prev, &bytes);
            bytes.pop();
            out.push_str(std::str::from_utf8(&bytes).unwrap());
            out.push_str(&format!("{HASH_FIELD}{}\"}}\n", hex::encode(prev)));
        }
        out
    }
}

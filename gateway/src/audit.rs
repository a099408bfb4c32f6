//! The tamper-evident audit log: one JSON line per exchange, each hash-chained to the one before,
//! with checkpoints that sign the chain head (X-Road's message log, in one file).
//!
//! The record format, the chain and the verifier are the crate `govpaas_audit` (shared with
//! `kubectl govpaas audit verify`), re-exported here; this module writes the log: appends,
//! checkpoints, syncs, rotation and the repair of a torn last record.

pub use govpaas_audit::{
    Canonical, Entry, Exchange, GENESIS, HASH_FIELD, ParsedLine, RefusalCounts, Verdict, Verification, VerifyFailure,
    VerifyReport, chain_hash, checkpoint_message, encode_line, log_files, parse_line, verify_files, verify_log,
    verify_logs, verify_signers,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

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

/// How the log is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// `fdatasync` every exchange record before its answer is released (grouped: one sync covers
    /// every record written while the previous one ran, and a sync waits a little for the records
    /// of exchanges under way, see [`MAX_GATHER`]). Off: records are written (a crash of the
    /// gateway loses nothing, the kernel has them) but a crash of the node can lose the last ones.
    pub fsync: bool,
    /// The log is rotated once it reaches this size: renamed to `<name>.<last seq, 20 digits>`
    /// (signed by a checkpoint first), and a new file continues the chain.
    pub max_file_bytes: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { fsync: true, max_file_bytes: 64 * 1024 * 1024 }
    }
}

/// The longest a sync waits to gather the records of exchanges under way (and no longer than the
/// last sync took). Every answer waits for a sync, so a sync that covers more records saves a
/// whole `fdatasync` (a journal commit and a disk flush) for each record it gathers; the wait is
/// bounded so that it adds little to an answer's latency, and skipped when no exchange is under way
/// (a lone client never waits for others).
pub const MAX_GATHER: Duration = Duration::from_micros(250);

/// The append-only log. Appends are serialised by a mutex; each record is one `write` of a whole
/// line to a file opened for appending; a thread of its own syncs them to disk, a group at a time.
pub struct AuditLog {
    path: PathBuf,
    display: String,
    settings: AuditSettings,
    state: Arc<Mutex<WriterState>>,
    /// What the sync thread has made durable.
    durable: watch::Receiver<Durable>,
    /// The last write's failure, cleared by the next success (what `/readyz` reports).
    last_failure: Mutex<Option<String>>,
    group: Arc<GroupCommit>,
    /// Signs the checkpoint that closes a file at rotation (the gateway's current key).
    signer: Mutex<Option<Arc<CheckpointSigner>>>,
}

struct WriterState {
    file: File,
    /// The same file, for the sync thread (which syncs outside the writers' lock).
    sync_handle: Arc<File>,
    file_bytes: u64,
    last_seq: u64,
    head: [u8; 32],
    /// Records appended since the last checkpoint.
    unsigned: u64,
    /// When the chain head was last signed or found with nothing to sign (for the metrics: a
    /// checkpoint overdue means records an attacker could still rewrite unnoticed).
    signed_at: std::time::Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Durable {
    Through(u64),
    Failed { through: u64, error: String },
}

/// Where appenders and the sync thread meet, without a lock or a system call per record: an
/// appender wakes the sync thread only when it sleeps with nothing to sync, or when it waits for
/// the last record it expected.
#[derive(Default)]
struct GroupCommit {
    /// The highest sequence number an appender waits to see on disk.
    wanted: AtomicU64,
    /// Records announced by [`AuditLog::expect_record`] and not written yet.
    expected: AtomicUsize,
    /// The sync thread sleeps with nothing to sync: the next wanted record wakes it.
    idle: AtomicBool,
    /// The sync thread gathers a group: the last expected record wakes it.
    gathering: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl GroupCommit {
    fn want(&self, seq: u64) {
        self.wanted.fetch_max(seq, Ordering::SeqCst);
        if self.idle.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// An exchange under way whose record is still to come (see [`AuditLog::expect_record`]): a sync
/// waits a little for it rather than leave it to the next sync. Dropped once the record is
/// written, or if it never will be.
pub struct ExpectedRecord(Arc<GroupCommit>);

impl Drop for ExpectedRecord {
    fn drop(&mut self) {
        if self.0.expected.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.gathering.swap(false, Ordering::SeqCst) {
            self.0.wake();
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log with the default settings; see [`AuditLog::open_with`].
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_with(path, AuditSettings::default())
    }

    /// Opens (or creates) the log, continuing an existing chain after its last record (in the
    /// file, or in the newest rotated file when the file is new or empty), and writes a `start`
    /// record.
    pub fn open_with(path: &Path, settings: AuditSettings) -> Result<Self, AuditError> {
        let display = path.display().to_string();
        let io_err = |source| AuditError::Io { path: display.clone(), source };
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(path).map_err(io_err)?;
        set_aside_torn_tail(&mut file, path).map_err(|reason| match reason {
            TailError::Io(source) => AuditError::Io { path: display.clone(), source },
            TailError::Bad(reason) => AuditError::CannotContinue { path: display.clone(), reason },
        })?;
        let tail_err = |display: &str, reason| match reason {
            TailError::Io(source) => AuditError::Io { path: display.to_owned(), source },
            TailError::Bad(reason) => AuditError::CannotContinue { path: display.to_owned(), reason },
        };
        let (mut last_seq, mut head) = last_record(&mut file).map_err(|r| tail_err(&display, r))?;
        if last_seq == 0
            && let Some(rotated) = rotated_files(path).map_err(io_err)?.pop()
        {
            let rotated_display = rotated.display().to_string();
            let mut previous =
                File::open(&rotated).map_err(|source| AuditError::Io { path: rotated_display.clone(), source })?;
            (last_seq, head) = last_record(&mut previous).map_err(|r| tail_err(&rotated_display, r))?;
        }
        let file_bytes = file.metadata().map_err(io_err)?.len();
        let sync_handle = Arc::new(file.try_clone().map_err(io_err)?);
        let state = Arc::new(Mutex::new(WriterState {
            file,
            sync_handle,
            file_bytes,
            last_seq,
            head,
            unsigned: 0,
            signed_at: std::time::Instant::now(),
        }));
        let (durable_tx, durable) = watch::channel(Durable::Through(last_seq));
        let group = Arc::new(GroupCommit::default());
        let (thread_state, thread_group) = (state.clone(), group.clone());
        let thread = std::thread::Builder::new()
            .name("audit-sync".to_owned())
            .spawn(move || sync_loop(&thread_state, &thread_group, &durable_tx, last_seq))
            .map_err(io_err)?;
        let _ = group.thread.set(thread.thread().clone());
        let log = AuditLog {
            path: path.to_owned(),
            display,
            settings,
            state,
            durable,
            last_failure: Mutex::new(None),
            group,
            signer: Mutex::new(None),
        };
        log.append(Entry::Start { gateway_version: env!("CARGO_PKG_VERSION").to_owned() })?;
        Ok(log)
    }

    pub fn path(&self) -> &str {
        &self.display
    }

    /// The key that signs the checkpoint closing a file at rotation.
    pub fn set_signer(&self, signer: Option<Arc<CheckpointSigner>>) {
        *self.signer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = signer;
    }

    /// Appends one record and returns its sequence number (written, not synced).
    pub fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let appended = self.append_locked(&mut state, entry);
        *self.last_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            appended.as_ref().err().map(ToString::to_string);
        appended
    }

    /// `Err` with the reason when the last record could not be written.
    pub fn writable(&self) -> Result<(), String> {
        match self.last_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Appends one record, and returns once it is on disk (with `fsync`; else once written).
    pub async fn append_durable(&self, entry: Entry) -> Result<u64, AuditError> {
        let seq = self.append(entry)?;
        if self.settings.fsync {
            self.group.want(seq);
            self.synced_through(seq).await?;
        }
        Ok(seq)
    }

    /// Announces a record to come, for an exchange that has just begun: until it is appended
    /// with [`AuditLog::append_expected`] (or the returned value dropped), a sync may wait a
    /// little for it (at most [`MAX_GATHER`]), so that one `fdatasync` covers more records.
    pub fn expect_record(&self) -> ExpectedRecord {
        self.group.expected.fetch_add(1, Ordering::SeqCst);
        ExpectedRecord(self.group.clone())
    }

    /// [`AuditLog::append_durable`] for a record announced by [`AuditLog::expect_record`].
    pub async fn append_expected(&self, expected: ExpectedRecord, entry: Entry) -> Result<u64, AuditError> {
        let appended = self.append(entry);
        // Written (or failed): a gathering sync waits for it no longer. Before the sync thread is
        // woken for it, so that a lone exchange's sync does not wait for the exchange itself.
        drop(expected);
        let seq = appended?;
        if self.settings.fsync {
            self.group.want(seq);
            self.synced_through(seq).await?;
        }
        Ok(seq)
    }

    /// Waits until the sync thread has synced record `seq` (already wanted).
    async fn synced_through(&self, seq: u64) -> Result<(), AuditError> {
        let mut durable = self.durable.clone();
        let reached = durable
            .wait_for(|d| match d {
                Durable::Through(through) | Durable::Failed { through, .. } => *through >= seq,
            })
            .await
            .map(|d| d.clone());
        match reached {
            Ok(Durable::Through(_)) => Ok(()),
            Ok(Durable::Failed { error, .. }) => {
                Err(AuditError::Io { path: self.display.clone(), source: io::Error::other(error) })
            }
            Err(_) => {
                Err(AuditError::Io { path: self.display.clone(), source: io::Error::other("the sync thread stopped") })
            }
        }
    }

    /// The records not yet covered by a checkpoint, and how long ago the chain head was last
    /// signed (or found with nothing to sign).
    pub fn unsigned(&self) -> (u64, std::time::Duration) {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.unsigned, state.signed_at.elapsed())
    }

    /// Signs the chain head, unless nothing was appended since the last checkpoint. Returns the
    /// checkpoint's sequence number. Synced before it returns.
    pub fn checkpoint(&self, signer: &CheckpointSigner) -> Result<Option<u64>, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = self.checkpoint_locked(&mut state, signer)?;
        if seq.is_some() && self.settings.fsync {
            state.file.sync_data().map_err(|source| AuditError::Io { path: self.display.clone(), source })?;
        }
        Ok(seq)
    }

    fn checkpoint_locked(&self, state: &mut WriterState, signer: &CheckpointSigner) -> Result<Option<u64>, AuditError> {
        if state.unsigned == 0 {
            state.signed_at = std::time::Instant::now();
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
        let seq = self.write_locked(state, entry)?;
        state.unsigned = 0;
        state.signed_at = std::time::Instant::now();
        Ok(Some(seq))
    }

    fn append_locked(&self, state: &mut WriterState, entry: Entry) -> Result<u64, AuditError> {
        let seq = self.write_locked(state, entry)?;
        if state.file_bytes >= self.settings.max_file_bytes
            && let Err(error) = self.rotate_locked(state)
        {
            // The record is written; the file grows until a rotation succeeds.
            tracing::error!(%error, "audit log rotation failed; the current file continues");
        }
        Ok(seq)
    }

    fn write_locked(&self, state: &mut WriterState, entry: Entry) -> Result<u64, AuditError> {
        let seq = state.last_seq + 1;
        let time = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "unknown".to_owned());
        let canonical = Canonical { seq, time, entry, prev: hex::encode(state.head) };
        let (line, hash) = encode_line(&state.head, &canonical);
        state.file.write_all(&line).map_err(|source| AuditError::Io { path: self.display.clone(), source })?;
        state.file_bytes += line.len() as u64;
        state.last_seq = seq;
        state.head = hash;
        state.unsigned += 1;
        Ok(seq)
    }

    /// Closes the current file with a signed checkpoint (when a key is set), syncs it, renames it
    /// to `<name>.<last seq>` and continues the chain in a new file.
    fn rotate_locked(&self, state: &mut WriterState) -> Result<(), AuditError> {
        let io_err = |source| AuditError::Io { path: self.display.clone(), source };
        let signer = self.signer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(signer) = signer {
            self.checkpoint_locked(state, &signer)?;
        }
        state.file.sync_all().map_err(io_err)?;
        let rotated = rotated_name(&self.path, state.last_seq);
        std::fs::rename(&self.path, &rotated).map_err(io_err)?;
        let file = match OpenOptions::new().create(true).append(true).read(true).open(&self.path) {
            Ok(file) => file,
            Err(source) => {
                let _ = std::fs::rename(&rotated, &self.path);
                return Err(io_err(source));
            }
        };
        let sync_handle = Arc::new(file.try_clone().map_err(io_err)?);
        sync_directory(&self.path);
        tracing::info!(rotated = %rotated.display(), last_seq = state.last_seq, "audit log rotated");
        state.file = file;
        state.sync_handle = sync_handle;
        state.file_bytes = 0;
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.group.stop.store(true, Ordering::SeqCst);
        self.group.wake();
    }
}

/// The sync thread: waits for a record to be wanted on disk, gathers the records of exchanges
/// under way for a moment, syncs everything written so far (every appender waiting meanwhile is
/// served by the same `fdatasync`), and publishes how far: the waiting answers are woken together.
fn sync_loop(state: &Mutex<WriterState>, group: &GroupCommit, durable: &watch::Sender<Durable>, mut synced: u64) {
    let mut last_sync = Duration::ZERO;
    loop {
        while group.wanted.load(Ordering::SeqCst) <= synced {
            if group.stop.load(Ordering::SeqCst) {
                return;
            }
            // Set before the last look, so that an appender wanting a record after it wakes us.
            group.idle.store(true, Ordering::SeqCst);
            if group.wanted.load(Ordering::SeqCst) <= synced && !group.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            group.idle.store(false, Ordering::SeqCst);
        }
        gather(group, Instant::now() + last_sync.min(MAX_GATHER));
        let (through, file) = {
            let state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (state.last_seq, state.sync_handle.clone())
        };
        let started = Instant::now();
        // Records of a rotated file were synced at the rotation; this file holds the rest.
        let synced_data = file.sync_data();
        last_sync = started.elapsed();
        synced = through;
        match synced_data {
            Ok(()) => durable.send_replace(Durable::Through(through)),
            Err(error) => durable.send_replace(Durable::Failed { through, error: error.to_string() }),
        };
    }
}

/// Waits until no announced record is still to come, or until `until`.
fn gather(group: &GroupCommit, until: Instant) {
    while group.expected.load(Ordering::SeqCst) > 0 && !group.stop.load(Ordering::SeqCst) {
        let Some(left) = until.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()) else {
            return;
        };
        // Set before the last look, so that the last expected record written after it wakes us.
        group.gathering.store(true, Ordering::SeqCst);
        if group.expected.load(Ordering::SeqCst) > 0 {
            std::thread::park_timeout(left);
        }
        group.gathering.store(false, Ordering::SeqCst);
    }
}

/// `<log>.<seq, 20 digits>`: rotated files sort by name in chain order.
fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{last_seq:020}"));
    path.with_file_name(name)
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut rotated = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = file_name.strip_prefix(&format!("{name}."))
            && suffix.len() == 20
            && suffix.bytes().all(|b| b.is_ascii_digit())
        {
            rotated.push(entry.path());
        }
    }
    rotated.sort();
    Ok(rotated)
}

/// Makes a rename in the log's directory durable (best effort: some filesystems refuse).
fn sync_directory(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

enum TailError {
    Io(io::Error),
    Bad(String),
}

/// The sequence number and hash of the file's last record (0 and the genesis hash when empty).
/// A record torn by a crash in the middle of its write (the node's: a process crash never tears
/// a single `write`) was never synced, so never answered: it is moved to `<log>.torn.<time>`
/// (kept: it is evidence) and the log cut back to its last whole record. A record that lacks only
/// its newline is completed instead.
fn set_aside_torn_tail(file: &mut File, path: &Path) -> Result<(), TailError> {
    let len = file.seek(SeekFrom::End(0)).map_err(TailError::Io)?;
    if len == 0 {
        return Ok(());
    }
    let window = len.min(64 * 1024);
    file.seek(SeekFrom::Start(len - window)).map_err(TailError::Io)?;
    let mut tail = Vec::with_capacity(window as usize);
    file.take(window).read_to_end(&mut tail).map_err(TailError::Io)?;
    if tail.ends_with(b"\n") {
        return Ok(());
    }
    let torn_from = match tail.iter().rposition(|b| *b == b'\n') {
        Some(newline) => len - window + newline as u64 + 1,
        None if len == window => 0,
        None => return Err(TailError::Bad("its last record is longer than any record the gateway writes".to_owned())),
    };
    let torn = &tail[(torn_from - (len - window)) as usize..];
    if std::str::from_utf8(torn).ok().and_then(|line| parse_line(line).ok()).is_some() {
        file.write_all(b"\n").map_err(TailError::Io)?;
        tracing::warn!(log = %path.display(), "the audit log's last record lacked its newline: completed");
        return Ok(());
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".torn.{}", OffsetDateTime::now_utc().unix_timestamp()));
    std::fs::write(&aside, torn).map_err(TailError::Io)?;
    file.set_len(torn_from).map_err(TailError::Io)?;
    file.sync_all().map_err(TailError::Io)?;
    tracing::warn!(
        log = %path.display(),
        set_aside = %std::path::Path::new(&aside).display(),
        bytes = torn.len(),
        "the audit log ended in a torn record (a crash during its write; it was never answered): set aside"
    );
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

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
        assert_eq!(
            (report.records, report.checkpoints, report.last_checkpoint_seq, report.unsigned_tail, report.first_seq),
            (7, 2, Some(6), 1, 1)
        );
        assert_eq!(report.signers.keys().collect::<Vec<_>>(), [&govpaas_pki::verify::fingerprint(&cert)]);
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
    fn a_torn_last_record_is_set_aside_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cert) = written_log(dir.path());
        let whole = std::fs::read_to_string(&path).unwrap();
        // A node crash in the middle of a write: the record's first 40 bytes only.
        let torn = format!("{whole}{}", &whole.lines().nth(1).unwrap()[..40]);
        std::fs::write(&path, &torn).unwrap();
        drop(AuditLog::open(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&whole), "the whole records are kept");
        let report = verify(&text, &cert).unwrap();
        assert_eq!(report.records, 8, "the chain continued after the last whole record: {report}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("audit.jsonl.torn."))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), &whole.lines().nth(1).unwrap()[..40]);

        // A record that lacks only its newline is completed, not set aside.
        let (path, cert) = (dir.path().join("newline.jsonl"), cert);
        drop(AuditLog::open(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        drop(AuditLog::open(&path).unwrap());
        let report = verify(&std::fs::read_to_string(&path).unwrap(), &cert).unwrap();
        assert_eq!(report.records, 2);
    }

    #[test]
    fn a_rotated_log_continues_its_chain_across_files_and_verifies_as_a_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (signer, cert) = signer();
        let settings = AuditSettings { fsync: true, max_file_bytes: 1024 };
        let log = AuditLog::open_with(&path, settings.clone()).unwrap();
        log.set_signer(Some(Arc::new(signer)));
        let mut exchanges = 0;
        while rotated_files(&path).unwrap().len() < 3 {
            log.append(exchange(200)).unwrap();
            exchanges += 1;
        }
        drop(log);
        // Reopened right after a rotation (an empty current file): the chain continues from the
        // newest rotated file.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(AuditLog::open_with(&path, settings).unwrap());

        let mut files: Vec<PathBuf> = rotated_files(&path).unwrap();
        files.push(path.clone());
        let open = |files: &[PathBuf]| -> Vec<(String, std::io::BufReader<File>)> {
            files.iter().map(|f| (f.display().to_string(), std::io::BufReader::new(File::open(f).unwrap()))).collect()
        };
        let report = verify_logs(open(&files), std::slice::from_ref(&cert), false).unwrap();
        assert_eq!((report.records, report.checkpoints), (2 + exchanges + 3, 3), "{report}");
        // Each rotated file ends with a checkpoint: verifiable alone (as a partial set) and signed.
        for rotated in &files[..files.len() - 1] {
            let text = std::fs::read_to_string(rotated).unwrap();
            assert!(text.lines().last().unwrap().contains("\"kind\":\"checkpoint\""), "{}", rotated.display());
            let alone = verify_logs(open(std::slice::from_ref(rotated)), std::slice::from_ref(&cert), true).unwrap();
            assert_eq!(alone.unsigned_tail, 0);
        }
        // Without the first file the set does not verify, unless it is declared partial.
        let err = verify_logs(open(&files[1..]), std::slice::from_ref(&cert), false).unwrap_err();
        assert!(err.reason.contains("files before it are missing"), "{err}");
        let partial = verify_logs(open(&files[1..]), std::slice::from_ref(&cert), true).unwrap();
        assert!(partial.first_seq > 1 && partial.to_string().contains("were not given"), "{partial}");
        // A file left out in the middle breaks the chain.
        let mut gap = files.clone();
        gap.remove(1);
        let err = verify_logs(open(&gap), std::slice::from_ref(&cert), false).unwrap_err();
        assert!(err.reason.contains("deleted, inserted or reordered"), "{err}");
    }

    #[test]
    fn checkpoint_signers_must_chain_to_the_platform_ca() {
        let now = OffsetDateTime::now_utc();
        let policy = govpaas_pki::IssuancePolicy::default();
        let platform = govpaas_pki::generate_platform_ca(
            &govpaas_pki::PlatformCaRequest::new("quangnam.gov.vn", "p"),
            &policy,
            now,
        )
        .unwrap();
        let other =
            govpaas_pki::generate_platform_ca(&govpaas_pki::PlatformCaRequest::new("danang.gov.vn", "o"), &policy, now)
                .unwrap();
        let issued = platform
            .issue_server_certificate(
                &govpaas_pki::ServerCertificateRequest::new(["lgsp.quangnam.gov.vn"]),
                &policy,
                now,
            )
            .unwrap();
        let chain = govpaas_pki::verify::chain_from_pem("tls.crt", issued.chain_pem().as_bytes()).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(issued.private_key_pem().expose().as_bytes())
            .unwrap();
        let signer = CheckpointSigner::new(&chain[0], key.secret_pkcs8_der()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(exchange(200)).unwrap();
        log.checkpoint(&signer).unwrap();
        let report = verify(&std::fs::read_to_string(&path).unwrap(), &chain[0]).unwrap();
        let ca = |authority: &govpaas_pki::CertificateAuthority| {
            govpaas_pki::verify::chain_from_pem("ca.crt", authority.certificate_pem().as_bytes()).unwrap()
        };
        verify_signers(&report, &chain, &ca(&platform)).unwrap();
        let refused = verify_signers(&report, &chain, &ca(&other)).unwrap_err();
        assert!(refused.contains("does not chain to the platform CA"), "{refused}");
        // A self-signed certificate (what a forger would hand over) is refused too.
        let (_, self_signed) = super::tests::signer();
        let mut forged = report.clone();
        forged.signers =
            [(govpaas_pki::verify::fingerprint(&self_signed), report.signers.values().next().copied().unwrap())].into();
        assert!(verify_signers(&forged, &[self_signed], &ca(&platform)).is_err());
    }

    #[test]
    fn a_failed_write_makes_the_log_unwritable_until_the_next_success() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        log.writable().unwrap();
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let good = std::mem::replace(&mut log.state.lock().unwrap().file, full);
        assert!(log.append(exchange(200)).is_err());
        assert!(log.writable().unwrap_err().contains("No space left"), "{:?}", log.writable());
        log.state.lock().unwrap().file = good;
        log.append(exchange(200)).unwrap();
        log.writable().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expected_records_are_answered_once_synced_even_when_one_never_comes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        // An exchange announced whose record never comes: the others wait for it at most a gather.
        let never = log.expect_record();
        let started = Instant::now();
        let appenders: Vec<_> = (0..32)
            .map(|_| {
                let (log, expected) = (log.clone(), log.expect_record());
                tokio::spawn(async move { log.append_expected(expected, exchange(200)).await.unwrap() })
            })
            .collect();
        let mut seqs = Vec::new();
        for appender in appenders {
            let seq = appender.await.unwrap();
            // Released only once its record is on disk.
            assert!(matches!(*log.durable.borrow(), Durable::Through(through) if through >= seq));
            seqs.push(seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..34).collect::<Vec<u64>>(), "the start record is 1");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        drop(never);
        assert_eq!(log.group.expected.load(Ordering::SeqCst), 0);
        // A lone record, nothing else announced, and a record not announced: each answered once synced.
        let expected = log.expect_record();
        assert_eq!(log.append_expected(expected, exchange(200)).await.unwrap(), 34);
        assert_eq!(log.append_durable(exchange(200)).await.unwrap(), 35);
        assert_eq!(*log.durable.borrow(), Durable::Through(35));
        let (_, cert) = signer();
        assert_eq!(verify(&std::fs::read_to_string(&path).unwrap(), &cert).unwrap().records, 35);
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

    proptest::proptest! {
        /// Whatever a log file holds: the verifier never panics, and a written log with any
        /// byte changed, removed or added never verifies.
        #[test]
        fn the_verifier_never_panics_and_catches_any_change(
            junk in ".{0,400}",
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
            change in 0..3u8,
        ) {
            let (_, cert) = signer();
            let _ = verify(&junk, &cert);
            let _ = verify_logs(vec![("a".to_owned(), junk.as_bytes())], std::slice::from_ref(&cert), true);
            let dir = tempfile::tempdir().unwrap();
            let (path, cert) = written_log(dir.path());
            let text = std::fs::read(&path).unwrap();
            let mut edited = text.clone();
            let i = at.index(text.len());
            match change {
                0 => edited[i] = byte,
                1 => { edited.remove(i); }
                _ => edited.insert(i, byte),
            }
            proptest::prop_assume!(edited != text);
            let edited = String::from_utf8_lossy(&edited).into_owned();
            // A change of the trailing newline alone leaves the same records.
            proptest::prop_assume!(edited.trim_end() != String::from_utf8_lossy(&text).trim_end());
            proptest::prop_assert!(verify(&edited, &cert).is_err(), "an edit at byte {} went unnoticed", i);
        }
    }
}

//! The prediction log: every prediction and every feedback as a JSON line, for
//! monitoring (drift, live accuracy) to read later.
//!
//! Request handlers hand records to a writer thread through a channel bounded
//! in bytes, so a slow disk never slows a response and a flood of long texts
//! cannot fill memory: records over the budget are dropped and counted
//! (`kiln_prediction_log_dropped`). A write that fails (a full disk) loses its
//! record, which is counted the same way, and is counted in
//! `kiln_prediction_log_write_errors_total`, which the shipped alert watches;
//! serving goes on. The writer buffers, flushes every second, and starts a new
//! file past `rotate_bytes`. A file is written as `*.jsonl.partial`, synced and
//! renamed to `*.jsonl` when complete, so readers of `*.jsonl` never see half a
//! file; a `.partial` file that a killed process of this host left behind is
//! completed at the next start. Completed files past the retention (total
//! bytes, age) are deleted, oldest first. File names carry the host and
//! process, so several replicas can share one log folder (a volume mounted by
//! every pod) without ever writing the same file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
pub use kiln_core::prediction_log::LogRecord;
use kiln_core::prediction_log::{COMPLETE, PARTIAL};

use crate::metrics::Metrics;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Bytes a record is counted for beyond its text (its JSON's other fields).
const RECORD_OVERHEAD_BYTES: usize = 320;
/// What every log file's name starts with.
const PREFIX: &str = "predictions-";
/// In the log folder, makes every write fail as on a full disk (test builds only).
pub const DISK_FULL_HOOK: &str = ".kiln-test-disk-full";

/// This process among the replicas that may share a log folder: the host
/// name (a pod's name on Kubernetes) and the process id, in file-name-safe characters.
fn writer_id() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "host".into());
    host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// The current time as RFC 3339 with milliseconds, as every record and `/v1/model` show it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

enum Message {
    Record(Box<LogRecord>, usize),
    Close,
}

/// How long completed files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// 0: no limit.
    pub max_bytes: u64,
    /// 0: no limit.
    pub max_age: Duration,
}

pub struct PredictionLog {
    sender: Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    /// Bytes of records waiting for the writer, against `max_queued_bytes`.
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
}

impl PredictionLog {
    pub fn start(
        dir: &Path,
        rotate_bytes: u64,
        max_queued_bytes: usize,
        retention: Retention,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the prediction log folder {}", dir.display()))?;
        // Fail now, not on the first request, when the folder is not writable.
        let probe = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in the prediction log folder {}", dir.display()))?;
        drop(probe);
        complete_orphans(dir, &host_name());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            dir: dir.to_owned(),
            rotate_bytes,
            retention,
            file: None,
            sequence: 0,
            writer_id: writer_id(),
            metrics: metrics.clone(),
            queued_bytes: queued_bytes.clone(),
        };
        writer.prune();
        let (sender, receiver) = channel();
        let handle = std::thread::Builder::new()
            .name("kiln-prediction-log".into())
            .spawn(move || writer.run(&receiver))
            .context("cannot start the prediction log thread")?;
        Ok(Self { sender, writer: Mutex::new(Some(handle)), metrics, queued_bytes, max_queued_bytes })
    }

    /// Queues a record; never blocks. Over the byte budget it is dropped and counted.
    pub fn append(&self, record: LogRecord) {
        let bytes = estimated_bytes(&record);
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
        if queued > 0 && queued + bytes > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.metrics.log_dropped.inc();
            return;
        }
        if self.sender.send(Message::Record(Box::new(record), bytes)).is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.metrics.log_dropped.inc();
        }
    }

    /// Writes what is queued, completes the current file and stops the writer.
    pub fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(handle) = handle {
            let _ = self.sender.send(Message::Close);
            let _ = handle.join();
        }
    }
}

/// About the bytes a record takes, queued or written: its texts and a fixed rest.
fn estimated_bytes(record: &LogRecord) -> usize {
    let text = match record {
        LogRecord::Prediction { text, .. } | LogRecord::Entities { text, .. } => text.as_ref().map_or(0, String::len),
        _ => 0,
    };
    let entities = match record {
        LogRecord::Entities { entities, .. } | LogRecord::EntityFeedback { entities, .. } => entities.len() * 64,
        _ => 0,
    };
    RECORD_OVERHEAD_BYTES + text + entities
}

/// Completes the `.partial` files that processes of this host left when they
/// were killed (their pid is gone, or is ours, which a container's restart reuses).
fn complete_orphans(dir: &Path, host: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let own_prefix = format!("-{host}-");
    for path in entries.flatten().map(|entry| entry.path()) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.starts_with(PREFIX) || !name.ends_with(&format!(".{COMPLETE}.{PARTIAL}")) {
            continue;
        }
        // predictions-<millis>-<host>-<pid>-<sequence>.jsonl.partial
        let Some(rest) = name.split_once(&own_prefix).map(|(_, rest)| rest) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        let gone = pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists();
        if gone {
            let done = path.with_extension("");
            match std::fs::rename(&path, &done) {
                Ok(()) => tracing::warn!("completed {}, left by a process that was killed", done.display()),
                Err(error) => tracing::warn!("cannot complete {}: {error}", path.display()),
            }
        }
    }
    let _ = kiln_core::output::sync_dir(dir);
}

struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    retention: Retention,
    file: Option<OpenFile>,
    sequence: u64,
    /// `<host>-<pid>`: which replica wrote a file.
    writer_id: String,
    metrics: Arc<Metrics>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, receiver: &Receiver<Message>) {
        loop {
            match receiver.recv_timeout(FLUSH_EVERY) {
                Ok(Message::Record(record, bytes)) => {
                    self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
                    if let Err(error) = self.write(&record) {
                        self.failed(&error);
                    }
                }
                Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let flushed = self
                        .file
                        .as_mut()
                        .map(|file| file.out.flush().with_context(|| format!("cannot write {}", file.path.display())));
                    if let Some(Err(error)) = flushed {
                        self.failed(&error);
                    }
                }
            }
        }
        if let Err(error) = self.complete() {
            tracing::error!("prediction log: {error:#}");
        }
    }

    /// A write failed: its record is lost (and counted); the file is closed
    /// as it is, and the next record starts a new one.
    fn failed(&mut self, error: &anyhow::Error) {
        self.metrics.log_write_errors.inc();
        self.metrics.log_dropped.inc();
        tracing::error!("prediction log: {error:#}");
        if let Some(file) = self.file.take() {
            // What reached the disk stays readable; a half line at its end is skipped by readers.
            let OpenFile { path, out, .. } = file;
            drop(out.into_parts());
            let _ = std::fs::rename(&path, path.with_extension(""));
        }
    }

    fn write(&mut self, record: &LogRecord) -> Result<()> {
        if self.file.as_ref().is_some_and(|file| file.bytes >= self.rotate_bytes) {
            self.complete()?;
            self.prune();
        }
        kiln_core::test_hooks::disk_full(&self.dir, DISK_FULL_HOOK)
            .with_context(|| format!("cannot write in {}", self.dir.display()))?;
        let mut file = match self.file.take() {
            Some(file) => file,
            None => self.open()?,
        };
        let mut line = serde_json::to_vec(record).context("a log record")?;
        line.push(b'\n');
        let written = file.out.write_all(&line).with_context(|| format!("cannot write {}", file.path.display()));
        file.bytes += line.len() as u64;
        self.file = Some(file);
        written
    }

    fn open(&mut self) -> Result<OpenFile> {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        self.sequence += 1;
        let name = format!("{PREFIX}{millis}-{}-{:04}.{COMPLETE}.{PARTIAL}", self.writer_id, self.sequence);
        let path = self.dir.join(name);
        // Never another writer's file: a clash is an error, not an overwrite.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(OpenFile { path, out: BufWriter::with_capacity(1 << 16, file), bytes: 0 })
    }

    /// Flushes and syncs the current file and renames it to its final `.jsonl` name.
    fn complete(&mut self) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.out.flush().with_context(|| format!("cannot write {}", file.path.display()))?;
        file.out.get_ref().sync_all().with_context(|| format!("cannot sync {}", file.path.display()))?;
        kiln_core::test_hooks::pause_at("log:rotate");
        // `x.jsonl.partial` -> `x.jsonl`
        let done = file.path.with_extension("");
        std::fs::rename(&file.path, &done).with_context(|| format!("cannot rename {}", file.path.display()))?;
        kiln_core::output::sync_dir(&self.dir)
    }

    /// Deletes completed log files, oldest first, past the retention.
    fn prune(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        for path in expired(&self.dir, self.retention, now) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!("deleted {} (serve.log_retention_bytes / log_retention_days)", path.display()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!("cannot delete {}: {error}", path.display()),
            }
        }
    }
}

/// The completed log files of `dir` past `retention` at time `now` (since the
/// epoch): older than the age limit, then the oldest until the rest fit the byte budget.
fn expired(dir: &Path, retention: Retention, now: Duration) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    // (start millis from the name, path, bytes), oldest first.
    let mut files: Vec<(u128, PathBuf, u64)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let millis =
                name.strip_prefix(PREFIX)?.strip_suffix(&format!(".{COMPLETE}"))?.split('-').next()?.parse().ok()?;
            Some((millis, entry.path(), entry.metadata().ok()?.len()))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|(_, _, bytes)| bytes).sum();
    let mut gone = Vec::new();
    for (millis, path, bytes) in files {
        let too_old =
            !retention.max_age.is_zero() && now.as_millis().saturating_sub(millis) > retention.max_age.as_millis();
        let too_much = retention.max_bytes > 0 && total > retention.max_bytes;
        if !(too_old || too_much) {
            break;
        }
        total -= bytes;
        gone.push(path);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, id: &str) -> Writer {
        Writer {
            dir: dir.to_owned(),
            rotate_bytes: 1 << 20,
            retention: Retention { max_bytes: 0, max_age: Duration::ZERO },
            file: None,
            sequence: 0,
            writer_id: id.into(),
            metrics: Arc::new(Metrics::new()),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Two replicas opening their first file in the same folder (same
    /// sequence number, likely the same millisecond) get two files.
    #[test]
    fn replicas_sharing_a_folder_write_their_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = writer_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{id}");
        let (mut first, mut second) = (writer(dir.path(), "pod-a-1"), writer(dir.path(), "pod-b-1"));
        let (a, b) = (first.open().expect("opens"), second.open().expect("opens"));
        assert_ne!(a.path, b.path);
        assert!(a.path.to_string_lossy().contains("-pod-a-1-0001.jsonl.partial"), "{}", a.path.display());
    }

    #[test]
    fn retention_deletes_the_oldest_completed_files_past_the_budget_or_the_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day_ms: u128 = 86_400_000;
        let now = Duration::from_millis(100 * day_ms as u64);
        for (day, bytes) in [(10u128, 100usize), (95, 100), (98, 100), (99, 100)] {
            let name = format!("{PREFIX}{}-host-1-0001.{COMPLETE}", day * day_ms);
            std::fs::write(dir.path().join(name), vec![b'x'; bytes]).expect("write");
        }
        // Never a file being written, nor anything that is not a log file.
        std::fs::write(dir.path().join(format!("{PREFIX}1-host-2-0001.{COMPLETE}.{PARTIAL}")), "x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let names = |paths: Vec<PathBuf>| -> Vec<u128> {
            paths
                .iter()
                .map(|p| {
                    let name = p.file_name().expect("name").to_string_lossy().into_owned();
                    name[PREFIX.len()..].split('-').next().expect("millis").parse::<u128>().expect("number") / day_ms
                })
                .collect()
        };
        let age = Retention { max_bytes: 0, max_age: Duration::from_secs(30 * 86_400) };
        assert_eq!(names(expired(dir.path(), age, now)), [10]);
        let budget = Retention { max_bytes: 250, max_age: Duration::ZERO };
        assert_eq!(names(expired(dir.path(), budget, now)), [10, 95]);
        let none = Retention { max_bytes: 0, max_age: Duration::ZERO };
        assert!(expired(dir.path(), none, now).is_empty());
    }

    #[test]
    fn a_killed_process_files_of_this_host_are_completed_and_others_are_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let own = format!("{PREFIX}1-myhost-{}-0001.{COMPLETE}.{PARTIAL}", std::process::id());
        let dead = format!("{PREFIX}2-myhost-4000000-0001.{COMPLETE}.{PARTIAL}");
        let other_host = format!("{PREFIX}3-otherhost-4000000-0001.{COMPLETE}.{PARTIAL}");
        for name in [&own, &dead, &other_host] {
            std::fs::write(dir.path().join(name), "{}\n").expect("write");
        }
        complete_orphans(dir.path(), "myhost");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [own.trim_end_matches(".partial"), dead.trim_end_matches(".partial"), other_host.as_str()],
            "this host's dead writers are completed, another host's file is left to its owner"
        );
    }
}

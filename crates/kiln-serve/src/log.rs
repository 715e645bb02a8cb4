//! The prediction log: every prediction and every feedback as a JSON line, for
//! monitoring (drift, live accuracy) to read later.
//!
//! Request handlers hand records to a writer thread through a bounded channel,
//! so a slow disk never slows a response: when the writer falls behind, records
//! are dropped and counted (`kiln_prediction_log_dropped`). The writer buffers,
//! flushes every second, and starts a new file past `rotate_bytes`. A file is
//! written as `*.jsonl.partial` and renamed to `*.jsonl` when complete, so
//! readers of `*.jsonl` never see half a file. File names carry the host and
//! process, so several replicas can share one log folder (a volume mounted by
//! every pod) without ever writing the same file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
pub use kiln_core::prediction_log::LogRecord;
use kiln_core::prediction_log::{COMPLETE, PARTIAL};

use crate::metrics::Metrics;

/// Records waiting for the writer before new ones are dropped.
const CAPACITY: usize = 65_536;
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// This process among the replicas that may share a log folder: the host
/// name (a pod's name on Kubernetes) and the process id, in file-name-safe characters.
fn writer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "host".into());
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("{host}-{}", std::process::id())
}

/// The current time as RFC 3339 with milliseconds, as every record and `/v1/model` show it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

enum Message {
    Record(Box<LogRecord>),
    Close,
}

pub struct PredictionLog {
    sender: SyncSender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl PredictionLog {
    pub fn start(dir: &Path, rotate_bytes: u64, metrics: Arc<Metrics>) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the prediction log folder {}", dir.display()))?;
        let writer = Writer { dir: dir.to_owned(), rotate_bytes, file: None, sequence: 0, writer_id: writer_id() };
        // Fail now, not on the first request, when the folder is not writable.
        let probe = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in the prediction log folder {}", dir.display()))?;
        drop(probe);
        let (sender, receiver) = sync_channel(CAPACITY);
        let handle = std::thread::Builder::new()
            .name("kiln-prediction-log".into())
            .spawn(move || writer.run(&receiver))
            .context("cannot start the prediction log thread")?;
        Ok(Self { sender, writer: Mutex::new(Some(handle)), metrics })
    }

    /// Queues a record; never blocks.
    pub fn append(&self, record: LogRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Message::Record(Box::new(record)))
        {
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

struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    file: Option<OpenFile>,
    sequence: u64,
    /// `<host>-<pid>`: which replica wrote a file.
    writer_id: String,
}

impl Writer {
    fn run(mut self, receiver: &Receiver<Message>) {
        loop {
            match receiver.recv_timeout(FLUSH_EVERY) {
                Ok(Message::Record(record)) => {
                    if let Err(error) = self.write(&record) {
                        tracing::error!("prediction log: {error:#}");
                    }
                }
                Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(file) = &mut self.file
                        && let Err(error) = file.out.flush()
                    {
                        tracing::error!("prediction log: cannot write {}: {error}", file.path.display());
                    }
                }
            }
        }
        if let Err(error) = self.complete() {
            tracing::error!("prediction log: {error:#}");
        }
    }

    fn write(&mut self, record: &LogRecord) -> Result<()> {
        if self.file.as_ref().is_some_and(|file| file.bytes >= self.rotate_bytes) {
            self.complete()?;
        }
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
        let name = format!("predictions-{millis}-{}-{:04}.{COMPLETE}.{PARTIAL}", self.writer_id, self.sequence);
        let path = self.dir.join(name);
        // Never another writer's file: a clash is an error, not an overwrite.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(OpenFile { path, out: BufWriter::with_capacity(1 << 16, file), bytes: 0 })
    }

    /// Flushes the current file and renames it to its final `.jsonl` name.
    fn complete(&mut self) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.out.flush().with_context(|| format!("cannot write {}", file.path.display()))?;
        // `x.jsonl.partial` -> `x.jsonl`
        let done = file.path.with_extension("");
        std::fs::rename(&file.path, &done).with_context(|| format!("cannot rename {}", file.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, id: &str) -> Writer {
        Writer { dir: dir.to_owned(), rotate_bytes: 1 << 20, file: None, sequence: 0, writer_id: id.into() }
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
}

//! `metrics.live.jsonl`: one JSON record per line, appended as training goes
//! (for `tail -f`); a resumed run cuts it back to its checkpoint, and the
//! finished run commits a copy as `metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_core::metrics::{TrainLogLine, TrainLogRecord};

pub const LIVE: &str = "metrics.live.jsonl";

pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens the live log, keeping its first `keep_bytes` (0: start afresh).
    pub fn open(run_dir: &Path, keep_bytes: u64) -> Result<Self> {
        let path = run_dir.join(LIVE);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_len(keep_bytes).with_context(|| format!("cannot cut {} back", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` with the time it was written (`time_ms`, Unix milliseconds).
    pub fn write(&mut self, record: TrainLogRecord) -> Result<()> {
        let stamped = TrainLogLine { record, time_ms: Some(kiln_core::output::now_ms()) };
        let mut line = serde_json::to_vec(&stamped).expect("metric records serialise. This is a bug.");
        line.push(b'\n');
        self.file.write_all(&line).with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Bytes written so far, for the checkpoint.
    pub fn len(&mut self) -> Result<u64> {
        self.file.flush()?;
        Ok(self.file.stream_position()?)
    }
}

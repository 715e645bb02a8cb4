//! Progress bars for long work, silenced by `--quiet` (and by indicatif itself
//! when stderr is not a terminal).

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    pub fn hidden() -> Self {
        Self { quiet: true }
    }

    /// A bar over a file's `total` bytes, for readers that know their position;
    /// the prefix (shown after it) can count rows.
    pub fn bytes(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(total, message, "{msg:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {prefix}")
    }

    /// A bar over the bytes of the file at `path`, named by the file.
    pub fn file(&self, path: &Path) -> ProgressBar {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.bytes(size, &name)
    }

    /// A bar over `total` rows, labelled `message`, with a rows/s rate.
    pub fn rows(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(total, message, "{msg:>12} [{bar:30}] {human_pos}/{human_len} rows ({per_sec:0}, {eta})")
    }

    /// A bar over `total` training steps; the prefix names the epoch and the
    /// message carries loss, learning rate and speed.
    pub fn steps(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(total, message, "{prefix} [{bar:30}] {pos}/{len} steps ({elapsed} < {eta}) {msg}")
    }

    fn bar(&self, total: u64, message: &str, template: &str) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("kiln's progress templates are valid. This is a bug.")
                .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar
    }
}

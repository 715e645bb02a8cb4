//! Progress bars for long work, silenced by `--quiet` (and by indicatif itself
//! when stderr is not a terminal).

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

    /// A bar over a file's `total` bytes, for readers that know their position.
    pub fn bytes(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(total, message, "{bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
    }

    /// A bar over `total` rows, labelled `message`, with a rows/s rate.
    pub fn rows(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(total, message, "{human_pos}/{human_len} rows ({per_sec:0}, {eta})")
    }

    fn bar(&self, total: u64, message: &str, counts: &str) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(total)
        };
        let template = format!("{{msg:>12}} [{{bar:30}}] {counts}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("kiln's progress templates are valid. This is a bug.")
                .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar
    }
}

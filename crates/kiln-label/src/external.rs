//! Labelling functions that vote over all texts at once: an outside program
//! (`kind = "command"`), so users keep functions written in Python (TextBlob,
//! spaCy), and a trained model (`kind = "model"`), which the `label` stage
//! opens through [`LoadModel`] so that this crate needs no LibTorch.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::functions::FunctionError;

/// A model a `model` function asks: its labels and each text's best guess.
pub trait ModelVoter: Send + Sync {
    /// The model's label names, in id order.
    fn labels(&self) -> &[String];
    /// Each text's most probable label (an index of [`Self::labels`]) and its probability.
    fn predict(&self, texts: &[&str]) -> Result<Vec<(usize, f32)>, String>;
}

/// Opens a model folder for a `model` function.
pub trait LoadModel {
    fn load(&self, dir: &Path) -> Result<Box<dyn ModelVoter>, String>;
}

/// For callers without models: a `model` function is an error.
pub struct NoModels;

impl LoadModel for NoModels {
    fn load(&self, _dir: &Path) -> Result<Box<dyn ModelVoter>, String> {
        Err("this program cannot run models (use the `label` stage)".into())
    }
}

/// Most of a failing program's stderr a report quotes.
const STDERR_TAIL: usize = 2000;

/// An outside program and the protocol it speaks: a JSON object a line in
/// (`{"text": "..."}`), a vote a line out (`"spam"` or `null`), in order.
#[derive(Debug, Clone)]
pub struct Command {
    argv: Vec<String>,
    timeout: Duration,
    labels: Vec<String>,
}

impl Command {
    pub fn new(argv: Vec<String>, timeout: Duration, labels: Vec<String>) -> Self {
        Self { argv, timeout, labels }
    }

    /// Runs the program over `texts`; `only` is the one label it may vote, if set.
    pub fn votes<T: AsRef<str> + Sync>(
        &self,
        name: &str,
        texts: &[T],
        only: Option<usize>,
    ) -> Result<Vec<Option<usize>>, FunctionError> {
        let fail =
            |message: String| FunctionError::Command { name: name.to_owned(), command: self.argv.join(" "), message };
        let lines = self.run(texts).map_err(fail)?;
        // A malformed line says more than a wrong count, so it is reported first.
        let votes = lines
            .iter()
            .enumerate()
            .map(|(at, line)| self.parse(line, at + 1, only).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        if votes.len() != texts.len() {
            return Err(fail(format!(
                "printed {} lines for {} texts: it must print one vote a line, in the order of its input",
                votes.len(),
                texts.len()
            )));
        }
        Ok(votes)
    }

    fn parse(&self, line: &str, number: usize, only: Option<usize>) -> Result<Option<usize>, String> {
        let shown: String = line.chars().take(80).collect();
        let expected = || {
            format!(
                "line {number} of its output is `{shown}`, not a vote: expected a label name in quotes ({}) or null \
                 to abstain",
                self.labels.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ")
            )
        };
        let label = match serde_json::from_str::<serde_json::Value>(line.trim()) {
            Ok(serde_json::Value::Null) => return Ok(None),
            Ok(serde_json::Value::String(label)) => label,
            _ => return Err(expected()),
        };
        let Some(id) = self.labels.iter().position(|l| *l == label) else {
            return Err(format!(
                "line {number} of its output votes `{label}`, which is not one of the labels ({})",
                self.labels.join(", ")
            ));
        };
        if let Some(wanted) = only.filter(|&wanted| wanted != id) {
            return Err(format!(
                "line {number} of its output votes `{label}`, but the function's `label` is `{}`",
                self.labels[wanted]
            ));
        }
        Ok(Some(id))
    }

    /// The program's output lines; an error if it cannot start, fails or runs past the timeout.
    fn run<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Result<Vec<String>, String> {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            // Its own process group, so a timeout stops what it started too (`sh -c` children).
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start it: {error}"))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("every stream was asked to be piped. This is a bug.");
        };
        std::thread::scope(|scope| {
            // A writer and two readers, so a program that writes before it has
            // read everything never blocks on a full pipe.
            scope.spawn(move || {
                let mut input = std::io::BufWriter::new(stdin);
                for text in texts {
                    let line = serde_json::json!({ "text": text.as_ref() });
                    // A program that stops reading early is judged by its exit and output.
                    if serde_json::to_writer(&mut input, &line).is_err() || input.write_all(b"\n").is_err() {
                        return;
                    }
                }
                let _ = input.flush();
            });
            let output = scope.spawn(move || BufReader::new(stdout).lines().collect::<Result<Vec<_>, _>>());
            let errors = scope.spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            });
            let status = wait_until(&mut child, Instant::now() + self.timeout);
            let output = output.join().unwrap_or_else(|_| Ok(Vec::new()));
            let errors = errors.join().unwrap_or_default();
            let tail = || {
                let trimmed = errors.trim();
                let start = trimmed.char_indices().rev().nth(STDERR_TAIL).map_or(0, |(at, _)| at);
                match &trimmed[start..] {
                    "" => String::new(),
                    tail => format!("; its stderr ends:\n{tail}"),
                }
            };
            match status {
                None => Err(format!(
                    "took longer than {} s (`timeout_secs`) for {} texts and was stopped{}",
                    self.timeout.as_secs(),
                    texts.len(),
                    tail()
                )),
                Some(Err(error)) => Err(format!("cannot wait for it: {error}")),
                Some(Ok(status)) if !status.success() => Err(format!("failed ({status}){}", tail())),
                Some(Ok(_)) => output.map_err(|error| format!("its output is not UTF-8 text: {error}")),
            }
        })
    }
}

/// The child's exit status, or `None` (after killing it) past `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::io::Result<std::process::ExitStatus>> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => return Some(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["ham".into(), "spam".into()]
    }

    fn shell(script: &str, timeout_secs: u64) -> Command {
        Command::new(vec!["sh".into(), "-c".into(), script.into()], Duration::from_secs(timeout_secs), labels())
    }

    #[test]
    fn a_command_reads_jsonl_and_votes_a_line_per_text() {
        // Votes spam where the text holds "http", abstains elsewhere; echoes after reading all.
        let script = r#"while IFS= read -r line; do case "$line" in *http*) echo '"spam"';; *) echo null;; esac; done"#;
        let texts: Vec<String> =
            (0..5000).map(|i| if i % 3 == 0 { format!("see http://x/{i}") } else { "ok \"quoted\"".into() }).collect();
        let votes = shell(script, 30).votes("links", &texts, None).expect("runs");
        assert_eq!(votes.len(), 5000);
        assert_eq!((votes[0], votes[1], votes[3]), (Some(1), None, Some(1)));
    }

    #[test]
    fn a_broken_protocol_names_the_function_and_the_line() {
        let texts = ["a", "b", "c"];
        let error = shell(r#"cat >/dev/null; printf '"ham"\nnull\nmaybe\n'"#, 30)
            .votes("f", &texts, None)
            .expect_err("bad line");
        let message = error.to_string();
        assert!(message.starts_with("labelling function `f` (command `sh -c"), "{message}");
        assert!(message.contains("line 3 of its output is `maybe`, not a vote"), "{message}");
        let error =
            shell(r#"cat >/dev/null; printf '"eggs"\nnull\nnull\n'"#, 30).votes("f", &texts, None).expect_err("label");
        assert!(
            error.to_string().contains("line 1 of its output votes `eggs`, which is not one of the labels"),
            "{error}"
        );
        let error = shell(r#"cat >/dev/null; printf 'null\n'"#, 30).votes("f", &texts, None).expect_err("short");
        assert!(error.to_string().contains("printed 1 lines for 3 texts"), "{error}");
        let error = shell(r#"cat >/dev/null; printf '"ham"\nnull\nnull\n'"#, 30)
            .votes("f", &texts, Some(1))
            .expect_err("only spam");
        assert!(
            error.to_string().contains("line 1 of its output votes `ham`, but the function's `label` is `spam`"),
            "{error}"
        );
    }

    #[test]
    fn a_failing_slow_or_missing_program_is_an_error() {
        let texts = ["a"];
        let error =
            shell("echo 'no module named textblob' >&2; exit 3", 30).votes("f", &texts, None).expect_err("fails");
        let message = error.to_string();
        assert!(
            message.contains("failed (exit status: 3)") && message.contains("no module named textblob"),
            "{message}"
        );
        let started = Instant::now();
        let error = shell("sleep 30", 1).votes("slow", &texts, None).expect_err("times out");
        assert!(error.to_string().contains("took longer than 1 s (`timeout_secs`)"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(20), "stopped at the timeout");
        let missing = Command::new(vec!["/no/such/program".into()], Duration::from_secs(5), labels());
        assert!(missing.votes("gone", &texts, None).expect_err("missing").to_string().contains("cannot start it"));
    }
}

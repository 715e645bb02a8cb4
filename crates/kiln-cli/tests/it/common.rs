//! Helpers the integration tests share: a stage run with a config, a running
//! `serve`, and reading its metrics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// A stage binary of the workspace: every one is built beside this crate's
/// (`make test` builds them all first).
pub fn stage_binary(stage: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_train")).with_file_name(stage)
}

/// Runs `stage --config CONFIG ARGS --quiet`, with its run records in `runs`.
pub fn run_configured(stage: &str, config: &Path, args: &[&str], runs: &Path) -> Output {
    Command::new(stage_binary(stage))
        .arg("--config")
        .arg(config)
        .args(args)
        .arg("--quiet")
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", runs)
        .output()
        .expect("the stage binary runs")
}

/// [`run_configured`], which must succeed.
pub fn ok_configured(stage: &str, config: &Path, args: &[&str], runs: &Path) {
    let output = run_configured(stage, config, args, runs);
    assert!(output.status.success(), "{stage} {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The prediction log lines of a classifier's answer to text `i` (its text
/// kept, or not) and, given a label, the feedback on it.
pub fn logged(i: usize, text: Option<&str>, feedback: Option<&str>, version: &str) -> Vec<String> {
    use kiln_core::prediction_log::{InputStats, LogRecord};
    let request_id = format!("req-{i}");
    let prediction = LogRecord::Prediction {
        time: format!("2026-11-28T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        request_id: request_id.clone(),
        client: Some("app".into()),
        client_request_id: None,
        index: 0,
        text: text.map(str::to_owned),
        text_sha256: None,
        label: "positive".into(),
        score: 0.7,
        margin: 0.4,
        entropy: 0.6,
        calibrated_score: None,
        input: InputStats { tokens: 12, truncated: false, unknown_tokens: 0 },
        model_version: version.into(),
        quantize: kiln_core::Quantize::None,
        latency_ms: 5.0,
    };
    let feedback = feedback.map(|label| LogRecord::Feedback {
        time: format!("2026-11-28T11:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        request_id,
        client: Some("app".into()),
        index: 0,
        label: label.to_owned(),
        model_version: version.into(),
    });
    std::iter::once(prediction).chain(feedback).map(|record| serde_json::to_string(&record).expect("json")).collect()
}

/// A running `serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Everything the server logged so far.
    pub log: Arc<Mutex<String>>,
    pub client: Client,
}

impl Server {
    pub fn start(model_dir: &Path, log_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_serve"));
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("KILN_")) {
            command.env_remove(key);
        }
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--device", "cpu", "--threads", "1"])
            .arg("--model-dir")
            .arg(model_dir)
            .arg("--log-dir")
            .arg(log_dir)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // A JSON log line (`--log-format json`) carries the words in its message.
                let message = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|json| json["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| line.clone());
                if let Some(address) = message.split("listening on ").nth(1) {
                    let _ = address_tx.send(address.trim().to_owned());
                }
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let base = address_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not say where it listens:\n{}", log.lock().expect("log")));
        let server = Self { child, base, log, client: Client::builder().build().expect("client") };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.client.get(self.url("/readyz")).send().is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve never became ready:\n{}", self.log.lock().expect("log"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().expect("the server answers")
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().expect("the server answers")
    }

    /// SIGTERM, as an orchestrator stops a service; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of the Prometheus text format: `# HELP`/`# TYPE` comments, or
/// `name{labels} value`.
pub fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                return None;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line}"));
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line}"
            );
            assert!(name_end == series.len() || series.ends_with('}'), "bad labels in {line}");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
            Some((series.to_owned(), value))
        })
        .collect()
}

pub fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(name, _)| name == series).map(|(_, value)| *value)
}

//! Mirrors a run record to an MLflow tracking server through its REST API
//! (`/api/2.0/mlflow/...`): the experiment by name (created when missing), a
//! run named after kiln's run id with the params and tags, every metric point
//! with its step and timestamp, and the final status.
//!
//! Tracking is a side channel: when the server cannot be reached or refuses a
//! call, [`Mlflow`] warns once and makes no more calls, and the local record
//! (which is always written) stays the source of truth.
//!
//! Credentials come from the environment variables MLflow's own client reads:
//! `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use kiln_config::without_credentials;

use crate::{MetricPoint, RunRecord, RunStatus, flatten_params};

/// MLflow's limits on one `runs/log-batch` call.
const MAX_METRICS_PER_BATCH: usize = 1000;
const MAX_PARAMS_PER_BATCH: usize = 100;
const MAX_TAGS_PER_BATCH: usize = 100;
/// MLflow refuses longer values (6000 characters for params, 8000 for tags).
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 8000;

/// An MLflow run that mirrors one kiln run.
pub struct Mlflow {
    /// For messages: the tracking URI without credentials.
    uri: String,
    /// None once a call failed: the one warning is given, no more calls are made.
    connection: Option<Connection>,
}

impl Mlflow {
    /// Starts an MLflow run mirroring `record` (params and tags included).
    /// Never fails: a server that cannot be used gives one warning and a
    /// tracker that does nothing.
    pub fn start(tracking_uri: &str, experiment: &str, record: &RunRecord) -> Self {
        let uri = without_credentials(tracking_uri);
        let opened = Connection::open(tracking_uri, experiment, record);
        Self { connection: warn_on_error(&uri, opened), uri }
    }

    /// The MLflow run id, when the run was created.
    pub fn run_id(&self) -> Option<&str> {
        self.connection.as_ref().map(|c| c.run_id.as_str())
    }

    /// Logs the final tags, every metric point and the final status.
    pub fn finish(&mut self, record: &RunRecord, points: &[MetricPoint]) {
        if let Some(connection) = self.connection.take() {
            warn_on_error(&self.uri, connection.finish(record, points));
        }
    }
}

fn warn_on_error<T>(uri: &str, result: Result<T>) -> Option<T> {
    result
        .inspect_err(|error| {
            tracing::warn!("MLflow tracking at {uri} failed, so this run is recorded locally only: {error:#}");
        })
        .ok()
}

/// A run created on a server that answered.
struct Connection {
    api: Api,
    run_id: String,
}

impl Connection {
    fn open(tracking_uri: &str, experiment: &str, record: &RunRecord) -> Result<Self> {
        if !(tracking_uri.starts_with("http://") || tracking_uri.starts_with("https://")) {
            bail!("only http(s) tracking servers are supported");
        }
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        let api = Api { base: format!("{}/api/2.0/mlflow", tracking_uri.trim_end_matches('/')), client };
        let run_id = api.create_run(experiment, record)?;
        let connection = Self { api, run_id };
        connection.log_tags(record)?;
        let params = flatten_params(&record.params)
            .into_iter()
            .map(|(key, value)| json!({ "key": key, "value": truncate(&value, MAX_PARAM_VALUE) }));
        connection.log_batch("params", params, MAX_PARAMS_PER_BATCH)?;
        Ok(connection)
    }

    fn finish(&self, record: &RunRecord, points: &[MetricPoint]) -> Result<()> {
        self.log_tags(record)?;
        let metrics = points
            .iter()
            .map(|p| json!({ "key": p.key, "value": p.value, "timestamp": p.timestamp_ms, "step": p.step }));
        self.log_batch("metrics", metrics, MAX_METRICS_PER_BATCH)?;
        let status = match record.status {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Interrupted | RunStatus::Pruned => "KILLED",
            RunStatus::Running => "RUNNING",
        };
        let end_time = record.ended_ms.unwrap_or_else(crate::now_ms);
        self.api.post("runs/update", &json!({ "run_id": self.run_id, "status": status, "end_time": end_time }))?;
        Ok(())
    }

    /// Tags may be set again (params may not), so the final ones, such as the
    /// device a run chose, are logged at the end too.
    fn log_tags(&self, record: &RunRecord) -> Result<()> {
        // The local record's `mlflow.run_id` names this very run: not a tag for MLflow.
        let mut tags: Vec<(&str, &str)> =
            record.tags.iter().filter(|(k, _)| *k != "mlflow.run_id").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tags.push(("kiln.stage", &record.stage));
        tags.push(("kiln.run_id", &record.id));
        if let Some(commit) = record.tags.get("git.commit") {
            tags.push(("mlflow.source.git.commit", commit));
        }
        if let Some(config) = &record.config_file {
            tags.push(("kiln.config_file", config));
        }
        if let Some(error) = &record.error {
            tags.push(("kiln.error", error));
        }
        let tags = tags.into_iter().map(|(key, value)| json!({ "key": key, "value": truncate(value, MAX_TAG_VALUE) }));
        self.log_batch("tags", tags, MAX_TAGS_PER_BATCH)
    }

    /// `runs/log-batch` calls of at most `per_batch` `field` entries each.
    fn log_batch(&self, field: &str, entries: impl Iterator<Item = Value>, per_batch: usize) -> Result<()> {
        let entries: Vec<Value> = entries.collect();
        for chunk in entries.chunks(per_batch) {
            self.api.post("runs/log-batch", &json!({ "run_id": self.run_id, field: chunk }))?;
        }
        Ok(())
    }
}

/// MLflow's REST API on one server.
struct Api {
    base: String,
    client: reqwest::blocking::Client,
}

impl Api {
    /// Creates a run named after kiln's run id in `experiment`; returns MLflow's id.
    fn create_run(&self, experiment: &str, record: &RunRecord) -> Result<String> {
        let experiment_id = self.experiment_id(experiment)?;
        let created = self.post(
            "runs/create",
            &json!({ "experiment_id": experiment_id, "run_name": record.id, "start_time": record.started_ms }),
        )?;
        created["run"]["info"]["run_id"].as_str().map(str::to_owned).context("runs/create answered without a run id")
    }

    /// The experiment named `name`, created when missing.
    fn experiment_id(&self, name: &str) -> Result<String> {
        let url = format!("{}/experiments/get-by-name", self.base);
        let request = self.client.get(&url).query(&[("experiment_name", name)]);
        let response = authorized(request).send().map_err(reqwest::Error::without_url).context("cannot reach it")?;
        let status = response.status();
        let body: Value = response.json().unwrap_or_default();
        if status.is_success() {
            return body["experiment"]["experiment_id"].as_str().map(str::to_owned).context("no experiment id");
        }
        if body["error_code"] != "RESOURCE_DOES_NOT_EXIST" {
            bail!("experiments/get-by-name: {status}: {body}");
        }
        let created = self.post("experiments/create", &json!({ "name": name }))?;
        created["experiment_id"].as_str().map(str::to_owned).context("experiments/create answered without an id")
    }

    fn post(&self, method: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{method}", self.base);
        // Errors leave the URL out: it may hold credentials.
        let response = authorized(self.client.post(&url).json(body))
            .send()
            .map_err(reqwest::Error::without_url)
            .with_context(|| format!("{method}: cannot reach it"))?;
        let status = response.status();
        let answer: Value = response.json().unwrap_or_default();
        if !status.is_success() {
            bail!("{method}: {status}: {answer}");
        }
        Ok(answer)
    }
}

/// Adds the credentials MLflow's own client would send.
fn authorized(request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(token) = env("MLFLOW_TRACKING_TOKEN") {
        request.bearer_auth(token)
    } else if let Some(user) = env("MLFLOW_TRACKING_USERNAME") {
        request.basic_auth(user, env("MLFLOW_TRACKING_PASSWORD"))
    } else {
        request
    }
}

fn truncate(value: &str, max_chars: usize) -> String {
    value.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record() -> RunRecord {
        RunRecord {
            id: "r".into(),
            stage: "train".into(),
            status: RunStatus::Finished,
            started_ms: 1,
            ended_ms: Some(2),
            config_file: None,
            params: json!({}),
            tags: BTreeMap::new(),
            metrics: BTreeMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn an_unreachable_server_leaves_a_tracker_that_does_nothing() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut tracker = Mlflow::start(&format!("http://127.0.0.1:{port}"), "kiln", &record());
        assert!(tracker.connection.is_none() && tracker.run_id().is_none());
        tracker.finish(&record(), &[]);
        assert!(tracker.connection.is_none());
    }

    #[test]
    fn a_non_http_uri_is_refused_without_a_call() {
        let tracker = Mlflow::start("file:./mlruns", "kiln", &record());
        assert!(tracker.connection.is_none());
    }

    #[test]
    fn credentials_are_left_out_of_the_uri() {
        assert_eq!(without_credentials("https://me:secret@mlflow.example.com/"), "https://mlflow.example.com/");
        assert_eq!(without_credentials("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(without_credentials("databricks"), "databricks");
    }
}

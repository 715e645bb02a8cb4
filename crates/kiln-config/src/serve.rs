//! `[serve]`: the HTTP service: limits, tokens, timeouts, the prediction log.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{Aggregation, ConfigError, Precision, Quantize};

/// What the prediction log keeps of each text: all of it, only its sha256
/// (privacy: no text leaves the request), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogText {
    Full,
    Hash,
    None,
}

/// `[serve]`: the HTTP service (`serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on; `0.0.0.0` to accept connections from other machines
    /// (which needs API tokens, or `allow_unauthenticated`).
    pub host: String,
    /// 0 picks a free port (the log says which).
    pub port: u16,
    /// Serve `/metrics` on this port instead, without auth (for a scraper on an internal network).
    pub metrics_port: Option<u16>,
    /// A model folder: an export, `train`'s output, or a Hugging Face classifier.
    pub model_dir: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// LibTorch CPU threads; 0 lets LibTorch pick.
    pub threads: usize,
    /// `int8`: dynamic int8 linear layers on the CPU (faster, about the same accuracy).
    pub quantize: Quantize,
    /// Matrix products in `fp32`, `bf16` (a bf16 copy of the encoder's linear
    /// layers; embeddings, LayerNorm and softmax stay fp32) or `auto` (bf16
    /// where the device multiplies bf16 fast). Not with `quantize = "int8"`.
    pub precision: Precision,
    /// Most texts the model runs together.
    pub max_batch_size: usize,
    /// Most tokens (summed over texts) the model runs together.
    pub max_batch_tokens: usize,
    /// How long a batch waits for more requests once one arrived. 0: take what
    /// is queued and go (batches still form under load, while the model is busy).
    pub max_wait_ms: u64,
    /// Most texts in one request (413 above).
    pub max_client_batch: usize,
    /// Most requests waiting for the model (429 above).
    pub max_queue: usize,
    /// Most bytes of text waiting for the model, summed over the queued
    /// requests (429 above): the queue's memory, whatever the requests' sizes.
    pub max_queue_bytes: usize,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Texts are cut to this many characters before tokenizing. `None`: 32 per
    /// token of the model's `max_length` (the model reads no further).
    pub max_text_chars: Option<usize>,
    /// API tokens, each `token` or `name:token[:scopes]` (scopes: `predict`,
    /// `feedback`, `admin`, comma-separated; default `predict,feedback`).
    /// Prefer `api_tokens_file`: a token here or in a flag can be read by others.
    pub api_tokens: Vec<String>,
    /// A file of API tokens, one `name:token[:scopes]` a line (`#` comments);
    /// read at start and again on every reload.
    pub api_tokens_file: Option<PathBuf>,
    /// Listen on a non-loopback address without any token: anyone who reaches
    /// the port may predict, send feedback and reload. Off, `serve` refuses to start so.
    pub allow_unauthenticated: bool,
    /// Requests per second one client (token, or address when open) may send
    /// to `/v1/predict`; 0: no limit. Above it: 429 with `Retry-After`.
    pub predict_rate_limit: f64,
    /// The same for `/v1/feedback`.
    pub feedback_rate_limit: f64,
    /// Requests a client may send at once before its rate limit applies.
    pub rate_limit_burst: u32,
    /// A client must send a request's headers within this time of the
    /// connection's waiting for them (a kept-alive connection waits this long
    /// for its next request), or it is closed.
    pub header_timeout_ms: u64,
    /// The longest a request may take, body included (408 after).
    pub request_timeout_ms: u64,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout_ms: u64,
    /// Most open connections; more wait in the OS's backlog until one closes.
    pub max_connections: usize,
    /// On SIGTERM, the longest to wait for requests in flight before closing the rest.
    pub shutdown_timeout_ms: u64,
    /// The key that signs request ids (feedback must quote one this server
    /// issued) and keys `retrain`'s holdout; created (0600) when missing.
    /// `None`: `<log_dir>/.kiln-signing-key`, shared by replicas sharing the log.
    pub signing_key_file: Option<PathBuf>,
    /// Most entities in one feedback (422 above).
    pub max_feedback_entities: usize,
    /// A log line per HTTP request (method, route, status, milliseconds,
    /// request id) at level info, so `--quiet` leaves it out.
    pub access_log: bool,
    /// Append every prediction (and feedback) as JSON lines under `log_dir`.
    pub log_predictions: bool,
    pub log_dir: PathBuf,
    /// What the log keeps of a text: `full`, `hash` (sha256) or `none`.
    pub log_text: LogText,
    /// A log file is closed and a new one started past this size.
    pub log_rotate_bytes: u64,
    /// Most bytes of records waiting for the log's writer; more are dropped and counted.
    pub log_queue_bytes: usize,
    /// Completed log files are deleted, oldest first, while the folder holds
    /// more than this many bytes of them; 0: no limit.
    pub log_retention_bytes: u64,
    /// Completed log files older than this many days are deleted; 0: kept.
    pub log_retention_days: u64,
    /// Token classification: how sub-words group into entities when a request
    /// does not say (`aggregation_strategy`), as transformers' pipeline does.
    pub aggregation: Aggregation,
    /// Reload the model when its folder changes.
    pub watch: bool,
    /// How often the folder is checked when `watch` is on.
    pub watch_interval_ms: u64,
}

/// Characters per token of `max_length` that texts are cut to when
/// `max_text_chars` is not set: WordPiece tokens average about 4 characters
/// of English, so the model's window ends well before the cut.
pub const TEXT_CHARS_PER_TOKEN: usize = 32;

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            metrics_port: None,
            model_dir: "artifacts/registry/production".into(),
            device: "auto".into(),
            threads: 0,
            quantize: Quantize::None,
            precision: Precision::Fp32,
            max_batch_size: 32,
            max_batch_tokens: 16384,
            max_wait_ms: 0,
            max_client_batch: 64,
            max_queue: 512,
            max_queue_bytes: 64 << 20,
            max_body_bytes: 1 << 20,
            max_text_chars: None,
            api_tokens: Vec::new(),
            api_tokens_file: None,
            allow_unauthenticated: false,
            predict_rate_limit: 0.0,
            feedback_rate_limit: 20.0,
            rate_limit_burst: 50,
            header_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            shutdown_timeout_ms: 30_000,
            signing_key_file: None,
            max_feedback_entities: 256,
            access_log: true,
            log_predictions: true,
            log_dir: "artifacts/serve/log".into(),
            log_text: LogText::Full,
            log_rotate_bytes: 64 << 20,
            log_queue_bytes: 64 << 20,
            log_retention_bytes: 4 << 30,
            log_retention_days: 30,
            aggregation: Aggregation::Simple,
            watch: false,
            watch_interval_ms: 2000,
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::check_precision("serve", self.precision, self.quantize)?;
        for (key, value) in [
            ("serve.max_batch_size", self.max_batch_size as u64),
            ("serve.max_batch_tokens", self.max_batch_tokens as u64),
            ("serve.max_client_batch", self.max_client_batch as u64),
            ("serve.max_queue", self.max_queue as u64),
            ("serve.max_queue_bytes", self.max_queue_bytes as u64),
            ("serve.max_body_bytes", self.max_body_bytes as u64),
            ("serve.max_text_chars", self.max_text_chars.unwrap_or(1) as u64),
            ("serve.max_connections", self.max_connections as u64),
            ("serve.log_queue_bytes", self.log_queue_bytes as u64),
            ("serve.header_timeout_ms", self.header_timeout_ms),
            ("serve.request_timeout_ms", self.request_timeout_ms),
            ("serve.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("serve.predict_rate_limit", self.predict_rate_limit),
            ("serve.feedback_rate_limit", self.feedback_rate_limit),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::invalid(
                    key,
                    "must be 0 (no limit) or a positive number of requests a second",
                ));
            }
        }
        if self.rate_limit_burst == 0 {
            return Err(ConfigError::invalid("serve.rate_limit_burst", "must be at least 1"));
        }
        if self.watch && self.watch_interval_ms == 0 {
            return Err(ConfigError::invalid("serve.watch_interval_ms", "must be at least 1 when watch is on"));
        }
        for (line, entry) in self.api_tokens.iter().enumerate() {
            ApiToken::parse(entry, &format!("token-{}", line + 1)).map_err(|message| {
                ConfigError::invalid("serve.api_tokens", format!("entry {}: {message}", line + 1))
            })?;
        }
        Ok(())
    }

    /// The characters a text is cut to for a model that reads `max_length` tokens.
    pub fn text_chars_for(&self, max_length: usize) -> usize {
        self.max_text_chars.unwrap_or_else(|| max_length.max(1).saturating_mul(TEXT_CHARS_PER_TOKEN))
    }

    /// The request-id signing key's file.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| self.log_dir.join(SIGNING_KEY))
    }

    /// Every API token: `api_tokens` then the lines of `api_tokens_file`. An
    /// error names the file and line (never the token).
    pub fn load_api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut tokens = Vec::new();
        for (line, entry) in self.api_tokens.iter().enumerate() {
            let token = ApiToken::parse(entry, &format!("token-{}", line + 1)).map_err(|message| {
                ConfigError::invalid("serve.api_tokens", format!("entry {}: {message}", line + 1))
            })?;
            tokens.push(token);
        }
        if let Some(path) = &self.api_tokens_file {
            let text =
                std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if !line.contains(':') {
                    return Err(ConfigError::invalid(
                        "serve.api_tokens_file",
                        format!("{} line {}: expected `name:token[:scopes]`", path.display(), number + 1),
                    ));
                }
                let token = ApiToken::parse(line, "").map_err(|message| {
                    ConfigError::invalid(
                        "serve.api_tokens_file",
                        format!("{} line {}: {message}", path.display(), number + 1),
                    )
                })?;
                tokens.push(token);
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for token in &tokens {
            if !names.insert(token.name.as_str()) {
                return Err(ConfigError::invalid(
                    "serve.api_tokens",
                    format!("the token name '{}' is given twice: names tell clients apart in the log", token.name),
                ));
            }
        }
        Ok(tokens)
    }
}

/// The file name of the request-id signing key in the log folder, by default.
pub const SIGNING_KEY: &str = ".kiln-signing-key";

/// What a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/v1/predict`, `/v1/model`, `/openapi.json` and `/metrics` on the API port.
    Predict,
    /// `/v1/feedback`.
    Feedback,
    /// `/admin/reload`.
    Admin,
}

impl Scope {
    pub const DEFAULT: [Scope; 2] = [Scope::Predict, Scope::Feedback];

    pub fn name(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Feedback => "feedback",
            Self::Admin => "admin",
        }
    }
}

/// One API token with the name the logs know it by.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl ApiToken {
    /// `token` (named `default_name`, default scopes) or `name:token[:scopes]`.
    /// Errors never quote the token.
    pub fn parse(entry: &str, default_name: &str) -> Result<Self, String> {
        let mut parts = entry.split(':');
        let (name, token, scopes) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(token), None, None, None) => (default_name, token, None),
            (Some(name), Some(token), scopes, None) => (name, token, scopes),
            _ => return Err("expected `token` or `name:token[:scopes]` (a token cannot contain ':')".into()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) || name.len() > 64
        {
            return Err(format!("the name {name:?} must be 1 to 64 letters, digits or -_.@"));
        }
        if token.trim() != token || token.is_empty() {
            return Err(format!(
                "the token of '{name}' is empty or has surrounding spaces ({} characters)",
                token.len()
            ));
        }
        if token.chars().count() < 16 {
            return Err(format!(
                "the token of '{name}' has {} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
                token.chars().count()
            ));
        }
        let scopes = match scopes {
            None => Scope::DEFAULT.to_vec(),
            Some(list) => {
                let mut scopes = Vec::new();
                for scope in list.split(',').map(str::trim) {
                    scopes.push(match scope {
                        "predict" => Scope::Predict,
                        "feedback" => Scope::Feedback,
                        "admin" => Scope::Admin,
                        other => {
                            return Err(format!(
                                "unknown scope {other:?} for '{name}': use predict, feedback or admin, comma-separated"
                            ));
                        }
                    });
                }
                scopes.sort();
                scopes.dedup();
                scopes
            }
        };
        Ok(Self { name: name.to_owned(), token: token.to_owned(), scopes })
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Serve settings (config section [serve])")]
pub struct ServeArgs {
    /// Address to listen on; 0.0.0.0 for other machines [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR", env = "KILN_HOST")]
    pub host: Option<String>,
    /// Port; 0 picks a free one [default: 8080].
    #[arg(long, value_name = "PORT", env = "KILN_PORT")]
    pub port: Option<u16>,
    /// Serve /metrics on this port instead, without auth [default: none, on --port].
    #[arg(long, value_name = "PORT", env = "KILN_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Model folder: an export, train's output or a Hugging Face classifier [default: artifacts/registry/production].
    #[arg(long, value_name = "DIR", env = "KILN_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads of the inference thread (start-up and model loading use one), 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Run the encoder's linear layers in dynamic int8 on the CPU (the model folder stays fp32) [default: none].
    #[arg(long, value_enum, env = "KILN_QUANTIZE")]
    pub quantize: Option<Quantize>,
    /// Matrix products in fp32, bf16 (the model folder stays fp32) or auto (bf16 where the device has
    /// fast bf16); not with --quantize int8 [default: fp32].
    #[arg(long, value_enum, env = "KILN_PRECISION")]
    pub precision: Option<Precision>,
    /// Most texts the model runs together [default: 32].
    #[arg(long, value_name = "N", env = "KILN_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Most tokens the model runs together [default: 16384].
    #[arg(long, value_name = "N", env = "KILN_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// Milliseconds a batch waits for more requests; 0 = take what is queued [default: 0].
    #[arg(long, value_name = "MS", env = "KILN_MAX_WAIT_MS")]
    pub max_wait_ms: Option<u64>,
    /// Most texts in one request, 413 above [default: 64].
    #[arg(long, value_name = "N", env = "KILN_MAX_CLIENT_BATCH")]
    pub max_client_batch: Option<usize>,
    /// Most requests waiting for the model, 429 above [default: 512].
    #[arg(long, value_name = "N", env = "KILN_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Most bytes of text waiting for the model, 429 above [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_MAX_QUEUE_BYTES")]
    pub max_queue_bytes: Option<usize>,
    /// Largest request body in bytes, 413 above [default: 1048576].
    #[arg(long, value_name = "BYTES", env = "KILN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Texts are cut to this many characters before tokenizing [default: 32 per token of the model's max_length].
    #[arg(long, value_name = "N", env = "KILN_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    /// API tokens, comma-separated, each `token` or `name:token[:scopes]`; prefer --api-tokens-file [default: none].
    #[arg(long, value_name = "TOKEN", env = "KILN_API_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub api_tokens: Vec<String>,
    /// File of API tokens, a `name:token[:scopes]` a line (scopes: predict,feedback,admin); re-read on reload [default: none].
    #[arg(long, value_name = "FILE", env = "KILN_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Listen on a non-loopback address with no token: anyone who reaches it may predict, give feedback and reload [default: false].
    #[arg(long, value_name = "BOOL", env = "KILN_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: Option<bool>,
    /// Requests a second one client may send to /v1/predict, 429 above; 0 = no limit [default: 0].
    #[arg(long, value_name = "PER_SECOND", env = "KILN_PREDICT_RATE_LIMIT")]
    pub predict_rate_limit: Option<f64>,
    /// Requests a second one client may send to /v1/feedback, 429 above; 0 = no limit [default: 20].
    #[arg(long, value_name = "PER_SECOND", env = "KILN_FEEDBACK_RATE_LIMIT")]
    pub feedback_rate_limit: Option<f64>,
    /// Requests a client may send at once before its rate limit applies [default: 50].
    #[arg(long, value_name = "N", env = "KILN_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Milliseconds a client has to send a request's headers (and a kept-alive connection waits for the next) [default: 5000].
    #[arg(long, value_name = "MS", env = "KILN_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Milliseconds a request may take, body included, 408 after [default: 30000].
    #[arg(long, value_name = "MS", env = "KILN_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Milliseconds without a byte either way before a connection is closed [default: 60000].
    #[arg(long, value_name = "MS", env = "KILN_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most open connections; more wait in the OS's backlog [default: 1024].
    #[arg(long, value_name = "N", env = "KILN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// On SIGTERM, milliseconds to wait for requests in flight before closing the rest [default: 30000].
    #[arg(long, value_name = "MS", env = "KILN_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Key that signs request ids and keys retrain's holdout, created when missing [default: <log-dir>/.kiln-signing-key].
    #[arg(long, value_name = "FILE", env = "KILN_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Most entities in one feedback, 422 above [default: 256].
    #[arg(long, value_name = "N", env = "KILN_MAX_FEEDBACK_ENTITIES")]
    pub max_feedback_entities: Option<usize>,
    /// A log line per HTTP request: method, route, status, milliseconds, request id [default: true].
    #[arg(long, value_name = "BOOL", env = "KILN_ACCESS_LOG")]
    pub access_log: Option<bool>,
    /// Append each prediction and feedback to JSON lines under --log-dir [default: true].
    #[arg(long, value_name = "BOOL", env = "KILN_LOG_PREDICTIONS")]
    pub log_predictions: Option<bool>,
    /// Folder of the prediction log [default: artifacts/serve/log].
    #[arg(long, value_name = "DIR", env = "KILN_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// What the log keeps of a text: full, hash (sha256) or none [default: full].
    #[arg(long, value_enum, env = "KILN_LOG_TEXT")]
    pub log_text: Option<LogText>,
    /// Start a new log file past this many bytes [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_ROTATE_BYTES")]
    pub log_rotate_bytes: Option<u64>,
    /// Most bytes of records waiting for the log writer; more are dropped and counted [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_QUEUE_BYTES")]
    pub log_queue_bytes: Option<usize>,
    /// Delete the oldest completed log files while they hold more than this; 0 = no limit [default: 4294967296].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<u64>,
    /// Delete completed log files older than this many days; 0 = keep [default: 30].
    #[arg(long, value_name = "DAYS", env = "KILN_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<u64>,
    /// Token classification: how sub-words group into entities when a request does not say [default: simple].
    #[arg(long, value_enum, env = "KILN_AGGREGATION")]
    pub aggregation: Option<Aggregation>,
    /// Reload the model when its folder changes [default: false].
    #[arg(long, value_name = "BOOL", env = "KILN_WATCH")]
    pub watch: Option<bool>,
    /// How often --watch checks the folder, in milliseconds [default: 2000].
    #[arg(long, value_name = "MS", env = "KILN_WATCH_INTERVAL_MS")]
    pub watch_interval_ms: Option<u64>,
}

impl ServeArgs {
    pub fn apply(self, config: &mut ServeConfig) {
        apply_overrides!(
            self,
            config,
            [
                host,
                port,
                model_dir,
                device,
                threads,
                quantize,
                precision,
                max_batch_size,
                max_batch_tokens,
                max_wait_ms,
                max_client_batch,
                max_queue,
                max_queue_bytes,
                max_body_bytes,
                allow_unauthenticated,
                predict_rate_limit,
                feedback_rate_limit,
                rate_limit_burst,
                header_timeout_ms,
                request_timeout_ms,
                idle_timeout_ms,
                max_connections,
                shutdown_timeout_ms,
                max_feedback_entities,
                access_log,
                log_predictions,
                log_dir,
                log_text,
                log_rotate_bytes,
                log_queue_bytes,
                log_retention_bytes,
                log_retention_days,
                aggregation,
                watch,
                watch_interval_ms
            ],
            optional[metrics_port, max_text_chars, api_tokens_file, signing_key_file],
            by_hand[api_tokens]
        );
        if !api_tokens.is_empty() {
            config.api_tokens = api_tokens;
        }
    }
}

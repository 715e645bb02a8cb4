//! `serve`: the model behind an HTTP API, built to run in production.
//!
//! - [`api`]: the routes and their types (the OpenAPI document comes from them);
//! - [`batcher`]: the request queue and the inference thread that batches it;
//! - [`model`]: loading a model folder and describing it;
//! - [`auth`], [`ids`]: named, scoped bearer tokens with rate limits; signed request ids;
//! - [`connections`]: the accept loop with its timeouts and connection cap;
//! - [`metrics`], [`log`]: Prometheus, the prediction log.
//!
//! Life of the server: bind (refusing a non-loopback address without tokens
//! unless told to run open), start the inference thread, load the model in the
//! background (`/healthz` answers at once, `/readyz` once the model is in and
//! while the inference thread runs), serve; on SIGTERM or Ctrl-C stop
//! accepting, finish the requests in flight (at most `shutdown_timeout_ms`),
//! drain the queue, complete the log, exit.

pub mod api;
pub mod auth;
pub mod batcher;
pub mod connections;
pub mod error;
pub mod ids;
pub mod log;
pub mod metrics;
pub mod model;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use arc_swap::{ArcSwap, ArcSwapOption};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use burn::tensor::Device;
use kiln_config::ServeConfig;
use kiln_core::model_folder::{MODEL_FILES, TOKENIZER_FILES};
use kiln_core::{Precision, Quantize};
use kiln_model::device;
use tokio::net::TcpListener;

use crate::auth::{RateLimits, Tokens};
use crate::batcher::{BatchLimits, Queue};
use crate::connections::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::ids::RequestIds;
use crate::log::{PredictionLog, Retention};
use crate::metrics::Metrics;
use crate::model::{ModelInfo, ServedModel};

/// What every request handler shares.
pub struct AppState {
    pub config: ServeConfig,
    pub queue: Queue,
    /// The model now serving; `None` until the first load.
    pub model: ArcSwapOption<ModelInfo>,
    pub metrics: Arc<Metrics>,
    pub log: Option<PredictionLog>,
    /// Re-read from `api_tokens_file` on every reload.
    tokens: ArcSwap<Tokens>,
    rate_limits: RateLimits,
    /// Signs the request ids this server issues, which feedback must quote.
    pub ids: RequestIds,
    /// Whether the server listens on a loopback address only (open is then allowed).
    loopback: bool,
    device: Device,
    /// `serve.precision` made concrete for the device at start-up.
    precision: Precision,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Set on shutdown: `/readyz` says no, so load balancers stop sending.
    draining: AtomicBool,
}

/// Loads the configured model folder and swaps it in; in-flight and queued
/// requests finish on the old model. A folder that fails to load changes nothing.
pub async fn reload(state: &Arc<AppState>) -> Result<Arc<ModelInfo>> {
    let _one_at_a_time = state.reload_lock.lock().await;
    if state.config.api_tokens_file.is_some() {
        let tokens = load_tokens(&state.config, state.loopback)?;
        if tokens.len() != state.tokens.load().len() {
            tracing::info!("{} API token(s) from {}", tokens.len(), token_source(&state.config));
        }
        state.tokens.store(Arc::new(tokens));
    }
    let (dir, device, quantize, precision) =
        (state.config.model_dir.clone(), state.device.clone(), state.config.quantize, state.precision);
    let outcome = tokio::task::spawn_blocking(move || ServedModel::load(&dir, &device, quantize, precision))
        .await
        .context("the model loading thread failed")?
        .with_context(|| {
            let dir = &state.config.model_dir;
            if dir.exists() {
                format!("cannot load the model in {}", dir.display())
            } else {
                format!(
                    "there is no model in {}: `make pipeline` exports one and records it in the registry, whose \
                     first version becomes production (`registry promote` picks another), or pass --model-dir",
                    dir.display()
                )
            }
        });
    let model = match outcome {
        Ok(model) => model,
        Err(error) => {
            state.metrics.reloads.with_label_values(&["failed"]).inc();
            return Err(error);
        }
    };
    let info = model.info.clone();
    let queue = state.queue.clone();
    tokio::task::spawn_blocking(move || queue.swap(model)).await.context("the swap failed")??;
    state.model.store(Some(info.clone()));
    state.metrics.set_model(&info.name, &info.version);
    state.metrics.reloads.with_label_values(&["ok"]).inc();
    tracing::info!(
        "serving {} version {} ({} labels, {})",
        info.dir,
        info.version,
        info.labels.len(),
        match (info.quantize, info.precision) {
            (Quantize::Int8, _) => "int8 encoder",
            (_, Precision::Bf16) => "bf16 matrix products",
            _ => "fp32",
        }
    );
    Ok(info)
}

/// A bound, not yet running server. Binding first lets a caller learn the
/// address (with port 0) before requests can arrive.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    inference: std::thread::JoinHandle<()>,
}

/// Where the tokens come from, for messages (never the tokens).
fn token_source(config: &ServeConfig) -> String {
    match &config.api_tokens_file {
        Some(file) => format!("serve.api_tokens and {}", file.display()),
        None => "serve.api_tokens".into(),
    }
}

/// The API tokens; refuses to leave a non-loopback server without any unless
/// `allow_unauthenticated` says so.
fn load_tokens(config: &ServeConfig, loopback: bool) -> Result<Tokens> {
    let tokens = Tokens::new(&config.load_api_tokens()?);
    if tokens.is_empty() && !loopback && !config.allow_unauthenticated {
        bail!(
            "refusing to serve {}:{} without API tokens: anyone who can reach it could predict, send feedback and \
             reload the model. Give tokens in a file, one `name:token[:scopes]` a line (--api-tokens-file, \
             KILN_API_TOKENS_FILE, serve.api_tokens_file), or run open on purpose with --allow-unauthenticated true \
             (KILN_ALLOW_UNAUTHENTICATED, serve.allow_unauthenticated)",
            config.host,
            config.port
        );
    }
    Ok(tokens)
}

impl Server {
    pub async fn bind(config: ServeConfig) -> Result<Self> {
        config.validate()?;
        let spec =
            anyhow::Context::context(device::configure(&config.device, config.threads), "config key `serve.device`")?;
        let precision = device::inference_precision(config.precision, config.quantize, spec)
            .context("config key `serve.precision`")?;
        let metrics = Arc::new(Metrics::new());
        let limits = BatchLimits {
            max_batch_size: config.max_batch_size,
            max_batch_tokens: config.max_batch_tokens,
            max_wait: Duration::from_millis(config.max_wait_ms),
        };
        let address = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let loopback = listener.local_addr().context("the listening socket has no address")?.ip().is_loopback();
        let tokens = load_tokens(&config, loopback)?;
        if tokens.is_empty() && !loopback {
            tracing::warn!(
                "serving {address} WITHOUT AUTHENTICATION (serve.allow_unauthenticated): anyone who can reach it may \
                 predict, send feedback and reload the model"
            );
        } else if !tokens.is_empty() {
            tracing::info!("{} API token(s) from {}", tokens.len(), token_source(&config));
        }
        let metrics_listener = match config.metrics_port {
            Some(port) => {
                let address = format!("{}:{port}", config.host);
                Some(TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?)
            }
            None => None,
        };
        let key_file = config.signing_key_path();
        let key = if config.log_predictions || config.signing_key_file.is_some() {
            kiln_core::secret::load_or_create_key(&key_file)?
        } else {
            // No log, no feedback: the ids need not outlive the process.
            kiln_core::secret::random_key()
        };
        let log = config
            .log_predictions
            .then(|| {
                let retention = Retention {
                    max_bytes: config.log_retention_bytes,
                    max_age: Duration::from_secs(config.log_retention_days.saturating_mul(86_400)),
                };
                PredictionLog::start(
                    &config.log_dir,
                    config.log_rotate_bytes,
                    config.log_queue_bytes,
                    retention,
                    metrics.clone(),
                )
            })
            .transpose()?;
        connections::reserve_file_descriptors(config.max_connections);
        let threads = device::InferenceThreads::reserve();
        let (queue, inference) =
            Queue::start(limits, threads, config.max_queue, config.max_queue_bytes, metrics.clone())
                .context("cannot start the inference thread")?;
        metrics.worker_up.set(1);
        let state = Arc::new(AppState {
            tokens: ArcSwap::from_pointee(tokens),
            rate_limits: RateLimits::new(&config),
            ids: RequestIds::new(key),
            loopback,
            config,
            queue,
            model: ArcSwapOption::empty(),
            metrics,
            log,
            device: spec.device(),
            precision,
            reload_lock: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
        });
        Ok(Self { state, listener, metrics_listener, inference })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().context("the listening socket has no address")
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// Loads the model and serves until `shutdown` completes (or the first
    /// load fails), then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self { state, listener, metrics_listener, inference } = self;
        let app = router(&state);
        let limits = Limits {
            header_timeout: Duration::from_millis(state.config.header_timeout_ms),
            idle_timeout: Duration::from_millis(state.config.idle_timeout_ms),
            max_connections: state.config.max_connections,
            shutdown_timeout: Duration::from_millis(state.config.shutdown_timeout_ms),
        };
        let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
        let metrics_server = metrics_listener.map(|listener| {
            let app = Router::new().route("/metrics", get(api::metrics)).with_state(state.clone());
            let mut stopped = metrics_stopped.clone();
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                connections::serve(listener, app, limits, metrics, stop).await;
            })
        });
        let watcher = state.config.watch.then(|| tokio::spawn(watch(state.clone())));
        let forgetter = tokio::spawn(forget_quiet_clients(state.clone()));

        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let startup = state.clone();
        let stop = async move {
            let load = async {
                match reload(&startup).await {
                    // Loaded: serve until told to stop.
                    Ok(_) => std::future::pending::<()>().await,
                    Err(error) => {
                        let _ = failed_tx.send(error);
                    }
                }
            };
            tokio::select! {
                () = shutdown => tracing::info!("shutting down: finishing the requests in flight"),
                () = load => {}
            }
            startup.draining.store(true, Ordering::SeqCst);
        };
        connections::serve(listener, app, limits, state.metrics.clone(), stop).await;
        forgetter.abort();

        // Every request is answered; finish what the inference thread holds.
        let queue = state.queue.clone();
        tokio::task::spawn_blocking(move || {
            queue.stop();
            inference.join()
        })
        .await
        .context("the inference thread")?
        .map_err(|_| anyhow::anyhow!("the inference thread panicked"))?;
        let _ = stop_metrics.send(true);
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        let closing = state.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(log) = &closing.log {
                log.close();
            }
        })
        .await
        .context("closing the prediction log")?;
        match failed_rx.await {
            Ok(error) => Err(error),
            Err(_) => Ok(()),
        }
    }
}

/// Runs the server from the command line until SIGTERM or Ctrl-C.
pub fn run(config: ServeConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        tracing::info!("listening on http://{}", server.local_addr()?);
        if let Some(address) = server.metrics_addr() {
            tracing::info!("metrics on http://{address}/metrics");
        }
        server.run(shutdown_signal()).await
    })
}

/// SIGTERM (how orchestrators stop a service) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Every minute, the rate limiters forget clients back at their full burst.
async fn forget_quiet_clients(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        state.rate_limits.forget_quiet_clients();
    }
}

/// A request over `request_timeout_ms` is answered 408 by tower-http's
/// timeout layer with no body: give it the JSON error every other failure has.
async fn timeout_as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        return ApiError::new(
            ErrorCode::RequestTimeout,
            "the request took longer than the server allows (serve.request_timeout_ms)",
        )
        .into_response();
    }
    response
}

fn router(state: &Arc<AppState>) -> Router {
    let mut protected = Router::new()
        .route("/v1/predict", post(api::predict))
        .route("/v1/feedback", post(api::feedback))
        .route("/v1/model", get(api::model_info))
        .route("/admin/reload", post(api::reload))
        .route("/openapi.json", get(api::openapi_spec));
    if state.config.metrics_port.is_none() {
        protected = protected.route("/metrics", get(api::metrics));
    }
    // The page is static HTML without data; it asks for the token and sends it with each call.
    let open = Router::new()
        .route("/", get(api::page))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz));
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    protected
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(middleware::from_fn(timeout_as_json))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state.clone())
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint; GET /openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method")
}

/// Counts every request by route and status, times it and, with
/// `serve.access_log`, logs it (a server error as a warning).
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status();
    state.metrics.request_seconds.with_label_values(&[route.as_str()]).observe(seconds);
    state.metrics.requests.with_label_values(&[route.as_str(), status.as_str()]).inc();
    if state.config.access_log {
        let request_id = response.headers().get(api::REQUEST_ID).and_then(|id| id.to_str().ok()).unwrap_or("");
        let milliseconds = (seconds * 1e5).round() / 100.0;
        if status.is_server_error() {
            tracing::warn!(target: "kiln_serve::access", method = %method, route, status = status.as_u16(), milliseconds, request_id, "request");
        } else {
            tracing::info!(target: "kiln_serve::access", method = %method, route, status = status.as_u16(), milliseconds, request_id, "request");
        }
    }
    response
}

/// What identifies the folder's current contents, cheaply: the size and mtime
/// of each file a model folder is made of.
fn fingerprint(dir: &std::path::Path) -> Vec<Option<(u64, SystemTime)>> {
    MODEL_FILES
        .iter()
        .chain(&TOKENIZER_FILES)
        .map(|name| {
            let metadata = std::fs::metadata(dir.join(name)).ok()?;
            Some((metadata.len(), metadata.modified().ok()?))
        })
        .collect()
}

/// Reloads when the model folder changes and then holds still for one interval
/// (so a copy in progress is not loaded half-way).
async fn watch(state: Arc<AppState>) {
    let interval = Duration::from_millis(state.config.watch_interval_ms);
    let dir = state.config.model_dir.clone();
    let mut serving = fingerprint(&dir);
    let mut seen = serving.clone();
    loop {
        tokio::time::sleep(interval).await;
        let now = fingerprint(&dir);
        if now != serving && now == seen {
            tracing::info!("{} changed: reloading", dir.display());
            if let Err(error) = reload(&state).await {
                tracing::error!("{error:#}");
            }
            serving = now.clone();
        }
        seen = now;
    }
}

//! `serve`: the model behind an HTTP API, built to run in production.
//!
//! - [`api`]: the routes and their types (the OpenAPI document comes from them);
//! - [`batcher`]: the request queue and the inference thread that batches it;
//! - [`model`]: loading a model folder and describing it;
//! - [`auth`], [`metrics`], [`log`]: bearer tokens, Prometheus, the prediction log.
//!
//! Life of the server: bind, start the inference thread, load the model in the
//! background (`/healthz` answers at once, `/readyz` once the model is in), serve;
//! on SIGTERM or Ctrl-C stop accepting, finish every request in flight, drain
//! the queue, complete the log, exit.

pub mod api;
mod auth;
pub mod batcher;
pub mod error;
pub mod log;
pub mod metrics;
pub mod model;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use burn::tensor::Device;
use kiln_config::ServeConfig;
use kiln_core::model_folder::{MODEL_FILES, TOKENIZER_FILES};
use kiln_model::device;
use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::batcher::{BatchLimits, Queue};
use crate::error::ApiError;
use crate::log::PredictionLog;
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
    tokens: Tokens,
    device: Device,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Set on shutdown: `/readyz` says no, so load balancers stop sending.
    draining: AtomicBool,
}

/// Loads the configured model folder and swaps it in; in-flight and queued
/// requests finish on the old model. A folder that fails to load changes nothing.
pub async fn reload(state: &Arc<AppState>) -> Result<Arc<ModelInfo>> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let (dir, device, quantize) = (state.config.model_dir.clone(), state.device.clone(), state.config.quantize);
    let outcome = tokio::task::spawn_blocking(move || ServedModel::load(&dir, &device, quantize))
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
        if info.quantize.is_none() { "fp32" } else { "int8 encoder" }
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

impl Server {
    pub async fn bind(config: ServeConfig) -> Result<Self> {
        config.validate()?;
        let spec =
            anyhow::Context::context(device::configure(&config.device, config.threads), "config key `serve.device`")?;
        let metrics = Arc::new(Metrics::new());
        let limits = BatchLimits {
            max_batch_size: config.max_batch_size,
            max_batch_tokens: config.max_batch_tokens,
            max_wait: Duration::from_millis(config.max_wait_ms),
        };
        let log = config
            .log_predictions
            .then(|| PredictionLog::start(&config.log_dir, config.log_rotate_bytes, metrics.clone()))
            .transpose()?;
        let address = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let metrics_listener = match config.metrics_port {
            Some(port) => {
                let address = format!("{}:{port}", config.host);
                Some(TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?)
            }
            None => None,
        };
        let threads = device::InferenceThreads::reserve();
        let (queue, inference) = Queue::start(limits, threads, config.max_queue, metrics.clone());
        let state = Arc::new(AppState {
            tokens: Tokens::new(&config.api_tokens),
            config,
            queue,
            model: ArcSwapOption::empty(),
            metrics,
            log,
            device: spec.device(),
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
        let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
        let metrics_server = metrics_listener.map(|listener| {
            let app = Router::new().route("/metrics", get(api::metrics)).with_state(state.clone());
            let mut stopped = metrics_stopped.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                axum::serve(listener, app).with_graceful_shutdown(stop).await
            })
        });
        let watcher = state.config.watch.then(|| tokio::spawn(watch(state.clone())));

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
        axum::serve(listener, app).with_graceful_shutdown(stop).await.context("the HTTP server failed")?;

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
    protected
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state.clone())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; GET /openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}

/// Counts every request by route and status, and times it.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request_seconds.with_label_values(&[route.as_str()]).observe(started.elapsed().as_secs_f64());
    state.metrics.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
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

//! Prometheus metrics: what a platform team graphs and alerts on (traffic,
//! errors, where the time goes, batching, queue, model version, and the label
//! mix for drift).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Latency buckets from 0.5 ms to 10 s.
const SECONDS: [f64; 16] =
    [0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const BATCH_SIZES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub queue_seconds: Histogram,
    pub tokenize_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub model_info: IntGaugeVec,
    pub predictions: IntCounterVec,
    pub reloads: IntCounterVec,
    pub log_dropped: IntGauge,
    pub log_write_errors: IntCounter,
    pub queue_bytes: IntGauge,
    pub rate_limited: IntCounterVec,
    pub connections: IntGauge,
    pub connections_closed: IntCounterVec,
    pub worker_up: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("kiln".into()), None).expect("a valid prefix. This is a bug.");
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid histogram options. This is a bug.")
        };
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new("requests_total", "HTTP requests by route and status code"),
                &["route", "status"],
            )
            .expect("valid metric. This is a bug."),
            request_seconds: HistogramVec::new(
                HistogramOpts::new("request_duration_seconds", "Time from request to response, by route")
                    .buckets(SECONDS.to_vec()),
                &["route"],
            )
            .expect("valid metric. This is a bug."),
            queue_seconds: histogram("queue_duration_seconds", "Time a request waited for the model", &SECONDS),
            tokenize_seconds: histogram("tokenize_duration_seconds", "Cleaning and tokenizing per batch", &SECONDS),
            inference_seconds: histogram("inference_duration_seconds", "Model forward passes per batch", &SECONDS),
            batch_size: histogram("batch_size", "Texts the model ran together", &BATCH_SIZES),
            queue_depth: IntGauge::new("queue_depth", "Requests waiting for the model").expect("valid metric"),
            model_info: IntGaugeVec::new(
                Opts::new("model_info", "The model being served (1) by name and version"),
                &["name", "version"],
            )
            .expect("valid metric. This is a bug."),
            predictions: IntCounterVec::new(Opts::new("predictions_total", "Predicted texts by label"), &["label"])
                .expect("valid metric. This is a bug."),
            reloads: IntCounterVec::new(Opts::new("reloads_total", "Model reloads by result"), &["result"])
                .expect("valid metric. This is a bug."),
            log_dropped: IntGauge::new(
                "prediction_log_dropped",
                "Log records lost: dropped because the writer fell behind, or not written (see write errors)",
            )
            .expect("valid metric"),
            log_write_errors: IntCounter::new(
                "prediction_log_write_errors_total",
                "Failed writes of the prediction log (a full or broken disk): their records are lost",
            )
            .expect("valid metric"),
            queue_bytes: IntGauge::new("queue_bytes", "Bytes of text waiting for the model").expect("valid metric"),
            rate_limited: IntCounterVec::new(
                Opts::new("rate_limited_total", "Requests refused (429) for a client over its rate, by scope"),
                &["scope"],
            )
            .expect("valid metric. This is a bug."),
            connections: IntGauge::new("open_connections", "HTTP connections open now").expect("valid metric"),
            connections_closed: IntCounterVec::new(
                Opts::new("connections_closed_total", "Connections the server closed, by reason"),
                &["reason"],
            )
            .expect("valid metric. This is a bug."),
            worker_up: IntGauge::new("inference_worker_up", "1 while the inference thread runs").expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 17] = [
            Box::new(metrics.requests.clone()),
            Box::new(metrics.request_seconds.clone()),
            Box::new(metrics.queue_seconds.clone()),
            Box::new(metrics.tokenize_seconds.clone()),
            Box::new(metrics.inference_seconds.clone()),
            Box::new(metrics.batch_size.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.model_info.clone()),
            Box::new(metrics.predictions.clone()),
            Box::new(metrics.reloads.clone()),
            Box::new(metrics.log_dropped.clone()),
            Box::new(metrics.log_write_errors.clone()),
            Box::new(metrics.queue_bytes.clone()),
            Box::new(metrics.rate_limited.clone()),
            Box::new(metrics.connections.clone()),
            Box::new(metrics.connections_closed.clone()),
            Box::new(metrics.worker_up.clone()),
        ];
        for collector in collectors {
            metrics.registry.register(collector).expect("unique metric names. This is a bug.");
        }
        // At 0 from the start, so alerts that subtract them see a series.
        for scope in ["predict", "feedback"] {
            metrics.rate_limited.with_label_values(&[scope]);
        }
        metrics
    }

    /// The model now served is the only one with value 1.
    pub fn set_model(&self, name: &str, version: &str) {
        self.model_info.reset();
        self.model_info.with_label_values(&[name, version]).set(1);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into memory fails only on a metric family with no metrics,
        // which the registry never yields.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! `serve`, run as a user runs it: the real binary on a free port, called over
//! HTTP. A small random-weight classifier keeps each start under a second.

use std::collections::BTreeSet;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_config::Aggregation;
use kiln_model::DeviceSpec;
use kiln_model::Predictor;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::common::{Server, parse_prometheus, repo, sample};

const LABELS: [&str; 3] = ["billing", "cards", "transfers"];
const OTHER_LABELS: [&str; 4] = ["north", "south", "east", "west"];

fn model_folder(dir: &Path, labels: &[&str], seed: u64) {
    kiln_testing::classifier_folder(dir, labels, seed)
        .expect("a classifier folder (MiniLM's tokenizer comes from `make setup`)");
}

fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.text().expect("a body");
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: not JSON: {body}"));
    (status, value)
}

/// The status and `code` of an error answer, which must be JSON `{"error", "code"}`.
fn error_of(response: Response) -> (StatusCode, String) {
    let (status, body) = json_of(response);
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{status}: no error message: {body}");
    (status, body["code"].as_str().expect("a code").to_owned())
}

/// Every prediction record in completed log files.
fn log_records(dir: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).expect("log dir") {
        let path = entry.expect("entry").path();
        assert!(
            !path.to_string_lossy().ends_with(".partial"),
            "{} was left incomplete after a graceful shutdown",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("read log");
            records.extend(text.lines().map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")));
        }
    }
    records
}

/// Four clients posting `body` to `url` back to back until [`Load::finish`];
/// `record` turns each answer (sent at the given instant) into what the test
/// keeps, or ends that client with `None`.
struct Load<T> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<T>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl<T: Send + 'static> Load<T> {
    fn start(url: String, body: Value, record: fn(reqwest::Result<Response>, Instant) -> Option<T>) -> Self {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let clients = (0..4)
            .map(|_| {
                let (url, body, stop, seen) = (url.clone(), body.clone(), stop.clone(), seen.clone());
                std::thread::spawn(move || {
                    let client = Client::new();
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let Some(kept) = record(client.post(&url).json(&body).send(), started) else { break };
                        seen.lock().expect("lock").push(kept);
                    }
                })
            })
            .collect();
        Self { stop, seen, clients }
    }

    fn finish(self) -> Vec<T> {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().expect("client");
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

#[test]
fn predicts_explains_itself_rejects_bad_requests_and_stops_gracefully() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    // A calibration (eval's reference predictions): logged scores are then calibrated too.
    let reference = kiln_core::calibration::PredictionProfile { temperature: 2.0, ..Default::default() };
    std::fs::write(
        model.join(kiln_core::model_folder::REFERENCE_PREDICTIONS),
        serde_json::to_string(&reference).expect("json"),
    )
    .expect("write");
    let log_dir = root.path().join("log");
    let mut server = Server::start(&model, &log_dir, &["--max-client-batch", "8", "--max-body-bytes", "4096"], &[]);

    // Liveness, readiness and the model's description.
    assert_eq!(server.get("/healthz").status(), StatusCode::OK);
    let (status, ready) = json_of(server.get("/readyz"));
    assert_eq!(status, StatusCode::OK);
    let (status, info) = json_of(server.get("/v1/model"));
    assert_eq!(status, StatusCode::OK);
    let version = info["version"].as_str().expect("version").to_owned();
    assert_eq!(ready["model_version"], json!(version));
    assert_eq!(info["labels"], json!(LABELS));
    assert_eq!(info["weights_sha256"].as_str().map(|s| &s[..12]), Some(version.as_str()));
    assert_eq!(info["quantize"], json!("none"));
    assert_eq!(info["precision"], json!("fp32"));

    // The server's probabilities are the library's, whether texts come alone or batched.
    let texts = ["I am still waiting on my card?", "how do i top up", "Is there a fee for sending money abroad?"];
    let predictor = Predictor::load(&model, &DeviceSpec::Cpu.device()).expect("loads");
    let expected = predictor.probabilities_batched(&predictor.encode(&texts).expect("encodes"), 8).expect("predicts");
    let response = server.post("/v1/predict", &json!({"texts": texts, "return_all_scores": true}));
    let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let (status, batch) = json_of(response);
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["request_id"], json!(request_id));
    assert_eq!(batch["model_version"], json!(version));
    let predictions = batch["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), texts.len());
    for (prediction, probabilities) in predictions.iter().zip(&expected) {
        let scores = prediction["scores"].as_array().expect("all scores");
        assert_eq!(scores.len(), LABELS.len());
        for pair in scores.windows(2) {
            assert!(pair[0]["score"].as_f64() >= pair[1]["score"].as_f64(), "scores are not sorted: {scores:?}");
        }
        for score in scores {
            let index = LABELS.iter().position(|l| score["label"] == json!(l)).expect("a known label");
            let served = score["score"].as_f64().expect("score");
            assert!((served - f64::from(probabilities[index])).abs() < 1e-5, "{served} vs {}", probabilities[index]);
        }
        assert_eq!(prediction["label"], scores[0]["label"]);
    }
    for (text, batched) in texts.iter().zip(predictions) {
        let (status, single) = json_of(server.post("/v1/predict", &json!({"text": text})));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(single["label"], batched["label"]);
        assert!((single["score"].as_f64().expect("f") - batched["score"].as_f64().expect("f")).abs() < 1e-5);
        assert!(single.get("scores").is_none(), "scores only when asked: {single}");
    }
    let (_, tei_single) = json_of(server.post("/v1/predict", &json!({"inputs": texts[0], "top_k": 2})));
    assert_eq!(tei_single["scores"].as_array().map(Vec::len), Some(2));
    let (_, tei_batch) = json_of(server.post("/v1/predict", &json!({"inputs": [texts[0], texts[1]]})));
    assert_eq!(tei_batch["predictions"].as_array().map(Vec::len), Some(2));
    let given_id = server
        .client
        .post(server.url("/v1/predict"))
        .header("x-request-id", "order-17:a")
        .json(&json!({"text": "card?"}))
        .send()
        .expect("answers");
    let issued = json_of(given_id).1["request_id"].as_str().expect("an id").to_owned();
    assert_ne!(issued, "order-17:a", "the server issues its own id; the caller's is logged beside it");

    // Bad requests: the right status and a JSON error, never a 500.
    let raw = |body: &str, content_type: Option<&str>| {
        let mut request = server.client.post(server.url("/v1/predict")).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        error_of(request.send().expect("answers"))
    };
    assert_eq!(raw("{\"text\": ", Some("application/json")), (StatusCode::BAD_REQUEST, "malformed_json".into()));
    assert_eq!(raw("{\"text\": \"a\"}", None), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type".into()));
    for body in [
        json!({"texts": []}),
        json!({"txt": "typo"}),
        json!({}),
        json!({"text": "a", "texts": ["b"]}),
        json!({"text": "a", "top_k": 0}),
        json!({"text": 5}),
    ] {
        assert_eq!(
            error_of(server.post("/v1/predict", &body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into()),
            "{body}"
        );
    }
    assert_eq!(
        error_of(server.post("/v1/predict", &json!({"texts": vec!["a"; 9]}))),
        (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large".into())
    );
    assert_eq!(
        error_of(server.post("/v1/predict", &json!({"text": "x".repeat(5000)}))),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    assert_eq!(error_of(server.get("/v2/nothing")), (StatusCode::NOT_FOUND, "not_found".into()));
    assert_eq!(error_of(server.get("/v1/predict")), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into()));

    // Feedback joins the log; a label the model does not know is refused, and
    // so is an id this server never issued, or one changed by a character.
    let feedback = server.post("/v1/feedback", &json!({"request_id": request_id, "label": "cards"}));
    assert_eq!(feedback.status(), StatusCode::ACCEPTED);
    assert_eq!(
        error_of(server.post("/v1/feedback", &json!({"request_id": request_id, "label": "nope"}))),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into())
    );
    let mut tampered = request_id.clone().into_bytes();
    tampered[0] = if tampered[0] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for forged in
        [tampered.as_str(), "order-17:a", "00000000-0000-4000-8000-000000000000.00000000000000000000000000000000"]
    {
        assert_eq!(
            error_of(server.post("/v1/feedback", &json!({"request_id": forged, "label": "cards"}))),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_request_id".into()),
            "{forged}"
        );
    }
    assert_eq!(
        error_of(server.post("/v1/feedback", &json!({"request_id": "a b", "label": "cards"}))),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into()),
        "ids are checked like the header"
    );

    // Metrics: valid Prometheus text that counted what happened.
    let metrics = server.get("/metrics");
    assert!(metrics.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    let samples = parse_prometheus(&metrics.text().expect("text"));
    let ok_predictions = sample(&samples, r#"kiln_requests_total{route="/v1/predict",status="200"}"#);
    assert!(ok_predictions >= Some(7.0), "{ok_predictions:?}");
    assert!(sample(&samples, r#"kiln_requests_total{route="/v1/predict",status="422"}"#) >= Some(6.0));
    assert_eq!(sample(&samples, &format!(r#"kiln_model_info{{name="model",version="{version}"}}"#)), Some(1.0));
    let predicted: f64 =
        samples.iter().filter(|(name, _)| name.starts_with("kiln_predictions_total{")).map(|(_, value)| value).sum();
    assert!(predicted >= 10.0, "{predicted}");
    for histogram in ["request_duration_seconds", "queue_duration_seconds", "tokenize_duration_seconds"] {
        assert!(samples.iter().any(|(name, _)| name.starts_with(&format!("kiln_{histogram}_bucket"))), "{histogram}");
    }
    assert!(sample(&samples, "kiln_batch_size_count") >= Some(7.0));
    assert_eq!(sample(&samples, "kiln_queue_depth"), Some(0.0));

    // The OpenAPI document lists every route and the fields the answers really have.
    let (status, spec) = json_of(server.get("/openapi.json"));
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", spec["openapi"]);
    let paths: BTreeSet<&str> = spec["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    let expected_paths = [
        "/v1/predict",
        "/v1/feedback",
        "/v1/model",
        "/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ];
    assert_eq!(paths, expected_paths.into_iter().collect());
    let properties = |schema: &str| -> BTreeSet<String> {
        spec["components"]["schemas"][schema]["properties"].as_object().expect(schema).keys().cloned().collect()
    };
    let keys = |value: &Value| -> BTreeSet<String> { value.as_object().expect("object").keys().cloned().collect() };
    assert!(keys(&tei_single).is_subset(&properties("SingleResponse")), "{tei_single}");
    assert!(keys(&batch).is_subset(&properties("BatchResponse")), "{batch}");
    assert!(keys(&info).is_subset(&properties("ModelInfo")), "{info}");
    openapi_validates(&spec);

    // The page.
    let page = server.get("/");
    assert!(page.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    assert!(page.text().expect("html").contains("id=\"predict\""));

    // Graceful shutdown: requests in flight are answered, then the log is completed.
    // A client ends when the server stops accepting.
    let load = Load::start(server.url("/v1/predict"), json!({"texts": vec!["where is my card"; 8]}), |answer, _| {
        answer.ok().map(|response| response.status())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.terminate(), "serve exits 0 after SIGTERM:\n{}", server.log.lock().expect("log"));
    let statuses = load.finish();
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");

    let records = log_records(&log_dir);
    let predictions: Vec<&Value> = records.iter().filter(|r| r["type"] == "prediction").collect();
    let answered = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(predictions.len() >= 3 + 3 + 1 + 2 + 1 + 8 * answered, "{} records", predictions.len());
    let first = predictions.iter().find(|r| r["request_id"] == json!(request_id)).expect("the batch is logged");
    assert_eq!(first["text"], json!(texts[0]));
    assert_eq!(first["model_version"], json!(version));
    assert!(first.get("quantize").is_none(), "fp32 is what the log leaves unsaid: {first}");
    assert!(first["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    // What input drift needs, per text: tokens read, truncation, unknown tokens; and the confidence.
    let read = predictor.encode(&texts[..1]).expect("encodes").remove(0).input_ids.len();
    assert_eq!(first["tokens"].as_u64(), Some(read as u64), "{first}");
    assert_eq!(first["truncated"].as_bool(), Some(read >= predictor.max_length()), "{first}");
    assert!(first["unknown_tokens"].as_u64().is_some_and(|n| n <= read as u64), "{first}");
    let (score, margin) = (first["score"].as_f64().unwrap_or(0.0), first["margin"].as_f64().unwrap_or(-1.0));
    assert!((0.0..=score).contains(&margin) && first["entropy"].as_f64().is_some_and(|h| h >= 0.0), "{first}");
    // Temperature 2 flattens the probabilities: the calibrated top is lower, and still above uniform.
    let calibrated = first["calibrated_score"].as_f64().expect("a calibrated score");
    assert!(calibrated < score && calibrated > 1.0 / LABELS.len() as f64, "{first}");
    // Failed requests are logged with their status, for monitoring's error share.
    let invalid = records.iter().filter(|r| r["type"] == "error" && r["status"] == 422).count();
    assert!(invalid >= 6, "{invalid} failed requests logged");
    assert!(records.iter().any(|r| r["type"] == "error" && r["code"] == "malformed_json"));
    for record in &records {
        serde_json::from_value::<kiln_core::prediction_log::LogRecord>(record.clone()).expect("a typed log record");
    }
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "feedback" && r["label"] == "cards" && r["request_id"] == json!(request_id))
    );
    assert_eq!(records.iter().filter(|r| r["type"] == "feedback").count(), 1, "refused feedback is not logged");
    // Each record names the client (here, a server without tokens); never a token.
    assert!(records.iter().all(|r| r["client"] == "anonymous"), "{:?}", records.first());
    let traced = predictions.iter().find(|r| r["request_id"] == json!(issued)).expect("logged");
    assert_eq!(traced["client_request_id"], "order-17:a", "the caller's own id is kept for its tracing");
}

/// `serve --quantize int8`: the library's int8 probabilities (not fp32's), and
/// the choice is visible in /v1/model and in every logged prediction.
#[test]
fn serves_an_int8_encoder_and_says_so() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 3);
    let log_dir = root.path().join("log");
    let mut server = Server::start(&model, &log_dir, &["--quantize", "int8"], &[]);
    let (_, info) = json_of(server.get("/v1/model"));
    assert_eq!(info["quantize"], json!("int8"));

    let texts = ["I am still waiting on my card?", "how do i top up"];
    let int8 = library_probabilities(&model, &texts, |p| p.quantize(kiln_core::Quantize::Int8).expect("quantizes"));
    let fp32 = library_probabilities(&model, &texts, |_| {});
    assert_ne!(int8, fp32, "int8 should move the probabilities a little");
    serves_these_probabilities(&server, &texts, &int8);
    assert!(server.terminate(), "serve exits 0 after SIGTERM:\n{}", server.log.lock().expect("log"));
    let records = log_records(&log_dir);
    let logged: Vec<&Value> = records.iter().filter(|r| r["type"] == "prediction").collect();
    assert_eq!(logged.len(), texts.len());
    assert!(logged.iter().all(|r| r["quantize"] == json!("int8")), "{logged:?}");
}

/// `--log-format json` (here from the environment, as a container sets it):
/// every line serve writes is one JSON object with the documented fields, the
/// request lines with method, route, status, milliseconds and request id.
#[test]
fn serve_logs_json_lines_a_request_each() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 3);
    let mut server = Server::start(&model, &root.path().join("log"), &[], &[("KILN_LOG_FORMAT", "json")]);
    let (status, answer) = json_of(server.post("/v1/predict", &json!({"text": "where is my card"})));
    assert_eq!(status, StatusCode::OK);
    let (status, _) = error_of(server.post("/v1/predict", &json!({"texts": []})));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(server.get("/no/such/page").status(), StatusCode::NOT_FOUND);
    assert!(server.terminate(), "serve exits 0 after SIGTERM:\n{}", server.log.lock().expect("log"));

    let log = server.log.lock().expect("log").clone();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{line}");
        assert!(["info", "warn", "error", "debug"].contains(&line["level"].as_str().unwrap_or("")), "{line}");
        assert_eq!(line["stage"], json!("serve"), "{line}");
        assert!(line["message"].is_string() && line["fields"].is_object() && line["target"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.starts_with("listening on http://"))));
    let requests: Vec<&Value> = lines.iter().filter(|l| l["target"] == json!("kiln_serve::access")).collect();
    let seen: Vec<(&str, &str, u64)> = requests
        .iter()
        .map(|l| {
            let f = &l["fields"];
            (f["method"].as_str().unwrap_or(""), f["route"].as_str().unwrap_or(""), f["status"].as_u64().unwrap_or(0))
        })
        .collect();
    for expected in [("POST", "/v1/predict", 200), ("POST", "/v1/predict", 422), ("GET", "unmatched", 404)] {
        assert!(seen.contains(&expected), "{expected:?} not among {seen:?}");
    }
    let predicted =
        requests.iter().find(|l| l["fields"]["status"] == json!(200) && l["fields"]["route"] == json!("/v1/predict"));
    let fields = &predicted.expect("the prediction's line")["fields"];
    assert_eq!(fields["request_id"], answer["request_id"], "the line names the answer's request id");
    assert!(fields["milliseconds"].as_f64().is_some_and(|ms| ms >= 0.0), "{fields}");
}

/// The library's probabilities for `texts` from the folder `model`, run as `prepare` sets it up.
fn library_probabilities(model: &Path, texts: &[&str], prepare: impl FnOnce(&mut Predictor)) -> Vec<Vec<f32>> {
    let mut predictor = Predictor::load(model, &DeviceSpec::Cpu.device()).expect("loads");
    prepare(&mut predictor);
    predictor.probabilities_batched(&predictor.encode(texts).expect("encodes"), 8).expect("predicts")
}

/// Every label's served score for `texts` is the library's (`expected`, per
/// text in LABELS' order) to 1e-5.
fn serves_these_probabilities(server: &Server, texts: &[&str], expected: &[Vec<f32>]) {
    let (status, batch) = json_of(server.post("/v1/predict", &json!({"texts": texts, "return_all_scores": true})));
    assert_eq!(status, StatusCode::OK, "{batch}");
    for (prediction, expected) in batch["predictions"].as_array().expect("predictions").iter().zip(expected) {
        for score in prediction["scores"].as_array().expect("scores") {
            let index = LABELS.iter().position(|l| score["label"] == json!(l)).expect("a known label");
            let served = score["score"].as_f64().expect("score");
            assert!((served - f64::from(expected[index])).abs() < 1e-5, "{served} vs {}", expected[index]);
        }
    }
}

/// `serve --precision bf16`: the library's bf16 probabilities (not fp32's),
/// said in /v1/model. Where the CPU has no fast bf16 (the test hook forces it
/// here too) serve does not start, and says which key to change.
#[test]
fn serves_in_bf16_or_says_why_not() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 3);
    let log_dir = root.path().join("log");
    let refused = Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--host", "127.0.0.1", "--port", "0", "--device", "cpu", "--precision", "bf16", "--model-dir"])
        .arg(&model)
        .arg("--log-dir")
        .arg(&log_dir)
        .env("KILN_TEST_NO_BF16", "1")
        .env_remove("KILN_CONFIG")
        .current_dir(repo())
        .output()
        .expect("serve runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("serve.precision") && stderr.contains("no fast bf16"), "{stderr}");
    if !kiln_model::device::fast_bf16(DeviceSpec::Cpu) {
        eprintln!("this CPU has no fast bf16: only the refusal was checked");
        return;
    }

    let mut server = Server::start(&model, &log_dir, &["--precision", "bf16"], &[]);
    let (_, info) = json_of(server.get("/v1/model"));
    assert_eq!((&info["precision"], &info["quantize"]), (&json!("bf16"), &json!("none")));
    let texts = ["I am still waiting on my card?", "how do i top up"];
    let bf16 = library_probabilities(&model, &texts, |p| p.set_precision(kiln_core::Precision::Bf16).expect("bf16"));
    let fp32 = library_probabilities(&model, &texts, |_| {});
    assert_ne!(bf16, fp32, "bf16 should move the probabilities a little");
    serves_these_probabilities(&server, &texts, &bf16);
    assert!(server.terminate(), "serve exits 0 after SIGTERM:\n{}", server.log.lock().expect("log"));
    assert!(server.log.lock().expect("log").contains("bf16 matrix products"), "the start-up log says bf16");
}

/// schemathesis (`scripts/setup.sh schemathesis`, which `make test` runs) with
/// every check against a running `serve`, with bearer tokens and without: the
/// OpenAPI document and the server agree both ways (what the schema allows is
/// accepted, what it forbids is refused, every answer is documented).
#[test]
fn schemathesis_finds_no_contract_failures_with_tokens_and_without() {
    let schemathesis = repo().join(".venv-schemathesis/bin/schemathesis");
    assert!(schemathesis.exists(), "no {}: run `scripts/setup.sh schemathesis`", schemathesis.display());
    for token in [Some("contract-secret-0123456789"), None] {
        let root = tempfile::tempdir().expect("tempdir");
        let model = root.path().join("model");
        model_folder(&model, &LABELS, 1);
        let env: Vec<(&str, &str)> = token.map(|t| ("KILN_API_TOKENS", t)).into_iter().collect();
        let server = Server::start(&model, &root.path().join("log"), &["--feedback-rate-limit", "0"], &env);
        let (_, spec) = json_of(match token {
            Some(token) => server.client.get(server.url("/openapi.json")).bearer_auth(token).send().expect("answers"),
            None => server.get("/openapi.json"),
        });
        assert_eq!(spec["components"]["securitySchemes"].is_object(), token.is_some(), "security follows the tokens");
        let mut command = Command::new(&schemathesis);
        command
            .arg("--config-file")
            .arg(repo().join("tests/schemathesis.toml"))
            .arg("run")
            .arg(server.url("/openapi.json"))
            .args(["--checks", "all", "--max-examples", "30", "--seed", "7", "--workers", "1", "--no-color"])
            .args(["--generation-database", "none", "--request-timeout", "30"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(root.path());
        if let Some(token) = token {
            command.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        let output = command.output().expect("schemathesis runs");
        let report = String::from_utf8_lossy(&output.stdout);
        // "Test cases:" is followed by "N generated, ...", and the last line sums up.
        let lines: Vec<&str> = report.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let cases = lines.iter().position(|line| *line == "Test cases:").and_then(|i| lines.get(i + 1));
        let verdict = lines.last().map(|line| line.trim_matches(|c: char| c == '=' || c.is_whitespace()));
        kiln_testing::figure(&format!(
            "schemathesis --checks all against serve ({}): {}; {}",
            if token.is_some() { "with tokens" } else { "no tokens" },
            cases.unwrap_or(&"no test-case count"),
            verdict.unwrap_or("no summary line")
        ));
        assert!(
            output.status.success(),
            "schemathesis found failures:\n{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// openapi-spec-validator in the reference Python, which `make test` installs
/// (`scripts/setup.sh reference`): missing is a broken set-up, not a skip.
fn openapi_validates(spec: &Value) {
    let python = repo().join(".venv-ref/bin/python");
    let check = "import json, sys; from openapi_spec_validator import validate; validate(json.load(sys.stdin))";
    let mut child = Command::new(&python)
        .args(["-c", check])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("no {} ({e}): run `scripts/setup.sh reference`", python.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(spec.to_string().as_bytes()).expect("write spec");
    }
    let output = child.wait_with_output().expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the OpenAPI document does not validate:\n{stderr}");
}

const APP_TOKEN: &str = "app-token-0123456789abcdef";
const OPS_TOKEN: &str = "ops-token-0123456789abcdef";

#[test]
fn tokens_guard_everything_but_health_and_metrics_can_move_to_their_own_port() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    };
    let (first, second) = ("first-secret-0123456789", "second-secret-0123456789");
    let server = Server::start(
        &model,
        &root.path().join("log"),
        &["--metrics-port", &metrics_port.to_string(), "--log-predictions", "false"],
        &[("KILN_API_TOKENS", &format!("{first},{second}"))],
    );
    assert_eq!(server.get("/healthz").status(), StatusCode::OK);
    assert_eq!(server.get("/readyz").status(), StatusCode::OK);
    assert_eq!(server.get("/").status(), StatusCode::OK, "the static page is public; it asks for the token");

    let body = json!({"text": "my card has not arrived"});
    let unauthenticated = server.post("/v1/predict", &body);
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_of(unauthenticated), (StatusCode::UNAUTHORIZED, "unauthorized".into()));
    let with = |token: &str, path: &str| {
        server.client.post(server.url(path)).bearer_auth(token).json(&body).send().expect("answers")
    };
    assert_eq!(error_of(with(&first[..first.len() - 1], "/v1/predict")).0, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(with(&format!("{first},{second}"), "/v1/predict")).0, StatusCode::UNAUTHORIZED);
    assert_eq!(with(second, "/v1/predict").status(), StatusCode::OK);
    assert_eq!(with(first, "/v1/predict").status(), StatusCode::OK);
    for path in ["/v1/model", "/openapi.json"] {
        assert_eq!(error_of(server.get(path)).0, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(error_of(server.post("/admin/reload", &json!({}))).0, StatusCode::UNAUTHORIZED);
    // Tokens without a scope list may predict and give feedback, not reload.
    assert_eq!(error_of(with(first, "/admin/reload")), (StatusCode::FORBIDDEN, "forbidden".into()));
    // Feedback needs the log, which is off here.
    let feedback = server
        .client
        .post(server.url("/v1/feedback"))
        .bearer_auth(first)
        .json(&json!({"request_id": "r1", "label": "cards"}))
        .send()
        .expect("answers");
    assert_eq!(error_of(feedback), (StatusCode::SERVICE_UNAVAILABLE, "log_disabled".into()));

    // /metrics is on its own port, without auth, and no longer on the API port.
    let metrics = server.client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().expect("answers");
    assert_eq!(metrics.status(), StatusCode::OK);
    let samples = parse_prometheus(&metrics.text().expect("text"));
    assert_eq!(sample(&samples, r#"kiln_requests_total{route="/v1/predict",status="401"}"#), Some(3.0));
    assert_eq!(error_of(server.get("/metrics")).0, StatusCode::NOT_FOUND);
    assert!(!root.path().join("log").exists(), "no log folder when logging is off");
}

/// `serve` as its own process, for start-up checks (no helper's defaults).
fn serve_command(model: &Path, log_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_serve"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("KILN_")) {
        command.env_remove(key);
    }
    command
        .args(["--port", "0", "--device", "cpu", "--threads", "1"])
        .arg("--model-dir")
        .arg(model)
        .arg("--log-dir")
        .arg(log_dir)
        .current_dir(repo());
    command
}

/// Closed by default: a public address without tokens is refused at start,
/// unless asked for; tokens come from a file with names and scopes (re-read
/// on reload), the log names the client, rate limits answer 429 with
/// `Retry-After`, and feedback only names the caller's own predictions.
#[test]
fn serve_refuses_to_run_open_and_tokens_have_names_scopes_and_rates() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let log_dir = root.path().join("log");

    let started = Instant::now();
    let refused = serve_command(&model, &log_dir).args(["--host", "0.0.0.0"]).output().expect("serve runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow-unauthenticated") && stderr.contains("--api-tokens-file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "refused before loading anything");
    assert!(!log_dir.exists(), "nothing written");

    // Open on purpose: it serves, and says so loudly.
    let mut open = serve_command(&model, &log_dir)
        .args(["--host", "0.0.0.0", "--allow-unauthenticated", "true", "--log-predictions", "false"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = open.stderr.take().expect("stderr");
    let warned = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .take(20)
        .any(|line| line.contains("WITHOUT AUTHENTICATION"));
    let _ = open.kill();
    let _ = open.wait();
    assert!(warned, "running open is logged as a warning");

    let tokens = root.path().join("tokens.txt");
    std::fs::write(&tokens, format!("# name:token[:scopes]\napp:{APP_TOKEN}\nops:{OPS_TOKEN}:admin\n"))
        .expect("tokens");
    let mut server = Server::start(
        &model,
        &log_dir,
        &["--api-tokens-file", &tokens.display().to_string(), "--predict-rate-limit", "0.1", "--rate-limit-burst", "3"],
        &[],
    );
    let call = |token: &str, path: &str, body: &Value| {
        server.client.post(server.url(path)).bearer_auth(token).json(body).send().expect("answers")
    };
    let text = json!({"text": "my card has not arrived"});
    let (status, answer) = json_of(call(APP_TOKEN, "/v1/predict", &text));
    assert_eq!(status, StatusCode::OK, "{answer}");
    let app_request = answer["request_id"].as_str().expect("id").to_owned();
    assert_eq!(error_of(call(APP_TOKEN, "/admin/reload", &json!({}))), (StatusCode::FORBIDDEN, "forbidden".into()));
    assert_eq!(error_of(call(OPS_TOKEN, "/v1/predict", &text)), (StatusCode::FORBIDDEN, "forbidden".into()));
    assert_eq!(call(OPS_TOKEN, "/admin/reload", &json!({})).status(), StatusCode::OK);

    // Rate: a burst of 3, then one every 10 s: the fourth request waits.
    assert_eq!(call(APP_TOKEN, "/v1/predict", &text).status(), StatusCode::OK);
    assert_eq!(call(APP_TOKEN, "/v1/predict", &text).status(), StatusCode::OK);
    let limited = call(APP_TOKEN, "/v1/predict", &text);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(error_of(limited), (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into()));

    // Feedback names the caller's own predictions only.
    std::fs::write(
        &tokens,
        format!("app:{APP_TOKEN}\nops:{OPS_TOKEN}:admin\nother:{}\n", "other-token-0123456789abcdef"),
    )
    .expect("tokens");
    assert_eq!(call(OPS_TOKEN, "/admin/reload", &json!({})).status(), StatusCode::OK, "the file is read again");
    let other = "other-token-0123456789abcdef";
    assert_eq!(
        error_of(call(other, "/v1/feedback", &json!({"request_id": app_request, "label": "cards"}))),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_request_id".into()),
        "another client cannot label app's prediction"
    );
    assert_eq!(
        call(APP_TOKEN, "/v1/feedback", &json!({"request_id": app_request, "label": "cards"})).status(),
        StatusCode::ACCEPTED
    );
    // A token taken out of the file stops working at the next reload.
    std::fs::write(&tokens, format!("ops:{OPS_TOKEN}:admin\nother:{other}\n")).expect("tokens");
    assert_eq!(call(OPS_TOKEN, "/admin/reload", &json!({})).status(), StatusCode::OK);
    let model_info = server.client.get(server.url("/v1/model")).bearer_auth(APP_TOKEN).send().expect("answers");
    assert_eq!(error_of(model_info).0, StatusCode::UNAUTHORIZED);
    // A broken file is refused, and the tokens in force stay.
    std::fs::write(&tokens, "ops-without-a-token\n").expect("tokens");
    let (status, body) = json_of(call(OPS_TOKEN, "/admin/reload", &json!({})));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("tokens.txt line 1")), "{body}");
    assert_eq!(call(other, "/v1/predict", &text).status(), StatusCode::OK);

    assert!(server.terminate());
    let records = log_records_any(&log_dir);
    let clients: BTreeSet<&str> = records.iter().filter_map(|r| r["client"].as_str()).collect();
    assert_eq!(clients, BTreeSet::from(["app", "other"]), "records name the token, never hold it");
    let everything = records.iter().map(Value::to_string).collect::<String>();
    assert!(!everything.contains(APP_TOKEN) && !everything.contains(OPS_TOKEN));
}

/// Every record of a log folder, complete or not (a killed server's too).
fn log_records_any(dir: &Path) -> Vec<Value> {
    let scan = kiln_core::prediction_log::read_dir(dir).expect("log");
    scan.records.iter().map(|r| serde_json::to_value(r).expect("json")).collect()
}

/// A client that sends half a header and stops is cut off after the header
/// timeout, the connection cap holds, a request slower than its timeout gets
/// 408, shutdown does not wait for stalled clients, and a panic inside the
/// worker fails one request while a stopped worker makes `/readyz` say 503.
#[test]
fn stalled_clients_are_cut_off_and_a_failing_worker_is_seen() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let mut server = Server::start(
        &model,
        &root.path().join("log"),
        &[
            "--header-timeout-ms",
            "1500",
            "--request-timeout-ms",
            "4000",
            "--max-connections",
            "3",
            "--shutdown-timeout-ms",
            "1000",
        ],
        &[],
    );
    let address = server.base.trim_start_matches("http://").to_owned();

    // Half a header, then silence: closed at the header timeout, not before.
    let mut half = std::net::TcpStream::connect(&address).expect("connects");
    half.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: kiln\r\nContent-Type: appl").expect("writes");
    let started = Instant::now();
    half.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut buffer = [0u8; 1024];
    let read = half.read(&mut buffer).unwrap_or(0);
    let held = started.elapsed();
    assert!(held >= Duration::from_millis(1300) && held < Duration::from_secs(6), "held for {held:?} ({read} bytes)");
    kiln_testing::figure(&format!(
        "a half-sent header was closed after {:.2} s (serve.header_timeout_ms = 1500)",
        held.as_secs_f64()
    ));

    // A body that stops half-way: 408 at the request timeout.
    let mut slow = std::net::TcpStream::connect(&address).expect("connects");
    slow.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"text\":").expect("writes");
    slow.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("request_timeout") && started.elapsed() < Duration::from_secs(20) {
        let read = slow.read(&mut buffer).unwrap_or(0);
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "answered at the request timeout: {:?}",
        started.elapsed()
    );

    // The cap: three idle connections take every slot; a request waits until the header timeout frees one.
    let idle: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(&address).expect("connects")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(server.post("/v1/predict", &json!({"text": "card"})).status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(800), "served at once, past the cap: {:?}", started.elapsed());
    drop(idle);

    // A panic planted in tokenization fails that request, and the next is served.
    assert_eq!(
        error_of(server.post("/v1/predict", &json!({"text": "KILN_TEST_PANIC_IN_TOKENIZER"}))),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal".into())
    );
    assert_eq!(server.post("/v1/predict", &json!({"text": "card"})).status(), StatusCode::OK);
    assert_eq!(server.get("/readyz").status(), StatusCode::OK);
    // A worker that is gone: not ready, and predictions say why.
    assert_eq!(
        server.post("/v1/predict", &json!({"text": "KILN_TEST_STOP_WORKER"})).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get("/readyz").status() == StatusCode::OK && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(error_of(server.get("/readyz")), (StatusCode::SERVICE_UNAVAILABLE, "worker_stopped".into()));
    assert_eq!(
        error_of(server.post("/v1/predict", &json!({"text": "card"}))),
        (StatusCode::SERVICE_UNAVAILABLE, "worker_stopped".into())
    );
    let samples = parse_prometheus(&server.get("/metrics").text().expect("metrics"));
    assert_eq!(sample(&samples, "kiln_inference_worker_up"), Some(0.0));
    assert!(sample(&samples, r#"kiln_connections_closed_total{reason="header_timeout"}"#) >= Some(1.0));

    // Shutdown with a stalled client: done within the shutdown timeout.
    let mut stalled = std::net::TcpStream::connect(&address).expect("connects");
    stalled.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: kiln\r\nContent-Length: 100\r\n\r\n{").expect("writes");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.terminate();
    // The stalled request would hold it for the request timeout (4 s); the shutdown deadline is 1 s.
    assert!(started.elapsed() < Duration::from_millis(3500), "shutdown waited {:?}", started.elapsed());
}

/// Model folders are outside input: a `config.json` whose dimensions the
/// weights cannot back, an empty label list, a weights file cut short are each
/// an error naming the file, before anything is allocated; a running server
/// asked to reload one keeps serving what it had.
#[test]
fn hostile_model_folders_are_refused_before_anything_is_allocated() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let config_path = model.join("config.json");
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config")).expect("json");
    let device = DeviceSpec::Cpu.device();
    let refused = |edit: &dyn Fn(&Path)| -> String {
        let copy = root.path().join(format!("copy-{}", uuid_like()));
        std::fs::create_dir_all(&copy).expect("mkdir");
        for entry in std::fs::read_dir(&model).expect("list").flatten() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
        edit(&copy);
        let error = Predictor::load(&copy, &device).err().expect("refused");
        format!("{error:#}")
    };
    let message = refused(&|dir| {
        let mut config = original.clone();
        config["hidden_size"] = json!(1_200_000_000u64);
        config["intermediate_size"] = json!(4_800_000_000u64);
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    });
    assert!(message.contains("config.json") && message.contains("nothing was allocated"), "{message}");
    let message = refused(&|dir| {
        let mut config = original.clone();
        config["num_hidden_layers"] = json!(u64::MAX);
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    });
    assert!(message.contains("nothing was allocated"), "{message}");
    let message = refused(&|dir| std::fs::write(dir.join("labels.json"), r#"{"labels": []}"#).expect("write"));
    assert!(message.contains("labels.json") && message.contains("no labels"), "{message}");
    let message = refused(&|dir| {
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).expect("read");
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("cut short");
    });
    assert!(message.contains("model.safetensors"), "{message}");
    let message = refused(&|dir| std::fs::write(dir.join("model.safetensors"), [255u8; 16]).expect("write"));
    assert!(message.contains("not a safetensors file"), "{message}");

    // A server asked to reload a hostile folder answers 422 and keeps its model.
    let server = Server::start(&model, &root.path().join("log"), &[], &[]);
    let mut config = original.clone();
    config["vocab_size"] = json!(4_000_000_000u64);
    std::fs::write(&config_path, config.to_string()).expect("write");
    let (status, body) = json_of(server.post("/admin/reload", &json!({})));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(server.post("/v1/predict", &json!({"text": "card"})).status(), StatusCode::OK);
}

/// A distinct name per call, for folders in one test.
fn uuid_like() -> String {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst).to_string()
}

/// A full disk under the prediction log: every failed write is counted (the
/// shipped alert watches the counter), and serving goes on; once there is
/// room again, records are written again.
#[test]
fn a_full_disk_under_the_log_is_counted_and_serving_goes_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let log_dir = root.path().join("log");
    let mut server = Server::start(&model, &log_dir, &[], &[]);
    let full = log_dir.join(kiln_serve::log::DISK_FULL_HOOK);
    std::fs::write(&full, "").expect("the test hook");
    for _ in 0..5 {
        assert_eq!(server.post("/v1/predict", &json!({"text": "card"})).status(), StatusCode::OK);
    }
    let counted = || {
        let samples = parse_prometheus(&server.get("/metrics").text().expect("metrics"));
        (sample(&samples, "kiln_prediction_log_write_errors_total"), sample(&samples, "kiln_prediction_log_dropped"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted().0 < Some(5.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (errors, dropped) = counted();
    assert!(errors >= Some(5.0) && dropped >= Some(5.0), "{errors:?} {dropped:?}");
    std::fs::remove_file(&full).expect("room again");
    let (_, answer) = json_of(server.post("/v1/predict", &json!({"text": "after"})));
    assert!(server.terminate());
    let records = log_records_any(&log_dir);
    assert!(records.iter().any(|r| r["request_id"] == answer["request_id"]), "written again once there is room");
}

/// SIGKILL while the log rotates (file synced, not yet renamed): the next
/// start completes the file, and every record written before is there.
#[test]
fn a_log_rotation_killed_half_way_loses_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let log_dir = root.path().join("log");
    let server = Server::start(&model, &log_dir, &["--log-rotate-bytes", "1"], &[("KILN_TEST_PAUSE_AT", "log:rotate")]);
    let (_, first) = json_of(server.post("/v1/predict", &json!({"text": "first"})));
    // The second record finds the first file full: the writer syncs it and pauses before the rename.
    assert_eq!(server.post("/v1/predict", &json!({"text": "second"})).status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log.lock().expect("log").contains("paused at log:rotate") {
        assert!(Instant::now() < deadline, "serve never reached the pause point");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server); // SIGKILL
    let partial: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("list")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert_eq!(partial.len(), 1, "killed before the rename");
    let restarted = Server::start(&model, &log_dir, &[], &[]);
    drop(restarted);
    let completed: Vec<Value> = log_records(&log_dir);
    assert!(completed.iter().any(|r| r["request_id"] == first["request_id"]), "the rotated file is completed, whole");
}

#[test]
fn a_full_queue_answers_429_and_the_rest_are_served() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    // Full by count (one request waiting), then by bytes (16 texts of ~290
    // bytes take ~5.7 KB: a second waiting request is over a 6 KB budget).
    for limit in [["--max-queue", "1"], ["--max-queue-bytes", "6000"]] {
        let args = [&limit[..], &["--max-batch-size", "1", "--log-predictions", "false"]].concat();
        let server = Server::start(&model, &root.path().join("log"), &args, &[]);
        let url = server.url("/v1/predict");
        let long = "please tell me why my card payment was declined at the shop yesterday ".repeat(4);
        let mut statuses = Vec::new();
        for _burst in 0..20 {
            let threads: Vec<_> = (0..24)
                .map(|_| {
                    let (url, long) = (url.clone(), long.clone());
                    std::thread::spawn(move || {
                        let response =
                            Client::new().post(&url).json(&json!({"texts": vec![long; 16]})).send().expect("answers");
                        let status = response.status();
                        let code = (status != StatusCode::OK).then(|| error_of(response).1);
                        (status, code)
                    })
                })
                .collect();
            statuses.extend(threads.into_iter().map(|t| t.join().expect("thread")));
            if statuses.iter().any(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS) {
                break;
            }
        }
        assert!(statuses.iter().any(|(s, _)| *s == StatusCode::OK), "{limit:?}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .any(|(s, code)| *s == StatusCode::TOO_MANY_REQUESTS && code.as_deref() == Some("queue_full")),
            "{limit:?}: the queue never overflowed: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
            "{limit:?}: {statuses:?}"
        );
    }
}

/// Moves a freshly written model folder into `dir`'s place.
fn replace_folder(dir: &Path, labels: &[&str], seed: u64) {
    let staging = dir.with_extension("next");
    model_folder(&staging, labels, seed);
    std::fs::remove_dir_all(dir).expect("remove the old folder");
    std::fs::rename(&staging, dir).expect("move the new folder in");
}

#[test]
fn reload_swaps_models_under_load_without_losing_requests_and_refuses_broken_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let server = Server::start(
        &model,
        &root.path().join("log"),
        &["--watch", "true", "--watch-interval-ms", "100", "--log-predictions", "false"],
        &[],
    );
    let version = |server: &Server| json_of(server.get("/v1/model")).1["version"].as_str().expect("v").to_owned();
    let first = version(&server);

    let load = Load::start(server.url("/v1/predict"), json!({"text": "card?"}), |answer, started| {
        let (status, body) = json_of(answer.expect("answers"));
        Some((status, body["model_version"].as_str().unwrap_or("").to_owned(), started))
    });

    // An explicit reload, with the folder replaced under the running server.
    std::thread::sleep(Duration::from_millis(200));
    // Slower than the watch interval twice over, so the watcher may also pick it up: both must be safe.
    replace_folder(&model, &OTHER_LABELS, 2);
    let (status, reloaded) = json_of(server.post("/admin/reload", &json!({})));
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    let second = reloaded["model"]["version"].as_str().expect("version").to_owned();
    assert_ne!(second, first);
    assert_eq!(reloaded["model"]["labels"], json!(OTHER_LABELS));
    let reloaded_at = Instant::now();

    // A broken folder is refused; the model serving stays.
    std::fs::write(model.join("model.safetensors"), b"not a safetensors file").expect("break the weights");
    let (status, code) = error_of(server.post("/admin/reload", &json!({})));
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "model_invalid"));
    std::thread::sleep(Duration::from_millis(400)); // the watcher sees the change and fails too
    assert_eq!(version(&server), second);

    // The watcher picks up a good folder by itself.
    replace_folder(&model, &LABELS, 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let third = loop {
        let current = version(&server);
        if current != second {
            break current;
        }
        assert!(Instant::now() < deadline, "the watcher never reloaded:\n{}", server.log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let seen = load.finish();
    assert!(seen.iter().all(|(status, ..)| *status == StatusCode::OK), "a request failed during reloads");
    let versions: BTreeSet<&str> = seen.iter().map(|(_, v, _)| v.as_str()).collect();
    assert!(versions.contains(first.as_str()) && versions.contains(third.as_str()), "{versions:?}");
    assert!(versions.is_subset(&[first.as_str(), second.as_str(), third.as_str()].into()), "{versions:?}");
    assert!(
        seen.iter().filter(|(_, _, started)| *started > reloaded_at).all(|(_, v, _)| *v != first),
        "a request that started after the reload answered was served by the old model"
    );
    let samples = parse_prometheus(&server.get("/metrics").text().expect("metrics"));
    assert!(sample(&samples, r#"kiln_reloads_total{result="failed"}"#) >= Some(1.0));
    assert_eq!(sample(&samples, &format!(r#"kiln_model_info{{name="model",version="{third}"}}"#)), Some(1.0));
}

/// `serve` on the registry's `production` link (what `make serve` serves)
/// follows a promotion by itself, through the watcher.
#[test]
fn serving_the_registry_follows_a_promotion() {
    use kiln_track::registry::Registry;
    let root = tempfile::tempdir().expect("tempdir");
    let (first, second) = (root.path().join("export-1"), root.path().join("export-2"));
    model_folder(&first, &LABELS, 1);
    model_folder(&second, &OTHER_LABELS, 2);
    let registry = Registry::at(&root.path().join("registry"));
    registry.add(&first, true).expect("v1, production");
    registry.add(&second, true).expect("v2, a candidate");
    let server = Server::start(
        &registry.production_dir(),
        &root.path().join("log"),
        &["--watch", "true", "--watch-interval-ms", "100", "--log-predictions", "false"],
        &[],
    );
    let labels = |server: &Server| json_of(server.get("/v1/model")).1["labels"].clone();
    assert_eq!(labels(&server), json!(LABELS));

    registry.promote(2, kiln_config::Metric::MacroF1, false).expect("promoted");
    let deadline = Instant::now() + Duration::from_secs(30);
    while labels(&server) != json!(OTHER_LABELS) {
        assert!(Instant::now() < deadline, "serve never picked up v2:\n{}", server.log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, answer) = json_of(server.post("/v1/predict", &json!({ "text": "which way?" })));
    assert_eq!(status, StatusCode::OK);
    assert!(OTHER_LABELS.contains(&answer["label"].as_str().expect("label")), "{answer}");
}

/// Runs `tests/e2e/<script>` in headless Chromium with `args`; what it printed,
/// as JSON. Chromium and playwright-core come from `scripts/setup.sh
/// browser`, which `make test` runs.
fn in_browser(script: &str, args: &[&str]) -> Value {
    let modules = repo().join(".tools/e2e/node_modules");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        modules.join("playwright-core").is_dir() && Path::new(&chromium).exists(),
        "the browser test needs {chromium} and {}: run `scripts/setup.sh browser`",
        modules.display()
    );
    let output = Command::new("node")
        .arg(repo().join("tests/e2e").join(script))
        .args(args)
        .env("KILN_E2E_MODULES", &modules)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(output.status.success(), "the browser script failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The page, in headless Chromium (tests/e2e/page.mjs): refused without the
/// token, then one text with a bar per class, then a batch of lines. Chromium
/// and playwright-core come from `scripts/setup.sh browser`, which `make test` runs.
#[test]
fn the_page_classifies_in_a_real_browser() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    model_folder(&model, &LABELS, 1);
    let token = "page-secret-0123456789";
    let server =
        Server::start(&model, &root.path().join("log"), &["--log-predictions", "false"], &[("KILN_API_TOKENS", token)]);
    let seen = in_browser("page.mjs", &[&server.base, token]);

    let api = |body: Value| {
        let response = server.client.post(server.url("/v1/predict")).bearer_auth(token).json(&body).send();
        json_of(response.expect("answers")).1
    };
    assert!(seen["refused"].as_str().is_some_and(|e| e.contains("Bearer")), "{}", seen["refused"]);
    let text = "I am still waiting on my card?";
    assert_eq!(seen["label"], api(json!({"text": text}))["label"], "the page shows the API's label");
    let bars = seen["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), LABELS.len(), "a bar per class");
    assert_eq!(bars[0]["label"], seen["label"], "the predicted label's bar comes first");
    assert!(bars.iter().all(|bar| bar["width"].as_str().is_some_and(|w| w.ends_with('%'))));
    let version = json_of(server.client.get(server.url("/v1/model")).bearer_auth(token).send().expect("answers")).1;
    assert!(seen["model"].as_str().is_some_and(|m| m.contains(version["version"].as_str().expect("v"))));

    let lines = ["how do i top up", "where is my card", "Is there a fee for sending money abroad?"];
    let expected = api(json!({"texts": lines}));
    let batch = seen["batch"].as_array().expect("batch rows");
    assert_eq!(batch.len(), lines.len(), "blank lines are skipped: {batch:?}");
    for ((row, line), prediction) in batch.iter().zip(lines).zip(expected["predictions"].as_array().expect("p")) {
        assert_eq!(row["text"], json!(line));
        assert_eq!(row["label"], prediction["label"]);
    }
}

/// A reference for a model folder (what `eval` writes): predictions on a few
/// validation rows with their calibration.
fn write_reference(dir: &Path, labels: &[&str]) {
    let names: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    let rows: Vec<Vec<f32>> = (0..30)
        .map(|i| {
            let mut row = vec![0.2 / (labels.len() - 1) as f32; labels.len()];
            row[i % labels.len()] = 0.8;
            row
        })
        .collect();
    let truth: Vec<usize> =
        (0..30).map(|i| if i % 5 == 0 { (i + 1) % labels.len() } else { i % labels.len() }).collect();
    let reference = kiln_core::calibration::PredictionProfile::of("validation", &names, &rows, &truth, 0.5);
    std::fs::write(
        dir.join(kiln_core::model_folder::REFERENCE_PREDICTIONS),
        serde_json::to_string(&reference).expect("json"),
    )
    .expect("write");
}

/// What `serve` logs across a promotion, `monitor` reads: each version's
/// windows against its own registry reference, feedback joined, calibrated
/// scores, failed requests counted.
#[test]
fn monitor_reads_what_serve_logged_across_a_promotion() {
    use kiln_track::registry::Registry;
    let root = tempfile::tempdir().expect("tempdir");
    let (first, second) = (root.path().join("export-1"), root.path().join("export-2"));
    model_folder(&first, &LABELS, 1);
    model_folder(&second, &OTHER_LABELS, 2);
    write_reference(&first, &LABELS);
    write_reference(&second, &OTHER_LABELS);
    let registry = Registry::at(&root.path().join("registry"));
    registry.add(&first, true).expect("v1, production");
    registry.add(&second, true).expect("v2, a candidate");
    let log_dir = root.path().join("log");
    let mut server =
        Server::start(&registry.production_dir(), &log_dir, &["--watch", "true", "--watch-interval-ms", "100"], &[]);
    let predict = |server: &Server, i: usize| {
        let (status, answer) = json_of(server.post("/v1/predict", &json!({ "text": format!("message number {i}") })));
        assert_eq!(status, StatusCode::OK);
        answer
    };
    for i in 0..20 {
        let answer = predict(&server, i);
        if i % 4 == 0 {
            let feedback = json!({"request_id": answer["request_id"], "index": 0, "label": LABELS[i % 3]});
            assert_eq!(server.post("/v1/feedback", &feedback).status(), StatusCode::ACCEPTED);
        }
    }
    assert_eq!(server.post("/v1/predict", &json!({"texts": []})).status(), StatusCode::UNPROCESSABLE_ENTITY);
    registry.promote(2, kiln_config::Metric::MacroF1, false).expect("promoted");
    let deadline = Instant::now() + Duration::from_secs(30);
    while json_of(server.get("/v1/model")).1["labels"] != json!(OTHER_LABELS) {
        assert!(Instant::now() < deadline, "serve never picked up v2:\n{}", server.log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let versions: Vec<String> =
        (20..30).map(|i| predict(&server, i)["model_version"].as_str().unwrap_or("").to_owned()).collect();
    assert!(server.terminate(), "serve exits 0:\n{}", server.log.lock().expect("log"));

    // Built beside serve by `cargo test --workspace` (as `make test` runs it).
    let monitor = Path::new(env!("CARGO_BIN_EXE_serve")).with_file_name("monitor");
    assert!(monitor.exists(), "no {}: build the workspace's binaries", monitor.display());
    let output = Command::new(monitor)
        .args(["--quiet", "--window-predictions", "10", "--min-window-predictions", "5", "--runs-dir"])
        .arg(root.path().join("runs"))
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--model-dir")
        .arg(registry.production_dir())
        .arg("--registry-dir")
        .arg(registry.dir())
        .arg("--output-dir")
        .arg(root.path().join("monitor"))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("KILN_CONFIG")
        .output()
        .expect("monitor runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value =
        serde_json::from_slice(&std::fs::read(root.path().join("monitor/monitor.json")).expect("monitor.json"))
            .expect("JSON");
    assert_eq!(report["predictions"], json!(30));
    assert_eq!(report["failed_requests"], json!(1));
    assert_eq!(report["current_version"], json!(versions[0]), "v2 serves last");
    let by_version = report["versions"].as_array().expect("versions");
    assert_eq!(by_version.len(), 2);
    for version in by_version {
        let source = version["reference"].as_str().expect("each version has its registry reference");
        assert!(source.starts_with("registry v"), "{source}");
        assert_eq!(version["overall"]["estimated"]["calibrated"], json!(true), "serve logged calibrated scores");
    }
    let first_version = by_version.iter().find(|v| v["model_version"] != json!(versions[0])).expect("v1");
    assert_eq!(first_version["overall"]["predictions"], json!(20));
    assert_eq!(first_version["overall"]["quality"]["with_feedback"], json!(5));
    assert_eq!(first_version["windows"].as_array().map(Vec::len), Some(2));
}

const TAGS: [&str; 5] = ["B-location", "I-location", "B-person", "I-person", "O"];

/// `serve` with a token-classification model: the entities of each text as
/// the library finds them (every aggregation strategy), with offsets into the
/// text as sent; the model, OpenAPI and metrics say so; predictions and
/// corrected entities go to the log; feedback that does not fit is refused.
#[test]
fn serves_entities_for_a_token_classification_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::tagger_folder(&model, &TAGS, 11).expect("a tagger folder (MiniLM's tokenizer from `make setup`)");
    let log_dir = dir.path().join("log");
    let mut server = Server::start(&model, &log_dir, &["--aggregation", "first", "--max-feedback-entities", "2"], &[]);

    let (_, info) = json_of(server.get("/v1/model"));
    assert_eq!(info["task"], "token_classification");
    assert_eq!(info["architecture"], "BertForTokenClassification");
    let version = info["version"].as_str().expect("version").to_owned();

    // The third is several times max_length: read in overlapping windows, not cut
    // (within serve's cut of 32 characters per token of max_length).
    let long = "Ada Lovelace visited Tokyo today, then Grace Hopper loved Lagos. ".repeat(30);
    let texts = ["Ada Lovelace visited Tokyo today", "Grace Hopper   loved Lagos, and Alan Turing left", long.trim()];
    let predictor = Predictor::load(&model, &DeviceSpec::Cpu.device()).expect("loads");
    let (encoded, _) = predictor.encode_tagged(&texts[2..]).expect("encodes");
    let windows = encoded[0].windows();
    assert!(windows.len() >= 5, "{} windows of {} tokens", windows.len(), predictor.max_length());
    let first_window_end = windows[0].get_offsets().iter().map(|o| o.1).max().unwrap_or(0);
    let mut past_the_first_window = 0;
    let spans = |entities: &Value| -> Vec<(String, String, u64, u64)> {
        let entities = entities.as_array().expect("entities");
        entities
            .iter()
            .map(|e| {
                let kind = e.get("entity_group").or_else(|| e.get("entity")).and_then(Value::as_str).expect("kind");
                (
                    kind.to_owned(),
                    e["word"].as_str().expect("word").to_owned(),
                    e["start"].as_u64().expect("start"),
                    e["end"].as_u64().expect("end"),
                )
            })
            .collect()
    };
    let mut kinds = BTreeSet::new();
    for strategy in [Aggregation::None, Aggregation::Simple, Aggregation::First, Aggregation::Average, Aggregation::Max]
    {
        let name = clap::ValueEnum::to_possible_value(&strategy).expect("a name").get_name().to_owned();
        let expected = predictor.entities(&texts, strategy, 8).expect("the library's entities");
        let (status, batch) =
            json_of(server.post("/v1/predict", &json!({"texts": texts, "aggregation_strategy": name})));
        assert_eq!(status, StatusCode::OK, "{batch}");
        assert_eq!(batch["model_version"], json!(version));
        let predictions = batch["predictions"].as_array().expect("predictions");
        for ((prediction, expected), text) in predictions.iter().zip(&expected).zip(texts) {
            let want: Vec<(String, String, u64, u64)> = expected
                .iter()
                .map(|e| {
                    let kind = e.entity_group.clone().or_else(|| e.entity.clone()).expect("kind");
                    (kind, e.word.clone(), e.start as u64, e.end as u64)
                })
                .collect();
            let served = spans(&prediction["entities"]);
            assert_eq!(served, want, "{name}: {text}");
            for (_, _, start, end) in &served {
                assert!(start < end && *end as usize <= text.chars().count(), "offsets inside the text: {served:?}");
            }
            if text == texts[2] {
                past_the_first_window +=
                    served.iter().filter(|(_, _, start, _)| *start as usize > first_window_end).count();
            }
            kinds.extend(served.into_iter().map(|(kind, ..)| kind));
        }
    }
    assert!(past_the_first_window > 0, "entities past the first window of the long text");
    assert!(!kinds.is_empty(), "a random tagger tags something");
    // Without a strategy, the server's default (--aggregation first) applies.
    let (_, single) = json_of(server.post("/v1/predict", &json!({"text": texts[0]})));
    let first = predictor.entities(&texts[..1], Aggregation::First, 8).expect("entities");
    assert_eq!(single["entities"].as_array().map(Vec::len), Some(first[0].len()), "{single}");
    assert!(single.get("label").is_none(), "a tagger answers with entities: {single}");
    let request_id = single["request_id"].as_str().expect("id").to_owned();

    // Feedback is the corrected entities, checked against the model's types.
    let feedback = |body: Value| server.post("/v1/feedback", &body);
    let good = json!({"request_id": request_id, "entities": [
        {"entity_group": "person", "start": 0, "end": 12}, {"entity_group": "location", "start": 21, "end": 26}]});
    assert_eq!(feedback(good).status(), StatusCode::ACCEPTED);
    assert_eq!(feedback(json!({"request_id": request_id, "entities": []})).status(), StatusCode::ACCEPTED);
    let refused = [
        json!({"request_id": request_id, "label": "person"}),
        json!({"request_id": request_id, "entities": [{"entity_group": "planet", "start": 0, "end": 3}]}),
        json!({"request_id": request_id, "entities": [{"entity_group": "person", "start": 4, "end": 4}]}),
        // Over serve.max_feedback_entities.
        json!({"request_id": request_id, "entities": [
            {"entity_group": "person", "start": 0, "end": 1}, {"entity_group": "person", "start": 2, "end": 3},
            {"entity_group": "person", "start": 4, "end": 5}]}),
    ];
    for body in refused {
        assert_eq!(
            error_of(feedback(body.clone())),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into()),
            "{body}"
        );
    }

    // The contract says what this model takes.
    let (_, spec) = json_of(server.get("/openapi.json"));
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["FeedbackRequest"]["required"], json!(["request_id", "entities"]));
    assert!(schemas["FeedbackRequest"]["properties"].get("label").is_none());
    assert_eq!(schemas["FeedbackEntity"]["properties"]["entity_group"]["enum"], json!(["location", "person"]));
    assert!(schemas.get("SingleEntitiesResponse").is_some());

    let metrics = server.get("/metrics").text().expect("metrics");
    for kind in &kinds {
        assert!(metrics.contains(&format!("label=\"{kind}\"")), "entities of type {kind} are counted:\n{metrics}");
    }

    assert!(server.terminate(), "a clean exit");
    let records = log_records(&log_dir);
    let entities: Vec<&Value> = records.iter().filter(|r| r["type"] == "entities").collect();
    assert_eq!(entities.len(), 5 * texts.len() + 1, "a record per text answered");
    assert!(
        entities.iter().all(|r| r["text"].is_string() && r["entities"].is_array() && r["tokens"].as_u64() > Some(2))
    );
    let corrections: Vec<&Value> = records.iter().filter(|r| r["type"] == "entity_feedback").collect();
    assert_eq!(corrections.len(), 2);
    assert_eq!(corrections[0]["entities"][0], json!({"entity_group": "person", "start": 0, "end": 12}));

    // `monitor` reads the tagger's log: its entities, and the latest feedback (no entity at all).
    let monitor = Path::new(env!("CARGO_BIN_EXE_serve")).with_file_name("monitor");
    let output = Command::new(monitor)
        .args(["--quiet", "--window-predictions", "100", "--min-window-predictions", "5", "--runs-dir"])
        .arg(dir.path().join("runs"))
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--model-dir")
        .arg(&model)
        .arg("--registry-dir")
        .arg(dir.path().join("no-registry"))
        .arg("--output-dir")
        .arg(dir.path().join("monitor"))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("KILN_CONFIG")
        .output()
        .expect("monitor runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("monitor/monitor.json")).expect("monitor.json"))
            .expect("JSON");
    assert_eq!(report["predictions"], json!(entities.len()));
    let window = &report["windows"][0];
    let logged_entities: usize = entities.iter().map(|r| r["entities"].as_array().map_or(0, Vec::len)).sum();
    let per_text = window["entities"]["entities_per_text"].as_f64().expect("a tagger's entity figures");
    assert!((per_text - logged_entities as f64 / entities.len() as f64).abs() < 1e-9, "{window}");
    let quality = &window["quality"]["entities"];
    assert_eq!(quality["true_entities"], json!(0), "the latest feedback counts: no entity: {quality}");
    assert_eq!(quality["predicted_entities"], json!(first[0].len()));
}

/// The page with a tagger (tests/e2e/tagger.mjs): the text as typed, each
/// entity the API finds highlighted with its type.
#[test]
fn the_page_highlights_entities_in_a_real_browser() {
    let root = tempfile::tempdir().expect("tempdir");
    let model = root.path().join("model");
    kiln_testing::tagger_folder(&model, &TAGS, 11).expect("a tagger folder");
    let server = Server::start(&model, &root.path().join("log"), &["--log-predictions", "false"], &[]);
    let text = "Ada Lovelace visited Tokyo today";
    let seen = in_browser("tagger.mjs", &[&server.base, text]);
    assert!(seen["model"].as_str().is_some_and(|m| m.contains("finds 2 entity types")), "{}", seen["model"]);
    assert_eq!(seen["shown"], json!(text), "the text as typed, nothing added or lost");
    let (_, answer) = json_of(server.post("/v1/predict", &json!({"text": text})));
    let chars: Vec<char> = text.chars().collect();
    let expected: Vec<Value> = answer["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| {
            let (start, end) = (e["start"].as_u64().expect("start") as usize, e["end"].as_u64().expect("end") as usize);
            json!({"text": chars[start..end].iter().collect::<String>(), "type": e["entity_group"]})
        })
        .collect();
    assert!(!expected.is_empty(), "the random tagger finds something in {text}: {answer}");
    assert_eq!(seen["marks"], json!(expected), "a highlight per entity the API finds");
}

//! The HTTP API's route handlers; the wire types are in [`types`], the
//! OpenAPI document in [`contract`].

mod contract;
pub mod types;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use kiln_config::LogText;
use kiln_core::Task;
use kiln_core::calibration::{Confidence, calibrated_top};
use kiln_core::prediction_log::{InputStats, LoggedEntity};
use sha2::{Digest, Sha256};

pub use self::contract::{ApiDoc, Contract};
use self::types::{
    BatchEntitiesResponse, BatchResponse, EntitySpan, FeedbackEntity, FeedbackRequest, Inputs, LabelScore,
    PredictRequest, PredictResponse, Prediction, ReloadResponse, SingleEntitiesResponse, SingleResponse, Status,
    TextEntities,
};
use crate::auth::Client;
use crate::batcher::{Answer, Outputs};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::log::LogRecord;
use crate::model::ModelInfo;
use crate::{AppState, ids};

pub const REQUEST_ID: &str = "x-request-id";

/// Classify one text or a batch (or, with a token-classification model, find their entities).
#[utoipa::path(
    post, path = "/v1/predict", request_body = PredictRequest,
    responses(
        (status = 200, description = "Predictions", body = PredictResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Valid JSON, but not a valid request", body = ErrorBody),
        (status = 429, description = "Too many requests waiting, or this client over its rate limit", body = ErrorBody),
        (status = 500, description = "The inference worker failed on this request", body = ErrorBody),
        (status = 503, description = "Model not loaded yet, shutting down, or the inference worker stopped", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    client: Option<Extension<Client>>,
    headers: HeaderMap,
    body: Result<Json<PredictRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let client = client_name(client);
    let request_id = state.ids.issue(&client);
    let caller = Caller { client: &client, request_id: &request_id, own_id: caller_request_id(&headers) };
    let answered = answer_predict(&state, &caller, body).await;
    if let (Err(error), Some(log)) = (&answered, &state.log) {
        // Failures are logged too, so monitoring can tell an error share.
        log.append(LogRecord::Error {
            time: crate::log::now(),
            request_id: request_id.clone(),
            client: Some(client.to_string()),
            status: error.status.as_u16(),
            code: error.code.name().to_owned(),
            model_version: state.model.load_full().map(|model| model.version.clone()),
        });
    }
    answered.map(|response| with_request_id(response, &request_id))
}

/// Who asked: the token's name, the id this server issued for the request,
/// and the caller's own `x-request-id` (kept in the log for its tracing).
struct Caller<'a> {
    client: &'a str,
    request_id: &'a str,
    own_id: Option<String>,
}

/// The token's name, or `anonymous` on a server without tokens.
fn client_name(client: Option<Extension<Client>>) -> Arc<str> {
    client.map_or_else(|| Arc::from(crate::auth::ANONYMOUS), |Extension(client)| client.name)
}

async fn answer_predict(
    state: &AppState,
    caller: &Caller<'_>,
    body: Result<Json<PredictRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Json(mut request) = body?;
    let (texts, single) = request_texts(&mut request, state.config.max_client_batch)?;
    if request.top_k == Some(0) {
        return Err(ApiError::invalid("top_k must be at least 1"));
    }
    let Some(model) = state.model.load_full() else {
        return Err(ApiError::not_ready());
    };
    // The model reads at most max_length tokens: longer texts are cut before
    // tokenizing, so a 1 MiB text costs no more than a short one.
    let max_chars = state.config.text_chars_for(model.max_length);
    let texts: Vec<String> = texts.into_iter().map(|text| truncate_chars(text, max_chars)).collect();
    let aggregation = request.aggregation_strategy.unwrap_or(state.config.aggregation);
    let answer = state
        .queue
        .submit(texts, aggregation)?
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the inference worker dropped this request"))??;
    let model_version = answer.model.version.clone();
    let request_id = caller.request_id.to_owned();
    let Answer { texts, outputs, inputs, model } = answer;
    let entities = match outputs {
        Outputs::Classes(probabilities) => {
            let answered = Answered { model: &model, inputs: &inputs, started, caller };
            return classes_response(state, &request, single, &probabilities, texts, answered);
        }
        Outputs::Entities(entities) => entities,
    };
    for entity in entities.iter().flatten() {
        let kind = entity.entity_group.as_deref().or(entity.entity.as_deref()).unwrap_or_default();
        state.metrics.predictions.with_label_values(&[kind]).inc();
    }
    if let Some(log) = &state.log {
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let time = crate::log::now();
        for (index, ((text, found), input)) in texts.into_iter().zip(&entities).zip(&inputs).enumerate() {
            let (text, text_sha256) = logged_text(text, state.config.log_text);
            let entities = found
                .iter()
                .map(|e| LoggedEntity {
                    entity_group: e.entity_group.clone().or_else(|| e.entity.clone()).unwrap_or_default(),
                    start: e.start,
                    end: e.end,
                    score: Some(e.score),
                })
                .collect();
            log.append(LogRecord::Entities {
                time: time.clone(),
                request_id: request_id.clone(),
                client: Some(caller.client.to_owned()),
                client_request_id: caller.own_id.clone(),
                index,
                text,
                text_sha256,
                entities,
                input: *input,
                model_version: model_version.clone(),
                quantize: model.quantize,
                latency_ms,
            });
        }
    }
    let mut per_text = entities.into_iter().map(|found| found.into_iter().map(EntitySpan::from).collect::<Vec<_>>());
    let response = if single {
        let entities = per_text.next().unwrap_or_default();
        PredictResponse::SingleEntities(SingleEntitiesResponse { entities, model_version, request_id })
    } else {
        let predictions = per_text.map(|entities| TextEntities { entities }).collect();
        PredictResponse::BatchEntities(BatchEntitiesResponse { predictions, model_version, request_id })
    };
    Ok(Json(response).into_response())
}

/// What every answer to a prediction request carries beside its outputs.
struct Answered<'a> {
    model: &'a ModelInfo,
    inputs: &'a [InputStats],
    started: Instant,
    caller: &'a Caller<'a>,
}

/// What the log keeps of a text.
fn logged_text(text: String, keep: LogText) -> (Option<String>, Option<String>) {
    match keep {
        LogText::Full => (Some(text), None),
        LogText::Hash => (None, Some(hex::encode(Sha256::digest(text.as_bytes())))),
        LogText::None => (None, None),
    }
}

/// A text classifier's answer: the best label (and the top-k when asked) per text.
fn classes_response(
    state: &AppState,
    request: &PredictRequest,
    single: bool,
    probabilities: &[Vec<f32>],
    texts: Vec<String>,
    answered: Answered,
) -> Result<Response, ApiError> {
    let Answered { model, inputs, started, caller } = answered;
    let request_id = caller.request_id;
    let labels = &model.labels;
    let detail = if request.return_all_scores { Some(labels.len()) } else { request.top_k };
    let predictions: Vec<Prediction> =
        probabilities.iter().map(|probabilities| rank(labels, probabilities, detail)).collect();
    for prediction in &predictions {
        state.metrics.predictions.with_label_values(&[prediction.label.as_str()]).inc();
    }
    if let Some(log) = &state.log {
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let time = crate::log::now();
        let rows = texts.into_iter().zip(&predictions).zip(probabilities.iter().zip(inputs));
        for (index, ((text, prediction), (probabilities, input))) in rows.enumerate() {
            let confidence = Confidence::of(probabilities);
            let calibrated_score = model.calibration_temperature.map(|t| calibrated_top(probabilities, t) as f32);
            let (text, text_sha256) = logged_text(text, state.config.log_text);
            log.append(LogRecord::Prediction {
                time: time.clone(),
                request_id: request_id.to_owned(),
                client: Some(caller.client.to_owned()),
                client_request_id: caller.own_id.clone(),
                index,
                text,
                text_sha256,
                label: prediction.label.clone(),
                score: prediction.score,
                margin: confidence.margin as f32,
                entropy: confidence.entropy as f32,
                calibrated_score,
                input: *input,
                model_version: model.version.clone(),
                quantize: model.quantize,
                latency_ms,
            });
        }
    }

    let model_version = model.version.clone();
    let response = if single {
        let Prediction { label, score, scores } = predictions
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no prediction. This is a bug."))?;
        PredictResponse::Single(SingleResponse {
            label,
            score,
            scores,
            model_version,
            request_id: request_id.to_owned(),
        })
    } else {
        PredictResponse::Batch(BatchResponse { predictions, model_version, request_id: request_id.to_owned() })
    };
    Ok(Json(response).into_response())
}

/// The best label and, when `detail` asks, the `detail` best with their scores.
fn rank(labels: &[String], probabilities: &[f32], detail: Option<usize>) -> Prediction {
    let ranked = kiln_core::scores::top_k(probabilities, detail.unwrap_or(1));
    let score = |id: usize| LabelScore { label: labels[id].clone(), score: probabilities[id] };
    let best = score(ranked[0]);
    Prediction { label: best.label, score: best.score, scores: detail.map(|_| ranked.into_iter().map(score).collect()) }
}

/// The texts of a request, and whether it asked for one text (not a list).
fn request_texts(request: &mut PredictRequest, max_client_batch: usize) -> Result<(Vec<String>, bool), ApiError> {
    let (texts, single) = match (request.text.take(), request.texts.take(), request.inputs.take()) {
        (Some(text), None, None) | (None, None, Some(Inputs::One(text))) => (vec![text], true),
        (None, Some(texts), None) | (None, None, Some(Inputs::Many(texts))) => (texts, false),
        (None, None, None) => {
            return Err(ApiError::invalid("give the text to classify as `text`, `texts` or `inputs`"));
        }
        _ => return Err(ApiError::invalid("give only one of `text`, `texts` or `inputs`")),
    };
    if texts.is_empty() {
        return Err(ApiError::invalid("`texts` is empty: give at least one text"));
    }
    if texts.len() > max_client_batch {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!("{} texts in one request; the most is {max_client_batch} (serve.max_client_batch)", texts.len()),
        ));
    }
    Ok((texts, single))
}

/// Cuts `text` to `max` characters, on a character boundary.
fn truncate_chars(mut text: String, max: usize) -> String {
    if let Some((end, _)) = text.char_indices().nth(max) {
        text.truncate(end);
    }
    text
}

/// The caller's own `x-request-id`, when it is a sensible one.
fn caller_request_id(headers: &HeaderMap) -> Option<String> {
    headers.get(REQUEST_ID).and_then(|value| value.to_str().ok()).filter(|id| ids::well_formed(id)).map(str::to_owned)
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Record the true label (or entities) of an earlier prediction (appended to the prediction log).
#[utoipa::path(
    post, path = "/v1/feedback", request_body = FeedbackRequest,
    responses(
        (status = 202, description = "Recorded", body = Status),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Not a valid request, a label the model does not know, or a request_id this server did not issue to this client", body = ErrorBody),
        (status = 429, description = "This client is over its rate limit", body = ErrorBody),
        (status = 503, description = "No model loaded, or the prediction log is off", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    client: Option<Extension<Client>>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let client = client_name(client);
    let Some(model) = state.model.load_full() else {
        return Err(ApiError::not_ready());
    };
    let Some(log) = &state.log else {
        return Err(ApiError::new(
            ErrorCode::LogDisabled,
            "feedback is kept in the prediction log, which is off (serve.log_predictions)",
        ));
    };
    if !ids::well_formed(&request.request_id) {
        return Err(ApiError::invalid(
            "request_id must be 1 to 128 letters, digits or -_.: (the `request_id` a prediction answered)",
        ));
    }
    if !state.ids.verify(&request.request_id, &client) {
        return Err(ApiError::new(
            ErrorCode::UnknownRequestId,
            "this server did not issue that request_id to this client: quote the `request_id` of one of your own predictions",
        ));
    }
    if let Some(entities) = &request.entities
        && entities.len() > state.config.max_feedback_entities
    {
        return Err(ApiError::invalid(format!(
            "{} entities in one feedback; the most is {} (serve.max_feedback_entities)",
            entities.len(),
            state.config.max_feedback_entities
        )));
    }
    let record = match (model.task, request.label, request.entities) {
        (Task::SequenceClassification, Some(label), None) => {
            if !model.labels.contains(&label) {
                return Err(ApiError::invalid(format!(
                    "unknown label '{label}'; the model's labels are listed by GET /v1/model"
                )));
            }
            LogRecord::Feedback {
                time: crate::log::now(),
                request_id: request.request_id,
                client: Some(client.to_string()),
                index: request.index.unwrap_or(0),
                label,
                model_version: model.version.clone(),
            }
        }
        (Task::TokenClassification, None, Some(entities)) => {
            let types = model.entity_types();
            let mut logged = Vec::with_capacity(entities.len());
            for FeedbackEntity { entity_group, start, end } in entities {
                if !types.contains(&entity_group) {
                    return Err(ApiError::invalid(format!(
                        "unknown entity type '{entity_group}'; the model finds {}",
                        types.join(", ")
                    )));
                }
                if start >= end {
                    return Err(ApiError::invalid(format!(
                        "an entity's start ({start}) must come before its end ({end})"
                    )));
                }
                logged.push(LoggedEntity { entity_group, start, end, score: None });
            }
            LogRecord::EntityFeedback {
                time: crate::log::now(),
                request_id: request.request_id,
                client: Some(client.to_string()),
                index: request.index.unwrap_or(0),
                entities: logged,
                model_version: model.version.clone(),
            }
        }
        (Task::SequenceClassification, ..) => {
            return Err(ApiError::invalid("give the true `label` (and no `entities`): this model classifies texts"));
        }
        (Task::TokenClassification, ..) => {
            return Err(ApiError::invalid("give the true `entities` (and no `label`): this model finds entities"));
        }
    };
    log.append(record);
    Ok((StatusCode::ACCEPTED, Json(Status { status: "recorded".into(), model_version: None })).into_response())
}

/// The model being served: labels, version, training data and weight hashes, eval metrics.
#[utoipa::path(
    get, path = "/v1/model",
    responses(
        (status = 200, description = "The model", body = ModelInfo),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
        (status = 503, description = "Not loaded yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn model_info(State(state): State<Arc<AppState>>) -> Result<Json<ModelInfo>, ApiError> {
    state.model.load_full().map(|info| Json((*info).clone())).ok_or_else(ApiError::not_ready)
}

/// Load the model folder again and serve it from the next batch on; a folder
/// that does not load is refused and the current model keeps serving.
#[utoipa::path(
    post, path = "/admin/reload",
    responses(
        (status = 200, description = "The new model is serving", body = ReloadResponse),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
        (status = 422, description = "The folder does not hold a valid model; nothing changed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<ReloadResponse>, ApiError> {
    let previous_version = state.model.load_full().map(|info| info.version.clone());
    match crate::reload(&state).await {
        Ok(info) => Ok(Json(ReloadResponse { previous_version, model: (*info).clone() })),
        Err(error) => Err(ApiError::new(
            ErrorCode::ModelInvalid,
            format!("the model was not reloaded, the old one keeps serving: {error:#}"),
        )),
    }
}

/// Alive (the process answers).
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok".into(), model_version: None })
}

/// Ready to predict: a model is loaded, the inference thread runs, and the server is not shutting down.
#[utoipa::path(
    get, path = "/readyz",
    responses((status = 200, description = "Ready", body = Status), (status = 503, description = "Not ready", body = ErrorBody))
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    if !state.queue.alive() {
        state.metrics.worker_up.set(0);
        return Err(crate::batcher::SubmitError::WorkerStopped.into());
    }
    let info = state.model.load_full().ok_or_else(ApiError::not_ready)?;
    Ok(Json(Status { status: "ready".into(), model_version: Some(info.version.clone()) }))
}

/// Prometheus metrics (text format).
#[utoipa::path(
    get, path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

/// This OpenAPI 3 document.
#[utoipa::path(
    get, path = "/openapi.json",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json"),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The token may not call this endpoint (its scopes)", body = ErrorBody),
        (status = 408, description = "The request took longer than serve.request_timeout_ms", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn openapi_spec(State(state): State<Arc<AppState>>) -> Response {
    let model = state.model.load_full();
    let contract = Contract {
        tokens: !state.tokens.load().is_empty(),
        metrics_here: state.config.metrics_port.is_none(),
        max_client_batch: state.config.max_client_batch,
        labels: model.as_ref().map(|info| info.labels.clone()),
        entity_types: model
            .as_ref()
            .filter(|info| info.task == Task::TokenClassification)
            .map(|info| info.entity_types()),
    };
    let document = contract.document();
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string_pretty(&document).unwrap_or_default())
        .into_response()
}

/// The page to try the model in a browser.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("../page.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo".into(), 2), "hé");
        assert_eq!(truncate_chars("short".into(), 10), "short");
    }

    #[test]
    fn ranking_orders_and_cuts() {
        let labels = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let prediction = rank(&labels, &[0.2, 0.5, 0.3], Some(2));
        assert_eq!(prediction.label, "b");
        let scores: Vec<&str> = prediction.scores.iter().flatten().map(|s| s.label.as_str()).collect();
        assert_eq!(scores, ["b", "c"]);
        assert!(rank(&labels, &[0.2, 0.5, 0.3], None).scores.is_none());
    }

    #[test]
    fn a_request_names_its_texts_once() {
        let parse = |json: &str| serde_json::from_str::<PredictRequest>(json).expect("parses");
        assert_eq!(request_texts(&mut parse(r#"{"text": "hi"}"#), 4).expect("ok"), (vec!["hi".to_owned()], true));
        assert_eq!(request_texts(&mut parse(r#"{"inputs": ["a", "b"]}"#), 4).expect("ok").0.len(), 2);
        assert!(request_texts(&mut parse(r#"{"inputs": "a"}"#), 4).expect("ok").1);
        assert_eq!(
            request_texts(&mut parse(r#"{"text": "a", "texts": ["b"]}"#), 4).expect_err("both").code,
            "invalid_request"
        );
        assert_eq!(request_texts(&mut parse(r#"{"texts": []}"#), 4).expect_err("empty").code, "invalid_request");
        let too_many = request_texts(&mut parse(r#"{"texts": ["a", "b", "c"]}"#), 2).expect_err("too many");
        assert_eq!(too_many.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(serde_json::from_str::<PredictRequest>(r#"{"txt": "a"}"#).is_err(), "unknown fields are refused");
    }

    #[test]
    fn top_k_takes_whole_numbers_written_as_floats() {
        let top_k = |json: &str| serde_json::from_str::<PredictRequest>(json).map(|r| r.top_k);
        assert_eq!(top_k(r#"{"text": "a", "top_k": 3}"#).expect("int"), Some(3));
        assert_eq!(top_k(r#"{"text": "a", "top_k": 3.0}"#).expect("whole float"), Some(3));
        assert_eq!(top_k(r#"{"text": "a", "top_k": null}"#).expect("null"), None);
        assert_eq!(top_k(r#"{"text": "a"}"#).expect("absent"), None);
        assert!(top_k(r#"{"text": "a", "top_k": 2.5}"#).is_err());
        assert!(top_k(r#"{"text": "a", "top_k": -1}"#).is_err());
    }

    #[test]
    fn the_contract_follows_the_settings() {
        let contract = |tokens, metrics_here| {
            Contract {
                tokens,
                metrics_here,
                max_client_batch: 8,
                labels: Some(vec!["a".into(), "b".into()]),
                entity_types: None,
            }
            .document()
        };
        let open = contract(false, false);
        assert!(open["components"]["securitySchemes"].is_null());
        assert!(open["paths"]["/metrics"].is_null(), "metrics on their own port are not in this document");
        assert!(open["paths"]["/v1/predict"]["post"]["security"].is_null());
        assert!(open["paths"]["/v1/predict"]["post"]["responses"]["401"].is_null());
        let guarded = contract(true, true);
        assert!(guarded["components"]["securitySchemes"]["bearer"].is_object());
        assert!(guarded["paths"]["/metrics"]["get"]["responses"]["401"].is_object());
        let schemas = &guarded["components"]["schemas"];
        assert_eq!(schemas["PredictRequest"]["properties"]["texts"]["maxItems"], 8);
        assert_eq!(schemas["FeedbackRequest"]["properties"]["label"]["enum"], serde_json::json!(["a", "b"]));
        assert_eq!(schemas["PredictRequest"]["oneOf"].as_array().map(Vec::len), Some(3));
    }

    /// Every error code is in the document's list, and its status (but for
    /// the fallbacks' 404 and 405) is one the document says some endpoint answers.
    #[test]
    fn every_error_code_is_documented_with_its_status() {
        let document = Contract {
            tokens: true,
            metrics_here: true,
            max_client_batch: 8,
            labels: Some(vec!["a".into()]),
            entity_types: None,
        }
        .document();
        let listed = &document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(listed, &serde_json::json!(names));
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "names are unique");
        let mut documented = std::collections::BTreeSet::new();
        for path in document["paths"].as_object().expect("paths").values() {
            for operation in path.as_object().expect("operations").values() {
                documented.extend(operation["responses"].as_object().expect("responses").keys().cloned());
            }
        }
        // 404 and 405 answer what the document does not list: no endpoint has them.
        for code in
            ErrorCode::ALL.into_iter().filter(|c| ![ErrorCode::NotFound, ErrorCode::MethodNotAllowed].contains(c))
        {
            let status = code.status().as_u16().to_string();
            assert!(documented.contains(&status), "{} answers {status}, which no endpoint documents", code.name());
        }
    }
}

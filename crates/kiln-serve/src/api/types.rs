//! The request and answer types of the HTTP API, as they travel: the OpenAPI
//! document is built from them ([`super::contract`]), so the two cannot disagree.

use kiln_core::entities::Aggregation;
use kiln_model::Entity;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::ModelInfo;

/// One text or several, as Hugging Face TEI's `inputs` takes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

/// Give exactly one of `text`, `texts` or `inputs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// One text; the answer is one prediction.
    pub text: Option<String>,
    /// Several texts (at most `max_client_batch`); the answer lists a prediction per text, in order.
    pub texts: Option<Vec<String>>,
    /// TEI's form: a string (answered like `text`) or a list (answered like `texts`).
    pub inputs: Option<Inputs>,
    /// Also return the k most likely labels with their scores.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole_number")]
    pub top_k: Option<usize>,
    /// Also return every label's score, most likely first.
    #[serde(default)]
    pub return_all_scores: bool,
    /// Accepted for TEI compatibility: texts are always truncated to the model's max length.
    pub truncate: Option<bool>,
    /// Token classification: how sub-words group into entities, as transformers'
    /// token-classification pipeline's `aggregation_strategy` (`none`, `simple`,
    /// `first`, `average`, `max`) [default: serve.aggregation]. A text classifier ignores it,
    /// as a tagger ignores `top_k` and `return_all_scores`.
    #[schema(value_type = Option<String>)]
    pub aggregation_strategy: Option<Aggregation>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    /// The most likely label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// The top-k (or all) labels, most likely first, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<LabelScore>>,
}

/// An entity found in a text, as transformers' token-classification pipeline
/// writes it: `start` and `end` count characters of the text as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntitySpan {
    /// The entity type (every strategy but `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_group: Option<String>,
    /// The sub-word's tag (`none` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub score: f32,
    /// The text the entity covers.
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// The entities of one text.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextEntities {
    pub entities: Vec<EntitySpan>,
}

/// A token-classification model's answer to `text` (or `inputs` as a string).
#[derive(Debug, Serialize, ToSchema)]
pub struct SingleEntitiesResponse {
    pub entities: Vec<EntitySpan>,
    pub model_version: String,
    pub request_id: String,
}

/// A token-classification model's answer to `texts` (or `inputs` as a list).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchEntitiesResponse {
    pub predictions: Vec<TextEntities>,
    pub model_version: String,
    pub request_id: String,
}

/// The answer to `text` (or `inputs` as a string).
#[derive(Debug, Serialize, ToSchema)]
pub struct SingleResponse {
    pub label: String,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<LabelScore>>,
    /// The version of the model that answered (see `GET /v1/model`).
    pub model_version: String,
    /// Quote it in `POST /v1/feedback`.
    pub request_id: String,
}

/// The answer to `texts` (or `inputs` as a list).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub predictions: Vec<Prediction>,
    pub model_version: String,
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    Single(SingleResponse),
    Batch(BatchResponse),
    SingleEntities(SingleEntitiesResponse),
    BatchEntities(BatchEntitiesResponse),
}

/// A whole number as JSON Schema's `integer` has it: `3` or `3.0` (any number
/// with no fraction), as clients that only have floats send it.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    if let Some(n) = number.as_u64() {
        return Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)));
    }
    match number.as_f64() {
        Some(x) if x >= 0.0 && x.fract() == 0.0 => {
            Ok(Some(if x >= usize::MAX as f64 { usize::MAX } else { x as usize }))
        }
        _ => Err(serde::de::Error::custom(format!("expected a whole number of at least 0, got {number}"))),
    }
}

/// The true label of an earlier prediction, once someone knows it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `request_id` of the prediction.
    pub request_id: String,
    /// Which text of that request, for a request of several [default: 0].
    #[serde(default, deserialize_with = "whole_number")]
    pub index: Option<usize>,
    /// One of the model's labels (text classification).
    pub label: Option<String>,
    /// The text's true entities, every one of them (token classification; `[]`: none).
    pub entities: Option<Vec<FeedbackEntity>>,
}

/// A true entity: its type and character offsets into the text as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackEntity {
    /// One of the model's entity types.
    pub entity_group: String,
    #[serde(deserialize_with = "required_whole_number")]
    #[schema(value_type = usize, minimum = 0)]
    pub start: usize,
    #[serde(deserialize_with = "required_whole_number")]
    #[schema(value_type = usize, minimum = 1)]
    pub end: usize,
}

fn required_whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    whole_number(deserializer)?.ok_or_else(|| serde::de::Error::custom("expected a whole number, got null"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    pub previous_version: Option<String>,
    pub model: ModelInfo,
}

impl From<Entity> for EntitySpan {
    fn from(entity: Entity) -> Self {
        let Entity { entity, entity_group, score, word, start, end, .. } = entity;
        Self { entity_group, entity, score, word, start, end }
    }
}

//! The OpenAPI document: generated from the types and the handlers' annotations,
//! then fitted to this server's settings and model ([`Contract`]).

use utoipa::OpenApi;

use super::types::{
    BatchEntitiesResponse, BatchResponse, EntitySpan, FeedbackEntity, FeedbackRequest, Inputs, LabelScore,
    PredictRequest, PredictResponse, Prediction, ReloadResponse, SingleEntitiesResponse, SingleResponse, Status,
    TextEntities,
};
use crate::error::{ErrorBody, ErrorCode};
use crate::model::{ModelInfo, TrainingInput};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kiln serve",
        description = "Text classification or named entities with a kiln-trained (or Hugging Face) model."
    ),
    paths(super::predict, super::feedback, super::model_info, super::reload, super::healthz, super::readyz, super::metrics, super::openapi_spec),
    components(schemas(
        PredictRequest, Inputs, PredictResponse, SingleResponse, BatchResponse, Prediction, LabelScore,
        SingleEntitiesResponse, BatchEntitiesResponse, TextEntities, EntitySpan,
        FeedbackRequest, FeedbackEntity, Status, ReloadResponse, ModelInfo, TrainingInput, ErrorBody
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the OpenAPI document must say beyond what the types give: it follows
/// this server's settings (bearer tokens or none, `/metrics` here or on its own
/// port, the batch limit) and the loaded model's labels, and states the rules
/// the handlers enforce, so every request the schema allows is one the server
/// accepts (schemathesis checks both ways).
pub struct Contract {
    pub tokens: bool,
    pub metrics_here: bool,
    pub max_client_batch: usize,
    pub labels: Option<Vec<String>>,
    /// The entity types of a token-classification model (`None` for a text classifier).
    pub entity_types: Option<Vec<String>>,
}

impl Contract {
    pub fn document(&self) -> serde_json::Value {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        if !self.metrics_here
            && let Some(paths) = doc["paths"].as_object_mut()
        {
            paths.remove("/metrics");
        }
        if !self.tokens {
            if let Some(components) = doc["components"].as_object_mut() {
                components.remove("securitySchemes");
            }
            for operation in operations(&mut doc) {
                operation.remove("security");
                if let Some(responses) = operation.get_mut("responses").and_then(serde_json::Value::as_object_mut) {
                    responses.remove("401");
                    responses.remove("403");
                }
            }
        }
        let schemas = &mut doc["components"]["schemas"];
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.name()).collect();
        schemas["ErrorBody"]["properties"]["code"]["enum"] = codes.into();
        let texts = serde_json::json!({ "type": "array", "items": { "type": "string" }, "minItems": 1,
            "maxItems": self.max_client_batch });
        let predict = &mut schemas["PredictRequest"];
        predict["additionalProperties"] = false.into();
        let mut nullable_texts = texts.clone();
        nullable_texts["type"] = serde_json::json!(["array", "null"]);
        predict["properties"]["texts"] = nullable_texts;
        // Exactly one of `text`, `texts` or `inputs` is given (not null); the
        // other two are absent or null.
        let given = [
            ("text", serde_json::json!({ "type": "string" })),
            ("texts", texts.clone()),
            ("inputs", serde_json::json!({ "oneOf": [{ "type": "string" }, texts] })),
        ];
        let branches: Vec<serde_json::Value> = given
            .iter()
            .map(|(name, schema)| {
                let mut properties = serde_json::Map::new();
                for (other, _) in &given {
                    properties.insert((*other).into(), serde_json::json!({ "type": "null" }));
                }
                properties.insert((*name).into(), schema.clone());
                serde_json::json!({ "required": [name], "properties": properties })
            })
            .collect();
        predict["oneOf"] = branches.into();
        predict["properties"]["aggregation_strategy"] = serde_json::json!({ "type": ["string", "null"], "enum": ["none", "simple", "first", "average", "max", null] });
        let feedback = &mut schemas["FeedbackRequest"];
        feedback["additionalProperties"] = false.into();
        feedback["properties"]["request_id"] = serde_json::json!({ "type": "string",
            "pattern": "^[A-Za-z0-9_.:-]{1,128}$",
            "description": "The `request_id` a prediction of this client answered (the server signs the ids it issues)." });
        let properties = feedback["properties"].as_object_mut();
        // A text classifier takes `label`, a tagger `entities`: the one the loaded model needs is required.
        match &self.entity_types {
            None => {
                if let Some(properties) = properties {
                    properties.remove("entities");
                    properties.insert("label".into(), serde_json::json!({ "type": "string" }));
                }
                feedback["required"] = serde_json::json!(["request_id", "label"]);
                if let Some(labels) = &self.labels {
                    feedback["properties"]["label"]["enum"] = labels.clone().into();
                }
            }
            Some(types) => {
                if let Some(properties) = properties {
                    properties.remove("label");
                    properties.insert(
                        "entities".into(),
                        serde_json::json!({ "type": "array", "items": { "$ref": "#/components/schemas/FeedbackEntity" } }),
                    );
                }
                feedback["required"] = serde_json::json!(["request_id", "entities"]);
                schemas["FeedbackEntity"]["properties"]["entity_group"]["enum"] = types.clone().into();
                schemas["FeedbackEntity"]["additionalProperties"] = false.into();
            }
        }
        doc
    }
}

/// Every operation object of every path.
fn operations(doc: &mut serde_json::Value) -> impl Iterator<Item = &mut serde_json::Map<String, serde_json::Value>> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|path| path.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
}

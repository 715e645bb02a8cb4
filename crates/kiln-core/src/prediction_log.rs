//! `serve`'s prediction log, one JSON record a line: `serve` writes it,
//! monitoring reads it. Each prediction carries the few per-text numbers input
//! drift needs (tokens, truncation, unknown tokens) and its confidence, so
//! nothing has to be recomputed from the texts (which may not be logged).

use serde::{Deserialize, Serialize};

/// The extension of a complete log file; one being written ends in `.jsonl.partial`.
pub const COMPLETE: &str = "jsonl";
pub const PARTIAL: &str = "partial";

/// What the model read of one text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputStats {
    /// Tokens the model read, special tokens included (after truncation).
    pub tokens: u32,
    /// The text reached `max_length` tokens: cut there (or exactly that long).
    pub truncated: bool,
    /// Unknown tokens (`[UNK]`) among them.
    pub unknown_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogRecord {
    Prediction {
        time: String,
        request_id: String,
        /// The text's position in its request.
        index: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text_sha256: Option<String>,
        label: String,
        /// The top probability.
        score: f32,
        /// Top minus second probability.
        #[serde(default)]
        margin: f32,
        /// Of the probabilities, in nats.
        #[serde(default)]
        entropy: f32,
        #[serde(default, flatten)]
        input: InputStats,
        model_version: String,
        latency_ms: f64,
    },
    Feedback {
        time: String,
        request_id: String,
        label: String,
        model_version: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_round_trips_and_old_records_still_read() {
        let record = LogRecord::Prediction {
            time: "2026-11-28T10:00:00.000Z".into(),
            request_id: "r1".into(),
            index: 0,
            text: Some("hello".into()),
            text_sha256: None,
            label: "pos".into(),
            score: 0.9,
            margin: 0.8,
            entropy: 0.3,
            input: InputStats { tokens: 5, truncated: false, unknown_tokens: 1 },
            model_version: "v1".into(),
            latency_ms: 3.5,
        };
        let line = serde_json::to_string(&record).expect("json");
        assert!(line.contains("\"type\":\"prediction\"") && line.contains("\"tokens\":5"), "{line}");
        assert_eq!(serde_json::from_str::<LogRecord>(&line).expect("reads"), record);

        // A record from before the per-text numbers.
        let old = r#"{"type":"prediction","time":"t","request_id":"r","index":1,"label":"neg","score":0.6,"model_version":"v1","latency_ms":1.0}"#;
        let LogRecord::Prediction { input, margin, .. } = serde_json::from_str(old).expect("reads") else {
            panic!("a prediction")
        };
        assert_eq!((input, margin), (InputStats::default(), 0.0));
    }
}

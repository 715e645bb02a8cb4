//! `serve`'s prediction log, one JSON record a line: `serve` writes it,
//! monitoring reads it. Each prediction carries the few per-text numbers input
//! drift needs (tokens, truncation, unknown tokens) and its confidence, so
//! nothing has to be recomputed from the texts (which may not be logged).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::Quantize;
use anyhow::{Context, Result};
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
        /// The name of the API token that made the request (`anonymous` when
        /// the server runs open); never the token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// The caller's own `x-request-id`, when it sent one (for its tracing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_request_id: Option<String>,
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
        /// The top probability after the model's temperature scaling (its
        /// `reference_predictions.json`): what accuracy estimates average.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calibrated_score: Option<f32>,
        #[serde(default, flatten)]
        input: InputStats,
        model_version: String,
        /// `int8` when the encoder ran quantized; absent for fp32.
        #[serde(default, skip_serializing_if = "Quantize::is_none")]
        quantize: Quantize,
        latency_ms: f64,
    },
    Feedback {
        time: String,
        request_id: String,
        /// The name of the API token that made the request (`anonymous` when
        /// the server runs open); never the token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// Which text of the request (0 for a single text).
        #[serde(default)]
        index: usize,
        label: String,
        model_version: String,
    },
    /// The entities a token-classification model found in one text.
    Entities {
        time: String,
        request_id: String,
        /// The name of the API token that made the request (`anonymous` when
        /// the server runs open); never the token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_request_id: Option<String>,
        index: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text_sha256: Option<String>,
        entities: Vec<LoggedEntity>,
        #[serde(default, flatten)]
        input: InputStats,
        model_version: String,
        /// `int8` when the encoder ran quantized; absent for fp32.
        #[serde(default, skip_serializing_if = "Quantize::is_none")]
        quantize: Quantize,
        latency_ms: f64,
    },
    /// The true entities of a text a token-classification model tagged.
    #[serde(rename = "entity_feedback")]
    EntityFeedback {
        time: String,
        request_id: String,
        /// The name of the API token that made the request (`anonymous` when
        /// the server runs open); never the token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default)]
        index: usize,
        entities: Vec<LoggedEntity>,
        model_version: String,
    },
    /// A prediction request that failed (what error shares count).
    Error {
        time: String,
        request_id: String,
        /// The name of the API token that made the request (`anonymous` when
        /// the server runs open); never the token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// The HTTP status answered.
        status: u16,
        code: String,
        /// The model loaded then, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_version: Option<String>,
    },
}

/// An entity as the log keeps it: its type and character offsets into the
/// text, and the model's score (absent in feedback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEntity {
    pub entity_group: String,
    pub start: usize,
    pub end: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// Which feedback counts when several name the same prediction (request id
/// and index), as `monitor` and `retrain` both apply it: only feedback from
/// the client the prediction was made for (`serve` refuses any other, since
/// its request ids are signed for that client; a record without a client name,
/// from before names were logged, matches any), and of that the latest (by
/// time, then by place in the log): a correction replaces a mistake.
pub const FEEDBACK_RULE: &str = "the latest feedback from the client the prediction was made for";

/// The feedback that counts for a prediction made for `client`, by
/// [`FEEDBACK_RULE`], from `(client, label, time)` triples in log order.
pub fn feedback_that_counts<'a, L>(
    client: Option<&str>,
    given: impl IntoIterator<Item = (Option<&'a str>, L, u64)>,
) -> Option<(L, u64)> {
    let mut chosen: Option<(L, u64)> = None;
    for (from, label, time) in given {
        let same_client = match (client, from) {
            (Some(client), Some(from)) => client == from,
            _ => true,
        };
        if same_client && chosen.as_ref().is_none_or(|(_, latest)| time >= *latest) {
            chosen = Some((label, time));
        }
    }
    chosen
}

/// Unix milliseconds of an RFC 3339 time, as records carry it.
pub fn time_ms(time: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(time).ok()?;
    Some(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// A prediction joined with the feedback that counts for it ([`FEEDBACK_RULE`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPrediction {
    pub request_id: String,
    pub index: usize,
    /// `None` when the log kept no text.
    pub text: Option<String>,
    /// The feedback's label.
    pub label: String,
    /// When the prediction was made (unix ms).
    pub time_ms: u64,
}

/// Every text classifier's prediction that got feedback, in time order, read
/// in two streaming passes (the feedback first, then the predictions it
/// names), so memory follows the feedback, not the log.
pub fn labelled_predictions(dir: &Path) -> Result<(Vec<LabelledPrediction>, LogPass)> {
    join_feedback(
        dir,
        |record| match record {
            LogRecord::Feedback { time, request_id, client, index, label, .. } => {
                Some(((request_id, index), client, label, time))
            }
            _ => None,
        },
        |record| match record {
            LogRecord::Prediction { time, request_id, client, index, text, .. } => {
                Some((request_id, index, client, text, time))
            }
            _ => None,
        },
        |request_id, index, text, label, time_ms| LabelledPrediction { request_id, index, text, label, time_ms },
    )
}

/// A tagger's answer joined with the entities feedback says the text has
/// ([`FEEDBACK_RULE`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedPrediction {
    pub request_id: String,
    pub index: usize,
    /// `None` when the log kept no text.
    pub text: Option<String>,
    /// The feedback's entities: every entity of the text (none: it has none).
    pub entities: Vec<LoggedEntity>,
    pub time_ms: u64,
}

/// Every tagger's answer that got span feedback, in time order, read as
/// [`labelled_predictions`] reads a classifier's.
pub fn tagged_predictions(dir: &Path) -> Result<(Vec<TaggedPrediction>, LogPass)> {
    join_feedback(
        dir,
        |record| match record {
            LogRecord::EntityFeedback { time, request_id, client, index, entities, .. } => {
                Some(((request_id, index), client, entities, time))
            }
            _ => None,
        },
        |record| match record {
            LogRecord::Entities { time, request_id, client, index, text, .. } => {
                Some((request_id, index, client, text, time))
            }
            _ => None,
        },
        |request_id, index, text, entities, time_ms| TaggedPrediction { request_id, index, text, entities, time_ms },
    )
}

/// (request id, index), client, truth, time: a feedback record as the join reads it.
type FeedbackOf<T> = ((String, usize), Option<String>, T, String);
/// Request id, index, client, text, time: a prediction record as the join reads it.
type PredictionOf = (String, usize, Option<String>, Option<String>, String);

/// Predictions joined with the feedback that counts for them, in time
/// order: the feedback records in one pass, the predictions they name in a second.
fn join_feedback<T: Clone, R>(
    dir: &Path,
    feedback_of: impl Fn(LogRecord) -> Option<FeedbackOf<T>>,
    prediction_of: impl Fn(LogRecord) -> Option<PredictionOf>,
    joined_row: impl Fn(String, usize, Option<String>, T, u64) -> R,
) -> Result<(Vec<R>, LogPass)> {
    type Given<T> = (Option<String>, T, u64);
    let mut feedback: std::collections::HashMap<(String, usize), Vec<Given<T>>> = std::collections::HashMap::new();
    for_each_record(dir, |record| {
        if let Some((key, client, truth, time)) = feedback_of(record)
            && let Some(time_ms) = time_ms(&time)
        {
            feedback.entry(key).or_default().push((client, truth, time_ms));
        }
        Ok(())
    })?;
    let mut joined = Vec::new();
    let pass = for_each_record(dir, |record| {
        if let Some((request_id, index, client, text, time)) = prediction_of(record)
            && let Some(given) = feedback.get(&(request_id.clone(), index))
            && let Some(time_ms) = time_ms(&time)
        {
            let counted = given.iter().map(|(from, truth, at)| (from.as_deref(), truth, *at));
            if let Some((truth, _)) = feedback_that_counts(client.as_deref(), counted) {
                joined.push((time_ms, joined_row(request_id, index, text, truth.clone(), time_ms)));
            }
        }
        Ok(())
    })?;
    joined.sort_by_key(|(time_ms, _)| *time_ms);
    Ok((joined.into_iter().map(|(_, row)| row).collect(), pass))
}

/// A text a classifier served that no feedback names: what
/// `retrain.weak_labels` labels with the labelling functions.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedText {
    pub request_id: String,
    pub index: usize,
    pub text: String,
    /// When it was served (unix ms).
    pub time_ms: u64,
}

/// What a pass for served texts counted besides the texts it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServedCounts {
    /// Predictions in the log.
    pub predictions: usize,
    /// Of those, named by some feedback (they join the training data as gold).
    pub with_feedback: usize,
    /// Without feedback, but the log kept no text (`log_text` other than `full`).
    pub without_text: usize,
    /// Without feedback, older than the latest `limit`.
    pub beyond_limit: usize,
}

/// The latest `limit` texts served without feedback, in time order, read in
/// two streaming passes (the feedback's keys, then the predictions), so
/// memory follows `limit` and the feedback, not the log.
pub fn served_without_feedback(dir: &Path, limit: usize) -> Result<(Vec<ServedText>, ServedCounts, LogPass)> {
    let mut named = std::collections::HashSet::new();
    for_each_record(dir, |record| {
        if let LogRecord::Feedback { request_id, index, .. } = record {
            named.insert((request_id, index));
        }
        Ok(())
    })?;
    let mut counts = ServedCounts::default();
    let mut latest = std::collections::VecDeque::with_capacity(limit.min(1 << 16));
    let pass = for_each_record(dir, |record| {
        let LogRecord::Prediction { time, request_id, index, text, .. } = record else { return Ok(()) };
        counts.predictions += 1;
        if named.contains(&(request_id.clone(), index)) {
            counts.with_feedback += 1;
            return Ok(());
        }
        let (Some(text), Some(time_ms)) = (text, time_ms(&time)) else {
            counts.without_text += 1;
            return Ok(());
        };
        latest.push_back(ServedText { request_id, index, text, time_ms });
        if latest.len() > limit {
            latest.pop_front();
            counts.beyond_limit += 1;
        }
        Ok(())
    })?;
    let mut served = Vec::from(latest);
    served.sort_by_key(|row| row.time_ms);
    Ok((served, counts, pass))
}

/// A log line that could not be read: skipped and counted, never fatal (a
/// crash mid-write leaves half a line at the end of a `.partial` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedLine {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub error: String,
}

/// Every record of a log folder, complete and in-progress files alike, in file
/// order (files are named by their start time, so this is time order).
#[derive(Debug, Default)]
pub struct LogScan {
    pub files: Vec<PathBuf>,
    pub records: Vec<LogRecord>,
    pub damaged: Vec<DamagedLine>,
}

/// Reads every `*.jsonl` and `*.jsonl.partial` file of `dir`.
pub fn read_dir(dir: &Path) -> Result<LogScan> {
    let mut scan = LogScan::default();
    let mut records = Vec::new();
    let summary = for_each_record(dir, |record| {
        records.push(record);
        Ok(())
    })?;
    scan.records = records;
    scan.files = summary.files;
    scan.damaged = summary.damaged;
    Ok(scan)
}

/// What a pass over a log folder saw besides its records.
#[derive(Debug, Default)]
pub struct LogPass {
    pub files: Vec<PathBuf>,
    pub damaged: Vec<DamagedLine>,
}

/// The log files of `dir`, in time order (files are named by their start time).
pub fn log_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read the prediction log folder {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_file()
            && (name.ends_with(&format!(".{COMPLETE}")) || name.ends_with(&format!(".{COMPLETE}.{PARTIAL}")))
        {
            files.push(path);
        }
    }
    // `x.jsonl.partial` sorts after `x.jsonl` of the same name, which never both exist.
    files.sort();
    Ok(files)
}

/// Hands every record of `dir`'s log files to `each`, a line at a time, so a
/// reader's memory does not grow with the log (`retrain` keeps only what it
/// joins). Damaged lines are skipped and listed.
pub fn for_each_record(dir: &Path, mut each: impl FnMut(LogRecord) -> Result<()>) -> Result<LogPass> {
    let files = log_files(dir)?;
    let mut damaged = Vec::new();
    for path in &files {
        read_file(path, &mut each, &mut damaged)?;
    }
    Ok(LogPass { files, damaged })
}

/// Opens a listed log file, with the path it was opened by; `None` when it is
/// gone. A `.partial` file completed (renamed to `.jsonl`) since the listing
/// is opened by its new name.
pub fn open_log_file(path: &Path) -> Result<Option<(PathBuf, std::fs::File)>> {
    match std::fs::File::open(path) {
        Ok(file) => Ok(Some((path.to_owned(), file))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let complete = path.with_extension("");
            if path.extension().is_some_and(|e| e == PARTIAL) && complete.is_file() {
                return open_log_file(&complete);
            }
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn read_file(
    path: &Path,
    each: &mut impl FnMut(LogRecord) -> Result<()>,
    damaged: &mut Vec<DamagedLine>,
) -> Result<()> {
    let Some((path, file)) = open_log_file(path)? else { return Ok(()) };
    let path = path.as_path();
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogRecord>(&line) {
            Ok(record) => each(record)?,
            Err(error) => {
                damaged.push(DamagedLine { file: path.to_owned(), line: number + 1, error: error.to_string() })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_round_trips_and_old_records_still_read() {
        let record = LogRecord::Prediction {
            time: "2026-11-28T10:00:00.000Z".into(),
            request_id: "r1".into(),
            client: Some("app".into()),
            client_request_id: None,
            index: 0,
            text: Some("hello".into()),
            text_sha256: None,
            label: "pos".into(),
            score: 0.9,
            margin: 0.8,
            entropy: 0.3,
            calibrated_score: Some(0.85),
            input: InputStats { tokens: 5, truncated: false, unknown_tokens: 1 },
            model_version: "v1".into(),
            quantize: Quantize::Int8,
            latency_ms: 3.5,
        };
        let line = serde_json::to_string(&record).expect("json");
        assert!(line.contains("\"type\":\"prediction\"") && line.contains("\"tokens\":5"), "{line}");
        assert!(line.contains("\"quantize\":\"int8\""), "{line}");
        assert_eq!(serde_json::from_str::<LogRecord>(&line).expect("reads"), record);

        // A record from before the per-text numbers.
        let old = r#"{"type":"prediction","time":"t","request_id":"r","index":1,"label":"neg","score":0.6,"model_version":"v1","latency_ms":1.0}"#;
        let LogRecord::Prediction { input, margin, quantize, .. } = serde_json::from_str(old).expect("reads") else {
            panic!("a prediction")
        };
        assert_eq!((input, margin, quantize), (InputStats::default(), 0.0, Quantize::None));
    }

    #[test]
    fn labelled_predictions_stream_the_join_by_the_feedback_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prediction = |t: &str, id: &str, client: Option<&str>| LogRecord::Prediction {
            time: format!("2026-11-28T10:00:{t}.000Z"),
            request_id: id.into(),
            client: client.map(str::to_owned),
            client_request_id: None,
            index: 0,
            text: Some(format!("text {id}")),
            text_sha256: None,
            label: "a".into(),
            score: 0.9,
            margin: 0.5,
            entropy: 0.1,
            calibrated_score: None,
            input: InputStats::default(),
            model_version: "v1".into(),
            quantize: Quantize::None,
            latency_ms: 1.0,
        };
        let feedback = |t: &str, id: &str, client: Option<&str>, label: &str| LogRecord::Feedback {
            time: format!("2026-11-28T10:01:{t}.000Z"),
            request_id: id.into(),
            client: client.map(str::to_owned),
            index: 0,
            label: label.into(),
            model_version: "v1".into(),
        };
        let lines = |records: &[LogRecord]| -> String {
            records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect()
        };
        // Feedback before and after its prediction's file; another client's label never counts.
        std::fs::write(
            dir.path().join("predictions-1-h-1-0001.jsonl"),
            lines(&[
                feedback("00", "r2", Some("app"), "x"),
                prediction("05", "r1", Some("app")),
                prediction("03", "r2", Some("app")),
                prediction("09", "r3", None),
            ]),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("predictions-2-h-1-0002.jsonl"),
            lines(&[
                feedback("10", "r1", Some("app"), "b"),
                feedback("20", "r1", Some("other"), "c"),
                feedback("30", "r3", Some("app"), "d"),
                feedback("40", "gone", Some("app"), "e"),
            ]),
        )
        .expect("write");
        let (joined, pass) = labelled_predictions(dir.path()).expect("joined");
        let got: Vec<(&str, &str)> = joined.iter().map(|j| (j.request_id.as_str(), j.label.as_str())).collect();
        assert_eq!(got, [("r2", "x"), ("r1", "b"), ("r3", "d")], "in time order, by the rule");
        assert_eq!(joined[0].text.as_deref(), Some("text r2"));
        assert_eq!(pass.files.len(), 2);

        // Served texts without feedback: the latest ones, those without text counted apart.
        let mut untold = prediction("07", "r4", Some("app"));
        if let LogRecord::Prediction { text, .. } = &mut untold {
            *text = None;
        }
        std::fs::write(
            dir.path().join("predictions-3-h-1-0003.jsonl"),
            lines(&[prediction("50", "r5", None), untold, prediction("55", "r6", None), prediction("52", "r7", None)]),
        )
        .expect("write");
        let (served, counts, _) = served_without_feedback(dir.path(), 10).expect("served");
        let got: Vec<(&str, &str)> = served.iter().map(|s| (s.request_id.as_str(), s.text.as_str())).collect();
        assert_eq!(got, [("r5", "text r5"), ("r7", "text r7"), ("r6", "text r6")], "in time order");
        assert_eq!(counts, ServedCounts { predictions: 7, with_feedback: 3, without_text: 1, beyond_limit: 0 });
        let (served, counts, _) = served_without_feedback(dir.path(), 2).expect("served");
        let got: Vec<&str> = served.iter().map(|s| s.request_id.as_str()).collect();
        assert_eq!((got, counts.beyond_limit), (vec!["r7", "r6"], 1), "the latest two in log order");
    }

    #[test]
    fn the_latest_feedback_from_the_predictions_own_client_counts() {
        let given = [(Some("app"), "a", 10), (Some("other"), "b", 30), (Some("app"), "c", 20), (None, "d", 5)];
        assert_eq!(feedback_that_counts(Some("app"), given), Some(("c", 20)), "another client's label never counts");
        assert_eq!(feedback_that_counts(None, given), Some(("b", 30)), "an old prediction takes any");
        assert_eq!(feedback_that_counts(Some("app"), [(Some("app"), "x", 7), (Some("app"), "y", 7)]), Some(("y", 7)));
        assert_eq!(feedback_that_counts(Some("app"), [(Some("other"), "x", 7)]), None);
    }

    #[test]
    fn a_folder_reads_complete_and_partial_files_and_counts_damaged_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let feedback = |id: &str| {
            serde_json::to_string(&LogRecord::Feedback {
                time: "2026-11-28T10:00:00.000Z".into(),
                request_id: id.into(),
                client: None,
                index: 0,
                label: "pos".into(),
                model_version: "v1".into(),
            })
            .expect("json")
        };
        std::fs::write(
            dir.path().join("predictions-1-0001.jsonl"),
            format!("{}\n\n{}\n", feedback("a"), feedback("b")),
        )
        .expect("write");
        // A crash mid-line, and something that is not a log file at all.
        std::fs::write(
            dir.path().join("predictions-2-0002.jsonl.partial"),
            format!("{}\n{{\"type\":\"predi", feedback("c")),
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a log").expect("write");
        let scan = read_dir(dir.path()).expect("reads");
        assert_eq!(scan.files.len(), 2);
        let ids: Vec<&str> = scan
            .records
            .iter()
            .map(|r| match r {
                LogRecord::Feedback { request_id, .. } => request_id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(scan.damaged.len(), 1);
        assert_eq!(scan.damaged[0].line, 2);
        assert!(scan.damaged[0].file.ends_with("predictions-2-0002.jsonl.partial"));
        assert!(read_dir(&dir.path().join("missing")).is_err());
    }
}

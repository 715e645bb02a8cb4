//! The prediction log as monitoring reads it: predictions joined with their
//! feedback, grouped by model version in time order, cut into windows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kiln_config::WindowKind;
use kiln_core::prediction_log::{InputStats, LogRecord, LogScan, LoggedEntity};

/// One logged prediction, with its feedback when someone gave it: a
/// classifier's label, or a tagger's entities.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub time_ms: u64,
    pub request_id: String,
    /// The text's position in its request.
    pub index: usize,
    /// A classifier's label; empty for a tagger.
    pub label: String,
    /// A tagger's entities (`None` for a classifier).
    pub entities: Option<Arc<[LoggedEntity]>>,
    pub score: f64,
    pub margin: f64,
    pub entropy: f64,
    pub calibrated_score: Option<f64>,
    pub input: InputStats,
    /// The text, when the log keeps it (`log_text = "full"`): what retraining learns from.
    pub text: Option<String>,
    pub text_sha256: Option<String>,
    pub latency_ms: f64,
    pub feedback: Option<Feedback>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub truth: Truth,
    /// From the prediction to its feedback.
    pub delay_s: f64,
}

/// What feedback says the answer was.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// A text's label.
    Label(Arc<str>),
    /// Every entity of a text (type and character offsets).
    Entities(Arc<[LoggedEntity]>),
}

impl Feedback {
    pub fn label(&self) -> Option<&str> {
        match &self.truth {
            Truth::Label(label) => Some(label),
            Truth::Entities(_) => None,
        }
    }

    pub fn entities(&self) -> Option<&[LoggedEntity]> {
        match &self.truth {
            Truth::Entities(entities) => Some(entities),
            Truth::Label(_) => None,
        }
    }
}

impl Observation {
    /// The text or its hash, for duplicate counts; `None` when the log keeps neither.
    pub fn text_key(&self) -> Option<&str> {
        self.text.as_deref().or(self.text_sha256.as_deref())
    }
}

/// A prediction request the server failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub time_ms: u64,
    pub status: u16,
    pub model_version: Option<String>,
}

impl Failure {
    /// The server's fault (5xx) or overload (429), not the client's.
    pub fn is_server_error(&self) -> bool {
        self.status >= 500 || self.status == 429
    }
}

/// The log, read.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Predictions by model version, each in time order.
    pub by_version: BTreeMap<String, Vec<Observation>>,
    pub failures: Vec<Failure>,
    /// Feedback naming no logged prediction (its log was deleted, or a typo).
    pub unmatched_feedback: usize,
    /// Records whose time does not parse (counted with the damaged lines).
    pub bad_times: usize,
}

/// Unix milliseconds of an RFC 3339 time.
pub use kiln_core::prediction_log::time_ms as parse_time_ms;

/// Feedback by prediction (request id and index), for the join. Compact,
/// since `monitor` holds every feedback of the log: request ids as 64-bit
/// hashes, labels and client names shared.
#[derive(Debug, Default)]
pub struct FeedbackIndex {
    given: HashMap<(u64, usize), Vec<GivenFeedback>>,
    matched: HashSet<(u64, usize)>,
    names: HashSet<Arc<str>>,
}

impl FeedbackIndex {
    pub fn add(&mut self, request_id: String, index: usize, client: Option<String>, truth: Truth, time_ms: u64) {
        let client = client.map(|c| self.shared(&c));
        let truth = match truth {
            Truth::Label(label) => Truth::Label(self.shared(&label)),
            entities => entities,
        };
        self.given.entry((id_hash(&request_id), index)).or_default().push((client, truth, time_ms));
    }

    fn shared(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.names.insert(name.clone());
        name
    }

    /// The feedback that counts for a prediction made for `client` at
    /// `time_ms`, by [`kiln_core::prediction_log::FEEDBACK_RULE`].
    pub fn join(&mut self, request_id: &str, index: usize, client: Option<&str>, time_ms: u64) -> Option<Feedback> {
        let key = (id_hash(request_id), index);
        let given = self.given.get(&key)?;
        let counted = given.iter().map(|(from, truth, at)| (from.as_deref(), truth, *at));
        let (truth, at) = kiln_core::prediction_log::feedback_that_counts(client, counted)?;
        let feedback = Feedback { truth: truth.clone(), delay_s: at.saturating_sub(time_ms) as f64 / 1e3 };
        self.matched.insert(key);
        Some(feedback)
    }

    /// Predictions named by feedback that no logged prediction matched.
    pub fn unmatched(&self) -> usize {
        self.given.len().saturating_sub(self.matched.len())
    }
}

/// What one log record adds to the traffic.
pub enum Read {
    /// A prediction of this model version, joined with its feedback.
    Observation(String, Observation),
    Feedback {
        request_id: String,
        index: usize,
        client: Option<String>,
        truth: Truth,
        time_ms: u64,
    },
    Failure(Failure),
    /// A record whose time does not parse.
    BadTime,
    /// Nothing monitoring reads.
    Other,
}

/// Reads one record; a prediction is joined with `feedback` (which must hold
/// every feedback of the log: read them first).
pub fn read(record: LogRecord, feedback: &mut FeedbackIndex) -> Read {
    match record {
        LogRecord::Prediction {
            time,
            request_id,
            client,
            client_request_id: _,
            index,
            text,
            text_sha256,
            label,
            score,
            margin,
            entropy,
            calibrated_score,
            input,
            model_version,
            quantize: _,
            latency_ms,
        } => {
            let Some(time_ms) = parse_time_ms(&time) else { return Read::BadTime };
            let joined = feedback.join(&request_id, index, client.as_deref(), time_ms);
            let observation = Observation {
                time_ms,
                request_id,
                index,
                label,
                entities: None,
                score: f64::from(score),
                margin: f64::from(margin),
                entropy: f64::from(entropy),
                calibrated_score: calibrated_score.map(f64::from),
                input,
                text,
                text_sha256,
                latency_ms,
                feedback: joined,
            };
            Read::Observation(model_version, observation)
        }
        LogRecord::Feedback { time, request_id, client, index, label, .. } => match parse_time_ms(&time) {
            Some(time_ms) => Read::Feedback { request_id, index, client, truth: Truth::Label(label.into()), time_ms },
            None => Read::BadTime,
        },
        LogRecord::EntityFeedback { time, request_id, client, index, entities, .. } => match parse_time_ms(&time) {
            Some(time_ms) => {
                Read::Feedback { request_id, index, client, truth: Truth::Entities(entities.into()), time_ms }
            }
            None => Read::BadTime,
        },
        LogRecord::Entities {
            time,
            request_id,
            client,
            client_request_id: _,
            index,
            text,
            text_sha256,
            entities,
            input,
            model_version,
            quantize: _,
            latency_ms,
        } => {
            let Some(time_ms) = parse_time_ms(&time) else { return Read::BadTime };
            let joined = feedback.join(&request_id, index, client.as_deref(), time_ms);
            let observation = Observation {
                time_ms,
                request_id,
                index,
                label: String::new(),
                // Unread for a tagger: its confidence is its entities' scores.
                score: 0.0,
                entities: Some(entities.into()),
                margin: 0.0,
                entropy: 0.0,
                calibrated_score: None,
                input,
                text,
                text_sha256,
                latency_ms,
                feedback: joined,
            };
            Read::Observation(model_version, observation)
        }
        LogRecord::Error { time, status, model_version, .. } => match parse_time_ms(&time) {
            Some(time_ms) => Read::Failure(Failure { time_ms, status, model_version }),
            None => Read::BadTime,
        },
    }
}

impl Traffic {
    /// Joins feedback to predictions by request and position, by
    /// [`kiln_core::prediction_log::FEEDBACK_RULE`]: only feedback from the
    /// client the prediction was made for counts, and of that the latest wins.
    /// All in memory: `monitor` itself streams the log ([`crate::stream`]).
    pub fn from_scan(scan: LogScan) -> Self {
        let mut traffic = Self::default();
        let mut feedback = FeedbackIndex::default();
        let mut rest = Vec::new();
        for record in scan.records {
            match record {
                LogRecord::Feedback { .. } => match read(record, &mut feedback) {
                    Read::Feedback { request_id, index, client, truth, time_ms } => {
                        feedback.add(request_id, index, client, truth, time_ms);
                    }
                    _ => traffic.bad_times += 1,
                },
                other => rest.push(other),
            }
        }
        for record in rest {
            match read(record, &mut feedback) {
                Read::Observation(version, observation) => {
                    traffic.by_version.entry(version).or_default().push(observation);
                }
                Read::Failure(failure) => traffic.failures.push(failure),
                Read::BadTime => traffic.bad_times += 1,
                Read::Feedback { .. } | Read::Other => {}
            }
        }
        traffic.unmatched_feedback = feedback.unmatched();
        for observations in traffic.by_version.values_mut() {
            observations.sort_by_key(|o| o.time_ms);
        }
        traffic.failures.sort_by_key(|f| f.time_ms);
        traffic
    }
}

/// A feedback as the join sees it, per prediction in log order: (client, truth, unix ms).
type GivenFeedback = (Option<Arc<str>>, Truth, u64);

/// A request id's 64-bit hash (SipHash with fixed keys: the same in every
/// run); two ids of one log colliding is about as likely as n² / 2^65.
fn id_hash(request_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request_id.hash(&mut hasher);
    hasher.finish()
}

/// A window: a run of one version's predictions, in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A window the [`Cutter`] closed: the `ordinal`-th of its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub version: String,
    pub ordinal: usize,
    pub predictions: usize,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// Cuts each version's time-ordered predictions into windows as they come:
/// every `size` predictions, or every `duration_ms` of time (aligned to the
/// Unix epoch, so runs an hour apart agree on their windows; empty time
/// windows are skipped). The one place windows are cut.
pub struct Cutter {
    kind: WindowKind,
    size: usize,
    duration_ms: u64,
    open: BTreeMap<String, Cut>,
}

impl Cutter {
    pub fn new(kind: WindowKind, size: usize, duration_ms: u64) -> Self {
        Self { kind, size: size.max(1), duration_ms: duration_ms.max(1), open: BTreeMap::new() }
    }

    /// Counts a prediction of `version` at `time_ms`; returns the window it
    /// closes (it starts the next), if any.
    pub fn push(&mut self, version: &str, time_ms: u64) -> Option<Cut> {
        let mut closed = None;
        if let Some(open) = self.open.get(version) {
            let full = match self.kind {
                WindowKind::Predictions => open.predictions >= self.size,
                WindowKind::Time => open.first_ms / self.duration_ms != time_ms / self.duration_ms,
            };
            if full {
                let ordinal = open.ordinal + 1;
                closed = self.open.remove(version);
                self.open.insert(version.to_owned(), Cut::first(version, ordinal, time_ms));
            }
        }
        let open = self.open.entry(version.to_owned()).or_insert_with(|| Cut::first(version, 0, time_ms));
        if open.predictions > 0 {
            open.last_ms = time_ms;
        }
        open.predictions += 1;
        closed
    }

    /// The windows still open, by version.
    pub fn finish(self) -> Vec<Cut> {
        self.open.into_values().collect()
    }
}

impl Cut {
    fn first(version: &str, ordinal: usize, time_ms: u64) -> Self {
        Self { version: version.to_owned(), ordinal, predictions: 0, first_ms: time_ms, last_ms: time_ms }
    }
}

/// Cuts one version's time-ordered predictions into windows (as [`Cutter`] does).
pub fn windows(observations: &[Observation], kind: WindowKind, size: usize, duration_ms: u64) -> Vec<Span> {
    let mut cutter = Cutter::new(kind, size, duration_ms);
    let mut sizes: Vec<usize> =
        observations.iter().filter_map(|o| cutter.push("", o.time_ms)).map(|c| c.predictions).collect();
    sizes.extend(cutter.finish().into_iter().map(|c| c.predictions));
    let mut start = 0;
    sizes
        .into_iter()
        .map(|n| {
            let span = Span { start, end: start + n };
            start += n;
            span
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(time: &str, request_id: &str, index: usize, version: &str) -> LogRecord {
        LogRecord::Prediction {
            time: time.into(),
            request_id: request_id.into(),
            client: Some("app".into()),
            client_request_id: None,
            index,
            text: Some(format!("text {request_id}")),
            text_sha256: None,
            label: "a".into(),
            score: 0.9,
            margin: 0.8,
            entropy: 0.2,
            calibrated_score: None,
            input: InputStats { tokens: 5, truncated: false, unknown_tokens: 0 },
            model_version: version.into(),
            quantize: kiln_core::Quantize::None,
            latency_ms: 3.0,
        }
    }

    fn feedback(time: &str, request_id: &str, index: usize, label: &str) -> LogRecord {
        LogRecord::Feedback {
            time: time.into(),
            request_id: request_id.into(),
            client: Some("app".into()),
            index,
            label: label.into(),
            model_version: "v1".into(),
        }
    }

    #[test]
    fn feedback_joins_by_request_and_position_and_the_latest_wins() {
        let scan = LogScan {
            records: vec![
                prediction("2026-11-28T10:00:01.000Z", "r1", 0, "v1"),
                prediction("2026-11-28T10:00:01.000Z", "r1", 1, "v1"),
                prediction("2026-11-28T10:00:00.000Z", "r0", 0, "v2"),
                feedback("2026-11-28T10:00:11.000Z", "r1", 1, "b"),
                feedback("2026-11-28T10:00:21.000Z", "r1", 1, "a"),
                feedback("2026-11-28T10:00:21.000Z", "gone", 0, "a"),
                prediction("not a time", "r9", 0, "v1"),
            ],
            ..LogScan::default()
        };
        let traffic = Traffic::from_scan(scan);
        assert_eq!(traffic.bad_times, 1);
        assert_eq!(traffic.unmatched_feedback, 1);
        let v1 = &traffic.by_version["v1"];
        assert_eq!(v1.len(), 2);
        assert_eq!(v1[0].feedback, None, "feedback for index 1 is not index 0's");
        assert_eq!(v1[1].feedback, Some(Feedback { truth: Truth::Label("a".into()), delay_s: 20.0 }));
        assert_eq!(traffic.by_version["v2"].len(), 1);
    }

    fn at(seconds: &[u64]) -> Vec<Observation> {
        let records = seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let time = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_secs(*s));
                prediction(&time.to_string(), &format!("r{i}"), 0, "v1")
            })
            .collect();
        Traffic::from_scan(LogScan { records, ..LogScan::default() }).by_version.remove("v1").expect("v1")
    }

    #[test]
    fn windows_by_count_keep_the_remainder_and_by_time_align_to_the_clock() {
        let observations = at(&[0, 10, 20, 30, 40, 3600, 3601, 7300]);
        let spans = windows(&observations, WindowKind::Predictions, 3, 0);
        assert_eq!(spans.iter().map(|s| s.end - s.start).collect::<Vec<_>>(), [3, 3, 2]);
        let spans = windows(&observations, WindowKind::Time, 0, 3_600_000);
        assert_eq!(spans.iter().map(|s| s.end - s.start).collect::<Vec<_>>(), [5, 2, 1]);
        assert!(windows(&[], WindowKind::Time, 0, 1000).is_empty());
    }
}

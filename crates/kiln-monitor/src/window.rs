//! One window of live traffic against the model's reference: the figures and
//! the status they earn under `[monitor]`'s thresholds.

use std::collections::{BTreeMap, HashSet};

use kiln_config::MonitorConfig;
use kiln_core::entities::{EntityCounts, entity_type, words_in_span};
use kiln_core::scores::Confusion;
use serde::{Deserialize, Serialize};

use crate::reference::ModelReference;
use crate::stats::{self, Interval};
use crate::traffic::{Failure, Observation};

/// How worried to be, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    Warn,
    Alert,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Alert => "alert",
        }
    }

    /// 0, 1, 2: the Prometheus gauge's value.
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// A threshold a figure crossed, and what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub status: Status,
    /// `prediction_drift`, `confidence_drift`, `input_drift`, `quality`, `estimated_quality`, `operations`, `staleness`.
    pub check: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operations {
    pub requests: usize,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    /// Failed prediction requests: the server's (5xx, 429) and the clients' (4xx).
    pub server_errors: usize,
    pub client_errors: usize,
    /// Server errors over all prediction requests.
    pub error_share: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictionDrift {
    /// Share of the window's predictions per label (every model label).
    pub predicted: BTreeMap<String, f64>,
    pub reference: BTreeMap<String, f64>,
    pub psi: f64,
    /// Test of homogeneity of the window's and the reference's counts (the
    /// reference's own size counts: a small validation split makes a weak reference).
    pub chi_square: f64,
    pub chi_square_p: f64,
    pub jensen_shannon: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceDrift {
    pub mean_top: f64,
    pub mean_margin: f64,
    pub mean_entropy: f64,
    pub low_confidence_share: f64,
    pub reference_mean_top: f64,
    pub reference_mean_margin: f64,
    pub reference_mean_entropy: f64,
    pub reference_low_confidence_share: f64,
    /// Of the top probability against the reference's (its percentiles).
    pub ks: f64,
    pub ks_p: f64,
    pub wasserstein: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputDrift {
    pub mean_tokens: f64,
    /// Of the token length (capped at max_length) against the training data's,
    /// over tenths of the training data, with the chi-square test's p on the same bins.
    pub token_length_psi: Option<f64>,
    pub token_length_p: Option<f64>,
    pub truncation_rate: f64,
    pub unknown_token_text_rate: f64,
    /// Texts with no token beyond [CLS] and [SEP].
    pub empty_rate: f64,
    /// Texts seen earlier in the window; `None` when the log keeps no text or hash.
    pub duplicate_rate: Option<f64>,
    pub reference_truncation_rate: Option<f64>,
    pub reference_unknown_token_text_rate: Option<f64>,
    pub reference_empty_rate: Option<f64>,
    pub reference_duplicate_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRecall {
    pub support: usize,
    pub recall: Interval,
}

/// Quality on the predictions that got feedback. Feedback is not a random
/// sample (people correct what looks wrong, some classes get more of it), so
/// these figures describe the labelled predictions, not all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RealisedQuality {
    pub with_feedback: usize,
    pub feedback_share: f64,
    pub delay_s_p50: Option<f64>,
    pub delay_s_p90: Option<f64>,
    pub accuracy: Option<Interval>,
    pub macro_f1: Option<Interval>,
    pub recall: BTreeMap<String, ClassRecall>,
    /// A tagger's entity F1 on the texts with span feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntityQuality>,
}

/// A tagger's quality on the texts whose entities someone gave: entity
/// F1 as seqeval's default mode scores it (an entity is right when its type
/// and both character offsets agree), with bootstrap intervals over texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityQuality {
    pub micro_f1: Interval,
    pub macro_f1: Interval,
    /// Per entity type of the feedback.
    pub recall: BTreeMap<String, ClassRecall>,
    /// Entities in the feedback, and predicted for the same texts.
    pub true_entities: usize,
    pub predicted_entities: usize,
}

/// A tagger's entities in the window against those it found on the reference
/// split (`eval`'s `reference_predictions.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityDrift {
    pub entities_per_text: f64,
    pub reference_entities_per_text: Option<f64>,
    /// Entities per text, by type (every type the model tags or the window has).
    pub per_text: BTreeMap<String, f64>,
    pub reference_per_text: BTreeMap<String, f64>,
    /// Of the type counts against the reference's: PSI of the shares, the
    /// chi-square test of homogeneity (the reference's own size counts) and
    /// the Jensen-Shannon distance.
    pub type_psi: Option<f64>,
    pub type_chi_square_p: Option<f64>,
    pub type_jensen_shannon: Option<f64>,
    pub texts_without_entities: f64,
    /// Words per entity (texts the log kept); the reference's from `eval`.
    pub mean_span_words: Option<f64>,
    pub reference_mean_span_words: Option<f64>,
    /// The entity score (mean over its sub-words' tag probabilities).
    pub mean_score: Option<f64>,
    pub reference_mean_score: Option<f64>,
    /// Kolmogorov-Smirnov of the entity scores against the reference's percentiles.
    pub score_ks: Option<f64>,
    pub score_ks_p: Option<f64>,
    /// Unknown tokens among all the tokens read.
    pub unknown_token_share: f64,
}

/// Accuracy estimated from confidence without labels (as NannyML's CBPE does):
/// the mean calibrated top probability, right on average when the model's
/// calibration still holds; checked where feedback exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EstimatedQuality {
    pub accuracy: f64,
    pub accuracy_without_feedback: Option<f64>,
    /// The estimate on the predictions with feedback, to set beside the realised accuracy there.
    pub accuracy_on_feedback: Option<f64>,
    /// The log carried calibrated scores (temperature scaling); else raw top probabilities.
    pub calibrated: bool,
}

/// One window's figures and verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Across all versions' windows, in time order.
    pub index: usize,
    pub model_version: String,
    pub start: String,
    pub end: String,
    pub predictions: usize,
    /// Enough predictions to judge (`min_window_predictions`).
    pub judged: bool,
    pub operations: Operations,
    pub prediction_drift: Option<PredictionDrift>,
    pub confidence: Option<ConfidenceDrift>,
    /// A tagger's entity figures (its windows have no label drift or confidence above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntityDrift>,
    pub input: InputDrift,
    pub quality: RealisedQuality,
    pub estimated: EstimatedQuality,
    pub status: Status,
    pub findings: Vec<Finding>,
}

pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// Figures and findings for `observations` (one version, time order) and the
/// failed requests that fell in the same time.
pub fn analyse(
    index: usize,
    model_version: &str,
    observations: &[Observation],
    failures: &[&Failure],
    reference: Option<&ModelReference>,
    config: &MonitorConfig,
) -> WindowReport {
    let n = observations.len();
    let tags = observations.iter().any(|o| o.entities.is_some());
    let mut report = WindowReport {
        index,
        model_version: model_version.to_owned(),
        start: observations.first().map(|o| format_time(o.time_ms)).unwrap_or_default(),
        end: observations.last().map(|o| format_time(o.time_ms)).unwrap_or_default(),
        predictions: n,
        judged: n >= config.min_window_predictions,
        operations: operations(observations, failures),
        input: input_drift(observations, reference),
        ..WindowReport::default()
    };
    if tags {
        report.entities = Some(entity_drift(observations, reference));
        report.quality = realised_quality(observations, None, config);
        report.quality.entities = entity_quality(observations, config);
    } else {
        report.prediction_drift = reference.and_then(|r| prediction_drift(observations, r));
        report.confidence = reference.and_then(|r| confidence_drift(observations, r));
        report.quality = realised_quality(observations, reference, config);
        report.estimated = estimated_quality(observations);
    }
    report.findings = judge(&report, reference, config);
    report.status = report.findings.iter().map(|f| f.status).max().unwrap_or_default();
    report
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

fn operations(observations: &[Observation], failures: &[&Failure]) -> Operations {
    // Every text of a request carries the request's latency: count it once.
    let mut seen = HashSet::new();
    let latencies = sorted(observations.iter().filter(|o| seen.insert(o.request_id.as_str())).map(|o| o.latency_ms));
    let server_errors = failures.iter().filter(|f| f.is_server_error()).count();
    let client_errors = failures.len() - server_errors;
    let requests = latencies.len();
    let all = requests + failures.len();
    Operations {
        requests,
        latency_ms_p50: stats::quantile(&latencies, 0.50).max(0.0),
        latency_ms_p95: stats::quantile(&latencies, 0.95).max(0.0),
        latency_ms_p99: stats::quantile(&latencies, 0.99).max(0.0),
        server_errors,
        client_errors,
        error_share: if all == 0 { 0.0 } else { server_errors as f64 / all as f64 },
    }
}

fn shares(labels: &[String], counts: &[f64]) -> BTreeMap<String, f64> {
    let total: f64 = counts.iter().sum::<f64>().max(1.0);
    labels.iter().zip(counts).map(|(l, &c)| (l.clone(), c / total)).collect()
}

fn prediction_drift(observations: &[Observation], reference: &ModelReference) -> Option<PredictionDrift> {
    let profile = reference.predictions.as_ref()?;
    let labels = &reference.labels;
    let expected: Vec<f64> = labels.iter().map(|l| profile.predicted.get(l).copied().unwrap_or(0) as f64).collect();
    let mut observed = vec![0.0; labels.len()];
    for observation in observations {
        if let Some(i) = labels.iter().position(|l| *l == observation.label) {
            observed[i] += 1.0;
        }
    }
    let (chi_square, chi_square_p) = stats::chi_square_homogeneity(&expected, &observed);
    Some(PredictionDrift {
        predicted: shares(labels, &observed),
        reference: shares(labels, &expected),
        psi: stats::psi(&expected, &observed),
        chi_square,
        chi_square_p,
        jensen_shannon: stats::jensen_shannon(&expected, &observed),
    })
}

fn confidence_drift(observations: &[Observation], reference: &ModelReference) -> Option<ConfidenceDrift> {
    let profile = reference.predictions.as_ref()?;
    let summary = &profile.confidence;
    if observations.is_empty() || summary.top_percentiles.is_empty() {
        return None;
    }
    let tops: Vec<f64> = observations.iter().map(|o| o.score).collect();
    // The reference keeps the top probability's percentiles 0..100, not every
    // value: its distribution to within 1% of rank; its row count sets the p-value.
    let ks = stats::ks_statistic(&tops, &summary.top_percentiles);
    let low = summary.low_confidence_threshold;
    Some(ConfidenceDrift {
        mean_top: mean(tops.iter().copied()),
        mean_margin: mean(observations.iter().map(|o| o.margin)),
        mean_entropy: mean(observations.iter().map(|o| o.entropy)),
        low_confidence_share: tops.iter().filter(|&&t| t < low).count() as f64 / tops.len() as f64,
        reference_mean_top: summary.mean_top,
        reference_mean_margin: summary.mean_margin,
        reference_mean_entropy: summary.mean_entropy,
        reference_low_confidence_share: summary.low_confidence_share,
        ks,
        ks_p: stats::ks_p_value(ks, tops.len(), profile.rows),
        wasserstein: stats::wasserstein(&tops, &summary.top_percentiles),
    })
}

fn rate(observations: &[Observation], keep: impl Fn(&Observation) -> bool) -> f64 {
    if observations.is_empty() {
        0.0
    } else {
        observations.iter().filter(|o| keep(o)).count() as f64 / observations.len() as f64
    }
}

/// [CLS] and [SEP]: a text that read as no more than these was empty.
const SPECIAL_TOKENS: u32 = 2;

fn input_drift(observations: &[Observation], reference: Option<&ModelReference>) -> InputDrift {
    let data = reference.and_then(|r| r.data.as_ref());
    let max_length = reference.and_then(|r| r.max_length);
    let keys: Vec<&str> = observations.iter().filter_map(Observation::text_key).collect();
    let length_bins = data.zip(max_length).map(|(data, max_length)| token_length_bins(data, max_length, observations));
    let duplicate_rate = (!keys.is_empty()).then(|| {
        let mut seen = HashSet::new();
        keys.iter().filter(|k| !seen.insert(**k)).count() as f64 / keys.len() as f64
    });
    InputDrift {
        mean_tokens: mean(observations.iter().map(|o| f64::from(o.input.tokens))),
        token_length_psi: length_bins.as_ref().map(|(expected, observed)| stats::psi(expected, observed)),
        token_length_p: length_bins
            .as_ref()
            .map(|(expected, observed)| stats::chi_square_homogeneity(expected, observed).1),
        truncation_rate: rate(observations, |o| o.input.truncated),
        unknown_token_text_rate: rate(observations, |o| o.input.unknown_tokens > 0),
        empty_rate: rate(observations, |o| o.input.tokens <= SPECIAL_TOKENS),
        duplicate_rate,
        reference_truncation_rate: data.map(|d| d.truncation_rate),
        reference_unknown_token_text_rate: data.map(|d| d.unk_text_rate),
        reference_empty_rate: data.map(|d| d.near_empty.share),
        reference_duplicate_rate: data.map(|d| d.duplicate_rate),
    }
}

/// The training data's token-length histogram and the window's over the same
/// bins. The profile counts tokens before truncation and the log after it, so
/// every bin from the one holding `max_length` on is merged into one: both
/// sides then count min(tokens, max_length) alike. Neighbouring bins are then
/// merged until each holds a tenth of the training texts (PSI's usual ten
/// bins): with many thin bins, PSI of a few hundred texts is mostly noise.
fn token_length_bins(
    data: &kiln_core::profile::SplitProfile,
    max_length: usize,
    observations: &[Observation],
) -> (Vec<f64>, Vec<f64>) {
    let histogram = &data.tokens_histogram;
    let width = histogram.width.max(1.0);
    let cut = ((max_length as f64 / width) as usize).min(histogram.counts.len());
    let mut expected: Vec<f64> = histogram.counts[..cut].iter().map(|&c| c as f64).collect();
    expected.push((histogram.counts[cut..].iter().sum::<u64>() + histogram.overflow) as f64);
    let mut observed = vec![0.0; cut + 1];
    for observation in observations {
        let bin = ((f64::from(observation.input.tokens) / width) as usize).min(cut);
        observed[bin] += 1.0;
    }
    merge_to_deciles(&expected, &observed)
}

/// Merges runs of neighbouring bins so each merged bin holds at least a tenth
/// of `reference`'s total (a short remainder joins the last full bin).
fn merge_to_deciles(reference: &[f64], actual: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let floor = reference.iter().sum::<f64>() / 10.0;
    let (mut merged_reference, mut merged_actual) = (Vec::new(), Vec::new());
    let (mut r, mut a) = (0.0, 0.0);
    for (&reference, &actual) in reference.iter().zip(actual) {
        r += reference;
        a += actual;
        if r >= floor && r > 0.0 {
            merged_reference.push(r);
            merged_actual.push(a);
            (r, a) = (0.0, 0.0);
        }
    }
    match (merged_reference.last_mut(), merged_actual.last_mut()) {
        (Some(last_r), Some(last_a)) => {
            *last_r += r;
            *last_a += a;
        }
        _ => {
            merged_reference.push(r);
            merged_actual.push(a);
        }
    }
    (merged_reference, merged_actual)
}

fn realised_quality(
    observations: &[Observation],
    reference: Option<&ModelReference>,
    config: &MonitorConfig,
) -> RealisedQuality {
    let labelled: Vec<&Observation> = observations.iter().filter(|o| o.feedback.is_some()).collect();
    let delays = sorted(labelled.iter().filter_map(|o| o.feedback.as_ref()).map(|f| f.delay_s));
    let mut quality = RealisedQuality {
        with_feedback: labelled.len(),
        feedback_share: if observations.is_empty() { 0.0 } else { labelled.len() as f64 / observations.len() as f64 },
        delay_s_p50: (!delays.is_empty()).then(|| stats::quantile(&delays, 0.5)),
        delay_s_p90: (!delays.is_empty()).then(|| stats::quantile(&delays, 0.9)),
        ..RealisedQuality::default()
    };
    if labelled.is_empty() || labelled.iter().any(|o| o.entities.is_some()) {
        return quality;
    }
    // Label indices: the model's labels, then any feedback label it does not know.
    let mut labels: Vec<String> = reference.map(|r| r.labels.clone()).unwrap_or_default();
    let mut index_of = |label: &str| match labels.iter().position(|l| l == label) {
        Some(i) => i,
        None => {
            labels.push(label.to_owned());
            labels.len() - 1
        }
    };
    let pairs: Vec<(usize, usize)> = labelled
        .iter()
        .filter_map(|o| o.feedback.as_ref().and_then(|f| f.label()).map(|actual| (actual, o.label.as_str())))
        .map(|(actual, predicted)| (index_of(actual), index_of(predicted)))
        .collect();
    let confusion_of = |drawn: &mut dyn Iterator<Item = &(usize, usize)>| {
        let mut confusion = Confusion::new(labels.len());
        for &(actual, predicted) in drawn {
            confusion.add(actual, predicted);
        }
        confusion
    };
    let confusion = confusion_of(&mut pairs.iter());
    let correct = pairs.iter().filter(|(a, p)| a == p).count();
    quality.accuracy = Some(stats::wilson(correct, pairs.len(), config.confidence_level));
    // Macro-F1 as eval computes it (over the labels that occur, as truth or prediction).
    quality.macro_f1 = Some(stats::bootstrap(
        pairs.len(),
        config.bootstrap_resamples,
        config.confidence_level,
        config.seed,
        |drawn| confusion_of(&mut drawn.iter().map(|&i| &pairs[i])).macro_f1(),
    ));
    let present: Vec<usize> = (0..labels.len()).filter(|&c| pairs.iter().any(|&(a, _)| a == c)).collect();
    for &class in &present {
        let support = pairs.iter().filter(|&&(a, _)| a == class).count();
        let hits = pairs.iter().filter(|&&(a, p)| a == class && p == class).count();
        quality.recall.insert(
            labels[class].clone(),
            ClassRecall { support, recall: stats::wilson(hits, support, config.confidence_level) },
        );
    }
    debug_assert_eq!(confusion.total() as usize, pairs.len());
    quality
}

fn entity_drift(observations: &[Observation], reference: Option<&ModelReference>) -> EntityDrift {
    let profile = reference.and_then(|r| r.predictions.as_ref()).and_then(|p| p.entities.as_ref());
    let mut kinds: std::collections::BTreeSet<String> = reference
        .map(|r| r.labels.iter().filter_map(|tag| entity_type(tag)).map(str::to_owned).collect())
        .unwrap_or_default();
    kinds.extend(profile.iter().flat_map(|p| p.predicted.keys().cloned()));
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let (mut span_words, mut spans_read, mut scores) = (0usize, 0usize, Vec::new());
    let (mut tokens, mut unknown) = (0u64, 0u64);
    let mut without = 0;
    for observation in observations {
        tokens += u64::from(observation.input.tokens);
        unknown += u64::from(observation.input.unknown_tokens);
        let entities = observation.entities.as_deref().unwrap_or_default();
        without += usize::from(entities.is_empty());
        for entity in entities {
            *counts.entry(entity.entity_group.clone()).or_default() += 1.0;
            kinds.insert(entity.entity_group.clone());
            scores.extend(entity.score.map(f64::from));
            if let Some(words) = observation.text.as_deref().and_then(|t| words_in_span(t, entity.start, entity.end)) {
                span_words += words;
                spans_read += 1;
            }
        }
    }
    let texts = observations.len().max(1) as f64;
    let observed: Vec<f64> = kinds.iter().map(|k| counts.get(k).copied().unwrap_or(0.0)).collect();
    let mut drift = EntityDrift {
        entities_per_text: observed.iter().sum::<f64>() / texts,
        per_text: kinds.iter().zip(&observed).map(|(k, &c)| (k.clone(), c / texts)).collect(),
        texts_without_entities: without as f64 / texts,
        mean_span_words: (spans_read > 0).then(|| span_words as f64 / spans_read as f64),
        mean_score: (!scores.is_empty()).then(|| mean(scores.iter().copied())),
        unknown_token_share: if tokens == 0 { 0.0 } else { unknown as f64 / tokens as f64 },
        ..EntityDrift::default()
    };
    let Some(profile) = profile else { return drift };
    let sentences = profile.sentences.max(1) as f64;
    let expected: Vec<f64> = kinds.iter().map(|k| profile.predicted.get(k).copied().unwrap_or(0) as f64).collect();
    drift.reference_entities_per_text = Some(expected.iter().sum::<f64>() / sentences);
    drift.reference_per_text = kinds.iter().zip(&expected).map(|(k, &c)| (k.clone(), c / sentences)).collect();
    if observed.iter().sum::<f64>() > 0.0 && expected.iter().sum::<f64>() > 0.0 {
        drift.type_psi = Some(stats::psi(&expected, &observed));
        drift.type_chi_square_p = Some(stats::chi_square_homogeneity(&expected, &observed).1);
        drift.type_jensen_shannon = Some(stats::jensen_shannon(&expected, &observed));
    }
    drift.reference_mean_span_words = Some(profile.mean_span_words);
    drift.reference_mean_score = Some(profile.mean_score);
    if !scores.is_empty() && !profile.score_percentiles.is_empty() {
        let ks = stats::ks_statistic(&scores, &profile.score_percentiles);
        let reference_entities = profile.predicted.values().sum();
        drift.score_ks = Some(ks);
        drift.score_ks_p = Some(stats::ks_p_value(ks, scores.len(), reference_entities));
    }
    drift
}

/// An entity as (type, start, end), as [`EntityCounts`] matches them.
fn span_of(entity: &kiln_core::prediction_log::LoggedEntity) -> (&str, usize, usize) {
    (entity.entity_group.as_str(), entity.start, entity.end)
}

/// Entity F1 on the texts with span feedback, each text's entities counted
/// once so the bootstrap resamples texts.
fn entity_quality(observations: &[Observation], config: &MonitorConfig) -> Option<EntityQuality> {
    let texts: Vec<EntityCounts> = observations
        .iter()
        .filter_map(|o| {
            let truth = o.feedback.as_ref()?.entities()?;
            let predicted = o.entities.as_deref().unwrap_or_default();
            Some(EntityCounts::of_spans(truth.iter().map(span_of), predicted.iter().map(span_of)))
        })
        .collect();
    if texts.is_empty() {
        return None;
    }
    let all = EntityCounts::sum(&texts);
    let interval = |f1: fn(&EntityCounts) -> f64| {
        stats::bootstrap(texts.len(), config.bootstrap_resamples, config.confidence_level, config.seed, |drawn| {
            f1(&EntityCounts::sum(drawn.iter().map(|&i| &texts[i])))
        })
    };
    let recall = all
        .kinds()
        .filter_map(|kind| {
            let scores = all.scores(kind);
            let support = scores.support as usize;
            let hits = all.found(kind);
            (support > 0).then(|| {
                (
                    kind.to_owned(),
                    ClassRecall { support, recall: stats::wilson(hits, support, config.confidence_level) },
                )
            })
        })
        .collect();
    Some(EntityQuality {
        micro_f1: interval(|c| c.micro().f1),
        macro_f1: interval(|c| c.macro_avg().f1),
        recall,
        true_entities: all.support(),
        predicted_entities: all.predicted(),
    })
}

fn estimated_quality(observations: &[Observation]) -> EstimatedQuality {
    let expected = |o: &Observation| o.calibrated_score.unwrap_or(o.score);
    let without: Vec<f64> = observations.iter().filter(|o| o.feedback.is_none()).map(expected).collect();
    let with: Vec<f64> = observations.iter().filter(|o| o.feedback.is_some()).map(expected).collect();
    EstimatedQuality {
        accuracy: mean(observations.iter().map(expected)),
        accuracy_without_feedback: (!without.is_empty()).then(|| mean(without.into_iter())),
        accuracy_on_feedback: (!with.is_empty()).then(|| mean(with.into_iter())),
        calibrated: !observations.is_empty() && observations.iter().all(|o| o.calibrated_score.is_some()),
    }
}

/// `alert` from `alert`, `warn` from `warn`, else nothing.
fn bands(value: f64, warn: f64, alert: f64) -> Option<Status> {
    if value >= alert {
        Some(Status::Alert)
    } else if value >= warn {
        Some(Status::Warn)
    } else {
        None
    }
}

/// A realised quality `drop` below the reference: an alert only when the
/// interval too lies below it (`interval_below`), not a fluke of few labels.
fn quality_drop(drop: f64, interval_below: bool, config: &MonitorConfig) -> Option<Status> {
    if drop >= config.accuracy_drop_alert && interval_below {
        Some(Status::Alert)
    } else if drop >= config.accuracy_drop_warn {
        Some(Status::Warn)
    } else {
        None
    }
}

fn finding(status: Status, check: &str, message: String) -> Finding {
    Finding { status, check: check.to_owned(), message }
}

/// Which thresholds the window's figures crossed.
fn judge(report: &WindowReport, reference: Option<&ModelReference>, config: &MonitorConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let ops = &report.operations;
    if ops.error_share >= config.error_share_alert || ops.error_share >= config.error_share_warn {
        let status = if ops.error_share >= config.error_share_alert { Status::Alert } else { Status::Warn };
        findings.push(finding(
            status,
            "operations",
            format!(
                "{:.1}% of prediction requests failed on the server ({} of {})",
                100.0 * ops.error_share,
                ops.server_errors,
                ops.requests + ops.server_errors + ops.client_errors
            ),
        ));
    }
    if ops.requests > 0 && ops.latency_ms_p95 >= config.latency_p95_warn_ms {
        findings.push(finding(
            Status::Warn,
            "operations",
            format!("latency p95 {:.0} ms (warn at {:.0} ms)", ops.latency_ms_p95, config.latency_p95_warn_ms),
        ));
    }
    if !report.judged {
        // Too few predictions for drift or quality to mean anything.
        return findings;
    }
    if let Some(drift) = &report.prediction_drift
        && drift.chi_square_p < config.p_value
        && let Some(status) = bands(drift.psi, config.psi_warn, config.psi_alert)
    {
        findings.push(finding(
            status,
            "prediction_drift",
            format!(
                "predicted labels moved: PSI {:.3}, Jensen-Shannon {:.3}, chi-square p {:.2e}",
                drift.psi, drift.jensen_shannon, drift.chi_square_p
            ),
        ));
    }
    if let Some(confidence) = &report.confidence {
        if confidence.ks_p < config.p_value
            && let Some(status) = bands(confidence.ks, config.ks_warn, config.ks_alert)
        {
            findings.push(finding(
                status,
                "confidence_drift",
                format!(
                    "top probability's distribution moved: KS {:.3} (p {:.2e}), Wasserstein {:.3}",
                    confidence.ks, confidence.ks_p, confidence.wasserstein
                ),
            ));
        }
        let drop = confidence.reference_mean_top - confidence.mean_top;
        if drop >= config.confidence_drop_warn {
            findings.push(finding(
                Status::Warn,
                "confidence_drift",
                format!("mean top probability {:.3}, {:.3} under the reference's", confidence.mean_top, drop),
            ));
        }
    }
    let input = &report.input;
    if let (Some(psi), Some(p)) = (input.token_length_psi, input.token_length_p)
        && p < config.p_value
        && let Some(status) = bands(psi, config.psi_warn, config.psi_alert)
    {
        findings.push(finding(
            status,
            "input_drift",
            format!("text lengths moved: token-length PSI {psi:.3} (chi-square p {p:.2e})"),
        ));
    }
    for (what, now, then) in [
        ("truncated texts", input.truncation_rate, input.reference_truncation_rate),
        ("texts with unknown tokens", input.unknown_token_text_rate, input.reference_unknown_token_text_rate),
        ("empty texts", input.empty_rate, input.reference_empty_rate),
    ] {
        if let Some(then) = then
            && now - then >= config.rate_increase_warn
        {
            findings.push(finding(
                Status::Warn,
                "input_drift",
                format!("{what}: {:.1}%, up from {:.1}% in training", 100.0 * now, 100.0 * then),
            ));
        }
    }
    if let Some(entities) = &report.entities {
        judge_entities(report, entities, reference, config, &mut findings);
        return findings;
    }
    let Some(expected) = reference.and_then(|r| r.predictions.as_ref()).map(|p| p.accuracy) else {
        return findings;
    };
    if report.quality.with_feedback >= config.min_feedback
        && let Some(accuracy) = report.quality.accuracy
    {
        let drop = expected - accuracy.value;
        if let Some(status) = quality_drop(drop, accuracy.high < expected, config) {
            findings.push(finding(
                status,
                "quality",
                format!(
                    "accuracy on {} predictions with feedback {:.3} [{:.3}, {:.3}], reference {:.3} (feedback is not a random sample)",
                    report.quality.with_feedback, accuracy.value, accuracy.low, accuracy.high, expected
                ),
            ));
        }
    }
    let estimated = report.estimated.accuracy;
    if let Some(status) = bands(expected - estimated, config.accuracy_drop_warn, config.accuracy_drop_alert) {
        findings.push(finding(
            status,
            "estimated_quality",
            format!("estimated accuracy {estimated:.3} from confidence, reference {expected:.3}"),
        ));
    }
    findings
}

/// A tagger's drift and quality thresholds: the entity types' mix (as
/// predicted labels for a classifier), the entity scores' distribution (as
/// the top probability's), and the realised entity micro-F1 against the
/// reference split's (as accuracy).
fn judge_entities(
    report: &WindowReport,
    entities: &EntityDrift,
    reference: Option<&ModelReference>,
    config: &MonitorConfig,
    findings: &mut Vec<Finding>,
) {
    if let (Some(psi), Some(p)) = (entities.type_psi, entities.type_chi_square_p)
        && p < config.p_value
        && let Some(status) = bands(psi, config.psi_warn, config.psi_alert)
    {
        let moved: Vec<String> = entities
            .per_text
            .iter()
            .map(|(kind, now)| {
                let then = entities.reference_per_text.get(kind).copied().unwrap_or(0.0);
                format!("{kind} {then:.2} -> {now:.2}")
            })
            .collect();
        findings.push(finding(
            status,
            "prediction_drift",
            format!(
                "entity types moved: PSI {psi:.3}, Jensen-Shannon {:.3}, chi-square p {p:.2e} (per text: {})",
                entities.type_jensen_shannon.unwrap_or(0.0),
                moved.join(", ")
            ),
        ));
    }
    if let (Some(ks), Some(p)) = (entities.score_ks, entities.score_ks_p)
        && p < config.p_value
        && let Some(status) = bands(ks, config.ks_warn, config.ks_alert)
    {
        findings.push(finding(
            status,
            "confidence_drift",
            format!("entity scores' distribution moved: KS {ks:.3} (p {p:.2e})"),
        ));
    }
    let expected = reference.and_then(|r| r.predictions.as_ref()).and_then(|p| p.entities.as_ref()).map(|e| e.micro_f1);
    if let (Some(expected), Some(quality)) = (expected, &report.quality.entities)
        && report.quality.with_feedback >= config.min_feedback
    {
        let f1 = quality.micro_f1;
        let drop = expected - f1.value;
        if let Some(status) = quality_drop(drop, f1.high < expected, config) {
            findings.push(finding(
                status,
                "quality",
                format!(
                    "entity micro-F1 on {} texts with feedback {:.3} [{:.3}, {:.3}], reference {expected:.3} \
                     (feedback is not a random sample)",
                    report.quality.with_feedback, f1.value, f1.low, f1.high
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_bins_merge_into_tenths_of_the_reference() {
        let reference = [5.0, 5.0, 30.0, 10.0, 20.0, 25.0, 3.0, 2.0];
        let actual = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let (r, a) = merge_to_deciles(&reference, &actual);
        assert_eq!(r, [10.0, 30.0, 10.0, 20.0, 30.0]);
        assert_eq!(a, [2.0, 1.0, 1.0, 1.0, 3.0]);
        assert_eq!(r.iter().sum::<f64>(), 100.0);
    }
}

//! `profile`: what the data looks like, as `profile.json`, SVG plots and
//! `report.md`. Reads a folder of splits (raw, cleaned or tokenized) or one
//! file `ingest` can read. Token counts come from the model's tokenizer without
//! truncation, so the truncation rate says what `tokenize` will cut.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use kiln_config::ProfileConfig;
use kiln_core::calibration::log_odds_z;
use kiln_core::entities::{Mode, spans};
use kiln_core::profile::{DataProfile, Histogram, LengthStats, OddText, OddTexts, SplitProfile, TokenCount};
use kiln_core::{FileHash, LabelMap, Manifest, Progress, Split, StagedOutput};
use kiln_plots::{BarRow, HistogramSeries, histograms_svg, horizontal_bars_svg};
use kiln_text::load_tokenizer;
use tokenizers::Tokenizer;

use crate::parquet::read_parquet;
use crate::processed::examples_from_batch;
use crate::read::{ColumnMap, LabelSource, ReadOptions, read_records};
use crate::schema::{self, TaggedTable, TextTable};
use crate::tokenize::encode_each;

/// The manifest, written last.
pub const MANIFEST: &str = kiln_core::stages::PROFILE_DONE;
pub const PROFILE: &str = kiln_core::profile::DataProfile::FILE;
pub const REPORT: &str = kiln_core::stages::REPORT;
/// For `dvc plots`: token-length histograms and label counts, by split.
pub const PLOT_LENGTHS: &str = "plot_token_lengths.csv";
pub const PLOT_LABELS: &str = "plot_labels.csv";

/// Label of the rows of an unlabelled file, in per-label tables.
const UNLABELLED: &str = "(unlabelled)";
/// Characters of an odd text shown in the report.
const SHOWN_CHARS: usize = 120;

/// Rows as the profile sees them, whatever was read.
struct Rows {
    name: String,
    ids: Vec<String>,
    /// `None` for tokenized tables, which keep no text.
    texts: Option<Vec<String>>,
    /// Empty strings for unlabelled rows.
    labels: Vec<String>,
    /// Token ids before truncation (or as stored, for tokenized tables).
    tokens: Vec<Vec<u32>>,
    /// Characters per text, counted once; `None` without texts.
    chars: Option<Vec<u32>>,
    /// Entities per type, for tagged sentences.
    entities: Option<BTreeMap<String, usize>>,
}

impl Rows {
    fn text(name: String, ids: Vec<String>, texts: Vec<String>, labels: Vec<String>) -> Self {
        let chars = texts.iter().map(|text| text.chars().count() as u32).collect();
        Self { name, ids, texts: Some(texts), labels, tokens: Vec::new(), chars: Some(chars), entities: None }
    }

    /// Tagged sentences, profiled as their words joined by spaces (what a
    /// served text looks like), with their entities counted by type.
    fn tagged(name: String, table: TaggedTable) -> Self {
        let mut entities: BTreeMap<String, usize> = BTreeMap::new();
        for tags in &table.tags {
            for span in spans(tags, Mode::Conlleval) {
                *entities.entry(span.kind).or_default() += 1;
            }
        }
        let texts: Vec<String> = table.tokens.iter().map(|words| words.join(" ")).collect();
        let labels = vec![String::new(); texts.len()];
        Self { entities: Some(entities), ..Self::text(name, table.ids, texts, labels) }
    }
}

/// Profiles `config`'s input (settings left to `[tokenize]` already resolved).
pub fn run(config: &ProfileConfig, progress: &Progress) -> Result<DataProfile> {
    config.validate()?;
    let model_dir = config.model_dir.as_deref().context("profile.model_dir is unresolved. This is a bug.")?;
    let max_length = config.max_length.context("profile.max_length is unresolved. This is a bug.")?;
    let mut tokenizer = load_tokenizer(model_dir, max_length)?;
    tokenizer.with_truncation(None).map_err(|e| anyhow::anyhow!("cannot turn truncation off: {e}"))?;
    let mut staged = StagedOutput::new(&config.output_dir)?;

    let (source, kind, mut tables, inputs) = read_input(config, progress)?;
    for table in &mut tables {
        if table.texts.is_some() {
            tokenize(table, &tokenizer, progress)?;
        }
    }
    let vocabulary = Vocabulary::of(&tokenizer);
    let chars_width = bin_width(char_p99(&tables), config.histogram_bins);
    let tokens_width = bin_width(max_length as u32, config.histogram_bins);
    let splits = tables
        .iter()
        .map(|table| {
            let profile = profile_rows(table, config, max_length, &vocabulary, (chars_width, tokens_width));
            (table.name.clone(), profile)
        })
        .collect();
    let profile =
        DataProfile { source, kind: kind.to_owned(), tokenizer: model_dir.display().to_string(), max_length, splits };

    staged.write_json(PROFILE, &profile)?;
    draw(&mut staged, &profile)?;
    staged.write_bytes(PLOT_LENGTHS, plot_lengths_csv(&profile).as_bytes())?;
    staged.write_bytes(PLOT_LABELS, plot_labels_csv(&profile).as_bytes())?;
    staged.write_bytes(REPORT, report(&profile).as_bytes())?;
    let rows: BTreeMap<&String, usize> = profile.splits.iter().map(|(name, s)| (name, s.rows)).collect();
    let mut manifest = Manifest::new("profile", config, &rows);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(profile)
}

fn read_input(config: &ProfileConfig, progress: &Progress) -> Result<(String, &'static str, Vec<Rows>, Vec<FileHash>)> {
    if let Some(file) = &config.input_file {
        let options = ReadOptions { format: config.format, has_header: config.has_header, quoting: config.quoting };
        let name = file.file_name().map_or_else(|| "input".into(), |n| n.to_string_lossy().into_owned());
        let columns = ColumnMap {
            text: &config.text_column,
            label: config.label_column.as_deref().map_or(LabelSource::None, LabelSource::Column),
            id: None,
            id_prefix: "row",
        };
        let records = read_records(file, &options, &columns, progress)?;
        let rows = Rows::text(name, records.ids, records.texts, records.labels);
        return Ok((file.display().to_string(), "text", vec![rows], vec![FileHash::of(file)?]));
    }
    let dir = &config.input_dir;
    let mut tables = Vec::new();
    let mut inputs = Vec::new();
    let mut kind = "text";
    let mut labels: Option<LabelMap> = None;
    for split in Split::ALL {
        let path = split.path_in(dir);
        let batch = read_parquet(&path, "clean")?;
        inputs.push(FileHash::of(&path)?);
        let name = split.name().to_owned();
        if batch.column_by_name(schema::TEXT).is_some() {
            let table = TextTable::from_batch(&batch, &path)?;
            tables.push(Rows::text(name, table.ids, table.texts, table.labels));
        } else if batch.column_by_name(schema::TAGS).is_some() {
            kind = "tagged";
            tables.push(Rows::tagged(name, TaggedTable::from_batch(&batch, &path)?));
        } else if batch.column_by_name(schema::INPUT_IDS).is_some() {
            kind = "processed";
            let labels = match &mut labels {
                Some(labels) => labels,
                None => labels
                    .insert(LabelMap::load(&dir.join(kiln_core::model_folder::LABELS)).with_context(|| {
                        format!("{} is tokenized: its labels.json names the labels", dir.display())
                    })?),
            };
            let examples = examples_from_batch(&batch, &path)?;
            let name_of = |id: u32| labels.labels().get(id as usize).cloned().unwrap_or_else(|| format!("#{id}"));
            tables.push(Rows {
                name,
                labels: examples.iter().map(|e| name_of(e.label_id)).collect(),
                ids: examples.iter().map(|e| e.id.clone()).collect(),
                texts: None,
                tokens: examples.into_iter().map(|e| e.input_ids).collect(),
                chars: None,
                entities: None,
            });
        } else {
            anyhow::bail!(
                "{}: neither a text table (columns {}, {}, {}), a tagged one ({}, {}) nor a tokenized one (column {})",
                path.display(),
                schema::ID,
                schema::TEXT,
                schema::LABEL,
                schema::TOKENS,
                schema::TAGS,
                schema::INPUT_IDS
            );
        }
    }
    Ok((dir.display().to_string(), kind, tables, inputs))
}

fn tokenize(table: &mut Rows, tokenizer: &Tokenizer, progress: &Progress) -> Result<()> {
    let texts = table.texts.as_deref().unwrap_or_default();
    let mut tokens = Vec::with_capacity(texts.len());
    encode_each(tokenizer, texts, progress, &table.name, &table.name, |e| tokens.push(e.get_ids().to_vec()))?;
    table.tokens = tokens;
    Ok(())
}

/// What the profile needs to know of the tokenizer's vocabulary.
struct Vocabulary {
    unknown: Option<u32>,
    special: HashSet<u32>,
    names: HashMap<u32, String>,
}

impl Vocabulary {
    fn of(tokenizer: &Tokenizer) -> Self {
        let unknown = kiln_text::unknown_token_id(tokenizer);
        let special =
            tokenizer.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect();
        let names = tokenizer.get_vocab(true).into_iter().map(|(token, id)| (id, token)).collect();
        Self { unknown, special, names }
    }

    /// Tokens worth listing: no special tokens, word continuations or punctuation.
    fn is_word(&self, id: u32) -> bool {
        !self.special.contains(&id)
            && self.names.get(&id).is_some_and(|t| !t.starts_with("##") && t.chars().any(char::is_alphanumeric))
    }

    fn name(&self, id: u32) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
    }
}

fn char_p99(tables: &[Rows]) -> u32 {
    let mut lengths: Vec<u32> = tables.iter().flat_map(|t| t.chars.iter().flatten().copied()).collect();
    lengths.sort_unstable();
    if lengths.is_empty() { 1 } else { kiln_core::profile::nearest_rank(&lengths, 0.99) }
}

/// Equal bins from 0 that reach `end`.
fn bin_width(end: u32, bins: usize) -> f64 {
    (f64::from(end.max(1)) / bins as f64).ceil()
}

fn profile_rows(
    table: &Rows,
    config: &ProfileConfig,
    max_length: usize,
    vocabulary: &Vocabulary,
    (chars_width, tokens_width): (f64, f64),
) -> SplitProfile {
    let rows = table.ids.len();
    let share = |count: usize| if rows == 0 { 0.0 } else { count as f64 / rows as f64 };
    let label_of = |row: usize| match table.labels[row].as_str() {
        "" => UNLABELLED,
        label => label,
    };
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    for row in 0..rows {
        *labels.entry(label_of(row).to_owned()).or_default() += 1;
    }
    let labelled = !labels.contains_key(UNLABELLED);
    let imbalance_ratio = match (labels.values().max(), labels.values().min()) {
        (Some(&most), Some(&least)) if labelled && least > 0 => Some(most as f64 / least as f64),
        _ => None,
    };

    let token_lengths: Vec<u32> = table.tokens.iter().map(|t| t.len() as u32).collect();
    // Tokenized tables were cut already: a text cut shows as exactly max_length tokens.
    let cut = |n: usize| if table.texts.is_some() { n > max_length } else { n >= max_length };
    let truncated = token_lengths.iter().filter(|&&n| cut(n as usize)).count();
    let total_tokens: usize = token_lengths.iter().map(|&n| n as usize).sum();
    let (unk_tokens, unk_texts) = match vocabulary.unknown {
        Some(unk) => table.tokens.iter().fold((0, 0), |(tokens, texts), row| {
            let here = row.iter().filter(|&&id| id == unk).count();
            (tokens + here, texts + usize::from(here > 0))
        }),
        None => (0, 0),
    };
    let duplicates = match &table.texts {
        Some(texts) => count_repeats(texts.iter()),
        None => count_repeats(table.tokens.iter()),
    };

    let mut by_label: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (row, &length) in token_lengths.iter().enumerate() {
        let entry = by_label.entry(label_of(row)).or_default();
        entry.0 += length as usize;
        entry.1 += 1;
    }
    let mean_tokens_by_label =
        by_label.into_iter().map(|(label, (sum, n))| (label.to_owned(), sum as f64 / n.max(1) as f64)).collect();
    let (top_tokens, distinctive_tokens) = token_tables(table, &label_of, vocabulary, config.top_tokens);

    let mut profile = SplitProfile {
        rows,
        labels,
        imbalance_ratio,
        tokens: LengthStats::of(&token_lengths),
        tokens_histogram: Histogram::of(&token_lengths, config.histogram_bins, tokens_width),
        truncated,
        truncation_rate: share(truncated),
        unk_token_rate: if total_tokens == 0 { 0.0 } else { unk_tokens as f64 / total_tokens as f64 },
        unk_text_rate: share(unk_texts),
        duplicates,
        duplicate_rate: share(duplicates),
        mean_tokens_by_label,
        top_tokens,
        distinctive_tokens,
        entities: table.entities.clone(),
        ..SplitProfile::default()
    };
    if let (Some(texts), Some(char_lengths)) = (&table.texts, &table.chars) {
        profile.chars = Some(LengthStats::of(char_lengths));
        profile.chars_histogram = Some(Histogram::of(char_lengths, config.histogram_bins, chars_width));
        let flag = |test: &dyn Fn(usize) -> bool| odd_texts(&table.ids, texts, config.examples, test);
        let near_empty =
            |row: usize| texts[row].chars().filter(|c| !c.is_whitespace()).count() < config.near_empty_chars;
        profile.near_empty = flag(&near_empty);
        profile.non_printing = flag(&|row| texts[row].chars().any(is_non_printing));
        profile.very_long = flag(&|row| char_lengths[row] as usize > config.long_chars);
        profile.mostly_punctuation = flag(&|row| is_mostly_punctuation(&texts[row], config.punctuation_share));
    }
    profile
}

/// Rows equal to an earlier row.
fn count_repeats<T: std::hash::Hash + Eq + Copy>(values: impl Iterator<Item = T>) -> usize {
    let mut seen = HashSet::new();
    values.filter(|value| !seen.insert(*value)).count()
}

/// Control characters (other than tab and line breaks), zero-width and
/// byte-order marks, and U+FFFD, the mark of a decoding error.
fn is_non_printing(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{fffd}')
}

fn is_mostly_punctuation(text: &str, share: f64) -> bool {
    let (mut visible, mut other) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        visible += 1;
        other += usize::from(!c.is_alphanumeric());
    }
    visible > 0 && other as f64 >= share * visible as f64
}

/// The rows `test` flags, by row number.
fn odd_texts(ids: &[String], texts: &[String], examples: usize, test: &dyn Fn(usize) -> bool) -> OddTexts {
    let mut odd = OddTexts::default();
    for (row, (id, text)) in ids.iter().zip(texts).enumerate() {
        if test(row) {
            odd.count += 1;
            if odd.examples.len() < examples {
                odd.examples.push(OddText { id: id.clone(), text: shown(text) });
            }
        }
    }
    odd.share = if texts.is_empty() { 0.0 } else { odd.count as f64 / texts.len() as f64 };
    odd
}

/// The start of a text, with invisible characters written as escapes.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(SHOWN_CHARS) {
        if is_non_printing(c) || c == '\n' || c == '\t' || c == '\r' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if text.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    out
}

type TokenTable = BTreeMap<String, Vec<TokenCount>>;

/// Each label's most frequent words, and its most over-represented ones by
/// the z-score of their weighted log-odds against the other labels (so words
/// every label uses, "the" or "film", drop out).
fn token_tables<'a>(
    table: &'a Rows,
    label_of: &dyn Fn(usize) -> &'a str,
    vocabulary: &Vocabulary,
    top: usize,
) -> (TokenTable, TokenTable) {
    let mut overall: HashMap<u32, u64> = HashMap::new();
    let mut per_label: BTreeMap<&str, HashMap<u32, u64>> = BTreeMap::new();
    for (row, tokens) in table.tokens.iter().enumerate() {
        let counts = per_label.entry(label_of(row)).or_default();
        for &id in tokens.iter().filter(|&&id| vocabulary.is_word(id)) {
            *counts.entry(id).or_default() += 1;
            *overall.entry(id).or_default() += 1;
        }
    }
    let overall_total = overall.values().sum::<u64>() as f64;
    let several_labels = per_label.len() > 1;
    let mut frequent = TokenTable::new();
    let mut distinctive = TokenTable::new();
    for (label, counts) in per_label {
        let label_total = counts.values().sum::<u64>() as f64;
        let mut scored: Vec<TokenCount> = counts
            .iter()
            .map(|(&id, &count)| {
                let (count_f, all) = (count as f64, overall[&id] as f64);
                TokenCount {
                    token: vocabulary.name(id),
                    count,
                    lift: (count_f / label_total) / (all / overall_total),
                    z: log_odds_z(count_f, label_total, all - count_f, overall_total - label_total, all, overall_total),
                }
            })
            .collect();
        scored.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.token.cmp(&b.token)));
        frequent.insert(label.to_owned(), scored.iter().take(top).cloned().collect());
        if several_labels {
            let mut over: Vec<TokenCount> = scored.into_iter().filter(|t| t.z > 1.96).collect();
            over.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.token.cmp(&b.token)));
            over.truncate(top);
            distinctive.insert(label.to_owned(), over);
        }
    }
    (frequent, distinctive)
}

fn draw(staged: &mut StagedOutput, profile: &DataProfile) -> Result<()> {
    let names: Vec<String> = profile.splits.keys().cloned().collect();
    let rows: Vec<BarRow> = all_labels(profile)
        .into_iter()
        .map(|label| BarRow {
            label: label.clone(),
            values: profile
                .splits
                .values()
                .map(|s| s.labels.get(label).copied().unwrap_or(0) as f64 / s.rows.max(1) as f64)
                .collect(),
        })
        .collect();
    let path = staged.stage(kiln_plots::CLASS_BALANCE_SVG);
    horizontal_bars_svg("Class balance (share of each split's rows)", &names, &rows, percent, &path)?;

    let series = |pick: &dyn Fn(&SplitProfile) -> Option<&Histogram>| -> Vec<HistogramSeries<'_>> {
        profile
            .splits
            .iter()
            .filter_map(|(name, s)| {
                pick(s).map(|h| HistogramSeries {
                    name: name.clone(),
                    width: h.width,
                    counts: &h.counts,
                    overflow: h.overflow,
                })
            })
            .collect()
    };
    let path = staged.stage(kiln_plots::TOKEN_LENGTHS_SVG);
    let title = format!("Tokens per text (truncated past {})", profile.max_length);
    histograms_svg(&title, "tokens", &series(&|s| Some(&s.tokens_histogram)), &path)?;
    let chars = series(&|s| s.chars_histogram.as_ref());
    if !chars.is_empty() {
        let path = staged.stage(kiln_plots::CHAR_LENGTHS_SVG);
        histograms_svg("Characters per text", "characters", &chars, &path)?;
    }
    let reference = profile.splits.get_key_value(Split::Train.name()).or_else(|| profile.splits.iter().next());
    if let Some((reference_name, reference)) = reference {
        let mut rows: Vec<BarRow> = reference
            .mean_tokens_by_label
            .iter()
            .map(|(label, &mean)| BarRow { label: label.clone(), values: vec![mean] })
            .collect();
        rows.sort_by(|a, b| b.values[0].total_cmp(&a.values[0]));
        let path = staged.stage(kiln_plots::TOKENS_PER_LABEL_SVG);
        horizontal_bars_svg(
            "Mean tokens per text, by label",
            std::slice::from_ref(reference_name),
            &rows,
            |v| format!("{v:.1}"),
            &path,
        )?;
    }
    Ok(())
}

/// Every label of any split, sorted.
fn all_labels(profile: &DataProfile) -> BTreeSet<&String> {
    profile.splits.values().flat_map(|s| s.labels.keys()).collect()
}

fn percent(value: f64) -> String {
    format!("{:.1}%", 100.0 * value)
}

/// One row per bin, one column per split: what `dvc plots` draws as lines.
fn plot_lengths_csv(profile: &DataProfile) -> String {
    let names: Vec<String> = profile.splits.keys().map(|n| csv_field(n)).collect();
    let mut out = format!("tokens,{}\n", names.join(","));
    let Some(first) = profile.splits.values().next() else { return out };
    for (bin, edge) in first.tokens_histogram.edges().enumerate() {
        let shares: Vec<String> = profile
            .splits
            .values()
            .map(|s| {
                let count = s.tokens_histogram.counts.get(bin).copied().unwrap_or(0);
                format!("{:.6}", count as f64 / s.tokens_histogram.total().max(1) as f64)
            })
            .collect();
        let _ = writeln!(out, "{edge},{}", shares.join(","));
    }
    out
}

/// One row per label, its rows in each split.
fn plot_labels_csv(profile: &DataProfile) -> String {
    let names: Vec<String> = profile.splits.keys().map(|n| csv_field(n)).collect();
    let mut out = format!("label,{}\n", names.join(","));
    for label in all_labels(profile) {
        let rows: Vec<String> =
            profile.splits.values().map(|s| s.labels.get(label).copied().unwrap_or(0).to_string()).collect();
        let _ = writeln!(out, "{},{}", csv_field(label), rows.join(","));
    }
    out
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.to_owned() }
}

/// Markdown table cells: pipes and line breaks would break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn report(profile: &DataProfile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Data profile\n\n`{}` ({} rows), tokenizer `{}`, max_length {}.\n",
        profile.source, profile.kind, profile.tokenizer, profile.max_length
    );
    let _ = writeln!(out, "| | {} |", profile.splits.keys().map(|n| cell(n)).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(profile.splits.len()));
    let row = |out: &mut String, name: &str, value: &dyn Fn(&SplitProfile) -> String| {
        let values: Vec<String> = profile.splits.values().map(value).collect();
        let _ = writeln!(out, "| {name} | {} |", values.join(" | "));
    };
    let optional = |value: Option<String>| value.unwrap_or_else(|| "n/a".into());
    row(&mut out, "rows", &|s| s.rows.to_string());
    row(&mut out, "labels", &|s| s.labels.len().to_string());
    row(&mut out, "imbalance (largest / smallest label)", &|s| optional(s.imbalance_ratio.map(|r| format!("{r:.2}"))));
    row(&mut out, "characters: mean / p50 / p99 / max", &|s| {
        optional(s.chars.as_ref().map(|c| format!("{:.1} / {} / {} / {}", c.mean, c.p50, c.p99, c.max)))
    });
    row(&mut out, "tokens: mean / p50 / p99 / max", &|s| {
        format!("{:.1} / {} / {} / {}", s.tokens.mean, s.tokens.p50, s.tokens.p99, s.tokens.max)
    });
    row(&mut out, "truncated", &|s| format!("{} ({})", s.truncated, percent(s.truncation_rate)));
    row(&mut out, "[UNK] share of tokens / of texts", &|s| {
        format!("{} / {}", percent(s.unk_token_rate), percent(s.unk_text_rate))
    });
    row(&mut out, "duplicate texts", &|s| format!("{} ({})", s.duplicates, percent(s.duplicate_rate)));
    if profile.splits.values().any(|s| s.entities.is_some()) {
        row(&mut out, "entities by type", &|s| {
            let counts = s.entities.iter().flatten().map(|(kind, n)| format!("{} {n}", cell(kind)));
            counts.collect::<Vec<_>>().join(", ")
        });
    }
    let texts = |odd: fn(&SplitProfile) -> &OddTexts| {
        move |s: &SplitProfile| match s.chars {
            Some(_) => format!("{} ({})", odd(s).count, percent(odd(s).share)),
            None => "n/a".into(),
        }
    };
    row(&mut out, "near-empty", &texts(|s| &s.near_empty));
    row(&mut out, "non-printing characters", &texts(|s| &s.non_printing));
    row(&mut out, "very long", &texts(|s| &s.very_long));
    row(&mut out, "mostly punctuation", &texts(|s| &s.mostly_punctuation));
    if profile.kind == "processed" {
        out.push_str(
            "\nTokenized tables keep no text: character lengths and odd texts need the cleaned folder, and a text cut \
             at max_length shows as exactly max_length tokens.\n",
        );
    }
    out.push_str("\n![class balance](class_balance.svg)\n![token lengths](token_lengths.svg)\n");
    if profile.splits.values().any(|s| s.chars.is_some()) {
        out.push_str("![character lengths](char_lengths.svg)\n");
    }
    out.push_str("![tokens per label](tokens_per_label.svg)\n");

    for (name, split) in &profile.splits {
        let _ = writeln!(
            out,
            "\n## {name}\n\n| label | rows | share | mean tokens | most frequent words | most distinctive words |\n|---|---|---|---|---|---|"
        );
        for (label, &count) in &split.labels {
            let words = |table: &TokenTable| {
                table.get(label).map_or_else(String::new, |tokens| {
                    tokens.iter().map(|t| cell(&t.token)).collect::<Vec<_>>().join(", ")
                })
            };
            let _ = writeln!(
                out,
                "| {} | {count} | {} | {:.1} | {} | {} |",
                cell(label),
                percent(count as f64 / split.rows.max(1) as f64),
                split.mean_tokens_by_label.get(label).copied().unwrap_or(0.0),
                words(&split.top_tokens),
                words(&split.distinctive_tokens),
            );
        }
        for (kind, odd) in [
            ("Near-empty", &split.near_empty),
            ("Non-printing characters", &split.non_printing),
            ("Very long", &split.very_long),
            ("Mostly punctuation", &split.mostly_punctuation),
        ] {
            if !odd.examples.is_empty() {
                let _ = writeln!(out, "\n{kind} ({} of {}):\n", odd.count, split.rows);
                for example in &odd.examples {
                    let _ = writeln!(out, "- `{}`: {}", cell(&example.id), cell(&example.text));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_text_rules() {
        assert!(is_non_printing('\u{0007}') && is_non_printing('\u{200b}') && is_non_printing('\u{fffd}'));
        assert!(!is_non_printing('\n') && !is_non_printing('é'));
        assert!(is_mostly_punctuation("!!! ??", 0.5) && is_mostly_punctuation(":-) ok", 0.5));
        assert!(!is_mostly_punctuation("great film!", 0.5) && !is_mostly_punctuation("   ", 0.5));
        assert_eq!(shown("a\u{0}b\nc"), "a\\u{0}b\\u{a}c");
        assert_eq!(shown(&"x".repeat(200)).chars().count(), SHOWN_CHARS + 1);
        assert_eq!(count_repeats(["a", "b", "a", "a"].iter()), 2);
    }

    #[test]
    fn bins_reach_the_end() {
        assert_eq!(bin_width(128, 32), 4.0);
        assert_eq!(bin_width(100, 32), 4.0);
        assert_eq!(bin_width(0, 8), 1.0);
    }
}

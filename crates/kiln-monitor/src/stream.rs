//! The prediction log as a stream in time order, so `monitor`'s memory does
//! not grow with the log: what it holds is the feedback and the failed
//! requests (one small record each), one open window per model version, and
//! a bounded sample of each version's predictions for its overall figures.
//!
//! Files are named by the time they were opened, and each holds its writer's
//! records in about time order; replicas write files that overlap in time.
//! The stream merges them: a file is opened once the records before its start
//! (less a minute's slack) have gone, and a reorder buffer puts right what one
//! writer's handler threads logged a little out of order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_core::prediction_log::{LogPass, LogRecord, for_each_record, log_files, open_log_file};

use crate::traffic::{Failure, FeedbackIndex, Observation, Read, read};

/// How far before its start a file's first records may be (they are timed
/// when the request is answered, the file opened when its writer gets them).
const SLACK_MS: u64 = 60_000;
/// Records held to put one writer's small disorder right.
const REORDER: usize = 4096;

/// What the first pass over the log keeps: every feedback and every failed request.
#[derive(Debug, Default)]
pub struct FirstPass {
    pub feedback: FeedbackIndex,
    /// In time order.
    pub failures: Vec<Failure>,
    /// Records whose time does not parse.
    pub bad_times: usize,
    pub log: LogPass,
}

pub fn first_pass(dir: &Path) -> Result<FirstPass> {
    let mut first = FirstPass::default();
    let mut none = FeedbackIndex::default();
    first.log = for_each_record(dir, |record| {
        match read(record, &mut none) {
            Read::Feedback { request_id, index, client, truth, time_ms } => {
                first.feedback.add(request_id, index, client, truth, time_ms);
            }
            Read::Failure(failure) => first.failures.push(failure),
            Read::BadTime => first.bad_times += 1,
            Read::Observation(..) | Read::Other => {}
        }
        Ok(())
    })?;
    first.failures.sort_by_key(|f| f.time_ms);
    Ok(first)
}

/// One open log file and its next prediction.
struct Head {
    lines: std::io::Split<BufReader<std::fs::File>>,
}

impl Head {
    /// The file's next prediction, joined with its feedback; damaged lines and
    /// other records are skipped (the first pass counted them).
    fn next(&mut self, path: &Path, feedback: &mut FeedbackIndex) -> Result<Option<(String, Observation)>> {
        for line in self.lines.by_ref() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            let Ok(record) = serde_json::from_slice::<LogRecord>(&line) else { continue };
            if let Read::Observation(version, observation) = read(record, feedback) {
                return Ok(Some((version, observation)));
            }
        }
        Ok(None)
    }
}

/// The start of a log file from its name (`predictions-<unix ms>-...`); 0 when it has none.
fn start_ms(path: &Path) -> u64 {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_prefix("predictions-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Hands every prediction of `dir` to `each` in time order, by model version,
/// joined with `feedback` (from [`first_pass`]). Ties keep file order, so two
/// passes over the same log see the same sequence.
pub fn for_each_observation(
    dir: &Path,
    feedback: &mut FeedbackIndex,
    mut each: impl FnMut(String, Observation),
) -> Result<()> {
    let mut files: Vec<(u64, PathBuf)> = log_files(dir)?.into_iter().map(|path| (start_ms(&path), path)).collect();
    files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut heads: Vec<Option<Head>> = Vec::with_capacity(files.len());
    let mut pending: Vec<Option<(String, Observation)>> = Vec::with_capacity(files.len());
    // (time, file, sequence in its file) of each open file's next prediction.
    let mut heap: BinaryHeap<Reverse<(u64, usize, u64)>> = BinaryHeap::new();
    let mut sequence = vec![0u64; files.len()];
    let mut reorder: BinaryHeap<Reverse<Ordered>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut next_file = 0;
    loop {
        while next_file < files.len()
            && heap.peek().is_none_or(|Reverse((time, _, _))| files[next_file].0 <= time.saturating_add(SLACK_MS))
        {
            let path = &files[next_file].1;
            let head = open_log_file(path)?.map(|(_, file)| Head { lines: BufReader::new(file).split(b'\n') });
            heads.push(head);
            pending.push(None);
            let index = heads.len() - 1;
            if let Some(head) = heads[index].as_mut()
                && let Some(next) = head.next(path, feedback)?
            {
                heap.push(Reverse((next.1.time_ms, index, 0)));
                pending[index] = Some(next);
            }
            next_file += 1;
        }
        let Some(Reverse((_, index, _))) = heap.pop() else { break };
        let Some(item) = pending[index].take() else { continue };
        reorder.push(Reverse(Ordered { time_ms: item.1.time_ms, order, item }));
        order += 1;
        if reorder.len() > REORDER
            && let Some(Reverse(oldest)) = reorder.pop()
        {
            each(oldest.item.0, oldest.item.1);
        }
        if let Some(head) = heads[index].as_mut()
            && let Some(next) = head.next(&files[index].1, feedback)?
        {
            sequence[index] += 1;
            heap.push(Reverse((next.1.time_ms, index, sequence[index])));
            pending[index] = Some(next);
        } else {
            heads[index] = None;
        }
    }
    while let Some(Reverse(oldest)) = reorder.pop() {
        each(oldest.item.0, oldest.item.1);
    }
    Ok(())
}

/// A prediction in the reorder buffer: by time, then by arrival.
struct Ordered {
    time_ms: u64,
    order: u64,
    item: (String, Observation),
}

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ms, self.order) == (other.time_ms, other.order)
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time_ms, self.order).cmp(&(other.time_ms, other.order))
    }
}

/// A uniform sample of at most `capacity` items of a stream (reservoir
/// sampling, Algorithm R), seeded so reruns agree.
pub struct Reservoir<T> {
    pub items: Vec<T>,
    pub seen: usize,
    capacity: usize,
    rng: rand_chacha::ChaCha8Rng,
}

impl<T> Reservoir<T> {
    pub fn new(capacity: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        Self { items: Vec::new(), seen: 0, capacity, rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn push(&mut self, item: T) {
        use rand::Rng;
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
        } else {
            let slot = self.rng.random_range(0..self.seen);
            if slot < self.capacity {
                self.items[slot] = item;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::prediction_log::InputStats;

    fn prediction(ms: u64, id: &str, version: &str) -> String {
        let time = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        let record = LogRecord::Prediction {
            time: time.to_string(),
            request_id: id.into(),
            client: None,
            client_request_id: None,
            index: 0,
            text: None,
            text_sha256: None,
            label: "a".into(),
            score: 0.9,
            margin: 0.5,
            entropy: 0.1,
            calibrated_score: None,
            input: InputStats::default(),
            model_version: version.into(),
            quantize: kiln_core::Quantize::None,
            latency_ms: 1.0,
        };
        serde_json::to_string(&record).expect("json") + "\n"
    }

    /// Two replicas' files overlapping in time, one a little out of order
    /// within itself: the stream comes out in time order.
    #[test]
    fn replicas_files_merge_into_time_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, lines: &[String]| std::fs::write(dir.path().join(name), lines.concat()).expect("write");
        write(
            "predictions-1000-a-1-0001.jsonl",
            &[prediction(1_000, "a1", "v1"), prediction(3_000, "a3", "v1"), prediction(2_500, "a2", "v1")],
        );
        write("predictions-2000-b-1-0001.jsonl", &[prediction(2_000, "b1", "v1"), prediction(4_000, "b2", "v2")]);
        write("predictions-5000-a-1-0002.jsonl.partial", &[prediction(5_000, "a4", "v1")]);
        let mut seen = Vec::new();
        let mut feedback = FeedbackIndex::default();
        for_each_observation(dir.path(), &mut feedback, |version, o| seen.push((version, o.request_id)))
            .expect("reads");
        let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1", "a2", "a3", "b2", "a4"]);
        assert_eq!(seen[4].0, "v2");
    }

    #[test]
    fn a_reservoir_keeps_a_bounded_uniform_sample() {
        let mut sample = Reservoir::new(100, 7);
        for i in 0..10_000 {
            sample.push(i);
        }
        assert_eq!((sample.items.len(), sample.seen), (100, 10_000));
        let late = sample.items.iter().filter(|&&i| i >= 5_000).count();
        assert!((30..70).contains(&late), "about half from the second half: {late}");
    }
}

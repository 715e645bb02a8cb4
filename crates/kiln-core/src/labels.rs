//! `labels.json`: the label list every stage after `tokenize` shares, so label ids
//! mean the same thing in training, evaluation, export and serving.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMap {
    /// Label names; a label's id is its index. Sorted, so the order is stable.
    labels: Vec<String>,
    #[serde(skip)]
    ids: HashMap<String, u32>,
}

impl LabelMap {
    /// The sorted, de-duplicated labels seen in `labels`.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Self {
        let unique: BTreeSet<&str> = labels.into_iter().collect();
        Self::from_ordered(unique.into_iter().map(str::to_owned).collect())
    }

    /// Labels in the given id order (a Hugging Face `id2label`), not re-sorted.
    pub fn from_ordered_names(labels: Vec<String>) -> Self {
        Self::from_ordered(labels)
    }

    fn from_ordered(labels: Vec<String>) -> Self {
        let ids = labels.iter().enumerate().map(|(id, label)| (label.clone(), id as u32)).collect();
        Self { labels, ids }
    }

    pub fn id(&self, label: &str) -> Option<u32> {
        self.ids.get(label).copied()
    }

    pub fn label(&self, id: u32) -> Option<&str> {
        self.labels.get(id as usize).map(String::as_str)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a label list always serialises. This is a bug.")
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let parsed: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a kiln labels.json ({{\"labels\": [...]}})", path.display()))?;
        let map = Self::from_ordered(parsed.labels);
        if map.ids.len() != map.labels.len() {
            bail!("{} lists a label twice", path.display());
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_positions_and_round_trip() {
        let map = LabelMap::from_labels(["pos", "neg", "pos", "mid"]);
        assert_eq!(map.labels(), ["mid", "neg", "pos"]);
        assert_eq!(map.id("neg"), Some(1));
        assert_eq!(map.label(2), Some("pos"));
        assert_eq!(map.id("other"), None);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("labels.json");
        std::fs::write(&path, map.to_json()).expect("write");
        assert_eq!(LabelMap::load(&path).expect("load"), map);

        std::fs::write(&path, r#"{"labels": ["a", "a"]}"#).expect("write");
        assert!(LabelMap::load(&path).is_err());
    }
}

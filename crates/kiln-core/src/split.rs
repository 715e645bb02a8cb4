//! The three splits every stage after `ingest` keeps apart.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A data split; `eval --split` and `[eval] split` take its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
            Self::Test => "test",
        }
    }

    /// `{split}.parquet`, the file each data stage writes per split.
    pub fn file_name(self) -> String {
        format!("{}.parquet", self.name())
    }

    pub fn path_in(self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_from_toml_and_flags_and_unknown_ones_are_refused() {
        #[derive(Deserialize)]
        struct Section {
            split: Split,
        }
        let parsed: Section = serde_json::from_str(r#"{"split": "validation"}"#).expect("parses");
        assert_eq!(parsed.split, Split::Validation);
        assert!(serde_json::from_str::<Section>(r#"{"split": "dev"}"#).is_err());
        assert_eq!(<Split as clap::ValueEnum>::from_str("train", false), Ok(Split::Train));
        assert_eq!(Split::Test.path_in(Path::new("d")), Path::new("d/test.parquet"));
    }
}

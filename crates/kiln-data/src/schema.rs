//! The Parquet files stages exchange: one place for their column names and types.
//!
//! | stage output            | columns                                                        |
//! |-------------------------|----------------------------------------------------------------|
//! | `data/raw/*.parquet`    | id: str, text: str, label: str                                 |
//! | `data/interim/*.parquet`| id: str, text: str, label: str                                 |
//! | `data/processed/*.parquet` | id: str, input_ids: list<u32>, [token_type_ids: list<u8>], length: u32, label_id: u32 |

use std::path::Path;

use anyhow::Result;
use kiln_core::Split;
use polars::prelude::{DataFrame, DataType};

use crate::parquet::read_parquet;

pub const ID: &str = "id";
pub const TEXT: &str = "text";
pub const LABEL: &str = "label";
pub const INPUT_IDS: &str = "input_ids";
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
pub const LENGTH: &str = "length";
pub const LABEL_ID: &str = "label_id";

/// Columns of the raw and interim text tables.
pub const TEXT_TABLE: [(&str, DataType); 3] =
    [(ID, DataType::String), (TEXT, DataType::String), (LABEL, DataType::String)];

/// Columns of the processed (tokenized) tables; `token_type_ids` only for models that take them.
pub fn processed_table(with_token_types: bool) -> Vec<(&'static str, DataType)> {
    let list = |inner| DataType::List(Box::new(inner));
    let mut columns = vec![(ID, DataType::String), (INPUT_IDS, list(DataType::UInt32))];
    if with_token_types {
        columns.push((TOKEN_TYPE_IDS, list(DataType::UInt8)));
    }
    columns.extend([(LENGTH, DataType::UInt32), (LABEL_ID, DataType::UInt32)]);
    columns
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("{file}: missing column '{column}' (expected columns: {expected}; found: {found})")]
    MissingColumn { file: String, column: String, expected: String, found: String },
    #[error("{file}: column '{column}' has type {found}, expected {expected}")]
    WrongType { file: String, column: String, expected: String, found: String },
    #[error("{file}: column '{column}' has {count} null value(s), first at row {first_row}")]
    Nulls { file: String, column: String, count: usize, first_row: usize },
}

/// Reads a cleaned split (`clean`'s output, which `tokenize` and `eval` read), checking its schema.
pub fn read_split(dir: &Path, split: Split) -> Result<DataFrame> {
    let path = split.path_in(dir);
    let frame = read_parquet(&path, "clean")?;
    validate(&frame, &path, &TEXT_TABLE)?;
    Ok(frame)
}

/// Checks `frame` has each `(column, type)` with no nulls: a later stage then
/// fails at the door, naming the file and column, not deep inside its work.
pub fn validate(frame: &DataFrame, file: &Path, expected: &[(&str, DataType)]) -> Result<(), SchemaError> {
    let file_name = file.display().to_string();
    let expected_names = expected.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    for (name, dtype) in expected {
        let Ok(column) = frame.column(name) else {
            let found = frame.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
            return Err(SchemaError::MissingColumn {
                file: file_name,
                column: (*name).to_owned(),
                expected: expected_names,
                found,
            });
        };
        if column.dtype() != dtype {
            return Err(SchemaError::WrongType {
                file: file_name,
                column: (*name).to_owned(),
                expected: dtype.to_string(),
                found: column.dtype().to_string(),
            });
        }
        let nulls = column.null_count();
        if nulls > 0 {
            let first_row = column
                .as_materialized_series()
                .is_null()
                .iter()
                .position(|is_null| is_null == Some(true))
                .map_or(0, |index| index + 1);
            return Err(SchemaError::Nulls { file: file_name, column: (*name).to_owned(), count: nulls, first_row });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    #[test]
    fn validate_names_file_column_and_problem() {
        let frame = df!(ID => ["a"], TEXT => ["hi"]).expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("label missing");
        assert!(matches!(&error, SchemaError::MissingColumn { column, .. } if column == LABEL), "{error}");
        assert!(error.to_string().contains("x.parquet"));

        let frame = df!(ID => ["a"], TEXT => ["hi"], LABEL => [1i64]).expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("wrong type");
        assert!(matches!(error, SchemaError::WrongType { .. }), "{error}");

        let frame = df!(ID => ["a", "b"], TEXT => ["hi", "yo"], LABEL => [Some("x"), None]).expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("null");
        assert_eq!(
            error,
            SchemaError::Nulls { file: "x.parquet".into(), column: LABEL.into(), count: 1, first_row: 2 }
        );

        let frame = df!(ID => ["a"], TEXT => ["hi"], LABEL => ["x"]).expect("frame");
        validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect("valid");
    }
}

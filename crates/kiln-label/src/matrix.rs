//! The votes of every labelling function on every row.

/// What a function that does not vote on a row records (Snorkel's `-1`).
pub const ABSTAIN: i32 = -1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatrixError {
    #[error("a label matrix of {rows} rows and {functions} functions holds {expected} votes, got {got}")]
    Shape { rows: usize, functions: usize, expected: usize, got: usize },
    #[error(
        "row {row}, function {function}: vote {vote} is neither a label id below {classes} nor {ABSTAIN} (abstain)"
    )]
    Vote { row: usize, function: usize, vote: i32, classes: usize },
    #[error("a label matrix needs at least two labels, got {classes}")]
    Classes { classes: usize },
}

/// Rows by functions, each cell a label id or [`ABSTAIN`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatrix {
    functions: usize,
    classes: usize,
    votes: Vec<i32>,
}

impl LabelMatrix {
    /// `votes` row by row, `functions` to a row; every vote a label id below
    /// `classes` or [`ABSTAIN`].
    pub fn new(functions: usize, classes: usize, votes: Vec<i32>) -> Result<Self, MatrixError> {
        if classes < 2 {
            return Err(MatrixError::Classes { classes });
        }
        let rows = votes.len().checked_div(functions).unwrap_or(0);
        if functions == 0 || !votes.len().is_multiple_of(functions) {
            return Err(MatrixError::Shape { rows, functions, expected: rows * functions, got: votes.len() });
        }
        for (at, &vote) in votes.iter().enumerate() {
            if vote != ABSTAIN && !(0..classes as i64).contains(&i64::from(vote)) {
                return Err(MatrixError::Vote { row: at / functions, function: at % functions, vote, classes });
            }
        }
        Ok(Self { functions, classes, votes })
    }

    pub fn rows(&self) -> usize {
        self.votes.len() / self.functions
    }

    pub fn functions(&self) -> usize {
        self.functions
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// `function`'s vote on `row`, `None` when it abstains.
    pub fn vote(&self, row: usize, function: usize) -> Option<usize> {
        usize::try_from(self.votes[row * self.functions + function]).ok()
    }

    /// The labels voted on `row`, one per function that votes.
    pub fn votes_of(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.functions).filter_map(move |function| self.vote(row, function))
    }

    /// Whether any function votes on `row`.
    pub fn covered(&self, row: usize) -> bool {
        self.votes_of(row).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_outside_the_labels_and_ragged_rows_are_refused() {
        let error = LabelMatrix::new(2, 2, vec![0, 1, 2, ABSTAIN]).expect_err("vote 2 of 2 labels");
        assert_eq!(error, MatrixError::Vote { row: 1, function: 0, vote: 2, classes: 2 });
        assert!(error.to_string().contains("row 1, function 0"), "{error}");
        assert!(matches!(LabelMatrix::new(2, 2, vec![0, 1, 1]), Err(MatrixError::Shape { got: 3, .. })));
        assert!(matches!(LabelMatrix::new(2, 2, vec![-2, 0]), Err(MatrixError::Vote { vote: -2, .. })));
        assert!(matches!(LabelMatrix::new(1, 1, vec![0]), Err(MatrixError::Classes { classes: 1 })));
        let matrix = LabelMatrix::new(2, 3, vec![2, ABSTAIN, ABSTAIN, ABSTAIN]).expect("valid");
        assert_eq!((matrix.rows(), matrix.vote(0, 0), matrix.vote(0, 1)), (2, Some(2), None));
        assert!(matrix.covered(0) && !matrix.covered(1));
    }
}

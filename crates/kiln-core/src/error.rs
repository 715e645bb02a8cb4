//! The one error kind that callers branch on everywhere: a broken invariant.

/// A failure that no input or setting can cause: kiln itself is wrong. Stages
/// exit 2 on it (and on any panic) and ask for a bug report; every other error
/// is a problem with the input or the settings and exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0} (this is a bug in kiln)")]
pub struct Bug(pub String);

impl Bug {
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

//! The tree's error type.

use rime_bufmgr::{PageError, PageId};

/// Why a tree operation failed. Restarts after concurrent changes are not
/// errors: they are retried inside the tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("the key is already present")]
    Exists,
    #[error("update changed the value's length ({old} -> {new} bytes); use rmw or upsert")]
    LengthChanged { old: usize, new: usize },
    #[error("page {pid} is not a consistent tree node: {reason}")]
    Corrupt { pid: PageId, reason: String },
    #[error("the tree is deeper than {max} levels")]
    TooDeep { max: usize },
    #[error(transparent)]
    Page(#[from] PageError),
    /// The storage layer could not log a structure modification; the
    /// change exists only in memory (see [`crate::hooks::SmoNotLogged`]).
    #[error(transparent)]
    SmoNotLogged(#[from] crate::hooks::SmoNotLogged),
}

/// Shorthand for a corrupt-page error.
pub(crate) fn corrupt(pid: PageId, reason: impl Into<String>) -> TreeError {
    TreeError::Corrupt {
        pid,
        reason: reason.into(),
    }
}

/// Turns a `None` from a node accessor on a latched page into an error.
pub(crate) trait OrCorrupt<T> {
    fn or_corrupt(self, pid: PageId, what: &'static str) -> Result<T, TreeError>;
}

impl<T> OrCorrupt<T> for Option<T> {
    fn or_corrupt(self, pid: PageId, what: &'static str) -> Result<T, TreeError> {
        self.ok_or_else(|| corrupt(pid, what))
    }
}

//! Errors, one type per operation. Every enum is `#[non_exhaustive]`.

use rime_storage::{DbError, TxError};

/// Why [`crate::Runtime::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("engine configuration: {0}")]
    Engine(String),
    #[error("module cache directory {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] TxError),
}

impl From<DbError> for OpenError {
    fn from(e: DbError) -> Self {
        OpenError::Storage(TxError::Db(e))
    }
}

/// Why [`crate::Runtime::deploy`] refused a function.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    #[error("invalid function name {0:?}: names are 1..=64 bytes of [a-z0-9_.-]")]
    BadName(String),
    #[error("invalid namespace grant {0:?}: names are 1..=64 bytes of [a-z0-9_.-]")]
    BadGrant(String),
    #[error("too many namespace grants: {0} (at most {max})", max = crate::limits::MAX_OPEN_NAMESPACES - 1)]
    TooManyGrants(usize),
    #[error("memory limit {requested} B exceeds the runtime's maximum {max} B")]
    MemoryLimit { requested: u64, max: u64 },
    #[error("deadline must be positive and at most {max:?}")]
    BadDeadline { max: std::time::Duration },
    /// A configuration entry (`--env`, `--secret`) is refused; the message
    /// names the key, never the value.
    #[error("invalid configuration: {0}")]
    BadSetting(String),
    /// The memory limit is below the minimum the module's memory declares:
    /// every call would fail to instantiate.
    #[error(
        "memory limit {limit_bytes} B is below the module's declared minimum memory of \
         {min_bytes} B ({min_pages} pages of 64 KiB): raise the limit to at least {min_bytes} B"
    )]
    MemoryBelowMinimum {
        limit_bytes: u64,
        min_bytes: u64,
        min_pages: u64,
    },
    /// Neither a binary wasm module nor wasm text.
    #[error("not a wasm module (bad magic): {0}")]
    BadMagic(String),
    /// Not a wasm module, or one wasmtime rejects (validation, compilation).
    #[error("malformed module: {0}")]
    Malformed(String),
    /// A valid module that does not follow host ABI v1 (`docs/abi.md`).
    #[error("module does not follow host ABI v1: {0}")]
    Abi(String),
    /// A valid component that does not fit Rime's world
    /// (`docs/components.md`): an import Rime does not provide, or no
    /// handler export of the world's type.
    #[error("component does not fit Rime's world rime:faaslet/faaslet: {0}")]
    Component(String),
    /// Global namespaces (`docs/global.md`) declared wrongly: a name that
    /// is neither the function's own namespace nor a grant, some of the
    /// function's namespaces global and others local, a namespace another
    /// deployed function uses the other way, or a component.
    #[error("global namespaces: {0}")]
    BadGlobal(String),
    #[error("storage: {0}")]
    Storage(#[from] TxError),
}

impl From<DbError> for DeployError {
    fn from(e: DbError) -> Self {
        DeployError::Storage(TxError::Db(e))
    }
}

/// Why [`crate::Runtime::undeploy`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UndeployError {
    #[error("no function named {0:?}")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(#[from] TxError),
}

/// Why an invocation produced no committed result. In every case nothing
/// the invocation wrote was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    #[error("no function named {0:?}")]
    NotFound(String),
    /// The registry holds `name`, but it did not load when the runtime
    /// opened (see [`crate::Runtime::unloadable`]); undeploy or redeploy it.
    #[error("function {name:?} is deployed but does not load: {reason}")]
    Unloadable { name: String, reason: String },
    #[error("input of {len} bytes exceeds the limit of {max}")]
    InputTooLarge { len: usize, max: usize },
    /// The guest returned an application error; `message` is its output
    /// (UTF-8, lossily decoded) and `code` its non-zero result.
    #[error("function error ({code}): {message}")]
    Function { code: i32, message: String },
    /// The guest trapped (a panic, an out-of-bounds access, a bad pointer
    /// passed to the host, stack overflow, ...).
    #[error("trap: {0}")]
    Trap(String),
    /// The deadline passed (epoch interruption).
    #[error("deadline of {0:?} exceeded")]
    Timeout(std::time::Duration),
    /// The instance wanted more memory than its limit and trapped for it
    /// (a refused `memory.grow` alone is not an error: it returns -1).
    #[error("memory limit of {limit} B exceeded")]
    MemoryLimit { limit: u64 },
    /// The guest tried to return more than `MAX_OUTPUT_LEN` bytes.
    #[error("output larger than {max} bytes")]
    OutputTooLarge { max: usize },
    /// The write set outgrew `MAX_WRITE_SET_BYTES` (or `MAX_WRITTEN_BYTES`):
    /// a write was refused with `ERR_WRITE_SET_FULL` and the guest then
    /// failed, or (should the ABI's accounting ever fall short) the storage
    /// engine refused the commit as too large for one log record
    /// (`TxError::CommitTooLarge`, refused before logging: the Db is fine).
    #[error("write set larger than {max} bytes")]
    WriteSetFull { max: usize },
    /// Serialization conflicts on every attempt.
    #[error("conflict: gave up after {attempts} attempts")]
    Conflict { attempts: u32 },
    #[error("storage: {0}")]
    Storage(TxError),
    /// Too many invocations at once: the executors admitted
    /// `RuntimeConfig::max_admitted`, or no instance slot was free (the
    /// pooling allocator is full). Try again shortly.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The caller dropped the invocation (an HTTP client that went away)
    /// before it began to commit: nothing was committed.
    #[error("cancelled by the caller before commit")]
    Cancelled,
    /// A bug in the host (a caught panic, an unexpected wasmtime error).
    #[error("internal error: {0}")]
    Internal(String),
    /// The function is not invoked this way: an HTTP-triggered component
    /// ([`crate::Runtime::invoke_http`]) called with bytes, or another
    /// function called with an HTTP request. Nothing ran.
    #[error("{0}")]
    WrongTrigger(String),
    /// A global namespace's store (`docs/global.md`) could not be reached
    /// or did not answer in time, or this node has none configured:
    /// nothing was committed. Try again (HTTP 503).
    #[error("global namespace unavailable: {0}")]
    GlobalUnavailable(String),
    /// The global commit was sent and its answer lost: it may or may not
    /// have been applied (never acknowledged as committed).
    #[error("global commit outcome unknown: {0}")]
    GlobalUnknown(String),
    /// The invocation did what global namespaces do not support (yet): two
    /// global namespaces in one transaction. Nothing was committed.
    #[error("not supported on global namespaces: {0}")]
    GlobalUnsupported(String),
}

impl From<TxError> for InvokeError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Conflict { attempts } => InvokeError::Conflict { attempts },
            TxError::CommitTooLarge { .. } => InvokeError::WriteSetFull {
                max: crate::limits::MAX_WRITE_SET_BYTES,
            },
            e => InvokeError::Storage(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_too_large_is_the_write_set_error_not_a_storage_error() {
        let e = InvokeError::from(TxError::CommitTooLarge {
            bytes: 40 << 20,
            max: rime_storage::wal::record::MAX_COMMIT_BYTES,
        });
        assert!(
            matches!(e, InvokeError::WriteSetFull { max } if max == crate::limits::MAX_WRITE_SET_BYTES),
            "{e:?}"
        );
    }
}

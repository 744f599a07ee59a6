//! The host ABI's limits (`docs/abi.md`, "Limits"), the host's own
//! defaults, and the per-instance [`ResourceLimiter`].
//!
//! The ABI's numbers are defined once, in `rime-abi` (shared with the guest
//! SDK), and re-exported here. Those that must match the storage engine are
//! tied to it by the `const` asserts below: `rime-abi` cannot depend on
//! `rime-storage`, so a change on either side that breaks the link fails
//! to compile here.
//!
//! [`ResourceLimiter`]: wasmtime::ResourceLimiter

use rime_storage::wal::record::{MAX_COMMIT_BYTES, commit_write_len};
use std::time::Duration;

pub use rime_abi::{
    MAX_INPUT_LEN, MAX_KEY_LEN, MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LEN,
    MAX_LOG_LINES_PER_INVOCATION, MAX_NAMESPACE_LEN, MAX_OPEN_NAMESPACES, MAX_OUTPUT_LEN,
    MAX_VALUE_LEN, MAX_WRITE_SET_BYTES, MAX_WRITTEN_BYTES, WRITE_SET_ENTRY_OVERHEAD, valid_name,
};

// Every key and value the ABI admits can be stored, and
// `ERR_KEY_TOO_LARGE` / `ERR_VALUE_TOO_LARGE` mean exactly "longer than
// the storage engine takes".
const _: () = assert!(MAX_KEY_LEN == rime_storage::MAX_KEY_LEN);
const _: () = assert!(MAX_VALUE_LEN == rime_storage::MAX_VALUE_LEN);

// The write set is counted in the log's own terms: each written key adds
// exactly what its commit record frames it with
// (`rime_storage::wal::record::commit_write_len`) ...
const _: () = assert!(commit_write_len(0, 0) == WRITE_SET_ENTRY_OVERHEAD);
const _: () = assert!(commit_write_len(7, 9) == WRITE_SET_ENTRY_OVERHEAD + 7 + 9);
// ... and is at most what one commit may log, so a write set the ABI
// admits always commits (the 64 MiB it used to be let a 32–64 MiB write
// set reach a log that refuses records over 32 MiB) ...
const _: () = assert!(MAX_WRITE_SET_BYTES <= MAX_COMMIT_BYTES);
// ... and a write of the largest key and value fits.
const _: () = assert!(commit_write_len(MAX_KEY_LEN, MAX_VALUE_LEN) <= MAX_WRITE_SET_BYTES);

/// Default linear-memory limit of one instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Default wall-clock deadline of one attempt.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// Longest deadline a function may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);

/// Memory and table limits of one instance. A refused `memory.grow`
/// returns -1 to the guest (it does not trap); `denied` remembers that it
/// happened so a later trap can be reported as [`crate::InvokeError::MemoryLimit`].
#[derive(Debug)]
pub(crate) struct Limiter {
    pub memory_bytes: u64,
    pub denied: bool,
}

/// Table elements per instance: generous for Rust guests (which use a
/// few hundred at most for `dyn` calls).
const MAX_TABLE_ELEMENTS: usize = 64 << 10;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired as u64 <= self.memory_bytes;
        if !ok {
            self.denied = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

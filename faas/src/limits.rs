//! The host ABI's limits (`docs/abi.md`, "Limits") and the per-instance
//! [`ResourceLimiter`].

use rime_storage::wal::record::{commit_write_len, MAX_COMMIT_BYTES};
use std::time::Duration;

/// Longest key (and scan bound): the storage engine's limit, so every key
/// the ABI admits can be stored.
pub const MAX_KEY_LEN: usize = 512;
const _: () = assert!(MAX_KEY_LEN == rime_storage::MAX_KEY_LEN);

/// Longest value: the storage engine's limit (16 MiB less the 8-byte
/// version it stores with each value), so every value the ABI admits can
/// be stored and `ERR_VALUE_TOO_LARGE` means exactly "longer than this".
pub const MAX_VALUE_LEN: usize = (16 << 20) - 8;
const _: () = assert!(MAX_VALUE_LEN == rime_storage::MAX_VALUE_LEN);

pub const MAX_INPUT_LEN: usize = 1 << 20;
pub const MAX_OUTPUT_LEN: usize = 1 << 20;
pub const MAX_NAMESPACE_LEN: usize = 64;
pub const MAX_OPEN_NAMESPACES: usize = 16;

/// What each written key adds to the write set besides its key and value
/// bytes: the framing of one write in the commit's log record.
pub const WRITE_SET_ENTRY_OVERHEAD: usize = 12;
const _: () = assert!(commit_write_len(0, 0) == WRITE_SET_ENTRY_OVERHEAD);

/// The write set's size, in the log's own terms: the sum over the keys an
/// invocation wrote of `WRITE_SET_ENTRY_OVERHEAD + key + value` (a delete
/// counts no value) for the *last* write of each key — exactly what its
/// commit logs (`rime_storage::wal::record::commit_write_len`). At most
/// what one commit may log, so a write set the ABI admits always commits:
/// the 64 MiB this used to be let a 32–64 MiB write set reach a log that
/// refuses records over 32 MiB.
pub const MAX_WRITE_SET_BYTES: usize = (32 << 20) - 4;
const _: () = assert!(MAX_WRITE_SET_BYTES <= MAX_COMMIT_BYTES);
// A write of the largest key and value fits.
const _: () = assert!(commit_write_len(MAX_KEY_LEN, MAX_VALUE_LEN) <= MAX_WRITE_SET_BYTES);

/// Bytes one invocation's writes may copy into its transaction, writes a
/// later write of the same key replaced included. The write set counts only
/// the last write of a key, but the transaction keeps every version until
/// commit; without this bound one key rewritten in a loop (16 MiB a `put`)
/// would pin gigabytes of host memory, and past 4 GiB overflow the
/// transaction buffer's 32-bit offsets. 8 × the write set still lets a
/// small key be rewritten millions of times (a million 100-byte `put`s are
/// 100 MB). Exceeding it is `ERR_WRITE_SET_FULL` too.
pub const MAX_WRITTEN_BYTES: usize = 256 << 20;
const _: () = assert!(MAX_WRITTEN_BYTES >= MAX_WRITE_SET_BYTES);

pub const MAX_LOG_LEN: usize = 4 << 10;

/// Guest log output one invocation may produce, all its attempts together:
/// at most this many bytes of messages...
///
/// A faaslet's `log` goes to the host's own log (stderr by default), shared
/// by every function and the host itself; one invocation logging in a loop
/// wrote 243 MB there in a second, burying everything else and filling the
/// disk of whoever keeps it. 64 KiB (16 messages of `MAX_LOG_LEN`) and 256
/// messages are ample to diagnose one invocation. Past either, the message
/// that crosses the byte budget is cut to fit, the rest are dropped, and
/// the host logs one warning that the output was truncated; the invocation
/// itself goes on.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 64 << 10;
/// ... and at most this many messages (see above).
pub const MAX_LOG_LINES_PER_INVOCATION: usize = 256;
const _: () = assert!(MAX_LOG_BYTES_PER_INVOCATION >= MAX_LOG_LEN);

/// Default linear-memory limit of one instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Default wall-clock deadline of one attempt.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// Longest deadline a function may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);

/// Whether `name` is a valid function or namespace name: `[a-z0-9_.-]+`,
/// 1..=64 bytes.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAMESPACE_LEN).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::valid_name(b"a"));
        assert!(super::valid_name(b"stats.v2_x-y"));
        assert!(!super::valid_name(b""));
        assert!(!super::valid_name(b"A"));
        assert!(!super::valid_name(b"a/b"));
        assert!(!super::valid_name(&[b'a'; 65]));
    }
}

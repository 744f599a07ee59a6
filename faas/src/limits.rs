//! The host ABI's limits (`docs/abi.md`, "Limits") and the per-instance
//! [`ResourceLimiter`].

use std::time::Duration;

pub const MAX_KEY_LEN: usize = 512;
/// The ABI's value limit. The storage layer currently stores values only
/// up to [`rime_storage::MAX_VALUE_LEN`] bytes; a longer `put` that passes
/// this check gets `ERR_VALUE_TOO_LARGE` from the storage layer instead.
pub const MAX_VALUE_LEN: usize = 16 << 20;
pub const MAX_INPUT_LEN: usize = 1 << 20;
pub const MAX_OUTPUT_LEN: usize = 1 << 20;
pub const MAX_NAMESPACE_LEN: usize = 64;
pub const MAX_OPEN_NAMESPACES: usize = 16;
pub const MAX_WRITE_SET_BYTES: usize = 64 << 20;
pub const MAX_LOG_LEN: usize = 4 << 10;

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

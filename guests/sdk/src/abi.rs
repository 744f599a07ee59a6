//! Constants of host ABI v1, exactly as in `docs/abi.md`.
//!
//! Pure data: a host implementation may depend on this module to share the
//! numbers instead of retyping them.

/// Import module name of ABI v1. An incompatible v2 gets a new name.
pub const IMPORT_MODULE: &str = "rime";
/// The export the host calls once per invocation: `() -> i32`.
pub const EXPORT_INVOKE: &str = "rime_invoke";
/// The linear memory export.
pub const EXPORT_MEMORY: &str = "memory";

/// `rime_invoke` result: commit the writes; the output is the result.
pub const RESULT_OK: i32 = 0;
/// `rime_invoke` result: commit nothing; the output is a UTF-8 error message.
pub const RESULT_ERROR: i32 = 1;

/// Length value meaning "argument absent" (`cas` expected/new, `scan` upper bound).
pub const NONE: u32 = u32::MAX;

/// Handle of the function's own namespace, open in every invocation.
pub const OWN_NAMESPACE: i32 = 0;

/// Longest key (and scan bound): several keys fit in one B-tree page.
pub const MAX_KEY_LEN: usize = 512;
/// Longest value: large values live in page extents; bounds one copy.
/// 16 MiB less the 8-byte version the storage engine keeps with a value.
pub const MAX_VALUE_LEN: usize = (16 << 20) - 8;
/// Longest input, enforced before instantiation.
pub const MAX_INPUT_LEN: usize = 1 << 20;
/// Longest output: the host holds it until the commit is durable.
pub const MAX_OUTPUT_LEN: usize = 1 << 20;
/// Longest namespace name (`[a-z0-9_.-]+`).
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Namespace handles per invocation, including handle 0.
pub const MAX_OPEN_NAMESPACES: usize = 16;
/// Size of one invocation's write set: the sum over the keys it wrote of
/// [`WRITE_SET_ENTRY_OVERHEAD`] + key + value (a delete has no value), for
/// the last write of each key only. The most one commit can log.
pub const MAX_WRITE_SET_BYTES: usize = (32 << 20) - 4;
/// What each written key adds to the write set besides its bytes.
pub const WRITE_SET_ENTRY_OVERHEAD: usize = 12;
/// Key and value bytes of all writes of one invocation, rewrites of a key
/// included (the host keeps every version until commit).
pub const MAX_WRITTEN_BYTES: usize = 256 << 20;
/// Longest log message; the host truncates longer ones.
pub const MAX_LOG_LEN: usize = 4096;
/// Log bytes one invocation may emit; the host drops the rest.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 64 << 10;
/// Log messages one invocation may emit; the host drops the rest.
pub const MAX_LOG_LINES_PER_INVOCATION: usize = 256;

/// `cas` result: the value was replaced.
pub const CAS_OK: i32 = 0;
/// `cas` result: the current value differs from the expected one (not an error).
pub const CAS_MISMATCH: i32 = 1;

/// `scan` flag: the lower bound is exclusive (used to resume after a key).
pub const SCAN_LO_EXCLUSIVE: u32 = 1;
/// `scan` flag: the upper bound is inclusive.
pub const SCAN_HI_INCLUSIVE: u32 = 2;
/// All flag bits defined in v1; others give `ERR_INVALID`.
pub const SCAN_FLAGS_ALL: u32 = SCAN_LO_EXCLUSIVE | SCAN_HI_INCLUSIVE;
/// `key_len` value of the record that ends a scan.
pub const SCAN_END: u32 = u32::MAX;
/// Size of an entry record's header: `key_len: u32`, `val_len: u32`.
pub const SCAN_ENTRY_HEADER: usize = 8;
/// Size of the end record.
pub const SCAN_END_LEN: usize = 4;

/// Key absent (`get` only).
pub const ERR_NOT_FOUND: i32 = -1;
/// Namespace handle not open in this invocation.
pub const ERR_BAD_HANDLE: i32 = -2;
/// Namespace not granted, unknown, or granted read-only for a write.
pub const ERR_DENIED: i32 = -3;
/// Key or bound longer than [`MAX_KEY_LEN`].
pub const ERR_KEY_TOO_LARGE: i32 = -4;
/// Value longer than [`MAX_VALUE_LEN`].
pub const ERR_VALUE_TOO_LARGE: i32 = -5;
/// Output longer than [`MAX_OUTPUT_LEN`].
pub const ERR_OUTPUT_TOO_LARGE: i32 = -6;
/// `add` on a value whose length is not 8.
pub const ERR_NOT_I64: i32 = -7;
/// `add` result outside `i64`.
pub const ERR_OVERFLOW: i32 = -8;
/// Malformed argument (flag bits, namespace name, `NONE` misuse).
pub const ERR_INVALID: i32 = -9;
/// [`MAX_OPEN_NAMESPACES`] reached.
pub const ERR_LIMIT: i32 = -10;
/// [`MAX_WRITE_SET_BYTES`] or [`MAX_WRITTEN_BYTES`] reached.
pub const ERR_WRITE_SET_FULL: i32 = -11;

/// Log levels of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Normal operation.
    Info = 2,
    /// Detail for developers.
    Debug = 3,
    /// Very verbose detail.
    Trace = 4,
}

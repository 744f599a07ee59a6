//! Rime host ABI v1 (`docs/abi.md`) as data: the one definition of its
//! names, limits, result and error codes, log levels and import table.
//!
//! The host (`rime-faas`) and the guest SDK (`rime-sdk`, re-exported as
//! `rime_sdk::abi`) both depend on this crate, so the two cannot disagree
//! about a number. It is `no_std`, has no dependencies and builds for
//! `wasm32-unknown-unknown` as well as natively. Limits that must match
//! the storage engine's are tied to it by `const` asserts in `rime-faas`
//! (this crate cannot depend on the storage engine).
//!
//! `docs/abi.md` is the contract; `guests/sdk/tests/abi_conformance.rs`
//! checks its tables against this crate.
#![cfg_attr(not(test), no_std)]

// --- Module shape --------------------------------------------------------

/// Import module name of ABI v1. An incompatible v2 gets a new name.
pub const IMPORT_MODULE: &str = "rime";
/// The export the host calls once per invocation: `() -> i32`.
pub const EXPORT_INVOKE: &str = "rime_invoke";
/// The linear memory export.
pub const EXPORT_MEMORY: &str = "memory";

// --- Results of `rime_invoke` ---------------------------------------------

/// `rime_invoke` result: commit the writes; the output is the result.
pub const RESULT_OK: i32 = 0;
/// `rime_invoke` result: commit nothing; the output is a UTF-8 error
/// message. Any other non-zero value is treated the same.
pub const RESULT_ERROR: i32 = 1;

/// Length value meaning "argument absent" (`cas` expected/new, `scan`
/// upper bound): `-1` as an `i32`.
pub const NONE: u32 = u32::MAX;

/// Handle of the function's own namespace, open in every invocation.
pub const OWN_NAMESPACE: i32 = 0;

// --- Limits ---------------------------------------------------------------

/// Longest key (and scan bound): several keys fit in one B-tree page, and a
/// scan's resume key fits on the stack. The storage engine's own limit.
pub const MAX_KEY_LEN: usize = 512;
/// Longest value: large values live in page extents; bounds one copy.
/// 16 MiB less the 8-byte version the storage engine keeps with a value,
/// so every value the ABI admits can be stored.
pub const MAX_VALUE_LEN: usize = (16 << 20) - 8;
/// Longest input, enforced by the host before instantiation.
pub const MAX_INPUT_LEN: usize = 1 << 20;
/// Longest output: the host holds it until the commit is durable.
pub const MAX_OUTPUT_LEN: usize = 1 << 20;
/// Longest namespace (and function) name, see [`valid_name`].
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Namespace handles per invocation, including handle 0.
pub const MAX_OPEN_NAMESPACES: usize = 16;
/// What each written key adds to the write set besides its key and value
/// bytes: the framing of one write in the commit's log record.
pub const WRITE_SET_ENTRY_OVERHEAD: usize = 12;
/// Size of one invocation's write set: the sum over the keys it wrote of
/// [`WRITE_SET_ENTRY_OVERHEAD`] + key + value (a delete has no value), for
/// the last write of each key only. At most what one commit may log, so a
/// write set the ABI admits always commits.
pub const MAX_WRITE_SET_BYTES: usize = (32 << 20) - 4;
/// Key and value bytes of all writes of one invocation, rewrites of a key
/// included. The write set counts only the last write of a key, but the
/// host's transaction keeps every version until commit; without this bound
/// one key rewritten in a loop (16 MiB a `put`) would pin gigabytes of host
/// memory, and past 4 GiB overflow the transaction buffer's 32-bit offsets.
/// 8 × the write set still lets a small key be rewritten millions of times
/// (a million 100-byte `put`s are 100 MB). Exceeding it is
/// [`ERR_WRITE_SET_FULL`] too.
pub const MAX_WRITTEN_BYTES: usize = 256 << 20;
/// Longest log message; the host truncates longer ones.
pub const MAX_LOG_LEN: usize = 4 << 10;
/// How a faaslet's panic message starts when the SDK logs it (at
/// [`Level::Error`]) just before it traps. The host keeps such a message,
/// even past the log budget, and puts it in the trap's error, so the caller
/// sees why the guest panicked rather than only `unreachable`.
pub const PANIC_LOG_PREFIX: &str = "faaslet panicked: ";
/// Log output one invocation may produce, all its attempts together: at
/// most this many bytes of messages...
///
/// A faaslet's `log` goes to the host's own log (stderr by default), shared
/// by every function and the host itself; one invocation logging in a loop
/// wrote 243 MB there in a second, burying everything else and filling the
/// disk of whoever keeps it. 64 KiB (16 messages of [`MAX_LOG_LEN`]) and 256
/// messages are ample to diagnose one invocation. Past either, the message
/// that crosses the byte budget is cut to fit, the rest are dropped, and
/// the host logs one warning that the output was truncated; the invocation
/// itself goes on.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 64 << 10;
/// ... and at most this many messages (see above).
pub const MAX_LOG_LINES_PER_INVOCATION: usize = 256;

/// Longest key of a function's configuration (`rime deploy --env KEY=...`):
/// an environment-variable-like name, `[A-Za-z_][A-Za-z0-9_]*`.
pub const MAX_CONFIG_KEY_LEN: usize = 128;
/// Longest configuration value: room for a certificate or a key file, far
/// below what would make every instantiation copy megabytes.
pub const MAX_CONFIG_VALUE_LEN: usize = 64 << 10;
/// Most configuration entries one function may have.
pub const MAX_CONFIG_ENTRIES: usize = 64;

/// Whether `key` is a valid configuration key (see [`MAX_CONFIG_KEY_LEN`]).
pub const fn valid_config_key(key: &[u8]) -> bool {
    if key.is_empty() || key.len() > MAX_CONFIG_KEY_LEN || key[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < key.len() {
        if !(key[i].is_ascii_alphanumeric() || key[i] == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(MAX_WRITTEN_BYTES >= MAX_WRITE_SET_BYTES);
const _: () = assert!(MAX_LOG_BYTES_PER_INVOCATION >= MAX_LOG_LEN);
// The largest key and value fit one write set.
const _: () =
    assert!(WRITE_SET_ENTRY_OVERHEAD + MAX_KEY_LEN + MAX_VALUE_LEN <= MAX_WRITE_SET_BYTES);
// Lengths travel as `u32`, with `NONE` reserved.
const _: () = assert!(MAX_VALUE_LEN < NONE as usize);
const _: () = assert!(MAX_INPUT_LEN < NONE as usize);
const _: () = assert!(MAX_OUTPUT_LEN < NONE as usize);

// --- cas and scan ---------------------------------------------------------

/// `cas` result: the value was replaced.
pub const CAS_OK: i32 = 0;
/// `cas` result: the current value differs from the expected one (not an error).
pub const CAS_MISMATCH: i32 = 1;

/// `scan` flag: the lower bound is exclusive (used to resume after a key).
pub const SCAN_LO_EXCLUSIVE: u32 = 1;
/// `scan` flag: the upper bound is inclusive.
pub const SCAN_HI_INCLUSIVE: u32 = 2;
/// All flag bits defined in v1; others give [`ERR_INVALID`].
pub const SCAN_FLAGS_ALL: u32 = SCAN_LO_EXCLUSIVE | SCAN_HI_INCLUSIVE;
/// `key_len` value of the record that ends a scan.
pub const SCAN_END: u32 = u32::MAX;
/// Size of an entry record's header: `key_len: u32`, `val_len: u32`.
pub const SCAN_ENTRY_HEADER: usize = 8;
/// Size of the end record.
pub const SCAN_END_LEN: usize = 4;

// --- Error codes ----------------------------------------------------------

/// Key absent (`get` only).
pub const ERR_NOT_FOUND: i32 = -1;
/// Namespace handle not open in this invocation.
pub const ERR_BAD_HANDLE: i32 = -2;
/// Namespace not granted, unknown, or granted read-only for a write.
pub const ERR_DENIED: i32 = -3;
/// Key or bound longer than [`MAX_KEY_LEN`].
pub const ERR_KEY_TOO_LARGE: i32 = -4;
/// Value (or `cas`'s expected value) longer than [`MAX_VALUE_LEN`].
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

/// Every error code with its name, as `docs/abi.md` lists them.
pub const ERRORS: [(i32, &str); 11] = [
    (ERR_NOT_FOUND, "ERR_NOT_FOUND"),
    (ERR_BAD_HANDLE, "ERR_BAD_HANDLE"),
    (ERR_DENIED, "ERR_DENIED"),
    (ERR_KEY_TOO_LARGE, "ERR_KEY_TOO_LARGE"),
    (ERR_VALUE_TOO_LARGE, "ERR_VALUE_TOO_LARGE"),
    (ERR_OUTPUT_TOO_LARGE, "ERR_OUTPUT_TOO_LARGE"),
    (ERR_NOT_I64, "ERR_NOT_I64"),
    (ERR_OVERFLOW, "ERR_OVERFLOW"),
    (ERR_INVALID, "ERR_INVALID"),
    (ERR_LIMIT, "ERR_LIMIT"),
    (ERR_WRITE_SET_FULL, "ERR_WRITE_SET_FULL"),
];

/// The name of error code `code` (`"ERR_DENIED"`), if it is one.
pub const fn error_name(code: i32) -> Option<&'static str> {
    let mut i = 0;
    while i < ERRORS.len() {
        if ERRORS[i].0 == code {
            return Some(ERRORS[i].1);
        }
        i += 1;
    }
    None
}

// --- log ------------------------------------------------------------------

/// Log levels of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl Level {
    /// The level of a raw `log` argument: values outside `0..=4` are
    /// clamped into that range (negative is `Error`, above 4 is `Trace`).
    pub const fn from_raw(level: i32) -> Level {
        match level {
            i32::MIN..=0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            3 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

// --- Names ----------------------------------------------------------------

/// Whether `name` is a valid function or namespace name: `[a-z0-9_.-]+`,
/// 1 to [`MAX_NAMESPACE_LEN`] bytes. `ns_open` of any other name is
/// [`ERR_INVALID`].
pub const fn valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > MAX_NAMESPACE_LEN {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if !matches!(name[i], b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-') {
            return false;
        }
        i += 1;
    }
    true
}

// --- Imports --------------------------------------------------------------

/// A core wasm value type of the ABI: pointers and lengths are `I32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    /// `i32`: pointers, lengths (read as `u32`), handles, codes.
    I32,
    /// `i64`: `add`'s delta.
    I64,
}

/// One host function of module [`IMPORT_MODULE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Import {
    /// The import's field name.
    pub name: &'static str,
    /// Parameter types, in order.
    pub params: &'static [ValType],
    /// Result types (none for `log`).
    pub results: &'static [ValType],
}

impl Import {
    /// The import named `name`, if the ABI has one.
    pub fn find(name: &str) -> Option<&'static Import> {
        IMPORTS.iter().find(|i| i.name == name)
    }
}

/// The import table of `docs/abi.md`: every host function a module may
/// import, with exactly these signatures. Every import is optional: a
/// module imports only what it calls (so one built before `config_get`
/// existed still validates).
pub static IMPORTS: [Import; 11] = {
    use ValType::{I32, I64};
    const fn f(
        name: &'static str,
        params: &'static [ValType],
        results: &'static [ValType],
    ) -> Import {
        Import {
            name,
            params,
            results,
        }
    }
    [
        f("input", &[I32, I32], &[I32]),
        f("output", &[I32, I32], &[I32]),
        f("ns_open", &[I32, I32], &[I32]),
        f("get", &[I32, I32, I32, I32, I32], &[I32]),
        f("put", &[I32, I32, I32, I32, I32], &[I32]),
        f("delete", &[I32, I32, I32], &[I32]),
        f("add", &[I32, I32, I32, I64, I32], &[I32]),
        f("cas", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
        f("scan", &[I32, I32, I32, I32, I32, I32, I32, I32], &[I32]),
        f("log", &[I32, I32, I32], &[]),
        f("config_get", &[I32, I32, I32, I32], &[I32]),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name(b"a"));
        assert!(valid_name(b"stats.v2_x-y"));
        assert!(valid_name(&[b'a'; MAX_NAMESPACE_LEN]));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"A"));
        assert!(!valid_name(b"a/b"));
        assert!(!valid_name(&[b'a'; MAX_NAMESPACE_LEN + 1]));
    }

    #[test]
    fn error_codes_are_distinct_and_named() {
        for (i, (code, name)) in ERRORS.iter().enumerate() {
            assert_eq!(*code, -(i as i32) - 1, "{name}: codes run -1, -2, ...");
            assert_eq!(error_name(*code), Some(*name));
        }
        assert_eq!(error_name(0), None);
        assert_eq!(error_name(-12), None);
    }

    #[test]
    fn levels_clamp() {
        assert_eq!(Level::from_raw(i32::MIN), Level::Error);
        assert_eq!(Level::from_raw(-1), Level::Error);
        for l in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(Level::from_raw(l as i32), l);
        }
        assert_eq!(Level::from_raw(5), Level::Trace);
        assert_eq!(Level::from_raw(i32::MAX), Level::Trace);
    }

    #[test]
    fn config_keys() {
        assert!(valid_config_key(b"GREETING"));
        assert!(valid_config_key(b"_api_key2"));
        assert!(valid_config_key(&[b'K'; MAX_CONFIG_KEY_LEN]));
        assert!(!valid_config_key(b""));
        assert!(!valid_config_key(b"2FA"));
        assert!(!valid_config_key(b"A-B"));
        assert!(!valid_config_key(b"A=B"));
        assert!(!valid_config_key(&[b'K'; MAX_CONFIG_KEY_LEN + 1]));
    }

    #[test]
    fn imports_are_unique_and_found() {
        for (i, imp) in IMPORTS.iter().enumerate() {
            assert!(IMPORTS[..i].iter().all(|o| o.name != imp.name));
            assert_eq!(Import::find(imp.name), Some(imp));
        }
        assert_eq!(Import::find("env"), None);
    }
}

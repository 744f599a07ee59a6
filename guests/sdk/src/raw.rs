//! The `rime` imports one to one, as safe functions over slices that
//! return the ABI's raw result codes (`docs/abi.md`): the buffer protocol
//! (a short buffer gets the length needed and nothing copied) and the error
//! codes are the caller's to handle. [`Namespace`](crate::Namespace) and
//! friends are built on these; use them directly to make exactly the calls
//! the ABI describes, as `examples/probe` does to compare the mock with the
//! host.
//!
//! This module holds the only `unsafe` code of the SDK: each function takes
//! Rust slices, so everything above it deals in codes, not pointers. On
//! targets other than wasm32 the same functions are served by the
//! in-process [`crate::mock`] host, so SDK logic is testable natively.
//!
//! Lengths are the slices' lengths; an absent optional argument is `None`
//! (the ABI's `NONE`).

#[cfg(not(target_arch = "wasm32"))]
use crate::mock::calls as imp;
#[cfg(target_arch = "wasm32")]
use wasm as imp;

/// `input`: returns the input's length `n`, and copies the input into
/// `buf` only if `n <= buf.len()` (`input(&mut [])` asks for the length).
#[inline]
pub fn input(buf: &mut [u8]) -> i32 {
    imp::input(buf)
}

/// `output`: replaces the invocation's output with `bytes`; `0`, or
/// `ERR_OUTPUT_TOO_LARGE` (output unchanged).
#[inline]
pub fn output(bytes: &[u8]) -> i32 {
    imp::output(bytes)
}

/// `ns_open`: a handle `>= 0` for the namespace `name`, or `ERR_INVALID`,
/// `ERR_DENIED`, `ERR_LIMIT`.
#[inline]
pub fn ns_open(name: &[u8]) -> i32 {
    imp::ns_open(name)
}

/// `get`: the value's length `n`, copied into `buf` only if
/// `n <= buf.len()`; or `ERR_NOT_FOUND`, `ERR_BAD_HANDLE`, `ERR_KEY_TOO_LARGE`.
#[inline]
pub fn get(ns: i32, key: &[u8], buf: &mut [u8]) -> i32 {
    imp::get(ns, key, buf)
}

/// `put`: `0`, or `ERR_BAD_HANDLE`, `ERR_DENIED`, `ERR_KEY_TOO_LARGE`,
/// `ERR_VALUE_TOO_LARGE`, `ERR_WRITE_SET_FULL`.
#[inline]
pub fn put(ns: i32, key: &[u8], val: &[u8]) -> i32 {
    imp::put(ns, key, val)
}

/// `delete`: `0` whether or not the key was there, or the `put` errors.
#[inline]
pub fn delete(ns: i32, key: &[u8]) -> i32 {
    imp::delete(ns, key)
}

/// `add`: adds `delta` to the i64 at `key` (absent counts as 0) and writes
/// the new value to `out`; `0`, or `ERR_NOT_I64`, `ERR_OVERFLOW`, the `put`
/// errors (then `out` is untouched).
#[inline]
pub fn add(ns: i32, key: &[u8], delta: i64, out: &mut [u8; 8]) -> i32 {
    imp::add(ns, key, delta, out)
}

/// `cas`: replaces the value if it equals `expected` (`None`: expected
/// absent) with `new` (`None`: delete); `CAS_OK`, `CAS_MISMATCH`, or the
/// `put` errors.
#[inline]
pub fn cas(ns: i32, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> i32 {
    imp::cas(ns, key, expected, new)
}

/// `scan`: whole records of the range's entries from `lo` up to `hi`
/// (`None`: no upper bound) into `buf`, as many as fit, then the end record
/// if it fits; returns the bytes written, or (nothing written) the bytes
/// the next record needs, or `ERR_BAD_HANDLE`, `ERR_KEY_TOO_LARGE`,
/// `ERR_INVALID`. `flags`: `SCAN_LO_EXCLUSIVE`, `SCAN_HI_INCLUSIVE`.
#[inline]
pub fn scan(ns: i32, lo: &[u8], hi: Option<&[u8]>, flags: u32, buf: &mut [u8]) -> i32 {
    imp::scan(ns, lo, hi, flags, buf)
}

/// `log`: emits `msg` at `level` (clamped to `0..=4`), subject to the
/// per-invocation budget.
#[inline]
pub fn log(level: i32, msg: &[u8]) {
    imp::log(level, msg)
}

/// `config_get`: the length `n` of configuration entry `key`, copied into
/// `buf` only if `n <= buf.len()`; or `ERR_NOT_FOUND`, `ERR_INVALID`.
#[inline]
pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
    imp::config_get(key, buf)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod wasm {
    use crate::abi::NONE;

    // Host ABI v1, `docs/abi.md`. Pointers and `u32`/`i32` lower to wasm `i32`.
    #[link(wasm_import_module = "rime")]
    unsafe extern "C" {
        #[link_name = "input"]
        fn rime_input(buf: *mut u8, cap: u32) -> i32;
        #[link_name = "output"]
        fn rime_output(ptr: *const u8, len: u32) -> i32;
        #[link_name = "ns_open"]
        fn rime_ns_open(name: *const u8, name_len: u32) -> i32;
        #[link_name = "get"]
        fn rime_get(ns: i32, key: *const u8, key_len: u32, buf: *mut u8, cap: u32) -> i32;
        #[link_name = "put"]
        fn rime_put(ns: i32, key: *const u8, key_len: u32, val: *const u8, val_len: u32) -> i32;
        #[link_name = "delete"]
        fn rime_delete(ns: i32, key: *const u8, key_len: u32) -> i32;
        #[link_name = "add"]
        fn rime_add(ns: i32, key: *const u8, key_len: u32, delta: i64, out: *mut u8) -> i32;
        #[link_name = "cas"]
        fn rime_cas(
            ns: i32,
            key: *const u8,
            key_len: u32,
            exp: *const u8,
            exp_len: u32,
            new: *const u8,
            new_len: u32,
        ) -> i32;
        #[link_name = "scan"]
        fn rime_scan(
            ns: i32,
            lo: *const u8,
            lo_len: u32,
            hi: *const u8,
            hi_len: u32,
            flags: u32,
            buf: *mut u8,
            cap: u32,
        ) -> i32;
        #[link_name = "log"]
        fn rime_log(level: i32, msg: *const u8, msg_len: u32);
        #[link_name = "config_get"]
        fn rime_config_get(key: *const u8, key_len: u32, buf: *mut u8, cap: u32) -> i32;
    }

    /// A slice length as an ABI length. Lossless: on wasm32 `usize` is 32
    /// bits, and no slice reaches `u32::MAX` (= `NONE`) bytes because memory
    /// is at most 4 GiB and the SDK's stack and data occupy part of it.
    fn len(n: usize) -> u32 {
        n as u32
    }

    /// An optional slice as (pointer, length) with `NONE` for `None`.
    fn opt(s: Option<&[u8]>) -> (*const u8, u32) {
        match s {
            Some(s) => (s.as_ptr(), len(s.len())),
            None => (core::ptr::null(), NONE),
        }
    }

    pub(super) fn input(buf: &mut [u8]) -> i32 {
        // SAFETY: `buf` is a live, exclusively borrowed range of our memory; the
        // host writes at most `buf.len()` bytes into it and keeps no reference.
        unsafe { rime_input(buf.as_mut_ptr(), len(buf.len())) }
    }

    pub(super) fn output(bytes: &[u8]) -> i32 {
        // SAFETY: `bytes` is a live range of our memory; the host only reads it
        // during the call.
        unsafe { rime_output(bytes.as_ptr(), len(bytes.len())) }
    }

    pub(super) fn ns_open(name: &[u8]) -> i32 {
        // SAFETY: `name` is a live range the host only reads during the call.
        unsafe { rime_ns_open(name.as_ptr(), len(name.len())) }
    }

    pub(super) fn get(ns: i32, key: &[u8], buf: &mut [u8]) -> i32 {
        // SAFETY: `key` is read-only and `buf` exclusively borrowed for the
        // call; the host writes at most `buf.len()` bytes, only into `buf`.
        unsafe {
            rime_get(
                ns,
                key.as_ptr(),
                len(key.len()),
                buf.as_mut_ptr(),
                len(buf.len()),
            )
        }
    }

    pub(super) fn put(ns: i32, key: &[u8], val: &[u8]) -> i32 {
        // SAFETY: both slices are live ranges the host only reads during the call.
        unsafe {
            rime_put(
                ns,
                key.as_ptr(),
                len(key.len()),
                val.as_ptr(),
                len(val.len()),
            )
        }
    }

    pub(super) fn delete(ns: i32, key: &[u8]) -> i32 {
        // SAFETY: `key` is a live range the host only reads during the call.
        unsafe { rime_delete(ns, key.as_ptr(), len(key.len())) }
    }

    pub(super) fn add(ns: i32, key: &[u8], delta: i64, out: &mut [u8; 8]) -> i32 {
        // SAFETY: `key` is read-only; `out` is an exclusively borrowed 8-byte
        // array, exactly what the host writes on success.
        unsafe { rime_add(ns, key.as_ptr(), len(key.len()), delta, out.as_mut_ptr()) }
    }

    pub(super) fn cas(ns: i32, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> i32 {
        let (exp_ptr, exp_len) = opt(expected);
        let (new_ptr, new_len) = opt(new);
        // SAFETY: all present slices are live ranges the host only reads; for
        // absent ones the length is NONE and the host ignores the pointer.
        unsafe {
            rime_cas(
                ns,
                key.as_ptr(),
                len(key.len()),
                exp_ptr,
                exp_len,
                new_ptr,
                new_len,
            )
        }
    }

    pub(super) fn scan(ns: i32, lo: &[u8], hi: Option<&[u8]>, flags: u32, buf: &mut [u8]) -> i32 {
        let (hi_ptr, hi_len) = opt(hi);
        let (buf_ptr, cap) = (buf.as_mut_ptr(), len(buf.len()));
        // SAFETY: the bounds are read-only live ranges (or NONE); `buf` is
        // exclusively borrowed and the host writes at most `cap` bytes into it.
        unsafe {
            rime_scan(
                ns,
                lo.as_ptr(),
                len(lo.len()),
                hi_ptr,
                hi_len,
                flags,
                buf_ptr,
                cap,
            )
        }
    }

    pub(super) fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        // SAFETY: `key` is read-only and `buf` exclusively borrowed for the
        // call; the host writes at most `buf.len()` bytes, only into `buf`.
        unsafe {
            rime_config_get(
                key.as_ptr(),
                len(key.len()),
                buf.as_mut_ptr(),
                len(buf.len()),
            )
        }
    }

    pub(super) fn log(level: i32, msg: &[u8]) {
        // SAFETY: `msg` is a live range the host only reads during the call.
        unsafe { rime_log(level, msg.as_ptr(), len(msg.len())) }
    }
}

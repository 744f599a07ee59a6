//! The raw `rime` imports and the only `unsafe` code of the SDK.
//!
//! Each function here takes Rust slices and returns the ABI's raw result
//! code, so everything above this module is safe code that deals in codes,
//! not pointers. On targets other than wasm32 the same functions are served
//! by the in-process [`crate::mock`] host, so SDK logic is testable natively.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::mock::calls::*;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod wasm {
    use crate::abi::NONE;

    // Host ABI v1, `docs/abi.md`. Pointers and `u32`/`i32` lower to wasm `i32`.
    #[link(wasm_import_module = "rime")]
    extern "C" {
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

    pub(crate) fn input(buf: &mut [u8]) -> i32 {
        // SAFETY: `buf` is a live, exclusively borrowed range of our memory; the
        // host writes at most `buf.len()` bytes into it and keeps no reference.
        unsafe { rime_input(buf.as_mut_ptr(), len(buf.len())) }
    }

    pub(crate) fn output(bytes: &[u8]) -> i32 {
        // SAFETY: `bytes` is a live range of our memory; the host only reads it
        // during the call.
        unsafe { rime_output(bytes.as_ptr(), len(bytes.len())) }
    }

    pub(crate) fn ns_open(name: &[u8]) -> i32 {
        // SAFETY: `name` is a live range the host only reads during the call.
        unsafe { rime_ns_open(name.as_ptr(), len(name.len())) }
    }

    pub(crate) fn get(ns: i32, key: &[u8], buf: &mut [u8]) -> i32 {
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

    pub(crate) fn put(ns: i32, key: &[u8], val: &[u8]) -> i32 {
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

    pub(crate) fn delete(ns: i32, key: &[u8]) -> i32 {
        // SAFETY: `key` is a live range the host only reads during the call.
        unsafe { rime_delete(ns, key.as_ptr(), len(key.len())) }
    }

    pub(crate) fn add(ns: i32, key: &[u8], delta: i64, out: &mut [u8; 8]) -> i32 {
        // SAFETY: `key` is read-only; `out` is an exclusively borrowed 8-byte
        // array, exactly what the host writes on success.
        unsafe { rime_add(ns, key.as_ptr(), len(key.len()), delta, out.as_mut_ptr()) }
    }

    pub(crate) fn cas(ns: i32, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> i32 {
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

    pub(crate) fn scan(ns: i32, lo: &[u8], hi: Option<&[u8]>, flags: u32, buf: &mut [u8]) -> i32 {
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

    pub(crate) fn log(level: i32, msg: &[u8]) {
        // SAFETY: `msg` is a live range the host only reads during the call.
        unsafe { rime_log(level, msg.as_ptr(), len(msg.len())) }
    }
}

//! `hostile`: misbehaves on purpose, to test that the host contains it.
//!
//! Input (text) selects the misbehaviour; what a correct host does:
//!
//! | input | does | host must |
//! | --- | --- | --- |
//! | `loop` | spins forever | stop it at the deadline (epoch interruption) |
//! | `wild-pointer` | `get` into 4 KiB at `0xFFFF_F800`: the range ends past 4 GiB, and wraps to a small in-bounds number in 32-bit arithmetic | trap |
//! | `oob-length` | `put` with a valid pointer and a 2 GiB value length | trap (range check before `ERR_VALUE_TOO_LARGE`) |
//! | `memory-bomb` | `memory.grow` one page at a time, touching each, until refused | refuse growth at its limit; error result `memory.grow refused after N pages` |
//! | `panic` | panics | trap (the SDK's panic handler logs, then traps) |
//! | `stack-overflow` | unbounded recursion | trap |
//! | `huge-output` | returns 2 MiB, over `MAX_OUTPUT_LEN` | `output` fails; the SDK answers with an error result |
//!
//! Whatever happens, nothing is committed: every case first writes the key
//! `hostile-was-here`, so a test can check that it is absent afterwards.
#![cfg_attr(not(test), no_std)]

use rime_sdk::{Namespace, String, ToString, Vec, faaslet, vec};

/// Start of the wild buffer: 2 KiB below 4 GiB.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by wasm32-only cases
const WILD_PTR: u32 = 0xFFFF_F800;
/// Length of the wild buffer: its end, 2 KiB past 4 GiB, wraps in 32 bits.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by wasm32-only cases
const WILD_LEN: u32 = 4096;
/// Value length for `oob-length`: larger than any wasm32 memory can hold here.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by wasm32-only cases
const OOB_LEN: u32 = 1 << 31;
/// Wasm page size.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by wasm32-only cases
const PAGE: usize = 64 << 10;
/// Output size for `huge-output`: twice `MAX_OUTPUT_LEN`.
const HUGE_OUTPUT: usize = 2 * rime_sdk::abi::MAX_OUTPUT_LEN;
/// Written first, so a test can see that nothing committed.
const MARKER: &[u8] = b"hostile-was-here";

/// Raw imports with the ABI's signatures, to pass values the SDK never would.
#[cfg(target_arch = "wasm32")]
mod raw {
    #[link(wasm_import_module = "rime")]
    unsafe extern "C" {
        pub fn get(ns: i32, key: *const u8, key_len: u32, buf: *mut u8, cap: u32) -> i32;
        pub fn put(ns: i32, key: *const u8, key_len: u32, val: *const u8, val_len: u32) -> i32;
    }
}

#[cfg(target_arch = "wasm32")]
fn wild_pointer() -> String {
    // SAFETY: deliberately unsound. The range is outside linear memory and
    // the host must trap before touching it; if a broken host wrapped the
    // end around 4 GiB, the damage stays inside this sandboxed instance.
    let code = unsafe {
        raw::get(
            0,
            MARKER.as_ptr(),
            MARKER.len() as u32,
            WILD_PTR as *mut u8,
            WILD_LEN,
        )
    };
    rime_sdk::format!("host returned {code} instead of trapping")
}

#[cfg(target_arch = "wasm32")]
fn oob_length() -> String {
    let key = b"k";
    // SAFETY: deliberately unsound: the value range runs far past the end of
    // memory. The host only reads through it, and must trap before that.
    let code = unsafe { raw::put(0, key.as_ptr(), key.len() as u32, key.as_ptr(), OOB_LEN) };
    rime_sdk::format!("host returned {code} instead of trapping")
}

#[cfg(target_arch = "wasm32")]
fn memory_bomb() -> String {
    let mut pages = 0usize;
    loop {
        let old = core::arch::wasm32::memory_grow(0, 1);
        if old == usize::MAX {
            return rime_sdk::format!("memory.grow refused after {pages} pages");
        }
        pages += 1;
        // SAFETY: `memory.grow` just added page `old`, so its first byte is
        // in bounds and owned by nobody else (the allocator does not know it).
        unsafe { core::ptr::write_volatile((old * PAGE) as *mut u8, 1) };
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn wild_pointer() -> String {
    "wild-pointer needs wasm32".to_string()
}
#[cfg(not(target_arch = "wasm32"))]
fn oob_length() -> String {
    "oob-length needs wasm32".to_string()
}
#[cfg(not(target_arch = "wasm32"))]
fn memory_bomb() -> String {
    "memory-bomb needs wasm32".to_string()
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = core::hint::black_box(n.wrapping_add(1)); // black_box: keep the loop observable
    }
}

#[allow(unconditional_recursion)] // the point of the case
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 16]); // a real stack frame per level
    recurse(depth + 1) + frame[0]
}

#[faaslet]
fn hostile(input: &[u8]) -> Result<Vec<u8>, String> {
    Namespace::OWN
        .put(MARKER, b"1")
        .map_err(|e| e.to_string())?;
    let outcome = match input {
        b"loop" => spin(),
        b"wild-pointer" => wild_pointer(),
        b"oob-length" => oob_length(),
        b"memory-bomb" => memory_bomb(),
        b"panic" => panic!("hostile: deliberate panic"),
        b"stack-overflow" => recurse(0).to_string(),
        b"huge-output" => return Ok(vec![b'x'; HUGE_OUTPUT]),
        _ => return Err("unknown case; see the crate docs".to_string()),
    };
    // Only reached when the host failed to stop us (or for memory-bomb, by
    // design): an error result keeps the marker write uncommitted.
    Err(outcome)
}

// The mock host serves the SDK's calls on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::MARKER;
    use rime_sdk::{abi::RESULT_ERROR, mock};

    #[test]
    fn refused_cases_commit_nothing() {
        mock::reset();
        for case in [&b"huge-output"[..], b"no-such-case"] {
            let outcome = mock::invoke(case, super::rime_invoke);
            assert_eq!(outcome.code, RESULT_ERROR);
            assert!(
                outcome.output.len() < 200,
                "an error message, not the 2 MiB"
            );
            assert_eq!(mock::load(mock::OWN_NAME, MARKER), None);
        }
    }
}

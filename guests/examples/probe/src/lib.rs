//! `probe`: makes a script of raw host calls and reports what each returned.
//!
//! - Input: a script ([`script::encode`] of [`script::Op`]s): `input`,
//!   `output`, `ns_open`, `get`, `put`, `delete`, `add`, `cas`, `scan`, `log`
//!   with any arguments (oversized keys, short buffers, bad handles, bad
//!   flags, ...), and `return code`.
//! - Output: the transcript, one line per call: the result code, and the
//!   whole buffer of `input`/`get`/`add`/`scan` after the call, in hex.
//!   The result is the script's `return` code (0 without one), so a script
//!   can make its writes commit or not.
//!
//! The calls go through `rime_sdk::raw`, unchecked: on wasm32 to the host,
//! natively to `rime_sdk::mock`. `faas/tests/mock_vs_host.rs` runs the same
//! scripts both ways and requires the same transcripts, results, committed
//! state and log lines: the mock, which calls itself the ABI's executable
//! model, is checked against the real host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod script;

/// The body of the export: read the script, run it, output the transcript.
pub fn entry() -> i32 {
    let n = rime_sdk::raw::input(&mut []);
    let mut script = alloc::vec![0; n.max(0) as usize];
    rime_sdk::raw::input(&mut script);
    let (code, transcript) = script::run(&script);
    rime_sdk::raw::output(transcript.as_bytes());
    code
}

/// The ABI v1 entry point (written by hand: `#[faaslet]` would turn a
/// non-zero result into an error message instead of the transcript).
#[allow(unsafe_code)] // `no_mangle` is how a wasm export gets its name
#[unsafe(no_mangle)]
pub extern "C" fn rime_invoke() -> i32 {
    entry()
}

rime_sdk::panic_handler!();

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::script::{Bytes, Op, encode, run};
    use rime_sdk::mock;

    #[test]
    fn scripts_round_trip_and_run_on_the_mock() {
        mock::reset();
        let ops = [
            Op::Put {
                ns: 0,
                key: Bytes::lit("k"),
                val: Bytes::Fill(3, b'v'),
            },
            Op::Get {
                ns: 0,
                key: Bytes::lit("k"),
                cap: 4,
            },
            Op::Get {
                ns: 0,
                key: Bytes::lit("k"),
                cap: 2,
            },
            Op::Return(1),
            Op::Log {
                level: 2,
                msg: Bytes::lit("never"),
            },
        ];
        let out = mock::invoke(&encode(&ops), super::rime_invoke);
        assert_eq!(out.code, 1);
        assert_eq!(out.text(), "0\n3 767676a5\n3 a5a5\n");
        assert_eq!(
            mock::load(mock::OWN_NAME, b"k"),
            None,
            "returned 1: rolled back"
        );
        assert!(mock::take_logs().is_empty());
        assert_eq!(run(&[99]).0, rime_sdk::abi::RESULT_ERROR, "malformed");
    }
}

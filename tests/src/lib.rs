//! Cross-crate integration tests live in `tests/tests/`. Helpers shared by
//! them are here.
#![forbid(unsafe_code)]

use std::time::Duration;

/// Reads a scale knob from the environment (e.g. `RIME_CRASH_CYCLES`),
/// falling back to `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A short pause, for tests that poll.
pub fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

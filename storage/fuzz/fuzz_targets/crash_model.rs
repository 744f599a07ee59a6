//! The crash-point model driven by the fuzzer's bytes instead of a seeded
//! generator: every choice (operation, key, value size, crash count, the
//! fate of each unsynced write) is read from the input, so coverage
//! guidance steers toward operation and crash sequences the seeded search
//! has not reached. A failed check panics, which libFuzzer reports with the
//! input that caused it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::RngCore;

#[path = "../../tests/crash_model/mod.rs"]
mod crash_model;

/// Crash cycles per input: enough for a crash, a recovery, and a crash of
/// that recovery's successor.
const CYCLES: u64 = 4;

/// Randomness read from the input; zeros once it is used up (every range
/// then yields its first value, so runs stay finite).
struct InputRng<'a>(&'a [u8]);

impl RngCore for InputRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.0.len());
        dest[..n].copy_from_slice(&self.0[..n]);
        dest[n..].fill(0);
        self.0 = &self.0[n..];
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the pool profile (odd: a 1 MiB pool).
    let profile = u64::from(data.first().copied().unwrap_or(1));
    let mut rng = InputRng(data.get(1..).unwrap_or_default());
    let mut tally = crash_model::Tally::default();
    crash_model::search(&mut rng, profile, CYCLES, &mut tally);
});

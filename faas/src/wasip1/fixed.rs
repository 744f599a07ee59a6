//! Time and randomness fixed per invocation (`docs/abi.md`,
//! "Determinism"): an invocation may run several times (a conflict at
//! commit re-runs it), and every attempt must compute the same thing. So
//! the host samples the wall clock and a 256-bit seed once, before the
//! first attempt, and every attempt's WASI context reads that clock and
//! draws its random bytes from a generator seeded with that seed.

use rand_wasi::rngs::StdRng;
use rand_wasi::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// What every attempt of one invocation sees as time and randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fixed {
    /// The wall clock when the invocation began, since the Unix epoch.
    pub wall: Duration,
    /// Seed of `random_get` (and of WASI's insecure generators, derived).
    pub seed: [u8; 32],
}

impl Fixed {
    /// Samples the clock and a seed from the OS-seeded thread generator.
    pub(crate) fn sample() -> Fixed {
        let mut seed = [0u8; 32];
        rand_wasi::rng().fill_bytes(&mut seed);
        Fixed {
            // A clock before 1970 reads as the epoch, not as an error.
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            seed,
        }
    }

    /// Gives `b` this invocation's clocks and generators.
    pub(crate) fn configure(&self, b: &mut WasiCtxBuilder) {
        // The insecure generators get their own stream, derived from the
        // seed, so their output says nothing about `random_get`'s.
        let insecure: [u8; 32] = Sha256::new()
            .chain_update(b"rime insecure random")
            .chain_update(self.seed)
            .finalize()
            .into();
        let (low, _) = insecure
            .split_first_chunk::<16>()
            .unwrap_or((&[0; 16], &[]));
        let insecure_seed = u128::from_le_bytes(*low);
        b.wall_clock(FixedWall(self.wall))
            .monotonic_clock(FixedMonotonic)
            .secure_random(StdRng::from_seed(self.seed))
            .insecure_random(StdRng::from_seed(insecure))
            .insecure_random_seed(insecure_seed);
    }
}

/// The wall clock, stopped at the invocation's start.
struct FixedWall(Duration);

impl HostWallClock for FixedWall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// The monotonic clock, stopped at 0: no time passes inside an
/// invocation, as the guest can observe it.
struct FixedMonotonic;

impl HostMonotonicClock for FixedMonotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

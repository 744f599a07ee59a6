//! The fixtures of the non-waiting transaction tests (`owned_tx.rs`,
//! `nowait_ops.rs`): a pool far smaller than the data, and values of which
//! some live in extents.

use rime_storage::Options;

/// A 1 MiB pool (256 pages), no background checkpoints, 8 MiB log segments.
pub fn opts() -> Options {
    Options::default()
        .pool_bytes(1 << 20)
        .checkpoint_interval(None)
        .segment_size(8 << 20)
}

/// The value of key `n`: 40–119 bytes, except every 97th, 3000 bytes
/// (in an extent, read under the leaf's latch).
pub fn value(n: u32) -> Vec<u8> {
    let len = if n.is_multiple_of(97) {
        3000
    } else {
        40 + n as usize % 80
    };
    vec![n as u8; len]
}

//! One adapter per system under test. Peers are behind cargo features
//! (`peers-lmdb`, `peers-rocksdb`, …; `peers` = all).

pub mod btree;
pub mod rime;
#[cfg(feature = "rime-faas")]
pub mod rime_faas;

#[cfg(feature = "peers-fjall")]
pub mod fjall;
#[cfg(feature = "peers-lmdb")]
pub mod lmdb;
#[cfg(feature = "peers-redb")]
pub mod redb;
#[cfg(feature = "peers-redis")]
pub mod redis;
#[cfg(feature = "peers-rocksdb")]
pub mod rocksdb;
#[cfg(feature = "peers-sled")]
pub mod sled;

/// The virtual region of Rime's engines: the buffer manager's default
/// (1 TiB), or `RIME_BENCH_REGION_BYTES` (valgrind cannot map 1 TiB; e.g.
/// `RIME_BENCH_REGION_BYTES=4294967296` runs an engine under callgrind).
pub fn region_bytes() -> u64 {
    std::env::var("RIME_BENCH_REGION_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(rime_bufmgr::DEFAULT_MAX_BYTES)
}

/// What every `read` does with an engine's answer: copy the value into
/// `out` (reusing its allocation) and say whether there was one.
#[inline]
pub fn copy_value(value: Option<impl AsRef<[u8]>>, out: &mut Vec<u8>) -> bool {
    match value {
        Some(v) => {
            out.clear();
            out.extend_from_slice(v.as_ref());
            true
        }
        None => false,
    }
}

/// What every scan does with an entry, the same for all engines: touch the
/// key and value lengths so the read cannot be optimised away.
#[inline]
pub fn consume(k: &[u8], v: &[u8]) -> usize {
    std::hint::black_box(k.len() + v.len())
}

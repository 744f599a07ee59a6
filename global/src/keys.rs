//! Where a global namespace lives in the Redis Cluster.
//!
//! ```text
//!   rime:{<ns>}:seq           string  the namespace's commit counter: one
//!                                     INCR per commit that writes
//!   rime:{<ns>}:done:<id>     string  the seq of commit <id>, for 10 min
//!                                     (`script.rs`: a resent commit)
//!   rime:{<ns>}:k:<key bytes> hash    v = the value's bytes
//!                                     n = its version, decimal: the seq of
//!                                         the commit that wrote it
//!   rime:{<ns>}:z             sorted set  every key of the namespace, as
//!                                     a member with score 0: the index a
//!                                     scan lists (`scan.rs`)
//!         ^^^^
//!         hash tag: Redis Cluster hashes only the text between the first
//!         `{` and the next `}`, so every key of a namespace is in one slot,
//!         on one master, and one Lua script can read and write them all.
//! ```
//!
//! A missing hash is an absent key, version 0. Versions come from the
//! namespace's counter, which only grows, so a key deleted and written
//! again never shows an old version with a new value: a stale copy (the
//! local tier) always fails validation.

use crate::GlobalError;

const PREFIX: &[u8] = b"rime:{";
const SEQ_SUFFIX: &[u8] = b"}:seq";
const KEY_INFIX: &[u8] = b"}:k:";
const INDEX_SUFFIX: &[u8] = b"}:z";

/// A namespace name usable as a hash tag: non-empty, no braces (Rime's
/// names are `[a-z0-9_.-]`, so every valid name is).
pub fn check_namespace(ns: &str) -> Result<(), GlobalError> {
    if ns.is_empty() || ns.bytes().any(|b| b == b'{' || b == b'}') {
        return Err(GlobalError::BadNamespace(ns.to_string()));
    }
    Ok(())
}

/// The key of namespace `ns`'s commit counter.
pub fn seq_key(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + ns.len() + SEQ_SUFFIX.len());
    k.extend_from_slice(PREFIX);
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(SEQ_SUFFIX);
    k
}

/// The marker of commit `id` of namespace `ns` (`script.rs`).
pub fn done_key(ns: &str, id: &str) -> Vec<u8> {
    format!("rime:{{{ns}}}:done:{id}").into_bytes()
}

/// The hash holding `key` of namespace `ns`: [`value_prefix`], then the
/// key's bytes.
pub fn value_key(ns: &str, key: &[u8]) -> Vec<u8> {
    let mut k = value_prefix(ns);
    k.extend_from_slice(key);
    k
}

/// What every value hash's name of namespace `ns` starts with.
pub fn value_prefix(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + ns.len() + KEY_INFIX.len() + KEY_ROOM_BYTES);
    k.extend_from_slice(PREFIX);
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(KEY_INFIX);
    k
}

/// Room reserved for the key after [`value_prefix`]: typical keys fit.
const KEY_ROOM_BYTES: usize = 32;

/// The sorted set of namespace `ns`'s keys (`scan.rs`).
pub fn index_key(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + ns.len() + INDEX_SUFFIX.len());
    k.extend_from_slice(PREFIX);
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(INDEX_SUFFIX);
    k
}

/// The namespace's Redis Cluster slot: CRC16 of the hash tag (the name),
/// mod 16384 (Redis Cluster specification, "Keys distribution model").
/// `testing::RedisCluster::master_of` checks it against `CLUSTER KEYSLOT`.
pub fn slot(ns: &str) -> u16 {
    crc16_xmodem(ns.as_bytes()) % 16384
}

/// The slot of a whole Redis key: its hash tag's if it has a non-empty
/// one (between the first `{` and the next `}`), else the key's.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16_xmodem(tagged.unwrap_or(key)) % 16384
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the one Redis
/// Cluster hashes keys with.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_namespace_is_in_its_slot() {
        for ns in ["bank", "counter", "a.b-c_9"] {
            let s = slot(ns);
            assert_eq!(key_slot(&done_key(ns, "1-2")), s);
            assert_eq!(key_slot(&seq_key(ns)), s);
            assert_eq!(key_slot(&index_key(ns)), s);
            for key in [&b""[..], b"x", b"{other}", b"\xff\x00}"] {
                assert_eq!(key_slot(&value_key(ns, key)), s);
            }
        }
        assert_ne!(slot("bank"), slot("counter"));
    }

    #[test]
    fn slots_are_those_redis_computes() {
        // The specification's check value, and slots `CLUSTER KEYSLOT`
        // gives (redis-server 7).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole key.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    }

    #[test]
    fn braces_are_refused_in_names() {
        assert!(check_namespace("a{b").is_err());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("ok").is_ok());
    }
}

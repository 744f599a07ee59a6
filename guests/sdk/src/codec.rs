//! Scan records, byte by byte (`docs/abi.md`, "scan"). Pure Rust, no host.
//!
//! ```text
//! entry: key_len: u32 LE | val_len: u32 LE | key bytes | value bytes
//! end:   0xFFFF_FFFF
//! ```
//! The encoder is what a host (or the [`crate::mock`] host) writes; the
//! decoder is what the guest reads.

use crate::abi::{MAX_KEY_LEN, MAX_VALUE_LEN, SCAN_END, SCAN_END_LEN, SCAN_ENTRY_HEADER};
use alloc::vec::Vec;
use core::ops::Range;

/// One decoded record: where its parts lie in the buffer it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A key/value pair; the ranges index the decoded buffer.
    Entry {
        /// Byte range of the key.
        key: Range<usize>,
        /// Byte range of the value.
        value: Range<usize>,
    },
    /// The range is exhausted.
    End,
}

/// A record that does not fit the ABI: truncated, or a length over the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

fn read_u32(buf: &[u8], at: usize) -> Result<u32, Malformed> {
    let bytes = buf
        .get(at..at.checked_add(4).ok_or(Malformed)?)
        .ok_or(Malformed)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

/// Decodes the record starting at `at`; returns it and the offset after it.
pub fn decode(buf: &[u8], at: usize) -> Result<(Record, usize), Malformed> {
    let key_len = read_u32(buf, at)?;
    if key_len == SCAN_END {
        return Ok((Record::End, at + SCAN_END_LEN));
    }
    let val_len = read_u32(buf, at + 4)?;
    let (key_len, val_len) = (key_len as usize, val_len as usize);
    if key_len > MAX_KEY_LEN || val_len > MAX_VALUE_LEN {
        return Err(Malformed);
    }
    let key_at = at + SCAN_ENTRY_HEADER;
    let value_at = key_at + key_len;
    let next = value_at + val_len;
    if next > buf.len() {
        return Err(Malformed);
    }
    Ok((
        Record::Entry {
            key: key_at..value_at,
            value: value_at..next,
        },
        next,
    ))
}

/// Bytes an entry record for `key` and `value` takes.
pub const fn entry_len(key: &[u8], value: &[u8]) -> usize {
    SCAN_ENTRY_HEADER + key.len() + value.len()
}

/// Writes an entry record at the start of `buf`; `None` if it does not fit.
pub fn encode_entry(buf: &mut [u8], key: &[u8], value: &[u8]) -> Option<usize> {
    let n = entry_len(key, value);
    let out = buf.get_mut(..n)?;
    let (header, body) = out.split_at_mut(SCAN_ENTRY_HEADER);
    header[..4].copy_from_slice(&u32::try_from(key.len()).ok()?.to_le_bytes());
    header[4..].copy_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
    let (k, v) = body.split_at_mut(key.len());
    k.copy_from_slice(key);
    v.copy_from_slice(value);
    Some(n)
}

/// Writes the end record at the start of `buf`; `None` if it does not fit.
pub fn encode_end(buf: &mut [u8]) -> Option<usize> {
    buf.get_mut(..SCAN_END_LEN)?
        .copy_from_slice(&SCAN_END.to_le_bytes());
    Some(SCAN_END_LEN)
}

/// The smallest key greater than every key starting with `prefix`, i.e. the
/// exclusive upper bound of a prefix scan; `None` if there is none (the
/// prefix is empty or all `0xFF`), meaning "no upper bound".
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1; // cannot overflow: end[last] != 0xFF
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn entry_layout_is_byte_exact() {
        let mut buf = [0u8; 16];
        assert_eq!(encode_entry(&mut buf, b"ab", b"xyz"), Some(13));
        assert_eq!(
            &buf[..13],
            &[2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'x', b'y', b'z']
        );
        let mut end = [0u8; 4];
        assert_eq!(encode_end(&mut end), Some(4));
        assert_eq!(end, [0xFF; 4]);
    }

    #[test]
    fn round_trip_several_records() {
        let mut buf = vec![0u8; 64];
        let mut at = encode_entry(&mut buf, b"k1", b"").unwrap();
        at += encode_entry(&mut buf[at..], b"", b"v").unwrap();
        at += encode_end(&mut buf[at..]).unwrap();
        let buf = &buf[..at];

        let (r, next) = decode(buf, 0).unwrap();
        assert_eq!(
            r,
            Record::Entry {
                key: 8..10,
                value: 10..10
            }
        );
        let (r, next) = decode(buf, next).unwrap();
        assert_eq!(
            r,
            Record::Entry {
                key: 18..18,
                value: 18..19
            }
        );
        assert_eq!(decode(buf, next), Ok((Record::End, at)));
    }

    #[test]
    fn encode_refuses_short_buffers() {
        assert_eq!(encode_entry(&mut [0u8; 12], b"ab", b"xyz"), None);
        assert_eq!(encode_end(&mut [0u8; 3]), None);
    }

    #[test]
    fn decode_rejects_truncation_and_oversize() {
        let mut buf = [0u8; 13];
        encode_entry(&mut buf, b"ab", b"xyz").unwrap();
        for cut in 0..13 {
            assert_eq!(decode(&buf[..cut], 0), Err(Malformed), "cut at {cut}");
        }
        let mut huge = [0u8; 8];
        huge[..4].copy_from_slice(&(MAX_KEY_LEN as u32 + 1).to_le_bytes());
        assert_eq!(decode(&huge, 0), Err(Malformed));
        assert_eq!(decode(&[0xFF; 4], usize::MAX - 1), Err(Malformed));
    }

    #[test]
    fn prefix_end_skips_ff_bytes() {
        assert_eq!(prefix_end(b"acct/"), Some(b"acct0".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }
}

//! Bounds checks of guest (pointer, length) ranges, in 64-bit arithmetic,
//! against the memory's current size. A failed check is a trap.

use std::ops::Range;

/// `NONE` (-1) as a length: an absent optional argument.
pub(crate) const NONE: i32 = rime_abi::NONE as i32;

/// A guest passed a range outside its memory (or another malformed
/// argument that the ABI makes a trap). Carried as the trap's error.
#[derive(Debug, thiserror::Error)]
#[error("host call `{call}`: guest range {ptr:#x}+{len:#x} is outside its {mem_len}-byte memory")]
pub(crate) struct BadPointer {
    pub call: &'static str,
    pub ptr: u32,
    pub len: u32,
    pub mem_len: usize,
}

/// The byte range `ptr .. ptr + len` if it lies inside a memory of
/// `mem_len` bytes. `ptr` and `len` are unsigned; the sum is computed in 64
/// bits, so it never wraps (`0xFFFF_F800 + 4096` is 4 GiB + 2 KiB, not 2 KiB).
#[inline]
pub(crate) fn range(
    call: &'static str,
    mem_len: usize,
    ptr: i32,
    len: i32,
) -> Result<Range<usize>, BadPointer> {
    let (p, l) = (u64::from(ptr as u32), u64::from(len as u32));
    let end = p + l; // < 2^33: no overflow
    if end <= mem_len as u64 {
        Ok(p as usize..end as usize)
    } else {
        Err(BadPointer {
            call,
            ptr: ptr as u32,
            len: len as u32,
            mem_len,
        })
    }
}

/// Like [`range`], but `len == NONE` means "absent" (`None`, unchecked).
#[inline]
pub(crate) fn optional_range(
    call: &'static str,
    mem_len: usize,
    ptr: i32,
    len: i32,
) -> Result<Option<Range<usize>>, BadPointer> {
    if len == NONE {
        Ok(None)
    } else {
        range(call, mem_len, ptr, len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_wrapping() {
        const M: usize = 65536;
        assert_eq!(range("t", M, 0, 0).unwrap(), 0..0);
        assert_eq!(range("t", M, M as i32, 0).unwrap(), M..M);
        assert!(range("t", M, M as i32 + 1, 0).is_err());
        assert_eq!(range("t", M, 10, 20).unwrap(), 10..30);
        assert!(range("t", M, M as i32 - 1, 2).is_err());
        // 0xFFFF_F800 + 4096 wraps to 2048 in 32 bits.
        assert!(range("t", M, 0xFFFF_F800u32 as i32, 4096).is_err());
        assert!(range("t", M, 0, -1).is_err());
        assert!(range("t", usize::MAX, -1, -1).is_ok());
        assert_eq!(optional_range("t", M, -5, NONE).unwrap(), None);
    }
}

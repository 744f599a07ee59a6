//! Little-endian field access for the on-disk formats of this crate (log
//! records, SMO payloads, the superblock, allocation files): fixed offsets
//! with [`u32_at`]/[`u64_at`], sequential payloads with [`Cursor`].

/// The u32 at `off` (little-endian). Panics if `b` is too short: callers
/// read fixed layouts whose length they checked.
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// The u64 at `off` (little-endian); see [`u32_at`].
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// A bounds-checked reader over a payload: every read is an `Option`, so a
/// malformed payload is an error, never a panic.
pub(crate) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32_at(b, 0))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64_at(b, 0))
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

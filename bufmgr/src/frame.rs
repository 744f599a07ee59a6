//! The header every frame (a page, or the first page of an extent) carries
//! on disk and in memory. The buffer manager owns it: it stamps the checksum
//! and length on write-back and checks them on every read from disk, so no
//! layer above ever sees a torn or rotten page as data.
//!
//! ```text
//!  0          4          8                      16
//! +----------+----------+----------------------+------------------------ ~ ---+
//! | crc32c   | pages    | page LSN             | payload                      |
//! | (u32 LE) | (u32 LE) | (u64 LE)             | (pages * PAGE_SIZE - 16)     |
//! +----------+----------+----------------------+------------------------ ~ ---+
//!  crc32c  over bytes [4, pages * PAGE_SIZE): the rest of the header and
//!          the whole payload of the frame
//!  pages   the frame's length in pages: 1, or n for an extent
//!  LSN     set by the storage layer; the write-back hook gets it so the log
//!          can be made durable up to it first (write-ahead rule)
//! ```

use crate::PAGE_SIZE;

pub const OFF_CRC: usize = 0;
pub const SIZE_CRC: usize = 4;
pub const OFF_PAGES: usize = OFF_CRC + SIZE_CRC;
pub const SIZE_PAGES: usize = 4;
pub const OFF_LSN: usize = OFF_PAGES + SIZE_PAGES;
pub const SIZE_LSN: usize = 8;
/// Bytes of every frame the buffer manager reserves; the payload follows.
pub const FRAME_HEADER_SIZE: usize = OFF_LSN + SIZE_LSN;

const _: () = assert!(FRAME_HEADER_SIZE == 16);
const _: () = assert!(
    FRAME_HEADER_SIZE.is_multiple_of(8),
    "payload stays 8-byte aligned"
);
const _: () = assert!(
    FRAME_HEADER_SIZE < PAGE_SIZE / 64,
    "header is a small fraction of a page"
);

/// What a frame read from disk turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Valid,
    /// Every byte zero: a page id the file has room for but that was never
    /// written (only possible after a crash; recovery decides what it means).
    NeverWritten,
    Corrupt(&'static str),
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub fn lsn(frame: &[u8]) -> u64 {
    u64::from_le_bytes(
        frame[OFF_LSN..OFF_LSN + SIZE_LSN]
            .try_into()
            .expect("8 bytes"),
    )
}

pub fn set_lsn(frame: &mut [u8], lsn: u64) {
    frame[OFF_LSN..OFF_LSN + SIZE_LSN].copy_from_slice(&lsn.to_le_bytes());
}

/// Stamps length and checksum before the frame goes to disk.
pub fn seal(frame: &mut [u8]) {
    let pages = (frame.len() / PAGE_SIZE) as u32;
    frame[OFF_PAGES..OFF_PAGES + SIZE_PAGES].copy_from_slice(&pages.to_le_bytes());
    let crc = crc32c::crc32c(&frame[OFF_PAGES..]);
    frame[OFF_CRC..OFF_CRC + SIZE_CRC].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a frame just read from disk.
pub fn check(frame: &[u8]) -> Check {
    let pages = read_u32(frame, OFF_PAGES) as usize;
    if pages * PAGE_SIZE != frame.len() {
        if frame.iter().all(|&b| b == 0) {
            return Check::NeverWritten;
        }
        return Check::Corrupt("frame length in the header does not match the frame read");
    }
    if read_u32(frame, OFF_CRC) != crc32c::crc32c(&frame[OFF_PAGES..]) {
        return Check::Corrupt("checksum mismatch");
    }
    Check::Valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_frames_check_and_any_flipped_bit_is_caught() {
        let mut f = vec![0u8; 2 * PAGE_SIZE];
        f[100] = 42;
        set_lsn(&mut f, 77);
        seal(&mut f);
        assert_eq!(check(&f), Check::Valid);
        assert_eq!(lsn(&f), 77);
        for bit in [0, 7, 8 * 40, 8 * 5000, 8 * (2 * PAGE_SIZE) - 1] {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(check(&g), Check::Corrupt(_)), "bit {bit}");
        }
    }

    #[test]
    fn zero_pages_are_never_written_not_corrupt() {
        assert_eq!(check(&vec![0u8; PAGE_SIZE]), Check::NeverWritten);
    }

    #[test]
    fn a_page_claiming_another_length_is_corrupt() {
        let mut f = vec![1u8; PAGE_SIZE];
        seal(&mut f);
        assert_eq!(check(&f), Check::Valid);
        let mut two = vec![0u8; 2 * PAGE_SIZE];
        two[..PAGE_SIZE].copy_from_slice(&f);
        assert!(matches!(check(&two), Check::Corrupt(_)));
    }
}

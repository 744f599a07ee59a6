//! The payload of an `Smo` log record: one structure modification of a
//! B+tree (split, merge, root change, ...) as the after-images of every
//! page it wrote, with the pages it allocated and freed. Recovery's
//! analysis replays the allocations; its redo writes the images.
//!
//! ```text
//!  kind u8            SmoCode in bits 0..7; bit 7 HOLED: images are holed
//!  root u64
//!  n_alloc u32        n_alloc × pid u64
//!  n_freed u32        n_freed × (pid u64, pages u32)
//!  n_pages u32        n_pages × image
//!
//!  image, HOLED clear (format 3 and before):
//!    pid u64 | PAGE_PAYLOAD bytes
//!  image, HOLED set (format 4):
//!    pid u64 | hole_at u16 | hole_len u16 | PAGE_PAYLOAD - hole_len bytes
//!    (the page's bytes [hole_at, hole_at + hole_len) are zero, not stored)
//! ```
//!
//! All integers little-endian.
//!
//! **Why holes.** A node keeps its free space between the slot array and
//! the heap, and a node built by a split, a merge or a compaction starts
//! from zeroed memory, so after a split that gap is most of a half-empty
//! node. Measured in `db_commit` (`sync` × 32, every commit a new key):
//! SMO images were 85 % of the bytes a log sync wrote, and the longest zero
//! run of an image averaged 1,141 of its 4,080 bytes, the same as the gap
//! between slots and heap (1,144). The encoding is lossless: the hole is
//! the image's longest run of zero bytes, whatever the page holds, so redo
//! writes back exactly the bytes the live tree had and this module knows
//! nothing of the node layout.

use crate::bytes::Cursor;
use rime_btree::{Smo, SmoKind};
use rime_bufmgr::{PAGE_PAYLOAD, PageId};
use std::ops::Range;

/// Bit 7 of the kind byte: the images are holed (format 4).
const HOLED: u8 = 0x80;
/// Bytes before an image's stored bytes: pid, hole_at, hole_len.
const HOLED_IMAGE_HEADER: usize = 8 + 2 + 2;
/// A shorter zero run is stored as is: eliding it would not pay for
/// anything measurable.
const MIN_HOLE: usize = 16;

const _: () = assert!(
    PAGE_PAYLOAD <= u16::MAX as usize,
    "hole_at and hole_len are u16"
);
const _: () = assert!(
    PAGE_PAYLOAD.is_multiple_of(8),
    "the zero-run search steps by words"
);
const _: () = assert!(
    SmoCode::ALL.len() < HOLED as usize,
    "codes stay below the HOLED bit"
);

/// The kind byte of an `Smo` payload. Codes are on disk: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SmoCode {
    Create = 1,
    Split = 2,
    RootSplit = 3,
    Merge = 4,
    RootCollapse = 5,
    Destroy = 6,
    ExtentAlloc = 7,
    Redistribute = 8,
}

impl SmoCode {
    const ALL: [SmoCode; 8] = [
        SmoCode::Create,
        SmoCode::Split,
        SmoCode::RootSplit,
        SmoCode::Merge,
        SmoCode::RootCollapse,
        SmoCode::Destroy,
        SmoCode::ExtentAlloc,
        SmoCode::Redistribute,
    ];

    /// The code of a tree's SMO kind; `None` for a kind this log format
    /// does not know (a newer tree: refused, never logged as garbage).
    pub fn of(kind: SmoKind) -> Option<SmoCode> {
        Some(match kind {
            SmoKind::Create => SmoCode::Create,
            SmoKind::Split => SmoCode::Split,
            SmoKind::RootSplit => SmoCode::RootSplit,
            SmoKind::Merge => SmoCode::Merge,
            SmoKind::RootCollapse => SmoCode::RootCollapse,
            SmoKind::Destroy => SmoCode::Destroy,
            SmoKind::ExtentAlloc => SmoCode::ExtentAlloc,
            SmoKind::Redistribute => SmoCode::Redistribute,
            _ => return None,
        })
    }

    pub fn from_byte(b: u8) -> Option<SmoCode> {
        Self::ALL.into_iter().find(|c| *c as u8 == b)
    }
}

/// Encodes `smo`, its images holed; `None` if its kind has no code
/// ([`SmoCode::of`]).
pub fn encode_smo(smo: &Smo<'_>) -> Option<Vec<u8>> {
    let code = SmoCode::of(smo.kind)?;
    let mut out = Vec::with_capacity(
        32 + smo.pages.len() * (HOLED_IMAGE_HEADER + PAGE_PAYLOAD) + smo.freed.len() * 12,
    );
    out.push(code as u8 | HOLED);
    out.extend_from_slice(&smo.root.to_le_bytes());
    out.extend_from_slice(&(smo.allocated.len() as u32).to_le_bytes());
    for p in smo.allocated {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out.extend_from_slice(&(smo.freed.len() as u32).to_le_bytes());
    for (p, n) in smo.freed {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(smo.pages.len() as u32).to_le_bytes());
    for (p, img) in smo.pages {
        debug_assert_eq!(img.len(), PAGE_PAYLOAD);
        let hole = longest_zero_run(img);
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&(hole.start as u16).to_le_bytes());
        out.extend_from_slice(&(hole.len() as u16).to_le_bytes());
        out.extend_from_slice(&img[..hole.start]);
        out.extend_from_slice(&img[hole.end..]);
    }
    Some(out)
}

/// The longest run of zero bytes in `img` (the first of equal ones), or
/// an empty range if none is [`MIN_HOLE`] long. Steps by 8-byte words,
/// then widens the best run of zero words byte by byte: a run of at least
/// 15 bytes holds a whole aligned word, so every run that can win is seen.
fn longest_zero_run(img: &[u8]) -> Range<usize> {
    const _: () = assert!(MIN_HOLE >= 15);
    // Whole words as integers: a redistribution logs four or five images
    // of 4,080 bytes, and comparing them as 8-byte slices took ~15
    // instructions a word (two fifths of a YCSB insert's).
    let (words, _) = img.as_chunks::<8>();
    let zero = |i: usize| u64::from_ne_bytes(words[i]) == 0;
    let mut best = 0..0;
    let mut i = 0;
    while i < words.len() {
        while i < words.len() && !zero(i) {
            i += 1;
        }
        let start = i;
        while i < words.len() && zero(i) {
            i += 1;
        }
        if i > start {
            let run = widen(img, 8 * start..8 * i);
            if run.len() > best.len() {
                best = run;
            }
        }
    }
    if best.len() < MIN_HOLE { 0..0 } else { best }
}

/// `run` (zero bytes) extended over the zero bytes either side of it.
fn widen(img: &[u8], run: Range<usize>) -> Range<usize> {
    let before = img[..run.start]
        .iter()
        .rev()
        .take_while(|&&b| b == 0)
        .count();
    let after = img[run.end..].iter().take_while(|&&b| b == 0).count();
    run.start - before..run.end + after
}

/// A page's after-image as logged: `head`, then `hole` zero bytes, then
/// `tail` (an image logged whole has no hole and no tail).
#[derive(Debug, Clone, Copy)]
pub struct PageImage<'a> {
    pub head: &'a [u8],
    pub hole: usize,
    pub tail: &'a [u8],
}

impl PageImage<'_> {
    /// Writes the whole image to `page` (a page payload).
    pub fn write_to(&self, page: &mut [u8]) {
        let (head, rest) = page.split_at_mut(self.head.len());
        let (hole, tail) = rest.split_at_mut(self.hole);
        head.copy_from_slice(self.head);
        hole.fill(0);
        tail.copy_from_slice(self.tail);
    }
}

/// A decoded `Smo` payload, borrowing the images.
#[derive(Debug)]
pub struct SmoRecord<'a> {
    pub kind: SmoCode,
    pub root: PageId,
    pub allocated: Vec<PageId>,
    pub freed: Vec<(PageId, u32)>,
    pub pages: Vec<(PageId, PageImage<'a>)>,
}

/// Decodes an `Smo` payload of either image format; `None` if malformed
/// (the record's checksum passed, so this means a bug or a foreign log,
/// reported as corruption).
pub fn decode_smo(b: &[u8]) -> Option<SmoRecord<'_>> {
    let mut cur = Cursor(b);
    let kind_byte = cur.u8()?;
    let holed = kind_byte & HOLED != 0;
    let kind = SmoCode::from_byte(kind_byte & !HOLED)?;
    let root = cur.u64()?;
    let n = cur.u32()? as usize;
    let mut allocated = Vec::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        allocated.push(cur.u64()?);
    }
    let n = cur.u32()? as usize;
    let mut freed = Vec::with_capacity(n.min(b.len() / 12));
    for _ in 0..n {
        freed.push((cur.u64()?, cur.u32()?));
    }
    let n = cur.u32()? as usize;
    let mut pages = Vec::with_capacity(n.min(b.len() / HOLED_IMAGE_HEADER));
    for _ in 0..n {
        let pid = cur.u64()?;
        let image = if holed {
            decode_holed(&mut cur)?
        } else {
            let head = cur.take(PAGE_PAYLOAD)?;
            PageImage {
                head,
                hole: 0,
                tail: &[],
            }
        };
        pages.push((pid, image));
    }
    if !cur.rest().is_empty() {
        return None;
    }
    Some(SmoRecord {
        kind,
        root,
        allocated,
        freed,
        pages,
    })
}

/// One holed image after its pid; `None` if the hole leaves the page.
fn decode_holed<'a>(cur: &mut Cursor<'a>) -> Option<PageImage<'a>> {
    let hole_at = cur.u16()? as usize;
    let hole = cur.u16()? as usize;
    let tail_len = PAGE_PAYLOAD.checked_sub(hole_at.checked_add(hole)?)?;
    Some(PageImage {
        head: cur.take(hole_at)?,
        hole,
        tail: cur.take(tail_len)?,
    })
}

#[cfg(test)]
// The tests list a page's zero runs; one run is a list of one.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes one SMO of `images` (pages 10, 11, ...) and decodes it.
    fn round_trip(images: &[Vec<u8>]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let pages: Vec<(PageId, &[u8])> = images
            .iter()
            .enumerate()
            .map(|(i, img)| (10 + i as PageId, img.as_slice()))
            .collect();
        let smo = Smo {
            kind: SmoKind::Split,
            root: 3,
            pages: &pages,
            allocated: &[11],
            freed: &[(40, 2)],
        };
        let bytes = encode_smo(&smo).unwrap();
        let rec = decode_smo(&bytes).unwrap();
        assert_eq!((rec.kind, rec.root), (SmoCode::Split, 3));
        assert_eq!((rec.allocated, rec.freed), (vec![11], vec![(40, 2)]));
        let back = rec
            .pages
            .iter()
            .enumerate()
            .map(|(i, (pid, img))| {
                assert_eq!(*pid, 10 + i as PageId);
                let mut page = vec![0xA5; PAGE_PAYLOAD];
                img.write_to(&mut page);
                page
            })
            .collect();
        (bytes, back)
    }

    /// A page of 0x11 with zeros at `zeros`.
    fn page_with_zeros(zeros: &[Range<usize>]) -> Vec<u8> {
        let mut page = vec![0x11; PAGE_PAYLOAD];
        for z in zeros {
            page[z.clone()].fill(0);
        }
        page
    }

    #[test]
    fn the_longest_zero_run_is_not_stored_and_comes_back() {
        let half_empty = page_with_zeros(&[500..3000]);
        let (bytes, back) = round_trip(std::slice::from_ref(&half_empty));
        assert_eq!(back, vec![half_empty]);
        let whole = 1 + 8 + 4 + 8 + 4 + 12 + 4 + HOLED_IMAGE_HEADER + PAGE_PAYLOAD;
        assert_eq!(
            bytes.len(),
            whole - 2500,
            "the 2,500 zero bytes are not logged"
        );
    }

    #[test]
    fn holes_at_either_end_and_the_longest_of_several() {
        for zeros in [
            vec![0..100],
            vec![PAGE_PAYLOAD - 100..PAGE_PAYLOAD],
            vec![0..PAGE_PAYLOAD],
            vec![3..40, 100..103, 1001..1200, 2000..2100],
            vec![],
            vec![7..22], // 15 bytes: below MIN_HOLE, stored as is
        ] {
            let page = page_with_zeros(&zeros);
            let (_, back) = round_trip(std::slice::from_ref(&page));
            assert_eq!(back, vec![page], "{zeros:?}");
        }
        assert_eq!(
            longest_zero_run(&page_with_zeros(&[3..40, 1001..1200])),
            1001..1200
        );
        assert_eq!(longest_zero_run(&page_with_zeros(&[7..22])), 0..0);
        assert_eq!(longest_zero_run(&page_with_zeros(&[7..23])), 7..23);
    }

    /// Format 3 wrote every image whole, with bit 7 of the kind clear: a
    /// log from before holes replays as it did.
    #[test]
    fn a_format_3_record_of_whole_images_still_decodes() {
        let image: Vec<u8> = (0..PAGE_PAYLOAD).map(|i| (i % 7) as u8).collect();
        let mut old = vec![SmoCode::Merge as u8];
        old.extend_from_slice(&5u64.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&9u64.to_le_bytes());
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&12u64.to_le_bytes());
        old.extend_from_slice(&image);
        let rec = decode_smo(&old).unwrap();
        assert_eq!(
            (rec.kind, rec.root, rec.freed),
            (SmoCode::Merge, 5, vec![(9, 1)])
        );
        let mut page = vec![0xFF; PAGE_PAYLOAD];
        rec.pages[0].1.write_to(&mut page);
        assert_eq!((rec.pages[0].0, page), (12, image));
    }

    #[test]
    fn a_hole_past_the_page_or_a_short_image_is_malformed() {
        let (good, _) = round_trip(&[page_with_zeros(&[100..200])]);
        let image_at = good.len() - (PAGE_PAYLOAD - 100) - 4;
        let mut past = good.clone();
        past[image_at + 2..image_at + 4].copy_from_slice(&(PAGE_PAYLOAD as u16).to_le_bytes());
        assert!(decode_smo(&past).is_none(), "hole_at + hole_len > page");
        assert!(
            decode_smo(&good[..good.len() - 1]).is_none(),
            "a byte short"
        );
        let mut long = good.clone();
        long.push(0);
        assert!(decode_smo(&long).is_none(), "a byte over");
        let mut unknown = good;
        unknown[0] = HOLED | 0x7F;
        assert!(decode_smo(&unknown).is_none(), "unknown code");
    }

    proptest! {
        /// Any images, with zero runs anywhere, come back byte for byte.
        #[test]
        fn any_images_come_back_as_they_were(
            runs in proptest::collection::vec(
                proptest::collection::vec((0..PAGE_PAYLOAD, 0usize..2000), 0..5), 1..4),
        ) {
            let images: Vec<Vec<u8>> = runs
                .iter()
                .map(|zs| {
                    let mut page: Vec<u8> = (0..PAGE_PAYLOAD).map(|i| (i * 31 % 251 + 1) as u8).collect();
                    for &(at, len) in zs {
                        page[at..(at + len).min(PAGE_PAYLOAD)].fill(0);
                    }
                    page
                })
                .collect();
            let (_, back) = round_trip(&images);
            prop_assert_eq!(back, images);
        }
    }
}

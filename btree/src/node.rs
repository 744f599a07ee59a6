//! The slotted node: one page payload (4080 bytes) holding a leaf or an
//! inner node, laid out as in vmcache/LeanStore.
//!
//! ```text
//!  offset  size  field
//!  ------  ----  -----------------------------------------------------------
//!     0      1   flags: bit 0 LEAF, bit 1 LOWER_INF (-inf lower fence),
//!                       bit 2 UPPER_INF (+inf upper fence)
//!     1      1   last insert (leaves; a split hint, see `split`): 0 none,
//!                1 past the last slot, 2 before the first slot
//!     2      2   count: number of slots
//!     4      2   heap_start: first used byte of the heap (grows down)
//!     6      2   heap_used: live heap bytes (fences + keys + values)
//!     8      2   prefix_len: bytes every key shares with both fences
//!    10      2   lower fence offset   12  2  lower fence length
//!    14      2   upper fence offset   16  2  upper fence length
//!    18      2   last new key's slot (leaves; split hint, with byte 20)
//!    20      1   insert run: new keys in a row each placed right after
//!                the one before (leaves; split hint; saturates at 255)
//!    21      1   head_at: suffix bytes every key in the node shares
//!                (at most 255); heads are taken after them
//!    22      2   reserved (0)
//!    24      8   upper_child: inner nodes' rightmost child (leaves: 0)
//!    32     64   hints: 16 sampled key heads narrowing the binary search
//!    96   12*n   slots, sorted by key:
//!                  +0 u16 heap offset  +2 u16 key suffix length
//!                  +4 u16 value length +6 u16 slot flags (bit 0 LARGE)
//!                  +8 u32 head: the 4 suffix bytes from head_at on,
//!                         big-endian, 0-padded
//!        ...     free space
//!  heap_start    heap: per slot `key suffix ++ value`, and both fences
//!  4080          end of payload
//! ```
//!
//! * Fences: every key `k` in the node satisfies `lower < k <= upper`
//!   (an infinite fence is a flag, so the empty key is an ordinary key).
//! * Prefix truncation: the `prefix_len` bytes both fences share are the
//!   first bytes of every key; slots store only the suffix. The prefix
//!   itself is read from the lower fence.
//! * Heads: a node whose fences share nothing (the root, and every node on
//!   the leftmost or rightmost path, has an infinite fence) has no prefix,
//!   yet its keys may all start alike (`user…` in YCSB, zero bytes in
//!   big-endian integers). `head_at` skips what the first and last keys
//!   share, so the heads and hints still tell keys apart; it is kept equal
//!   to that where that is 4 bytes or more, else 0 (`NodeMut::make_hints`),
//!   but any smaller value is a valid node, which is what a page written
//!   before it existed holds (0).
//! * Inner nodes: slot `i` holds separator `k_i` and child `c_i` (8 bytes,
//!   little-endian, as the value): `c_i` holds keys in `(k_{i-1}, k_i]`,
//!   `upper_child` holds keys `> k_{count-1}`.
//! * Leaves: the value is inline, or (flag LARGE) a 16-byte [`LargeRef`]
//!   to a page extent.
//!
//! All reads return `Option`, `None` meaning "these bytes are not a
//! consistent node": the optimistic reader turns that into a restart, a
//! latched reader into [`TreeError::Corrupt`](crate::TreeError). Nothing
//! here panics on any byte pattern.

use rime_bufmgr::{PAGE_PAYLOAD, PageId};
use std::cmp::Ordering;

/// `fence.cmp(key)`, eight bytes at a time, for a fence (or any bytes at
/// the end of a node). Not `memcmp`: a fence lies at the end of its node's
/// heap, so at the end of its frame, and glibc's AVX-512 `memcmp` compares
/// a short slice with one 32-byte masked load, which reaches past the
/// fence into the next frame. In YCSB E (`rime-bench ycsb -w E -e
/// rime-btree`, 1 KiB values, a leaf per three entries) that load took
/// 29% of the samples, its fence's own line prefetched (`perf annotate`);
/// the next frame's first line, a miss of its own, is the likely cost.
/// With this compare the scans ran 21% faster.
pub fn cmp_fence(fence: &[u8], key: &[u8]) -> Ordering {
    let common = fence.len().min(key.len());
    let (f, k) = (
        fence[..common].chunks_exact(8),
        key[..common].chunks_exact(8),
    );
    let (f_rest, k_rest) = (f.remainder(), k.remainder());
    let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or_default());
    f.zip(k)
        .map(|(a, b)| word(a).cmp(&word(b)))
        .chain(f_rest.iter().zip(k_rest).map(|(a, b)| a.cmp(b)))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| fence.len().cmp(&key.len()))
}

/// Bytes in one node: the payload of one buffer-manager page.
pub const NODE_SIZE: usize = PAGE_PAYLOAD;
/// Fixed header bytes (see the layout above).
pub const HEADER_SIZE: usize = 96;
/// Bytes per slot.
pub const SLOT_SIZE: usize = 12;
/// Sampled heads in the header.
pub const HINT_COUNT: usize = 16;
/// Upper bound on slots: a slot and at least a zero-length entry.
pub const MAX_SLOTS: usize = (NODE_SIZE - HEADER_SIZE) / SLOT_SIZE;

pub const FLAG_LEAF: u8 = 1;
pub const FLAG_LOWER_INF: u8 = 2;
pub const FLAG_UPPER_INF: u8 = 4;
/// Slot flag: the value is a [`LargeRef`] to an extent.
pub const SLOT_LARGE: u16 = 1;

const OFF_FLAGS: usize = 0;
const OFF_LAST_INSERT: usize = 1;
const OFF_COUNT: usize = 2;
const OFF_HEAP_START: usize = 4;
const OFF_HEAP_USED: usize = 6;
const OFF_PREFIX: usize = 8;
const OFF_LOWER: usize = 10;
const OFF_UPPER: usize = 14;
const OFF_LAST_SLOT: usize = OFF_UPPER + 4;
const OFF_INSERT_RUN: usize = OFF_LAST_SLOT + 2;
const OFF_HEAD_AT: usize = OFF_INSERT_RUN + 1;
const OFF_UPPER_CHILD: usize = 24;
const OFF_HINTS: usize = 32;

const _: () = assert!(OFF_HEAD_AT < OFF_UPPER_CHILD);
/// The most suffix bytes `head_at` skips (it is one byte).
pub const MAX_HEAD_AT: usize = u8::MAX as usize;
const _: () = assert!(OFF_UPPER_CHILD & 7 == 0 && OFF_UPPER_CHILD + 8 == OFF_HINTS);
const _: () = assert!(OFF_HINTS + 4 * HINT_COUNT == HEADER_SIZE);
const _: () = assert!(NODE_SIZE <= u16::MAX as usize, "offsets are u16");
const _: () = assert!(NODE_SIZE == 4080);

/// An entry's value when it lives in an extent: first page and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LargeRef {
    pub pid: PageId,
    pub len: u64,
}

impl LargeRef {
    pub const SIZE: usize = 16;
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.pid.to_le_bytes());
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<LargeRef> {
        let b: &[u8; 16] = b.try_into().ok()?;
        let pid = u64::from_le_bytes(b[..8].try_into().ok()?);
        let len = u64::from_le_bytes(b[8..].try_into().ok()?);
        Some(LargeRef { pid, len })
    }
}

/// Where the last new key went in a leaf (header byte 1): the split rule's
/// evidence of an ascending or descending insert pattern (InnoDB keeps the
/// same in `PAGE_DIRECTION`). Only a hint: any value is a valid node, and a
/// rebuilt node (split half, merge, compaction) starts with `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastInsert {
    None,
    /// Past the last slot: a new maximum.
    Last,
    /// Before the first slot: a new minimum.
    First,
}

/// One decoded slot.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub off: usize,
    pub key_len: usize,
    pub val_len: usize,
    pub flags: u16,
    pub head: u32,
}

/// The first four bytes of `key`, big-endian and zero-padded: comparing
/// heads as integers orders keys by their first four bytes.
#[inline]
pub fn head(key: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = key.len().min(4);
    b[..n].copy_from_slice(&key[..n]);
    u32::from_be_bytes(b)
}

/// The head of a key suffix in a node whose keys share its first `at`
/// bytes (`head_at`): the four bytes after them.
#[inline]
pub fn head_after(suffix: &[u8], at: usize) -> u32 {
    head(suffix.get(at..).unwrap_or(&[]))
}

/// Length of the longest common prefix.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Bytes an entry takes in a node: slot plus heap.
pub const fn entry_size(suffix_len: usize, val_len: usize) -> usize {
    SLOT_SIZE + suffix_len + val_len
}

/// A read-only view of a node's bytes (possibly racy: see module docs).
#[derive(Clone, Copy)]
pub struct Node<'a>(pub &'a [u8]);

impl<'a> Node<'a> {
    #[inline]
    fn u16_at(&self, o: usize) -> Option<usize> {
        Some(u16::from_le_bytes(self.0.get(o..o + 2)?.try_into().ok()?) as usize)
    }
    #[inline]
    fn u32_at(&self, o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.0.get(o..o + 4)?.try_into().ok()?))
    }
    #[inline]
    fn u64_at(&self, o: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.0.get(o..o + 8)?.try_into().ok()?))
    }
    pub fn flags(&self) -> u8 {
        self.0.get(OFF_FLAGS).copied().unwrap_or(0)
    }
    pub fn is_leaf(&self) -> bool {
        self.flags() & FLAG_LEAF != 0
    }
    /// The split hint: see [`LastInsert`].
    pub fn last_insert(&self) -> LastInsert {
        match self.0.get(OFF_LAST_INSERT) {
            Some(1) => LastInsert::Last,
            Some(2) => LastInsert::First,
            _ => LastInsert::None,
        }
    }
    pub fn lower_inf(&self) -> bool {
        self.flags() & FLAG_LOWER_INF != 0
    }
    pub fn upper_inf(&self) -> bool {
        self.flags() & FLAG_UPPER_INF != 0
    }
    /// The run of new keys ending at the last one (see
    /// [`NodeMut::note_new_key`]): its slot and how many new keys in a
    /// row each went right after the one before (0: no record).
    pub fn insert_run(&self) -> (usize, u8) {
        (
            self.u16_at(OFF_LAST_SLOT).unwrap_or(0),
            self.0.get(OFF_INSERT_RUN).copied().unwrap_or(0),
        )
    }
    /// Number of slots, checked against what fits in a node.
    #[inline]
    pub fn count(&self) -> Option<usize> {
        let n = self.u16_at(OFF_COUNT)?;
        (n <= MAX_SLOTS).then_some(n)
    }
    pub fn heap_start(&self) -> Option<usize> {
        self.u16_at(OFF_HEAP_START)
    }
    pub fn heap_used(&self) -> Option<usize> {
        self.u16_at(OFF_HEAP_USED)
    }
    pub fn prefix_len(&self) -> Option<usize> {
        self.u16_at(OFF_PREFIX)
    }
    /// Suffix bytes every key shares, skipped by the heads (module docs).
    #[inline]
    pub fn head_at(&self) -> usize {
        self.0.get(OFF_HEAD_AT).copied().unwrap_or(0) as usize
    }
    fn heap_bytes(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        if off < HEADER_SIZE {
            return None;
        }
        self.0.get(off..off.checked_add(len)?)
    }
    /// The lower fence's bytes (empty when infinite).
    pub fn lower_fence(&self) -> Option<&'a [u8]> {
        self.heap_bytes(self.u16_at(OFF_LOWER)?, self.u16_at(OFF_LOWER + 2)?)
    }
    /// The upper fence's bytes (empty when infinite).
    pub fn upper_fence(&self) -> Option<&'a [u8]> {
        self.heap_bytes(self.u16_at(OFF_UPPER)?, self.u16_at(OFF_UPPER + 2)?)
    }
    /// The bytes every key in the node starts with.
    pub fn prefix(&self) -> Option<&'a [u8]> {
        self.lower_fence()?.get(..self.prefix_len()?)
    }
    pub fn upper_child(&self) -> Option<PageId> {
        self.u64_at(OFF_UPPER_CHILD)
    }
    pub fn hint(&self, i: usize) -> Option<u32> {
        self.u32_at(OFF_HINTS + 4 * i)
    }
    #[inline]
    pub fn slot(&self, i: usize) -> Option<Slot> {
        let o = HEADER_SIZE + i * SLOT_SIZE;
        let s = self.0.get(o..o + SLOT_SIZE)?;
        let slot = Slot {
            off: u16::from_le_bytes([s[0], s[1]]) as usize,
            key_len: u16::from_le_bytes([s[2], s[3]]) as usize,
            val_len: u16::from_le_bytes([s[4], s[5]]) as usize,
            flags: u16::from_le_bytes([s[6], s[7]]),
            head: u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
        };
        (slot.off >= HEADER_SIZE && slot.off + slot.key_len + slot.val_len <= NODE_SIZE)
            .then_some(slot)
    }
    #[inline]
    pub fn suffix(&self, i: usize) -> Option<&'a [u8]> {
        let s = self.slot(i)?;
        self.0.get(s.off..s.off + s.key_len)
    }
    #[inline]
    pub fn value(&self, i: usize) -> Option<&'a [u8]> {
        let s = self.slot(i)?;
        self.0.get(s.off + s.key_len..s.off + s.key_len + s.val_len)
    }
    pub fn is_large(&self, i: usize) -> Option<bool> {
        Some(self.slot(i)?.flags & SLOT_LARGE != 0)
    }
    /// Child `i` of an inner node; `i == count` is the upper child.
    #[inline]
    pub fn child(&self, i: usize) -> Option<PageId> {
        if i == self.count()? {
            return self.upper_child();
        }
        Some(u64::from_le_bytes(self.value(i)?.try_into().ok()?))
    }
    /// Appends slot `i`'s full key (prefix ++ suffix) to `out`.
    pub fn full_key_into(&self, i: usize, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(self.prefix()?);
        out.extend_from_slice(self.suffix(i)?);
        Some(())
    }
    /// The slot range a key with this head can be in, from the hints.
    #[inline]
    fn hint_range(&self, key_head: u32, count: usize) -> Option<(usize, usize)> {
        if count <= 2 * HINT_COUNT {
            return Some((0, count));
        }
        let dist = count / (HINT_COUNT + 1);
        // One bounds check for the whole array, not one per hint.
        let hints = self.0.get(OFF_HINTS..OFF_HINTS + 4 * HINT_COUNT)?;
        let hint = |i: usize| {
            let h = &hints[4 * i..4 * i + 4];
            u32::from_le_bytes([h[0], h[1], h[2], h[3]])
        };
        let mut pos = 0;
        while pos < HINT_COUNT && hint(pos) < key_head {
            pos += 1;
        }
        let mut pos2 = pos;
        while pos2 < HINT_COUNT && hint(pos2) == key_head {
            pos2 += 1;
        }
        let lo = pos * dist;
        let hi = if pos2 < HINT_COUNT {
            (pos2 + 1) * dist
        } else {
            count
        };
        Some((lo, hi.min(count)))
    }
    /// Lower bound of `key`: the first slot whose key is `>= key`, and
    /// whether it is equal. `key` must lie inside the node's fences (it
    /// then starts with the prefix); if it does not, the bytes are torn.
    #[inline]
    pub fn search(&self, key: &[u8]) -> Option<(usize, bool)> {
        let count = self.count()?;
        let suffix = key.get(self.prefix_len()?..)?;
        let at = self.head_at();
        let key_head = if at == 0 {
            head(suffix)
        } else {
            match self.head_past_shared(suffix, at, count)? {
                Ok(h) => h,
                Err(pos) => return Some((pos, false)),
            }
        };
        let (mut lo, mut hi) = self.hint_range(key_head, count)?;
        if let Some(slots) = self
            .0
            .get(HEADER_SIZE + lo * SLOT_SIZE..HEADER_SIZE + hi * SLOT_SIZE)
        {
            crate::olc::prefetch_bytes(slots);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // Heads first: the rest of the slot is decoded only on a tie.
            let ord = match key_head.cmp(&self.slot_head(mid)?) {
                Ordering::Equal => self.cmp_tied(suffix, at, mid)?,
                o => o,
            };
            match ord {
                Ordering::Less => hi = mid,
                Ordering::Greater => lo = mid + 1,
                Ordering::Equal => return Some((mid, true)),
            }
        }
        Some((lo, false))
    }
    /// The head of `suffix` in a node whose keys share their first `at`
    /// bytes (`head_at` > 0), or, if `suffix` does not start with those
    /// bytes, `Err` of its place: before every key or after them all.
    #[inline]
    fn head_past_shared(
        &self,
        suffix: &[u8],
        at: usize,
        count: usize,
    ) -> Option<Result<u32, usize>> {
        let shared = self.suffix(0)?.get(..at)?;
        Some(match suffix.get(..at).unwrap_or(suffix).cmp(shared) {
            Ordering::Less => Err(0),
            Ordering::Greater => Err(count),
            Ordering::Equal => Ok(head_after(suffix, at)),
        })
    }
    /// Slot `i`'s head (its suffix's 4 bytes after `head_at`), the rest
    /// undecoded.
    #[inline]
    fn slot_head(&self, i: usize) -> Option<u32> {
        self.u32_at(HEADER_SIZE + i * SLOT_SIZE + 8)
    }
    /// `suffix` against slot `i`'s key suffix, their heads (after their
    /// shared first `at` bytes) being equal.
    #[inline]
    fn cmp_tied(&self, suffix: &[u8], at: usize, i: usize) -> Option<Ordering> {
        let slot = self.slot(i)?;
        Some(if suffix.len() <= at + 4 && slot.key_len <= at + 4 {
            // Both keys end in their heads: equal heads mean one is the
            // other plus zero bytes, so the lengths decide (no heap read).
            suffix.len().cmp(&slot.key_len)
        } else {
            suffix.cmp(self.0.get(slot.off..slot.off + slot.key_len)?)
        })
    }
    /// The child of an inner node that holds `key` (`strict`: that holds
    /// the smallest key greater than `key`).
    #[inline]
    pub fn child_for(&self, key: &[u8], strict: bool) -> Option<PageId> {
        let (pos, found) = self.search(key)?;
        self.child(if strict && found { pos + 1 } else { pos })
    }
    /// Whether `key` lies inside the fences.
    pub fn covers(&self, key: &[u8]) -> Option<bool> {
        let above = self.lower_inf() || cmp_fence(self.lower_fence()?, key).is_lt();
        let below = self.upper_inf() || cmp_fence(self.upper_fence()?, key).is_ge();
        Some(above && below)
    }
    /// Contiguous free bytes between the slots and the heap.
    pub fn free_space(&self) -> Option<usize> {
        self.heap_start()?
            .checked_sub(HEADER_SIZE + self.count()? * SLOT_SIZE)
    }
    /// Free bytes once the heap is compacted.
    pub fn free_after_compaction(&self) -> Option<usize> {
        NODE_SIZE.checked_sub(HEADER_SIZE + self.count()? * SLOT_SIZE + self.heap_used()?)
    }
    /// Bytes in use (header, slots, heap).
    pub fn used(&self) -> Option<usize> {
        Some(NODE_SIZE - self.free_after_compaction()?)
    }
    /// Optional lower fence: `None` when infinite.
    pub fn lower(&self) -> Option<Option<&'a [u8]>> {
        Some(if self.lower_inf() {
            None
        } else {
            Some(self.lower_fence()?)
        })
    }
    /// Optional upper fence: `None` when infinite.
    pub fn upper(&self) -> Option<Option<&'a [u8]>> {
        Some(if self.upper_inf() {
            None
        } else {
            Some(self.upper_fence()?)
        })
    }
}

/// The prefix all keys between two fences share.
pub fn fence_prefix(lower: Option<&[u8]>, upper: Option<&[u8]>) -> usize {
    match (lower, upper) {
        (Some(l), Some(u)) => common_prefix(l, u),
        _ => 0,
    }
}

/// A node being written, under an exclusive latch (or a private buffer).
pub struct NodeMut<'a>(pub &'a mut [u8]);

impl NodeMut<'_> {
    pub fn view(&self) -> Node<'_> {
        Node(self.0)
    }
    fn put_u16(&mut self, o: usize, v: usize) {
        self.0[o..o + 2].copy_from_slice(&(v as u16).to_le_bytes());
    }
    fn set_count(&mut self, n: usize) {
        self.put_u16(OFF_COUNT, n)
    }
    /// Records where a new key went: slot `pos` of a leaf that had
    /// `count` entries before it. The split rule's evidence of sequential
    /// inserts (`split`): byte 1 says whether it went past the last slot
    /// or before the first ([`LastInsert`]), bytes 18-20 where it went and
    /// whether it extends a run of keys each placed right after the one
    /// before (as InnoDB's `PAGE_LAST_INSERT` and `PAGE_N_DIRECTION`).
    pub fn note_new_key(&mut self, pos: usize, count: usize) {
        self.set_last_insert(if pos == count {
            LastInsert::Last
        } else if pos == 0 {
            LastInsert::First
        } else {
            LastInsert::None
        });
        let (last, run) = self.view().insert_run();
        let run = if run > 0 && last + 1 == pos {
            run.saturating_add(1)
        } else {
            1
        };
        self.put_u16(OFF_LAST_SLOT, pos);
        self.0[OFF_INSERT_RUN] = run;
    }
    fn set_last_insert(&mut self, at: LastInsert) {
        self.0[OFF_LAST_INSERT] = match at {
            LastInsert::None => 0,
            LastInsert::Last => 1,
            LastInsert::First => 2,
        };
    }
    pub fn set_upper_child(&mut self, pid: PageId) {
        self.0[OFF_UPPER_CHILD..OFF_UPPER_CHILD + 8].copy_from_slice(&pid.to_le_bytes());
    }
    /// Resets the node to empty with the given fences (`None` = infinite).
    /// Fences are at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) each, so
    /// they always fit.
    pub fn init(&mut self, leaf: bool, lower: Option<&[u8]>, upper: Option<&[u8]>) {
        self.0[..HEADER_SIZE].fill(0);
        let mut flags = if leaf { FLAG_LEAF } else { 0 };
        if lower.is_none() {
            flags |= FLAG_LOWER_INF;
        }
        if upper.is_none() {
            flags |= FLAG_UPPER_INF;
        }
        self.0[OFF_FLAGS] = flags;
        self.put_u16(OFF_HEAP_START, NODE_SIZE);
        for (field, fence) in [(OFF_LOWER, lower), (OFF_UPPER, upper)] {
            let fence = fence.unwrap_or(&[]);
            let start = self.heap_alloc(fence.len());
            self.0[start..start + fence.len()].copy_from_slice(fence);
            self.put_u16(field, start);
            self.put_u16(field + 2, fence.len());
        }
        self.put_u16(OFF_PREFIX, fence_prefix(lower, upper));
    }
    /// Takes `len` bytes off the heap (the caller checked there is room).
    fn heap_alloc(&mut self, len: usize) -> usize {
        let view = self.view();
        let start = view.heap_start().unwrap_or(NODE_SIZE) - len;
        let used = view.heap_used().unwrap_or(0) + len;
        self.put_u16(OFF_HEAP_START, start);
        self.put_u16(OFF_HEAP_USED, used);
        start
    }
    fn write_slot(&mut self, i: usize, s: Slot) {
        let o = HEADER_SIZE + i * SLOT_SIZE;
        let b = &mut self.0[o..o + SLOT_SIZE];
        b[0..2].copy_from_slice(&(s.off as u16).to_le_bytes());
        b[2..4].copy_from_slice(&(s.key_len as u16).to_le_bytes());
        b[4..6].copy_from_slice(&(s.val_len as u16).to_le_bytes());
        b[6..8].copy_from_slice(&s.flags.to_le_bytes());
        b[8..12].copy_from_slice(&s.head.to_le_bytes());
    }
    /// Inserts `suffix -> value` as slot `pos`. Returns `None` (changing
    /// nothing) if it does not fit even after compaction.
    pub fn insert_at(&mut self, pos: usize, suffix: &[u8], value: &[u8], flags: u16) -> Option<()> {
        let view = self.view();
        let count = view.count()?;
        let need = entry_size(suffix.len(), value.len());
        if pos > count || view.free_after_compaction()? < need {
            return None;
        }
        if view.free_space()? < need {
            self.compact()?;
        }
        let start = self.heap_alloc(suffix.len() + value.len());
        self.0[start..start + suffix.len()].copy_from_slice(suffix);
        self.0[start + suffix.len()..start + suffix.len() + value.len()].copy_from_slice(value);
        let from = HEADER_SIZE + pos * SLOT_SIZE;
        let to = HEADER_SIZE + count * SLOT_SIZE;
        self.0.copy_within(from..to, from + SLOT_SIZE);
        let slot = Slot {
            off: start,
            key_len: suffix.len(),
            val_len: value.len(),
            flags,
            head: head_after(suffix, self.view().head_at()),
        };
        self.write_slot(pos, slot);
        self.set_count(count + 1);
        self.make_hints();
        Some(())
    }
    /// Appends an entry given its full key (used when building nodes in key
    /// order; `key` must start with the node's prefix).
    pub fn append_full(&mut self, key: &[u8], value: &[u8], flags: u16) -> Option<()> {
        let count = self.view().count()?;
        let suffix = key.get(self.view().prefix_len()?..)?;
        let need = entry_size(suffix.len(), value.len());
        if self.view().free_space()? < need {
            return None;
        }
        let start = self.heap_alloc(suffix.len() + value.len());
        self.0[start..start + suffix.len()].copy_from_slice(suffix);
        self.0[start + suffix.len()..start + suffix.len() + value.len()].copy_from_slice(value);
        let slot = Slot {
            off: start,
            key_len: suffix.len(),
            val_len: value.len(),
            flags,
            head: head_after(suffix, self.view().head_at()),
        };
        self.write_slot(count, slot);
        self.set_count(count + 1);
        Some(())
    }
    /// Removes slot `pos` (its heap bytes become garbage until compaction).
    pub fn remove_at(&mut self, pos: usize) -> Option<()> {
        let view = self.view();
        let count = view.count()?;
        let slot = view.slot(pos)?;
        let used = view.heap_used()?.checked_sub(slot.key_len + slot.val_len)?;
        let from = HEADER_SIZE + (pos + 1) * SLOT_SIZE;
        let to = HEADER_SIZE + count * SLOT_SIZE;
        self.0.copy_within(from..to, from - SLOT_SIZE);
        self.put_u16(OFF_HEAP_USED, used);
        self.set_count(count - 1);
        self.make_hints();
        Some(())
    }
    /// Overwrites slot `pos`'s value with one of the same length.
    pub fn value_mut(&mut self, pos: usize) -> Option<&mut [u8]> {
        let s = self.view().slot(pos)?;
        self.0
            .get_mut(s.off + s.key_len..s.off + s.key_len + s.val_len)
    }
    /// Rewrites the node with its heap packed at the end.
    pub fn compact(&mut self) -> Option<()> {
        let mut tmp = [0u8; NODE_SIZE];
        let mut out = NodeMut(&mut tmp);
        rebuild_into(self.view(), &mut out, None)?;
        self.0.copy_from_slice(&tmp);
        Some(())
    }
    /// Brings `head_at` up to date with the first and last keys, then
    /// recomputes the search hints. Every change to a node's slots ends
    /// with it.
    pub fn make_hints(&mut self) {
        self.fit_head_at();
        self.sample_hints();
    }
    /// Sets `head_at` to what the first and last keys share (so, the keys
    /// being sorted, what every key shares), re-deriving every slot's head
    /// if it changed. A key inserted at either end may shorten it.
    fn fit_head_at(&mut self) {
        let view = self.view();
        let count = view.count().unwrap_or(0);
        let at = match (count >= 2).then(|| (view.suffix(0), view.suffix(count - 1))) {
            Some((Some(first), Some(last))) => common_prefix(first, last).min(MAX_HEAD_AT),
            _ => 0,
        };
        // Skipped only where every plain head would be the same: below
        // that the heads still sort most keys, and a search would pay the
        // shared bytes' check for little.
        let at = if at >= 4 { at } else { 0 };
        if at == view.head_at() {
            return;
        }
        self.0[OFF_HEAD_AT] = at as u8;
        for i in 0..count {
            let Some(mut slot) = self.view().slot(i) else {
                continue;
            };
            let Some(suffix) = self.view().suffix(i) else {
                continue;
            };
            slot.head = head_after(suffix, at);
            self.write_slot(i, slot);
        }
    }
    /// Recomputes the search hints from the slots' heads (vmcache samples
    /// every `count / (HINT_COUNT + 1)`-th head).
    pub fn sample_hints(&mut self) {
        let count = self.view().count().unwrap_or(0);
        let dist = count / (HINT_COUNT + 1);
        for i in 0..HINT_COUNT {
            let h = self
                .view()
                .slot(dist * (i + 1))
                .map(|s| s.head)
                .unwrap_or(0);
            let o = OFF_HINTS + 4 * i;
            self.0[o..o + 4].copy_from_slice(&h.to_le_bytes());
        }
    }
}

/// A node's (lower, upper) fences; `None` is infinite.
pub type Fences<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds `src`'s contents into `dst` with the same fences (or with new
/// fences `fences = (lower, upper)`), entries re-prefixed as needed.
pub fn rebuild_into(
    src: Node<'_>,
    dst: &mut NodeMut<'_>,
    fences: Option<Fences<'_>>,
) -> Option<()> {
    let (lower, upper) = match fences {
        Some(f) => f,
        None => (src.lower()?, src.upper()?),
    };
    dst.init(src.is_leaf(), lower, upper);
    dst.set_upper_child(src.upper_child()?);
    copy_entries(src, dst, 0..src.count()?)?;
    dst.make_hints();
    Some(())
}

/// Appends entries `range` of `src` to `dst` (keys re-prefixed).
pub fn copy_entries(
    src: Node<'_>,
    dst: &mut NodeMut<'_>,
    range: std::ops::Range<usize>,
) -> Option<()> {
    let mut key = [0u8; crate::MAX_KEY_LEN];
    let prefix = src.prefix()?;
    for i in range {
        let suffix = src.suffix(i)?;
        let len = prefix.len() + suffix.len();
        let key = key.get_mut(..len)?;
        key[..prefix.len()].copy_from_slice(prefix);
        key[prefix.len()..].copy_from_slice(suffix);
        dst.append_full(key, src.value(i)?, src.slot(i)?.flags)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cmp_fence` is the slices' own order: every pair of a small
    /// alphabet's strings up to 19 bytes (whole words, remainders, one a
    /// prefix of the other, bytes above 0x7F).
    #[test]
    fn cmp_fence_orders_as_slices_do() {
        let alphabet = [0u8, 1, 0x7F, 0x80, 0xFF];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut strings: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..400 {
            let len = (next() % 20) as usize;
            strings.push((0..len).map(|_| alphabet[(next() % 5) as usize]).collect());
        }
        // Prefixes and one-byte changes of each other, too.
        for i in 0..100 {
            let s = strings[i].clone();
            strings.push(s[..s.len() / 2].to_vec());
            let mut t = s.clone();
            t.push(0);
            strings.push(t);
        }
        for a in &strings {
            for b in &strings {
                assert_eq!(
                    cmp_fence(a, b),
                    a.as_slice().cmp(b.as_slice()),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    fn leaf(buf: &mut [u8], lower: Option<&[u8]>, upper: Option<&[u8]>) {
        NodeMut(buf).init(true, lower, upper);
    }

    #[test]
    fn init_sets_fences_and_prefix() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, Some(b"user:0010"), Some(b"user:0020"));
        let n = Node(&buf);
        assert!(n.is_leaf() && !n.lower_inf() && !n.upper_inf());
        assert_eq!(n.prefix(), Some(&b"user:00"[..]));
        assert_eq!(n.count(), Some(0));
        assert_eq!(n.covers(b"user:0015"), Some(true));
        assert_eq!(n.covers(b"user:0010"), Some(false));
        assert_eq!(n.covers(b"user:0020"), Some(true));
    }

    #[test]
    fn insert_search_remove_in_order() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, None, None);
        let mut keys: Vec<Vec<u8>> = (0..100u32)
            .map(|i| (i * 7919 % 1000).to_be_bytes().to_vec())
            .collect();
        for k in &keys {
            let (pos, found) = Node(&buf).search(k).unwrap();
            assert!(!found);
            NodeMut(&mut buf).insert_at(pos, k, b"value", 0).unwrap();
        }
        keys.sort();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(Node(&buf).search(k), Some((i, true)));
            assert_eq!(Node(&buf).value(i), Some(&b"value"[..]));
        }
        for k in keys.iter().step_by(2) {
            let (pos, found) = Node(&buf).search(k).unwrap();
            assert!(found);
            NodeMut(&mut buf).remove_at(pos).unwrap();
        }
        assert_eq!(Node(&buf).count(), Some(50));
        NodeMut(&mut buf).compact().unwrap();
        for (i, k) in keys.iter().skip(1).step_by(2).enumerate() {
            assert_eq!(Node(&buf).search(k), Some((i, true)));
        }
    }

    /// Every slot's head is the 4 bytes after `head_at`, and the hints
    /// are sampled from them.
    fn assert_heads_right(buf: &[u8]) {
        let n = Node(buf);
        let at = n.head_at();
        for i in 0..n.count().unwrap() {
            let suffix = n.suffix(i).unwrap();
            assert_eq!(suffix.get(..at), n.suffix(0).unwrap().get(..at), "slot {i}");
            assert_eq!(n.slot(i).unwrap().head, head_after(suffix, at), "slot {i}");
        }
        let mut copy = [0u8; NODE_SIZE];
        copy.copy_from_slice(buf);
        NodeMut(&mut copy).sample_hints();
        assert_eq!(&copy[..HEADER_SIZE], &buf[..HEADER_SIZE], "stale hints");
    }

    /// `key` placed in `sorted` (the node's keys in order) by comparison.
    fn place(sorted: &[Vec<u8>], key: &[u8]) -> (usize, bool) {
        match sorted.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// A node without a prefix (both fences infinite, as the root's) whose
    /// keys all start alike: before `head_at`, every head was `user` and
    /// every search a binary search of whole keys (YCSB's reads spent a
    /// third of their instructions there).
    #[test]
    fn keys_that_all_start_alike_are_told_apart_by_their_heads() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, None, None);
        let mut sorted: Vec<Vec<u8>> = Vec::new();
        for i in 0..120u32 {
            let k = format!("user{:08}", i * 7919 % 100_000).into_bytes();
            let (pos, found) = Node(&buf).search(&k).unwrap();
            assert!(!found);
            NodeMut(&mut buf).insert_at(pos, &k, b"v", 0).unwrap();
            sorted.insert(pos, k);
            assert_heads_right(&buf);
        }
        assert!(Node(&buf).head_at() >= 7, "{}", Node(&buf).head_at());
        let heads: std::collections::HashSet<u32> = (0..sorted.len())
            .map(|i| Node(&buf).slot(i).unwrap().head)
            .collect();
        assert!(heads.len() > sorted.len() / 2, "heads still alike");
        // Keys present, absent between them, before, after, and sharing
        // only part of the common bytes, or all of them and no more.
        let mut probes: Vec<Vec<u8>> = sorted.clone();
        for k in &sorted {
            probes.push([k.as_slice(), b"!"].concat());
            probes.push(k[..k.len() - 1].to_vec());
        }
        for p in [
            &b""[..],
            b"apple",
            b"user",
            b"user0",
            b"user00",
            b"user000",
            b"user1",
            b"zebra",
        ] {
            probes.push(p.to_vec());
        }
        for p in &probes {
            assert_eq!(Node(&buf).search(p), Some(place(&sorted, p)), "{p:?}");
        }
        // A key that breaks the common bytes, first at the front, then at
        // the back: every head is re-derived; removing it restores them.
        for outsider in [&b"apple"[..], b"zebra"] {
            let (pos, _) = Node(&buf).search(outsider).unwrap();
            NodeMut(&mut buf).insert_at(pos, outsider, b"v", 0).unwrap();
            sorted.insert(pos, outsider.to_vec());
            assert_eq!(Node(&buf).head_at(), 0);
            assert_heads_right(&buf);
            for p in &probes {
                assert_eq!(Node(&buf).search(p), Some(place(&sorted, p)), "{p:?}");
            }
            NodeMut(&mut buf).remove_at(pos).unwrap();
            sorted.remove(pos);
            assert!(Node(&buf).head_at() >= 7);
            assert_heads_right(&buf);
        }
    }

    /// A page written before `head_at` existed holds 0 there, with heads
    /// from each suffix's first bytes: it is searched as it is, and the
    /// next change to it brings `head_at` up to date.
    #[test]
    fn a_node_from_before_head_at_reads_as_it_is() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, None, None);
        let sorted: Vec<Vec<u8>> = (0..50u64).map(|i| (i * 3).to_be_bytes().to_vec()).collect();
        for (i, k) in sorted.iter().enumerate() {
            NodeMut(&mut buf).append_full(k, b"v", 0).unwrap();
            assert_eq!(Node(&buf).count(), Some(i + 1));
        }
        NodeMut(&mut buf).make_hints();
        assert_eq!(Node(&buf).head_at(), 7);
        // As the older build wrote it.
        buf[OFF_HEAD_AT] = 0;
        for i in 0..sorted.len() {
            let mut slot = Node(&buf).slot(i).unwrap();
            slot.head = head(Node(&buf).suffix(i).unwrap());
            NodeMut(&mut buf).write_slot(i, slot);
        }
        NodeMut(&mut buf).sample_hints();
        assert_heads_right(&buf);
        for i in 0..160u64 {
            let k = i.to_be_bytes();
            assert_eq!(Node(&buf).search(&k), Some(place(&sorted, &k)), "{i}");
        }
        NodeMut(&mut buf).remove_at(0).unwrap();
        assert_eq!(Node(&buf).head_at(), 7);
        assert_heads_right(&buf);
    }

    #[test]
    fn full_node_refuses_insert_and_compaction_reclaims() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, None, None);
        let mut i = 0u32;
        while NodeMut(&mut buf)
            .insert_at(i as usize, &i.to_be_bytes(), &[1; 100], 0)
            .is_some()
        {
            i += 1;
        }
        assert_eq!(
            i as usize,
            (NODE_SIZE - HEADER_SIZE - 8) / (SLOT_SIZE + 104)
        );
        NodeMut(&mut buf).remove_at(0).unwrap();
        // Only after compaction is there room again.
        assert!(Node(&buf).free_space().unwrap() < SLOT_SIZE + 104);
        NodeMut(&mut buf)
            .insert_at(0, &[0, 0, 0, 0], &[2; 100], 0)
            .unwrap();
    }

    #[test]
    fn torn_bytes_never_panic() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut buf = [0u8; NODE_SIZE];
        for _ in 0..2000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = Node(&buf);
            let _ = n.search(b"some key");
            let _ = n.child_for(b"", true);
            let _ = n.covers(b"k");
            let _ = n.free_after_compaction();
            let mut v = Vec::new();
            let _ = n.full_key_into(3, &mut v);
        }
    }

    #[test]
    fn hints_narrow_search_correctly() {
        let mut buf = [0u8; NODE_SIZE];
        leaf(&mut buf, None, None);
        // Many slots share a head (same first four bytes): the hints must
        // still lead to the same slot as a linear scan, present or absent.
        let key = |i: u32| vec![b'a', b'b', b'c', (i / 50) as u8, (i % 50 * 2) as u8];
        for i in 0..200u32 {
            NodeMut(&mut buf)
                .insert_at(i as usize, &key(i), &[1], 0)
                .unwrap();
        }
        let n = Node(&buf);
        let count = n.count().unwrap();
        for probe in 0..400u32 {
            let k = vec![b'a', b'b', b'c', (probe / 100) as u8, (probe % 100) as u8];
            let expect = (0..count)
                .find(|&i| n.suffix(i).unwrap() >= &k[..])
                .unwrap_or(count);
            let found = expect < count && n.suffix(expect).unwrap() == &k[..];
            assert_eq!(n.search(&k).unwrap(), (expect, found), "probe {probe}");
        }
    }
}

//! [`WalReader`]: recovery. Reads the log in order from an LSN and decides
//! where it ends.
//!
//! ## Where the log ends, and when that is an error
//!
//! Reading stops at the first position that does not hold a valid record
//! for that position (blank, wrong LSN, failing checksum, cut off by the end
//! of the last segment). That is either the **tail** — the crash hit before
//! those bytes were durable, nothing acknowledged is lost — or
//! **corruption** of durable log, which must never pass silently.
//!
//! The two are told apart by evidence, not by position: every record carries
//! its *durable floor*, the durable end of the log when it was appended (see
//! [`super::record`]). If any valid record after the bad position `p` has a
//! floor above `p`, then the record at `p` had been durable before that one
//! was even appended, so its damage is corruption:
//! [`WalError::Corrupt`]` { lsn: p }`. Otherwise the bad bytes were written
//! by the last, unfinished flush, and the log ends at `p` with a warning
//! (or quietly, if `p` is simply blank). Valid records after `p` with a low
//! floor are possible and fine: a disk may persist the blocks of one
//! unsynced write out of order.
//!
//! Limit: corruption of the *last* durable records, with nothing appended
//! after them, is indistinguishable from a torn tail and is reported as one
//! (with the warning).
//!
//! Structural damage is always an error: a missing segment (a gap between
//! segment LSN ranges), a segment that is not whole blocks, a start LSN
//! beyond the log.

use super::record::{self, HEADER_SIZE, LoggedRecord, SIZE_LSN};
use super::segment::{self, SegmentInfo};
use super::{FIRST_LSN, Lsn, WalOptions};
use crate::error::WalError;
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE};
use std::path::{Path, PathBuf};

/// Segments kept in memory at once: the one being read and the next, for
/// records that span the boundary.
const CACHED_SEGMENTS: usize = 2;

/// How the log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndKind {
    /// Nothing was ever written past the end (blank bytes or end of file).
    Clean,
    /// Damaged bytes with no evidence they were ever durable: a torn tail.
    TornTail { reason: String },
}

/// Where recovery found the end of the log. Only a reader that read to the
/// end produces one; [`super::Wal::open`] takes it to continue writing there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEnd {
    wal_dir: PathBuf,
    lsn: Lsn,
    kind: EndKind,
}

impl LogEnd {
    /// The first LSN past the last valid record: where writing continues.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    pub fn kind(&self) -> &EndKind {
        &self.kind
    }

    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }
}

/// What one position of the log holds.
enum Probe {
    Valid(LoggedRecord, usize),
    Blank,
    Bad(String),
}

enum Phase {
    Reading,
    Ended(LogEnd),
    Failed,
}

/// Iterator over the records of a log, in LSN order. Yields
/// `Err(WalError::Corrupt { .. })` (and then nothing) on damage before the
/// tail; ends (`None`) at the tail, after which [`WalReader::end`] says where.
pub struct WalReader {
    wal_dir: PathBuf,
    opts: WalOptions,
    segments: Vec<SegmentInfo>,
    /// End of the last segment.
    log_end: u64,
    pos: u64,
    cache: Vec<(usize, AlignedBuf)>,
    bytes: Vec<u8>,
    phase: Phase,
}

impl WalReader {
    /// Reads the log in `wal_dir` from `from`, which must be a record
    /// boundary (a checkpoint's redo LSN, or the log's first LSN).
    pub fn open(wal_dir: &Path, from: Lsn, opts: &WalOptions) -> Result<WalReader, WalError> {
        let segments = segment::list(wal_dir)?;

        // 1. Structure: whole blocks, contiguous.
        for s in &segments {
            if s.size == 0 || s.size % BLOCK_SIZE as u64 != 0 {
                return Err(WalError::Corrupt {
                    lsn: s.start,
                    reason: format!(
                        "segment {} is {} bytes, not a whole number of blocks",
                        s.path.display(),
                        s.size
                    ),
                });
            }
        }
        for pair in segments.windows(2) {
            if pair[1].start != pair[0].end() {
                return Err(WalError::Corrupt {
                    lsn: pair[0].end(),
                    reason: format!(
                        "log segment missing: {} ends at LSN {} but the next segment starts at {}",
                        pair[0].path.display(),
                        pair[0].end(),
                        pair[1].start
                    ),
                });
            }
        }

        // 2. The start lies within the log.
        let (first, log_end) = match (segments.first(), segments.last()) {
            (Some(f), Some(l)) => (f.start, l.end().0),
            _ if from == FIRST_LSN => (FIRST_LSN, FIRST_LSN.0),
            _ => {
                return Err(WalError::Corrupt {
                    lsn: from,
                    reason: "the log has no segments".into(),
                });
            }
        };
        if from < first {
            return Err(WalError::Truncated {
                requested: from,
                oldest: first,
            });
        }
        if from.0 > log_end {
            return Err(WalError::Corrupt {
                lsn: from,
                reason: format!(
                    "recovery start is beyond the end of the log's segments ({log_end})"
                ),
            });
        }
        Ok(WalReader {
            wal_dir: wal_dir.to_path_buf(),
            opts: opts.clone(),
            segments,
            log_end,
            pos: from.0,
            cache: Vec::new(),
            bytes: Vec::new(),
            phase: Phase::Reading,
        })
    }

    /// Where the log ended, once the iterator has returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        match &self.phase {
            Phase::Ended(end) => Some(end),
            Phase::Reading | Phase::Failed => None,
        }
    }

    /// Reads (and discards) the remaining records and returns where the log
    /// ends, for reopening the [`super::Wal`].
    pub fn into_end(mut self) -> Result<LogEnd, WalError> {
        for rec in self.by_ref() {
            rec?;
        }
        match self.phase {
            Phase::Ended(end) => Ok(end),
            Phase::Reading | Phase::Failed => Err(WalError::Corrupt {
                lsn: Lsn(self.pos),
                reason: "reader failed before the end".into(),
            }),
        }
    }

    fn step(&mut self) -> Result<Option<LoggedRecord>, WalError> {
        let pos = self.pos;
        match self.probe(pos)? {
            Probe::Valid(rec, len) => {
                self.pos += len as u64;
                Ok(Some(rec))
            }
            Probe::Blank => self.end_at(pos, EndKind::Clean),
            Probe::Bad(reason) => self.end_at(pos, EndKind::TornTail { reason }),
        }
    }

    /// The log stops being valid at `pos`: a tail, unless a later record
    /// proves `pos` was durable.
    fn end_at(&mut self, pos: u64, kind: EndKind) -> Result<Option<LoggedRecord>, WalError> {
        if let Some(witness) = self.find_witness(pos)? {
            let what = match &kind {
                EndKind::Clean => "blank bytes".to_string(),
                EndKind::TornTail { reason } => reason.clone(),
            };
            return Err(WalError::Corrupt {
                lsn: Lsn(pos),
                reason: format!(
                    "{what}, but the valid record at LSN {} was appended after LSN {pos} was durable",
                    witness
                ),
            });
        }
        if let EndKind::TornTail { reason } = &kind {
            tracing::warn!(lsn = pos, %reason, "torn log tail: the log ends here; the bytes after it were never durable");
        }
        self.phase = Phase::Ended(LogEnd {
            wal_dir: self.wal_dir.clone(),
            lsn: Lsn(pos),
            kind,
        });
        Ok(None)
    }

    /// Classifies the bytes at `pos`.
    fn probe(&mut self, pos: u64) -> Result<Probe, WalError> {
        let avail = self.log_end - pos;
        // 1. A header cut off by the end of the last segment.
        if avail < HEADER_SIZE as u64 {
            self.fill(pos, avail as usize)?;
            return Ok(if self.bytes.iter().all(|&b| b == 0) {
                Probe::Blank
            } else {
                Probe::Bad("record header cut off by the end of the log".into())
            });
        }
        // 2. The header: blank, malformed, or not this position's.
        self.fill(pos, HEADER_SIZE)?;
        if record::is_blank_header(&self.bytes) {
            return Ok(Probe::Blank);
        }
        let header = match record::decode_header(&self.bytes) {
            Ok(h) => h,
            Err(e) => return Ok(Probe::Bad(format!("bad header: {e}"))),
        };
        if header.lsn.0 != pos {
            return Ok(Probe::Bad(format!("header claims LSN {}", header.lsn)));
        }
        // 3. The whole record.
        let len = header.record_len();
        if len as u64 > avail {
            return Ok(Probe::Bad(format!(
                "record of {len} bytes runs past the end of the log"
            )));
        }
        self.fill(pos, len)?;
        match record::decode(&self.bytes) {
            Ok((rec, n)) => Ok(Probe::Valid(rec, n)),
            Err(e) => Ok(Probe::Bad(e.to_string())),
        }
    }

    /// Searches after `pos` for a valid record whose durable floor is above
    /// `pos`. A record is valid only at the LSN it names, so a quick scan for
    /// 8 bytes equal to their own offset finds every candidate.
    fn find_witness(&mut self, pos: u64) -> Result<Option<u64>, WalError> {
        let first = self.segment_index(pos).unwrap_or(self.segments.len());
        for idx in first..self.segments.len() {
            let start = self.segments[idx].start.0;
            let size = self.segments[idx].size;
            let candidates: Vec<u64> = {
                let data = self.segment_bytes(idx)?;
                let lo = (pos + 1).saturating_sub(start) as usize;
                (lo..data.len().saturating_sub(SIZE_LSN - 1))
                    .filter(|&off| data[off..off + SIZE_LSN] == (start + off as u64).to_le_bytes())
                    .map(|off| start + off as u64)
                    .collect()
            };
            // Headers whose LSN field straddles into the next segment.
            let tail_lo = (start + size)
                .saturating_sub(SIZE_LSN as u64 - 1)
                .max(pos + 1);
            let mut straddling = Vec::new();
            for p in tail_lo..start + size {
                if p + (SIZE_LSN as u64) <= self.log_end {
                    self.fill(p, SIZE_LSN)?;
                    if self.bytes[..] == p.to_le_bytes() {
                        straddling.push(p);
                    }
                }
            }
            for p in candidates.into_iter().chain(straddling) {
                if let Probe::Valid(rec, _) = self.probe(p)?
                    && rec.durable_floor.0 > pos
                {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    fn segment_index(&self, lsn: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.end().0 <= lsn);
        (i < self.segments.len()).then_some(i)
    }

    /// Copies log bytes `[lsn, lsn + len)` into `self.bytes`. The caller
    /// has checked that they lie before `log_end`.
    fn fill(&mut self, lsn: u64, len: usize) -> Result<(), WalError> {
        self.bytes.clear();
        let mut at = lsn;
        let end = lsn + len as u64;
        while at < end {
            let idx = self.segment_index(at).ok_or_else(|| WalError::Corrupt {
                lsn: Lsn(at),
                reason: "read past the last segment".into(),
            })?;
            let seg_start = self.segments[idx].start.0;
            let seg_end = self.segments[idx].end().0;
            let hi = end.min(seg_end);
            let (lo_off, hi_off) = ((at - seg_start) as usize, (hi - seg_start) as usize);
            let data = self.segment_bytes(idx)?;
            let piece = data[lo_off..hi_off].to_vec();
            self.bytes.extend_from_slice(&piece);
            at = hi;
        }
        Ok(())
    }

    /// The whole contents of segment `idx`, read on first use.
    fn segment_bytes(&mut self, idx: usize) -> Result<&[u8], WalError> {
        if let Some(i) = self.cache.iter().position(|(j, _)| *j == idx) {
            return Ok(&self.cache[i].1);
        }
        let info = &self.segments[idx];
        let seg = segment::open(info, &self.opts.opener)?;
        let mut buf = AlignedBuf::zeroed(info.size as usize);
        seg.file
            .read_at(0, &mut buf)
            .map_err(|source| WalError::Io {
                path: info.path.clone(),
                source,
            })?;
        if self.cache.len() >= CACHED_SEGMENTS {
            self.cache.remove(0);
        }
        self.cache.push((idx, buf));
        Ok(&self.cache[self.cache.len() - 1].1)
    }
}

impl Iterator for WalReader {
    type Item = Result<LoggedRecord, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !matches!(self.phase, Phase::Reading) {
            return None;
        }
        match self.step() {
            Ok(Some(rec)) => Some(Ok(rec)),
            Ok(None) => None,
            Err(e) => {
                self.phase = Phase::Failed;
                Some(Err(e))
            }
        }
    }
}

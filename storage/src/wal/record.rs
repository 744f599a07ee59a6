//! The log record format.
//!
//! A record is a 24-byte header followed by its payload. Records are packed
//! back to back in the logical log (no padding, no alignment) and may span
//! block and segment boundaries; the writer, not the format, deals in blocks.
//!
//! ```text
//!  byte  0                8        12       16  17       20       24
//!        +----------------+--------+--------+---+--------+--------+=============+
//!        | lsn            | len    | back   |knd| 0 0 0  | crc    | payload     |
//!        | u64 LE         | u32 LE | u32 LE |u8 | reserv.| u32 LE | len bytes   |
//!        +----------------+--------+--------+---+--------+--------+=============+
//!        \_________________ crc32c covers bytes 0..20 _____________/ and payload
//! ```
//!
//! * `lsn`: the record's own position in the logical log. A record is valid
//!   only *at* that position, so stale bytes of an older log, a block written
//!   to the wrong place, or a payload that happens to look like a header
//!   never pass as the record the reader expects there.
//! * `len`: payload length, at most [`MAX_PAYLOAD_LEN`].
//! * `back`: how far behind `lsn` the durable end of the log was when this
//!   record was appended (saturating). `lsn - back` is the record's
//!   *durable floor*: every record starting below it was already durable.
//!   Recovery uses it to tell a torn tail from corruption: see
//!   [`super::reader`].
//! * `knd`: the [`Kind`]. Zero is never a kind, so an all-zero header
//!   (preallocated, never written) is recognisably "nothing here".
//! * reserved: zero; a non-zero value is an error, so the bytes can get a
//!   meaning later without old readers misreading new logs.
//! * `crc`: crc32c (Castagnoli) of header bytes `0..20` then the payload.
//!
//! Payloads by kind:
//!
//! ```text
//!  Commit:           count u32 | count × ( tree u32 | key_len u32 | value_len u32 | key | value )
//!                    value_len == TOMBSTONE (u32::MAX) means "delete", with no value bytes
//!  Smo:              opaque bytes (defined by the B+tree)
//!  CheckpointBegin:  redo_lsn u64
//!  CheckpointEnd:    redo_lsn u64
//! ```
//! All integers are little-endian.

use super::Lsn;
use crate::bytes::{Cursor, u32_at, u64_at};
use crate::error::RecordError;

pub const OFF_LSN: usize = 0;
pub const SIZE_LSN: usize = 8;
pub const OFF_LEN: usize = OFF_LSN + SIZE_LSN;
pub const SIZE_LEN: usize = 4;
pub const OFF_BACK: usize = OFF_LEN + SIZE_LEN;
pub const SIZE_BACK: usize = 4;
pub const OFF_KIND: usize = OFF_BACK + SIZE_BACK;
pub const SIZE_KIND: usize = 1;
pub const OFF_RESERVED: usize = OFF_KIND + SIZE_KIND;
pub const SIZE_RESERVED: usize = 3;
pub const OFF_CRC: usize = OFF_RESERVED + SIZE_RESERVED;
pub const SIZE_CRC: usize = 4;
/// Bytes before the payload.
pub const HEADER_SIZE: usize = OFF_CRC + SIZE_CRC;

const _: () = assert!(HEADER_SIZE == 24);
const _: () = assert!(
    OFF_CRC.is_multiple_of(4) && OFF_LEN.is_multiple_of(4),
    "u32 fields stay 4-aligned within the header"
);

/// Largest payload. Bounds what recovery allocates for one record (a corrupt
/// length field can never make it allocate gigabytes) and keeps one commit
/// well under a log segment. Values larger than this belong in the B+tree's
/// large-value extents, not in one log record.
pub const MAX_PAYLOAD_LEN: usize = 32 << 20;
const _: () = assert!(MAX_PAYLOAD_LEN <= u32::MAX as usize);

/// `value_len` of a deletion in a [`Record::Commit`] payload.
pub const TOMBSTONE: u32 = u32::MAX;

const COMMIT_COUNT_SIZE: usize = 4;
/// tree u32 + key_len u32 + value_len u32 before each write's bytes.
pub const COMMIT_WRITE_HEADER_SIZE: usize = 12;

/// The most one commit may log: the sum over its writes of
/// `COMMIT_WRITE_HEADER_SIZE + key + value` (see [`commit_payload_len`]).
/// A larger write set is refused before anything is logged
/// (`TxError::CommitTooLarge`); layers above size their limits by it.
pub const MAX_COMMIT_BYTES: usize = MAX_PAYLOAD_LEN - COMMIT_COUNT_SIZE;

/// What one write adds to a `Commit` payload.
pub const fn commit_write_len(key_len: usize, value_len: usize) -> usize {
    COMMIT_WRITE_HEADER_SIZE + key_len + value_len
}

/// The payload length of a `Commit` record of `writes`.
pub fn commit_payload_len(writes: &[Write<'_>]) -> usize {
    COMMIT_COUNT_SIZE
        + writes
            .iter()
            .map(|w| commit_write_len(w.key.len(), w.value.map_or(0, <[u8]>::len)))
            .sum::<usize>()
}
const CHECKPOINT_PAYLOAD_SIZE: usize = 8;

/// Record kinds as stored in the `knd` byte. Zero is reserved for "nothing".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    Commit = 1,
    Smo = 2,
    CheckpointBegin = 3,
    CheckpointEnd = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Result<Kind, RecordError> {
        match b {
            1 => Ok(Kind::Commit),
            2 => Ok(Kind::Smo),
            3 => Ok(Kind::CheckpointBegin),
            4 => Ok(Kind::CheckpointEnd),
            other => Err(RecordError::UnknownKind(other)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Commit => "Commit",
            Kind::Smo => "Smo",
            Kind::CheckpointBegin => "CheckpointBegin",
            Kind::CheckpointEnd => "CheckpointEnd",
        }
    }
}

/// Identifies a B+tree of the Db (the catalog assigns them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeId(pub u32);

/// One write of a committed transaction, borrowed: `value: None` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write<'a> {
    pub tree: TreeId,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A record to append. Borrowed, so appending encodes straight from the
/// caller's data into the log buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record<'a> {
    /// A transaction's final writes, in the order they apply.
    Commit(&'a [Write<'a>]),
    /// One structure modification (split, merge, root change), atomic.
    Smo(&'a [u8]),
    /// A fuzzy checkpoint started; recovery must replay from `redo_lsn`.
    CheckpointBegin { redo_lsn: Lsn },
    /// The checkpoint begun with the same `redo_lsn` is complete.
    CheckpointEnd { redo_lsn: Lsn },
}

/// One write of a decoded commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedWrite {
    pub tree: TreeId,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// A record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedRecord {
    Commit(Vec<OwnedWrite>),
    Smo(Vec<u8>),
    CheckpointBegin { redo_lsn: Lsn },
    CheckpointEnd { redo_lsn: Lsn },
}

/// A decoded record with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRecord {
    pub lsn: Lsn,
    /// Every record starting below this LSN was durable when this one was
    /// appended.
    pub durable_floor: Lsn,
    pub record: OwnedRecord,
}

impl LoggedRecord {
    /// The LSN just past this record: where the next one starts.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(self.lsn.0 + self.record.encoded_len() as u64)
    }
}

impl Record<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Commit(_) => Kind::Commit,
            Record::Smo(_) => Kind::Smo,
            Record::CheckpointBegin { .. } => Kind::CheckpointBegin,
            Record::CheckpointEnd { .. } => Kind::CheckpointEnd,
        }
    }

    /// Payload bytes this record encodes to.
    pub fn payload_len(&self) -> usize {
        match self {
            Record::Commit(writes) => {
                COMMIT_COUNT_SIZE
                    + writes
                        .iter()
                        .map(|w| {
                            COMMIT_WRITE_HEADER_SIZE + w.key.len() + w.value.map_or(0, <[u8]>::len)
                        })
                        .sum::<usize>()
            }
            Record::Smo(p) => p.len(),
            Record::CheckpointBegin { .. } | Record::CheckpointEnd { .. } => {
                CHECKPOINT_PAYLOAD_SIZE
            }
        }
    }

    /// Header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE + self.payload_len()
    }

    /// Appends the encoded record to `out`, for position `lsn`, with the
    /// log's durable end at append time `durable` (≤ `lsn`). Returns the
    /// encoded length. On error `out` is unchanged.
    pub fn encode_into(
        &self,
        lsn: Lsn,
        durable: Lsn,
        out: &mut Vec<u8>,
    ) -> Result<usize, RecordError> {
        let payload_len = self.payload_len();
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(RecordError::TooLong {
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let start = out.len();
        out.reserve(HEADER_SIZE + payload_len);

        // 1. Header without the checksum.
        let back = lsn.0.saturating_sub(durable.0).min(u64::from(u32::MAX)) as u32;
        out.extend_from_slice(&lsn.0.to_le_bytes());
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&back.to_le_bytes());
        out.push(self.kind() as u8);
        out.extend_from_slice(&[0; SIZE_RESERVED]);
        out.extend_from_slice(&[0; SIZE_CRC]);

        // 2. Payload.
        match self {
            Record::Commit(writes) => {
                // payload_len ≤ MAX_PAYLOAD_LEN bounds the count and every length.
                out.extend_from_slice(&(writes.len() as u32).to_le_bytes());
                for w in writes.iter() {
                    out.extend_from_slice(&w.tree.0.to_le_bytes());
                    out.extend_from_slice(&(w.key.len() as u32).to_le_bytes());
                    let value_len = w.value.map_or(TOMBSTONE, |v| v.len() as u32);
                    out.extend_from_slice(&value_len.to_le_bytes());
                    out.extend_from_slice(w.key);
                    if let Some(v) = w.value {
                        out.extend_from_slice(v);
                    }
                }
            }
            Record::Smo(p) => out.extend_from_slice(p),
            Record::CheckpointBegin { redo_lsn } | Record::CheckpointEnd { redo_lsn } => {
                out.extend_from_slice(&redo_lsn.0.to_le_bytes())
            }
        }
        debug_assert_eq!(out.len() - start, HEADER_SIZE + payload_len);

        // 3. Checksum over header (minus the crc field) and payload.
        let encoded = &mut out[start..];
        let crc = checksum(encoded);
        encoded[OFF_CRC..OFF_CRC + SIZE_CRC].copy_from_slice(&crc.to_le_bytes());
        Ok(HEADER_SIZE + payload_len)
    }

    /// An owned copy, as the record would be read back.
    pub fn to_owned_record(&self) -> OwnedRecord {
        match *self {
            Record::Commit(writes) => OwnedRecord::Commit(
                writes
                    .iter()
                    .map(|w| OwnedWrite {
                        tree: w.tree,
                        key: w.key.to_vec(),
                        value: w.value.map(<[u8]>::to_vec),
                    })
                    .collect(),
            ),
            Record::Smo(p) => OwnedRecord::Smo(p.to_vec()),
            Record::CheckpointBegin { redo_lsn } => OwnedRecord::CheckpointBegin { redo_lsn },
            Record::CheckpointEnd { redo_lsn } => OwnedRecord::CheckpointEnd { redo_lsn },
        }
    }
}

impl OwnedRecord {
    /// Header plus payload, as encoded.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE
            + match self {
                OwnedRecord::Commit(writes) => {
                    COMMIT_COUNT_SIZE
                        + writes
                            .iter()
                            .map(|w| {
                                COMMIT_WRITE_HEADER_SIZE
                                    + w.key.len()
                                    + w.value.as_ref().map_or(0, Vec::len)
                            })
                            .sum::<usize>()
                }
                OwnedRecord::Smo(p) => p.len(),
                OwnedRecord::CheckpointBegin { .. } | OwnedRecord::CheckpointEnd { .. } => {
                    CHECKPOINT_PAYLOAD_SIZE
                }
            }
    }
}

/// The fields of a header, before the payload and checksum are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub lsn: Lsn,
    pub payload_len: usize,
    pub durable_floor: Lsn,
    pub kind: u8,
}

impl Header {
    /// Header plus payload.
    pub fn record_len(&self) -> usize {
        HEADER_SIZE + self.payload_len
    }
}

/// True if `buf` starts with an all-zero header: a place never written.
pub fn is_blank_header(buf: &[u8]) -> bool {
    buf.len() >= HEADER_SIZE && buf[..HEADER_SIZE].iter().all(|&b| b == 0)
}

/// Parses the header at the start of `buf` and checks what can be checked
/// without the payload: size, length bound, reserved bytes. The kind and
/// checksum are checked by [`decode`].
pub fn decode_header(buf: &[u8]) -> Result<Header, RecordError> {
    let h = buf.get(..HEADER_SIZE).ok_or(RecordError::Short {
        need: HEADER_SIZE,
        have: buf.len(),
    })?;
    let lsn = Lsn(u64_at(h, OFF_LSN));
    let payload_len = u32_at(h, OFF_LEN) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(RecordError::TooLong {
            len: payload_len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    if h[OFF_RESERVED..OFF_RESERVED + SIZE_RESERVED]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(RecordError::ReservedNotZero);
    }
    let back = u64::from(u32_at(h, OFF_BACK));
    Ok(Header {
        lsn,
        payload_len,
        durable_floor: Lsn(lsn.0.saturating_sub(back)),
        kind: h[OFF_KIND],
    })
}

/// Decodes the record at the start of `buf`. Returns it and its encoded
/// length; bytes after it are ignored.
pub fn decode(buf: &[u8]) -> Result<(LoggedRecord, usize), RecordError> {
    // 1. Header fields and bounds.
    let header = decode_header(buf)?;
    let len = header.record_len();
    let bytes = buf.get(..len).ok_or(RecordError::Short {
        need: len,
        have: buf.len(),
    })?;

    // 2. Checksum before interpreting anything else, so garbage is reported
    //    as garbage rather than as an odd kind or payload.
    let stored = u32_at(bytes, OFF_CRC);
    let computed = checksum(bytes);
    if stored != computed {
        return Err(RecordError::BadChecksum { stored, computed });
    }

    // 3. Kind and payload.
    let kind = Kind::from_u8(header.kind)?;
    let payload = &bytes[HEADER_SIZE..];
    let record = match kind {
        Kind::Commit => OwnedRecord::Commit(decode_commit(payload)?),
        Kind::Smo => OwnedRecord::Smo(payload.to_vec()),
        Kind::CheckpointBegin => OwnedRecord::CheckpointBegin {
            redo_lsn: decode_checkpoint(kind, payload)?,
        },
        Kind::CheckpointEnd => OwnedRecord::CheckpointEnd {
            redo_lsn: decode_checkpoint(kind, payload)?,
        },
    };
    Ok((
        LoggedRecord {
            lsn: header.lsn,
            durable_floor: header.durable_floor,
            record,
        },
        len,
    ))
}

fn bad_commit(reason: &'static str) -> RecordError {
    RecordError::BadPayload {
        kind: "Commit",
        reason,
    }
}

fn decode_checkpoint(kind: Kind, payload: &[u8]) -> Result<Lsn, RecordError> {
    match <[u8; CHECKPOINT_PAYLOAD_SIZE]>::try_from(payload) {
        Ok(b) => Ok(Lsn(u64::from_le_bytes(b))),
        Err(_) => Err(RecordError::BadPayload {
            kind: kind.name(),
            reason: "payload is not exactly one u64",
        }),
    }
}

fn decode_commit(payload: &[u8]) -> Result<Vec<OwnedWrite>, RecordError> {
    let mut cur = Cursor(payload);
    let count = cur.u32().ok_or(bad_commit("missing write count"))? as usize;
    // Each write takes at least its 12-byte header: a count larger than the
    // payload can hold is rejected before allocating for it.
    if count > cur.rest().len() / COMMIT_WRITE_HEADER_SIZE {
        return Err(bad_commit("write count exceeds what the payload can hold"));
    }
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let tree = TreeId(cur.u32().ok_or(bad_commit("truncated write header"))?);
        let key_len = cur.u32().ok_or(bad_commit("truncated write header"))? as usize;
        let value_len = cur.u32().ok_or(bad_commit("truncated write header"))?;
        let key = cur
            .take(key_len)
            .ok_or(bad_commit("key runs past the payload"))?
            .to_vec();
        let value = match value_len {
            TOMBSTONE => None,
            n => Some(
                cur.take(n as usize)
                    .ok_or(bad_commit("value runs past the payload"))?
                    .to_vec(),
            ),
        };
        writes.push(OwnedWrite { tree, key, value });
    }
    if !cur.rest().is_empty() {
        return Err(bad_commit("trailing bytes after the last write"));
    }
    Ok(writes)
}

/// crc32c of an encoded record: header bytes before the crc field, then the
/// payload.
fn checksum(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[..OFF_CRC]);
    crc32c::crc32c_append(crc, &record[HEADER_SIZE..])
}

#[cfg(test)]
mod tests;

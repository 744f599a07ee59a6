//! [`BlockFile`] over `pread`/`pwrite`/`fdatasync`: the fallback when the
//! kernel refuses io_uring. Same file, same `O_DIRECT`, same durability;
//! a batch becomes a sequence of system calls.

use super::{BlockFile, IoError, IoOp, ReadOp, WriteOp, check_aligned};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Direct I/O with one system call per transfer.
pub struct PlainFile {
    file: File,
}

impl PlainFile {
    pub fn new(file: File) -> Self {
        PlainFile { file }
    }
}

impl BlockFile for PlainFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        for r in reads.iter_mut() {
            check_aligned(IoOp::Read, r.offset, r.buf.as_ptr(), r.buf.len())?;
            let mut done = 0;
            while done < r.buf.len() {
                match self
                    .file
                    .read_at(&mut r.buf[done..], r.offset + done as u64)
                {
                    Ok(0) => {
                        return Err(IoError::ShortRead {
                            offset: r.offset,
                            wanted: r.buf.len(),
                            got: done,
                        });
                    }
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(IoError::os(IoOp::Read, r.offset + done as u64, e)),
                }
            }
        }
        Ok(())
    }

    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        for w in writes {
            check_aligned(IoOp::Write, w.offset, w.data.as_ptr(), w.data.len())?;
            self.file
                .write_all_at(w.data, w.offset)
                .map_err(|e| IoError::os(IoOp::Write, w.offset, e))?;
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), IoError> {
        self.file
            .sync_data()
            .map_err(|e| IoError::os(IoOp::Sync, 0, e))
    }

    fn len_bytes(&self) -> Result<u64, IoError> {
        super::file_len(&self.file)
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        super::file_set_len(&self.file, len)
    }
}

//! Direct reads and writes of a global namespace, outside any invocation:
//! `rime state` and the HTTP `/state` routes on a namespace declared
//! global (`docs/global.md`, "State commands"). Each is one transaction of
//! its own, like their local counterparts: a read is one `HMGET` (or one
//! scan script), a write one commit script.

use crate::{Cluster, Commit, GlobalError};
use std::time::Instant;

/// Attempts of a delete before it gives up (each conflict means another
/// commit wrote the key between the read and the delete).
const DELETE_ATTEMPTS: u32 = 16;

impl Cluster {
    /// The value of `key` as the cluster has it now (never the tier's).
    pub fn get_now(
        &self,
        ns: &str,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, GlobalError> {
        let v = self.fetch(ns, key, deadline)?;
        Ok(v.value.map(|v| v.to_vec()))
    }

    /// Writes `value` to `key`: a blind write, one commit.
    pub fn put_now(
        &self,
        ns: &str,
        key: &[u8],
        value: &[u8],
        deadline: Instant,
    ) -> Result<(), GlobalError> {
        match self.commit(ns, &[], &[(key, Some(value))], deadline)? {
            Commit::Committed { .. } => Ok(()),
            // Nothing was read, so nothing can have changed.
            Commit::Conflict => Err(GlobalError::Protocol(
                "a blind write was refused as a conflict".into(),
            )),
        }
    }

    /// Deletes `key`; whether it existed. The existence is part of the
    /// transaction:
    ///
    /// 1. Read the key's version from the cluster. Absent: `false`.
    /// 2. Commit the delete with that read: refused if the key changed
    ///    since (another commit came between), then go back to 1.
    pub fn delete_now(&self, ns: &str, key: &[u8], deadline: Instant) -> Result<bool, GlobalError> {
        for _ in 0..DELETE_ATTEMPTS {
            let v = self.fetch(ns, key, deadline)?;
            if v.value.is_none() {
                return Ok(false);
            }
            match self.commit(ns, &[(key, v.version)], &[(key, None)], deadline)? {
                Commit::Committed { .. } => return Ok(true),
                Commit::Conflict => continue,
            }
        }
        Err(GlobalError::Unavailable(format!(
            "delete of a global key conflicted {DELETE_ATTEMPTS} times: it is written \
             continually; try again"
        )))
    }
}

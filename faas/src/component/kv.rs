//! `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch) and
//! `rime:faaslet/scan` over Rime namespaces (`docs/components.md`).
//!
//! A bucket is a namespace: `open` takes the function's own name (or
//! `default`) for its own namespace, or the name of a namespace it was
//! granted; any other name is `access-denied` (`no-such-store` if it is not
//! a valid namespace name at all). A read-only grant's writes are
//! `access-denied`. Keys are the UTF-8 bytes of the key string.
//!
//! Every call reads and writes through the attempt's transaction, as the
//! ABI v1 host calls do (`crate::abi::state`): writes are admitted by the
//! same write set, a storage error abandons the attempt (a trap; `invoke`
//! ends the invocation with the error, or re-runs it on a conflict), and
//! nothing is visible outside until the invocation commits. So every
//! operation here is atomic and isolated, batches included.
//!
//! On an executor, reads do not wait for the disk (`crate::abi`, module
//! docs): an operation that needs a page not in memory stops having
//! recorded nothing ([`WouldWait`]), and [`ComponentState::suspending`]
//! waits for the page (the invocation suspends; its executor runs others)
//! and runs that one operation again. A batch retries key by key.
//!
//! A global function's buckets are namespaces in the node's Redis Cluster
//! (`docs/global.md`): every operation goes through the attempt's
//! `crate::global::Attempt` instead (`kv_global.rs`), with the same
//! checks, limits and errors.

use super::ComponentState;
use super::rime::faaslet::scan;
use super::wasi::keyvalue::{atomics, batch, store};
use crate::abi::WouldWait;
use crate::abi::write_set::Admitted;
use crate::limits::{MAX_KEY_LEN, MAX_VALUE_LEN, valid_name};
use rime_storage::{TreeId, TxError};
use std::ops::{Bound, ControlFlow};
use store::{Error, KeyResponse};
use wasmtime::component::Resource;

/// Buckets and CAS handles one instance may hold at once: far more than a
/// guest needs, and a bound on the host memory a guest that never drops
/// them can take.
pub(crate) const MAX_LIVE_HANDLES: usize = 1024;

/// Keys one `list-keys` page returns at most.
pub(crate) const LIST_KEYS_PAGE: usize = 1000;

/// Key and value bytes one `get-many` or `range` returns at most: a reply
/// is copied into guest memory whole, so it is bounded; a `range` stops
/// early (the caller continues after its last key), a `get-many` fails.
pub(crate) const MAX_REPLY_BYTES: usize = 16 << 20;

/// An open bucket: a namespace's tree, whether it may be written, and
/// which of the function's namespaces it is (for a global function, whose
/// namespaces are named in the cluster).
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub(super) tree: TreeId,
    pub(super) writable: bool,
    /// Index into the function's grants; `u8::MAX` for its own namespace.
    pub(super) grant: u8,
}

// A bucket names its grant by a `u8` index, `u8::MAX` being the own
// namespace: every grant's index must stay below it.
const _: () = assert!(rime_abi::MAX_OPEN_NAMESPACES < u8::MAX as usize);

/// A CAS handle: the key, and its value when the handle was made (the
/// value the swap expects).
#[derive(Debug)]
pub struct Cas {
    bucket: Bucket,
    key: String,
    current: Option<Vec<u8>>,
}

pub(super) type R<T> = wasmtime::Result<Result<T, Error>>;

pub(super) fn other(msg: String) -> Error {
    Error::Other(msg)
}

pub(super) fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(other(format!(
            "key of {} bytes exceeds the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

impl ComponentState {
    fn bucket(&self, b: &Resource<Bucket>) -> wasmtime::Result<Bucket> {
        Ok(*self.table.get(b)?)
    }

    fn count_handle(&mut self) -> Result<(), Error> {
        if self.live_handles >= MAX_LIVE_HANDLES {
            return Err(other(format!(
                "more than {MAX_LIVE_HANDLES} buckets and CAS handles open at once"
            )));
        }
        self.live_handles += 1;
        Ok(())
    }

    /// Runs `op` until it does not stop at a page not in memory: each
    /// time it does (having recorded nothing), waits for the page, then
    /// runs it again. Off an executor reads wait in place and `op` runs
    /// once.
    async fn suspending<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        loop {
            let e = match op(self) {
                Err(e) => e,
                done => return done,
            };
            let Some(&WouldWait(miss)) = e.downcast_ref::<WouldWait>() else {
                return Err(e);
            };
            if let Err(e) = crate::exec::io::load(miss).await {
                return Err(self.host.abandon(e));
            }
        }
    }

    /// The value of `key`, copied out.
    async fn read(&mut self, b: Bucket, key: &str) -> R<Option<Vec<u8>>> {
        if let Err(e) = check_key(key) {
            return Ok(Err(e));
        }
        if self.is_global() {
            return self.global_read(b, key).await;
        }
        self.suspending(
            |s| match s.host.tx().get(b.tree, key.as_bytes(), <[u8]>::to_vec) {
                Ok(v) => Ok(Ok(v)),
                Err(e) => Err(s.host.abandon(e)),
            },
        )
        .await
    }

    /// Checks a write of `key` (`value_len` bytes; 0 for a delete) as ABI
    /// v1's `writable` does: grant, key, value, write-set room.
    pub(super) fn admit(
        &mut self,
        b: Bucket,
        key: &str,
        value_len: usize,
    ) -> Result<Admitted, Error> {
        if !b.writable {
            return Err(Error::AccessDenied);
        }
        check_key(key)?;
        if value_len > MAX_VALUE_LEN {
            return Err(other(format!(
                "value of {value_len} bytes exceeds the limit of {MAX_VALUE_LEN}"
            )));
        }
        self.host
            .writes
            .admit(b.tree, key.as_bytes(), value_len)
            .ok_or_else(|| {
                other(format!(
                    "write set full: an invocation writes at most {} bytes",
                    crate::limits::MAX_WRITE_SET_BYTES
                ))
            })
    }

    /// A storage error of a write: the guest's error if it is about its
    /// arguments, else the attempt is abandoned.
    fn write_error<T>(&mut self, e: TxError) -> R<T> {
        match e {
            TxError::NotI64 { .. } => Ok(Err(other("the value is not an 8-byte i64".into()))),
            TxError::Overflow => Ok(Err(other("the increment overflows an i64".into()))),
            TxError::ValueTooLarge { .. } | TxError::KeyTooLarge { .. } => {
                Ok(Err(other(e.to_string())))
            }
            e => Err(self.host.abandon(e)),
        }
    }

    fn write(&mut self, b: Bucket, key: &str, value: &[u8]) -> R<()> {
        if self.is_global() {
            return self.global_write(b, key, Some(value));
        }
        let a = match self.admit(b, key, value.len()) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match self.host.tx().put(b.tree, key.as_bytes(), value) {
            Ok(()) => {
                self.host.writes.record(b.tree, key.as_bytes(), a);
                Ok(Ok(()))
            }
            Err(e) => self.write_error(e),
        }
    }

    async fn remove(&mut self, b: Bucket, key: &str) -> R<()> {
        if self.is_global() {
            // A blind delete, as ABI v1's on a global namespace.
            return self.global_write(b, key, None);
        }
        self.suspending(|s| s.remove_once(b, key)).await
    }

    fn remove_once(&mut self, b: Bucket, key: &str) -> R<()> {
        let a = match self.admit(b, key, 0) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match self.host.tx().delete(b.tree, key.as_bytes()) {
            // A tombstone is recorded only for a key that exists.
            Ok(existed) => {
                if existed {
                    self.host.writes.record(b.tree, key.as_bytes(), a);
                }
                Ok(Ok(()))
            }
            Err(e) => self.write_error(e),
        }
    }

    /// Entries of `b` in `(lo, hi)`, in key order, at most `limit` and
    /// about `MAX_REPLY_BYTES`; keys must be UTF-8. A leaf not in memory
    /// (on an executor) restarts the scan once it is in.
    async fn entries(
        &mut self,
        b: Bucket,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        values: bool,
    ) -> R<Vec<(String, Vec<u8>)>> {
        if self.is_global() {
            return self.global_entries(b, lo, hi, limit, values).await;
        }
        self.suspending(|s| s.entries_once(b, lo, hi, limit, values))
            .await
    }

    fn entries_once(
        &mut self,
        b: Bucket,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        values: bool,
    ) -> R<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let (mut bytes, mut bad_key) = (0usize, None);
        let r = self.host.tx().scan(b.tree, lo, hi, |k, v| {
            if out.len() >= limit || (bytes > 0 && bytes + k.len() + v.len() > MAX_REPLY_BYTES) {
                return ControlFlow::Break(());
            }
            let Ok(key) = String::from_utf8(k.to_vec()) else {
                bad_key = Some(k.to_vec());
                return ControlFlow::Break(());
            };
            bytes += k.len() + if values { v.len() } else { 0 };
            out.push((key, if values { v.to_vec() } else { Vec::new() }));
            ControlFlow::Continue(())
        });
        if let Err(e) = r {
            return Err(self.host.abandon(e));
        }
        if let Some(k) = bad_key {
            return Ok(Err(other(format!(
                "key {} is not UTF-8: wasi:keyvalue keys are strings",
                String::from_utf8_lossy(&k).escape_debug()
            ))));
        }
        Ok(Ok(out))
    }
}

impl store::Host for ComponentState {
    async fn open(&mut self, identifier: String) -> R<Resource<Bucket>> {
        let f = &self.host.function;
        let bucket = if identifier == f.name || identifier == "default" {
            Bucket {
                tree: f.own_tree,
                writable: true,
                grant: u8::MAX,
            }
        } else if let Some((i, g)) = f
            .grants
            .iter()
            .enumerate()
            .find(|(_, g)| g.name == identifier)
        {
            Bucket {
                tree: g.tree,
                writable: g.writable,
                grant: i as u8, // grants < MAX_OPEN_NAMESPACES, checked at deploy
            }
        } else if valid_name(identifier.as_bytes()) {
            return Ok(Err(Error::AccessDenied));
        } else {
            return Ok(Err(Error::NoSuchStore));
        };
        if let Err(e) = self.count_handle() {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for ComponentState {
    async fn get(&mut self, b: Resource<Bucket>, key: String) -> R<Option<Vec<u8>>> {
        let b = self.bucket(&b)?;
        self.read(b, &key).await
    }

    async fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> R<()> {
        let b = self.bucket(&b)?;
        self.write(b, &key, &value)
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> R<()> {
        let b = self.bucket(&b)?;
        self.remove(b, &key).await
    }

    async fn exists(&mut self, b: Resource<Bucket>, key: String) -> R<bool> {
        let b = self.bucket(&b)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if self.is_global() {
            let v = self.global_read(b, &key).await?;
            return Ok(v.map(|v| v.is_some()));
        }
        self.suspending(|s| match s.host.tx().get(b.tree, key.as_bytes(), |_| ()) {
            Ok(v) => Ok(Ok(v.is_some())),
            Err(e) => Err(s.host.abandon(e)),
        })
        .await
    }

    /// Keys in order, `LIST_KEYS_PAGE` a call; the cursor is the last key
    /// returned.
    async fn list_keys(&mut self, b: Resource<Bucket>, cursor: Option<String>) -> R<KeyResponse> {
        let b = self.bucket(&b)?;
        let lo = match &cursor {
            Some(c) => Bound::Excluded(c.as_bytes()),
            None => Bound::Unbounded,
        };
        let page = match self
            .entries(b, lo, Bound::Unbounded, LIST_KEYS_PAGE, false)
            .await?
        {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let cursor = (page.len() == LIST_KEYS_PAGE).then(|| page[page.len() - 1].0.clone());
        Ok(Ok(KeyResponse {
            keys: page.into_iter().map(|(k, _)| k).collect(),
            cursor,
        }))
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        self.live_handles -= 1;
        Ok(())
    }
}

impl atomics::Host for ComponentState {
    async fn increment(&mut self, b: Resource<Bucket>, key: String, delta: i64) -> R<i64> {
        let b = self.bucket(&b)?;
        if self.is_global() {
            return self.global_increment(b, &key, delta).await;
        }
        self.suspending(|s| s.increment_once(b, &key, delta)).await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let (b, key, current) = {
            let c = self.table.get(&cas)?;
            (c.bucket, c.key.clone(), c.current.clone())
        };
        let r = if self.is_global() {
            self.global_swap(b, &key, current.as_deref(), &value)
                .await?
        } else {
            self.suspending(|s| s.swap_once(b, &key, current.as_deref(), &value))
                .await?
        };
        self.table.delete(cas)?;
        self.live_handles -= 1;
        match r {
            Ok(true) => Ok(Ok(())),
            // Only this invocation's own writes can change the key between
            // `new` and `swap` (the transaction is isolated): a fresh handle.
            Ok(false) => match self.new_cas(b, key).await? {
                Ok(fresh) => Ok(Err(atomics::CasError::CasFailed(fresh))),
                Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
            },
            Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
        }
    }
}

impl ComponentState {
    /// `atomics.increment`: the same operation as ABI v1's `add`, an
    /// 8-byte little-endian i64.
    fn increment_once(&mut self, b: Bucket, key: &str, delta: i64) -> R<i64> {
        let a = match self.admit(b, key, 8) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match self.host.tx().add(b.tree, key.as_bytes(), delta) {
            Ok(new) => {
                self.host.writes.record(b.tree, key.as_bytes(), a);
                Ok(Ok(new))
            }
            Err(e) => self.write_error(e),
        }
    }

    /// `atomics.swap`'s write: `Ok(false)` if the key no longer holds
    /// `current`.
    fn swap_once(&mut self, b: Bucket, key: &str, current: Option<&[u8]>, value: &[u8]) -> R<bool> {
        let a = match self.admit(b, key, value.len()) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match self
            .host
            .tx()
            .cas(b.tree, key.as_bytes(), current, Some(value))
        {
            Ok(true) => {
                self.host.writes.record(b.tree, key.as_bytes(), a);
                Ok(Ok(true))
            }
            Ok(false) => Ok(Ok(false)),
            Err(e) => self.write_error(e),
        }
    }
}

impl ComponentState {
    async fn new_cas(&mut self, b: Bucket, key: String) -> R<Resource<Cas>> {
        let current = match self.read(b, &key).await? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.count_handle() {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(Cas {
            bucket: b,
            key,
            current,
        })?))
    }
}

impl atomics::HostCas for ComponentState {
    async fn new(&mut self, b: Resource<Bucket>, key: String) -> R<Resource<Cas>> {
        let b = self.bucket(&b)?;
        self.new_cas(b, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> R<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        self.live_handles -= 1;
        Ok(())
    }
}

impl batch::Host for ComponentState {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> R<Vec<Option<(String, Vec<u8>)>>> {
        let b = self.bucket(&b)?;
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for key in keys {
            let v = match self.read(b, &key).await? {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            bytes += key.len() + v.as_ref().map_or(0, Vec::len);
            if bytes > MAX_REPLY_BYTES {
                return Ok(Err(other(format!(
                    "get-many reply over {MAX_REPLY_BYTES} bytes: ask for fewer keys"
                ))));
            }
            out.push(v.map(|v| (key, v)));
        }
        Ok(Ok(out))
    }

    async fn set_many(&mut self, b: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> R<()> {
        let b = self.bucket(&b)?;
        for (key, value) in key_values {
            if let Err(e) = self.write(b, &key, &value)? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> R<()> {
        let b = self.bucket(&b)?;
        for key in keys {
            if let Err(e) = self.remove(b, &key).await? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}

impl scan::Host for ComponentState {
    async fn range(
        &mut self,
        b: Resource<Bucket>,
        start: Option<String>,
        end: Option<String>,
        limit: u32,
    ) -> R<Vec<(String, Vec<u8>)>> {
        let b = self.bucket(&b)?;
        for k in start.iter().chain(end.iter()) {
            if let Err(e) = check_key(k) {
                return Ok(Err(e));
            }
        }
        let lo = start
            .as_deref()
            .map_or(Bound::Unbounded, |s| Bound::Included(s.as_bytes()));
        let hi = end
            .as_deref()
            .map_or(Bound::Unbounded, |s| Bound::Excluded(s.as_bytes()));
        // An empty range holds no keys, now or ever: no read.
        if let (Bound::Included(l), Bound::Excluded(h)) = (lo, hi)
            && l >= h
        {
            return Ok(Ok(Vec::new()));
        }
        self.entries(b, lo, hi, limit as usize, true).await
    }
}

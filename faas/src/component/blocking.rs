//! Rime's component imports as synchronous host functions, for an
//! invocation of a local function on a blocking caller's thread
//! (`Runtime::invoke`, `invoke_http`).
//!
//! Every import of the world is `async` in the main bindings (`mod.rs`):
//! on an executor a read that needs a page suspends the invocation. Each
//! async import costs a boxed future and a switch into wasmtime's blocking
//! context per call, some 250 ns on this project's machine
//! (`docs/components.md`), as much as the read itself. A blocking caller
//! never suspends: its reads wait for the disk in place
//! (`HostState::nowait` is false) and a local function's keyvalue calls
//! never await anything else, so every future they make is ready at its
//! first poll. These bindings link the same operations synchronously,
//! polling that future once ([`now`]); ABI v1 does the same with its
//! `Waiting` linker.
//!
//! A global function's calls wait for its Redis Cluster, so they always
//! take the async bindings (`attempt.rs` chooses); WASI stays async in
//! both linkers (its calls are not on a hot path, and some do wait).
//!
//! The generated types are this module's own, so each call converts its
//! result from the async bindings' types ([`Into`] impls below); the
//! resources (`Bucket`, `Cas`) are shared.

use super::ComponentState;
use super::kv::{Bucket, Cas};
use super::{rime::faaslet::scan as a_scan, wasi::keyvalue as a_kv};
use std::future::Future;
use std::task::{Context, Poll, Waker};
use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    path: "wit",
    world: "rime:faaslet/faaslet",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": crate::component::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::component::kv::Cas,
    },
    require_store_data_send: true,
});

use rime::faaslet::scan;
use wasi::keyvalue::{atomics, batch, store};

/// The result of one of the async bindings' operations, which on a
/// blocking caller's thread is ready at its first poll (module docs). One
/// that is not would mean a call that waits for something other than the
/// disk: it ends the attempt with an error rather than hanging it.
fn now<T>(op: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    let mut op = std::pin::pin!(op);
    match op.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(wasmtime::format_err!(
            "a keyvalue call of a blocking invocation tried to suspend"
        )),
    }
}

type R<T> = wasmtime::Result<Result<T, store::Error>>;

/// [`now`], with the error converted.
fn now_r<T>(op: impl Future<Output = super::kv::R<T>>) -> R<T> {
    Ok(now(op)?.map_err(Into::into))
}

impl From<a_kv::store::Error> for store::Error {
    fn from(e: a_kv::store::Error) -> Self {
        match e {
            a_kv::store::Error::NoSuchStore => store::Error::NoSuchStore,
            a_kv::store::Error::AccessDenied => store::Error::AccessDenied,
            a_kv::store::Error::Other(m) => store::Error::Other(m),
        }
    }
}

impl From<a_kv::store::KeyResponse> for store::KeyResponse {
    fn from(r: a_kv::store::KeyResponse) -> Self {
        store::KeyResponse {
            keys: r.keys,
            cursor: r.cursor,
        }
    }
}

impl From<a_kv::atomics::CasError> for atomics::CasError {
    fn from(e: a_kv::atomics::CasError) -> Self {
        match e {
            a_kv::atomics::CasError::StoreError(e) => atomics::CasError::StoreError(e.into()),
            a_kv::atomics::CasError::CasFailed(cas) => atomics::CasError::CasFailed(cas),
        }
    }
}

impl store::Host for ComponentState {
    fn open(&mut self, identifier: String) -> R<Resource<Bucket>> {
        now_r(a_kv::store::Host::open(self, identifier))
    }
}

impl store::HostBucket for ComponentState {
    fn get(&mut self, b: Resource<Bucket>, key: String) -> R<Option<Vec<u8>>> {
        now_r(a_kv::store::HostBucket::get(self, b, key))
    }

    fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> R<()> {
        now_r(a_kv::store::HostBucket::set(self, b, key, value))
    }

    fn delete(&mut self, b: Resource<Bucket>, key: String) -> R<()> {
        now_r(a_kv::store::HostBucket::delete(self, b, key))
    }

    fn exists(&mut self, b: Resource<Bucket>, key: String) -> R<bool> {
        now_r(a_kv::store::HostBucket::exists(self, b, key))
    }

    fn list_keys(&mut self, b: Resource<Bucket>, cursor: Option<String>) -> R<store::KeyResponse> {
        let r = now(a_kv::store::HostBucket::list_keys(self, b, cursor))?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        now(a_kv::store::HostBucket::drop(self, b))
    }
}

impl atomics::Host for ComponentState {
    fn increment(&mut self, b: Resource<Bucket>, key: String, delta: i64) -> R<i64> {
        now_r(a_kv::atomics::Host::increment(self, b, key, delta))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        Ok(now(a_kv::atomics::Host::swap(self, cas, value))?.map_err(Into::into))
    }
}

impl atomics::HostCas for ComponentState {
    fn new(&mut self, b: Resource<Bucket>, key: String) -> R<Resource<Cas>> {
        now_r(a_kv::atomics::HostCas::new(self, b, key))
    }

    fn current(&mut self, cas: Resource<Cas>) -> R<Option<Vec<u8>>> {
        now_r(a_kv::atomics::HostCas::current(self, cas))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        now(a_kv::atomics::HostCas::drop(self, cas))
    }
}

impl batch::Host for ComponentState {
    fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> R<Vec<Option<(String, Vec<u8>)>>> {
        now_r(a_kv::batch::Host::get_many(self, b, keys))
    }

    fn set_many(&mut self, b: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> R<()> {
        now_r(a_kv::batch::Host::set_many(self, b, key_values))
    }

    fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> R<()> {
        now_r(a_kv::batch::Host::delete_many(self, b, keys))
    }
}

impl scan::Host for ComponentState {
    fn range(
        &mut self,
        b: Resource<Bucket>,
        start: Option<String>,
        end: Option<String>,
        limit: u32,
    ) -> R<Vec<(String, Vec<u8>)>> {
        now_r(a_scan::Host::range(self, b, start, end, limit))
    }
}

//! An in-process host for native tests (targets other than wasm32).
//!
//! It follows `docs/abi.md` for every call's results and buffer protocol
//! and for what the log keeps (levels, truncation, the per-invocation
//! budget), so it doubles as an executable reference for the real host:
//! `faas/tests/mock_vs_host.rs` runs the same scripts of raw calls on both
//! and requires identical results. It does not model bounds-check traps
//! (there is no linear memory), conflicts and re-runs, or
//! `MAX_WRITE_SET_BYTES` / `MAX_WRITTEN_BYTES`. A transaction is modelled
//! by snapshotting the store in [`invoke`] and restoring it on failure.
//!
//! State is per thread, so parallel tests do not see each other.

use crate::abi::*;
use crate::codec::{encode_end, encode_entry, entry_len};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::string::{String, ToString};
use std::vec::Vec;

/// The name of the function's own namespace (handle 0) in the mock.
pub const OWN_NAME: &str = "own";

/// How the warning starts that ends an invocation's log when it reached its
/// budget (the host's words).
pub const LOG_TRUNCATED: &str = "log output truncated";

type Store = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct Host {
    stores: BTreeMap<String, Store>,
    /// Namespace name -> writable, as granted "at deploy time".
    grants: BTreeMap<String, bool>,
    /// Open handles of the current invocation: index = handle.
    handles: Vec<(String, bool)>,
    /// The function's configuration entries, as set "at deploy time".
    config: BTreeMap<String, Vec<u8>>,
    input: Vec<u8>,
    output: Vec<u8>,
    logs: Vec<(Level, String)>,
    /// The current invocation's log output so far: messages, bytes, and
    /// whether it was cut short (`MAX_LOG_*_PER_INVOCATION`).
    log_lines: usize,
    log_bytes: usize,
    log_truncated: bool,
}

std::thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

fn with<T>(f: impl FnOnce(&mut Host) -> T) -> T {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// What one invocation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The export's result code.
    pub code: i32,
    /// The output (the error message unless `code == RESULT_OK`).
    pub output: Vec<u8>,
}

impl Outcome {
    /// The output as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Clears all state, grants and logs of this thread's mock host.
pub fn reset() {
    with(|h| *h = Host::default());
}

/// Grants the namespace `name`, read-only or writable.
pub fn grant(name: &str, writable: bool) {
    with(|h| h.grants.insert(name.to_string(), writable));
}

/// Sets configuration entry `key` (deploy's `--env KEY=VALUE`), read by
/// [`crate::config`].
pub fn set_config(key: &str, value: &[u8]) {
    with(|h| h.config.insert(key.to_string(), value.to_vec()));
}

/// Runs a faaslet's `rime_invoke` export as one invocation: its store
/// changes survive only if it returns `RESULT_OK`.
pub fn invoke(input: &[u8], export: extern "C" fn() -> i32) -> Outcome {
    invoke_with(input, || export())
}

/// Like [`invoke`], for any closure standing in for the export.
pub fn invoke_with(input: &[u8], entry: impl FnOnce() -> i32) -> Outcome {
    let snapshot = with(|h| {
        h.input = input.to_vec();
        h.output.clear();
        (h.log_lines, h.log_bytes, h.log_truncated) = (0, 0, false);
        h.handles = std::vec![(OWN_NAME.to_string(), true)];
        h.stores.clone()
    });
    let code = entry();
    with(|h| {
        if code != RESULT_OK {
            h.stores = snapshot;
        }
        Outcome {
            code,
            output: core::mem::take(&mut h.output),
        }
    })
}

/// Writes directly to a namespace's committed state.
pub fn store(ns: &str, key: &[u8], value: &[u8]) {
    with(|h| {
        h.stores
            .entry(ns.to_string())
            .or_default()
            .insert(key.to_vec(), value.to_vec())
    });
}

/// Reads a namespace's committed state directly.
pub fn load(ns: &str, key: &[u8]) -> Option<Vec<u8>> {
    with(|h| h.stores.get(ns).and_then(|s| s.get(key)).cloned())
}

/// Takes the messages logged so far. As on the host, an invocation's log
/// stops at `MAX_LOG_LINES_PER_INVOCATION` messages or
/// `MAX_LOG_BYTES_PER_INVOCATION` bytes, with one last [`LOG_TRUNCATED`]
/// warning.
pub fn take_logs() -> Vec<(Level, String)> {
    with(|h| core::mem::take(&mut h.logs))
}

/// Copies `src` to `dst` if it fits (else nothing); returns `src.len()`.
fn copy_if_fits(src: &[u8], dst: &mut [u8]) -> i32 {
    if let Some(d) = dst.get_mut(..src.len()) {
        d.copy_from_slice(src);
    }
    src.len() as i32
}

impl Host {
    /// Ends the invocation's log output, with the host's one warning.
    fn truncate_log(&mut self) {
        self.log_truncated = true;
        self.logs.push((
            Level::Warn,
            std::format!(
                "{LOG_TRUNCATED}: this invocation reached {MAX_LOG_LINES_PER_INVOCATION} messages \
                 or {MAX_LOG_BYTES_PER_INVOCATION} bytes; the rest of its log is dropped"
            ),
        ));
    }

    /// The store behind `ns`, if open (and writable when `write`).
    fn store(&mut self, ns: i32, write: bool) -> Result<&mut Store, i32> {
        let (name, writable) = usize::try_from(ns)
            .ok()
            .and_then(|i| self.handles.get(i))
            .ok_or(ERR_BAD_HANDLE)?;
        if write && !writable {
            return Err(ERR_DENIED);
        }
        Ok(self.stores.entry(name.clone()).or_default())
    }
}

fn key_ok(key: &[u8]) -> Result<(), i32> {
    if key.len() > MAX_KEY_LEN {
        Err(ERR_KEY_TOO_LARGE)
    } else {
        Ok(())
    }
}

fn value_ok(value: &[u8]) -> Result<(), i32> {
    if value.len() > MAX_VALUE_LEN {
        Err(ERR_VALUE_TOO_LARGE)
    } else {
        Ok(())
    }
}

fn code(r: Result<i32, i32>) -> i32 {
    r.unwrap_or_else(|e| e)
}

/// The mock's versions of the imports, with the signatures of
/// [`crate::raw`] (which calls them on native targets).
pub(crate) mod calls {
    use super::*;

    pub(crate) fn input(buf: &mut [u8]) -> i32 {
        with(|h| copy_if_fits(&h.input, buf))
    }

    pub(crate) fn output(bytes: &[u8]) -> i32 {
        if bytes.len() > MAX_OUTPUT_LEN {
            return ERR_OUTPUT_TOO_LARGE;
        }
        with(|h| h.output = bytes.to_vec());
        0
    }

    pub(crate) fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        if !valid_config_key(key) {
            return ERR_INVALID;
        }
        let key = core::str::from_utf8(key).expect("a valid key is ASCII");
        with(|h| match h.config.get(key) {
            Some(v) => copy_if_fits(v, buf),
            None => ERR_NOT_FOUND,
        })
    }

    pub(crate) fn ns_open(name: &[u8]) -> i32 {
        if !valid_name(name) {
            return ERR_INVALID;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        with(|h| {
            if let Some(i) = h.handles.iter().position(|(n, _)| *n == name) {
                return i as i32;
            }
            let Some(&writable) = h.grants.get(&name) else {
                return ERR_DENIED;
            };
            if h.handles.len() >= MAX_OPEN_NAMESPACES {
                return ERR_LIMIT;
            }
            h.handles.push((name, writable));
            h.handles.len() as i32 - 1
        })
    }

    pub(crate) fn get(ns: i32, key: &[u8], buf: &mut [u8]) -> i32 {
        code(with(|h| {
            let store = h.store(ns, false)?;
            key_ok(key)?;
            store
                .get(key)
                .map(|v| copy_if_fits(v, buf))
                .ok_or(ERR_NOT_FOUND)
        }))
    }

    pub(crate) fn put(ns: i32, key: &[u8], val: &[u8]) -> i32 {
        code(with(|h| {
            let store = h.store(ns, true)?;
            key_ok(key)?;
            value_ok(val)?;
            store.insert(key.to_vec(), val.to_vec());
            Ok(0)
        }))
    }

    pub(crate) fn delete(ns: i32, key: &[u8]) -> i32 {
        code(with(|h| {
            let store = h.store(ns, true)?;
            key_ok(key)?;
            store.remove(key);
            Ok(0)
        }))
    }

    pub(crate) fn add(ns: i32, key: &[u8], delta: i64, out: &mut [u8; 8]) -> i32 {
        code(with(|h| {
            let store = h.store(ns, true)?;
            key_ok(key)?;
            let old = match store.get(key) {
                None => 0,
                Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| ERR_NOT_I64)?),
            };
            let new = old.checked_add(delta).ok_or(ERR_OVERFLOW)?;
            store.insert(key.to_vec(), new.to_le_bytes().to_vec());
            *out = new.to_le_bytes();
            Ok(0)
        }))
    }

    pub(crate) fn cas(ns: i32, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> i32 {
        code(with(|h| {
            let store = h.store(ns, true)?;
            key_ok(key)?;
            new.map_or(Ok(()), value_ok)?;
            // An expected value over the limit is an error, as any value
            // argument is, not a mismatch (the host's answer).
            expected.map_or(Ok(()), value_ok)?;
            if store.get(key).map(Vec::as_slice) != expected {
                return Ok(CAS_MISMATCH);
            }
            match new {
                Some(v) => store.insert(key.to_vec(), v.to_vec()),
                None => store.remove(key),
            };
            Ok(CAS_OK)
        }))
    }

    pub(crate) fn scan(ns: i32, lo: &[u8], hi: Option<&[u8]>, flags: u32, buf: &mut [u8]) -> i32 {
        code(with(|h| {
            let store = h.store(ns, false)?;
            key_ok(lo)?;
            hi.map_or(Ok(()), key_ok)?;
            if flags & !SCAN_FLAGS_ALL != 0 {
                return Err(ERR_INVALID);
            }
            let lo_excl = flags & SCAN_LO_EXCLUSIVE != 0;
            let hi_incl = flags & SCAN_HI_INCLUSIVE != 0;
            let empty = hi.is_some_and(|hi| lo > hi || (lo == hi && (lo_excl || !hi_incl)));
            let lo_bound = if lo_excl {
                Bound::Excluded(lo)
            } else {
                Bound::Included(lo)
            };
            let hi_bound = match hi {
                None => Bound::Unbounded,
                Some(k) if hi_incl => Bound::Included(k),
                Some(k) => Bound::Excluded(k),
            };
            let mut at = 0;
            if !empty {
                for (k, v) in store.range::<[u8], _>((lo_bound, hi_bound)) {
                    match encode_entry(&mut buf[at..], k, v) {
                        Some(n) => at += n,
                        // Whole records only; if none fit, say what is needed.
                        None if at == 0 => return Ok(entry_len(k, v) as i32),
                        None => return Ok(at as i32),
                    }
                }
            }
            Ok(match encode_end(&mut buf[at..]) {
                Some(n) => (at + n) as i32,
                None if at == 0 => SCAN_END_LEN as i32,
                None => at as i32,
            })
        }))
    }

    pub(crate) fn log(level: i32, msg: &[u8]) {
        let level = Level::from_raw(level);
        with(|h| {
            if h.log_truncated {
                return;
            }
            let room = MAX_LOG_BYTES_PER_INVOCATION - h.log_bytes;
            if h.log_lines >= MAX_LOG_LINES_PER_INVOCATION || room == 0 {
                h.truncate_log();
                return;
            }
            // At most MAX_LOG_LEN bytes, and no more than the budget's room,
            // then invalid UTF-8 replaced; replacement characters can make
            // the text longer than its bytes, so cut again at a char
            // boundary within the room.
            let kept = msg.len().min(MAX_LOG_LEN);
            let mut text = String::from_utf8_lossy(&msg[..kept.min(room)]).into_owned();
            let cut = text.len() > room || kept > room;
            if text.len() > room {
                let mut end = room;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            h.log_bytes += text.len();
            h.log_lines += 1;
            h.logs.push((level, text));
            if cut {
                h.truncate_log();
            }
        });
    }
}

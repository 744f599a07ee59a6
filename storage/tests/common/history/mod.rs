//! The workload whose history [`elle::check`] judges: threads running
//! transactions on a `Db`, each recording what its committed attempt read
//! and appended.
//!
//! Every value but a balance is a list: elements of `id ‖ delta ‖ padding`,
//! the padding a pattern of the id (checked on every read; it makes values
//! outgrow the leaf and the pool). Keys:
//!
//! * `bank`: `acct/NNN`, an account's list, its balance `INITIAL + Σ delta`;
//!   `bal/NNN`, the same balance as an i64 kept by `tx.add`.
//! * `lists`: `reg/NNNN`, registers; `slot/NNNNNNNN`, slots created,
//!   appended to and deleted under range scans. Deleting a slot removes its
//!   key and inserts `slot/NNNNNNNN~` (sorted right after it) holding the
//!   list plus the deleter's id, so for the checker a slot is one list that
//!   is `[]` before its creation and a scan that saw neither key read `[]`:
//!   phantoms (a creation, a deletion) become rw and wr edges.
//!
//! Transactions: transfers (two lists and two `add`s; they abort on
//! insufficient funds), audits (every account: `Σ bal = accounts ×
//! INITIAL` and each balance equals its list's sum), read-modify-writes of
//! 1-4 registers (now and then an account with delta 0, a second tree),
//! read-only reads, slot creations, and scans of a window of slots that may
//! stop early and may append to or delete a slot they saw.
//!
//! An attempt's record is the closure's return value, so only the attempt
//! that committed is kept; a writer whose commit failed in a crash is kept
//! aside as in doubt (recovery decides).
//!
//! `txns.rs`: the transactions; `run.rs`: the threads and the state read.

pub mod elle;
mod run;
mod txns;

pub use run::{Crash, RunLog, State, read_state, run};

use elle::{Id, Lists, Op, Txn};
use rime_storage::{Db, TreeId};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every account's balance before the first transfer.
pub const INITIAL: i64 = 1_000;

/// Size and mix of a run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub threads: u64,
    pub txns_per_thread: u64,
    pub accounts: u32,
    pub registers: u32,
    /// Padding bytes per element of registers and slots (not accounts:
    /// every transfer rewrites two of them, and audits read them all).
    pub pad: usize,
    pub seed: u64,
}

/// Ids and slot numbers, never reused, across all runs on one directory.
#[derive(Default)]
pub struct Ids {
    next_id: AtomicU64,
    next_slot: AtomicU64,
}

impl Ids {
    fn id(&self) -> Id {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[derive(Clone, Copy)]
pub struct Trees {
    pub bank: TreeId,
    pub lists: TreeId,
}

impl Trees {
    /// Creates both trees and sets every balance to `INITIAL`.
    pub fn create(db: &Db, shape: &Shape) -> Trees {
        let trees = Trees {
            bank: db.create_tree("bank").unwrap(),
            lists: db.create_tree("lists").unwrap(),
        };
        db.transaction(|tx| {
            (0..shape.accounts)
                .try_for_each(|a| tx.put(trees.bank, &bal_key(a), &INITIAL.to_le_bytes()))
        })
        .unwrap();
        trees
    }

    pub fn open(db: &Db) -> Trees {
        let open = |n| {
            db.open_tree(n)
                .unwrap()
                .unwrap_or_else(|| panic!("tree {n} is gone"))
        };
        Trees {
            bank: open("bank"),
            lists: open("lists"),
        }
    }
}

fn acct_key(a: u32) -> String {
    format!("acct/{a:03}")
}

fn bal_key(a: u32) -> Vec<u8> {
    format!("bal/{a:03}").into_bytes()
}

fn reg_key(r: u32) -> String {
    format!("reg/{r:04}")
}

/// A slot's live key, and its name for the checker.
fn slot_key(n: u64) -> String {
    format!("slot/{n:08}")
}

fn tomb_key(n: u64) -> String {
    format!("slot/{n:08}~")
}

/// Bounds of every slot key.
const SLOTS: (&[u8], &[u8]) = (b"slot/", b"slot0");

/// (slot number, is the tombstone).
fn parse_slot(k: &[u8]) -> (u64, bool) {
    let digits = k.get(5..13).and_then(|d| std::str::from_utf8(d).ok());
    let n = digits.and_then(|d| d.parse().ok());
    let n = n.unwrap_or_else(|| panic!("a scan of slots returned the key {k:?}"));
    (n, k.len() == 14 && k[13] == b'~')
}

#[derive(Clone, Copy)]
struct Elem {
    id: Id,
    delta: i64,
}

fn pad_byte(id: Id, i: usize) -> u8 {
    (id as u8).wrapping_mul(31).wrapping_add(i as u8)
}

/// `old` with the element `(id, delta)` appended.
fn appended(old: &[u8], id: Id, delta: i64, pad: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(old.len() + 16 + pad);
    v.extend_from_slice(old);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&delta.to_le_bytes());
    v.extend((0..pad).map(|i| pad_byte(id, i)));
    v
}

/// The elements of `key`'s value. A stored value is written whole, so
/// any read of one (even by an attempt that later conflicts) decodes.
fn decode(key: &str, v: &[u8], pad: usize) -> Vec<Elem> {
    try_decode(v, pad).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn try_decode(v: &[u8], pad: usize) -> Result<Vec<Elem>, String> {
    let len = 16 + pad;
    if !v.len().is_multiple_of(len) {
        return Err(format!(
            "a value of {} bytes is no list of {len}-byte elements",
            v.len()
        ));
    }
    let elems: Vec<Elem> = v
        .chunks(len)
        .map(|c| Elem {
            id: u64::from_le_bytes(c[..8].try_into().unwrap()),
            delta: i64::from_le_bytes(c[8..16].try_into().unwrap()),
        })
        .collect();
    for (e, c) in elems.iter().zip(v.chunks(len)) {
        if c[16..]
            .iter()
            .enumerate()
            .any(|(i, &b)| b != pad_byte(e.id, i))
        {
            return Err(format!("element T{} has corrupt padding", e.id));
        }
    }
    Ok(elems)
}

fn balance(list: &[Elem]) -> i64 {
    INITIAL + list.iter().map(|e| e.delta).sum::<i64>()
}

/// What one attempt did; kept only if it committed.
#[derive(Clone, Debug)]
pub struct Rec {
    pub txn: Txn,
    /// Invariants this attempt saw broken: failures if it committed.
    pub problems: Vec<String>,
}

impl Rec {
    fn read(&mut self, key: &str, list: &[Elem]) {
        let list = list.iter().map(|e| e.id).collect();
        let key = key.into();
        self.txn.ops.push(Op::Read { key, list });
    }

    fn append(&mut self, key: &str) {
        self.txn.ops.push(Op::Append { key: key.into() });
    }

    fn problem(&mut self, p: String) {
        self.problems.push(format!("T{}: {p}", self.txn.id));
    }
}

#[cfg(test)]
mod tests {
    use super::{INITIAL, appended, balance, try_decode};

    #[test]
    fn a_list_decodes_to_its_appends_and_corrupt_padding_is_caught() {
        let v = appended(&appended(&[], 7, -5, 30), 9, 5, 30);
        let list = try_decode(&v, 30).unwrap();
        let ids: Vec<(u64, i64)> = list.iter().map(|e| (e.id, e.delta)).collect();
        assert_eq!(ids, [(7, -5), (9, 5)]);
        assert_eq!(balance(&list), INITIAL);
        let mut bad = v.clone();
        bad[46 + 20] ^= 1; // in the second element's padding
        assert_eq!(
            try_decode(&bad, 30).err().as_deref(),
            Some("element T9 has corrupt padding")
        );
        assert!(
            try_decode(&v[..50], 30).is_err(),
            "a truncated list went unnoticed"
        );
    }
}

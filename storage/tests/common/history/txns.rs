//! The transactions of the workload: each attempt returns its record.

use super::{
    Elem, INITIAL, Id, Ids, Rec, Shape, Trees, Txn, acct_key, appended, bal_key, balance, decode,
    parse_slot, reg_key, slot_key, tomb_key,
};
use rand::Rng;
use rand::rngs::StdRng;
use rime_storage::{Db, TreeId, Tx, TxError};
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::Ordering;

/// A transaction's random choices, drawn before its first attempt.
#[derive(Debug)]
pub(super) enum Plan {
    Transfer {
        from: u32,
        to: u32,
        amount: i64,
    },
    Audit,
    Rmw {
        write: Vec<u32>,
        peek: Vec<u32>,
        acct: Option<u32>,
    },
    ReadOnly {
        regs: Vec<u32>,
        batched: bool,
    },
    /// A larger read-only batch through `Db::get_many`, which finishes a
    /// conflicted batch under the locks of its keys instead of re-running.
    DbGetMany {
        regs: Vec<u32>,
    },
    Create {
        slot: u64,
    },
    Scan {
        lo: u64,
        hi: u64,
        limit: Option<usize>,
        modify: bool,
    },
}

impl Plan {
    pub(super) fn draw(rng: &mut StdRng, shape: &Shape, ids: &Ids) -> Plan {
        let regs = |rng: &mut StdRng, n| {
            let n = rand::seq::index::sample(rng, shape.registers as usize, n);
            n.into_iter().map(|r| r as u32).collect::<Vec<_>>()
        };
        match rng.gen_range(0..100) {
            0..20 => {
                let from = rng.gen_range(0..shape.accounts);
                let to = (from + rng.gen_range(1..shape.accounts)) % shape.accounts;
                let amount = rng.gen_range(1..=300);
                Plan::Transfer { from, to, amount }
            }
            20..27 => Plan::Audit,
            27..50 => {
                let (w, p) = (rng.gen_range(1..=4), rng.gen_range(0..=2));
                let mut write = regs(rng, w + p);
                let peek = write.split_off(w);
                let acct = rng.gen_bool(0.25).then(|| rng.gen_range(0..shape.accounts));
                Plan::Rmw { write, peek, acct }
            }
            50..54 => Plan::DbGetMany {
                regs: {
                    let n = rng.gen_range(8..=24).min(shape.registers as usize);
                    regs(rng, n)
                },
            },
            54..60 => Plan::ReadOnly {
                regs: {
                    let n = rng.gen_range(2..=6);
                    regs(rng, n)
                },
                batched: rng.r#gen(),
            },
            60..72 => Plan::Create {
                slot: ids.next_slot.fetch_add(1, Ordering::Relaxed),
            },
            _ => {
                let next = ids.next_slot.load(Ordering::Relaxed);
                Plan::Scan {
                    lo: next.saturating_sub(rng.gen_range(4..32)),
                    hi: next + rng.gen_range(1..4),
                    limit: rng.gen_bool(0.3).then(|| rng.gen_range(1..6)),
                    modify: rng.gen_bool(0.6),
                }
            }
        }
    }
}

/// What an attempt needs besides the plan.
pub(super) struct Ctx {
    trees: Trees,
    pad: usize,
    accounts: u32,
    pub(super) id: Id,
}

impl Ctx {
    /// The context of transaction `id` (a fresh one per transaction).
    pub(super) fn new(trees: Trees, shape: &Shape, id: Id) -> Ctx {
        Ctx {
            trees,
            pad: shape.pad,
            accounts: shape.accounts,
            id,
        }
    }

    /// Accounts carry no padding.
    fn pad(&self, tree: TreeId) -> usize {
        if tree == self.trees.bank { 0 } else { self.pad }
    }

    fn rec(&self) -> Rec {
        Rec {
            txn: Txn::new(self.id),
            problems: Vec::new(),
        }
    }

    pub(super) fn execute(&self, tx: &mut Tx<'_>, plan: &Plan) -> Result<Rec, TxError> {
        match plan {
            &Plan::Transfer { from, to, amount } => self.transfer(tx, [from, to], amount),
            Plan::Audit => self.audit(tx),
            Plan::Rmw { write, peek, acct } => self.rmw(tx, write, peek, *acct),
            Plan::ReadOnly { regs, batched } => self.read_only(tx, regs, *batched),
            Plan::DbGetMany { regs } => self.read_only(tx, regs, true),
            &Plan::Create { slot } => self.create(tx, slot),
            &Plan::Scan {
                lo,
                hi,
                limit,
                modify,
            } => self.scan(tx, lo, hi, limit, modify),
        }
    }

    /// Values of `keys` of `tree` in one batch (absent: empty).
    fn get_many(
        &self,
        tx: &mut Tx<'_>,
        tree: TreeId,
        keys: &[String],
    ) -> Result<Vec<Vec<u8>>, TxError> {
        let mut raw = vec![Vec::new(); keys.len()];
        tx.get_many(tree, keys, |i, v| {
            raw[i] = v.map_or_else(Vec::new, <[u8]>::to_vec)
        })?;
        Ok(raw)
    }

    fn get(&self, tx: &mut Tx<'_>, tree: TreeId, key: &str) -> Result<Vec<u8>, TxError> {
        Ok(tx
            .get(tree, key.as_bytes(), <[u8]>::to_vec)?
            .unwrap_or_default())
    }

    /// Reads `key`, appends this transaction's element, records both.
    fn append(
        &self,
        tx: &mut Tx<'_>,
        rec: &mut Rec,
        tree: TreeId,
        key: &str,
        delta: i64,
    ) -> Result<Vec<Elem>, TxError> {
        let raw = self.get(tx, tree, key)?;
        let list = decode(key, &raw, self.pad(tree));
        rec.read(key, &list);
        tx.put(
            tree,
            key.as_bytes(),
            &appended(&raw, self.id, delta, self.pad(tree)),
        )?;
        rec.append(key);
        Ok(list)
    }

    fn transfer(&self, tx: &mut Tx<'_>, accts: [u32; 2], amount: i64) -> Result<Rec, TxError> {
        let (mut rec, bank) = (self.rec(), self.trees.bank);
        let keys = accts.map(acct_key);
        let raw = self.get_many(tx, bank, &keys)?;
        let lists: Vec<Vec<Elem>> = keys
            .iter()
            .zip(&raw)
            .map(|(k, v)| decode(k, v, 0))
            .collect();
        if balance(&lists[0]) < amount {
            return Err(tx.abort("insufficient funds"));
        }
        for (i, delta) in [(0, -amount), (1, amount)] {
            rec.read(&keys[i], &lists[i]);
            tx.put(
                bank,
                keys[i].as_bytes(),
                &appended(&raw[i], self.id, delta, 0),
            )?;
            rec.append(&keys[i]);
            let got = tx.add(bank, &bal_key(accts[i]), delta)?;
            let want = balance(&lists[i]) + delta;
            if got != want {
                rec.problem(format!(
                    "{} became {got} by add, its list sums to {want}",
                    keys[i]
                ));
            }
        }
        Ok(rec)
    }

    pub(super) fn audit(&self, tx: &mut Tx<'_>) -> Result<Rec, TxError> {
        let (mut rec, bank) = (self.rec(), self.trees.bank);
        let keys: Vec<String> = (0..self.accounts).map(acct_key).collect();
        let raw = self.get_many(tx, bank, &keys)?;
        let mut total = 0;
        for (a, (key, v)) in keys.iter().zip(&raw).enumerate() {
            let list = decode(key, v, 0);
            rec.read(key, &list);
            let bal = tx.get(bank, &bal_key(a as u32), |v| {
                i64::from_le_bytes(v.try_into().unwrap())
            })?;
            let bal = bal.unwrap_or_else(|| panic!("bal/{a:03} is gone"));
            total += bal;
            if bal != balance(&list) {
                rec.problem(format!(
                    "audit: bal/{a:03} = {bal}, its list sums to {}",
                    balance(&list)
                ));
            }
        }
        if total != INITIAL * i64::from(self.accounts) {
            rec.problem(format!("audit: the balances sum to {total}"));
        }
        Ok(rec)
    }

    fn rmw(
        &self,
        tx: &mut Tx<'_>,
        write: &[u32],
        peek: &[u32],
        acct: Option<u32>,
    ) -> Result<Rec, TxError> {
        let mut rec = self.rec();
        for &r in write {
            self.append(tx, &mut rec, self.trees.lists, &reg_key(r), 0)?;
        }
        for &r in peek {
            let key = reg_key(r);
            let raw = self.get(tx, self.trees.lists, &key)?;
            rec.read(&key, &decode(&key, &raw, self.pad));
        }
        if let Some(a) = acct {
            self.append(tx, &mut rec, self.trees.bank, &acct_key(a), 0)?;
        }
        Ok(rec)
    }

    pub(super) fn read_only(
        &self,
        tx: &mut Tx<'_>,
        regs: &[u32],
        batched: bool,
    ) -> Result<Rec, TxError> {
        let mut rec = self.rec();
        let keys: Vec<String> = regs.iter().map(|&r| reg_key(r)).collect();
        let raw = match batched {
            true => self.get_many(tx, self.trees.lists, &keys)?,
            false => keys
                .iter()
                .map(|k| self.get(tx, self.trees.lists, k))
                .collect::<Result<_, _>>()?,
        };
        for (k, v) in keys.iter().zip(&raw) {
            rec.read(k, &decode(k, v, self.pad));
        }
        Ok(rec)
    }

    /// [`Ctx::read_only`] batched through `Db::get_many`: its own
    /// transaction, not run in a closure.
    pub(super) fn db_get_many(&self, db: &Db, regs: &[u32]) -> Result<Rec, TxError> {
        let mut rec = self.rec();
        let keys: Vec<String> = regs.iter().map(|&r| reg_key(r)).collect();
        let mut raw = vec![Vec::new(); keys.len()];
        db.get_many(self.trees.lists, &keys, |i, v| {
            raw[i] = v.map_or_else(Vec::new, <[u8]>::to_vec)
        })?;
        for (k, v) in keys.iter().zip(&raw) {
            rec.read(k, &decode(k, v, self.pad));
        }
        Ok(rec)
    }

    /// Creates slot `n` (a number nobody else uses).
    fn create(&self, tx: &mut Tx<'_>, n: u64) -> Result<Rec, TxError> {
        let (mut rec, lists, key) = (self.rec(), self.trees.lists, slot_key(n));
        let live = tx.get(lists, key.as_bytes(), <[u8]>::to_vec)?;
        let tomb = tx.get(lists, tomb_key(n).as_bytes(), <[u8]>::to_vec)?;
        match live.or(tomb) {
            None => {
                rec.read(&key, &[]);
                tx.put(lists, key.as_bytes(), &appended(&[], self.id, 0, self.pad))?;
                rec.append(&key);
            }
            Some(v) => {
                rec.read(&key, &decode(&key, &v, self.pad));
                rec.problem(format!("the fresh {key} exists already"));
            }
        }
        Ok(rec)
    }

    /// Scans slots `lo..hi` (up to `limit` keys); then maybe appends to or
    /// deletes one it saw live.
    fn scan(
        &self,
        tx: &mut Tx<'_>,
        lo: u64,
        hi: u64,
        limit: Option<usize>,
        modify: bool,
    ) -> Result<Rec, TxError> {
        let (mut rec, lists) = (self.rec(), self.trees.lists);
        let (lo_k, hi_k) = (slot_key(lo), slot_key(hi));
        let range = (lo_k.as_bytes(), hi_k.as_bytes());
        let (seen, end) = scan_slots(tx, lists, range, limit)?;
        let end = end.unwrap_or(hi);
        let mut live = Vec::new();
        for (n, (l, t)) in &seen {
            if !(lo..end).contains(n) {
                rec.problem(format!("a scan of slots {lo}..{hi} returned slot {n}"));
            } else if l.is_some() && t.is_some() {
                rec.problem(format!("slot {n} is both live and deleted"));
            }
        }
        for n in lo..end {
            let key = slot_key(n);
            let (l, t) = seen.get(&n).cloned().unwrap_or_default();
            let list = l
                .as_ref()
                .or(t.as_ref())
                .map_or_else(Vec::new, |v| decode(&key, v, self.pad));
            rec.read(&key, &list);
            if let (Some(v), None) = (l, t) {
                live.push((n, v));
            }
        }
        if !modify || live.is_empty() {
            return Ok(rec);
        }
        let (n, raw) = &live[self.id as usize % live.len()];
        let elem = appended(raw, self.id, 0, self.pad);
        if self.id.is_multiple_of(3) {
            if !tx.delete(lists, slot_key(*n).as_bytes())? {
                rec.problem(format!("slot {n} vanished between the scan and its delete"));
            }
            tx.put(lists, tomb_key(*n).as_bytes(), &elem)?;
        } else {
            tx.put(lists, slot_key(*n).as_bytes(), &elem)?;
        }
        rec.append(&slot_key(*n));
        Ok(rec)
    }
}

/// Each slot's (live, tombstone) values.
pub(super) type Slots = BTreeMap<u64, (Option<Vec<u8>>, Option<Vec<u8>>)>;

/// The slots with keys in `lo..hi`, up to `limit` keys; and the number of
/// the first slot the scan did not cover (it stopped after the slot of its
/// last key), or `None` if it covered the whole range.
pub(super) fn scan_slots(
    tx: &mut Tx<'_>,
    tree: TreeId,
    (lo, hi): (&[u8], &[u8]),
    limit: Option<usize>,
) -> Result<(Slots, Option<u64>), TxError> {
    let (mut seen, mut entries, mut end) = (Slots::new(), 0, None);
    tx.scan(tree, Bound::Included(lo), Bound::Excluded(hi), |k, v| {
        let (n, tomb) = parse_slot(k);
        let e = seen.entry(n).or_default();
        *if tomb { &mut e.1 } else { &mut e.0 } = Some(v.to_vec());
        entries += 1;
        if limit.is_some_and(|l| entries >= l) {
            end = Some(n + 1);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    Ok((seen, end))
}

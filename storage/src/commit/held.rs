//! What a commit locks ([`LockPlan`]), and holding it ([`Held`]): every
//! lock is released when the guard drops, on every path out, a panic's
//! unwinding included.

use crate::inner::DbInner;
use crate::locks::{Gates, KeyLocks, Phase};
use crate::tx::TxBufs;
use crate::wal::{TreeId, Write};

/// A tree gate is needed to write (`A`), to validate a scan (`B`), or both
/// (`X`); two trees hashed to one gate add up.
const WRITE: u8 = 1;
const SCAN: u8 = 2;

/// The locks of one commit, sorted in the lock order (`inner.rs`), each
/// once. Kept in the transaction's buffers: built without allocating once
/// warm.
#[derive(Default)]
pub(crate) struct LockPlan {
    /// Key stripes of the write set, ascending.
    pub stripes: Vec<u32>,
    /// Tree gates and the phase each is held in, by ascending gate.
    pub gates: Vec<(u32, Phase)>,
    needs: Vec<(u32, u8)>,
}

impl LockPlan {
    /// The plan of a transaction that writes `writes` and validates the
    /// scans of `b` (a read-only transaction passes no writes).
    pub fn build(&mut self, b: &TxBufs, writes: &[Write<'_>]) {
        self.start(writes);
        for s in &b.scans {
            self.needs.push((Gates::of_tree(s.tree.0), SCAN));
        }
        self.finish();
    }

    /// The plan of a catalog change writing `writes`, which drops the tree
    /// `dropped` if any (held alone: nobody applies to it meanwhile).
    pub fn build_for(&mut self, writes: &[Write<'_>], dropped: Option<TreeId>) {
        self.start(writes);
        if let Some(t) = dropped {
            self.needs.push((Gates::of_tree(t.0), WRITE | SCAN));
        }
        self.finish();
    }

    fn start(&mut self, writes: &[Write<'_>]) {
        self.stripes.clear();
        self.needs.clear();
        self.gates.clear();
        for w in writes {
            self.stripes.push(KeyLocks::stripe(w.tree.0, w.key));
            self.needs.push((Gates::of_tree(w.tree.0), WRITE));
        }
    }

    fn finish(&mut self) {
        self.stripes.sort_unstable();
        self.stripes.dedup();
        self.needs.sort_unstable();
        let mut merged: Option<(u32, u8)> = None;
        for &(gate, need) in &self.needs {
            match merged {
                Some((g, n)) if g == gate => merged = Some((g, n | need)),
                Some((g, n)) => {
                    self.gates.push((g, phase(n)));
                    merged = Some((gate, need));
                }
                None => merged = Some((gate, need)),
            }
        }
        if let Some((g, n)) = merged {
            self.gates.push((g, phase(n)));
        }
    }
}

fn phase(needs: u8) -> Phase {
    match needs {
        WRITE => Phase::A,
        SCAN => Phase::B,
        _ => Phase::X,
    }
}

/// The locks of a [`LockPlan`], held: the apply gate (writers only), then
/// the tree gates, then the key stripes, each in ascending order.
pub(crate) struct Held<'a> {
    db: &'a DbInner,
    plan: &'a LockPlan,
    apply: bool,
    gates: usize,
    stripes: usize,
}

impl<'a> Held<'a> {
    /// Takes every lock of `plan` (and the apply gate in phase `A` if
    /// `writer`), waiting for each in turn.
    pub fn acquire(db: &'a DbInner, plan: &'a LockPlan, writer: bool) -> Self {
        let mut held = Held {
            db,
            plan,
            apply: false,
            gates: 0,
            stripes: 0,
        };
        if writer {
            db.gates().lock_apply(Phase::A);
            held.apply = true;
        }
        for &(gate, phase) in &plan.gates {
            db.gates().lock_tree(gate, phase);
            held.gates += 1;
        }
        for &s in &plan.stripes {
            db.key_locks().lock(s);
            held.stripes += 1;
        }
        held
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for &s in self.plan.stripes[..self.stripes].iter().rev() {
            self.db.key_locks().unlock(s);
        }
        for &(gate, phase) in self.plan.gates[..self.gates].iter().rev() {
            self.db.gates().unlock_tree(gate, phase);
        }
        if self.apply {
            self.db.gates().unlock_apply(Phase::A);
        }
    }
}

/// The apply gate held in one phase (the checkpoint holds `B`).
pub(crate) struct ApplyGate<'a> {
    gates: &'a Gates,
    phase: Phase,
}

impl<'a> ApplyGate<'a> {
    pub fn enter(gates: &'a Gates, phase: Phase) -> Self {
        gates.lock_apply(phase);
        ApplyGate { gates, phase }
    }
}

impl Drop for ApplyGate<'_> {
    fn drop(&mut self) {
        self.gates.unlock_apply(self.phase);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_tree_both_written_and_scanned_is_held_alone() {
        let mut b = TxBufs::default();
        b.scans.push(crate::tx::ScanRec::unbounded(TreeId(9)));
        let writes = [
            Write {
                tree: TreeId(9),
                key: b"b",
                value: None,
            },
            Write {
                tree: TreeId(9),
                key: b"a",
                value: Some(b"1"),
            },
            Write {
                tree: TreeId(4),
                key: b"a",
                value: Some(b"1"),
            },
        ];
        let mut plan = LockPlan::default();
        plan.build(&b, &writes);
        assert!(
            plan.stripes.windows(2).all(|w| w[0] < w[1]),
            "stripes ascending, once each"
        );
        assert!(
            plan.gates.windows(2).all(|w| w[0].0 < w[1].0),
            "gates ascending, once each"
        );
        let phase_of = |t: u32| {
            plan.gates
                .iter()
                .find(|g| g.0 == Gates::of_tree(t))
                .unwrap()
                .1
        };
        assert_eq!(phase_of(9), Phase::X);
        if Gates::of_tree(4) != Gates::of_tree(9) {
            assert_eq!(phase_of(4), Phase::A);
        }
    }
}

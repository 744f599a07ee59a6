//! Running the workload's threads, and reading the whole state.

use super::txns::{Ctx, Plan, scan_slots};
use super::{Ids, Lists, Op, Rec, SLOTS, Shape, Trees, decode, slot_key};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rime_bufmgr::io::CrashSwitch;
use rime_storage::{Db, TxError};
use std::sync::atomic::{AtomicU64, Ordering};

/// The crash a run ends with: the switch fires after that many commits.
#[derive(Clone, Copy)]
pub struct Crash<'a> {
    pub switch: &'a CrashSwitch,
    pub after_commits: u64,
}

/// What a run's threads did.
#[derive(Default)]
pub struct RunLog {
    pub committed: Vec<Rec>,
    /// Writers whose commit failed in the crash: present after recovery or not.
    pub in_doubt: Vec<Rec>,
    /// Errors no crash explains.
    pub errors: Vec<String>,
    pub aborted: u64,
    pub gave_up: u64,
    /// Threads the crash stopped.
    pub stopped: u64,
}

impl RunLog {
    fn merge(mut self, o: RunLog) -> RunLog {
        self.committed.extend(o.committed);
        self.in_doubt.extend(o.in_doubt);
        self.errors.extend(o.errors);
        self.aborted += o.aborted;
        self.gave_up += o.gave_up;
        self.stopped += o.stopped;
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "{} committed ({} writers), {} aborted, {} gave up after conflicts, \
             {} in doubt, {} threads stopped by the crash",
            self.committed.len(),
            self.committed
                .iter()
                .filter(|r| r.txn.writes().next().is_some())
                .count(),
            self.aborted,
            self.gave_up,
            self.in_doubt.len(),
            self.stopped
        )
    }
}

/// `shape.threads` threads, each running `shape.txns_per_thread`
/// transactions (until the crash, if one is given).
pub fn run(db: &Db, trees: Trees, shape: &Shape, ids: &Ids, crash: Option<Crash<'_>>) -> RunLog {
    let commits = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..shape.threads)
            .map(|th| {
                let commits = &commits;
                s.spawn(move || worker(db, trees, shape, ids, crash, commits, th))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .fold(RunLog::default(), RunLog::merge)
    })
}

fn worker(
    db: &Db,
    trees: Trees,
    shape: &Shape,
    ids: &Ids,
    crash: Option<Crash<'_>>,
    commits: &AtomicU64,
    th: u64,
) -> RunLog {
    let mut rng = StdRng::seed_from_u64(shape.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ th);
    let mut log = RunLog::default();
    // This thread's last commit: session order for the checker.
    let mut prev = None;
    for _ in 0..shape.txns_per_thread {
        let plan = Plan::draw(&mut rng, shape, ids);
        let ctx = Ctx::new(trees, shape, ids.id());
        let mut last = None;
        let r = match &plan {
            Plan::DbGetMany { regs } => ctx.db_get_many(db, regs),
            _ => db.transaction(|tx| {
                last = None;
                let rec = ctx.execute(tx, &plan)?;
                last = Some(rec.clone());
                Ok(rec)
            }),
        };
        match r {
            Ok(mut rec) => {
                rec.txn.prev = prev.replace(ctx.id);
                log.committed.push(rec);
                let n = commits.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(c) = crash.filter(|c| c.after_commits == n) {
                    c.switch.fire();
                }
            }
            Err(TxError::Aborted(_)) => log.aborted += 1,
            Err(TxError::Conflict { .. }) => log.gave_up += 1,
            Err(_) if crash.is_some_and(|c| c.switch.fired()) => {
                log.in_doubt
                    .extend(last.filter(|r| r.txn.writes().next().is_some()));
                log.stopped += 1;
                break;
            }
            Err(e) => {
                log.errors.push(format!("T{} {plan:?}: {e}", ctx.id));
                break;
            }
        }
    }
    log
}

/// The Db's contents, read when no transaction runs.
pub struct State {
    /// Every non-empty list (a deleted slot's from its tombstone).
    pub lists: Lists,
    /// The read itself, a transaction of the history.
    pub rec: Rec,
}

/// Reads every list and balance in one transaction, checking the bank.
pub fn read_state(db: &Db, trees: Trees, shape: &Shape, ids: &Ids) -> State {
    let ctx = Ctx::new(trees, shape, ids.id());
    let rec = db
        .transaction(|tx| {
            let mut rec = ctx.audit(tx)?;
            let regs: Vec<u32> = (0..shape.registers).collect();
            rec.txn.ops.extend(ctx.read_only(tx, &regs, true)?.txn.ops);
            let (seen, _) = scan_slots(tx, trees.lists, SLOTS, None)?;
            for (n, (l, t)) in seen {
                let key = slot_key(n);
                if l.is_some() && t.is_some() {
                    rec.problem(format!("{key} is both live and deleted"));
                }
                let v = l.or(t).unwrap();
                rec.read(&key, &decode(&key, &v, shape.pad));
            }
            Ok(rec)
        })
        .unwrap_or_else(|e| panic!("reading the whole state: {e}"));
    let lists = rec
        .txn
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Read { key, list } if !list.is_empty() => Some((key.clone(), list.clone())),
            _ => None,
        })
        .collect();
    State { lists, rec }
}

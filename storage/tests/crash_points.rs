//! Crash-consistency search (ALICE/CrashMonkey style) over the
//! fault-injecting block file, checked against a trivial model.
//!
//! Every cycle of the search:
//!
//! 1. Arms a [`CrashSwitch`] shared by every file of the directory at a
//!    random count of writes and syncs: sometimes before `Db::open` (the
//!    crash lands in recovery), usually before a random workload.
//! 2. Opens the Db (recovering the previous cycle's crash) and checks it:
//!    `verify()` is clean (every page has one owner, every tree is sound)
//!    and its whole contents equal the model, or the model plus the one
//!    operation that was in flight when the previous crash hit. So every
//!    acknowledged commit is present and no commit is partly present.
//! 3. Runs seeded random operations, mirrored on the model: puts and
//!    deletes of empty, small, inline-boundary and extent values (some up
//!    to `MAX_VALUE_LEN`), multi-key transactions across trees, reads and
//!    scans checked on the spot, `create_tree`/`drop_tree`, checkpoints, in
//!    a pool small enough to evict mid-operation.
//! 4. When the switch fires (mid-operation), or after the cycle's last
//!    operation, decides the fate of every write still unsynced, per file:
//!    all kept (a SIGKILL: the page cache survives), a random prefix kept
//!    and the next one torn (a power cut), or a random subset kept (a disk
//!    that reorders its cache). Page-file writes tear only at 4 KiB
//!    boundaries: the page file relies on 4 KiB atomic writes
//!    (`docs/transactions.md`); the log, superblock and allocation files
//!    tear anywhere.
//!
//! `RIME_CRASH_POINTS` sets the number of crash points (default 1,200, which
//! CI runs); `RIME_CRASH_SEED` the first seed. Each seed is a fresh
//! directory running [`CYCLES_PER_SEED`] cycles; a failure prints the seed
//! and the cycle, and `RIME_CRASH_POINTS=1 RIME_CRASH_SEED=<seed>` replays
//! it. `scripts/crash-soak` runs the long searches.

mod crash_model;

use crash_model::{CYCLES_PER_SEED, LogSegments, Opening, Tally, search, search_with};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn crash_points_lose_no_acknowledged_commit_and_leave_no_partial_one() {
    let points: u64 = std::env::var("RIME_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_200);
    let first: u64 = std::env::var("RIME_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let seeds = points.div_ceil(CYCLES_PER_SEED);
    let mut tally = Tally::default();
    for seed in first..first + seeds {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            search(
                &mut StdRng::seed_from_u64(seed),
                seed,
                CYCLES_PER_SEED,
                &mut tally,
            )
        }));
        if let Err(p) = r {
            eprintln!(
                "crash-point search failed at seed {seed}: replay with RIME_CRASH_POINTS=1 RIME_CRASH_SEED={seed}"
            );
            std::panic::resume_unwind(p);
        }
    }
    eprintln!("crash points: {tally:?}");
    assert!(tally.crash_points >= points, "{tally:?}");
    assert!(
        tally.mid_operation > 0 && tally.in_recovery > 0,
        "both kinds of crash were reached: {tally:?}"
    );
}

/// Regression (seed 325616 of the 100,000-point search): the workload drew
/// one transaction of two 16 MiB values, which the Db rightly refuses
/// before logging (`TxError::CommitTooLarge`), and the harness called that
/// a failure. The refusal now keeps the model as it was, and the search
/// goes on through later crashes. The search opens with such a
/// transaction rather than waiting for a seed to draw one: a seed draws it
/// only on the I/O sequence it was found with, and smaller SMO records
/// (format 4) changed that sequence.
#[test]
fn a_transaction_too_large_for_one_commit_is_refused_and_the_search_goes_on() {
    let seed = 325_616;
    let mut tally = Tally::default();
    search_with(
        &mut StdRng::seed_from_u64(seed),
        seed,
        CYCLES_PER_SEED,
        &mut tally,
        LogSegments::Preallocated,
        Opening::OversizedTx,
    );
    assert!(
        tally.refused >= 1,
        "the oversized commit was not refused: {tally:?}"
    );
    assert!(tally.crash_points >= CYCLES_PER_SEED, "{tally:?}");
}

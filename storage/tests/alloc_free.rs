//! The faaslet runtime's requirement: once warm, `Tx::get` allocates
//! nothing on the host (the read set and arena reuse their capacity).
//! A counting global allocator checks it, counting only the test's own
//! thread: the Db's log flusher is a thread of its own, and when the
//! scheduler first runs it (its start-up allocates) is up to the machine.

use rime_storage::{Db, Durability, Options};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the test's thread while it counts (a const `Cell`: reading
    /// it from the allocator allocates nothing).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_get_allocates_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .durability(Durability::NoSync);
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    let keys: Vec<Vec<u8>> = (0..100u32)
        .map(|i| format!("key{i:04}").into_bytes())
        .collect();
    for k in &keys {
        db.put(t, k, &[7; 64]).unwrap();
    }
    let mut out = [0u8; 64];
    let mut run = |db: &Db| {
        db.transaction(|tx| {
            for k in &keys {
                tx.get(t, k, |v| out.copy_from_slice(v))?;
            }
            Ok(())
        })
        .unwrap();
    };
    run(&db); // warm-up: buffers grow to size
    COUNTING.with(|c| c.set(true));
    for _ in 0..10 {
        run(&db);
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "warm transactions of gets allocated"
    );
    db.close().unwrap();
}

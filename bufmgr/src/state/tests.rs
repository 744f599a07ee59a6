use super::*;

fn word(p: &PageState) -> (u64, u8) {
    let w = p.load();
    (w.version(), w.state())
}

#[test]
fn layout_is_version_above_state_byte() {
    let w = StateWord::new(0xAB_CDEF, LOCKED);
    assert_eq!(w.raw(), 0xABCD_EFFD);
    assert_eq!((w.version(), w.state()), (0xAB_CDEF, LOCKED));
}

#[test]
fn exclusive_round_trip_bumps_the_version() {
    let p = PageState::new(StateWord::new(7, UNLOCKED));
    assert!(p.try_lock_exclusive(p.load()));
    assert_eq!(word(&p), (7, LOCKED));
    assert!(!p.try_lock_exclusive(p.load()), "exclusive is exclusive");
    assert!(!p.try_lock_shared(p.load()), "no shared latch while locked");
    assert!(
        !p.try_mark(p.load()),
        "a locked page is no eviction candidate"
    );
    p.unlock_exclusive();
    assert_eq!(word(&p), (8, UNLOCKED));
}

#[test]
fn a_stale_snapshot_cannot_lock() {
    let p = PageState::new(StateWord::new(1, UNLOCKED));
    let stale = p.load();
    assert!(p.try_lock_exclusive(stale));
    p.unlock_exclusive();
    assert!(!p.try_lock_exclusive(stale), "version moved on");
    assert!(!p.try_lock_shared(stale));
}

#[test]
fn shared_latches_count_up_to_the_limit_and_keep_the_version() {
    let p = PageState::new(StateWord::new(3, UNLOCKED));
    for n in 1..=MAX_SHARED {
        assert!(p.try_lock_shared(p.load()));
        assert_eq!(word(&p), (3, n));
    }
    assert!(
        !p.try_lock_shared(p.load()),
        "count is full at {MAX_SHARED}"
    );
    assert!(!p.try_lock_exclusive(p.load()));
    for n in (0..MAX_SHARED).rev() {
        p.unlock_shared();
        assert_eq!(word(&p), (3, n));
    }
}

#[test]
fn upgrade_needs_to_be_the_only_shared_holder() {
    let p = PageState::new(StateWord::new(0, UNLOCKED));
    assert!(p.try_lock_shared(p.load()));
    assert!(p.try_lock_shared(p.load()));
    assert!(!p.try_upgrade(p.load()), "two holders");
    p.unlock_shared();
    assert!(p.try_upgrade(p.load()));
    assert_eq!(word(&p), (0, LOCKED));
}

#[test]
fn marking_is_a_second_chance_any_latch_takes_back() {
    let p = PageState::new(StateWord::new(5, UNLOCKED));
    assert!(p.try_mark(p.load()));
    assert_eq!(word(&p), (5, MARKED));
    assert!(!p.try_mark(p.load()));
    assert!(p.try_unmark(p.load()));
    assert!(p.try_mark(p.load()));
    assert!(p.try_lock_shared(p.load()), "a marked page can be latched");
    assert_eq!(word(&p), (5, 1));
    p.unlock_shared();
    assert!(p.try_mark(p.load()));
    assert!(p.try_lock_exclusive(p.load()));
    p.unlock_exclusive();
    assert_eq!(word(&p), (6, UNLOCKED), "the exclusive release unmarks");
}

#[test]
fn eviction_and_reload_each_bump_the_version() {
    let p = PageState::new(StateWord::new(9, UNLOCKED));
    assert!(p.try_lock_exclusive(p.load()));
    p.unlock_exclusive_evicted();
    assert_eq!(word(&p), (10, EVICTED));
    assert!(
        !p.try_lock_exclusive(p.load()),
        "an evicted page must be loaded first"
    );
    assert!(!p.try_lock_shared(p.load()));
    assert!(p.try_lock_evicted(p.load()));
    p.unlock_exclusive();
    assert_eq!(word(&p), (11, UNLOCKED));
}

#[test]
fn version_wraps_after_56_bits_without_touching_the_state() {
    let max = u64::MAX >> 8;
    let p = PageState::new(StateWord::new(max, UNLOCKED));
    assert!(p.try_lock_exclusive(p.load()));
    p.unlock_exclusive();
    assert_eq!(word(&p), (0, UNLOCKED));
}

#[test]
fn readable_states_are_the_ones_no_writer_holds() {
    for (state, readable) in [
        (UNLOCKED, true),
        (1, true),
        (MAX_SHARED, true),
        (MARKED, true),
        (LOCKED, false),
        (EVICTED, false),
    ] {
        assert_eq!(StateWord::new(1, state).is_readable(), readable, "{state}");
    }
}

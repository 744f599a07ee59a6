//! The SIGSEGV fault guard.
//!
//! * A reader in a guarded section that touches a page evicted under it is
//!   cut short and restarts, and then reads the right bytes.
//! * A fault outside any guarded section, or outside the pool, still kills
//!   the process: the handler never swallows a real bug.
//! * Another SIGSEGV handler installed before ours, or after ours (as
//!   wasmtime and Rust's runtime do), keeps working, and so does ours.
//!
//! Cases that install handlers or are meant to crash run in a child process:
//! this test binary re-executes itself with `RIME_FAULT_CASE` set.

mod common;
use common::*;
use rime_bufmgr::testing::evict;
use rime_bufmgr::{
    BufferManager, Interrupt, MIN_POOL_PAGES, PageId, ReleaseMode, ReleasePolicy, region::touch,
};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Exit code of the stand-in foreign handler, so the parent can tell it ran.
const FOREIGN_HANDLER_EXIT: i32 = 42;

/// Whether this kernel has guard markers. Without them a test cannot
/// fault and skips, saying so; where `RIME_REQUIRE_GUARD=1` (CI, through
/// `scripts/test`) the missing feature fails the test instead.
fn guard_markers_or_skip(bm: &BufferManager) -> bool {
    if bm.release_mode() != ReleaseMode::Guard {
        let why = "this kernel has no MADV_GUARD_INSTALL (Linux < 6.13); evicted pages read as zeros instead of faulting";
        assert!(
            std::env::var_os("RIME_REQUIRE_GUARD").is_none_or(|v| v != "1"),
            "RIME_REQUIRE_GUARD=1, but {why}"
        );
        eprintln!("SKIPPED: {why}");
        return false;
    }
    true
}

fn filled_pool(pages: usize) -> (Pool, Vec<PageId>) {
    let p = pool_releasing(MIN_POOL_PAGES, ReleasePolicy::Guard);
    let pids = (0..pages)
        .map(|g| {
            let mut page = p.bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, g as u64);
            pid
        })
        .collect();
    (p, pids)
}

/// Optimistically reads `target`; on the first attempt, lets `evictor` evict
/// it between taking the guard and touching the bytes.
fn read_across_an_eviction(bm: &BufferManager, target: PageId, others: &[PageId]) -> (u64, u32) {
    let attempts = AtomicU32::new(0);
    let go = AtomicBool::new(false);
    let evicted = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            evict(bm, target, others);
            evicted.store(true, Ordering::Release);
        });
        // SAFETY: the closure holds only atomics' references, integers and
        // a Copy guard across its reads of page bytes.
        let generation = unsafe {
            bm.optimistic(|s| {
                let page = s.read(target)?;
                if attempts.fetch_add(1, Ordering::Relaxed) == 0 {
                    go.store(true, Ordering::Release);
                    while !evicted.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                }
                // The first attempt faults here: the page's memory is gone.
                let mut copy = [0u8; rime_bufmgr::PAGE_PAYLOAD];
                copy.copy_from_slice(page.payload());
                page.validate()?;
                Ok::<_, Interrupt>(copy)
            })
        }
        .map(|copy| check(&copy, target).unwrap())
        .unwrap();
        (generation, attempts.load(Ordering::Relaxed))
    })
}

#[test]
fn a_reader_touching_a_page_evicted_under_it_restarts() {
    let (p, pids) = filled_pool(4 * MIN_POOL_PAGES);
    if !guard_markers_or_skip(&p.bm) {
        return;
    }
    let target = pids[0];
    drop(p.bm.shared(target).unwrap());
    let faults_before = p.bm.stats().faults;
    let (generation, attempts) = read_across_an_eviction(&p.bm, target, &pids[1..]);
    assert_eq!(
        generation, 0,
        "the restarted read sees the page's real contents"
    );
    assert_eq!(attempts, 2, "one faulted attempt, one clean one");
    assert_eq!(
        p.bm.stats().faults,
        faults_before + 1,
        "the restart came from the fault guard"
    );
}

fn run_child(case: &str, test_name: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env("RIME_FAULT_CASE", case)
        .status()
        .unwrap()
}

fn child_case() -> Option<String> {
    std::env::var("RIME_FAULT_CASE").ok()
}

/// An evicted pool page touched outside a guarded section.
fn touch_evicted_page_unguarded() {
    let (p, pids) = filled_pool(2 * MIN_POOL_PAGES);
    if !guard_markers_or_skip(&p.bm) {
        std::process::exit(0);
    }
    evict(&p.bm, pids[0], &pids[1..]);
    let (base, _) = p.bm.region();
    // SAFETY: the address is inside the live region; the read is meant to
    // fault (this runs in a child process that should die of it).
    unsafe { touch(base.add(pids[0] as usize * rime_bufmgr::PAGE_SIZE)) };
    eprintln!("touched an evicted page without a fault");
    std::process::exit(0);
}

/// A wild pointer inside a guarded section (not in any pool).
fn wild_pointer_in_a_guarded_section() {
    let p = pool_releasing(MIN_POOL_PAGES, ReleasePolicy::Guard);
    // SAFETY: deliberately faulting in a child process; no destructors live.
    let _ = unsafe {
        p.bm.optimistic(|_| {
            let wild = 16 as *const u8;
            Ok::<_, Interrupt>(touch(wild))
        })
    };
    std::process::exit(0);
}

#[test]
fn faults_outside_a_guarded_section_or_the_pool_still_crash() {
    match child_case().as_deref() {
        Some("touch_evicted") => touch_evicted_page_unguarded(),
        Some("wild_pointer") => wild_pointer_in_a_guarded_section(),
        Some(_) => return,
        None => {}
    }
    let name = "faults_outside_a_guarded_section_or_the_pool_still_crash";
    for case in ["touch_evicted", "wild_pointer"] {
        let status = run_child(case, name);
        assert_eq!(
            status.signal(),
            Some(libc::SIGSEGV),
            "{case}: the child should die of SIGSEGV, got {status:?}"
        );
    }
}

/// The stand-in for another runtime's handler (wasmtime's trap handler,
/// say): it owns faults at one sentinel address, and chains the rest to
/// whatever was installed before it.
static FOREIGN_PREVIOUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
const FOREIGN_ADDRESS: usize = 0x1000;

extern "C" fn foreign_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo.
    let addr = unsafe { (*info).si_addr() } as usize;
    if addr == FOREIGN_ADDRESS {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(FOREIGN_HANDLER_EXIT) };
    }
    let prev = *FOREIGN_PREVIOUS.get().expect("set at install");
    if prev == libc::SIG_DFL || prev == libc::SIG_IGN {
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
        return;
    }
    // SAFETY: every handler in this test binary is SA_SIGINFO-style.
    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
        unsafe { std::mem::transmute(prev) };
    f(sig, info, ctx);
}

fn install_foreign() {
    // SAFETY: plain C structs, fully initialised before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let mut previous: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = foreign_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &action, &mut previous), 0);
        FOREIGN_PREVIOUS.set(previous.sa_sigaction).unwrap();
    }
}

fn both_handlers_work(foreign_first: bool) {
    if foreign_first {
        install_foreign();
        rime_bufmgr::fault::install_handler();
    } else {
        rime_bufmgr::fault::install_handler();
        install_foreign();
    }
    let (p, pids) = filled_pool(4 * MIN_POOL_PAGES);
    if !guard_markers_or_skip(&p.bm) {
        std::process::exit(FOREIGN_HANDLER_EXIT);
    }
    // Ours: a guarded read across an eviction restarts.
    drop(p.bm.shared(pids[0]).unwrap());
    let (generation, attempts) = read_across_an_eviction(&p.bm, pids[0], &pids[1..]);
    assert_eq!((generation, attempts), (0, 2));
    // Theirs: a fault at their address reaches them (they exit 42).
    // SAFETY: deliberately faulting in a child process.
    unsafe { touch(FOREIGN_ADDRESS as *const u8) };
    std::process::exit(1);
}

#[test]
fn another_handler_installed_before_or_after_ours_keeps_working() {
    match child_case().as_deref() {
        Some("foreign_first") => both_handlers_work(true),
        Some("foreign_after") => both_handlers_work(false),
        Some(_) => return,
        None => {}
    }
    let name = "another_handler_installed_before_or_after_ours_keeps_working";
    for case in ["foreign_first", "foreign_after"] {
        let status = run_child(case, name);
        assert_eq!(
            status.code(),
            Some(FOREIGN_HANDLER_EXIT),
            "{case}: {status:?}"
        );
    }
}

//! The fault guard: optimistic reads that touch an evicted page restart
//! instead of crashing.
//!
//! An evicted page's memory is released with `MADV_GUARD_INSTALL`, so a
//! reader that read the page's state before the eviction and its bytes after
//! takes SIGSEGV. Our handler:
//!
//! 1. takes the faulting address from `siginfo`;
//! 2. if it lies inside a registered pool region **and** this thread is in a
//!    guarded section, `siglongjmp`s back to the section's entry (in
//!    `guard.c`), which reports "faulted" and the caller restarts the read;
//! 3. otherwise passes the signal to the handler that was installed before
//!    ours (Rust's stack-overflow handler, wasmtime's trap handler, or the
//!    default action), so real bugs still crash.
//!
//! Installation is `SA_SIGINFO | SA_ONSTACK | SA_NODEFER`: the handler runs
//! on the thread's alternate signal stack where there is one (Rust's threads
//! and wasmtime's have one), and SIGSEGV stays unblocked while it runs so the
//! jump needs no signal-mask restore.
//!
//! The order of installation does not matter. If another handler is
//! installed after ours, it must chain to ours for faults that are not its
//! own, as wasmtime's and Rust's do; if before, we chain to it.

use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

unsafe extern "C" {
    fn rime_guard_run(
        body: extern "C" fn(*mut libc::c_void),
        ctx: *mut libc::c_void,
    ) -> libc::c_int;
    fn rime_guard_active() -> libc::c_int;
    fn rime_guard_escape() -> libc::c_int;
}

/// Pool regions the handler recognises. A process opens few buffer
/// managers (one per open database); 64 leaves room for tests that open
/// many at once.
const MAX_REGIONS: usize = 64;

/// (start, end) address pairs; (0, 0) is a free entry. Plain atomics so the
/// signal handler can read them without locks.
static REGIONS: [(AtomicUsize, AtomicUsize); MAX_REGIONS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_REGIONS];

/// The action that was installed before ours, for chaining.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

/// Registration of a pool region with the handler; unregisters on drop.
pub struct RegionGuard {
    index: usize,
}

/// Registers `[start, end)` as pool memory. `None` when the table is full.
pub fn register_region(start: usize, end: usize) -> Option<RegionGuard> {
    install_handler();
    for (i, (s, e)) in REGIONS.iter().enumerate() {
        if s.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            e.store(end, Ordering::Release);
            return Some(RegionGuard { index: i });
        }
    }
    None
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        let (s, e) = &REGIONS[self.index];
        e.store(0, Ordering::Release);
        s.store(0, Ordering::Release);
    }
}

fn in_pool(addr: usize) -> bool {
    REGIONS.iter().any(|(s, e)| {
        let start = s.load(Ordering::Acquire);
        start != 0 && addr >= start && addr < e.load(Ordering::Acquire)
    })
}

/// Installs the handler once per process (called when the first pool
/// registers). Public so tests can control the order relative to others.
///
/// `PREVIOUS` is published before our handler is installed, because the
/// handler may run (on any thread) from the moment `sigaction` installs it,
/// and `chain` dereferences `PREVIOUS`:
///
/// 1. read the current action into a leaked `sigaction` (`sigaction(2)` with
///    no new action installs nothing);
/// 2. publish it in `PREVIOUS` (Release);
/// 3. install ours; the kernel writes the action it replaced into a second
///    leaked `sigaction`;
/// 4. publish that one. It differs from step 1's only if another thread
///    installed a handler between steps 1 and 3; then it is the one to
///    chain to.
///
/// So in every window `PREVIOUS` is either null (only before step 2, while
/// our handler is not installed) or points to a leaked `sigaction` that was
/// fully written before it was published and is never written again. A
/// fault between steps 3 and 4 chains to step 1's action, which was current
/// a moment earlier. The kernel writes into step 3's struct during the
/// syscall, before it is published, so the handler never reads a struct the
/// kernel is still writing.
pub fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sigaction structs are plain C data; zeroed is a valid
        // initial value, and every field we rely on is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigsegv as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        // SAFETY: sigemptyset initialises the mask field of our own struct;
        // it cannot fail on a valid pointer.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };

        // Step 1.
        let current = leaked_sigaction();
        // SAFETY: a null new action only queries; `current` is a valid,
        // leaked (so forever live) sigaction for the kernel to fill in, not
        // yet shared with anyone.
        let rc = unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), current) };
        assert_eq!(
            rc,
            0,
            "sigaction(SIGSEGV) query failed: {}",
            std::io::Error::last_os_error()
        );
        // Step 2.
        PREVIOUS.store(current, Ordering::Release);

        // Step 3.
        let replaced = leaked_sigaction();
        // SAFETY: `action` is fully initialised; `replaced` is a valid,
        // leaked sigaction for the kernel to fill in, not yet shared (the
        // handler reads `current` until step 4).
        let rc = unsafe { libc::sigaction(libc::SIGSEGV, &action, replaced) };
        assert_eq!(
            rc,
            0,
            "sigaction(SIGSEGV) failed: {}",
            std::io::Error::last_os_error()
        );
        // Step 4.
        PREVIOUS.store(replaced, Ordering::Release);
    });
}

/// A zeroed `sigaction` on the heap, leaked: the handler may read it at any
/// time for the rest of the process.
fn leaked_sigaction() -> *mut libc::sigaction {
    // SAFETY: sigaction is plain C data; all-zero is a valid value of it.
    Box::into_raw(Box::new(unsafe { std::mem::zeroed::<libc::sigaction>() }))
}

extern "C" fn on_sigsegv(
    signum: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // Step 1: the faulting address.
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Step 2: ours? Then jump back; rime_guard_escape does not return.
    // SAFETY: rime_guard_active only reads this thread's TLS slot.
    if in_pool(addr) && unsafe { rime_guard_active() } != 0 {
        // SAFETY: the slot is set, so it points at the jump buffer of a live
        // rime_guard_run frame on this thread; only frames that honour the
        // `run_guarded` contract (no destructors that matter) lie between.
        unsafe { rime_guard_escape() };
    }
    // Step 3: not ours.
    // SAFETY: we are the SIGSEGV handler and pass the kernel's arguments on.
    unsafe { chain(signum, info, context) };
}

/// Hands a signal that is not ours to the previously installed action.
///
/// # Safety
/// Must be called from the SIGSEGV handler with the kernel's arguments.
unsafe fn chain(signum: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let prev = PREVIOUS.load(Ordering::Acquire);
    if prev.is_null() {
        // Not reachable: `install_handler` publishes PREVIOUS before it
        // installs this handler. Should it happen, the default action is
        // the safe answer (as for SIG_DFL below).
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(signum, libc::SIG_DFL) };
        return;
    }
    // SAFETY: a non-null PREVIOUS points to a leaked (never freed)
    // sigaction that was fully written before it was published with Release
    // (paired with the Acquire load above) and is never written again; see
    // `install_handler`.
    let prev = unsafe { &*prev };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // Restore the default and return: the faulting instruction runs
        // again and the kernel applies the default action (a core dump).
        // Ignoring SIGSEGV would only loop, so SIG_IGN is treated the same.
        // Checked before the flags: SIG_DFL with SA_SIGINFO set is still the
        // default action, and not a function to call.
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(signum, libc::SIG_DFL) };
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: neither SIG_DFL nor SIG_IGN, so a handler's address; with
        // SA_SIGINFO, sa_sigaction is a three-argument handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(signum, info, context);
    } else {
        // SAFETY: neither SIG_DFL nor SIG_IGN, so a handler's address;
        // without SA_SIGINFO, sa_handler is a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(signum);
    }
}

/// How a guarded section ended.
pub enum Outcome<R> {
    Done(R),
    /// A read touched released pool memory and was cut short.
    Faulted,
}

/// Runs `body` as a guarded section.
///
/// # Safety
/// If a fault jumps out of `body`, every frame between this call and the
/// faulting instruction is discarded without running destructors. So `body`
/// must hold no value whose destructor matters (a latch guard, a lock guard,
/// an owned allocation, a `RefCell` borrow) live across any read of pool
/// memory that is not latched; only plain-old-data and references may be.
#[inline(always)]
pub unsafe fn run_guarded<F: FnOnce() -> R, R>(body: F) -> Outcome<R> {
    struct Ctx<F, R> {
        body: Option<F>,
        out: Option<std::thread::Result<R>>,
    }
    extern "C" fn trampoline<G: FnOnce() -> S, S>(ctx: *mut libc::c_void) {
        // SAFETY: ctx is the &mut Ctx passed to rime_guard_run below, live
        // for the whole call.
        let ctx = unsafe { &mut *ctx.cast::<Ctx<G, S>>() };
        let body = ctx.body.take().expect("trampoline runs once");
        // A panic must not unwind through the C frame: catch it here and
        // resume it after the section is over.
        ctx.out = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
    }
    let mut ctx = Ctx {
        body: Some(body),
        out: None,
    };
    // SAFETY: the trampoline is instantiated for this F and R and receives a
    // pointer to this ctx. The caller upholds the POF contract above.
    let faulted =
        unsafe { rime_guard_run(trampoline::<F, R>, (&mut ctx as *mut Ctx<F, R>).cast()) } != 0;
    if faulted {
        // The body's captures were moved out (ctx.body is None) and its frame
        // is gone; forgetting ctx.out (None) is trivially fine.
        return Outcome::Faulted;
    }
    match ctx.out.take().expect("section returned normally") {
        Ok(r) => Outcome::Done(r),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/*
 * Jump points for the fault guard (see fault.rs).
 *
 * Why C: sigsetjmp "returns twice". A Rust function that calls it cannot be
 * compiled correctly, because rustc/LLVM do not know the call returns twice
 * (there is no `returns_twice` attribute in Rust), so values kept in
 * registers across the call may be stale after the second return, and the
 * optimiser may move code across it. In C, the compiler knows setjmp's
 * semantics. So the setjmp/longjmp pair lives here, in two small functions,
 * and Rust only ever calls them through a function pointer boundary.
 *
 * The jump buffer lives on the stack frame of rime_guard_run, which stays
 * alive for the whole guarded section; the thread-local pointer to it is what
 * the signal handler (Rust, fault.rs) uses to jump back.
 */
#include <setjmp.h>
#include <stddef.h>

static _Thread_local sigjmp_buf *rime_current_section = NULL;

/*
 * Runs body(ctx) as a guarded section. Returns 0 when body returned normally,
 * 1 when a fault in a pool region jumped out of it. Sections nest: the outer
 * section is restored on both paths.
 *
 * savemask = 0: the handler is installed with SA_NODEFER, so SIGSEGV is not
 * blocked while it runs and the signal mask needs no restoring; saving it
 * would cost a sigprocmask system call on every guarded read.
 */
int rime_guard_run(void (*body)(void *), void *ctx) {
    sigjmp_buf buf;
    sigjmp_buf *volatile outer = rime_current_section;
    if (sigsetjmp(buf, 0) != 0) {
        rime_current_section = outer;
        return 1;
    }
    rime_current_section = &buf;
    body(ctx);
    rime_current_section = outer;
    return 0;
}

/* Nonzero while this thread is inside a guarded section. Async-signal-safe. */
int rime_guard_active(void) {
    return rime_current_section != NULL;
}

/*
 * From the signal handler: jump back to the innermost section of this thread.
 * Returns only if the thread is in no section (then it returns 0).
 */
int rime_guard_escape(void) {
    sigjmp_buf *target = rime_current_section;
    if (target == NULL)
        return 0;
    siglongjmp(*target, 1);
}

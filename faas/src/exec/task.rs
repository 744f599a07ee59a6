//! The two ends of an invocation running on an executor: the caller's
//! [`Invoking`] (a future, or a blocking [`Invoking::wait`]) and the
//! task's [`Outcome`]. Dropping the `Invoking` cancels the invocation if
//! it has not begun to commit: the task stops at its next poll, and its
//! transaction, never committed, leaves nothing behind. Once the commit
//! has begun, it completes (and is durable as its mode says); only the
//! result goes unread.

use super::park::Parker;
use crate::error::InvokeError;
use crate::invoke::Invocation;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

type Result = std::result::Result<Invocation, InvokeError>;

#[derive(Default)]
struct Handoff {
    result: Option<Result>,
    /// The caller's, while it waits.
    waiter: Option<Waker>,
    /// The task's, while it runs: a cancellation wakes it.
    task: Option<Waker>,
    /// The `Invoking` was dropped.
    cancelled: bool,
    /// The invocation began to commit: too late to cancel.
    committing: bool,
}

fn lock(h: &Mutex<Handoff>) -> MutexGuard<'_, Handoff> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// An invocation in flight, from its caller's side: a `Future` of its
/// result, usable from any executor (tokio included), or
/// [`Invoking::wait`] to block. Dropping it cancels the invocation unless
/// it already began to commit.
#[must_use = "dropping an Invoking cancels its invocation"]
pub struct Invoking {
    handoff: Arc<Mutex<Handoff>>,
}

/// The task's end: see the module docs.
pub(crate) struct Outcome {
    handoff: Arc<Mutex<Handoff>>,
}

impl Invoking {
    pub(crate) fn new() -> (Invoking, Outcome) {
        let handoff = Arc::new(Mutex::new(Handoff::default()));
        (
            Invoking {
                handoff: handoff.clone(),
            },
            Outcome { handoff },
        )
    }

    /// An invocation that ended before it ran (refused at admission).
    pub(crate) fn done(r: Result) -> Invoking {
        let (i, o) = Invoking::new();
        o.deliver(r);
        i
    }

    /// Blocks the calling thread until the result is there.
    pub fn wait(self) -> Result {
        block_on(self)
    }
}

impl Future for Invoking {
    type Output = Result;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result> {
        let mut h = lock(&self.handoff);
        match h.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                h.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Invoking {
    fn drop(&mut self) {
        let task = {
            let mut h = lock(&self.handoff);
            h.cancelled = h.result.is_none();
            h.task.take()
        };
        if let Some(w) = task {
            w.wake();
        }
    }
}

impl Outcome {
    /// Whether the caller gave up before the commit began.
    pub fn cancelled(&self, task: &Waker) -> bool {
        let mut h = lock(&self.handoff);
        if !h.cancelled {
            h.task = Some(task.clone());
        }
        h.cancelled && !h.committing
    }

    /// Called right before the commit: false if the caller gave up (then
    /// nothing may commit); after true, cancelling no longer stops it.
    pub fn begin_commit(&self) -> bool {
        let mut h = lock(&self.handoff);
        h.committing = !h.cancelled;
        h.committing
    }

    /// Hands the result to the caller.
    pub fn deliver(&self, r: Result) {
        let waiter = {
            let mut h = lock(&self.handoff);
            h.result = Some(r);
            h.task = None;
            h.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

/// Runs `f` unless (and until) the caller cancels before the commit
/// began: then it stops at its next poll, dropping `f` (which commits
/// nothing) and answering `Cancelled`.
pub(crate) async fn until_cancelled(outcome: &Outcome, f: impl Future<Output = Result>) -> Result {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if outcome.cancelled(cx.waker()) {
            return Poll::Ready(Err(InvokeError::Cancelled));
        }
        f.as_mut().poll(cx)
    })
    .await
}

/// Wakes a thread blocked in [`block_on`].
struct Unpark(Parker);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}

thread_local! {
    /// This thread's waker for [`block_on`], made once: a stale wake-up
    /// left by an earlier future costs one extra poll, nothing else.
    static BLOCKING: (Arc<Unpark>, Waker) = {
        let unpark = Arc::new(Unpark(Parker::new(std::thread::current())));
        (unpark.clone(), Waker::from(unpark))
    };
}

/// Runs `f` to completion on the calling thread, waiting (spinning a
/// little, then parked) while `f` waits: a blocking caller's invocation,
/// or an [`Invoking`].
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    BLOCKING.with(|(unpark, waker)| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                return r;
            }
            unpark.0.wait();
        }
    })
}

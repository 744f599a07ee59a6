//! What a task running on an executor needs from its thread's reads
//! (`rime_storage::Reads`, whose protocol this follows): futures that
//! wait for pages without holding the thread. Scans stop at a leaf not in
//! memory like point reads, and a commit has its pages loaded first
//! (`OwnedTx::commit_misses`). Only a commit whose pages keep being
//! evicted before it runs waits for the moment the thread has no reads in
//! flight ([`quiescent`]), and then commits waiting for its pages.
//!
//! The executor owns its `Reads`; tasks reach it only through this
//! thread-local mailbox, borrowed for an instant and never across an
//! `.await`. On a thread that is not an executor (a blocking
//! `Runtime::invoke`) there is no mailbox: host calls read with waiting
//! reads, and [`quiescent`] is ready at once.

use rime_storage::{Miss, TxError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Where a page's outcome is left for the task that waits for it.
#[derive(Default)]
struct Slot {
    /// `Some` once the page arrived (or its read failed).
    done: Option<Result<(), TxError>>,
    waker: Option<Waker>,
}

type SharedSlot = Arc<Mutex<Slot>>;

fn lock(s: &SharedSlot) -> std::sync::MutexGuard<'_, Slot> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The executor's side of the mailbox.
#[derive(Default)]
pub(crate) struct Mailbox {
    /// Misses tasks asked for since the executor last looked.
    requests: Vec<(Miss, SharedSlot)>,
    /// Tasks waiting for a page, by page.
    waiting: HashMap<u64, Vec<SharedSlot>>,
    /// Tasks waiting for the thread to have no reads in flight.
    quiesce: Vec<Waker>,
}

thread_local! {
    static MAILBOX: RefCell<Option<Mailbox>> = const { RefCell::new(None) };
}

/// Whether this thread is an executor (its host calls may read without
/// waiting).
pub(crate) fn on_executor() -> bool {
    MAILBOX.with(|m| m.borrow().is_some())
}

/// Makes this thread an executor's (for its whole life).
pub(crate) fn install() {
    MAILBOX.with(|m| *m.borrow_mut() = Some(Mailbox::default()));
}

/// Runs `f` on this executor's mailbox.
fn with<R>(f: impl FnOnce(&mut Mailbox) -> R) -> Option<R> {
    MAILBOX.with(|m| m.borrow_mut().as_mut().map(f))
}

/// For the executor: hands every new miss to `request` (waiters of one
/// page share its read) and says whether a task waits for quiescence.
pub(crate) fn take_requests(mut request: impl FnMut(Miss)) -> bool {
    with(|m| {
        for (miss, slot) in m.requests.drain(..) {
            let waiters = m.waiting.entry(miss.page()).or_default();
            if waiters.is_empty() {
                request(miss);
            }
            waiters.push(slot);
        }
        !m.quiesce.is_empty()
    })
    .unwrap_or(false)
}

/// For the executor, once its reads are all in: wakes the tasks waiting
/// for quiescence.
pub(crate) fn quiesced() {
    for w in with(|m| std::mem::take(&mut m.quiesce)).unwrap_or_default() {
        w.wake();
    }
}

/// For the executor: the outcome of `page`'s read, to every task waiting
/// for it. A failed read's error goes to the first; the others run their
/// operation again and meet the disk themselves (the page stays evicted,
/// and the next access reads it again).
pub(crate) fn arrived(page: u64, outcome: Result<(), TxError>) {
    let waiters = with(|m| m.waiting.remove(&page)).flatten();
    let mut outcome = Some(outcome);
    for slot in waiters.into_iter().flatten() {
        let waker = {
            let mut s = lock(&slot);
            s.done = Some(outcome.take().unwrap_or(Ok(())));
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Asks the executor to read `miss`'s page without waiting for it (a
/// scan's read-ahead); nothing on a thread that is not an executor.
pub(crate) fn prefetch(miss: Miss) {
    with(|m| m.requests.push((miss, SharedSlot::default())));
}

/// Waits until every page of `misses` is in memory (or one's read
/// failed: its error), their reads in flight together.
pub(crate) async fn load_all(misses: &[Miss]) -> Result<(), TxError> {
    let mut loads: Vec<Option<Load>> = misses.iter().map(|&m| Some(load(m))).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for slot in loads.iter_mut() {
            let Some(l) = slot.as_mut() else { continue };
            match Pin::new(l).poll(cx) {
                Poll::Ready(Ok(())) => *slot = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await
}

/// Waits until `miss`'s page is in memory (or its read failed). Only on an
/// executor; elsewhere it is an error (there is no one to read it).
pub(crate) fn load(miss: Miss) -> Load {
    Load { miss, slot: None }
}

pub(crate) struct Load {
    miss: Miss,
    slot: Option<SharedSlot>,
}

impl Future for Load {
    type Output = Result<(), TxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &this.slot {
            None => {
                let slot = Arc::new(Mutex::new(Slot {
                    done: None,
                    waker: Some(cx.waker().clone()),
                }));
                let miss = this.miss;
                let mailed = with(|m| m.requests.push((miss, slot.clone()))).is_some();
                if !mailed {
                    return Poll::Ready(Err(TxError::Aborted(
                        "a non-waiting read outside an executor".into(),
                    )));
                }
                this.slot = Some(slot);
                Poll::Pending
            }
            Some(slot) => {
                let mut s = lock(slot);
                match s.done.take() {
                    Some(r) => Poll::Ready(r),
                    None => {
                        s.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
    }
}

/// Ready when this thread has no reads of its own in flight, so that what
/// the caller does next in the same poll may latch pages and wait
/// (`Reads`, step 4). The count is the executor's, published before every
/// round of polls ([`set_in_flight`]).
pub(crate) fn quiescent() -> Quiescent {
    Quiescent
}

pub(crate) struct Quiescent;

thread_local! {
    static IN_FLIGHT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// For the executor: its reads in flight, before a round of polls (they
/// cannot change during it: tasks only mail their misses).
pub(crate) fn set_in_flight(n: usize) {
    IN_FLIGHT.with(|c| c.set(n));
}

impl Future for Quiescent {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Misses mailed but not yet requested latch nothing yet.
        if IN_FLIGHT.with(|c| c.get()) == 0 {
            return Poll::Ready(());
        }
        match with(|m| m.quiesce.push(cx.waker().clone())) {
            Some(()) => Poll::Pending,
            None => Poll::Ready(()), // not an executor: nothing in flight
        }
    }
}

//! [`Reply`]: the answer of a call running on the client's background
//! runtime (`conn.rs`), awaited by any executor or waited for by a
//! blocking thread.
//!
//! The call itself runs on the runtime's thread; the caller holds only
//! the receiving end of a oneshot channel. So a Rime executor that awaits
//! a `Reply` suspends the one invocation (its waker is with the channel)
//! and runs others meanwhile; a blocking caller parks its thread.

use crate::GlobalError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::oneshot;

/// The outcome of one call to the cluster, when it comes. Dropping it
/// abandons the answer, not the call: a commit sent is not recalled.
#[must_use = "a Reply is the call's only outcome"]
#[derive(Debug)]
pub struct Reply<T> {
    rx: oneshot::Receiver<Result<T, GlobalError>>,
}

impl<T> Reply<T> {
    pub(crate) fn channel() -> (oneshot::Sender<Result<T, GlobalError>>, Reply<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Reply { rx })
    }

    /// A reply known already (refused before anything was sent).
    pub(crate) fn ready(r: Result<T, GlobalError>) -> Reply<T> {
        let (tx, reply) = Reply::channel();
        let _ = tx.send(r);
        reply
    }

    /// Blocks the calling thread until the answer is there (every call is
    /// bounded by its deadline). Any thread may wait, one of a tokio
    /// runtime included: it parks, and needs no runtime of its own.
    pub fn wait(self) -> Result<T, GlobalError> {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut me = self;
        loop {
            if let Poll::Ready(r) = Pin::new(&mut me).poll(&mut cx) {
                return r;
            }
            std::thread::park();
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, GlobalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(GlobalError::Unavailable(
                    "the global client stopped before the call ended".into(),
                ))
            })
        })
    }
}

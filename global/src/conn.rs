//! The client's background runtime and its connections to the cluster.
//!
//! One tokio thread (`rime-global`) runs every call of a [`crate::Cluster`]
//! on the `redis` crate's async cluster connections: one multiplexed
//! connection per master, shared by every call in flight, so a node's
//! invocations wait for Redis without holding any thread but this one.
//! A call is spawned here and answers through a [`Reply`]:
//!
//! 1. A call whose deadline has passed is refused at once (`Timeout`),
//!    nothing sent.
//! 2. Otherwise it runs under `tokio::time::timeout` of what is left of
//!    its deadline, capped by `op_timeout`.
//! 3. At the timeout, a call that may have sent effects (a commit past
//!    the point of sending) answers `Unknown`; any other `Timeout`. Its
//!    connection is dropped (step 4): a master that neither answers nor
//!    refuses (stopped, or cut off by the network) would otherwise keep
//!    every later call of the slot waiting on it after a failover, since
//!    no reply ever says the slot moved.
//! 4. A connection that failed for a reason other than a reply from Redis
//!    (an I/O error, a timeout) is dropped, so the next call builds a new
//!    one from the seeds (the crate's own repair is not relied on to
//!    notice a whole cluster restarted).

use crate::tier::Tier;
use crate::{GlobalError, Reply};
use redis::ErrorKind;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, ServerErrorKind};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The background runtime: one worker thread, stopped (without waiting
/// for calls in flight) when the client goes.
pub(crate) struct Background {
    rt: Option<tokio::runtime::Runtime>,
}

impl Background {
    pub(crate) fn start() -> Result<Background, GlobalError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rime-global")
            .enable_all()
            .build()
            .map_err(|e| GlobalError::Unavailable(format!("no background runtime: {e}")))?;
        Ok(Background { rt: Some(rt) })
    }

    /// Steps 1–3 (module docs): runs `call` until `deadline` (capped by
    /// `cap`). `sent`, if given, is set by the call once it may have
    /// sent effects; `conn`, if given, is the connection the call uses,
    /// dropped at a timeout.
    pub(crate) fn spawn<T, F>(
        &self,
        deadline: Instant,
        cap: Duration,
        sent: Option<Arc<AtomicBool>>,
        conn: Option<Arc<Lazy>>,
        call: F,
    ) -> Reply<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, GlobalError>> + Send + 'static,
    {
        let left = deadline.saturating_duration_since(Instant::now()).min(cap);
        let Some(rt) = self.rt.as_ref().filter(|_| !left.is_zero()) else {
            return Reply::ready(Err(GlobalError::Timeout));
        };
        let (tx, reply) = Reply::channel();
        rt.spawn(async move {
            let r = match tokio::time::timeout(left, call).await {
                Ok(r) => r,
                Err(_) => {
                    if let Some(conn) = conn {
                        conn.drop_connection().await;
                    }
                    match sent.is_some_and(|s| s.load(Ordering::Acquire)) {
                        true => Err(GlobalError::Unknown(format!(
                            "sent, no answer in {} ms",
                            left.as_millis()
                        ))),
                        false => Err(GlobalError::Timeout),
                    }
                }
            };
            let _ = tx.send(r);
        });
        reply
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Not `drop`: it would wait for calls in flight, and panic if
            // the last client went on an async runtime's thread.
            rt.shutdown_background();
        }
    }
}

/// One `ClusterClient` and its connection, made at first use and again
/// after a failure (step 4).
pub(crate) struct Lazy {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
    /// Emptied when the connection is dropped: its keys were tracked
    /// (`tracking.rs`), and their invalidations end with it.
    tracked_for: Option<Arc<Tier>>,
}

impl Lazy {
    pub(crate) fn new(client: ClusterClient, tracked_for: Option<Arc<Tier>>) -> Lazy {
        Lazy {
            client,
            conn: tokio::sync::Mutex::new(None),
            tracked_for,
        }
    }

    /// The shared connection (a clone: one multiplexed connection per
    /// master under it).
    pub(crate) async fn get(&self) -> Result<ClusterConnection, GlobalError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_async_connection()
            .await
            .map_err(|e| GlobalError::Unavailable(e.to_string()))?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Step 4, after `e`: drops the connection unless Redis itself
    /// answered (a reply, even an error, says the connection works).
    pub(crate) async fn failed(&self, e: &RedisError) {
        if !matches!(e.kind(), ErrorKind::Server(_)) {
            self.drop_connection().await;
        }
    }

    /// Step 4: the next call builds a new connection from the seeds.
    pub(crate) async fn drop_connection(&self) {
        self.conn.lock().await.take();
        if let Some(tier) = &self.tracked_for {
            tier.clear();
        }
    }
}

/// What a failed call means for its caller. `sent_effects`: the call
/// was a commit that may have been sent.
pub(crate) fn classify(e: &RedisError, sent_effects: bool) -> GlobalError {
    let refused_before_running = e.is_connection_refusal()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::BusyLoading
            )
        );
    if refused_before_running {
        return GlobalError::Unavailable(e.to_string());
    }
    if matches!(
        e.kind(),
        ErrorKind::Server(_) | ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) {
        return GlobalError::Protocol(e.to_string());
    }
    if sent_effects {
        return GlobalError::Unknown(e.to_string());
    }
    if e.is_timeout() {
        return GlobalError::Timeout;
    }
    GlobalError::Unavailable(e.to_string())
}

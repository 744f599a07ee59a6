//! Push invalidations for the local tier: Redis server-assisted client
//! side caching (RESP3 `CLIENT TRACKING`).
//!
//! The reads client speaks RESP3 and sends `CLIENT TRACKING ON` in front
//! of every read, on the same connection (`Cluster::fetch_async`): the
//! master then remembers which keys this node's connection read, and when
//! any client writes one of them (the commit script's `HSET` or `DEL`), it
//! pushes one `invalidate` message with the key on that connection, once
//! per read (a key must be read again to be tracked again). So a node
//! hears only of the keys it read, not of every write to every global key
//! (keyspace notifications, before), and Redis needs no
//! `notify-keyspace-events`.
//!
//! What a push does to the tier ([`on_push`]):
//!
//! 1. `invalidate [keys]`: drop those keys' copies.
//! 2. `invalidate nil` (the master flushed its data): drop every copy.
//! 3. A connection closed (the crate's `disconnection` push), or the
//!    client dropped its connection (`conn::Lazy::failed`): drop every
//!    copy, since that connection's tracking ended and its invalidations
//!    may have been missed. The next read of a key, on whatever connection
//!    the client has then, tracks it again.
//!
//! Invalidations only make copies fresher: a copy that is stale anyway (a
//! push still in flight, a read that raced a write) fails validation at
//! commit. The node's own commits are pushed to it too, so a key this node
//! writes is fetched again at its next read.

use crate::tier::Tier;
use redis::{PushInfo, PushKind, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tier and what the pushes did to it.
pub(crate) struct Tracking {
    tier: Arc<Tier>,
    /// Keys named by invalidation pushes so far.
    invalidated: AtomicU64,
}

impl Tracking {
    pub(crate) fn new(tier: Arc<Tier>) -> Tracking {
        Tracking {
            tier,
            invalidated: AtomicU64::new(0),
        }
    }

    pub(crate) fn invalidated(&self) -> u64 {
        self.invalidated.load(Ordering::Relaxed)
    }

    /// Steps 1–3 (module docs) for one push.
    pub(crate) fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    for k in keys {
                        if let Value::BulkString(k) = k {
                            self.tier.forget(k);
                            self.invalidated.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ => self.tier.clear(),
            },
            PushKind::Disconnection => self.tier.clear(),
            _ => {}
        }
    }
}

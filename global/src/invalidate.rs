//! Push invalidations for the local tier: Redis keyspace notifications.
//!
//! Every master publishes, for each key an event touches, a message on
//! channel `__keyspace@0__:<key>` when its `notify-keyspace-events`
//! includes `K` (keyspace channel), `h` (hash commands: the commit's HSET)
//! and `g` (generic: DEL); `testing::RedisCluster` sets `Kgh`. Notifications
//! are per node in a cluster, so one thread subscribes to every master.
//!
//! The supervisor thread, in a loop until the client is dropped:
//!
//! 1. Learn the masters (`CLUSTER NODES` from the first seed that answers).
//! 2. Start one subscriber per master: `PSUBSCRIBE
//!    __keyspace@0__:rime:{*`; each message drops that key's copy from the
//!    tier.
//! 3. Watch: when a subscriber loses its connection (a master down, a
//!    failover), stop the others, **empty the tier** (notifications may
//!    have been missed) and go back to 1 after a short pause.
//!
//! Invalidations only make copies fresher: a copy that is stale anyway
//! (a notification still in flight, one lost, a fetch that raced a write)
//! fails validation at commit. The node's own commits are invalidated
//! too (the notification does not say who wrote), so a key this node
//! writes is fetched again at its next read.

use crate::tier::Tier;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHANNEL_PREFIX: &[u8] = b"__keyspace@0__:";
const PATTERN: &str = "__keyspace@0__:rime:{*";
/// How often a subscriber checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// Stops the threads when dropped (within `POLL`).
pub(crate) struct Invalidator {
    stop: Arc<AtomicBool>,
}

impl Drop for Invalidator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn start(seeds: Vec<String>, tier: Arc<Tier>) -> Invalidator {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("rime-global-inval".into())
        .spawn(move || supervise(&seeds, &tier, &s));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "global store: no invalidation thread; the local tier is validated at commit only");
    }
    Invalidator { stop }
}

fn supervise(seeds: &[String], tier: &Tier, stop: &AtomicBool) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        // 1. The masters.
        let Some(masters) = discover(seeds) else {
            tier.clear();
            std::thread::sleep(POLL);
            continue;
        };
        // 2. A subscriber per master; 3. until one breaks.
        let broken = AtomicBool::new(false);
        std::thread::scope(|s| {
            for m in &masters {
                let (broken, warned) = (&broken, &mut warned);
                let checked = !*warned;
                *warned = true;
                s.spawn(move || {
                    subscribe(m, tier, stop, broken, checked);
                    broken.store(true, Ordering::Relaxed);
                });
            }
        });
        tier.clear();
        if !stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL);
        }
    }
}

/// `redis://HOST:PORT` of every master the first answering seed knows.
fn discover(seeds: &[String]) -> Option<Vec<String>> {
    for seed in seeds {
        let nodes: Option<String> = redis::Client::open(seed.as_str())
            .and_then(|c| c.get_connection_with_timeout(POLL))
            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query(&mut c))
            .ok();
        if let Some(nodes) = nodes {
            return Some(masters(&nodes));
        }
    }
    None
}

/// The masters of a `CLUSTER NODES` reply: lines of `id ip:port@cport
/// flags ...` whose flags include `master` and not `fail`.
fn masters(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.nth(1)?;
            let flags = f.next()?;
            let is_master = flags.split(',').any(|x| x == "master");
            let failed = flags.split(',').any(|x| x == "fail" || x == "fail?");
            let hostport = addr.split('@').next()?;
            (is_master && !failed).then(|| format!("redis://{hostport}"))
        })
        .collect()
}

/// Receives `master`'s notifications until its connection breaks or
/// `stop` or `broken` is set. `check`: warn if the master's
/// `notify-keyspace-events` lacks what the commit's events need.
fn subscribe(master: &str, tier: &Tier, stop: &AtomicBool, broken: &AtomicBool, check: bool) {
    let conn = redis::Client::open(master).and_then(|c| c.get_connection_with_timeout(POLL));
    let Ok(mut conn) = conn else { return };
    if check {
        let cfg: Option<(String, String)> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query(&mut conn)
            .ok();
        let flags = cfg.map(|(_, v)| v).unwrap_or_default();
        let all = flags.contains('A');
        if !(flags.contains('K') && (all || (flags.contains('g') && flags.contains('h')))) {
            tracing::warn!(
                master,
                flags,
                "global store: notify-keyspace-events lacks K, g and h: \
                 local copies are refreshed only when a commit finds them stale (docs/global.md)"
            );
        }
    }
    let mut ps = conn.as_pubsub();
    if ps.psubscribe(PATTERN).is_err() || ps.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) && !broken.load(Ordering::Relaxed) {
        match ps.get_message() {
            Ok(msg) => {
                if let Ok(channel) = msg.get_channel::<Vec<u8>>()
                    && let Some(key) = channel.strip_prefix(CHANNEL_PREFIX)
                {
                    tier.forget(key);
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masters_come_from_cluster_nodes() {
        let nodes = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                     c 127.0.0.1:7002@17002 master,fail - 0 0 3 connected\n\
                     d 127.0.0.1:7003@17003 slave a 0 0 1 connected\n";
        assert_eq!(
            super::masters(nodes),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
    }
}

//! One commit on the namespace's master (`Cluster::commit`), run on the
//! background runtime (`conn.rs`) over the commit client's connection,
//! which never resends (`retries(0)`).
//!
//! 1. Send `CLIENT ID` and the script (`EVALSHA`, `script.rs`) as one
//!    pipeline routed to the slot's master: both go over the same
//!    connection, in order, so the id names the connection that ran the
//!    script. From here the commit may have been sent: a failure is
//!    `Unknown`, never retried.
//! 2. `NOSCRIPT` (the master lacks the script; it ran nothing): `SCRIPT
//!    LOAD` on that master and go back to 1, once.
//! 3. The reply `{ok, n[, replicas]}` (`script.rs`).
//! 4. A commit that wrote, on a master with replicas: send `WAIT replicas
//!    ms` and `CLIENT ID` as one pipeline. `WAIT` counts the replicas that
//!    have every write of *its* connection; on a connection made after the
//!    script's (the old one broke, the client made another), it would
//!    answer at once with no write to wait for. So the two ids must be
//!    equal, and `WAIT` must count every replica; anything else is
//!    `Unknown` (applied on the master, not acknowledged).

use crate::GlobalError;
use crate::conn::{Lazy, classify};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, RedisError, ServerErrorKind, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A commit ready to send: its script call and where it goes.
pub(crate) struct Prepared {
    pub evalsha: Cmd,
    pub route: Route,
    /// The script's source, for `SCRIPT LOAD` (step 2).
    pub source: &'static str,
}

/// Runs steps 1–4; the script's `(ok, n)` once acknowledged. `sent` is
/// set from step 1 on (`conn::Background::spawn` reads it at a timeout).
pub(crate) async fn run(
    conns: &Lazy,
    p: Prepared,
    deadline: Instant,
    sent: &AtomicBool,
) -> Result<(i64, i64), GlobalError> {
    let mut c = conns.get().await?;
    let node = SingleNodeRoutingInfo::SpecificNode(p.route);
    let mut loaded = false;
    let (script_conn, reply) = loop {
        // 1. CLIENT ID + EVALSHA, one pipeline.
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT").arg("ID").add_command(p.evalsha.clone());
        sent.store(true, Ordering::Release);
        let vals = match c.route_pipeline(pipe, 0, 2, node.clone()).await {
            Ok(v) => v,
            Err(e) => return Err(failed(conns, &e, true).await),
        };
        let [id, reply] = two(vals)?;
        match reply.extract_error() {
            // 2. Not run: load it, then send again.
            Err(e)
                if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) && !loaded =>
            {
                sent.store(false, Ordering::Release);
                let load = redis::cmd("SCRIPT").arg("LOAD").arg(p.source).clone();
                let route = RoutingInfo::SingleNode(node.clone());
                if let Err(e) = c.route_command(load, route).await {
                    return Err(failed(conns, &e, false).await);
                }
                loaded = true;
            }
            Err(e) => return Err(failed(conns, &e, true).await),
            Ok(reply) => break (int(id)?, reply),
        }
    };
    // 3. The script's answer.
    let (ok, n, replicas) = match ints(reply)?[..] {
        [ok, n] => (ok, n, 0),
        [ok, n, r] => (ok, n, r),
        ref other => return Err(GlobalError::Protocol(format!("script reply {other:?}"))),
    };
    if ok == 1 && n > 0 && replicas > 0 {
        // 4. WAIT + CLIENT ID on the script's connection.
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = (left.as_millis() as u64 * 3 / 4).max(1);
        let mut pipe = redis::pipe();
        pipe.cmd("WAIT")
            .arg(replicas)
            .arg(ms)
            .cmd("CLIENT")
            .arg("ID");
        let unknown = |why: String| GlobalError::Unknown(format!("WAIT after the script: {why}"));
        let vals = match c.route_pipeline(pipe, 0, 2, node).await {
            Ok(v) => v,
            Err(e) => {
                conns.failed(&e).await;
                return Err(unknown(e.to_string()));
            }
        };
        let [acked, wait_conn] = two(vals).map_err(|e| unknown(e.to_string()))?;
        let acked = int(acked).map_err(|e| unknown(e.to_string()))?;
        let wait_conn = int(wait_conn).map_err(|e| unknown(e.to_string()))?;
        if wait_conn != script_conn {
            return Err(unknown(format!(
                "the connection that ran the script (client {script_conn}) was replaced \
                 (client {wait_conn}): its replicas were not waited for"
            )));
        }
        if acked < replicas {
            return Err(unknown(format!(
                "applied on the master, confirmed by {acked} of its {replicas} \
                 replicas in {ms} ms: a failover may lose it"
            )));
        }
    }
    Ok((ok, n))
}

/// Step 4 of `conn.rs` and the caller's error.
async fn failed(conns: &Lazy, e: &RedisError, sent_effects: bool) -> GlobalError {
    conns.failed(e).await;
    classify(e, sent_effects)
}

fn two(vals: Vec<Value>) -> Result<[Value; 2], GlobalError> {
    <[Value; 2]>::try_from(vals)
        .map_err(|v| GlobalError::Protocol(format!("{} replies to a pipeline of 2", v.len())))
}

fn int(v: Value) -> Result<i64, GlobalError> {
    let v = v.extract_error().map_err(|e| classify(&e, true))?;
    redis::from_redis_value(v).map_err(|e| GlobalError::Protocol(e.to_string()))
}

fn ints(v: Value) -> Result<Vec<i64>, GlobalError> {
    redis::from_redis_value(v).map_err(|e| GlobalError::Protocol(e.to_string()))
}

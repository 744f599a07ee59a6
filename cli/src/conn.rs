//! The connections of `rime serve`: an accept loop with a cap on open
//! connections, a timeout for request headers, an idle timeout for
//! keep-alive connections, and graceful shutdown. `axum::serve` has none
//! of the three limits: 1,100 idle connections that never sent a byte
//! once exhausted the server's 1,024 file descriptors.
//!
//! * **Cap**: at most `max_connections` open at once. A connection over the
//!   cap is accepted, sent a `503` (best effort, never blocking) and closed
//!   at once, so it costs one descriptor for a moment, not for good.
//! * **Header timeout**: from a connection's accept, or from the first byte
//!   of a later request, the request head must be complete within
//!   `header_timeout`, else the connection is closed.
//! * **Idle timeout**: a connection with no request in progress and no
//!   byte read or written for `idle_timeout` is closed. A request in
//!   progress (its head read, its handler running) is never cut.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Descriptors kept for everything but connections (the Db's files, the
/// module cache, the listener, stdio) when the cap is fitted to the
/// process's descriptor limit.
pub const RESERVED_FDS: u64 = 64;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: u32,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Connection counters, for `GET /metrics`.
#[derive(Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// What a refused connection is sent before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 76\r\n\
\r\n\
{\"error\":{\"code\":\"overloaded\",\"message\":\"too many connections; try again\"}}\n";

/// Raises the soft limit on open files to the hard limit, if it is lower.
/// Returns the soft limit in force afterwards (`None`: unlimited).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    match (lim.current, lim.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = soft, to = hard, "raised the open-files limit");
                    Some(hard)
                }
                Err(e) => {
                    tracing::warn!(soft, hard, "could not raise the open-files limit: {e}");
                    Some(soft)
                }
            }
        }
        (soft, _) => soft,
    }
}

/// `wanted`, lowered if the descriptor limit `nofile` cannot hold that
/// many connections beside [`RESERVED_FDS`].
pub fn fit_cap(wanted: u32, nofile: Option<u64>) -> u32 {
    match nofile {
        Some(n) => {
            let room = n.saturating_sub(RESERVED_FDS).clamp(1, u32::MAX as u64) as u32;
            wanted.min(room)
        }
        None => wanted,
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets every connection finish its request in flight, and
/// returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let cap = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(cap as usize));
    let (stop_tx, stop_rx) = watch::channel(());
    let full_logged = AtomicBool::new(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and the like: the connection stays in the backlog.
                tracing::error!("accepting a connection: {e}; retrying in 100 ms");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if !full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(cap, "connection cap reached: refusing new connections");
            }
            let _ = stream.try_write(REFUSAL);
            drop(stream);
            continue;
        };
        full_logged.store(false, Ordering::Relaxed);
        let (router, stop, stats) = (router.clone(), stop_rx.clone(), stats.clone());
        tokio::spawn(async move {
            stats.open.fetch_add(1, Ordering::Relaxed);
            serve_connection(stream, router, limits, stop, &stats).await;
            drop(permit);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    // Every connection holds a permit until it is closed.
    let _ = permits.acquire_many(cap).await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Which timeout closed a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expired {
    Header,
    Idle,
}

/// What the timeouts of one connection look at.
struct ActivityState {
    /// Requests whose head was read and whose handler has not returned.
    in_flight: usize,
    /// The last byte read or written, or the last handler's return.
    last: Instant,
    /// When the head now being read began: the accept, or the first byte
    /// read with no request in progress. `None`: no head being read.
    head_since: Option<Instant>,
}

struct Activity(Mutex<ActivityState>);

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity(Mutex::new(ActivityState {
            in_flight: 0,
            last: now,
            head_since: Some(now),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.last = now;
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        self.lock().last = Instant::now();
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_since = None;
        s.last = Instant::now();
        InFlight(self.clone())
    }

    /// When the connection is due to close, and why; `None` while a
    /// request is in progress.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expired)> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if let Some(t) = s.head_since {
            Some((t + limits.header_timeout, Expired::Header))
        } else {
            Some((s.last + limits.idle_timeout, Expired::Idle))
        }
    }
}

/// A request in progress on a connection; dropped when its handler returns
/// (or the connection goes).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight -= 1;
        s.last = Instant::now();
    }
}

/// A socket that tells its [`Activity`] about every byte moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One HTTP/1.1 connection, until the client closes it, a timeout does,
/// or (after `stop`) its request in flight is answered.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<()>,
    stats: &ConnStats,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = requests.request_started();
        let router = router.clone();
        // Boxed: `poll_without_shutdown` wants an `Unpin` future.
        Box::pin(async move {
            let response = router.oneshot(req.map(Body::new)).await;
            Ok::<_, std::convert::Infallible>(keep_in_flight(response?, in_flight))
        })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timeouts are ours (hyper's header timeout also runs while a
    // keep-alive connection is idle).
    builder.header_read_timeout(None);
    let mut conn = builder.serve_connection(io, service);
    // Nothing can change a deadline to one earlier than this far ahead
    // without the watchdog waking up to see it.
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let wake = match activity.deadline(&limits) {
            Some((at, why)) if at <= now => {
                let counter = match why {
                    Expired::Header => &stats.header_timeouts,
                    Expired::Idle => &stats.idle_closed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?why, "closing a connection: timeout");
                return;
            }
            Some((at, _)) => at.min(now + recheck),
            None => now + recheck,
        };
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = r {
                    tracing::debug!("connection: {e}");
                }
                break;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    linger(conn.into_parts().io.into_inner().inner).await;
}

/// A response whose body is streamed (no length known: a log follower)
/// keeps its request in progress until the body ends, so the idle timeout
/// does not cut a stream that is quiet for a while. Others end it now.
fn keep_in_flight(
    response: axum::response::Response,
    in_flight: InFlight,
) -> axum::response::Response {
    use axum::body::HttpBody;
    use futures_util::StreamExt;
    if response.body().size_hint().exact().is_some() {
        drop(in_flight);
        return response;
    }
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &in_flight;
            chunk
        }))
    })
}

/// How long a closing connection may still take to send what it was
/// sending (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// Closes a connection whose last response is sent: a FIN after the
/// response, then whatever the client still sends is read and dropped,
/// until it closes its side or [`LINGER`] passes. Closing at once would
/// turn the client's bytes in flight (the body of a request answered
/// without being read, such as a `401`) into a reset, and the reset can
/// destroy the response before the client reads it.
async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(1..) = stream.read(&mut buf).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(fit_cap(512, None), 512);
        assert_eq!(fit_cap(512, Some(1 << 20)), 512);
        assert_eq!(fit_cap(512, Some(256)), 256 - RESERVED_FDS as u32);
        assert_eq!(fit_cap(512, Some(10)), 1);
    }

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        // A fresh connection must send its head in time.
        assert_eq!(
            a.deadline(&limits),
            Some((t0 + limits.header_timeout, Expired::Header))
        );
        // No deadline while a request is in progress.
        let req = a.request_started();
        assert_eq!(a.deadline(&limits), None);
        // Then idle: the idle timeout from the handler's return.
        let before = Instant::now();
        drop(req);
        let (at, why) = a.deadline(&limits).unwrap();
        assert_eq!(why, Expired::Idle);
        assert!(at >= before + limits.idle_timeout);
        assert!(at <= Instant::now() + limits.idle_timeout);
        // The first byte of the next request starts the header timeout.
        let before = Instant::now();
        a.read();
        let (at, why) = a.deadline(&limits).unwrap();
        assert_eq!(why, Expired::Header);
        assert!(at >= before + limits.header_timeout);
        assert!(at <= Instant::now() + limits.header_timeout);
        // Body bytes of a request in progress do not.
        let req = a.request_started();
        a.read();
        drop(req);
        assert_eq!(a.deadline(&limits).unwrap().1, Expired::Idle);
    }
}

//! Stopping: SIGTERM and SIGINT end the accept loop (`conn::serve` then
//! lets the requests in flight finish), then the invocations that began
//! to commit before their clients went away finish too, and the Db is
//! checkpointed and closed.

use super::{App, LOG_TARGET};
use crate::env::{self, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// SIGTERM and SIGINT, caught from now on (from before the server says it
/// is listening: a SIGTERM right after that line must not kill it).
pub(super) fn catch_signals(
    rt: &tokio::runtime::Runtime,
) -> Result<impl std::future::Future<Output = ()> + use<>> {
    use tokio::signal::unix::{SignalKind, signal};
    let _in_rt = rt.enter();
    let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    Ok(shutdown_signal(term, int))
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(target: LOG_TARGET, "{which}: no new connections; finishing requests in flight");
}

/// Once the connections are closed: waits for the invocations still
/// running (their clients may have gone), stops the async runtime, and
/// checkpoints and closes the Db.
pub(super) fn finish_and_close(app: Arc<App>, tokio_rt: tokio::runtime::Runtime) -> Result<()> {
    while app.inflight.load(Ordering::SeqCst) > 0 || app.rt.in_flight() > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    tokio_rt.shutdown_timeout(Duration::from_secs(10));
    let app =
        Arc::try_unwrap(app).map_err(|_| "the server state is still shared after shutdown")?;
    env::close(app.rt)?;
    tracing::info!(target: LOG_TARGET, "checkpointed and closed; bye");
    Ok(())
}

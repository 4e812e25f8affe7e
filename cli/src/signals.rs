//! Stopping on SIGINT (Ctrl-C) or SIGTERM.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

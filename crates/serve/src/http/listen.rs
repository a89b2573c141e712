//! [`Server::serve`](crate::Server::serve)'s accept loop: HTTP/1.1 connections served by
//! hyper with a deadline on each request's headers, at most [`Limits::max_connections`] of
//! them open, and a shutdown bounded by [`Limits::shutdown_timeout`].

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::limits::Limits;

/// The server's shutdown as its streams see it: [`close`](Self::close) ends every event stream
/// answered, and those asked for afterwards at once.
#[derive(Debug, Clone)]
pub(crate) struct Closing(Arc<watch::Sender<bool>>);

impl Closing {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Ends the streams.
    pub(crate) fn close(&self) {
        self.0.send_replace(true);
    }

    /// Completes once [`close`](Self::close) was called (at once if it was already).
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.0.subscribe();
        async move {
            // An error: the sender is gone with the server, and so are its streams' reasons to go on.
            let _ = closing.wait_for(|closed| *closed).await;
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then for at most the limits'
/// shutdown timeout; every connection is closed when it returns, which says how.
///
/// A connection is accepted only while fewer than [`Limits::max_connections`] are open: further
/// clients wait in the listener's backlog (their connection is made by the kernel, answered
/// once one closes). Each connection closes when a request's headers take longer than
/// [`Limits::header_timeout`], which is also how long an idle keep-alive connection stays.
pub(crate) async fn serve(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    closing: Closing,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Stopped {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let room = tokio::select! {
            biased;
            () = &mut shutdown => break,
            room = Arc::clone(&open).acquire_owned() => room,
        };
        // The semaphore is never closed.
        let Ok(room) = room else { break };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    refused(error).await;
                    continue;
                }
            },
        };
        // The connections that ended are forgotten as new ones come.
        while connections.try_join_next().is_some() {}
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let closed = closing.closed();
        connections.spawn(async move {
            let _room = room;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = closed => {}
            }
            // The request being answered is finished (a stream ends, as `closed` ended it), then
            // the connection closes; an idle one closes at once.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    closing.close();
    let busy = connections.len();
    let drained =
        tokio::time::timeout(limits.shutdown_timeout, async { while connections.join_next().await.is_some() {} }).await;
    match drained {
        Ok(()) => Stopped::Drained { connections: busy },
        Err(_) => {
            let cut = connections.len();
            connections.shutdown().await;
            Stopped::Cut { connections: cut }
        }
    }
}

/// How [`serve`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Every request in flight was answered; `connections` were open.
    Drained { connections: usize },
    /// `connections` were still busy after the shutdown timeout, and were closed.
    Cut { connections: usize },
}

impl Stopped {
    /// Says how the server's connections ended.
    pub(crate) fn log(self, limits: &Limits) {
        match self {
            Self::Drained { connections } => {
                tracing::info!(connections, "shut down: every request in flight was answered");
            }
            Self::Cut { connections } => tracing::warn!(
                connections,
                timeout_ms = limits.shutdown_timeout.as_millis() as u64,
                "shut down: closed the connections still busy after the shutdown timeout"
            ),
        }
    }
}

/// A connection the listener could not accept: one that failed before it was accepted is
/// skipped; anything else (no file descriptor left, say) is logged and the loop waits a
/// second, as hyper's and axum's servers do, rather than spin.
async fn refused(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

//! The accept loop of `cras serve`, on hyper's own connection handling (hyper-util's builder,
//! HTTP/1 only as before: HTTP/2 detection would wait for a preface without a timeout) with the
//! limits that keep a few clients from starving the rest:
//!
//! - at most [`ConnLimits::max_connections`] connections are open at once; further clients wait
//!   in the kernel's accept backlog (so the process never runs out of file descriptors);
//! - hyper's HTTP/1 header read timeout closes a connection that does not send a complete
//!   request head within [`ConnLimits::header_timeout`] (idle keep-alive connections included);
//! - on shutdown no new connection is accepted, open ones finish their request and close
//!   (hyper's graceful shutdown), and after [`ConnLimits::shutdown_grace`] the rest are dropped,
//!   so a half-sent request cannot hold the process.
//!
//! The body read timeout is the router's (`buffer_body`, 408).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a complete request head.
    pub header_timeout: Duration,
    /// Longest wait for open connections after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then shuts down gracefully within
/// the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection errors (reset before accept) and descriptor exhaustion
                    // alike: log, pause briefly, go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: connections still open after {:?} are dropped",
            limits.shutdown_grace
        );
    }
}

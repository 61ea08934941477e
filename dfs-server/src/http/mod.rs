//! The HTTP/1.1 edge: accepts connections (one task each, keep-alive), hands requests to
//! the router, and shuts down gracefully: stop accepting, let in-flight requests finish
//! (bounded), end callback channels.
//!
//! Owns: sockets and connection lifecycles. Must not implement resources (see `router`,
//! `dir`, `crate::files`).

pub mod dir;
pub mod router;
pub mod wire;

use crate::services::Services;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves once the flag in `rx` is true (or its sender is gone).
pub async fn raised(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Serves `listener` until `stop` turns true, then drains.
pub async fn serve(listener: TcpListener, svc: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = svc.clone();
                    let mut drain = drain_rx.clone();
                    conns.spawn(async move {
                        let service = service_fn(move |req| router::handle(svc.clone(), req));
                        let conn = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = raised(&mut drain) => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            log::debug!("connection from {peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = raised(&mut stop) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let open = conns.len();
    log::info!("shutting down: no new connections, draining {open} open ones");
    let _ = drain_tx.send(true);
    svc.callbacks.stop();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "{} connections still busy after {DRAIN_TIMEOUT:?}; closing them",
            conns.len()
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

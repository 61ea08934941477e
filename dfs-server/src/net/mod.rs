//! The HTTP/1.1 edge: accepts connections within the caps (`limits`), serves each on its
//! own task (keep-alive) and closes it when it stops moving (`reaper`), hands requests to
//! a handler (`crate::api` gives it the router), and shuts down gracefully: stop
//! accepting, let in-flight requests finish (bounded), end long-lived answers.
//!
//! Owns: sockets, connection lifecycles, body types (`body`). Must not know what requests
//! mean (that is `crate::api`), nor any service.

pub mod body;
pub mod limits;
pub mod reaper;

use body::ResBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use limits::{Gate, Permit};
use reaper::{Activity, TimedBody, TimedIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves once the flag in `rx` is true (or its sender is gone).
pub async fn raised(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// A request as the edge hands it on: its body times out when it stalls (`reaper`).
pub type EdgeRequest = Request<TimedBody<Incoming>>;

/// Serves `listener` within the caps of `gate` (`Gate::new`) with `handler` until `stop`
/// turns true, then drains: `on_drain` runs when no connection is accepted any more (to
/// end answers that stream for as long as their client lives), and in-flight requests
/// get `DRAIN_TIMEOUT` to finish.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    gate: Arc<Gate>,
    mut stop: watch::Receiver<bool>,
    on_drain: impl FnOnce(),
) where
    H: Fn(EdgeRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<hyper::Response<ResBody>, Infallible>> + Send + 'static,
{
    gate.spawn_reporter(stop.clone());
    let mut conns = JoinSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match gate.admit(peer.ip()) {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        let (handler, gate, drain) = (handler.clone(), gate.clone(), drain_rx.clone());
                        conns.spawn(serve_connection(stream, peer, permit, handler, gate, drain));
                    }
                    Err(why) => {
                        log::debug!("refusing a connection from {peer}: {why:?} cap");
                        gate.turn_away(stream);
                    }
                },
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
    on_drain();
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

/// Serves one connection until it ends, is reaped for not moving (`reaper`), or the
/// server drains; `permit` holds its place in the caps meanwhile.
async fn serve_connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    handler: H,
    gate: Arc<Gate>,
    mut drain: watch::Receiver<bool>,
) where
    H: Fn(EdgeRequest) -> F + Send + Sync + 'static,
    F: Future<Output = Result<hyper::Response<ResBody>, Infallible>> + Send + 'static,
{
    let limits = &gate.limits;
    let activity = Activity::new();
    let io = TimedIo::new(stream, activity.clone(), limits, gate.tally.clone());
    let service = {
        let (activity, gate) = (activity.clone(), gate.clone());
        service_fn(move |req: Request<Incoming>| {
            let in_flight = activity.request_started();
            let req = req.map(|body| TimedBody::new(body, &gate.limits, gate.tally.clone()));
            let answer = handler(req);
            async move {
                let resp = answer.await?;
                Ok::<_, Infallible>(resp.map(|b| reaper::guarded(b, in_flight)))
            }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    let result = loop {
        let deadline = activity.deadline(limits).filter(|_| !draining);
        let sleep_until = deadline.map_or_else(tokio::time::Instant::now, |(at, _)| at);
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = activity.changed.notified() => {}
            _ = raised(&mut drain), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                if let Some((at, why)) = activity.deadline(limits) {
                    if at <= tokio::time::Instant::now() {
                        gate.tally.reaped(why);
                        break Ok(());
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        log::debug!("connection from {peer}: {e}");
    }
    drop(permit);
}

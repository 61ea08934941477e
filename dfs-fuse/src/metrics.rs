//! The mount's metrics and their Prometheus endpoint (`dfs-mount --metrics-listen`): FUSE
//! operations by kind with their latency (from the kernel's request to our answer, also
//! for answers given from a task), and the library's counts (`dfs_client::metrics`: cache
//! hits and misses, bytes fetched and stored, requests sent to the server, the callback
//! channel), cache fill and unstored files read when scraped. Every update is a relaxed
//! atomic add (`dfs_common::metrics`).
//!
//! Owns: the FUSE statics, `OpTimer` (the timing of one FUSE request across a hop to the
//! runtime), the registry and the HTTP listener. Must not decide anything.

use dfs_client::cache::CacheManager;
use dfs_client::metrics::{
    BREAKS_RECEIVED, BYTES_FETCHED, BYTES_STORED, CHANNEL_CONNECTS, CHANNEL_LOSSES, SERVER_ERRORS,
    SERVER_LATENCY, SERVER_REQUESTS,
};
pub use dfs_client::metrics::{
    CACHE, HIT, KIND_GETATTR, KIND_LOOKUP, KIND_OPEN, MISS, REVALIDATED,
};
use dfs_common::metrics::{self as m, Counters, Latencies};
use std::cell::Cell;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The kinds of FUSE requests, in `FuseOp` order.
pub const FUSE_OPS: &[&str] = &[
    "lookup",
    "getattr",
    "setattr",
    "readlink",
    "mkdir",
    "mknod",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "getlk",
    "setlk",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "create",
];

/// Index of a FUSE request kind in `FUSE_OPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum FuseOp {
    Lookup,
    Getattr,
    Setattr,
    Readlink,
    Mkdir,
    Mknod,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Getlk,
    Setlk,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Create,
}

impl FuseOp {
    pub fn name(self) -> &'static str {
        FUSE_OPS[self as usize]
    }
}

pub static FUSE_REQUESTS: LazyLock<Counters> = LazyLock::new(|| Counters::new("op", FUSE_OPS));
pub static FUSE_LATENCY: LazyLock<Latencies> = LazyLock::new(|| Latencies::new("op", FUSE_OPS));

/// The timing of one FUSE request: started when the adapter gets it, recorded when the
/// request is answered (dropped at the end of the handler, or at the end of the task the
/// handler handed it to).
pub struct OpTimer {
    op: FuseOp,
    start: Instant,
}

impl OpTimer {
    pub fn op(&self) -> FuseOp {
        self.op
    }
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        FUSE_LATENCY.observe(self.op as usize, self.start.elapsed());
    }
}

thread_local! {
    /// The request the FUSE thread is handling (one at a time per thread).
    static CURRENT: Cell<Option<OpTimer>> = const { Cell::new(None) };
}

/// Started at the top of a FUSE handler; records the request's latency when dropped,
/// unless the request was carried into a task (`carry`), which then records it.
pub struct OpScope(());

pub fn begin(op: FuseOp) -> OpScope {
    FUSE_REQUESTS.inc(op as usize);
    CURRENT.with(|c| {
        c.set(Some(OpTimer {
            op,
            start: Instant::now(),
        }))
    });
    OpScope(())
}

impl Drop for OpScope {
    fn drop(&mut self) {
        CURRENT.with(|c| drop(c.take()));
    }
}

/// The timing of the request this FUSE thread is handling, to move into the task that
/// will answer it.
pub fn carry() -> Option<OpTimer> {
    CURRENT.with(|c| c.take())
}

/// Registers everything; `mgr` is read at scrape time for the gauges.
fn registry(mgr: &Arc<CacheManager>) -> prometheus_client::registry::Registry {
    let mut r = prometheus_client::registry::Registry::with_prefix("dfs_mount");
    m::register(
        &mut r,
        "fuse_requests",
        "FUSE requests by kind",
        &*FUSE_REQUESTS,
    );
    m::register(
        &mut r,
        "fuse_request_seconds",
        "FUSE requests: time from the kernel's request to our answer",
        &*FUSE_LATENCY,
    );
    m::register(
        &mut r,
        "cache",
        "Cache answers: from the cache (hit), after a version check with the server \
         (revalidated), or fetched (miss)",
        &*CACHE,
    );
    m::register(
        &mut r,
        "fetched_bytes",
        "File contents received from the servers",
        &BYTES_FETCHED,
    );
    m::register(
        &mut r,
        "stored_bytes",
        "File contents sent to the servers",
        &BYTES_STORED,
    );
    m::register(
        &mut r,
        "server_requests",
        "Requests sent to the server, by method",
        &*SERVER_REQUESTS,
    );
    m::register(
        &mut r,
        "server_request_seconds",
        "Requests sent to the server: time to the answer's head",
        &*SERVER_LATENCY,
    );
    m::register(
        &mut r,
        "server_errors",
        "Requests that reached no answer (server unreachable, connection lost)",
        &SERVER_ERRORS,
    );
    m::register(
        &mut r,
        "callback_channel_connects",
        "Times the callback channel was connected",
        &CHANNEL_CONNECTS,
    );
    m::register(
        &mut r,
        "callback_channel_losses",
        "Times the callback channel was lost",
        &CHANNEL_LOSSES,
    );
    m::register(
        &mut r,
        "callback_breaks_received",
        "Callback breaks received",
        &BREAKS_RECEIVED,
    );
    let g = mgr.clone();
    m::register_gauge(
        &mut r,
        "callback_channel_up",
        "1 while the callback channel is connected",
        move || g.status("").callback_channel_up as i64,
    );
    let g = mgr.clone();
    m::register_gauge(
        &mut r,
        "cache_bytes",
        "Bytes of cached copies on disk",
        move || g.cache_fill().0 as i64,
    );
    let g = mgr.clone();
    m::register_gauge(
        &mut r,
        "cache_limit_bytes",
        "Most bytes of clean copies kept (--cache-size)",
        move || g.cache_fill().1 as i64,
    );
    let g = mgr.clone();
    m::register_gauge(&mut r, "cache_files", "Cached copies on disk", move || {
        g.cache_fill().2 as i64
    });
    let g = mgr.clone();
    m::register_gauge(
        &mut r,
        "unstored_files",
        "Files with changes the server has not acknowledged",
        move || g.dirty_count() as i64,
    );
    r
}

/// Serves `GET /metrics` on `addr` (until the runtime stops); returns the bound address.
pub async fn serve(addr: &str, mgr: Arc<CacheManager>) -> std::io::Result<std::net::SocketAddr> {
    let registry = Arc::new(registry(&mgr));
    listener::serve_metrics(addr, move || m::render(&registry)).await
}

/// A minimal HTTP/1.1 listener for `/metrics`.
mod listener {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    use std::sync::Arc;

    pub async fn serve_metrics(
        addr: &str,
        render: impl Fn() -> String + Send + Sync + 'static,
    ) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let render = Arc::new(render);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let render = render.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let render = render.clone();
                        async move {
                            let resp = if req.uri().path() == "/metrics" {
                                Response::builder()
                                    .header(
                                        hyper::header::CONTENT_TYPE,
                                        dfs_common::metrics::CONTENT_TYPE,
                                    )
                                    .body(Full::new(Bytes::from(render())))
                            } else {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                            };
                            Ok::<_, std::convert::Infallible>(resp.expect("valid response"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(bound)
    }
}

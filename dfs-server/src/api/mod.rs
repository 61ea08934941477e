//! Every HTTP resource of a node, one module per area, in one style: `router` resolves
//! the path, runs the ONE authentication hook and hands the request to its area's
//! `handle(svc, call, req)`, which checks the method, decodes the request with `wire`'s
//! helpers, calls the services, and returns an `Answer` (`Ok` response or an `FsError`
//! that `wire::error_response`, the one place errors become statuses, answers).
//!
//! Areas: `dir` (`/v1/dir`), `files` (`/v1/files/{ino}`), `locks` (`/v1/locks/...`), `tx`
//! (`/v1/tx/...`), `kdc` (`/v1/kdc/...`), `clients` (registration and the callback
//! channel), `status` (`/v1/health`, `/metrics`), `cluster` (`/v1/cluster/...`, node to
//! node, with its own authentication).
//!
//! Owns: paths, methods, request decoding, answers, the authentication hook. Must not
//! decide anything the services decide (permissions, POSIX rules, locks, placement), nor
//! hold sockets (that is `crate::net`). This module and `crate::services` are the only
//! ones that know `Services`.

pub mod clients;
pub mod cluster;
pub mod dir;
pub mod files;
pub mod kdc;
pub mod locks;
pub mod router;
pub mod status;
pub mod tx;
pub mod wire;

use crate::net::limits::Gate;
use crate::services::Services;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Who a request comes from, as the authentication hook established it.
pub struct Call<'a> {
    pub caller: crate::auth::Caller,
    /// The ticket's session, for an authenticated request in a realm.
    pub session: Option<&'a crate::auth::Session>,
}

/// Serves the node's resources on `listener` (`crate::net::serve`) until `stop` turns
/// true; draining ends the callback channels.
pub async fn serve(
    listener: TcpListener,
    svc: Arc<Services>,
    gate: Arc<Gate>,
    stop: watch::Receiver<bool>,
) {
    let callbacks = svc.callbacks.clone();
    let handler = move |req| router::handle(svc.clone(), req);
    crate::net::serve(listener, handler, gate, stop, move || callbacks.stop()).await;
}

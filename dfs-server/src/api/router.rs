//! Routing of the `/v1` resources of `dfs_common::proto` to their areas, the ONE
//! authentication hook every request passes through, the metrics and log line of every
//! request, and the headers every answer carries (epoch, request id, the answer's proof).
//!
//! Owns: which area a path belongs to, `authenticate`. Must not implement a resource
//! itself.

use super::wire::{error_response, not_found, Answer, ReqBody, ResBody};
use super::Call;
use crate::net::EdgeRequest;
use crate::services::{Caller, Services};
use dfs_common::proto::HDR_REQUEST_ID;
use dfs_common::FsError;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument;

/// Who is calling: which mount, proven by its client key, realm or not
/// (`crate::clients`); then the security service's AP check (`crate::auth`), or a
/// pass-through in an open cell.
pub fn authenticate<B>(
    svc: &Services,
    req: &mut Request<B>,
) -> Result<(Caller, Option<crate::auth::Session>), FsError> {
    let client = {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        svc.clients
            .verify(req.headers(), req.method().as_str(), pq)?
    };
    crate::auth::authenticate(client, svc.security(), req)
}

/// The hyper service function (request bodies time out when they stall, see `reaper`):
/// counts each request by route and status with its latency (`crate::metrics`), and at
/// debug level logs it with the id its client gave it (`HDR_REQUEST_ID`), inside a span
/// that names that id, so what the request logs on its way can be found from the mount's
/// log. The answer carries the same id back (`HDR_REQUEST_ID`).
pub async fn handle(svc: Arc<Services>, req: EdgeRequest) -> Result<Response<ResBody>, Infallible> {
    let started = std::time::Instant::now();
    let route = crate::metrics::route_of(req.method(), req.uri().path());
    let traced = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        let id = req
            .headers()
            .get(HDR_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        (id, req.method().clone(), req.uri().path().to_string())
    });
    let span = match &traced {
        Some((id, _, _)) => tracing::debug_span!("request", request_id = %id),
        None => tracing::Span::none(),
    };
    let resp = handle_request(svc, req).instrument(span.clone()).await?;
    let status = resp.status();
    crate::metrics::REQUESTS.inc(route, crate::metrics::status_index(status.as_u16()));
    crate::metrics::REQUEST_LATENCY.observe(route, started.elapsed());
    if let Some((id, method, path)) = traced {
        tracing::debug!(
            request_id = %id,
            "{method} {path} -> {} in {:?}",
            status.as_u16(),
            started.elapsed()
        );
    }
    Ok(resp)
}

async fn handle_request(
    svc: Arc<Services>,
    req: EdgeRequest,
) -> Result<Response<ResBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == super::status::METRICS && crate::metrics::anonymous_allowed() {
        return Ok(super::status::metrics());
    }
    if path.starts_with(dfs_common::cluster::PREFIX) {
        // Node-to-node traffic has its own authentication (the cluster key).
        let req = req.map(|b| b.boxed());
        return Ok(super::cluster::handle(&svc, req).await);
    }
    if !svc.cluster().is_directory() && path != super::status::HEALTH {
        let dir = svc.cluster().directory_addr();
        return Ok(error_response(&FsError::NotSupported(format!(
            "this node stores blobs only; the directory service is at {}",
            dir.map(|a| a.to_string())
                .unwrap_or_else(|| "an unknown node".into())
        ))));
    }
    if let Some(replica) = svc.coherence.replica() {
        // Only the leader of the directory answers clients, and only while a quorum has
        // heard from it within the lease (`raft::node::leading`): a deposed or cut-off
        // leader sends them elsewhere instead of answering from a stale copy.
        if path != super::status::HEALTH && !super::status::is_resource(&path) {
            if let Err(e) = crate::raft::node::leading(replica) {
                return Ok(error_response(&e));
            }
        }
    }
    let mut req = req;
    let started = std::time::Instant::now();
    let request_id = req.headers().get(HDR_REQUEST_ID).cloned();
    let answer_names = |resp: &mut Response<ResBody>| {
        name_epoch(&svc, resp);
        if let Some(id) = &request_id {
            resp.headers_mut().insert(HDR_REQUEST_ID, id.clone());
        }
    };
    let resp = match authenticate(&svc, &mut req) {
        Ok((caller, session)) => {
            let caller = caller.with_request(request_serial(request_id.as_ref()));
            let req = crate::auth::privacy::open_request(session.as_ref(), req);
            let call = Call {
                caller,
                session: session.as_ref(),
            };
            let mut resp = match route(&svc, &call, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
            // Before the answer is signed: its proof covers every x-dfs-* header.
            answer_names(&mut resp);
            match &session {
                Some(s) => crate::auth::seal_response(s, &method, &path, resp).await,
                None => resp,
            }
        }
        Err(e) => {
            log::info!("{method} {path}: {e}");
            let mut resp = error_response(&e);
            answer_names(&mut resp);
            resp
        }
    };
    let status = resp.status();
    if status.is_server_error() {
        log::warn!("{method} {path} -> {status} in {:?}", started.elapsed());
    }
    Ok(resp)
}

/// The client's request id (16 hex digits) as a number; 0 when absent or not one.
fn request_serial(id: Option<&HeaderValue>) -> u64 {
    id.and_then(|v| v.to_str().ok())
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// Every answer tells the server's epoch: a client whose proofs are of an earlier one (this
/// server restarted) learns the new one from any refusal (`dfs_common::client_id`).
fn name_epoch(svc: &Services, resp: &mut Response<ResBody>) {
    resp.headers_mut().insert(
        dfs_common::client_id::HDR_EPOCH,
        HeaderValue::from(svc.clients.epoch()),
    );
}

/// Hands `req` to the area its path belongs to.
async fn route(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let path = req.uri().path().to_string();
    let path = path.as_str();
    if path == "/v1/dir" {
        super::dir::handle(svc, call, req).await
    } else if path.starts_with(super::files::PREFIX) {
        super::files::handle(svc, call, req).await
    } else if path.starts_with(super::locks::PREFIX) {
        super::locks::handle(svc, call, req).await
    } else if path.starts_with(super::tx::PREFIX) {
        super::tx::handle(svc, call, req).await
    } else if path.starts_with(dfs_common::auth::KDC_PREFIX) {
        super::kdc::handle(svc, call, req).await
    } else if super::clients::is_resource(path) {
        super::clients::handle(svc, call, req).await
    } else if super::status::is_resource(path) {
        super::status::handle(svc, call, req).await
    } else {
        Ok(not_found(path))
    }
}

//! Routing of the `/v1` resources of `dfs_common::proto` to their handlers, and the ONE
//! authentication hook every request passes through.
//!
//! Owns: paths, methods, `authenticate`. Must not implement a resource itself.

use super::reaper::TimedBody;
use super::wire::{self, error_response, full, ResBody};
use crate::callbacks;
use crate::files;
use crate::lock;
use crate::services::{Caller, Services};
use crate::tx;
use dfs_common::proto::{HDR_CLIENT, HDR_DETAIL, HDR_REQUEST_ID};
use tracing::Instrument;

use dfs_common::{codec, FsError, Ino};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;

/// Who is calling: the security service's AP check (`crate::auth`), or a pass-through of
/// `x-dfs-client` in an open cell.
pub fn authenticate<B>(
    svc: &Services,
    req: &mut Request<B>,
) -> Result<(Caller, Option<crate::auth::Session>), FsError> {
    crate::auth::authenticate(svc, req)
}

/// The hyper service function (request bodies time out when they stall, see `reaper`):
/// counts each request by route and status with its latency (`crate::metrics`), and at
/// debug level logs it with the id its client gave it (`HDR_REQUEST_ID`), inside a span
/// that names that id, so what the request logs on its way can be found from the mount's
/// log. The answer carries the same id back (`HDR_REQUEST_ID`).
pub async fn handle(
    svc: Arc<Services>,
    req: Request<TimedBody<Incoming>>,
) -> Result<Response<ResBody>, Infallible> {
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
    req: Request<TimedBody<Incoming>>,
) -> Result<Response<ResBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/metrics" && crate::metrics::anonymous_allowed() {
        return Ok(metrics_answer());
    }
    if path.starts_with(dfs_common::cluster::PREFIX) {
        // Node-to-node traffic has its own authentication (the cluster key).
        let req = req.map(|b| b.boxed());
        return Ok(crate::cluster::http::handle(&svc, req).await);
    }
    if !svc.cluster().is_directory() && path != "/v1/health" {
        let dir = svc.cluster().directory_addr();
        return Ok(error_response(&FsError::NotSupported(format!(
            "this node stores blobs only; the directory service is at {}",
            dir.map(|a| a.to_string())
                .unwrap_or_else(|| "an unknown node".into())
        ))));
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
            let req = crate::auth::privacy::open_request(session.as_ref(), req);
            let mut resp = match route(&svc, caller, session.as_ref(), req).await {
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

/// `GET /v1/callbacks` of a proven `client`: its callback channel, sealed with a key of its
/// own and this epoch (`dfs_common::client_id`), bound to a fresh nonce: nobody else can
/// read its breaks (entry breaks carry names) or slip it false ones.
fn callbacks_channel(svc: &Arc<Services>, client: u64) -> Result<Response<ResBody>, FsError> {
    let key = svc
        .clients
        .key(client)
        .ok_or_else(|| FsError::UnknownClient(format!("client {client:#x}")))?
        .channel_key(svc.clients.epoch());
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| FsError::Io("no randomness".into()))?;
    let nonce = u64::from_le_bytes(nonce);
    let sealer = dfs_common::privacy::Sealer::new(&key, dfs_common::privacy::Dir::Response, nonce);
    let rx = callbacks::channel::open(svc.callbacks.clone(), client);
    let body = dfs_common::sealed_body::sealing(wire::channel(rx, None), sealer);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("cache-control", "no-store")
        .header(
            dfs_common::client_id::HDR_CHANNEL_NONCE,
            format!("{nonce:x}"),
        )
        .body(body)
        .expect("valid response"))
}

/// Every answer tells the server's epoch: a client whose proofs are of an earlier one (this
/// server restarted) learns the new one from any refusal (`dfs_common::client_id`).
fn name_epoch(svc: &Services, resp: &mut Response<ResBody>) {
    resp.headers_mut().insert(
        dfs_common::client_id::HDR_EPOCH,
        HeaderValue::from(svc.clients.epoch()),
    );
}

/// The node's metrics in the Prometheus text format.
fn metrics_answer() -> Response<ResBody> {
    match crate::metrics::exposition() {
        Some(text) => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, dfs_common::metrics::CONTENT_TYPE)
            .body(full(text))
            .expect("valid response"),
        None => error_response(&FsError::Unavailable("metrics are not set up yet".into())),
    }
}

fn not_found(path: &str) -> Response<ResBody> {
    let mut r = error_response(&FsError::NotFound);
    let msg = format!("no such resource: {path}");
    if let Ok(v) = HeaderValue::from_str(&msg) {
        r.headers_mut().insert(HDR_DETAIL, v);
    }
    let text = format!("{msg}\n");
    r.headers_mut()
        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    *r.body_mut() = full(text);
    r
}

fn method_not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<ResBody> {
    let err = FsError::NotSupported(format!("method {method} not allowed on {path}"));
    let mut r = error_response(&err);
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

async fn route(
    svc: &Arc<Services>,
    caller: Caller,
    session: Option<&crate::auth::Session>,
    req: Request<wire::ReqBody>,
) -> Result<Response<ResBody>, FsError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match path.as_str() {
        "/v1/dir" => match method {
            Method::POST => super::dir::handle(svc, caller, req).await,
            _ => Ok(method_not_allowed(&method, &path, "POST")),
        },
        "/metrics" => match method {
            Method::GET if caller.admin || !caller.enforce => Ok(metrics_answer()),
            Method::GET => Err(FsError::PermissionDenied(
                "/metrics needs an admin's ticket (or dfs-server --metrics-anonymous, or \
                 --metrics-listen)"
                    .into(),
            )),
            _ => Ok(method_not_allowed(&method, &path, "GET")),
        },
        "/v1/health" => match method {
            Method::GET | Method::HEAD => Ok(Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "text/plain")
                .body(full("ok"))
                .expect("valid response")),
            _ => Ok(method_not_allowed(&method, &path, "GET")),
        },
        "/v1/callbacks" => match method {
            Method::GET => {
                if caller.client == 0 {
                    return Err(FsError::BadRequest(format!(
                        "the callback channel needs a {HDR_CLIENT} header"
                    )));
                }
                callbacks_channel(svc, caller.client)
            }
            _ => Ok(method_not_allowed(&method, &path, "GET")),
        },
        dfs_common::client_id::REGISTER_PATH => match method {
            Method::POST => {
                let (parts, body) = req.into_parts();
                let bytes =
                    wire::read_limited(body, &parts.headers, dfs_common::proto::MAX_DIR_REQUEST)
                        .await?;
                let request: dfs_common::client_id::RegisterRequest = codec::decode(&bytes)?;
                let svc2 = svc.clone();
                let registered = svc
                    .blocking(move |ns, _| svc2.clients.register(ns, &request))
                    .await?;
                Ok(wire::bincode_response(&registered))
            }
            _ => Ok(method_not_allowed(&method, &path, "POST")),
        },
        p if p.starts_with(dfs_common::auth::KDC_PREFIX) => {
            crate::kdc::http::handle(svc, session, req).await
        }
        p if p.starts_with(tx::http::PREFIX) => {
            match tx::http::route(&method, &p[tx::http::PREFIX.len()..]) {
                tx::http::Route::NotFound => Ok(not_found(p)),
                tx::http::Route::WrongMethod(allow) => {
                    Ok(method_not_allowed(&method, &path, allow))
                }
                r => tx::http::handle(svc, caller, r, req).await,
            }
        }
        p if p.starts_with(lock::http::PREFIX) => {
            let name = &p[lock::http::PREFIX.len()..];
            if !lock::http::is_resource(name) {
                return Ok(not_found(p));
            }
            match method {
                Method::POST => lock::http::handle(svc, caller, name, req).await,
                _ => Ok(method_not_allowed(&method, &path, "POST")),
            }
        }
        p => {
            let Some(rest) = p.strip_prefix("/v1/files/") else {
                return Ok(not_found(p));
            };
            let Ok(ino) = rest.parse::<Ino>() else {
                return Ok(not_found(p));
            };
            match method {
                Method::GET => files::fetch(svc, caller, ino, req).await,
                Method::PUT => files::store(svc, caller, ino, req).await,
                _ => Ok(method_not_allowed(&method, &path, "GET, PUT")),
            }
        }
    }
}

//! `GET /v1/health` (to anyone: the node answers) and `GET /metrics` (the node's metrics,
//! to whom `crate::metrics` says may read them).
//!
//! Owns: those two answers. Must not decide who may read metrics (`crate::metrics`).

use super::wire::{error_response, full, method_not_allowed, Answer, ReqBody, ResBody};
use super::Call;
use crate::services::Services;
use dfs_common::FsError;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub const HEALTH: &str = "/v1/health";
pub const METRICS: &str = "/metrics";

/// Whether `path` is one of this area's resources.
pub fn is_resource(path: &str) -> bool {
    path == HEALTH || path == METRICS
}

/// Handles `HEALTH` and `METRICS`.
pub async fn handle(_svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let (method, path) = (req.method(), req.uri().path());
    let caller = &call.caller;
    match (path, method) {
        (HEALTH, &Method::GET | &Method::HEAD) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "text/plain")
            .body(full("ok"))
            .expect("valid response")),
        (HEALTH, _) => Ok(method_not_allowed(method, path, "GET")),
        (_, &Method::GET) if caller.admin || !caller.enforce => Ok(metrics()),
        (_, &Method::GET) => Err(FsError::PermissionDenied(
            "/metrics needs an admin's ticket (or dfs-server --metrics-anonymous, or \
             --metrics-listen)"
                .into(),
        )),
        _ => Ok(method_not_allowed(method, path, "GET")),
    }
}

/// The node's metrics in the Prometheus text format.
pub fn metrics() -> Response<ResBody> {
    match crate::metrics::exposition() {
        Some(text) => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, dfs_common::metrics::CONTENT_TYPE)
            .body(full(text))
            .expect("valid response"),
        None => error_response(&FsError::Unavailable("metrics are not set up yet".into())),
    }
}

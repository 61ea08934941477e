//! `/v1/tx/...`: maps the transaction resources of `dfs_common::tx` to the calls of
//! `crate::tx`, decoding and encoding bincode bodies (staged blobs are streamed raw).
//!
//! Owns: the resource names and methods under `/v1/tx/`. Must not decide anything about
//! transactions (that is `crate::tx`).

use super::wire::{
    self, bincode_response, decode_body, method_not_allowed, not_found, read_limited, Answer,
    ReqBody,
};
use super::Call;
use crate::services::Services;
use crate::tx;
use dfs_common::codec;
use dfs_common::tx::{BeginRequest, CommitRequest, TxId, MAX_COMMIT_REQUEST};
use dfs_common::FsError;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request};
use std::sync::Arc;

pub use dfs_common::tx::PREFIX;

/// Largest begin request read.
const MAX_BEGIN_REQUEST: usize = 64 << 10;

/// A resolved `/v1/tx/...` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Begin,
    Status(TxId),
    Stage(TxId),
    Commit(TxId),
    Abort(TxId),
    Renew(TxId),
    /// No such resource.
    NotFound,
    /// The resource exists; these methods are allowed.
    WrongMethod(&'static str),
}

/// Resolves `method` on `rest`, the path after `PREFIX`.
pub fn route(method: &Method, rest: &str) -> Route {
    let parts: Vec<&str> = rest.split('/').collect();
    let post = |r: Route| {
        if method == Method::POST {
            r
        } else {
            Route::WrongMethod("POST")
        }
    };
    match parts.as_slice() {
        ["begin"] => post(Route::Begin),
        [id] => match id.parse::<TxId>() {
            Ok(tx) if method == Method::GET => Route::Status(tx),
            Ok(_) => Route::WrongMethod("GET"),
            Err(_) => Route::NotFound,
        },
        [id, what] => {
            let Ok(tx) = id.parse::<TxId>() else {
                return Route::NotFound;
            };
            match *what {
                "blobs" if method == Method::PUT => Route::Stage(tx),
                "blobs" => Route::WrongMethod("PUT"),
                "commit" => post(Route::Commit(tx)),
                "abort" => post(Route::Abort(tx)),
                "renew" => post(Route::Renew(tx)),
                _ => Route::NotFound,
            }
        }
        _ => Route::NotFound,
    }
}

/// Handles `PREFIX...`.
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let route = route(&method, &path[PREFIX.len()..]);
    let caller = call.caller;
    let t = &svc.transactions();
    match route {
        Route::Begin => {
            let (parts, body) = req.into_parts();
            let bytes = read_limited(body, &parts.headers, MAX_BEGIN_REQUEST).await?;
            let r: BeginRequest = if bytes.is_empty() {
                BeginRequest::default()
            } else {
                codec::decode(&bytes)?
            };
            Ok(bincode_response(&tx::begin(t, caller, r).await?))
        }
        Route::Status(tx) => Ok(bincode_response(&tx::status(t, caller, tx).await?)),
        Route::Stage(tx) => {
            let (parts, body) = req.into_parts();
            let len =
                wire::header_u64(&parts.headers, CONTENT_LENGTH.as_str())?.ok_or_else(|| {
                    FsError::BadRequest("a staged blob needs a content-length".into())
                })?;
            let expected = wire::content_hash(&parts.headers)?;
            let staged = tx::stage(t, caller, tx, body, len, expected).await?;
            Ok(bincode_response(&staged))
        }
        Route::Commit(tx) => {
            let r: CommitRequest = decode_body(req, MAX_COMMIT_REQUEST).await?;
            Ok(bincode_response(&tx::commit(t, caller, tx, r).await?))
        }
        Route::Abort(tx) => Ok(bincode_response(&tx::abort(t, caller, tx).await?)),
        Route::Renew(tx) => Ok(bincode_response(&tx::renew(t, caller, tx).await?)),
        Route::NotFound => Ok(not_found(&path)),
        Route::WrongMethod(allow) => Ok(method_not_allowed(&method, &path, allow)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::POST, "begin"), Route::Begin);
        assert_eq!(route(&Method::GET, "begin"), Route::WrongMethod("POST"));
        assert_eq!(route(&Method::GET, "7"), Route::Status(7));
        assert_eq!(route(&Method::PUT, "7/blobs"), Route::Stage(7));
        assert_eq!(route(&Method::POST, "7/blobs"), Route::WrongMethod("PUT"));
        assert_eq!(route(&Method::POST, "7/commit"), Route::Commit(7));
        assert_eq!(route(&Method::POST, "7/abort"), Route::Abort(7));
        assert_eq!(route(&Method::POST, "7/renew"), Route::Renew(7));
        assert_eq!(route(&Method::POST, "x/commit"), Route::NotFound);
        assert_eq!(route(&Method::POST, "7/nope"), Route::NotFound);
        assert_eq!(route(&Method::POST, ""), Route::NotFound);
    }
}

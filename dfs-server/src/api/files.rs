//! `GET /v1/files/{ino}` (fetch: 304, 200 with the streamed contents, or 303 to the nodes
//! that hold them, each with `x-dfs-attr`) and `PUT /v1/files/{ino}` (store: the contents
//! in the body, its hash, mtime, mode, set-id and fencing in headers; answers the new
//! attributes).
//!
//! Owns: the headers and answers of those resources, and their permission checks
//! (`auth::perm`). Must not decide the order of a store or where contents come from
//! (`crate::files`).

use super::wire::{self, method_not_allowed, not_found, Answer, ReqBody};
use super::Call;
use crate::auth::perm;
use crate::blobs::BodyLen;
use crate::files::{Fetched, Source, Store};
use crate::services::{Caller, Services};
use dfs_common::cluster as cluster_proto;
use dfs_common::locks::HDR_FENCE;
use dfs_common::proto::{HDR_ATTR, HDR_HAVE_VERSION, HDR_KILL_SUID, HDR_MODE, HDR_MTIME};
use dfs_common::{codec, FsError, Ino, Timestamp};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub const PREFIX: &str = "/v1/files/";

/// Handles `GET` and `PUT` of `PREFIX{ino}`.
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let path = req.uri().path();
    let Some(ino) = path
        .strip_prefix(PREFIX)
        .and_then(|i| i.parse::<Ino>().ok())
    else {
        return Ok(not_found(path));
    };
    match *req.method() {
        Method::GET => fetch(svc, call.caller, ino, req).await,
        Method::PUT => store(svc, call.caller, ino, req).await,
        ref m => Ok(method_not_allowed(m, path, "GET, PUT")),
    }
}

/// `GET /v1/files/{ino}`.
pub async fn fetch(svc: &Arc<Services>, caller: Caller, ino: Ino, req: Request<ReqBody>) -> Answer {
    let have = wire::header_u64(req.headers(), HDR_HAVE_VERSION)?;
    // At the privacy level contents come only in this node's sealed answer.
    let privacy = req
        .headers()
        .get(dfs_common::privacy::HDR_PROTECTION)
        .is_some();
    let replica_ok = req.headers().contains_key(cluster_proto::HDR_REPLICA_OK) && !privacy;
    drop(req);
    perm::authorize_file(&svc.ns, &caller, ino, false)?;
    let files = svc.files();
    let builder = Response::builder();
    let resp = match files.fetched(caller, ino, have).await? {
        Fetched::NotModified(attr) => builder
            .status(StatusCode::NOT_MODIFIED)
            .header(HDR_ATTR, codec::to_header(&attr))
            .body(wire::empty()),
        Fetched::Data(attr) => {
            let body = match attr.blob {
                Some(id) if attr.size > 0 => match files.contents(id, attr.size, replica_ok).await?
                {
                    Source::Here(body) => body,
                    Source::Elsewhere { nodes, token } => {
                        return Ok(builder
                            .status(StatusCode::SEE_OTHER)
                            .header(HDR_ATTR, codec::to_header(&attr))
                            .header(cluster_proto::HDR_REPLICAS, nodes)
                            .header(cluster_proto::HDR_READ_TOKEN, token)
                            .body(wire::empty())
                            .expect("valid response"))
                    }
                },
                _ => wire::empty(),
            };
            crate::metrics::BLOB_BYTES_OUT.add(attr.size);
            builder
                .status(StatusCode::OK)
                .header(HDR_ATTR, codec::to_header(&attr))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, attr.size)
                .body(body)
        }
    };
    Ok(resp.expect("valid response"))
}

/// `PUT /v1/files/{ino}`.
pub async fn store(svc: &Arc<Services>, caller: Caller, ino: Ino, req: Request<ReqBody>) -> Answer {
    perm::authorize_file(&svc.ns, &caller, ino, true)?;
    let (parts, body) = req.into_parts();
    let how = store_headers(svc, &caller, ino, &parts.headers)?;
    let mut attr = svc.files().store(caller, ino, body, how).await?;
    // A writer who may not read the file is not told its contents' hash.
    perm::hide_hashes(&svc.ns, &caller, vec![&mut attr])?;
    Ok(wire::bincode_response(&attr))
}

/// What the headers of a store of `ino` by `caller` ask (a chmod among them checked).
fn store_headers(
    svc: &Services,
    caller: &Caller,
    ino: Ino,
    headers: &hyper::HeaderMap,
) -> Result<Store, FsError> {
    // Without a content-length, the body is a file sent while it was being written
    // (chunked): it may be as long as the largest file.
    let max = svc.settings.max_file_size;
    let len = match wire::header_u64(headers, CONTENT_LENGTH.as_str())? {
        Some(len) if len > max => {
            return Err(FsError::TooLarge(format!(
                "{len} bytes, largest file is {max} bytes"
            )));
        }
        Some(len) => BodyLen::Exactly(len),
        None => BodyLen::AtMost(max),
    };
    let expected = wire::content_hash(headers)?;
    let mtime = match wire::header(headers, HDR_MTIME)? {
        None => None,
        Some(v) => Some(codec::from_header::<Timestamp>(v)?),
    };
    let mode = match wire::header_u64(headers, HDR_MODE)? {
        None => None,
        Some(m) if m <= 0o777 => {
            perm::authorize_store_chmod(&svc.ns, caller, ino)?;
            Some(m as u32)
        }
        Some(m) => {
            return Err(FsError::BadRequest(format!(
                "{HDR_MODE} {m:o} has bits past 0o777"
            )))
        }
    };
    let kill_suid = match wire::header_u64(headers, HDR_KILL_SUID)? {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => {
            return Err(FsError::BadRequest(format!(
                "{HDR_KILL_SUID} is {v}, not 0 or 1"
            )))
        }
    } || perm::writes_clear_setid(caller);
    Ok(Store {
        len,
        expected,
        mtime,
        mode,
        kill_suid,
        fence: wire::header_u64(headers, HDR_FENCE)?,
    })
}

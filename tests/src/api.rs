//! The server's own API over the raw HTTP client: directory calls, path lookups and
//! fetches as an anonymous caller (no client: no promises) sees them, and the health
//! check.

use crate::http::{http, HttpResponse};
use dfs_common::codec;
use dfs_common::proto::{DirReply, DirRequest, HDR_ATTR};
use dfs_common::types::{Attr, FileKind, ROOT_INO};
use std::io;

/// One `POST /v1/dir` call: `Ok(reply)` on 200, else the response.
pub fn dir_call(addr: &str, req: &DirRequest) -> Result<DirReply, HttpResponse> {
    let body = codec::encode(req);
    let r = http(addr, "POST", "/v1/dir", &[], &body)
        .unwrap_or_else(|e| panic!("POST /v1/dir {req:?} to {addr}: {e}"));
    if r.status != 200 {
        return Err(r);
    }
    Ok(codec::decode(&r.body)
        .unwrap_or_else(|e| panic!("undecodable DirReply to {req:?}: {e}: {}", r.describe())))
}

/// Looks up a `/`-separated path from the root over HTTP; `None` if a part is missing.
pub fn lookup_path(addr: &str, path: &str) -> Option<Attr> {
    let mut ino = ROOT_INO;
    let mut attr = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        match dir_call(
            addr,
            &DirRequest::Lookup {
                parent: ino,
                name: part.as_bytes().to_vec(),
            },
        ) {
            Ok(DirReply::Attr(a)) => {
                ino = a.ino;
                attr = Some(a);
            }
            Ok(other) => panic!("Lookup answered {other:?}"),
            Err(r) if r.status == 404 => return None,
            Err(r) => panic!("Lookup {part:?} failed: {}", r.describe()),
        }
    }
    attr
}

/// `GET /v1/files/{ino}`.
pub fn fetch(addr: &str, ino: u64) -> io::Result<HttpResponse> {
    http(addr, "GET", &format!("/v1/files/{ino}"), &[], b"")
}

/// The contents of the regular file at `path` as the server holds them, or `None` if it
/// does not exist (or the server does not answer).
pub fn fetch_path(addr: &str, path: &str) -> Option<Vec<u8>> {
    let attr = lookup_path(addr, path)?;
    assert_eq!(attr.kind, FileKind::File, "{path} is not a regular file");
    let r = fetch(addr, attr.ino).ok()?;
    assert_eq!(r.status, 200, "fetch {path}: {}", r.describe());
    Some(r.body)
}

/// Decodes the `x-dfs-attr` header of a fetch answer.
pub fn attr_of(r: &HttpResponse) -> Option<Attr> {
    codec::from_header(r.header(HDR_ATTR)?).ok()
}

/// Is the server at `addr` answering `GET /v1/health` with 200?
pub fn healthy(addr: &str) -> bool {
    matches!(http(addr, "GET", "/v1/health", &[], b""), Ok(r) if r.status == 200)
}

//! `POST /v1/locks/{acquire,acquire-many,release,release-many,test,renew,list}`: decodes the bincode
//! request of `dfs_common::locks`, runs it on the lock service, encodes the answer.
//!
//! Owns: the mapping of lock resources to `LockService` calls. Must not decide anything
//! about locks (that is `super`), nor route (that is `crate::http::router`).

use crate::http::wire::ReqBody;
use crate::http::wire::{bincode_response, read_limited, ResBody};
use crate::services::{Caller, Services};
use dfs_common::codec;
use dfs_common::locks::{ListRequest, LockRequest, ReleaseRequest, RenewRequest};
use dfs_common::FsError;
use hyper::{Request, Response};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Path prefix of the lock resources.
pub const PREFIX: &str = "/v1/locks/";

/// Largest lock request body read (acquire-many and renew carry lists).
pub const MAX_LOCK_REQUEST: usize = 16 << 20;

/// Whether `name` (the path after `PREFIX`) is a lock resource.
pub fn is_resource(name: &str) -> bool {
    matches!(
        name,
        "acquire" | "acquire-many" | "release" | "release-many" | "test" | "renew" | "list"
    )
}

async fn body<T: DeserializeOwned>(req: Request<ReqBody>) -> Result<T, FsError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, &parts.headers, MAX_LOCK_REQUEST).await?;
    codec::decode(&bytes)
}

/// Whether `caller` may learn that `ino` is locked, and by whom: in a realm, if it may
/// read the file (`auth::perm`).
fn visible(svc: &Arc<Services>, caller: &Caller, ino: dfs_common::Ino) -> bool {
    crate::auth::perm::authorize_file(svc, caller, ino, false).is_ok()
}

/// Handles `POST {PREFIX}{name}`; `name` must satisfy `is_resource`.
/// In a realm, locking a file takes the right to use it: read permission for advisory
/// locks (flock, fcntl, `dfs lock`), write permission for the writers' `Open` lock, and
/// an authenticated user — so nobody can make others' writers wait on files they may not
/// touch. Releases and renewals concern only the caller's own locks and need no check.
async fn authorize(svc: &Arc<Services>, caller: &Caller, r: &LockRequest) -> Result<(), FsError> {
    if !caller.enforce || caller.admin {
        return Ok(());
    }
    if caller.uid == crate::auth::NOBODY {
        return Err(FsError::PermissionDenied(
            "anonymous callers may not take locks (dfs login first)".into(),
        ));
    }
    let write = r.class == dfs_common::locks::LockClass::Open;
    crate::auth::perm::authorize_file(svc, caller, r.ino, write)
}

pub async fn handle(
    svc: &Arc<Services>,
    caller: Caller,
    name: &str,
    req: Request<ReqBody>,
) -> Result<Response<ResBody>, FsError> {
    let locks = &svc.locks;
    let client = caller.client;
    match name {
        "acquire" => {
            let r: LockRequest = body(req).await?;
            authorize(svc, &caller, &r).await?;
            Ok(bincode_response(&locks.acquire(client, r).await?))
        }
        "acquire-many" => {
            let r: Vec<LockRequest> = body(req).await?;
            for one in &r {
                authorize(svc, &caller, one).await?;
            }
            Ok(bincode_response(&locks.acquire_many(client, r).await?))
        }
        "release" => {
            let r: ReleaseRequest = body(req).await?;
            Ok(bincode_response(&locks.release(client, r).await?))
        }
        "release-many" => {
            let r: Vec<ReleaseRequest> = body(req).await?;
            Ok(bincode_response(&locks.release_many(client, r).await?))
        }
        "test" => {
            let r: LockRequest = body(req).await?;
            authorize(svc, &caller, &r).await?;
            Ok(bincode_response(&locks.test(client, r).await?))
        }
        "renew" => {
            let r: RenewRequest = body(req).await?;
            Ok(bincode_response(&locks.renew(client, r).await?))
        }
        "list" => {
            let r: ListRequest = body(req).await?;
            let mut held = locks.list(r.ino, r.after, r.limit).await?;
            // Another client's locks show only on files the caller may see (its own always).
            held.retain(|l| l.client == client || visible(svc, &caller, l.ino));
            Ok(bincode_response(&held))
        }
        other => Err(FsError::Invalid(format!("no lock resource {other:?}"))),
    }
}

//! `POST /v1/locks/{acquire,acquire-many,release,release-many,test,renew,list}`: decodes the bincode
//! request of `dfs_common::locks`, checks the caller may lock the file (`auth::perm`),
//! runs it on the lock service, encodes the answer.
//!
//! Owns: the mapping of lock resources to `LockService` calls, who may lock what. Must not
//! decide anything about locks (that is `crate::lock`).

use super::wire::{bincode_response, decode_body, method_not_allowed, not_found, Answer, ReqBody};
use super::Call;
use crate::auth::perm;
use crate::namespace::Namespace;
use crate::services::{Caller, Services};
use dfs_common::locks::{ListRequest, LockRequest, ReleaseRequest, RenewRequest};
use dfs_common::FsError;
use hyper::{Method, Request};
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

/// Whether `caller` may learn that `ino` is locked, and by whom: in a realm, if it may
/// read the file (`auth::perm`).
fn visible(ns: &Namespace, caller: &Caller, ino: dfs_common::Ino) -> bool {
    perm::authorize_file(ns, caller, ino, false).is_ok()
}

/// In a realm, locking a file takes the right to use it: read permission for advisory
/// locks (flock, fcntl, `dfs lock`), write permission for the writers' `Open` lock, and
/// an authenticated user — so nobody can make others' writers wait on files they may not
/// touch. Releases and renewals concern only the caller's own locks and need no check.
fn authorize(ns: &Namespace, caller: &Caller, r: &LockRequest) -> Result<(), FsError> {
    if !caller.enforce || caller.admin {
        return Ok(());
    }
    if caller.uid == crate::auth::NOBODY {
        return Err(FsError::PermissionDenied(
            "anonymous callers may not take locks (dfs login first)".into(),
        ));
    }
    let write = r.class == dfs_common::locks::LockClass::Open;
    perm::authorize_file(ns, caller, r.ino, write)
}

/// Handles `POST {PREFIX}{name}`.
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let path = req.uri().path().to_string();
    let name = &path[PREFIX.len()..];
    if !is_resource(name) {
        return Ok(not_found(&path));
    }
    if req.method() != Method::POST {
        return Ok(method_not_allowed(req.method(), &path, "POST"));
    }
    let (locks, ns) = (&svc.locks, &svc.ns);
    let caller = call.caller;
    let client = caller.client;
    match name {
        "acquire" => {
            let r: LockRequest = decode_body(req, MAX_LOCK_REQUEST).await?;
            authorize(ns, &caller, &r)?;
            Ok(bincode_response(&locks.acquire(client, r).await?))
        }
        "acquire-many" => {
            let r: Vec<LockRequest> = decode_body(req, MAX_LOCK_REQUEST).await?;
            for one in &r {
                authorize(ns, &caller, one)?;
            }
            Ok(bincode_response(&locks.acquire_many(client, r).await?))
        }
        "release" => {
            let r: ReleaseRequest = decode_body(req, MAX_LOCK_REQUEST).await?;
            Ok(bincode_response(&locks.release(client, r).await?))
        }
        "release-many" => {
            let r: Vec<ReleaseRequest> = decode_body(req, MAX_LOCK_REQUEST).await?;
            Ok(bincode_response(&locks.release_many(client, r).await?))
        }
        "test" => {
            let r: LockRequest = decode_body(req, MAX_LOCK_REQUEST).await?;
            authorize(ns, &caller, &r)?;
            Ok(bincode_response(&locks.test(client, r).await?))
        }
        "renew" => {
            let r: RenewRequest = decode_body(req, MAX_LOCK_REQUEST).await?;
            Ok(bincode_response(&locks.renew(client, r).await?))
        }
        "list" => {
            let r: ListRequest = decode_body(req, MAX_LOCK_REQUEST).await?;
            let mut held = locks.list(r.ino, r.after, r.limit).await?;
            // Another client's locks show only on files the caller may see (its own always).
            held.retain(|l| l.client == client || visible(ns, &caller, l.ino));
            Ok(bincode_response(&held))
        }
        other => Err(FsError::Invalid(format!("no lock resource {other:?}"))),
    }
}

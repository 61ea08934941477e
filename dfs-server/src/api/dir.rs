//! `POST /v1/dir`: decodes a `DirRequest`, has it checked (`auth::perm`), runs it against
//! the directory service, and answers a `DirReply` (content hashes hidden from callers who
//! may not read the file), registering promises for what the caller was shown and breaking
//! other clients' promises on what changed (through `Coherence::observe` / `mutate`).
//!
//! Owns: the mapping of wire requests to namespace reads and commands. Must not contain
//! POSIX or permission rules (namespace, `auth::perm`) or blob handling (files).

use super::wire::{bincode_response, method_not_allowed, read_limited, Answer, ReqBody};
use super::Call;
use crate::auth::perm;
use crate::namespace::NsCommand;
use crate::services::{Caller, Services};
use dfs_common::locks::{LockReply, LockRequest};
use dfs_common::proto::{CreatedLock, DirReply, DirRequest, StatFs, MAX_DIR_REQUEST};
use dfs_common::{codec, Attr, FsError, Timestamp};
use hyper::{Method, Request};
use std::sync::Arc;

/// Handles `POST /v1/dir`.
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    if req.method() != Method::POST {
        return Ok(method_not_allowed(req.method(), req.uri().path(), "POST"));
    }
    let caller = call.caller;
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, &parts.headers, MAX_DIR_REQUEST).await?;
    let mut request: DirRequest = codec::decode(&bytes)?;
    let kind = request.kind_index();
    crate::metrics::DIR_REQUESTS.inc(kind);
    tracing::debug!(
        op = dfs_common::proto::DIR_REQUEST_KINDS[kind],
        "directory request"
    );
    crate::auth::anonymous::check_dir(&parts.extensions, &request)?;
    perm::authorize_dir(&svc.ns, &caller, &mut request)?;
    let mut reply = dispatch(svc, caller, request).await?;
    perm::hide_hashes(&svc.ns, &caller, attrs_in(&mut reply))?;
    Ok(bincode_response(&reply))
}

/// Every attribute set in `reply`.
fn attrs_in(reply: &mut DirReply) -> Vec<&mut Attr> {
    match reply {
        DirReply::Attr(a) | DirReply::Removed { parent: a } => vec![a],
        DirReply::Created { attr, parent, .. } | DirReply::Made { attr, parent } => {
            vec![attr, parent]
        }
        DirReply::Entries { entries, .. } => entries.iter_mut().map(|(_, a)| a).collect(),
        DirReply::Validated { current } => {
            current.iter_mut().filter_map(|(_, a)| a.as_mut()).collect()
        }
        DirReply::Empty | DirReply::Target(_) | DirReply::StatFs(_) | DirReply::Xattrs(_) => {
            Vec::new()
        }
    }
}

/// Runs one directory request.
pub async fn dispatch(
    svc: &Arc<Services>,
    caller: Caller,
    request: DirRequest,
) -> Result<DirReply, FsError> {
    let now = Timestamp::now();
    match request {
        DirRequest::Lookup { parent, name } => {
            svc.coherence
                .observe_now(caller, move |ns| {
                    let attr = ns.lookup(parent, &name)?;
                    let ino = attr.ino;
                    Ok((DirReply::Attr(attr), vec![parent, ino]))
                })
                .await
        }
        DirRequest::GetAttr { ino } => {
            svc.coherence
                .observe_now(caller, move |ns| {
                    Ok((DirReply::Attr(ns.getattr(ino)?), vec![ino]))
                })
                .await
        }
        DirRequest::ReadDir { dir, after, limit } => {
            svc.coherence
                .observe(caller, move |ns, _| {
                    let (entries, more) = ns.readdir(dir, after.as_deref(), limit)?;
                    Ok((DirReply::Entries { entries, more }, vec![dir]))
                })
                .await
        }
        DirRequest::ReadLink { ino } => {
            let target = svc.ns.readlink(ino)?;
            Ok(DirReply::Target(target))
        }
        DirRequest::Validate { held } => {
            svc.coherence
                .observe(caller, move |ns, _| {
                    let (mut current, mut alive) = ns.validate(&held)?;
                    // An inode the caller cannot reach is, to it, gone.
                    let inos: Vec<_> = current.iter().map(|(ino, _)| *ino).collect();
                    let reached = perm::reachable(ns, &caller, &inos)?;
                    for ((ino, attr), reached) in current.iter_mut().zip(reached) {
                        if reached != Some(true) && attr.take().is_some() {
                            alive.retain(|a| a != ino);
                        }
                    }
                    Ok((DirReply::Validated { current }, alive))
                })
                .await
        }
        DirRequest::StatFs => {
            let (files, (total_bytes, free_bytes)) = svc
                .coherence
                .blocking(|ns, blobs| Ok((ns.inode_count()?, blobs.space()?)))
                .await?;
            Ok(DirReply::StatFs(StatFs {
                total_bytes,
                free_bytes,
                files,
            }))
        }
        DirRequest::SetAttr { ino, change } => {
            let attr = svc.files().setattr(caller, ino, change).await?;
            Ok(DirReply::Attr(attr))
        }
        DirRequest::Create {
            parent,
            name,
            mode,
            umask,
            uid,
            gid,
            exclusive,
        } => {
            let cmd = NsCommand::Create {
                parent,
                name,
                mode,
                umask,
                uid,
                gid,
                exclusive,
                now,
            };
            attr_of(
                svc.coherence
                    .mutate(caller, cmd, vec![parent], None)
                    .await?,
            )
        }
        DirRequest::CreateOpen {
            parent,
            name,
            mode,
            umask,
            uid,
            gid,
            exclusive,
            label,
            store_at_close,
        } => {
            let cmd = NsCommand::Create {
                parent,
                name,
                mode,
                umask,
                uid,
                gid,
                exclusive,
                now,
            };
            let (out, seq) = svc
                .coherence
                .mutate_unsynced(caller, cmd, vec![parent])
                .await?;
            let created = out
                .attr
                .ok_or_else(|| FsError::Io("create returned no attributes".into()))?;
            let made = !out.changed_entries.is_empty();
            // An existing file's writers' turn only for one who may write it.
            let lock = if caller.client == 0
                || (!made && !perm::may_write(&svc.ns, &caller, created.ino)?)
            {
                None
            } else {
                let req = LockRequest::writers_turn(created.ino, label);
                match svc.locks.acquire(caller.client, req).await {
                    Ok(LockReply::Granted { token, lease_ms }) => {
                        Some(CreatedLock { token, lease_ms })
                    }
                    Ok(LockReply::Conflict { .. }) => None,
                    Err(e) => {
                        // The create stands: make it durable before reporting the error.
                        svc.coherence.sync_through(seq).await?;
                        return Err(e);
                    }
                }
            };
            // The caller's store at close makes a new file durable with its own commit.
            let durable = !(store_at_close && made && lock.is_some());
            if durable {
                svc.coherence.sync_through(seq).await?;
            }
            // Read after the grant: no store can land between these attributes and the lock.
            let (attr, parent) = (svc.ns.getattr(created.ino)?, svc.ns.getattr(parent)?);
            Ok(DirReply::Created {
                attr,
                lock,
                durable,
                parent,
            })
        }
        DirRequest::Mkdir {
            parent,
            name,
            mode,
            umask,
            uid,
            gid,
        } => {
            let cmd = NsCommand::Mkdir {
                parent,
                name,
                mode,
                umask,
                uid,
                gid,
                now,
            };
            let out = svc
                .coherence
                .mutate(caller, cmd, vec![parent], None)
                .await?;
            let attr = out
                .attr
                .ok_or_else(|| FsError::Io("mkdir returned no attributes".into()))?;
            let parent = svc.ns.getattr(parent)?;
            Ok(DirReply::Made { attr, parent })
        }
        DirRequest::Symlink {
            parent,
            name,
            target,
            uid,
            gid,
        } => {
            let cmd = NsCommand::Symlink {
                parent,
                name,
                target,
                uid,
                gid,
                now,
            };
            attr_of(
                svc.coherence
                    .mutate(caller, cmd, vec![parent], None)
                    .await?,
            )
        }
        DirRequest::Link {
            ino,
            new_parent,
            new_name,
        } => {
            let cmd = NsCommand::Link {
                ino,
                new_parent,
                new_name,
                now,
            };
            attr_of(
                svc.coherence
                    .mutate(caller, cmd, vec![new_parent], None)
                    .await?,
            )
        }
        DirRequest::Unlink { parent, name } => {
            let cmd = NsCommand::Unlink { parent, name, now };
            svc.coherence
                .mutate(caller, cmd, vec![parent], None)
                .await?;
            let parent = svc.ns.getattr(parent)?;
            Ok(DirReply::Removed { parent })
        }
        DirRequest::Rmdir { parent, name } => {
            let cmd = NsCommand::Rmdir { parent, name, now };
            svc.coherence
                .mutate(caller, cmd, vec![parent], None)
                .await?;
            let parent = svc.ns.getattr(parent)?;
            Ok(DirReply::Removed { parent })
        }
        DirRequest::Mknod {
            parent,
            name,
            kind,
            mode,
            umask,
            rdev,
            uid,
            gid,
        } => {
            let cmd = NsCommand::Mknod {
                parent,
                name,
                kind,
                mode,
                umask,
                rdev,
                uid,
                gid,
                now,
            };
            let out = svc
                .coherence
                .mutate(caller, cmd, vec![parent], None)
                .await?;
            let attr = out
                .attr
                .ok_or_else(|| FsError::Io("mknod returned no attributes".into()))?;
            let parent = svc.ns.getattr(parent)?;
            Ok(DirReply::Made { attr, parent })
        }
        DirRequest::Xattrs { ino } => {
            svc.coherence
                .observe_now(caller, move |ns| {
                    let (attr, acl) = ns.attr_and_acl(ino)?;
                    let all = ns.xattrs(ino)?;
                    let shown = perm::readable_xattrs(&caller, &attr, acl.as_ref(), all);
                    Ok((DirReply::Xattrs(shown), vec![ino]))
                })
                .await
        }
        DirRequest::SetXattr {
            ino,
            name,
            value,
            how,
        } => {
            let drop_sgid = perm::xattr_set_drops_sgid(&svc.ns, &caller, ino, &name)?;
            let cmd = NsCommand::SetXattr {
                ino,
                name,
                value,
                how,
                drop_sgid,
                now,
            };
            attr_of(svc.coherence.mutate(caller, cmd, Vec::new(), None).await?)
        }
        DirRequest::RemoveXattr { ino, name } => {
            let cmd = NsCommand::RemoveXattr { ino, name, now };
            attr_of(svc.coherence.mutate(caller, cmd, Vec::new(), None).await?)
        }
        DirRequest::Rename {
            parent,
            name,
            new_parent,
            new_name,
            flags,
        } => {
            let cmd = NsCommand::Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags,
                now,
            };
            svc.coherence.mutate(caller, cmd, Vec::new(), None).await?;
            Ok(DirReply::Empty)
        }
    }
}

fn attr_of(out: crate::namespace::NsOutcome) -> Result<DirReply, FsError> {
    out.attr
        .map(DirReply::Attr)
        .ok_or_else(|| FsError::Io("command returned no attributes".into()))
}

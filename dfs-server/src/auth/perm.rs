//! Permission rules the server enforces itself (so a modified client gains nothing): owner,
//! group and mode bits; create, link, unlink, rmdir and rename need write and search
//! permission on the directory (and the sticky bit is honoured); chmod and explicit times
//! only by the owner; chown only by an admin; chgrp by the owner to one of their groups.
//! Admin principals pass every check, as root does. Callers of an open cell (no realm) are
//! not checked at all.
//!
//! The checks read the attributes just before the command runs; a chmod racing with a
//! request may let that one request pass on the old mode, as with NFS.

use crate::services::{Caller, Services};
use dfs_common::auth::Identity;
use dfs_common::proto::{AttrChange, DirRequest};
use dfs_common::types::SetTime;
use dfs_common::{Attr, FsError, Ino};
use std::sync::Arc;

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

const NO_GROUP: u32 = u32::MAX;

impl Caller {
    /// A caller of an open cell: not checked.
    pub fn open(client: u64) -> Caller {
        Caller {
            client,
            uid: 0,
            gid: 0,
            groups: [NO_GROUP; 8],
            admin: true,
            enforce: false,
        }
    }

    /// A caller without a ticket in a realm: `nobody`, who gets what others get.
    pub fn anonymous(client: u64) -> Caller {
        Caller {
            client,
            uid: super::NOBODY,
            gid: super::NOBODY,
            groups: [NO_GROUP; 8],
            admin: false,
            enforce: true,
        }
    }

    pub fn of(client: u64, id: &Identity) -> Caller {
        let mut groups = [NO_GROUP; 8];
        for (slot, g) in groups.iter_mut().zip(id.groups.iter()) {
            *slot = *g;
        }
        Caller {
            client,
            uid: id.uid,
            gid: id.gid,
            groups,
            admin: id.admin,
            enforce: true,
        }
    }

    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || (gid != NO_GROUP && self.groups.contains(&gid))
    }
}

/// Whether `caller` has all of `want` (a set of `R`, `W`, `X`) on `attr`.
pub fn may(caller: &Caller, attr: &Attr, want: u32) -> bool {
    if !caller.enforce || caller.admin {
        return true;
    }
    let bits = if caller.uid == attr.uid {
        (attr.mode >> 6) & 7
    } else if caller.in_group(attr.gid) {
        (attr.mode >> 3) & 7
    } else {
        attr.mode & 7
    };
    bits & want == want
}

fn denied(caller: &Caller, what: &str, ino: Ino) -> FsError {
    FsError::PermissionDenied(format!("uid {} may not {what} inode {ino}", caller.uid))
}

fn require(caller: &Caller, attr: &Attr, want: u32, what: &str) -> Result<(), FsError> {
    if may(caller, attr, want) {
        Ok(())
    } else {
        Err(denied(caller, what, attr.ino))
    }
}

fn sticky_ok(caller: &Caller, dir: &Attr, victim: &Attr) -> bool {
    dir.mode & 0o1000 == 0 || caller.admin || caller.uid == dir.uid || caller.uid == victim.uid
}

fn getattr(svc: &Arc<Services>, ino: Ino) -> Result<Attr, FsError> {
    svc.read_now(move |ns| ns.getattr(ino))
}

fn lookup(svc: &Arc<Services>, parent: Ino, name: Vec<u8>) -> Result<Option<Attr>, FsError> {
    match svc.read_now(move |ns| ns.lookup(parent, &name)) {
        Ok(a) => Ok(Some(a)),
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn need(
    svc: &Arc<Services>,
    caller: &Caller,
    ino: Ino,
    want: u32,
    what: &str,
) -> Result<Attr, FsError> {
    let a = getattr(svc, ino)?;
    require(caller, &a, want, what)?;
    Ok(a)
}

fn removable(
    svc: &Arc<Services>,
    caller: &Caller,
    parent: Ino,
    name: &[u8],
) -> Result<(), FsError> {
    let dir = need(svc, caller, parent, W | X, "remove an entry of")?;
    if let Some(victim) = lookup(svc, parent, name.to_vec())? {
        if !sticky_ok(caller, &dir, &victim) {
            return Err(denied(caller, "remove (sticky directory)", victim.ino));
        }
    }
    Ok(())
}

/// Checks a directory request, and makes new inodes belong to the caller.
pub fn authorize_dir(
    svc: &Arc<Services>,
    caller: &Caller,
    req: &mut DirRequest,
) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    match req {
        // Not served yet (see http::dir).
        DirRequest::Mknod { .. }
        | DirRequest::Xattrs { .. }
        | DirRequest::SetXattr { .. }
        | DirRequest::RemoveXattr { .. } => Ok(()),
        DirRequest::GetAttr { .. }
        | DirRequest::ReadLink { .. }
        | DirRequest::Validate { .. }
        | DirRequest::StatFs => Ok(()),
        DirRequest::Lookup { parent, .. } => need(svc, caller, *parent, X, "search").map(drop),
        DirRequest::ReadDir { dir, .. } => need(svc, caller, *dir, R, "list").map(drop),
        DirRequest::Create {
            parent, uid, gid, ..
        }
        | DirRequest::CreateOpen {
            parent, uid, gid, ..
        }
        | DirRequest::Mkdir {
            parent, uid, gid, ..
        }
        | DirRequest::Symlink {
            parent, uid, gid, ..
        } => {
            need(svc, caller, *parent, W | X, "create in")?;
            *uid = caller.uid;
            *gid = caller.gid;
            Ok(())
        }
        DirRequest::Link { new_parent, .. } => {
            need(svc, caller, *new_parent, W | X, "link into").map(drop)
        }
        DirRequest::Unlink { parent, name } | DirRequest::Rmdir { parent, name } => {
            removable(svc, caller, *parent, name)
        }
        DirRequest::Rename {
            parent,
            name,
            new_parent,
            new_name,
            ..
        } => {
            removable(svc, caller, *parent, name)?;
            removable(svc, caller, *new_parent, new_name)
        }
        DirRequest::SetAttr { ino, change } => {
            let AttrChange {
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
                defer_sync: _,
                kill_suid: _,
            } = change;
            let a = getattr(svc, *ino)?;
            let owner = caller.admin || caller.uid == a.uid;
            if uid.is_some_and(|u| u != a.uid) && !caller.admin {
                return Err(FsError::NotPermitted(
                    "only an admin may change a file's owner".into(),
                ));
            }
            if let Some(g) = *gid {
                if g != a.gid && !caller.admin && !(owner && caller.in_group(g)) {
                    return Err(FsError::NotPermitted(format!(
                        "uid {} may not give inode {} to group {g}",
                        caller.uid, a.ino
                    )));
                }
            }
            if mode.is_some() {
                owner_chmod(caller, &a)?;
            }
            if size.is_some() {
                require(caller, &a, W, "truncate")?;
            }
            let explicit =
                matches!(atime, Some(SetTime::At(_))) || matches!(mtime, Some(SetTime::At(_)));
            if explicit && !owner {
                return Err(FsError::NotPermitted(format!(
                    "only the owner may set the times of inode {}",
                    a.ino
                )));
            }
            if (atime.is_some() || mtime.is_some()) && !owner {
                require(caller, &a, W, "touch")?;
            }
            Ok(())
        }
    }
}

fn owner_chmod(caller: &Caller, a: &Attr) -> Result<(), FsError> {
    if caller.admin || caller.uid == a.uid {
        return Ok(());
    }
    Err(FsError::NotPermitted(format!(
        "only the owner may chmod inode {}",
        a.ino
    )))
}

/// Checks a chmod that comes with a store of `ino` (`HDR_MODE`): as a setattr's.
pub fn authorize_store_chmod(
    svc: &Arc<Services>,
    caller: &Caller,
    ino: Ino,
) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    owner_chmod(caller, &getattr(svc, ino)?)
}

/// Checks a fetch (`write == false`) or a store of `ino`.
pub fn authorize_file(
    svc: &Arc<Services>,
    caller: &Caller,
    ino: Ino,
    write: bool,
) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    if write {
        need(svc, caller, ino, W, "write").map(drop)
    } else {
        need(svc, caller, ino, R, "read").map(drop)
    }
}

//! Permission rules the server enforces itself (so a modified client gains nothing): owner,
//! group and mode bits, or the access ACL when the inode has one (`dfs_common::acl`);
//! create, mknod, link, unlink, rmdir and rename need write and search permission on the
//! directory (and the sticky bit is honoured); device nodes only by an admin; chmod and
//! explicit times only by the owner; chown only by an admin; chgrp by the owner to one of
//! their groups; a chmod or create by someone outside the file's group drops S_ISGID.
//! Extended attributes: `user.*` need read (to be seen) and write permission (to be
//! changed; on a sticky directory only its owner), `trusted.*` and `security.capability`
//! are for admins (others do not see `trusted.*`), other `security.*` need write
//! permission, ACLs are set by the owner. A store or truncate by a non-admin clears the
//! set-id bits. Admin principals pass every check, as root does. Callers of an open cell
//! (no realm) are not checked at all.
//!
//! The checks read the attributes just before the command runs; a chmod racing with a
//! request may let that one request pass on the old mode, as with NFS.

use crate::namespace::{xattr_class, XattrClass, Xattrs};
use crate::services::{Caller, Services};
use dfs_common::acl::Acl;
use dfs_common::auth::Identity;
use dfs_common::proto::{AttrChange, DirRequest};
use dfs_common::types::SetTime;
use dfs_common::{Attr, FileKind, FsError, Ino};
use std::sync::Arc;

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

const NO_GROUP: u32 = u32::MAX;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IXGRP: u32 = 0o010;

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

/// What a permission check looks at: an inode's attributes and its access ACL.
pub struct Target {
    pub attr: Attr,
    pub acl: Option<Acl>,
}

/// Whether `caller` has all of `want` (a set of `R`, `W`, `X`) on an inode with `attr`
/// and access ACL `acl`.
pub fn may(caller: &Caller, attr: &Attr, acl: Option<&Acl>, want: u32) -> bool {
    if !caller.enforce || caller.admin {
        return true;
    }
    if let Some(acl) = acl {
        return acl.permits(caller.uid, |g| caller.in_group(g), attr.uid, attr.gid, want);
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

/// Whether a store or truncate by `caller` clears the file's set-id bits whatever the
/// writer says: in a realm, for everyone but admins (the server cannot know the
/// writer's CAP_FSETID, only its principal).
pub fn writes_clear_setid(caller: &Caller) -> bool {
    caller.enforce && !caller.admin
}

/// The extended attributes `all` of an inode (`attr`, `acl`) that `caller` may read:
/// everything in an open cell or for an admin; others do not see `trusted.*` (Linux
/// hides them from the unprivileged), nor `user.*` without read permission (reading
/// one needs it).
pub fn readable_xattrs(caller: &Caller, attr: &Attr, acl: Option<&Acl>, all: Xattrs) -> Xattrs {
    if !caller.enforce || caller.admin {
        return all;
    }
    let may_read = may(caller, attr, acl, R);
    all.into_iter()
        .filter(|(name, _)| match xattr_class(name) {
            Ok(XattrClass::Trusted) => false,
            Ok(XattrClass::User) => may_read,
            _ => true,
        })
        .collect()
}

fn denied(caller: &Caller, what: &str, ino: Ino) -> FsError {
    FsError::PermissionDenied(format!("uid {} may not {what} inode {ino}", caller.uid))
}

fn require(caller: &Caller, t: &Target, want: u32, what: &str) -> Result<(), FsError> {
    if may(caller, &t.attr, t.acl.as_ref(), want) {
        Ok(())
    } else {
        Err(denied(caller, what, t.attr.ino))
    }
}

fn sticky_ok(caller: &Caller, dir: &Attr, victim: &Attr) -> bool {
    dir.mode & 0o1000 == 0 || caller.admin || caller.uid == dir.uid || caller.uid == victim.uid
}

fn getattr(svc: &Arc<Services>, ino: Ino) -> Result<Attr, FsError> {
    svc.read_now(move |ns| ns.getattr(ino))
}

fn target(svc: &Arc<Services>, ino: Ino) -> Result<Target, FsError> {
    let (attr, acl) = svc.read_now(move |ns| ns.attr_and_acl(ino))?;
    Ok(Target { attr, acl })
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
) -> Result<Target, FsError> {
    let t = target(svc, ino)?;
    require(caller, &t, want, what)?;
    Ok(t)
}

fn removable(
    svc: &Arc<Services>,
    caller: &Caller,
    parent: Ino,
    name: &[u8],
) -> Result<(), FsError> {
    let dir = need(svc, caller, parent, W | X, "remove an entry of")?;
    if let Some(victim) = lookup(svc, parent, name.to_vec())? {
        if !sticky_ok(caller, &dir.attr, &victim) {
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
        DirRequest::GetAttr { .. }
        | DirRequest::ReadLink { .. }
        | DirRequest::Validate { .. }
        | DirRequest::Xattrs { .. }
        | DirRequest::StatFs => Ok(()),
        DirRequest::Lookup { parent, .. } => need(svc, caller, *parent, X, "search").map(drop),
        DirRequest::ReadDir { dir, .. } => need(svc, caller, *dir, R, "list").map(drop),
        DirRequest::Create {
            parent,
            mode,
            uid,
            gid,
            ..
        }
        | DirRequest::CreateOpen {
            parent,
            mode,
            uid,
            gid,
            ..
        } => {
            let dir = creatable(svc, caller, *parent, uid, gid)?;
            *mode = new_file_mode(caller, &dir.attr, *mode);
            Ok(())
        }
        DirRequest::Mkdir {
            parent, uid, gid, ..
        }
        | DirRequest::Symlink {
            parent, uid, gid, ..
        } => creatable(svc, caller, *parent, uid, gid).map(drop),
        DirRequest::Mknod {
            parent,
            kind,
            mode,
            uid,
            gid,
            ..
        } => {
            let dir = creatable(svc, caller, *parent, uid, gid)?;
            if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) && !caller.admin {
                return Err(FsError::NotPermitted(format!(
                    "uid {} may not make device nodes (admins only)",
                    caller.uid
                )));
            }
            *mode = new_file_mode(caller, &dir.attr, *mode);
            Ok(())
        }
        DirRequest::SetXattr { ino, name, .. } | DirRequest::RemoveXattr { ino, name } => {
            authorize_xattr_change(svc, caller, *ino, name)
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
            let t = target(svc, *ino)?;
            let a = &t.attr;
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
            if let Some(m) = mode.as_mut() {
                owner_chmod(caller, a)?;
                // Linux's setattr_prepare: S_ISGID only for members of the file's group.
                if !caller.admin && !caller.in_group(gid.unwrap_or(a.gid)) {
                    *m &= !S_ISGID;
                }
            }
            if size.is_some() {
                require(caller, &t, W, "truncate")?;
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
                require(caller, &t, W, "touch")?;
            }
            Ok(())
        }
    }
}

/// A create in a directory needs write and search permission on it; the new inode is the
/// caller's (its group may still come from a set-gid directory, see the namespace).
fn creatable(
    svc: &Arc<Services>,
    caller: &Caller,
    parent: Ino,
    uid: &mut u32,
    gid: &mut u32,
) -> Result<Target, FsError> {
    let dir = need(svc, caller, parent, W | X, "create in")?;
    *uid = caller.uid;
    *gid = caller.gid;
    Ok(dir)
}

/// The mode argument of a new non-directory in `dir`, without S_ISGID when it would give
/// the file a group the caller is not in (Linux's `mode_strip_sgid`): in a set-gid
/// directory the file takes the directory's group.
fn new_file_mode(caller: &Caller, dir: &Attr, mode: u32) -> u32 {
    let exec_sgid = S_ISGID | S_IXGRP;
    if dir.mode & S_ISGID == 0 || mode & exec_sgid != exec_sgid {
        return mode;
    }
    if caller.admin || caller.in_group(dir.gid) {
        return mode;
    }
    mode & !S_ISGID
}

/// Checks a set or remove of extended attribute `name` of `ino`.
fn authorize_xattr_change(
    svc: &Arc<Services>,
    caller: &Caller,
    ino: Ino,
    name: &[u8],
) -> Result<(), FsError> {
    let class = xattr_class(name)?;
    let t = target(svc, ino)?;
    let owner = caller.admin || caller.uid == t.attr.uid;
    let admins_only = || {
        if caller.admin {
            Ok(())
        } else {
            Err(FsError::NotPermitted(format!(
                "uid {} may not change trusted.* or security.capability attributes (admins only)",
                caller.uid
            )))
        }
    };
    match class {
        XattrClass::User => match t.attr.kind {
            // The namespace refuses user.* on other kinds (EPERM, before any permission).
            FileKind::File | FileKind::Dir => {
                let sticky_dir = t.attr.kind == FileKind::Dir && t.attr.mode & S_ISVTX != 0;
                if sticky_dir && !owner {
                    return Err(FsError::NotPermitted(format!(
                        "only the owner may change user.* attributes of sticky directory {ino}"
                    )));
                }
                require(caller, &t, W, "change extended attributes of")
            }
            _ => Ok(()),
        },
        XattrClass::Trusted | XattrClass::SecurityCapability => admins_only(),
        XattrClass::Security => require(caller, &t, W, "change security attributes of"),
        XattrClass::AclAccess | XattrClass::AclDefault => {
            if owner {
                Ok(())
            } else {
                Err(FsError::NotPermitted(format!(
                    "only the owner may set the ACLs of inode {ino}"
                )))
            }
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

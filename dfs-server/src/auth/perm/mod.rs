//! Permission checks of requests, which the server enforces itself (so a modified client
//! gains nothing): owner, group and mode bits, or the access ACL when the inode has one
//! (`dfs_common::acl`). Every inode a request names by number must be reachable by the
//! caller through directories it may search (`reach`), and no answer carries a content hash
//! to a caller who may not read the file. Create, mknod, link, unlink, rmdir and rename
//! need write and search permission on the directory (and the sticky bit is honoured); a
//! hard link to another user's file needs read and write permission on it (`rules`);
//! device nodes only by an admin; chmod and explicit times only by the owner; chown only
//! by an admin; chgrp by the owner to one of their groups; a chmod, an access ACL or a
//! create by someone outside the file's group drops S_ISGID. Extended attributes:
//! `user.*` need read (to be seen) and write permission (to be changed; on a sticky
//! directory only its owner), `trusted.*` and `security.capability` are for admins (others
//! do not see `trusted.*`), other `security.*` need write permission, ACLs are set by the
//! owner. A store or truncate by a non-admin clears the set-id bits. Admin principals pass
//! every check, as root does. Callers of an open cell (no realm) are not checked at all.
//!
//! The checks read the attributes just before the command runs; a chmod racing with a
//! request may let that one request pass on the old mode, as with NFS. A transaction's
//! batch applies the same `rules` inside its commit, operation by operation.
//!
//! Owns: the checks of single requests (`authorize_*`), what extended attributes a caller
//! sees. Must not change the namespace.

pub mod reach;
pub mod rules;

use super::Caller;
use crate::namespace::{xattr_class, Namespace, XattrClass, Xattrs};
use dfs_common::acl::Acl;
use dfs_common::proto::{AttrChange, DirRequest, XATTR_POSIX_ACL_ACCESS};
use dfs_common::types::SetTime;
use dfs_common::{Attr, FileKind, FsError, Ino};
pub use reach::{hide_hashes, reachable, require_reachable};
pub use rules::writes_clear_setid;
use rules::{may, require, Target, R, S_ISVTX, W, X};

/// The extended attributes `all` of an inode (`attr`, `acl`) that `caller` may read:
/// everything in an open cell or for an admin; others do not see `trusted.*` (Linux
/// hides them from the unprivileged), nor `user.*` without read permission (reading
/// one needs it).
pub fn readable_xattrs(caller: &Caller, attr: &Attr, acl: Option<&Acl>, all: Xattrs) -> Xattrs {
    if !rules::checked(caller) {
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

fn target(ns: &Namespace, ino: Ino) -> Result<Target, FsError> {
    let (attr, acl) = ns.attr_and_acl(ino)?;
    Ok(Target { attr, acl })
}

fn lookup(ns: &Namespace, parent: Ino, name: &[u8]) -> Result<Option<Attr>, FsError> {
    match ns.lookup(parent, name) {
        Ok(a) => Ok(Some(a)),
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn need(
    ns: &Namespace,
    caller: &Caller,
    ino: Ino,
    want: u32,
    what: &str,
) -> Result<Target, FsError> {
    let t = target(ns, ino)?;
    require(caller, &t, want, what)?;
    Ok(t)
}

fn removable(ns: &Namespace, caller: &Caller, parent: Ino, name: &[u8]) -> Result<(), FsError> {
    let dir = target(ns, parent)?;
    let victim = lookup(ns, parent, name)?;
    rules::remove_from(caller, &dir, victim.as_ref())
}

/// The inodes a directory request names by number rather than by a name in a directory
/// (`reach`). Validate is answered inode by inode instead (`crate::api::dir`).
fn named_inos(req: &DirRequest) -> Vec<Ino> {
    match req {
        DirRequest::GetAttr { ino }
        | DirRequest::ReadLink { ino }
        | DirRequest::Xattrs { ino }
        | DirRequest::SetAttr { ino, .. }
        | DirRequest::SetXattr { ino, .. }
        | DirRequest::RemoveXattr { ino, .. } => vec![*ino],
        DirRequest::Lookup { parent, .. }
        | DirRequest::Create { parent, .. }
        | DirRequest::CreateOpen { parent, .. }
        | DirRequest::Mkdir { parent, .. }
        | DirRequest::Symlink { parent, .. }
        | DirRequest::Mknod { parent, .. }
        | DirRequest::Unlink { parent, .. }
        | DirRequest::Rmdir { parent, .. } => vec![*parent],
        DirRequest::ReadDir { dir, .. } => vec![*dir],
        DirRequest::Link {
            ino, new_parent, ..
        } => vec![*ino, *new_parent],
        DirRequest::Rename {
            parent, new_parent, ..
        } => vec![*parent, *new_parent],
        DirRequest::Validate { .. } | DirRequest::StatFs => Vec::new(),
    }
}

/// Checks a directory request, and makes new inodes belong to the caller.
pub fn authorize_dir(ns: &Namespace, caller: &Caller, req: &mut DirRequest) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    require_reachable(ns, caller, &named_inos(req))?;
    match req {
        DirRequest::GetAttr { .. }
        | DirRequest::ReadLink { .. }
        | DirRequest::Validate { .. }
        | DirRequest::Xattrs { .. }
        | DirRequest::StatFs => Ok(()),
        DirRequest::Lookup { parent, .. } => need(ns, caller, *parent, X, "search").map(drop),
        DirRequest::ReadDir { dir, .. } => need(ns, caller, *dir, R, "list").map(drop),
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
            let dir = creatable(ns, caller, *parent, uid, gid)?;
            *mode = rules::new_file_mode(caller, &dir.attr, *mode);
            Ok(())
        }
        DirRequest::Mkdir {
            parent, uid, gid, ..
        }
        | DirRequest::Symlink {
            parent, uid, gid, ..
        } => creatable(ns, caller, *parent, uid, gid).map(drop),
        DirRequest::Mknod {
            parent,
            kind,
            mode,
            uid,
            gid,
            ..
        } => {
            let dir = creatable(ns, caller, *parent, uid, gid)?;
            if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) && !caller.admin {
                return Err(FsError::NotPermitted(format!(
                    "uid {} may not make device nodes (admins only)",
                    caller.uid
                )));
            }
            *mode = rules::new_file_mode(caller, &dir.attr, *mode);
            Ok(())
        }
        DirRequest::SetXattr { ino, name, .. } | DirRequest::RemoveXattr { ino, name } => {
            authorize_xattr_change(ns, caller, *ino, name)
        }
        DirRequest::Link {
            ino, new_parent, ..
        } => {
            need(ns, caller, *new_parent, W | X, "link into")?;
            rules::hard_link(caller, &target(ns, *ino)?)
        }
        DirRequest::Unlink { parent, name } | DirRequest::Rmdir { parent, name } => {
            removable(ns, caller, *parent, name)
        }
        DirRequest::Rename {
            parent,
            name,
            new_parent,
            new_name,
            ..
        } => {
            removable(ns, caller, *parent, name)?;
            removable(ns, caller, *new_parent, new_name)
        }
        DirRequest::SetAttr { ino, change } => authorize_setattr(ns, caller, *ino, change),
    }
}

fn authorize_setattr(
    ns: &Namespace,
    caller: &Caller,
    ino: Ino,
    change: &mut AttrChange,
) -> Result<(), FsError> {
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
    let t = target(ns, ino)?;
    let a = &t.attr;
    let owner = rules::owns(caller, a);
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
        *m = rules::chmod(caller, a, gid.unwrap_or(a.gid), *m)?;
    }
    if size.is_some() {
        rules::write(caller, &t)?;
    }
    let explicit = matches!(atime, Some(SetTime::At(_))) || matches!(mtime, Some(SetTime::At(_)));
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

/// A create in a directory needs write and search permission on it; the new inode is the
/// caller's (its group may still come from a set-gid directory, see the namespace).
fn creatable(
    ns: &Namespace,
    caller: &Caller,
    parent: Ino,
    uid: &mut u32,
    gid: &mut u32,
) -> Result<Target, FsError> {
    let dir = target(ns, parent)?;
    rules::create_in(caller, &dir)?;
    *uid = caller.uid;
    *gid = caller.gid;
    Ok(dir)
}

/// Checks a set or remove of extended attribute `name` of `ino`.
fn authorize_xattr_change(
    ns: &Namespace,
    caller: &Caller,
    ino: Ino,
    name: &[u8],
) -> Result<(), FsError> {
    let class = xattr_class(name)?;
    let t = target(ns, ino)?;
    let owner = rules::owns(caller, &t.attr);
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

/// Whether a set of extended attribute `name` of `ino` by `caller` drops the file's
/// S_ISGID: an access ACL (which sets the permission bits, as a chmod does) set by someone
/// outside the file's group (Linux's `posix_acl_update_mode`).
pub fn xattr_set_drops_sgid(
    ns: &Namespace,
    caller: &Caller,
    ino: Ino,
    name: &[u8],
) -> Result<bool, FsError> {
    if name != XATTR_POSIX_ACL_ACCESS || !rules::checked(caller) {
        return Ok(false);
    }
    Ok(!rules::keeps_sgid(caller, ns.getattr(ino)?.gid))
}

/// Checks a chmod that comes with a store of `ino` (`HDR_MODE`, no set-id bits): as a
/// setattr's.
pub fn authorize_store_chmod(ns: &Namespace, caller: &Caller, ino: Ino) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    let a = ns.getattr(ino)?;
    rules::chmod(caller, &a, a.gid, a.mode).map(drop)
}

/// Checks a fetch (`write == false`) or a store of `ino`: reachable, and read or write
/// permission on it.
pub fn authorize_file(
    ns: &Namespace,
    caller: &Caller,
    ino: Ino,
    write: bool,
) -> Result<(), FsError> {
    if !caller.enforce {
        return Ok(());
    }
    require_reachable(ns, caller, &[ino])?;
    let t = target(ns, ino)?;
    if write {
        rules::write(caller, &t)
    } else {
        require(caller, &t, R, "read")
    }
}

/// Whether `caller` may write `ino` (and so have its writers' turn, as the lock service
/// would grant it): `authorize_file`'s answer, refusals as `false`.
pub fn may_write(ns: &Namespace, caller: &Caller, ino: Ino) -> Result<bool, FsError> {
    match authorize_file(ns, caller, ino, true) {
        Ok(()) => Ok(true),
        Err(FsError::PermissionDenied(_) | FsError::NotPermitted(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

//! The permission rules themselves, as pure functions of who asks (`Caller`) and what the
//! namespace holds (`Target`: an inode's attributes and access ACL), so that a request on
//! its own (`super`) and each operation of a transaction's batch (`namespace::txn`, against
//! the state the batch has made so far) are judged by the same code, and the batch stays a
//! deterministic function of its command.
//!
//! Linux's rules: search (x) on every directory on the way; create and remove need write
//! and search on the directory, and in a sticky one removing needs to own the directory or
//! the victim; chmod by the owner, S_ISGID kept only by a member of the file's group;
//! hard links only to one's own files or to regular files one may read and write that
//! carry no set-id bit (protected_hardlinks); a write by a non-admin clears the set-id
//! bits. Admins pass every check, as root does; an open cell's callers are not checked.
//!
//! Owns: those rules. Must not read the namespace or anything else.

use crate::auth::Caller;
use dfs_common::acl::Acl;
use dfs_common::{Attr, FileKind, FsError, Ino};

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

pub(in crate::auth) const NO_GROUP: u32 = u32::MAX;
pub const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;
pub const S_ISVTX: u32 = 0o1000;
const S_IXGRP: u32 = 0o010;

/// What a permission check looks at: an inode's attributes and its access ACL.
pub struct Target {
    pub attr: Attr,
    pub acl: Option<Acl>,
}

/// Whether `caller` is checked at all: in a realm, and not an admin.
pub fn checked(caller: &Caller) -> bool {
    caller.enforce && !caller.admin
}

/// Whether `caller` has all of `want` (a set of `R`, `W`, `X`) on an inode with `attr`
/// and access ACL `acl`.
pub fn may(caller: &Caller, attr: &Attr, acl: Option<&Acl>, want: u32) -> bool {
    if !checked(caller) {
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

pub fn denied(caller: &Caller, what: &str, ino: Ino) -> FsError {
    FsError::PermissionDenied(format!("uid {} may not {what} inode {ino}", caller.uid))
}

pub fn require(caller: &Caller, t: &Target, want: u32, what: &str) -> Result<(), FsError> {
    if may(caller, &t.attr, t.acl.as_ref(), want) {
        Ok(())
    } else {
        Err(denied(caller, what, t.attr.ino))
    }
}

/// Whether `caller` owns `attr`'s inode, or is an admin (or unchecked).
pub fn owns(caller: &Caller, attr: &Attr) -> bool {
    !checked(caller) || caller.uid == attr.uid
}

/// Search permission on directory `dir`, which a path goes through.
pub fn search(caller: &Caller, dir: &Target) -> Result<(), FsError> {
    require(caller, dir, X, "search")
}

/// A new entry in directory `dir`.
pub fn create_in(caller: &Caller, dir: &Target) -> Result<(), FsError> {
    require(caller, dir, W | X, "create in")
}

/// Removing (or renaming away, or replacing) entry `victim` of directory `dir`.
pub fn remove_from(caller: &Caller, dir: &Target, victim: Option<&Attr>) -> Result<(), FsError> {
    require(caller, dir, W | X, "remove an entry of")?;
    let sticky = dir.attr.mode & S_ISVTX != 0;
    match victim {
        Some(v) if sticky && !owns(caller, &dir.attr) && !owns(caller, v) => {
            Err(denied(caller, "remove (sticky directory)", v.ino))
        }
        _ => Ok(()),
    }
}

/// New contents for `file` (a store, a truncate, a transaction's put).
pub fn write(caller: &Caller, file: &Target) -> Result<(), FsError> {
    require(caller, file, W, "write")
}

/// Whether a store or truncate by `caller` clears the file's set-id bits whatever the
/// writer says: in a realm, for everyone but admins (the server cannot know the
/// writer's CAP_FSETID, only its principal).
pub fn writes_clear_setid(caller: &Caller) -> bool {
    checked(caller)
}

/// Whether `caller` may keep S_ISGID on a file of group `gid` it changes the mode of:
/// only as a member of that group (Linux's `in_group_or_capable`).
pub fn keeps_sgid(caller: &Caller, gid: u32) -> bool {
    !checked(caller) || caller.in_group(gid)
}

/// A chmod of `file` to `mode` (its group becoming `gid`): by the owner only; the mode it
/// gets, without S_ISGID for a caller outside the group (Linux's `setattr_prepare`).
pub fn chmod(caller: &Caller, file: &Attr, gid: u32, mode: u32) -> Result<u32, FsError> {
    if !owns(caller, file) {
        return Err(FsError::NotPermitted(format!(
            "only the owner may chmod inode {}",
            file.ino
        )));
    }
    Ok(if keeps_sgid(caller, gid) {
        mode
    } else {
        mode & !S_ISGID
    })
}

/// The mode argument of a new non-directory in `dir`, without S_ISGID when it would give
/// the file a group the caller is not in (Linux's `mode_strip_sgid`): in a set-gid
/// directory the file takes the directory's group.
pub fn new_file_mode(caller: &Caller, dir: &Attr, mode: u32) -> u32 {
    let exec_sgid = S_ISGID | S_IXGRP;
    if dir.mode & S_ISGID == 0 || mode & exec_sgid != exec_sgid {
        return mode;
    }
    if keeps_sgid(caller, dir.gid) {
        return mode;
    }
    mode & !S_ISGID
}

/// A hard link to `source` (Linux's protected_hardlinks, `may_linkat`): the owner may;
/// anyone else only to a regular file without set-id bits (S_ISGID counts only with group
/// execute) that they may read and write.
pub fn hard_link(caller: &Caller, source: &Target) -> Result<(), FsError> {
    let a = &source.attr;
    if owns(caller, a) {
        return Ok(());
    }
    let setid = a.mode & S_ISUID != 0 || a.mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP;
    let safe = a.kind == FileKind::File && !setid;
    if safe && may(caller, a, source.acl.as_ref(), R | W) {
        return Ok(());
    }
    Err(FsError::NotPermitted(format!(
        "uid {} may not link inode {} of uid {}: not the owner, and not a regular file \
         without set-id bits that the caller may read and write",
        caller.uid, a.ino, a.uid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_common::Timestamp;

    fn file(mode: u32, uid: u32, gid: u32) -> Target {
        let t = Timestamp { secs: 0, nanos: 0 };
        Target {
            attr: Attr {
                ino: 9,
                kind: FileKind::File,
                mode,
                uid,
                gid,
                nlink: 1,
                size: 0,
                atime: t,
                mtime: t,
                ctime: t,
                version: 1,
                blob: None,
                rdev: 0,
            },
            acl: None,
        }
    }

    fn user(uid: u32, groups: &[u32]) -> Caller {
        let mut c = Caller::open(1);
        c.uid = uid;
        c.gid = uid;
        c.admin = false;
        c.enforce = true;
        for (slot, g) in c.groups.iter_mut().zip(groups) {
            *slot = *g;
        }
        c
    }

    #[test]
    fn hard_links_follow_protected_hardlinks() {
        let bob = user(2, &[]);
        assert!(hard_link(&bob, &file(0o600, 2, 2)).is_ok(), "own file");
        assert!(
            hard_link(&bob, &file(0o666, 1, 1)).is_ok(),
            "read and write"
        );
        assert!(hard_link(&bob, &file(0o644, 1, 1)).is_err(), "no write");
        assert!(hard_link(&bob, &file(0o4777, 1, 1)).is_err(), "set-uid");
        assert!(
            hard_link(&bob, &file(0o2777, 1, 1)).is_err(),
            "set-gid executable"
        );
        assert!(
            hard_link(&bob, &file(0o2666, 1, 1)).is_ok(),
            "S_ISGID without g+x"
        );
        let mut fifo = file(0o666, 1, 1);
        fifo.attr.kind = FileKind::Fifo;
        assert!(hard_link(&bob, &fifo).is_err(), "not a regular file");
        let mut admin = user(3, &[]);
        admin.admin = true;
        assert!(hard_link(&admin, &file(0o4600, 1, 1)).is_ok());
    }

    #[test]
    fn chmod_keeps_sgid_only_inside_the_group() {
        let a = file(0o755, 1, 50).attr;
        assert_eq!(chmod(&user(1, &[]), &a, 50, 0o6755).unwrap(), 0o4755);
        assert_eq!(chmod(&user(1, &[50]), &a, 50, 0o6755).unwrap(), 0o6755);
        assert!(chmod(&user(2, &[50]), &a, 50, 0o644).is_err());
    }

    #[test]
    fn sticky_directories_keep_others_entries() {
        let mut dir = file(0o1777, 0, 0);
        dir.attr.kind = FileKind::Dir;
        let bob = user(2, &[]);
        assert!(remove_from(&bob, &dir, Some(&file(0o644, 1, 1).attr)).is_err());
        assert!(remove_from(&bob, &dir, Some(&file(0o644, 2, 2).attr)).is_ok());
        assert!(remove_from(&bob, &dir, None).is_ok());
    }
}

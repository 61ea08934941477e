//! Requests that name an inode by number (getattr, validate, fetch, store, setattr,
//! xattrs, readlink, link, and the directory of a lookup, listing or create) are judged as
//! if the caller had walked a path to it: they need search permission on every directory
//! from the root down to it, along at least one of its paths (a file with a name in a
//! public directory is reachable through it). Inode numbers are sequential, so without
//! this a caller could read a 0644 file inside another user's 0700 directory by guessing.
//! Validate answers an inode the caller cannot reach as gone (`None`), which is all it may
//! know.
//!
//! And no attributes carry a content hash (`Attr::blob`, which confirms guesses of short
//! secrets) to a caller who may not read the file: read permission and a path it may
//! search. Every answer that holds attributes goes through `hide_hashes` first.
//!
//! Owns: those two rules. Must not walk the tree itself (`Namespace::reachable` does).

use super::rules::{checked, may, R, X};
use crate::auth::Caller;
use crate::namespace::Namespace;
use dfs_common::acl::Acl;
use dfs_common::{Attr, FsError, Ino};

/// For each of `inos`: `None` if it does not exist, else whether `caller` can reach it.
pub fn reachable(
    ns: &Namespace,
    caller: &Caller,
    inos: &[Ino],
) -> Result<Vec<Option<bool>>, FsError> {
    if !checked(caller) {
        return Ok(inos.iter().map(|_| Some(true)).collect());
    }
    let mut searchable = |attr: &Attr, acl: Option<&Acl>| may(caller, attr, acl, X);
    ns.reachable(inos, &mut searchable)
}

/// `Ok` if `caller` can reach every one of `inos`; `NotFound` for the first that does not
/// exist, `PermissionDenied` for the first it cannot reach.
pub fn require_reachable(ns: &Namespace, caller: &Caller, inos: &[Ino]) -> Result<(), FsError> {
    if !checked(caller) {
        return Ok(());
    }
    for (ino, reached) in inos.iter().zip(reachable(ns, caller, inos)?) {
        match reached {
            None => return Err(FsError::NotFound),
            Some(false) => {
                return Err(FsError::PermissionDenied(format!(
                    "uid {} may not reach inode {ino}: no search permission on a directory \
                     on its path",
                    caller.uid
                )))
            }
            Some(true) => {}
        }
    }
    Ok(())
}

/// Removes the content hash from every one of `attrs` whose file `caller` may not read.
pub fn hide_hashes(ns: &Namespace, caller: &Caller, attrs: Vec<&mut Attr>) -> Result<(), FsError> {
    if !checked(caller) {
        return Ok(());
    }
    let mut hashed: Vec<&mut Attr> = attrs.into_iter().filter(|a| a.blob.is_some()).collect();
    if hashed.is_empty() {
        return Ok(());
    }
    let inos: Vec<Ino> = hashed.iter().map(|a| a.ino).collect();
    let acls = ns.access_acls(&inos)?;
    let reached = reachable(ns, caller, &inos)?;
    for ((a, acl), reached) in hashed.iter_mut().zip(acls).zip(reached) {
        let readable = may(caller, a, acl.as_ref(), R) && reached == Some(true);
        if !readable {
            a.blob = None;
        }
    }
    Ok(())
}

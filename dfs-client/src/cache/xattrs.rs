//! Extended attributes (and so POSIX ACLs) on the client. The whole set of an inode comes
//! in one request and is kept in the metadata cache under the inode's promise (any change
//! of it, on any mount, breaks that promise), so getxattr and listxattr, the kernel's
//! ACL lookups and its getxattr("security.capability") before a write are answered without
//! a round trip while the promise holds. A file created here in a directory without a
//! default ACL starts with a known empty set. Changes go to the server, which holds every
//! rule (namespaces, limits, create/replace flags, permissions, ACL and mode together).
//!
//! Owns: the cached sets and how our own changes update them. Must not decide any of the
//! rules above.

use super::error::CacheError;
use super::meta::XattrSet;
use super::{CacheManager, Ticket};
use crate::port::Who;
use dfs_common::proto::{DirReply, DirRequest, XattrSet as How, XATTR_POSIX_ACL_DEFAULT};
use dfs_common::{FsError, Ino};
use std::sync::Arc;

/// The value of `name` in `set`.
fn value_in(set: &XattrSet, name: &[u8]) -> Option<Vec<u8>> {
    set.binary_search_by(|(n, _)| n.as_slice().cmp(name))
        .ok()
        .map(|at| set[at].1.clone())
}

/// What listxattr(2) returns: every name followed by a NUL.
fn names_of(set: &XattrSet) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, _) in set.iter() {
        out.extend_from_slice(name);
        out.push(0);
    }
    out
}

impl CacheManager {
    /// The extended attributes of `ino`, if the cache may answer for them now.
    pub fn try_xattrs_cached(&self, ino: Ino) -> Option<XattrSet> {
        let (set, stamp) = self.meta.lock().unwrap().xattrs(ino)?;
        self.validity.trusted(stamp).then_some(set)
    }

    /// The extended attributes of `ino`: cached, or asked for (and then cached).
    pub async fn xattrs(&self, who: &Who, ino: Ino) -> Result<XattrSet, CacheError> {
        if let Some(set) = self.try_xattrs_cached(ino) {
            return Ok(set);
        }
        let t = self.ticket();
        let set: XattrSet = match self.dir_call(who, &DirRequest::Xattrs { ino }).await {
            Ok(DirReply::Xattrs(list)) => Arc::new(list),
            Ok(_) => return Err(FsError::Io("unexpected answer to xattrs".into()).into()),
            // Unlinked while open here: its descriptors see no attributes.
            Err(CacheError::Fs(FsError::NotFound)) if self.server_lost(ino).is_some() => {
                Arc::new(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let stamp = self.validity.stamp(t);
        self.meta
            .lock()
            .unwrap()
            .put_xattrs(ino, set.clone(), stamp);
        Ok(set)
    }

    /// getxattr(2) from the cache alone; `None`: ask with `getxattr`.
    pub fn try_getxattr_cached(
        &self,
        ino: Ino,
        name: &[u8],
    ) -> Option<Result<Vec<u8>, CacheError>> {
        let set = self.try_xattrs_cached(ino)?;
        Some(value_in(&set, name).ok_or(FsError::NoXattr.into()))
    }

    /// getxattr(2): the value of `name`, `NoXattr` (ENODATA) if `ino` has none.
    pub async fn getxattr(&self, who: &Who, ino: Ino, name: &[u8]) -> Result<Vec<u8>, CacheError> {
        let set = self.xattrs(who, ino).await?;
        value_in(&set, name).ok_or(FsError::NoXattr.into())
    }

    /// listxattr(2) from the cache alone; `None`: ask with `listxattr`.
    pub fn try_listxattr_cached(&self, ino: Ino) -> Option<Vec<u8>> {
        self.try_xattrs_cached(ino).map(|set| names_of(&set))
    }

    /// listxattr(2): every name, each followed by a NUL.
    pub async fn listxattr(&self, who: &Who, ino: Ino) -> Result<Vec<u8>, CacheError> {
        Ok(names_of(&self.xattrs(who, ino).await?))
    }

    /// setxattr(2).
    pub async fn setxattr(
        &self,
        who: &Who,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        how: How,
    ) -> Result<(), CacheError> {
        let t = self.ticket();
        let req = DirRequest::SetXattr {
            ino,
            name: name.to_vec(),
            value: value.to_vec(),
            how,
        };
        let changed = self.attr_call(who, req, "setxattr").await;
        match changed {
            Ok(_) => self.own_xattr_change(ino, name, Some(value), t),
            Err(_) => self.meta.lock().unwrap().forget_xattrs(ino),
        }
        changed.map(drop)
    }

    /// removexattr(2).
    pub async fn removexattr(&self, who: &Who, ino: Ino, name: &[u8]) -> Result<(), CacheError> {
        let t = self.ticket();
        let req = DirRequest::RemoveXattr {
            ino,
            name: name.to_vec(),
        };
        let changed = self.attr_call(who, req, "removexattr").await;
        match changed {
            Ok(_) => self.own_xattr_change(ino, name, None, t),
            Err(_) => self.meta.lock().unwrap().forget_xattrs(ino),
        }
        changed.map(drop)
    }

    /// Our own change of `name` on `ino` (`Some(value)`: set, `None`: removed) brings a
    /// cached set up to date (the server breaks no promise of ours for it). The kernel
    /// forgets the inode's attributes and cached ACLs: an ACL also sets the mode.
    fn own_xattr_change(&self, ino: Ino, name: &[u8], value: Option<&[u8]>, t: Ticket) {
        {
            let mut meta = self.meta.lock().unwrap();
            if let Some((set, _)) = meta.xattrs(ino) {
                let mut list = (*set).clone();
                match (
                    list.binary_search_by(|(n, _)| n.as_slice().cmp(name)),
                    value,
                ) {
                    (Ok(at), Some(v)) => list[at].1 = v.to_vec(),
                    (Err(at), Some(v)) => list.insert(at, (name.to_vec(), v.to_vec())),
                    (Ok(at), None) => {
                        list.remove(at);
                    }
                    (Err(_), None) => {}
                }
                let stamp = self.validity.stamp(t);
                meta.put_xattrs(ino, Arc::new(list), stamp);
            }
        }
        self.invalidate(super::Invalidation::Attrs(ino));
    }

    /// A file or directory we have just created in `parent`: without a default ACL there
    /// it has no extended attributes, which the cache may then answer at once (the kernel
    /// asks for "security.capability" before the first write of every new file by a user
    /// other than root). The directory's own set is asked for once, if it is not cached,
    /// and stays cached: our creates in it do not change it.
    pub(super) async fn created_without_xattrs(&self, who: &Who, parent: Ino, ino: Ino, t: Ticket) {
        let Ok(parent_set) = self.xattrs(who, parent).await else {
            return;
        };
        if value_in(&parent_set, XATTR_POSIX_ACL_DEFAULT).is_none() {
            let stamp = self.validity.stamp(t);
            self.meta
                .lock()
                .unwrap()
                .put_xattrs(ino, Arc::new(Vec::new()), stamp);
        }
    }
}

//! Namespace calls of the cache manager: lookup, getattr, readdir and every change to the
//! directory tree. Answers from the metadata cache while a promise covers it; otherwise asks
//! the directory service and remembers the answer. Must not touch file contents (that is
//! `files`), except to overlay the size of a locally changed file on its attributes.

use super::error::CacheError;
use super::meta::DirItem;
use super::{CacheManager, Invalidation};
use crate::port::Who;
use dfs_common::proto::{AttrChange, DirReply, DirRequest, StatFs, READDIR_PAGE};
use dfs_common::types::SetTime;
use dfs_common::types::NAME_MAX;
use dfs_common::{Attr, FsError, Ino};
use std::sync::Arc;

fn unexpected(what: &str) -> CacheError {
    FsError::Io(format!("unexpected answer to {what}")).into()
}

fn check_name(name: &[u8]) -> Result<(), CacheError> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong.into());
    }
    Ok(())
}

impl CacheManager {
    pub(super) async fn attr_call(
        &self,
        who: &Who,
        req: DirRequest,
        what: &str,
    ) -> Result<Attr, CacheError> {
        let t = self.ticket();
        match self.dir_call(who, &req).await? {
            DirReply::Attr(attr) => {
                self.remember_attr(&attr, t);
                Ok(attr)
            }
            _ => Err(unexpected(what)),
        }
    }

    /// The attributes as this client sees them: a locally changed file shows its local
    /// size, mtime, ctime and held chmod until it is stored.
    pub(crate) fn overlay(&self, mut attr: Attr) -> Attr {
        if let Some(local) = self.local_attrs(attr.ino) {
            attr.size = local.size;
            attr.mtime = local.mtime;
            attr.ctime = attr.ctime.max(local.ctime);
            if let Some(mode) = local.mode {
                attr.mode = mode;
            }
        }
        attr
    }

    /// The newest attributes known for a listing entry: the listing is a snapshot, while
    /// the attribute cache follows our own stores and setattrs (which break no promise of
    /// ours, so the snapshot is not refreshed by them).
    pub fn freshest(&self, snapshot: &Attr) -> Attr {
        let known = self.meta.lock().unwrap().attr(snapshot.ino);
        let best = match known {
            Some((a, _)) if (a.ctime, a.version) >= (snapshot.ctime, snapshot.version) => a,
            _ => snapshot.clone(),
        };
        self.overlay(best)
    }

    /// A lookup the caches can answer at once (a trusted name, or a trusted listing without
    /// it). `None`: ask with `lookup`.
    pub fn try_lookup_cached(&self, parent: Ino, name: &[u8]) -> Option<Result<Attr, CacheError>> {
        if name.len() > NAME_MAX {
            return Some(Err(FsError::NameTooLong.into()));
        }
        let mut meta = self.meta.lock().unwrap();
        if let Some((ino, stamp)) = meta.name(parent, name) {
            if self.validity.trusted(stamp) {
                if let Some((attr, astamp)) = meta.attr(ino) {
                    if self.validity.trusted(astamp) {
                        drop(meta);
                        return Some(Ok(self.overlay(attr)));
                    }
                }
            }
        }
        if let Some((items, stamp)) = meta.dir(parent) {
            if self.validity.trusted(stamp)
                && items
                    .binary_search_by(|i| i.name.as_slice().cmp(name))
                    .is_err()
            {
                return Some(Err(FsError::NotFound.into()));
            }
        }
        None
    }

    /// Attributes the cache can answer at once. `None`: ask with `getattr`.
    pub fn try_getattr_cached(&self, ino: Ino) -> Option<Attr> {
        self.trusted_attr(ino).map(|a| self.overlay(a))
    }

    pub async fn lookup(&self, who: &Who, parent: Ino, name: &[u8]) -> Result<Attr, CacheError> {
        check_name(name)?;
        let cached = self.meta.lock().unwrap().name(parent, name);
        if let Some((ino, stamp)) = cached {
            if self.validity.trusted(stamp) {
                if let Some(attr) = self.trusted_attr(ino) {
                    return Ok(self.overlay(attr));
                }
            }
        }
        let listed = self.meta.lock().unwrap().dir(parent);
        if let Some((items, stamp)) = listed {
            if self.validity.trusted(stamp)
                && items
                    .binary_search_by(|i| i.name.as_slice().cmp(name))
                    .is_err()
            {
                // A complete listing under a live promise: the name is not there.
                return Err(FsError::NotFound.into());
            }
        }
        let t = self.ticket();
        let attr = self
            .attr_call(
                who,
                DirRequest::Lookup {
                    parent,
                    name: name.to_vec(),
                },
                "lookup",
            )
            .await?;
        let stamp = self.validity.stamp(t);
        self.meta
            .lock()
            .unwrap()
            .put_name(parent, name.to_vec(), attr.ino, stamp);
        Ok(self.overlay(attr))
    }

    pub async fn getattr(&self, who: &Who, ino: Ino) -> Result<Attr, CacheError> {
        if let Some(attr) = self.orphan_attr(ino) {
            return Ok(attr);
        }
        if let Some(attr) = self.trusted_attr(ino) {
            return Ok(self.overlay(attr));
        }
        match self
            .attr_call(who, DirRequest::GetAttr { ino }, "getattr")
            .await
        {
            Ok(attr) => Ok(self.overlay(attr)),
            // Unlinked (here or elsewhere) while open here: its descriptors still see it.
            Err(CacheError::Fs(FsError::NotFound)) => {
                self.server_lost(ino).ok_or(FsError::NotFound.into())
            }
            Err(CacheError::Fs(FsError::Unavailable(why))) => {
                // The server is away: what we knew last is better than an error.
                let stale = self.meta.lock().unwrap().attr(ino);
                match stale {
                    Some((attr, _)) => Ok(self.overlay(attr)),
                    None => Err(FsError::Unavailable(why).into()),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The whole listing of `dir`, each entry with its attributes; paged from the server.
    pub async fn readdir(&self, who: &Who, dir: Ino) -> Result<Arc<Vec<DirItem>>, CacheError> {
        let cached = self.meta.lock().unwrap().dir(dir);
        if let Some((items, stamp)) = cached {
            if self.validity.trusted(stamp) {
                return Ok(items);
            }
        }
        let t = self.ticket();
        let mut items = Vec::new();
        let mut after = None;
        loop {
            let reply = self
                .dir_call(
                    who,
                    &DirRequest::ReadDir {
                        dir,
                        after: after.take(),
                        limit: READDIR_PAGE,
                    },
                )
                .await?;
            let DirReply::Entries { entries, more } = reply else {
                return Err(unexpected("readdir"));
            };
            let last = entries.last().map(|(n, _)| n.clone());
            for (name, attr) in entries {
                self.remember_attr(&attr, t);
                let attr = self.overlay(attr);
                items.push(DirItem { name, attr });
            }
            if !more || last.is_none() {
                break;
            }
            after = last;
        }
        let items = Arc::new(items);
        let stamp = self.validity.stamp(t);
        {
            let mut meta = self.meta.lock().unwrap();
            for item in items.iter() {
                meta.put_name(dir, item.name.clone(), item.attr.ino, stamp);
            }
            meta.put_dir(dir, items.clone(), stamp);
        }
        Ok(items)
    }

    /// Our own removal of `dir`'s entry `name`: no break comes back to us, so the caches
    /// are brought up to date here (the listing stays complete; the dir's attrs are stale).
    fn removed_entry(&self, dir: Ino, name: &[u8]) -> Option<DirItem> {
        let removed = {
            let mut meta = self.meta.lock().unwrap();
            let removed = meta.remove_own(dir, name);
            meta.forget_attr(dir);
            if let Some(item) = &removed {
                meta.forget_attr(item.attr.ino);
            }
            removed
        };
        self.invalidate(Invalidation::Entry(dir, name.to_vec()));
        removed
    }

    /// Our own new entry `name` in `dir`, with its attributes as the server answered.
    pub(crate) fn added_entry(&self, dir: Ino, name: &[u8], attr: &Attr, t: super::Ticket) {
        let stamp = self.validity.stamp(t);
        let mut meta = self.meta.lock().unwrap();
        meta.forget_attr(dir);
        meta.put_name(dir, name.to_vec(), attr.ino, stamp);
        meta.insert_own(
            dir,
            DirItem {
                name: name.to_vec(),
                attr: attr.clone(),
            },
        );
    }

    pub async fn mkdir(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        creator: super::Creator,
    ) -> Result<Attr, CacheError> {
        check_name(name)?;
        let req = DirRequest::Mkdir {
            parent,
            name: name.to_vec(),
            mode: creator.mode & 0o7777,
            umask: creator.umask,
            uid: creator.uid,
            gid: creator.gid,
        };
        let t = self.ticket();
        let (attr, parent_attr) = match self.dir_call(who, &req).await? {
            DirReply::Made { attr, parent } => (attr, parent),
            _ => return Err(unexpected("mkdir")),
        };
        self.remember_attr(&attr, t);
        self.added_entry(parent, name, &attr, t);
        // The server's answer carries the parent's new times: no GETATTR for them.
        self.remember_attr(&parent_attr, t);
        // We made it: it is empty, and the server gave us a promise on it.
        self.made_empty_dir(attr.ino, t);
        self.created_without_xattrs(who, parent, attr.ino, t).await;
        Ok(attr)
    }

    pub async fn symlink(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Attr, CacheError> {
        check_name(name)?;
        let req = DirRequest::Symlink {
            parent,
            name: name.to_vec(),
            target: target.to_vec(),
            uid,
            gid,
        };
        let t = self.ticket();
        let attr = self.attr_call(who, req, "symlink").await?;
        self.added_entry(parent, name, &attr, t);
        Ok(attr)
    }

    pub async fn link(
        &self,
        who: &Who,
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<Attr, CacheError> {
        check_name(new_name)?;
        let req = DirRequest::Link {
            ino,
            new_parent,
            new_name: new_name.to_vec(),
        };
        let t = self.ticket();
        let attr = self.attr_call(who, req, "link").await?;
        self.added_entry(new_parent, new_name, &attr, t);
        Ok(self.overlay(attr))
    }

    pub async fn readlink(&self, who: &Who, ino: Ino) -> Result<Vec<u8>, CacheError> {
        if let Some(target) = self.meta.lock().unwrap().link(ino) {
            return Ok(target);
        }
        match self.dir_call(who, &DirRequest::ReadLink { ino }).await? {
            DirReply::Target(target) => {
                // A symlink's target never changes, so it needs no promise.
                self.meta.lock().unwrap().put_link(ino, target.clone());
                Ok(target)
            }
            _ => Err(unexpected("readlink")),
        }
    }

    async fn entry_call(
        &self,
        who: &Who,
        req: DirRequest,
        dir: Ino,
        name: &[u8],
    ) -> Result<(), CacheError> {
        let t = self.ticket();
        let result = self.dir_call(who, &req).await;
        if result.is_ok() {
            self.removed_entry(dir, name);
        } else {
            self.meta.lock().unwrap().forget_entry(dir, name);
        }
        match result? {
            DirReply::Removed { parent } => {
                // The directory's new times came with the answer: no GETATTR for them.
                self.remember_attr(&parent, t);
                Ok(())
            }
            _ => Err(unexpected("namespace change")),
        }
    }

    pub async fn unlink(&self, who: &Who, parent: Ino, name: &[u8]) -> Result<(), CacheError> {
        check_name(name)?;
        let req = DirRequest::Unlink {
            parent,
            name: name.to_vec(),
        };
        let victim = self.named(parent, name);
        self.entry_call(who, req, parent, name).await?;
        if let Some(victim) = victim {
            self.unlinked_here(victim);
        }
        Ok(())
    }

    pub async fn rmdir(&self, who: &Who, parent: Ino, name: &[u8]) -> Result<(), CacheError> {
        check_name(name)?;
        let req = DirRequest::Rmdir {
            parent,
            name: name.to_vec(),
        };
        self.entry_call(who, req, parent, name).await
    }

    pub async fn rename(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), CacheError> {
        check_name(name)?;
        check_name(new_name)?;
        let req = DirRequest::Rename {
            parent,
            name: name.to_vec(),
            new_parent,
            new_name: new_name.to_vec(),
            flags,
        };
        let t = self.ticket();
        let victim = self.named(new_parent, new_name);
        let result = self.dir_call(who, &req).await;
        if result.is_ok() && flags & dfs_common::proto::RENAME_EXCHANGE == 0 {
            let moved = self.named(parent, name).map(|(ino, _)| ino);
            if let Some(victim) = victim.filter(|v| Some(v.0) != moved) {
                self.unlinked_here(victim);
            }
        }
        if result.is_err() || flags & dfs_common::proto::RENAME_EXCHANGE != 0 {
            // Unknown outcome or a swap: forget both names and listings.
            let mut meta = self.meta.lock().unwrap();
            meta.forget_entry(parent, name);
            meta.forget_entry(new_parent, new_name);
            drop(meta);
            self.invalidate(Invalidation::Entry(parent, name.to_vec()));
            self.invalidate(Invalidation::Entry(new_parent, new_name.to_vec()));
        } else {
            let moved = self.removed_entry(parent, name);
            self.removed_entry(new_parent, new_name);
            match moved {
                // Its ctime changed: keep the listing complete but the attrs unstamped.
                Some(item) => self.added_entry(new_parent, new_name, &item.attr, t),
                None => self.meta.lock().unwrap().forget_ino(new_parent),
            }
            let mut meta = self.meta.lock().unwrap();
            if let Some((ino, _)) = meta.name(new_parent, new_name) {
                meta.forget_attr(ino);
            }
        }
        match result? {
            DirReply::Empty => Ok(()),
            _ => Err(unexpected("rename")),
        }
    }

    /// Changes attributes. A size change of a file open on this client is applied to the
    /// local copy and stored at close; otherwise the server applies it.
    #[allow(clippy::too_many_arguments)]
    pub async fn setattr(
        &self,
        who: &Who,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> Result<Attr, CacheError> {
        let mut size = size;
        if let Some(len) = size {
            if self.truncate_open_file(ino, len).await? {
                size = None;
            }
        }
        let (mut mode, mut uid, mut gid) = (mode, uid, gid);
        if let Some(a) = self.trusted_attr(ino).map(|a| self.overlay(a)) {
            // A chown or chmod to what the file already has (as `tar -x` run by root does for
            // every file) changes nothing but ctime: no round trip. Not for set-id files,
            // whose bits such a call may clear. The kernel has already checked permission.
            if a.mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
                mode = mode.filter(|m| m & 0o7777 != a.mode & 0o7777);
                uid = uid.filter(|u| *u != a.uid);
                gid = gid.filter(|g| *g != a.gid);
            }
        }
        // A plain chmod of a file we created and have not stored yet goes with that store
        // (at close), not in a request of its own. Not with credentials: in a realm the
        // server checks the chmod against the caller's principal, and a refused chmod
        // would fail the store of the contents with it. Nor for set-id or sticky bits,
        // whose rules the server applies.
        if let Some(m) = mode {
            let plain = uid.is_none() && gid.is_none() && size.is_none() && m & !0o777 == 0;
            if plain && !self.server.signs(who) && self.hold_mode_for_store(ino, m) {
                mode = None;
            }
        }
        let (mut atime, mut mtime) = (atime, mtime);
        if (atime.is_some() || mtime.is_some()) && self.set_local_times(ino, atime, mtime)? {
            // Stored with the contents at close (the store carries the copy's mtime).
            atime = None;
            mtime = None;
        }
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            defer_sync: self.unsynced_create(ino),
            // Linux clears set-id bits on a truncate by a process without CAP_FSETID;
            // under FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to us.
            kill_suid: size.is_some() && who.uid().is_some_and(|u| u != 0),
        };
        if change.changes_nothing() {
            let attr = self.getattr(who, ino).await?;
            return Ok(self.overlay(attr));
        }
        let req = DirRequest::SetAttr { ino, change };
        let attr = self.attr_call(who, req, "setattr").await;
        if mode.is_some() {
            // A chmod rewrites the access ACL too (the server keeps them in step).
            self.meta.lock().unwrap().forget_xattrs(ino);
        }
        let attr = attr?;
        if size.is_some() {
            // The server made a new version; our copy (if any) is now old.
            self.invalidate(Invalidation::Inode(ino));
        }
        Ok(self.overlay(attr))
    }

    pub async fn statfs(&self, who: &Who) -> Result<StatFs, CacheError> {
        match self.dir_call(who, &DirRequest::StatFs).await? {
            DirReply::StatFs(s) => Ok(s),
            _ => Err(unexpected("statfs")),
        }
    }
}

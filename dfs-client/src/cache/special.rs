//! Who creates an inode (`Creator`), and special files: fifos, sockets and device nodes
//! are inodes with no contents in the namespace, made with one request. A fifo opened on a
//! mount is local to that machine (the kernel makes the pipe), as on NFS; a socket's name
//! likewise. Must not open or store contents.

use super::error::CacheError;
use super::meta::DirItem;
use super::CacheManager;
use crate::port::Who;
use dfs_common::proto::{DirReply, DirRequest};
use dfs_common::{Attr, FileKind, FsError, Ino};
use std::sync::Arc;

/// Who creates an inode, and with which mode: the caller's mode argument and its process's
/// umask, not yet applied (the server applies them: a directory's default ACL overrides
/// the umask), and the caller's uid and gid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creator {
    pub mode: u32,
    pub umask: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Creator {
    /// A creator whose mode is final (the path API and transactions: no umask).
    pub fn with_mode(mode: u32, uid: u32, gid: u32) -> Creator {
        Creator {
            mode,
            umask: 0,
            uid,
            gid,
        }
    }
}

/// The kind of a special file from mknod(2)'s mode (`S_IFIFO`, `S_IFSOCK`, `S_IFCHR`,
/// `S_IFBLK`); `None` for anything else.
pub fn special_kind(mode: u32) -> Option<FileKind> {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => Some(FileKind::Fifo),
        libc::S_IFSOCK => Some(FileKind::Socket),
        libc::S_IFCHR => Some(FileKind::CharDevice),
        libc::S_IFBLK => Some(FileKind::BlockDevice),
        _ => None,
    }
}

impl CacheManager {
    /// mknod(2) of a fifo, socket or device node (`kind`, with device `rdev`).
    pub async fn mknod(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        kind: FileKind,
        rdev: u32,
        creator: Creator,
    ) -> Result<Attr, CacheError> {
        if name.len() > dfs_common::types::NAME_MAX {
            return Err(FsError::NameTooLong.into());
        }
        let req = DirRequest::Mknod {
            parent,
            name: name.to_vec(),
            kind,
            mode: creator.mode & 0o7777,
            umask: creator.umask,
            rdev,
            uid: creator.uid,
            gid: creator.gid,
        };
        let t = self.ticket();
        let (attr, parent_attr) = match self.dir_call(who, &req).await? {
            DirReply::Made { attr, parent } => (attr, parent),
            _ => return Err(FsError::Io("unexpected answer to mknod".into()).into()),
        };
        self.remember_attr(&attr, t);
        self.added_entry(parent, name, &attr, t);
        self.remember_attr(&parent_attr, t);
        self.created_without_xattrs(who, parent, attr.ino, t).await;
        Ok(attr)
    }

    /// mknod(2) of a regular file: created (exclusively), not opened.
    pub async fn create_closed(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        creator: Creator,
    ) -> Result<Attr, CacheError> {
        if name.len() > dfs_common::types::NAME_MAX {
            return Err(FsError::NameTooLong.into());
        }
        let req = DirRequest::Create {
            parent,
            name: name.to_vec(),
            mode: creator.mode & 0o7777,
            umask: creator.umask,
            uid: creator.uid,
            gid: creator.gid,
            exclusive: true,
        };
        let t = self.ticket();
        let attr = self.attr_call(who, req, "create").await?;
        self.added_entry(parent, name, &attr, t);
        self.meta.lock().unwrap().forget_attr(parent);
        self.created_without_xattrs(who, parent, attr.ino, t).await;
        Ok(attr)
    }

    /// A directory we have just made is empty: its listing is known, under the promise the
    /// server gave with it.
    pub(super) fn made_empty_dir(&self, ino: Ino, t: super::Ticket) {
        let stamp = self.validity.stamp(t);
        let empty: Arc<Vec<DirItem>> = Arc::new(Vec::new());
        self.meta.lock().unwrap().put_dir(ino, empty, stamp);
    }
}

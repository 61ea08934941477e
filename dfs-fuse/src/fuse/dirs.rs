//! Directory listings at the FUSE edge: opendir takes a snapshot of the whole listing
//! (with each entry's attributes), readdir and readdirplus serve it by offset, releasedir
//! drops it. Must not hold policy.

use super::attrs::{errno, file_attr, ttl_for};
use super::DfsFs;
use dfs_client::cache::DirItem;
use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyOpen, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A directory listing snapshot taken at opendir, served by offset.
pub(super) type OpenDir = (dfs_common::Attr, Arc<Vec<DirItem>>);

pub(super) fn opendir(fs: &DfsFs, req: &Request, ino: INodeNo, reply: ReplyOpen) {
    let mgr = fs.mgr.clone();
    let dirs = fs.dirs.clone();
    let fh = fs.next_dir.fetch_add(1, Ordering::Relaxed);
    fs.spawn_as(req, |who| async move {
        let listing = async {
            Ok((
                mgr.getattr(&who, ino.0).await?,
                mgr.readdir(&who, ino.0).await?,
            ))
        };
        match listing.await {
            Ok(open_dir) => {
                dirs.lock().unwrap().insert(fh, open_dir);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(errno(&e)),
        }
    });
}

pub(super) fn readdir(
    fs: &DfsFs,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectory,
) {
    let Some((_, items)) = fs.dirs.lock().unwrap().get(&fh.0).cloned() else {
        return reply.error(Errno::EBADF);
    };
    let mut next = offset;
    while next < items.len() as u64 + 2 {
        let full = match next {
            0 => reply.add(ino, 1, fuser::FileType::Directory, "."),
            1 => reply.add(ino, 2, fuser::FileType::Directory, ".."),
            i => {
                let item = &items[(i - 2) as usize];
                let kind = file_attr(&item.attr).kind;
                reply.add(
                    INodeNo(item.attr.ino),
                    i + 1,
                    kind,
                    OsStr::from_bytes(&item.name),
                )
            }
        };
        if full {
            break;
        }
        next += 1;
    }
    reply.ok();
}

pub(super) fn readdirplus(
    fs: &DfsFs,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectoryPlus,
) {
    let Some((dir_attr, items)) = fs.dirs.lock().unwrap().get(&fh.0).cloned() else {
        return reply.error(Errno::EBADF);
    };
    let mut next = offset.max(2);
    if offset < 2 {
        // The kernel makes no dentries for "." and ".."; their attributes are not cached.
        let a = file_attr(&dir_attr);
        let ttl = std::time::Duration::ZERO;
        if offset == 0 && reply.add(ino, 1, ".", &ttl, &a, Generation(0)) {
            return reply.ok();
        }
        if reply.add(ino, 2, "..", &ttl, &a, Generation(0)) {
            return reply.ok();
        }
    }
    while next < items.len() as u64 + 2 {
        let item = &items[(next - 2) as usize];
        let attr = fs.mgr.freshest(&item.attr);
        let ttl = ttl_for(&fs.mgr, attr.ino);
        if reply.add(
            INodeNo(attr.ino),
            next + 1,
            OsStr::from_bytes(&item.name),
            &ttl,
            &file_attr(&attr),
            Generation(0),
        ) {
            break;
        }
        next += 1;
    }
    reply.ok();
}

pub(super) fn releasedir(fs: &DfsFs, fh: FileHandle, reply: ReplyEmpty) {
    fs.dirs.lock().unwrap().remove(&fh.0);
    reply.ok();
}

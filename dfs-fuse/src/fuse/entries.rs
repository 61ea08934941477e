//! Requests that change names: mkdir, mknod, symlink, link, unlink, rmdir, rename. Each is
//! answered from a tokio task, on behalf of the user who made it. Must not hold policy.

use super::attrs::{errno, file_attr, ttl_for};
use super::DfsFs;
use dfs_client::cache::CacheError;
use dfs_client::cache::{special_kind, CacheManager, Creator};
use dfs_common::proto::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use dfs_common::Attr;
use fuser::{Errno, Generation, INodeNo, RenameFlags, ReplyEmpty, ReplyEntry, Request};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Answers a request that yields an entry (mkdir, mknod, symlink, link).
fn answer_entry(mgr: &CacheManager, result: Result<Attr, CacheError>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&ttl_for(mgr, attr.ino), &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers a request that yields nothing but success or an error.
pub(super) fn answer_empty(result: Result<(), CacheError>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// The creator of a new inode: the caller, its mode argument and umask (the kernel does
/// not apply the umask: FUSE_DONT_MASK, so that a default ACL can override it).
pub(super) fn creator(req: &Request, mode: u32, umask: u32) -> Creator {
    Creator {
        mode: mode & 0o7777,
        umask,
        uid: req.uid(),
        gid: req.gid(),
    }
}

pub(super) fn mkdir(
    fs: &DfsFs,
    req: &Request,
    parent: INodeNo,
    name: &OsStr,
    mode: u32,
    umask: u32,
    reply: ReplyEntry,
) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    let creator = creator(req, mode, umask);
    fs.spawn_as(req, |who| async move {
        answer_entry(&mgr, mgr.mkdir(&who, parent.0, &name, creator).await, reply)
    });
}

/// mknod(2): a fifo, socket or device node; a regular file (mknod with S_IFREG) is a
/// create that opens nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn mknod(
    fs: &DfsFs,
    req: &Request,
    parent: INodeNo,
    name: &OsStr,
    mode: u32,
    umask: u32,
    rdev: u32,
    reply: ReplyEntry,
) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    let creator = creator(req, mode, umask);
    let kind = special_kind(mode);
    if kind.is_none() && mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
        return reply.error(Errno::EINVAL);
    }
    fs.spawn_as(req, |who| async move {
        let made = match kind {
            Some(kind) => mgr.mknod(&who, parent.0, &name, kind, rdev, creator).await,
            None => mgr.create_closed(&who, parent.0, &name, creator).await,
        };
        answer_entry(&mgr, made, reply)
    });
}

pub(super) fn symlink(
    fs: &DfsFs,
    req: &Request,
    parent: INodeNo,
    link_name: &OsStr,
    target: &std::path::Path,
    reply: ReplyEntry,
) {
    let mgr = fs.mgr.clone();
    let name = link_name.as_bytes().to_vec();
    let target = target.as_os_str().as_bytes().to_vec();
    let (uid, gid) = (req.uid(), req.gid());
    fs.spawn_as(req, |who| async move {
        answer_entry(
            &mgr,
            mgr.symlink(&who, parent.0, &name, &target, uid, gid).await,
            reply,
        )
    });
}

pub(super) fn link(
    fs: &DfsFs,
    req: &Request,
    ino: INodeNo,
    newparent: INodeNo,
    newname: &OsStr,
    reply: ReplyEntry,
) {
    let mgr = fs.mgr.clone();
    let newname = newname.as_bytes().to_vec();
    fs.spawn_as(req, |who| async move {
        answer_entry(
            &mgr,
            mgr.link(&who, ino.0, newparent.0, &newname).await,
            reply,
        )
    });
}

pub(super) fn unlink(fs: &DfsFs, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    fs.spawn_as(req, |who| async move {
        answer_empty(mgr.unlink(&who, parent.0, &name).await, reply)
    });
}

pub(super) fn rmdir(fs: &DfsFs, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    fs.spawn_as(req, |who| async move {
        answer_empty(mgr.rmdir(&who, parent.0, &name).await, reply)
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rename(
    fs: &DfsFs,
    req: &Request,
    parent: INodeNo,
    name: &OsStr,
    newparent: INodeNo,
    newname: &OsStr,
    flags: RenameFlags,
    reply: ReplyEmpty,
) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    let newname = newname.as_bytes().to_vec();
    let mut wire_flags = 0;
    if flags.contains(RenameFlags::RENAME_NOREPLACE) {
        wire_flags |= RENAME_NOREPLACE;
    }
    if flags.contains(RenameFlags::RENAME_EXCHANGE) {
        wire_flags |= RENAME_EXCHANGE;
    }
    fs.spawn_as(req, |who| async move {
        answer_empty(
            mgr.rename(&who, parent.0, &name, newparent.0, &newname, wire_flags)
                .await,
            reply,
        )
    });
}

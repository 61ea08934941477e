//! Open files at the FUSE edge: open and create (with a passthrough backing id when the
//! kernel takes one, else plain handlers), read, write, flush, fsync and release. Cache hits
//! are answered in place; anything that may touch the network from a tokio task. One call
//! into the cache per request where it can: an open's answer carries the backing file and
//! the flags (`OpenResult`), a close's policy is the cache's (`flush_needed`,
//! `close_flush`, `release_handle`). Must not hold policy.

use super::attrs::{errno, file_attr, ttl_for};
use super::entries::{answer_empty, creator};
use super::{locks, passthrough, DfsFs};
use dfs_client::cache::{CacheManager, OpenResult};
use dfs_client::port::Who;
use dfs_common::Ino;
use fuser::{
    FileHandle, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, ReplyCreate, ReplyData,
    ReplyEmpty, ReplyOpen, ReplyWrite, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// What an open's answer needs, shared with the tasks that answer it.
#[derive(Clone)]
struct Opener {
    mgr: Arc<CacheManager>,
    backings: Arc<passthrough::Backings>,
    quiet: Arc<locks::QuietCloses>,
}

impl Opener {
    fn of(fs: &DfsFs) -> Opener {
        Opener {
            mgr: fs.mgr.clone(),
            backings: fs.backings.clone(),
            quiet: fs.quiet.clone(),
        }
    }
}

/// The backing id for `opened`'s copy when the cache gave one and the kernel takes it.
/// A refusal turns passthrough off for good, in the cache too.
fn attach(
    mgr: &CacheManager,
    backings: &passthrough::Backings,
    ino: Ino,
    opened: &OpenResult,
    writable: bool,
    make: impl FnOnce(&std::fs::File) -> std::io::Result<fuser::BackingId>,
) -> Option<Arc<fuser::BackingId>> {
    let file = opened.backing.as_ref()?;
    let id = backings.attach(ino, opened.fh, file, writable, make);
    if id.is_none() {
        mgr.set_passthrough(false);
    }
    id
}

/// Answers an open: with a passthrough backing id when the kernel takes one, else plain
/// handlers with FOPEN_KEEP_CACHE when the kernel's pages are of this copy.
fn reply_opened(fs: &Opener, ino: Ino, flags: i32, opened: OpenResult, reply: ReplyOpen) {
    let mut fopen = FopenFlags::empty();
    if opened.noflush {
        fs.quiet.admit(opened.fh);
        fopen |= FopenFlags::FOPEN_NOFLUSH;
    }
    if opened.direct {
        fopen |= FopenFlags::FOPEN_DIRECT_IO;
    }
    let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
    let backing = attach(&fs.mgr, &fs.backings, ino, &opened, writable, |f| {
        reply.open_backing(f)
    });
    match backing {
        Some(id) => reply.opened_passthrough(FileHandle(opened.fh), fopen, &id),
        None => {
            if opened.keep_cache {
                fopen |= FopenFlags::FOPEN_KEEP_CACHE;
            }
            reply.opened(FileHandle(opened.fh), fopen)
        }
    }
}

pub(super) fn open(fs: &DfsFs, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
    let opener = Opener::of(fs);
    // A read-only open of a current cached copy is answered here, without a hop.
    if let Some(opened) = fs.mgr.try_open_cached(ino.0, flags.0) {
        crate::metrics::CACHE.inc(crate::metrics::KIND_OPEN, crate::metrics::HIT);
        return match opened {
            Ok(opened) => reply_opened(&opener, ino.0, flags.0, opened, reply),
            Err(e) => reply.error(errno(&e)),
        };
    }
    fs.spawn_as(req, |who| async move {
        match opener.mgr.open(&who, ino.0, flags.0).await {
            Ok(opened) => reply_opened(&opener, ino.0, flags.0, opened, reply),
            Err(e) => reply.error(errno(&e)),
        }
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) fn create(
    fs: &DfsFs,
    req: &Request,
    parent: INodeNo,
    name: &OsStr,
    mode: u32,
    umask: u32,
    flags: i32,
    reply: ReplyCreate,
) {
    let mgr = fs.mgr.clone();
    let backings = fs.backings.clone();
    let name = name.as_bytes().to_vec();
    let creator = creator(req, mode, umask);
    fs.spawn_as(req, |who| async move {
        let (attr, opened) = match mgr.create(&who, parent.0, &name, creator, flags).await {
            Ok(created) => created,
            Err(e) => return reply.error(errno(&e)),
        };
        let ttl = ttl_for(&mgr, attr.ino);
        let fattr = file_attr(&attr);
        let backing = attach(&mgr, &backings, attr.ino, &opened, true, |f| {
            reply.open_backing(f)
        });
        let mut fopen = FopenFlags::empty();
        if opened.direct {
            fopen |= FopenFlags::FOPEN_DIRECT_IO;
        }
        let fh = FileHandle(opened.fh);
        match backing {
            Some(id) => reply.created_passthrough(&ttl, &fattr, Generation(0), fh, fopen, &id),
            None => reply.created(&ttl, &fattr, Generation(0), fh, fopen),
        }
    });
}

pub(super) fn read(
    fs: &DfsFs,
    req: &Request,
    fh: FileHandle,
    offset: u64,
    size: u32,
    reply: ReplyData,
) {
    if !fs.mgr.read_ready(fh.0, offset, size) {
        // The copy is still being fetched: answer once these bytes are in.
        let mgr = fs.mgr.clone();
        fs.spawn_as(req, |_| async move {
            let read = match mgr.wait_readable(fh.0, offset, size).await {
                Ok(()) => mgr.read(fh.0, offset, size),
                Err(e) => Err(e),
            };
            match read {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
        return;
    }
    match fs.mgr.read(fh.0, offset, size) {
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(super) fn write(fs: &DfsFs, fh: FileHandle, offset: u64, data: &[u8], reply: ReplyWrite) {
    let done = match fs.mgr.try_write(fh.0, offset, data) {
        Some(done) => done,
        None => {
            // A store of the file holds it: wait off this thread, which serves every
            // other request of the mount.
            let (mgr, data) = (fs.mgr.clone(), data.to_vec());
            fs.rt
                .spawn_blocking(move || match mgr.write(fh.0, offset, &data) {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(errno(&e)),
                });
            return;
        }
    };
    match done {
        Ok(n) => reply.written(n),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(super) fn flush(
    fs: &DfsFs,
    req: &Request,
    ino: INodeNo,
    fh: FileHandle,
    lock_owner: LockOwner,
    reply: ReplyEmpty,
) {
    // Closing a read-only descriptor that holds no locks has nothing to do.
    if !fs.mgr.flush_needed(fh.0, ino.0, lock_owner.0) {
        return reply.ok();
    }
    let mgr = fs.mgr.clone();
    fs.spawn_as(req, |who| async move {
        answer_empty(
            mgr.close_flush(&who, fh.0, ino.0, lock_owner.0).await,
            reply,
        )
    });
}

pub(super) fn release(
    fs: &DfsFs,
    ino: INodeNo,
    fh: FileHandle,
    lock_owner: Option<LockOwner>,
    reply: ReplyEmpty,
) {
    fs.backings.detach(ino.0, fh.0);
    // The last close of a flock holder's open file drops its flock; that of a
    // descriptor closed without flushes, the fcntl locks taken through it.
    let mut owners = fs.quiet.released(fh.0);
    owners.extend(lock_owner.map(|o| o.0));
    // No user's request: the locks are given back as nobody (releases need no rights).
    fs.mgr.release_handle(&Who::ANONYMOUS, fh.0, ino.0, owners);
    reply.ok();
}

pub(super) fn fsync(fs: &DfsFs, req: &Request, fh: FileHandle, reply: ReplyEmpty) {
    let mgr = fs.mgr.clone();
    fs.spawn_as(req, |who| async move {
        answer_empty(mgr.fsync(&who, fh.0).await, reply)
    });
}

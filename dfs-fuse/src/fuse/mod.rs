//! The FUSE adapter: maps kernel requests onto the cache manager and its `CacheError` onto
//! errno (`attrs::errno`, the one place).
//! Requests that may need the network are answered from tokio tasks so the FUSE threads
//! never wait on the server; cache hits and local reads and writes are answered in place.
//! Kernel cache invalidations from callback breaks are delivered by a thread of their own
//! (never from a FUSE handler). Must not hold policy: what is cached and when to store is
//! the manager's.
//!
//! This file holds the adapter's state, `init` and the `Filesystem` trait, each request
//! handed to the module of its kind: `entries` (names), `files` (open files), `dirs`
//! (listings), `xattr` (extended attributes and ACLs), `locks` (flock and fcntl).

mod attrs;
mod dirs;
mod entries;
mod files;
mod locks;
mod passthrough;
mod xattr;

use crate::metrics;
use attrs::{errno, file_attr, ttl_for};
use dfs_client::cache::{CacheManager, Invalidation};
use dfs_client::port::Who;
use dfs_common::types::SetTime;
use dfs_common::{Ino, Timestamp};
use fuser::{
    FileHandle, Filesystem, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct DfsFs {
    mgr: Arc<CacheManager>,
    backings: Arc<passthrough::Backings>,
    quiet: Arc<locks::QuietCloses>,
    want_passthrough: bool,
    rt: tokio::runtime::Handle,
    dirs: Arc<Mutex<HashMap<u64, dirs::OpenDir>>>,
    next_dir: AtomicU64,
}

impl DfsFs {
    /// `passthrough`: try FUSE passthrough for open files (falls back by itself when the
    /// kernel or our privileges refuse it).
    pub fn new(mgr: Arc<CacheManager>, rt: tokio::runtime::Handle, passthrough: bool) -> DfsFs {
        DfsFs {
            want_passthrough: passthrough,
            mgr,
            backings: Arc::new(passthrough::Backings::default()),
            quiet: Arc::new(locks::QuietCloses::default()),
            rt,
            dirs: Arc::new(Mutex::new(HashMap::new())),
            next_dir: AtomicU64::new(1),
        }
    }

    /// Runs a request's work on the runtime on behalf of the user who made it: `f` gets
    /// the `Who` of the request's uid, which every call it makes to the manager passes on
    /// (so it uses that user's credentials, `dfs_client::auth`). The request's timing goes
    /// with it (`crate::metrics`), and so does a debug span naming the request's kind, so
    /// that the requests it sends to the server (each with its request id) are logged
    /// under it.
    fn spawn_as<F, Fut>(&self, req: &Request, f: F)
    where
        F: FnOnce(Who) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(answered_in_task(f(Who::user(req.uid()))));
    }
}

/// `f`, carrying the timing of the FUSE request being handled on this thread (recorded
/// when `f` ends) and, at debug level, a span naming the request's kind.
pub(crate) fn answered_in_task<F>(f: F) -> impl std::future::Future<Output = ()> + Send + 'static
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    let timer = crate::metrics::carry();
    let span = match &timer {
        Some(t) => tracing::debug_span!("fuse", op = t.op().name()),
        None => tracing::Span::none(),
    };
    async move {
        f.await;
        drop(timer);
    }
    .instrument(span)
}

/// Starts the thread that hands callback breaks to the kernel.
pub fn deliver_invalidations(mgr: &CacheManager, notifier: fuser::Notifier) {
    let (tx, rx) = std::sync::mpsc::channel::<Invalidation>();
    mgr.set_invalidation_sink(Box::new(move |inv| {
        let _ = tx.send(inv);
    }));
    std::thread::Builder::new()
        .name("dfs-invalidate".into())
        .spawn(move || {
            for inv in rx {
                // ENOENT just means the kernel holds nothing for it.
                let _ = match inv {
                    Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                    // A negative offset: attributes only, no pages.
                    Invalidation::Attrs(ino) => notifier.inval_inode(INodeNo(ino), -1, 0),
                    Invalidation::Entry(dir, name) => {
                        notifier.inval_entry(INodeNo(dir), OsStr::from_bytes(&name))
                    }
                };
            }
        })
        .expect("spawn invalidation thread");
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(st) => SetTime::At(Timestamp::from_system(st)),
    })
}

impl Filesystem for DfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // One at a time: add_capabilities refuses a set if any member is unsupported.
        for wanted in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_EXPORT_SUPPORT,
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            // The file system clears set-id bits and capabilities on write, truncate and
            // chown itself (the server does): without it the kernel would ask us to before
            // every write of such a file.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // ACLs are extended attributes the kernel caches and enforces; the server
            // keeps them and the mode in step and inherits default ACLs.
            InitFlags::FUSE_POSIX_ACL,
            // Creates carry the umask unapplied: a directory's default ACL overrides it.
            InitFlags::FUSE_DONT_MASK,
            // A file still being fetched is opened with FOPEN_DIRECT_IO; this lets such a
            // file be mmapped shared too.
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            if let Err(unsupported) = config.add_capabilities(wanted) {
                log::info!("kernel lacks FUSE capability {unsupported:?}");
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Passthrough needs the capability AND a stack depth of 1; at 0 it is silently off.
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.backings.enable();
            self.mgr.set_passthrough(true);
            log::info!(
                "FUSE passthrough on: cached files are read and written by the kernel directly"
            );
        } else {
            log::info!(
                "FUSE passthrough off: plain read/write handlers with the kernel page cache"
            );
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Lookup);
        // Cache hits are answered here, without a hop to the runtime (the kernel checks
        // permissions itself on the attributes: default_permissions).
        let cached = self.mgr.try_lookup_cached(parent.0, name.as_bytes());
        let result = if cached.is_some() {
            metrics::HIT
        } else {
            metrics::MISS
        };
        metrics::CACHE.inc(metrics::KIND_LOOKUP, result);
        match cached {
            Some(Ok(attr)) => {
                let ttl = ttl_for(&self.mgr, attr.ino);
                return reply.entry(&ttl, &file_attr(&attr), Generation(0));
            }
            Some(Err(e)) => return reply.error(errno(&e)),
            None => {}
        }
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        self.spawn_as(req, |who| async move {
            match mgr.lookup(&who, parent.0, &name).await {
                Ok(attr) => {
                    let ttl = ttl_for(&mgr, attr.ino);
                    reply.entry(&ttl, &file_attr(&attr), Generation(0))
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Getattr);
        let cached = self.mgr.try_getattr_cached(ino.0);
        let result = if cached.is_some() {
            metrics::HIT
        } else {
            metrics::MISS
        };
        metrics::CACHE.inc(metrics::KIND_GETATTR, result);
        if let Some(attr) = cached {
            return reply.attr(&ttl_for(&self.mgr, attr.ino), &file_attr(&attr));
        }
        let mgr = self.mgr.clone();
        self.spawn_as(req, |who| async move {
            match mgr.getattr(&who, ino.0).await {
                Ok(attr) => reply.attr(&ttl_for(&mgr, attr.ino), &file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Setattr);
        let mgr = self.mgr.clone();
        let mode = mode.map(|m| m & 0o7777);
        let (atime, mtime) = (set_time(atime), set_time(mtime));
        self.spawn_as(req, |who| async move {
            match mgr
                .setattr(&who, ino.0, mode, uid, gid, size, atime, mtime)
                .await
            {
                Ok(attr) => reply.attr(&ttl_for(&mgr, attr.ino), &file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Readlink);
        let mgr = self.mgr.clone();
        self.spawn_as(req, |who| async move {
            match mgr.readlink(&who, ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Mkdir);
        entries::mkdir(self, req, parent, name, mode, umask, reply)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Mknod);
        entries::mknod(self, req, parent, name, mode, umask, rdev, reply)
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Unlink);
        entries::unlink(self, req, parent, name, reply)
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Rmdir);
        entries::rmdir(self, req, parent, name, reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Symlink);
        entries::symlink(self, req, parent, link_name, target, reply)
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Rename);
        entries::rename(self, req, parent, name, newparent, newname, flags, reply)
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Link);
        entries::link(self, req, ino, newparent, newname, reply)
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Open);
        files::open(self, req, ino, flags, reply)
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Read);
        files::read(self, req, fh, offset, size, reply)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Write);
        files::write(self, fh, offset, data, reply)
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Flush);
        files::flush(self, req, ino, fh, lock_owner, reply)
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Release);
        files::release(self, ino, fh, lock_owner, reply)
    }

    fn getlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Getlk);
        let mgr = self.mgr.clone();
        let (owner, uid) = (lock_owner.0, req.uid());
        locks::getlk(
            mgr, &self.rt, ino.0, owner, start, end, typ, pid, uid, reply,
        );
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Setlk);
        self.quiet.locked_through(fh.0, lock_owner.0);
        let mgr = self.mgr.clone();
        let (owner, uid) = (lock_owner.0, req.uid());
        locks::setlk(
            mgr, &self.rt, ino.0, owner, start, end, typ, pid, uid, sleep, reply,
        );
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Fsync);
        files::fsync(self, req, fh, reply)
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Opendir);
        dirs::opendir(self, req, ino, reply)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Readdir);
        dirs::readdir(self, ino, fh, offset, reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Readdirplus);
        dirs::readdirplus(self, ino, fh, offset, reply)
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Releasedir);
        dirs::releasedir(self, fh, reply)
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Statfs);
        let mgr = self.mgr.clone();
        self.spawn_as(req, |who| async move {
            match mgr.statfs(&who).await {
                Ok(s) => {
                    let bsize = 4096u64;
                    reply.statfs(
                        s.total_bytes / bsize,
                        s.free_bytes / bsize,
                        s.free_bytes / bsize,
                        s.files,
                        u32::MAX as u64,
                        bsize as u32,
                        255,
                        bsize as u32,
                    )
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Setxattr);
        xattr::setxattr(self, req, ino, name, value, flags, position, reply)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Getxattr);
        xattr::getxattr(self, req, ino, name, size, reply)
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Listxattr);
        xattr::listxattr(self, req, ino, size, reply)
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Removexattr);
        xattr::removexattr(self, req, ino, name, reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _op = crate::metrics::begin(crate::metrics::FuseOp::Create);
        files::create(self, req, parent, name, mode, umask, flags, reply)
    }
}

/// Inode of the mount's root.
pub const ROOT: Ino = dfs_common::ROOT_INO;

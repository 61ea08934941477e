//! The FUSE adapter: maps kernel requests onto the cache manager and `FsError` onto errno.
//! Requests that may need the network are answered from tokio tasks so the FUSE threads
//! never wait on the server; local reads and writes are answered in place. Kernel cache
//! invalidations from callback breaks are delivered by a thread of their own (never from a
//! FUSE handler). Must not hold policy: what is cached and when to store is the manager's.

mod attrs;
mod locks;
mod passthrough;

use crate::cache::{CacheManager, DirItem, Invalidation};
use attrs::{errno, file_attr, ttl_for};
use dfs_common::proto::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use dfs_common::types::SetTime;
use dfs_common::{FsError, Ino, Timestamp};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A directory listing snapshot taken at opendir, served by offset.
type OpenDir = (dfs_common::Attr, Arc<Vec<DirItem>>);

pub struct DfsFs {
    mgr: Arc<CacheManager>,
    backings: Arc<passthrough::Backings>,
    quiet: Arc<locks::QuietCloses>,
    want_passthrough: bool,
    rt: tokio::runtime::Handle,
    dirs: Arc<Mutex<HashMap<u64, OpenDir>>>,
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

    /// Runs a request's work on the runtime on behalf of the user who made it, so that
    /// it uses that user's credentials (`crate::auth`).
    fn spawn_as<F>(&self, req: &Request, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(crate::auth::as_uid(req.uid(), f));
    }
}

/// Answers a request that yields an entry (mkdir, symlink, link).
fn answer_entry(mgr: &CacheManager, result: Result<dfs_common::Attr, FsError>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&ttl_for(mgr, attr.ino), &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers a request that yields nothing but success or an error.
fn answer_empty(result: Result<(), FsError>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers an open: with a passthrough backing id when the kernel takes one, else plain
/// handlers with FOPEN_KEEP_CACHE when the kernel's pages are of this copy.
fn reply_opened(
    fs: &Opener,
    ino: Ino,
    flags: i32,
    opened: crate::cache::OpenResult,
    reply: ReplyOpen,
) {
    let mut fopen = FopenFlags::empty();
    if fs.quiet.admit(&fs.mgr, ino, opened.fh, flags) {
        fopen |= FopenFlags::FOPEN_NOFLUSH;
    }
    if opened.direct {
        fopen |= FopenFlags::FOPEN_DIRECT_IO;
    }
    let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
    let backing = match opened.plain {
        true => None,
        false => fs.mgr.handle_file(opened.fh).and_then(|file| {
            fs.backings
                .attach(ino, opened.fh, &file, writable, |f| reply.open_backing(f))
        }),
    };
    match backing {
        Some(id) => reply.opened_passthrough(FileHandle(opened.fh), fopen, &id),
        None => {
            fs.mgr.set_passthrough(fs.backings.enabled());
            if opened.keep_cache {
                fopen |= FopenFlags::FOPEN_KEEP_CACHE;
            }
            reply.opened(FileHandle(opened.fh), fopen)
        }
    }
}

/// What an open's answer needs, shared with the tasks that answer it.
#[derive(Clone)]
struct Opener {
    mgr: Arc<CacheManager>,
    backings: Arc<passthrough::Backings>,
    quiet: Arc<locks::QuietCloses>,
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
            // We never set suid bits (nosuid mount); without it every write of a file with
            // such bits would first ask us to clear them.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
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
        // Cache hits are answered here, without a hop to the runtime (the kernel checks
        // permissions itself on the attributes: default_permissions).
        match self.mgr.try_lookup_cached(parent.0, name.as_bytes()) {
            Some(Ok(attr)) => {
                let ttl = ttl_for(&self.mgr, attr.ino);
                return reply.entry(&ttl, &file_attr(&attr), Generation(0));
            }
            Some(Err(e)) => return reply.error(errno(&e)),
            None => {}
        }
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        self.spawn_as(req, async move {
            match mgr.lookup(parent.0, &name).await {
                Ok(attr) => {
                    let ttl = ttl_for(&mgr, attr.ino);
                    reply.entry(&ttl, &file_attr(&attr), Generation(0))
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(attr) = self.mgr.try_getattr_cached(ino.0) {
            return reply.attr(&ttl_for(&self.mgr, attr.ino), &file_attr(&attr));
        }
        let mgr = self.mgr.clone();
        self.spawn_as(req, async move {
            match mgr.getattr(ino.0).await {
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
        let mgr = self.mgr.clone();
        let mode = mode.map(|m| m & 0o7777);
        let (atime, mtime) = (set_time(atime), set_time(mtime));
        self.spawn_as(req, async move {
            match mgr.setattr(ino.0, mode, uid, gid, size, atime, mtime).await {
                Ok(attr) => reply.attr(&ttl_for(&mgr, attr.ino), &file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let mgr = self.mgr.clone();
        self.spawn_as(req, async move {
            match mgr.readlink(ino.0).await {
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
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn_as(req, async move {
            answer_entry(
                &mgr,
                mgr.mkdir(parent.0, &name, mode & !umask & 0o7777, uid, gid)
                    .await,
                reply,
            )
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        self.spawn_as(req, async move {
            answer_empty(mgr.unlink(parent.0, &name).await, reply)
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        self.spawn_as(req, async move {
            answer_empty(mgr.rmdir(parent.0, &name).await, reply)
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let mgr = self.mgr.clone();
        let name = link_name.as_bytes().to_vec();
        let target = target.as_os_str().as_bytes().to_vec();
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn_as(req, async move {
            answer_entry(
                &mgr,
                mgr.symlink(parent.0, &name, &target, uid, gid).await,
                reply,
            )
        });
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
        let mgr = self.mgr.clone();
        let name = name.as_bytes().to_vec();
        let newname = newname.as_bytes().to_vec();
        let mut wire_flags = 0;
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            wire_flags |= RENAME_NOREPLACE;
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            wire_flags |= RENAME_EXCHANGE;
        }
        self.spawn_as(req, async move {
            answer_empty(
                mgr.rename(parent.0, &name, newparent.0, &newname, wire_flags)
                    .await,
                reply,
            )
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mgr = self.mgr.clone();
        let newname = newname.as_bytes().to_vec();
        self.spawn_as(req, async move {
            answer_entry(&mgr, mgr.link(ino.0, newparent.0, &newname).await, reply)
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opener = Opener {
            mgr: self.mgr.clone(),
            backings: self.backings.clone(),
            quiet: self.quiet.clone(),
        };
        // A read-only open of a current cached copy is answered here, without a hop.
        if let Some(opened) = self.mgr.try_open_cached(ino.0, flags.0) {
            return match opened {
                Ok(opened) => reply_opened(&opener, ino.0, flags.0, opened, reply),
                Err(e) => reply.error(errno(&e)),
            };
        }
        let uid = req.uid();
        self.spawn_as(req, async move {
            match opener.mgr.open(ino.0, flags.0, uid).await {
                Ok(opened) => reply_opened(&opener, ino.0, flags.0, opened, reply),
                Err(e) => reply.error(errno(&e)),
            }
        });
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
        if !self.mgr.read_ready(fh.0, offset, size) {
            // The copy is still being fetched: answer once these bytes are in.
            let mgr = self.mgr.clone();
            self.spawn_as(req, async move {
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
        match self.mgr.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
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
        let done = match self.mgr.try_write(fh.0, offset, data) {
            Some(done) => done,
            None => {
                // A store of the file holds it: wait off this thread, which serves every
                // other request of the mount.
                let (mgr, data) = (self.mgr.clone(), data.to_vec());
                self.rt
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

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Closing a read-only descriptor that holds no locks has nothing to do.
        if self.mgr.handle_writable(fh.0) == Some(false)
            && !self.mgr.holds_advisory(ino.0, lock_owner.0)
        {
            return reply.ok();
        }
        let mgr = self.mgr.clone();
        self.spawn_as(req, async move {
            // close(2) drops the caller's fcntl locks on the file (POSIX).
            locks::release_owner(&mgr, ino.0, lock_owner.0).await;
            answer_empty(mgr.flush(fh.0).await, reply)
        });
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
        self.backings.detach(ino.0, fh.0);
        self.mgr.release(fh.0);
        reply.ok();
        // The last close of a flock holder's open file drops its flock; that of a
        // descriptor closed without flushes, the fcntl locks taken through it.
        let mut owners = self.quiet.released(fh.0);
        owners.extend(lock_owner.map(|o| o.0));
        if !owners.is_empty() {
            let mgr = self.mgr.clone();
            self.rt.spawn(async move {
                for owner in owners {
                    locks::release_owner(&mgr, ino.0, owner).await;
                }
            });
        }
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
        reply: fuser::ReplyLock,
    ) {
        let mgr = self.mgr.clone();
        locks::getlk(
            mgr,
            &self.rt,
            ino.0,
            lock_owner.0,
            start,
            end,
            typ,
            pid,
            req.uid(),
            reply,
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
        self.quiet.locked_through(fh.0, lock_owner.0);
        let mgr = self.mgr.clone();
        let uid = req.uid();
        locks::setlk(
            mgr,
            &self.rt,
            ino.0,
            lock_owner.0,
            start,
            end,
            typ,
            pid,
            uid,
            sleep,
            reply,
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
        let mgr = self.mgr.clone();
        self.spawn_as(
            req,
            async move { answer_empty(mgr.fsync(fh.0).await, reply) },
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mgr = self.mgr.clone();
        let dirs = self.dirs.clone();
        let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
        self.spawn_as(req, async move {
            let listing = async { Ok((mgr.getattr(ino.0).await?, mgr.readdir(ino.0).await?)) };
            match listing.await {
                Ok(open_dir) => {
                    dirs.lock().unwrap().insert(fh, open_dir);
                    reply.opened(FileHandle(fh), FopenFlags::empty())
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some((_, items)) = self.dirs.lock().unwrap().get(&fh.0).cloned() else {
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

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some((dir_attr, items)) = self.dirs.lock().unwrap().get(&fh.0).cloned() else {
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
            let attr = self.mgr.freshest(&item.attr);
            let ttl = ttl_for(&self.mgr, attr.ino);
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

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let mgr = self.mgr.clone();
        self.spawn_as(req, async move {
            match mgr.statfs().await {
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
        let mgr = self.mgr.clone();
        let backings = self.backings.clone();
        let name = name.as_bytes().to_vec();
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn_as(req, async move {
            match mgr
                .create(parent.0, &name, mode & !umask & 0o7777, uid, gid, flags)
                .await
            {
                Ok((attr, opened)) => {
                    let ttl = ttl_for(&mgr, attr.ino);
                    let fattr = file_attr(&attr);
                    let backing = match opened.plain {
                        true => None,
                        false => mgr.handle_file(opened.fh).and_then(|file| {
                            backings
                                .attach(attr.ino, opened.fh, &file, true, |f| reply.open_backing(f))
                        }),
                    };
                    let mut fopen = FopenFlags::empty();
                    if opened.direct {
                        fopen |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    match backing {
                        Some(id) => reply.created_passthrough(
                            &ttl,
                            &fattr,
                            Generation(0),
                            FileHandle(opened.fh),
                            fopen,
                            &id,
                        ),
                        None => {
                            mgr.set_passthrough(backings.enabled());
                            reply.created(&ttl, &fattr, Generation(0), FileHandle(opened.fh), fopen)
                        }
                    }
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

/// Inode of the mount's root.
pub const ROOT: Ino = dfs_common::ROOT_INO;

//! dfs-fuse-floor: the cheapest FUSE file system this machine can run, to measure the
//! floor of a warm open+read+close of a small file through FUSE (fuser 0.18, one thread,
//! like dfs-mount). `scripts/bench-fuse-floor.sh` runs it against the local disk.
//!
//! Serves one root directory of N files `f0`..`f{N-1}` of 4 KiB, backed by real files in
//! `--backing` (made if missing), with attributes that never expire during a run. Owns
//! nothing of dfs: it answers every request at once, so what a warm read costs through it
//! is what FUSE itself costs here.
//!
//! - `passthrough`: an open is answered with a backing id registered at the file's first
//!   open and kept for good, so a warm open is one OPEN round trip and reads never reach
//!   the daemon.
//! - `plain`: an open is answered with FOPEN_KEEP_CACHE; after the first pass the kernel's
//!   page cache serves the reads.
//!
//! Runs until SIGINT or SIGTERM, then detaches the mount and prints how many requests of
//! each kind it answered.

use clap::Parser;
use fuser::{
    BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request, SessionACL,
};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(3600);
const SIZE: u64 = 4096;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Passthrough,
    Plain,
}

#[derive(Parser)]
#[command(about = "A FUSE file system that answers at once: the floor of FUSE's costs")]
struct Args {
    mountpoint: PathBuf,
    /// Directory of the backing files (made and filled with random bytes if missing).
    #[arg(long)]
    backing: PathBuf,
    #[arg(long, value_enum, default_value_t = Mode::Passthrough)]
    mode: Mode,
    #[arg(long, default_value_t = 3000)]
    files: usize,
}

/// Requests answered, by kind: lookup, getattr, open, read, release.
type Counts = Arc<[AtomicU64; 5]>;

struct Floor {
    mode: Mode,
    files: Vec<File>,
    backing: Vec<Mutex<Option<BackingId>>>,
    root: FileAttr,
    counts: Counts,
}

impl Floor {
    fn index(&self, ino: INodeNo) -> Option<usize> {
        let i = ino.0.checked_sub(2)? as usize;
        (i < self.files.len()).then_some(i)
    }

    fn file_attr(&self, i: usize) -> FileAttr {
        FileAttr {
            ino: INodeNo(i as u64 + 2),
            size: SIZE,
            blocks: SIZE / 512,
            kind: FileType::RegularFile,
            perm: 0o644,
            nlink: 1,
            ..self.root
        }
    }

    fn index_of_name(&self, name: &OsStr) -> Option<usize> {
        let digits = std::str::from_utf8(name.as_bytes().strip_prefix(b"f")?).ok()?;
        let i: usize = digits.parse().ok()?;
        (format!("{i}") == digits && i < self.files.len()).then_some(i)
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.mode == Mode::Passthrough {
            let cap = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH);
            let depth = config.set_max_stack_depth(1);
            if cap.is_err() || depth.is_err() {
                log::error!("passthrough refused: capability {cap:?}, stack depth {depth:?}");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counts[0].fetch_add(1, Relaxed);
        match self.index_of_name(name).filter(|_| parent == INodeNo::ROOT) {
            Some(i) => reply.entry(&TTL, &self.file_attr(i), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counts[1].fetch_add(1, Relaxed);
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root);
        }
        match self.index(ino) {
            Some(i) => reply.attr(&TTL, &self.file_attr(i)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counts[2].fetch_add(1, Relaxed);
        let Some(i) = self.index(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let fh = FileHandle(i as u64);
        if self.mode == Mode::Plain {
            return reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH);
        }
        let mut slot = self.backing[i].lock().unwrap_or_else(|e| e.into_inner());
        let id = match &mut *slot {
            Some(id) => id,
            empty => match reply.open_backing(&self.files[i]) {
                Ok(id) => empty.insert(id),
                Err(e) => {
                    log::error!("passthrough refused for f{i}: {e}");
                    return reply.error(Errno::EIO);
                }
            },
        };
        reply.opened_passthrough(fh, FopenFlags::FOPEN_NOFLUSH, id);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.counts[3].fetch_add(1, Relaxed);
        let Some(i) = self.index(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let mut buf = vec![0u8; size as usize];
        match self.files[i].read_at(&mut buf, offset) {
            Ok(n) => reply.data(&buf[..n]),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.counts[4].fetch_add(1, Relaxed);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        // Offsets: 0 is ".", 1 is "..", 2 + i is f{i}; each entry names the next one's.
        let total = self.files.len() as u64 + 2;
        for off in offset..total {
            let full = match off {
                0 => reply.add(INodeNo::ROOT, 1, FileType::Directory, "."),
                1 => reply.add(INodeNo::ROOT, 2, FileType::Directory, ".."),
                n => reply.add(
                    INodeNo(n),
                    n + 1,
                    FileType::RegularFile,
                    format!("f{}", n - 2),
                ),
            };
            if full {
                break;
            }
        }
        reply.ok();
    }
}

fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn backing_files(dir: &Path, n: usize) -> std::io::Result<Vec<File>> {
    std::fs::create_dir_all(dir)?;
    let mut random = File::open("/dev/urandom")?;
    let mut buf = vec![0u8; SIZE as usize];
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.join(format!("f{i}"));
        if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(SIZE) {
            random.read_exact(&mut buf)?;
            File::create(&path)?.write_all(&buf)?;
        }
        files.push(File::open(&path)?);
    }
    Ok(files)
}

/// Raises the soft limit of open files to the hard one: every backing file stays open.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mountpoint = std::path::absolute(&args.mountpoint)?;
    raise_open_files_limit();
    let files = backing_files(&args.backing, args.files)?;

    // SIGINT, SIGTERM: blocked in every thread (the session's inherit the mask), taken
    // by the main thread with sigwait.
    // SAFETY: `set` is initialised by sigemptyset before any other use.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    let time = SystemTime::now();
    let root = FileAttr {
        ino: INodeNo::ROOT,
        size: 0,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    };
    let counts: Counts = Arc::new(Default::default());
    let fs = Floor {
        mode: args.mode,
        backing: (0..files.len()).map(|_| Mutex::new(None)).collect(),
        files,
        root,
        counts: counts.clone(),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("dfs-fuse-floor".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(1);
    let session = fuser::spawn_mount(fs, &mountpoint, &config)?;
    log::info!(
        "mounted at {} ({:?}, {} files)",
        mountpoint.display(),
        args.mode,
        args.files
    );
    let mut sig = 0;
    // SAFETY: `set` and `sig` are valid for the call.
    unsafe { libc::sigwait(&set, &mut sig) };
    let c: Vec<u64> = counts.iter().map(|c| c.load(Relaxed)).collect();
    println!(
        "requests: lookup {} getattr {} open {} read {} release {}",
        c[0], c[1], c[2], c[3], c[4]
    );
    if let Err(e) = detach(&mountpoint) {
        log::warn!("unmount of {}: {e}", mountpoint.display());
    }
    drop(session);
    Ok(())
}

//! Conversions at the FUSE edge: dfs attributes to `fuser::FileAttr`, `FsError` to errno,
//! and how long the kernel may cache an answer.

use dfs_client::cache::CacheManager;
use dfs_common::{Attr, FileKind, FsError, Ino};
use fuser::{Errno, FileAttr, FileType, INodeNo};
use std::time::Duration;

/// How long the kernel may keep attributes and names covered by a callback promise.
/// A break invalidates them sooner.
const PROMISED_TTL: Duration = Duration::from_secs(60);
/// Without a promise the kernel asks again soon.
const UNPROMISED_TTL: Duration = Duration::from_secs(1);

pub fn ttl_for(mgr: &CacheManager, ino: Ino) -> Duration {
    if mgr.holds_promise(ino) {
        PROMISED_TTL
    } else {
        UNPROMISED_TTL
    }
}

pub fn errno(e: &FsError) -> Errno {
    if matches!(e, FsError::Unavailable(_) | FsError::Io(_)) {
        log::warn!("{e}");
    }
    Errno::from_i32(e.errno())
}

pub fn file_attr(a: &Attr) -> FileAttr {
    let kind = match a.kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime.to_system(),
        mtime: a.mtime.to_system(),
        ctime: a.ctime.to_system(),
        crtime: a.ctime.to_system(),
        kind,
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 1 << 17,
        flags: 0,
    }
}

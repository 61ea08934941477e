//! Conversions at the FUSE edge: dfs attributes to `fuser::FileAttr`, the cache's errors to
//! errno (the one place that picks an errno for them), and how long the kernel may cache an
//! answer.

use dfs_client::cache::{CacheError, CacheManager};
use dfs_client::port::PortError;
use dfs_common::{Attr, FileKind, Ino};
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

/// The errno the kernel gets for `e`. The server's errors keep theirs; a failure of this
/// machine's disk (a cache file, the cache index, a local file of a transfer) is EIO, or
/// ENOSPC when the disk is full: never ENOENT, which would tell the caller that the file
/// it named does not exist. EIO's are logged with their causes.
pub fn errno(e: &CacheError) -> Errno {
    let n = match e {
        CacheError::Fs(e) | CacheError::Fetch(e) => e.errno(),
        CacheError::Port(PortError::Answer(e)) => e.errno(),
        CacheError::Port(PortError::CutShort { .. } | PortError::Corrupt { .. }) => libc::EIO,
        CacheError::Port(PortError::Local(io)) | CacheError::Local(io) => local_errno(io),
        CacheError::Index(_) | CacheError::IndexStopped => libc::EIO,
    };
    if n == libc::EIO {
        log::warn!("{}", with_causes(e));
    }
    Errno::from_i32(n)
}

/// A failure of a local file: ENOSPC if the disk (or the quota) is full, else EIO.
fn local_errno(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => libc::ENOSPC,
        _ => libc::EIO,
    }
}

/// `e` and the chain of its sources, for the log.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_common::FsError;

    fn io(n: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(n)
    }

    /// Every kind of cache error, with the errno the kernel got for it before the cache
    /// had an error type of its own (when each was an `FsError` first).
    fn every_kind() -> Vec<(CacheError, i32)> {
        let cut = || PortError::CutShort {
            ino: 1,
            received: 1,
            expected: 2,
            cause: None,
        };
        vec![
            (CacheError::Fs(FsError::NotFound), libc::ENOENT),
            (CacheError::Fs(FsError::Busy("b".into())), libc::EAGAIN),
            (CacheError::Fs(FsError::Stale("s".into())), libc::ESTALE),
            (CacheError::Fs(FsError::Unavailable("u".into())), libc::EIO),
            (CacheError::Fs(FsError::NoSpace), libc::ENOSPC),
            (
                CacheError::Fetch(FsError::Stale("gone".into())),
                libc::ESTALE,
            ),
            (
                CacheError::Port(PortError::Answer(FsError::Exists)),
                libc::EEXIST,
            ),
            (CacheError::Port(cut()), libc::EIO),
            (
                CacheError::Port(PortError::Corrupt {
                    ino: 1,
                    why: "hash",
                }),
                libc::EIO,
            ),
            (
                CacheError::Port(PortError::Local(io(libc::ENOENT))),
                libc::EIO,
            ),
            (
                CacheError::Port(PortError::Local(io(libc::ENOSPC))),
                libc::ENOSPC,
            ),
            (CacheError::Local(io(libc::ENOENT)), libc::EIO),
            (CacheError::Local(io(libc::EDQUOT)), libc::ENOSPC),
            (CacheError::Local(io(libc::EACCES)), libc::EIO),
            (
                CacheError::from(redb::Error::Corrupted("page".into())),
                libc::EIO,
            ),
            (CacheError::IndexStopped, libc::EIO),
        ]
    }

    #[test]
    fn each_cache_error_has_the_errno_it_had_before() {
        for (e, want) in every_kind() {
            assert_eq!(errno(&e), Errno::from_i32(want), "{e:?}");
        }
    }

    #[test]
    fn the_kernel_and_the_path_api_get_the_same_errno() {
        for (e, _) in every_kind() {
            let kernel = errno(&e);
            assert_eq!(kernel, Errno::from_i32(FsError::from(e).errno()));
        }
    }

    #[test]
    fn a_missing_local_file_is_never_enoent() {
        let e = CacheError::Local(io(libc::ENOENT));
        assert_ne!(errno(&e), Errno::from_i32(libc::ENOENT));
        assert!(
            std::error::Error::source(&e).is_some(),
            "the io::Error is kept"
        );
    }
}

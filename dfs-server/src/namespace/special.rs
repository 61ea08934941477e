//! Special files: fifos, sockets and character and block device nodes. In the namespace
//! they are inodes with no contents (no blob, size 0), which list, stat, rename, link and
//! unlink like any other non-directory; a fetch, store or resize of one is `Invalid`
//! (`attrs::set_contents`, `files`). Only a device node keeps its `rdev`. What they are on
//! a mount (a fifo is local to each machine) is the client's business.
//!
//! Owns: which kinds mknod makes and what `rdev` they keep. Must not decide who may make
//! one (`auth::perm`: device nodes are for admins in a realm).

use dfs_common::{FileKind, FsError};

/// The `rdev` a mknod of `kind` keeps: `rdev` for a device node, 0 for a fifo or socket;
/// `Invalid` for the kinds mknod does not make (regular files, directories, symlinks have
/// their own requests).
pub fn device_of(kind: FileKind, rdev: u32) -> Result<u32, FsError> {
    match kind {
        FileKind::CharDevice | FileKind::BlockDevice => Ok(rdev),
        FileKind::Fifo | FileKind::Socket => Ok(0),
        FileKind::File | FileKind::Dir | FileKind::Symlink => Err(FsError::Invalid(format!(
            "mknod makes fifos, sockets and device nodes, not {kind:?}"
        ))),
    }
}

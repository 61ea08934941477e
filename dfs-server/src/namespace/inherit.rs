//! What a new inode takes from the directory it is made in (Linux's `inode_init_owner` and
//! `posix_acl_create`):
//! - its permission bits: with a default ACL on the directory, the caller's mode argument
//!   masked by that ACL, the umask ignored (POSIX.1e), and an access ACL made from the
//!   default one unless it says no more than those bits; a new directory also inherits
//!   the default ACL as its own. Without one, `mode & !umask`. Symlinks are always 0777.
//! - under a set-gid directory: the directory's group, and for a directory the set-gid
//!   bit too.
//!
//! Owns: those rules. Must not allocate inodes or write entries (`ops::add_new` does).

use super::attrs::S_ISGID;
use super::store::{InodeRecord, Writer};
use super::xattr;
use dfs_common::acl::Acl;
use dfs_common::proto::{XATTR_POSIX_ACL_ACCESS, XATTR_POSIX_ACL_DEFAULT};
use dfs_common::{FileKind, FsError, Ino};

/// The owner's side of a new inode, after its directory had its say.
pub struct Inherited {
    /// Permission bits (0o7777).
    pub mode: u32,
    pub gid: u32,
    /// Its access ACL, if it has one beyond its mode bits.
    pub access_acl: Option<Acl>,
    /// Its default ACL (directories under a directory with one).
    pub default_acl: Option<Acl>,
}

impl Inherited {
    /// Stores the inherited ACLs of new inode `ino`.
    pub fn store_acls(&self, w: &mut Writer<'_>, ino: Ino) -> Result<(), FsError> {
        if let Some(acl) = &self.access_acl {
            w.put_xattr(ino, XATTR_POSIX_ACL_ACCESS, &acl.to_xattr())?;
        }
        if let Some(acl) = &self.default_acl {
            w.put_xattr(ino, XATTR_POSIX_ACL_DEFAULT, &acl.to_xattr())?;
        }
        Ok(())
    }
}

/// What an inode of `kind`, asked for with `mode`, `umask` and group `gid`, gets in
/// directory `dir`.
pub fn from_dir(
    w: &Writer<'_>,
    dir: &InodeRecord,
    kind: FileKind,
    mode: u32,
    umask: u32,
    gid: u32,
) -> Result<Inherited, FsError> {
    let mut out = Inherited {
        mode: mode & 0o7777,
        gid,
        access_acl: None,
        default_acl: None,
    };
    if kind != FileKind::Symlink {
        match xattr::stored_acl(w, dir.attr.ino, XATTR_POSIX_ACL_DEFAULT)? {
            Some(default) => {
                let (access, masked) = default.create_masked(out.mode);
                out.mode = masked;
                out.access_acl = (!access.is_equivalent_to_mode()).then_some(access);
                out.default_acl = (kind == FileKind::Dir).then_some(default);
            }
            None => out.mode &= !(umask & 0o777),
        }
    }
    if dir.attr.mode & S_ISGID != 0 {
        out.gid = dir.attr.gid;
        if kind == FileKind::Dir {
            out.mode |= S_ISGID;
        }
    }
    Ok(out)
}

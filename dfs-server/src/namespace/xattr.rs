//! Extended attributes, kept in the namespace's `xattrs` table so that the same commits
//! (and later the same log) carry them as every other metadata change, and POSIX ACLs,
//! which are two of them with rules of their own.
//!
//! Linux's rules: the namespaces `user.`, `trusted.`, `security.`, and the two ACL names
//! `system.posix_acl_access` / `system.posix_acl_default`; any other name is
//! `NotSupported`. An empty name, one with a NUL or one that is only a prefix is
//! `Invalid`; a name past `XATTR_NAME_MAX` bytes is `OutOfRange`, a value past
//! `XATTR_SIZE_MAX` `TooBig`, and all of an inode's past `XATTR_TOTAL_MAX` `NoSpace`.
//! `user.` attributes live only on regular files and directories (`NotPermitted` on the
//! rest), a default ACL only on directories (`PermissionDenied`, Linux's EACCES), ACLs not
//! on symlinks (`NotSupported`). A set or remove changes ctime; a failed one nothing.
//!
//! ACLs: a set value is checked (`dfs_common::acl`) and stored in canonical order; a
//! header without entries removes the ACL. An access ACL and the permission bits say the
//! same thing: setting one sets the bits from it (and clears S_ISGID when the command says
//! the setter is outside the file's group), and one that says no more than the bits is not
//! stored; a chmod rewrites a stored one (`chmod`).
//!
//! Owns: those rules and the reads of attributes and ACLs. Must not decide who may (that is
//! `auth::perm`), open write transactions or read clocks.

use super::store::{db_err, load_inode, InodeRecord, Writer, INODES, XATTRS};
use super::{Namespace, NsOutcome};
use dfs_common::acl::Acl;
use dfs_common::proto::{
    XattrSet, XATTR_NAME_MAX, XATTR_POSIX_ACL_ACCESS, XATTR_POSIX_ACL_DEFAULT, XATTR_SIZE_MAX,
    XATTR_TOTAL_MAX,
};
use dfs_common::{Attr, FileKind, FsError, Ino, Timestamp};

/// Which kind of extended attribute a name is, by its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrClass {
    /// `user.*`: anyone who may write the file.
    User,
    /// `trusted.*`: admins only, and hidden from others.
    Trusted,
    /// `security.capability`: file capabilities, admins only.
    SecurityCapability,
    /// Any other `security.*`.
    Security,
    /// `system.posix_acl_access`.
    AclAccess,
    /// `system.posix_acl_default`.
    AclDefault,
}

const PREFIXES: [(&[u8], XattrClass); 3] = [
    (b"user.", XattrClass::User),
    (b"trusted.", XattrClass::Trusted),
    (b"security.", XattrClass::Security),
];
const SECURITY_CAPABILITY: &[u8] = b"security.capability";

/// The class of extended attribute `name`, or why no such name can exist.
pub fn xattr_class(name: &[u8]) -> Result<XattrClass, FsError> {
    if name.is_empty() {
        return Err(FsError::Invalid("empty extended attribute name".into()));
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(FsError::OutOfRange(format!(
            "extended attribute name of {} bytes (at most {XATTR_NAME_MAX})",
            name.len()
        )));
    }
    if name.contains(&0) {
        return Err(FsError::Invalid(
            "extended attribute name contains NUL".into(),
        ));
    }
    if name == XATTR_POSIX_ACL_ACCESS {
        return Ok(XattrClass::AclAccess);
    }
    if name == XATTR_POSIX_ACL_DEFAULT {
        return Ok(XattrClass::AclDefault);
    }
    for (prefix, class) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            if rest.is_empty() {
                return Err(FsError::Invalid(format!(
                    "extended attribute name {:?} is only a namespace",
                    String::from_utf8_lossy(name)
                )));
            }
            if name == SECURITY_CAPABILITY {
                return Ok(XattrClass::SecurityCapability);
            }
            return Ok(class);
        }
    }
    Err(FsError::NotSupported(format!(
        "extended attribute {:?}: not in the user, trusted, security or POSIX ACL namespace",
        String::from_utf8_lossy(name)
    )))
}

/// Whether an inode of `kind` can have attributes of `class` at all.
fn check_kind(class: XattrClass, kind: FileKind) -> Result<(), FsError> {
    match class {
        XattrClass::User if !matches!(kind, FileKind::File | FileKind::Dir) => Err(
            FsError::NotPermitted("user.* attributes only on files and directories".into()),
        ),
        XattrClass::AclAccess | XattrClass::AclDefault if kind == FileKind::Symlink => Err(
            FsError::NotSupported("symbolic links have no access control lists".into()),
        ),
        _ => Ok(()),
    }
}

/// ACL `name` of inode `ino` as stored, if it has one.
pub(super) fn stored_acl(w: &Writer<'_>, ino: Ino, name: &[u8]) -> Result<Option<Acl>, FsError> {
    match w.xattr(ino, name)? {
        None => Ok(None),
        Some(bytes) => parse_stored(ino, &bytes),
    }
}

/// A stored ACL: it was checked when it was set, so one that no longer parses is damage.
pub(super) fn parse_stored(ino: Ino, bytes: &[u8]) -> Result<Option<Acl>, FsError> {
    Acl::from_xattr(bytes).map_err(|e| FsError::Io(format!("stored ACL of inode {ino}: {e}")))
}

/// A chmod of `rec` to `mode` (0o7777): the permission bits, and its access ACL if it has
/// one (owner, mask-or-group and other entries), in the same write.
pub(super) fn chmod(w: &mut Writer<'_>, rec: &mut InodeRecord, mode: u32) -> Result<(), FsError> {
    rec.attr.mode = mode & 0o7777;
    let ino = rec.attr.ino;
    if let Some(mut acl) = stored_acl(w, ino, XATTR_POSIX_ACL_ACCESS)? {
        acl.chmod(rec.attr.mode);
        w.put_xattr(ino, XATTR_POSIX_ACL_ACCESS, &acl.to_xattr())?;
    }
    Ok(())
}

/// `NsCommand::SetXattr`.
pub(super) fn set(
    w: &mut Writer<'_>,
    ino: Ino,
    name: Vec<u8>,
    value: Vec<u8>,
    how: XattrSet,
    drop_sgid: bool,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    let class = xattr_class(&name)?;
    if value.len() > XATTR_SIZE_MAX {
        return Err(FsError::TooBig(format!(
            "extended attribute value of {} bytes (at most {XATTR_SIZE_MAX})",
            value.len()
        )));
    }
    let mut rec = w.must(ino)?;
    check_kind(class, rec.attr.kind)?;
    // What to store (`None`: nothing, and remove what is there).
    let stored = match class {
        XattrClass::AclAccess => match Acl::from_xattr(&value)? {
            None => None,
            Some(acl) => {
                rec.attr.mode = (rec.attr.mode & !0o777) | acl.permission_bits();
                if drop_sgid {
                    rec.attr.mode &= !super::attrs::S_ISGID;
                }
                (!acl.is_equivalent_to_mode()).then(|| acl.to_xattr())
            }
        },
        XattrClass::AclDefault => {
            if rec.attr.kind != FileKind::Dir {
                return Err(FsError::PermissionDenied(
                    "a default ACL belongs on a directory".into(),
                ));
            }
            Acl::from_xattr(&value)?.map(|acl| acl.to_xattr())
        }
        _ => Some(value),
    };
    let existing = w.xattr(ino, &name)?;
    match (how, &existing) {
        (XattrSet::Create, Some(_)) => return Err(FsError::Exists),
        (XattrSet::Replace, None) => return Err(FsError::NoXattr),
        _ => {}
    }
    match stored {
        Some(v) => {
            let others = w.xattr_bytes(ino)? - existing.map_or(0, |e| name.len() + e.len());
            if others + name.len() + v.len() > XATTR_TOTAL_MAX {
                return Err(FsError::NoSpace);
            }
            w.put_xattr(ino, &name, &v)?;
        }
        None => {
            w.del_xattr(ino, &name)?;
        }
    }
    changed(w, rec, now)
}

/// `NsCommand::RemoveXattr`.
pub(super) fn remove(
    w: &mut Writer<'_>,
    ino: Ino,
    name: Vec<u8>,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    let class = xattr_class(&name)?;
    let rec = w.must(ino)?;
    check_kind(class, rec.attr.kind)?;
    if !w.del_xattr(ino, &name)? {
        return Err(FsError::NoXattr);
    }
    changed(w, rec, now)
}

fn changed(w: &mut Writer<'_>, mut rec: InodeRecord, now: Timestamp) -> Result<NsOutcome, FsError> {
    rec.attr.ctime = now;
    w.put_inode(&rec)?;
    Ok(NsOutcome {
        changed_inos: vec![rec.attr.ino],
        attr: Some(rec.attr),
        ..NsOutcome::default()
    })
}

/// One inode's extended attributes, `(name, value)` in name order.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl Namespace {
    /// Every extended attribute of `ino` (ACLs included), in name order; `NotFound` if
    /// there is no such inode.
    pub fn xattrs(&self, ino: Ino) -> Result<Xattrs, FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        load_inode(&inodes, ino)?.ok_or(FsError::NotFound)?;
        let xattrs = tx.open_table(XATTRS).map_err(db_err)?;
        let empty: &[u8] = &[];
        let mut out = Vec::new();
        for item in xattrs
            .range((ino, empty)..(ino + 1, empty))
            .map_err(db_err)?
        {
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value().1.to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The attributes of `ino` and its access ACL, if it has one: what a permission check
    /// reads.
    pub fn attr_and_acl(&self, ino: Ino) -> Result<(Attr, Option<Acl>), FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        let attr = load_inode(&inodes, ino)?.ok_or(FsError::NotFound)?.attr;
        let xattrs = tx.open_table(XATTRS).map_err(db_err)?;
        let acl = match xattrs.get((ino, XATTR_POSIX_ACL_ACCESS)).map_err(db_err)? {
            None => None,
            Some(g) => parse_stored(ino, g.value())?,
        };
        Ok((attr, acl))
    }
}
